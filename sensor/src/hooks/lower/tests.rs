use super::*;
use vigil_api::policy::compile_yaml;
use vigil_sensor_bpf::abi::{self, act, argk, binop, hook_flags, source};

struct FakeKernel {
    kprobes: bool,
    lsm: bool,
    /// `syscalls/sys_enter_<name>` and `sys_exit_<name>` exist.
    syscall_tracepoints: bool,
}

impl KernelInfo for FakeKernel {
    fn kprobes(&self) -> bool {
        self.kprobes
    }
    fn bpf_lsm(&self) -> bool {
        self.lsm
    }
    fn kernel_symbol(&self, name: &str) -> bool {
        // As in the kernel: the LSM hook of security_bprm_check is bprm_check_security.
        name != "no_such_function" && name != "bpf_lsm_bprm_check"
    }
    fn tracepoint(&self, subsystem: &str, event: &str) -> Result<Format, String> {
        if (subsystem, event) == ("raw_syscalls", "sys_enter") {
            super::super::tracefs::parse(
                "ID: 443\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\tfield:long id;\toffset:8;\tsize:8;\tsigned:1;\n\tfield:unsigned long args[6];\toffset:16;\tsize:48;\tsigned:0;\n",
            )
        } else if subsystem == "syscalls" && self.syscall_tracepoints {
            super::super::tracefs::parse("ID: 700\n")
        } else {
            Err(format!("tracepoint {subsystem}/{event} not found"))
        }
    }
    fn host_namespace(&self, slot: usize) -> u32 {
        4026531830 + slot as u32
    }
}

const HOST: FakeKernel = FakeKernel {
    kprobes: false,
    lsm: false,
    syscall_tracepoints: true,
};
const VM: FakeKernel = FakeKernel {
    kprobes: true,
    lsm: true,
    syscall_tracepoints: true,
};
/// Neither kprobes nor per-syscall tracepoints (CONFIG_FTRACE_SYSCALLS off).
const BARE: FakeKernel = FakeKernel {
    kprobes: false,
    lsm: false,
    syscall_tracepoints: false,
};

fn lower_yaml(yaml: &str, k: &FakeKernel) -> Result<Lowered, String> {
    let ir = compile_yaml(yaml).map_err(|e| e.to_string())?.remove(0);
    lower(&ir, k, &BTreeMap::new(), &mut SetIds::default())
}

const OPEN: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: files}
spec:
  kprobes:
  - call: sys_openat
    syscall: true
    args:
    - {index: 1, type: string}
    selectors:
    - matchArgs:
      - {index: 1, operator: Prefix, values: ["/tmp/x", "/etc/"]}
      matchBinaries:
      - {operator: In, values: ["/usr/bin/cat"]}
"#;

/// The strings of string set `set`, in the order they were added.
fn strings_of(sets: &SetEntries, set: u32) -> Vec<&[u8]> {
    sets.strs
        .iter()
        .filter(|(s, _)| *s == set)
        .map(|(_, b)| b.as_slice())
        .collect()
}

#[test]
fn syscall_ladder_kprobe_then_its_own_tracepoint_then_the_raw_route() {
    let l = lower_yaml(OPEN, &HOST).unwrap();
    let h = l.hooks[0].as_ref().unwrap();
    assert_eq!(
        h.mechanism,
        Mechanism::SyscallTracepoint {
            name: "openat".into(),
            nr: 257
        }
    );
    assert_eq!(
        h.mechanism.describe(false),
        "tracepoint syscalls/sys_enter_openat"
    );
    assert_eq!(h.cfg.source, source::REGS);
    assert_eq!(h.meta.function_name, "__x64_sys_openat");
    assert!(h.cfg.flags & hook_flags::USER_MEM != 0);
    let l = lower_yaml(OPEN, &BARE).unwrap();
    let h = l.hooks[0].as_ref().unwrap();
    assert_eq!(h.mechanism, Mechanism::SysEnter { nr: 257 });
    assert_eq!(h.cfg.source, source::REGS);
    let l = lower_yaml(OPEN, &VM).unwrap();
    let h = l.hooks[0].as_ref().unwrap();
    assert_eq!(
        h.mechanism,
        Mechanism::Kprobe {
            function: "__x64_sys_openat".into()
        }
    );
    assert_eq!(h.cfg.source, source::SYSCALL_WRAPPER);
}

#[test]
fn selectors_become_sets() {
    let l = lower_yaml(OPEN, &HOST).unwrap();
    let h = l.hooks[0].as_ref().unwrap();
    let s = &h.cfg.sel[0];
    assert_eq!((h.cfg.nsel, s.n_args, s.n_bin), (1, 1, 1));
    assert_eq!(s.args[0].op, op::PREFIX);
    assert_eq!(
        s.args[0].arg, 0,
        "position of index 1 among the declared args"
    );
    assert_eq!(
        strings_of(&h.sets, s.args[0].set),
        vec![b"/etc/".as_slice(), b"/tmp/x".as_slice()]
    );
    assert_eq!(s.bins[0].op, binop::IN);
    assert_ne!(s.bins[0].set, s.args[0].set);
    assert_eq!(h.cfg.args[0].kind, argk::STR);
}

#[test]
fn postfix_values_are_reversed() {
    let y = OPEN.replace("operator: Prefix", "operator: Postfix");
    let l = lower_yaml(&y, &HOST).unwrap();
    let h = l.hooks[0].as_ref().unwrap();
    assert!(h.sets.strs.iter().any(|(_, b)| b == b"x/pmt/"));
}

#[test]
fn kprobe_without_kprobes_fails_only_that_hook() {
    let y = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: mixed}
spec:
  kprobes:
  - {call: tcp_connect, syscall: false, args: [{index: 0, type: sock}]}
  - {call: sys_close, syscall: true, args: [{index: 0, type: int}]}
"#;
    let l = lower_yaml(y, &HOST).unwrap();
    let err = l.hooks[0].as_ref().unwrap_err();
    assert!(
        err.reason.contains("kprobes are not available"),
        "{}",
        err.reason
    );
    assert_eq!(err.target, "tcp_connect");
    assert!(l.hooks[1].is_ok());
    let l = lower_yaml(y, &VM).unwrap();
    assert_eq!(l.hooks[0].as_ref().unwrap().cfg.args[0].kind, argk::SOCK);
}

#[test]
fn override_on_a_syscall_rejects_the_policy_with_the_reason() {
    let y = OPEN.replace(
        "matchBinaries:",
        "matchActions:\n      - {action: Override, argError: -1}\n      matchBinaries:",
    );
    let err = lower_yaml(&y, &VM).unwrap_err();
    assert!(err.contains("bpf_override_return"), "{err}");
    assert!(err.contains("lsmhooks"), "{err}");
}

#[test]
fn override_on_security_function_uses_lsm_where_active() {
    let y = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: deny}
spec:
  kprobes:
  - call: security_file_open
    syscall: false
    args: [{index: 0, type: file}]
    selectors:
    - matchArgs: [{index: 0, operator: Equal, values: ["/tmp/secret"]}]
      matchActions: [{action: Override, argError: -1}]
"#;
    let h = lower_yaml(y, &VM).unwrap().hooks.remove(0).unwrap();
    assert_eq!(
        h.mechanism,
        Mechanism::Lsm {
            hook: "file_open".into()
        }
    );
    assert!(h.cfg.flags & hook_flags::CAN_OVERRIDE != 0);
    assert_eq!(h.cfg.sel[0].actions[0].kind, act::OVERRIDE);
    assert_eq!(h.cfg.sel[0].actions[0].arg, -1);
    assert!(lower_yaml(y, &HOST).unwrap_err().contains("BPF-LSM"));
}

#[test]
fn tracepoint_args_read_fields_by_offset() {
    let y = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: raw}
spec:
  tracepoints:
  - {subsystem: raw_syscalls, event: sys_enter, args: [{index: 4, type: syscall64}]}
"#;
    let h = lower_yaml(y, &HOST).unwrap().hooks.remove(0).unwrap();
    assert_eq!(
        h.mechanism,
        Mechanism::Tracepoint {
            subsystem: "raw_syscalls".into(),
            event: "sys_enter".into()
        }
    );
    assert_eq!(h.cfg.source, source::TRACEPOINT);
    assert_eq!((h.cfg.args[0].tp_offset, h.cfg.args[0].size), (8, 8));
    let bad = y.replace("sys_enter,", "no_such,");
    let l = lower_yaml(&bad, &HOST).unwrap();
    assert!(
        l.hooks[0]
            .as_ref()
            .unwrap_err()
            .reason
            .contains("not found")
    );
}

#[test]
fn limits_are_named() {
    let many: String = (0..6)
        .map(|i| format!("      - {{index: 1, operator: Equal, values: [\"/x{i}\"]}}\n"))
        .collect();
    let y = format!(
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {{name: l}}\nspec:\n  kprobes:\n  - call: sys_openat\n    args: [{{index: 1, type: string}}]\n    selectors:\n    - matchArgs:\n{many}"
    );
    let err = lower_yaml(&y, &HOST).unwrap_err();
    assert!(err.contains("6 matchArgs entries: at most 5"), "{err}");
}

#[test]
fn workload_scopes_are_lowered() {
    let y = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicyNamespaced
metadata: {name: ns, namespace: default}
spec:
  kprobes: [{call: sys_close, syscall: true}]
"#;
    let l = lower_yaml(y, &HOST).unwrap();
    let scope = l.scope.expect("a scope");
    assert!(!scope.host);
    let scope = scope.workload.expect("a workload scope");
    assert_eq!(scope.namespace.as_deref(), Some("default"));
    assert!(scope.pod_selector.is_none());
    let y = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: sel}
spec:
  podSelector: {matchLabels: {app: web}}
  containerSelector: {matchExpressions: [{key: name, operator: In, values: [main]}]}
  kprobes: [{call: sys_close, syscall: true}]
"#;
    let scope = lower_yaml(y, &HOST).unwrap().scope.expect("a scope");
    assert!(!scope.host);
    let scope = scope.workload.expect("a workload scope");
    assert_eq!(scope.namespace, None);
    let pod = scope.pod_selector.unwrap();
    assert_eq!(pod.requirements[0].key, "app");
    assert_eq!(pod.requirements[0].values, ["web"]);
    assert!(scope.container_selector.is_some());
    let y = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: all}
spec:
  kprobes: [{call: sys_close, syscall: true}]
"#;
    assert!(lower_yaml(y, &HOST).unwrap().scope.is_none());
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn scope_on(yaml: &str, node: &[(&str, &str)]) -> Option<PolicyScope> {
    let ir = compile_yaml(yaml).unwrap().remove(0);
    lower(&ir, &HOST, &labels(node), &mut SetIds::default())
        .unwrap()
        .scope
}

fn policy_with(scope: &str) -> String {
    format!(
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {{name: s}}\nspec:\n{scope}  kprobes: [{{call: sys_close, syscall: true}}]\n"
    )
}

#[test]
fn host_selector_sets_the_host_flag_by_node_labels() {
    let host_only = policy_with("  hostSelector: {matchLabels: {role: worker}}\n");
    // Matching node: host processes only, no container set.
    let s = scope_on(&host_only, &[("role", "worker"), ("zone", "a")]).expect("scoped");
    assert_eq!(
        s,
        PolicyScope {
            workload: None,
            host: true
        }
    );
    // Another node, or a node without labels: still scoped, to nothing.
    for node in [&[("role", "db")][..], &[]] {
        let s = scope_on(&host_only, node).expect("scoped even when nothing matches");
        assert_eq!(s, PolicyScope::default(), "{node:?}");
    }
    // An empty selector matches every node, labelled or not.
    let any = policy_with("  hostSelector: {}\n");
    assert!(scope_on(&any, &[]).unwrap().host);
    assert!(scope_on(&any, &[("role", "x")]).unwrap().host);
    // Expressions follow Kubernetes semantics (NotIn is satisfied by a missing label).
    let not_cp = policy_with(
        "  hostSelector:\n    matchExpressions: [{key: role, operator: NotIn, values: [control-plane]}]\n",
    );
    assert!(scope_on(&not_cp, &[]).unwrap().host);
    assert!(
        !scope_on(&not_cp, &[("role", "control-plane")])
            .unwrap()
            .host
    );
}

#[test]
fn host_selector_with_pod_selector_is_a_union() {
    let both = policy_with(
        "  podSelector: {matchLabels: {app: web}}\n  hostSelector: {matchLabels: {role: worker}}\n",
    );
    let s = scope_on(&both, &[("role", "worker")]).unwrap();
    assert!(s.host);
    let w = s.workload.expect("the pods stay selected");
    assert_eq!(w.pod_selector.unwrap().requirements[0].key, "app");
    // Not this node: the pods only, as without a hostSelector.
    let s = scope_on(&both, &[("role", "db")]).unwrap();
    assert!(!s.host);
    assert!(s.workload.is_some());
    // A namespaced policy with a hostSelector: its namespace's pods and the host.
    let ns = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicyNamespaced\nmetadata: {name: np, namespace: prod}\nspec:\n  hostSelector: {}\n  kprobes: [{call: sys_close, syscall: true}]\n";
    let s = scope_on(ns, &[]).unwrap();
    assert!(s.host);
    assert_eq!(s.workload.unwrap().namespace.as_deref(), Some("prod"));
    // No hostSelector: the flag never comes from node labels.
    let pods_only = policy_with("  podSelector: {}\n");
    assert!(!scope_on(&pods_only, &[("role", "worker")]).unwrap().host);
}

#[test]
fn pod_selector_may_select_by_namespace() {
    let y = policy_with(
        "  podSelector:\n    matchExpressions: [{key: \"k8s:io.kubernetes.pod.namespace\", operator: In, values: [prod]}]\n",
    );
    let w = scope_on(&y, &[]).unwrap().workload.unwrap();
    let pod = |ns: &str| vigil_api::wire::pod::Pod {
        namespace: ns.into(),
        containers: vec![vigil_api::wire::pod::Container::default()],
        ..Default::default()
    };
    let (prod, dev) = (pod("prod"), pod("dev"));
    assert!(w.matches(&prod, &prod.containers[0]));
    assert!(!w.matches(&dev, &dev.containers[0]));
}

#[test]
fn node_selector_mismatch_names_the_selector_and_the_labels() {
    let ir = |scope: &str| compile_yaml(&policy_with(scope)).unwrap().remove(0);
    let sel = ir(
        "  nodeSelector:\n    matchLabels: {role: worker}\n    matchExpressions: [{key: zone, operator: In, values: [a, b]}]\n",
    );
    assert_eq!(
        node_selector_mismatch(&sel, &labels(&[("role", "worker"), ("zone", "b")])),
        None
    );
    let err =
        node_selector_mismatch(&sel, &labels(&[("role", "db"), ("zone", "a")])).expect("refused");
    assert!(
        err.starts_with("spec.nodeSelector (role=worker,zone in (a,b))"),
        "{err}"
    );
    assert!(err.contains("role=db,zone=a"), "{err}");
    let err = node_selector_mismatch(&sel, &BTreeMap::new()).expect("no labels: refused");
    assert!(err.contains("--node-labels) are: none"), "{err}");
    // No selector, or an empty one: every node.
    assert_eq!(node_selector_mismatch(&ir(""), &BTreeMap::new()), None);
    assert_eq!(
        node_selector_mismatch(&ir("  nodeSelector: {}\n"), &BTreeMap::new()),
        None
    );
}

#[test]
fn host_ns_resolves_to_the_host_inode_and_caps_need_creds() {
    let y = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: ns}
spec:
  kprobes:
  - call: sys_close
    syscall: true
    selectors:
    - matchNamespaces: [{namespace: Mnt, operator: In, values: [host_ns]}]
      matchCapabilities: [{type: Effective, operator: In, values: [CAP_SYS_ADMIN]}]
"#;
    let h = lower_yaml(y, &HOST).unwrap().hooks.remove(0).unwrap();
    let s = &h.cfg.sel[0];
    assert_eq!(s.ns[0].slot as usize, abi::ns_slot::MNT);
    assert!(
        h.sets.ints.iter().any(|k| k.set == s.ns[0].set
            && k.value == u64::from(HOST.host_namespace(abi::ns_slot::MNT)))
    );
    assert_eq!(s.caps[0].mask, 1 << 21);
    assert!(h.cfg.flags & hook_flags::NEED_CAPS != 0);
    assert!(h.cfg.flags & hook_flags::NEED_NS != 0);
}

#[test]
fn nop_arguments_are_neither_read_nor_reported() {
    let y = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: nop}
spec:
  kprobes:
  - call: sys_mmap
    syscall: true
    args:
    - {index: 0, type: nop}
    - {index: 1, type: size_t}
    selectors:
    - matchArgs: [{index: 1, operator: GT, values: ["4096"]}]
"#;
    let h = lower_yaml(y, &HOST).unwrap().hooks.remove(0).unwrap();
    assert_eq!(h.cfg.nargs, 1);
    assert_eq!(h.cfg.args[0].index, 1);
    assert_eq!(h.meta.args.len(), 1);
    assert_eq!(h.cfg.sel[0].args[0].arg, 0);
    assert_eq!(h.cfg.sel[0].args[0].value, 4096);
}

#[test]
fn ir_version_is_checked() {
    let mut ir = compile_yaml(OPEN).unwrap().remove(0);
    ir.ir_version = 99;
    assert!(
        lower(&ir, &HOST, &BTreeMap::new(), &mut SetIds::default())
            .unwrap_err()
            .contains("version 99")
    );
}

#[test]
fn filters_read_only_their_arguments_and_strings_only_as_far_as_they_compare() {
    // Prefix on the path: the longest value is "/tmp/x" (6 bytes) → 8 bytes decide.
    let l = lower_yaml(OPEN, &HOST).unwrap();
    let h = l.hooks[0].as_ref().unwrap();
    assert_eq!(h.cfg.filter_args, 0b1);
    assert_eq!(h.cfg.args[0].peek, 8);
    assert!(
        h.cfg.flags & hook_flags::NEED_PROC != 0,
        "matchBinaries reads the table"
    );

    // A postfix needs the tail: the whole argument. An unfiltered argument is not read.
    let yaml = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: files}
spec:
  kprobes:
  - call: sys_openat
    syscall: true
    args:
    - {index: 0, type: int}
    - {index: 1, type: string}
    - {index: 2, type: int}
    selectors:
    - matchArgs:
      - {index: 1, operator: Prefix, values: ["/etc/"]}
    - matchArgs:
      - {index: 1, operator: Postfix, values: [".conf"]}
      - {index: 2, operator: Mask, values: ["1"]}
"#;
    let l = lower_yaml(yaml, &HOST).unwrap();
    let h = l.hooks[0].as_ref().unwrap();
    assert_eq!(
        h.cfg.filter_args, 0b110,
        "arg 0 is only read for the record"
    );
    assert_eq!(h.cfg.args[1].peek, 0, "postfix: the whole slot");
    assert_eq!(h.cfg.args[0].peek, 0);
    assert_eq!(
        h.cfg.flags & hook_flags::NEED_PROC,
        0,
        "no selector reads the process table"
    );

    // Equal needs one byte more than the longest value to tell a longer string apart.
    let yaml = yaml.replace(
        "operator: Postfix, values: [\".conf\"]",
        "operator: Equal, values: [\"/etc/passwd\"]",
    );
    let l = lower_yaml(&yaml, &HOST).unwrap();
    let h = l.hooks[0].as_ref().unwrap();
    assert_eq!(h.cfg.args[1].peek, "/etc/passwd".len() as u16 + 2);
}

#[test]
fn a_security_function_maps_to_its_lsm_hook_even_when_the_names_differ() {
    assert_eq!(lsm_hook_name("file_open", &VM), "file_open");
    assert_eq!(lsm_hook_name("bprm_check", &VM), "bprm_check_security");
}

#[test]
fn net_device_arguments_are_read_as_their_name_and_compared_as_strings() {
    let y = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: mtu}
spec:
  kprobes:
  - call: dev_set_mtu
    syscall: false
    args:
    - {index: 0, type: net_device}
    - {index: 1, type: int}
    selectors:
    - matchArgs:
      - {index: 0, operator: Equal, values: ["lo"]}
"#;
    let l = lower_yaml(y, &VM).unwrap();
    let h = l.hooks[0].as_ref().unwrap();
    assert_eq!(h.cfg.args[0].kind, argk::NETDEV);
    let s = &h.cfg.sel[0];
    assert_eq!(s.args[0].op, op::EQUAL);
    assert_eq!(strings_of(&h.sets, s.args[0].set), vec![b"lo".as_slice()]);
    assert_eq!(
        h.meta.args[0].ir_type,
        vigil_api::policy::ir::ArgType::NetDevice
    );
}
