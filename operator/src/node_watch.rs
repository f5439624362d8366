//! The cluster's Node labels, fed to distribution ([`NodeLabelFeed`]): a policy's
//! `spec.nodeSelector` is matched against the Node object's labels, so sensors need not repeat
//! them in `--node-labels` (the Helm chart cannot: one DaemonSet serves every node).
//!
//! Only names and labels are kept; each Node is dropped as soon as they are read.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::fleet::NodeLabelFeed;
use crate::kube_metrics::KubeMetrics;

fn name_and_labels(node: &Node) -> Option<(String, BTreeMap<String, String>)> {
    let name = node.metadata.name.clone().filter(|n| !n.is_empty())?;
    Some((name, node.metadata.labels.clone().unwrap_or_default()))
}

/// Watch every Node and feed its labels to `feed` until `stop` completes. A (re-)list replaces
/// everything known; errors are logged, counted (`vigil_operator_node_watch_errors_total`) and
/// retried with backoff.
pub async fn run_node_watcher(
    client: Client,
    feed: Arc<dyn NodeLabelFeed>,
    metrics: Arc<KubeMetrics>,
    stop: impl Future<Output = ()>,
) {
    let events = watcher(Api::<Node>::all(client), watcher::Config::default()).default_backoff();
    let mut listing: Option<Vec<(String, BTreeMap<String, String>)>> = None;
    crate::watch::drive(
        events,
        stop,
        "node",
        &metrics.node_watch_errors,
        &metrics,
        |event| match event {
            watcher::Event::Init => listing = Some(Vec::new()),
            watcher::Event::InitApply(n) => {
                if let Some(nl) = name_and_labels(&n) {
                    listing.get_or_insert_default().push(nl);
                }
            }
            watcher::Event::InitDone => {
                let nodes = listing.take().unwrap_or_default();
                tracing::info!(nodes = nodes.len(), "nodes listed");
                feed.replace_node_labels(nodes);
            }
            watcher::Event::Apply(n) => {
                if let Some((name, labels)) = name_and_labels(&n) {
                    feed.upsert_node_labels(name, labels);
                }
            }
            watcher::Event::Delete(n) => {
                if let Some(name) = n.metadata.name.as_deref() {
                    feed.delete_node_labels(name);
                }
            }
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{mock_client, reply, reply_stream};
    use serde_json::json;
    use std::sync::Mutex;
    use std::time::Duration;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl NodeLabelFeed for Recorder {
        fn replace_node_labels(&self, nodes: Vec<(String, BTreeMap<String, String>)>) {
            self.0.lock().unwrap().push(format!("replace {nodes:?}"));
        }
        fn upsert_node_labels(&self, node: String, labels: BTreeMap<String, String>) {
            self.0
                .lock()
                .unwrap()
                .push(format!("upsert {node} {labels:?}"));
        }
        fn delete_node_labels(&self, node: &str) {
            self.0.lock().unwrap().push(format!("delete {node}"));
        }
    }

    fn node(name: &str, zone: &str) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Node",
               "metadata": {"name": name, "labels": {"zone": zone}, "resourceVersion": "1"}})
    }

    #[tokio::test]
    async fn lists_then_follows_relabels_and_deletions() {
        let (client, mut api) = mock_client();
        let feed = Arc::new(Recorder::default());
        let metrics = Arc::new(KubeMetrics::new());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run_node_watcher(
            client,
            feed.clone(),
            metrics.clone(),
            async move {
                let _ = stop_rx.await;
            },
        ));
        let (call, send) = api.next().await;
        assert_eq!(call.path(), "/api/v1/nodes");
        reply(
            send,
            200,
            &json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": "10"},
                    "items": [node("n1", "a"), node("n2", "b")]}),
        );
        let (call, send) = api.next().await;
        assert!(call.query().contains("watch=true"), "{}", call.uri);
        let events = reply_stream(send);
        events
            .unbounded_send(json!({"type": "MODIFIED", "object": node("n2", "c")}))
            .unwrap();
        events
            .unbounded_send(json!({"type": "DELETED", "object": node("n1", "a")}))
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while feed.0.lock().unwrap().len() < 3 {
            assert!(tokio::time::Instant::now() < deadline, "{:?}", feed.0);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            *feed.0.lock().unwrap(),
            [
                r#"replace [("n1", {"zone": "a"}), ("n2", {"zone": "b"})]"#,
                r#"upsert n2 {"zone": "c"}"#,
                "delete n1",
            ]
        );
        assert_eq!(metrics.node_watch_errors.get(), 0);
        stop_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the watcher stops")
            .unwrap();
    }
}
