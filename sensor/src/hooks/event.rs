//! Hook records → Tetragon events (process_kprobe, process_tracepoint, process_uprobe,
//! process_lsm).
//!
//! The JSON shape of an argument is decided by the type the policy declared (`ArgMeta::ir_type`),
//! the bytes are read by the layout the kernel used (`HookArg::kind`). An argument the kernel
//! could not read keeps its position as an empty value of its type (`{"file_arg":{}}`).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use vigil_api::events::names::{
    bpf_cmd_name, family_name, protocol_name, sock_type_name, tcp_state_name,
};
use vigil_api::events::{
    ArgValue, Capabilities, GetEventsResponse, KprobeAction, KprobeArgument, KprobeCapability,
    KprobeFile, KprobeLinuxBinprm, KprobeNetDev, KprobePath, KprobeSock, KprobeSockaddr,
    KprobeTruncatedBytes, Process, ProcessCredentials, ProcessKprobe, ProcessLsm,
    ProcessTracepoint, ProcessUprobe, SyscallId, capability_event_name, format_time_ns,
    securebits_names,
};
use vigil_api::policy::ir::ArgType;
use vigil_sensor_bpf::abi::{self, argk, read_record};

use super::meta::{ArgMeta, HookEventKind, HookMeta};
use crate::kernel::decode::{HookArg, HookRecord};
use crate::process::builder::EventBuilder;

/// An event built from a hook record, with what the pipeline counts about it.
#[derive(Debug, Clone, PartialEq)]
pub struct HookEvent {
    pub event: GetEventsResponse,
    /// Arguments the kernel could not read (kept as empty values).
    pub arg_errors: u64,
}

/// The `hook` label of `policy_events_total` for a hook: `kprobe:<function>`,
/// `tracepoint:<subsys>/<event>`, `uprobe:<path>:<symbol>` or `lsm:<hook>`.
pub fn hook_label(meta: &HookMeta) -> String {
    match &meta.kind {
        HookEventKind::Kprobe => format!("kprobe:{}", meta.function_name),
        HookEventKind::Tracepoint { subsys, event } => format!("tracepoint:{subsys}/{event}"),
        HookEventKind::Uprobe { path, symbol, .. } => format!("uprobe:{path}:{symbol}"),
        HookEventKind::Lsm => format!("lsm:{}", lsm_name(&meta.function_name)),
    }
}

/// Builds the event of `rec` for the hook `meta` describes. `process` is the cached process
/// (or what is known of it); its `tid` is set to the thread that hit the hook.
pub fn build(
    builder: &EventBuilder,
    rec: &HookRecord,
    meta: &HookMeta,
    mut process: Arc<Process>,
    parent: Option<Arc<Process>>,
) -> HookEvent {
    // Shared with the process cache (and every other event of the process) unless the thread
    // differs from the one cached: then this event gets its own copy.
    if process.tid != Some(rec.tid) {
        Arc::make_mut(&mut process).tid = Some(rec.tid);
    }
    let mut arg_errors = 0u64;
    let args: Vec<KprobeArgument> = rec
        .args
        .iter()
        .enumerate()
        .map(|(i, a)| {
            if a.is_error() {
                arg_errors += 1;
            }
            argument(a, meta.args.get(i))
        })
        .collect();
    let action = action(rec);
    let time = format_time_ns(builder.clock.wall_ns(rec.time));
    let node = builder.node_name.clone();
    let process = Some(process);
    let event = match &meta.kind {
        HookEventKind::Kprobe => {
            let return_value = rec
                .is_return()
                .then(|| KprobeArgument::new(return_value(rec.ret, meta.return_type)));
            GetEventsResponse::new(
                ProcessKprobe {
                    process,
                    parent,
                    function_name: meta.function_name.clone(),
                    args,
                    return_value,
                    action,
                    policy_name: meta.policy_name.clone(),
                    // Tetragon writes POST for every kprobe event (the default return action).
                    return_action: KprobeAction::Post,
                    message: meta.message.clone(),
                    tags: meta.tags.clone(),
                    ..Default::default()
                },
                node,
                time,
            )
        }
        HookEventKind::Tracepoint { subsys, event } => GetEventsResponse::new(
            ProcessTracepoint {
                process,
                parent,
                subsys: subsys.clone(),
                event: event.clone(),
                args,
                policy_name: meta.policy_name.clone(),
                action,
                message: meta.message.clone(),
                tags: meta.tags.clone(),
                ..Default::default()
            },
            node,
            time,
        ),
        HookEventKind::Uprobe {
            path,
            symbol,
            offset,
        } => GetEventsResponse::new(
            ProcessUprobe {
                process,
                parent,
                path: path.clone(),
                symbol: symbol.clone(),
                policy_name: meta.policy_name.clone(),
                message: meta.message.clone(),
                args,
                tags: meta.tags.clone(),
                offset: *offset,
                action,
                ..Default::default()
            },
            node,
            time,
        ),
        HookEventKind::Lsm => GetEventsResponse::new(
            ProcessLsm {
                process,
                parent,
                function_name: lsm_name(&meta.function_name).to_string(),
                policy_name: meta.policy_name.clone(),
                message: meta.message.clone(),
                args,
                action,
                tags: meta.tags.clone(),
                ..Default::default()
            },
            node,
            time,
        ),
    };
    HookEvent { event, arg_errors }
}

/// Policy name of the events self-protection reports.
pub const SELF_PROTECTION_POLICY: &str = "vigil-self-protection";

/// A self-protection refusal (`vigil_protect_rec`) as a `process_lsm` event of the caller:
/// policy `vigil-self-protection`, the LSM hook that refused, action Override, and the target
/// in labelled arguments.
pub fn protect_event(
    builder: &EventBuilder,
    r: &abi::ProtectRec,
    mut process: Process,
    parent: Option<Process>,
) -> GetEventsResponse {
    use abi::protect_hook as h;
    process.tid = Some(r.tid);
    let int = |v: u32, label: &str| KprobeArgument::new(ArgValue::Int(v as i32)).with_label(label);
    let uint = |v: u32, label: &str| KprobeArgument::new(ArgValue::Uint(v)).with_label(label);
    let name_len = (r.name_len as usize).min(r.name.len());
    let name = String::from_utf8_lossy(&r.name[..name_len]).into_owned();
    let args = match r.hook {
        h::PTRACE => vec![int(r.target_pid, "target_pid"), uint(r.arg, "mode")],
        h::KILL => vec![int(r.target_pid, "target_pid"), int(r.arg, "sig")],
        h::UNLINK | h::RMDIR | h::RENAME => vec![
            KprobeArgument::new(ArgValue::String(name)).with_label("name"),
            KprobeArgument::new(ArgValue::Size(r.id)).with_label("inode"),
        ],
        h::BPF => vec![
            KprobeArgument::new(ArgValue::BpfCmd(
                bpf_cmd_name(u64::from(r.arg)).map_or_else(|| r.arg.to_string(), str::to_string),
            ))
            .with_label("cmd"),
            uint(r.id as u32, "link_id"),
        ],
        h::BPF_MAP => vec![uint(r.id as u32, "map_id"), uint(r.arg, "fmode")],
        _ => Vec::new(),
    };
    let hook = crate::kernel::protect::hook_name(r.hook);
    GetEventsResponse::new(
        ProcessLsm {
            process: Some(process.into()),
            parent: parent.map(Arc::new),
            function_name: hook.to_string(),
            policy_name: SELF_PROTECTION_POLICY.into(),
            message: format!("self-protection refused {hook}"),
            args,
            action: KprobeAction::Override,
            ..Default::default()
        },
        builder.node_name.clone(),
        format_time_ns(builder.clock.wall_ns(r.hdr.time)),
    )
}

/// The LSM hook name as events carry it (`file_open`, not `security_file_open`).
fn lsm_name(name: &str) -> &str {
    name.strip_prefix("bpf_lsm_")
        .or_else(|| name.strip_prefix("security_"))
        .unwrap_or(name)
}

/// The enforcing action that ran (or would have, in monitor mode), else POST.
fn action(rec: &HookRecord) -> KprobeAction {
    if rec.has_action(abi::act::SIGKILL) {
        KprobeAction::Sigkill
    } else if rec.has_action(abi::act::OVERRIDE) {
        KprobeAction::Override
    } else if rec.has_action(abi::act::SIGNAL) {
        KprobeAction::Signal
    } else {
        KprobeAction::Post
    }
}

/// The return value, typed by the declared return type (int when none).
fn return_value(ret: i64, ty: Option<ArgType>) -> ArgValue {
    match ty {
        None | Some(ArgType::Unspecified | ArgType::Auto | ArgType::Fd | ArgType::File) => {
            ArgValue::Int(ret as i32)
        }
        Some(t) => integer(ret as u64, t),
    }
}

/// One argument: its value by declared type and record layout, and its label.
pub fn argument(a: &HookArg, meta: Option<&ArgMeta>) -> KprobeArgument {
    let ty = meta.map_or(ArgType::Unspecified, |m| m.ir_type);
    // An unreadable argument is rendered from no bytes: every shape below then yields its
    // empty value.
    let data: &[u8] = if a.is_error() { &[] } else { &a.data };
    let value = match a.kind {
        argk::INT => integer(int_bytes(data), ty),
        argk::STR => match ty {
            ArgType::CharBuf | ArgType::CharIovec | ArgType::ConstBuf => bytes(data, a),
            _ => ArgValue::String(text(data)),
        },
        argk::BUF => match ty {
            ArgType::String | ArgType::Filename | ArgType::DataLoc => ArgValue::String(text(data)),
            _ => bytes(data, a),
        },
        argk::FD | argk::FILE | argk::PATH | argk::DENTRY | argk::BINPRM => {
            path_like(text(data), a.kind, ty)
        }
        argk::SOCK | argk::FD_SOCK => ArgValue::Sock(sock(data)),
        argk::SOCKADDR => ArgValue::Sockaddr(sockaddr(data)),
        argk::CRED => ArgValue::ProcessCredentials(creds(data)),
        argk::NETDEV => ArgValue::NetDev(KprobeNetDev { name: text(data) }),
        _ => bytes(data, a),
    };
    KprobeArgument {
        arg: Some(value),
        label: meta.map(|m| m.label.clone()).unwrap_or_default(),
    }
}

/// The 8-byte value of an INT argument (0 when absent or malformed).
fn int_bytes(data: &[u8]) -> u64 {
    data.get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes)
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// `bytes_arg`, or `truncated_bytes_arg` when the kernel cut the buffer.
fn bytes(data: &[u8], a: &HookArg) -> ArgValue {
    if a.is_cut() && !a.is_error() {
        ArgValue::TruncatedBytes(KprobeTruncatedBytes {
            bytes_arg: data.to_vec(),
            orig_size: u64::from(a.full_len()),
        })
    } else {
        ArgValue::Bytes(data.to_vec())
    }
}

/// An integer (already sign- or zero-extended by the kernel) by declared type.
fn integer(v: u64, ty: ArgType) -> ArgValue {
    match ty {
        ArgType::Int8 | ArgType::Int16 | ArgType::Int32 | ArgType::Fd => ArgValue::Int(v as i32),
        ArgType::Uint8 | ArgType::Uint16 | ArgType::Uint32 => ArgValue::Uint(v as u32),
        ArgType::Uint64 | ArgType::SizeT => ArgValue::Size(v),
        ArgType::Capability => ArgValue::Capability(KprobeCapability {
            value: Some(v as i32),
            name: usize::try_from(v)
                .ok()
                .and_then(capability_event_name)
                .unwrap_or_default()
                .to_string(),
        }),
        ArgType::Syscall64 => ArgValue::SyscallId(syscall_id(v)),
        ArgType::KernelCapT => ArgValue::KernelCapT(format!("{v:016x}")),
        ArgType::CapInheritable => ArgValue::CapInheritable(format!("{v:016x}")),
        ArgType::CapPermitted => ArgValue::CapPermitted(format!("{v:016x}")),
        ArgType::CapEffective => ArgValue::CapEffective(format!("{v:016x}")),
        ArgType::BpfCmd => match bpf_cmd_name(v) {
            Some(name) => ArgValue::BpfCmd(name.to_string()),
            None => ArgValue::Uint(v as u32),
        },
        _ => ArgValue::Long(v as i64),
    }
}

/// Bit 31 of a `syscall64` value marks a 32-bit (compat) syscall.
const SYSCALL_COMPAT: u64 = 1 << 31;

fn syscall_id(v: u64) -> SyscallId {
    let (abi, id) = if v & SYSCALL_COMPAT != 0 {
        (COMPAT_ABI, v & !SYSCALL_COMPAT)
    } else {
        (NATIVE_ABI, v)
    };
    SyscallId {
        id: id as u32,
        abi: abi.to_string(),
    }
}

#[cfg(target_arch = "aarch64")]
const NATIVE_ABI: &str = "arm64";
#[cfg(target_arch = "aarch64")]
const COMPAT_ABI: &str = "arm32";
#[cfg(not(target_arch = "aarch64"))]
const NATIVE_ABI: &str = "x64";
#[cfg(not(target_arch = "aarch64"))]
const COMPAT_ABI: &str = "i386";

/// A resolved path: `file_arg` for files and fds, `path_arg` for paths and dentries,
/// `linux_binprm_arg` for binprms — unless the policy declared another of these types.
fn path_like(path: String, kind: u8, ty: ArgType) -> ArgValue {
    let file = |path| {
        ArgValue::File(KprobeFile {
            path,
            ..Default::default()
        })
    };
    let as_path = |path| {
        ArgValue::Path(KprobePath {
            path,
            ..Default::default()
        })
    };
    let binprm = |path| {
        ArgValue::LinuxBinprm(KprobeLinuxBinprm {
            path,
            ..Default::default()
        })
    };
    match ty {
        ArgType::Fd | ArgType::File => file(path),
        ArgType::Path | ArgType::Dentry => as_path(path),
        ArgType::LinuxBinprm => binprm(path),
        ArgType::String | ArgType::Filename => ArgValue::String(path),
        _ => match kind {
            argk::PATH | argk::DENTRY => as_path(path),
            argk::BINPRM => binprm(path),
            _ => file(path),
        },
    }
}

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// An address as text: dotted IPv4, standard IPv6; empty for other families.
fn addr_text(family: u16, a: &[u8; 16]) -> String {
    match family {
        AF_INET => Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string(),
        AF_INET6 => Ipv6Addr::from(*a).to_string(),
        _ => String::new(),
    }
}

fn sock(data: &[u8]) -> KprobeSock {
    let Some(k) = read_record::<abi::SockArg>(data) else {
        return KprobeSock::default();
    };
    let inet = matches!(k.family, AF_INET | AF_INET6);
    KprobeSock {
        family: family_name(k.family).to_string(),
        sock_type: sock_type_name(k.sock_type).to_string(),
        protocol: if inet {
            protocol_name(k.protocol).to_string()
        } else {
            String::new()
        },
        saddr: addr_text(k.family, &k.saddr),
        daddr: addr_text(k.family, &k.daddr),
        sport: u32::from(k.sport),
        dport: u32::from(k.dport),
        cookie: k.cookie,
        state: if inet {
            tcp_state_name(k.state).to_string()
        } else {
            String::new()
        },
        ..Default::default()
    }
}

fn sockaddr(data: &[u8]) -> KprobeSockaddr {
    let Some(k) = read_record::<abi::SockaddrArg>(data) else {
        return KprobeSockaddr::default();
    };
    KprobeSockaddr {
        family: family_name(k.family).to_string(),
        addr: addr_text(k.family, &k.addr),
        port: u32::from(k.port),
    }
}

fn creds(data: &[u8]) -> ProcessCredentials {
    let Some(c) = read_record::<abi::Creds>(data) else {
        return ProcessCredentials::default();
    };
    ProcessCredentials {
        uid: Some(c.uid),
        gid: Some(c.gid),
        euid: Some(c.euid),
        egid: Some(c.egid),
        suid: Some(c.suid),
        sgid: Some(c.sgid),
        fsuid: Some(c.fsuid),
        fsgid: Some(c.fsgid),
        securebits: securebits_names(c.securebits),
        caps: Some(Capabilities::from_masks(
            c.cap_permitted,
            c.cap_effective,
            c.cap_inheritable,
        )),
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;
