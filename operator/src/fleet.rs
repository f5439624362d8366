//! The contract between the operator's policy sources (Kubernetes controllers, the GitOps
//! directory) and policy distribution (the gRPC service sensors connect to).
//!
//! A source says which policies should exist ([`Fleet::upsert`], [`Fleet::remove`]); the fleet
//! pushes them to every sensor whose node they target, collects each node's ACK/NACK, and
//! reports the roll-up per policy ([`Fleet::rollup`]). Sources learn that roll-ups changed
//! through [`Fleet::changes`], so they can update status without polling.

use vigil_api::policy::ir::LabelSelector;
use vigil_api::policy::{PolicyIr, RolloutPlan};

/// Identifies a policy: name plus namespace (empty for cluster-scoped).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    pub name: String,
    pub namespace: String,
}

impl PolicyKey {
    pub fn new(name: impl Into<String>, namespace: impl Into<String>) -> Self {
        PolicyKey {
            name: name.into(),
            namespace: namespace.into(),
        }
    }
}

impl std::fmt::Display for PolicyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// A policy that should run on the nodes it targets.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredPolicy {
    pub key: PolicyKey,
    /// What the source calls this revision: the resource's `metadata.generation` in Kubernetes,
    /// a content hash in GitOps mode. Reported back in roll-ups (`observedGeneration`).
    pub generation: i64,
    /// The compiled policy.
    pub ir: PolicyIr,
    /// `spec.nodeSelector`: only nodes whose labels match receive it (`None`: every node).
    pub node_selector: Option<LabelSelector>,
    /// The `vigil.dev/rollout` annotation: a new version goes to canary nodes first (`None`:
    /// to every targeted node at once).
    pub rollout: Option<RolloutPlan>,
}

/// One node's answer for one policy revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeResult {
    /// Sent, no answer yet.
    Pending,
    /// Loaded with every hook.
    Ready,
    /// Loaded, but some hooks could not attach on this node (the message says which and why).
    Partial(String),
    /// Not loaded (NACK), with the sensor's reason.
    Failed(String),
}

/// Where a policy stands across the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rollup {
    /// The revision these counts are about (the latest upserted).
    pub generation: i64,
    /// Connected nodes the policy targets.
    pub targeted: u32,
    /// Nodes that loaded the current revision with every hook.
    pub ready: u32,
    /// Per node that did not (Failed or Partial), sorted by node name: (node, reason).
    pub failed: Vec<(String, String)>,
    /// Nodes that have not answered for the current revision.
    pub pending: u32,
    /// Where the staged rollout of the current revision stands (`None`: no plan).
    pub rollout: Option<RolloutView>,
    /// The policy declares a CPU budget (`vigil.dev/cpu-budget`).
    pub budgeted: bool,
    /// Per node whose sensor demoted the current revision for exceeding its CPU budget,
    /// sorted by node name: (node, the sensor's reason).
    pub demoted: Vec<(String, String)>,
}

/// The stages of a staged rollout, in order; `Halted` ends it early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RolloutStage {
    /// Sent to the canaries only; waiting for each to load it.
    Canary,
    /// Every canary loaded it with every hook; the rest follow when the pause has elapsed.
    Pause,
    /// A canary failed to load it (or loaded it partially): the other nodes keep the version
    /// they ran until the policy changes again.
    Halted,
    /// Sent to every targeted node.
    Complete,
}

impl RolloutStage {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutStage::Canary => "canary",
            RolloutStage::Pause => "pause",
            RolloutStage::Halted => "halted",
            RolloutStage::Complete => "complete",
        }
    }
}

/// A staged rollout as status and `vigil status --operator` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutView {
    pub plan: RolloutPlan,
    pub stage: RolloutStage,
    /// The canary nodes, sorted.
    pub canaries: Vec<String>,
    /// The canaries that failed or were demoted by their CPU budget, with their reasons
    /// (when halted), sorted by node.
    pub failed: Vec<(String, String)>,
}

impl RolloutView {
    /// The stage in words.
    pub fn message(&self) -> String {
        let canaries = if self.canaries.is_empty() {
            "none yet (no targeted node is connected)".to_string()
        } else {
            self.canaries.join(", ")
        };
        match self.stage {
            RolloutStage::Canary => format!(
                "rollout {}: waiting for the canaries to load it: {canaries}",
                self.plan
            ),
            RolloutStage::Pause => format!(
                "rollout {}: every canary loaded it ({canaries}); the other nodes get it once \
                 the pause of {}s has elapsed",
                self.plan,
                self.plan.pause.as_secs()
            ),
            RolloutStage::Halted => format!(
                "rollout {} halted: {}; the other nodes keep the version they ran",
                self.plan,
                self.failed
                    .iter()
                    .map(|(node, why)| format!("canary {node} failed: {why}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            RolloutStage::Complete => format!(
                "rollout {} complete: every targeted node got it after the canaries ({canaries})",
                self.plan
            ),
        }
    }
}

/// Policy distribution, as the sources see it.
pub trait Fleet: Send + Sync + 'static {
    /// Adds or replaces a policy; pushed to targeted nodes at once.
    fn upsert(&self, policy: DesiredPolicy);
    /// Removes a policy from every node.
    fn remove(&self, key: &PolicyKey);
    /// The current roll-up of a policy; `None` when the fleet does not have it.
    fn rollup(&self, key: &PolicyKey) -> Option<Rollup>;
    /// Ticks whenever any roll-up may have changed (a node answered, connected or left).
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// A pod and the node it is scheduled on, as pod sources hand it to distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct NodePod {
    /// `spec.nodeName`.
    pub node: String,
    pub pod: vigil_api::wire::sensor_info::PodInfo,
}

/// Where the cluster's pods go: distribution keeps them per node and sends every sensor the
/// pods of its node (see `PodSet` in `sync.proto`). Pods are named by uid.
pub trait PodFeed: Send + Sync + 'static {
    /// The complete list of the cluster's scheduled pods (after a list or re-list): pods not in
    /// it are gone. The first call marks the inventory as known; before it no sensor is sent
    /// pods.
    fn replace_pods(&self, pods: Vec<NodePod>);
    /// A pod was added or changed (it may have moved to another node: it leaves the old one).
    fn upsert_pod(&self, pod: NodePod);
    /// A pod was deleted.
    fn delete_pod(&self, uid: &str);
}

/// Where the cluster's Node labels go (Kubernetes mode): distribution selects a policy's nodes
/// (`spec.nodeSelector`) by the Node object's labels, over the labels the sensor announced
/// (`--node-labels`), which remain the fallback for keys the Node does not have and for nodes
/// the operator does not know.
pub trait NodeLabelFeed: Send + Sync + 'static {
    /// Every Node of the cluster with its labels (after a list or re-list).
    fn replace_node_labels(&self, nodes: Vec<(String, std::collections::BTreeMap<String, String>)>);
    /// A Node was added or relabelled.
    fn upsert_node_labels(&self, node: String, labels: std::collections::BTreeMap<String, String>);
    /// A Node was deleted.
    fn delete_node_labels(&self, node: &str);
}
