//! Encoding rules of the event contract, checked on values built in code.

use serde_json::{Value, json};
use vigil_api::events::*;

fn to_value(ev: &GetEventsResponse) -> Value {
    serde_json::from_str(&ev.to_json().unwrap()).unwrap()
}

fn round_trip(ev: &GetEventsResponse) -> GetEventsResponse {
    GetEventsResponse::from_json(&ev.to_json().unwrap()).unwrap()
}

#[test]
fn exec_event_encodes_like_tetragon() {
    let process = Process {
        exec_id: exec_id("tetravm", 1_730_000_000, 1),
        pid: Some(1),
        uid: Some(0),
        cwd: "/".into(),
        binary: "/bin/busybox".into(),
        arguments: format_arguments(&["busybox", "sh", "/init"]),
        flags: (ProcessFlags::PROCFS | ProcessFlags::ROOTCWD).to_string(),
        start_time: format_time_ns(1_795_878_115_460_432_755),
        auid: Some(AUID_UNSET),
        parent_exec_id: exec_id("tetravm", 1, 0),
        tid: Some(1),
        in_init_tree: Some(false),
        ..Default::default()
    };
    let ev = GetEventsResponse::new(
        ProcessExec {
            process: Some(process.into()),
            ..Default::default()
        },
        "tetravm",
        "2026-11-28T15:01:55.460425385Z",
    );
    let want = json!({"process_exec":{"process":{
        "exec_id":"dGV0cmF2bToxNzMwMDAwMDAwOjE=", "pid":1, "uid":0, "cwd":"/",
        "binary":"/bin/busybox", "arguments":"sh /init", "flags":"procFS rootcwd",
        "start_time":"2026-11-28T15:01:55.460432755Z", "auid":4_294_967_295_u32,
        "parent_exec_id":"dGV0cmF2bToxOjA=", "tid":1, "in_init_tree":false}},
        "node_name":"tetravm", "time":"2026-11-28T15:01:55.460425385Z"});
    assert_eq!(to_value(&ev), want);
    assert_eq!(ev.kind(), Some(EventKind::ProcessExec));
    assert_eq!(round_trip(&ev), ev);
}

#[test]
fn zero_values_are_omitted_but_set_wrappers_are_kept() {
    let p = Process {
        pid: Some(0),
        in_init_tree: Some(false),
        refcnt: 0,
        ..Default::default()
    };
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v, json!({"pid":0, "in_init_tree":false}));
    let v = serde_json::to_value(Process::default()).unwrap();
    assert_eq!(v, json!({}));
    let ns = Namespace {
        inum: 0,
        is_host: false,
    };
    assert_eq!(serde_json::to_value(ns).unwrap(), json!({}));
}

#[test]
fn sixty_four_bit_values_are_strings_and_read_from_numbers() {
    let sock = KprobeSock {
        cookie: 18_380_093_661_371_702_016,
        ..Default::default()
    };
    let arg = KprobeArgument::new(ArgValue::Sock(sock.clone()));
    assert_eq!(
        serde_json::to_value(&arg).unwrap(),
        json!({"sock_arg":{"cookie":"18380093661371702016"}})
    );
    let from_number: KprobeArgument =
        serde_json::from_str(r#"{"sock_arg":{"cookie":18380093661371702016}}"#).unwrap();
    assert_eq!(from_number, arg);

    let size = KprobeArgument::new(ArgValue::Size(4096));
    assert_eq!(
        serde_json::to_value(&size).unwrap(),
        json!({"size_arg":"4096"})
    );
    let back: KprobeArgument = serde_json::from_str(r#"{"size_arg":4096}"#).unwrap();
    assert_eq!(back, size);

    let long = KprobeArgument::new(ArgValue::Long(-5));
    assert_eq!(
        serde_json::to_value(&long).unwrap(),
        json!({"long_arg":"-5"})
    );
    assert_eq!(
        serde_json::from_str::<KprobeArgument>(r#"{"long_arg":-5}"#).unwrap(),
        long
    );
}

#[test]
fn scalar_oneof_values_are_written_even_when_zero() {
    let arg = KprobeArgument::new(ArgValue::Int(0));
    assert_eq!(serde_json::to_value(&arg).unwrap(), json!({"int_arg":0}));
    let arg = KprobeArgument::new(ArgValue::String(String::new())).with_label("name");
    assert_eq!(
        serde_json::to_value(&arg).unwrap(),
        json!({"string_arg":"", "label":"name"})
    );
    let empty = KprobeArgument::default();
    assert_eq!(serde_json::to_value(&empty).unwrap(), json!({}));
    assert_eq!(serde_json::from_str::<KprobeArgument>("{}").unwrap(), empty);
}

#[test]
fn bytes_are_base64() {
    let arg = KprobeArgument::new(ArgValue::Bytes(b"hi\n".to_vec()));
    assert_eq!(
        serde_json::to_value(&arg).unwrap(),
        json!({"bytes_arg":"aGkK"})
    );
    let back: KprobeArgument = serde_json::from_str(r#"{"bytes_arg":"aGkK"}"#).unwrap();
    assert_eq!(back, arg);
    let err = serde_json::from_str::<KprobeArgument>(r#"{"bytes_arg":"%%%"}"#).unwrap_err();
    assert!(err.to_string().contains("base64"), "{err}");
}

fn every_variant() -> Vec<ArgValue> {
    vec![
        ArgValue::String("/etc/passwd".into()),
        ArgValue::Int(-3),
        ArgValue::Skb(KprobeSkb {
            len: 60,
            saddr: "10.0.0.1".into(),
            protocol: "IPPROTO_TCP".into(),
            ..Default::default()
        }),
        ArgValue::Size(u64::MAX),
        ArgValue::Bytes(vec![0, 255, 7]),
        ArgValue::Path(KprobePath {
            path: "/tmp".into(),
            permission: "drwxrwxrwt".into(),
            ..Default::default()
        }),
        ArgValue::File(KprobeFile {
            mount: "/".into(),
            path: "/etc/passwd".into(),
            flags: "O_RDONLY".into(),
            permission: "-rw-r--r--".into(),
        }),
        ArgValue::TruncatedBytes(KprobeTruncatedBytes {
            bytes_arg: b"abc".to_vec(),
            orig_size: 1 << 40,
        }),
        ArgValue::Sock(KprobeSock {
            family: "AF_INET".into(),
            sock_type: "SOCK_STREAM".into(),
            sport: 1,
            dport: 2,
            ..Default::default()
        }),
        ArgValue::Cred(KprobeCred {
            effective: vec!["CAP_SYS_ADMIN".into()],
            ..Default::default()
        }),
        ArgValue::Long(i64::MIN),
        ArgValue::BpfAttr(KprobeBpfAttr {
            prog_type: "BPF_PROG_TYPE_KPROBE".into(),
            insn_cnt: 10,
            prog_name: "p".into(),
        }),
        ArgValue::PerfEvent(KprobePerfEvent {
            kprobe_func: "f".into(),
            event_type: "PERF_TYPE_TRACEPOINT".into(),
            config: 1,
            probe_offset: 2,
        }),
        ArgValue::BpfMap(KprobeBpfMap {
            map_type: "BPF_MAP_TYPE_HASH".into(),
            key_size: 4,
            value_size: 8,
            max_entries: 16,
            map_name: "m".into(),
        }),
        ArgValue::Uint(7),
        ArgValue::UserNamespace(KprobeUserNamespace {
            level: Some(0),
            ..Default::default()
        }),
        ArgValue::Capability(KprobeCapability {
            value: Some(21),
            name: "CAP_SYS_ADMIN".into(),
        }),
        ArgValue::ProcessCredentials(ProcessCredentials {
            uid: Some(0),
            euid: Some(1000),
            securebits: securebits_names(1),
            caps: Some(Capabilities::from_masks(1 << 21, 1 << 21, 0)),
            user_ns: Some(UserNamespace {
                level: Some(0),
                uid: Some(0),
                gid: Some(0),
                ns: Some(Namespace {
                    inum: 4_026_531_837,
                    is_host: true,
                }),
            }),
            ..Default::default()
        }),
        ArgValue::UserNs(UserNamespace {
            level: Some(1),
            ..Default::default()
        }),
        ArgValue::Module(KernelModule {
            name: "nf_tables".into(),
            signature_ok: Some(true),
            tainted: vec!["TAINT_OUT_OF_TREE_MODULE".into()],
        }),
        ArgValue::KernelCapT("000001ffffffffff".into()),
        ArgValue::CapInheritable("0".into()),
        ArgValue::CapPermitted("1".into()),
        ArgValue::CapEffective("2".into()),
        ArgValue::LinuxBinprm(KprobeLinuxBinprm {
            path: "/usr/bin/sudo".into(),
            ..Default::default()
        }),
        ArgValue::NetDev(KprobeNetDev {
            name: "eth0".into(),
        }),
        ArgValue::BpfCmd("BPF_PROG_LOAD".into()),
        ArgValue::SyscallId(SyscallId {
            id: 59,
            abi: "x64".into(),
        }),
        ArgValue::Sockaddr(KprobeSockaddr {
            family: "AF_INET6".into(),
            addr: "::1".into(),
            port: 443,
        }),
        ArgValue::BpfProg(KprobeBpfProg::default()),
        ArgValue::Error(KprobeError {
            message: "read failed".into(),
        }),
    ]
}

#[test]
fn every_argument_variant_round_trips_under_its_own_key() {
    let variants = every_variant();
    // ARGUMENT_FIELDS lists `label` plus every variant key once.
    assert_eq!(variants.len() + 1, ARGUMENT_FIELDS.len());
    for v in variants {
        let key = v.field_name();
        let arg = KprobeArgument::new(v).with_label("x");
        let json = serde_json::to_value(&arg).unwrap();
        let obj = json.as_object().unwrap();
        assert_eq!(obj.len(), 2, "{json}");
        assert!(obj.contains_key(key), "{key} missing in {json}");
        assert!(ARGUMENT_FIELDS.contains(&key));
        let back: KprobeArgument = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, arg, "{key}");
    }
}

#[test]
fn kprobe_event_with_everything_round_trips() {
    let proc_ = Process {
        exec_id: exec_id("n", 5, 10),
        pid: Some(10),
        binary: "/usr/bin/curl".into(),
        pod: Some(Pod {
            namespace: "default".into(),
            name: "web-1".into(),
            container: Some(Container {
                id: "containerd://abc".into(),
                name: "web".into(),
                image: Some(Image {
                    id: "sha256:1".into(),
                    name: "nginx:1".into(),
                }),
                pid: Some(1),
                maybe_exec_probe: true,
                security_context: Some(SecurityContext { privileged: true }),
                ..Default::default()
            }),
            pod_labels: [("app".to_string(), "web".to_string())].into(),
            workload: "web".into(),
            workload_kind: "Deployment".into(),
            ..Default::default()
        }),
        docker: "abc".into(),
        cap: Some(Capabilities::from_masks(u64::MAX, 1 << 21, 0)),
        ns: Some(Namespaces {
            uts: Some(Namespace {
                inum: 1,
                is_host: true,
            }),
            user: Some(Namespace {
                inum: 2,
                is_host: false,
            }),
            ..Default::default()
        }),
        binary_properties: Some(BinaryProperties {
            setuid: Some(0),
            privileges_changed: vec!["PRIVILEGES_RAISED_EXEC_FILE_SETUID".into()],
            file: Some(FileProperties {
                inode: Some(InodeProperties {
                    number: 1 << 33,
                    links: Some(0),
                }),
                path: "/memfd:x (deleted)".into(),
            }),
            ..Default::default()
        }),
        user: Some(UserRecord {
            name: "root".into(),
        }),
        environment_variables: vec![EnvVar {
            key: "PATH".into(),
            value: "/bin".into(),
        }],
        ..Default::default()
    };
    let ev = GetEventsResponse {
        process_kprobe: Some(Box::new(ProcessKprobe {
            process: Some(proc_.into()),
            function_name: "tcp_connect".into(),
            args: every_variant()
                .into_iter()
                .map(KprobeArgument::new)
                .collect(),
            return_value: Some(KprobeArgument::new(ArgValue::Int(0))),
            action: KprobeAction::Sigkill,
            kernel_stack_trace: vec![StackTraceEntry {
                address: 0xffff_ffff_8100_0000,
                offset: 4,
                symbol: "tcp_connect".into(),
                ..Default::default()
            }],
            policy_name: "p".into(),
            return_action: KprobeAction::Post,
            message: "m".into(),
            tags: vec!["t".into()],
            data: vec![KprobeArgument::new(ArgValue::Uint(1))],
            ..Default::default()
        })),
        node_name: "n".into(),
        time: format_time_ns(1),
        cluster_name: "c".into(),
        node_labels: [("zone".to_string(), "a".to_string())].into(),
        aggregation_info: Some(AggregationInfo { count: 3 }),
        ..Default::default()
    };
    let v = to_value(&ev);
    assert_eq!(v["process_kprobe"]["action"], "KPROBE_ACTION_SIGKILL");
    assert_eq!(v["process_kprobe"]["return"], json!({"int_arg":0}));
    assert_eq!(v["aggregation_info"]["count"], "3");
    assert_eq!(
        v["process_kprobe"]["kernel_stack_trace"][0]["address"],
        "18446744071578845184"
    );
    assert_eq!(
        v["process_kprobe"]["process"]["environment_variables"],
        json!([{"Key":"PATH","Value":"/bin"}])
    );
    assert_eq!(
        v["process_kprobe"]["process"]["cap"]["effective"],
        json!(["CAP_SYS_ADMIN"])
    );
    assert_eq!(round_trip(&ev), ev);
}

#[test]
fn other_event_kinds_round_trip() {
    let p = || {
        Some(
            Process {
                binary: "/bin/x".into(),
                ..Default::default()
            }
            .into(),
        )
    };
    let events: Vec<Event> = vec![
        ProcessExit {
            process: p(),
            signal: signal_name(9),
            status: 0,
            time: format_time_ns(2),
            ..Default::default()
        }
        .into(),
        ProcessTracepoint {
            process: p(),
            subsys: "raw_syscalls".into(),
            event: "sys_enter".into(),
            args: vec![KprobeArgument::new(ArgValue::Long(59))],
            action: KprobeAction::Post,
            ..Default::default()
        }
        .into(),
        ProcessUprobe {
            process: p(),
            path: "/bin/bash".into(),
            symbol: "readline".into(),
            offset: 1 << 40,
            ref_ctr_offset: 2,
            action: KprobeAction::Post,
            ..Default::default()
        }
        .into(),
        ProcessLsm {
            process: p(),
            function_name: "file_open".into(),
            ima_hash: "sha256:00".into(),
            action: KprobeAction::Override,
            ..Default::default()
        }
        .into(),
    ];
    let kinds = [
        EventKind::ProcessExit,
        EventKind::ProcessTracepoint,
        EventKind::ProcessUprobe,
        EventKind::ProcessLsm,
    ];
    for (e, k) in events.into_iter().zip(kinds) {
        let ev = GetEventsResponse::new(e, "n", "t");
        assert_eq!(ev.kind(), Some(k));
        assert!(to_value(&ev).get(k.field_name()).is_some());
        assert_eq!(ev.process().unwrap().binary, "/bin/x");
        assert_eq!(round_trip(&ev), ev);
    }
    let v = to_value(&GetEventsResponse::new(
        ProcessUprobe {
            offset: 1 << 40,
            ..Default::default()
        },
        "n",
        "t",
    ));
    assert_eq!(v["process_uprobe"]["offset"], "1099511627776");
}

fn demoted(namespace: &str) -> PolicyDemoted {
    PolicyDemoted {
        policy_name: "p".into(),
        policy_namespace: namespace.into(),
        action: PolicyDemoted::MONITOR.into(),
        reason: "used 3.2% of a CPU over 10s, budget 1%".into(),
        cpu_percent: 3.2,
        budget_percent: 1.0,
        window_seconds: 10,
    }
}

#[test]
fn policy_demoted_encodes_as_its_own_kind_and_round_trips() {
    let ev = GetEventsResponse::policy_demoted("n", 1_700_000_000_000_000_001, demoted(""));
    assert_eq!(ev.kind(), Some(EventKind::PolicyDemoted));
    assert!(ev.process().is_none() && ev.parent().is_none());
    assert_eq!(ev.check_one_event(), Ok(()));
    // The exact line: the namespace is left out when empty, the integral budget is `1` (as
    // protojson writes a double), the 64-bit window a string.
    let line = ev.to_json().unwrap();
    assert_eq!(
        line,
        r#"{"vigil_policy_demoted":{"policy_name":"p","action":"monitor","reason":"used 3.2% of a CPU over 10s, budget 1%","cpu_percent":3.2,"budget_percent":1,"window_seconds":"10"},"node_name":"n","time":"2023-11-14T22:13:20.000000001Z"}"#
    );
    assert_eq!(GetEventsResponse::from_json(&line).unwrap(), ev);
    // The same through `new`, with a namespace.
    let ev = GetEventsResponse::new(demoted("team-a"), "n", "t");
    assert_eq!(
        to_value(&ev)["vigil_policy_demoted"]["policy_namespace"],
        "team-a"
    );
    assert_eq!(round_trip(&ev), ev);
    assert_eq!(
        ev.vigil_policy_demoted.as_ref().unwrap().policy_ref(),
        "team-a/p"
    );
    // Zero values are left out; the window is read from a number too; unknown keys are errors.
    let v = to_value(&GetEventsResponse::new(PolicyDemoted::default(), "n", ""));
    assert_eq!(v, json!({"vigil_policy_demoted": {}, "node_name": "n"}));
    let ev = GetEventsResponse::from_json(
        r#"{"vigil_policy_demoted":{"policy_name":"p","cpu_percent":"2.5","budget_percent":2,"window_seconds":60}}"#,
    )
    .unwrap();
    let d = ev.vigil_policy_demoted.unwrap();
    assert_eq!(
        (d.cpu_percent, d.budget_percent, d.window_seconds),
        (2.5, 2.0, 60)
    );
    let err =
        GetEventsResponse::from_json(r#"{"vigil_policy_demoted":{"policy":"p"}}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `policy`"), "{err}");
    // Not a process event; one event per line still holds.
    assert!(!EventKind::PROCESS.contains(&EventKind::PolicyDemoted));
    let two = GetEventsResponse::from_json(
        r#"{"vigil_policy_demoted":{},"rate_limit_info":{"number_of_dropped_process_events":"1"}}"#,
    );
    assert!(two.is_err());
}

#[test]
fn kind_and_one_event_check_on_built_values() {
    assert_eq!(GetEventsResponse::default().kind(), None);
    assert_eq!(
        GetEventsResponse::default().check_one_event(),
        Err(EventError::NoEvent)
    );
    let two = GetEventsResponse {
        process_exec: Some(Box::default()),
        process_lsm: Some(Box::default()),
        ..Default::default()
    };
    assert!(matches!(
        two.check_one_event(),
        Err(EventError::SeveralEvents(s)) if s == "process_exec, process_lsm"
    ));
}

#[test]
fn event_kind_names_parse_in_both_spellings() {
    for k in EventKind::ALL {
        assert_eq!(k.as_str().parse::<EventKind>().unwrap(), k);
        assert_eq!(k.field_name().parse::<EventKind>().unwrap(), k);
        assert_eq!(k.to_string(), k.as_str());
    }
    assert_eq!(
        "Process_Lsm".parse::<EventKind>().unwrap(),
        EventKind::ProcessLsm
    );
    assert_eq!(
        "vigil_policy_demoted".parse::<EventKind>().unwrap(),
        EventKind::PolicyDemoted
    );
    assert_eq!(
        "VIGIL_POLICY_DEMOTED".parse::<EventKind>().unwrap(),
        EventKind::PolicyDemoted
    );
    assert_eq!(EventKind::PolicyDemoted.number(), 41000);
    let err = "process_loader".parse::<EventKind>().unwrap_err();
    assert!(err.to_string().contains("process_loader"), "{err}");
    assert_eq!(EventKind::ProcessLsm.number(), 28);
    assert_eq!(EventKind::ProcessExit.number(), 5);
}

#[test]
fn kprobe_action_numbers() {
    assert_eq!(KprobeAction::Post.number(), 1);
    assert_eq!(KprobeAction::Sigkill.number(), 3);
    assert_eq!(KprobeAction::Override.number(), 5);
    assert_eq!(KprobeAction::NoPost.number(), 9);
    assert_eq!(KprobeAction::Signal.number(), 10);
    assert_eq!(KprobeAction::from_policy_code(0), Some(KprobeAction::Post));
    assert_eq!(
        KprobeAction::from_policy_code(4),
        Some(KprobeAction::Override)
    );
    assert_eq!(KprobeAction::from_number(16), None);
    assert_eq!(
        serde_json::to_value(KprobeAction::Signal).unwrap(),
        json!("KPROBE_ACTION_SIGNAL")
    );
    // Unknown (0) is omitted like any zero enum.
    let v = serde_json::to_value(ProcessLsm::default()).unwrap();
    assert_eq!(v, json!({}));
}
