//! In: one compiled policy (IR) and what the kernel offers ([`KernelInfo`]).
//! Out: per hook, its mechanism, `vigil_hook_cfg`, value-set entries and event metadata.
//!
//! Lowering: one compiled policy (IR) → for each hook, the mechanism that serves it on this
//! kernel, the `vigil_hook_cfg` the generic programs read, the value-set entries its selectors
//! look up, and the metadata that turns its records into events.
//!
//! Pure: everything it needs to know about the kernel comes through [`KernelInfo`], so the
//! rules (fallback ladder, limits, what is refused and why) are unit-tested without BPF.
//!
//! `hook.rs` places one hook and reads its arguments; `selector.rs` lowers its selectors.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use vigil_api::policy::ir::{self, ActionKind, ArgOperator, HookKind, PolicyIr};
use vigil_sensor_bpf::abi::{AddrKey, HookCfg, IntKey, op};

use super::meta::HookMeta;
use super::tracefs::Format;
use crate::k8s::pods::{self, WorkloadScope};

mod hook;
mod selector;

use hook::lower_hook;

/// What lowering needs to know about the running kernel.
pub trait KernelInfo {
    /// kprobes can be attached.
    fn kprobes(&self) -> bool;
    /// BPF-LSM programs load and attach.
    fn bpf_lsm(&self) -> bool;
    /// `name` is a kernel function a kprobe can attach to.
    fn kernel_symbol(&self, name: &str) -> bool;
    /// The format of tracepoint `subsystem/event`.
    fn tracepoint(&self, subsystem: &str, event: &str) -> Result<Format, String>;
    /// Inode of the host's (pid 1's) namespace in `slot` (`abi::ns_slot`).
    fn host_namespace(&self, slot: usize) -> u32;
}

/// How one hook is attached on this kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    /// The syscall's own tracepoints (`syscalls/sys_enter_<name>`, plus `sys_exit_<name>` for
    /// return hooks), served by one program pair routed by syscall number: other syscalls pay
    /// nothing.
    SyscallTracepoint { name: String, nr: u32 },
    /// The shared raw syscall tracepoints (`sys_enter`, plus `sys_exit` for return hooks),
    /// routed by syscall number: every syscall of the node pays for them, so only where the
    /// kernel has neither kprobes nor per-syscall tracepoints.
    SysEnter { nr: u32 },
    /// A kprobe (and a kretprobe for return hooks) on a kernel function.
    Kprobe { function: String },
    /// A tracepoint, by its tracefs id.
    Tracepoint { subsystem: String, event: String },
    /// A uprobe on a symbol (or offset) of a binary.
    Uprobe {
        path: PathBuf,
        symbol: String,
        offset: u64,
    },
    /// A BPF-LSM program on `hook` (without the `security_` prefix).
    Lsm { hook: String },
}

impl Mechanism {
    /// How status shows it, e.g. `raw_tracepoint sys_enter (nr 257)`.
    pub fn describe(&self, return_probe: bool) -> String {
        match self {
            Mechanism::SyscallTracepoint { name, .. } if return_probe => {
                format!("tracepoint syscalls/sys_enter_{name}+sys_exit_{name}")
            }
            Mechanism::SyscallTracepoint { name, .. } => {
                format!("tracepoint syscalls/sys_enter_{name}")
            }
            Mechanism::SysEnter { nr } if return_probe => {
                format!("tp_btf sys_enter+sys_exit (syscall {nr})")
            }
            Mechanism::SysEnter { nr } => format!("tp_btf sys_enter (syscall {nr})"),
            Mechanism::Kprobe { .. } if return_probe => "kprobe+kretprobe".into(),
            Mechanism::Kprobe { .. } => "kprobe".into(),
            Mechanism::Tracepoint { subsystem, event } => {
                format!("tracepoint {subsystem}/{event}")
            }
            Mechanism::Uprobe { .. } => "uprobe".into(),
            Mechanism::Lsm { .. } => "lsm".into(),
        }
    }
}

/// Entries a hook adds to the value-set maps (removed with it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetEntries {
    pub ints: Vec<IntKey>,
    /// (set, bytes): exact/prefix strings, or reversed strings for postfix sets.
    pub strs: Vec<(u32, Vec<u8>)>,
    /// (set, prefix length in bits, address bytes; 4 for IPv4).
    pub addrs: Vec<(u32, u32, Vec<u8>)>,
}

impl SetEntries {
    pub fn len(&self) -> usize {
        self.ints.len() + self.strs.len() + self.addrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A hook ready to load: map entries, attach point and event metadata.
#[derive(Debug, Clone)]
pub struct LoweredHook {
    pub source: String,
    pub target: String,
    pub mechanism: Mechanism,
    pub return_probe: bool,
    /// `policy` and `generation` are filled in by the engine.
    pub cfg: HookCfg,
    pub sets: SetEntries,
    pub meta: Arc<HookMeta>,
}

/// A hook that cannot run here, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookFailure {
    pub source: String,
    pub target: String,
    pub reason: String,
}

/// The result of lowering one policy.
#[derive(Debug, Clone)]
pub struct Lowered {
    pub hooks: Vec<Result<LoweredHook, HookFailure>>,
    /// What the policy is limited to (`None`: every process).
    pub scope: Option<PolicyScope>,
}

/// The processes a scoped policy applies to: the selected containers, the host's processes, or
/// both (their union).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyScope {
    /// The pods and containers selected (TracingPolicyNamespaced, podSelector,
    /// containerSelector); the engine turns it into a set of cgroup ids from the pod inventory.
    /// `None`: no container is selected (a policy with only a hostSelector).
    pub workload: Option<WorkloadScope>,
    /// `hostSelector` is given and selects this node: processes outside containers are in the
    /// scope. Node labels are fixed for the sensor's life, so this is decided once, here.
    pub host: bool,
}

/// Allocates value-set ids; ids are never reused while the sensor runs.
#[derive(Debug)]
pub struct SetIds {
    next: u32,
}

impl Default for SetIds {
    fn default() -> Self {
        SetIds { next: 1 }
    }
}

impl SetIds {
    /// Ids from `next` on (lowering again what a previous sensor lowered).
    pub fn starting_at(next: u32) -> Self {
        SetIds { next: next.max(1) }
    }

    /// The id [`SetIds::alloc`] hands out next.
    pub fn peek(&self) -> u32 {
        self.next
    }

    /// A fresh id; `width` ids are reserved (address sets use id and id + 1 for IPv6).
    pub fn alloc(&mut self, width: u32) -> u32 {
        let id = self.next;
        self.next = self.next.wrapping_add(width.max(1));
        if self.next == 0 {
            self.next = 1;
        }
        id
    }
}

/// Lowers every hook of `ir`. An error here rejects the whole policy (it cannot be honoured as
/// written on any kernel, or not on this one where it asks to enforce); a hook that merely
/// cannot attach here is a [`HookFailure`] and the rest of the policy still loads.
///
/// `node_labels` are this node's labels (`--node-labels`), which `spec.hostSelector` is matched
/// against.
pub fn lower(
    ir: &PolicyIr,
    kernel: &dyn KernelInfo,
    node_labels: &BTreeMap<String, String>,
    ids: &mut SetIds,
) -> Result<Lowered, String> {
    if ir.ir_version != vigil_api::policy::IR_VERSION {
        return Err(format!(
            "policy IR version {} is not supported (this sensor reads version {})",
            ir.ir_version,
            vigil_api::policy::IR_VERSION
        ));
    }
    let scope = policy_scope(ir, node_labels);
    if !ir.enforcers.is_empty() {
        return Err("spec.enforcers: not supported yet".into());
    }
    let identity = ir.identity.clone().unwrap_or_default();
    let mut hooks = Vec::new();
    for hook in &ir.hooks {
        let lowered = lower_hook(hook, &identity, kernel, ids);
        match lowered {
            Ok(h) => hooks.push(Ok(h)),
            Err(LowerError::Hook(reason)) => hooks.push(Err(HookFailure {
                source: hook.source.clone(),
                target: hook_target(hook),
                reason,
            })),
            Err(LowerError::Policy(reason)) => {
                return Err(format!("{}: {reason}", hook.source));
            }
        }
    }
    Ok(Lowered { hooks, scope })
}

/// What a policy is limited to. Without a hostSelector, its workload scope (if any). With one,
/// the union of the workload scope (possibly nothing) and, when the selector matches this
/// node's labels, the host's processes: a hostSelector that does not select this node leaves
/// only the containers (or nothing at all).
fn policy_scope(ir: &PolicyIr, node_labels: &BTreeMap<String, String>) -> Option<PolicyScope> {
    let workload = workload_scope(ir);
    match ir.scope.as_ref().and_then(|s| s.host_selector.as_ref()) {
        None => workload.map(|w| PolicyScope {
            workload: Some(w),
            host: false,
        }),
        Some(sel) => Some(PolicyScope {
            workload,
            host: pods::selector_matches(sel, node_labels),
        }),
    }
}

/// Why a policy whose `spec.nodeSelector` does not select this node must not be loaded here
/// (`None`: it has none, or it selects this node). Kubernetes semantics: an empty selector
/// selects every node, requirements and a node without labels select nothing.
pub fn node_selector_mismatch(
    ir: &PolicyIr,
    node_labels: &BTreeMap<String, String>,
) -> Option<String> {
    let sel = ir.scope.as_ref()?.node_selector.as_ref()?;
    if pods::selector_matches(sel, node_labels) {
        return None;
    }
    let labels = if node_labels.is_empty() {
        "none".to_string()
    } else {
        node_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    Some(format!(
        "spec.nodeSelector ({}) does not select this node, whose labels (--node-labels) are: {labels}; not loaded here",
        pods::describe_selector(sel)
    ))
}

/// The workload scope of a policy: the namespace of a TracingPolicyNamespaced, podSelector and
/// containerSelector. `None` when the policy applies to every process.
fn workload_scope(ir: &PolicyIr) -> Option<WorkloadScope> {
    let scope = ir.scope.clone().unwrap_or_default();
    let identity = ir.identity.clone().unwrap_or_default();
    let namespace = if identity.kind() == ir::PolicyKind::Namespaced {
        Some(if scope.namespace.is_empty() {
            identity.namespace.clone()
        } else {
            scope.namespace.clone()
        })
    } else {
        (!scope.namespace.is_empty()).then(|| scope.namespace.clone())
    };
    let w = WorkloadScope {
        namespace,
        pod_selector: scope.pod_selector,
        container_selector: scope.container_selector,
    };
    (w != WorkloadScope::default()).then_some(w)
}

enum LowerError {
    /// This hook cannot run here; the rest of the policy can.
    Hook(String),
    /// The policy cannot be loaded as written.
    Policy(String),
}

fn hook_target(h: &ir::Hook) -> String {
    match h.kind() {
        HookKind::Tracepoint | HookKind::RawTracepoint => format!("{}/{}", h.subsystem, h.target),
        HookKind::Syscall => format!("__x64_sys_{}", h.syscall_name),
        HookKind::Uprobe => format!("{}:{}", h.binary_path, h.target),
        _ => h.target.clone(),
    }
}

/// The LSM hook behind `security_<name>`: mostly `<name>`, but a few hooks carry a suffix the
/// function does not (`security_bprm_check` calls the `bprm_check_security` hook). The kernel's
/// `bpf_lsm_<hook>` functions tell which.
fn lsm_hook_name(name: &str, kernel: &dyn KernelInfo) -> String {
    let suffixed = format!("{name}_security");
    if !kernel.kernel_symbol(&format!("bpf_lsm_{name}"))
        && kernel.kernel_symbol(&format!("bpf_lsm_{suffixed}"))
    {
        suffixed
    } else {
        name.to_string()
    }
}

fn has_override(h: &ir::Hook) -> bool {
    h.selectors.iter().any(|s| {
        s.actions
            .iter()
            .chain(&s.return_actions)
            .any(|a| a.kind() == ActionKind::Override)
    })
}

const NO_OVERRIDE: &str = "Override needs bpf_override_return (CONFIG_BPF_KPROBE_OVERRIDE), which this kernel does not have; deny through an lsmhooks entry or a security_* function instead (e.g. lsmhooks: file_open)";

/// The generic-program op numbers are the IR's; this keeps them from drifting apart.
const _: () = {
    assert!(ArgOperator::Equal as i32 == op::EQUAL as i32);
    assert!(ArgOperator::NotInMap as i32 == op::NOT_IN_MAP as i32);
    assert!(ArgOperator::Saddr as i32 == op::SADDR as i32);
    assert!(ArgOperator::State as i32 == op::STATE as i32);
    assert!(ArgOperator::DportPriv as i32 == op::DPORT_PRIV as i32);
};

/// Address bytes and prefix as the LPM key wants them.
pub fn addr_key(set: u32, prefix_len: u32, addr: &[u8]) -> AddrKey {
    let mut k = AddrKey {
        prefixlen: 32 + prefix_len,
        set,
        addr: [0; 16],
    };
    let n = addr.len().min(16);
    k.addr[..n].copy_from_slice(&addr[..n]);
    k
}

#[cfg(test)]
mod tests;
