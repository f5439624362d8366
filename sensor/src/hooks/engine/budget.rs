//! CPU budgets (annotation `vigil.dev/cpu-budget`, `PolicyIr.cpu_budget`): once a second the
//! engine takes each budgeted policy's kernel counters, and a policy whose hooks cost more than
//! its budget on average over a whole window is demoted — an enforcing policy in enforce mode
//! to monitor, any other policy to disabled. A demotion is never silent: it is returned to the
//! caller (which emits a `vigil_policy_demoted` event and counts it), shown as the policy's
//! reason in `vigil policy list`, and reported to the operator. It lasts until someone switches
//! the policy back (`vigil policy enable` / `vigil policy mode enforce`) or a new version of it
//! is loaded.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use vigil_api::policy::budget_percent;
use vigil_api::policy::ir::{ActionKind, CpuBudget, PolicyIr};

use super::{Engine, Inner, relock};
use crate::policy::control::{PolicyKey, PolicyMode, PolicyStats};

/// What a demotion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemotionAction {
    /// Enforcing actions no longer run; events still flow.
    Monitor,
    /// The policy's hooks do nothing.
    Disabled,
}

impl DemotionAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DemotionAction::Monitor => "monitor",
            DemotionAction::Disabled => "disabled",
        }
    }
}

/// A policy switched down for exceeding its budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Demotion {
    pub key: PolicyKey,
    pub action: DemotionAction,
    /// Measured mean cost over the window, in percent of one CPU.
    pub cpu_percent: f64,
    pub budget_percent: f64,
    pub window_seconds: u64,
    /// One line for `policy list`, the operator and the event.
    pub reason: String,
}

/// The budget of one policy and the counter readings of its current window.
#[derive(Debug, Clone)]
pub(super) struct Meter {
    budget: CpuBudget,
    /// Whether the policy has an enforcing action (Sigkill, Signal, Override,
    /// NotifyEnforcer): such a policy in enforce mode is demoted to monitor first.
    enforcing: bool,
    /// (time, evaluations, cost samples, cost ns), oldest first, spanning at most a window.
    readings: VecDeque<(Instant, u64, u64, u64)>,
}

/// Enforcing actions a demotion to monitor stops.
fn is_enforcing(kind: ActionKind) -> bool {
    matches!(
        kind,
        ActionKind::Sigkill
            | ActionKind::Signal
            | ActionKind::Override
            | ActionKind::NotifyEnforcer
    )
}

impl Meter {
    /// The meter of a policy with a budget; `None` without one.
    pub(super) fn of(ir: &PolicyIr) -> Option<Meter> {
        let budget = ir.cpu_budget?;
        let enforcing = ir.hooks.iter().flat_map(|h| &h.selectors).any(|s| {
            s.actions
                .iter()
                .chain(&s.return_actions)
                .any(|a| is_enforcing(a.kind()))
        });
        Some(Meter {
            budget,
            enforcing,
            readings: VecDeque::new(),
        })
    }

    fn window(&self) -> Duration {
        Duration::from_secs(u64::from(self.budget.window_seconds))
    }

    /// Starts a new window (after a switch, by a demotion or by a user).
    pub(super) fn restart(&mut self) {
        self.readings.clear();
    }

    /// Adds a reading; returns the mean cost over the last window in percent of one CPU once
    /// the readings span a whole window, `None` before.
    fn observe(&mut self, now: Instant, s: &PolicyStats) -> Option<f64> {
        self.readings
            .push_back((now, s.evaluations, s.cost_samples, s.cost_ns));
        let window = self.window();
        // Keep the newest reading at least a window old as the window's start.
        while self
            .readings
            .get(1)
            .is_some_and(|r| now.duration_since(r.0) >= window)
        {
            self.readings.pop_front();
        }
        let (t0, e0, s0, n0) = *self.readings.front()?;
        let span = now.duration_since(t0);
        if span < window {
            return None;
        }
        let evaluations = s.evaluations.saturating_sub(e0);
        let (samples, ns) = (
            s.cost_samples.saturating_sub(s0),
            s.cost_ns.saturating_sub(n0),
        );
        // The mean of the window's own samples; the lifetime mean when it has none.
        let mean_ns = if samples > 0 {
            ns as f64 / samples as f64
        } else {
            s.ns_per_evaluation().unwrap_or(0.0)
        };
        Some(evaluations as f64 * mean_ns / span.as_nanos() as f64 * 100.0)
    }
}

impl Inner {
    /// One budget check of every budgeted, running policy; applies and returns the demotions.
    fn check_budgets(&mut self, now: Instant) -> Vec<Demotion> {
        let mut due = Vec::new();
        for (key, p) in &mut self.policies {
            let running = p.enabled && !p.hooks.is_empty();
            let Some(meter) = p.meter.as_mut() else {
                continue;
            };
            if !running {
                meter.restart();
                continue;
            }
            let s = super::control::stats_from(&self.bpf.policy_stats(p.slot));
            let Some(cpu_percent) = meter.observe(now, &s) else {
                continue;
            };
            let budget = budget_percent(&meter.budget);
            if cpu_percent <= budget {
                continue;
            }
            let action = if meter.enforcing && p.mode == PolicyMode::Enforce {
                DemotionAction::Monitor
            } else {
                DemotionAction::Disabled
            };
            let window_seconds = u64::from(meter.budget.window_seconds);
            let reason = format!(
                "over its CPU budget: {cpu_percent:.3}% of one CPU over {window_seconds}s, \
                 budget {budget}%; switched to {}",
                action.as_str()
            );
            meter.restart();
            due.push(Demotion {
                key: key.clone(),
                action,
                cpu_percent,
                budget_percent: budget,
                window_seconds,
                reason,
            });
        }
        let mut done = Vec::with_capacity(due.len());
        for d in due {
            let Some(p) = self.policies.get_mut(&d.key) else {
                continue;
            };
            let before = (p.mode, p.enabled);
            match d.action {
                DemotionAction::Monitor => p.mode = PolicyMode::Monitor,
                DemotionAction::Disabled => p.enabled = false,
            }
            if let Err(e) = self.set_cfg(&d.key) {
                // The kernel kept the old switch: so does the engine, and the next window
                // tries again.
                tracing::error!(policy = %d.key, "cannot demote the policy: {e}");
                if let Some(p) = self.policies.get_mut(&d.key) {
                    (p.mode, p.enabled) = before;
                }
                continue;
            }
            if let Some(p) = self.policies.get_mut(&d.key) {
                p.demotion = Some(d.reason.clone());
            }
            tracing::warn!(policy = %d.key, action = d.action.as_str(), "policy demoted: {}", d.reason);
            done.push(d);
        }
        if !done.is_empty() {
            self.persist();
        }
        done
    }
}

impl Engine {
    /// Checks every budgeted policy (call once a second); returns the policies it demoted.
    pub fn check_budgets(&self, now: Instant) -> Vec<Demotion> {
        let done = relock(&self.inner).check_budgets(now);
        if !done.is_empty() {
            self.demotions.send_modify(|n| *n += done.len() as u64);
        }
        done
    }

    /// Changes whenever a policy is demoted: the operator client reports again on it.
    pub fn demotion_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.demotions.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(millipercent: u32, window_seconds: u32) -> Meter {
        Meter {
            budget: CpuBudget {
                millipercent,
                window_seconds,
            },
            enforcing: true,
            readings: VecDeque::new(),
        }
    }

    fn stats(evaluations: u64, cost_samples: u64, cost_ns: u64) -> PolicyStats {
        PolicyStats {
            evaluations,
            cost_samples,
            cost_ns,
            ..Default::default()
        }
    }

    #[test]
    fn the_mean_cost_is_known_only_once_a_whole_window_is_covered() {
        let t = Instant::now();
        let s = |secs| t + Duration::from_secs(secs);
        let mut m = meter(1000, 3);
        assert_eq!(m.observe(s(0), &stats(0, 0, 0)), None);
        assert_eq!(m.observe(s(1), &stats(1_000, 10, 10_000)), None);
        assert_eq!(m.observe(s(2), &stats(2_000, 20, 20_000)), None);
        // 3 s: 3 000 evaluations of 1 000 ns = 3 ms in 3 s = 0.1% of one CPU.
        let p = m.observe(s(3), &stats(3_000, 30, 30_000)).unwrap();
        assert!((p - 0.1).abs() < 1e-9, "{p}");
        // The window slides: the next 3 s cost 30 000 evaluations of 2 000 ns.
        m.observe(s(4), &stats(13_000, 40, 50_000));
        m.observe(s(5), &stats(23_000, 50, 70_000));
        let p = m.observe(s(6), &stats(33_000, 60, 90_000)).unwrap();
        assert!((p - 2.0).abs() < 1e-9, "{p}");
        m.restart();
        assert_eq!(m.observe(s(7), &stats(43_000, 70, 110_000)), None);
    }

    #[test]
    fn a_window_without_samples_uses_the_lifetime_mean() {
        let t = Instant::now();
        let mut m = meter(1000, 2);
        m.observe(t, &stats(0, 4, 4_000));
        // 2 000 evaluations, no new sample: lifetime mean 1 000 ns → 2 ms in 2 s = 0.1%.
        let p = m
            .observe(t + Duration::from_secs(2), &stats(2_000, 4, 4_000))
            .unwrap();
        assert!((p - 0.1).abs() < 1e-9, "{p}");
    }
}
