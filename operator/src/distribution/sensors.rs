//! The sensor side of the service: streams open (`connect`), answer (`report`) and close
//! (`disconnect`); `status` summarises them.

use super::*;

impl Distribution {
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
                demotions: HashMap::new(),
            },
        );
        state.relabel(&name);
        // A rollout waiting for its first targeted node picks its canaries now.
        state.advance_rollouts(&self.metrics);
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
                if report.demotion.is_empty() {
                    n.demotions.remove(&key);
                } else {
                    if n.demotions
                        .get(&key)
                        .is_none_or(|(_, why)| *why != report.demotion)
                    {
                        tracing::warn!(node = %node, policy = %key, "policy demoted by its CPU budget: {}", report.demotion);
                    }
                    n.demotions.insert(
                        key.clone(),
                        (report.version.clone(), report.demotion.clone()),
                    );
                }
            }
            _ => return,
        }
        let state = &mut *state;
        state.advance_rollouts(&self.metrics);
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
            state.advance_rollouts(&self.metrics);
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
                let demotions = state.node_demotions(e);
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
                    demoted: demotions.len() as u32,
                    rollout: e.rollout.as_ref().map(|r| {
                        let view = r.view();
                        pb::RolloutStatus {
                            stage: view.stage.as_str().to_string(),
                            canary_nodes: view.canaries.clone(),
                            message: view.message(),
                        }
                    }),
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
                                demotion: demotions
                                    .iter()
                                    .find(|(n, _)| n == node)
                                    .map(|(_, why)| why.clone())
                                    .unwrap_or_default(),
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        pb::GetStatusResponse { nodes, policies }
    }

    /// Moves staged rollouts whose pause has elapsed on (called periodically).
    pub fn advance_rollouts(&self) {
        let mut state = self.lock();
        if state.advance_rollouts(&self.metrics) {
            self.tick(&state);
        }
    }

    /// Names of the connected nodes.
    pub fn nodes(&self) -> Vec<String> {
        self.lock().nodes.keys().cloned().collect()
    }
}
