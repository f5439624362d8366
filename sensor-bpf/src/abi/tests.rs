use super::*;
use std::mem::{offset_of, size_of};
use std::process::Command;

/// Compiles a C program that prints the header's layout and compares it with Rust's.
#[test]
fn layout_matches_c_header() {
    let dir = std::env::temp_dir().join(format!("vigil-abi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let header = concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/vigil_abi.h");
    let mut c = format!(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"{header}\"\n#define P(t,f) printf(\"%s.%s %zu\\n\", #t, #f, offsetof(struct t, f));\n#define S(t) printf(\"%s %zu\\n\", #t, sizeof(struct t));\nint main(void) {{\n"
    );
    let mut expected = Vec::new();
    macro_rules! check {
        ($cname:literal, $ty:ty, [$($f:ident),*]) => {
            c.push_str(&format!("S({})\n", $cname));
            expected.push(format!("{} {}", $cname, size_of::<$ty>()));
            $(
                c.push_str(&format!("P({},{})\n", $cname, stringify!($f)));
                expected.push(format!("{}.{} {}", $cname, stringify!($f), offset_of!($ty, $f)));
            )*
        };
    }
    check!("vigil_msg_header", MsgHeader, [kind, size, time]);
    check!(
        "vigil_creds",
        Creds,
        [
            uid,
            gid,
            euid,
            egid,
            suid,
            sgid,
            fsuid,
            fsgid,
            securebits,
            auid,
            cap_permitted,
            cap_effective,
            cap_inheritable
        ]
    );
    check!(
        "vigil_exec",
        Exec,
        [
            hdr,
            pid,
            tid,
            ppid,
            kflags,
            ktime,
            parent_ktime,
            creds,
            ns,
            cgroup_id,
            args_total,
            binary_len,
            args_len,
            cwd_len,
            cgroup_name_len,
            nspid
        ]
    );
    check!("vigil_fork", Fork, [hdr, pid, ppid, ktime, parent_ktime]);
    check!("vigil_exit", Exit, [hdr, pid, tid, ktime, exit_code, pad]);
    check!(
        "vigil_proc",
        Proc,
        [
            pid,
            ppid,
            ktime,
            parent_ktime,
            kflags,
            bin_len,
            pad,
            cap_permitted,
            cap_effective,
            cap_inheritable,
            ns,
            cgroup_id,
            bin
        ]
    );
    check!("vigil_config", Config, [self_tgid, host_userns]);
    check!(
        "vigil_policy_cfg",
        PolicyCfg,
        [enabled, mode, scope_set, scope_flags]
    );
    check!(
        "vigil_arg_cfg",
        ArgCfg,
        [
            kind, index, size, flags, size_arg, pad, tp_offset, peek, pad2
        ]
    );
    check!(
        "vigil_filter",
        Filter,
        [op, arg, nranges, is_signed, set, value, ranges]
    );
    check!("vigil_bin_filter", BinFilter, [op, follow, pad, set]);
    check!("vigil_ns_filter", NsFilter, [slot, op, pad, set]);
    check!(
        "vigil_cap_filter",
        CapFilter,
        [which, op, ns_cap, pad, pad2, mask]
    );
    check!("vigil_action", Action, [kind, scope, pad, arg, rate_ns]);
    check!(
        "vigil_selector",
        Selector,
        [
            n_bin, n_ns, n_cap, n_capchg, n_args, n_ret, n_actions, pid_op, pid_flags, nschg_op,
            nschg_mask, pid_set, bins, ns, caps, capchg, args, ret, actions
        ]
    );
    check!(
        "vigil_hook_cfg",
        HookCfg,
        [
            policy,
            generation,
            flags,
            source,
            nargs,
            nsel,
            ret_signed,
            filter_args,
            pad,
            args,
            sel
        ]
    );
    check!("vigil_attach_hooks", AttachHooks, [n, hooks]);
    check!("vigil_int_key", IntKey, [set, pad, value]);
    check!("vigil_str_key", StrKey, [prefixlen, set, data]);
    check!("vigil_addr_key", AddrKey, [prefixlen, set, addr]);
    check!("vigil_pending", Pending, [raw, sel_mask, pad]);
    check!("vigil_rate_key", RateKey, [hook, scope_id, hash]);
    check!(
        "vigil_sock_arg",
        SockArg,
        [
            family, sock_type, protocol, state, sport, dport, pad, saddr, daddr, cookie
        ]
    );
    check!("vigil_sockaddr_arg", SockaddrArg, [family, port, pad, addr]);
    check!(
        "vigil_hook_rec",
        HookRec,
        [
            hdr, pid, tid, ktime, hook, policy, generation, selector, actions, ret, flags, nargs,
            arg_len, arg_aux, arg_kind, pad
        ]
    );
    check!(
        "vigil_task",
        Task,
        [pid, ppid, start_ns, ktime, parent_ktime, kflags, flags]
    );
    check!("vigil_protect_cfg", ProtectCfg, [tgid, pin_dev, pin_ino]);
    check!(
        "vigil_protect_rec",
        ProtectRec,
        [
            hdr, pid, tid, ktime, hook, target_pid, arg, name_len, id, name
        ]
    );
    c.push_str("return 0; }\n");
    let src = dir.join("layout.c");
    let bin = dir.join("layout");
    std::fs::write(&src, c).unwrap();
    let status = Command::new("cc")
        .arg(&src)
        .arg("-o")
        .arg(&bin)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed on the layout program");
    let out = Command::new(&bin).output().expect("run layout program");
    let got: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(got, expected, "bpf/vigil_abi.h and src/abi/mod.rs disagree");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn constants_match_c_header() {
    let header = include_str!("../../bpf/vigil_abi.h");
    for (name, value) in [
        ("VIGIL_MSG_EXEC", MSG_EXEC as usize),
        ("VIGIL_MSG_FORK", MSG_FORK as usize),
        ("VIGIL_MSG_EXIT", MSG_EXIT as usize),
        ("VIGIL_PATH_MAX", PATH_MAX),
        ("VIGIL_ARGS_MAX", ARGS_MAX),
        ("VIGIL_CGROUP_NAME_MAX", CGROUP_NAME_MAX),
        ("VIGIL_BIN_KEEP", BIN_KEEP),
        ("VIGIL_PATH_DEPTH", PATH_DEPTH),
        ("VIGIL_NS_COUNT", NS_COUNT),
        ("VIGIL_NS_UTS", ns_slot::UTS),
        ("VIGIL_NS_IPC", ns_slot::IPC),
        ("VIGIL_NS_MNT", ns_slot::MNT),
        ("VIGIL_NS_PID", ns_slot::PID),
        ("VIGIL_NS_PID_FOR_CHILDREN", ns_slot::PID_FOR_CHILDREN),
        ("VIGIL_NS_NET", ns_slot::NET),
        ("VIGIL_NS_TIME", ns_slot::TIME),
        ("VIGIL_NS_TIME_FOR_CHILDREN", ns_slot::TIME_FOR_CHILDREN),
        ("VIGIL_NS_CGROUP", ns_slot::CGROUP),
        ("VIGIL_NS_USER", ns_slot::USER),
        ("VIGIL_CNT_NUM", counters::NUM as usize),
        ("VIGIL_MSG_HOOK", MSG_HOOK as usize),
        ("VIGIL_MSG_PROTECT", MSG_PROTECT as usize),
        ("VIGIL_PROTECT_PTRACE", protect_hook::PTRACE as usize),
        ("VIGIL_PROTECT_KILL", protect_hook::KILL as usize),
        ("VIGIL_PROTECT_UNLINK", protect_hook::UNLINK as usize),
        ("VIGIL_PROTECT_RMDIR", protect_hook::RMDIR as usize),
        ("VIGIL_PROTECT_RENAME", protect_hook::RENAME as usize),
        ("VIGIL_PROTECT_BPF", protect_hook::BPF as usize),
        ("VIGIL_PROTECT_BPF_MAP", protect_hook::BPF_MAP as usize),
        ("VIGIL_PROTECT_NAME_MAX", PROTECT_NAME_MAX),
        ("VIGIL_PROTECT_DEPTH", PROTECT_DEPTH),
        ("VIGIL_PROTECT_IDS", PROTECT_IDS),
        ("VIGIL_TF_ENTRY", TF_ENTRY as usize),
        ("VIGIL_CNT_RB_LOST_HOOK", counters::RB_LOST_HOOK as usize),
        ("VIGIL_CNT_HOOK_NO_CFG", counters::HOOK_NO_CFG as usize),
        ("VIGIL_CNT_PENDING_FULL", counters::PENDING_FULL as usize),
        ("VIGIL_MAX_POLICIES", MAX_POLICIES),
        ("VIGIL_MAX_HOOKS", MAX_HOOKS),
        ("VIGIL_MAX_ATTACH", MAX_ATTACH),
        ("VIGIL_ATTACH_HOOKS", ATTACH_HOOKS),
        ("VIGIL_SYSCALL_MAX", SYSCALL_MAX),
        ("VIGIL_HOOK_ARGS", HOOK_ARGS),
        ("VIGIL_HOOK_SELECTORS", HOOK_SELECTORS),
        ("VIGIL_SEL_ARG_FILTERS", SEL_ARG_FILTERS),
        ("VIGIL_SEL_RET_FILTERS", SEL_RET_FILTERS),
        ("VIGIL_SEL_BIN_FILTERS", SEL_BIN_FILTERS),
        ("VIGIL_SEL_NS_FILTERS", SEL_NS_FILTERS),
        ("VIGIL_SEL_CAP_FILTERS", SEL_CAP_FILTERS),
        ("VIGIL_SEL_ACTIONS", SEL_ACTIONS),
        ("VIGIL_FILTER_RANGES", FILTER_RANGES),
        ("VIGIL_STR_MAX", STR_MAX),
        ("VIGIL_ARG_SLOT", ARG_SLOT),
        ("VIGIL_ANCESTOR_DEPTH", ANCESTOR_DEPTH),
        ("VIGIL_STAT_NUM", STAT_NUM),
        ("VIGIL_COST_SAMPLE", COST_SAMPLE as usize),
        ("VIGIL_MAX_CONTAINERS", MAX_CONTAINERS),
        ("VIGIL_SRC_REGS", source::REGS as usize),
        (
            "VIGIL_SRC_SYSCALL_WRAPPER",
            source::SYSCALL_WRAPPER as usize,
        ),
        ("VIGIL_SRC_TRACEPOINT", source::TRACEPOINT as usize),
        ("VIGIL_SRC_BTF_ARGS", source::BTF_ARGS as usize),
        ("VIGIL_ARGK_INT", argk::INT as usize),
        ("VIGIL_ARGK_STR", argk::STR as usize),
        ("VIGIL_ARGK_BUF", argk::BUF as usize),
        ("VIGIL_ARGK_FD", argk::FD as usize),
        ("VIGIL_ARGK_FILE", argk::FILE as usize),
        ("VIGIL_ARGK_PATH", argk::PATH as usize),
        ("VIGIL_ARGK_DENTRY", argk::DENTRY as usize),
        ("VIGIL_ARGK_BINPRM", argk::BINPRM as usize),
        ("VIGIL_ARGK_SOCK", argk::SOCK as usize),
        ("VIGIL_ARGK_FD_SOCK", argk::FD_SOCK as usize),
        ("VIGIL_ARGK_SOCKADDR", argk::SOCKADDR as usize),
        ("VIGIL_ARGK_CRED", argk::CRED as usize),
        ("VIGIL_ARGK_NETDEV", argk::NETDEV as usize),
        ("VIGIL_OP_EQUAL", op::EQUAL as usize),
        ("VIGIL_OP_NOT_EQUAL", op::NOT_EQUAL as usize),
        ("VIGIL_OP_PREFIX", op::PREFIX as usize),
        ("VIGIL_OP_NOT_PREFIX", op::NOT_PREFIX as usize),
        ("VIGIL_OP_POSTFIX", op::POSTFIX as usize),
        ("VIGIL_OP_NOT_POSTFIX", op::NOT_POSTFIX as usize),
        ("VIGIL_OP_GT", op::GT as usize),
        ("VIGIL_OP_LT", op::LT as usize),
        ("VIGIL_OP_MASK", op::MASK as usize),
        ("VIGIL_OP_IN_RANGE", op::IN_RANGE as usize),
        ("VIGIL_OP_NOT_IN_RANGE", op::NOT_IN_RANGE as usize),
        ("VIGIL_OP_IN_MAP", op::IN_MAP as usize),
        ("VIGIL_OP_NOT_IN_MAP", op::NOT_IN_MAP as usize),
        ("VIGIL_OP_SADDR", op::SADDR as usize),
        ("VIGIL_OP_NOT_SADDR", op::NOT_SADDR as usize),
        ("VIGIL_OP_DADDR", op::DADDR as usize),
        ("VIGIL_OP_NOT_DADDR", op::NOT_DADDR as usize),
        ("VIGIL_OP_SPORT", op::SPORT as usize),
        ("VIGIL_OP_NOT_SPORT", op::NOT_SPORT as usize),
        ("VIGIL_OP_SPORT_PRIV", op::SPORT_PRIV as usize),
        ("VIGIL_OP_NOT_SPORT_PRIV", op::NOT_SPORT_PRIV as usize),
        ("VIGIL_OP_DPORT", op::DPORT as usize),
        ("VIGIL_OP_NOT_DPORT", op::NOT_DPORT as usize),
        ("VIGIL_OP_DPORT_PRIV", op::DPORT_PRIV as usize),
        ("VIGIL_OP_NOT_DPORT_PRIV", op::NOT_DPORT_PRIV as usize),
        ("VIGIL_OP_PROTOCOL", op::PROTOCOL as usize),
        ("VIGIL_OP_FAMILY", op::FAMILY as usize),
        ("VIGIL_OP_STATE", op::STATE as usize),
        ("VIGIL_SET_IN", SET_IN as usize),
        ("VIGIL_SET_NOT_IN", SET_NOT_IN as usize),
        ("VIGIL_BIN_IN", binop::IN as usize),
        ("VIGIL_BIN_NOT_IN", binop::NOT_IN as usize),
        ("VIGIL_BIN_PREFIX", binop::PREFIX as usize),
        ("VIGIL_BIN_NOT_PREFIX", binop::NOT_PREFIX as usize),
        ("VIGIL_BIN_POSTFIX", binop::POSTFIX as usize),
        ("VIGIL_BIN_NOT_POSTFIX", binop::NOT_POSTFIX as usize),
        ("VIGIL_ACT_POST", act::POST as usize),
        ("VIGIL_ACT_NOPOST", act::NOPOST as usize),
        ("VIGIL_ACT_SIGKILL", act::SIGKILL as usize),
        ("VIGIL_ACT_SIGNAL", act::SIGNAL as usize),
        ("VIGIL_ACT_OVERRIDE", act::OVERRIDE as usize),
        ("VIGIL_SCOPE_THREAD", scope::THREAD as usize),
        ("VIGIL_SCOPE_PROCESS", scope::PROCESS as usize),
        ("VIGIL_SCOPE_GLOBAL", scope::GLOBAL as usize),
        ("VIGIL_MODE_ENFORCE", MODE_ENFORCE as usize),
        ("VIGIL_MODE_MONITOR", MODE_MONITOR as usize),
        ("VIGIL_STAT_MATCHED", stat::MATCHED),
        ("VIGIL_STAT_POSTED", stat::POSTED),
        ("VIGIL_STAT_LOST", stat::LOST),
        ("VIGIL_STAT_RATE_LIMITED", stat::RATE_LIMITED),
        ("VIGIL_STAT_SIGKILL", stat::SIGKILL),
        ("VIGIL_STAT_SIGNAL", stat::SIGNAL),
        ("VIGIL_STAT_OVERRIDE", stat::OVERRIDE),
        ("VIGIL_STAT_MONITORED", stat::MONITORED),
        ("VIGIL_STAT_EVALS", stat::EVALS),
        ("VIGIL_STAT_COST_SAMPLES", stat::COST_SAMPLES),
        ("VIGIL_STAT_COST_NS", stat::COST_NS),
    ] {
        let line = header
            .lines()
            .find(|l| l.starts_with(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} missing from the header"));
        let v: usize = line.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert_eq!(v, value, "{name}");
    }
}

#[test]
fn flag_constants_match_c_header() {
    let header = include_str!("../../bpf/vigil_abi.h");
    for (name, value) in [
        ("VIGIL_HOOK_RETURN", u64::from(hook_flags::RETURN)),
        ("VIGIL_HOOK_USER_MEM", u64::from(hook_flags::USER_MEM)),
        ("VIGIL_HOOK_NEED_CAPS", u64::from(hook_flags::NEED_CAPS)),
        ("VIGIL_HOOK_NEED_NS", u64::from(hook_flags::NEED_NS)),
        (
            "VIGIL_HOOK_CAN_OVERRIDE",
            u64::from(hook_flags::CAN_OVERRIDE),
        ),
        ("VIGIL_HOOK_NEED_PROC", u64::from(hook_flags::NEED_PROC)),
        ("VIGIL_ARGF_SIGNED", u64::from(argf::SIGNED)),
        ("VIGIL_ARGF_RETURN_COPY", u64::from(argf::RETURN_COPY)),
        ("VIGIL_ARGF_SIZE_ARG", u64::from(argf::SIZE_ARG)),
        ("VIGIL_PID_FOLLOW_FORKS", u64::from(PID_FOLLOW_FORKS)),
        ("VIGIL_PID_NAMESPACE", u64::from(PID_NAMESPACE)),
        ("VIGIL_HF_RETURN", u64::from(hf::RETURN)),
        ("VIGIL_HF_MONITOR", u64::from(hf::MONITOR)),
        ("VIGIL_HF_NO_PROC", u64::from(hf::NO_PROC)),
        ("VIGIL_AUX_CUT", u64::from(aux::CUT)),
        ("VIGIL_AUX_ERR", u64::from(aux::ERR)),
        ("VIGIL_POL_SCOPED", u64::from(pol_scope::SCOPED)),
        ("VIGIL_POL_HOST", u64::from(pol_scope::HOST)),
    ] {
        let line = header
            .lines()
            .find(|l| l.starts_with(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} missing from the header"));
        let shift: u64 = line
            .split("<< ")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .unwrap_or_else(|| panic!("{name}: not a (1u << n) flag"))
            .parse()
            .unwrap();
        assert_eq!(1u64 << shift, value, "{name}");
    }
}

#[test]
fn read_record_checks_length() {
    let bytes = [0u8; 8];
    assert!(read_record::<MsgHeader>(&bytes).is_none());
    let mut bytes = [0u8; 16];
    bytes[0] = 3;
    bytes[4] = 16;
    let h = read_record::<MsgHeader>(&bytes).unwrap();
    assert_eq!((h.kind, h.size), (3, 16));
}

#[test]
fn objects_are_embedded() {
    assert!(crate::PROCESS_OBJ.starts_with(b"\x7fELF"));
    assert!(crate::PROBE_OBJ.starts_with(b"\x7fELF"));
    assert!(crate::HOOK_OBJ.starts_with(b"\x7fELF"));
    assert!(crate::PROTECT_OBJ.starts_with(b"\x7fELF"));
}
