//! `vigil observe`: print events from a running sensor, a JSON-lines file or stdin, compact or
//! as JSON.
//!
//! Source rule: `--server ADDR` reads the sensor's GetEvents stream (filters applied by the
//! sensor); `--file` reads that file (`-` = stdin); with neither, a terminal on stdin means
//! "the local sensor" (the default socket) and anything else (a pipe, a file) is read as
//! JSON lines.
//!
//! Lines that do not decode are reported on stderr with their line number and skipped; the
//! command then exits with status 1 once the input is exhausted. Input that cannot be opened or
//! read is a one-line error and status 2.

use crate::compact;
use crate::filter::Filter;
use crate::lenient_event;
use crate::remote;
use anyhow::Context as _;
use clap::{Args, ValueEnum};
use regex::Regex;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use vigil_api::events::{EventError, EventKind};

#[derive(Args, Debug)]
pub struct ObserveArgs {
    /// Read events from a running sensor: a unix socket path, unix://PATH, http://HOST:PORT or
    /// https://HOST:PORT. Default when neither --server nor --file is given and stdin is a
    /// terminal: /var/run/vigil/vigil.sock.
    #[arg(long, value_name = "ADDR", conflicts_with = "file")]
    server: Option<String>,
    #[command(flatten)]
    tls: remote::TlsArgs,
    /// Read events (JSON lines) from FILE; `-` reads stdin (also the default when stdin is not
    /// a terminal).
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// With --server: when the stream ends or the sensor is unreachable, retry every second.
    #[arg(long)]
    reconnect: bool,
    /// With --server: only events of these process ids (repeatable or comma-separated).
    #[arg(long, value_name = "PID", value_delimiter = ',')]
    pid: Vec<u32>,
    /// With --server: only events of these process ids and their descendants (comma-separated).
    #[arg(long = "pid-set", value_name = "PID", value_delimiter = ',')]
    pid_set: Vec<u32>,
    /// With --server: keep only these fields of each event, as paths inside the event
    /// (e.g. `process.binary,process.pid`); node_name and time are always kept.
    #[arg(long = "include-fields", value_name = "PATHS", value_delimiter = ',')]
    include_fields: Vec<String>,
    /// With --server: remove these fields of each event (e.g. `parent,process.arguments`).
    #[arg(long = "exclude-fields", value_name = "PATHS", value_delimiter = ',')]
    exclude_fields: Vec<String>,
    /// With --server: only events of these policies (repeatable or comma-separated).
    #[arg(long = "policy-names", value_name = "NAMES", value_delimiter = ',')]
    policy_names: Vec<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Compact)]
    output: Output,
    /// Only events from pods in these Kubernetes namespaces (repeatable or comma-separated).
    #[arg(long, value_name = "NS", value_delimiter = ',')]
    namespace: Vec<String>,
    /// Only events from pods whose name matches REGEX (repeatable: any may match).
    #[arg(long, value_name = "REGEX", value_parser = parse_regex)]
    pod: Vec<Regex>,
    /// Only events whose process binary matches REGEX (repeatable: any may match).
    #[arg(long, value_name = "REGEX", value_parser = parse_regex)]
    process: Vec<Regex>,
    /// Only these event types, comma-separated: process_exec, process_exit, process_kprobe,
    /// process_tracepoint, process_uprobe, process_lsm, rate_limit_info, vigil_policy_demoted
    /// (upper case accepted too).
    #[arg(long = "event-types", value_name = "TYPES", value_delimiter = ',', value_parser = parse_kind)]
    event_types: Vec<EventKind>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    /// One short line per event.
    Compact,
    /// The event re-encoded as one JSON line.
    Json,
}

fn parse_regex(s: &str) -> Result<Regex, String> {
    Regex::new(s).map_err(|e| e.to_string())
}

fn parse_kind(s: &str) -> Result<EventKind, String> {
    s.parse::<EventKind>().map_err(|e| e.to_string())
}

pub fn run(args: ObserveArgs) -> anyhow::Result<i32> {
    use std::io::IsTerminal;
    let server = match (&args.server, &args.file) {
        (Some(s), _) => Some(s.clone()),
        (None, None) if io::stdin().is_terminal() => Some(remote::DEFAULT_SOCKET.to_string()),
        _ => None,
    };
    let namespaces: Vec<String> = args
        .namespace
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(server) = server {
        let filter = remote::RemoteFilter {
            namespaces,
            pods: args.pod.iter().map(|r| r.as_str().to_string()).collect(),
            processes: args
                .process
                .iter()
                .map(|r| r.as_str().to_string())
                .collect(),
            kinds: args.event_types.clone(),
            pids: args.pid.clone(),
            pid_set: args.pid_set.clone(),
            policy_names: args.policy_names.clone(),
            include_fields: args.include_fields.clone(),
            exclude_fields: args.exclude_fields.clone(),
        };
        return remote::observe(
            &remote::Target::new(&server, &args.tls),
            &filter,
            args.output == Output::Json,
            args.reconnect,
        );
    }
    if !args.pid.is_empty()
        || !args.pid_set.is_empty()
        || !args.policy_names.is_empty()
        || !args.include_fields.is_empty()
        || !args.exclude_fields.is_empty()
        || args.reconnect
        || !args.tls.is_empty()
    {
        eprintln!(
            "vigil observe: --pid, --pid-set, --policy-names, --include-fields, --exclude-fields, --reconnect and the --tls-* options need --server"
        );
        return Ok(2);
    }
    let filter = Filter {
        namespaces,
        pods: args.pod,
        processes: args.process,
        kinds: args.event_types,
    };
    let input: Box<dyn BufRead> = match &args.file {
        Some(path) if path.as_os_str() != "-" => {
            match File::open(path) {
                Ok(file) => Box::new(BufReader::new(file)),
                Err(e) => {
                    // One line, whatever RUST_BACKTRACE says; status 2 = no input at all.
                    eprintln!("vigil observe: cannot open {}: {e}", path.display());
                    return Ok(2);
                }
            }
        }
        _ => Box::new(BufReader::new(io::stdin().lock())),
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    observe(input, &mut out, &filter, args.output)
}

/// Reads every line, prints what passes the filter, returns the exit status.
fn observe(
    mut input: impl BufRead,
    out: &mut impl Write,
    filter: &Filter,
    output: Output,
) -> anyhow::Result<i32> {
    let mut failed = false;
    let mut buf = Vec::new();
    let mut number = 0usize;
    let mut unknown = std::collections::BTreeSet::new();
    loop {
        buf.clear();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                // e.g. --file pointing at a directory: one line, status 2 like a missing file.
                eprintln!("vigil observe: cannot read input: {e}");
                return Ok(2);
            }
        }
        number += 1;
        let line = match std::str::from_utf8(&buf) {
            Ok(l) => l.trim(),
            Err(e) => {
                eprintln!("vigil observe: line {number}: not UTF-8: {e}");
                failed = true;
                continue;
            }
        };
        if line.is_empty() {
            continue;
        }
        let ev = match lenient_event::decode(line) {
            Ok((ev, dropped)) => {
                // Fields a newer Tetragon or Vigil wrote: said once per field, not per line.
                let new: Vec<String> = dropped
                    .into_iter()
                    .filter(|p| unknown.insert(p.clone()))
                    .collect();
                if !new.is_empty() {
                    eprintln!(
                        "vigil observe: line {number}: fields this version does not know, left out of the output: {}",
                        new.join(", ")
                    );
                }
                ev
            }
            Err(EventError::Decode {
                message, column, ..
            }) => {
                eprintln!("vigil observe: line {number}, column {column}: {message}");
                failed = true;
                continue;
            }
            Err(e) => {
                eprintln!("vigil observe: line {number}: {e}");
                failed = true;
                continue;
            }
        };
        if !filter.matches(&ev) {
            continue;
        }
        let text = match output {
            Output::Json => ev.to_json()?,
            Output::Compact => match compact::render(&ev) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("vigil observe: line {number}: cannot render: {e}");
                    failed = true;
                    continue;
                }
            },
        };
        if let Err(e) = writeln!(out, "{text}") {
            // A closed pipe (`vigil observe | head`) ends output quietly.
            if e.kind() == io::ErrorKind::BrokenPipe {
                return Ok(i32::from(failed));
            }
            return Err(e).context("cannot write output");
        }
    }
    match out.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            return Err(e).context("cannot write output");
        }
        _ => {}
    }
    Ok(i32::from(failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_on(input: &str, filter: &Filter, output: Output) -> (String, i32) {
        let mut out = Vec::new();
        let code = observe(input.as_bytes(), &mut out, filter, output).unwrap();
        (String::from_utf8(out).unwrap(), code)
    }

    const EXEC: &str =
        r#"{"process_exec":{"process":{"binary":"/bin/ls","arguments":"-l /"}},"node_name":"n"}"#;

    #[test]
    fn blank_lines_are_skipped_and_bad_lines_fail_at_the_end() {
        let input = format!("\n{EXEC}\n{{\"bogus\":1}}\n  \n{EXEC}");
        let (out, code) = run_on(&input, &Filter::default(), Output::Compact);
        assert_eq!(out, "🚀 process n /bin/ls \"-l /\"\n".repeat(2));
        assert_eq!(code, 1);
    }

    #[test]
    fn fields_this_version_does_not_know_are_left_out_not_fatal() {
        let newer = EXEC.replace(
            r#""binary":"/bin/ls""#,
            r#""binary":"/bin/ls","future_field":{"a":1}"#,
        );
        let input = format!("{newer}\n{newer}\n");
        let (out, code) = run_on(&input, &Filter::default(), Output::Compact);
        assert_eq!(code, 0);
        assert_eq!(out, "🚀 process n /bin/ls \"-l /\"\n".repeat(2));
        let (json, code) = run_on(&input, &Filter::default(), Output::Json);
        assert_eq!(code, 0);
        let (want, _) = run_on(
            &format!("{EXEC}\n{EXEC}\n"),
            &Filter::default(),
            Output::Json,
        );
        assert_eq!(json, want);
    }

    #[test]
    fn json_output_is_the_event_again() {
        let (out, code) = run_on(EXEC, &Filter::default(), Output::Json);
        assert_eq!(code, 0);
        let a: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        let b: serde_json::Value = serde_json::from_str(EXEC).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn filtered_out_events_print_nothing() {
        let f = Filter {
            kinds: vec![EventKind::ProcessExit],
            ..Default::default()
        };
        let (out, code) = run_on(EXEC, &f, Output::Compact);
        assert_eq!(out, "");
        assert_eq!(code, 0);
    }
}
