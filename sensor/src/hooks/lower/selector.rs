//! One selector of a hook: its filters (pids, binaries, namespaces, capabilities, arguments)
//! and actions, lowered into a `vigil_hook_cfg` selector and the value-set entries it looks up.

use vigil_api::policy::ir::{
    self, ActionKind, ArgFilter, ArgOperator, ArgSpec, BinaryOperator, CapabilitySet,
    NamespaceType, RateLimitScope, SetOperator, StringSet,
};
use vigil_api::syscalls;
use vigil_sensor_bpf::abi::{
    self, Action, BinFilter, CapFilter, Filter, HookCfg, IntKey, NsFilter, Selector, act, argk,
    binop, hook_flags,
};

use super::{KernelInfo, SetEntries, SetIds};

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

pub(super) fn lower_selector(
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
    lower_pids(s, &mut sel, ids, sets)?;
    need |= lower_binaries(s, &mut sel, ids, sets)?;
    need |= lower_namespaces(s, &mut sel, kernel, ids, sets)?;
    need |= lower_capabilities(s, &mut sel)?;
    lower_arg_filters(s, h, args, cfg, &mut sel, ids, sets)?;
    lower_actions(s, &mut sel)?;
    Ok((sel, need))
}

/// matchPIDs (at most one entry).
fn lower_pids(
    s: &ir::Selector,
    sel: &mut Selector,
    ids: &mut SetIds,
    sets: &mut SetEntries,
) -> Result<(), String> {
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
    Ok(())
}

/// matchBinaries; returns the `hook_flags` they need.
fn lower_binaries(
    s: &ir::Selector,
    sel: &mut Selector,
    ids: &mut SetIds,
    sets: &mut SetEntries,
) -> Result<u32, String> {
    let mut need = 0u32;
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
    Ok(need)
}

/// matchNamespaces and matchNamespaceChanges; returns the `hook_flags` they need.
fn lower_namespaces(
    s: &ir::Selector,
    sel: &mut Selector,
    kernel: &dyn KernelInfo,
    ids: &mut SetIds,
    sets: &mut SetEntries,
) -> Result<u32, String> {
    let mut need = 0u32;
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
    Ok(need)
}

/// matchCapabilities and matchCapabilityChanges; returns the `hook_flags` they need.
fn lower_capabilities(s: &ir::Selector, sel: &mut Selector) -> Result<u32, String> {
    let mut need = 0u32;
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
    Ok(need)
}

/// matchArgs and matchReturnArgs.
fn lower_arg_filters(
    s: &ir::Selector,
    h: &ir::Hook,
    args: &[ArgSpec],
    cfg: &HookCfg,
    sel: &mut Selector,
    ids: &mut SetIds,
    sets: &mut SetEntries,
) -> Result<(), String> {
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
    Ok(())
}

/// matchActions, then the return actions.
fn lower_actions(s: &ir::Selector, sel: &mut Selector) -> Result<(), String> {
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
    Ok(())
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
        | argk::BINPRM
        | argk::NETDEV => {
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
