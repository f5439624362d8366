//! `vigil`: the user CLI.
#![forbid(unsafe_code)]

mod compact;
mod filter;
mod observe;
mod policy;
mod syscalls;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "vigil",
    version,
    about = "Vigil: eBPF security observability and enforcement"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print events (compact or JSON) from a file, stdin or a running sensor.
    #[command(alias = "getevents")]
    Observe(observe::ObserveArgs),
    /// Validate, compile and manage TracingPolicies.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Observe(args) => observe::run(args)?,
        Command::Policy(cmd) => policy::run(cmd)?,
    };
    std::process::exit(code);
}
