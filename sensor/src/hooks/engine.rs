//! The policy engine: loads, unloads, switches and reports policies.
//!
//! Adding a policy writes map entries (hook configuration, value sets) and attaches a generic
//! program only where no policy is attached yet: hooks of many policies on one attach point
//! share one program run. A policy becomes active in one step (its `enabled` flag) after all of
//! its hooks are in place, and is switched off the same way before anything is removed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use aya::Ebpf;
use vigil_api::policy::ir::PolicyMode as IrMode;
use vigil_api::policy::{PolicyIr, compile_yaml};
use vigil_sensor_bpf::abi::{self, AttachHooks, HookCfg, PolicyCfg};

use super::kernel::{ContainerMap, HookBpf, LiveKernel};
use super::lower::{self, LoweredHook, Mechanism, PolicyScope, SetEntries, SetIds};
use super::meta::HookRegistry;
use crate::error::SensorError;
use crate::pods::{PodInventory, WorkloadScope};
use crate::policy_control::{
    HookStatus, PolicyControl, PolicyInfo, PolicyKey, PolicyMode, PolicyOrigin, PolicyState,
    PolicyStats,
};

/// One attach point: a kernel location served by one loaded program (or, for syscalls, by the
/// shared sys_enter/sys_exit pair), and the hooks that run there.
struct AttachPoint {
    id: u32,
    hooks: Vec<u32>,
    /// Dropping it detaches and unloads the program.
    _program: Option<Ebpf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AttachKey {
    mechanism: Mechanism,
    return_probe: bool,
}

struct LoadedHook {
    slot: u32,
    key: AttachKey,
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
    error: String,
}

/// Fixed-size slot allocator.
struct Slots {
    used: Vec<bool>,
    first: usize,
}

impl Slots {
    fn new(n: usize, first: usize) -> Self {
        Slots {
            used: vec![false; n],
            first,
        }
    }

    fn alloc(&mut self) -> Option<u32> {
        let i = (self.first..self.used.len()).find(|&i| !self.used[i])?;
        self.used[i] = true;
        Some(i as u32)
    }

    fn free(&mut self, i: u32) {
        if let Some(u) = self.used.get_mut(i as usize) {
            *u = false;
        }
    }

    fn available(&self) -> usize {
        self.used[self.first..].iter().filter(|u| !**u).count()
    }
}

struct Inner {
    bpf: HookBpf,
    kernel: LiveKernel,
    ids: SetIds,
    policies: BTreeMap<PolicyKey, Policy>,
    policy_slots: Slots,
    hook_slots: Slots,
    attach_ids: Slots,
    points: HashMap<AttachKey, AttachPoint>,
    /// The shared sys_enter/sys_exit programs, loaded while any syscall hook is routed.
    sys: Option<Ebpf>,
    generation: u32,
    next_id: u64,
    pods: Option<Arc<PodInventory>>,
    /// `--node-labels`: matched by hostSelector and nodeSelector. Fixed for the sensor's life.
    node_labels: BTreeMap<String, String>,
}

/// The engine behind [`PolicyControl`]. The policies' state sits behind one lock: policy
/// operations are rare and short. The node's container cgroups have their own, since exec
/// records of new containers update them from the event path.
pub struct Engine {
    inner: Mutex<Inner>,
    containers: Mutex<Containers>,
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

impl Engine {
    pub fn new(mut bpf: HookBpf, kernel: LiveKernel, registry: Arc<HookRegistry>) -> Self {
        let containers = Containers {
            map: bpf.take_containers(),
            ..Default::default()
        };
        Engine {
            containers: Mutex::new(containers),
            inner: Mutex::new(Inner {
                bpf,
                kernel,
                ids: SetIds::default(),
                policies: BTreeMap::new(),
                policy_slots: Slots::new(abi::MAX_POLICIES, 0),
                hook_slots: Slots::new(abi::MAX_HOOKS, 0),
                // Attach id 0 means "no hook" in vigil_sys_attach.
                attach_ids: Slots::new(abi::MAX_ATTACH, 1),
                points: HashMap::new(),
                sys: None,
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
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
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
        let mut inner = self.lock();
        let identity = ir.identity.clone().unwrap_or_default();
        let key = PolicyKey::new(&identity.name, &identity.namespace);
        if inner.policies.contains_key(&key) {
            return Err(SensorError::PolicyExists(key.to_string()));
        }
        let unloadable = |message: String| SensorError::PolicyUnloadable {
            policy: key.to_string(),
            message,
        };
        let inner = &mut *inner;
        // The operator sent it here because its nodeSelector selects this node, by labels the
        // operator knows (in Kubernetes, the Node's), which --node-labels need not repeat.
        if origin != PolicyOrigin::Operator
            && let Some(why) = lower::node_selector_mismatch(&ir, &inner.node_labels)
        {
            return Err(unloadable(why));
        }
        let lowered = lower::lower(&ir, &inner.kernel, &inner.node_labels, &mut inner.ids)
            .map_err(unloadable)?;
        let wanted = lowered.hooks.iter().filter(|h| h.is_ok()).count();
        if wanted > inner.hook_slots.available() {
            return Err(unloadable(format!(
                "needs {wanted} hook slots, {} of {} are free",
                inner.hook_slots.available(),
                abi::MAX_HOOKS
            )));
        }
        let slot = inner.policy_slots.alloc().ok_or_else(|| {
            unloadable(format!("all {} policy slots are in use", abi::MAX_POLICIES))
        })?;
        let mode = mode_of(&ir);
        inner.bpf.reset_stats(slot);
        // The scope's set is filled before any hook can run.
        let mut scope = lowered.scope.map(|PolicyScope { workload, host }| Scope {
            set: if workload.is_some() {
                inner.ids.alloc(1)
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
            let want = inner
                .pods
                .as_ref()
                .map(|p| p.scope_cgroups(workload))
                .unwrap_or_default();
            if let Err(e) = sync_scope(&mut inner.bpf, sc, want) {
                sync_scope(&mut inner.bpf, sc, BTreeSet::new()).ok();
                inner.policy_slots.free(slot);
                return Err(unloadable(format!("writing the workload scope: {e}")));
            }
        }
        if let Err(e) =
            inner
                .bpf
                .maps
                .policies
                .set(slot, policy_cfg(false, mode, scope.as_ref()), 0)
        {
            if let Some(sc) = scope.as_mut() {
                sync_scope(&mut inner.bpf, sc, BTreeSet::new()).ok();
            }
            inner.policy_slots.free(slot);
            return Err(SensorError::bpf("vigil_policies", e));
        }
        let mut policy = Policy {
            id: inner.next_id,
            slot,
            scope,
            origin,
            mode,
            enabled: true,
            hooks: Vec::new(),
            failed: Vec::new(),
            error: String::new(),
        };
        inner.next_id += 1;
        for h in lowered.hooks {
            match h {
                Ok(h) => {
                    let status = HookStatus {
                        source: h.source.clone(),
                        target: h.target.clone(),
                        mechanism: h.mechanism.describe(h.return_probe),
                        error: None,
                    };
                    match inner.load_hook(slot, h, &self.registry) {
                        Ok((hook_slot, key, sets)) => policy.hooks.push(LoadedHook {
                            slot: hook_slot,
                            key,
                            sets,
                            status,
                        }),
                        Err(reason) => policy.failed.push(HookStatus {
                            mechanism: String::new(),
                            error: Some(reason),
                            ..status
                        }),
                    }
                }
                Err(f) => policy.failed.push(HookStatus {
                    source: f.source,
                    target: f.target,
                    mechanism: String::new(),
                    error: Some(f.reason),
                }),
            }
        }
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
                inner
                    .bpf
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
        let info = inner.info(&key, &policy);
        tracing::info!(policy = %key, state = info.state.as_str(), hooks = policy.hooks.len(), "policy added");
        inner.policies.insert(key, policy);
        Ok(info)
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

impl Inner {
    /// Writes one hook's entries and attaches it. On failure nothing of it remains.
    fn load_hook(
        &mut self,
        policy_slot: u32,
        h: LoweredHook,
        registry: &HookRegistry,
    ) -> Result<(u32, AttachKey, SetEntries), String> {
        let slot = self
            .hook_slots
            .alloc()
            .ok_or_else(|| format!("all {} hook slots are in use", abi::MAX_HOOKS))?;
        self.generation = self.generation.wrapping_add(1);
        let mut cfg: HookCfg = h.cfg;
        cfg.policy = policy_slot;
        cfg.generation = self.generation;
        let key = AttachKey {
            return_probe: h.return_probe && !matches!(h.mechanism, Mechanism::SysEnter { .. }),
            mechanism: h.mechanism,
        };
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
                self.attach(&key, slot)
            });
        match result {
            Ok(()) => Ok((slot, key, h.sets)),
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

    fn write_attach(&mut self, id: u32, hooks: &[u32]) -> Result<(), String> {
        let mut v = AttachHooks {
            n: hooks.len() as u32,
            ..Default::default()
        };
        v.hooks[..hooks.len()].copy_from_slice(hooks);
        self.bpf
            .maps
            .attach
            .set(id, v, 0)
            .map_err(|e| format!("writing attach point {id}: {e}"))
    }

    fn attach(&mut self, key: &AttachKey, slot: u32) -> Result<(), String> {
        if let Some(p) = self.points.get(key) {
            if p.hooks.len() >= abi::ATTACH_HOOKS {
                return Err(format!(
                    "{} hooks already share this attach point (at most {})",
                    p.hooks.len(),
                    abi::ATTACH_HOOKS
                ));
            }
            let id = p.id;
            let mut hooks = p.hooks.clone();
            hooks.push(slot);
            self.write_attach(id, &hooks)?;
            if let Some(p) = self.points.get_mut(key) {
                p.hooks = hooks;
            }
            return Ok(());
        }
        let id = self
            .attach_ids
            .alloc()
            .ok_or_else(|| format!("all {} attach points are in use", abi::MAX_ATTACH - 1))?;
        let undo = |inner: &mut Inner| {
            let _ = inner.bpf.maps.attach.set(id, AttachHooks::default(), 0);
            inner.attach_ids.free(id);
        };
        if let Err(e) = self.write_attach(id, &[slot]) {
            undo(self);
            return Err(e);
        }
        let program = match &key.mechanism {
            Mechanism::SysEnter { nr } => {
                if self.sys.is_none() {
                    match self.bpf.attach(0, &key.mechanism, true) {
                        Ok(p) => self.sys = Some(p),
                        Err(e) => {
                            undo(self);
                            return Err(e);
                        }
                    }
                }
                if let Err(e) = self.bpf.maps.sys_attach.set(*nr, id, 0) {
                    undo(self);
                    self.drop_sys_if_unused();
                    return Err(format!("routing syscall {nr}: {e}"));
                }
                None
            }
            m => match self.bpf.attach(id, m, key.return_probe) {
                Ok(p) => Some(p),
                Err(e) => {
                    undo(self);
                    return Err(e);
                }
            },
        };
        self.points.insert(
            key.clone(),
            AttachPoint {
                id,
                hooks: vec![slot],
                _program: program,
            },
        );
        Ok(())
    }

    fn drop_sys_if_unused(&mut self) {
        if !self
            .points
            .keys()
            .any(|k| matches!(k.mechanism, Mechanism::SysEnter { .. }))
        {
            self.sys = None;
        }
    }

    fn detach(&mut self, key: &AttachKey, slot: u32) {
        let Some(p) = self.points.get_mut(key) else {
            return;
        };
        p.hooks.retain(|&s| s != slot);
        let (id, hooks) = (p.id, p.hooks.clone());
        if !hooks.is_empty() {
            let _ = self.write_attach(id, &hooks);
            return;
        }
        if let Mechanism::SysEnter { nr } = key.mechanism {
            let _ = self.bpf.maps.sys_attach.set(nr, 0, 0);
        }
        // Dropping the point's program detaches it before its entry goes.
        self.points.remove(key);
        let _ = self.bpf.maps.attach.set(id, AttachHooks::default(), 0);
        self.attach_ids.free(id);
        self.drop_sys_if_unused();
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
            self.detach(&h.key, h.slot);
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
        inner.unload(policy, &self.registry);
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
        let p = &inner.policies[key];
        Ok(inner.info(key, p))
    }
}
