//! [`EventView`] from event JSON (Vigil's or Tetragon's `process_kprobe`, `process_tracepoint`,
//! `process_uprobe`, `process_lsm`).
//!
//! What events do not say stays unknown. In particular events carry one capability set and one
//! namespace set per process (the ones recorded at exec, from the process cache): they stand for
//! the task's current ones (matchCapabilities, matchNamespaces) — the kernel reads the live
//! task, which differs only after setuid/capset/setns/unshare — and the exec-time ones are left
//! unknown, so matchCapabilityChanges / matchNamespaceChanges stay undecided.

use std::net::IpAddr;

use super::view::{
    ArgView, CapSets, EventView, HookPoint, Ns, NsSet, PodView, ProcView, SockView, SockaddrView,
};
use crate::events::names;
use crate::events::{
    ArgValue, Capabilities, GetEventsResponse, KprobeArgument, Namespace, Namespaces, Process,
    capability_bit, parse_time_ns,
};
use crate::policy::ir::NamespaceType;

/// Bit 31 of a `syscall64` value marks a 32-bit (compat) syscall.
const SYSCALL_COMPAT: u64 = 1 << 31;

impl EventView {
    /// The view of a hook event; `None` for process_exec / process_exit (no hook fired).
    pub fn from_event(ev: &GetEventsResponse) -> Option<EventView> {
        let (point, policy_name, process, parent, ancestors, args, ret) =
            if let Some(k) = &ev.process_kprobe {
                (
                    HookPoint::Kprobe {
                        function: k.function_name.clone(),
                    },
                    &k.policy_name,
                    &k.process,
                    &k.parent,
                    &k.ancestors,
                    &k.args,
                    k.return_value.as_ref().and_then(return_value),
                )
            } else if let Some(t) = &ev.process_tracepoint {
                (
                    HookPoint::Tracepoint {
                        subsystem: t.subsys.clone(),
                        event: t.event.clone(),
                    },
                    &t.policy_name,
                    &t.process,
                    &t.parent,
                    &t.ancestors,
                    &t.args,
                    None,
                )
            } else if let Some(u) = &ev.process_uprobe {
                (
                    HookPoint::Uprobe {
                        path: u.path.clone(),
                        symbol: u.symbol.clone(),
                        offset: u.offset,
                    },
                    &u.policy_name,
                    &u.process,
                    &u.parent,
                    &u.ancestors,
                    &u.args,
                    None,
                )
            } else if let Some(l) = &ev.process_lsm {
                (
                    HookPoint::Lsm {
                        hook: l.function_name.clone(),
                    },
                    &l.policy_name,
                    &l.process,
                    &l.parent,
                    &l.ancestors,
                    &l.args,
                    None,
                )
            } else {
                return None;
            };
        Some(EventView {
            point,
            policy_name: policy_name.clone(),
            process: process.as_deref().map(proc_view),
            ancestors: parent
                .iter()
                .chain(ancestors)
                .map(|p| proc_view(p))
                .collect(),
            args: args.iter().map(arg_view).collect(),
            ret,
            time_ns: parse_time_ns(&ev.time),
            node_labels: (!ev.node_labels.is_empty()).then(|| ev.node_labels.clone()),
        })
    }
}

fn return_value(a: &KprobeArgument) -> Option<i64> {
    match a.arg.as_ref()? {
        ArgValue::Int(v) => Some(i64::from(*v)),
        ArgValue::Uint(v) => Some(i64::from(*v)),
        ArgValue::Size(v) => Some(*v as i64),
        ArgValue::Long(v) => Some(*v),
        _ => None,
    }
}

/// What a process in an event tells the evaluator.
pub fn proc_view(p: &Process) -> ProcView {
    let ns = p.ns.as_ref().map(ns_set);
    let host_pid_ns = p.ns.as_ref().and_then(|n| n.pid).map(|n| n.is_host);
    let container_pid = p
        .pod
        .as_ref()
        .and_then(|pod| pod.container.as_ref())
        .and_then(|c| c.pid);
    let ns_pid = match host_pid_ns {
        Some(true) => p.pid,
        _ => container_pid,
    };
    let host_user_ns =
        p.ns.as_ref()
            .and_then(|n| n.user)
            .map(|u| u.is_host)
            .or_else(|| {
                p.process_credentials
                    .as_ref()
                    .and_then(|c| c.user_ns.as_ref())
                    .and_then(|u| u.level)
                    .map(|level| level == 0)
            });
    // The sensor fills a pod it does not know yet with the container's pid only.
    let pod = p
        .pod
        .as_ref()
        .filter(|pod| !pod.namespace.is_empty() || !pod.name.is_empty())
        .map(|pod| PodView {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            labels: pod.pod_labels.clone(),
            container_name: pod
                .container
                .as_ref()
                .map(|c| c.name.clone())
                .unwrap_or_default(),
        });
    let in_container = !p.docker.is_empty() || p.pod.is_some();
    ProcView {
        pid: p.pid,
        tid: p.tid,
        ns_pid,
        binary: (!p.binary.is_empty()).then(|| p.binary.clone()),
        caps: p.cap.as_ref().map(cap_sets),
        exec_caps: None,
        ns,
        exec_ns: None,
        host_user_ns,
        pod,
        in_container: Some(in_container),
    }
}

fn mask(names: &[String]) -> u64 {
    names
        .iter()
        .filter_map(|n| capability_bit(n))
        .filter(|b| *b < 64)
        .fold(0, |m, b| m | 1u64 << b)
}

fn cap_sets(c: &Capabilities) -> CapSets {
    CapSets {
        effective: mask(&c.effective),
        inheritable: mask(&c.inheritable),
        permitted: mask(&c.permitted),
    }
}

fn ns_set(n: &Namespaces) -> NsSet {
    let mut set = NsSet::default();
    // A namespace written as `{}` has inode 0 (omitted as a zero value): what the kernel
    // reads where the type does not exist (time namespaces on old kernels).
    let one = |x: &Option<Namespace>| {
        x.map(|v| Ns {
            inum: v.inum,
            is_host: v.is_host,
        })
    };
    for (t, v) in [
        (NamespaceType::Uts, &n.uts),
        (NamespaceType::Ipc, &n.ipc),
        (NamespaceType::Mnt, &n.mnt),
        (NamespaceType::Pid, &n.pid),
        (NamespaceType::PidForChildren, &n.pid_for_children),
        (NamespaceType::Net, &n.net),
        (NamespaceType::Time, &n.time),
        (NamespaceType::TimeForChildren, &n.time_for_children),
        (NamespaceType::Cgroup, &n.cgroup),
        (NamespaceType::User, &n.user),
    ] {
        if let Some(ns) = one(v) {
            set.set(t, ns);
        }
    }
    set
}

fn text(bytes: &[u8], full_len: u64, permission: &str) -> ArgView {
    ArgView::Text {
        bytes: bytes.to_vec(),
        full_len: full_len.max(bytes.len() as u64),
        file_type: names::file_type(permission),
    }
}

/// A path argument: an empty one is how events show a path the kernel could not resolve.
fn path(p: &str, permission: &str) -> ArgView {
    if p.is_empty() {
        ArgView::Unreadable
    } else {
        text(p.as_bytes(), 0, permission)
    }
}

fn ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// An argument as the kernel read it. The JSON shape says how it was rendered; the
/// declared type (checked by the evaluator) says how it is compared.
pub fn arg_view(a: &KprobeArgument) -> ArgView {
    let Some(v) = &a.arg else {
        return ArgView::Unreadable;
    };
    match v {
        ArgValue::Int(i) => ArgView::Int(i64::from(*i) as u64),
        ArgValue::Uint(u) => ArgView::Int(u64::from(*u)),
        ArgValue::Size(u) => ArgView::Int(*u),
        ArgValue::Long(l) => ArgView::Int(*l as u64),
        ArgValue::String(s) => text(s.as_bytes(), 0, ""),
        ArgValue::Bytes(b) => text(b, 0, ""),
        ArgValue::TruncatedBytes(t) => text(&t.bytes_arg, t.orig_size, ""),
        ArgValue::File(f) => path(&f.path, &f.permission),
        ArgValue::Path(p) => path(&p.path, &p.permission),
        ArgValue::LinuxBinprm(b) => path(&b.path, &b.permission),
        ArgValue::Capability(c) => match (c.value, capability_bit(&c.name)) {
            (Some(v), _) => ArgView::Int(i64::from(v) as u64),
            (None, Some(b)) => ArgView::Int(u64::from(b)),
            // protojson omits a zero value: a named capability 0 is CAP_CHOWN.
            (None, None) => ArgView::Int(0),
        },
        ArgValue::SyscallId(s) => {
            let compat = matches!(s.abi.as_str(), "i386" | "arm32");
            ArgView::Int(u64::from(s.id) | if compat { SYSCALL_COMPAT } else { 0 })
        }
        ArgValue::KernelCapT(h)
        | ArgValue::CapInheritable(h)
        | ArgValue::CapPermitted(h)
        | ArgValue::CapEffective(h) => match u64::from_str_radix(h.trim_start_matches("0x"), 16) {
            Ok(m) => ArgView::Int(m),
            Err(_) => ArgView::Opaque(v.field_name()),
        },
        ArgValue::BpfCmd(name) => match names::bpf_cmd(name) {
            Some(n) => ArgView::Int(n),
            None => ArgView::Opaque(v.field_name()),
        },
        ArgValue::Sock(s) => {
            if s.family.is_empty() {
                return ArgView::Unreadable;
            }
            let Some(family) = names::family(&s.family) else {
                return ArgView::Opaque(v.field_name());
            };
            ArgView::Sock(SockView {
                family,
                sock_type: names::sock_type(&s.sock_type),
                protocol: names::protocol(&s.protocol),
                state: names::tcp_state(&s.state),
                saddr: ip(&s.saddr),
                daddr: ip(&s.daddr),
                sport: s.sport as u16,
                dport: s.dport as u16,
                cookie: s.cookie,
            })
        }
        ArgValue::Skb(s) => {
            let Some(family) = names::family(&s.family) else {
                return ArgView::Opaque(v.field_name());
            };
            let protocol =
                names::protocol(&s.protocol).or_else(|| (s.proto != 0).then_some(s.proto as u16));
            ArgView::Sock(SockView {
                family,
                sock_type: None,
                protocol,
                state: None,
                saddr: ip(&s.saddr),
                daddr: ip(&s.daddr),
                sport: s.sport as u16,
                dport: s.dport as u16,
                cookie: 0,
            })
        }
        // An unreadable device renders with no name.
        ArgValue::NetDev(d) if d.name.is_empty() => ArgView::Unreadable,
        ArgValue::NetDev(d) => text(d.name.as_bytes(), 0, ""),
        ArgValue::Sockaddr(s) => {
            if s.family.is_empty() {
                return ArgView::Unreadable;
            }
            let Some(family) = names::family(&s.family) else {
                return ArgView::Opaque(v.field_name());
            };
            ArgView::Sockaddr(SockaddrView {
                family,
                addr: ip(&s.addr),
                port: s.port as u16,
            })
        }
        ArgValue::Error(_) => ArgView::Unreadable,
        other => ArgView::Opaque(other.field_name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &str = include_str!("../../events/testdata/tetragon-sample-events.jsonl");

    fn views() -> Vec<Option<EventView>> {
        SAMPLES
            .lines()
            .map(|l| EventView::from_event(&GetEventsResponse::from_json(l).unwrap()))
            .collect()
    }

    #[test]
    fn hook_events_have_views_and_exec_exit_do_not() {
        let v = views();
        assert_eq!(v.len(), 79);
        assert_eq!(v.iter().filter(|v| v.is_some()).count(), 17);
    }

    #[test]
    fn file_permission_sample_reads_as_the_kernel_saw_it() {
        let v = views().into_iter().flatten().next().unwrap();
        assert_eq!(
            v.point,
            HookPoint::Kprobe {
                function: "security_file_permission".into()
            }
        );
        assert_eq!(v.policy_name, "file-monitoring");
        assert_eq!(
            v.args[0],
            ArgView::Text {
                bytes: b"/etc/tetragon/tetragon.tp.d/lsm_file_open.yaml".to_vec(),
                full_len: 46,
                file_type: Some(0o100000),
            }
        );
        assert_eq!(v.args[1], ArgView::Int(4));
        assert_eq!(v.ret, Some(0));
        let p = v.process.unwrap();
        assert_eq!(p.pid, Some(109));
        assert_eq!(p.tid, Some(114));
        assert_eq!(p.binary.as_deref(), Some("/usr/bin/tetragon"));
        assert_eq!((p.caps, p.ns, p.ns_pid), (None, None, None));
        assert_eq!(p.in_container, Some(false));
        assert_eq!(v.ancestors.len(), 1);
        assert_eq!(v.ancestors[0].pid, Some(1));
        assert!(v.time_ns.is_some());
    }

    #[test]
    fn sockets_become_numbers() {
        let v = views()
            .into_iter()
            .flatten()
            .find(|v| v.point.to_string() == "kprobe tcp_connect")
            .unwrap();
        let ArgView::Sock(s) = &v.args[0] else {
            panic!("{:?}", v.args[0])
        };
        assert_eq!(s.family, 2);
        assert_eq!(s.protocol, Some(6));
        assert_eq!(s.sock_type, Some(1));
        assert!(s.saddr.is_some() && s.daddr.is_some());
        assert_ne!(s.dport, 0);
    }

    #[test]
    fn negative_ints_sign_extend_and_errors_are_unreadable() {
        let a = |j: &str| arg_view(&serde_json::from_str::<KprobeArgument>(j).unwrap());
        assert_eq!(a(r#"{"int_arg":-1}"#), ArgView::Int(u64::MAX));
        assert_eq!(a(r#"{"uint_arg":4294967295}"#), ArgView::Int(0xffff_ffff));
        assert_eq!(a(r#"{"long_arg":"-2"}"#), ArgView::Int(-2i64 as u64));
        assert_eq!(a(r#"{"file_arg":{}}"#), ArgView::Unreadable);
        assert_eq!(a(r#"{"sock_arg":{}}"#), ArgView::Unreadable);
        assert_eq!(a(r#"{"net_dev_arg":{}}"#), ArgView::Unreadable);
        assert_eq!(a(r#"{"net_dev_arg":{"name":"lo"}}"#), ArgView::text("lo"));
        assert_eq!(a(r#"{"error_arg":{"Message":"x"}}"#), ArgView::Unreadable);
        assert_eq!(a("{}"), ArgView::Unreadable);
        assert_eq!(
            a(r#"{"syscall_id":{"id":59,"abi":"i386"}}"#),
            ArgView::Int(59 | SYSCALL_COMPAT)
        );
        assert_eq!(
            a(r#"{"cap_effective_arg":"000001ffffffffff"}"#),
            ArgView::Int(0x1ff_ffff_ffff)
        );
        assert_eq!(
            a(r#"{"capability_arg":{"name":"CAP_CHOWN"}}"#),
            ArgView::Int(0)
        );
        assert_eq!(
            a(r#"{"process_credentials_arg":{"uid":0}}"#),
            ArgView::Opaque("process_credentials_arg")
        );
        assert_eq!(
            a(r#"{"truncated_bytes_arg":{"bytes_arg":"YWJj","orig_size":"9000"}}"#),
            ArgView::Text {
                bytes: b"abc".to_vec(),
                full_len: 9000,
                file_type: None
            }
        );
    }

    #[test]
    fn process_namespaces_caps_and_pods_are_read() {
        let line = r#"{"process_kprobe":{"process":{"pid":10,"binary":"/bin/x","docker":"abc","cap":{"effective":["CAP_SYS_ADMIN","DAC_OVERRIDE"]},"ns":{"pid":{"inum":4026532000},"time":{},"user":{"inum":4026531837,"is_host":true}},"pod":{"namespace":"prod","name":"web-1","pod_labels":{"app":"web"},"container":{"name":"nginx","pid":7}}},"function_name":"f"},"node_labels":{"zone":"a"}}"#;
        let v = EventView::from_event(&GetEventsResponse::from_json(line).unwrap()).unwrap();
        let p = v.process.unwrap();
        assert_eq!(p.caps.unwrap().effective, 1 << 21 | 1 << 1);
        assert_eq!(
            p.ns_pid,
            Some(7),
            "not the host pid ns: the container's pid"
        );
        assert_eq!(p.host_user_ns, Some(true));
        let ns = p.ns.unwrap();
        assert_eq!(ns.get(NamespaceType::Pid).unwrap().inum, 4026532000);
        assert_eq!(ns.get(NamespaceType::Net), None);
        assert_eq!(
            ns.get(NamespaceType::Time),
            Some(Ns {
                inum: 0,
                is_host: false
            })
        );
        assert_eq!(p.pod.unwrap().container_name, "nginx");
        assert_eq!(p.in_container, Some(true));
        assert_eq!(v.node_labels.unwrap()["zone"], "a");
    }
}
