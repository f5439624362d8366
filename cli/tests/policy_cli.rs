//! `vigil policy validate|compile` as a user runs them.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const GOOD: &str = include_str!("../../api/tests/fixtures/policies/network.yaml");
const GOOD2: &str = include_str!("../../api/tests/fixtures/policies/lsm-enforce.yaml");
const BAD: &str = "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: bad}
spec:
  kprobes:
  - call: fn_x
    syscall: false
    args: [{index: 9, type: int}]
    selectors: [{matchActions: [{action: Signal, argSig: 99}]}]
";

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
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn validate_good_file_prints_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let f = file(&dir, "good.yaml", GOOD);
    let out = vigil(&["policy", "validate", &f], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{f}: ok: TracingPolicy connect-outside: 2 hook(s), mode enforce\n")
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn validate_prints_every_error_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let good = file(&dir, "good.yaml", GOOD);
    let bad = file(&dir, "bad.yaml", BAD);
    let out = vigil(&["policy", "validate", &good, &bad], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with(&format!(
            "{bad}: spec.kprobes[0].args[0].index: invalid value 9"
        )),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{bad}: spec.kprobes[0].selectors[0].matchActions[0].argSig"
        )),
        "{err}"
    );
    assert!(lines.iter().all(|l| l.contains("accepted: ")));
    // The good file is still reported.
    assert!(text(&out.stdout).contains("connect-outside"));
}

#[test]
fn missing_file_names_the_path() {
    let out = vigil(&["policy", "validate", "/nonexistent/policy.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("/nonexistent/policy.yaml: cannot read:"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
    let out = vigil(&["policy", "compile", "/nonexistent/policy.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("/nonexistent/policy.yaml: cannot read:"));
}

#[test]
fn validate_reads_stdin_and_names_documents() {
    let out = vigil(
        &["policy", "validate", "-"],
        Some(&format!("{GOOD}---\n{BAD}")),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.lines()
            .all(|l| l.starts_with("<stdin>: document[1].spec.kprobes[0]")),
        "{err}"
    );
    assert!(text(&out.stdout).contains("<stdin>: ok: TracingPolicy connect-outside"));
}

#[test]
fn compile_prints_deterministic_json() {
    let dir = tempfile::tempdir().unwrap();
    let f = file(&dir, "good.yaml", GOOD);
    let a = vigil(&["policy", "compile", &f], None);
    let b = vigil(&["policy", "compile", "-"], Some(GOOD));
    assert_eq!(a.status.code(), Some(0), "{}", text(&a.stderr));
    assert_eq!(a.stdout, b.stdout);
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(v["ir_version"], 1);
    assert_eq!(v["identity"]["name"], "connect-outside");
    assert_eq!(v["hooks"][0]["kind"], "HOOK_KIND_KPROBE");
    assert_eq!(v["hooks"][0]["target"], "tcp_connect");
}

#[test]
fn compile_multi_document_gives_an_array() {
    let out = vigil(
        &["policy", "compile", "-"],
        Some(&format!("{GOOD}---\n{GOOD2}")),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["identity"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["connect-outside", "deny-shadow"]);
}

#[test]
fn compile_invalid_exits_1_without_output() {
    let out = vigil(&["policy", "compile", "-"], Some(BAD));
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(text(&out.stderr).lines().count(), 2);
}

#[test]
fn add_refuses_an_invalid_policy_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let f = file(&dir, "bad.yaml", BAD);
    // The server does not exist: the validator must answer first.
    let out = vigil(
        &["policy", "add", &f, "--server", "/nonexistent/vigil.sock"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let expected = vigil_api::policy::compile_yaml(BAD).unwrap_err();
    for e in expected.iter() {
        assert!(
            err.contains(&format!("vigil policy add: {f}: {e}")),
            "{e} missing from:\n{err}"
        );
    }
    assert!(!err.contains("connect"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn remote_policy_commands_without_a_sensor_are_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let good = file(&dir, "good.yaml", GOOD);
    let sock = dir.path().join("none.sock");
    let sock = sock.to_str().unwrap();
    for args in [
        vec!["policy", "list", "--server", sock],
        vec!["policy", "list", "-o", "json", "--server", sock],
        vec!["policy", "add", &good, "--server", sock],
        vec!["policy", "delete", "x", "--server", sock],
        vec!["policy", "enable", "x", "--server", sock],
        vec!["policy", "disable", "x", "--server", sock],
        vec!["policy", "set-mode", "x", "monitor", "--server", sock],
    ] {
        let out = vigil(&args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("no such socket"), "{args:?}: {err}");
        assert!(err.starts_with("vigil policy "), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
