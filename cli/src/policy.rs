//! `vigil policy …`: validate and compile TracingPolicy manifests.
//!
//! Exit codes: 0 success, 1 invalid policy, 2 input could not be read.
use std::io::{Read, Write};

use clap::Subcommand;
use vigil_api::policy::{self, PolicyErrors};

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Check policy files (`-` for stdin): every error is printed, one per line;
    /// exit 1 if any policy is invalid, else a one-line summary per policy.
    Validate {
        /// Manifest files (YAML, several documents allowed), or `-` for stdin.
        #[arg(required = true, value_name = "FILE|-")]
        files: Vec<String>,
    },
    /// Compile a policy file (`-` for stdin) to the Vigil policy IR, printed as JSON on
    /// stdout: one object for a single document, an array for several.
    Compile {
        /// Manifest file, or `-` for stdin.
        #[arg(value_name = "FILE|-")]
        file: String,
    },
}

const EXIT_INVALID: i32 = 1;
const EXIT_IO: i32 = 2;

fn read_input(name: &str) -> Result<String, String> {
    if name == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("<stdin>: cannot read: {e}"))?;
        Ok(s)
    } else {
        std::fs::read_to_string(name).map_err(|e| format!("{name}: cannot read: {e}"))
    }
}

fn display_name(name: &str) -> &str {
    if name == "-" { "<stdin>" } else { name }
}

fn print_errors(name: &str, errors: &PolicyErrors) {
    let mut err = std::io::stderr().lock();
    for e in errors.iter() {
        let _ = writeln!(err, "{}: {e}", display_name(name));
    }
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<i32> {
    match cmd {
        PolicyCommand::Validate { files } => Ok(validate(&files)),
        PolicyCommand::Compile { file } => compile(&file),
    }
}

fn validate(files: &[String]) -> i32 {
    let mut code = 0;
    let mut out = std::io::stdout().lock();
    for name in files {
        let text = match read_input(name) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{e}");
                code = code.max(EXIT_IO);
                continue;
            }
        };
        let results = match policy::compile_each(&text) {
            Ok(r) => r,
            Err(errors) => {
                print_errors(name, &errors);
                code = code.max(EXIT_INVALID);
                continue;
            }
        };
        for r in results {
            match r {
                Ok((doc, ir)) => {
                    let mode = if ir.mode == policy::ir::PolicyMode::Monitor as i32 {
                        "monitor"
                    } else {
                        "enforce"
                    };
                    let ns = doc
                        .metadata
                        .namespace
                        .as_deref()
                        .map(|n| format!(" in namespace {n}"))
                        .unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "{}: ok: {} {}{ns}: {} hook(s), mode {mode}",
                        display_name(name),
                        doc.kind.as_str(),
                        doc.metadata.name,
                        ir.hooks.len(),
                    );
                }
                Err(errors) => {
                    print_errors(name, &errors);
                    code = code.max(EXIT_INVALID);
                }
            }
        }
    }
    code
}

fn compile(name: &str) -> anyhow::Result<i32> {
    let text = match read_input(name) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return Ok(EXIT_IO);
        }
    };
    match policy::compile_yaml(&text) {
        Ok(irs) => {
            let rendered: Vec<String> = irs.iter().map(policy::ir_to_json).collect();
            let mut out = std::io::stdout().lock();
            if rendered.len() == 1 {
                writeln!(out, "{}", rendered[0])?;
            } else {
                writeln!(out, "[")?;
                for (i, r) in rendered.iter().enumerate() {
                    let sep = if i + 1 < rendered.len() { "," } else { "" };
                    writeln!(out, "{r}{sep}")?;
                }
                writeln!(out, "]")?;
            }
            Ok(0)
        }
        Err(errors) => {
            print_errors(name, &errors);
            Ok(EXIT_INVALID)
        }
    }
}
