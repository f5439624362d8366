//! Real Tetragon output must decode strictly and re-encode to the same JSON.

use serde_json::Value;
use vigil_api::events::{EventKind, GetEventsResponse, ProcessFlags, parse_exec_id};

const SAMPLES: &str = include_str!("../src/events/testdata/tetragon-sample-events.jsonl");

fn lines() -> impl Iterator<Item = (usize, &'static str)> {
    SAMPLES.lines().enumerate().map(|(i, l)| (i + 1, l))
}

#[test]
fn every_sample_line_round_trips() {
    let mut count = 0;
    for (n, line) in lines() {
        let ev = GetEventsResponse::from_json(line)
            .unwrap_or_else(|e| panic!("line {n}: decode failed: {e}"));
        let out = ev
            .to_json()
            .unwrap_or_else(|e| panic!("line {n}: encode failed: {e}"));
        let want: Value = serde_json::from_str(line).unwrap();
        let got: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            got, want,
            "line {n}: re-encoded JSON differs\n  in:  {line}\n  out: {out}"
        );
        count += 1;
    }
    assert_eq!(count, 79);
}

#[test]
fn sample_kinds_are_recognised() {
    let mut per_kind = std::collections::BTreeMap::new();
    for (n, line) in lines() {
        let ev = GetEventsResponse::from_json(line).unwrap();
        let kind = ev.kind().unwrap_or_else(|| panic!("line {n}: no kind"));
        *per_kind.entry(kind).or_insert(0) += 1;
        assert!(ev.process().is_some(), "line {n}: no process");
    }
    assert_eq!(per_kind.get(&EventKind::ProcessExec), Some(&31));
    assert_eq!(per_kind.get(&EventKind::ProcessExit), Some(&31));
    assert_eq!(per_kind.get(&EventKind::ProcessKprobe), Some(&16));
    assert_eq!(per_kind.get(&EventKind::ProcessLsm), Some(&1));
}

#[test]
fn sample_flags_and_exec_ids_parse() {
    for (n, line) in lines() {
        let ev = GetEventsResponse::from_json(line).unwrap();
        for p in [ev.process(), ev.parent()].into_iter().flatten() {
            let flags: ProcessFlags = p
                .flags
                .parse()
                .unwrap_or_else(|e| panic!("line {n}: flags {:?}: {e}", p.flags));
            assert_eq!(flags.to_string(), p.flags, "line {n}: flags order");
            let id = parse_exec_id(&p.exec_id).unwrap_or_else(|e| panic!("line {n}: {e}"));
            assert_eq!(id.node, ev.node_name, "line {n}");
            assert_eq!(Some(id.pid), p.pid, "line {n}: pid in exec_id");
            assert_eq!(
                vigil_api::events::exec_id(&id.node, id.ktime_ns, id.pid),
                p.exec_id,
                "line {n}: exec_id re-encoding"
            );
        }
    }
}

/// Adds `"bogus":1` to the object at `path` in the first sample line of `kind` and checks the
/// decode error names the field.
fn assert_rejects_unknown_at(kind: &str, path: &[&str]) {
    let line = lines()
        .map(|(_, l)| l)
        .find(|l| l.starts_with(&format!("{{\"{kind}\"")))
        .unwrap();
    let mut v: Value = serde_json::from_str(line).unwrap();
    let mut obj = &mut v;
    for key in path {
        obj = match key.parse::<usize>() {
            Ok(i) => &mut obj[i],
            Err(_) => &mut obj[*key],
        };
    }
    obj.as_object_mut()
        .unwrap_or_else(|| panic!("{path:?} is not an object"))
        .insert("bogus_field".into(), Value::from(1));
    let err = GetEventsResponse::from_json(&v.to_string()).unwrap_err();
    assert!(
        err.to_string().contains("unknown field `bogus_field`"),
        "{path:?}: {err}"
    );
}

#[test]
fn unknown_fields_are_rejected_everywhere() {
    assert_rejects_unknown_at("process_exec", &[]);
    assert_rejects_unknown_at("process_exec", &["process_exec"]);
    assert_rejects_unknown_at("process_exec", &["process_exec", "process"]);
    assert_rejects_unknown_at("process_exec", &["process_exec", "parent"]);
    assert_rejects_unknown_at("process_exit", &["process_exit"]);
    assert_rejects_unknown_at("process_kprobe", &["process_kprobe"]);
    assert_rejects_unknown_at("process_kprobe", &["process_kprobe", "args", "0"]);
    assert_rejects_unknown_at(
        "process_kprobe",
        &["process_kprobe", "args", "0", "file_arg"],
    );
    assert_rejects_unknown_at("process_kprobe", &["process_kprobe", "return"]);
    assert_rejects_unknown_at("process_lsm", &["process_lsm"]);
}

#[test]
fn unknown_argument_variant_is_rejected() {
    let line =
        r#"{"process_kprobe":{"function_name":"f","args":[{"weird_arg":1}]},"node_name":"n"}"#;
    let err = GetEventsResponse::from_json(line).unwrap_err().to_string();
    assert!(err.contains("unknown field `weird_arg`"), "{err}");
    assert!(
        err.contains("file_arg"),
        "error lists the accepted keys: {err}"
    );
}

#[test]
fn envelope_needs_exactly_one_event() {
    let err = GetEventsResponse::from_json(r#"{"node_name":"n","time":"t"}"#).unwrap_err();
    assert!(err.to_string().contains("no event set"), "{err}");
    let err =
        GetEventsResponse::from_json(r#"{"process_exec":{},"process_exit":{},"node_name":"n"}"#)
            .unwrap_err();
    assert!(
        err.to_string().contains("process_exec, process_exit"),
        "{err}"
    );
    assert!(GetEventsResponse::from_json(r#"{"process_exec":{}}"#).is_ok());
}

#[test]
fn wrong_types_are_rejected() {
    for bad in [
        r#"{"process_exec":{"process":{"pid":"x"}}}"#,
        r#"{"process_exec":{"process":{"pid":-1}}}"#,
        r#"{"process_exec":{"process":{"in_init_tree":1}}}"#,
        r#"{"process_kprobe":{"action":"KPROBE_ACTION_NOPE"}}"#,
        r#"{"process_kprobe":{"args":[{"size_arg":"-4"}]}}"#,
        r#"{"process_kprobe":{"args":[{"int_arg":1,"uint_arg":2}]}}"#,
        "not json",
    ] {
        assert!(
            GetEventsResponse::from_json(bad).is_err(),
            "accepted: {bad}"
        );
    }
}
