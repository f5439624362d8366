//! Loss accounting: what each stage of the event path lost, held until it is reported in-band
//! as loss markers (`rate_limit_info` envelopes with Vigil's attribution, see
//! `vigil_api::events::Loss`), and the per-stage counters whose equations the tests check.
//!
//! Every stage that can drop ends in `in = out + lost (+ inside)`:
//!
//! | Stage | in | out | lost |
//! |---|---|---|---|
//! | `kernel` | records the programs tried to write | records read by the sensor | ring buffer full |
//! | `decode` | records read | records turned into events or cache updates | malformed, hook unloaded, not encodable |
//! | `pod_wait` | events | events sent on (with or without their pod) | nothing |
//! | `export`, `stdout` | events offered to the exporters | lines written | queue full, write failed, file deleted |
//! | `client` | events matching a GetEvents client | events sent to it | its queue full |
//!
//! `inside` (a gauge) is what a stage holds: events waiting for their pod, queued for the
//! writer or a client, buffered in front of the file.

use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use vigil_api::events::{
    EventKind, GetEventsResponse, Loss, LossKind, LossReason, LossStage, format_time_ns,
};

/// Wall-clock nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// What one marker is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LossKey {
    pub stage: LossStage,
    pub reason: LossReason,
    pub kind: LossKind,
    /// `namespace/name` of the policy of lost hook events, when known.
    pub policy: Option<Arc<str>>,
}

impl LossKey {
    pub fn new(stage: LossStage, reason: LossReason, kind: LossKind) -> Self {
        LossKey {
            stage,
            reason,
            kind,
            policy: None,
        }
    }

    pub fn with_policy(mut self, policy: Option<Arc<str>>) -> Self {
        self.policy = policy;
        self
    }
}

/// Lost events of one key and the wall-clock window they were lost in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub count: u64,
    pub from_ns: u64,
    pub to_ns: u64,
}

/// Losses not reported yet, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LossBatch {
    entries: BTreeMap<LossKey, Span>,
}

impl LossBatch {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Events in the batch, all keys.
    pub fn total(&self) -> u64 {
        self.entries.values().map(|s| s.count).sum()
    }

    /// Events in the batch lost at `stage`.
    pub fn total_of(&self, stage: LossStage) -> u64 {
        self.entries
            .iter()
            .filter(|(k, _)| k.stage == stage)
            .map(|(_, s)| s.count)
            .sum()
    }

    pub fn entries(&self) -> impl Iterator<Item = (&LossKey, &Span)> {
        self.entries.iter()
    }

    /// `n` events of `key` lost between `from_ns` and `to_ns`.
    pub fn add(&mut self, key: LossKey, n: u64, from_ns: u64, to_ns: u64) {
        if n == 0 {
            return;
        }
        let (from_ns, to_ns) = (from_ns.min(to_ns), from_ns.max(to_ns));
        self.entries
            .entry(key)
            .and_modify(|s| {
                s.count = s.count.saturating_add(n);
                s.from_ns = s.from_ns.min(from_ns);
                s.to_ns = s.to_ns.max(to_ns);
            })
            .or_insert(Span {
                count: n,
                from_ns,
                to_ns,
            });
    }

    /// `n` events of `key` lost just now.
    pub fn add_now(&mut self, key: LossKey, n: u64) {
        let t = now_ns();
        self.add(key, n, t, t);
    }

    pub fn merge(&mut self, other: LossBatch) {
        for (k, s) in other.entries {
            self.add(k, s.count, s.from_ns, s.to_ns);
        }
    }

    pub fn take(&mut self) -> LossBatch {
        std::mem::take(self)
    }

    /// One marker per key, as events stamped `time_ns`.
    pub fn markers(&self, node_name: &str, time_ns: u64) -> Vec<GetEventsResponse> {
        let time = format_time_ns(time_ns);
        self.entries
            .iter()
            .map(|(k, s)| {
                Loss {
                    count: s.count,
                    stage: Some(k.stage),
                    reason: Some(k.reason),
                    kind: Some(k.kind),
                    policy: k.policy.as_deref().unwrap_or("").to_string(),
                    from: format_time_ns(s.from_ns),
                    to: format_time_ns(s.to_ns),
                }
                .to_event(node_name, &time)
            })
            .collect()
    }

    /// The batch a marker event reports (`None` for other events or a marker without Vigil's
    /// attribution).
    pub fn from_marker(ev: &GetEventsResponse) -> Option<LossBatch> {
        let loss = Loss::from_event(ev).ok()??;
        let key = LossKey {
            stage: loss.stage?,
            reason: loss.reason?,
            kind: loss.kind?,
            policy: (!loss.policy.is_empty()).then(|| Arc::from(loss.policy.as_str())),
        };
        let t = |s: &str| vigil_api::events::parse_time_ns(s).unwrap_or_else(now_ns);
        let mut b = LossBatch::default();
        b.add(key, loss.count, t(&loss.from), t(&loss.to));
        Some(b)
    }
}

/// The loss kind of an event (what a stage after decoding lost). A policy demotion is neither
/// a process nor a hook event: a `record`.
pub fn kind_of(kind: Option<EventKind>) -> LossKind {
    match kind {
        Some(EventKind::ProcessExec) => LossKind::Exec,
        Some(EventKind::ProcessExit) => LossKind::Exit,
        Some(
            EventKind::ProcessKprobe
            | EventKind::ProcessTracepoint
            | EventKind::ProcessUprobe
            | EventKind::ProcessLsm,
        ) => LossKind::Hook,
        Some(EventKind::RateLimitInfo | EventKind::PolicyDemoted) | None => LossKind::Record,
    }
}

/// A stage of the event path, as the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Kernel,
    Decode,
    PodWait,
    Export,
    Stdout,
    Client,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Kernel,
        Stage::Decode,
        Stage::PodWait,
        Stage::Export,
        Stage::Stdout,
        Stage::Client,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Kernel => "kernel",
            Stage::Decode => "decode",
            Stage::PodWait => "pod_wait",
            Stage::Export => "export",
            Stage::Stdout => "stdout",
            Stage::Client => "client",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageResultLabel {
    pub stage: String,
    pub result: String,
}

/// The counters of one stage.
#[derive(Debug, Clone, Default)]
pub struct StageCounters {
    pub input: Counter,
    pub out: Counter,
    pub lost: Counter,
    /// Events a client left behind in its queue when its stream ended (stage `client`).
    pub abandoned: Counter,
    pub inside: Gauge,
}

/// Per-stage counters (`vigil_stage_events_total{stage,result}`,
/// `vigil_stage_events_inside{stage}`).
#[derive(Debug, Default)]
pub struct Stages {
    events: Family<StageResultLabel, Counter>,
    inside: Family<StageLabel, Gauge>,
}

impl Stages {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "stage_events",
            "Events (records, for the kernel and decode stages) by stage of the event path and \
             result: in = out + lost + inside (+ abandoned: events a GetEvents client left \
             queued when it went)",
            self.events.clone(),
        );
        r.register(
            "stage_events_inside",
            "Events a stage holds now (waiting for their pod, queued, buffered)",
            self.inside.clone(),
        );
    }

    /// The counters of `stage` (cheap clones sharing the registered series).
    pub fn of(&self, stage: Stage) -> StageCounters {
        let get = |result: &str| {
            self.events
                .get_or_create(&StageResultLabel {
                    stage: stage.as_str().into(),
                    result: result.into(),
                })
                .clone()
        };
        StageCounters {
            input: get("in"),
            out: get("out"),
            lost: get("lost"),
            abandoned: get("abandoned"),
            inside: self
                .inside
                .get_or_create(&StageLabel {
                    stage: stage.as_str().into(),
                })
                .clone(),
        }
    }
}

/// Turns the kernel's cumulative ring-buffer loss counters into batches, attributing hook losses
/// to policies.
///
/// The global hook counter and a policy's own counter are bumped one after the other by the
/// program, so a poll can see one without the other. Per-policy counters are taken as they are;
/// what the global counter says beyond them (losses of policies deleted before their counters
/// were read) is reported unattributed one poll later, once every policy counter of that
/// moment has settled. Every lost record is reported exactly once.
#[derive(Debug, Default)]
pub struct KernelLoss {
    last: [u64; 3],
    policies: BTreeMap<String, u64>,
    /// Hook losses reported so far (attributed and not).
    hook_reported: u64,
    /// The global hook counter at the previous poll.
    hook_prev_global: u64,
    last_poll_ns: u64,
}

/// One poll of the kernel's cumulative counters.
#[derive(Debug, Clone, Default)]
pub struct KernelCounts {
    pub exec: u64,
    pub fork: u64,
    pub exit: u64,
    pub hook: u64,
    /// Cumulative lost records of each loaded policy (`namespace/name`); `None` when they were
    /// not read (no hook loss lately: nothing to attribute).
    pub policies: Option<Vec<(String, u64)>>,
}

impl KernelLoss {
    pub fn new(now_ns: u64) -> Self {
        KernelLoss {
            last_poll_ns: now_ns,
            ..Default::default()
        }
    }

    /// The losses since the previous poll, in the window (previous poll, now).
    pub fn poll(&mut self, c: &KernelCounts, now: u64) -> LossBatch {
        let from = self.last_poll_ns;
        self.last_poll_ns = now;
        let mut out = LossBatch::default();
        let key = |kind| LossKey::new(LossStage::Kernel, LossReason::RingBufferFull, kind);
        for (i, (kind, v)) in [
            (LossKind::Exec, c.exec),
            (LossKind::Fork, c.fork),
            (LossKind::Exit, c.exit),
        ]
        .into_iter()
        .enumerate()
        {
            out.add(key(kind), v.saturating_sub(self.last[i]), from, now);
            self.last[i] = self.last[i].max(v);
        }
        let Some(policies) = &c.policies else {
            return out;
        };
        let mut seen = BTreeMap::new();
        for (name, v) in policies {
            // A counter below what was seen belongs to a new policy of the same name.
            let before = self.policies.get(name).copied().unwrap_or(0);
            let delta = if *v < before { *v } else { v - before };
            if delta > 0 {
                out.add(
                    key(LossKind::Hook).with_policy(Some(Arc::from(name.as_str()))),
                    delta,
                    from,
                    now,
                );
                self.hook_reported += delta;
            }
            seen.insert(name.clone(), *v);
        }
        self.policies = seen;
        // Losses counted globally at the previous poll that no policy counter explains by now.
        let unexplained = self.hook_prev_global.saturating_sub(self.hook_reported);
        if unexplained > 0 {
            out.add(key(LossKind::Hook), unexplained, from, now);
            self.hook_reported += unexplained;
        }
        self.hook_prev_global = self.hook_prev_global.max(c.hook);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(b: &LossBatch, kind: LossKind, policy: Option<&str>) -> u64 {
        b.entries()
            .filter(|(k, _)| k.kind == kind && k.policy.as_deref() == policy)
            .map(|(_, s)| s.count)
            .sum()
    }

    #[test]
    fn every_event_kind_has_a_loss_kind() {
        let kinds: Vec<LossKind> = EventKind::ALL
            .into_iter()
            .map(|k| kind_of(Some(k)))
            .collect();
        assert_eq!(
            kinds,
            [
                LossKind::Exec,
                LossKind::Exit,
                LossKind::Hook,
                LossKind::Hook,
                LossKind::Hook,
                LossKind::Hook,
                LossKind::Record,
                LossKind::Record,
            ]
        );
        assert_eq!(kind_of(None), LossKind::Record);
    }

    #[test]
    fn batches_merge_by_key_and_widen_windows() {
        let k = LossKey::new(LossStage::Export, LossReason::QueueFull, LossKind::Exec);
        let mut a = LossBatch::default();
        a.add(k.clone(), 2, 100, 200);
        let mut b = LossBatch::default();
        b.add(k.clone(), 3, 50, 150);
        b.add(
            LossKey::new(LossStage::Export, LossReason::QueueFull, LossKind::Hook)
                .with_policy(Some("p".into())),
            1,
            300,
            300,
        );
        a.merge(b);
        assert_eq!(a.total(), 6);
        let markers = a.markers("n", 400);
        assert_eq!(markers.len(), 2);
        let back: Vec<LossBatch> = markers
            .iter()
            .map(|m| LossBatch::from_marker(m).unwrap())
            .collect();
        let mut merged = LossBatch::default();
        for b in back {
            merged.merge(b);
        }
        assert_eq!(merged, a, "a marker carries everything its batch entry had");
        let first = Loss::from_event(&markers[0]).unwrap().unwrap();
        assert_eq!(first.count, 5);
        assert_eq!(first.from, format_time_ns(50));
        assert_eq!(first.to, format_time_ns(200));
    }

    #[test]
    fn kernel_losses_are_reported_once_and_attributed() {
        let mut k = KernelLoss::new(0);
        let b = k.poll(
            &KernelCounts {
                exec: 3,
                hook: 10,
                policies: Some(vec![("a".into(), 6), ("b".into(), 3)]),
                ..Default::default()
            },
            10,
        );
        assert_eq!(count(&b, LossKind::Exec, None), 3);
        assert_eq!(count(&b, LossKind::Hook, Some("a")), 6);
        assert_eq!(count(&b, LossKind::Hook, Some("b")), 3);
        assert_eq!(
            count(&b, LossKind::Hook, None),
            0,
            "not yet: b may catch up"
        );
        // b's own counter caught up; policy a was deleted with one loss never seen.
        let b2 = k.poll(
            &KernelCounts {
                exec: 3,
                hook: 12,
                policies: Some(vec![("b".into(), 4), ("c".into(), 1)]),
                ..Default::default()
            },
            20,
        );
        assert_eq!(count(&b2, LossKind::Hook, Some("b")), 1);
        assert_eq!(count(&b2, LossKind::Hook, Some("c")), 1);
        assert_eq!(
            count(&b2, LossKind::Hook, None),
            0,
            "10 seen, 11 attributed"
        );
        assert_eq!(count(&b2, LossKind::Exec, None), 0);
        let b3 = k.poll(
            &KernelCounts {
                exec: 3,
                hook: 12,
                policies: Some(vec![("b".into(), 4), ("c".into(), 1)]),
                ..Default::default()
            },
            30,
        );
        assert_eq!(
            count(&b3, LossKind::Hook, None),
            1,
            "a's last loss, unattributed"
        );
        let b4 = k.poll(
            &KernelCounts {
                exec: 3,
                hook: 12,
                policies: Some(vec![("b".into(), 4), ("c".into(), 1)]),
                ..Default::default()
            },
            40,
        );
        assert!(b4.is_empty());
        let total: u64 = [&b, &b2, &b3]
            .iter()
            .map(|b| b.total_of(LossStage::Kernel))
            .sum();
        assert_eq!(total, 3 + 12);
        // The window is the time between polls.
        let (_, span) = b3.entries().next().unwrap();
        assert_eq!((span.from_ns, span.to_ns), (20, 30));
    }

    #[test]
    fn a_policy_counter_that_restarts_is_a_new_policy() {
        let mut k = KernelLoss::new(0);
        let mk = |v| KernelCounts {
            hook: 100,
            policies: Some(vec![("p".into(), v)]),
            ..Default::default()
        };
        assert_eq!(k.poll(&mk(50), 1).total(), 50);
        let b = k.poll(&mk(5), 2);
        assert_eq!(count(&b, LossKind::Hook, Some("p")), 5);
        assert_eq!(
            count(&b, LossKind::Hook, None),
            45,
            "100 seen globally, 55 attributed"
        );
    }
}
