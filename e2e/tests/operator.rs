//! Policy distribution end to end: a real `vigil-operator run --policy-dir` and three real
//! sensors (nodes n1, n2, n3 with their own labels and sockets) over real gRPC, observed with
//! the real `vigil policy list` and `vigil status --operator`. Run as root (`make test-host`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use vigil_api::events::GetEventsResponse;
use vigil_e2e::{
    OpenStorm, Operator, Sensor, bin_path, budgeted_policy, event_timeout, metric_value,
    open_policy, policy_list, wait_for,
};

fn sync_timeout() -> Duration {
    // Reconnects back off up to 10 s.
    Duration::from_secs(if vigil_e2e::slow_machine() { 180 } else { 45 })
}

fn sensor(op: &Operator, node: &str, labels: &str) -> Sensor {
    Sensor::start(&[
        "--node-name",
        node,
        "--operator-address",
        &op.url(),
        "--node-labels",
        labels,
    ])
}

fn cluster(op: &Operator) -> Vec<Sensor> {
    vec![
        sensor(op, "n1", "zone=a,role=web"),
        sensor(op, "n2", "zone=a,role=db"),
        sensor(op, "n3", "zone=b,role=web"),
    ]
}

/// The sensor's policy `name` as `vigil policy list -o json` shows it.
fn listed(s: &Sensor, name: &str) -> Option<Value> {
    policy_list(&s.socket)
        .into_iter()
        .find(|p| p["name"] == name)
}

fn wait_listed(s: &Sensor, name: &str, state: &str) -> Value {
    wait_for(
        sync_timeout(),
        &format!(
            "{name} listed as {state} (origin operator) on {}",
            s.socket.display()
        ),
        || listed(s, name).filter(|p| p["origin"] == "operator" && p["state"] == state),
    )
}

fn wait_unlisted(s: &Sensor, name: &str) {
    wait_for(
        sync_timeout(),
        &format!("{name} gone from {}", s.socket.display()),
        || listed(s, name).is_none().then_some(()),
    )
}

fn status_of(op: &Operator, name: &str) -> Option<Value> {
    op.status()["policies"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
}

/// Waits until the operator's status of `name` satisfies `pred`.
fn wait_status(op: &Operator, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_for(sync_timeout(), &format!("status of {name}: {what}"), || {
        status_of(op, name).filter(|p| pred(p))
    })
}

fn node<'a>(p: &'a Value, n: &str) -> &'a Value {
    p["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["node"] == n)
        .unwrap_or_else(|| panic!("{n} not in {p}"))
}

fn open(path: &str) {
    let st = Command::new(bin_path("vigil-e2e-workload"))
        .args(["open", path])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
}

fn is_open_of(e: &GetEventsResponse, policy: &str, path: &str) -> bool {
    e.process_kprobe
        .as_ref()
        .is_some_and(|k| k.policy_name == policy && k.args.iter().any(|a| a.string() == Some(path)))
}

/// The open of `path` reaches every sensor as an event of `policy`.
fn wait_open_everywhere(sensors: &[&Sensor], policy: &str, path: &str) {
    open(path);
    for s in sensors {
        wait_for(
            event_timeout(),
            &format!("{policy} event on {path} from {}", s.socket.display()),
            || {
                s.events()
                    .iter()
                    .any(|e| is_open_of(e, policy, path))
                    .then_some(())
            },
        );
    }
}

fn watched(work: &Path, sub: &str) -> String {
    let d = work.join(sub);
    std::fs::create_dir_all(&d).unwrap();
    d.to_str().unwrap().to_string()
}

#[test]
fn policies_reach_every_node_follow_edits_and_deletes_and_survive_operator_restarts() {
    let work = tempfile::tempdir().unwrap();
    let (d1, d2) = (watched(work.path(), "one"), watched(work.path(), "two"));
    let mut op = Operator::start();
    let mut sensors = cluster(&op);
    wait_for(sync_timeout(), "3 sensors connected", || {
        (op.status()["nodes"].as_array()?.len() == 3).then_some(())
    });

    // Add: every node loads it, the operator sees 3/3.
    op.write_policy(
        "open.yaml",
        &open_policy("e2e-op-open", &format!("{d1}/"), ""),
    );
    for s in &sensors {
        wait_listed(s, "e2e-op-open", "enabled");
    }
    let p = wait_status(&op, "e2e-op-open", "3/3 ready", |p| {
        p["targeted"] == 3 && p["ready"] == 3
    });
    let v1 = p["version"].as_str().unwrap().to_string();
    let table = op.status_text();
    assert!(
        table.contains("e2e-op-open") && table.contains("3/3"),
        "{table}"
    );
    let refs: Vec<&Sensor> = sensors.iter().collect();
    wait_open_everywhere(&refs, "e2e-op-open", &format!("{d1}/a"));

    // Edit: a new version everywhere.
    op.write_policy(
        "open.yaml",
        &open_policy("e2e-op-open", &format!("{d2}/"), ""),
    );
    let p = wait_status(&op, "e2e-op-open", "new version 3/3 ready", |p| {
        p["version"] != v1.as_str() && p["ready"] == 3
    });
    let v2 = p["version"].as_str().unwrap().to_string();
    wait_open_everywhere(&refs, "e2e-op-open", &format!("{d2}/b"));
    let id_before = listed(&sensors[0], "e2e-op-open").unwrap()["id"].clone();

    // The operator dies: the sensors keep the policy and keep producing its events.
    op.kill();
    for s in &sensors {
        assert!(listed(s, "e2e-op-open").is_some());
    }
    wait_open_everywhere(&refs, "e2e-op-open", &format!("{d2}/while-down"));
    // Back: every sensor resyncs; the same version is not reloaded.
    op.restart();
    let p = wait_status(
        &op,
        "e2e-op-open",
        "3/3 ready after the operator restart",
        |p| p["ready"] == 3,
    );
    assert_eq!(p["version"], v2.as_str());
    assert_eq!(
        listed(&sensors[0], "e2e-op-open").unwrap()["id"],
        id_before,
        "an unchanged version is not reloaded on resync"
    );
    let m = op.metrics();
    assert_eq!(
        metric_value(&m, "vigil_operator_sensors_connected"),
        3.0,
        "{m}"
    );
    assert!(
        metric_value(&m, "vigil_operator_push_latency_seconds_count") >= 1.0,
        "{m}"
    );

    // Edited while the operator is down: the sensors get the new version once it is back.
    op.kill();
    op.write_policy(
        "open.yaml",
        &open_policy("e2e-op-open", &format!("{d1}/"), ""),
    );
    op.restart();
    wait_status(
        &op,
        "e2e-op-open",
        "edit made while down reaches 3/3",
        |p| p["version"] == v1.as_str() && p["ready"] == 3,
    );

    // A restarted sensor receives the current set.
    drop(sensors.pop());
    wait_for(sync_timeout(), "n3 gone", || {
        (op.status()["nodes"].as_array()?.len() == 2).then_some(())
    });
    sensors.push(sensor(&op, "n3", "zone=b,role=web"));
    wait_listed(&sensors[2], "e2e-op-open", "enabled");
    wait_status(&op, "e2e-op-open", "3/3 with the restarted n3", |p| {
        p["ready"] == 3
    });

    // Delete: gone everywhere.
    op.remove_policy("open.yaml");
    for s in &sensors {
        wait_unlisted(s, "e2e-op-open");
    }
    wait_for(sync_timeout(), "no policy in the status", || {
        op.status()["policies"].as_array()?.is_empty().then_some(())
    });
}

#[test]
fn partial_and_refused_policies_are_reported_per_node_and_labels_select_nodes() {
    let work = tempfile::tempdir().unwrap();
    let d = watched(work.path(), "p");
    let op = Operator::start();
    let mut sensors = cluster(&op);

    // Targets zone=a (n1, n2); its first hook cannot load on any kernel: a kprobe on a function
    // that does not exist (and on the host, kprobes are missing altogether).
    op.write_policy(
        "partial.yaml",
        &format!(
            "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: e2e-op-partial
spec:
  nodeSelector:
    matchLabels:
      zone: a
  kprobes:
  - call: vigil_e2e_no_such_function
    syscall: false
  - call: sys_openat
    syscall: true
    args:
    - index: 1
      type: string
    selectors:
    - matchArgs:
      - index: 1
        operator: Prefix
        values: [\"{d}/\"]
"
        ),
    );
    // Override on a plain syscall: no node can honour it.
    op.write_policy(
        "override.yaml",
        "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: e2e-op-override
spec:
  kprobes:
  - call: sys_openat
    syscall: true
    args:
    - index: 1
      type: string
    selectors:
    - matchArgs:
      - index: 1
        operator: Prefix
        values: [\"/nonexistent/e2e-op\"]
      matchActions:
      - action: Override
        argError: -1
",
    );
    // Not a policy: reported by the operator, nothing else changes.
    op.write_policy(
        "broken.yaml",
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nspec: [\n",
    );

    let p = wait_status(&op, "e2e-op-partial", "partial on n1 and n2", |p| {
        p["targeted"] == 2 && p["partial"] == 2
    });
    for n in ["n1", "n2"] {
        let x = node(&p, n);
        assert_eq!(x["state"], "partial", "{p}");
        let reason = x["reason"].as_str().unwrap();
        assert!(reason.contains("vigil_e2e_no_such_function"), "{reason}");
    }
    assert!(
        p["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["node"] != "n3"),
        "{p}"
    );
    for s in &sensors[..2] {
        let l = wait_listed(s, "e2e-op-partial", "partial");
        assert_eq!(l["hooks"].as_array().unwrap().len(), 2, "{l}");
    }
    assert!(listed(&sensors[2], "e2e-op-partial").is_none());

    let p = wait_status(&op, "e2e-op-override", "refused on every node", |p| {
        p["targeted"] == 3 && p["failed"] == 3
    });
    for n in ["n1", "n2", "n3"] {
        let reason = node(&p, n)["reason"].as_str().unwrap().to_string();
        assert!(reason.contains("Override"), "{reason}");
    }
    for s in &sensors {
        assert!(listed(s, "e2e-op-override").is_none());
    }
    let table = op.status_text();
    assert!(
        table.contains("e2e-op-override") && table.contains("failed"),
        "{table}"
    );
    assert!(table.contains("0/3"), "{table}");

    let m = op.metrics();
    assert!(
        metric_value(&m, "vigil_operator_policy_dir_errors_total") >= 1.0,
        "{m}"
    );
    assert!(op.stderr().contains("broken.yaml"), "{}", op.stderr());
    assert_eq!(
        metric_value(
            &m,
            "vigil_operator_policy_nodes{policy=\"e2e-op-partial\",state=\"partial\"}"
        ),
        2.0,
        "{m}"
    );

    // n3 comes back with zone=a: it gains the zone policy.
    drop(sensors.pop());
    sensors.push(sensor(&op, "n3", "zone=a,role=web"));
    wait_listed(&sensors[2], "e2e-op-partial", "partial");
    wait_status(&op, "e2e-op-partial", "partial on 3 nodes", |p| {
        p["targeted"] == 3 && p["partial"] == 3
    });
    // And n1 comes back without it: it loses it.
    let n1 = sensors.remove(0);
    drop(n1);
    let n1 = sensor(&op, "n1", "zone=c");
    wait_status(&op, "e2e-op-partial", "n1 no longer targeted", |p| {
        p["targeted"] == 2
    });
    assert!(listed(&n1, "e2e-op-partial").is_none());
}

/// The policy's staged rollout as the operator's status shows it (`null` without a plan).
fn rollout_stage(p: &Value) -> &str {
    p["rollout"]["stage"].as_str().unwrap_or("")
}

fn canary_nodes(p: &Value) -> Vec<String> {
    p["rollout"]["canary_nodes"]
        .as_array()
        .map(|a| a.iter().map(|n| n.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn staged_rollouts_stop_at_a_refusing_canary_and_complete_when_every_canary_loads() {
    let work = tempfile::tempdir().unwrap();
    let d = watched(work.path(), "staged");
    let op = Operator::start();
    let sensors: Vec<Sensor> = ["n1", "n2", "n3", "n4", "n5"]
        .iter()
        .map(|n| sensor(&op, n, "zone=a"))
        .collect();
    wait_for(sync_timeout(), "5 sensors connected", || {
        (op.status()["nodes"].as_array().map_or(0, Vec::len) == 5).then_some(())
    });
    let by_name = |n: &str| {
        let i: usize = n[1..].parse().unwrap();
        &sensors[i - 1]
    };

    // 1. Every node would refuse this policy (Override on a plain syscall): the one canary
    //    (20 % of 5) does, and the rollout stops there.
    op.write_policy(
        "refused.yaml",
        "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: e2e-op-canary-refused
  annotations:
    vigil.dev/rollout: \"canary=20%\"
spec:
  kprobes:
  - call: sys_openat
    syscall: true
    args:
    - index: 1
      type: string
    selectors:
    - matchArgs:
      - index: 1
        operator: Prefix
        values: [\"/nonexistent/e2e-op-canary\"]
      matchActions:
      - action: Override
        argError: -1
",
    );
    let p = wait_status(&op, "e2e-op-canary-refused", "rollout halted", |p| {
        rollout_stage(p) == "halted"
    });
    let canaries = canary_nodes(&p);
    assert_eq!(canaries.len(), 1, "{p}");
    let canary = &canaries[0];
    assert_eq!(node(&p, canary)["state"], "failed", "{p}");
    let message = p["rollout"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("canary {canary} failed")) && message.contains("Override"),
        "{message}"
    );
    assert_eq!(
        (p["targeted"].as_u64(), p["pending"].as_u64()),
        (Some(5), Some(4)),
        "{p}"
    );
    // Halted is final for this version: the other four were never sent it.
    for n in ["n1", "n2", "n3", "n4", "n5"] {
        if n != canary {
            assert!(listed(by_name(n), "e2e-op-canary-refused").is_none(), "{n}");
            assert_eq!(node(&p, n)["state"], "pending", "{p}");
        }
    }
    let m = op.metrics();
    assert_eq!(
        metric_value(&m, "vigil_operator_rollouts_halted_total"),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "vigil_operator_policy_rollout_stage{policy=\"e2e-op-canary-refused\",stage=\"halted\"}"
        ),
        1.0,
        "{m}"
    );
    let table = op.status_text();
    assert!(
        table.contains(&format!("halted: canary {canary} failed")),
        "{table}"
    );

    // 2. A policy every node loads: two canaries (40 %) first, the others only once both
    //    loaded it and the pause elapsed.
    op.write_policy(
        "ok.yaml",
        &format!(
            "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: e2e-op-canary-ok
  annotations:
    vigil.dev/rollout: \"canary=40%,pause=4s\"
spec:
  kprobes:
  - call: sys_openat
    syscall: true
    args:
    - index: 1
      type: string
    selectors:
    - matchArgs:
      - index: 1
        operator: Prefix
        values: [\"{d}/\"]
"
        ),
    );
    // Until the status says complete, no other node has it. An observation counts only when
    // the status still says canary/pause after the nodes were listed (the push to the others
    // happens at the transition to complete, which the status shows first).
    let mut observed = 0;
    let mut seen_pause = false;
    let mut canaries = Vec::new();
    wait_for(
        sync_timeout(),
        "rollout of e2e-op-canary-ok complete",
        || {
            let before = status_of(&op, "e2e-op-canary-ok")?;
            if rollout_stage(&before) == "complete" {
                return Some(());
            }
            canaries = canary_nodes(&before);
            if canaries.len() != 2 {
                return None;
            }
            let others: Vec<bool> = ["n1", "n2", "n3", "n4", "n5"]
                .iter()
                .filter(|n| !canaries.iter().any(|c| c == *n))
                .map(|n| listed(by_name(n), "e2e-op-canary-ok").is_some())
                .collect();
            let after = status_of(&op, "e2e-op-canary-ok")?;
            if matches!(rollout_stage(&after), "canary" | "pause") {
                assert!(
                    others.iter().all(|l| !l),
                    "a non-canary node has it before the rollout completed: {after}"
                );
                observed += 1;
                if rollout_stage(&after) == "pause" {
                    seen_pause = true;
                    // Pause means every canary loaded it with every hook.
                    for c in &canaries {
                        assert_eq!(node(&after, c)["state"], "ready", "{after}");
                    }
                }
            }
            None
        },
    );
    assert!(
        observed > 0 && seen_pause,
        "observations {observed}, pause seen {seen_pause}"
    );
    for s in &sensors {
        wait_listed(s, "e2e-op-canary-ok", "enabled");
    }
    let p = wait_status(&op, "e2e-op-canary-ok", "ready on 5 nodes", |p| {
        p["ready"] == 5
    });
    assert_eq!(canary_nodes(&p), canaries);
    let refs: Vec<&Sensor> = sensors.iter().collect();
    wait_open_everywhere(&refs, "e2e-op-canary-ok", &format!("{d}/after-rollout"));
    assert_eq!(
        metric_value(&op.metrics(), "vigil_operator_rollouts_completed_total"),
        1.0
    );
}

/// A canary that demotes a new policy for exceeding its CPU budget stops the staged rollout:
/// the operator's status names the node and the sensor's reason, and the other node never gets
/// the policy.
#[test]
fn a_canary_over_the_cpu_budget_halts_the_rollout_and_the_status_says_why() {
    let work = tempfile::tempdir().unwrap();
    let op = Operator::start();
    let sensors = [sensor(&op, "b1", "zone=a"), sensor(&op, "b2", "zone=a")];
    wait_for(sync_timeout(), "2 sensors connected", || {
        (op.status()["nodes"].as_array().map_or(0, Vec::len) == 2).then_some(())
    });
    // One canary (50 % of 2); the pause outlasts the budget window many times over, so the
    // canary's demotion comes before the rollout could complete.
    op.write_policy(
        "budgeted.yaml",
        &budgeted_policy(
            "e2e-op-budget",
            "0.2%,window=2s",
            "    vigil.dev/rollout: \"canary=50%,pause=10m\"\n",
        ),
    );
    let p = wait_status(&op, "e2e-op-budget", "canary ready", |p| {
        rollout_stage(p) == "pause"
    });
    let canary = canary_nodes(&p).remove(0);
    let (canary_sensor, other) = if canary == "b1" {
        (&sensors[0], &sensors[1])
    } else {
        (&sensors[1], &sensors[0])
    };
    wait_listed(canary_sensor, "e2e-op-budget", "enabled");
    assert_eq!(p["demoted"].as_u64().unwrap_or(0), 0, "{p}");

    let target = work.path().join("storm");
    std::fs::write(&target, b"x").unwrap();
    let storm = OpenStorm::start(&target);
    let p = wait_status(
        &op,
        "e2e-op-budget",
        "rollout halted by the demotion",
        |p| rollout_stage(p) == "halted",
    );
    drop(storm);
    let message = p["rollout"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "canary {canary} failed: demoted by its CPU budget"
        )) && message.contains("switched to monitor"),
        "{message}"
    );
    assert_eq!(p["demoted"].as_u64(), Some(1), "{p}");
    let n = node(&p, &canary);
    assert!(
        n["demotion"]
            .as_str()
            .unwrap_or("")
            .contains("over its CPU budget"),
        "{p}"
    );
    // The canary runs it in monitor mode now; the other node never got it.
    let on_canary = listed(canary_sensor, "e2e-op-budget").unwrap();
    assert_eq!(on_canary["mode"], "monitor", "{on_canary}");
    assert!(listed(other, "e2e-op-budget").is_none());
    let table = op.status_text();
    assert!(table.contains("demoted"), "{table}");
    assert_eq!(
        metric_value(&op.metrics(), "vigil_operator_rollouts_halted_total"),
        1.0
    );
}
