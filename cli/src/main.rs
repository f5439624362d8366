//! `vigil`: the user CLI.
#![forbid(unsafe_code)]

mod compact;
mod filter;
mod observe;
mod policy;
mod remote;
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
    Observe(Box<observe::ObserveArgs>),
    /// Validate, compile and manage TracingPolicies.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Show a running sensor's health, version and probed kernel features.
    Status(StatusArgs),
}

#[derive(clap::Args, Debug)]
struct StatusArgs {
    /// The sensor: a unix socket path, unix://PATH or http://HOST:PORT.
    #[arg(long, value_name = "ADDR", default_value = remote::DEFAULT_SOCKET)]
    server: String,
    /// Output format: text or json.
    #[arg(short = 'o', long, default_value = "text", value_parser = ["text", "json"])]
    output: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Observe(args) => observe::run(*args)?,
        Command::Policy(cmd) => policy::run(cmd)?,
        Command::Status(a) => {
            remote::status(&remote::Target::parse(&a.server), a.output == "json")?
        }
    };
    std::process::exit(code);
}
