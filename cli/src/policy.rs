//! `vigil policy …`: validate and compile TracingPolicy manifests, and manage the policies of a
//! running sensor (add, delete, list, enable, disable, set-mode).
//!
//! Exit codes: 0 success, 1 invalid or refused policy, 2 input could not be read or the sensor
//! could not be reached. `vigil policy test` has its own (see `policy_test.rs`).
use std::io::{Read, Write};

use clap::{Args, Subcommand, ValueEnum};
use vigil_api::policy::{self, PolicyErrors};
use vigil_api::wire::tetragon::TracingPolicyMode;

use crate::policy_remote::{self as pr, Failure};
use crate::remote::{self, Target};

pub use crate::remote::ServerArg;

/// A policy on the sensor: its name and, for a TracingPolicyNamespaced, its namespace.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct PolicyRef {
    /// The policy's name (metadata.name).
    pub name: String,
    /// The policy's namespace (TracingPolicyNamespaced only).
    #[arg(long, short = 'n', value_name = "NS", default_value = "")]
    pub namespace: String,
    #[command(flatten)]
    pub server: ServerArg,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListOutput {
    Text,
    Json,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Enforcing actions (Sigkill, Signal, Override) run.
    Enforce,
    /// Enforcing actions are counted and reported, not executed.
    Monitor,
}

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
    /// Replay recorded events (JSON lines) through a policy, offline, with the kernel
    /// programs' semantics: which events each selector matches and what its actions do.
    /// Exit 1 when --expect/--expect-none is not met, 3 when it cannot be decided, 2 on bad
    /// input.
    Test(crate::policy_test::TestArgs),
    /// Load a policy file (`-` for stdin) into a running sensor. The manifest is validated
    /// here first; an invalid one is never sent.
    Add {
        /// Manifest file with one policy, or `-` for stdin.
        #[arg(value_name = "FILE|-")]
        file: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Unload a policy from a running sensor.
    Delete(PolicyRef),
    /// List a running sensor's policies: state, mode, hooks loaded, counters.
    List {
        /// Output format: a table, or a JSON array with every field (incl. per-hook status).
        #[arg(short = 'o', long, value_enum, default_value_t = ListOutput::Text)]
        output: ListOutput,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Switch a loaded policy on.
    Enable(PolicyRef),
    /// Switch a loaded policy off without unloading it.
    Disable(PolicyRef),
    /// Switch a policy between enforce and monitor without reloading it.
    SetMode {
        #[command(flatten)]
        policy: PolicyRef,
        /// enforce or monitor.
        #[arg(value_enum)]
        mode: Mode,
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
        PolicyCommand::Test(args) => crate::policy_test::run(args),
        PolicyCommand::Add { file, server } => add(&file, &server.target()),
        PolicyCommand::List { output, server } => list(&server.target(), output),
        PolicyCommand::Delete(r) => {
            let t = r.server.target();
            remote_call("delete", || async {
                pr::delete(&t, &r.name, &r.namespace).await?;
                let shown = if r.namespace.is_empty() {
                    r.name.clone()
                } else {
                    format!("{}/{}", r.namespace, r.name)
                };
                println!("deleted policy {shown}");
                Ok(0)
            })
        }
        PolicyCommand::Enable(r) => configure("enable", &r, Some(true), None),
        PolicyCommand::Disable(r) => configure("disable", &r, Some(false), None),
        PolicyCommand::SetMode { policy, mode } => {
            let m = match mode {
                Mode::Enforce => TracingPolicyMode::TpModeEnforce,
                Mode::Monitor => TracingPolicyMode::TpModeMonitor,
            };
            configure("set-mode", &policy, None, Some(m))
        }
    }
}

/// Runs one remote operation; a failure is printed as `vigil policy VERB: …` (one line per
/// line of the sensor's message) and becomes the exit status.
fn remote_call<F, Fut>(verb: &str, f: F) -> anyhow::Result<i32>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<i32, Failure>>,
{
    let rt = remote::runtime()?;
    match rt.block_on(f()) {
        Ok(code) => Ok(code),
        Err(e) => {
            let mut err = std::io::stderr().lock();
            for line in e.message.lines() {
                let _ = writeln!(err, "vigil policy {verb}: {line}");
            }
            Ok(e.code)
        }
    }
}

fn add(name: &str, target: &Target) -> anyhow::Result<i32> {
    let text = match read_input(name) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vigil policy add: {e}");
            return Ok(EXIT_IO);
        }
    };
    if let Err(lines) = pr::check_manifest(display_name(name), &text) {
        let mut err = std::io::stderr().lock();
        for l in lines {
            let _ = writeln!(err, "vigil policy add: {l}");
        }
        return Ok(EXIT_INVALID);
    }
    remote_call("add", || async {
        let Some(p) = pr::add(target, text).await? else {
            println!("added policy from {}", display_name(name));
            return Ok(0);
        };
        println!("{}", pr::summary("added", &p));
        let mut err = std::io::stderr().lock();
        for h in p.vigil.iter().flat_map(|v| &v.hooks).filter(|h| !h.loaded) {
            let _ = writeln!(
                err,
                "vigil policy add: warning: hook {} ({}) not loaded: {}",
                h.source,
                h.target,
                h.error.lines().next().unwrap_or("")
            );
        }
        // Kept by the sensor, but nothing of it runs: say so in the exit status too.
        Ok(if pr::state_word(p.state) == "error" {
            EXIT_INVALID
        } else {
            0
        })
    })
}

fn list(target: &Target, output: ListOutput) -> anyhow::Result<i32> {
    remote_call("list", || async {
        let policies = pr::list(target).await?;
        match output {
            ListOutput::Json => println!("{}", pr::render_json(&policies)),
            ListOutput::Text => print!("{}", pr::render_table(&policies)),
        }
        Ok(0)
    })
}

fn configure(
    verb: &str,
    r: &PolicyRef,
    enable: Option<bool>,
    mode: Option<TracingPolicyMode>,
) -> anyhow::Result<i32> {
    let t = r.server.target();
    remote_call(verb, || async {
        let done = match verb {
            "enable" => "enabled",
            "disable" => "disabled",
            _ => "updated",
        };
        match pr::configure(&t, &r.name, &r.namespace, enable, mode).await? {
            Some(p) => println!("{}", pr::summary(done, &p)),
            None => println!("{done} policy {}", r.name),
        }
        Ok(0)
    })
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
