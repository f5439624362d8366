//! Tests of `pipeline.rs` (kept apart so that the module stays readable).
use super::*;
use crate::kernel::clock::BootClock;
use vigil_sensor_bpf::abi;

use crate::output::export::Item;

fn pipeline() -> (Pipeline, std::sync::mpsc::Receiver<Item>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let (q, rx) = ExportQueue::for_test(1000, metrics.clone());
    let b = EventBuilder {
        node_name: "n".into(),
        clock: BootClock::now(),
        enable_cred: false,
        enable_ns: false,
        host_ns: [0; abi::NS_COUNT],
    };
    (Pipeline::new(b, 100, q, metrics.clone()), rx, metrics)
}

fn exec(pid: u32, ppid: u32, ktime: u64, parent_ktime: u64) -> Record {
    Record::Exec(Box::new(ExecRecord {
        pid,
        tid: pid,
        ppid,
        kflags: 0,
        ktime,
        parent_ktime,
        creds: abi::Creds::default(),
        ns: [0; abi::NS_COUNT],
        cgroup_id: 0,
        nspid: 0,
        binary: format!("/bin/p{pid}"),
        argv: vec![format!("p{pid}")],
        args_total: 0,
        cwd: "/tmp".into(),
        cgroup_name: String::new(),
    }))
}

fn events(rx: &std::sync::mpsc::Receiver<Item>) -> Vec<GetEventsResponse> {
    rx.try_iter()
        .filter_map(|i| match i {
            Item::Event { line, .. } => Some(GetEventsResponse::from_json(&line).unwrap()),
            Item::Loss(_) => None,
        })
        .collect()
}

#[test]
fn fork_exec_exit_chain() {
    let (mut p, rx, _) = pipeline();
    p.handle(exec(100, 0, 10, 0));
    p.handle(Record::Fork(abi::Fork {
        pid: 101,
        ppid: 100,
        ktime: 20,
        parent_ktime: 10,
        ..Default::default()
    }));
    p.handle(Record::Exit(abi::Exit {
        pid: 101,
        ktime: 20,
        exit_code: 9,
        ..Default::default()
    }));
    p.handle(exec(102, 100, 30, 10));
    p.handle(Record::Exit(abi::Exit {
        pid: 102,
        ktime: 30,
        exit_code: 3 << 8,
        ..Default::default()
    }));
    let ev = events(&rx);
    assert_eq!(ev.len(), 4, "{ev:?}");
    let parent_exec = ev[0]
        .process_exec
        .as_ref()
        .unwrap()
        .process
        .as_ref()
        .unwrap()
        .exec_id
        .clone();
    let clone_exit = ev[1].process_exit.as_ref().unwrap();
    assert_eq!(clone_exit.process.as_ref().unwrap().flags, "clone");
    assert_eq!(
        clone_exit.process.as_ref().unwrap().parent_exec_id,
        parent_exec
    );
    assert_eq!(clone_exit.signal, "SIGKILL");
    let child = ev[2].process_exec.as_ref().unwrap();
    assert_eq!(child.process.as_ref().unwrap().parent_exec_id, parent_exec);
    assert_eq!(child.parent.as_ref().unwrap().exec_id, parent_exec);
    assert_eq!(ev[3].process_exit.as_ref().unwrap().status, 3);
    assert_eq!(p.cache.len(), 2, "kernel root and the live parent remain");
}

fn in_container(pid: u32, ktime: u64, id: &str) -> Record {
    let mut r = exec(pid, 0, ktime, 0);
    if let Record::Exec(e) = &mut r {
        e.cgroup_name = format!("cri-containerd-{id}.scope");
        e.nspid = 7;
    }
    r
}

fn pod_of(id: &str, name: &str, uid: &str) -> vigil_api::wire::pod::Pod {
    vigil_api::wire::pod::Pod {
        namespace: "default".into(),
        name: name.into(),
        uid: uid.into(),
        containers: vec![vigil_api::wire::pod::Container {
            id: id.into(),
            name: "main".into(),
            image: "img".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn events_wait_for_their_pod_within_bounds() {
    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa0123456789abcdef0123456789abcdef";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb0123456789abcdef0123456789abcdef";
    let root = tempfile::tempdir().unwrap();
    let inv = Arc::new(PodInventory::new(root.path()));
    let (p, rx, m) = pipeline();
    let wait = PodWait {
        max_wait: Duration::from_millis(200),
        max_events: 2,
    };
    let mut p = p.with_pods(inv.clone(), wait);
    // No inventory yet: nothing waits, and no placeholder leaks out.
    p.handle(in_container(10, 1, A));
    let ev = events(&rx);
    assert_eq!(ev.len(), 1);
    assert!(ev[0].process().unwrap().pod.is_none());
    inv.apply_pods(vec![]);
    // A's pod arrives late: its event waits, then goes out with it and the container pid.
    p.handle(in_container(11, 2, A));
    p.handle(exec(12, 0, 3, 0));
    let ev = events(&rx);
    assert_eq!(ev.len(), 1, "only the host process goes out");
    assert!(ev[0].process().unwrap().pod.is_none());
    assert_eq!(m.pod_events_waiting.get(), 1);
    inv.upsert_pod(pod_of(A, "xwing", "u1"));
    p.release(Instant::now());
    let ev = events(&rx);
    assert_eq!(ev.len(), 1);
    let pod = ev[0].process().unwrap().pod.clone().expect("the pod");
    assert_eq!(
        (pod.namespace.as_str(), pod.name.as_str()),
        ("default", "xwing")
    );
    let c = pod.container.unwrap();
    assert_eq!((c.id.as_str(), c.pid), (A, Some(7)));
    assert_eq!(m.pod_events_resolved.get(), 1);
    // B's pod never comes: out after the bound, flagged.
    p.handle(in_container(13, 4, B));
    p.release(Instant::now());
    assert!(events(&rx).is_empty());
    p.release(Instant::now() + Duration::from_millis(250));
    let ev = events(&rx);
    assert_eq!(ev.len(), 1);
    let proc_ = ev[0].process().unwrap();
    assert!(proc_.pod.is_none());
    assert_eq!(proc_.flags, "execve podUnknown");
    assert_eq!(m.pod_events_unresolved.get(), 1);
    // The count bound: the oldest goes out (flagged) when a third would wait.
    for pid in 20..23 {
        p.handle(in_container(pid, pid as u64, B));
    }
    let ev = events(&rx);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].process().unwrap().pid, Some(20));
    assert_eq!(p.held_len(), 2);
    assert_eq!(m.pod_events_held.get(), 5);
    // Nothing is lost at shutdown either.
    drop(p);
    assert_eq!(events(&rx).len(), 2);
    assert_eq!(m.pod_events_unresolved.get(), 4);
}

#[test]
fn unknown_exit_is_reported_with_miss() {
    let (mut p, rx, m) = pipeline();
    p.handle(Record::Exit(abi::Exit {
        pid: 555,
        ktime: 0,
        ..Default::default()
    }));
    let ev = events(&rx);
    assert_eq!(
        ev[0]
            .process_exit
            .as_ref()
            .unwrap()
            .process
            .as_ref()
            .unwrap()
            .flags,
        "miss"
    );
    assert_eq!(m.process_cache_misses.get(), 1);
}

#[test]
fn scan_reports_parents_first() {
    let (mut p, rx, _) = pipeline();
    let mk = |pid, ppid, start| ScannedProc {
        pid,
        ppid,
        start_ns: start,
        binary: format!("/bin/s{pid}"),
        cwd: "/".into(),
        ..Default::default()
    };
    p.load_scan(&[mk(1, 0, 5), mk(50, 1, 6), mk(51, 50, 7)]);
    let ev = events(&rx);
    assert_eq!(ev.len(), 4);
    let procs: Vec<&Process> = ev
        .iter()
        .map(|e| e.process_exec.as_ref().unwrap().process.as_ref().unwrap())
        .map(|p| &**p)
        .collect();
    assert_eq!(procs[0].binary, "<kernel>");
    assert_eq!(procs[1].parent_exec_id, procs[0].exec_id);
    assert_eq!(procs[3].parent_exec_id, procs[2].exec_id);
    assert_eq!(procs[3].flags, "procFS rootcwd");
}

fn hook_meta(policy: &str) -> Arc<crate::hooks::meta::HookMeta> {
    use crate::hooks::meta::{ArgMeta, HookEventKind, HookMeta};
    use vigil_api::policy::ir::ArgType;
    Arc::new(HookMeta {
        policy_name: policy.into(),
        policy_namespace: String::new(),
        kind: HookEventKind::Kprobe,
        function_name: "__x64_sys_openat".into(),
        args: vec![ArgMeta {
            ir_type: ArgType::String,
            kind: abi::argk::STR,
            label: String::new(),
        }],
        return_type: None,
        message: String::new(),
        tags: vec![],
    })
}

fn hook(pid: u32, ktime: u64, slot: u32, generation: u32, args: &[(u8, u32, Vec<u8>)]) -> Record {
    let rec = abi::HookRec {
        pid,
        tid: pid + 1,
        ktime,
        hook: slot,
        generation,
        actions: 1 << abi::act::POST,
        ..Default::default()
    };
    crate::kernel::decode::decode(&crate::kernel::decode::testutil::hook_bytes(rec, args)).unwrap()
}

fn with_registry() -> (
    Pipeline,
    std::sync::mpsc::Receiver<Item>,
    Arc<Metrics>,
    Arc<HookRegistry>,
) {
    let (p, rx, m) = pipeline();
    let reg = Arc::new(HookRegistry::new());
    reg.set(4, 2, hook_meta("file-open"));
    (p.with_hooks(reg.clone()), rx, m, reg)
}

#[test]
fn hook_event_carries_process_and_parent() {
    let (mut p, rx, m, _) = with_registry();
    p.handle(exec(100, 0, 10, 0));
    p.handle(exec(101, 100, 20, 10));
    let path = crate::kernel::decode::testutil::raw(abi::argk::STR, b"/etc/passwd");
    p.handle(hook(101, 20, 4, 2, &[path]));
    let ev = events(&rx);
    assert_eq!(ev.len(), 3);
    let k = ev[2].process_kprobe.as_ref().expect("a process_kprobe");
    let proc_ = k.process.as_ref().unwrap();
    assert_eq!(proc_.binary, "/bin/p101");
    assert_eq!(proc_.tid, Some(102));
    assert_eq!(k.parent.as_ref().unwrap().binary, "/bin/p100");
    assert_eq!(k.policy_name, "file-open");
    assert_eq!(k.args[0].string(), Some("/etc/passwd"));
    assert_eq!(m.process_cache_misses.get(), 0);
    let text = crate::output::metrics::render(&m.registry());
    assert!(
        text.contains(
            "vigil_policy_events_total{policy=\"file-open\",hook=\"kprobe:__x64_sys_openat\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("vigil_events_total{type=\"process_kprobe\"} 1"),
        "{text}"
    );
}

#[test]
fn hook_of_unknown_process_is_emitted_with_miss() {
    let (mut p, rx, m, _) = with_registry();
    p.handle(hook(900, 55, 4, 2, &[]));
    let ev = events(&rx);
    assert_eq!(ev.len(), 1);
    let k = ev[0].process_kprobe.as_ref().unwrap();
    let proc_ = k.process.as_ref().unwrap();
    assert_eq!(proc_.flags, "miss");
    assert_eq!(proc_.pid, Some(900));
    assert_eq!(proc_.exec_id, p.builder.exec_id(900, 55));
    assert!(k.parent.is_none());
    assert_eq!(m.process_cache_misses.get(), 1);
}

#[test]
fn orphan_hook_records_are_counted_and_dropped() {
    let (mut p, rx, m, reg) = with_registry();
    p.handle(hook(1, 0, 4, 1, &[])); // stale generation
    p.handle(hook(1, 0, 5, 2, &[])); // unknown slot
    reg.clear(4);
    p.handle(hook(1, 0, 4, 2, &[])); // unloaded
    let items: Vec<Item> = rx.try_iter().collect();
    assert_eq!(items.len(), 3, "one marker each, in place of the record");
    for item in items {
        let Item::Loss(b) = item else {
            panic!("a loss marker, not an event")
        };
        let (k, s) = b.entries().next().unwrap();
        assert_eq!(
            (k.stage, k.reason, k.kind, s.count),
            (
                LossStage::Decode,
                LossReason::HookUnloaded,
                LossKind::Hook,
                1
            )
        );
    }
    assert_eq!(m.hook_records_orphaned.get(), 3);
    // Without a registry every hook record is an orphan.
    let (mut p, rx, m) = pipeline();
    p.handle(hook(1, 0, 4, 2, &[]));
    assert!(events(&rx).is_empty());
    assert_eq!(m.hook_records_orphaned.get(), 1);
}

#[test]
fn unreadable_hook_arguments_are_counted() {
    let (mut p, rx, m, _) = with_registry();
    p.handle(hook(1, 0, 4, 2, &[(abi::argk::STR, abi::aux::ERR, vec![])]));
    let ev = events(&rx);
    assert_eq!(
        ev[0].process_kprobe.as_ref().unwrap().args[0].string(),
        Some("")
    );
    assert_eq!(m.hook_arg_errors.get(), 1);
}

#[test]
fn a_record_that_does_not_decode_is_marked_where_it_was() {
    let (mut p, rx, m) = pipeline();
    let good = crate::kernel::decode::testutil::bytes_of(&abi::Fork {
        hdr: abi::MsgHeader {
            kind: abi::MSG_FORK,
            size: std::mem::size_of::<abi::Fork>() as u32,
            time: 1,
        },
        pid: 7,
        ..Default::default()
    });
    p.handle_bytes(&good[..good.len() - 4]);
    p.handle_bytes(&[9, 9]);
    let items: Vec<Item> = rx.try_iter().collect();
    let kinds: Vec<LossKind> = items
        .iter()
        .map(|i| match i {
            Item::Loss(b) => b.entries().next().unwrap().0.kind,
            Item::Event { .. } => panic!("no event"),
        })
        .collect();
    assert_eq!(kinds, vec![LossKind::Fork, LossKind::Record]);
    assert_eq!(m.decode_errors.get(), 2);
    let text = crate::output::metrics::render(&m.registry());
    for (result, n) in [("in", 2), ("out", 0), ("lost", 2)] {
        let want = format!("vigil_stage_events_total{{stage=\"decode\",result=\"{result}\"}} {n}");
        assert!(text.contains(&want), "{want}\n{text}");
    }
}
