//! `vigil policy test` as a CI pipeline runs it: Tetragon's example policies (shared/policies,
//! found as api/tests/policy_corpus.rs finds them; override with VIGIL_POLICY_CORPUS) over
//! Tetragon's sample events (shared/events, copied into api/src/events/testdata), expectations
//! and exit codes, and clear errors for bad input.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn samples() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../api/src/events/testdata/tetragon-sample-events.jsonl")
        .to_string_lossy()
        .into_owned()
}

fn corpus(name: &str) -> String {
    let dir = std::env::var_os("VIGIL_POLICY_CORPUS")
        .map(PathBuf::from)
        .or_else(|| {
            let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            manifest
                .ancestors()
                .map(|a| a.join("shared/policies/tetragon-examples"))
                .chain([PathBuf::from("/work/shared/policies/tetragon-examples")])
                .find(|p| p.is_dir())
        })
        .expect("Tetragon example corpus not found; set VIGIL_POLICY_CORPUS");
    dir.join(name).to_string_lossy().into_owned()
}

fn vigil(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        // vigil may exit before reading (bad arguments): a broken pipe is its answer.
        let _ = input.write_all(s.as_bytes());
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn test_on_samples(policy: &str, extra: &[&str]) -> Output {
    let events = samples();
    let mut args = vec!["policy", "test", policy, "--events", &events];
    args.extend_from_slice(extra);
    vigil(&args, None)
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn reports_matches_per_selector_with_the_action_and_counts() {
    let o = test_on_samples(&corpus("filename_monitoring.yaml"), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    assert!(
        text.starts_with("79 line(s): 17 hook event(s), 62 process exec/exit event(s)\n"),
        "{text}"
    );
    assert!(
        text.contains("policy file-monitoring (mode enforce): 8 matched, 0 unknown, 9 hook event(s) for other hooks"),
        "{text}"
    );
    assert!(
        text.contains("  spec.kprobes[0] kretprobe security_file_permission: 8 event(s)\n    selector 0 → Post: 8 event(s) (8 posted)\n"),
        "{text}"
    );
    assert!(
        text.contains("      line 53: /usr/bin/cat (pid 128): /etc/passwd, 4 → returned 0\n"),
        "{text}"
    );
    assert!(text.contains("  spec.kprobes[1] kretprobe security_mmap_file: no events\n"));
    assert!(
        text.ends_with("\n8 event(s) matched, 0 unknown\n"),
        "{text}"
    );
    assert!(err(&o).is_empty(), "{}", err(&o));
}

#[test]
fn expect_sets_the_exit_status() {
    let policy = corpus("tcp-connect.yaml");
    let o = test_on_samples(&policy, &["--expect", "5"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        out(&o).contains("every call (no selectors) → Post: 3 event(s)"),
        "{}",
        out(&o)
    );
    assert!(out(&o).ends_with("expectation met: 5 event(s) matched, expected 5\n"));
    let o = test_on_samples(&policy, &["--expect", "4"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        err(&o),
        "vigil policy test: expectation NOT met: 5 event(s) matched, expected 4\n"
    );
    let o = test_on_samples(&policy, &["--expect-none"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("expected 0"), "{}", err(&o));
    let o = test_on_samples(&corpus("write.yaml"), &["--expect-none"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
}

#[test]
fn json_output_lists_every_line() {
    let o = test_on_samples(
        &corpus("lsm_file_open.yaml"),
        &["-o", "json", "--expect", "1"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["input"]["hook_events"], 17);
    let p = &v["policies"][0];
    assert_eq!(p["name"], "lsm-file-open");
    assert_eq!(p["matched"], 1);
    let h = &p["hooks"][0];
    assert_eq!(h["target"], "lsm file_open");
    assert_eq!(h["selectors"][0]["lines"], serde_json::json!([52]));
    assert_eq!(h["selectors"][0]["actions"], serde_json::json!(["Post"]));
    // The security_file_open kprobe events stand for the same hook, by another binary.
    assert_eq!(h["no_match"], serde_json::json!([77, 78, 79]));
    assert_eq!(
        h["notes"]["kprobe event on security_file_open evaluated for LSM hook file_open"],
        3
    );
    assert_eq!(v["expectation"]["result"], "met");
}

const KILL_CAT: &str = "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: no-cat-passwd}
spec:
  lsmhooks:
  - hook: file_open
    args: [{index: 0, type: file}]
    selectors:
    - matchBinaries: [{operator: In, values: [/usr/bin/cat]}]
      matchArgs: [{index: 0, operator: Equal, values: [/etc/passwd]}]
      matchActions: [{action: Sigkill}]
";

#[test]
fn enforcing_actions_show_the_mode() {
    let dir = tempfile::tempdir().unwrap();
    let p = file(&dir, "kill.yaml", KILL_CAT);
    let o = test_on_samples(&p, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        out(&o).contains("    selector 0 → Sigkill: 1 event(s) (1 posted)\n"),
        "{}",
        out(&o)
    );
    let o = test_on_samples(&p, &["--mode", "monitor", "--expect", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("(mode monitor)"), "{}", out(&o));
    assert!(
        out(&o).contains("selector 0 → Sigkill [monitor]: 1 event(s)"),
        "{}",
        out(&o)
    );
}

#[test]
fn an_expectation_that_depends_on_missing_data_is_undecided() {
    let dir = tempfile::tempdir().unwrap();
    let p = file(
        &dir,
        "ns.yaml",
        "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: containers-only}
spec:
  kprobes:
  - call: tcp_connect
    syscall: false
    args: [{index: 0, type: sock}]
    selectors:
    - matchNamespaces: [{namespace: Net, operator: NotIn, values: [host_ns]}]
      matchActions: [{action: Sigkill}]
",
    );
    let o = test_on_samples(&p, &["--expect-none"]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(
        out(&o)
            .contains("unknown: 1 event(s): selector 0: matchNamespaces[0] (Net): event has no ns"),
        "{}",
        out(&o)
    );
    assert!(
        err(&o).contains("expectation undecided: 0 event(s) matched and 1 could not be decided"),
        "{}",
        err(&o)
    );
    // An expectation the unknown events cannot reach is decided anyway.
    let o = test_on_samples(&p, &["--expect", "5"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
}

#[test]
fn rate_limits_are_replayed_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let p = file(
        &dir,
        "rl.yaml",
        "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: rl}
spec:
  lsmhooks:
  - hook: file_open
    args: [{index: 0, type: file}]
    selectors:
    - matchActions: [{action: Post, rateLimit: 1m, rateLimitScope: process}]
",
    );
    let line = |t: &str| {
        format!(
            r#"{{"process_lsm":{{"process":{{"pid":7,"tid":7,"binary":"/usr/bin/cat"}},"function_name":"file_open","args":[{{"file_arg":{{"path":"/etc/passwd"}}}}]}},"time":"2026-01-01T00:{t}Z"}}"#
        )
    };
    let events = [line("00:00"), line("00:30"), line("01:00"), line("01:59")].join("\n");
    let e = file(&dir, "events.jsonl", &events);
    let o = vigil(
        &["policy", "test", &p, "--events", &e, "--rate-limits"],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        out(&o).contains(
            "selector 0 → Post (rateLimit 60000 ms): 4 event(s) (2 posted, 2 rate limited)"
        ),
        "{}",
        out(&o)
    );
    let o = vigil(&["policy", "test", &p, "--events", &e], None);
    assert!(
        out(&o).contains("(0 posted, 4 posted unless rate limited)"),
        "{}",
        out(&o)
    );
}

#[test]
fn node_labels_decide_host_selectors_when_events_have_none() {
    let dir = tempfile::tempdir().unwrap();
    let p = file(
        &dir,
        "host.yaml",
        "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: db-hosts}
spec:
  hostSelector: {matchLabels: {role: db}}
  kprobes:
  - call: tcp_close
    syscall: false
    args: [{index: 0, type: sock}]
",
    );
    let o = test_on_samples(&p, &["--expect", "3"]);
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(
        out(&o).contains("event has no node_labels (hostSelector)"),
        "{}",
        out(&o)
    );
    let o = test_on_samples(&p, &["--expect", "3", "--node-labels", "role=db,zone=a"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let o = test_on_samples(&p, &["--expect-none", "--node-labels", "role=web"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(
        out(&o).contains(
            "out of the policy's scope: 3 event(s): hostSelector does not select this node's labels"
        ),
        "{}",
        out(&o)
    );
    let o = test_on_samples(&p, &["--node-labels", "role"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("\"role\" has no '='"), "{}", err(&o));
}

#[test]
fn loss_markers_and_policy_demotions_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let p = file(&dir, "kill.yaml", KILL_CAT);
    let first = std::fs::read_to_string(samples())
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let events = format!(
        "{first}\n\
         {{\"rate_limit_info\":{{\"number_of_dropped_process_events\":\"3\"}},\"node_name\":\"n\"}}\n\
         {{\"vigil_policy_demoted\":{{\"policy_name\":\"p\",\"action\":\"monitor\",\"cpu_percent\":3.2,\"budget_percent\":1,\"window_seconds\":\"10\"}},\"node_name\":\"n\"}}\n"
    );
    let e = file(&dir, "events.jsonl", &events);
    let o = vigil(
        &["policy", "test", &p, "--events", &e, "--expect-none"],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        out(&o).starts_with(
            "3 line(s): 0 hook event(s), 1 process exec/exit event(s), 2 of other kinds skipped\n"
        ),
        "{}",
        out(&o)
    );
}

#[test]
fn bad_input_is_reported_with_its_place_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let p = file(&dir, "kill.yaml", KILL_CAT);
    // A missing events file.
    let o = vigil(
        &["policy", "test", &p, "--events", "/nonexistent/events.json"],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        err(&o),
        "vigil policy test: cannot open /nonexistent/events.json: No such file or directory (os error 2)\n"
    );
    // Malformed lines (here: a known field of the wrong type, and not JSON) are named by line
    // number; other Tetragon event kinds are skipped.
    let first = std::fs::read_to_string(samples())
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let events = format!(
        "{first}\n{{\"process_kprobe\":{{\"function_name\":5}}}}\n{{\"process_throttle\":{{}}}}\n\nnot json\n"
    );
    let e = file(&dir, "events.jsonl", &events);
    let o = vigil(
        &["policy", "test", &p, "--events", &e, "--expect-none"],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    let stderr = err(&o);
    assert!(
        stderr.contains(&format!(
            "{e}:2: column 36: invalid type: integer `5`, expected a string"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{e}:5: column 2: expected ident")),
        "{stderr}"
    );
    assert!(stderr.contains("2 malformed line(s)"), "{stderr}");
    assert!(
        out(&o).starts_with("5 line(s): 0 hook event(s), 1 process exec/exit event(s), 1 of other kinds skipped, 2 malformed\n"),
        "{}",
        out(&o)
    );
    // A policy that does not compile: every error with its field path.
    let bad = file(&dir, "bad.yaml", &KILL_CAT.replace("Sigkill", "Sigkil"));
    let o = vigil(&["policy", "test", &bad, "--events", &e], None);
    assert_eq!(o.status.code(), Some(2));
    let stderr = err(&o);
    assert!(
        stderr.starts_with(&format!(
            "vigil policy test: {bad}: the policy does not compile:\n"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "spec.lsmhooks[0].selectors[0].matchActions[0].action: invalid value \"Sigkil\""
        ),
        "{stderr}"
    );
    assert!(out(&o).is_empty());
    // Both from stdin.
    let o = vigil(&["policy", "test", "-", "--events", "-"], Some(KILL_CAT));
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("cannot both come from stdin"));
}

#[test]
fn the_policy_may_come_from_stdin_and_events_too() {
    let events = std::fs::read_to_string(samples()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = file(&dir, "kill.yaml", KILL_CAT);
    let o = vigil(
        &["policy", "test", &p, "--events", "-", "--expect", "1"],
        Some(&events),
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let e = samples();
    let o = vigil(
        &["policy", "test", "-", "--events", &e, "--expect", "1"],
        Some(KILL_CAT),
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
}

#[test]
fn every_example_policy_that_compiles_runs_over_the_samples() {
    let dir = PathBuf::from(corpus(""));
    let mut files = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut ran = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let compiles = vigil_api::policy::compile_yaml(&text).is_ok();
        let o = test_on_samples(f.to_str().unwrap(), &["-o", "json"]);
        if compiles {
            assert_eq!(o.status.code(), Some(0), "{}: {}", f.display(), err(&o));
            let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
            assert_eq!(v["input"]["hook_events"], 17, "{}", f.display());
            ran += 1;
        } else {
            assert_eq!(o.status.code(), Some(2), "{}", f.display());
        }
    }
    assert!(ran >= 30, "only {ran} policies ran");
}

#[test]
fn fields_a_newer_tetragon_writes_are_ignored_and_named() {
    // The samples with fields this version does not know, as a newer Tetragon may write them:
    // the verdicts are the same, the expectation is checked, and the report names the fields.
    let dir = tempfile::tempdir().unwrap();
    let p = file(&dir, "kill.yaml", KILL_CAT);
    let plain = vigil(
        &["policy", "test", &p, "--events", &samples(), "-o", "json"],
        None,
    );
    assert_eq!(plain.status.code(), Some(0), "{}", err(&plain));
    let mut newer = String::new();
    for line in std::fs::read_to_string(samples()).unwrap().lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        v["future_top_level"] = serde_json::json!({"a": 1});
        for kind in ["process_exec", "process_kprobe", "process_exit"] {
            if let Some(ev) = v.get_mut(kind) {
                ev["process"]["future_process_field"] = serde_json::json!(7);
            }
        }
        newer.push_str(&v.to_string());
        newer.push('\n');
    }
    let e = file(&dir, "newer.jsonl", &newer);
    let o = vigil(&["policy", "test", &p, "--events", &e, "-o", "json"], None);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let a: serde_json::Value = serde_json::from_str(&out(&plain)).unwrap();
    let b: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(a["policies"], b["policies"]);
    assert_eq!(a["expectation"], b["expectation"]);
    assert_eq!(b["input"]["malformed"], 0);
    let lines = a["input"]["lines"].as_u64().unwrap();
    assert_eq!(b["input"]["unknown_fields"]["future_top_level"], lines);
    assert!(
        b["input"]["unknown_fields"]["process_kprobe.process.future_process_field"]
            .as_u64()
            .unwrap()
            > 0,
        "{}",
        b["input"]
    );
    assert_eq!(a["input"]["unknown_fields"], serde_json::json!({}));
    // The text report says so.
    let o = vigil(&["policy", "test", &p, "--events", &e], None);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        out(&o).contains(&format!(
            "fields this version does not know, ignored (they cannot change a verdict): future_top_level ({lines} event(s)), "
        )),
        "{}",
        out(&o)
    );
}
