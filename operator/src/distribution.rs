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
use crate::metrics::{OperatorMetrics, PolicyStateLabel};
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

impl State {
    fn targets(&self, entry: &Entry, node: &Node) -> bool {
        selects(entry.desired.node_selector.as_ref(), &node.labels)
    }

    /// Computes `name`'s set and sends it when it changed.
    fn push(&mut self, name: &str, metrics: &OperatorMetrics) {
        let Some(node) = self.nodes.get(name) else {
            return;
        };
        let targeted: Vec<(&PolicyKey, &Entry)> = self
            .policies
            .iter()
            .filter(|(_, e)| self.targets(e, node))
            .collect();
        let content: Vec<(PolicyKey, String)> = targeted
            .iter()
            .map(|(k, e)| ((*k).clone(), e.version.clone()))
            .collect();
        let labels = node.labels.clone();
        let set = pb::PolicySet {
            sequence: node.sequence + 1,
            node_labels: labels.clone().into_iter().collect(),
            policies: targeted
                .iter()
                .map(|(_, e)| pb::VersionedPolicy {
                    version: e.version.clone(),
                    generation: e.desired.generation,
                    ir: Some(e.desired.ir.clone()),
                })
                .collect(),
        };
        let node = self.nodes.get_mut(name).expect("checked above");
        node.results
            .retain(|k, _| content.iter().any(|(ck, _)| ck == k));
        let content = (content, labels);
        if node.sent.as_ref() == Some(&content) {
            return;
        }
        node.sequence += 1;
        node.sent = Some(content);
        node.tx.send_replace(set);
        metrics.pushes.inc();
    }

    /// Recomputes a connected node's effective labels; true when they changed.
    fn relabel(&mut self, name: &str) -> bool {
        let cluster = self.cluster_labels.get(name);
        let Some(node) = self.nodes.get_mut(name) else {
            return false;
        };
        let mut labels = node.hello_labels.clone();
        if let Some(c) = cluster {
            labels.extend(c.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let changed = labels != node.labels;
        node.labels = labels;
        changed
    }

    /// After a Node's labels changed: its policy set follows.
    fn node_relabelled(&mut self, name: &str, metrics: &OperatorMetrics) -> bool {
        if self.relabel(name) {
            tracing::info!(node = %name, labels = ?self.nodes[name].labels, "node labels changed");
            self.push(name, metrics);
            true
        } else {
            false
        }
    }

    /// Sends `name`'s pod set (when the cluster's pods are known and the node is connected).
    fn push_pods(&mut self, name: &str, metrics: &OperatorMetrics) {
        if !self.pods_known {
            return;
        }
        let pods: Vec<PodInfo> = self
            .pods
            .get(name)
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default();
        let Some(node) = self.nodes.get_mut(name) else {
            return;
        };
        node.pod_sequence += 1;
        node.pods_tx.send_replace(Some(pb::PodSet {
            sequence: node.pod_sequence,
            pods,
        }));
        metrics.pod_pushes.inc();
    }

    fn push_all(&mut self, metrics: &OperatorMetrics) {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for n in names {
            self.push(&n, metrics);
        }
    }

    /// Per targeted node: (node, its result for the current version).
    fn node_results(&self, entry: &Entry) -> Vec<(&str, NodeResult)> {
        let key = &entry.desired.key;
        self.nodes
            .iter()
            .filter(|(_, n)| self.targets(entry, n))
            .map(|(name, n)| {
                let r = match n.results.get(key) {
                    Some((v, r)) if *v == entry.version => r.clone(),
                    _ => NodeResult::Pending,
                };
                (name.as_str(), r)
            })
            .collect()
    }

    fn rollup(&self, entry: &Entry) -> Rollup {
        rollup_of(entry.desired.generation, &self.node_results(entry))
    }

    fn update_metrics(&self, metrics: &OperatorMetrics) {
        metrics.policy_nodes.clear();
        metrics.policies.set(self.policies.len() as i64);
        metrics.sensors_connected.set(self.nodes.len() as i64);
        for (key, entry) in &self.policies {
            let mut counts: BTreeMap<&str, i64> =
                [("ready", 0), ("partial", 0), ("failed", 0), ("pending", 0)].into();
            for (_, r) in self.node_results(entry) {
                *counts.entry(state_name(&r)).or_default() += 1;
            }
            for (state, n) in counts {
                metrics
                    .policy_nodes
                    .get_or_create(&PolicyStateLabel {
                        policy: key.to_string(),
                        state: state.into(),
                    })
                    .set(n);
            }
        }
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

    /// A sensor said Hello: registers its node (replacing an earlier stream of the same node,
    /// which then ends) and computes its first set.
    pub fn connect(&self, hello: pb::Hello) -> Result<Connection, OperatorError> {
        if hello.node_name.is_empty() {
            return Err(OperatorError::Protocol("Hello without a node name".into()));
        }
        let mut state = self.lock();
        state.next_conn += 1;
        let id = state.next_conn;
        let (tx, rx) = watch::channel(pb::PolicySet::default());
        let (pods_tx, pods_rx) = watch::channel(None);
        let name = hello.node_name.clone();
        let running: HashMap<PolicyKey, String> = hello
            .running
            .iter()
            .map(|r| (PolicyKey::new(&r.name, &r.namespace), r.version.clone()))
            .collect();
        if state.nodes.contains_key(&name) {
            tracing::info!(node = %name, "node reconnected; its previous stream ends");
        }
        state.nodes.insert(
            name.clone(),
            Node {
                conn: id,
                labels: BTreeMap::new(),
                hello_labels: hello.labels.into_iter().collect(),
                kernel_release: hello.kernel_release,
                sensor_version: hello.sensor_version,
                connected_at: Instant::now(),
                tx,
                pods_tx,
                pod_sequence: 0,
                sent: None,
                sequence: 0,
                results: HashMap::new(),
            },
        );
        state.relabel(&name);
        state.push(&name, &self.metrics);
        state.push_pods(&name, &self.metrics);
        let runs_current = state
            .policies
            .iter()
            .filter(|(k, e)| running.get(*k) == Some(&e.version))
            .count();
        tracing::info!(
            node = %name,
            policies = state.nodes[&name].sent.as_ref().map_or(0, |(p, _)| p.len()),
            already_running = runs_current,
            "sensor connected"
        );
        self.metrics.sensor_connections.inc();
        self.tick(&state);
        Ok(Connection {
            node: name,
            id,
            sets: rx,
            pods: pods_rx,
        })
    }

    /// A sensor's answer about one policy version.
    pub fn report(&self, node: &str, conn: u64, report: &pb::Report) {
        let Some(result) = result_of(report) else {
            return;
        };
        let key = key_of(report);
        let mut state = self.lock();
        let current = state
            .policies
            .get(&key)
            .is_some_and(|e| e.version == report.version);
        match state.nodes.get_mut(node) {
            Some(n) if n.conn == conn && current => {
                n.results
                    .insert(key.clone(), (report.version.clone(), result));
            }
            _ => return,
        }
        let state = &mut *state;
        if let Some(entry) = state.policies.get(&key)
            && !entry.settled
        {
            let r = state.rollup(entry);
            if r.pending == 0 && r.targeted > 0 {
                let elapsed = entry.since.elapsed();
                self.metrics.push_latency.observe(elapsed.as_secs_f64());
                tracing::info!(
                    policy = %key,
                    version = %report.version,
                    nodes = r.targeted,
                    ready = r.ready,
                    latency_ms = elapsed.as_millis() as u64,
                    "every targeted node answered"
                );
                if let Some(e) = state.policies.get_mut(&key) {
                    e.settled = true;
                }
            }
        }
        self.tick(state);
    }

    /// A stream ended; forgets the node unless a newer stream of it is open.
    pub fn disconnect(&self, node: &str, conn: u64) {
        let mut state = self.lock();
        if state.nodes.get(node).is_some_and(|n| n.conn == conn) {
            state.nodes.remove(node);
            tracing::info!(node = %node, "sensor disconnected");
            self.tick(&state);
        }
    }

    /// Every policy × every targeted node, and every connected node.
    pub fn status(&self) -> pb::GetStatusResponse {
        let state = self.lock();
        let nodes = state
            .nodes
            .iter()
            .map(|(name, n)| pb::NodeStatus {
                name: name.clone(),
                labels: n.labels.clone().into_iter().collect(),
                kernel_release: n.kernel_release.clone(),
                sensor_version: n.sensor_version.clone(),
                connected_seconds: n.connected_at.elapsed().as_secs(),
                pods: state.pods.get(name).map_or(0, |p| p.len() as u32),
            })
            .collect();
        let policies = state
            .policies
            .iter()
            .map(|(key, e)| {
                let results = state.node_results(e);
                let count = |f: fn(&NodeResult) -> bool| {
                    results.iter().filter(|(_, r)| f(r)).count() as u32
                };
                pb::PolicyStatus {
                    name: key.name.clone(),
                    namespace: key.namespace.clone(),
                    generation: e.desired.generation,
                    version: e.version.clone(),
                    targeted: results.len() as u32,
                    ready: count(|r| matches!(r, NodeResult::Ready)),
                    pending: count(|r| matches!(r, NodeResult::Pending)),
                    failed: count(|r| matches!(r, NodeResult::Failed(_))),
                    partial: count(|r| matches!(r, NodeResult::Partial(_))),
                    nodes: results
                        .iter()
                        .map(|(node, r)| {
                            let (state, reason) = match r {
                                NodeResult::Pending => (pb::PolicyState::Pending, ""),
                                NodeResult::Ready => (pb::PolicyState::Ready, ""),
                                NodeResult::Partial(w) => (pb::PolicyState::Partial, w.as_str()),
                                NodeResult::Failed(w) => (pb::PolicyState::Failed, w.as_str()),
                            };
                            pb::NodePolicyState {
                                node: node.to_string(),
                                state: state as i32,
                                reason: reason.to_string(),
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        pb::GetStatusResponse { nodes, policies }
    }

    /// Names of the connected nodes.
    pub fn nodes(&self) -> Vec<String> {
        self.lock().nodes.keys().cloned().collect()
    }
}

impl Fleet for Distribution {
    fn upsert(&self, policy: DesiredPolicy) {
        let version = policy_version(&policy.ir);
        let mut state = self.lock();
        let key = policy.key.clone();
        match state.policies.get_mut(&key) {
            // Same compiled policy: only the source's revision (and maybe the selector) moved.
            Some(e) if e.version == version => e.desired = policy,
            _ => {
                tracing::info!(policy = %key, version = %version, generation = policy.generation, "policy upserted");
                state.policies.insert(
                    key,
                    Entry {
                        desired: policy,
                        version,
                        since: Instant::now(),
                        settled: false,
                    },
                );
            }
        }
        state.push_all(&self.metrics);
        self.tick(&state);
    }

    fn remove(&self, key: &PolicyKey) {
        let mut state = self.lock();
        if state.policies.remove(key).is_some() {
            tracing::info!(policy = %key, "policy removed");
            state.push_all(&self.metrics);
            self.tick(&state);
        }
    }

    fn rollup(&self, key: &PolicyKey) -> Option<Rollup> {
        let state = self.lock();
        state.policies.get(key).map(|e| state.rollup(e))
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

impl PodFeed for Distribution {
    fn replace_pods(&self, pods: Vec<NodePod>) {
        let mut state = self.lock();
        let mut by_node: HashMap<String, NodePods> = HashMap::new();
        let mut pod_node = HashMap::new();
        for p in pods {
            pod_node.insert(p.pod.uid.clone(), p.node.clone());
            by_node
                .entry(p.node)
                .or_default()
                .insert(p.pod.uid.clone(), p.pod);
        }
        let first = !state.pods_known;
        // Only nodes whose pods differ are sent a new set (every node on the first list).
        let changed: Vec<String> = state
            .nodes
            .keys()
            .filter(|n| first || state.pods.get(*n) != by_node.get(*n))
            .cloned()
            .collect();
        state.pods = by_node;
        state.pod_node = pod_node;
        state.pods_known = true;
        tracing::info!(
            pods = state.pod_node.len(),
            nodes_updated = changed.len(),
            "pod list"
        );
        for n in changed {
            state.push_pods(&n, &self.metrics);
        }
    }

    fn upsert_pod(&self, pod: NodePod) {
        let mut state = self.lock();
        let uid = pod.pod.uid.clone();
        let old_node = state.pod_node.insert(uid.clone(), pod.node.clone());
        let mut touched = vec![pod.node.clone()];
        if let Some(old) = old_node.filter(|o| *o != pod.node) {
            if let Some(p) = state.pods.get_mut(&old) {
                p.remove(&uid);
            }
            touched.push(old);
        }
        let node_pods = state.pods.entry(pod.node).or_default();
        if node_pods.get(&uid) == Some(&pod.pod) && touched.len() == 1 {
            return;
        }
        node_pods.insert(uid, pod.pod);
        for n in touched {
            state.push_pods(&n, &self.metrics);
        }
    }

    fn delete_pod(&self, uid: &str) {
        let mut state = self.lock();
        let Some(node) = state.pod_node.remove(uid) else {
            return;
        };
        if let Some(p) = state.pods.get_mut(&node) {
            p.remove(uid);
            if p.is_empty() {
                state.pods.remove(&node);
            }
        }
        state.push_pods(&node, &self.metrics);
    }
}

impl NodeLabelFeed for Distribution {
    fn replace_node_labels(&self, nodes: Vec<(String, BTreeMap<String, String>)>) {
        let mut state = self.lock();
        state.cluster_labels = nodes.into_iter().collect();
        let names: Vec<String> = state.nodes.keys().cloned().collect();
        let mut changed = false;
        for n in names {
            changed |= state.node_relabelled(&n, &self.metrics);
        }
        if changed {
            self.tick(&state);
        }
    }

    fn upsert_node_labels(&self, node: String, labels: BTreeMap<String, String>) {
        let mut state = self.lock();
        state.cluster_labels.insert(node.clone(), labels);
        if state.node_relabelled(&node, &self.metrics) {
            self.tick(&state);
        }
    }

    fn delete_node_labels(&self, node: &str) {
        let mut state = self.lock();
        if state.cluster_labels.remove(node).is_some() && state.node_relabelled(node, &self.metrics)
        {
            self.tick(&state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_api::policy::ir::{LabelOperator, LabelRequirement, LabelSelector, PolicyIdentity};

    fn ir(name: &str, tag: &str) -> PolicyIr {
        PolicyIr {
            ir_version: 1,
            identity: Some(PolicyIdentity {
                name: name.into(),
                source_api_version: tag.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn desired(name: &str, tag: &str, zone: Option<&str>) -> DesiredPolicy {
        DesiredPolicy {
            key: PolicyKey::new(name, ""),
            generation: 1,
            ir: ir(name, tag),
            node_selector: zone.map(|z| LabelSelector {
                requirements: vec![LabelRequirement {
                    key: "zone".into(),
                    operator: LabelOperator::In as i32,
                    values: vec![z.into()],
                }],
            }),
        }
    }

    fn hello(node: &str, zone: &str) -> pb::Hello {
        pb::Hello {
            node_name: node.into(),
            labels: [("zone".to_string(), zone.to_string())].into(),
            ..Default::default()
        }
    }

    fn report(name: &str, version: &str, state: pb::PolicyState, reason: &str) -> pb::Report {
        pb::Report {
            name: name.into(),
            version: version.into(),
            state: state as i32,
            reason: reason.into(),
            ..Default::default()
        }
    }

    fn names(set: &pb::PolicySet) -> Vec<String> {
        set.policies
            .iter()
            .map(|p| {
                p.ir.as_ref()
                    .unwrap()
                    .identity
                    .as_ref()
                    .unwrap()
                    .name
                    .clone()
            })
            .collect()
    }

    fn dist() -> Distribution {
        Distribution::new(Arc::new(OperatorMetrics::default()))
    }

    #[test]
    fn rollup_math() {
        let r = rollup_of(
            7,
            &[
                ("n3", NodeResult::Failed("nope".into())),
                ("n1", NodeResult::Ready),
                ("n2", NodeResult::Partial("hook".into())),
                ("n4", NodeResult::Pending),
                ("n5", NodeResult::Ready),
            ],
        );
        assert_eq!(
            r,
            Rollup {
                generation: 7,
                targeted: 5,
                ready: 2,
                failed: vec![("n2".into(), "hook".into()), ("n3".into(), "nope".into())],
                pending: 1,
            }
        );
        assert_eq!(
            rollup_of(1, &[]),
            Rollup {
                generation: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn sets_follow_selectors_and_answers_roll_up() {
        let d = dist();
        let mut changes = d.changes();
        let a = d.connect(hello("n1", "a")).unwrap();
        let b = d.connect(hello("n2", "b")).unwrap();
        assert!(a.sets.borrow().policies.is_empty());
        d.upsert(desired("everywhere", "v1", None));
        d.upsert(desired("only-a", "v1", Some("a")));
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        assert_eq!(names(&a.sets.borrow()), ["everywhere", "only-a"]);
        assert_eq!(names(&b.sets.borrow()), ["everywhere"]);
        let key = PolicyKey::new("everywhere", "");
        let r = d.rollup(&key).unwrap();
        assert_eq!((r.targeted, r.ready, r.pending), (2, 0, 2));
        let v = policy_version(&ir("everywhere", "v1"));
        d.report(
            "n1",
            a.id,
            &report("everywhere", &v, pb::PolicyState::Ready, ""),
        );
        d.report(
            "n2",
            b.id,
            &report("everywhere", &v, pb::PolicyState::Partial, "kprobe missing"),
        );
        assert!(changes.has_changed().unwrap());
        let r = d.rollup(&key).unwrap();
        assert_eq!((r.targeted, r.ready, r.pending), (2, 1, 0));
        assert_eq!(r.failed, vec![("n2".into(), "kprobe missing".into())]);
        let text = crate::metrics::render(&d.metrics.registry());
        assert!(
            text.contains("vigil_operator_push_latency_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("vigil_operator_policy_nodes{policy=\"everywhere\",state=\"partial\"} 1"),
            "{text}"
        );
        // A stale answer (other version) or from an old stream changes nothing.
        d.report(
            "n1",
            a.id,
            &report("everywhere", "old", pb::PolicyState::Failed, "x"),
        );
        d.report(
            "n1",
            a.id + 100,
            &report("everywhere", &v, pb::PolicyState::Failed, "x"),
        );
        assert_eq!(d.rollup(&key).unwrap().ready, 1);
        // A new version is pending everywhere again.
        d.upsert(desired("everywhere", "v2", None));
        let r = d.rollup(&key).unwrap();
        assert_eq!((r.ready, r.pending), (0, 2));
        assert!(r.failed.is_empty());
        // Remove: gone from both sets.
        d.remove(&key);
        assert!(d.rollup(&key).is_none());
        assert_eq!(names(&a.sets.borrow()), ["only-a"]);
        assert!(b.sets.borrow().policies.is_empty());
    }

    #[test]
    fn unchanged_content_is_not_pushed_again() {
        let d = dist();
        let mut a = d.connect(hello("n1", "a")).unwrap();
        a.sets.mark_unchanged();
        d.upsert(desired("p", "v1", None));
        assert!(a.sets.has_changed().unwrap());
        a.sets.mark_unchanged();
        let seq = a.sets.borrow().sequence;
        // Same IR, new generation: nothing to send.
        let mut again = desired("p", "v1", None);
        again.generation = 2;
        d.upsert(again);
        assert!(!a.sets.has_changed().unwrap());
        assert_eq!(d.rollup(&PolicyKey::new("p", "")).unwrap().generation, 2);
        // A policy for another zone: n1's set does not change.
        d.upsert(desired("q", "v1", Some("b")));
        assert!(!a.sets.has_changed().unwrap());
        assert_eq!(a.sets.borrow().sequence, seq);
    }

    #[test]
    fn relabelled_node_gains_and_loses_policies_and_old_stream_ends() {
        let d = dist();
        d.upsert(desired("only-a", "v1", Some("a")));
        d.upsert(desired("only-b", "v1", Some("b")));
        let first = d.connect(hello("n1", "a")).unwrap();
        assert_eq!(names(&first.sets.borrow()), ["only-a"]);
        let second = d.connect(hello("n1", "b")).unwrap();
        assert_eq!(names(&second.sets.borrow()), ["only-b"]);
        // The first stream's sender is gone: its stream ends.
        assert!(first.sets.has_changed().is_err());
        // The old stream's end does not remove the new one.
        d.disconnect("n1", first.id);
        assert_eq!(d.nodes(), ["n1"]);
        assert_eq!(d.rollup(&PolicyKey::new("only-b", "")).unwrap().targeted, 1);
        assert_eq!(d.rollup(&PolicyKey::new("only-a", "")).unwrap().targeted, 0);
        d.disconnect("n1", second.id);
        assert!(d.nodes().is_empty());
        assert_eq!(d.rollup(&PolicyKey::new("only-b", "")).unwrap().targeted, 0);
    }

    #[test]
    fn status_lists_policies_by_node() {
        let d = dist();
        let a = d.connect(hello("n1", "a")).unwrap();
        let _b = d.connect(hello("n2", "a")).unwrap();
        d.upsert(desired("p", "v1", None));
        let v = policy_version(&ir("p", "v1"));
        d.report(
            "n1",
            a.id,
            &report("p", &v, pb::PolicyState::Failed, "Override not possible"),
        );
        let s = d.status();
        assert_eq!(s.nodes.len(), 2);
        let p = &s.policies[0];
        assert_eq!((p.targeted, p.ready, p.failed, p.pending), (2, 0, 1, 1));
        assert_eq!(p.nodes[0].node, "n1");
        assert_eq!(p.nodes[0].state(), pb::PolicyState::Failed);
        assert_eq!(p.nodes[0].reason, "Override not possible");
        assert_eq!(p.nodes[1].state(), pb::PolicyState::Pending);
    }

    #[test]
    fn hello_without_node_name_is_refused() {
        assert!(dist().connect(pb::Hello::default()).is_err());
    }

    fn pod(uid: &str, node: &str, app: &str) -> NodePod {
        NodePod {
            node: node.into(),
            pod: PodInfo {
                namespace: "default".into(),
                name: format!("pod-{uid}"),
                uid: uid.into(),
                labels: [("app".to_string(), app.to_string())].into(),
                ..Default::default()
            },
        }
    }

    fn pod_uids(c: &Connection) -> Option<Vec<String>> {
        c.pods
            .borrow()
            .as_ref()
            .map(|s| s.pods.iter().map(|p| p.uid.clone()).collect())
    }

    #[test]
    fn pods_reach_only_their_node_and_only_once_the_list_is_complete() {
        let d = dist();
        let mut a = d.connect(hello("n1", "a")).unwrap();
        let mut b = d.connect(hello("n2", "a")).unwrap();
        // Before the first complete list: nothing, even for single upserts.
        d.upsert_pod(pod("u0", "n1", "web"));
        assert_eq!(pod_uids(&a), None, "no pods before the first list");
        d.replace_pods(vec![
            pod("u1", "n1", "web"),
            pod("u2", "n2", "db"),
            pod("u3", "n1", "db"),
        ]);
        assert_eq!(
            pod_uids(&a).unwrap(),
            ["u1", "u3"],
            "u0 was not in the list"
        );
        assert_eq!(pod_uids(&b).unwrap(), ["u2"]);
        a.pods.mark_unchanged();
        b.pods.mark_unchanged();
        // Relabel on n1: only n1 gets a new set, with the new labels.
        d.upsert_pod(pod("u1", "n1", "web2"));
        assert!(a.pods.has_changed().unwrap());
        assert!(!b.pods.has_changed().unwrap());
        assert_eq!(
            a.pods.borrow_and_update().as_ref().unwrap().pods[0].labels["app"],
            "web2"
        );
        // The same content again: nothing sent.
        d.upsert_pod(pod("u1", "n1", "web2"));
        assert!(!a.pods.has_changed().unwrap());
        // A pod moving to n2 leaves n1.
        d.upsert_pod(pod("u3", "n2", "db"));
        assert_eq!(pod_uids(&a).unwrap(), ["u1"]);
        assert_eq!(pod_uids(&b).unwrap(), ["u2", "u3"]);
        a.pods.mark_unchanged();
        b.pods.mark_unchanged();
        d.delete_pod("u2");
        assert_eq!(pod_uids(&b).unwrap(), ["u3"]);
        assert!(!a.pods.has_changed().unwrap());
        b.pods.mark_unchanged();
        d.delete_pod("never-seen");
        assert!(
            !b.pods.has_changed().unwrap(),
            "an unknown uid changes nothing"
        );
        // A re-list sends only to nodes whose pods differ.
        b.pods.mark_unchanged();
        d.replace_pods(vec![pod("u1", "n1", "web2"), pod("u4", "n2", "x")]);
        assert!(!a.pods.has_changed().unwrap(), "n1 is unchanged");
        assert_eq!(pod_uids(&b).unwrap(), ["u4"]);
        assert_eq!(d.status().nodes[1].pods, 1);
        let text = crate::metrics::render(&d.metrics.registry());
        assert!(text.contains("vigil_operator_pod_pushes_total 7"), "{text}");
        // A node connecting later gets its pods at once, with a fresh sequence.
        let c = d.connect(hello("n3", "a")).unwrap();
        assert_eq!(pod_uids(&c).unwrap(), Vec::<String>::new());
        d.upsert_pod(pod("u5", "n3", "y"));
        assert_eq!(pod_uids(&c).unwrap(), ["u5"]);
        assert_eq!(c.pods.borrow().as_ref().unwrap().sequence, 2);
    }

    #[test]
    fn node_objects_labels_select_policies_over_announced_ones() {
        let d = dist();
        d.upsert(desired("only-a", "v1", Some("a")));
        d.upsert(desired("only-b", "v1", Some("b")));
        // The sensor announced zone=a and nothing is known of its Node yet.
        let n1 = d.connect(hello("n1", "a")).unwrap();
        assert_eq!(names(&n1.sets.borrow()), ["only-a"]);
        // The Node object says zone=b: it wins over the announced label.
        d.replace_node_labels(vec![(
            "n1".into(),
            [("zone".to_string(), "b".to_string())].into(),
        )]);
        assert_eq!(names(&n1.sets.borrow()), ["only-b"]);
        assert_eq!(
            n1.sets.borrow().node_labels["zone"],
            "b",
            "the sensor is told"
        );
        // Labels alone change (same policies): the set goes out again with them.
        let mut n1_sets = n1.sets.clone();
        n1_sets.mark_unchanged();
        d.upsert_node_labels(
            "n1".into(),
            [
                ("zone".to_string(), "b".to_string()),
                ("role".to_string(), "web".to_string()),
            ]
            .into(),
        );
        assert!(n1_sets.has_changed().unwrap());
        assert_eq!(n1.sets.borrow().node_labels["role"], "web");
        assert_eq!(names(&n1.sets.borrow()), ["only-b"]);
        assert_eq!(d.rollup(&PolicyKey::new("only-b", "")).unwrap().targeted, 1);
        assert_eq!(d.rollup(&PolicyKey::new("only-a", "")).unwrap().targeted, 0);
        assert_eq!(d.status().nodes[0].labels["zone"], "b");
        // Relabelled in the cluster: the set follows; a label the Node lacks falls back.
        d.upsert_node_labels("n1".into(), [("other".to_string(), "x".to_string())].into());
        assert_eq!(names(&n1.sets.borrow()), ["only-a"]);
        // A node connecting after its Node was seen is selected by the Node's labels at once.
        d.upsert_node_labels("n2".into(), [("zone".to_string(), "b".to_string())].into());
        let n2 = d.connect(hello("n2", "a")).unwrap();
        assert_eq!(names(&n2.sets.borrow()), ["only-b"]);
        // The Node is deleted: back to what the sensor announced.
        d.delete_node_labels("n2");
        assert_eq!(names(&n2.sets.borrow()), ["only-a"]);
    }

    #[test]
    fn version_is_stable_and_content_sensitive() {
        assert_eq!(policy_version(&ir("a", "x")), policy_version(&ir("a", "x")));
        assert_ne!(policy_version(&ir("a", "x")), policy_version(&ir("a", "y")));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }
}
