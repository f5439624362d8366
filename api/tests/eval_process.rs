//! Evaluator: process-level filters (pids, binaries, namespaces, capabilities and their
//! changes), workload scope, and which hook an event belongs to.

mod common;

use common::*;
use vigil_api::policy::eval::{
    ArgView, CapSets, EventView, HookPoint, Ns, NsSet, Outcome, PodView, ProcView, Verdict,
};
use vigil_api::policy::ir::NamespaceType;

fn sel(selector: &str) -> vigil_api::policy::ir::PolicyIr {
    kprobe("[]", &format!("[{selector}]"))
}

fn by(p: ProcView, ancestors: Vec<ProcView>) -> EventView {
    EventView {
        process: Some(p),
        ancestors,
        ..call(vec![])
    }
}

#[test]
fn match_pids_in_and_not_in() {
    let ir = sel("{matchPIDs: [{operator: In, values: [100, 200]}]}");
    assert_eq!(outcome(&ir, &call(vec![])), "match 0");
    assert_eq!(outcome(&ir, &by(proc(101, "/x"), vec![])), "no-match");
    let ir = sel("{matchPIDs: [{operator: NotIn, values: [100]}]}");
    assert_eq!(outcome(&ir, &by(proc(101, "/x"), vec![])), "match 0");
    assert_eq!(outcome(&ir, &call(vec![])), "no-match");
}

#[test]
fn follow_forks_walks_the_ancestors_the_event_carries() {
    let ir = sel("{matchPIDs: [{operator: In, values: [50], followForks: true}]}");
    let chain = vec![
        proc(60, "/bin/sh"),
        proc(50, "/usr/sbin/sshd"),
        proc(1, "/sbin/init"),
    ];
    assert_eq!(outcome(&ir, &by(proc(70, "/bin/ls"), chain)), "match 0");
    // The chain reaches pid 1 without 50: decided.
    let chain = vec![proc(60, "/bin/sh"), proc(1, "/sbin/init")];
    assert_eq!(outcome(&ir, &by(proc(70, "/bin/ls"), chain)), "no-match");
    // The event's chain stops before pid 1: the kernel would have looked further.
    let why = unknown(&ir, &by(proc(70, "/bin/ls"), vec![proc(60, "/bin/sh")]));
    assert!(
        why.contains("followForks") && why.contains("1 ancestor"),
        "{why}"
    );
    // Eight ancestors is as far as the kernel looks.
    let deep: Vec<ProcView> = (0..8).map(|i| proc(1000 + i, "/bin/sh")).collect();
    assert_eq!(outcome(&ir, &by(proc(70, "/bin/ls"), deep)), "no-match");
}

#[test]
fn namespace_pids_come_from_the_container() {
    let ir = sel("{matchPIDs: [{operator: In, values: [1], isNamespacePID: true}]}");
    let mut p = proc(4242, "/app");
    p.ns_pid = Some(1);
    assert_eq!(outcome(&ir, &by(p.clone(), vec![])), "match 0");
    p.ns_pid = Some(2);
    assert_eq!(outcome(&ir, &by(p.clone(), vec![])), "no-match");
    p.ns_pid = None;
    let why = unknown(&ir, &by(p, vec![]));
    assert!(why.contains("namespace pid"), "{why}");
}

#[test]
fn match_binaries_every_operator() {
    for (op, values, bin, want) in [
        ("In", "[/usr/bin/cat]", "/usr/bin/cat", true),
        ("In", "[/usr/bin/cat]", "/usr/bin/catx", false),
        ("NotIn", "[/usr/bin/cat]", "/usr/bin/vi", true),
        ("NotIn", "[/usr/bin/cat]", "/usr/bin/cat", false),
        ("Prefix", "[/usr/]", "/usr/bin/cat", true),
        ("Prefix", "[/usr/]", "/bin/cat", false),
        ("NotPrefix", "[/usr/]", "/bin/cat", true),
        ("NotPrefix", "[/usr/]", "/usr/bin/cat", false),
        ("Postfix", "[/cat]", "/usr/bin/cat", true),
        ("Postfix", "[/cat]", "/usr/bin/bat", false),
        ("NotPostfix", "[/cat]", "/usr/bin/bat", true),
        ("NotPostfix", "[/cat]", "/usr/bin/cat", false),
    ] {
        let ir = sel(&format!(
            "{{matchBinaries: [{{operator: {op}, values: {values}}}]}}"
        ));
        let got = outcome(&ir, &by(proc(5, bin), vec![]));
        assert_eq!(got == "match 0", want, "{op} {values} {bin}: {got}");
    }
}

#[test]
fn postfix_on_a_binary_longer_than_the_kernel_keeps_never_matches() {
    let long = format!("/{}/cat", "d".repeat(300));
    let ir = sel("{matchBinaries: [{operator: Postfix, values: [/cat]}]}");
    assert_eq!(outcome(&ir, &by(proc(5, &long), vec![])), "no-match");
    let ir = sel("{matchBinaries: [{operator: NotPostfix, values: [/cat]}]}");
    assert_eq!(outcome(&ir, &by(proc(5, &long), vec![])), "match 0");
}

#[test]
fn follow_children_matches_through_an_ancestor() {
    let ir =
        sel("{matchBinaries: [{operator: In, values: [/usr/sbin/sshd], followChildren: true}]}");
    let chain = vec![
        proc(60, "/bin/bash"),
        proc(50, "/usr/sbin/sshd"),
        proc(1, "/sbin/init"),
    ];
    assert_eq!(
        outcome(&ir, &by(proc(70, "/bin/ls"), chain.clone())),
        "match 0"
    );
    let ir =
        sel("{matchBinaries: [{operator: NotIn, values: [/usr/sbin/sshd], followChildren: true}]}");
    assert_eq!(outcome(&ir, &by(proc(70, "/bin/ls"), chain)), "no-match");
    let why = unknown(&ir, &by(proc(70, "/bin/ls"), vec![proc(60, "/bin/bash")]));
    assert!(why.contains("followChildren"), "{why}");
}

#[test]
fn a_process_without_binary_is_unknown_not_guessed() {
    let ir = sel("{matchBinaries: [{operator: NotIn, values: [/bin/true]}]}");
    let mut p = proc(5, "/x");
    p.binary = None;
    let why = unknown(&ir, &by(p, vec![]));
    assert!(why.contains("no process binary"), "{why}");
}

fn ns_of(t: NamespaceType, inum: u32, is_host: bool) -> NsSet {
    let mut s = NsSet::default();
    s.set(t, Ns { inum, is_host });
    s
}

#[test]
fn match_namespaces_by_inode_and_host_ns() {
    let ir = sel("{matchNamespaces: [{namespace: Pid, operator: In, values: [\"4026532000\"]}]}");
    let mut p = proc(5, "/x");
    p.ns = Some(ns_of(NamespaceType::Pid, 4026532000, false));
    assert_eq!(outcome(&ir, &by(p.clone(), vec![])), "match 0");
    p.ns = Some(ns_of(NamespaceType::Pid, 4026532001, false));
    assert_eq!(outcome(&ir, &by(p.clone(), vec![])), "no-match");
    let ir = sel("{matchNamespaces: [{namespace: Mnt, operator: NotIn, values: [host_ns]}]}");
    p.ns = Some(ns_of(NamespaceType::Mnt, 4026531841, true));
    assert_eq!(outcome(&ir, &by(p.clone(), vec![])), "no-match");
    p.ns = Some(ns_of(NamespaceType::Mnt, 4026532500, false));
    assert_eq!(outcome(&ir, &by(p.clone(), vec![])), "match 0");
    p.ns = Some(ns_of(NamespaceType::Net, 1, false));
    assert!(unknown(&ir, &by(p.clone(), vec![])).contains("no Mnt namespace"));
    p.ns = None;
    assert!(unknown(&ir, &by(p, vec![])).contains("event has no ns"));
}

fn caps(effective: u64) -> CapSets {
    CapSets {
        effective,
        inheritable: 0,
        permitted: effective,
    }
}

#[test]
fn match_capabilities_any_of_the_listed() {
    const SYS_ADMIN: u64 = 1 << 21;
    let ir = sel(
        "{matchCapabilities: [{type: Effective, operator: In, values: [CAP_SYS_ADMIN, CAP_BPF]}]}",
    );
    let mut p = proc(5, "/x");
    p.caps = Some(caps(SYS_ADMIN));
    assert_eq!(outcome(&ir, &by(p.clone(), vec![])), "match 0");
    p.caps = Some(caps(1));
    assert_eq!(outcome(&ir, &by(p.clone(), vec![])), "no-match");
    let ir =
        sel("{matchCapabilities: [{type: Inheritable, operator: NotIn, values: [CAP_SYS_ADMIN]}]}");
    p.caps = Some(caps(SYS_ADMIN));
    assert_eq!(
        outcome(&ir, &by(p.clone(), vec![])),
        "match 0",
        "inheritable set is empty"
    );
    p.caps = None;
    assert!(unknown(&ir, &by(p, vec![])).contains("event has no cap"));
}

#[test]
fn namespace_capabilities_count_only_outside_the_host_user_namespace() {
    let ir = sel(
        "{matchCapabilities: [{operator: In, isNamespaceCapability: true, values: [CAP_SYS_ADMIN]}]}",
    );
    let mut p = proc(5, "/x");
    p.caps = Some(caps(1 << 21));
    p.host_user_ns = Some(false);
    assert_eq!(outcome(&ir, &by(p.clone(), vec![])), "match 0");
    p.host_user_ns = Some(true);
    assert_eq!(outcome(&ir, &by(p.clone(), vec![])), "no-match");
    p.host_user_ns = None;
    assert!(unknown(&ir, &by(p, vec![])).contains("user namespace"));
}

#[test]
fn capability_and_namespace_changes_need_both_sets() {
    let ir = sel("{matchCapabilityChanges: [{operator: In, values: [CAP_SYS_ADMIN]}]}");
    let mut p = proc(5, "/x");
    p.caps = Some(caps(1 << 21));
    p.exec_caps = Some(caps(0));
    assert_eq!(outcome(&ir, &by(p.clone(), vec![])), "match 0");
    p.exec_caps = Some(caps(1 << 21));
    assert_eq!(outcome(&ir, &by(p.clone(), vec![])), "no-match");
    p.exec_caps = None;
    assert!(unknown(&ir, &by(p, vec![])).contains("current and exec-time capabilities"));

    let ir = sel("{matchNamespaceChanges: [{operator: In, values: [Mnt, Net]}]}");
    let mut p = proc(5, "/x");
    let mut now = ns_of(NamespaceType::Mnt, 10, false);
    now.set(
        NamespaceType::Net,
        Ns {
            inum: 20,
            is_host: false,
        },
    );
    let mut then = now;
    p.ns = Some(now);
    p.exec_ns = Some(then);
    assert_eq!(outcome(&ir, &by(p.clone(), vec![])), "no-match");
    then.set(
        NamespaceType::Net,
        Ns {
            inum: 21,
            is_host: false,
        },
    );
    p.exec_ns = Some(then);
    assert_eq!(outcome(&ir, &by(p.clone(), vec![])), "match 0");
    p.exec_ns = None;
    assert!(unknown(&ir, &by(p, vec![])).contains("exec-time namespaces"));
}

#[test]
fn a_definite_no_decides_even_next_to_an_unknown() {
    let ir = sel(
        "{matchBinaries: [{operator: In, values: [/bin/a]}], matchNamespaces: [{namespace: Pid, operator: In, values: [\"1\"]}]}",
    );
    // No namespaces in the event, but the binary already fails.
    assert_eq!(outcome(&ir, &by(proc(5, "/bin/b"), vec![])), "no-match");
    assert!(unknown(&ir, &by(proc(5, "/bin/a"), vec![])).contains("no ns"));
}

fn scoped(scope: &str) -> vigil_api::policy::ir::PolicyIr {
    policy(&format!(
        "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {{name: t}}
spec:
{scope}
  kprobes:
  - call: fn_x
    syscall: false
"
    ))
}

fn in_pod(ns: &str, labels: &[(&str, &str)], container: &str) -> EventView {
    let mut p = proc(5, "/app");
    p.in_container = Some(true);
    p.pod = Some(PodView {
        namespace: ns.into(),
        name: "p-1".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        container_name: container.into(),
    });
    by(p, vec![])
}

#[test]
fn pod_and_container_selectors_scope_the_policy() {
    let ir = scoped("  podSelector: {matchLabels: {app: web}}");
    assert_eq!(
        outcome(&ir, &in_pod("prod", &[("app", "web")], "c")),
        "match -"
    );
    assert_eq!(
        outcome(&ir, &in_pod("prod", &[("app", "db")], "c")),
        "out-of-scope"
    );
    assert_eq!(outcome(&ir, &call(vec![])), "out-of-scope", "host process");
    let ir = scoped(
        "  podSelector: {matchExpressions: [{key: k8s:io.kubernetes.pod.namespace, operator: In, values: [prod]}]}",
    );
    assert_eq!(outcome(&ir, &in_pod("prod", &[], "c")), "match -");
    assert_eq!(outcome(&ir, &in_pod("dev", &[], "c")), "out-of-scope");
    let ir = scoped("  containerSelector: {matchLabels: {name: nginx}}");
    assert_eq!(outcome(&ir, &in_pod("prod", &[], "nginx")), "match -");
    assert_eq!(
        outcome(&ir, &in_pod("prod", &[], "sidecar")),
        "out-of-scope"
    );
}

#[test]
fn namespaced_policies_apply_to_their_namespace() {
    let ir = policy(
        "apiVersion: cilium.io/v1alpha1
kind: TracingPolicyNamespaced
metadata: {name: t, namespace: prod}
spec:
  kprobes:
  - call: fn_x
    syscall: false
",
    );
    assert_eq!(outcome(&ir, &in_pod("prod", &[], "c")), "match -");
    match eval(&ir, &in_pod("dev", &[], "c")).outcome {
        Outcome::OutOfScope(why) => assert!(why.contains("not in namespace prod"), "{why}"),
        o => panic!("{o:?}"),
    }
}

#[test]
fn host_selector_selects_host_processes_of_matching_nodes() {
    let ir = scoped("  hostSelector: {}");
    assert_eq!(outcome(&ir, &call(vec![])), "match -");
    assert_eq!(outcome(&ir, &in_pod("prod", &[], "c")), "out-of-scope");
    let ir = scoped("  hostSelector: {matchLabels: {role: db}}");
    let why = unknown(&ir, &call(vec![]));
    assert!(why.contains("no node_labels"), "{why}");
    let mut ev = call(vec![]);
    ev.node_labels = Some([("role".to_string(), "db".to_string())].into());
    assert_eq!(outcome(&ir, &ev), "match -");
    ev.node_labels = Some([("role".to_string(), "web".to_string())].into());
    assert_eq!(outcome(&ir, &ev), "out-of-scope");
    // hostSelector and podSelector: the union.
    let ir = scoped("  hostSelector: {}\n  podSelector: {matchLabels: {app: web}}");
    assert_eq!(outcome(&ir, &call(vec![])), "match -");
    assert_eq!(
        outcome(&ir, &in_pod("prod", &[("app", "web")], "c")),
        "match -"
    );
    assert_eq!(
        outcome(&ir, &in_pod("prod", &[("app", "db")], "c")),
        "out-of-scope"
    );
}

#[test]
fn node_selector_leaves_out_other_nodes() {
    let ir = scoped("  nodeSelector: {matchLabels: {zone: a}}");
    let mut ev = call(vec![]);
    ev.node_labels = Some([("zone".to_string(), "b".to_string())].into());
    assert_eq!(outcome(&ir, &ev), "out-of-scope");
    ev.node_labels = Some([("zone".to_string(), "a".to_string())].into());
    assert_eq!(outcome(&ir, &ev), "match -");
}

fn point_policy() -> vigil_api::policy::ir::PolicyIr {
    policy(
        "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: t}
spec:
  kprobes:
  - call: sys_openat
  - call: security_bprm_check
    syscall: false
  tracepoints:
  - subsystem: syscalls
    event: sys_enter_kill
  uprobes:
  - path: /usr/bin/bash
    symbols: [readline]
  lsmhooks:
  - hook: file_open
",
    )
}

fn at(point: HookPoint) -> Verdict {
    eval(
        &point_policy(),
        &EventView {
            point,
            ..call(vec![])
        },
    )
}

fn hook_source(point: HookPoint) -> Option<String> {
    at(point).hook.map(|h| h.source)
}

#[test]
fn events_find_their_hook_by_attach_point() {
    let k = |f: &str| HookPoint::Kprobe { function: f.into() };
    assert_eq!(
        hook_source(k("__x64_sys_openat")).as_deref(),
        Some("spec.kprobes[0]")
    );
    assert_eq!(
        hook_source(k("sys_openat")).as_deref(),
        Some("spec.kprobes[0]")
    );
    assert_eq!(
        hook_source(k("security_bprm_check")).as_deref(),
        Some("spec.kprobes[1]")
    );
    assert_eq!(hook_source(k("__x64_sys_open")), None);
    let tp = HookPoint::Tracepoint {
        subsystem: "syscalls".into(),
        event: "sys_enter_kill".into(),
    };
    assert_eq!(hook_source(tp).as_deref(), Some("spec.tracepoints[0]"));
    let up = |path: &str, symbol: &str| HookPoint::Uprobe {
        path: path.into(),
        symbol: symbol.into(),
        offset: 0,
    };
    assert_eq!(
        hook_source(up("/usr/bin/bash", "readline")).as_deref(),
        Some("spec.uprobes[0]")
    );
    assert_eq!(hook_source(up("/bin/bash", "readline")), None);
    let v = at(HookPoint::Lsm {
        hook: "file_open".into(),
    });
    assert_eq!(
        v.hook.as_ref().map(|h| h.source.as_str()),
        Some("spec.lsmhooks[0]")
    );
    assert_eq!(v.hook.unwrap().note, None);
    match at(k("tcp_connect")).outcome {
        Outcome::NoHook(why) => assert!(why.contains("kprobe tcp_connect"), "{why}"),
        o => panic!("{o:?}"),
    }
}

#[test]
fn security_kprobes_and_lsm_hooks_stand_for_each_other_with_a_note() {
    let v = at(HookPoint::Kprobe {
        function: "security_file_open".into(),
    });
    let h = v.hook.unwrap();
    assert_eq!(h.source, "spec.lsmhooks[0]");
    assert!(h.note.unwrap().contains("security_file_open"));
    let v = at(HookPoint::Lsm {
        hook: "bprm_check".into(),
    });
    assert_eq!(v.hook.unwrap().source, "spec.kprobes[1]");
}

#[test]
fn an_event_without_process_is_unknown_for_process_filters_only() {
    let ir = sel("{matchPIDs: [{operator: In, values: [1]}]}");
    let ev = EventView {
        process: None,
        ..call(vec![])
    };
    assert!(unknown(&ir, &ev).contains("no process"));
    let ir = arg_filter("int", "Equal", &["1"]);
    let ev = EventView {
        process: None,
        ..call(vec![ArgView::Int(1)])
    };
    assert_eq!(outcome(&ir, &ev), "match 0");
}
