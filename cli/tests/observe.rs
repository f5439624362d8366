//! `vigil observe` run as a real binary over Tetragon's sample output.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../api/src/events/testdata")
        .join(name)
}

fn samples() -> PathBuf {
    testdata("tetragon-sample-events.jsonl")
}

fn vigil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .output()
        .expect("run vigil")
}

fn vigil_stdin(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vigil");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn observe_samples(extra: &[&str]) -> Output {
    let file = samples();
    let mut args = vec!["observe", "--file", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    vigil(&args)
}

#[test]
fn compact_output_matches_tetra_line_for_line() {
    let want = std::fs::read_to_string(testdata("tetragon-sample-compact.txt")).unwrap();
    let out = observe_samples(&[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let got = stdout(&out);
    let (got_lines, want_lines): (Vec<_>, Vec<_>) = (got.lines().collect(), want.lines().collect());
    for (i, (g, w)) in got_lines.iter().zip(&want_lines).enumerate() {
        assert_eq!(g, w, "compact line {} differs", i + 1);
    }
    assert_eq!(got_lines.len(), want_lines.len());
    assert_eq!(got_lines.len(), 79);
}

#[test]
fn compact_is_the_default_and_o_compact_is_the_same() {
    assert_eq!(
        stdout(&observe_samples(&[])),
        stdout(&observe_samples(&["-o", "compact"]))
    );
}

#[test]
fn json_output_re_encodes_every_event() {
    let out = observe_samples(&["-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let input = std::fs::read_to_string(samples()).unwrap();
    let got = stdout(&out);
    assert_eq!(got.lines().count(), 79);
    for (i, (g, w)) in got.lines().zip(input.lines()).enumerate() {
        let g: serde_json::Value = serde_json::from_str(g).unwrap();
        let w: serde_json::Value = serde_json::from_str(w).unwrap();
        assert_eq!(g, w, "json line {}", i + 1);
    }
}

#[test]
fn stdin_is_read_without_file_or_with_dash() {
    let input = std::fs::read_to_string(samples()).unwrap();
    let from_file = stdout(&observe_samples(&[]));
    let a = vigil_stdin(&["observe"], &input);
    let b = vigil_stdin(&["observe", "--file", "-"], &input);
    assert_eq!(a.status.code(), Some(0));
    assert_eq!(stdout(&a), from_file);
    assert_eq!(stdout(&b), from_file);
}

#[test]
fn event_types_filter_accepts_both_spellings() {
    let lower = observe_samples(&["--event-types", "process_kprobe,process_lsm"]);
    let upper = observe_samples(&[
        "--event-types",
        "PROCESS_KPROBE",
        "--event-types",
        "PROCESS_LSM",
    ]);
    assert_eq!(lower.status.code(), Some(0));
    let text = stdout(&lower);
    assert_eq!(text, stdout(&upper));
    assert_eq!(text.lines().count(), 17);
    assert!(
        text.lines()
            .all(|l| !l.starts_with("🚀") && !l.starts_with("💥")),
        "{text}"
    );
    assert_eq!(text.lines().filter(|l| l.starts_with("🔒 LSM")).count(), 1);

    let exits = stdout(&observe_samples(&["--event-types", "process_exit"]));
    assert_eq!(exits.lines().count(), 31);
    assert!(exits.lines().all(|l| l.starts_with("💥 exit")));
}

#[test]
fn unknown_event_type_is_a_usage_error() {
    let out = observe_samples(&["--event-types", "process_loader"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("process_loader"), "{}", stderr(&out));
}

#[test]
fn process_filter_matches_binary_regex() {
    let out = observe_samples(&["--process", "^/usr/bin/(cat|head)$"]);
    let text = stdout(&out);
    // cat /etc/passwd: exec, lsm, 2 reads, exit; head: exec, read, exit; cat /etc/shadow: exec, exit
    assert_eq!(text.lines().count(), 10, "{text}");
    assert!(
        text.lines()
            .all(|l| l.contains(" /usr/bin/cat ") || l.contains(" /usr/bin/head ")),
        "{text}"
    );
    let none = stdout(&observe_samples(&["--process", "nomatch"]));
    assert_eq!(none, "");
}

#[test]
fn bad_regex_is_a_usage_error() {
    let out = observe_samples(&["--process", "("]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--process"), "{}", stderr(&out));
}

/// Sample events rewritten to carry pod metadata, for the namespace and pod filters.
fn pod_events() -> String {
    let mut lines = Vec::new();
    for (ns, pod, bin) in [
        ("default", "web-1", "/bin/a"),
        ("prod", "web-2", "/bin/b"),
        ("prod", "db-0", "/bin/c"),
        ("kube-system", "coredns-x", "/bin/d"),
    ] {
        lines.push(format!(
            r#"{{"process_exec":{{"process":{{"binary":"{bin}","pod":{{"namespace":"{ns}","name":"{pod}"}}}}}},"node_name":"n"}}"#
        ));
    }
    // a host process without a pod
    lines.push(r#"{"process_exec":{"process":{"binary":"/bin/e"}},"node_name":"n"}"#.into());
    lines.join("\n") + "\n"
}

#[test]
fn namespace_filter_repeatable_and_comma_separated() {
    let input = pod_events();
    let out = vigil_stdin(&["observe", "--namespace", "prod"], &input);
    assert_eq!(
        stdout(&out),
        "🚀 process prod/web-2 /bin/b \n🚀 process prod/db-0 /bin/c \n"
    );
    let a = stdout(&vigil_stdin(
        &["observe", "--namespace", "default,kube-system"],
        &input,
    ));
    let b = stdout(&vigil_stdin(
        &[
            "observe",
            "--namespace",
            "default",
            "--namespace",
            "kube-system",
        ],
        &input,
    ));
    assert_eq!(a, b);
    assert_eq!(
        a,
        "🚀 process default/web-1 /bin/a \n🚀 process kube-system/coredns-x /bin/d \n"
    );
    // the samples are host events: no pod, so nothing matches
    assert_eq!(stdout(&observe_samples(&["--namespace", "default"])), "");
}

#[test]
fn pod_filter_is_a_regex_on_the_pod_name() {
    let input = pod_events();
    let out = vigil_stdin(&["observe", "--pod", "^web-"], &input);
    assert_eq!(
        stdout(&out),
        "🚀 process default/web-1 /bin/a \n🚀 process prod/web-2 /bin/b \n"
    );
    let both = vigil_stdin(
        &["observe", "--pod", "^web-", "--namespace", "prod"],
        &input,
    );
    assert_eq!(stdout(&both), "🚀 process prod/web-2 /bin/b \n");
}

#[test]
fn bad_lines_are_reported_skipped_and_fail_the_run() {
    let input = std::fs::read_to_string(samples()).unwrap();
    let mut lines: Vec<&str> = input.lines().collect();
    lines.insert(2, "{not json");
    lines.insert(
        5,
        r#"{"process_exec":{"process":{"binary":5}},"node_name":"n"}"#,
    );
    lines.insert(7, r#"{"node_name":"n"}"#);
    let out = vigil_stdin(&["observe"], &(lines.join("\n") + "\n"));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let err_lines: Vec<&str> = err.lines().collect();
    assert_eq!(err_lines.len(), 3, "{err}");
    assert!(
        err_lines[0].starts_with("vigil observe: line 3, column "),
        "{err}"
    );
    assert!(
        err_lines[1].starts_with("vigil observe: line 6, column "),
        "{err}"
    );
    assert!(err_lines[1].contains("invalid type: integer `5`"), "{err}");
    assert!(err_lines[2].starts_with("vigil observe: line 8"), "{err}");
    assert!(err_lines[2].contains("no event set"), "{err}");
    // every good line is still printed
    assert_eq!(stdout(&out), stdout(&observe_samples(&[])));
}

#[test]
fn missing_file_is_a_one_line_error() {
    let out = vigil(&["observe", "--file", "/nonexistent/events.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/events.jsonl"), "{err}");
    assert!(err.contains("No such file"), "{err}");
}

#[test]
fn unreadable_input_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = vigil(&["observe", "--file", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("cannot read input"), "{err}");
}

#[test]
fn getevents_alias_works() {
    let file = samples();
    let out = vigil(&[
        "getevents",
        "--file",
        file.to_str().unwrap(),
        "--event-types",
        "process_lsm",
    ]);
    assert_eq!(stdout(&out), "🔒 LSM     tetravm /usr/bin/cat file_open\n");
}

#[test]
fn a_newer_tetragons_fields_are_left_out_and_said_once() {
    // Every sample line with a field this version does not know: the compact output is the
    // same as for the samples, and stderr names the field once, not once per line.
    let samples = std::fs::read_to_string(samples()).unwrap();
    let mut newer = String::new();
    for line in samples.lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        v["future_top_level"] = serde_json::json!([1, 2]);
        newer.push_str(&v.to_string());
        newer.push('\n');
    }
    let plain = observe_samples(&[]);
    let o = vigil_stdin(&["observe"], &newer);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), stdout(&plain));
    assert_eq!(
        stderr(&o),
        "vigil observe: line 1: fields this version does not know, left out of the output: future_top_level\n"
    );
}
