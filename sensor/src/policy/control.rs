//! The contract between the sensor's policy engine and the things that drive it (the gRPC API,
//! the policy directory watcher, later the operator client).
//!
//! Every call is synchronous and quick (map updates, program loads): callers on the async
//! runtime run it under `spawn_blocking`. A call that fails changes nothing.

use std::fmt;

use crate::error::SensorError;

/// Where a policy came from. Policies of different origins live side by side.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyOrigin {
    /// `--policy FILE` or a file in `--policy-dir`.
    File(std::path::PathBuf),
    /// Added through the sensor API (`vigil policy add`, `tetra tracingpolicy add`).
    Api,
    /// Delivered by the operator.
    Operator,
}

impl fmt::Display for PolicyOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyOrigin::File(p) => write!(f, "file:{}", p.display()),
            PolicyOrigin::Api => f.write_str("api"),
            PolicyOrigin::Operator => f.write_str("operator"),
        }
    }
}

/// A policy's overall state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyState {
    /// Every hook is loaded and the policy is active.
    Enabled,
    /// Loaded but switched off: its hooks do nothing.
    Disabled,
    /// Active, but some hooks could not be loaded on this kernel (see the hook statuses).
    Partial,
    /// Nothing of it is active (see `error`).
    Error,
}

impl PolicyState {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyState::Enabled => "enabled",
            PolicyState::Disabled => "disabled",
            PolicyState::Partial => "partial",
            PolicyState::Error => "error",
        }
    }
}

/// Enforcement mode; switchable at runtime without reloading anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyMode {
    /// Enforcing actions (Sigkill, Signal, Override) run.
    Enforce,
    /// Enforcing actions are counted and reported, not executed.
    Monitor,
}

impl PolicyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyMode::Enforce => "enforce",
            PolicyMode::Monitor => "monitor",
        }
    }

    /// Parses `enforce` / `monitor` (case-insensitive).
    pub fn parse(s: &str) -> Option<PolicyMode> {
        match s.to_ascii_lowercase().as_str() {
            "enforce" => Some(PolicyMode::Enforce),
            "monitor" => Some(PolicyMode::Monitor),
            _ => None,
        }
    }
}

/// Whether one hook of a policy runs, and by which kernel mechanism.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookStatus {
    /// Where the hook is in the manifest, e.g. `spec.kprobes[0]`.
    pub source: String,
    /// What it hooks, e.g. `__x64_sys_openat`, `raw_syscalls/sys_enter`, `file_open`.
    pub target: String,
    /// The mechanism serving it (`kprobe`, `raw_tracepoint sys_enter`, `tracepoint`, `uprobe`,
    /// `lsm`, …); empty when not loaded.
    pub mechanism: String,
    /// `None` when loaded; the reason otherwise.
    pub error: Option<String>,
}

impl HookStatus {
    pub fn loaded(&self) -> bool {
        self.error.is_none()
    }
}

/// Per-policy counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyStats {
    /// Hook runs where a selector matched.
    pub matched: u64,
    /// Events written to the ring buffer.
    pub posted: u64,
    /// Events lost because the ring buffer was full.
    pub lost: u64,
    /// Events suppressed by rateLimit.
    pub rate_limited: u64,
    pub sigkill: u64,
    pub signal: u64,
    pub override_: u64,
    /// Enforcing actions not executed because the policy is in monitor mode.
    pub monitored: u64,
    /// Hook runs of the (enabled) policy, at entry and at return.
    pub evaluations: u64,
    /// Of those, the ones timed (one in 64 per CPU), and their nanoseconds.
    pub cost_samples: u64,
    pub cost_ns: u64,
}

impl PolicyStats {
    /// Mean nanoseconds of one evaluation (filters, argument reads, actions, record), from
    /// the timed sample; `None` before the first sample.
    pub fn ns_per_evaluation(&self) -> Option<f64> {
        (self.cost_samples > 0).then(|| self.cost_ns as f64 / self.cost_samples as f64)
    }

    /// Estimated CPU seconds spent in the policy's hooks: evaluations × mean cost.
    pub fn cpu_seconds(&self) -> f64 {
        self.ns_per_evaluation()
            .map_or(0.0, |ns| ns * self.evaluations as f64 / 1e9)
    }
}

/// Everything `ListTracingPolicies` / `vigil policy list` shows about one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    /// Sensor-local id, stable for the policy's lifetime.
    pub id: u64,
    pub name: String,
    /// Empty for cluster-scoped policies.
    pub namespace: String,
    pub origin: PolicyOrigin,
    pub state: PolicyState,
    pub mode: PolicyMode,
    /// Why the policy is in `Error` or `Partial`; empty otherwise.
    pub error: String,
    pub hooks: Vec<HookStatus>,
    pub stats: PolicyStats,
    /// Bytes of kernel memory the policy's map entries and programs take (estimate).
    pub kernel_memory_bytes: u64,
    /// Why the policy's CPU budget switched it to monitor or off (`None`: it did not).
    pub demotion: Option<String>,
}

/// Identifies a policy: name plus namespace (empty for cluster-scoped).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    pub name: String,
    pub namespace: String,
}

impl PolicyKey {
    pub fn new(name: impl Into<String>, namespace: impl Into<String>) -> Self {
        PolicyKey {
            name: name.into(),
            namespace: namespace.into(),
        }
    }
}

impl fmt::Display for PolicyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// What drives the policy engine. Implemented by the hook engine; the gRPC service and the
/// policy-directory watcher hold an `Arc<dyn PolicyControl>`.
pub trait PolicyControl: Send + Sync {
    /// Parses, validates, compiles and loads one TracingPolicy / TracingPolicyNamespaced
    /// document. A policy with the same key already present is an error
    /// ([`SensorError::PolicyExists`]); a manifest that does not validate is rejected with the
    /// validator's message and nothing changes. A policy whose hooks partly fail to load is
    /// kept with state `Partial` (or `Error` when nothing loaded) and returned.
    fn add(&self, yaml: &str, origin: PolicyOrigin) -> Result<PolicyInfo, SensorError>;
    /// Unloads a policy: its map entries, and programs no other policy uses, go away.
    fn delete(&self, key: &PolicyKey) -> Result<(), SensorError>;
    /// All policies, sorted by (namespace, name).
    fn list(&self) -> Vec<PolicyInfo>;
    /// Switches a policy on or off without unloading it.
    fn set_enabled(&self, key: &PolicyKey, enabled: bool) -> Result<PolicyInfo, SensorError>;
    /// Switches enforce/monitor without reloading.
    fn set_mode(&self, key: &PolicyKey, mode: PolicyMode) -> Result<PolicyInfo, SensorError>;
}
