//! Prometheus metrics of the Kubernetes side of the operator (`vigil_operator_` prefix once
//! registered under the `vigil` registry prefix).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::fleet::PolicyKey;
use crate::status::PolicyState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabel {
    /// `TracingPolicy` or `TracingPolicyNamespaced`.
    pub kind: String,
    /// `ok` or `error`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub kind: String,
    /// What failed: `kube`, `finalizer`, `invalid_object`, …
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForbiddenLabel {
    /// The RBAC verb the API server refused.
    pub verb: String,
    /// The resource (with subresource, e.g. `tracingpolicies/status`).
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub kind: String,
    /// `rejected`, `pending`, `ready`, `degraded`.
    pub state: String,
}

fn duration_histogram() -> Histogram {
    // 1 ms .. ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Metrics of the controllers, leader election and the pod watcher. Cloning a metric shares it.
#[derive(Debug)]
pub struct KubeMetrics {
    pub reconciles: Family<ReconcileLabel, Counter>,
    pub reconcile_errors: Family<ErrorLabel, Counter>,
    pub reconcile_duration: Family<KindLabel, Histogram, fn() -> Histogram>,
    pub status_patches: Family<KindLabel, Counter>,
    pub policies: Family<StateLabel, Gauge>,
    pub leader: Gauge,
    /// Scheduled pods the pod watcher knows (what distribution was last told), cluster-wide.
    pub pods: Gauge,
    /// Failed pod list/watch requests; the watcher retries each with backoff.
    pub pod_watch_errors: Counter,
    /// Failures of the Node watch (labels for nodeSelector).
    pub node_watch_errors: Counter,
    /// API requests refused with 403 Forbidden (a missing RBAC permission), by verb and resource.
    pub api_forbidden: Family<ForbiddenLabel, Counter>,
    /// Per policy, its kind and state; `policies` is recomputed from it.
    states: Mutex<HashMap<(&'static str, PolicyKey), PolicyState>>,
}

impl Default for KubeMetrics {
    fn default() -> Self {
        KubeMetrics {
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Family::new_with_constructor(duration_histogram),
            status_patches: Family::default(),
            policies: Family::default(),
            leader: Gauge::default(),
            pods: Gauge::default(),
            pod_watch_errors: Counter::default(),
            node_watch_errors: Counter::default(),
            api_forbidden: Family::default(),
            states: Mutex::new(HashMap::new()),
        }
    }
}

impl KubeMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register every metric under `registry` (use a registry with prefix `vigil`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "operator_reconciles",
            "Reconciliations of TracingPolicy resources, by kind and result",
            self.reconciles.clone(),
        );
        registry.register(
            "operator_reconcile_errors",
            "Failed reconciliations, by kind and what failed",
            self.reconcile_errors.clone(),
        );
        registry.register(
            "operator_reconcile_duration_seconds",
            "Time one reconciliation took, by kind",
            self.reconcile_duration.clone(),
        );
        registry.register(
            "operator_status_patches",
            "Status updates written to TracingPolicy resources, by kind",
            self.status_patches.clone(),
        );
        registry.register(
            "operator_policies",
            "TracingPolicy resources by kind and state (rejected, pending, ready, degraded)",
            self.policies.clone(),
        );
        registry.register(
            "operator_leader",
            "1 while this replica holds the leader lease and runs the controllers",
            self.leader.clone(),
        );
        registry.register(
            "operator_pods",
            "Scheduled pods known to the pod watcher and fed to distribution, cluster-wide",
            self.pods.clone(),
        );
        // A counter: the text encoding appends `_total`.
        registry.register(
            "operator_pod_watch_errors",
            "Failed pod list or watch requests (each is retried with backoff)",
            self.pod_watch_errors.clone(),
        );
        registry.register(
            "operator_node_watch_errors",
            "Failures of the Node watch that feeds node labels to policy selection (retried with backoff)",
            self.node_watch_errors.clone(),
        );
        registry.register(
            "operator_api_forbidden",
            "API requests refused with 403 Forbidden (a permission missing from the operator's RBAC), by verb and resource",
            self.api_forbidden.clone(),
        );
    }

    pub(crate) fn observe_reconcile(
        &self,
        kind: &'static str,
        took: Duration,
        error: Option<&'static str>,
    ) {
        self.reconciles
            .get_or_create(&ReconcileLabel {
                kind: kind.into(),
                result: if error.is_some() { "error" } else { "ok" }.into(),
            })
            .inc();
        if let Some(error) = error {
            self.reconcile_errors
                .get_or_create(&ErrorLabel {
                    kind: kind.into(),
                    error: error.into(),
                })
                .inc();
        }
        self.reconcile_duration
            .get_or_create(&KindLabel { kind: kind.into() })
            .observe(took.as_secs_f64());
    }

    /// Record a policy's state (`None`: the policy is gone) and refresh `policies`.
    pub(crate) fn set_state(
        &self,
        kind: &'static str,
        key: &PolicyKey,
        state: Option<PolicyState>,
    ) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        match state {
            Some(s) => {
                states.insert((kind, key.clone()), s);
            }
            None => {
                states.remove(&(kind, key.clone()));
            }
        }
        for s in PolicyState::ALL {
            let n = states
                .iter()
                .filter(|((k, _), v)| *k == kind && **v == s)
                .count();
            self.policies
                .get_or_create(&StateLabel {
                    kind: kind.into(),
                    state: s.as_str().into(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Render every metric in the Prometheus text format (for tests and simple servers).
    pub fn encode(&self) -> String {
        let mut r = Registry::with_prefix("vigil");
        self.register(&mut r);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        out
    }
}
