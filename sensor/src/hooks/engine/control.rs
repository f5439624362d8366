//! What the policy control calls do to a published policy: delete, list, enable/disable, mode
//! switches; and how a policy is reported.

use vigil_sensor_bpf::abi::{self, HookCfg};

use super::{Engine, Inner, Policy, policy_cfg};
use crate::error::SensorError;
use crate::policy::control::{
    HookStatus, PolicyControl, PolicyInfo, PolicyKey, PolicyMode, PolicyOrigin, PolicyState,
    PolicyStats,
};

/// The kernel's per-policy counters (summed over CPUs) by name.
pub(super) fn stats_from(s: &[u64; abi::STAT_NUM]) -> PolicyStats {
    PolicyStats {
        matched: s[abi::stat::MATCHED],
        posted: s[abi::stat::POSTED],
        lost: s[abi::stat::LOST],
        rate_limited: s[abi::stat::RATE_LIMITED],
        sigkill: s[abi::stat::SIGKILL],
        signal: s[abi::stat::SIGNAL],
        override_: s[abi::stat::OVERRIDE],
        monitored: s[abi::stat::MONITORED],
        evaluations: s[abi::stat::EVALS],
        cost_samples: s[abi::stat::COST_SAMPLES],
        cost_ns: s[abi::stat::COST_NS],
    }
}

impl Inner {
    pub(super) fn stats_of(&self, p: &Policy) -> PolicyStats {
        stats_from(&self.bpf.policy_stats(p.slot))
    }

    pub(super) fn info(&self, key: &PolicyKey, p: &Policy) -> PolicyInfo {
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
            demotion: p.demotion.clone(),
        }
    }

    /// A user switched the policy: a demotion is over, and its budget gets a fresh window.
    fn user_switched(&mut self, key: &PolicyKey) {
        if let Some(p) = self.policies.get_mut(key) {
            p.demotion = None;
            if let Some(m) = p.meter.as_mut() {
                m.restart();
            }
        }
    }

    pub(super) fn set_cfg(&mut self, key: &PolicyKey) -> Result<(), SensorError> {
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

impl PolicyControl for Engine {
    fn add(&self, yaml: &str, origin: PolicyOrigin) -> Result<PolicyInfo, SensorError> {
        let mut irs = crate::policy::compile_yaml(yaml)
            .map_err(|e| SensorError::PolicyInvalid(e.to_string()))?;
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
        inner.user_switched(key);
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
        inner.user_switched(key);
        inner.persist();
        let p = &inner.policies[key];
        Ok(inner.info(key, p))
    }
}
