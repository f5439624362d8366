//! Tests of `compact.rs` (kept apart so that the module stays readable).
use super::*;
use vigil_api::events::{Capabilities, Pod, ProcessExec, ProcessUprobe, capability_names};

fn exec_of(p: Process) -> GetEventsResponse {
    GetEventsResponse::new(
        ProcessExec {
            process: Some(p.into()),
            ..Default::default()
        },
        "node1",
        "t",
    )
}

#[test]
fn loss_markers_render_with_their_attribution() {
    use vigil_api::events::{LossKind, LossReason, LossStage};
    let loss = Loss {
        count: 42,
        stage: Some(LossStage::Kernel),
        reason: Some(LossReason::RingBufferFull),
        kind: Some(LossKind::Hook),
        policy: "file-open".into(),
        from: "2026-01-01T00:00:00.000000000Z".into(),
        to: "2026-01-01T00:00:01.000000000Z".into(),
    };
    let ev = loss.to_event("node1", "2026-01-01T00:00:01.5Z");
    assert_eq!(
        render(&ev).unwrap(),
        "⚠️ lost    node1 42 hook events of policy file-open (kernel: ring_buffer_full) \
         between 2026-01-01T00:00:00.000000000Z and 2026-01-01T00:00:01.000000000Z"
    );
    let plain = Loss {
        count: 3,
        ..Default::default()
    }
    .to_event("node1", "");
    assert_eq!(render(&plain).unwrap(), "⚠️ lost    node1 3 events");
}

#[test]
fn policy_demotions_render_on_one_line() {
    use vigil_api::events::PolicyDemoted;
    let d = PolicyDemoted {
        policy_name: "file-open".into(),
        policy_namespace: "team-a".into(),
        action: PolicyDemoted::MONITOR.into(),
        reason: "3.2% of a CPU over 10s, budget 1%".into(),
        cpu_percent: 3.2,
        budget_percent: 1.0,
        window_seconds: 10,
    };
    let ev = GetEventsResponse::policy_demoted("node1", 1, d.clone());
    assert_eq!(
        render(&ev).unwrap(),
        "⚠️ demoted node1 policy team-a/file-open → monitor: 3.2% of a CPU over 10s, budget 1%"
    );
    let cluster_wide = PolicyDemoted {
        policy_namespace: String::new(),
        action: PolicyDemoted::DISABLED.into(),
        reason: "over\nbudget".into(),
        ..d.clone()
    };
    assert_eq!(
        render(&GetEventsResponse::new(cluster_wide, "node1", "t")).unwrap(),
        "⚠️ demoted node1 policy file-open → disabled: \"over\\nbudget\""
    );
    let no_reason = PolicyDemoted {
        reason: String::new(),
        ..d
    };
    assert_eq!(
        render(&GetEventsResponse::new(no_reason, "node1", "t")).unwrap(),
        "⚠️ demoted node1 policy team-a/file-open → monitor"
    );
}

#[test]
fn pod_replaces_node_name() {
    let p = Process {
        binary: "/bin/ls".into(),
        arguments: "-l".into(),
        pod: Some(Pod {
            namespace: "kube-system".into(),
            name: "coredns-1".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        render(&exec_of(p)).unwrap(),
        "🚀 process kube-system/coredns-1 /bin/ls -l"
    );
}

#[test]
fn sys_admin_trailer_is_right_aligned_to_column_120() {
    let p = Process {
        binary: "/bin/ls".into(),
        cap: Some(Capabilities {
            effective: capability_names(1 << 21),
            ..Default::default()
        }),
        ..Default::default()
    };
    let line = render(&exec_of(p)).unwrap();
    assert!(line.starts_with("🚀 process node1 /bin/ls  "), "{line}");
    assert!(line.ends_with(" 🛑 CAP_SYS_ADMIN"), "{line}");
    // bytes before the trailer + one space + padded trailer (in chars) = 120 columns
    let body = "🚀 process node1 /bin/ls ";
    let trailer_chars = line[body.len() + 1..].chars().count();
    assert_eq!(trailer_chars, CAPS_COLUMN - body.len());
}

#[test]
fn no_trailer_without_sys_admin_in_effective() {
    let p = Process {
        binary: "/bin/ls".into(),
        cap: Some(Capabilities {
            permitted: capability_names(1 << 21),
            effective: capability_names(1 << 12),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(render(&exec_of(p)).unwrap(), "🚀 process node1 /bin/ls ");
}

#[test]
fn long_lines_get_the_trailer_after_one_space() {
    let p = Process {
        binary: "/b".repeat(70),
        cap: Some(Capabilities::from_masks(0, 1 << 21, 0)),
        ..Default::default()
    };
    let line = render(&exec_of(p)).unwrap();
    assert!(
        line.ends_with(&format!("{} 🛑 CAP_SYS_ADMIN", "/b".repeat(70) + " ")),
        "{line}"
    );
}

#[test]
fn quoting_follows_go() {
    assert_eq!(go_quote("a b"), "\"a b\"");
    assert_eq!(go_quote("\\n \" \""), "\"\\\\n \\\" \\\"\"");
    assert_eq!(go_quote("x\ty\n\u{1}"), "\"x\\ty\\n\\x01\"");
    assert_eq!(go_quote("é ü"), "\"é ü\"");
}

#[test]
fn syscall_prefixes_are_cut() {
    assert_eq!(syscall_name("__x64_sys_write"), "sys_write");
    assert_eq!(syscall_name("__arm64_sys_openat"), "sys_openat");
    assert_eq!(syscall_name("sys_close"), "sys_close");
    assert_eq!(syscall_name("tcp_connect"), "tcp_connect");
    assert_eq!(syscall_name("__fdget"), "__fdget");
}

fn kprobe_line(function: &str, args: Vec<ArgValue>) -> String {
    let ev = GetEventsResponse::new(
        ProcessKprobe {
            process: Some(
                Process {
                    binary: "/bin/x".into(),
                    ..Default::default()
                }
                .into(),
            ),
            function_name: function.into(),
            args: args.into_iter().map(KprobeArgument::new).collect(),
            ..Default::default()
        },
        "n",
        "t",
    );
    render(&ev).unwrap()
}

fn file(path: &str) -> ArgValue {
    ArgValue::File(vigil_api::events::KprobeFile {
        path: path.into(),
        ..Default::default()
    })
}

#[test]
fn syscall_hooks_with_two_args_show_the_byte_count_and_socket_closes_the_tuple() {
    assert_eq!(
        kprobe_line("__x64_sys_read", vec![file("/tmp/a"), ArgValue::Size(64)]),
        "📚 read    n /bin/x /tmp/a 64 bytes"
    );
    assert_eq!(
        kprobe_line(
            "__x64_sys_sendto",
            vec![
                sock("IPPROTO_TCP", "127.0.0.1", 5, "127.0.0.1", 80),
                ArgValue::Size(6)
            ]
        ),
        "📤 sendmsg n /bin/x tcp 127.0.0.1:5 -> 127.0.0.1:80 bytes 6"
    );
    assert_eq!(
        kprobe_line(
            "__x64_sys_close",
            vec![sock("IPPROTO_TCP", "127.0.0.1", 5, "127.0.0.1", 80)]
        ),
        "🧹 close   n /bin/x tcp 127.0.0.1:5 -> 127.0.0.1:80"
    );
}

#[test]
fn kprobe_renderings() {
    assert_eq!(
        kprobe_line(
            "__x64_sys_write",
            vec![file("/tmp/a"), ArgValue::Int(0), ArgValue::Size(12)]
        ),
        "📝 write   n /bin/x /tmp/a 12 bytes"
    );
    assert_eq!(
        kprobe_line("__x64_sys_read", vec![file("/tmp/a")]),
        "📚 read    n /bin/x /tmp/a "
    );
    assert_eq!(
        kprobe_line("fd_install", vec![ArgValue::Int(3), file("/etc/hosts")]),
        "📬 open    n /bin/x /etc/hosts"
    );
    assert_eq!(
        kprobe_line("__x64_sys_close", vec![file("/etc/hosts")]),
        "📪 close   n /bin/x /etc/hosts"
    );
    assert_eq!(
        kprobe_line(
            "__x64_sys_mount",
            vec![
                ArgValue::String("/dev/sda1".into()),
                ArgValue::String("/mnt".into())
            ]
        ),
        "💾 mount   n /bin/x /dev/sda1 /mnt"
    );
    assert_eq!(
        kprobe_line("__x64_sys_setuid", vec![ArgValue::Int(0)]),
        "🔑 setuid  n /bin/x 0"
    );
    assert_eq!(
        kprobe_line(
            "security_file_permission",
            vec![file("/f"), ArgValue::Int(1)]
        ),
        "❓ security_file_permission n /bin/x /f"
    );
    assert_eq!(
        kprobe_line(
            "security_mmap_file",
            vec![file("/lib.so"), ArgValue::Uint(5)]
        ),
        "📝 mmap-rx n /bin/x /lib.so"
    );
    assert_eq!(
        kprobe_line("do_sys_open", vec![]),
        "❓ syscall n /bin/x do_sys_open"
    );
}

fn sock(proto: &str, saddr: &str, sport: u32, daddr: &str, dport: u32) -> ArgValue {
    ArgValue::Sock(KprobeSock {
        family: "AF_INET".into(),
        sock_type: "SOCK_STREAM".into(),
        protocol: proto.into(),
        saddr: saddr.into(),
        sport,
        daddr: daddr.into(),
        dport,
        ..Default::default()
    })
}

fn kprobe_ret(function: &str, args: Vec<ArgValue>, ret: ArgValue) -> String {
    let ev = GetEventsResponse::new(
        ProcessKprobe {
            process: Some(
                Process {
                    binary: "/bin/x".into(),
                    ..Default::default()
                }
                .into(),
            ),
            function_name: function.into(),
            args: args.into_iter().map(KprobeArgument::new).collect(),
            return_value: Some(KprobeArgument::new(ret)),
            ..Default::default()
        },
        "n",
        "t",
    );
    render(&ev).unwrap()
}

#[test]
fn open_renders_alike_whatever_the_mechanism() {
    let openat = || {
        vec![
            ArgValue::Int(-100),
            ArgValue::String("/etc/passwd".into()),
            ArgValue::Int(0),
        ]
    };
    for f in [
        "__x64_sys_openat",
        "__arm64_sys_openat",
        "sys_openat",
        "openat",
    ] {
        assert_eq!(
            kprobe_line(f, openat()),
            "📬 open    n /bin/x /etc/passwd",
            "{f}"
        );
    }
    for f in ["__x64_sys_open", "open"] {
        assert_eq!(
            kprobe_line(f, vec![ArgValue::String("/etc/hosts".into())]),
            "📬 open    n /bin/x /etc/hosts",
            "{f}"
        );
    }
    // openat with the name as a file or path (other declared types) still shows it.
    assert_eq!(
        kprobe_line("openat", vec![file("/etc/group")]),
        "📬 open    n /bin/x /etc/group"
    );
}

#[test]
fn read_write_close_render_alike_whatever_the_mechanism() {
    let io = || vec![file("/tmp/a"), ArgValue::Bytes(vec![]), ArgValue::Size(12)];
    for f in ["__x64_sys_read", "read", "pread64", "__x64_sys_pread64"] {
        assert_eq!(
            kprobe_line(f, io()),
            "📚 read    n /bin/x /tmp/a 12 bytes",
            "{f}"
        );
    }
    for f in ["__x64_sys_write", "write", "pwrite64", "__x64_sys_pwrite64"] {
        assert_eq!(
            kprobe_line(f, io()),
            "📝 write   n /bin/x /tmp/a 12 bytes",
            "{f}"
        );
    }
    for f in ["__x64_sys_close", "close", "sys_close"] {
        assert_eq!(
            kprobe_line(f, vec![file("/tmp/a")]),
            "📪 close   n /bin/x /tmp/a",
            "{f}"
        );
    }
}

#[test]
fn socket_syscalls_and_tcp_kprobes() {
    let s = || sock("IPPROTO_TCP", "10.0.0.1", 40000, "10.0.0.2", 443);
    for f in ["__x64_sys_connect", "connect"] {
        assert_eq!(
            kprobe_line(f, vec![s(), ArgValue::Int(16)]),
            "🔌 connect n /bin/x tcp 10.0.0.1:40000 -> 10.0.0.2:443",
            "{f}"
        );
    }
    assert_eq!(
        kprobe_line("tcp_connect", vec![s()]),
        "🔌 connect n /bin/x tcp 10.0.0.1:40000 -> 10.0.0.2:443"
    );
    assert_eq!(
        kprobe_line(
            "connect",
            vec![
                ArgValue::Int(3),
                ArgValue::Sockaddr(vigil_api::events::KprobeSockaddr {
                    family: "AF_INET".into(),
                    addr: "1.1.1.1".into(),
                    port: 53,
                })
            ]
        ),
        "🔌 connect n /bin/x -> 1.1.1.1:53"
    );
    assert_eq!(
        kprobe_line(
            "__x64_sys_sendto",
            vec![
                sock("IPPROTO_UDP", "10.0.0.1", 5353, "10.0.0.3", 53),
                ArgValue::Bytes(vec![]),
                ArgValue::Size(33)
            ]
        ),
        "📤 sendmsg n /bin/x udp 10.0.0.1:5353 -> 10.0.0.3:53 bytes 33"
    );
    assert_eq!(
        kprobe_ret(
            "__x64_sys_sendmsg",
            vec![s(), ArgValue::Int(0)],
            ArgValue::Long(7)
        ),
        "📤 sendmsg n /bin/x tcp 10.0.0.1:40000 -> 10.0.0.2:443 bytes 7"
    );
    assert_eq!(
        kprobe_line("sendmsg", vec![s()]),
        "📤 sendmsg n /bin/x tcp 10.0.0.1:40000 -> 10.0.0.2:443"
    );
    assert_eq!(
        kprobe_line("tcp_sendmsg", vec![s(), ArgValue::Int(6)]),
        "📤 sendmsg n /bin/x tcp 10.0.0.1:40000 -> 10.0.0.2:443 bytes 6"
    );
    assert_eq!(
        kprobe_line("tcp_close", vec![sock("IPPROTO_TCP", "::", 8080, "::", 0)]),
        "🧹 close   n /bin/x tcp :::8080 -> :::0"
    );
}

#[test]
fn lsm_and_unknown_hooks() {
    let ev = GetEventsResponse::new(
        vigil_api::events::ProcessLsm {
            process: Some(
                Process {
                    binary: "/usr/bin/cat".into(),
                    ..Default::default()
                }
                .into(),
            ),
            function_name: "file_open".into(),
            args: vec![KprobeArgument::new(file("/etc/passwd"))],
            ..Default::default()
        },
        "n",
        "t",
    );
    assert_eq!(render(&ev).unwrap(), "🔒 LSM     n /usr/bin/cat file_open");
    assert_eq!(
        kprobe_line("__x64_sys_unlinkat", vec![]),
        "❓ syscall n /bin/x __x64_sys_unlinkat"
    );
    assert_eq!(
        kprobe_line("security_bprm_check", vec![]),
        "❓ syscall n /bin/x security_bprm_check"
    );
    // A connect hook without any address falls back to the generic line.
    assert_eq!(
        kprobe_line("connect", vec![ArgValue::Int(3)]),
        "❓ syscall n /bin/x connect"
    );
}

#[test]
fn syscall_names_bare_or_prefixed() {
    assert_eq!(syscall_of("__x64_sys_openat"), Some("openat"));
    assert_eq!(syscall_of("sys_close"), Some("close"));
    assert_eq!(syscall_of("pread64"), Some("pread64"));
    assert_eq!(syscall_of("tcp_connect"), None);
    assert_eq!(syscall_of("security_file_open"), None);
}

#[test]
fn tracepoint_uprobe_renderings() {
    let tp = |subsys: &str, event: &str, nr: i64| {
        let ev = GetEventsResponse::new(
            ProcessTracepoint {
                process: Some(
                    Process {
                        binary: "/bin/x".into(),
                        ..Default::default()
                    }
                    .into(),
                ),
                subsys: subsys.into(),
                event: event.into(),
                args: vec![KprobeArgument::new(ArgValue::Long(nr))],
                ..Default::default()
            },
            "n",
            "t",
        );
        render(&ev).unwrap()
    };
    assert_eq!(
        tp("raw_syscalls", "sys_enter", 59),
        "☎  syscall n /bin/x execve"
    );
    assert_eq!(
        tp("raw_syscalls", "sys_enter", 9999),
        "☎  syscall n /bin/x unknown"
    );
    assert_eq!(
        tp("sched", "sched_process_fork", 0),
        "⁉️ tracepoint n /bin/x sched sched_process_fork"
    );
    let ev = GetEventsResponse::new(
        ProcessUprobe {
            process: Some(
                Process {
                    binary: "/bin/bash".into(),
                    ..Default::default()
                }
                .into(),
            ),
            path: "/bin/bash".into(),
            symbol: "readline".into(),
            ..Default::default()
        },
        "n",
        "t",
    );
    assert_eq!(
        render(&ev).unwrap(),
        "🕵️ uprobe  n /bin/bash /bin/bash readline"
    );
}

#[test]
fn event_without_process_is_an_error() {
    let ev = GetEventsResponse::new(ProcessExec::default(), "n", "t");
    assert_eq!(
        render(&ev).unwrap_err().to_string(),
        "process_exec has no process"
    );
}
