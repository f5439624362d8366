//! Step 3 of an add and its undoing: slots, value sets, attachments and the policy switched on
//! in one write; and a policy's removal.

use std::collections::BTreeSet;
use std::sync::Mutex;

use vigil_api::policy::PolicyIr;
use vigil_sensor_bpf::abi::{self, HookCfg, PolicyCfg};

use super::{
    Inner, LoadedHook, Plan, Policy, PolicyMode, Prepared, Scope, mode_of, policy_cfg, relock,
};
use crate::error::SensorError;
use crate::hooks::attach::{AttachCx, AttachKey};
use crate::hooks::kernel::HookBpf;
use crate::hooks::lower::{self, LoweredHook, PolicyScope, SetEntries};
use crate::hooks::meta::HookRegistry;
use crate::hooks::programs::{HookPrograms, Instance};
use crate::policy::control::{HookStatus, PolicyInfo, PolicyKey, PolicyOrigin};

/// Gives the reserved attach ids of the instances nobody took back.
fn release(inner: &mut Inner, prepared: &mut Prepared) {
    for (id, _) in prepared.instances.drain().map(|(_, v)| v) {
        inner.points.release_id(id);
    }
}

impl Inner {
    /// Step 3 of an add, under the engine lock: slots, map entries, attachments, and the policy
    /// switched on in one write.
    pub(super) fn publish(
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
        let (slot, mode, scope) = match self.claim_policy_slot(ir, &key, lowered.scope) {
            Ok(claimed) => claimed,
            Err(e) => {
                release(self, &mut prepared);
                return Err(e);
            }
        };
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
            meter: super::budget::Meter::of(ir),
            demotion: None,
        };
        self.next_id += 1;
        self.load_hooks(
            &mut policy,
            lowered.hooks,
            &mut prepared,
            programs,
            registry,
        );
        release(self, &mut prepared);
        self.switch_on(&key, &mut policy);
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

    /// A policy slot, with the policy's scope set filled and its configuration written switched
    /// off. On failure nothing of it remains (the caller releases the prepared instances).
    fn claim_policy_slot(
        &mut self,
        ir: &PolicyIr,
        key: &PolicyKey,
        scope: Option<PolicyScope>,
    ) -> Result<(u32, PolicyMode, Option<Scope>), SensorError> {
        let unloadable = |message: String| SensorError::PolicyUnloadable {
            policy: key.to_string(),
            message,
        };
        let Some(slot) = self.policy_slots.alloc() else {
            return Err(unloadable(format!(
                "all {} policy slots are in use",
                abi::MAX_POLICIES
            )));
        };
        let mode = mode_of(ir);
        self.bpf.reset_stats(slot);
        // The scope's set is filled before any hook can run.
        let mut scope = scope.map(|PolicyScope { workload, host }| Scope {
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
            return Err(SensorError::bpf("vigil_policies", e));
        }
        Ok((slot, mode, scope))
    }

    /// Loads each lowered hook of `policy` with the programs step 2 prepared; a hook that
    /// cannot be lowered or loaded is recorded as failed.
    fn load_hooks(
        &mut self,
        policy: &mut Policy,
        hooks: Vec<Result<LoweredHook, lower::HookFailure>>,
        prepared: &mut Prepared,
        programs: &Mutex<HookPrograms>,
        registry: &HookRegistry,
    ) {
        let slot = policy.slot;
        let cookies = self.points.cookies();
        for (index, h) in hooks.into_iter().enumerate() {
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
    }

    /// Sums up the failed hooks in the policy's error, switches it on when any hook loaded, and
    /// logs the failures.
    fn switch_on(&mut self, key: &PolicyKey, policy: &mut Policy) {
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
            let _ = self.bpf.maps.policies.set(
                policy.slot,
                policy_cfg(true, policy.mode, policy.scope.as_ref()),
                0,
            );
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

    pub(super) fn unload(&mut self, mut policy: Policy, registry: &HookRegistry) {
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
}

/// Writes the difference between a scope's set and `want` into `vigil_ints` (nothing for a
/// scope without a set).
pub(super) fn sync_scope(
    bpf: &mut HookBpf,
    scope: &mut Scope,
    want: BTreeSet<u64>,
) -> Result<(), String> {
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
