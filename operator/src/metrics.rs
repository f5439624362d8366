//! The operator's Prometheus metrics (`vigil_operator_*`) and the HTTP endpoint serving them
//! (`/metrics`, `/healthz`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `policy` is `name` or `namespace/name`; `state` is `ready`, `partial`, `failed`, `pending`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyStateLabel {
    pub policy: String,
    pub state: String,
}

/// `policy` as above; `stage` is `canary`, `pause`, `halted` or `complete`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyStageLabel {
    pub policy: String,
    pub stage: String,
}

/// Every metric of the operator. Cloning a metric shares it.
#[derive(Debug)]
pub struct OperatorMetrics {
    pub sensors_connected: Gauge,
    pub sensor_connections: Counter,
    pub policies: Gauge,
    pub policy_nodes: Family<PolicyStateLabel, Gauge>,
    pub pushes: Counter,
    pub push_latency: Histogram,
    pub policy_dir_errors: Counter,
    pub pod_pushes: Counter,
    /// 1 for the stage of each staged rollout (policies with `vigil.dev/rollout`).
    pub policy_rollout: Family<PolicyStageLabel, Gauge>,
    pub rollouts_halted: Counter,
    pub rollouts_completed: Counter,
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        OperatorMetrics {
            sensors_connected: Gauge::default(),
            sensor_connections: Counter::default(),
            policies: Gauge::default(),
            policy_nodes: Family::default(),
            pushes: Counter::default(),
            // 1 ms … ~65 s.
            push_latency: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 17),
            ),
            policy_dir_errors: Counter::default(),
            pod_pushes: Counter::default(),
            policy_rollout: Family::default(),
            rollouts_halted: Counter::default(),
            rollouts_completed: Counter::default(),
        }
    }
}

impl OperatorMetrics {
    /// A registry of these metrics alone, prefixed `vigil_operator`.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("vigil_operator");
        self.register(&mut r);
        r
    }

    /// Registers every metric under `r` (a registry prefixed `vigil_operator`).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "sensors_connected",
            "Sensors with an open policy sync stream",
            self.sensors_connected.clone(),
        );
        r.register(
            "sensor_connections",
            "Policy sync streams opened by sensors",
            self.sensor_connections.clone(),
        );
        r.register(
            "policies_distributed",
            "Policies the operator distributes",
            self.policies.clone(),
        );
        r.register(
            "policy_nodes",
            "Targeted nodes per policy and state of its current version (ready, partial, failed, pending)",
            self.policy_nodes.clone(),
        );
        r.register("pushes", "Policy sets sent to sensors", self.pushes.clone());
        r.register(
            "push_latency_seconds",
            "Time from a policy version's upsert to the last targeted node's answer for it",
            self.push_latency.clone(),
        );
        r.register(
            "policy_dir_errors",
            "Policy directory files that could not be turned into a policy",
            self.policy_dir_errors.clone(),
        );
        r.register(
            "pod_pushes",
            "Pod sets sent to sensors",
            self.pod_pushes.clone(),
        );
        r.register(
            "policy_rollout_stage",
            "1 for the stage (canary, pause, halted, complete) of each policy's staged rollout",
            self.policy_rollout.clone(),
        );
        r.register(
            "rollouts_halted",
            "Staged rollouts stopped because a canary node did not load the policy",
            self.rollouts_halted.clone(),
        );
        r.register(
            "rollouts_completed",
            "Staged rollouts that reached every targeted node",
            self.rollouts_completed.clone(),
        );
    }
}

/// The endpoint (`/metrics`, `/healthz`) is shared with the sensor.
pub use vigil_host::metrics_http::{bind, render, serve};
