//! The status a TracingPolicy resource should have: pure functions from the compilation
//! outcome and the fleet's roll-up to [`TracingPolicyStatus`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use vigil_api::policy::{
    PolicyModeName, PolicyNodeCounts, PolicyRolloutStatus, TracingPolicyStatus,
};

use crate::fleet::{RolloutStage, Rollup};

pub const ACCEPTED: &str = "Accepted";
pub const READY: &str = "Ready";
pub const DEGRADED: &str = "Degraded";
/// Only on policies with a staged rollout (`vigil.dev/rollout`).
pub const ROLLED_OUT: &str = "RolledOut";
/// Only on policies with a CPU budget (`vigil.dev/cpu-budget`), or demoted by one.
pub const WITHIN_BUDGET: &str = "WithinBudget";

/// Condition messages are cut to this many bytes (the API allows 32768).
pub const MAX_MESSAGE: usize = 4096;

/// How compiling one generation of a spec went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compiled {
    /// The spec compiled; it is (or will be) distributed.
    Accepted { mode: PolicyModeName, hooks: usize },
    /// The validator rejected it (one error per line); nothing was pushed.
    Rejected {
        message: String,
        /// `spec.options` `policy-mode`, when it is readable.
        mode: Option<PolicyModeName>,
    },
}

impl Compiled {
    pub fn is_accepted(&self) -> bool {
        matches!(self, Compiled::Accepted { .. })
    }
}

/// A policy's overall state, for the `policies` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyState {
    /// Not accepted by the validator.
    Rejected,
    /// Waiting for nodes (or no node targeted).
    Pending,
    /// Every targeted node loaded it.
    Ready,
    /// Some node failed to load it, or loaded it partially.
    Degraded,
}

impl PolicyState {
    pub const ALL: [PolicyState; 4] = [
        PolicyState::Rejected,
        PolicyState::Pending,
        PolicyState::Ready,
        PolicyState::Degraded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PolicyState::Rejected => "rejected",
            PolicyState::Pending => "pending",
            PolicyState::Ready => "ready",
            PolicyState::Degraded => "degraded",
        }
    }
}

/// The state a status describes.
pub fn state_of(status: &TracingPolicyStatus) -> PolicyState {
    let is_true = |t: &str| {
        status
            .conditions
            .iter()
            .any(|c| c.type_ == t && c.status == "True")
    };
    if !is_true(ACCEPTED) {
        PolicyState::Rejected
    } else if is_true(DEGRADED) {
        PolicyState::Degraded
    } else if is_true(READY) {
        PolicyState::Ready
    } else {
        PolicyState::Pending
    }
}

/// The status for `generation`, given how it compiled and the fleet's roll-up of the policy.
/// Conditions whose status did not change keep `previous`'s `lastTransitionTime`, so an
/// unchanged situation gives a status equal to `previous`.
pub fn build(
    generation: i64,
    compiled: &Compiled,
    rollup: Option<&Rollup>,
    previous: Option<&TracingPolicyStatus>,
    now: Timestamp,
) -> TracingPolicyStatus {
    let current = rollup.filter(|r| r.generation == generation);

    let accepted = match compiled {
        Compiled::Accepted { hooks, .. } => (
            true,
            "Compiled",
            format!(
                "generation {generation} compiled: {hooks} hook{}",
                if *hooks == 1 { "" } else { "s" }
            ),
        ),
        Compiled::Rejected { message, .. } => (false, "InvalidSpec", message.clone()),
    };

    let ready = match (compiled, current) {
        (Compiled::Rejected { .. }, _) => {
            let mut m = format!("generation {generation} was not accepted (see Accepted)");
            if let Some(r) = rollup {
                m.push_str(&format!(
                    "; generation {} keeps running: {}/{} nodes ready",
                    r.generation, r.ready, r.targeted
                ));
            }
            (false, "NotAccepted", m)
        }
        (Compiled::Accepted { .. }, None) => (
            false,
            "Pending",
            format!("generation {generation} is being distributed"),
        ),
        (Compiled::Accepted { .. }, Some(r)) if r.targeted == 0 => (
            false,
            "NoTargetedNodes",
            "no connected node is targeted by this policy".to_string(),
        ),
        (Compiled::Accepted { .. }, Some(r)) if !r.failed.is_empty() => (
            false,
            "NodesFailed",
            format!(
                "{}/{} nodes loaded generation {generation}; {} failed, {} pending",
                r.ready,
                r.targeted,
                r.failed.len(),
                r.pending
            ),
        ),
        (Compiled::Accepted { .. }, Some(r)) if r.ready < r.targeted => (
            false,
            "Pending",
            format!(
                "{}/{} nodes loaded generation {generation}; {} pending",
                r.ready, r.targeted, r.pending
            ),
        ),
        (Compiled::Accepted { .. }, Some(r)) => (
            true,
            "AllNodesReady",
            format!(
                "{}/{} nodes loaded generation {generation}",
                r.ready, r.targeted
            ),
        ),
    };

    let degraded = match rollup {
        Some(r) if !r.failed.is_empty() => (
            true,
            "NodeFailures",
            r.failed
                .iter()
                .map(|(node, reason)| format!("{node}: {reason}"))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        _ => (
            false,
            "NoFailures",
            "no node reported a failure".to_string(),
        ),
    };

    let condition = |type_: &str, (ok, reason, message): (bool, &str, String)| {
        let status = if ok { "True" } else { "False" };
        let last_transition_time = previous
            .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: truncate(message, MAX_MESSAGE),
            last_transition_time,
            observed_generation: Some(generation),
        }
    };

    let nodes = rollup.map_or_else(
        || PolicyNodeCounts {
            summary: "0/0".into(),
            ..Default::default()
        },
        |r| PolicyNodeCounts {
            targeted: r.targeted,
            ready: r.ready,
            failed: u32::try_from(r.failed.len()).unwrap_or(u32::MAX),
            pending: r.pending,
            summary: format!("{}/{}", r.ready, r.targeted),
        },
    );

    let mode = match compiled {
        Compiled::Accepted { mode, .. } => Some(*mode),
        Compiled::Rejected { mode, .. } => *mode,
    };

    let staged = rollup.and_then(|r| r.rollout.as_ref());
    let mut conditions = vec![
        condition(ACCEPTED, accepted),
        condition(READY, ready),
        condition(DEGRADED, degraded),
    ];
    let rollout_message = staged.map(|v| truncate(v.message(), MAX_MESSAGE));
    if let (Some(v), Some(message)) = (staged, &rollout_message) {
        let reason = match v.stage {
            RolloutStage::Canary => "Canary",
            RolloutStage::Pause => "Pause",
            RolloutStage::Halted => "CanaryFailed",
            RolloutStage::Complete => "Complete",
        };
        conditions.push(condition(
            ROLLED_OUT,
            (v.stage == RolloutStage::Complete, reason, message.clone()),
        ));
    }

    if let Some(r) = current.filter(|r| r.budgeted || !r.demoted.is_empty()) {
        let within = if r.demoted.is_empty() {
            (
                true,
                "WithinBudget",
                "no node demoted the policy for exceeding its CPU budget".to_string(),
            )
        } else {
            (
                false,
                "BudgetExceeded",
                format!(
                    "{}/{} nodes demoted generation {generation} for exceeding its CPU budget: {}",
                    r.demoted.len(),
                    r.targeted,
                    r.demoted
                        .iter()
                        .map(|(node, why)| format!("{node}: {why}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            )
        };
        conditions.push(condition(WITHIN_BUDGET, within));
    }

    TracingPolicyStatus {
        observed_generation: Some(generation),
        conditions,
        nodes: Some(nodes),
        mode,
        rollout: staged
            .zip(rollout_message)
            .map(|(v, message)| PolicyRolloutStatus {
                stage: v.stage.as_str().to_string(),
                canary_nodes: v.canaries.clone(),
                message,
            }),
    }
}

/// Cut `s` to at most `max` bytes on a character boundary, saying so.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    const MORE: &str = " … (truncated)";
    let mut cut = max.saturating_sub(MORE.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str(MORE);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn cond<'a>(s: &'a TracingPolicyStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    const OK: Compiled = Compiled::Accepted {
        mode: PolicyModeName::Enforce,
        hooks: 1,
    };

    #[test]
    fn one_failed_node_is_degraded_and_not_ready() {
        let r = Rollup {
            budgeted: false,
            demoted: Vec::new(),
            rollout: None,
            generation: 3,
            targeted: 3,
            ready: 2,
            failed: vec![("node-c".into(), "kprobe sys_foo: not found".into())],
            pending: 0,
        };
        let s = build(3, &OK, Some(&r), None, ts("2025-01-01T00:00:00Z"));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(cond(&s, ACCEPTED).status, "True");
        assert_eq!(cond(&s, READY).status, "False");
        assert_eq!(cond(&s, READY).reason, "NodesFailed");
        assert_eq!(cond(&s, DEGRADED).status, "True");
        assert_eq!(
            cond(&s, DEGRADED).message,
            "node-c: kprobe sys_foo: not found"
        );
        let n = s.nodes.as_ref().unwrap();
        assert_eq!((n.targeted, n.ready, n.failed, n.pending), (3, 2, 1, 0));
        assert_eq!(n.summary, "2/3");
        assert_eq!(s.mode, Some(PolicyModeName::Enforce));
        assert_eq!(state_of(&s), PolicyState::Degraded);
        assert!(
            s.conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
    }

    #[test]
    fn a_budgeted_policy_says_whether_a_node_demoted_it() {
        let mut r = Rollup {
            budgeted: true,
            generation: 2,
            targeted: 2,
            ready: 2,
            ..Rollup::default()
        };
        let s = build(2, &OK, Some(&r), None, ts("2025-01-01T00:00:00Z"));
        assert_eq!(cond(&s, WITHIN_BUDGET).status, "True");
        assert_eq!(cond(&s, WITHIN_BUDGET).reason, "WithinBudget");
        r.demoted = vec![(
            "node-a".into(),
            "over its CPU budget: 4.000% of one CPU over 60s, budget 2%; switched to monitor"
                .into(),
        )];
        let later = build(2, &OK, Some(&r), Some(&s), ts("2025-01-01T00:05:00Z"));
        let c = cond(&later, WITHIN_BUDGET);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "BudgetExceeded")
        );
        assert_eq!(
            c.message,
            "1/2 nodes demoted generation 2 for exceeding its CPU budget: node-a: over its CPU \
             budget: 4.000% of one CPU over 60s, budget 2%; switched to monitor"
        );
        assert_eq!(c.last_transition_time, Time(ts("2025-01-01T00:05:00Z")));
        // Still ready everywhere: a demoted policy is loaded.
        assert_eq!(cond(&later, READY).status, "True");
        // A policy without a budget has no such condition.
        let plain = Rollup {
            budgeted: false,
            demoted: Vec::new(),
            ..r
        };
        let s = build(2, &OK, Some(&plain), None, ts("2025-01-01T00:00:00Z"));
        assert!(s.conditions.iter().all(|c| c.type_ != WITHIN_BUDGET));
    }

    #[test]
    fn a_staged_rollout_shows_its_stage_canaries_and_failed_canaries() {
        use crate::fleet::RolloutView;
        use vigil_api::policy::RolloutPlan;
        let view = |stage, failed: Vec<(String, String)>| RolloutView {
            plan: RolloutPlan {
                canary_percent: 20,
                pause: std::time::Duration::from_secs(300),
            },
            stage,
            canaries: vec!["node-b".into()],
            failed,
        };
        let halted = Rollup {
            budgeted: false,
            demoted: Vec::new(),
            rollout: Some(view(
                RolloutStage::Halted,
                vec![("node-b".into(), "Override needs BPF-LSM".into())],
            )),
            generation: 4,
            targeted: 5,
            ready: 0,
            failed: vec![("node-b".into(), "Override needs BPF-LSM".into())],
            pending: 4,
        };
        let s = build(4, &OK, Some(&halted), None, ts("2025-01-01T00:00:00Z"));
        let c = cond(&s, ROLLED_OUT);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "CanaryFailed")
        );
        assert!(
            c.message
                .contains("halted: canary node-b failed: Override needs BPF-LSM"),
            "{}",
            c.message
        );
        let r = s.rollout.as_ref().unwrap();
        assert_eq!(r.stage, "halted");
        assert_eq!(r.canary_nodes, ["node-b"]);
        assert_eq!(state_of(&s), PolicyState::Degraded);

        let pausing = Rollup {
            budgeted: false,

            demoted: Vec::new(),
            rollout: Some(view(RolloutStage::Pause, vec![])),
            failed: vec![],
            ready: 1,
            ..halted.clone()
        };
        let s = build(4, &OK, Some(&pausing), None, ts("2025-01-01T00:00:00Z"));
        assert_eq!(cond(&s, ROLLED_OUT).reason, "Pause");
        assert_eq!(cond(&s, READY).status, "False");
        assert_eq!(s.rollout.unwrap().stage, "pause");

        let done = Rollup {
            budgeted: false,

            demoted: Vec::new(),
            rollout: Some(view(RolloutStage::Complete, vec![])),
            failed: vec![],
            ready: 5,
            pending: 0,
            ..halted
        };
        let s = build(4, &OK, Some(&done), None, ts("2025-01-01T00:00:00Z"));
        assert_eq!(cond(&s, ROLLED_OUT).status, "True");
        assert_eq!(cond(&s, READY).status, "True");
        assert_eq!(s.rollout.unwrap().stage, "complete");

        // Without a plan there is no rollout condition or field.
        let plain = Rollup {
            budgeted: false,
            demoted: Vec::new(),
            rollout: None,
            generation: 4,
            targeted: 5,
            ready: 5,
            failed: vec![],
            pending: 0,
        };
        let s = build(4, &OK, Some(&plain), None, ts("2025-01-01T00:00:00Z"));
        assert!(s.conditions.iter().all(|c| c.type_ != ROLLED_OUT));
        assert!(s.rollout.is_none());
    }

    #[test]
    fn all_ready_and_unchanged_status_keeps_transition_times() {
        let r = Rollup {
            budgeted: false,
            demoted: Vec::new(),
            rollout: None,
            generation: 1,
            targeted: 2,
            ready: 2,
            failed: vec![],
            pending: 0,
        };
        let first = build(1, &OK, Some(&r), None, ts("2025-01-01T00:00:00Z"));
        assert_eq!(cond(&first, READY).status, "True");
        assert_eq!(state_of(&first), PolicyState::Ready);
        let again = build(1, &OK, Some(&r), Some(&first), ts("2025-01-02T00:00:00Z"));
        assert_eq!(first, again);
        // A node fails: Ready and Degraded flip (new time), Accepted keeps its time.
        let r2 = Rollup {
            budgeted: false,
            demoted: Vec::new(),
            ready: 1,
            failed: vec![("n2".into(), "boom".into())],
            ..r
        };
        let third = build(1, &OK, Some(&r2), Some(&again), ts("2025-01-03T00:00:00Z"));
        assert_eq!(
            cond(&third, ACCEPTED).last_transition_time,
            Time(ts("2025-01-01T00:00:00Z"))
        );
        assert_eq!(
            cond(&third, READY).last_transition_time,
            Time(ts("2025-01-03T00:00:00Z"))
        );
    }

    #[test]
    fn pending_stale_and_untargeted() {
        let stale = Rollup {
            budgeted: false,
            demoted: Vec::new(),
            generation: 1,
            targeted: 2,
            ready: 2,
            ..Default::default()
        };
        let s = build(2, &OK, Some(&stale), None, Timestamp::UNIX_EPOCH);
        assert_eq!(cond(&s, READY).reason, "Pending");
        assert_eq!(state_of(&s), PolicyState::Pending);
        let none = Rollup {
            budgeted: false,
            demoted: Vec::new(),
            generation: 2,
            ..Default::default()
        };
        let s = build(2, &OK, Some(&none), None, Timestamp::UNIX_EPOCH);
        assert_eq!(cond(&s, READY).reason, "NoTargetedNodes");
        let waiting = Rollup {
            budgeted: false,
            demoted: Vec::new(),
            rollout: None,
            generation: 2,
            targeted: 3,
            ready: 1,
            pending: 2,
            failed: vec![],
        };
        let s = build(2, &OK, Some(&waiting), None, Timestamp::UNIX_EPOCH);
        assert_eq!(cond(&s, READY).reason, "Pending");
        assert_eq!(
            cond(&s, READY).message,
            "1/3 nodes loaded generation 2; 2 pending"
        );
        assert_eq!(s.nodes.unwrap().summary, "1/3");
    }

    #[test]
    fn rejected_keeps_the_validator_message() {
        let c = Compiled::Rejected {
            message: "spec.kprobes[0].call: invalid value \"\"".into(),
            mode: Some(PolicyModeName::Monitor),
        };
        let s = build(4, &c, None, None, Timestamp::UNIX_EPOCH);
        assert_eq!(cond(&s, ACCEPTED).status, "False");
        assert_eq!(cond(&s, ACCEPTED).reason, "InvalidSpec");
        assert_eq!(
            cond(&s, ACCEPTED).message,
            "spec.kprobes[0].call: invalid value \"\""
        );
        assert_eq!(cond(&s, READY).reason, "NotAccepted");
        assert_eq!(s.mode, Some(PolicyModeName::Monitor));
        assert_eq!(state_of(&s), PolicyState::Rejected);
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let s = truncate("é".repeat(5000), MAX_MESSAGE);
        assert!(s.len() <= MAX_MESSAGE);
        assert!(s.ends_with("(truncated)"));
    }
}
