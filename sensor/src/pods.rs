//! The pods of this node, as told by whoever holds Kubernetes credentials: the sensor never
//! talks to the Kubernetes API itself.
//!
//! The store is fed through [`PodInventory::apply_pods`] (the full set of the node's pods),
//! [`PodInventory::upsert_pod`] and [`PodInventory::delete_pod`]. Today the gRPC service
//! `vigil.sensor.v1.PodInventory` (see [`crate::pod_api`]) calls them; the operator's
//! policy-sync stream drives the same store with the same calls.
//!
//! Containers are found by id: events carry the first 31 characters of the container id from
//! the process's cgroup (see [`crate::container`]) and the store indexes containers by the same
//! prefix. Each container's cgroup id (the inode of its cgroup directory, what
//! `bpf_get_current_cgroup_id()` returns) is looked up in the cgroup v2 tree when the pod
//! arrives, and learnt from exec records of containers whose cgroup appeared later; scoped
//! policies (podSelector, containerSelector, TracingPolicyNamespaced) are lowered to these ids.
//! Listeners registered with [`PodInventory::on_change`] run after every change, outside the
//! store's lock.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use vigil_api::events;
use vigil_api::policy::ir;

use crate::container::{self, DOCKER_ID_LEN};

/// One container of a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Container {
    /// Full id, without the runtime prefix (see [`container::normalize_id`]).
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_id: String,
    /// RFC 3339.
    pub start_time: String,
    pub privileged: bool,
}

/// One pod of this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub workload: String,
    pub workload_kind: String,
    pub containers: Vec<Container>,
}

impl Pod {
    /// The event's `pod` for container `index`, with the process's pid inside the container.
    pub fn event_pod(&self, index: usize, pid: Option<u32>) -> events::Pod {
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
        if let Some(sel) = &self.pod_selector
            && !selector_matches(sel, &pod.labels)
        {
            return false;
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

/// How long, and how many, containers of deleted pods keep naming their pod in events.
pub const GONE_GRACE: Duration = Duration::from_secs(30);
pub const GONE_MAX: usize = 1024;

type Listener = Arc<dyn Fn() + Send + Sync>;

/// The node's pods (see the module documentation).
pub struct PodInventory {
    state: RwLock<State>,
    cgroup_root: PathBuf,
    listeners: Mutex<Vec<Listener>>,
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

    fn changed(&self) {
        self.active.store(true, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        let listeners: Vec<Listener> = self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for l in listeners {
            l();
        }
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
        {
            let mut st = self.write();
            st.pods = pods
                .into_iter()
                .map(|p| (p.uid.clone(), Arc::new(normalize(p))))
                .collect();
            self.reindex(&mut st);
        }
        self.changed();
    }

    /// Adds or replaces one pod (by uid).
    pub fn upsert_pod(&self, pod: Pod) {
        {
            let mut st = self.write();
            st.pods.insert(pod.uid.clone(), Arc::new(normalize(pod)));
            self.reindex(&mut st);
        }
        self.changed();
    }

    /// Removes a pod; false when it was not known. Nothing of it remains.
    pub fn delete_pod(&self, uid: &str) -> bool {
        let found = {
            let mut st = self.write();
            let found = st.pods.remove(uid).is_some();
            if found {
                self.reindex(&mut st);
            }
            found
        };
        // An unknown uid still marks the inventory as in use.
        self.changed();
        found
    }

    /// Rebuilds the container index, drops cgroups of containers that are gone and looks up
    /// the cgroups not yet known.
    fn reindex(&self, st: &mut State) {
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
        st.cgroups.retain(|id, _| ids.contains(id));
        let missing: HashSet<String> = ids
            .into_iter()
            .filter(|id| !st.cgroups.contains_key(id))
            .collect();
        st.cgroups
            .extend(container::find_cgroups(&self.cgroup_root, &missing));
        st.by_container = by_container;
    }

    /// An exec record told the cgroup id of container `full_id`: remembered (and listeners
    /// told) when the container belongs to a known pod whose cgroup was not found yet.
    pub fn note_cgroup(&self, full_id: &str, cgroup_id: u64) {
        if cgroup_id == 0 {
            return;
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

fn normalize(mut p: Pod) -> Pod {
    for c in &mut p.containers {
        c.id = container::normalize_id(&c.id);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    pub const ID_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa0123456789abcdef0123456789abcdef";
    pub const ID_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb0123456789abcdef0123456789abcdef";

    fn pod(ns: &str, name: &str, uid: &str, labels: &[(&str, &str)], ids: &[&str]) -> Pod {
        Pod {
            namespace: ns.into(),
            name: name.into(),
            uid: uid.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            containers: ids
                .iter()
                .enumerate()
                .map(|(i, id)| Container {
                    id: format!("containerd://{id}"),
                    name: format!("c{i}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn req(key: &str, op: ir::LabelOperator, values: &[&str]) -> ir::LabelRequirement {
        ir::LabelRequirement {
            key: key.into(),
            operator: op as i32,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn selectors_follow_kubernetes_semantics() {
        use ir::LabelOperator::*;
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let sel = |r: Vec<ir::LabelRequirement>| ir::LabelSelector { requirements: r };
        assert!(selector_matches(&sel(vec![]), &labels));
        assert!(selector_matches(
            &sel(vec![req("app", In, &["web", "x"])]),
            &labels
        ));
        assert!(!selector_matches(
            &sel(vec![req("app", NotIn, &["web"])]),
            &labels
        ));
        assert!(selector_matches(
            &sel(vec![req("tier", NotIn, &["a"])]),
            &labels
        ));
        assert!(selector_matches(
            &sel(vec![req("app", Exists, &[])]),
            &labels
        ));
        assert!(!selector_matches(
            &sel(vec![req("app", DoesNotExist, &[])]),
            &labels
        ));
    }

    #[test]
    fn lookup_by_prefix_and_delete_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let inv = PodInventory::new(root.path());
        let calls = Arc::new(AtomicU64::new(0));
        let c = calls.clone();
        inv.on_change(move || {
            c.fetch_add(1, Ordering::Relaxed);
        });
        assert!(!inv.is_active());
        inv.upsert_pod(pod("default", "xwing", "u1", &[("app", "x")], &[ID_A]));
        assert!(inv.is_active());
        let (p, i) = inv.lookup(&ID_A[..31]).unwrap();
        assert_eq!(
            (p.name.as_str(), p.containers[i].id.as_str()),
            ("xwing", ID_A)
        );
        let ev = p.event_pod(i, Some(1));
        assert_eq!(ev.container.as_ref().unwrap().id, ID_A);
        assert_eq!(ev.container.as_ref().unwrap().pid, Some(1));
        assert!(inv.delete_pod("u1"));
        // Events trailing the deletion still name the pod; scopes never see it again.
        assert_eq!(inv.lookup(&ID_A[..31]).unwrap().0.name, "xwing");
        assert!(inv.scope_cgroups(&WorkloadScope::default()).is_empty());
        inv.write().gone[0].0 = Instant::now() - GONE_GRACE - Duration::from_secs(1);
        assert!(inv.lookup(&ID_A[..31]).is_none());
        inv.expire();
        assert!(inv.read().gone.is_empty());
        assert!(!inv.delete_pod("u1"));
        assert_eq!(inv.len(), 0);
        assert_eq!(calls.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn set_replaces_and_scopes_resolve_cgroups() {
        let root = tempfile::tempdir().unwrap();
        let dir_a = root
            .path()
            .join(format!("k.slice/cri-containerd-{ID_A}.scope"));
        let dir_b = root.path().join(format!("k.slice/crio-{ID_B}.scope"));
        std::fs::create_dir_all(&dir_a).unwrap();
        std::fs::create_dir_all(&dir_b).unwrap();
        let ino = |d: &std::path::Path| std::fs::metadata(d).unwrap().ino();
        let inv = PodInventory::new(root.path());
        inv.apply_pods(vec![
            pod("default", "a", "ua", &[("app", "a")], &[ID_A]),
            pod("prod", "b", "ub", &[("app", "b")], &[ID_B]),
        ]);
        assert_eq!(inv.containers_resolved(), 2);
        let ns = WorkloadScope {
            namespace: Some("default".into()),
            ..Default::default()
        };
        assert_eq!(inv.scope_cgroups(&ns), BTreeSet::from([ino(&dir_a)]));
        let sel = WorkloadScope {
            pod_selector: Some(ir::LabelSelector {
                requirements: vec![req("app", ir::LabelOperator::In, &["b"])],
            }),
            ..Default::default()
        };
        assert_eq!(inv.scope_cgroups(&sel), BTreeSet::from([ino(&dir_b)]));
        let cont = WorkloadScope {
            container_selector: Some(ir::LabelSelector {
                requirements: vec![req("name", ir::LabelOperator::In, &["c0"])],
            }),
            ..Default::default()
        };
        assert_eq!(inv.scope_cgroups(&cont).len(), 2);
        // The full set replaces: b is gone, and so is its cgroup.
        inv.apply_pods(vec![pod("default", "a", "ua", &[("app", "a")], &[ID_A])]);
        assert!(inv.scope_cgroups(&sel).is_empty());
        assert_eq!(inv.containers_resolved(), 1);
        // A cgroup learnt from an exec record.
        std::fs::remove_dir(&dir_b).unwrap();
        inv.apply_pods(vec![pod("prod", "c", "uc", &[], &[ID_B])]);
        assert_eq!(inv.containers_resolved(), 0);
        inv.note_cgroup(ID_B, 4242);
        assert_eq!(
            inv.scope_cgroups(&WorkloadScope::default()),
            BTreeSet::from([4242])
        );
    }
}
