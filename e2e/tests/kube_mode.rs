//! The operator in Kubernetes mode, end to end without a cluster: the real `vigil-operator`
//! binary talks HTTP to a miniature API server (`vigil_e2e::fake_kube`) holding Pods and
//! TracingPolicy resources; a real sensor connects to it over gRPC; real processes run in
//! cgroups named like containerd's and CRI-O's. The operator must turn the Pods into each node's
//! pod inventory, the sensor must put that pod on its events and scope policies by it in the
//! kernel, and the operator must write the policy's status back. Runs as root.

use serde_json::{Value, json};
use vigil_e2e::containers::{FakeContainer, Runtime, exec_of, open_in, opens_of};
use vigil_e2e::fake_kube::FakeKube;
use vigil_e2e::{Operator, Sensor, event_timeout, metric_value, start_timeout, vigil_ok, wait_for};

/// A Pod as the API server holds it: scheduled on `node`, owned by a ReplicaSet of Deployment
/// `name`, one running container in `c`'s cgroup (`runtime://id` as the kubelet reports it).
fn pod(c: &FakeContainer, ns: &str, name: &str, node: &str, labels: Value) -> Value {
    let prefix = match c.runtime {
        Runtime::Containerd => "containerd",
        Runtime::Crio => "cri-o",
    };
    let mut labels = labels;
    labels["pod-template-hash"] = json!("7d4b9c6f5");
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("{name}-7d4b9c6f5-x2x9q"),
            "namespace": ns,
            "uid": c.pod_uid,
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-7d4b9c6f5"),
                "uid": "11111111-2222-3333-4444-555555555555", "controller": true,
            }],
        },
        "spec": {
            "nodeName": node,
            "containers": [{
                "name": "main",
                "image": "quay.io/cilium/starwars:v2",
                "securityContext": {"privileged": true},
            }],
        },
        "status": {
            "phase": "Running",
            "containerStatuses": [{
                "name": "main",
                "containerID": format!("{prefix}://{}", c.id),
                "image": "quay.io/cilium/starwars:v2",
                "imageID": "quay.io/cilium/starwars@sha256:0123abcd",
                "ready": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": "2026-11-28T12:00:00Z"}},
            }],
        },
    })
}

/// A TracingPolicyNamespaced on openat of files under `dir`.
fn namespaced_open_policy(ns: &str, name: &str, dir: &str) -> Value {
    json!({
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "TracingPolicyNamespaced",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "kprobes": [{
                "call": "sys_openat",
                "syscall": true,
                "args": [{"index": 1, "type": "string"}],
                "selectors": [{
                    "matchArgs": [{"index": 1, "operator": "Prefix", "values": [format!("{dir}/")]}],
                }],
            }],
        },
    })
}

/// The pods the sensor holds: (namespace, name) sorted.
fn sensor_pods(sensor: &Sensor) -> Vec<(String, String)> {
    let list = vigil_ok(&sensor.socket, &["pod", "list"]);
    let pods: Vec<Value> = serde_json::from_str(&list).expect("pod list JSON");
    let mut out: Vec<(String, String)> = pods
        .iter()
        .map(|p| {
            (
                p["namespace"].as_str().unwrap_or_default().to_string(),
                p["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn wait_pods(sensor: &Sensor, want: &[(&str, &str)], what: &str) {
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    wait_for(start_timeout(), what, || {
        (sensor_pods(sensor) == want).then_some(())
    });
}

#[test]
fn operator_feeds_node_pods_and_scoped_policies_follow_the_cluster() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_str().unwrap().to_string();
    let target = format!("{dir}/f");
    std::fs::write(&target, "x").unwrap();

    let kube = FakeKube::start();
    let xwing = FakeContainer::new(Runtime::Containerd);
    let tie = FakeContainer::new(Runtime::Crio);
    let elsewhere = FakeContainer::new(Runtime::Containerd);
    kube.apply(pod(
        &xwing,
        "default",
        "xwing",
        "node-a",
        json!({"app": "xwing"}),
    ));
    kube.apply(pod(
        &tie,
        "empire",
        "tiefighter",
        "node-a",
        json!({"app": "tie"}),
    ));
    kube.apply(pod(
        &elsewhere,
        "default",
        "ywing",
        "node-b",
        json!({"app": "ywing"}),
    ));
    kube.apply(namespaced_open_policy("default", "default-opens", &dir));

    let op = Operator::start_kubernetes(&kube.kubeconfig());
    let sensor =
        Sensor::start_with_metrics(&["--operator-address", &op.url(), "--node-name", "node-a"]);

    // The node's pods, and only those, reach the sensor; then the policy.
    wait_pods(
        &sensor,
        &[
            ("default", "xwing-7d4b9c6f5-x2x9q"),
            ("empire", "tiefighter-7d4b9c6f5-x2x9q"),
        ],
        "node-a's two pods on the sensor",
    );
    let listed = (0..600).any(|_| {
        let found = vigil_ok(&sensor.socket, &["policy", "list"]).contains("default-opens");
        if !found {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        found
    });
    assert!(
        listed,
        "the namespaced policy never reached the sensor\noperator:\n{}\nunanswered: {:?}\nsensor:\n{}",
        op.stderr(),
        kube.unanswered(),
        sensor.stderr()
    );

    // Exec events carry the pod as the operator described it.
    let x1 = open_in(Some(&xwing), &target);
    // The pid execs twice: the shell on the host, which moves itself into the cgroup, then the
    // workload inside it.
    let ev = sensor.wait_event("the exec in xwing", |e| {
        exec_of(e, x1).is_some_and(|p| p.binary.ends_with("vigil-e2e-workload"))
    });
    let p = exec_of(&ev, x1).expect("the exec");
    let pod_ev = p.pod.as_ref().expect("the exec in xwing carries its pod");
    assert_eq!(pod_ev.namespace, "default");
    assert_eq!(pod_ev.name, "xwing-7d4b9c6f5-x2x9q");
    assert_eq!(pod_ev.uid, xwing.pod_uid);
    assert_eq!(pod_ev.pod_labels["app"], "xwing");
    assert_eq!(
        (pod_ev.workload.as_str(), pod_ev.workload_kind.as_str()),
        ("xwing", "Deployment"),
        "the ReplicaSet owner resolves to its Deployment"
    );
    let ct = pod_ev.container.as_ref().expect("the container");
    assert_eq!(ct.id, xwing.id, "the id without containerd://");
    assert_eq!(ct.name, "main");
    assert_eq!(ct.start_time, "2026-11-28T12:00:00Z");
    let image = ct.image.as_ref().expect("image");
    assert_eq!(image.name, "quay.io/cilium/starwars:v2");
    assert_eq!(image.id, "quay.io/cilium/starwars@sha256:0123abcd");
    assert!(
        ct.security_context.as_ref().is_some_and(|s| s.privileged),
        "privileged comes from the pod spec"
    );

    // The namespaced policy: empire's pod and the host first, then default's pod.
    let t1 = open_in(Some(&tie), &target);
    let h1 = open_in(None, &target);
    let x2 = open_in(Some(&xwing), &target);
    let seen = |pid: u32| opens_of(&sensor, &target).iter().any(|(p, _)| *p == pid);
    wait_for(event_timeout(), "the open in default's pod", || {
        seen(x2).then_some(())
    });
    assert!(
        !seen(t1) && !seen(h1),
        "only the policy's namespace may match"
    );

    // The operator wrote the status back: accepted, and ready on the one node.
    let status = wait_for(start_timeout(), "the policy's status", || {
        kube.get("TracingPolicyNamespaced", "default", "default-opens")
            .map(|o| o["status"].clone())
            .filter(|s| s["nodes"]["ready"] == 1)
    });
    assert_eq!(status["nodes"]["targeted"], 1, "{status}");
    assert_eq!(status["observedGeneration"], 1, "{status}");

    // The cluster changes: xwing is deleted and a new pod takes its place in default. The
    // kernel's set follows: the old container stops matching, the new one matches.
    let xwing2 = FakeContainer::new(Runtime::Containerd);
    assert!(kube.delete("Pod", "default", "xwing-7d4b9c6f5-x2x9q"));
    kube.apply(pod(
        &xwing2,
        "default",
        "xwing2",
        "node-a",
        json!({"app": "xwing"}),
    ));
    wait_pods(
        &sensor,
        &[
            ("default", "xwing2-7d4b9c6f5-x2x9q"),
            ("empire", "tiefighter-7d4b9c6f5-x2x9q"),
        ],
        "the deletion and the new pod on the sensor",
    );
    let x3 = open_in(Some(&xwing), &target);
    let n1 = open_in(Some(&xwing2), &target);
    wait_for(event_timeout(), "the open in the new pod", || {
        seen(n1).then_some(())
    });
    assert!(!seen(x3), "the deleted pod's container still matched");

    let text = sensor.metrics();
    assert!(
        metric_value(&text, "vigil_operator_pod_sets_total") >= 2.0,
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "vigil_operator_pods_rejected_total"),
        0.0
    );
    let optext = op.metrics();
    // xwing2 and tiefighter on node-a, ywing on node-b.
    assert_eq!(
        metric_value(&optext, "vigil_operator_pods"),
        3.0,
        "{optext}"
    );
    // Both sides' metrics under the documented names, each defined once.
    assert_eq!(
        metric_value(&optext, "vigil_operator_leader"),
        1.0,
        "{optext}"
    );
    assert!(
        metric_value(
            &optext,
            "vigil_operator_reconciles_total{kind=\"TracingPolicyNamespaced\",result=\"ok\"}"
        ) >= 1.0,
        "{optext}"
    );
    assert_eq!(
        metric_value(&optext, "vigil_operator_policies_distributed"),
        1.0,
        "{optext}"
    );
    let mut defined: Vec<&str> = optext
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let n = defined.len();
    defined.sort_unstable();
    defined.dedup();
    assert_eq!(defined.len(), n, "a metric is defined twice:\n{optext}");
    assert!(!optext.contains("vigil_operator_operator_"), "{optext}");
    assert!(
        kube.unanswered().is_empty(),
        "requests the fake API server could not answer: {:?}",
        kube.unanswered()
    );
}

#[test]
fn deleting_a_policy_resource_withdraws_it_and_the_operator_restarts_without_losing_pods() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_str().unwrap().to_string();
    let kube = FakeKube::start();
    let c = FakeContainer::new(Runtime::Containerd);
    kube.apply(pod(
        &c,
        "default",
        "xwing",
        "node-a",
        json!({"app": "xwing"}),
    ));
    kube.apply(namespaced_open_policy("default", "to-delete", &dir));
    let mut op = Operator::start_kubernetes(&kube.kubeconfig());
    let sensor =
        Sensor::start_with_metrics(&["--operator-address", &op.url(), "--node-name", "node-a"]);
    let has_policy = || vigil_ok(&sensor.socket, &["policy", "list"]).contains("to-delete");
    wait_for(start_timeout(), "the policy on the sensor", || {
        has_policy().then_some(())
    });
    // The operator put its finalizer on the resource before distributing it.
    let obj = kube
        .get("TracingPolicyNamespaced", "default", "to-delete")
        .expect("the resource");
    assert_eq!(
        obj["metadata"]["finalizers"],
        json!(["vigil.dev/policy-cleanup"]),
        "{obj}"
    );
    // `vigil status --operator` shows the node with its pod.
    let status = op.status();
    assert_eq!(status["nodes"][0]["name"], "node-a", "{status}");
    assert_eq!(status["nodes"][0]["pods"], 1, "{status}");

    // Deleted in the cluster: withdrawn from the sensor, then the finalizer is released and the
    // resource is gone.
    assert!(kube.delete("TracingPolicyNamespaced", "default", "to-delete"));
    wait_for(
        start_timeout(),
        "the policy withdrawn from the sensor",
        || (!has_policy()).then_some(()),
    );
    wait_for(start_timeout(), "the resource gone", || {
        kube.get("TracingPolicyNamespaced", "default", "to-delete")
            .is_none()
            .then_some(())
    });

    // The operator restarts; meanwhile the sensor keeps its pods, and afterwards gets the
    // cluster's current pods (a new one included).
    op.kill();
    wait_for(
        start_timeout(),
        "the sensor to see the operator gone",
        || (metric_value(&sensor.metrics(), "vigil_operator_connected") == 0.0).then_some(()),
    );
    let c2 = FakeContainer::new(Runtime::Crio);
    kube.apply(pod(
        &c2,
        "default",
        "ywing",
        "node-a",
        json!({"app": "ywing"}),
    ));
    wait_pods(
        &sensor,
        &[("default", "xwing-7d4b9c6f5-x2x9q")],
        "the pods kept while the operator is away",
    );
    op.restart();
    wait_pods(
        &sensor,
        &[
            ("default", "xwing-7d4b9c6f5-x2x9q"),
            ("default", "ywing-7d4b9c6f5-x2x9q"),
        ],
        "the cluster's pods after the operator's restart",
    );
    assert!(kube.unanswered().is_empty(), "{:?}", kube.unanswered());
}

/// A cluster-wide TracingPolicy on openat of files under `dir` for nodes labelled `zone`.
fn zoned_open_policy(name: &str, zone: &str, dir: &str) -> Value {
    json!({
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "TracingPolicy",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"matchLabels": {"zone": zone}},
            "kprobes": [{
                "call": "sys_openat",
                "syscall": true,
                "args": [{"index": 1, "type": "string"}],
                "selectors": [{
                    "matchArgs": [{"index": 1, "operator": "Prefix", "values": [format!("{dir}/")]}],
                }],
            }],
        },
    })
}

fn node(name: &str, zone: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"zone": zone}}})
}

#[test]
fn node_selector_follows_the_node_objects_labels() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_str().unwrap().to_string();
    let kube = FakeKube::start();
    kube.apply(node("node-a", "blue"));
    kube.apply(zoned_open_policy("blue-opens", "blue", &dir));
    kube.apply(zoned_open_policy("red-opens", "red", &dir));
    let op = Operator::start_kubernetes(&kube.kubeconfig());
    // The sensor announces no labels (a DaemonSet cannot know each node's): the Node object's
    // labels select the policies.
    let sensor = Sensor::start(&["--operator-address", &op.url(), "--node-name", "node-a"]);
    let policies = || vigil_ok(&sensor.socket, &["policy", "list"]);
    wait_for(start_timeout(), "the blue policy on the blue node", || {
        policies().contains("blue-opens").then_some(())
    });
    assert!(!policies().contains("red-opens"), "{}", policies());
    // Relabelled in the cluster: the node now runs the red policy only.
    kube.apply(node("node-a", "red"));
    wait_for(
        start_timeout(),
        "the policies to follow the relabel",
        || {
            let p = policies();
            (p.contains("red-opens") && !p.contains("blue-opens")).then_some(())
        },
    );
    let status = op.status();
    assert_eq!(status["nodes"][0]["labels"]["zone"], "red", "{status}");
    assert!(kube.unanswered().is_empty(), "{:?}", kube.unanswered());
}

/// A cluster-wide TracingPolicy on openat of `path` exactly, limited by `scope` (spec fields).
fn exact_open_policy(name: &str, path: &str, scope: Value) -> Value {
    let mut spec = json!({
        "kprobes": [{
            "call": "sys_openat",
            "syscall": true,
            "args": [{"index": 1, "type": "string"}],
            "selectors": [{"matchArgs": [{"index": 1, "operator": "Equal", "values": [path]}]}],
        }],
    });
    if let (Some(spec), Some(scope)) = (spec.as_object_mut(), scope.as_object()) {
        spec.extend(scope.clone());
    }
    json!({"apiVersion": "vigil.dev/v1alpha1", "kind": "TracingPolicy",
           "metadata": {"name": name}, "spec": spec})
}

#[test]
fn host_selector_follows_the_node_objects_labels() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_str().unwrap().to_string();
    let target = format!("{dir}/f");
    let barrier = format!("{dir}/barrier");
    std::fs::write(&target, "x").unwrap();
    std::fs::write(&barrier, "x").unwrap();
    let kube = FakeKube::start();
    kube.apply(node("node-a", "blue"));
    kube.apply(exact_open_policy(
        "blue-hosts",
        &target,
        json!({"hostSelector": {"matchLabels": {"zone": "blue"}}}),
    ));
    kube.apply(exact_open_policy("barrier", &barrier, json!({})));
    let op = Operator::start_kubernetes(&kube.kubeconfig());
    // No --node-labels: the operator tells the sensor its Node's labels.
    let sensor = Sensor::start(&["--operator-address", &op.url(), "--node-name", "node-a"]);
    let policies = || vigil_ok(&sensor.socket, &["policy", "list"]);
    wait_for(start_timeout(), "both policies on the sensor", || {
        let p = policies();
        (p.contains("blue-hosts") && p.contains("barrier")).then_some(())
    });
    let seen = |path: &str, pid: u32| opens_of(&sensor, path).iter().any(|(p, _)| *p == pid);
    let h1 = open_in(None, &target);
    wait_for(event_timeout(), "the host open on the blue node", || {
        seen(&target, h1).then_some(())
    });

    // The Node is relabelled: host processes leave the policy's scope in the kernel.
    kube.apply(node("node-a", "red"));
    // Until the sensor has the new labels host opens still match; then they stop. Each round
    // opens the file, then the barrier (matched by an unscoped policy): once the barrier's
    // event is out, the file's would be too.
    wait_for(start_timeout(), "host opens to stop matching", || {
        let h = open_in(None, &target);
        let b = open_in(None, &barrier);
        wait_for(event_timeout(), "the barrier open", || {
            seen(&barrier, b).then_some(())
        });
        (!seen(&target, h)).then_some(())
    });
    assert!(kube.unanswered().is_empty(), "{:?}", kube.unanswered());
}
