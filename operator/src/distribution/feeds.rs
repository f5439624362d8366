//! The operator side: desired policies ([`Fleet`]), scheduled pods ([`PodFeed`]) and node
//! labels ([`NodeLabelFeed`]) flow in and are pushed to the affected nodes.

use super::*;

impl Fleet for Distribution {
    fn upsert(&self, policy: DesiredPolicy) {
        let version = policy_version(&policy.ir);
        let mut state = self.lock();
        let key = policy.key.clone();
        match state.policies.get_mut(&key) {
            // Same compiled policy: only the source's revision (and maybe the selector or the
            // rollout plan) moved.
            Some(e) if e.version == version => {
                let plan = policy.rollout;
                e.desired = policy;
                e.replan(plan);
            }
            old => {
                tracing::info!(policy = %key, version = %version, generation = policy.generation, rollout = ?policy.rollout.map(|p| p.to_string()), "policy upserted");
                let rollout = policy.rollout.map(rollout::Rollout::new);
                // Nodes outside the canaries keep what last reached every node.
                let previous = old.and_then(|e| e.stable()).filter(|_| rollout.is_some());
                state.policies.insert(
                    key,
                    Entry {
                        desired: policy,
                        version,
                        since: Instant::now(),
                        settled: false,
                        rollout,
                        previous,
                    },
                );
            }
        }
        state.advance_rollouts(&self.metrics);
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
