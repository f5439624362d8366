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

use vigil_api::policy::ir::PolicyMode as IrMode;
use vigil_api::policy::{PolicyIr, compile_yaml};
use vigil_sensor_bpf::abi::{self, HookCfg, PolicyCfg};

use super::attach::{AttachCx, AttachKey, AttachPoints};
use super::kernel::{ContainerMap, HookBpf, LiveKernel};
use super::lower::{self, LoweredHook, PolicyScope, SetEntries, SetIds};
use super::meta::HookRegistry;
use super::programs::{HookPrograms, Instance, ProgramStats, StatsHandle};
use super::slots::Slots;

mod handoff;
use crate::error::SensorError;
use crate::pods::{PodInventory, WorkloadScope};
use crate::policy_control::{
    HookStatus, PolicyControl, PolicyInfo, PolicyKey, PolicyMode, PolicyOrigin, PolicyState,
    PolicyStats,
};

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
                let host = crate::pods::selector_matches(sel, &labels);
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

impl Inner {
    /// Step 3 of an add, under the engine lock: slots, map entries, attachments, and the policy
    /// switched on in one write.
    fn publish(
        &mut self,
        ir: &PolicyIr,
        origin: PolicyOrigin,
        plan: Plan,
        mut prepared: Prepared,
        programs: &Mutex<HookPrograms>,
        registry: &HookRegistry,
    ) -> Result<PolicyInfo, SensorError> {
        let Plan {
            key,
            lowered,
            ir: encoded,
            ids_start,
            replaces,
            ..
        } = plan;
        let release = |inner: &mut Inner, prepared: &mut Prepared| {
            for (id, _) in prepared.instances.drain().map(|(_, v)| v) {
                inner.points.release_id(id);
            }
        };
        let unloadable = |message: String| SensorError::PolicyUnloadable {
            policy: key.to_string(),
            message,
        };
        let Some(slot) = self.policy_slots.alloc() else {
            release(self, &mut prepared);
            return Err(unloadable(format!(
                "all {} policy slots are in use",
                abi::MAX_POLICIES
            )));
        };
        let mode = mode_of(ir);
        self.bpf.reset_stats(slot);
        // The scope's set is filled before any hook can run.
        let mut scope = lowered.scope.map(|PolicyScope { workload, host }| Scope {
            set: if workload.is_some() {
                self.ids.alloc(1)
            } else {
                0
            },
            workload,
            host,
            host_selector: ir.scope.as_ref().and_then(|s| s.host_selector.clone()),
            cgroups: BTreeSet::new(),
        });
        if let Some(sc) = scope.as_mut()
            && let Some(workload) = &sc.workload
        {
            let want = self
                .pods
                .as_ref()
                .map(|p| p.scope_cgroups(workload))
                .unwrap_or_default();
            if let Err(e) = sync_scope(&mut self.bpf, sc, want) {
                sync_scope(&mut self.bpf, sc, BTreeSet::new()).ok();
                self.policy_slots.free(slot);
                release(self, &mut prepared);
                return Err(unloadable(format!("writing the workload scope: {e}")));
            }
        }
        if let Err(e) = self
            .bpf
            .maps
            .policies
            .set(slot, policy_cfg(false, mode, scope.as_ref()), 0)
        {
            if let Some(sc) = scope.as_mut() {
                sync_scope(&mut self.bpf, sc, BTreeSet::new()).ok();
            }
            self.policy_slots.free(slot);
            release(self, &mut prepared);
            return Err(SensorError::bpf("vigil_policies", e));
        }
        let mut policy = Policy {
            id: self.next_id,
            slot,
            scope,
            origin,
            mode,
            enabled: true,
            hooks: Vec::new(),
            failed: Vec::new(),
            load_failures: Vec::new(),
            error: String::new(),
            ir: encoded,
            ids_start,
        };
        self.next_id += 1;
        let cookies = self.points.cookies();
        for (index, h) in lowered.hooks.into_iter().enumerate() {
            let h = match h {
                Ok(h) => h,
                Err(f) => {
                    policy.failed.push(HookStatus {
                        source: f.source,
                        target: f.target,
                        mechanism: String::new(),
                        error: Some(f.reason),
                    });
                    continue;
                }
            };
            let status = HookStatus {
                source: h.source.clone(),
                target: h.target.clone(),
                mechanism: h.mechanism.describe(h.return_probe),
                error: None,
            };
            let akey = AttachKey::of(&h.mechanism, h.return_probe);
            let (progs, _) = akey.programs(cookies);
            let not_loaded = progs
                .iter()
                .find_map(|p| prepared.shared_errors.get(p))
                .or_else(|| prepared.point_errors.get(&akey))
                .cloned();
            let result = match not_loaded {
                Some(e) => Err(e),
                None => {
                    let instance = prepared.instances.remove(&akey);
                    self.load_hook(slot, h, akey, instance, programs, registry)
                }
            };
            match result {
                Ok(loaded) => policy.hooks.push(LoadedHook {
                    index,
                    status,
                    ..loaded
                }),
                Err(reason) => {
                    policy.load_failures.push((index, reason.clone()));
                    policy.failed.push(HookStatus {
                        mechanism: String::new(),
                        error: Some(reason),
                        ..status
                    })
                }
            }
        }
        release(self, &mut prepared);
        if !policy.failed.is_empty() {
            policy.error = policy
                .failed
                .iter()
                .map(|f| {
                    format!(
                        "{} ({}): {}",
                        f.source,
                        f.target,
                        f.error.as_deref().unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
        }
        if !policy.hooks.is_empty() {
            let _ =
                self.bpf
                    .maps
                    .policies
                    .set(slot, policy_cfg(true, mode, policy.scope.as_ref()), 0);
        }
        for f in &policy.failed {
            tracing::warn!(
                policy = %key,
                hook = %f.source,
                target = %f.target,
                "hook not loaded: {}",
                f.error.as_deref().unwrap_or_default()
            );
        }
        let info = self.info(&key, &policy);
        tracing::info!(policy = %key, state = info.state.as_str(), hooks = policy.hooks.len(), "policy added");
        if replaces {
            // The new version runs: the one taken over goes.
            self.unclaimed.remove(&key);
            if let Some(old) = self.policies.remove(&key) {
                self.unload(old, registry);
                tracing::info!(policy = %key, "policy taken over from the previous sensor replaced by this sensor's version");
            }
        }
        self.policies.insert(key, policy);
        Ok(info)
    }

    /// Writes one hook's entries and attaches it. On failure nothing of it remains.
    fn load_hook(
        &mut self,
        policy_slot: u32,
        h: LoweredHook,
        key: AttachKey,
        instance: Option<(u32, Instance)>,
        programs: &Mutex<HookPrograms>,
        registry: &HookRegistry,
    ) -> Result<LoadedHook, String> {
        let Some(slot) = self.hook_slots.alloc() else {
            if let Some((id, _)) = instance {
                self.points.release_id(id);
            }
            return Err(format!("all {} hook slots are in use", abi::MAX_HOOKS));
        };
        self.generation = self.generation.wrapping_add(1);
        let mut cfg: HookCfg = h.cfg;
        cfg.policy = policy_slot;
        cfg.generation = self.generation;
        let ret = h.return_probe;
        let result = self
            .write_sets(&h.sets)
            .and_then(|()| {
                self.bpf
                    .maps
                    .hooks
                    .set(slot, cfg, 0)
                    .map_err(|e| format!("writing the hook configuration: {e}"))
            })
            .and_then(|()| {
                registry.set(slot, cfg.generation, h.meta.clone());
                let mut programs = relock(programs);
                let Inner {
                    bpf,
                    kernel,
                    points,
                    ..
                } = self;
                let mut cx = AttachCx {
                    maps: &mut bpf.maps,
                    kernel,
                    programs: &mut programs,
                };
                points.add(&mut cx, &key, slot, ret, instance)
            });
        match result {
            Ok(()) => Ok(LoadedHook {
                index: 0,
                slot,
                key,
                ret,
                sets: h.sets,
                status: HookStatus::default(),
            }),
            Err(e) => {
                registry.clear(slot);
                self.delete_sets(&h.sets);
                let _ = self.bpf.maps.hooks.set(slot, HookCfg::default(), 0);
                self.hook_slots.free(slot);
                Err(e)
            }
        }
    }

    fn write_sets(&mut self, sets: &SetEntries) -> Result<(), String> {
        for k in &sets.ints {
            if let Err(e) = self.bpf.maps.ints.insert(k, 1, 0) {
                self.delete_sets(sets);
                return Err(format!("integer value set full or unwritable: {e}"));
            }
        }
        for (set, bytes) in &sets.strs {
            let key = HookBpf::str_key(*set, bytes);
            if let Err(e) = self.bpf.maps.strs.insert(&key, bytes.len() as u32, 0) {
                self.delete_sets(sets);
                return Err(format!("string value set full or unwritable: {e}"));
            }
        }
        for (set, prefix, addr) in &sets.addrs {
            let key = HookBpf::addr_key(*set, *prefix, addr);
            if let Err(e) = self.bpf.maps.addrs.insert(&key, 1, 0) {
                self.delete_sets(sets);
                return Err(format!("address set full or unwritable: {e}"));
            }
        }
        Ok(())
    }

    /// Removes a hook's set entries (absent ones are fine: partial writes are undone this way).
    fn delete_sets(&mut self, sets: &SetEntries) {
        for k in &sets.ints {
            let _ = self.bpf.maps.ints.remove(k);
        }
        for (set, bytes) in &sets.strs {
            let _ = self.bpf.maps.strs.remove(&HookBpf::str_key(*set, bytes));
        }
        for (set, prefix, addr) in &sets.addrs {
            let _ = self
                .bpf
                .maps
                .addrs
                .remove(&HookBpf::addr_key(*set, *prefix, addr));
        }
    }

    fn unload(&mut self, mut policy: Policy, registry: &HookRegistry) {
        let _ = self
            .bpf
            .maps
            .policies
            .set(policy.slot, PolicyCfg::default(), 0);
        if let Some(sc) = policy.scope.as_mut() {
            let _ = sync_scope(&mut self.bpf, sc, BTreeSet::new());
        }
        for h in policy.hooks {
            self.points
                .remove(&mut self.bpf.maps, &h.key, h.slot, h.ret);
            registry.clear(h.slot);
            self.delete_sets(&h.sets);
            let _ = self.bpf.maps.hooks.set(h.slot, HookCfg::default(), 0);
            self.hook_slots.free(h.slot);
        }
        self.policy_slots.free(policy.slot);
    }

    fn stats_of(&self, p: &Policy) -> PolicyStats {
        let s = self.bpf.policy_stats(p.slot);
        PolicyStats {
            matched: s[abi::stat::MATCHED],
            posted: s[abi::stat::POSTED],
            lost: s[abi::stat::LOST],
            rate_limited: s[abi::stat::RATE_LIMITED],
            sigkill: s[abi::stat::SIGKILL],
            signal: s[abi::stat::SIGNAL],
            override_: s[abi::stat::OVERRIDE],
            monitored: s[abi::stat::MONITORED],
        }
    }

    fn info(&self, key: &PolicyKey, p: &Policy) -> PolicyInfo {
        let state = if p.hooks.is_empty() {
            PolicyState::Error
        } else if !p.enabled {
            PolicyState::Disabled
        } else if !p.failed.is_empty() {
            PolicyState::Partial
        } else {
            PolicyState::Enabled
        };
        let mut hooks: Vec<HookStatus> = p
            .hooks
            .iter()
            .map(|h| h.status.clone())
            .chain(p.failed.iter().cloned())
            .collect();
        hooks.sort_by(|a, b| a.source.cmp(&b.source));
        let set_bytes: usize = p
            .hooks
            .iter()
            .map(|h| {
                h.sets.ints.len() * (size_of::<abi::IntKey>() + 8)
                    + h.sets.strs.len() * (size_of::<abi::StrKey>() + 4)
                    + h.sets.addrs.len() * (size_of::<abi::AddrKey>() + 8)
            })
            .sum::<usize>()
            + p.scope
                .as_ref()
                .map(|s| s.cgroups.len() * (size_of::<abi::IntKey>() + 8))
                .unwrap_or(0);
        PolicyInfo {
            id: p.id,
            name: key.name.clone(),
            namespace: key.namespace.clone(),
            origin: p.origin.clone(),
            state,
            mode: p.mode,
            error: p.error.clone(),
            hooks,
            stats: self.stats_of(p),
            kernel_memory_bytes: (p.hooks.len() * size_of::<HookCfg>() + set_bytes) as u64,
        }
    }

    fn set_cfg(&mut self, key: &PolicyKey) -> Result<(), SensorError> {
        let p = self
            .policies
            .get(key)
            .ok_or_else(|| SensorError::PolicyNotFound(key.to_string()))?;
        let cfg = policy_cfg(p.enabled && !p.hooks.is_empty(), p.mode, p.scope.as_ref());
        let slot = p.slot;
        self.bpf
            .maps
            .policies
            .set(slot, cfg, 0)
            .map_err(|e| SensorError::bpf("vigil_policies", e))
    }
}

/// Writes the difference between a scope's set and `want` into `vigil_ints` (nothing for a
/// scope without a set).
fn sync_scope(bpf: &mut HookBpf, scope: &mut Scope, want: BTreeSet<u64>) -> Result<(), String> {
    if scope.set == 0 {
        return Ok(());
    }
    let key = |value: u64| abi::IntKey {
        set: scope.set,
        pad: 0,
        value,
    };
    for gone in scope.cgroups.difference(&want).copied().collect::<Vec<_>>() {
        let _ = bpf.maps.ints.remove(&key(gone));
        scope.cgroups.remove(&gone);
    }
    for new in want.difference(&scope.cgroups).copied().collect::<Vec<_>>() {
        bpf.maps
            .ints
            .insert(key(new), 1, 0)
            .map_err(|e| format!("integer value set full or unwritable: {e}"))?;
        scope.cgroups.insert(new);
    }
    Ok(())
}

impl PolicyControl for Engine {
    fn add(&self, yaml: &str, origin: PolicyOrigin) -> Result<PolicyInfo, SensorError> {
        let mut irs = compile_yaml(yaml).map_err(|e| SensorError::PolicyInvalid(e.to_string()))?;
        if irs.len() != 1 {
            return Err(SensorError::PolicyInvalid(format!(
                "expected exactly one TracingPolicy document, found {}",
                irs.len()
            )));
        }
        self.add_ir(irs.remove(0), origin)
    }

    fn delete(&self, key: &PolicyKey) -> Result<(), SensorError> {
        let mut inner = self.lock();
        let policy = inner
            .policies
            .remove(key)
            .ok_or_else(|| SensorError::PolicyNotFound(key.to_string()))?;
        inner.unclaimed.remove(key);
        inner.unload(policy, &self.registry);
        inner.persist();
        tracing::info!(policy = %key, "policy deleted");
        Ok(())
    }

    fn list(&self) -> Vec<PolicyInfo> {
        let inner = self.lock();
        inner
            .policies
            .iter()
            .map(|(k, p)| inner.info(k, p))
            .collect()
    }

    fn set_enabled(&self, key: &PolicyKey, enabled: bool) -> Result<PolicyInfo, SensorError> {
        let mut inner = self.lock();
        let p = inner
            .policies
            .get_mut(key)
            .ok_or_else(|| SensorError::PolicyNotFound(key.to_string()))?;
        let before = p.enabled;
        p.enabled = enabled;
        if let Err(e) = inner.set_cfg(key) {
            if let Some(p) = inner.policies.get_mut(key) {
                p.enabled = before;
            }
            return Err(e);
        }
        inner.persist();
        let p = &inner.policies[key];
        Ok(inner.info(key, p))
    }

    fn set_mode(&self, key: &PolicyKey, mode: PolicyMode) -> Result<PolicyInfo, SensorError> {
        let mut inner = self.lock();
        let p = inner
            .policies
            .get_mut(key)
            .ok_or_else(|| SensorError::PolicyNotFound(key.to_string()))?;
        let before = p.mode;
        p.mode = mode;
        if let Err(e) = inner.set_cfg(key) {
            if let Some(p) = inner.policies.get_mut(key) {
                p.mode = before;
            }
            return Err(e);
        }
        inner.persist();
        let p = &inner.policies[key];
        Ok(inner.info(key, p))
    }
}
