//! The engine's side of a hand-over between two sensors of one instance: the state it writes
//! for the next sensor after every change, and how the next sensor takes the policies over —
//! each lowered again and checked against the pinned hook table, nothing loaded or attached
//! again — and later drops the ones no source of its own claims.

use std::collections::BTreeSet;
use std::path::PathBuf;

use prost::Message as _;
use vigil_api::policy::PolicyIr;
use vigil_sensor_bpf::abi::{self, HookCfg};

use super::{Engine, Inner, LoadedHook, Policy, Scope, relock};
use crate::hooks::attach::{AttachCx, AttachKey};
use crate::hooks::lower::{self, SetIds};
use crate::hooks::meta::HookRegistry;
use crate::hooks::snapshot::{
    self, FORMAT, FailedSnap, HookSnap, OriginSnap, PolicySnap, ScopeSnap, Snapshot,
};
use crate::policy::control::{HookStatus, PolicyControl, PolicyKey, PolicyMode, PolicyOrigin};

impl Inner {
    /// The state the next sensor of the instance needs.
    pub(super) fn snapshot(&self) -> Snapshot {
        let (points, raw_links) = self.points.snapshot();
        Snapshot {
            format: FORMAT,
            generation: self.generation,
            next_id: self.next_id,
            set_next: self.ids.peek(),
            policies: self
                .policies
                .iter()
                .map(|(key, p)| PolicySnap {
                    name: key.name.clone(),
                    namespace: key.namespace.clone(),
                    id: p.id,
                    slot: p.slot,
                    origin: match &p.origin {
                        PolicyOrigin::File(path) => OriginSnap::File(path.clone()),
                        PolicyOrigin::Api => OriginSnap::Api,
                        PolicyOrigin::Operator => OriginSnap::Operator,
                    },
                    monitor: p.mode == PolicyMode::Monitor,
                    enabled: p.enabled,
                    demotion: p.demotion.clone(),
                    ir: snapshot::hex(&p.ir),
                    ids_start: p.ids_start,
                    scope: p.scope.as_ref().map(|s| ScopeSnap {
                        set: s.set,
                        host: s.host,
                        cgroups: s.cgroups.iter().copied().collect(),
                    }),
                    hooks: p
                        .hooks
                        .iter()
                        .map(|h| HookSnap {
                            index: h.index,
                            slot: h.slot,
                            generation: self
                                .bpf
                                .maps
                                .hooks
                                .get(&h.slot, 0)
                                .map(|c| c.generation)
                                .unwrap_or(0),
                        })
                        .collect(),
                    failed: p
                        .load_failures
                        .iter()
                        .map(|(index, error)| FailedSnap {
                            index: *index,
                            error: error.clone(),
                        })
                        .collect(),
                })
                .collect(),
            points,
            raw_links,
        }
    }

    /// Writes the state for the next sensor (when one may take over). A failure is logged: the
    /// next sensor then loads everything again, beside what runs, before it retires it.
    pub(super) fn persist(&self) {
        let Some(path) = &self.state_path else {
            return;
        };
        let result = serde_json::to_vec(&self.snapshot())
            .map_err(|e| e.to_string())
            .and_then(|json| {
                crate::kernel::bpf_syscall::write_blob(path, "vigil_state", &json)
                    .map_err(|e| e.to_string())
            })
            // The pins changed with the state: the next sensor checks them against this.
            .and_then(|()| match path.parent() {
                Some(generation) => crate::kernel::pin_manifest::write(generation),
                None => Ok(()),
            });
        if let Err(e) = result {
            tracing::error!(
                "writing the hand-over state {}: {e}; the next sensor will load everything again",
                path.display()
            );
        }
    }

    /// Takes the previous sensor's policies over from `snap`: each policy is lowered again from
    /// its IR with the same set ids and must yield exactly the hook configurations the pinned
    /// `vigil_hooks` holds; the points' pinned links are opened. Any mismatch is an error and
    /// nothing is kept: the caller then loads a new generation instead.
    fn restore(
        &mut self,
        snap: &Snapshot,
        registry: &HookRegistry,
    ) -> Result<Vec<AttachKey>, String> {
        if snap.format != FORMAT {
            return Err(format!(
                "state format {} (this sensor reads {FORMAT})",
                snap.format
            ));
        }
        for ps in &snap.policies {
            let key = PolicyKey::new(&ps.name, &ps.namespace);
            let policy = self
                .restore_policy(ps, registry)
                .map_err(|e| format!("policy {key}: {e}"))?;
            self.policies.insert(key.clone(), policy);
            self.unclaimed.insert(key);
        }
        let links = self
            .state_path
            .as_ref()
            .and_then(|p| p.parent())
            .map(|g| g.join("links"))
            .ok_or("no pin directory")?;
        let detached = self.points.restore(&snap.points, &snap.raw_links, &links)?;
        self.generation = snap.generation;
        self.next_id = snap.next_id;
        self.ids = SetIds::starting_at(snap.set_next);
        Ok(detached)
    }

    fn restore_policy(
        &mut self,
        ps: &PolicySnap,
        registry: &HookRegistry,
    ) -> Result<Policy, String> {
        let bytes = snapshot::unhex(&ps.ir)?;
        let ir = PolicyIr::decode(bytes.as_slice()).map_err(|e| format!("IR: {e}"))?;
        let mut ids = SetIds::starting_at(ps.ids_start);
        let lowered = lower::lower(&ir, &self.kernel, &self.node_labels, &mut ids)?;
        if !self.policy_slots.reserve(ps.slot) {
            return Err(format!("policy slot {} taken twice", ps.slot));
        }
        let mut hooks = Vec::new();
        let mut failed = Vec::new();
        for (index, h) in lowered.hooks.iter().enumerate() {
            let Err(f) = h else { continue };
            let _ = index;
            failed.push(HookStatus {
                source: f.source.clone(),
                target: f.target.clone(),
                mechanism: String::new(),
                error: Some(f.reason.clone()),
            });
        }
        for hs in &ps.hooks {
            let Some(Ok(h)) = lowered.hooks.get(hs.index) else {
                return Err(format!("hook {} no longer lowers", hs.index));
            };
            let mut want: HookCfg = h.cfg;
            want.policy = ps.slot;
            want.generation = hs.generation;
            let have = self
                .bpf
                .maps
                .hooks
                .get(&hs.slot, 0)
                .map_err(|e| format!("reading hook slot {}: {e}", hs.slot))?;
            if have != want {
                return Err(format!(
                    "hook slot {} does not hold what the policy lowers to",
                    hs.slot
                ));
            }
            if !self.hook_slots.reserve(hs.slot) {
                return Err(format!("hook slot {} taken twice", hs.slot));
            }
            registry.set(hs.slot, hs.generation, h.meta.clone());
            hooks.push(LoadedHook {
                index: hs.index,
                slot: hs.slot,
                key: AttachKey::of(&h.mechanism, h.return_probe),
                ret: h.return_probe,
                sets: h.sets.clone(),
                status: HookStatus {
                    source: h.source.clone(),
                    target: h.target.clone(),
                    mechanism: h.mechanism.describe(h.return_probe),
                    error: None,
                },
            });
        }
        for f in &ps.failed {
            if let Some(Ok(h)) = lowered.hooks.get(f.index) {
                failed.push(HookStatus {
                    source: h.source.clone(),
                    target: h.target.clone(),
                    mechanism: String::new(),
                    error: Some(f.error.clone()),
                });
            }
        }
        let scope = match (lowered.scope, &ps.scope) {
            (Some(s), Some(snap)) => Some(Scope {
                set: snap.set,
                workload: s.workload,
                host: snap.host,
                host_selector: ir.scope.as_ref().and_then(|s| s.host_selector.clone()),
                cgroups: snap.cgroups.iter().copied().collect(),
            }),
            (None, None) => None,
            _ => return Err("its workload scope changed".into()),
        };
        let error = failed
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
        Ok(Policy {
            id: ps.id,
            slot: ps.slot,
            scope,
            origin: match &ps.origin {
                OriginSnap::File(p) => PolicyOrigin::File(p.clone()),
                OriginSnap::Api => PolicyOrigin::Api,
                OriginSnap::Operator => PolicyOrigin::Operator,
            },
            mode: if ps.monitor {
                PolicyMode::Monitor
            } else {
                PolicyMode::Enforce
            },
            enabled: ps.enabled,
            hooks,
            failed,
            load_failures: ps
                .failed
                .iter()
                .map(|f| (f.index, f.error.clone()))
                .collect(),
            error,
            ir: bytes,
            ids_start: ps.ids_start,
            meter: super::budget::Meter::of(&ir),
            demotion: ps.demotion.clone(),
        })
    }
}

/// What [`Engine::take_over`] took over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TakenOver {
    pub policies: usize,
    /// Attach points whose links the kernel could not pin, attached again.
    pub reattached: usize,
}

impl Engine {
    /// Writes the hand-over state to `path` from now on (and once now).
    pub fn persist_to(&self, path: PathBuf) {
        let mut inner = self.lock();
        inner.state_path = Some(path);
        inner.persist();
    }

    /// Takes the previous sensor's policies over (see [`Inner::restore`]) and attaches again
    /// the points whose links the kernel could not pin. Returns how many policies were taken
    /// over and how many points were attached again (their hooks did not run between the
    /// previous sensor's end and now). On error nothing is taken over and the engine is as new.
    pub fn take_over(&self, snap: &Snapshot, state_path: PathBuf) -> Result<TakenOver, String> {
        let mut inner = self.lock();
        inner.state_path = Some(state_path);
        let restored = inner.restore(snap, &self.registry).and_then(|detached| {
            let mut programs = relock(&self.programs);
            let Inner {
                bpf,
                kernel,
                points,
                ..
            } = &mut *inner;
            let mut cx = AttachCx {
                maps: &mut bpf.maps,
                kernel,
                programs: &mut programs,
            };
            for key in &detached {
                points
                    .reattach(&mut cx, key)
                    .map_err(|e| format!("attaching {key:?} again: {e}"))?;
            }
            Ok(detached.len())
        });
        let reattached = match restored {
            Ok(n) => n,
            Err(e) => {
                // Forget the partial take-over; the pinned objects stay untouched for the caller to
                // retire once a new generation runs.
                inner.policies.clear();
                inner.unclaimed.clear();
                inner.policy_slots = super::Slots::new(abi::MAX_POLICIES, 0);
                inner.hook_slots = super::Slots::new(abi::MAX_HOOKS, 0);
                inner.points = crate::hooks::attach::AttachPoints::new(inner.points.cookies());
                inner.state_path = None;
                return Err(e);
            }
        };
        if reattached > 0 {
            // The new links are unpinnable too: the state says so for the next sensor.
            inner.persist();
        }
        drop(inner);
        // The container set is the kernel's as the previous sensor left it.
        let mut c = relock(&self.containers);
        if let Some(map) = c.map.as_ref() {
            let ids: BTreeSet<u64> = map.keys().filter_map(Result::ok).collect();
            c.ids = ids;
        }
        drop(c);
        Ok(TakenOver {
            policies: self.lock().policies.len(),
            reattached,
        })
    }

    /// Removes the policies taken over that no source of this sensor claimed, among those
    /// `from` says are settled (file policies once the files are read, operator policies once
    /// the operator's first set is in). Returns their names.
    pub fn drop_unclaimed(&self, from: impl Fn(&PolicyOrigin) -> bool) -> Vec<PolicyKey> {
        let stale: Vec<PolicyKey> = {
            let inner = self.lock();
            inner
                .unclaimed
                .iter()
                .filter(|k| inner.policies.get(*k).is_some_and(|p| from(&p.origin)))
                .cloned()
                .collect()
        };
        for key in &stale {
            match self.delete(key) {
                Ok(()) => {
                    tracing::info!(policy = %key, "policy of the previous sensor removed: no source of this sensor has it")
                }
                Err(e) => {
                    tracing::error!(policy = %key, "removing a policy of the previous sensor: {e}")
                }
            }
        }
        stale
    }

    /// The sensor stops and leaves its programs enforcing: the state is written a last time, and
    /// the kernel no longer skips this process's pid (it may be reused by another process).
    pub fn release_for_next(&self) {
        let mut inner = self.lock();
        let host_userns = inner
            .bpf
            .maps
            .config
            .get(&0, 0)
            .map(|c| c.host_userns)
            .unwrap_or(0);
        let _ = inner.bpf.maps.config.set(
            0,
            vigil_sensor_bpf::abi::Config {
                self_tgid: 0,
                host_userns,
            },
            0,
        );
        inner.persist();
        inner.state_path = None;
    }

    /// Stops writing hand-over state (the sensor is about to remove its pins).
    pub fn stop_persisting(&self) {
        self.lock().state_path = None;
    }
}
