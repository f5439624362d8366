//! The cluster's pods, fed to distribution ([`PodFeed`]) so that every sensor learns the pods
//! of its node without talking to the API server itself.
//!
//! One watch on all pods of the cluster ([`run_pod_watcher`]). The operator sees every pod, so
//! no full `Pod` object is kept: each is turned into the little the sensors need
//! ([`pod_info`]) as it arrives and dropped; what remains is the set of known uids (for the
//! `vigil_operator_pods` gauge).
//!
//! # Workload rules
//!
//! The owning workload is derived from the pod alone (no further API calls, so no RBAC beyond
//! `list`/`watch` on pods), from its controller owner reference (`ownerReferences` entry with
//! `controller: true`, else the first entry):
//!
//! - a `ReplicaSet` whose name is `<name>-<pod-template-hash label>` was made by a Deployment:
//!   workload `<name>`, kind `Deployment` (the Deployment controller names its ReplicaSets this
//!   way and copies the hash label onto their pods);
//! - any other `ReplicaSet` (bare, or without the hash label): its name, kind `ReplicaSet`;
//! - any other owner (`StatefulSet`, `DaemonSet`, `Job`, `ReplicationController`, custom kinds):
//!   the owner's name and kind as they are; a CronJob's pods show their `Job`;
//! - no owner: the pod itself, kind `Pod`.
//!
//! Owners are matched by kind only (not API group).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, SecurityContext};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use vigil_api::wire::sensor_info::{PodContainer, PodInfo};

use crate::fleet::{NodePod, PodFeed};
use crate::kube_metrics::KubeMetrics;

/// The label the Deployment controller puts on its ReplicaSets' pods; the ReplicaSet's name ends
/// with `-<its value>`.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// What the sensors need of a scheduled pod, with the node it runs on.
///
/// `None` when the pod is not scheduled (no `spec.nodeName`: no sensor can see it yet) or has no
/// uid (pods are named by uid). See the module doc for how the workload is found.
pub fn pod_info(pod: &Pod) -> Option<NodePod> {
    let spec = pod.spec.as_ref()?;
    let node = spec.node_name.as_deref().filter(|n| !n.is_empty())?;
    let meta = &pod.metadata;
    let uid = meta.uid.as_deref().filter(|u| !u.is_empty())?;
    let name = meta.name.clone().unwrap_or_default();
    let (workload, workload_kind) = workload(pod, &name);

    // Every container of the spec, by name (names are unique across the three lists).
    let spec_containers: Vec<SpecContainer<'_>> =
        spec.containers
            .iter()
            .map(|c| SpecContainer::new(&c.name, c.image.as_deref(), c.security_context.as_ref()))
            .chain(spec.init_containers.iter().flatten().map(|c| {
                SpecContainer::new(&c.name, c.image.as_deref(), c.security_context.as_ref())
            }))
            .chain(spec.ephemeral_containers.iter().flatten().map(|c| {
                SpecContainer::new(&c.name, c.image.as_deref(), c.security_context.as_ref())
            }))
            .collect();
    let privileged = |name: &str| {
        spec_containers
            .iter()
            .any(|c| c.name == name && c.privileged)
    };

    let statuses: Vec<&ContainerStatus> = pod
        .status
        .iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
                .chain(s.ephemeral_container_statuses.iter().flatten())
        })
        .collect();
    let mut containers: Vec<PodContainer> = statuses
        .iter()
        .map(|s| PodContainer {
            id: strip_runtime(s.container_id.as_deref().unwrap_or_default()).to_string(),
            name: s.name.clone(),
            image: s.image.clone(),
            image_id: s.image_id.clone(),
            start_time: start_time(s),
            privileged: privileged(&s.name),
        })
        .collect();
    // Containers the kubelet has not reported yet: known by name and image, no id to match a
    // cgroup against until the next update.
    containers.extend(
        spec_containers
            .iter()
            .filter(|c| !statuses.iter().any(|s| s.name == c.name))
            .map(|c| PodContainer {
                id: String::new(),
                name: c.name.to_string(),
                image: c.image.unwrap_or_default().to_string(),
                image_id: String::new(),
                start_time: String::new(),
                privileged: c.privileged,
            }),
    );

    Some(NodePod {
        node: node.to_string(),
        pod: PodInfo {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name,
            uid: uid.to_string(),
            labels: to_map(meta.labels.as_ref()),
            annotations: to_map(meta.annotations.as_ref()),
            workload,
            workload_kind,
            containers,
        },
    })
}

/// A container of the pod spec (regular, init or ephemeral), as far as [`pod_info`] needs it.
struct SpecContainer<'a> {
    name: &'a str,
    image: Option<&'a str>,
    privileged: bool,
}

impl<'a> SpecContainer<'a> {
    fn new(name: &'a str, image: Option<&'a str>, security: Option<&SecurityContext>) -> Self {
        SpecContainer {
            name,
            image,
            privileged: security.and_then(|s| s.privileged) == Some(true),
        }
    }
}

/// `containerd://abc…` → `abc…` (any `<runtime>://` prefix: containerd, cri-o, docker, …), so
/// that ids compare equal to the ones the sensor finds in cgroup paths.
fn strip_runtime(id: &str) -> &str {
    id.split_once("://").map_or(id, |(_, rest)| rest)
}

/// RFC 3339 start of the running container, else of the terminated one, else empty.
fn start_time(status: &ContainerStatus) -> String {
    let state = status.state.as_ref();
    let running = state
        .and_then(|s| s.running.as_ref())
        .and_then(|r| r.started_at.as_ref());
    let terminated = state
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.started_at.as_ref());
    running
        .or(terminated)
        .map(|Time(t)| t.to_string())
        .unwrap_or_default()
}

/// The pod's workload and its kind, by the rules in the module doc.
fn workload(pod: &Pod, pod_name: &str) -> (String, String) {
    let meta = &pod.metadata;
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    let Some(owner) = owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first())
    else {
        return (pod_name.to_string(), "Pod".to_string());
    };
    if owner.kind == "ReplicaSet" {
        let hash = meta
            .labels
            .as_ref()
            .and_then(|l| l.get(POD_TEMPLATE_HASH))
            .filter(|h| !h.is_empty());
        let deployment = hash
            .and_then(|h| owner.name.strip_suffix(h.as_str()))
            .and_then(|rest| rest.strip_suffix('-'))
            .filter(|d| !d.is_empty());
        if let Some(deployment) = deployment {
            return (deployment.to_string(), "Deployment".to_string());
        }
    }
    (owner.name.clone(), owner.kind.clone())
}

fn to_map(m: Option<&BTreeMap<String, String>>) -> HashMap<String, String> {
    m.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Watch every pod of the cluster and feed the scheduled ones to `feed` until `stop` completes.
///
/// A (re-)list ends in [`PodFeed::replace_pods`] with the complete list, so that pods deleted
/// while the watch was down are dropped; in between, changes arrive one by one. Errors are
/// logged and counted (`vigil_operator_pod_watch_errors_total`), and the watcher retries with
/// kube-runtime's default backoff: this never gives up on its own.
pub async fn run_pod_watcher(
    client: Client,
    feed: Arc<dyn PodFeed>,
    metrics: Arc<KubeMetrics>,
    stop: impl Future<Output = ()>,
) {
    let events = watcher(Api::<Pod>::all(client), watcher::Config::default()).default_backoff();
    let mut state = PodWatch::new(feed, metrics.clone());
    crate::watch::drive(
        events,
        stop,
        "pod",
        &metrics.pod_watch_errors,
        &metrics,
        |e| {
            state.handle(e);
        },
    )
    .await;
}

/// The watcher's state between events: what `feed` was told, as uids.
struct PodWatch {
    feed: Arc<dyn PodFeed>,
    metrics: Arc<KubeMetrics>,
    /// Uids of the scheduled pods `feed` holds (for the gauge; no pod data).
    known: HashSet<String>,
    /// The (re-)list in progress, from `Init` to `InitDone`.
    listing: Option<Vec<NodePod>>,
}

impl PodWatch {
    fn new(feed: Arc<dyn PodFeed>, metrics: Arc<KubeMetrics>) -> Self {
        PodWatch {
            feed,
            metrics,
            known: HashSet::new(),
            listing: None,
        }
    }

    fn handle(&mut self, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Init => self.listing = Some(Vec::new()),
            watcher::Event::InitApply(pod) => {
                if let Some(p) = pod_info(&pod) {
                    self.listing.get_or_insert_default().push(p);
                }
            }
            watcher::Event::InitDone => {
                let pods = self.listing.take().unwrap_or_default();
                self.known = pods.iter().map(|p| p.pod.uid.clone()).collect();
                self.update_gauge();
                tracing::info!(pods = pods.len(), "pods listed");
                self.feed.replace_pods(pods);
            }
            watcher::Event::Apply(pod) => match pod_info(&pod) {
                Some(p) => {
                    self.known.insert(p.pod.uid.clone());
                    self.update_gauge();
                    self.feed.upsert_pod(p);
                }
                // Not (or no longer) scheduled: no node should have it.
                None => {
                    if let Some(uid) = pod.metadata.uid.as_deref().filter(|u| !u.is_empty()) {
                        self.delete(uid);
                    }
                }
            },
            watcher::Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid.as_deref().filter(|u| !u.is_empty()) {
                    self.delete(uid);
                }
            }
        }
    }

    fn delete(&mut self, uid: &str) {
        self.known.remove(uid);
        self.update_gauge();
        self.feed.delete_pod(uid);
    }

    fn update_gauge(&self) {
        self.metrics
            .pods
            .set(i64::try_from(self.known.len()).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
#[path = "pod_watch_tests.rs"]
mod tests;
