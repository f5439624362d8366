//! The operator, its CRDs and its RBAC against a real API server (kube-apiserver v1.20.2 + etcd
//! on loopback, `vigil_e2e::cluster`), read and changed with the real `kubectl`:
//!
//! - the chart is installed with `helm`; the `vigil-operator` binary runs outside the cluster
//!   with the arguments of the chart's Deployment and a kubeconfig that authenticates as the
//!   chart's operator ServiceAccount (a client certificate with common name
//!   `system:serviceaccount:vigil:vigil-operator`), so every API call it makes goes through the
//!   RBAC the chart grants, and the API server's audit log records each one;
//! - real `vigil-sensor` processes, named as the cluster's nodes, take the policies and ACK them.
//!
//! The policies use tracepoint hooks (signal/signal_generate, raw_syscalls/sys_enter), not
//! syscall kprobes, so that loading them does not depend on the syscall hook programs. Not run
//! in the VM (e2e/vm/run.sh skips `k8s_*`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vigil_e2e::cluster::{Cluster, RoundRobin, audit_resource, crate_root, describe, table};
use vigil_e2e::containers::{FakeContainer, Runtime};
use vigil_e2e::{
    OpenStorm, Operator, Sensor, budgeted_policy, corpus_policy, event_timeout, metric_value,
    policy_list, start_timeout, vigil_ok, wait_for,
};

const NS: &str = "vigil";
const OPERATOR_USER: &str = "system:serviceaccount:vigil:vigil-operator";

/// A cluster with the chart installed (release `vigil` in namespace `vigil`).
struct Env {
    c: Cluster,
    /// Authenticates as the chart's operator ServiceAccount.
    kubeconfig: PathBuf,
    /// `vigil-operator run` arguments of the chart's Deployment.
    args: Vec<String>,
}

impl Env {
    fn new(sets: &[&str]) -> Env {
        let c = Cluster::start();
        c.install_chart(NS, sets);
        let kubeconfig = c.service_account_kubeconfig(NS, "vigil-operator");
        let args = c.operator_args(NS);
        Env {
            c,
            kubeconfig,
            args,
        }
    }

    /// One replica of the operator Deployment, as pod `name`.
    fn replica(&self, name: &str) -> Operator {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        Operator::start_replica(&self.kubeconfig, NS, name, &args)
    }

    /// Nothing the operator asked was refused, and it logged no refusal.
    fn assert_no_forbidden(&self, ops: &[&Operator]) {
        let refused = self.c.forbidden(OPERATOR_USER);
        assert!(
            refused.is_empty(),
            "the API server refused the operator (RBAC): {refused:#?}"
        );
        for op in ops {
            let log = op.stderr();
            assert!(
                !log.contains("permission denied") && !log.contains("Forbidden"),
                "the operator logged a refusal:\n{log}"
            );
        }
    }

    /// `kubectl get TYPE NAME -o jsonpath=…` of a condition's status.
    fn condition(&self, resource: &str, ns: Option<&str>, ty: &str) -> String {
        let path = format!("jsonpath={{.status.conditions[?(@.type==\"{ty}\")].status}}");
        let mut args = vec!["get", resource, "-o", &path];
        if let Some(ns) = ns {
            args.extend(["-n", ns]);
        }
        self.c.kubectl_ok(&args)
    }

    /// `kubectl wait --for=condition=COND RESOURCE`; must succeed, returns kubectl's stdout.
    fn wait(&self, cond: &str, resource: &str, ns: Option<&str>) -> String {
        let timeout = format!("--timeout={}s", start_timeout().as_secs());
        let for_ = format!("--for=condition={cond}");
        let mut args = vec!["wait", &for_, resource, &timeout];
        if let Some(ns) = ns {
            args.extend(["-n", ns]);
        }
        let out = self.c.kubectl(&args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}\nstatus: {}",
            describe(&out),
            self.c
                .kubectl_ok(&["get", resource, "-o", "jsonpath={.status}"])
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A sensor named as node `node`, taking its policies from `operator` (a URL).
fn sensor(node: &str, operator: &str) -> Sensor {
    Sensor::start_with_metrics(&["--operator-address", operator, "--node-name", node])
}

/// Waits until every sensor holds a policy stream with the operator (Ready counts the
/// connected nodes a policy targets: a sensor still backing off would not be waited for).
fn wait_connected(sensors: &[&Sensor]) {
    for s in sensors {
        wait_for(
            start_timeout(),
            "the sensor to connect to the operator",
            || (metric_value(&s.metrics(), "vigil_operator_connected") == 1.0).then_some(()),
        );
    }
}

/// The policies a sensor runs, as `NAME` or `NAMESPACE/NAME`, with their ids.
fn policies_on(s: &Sensor) -> BTreeMap<String, u64> {
    policy_list(&s.socket)
        .iter()
        .map(|p| {
            let name = p["name"].as_str().unwrap_or_default();
            let key = match p["namespace"].as_str().unwrap_or_default() {
                "" => name.to_string(),
                ns => format!("{ns}/{name}"),
            };
            (key, p["id"].as_u64().unwrap_or_default())
        })
        .collect()
}

fn wait_policies(s: &Sensor, what: &str, pred: impl Fn(&BTreeMap<String, u64>) -> bool) {
    wait_for(start_timeout(), what, || {
        let p = policies_on(s);
        pred(&p).then_some(())
    });
}

fn example(name: &str) -> PathBuf {
    crate_root().join("examples/policies").join(name)
}

/// An example manifest with Tetragon's group swapped for Vigil's, as docs/operations.md shows.
fn as_vigil_dev(path: &PathBuf) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .replace("cilium.io/v1alpha1", "vigil.dev/v1alpha1")
}

/// (group, resource, verb) triples a role grants.
fn granted(rules: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for r in rules.as_array().unwrap() {
        for g in r["apiGroups"].as_array().unwrap() {
            for res in r["resources"].as_array().unwrap() {
                for v in r["verbs"].as_array().unwrap() {
                    out.insert((
                        g.as_str().unwrap().to_string(),
                        res.as_str().unwrap().to_string(),
                        v.as_str().unwrap().to_string(),
                    ));
                }
            }
        }
    }
    out
}

/// Waits for `Ready` on policies whose hooks the sensors must load. Where the kernel refuses the
/// hook programs, the status says why (a NACK from each node); the failure then names it.
fn wait_ready(env: &Env, resource: &str, ns: Option<&str>) -> String {
    let timeout = format!("--timeout={}s", start_timeout().as_secs());
    let mut args = vec!["wait", "--for=condition=Ready", resource, &timeout];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    let out = env.c.kubectl(&args);
    if !out.status.success() {
        let mut get = vec!["get", resource, "-o", "jsonpath={.status}"];
        if let Some(ns) = ns {
            get.extend(["-n", ns]);
        }
        let status = env.c.kubectl_ok(&get);
        let hint = if status.contains("processed 1000001 insns") || status.contains("too large") {
            "\nThe sensors could not load the policy's hook program: the kernel's verifier \
             refused it (see issue #14, hook programs within the verifier's budget)."
        } else {
            ""
        };
        panic!(
            "kubectl {args:?}: {}\nstatus: {status}{hint}",
            describe(&out)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every TracingPolicy (both kinds, both groups) in the cluster, as `group kind ns/name`.
fn all_policies(c: &Cluster) -> Vec<String> {
    let out = c.kubectl_ok(&[
        "get",
        "tracingpolicies.vigil.dev,tracingpolicies.cilium.io,\
         tracingpoliciesnamespaced.vigil.dev,tracingpoliciesnamespaced.cilium.io",
        "-A",
        "-o",
        "name",
    ]);
    out.lines().map(String::from).collect()
}

#[test]
fn policies_applied_with_kubectl_reach_the_sensors_and_kubectl_reads_their_status() {
    let env = Env::new(&[]);
    assert!(
        env.args.contains(&"--cilium-policies".to_string()),
        "the chart installed the cilium.io CRDs and tells the operator: {:?}",
        env.args
    );
    let op = env.replica("vigil-operator-7d9f-a");
    let sa = sensor("node-a", &op.url());
    let sb = sensor("node-b", &op.url());
    wait_connected(&[&sa, &sb]);

    // Tetragon's group, byte for byte from examples/ (cilium.io, as documented), and the same
    // examples in Vigil's group.
    let out = env.c.kubectl_ok(&[
        "apply",
        "-f",
        example("kill-signals.yaml").to_str().unwrap(),
    ]);
    assert_eq!(out.trim(), "tracingpolicy.cilium.io/kill-signals created");
    let out = env.c.kubectl_ok(&[
        "apply",
        "-n",
        "default",
        "-f",
        example("pod-kill-signals.yaml").to_str().unwrap(),
    ]);
    assert_eq!(
        out.trim(),
        "tracingpolicynamespaced.cilium.io/pod-kill-signals created"
    );
    env.c.kubectl_ok(&["create", "namespace", "empire"]);
    let out = env.c.kubectl_in(
        &["apply", "-n", "empire", "-f", "-"],
        Some(&as_vigil_dev(&example("pod-kill-signals.yaml"))),
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "tracingpolicynamespaced.vigil.dev/pod-kill-signals created"
    );
    let cluster_wide = as_vigil_dev(&example("kill-signals.yaml"))
        .replace("name: kill-signals", "name: kill-signals-vigil");
    assert_eq!(
        env.c.apply(&cluster_wide).trim(),
        "tracingpolicy.vigil.dev/kill-signals-vigil created"
    );

    // Ready once both sensors loaded them, as kubectl wait sees it.
    for (res, ns) in [
        ("tracingpolicy.cilium.io/kill-signals", None),
        ("tracingpolicy.vigil.dev/kill-signals-vigil", None),
        (
            "tracingpolicynamespaced.cilium.io/pod-kill-signals",
            Some("default"),
        ),
        (
            "tracingpolicynamespaced.vigil.dev/pod-kill-signals",
            Some("empire"),
        ),
    ] {
        let out = wait_ready(&env, res, ns);
        assert_eq!(out.trim(), format!("{res} condition met"));
    }
    for s in [&sa, &sb] {
        let p = policies_on(s);
        for want in [
            "kill-signals",
            "kill-signals-vigil",
            "default/pod-kill-signals",
            "empire/pod-kill-signals",
        ] {
            assert!(
                p.contains_key(want),
                "{want} not on a sensor: {p:?}\n{}\n{}",
                vigil_ok(&s.socket, &["policy", "list"]),
                s.stderr()
            );
        }
    }

    // The printer columns with the per-node roll-up, as kubectl prints them.
    let t = table(&env.c.kubectl_ok(&["get", "tracingpolicies.vigil.dev"]));
    assert_eq!(t[0], ["NAME", "READY", "NODES", "MODE", "AGE"], "{t:?}");
    assert_eq!(
        t[1][..4],
        ["kill-signals-vigil", "True", "2/2", "enforce"],
        "{t:?}"
    );
    let t = table(&env.c.kubectl_ok(&["get", "tracingpolicies.cilium.io"]));
    assert_eq!(t[0], ["NAME", "READY", "NODES", "MODE", "AGE"], "{t:?}");
    assert_eq!(
        t[1][..4],
        ["kill-signals", "True", "2/2", "enforce"],
        "{t:?}"
    );
    let t = table(&env.c.kubectl_ok(&[
        "get",
        "tracingpoliciesnamespaced.vigil.dev,tracingpoliciesnamespaced.cilium.io",
        "-A",
    ]));
    let rows: BTreeSet<Vec<String>> = t
        .iter()
        .filter(|r| r.len() == 6 && r[0] != "NAMESPACE")
        .map(|r| r[..5].to_vec())
        .collect();
    assert!(
        t.iter()
            .any(|r| r[..] == ["NAMESPACE", "NAME", "READY", "NODES", "MODE", "AGE"]),
        "{t:?}"
    );
    // Two resource types in one `get`: kubectl names each row by type/name.
    for (ns, name) in [
        (
            "default",
            "tracingpolicynamespaced.cilium.io/pod-kill-signals",
        ),
        (
            "empire",
            "tracingpolicynamespaced.vigil.dev/pod-kill-signals",
        ),
    ] {
        let row: Vec<String> = [ns, name, "True", "2/2", "enforce"]
            .map(String::from)
            .to_vec();
        assert!(rows.contains(&row), "{t:?}");
    }
    // A staged rollout (vigil.dev/rollout): one canary of two, a one-second pause, then both;
    // kubectl get -o wide shows the stage, the status names the canary and says RolledOut.
    let staged = as_vigil_dev(&example("kill-signals.yaml")).replace(
        "  name: kill-signals\n",
        "  name: kill-signals-staged\n  annotations:\n    vigil.dev/rollout: \"canary=50%,pause=1s\"\n",
    );
    assert_eq!(
        env.c.apply(&staged).trim(),
        "tracingpolicy.vigil.dev/kill-signals-staged created"
    );
    let out = wait_ready(&env, "tracingpolicy.vigil.dev/kill-signals-staged", None);
    assert_eq!(
        out.trim(),
        "tracingpolicy.vigil.dev/kill-signals-staged condition met"
    );
    let status = wait_for(start_timeout(), "the staged rollout complete", || {
        env.c
            .get_json(&["tracingpolicy.vigil.dev", "kill-signals-staged"])
            .map(|v| v["status"].clone())
            .filter(|s| s["rollout"]["stage"] == "complete")
    });
    let canaries = status["rollout"]["canaryNodes"].as_array().unwrap();
    assert_eq!(canaries.len(), 1, "{status}");
    assert!(
        ["node-a", "node-b"].contains(&canaries[0].as_str().unwrap()),
        "{status}"
    );
    let rolled_out = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "RolledOut")
        .unwrap_or_else(|| panic!("no RolledOut condition: {status}"));
    assert_eq!(
        (&rolled_out["status"], &rolled_out["reason"]),
        (&json!("True"), &json!("Complete")),
        "{status}"
    );
    let t = table(&env.c.kubectl_ok(&[
        "get",
        "tracingpolicies.vigil.dev",
        "kill-signals-staged",
        "-o",
        "wide",
    ]));
    assert_eq!(
        t[0],
        ["NAME", "READY", "NODES", "MODE", "AGE", "ROLLOUT"],
        "{t:?}"
    );
    assert_eq!(
        t[1][..4],
        ["kill-signals-staged", "True", "2/2", "enforce"],
        "{t:?}"
    );
    assert_eq!(t[1][5], "complete", "{t:?}");
    for s in [&sa, &sb] {
        assert!(policies_on(s).contains_key("kill-signals-staged"));
    }

    // A CPU budget (vigil.dev/cpu-budget): WithinBudget is True until an open storm makes both
    // nodes demote the policy; then False, with the nodes and the sensors' reasons.
    let budgeted = budgeted_policy("open-budget", "0.2%,window=2s", "");
    assert_eq!(
        env.c.apply(&budgeted).trim(),
        "tracingpolicy.cilium.io/open-budget created"
    );
    wait_ready(&env, "tracingpolicy.cilium.io/open-budget", None);
    let within = |status: &Value| {
        status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "WithinBudget"))
            .cloned()
    };
    let c = wait_for(start_timeout(), "WithinBudget on open-budget", || {
        env.c
            .get_json(&["tracingpolicy.cilium.io", "open-budget"])
            .and_then(|v| within(&v["status"]))
    });
    assert_eq!(c["status"], "True", "{c}");
    let target = tempfile::tempdir().unwrap();
    let storm_file = target.path().join("storm");
    std::fs::write(&storm_file, b"x").unwrap();
    let storm = OpenStorm::start(&storm_file);
    let c = wait_for(
        start_timeout(),
        "open-budget over budget on both nodes",
        || {
            env.c
                .get_json(&["tracingpolicy.cilium.io", "open-budget"])
                .and_then(|v| within(&v["status"]))
                .filter(|c| {
                    c["status"] == "False"
                        && c["message"]
                            .as_str()
                            .is_some_and(|m| m.starts_with("2/2 nodes"))
                })
        },
    );
    drop(storm);
    assert_eq!(c["reason"], "BudgetExceeded", "{c}");
    let message = c["message"].as_str().unwrap();
    assert!(
        message.contains("node-a: over its CPU budget")
            && message.contains("node-b: over its CPU budget"),
        "{message}"
    );
    env.c
        .kubectl_ok(&["delete", "tracingpolicy.cilium.io/open-budget"]);
    wait_policies(&sa, "open-budget withdrawn", |p| {
        !p.contains_key("open-budget")
    });

    // One sensor goes away: the roll-up says so.
    let mut sb = sb;
    sb.stop();
    wait_for(start_timeout(), "the roll-up to count one node", || {
        let t = table(&env.c.kubectl_ok(&["get", "tracingpolicies.vigil.dev"]));
        (t.get(1).map(|r| r[2].as_str()) == Some("1/1")).then_some(())
    });

    // A held-back Tetragon example (not in examples/), applied byte for byte from the corpus.
    let corpus = corpus_policy("list-syscalls-tracepoint.yaml");
    let out = env.c.apply(&corpus);
    assert_eq!(
        out.trim(),
        "tracingpolicy.cilium.io/list-syscalls-tracepoint created"
    );
    wait_ready(
        &env,
        "tracingpolicy.cilium.io/list-syscalls-tracepoint",
        None,
    );
    assert!(policies_on(&sa).contains_key("list-syscalls-tracepoint"));

    // kubectl delete: withdrawn from the sensor, and the finalizer released (kubectl waits for
    // the object to be gone, as it does by default).
    let out = env.c.kubectl_ok(&[
        "delete",
        "-f",
        example("kill-signals.yaml").to_str().unwrap(),
    ]);
    assert_eq!(
        out.trim(),
        "tracingpolicy.cilium.io \"kill-signals\" deleted"
    );
    assert!(
        env.c
            .get_json(&["tracingpolicy.cilium.io", "kill-signals"])
            .is_none(),
        "the resource outlived kubectl delete"
    );
    wait_policies(&sa, "kill-signals withdrawn from the sensor", |p| {
        !p.contains_key("kill-signals") && p.contains_key("kill-signals-vigil")
    });
    let out = env.c.kubectl_ok(&[
        "delete",
        "tracingpolicynamespaced.vigil.dev/pod-kill-signals",
        "-n",
        "empire",
    ]);
    assert_eq!(
        out.trim(),
        "tracingpolicynamespaced.vigil.dev \"pod-kill-signals\" deleted from empire namespace"
    );
    wait_policies(&sa, "empire/pod-kill-signals withdrawn", |p| {
        !p.contains_key("empire/pod-kill-signals") && p.contains_key("default/pod-kill-signals")
    });
    env.assert_no_forbidden(&[&op]);
}

#[test]
fn invalid_manifests_are_refused_with_the_field_and_the_charts_rbac_is_exactly_enough() {
    let env = Env::new(&[]);
    let op = env.replica("vigil-operator-7d9f-a");

    // A field of the wrong type: the API server's schema refuses it, naming the field (kubectl's
    // own validation off, so that the server decides) …
    let bad_type = "apiVersion: vigil.dev/v1alpha1\nkind: TracingPolicy\nmetadata: {name: bad-type}\n\
        spec:\n  tracepoints:\n  - subsystem: signal\n    event: signal_generate\n    args:\n    - {index: four, type: int}\n";
    let out = env
        .c
        .kubectl_in(&["apply", "--validate=false", "-f", "-"], Some(bad_type));
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    // (A 1.20 server names the path without list indices; newer ones add them.)
    assert!(
        err.contains("The TracingPolicy \"bad-type\" is invalid")
            && err.contains("spec.tracepoints.args.index")
            && err.contains("must be of type integer"),
        "{err}"
    );
    // … and so does kubectl with its default validation, naming it too.
    let out = env.c.kubectl_in(&["apply", "-f", "-"], Some(bad_type));
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("index"), "{err}");
    assert!(
        all_policies(&env.c).is_empty(),
        "{:?}",
        all_policies(&env.c)
    );
    // A field the schema does not know (a typo): a 1.20 server prunes it (field validation
    // came with 1.25), so the policy arrives without its hooks — and is rejected in its status,
    // not run as an empty policy. (kubectl's own validation is off: whether it refuses the typo
    // itself depends on whether the server has published the CRD's OpenAPI schema yet.)
    let typo = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {name: typo}\n\
        spec:\n  tracepoint:\n  - {subsystem: signal, event: signal_generate}\n";
    let out = env
        .c
        .kubectl_in(&["apply", "--validate=false", "-f", "-"], Some(typo));
    assert!(out.status.success(), "{}", describe(&out));
    let out = env.wait("Accepted=False", "tracingpolicy.cilium.io/typo", None);
    assert_eq!(out.trim(), "tracingpolicy.cilium.io/typo condition met");
    let msg = env.c.kubectl_ok(&[
        "get",
        "tracingpolicy.cilium.io/typo",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Accepted\")].message}",
    ]);
    assert!(msg.contains("at least one hook"), "{msg}");
    env.c
        .kubectl_ok(&["delete", "tracingpolicy.cilium.io/typo", "--timeout=60s"]);

    // Valid for the schema, wrong for Vigil: stored, rejected in its status with the field
    // path, not distributed.
    let bad_ref = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {name: bad-ref}\n\
        spec:\n  tracepoints:\n  - subsystem: signal\n    event: signal_generate\n    args:\n    - {index: 4, type: int}\n    \
        selectors:\n    - matchArgs:\n      - {index: 3, operator: Equal, values: [\"9\"]}\n";
    env.c.apply(bad_ref);
    let out = env.wait("Accepted=False", "tracingpolicy.cilium.io/bad-ref", None);
    assert_eq!(out.trim(), "tracingpolicy.cilium.io/bad-ref condition met");
    let msg = env.c.kubectl_ok(&[
        "get",
        "tracingpolicy.cilium.io/bad-ref",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Accepted\")].message}",
    ]);
    assert!(
        msg.contains("spec.tracepoints[0].selectors[0].matchArgs[0].index"),
        "{msg}"
    );
    assert_eq!(
        env.condition("tracingpolicy.cilium.io/bad-ref", None, "Ready"),
        "False"
    );
    let status = op.status();
    assert!(
        !status.to_string().contains("bad-ref"),
        "a rejected policy was distributed: {status}"
    );

    // Every kind of both groups: accepted (status written), finalizer added, then deleted
    // through kubectl, which returns once the operator released the finalizer.
    env.c.kubectl_ok(&["create", "namespace", "empire"]);
    let cilium_ns = std::fs::read_to_string(example("pod-kill-signals.yaml")).unwrap();
    let manifests = [
        (
            std::fs::read_to_string(example("kill-signals.yaml")).unwrap(),
            "tracingpolicy.cilium.io/kill-signals",
        ),
        (
            as_vigil_dev(&example("kill-signals.yaml")),
            "tracingpolicy.vigil.dev/kill-signals",
        ),
        (
            cilium_ns.clone(),
            "tracingpolicynamespaced.cilium.io/pod-kill-signals",
        ),
        (
            as_vigil_dev(&example("pod-kill-signals.yaml")),
            "tracingpolicynamespaced.vigil.dev/pod-kill-signals",
        ),
    ];
    for (i, (text, res)) in manifests.iter().enumerate() {
        // The namespaced ones in two namespaces, so that their names do not collide.
        let ns = if i == 2 { "default" } else { "empire" };
        let out = env
            .c
            .kubectl_in(&["apply", "-n", ns, "-f", "-"], Some(text));
        assert!(out.status.success(), "{}", describe(&out));
        let ns = res.starts_with("tracingpolicynamespaced").then_some(ns);
        // The second kill-signals (vigil.dev) meets the first (cilium.io): refused, see below.
        env.wait(if i == 1 { "Accepted=False" } else { "Accepted" }, res, ns);
        let mut get = vec!["get", *res, "-o", "jsonpath={.metadata.finalizers}"];
        if let Some(ns) = ns {
            get.extend(["-n", ns]);
        }
        assert_eq!(
            env.c.kubectl_ok(&get),
            "[\"vigil.dev/policy-cleanup\"]",
            "{res}"
        );
    }
    // The same name in both groups: one name space on the nodes, the second is refused.
    let conflict_status = env.c.kubectl_ok(&[
        "get",
        "tracingpolicy.vigil.dev/kill-signals",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Accepted\")]}",
    ]);
    assert!(
        conflict_status.contains("\"status\":\"False\"")
            && conflict_status
                .contains("TracingPolicy.cilium.io named kill-signals already exists"),
        "{conflict_status}"
    );
    // The printer columns, as kubectl prints them (no sensor: no node targeted yet).
    let t = table(&env.c.kubectl_ok(&["get", "tracingpolicies.cilium.io"]));
    assert_eq!(t[0], ["NAME", "READY", "NODES", "MODE", "AGE"], "{t:?}");
    let names: Vec<&str> = t[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["bad-ref", "kill-signals"], "{t:?}");
    assert_eq!(t[2][2..4], ["0/0", "enforce"], "{t:?}");

    for (i, (_, res)) in manifests.iter().enumerate().rev() {
        let ns = if i == 2 { "default" } else { "empire" };
        let mut args = vec!["delete", *res, "--timeout=60s"];
        if res.starts_with("tracingpolicynamespaced") {
            args.extend(["-n", ns]);
        }
        let out = env.c.kubectl_ok(&args);
        assert!(out.contains("\" deleted"), "{out}");
    }
    env.c
        .kubectl_ok(&["delete", "tracingpolicy.cilium.io/bad-ref", "--timeout=60s"]);
    assert!(
        all_policies(&env.c).is_empty(),
        "{:?}",
        all_policies(&env.c)
    );

    let m = op.metrics();
    assert_eq!(
        metric_value(&m, "vigil_operator_api_forbidden_total"),
        0.0,
        "{m}"
    );
    // RBAC: nothing refused, and nothing granted that the operator did not use. (The API
    // server writes a watch's audit event when the watch ends: stop the operator first.)
    let mut op = op;
    assert!(op.stop().success(), "{}", op.stderr());
    env.assert_no_forbidden(&[&op]);
    let role = env
        .c
        .get_json(&["clusterrole", "vigil-operator"])
        .expect("ClusterRole");
    let lease_role = env
        .c
        .get_json(&["role", "vigil-operator-leader-election", "-n", NS])
        .expect("Role");
    let mut grants = granted(&role["rules"]);
    grants.extend(granted(&lease_role["rules"]));
    let used: BTreeSet<(String, String, String)> = env
        .c
        .audit_events()
        .iter()
        .filter(|e| e["user"]["username"] == OPERATOR_USER)
        .map(|e| {
            let res = audit_resource(e);
            let (group, resource) = res.split_once('/').unwrap();
            (
                group.to_string(),
                resource.to_string(),
                e["verb"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let unused: Vec<_> = grants.difference(&used).collect();
    let ungranted: Vec<_> = used.difference(&grants).collect();
    assert!(
        unused.is_empty() && ungranted.is_empty(),
        "the chart's RBAC differs from what the operator uses:\n granted, never used: {unused:?}\n used, not granted: {ungranted:?}\n used: {used:?}"
    );
}

/// `kubectl get lease vigil-operator` holder.
fn lease_holder(c: &Cluster) -> String {
    c.kubectl_ok(&[
        "get",
        "lease",
        "vigil-operator",
        "-n",
        NS,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
}

#[test]
fn two_replicas_one_leader_the_standby_takes_over_and_sensors_keep_their_policies() {
    let env = Env::new(&[]);
    let names = ["vigil-operator-7d9f-a", "vigil-operator-7d9f-b"];
    let mut ops: Vec<Operator> = names.iter().map(|n| env.replica(n)).collect();
    // The Service in front of both replicas: each connection goes to the next pod.
    let svc = RoundRobin::start(ops.iter().map(|o| o.grpc_port).collect());
    let sa = sensor("node-a", &svc.url());
    let sb = sensor("node-b", &svc.url());
    wait_connected(&[&sa, &sb]);

    env.c.apply(&as_vigil_dev(&example("kill-signals.yaml")));
    env.wait("Ready", "tracingpolicy.vigil.dev/kill-signals", None);
    let holder = lease_holder(&env.c);
    let l = names
        .iter()
        .position(|n| *n == holder)
        .unwrap_or_else(|| panic!("unexpected lease holder {holder:?}"));
    let standby_name = names[1 - l];
    assert_eq!(
        metric_value(&ops[l].metrics(), "vigil_operator_leader"),
        1.0
    );
    assert_eq!(
        metric_value(&ops[1 - l].metrics(), "vigil_operator_leader"),
        0.0
    );
    let before: Vec<BTreeMap<String, u64>> = vec![policies_on(&sa), policies_on(&sb)];
    assert!(before[0].contains_key("kill-signals"), "{before:?}");

    // The leader dies without a word (SIGKILL: no lease release).
    ops[l].kill();
    let standby = &ops[1 - l];
    let killed_at = Instant::now();
    // Until the standby has taken over (after the lease expires), and after: the sensors keep
    // running the same policies (same ids: nothing withdrawn or reloaded).
    let mut checks = 0;
    wait_for(start_timeout(), "the standby to hold the lease", || {
        for (s, b) in [&sa, &sb].iter().zip(&before) {
            assert_eq!(
                &policies_on(s),
                b,
                "a sensor's policies changed during failover"
            );
        }
        checks += 1;
        (lease_holder(&env.c) == standby_name).then_some(())
    });
    let took = killed_at.elapsed();
    assert!(checks > 1);
    wait_for(start_timeout(), "b to lead", || {
        (metric_value(&standby.metrics(), "vigil_operator_leader") == 1.0).then_some(())
    });
    // The sensors reconnect to the new leader (through the Service), still with the same ids.
    for s in [&sa, &sb] {
        wait_for(start_timeout(), "the sensor to reconnect", || {
            (metric_value(&s.metrics(), "vigil_operator_connected") == 1.0).then_some(())
        });
    }
    for (s, b) in [&sa, &sb].iter().zip(&before) {
        assert_eq!(
            &policies_on(s),
            b,
            "a sensor's policies changed after failover"
        );
    }
    // The new leader serves: a new policy reaches both sensors and its status says so.
    let next = as_vigil_dev(&example("kill-signals.yaml"))
        .replace("name: kill-signals", "name: after-failover");
    env.c.apply(&next);
    env.wait("Ready", "tracingpolicy.vigil.dev/after-failover", None);
    for s in [&sa, &sb] {
        assert!(policies_on(s).contains_key("after-failover"));
    }
    let t = table(&env.c.kubectl_ok(&["get", "tracingpolicies.vigil.dev"]));
    for r in &t[1..] {
        assert_eq!(r[1..3], ["True", "2/2"], "{t:?}");
    }
    let lease = env
        .c
        .get_json(&["lease", "vigil-operator", "-n", NS])
        .unwrap();
    assert!(
        lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0) >= 1,
        "{lease}"
    );
    eprintln!("failover: the standby held the lease {took:?} after the leader was killed");
    env.assert_no_forbidden(&[standby]);
}

/// A Pod as the kubelet would have it: scheduled on `node`, one container in `c`'s cgroup.
fn pod(c: &FakeContainer, ns: &str, name: &str, node: &str, app: &str) -> (String, Value) {
    let manifest = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": false,
            "containers": [{"name": "main", "image": "quay.io/cilium/starwars:v2"}],
        },
    });
    // No kubelet: the test writes what it would report, through the status subresource.
    let status = json!({"status": {
        "phase": "Running",
        "containerStatuses": [{
            "name": "main",
            "containerID": format!("containerd://{}", c.id),
            "image": "quay.io/cilium/starwars:v2",
            "imageID": "quay.io/cilium/starwars@sha256:0123abcd",
            "ready": true,
            "restartCount": 0,
            "started": true,
            "state": {"running": {"startedAt": "2026-11-28T12:00:00Z"}},
        }],
    }});
    (manifest.to_string(), status)
}

fn create_pod(env: &Env, c: &FakeContainer, ns: &str, name: &str, node: &str, app: &str) {
    let (manifest, status) = pod(c, ns, name, node, app);
    env.c.apply(&manifest);
    let out = env.c.kubectl_ok(&[
        "patch",
        "pod",
        name,
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
    assert!(out.contains("patched"), "{out}");
}

/// The pods a sensor holds, as `NAMESPACE/NAME`.
fn pods_on(s: &Sensor) -> BTreeSet<String> {
    let list = vigil_ok(&s.socket, &["pod", "list"]);
    let pods: Vec<Value> = serde_json::from_str(&list).expect("pod list JSON");
    pods.iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["namespace"].as_str().unwrap_or_default(),
                p["name"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

fn wait_pods(s: &Sensor, want: &[&str], what: &str) {
    let want: BTreeSet<String> = want.iter().map(|p| p.to_string()).collect();
    wait_for(start_timeout(), what, || (pods_on(s) == want).then_some(()));
}

/// Runs a process in `c` (or on the host) that SIGKILLs a child of its own; returns its pid.
fn kill_in(c: Option<&FakeContainer>) -> u32 {
    let script = "sleep 60 & kill -9 $!; wait";
    match c {
        Some(c) => {
            // The shell's `wait` for the killed child makes its exit status 137.
            c.run(&["/bin/sh", "-c", script]).0
        }
        None => {
            let mut child = Command::new("/bin/sh")
                .args(["-c", script])
                .spawn()
                .unwrap();
            let pid = child.id();
            child.wait().unwrap();
            pid
        }
    }
}

/// Pids of the processes whose signal_generate events of `policy` the sensor exported.
fn signallers(s: &Sensor, policy: &str) -> BTreeSet<u32> {
    s.events()
        .iter()
        .filter_map(|e| e.process_tracepoint.as_ref())
        .filter(|t| t.policy_name == policy && t.event == "signal_generate")
        .filter_map(|t| t.process.as_ref()?.pid)
        .collect()
}

/// Node objects as the kubelet registers them, with a `zone` label.
fn create_nodes(env: &Env, nodes: &[(&str, &str)]) {
    for (node, zone) in nodes {
        env.c.apply(
            &json!({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": node, "labels": {"zone": zone}}})
            .to_string(),
        );
    }
}

/// The NODES column (ready/targeted) of a policy.
fn nodes_column(env: &Env, resource: &str, ns: Option<&str>) -> String {
    let mut args = vec!["get", resource];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    let t = table(&env.c.kubectl_ok(&args));
    let col = t[0]
        .iter()
        .position(|h| h == "NODES")
        .expect("a NODES column");
    t[1][col].clone()
}

#[test]
fn pods_and_nodes_created_through_the_api_reach_the_right_sensor_and_select_policies() {
    let env = Env::new(&[]);
    create_nodes(&env, &[("node-a", "blue"), ("node-b", "red")]);
    env.c.kubectl_ok(&["create", "namespace", "empire"]);
    let xwing = FakeContainer::new(Runtime::Containerd);
    let tie = FakeContainer::new(Runtime::Crio);
    let ywing = FakeContainer::new(Runtime::Containerd);
    create_pod(&env, &xwing, "default", "xwing", "node-a", "xwing");
    create_pod(&env, &tie, "empire", "tiefighter", "node-a", "xwing");
    // Not scheduled yet: on no node.
    env.c.apply(
        &json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "pending", "namespace": "default"},
                "spec": {"containers": [{"name": "main", "image": "busybox"}]}})
        .to_string(),
    );

    let op = env.replica("vigil-operator-7d9f-a");
    let sa = sensor("node-a", &op.url());
    let sb = sensor("node-b", &op.url());
    // Each node's pods, and only those, reach its sensor, with what the kubelet reported.
    wait_pods(
        &sa,
        &["default/xwing", "empire/tiefighter"],
        "node-a's pods",
    );
    wait_pods(&sb, &[], "node-b's pods (none)");
    let list: Vec<Value> = serde_json::from_str(&vigil_ok(&sa.socket, &["pod", "list"])).unwrap();
    let x = list.iter().find(|p| p["name"] == "xwing").unwrap();
    assert_eq!(x["labels"]["app"], "xwing", "{x}");
    assert_eq!(x["workload_kind"], "Pod", "{x}");
    assert!(
        x["containers"][0]["id"]
            .as_str()
            .unwrap()
            .ends_with(&xwing.id),
        "the container id from the status subresource: {x}"
    );
    // Created later, and scheduled by setting spec.nodeName (as the scheduler's binding would).
    create_pod(&env, &ywing, "default", "ywing", "node-b", "ywing");
    wait_pods(&sb, &["default/ywing"], "the new pod on node-b");
    // Deleted: gone from its node.
    // No kubelet confirms the end of the containers: delete at once, as it would in the end.
    env.c.kubectl_ok(&[
        "delete",
        "pod",
        "tiefighter",
        "-n",
        "empire",
        "--grace-period=0",
        "--force",
    ]);
    wait_pods(&sa, &["default/xwing"], "the deletion on node-a");

    // A policy for the blue zone's nodes only: the Node objects' labels decide.
    let zoned = std::fs::read_to_string(example("kill-signals.yaml"))
        .unwrap()
        .replace("name: kill-signals", "name: blue-kills")
        .replace(
            "spec:\n",
            "spec:\n  nodeSelector:\n    matchLabels: {zone: blue}\n",
        );
    env.c.apply(&zoned);
    let everywhere = as_vigil_dev(&example("kill-signals.yaml"));
    env.c.apply(&everywhere);
    // The roll-up counts the nodes each targets: one (node-a), and both.
    wait_for(start_timeout(), "blue-kills to target node-a only", || {
        nodes_column(&env, "tracingpolicy.cilium.io/blue-kills", None)
            .ends_with("/1")
            .then_some(())
    });
    wait_for(start_timeout(), "kill-signals to target both nodes", || {
        nodes_column(&env, "tracingpolicy.vigil.dev/kill-signals", None)
            .ends_with("/2")
            .then_some(())
    });
    let status = op.status();
    let node_b = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "node-b")
        .unwrap_or_else(|| panic!("{status}"))
        .clone();
    assert_eq!(node_b["labels"]["zone"], "red", "{status}");
    // Relabelled through the API: node-b joins the blue zone, node-a leaves it.
    env.c
        .kubectl_ok(&["label", "node", "node-b", "zone=blue", "--overwrite"]);
    env.c
        .kubectl_ok(&["label", "node", "node-a", "zone=red", "--overwrite"]);
    wait_for(start_timeout(), "blue-kills to follow the labels", || {
        let s = op.status();
        let targeted: BTreeSet<String> = s["policies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] == "blue-kills")
            .flat_map(|p| p["nodes"].as_array().cloned().unwrap_or_default())
            .filter_map(|n| n["node"].as_str().map(String::from))
            .collect();
        (targeted == BTreeSet::from(["node-b".to_string()])).then_some(())
    });
    wait_for(start_timeout(), "the roll-up to follow the labels", || {
        nodes_column(&env, "tracingpolicy.cilium.io/blue-kills", None)
            .ends_with("/1")
            .then_some(())
    });
    let m = op.metrics();
    // xwing on node-a, ywing on node-b; the pending pod is on no node.
    assert_eq!(metric_value(&m, "vigil_operator_pods"), 2.0, "{m}");
    env.assert_no_forbidden(&[&op]);
}

#[test]
fn a_pod_scoped_policy_follows_the_pods_in_the_kernel() {
    let env = Env::new(&[]);
    create_nodes(&env, &[("node-a", "blue"), ("node-b", "red")]);
    env.c.kubectl_ok(&["create", "namespace", "empire"]);
    let xwing = FakeContainer::new(Runtime::Containerd);
    let tie = FakeContainer::new(Runtime::Crio);
    create_pod(&env, &xwing, "default", "xwing", "node-a", "xwing");
    create_pod(&env, &tie, "empire", "tiefighter", "node-a", "xwing");
    let op = env.replica("vigil-operator-7d9f-a");
    let sa = sensor("node-a", &op.url());
    let sb = sensor("node-b", &op.url());
    wait_connected(&[&sa, &sb]);
    wait_pods(
        &sa,
        &["default/xwing", "empire/tiefighter"],
        "node-a's pods",
    );

    // The namespaced example in default, narrowed to app=xwing.
    let scoped = std::fs::read_to_string(example("pod-kill-signals.yaml"))
        .unwrap()
        .replace("name: pod-kill-signals", "name: xwing-kills")
        .replace(
            "spec:\n",
            "spec:\n  podSelector:\n    matchLabels: {app: xwing}\n",
        );
    let out = env
        .c
        .kubectl_in(&["apply", "-n", "default", "-f", "-"], Some(&scoped));
    assert!(out.status.success(), "{}", describe(&out));
    wait_ready(
        &env,
        "tracingpolicynamespaced.cilium.io/xwing-kills",
        Some("default"),
    );

    // In the kernel: only xwing's container matches (not the other namespace's pod with the
    // same label, not the host), and only on node-a's sensor, which holds the pod. The
    // negative cases run first, so that a wrong event would be out before the awaited one.
    let neg_tie = kill_in(Some(&tie));
    let neg_host = kill_in(None);
    let x1 = kill_in(Some(&xwing));
    wait_for(event_timeout(), "the kill in xwing on node-a", || {
        signallers(&sa, "xwing-kills").contains(&x1).then_some(())
    });
    let seen = signallers(&sa, "xwing-kills");
    assert!(
        !seen.contains(&neg_tie) && !seen.contains(&neg_host),
        "only the selected pod matches: {seen:?} (tie {neg_tie}, host {neg_host})"
    );
    let ev = sa
        .events()
        .into_iter()
        .filter_map(|e| e.process_tracepoint)
        .find(|t| {
            t.policy_name == "xwing-kills" && t.process.as_ref().and_then(|p| p.pid) == Some(x1)
        })
        .unwrap();
    let pod = ev
        .process
        .as_ref()
        .unwrap()
        .pod
        .as_ref()
        .expect("the pod on the event");
    assert_eq!(
        (pod.namespace.as_str(), pod.name.as_str()),
        ("default", "xwing")
    );
    assert!(
        !signallers(&sb, "xwing-kills").contains(&x1),
        "node-b's sensor does not hold xwing"
    );

    // The cluster changes through the API: xwing is replaced by a new pod (another container).
    let xwing2 = FakeContainer::new(Runtime::Containerd);
    env.c.kubectl_ok(&[
        "delete",
        "pod",
        "xwing",
        "-n",
        "default",
        "--grace-period=0",
        "--force",
    ]);
    create_pod(&env, &xwing2, "default", "xwing2", "node-a", "xwing");
    wait_pods(
        &sa,
        &["default/xwing2", "empire/tiefighter"],
        "the new pod on node-a",
    );
    let old = kill_in(Some(&xwing));
    let new = kill_in(Some(&xwing2));
    wait_for(event_timeout(), "the kill in the new pod", || {
        signallers(&sa, "xwing-kills").contains(&new).then_some(())
    });
    assert!(
        !signallers(&sa, "xwing-kills").contains(&old),
        "the deleted pod's container still matched"
    );
    env.assert_no_forbidden(&[&op]);
}

#[test]
fn a_missing_permission_is_reported_by_verb_and_resource_and_healed_without_a_restart() {
    let env = Env::new(&[]);
    // Take `patch` on the status subresources away from the chart's ClusterRole.
    let mut role = env
        .c
        .get_json(&["clusterrole", "vigil-operator"])
        .expect("ClusterRole");
    let original = role.clone();
    let mut removed = false;
    for r in role["rules"].as_array_mut().unwrap() {
        let status_rule = r["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "tracingpolicies/status");
        if status_rule && r["apiGroups"][0] == "vigil.dev" {
            let verbs = r["verbs"].as_array_mut().unwrap();
            let before = verbs.len();
            verbs.retain(|v| v != "patch");
            removed = verbs.len() < before;
            if verbs.is_empty() {
                // A rule needs a verb; keep one the operator does not use for this.
                verbs.push(json!("get"));
            }
        }
    }
    assert!(removed, "the chart grants patch on tracingpolicies/status");
    let m = role["metadata"].as_object_mut().unwrap();
    m.remove("resourceVersion");
    m.remove("managedFields");
    let out = env
        .c
        .kubectl_in(&["apply", "-f", "-"], Some(&role.to_string()));
    assert!(out.status.success(), "{}", describe(&out));

    let op = env.replica("vigil-operator-7d9f-a");
    env.c.apply(&as_vigil_dev(&example("kill-signals.yaml")));
    // Distribution does not need the permission: the policy is taken and distributed.
    wait_for(start_timeout(), "the policy in distribution", || {
        op.status()["policies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "kill-signals")
            .then_some(())
    });
    // The status cannot be written: one clear line naming verb and resource.
    let line = wait_for(
        start_timeout(),
        "the operator to report the refusal",
        || {
            op.stderr()
                .lines()
                .find(|l| l.contains("permission denied"))
                .map(String::from)
        },
    );
    for want in [
        "may not patch tracingpolicies/status",
        "API group \"vigil.dev\"",
        "verb=patch",
        "resource=tracingpolicies/status",
        "operator-rbac.yaml",
    ] {
        assert!(line.contains(want), "`{want}` not in: {line}");
    }
    assert!(
        env.c
            .forbidden(OPERATOR_USER)
            .iter()
            .all(|f| f.starts_with("patch vigil.dev/tracingpolicies/status")),
        "{:?}",
        env.c.forbidden(OPERATOR_USER)
    );
    // No crash loop: the process keeps running and retries at a bounded pace.
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(12));
    assert!(op.running());
    let m = op.metrics();
    let refused = metric_value(
        &m,
        "vigil_operator_api_forbidden_total{verb=\"patch\",resource=\"tracingpolicies/status\"}",
    );
    assert!(refused >= 1.0, "{m}");
    let lines = op
        .stderr()
        .lines()
        .filter(|l| l.contains("permission denied"))
        .count();
    assert!(
        lines <= 20,
        "{lines} refusals logged in {:?}: retries are not backed off",
        start.elapsed()
    );
    assert!(
        env.c
            .get_json(&["tracingpolicy.vigil.dev", "kill-signals"])
            .unwrap()["status"]
            .is_null(),
        "a status was written without the permission"
    );

    // The permission is granted again: the same process heals, the status appears.
    let mut original = original;
    let m = original["metadata"].as_object_mut().unwrap();
    m.remove("resourceVersion");
    m.remove("managedFields");
    let out = env
        .c
        .kubectl_in(&["apply", "-f", "-"], Some(&original.to_string()));
    assert!(out.status.success(), "{}", describe(&out));
    env.wait("Accepted", "tracingpolicy.vigil.dev/kill-signals", None);
    assert!(op.running());
    assert_eq!(
        op.stderr().matches("vigil-operator: ready").count(),
        1,
        "restarted"
    );
}
