//! Staged rollouts (`vigil.dev/rollout`): which version of a policy each node is sent while a
//! new version goes to its canaries first, and when the rollout moves on.
//!
//! The canaries are picked once per version, among the connected nodes the version targets,
//! by a hash of policy and node name (so a restarted operator picks the same ones); a node
//! that connects later is not a canary. Until the rollout completes, every other node keeps
//! the version that last completed (`previous`), or nothing for a new policy. A canary that
//! answers Failed or Partial, or demotes the version for exceeding its CPU budget
//! (`vigil.dev/cpu-budget`), halts the rollout for good: only a new version (or removing the
//! annotation) moves it again. The pause runs from the moment the last canary answered Ready.

use std::collections::BTreeSet;

use vigil_api::policy::RolloutPlan;

use super::*;
use crate::fleet::{RolloutStage, RolloutView};

/// The version nodes outside a rollout's current stage keep.
#[derive(Clone)]
pub(super) struct Previous {
    pub version: String,
    pub desired: DesiredPolicy,
}

pub(super) struct Rollout {
    pub plan: RolloutPlan,
    pub stage: RolloutStage,
    pub canaries: BTreeSet<String>,
    /// When every canary had answered Ready (the pause runs from here).
    pub acked_at: Option<Instant>,
    /// The canaries that failed, with their reasons (halted only).
    pub failed: Vec<(String, String)>,
}

impl Rollout {
    pub fn new(plan: RolloutPlan) -> Self {
        Rollout {
            plan,
            stage: RolloutStage::Canary,
            canaries: BTreeSet::new(),
            acked_at: None,
            failed: Vec::new(),
        }
    }

    pub fn view(&self) -> RolloutView {
        RolloutView {
            plan: self.plan,
            stage: self.stage,
            canaries: self.canaries.iter().cloned().collect(),
            failed: self.failed.clone(),
        }
    }
}

impl Entry {
    /// Whether every targeted node is sent this version (no rollout, or a complete one).
    pub(super) fn everywhere(&self) -> bool {
        self.rollout
            .as_ref()
            .is_none_or(|r| r.stage == RolloutStage::Complete)
    }

    /// What nodes outside the canaries keep when this entry is replaced by a staged version:
    /// this version if it reached everyone, else what it was replacing.
    pub(super) fn stable(&self) -> Option<Previous> {
        if self.everywhere() {
            Some(Previous {
                version: self.version.clone(),
                desired: self.desired.clone(),
            })
        } else {
            self.previous.clone()
        }
    }

    /// The same version was upserted again: the annotation may have changed.
    pub(super) fn replan(&mut self, plan: Option<RolloutPlan>) {
        match (plan, self.rollout.as_mut()) {
            // The annotation went away: the version goes everywhere now.
            (None, Some(_)) => {
                tracing::info!(policy = %self.desired.key, "rollout annotation removed; sending the policy to every node");
                self.rollout = None;
                self.previous = None;
            }
            (Some(plan), Some(r)) => r.plan = plan,
            // Already everywhere: a plan applies to the next version.
            (_, None) => {}
        }
    }
}

/// What a node's set says about one policy.
pub(super) enum Sent<'a> {
    /// Run this version.
    Version(&'a str, &'a DesiredPolicy),
    /// Keep whatever version runs there (a rollout has not reached the node, and the version
    /// the node had is not known here: the operator restarted since).
    Keep,
}

impl State {
    /// What node `name` is sent about `entry` (`None`: nothing, the node does not run it).
    pub(super) fn version_for<'a>(
        &self,
        entry: &'a Entry,
        name: &str,
        node: &Node,
    ) -> Option<Sent<'a>> {
        let staged = entry.everywhere()
            || entry
                .rollout
                .as_ref()
                .is_some_and(|r| r.canaries.contains(name));
        let targeted = self.targets(entry, node);
        if staged {
            return targeted.then_some(Sent::Version(&entry.version, &entry.desired));
        }
        match &entry.previous {
            Some(p) => selects(p.desired.node_selector.as_ref(), &node.labels)
                .then_some(Sent::Version(&p.version, &p.desired)),
            // A new policy (then there is nothing to keep) or one whose previous version this
            // operator never saw.
            None => targeted.then_some(Sent::Keep),
        }
    }

    /// Moves every rollout on as far as its canaries' answers and its pause allow; pushes the
    /// nodes' sets when any rollout changed, and says so.
    pub(super) fn advance_rollouts(&mut self, metrics: &OperatorMetrics) -> bool {
        let keys: Vec<PolicyKey> = self
            .policies
            .iter()
            .filter(|(_, e)| !e.everywhere())
            .map(|(k, _)| k.clone())
            .collect();
        let mut changed = false;
        for key in keys {
            let (step, picked) = self.rollout_step(&key);
            let Some(entry) = self.policies.get_mut(&key) else {
                continue;
            };
            let Some(r) = entry.rollout.as_mut() else {
                continue;
            };
            if let Some(picked) = picked {
                tracing::info!(policy = %key, version = %entry.version, canaries = ?picked, plan = %r.plan, "rollout: canaries picked");
                r.canaries = picked;
                changed = true;
            }
            let Some(step) = step else {
                continue;
            };
            changed = true;
            match step {
                Step::Halt(failed) => {
                    tracing::warn!(policy = %key, version = %entry.version, failed = ?failed, "rollout halted: a canary did not load the policy");
                    r.stage = RolloutStage::Halted;
                    r.failed = failed;
                    metrics.rollouts_halted.inc();
                }
                Step::Acked => {
                    tracing::info!(policy = %key, version = %entry.version, pause_s = r.plan.pause.as_secs(), "rollout: every canary loaded the policy; pausing");
                    r.stage = RolloutStage::Pause;
                    r.acked_at = Some(Instant::now());
                }
                Step::Waiting => {
                    r.stage = RolloutStage::Canary;
                    r.acked_at = None;
                }
                Step::Complete => {
                    tracing::info!(policy = %key, version = %entry.version, "rollout complete: sending the policy to every targeted node");
                    r.stage = RolloutStage::Complete;
                    entry.previous = None;
                    metrics.rollouts_completed.inc();
                }
            }
        }
        if changed {
            // New canaries and completed rollouts change what nodes are sent (a push sends
            // only sets whose content changed).
            self.push_all(metrics);
        }
        changed
    }

    /// What the rollout of `key` should do next, and the canaries to pick if it has none.
    fn rollout_step(&self, key: &PolicyKey) -> (Option<Step>, Option<BTreeSet<String>>) {
        let Some(entry) = self.policies.get(key) else {
            return (None, None);
        };
        let Some(r) = entry.rollout.as_ref() else {
            return (None, None);
        };
        let picked = r
            .canaries
            .is_empty()
            .then(|| self.pick_canaries(key, entry, &r.plan))
            .filter(|p| !p.is_empty());
        let canaries = picked.as_ref().unwrap_or(&r.canaries);
        let step = match r.stage {
            RolloutStage::Halted | RolloutStage::Complete => None,
            RolloutStage::Canary | RolloutStage::Pause => self.canary_step(entry, r, canaries),
        };
        (step, picked)
    }

    fn canary_step(&self, entry: &Entry, r: &Rollout, canaries: &BTreeSet<String>) -> Option<Step> {
        let mut failed = Vec::new();
        let mut connected = 0;
        let mut ready = 0;
        for name in canaries {
            let Some(node) = self.nodes.get(name) else {
                continue;
            };
            connected += 1;
            match node.results.get(&entry.desired.key) {
                Some((v, NodeResult::Ready)) if *v == entry.version => ready += 1,
                Some((v, NodeResult::Failed(why) | NodeResult::Partial(why)))
                    if *v == entry.version =>
                {
                    failed.push((name.clone(), why.clone()));
                }
                _ => {}
            }
            // A canary that had to demote the new version for its CPU budget stops the rollout
            // like one that could not load it.
            if let Some((v, why)) = node.demotions.get(&entry.desired.key)
                && *v == entry.version
            {
                failed.push((name.clone(), format!("demoted by its CPU budget: {why}")));
            }
        }
        if !failed.is_empty() {
            return Some(Step::Halt(failed));
        }
        let all_ready = connected > 0 && ready == connected;
        match (r.stage, all_ready) {
            (RolloutStage::Canary, true) if r.plan.pause.is_zero() => Some(Step::Complete),
            (RolloutStage::Canary, true) => Some(Step::Acked),
            (RolloutStage::Pause, true)
                if r.acked_at.is_some_and(|t| t.elapsed() >= r.plan.pause) =>
            {
                Some(Step::Complete)
            }
            // A canary went away or reconnected without its answer: wait for it again.
            (RolloutStage::Pause, false) => Some(Step::Waiting),
            _ => None,
        }
    }

    /// The canaries of `entry`: the first `canary_count` of the connected nodes it targets,
    /// ordered by a hash of policy and node name.
    fn pick_canaries(
        &self,
        key: &PolicyKey,
        entry: &Entry,
        plan: &RolloutPlan,
    ) -> BTreeSet<String> {
        let mut targeted: Vec<(u64, &String)> = self
            .nodes
            .iter()
            .filter(|(_, n)| self.targets(entry, n))
            .map(|(name, _)| (fnv1a(format!("{key}\n{name}").as_bytes()), name))
            .collect();
        targeted.sort();
        let n = plan.canary_count(targeted.len());
        targeted
            .into_iter()
            .take(n)
            .map(|(_, name)| name.clone())
            .collect()
    }
}

enum Step {
    Halt(Vec<(String, String)>),
    Acked,
    Waiting,
    Complete,
}
