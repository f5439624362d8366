//! In: compiled policies and the add/delete/enable/mode calls of the policy sources.
//! Out: published policies (slots, map entries, attachments) and their status.
//!
//! The policy engine: loads, unloads, switches and reports policies.
//!
//! Adding a policy writes map entries (hook configuration, value sets) and attaches a generic
//! program only where no policy is attached yet: hooks of many policies on one attach point
//! share one program run. A policy becomes active in one step (its `enabled` flag) after all of
//! its hooks are in place, and is switched off the same way before anything is removed.
//!
//! Loading a program is slow (the kernel verifies it), so a policy is added in three steps:
//! lowered and checked under the engine's lock; its programs loaded without it (only the
//! program lock, and one add at a time); published under the lock again. Lists, toggles,
//! deletes, status and the pod inventory never wait for a verification.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use vigil_api::policy::PolicyIr;
use vigil_api::policy::ir::PolicyMode as IrMode;
use vigil_sensor_bpf::abi::{self, PolicyCfg};

use super::attach::{AttachKey, AttachPoints};
use super::kernel::{ContainerMap, HookBpf, LiveKernel};
use super::lower::{self, SetEntries, SetIds};
use super::meta::HookRegistry;
use super::programs::{HookPrograms, Instance, ProgramStats, StatsHandle};
use super::slots::Slots;

mod budget;
mod control;
mod handoff;
mod publish;

use crate::error::SensorError;
use crate::k8s::pods::{PodInventory, WorkloadScope};
use crate::policy::control::{
    HookStatus, PolicyControl, PolicyInfo, PolicyKey, PolicyMode, PolicyOrigin, PolicyStats,
};
pub use budget::{Demotion, DemotionAction};
pub use handoff::TakenOver;
use publish::sync_scope;

struct LoadedHook {
    /// Position in the lowered policy's hooks.
    index: usize,
    slot: u32,
    key: AttachKey,
    /// A return hook (its point routes the call's end too).
    ret: bool,
    sets: SetEntries,
    status: HookStatus,
}

/// A scoped policy: its cgroup-id set in `vigil_ints`, kept equal to the cgroups of the pods
/// and containers its workload scope selects, and whether host processes are in scope.
struct Scope {
    /// 0 when no container is selected (hostSelector only).
    set: u32,
    workload: Option<WorkloadScope>,
    host: bool,
    /// `spec.hostSelector`: `host` follows it when the node's labels change.
    host_selector: Option<vigil_api::policy::ir::LabelSelector>,
    cgroups: BTreeSet<u64>,
}

impl Scope {
    fn flags(&self) -> u32 {
        abi::pol_scope::SCOPED | if self.host { abi::pol_scope::HOST } else { 0 }
    }
}

/// The policy's `vigil_policies` entry.
fn policy_cfg(enabled: bool, mode: PolicyMode, scope: Option<&Scope>) -> PolicyCfg {
    PolicyCfg {
        enabled: enabled as u32,
        mode: mode_abi(mode),
        scope_set: scope.map(|s| s.set).unwrap_or(0),
        scope_flags: scope.map(Scope::flags).unwrap_or(0),
    }
}

/// `vigil_containers`, kept equal to the pod inventory's container cgroups. Under a lock of its
/// own: exec records of new containers update it from the event path, which must not wait
/// behind a policy load.
#[derive(Default)]
struct Containers {
    map: Option<ContainerMap>,
    /// What the map holds.
    ids: BTreeSet<u64>,
    pods: Option<Arc<PodInventory>>,
}

struct Policy {
    id: u64,
    slot: u32,
    scope: Option<Scope>,
    origin: PolicyOrigin,
    mode: PolicyMode,
    enabled: bool,
    hooks: Vec<LoadedHook>,
    failed: Vec<HookStatus>,
    /// Hooks that lowered but did not load (position, reason): kept for the next sensor.
    load_failures: Vec<(usize, String)>,
    error: String,
    /// The compiled policy (protobuf) and the value-set id its lowering started from: what the
    /// next sensor needs to lower it again identically.
    ir: Vec<u8>,
    ids_start: u32,
    /// The CPU budget and its window (`None`: no budget).
    meter: Option<budget::Meter>,
    /// Why the budget demoted the policy, until someone switches it back.
    demotion: Option<String>,
}

struct Inner {
    bpf: HookBpf,
    kernel: LiveKernel,
    ids: SetIds,
    policies: BTreeMap<PolicyKey, Policy>,
    policy_slots: Slots,
    hook_slots: Slots,
    points: AttachPoints,
    /// Policies between the first and the last step of their add.
    loading: BTreeSet<PolicyKey>,
    /// Taken over from the previous sensor and not claimed yet by a source of this one (see
    /// `handoff.rs`).
    unclaimed: BTreeSet<PolicyKey>,
    /// Where the state for the next sensor is written (`None`: nobody takes over).
    state_path: Option<std::path::PathBuf>,
    generation: u32,
    next_id: u64,
    pods: Option<Arc<PodInventory>>,
    /// `--node-labels`: matched by hostSelector and nodeSelector. Fixed for the sensor's life.
    node_labels: BTreeMap<String, String>,
}

/// The engine behind [`PolicyControl`]. The policies' state sits behind one lock, held only
/// briefly. The node's container cgroups have their own, since exec records of new containers
/// update them from the event path. Program loads hold `programs` (taken after `inner` when
/// both are needed) and `adding`, never `inner`.
pub struct Engine {
    inner: Mutex<Inner>,
    containers: Mutex<Containers>,
    programs: Mutex<HookPrograms>,
    program_stats: StatsHandle,
    /// One policy add at a time.
    adding: Mutex<()>,
    registry: Arc<HookRegistry>,
    /// Counts demotions (see `budget.rs`); the operator client watches it.
    demotions: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

fn mode_of(ir: &PolicyIr) -> PolicyMode {
    match ir.mode() {
        IrMode::Monitor => PolicyMode::Monitor,
        _ => PolicyMode::Enforce,
    }
}

fn mode_abi(m: PolicyMode) -> u32 {
    match m {
        PolicyMode::Enforce => abi::MODE_ENFORCE,
        PolicyMode::Monitor => abi::MODE_MONITOR,
    }
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Engine {
    pub fn new(
        (mut bpf, programs): (HookBpf, HookPrograms),
        kernel: LiveKernel,
        registry: Arc<HookRegistry>,
    ) -> Self {
        let containers = Containers {
            map: bpf.take_containers(),
            ..Default::default()
        };
        let cookies = kernel.features.cookie;
        Engine {
            containers: Mutex::new(containers),
            program_stats: programs.stats_handle(),
            programs: Mutex::new(programs),
            adding: Mutex::new(()),
            demotions: tokio::sync::watch::Sender::new(0),
            inner: Mutex::new(Inner {
                bpf,
                kernel,
                ids: SetIds::default(),
                policies: BTreeMap::new(),
                policy_slots: Slots::new(abi::MAX_POLICIES, 0),
                hook_slots: Slots::new(abi::MAX_HOOKS, 0),
                points: AttachPoints::new(cookies),
                loading: BTreeSet::new(),
                unclaimed: BTreeSet::new(),
                state_path: None,
                generation: 0,
                next_id: 1,
                pods: None,
                node_labels: BTreeMap::new(),
            }),
            registry,
        }
    }

    /// This node's labels (`--node-labels`), for hostSelector and nodeSelector; set before any
    /// policy is loaded.
    pub fn with_node_labels(self, labels: BTreeMap<String, String>) -> Self {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .node_labels = labels;
        self
    }

    /// The node's labels changed at runtime (the operator knows the Node object's): every
    /// hostSelector is matched again, and a policy whose host processes came into or went out
    /// of scope is updated in the kernel at once. Policies already loaded are not re-checked
    /// against their nodeSelector (the operator sends a node only what selects it).
    pub fn set_node_labels(&self, labels: BTreeMap<String, String>) {
        let mut inner = self.lock();
        if inner.node_labels == labels {
            return;
        }
        let mut changed = Vec::new();
        for (key, p) in inner.policies.iter_mut() {
            if let Some(sc) = p.scope.as_mut()
                && let Some(sel) = &sc.host_selector
            {
                let host = crate::k8s::pods::selector_matches(sel, &labels);
                if host != sc.host {
                    sc.host = host;
                    changed.push(key.clone());
                }
            }
        }
        inner.node_labels = labels;
        for key in changed {
            match inner.set_cfg(&key) {
                Ok(()) => {
                    tracing::info!(policy = %key, "hostSelector re-evaluated for new node labels")
                }
                Err(e) => tracing::error!(policy = %key, "updating the host scope: {e}"),
            }
        }
        inner.persist();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        relock(&self.inner)
    }

    /// What every program load so far took (load time, verifier instruction count).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        relock(&self.program_stats).values().cloned().collect()
    }

    /// Scoped policies take their cgroup sets from `pods`, and follow it: every change of the
    /// inventory recomputes every scoped policy's set. The node's container cgroups (`vigil_containers`, what tells host processes apart)
    /// follow it too.
    pub fn follow_pods(self: &Arc<Self>, pods: Arc<PodInventory>) {
        self.lock().pods = Some(pods.clone());
        self.lock_containers().pods = Some(pods.clone());
        let weak = Arc::downgrade(self);
        pods.on_containers_change(move || {
            if let Some(engine) = weak.upgrade() {
                engine.sync_containers();
            }
        });
        let weak = Arc::downgrade(self);
        pods.on_change(move || {
            if let Some(engine) = weak.upgrade() {
                engine.refresh_scopes();
            }
        });
        self.sync_containers();
        self.refresh_scopes();
    }

    fn lock_containers(&self) -> std::sync::MutexGuard<'_, Containers> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the difference between `vigil_containers` and the inventory's container cgroups.
    fn sync_containers(&self) {
        let mut c = self.lock_containers();
        let Containers { map, ids, pods } = &mut *c;
        let (Some(map), Some(pods)) = (map.as_mut(), pods.as_ref()) else {
            return;
        };
        // Read under this lock: concurrent calls apply in turn, each the latest state.
        let want = pods.container_cgroups();
        for gone in ids.difference(&want).copied().collect::<Vec<_>>() {
            let _ = map.remove(&gone);
            ids.remove(&gone);
        }
        for new in want.difference(ids).copied().collect::<Vec<_>>() {
            if let Err(e) = map.insert(new, 1, 0) {
                // The inventory holds no more than the map's size: not expected.
                tracing::error!(cgroup_id = new, "writing vigil_containers: {e}");
                break;
            }
            ids.insert(new);
        }
    }

    /// Brings every scoped policy's cgroup set in line with the pod inventory.
    pub fn refresh_scopes(&self) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(pods) = inner.pods.clone() else {
            return;
        };
        for (key, p) in inner.policies.iter_mut() {
            if let Some(scope) = p.scope.as_mut()
                && let Some(workload) = &scope.workload
            {
                let want = pods.scope_cgroups(workload);
                if let Err(e) = sync_scope(&mut inner.bpf, scope, want) {
                    tracing::error!(policy = %key, "updating the workload scope: {e}");
                }
            }
        }
        inner.persist();
    }

    /// The cgroup ids a scoped policy currently applies to (`None`: not scoped or not loaded).
    pub fn scope_cgroups(&self, key: &PolicyKey) -> Option<BTreeSet<u64>> {
        let inner = self.lock();
        inner
            .policies
            .get(key)
            .and_then(|p| p.scope.as_ref().map(|s| s.cgroups.clone()))
    }

    /// Loads an already compiled policy (the operator path and the YAML path both end here).
    pub fn add_ir(&self, ir: PolicyIr, origin: PolicyOrigin) -> Result<PolicyInfo, SensorError> {
        let _one_at_a_time = relock(&self.adding);
        let plan = match self.plan(&ir, &origin)? {
            Planned::Load(plan) => plan,
            Planned::Claimed(info) => return Ok(info),
        };
        let key = plan.key.clone();
        let prepared = self.prepare(&plan);
        let mut inner = self.lock();
        inner.loading.remove(&key);
        let result = inner.publish(&ir, origin, plan, prepared, &self.programs, &self.registry);
        inner.persist();
        drop(inner);
        // Loads read the kernel's BTF and object files and free them again.
        crate::heap::release_free_memory();
        result
    }

    /// Step 1, under the engine lock: checks, lowering, ids for the per-point programs to load.
    fn plan(&self, ir: &PolicyIr, origin: &PolicyOrigin) -> Result<Planned, SensorError> {
        let mut inner = self.lock();
        let identity = ir.identity.clone().unwrap_or_default();
        let key = PolicyKey::new(&identity.name, &identity.namespace);
        let encoded = prost::Message::encode_to_vec(ir);
        let mut replaces = false;
        if inner.unclaimed.contains(&key) {
            // Taken over from the previous sensor: the same policy from the same source is
            // this sensor's now; a changed one replaces it without a gap.
            let p = &inner.policies[&key];
            if p.ir == encoded && p.origin == *origin {
                let info = inner.info(&key, p);
                inner.unclaimed.remove(&key);
                tracing::info!(policy = %key, "policy taken over from the previous sensor");
                return Ok(Planned::Claimed(info));
            }
            replaces = true;
        } else if inner.policies.contains_key(&key) || inner.loading.contains(&key) {
            return Err(SensorError::PolicyExists(key.to_string()));
        }
        let unloadable = |message: String| SensorError::PolicyUnloadable {
            policy: key.to_string(),
            message,
        };
        let inner = &mut *inner;
        // The operator sent it here because its nodeSelector selects this node, by labels the
        // operator knows (in Kubernetes, the Node's), which --node-labels need not repeat.
        if *origin != PolicyOrigin::Operator
            && let Some(why) = lower::node_selector_mismatch(ir, &inner.node_labels)
        {
            return Err(unloadable(why));
        }
        let ids_start = inner.ids.peek();
        let lowered = lower::lower(ir, &inner.kernel, &inner.node_labels, &mut inner.ids)
            .map_err(unloadable)?;
        let wanted = lowered.hooks.iter().filter(|h| h.is_ok()).count();
        if wanted > inner.hook_slots.available() {
            return Err(unloadable(format!(
                "needs {wanted} hook slots, {} of {} are free",
                inner.hook_slots.available(),
                abi::MAX_HOOKS
            )));
        }
        let cookies = inner.points.cookies();
        let mut shared = BTreeSet::new();
        let mut per_point: Vec<(AttachKey, Vec<&'static str>, u32)> = Vec::new();
        for h in lowered.hooks.iter().flatten() {
            let akey = AttachKey::of(&h.mechanism, h.return_probe);
            let (progs, instance) = akey.programs(cookies);
            if !instance {
                shared.extend(progs);
            } else if !inner.points.contains(&akey) && !per_point.iter().any(|(k, ..)| *k == akey) {
                match inner.points.reserve_id() {
                    Ok(id) => per_point.push((akey, progs, id)),
                    Err(_) => break, // the hook fails at publish, naming the limit
                }
            }
        }
        inner.loading.insert(key.clone());
        Ok(Planned::Load(Plan {
            key,
            lowered,
            shared,
            per_point,
            ir: encoded,
            ids_start,
            replaces,
        }))
    }

    /// Step 2, without the engine lock: the kernel verifies the programs the plan needs.
    fn prepare(&self, plan: &Plan) -> Prepared {
        let mut out = Prepared::default();
        {
            let mut programs = relock(&self.programs);
            for &name in &plan.shared {
                if let Err(e) = programs.ensure(name) {
                    tracing::error!(program = name, "{e}");
                    out.shared_errors.insert(name, e);
                }
            }
        }
        for (akey, progs, id) in &plan.per_point {
            let (pins, slow) = {
                let p = relock(&self.programs);
                (p.pins(), p.slow_load())
            };
            if let Some(d) = slow {
                std::thread::sleep(d);
            }
            match HookPrograms::load_instance(&pins, progs, *id, akey.lsm_hook()) {
                Ok((inst, timings)) => {
                    relock(&self.programs).record_instance(&timings);
                    out.instances.insert(akey.clone(), (*id, inst));
                }
                Err(e) => {
                    self.lock().points.release_id(*id);
                    out.point_errors.insert(akey.clone(), e);
                }
            }
        }
        out
    }

    /// Policy counters of every loaded policy (for metrics).
    pub fn stats(&self) -> Vec<(PolicyKey, PolicyStats)> {
        let inner = self.lock();
        inner
            .policies
            .iter()
            .map(|(k, p)| (k.clone(), inner.stats_of(p)))
            .collect()
    }

    /// Unloads every policy (shutdown).
    pub fn clear(&self) {
        let keys: Vec<PolicyKey> = self.lock().policies.keys().cloned().collect();
        for k in keys {
            let _ = self.delete(&k);
        }
    }
}

/// What step 1 of an add decided.
enum Planned {
    Load(Plan),
    /// A policy taken over from the previous sensor, unchanged: nothing to load.
    Claimed(PolicyInfo),
}

/// A policy to load.
struct Plan {
    key: PolicyKey,
    lowered: lower::Lowered,
    /// Shared programs the hooks need loaded.
    shared: BTreeSet<&'static str>,
    /// New per-point instances: their point, programs and reserved attach id.
    per_point: Vec<(AttachKey, Vec<&'static str>, u32)>,
    ir: Vec<u8>,
    ids_start: u32,
    /// It replaces the taken-over policy of the same name, which runs until it is in place.
    replaces: bool,
}

/// What step 2 of an add loaded, and what failed to.
#[derive(Default)]
struct Prepared {
    shared_errors: BTreeMap<&'static str, String>,
    instances: HashMap<AttachKey, (u32, Instance)>,
    point_errors: HashMap<AttachKey, String>,
}
