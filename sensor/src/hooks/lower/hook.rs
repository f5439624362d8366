//! One hook: where it attaches on this kernel (the fallback ladder), how its arguments are read,
//! and the `vigil_hook_cfg`, value sets and metadata that come of it.

use std::path::PathBuf;
use std::sync::Arc;

use vigil_api::policy::ir::{self, ArgSpec, ArgType, HookKind};
use vigil_api::syscalls;
use vigil_sensor_bpf::abi::{self, ArgCfg, HookCfg, argf, argk, hook_flags, op, source};

use super::selector::lower_selector;
use super::{
    KernelInfo, LowerError, LoweredHook, Mechanism, NO_OVERRIDE, SetEntries, SetIds, has_override,
    hook_target, lsm_hook_name,
};
use crate::hooks::meta::{ArgMeta, HookEventKind, HookMeta};
use crate::hooks::tracefs::Format;

/// Where a hook attaches and what its records carry.
struct Placement {
    mechanism: Mechanism,
    /// `vigil_hook_cfg.source`: where the program finds the arguments.
    source: u8,
    kind: HookEventKind,
    function_name: String,
    /// The arguments point to user memory.
    user_mem: bool,
    /// `hook_flags` the mechanism sets.
    flags: u32,
}

impl Placement {
    fn new(
        mechanism: Mechanism,
        source: u8,
        kind: HookEventKind,
        function_name: String,
        user_mem: bool,
    ) -> Self {
        Placement {
            mechanism,
            source,
            kind,
            function_name,
            user_mem,
            flags: 0,
        }
    }
}

pub(super) fn lower_hook(
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
    let return_probe = h.return_probe;
    let Placement {
        mechanism,
        source: src,
        kind,
        function_name,
        user_mem,
        mut flags,
    } = place(h, kernel)?;
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

    let args = declared_args(h)?;
    let (mut cfg, metas) = lower_args(&args, flags, src, is_syscall, format.as_ref())?;
    let sets = lower_selectors(h, &args, &mut cfg, kernel, ids)?;
    let meta = hook_meta(h, identity, kind, function_name, metas);
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

/// The mechanism that serves hook `h` on this kernel, or why none does.
fn place(h: &ir::Hook, kernel: &dyn KernelInfo) -> Result<Placement, LowerError> {
    let overrides = has_override(h);
    let return_probe = h.return_probe;
    match h.kind() {
        HookKind::Syscall => place_syscall(h, kernel, overrides),
        HookKind::Kprobe | HookKind::Kretprobe => place_kprobe(h, kernel, overrides),
        HookKind::Tracepoint => Ok(Placement::new(
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
        )),
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
            Ok(Placement::new(
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
            ))
        }
        HookKind::Lsm => {
            if !kernel.bpf_lsm() {
                return Err(LowerError::Hook(
                    "BPF-LSM is not active on this kernel (needs CONFIG_BPF_LSM and lsm=...,bpf on the kernel command line)"
                        .into(),
                ));
            }
            let mut p = Placement::new(
                Mechanism::Lsm {
                    hook: h.target.clone(),
                },
                source::BTF_ARGS,
                HookEventKind::Lsm,
                h.target.clone(),
                false,
            );
            p.flags |= hook_flags::CAN_OVERRIDE;
            Ok(p)
        }
        HookKind::RawTracepoint | HookKind::Unspecified => Err(LowerError::Hook(format!(
            "hook kind {:?}: not supported yet",
            h.kind()
        ))),
    }
}

/// A syscall hook: a kprobe on its wrapper, else its own tracepoints, else `sys_enter`.
fn place_syscall(
    h: &ir::Hook,
    kernel: &dyn KernelInfo,
    overrides: bool,
) -> Result<Placement, LowerError> {
    let return_probe = h.return_probe;
    let name = h.syscall_name.as_str();
    let function = format!("__x64_sys_{name}");
    if overrides {
        return Err(LowerError::Policy(NO_OVERRIDE.into()));
    }
    if kernel.kprobes() && kernel.kernel_symbol(&function) {
        return Ok(Placement::new(
            Mechanism::Kprobe {
                function: function.clone(),
            },
            source::SYSCALL_WRAPPER,
            HookEventKind::Kprobe,
            function,
            true,
        ));
    }
    let nr = syscalls::x86_64_number(name)
        .ok_or_else(|| LowerError::Hook(format!("syscall {name:?} does not exist on x86_64")))?;
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
    Ok(Placement::new(
        mechanism,
        source::REGS,
        HookEventKind::Kprobe,
        function,
        true,
    ))
}

/// A kernel function: a kprobe, or BPF-LSM for a `security_*` function that overrides (or when
/// kprobes are not available).
fn place_kprobe(
    h: &ir::Hook,
    kernel: &dyn KernelInfo,
    overrides: bool,
) -> Result<Placement, LowerError> {
    let return_probe = h.return_probe;
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
        let mut p = Placement::new(
            Mechanism::Lsm { hook: hook.into() },
            source::BTF_ARGS,
            HookEventKind::Kprobe,
            function,
            false,
        );
        p.flags |= hook_flags::CAN_OVERRIDE;
        Ok(p)
    } else if kernel.kprobes() {
        if !kernel.kernel_symbol(&function) {
            return Err(LowerError::Hook(format!(
                "kernel function {function} not found (not in available_filter_functions)"
            )));
        }
        Ok(Placement::new(
            Mechanism::Kprobe {
                function: function.clone(),
            },
            source::REGS,
            HookEventKind::Kprobe,
            function,
            false,
        ))
    } else if let (Some(hook), true, false) = (lsm_name, kernel.bpf_lsm(), return_probe) {
        Ok(Placement::new(
            Mechanism::Lsm { hook: hook.into() },
            source::BTF_ARGS,
            HookEventKind::Kprobe,
            function,
            false,
        ))
    } else {
        Err(LowerError::Hook(format!(
            "kprobes are not available on this kernel (CONFIG_KPROBES off or not permitted) and {function} has no fallback"
        )))
    }
}

/// The arguments the hook reads: `nop` arguments are declared but neither read nor reported.
fn declared_args(h: &ir::Hook) -> Result<Vec<ArgSpec>, LowerError> {
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
    Ok(args)
}

/// The hook's config with its arguments, and their metadata.
fn lower_args(
    args: &[ArgSpec],
    flags: u32,
    src: u8,
    is_syscall: bool,
    format: Option<&Format>,
) -> Result<(HookCfg, Vec<ArgMeta>), LowerError> {
    let mut cfg = HookCfg {
        flags,
        source: src,
        nargs: args.len() as u8,
        ret_signed: 1,
        ..Default::default()
    };
    let mut metas = Vec::new();
    for (i, spec) in args.iter().enumerate() {
        cfg.args[i] = lower_arg(spec, args, is_syscall, format)
            .map_err(|e| LowerError::Policy(format!("args[{i}]: {e}")))?;
        metas.push(ArgMeta {
            ir_type: spec.r#type(),
            kind: cfg.args[i].kind,
            label: spec.label.clone(),
        });
    }
    Ok((cfg, metas))
}

/// Lowers the hook's selectors into `cfg`, and plans the reads they need.
fn lower_selectors(
    h: &ir::Hook,
    args: &[ArgSpec],
    cfg: &mut HookCfg,
    kernel: &dyn KernelInfo,
    ids: &mut SetIds,
) -> Result<SetEntries, LowerError> {
    if h.selectors.len() > abi::HOOK_SELECTORS {
        return Err(LowerError::Policy(format!(
            "{} selectors: at most {} per hook",
            h.selectors.len(),
            abi::HOOK_SELECTORS
        )));
    }
    let mut sets = SetEntries::default();
    for (i, s) in h.selectors.iter().enumerate() {
        let (sel, need) = lower_selector(s, h, args, cfg, kernel, ids, &mut sets)
            .map_err(|e| LowerError::Policy(format!("selectors[{i}]: {e}")))?;
        cfg.sel[i] = sel;
        cfg.flags |= need;
    }
    cfg.nsel = h.selectors.len() as u8;
    plan_reads(cfg, &sets);
    Ok(sets)
}

/// What turns the hook's records into events.
fn hook_meta(
    h: &ir::Hook,
    identity: &ir::PolicyIdentity,
    kind: HookEventKind,
    function_name: String,
    metas: Vec<ArgMeta>,
) -> HookMeta {
    HookMeta {
        policy_name: identity.name.clone(),
        policy_namespace: identity.namespace.clone(),
        kind,
        function_name,
        args: metas,
        return_type: h.return_probe.then(|| {
            h.return_arg
                .as_ref()
                .map(|a| a.r#type())
                .unwrap_or(ArgType::Int32)
        }),
        message: h.message.clone(),
        tags: h.tags.clone(),
    }
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
        ArgType::NetDevice => (argk::NETDEV, 0, 0),
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
