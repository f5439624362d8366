//! Controller tests against a mocked API server: every request is checked (method, path,
//! content type, body) and a missing or extra request fails the test.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use vigil_api::policy::ir::PolicyKind;
use vigil_api::policy::{TracingPolicy, TracingPolicyDoc, TracingPolicyNamespaced};

use super::*;
use crate::fleet::Rollup;
use crate::testing::{ApiServer, Call, FakeFleet, mock_client, reply, reply_stream};

const TP: &str = "/apis/vigil.dev/v1alpha1/tracingpolicies";

fn valid_spec() -> Value {
    json!({
        "kprobes": [{
            "call": "sys_openat",
            "syscall": true,
            "args": [{"index": 1, "type": "string"}],
            "selectors": [{"matchActions": [{"action": "Post"}]}]
        }],
        "options": [{"name": "policy-mode", "value": "monitor"}],
        "nodeSelector": {"matchLabels": {"role": "worker"}}
    })
}

fn invalid_spec() -> Value {
    json!({
        "kprobes": [{
            "call": "sys_openat",
            "syscall": true,
            "args": [{"index": 1, "type": "string"}],
            "selectors": [{"matchArgs": [{"index": 7, "operator": "Equal", "values": ["/etc/passwd"]}]}]
        }]
    })
}

fn object(kind: &str, name: &str, ns: Option<&str>, generation: i64, spec: Value) -> Value {
    let mut metadata = json!({
        "name": name,
        "uid": format!("uid-{name}"),
        "generation": generation,
        "resourceVersion": "100",
    });
    if let Some(ns) = ns {
        metadata["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": kind,
        "metadata": metadata,
        "spec": spec,
    })
}

fn with_finalizer(mut v: Value) -> Value {
    v["metadata"]["finalizers"] = json!([FINALIZER]);
    v
}

fn tp(v: &Value) -> Arc<TracingPolicy> {
    Arc::new(serde_json::from_value(v.clone()).unwrap())
}

fn tpn(v: &Value) -> Arc<TracingPolicyNamespaced> {
    Arc::new(serde_json::from_value(v.clone()).unwrap())
}

fn context(fleet: &Arc<FakeFleet>) -> (Arc<Context>, ApiServer, Arc<KubeMetrics>) {
    let (client, server) = mock_client();
    let metrics = Arc::new(KubeMetrics::new());
    let ctx = Arc::new(Context::new(client, fleet.clone(), metrics.clone()));
    (ctx, server, metrics)
}

/// The reconcile's result; fails if it is still waiting (for a request nobody expected).
async fn done(task: tokio::task::JoinHandle<Result<Action>>) -> Action {
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("reconcile still running: it made a request the test did not expect")
        .unwrap()
        .unwrap()
}

/// The status patch: server-side apply by `vigil-operator`, forced, on the status subresource.
fn assert_status_patch(call: &Call, path: &str, kind: &str) {
    assert_eq!(call.method, http::Method::PATCH);
    assert_eq!(call.path(), path);
    assert!(
        call.query().contains("fieldManager=vigil-operator"),
        "{}",
        call.uri
    );
    assert!(call.query().contains("force=true"), "{}", call.uri);
    assert_eq!(call.content_type, "application/apply-patch+yaml");
    assert_eq!(call.body["apiVersion"], "vigil.dev/v1alpha1");
    assert_eq!(call.body["kind"], kind);
    assert_eq!(
        call.body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["apiVersion", "kind", "status"]
    );
}

/// The conditions of a patched status without their transition times (checked to be there).
fn conditions(status: &Value) -> Vec<Value> {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mut c = c.clone();
            let t = c.as_object_mut().unwrap().remove("lastTransitionTime");
            assert!(
                t.is_some_and(|t| t.is_string()),
                "lastTransitionTime missing"
            );
            c
        })
        .collect()
}

#[tokio::test]
async fn valid_policy_gets_finalizer_then_is_pushed_and_status_rolled_up() {
    let fleet = Arc::new(FakeFleet::new());
    let (ctx, mut server, metrics) = context(&fleet);
    let fresh = object("TracingPolicy", "file-monitor", None, 2, valid_spec());

    // 1. No finalizer yet: it is added (and nothing is pushed before it is there).
    let (obj, ctx2) = (tp(&fresh), ctx.clone());
    let task = tokio::spawn(async move { reconcile(obj, ctx2).await });
    let (call, send) = server.next().await;
    assert_eq!(call.method, http::Method::PATCH);
    assert_eq!(call.path(), format!("{TP}/file-monitor"));
    assert_eq!(call.content_type, "application/json-patch+json");
    assert_eq!(
        call.body,
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}
        ])
    );
    let finalized = with_finalizer(fresh.clone());
    reply(send, 200, &finalized);
    assert_eq!(done(task).await, Action::await_change());
    assert!(fleet.upserts().is_empty());
    server.expect_nothing(Duration::from_millis(100)).await;

    // 2. With the finalizer: compiled, pushed, status from the fleet's roll-up.
    let key = PolicyKey::new("file-monitor", "");
    fleet.set_rollup(
        key.clone(),
        Rollup {
            budgeted: false,
            demoted: Vec::new(),
            rollout: None,
            generation: 2,
            targeted: 3,
            ready: 2,
            failed: vec![(
                "node-c".into(),
                "kprobe sys_openat: attach failed: EPERM".into(),
            )],
            pending: 0,
        },
    );
    let (obj, ctx2) = (tp(&finalized), ctx.clone());
    let task = tokio::spawn(async move { reconcile(obj, ctx2).await });
    let (call, send) = server.next().await;
    assert_status_patch(&call, &format!("{TP}/file-monitor/status"), "TracingPolicy");
    let status = call.body["status"].clone();
    assert_eq!(
        conditions(&status),
        [
            json!({"type": "Accepted", "status": "True", "reason": "Compiled",
                   "message": "generation 2 compiled: 1 hook", "observedGeneration": 2}),
            json!({"type": "Ready", "status": "False", "reason": "NodesFailed",
                   "message": "2/3 nodes loaded generation 2; 1 failed, 0 pending",
                   "observedGeneration": 2}),
            json!({"type": "Degraded", "status": "True", "reason": "NodeFailures",
                   "message": "node-c: kprobe sys_openat: attach failed: EPERM",
                   "observedGeneration": 2}),
        ]
    );
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(
        status["nodes"],
        json!({"targeted": 3, "ready": 2, "failed": 1, "pending": 0, "summary": "2/3"})
    );
    assert_eq!(status["mode"], "monitor");
    let mut patched = finalized.clone();
    patched["status"] = status;
    reply(send, 200, &patched);
    assert_eq!(done(task).await, Action::await_change());

    let upserts = fleet.upserts();
    assert_eq!(upserts.len(), 1);
    assert_eq!(upserts[0].key, key);
    assert_eq!(upserts[0].generation, 2);
    let identity = upserts[0].ir.identity.as_ref().unwrap();
    assert_eq!(identity.name, "file-monitor");
    assert_eq!(identity.namespace, "");
    assert_eq!(identity.kind, PolicyKind::Cluster as i32);
    let sel = upserts[0].node_selector.as_ref().expect("node selector");
    assert_eq!(sel.requirements.len(), 1);
    assert_eq!(sel.requirements[0].key, "role");
    assert_eq!(sel.requirements[0].values, ["worker"]);

    // 3. The watch brings the patched object back: nothing changed, no request, no re-push.
    let (obj, ctx2) = (tp(&patched), ctx.clone());
    let task = tokio::spawn(async move { reconcile(obj, ctx2).await });
    server.expect_nothing(Duration::from_millis(200)).await;
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("reconcile hung")
        .unwrap()
        .unwrap();
    assert_eq!(fleet.upserts().len(), 1);

    let text = metrics.encode();
    assert!(
        text.contains(r#"vigil_operator_reconciles_total{kind="TracingPolicy",result="ok"} 3"#),
        "{text}"
    );
    assert!(text.contains(r#"vigil_operator_policies{kind="TracingPolicy",state="degraded"} 1"#));
    assert!(text.contains(r#"vigil_operator_policies{kind="TracingPolicy",state="ready"} 0"#));
    assert!(text.contains(r#"vigil_operator_status_patches_total{kind="TracingPolicy"} 1"#));
    assert!(
        text.contains(r#"vigil_operator_reconcile_duration_seconds_count{kind="TracingPolicy"} 3"#)
    );
}

#[tokio::test]
async fn invalid_spec_is_not_pushed_and_reports_the_validator_message() {
    let fleet = Arc::new(FakeFleet::new());
    let (ctx, mut server, metrics) = context(&fleet);
    let v = with_finalizer(object("TracingPolicy", "bad", None, 1, invalid_spec()));
    let expected = vigil_api::policy::compile(&TracingPolicyDoc::from_cluster(&tp(&v)))
        .expect_err("the spec is invalid")
        .to_string();
    assert!(
        expected.contains("spec.kprobes[0].selectors[0].matchArgs[0]"),
        "{expected}"
    );

    let (obj, ctx2) = (tp(&v), ctx.clone());
    let task = tokio::spawn(async move { reconcile(obj, ctx2).await });
    let (call, send) = server.next().await;
    assert_status_patch(&call, &format!("{TP}/bad/status"), "TracingPolicy");
    let conds = conditions(&call.body["status"]);
    assert_eq!(
        conds[0],
        json!({"type": "Accepted", "status": "False", "reason": "InvalidSpec",
               "message": expected, "observedGeneration": 1})
    );
    assert_eq!(conds[1]["type"], "Ready");
    assert_eq!(conds[1]["status"], "False");
    assert_eq!(conds[1]["reason"], "NotAccepted");
    assert_eq!(conds[2]["type"], "Degraded");
    assert_eq!(conds[2]["status"], "False");
    assert_eq!(call.body["status"]["mode"], "enforce");
    let mut patched = v.clone();
    patched["status"] = call.body["status"].clone();
    reply(send, 200, &patched);
    done(task).await;

    assert!(
        fleet.upserts().is_empty(),
        "an invalid policy must not be pushed"
    );
    assert!(
        metrics
            .encode()
            .contains(r#"vigil_operator_policies{kind="TracingPolicy",state="rejected"} 1"#)
    );
}

#[tokio::test]
async fn deletion_removes_the_policy_from_the_fleet_then_the_finalizer() {
    let fleet = Arc::new(FakeFleet::new());
    let (ctx, mut server, _) = context(&fleet);
    let mut v = with_finalizer(object("TracingPolicy", "gone", None, 3, valid_spec()));
    v["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");

    let (obj, ctx2) = (tp(&v), ctx.clone());
    let task = tokio::spawn(async move { reconcile(obj, ctx2).await });
    let (call, send) = server.next().await;
    // The policy left the fleet before the finalizer is released.
    assert_eq!(fleet.removes(), [PolicyKey::new("gone", "")]);
    assert_eq!(call.method, http::Method::PATCH);
    assert_eq!(call.path(), format!("{TP}/gone"));
    assert_eq!(call.content_type, "application/json-patch+json");
    assert_eq!(
        call.body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"}
        ])
    );
    let mut released = v.clone();
    released["metadata"]["finalizers"] = json!([]);
    reply(send, 200, &released);
    done(task).await;
    assert!(fleet.upserts().is_empty());
    server.expect_nothing(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn namespaced_policy_is_scoped_to_its_namespace() {
    let fleet = Arc::new(FakeFleet::new());
    let (ctx, mut server, _) = context(&fleet);
    let v = with_finalizer(object(
        "TracingPolicyNamespaced",
        "team-policy",
        Some("team-a"),
        5,
        valid_spec(),
    ));
    let (obj, ctx2) = (tpn(&v), ctx.clone());
    let task = tokio::spawn(async move { reconcile(obj, ctx2).await });
    let (call, send) = server.next().await;
    assert_status_patch(
        &call,
        "/apis/vigil.dev/v1alpha1/namespaces/team-a/tracingpoliciesnamespaced/team-policy/status",
        "TracingPolicyNamespaced",
    );
    // Pushed, no node answered yet.
    let conds = conditions(&call.body["status"]);
    assert_eq!(conds[0]["status"], "True");
    assert_eq!(conds[1]["reason"], "NoTargetedNodes");
    reply(send, 200, &v);
    done(task).await;

    let upserts = fleet.upserts();
    assert_eq!(upserts.len(), 1);
    assert_eq!(upserts[0].key, PolicyKey::new("team-policy", "team-a"));
    assert_eq!(upserts[0].generation, 5);
    let identity = upserts[0].ir.identity.as_ref().unwrap();
    assert_eq!(identity.namespace, "team-a");
    assert_eq!(identity.kind, PolicyKind::Namespaced as i32);
    assert_eq!(upserts[0].ir.scope.as_ref().unwrap().namespace, "team-a");

    // Deleting it removes the namespaced key.
    let mut del = v.clone();
    del["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
    let (obj, ctx2) = (tpn(&del), ctx.clone());
    let task = tokio::spawn(async move { reconcile(obj, ctx2).await });
    let (call, send) = server.next().await;
    assert_eq!(
        call.path(),
        "/apis/vigil.dev/v1alpha1/namespaces/team-a/tracingpoliciesnamespaced/team-policy"
    );
    reply(send, 200, &del);
    done(task).await;
    assert_eq!(fleet.removes(), [PolicyKey::new("team-policy", "team-a")]);
}

#[tokio::test]
async fn a_new_generation_is_pushed_and_a_rejected_one_keeps_the_old_running() {
    let fleet = Arc::new(FakeFleet::new());
    let (ctx, mut server, _) = context(&fleet);
    let g1 = with_finalizer(object("TracingPolicy", "p", None, 1, valid_spec()));
    let (obj, ctx2) = (tp(&g1), ctx.clone());
    let task = tokio::spawn(async move { reconcile(obj, ctx2).await });
    let (_, send) = server.next().await;
    reply(send, 200, &g1);
    done(task).await;

    let g2 = with_finalizer(object("TracingPolicy", "p", None, 2, invalid_spec()));
    let (obj, ctx2) = (tp(&g2), ctx.clone());
    let task = tokio::spawn(async move { reconcile(obj, ctx2).await });
    let (call, send) = server.next().await;
    let conds = conditions(&call.body["status"]);
    assert_eq!(conds[0]["status"], "False");
    assert_eq!(
        conds[1]["message"],
        "generation 2 was not accepted (see Accepted); generation 1 keeps running: 0/0 nodes ready"
    );
    reply(send, 200, &g2);
    done(task).await;
    let upserts = fleet.upserts();
    assert_eq!(
        upserts.iter().map(|u| u.generation).collect::<Vec<_>>(),
        [1]
    );

    let g3 = with_finalizer(object("TracingPolicy", "p", None, 3, valid_spec()));
    let (obj, ctx2) = (tp(&g3), ctx.clone());
    let task = tokio::spawn(async move { reconcile(obj, ctx2).await });
    let (call, send) = server.next().await;
    assert_eq!(call.body["status"]["observedGeneration"], 3);
    reply(send, 200, &g3);
    done(task).await;
    let upserts = fleet.upserts();
    assert_eq!(
        upserts.iter().map(|u| u.generation).collect::<Vec<_>>(),
        [1, 3]
    );
}

/// The status a fully loaded `file-monitor` generation 1 has (times fixed).
fn ready_status() -> Value {
    json!({
        "observedGeneration": 1,
        "conditions": [
            {"type": "Accepted", "status": "True", "reason": "Compiled",
             "message": "generation 1 compiled: 1 hook", "observedGeneration": 1,
             "lastTransitionTime": "2025-01-01T00:00:00Z"},
            {"type": "Ready", "status": "True", "reason": "AllNodesReady",
             "message": "3/3 nodes loaded generation 1", "observedGeneration": 1,
             "lastTransitionTime": "2025-01-01T00:00:00Z"},
            {"type": "Degraded", "status": "False", "reason": "NoFailures",
             "message": "no node reported a failure", "observedGeneration": 1,
             "lastTransitionTime": "2025-01-01T00:00:00Z"}
        ],
        "nodes": {"targeted": 3, "ready": 3, "failed": 0, "pending": 0, "summary": "3/3"},
        "mode": "monitor"
    })
}

/// A fake API server for the running controllers: lists, watches (events pushed after each
/// status patch), status patches echoed. Every status patch is reported on `patches`; any
/// other kind of request fails the test.
async fn serve_controllers(
    mut server: ApiServer,
    mut object: Value,
    patches: tokio::sync::mpsc::UnboundedSender<Call>,
) {
    let mut watches = Vec::new();
    let mut tp_watch = None;
    let mut rv = 100;
    while let Some((call, send)) = server.next_or_end().await {
        let path = call.path().to_string();
        let is_watch = call.query().contains("watch=true");
        match (call.method.clone(), path.as_str()) {
            (http::Method::GET, TP) if is_watch => tp_watch = Some(reply_stream(send)),
            (http::Method::GET, TP) => reply(
                send,
                200,
                &json!({"apiVersion": "vigil.dev/v1alpha1", "kind": "TracingPolicyList",
                        "metadata": {"resourceVersion": "100"}, "items": [object]}),
            ),
            (http::Method::GET, "/apis/vigil.dev/v1alpha1/tracingpoliciesnamespaced")
                if is_watch =>
            {
                watches.push(reply_stream(send))
            }
            (http::Method::GET, "/apis/vigil.dev/v1alpha1/tracingpoliciesnamespaced") => reply(
                send,
                200,
                &json!({"apiVersion": "vigil.dev/v1alpha1", "kind": "TracingPolicyNamespacedList",
                        "metadata": {"resourceVersion": "100"}, "items": []}),
            ),
            (http::Method::PATCH, p) if p == format!("{TP}/file-monitor/status") => {
                rv += 1;
                object["status"] = call.body["status"].clone();
                object["metadata"]["resourceVersion"] = json!(rv.to_string());
                reply(send, 200, &object);
                if let Some(w) = &tp_watch {
                    let _ = w.unbounded_send(json!({"type": "MODIFIED", "object": object}));
                }
                patches.send(call).unwrap();
            }
            _ => panic!(
                "unexpected request: {} {} {}",
                call.method, call.uri, call.body
            ),
        }
    }
}

#[tokio::test]
async fn fleet_changes_re_patch_status_only_when_it_changed() {
    let fleet = Arc::new(FakeFleet::new());
    let key = PolicyKey::new("file-monitor", "");
    fleet.set_rollup(
        key.clone(),
        Rollup {
            budgeted: false,
            demoted: Vec::new(),
            rollout: None,
            generation: 1,
            targeted: 3,
            ready: 3,
            failed: vec![],
            pending: 0,
        },
    );
    let (client, server) = mock_client();
    let metrics = Arc::new(KubeMetrics::new());
    let ctx = Arc::new(Context::new(client, fleet.clone(), metrics.clone()));
    let mut obj = with_finalizer(object(
        "TracingPolicy",
        "file-monitor",
        None,
        1,
        valid_spec(),
    ));
    obj["status"] = ready_status();
    let (patch_tx, mut patches) = tokio::sync::mpsc::unbounded_channel();
    let api = tokio::spawn(serve_controllers(server, obj, patch_tx));
    let (stop_tx, stop_rx) = watch::channel(false);
    let controllers = tokio::spawn(run_controllers(ctx, stop_rx));

    // The initial list reconciles it: pushed, but its status is already right.
    tokio::time::timeout(Duration::from_secs(5), async {
        while fleet.upserts().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the policy was never pushed");
    assert_eq!(fleet.upserts()[0].key, key);
    assert!(
        tokio::time::timeout(Duration::from_millis(400), patches.recv())
            .await
            .is_err(),
        "status patched although nothing changed"
    );

    // A node fails: the tick re-patches the status.
    fleet.set_rollup(
        key.clone(),
        Rollup {
            budgeted: false,
            demoted: Vec::new(),
            rollout: None,
            generation: 1,
            targeted: 3,
            ready: 2,
            failed: vec![("node-b".into(), "lsm file_open: BPF LSM not enabled".into())],
            pending: 0,
        },
    );
    fleet.tick();
    let call = tokio::time::timeout(Duration::from_secs(5), patches.recv())
        .await
        .expect("no status patch after the fleet ticked")
        .unwrap();
    let conds = conditions(&call.body["status"]);
    assert_eq!(conds[1]["status"], "False");
    assert_eq!(conds[2]["status"], "True");
    assert_eq!(
        conds[2]["message"],
        "node-b: lsm file_open: BPF LSM not enabled"
    );
    assert_eq!(call.body["status"]["nodes"]["summary"], "2/3");
    // Accepted did not change: its transition time is kept.
    assert_eq!(
        call.body["status"]["conditions"][0]["lastTransitionTime"],
        "2025-01-01T00:00:00Z"
    );

    // Ticks without a change in the roll-up patch nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    fleet.tick();
    fleet.tick();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), patches.recv())
            .await
            .is_err(),
        "status re-patched although the roll-up did not change"
    );
    assert_eq!(
        fleet.upserts().len(),
        1,
        "an unchanged generation is pushed once"
    );

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), controllers)
        .await
        .expect("controllers did not stop")
        .unwrap();
    drop(api);
}
