//! Policy distribution: the [`Fleet`] behind the `vigil.policysync.v1.PolicySync` service.
//!
//! Every connected sensor (one per node name) has a `watch` channel holding the complete
//! policy set for its node; the gRPC stream sends whatever the channel holds, so a sensor
//! that is slow to read gets the newest set, never a backlog. A set is recomputed for every
//! node whenever a policy is upserted or removed and when a node (re)connects with its labels;
//! it is sent only when its content (policies and versions, and the node's labels, which the
//! sensor matches hostSelector against) differs from the last one sent.
//!
//! Sensors answer per policy version; answers about a version that is no longer current are
//! ignored. Roll-ups count connected, targeted nodes only.
//!
//! Distribution is also the [`PodFeed`]: it keeps the cluster's scheduled pods by node and gives
//! every connected sensor a second `watch` channel with the complete pod set of its node, sent
//! again whenever a pod of that node changes. Until the first complete list arrived (Kubernetes
//! mode, after the pod watcher's initial list) the channel is empty and nothing is sent: a
//! sensor must not take a partial list for the truth, and in GitOps mode there are no pods.

mod feeds;
mod rollout;
#[cfg(test)]
mod rollout_tests;
mod sensors;
mod state;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prost::Message;
use tokio::sync::watch;
use vigil_api::policy::PolicyIr;
use vigil_api::wire::policy_sync as pb;
use vigil_api::wire::sensor_info::PodInfo;

use crate::error::OperatorError;
use crate::fleet::{
    DesiredPolicy, Fleet, NodeLabelFeed, NodePod, NodeResult, PodFeed, PolicyKey, Rollup,
};
use crate::metrics::{OperatorMetrics, PolicyStageLabel, PolicyStateLabel};
use crate::selector::selects;

/// The version of a compiled policy: FNV-1a (64 bit) of its protobuf encoding, in hex. The IR
/// is deterministic, so the same policy has the same version across operator restarts, and a
/// sensor that reconnects keeps what it runs.
pub fn policy_version(ir: &PolicyIr) -> String {
    format!("{:016x}", fnv1a(&ir.encode_to_vec()))
}

/// FNV-1a, 64 bit: stable across runs and Rust versions (unlike `DefaultHasher`).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

struct Entry {
    desired: DesiredPolicy,
    version: String,
    /// When this version was upserted (for the push latency).
    since: Instant,
    /// The push latency of this version was observed (every targeted node answered).
    settled: bool,
    /// A staged rollout of this version (`vigil.dev/rollout`).
    rollout: Option<rollout::Rollout>,
    /// During a staged rollout: what the nodes outside its current stage keep.
    previous: Option<rollout::Previous>,
}

struct Node {
    conn: u64,
    /// What policies are selected by: `hello_labels` overlaid with the Node object's labels.
    labels: BTreeMap<String, String>,
    /// The labels the sensor announced (`--node-labels`).
    hello_labels: BTreeMap<String, String>,
    kernel_release: String,
    sensor_version: String,
    connected_at: Instant,
    tx: watch::Sender<pb::PolicySet>,
    /// The node's pod set (`None` until the cluster's pods are known).
    pods_tx: watch::Sender<Option<pb::PodSet>>,
    pod_sequence: u64,
    /// The content of the last set sent.
    sent: Option<SetContent>,
    sequence: u64,
    /// The node's latest answer per policy, with the version it is about.
    results: HashMap<PolicyKey, (String, NodeResult)>,
    /// Policies the node's CPU budget check demoted: (version, the sensor's reason).
    demotions: HashMap<PolicyKey, (String, String)>,
}

/// What makes a policy set different from another: (policy, version) sorted, and the node's
/// labels.
type SetContent = (Vec<(PolicyKey, String)>, BTreeMap<String, String>);

/// A node's pods by uid (sorted, so that a set's order is stable).
type NodePods = BTreeMap<String, PodInfo>;

#[derive(Default)]
struct State {
    policies: BTreeMap<PolicyKey, Entry>,
    nodes: BTreeMap<String, Node>,
    next_conn: u64,
    /// Scheduled pods by node, and each pod's node by uid.
    pods: HashMap<String, NodePods>,
    pod_node: HashMap<String, String>,
    /// A complete pod list arrived ([`PodFeed::replace_pods`]); until then no pods are sent.
    pods_known: bool,
    /// The Node objects' labels, by node name (Kubernetes mode).
    cluster_labels: HashMap<String, BTreeMap<String, String>>,
}

/// One sensor's open stream, as [`Distribution::connect`] returns it.
#[derive(Debug)]
pub struct Connection {
    pub node: String,
    /// Tells this stream apart from an earlier or later one of the same node.
    pub id: u64,
    /// The node's policy set; holds the first set already.
    pub sets: watch::Receiver<pb::PolicySet>,
    /// The node's pod set; `None` while the operator knows no pods.
    pub pods: watch::Receiver<Option<pb::PodSet>>,
}

/// The distribution state: desired policies, connected nodes and their answers.
pub struct Distribution {
    state: Mutex<State>,
    changes: watch::Sender<u64>,
    metrics: Arc<OperatorMetrics>,
}

impl std::fmt::Debug for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Distribution").finish_non_exhaustive()
    }
}

fn key_of(r: &pb::Report) -> PolicyKey {
    PolicyKey::new(&r.name, &r.namespace)
}

fn result_of(r: &pb::Report) -> Option<NodeResult> {
    match r.state() {
        pb::PolicyState::Ready => Some(NodeResult::Ready),
        pb::PolicyState::Partial => Some(NodeResult::Partial(r.reason.clone())),
        pb::PolicyState::Failed => Some(NodeResult::Failed(r.reason.clone())),
        pb::PolicyState::Pending | pb::PolicyState::Unspecified => None,
    }
}

fn state_name(r: &NodeResult) -> &'static str {
    match r {
        NodeResult::Pending => "pending",
        NodeResult::Ready => "ready",
        NodeResult::Partial(_) => "partial",
        NodeResult::Failed(_) => "failed",
    }
}

/// The roll-up of one policy revision from each targeted node's result.
pub fn rollup_of(generation: i64, results: &[(&str, NodeResult)]) -> Rollup {
    let mut r = Rollup {
        generation,
        targeted: results.len() as u32,
        ..Rollup::default()
    };
    for (node, res) in results {
        match res {
            NodeResult::Pending => r.pending += 1,
            NodeResult::Ready => r.ready += 1,
            NodeResult::Partial(why) | NodeResult::Failed(why) => {
                r.failed.push((node.to_string(), why.clone()))
            }
        }
    }
    r.failed.sort();
    r
}

impl Distribution {
    pub fn new(metrics: Arc<OperatorMetrics>) -> Self {
        Distribution {
            state: Mutex::new(State::default()),
            changes: watch::Sender::new(0),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tick(&self, state: &State) {
        state.update_metrics(&self.metrics);
        self.changes.send_modify(|v| *v += 1);
    }
}
