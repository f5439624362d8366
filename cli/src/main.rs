//! `vigil`: the user CLI.
#![forbid(unsafe_code)]

mod compact;
mod filter;
mod observe;
mod pod;
mod policy;
mod policy_remote;
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
    /// Feed or show a running sensor's pod inventory (hosts without the operator, tests).
    #[command(subcommand)]
    Pod(pod::PodCommand),
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
        Command::Pod(cmd) => pod::run(cmd)?,
        Command::Status(a) => {
            remote::status(&remote::Target::parse(&a.server), a.output == "json")?
        }
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::{ListOutput, Mode, PolicyCommand, PolicyRef, ServerArg};

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        let mut all = vec!["vigil"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|c| c.command)
    }

    fn policy(args: &[&str]) -> PolicyCommand {
        match parse(args).unwrap() {
            Command::Policy(p) => p,
            other => panic!("{other:?}"),
        }
    }

    fn server(s: &str) -> ServerArg {
        ServerArg { server: s.into() }
    }

    #[test]
    fn policy_subcommands_parse_with_defaults() {
        assert_eq!(
            format!("{:?}", policy(&["policy", "add", "p.yaml"])),
            format!(
                "{:?}",
                PolicyCommand::Add {
                    file: "p.yaml".into(),
                    server: server(remote::DEFAULT_SOCKET)
                }
            )
        );
        match policy(&["policy", "list"]) {
            PolicyCommand::List { output, server: s } => {
                assert_eq!(output, ListOutput::Text);
                assert_eq!(s, server(remote::DEFAULT_SOCKET));
            }
            other => panic!("{other:?}"),
        }
        match policy(&["policy", "delete", "p"]) {
            PolicyCommand::Delete(r) => assert_eq!(
                r,
                PolicyRef {
                    name: "p".into(),
                    namespace: String::new(),
                    server: server(remote::DEFAULT_SOCKET)
                }
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn policy_subcommands_take_server_namespace_output_and_mode() {
        match policy(&["policy", "list", "-o", "json", "--server", "unix:///x.sock"]) {
            PolicyCommand::List { output, server: s } => {
                assert_eq!(output, ListOutput::Json);
                assert_eq!(s, server("unix:///x.sock"));
            }
            other => panic!("{other:?}"),
        }
        match policy(&[
            "policy",
            "delete",
            "p",
            "--namespace",
            "prod",
            "--server",
            "/s",
        ]) {
            PolicyCommand::Delete(r) => {
                assert_eq!((r.name.as_str(), r.namespace.as_str()), ("p", "prod"));
                assert_eq!(r.server, server("/s"));
            }
            other => panic!("{other:?}"),
        }
        match policy(&["policy", "enable", "p", "-n", "ns"]) {
            PolicyCommand::Enable(r) => assert_eq!(r.namespace, "ns"),
            other => panic!("{other:?}"),
        }
        match policy(&["policy", "disable", "p"]) {
            PolicyCommand::Disable(r) => assert_eq!(r.name, "p"),
            other => panic!("{other:?}"),
        }
        match policy(&["policy", "set-mode", "p", "monitor", "--server", "/s"]) {
            PolicyCommand::SetMode { policy: r, mode } => {
                assert_eq!(mode, Mode::Monitor);
                assert_eq!((r.name.as_str(), r.server.server.as_str()), ("p", "/s"));
            }
            other => panic!("{other:?}"),
        }
        match policy(&["policy", "set-mode", "p", "enforce"]) {
            PolicyCommand::SetMode { mode, .. } => assert_eq!(mode, Mode::Enforce),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_policy_arguments_are_refused() {
        assert!(parse(&["policy", "set-mode", "p", "audit"]).is_err());
        assert!(parse(&["policy", "set-mode", "p"]).is_err());
        assert!(parse(&["policy", "list", "-o", "yaml"]).is_err());
        assert!(parse(&["policy", "add"]).is_err());
        assert!(parse(&["policy", "delete"]).is_err());
    }
}
