//! Lowering: one compiled policy (IR) → for each hook, the mechanism that serves it on this
//! kernel, the `vigil_hook_cfg` the generic programs read, the value-set entries its selectors
//! look up, and the metadata that turns its records into events.
//!
//! Pure: everything it needs to know about the kernel comes through [`KernelInfo`], so the
//! rules (fallback ladder, limits, what is refused and why) are unit-tested without BPF.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use vigil_api::policy::ir::{
    self, ActionKind, ArgFilter, ArgOperator, ArgSpec, ArgType, BinaryOperator, CapabilitySet,
    HookKind, NamespaceType, PolicyIr, RateLimitScope, SetOperator, StringSet,
};
use vigil_api::syscalls;
use vigil_sensor_bpf::abi::{
    self, Action, AddrKey, ArgCfg, BinFilter, CapFilter, Filter, HookCfg, IntKey, NsFilter,
    Selector, act, argf, argk, binop, hook_flags, op, source,
};

use super::meta::{ArgMeta, HookEventKind, HookMeta};
use super::tracefs::Format;
use crate::pods::{self, WorkloadScope};

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

fn lower_hook(
    h: &ir::Hook,
    identity: &ir::PolicyIdentity,
    kernel: &dyn KernelInfo,
    ids: &mut SetIds,
) -> Result<LoweredHook, LowerError> {
    if h.generated.is_some() {
        return Err(LowerError::Hook(
            "generated target lists (generated_syscalls / generated_ftrace): not supported yet"
                .into(),
        ));
    }
    let overrides = has_override(h);
    let return_probe = h.return_probe;
    let mut flags = 0u32;
    let (mechanism, src, kind, function_name, user_mem) = match h.kind() {
        HookKind::Syscall => {
            let name = h.syscall_name.as_str();
            let function = format!("__x64_sys_{name}");
            if overrides {
                return Err(LowerError::Policy(NO_OVERRIDE.into()));
            }
            if kernel.kprobes() && kernel.kernel_symbol(&function) {
                (
                    Mechanism::Kprobe {
                        function: function.clone(),
                    },
                    source::SYSCALL_WRAPPER,
                    HookEventKind::Kprobe,
                    function,
                    true,
                )
            } else {
                let nr = syscalls::x86_64_number(name).ok_or_else(|| {
                    LowerError::Hook(format!("syscall {name:?} does not exist on x86_64"))
                })?;
                if nr as usize >= abi::SYSCALL_MAX {
                    return Err(LowerError::Hook(format!(
                        "syscall {name} (number {nr}) is beyond the {} syscalls the syscall programs route",
                        abi::SYSCALL_MAX
                    )));
                }
                let own_tracepoints = kernel
                    .tracepoint("syscalls", &format!("sys_enter_{name}"))
                    .is_ok()
                    && (!return_probe
                        || kernel
                            .tracepoint("syscalls", &format!("sys_exit_{name}"))
                            .is_ok());
                let mechanism = if own_tracepoints {
                    Mechanism::SyscallTracepoint {
                        name: name.into(),
                        nr,
                    }
                } else {
                    Mechanism::SysEnter { nr }
                };
                (
                    mechanism,
                    source::REGS,
                    HookEventKind::Kprobe,
                    function,
                    true,
                )
            }
        }
        HookKind::Kprobe | HookKind::Kretprobe => {
            let function = h.target.clone();
            let lsm_name = function
                .strip_prefix("security_")
                .map(|h| lsm_hook_name(h, kernel));
            let lsm_name = lsm_name.as_deref();
            if overrides {
                // Deny through BPF-LSM: the same hook point, a program that may return an error.
                let Some(hook) = lsm_name else {
                    return Err(LowerError::Policy(NO_OVERRIDE.into()));
                };
                if !kernel.bpf_lsm() {
                    return Err(LowerError::Policy(format!(
                        "Override on {function} needs BPF-LSM (boot with lsm=...,bpf), which this kernel does not have active"
                    )));
                }
                if return_probe {
                    return Err(LowerError::Policy(format!(
                        "Override on {function} with return: true: not supported (the LSM program decides at entry)"
                    )));
                }
                flags |= hook_flags::CAN_OVERRIDE;
                (
                    Mechanism::Lsm { hook: hook.into() },
                    source::BTF_ARGS,
                    HookEventKind::Kprobe,
                    function,
                    false,
                )
            } else if kernel.kprobes() {
                if !kernel.kernel_symbol(&function) {
                    return Err(LowerError::Hook(format!(
                        "kernel function {function} not found (not in available_filter_functions)"
                    )));
                }
                (
                    Mechanism::Kprobe {
                        function: function.clone(),
                    },
                    source::REGS,
                    HookEventKind::Kprobe,
                    function,
                    false,
                )
            } else if let (Some(hook), true, false) = (lsm_name, kernel.bpf_lsm(), return_probe) {
                (
                    Mechanism::Lsm { hook: hook.into() },
                    source::BTF_ARGS,
                    HookEventKind::Kprobe,
                    function,
                    false,
                )
            } else {
                return Err(LowerError::Hook(format!(
                    "kprobes are not available on this kernel (CONFIG_KPROBES off or not permitted) and {function} has no fallback"
                )));
            }
        }
        HookKind::Tracepoint => (
            Mechanism::Tracepoint {
                subsystem: h.subsystem.clone(),
                event: h.target.clone(),
            },
            source::TRACEPOINT,
            HookEventKind::Tracepoint {
                subsys: h.subsystem.clone(),
                event: h.target.clone(),
            },
            String::new(),
            h.subsystem == "syscalls",
        ),
        HookKind::Uprobe => {
            if return_probe {
                return Err(LowerError::Hook("uretprobes: not supported yet".into()));
            }
            let path = PathBuf::from(&h.binary_path);
            if !path.is_file() {
                return Err(LowerError::Hook(format!(
                    "uprobe binary {} not found",
                    path.display()
                )));
            }
            (
                Mechanism::Uprobe {
                    path,
                    symbol: h.target.clone(),
                    offset: h.offset,
                },
                source::REGS,
                HookEventKind::Uprobe {
                    path: h.binary_path.clone(),
                    symbol: h.target.clone(),
                    offset: h.offset,
                },
                String::new(),
                true,
            )
        }
        HookKind::Lsm => {
            if !kernel.bpf_lsm() {
                return Err(LowerError::Hook(
                    "BPF-LSM is not active on this kernel (needs CONFIG_BPF_LSM and lsm=...,bpf on the kernel command line)"
                        .into(),
                ));
            }
            flags |= hook_flags::CAN_OVERRIDE;
            (
                Mechanism::Lsm {
                    hook: h.target.clone(),
                },
                source::BTF_ARGS,
                HookEventKind::Lsm,
                h.target.clone(),
                false,
            )
        }
        HookKind::RawTracepoint | HookKind::Unspecified => {
            return Err(LowerError::Hook(format!(
                "hook kind {:?}: not supported yet",
                h.kind()
            )));
        }
    };
    if return_probe
        && matches!(
            mechanism,
            Mechanism::Lsm { .. } | Mechanism::Tracepoint { .. }
        )
    {
        return Err(LowerError::Hook(
            "return: true on an LSM hook or a tracepoint: there is no return to observe".into(),
        ));
    }
    if user_mem {
        flags |= hook_flags::USER_MEM;
    }
    if return_probe {
        flags |= hook_flags::RETURN;
    }
    let is_syscall = h.kind() == HookKind::Syscall;

    let format = match &mechanism {
        Mechanism::Tracepoint { subsystem, event } => Some(
            kernel
                .tracepoint(subsystem, event)
                .map_err(LowerError::Hook)?,
        ),
        _ => None,
    };

    // `nop` arguments are declared but neither read nor reported.
    let args: Vec<ArgSpec> = h
        .args
        .iter()
        .filter(|a| a.r#type() != ArgType::Nop)
        .cloned()
        .collect();
    if args.len() > abi::HOOK_ARGS {
        return Err(LowerError::Policy(format!(
            "{} arguments: at most {} per hook",
            args.len(),
            abi::HOOK_ARGS
        )));
    }
    let mut cfg = HookCfg {
        flags,
        source: src,
        nargs: args.len() as u8,
        ret_signed: 1,
        ..Default::default()
    };
    let mut metas = Vec::new();
    for (i, spec) in args.iter().enumerate() {
        cfg.args[i] = lower_arg(spec, &args, is_syscall, format.as_ref())
            .map_err(|e| LowerError::Policy(format!("args[{i}]: {e}")))?;
        metas.push(ArgMeta {
            ir_type: spec.r#type(),
            kind: cfg.args[i].kind,
            label: spec.label.clone(),
        });
    }

    if h.selectors.len() > abi::HOOK_SELECTORS {
        return Err(LowerError::Policy(format!(
            "{} selectors: at most {} per hook",
            h.selectors.len(),
            abi::HOOK_SELECTORS
        )));
    }
    let mut sets = SetEntries::default();
    for (i, s) in h.selectors.iter().enumerate() {
        let (sel, need) = lower_selector(s, h, &args, &cfg, kernel, ids, &mut sets)
            .map_err(|e| LowerError::Policy(format!("selectors[{i}]: {e}")))?;
        cfg.sel[i] = sel;
        cfg.flags |= need;
    }
    cfg.nsel = h.selectors.len() as u8;
    plan_reads(&mut cfg, &sets);

    let meta = HookMeta {
        policy_name: identity.name.clone(),
        policy_namespace: identity.namespace.clone(),
        kind,
        function_name,
        args: metas,
        return_type: return_probe.then(|| {
            h.return_arg
                .as_ref()
                .map(|a| a.r#type())
                .unwrap_or(ArgType::Int32)
        }),
        message: h.message.clone(),
        tags: h.tags.clone(),
    };
    Ok(LoweredHook {
        source: h.source.clone(),
        target: hook_target(h),
        mechanism,
        return_probe,
        cfg,
        sets,
        meta: Arc::new(meta),
    })
}

/// What the program reads before its selectors decide: `filter_args` (the arguments some
/// matchArgs filter looks at) and, per string or buffer argument, `peek`: when every filter on
/// it is an (in)equality or a (non-)prefix, the longest compared value + 2 bytes decide (the
/// extra byte tells a longer string apart), so a long argument is not read in full for a call
/// that matches nothing. A postfix, or any other filter, needs the whole slot (peek 0).
fn plan_reads(cfg: &mut HookCfg, sets: &SetEntries) {
    let mut peek: [Option<usize>; abi::HOOK_ARGS] = [None; abi::HOOK_ARGS];
    let mut full = [false; abi::HOOK_ARGS];
    cfg.filter_args = 0;
    for sel in &cfg.sel[..usize::from(cfg.nsel).min(abi::HOOK_SELECTORS)] {
        for f in &sel.args[..usize::from(sel.n_args).min(abi::SEL_ARG_FILTERS)] {
            let a = usize::from(f.arg);
            if a >= abi::HOOK_ARGS {
                continue;
            }
            cfg.filter_args |= 1 << a;
            let bounded = matches!(cfg.args[a].kind, argk::STR | argk::BUF)
                && matches!(
                    f.op,
                    op::EQUAL | op::NOT_EQUAL | op::PREFIX | op::NOT_PREFIX
                );
            if !bounded {
                full[a] = true;
                continue;
            }
            let longest = sets
                .strs
                .iter()
                .filter(|(set, _)| *set == f.set)
                .map(|(_, b)| b.len())
                .max()
                .unwrap_or(0);
            peek[a] = Some(peek[a].unwrap_or(0).max(longest + 2));
        }
    }
    for (i, a) in cfg.args.iter_mut().enumerate() {
        a.peek = match peek[i] {
            Some(n) if !full[i] && n < abi::ARG_SLOT => n as u16,
            _ => 0,
        };
    }
}

/// How an argument is read: kind, size, signedness.
fn lower_arg(
    spec: &ArgSpec,
    all: &[ArgSpec],
    is_syscall: bool,
    format: Option<&Format>,
) -> Result<ArgCfg, String> {
    let t = spec.r#type();
    let int = |size: u8, signed: bool| (argk::INT, size, if signed { argf::SIGNED } else { 0 });
    let (kind, size, mut flags) = match t {
        ArgType::Int8 => int(1, true),
        ArgType::Uint8 => int(1, false),
        ArgType::Int16 => int(2, true),
        ArgType::Uint16 => int(2, false),
        ArgType::Int32 | ArgType::Capability => int(4, true),
        ArgType::Uint32 => int(4, false),
        ArgType::Int64 | ArgType::Syscall64 => int(8, true),
        ArgType::Uint64 | ArgType::SizeT => int(8, false),
        ArgType::String => (argk::STR, 0, 0),
        ArgType::CharBuf => (argk::BUF, 0, 0),
        // A syscall has descriptors where a kernel function has files and sockets: resolve them.
        ArgType::Fd => (argk::FD, 0, 0),
        ArgType::File if is_syscall => (argk::FD, 0, 0),
        ArgType::File => (argk::FILE, 0, 0),
        ArgType::Path => (argk::PATH, 0, 0),
        ArgType::Dentry => (argk::DENTRY, 0, 0),
        ArgType::LinuxBinprm => (argk::BINPRM, 0, 0),
        ArgType::Sock if is_syscall => (argk::FD_SOCK, 0, 0),
        ArgType::Sock => (argk::SOCK, 0, 0),
        ArgType::Sockaddr => (argk::SOCKADDR, 0, 0),
        ArgType::Cred => (argk::CRED, 0, 0),
        other => {
            return Err(format!(
                "argument type {} is not supported yet",
                other
                    .as_str_name()
                    .trim_start_matches("ARG_TYPE_")
                    .to_lowercase()
            ));
        }
    };
    if spec.index > 5 && format.is_none() {
        return Err(format!(
            "index {} is beyond the 6 register arguments",
            spec.index
        ));
    }
    let mut cfg = ArgCfg {
        kind,
        index: spec.index as u8,
        size,
        ..Default::default()
    };
    if let Some(fmt) = format {
        let field = fmt.fields.get(spec.index as usize).ok_or_else(|| {
            format!(
                "index {}: the tracepoint has {} fields",
                spec.index,
                fmt.fields.len()
            )
        })?;
        if field.size > 8 {
            return Err(format!(
                "index {} ({}): {}-byte fields are not supported yet",
                spec.index, field.name, field.size
            ));
        }
        cfg.tp_offset = u16::try_from(field.offset)
            .map_err(|_| format!("field {} offset too large", field.name))?;
        if kind == argk::INT {
            // The field's real size decides how many bytes are read; the declared type decides
            // signedness and rendering.
            cfg.size = field.size as u8;
        } else {
            cfg.size = 8; // pointers
        }
    }
    if kind == argk::BUF {
        if let Some(si) = spec.size_arg_index {
            let pos = all
                .iter()
                .position(|a| a.index == si)
                .ok_or_else(|| format!("sizeArgIndex {si} does not name a declared argument"))?;
            flags |= argf::SIZE_ARG;
            cfg.size_arg = pos as u8;
        }
        if spec.return_copy {
            flags |= argf::RETURN_COPY;
        }
    }
    cfg.flags = flags;
    Ok(cfg)
}

fn set_op(o: SetOperator) -> Result<u8, String> {
    match o {
        SetOperator::In => Ok(abi::SET_IN),
        SetOperator::NotIn => Ok(abi::SET_NOT_IN),
        SetOperator::Unspecified => Err("operator missing".into()),
    }
}

fn ns_slot(t: NamespaceType) -> Result<usize, String> {
    use abi::ns_slot::*;
    Ok(match t {
        NamespaceType::Uts => UTS,
        NamespaceType::Ipc => IPC,
        NamespaceType::Mnt => MNT,
        NamespaceType::Pid => PID,
        NamespaceType::PidForChildren => PID_FOR_CHILDREN,
        NamespaceType::Net => NET,
        NamespaceType::Time => TIME,
        NamespaceType::TimeForChildren => TIME_FOR_CHILDREN,
        NamespaceType::Cgroup => CGROUP,
        NamespaceType::User => USER,
        NamespaceType::Unspecified => return Err("namespace type missing".into()),
    })
}

fn cap_which(s: CapabilitySet) -> u8 {
    match s {
        CapabilitySet::Inheritable => 1,
        CapabilitySet::Permitted => 2,
        _ => 0,
    }
}

/// Strings of a set, checked against the compared length.
fn strings(set: &Option<StringSet>) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    for b in set.iter().flat_map(|s| &s.buckets) {
        for v in &b.values {
            if v.len() > abi::STR_MAX {
                return Err(format!(
                    "value {:?}… is {} bytes; values longer than {} bytes are not supported",
                    &v[..v.char_indices().nth(32).map(|(i, _)| i).unwrap_or(v.len())],
                    v.len(),
                    abi::STR_MAX
                ));
            }
            out.push(v.as_str());
        }
    }
    Ok(out)
}

fn add_strings(values: &[&str], reversed: bool, ids: &mut SetIds, sets: &mut SetEntries) -> u32 {
    let set = ids.alloc(1);
    for v in values {
        let mut b = v.as_bytes().to_vec();
        if reversed {
            b.reverse();
        }
        sets.strs.push((set, b));
    }
    set
}

fn add_ints(values: impl IntoIterator<Item = u64>, ids: &mut SetIds, sets: &mut SetEntries) -> u32 {
    let set = ids.alloc(1);
    for v in values {
        sets.ints.push(IntKey {
            set,
            pad: 0,
            value: v,
        });
    }
    set
}

fn lower_selector(
    s: &ir::Selector,
    h: &ir::Hook,
    args: &[ArgSpec],
    cfg: &HookCfg,
    kernel: &dyn KernelInfo,
    ids: &mut SetIds,
    sets: &mut SetEntries,
) -> Result<(Selector, u32), String> {
    let mut sel = Selector::default();
    let mut need = 0u32;
    match s.pids.as_slice() {
        [] => {}
        [p] => {
            sel.pid_op = set_op(p.operator())?;
            sel.pid_flags = if p.follow_forks {
                abi::PID_FOLLOW_FORKS
            } else {
                0
            } | if p.is_namespace_pid {
                abi::PID_NAMESPACE
            } else {
                0
            };
            sel.pid_set = add_ints(p.pids.iter().map(|&v| u64::from(v)), ids, sets);
        }
        _ => return Err("more than one matchPIDs entry: not supported yet".into()),
    }
    if s.binaries.len() > abi::SEL_BIN_FILTERS {
        return Err(format!(
            "{} matchBinaries entries: at most {}",
            s.binaries.len(),
            abi::SEL_BIN_FILTERS
        ));
    }
    for (i, b) in s.binaries.iter().enumerate() {
        let values = strings(&b.values)?;
        let (opv, reversed) = match b.operator() {
            BinaryOperator::In => (binop::IN, false),
            BinaryOperator::NotIn => (binop::NOT_IN, false),
            BinaryOperator::Prefix => (binop::PREFIX, false),
            BinaryOperator::NotPrefix => (binop::NOT_PREFIX, false),
            BinaryOperator::Postfix => (binop::POSTFIX, true),
            BinaryOperator::NotPostfix => (binop::NOT_POSTFIX, true),
            BinaryOperator::Unspecified => return Err("matchBinaries operator missing".into()),
        };
        need |= hook_flags::NEED_PROC;
        sel.bins[i] = BinFilter {
            op: opv,
            follow: b.follow_children as u8,
            pad: 0,
            set: add_strings(&values, reversed, ids, sets),
        };
    }
    sel.n_bin = s.binaries.len() as u8;
    if s.namespaces.len() > abi::SEL_NS_FILTERS {
        return Err(format!(
            "{} matchNamespaces entries: at most {}",
            s.namespaces.len(),
            abi::SEL_NS_FILTERS
        ));
    }
    for (i, n) in s.namespaces.iter().enumerate() {
        let slot = ns_slot(n.namespace())?;
        let mut inodes: Vec<u64> = n.inodes.iter().map(|&v| u64::from(v)).collect();
        if n.host_ns {
            inodes.push(u64::from(kernel.host_namespace(slot)));
        }
        sel.ns[i] = NsFilter {
            slot: slot as u8,
            op: set_op(n.operator())?,
            pad: 0,
            set: add_ints(inodes, ids, sets),
        };
        need |= hook_flags::NEED_NS;
    }
    sel.n_ns = s.namespaces.len() as u8;
    if let Some(c) = &s.namespace_changes {
        sel.nschg_op = set_op(c.operator())?;
        for t in c.namespaces() {
            sel.nschg_mask |= 1 << ns_slot(t)?;
        }
        need |= hook_flags::NEED_NS | hook_flags::NEED_PROC;
    }
    for (list, out, n, what) in [
        (
            &s.capabilities,
            &mut sel.caps,
            &mut sel.n_cap,
            "matchCapabilities",
        ),
        (
            &s.capability_changes,
            &mut sel.capchg,
            &mut sel.n_capchg,
            "matchCapabilityChanges",
        ),
    ] {
        if list.len() > abi::SEL_CAP_FILTERS {
            return Err(format!(
                "{} {what} entries: at most {}",
                list.len(),
                abi::SEL_CAP_FILTERS
            ));
        }
        for (i, c) in list.iter().enumerate() {
            out[i] = CapFilter {
                which: cap_which(c.set()),
                op: set_op(c.operator())?,
                ns_cap: c.is_namespace_capability as u8,
                mask: c.mask,
                ..Default::default()
            };
            need |= hook_flags::NEED_CAPS;
        }
        *n = list.len() as u8;
    }
    if !s.capability_changes.is_empty() {
        // Changes are against the capabilities at exec, from the process table.
        need |= hook_flags::NEED_PROC;
    }
    if s.args.len() > abi::SEL_ARG_FILTERS {
        return Err(format!(
            "{} matchArgs entries: at most {}",
            s.args.len(),
            abi::SEL_ARG_FILTERS
        ));
    }
    for (i, f) in s.args.iter().enumerate() {
        let pos = args
            .iter()
            .position(|a| a.index == f.index)
            .ok_or_else(|| {
                format!(
                    "matchArgs[{i}]: index {} does not name a declared argument",
                    f.index
                )
            })?;
        sel.args[i] = lower_filter(f, cfg.args[pos].kind, ids, sets)
            .map_err(|e| format!("matchArgs[{i}]: {e}"))?;
        sel.args[i].arg = pos as u8;
    }
    sel.n_args = s.args.len() as u8;
    if s.return_args.len() > abi::SEL_RET_FILTERS {
        return Err(format!(
            "{} matchReturnArgs entries: at most {}",
            s.return_args.len(),
            abi::SEL_RET_FILTERS
        ));
    }
    if !s.return_args.is_empty() && !h.return_probe {
        return Err("matchReturnArgs needs return: true on the hook".into());
    }
    for (i, f) in s.return_args.iter().enumerate() {
        sel.ret[i] = lower_filter(f, argk::INT, ids, sets)
            .map_err(|e| format!("matchReturnArgs[{i}]: {e}"))?;
    }
    sel.n_ret = s.return_args.len() as u8;
    let actions: Vec<&ir::Action> = s.actions.iter().chain(&s.return_actions).collect();
    if actions.len() > abi::SEL_ACTIONS {
        return Err(format!(
            "{} actions: at most {}",
            actions.len(),
            abi::SEL_ACTIONS
        ));
    }
    for (i, a) in actions.iter().enumerate() {
        sel.actions[i] = lower_action(a).map_err(|e| format!("matchActions[{i}]: {e}"))?;
    }
    sel.n_actions = actions.len() as u8;
    Ok((sel, need))
}

fn lower_action(a: &ir::Action) -> Result<Action, String> {
    let mut out = Action::default();
    match a.kind() {
        ActionKind::Post => {
            out.kind = act::POST;
            out.rate_ns = a.rate_limit_ms.saturating_mul(1_000_000);
            out.scope = match a.rate_limit_scope() {
                RateLimitScope::Thread => abi::scope::THREAD,
                RateLimitScope::Process => abi::scope::PROCESS,
                _ => abi::scope::GLOBAL,
            };
            if a.kernel_stack_trace || a.user_stack_trace {
                return Err("stack traces: not supported yet".into());
            }
        }
        ActionKind::NoPost => out.kind = act::NOPOST,
        ActionKind::Sigkill => out.kind = act::SIGKILL,
        ActionKind::Signal => {
            out.kind = act::SIGNAL;
            out.arg = a.signal as i32;
        }
        ActionKind::Override => {
            out.kind = act::OVERRIDE;
            out.arg = a.error.unwrap_or(-1);
        }
        other => {
            return Err(format!(
                "action {} is not supported yet",
                other.as_str_name().trim_start_matches("ACTION_KIND_")
            ));
        }
    }
    Ok(out)
}

fn ranges<T: Copy>(list: &[T], f: impl Fn(T) -> [u64; 2]) -> Result<(u8, [[u64; 2]; 4]), String> {
    if list.len() > abi::FILTER_RANGES {
        return Err(format!(
            "{} ranges: at most {}",
            list.len(),
            abi::FILTER_RANGES
        ));
    }
    let mut out = [[0u64; 2]; abi::FILTER_RANGES];
    for (i, r) in list.iter().enumerate() {
        out[i] = f(*r);
    }
    Ok((list.len() as u8, out))
}

fn lower_filter(
    f: &ArgFilter,
    kind: u8,
    ids: &mut SetIds,
    sets: &mut SetEntries,
) -> Result<Filter, String> {
    let o = f.operator();
    let mut out = Filter {
        op: o as i32 as u8,
        ..Default::default()
    };
    let signed = !f.signed_values.is_empty() || !f.signed_ranges.is_empty();
    out.is_signed = signed as u8;
    let unsupported = || {
        format!(
            "operator {} on this argument type: not supported yet",
            o.as_str_name().trim_start_matches("ARG_OPERATOR_")
        )
    };
    match kind {
        argk::INT => match o {
            ArgOperator::Equal
            | ArgOperator::NotEqual
            | ArgOperator::InMap
            | ArgOperator::NotInMap => {
                let mut values: Vec<u64> = f
                    .signed_values
                    .iter()
                    .map(|&v| v as u64)
                    .chain(f.unsigned_values.iter().copied())
                    .collect();
                for name in &f.syscalls {
                    let bare = name
                        .trim_start_matches("__x64_sys_")
                        .trim_start_matches("sys_");
                    let nr = syscalls::x86_64_number(bare)
                        .ok_or_else(|| format!("syscall {name:?} does not exist on x86_64"))?;
                    values.push(u64::from(nr));
                }
                out.set = add_ints(values, ids, sets);
            }
            ArgOperator::GreaterThan | ArgOperator::LessThan | ArgOperator::Mask => {
                out.value = f
                    .signed_values
                    .first()
                    .map(|&v| v as u64)
                    .or(f.unsigned_values.first().copied())
                    .ok_or("a value is required")?;
            }
            ArgOperator::InRange | ArgOperator::NotInRange => {
                let (n, r) = if signed {
                    ranges(&f.signed_ranges, |r| [r.min as u64, r.max as u64])?
                } else {
                    ranges(&f.unsigned_ranges, |r| [r.min, r.max])?
                };
                out.nranges = n;
                out.ranges = r;
            }
            _ => return Err(unsupported()),
        },
        argk::STR
        | argk::BUF
        | argk::FD
        | argk::FILE
        | argk::PATH
        | argk::DENTRY
        | argk::BINPRM => {
            let values = strings(&f.strings)?;
            let reversed = match o {
                ArgOperator::Equal
                | ArgOperator::NotEqual
                | ArgOperator::Prefix
                | ArgOperator::NotPrefix => false,
                ArgOperator::Postfix | ArgOperator::NotPostfix => true,
                _ => return Err(unsupported()),
            };
            out.set = add_strings(&values, reversed, ids, sets);
        }
        argk::SOCK | argk::FD_SOCK | argk::SOCKADDR => match o {
            ArgOperator::Saddr
            | ArgOperator::NotSaddr
            | ArgOperator::Daddr
            | ArgOperator::NotDaddr => {
                let set = ids.alloc(2);
                for c in &f.addresses {
                    let (s, len) = if c.ip_version == 6 {
                        (set + 1, 128)
                    } else {
                        (set, 32)
                    };
                    let _ = len;
                    sets.addrs.push((s, c.prefix_len, c.address.clone()));
                }
                out.set = set;
            }
            ArgOperator::Sport
            | ArgOperator::NotSport
            | ArgOperator::Dport
            | ArgOperator::NotDport => {
                let (n, r) = ranges(&f.ports, |p| [u64::from(p.min), u64::from(p.max)])?;
                out.nranges = n;
                out.ranges = r;
            }
            ArgOperator::SportPriv
            | ArgOperator::NotSportPriv
            | ArgOperator::DportPriv
            | ArgOperator::NotDportPriv => {}
            ArgOperator::Protocol | ArgOperator::Family | ArgOperator::State => {
                if kind == argk::SOCKADDR && o != ArgOperator::Family {
                    return Err(unsupported());
                }
                out.set = add_ints(f.small_values.iter().map(|&v| u64::from(v)), ids, sets);
            }
            _ => return Err(unsupported()),
        },
        _ => return Err(unsupported()),
    }
    Ok(out)
}

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
mod tests {
    use super::*;
    use vigil_api::policy::compile_yaml;

    struct FakeKernel {
        kprobes: bool,
        lsm: bool,
        /// `syscalls/sys_enter_<name>` and `sys_exit_<name>` exist.
        syscall_tracepoints: bool,
    }

    impl KernelInfo for FakeKernel {
        fn kprobes(&self) -> bool {
            self.kprobes
        }
        fn bpf_lsm(&self) -> bool {
            self.lsm
        }
        fn kernel_symbol(&self, name: &str) -> bool {
            // As in the kernel: the LSM hook of security_bprm_check is bprm_check_security.
            name != "no_such_function" && name != "bpf_lsm_bprm_check"
        }
        fn tracepoint(&self, subsystem: &str, event: &str) -> Result<Format, String> {
            if (subsystem, event) == ("raw_syscalls", "sys_enter") {
                super::super::tracefs::parse(
                    "ID: 443\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\tfield:long id;\toffset:8;\tsize:8;\tsigned:1;\n\tfield:unsigned long args[6];\toffset:16;\tsize:48;\tsigned:0;\n",
                )
            } else if subsystem == "syscalls" && self.syscall_tracepoints {
                super::super::tracefs::parse("ID: 700\n")
            } else {
                Err(format!("tracepoint {subsystem}/{event} not found"))
            }
        }
        fn host_namespace(&self, slot: usize) -> u32 {
            4026531830 + slot as u32
        }
    }

    const HOST: FakeKernel = FakeKernel {
        kprobes: false,
        lsm: false,
        syscall_tracepoints: true,
    };
    const VM: FakeKernel = FakeKernel {
        kprobes: true,
        lsm: true,
        syscall_tracepoints: true,
    };
    /// Neither kprobes nor per-syscall tracepoints (CONFIG_FTRACE_SYSCALLS off).
    const BARE: FakeKernel = FakeKernel {
        kprobes: false,
        lsm: false,
        syscall_tracepoints: false,
    };

    fn lower_yaml(yaml: &str, k: &FakeKernel) -> Result<Lowered, String> {
        let ir = compile_yaml(yaml).map_err(|e| e.to_string())?.remove(0);
        lower(&ir, k, &BTreeMap::new(), &mut SetIds::default())
    }

    const OPEN: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: files}
spec:
  kprobes:
  - call: sys_openat
    syscall: true
    args:
    - {index: 1, type: string}
    selectors:
    - matchArgs:
      - {index: 1, operator: Prefix, values: ["/tmp/x", "/etc/"]}
      matchBinaries:
      - {operator: In, values: ["/usr/bin/cat"]}
"#;

    #[test]
    fn syscall_ladder_kprobe_then_its_own_tracepoint_then_the_raw_route() {
        let l = lower_yaml(OPEN, &HOST).unwrap();
        let h = l.hooks[0].as_ref().unwrap();
        assert_eq!(
            h.mechanism,
            Mechanism::SyscallTracepoint {
                name: "openat".into(),
                nr: 257
            }
        );
        assert_eq!(
            h.mechanism.describe(false),
            "tracepoint syscalls/sys_enter_openat"
        );
        assert_eq!(h.cfg.source, source::REGS);
        assert_eq!(h.meta.function_name, "__x64_sys_openat");
        assert!(h.cfg.flags & hook_flags::USER_MEM != 0);
        let l = lower_yaml(OPEN, &BARE).unwrap();
        let h = l.hooks[0].as_ref().unwrap();
        assert_eq!(h.mechanism, Mechanism::SysEnter { nr: 257 });
        assert_eq!(h.cfg.source, source::REGS);
        let l = lower_yaml(OPEN, &VM).unwrap();
        let h = l.hooks[0].as_ref().unwrap();
        assert_eq!(
            h.mechanism,
            Mechanism::Kprobe {
                function: "__x64_sys_openat".into()
            }
        );
        assert_eq!(h.cfg.source, source::SYSCALL_WRAPPER);
    }

    #[test]
    fn selectors_become_sets() {
        let l = lower_yaml(OPEN, &HOST).unwrap();
        let h = l.hooks[0].as_ref().unwrap();
        let s = &h.cfg.sel[0];
        assert_eq!((h.cfg.nsel, s.n_args, s.n_bin), (1, 1, 1));
        assert_eq!(s.args[0].op, op::PREFIX);
        assert_eq!(
            s.args[0].arg, 0,
            "position of index 1 among the declared args"
        );
        let arg_set: Vec<&[u8]> = h
            .sets
            .strs
            .iter()
            .filter(|(set, _)| *set == s.args[0].set)
            .map(|(_, b)| b.as_slice())
            .collect();
        assert_eq!(arg_set, vec![b"/etc/".as_slice(), b"/tmp/x".as_slice()]);
        assert_eq!(s.bins[0].op, binop::IN);
        assert_ne!(s.bins[0].set, s.args[0].set);
        assert_eq!(h.cfg.args[0].kind, argk::STR);
    }

    #[test]
    fn postfix_values_are_reversed() {
        let y = OPEN.replace("operator: Prefix", "operator: Postfix");
        let l = lower_yaml(&y, &HOST).unwrap();
        let h = l.hooks[0].as_ref().unwrap();
        assert!(h.sets.strs.iter().any(|(_, b)| b == b"x/pmt/"));
    }

    #[test]
    fn kprobe_without_kprobes_fails_only_that_hook() {
        let y = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: mixed}
spec:
  kprobes:
  - {call: tcp_connect, syscall: false, args: [{index: 0, type: sock}]}
  - {call: sys_close, syscall: true, args: [{index: 0, type: int}]}
"#;
        let l = lower_yaml(y, &HOST).unwrap();
        let err = l.hooks[0].as_ref().unwrap_err();
        assert!(
            err.reason.contains("kprobes are not available"),
            "{}",
            err.reason
        );
        assert_eq!(err.target, "tcp_connect");
        assert!(l.hooks[1].is_ok());
        let l = lower_yaml(y, &VM).unwrap();
        assert_eq!(l.hooks[0].as_ref().unwrap().cfg.args[0].kind, argk::SOCK);
    }

    #[test]
    fn override_on_a_syscall_rejects_the_policy_with_the_reason() {
        let y = OPEN.replace(
            "matchBinaries:",
            "matchActions:\n      - {action: Override, argError: -1}\n      matchBinaries:",
        );
        let err = lower_yaml(&y, &VM).unwrap_err();
        assert!(err.contains("bpf_override_return"), "{err}");
        assert!(err.contains("lsmhooks"), "{err}");
    }

    #[test]
    fn override_on_security_function_uses_lsm_where_active() {
        let y = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: deny}
spec:
  kprobes:
  - call: security_file_open
    syscall: false
    args: [{index: 0, type: file}]
    selectors:
    - matchArgs: [{index: 0, operator: Equal, values: ["/tmp/secret"]}]
      matchActions: [{action: Override, argError: -1}]
"#;
        let h = lower_yaml(y, &VM).unwrap().hooks.remove(0).unwrap();
        assert_eq!(
            h.mechanism,
            Mechanism::Lsm {
                hook: "file_open".into()
            }
        );
        assert!(h.cfg.flags & hook_flags::CAN_OVERRIDE != 0);
        assert_eq!(h.cfg.sel[0].actions[0].kind, act::OVERRIDE);
        assert_eq!(h.cfg.sel[0].actions[0].arg, -1);
        assert!(lower_yaml(y, &HOST).unwrap_err().contains("BPF-LSM"));
    }

    #[test]
    fn tracepoint_args_read_fields_by_offset() {
        let y = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: raw}
spec:
  tracepoints:
  - {subsystem: raw_syscalls, event: sys_enter, args: [{index: 4, type: syscall64}]}
"#;
        let h = lower_yaml(y, &HOST).unwrap().hooks.remove(0).unwrap();
        assert_eq!(
            h.mechanism,
            Mechanism::Tracepoint {
                subsystem: "raw_syscalls".into(),
                event: "sys_enter".into()
            }
        );
        assert_eq!(h.cfg.source, source::TRACEPOINT);
        assert_eq!((h.cfg.args[0].tp_offset, h.cfg.args[0].size), (8, 8));
        let bad = y.replace("sys_enter,", "no_such,");
        let l = lower_yaml(&bad, &HOST).unwrap();
        assert!(
            l.hooks[0]
                .as_ref()
                .unwrap_err()
                .reason
                .contains("not found")
        );
    }

    #[test]
    fn limits_are_named() {
        let many: String = (0..6)
            .map(|i| format!("      - {{index: 1, operator: Equal, values: [\"/x{i}\"]}}\n"))
            .collect();
        let y = format!(
            "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {{name: l}}\nspec:\n  kprobes:\n  - call: sys_openat\n    args: [{{index: 1, type: string}}]\n    selectors:\n    - matchArgs:\n{many}"
        );
        let err = lower_yaml(&y, &HOST).unwrap_err();
        assert!(err.contains("6 matchArgs entries: at most 5"), "{err}");
    }

    #[test]
    fn workload_scopes_are_lowered() {
        let y = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicyNamespaced
metadata: {name: ns, namespace: default}
spec:
  kprobes: [{call: sys_close, syscall: true}]
"#;
        let l = lower_yaml(y, &HOST).unwrap();
        let scope = l.scope.expect("a scope");
        assert!(!scope.host);
        let scope = scope.workload.expect("a workload scope");
        assert_eq!(scope.namespace.as_deref(), Some("default"));
        assert!(scope.pod_selector.is_none());
        let y = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: sel}
spec:
  podSelector: {matchLabels: {app: web}}
  containerSelector: {matchExpressions: [{key: name, operator: In, values: [main]}]}
  kprobes: [{call: sys_close, syscall: true}]
"#;
        let scope = lower_yaml(y, &HOST).unwrap().scope.expect("a scope");
        assert!(!scope.host);
        let scope = scope.workload.expect("a workload scope");
        assert_eq!(scope.namespace, None);
        let pod = scope.pod_selector.unwrap();
        assert_eq!(pod.requirements[0].key, "app");
        assert_eq!(pod.requirements[0].values, ["web"]);
        assert!(scope.container_selector.is_some());
        let y = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: all}
spec:
  kprobes: [{call: sys_close, syscall: true}]
"#;
        assert!(lower_yaml(y, &HOST).unwrap().scope.is_none());
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn scope_on(yaml: &str, node: &[(&str, &str)]) -> Option<PolicyScope> {
        let ir = compile_yaml(yaml).unwrap().remove(0);
        lower(&ir, &HOST, &labels(node), &mut SetIds::default())
            .unwrap()
            .scope
    }

    fn policy_with(scope: &str) -> String {
        format!(
            "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {{name: s}}\nspec:\n{scope}  kprobes: [{{call: sys_close, syscall: true}}]\n"
        )
    }

    #[test]
    fn host_selector_sets_the_host_flag_by_node_labels() {
        let host_only = policy_with("  hostSelector: {matchLabels: {role: worker}}\n");
        // Matching node: host processes only, no container set.
        let s = scope_on(&host_only, &[("role", "worker"), ("zone", "a")]).expect("scoped");
        assert_eq!(
            s,
            PolicyScope {
                workload: None,
                host: true
            }
        );
        // Another node, or a node without labels: still scoped, to nothing.
        for node in [&[("role", "db")][..], &[]] {
            let s = scope_on(&host_only, node).expect("scoped even when nothing matches");
            assert_eq!(s, PolicyScope::default(), "{node:?}");
        }
        // An empty selector matches every node, labelled or not.
        let any = policy_with("  hostSelector: {}\n");
        assert!(scope_on(&any, &[]).unwrap().host);
        assert!(scope_on(&any, &[("role", "x")]).unwrap().host);
        // Expressions follow Kubernetes semantics (NotIn is satisfied by a missing label).
        let not_cp = policy_with(
            "  hostSelector:\n    matchExpressions: [{key: role, operator: NotIn, values: [control-plane]}]\n",
        );
        assert!(scope_on(&not_cp, &[]).unwrap().host);
        assert!(
            !scope_on(&not_cp, &[("role", "control-plane")])
                .unwrap()
                .host
        );
    }

    #[test]
    fn host_selector_with_pod_selector_is_a_union() {
        let both = policy_with(
            "  podSelector: {matchLabels: {app: web}}\n  hostSelector: {matchLabels: {role: worker}}\n",
        );
        let s = scope_on(&both, &[("role", "worker")]).unwrap();
        assert!(s.host);
        let w = s.workload.expect("the pods stay selected");
        assert_eq!(w.pod_selector.unwrap().requirements[0].key, "app");
        // Not this node: the pods only, as without a hostSelector.
        let s = scope_on(&both, &[("role", "db")]).unwrap();
        assert!(!s.host);
        assert!(s.workload.is_some());
        // A namespaced policy with a hostSelector: its namespace's pods and the host.
        let ns = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicyNamespaced\nmetadata: {name: np, namespace: prod}\nspec:\n  hostSelector: {}\n  kprobes: [{call: sys_close, syscall: true}]\n";
        let s = scope_on(ns, &[]).unwrap();
        assert!(s.host);
        assert_eq!(s.workload.unwrap().namespace.as_deref(), Some("prod"));
        // No hostSelector: the flag never comes from node labels.
        let pods_only = policy_with("  podSelector: {}\n");
        assert!(!scope_on(&pods_only, &[("role", "worker")]).unwrap().host);
    }

    #[test]
    fn pod_selector_may_select_by_namespace() {
        let y = policy_with(
            "  podSelector:\n    matchExpressions: [{key: \"k8s:io.kubernetes.pod.namespace\", operator: In, values: [prod]}]\n",
        );
        let w = scope_on(&y, &[]).unwrap().workload.unwrap();
        let pod = |ns: &str| vigil_api::wire::pod::Pod {
            namespace: ns.into(),
            containers: vec![vigil_api::wire::pod::Container::default()],
            ..Default::default()
        };
        let (prod, dev) = (pod("prod"), pod("dev"));
        assert!(w.matches(&prod, &prod.containers[0]));
        assert!(!w.matches(&dev, &dev.containers[0]));
    }

    #[test]
    fn node_selector_mismatch_names_the_selector_and_the_labels() {
        let ir = |scope: &str| compile_yaml(&policy_with(scope)).unwrap().remove(0);
        let sel = ir(
            "  nodeSelector:\n    matchLabels: {role: worker}\n    matchExpressions: [{key: zone, operator: In, values: [a, b]}]\n",
        );
        assert_eq!(
            node_selector_mismatch(&sel, &labels(&[("role", "worker"), ("zone", "b")])),
            None
        );
        let err = node_selector_mismatch(&sel, &labels(&[("role", "db"), ("zone", "a")]))
            .expect("refused");
        assert!(
            err.starts_with("spec.nodeSelector (role=worker,zone in (a,b))"),
            "{err}"
        );
        assert!(err.contains("role=db,zone=a"), "{err}");
        let err = node_selector_mismatch(&sel, &BTreeMap::new()).expect("no labels: refused");
        assert!(err.contains("--node-labels) are: none"), "{err}");
        // No selector, or an empty one: every node.
        assert_eq!(node_selector_mismatch(&ir(""), &BTreeMap::new()), None);
        assert_eq!(
            node_selector_mismatch(&ir("  nodeSelector: {}\n"), &BTreeMap::new()),
            None
        );
    }

    #[test]
    fn host_ns_resolves_to_the_host_inode_and_caps_need_creds() {
        let y = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: ns}
spec:
  kprobes:
  - call: sys_close
    syscall: true
    selectors:
    - matchNamespaces: [{namespace: Mnt, operator: In, values: [host_ns]}]
      matchCapabilities: [{type: Effective, operator: In, values: [CAP_SYS_ADMIN]}]
"#;
        let h = lower_yaml(y, &HOST).unwrap().hooks.remove(0).unwrap();
        let s = &h.cfg.sel[0];
        assert_eq!(s.ns[0].slot as usize, abi::ns_slot::MNT);
        assert!(h.sets.ints.iter().any(|k| k.set == s.ns[0].set
            && k.value == u64::from(HOST.host_namespace(abi::ns_slot::MNT))));
        assert_eq!(s.caps[0].mask, 1 << 21);
        assert!(h.cfg.flags & hook_flags::NEED_CAPS != 0);
        assert!(h.cfg.flags & hook_flags::NEED_NS != 0);
    }

    #[test]
    fn nop_arguments_are_neither_read_nor_reported() {
        let y = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: nop}
spec:
  kprobes:
  - call: sys_mmap
    syscall: true
    args:
    - {index: 0, type: nop}
    - {index: 1, type: size_t}
    selectors:
    - matchArgs: [{index: 1, operator: GT, values: ["4096"]}]
"#;
        let h = lower_yaml(y, &HOST).unwrap().hooks.remove(0).unwrap();
        assert_eq!(h.cfg.nargs, 1);
        assert_eq!(h.cfg.args[0].index, 1);
        assert_eq!(h.meta.args.len(), 1);
        assert_eq!(h.cfg.sel[0].args[0].arg, 0);
        assert_eq!(h.cfg.sel[0].args[0].value, 4096);
    }

    #[test]
    fn ir_version_is_checked() {
        let mut ir = compile_yaml(OPEN).unwrap().remove(0);
        ir.ir_version = 99;
        assert!(
            lower(&ir, &HOST, &BTreeMap::new(), &mut SetIds::default())
                .unwrap_err()
                .contains("version 99")
        );
    }

    #[test]
    fn filters_read_only_their_arguments_and_strings_only_as_far_as_they_compare() {
        // Prefix on the path: the longest value is "/tmp/x" (6 bytes) → 8 bytes decide.
        let l = lower_yaml(OPEN, &HOST).unwrap();
        let h = l.hooks[0].as_ref().unwrap();
        assert_eq!(h.cfg.filter_args, 0b1);
        assert_eq!(h.cfg.args[0].peek, 8);
        assert!(
            h.cfg.flags & hook_flags::NEED_PROC != 0,
            "matchBinaries reads the table"
        );

        // A postfix needs the tail: the whole argument. An unfiltered argument is not read.
        let yaml = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: files}
spec:
  kprobes:
  - call: sys_openat
    syscall: true
    args:
    - {index: 0, type: int}
    - {index: 1, type: string}
    - {index: 2, type: int}
    selectors:
    - matchArgs:
      - {index: 1, operator: Prefix, values: ["/etc/"]}
    - matchArgs:
      - {index: 1, operator: Postfix, values: [".conf"]}
      - {index: 2, operator: Mask, values: ["1"]}
"#;
        let l = lower_yaml(yaml, &HOST).unwrap();
        let h = l.hooks[0].as_ref().unwrap();
        assert_eq!(
            h.cfg.filter_args, 0b110,
            "arg 0 is only read for the record"
        );
        assert_eq!(h.cfg.args[1].peek, 0, "postfix: the whole slot");
        assert_eq!(h.cfg.args[0].peek, 0);
        assert_eq!(
            h.cfg.flags & hook_flags::NEED_PROC,
            0,
            "no selector reads the process table"
        );

        // Equal needs one byte more than the longest value to tell a longer string apart.
        let yaml = yaml.replace(
            "operator: Postfix, values: [\".conf\"]",
            "operator: Equal, values: [\"/etc/passwd\"]",
        );
        let l = lower_yaml(&yaml, &HOST).unwrap();
        let h = l.hooks[0].as_ref().unwrap();
        assert_eq!(h.cfg.args[1].peek, "/etc/passwd".len() as u16 + 2);
    }

    #[test]
    fn a_security_function_maps_to_its_lsm_hook_even_when_the_names_differ() {
        assert_eq!(lsm_hook_name("file_open", &VM), "file_open");
        assert_eq!(lsm_hook_name("bprm_check", &VM), "bprm_check_security");
    }
}
