//! Per-policy metrics: what each policy's hooks matched, posted, lost and enforced (mirrored
//! from the kernel's per-policy counters once a second), its state, and its hooks' states.
//! Series of a deleted policy are removed.

use std::collections::HashMap;

use prometheus_client::encoding::EncodeLabelSet;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::policy::control::{PolicyInfo, PolicyStats};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabel {
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyActionLabel {
    pub policy: String,
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyStateLabel {
    pub policy: String,
    pub state: String,
}

#[derive(Debug, Default)]
pub struct PolicyMetrics {
    pub matches: Family<PolicyLabel, Counter>,
    pub actions: Family<PolicyActionLabel, Counter>,
    pub lost: Family<PolicyLabel, Counter>,
    pub rate_limited: Family<PolicyLabel, Counter>,
    pub state: Family<PolicyStateLabel, Gauge>,
    pub hooks: Family<PolicyStateLabel, Gauge>,
    pub policy_dir_errors: Counter,
    pub evaluations: Family<PolicyLabel, Counter>,
    pub cpu_seconds: Family<PolicyLabel, Counter<f64, AtomicU64>>,
    pub budget_demotions: Family<PolicyActionLabel, Counter>,
    pub demoted: Family<PolicyLabel, Gauge>,
    last: std::sync::Mutex<HashMap<String, (PolicyStats, String)>>,
}

const STATES: [&str; 4] = ["enabled", "disabled", "partial", "error"];

impl PolicyMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "policy_matches",
            "Hook runs where a selector of the policy matched",
            self.matches.clone(),
        );
        r.register(
            "policy_actions",
            "Actions run by the policy (post, sigkill, signal, override; monitored = enforcement not executed in monitor mode)",
            self.actions.clone(),
        );
        r.register(
            "policy_events_lost",
            "Events of the policy lost because the ring buffer was full",
            self.lost.clone(),
        );
        r.register(
            "policy_events_rate_limited",
            "Events of the policy suppressed by rateLimit",
            self.rate_limited.clone(),
        );
        r.register(
            "policy_state",
            "1 for the policy's current state",
            self.state.clone(),
        );
        r.register(
            "policy_hooks",
            "Hooks of the policy by state (loaded, failed)",
            self.hooks.clone(),
        );
        r.register(
            "policy_evaluations",
            "Hook runs of the enabled policy (entry and return), in or out of its scope",
            self.evaluations.clone(),
        );
        r.register(
            "policy_cpu_seconds",
            "Estimated CPU time in the policy's hooks: evaluations times the mean cost of a timed sample (1 in 64)",
            self.cpu_seconds.clone(),
        );
        r.register(
            "policy_budget_demotions",
            "Times the policy's CPU budget (vigil.dev/cpu-budget) demoted it, by what it did (monitor, disabled)",
            self.budget_demotions.clone(),
        );
        r.register(
            "policy_demoted",
            "1 while the policy runs demoted by its CPU budget",
            self.demoted.clone(),
        );
        r.register(
            "policy_dir_errors",
            "Policy files in --policy-dir that could not be loaded",
            self.policy_dir_errors.clone(),
        );
    }

    /// Counts a demotion by the policy's CPU budget.
    pub fn count_demotion(&self, key: &crate::policy::control::PolicyKey, action: &str) {
        self.budget_demotions
            .get_or_create(&PolicyActionLabel {
                policy: key.to_string(),
                action: action.into(),
            })
            .inc();
    }

    /// Brings the series in line with `policies` (current counters from the kernel).
    pub fn update(&self, policies: &[PolicyInfo]) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen = HashMap::new();
        for p in policies {
            let name = if p.namespace.is_empty() {
                p.name.clone()
            } else {
                format!("{}/{}", p.namespace, p.name)
            };
            let prev = last.get(&name).map(|(s, _)| *s).unwrap_or_default();
            let s = p.stats;
            let label = PolicyLabel {
                policy: name.clone(),
            };
            let d = |now: u64, before: u64| now.saturating_sub(before);
            self.matches
                .get_or_create(&label)
                .inc_by(d(s.matched, prev.matched));
            self.lost.get_or_create(&label).inc_by(d(s.lost, prev.lost));
            let new_evals = d(s.evaluations, prev.evaluations);
            self.evaluations.get_or_create(&label).inc_by(new_evals);
            // The new evaluations at the current mean cost: the counter only grows.
            self.cpu_seconds.get_or_create(&label).inc_by(
                s.ns_per_evaluation()
                    .map_or(0.0, |ns| ns * new_evals as f64 / 1e9),
            );
            self.rate_limited
                .get_or_create(&label)
                .inc_by(d(s.rate_limited, prev.rate_limited));
            for (action, now, before) in [
                ("post", s.posted, prev.posted),
                ("sigkill", s.sigkill, prev.sigkill),
                ("signal", s.signal, prev.signal),
                ("override", s.override_, prev.override_),
                ("monitored", s.monitored, prev.monitored),
            ] {
                self.actions
                    .get_or_create(&PolicyActionLabel {
                        policy: name.clone(),
                        action: action.into(),
                    })
                    .inc_by(d(now, before));
            }
            for st in STATES {
                self.state
                    .get_or_create(&PolicyStateLabel {
                        policy: name.clone(),
                        state: st.into(),
                    })
                    .set((p.state.as_str() == st) as i64);
            }
            let loaded = p.hooks.iter().filter(|h| h.loaded()).count();
            for (st, n) in [("loaded", loaded), ("failed", p.hooks.len() - loaded)] {
                self.hooks
                    .get_or_create(&PolicyStateLabel {
                        policy: name.clone(),
                        state: st.into(),
                    })
                    .set(n as i64);
            }
            self.demoted
                .get_or_create(&label)
                .set(p.demotion.is_some() as i64);
            seen.insert(name, (s, String::new()));
        }
        for gone in last.keys().filter(|k| !seen.contains_key(*k)) {
            self.remove(gone);
        }
        *last = seen;
    }

    fn remove(&self, name: &str) {
        let label = PolicyLabel {
            policy: name.into(),
        };
        self.matches.remove(&label);
        self.lost.remove(&label);
        self.rate_limited.remove(&label);
        self.evaluations.remove(&label);
        self.cpu_seconds.remove(&label);
        self.demoted.remove(&label);
        for action in ["monitor", "disabled"] {
            self.budget_demotions.remove(&PolicyActionLabel {
                policy: name.into(),
                action: action.into(),
            });
        }
        for action in ["post", "sigkill", "signal", "override", "monitored"] {
            self.actions.remove(&PolicyActionLabel {
                policy: name.into(),
                action: action.into(),
            });
        }
        for st in STATES.iter().chain(&["loaded", "failed"]) {
            let l = PolicyStateLabel {
                policy: name.into(),
                state: (*st).into(),
            };
            self.state.remove(&l);
            self.hooks.remove(&l);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::control::{HookStatus, PolicyMode, PolicyOrigin, PolicyState};

    fn info(name: &str, matched: u64) -> PolicyInfo {
        PolicyInfo {
            id: 1,
            name: name.into(),
            namespace: String::new(),
            origin: PolicyOrigin::Api,
            state: PolicyState::Partial,
            mode: PolicyMode::Enforce,
            error: String::new(),
            hooks: vec![
                HookStatus {
                    source: "spec.kprobes[0]".into(),
                    target: "a".into(),
                    mechanism: "kprobe".into(),
                    error: None,
                },
                HookStatus {
                    source: "spec.kprobes[1]".into(),
                    target: "b".into(),
                    mechanism: String::new(),
                    error: Some("no".into()),
                },
            ],
            stats: PolicyStats {
                matched,
                ..Default::default()
            },
            kernel_memory_bytes: 0,
            demotion: None,
        }
    }

    fn text(m: &PolicyMetrics) -> String {
        let mut r = Registry::with_prefix("vigil");
        m.register(&mut r);
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &r).unwrap();
        s
    }

    #[test]
    fn counters_follow_kernel_totals_and_series_go_with_the_policy() {
        let m = PolicyMetrics::default();
        m.update(&[info("p", 5)]);
        m.update(&[info("p", 7)]);
        let t = text(&m);
        assert!(
            t.contains("vigil_policy_matches_total{policy=\"p\"} 7"),
            "{t}"
        );
        assert!(
            t.contains("vigil_policy_state{policy=\"p\",state=\"partial\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("vigil_policy_hooks{policy=\"p\",state=\"failed\"} 1"),
            "{t}"
        );
        m.update(&[]);
        assert!(!text(&m).contains("policy=\"p\""));
    }

    #[test]
    fn cpu_seconds_are_evaluations_at_the_sampled_mean_cost() {
        let m = PolicyMetrics::default();
        let costly = |evaluations, cost_samples, cost_ns| PolicyInfo {
            stats: PolicyStats {
                evaluations,
                cost_samples,
                cost_ns,
                ..Default::default()
            },
            ..info("p", 0)
        };
        // No timed sample yet: evaluations count, no CPU estimate.
        m.update(&[costly(10, 0, 0)]);
        let t = text(&m);
        assert!(
            t.contains("vigil_policy_evaluations_total{policy=\"p\"} 10"),
            "{t}"
        );
        assert!(
            t.contains("vigil_policy_cpu_seconds_total{policy=\"p\"} 0.0"),
            "{t}"
        );
        // 2e6 more evaluations at 500 ns each: one more second.
        m.update(&[costly(2_000_010, 2, 1_000)]);
        let t = text(&m);
        assert!(
            t.contains("vigil_policy_evaluations_total{policy=\"p\"} 2000010"),
            "{t}"
        );
        assert!(
            t.contains("vigil_policy_cpu_seconds_total{policy=\"p\"} 1.0"),
            "{t}"
        );
        let s = costly(2_000_010, 2, 1_000).stats;
        assert_eq!(s.ns_per_evaluation(), Some(500.0));
        assert!((s.cpu_seconds() - 1.000005).abs() < 1e-9);
        m.update(&[]);
        assert!(!text(&m).contains("vigil_policy_cpu_seconds_total{policy=\"p\"}"));
    }
}
