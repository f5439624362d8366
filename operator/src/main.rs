//! `vigil-operator`: skeleton until the operator issue; `crdgen` prints the CRDs.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "vigil-operator", version, about = "Vigil's cluster operator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the CustomResourceDefinitions (TracingPolicy, TracingPolicyNamespaced) as
    /// multi-document YAML, or write one file per CRD into a directory.
    Crdgen {
        /// Write `vigil.dev_<plural>.yaml` files into this directory (e.g. config/crd)
        /// instead of printing.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<std::path::PathBuf>,
    },
    /// Run the operator (not implemented yet).
    Run,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crdgen { out_dir: None } => {
            print!("{}", vigil_operator::crd_yaml()?);
            Ok(())
        }
        Command::Crdgen { out_dir: Some(dir) } => {
            for (name, doc) in vigil_operator::CRD_FILES
                .iter()
                .zip(vigil_operator::crd_documents()?)
            {
                let path = dir.join(name);
                std::fs::write(&path, doc)
                    .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", path.display()))?;
            }
            Ok(())
        }
        Command::Run => {
            eprintln!("vigil-operator run: not implemented yet (only `crdgen` is available)");
            std::process::exit(2);
        }
    }
}
