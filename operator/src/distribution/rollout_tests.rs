//! Staged rollouts across five nodes: canaries first, a halt on a canary's NACK, completion
//! after the canaries' ACKs and the pause, and what the other nodes keep meanwhile.

use std::time::Duration;

use vigil_api::policy::RolloutPlan;

use super::tests::{desired, dist, hello, ir, names, report};
use super::*;
use crate::fleet::{RolloutStage, RolloutView};

const NODES: [&str; 5] = ["n1", "n2", "n3", "n4", "n5"];

fn staged(tag: &str, canary_percent: u8, pause: Duration) -> DesiredPolicy {
    DesiredPolicy {
        rollout: Some(RolloutPlan {
            canary_percent,
            pause,
        }),
        ..desired("p", tag, None)
    }
}

fn fleet(d: &Distribution) -> Vec<Connection> {
    NODES
        .iter()
        .map(|n| d.connect(hello(n, "a")).unwrap())
        .collect()
}

/// The version of policy `p` each node is sent (`None`: not sent), by node.
fn sent(conns: &[Connection]) -> Vec<(String, Option<String>)> {
    conns
        .iter()
        .map(|c| {
            let set = c.sets.borrow();
            let v = names(&set)
                .iter()
                .position(|n| n == "p")
                .map(|i| set.policies[i].version.clone());
            (c.node.clone(), v)
        })
        .collect()
}

/// The rollout of policy `p`.
fn view(d: &Distribution) -> RolloutView {
    d.rollup(&PolicyKey::new("p", ""))
        .unwrap()
        .rollout
        .expect("a staged rollout")
}

fn stage(d: &Distribution) -> RolloutStage {
    view(d).stage
}

fn canaries(d: &Distribution) -> Vec<String> {
    view(d).canaries
}

fn answer(d: &Distribution, conns: &[Connection], node: &str, tag: &str, s: pb::PolicyState) {
    let c = conns.iter().find(|c| c.node == node).unwrap();
    let v = policy_version(&ir("p", tag));
    d.report(
        node,
        c.id,
        &report("p", &v, s, "kprobe sys_nope: no such function"),
    );
}

fn metrics_text(d: &Distribution) -> String {
    crate::metrics::render(&d.metrics.registry())
}

#[test]
fn a_canary_that_refuses_halts_the_rollout_and_no_other_node_gets_the_policy() {
    let d = dist();
    let conns = fleet(&d);
    d.upsert(staged("v1", 20, Duration::ZERO));
    let v1 = policy_version(&ir("p", "v1"));
    // 20 % of 5 nodes: one canary, the only node sent the policy.
    let c = canaries(&d);
    assert_eq!(c.len(), 1);
    for (node, v) in sent(&conns) {
        assert_eq!(v.is_some(), c.contains(&node), "{node}");
    }
    assert_eq!(stage(&d), RolloutStage::Canary);

    answer(&d, &conns, &c[0], "v1", pb::PolicyState::Failed);
    let r = d.rollup(&PolicyKey::new("p", "")).unwrap();
    let view = r.rollout.clone().unwrap();
    assert_eq!(view.stage, RolloutStage::Halted);
    assert_eq!(
        view.failed,
        vec![(c[0].clone(), "kprobe sys_nope: no such function".into())]
    );
    let msg = view.message();
    assert!(
        msg.contains(&format!("canary {} failed: kprobe sys_nope", c[0])),
        "{msg}"
    );
    // The NACK is also a node failure of the roll-up (Degraded in the resource's status).
    assert_eq!(r.failed.len(), 1);
    // Time passing and more ticks change nothing: a halted rollout stays halted.
    d.advance_rollouts();
    assert_eq!(stage(&d), RolloutStage::Halted);
    let others: Vec<_> = sent(&conns)
        .into_iter()
        .filter(|(n, _)| *n != c[0])
        .collect();
    assert_eq!(others.len(), 4);
    assert!(others.iter().all(|(_, v)| v.is_none()), "{others:?}");
    assert_eq!(
        sent(&conns)
            .iter()
            .filter(|(_, v)| v.as_ref() == Some(&v1))
            .count(),
        1
    );
    let m = metrics_text(&d);
    assert!(m.contains("vigil_operator_rollouts_halted_total 1"), "{m}");
    assert!(
        m.contains("vigil_operator_policy_rollout_stage{policy=\"p\",stage=\"halted\"} 1"),
        "{m}"
    );

    // A fixed version starts over with the same canary; all ACK, no pause: everywhere.
    d.upsert(staged("v2", 20, Duration::ZERO));
    assert_eq!(stage(&d), RolloutStage::Canary);
    assert_eq!(canaries(&d), c);
    answer(&d, &conns, &c[0], "v2", pb::PolicyState::Ready);
    assert_eq!(stage(&d), RolloutStage::Complete);
    let v2 = policy_version(&ir("p", "v2"));
    assert!(sent(&conns).iter().all(|(_, v)| v.as_ref() == Some(&v2)));
    assert!(metrics_text(&d).contains("vigil_operator_rollouts_completed_total 1"));
}

#[test]
fn an_update_reaches_the_canaries_first_and_the_rest_only_after_the_pause() {
    let d = dist();
    let mut conns = fleet(&d);
    // v1 has no plan: every node at once.
    d.upsert(desired("p", "v1", None));
    let v1 = policy_version(&ir("p", "v1"));
    let v2 = policy_version(&ir("p", "v2"));
    assert!(sent(&conns).iter().all(|(_, v)| v.as_ref() == Some(&v1)));

    d.upsert(staged("v2", 40, Duration::from_secs(3600)));
    let c = canaries(&d);
    assert_eq!(c.len(), 2, "40 % of 5 nodes, rounded up");
    // Canaries run v2; the others keep v1.
    for (node, v) in sent(&conns) {
        let want = if c.contains(&node) { &v2 } else { &v1 };
        assert_eq!(v.as_ref(), Some(want), "{node}");
    }
    // One canary ACKed: still waiting for the other.
    answer(&d, &conns, &c[0], "v2", pb::PolicyState::Ready);
    assert_eq!(stage(&d), RolloutStage::Canary);
    answer(&d, &conns, &c[1], "v2", pb::PolicyState::Ready);
    assert_eq!(stage(&d), RolloutStage::Pause);
    let m = view(&d).message();
    assert!(m.contains("pause of 3600s"), "{m}");
    // The pause has not elapsed: ticks leave the others on v1.
    d.advance_rollouts();
    assert_eq!(stage(&d), RolloutStage::Pause);
    // A node that connects during the rollout is no canary: it gets v1.
    conns.push(d.connect(hello("n6", "a")).unwrap());
    assert_eq!(sent(&conns)[5].1.as_ref(), Some(&v1));
    assert_eq!(
        sent(&conns)
            .iter()
            .filter(|(_, v)| v.as_ref() == Some(&v1))
            .count(),
        4
    );

    // The pause elapses (moved back in time rather than waited for).
    {
        let mut state = d.lock();
        let r = state
            .policies
            .get_mut(&PolicyKey::new("p", ""))
            .unwrap()
            .rollout
            .as_mut()
            .unwrap();
        r.acked_at = Instant::now().checked_sub(Duration::from_secs(3601));
        assert!(r.acked_at.is_some());
    }
    d.advance_rollouts();
    assert_eq!(stage(&d), RolloutStage::Complete);
    assert!(sent(&conns).iter().all(|(_, v)| v.as_ref() == Some(&v2)));
}

#[test]
fn a_partial_canary_halts_and_removing_the_annotation_sends_the_version_everywhere() {
    let d = dist();
    let conns = fleet(&d);
    d.upsert(desired("p", "v1", None));
    d.upsert(staged("v2", 60, Duration::ZERO));
    let c = canaries(&d);
    assert_eq!(c.len(), 3);
    answer(&d, &conns, &c[0], "v2", pb::PolicyState::Ready);
    answer(&d, &conns, &c[1], "v2", pb::PolicyState::Partial);
    assert_eq!(stage(&d), RolloutStage::Halted);
    let v1 = policy_version(&ir("p", "v1"));
    let v2 = policy_version(&ir("p", "v2"));
    // A halted update: the others keep v1.
    for (node, v) in sent(&conns) {
        let want = if c.contains(&node) { &v2 } else { &v1 };
        assert_eq!(v.as_ref(), Some(want), "{node}");
    }
    // The operator overrides the canaries' verdict by dropping the plan (same version).
    d.upsert(desired("p", "v2", None));
    assert!(
        d.rollup(&PolicyKey::new("p", ""))
            .unwrap()
            .rollout
            .is_none()
    );
    assert!(sent(&conns).iter().all(|(_, v)| v.as_ref() == Some(&v2)));
}

#[test]
fn canaries_are_picked_when_the_first_targeted_node_connects() {
    let d = dist();
    d.upsert(staged("v1", 10, Duration::ZERO));
    assert!(canaries(&d).is_empty());
    let m = view(&d).message();
    assert!(m.contains("no targeted node is connected"), "{m}");
    let first = d.connect(hello("n1", "a")).unwrap();
    assert_eq!(canaries(&d), ["n1"]);
    assert_eq!(names(&first.sets.borrow()), ["p"]);
    let later = d.connect(hello("n2", "a")).unwrap();
    assert!(names(&later.sets.borrow()).is_empty());
    // The canary goes away before answering: the rollout waits for it.
    d.disconnect("n1", first.id);
    d.advance_rollouts();
    assert_eq!(stage(&d), RolloutStage::Canary);
    assert!(names(&later.sets.borrow()).is_empty());
    let back = d.connect(hello("n1", "a")).unwrap();
    d.report(
        "n1",
        back.id,
        &report(
            "p",
            &policy_version(&ir("p", "v1")),
            pb::PolicyState::Ready,
            "",
        ),
    );
    assert_eq!(stage(&d), RolloutStage::Complete);
    assert_eq!(names(&later.sets.borrow()), ["p"]);
}

fn kept(c: &Connection) -> Vec<String> {
    c.sets
        .borrow()
        .keep
        .iter()
        .map(|r| r.name.clone())
        .collect()
}

#[test]
fn after_an_operator_restart_the_nodes_outside_the_canaries_keep_what_they_run() {
    // A new operator (no memory of v1) is given v2 with a plan: it cannot send the others v1,
    // so it tells them to keep what they run instead of removing it.
    let d = dist();
    let conns = fleet(&d);
    d.upsert(staged("v2", 20, Duration::ZERO));
    let c = canaries(&d);
    for conn in &conns {
        let canary = c.contains(&conn.node);
        assert_eq!(
            names(&conn.sets.borrow()).is_empty(),
            !canary,
            "{}",
            conn.node
        );
        let want: &[&str] = if canary { &[] } else { &["p"] };
        assert_eq!(kept(conn), want, "{}", conn.node);
    }
    answer(&d, &conns, &c[0], "v2", pb::PolicyState::Ready);
    assert_eq!(stage(&d), RolloutStage::Complete);
    for conn in &conns {
        assert!(kept(conn).is_empty(), "{}", conn.node);
        assert_eq!(names(&conn.sets.borrow()), ["p"]);
    }
    // A removed policy is neither sent nor kept: every node removes it.
    d.remove(&PolicyKey::new("p", ""));
    for conn in &conns {
        assert!(kept(conn).is_empty() && names(&conn.sets.borrow()).is_empty());
    }
}

#[test]
fn a_canary_that_demotes_the_policy_for_its_cpu_budget_halts_the_rollout() {
    let d = dist();
    let conns = fleet(&d);
    d.upsert(staged("v1", 20, Duration::from_secs(3600)));
    let canary = canaries(&d).remove(0);
    answer(&d, &conns, &canary, "v1", pb::PolicyState::Ready);
    assert_eq!(stage(&d), RolloutStage::Pause);
    let key = PolicyKey::new("p", "");
    assert!(d.rollup(&key).unwrap().demoted.is_empty());

    // The sensor reports again, unasked: still loaded, but demoted.
    let c = conns.iter().find(|c| c.node == canary).unwrap();
    let v = policy_version(&ir("p", "v1"));
    let mut r = report("p", &v, pb::PolicyState::Ready, "");
    r.demotion =
        "over its CPU budget: 5.000% of one CPU over 60s, budget 2%; switched to monitor".into();
    d.report(&canary, c.id, &r);

    let view = view(&d);
    assert_eq!(view.stage, RolloutStage::Halted);
    assert_eq!(view.failed.len(), 1);
    assert!(
        view.failed[0]
            .1
            .starts_with("demoted by its CPU budget: over its CPU budget")
    );
    assert!(
        view.message()
            .contains(&format!("canary {canary} failed: demoted"))
    );
    let rollup = d.rollup(&key).unwrap();
    assert_eq!(rollup.demoted, vec![(canary.clone(), r.demotion.clone())]);
    // The other four never get it.
    for (node, version) in sent(&conns) {
        assert_eq!(version.is_some(), node == canary, "{node}");
    }
    let status = d.status();
    let p = &status.policies[0];
    assert_eq!(p.demoted, 1);
    let n = p.nodes.iter().find(|n| n.node == canary).unwrap();
    assert_eq!(n.demotion, r.demotion);

    // A report without a demotion (a user switched it back) clears it.
    r.demotion.clear();
    d.report(&canary, c.id, &r);
    assert!(d.rollup(&key).unwrap().demoted.is_empty());
    assert_eq!(stage(&d), RolloutStage::Halted, "halted stays final");
}
