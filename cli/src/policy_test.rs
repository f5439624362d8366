//! `vigil policy test POLICY --events FILE`: replay recorded events (JSON lines, Vigil's or
//! Tetragon's) through a policy with the kernel programs' semantics and report, per hook and
//! selector, which events would have matched and what the actions would have done.
//!
//! Exit codes: 0 the expectation holds (or none was given); 1 it does not; 3 it cannot be
//! decided (events lack data a selector needs); 2 bad input (unreadable file, malformed event
//! line, a policy that does not compile).

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};

use clap::Args;
use serde_json::{Value, json};
use vigil_api::events::{EventError, EventKind};
use vigil_api::policy::eval::{Evaluator, EventView, Replay, Verdict};
use vigil_api::policy::ir::{PolicyIr, PolicyMode};
use vigil_api::policy::{self, PolicyErrors};

use crate::lenient_event;
use crate::policy::Mode;
use crate::policy_test_report::{self as report, InputTally, PolicyTally};

pub const EXIT_NOT_MET: i32 = 1;
pub const EXIT_INPUT: i32 = 2;
pub const EXIT_UNDECIDED: i32 = 3;

/// Event kinds Tetragon (or Vigil) writes that no hook of a policy produces: skipped, not
/// errors.
const OTHER_KINDS: [&str; 6] = [
    "process_loader",
    "process_throttle",
    "process_usdt",
    "rate_limit_info",
    "test",
    "vigil_policy_demoted",
];

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct TestArgs {
    /// Policy manifest (YAML, several documents allowed), or `-` for stdin.
    #[arg(value_name = "POLICY|-")]
    pub policy: String,
    /// Recorded events, one JSON object per line (`vigil observe -o json`, an export file,
    /// Tetragon's JSON export), or `-` for stdin.
    #[arg(long, value_name = "FILE|-")]
    pub events: String,
    /// Fail (exit 1) unless no event matches.
    #[arg(long, conflicts_with = "expect")]
    pub expect_none: bool,
    /// Fail (exit 1) unless exactly N events match (summed over the policies of the file).
    #[arg(long, value_name = "N")]
    pub expect: Option<usize>,
    /// Output format: a text report, or one JSON object with every line number.
    #[arg(short = 'o', long, default_value = "text", value_parser = ["text", "json"])]
    pub output: String,
    /// Replay rateLimit: apply it over the events in file order, with their own times (without
    /// it, a rate-limited Post counts as "posted unless rate limited").
    #[arg(long)]
    pub rate_limits: bool,
    /// Evaluate as if the policy ran in this mode (default: the policy's own).
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Matched events listed per selector in the text report (0: counts only).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub max_lines: usize,
    /// The node's labels (k=v,k2=v2), for hostSelector and nodeSelector, where events carry
    /// no `node_labels` (Vigil's do not): as the sensor's --node-labels.
    #[arg(long, value_name = "LABELS", value_parser = parse_labels)]
    pub node_labels: Option<BTreeMap<String, String>>,
}

fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} has no '='; expected k=v,k2=v2"))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("{item:?} has an empty key"));
        }
        if out.insert(k.to_string(), v.trim().to_string()).is_some() {
            return Err(format!("label {k:?} is given twice"));
        }
    }
    Ok(out)
}

fn read_all(name: &str) -> Result<String, String> {
    if name == "-" {
        let mut s = String::new();
        io::Read::read_to_string(&mut io::stdin(), &mut s)
            .map_err(|e| format!("<stdin>: cannot read: {e}"))?;
        return Ok(s);
    }
    std::fs::read_to_string(name).map_err(|e| format!("{name}: cannot read: {e}"))
}

fn print_policy_errors(name: &str, errors: &PolicyErrors) {
    let mut err = io::stderr().lock();
    let _ = writeln!(
        err,
        "vigil policy test: {name}: the policy does not compile:"
    );
    for e in errors.iter() {
        let _ = writeln!(err, "{name}: {e}");
    }
}

/// Whether a line that did not decode is an event of a kind the evaluator skips.
fn other_kind(line: &str) -> Option<String> {
    let v: Value = serde_json::from_str(line).ok()?;
    let obj = v.as_object()?;
    OTHER_KINDS
        .iter()
        .find(|k| obj.contains_key(**k))
        .map(|k| k.to_string())
}

/// The policy's evaluators: stateless, or replaying rate limits.
enum Runner<'a> {
    Stateless(Evaluator<'a>),
    Replay(Replay<'a>),
}

impl Runner<'_> {
    fn verdict(&mut self, ev: &EventView) -> Verdict {
        match self {
            Runner::Stateless(e) => e.verdict(ev),
            Runner::Replay(r) => r.next(ev),
        }
    }
}

pub fn run(args: TestArgs) -> anyhow::Result<i32> {
    if args.policy == "-" && args.events == "-" {
        eprintln!("vigil policy test: the policy and the events cannot both come from stdin");
        return Ok(EXIT_INPUT);
    }
    let shown = if args.policy == "-" {
        "<stdin>"
    } else {
        args.policy.as_str()
    };
    let text = match read_all(&args.policy) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vigil policy test: {e}");
            return Ok(EXIT_INPUT);
        }
    };
    let irs: Vec<PolicyIr> = match policy::compile_yaml(&text) {
        Ok(irs) => irs,
        Err(errors) => {
            print_policy_errors(shown, &errors);
            return Ok(EXIT_INPUT);
        }
    };
    if irs.is_empty() {
        eprintln!("vigil policy test: {shown}: no policy in the file");
        return Ok(EXIT_INPUT);
    }
    let mode = args.mode.map(|m| match m {
        Mode::Enforce => PolicyMode::Enforce,
        Mode::Monitor => PolicyMode::Monitor,
    });
    let mut runners = Vec::new();
    let mut tallies = Vec::new();
    for ir in &irs {
        let mut e = match Evaluator::new(ir) {
            Ok(e) => e,
            Err(err) => {
                eprintln!("vigil policy test: {shown}: {err}");
                return Ok(EXIT_INPUT);
            }
        };
        if let Some(m) = mode {
            e = e.with_mode(m);
        }
        let monitor = mode.map_or(ir.mode() == PolicyMode::Monitor, |m| {
            m == PolicyMode::Monitor
        });
        tallies.push(PolicyTally::new(ir, monitor));
        runners.push(if args.rate_limits {
            Runner::Replay(Replay::new(e))
        } else {
            Runner::Stateless(e)
        });
    }
    let input: Box<dyn BufRead> = if args.events == "-" {
        Box::new(BufReader::new(io::stdin().lock()))
    } else {
        match std::fs::File::open(&args.events) {
            Ok(f) => Box::new(BufReader::new(f)),
            Err(e) => {
                eprintln!("vigil policy test: cannot open {}: {e}", args.events);
                return Ok(EXIT_INPUT);
            }
        }
    };
    let events_name = if args.events == "-" {
        "<stdin>"
    } else {
        args.events.as_str()
    };
    let node_labels = args.node_labels.as_ref();
    let input_tally = match replay(input, events_name, node_labels, &mut runners, &mut tallies) {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    finish(&args, &input_tally, &tallies)
}

/// Reads every line and adds each hook event's verdicts; malformed lines are reported.
fn replay(
    mut input: impl BufRead,
    name: &str,
    node_labels: Option<&BTreeMap<String, String>>,
    runners: &mut [Runner<'_>],
    tallies: &mut [PolicyTally],
) -> Result<InputTally, i32> {
    let mut t = InputTally::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("vigil policy test: cannot read {name}: {e}");
                return Err(EXIT_INPUT);
            }
        }
        t.lines += 1;
        let number = t.lines;
        let line = match std::str::from_utf8(&buf) {
            Ok(l) => l.trim(),
            Err(e) => {
                eprintln!("vigil policy test: {name}:{number}: not UTF-8: {e}");
                t.malformed += 1;
                continue;
            }
        };
        if line.is_empty() {
            continue;
        }
        let ev = match lenient_event::decode(line) {
            Ok((ev, dropped)) => {
                for path in dropped {
                    *t.unknown_fields.entry(path).or_default() += 1;
                }
                ev
            }
            Err(e) => {
                if other_kind(line).is_some() {
                    t.skipped += 1;
                    continue;
                }
                match e {
                    EventError::Decode {
                        message, column, ..
                    } => {
                        eprintln!("vigil policy test: {name}:{number}: column {column}: {message}")
                    }
                    e => eprintln!("vigil policy test: {name}:{number}: {e}"),
                }
                t.malformed += 1;
                continue;
            }
        };
        // Loss markers and policy demotions decode, but no hook produced them.
        if ev.kind().is_some_and(|k| !EventKind::PROCESS.contains(&k)) {
            t.skipped += 1;
            continue;
        }
        let Some(mut view) = EventView::from_event(&ev) else {
            t.process_events += 1;
            continue;
        };
        if view.node_labels.is_none() {
            view.node_labels = node_labels.cloned();
        }
        t.hook_events += 1;
        for (r, tally) in runners.iter_mut().zip(tallies.iter_mut()) {
            let v = r.verdict(&view);
            tally.add(number, &view, &v);
        }
    }
    Ok(t)
}

/// Checks the expectation, prints the report, gives the exit status.
fn finish(args: &TestArgs, input: &InputTally, tallies: &[PolicyTally]) -> anyhow::Result<i32> {
    let matched: usize = tallies.iter().map(PolicyTally::matched).sum();
    let unknown: usize = tallies.iter().map(PolicyTally::unknown).sum();
    let want = if args.expect_none {
        Some(0)
    } else {
        args.expect
    };
    // The true count lies in matched ..= matched + unknown.
    let (result, code, message) = if input.malformed > 0 {
        (
            "not checked",
            EXIT_INPUT,
            format!(
                "{} malformed line(s) in {}: fix the input (see the errors above)",
                input.malformed, args.events
            ),
        )
    } else {
        match want {
            None => (
                "none",
                0,
                format!("{matched} event(s) matched, {unknown} unknown"),
            ),
            Some(n) if unknown == 0 && matched == n => (
                "met",
                0,
                format!("expectation met: {matched} event(s) matched, expected {n}"),
            ),
            Some(n) if n < matched || n > matched + unknown => (
                "not met",
                EXIT_NOT_MET,
                format!(
                    "expectation NOT met: {matched} event(s) matched{}, expected {n}",
                    if unknown > 0 {
                        format!(" (and {unknown} unknown)")
                    } else {
                        String::new()
                    }
                ),
            ),
            Some(n) => (
                "undecided",
                EXIT_UNDECIDED,
                format!(
                    "expectation undecided: {matched} event(s) matched and {unknown} could not be decided, expected {n} (see the unknown reasons above)"
                ),
            ),
        }
    };
    let mut out = io::stdout().lock();
    if args.output == "json" {
        let expectation = json!({
            "expected": want,
            "matched": matched,
            "unknown": unknown,
            "result": result,
        });
        let v = report::render_json(input, tallies, expectation);
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        write!(
            out,
            "{}",
            report::render_text(input, tallies, args.max_lines)
        )?;
        writeln!(out, "\n{message}")?;
    }
    out.flush()?;
    if code != 0 {
        eprintln!("vigil policy test: {message}");
    }
    Ok(code)
}
