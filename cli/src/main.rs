//! `vigil`: the user CLI.
#![forbid(unsafe_code)]

mod compact;
mod filter;
mod lenient_event;
mod observe;
mod operator_status;
mod pod;
mod policy;
mod policy_remote;
mod policy_test;
mod policy_test_report;
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
    /// Show a running sensor's health, version and probed kernel features; with --operator,
    /// the operator's policies × nodes.
    Status(StatusArgs),
}

#[derive(clap::Args, Debug)]
struct StatusArgs {
    #[command(flatten)]
    server: remote::ServerArg,
    /// Ask the operator instead (HOST:PORT, http://HOST:PORT, or https://HOST:PORT with the
    /// --tls-* options): every policy on every node, with state and errors.
    #[arg(long, value_name = "ADDR")]
    operator: Option<String>,
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
        Command::Status(a) => match &a.operator {
            Some(op) => operator_status::run(op, &a.server.tls, a.output == "json")?,
            None => remote::status(&a.server.target(), a.output == "json")?,
        },
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
        ServerArg {
            server: s.into(),
            tls: Default::default(),
        }
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
    fn tls_flags_parse_for_every_remote_command() {
        let tls = [
            "--server",
            "https://sensor:54321",
            "--tls-ca",
            "ca.pem",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "c.key",
            "--tls-server-name",
            "sensor.example",
        ];
        let want = remote::TlsArgs {
            tls_ca: Some("ca.pem".into()),
            tls_cert: Some("c.pem".into()),
            tls_key: Some("c.key".into()),
            tls_server_name: Some("sensor.example".into()),
        };
        let with = |head: &[&'static str]| -> Vec<&'static str> { [head, &tls[..]].concat() };
        match parse(&with(&["status"])).unwrap() {
            Command::Status(a) => {
                assert_eq!(a.server.tls, want);
                let t = a.server.target();
                assert_eq!(t.addr, remote::Addr::Https("https://sensor:54321".into()));
                assert_eq!(t.tls, want);
            }
            other => panic!("{other:?}"),
        }
        match policy(&with(&["policy", "list"])) {
            PolicyCommand::List { server, .. } => assert_eq!(server.tls, want),
            other => panic!("{other:?}"),
        }
        match policy(&with(&["policy", "add", "p.yaml"])) {
            PolicyCommand::Add { server, .. } => assert_eq!(server.tls, want),
            other => panic!("{other:?}"),
        }
        match policy(&with(&["policy", "set-mode", "p", "monitor"])) {
            PolicyCommand::SetMode { policy: r, .. } => assert_eq!(r.server.tls, want),
            other => panic!("{other:?}"),
        }
        match policy(&with(&["policy", "delete", "p"])) {
            PolicyCommand::Delete(r) => assert_eq!(r.server.tls, want),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&with(&["observe"])).unwrap(),
            Command::Observe(_)
        ));
        // Defaults: no TLS options.
        match parse(&["status"]).unwrap() {
            Command::Status(a) => assert_eq!(a.server.tls, remote::TlsArgs::default()),
            other => panic!("{other:?}"),
        }
        // A client certificate needs its key and the other way round.
        assert!(parse(&["status", "--tls-cert", "c.pem"]).is_err());
        assert!(parse(&["policy", "list", "--tls-key", "c.key"]).is_err());
        assert!(parse(&["observe", "--tls-cert", "c.pem"]).is_err());
    }

    #[test]
    fn policy_test_takes_events_and_one_expectation() {
        match policy(&["policy", "test", "p.yaml", "--events", "e.json"]) {
            PolicyCommand::Test(a) => {
                assert_eq!((a.policy.as_str(), a.events.as_str()), ("p.yaml", "e.json"));
                assert_eq!(
                    (a.expect, a.expect_none, a.rate_limits),
                    (None, false, false)
                );
                assert_eq!((a.output.as_str(), a.max_lines, a.mode), ("text", 10, None));
            }
            other => panic!("{other:?}"),
        }
        match policy(&[
            "policy",
            "test",
            "p.yaml",
            "--events",
            "-",
            "--expect",
            "3",
            "-o",
            "json",
            "--mode",
            "monitor",
            "--rate-limits",
        ]) {
            PolicyCommand::Test(a) => {
                assert_eq!((a.expect, a.output.as_str()), (Some(3), "json"));
                assert_eq!((a.mode, a.rate_limits), (Some(Mode::Monitor), true));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            parse(&["policy", "test", "p.yaml"]).is_err(),
            "--events is required"
        );
        assert!(
            parse(&[
                "policy",
                "test",
                "p.yaml",
                "--events",
                "e",
                "--expect",
                "1",
                "--expect-none"
            ])
            .is_err()
        );
        assert!(
            parse(&[
                "policy", "test", "p.yaml", "--events", "e", "--expect", "-1"
            ])
            .is_err()
        );
        assert!(parse(&["policy", "test", "p.yaml", "--events", "e", "-o", "yaml"]).is_err());
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
