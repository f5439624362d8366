//! `pod_info` from pod JSON as the API server sends it, and the watcher against a mocked API
//! server: the list, the watch, a re-list after the watch lost its place, stopping.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::*;
use crate::testing::{ApiServer, mock_client, reply, reply_stream, status_error};

const PODS: &str = "/api/v1/pods";

fn pod(value: Value) -> Pod {
    serde_json::from_value(value).expect("a valid Pod")
}

/// A running pod on `node` (`None`: unscheduled) with one container `app`.
fn pod_json(name: &str, node: Option<&str>, rv: &str) -> Value {
    let mut spec = json!({"containers": [{"name": "app", "image": "nginx:1.27"}]});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": format!("uid-{name}"),
            "resourceVersion": rv,
            "labels": {"app": name},
        },
        "spec": spec,
        "status": {
            "phase": "Running",
            "containerStatuses": [{
                "name": "app",
                "containerID": format!("containerd://{name}-app"),
                "image": "docker.io/library/nginx:1.27",
                "imageID": "docker.io/library/nginx@sha256:aaaa",
                "ready": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": "2025-03-04T05:06:07Z"}},
            }],
        },
    })
}

fn with_owner(mut v: Value, kind: &str, name: &str, controller: Option<bool>) -> Value {
    let mut owner =
        json!({"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "owner-uid"});
    if let Some(c) = controller {
        owner["controller"] = json!(c);
    }
    v["metadata"]["ownerReferences"] = json!([owner]);
    v
}

fn workload_of(v: Value) -> (String, String) {
    let p = pod_info(&pod(v)).expect("scheduled");
    (p.pod.workload, p.pod.workload_kind)
}

fn wl(name: &str, kind: &str) -> (String, String) {
    (name.to_string(), kind.to_string())
}

#[test]
fn pod_info_copies_metadata_and_the_running_container() {
    let mut v = pod_json("web-1", Some("node-a"), "5");
    v["metadata"]["annotations"] = json!({"team": "payments"});
    let p = pod_info(&pod(v)).unwrap();
    assert_eq!(p.node, "node-a");
    assert_eq!(p.pod.namespace, "shop");
    assert_eq!(p.pod.name, "web-1");
    assert_eq!(p.pod.uid, "uid-web-1");
    assert_eq!(
        p.pod.labels,
        HashMap::from([("app".into(), "web-1".into())])
    );
    assert_eq!(
        p.pod.annotations,
        HashMap::from([("team".into(), "payments".into())])
    );
    assert_eq!(
        p.pod.containers,
        [PodContainer {
            id: "web-1-app".into(),
            name: "app".into(),
            image: "docker.io/library/nginx:1.27".into(),
            image_id: "docker.io/library/nginx@sha256:aaaa".into(),
            start_time: "2025-03-04T05:06:07Z".into(),
            privileged: false,
        }]
    );
}

#[test]
fn pod_info_strips_any_runtime_prefix_from_container_ids() {
    for (raw, want) in [
        ("containerd://0123abcd", "0123abcd"),
        ("cri-o://4567ef01", "4567ef01"),
        ("docker://89ab", "89ab"),
        ("anything://cdef", "cdef"),
        ("bare0123", "bare0123"),
    ] {
        let mut v = pod_json("p", Some("n"), "1");
        v["status"]["containerStatuses"][0]["containerID"] = json!(raw);
        let p = pod_info(&pod(v)).unwrap();
        assert_eq!(p.pod.containers[0].id, want, "{raw}");
    }
}

#[test]
fn pod_info_lists_statuses_in_order_with_privileged_from_the_spec_by_name() {
    let v = json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "1"},
        "spec": {
            "nodeName": "node-a",
            "containers": [
                {"name": "main", "image": "app:1"},
                {"name": "helper", "image": "helper:1",
                 "securityContext": {"privileged": false}},
            ],
            "initContainers": [
                {"name": "setup", "image": "setup:1", "securityContext": {"privileged": true}},
            ],
            "ephemeralContainers": [
                {"name": "debug", "image": "busybox", "securityContext": {"privileged": true}},
            ],
        },
        "status": {
            // Not in spec order: statuses come in their own order, regular ones first.
            "containerStatuses": [
                {"name": "helper", "containerID": "cri-o://h", "image": "helper:1", "imageID": "h@sha",
                 "ready": true, "restartCount": 0,
                 "state": {"running": {"startedAt": "2025-01-01T00:00:02Z"}}},
                {"name": "main", "containerID": "cri-o://m", "image": "app:1", "imageID": "m@sha",
                 "ready": true, "restartCount": 0,
                 "state": {"running": {"startedAt": "2025-01-01T00:00:01Z"}}},
            ],
            "initContainerStatuses": [
                {"name": "setup", "containerID": "cri-o://s", "image": "setup:1", "imageID": "s@sha",
                 "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0, "startedAt": "2025-01-01T00:00:00Z",
                                          "finishedAt": "2025-01-01T00:00:01Z"}}},
            ],
            "ephemeralContainerStatuses": [
                {"name": "debug", "containerID": "cri-o://d", "image": "busybox", "imageID": "d@sha",
                 "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}},
            ],
        },
    });
    let p = pod_info(&pod(v)).unwrap();
    let got: Vec<(&str, &str, &str, bool)> = p
        .pod
        .containers
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.id.as_str(),
                c.start_time.as_str(),
                c.privileged,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("helper", "h", "2025-01-01T00:00:02Z", false),
            ("main", "m", "2025-01-01T00:00:01Z", false),
            // Terminated: its start time; privileged from the init container's spec.
            ("setup", "s", "2025-01-01T00:00:00Z", true),
            // Waiting: no start time.
            ("debug", "d", "", true),
        ]
    );
    assert_eq!(p.pod.containers[3].image_id, "d@sha");
}

#[test]
fn pod_info_lists_spec_containers_without_a_status_with_an_empty_id() {
    let mut v = pod_json("p", Some("node-a"), "1");
    v["spec"]["containers"].as_array_mut().unwrap().push(
        json!({"name": "sidecar", "image": "envoy:1", "securityContext": {"privileged": true}}),
    );
    v["spec"]["initContainers"] = json!([{"name": "init", "image": "init:1"}]);
    let p = pod_info(&pod(v)).unwrap();
    assert_eq!(
        p.pod.containers[1..],
        [
            PodContainer {
                id: String::new(),
                name: "sidecar".into(),
                image: "envoy:1".into(),
                image_id: String::new(),
                start_time: String::new(),
                privileged: true,
            },
            PodContainer {
                id: String::new(),
                name: "init".into(),
                image: "init:1".into(),
                image_id: String::new(),
                start_time: String::new(),
                privileged: false,
            },
        ]
    );
    assert_eq!(p.pod.containers[0].name, "app");
    assert_eq!(p.pod.containers[0].id, "p-app");

    // A pod just scheduled: no status at all, every container from the spec.
    let mut v = pod_json("q", Some("node-a"), "1");
    v.as_object_mut().unwrap().remove("status");
    let p = pod_info(&pod(v)).unwrap();
    assert_eq!(p.pod.containers.len(), 1);
    assert_eq!(p.pod.containers[0].name, "app");
    assert_eq!(p.pod.containers[0].image, "nginx:1.27");
    assert_eq!(p.pod.containers[0].id, "");
}

#[test]
fn pod_info_is_none_for_unscheduled_or_uid_less_pods() {
    assert_eq!(pod_info(&pod(pod_json("p", None, "1"))), None);
    assert_eq!(pod_info(&pod(pod_json("p", Some(""), "1"))), None);
    let mut v = pod_json("p", Some("node-a"), "1");
    v["metadata"].as_object_mut().unwrap().remove("uid");
    assert_eq!(pod_info(&pod(v)), None);
    // The same pod with both is there (so the Nones above are about those fields).
    assert!(pod_info(&pod(pod_json("p", Some("node-a"), "1"))).is_some());
}

#[test]
fn workload_of_a_deployment_pod_is_the_deployment() {
    let mut v = with_owner(
        pod_json("web-7d9f8c6b5-x2x4z", Some("n"), "1"),
        "ReplicaSet",
        "web-7d9f8c6b5",
        Some(true),
    );
    v["metadata"]["labels"]["pod-template-hash"] = json!("7d9f8c6b5");
    assert_eq!(workload_of(v.clone()), wl("web", "Deployment"));
    // A Deployment whose own name has dashes.
    v["metadata"]["ownerReferences"][0]["name"] = json!("shop-front-end-7d9f8c6b5");
    assert_eq!(workload_of(v), wl("shop-front-end", "Deployment"));
}

#[test]
fn workload_of_a_bare_replicaset_pod_is_the_replicaset() {
    // No hash label.
    let v = with_owner(
        pod_json("rs-abcde", Some("n"), "1"),
        "ReplicaSet",
        "web-7d9f8c6b5",
        Some(true),
    );
    assert_eq!(workload_of(v.clone()), wl("web-7d9f8c6b5", "ReplicaSet"));
    // A hash label the name does not end with.
    let mut v = v;
    v["metadata"]["labels"]["pod-template-hash"] = json!("0000000");
    assert_eq!(workload_of(v.clone()), wl("web-7d9f8c6b5", "ReplicaSet"));
    // The name is only the hash: no Deployment name left.
    v["metadata"]["labels"]["pod-template-hash"] = json!("web-7d9f8c6b5");
    assert_eq!(workload_of(v), wl("web-7d9f8c6b5", "ReplicaSet"));
}

#[test]
fn workload_of_other_owners_is_the_owner_as_is() {
    for kind in [
        "StatefulSet",
        "DaemonSet",
        "Job",
        "ReplicationController",
        "Rollout",
    ] {
        let mut v = with_owner(pod_json("p-0", Some("n"), "1"), kind, "db", Some(true));
        // A hash label does not matter for these kinds.
        v["metadata"]["labels"]["pod-template-hash"] = json!("abc");
        assert_eq!(workload_of(v), wl("db", kind));
    }
}

#[test]
fn workload_prefers_the_controller_owner_then_the_first() {
    let mut v = pod_json("p", Some("n"), "1");
    v["metadata"]["ownerReferences"] = json!([
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "1"},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "2", "controller": true},
    ]);
    assert_eq!(workload_of(v.clone()), wl("agent", "DaemonSet"));
    v["metadata"]["ownerReferences"][1]["controller"] = json!(false);
    assert_eq!(workload_of(v), wl("cm", "ConfigMap"));
}

#[test]
fn workload_of_a_pod_without_owner_is_the_pod() {
    assert_eq!(
        workload_of(pod_json("standalone", Some("n"), "1")),
        wl("standalone", "Pod")
    );
}

// ---- The watcher against a mocked API server. ----

#[derive(Debug, Clone, PartialEq)]
enum FeedCall {
    Replace(Vec<NodePod>),
    Upsert(Box<NodePod>),
    Delete(String),
}

/// Records every call, in order, for the test to wait on.
struct FakeFeed(mpsc::UnboundedSender<FeedCall>);

impl PodFeed for FakeFeed {
    fn replace_pods(&self, pods: Vec<NodePod>) {
        let _ = self.0.send(FeedCall::Replace(pods));
    }
    fn upsert_pod(&self, pod: NodePod) {
        let _ = self.0.send(FeedCall::Upsert(Box::new(pod)));
    }
    fn delete_pod(&self, uid: &str) {
        let _ = self.0.send(FeedCall::Delete(uid.to_string()));
    }
}

struct Harness {
    server: ApiServer,
    calls: mpsc::UnboundedReceiver<FeedCall>,
    metrics: Arc<KubeMetrics>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

fn start() -> Harness {
    let (client, server) = mock_client();
    let (tx, calls) = mpsc::unbounded_channel();
    let metrics = Arc::new(KubeMetrics::new());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run_pod_watcher(
        client,
        Arc::new(FakeFeed(tx)),
        metrics.clone(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    Harness {
        server,
        calls,
        metrics,
        stop: Some(stop_tx),
        task,
    }
}

impl Harness {
    /// The next feed call; fails when none comes within 5 s.
    async fn next_call(&mut self) -> FeedCall {
        tokio::time::timeout(Duration::from_secs(5), self.calls.recv())
            .await
            .expect("no feed call within 5 s")
            .expect("watcher gone")
    }

    /// Answer the next request, which must be the LIST of all pods, with `items`.
    async fn answer_list(&mut self, rv: &str, items: &[Value]) {
        let (call, send) = self.server.next().await;
        assert_eq!(call.method, http::Method::GET);
        assert_eq!(call.path(), PODS, "pods of all namespaces: {}", call.uri);
        assert!(!call.query().contains("watch"), "a list: {}", call.uri);
        reply(
            send,
            200,
            &json!({"apiVersion": "v1", "kind": "PodList",
                    "metadata": {"resourceVersion": rv}, "items": items}),
        );
    }

    /// Answer the next request, which must be the WATCH of all pods from `rv`, with a stream.
    async fn answer_watch(&mut self, rv: &str) -> futures::channel::mpsc::UnboundedSender<Value> {
        let (call, send) = self.server.next().await;
        assert_eq!(call.method, http::Method::GET);
        assert_eq!(call.path(), PODS, "pods of all namespaces: {}", call.uri);
        assert!(call.query().contains("watch=true"), "a watch: {}", call.uri);
        assert!(
            call.query().contains(&format!("resourceVersion={rv}")),
            "from the list's version: {}",
            call.uri
        );
        reply_stream(send)
    }

    fn pods_gauge(&self) -> i64 {
        self.metrics.pods.get()
    }

    fn errors(&self) -> u64 {
        self.metrics.pod_watch_errors.get()
    }

    /// Stop the watcher and check that it ends, having made no further feed call.
    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the watcher did not stop within 5 s")
            .unwrap();
        assert_eq!(self.calls.try_recv().ok(), None, "an unexpected feed call");
    }
}

#[tokio::test]
async fn watcher_lists_then_feeds_changes_in_order() {
    let mut h = start();
    let a = pod_json("a", Some("node-a"), "90");
    let b = pod_json("b", Some("node-b"), "91");
    let pending = pod_json("pending", None, "92");
    h.answer_list("100", &[a.clone(), b.clone(), pending.clone()])
        .await;

    // The list, without the unscheduled pod, each with its node.
    let FeedCall::Replace(pods) = h.next_call().await else {
        panic!("the list must come first as replace_pods");
    };
    assert_eq!(
        pods,
        [
            pod_info(&pod(a.clone())).unwrap(),
            pod_info(&pod(b.clone())).unwrap()
        ]
    );
    assert_eq!(
        pods.iter().map(|p| p.node.as_str()).collect::<Vec<_>>(),
        ["node-a", "node-b"]
    );
    assert_eq!(h.pods_gauge(), 2);

    let events = h.answer_watch("100").await;
    // Relabelled.
    let mut a2 = a.clone();
    a2["metadata"]["resourceVersion"] = json!("101");
    a2["metadata"]["labels"] = json!({"app": "a", "tier": "gold"});
    events
        .unbounded_send(json!({"type": "MODIFIED", "object": a2}))
        .unwrap();
    let FeedCall::Upsert(up) = h.next_call().await else {
        panic!("MODIFIED must be an upsert")
    };
    assert_eq!(up.node, "node-a");
    assert_eq!(up.pod.uid, "uid-a");
    assert_eq!(
        up.pod.labels,
        HashMap::from([("app".into(), "a".into()), ("tier".into(), "gold".into())])
    );
    assert_eq!(h.pods_gauge(), 2, "a known pod changed: still 2");

    // A new pod.
    let c = pod_json("c", Some("node-b"), "102");
    events
        .unbounded_send(json!({"type": "ADDED", "object": c}))
        .unwrap();
    assert_eq!(
        h.next_call().await,
        FeedCall::Upsert(Box::new(pod_info(&pod(c)).unwrap()))
    );
    assert_eq!(h.pods_gauge(), 3);

    // The unscheduled pod changes, still without a node: no node may have it.
    let mut pending2 = pending;
    pending2["metadata"]["resourceVersion"] = json!("103");
    events
        .unbounded_send(json!({"type": "MODIFIED", "object": pending2}))
        .unwrap();
    assert_eq!(h.next_call().await, FeedCall::Delete("uid-pending".into()));
    assert_eq!(h.pods_gauge(), 3, "it was never counted");

    // Deleted.
    let mut b2 = b;
    b2["metadata"]["resourceVersion"] = json!("104");
    events
        .unbounded_send(json!({"type": "DELETED", "object": b2}))
        .unwrap();
    assert_eq!(h.next_call().await, FeedCall::Delete("uid-b".into()));
    assert_eq!(h.pods_gauge(), 2);

    assert_eq!(h.errors(), 0);
    h.server.expect_nothing(Duration::from_millis(50)).await;
    h.stop().await;
}

// The clock is paused so that the watcher's backoff (0.8 s and more, with jitter) passes at once:
// the runtime jumps to the next timer whenever every task waits.
#[tokio::test(start_paused = true)]
async fn watcher_relists_after_the_watch_lost_its_place_and_counts_errors() {
    let mut h = start();
    let a = pod_json("a", Some("node-a"), "90");
    let b = pod_json("b", Some("node-b"), "91");
    h.answer_list("100", &[a.clone(), b.clone()]).await;
    assert_eq!(
        h.next_call().await,
        FeedCall::Replace(vec![
            pod_info(&pod(a.clone())).unwrap(),
            pod_info(&pod(b)).unwrap()
        ])
    );
    assert_eq!(h.pods_gauge(), 2);
    let events = h.answer_watch("100").await;

    // The API server no longer has the watch's version (e.g. after an outage): the watcher must
    // list again. Pod b was deleted meanwhile; its DELETED event is lost.
    events
        .unbounded_send(json!({"type": "ERROR",
            "object": status_error(410, "Expired", "too old resource version: 100 (150)")}))
        .unwrap();
    // The re-list fails once, and is retried.
    let (call, send) = h.server.next().await;
    assert_eq!(call.path(), PODS, "{}", call.uri);
    assert!(!call.query().contains("watch"), "a list: {}", call.uri);
    assert_eq!(h.errors(), 1, "the 410 is counted");
    reply(
        send,
        500,
        &status_error(500, "InternalError", "etcd unavailable"),
    );
    h.answer_list("150", std::slice::from_ref(&a)).await;
    assert_eq!(h.errors(), 2, "the failed list is counted");

    // The complete list: b is not in it.
    assert_eq!(
        h.next_call().await,
        FeedCall::Replace(vec![pod_info(&pod(a)).unwrap()])
    );
    assert_eq!(h.pods_gauge(), 1);
    let _events = h.answer_watch("150").await;
    h.stop().await;
}

#[tokio::test]
async fn watcher_stops_while_waiting_for_the_api_server() {
    let mut h = start();
    // The list request is made but never answered.
    let (call, _send) = h.server.next().await;
    assert_eq!(call.path(), PODS);
    h.stop().await;
}

#[test]
fn metric_names() {
    let m = KubeMetrics::new();
    m.pods.set(3);
    m.pod_watch_errors.inc();
    let text = m.encode();
    assert!(text.contains("\nvigil_operator_pods 3\n"), "{text}");
    assert!(
        text.contains("\nvigil_operator_pod_watch_errors_total 1\n"),
        "{text}"
    );
}
