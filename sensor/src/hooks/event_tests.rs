use super::*;
use crate::kernel::clock::BootClock;
use crate::kernel::decode::testutil::{RawArg, bytes_of, hook_bytes, int, raw};
use crate::kernel::decode::{Record, decode};
use serde_json::{Value, json};

const SAMPLES: &str = include_str!("../../../api/src/events/testdata/tetragon-sample-events.jsonl");

fn builder() -> EventBuilder {
    EventBuilder {
        node_name: "tetravm".into(),
        clock: BootClock::now(),
        enable_cred: false,
        enable_ns: false,
        host_ns: [0; abi::NS_COUNT],
    }
}

fn arg_meta(ir_type: ArgType, kind: u8, label: &str) -> ArgMeta {
    ArgMeta {
        ir_type,
        kind,
        label: label.into(),
    }
}

fn meta(kind: HookEventKind, function: &str, policy: &str, args: Vec<ArgMeta>) -> HookMeta {
    HookMeta {
        policy_name: policy.into(),
        policy_namespace: String::new(),
        kind,
        function_name: function.into(),
        args,
        return_type: None,
        message: String::new(),
        tags: vec![],
    }
}

fn rec(actions: u16, flags: u32, ret: i64) -> abi::HookRec {
    abi::HookRec {
        hdr: abi::MsgHeader {
            time: 5_000,
            ..Default::default()
        },
        pid: 77,
        tid: 78,
        ktime: 1234,
        selector: 0xffff,
        actions: actions | 1 << abi::act::POST,
        ret,
        flags,
        ..Default::default()
    }
}

/// Raw record → decode → event → JSON, as the pipeline does.
fn event_json(m: &HookMeta, r: abi::HookRec, args: &[RawArg]) -> (Value, u64) {
    let Record::Hook(h) = decode(&hook_bytes(r, args)).unwrap() else {
        panic!("not a hook record")
    };
    let process = Process {
        binary: "/usr/bin/cat".into(),
        pid: Some(77),
        ..Default::default()
    };
    let built = build(&builder(), &h, m, process.into(), None);
    let line = built.event.to_json().unwrap();
    // What we write must read back strictly.
    GetEventsResponse::from_json(&line).unwrap();
    (serde_json::from_str(&line).unwrap(), built.arg_errors)
}

/// The event object of `v` (`process_kprobe`, …) without process, parent and ancestors.
fn body(v: &Value, key: &str) -> Value {
    let mut b = v[key].clone();
    let o = b.as_object_mut().unwrap();
    assert!(o.remove("process").is_some(), "{key} has no process");
    o.remove("parent");
    o.remove("ancestors");
    b
}

/// The first sample event of kind `key` with `function_name` `f` (and `pick` true).
fn sample(key: &str, f: &str, pick: impl Fn(&Value) -> bool) -> Value {
    SAMPLES
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v[key]["function_name"] == f && pick(&v[key]))
        .map(|v| body(&v, key))
        .unwrap_or_else(|| panic!("no {key} {f} sample"))
}

/// Removes `permission` from every file_arg: the hook record does not carry the mode.
fn without_permission(mut v: Value) -> Value {
    if let Some(args) = v["args"].as_array_mut() {
        for a in args {
            if let Some(f) = a.get_mut("file_arg").and_then(Value::as_object_mut) {
                f.remove("permission");
            }
        }
    }
    v
}

fn sock_arg(
    family: u16,
    state: u16,
    saddr: &[u8],
    daddr: &[u8],
    sport: u16,
    dport: u16,
    cookie: u64,
) -> RawArg {
    let mut k = abi::SockArg {
        family,
        sock_type: 1,
        protocol: 6,
        state,
        sport,
        dport,
        cookie,
        ..Default::default()
    };
    k.saddr[..saddr.len()].copy_from_slice(saddr);
    k.daddr[..daddr.len()].copy_from_slice(daddr);
    raw(argk::SOCK, &bytes_of(&k))
}

fn sock_meta(function: &str, extra: Vec<ArgMeta>) -> HookMeta {
    let mut args = vec![arg_meta(ArgType::Sock, argk::SOCK, "")];
    args.extend(extra);
    meta(HookEventKind::Kprobe, function, "connect", args)
}

#[test]
fn tcp_connect_matches_tetragon() {
    let m = sock_meta("tcp_connect", vec![]);
    let (v, errors) = event_json(
        &m,
        rec(0, 0, 0),
        &[sock_arg(
            2,
            2,
            &[127, 0, 0, 1],
            &[127, 0, 0, 1],
            45972,
            8080,
            18380093661371702016,
        )],
    );
    assert_eq!(errors, 0);
    assert_eq!(
        body(&v, "process_kprobe"),
        sample("process_kprobe", "tcp_connect", |_| true)
    );
    assert_eq!(v["node_name"], "tetravm");
    assert_eq!(v["process_kprobe"]["process"]["tid"], 78);
}

#[test]
fn tcp_close_ipv6_and_sendmsg_match_tetragon() {
    let m = sock_meta("tcp_close", vec![]);
    let (v, _) = event_json(
        &m,
        rec(0, 0, 0),
        &[sock_arg(
            10,
            10,
            &[0; 16],
            &[0; 16],
            8080,
            0,
            18380093661511116928,
        )],
    );
    assert_eq!(
        body(&v, "process_kprobe"),
        sample("process_kprobe", "tcp_close", |e| e["args"][0]["sock_arg"]
            ["state"]
            == "TCP_LISTEN")
    );
    let mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1];
    let (v, _) = event_json(
        &m,
        rec(0, 0, 0),
        &[sock_arg(
            10,
            7,
            &mapped,
            &mapped,
            0,
            45972,
            18380093661511104768,
        )],
    );
    assert_eq!(
        body(&v, "process_kprobe"),
        sample("process_kprobe", "tcp_close", |e| e["args"][0]["sock_arg"]
            ["saddr"]
            == "::ffff:127.0.0.1")
    );
    let m = sock_meta("tcp_sendmsg", vec![arg_meta(ArgType::Int32, argk::INT, "")]);
    let (v, _) = event_json(
        &m,
        rec(0, 0, 0),
        &[
            sock_arg(
                2,
                8,
                &[127, 0, 0, 1],
                &[127, 0, 0, 1],
                45972,
                8080,
                18380093661371702016,
            ),
            int(6),
        ],
    );
    assert_eq!(
        body(&v, "process_kprobe"),
        sample("process_kprobe", "tcp_sendmsg", |_| true)
    );
}

#[test]
fn file_permission_with_return_matches_tetragon() {
    let mut m = meta(
        HookEventKind::Kprobe,
        "security_file_permission",
        "file-monitoring",
        vec![
            arg_meta(ArgType::File, argk::FILE, ""),
            arg_meta(ArgType::Int32, argk::INT, ""),
        ],
    );
    m.return_type = Some(ArgType::Int32);
    let (v, _) = event_json(
        &m,
        rec(0, abi::hf::RETURN, 0),
        &[raw(argk::FILE, b"/etc/passwd"), int(4)],
    );
    let want = sample("process_kprobe", "security_file_permission", |e| {
        e["args"][0]["file_arg"]["path"] == "/etc/passwd"
    });
    assert_eq!(body(&v, "process_kprobe"), without_permission(want));
}

#[test]
fn lsm_file_open_matches_tetragon() {
    let m = meta(
        HookEventKind::Lsm,
        "file_open",
        "lsm-file-open",
        vec![arg_meta(ArgType::File, argk::FILE, "")],
    );
    let (v, _) = event_json(&m, rec(0, 0, 0), &[raw(argk::FILE, b"/etc/passwd")]);
    let want = sample("process_lsm", "file_open", |_| true);
    assert_eq!(body(&v, "process_lsm"), without_permission(want));
    // A `security_` name is reported as the LSM hook name.
    let m = meta(HookEventKind::Lsm, "security_file_open", "p", vec![]);
    let (v, _) = event_json(&m, rec(0, 0, 0), &[]);
    assert_eq!(v["process_lsm"]["function_name"], "file_open");
}

/// Renders one argument alone and returns its JSON.
fn one(ty: ArgType, a: RawArg) -> Value {
    let kind = a.0;
    let m = meta(
        HookEventKind::Kprobe,
        "f",
        "p",
        vec![arg_meta(ty, kind, "")],
    );
    let (v, _) = event_json(&m, rec(0, 0, 0), &[a]);
    v["process_kprobe"]["args"][0].clone()
}

#[test]
fn integer_arguments_by_declared_type() {
    assert_eq!(one(ArgType::Int32, int(-5)), json!({"int_arg": -5}));
    assert_eq!(one(ArgType::Int8, int(-1)), json!({"int_arg": -1}));
    assert_eq!(one(ArgType::Int16, int(300)), json!({"int_arg": 300}));
    assert_eq!(one(ArgType::Fd, int(3)), json!({"int_arg": 3}));
    assert_eq!(
        one(ArgType::Uint32, int(0xffff_ffff)),
        json!({"uint_arg": 4294967295u32})
    );
    assert_eq!(one(ArgType::Uint8, int(200)), json!({"uint_arg": 200}));
    assert_eq!(one(ArgType::Uint16, int(65535)), json!({"uint_arg": 65535}));
    assert_eq!(one(ArgType::Int64, int(-7)), json!({"long_arg": "-7"}));
    assert_eq!(
        one(ArgType::Uint64, int(-1)),
        json!({"size_arg": "18446744073709551615"})
    );
    assert_eq!(one(ArgType::SizeT, int(4096)), json!({"size_arg": "4096"}));
    assert_eq!(
        one(ArgType::Capability, int(21)),
        json!({"capability_arg": {"value": 21, "name": "CAP_SYS_ADMIN"}})
    );
    assert_eq!(
        one(ArgType::Syscall64, int(257)),
        json!({"syscall_id": {"id": 257, "abi": NATIVE_ABI}})
    );
    assert_eq!(
        one(ArgType::Syscall64, int((1 << 31) | 5)),
        json!({"syscall_id": {"id": 5, "abi": COMPAT_ABI}})
    );
    assert_eq!(
        one(ArgType::KernelCapT, int(1 << 21)),
        json!({"kernel_cap_t_arg": "0000000000200000"})
    );
    assert_eq!(
        one(ArgType::BpfCmd, int(5)),
        json!({"bpf_cmd_arg": "BPF_PROG_LOAD"})
    );
    // A malformed INT (not 8 bytes) is a zero of its type, never a panic.
    assert_eq!(
        one(ArgType::Int32, raw(argk::INT, &[1, 2])),
        json!({"int_arg": 0})
    );
}

#[test]
fn string_and_buffer_arguments() {
    assert_eq!(
        one(ArgType::String, raw(argk::STR, b"hello")),
        json!({"string_arg": "hello"})
    );
    assert_eq!(
        one(ArgType::Filename, raw(argk::STR, b"/etc/shadow")),
        json!({"string_arg": "/etc/shadow"})
    );
    assert_eq!(
        one(ArgType::CharBuf, raw(argk::BUF, b"hi\n")),
        json!({"bytes_arg": "aGkK"})
    );
    assert_eq!(
        one(ArgType::CharIovec, raw(argk::BUF, b"abc")),
        json!({"bytes_arg": "YWJj"})
    );
    assert_eq!(
        one(
            ArgType::CharBuf,
            (argk::BUF, abi::aux::CUT | 10_000, b"abcd".to_vec())
        ),
        json!({"truncated_bytes_arg": {"bytes_arg": "YWJjZA==", "orig_size": "10000"}})
    );
}

#[test]
fn path_arguments() {
    assert_eq!(
        one(ArgType::Fd, raw(argk::FD, b"/tmp/x")),
        json!({"file_arg": {"path": "/tmp/x"}})
    );
    assert_eq!(
        one(ArgType::File, raw(argk::FILE, b"/tmp/x")),
        json!({"file_arg": {"path": "/tmp/x"}})
    );
    assert_eq!(
        one(ArgType::Path, raw(argk::PATH, b"/tmp")),
        json!({"path_arg": {"path": "/tmp"}})
    );
    assert_eq!(
        one(ArgType::Dentry, raw(argk::DENTRY, b"/tmp/d")),
        json!({"path_arg": {"path": "/tmp/d"}})
    );
    assert_eq!(
        one(ArgType::LinuxBinprm, raw(argk::BINPRM, b"/usr/bin/id")),
        json!({"linux_binprm_arg": {"path": "/usr/bin/id"}})
    );
}

#[test]
fn socket_and_cred_arguments() {
    let mut k = abi::SockArg {
        family: 2,
        sock_type: 2,
        protocol: 17,
        state: 7,
        sport: 5353,
        dport: 53,
        cookie: 42,
        ..Default::default()
    };
    k.saddr[..4].copy_from_slice(&[10, 0, 0, 2]);
    k.daddr[..4].copy_from_slice(&[8, 8, 8, 8]);
    assert_eq!(
        one(ArgType::Socket, raw(argk::FD_SOCK, &bytes_of(&k))),
        json!({"sock_arg": {"family": "AF_INET", "type": "SOCK_DGRAM",
                "protocol": "IPPROTO_UDP", "saddr": "10.0.0.2", "daddr": "8.8.8.8",
                "sport": 5353, "dport": 53, "cookie": "42", "state": "TCP_CLOSE"}})
    );
    let unix = abi::SockArg {
        family: 1,
        sock_type: 1,
        state: 1,
        ..Default::default()
    };
    assert_eq!(
        one(ArgType::Sock, raw(argk::SOCK, &bytes_of(&unix))),
        json!({"sock_arg": {"family": "AF_UNIX", "type": "SOCK_STREAM"}})
    );
    let mut sa = abi::SockaddrArg {
        family: 10,
        port: 443,
        ..Default::default()
    };
    sa.addr = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    assert_eq!(
        one(ArgType::Sockaddr, raw(argk::SOCKADDR, &bytes_of(&sa))),
        json!({"sockaddr_arg": {"family": "AF_INET6", "addr": "2001:db8::1", "port": 443}})
    );
    let c = abi::Creds {
        uid: 1000,
        gid: 1000,
        euid: 0,
        egid: 0,
        suid: 1000,
        sgid: 1000,
        fsuid: 0,
        fsgid: 0,
        securebits: 1,
        cap_permitted: 1 << 21,
        cap_effective: (1 << 21) | 1,
        ..Default::default()
    };
    assert_eq!(
        one(ArgType::Cred, raw(argk::CRED, &bytes_of(&c))),
        json!({"process_credentials_arg": {"uid": 1000, "gid": 1000, "euid": 0, "egid": 0,
                "suid": 1000, "sgid": 1000, "fsuid": 0, "fsgid": 0,
                "securebits": ["SecBitNoRoot"],
                "caps": {"permitted": ["CAP_SYS_ADMIN"],
                         "effective": ["CAP_CHOWN", "CAP_SYS_ADMIN"]}}})
    );
    assert_eq!(
        one(ArgType::NetDevice, raw(argk::NETDEV, b"eth0")),
        json!({"net_dev_arg": {"name": "eth0"}})
    );
}

#[test]
fn unreadable_arguments_keep_their_position_empty() {
    let m = meta(
        HookEventKind::Kprobe,
        "__x64_sys_connect",
        "p",
        vec![
            arg_meta(ArgType::Fd, argk::FD, "fd"),
            arg_meta(ArgType::Sockaddr, argk::SOCKADDR, "addr"),
            arg_meta(ArgType::String, argk::STR, ""),
            arg_meta(ArgType::Cred, argk::CRED, ""),
            arg_meta(ArgType::Int32, argk::INT, "len"),
        ],
    );
    let err = |kind| (kind, abi::aux::ERR, vec![]);
    let (v, errors) = event_json(
        &m,
        rec(0, 0, 0),
        &[
            err(argk::FD),
            err(argk::SOCKADDR),
            err(argk::STR),
            err(argk::CRED),
            int(16),
        ],
    );
    assert_eq!(errors, 4);
    assert_eq!(
        v["process_kprobe"]["args"],
        json!([
            {"file_arg": {}, "label": "fd"},
            {"sockaddr_arg": {}, "label": "addr"},
            {"string_arg": ""},
            {"process_credentials_arg": {}},
            {"int_arg": 16, "label": "len"},
        ])
    );
}

#[test]
fn kprobe_actions_return_message_tags() {
    let mut m = meta(
        HookEventKind::Kprobe,
        "__x64_sys_openat",
        "deny-open",
        vec![arg_meta(ArgType::String, argk::STR, "name")],
    );
    m.message = "open denied".into();
    m.tags = vec!["file".into(), "enforce".into()];
    m.return_type = Some(ArgType::Int64);
    let a = [raw(argk::STR, b"/etc/shadow")];
    let (v, _) = event_json(&m, rec(1 << abi::act::OVERRIDE, abi::hf::RETURN, -1), &a);
    let k = &v["process_kprobe"];
    assert_eq!(k["action"], "KPROBE_ACTION_OVERRIDE");
    assert_eq!(k["return_action"], "KPROBE_ACTION_POST");
    assert_eq!(k["return"], json!({"long_arg": "-1"}));
    assert_eq!(k["message"], "open denied");
    assert_eq!(k["tags"], json!(["file", "enforce"]));
    assert_eq!(k["policy_name"], "deny-open");
    assert_eq!(k["function_name"], "__x64_sys_openat");
    assert_eq!(k["args"][0]["label"], "name");
    let (v, _) = event_json(&m, rec(1 << abi::act::SIGKILL, 0, 0), &a);
    assert_eq!(v["process_kprobe"]["action"], "KPROBE_ACTION_SIGKILL");
    assert!(v["process_kprobe"].get("return").is_none());
    let (v, _) = event_json(&m, rec(1 << abi::act::SIGNAL, 0, 0), &a);
    assert_eq!(v["process_kprobe"]["action"], "KPROBE_ACTION_SIGNAL");
    // A return without a declared type is an int.
    m.return_type = None;
    let (v, _) = event_json(&m, rec(0, abi::hf::RETURN, 3), &a);
    assert_eq!(v["process_kprobe"]["return"], json!({"int_arg": 3}));
    assert_eq!(v["process_kprobe"]["action"], "KPROBE_ACTION_POST");
}

#[test]
fn tracepoint_and_uprobe_events() {
    let mut m = meta(
        HookEventKind::Tracepoint {
            subsys: "syscalls".into(),
            event: "sys_enter_openat".into(),
        },
        "",
        "tp-policy",
        vec![
            arg_meta(ArgType::Int32, argk::INT, ""),
            arg_meta(ArgType::String, argk::STR, ""),
        ],
    );
    m.message = "m".into();
    m.tags = vec!["t".into()];
    let (v, _) = event_json(
        &m,
        rec(1 << abi::act::SIGKILL, 0, 0),
        &[int(-100), raw(argk::STR, b"/etc/hosts")],
    );
    assert_eq!(
        body(&v, "process_tracepoint"),
        json!({"subsys": "syscalls", "event": "sys_enter_openat",
                "args": [{"int_arg": -100}, {"string_arg": "/etc/hosts"}],
                "policy_name": "tp-policy", "action": "KPROBE_ACTION_SIGKILL",
                "message": "m", "tags": ["t"]})
    );
    assert_eq!(hook_label(&m), "tracepoint:syscalls/sys_enter_openat");
    let m = meta(
        HookEventKind::Uprobe {
            path: "/bin/bash".into(),
            symbol: "readline".into(),
            offset: 0,
        },
        "",
        "up",
        vec![],
    );
    let (v, _) = event_json(&m, rec(0, 0, 0), &[]);
    assert_eq!(
        body(&v, "process_uprobe"),
        json!({"path": "/bin/bash", "symbol": "readline", "policy_name": "up",
                "action": "KPROBE_ACTION_POST"})
    );
    let m = meta(
        HookEventKind::Uprobe {
            path: "/lib/libc.so.6".into(),
            symbol: String::new(),
            offset: 0x1234,
        },
        "",
        "up",
        vec![arg_meta(ArgType::Uint64, argk::INT, "")],
    );
    let (v, _) = event_json(&m, rec(0, 0, 0), &[int(9)]);
    assert_eq!(
        body(&v, "process_uprobe"),
        json!({"path": "/lib/libc.so.6", "policy_name": "up",
                "args": [{"size_arg": "9"}], "offset": "4660", "action": "KPROBE_ACTION_POST"})
    );
}

#[test]
fn hook_labels() {
    let m = sock_meta("tcp_connect", vec![]);
    assert_eq!(hook_label(&m), "kprobe:tcp_connect");
    let m = meta(HookEventKind::Lsm, "file_open", "p", vec![]);
    assert_eq!(hook_label(&m), "lsm:file_open");
}
