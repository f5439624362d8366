//! The policy RPCs of `tetragon.FineGuidanceSensors` (Add/Delete/List/Enable/Disable/
//! ConfigureTracingPolicy) on top of the engine's [`PolicyControl`].
//!
//! Engine calls are synchronous, so each runs under `spawn_blocking`. Errors map to gRPC codes:
//! a rejected manifest is `INVALID_ARGUMENT` with the validator's text unchanged, a duplicate
//! `ALREADY_EXISTS`, an unknown policy `NOT_FOUND`, a policy this kernel cannot run
//! `FAILED_PRECONDITION`, anything else `INTERNAL`; without an engine every call is
//! `UNAVAILABLE`.

use std::sync::Arc;

use tonic::Status;
use vigil_api::wire::tetragon;

use crate::error::SensorError;
use crate::policy::control::{
    HookStatus, PolicyControl, PolicyInfo, PolicyKey, PolicyMode, PolicyState,
};

/// A hook's status as both wire forms carry it: the policy API's (`VigilHookStatus`, in
/// ListTracingPolicies) and the operator link's (`HookStatus`, in a sensor's report).
macro_rules! hook_status_to_wire {
    ($($wire:ty),+) => {$(
        impl From<&HookStatus> for $wire {
            fn from(h: &HookStatus) -> Self {
                Self {
                    source: h.source.clone(),
                    target: h.target.clone(),
                    mechanism: h.mechanism.clone(),
                    loaded: h.loaded(),
                    error: h.error.clone().unwrap_or_default(),
                }
            }
        }
    )+};
}
hook_status_to_wire!(
    tetragon::VigilHookStatus,
    vigil_api::wire::policy_sync::HookStatus
);

/// The message of `UNAVAILABLE` when the sensor runs without a policy engine.
pub const NO_ENGINE: &str = "policy engine not running";

/// The gRPC status for an engine error.
pub fn status_of_error(e: SensorError) -> Status {
    match e {
        SensorError::PolicyInvalid(msg) => Status::invalid_argument(msg),
        e @ SensorError::PolicyExists(_) => Status::already_exists(e.to_string()),
        e @ SensorError::PolicyNotFound(_) => Status::not_found(e.to_string()),
        e @ SensorError::PolicyUnloadable { .. } => Status::failed_precondition(e.to_string()),
        e => Status::internal(e.to_string()),
    }
}

/// Tetragon's state for a Vigil policy state.
pub fn proto_state(s: PolicyState) -> tetragon::TracingPolicyState {
    match s {
        PolicyState::Enabled => tetragon::TracingPolicyState::TpStateEnabled,
        PolicyState::Disabled => tetragon::TracingPolicyState::TpStateDisabled,
        PolicyState::Partial => tetragon::TracingPolicyState::TpStatePartiallyEnabled,
        PolicyState::Error => tetragon::TracingPolicyState::TpStateLoadError,
    }
}

/// Tetragon's mode for a Vigil mode.
pub fn proto_mode(m: PolicyMode) -> tetragon::TracingPolicyMode {
    match m {
        PolicyMode::Enforce => tetragon::TracingPolicyMode::TpModeEnforce,
        PolicyMode::Monitor => tetragon::TracingPolicyMode::TpModeMonitor,
    }
}

/// A requested mode → Vigil's; `MONITOR_ONLY` and unknown values are refused.
pub fn mode_of_proto(m: i32) -> Result<PolicyMode, Status> {
    match tetragon::TracingPolicyMode::try_from(m) {
        Ok(tetragon::TracingPolicyMode::TpModeEnforce) => Ok(PolicyMode::Enforce),
        Ok(tetragon::TracingPolicyMode::TpModeMonitor) => Ok(PolicyMode::Monitor),
        Ok(other) => Err(Status::invalid_argument(format!(
            "mode {} is not supported; use TP_MODE_ENFORCE or TP_MODE_MONITOR",
            other.as_str_name()
        ))),
        Err(_) => Err(Status::invalid_argument(format!("unknown mode {m}"))),
    }
}

/// One policy as `TracingPolicyStatus`: Tetragon's fields, plus Vigil's detail at field 1000.
pub fn policy_status(p: &PolicyInfo) -> tetragon::TracingPolicyStatus {
    let mut sensors: Vec<String> = Vec::new();
    for h in p.hooks.iter().filter(|h| h.loaded()) {
        if !h.mechanism.is_empty() && !sensors.contains(&h.mechanism) {
            sensors.push(h.mechanism.clone());
        }
    }
    let s = &p.stats;
    tetragon::TracingPolicyStatus {
        id: p.id,
        name: p.name.clone(),
        namespace: p.namespace.clone(),
        info: String::new(),
        sensors,
        enabled: matches!(p.state, PolicyState::Enabled | PolicyState::Partial),
        filter_id: 0,
        error: p.error.clone(),
        state: proto_state(p.state) as i32,
        kernel_memory_bytes: p.kernel_memory_bytes,
        mode: proto_mode(p.mode) as i32,
        stats: Some(tetragon::TracingPolicyStats {
            action_counters: Some(tetragon::TracingPolicyActionCounters {
                post: s.posted,
                signal: s.sigkill + s.signal,
                r#override: s.override_,
                ..Default::default()
            }),
        }),
        vigil: Some(tetragon::VigilPolicyStatus {
            origin: p.origin.to_string(),
            hooks: p.hooks.iter().map(Into::into).collect(),
            counters: Some(tetragon::VigilPolicyCounters {
                matched: s.matched,
                posted: s.posted,
                lost: s.lost,
                rate_limited: s.rate_limited,
                sigkill: s.sigkill,
                signal: s.signal,
                r#override: s.override_,
                monitored: s.monitored,
                evaluations: s.evaluations,
                cost_samples: s.cost_samples,
                cost_ns: s.cost_ns,
            }),
            demotion: p.demotion.clone().unwrap_or_default(),
        }),
    }
}

fn key(name: &str, namespace: &str) -> Result<PolicyKey, Status> {
    if name.is_empty() {
        return Err(Status::invalid_argument("policy name is empty"));
    }
    Ok(PolicyKey::new(name, namespace))
}

/// The policy RPCs, over an optional engine.
#[derive(Clone, Default)]
pub struct PolicyApi {
    engine: Option<Arc<dyn PolicyControl>>,
}

impl std::fmt::Debug for PolicyApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyApi")
            .field("engine", &self.engine.is_some())
            .finish()
    }
}

impl PolicyApi {
    pub fn new(engine: Option<Arc<dyn PolicyControl>>) -> Self {
        PolicyApi { engine }
    }

    /// Runs `f` on the engine off the async runtime.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn PolicyControl) -> Result<T, SensorError> + Send + 'static,
    ) -> Result<T, Status> {
        let engine = self
            .engine
            .clone()
            .ok_or_else(|| Status::unavailable(NO_ENGINE))?;
        tokio::task::spawn_blocking(move || f(engine.as_ref()))
            .await
            .map_err(|e| Status::internal(format!("policy engine call failed: {e}")))?
            .map_err(status_of_error)
    }

    pub async fn list(&self) -> Result<Vec<PolicyInfo>, Status> {
        self.call(|e| Ok(e.list())).await
    }

    pub async fn add(
        &self,
        req: tetragon::AddTracingPolicyRequest,
    ) -> Result<tetragon::AddTracingPolicyResponse, Status> {
        let info = self
            .call(move |e| e.add(&req.yaml, crate::policy::control::PolicyOrigin::Api))
            .await?;
        tracing::info!(policy = %PolicyKey::new(&info.name, &info.namespace), state = info.state.as_str(), "policy added through the API");
        Ok(tetragon::AddTracingPolicyResponse {
            vigil_status: Some(policy_status(&info)),
        })
    }

    pub async fn delete(
        &self,
        req: tetragon::DeleteTracingPolicyRequest,
    ) -> Result<tetragon::DeleteTracingPolicyResponse, Status> {
        let k = key(&req.name, &req.namespace)?;
        let shown = k.to_string();
        self.call(move |e| e.delete(&k)).await?;
        tracing::info!(policy = %shown, "policy deleted through the API");
        Ok(tetragon::DeleteTracingPolicyResponse {})
    }

    pub async fn set_enabled(
        &self,
        name: &str,
        namespace: &str,
        enabled: bool,
    ) -> Result<tetragon::TracingPolicyStatus, Status> {
        let k = key(name, namespace)?;
        let info = self.call(move |e| e.set_enabled(&k, enabled)).await?;
        Ok(policy_status(&info))
    }

    pub async fn configure(
        &self,
        req: tetragon::ConfigureTracingPolicyRequest,
    ) -> Result<tetragon::ConfigureTracingPolicyResponse, Status> {
        let k = key(&req.name, &req.namespace)?;
        // Check everything before changing anything.
        let mode = req.mode.map(mode_of_proto).transpose()?;
        let enable = req.enable;
        let info = self
            .call(move |e| {
                let mut last = None;
                if let Some(on) = enable {
                    last = Some(e.set_enabled(&k, on)?);
                }
                if let Some(m) = mode {
                    last = Some(e.set_mode(&k, m)?);
                }
                match last {
                    Some(i) => Ok(i),
                    None => e
                        .list()
                        .into_iter()
                        .find(|p| p.name == k.name && p.namespace == k.namespace)
                        .ok_or_else(|| SensorError::PolicyNotFound(k.to_string())),
                }
            })
            .await?;
        Ok(tetragon::ConfigureTracingPolicyResponse {
            vigil_status: Some(policy_status(&info)),
        })
    }
}

#[cfg(test)]
#[path = "api_tests.rs"]
mod tests;
