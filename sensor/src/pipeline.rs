//! Turns decoded kernel records into events: keeps the process cache current, attaches parents,
//! and hands serialized events to the export queue.

use std::sync::Arc;

use vigil_api::events::{GetEventsResponse, Process};

use crate::builder::{EventBuilder, KERNEL_KTIME};
use crate::decode::{ExecRecord, HookRecord, Record};
use crate::export::ExportQueue;
use crate::grpc::Broadcaster;
use crate::hooks::event as hook_event;
use crate::hooks::meta::HookRegistry;
use crate::metrics::Metrics;
use crate::process_cache::{ProcKey, ProcessCache};
use crate::procfs_scan::ScannedProc;

pub struct Pipeline {
    pub builder: EventBuilder,
    pub cache: ProcessCache,
    queue: ExportQueue,
    metrics: Arc<Metrics>,
    kernel_key: ProcKey,
    broadcaster: Option<Arc<Broadcaster>>,
    hooks: Option<Arc<HookRegistry>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("cache_len", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    pub fn new(
        builder: EventBuilder,
        cache_capacity: usize,
        queue: ExportQueue,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.process_cache_capacity.set(cache_capacity as i64);
        let mut cache = ProcessCache::new(cache_capacity);
        let kernel_key = ProcKey {
            pid: 0,
            ktime: KERNEL_KTIME,
        };
        cache.insert(kernel_key, Arc::new(builder.kernel_process()), None);
        Self {
            builder,
            cache,
            queue,
            metrics,
            kernel_key,
            broadcaster: None,
            hooks: None,
        }
    }

    /// Also offers every event to gRPC clients.
    pub fn with_broadcaster(mut self, broadcaster: Arc<Broadcaster>) -> Self {
        self.broadcaster = Some(broadcaster);
        self
    }

    /// Turns hook records into events with the metadata the engine keeps in `hooks`. Without a
    /// registry every hook record is an orphan.
    pub fn with_hooks(mut self, hooks: Arc<HookRegistry>) -> Self {
        self.hooks = Some(hooks);
        self
    }

    /// Reports the processes found in /proc (oldest first), each with its parent, as `procFS`
    /// exec events, starting with the `<kernel>` root. Kernel threads are not reported.
    pub fn load_scan(&mut self, procs: &[ScannedProc]) {
        let kernel = self
            .cache
            .get(&self.kernel_key)
            .map(|e| (*e.process).clone());
        if let Some(k) = kernel {
            let ev = self.builder.exec_event(k.clone(), Some(k), 0);
            self.emit(&ev);
        }
        for s in procs.iter().filter(|s| !s.kernel_thread) {
            let parent_key = self.cache.live(s.ppid).unwrap_or(self.kernel_key);
            let parent = self.cache.get(&parent_key).map(|e| e.process.clone());
            let parent_id = parent
                .as_ref()
                .map(|p| p.exec_id.clone())
                .unwrap_or_default();
            let process = self.builder.scanned_process(s, parent_id);
            let key = ProcKey {
                pid: s.pid,
                ktime: s.start_ns,
            };
            self.cache
                .insert(key, Arc::new(process.clone()), Some(parent_key));
            let ev = self
                .builder
                .exec_event(process, parent.map(|p| (*p).clone()), s.start_ns);
            self.emit(&ev);
        }
        self.update_cache_metrics();
    }

    pub fn handle(&mut self, record: Record) {
        match record {
            Record::Exec(r) => self.on_exec(&r),
            Record::Fork(f) => self.on_fork(f.pid, f.ktime, f.ppid, f.parent_ktime),
            Record::Exit(x) => self.on_exit(x.pid, x.ktime, x.exit_code, x.hdr.time),
            Record::Hook(h) => self.on_hook(&h),
        }
        self.update_cache_metrics();
    }

    fn parent_of(&mut self, ppid: u32, parent_ktime: u64) -> Option<(ProcKey, Arc<Process>)> {
        let key = if ppid == 0 {
            Some(self.kernel_key)
        } else {
            self.cache.resolve(ppid, parent_ktime)
        };
        match key.and_then(|k| self.cache.get(&k).map(|e| (k, e.process.clone()))) {
            Some(found) => Some(found),
            None => {
                self.metrics.process_cache_misses.inc();
                None
            }
        }
    }

    fn on_exec(&mut self, r: &ExecRecord) {
        let parent = self.parent_of(r.ppid, r.parent_ktime);
        let process = self
            .builder
            .exec_process(r, parent.as_ref().map(|(_, p)| p.exec_id.clone()));
        let key = ProcKey {
            pid: r.pid,
            ktime: r.ktime,
        };
        self.cache.insert(
            key,
            Arc::new(process.clone()),
            parent.as_ref().map(|(k, _)| *k),
        );
        let ev = self
            .builder
            .exec_event(process, parent.map(|(_, p)| (*p).clone()), r.ktime);
        self.emit(&ev);
    }

    /// A new thread group: cached (for its exit and its children), not reported by itself.
    fn on_fork(&mut self, pid: u32, ktime: u64, ppid: u32, parent_ktime: u64) {
        let Some((pkey, parent)) = self.parent_of(ppid, parent_ktime) else {
            return;
        };
        let child = self.builder.forked_process(&parent, pid, ktime);
        self.cache
            .insert(ProcKey { pid, ktime }, Arc::new(child), Some(pkey));
    }

    fn on_exit(&mut self, pid: u32, ktime: u64, exit_code: u32, time: u64) {
        let key = self.cache.resolve(pid, ktime);
        let entry = key.and_then(|k| self.cache.get(&k).map(|e| (k, e.process.clone(), e.parent)));
        let ev = match entry {
            Some((key, process, parent_key)) => {
                let parent = parent_key
                    .and_then(|pk| self.cache.get(&pk))
                    .map(|e| (*e.process).clone());
                let ev = self
                    .builder
                    .exit_event((*process).clone(), parent, exit_code, time);
                self.cache.exit(key);
                ev
            }
            None => {
                self.metrics.process_cache_misses.inc();
                self.builder.exit_event(
                    self.builder.unknown_process(pid, ktime),
                    None,
                    exit_code,
                    time,
                )
            }
        };
        self.emit(&ev);
    }

    /// A hook fired: its event goes out with the process and parent the cache knows. A process
    /// the cache does not know is reported as far as the record tells (flag `miss`); a record
    /// whose hook is gone (slot unloaded or reused) is dropped and counted.
    fn on_hook(&mut self, r: &HookRecord) {
        let Some(meta) = self
            .hooks
            .as_ref()
            .and_then(|h| h.get(r.hook, r.generation))
        else {
            self.metrics.hook_records_orphaned.inc();
            return;
        };
        let key = if r.pid == 0 {
            Some(self.kernel_key)
        } else {
            self.cache.resolve(r.pid, r.ktime)
        };
        let entry = key.and_then(|k| self.cache.get(&k).map(|e| (e.process.clone(), e.parent)));
        let (process, parent) = match entry {
            Some((process, parent_key)) => {
                let parent = parent_key
                    .and_then(|pk| self.cache.get(&pk))
                    .map(|e| (*e.process).clone());
                ((*process).clone(), parent)
            }
            None => {
                self.metrics.process_cache_misses.inc();
                (self.builder.unknown_process(r.pid, r.ktime), None)
            }
        };
        let built = hook_event::build(&self.builder, r, &meta, process, parent);
        if built.arg_errors > 0 {
            self.metrics.hook_arg_errors.inc_by(built.arg_errors);
        }
        if self.emit(&built.event) {
            self.metrics
                .count_policy_event(&meta.policy_name, &hook_event::hook_label(&meta));
        }
    }

    /// Serializes and hands out one event; false when it could not be encoded.
    fn emit(&self, ev: &GetEventsResponse) -> bool {
        match ev.to_json() {
            Ok(line) => {
                if let Some(kind) = ev.kind() {
                    self.metrics.count_event(kind.field_name());
                }
                // The line is serialized once; gRPC clients get it converted once for all.
                if let Some(b) = &self.broadcaster {
                    b.publish(ev, &line);
                }
                self.queue.push(line);
                true
            }
            Err(e) => {
                tracing::error!("cannot encode event: {e}");
                false
            }
        }
    }

    fn update_cache_metrics(&self) {
        self.metrics.process_cache_size.set(self.cache.len() as i64);
        let ev = self.cache.evictions();
        let seen = self.metrics.process_cache_evictions.get();
        if ev > seen {
            self.metrics.process_cache_evictions.inc_by(ev - seen);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::BootClock;
    use vigil_sensor_bpf::abi;

    fn pipeline() -> (Pipeline, std::sync::mpsc::Receiver<String>, Arc<Metrics>) {
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
            binary: format!("/bin/p{pid}"),
            argv: vec![format!("p{pid}")],
            args_total: 0,
            cwd: "/tmp".into(),
            cgroup_name: String::new(),
        }))
    }

    fn events(rx: &std::sync::mpsc::Receiver<String>) -> Vec<GetEventsResponse> {
        rx.try_iter()
            .map(|l| GetEventsResponse::from_json(&l).unwrap())
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

    fn hook(
        pid: u32,
        ktime: u64,
        slot: u32,
        generation: u32,
        args: &[(u8, u32, Vec<u8>)],
    ) -> Record {
        let rec = abi::HookRec {
            pid,
            tid: pid + 1,
            ktime,
            hook: slot,
            generation,
            actions: 1 << abi::act::POST,
            ..Default::default()
        };
        crate::decode::decode(&crate::decode::testutil::hook_bytes(rec, args)).unwrap()
    }

    fn with_registry() -> (
        Pipeline,
        std::sync::mpsc::Receiver<String>,
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
        let path = crate::decode::testutil::raw(abi::argk::STR, b"/etc/passwd");
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
        let text = crate::metrics::render(&m.registry());
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
        assert!(events(&rx).is_empty());
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
}
