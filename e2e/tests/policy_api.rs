//! The policy API end to end: a real sensor with its hook engine, the real `vigil policy …`
//! commands over the sensor's unix socket. Run as root (`make test-host`).

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use vigil_e2e::{Sensor, policy_list, vigil_cli, vigil_ok};

/// A tracepoint policy that loads on every kernel and posts nothing (its binary never runs).
const POLICY: &str = "\
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: e2e-sys-enter
spec:
  tracepoints:
  - subsystem: raw_syscalls
    event: sys_enter
    args:
    - index: 4
      type: int64
    selectors:
    - matchBinaries:
      - operator: In
        values:
        - /nonexistent/vigil-e2e-never-runs
";

/// Not a policy the validator accepts: an unknown argument type.
const BAD: &str = "\
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: e2e-bad
spec:
  tracepoints:
  - subsystem: raw_syscalls
    event: sys_enter
    args:
    - index: 4
      type: nosuchtype
";

fn vigil(socket: &Path, args: &[&str]) -> Output {
    vigil_cli(socket, args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(socket: &Path, args: &[&str]) -> String {
    vigil_ok(socket, args)
}

fn list(socket: &Path) -> Vec<Value> {
    policy_list(socket)
}

fn only(socket: &Path) -> Value {
    let l = list(socket);
    assert_eq!(l.len(), 1, "{l:?}");
    l.into_iter().next().unwrap()
}

#[test]
fn add_list_disable_enable_set_mode_delete() {
    let sensor = Sensor::start(&[]);
    let s = sensor.socket.as_path();
    let file = sensor.dir.path().join("policy.yaml");
    std::fs::write(&file, POLICY).unwrap();
    assert!(list(s).is_empty());

    let out = ok(s, &["policy", "add", file.to_str().unwrap()]);
    assert!(out.contains("added policy e2e-sys-enter"), "{out}");

    let p = only(s);
    assert_eq!(p["name"], "e2e-sys-enter");
    assert_eq!(p["namespace"], "");
    assert_eq!(p["state"], "enabled", "{p}");
    assert_eq!(p["mode"], "enforce");
    assert_eq!(p["origin"], "api");
    let hooks = p["hooks"].as_array().expect("hooks");
    assert_eq!(hooks.len(), 1, "{p}");
    assert_eq!(hooks[0]["source"], "spec.tracepoints[0]");
    assert_eq!(hooks[0]["loaded"], true, "{p}");
    assert_eq!(hooks[0]["error"], "");
    assert!(
        !hooks[0]["mechanism"].as_str().unwrap_or("").is_empty(),
        "{p}"
    );
    assert!(p["stats"]["posted"].is_u64(), "{p}");

    let table = ok(s, &["policy", "list"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("e2e-sys-enter"))
        .unwrap_or_else(|| panic!("{table}"));
    assert_eq!(
        &row.split_whitespace().collect::<Vec<_>>()[..5],
        ["e2e-sys-enter", "-", "enabled", "enforce", "1/1"]
    );

    ok(s, &["policy", "disable", "e2e-sys-enter"]);
    assert_eq!(only(s)["state"], "disabled");
    ok(s, &["policy", "enable", "e2e-sys-enter"]);
    assert_eq!(only(s)["state"], "enabled");
    ok(s, &["policy", "set-mode", "e2e-sys-enter", "monitor"]);
    let p = only(s);
    assert_eq!(
        (&p["mode"], &p["state"]),
        (&"monitor".into(), &"enabled".into())
    );

    let status = ok(s, &["status"]);
    assert!(status.contains("policies:  1"), "{status}");
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["e2e-sys-enter", "enabled", "monitor", "hooks", "1/1"]),
        "{status}"
    );

    // A second add of the same policy is refused and changes nothing.
    let out = vigil(s, &["policy", "add", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already exists"), "{out:?}");
    assert_eq!(only(s)["mode"], "monitor");

    ok(s, &["policy", "delete", "e2e-sys-enter"]);
    assert!(list(s).is_empty());
    assert!(ok(s, &["policy", "list"]).contains("no policies loaded"));

    let out = vigil(s, &["policy", "delete", "e2e-sys-enter"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("not found"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_bad_policy_is_refused_with_the_validators_message_and_changes_nothing() {
    let sensor = Sensor::start(&[]);
    let s = sensor.socket.as_path();
    let good = sensor.dir.path().join("good.yaml");
    std::fs::write(&good, POLICY).unwrap();
    let bad = sensor.dir.path().join("bad.yaml");
    std::fs::write(&bad, BAD).unwrap();
    ok(s, &["policy", "add", good.to_str().unwrap()]);
    let before = list(s);

    let out = vigil(s, &["policy", "add", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    let expected = vigil_api::policy::compile_yaml(BAD).unwrap_err();
    assert!(!expected.is_empty());
    for e in expected.iter() {
        assert!(err.contains(&e.to_string()), "{e} missing from:\n{err}");
    }
    let after = list(s);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["name"], before[0]["name"]);
    assert_eq!(after[0]["state"], before[0]["state"]);
}
