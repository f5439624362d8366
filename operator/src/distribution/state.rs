//! The per-node view of the desired policies: which policies target a node, what was last
//! sent to it, pushing new policy and pod sets, and the roll-ups and metrics from its answers.

use super::rollout::Sent;
use super::*;

impl State {
    pub(super) fn targets(&self, entry: &Entry, node: &Node) -> bool {
        selects(entry.desired.node_selector.as_ref(), &node.labels)
    }

    /// Computes `name`'s set and sends it when it changed.
    pub(super) fn push(&mut self, name: &str, metrics: &OperatorMetrics) {
        let Some(node) = self.nodes.get(name) else {
            return;
        };
        // Per policy, the version this node is sent (staged rollouts send some nodes the
        // previous one, or none yet).
        let mut targeted: Vec<(&PolicyKey, &str, &DesiredPolicy)> = Vec::new();
        let mut keep: Vec<&PolicyKey> = Vec::new();
        for (k, e) in &self.policies {
            match self.version_for(e, name, node) {
                Some(Sent::Version(v, d)) => targeted.push((k, v, d)),
                Some(Sent::Keep) => keep.push(k),
                None => {}
            }
        }
        // Kept policies are in the content with an empty version (real ones are never empty).
        let content: Vec<(PolicyKey, String)> = targeted
            .iter()
            .map(|(k, v, _)| ((*k).clone(), v.to_string()))
            .chain(keep.iter().map(|k| ((*k).clone(), String::new())))
            .collect();
        let labels = node.labels.clone();
        let set = pb::PolicySet {
            sequence: node.sequence + 1,
            node_labels: labels.clone().into_iter().collect(),
            policies: targeted
                .iter()
                .map(|(_, v, d)| pb::VersionedPolicy {
                    version: v.to_string(),
                    generation: d.generation,
                    ir: Some(d.ir.clone()),
                })
                .collect(),
            keep: keep
                .iter()
                .map(|k| pb::PolicyRef {
                    name: k.name.clone(),
                    namespace: k.namespace.clone(),
                })
                .collect(),
        };
        let node = self.nodes.get_mut(name).expect("checked above");
        node.results
            .retain(|k, _| content.iter().any(|(ck, _)| ck == k));
        node.demotions
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
    pub(super) fn relabel(&mut self, name: &str) -> bool {
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
    pub(super) fn node_relabelled(&mut self, name: &str, metrics: &OperatorMetrics) -> bool {
        if self.relabel(name) {
            tracing::info!(node = %name, labels = ?self.nodes[name].labels, "node labels changed");
            self.push(name, metrics);
            true
        } else {
            false
        }
    }

    /// Sends `name`'s pod set (when the cluster's pods are known and the node is connected).
    pub(super) fn push_pods(&mut self, name: &str, metrics: &OperatorMetrics) {
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

    pub(super) fn push_all(&mut self, metrics: &OperatorMetrics) {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for n in names {
            self.push(&n, metrics);
        }
    }

    /// Per targeted node: (node, its result for the current version).
    pub(super) fn node_results(&self, entry: &Entry) -> Vec<(&str, NodeResult)> {
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

    /// Per targeted node whose sensor demoted the current version by its CPU budget: (node,
    /// reason), sorted by node.
    pub(super) fn node_demotions(&self, entry: &Entry) -> Vec<(String, String)> {
        let key = &entry.desired.key;
        self.nodes
            .iter()
            .filter(|(_, n)| self.targets(entry, n))
            .filter_map(|(name, n)| match n.demotions.get(key) {
                Some((v, why)) if *v == entry.version => Some((name.clone(), why.clone())),
                _ => None,
            })
            .collect()
    }

    pub(super) fn rollup(&self, entry: &Entry) -> Rollup {
        let mut r = rollup_of(entry.desired.generation, &self.node_results(entry));
        r.rollout = entry.rollout.as_ref().map(|r| r.view());
        r.budgeted = entry.desired.ir.cpu_budget.is_some();
        r.demoted = self.node_demotions(entry);
        r
    }

    pub(super) fn update_metrics(&self, metrics: &OperatorMetrics) {
        metrics.policy_nodes.clear();
        metrics.policy_rollout.clear();
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
            if let Some(r) = &entry.rollout {
                metrics
                    .policy_rollout
                    .get_or_create(&PolicyStageLabel {
                        policy: key.to_string(),
                        stage: r.stage.as_str().into(),
                    })
                    .set(1);
            }
        }
    }
}
