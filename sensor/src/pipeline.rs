//! Turns decoded kernel records into events: keeps the process cache current, attaches parents,
//! and hands serialized events to the export queue.

use std::sync::Arc;

use vigil_api::events::{GetEventsResponse, Process};

use crate::builder::{EventBuilder, KERNEL_KTIME};
use crate::decode::{ExecRecord, Record};
use crate::export::ExportQueue;
use crate::grpc::Broadcaster;
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
        }
    }

    /// Also offers every event to gRPC clients.
    pub fn with_broadcaster(mut self, broadcaster: Arc<Broadcaster>) -> Self {
        self.broadcaster = Some(broadcaster);
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

    fn emit(&self, ev: &GetEventsResponse) {
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
            }
            Err(e) => tracing::error!("cannot encode event: {e}"),
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
}
