//! Compact one-line rendering of events, compatible with `tetra getevents -o compact`.
//!
//! `<emoji> <label padded to 7> <namespace/pod or node> <binary> <details…>`, fields joined by
//! single spaces (an empty detail still gets its separator), plus a right-aligned
//! `🛑 CAP_SYS_ADMIN` when the process has that capability in its effective set.

use crate::syscalls;
use std::fmt;
use vigil_api::events::{
    ArgValue, EventKind, GetEventsResponse, KprobeArgument, KprobeSock, Loss, Process,
    ProcessKprobe, ProcessTracepoint,
};

/// Column the capability trailer is right-aligned to (counted in bytes, as Tetragon does).
const CAPS_COLUMN: usize = 120;
const CAPS_TRAILER: &str = "🛑 CAP_SYS_ADMIN";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    NoEvent,
    NoProcess(EventKind),
    BadLoss(String),
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::NoEvent => f.write_str("no event set"),
            RenderError::NoProcess(k) => write!(f, "{} has no process", k.field_name()),
            RenderError::BadLoss(e) => write!(f, "rate_limit_info: {e}"),
        }
    }
}

/// Renders one event as a compact line (no trailing newline).
pub fn render(ev: &GetEventsResponse) -> Result<String, RenderError> {
    let kind = ev.kind().ok_or(RenderError::NoEvent)?;
    match kind {
        EventKind::RateLimitInfo => return loss_line(ev),
        EventKind::PolicyDemoted => return demoted_line(ev),
        _ => {}
    }
    let process = ev.process().ok_or(RenderError::NoProcess(kind))?;
    let (head, details) = match kind {
        EventKind::ProcessExec => (head("🚀", "process"), vec![show_arguments(process)]),
        EventKind::ProcessExit => {
            let exit = ev.process_exit.as_ref().ok_or(RenderError::NoEvent)?;
            let status = if exit.signal.is_empty() {
                exit.status.to_string()
            } else {
                exit.signal.clone()
            };
            (head("💥", "exit"), vec![show_arguments(process), status])
        }
        EventKind::ProcessKprobe => kprobe(ev.process_kprobe.as_ref().ok_or(RenderError::NoEvent)?),
        EventKind::ProcessTracepoint => {
            tracepoint(ev.process_tracepoint.as_ref().ok_or(RenderError::NoEvent)?)
        }
        EventKind::ProcessUprobe => {
            let u = ev.process_uprobe.as_ref().ok_or(RenderError::NoEvent)?;
            (head("🕵️", "uprobe"), vec![u.path.clone(), u.symbol.clone()])
        }
        EventKind::ProcessLsm => {
            let l = ev.process_lsm.as_ref().ok_or(RenderError::NoEvent)?;
            (head("🔒", "LSM"), vec![l.function_name.clone()])
        }
        EventKind::RateLimitInfo => return loss_line(ev),
        EventKind::PolicyDemoted => return demoted_line(ev),
    };
    let mut line = head;
    for part in [source(ev, process), process.binary.clone()]
        .into_iter()
        .chain(details)
    {
        line.push(' ');
        line.push_str(&part);
    }
    if process.has_effective_cap("CAP_SYS_ADMIN") {
        line = with_caps_trailer(line);
    }
    Ok(line)
}

/// A loss marker: `⚠️ lost    <node> <count> <kind> events of policy <p> (<stage>: <reason>)
/// between <from> and <to>`, as far as the marker tells.
fn loss_line(ev: &GetEventsResponse) -> Result<String, RenderError> {
    let loss = Loss::from_event(ev)
        .map_err(|e| RenderError::BadLoss(e.to_string()))?
        .ok_or(RenderError::NoEvent)?;
    Ok(format!("{} {} {loss}", head("⚠️", "lost"), ev.node_name))
}

/// A policy demotion: `⚠️ demoted <node> policy <namespace/name> → <action>: <reason>` (the
/// name alone for a cluster-wide policy; no `: <reason>` without a reason). It has no process:
/// the node name stands where a process's source would.
fn demoted_line(ev: &GetEventsResponse) -> Result<String, RenderError> {
    let d = ev
        .vigil_policy_demoted
        .as_ref()
        .ok_or(RenderError::NoEvent)?;
    let mut line = format!(
        "{} {} policy {} → {}",
        head("⚠️", "demoted"),
        ev.node_name,
        d.policy_ref(),
        d.action
    );
    if !d.reason.is_empty() {
        line.push_str(": ");
        // One event, one line: a reason with control characters is quoted.
        if d.reason.chars().any(char::is_control) {
            line.push_str(&go_quote(&d.reason));
        } else {
            line.push_str(&d.reason);
        }
    }
    Ok(line)
}

fn head(emoji: &str, label: &str) -> String {
    format!("{emoji} {label:<7}")
}

/// `namespace/pod` for pod processes, the node name otherwise.
fn source(ev: &GetEventsResponse, p: &Process) -> String {
    match &p.pod {
        Some(pod) => format!("{}/{}", pod.namespace, pod.name),
        None => ev.node_name.clone(),
    }
}

fn with_caps_trailer(line: String) -> String {
    let pad = CAPS_COLUMN.saturating_sub(line.len());
    format!("{line} {CAPS_TRAILER:>pad$}")
}

/// The arguments as printed: quoted Go-style when they contain whitespace or control characters,
/// so that one event stays one line and word boundaries stay visible.
fn show_arguments(p: &Process) -> String {
    let a = &p.arguments;
    if a.chars().any(|c| c.is_whitespace() || c.is_control()) {
        go_quote(a)
    } else {
        a.clone()
    }
}

/// Double-quoted with backslash escapes, like Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `sys_write` for `__x64_sys_write`, `__arm64_sys_write`, `sys_write`; other names unchanged.
fn syscall_name(function: &str) -> &str {
    if let Some(rest) = function.strip_prefix("__")
        && let Some(i) = rest.find("_sys_")
    {
        return &rest[i + 1..];
    }
    function
}

fn arg(args: &[KprobeArgument], i: usize) -> Option<&KprobeArgument> {
    args.get(i)
}

fn file_path(args: &[KprobeArgument], i: usize) -> String {
    arg(args, i)
        .and_then(|a| a.file())
        .map(|f| f.path.clone())
        .unwrap_or_default()
}

fn string_at(args: &[KprobeArgument], i: usize) -> String {
    arg(args, i)
        .and_then(|a| a.string())
        .unwrap_or_default()
        .to_string()
}

/// Any integer-typed argument as a signed 128-bit value.
fn number_at(args: &[KprobeArgument], i: usize) -> Option<i128> {
    match &arg(args, i)?.arg {
        Some(ArgValue::Int(v)) => Some(i128::from(*v)),
        Some(ArgValue::Uint(v)) => Some(i128::from(*v)),
        Some(ArgValue::Size(v)) => Some(i128::from(*v)),
        Some(ArgValue::Long(v)) => Some(i128::from(*v)),
        _ => None,
    }
}

/// `tcp saddr:sport -> daddr:dport` (the protocol named by the socket, tcp when unnamed).
fn tuple(sock: Option<&KprobeSock>) -> String {
    match sock {
        Some(s) => {
            let proto = s
                .protocol
                .strip_prefix("IPPROTO_")
                .filter(|p| !p.is_empty())
                .map_or_else(|| "tcp".to_string(), str::to_ascii_lowercase);
            format!("{proto} {}:{} -> {}:{}", s.saddr, s.sport, s.daddr, s.dport)
        }
        None => String::new(),
    }
}

/// The first socket argument.
fn first_sock(args: &[KprobeArgument]) -> Option<&KprobeSock> {
    args.iter().find_map(KprobeArgument::sock)
}

/// The path of argument `i` when it is a string, file or path; else of the first such argument.
fn path_at_or_first(args: &[KprobeArgument], i: usize) -> String {
    fn path_of(a: &KprobeArgument) -> Option<String> {
        match &a.arg {
            Some(ArgValue::String(s)) => Some(s.clone()),
            Some(ArgValue::File(f)) => Some(f.path.clone()),
            Some(ArgValue::Path(p)) => Some(p.path.clone()),
            _ => None,
        }
    }
    arg(args, i)
        .and_then(path_of)
        .or_else(|| args.iter().find_map(path_of))
        .unwrap_or_default()
}

/// Syscalls whose hooks render specially, also when the hook names them bare (`openat`).
const RENDERED_SYSCALLS: &[&str] = &[
    "open", "openat", "openat2", "read", "pread64", "write", "pwrite64", "close", "connect",
    "sendmsg", "sendto", "mount", "setuid",
];

/// The syscall a hooked function stands for: `openat` for `__x64_sys_openat`, `sys_openat`
/// and `openat`; `None` for other kernel functions.
fn syscall_of(function: &str) -> Option<&str> {
    if let Some(name) = syscall_name(function).strip_prefix("sys_") {
        return Some(name);
    }
    RENDERED_SYSCALLS.contains(&function).then_some(function)
}

fn read_write(k: &ProcessKprobe, write: bool) -> (String, Vec<String>) {
    let a = &k.args;
    let h = if write {
        head("📝", "write")
    } else {
        head("📚", "read")
    };
    let bytes = last_number(a, 1)
        .map(|n| format!("{n} bytes"))
        .unwrap_or_default();
    (h, vec![file_path(a, 0), bytes])
}

/// The last numeric argument at or after position `from` (the byte count of read/write/send,
/// wherever the policy declared it).
fn last_number(args: &[KprobeArgument], from: usize) -> Option<i128> {
    (from..args.len()).rev().find_map(|i| number_at(args, i))
}

/// `sendmsg`-like hooks: the socket tuple, then `bytes N` when the size is known.
fn sendmsg(sock: Option<&KprobeSock>, bytes: Option<i128>) -> (String, Vec<String>) {
    let mut details = vec![tuple(sock)];
    if let Some(n) = bytes {
        details.push(format!("bytes {n}"));
    }
    (head("📤", "sendmsg"), details)
}

fn kprobe(k: &ProcessKprobe) -> (String, Vec<String>) {
    let a = &k.args;
    if let Some(sys) = syscall_of(&k.function_name) {
        match sys {
            "read" | "pread64" => return read_write(k, false),
            "write" | "pwrite64" => return read_write(k, true),
            "open" => return (head("📬", "open"), vec![path_at_or_first(a, 0)]),
            "openat" | "openat2" => return (head("📬", "open"), vec![path_at_or_first(a, 1)]),
            "close" => {
                return match first_sock(a) {
                    Some(sock) => (head("🧹", "close"), vec![tuple(Some(sock))]),
                    None => (head("📪", "close"), vec![file_path(a, 0)]),
                };
            }
            "mount" => return (head("💾", "mount"), vec![string_at(a, 0), string_at(a, 1)]),
            "setuid" => {
                return (
                    head("🔑", "setuid"),
                    vec![number_at(a, 0).map(|n| n.to_string()).unwrap_or_default()],
                );
            }
            "connect" => {
                if let Some(s) = first_sock(a) {
                    return (head("🔌", "connect"), vec![tuple(Some(s))]);
                }
                if let Some(sa) = a.iter().find_map(|x| match &x.arg {
                    Some(ArgValue::Sockaddr(sa)) => Some(sa),
                    _ => None,
                }) {
                    return (
                        head("🔌", "connect"),
                        vec![format!("-> {}:{}", sa.addr, sa.port)],
                    );
                }
            }
            "sendto" => return sendmsg(first_sock(a), last_number(a, 1)),
            "sendmsg" => {
                let sent = k.return_value.as_ref().and_then(|r| match &r.arg {
                    Some(ArgValue::Int(v)) if *v >= 0 => Some(i128::from(*v)),
                    Some(ArgValue::Long(v)) if *v >= 0 => Some(i128::from(*v)),
                    Some(ArgValue::Size(v)) => Some(i128::from(*v)),
                    _ => None,
                });
                return sendmsg(first_sock(a), sent);
            }
            _ => {}
        }
    }
    match k.function_name.as_str() {
        "fd_install" => (head("📬", "open"), vec![file_path(a, 1)]),
        "tcp_connect" => (
            head("🔌", "connect"),
            vec![tuple(arg(a, 0).and_then(|x| x.sock()))],
        ),
        "tcp_close" => (
            head("🧹", "close"),
            vec![tuple(arg(a, 0).and_then(|x| x.sock()))],
        ),
        "tcp_sendmsg" => sendmsg(
            arg(a, 0).and_then(|x| x.sock()),
            Some(number_at(a, 1).unwrap_or(0)),
        ),
        "security_file_permission" if a.len() > 1 => {
            let h = match number_at(a, 1) {
                Some(2) => head("📝", "write"),
                Some(4) => head("📚", "read"),
                _ => head("❓", "security_file_permission"),
            };
            (h, vec![file_path(a, 0)])
        }
        "security_mmap_file" if a.len() > 1 => {
            let prot = number_at(a, 1).unwrap_or(0);
            let mut tag = String::from("mmap-");
            for (bit, c) in [(1, 'r'), (2, 'w'), (4, 'x')] {
                if prot & bit != 0 {
                    tag.push(c);
                }
            }
            (head("📝", &tag), vec![file_path(a, 0)])
        }
        "security_path_truncate" if !a.is_empty() => {
            let path = arg(a, 0)
                .and_then(|x| x.path())
                .map(|p| p.path.clone())
                .unwrap_or_default();
            (head("📝", "truncate"), vec![path])
        }
        _ => (head("❓", "syscall"), vec![k.function_name.clone()]),
    }
}

fn tracepoint(t: &ProcessTracepoint) -> (String, Vec<String>) {
    if t.subsys == "raw_syscalls" && t.event == "sys_enter" {
        let name = match t.args.first().and_then(|a| a.arg.as_ref()) {
            Some(ArgValue::Long(nr)) => syscalls::x86_64_name(*nr),
            Some(ArgValue::SyscallId(id)) if id.abi.is_empty() || id.abi == "x64" => {
                syscalls::x86_64_name(i64::from(id.id))
            }
            _ => None,
        };
        (
            "☎  syscall".to_string(),
            vec![name.unwrap_or("unknown").to_string()],
        )
    } else {
        (
            head("⁉️", "tracepoint"),
            vec![t.subsys.clone(), t.event.clone()],
        )
    }
}

#[cfg(test)]
#[path = "compact_tests.rs"]
mod tests;
