//! The pods of this node, as told by whoever holds Kubernetes credentials: the sensor never
//! talks to the Kubernetes API itself.
//!
//! The store is fed through [`PodInventory::apply_pods`] (the full set of the node's pods),
//! [`PodInventory::upsert_pod`] and [`PodInventory::delete_pod`]. Today the gRPC service
//! `vigil.sensor.v1.PodInventory` (see [`crate::k8s::pod_api`]) calls them; the operator's
//! policy-sync stream drives the same store with the same calls.
//!
//! Containers are found by id: events carry the first 31 characters of the container id from
//! the process's cgroup (see [`crate::process::container`]) and the store indexes containers by the same
//! prefix. Each container's cgroup id (the inode of its cgroup directory, what
//! `bpf_get_current_cgroup_id()` returns) is looked up in the cgroup v2 tree when the pod
//! arrives, and learnt from exec records of containers whose cgroup appeared later; scoped
//! policies (podSelector, containerSelector, TracingPolicyNamespaced) are lowered to these ids.
//! Listeners registered with [`PodInventory::on_change`] run after every change, outside the
//! store's lock.
//!
//! The store also keeps the cgroup ids of every container of the node, whether the inventory
//! knows its pod or not ([`PodInventory::container_cgroups`]): a process in none of them is a
//! host process (`hostSelector`). They come from the pods' containers, from exec records of
//! processes in container-named cgroups ([`PodInventory::note_cgroup`]) and from walks of the
//! cgroup tree ([`PodInventory::rescan_containers`], at start and periodically). Entries of
//! cgroups that are gone are dropped when their pod is deleted (if their directory is known)
//! and at the next walk; the set holds at most [`MAX_CONTAINER_CGROUPS`]. Listeners registered
//! with [`PodInventory::on_containers_change`] run after it changes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use vigil_api::events;
use vigil_api::policy::ir;
use vigil_api::wire::pod::{Container, Pod};
use vigil_sensor_bpf::abi;

use crate::process::container::{self, DOCKER_ID_LEN};

/// Most container cgroups kept: the size of the kernel's set (`vigil_containers`).
pub const MAX_CONTAINER_CGROUPS: usize = abi::MAX_CONTAINERS;

/// The pseudo-label through which a podSelector matches the pod's namespace, as in Tetragon (a
/// cluster-wide TracingPolicy can select pods by namespace). Seen by selectors only: it is not
/// one of the pod's labels in events.
pub const POD_NAMESPACE_LABEL: &str = "k8s:io.kubernetes.pod.namespace";

/// What the sensor makes of an inventory pod ([`vigil_api::wire::pod::Pod`]) in its events.
pub trait EventPod {
    /// The event's `pod` for container `index`, with the process's pid inside the container.
    fn event_pod(&self, index: usize, pid: Option<u32>) -> events::Pod;
}

impl EventPod for Pod {
    fn event_pod(&self, index: usize, pid: Option<u32>) -> events::Pod {
        let container = self.containers.get(index).map(|c| events::Container {
            id: c.id.clone(),
            name: c.name.clone(),
            image: (!c.image.is_empty() || !c.image_id.is_empty()).then(|| events::Image {
                id: c.image_id.clone(),
                name: c.image.clone(),
            }),
            start_time: c.start_time.clone(),
            pid,
            maybe_exec_probe: false,
            security_context: c
                .privileged
                .then_some(events::SecurityContext { privileged: true }),
        });
        events::Pod {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            container,
            pod_labels: self.labels.clone(),
            workload: self.workload.clone(),
            workload_kind: self.workload_kind.clone(),
            pod_annotations: self.annotations.clone(),
        }
    }
}

/// Whether `labels` satisfy every requirement of `sel` (Kubernetes label selector semantics).
pub fn selector_matches(sel: &ir::LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    sel.requirements.iter().all(|r| {
        let v = labels.get(&r.key);
        match r.operator() {
            ir::LabelOperator::In => v.is_some_and(|v| r.values.contains(v)),
            ir::LabelOperator::NotIn => !v.is_some_and(|v| r.values.contains(v)),
            ir::LabelOperator::Exists => v.is_some(),
            ir::LabelOperator::DoesNotExist => v.is_none(),
            ir::LabelOperator::Unspecified => false,
        }
    })
}

/// `sel` the way `kubectl` writes selectors (`app=web,tier in (a,b),!legacy`), for messages.
pub fn describe_selector(sel: &ir::LabelSelector) -> String {
    sel.requirements
        .iter()
        .map(|r| {
            let values = r.values.join(",");
            match r.operator() {
                ir::LabelOperator::In if r.values.len() == 1 => format!("{}={values}", r.key),
                ir::LabelOperator::In => format!("{} in ({values})", r.key),
                ir::LabelOperator::NotIn => format!("{} notin ({values})", r.key),
                ir::LabelOperator::Exists => r.key.clone(),
                ir::LabelOperator::DoesNotExist => format!("!{}", r.key),
                ir::LabelOperator::Unspecified => format!("{} ?", r.key),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What a scoped policy applies to (absent parts: no restriction).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkloadScope {
    /// TracingPolicyNamespaced: only pods of this namespace.
    pub namespace: Option<String>,
    pub pod_selector: Option<ir::LabelSelector>,
    /// Matched against `{name: <container name>}`, as Tetragon does.
    pub container_selector: Option<ir::LabelSelector>,
}

impl WorkloadScope {
    pub fn matches(&self, pod: &Pod, c: &Container) -> bool {
        if self
            .namespace
            .as_ref()
            .is_some_and(|ns| *ns != pod.namespace)
        {
            return false;
        }
        if let Some(sel) = &self.pod_selector {
            let matched = if sel
                .requirements
                .iter()
                .any(|r| r.key == POD_NAMESPACE_LABEL)
            {
                let mut labels = pod.labels.clone();
                labels.insert(POD_NAMESPACE_LABEL.to_string(), pod.namespace.clone());
                selector_matches(sel, &labels)
            } else {
                selector_matches(sel, &pod.labels)
            };
            if !matched {
                return false;
            }
        }
        if let Some(sel) = &self.container_selector {
            let labels = BTreeMap::from([("name".to_string(), c.name.clone())]);
            if !selector_matches(sel, &labels) {
                return false;
            }
        }
        true
    }
}

#[derive(Default)]
struct State {
    pods: HashMap<String, Arc<Pod>>,
    /// 31-character container id prefix → (pod, container index).
    by_container: HashMap<String, (Arc<Pod>, usize)>,
    /// Full container id → cgroup id, for containers of known pods whose cgroup was found.
    cgroups: HashMap<String, u64>,
    /// Containers of deleted pods, oldest first, still named in events for a short while (the
    /// exits of a pod's processes can trail its deletion). Never part of a policy scope.
    gone: VecDeque<(Instant, String, Arc<Pod>, usize)>,
}

/// One container cgroup of the node.
struct SeenCgroup {
    /// Its directory, when it was found in the tree (exec records name only the last part).
    path: Option<PathBuf>,
    /// When it was last found or reported by an exec record.
    seen: Instant,
}

/// The node's container cgroups learnt from exec records and walks of the cgroup tree (the
/// pods' own are in [`State::cgroups`]).
#[derive(Default)]
struct ContainerCgroups {
    ids: HashMap<u64, SeenCgroup>,
    /// A cgroup was refused for want of room; warned once until there is room again.
    full: bool,
}

/// How long, and how many, containers of deleted pods keep naming their pod in events.
pub const GONE_GRACE: Duration = Duration::from_secs(30);
pub const GONE_MAX: usize = 1024;

type Listener = Arc<dyn Fn() + Send + Sync>;

/// The node's pods (see the module documentation).
pub struct PodInventory {
    state: RwLock<State>,
    cgroup_root: PathBuf,
    listeners: Mutex<Vec<Listener>>,
    /// Its own lock: exec records update it from the event path.
    containers: Mutex<ContainerCgroups>,
    container_listeners: Mutex<Vec<Listener>>,
    /// A walk of the cgroup tree is running (a second one waits for the next turn).
    scanning: AtomicBool,
    /// Set by the first update: from then on events of unknown containers wait for their pod.
    active: AtomicBool,
    generation: AtomicU64,
}

impl std::fmt::Debug for PodInventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodInventory")
            .field("pods", &self.len())
            .finish_non_exhaustive()
    }
}

/// The prefix events carry and the store is indexed by.
fn short(id: &str) -> &str {
    &id[..id.len().min(DOCKER_ID_LEN)]
}

impl PodInventory {
    /// A store resolving cgroups under `cgroup_root` (the cgroup v2 mount, `/sys/fs/cgroup`).
    pub fn new(cgroup_root: impl Into<PathBuf>) -> Self {
        PodInventory {
            state: RwLock::new(State::default()),
            cgroup_root: cgroup_root.into(),
            listeners: Mutex::new(Vec::new()),
            containers: Mutex::new(ContainerCgroups::default()),
            container_listeners: Mutex::new(Vec::new()),
            scanning: AtomicBool::new(false),
            active: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` after every change (outside the store's lock; `f` may read the store).
    pub fn on_change(&self, f: impl Fn() + Send + Sync + 'static) {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(f));
    }

    /// Runs `f` after every change of [`PodInventory::container_cgroups`] (outside the locks).
    pub fn on_containers_change(&self, f: impl Fn() + Send + Sync + 'static) {
        self.container_listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(f));
    }

    fn changed(&self) {
        self.active.store(true, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        // The pods' cgroups are part of the container set: it may have changed too. Told
        // first, so a container that joins a policy's scope is no longer a host process.
        self.containers_changed();
        let listeners: Vec<Listener> = self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for l in listeners {
            l();
        }
    }

    fn containers_changed(&self) {
        let listeners: Vec<Listener> = self
            .container_listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for l in listeners {
            l();
        }
    }

    fn containers(&self) -> std::sync::MutexGuard<'_, ContainerCgroups> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records container cgroups (id, directory if known); true when the set grew.
    fn add_container_cgroups(
        &self,
        found: impl IntoIterator<Item = (u64, Option<PathBuf>)>,
    ) -> bool {
        let now = Instant::now();
        let mut c = self.containers();
        let mut grew = false;
        for (id, path) in found {
            if id == 0 {
                continue;
            }
            if let Some(e) = c.ids.get_mut(&id) {
                e.seen = now;
                if path.is_some() {
                    e.path = path;
                }
                continue;
            }
            if c.ids.len() >= MAX_CONTAINER_CGROUPS {
                if !c.full {
                    // Its processes count as host processes for hostSelector until room is made.
                    tracing::warn!(
                        cgroup_id = id,
                        "{MAX_CONTAINER_CGROUPS} container cgroups known: no room for more"
                    );
                    c.full = true;
                }
                continue;
            }
            c.ids.insert(id, SeenCgroup { path, seen: now });
            grew = true;
        }
        grew
    }

    /// Drops the entries of `ids` whose directory is known and gone (or is another cgroup now);
    /// true when any was dropped. Entries without a known directory wait for the next walk.
    fn drop_gone_cgroups(&self, ids: &[u64]) -> bool {
        if ids.is_empty() {
            return false;
        }
        let mut c = self.containers();
        let before = c.ids.len();
        for id in ids {
            let gone = c
                .ids
                .get(id)
                .and_then(|e| e.path.as_ref())
                .is_some_and(|p| std::fs::metadata(p).map(|m| m.ino() != *id).unwrap_or(true));
            if gone {
                c.ids.remove(id);
            }
        }
        if c.ids.len() < MAX_CONTAINER_CGROUPS {
            c.full = false;
        }
        c.ids.len() != before
    }

    /// Walks the cgroup tree for containers' cgroups (and the cgroups below them): adds those
    /// not known yet and drops those no longer there. Blocking; run at start and periodically.
    /// A call while another walk runs returns at once.
    pub fn rescan_containers(&self) {
        if self.scanning.swap(true, Ordering::AcqRel) {
            return;
        }
        let started = Instant::now();
        let found = container::scan_container_cgroups(&self.cgroup_root, MAX_CONTAINER_CGROUPS);
        let dropped = {
            let mut c = self.containers();
            let before = c.ids.len();
            // What was reported while the walk ran may be in a part of the tree it had passed.
            c.ids
                .retain(|id, e| found.contains_key(id) || e.seen >= started);
            if c.ids.len() < MAX_CONTAINER_CGROUPS {
                c.full = false;
            }
            c.ids.len() != before
        };
        let grew = self.add_container_cgroups(found.into_iter().map(|(id, p)| (id, Some(p))));
        self.scanning.store(false, Ordering::Release);
        if dropped || grew {
            self.containers_changed();
        }
    }

    /// The cgroup ids of the node's containers: the known pods' and every other container
    /// cgroup seen (see the module documentation).
    pub fn container_cgroups(&self) -> BTreeSet<u64> {
        let mut set: BTreeSet<u64> = self.read().cgroups.values().copied().collect();
        set.extend(self.containers().ids.keys().copied());
        set
    }

    /// Whether any inventory was ever received (events wait for pods only then).
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Counts changes; a reader can tell whether anything changed since it last looked.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Replaces the whole inventory with `pods` (the node's full set).
    pub fn apply_pods(&self, pods: Vec<Pod>) {
        let cgroups = {
            let mut st = self.write();
            st.pods = pods
                .into_iter()
                .map(|p| (p.uid.clone(), Arc::new(normalize(p))))
                .collect();
            self.reindex(&mut st)
        };
        self.track(cgroups);
        self.changed();
    }

    /// Adds or replaces one pod (by uid).
    pub fn upsert_pod(&self, pod: Pod) {
        let cgroups = {
            let mut st = self.write();
            st.pods.insert(pod.uid.clone(), Arc::new(normalize(pod)));
            self.reindex(&mut st)
        };
        self.track(cgroups);
        self.changed();
    }

    /// Removes a pod; false when it was not known. Nothing of it remains.
    pub fn delete_pod(&self, uid: &str) -> bool {
        let (found, cgroups) = {
            let mut st = self.write();
            let found = st.pods.remove(uid).is_some();
            let cgroups = if found {
                self.reindex(&mut st)
            } else {
                Reindexed::default()
            };
            (found, cgroups)
        };
        self.track(cgroups);
        // An unknown uid still marks the inventory as in use.
        self.changed();
        found
    }

    /// Brings the node's container cgroups in line with a reindex: the pods' cgroups found are
    /// containers; those of containers that left the inventory are dropped if their directory
    /// is gone (a deleted pod's processes can outlive it: while its cgroup is there, they are
    /// still no host processes).
    fn track(&self, r: Reindexed) {
        self.add_container_cgroups(r.found.into_iter().map(|(id, p)| (id, Some(p))));
        self.drop_gone_cgroups(&r.dropped);
    }

    /// Rebuilds the container index, drops cgroups of containers that are gone and looks up
    /// the cgroups not yet known.
    fn reindex(&self, st: &mut State) -> Reindexed {
        let mut by_container = HashMap::new();
        for pod in st.pods.values() {
            for (i, c) in pod.containers.iter().enumerate() {
                if !c.id.is_empty() {
                    by_container.insert(short(&c.id).to_string(), (pod.clone(), i));
                }
            }
        }
        let ids: HashSet<String> = by_container
            .values()
            .map(|(p, i)| p.containers[*i].id.clone())
            .collect();
        let now = Instant::now();
        let old = std::mem::take(&mut st.by_container);
        for (short_id, (pod, i)) in old {
            if !by_container.contains_key(&short_id) {
                st.gone.push_back((now, short_id, pod, i));
            }
        }
        st.gone
            .retain(|(_, id, _, _)| !by_container.contains_key(id));
        while st.gone.len() > GONE_MAX {
            st.gone.pop_front();
        }
        let mut dropped = Vec::new();
        st.cgroups.retain(|id, cg| {
            let keep = ids.contains(id);
            if !keep {
                dropped.push(*cg);
            }
            keep
        });
        let missing: HashSet<String> = ids
            .into_iter()
            .filter(|id| !st.cgroups.contains_key(id))
            .collect();
        let mut found = Vec::new();
        for (id, (cg, path)) in container::find_cgroups(&self.cgroup_root, &missing) {
            st.cgroups.insert(id, cg);
            found.push((cg, path));
        }
        st.by_container = by_container;
        Reindexed { found, dropped }
    }

    /// An exec record told the cgroup id of container `full_id`: a container cgroup of the
    /// node (container listeners told when it is new), and remembered (and listeners told) when
    /// the container belongs to a known pod whose cgroup was not found yet.
    pub fn note_cgroup(&self, full_id: &str, cgroup_id: u64) {
        if cgroup_id == 0 {
            return;
        }
        if self.add_container_cgroups([(cgroup_id, None)]) {
            self.containers_changed();
        }
        {
            let st = self.read();
            let known = st
                .by_container
                .get(short(full_id))
                .is_some_and(|(p, i)| p.containers[*i].id == full_id);
            if !known || st.cgroups.get(full_id) == Some(&cgroup_id) {
                return;
            }
        }
        self.write().cgroups.insert(full_id.to_string(), cgroup_id);
        self.changed();
    }

    /// The pod and container index of a container, by the id (or its 31-character prefix) that
    /// events carry.
    pub fn lookup(&self, docker: &str) -> Option<(Arc<Pod>, usize)> {
        if docker.is_empty() {
            return None;
        }
        let st = self.read();
        if let Some(found) = st.by_container.get(short(docker)) {
            return Some(found.clone());
        }
        let fresh = Instant::now().checked_sub(GONE_GRACE);
        st.gone
            .iter()
            .rev()
            .filter(|(t, _, _, _)| fresh.is_none_or(|f| *t >= f))
            .find(|(_, id, _, _)| id == short(docker))
            .map(|(_, _, p, i)| (p.clone(), *i))
    }

    /// Forgets deleted pods' containers older than the grace period.
    pub fn expire(&self) {
        let Some(limit) = Instant::now().checked_sub(GONE_GRACE) else {
            return;
        };
        if self.read().gone.front().is_some_and(|(t, ..)| *t < limit) {
            self.write().gone.retain(|(t, ..)| *t >= limit);
        }
    }

    /// Number of pods.
    pub fn len(&self) -> usize {
        self.read().pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of containers (of known pods) whose cgroup id is known.
    pub fn containers_resolved(&self) -> usize {
        self.read().cgroups.len()
    }

    /// Every pod, sorted by namespace and name.
    pub fn pods(&self) -> Vec<Arc<Pod>> {
        let mut v: Vec<Arc<Pod>> = self.read().pods.values().cloned().collect();
        v.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        v
    }

    /// The cgroup ids of the containers `scope` applies to.
    pub fn scope_cgroups(&self, scope: &WorkloadScope) -> BTreeSet<u64> {
        let st = self.read();
        st.pods
            .values()
            .flat_map(|p| p.containers.iter().map(move |c| (p, c)))
            .filter(|(p, c)| scope.matches(p, c))
            .filter_map(|(_, c)| st.cgroups.get(&c.id).copied())
            .collect()
    }
}

/// Cgroups a reindex found (id, directory) and dropped (ids).
#[derive(Default)]
struct Reindexed {
    found: Vec<(u64, PathBuf)>,
    dropped: Vec<u64>,
}

fn normalize(mut p: Pod) -> Pod {
    for c in &mut p.containers {
        c.id = container::normalize_id(&c.id);
    }
    p
}

#[cfg(test)]
#[path = "pods_tests.rs"]
mod tests;
