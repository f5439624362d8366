//! The evaluator's input: what one hook call looked like, in the terms the kernel programs
//! compare (integers as raw bits, strings as bytes, sockets as numbers and addresses).
//!
//! Every field the kernel reads but an event may not carry is an `Option`: `None` means "not
//! known", and a filter that needs it is reported as unknown rather than guessed. A
//! differential test builds these directly from what it knows about the call; `vigil policy
//! test` builds them from event JSON ([`EventView::from_event`]).

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::policy::ir::NamespaceType;

/// One hook call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventView {
    /// Where the call was observed.
    pub point: HookPoint,
    /// The policy that produced the event (informational: the evaluator finds the hook by
    /// `point`). Empty when unknown.
    pub policy_name: String,
    /// The calling process; `None` when not known at all.
    pub process: Option<ProcView>,
    /// The parent first, then further ancestors, nearest first (followForks, followChildren).
    pub ancestors: Vec<ProcView>,
    /// Arguments in the order the hook declares them (`nop` arguments left out), as events
    /// list them.
    pub args: Vec<ArgView>,
    /// Return value of a return probe, as the kernel saw it (sign-extended to 64 bits).
    pub ret: Option<i64>,
    /// When the call happened, nanoseconds since the Unix epoch (rate limits only).
    pub time_ns: Option<u64>,
    /// The node's labels (hostSelector, nodeSelector); `None` when not known.
    pub node_labels: Option<BTreeMap<String, String>>,
}

/// The attach point of a hook, as events name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookPoint {
    /// A kernel function or system call (`__x64_sys_openat`, `tcp_connect`, …).
    Kprobe {
        function: String,
    },
    /// An LSM hook, without `security_` (`file_open`).
    Lsm {
        hook: String,
    },
    Tracepoint {
        subsystem: String,
        event: String,
    },
    /// A user-space probe: binary path, symbol (empty for a bare offset) and offset.
    Uprobe {
        path: String,
        symbol: String,
        offset: u64,
    },
}

impl Default for HookPoint {
    fn default() -> Self {
        HookPoint::Kprobe {
            function: String::new(),
        }
    }
}

impl std::fmt::Display for HookPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookPoint::Kprobe { function } => write!(f, "kprobe {function}"),
            HookPoint::Lsm { hook } => write!(f, "lsm {hook}"),
            HookPoint::Tracepoint { subsystem, event } => {
                write!(f, "tracepoint {subsystem}/{event}")
            }
            HookPoint::Uprobe {
                path,
                symbol,
                offset,
            } => {
                write!(f, "uprobe {path}:{symbol}")?;
                if *offset != 0 {
                    write!(f, "+{offset:#x}")?;
                }
                Ok(())
            }
        }
    }
}

/// What the kernel knows about a process (the calling one or an ancestor).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcView {
    /// Thread group id (host PID namespace).
    pub pid: Option<u32>,
    /// Thread id of the calling thread (rate limits with scope `thread`).
    pub tid: Option<u32>,
    /// The process id in its own PID namespace (`isNamespacePID`).
    pub ns_pid: Option<u32>,
    /// The executable path recorded at exec.
    pub binary: Option<String>,
    /// Capability sets of the task at the call (matchCapabilities).
    pub caps: Option<CapSets>,
    /// Capability sets recorded at exec (matchCapabilityChanges compares them with `caps`).
    pub exec_caps: Option<CapSets>,
    /// Namespaces of the task at the call (matchNamespaces).
    pub ns: Option<NsSet>,
    /// Namespaces recorded at exec (matchNamespaceChanges compares them with `ns`).
    pub exec_ns: Option<NsSet>,
    /// The task's user namespace is the host's (`isNamespaceCapability`).
    pub host_user_ns: Option<bool>,
    /// The pod the process runs in, when known; `None` also for host processes.
    pub pod: Option<PodView>,
    /// Whether the process runs in a container (hostSelector); `None` when not known.
    pub in_container: Option<bool>,
}

/// The three capability sets as bit masks (bit n = capability n).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    pub effective: u64,
    pub inheritable: u64,
    pub permitted: u64,
}

/// One namespace: inode number and whether it is the host's (pid 1's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ns {
    pub inum: u32,
    pub is_host: bool,
}

/// The ten namespaces of a task; `None` for a type that is not known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NsSet(pub [Option<Ns>; 10]);

impl NsSet {
    /// The namespace of type `t` (`None` for an unknown type or value).
    pub fn get(&self, t: NamespaceType) -> Option<Ns> {
        let i = (t as usize).checked_sub(1)?;
        self.0.get(i).copied().flatten()
    }

    /// Sets the namespace of type `t` (ignored for `Unspecified`).
    pub fn set(&mut self, t: NamespaceType, ns: Ns) {
        if let Some(slot) = (t as usize).checked_sub(1).and_then(|i| self.0.get_mut(i)) {
            *slot = Some(ns);
        }
    }
}

/// The Kubernetes pod of a process, as far as workload scopes look at it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The container's name (containerSelector matches `{name: …}`).
    pub container_name: String,
}

/// One argument value as the kernel read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgView {
    /// An integer's bits (the evaluator sign- or zero-extends them by the declared type, as
    /// the kernel does).
    Int(u64),
    /// A string, buffer or resolved path: the bytes read (possibly cut to what the kernel
    /// keeps), the full length when the kernel knew a larger one (buffers), and the file type
    /// (`S_IFMT` bits) when known.
    Text {
        bytes: Vec<u8>,
        full_len: u64,
        file_type: Option<u32>,
    },
    Sock(SockView),
    Sockaddr(SockaddrView),
    /// The kernel could not read the value (bad pointer, fd that is no socket, …).
    Unreadable,
    /// A value filters cannot look at (credentials, BPF objects, …): its event field name.
    Opaque(&'static str),
}

impl ArgView {
    /// Text from a string (full length = its length, no file type).
    pub fn text(s: impl Into<Vec<u8>>) -> Self {
        let bytes = s.into();
        ArgView::Text {
            full_len: bytes.len() as u64,
            bytes,
            file_type: None,
        }
    }

    /// What kind of value this is, for messages.
    pub fn describe(&self) -> &'static str {
        match self {
            ArgView::Int(_) => "an integer",
            ArgView::Text { .. } => "a string or path",
            ArgView::Sock(_) => "a socket",
            ArgView::Sockaddr(_) => "a sockaddr",
            ArgView::Unreadable => "unreadable",
            ArgView::Opaque(k) => k,
        }
    }
}

/// A socket (`struct sock`), numbers as the kernel has them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SockView {
    /// `AF_*` number.
    pub family: u16,
    /// `SOCK_*` number, when known (rate-limit identity only).
    pub sock_type: Option<u16>,
    /// `IPPROTO_*` number, when known.
    pub protocol: Option<u16>,
    /// `TCP_*` state number, when known.
    pub state: Option<u16>,
    /// Addresses (for AF_INET / AF_INET6 sockets), when known.
    pub saddr: Option<IpAddr>,
    pub daddr: Option<IpAddr>,
    pub sport: u16,
    pub dport: u16,
    pub cookie: u64,
}

/// A `struct sockaddr`: one family, address and port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SockaddrView {
    pub family: u16,
    pub addr: Option<IpAddr>,
    pub port: u16,
}
