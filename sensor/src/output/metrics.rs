//! Prometheus metrics (`vigil_` prefix, Tetragon's names where the meaning is the same) and the
//! HTTP endpoint that serves them (`/metrics`, plus `/healthz`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MapLabel {
    pub map: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecordLabel {
    pub record: String,
}

/// Where a loss marker went (`file`, `stdout`, `client`) and the stage it reports.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutputStageLabel {
    pub output: String,
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabel {
    pub hook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabel {
    pub feature: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientLabel {
    /// `<sequence>:<peer>` of a GetEvents stream.
    pub client: String,
}

/// Labels of `policy_events_total`, as Tetragon names them: the policy and the hook
/// (`kprobe:<function>`, `tracepoint:<subsys>/<event>`, `uprobe:<path>:<symbol>`, `lsm:<hook>`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabel {
    pub policy: String,
    pub hook: String,
}

/// A BPF program by its name in the object (`vigil_exec`, `vigil_sc_enter`, `vigil_lsm`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProgramLabel {
    pub program: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabel {
    pub version: String,
}

/// Every metric the sensor keeps. Cloning a metric shares it, so the registry and the code
/// that updates a metric see the same value.
#[derive(Debug, Default)]
pub struct Metrics {
    pub events: Family<TypeLabel, Counter>,
    pub ringbuf_received: Counter,
    pub ringbuf_lost: Family<RecordLabel, Counter>,
    pub export_queue_lost: Counter,
    pub exported: Counter,
    pub export_errors: Counter,
    pub decode_errors: Counter,
    pub process_cache_size: Gauge,
    pub process_cache_capacity: Gauge,
    pub process_cache_evictions: Counter,
    pub process_cache_misses: Counter,
    pub process_table_insert_failures: Counter,
    /// Return probes whose entry state could not be saved (their return is not reported).
    pub hook_return_state_lost: Counter,
    pub map_entries: Family<MapLabel, Gauge>,
    pub map_capacity: Family<MapLabel, Gauge>,
    pub kernel_features: Family<FeatureLabel, Gauge>,
    pub build_info: Family<BuildLabel, Gauge>,
    pub grpc_clients: Gauge,
    pub grpc_client_dropped: Family<ClientLabel, Counter>,
    /// Events that matched an open GetEvents stream's filters.
    pub grpc_client_matched: Family<ClientLabel, Counter>,
    pub grpc_dropped: Counter,
    pub policy_events: Family<PolicyLabel, Counter>,
    pub hook_records_orphaned: Counter,
    pub hook_arg_errors: Counter,
    /// 1 while the policy stream to the operator is open.
    pub operator_connected: Gauge,
    /// Failed connections to the operator, and streams that broke.
    pub operator_connection_failures: Counter,
    /// Policy sets received from the operator.
    pub operator_policy_sets: Counter,
    /// Pod sets received from the operator.
    pub operator_pod_sets: Counter,
    /// Pods in the operator's pod sets that were refused (no uid, namespace or name).
    pub operator_pods_rejected: Counter,
    /// Events that waited for their container's pod.
    pub pod_events_held: Counter,
    /// Held events that went out with their pod.
    pub pod_events_resolved: Counter,
    /// Held events that went out without their pod (flagged `podUnknown`).
    pub pod_events_unresolved: Counter,
    /// Events waiting for their pod now.
    pub pod_events_waiting: Gauge,
    /// Pods in the inventory.
    pub pod_inventory_pods: Gauge,
    /// Containers of inventory pods whose cgroup was found on this node.
    pub pod_inventory_containers: Gauge,
    /// Wall time of the last load of each BPF program (mostly the kernel's verification).
    pub bpf_program_load_seconds: Family<ProgramLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// The verifier's processed-instruction count of each program's last load.
    pub bpf_program_verified_insns: Family<ProgramLabel, Gauge>,
    /// Loads of each program (per-attach-point programs load once per point).
    pub bpf_program_loads: Family<ProgramLabel, Gauge>,
    /// 1 when this sensor took over the previous sensor's programs at start.
    pub handoff_took_over: Gauge,
    /// Attach points taken over that had to be attached again (links the kernel cannot pin).
    pub handoff_reattached_points: Gauge,
    /// `--self-protection`: 1 for the state it is in (`active`, `off`, `unavailable`), else 0.
    pub self_protection: Family<StateLabel, Gauge>,
    /// Operations self-protection refused, by LSM hook.
    pub self_protection_refusals: Family<HookLabel, Counter>,
    /// Older generations of pinned programs retired after this sensor's ran.
    pub handoff_retired_generations: Counter,
    /// Bytes of records left unread in retired generations' ring buffers.
    pub handoff_lost_bytes: Counter,
    /// Pins of the previous generation found added, removed or replaced while no sensor ran.
    pub handoff_pins_changed: Counter,
    /// In, out, lost and reported events of every stage of the event path.
    pub stages: crate::output::loss::Stages,
    /// Lost events announced by loss markers, by output and by the stage that lost them.
    pub loss_reported: Family<OutputStageLabel, Counter>,
    /// Loss markers the sensor emitted (one per stage, reason, kind and policy of a gap).
    pub loss_markers: Counter,
    /// The export file found renamed, deleted or truncated by another program.
    pub export_file_reopened: Family<ReasonLabel, Counter>,
    /// Heals of the process cache after exec/fork/exit records were lost, by the source of the
    /// kernel's view (`iterator`, `procfs`).
    pub process_heals: Family<SourceLabel, Counter>,
    /// Processes a heal found running and the cache did not know (reported `procFS healed`).
    pub process_heal_added: Counter,
    /// Cache entries a heal found gone from the kernel (their exit was lost), expired.
    pub process_heal_expired: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

impl Metrics {
    pub fn new() -> Self {
        let m = Self::default();
        m.build_info
            .get_or_create(&BuildLabel {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        m
    }

    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("vigil");
        r.register("events", "Events exported, by type", self.events.clone());
        r.register(
            "observer_ringbuf_events_received",
            "Records read from the BPF ring buffer",
            self.ringbuf_received.clone(),
        );
        r.register(
            "observer_ringbuf_events_lost",
            "Records the kernel could not write because the ring buffer was full, by record kind",
            self.ringbuf_lost.clone(),
        );
        r.register(
            "observer_ringbuf_queue_events_lost",
            "Events dropped because the export queue was full",
            self.export_queue_lost.clone(),
        );
        r.register(
            "export_events",
            "Events written by the exporters",
            self.exported.clone(),
        );
        r.register(
            "export_errors",
            "Export write failures",
            self.export_errors.clone(),
        );
        r.register(
            "decode_errors",
            "Ring-buffer records that failed to decode",
            self.decode_errors.clone(),
        );
        r.register(
            "process_cache_size",
            "Entries in the process cache",
            self.process_cache_size.clone(),
        );
        r.register(
            "process_cache_capacity",
            "Capacity of the process cache",
            self.process_cache_capacity.clone(),
        );
        r.register(
            "process_cache_evictions",
            "Process cache entries evicted because the cache was full",
            self.process_cache_evictions.clone(),
        );
        r.register(
            "process_cache_misses",
            "Lookups of a process or parent that was not in the cache",
            self.process_cache_misses.clone(),
        );
        r.register(
            "process_table_insert_failures",
            "Kernel process table inserts that failed (table full)",
            self.process_table_insert_failures.clone(),
        );
        r.register(
            "hook_return_state_lost",
            "Calls of return-probe hooks whose entry state could not be kept (their return is not reported)",
            self.hook_return_state_lost.clone(),
        );
        r.register(
            "map_entries",
            "Entries in a BPF map",
            self.map_entries.clone(),
        );
        r.register(
            "map_capacity",
            "Capacity of a BPF map",
            self.map_capacity.clone(),
        );
        r.register(
            "kernel_feature",
            "1 when the kernel offers a BPF feature the sensor probed",
            self.kernel_features.clone(),
        );
        r.register("build_info", "Build information", self.build_info.clone());
        r.register(
            "grpc_clients",
            "Open GetEvents streams",
            self.grpc_clients.clone(),
        );
        r.register(
            "grpc_client_events_dropped",
            "Events dropped for an open GetEvents stream because its queue was full, by client \
             (the series goes when the stream ends)",
            self.grpc_client_dropped.clone(),
        );
        r.register(
            "grpc_client_events_matched",
            "Events that matched an open GetEvents stream's filters, by client: sent + dropped + \
             queued (the series goes when the stream ends)",
            self.grpc_client_matched.clone(),
        );
        r.register(
            "grpc_events_dropped",
            "Events dropped for GetEvents clients because their queues were full, all streams",
            self.grpc_dropped.clone(),
        );
        r.register(
            "policy_events",
            "Events produced by tracing policies, by policy and hook",
            self.policy_events.clone(),
        );
        r.register(
            "hook_records_orphaned",
            "Hook records dropped because their hook slot and generation are no longer loaded",
            self.hook_records_orphaned.clone(),
        );
        r.register(
            "pod_events_held",
            "Events of containers whose pod was not known yet, held for it",
            self.pod_events_held.clone(),
        );
        r.register(
            "pod_events_resolved",
            "Held events emitted with their pod once it arrived",
            self.pod_events_resolved.clone(),
        );
        r.register(
            "pod_events_unresolved",
            "Held events emitted without their pod (flag podUnknown) after the wait bound",
            self.pod_events_unresolved.clone(),
        );
        r.register(
            "pod_events_waiting",
            "Events currently held waiting for their pod",
            self.pod_events_waiting.clone(),
        );
        r.register(
            "pod_inventory_pods",
            "Pods of this node known to the sensor",
            self.pod_inventory_pods.clone(),
        );
        r.register(
            "pod_inventory_containers",
            "Containers of known pods whose cgroup was found on this node",
            self.pod_inventory_containers.clone(),
        );
        r.register(
            "hook_arg_errors",
            "Hook arguments the kernel could not read (reported empty in their event)",
            self.hook_arg_errors.clone(),
        );
        r.register(
            "operator_connected",
            "1 while the policy stream to the operator (--operator-address) is open",
            self.operator_connected.clone(),
        );
        r.register(
            "operator_connection_failures",
            "Connections to the operator that failed or broke",
            self.operator_connection_failures.clone(),
        );
        r.register(
            "operator_policy_sets",
            "Policy sets received from the operator",
            self.operator_policy_sets.clone(),
        );
        r.register(
            "operator_pod_sets",
            "Pod sets (this node's pods) received from the operator",
            self.operator_pod_sets.clone(),
        );
        r.register(
            "bpf_program_load_seconds",
            "Wall time of the last load of each BPF program, mostly the kernel's verification",
            self.bpf_program_load_seconds.clone(),
        );
        r.register(
            "bpf_program_verified_insns",
            "Instructions the kernel's verifier processed for each BPF program's last load",
            self.bpf_program_verified_insns.clone(),
        );
        r.register(
            "bpf_program_loads",
            "Loads of each BPF program since start (per-attach-point programs load once per point)",
            self.bpf_program_loads.clone(),
        );
        self.stages.register(&mut r);
        r.register(
            "loss_reported_events",
            "Lost events announced in-band by loss markers (rate_limit_info), by output (file, \
             stdout, client) and by the stage that lost them",
            self.loss_reported.clone(),
        );
        r.register(
            "loss_markers",
            "Loss markers emitted into the event stream",
            self.loss_markers.clone(),
        );
        r.register(
            "export_file_reopened",
            "Times the export file was found renamed, deleted or truncated by another program",
            self.export_file_reopened.clone(),
        );
        r.register(
            "process_heals",
            "Re-reads of the kernel's running processes after exec/fork/exit records were lost, \
             by source (iterator, procfs)",
            self.process_heals.clone(),
        );
        r.register(
            "process_heal_added",
            "Running processes a heal added to the process cache (events flagged procFS healed)",
            self.process_heal_added.clone(),
        );
        r.register(
            "process_heal_expired",
            "Process cache entries a heal found exited (their exit record was lost)",
            self.process_heal_expired.clone(),
        );
        r.register(
            "self_protection",
            "Self-protection state: 1 for the state the sensor is in (active, off, unavailable)",
            self.self_protection.clone(),
        );
        r.register(
            "self_protection_refusals",
            "Operations on the sensor refused by self-protection, by LSM hook",
            self.self_protection_refusals.clone(),
        );
        r.register(
            "handoff_took_over",
            "1 when this sensor took over the previous sensor's pinned programs at start (nothing reloaded)",
            self.handoff_took_over.clone(),
        );
        r.register(
            "handoff_reattached_points",
            "Attach points taken over whose links the kernel could not pin (perf events before 5.15): attached again at start, their hooks did not run between the two sensors",
            self.handoff_reattached_points.clone(),
        );
        r.register(
            "handoff_retired_generations",
            "Older generations of pinned programs retired once this sensor's enforced",
            self.handoff_retired_generations.clone(),
        );
        r.register(
            "handoff_lost_bytes",
            "Bytes of records left unread in the ring buffers of retired generations",
            self.handoff_lost_bytes.clone(),
        );
        r.register(
            "handoff_pins_changed",
            "Pins of the previous generation found added, removed or replaced while no sensor ran \
             (the generation is then not taken over)",
            self.handoff_pins_changed.clone(),
        );
        r.register(
            "operator_pods_rejected",
            "Pods of the operator's pod sets refused for lacking a uid, namespace or name",
            self.operator_pods_rejected.clone(),
        );
        r
    }

    /// Load time, verifier count and loads of every program loaded so far.
    pub fn set_programs(&self, programs: &[crate::hooks::programs::ProgramStats]) {
        for p in programs {
            let label = ProgramLabel {
                program: p.name.clone(),
            };
            self.bpf_program_load_seconds
                .get_or_create(&label)
                .set(p.last_load.as_secs_f64());
            if let Some(n) = p.verified_insns {
                self.bpf_program_verified_insns
                    .get_or_create(&label)
                    .set(i64::from(n));
            }
            self.bpf_program_loads
                .get_or_create(&label)
                .set(p.loads as i64);
        }
    }

    pub fn count_policy_event(&self, policy: &str, hook: &str) {
        self.policy_event_counter(policy, hook).inc();
    }

    /// The `vigil_policy_events_total` counter of a policy's hook, to keep and count on
    /// without a label lookup per event (the family never drops a series).
    pub fn policy_event_counter(&self, policy: &str, hook: &str) -> Counter {
        self.policy_events
            .get_or_create(&PolicyLabel {
                policy: policy.into(),
                hook: hook.into(),
            })
            .clone()
    }

    pub fn count_event(&self, kind: &str) {
        self.event_counter(kind).inc();
    }

    /// The `vigil_events_total` counter of an event type, to keep (see
    /// [`Metrics::policy_event_counter`]).
    pub fn event_counter(&self, kind: &str) -> Counter {
        self.events
            .get_or_create(&TypeLabel {
                r#type: kind.into(),
            })
            .clone()
    }
}

/// The endpoint (`/metrics`, `/healthz`) is shared with the operator.
pub use vigil_host::metrics_http::{bind, render, serve};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix() {
        let m = Metrics::new();
        m.count_event("process_exec");
        m.ringbuf_lost
            .get_or_create(&RecordLabel {
                record: "exec".into(),
            })
            .inc_by(2);
        m.event_counter(vigil_api::events::EventKind::PolicyDemoted.field_name())
            .inc();
        let text = render(&m.registry());
        assert!(
            text.contains("vigil_events_total{type=\"process_exec\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("vigil_events_total{type=\"vigil_policy_demoted\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("vigil_observer_ringbuf_events_lost_total{record=\"exec\"} 2"),
            "{text}"
        );
        assert!(text.contains("vigil_build_info{version="), "{text}");
        assert!(text.contains("vigil_process_cache_capacity"), "{text}");
        m.count_policy_event("connect", "kprobe:tcp_connect");
        m.hook_records_orphaned.inc();
        m.hook_arg_errors.inc();
        let text = render(&m.registry());
        assert!(
            text.contains(
                "vigil_policy_events_total{policy=\"connect\",hook=\"kprobe:tcp_connect\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("vigil_hook_records_orphaned_total 1"),
            "{text}"
        );
        assert!(text.contains("vigil_hook_arg_errors_total 1"), "{text}");
    }
}
