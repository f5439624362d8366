use super::*;
use vigil_api::policy::ir::{LabelOperator, LabelRequirement, LabelSelector, PolicyIdentity};

pub(super) fn ir(name: &str, tag: &str) -> PolicyIr {
    PolicyIr {
        ir_version: 1,
        identity: Some(PolicyIdentity {
            name: name.into(),
            source_api_version: tag.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn desired(name: &str, tag: &str, zone: Option<&str>) -> DesiredPolicy {
    DesiredPolicy {
        rollout: None,
        key: PolicyKey::new(name, ""),
        generation: 1,
        ir: ir(name, tag),
        node_selector: zone.map(|z| LabelSelector {
            requirements: vec![LabelRequirement {
                key: "zone".into(),
                operator: LabelOperator::In as i32,
                values: vec![z.into()],
            }],
        }),
    }
}

pub(super) fn hello(node: &str, zone: &str) -> pb::Hello {
    pb::Hello {
        node_name: node.into(),
        labels: [("zone".to_string(), zone.to_string())].into(),
        ..Default::default()
    }
}

pub(super) fn report(
    name: &str,
    version: &str,
    state: pb::PolicyState,
    reason: &str,
) -> pb::Report {
    pb::Report {
        name: name.into(),
        version: version.into(),
        state: state as i32,
        reason: reason.into(),
        ..Default::default()
    }
}

pub(super) fn names(set: &pb::PolicySet) -> Vec<String> {
    set.policies
        .iter()
        .map(|p| {
            p.ir.as_ref()
                .unwrap()
                .identity
                .as_ref()
                .unwrap()
                .name
                .clone()
        })
        .collect()
}

pub(super) fn dist() -> Distribution {
    Distribution::new(Arc::new(OperatorMetrics::default()))
}

#[test]
fn rollup_math() {
    let r = rollup_of(
        7,
        &[
            ("n3", NodeResult::Failed("nope".into())),
            ("n1", NodeResult::Ready),
            ("n2", NodeResult::Partial("hook".into())),
            ("n4", NodeResult::Pending),
            ("n5", NodeResult::Ready),
        ],
    );
    assert_eq!(
        r,
        Rollup {
            budgeted: false,
            demoted: Vec::new(),
            rollout: None,
            generation: 7,
            targeted: 5,
            ready: 2,
            failed: vec![("n2".into(), "hook".into()), ("n3".into(), "nope".into())],
            pending: 1,
        }
    );
    assert_eq!(
        rollup_of(1, &[]),
        Rollup {
            budgeted: false,
            demoted: Vec::new(),
            generation: 1,
            ..Default::default()
        }
    );
}

#[test]
fn sets_follow_selectors_and_answers_roll_up() {
    let d = dist();
    let mut changes = d.changes();
    let a = d.connect(hello("n1", "a")).unwrap();
    let b = d.connect(hello("n2", "b")).unwrap();
    assert!(a.sets.borrow().policies.is_empty());
    d.upsert(desired("everywhere", "v1", None));
    d.upsert(desired("only-a", "v1", Some("a")));
    assert!(changes.has_changed().unwrap());
    changes.mark_unchanged();
    assert_eq!(names(&a.sets.borrow()), ["everywhere", "only-a"]);
    assert_eq!(names(&b.sets.borrow()), ["everywhere"]);
    let key = PolicyKey::new("everywhere", "");
    let r = d.rollup(&key).unwrap();
    assert_eq!((r.targeted, r.ready, r.pending), (2, 0, 2));
    let v = policy_version(&ir("everywhere", "v1"));
    d.report(
        "n1",
        a.id,
        &report("everywhere", &v, pb::PolicyState::Ready, ""),
    );
    d.report(
        "n2",
        b.id,
        &report("everywhere", &v, pb::PolicyState::Partial, "kprobe missing"),
    );
    assert!(changes.has_changed().unwrap());
    let r = d.rollup(&key).unwrap();
    assert_eq!((r.targeted, r.ready, r.pending), (2, 1, 0));
    assert_eq!(r.failed, vec![("n2".into(), "kprobe missing".into())]);
    let text = crate::metrics::render(&d.metrics.registry());
    assert!(
        text.contains("vigil_operator_push_latency_seconds_count 1"),
        "{text}"
    );
    assert!(
        text.contains("vigil_operator_policy_nodes{policy=\"everywhere\",state=\"partial\"} 1"),
        "{text}"
    );
    // A stale answer (other version) or from an old stream changes nothing.
    d.report(
        "n1",
        a.id,
        &report("everywhere", "old", pb::PolicyState::Failed, "x"),
    );
    d.report(
        "n1",
        a.id + 100,
        &report("everywhere", &v, pb::PolicyState::Failed, "x"),
    );
    assert_eq!(d.rollup(&key).unwrap().ready, 1);
    // A new version is pending everywhere again.
    d.upsert(desired("everywhere", "v2", None));
    let r = d.rollup(&key).unwrap();
    assert_eq!((r.ready, r.pending), (0, 2));
    assert!(r.failed.is_empty());
    // Remove: gone from both sets.
    d.remove(&key);
    assert!(d.rollup(&key).is_none());
    assert_eq!(names(&a.sets.borrow()), ["only-a"]);
    assert!(b.sets.borrow().policies.is_empty());
}

#[test]
fn unchanged_content_is_not_pushed_again() {
    let d = dist();
    let mut a = d.connect(hello("n1", "a")).unwrap();
    a.sets.mark_unchanged();
    d.upsert(desired("p", "v1", None));
    assert!(a.sets.has_changed().unwrap());
    a.sets.mark_unchanged();
    let seq = a.sets.borrow().sequence;
    // Same IR, new generation: nothing to send.
    let mut again = desired("p", "v1", None);
    again.generation = 2;
    d.upsert(again);
    assert!(!a.sets.has_changed().unwrap());
    assert_eq!(d.rollup(&PolicyKey::new("p", "")).unwrap().generation, 2);
    // A policy for another zone: n1's set does not change.
    d.upsert(desired("q", "v1", Some("b")));
    assert!(!a.sets.has_changed().unwrap());
    assert_eq!(a.sets.borrow().sequence, seq);
}

#[test]
fn relabelled_node_gains_and_loses_policies_and_old_stream_ends() {
    let d = dist();
    d.upsert(desired("only-a", "v1", Some("a")));
    d.upsert(desired("only-b", "v1", Some("b")));
    let first = d.connect(hello("n1", "a")).unwrap();
    assert_eq!(names(&first.sets.borrow()), ["only-a"]);
    let second = d.connect(hello("n1", "b")).unwrap();
    assert_eq!(names(&second.sets.borrow()), ["only-b"]);
    // The first stream's sender is gone: its stream ends.
    assert!(first.sets.has_changed().is_err());
    // The old stream's end does not remove the new one.
    d.disconnect("n1", first.id);
    assert_eq!(d.nodes(), ["n1"]);
    assert_eq!(d.rollup(&PolicyKey::new("only-b", "")).unwrap().targeted, 1);
    assert_eq!(d.rollup(&PolicyKey::new("only-a", "")).unwrap().targeted, 0);
    d.disconnect("n1", second.id);
    assert!(d.nodes().is_empty());
    assert_eq!(d.rollup(&PolicyKey::new("only-b", "")).unwrap().targeted, 0);
}

#[test]
fn status_lists_policies_by_node() {
    let d = dist();
    let a = d.connect(hello("n1", "a")).unwrap();
    let _b = d.connect(hello("n2", "a")).unwrap();
    d.upsert(desired("p", "v1", None));
    let v = policy_version(&ir("p", "v1"));
    d.report(
        "n1",
        a.id,
        &report("p", &v, pb::PolicyState::Failed, "Override not possible"),
    );
    let s = d.status();
    assert_eq!(s.nodes.len(), 2);
    let p = &s.policies[0];
    assert_eq!((p.targeted, p.ready, p.failed, p.pending), (2, 0, 1, 1));
    assert_eq!(p.nodes[0].node, "n1");
    assert_eq!(p.nodes[0].state(), pb::PolicyState::Failed);
    assert_eq!(p.nodes[0].reason, "Override not possible");
    assert_eq!(p.nodes[1].state(), pb::PolicyState::Pending);
}

#[test]
fn hello_without_node_name_is_refused() {
    assert!(dist().connect(pb::Hello::default()).is_err());
}

fn pod(uid: &str, node: &str, app: &str) -> NodePod {
    NodePod {
        node: node.into(),
        pod: PodInfo {
            namespace: "default".into(),
            name: format!("pod-{uid}"),
            uid: uid.into(),
            labels: [("app".to_string(), app.to_string())].into(),
            ..Default::default()
        },
    }
}

fn pod_uids(c: &Connection) -> Option<Vec<String>> {
    c.pods
        .borrow()
        .as_ref()
        .map(|s| s.pods.iter().map(|p| p.uid.clone()).collect())
}

#[test]
fn pods_reach_only_their_node_and_only_once_the_list_is_complete() {
    let d = dist();
    let mut a = d.connect(hello("n1", "a")).unwrap();
    let mut b = d.connect(hello("n2", "a")).unwrap();
    // Before the first complete list: nothing, even for single upserts.
    d.upsert_pod(pod("u0", "n1", "web"));
    assert_eq!(pod_uids(&a), None, "no pods before the first list");
    d.replace_pods(vec![
        pod("u1", "n1", "web"),
        pod("u2", "n2", "db"),
        pod("u3", "n1", "db"),
    ]);
    assert_eq!(
        pod_uids(&a).unwrap(),
        ["u1", "u3"],
        "u0 was not in the list"
    );
    assert_eq!(pod_uids(&b).unwrap(), ["u2"]);
    a.pods.mark_unchanged();
    b.pods.mark_unchanged();
    // Relabel on n1: only n1 gets a new set, with the new labels.
    d.upsert_pod(pod("u1", "n1", "web2"));
    assert!(a.pods.has_changed().unwrap());
    assert!(!b.pods.has_changed().unwrap());
    assert_eq!(
        a.pods.borrow_and_update().as_ref().unwrap().pods[0].labels["app"],
        "web2"
    );
    // The same content again: nothing sent.
    d.upsert_pod(pod("u1", "n1", "web2"));
    assert!(!a.pods.has_changed().unwrap());
    // A pod moving to n2 leaves n1.
    d.upsert_pod(pod("u3", "n2", "db"));
    assert_eq!(pod_uids(&a).unwrap(), ["u1"]);
    assert_eq!(pod_uids(&b).unwrap(), ["u2", "u3"]);
    a.pods.mark_unchanged();
    b.pods.mark_unchanged();
    d.delete_pod("u2");
    assert_eq!(pod_uids(&b).unwrap(), ["u3"]);
    assert!(!a.pods.has_changed().unwrap());
    b.pods.mark_unchanged();
    d.delete_pod("never-seen");
    assert!(
        !b.pods.has_changed().unwrap(),
        "an unknown uid changes nothing"
    );
    // A re-list sends only to nodes whose pods differ.
    b.pods.mark_unchanged();
    d.replace_pods(vec![pod("u1", "n1", "web2"), pod("u4", "n2", "x")]);
    assert!(!a.pods.has_changed().unwrap(), "n1 is unchanged");
    assert_eq!(pod_uids(&b).unwrap(), ["u4"]);
    assert_eq!(d.status().nodes[1].pods, 1);
    let text = crate::metrics::render(&d.metrics.registry());
    assert!(text.contains("vigil_operator_pod_pushes_total 7"), "{text}");
    // A node connecting later gets its pods at once, with a fresh sequence.
    let c = d.connect(hello("n3", "a")).unwrap();
    assert_eq!(pod_uids(&c).unwrap(), Vec::<String>::new());
    d.upsert_pod(pod("u5", "n3", "y"));
    assert_eq!(pod_uids(&c).unwrap(), ["u5"]);
    assert_eq!(c.pods.borrow().as_ref().unwrap().sequence, 2);
}

#[test]
fn node_objects_labels_select_policies_over_announced_ones() {
    let d = dist();
    d.upsert(desired("only-a", "v1", Some("a")));
    d.upsert(desired("only-b", "v1", Some("b")));
    // The sensor announced zone=a and nothing is known of its Node yet.
    let n1 = d.connect(hello("n1", "a")).unwrap();
    assert_eq!(names(&n1.sets.borrow()), ["only-a"]);
    // The Node object says zone=b: it wins over the announced label.
    d.replace_node_labels(vec![(
        "n1".into(),
        [("zone".to_string(), "b".to_string())].into(),
    )]);
    assert_eq!(names(&n1.sets.borrow()), ["only-b"]);
    assert_eq!(
        n1.sets.borrow().node_labels["zone"],
        "b",
        "the sensor is told"
    );
    // Labels alone change (same policies): the set goes out again with them.
    let mut n1_sets = n1.sets.clone();
    n1_sets.mark_unchanged();
    d.upsert_node_labels(
        "n1".into(),
        [
            ("zone".to_string(), "b".to_string()),
            ("role".to_string(), "web".to_string()),
        ]
        .into(),
    );
    assert!(n1_sets.has_changed().unwrap());
    assert_eq!(n1.sets.borrow().node_labels["role"], "web");
    assert_eq!(names(&n1.sets.borrow()), ["only-b"]);
    assert_eq!(d.rollup(&PolicyKey::new("only-b", "")).unwrap().targeted, 1);
    assert_eq!(d.rollup(&PolicyKey::new("only-a", "")).unwrap().targeted, 0);
    assert_eq!(d.status().nodes[0].labels["zone"], "b");
    // Relabelled in the cluster: the set follows; a label the Node lacks falls back.
    d.upsert_node_labels("n1".into(), [("other".to_string(), "x".to_string())].into());
    assert_eq!(names(&n1.sets.borrow()), ["only-a"]);
    // A node connecting after its Node was seen is selected by the Node's labels at once.
    d.upsert_node_labels("n2".into(), [("zone".to_string(), "b".to_string())].into());
    let n2 = d.connect(hello("n2", "a")).unwrap();
    assert_eq!(names(&n2.sets.borrow()), ["only-b"]);
    // The Node is deleted: back to what the sensor announced.
    d.delete_node_labels("n2");
    assert_eq!(names(&n2.sets.borrow()), ["only-a"]);
}

#[test]
fn version_is_stable_and_content_sensitive() {
    assert_eq!(policy_version(&ir("a", "x")), policy_version(&ir("a", "x")));
    assert_ne!(policy_version(&ir("a", "x")), policy_version(&ir("a", "y")));
    assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
}
