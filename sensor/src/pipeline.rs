//! Turns decoded kernel records into events: keeps the process cache current, attaches parents,
//! and hands serialized events to the export queue.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_api::events::{self, GetEventsResponse, Process, ProcessFlags};

use crate::builder::{EventBuilder, KERNEL_KTIME};
use crate::decode::{ExecRecord, HookRecord, Record};
use crate::export::ExportQueue;
use crate::grpc::Broadcaster;
use crate::hooks::event as hook_event;
use crate::hooks::meta::HookRegistry;
use crate::metrics::Metrics;
use crate::pods::PodInventory;
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
    pods: Option<Arc<PodInventory>>,
    wait: PodWait,
    held: VecDeque<Held>,
    /// Inventory generation seen by the last release pass.
    pods_seen: u64,
}

/// How long, and how many, events of containers with no known pod wait for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodWait {
    pub max_wait: Duration,
    pub max_events: usize,
}

impl Default for PodWait {
    fn default() -> Self {
        PodWait {
            max_wait: Duration::from_millis(crate::config::DEFAULT_POD_WAIT_MS),
            max_events: crate::config::DEFAULT_POD_WAIT_EVENTS,
        }
    }
}

/// An event waiting for its pod.
struct Held {
    ev: GetEventsResponse,
    since: Instant,
    /// (policy, hook) of a hook event, counted when it goes out.
    policy: Option<(String, String)>,
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
            pods: None,
            wait: PodWait::default(),
            held: VecDeque::new(),
            pods_seen: 0,
        }
    }

    /// Attaches pod metadata from `pods` to every process that runs in a known container;
    /// events of containers whose pod is not known yet wait for it as `wait` allows.
    pub fn with_pods(mut self, pods: Arc<PodInventory>, wait: PodWait) -> Self {
        let m = self.metrics.clone();
        let weak = Arc::downgrade(&pods);
        pods.on_change(move || {
            if let Some(p) = weak.upgrade() {
                m.pod_inventory_pods.set(p.len() as i64);
                m.pod_inventory_containers
                    .set(p.containers_resolved() as i64);
            }
        });
        self.pods = Some(pods);
        self.wait = wait;
        self
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
            self.dispatch(ev, None);
        }
        for s in procs.iter().filter(|s| !s.kernel_thread) {
            let parent_key = self.cache.live(s.ppid).unwrap_or(self.kernel_key);
            let parent = self.cache.get(&parent_key).map(|e| e.process.clone());
            let parent_id = parent
                .as_ref()
                .map(|p| p.exec_id.clone())
                .unwrap_or_default();
            let mut process = self.builder.scanned_process(s, parent_id);
            self.stub_pod(&mut process, s.nspid);
            let key = ProcKey {
                pid: s.pid,
                ktime: s.start_ns,
            };
            self.cache
                .insert(key, Arc::new(process.clone()), Some(parent_key));
            let ev = self
                .builder
                .exec_event(process, parent.map(|p| (*p).clone()), s.start_ns);
            self.dispatch(ev, None);
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
        let mut process = self
            .builder
            .exec_process(r, parent.as_ref().map(|(_, p)| p.exec_id.clone()));
        if let (Some(inv), Some(id)) = (&self.pods, crate::container::container_id(&r.cgroup_name))
        {
            inv.note_cgroup(id, r.cgroup_id);
        }
        self.stub_pod(&mut process, r.nspid);
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
        self.dispatch(ev, None);
    }

    /// A new thread group: cached (for its exit and its children), not reported by itself.
    fn on_fork(&mut self, pid: u32, ktime: u64, ppid: u32, parent_ktime: u64) {
        let Some((pkey, parent)) = self.parent_of(ppid, parent_ktime) else {
            return;
        };
        let mut child = self.builder.forked_process(&parent, pid, ktime);
        // The parent's pid inside its container is not the child's.
        if let Some(c) = child.pod.as_mut().and_then(|p| p.container.as_mut()) {
            c.pid = None;
        }
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
        self.dispatch(ev, None);
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
        let label = (meta.policy_name.clone(), hook_event::hook_label(&meta));
        self.dispatch(built.event, Some(label));
    }

    /// Keeps the container's pid of a containerised process until its pod is known: the pod
    /// itself is filled in when an event goes out (so relabels and late pods are seen).
    fn stub_pod(&self, p: &mut Process, nspid: u32) {
        if self.pods.is_some() && !p.docker.is_empty() {
            p.pod = Some(events::Pod {
                container: Some(events::Container {
                    pid: (nspid != 0).then_some(nspid),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }

    /// Sends an event out, or holds it while its container's pod is not known.
    fn dispatch(&mut self, mut ev: GetEventsResponse, policy: Option<(String, String)>) {
        if self.pods.is_none() {
            self.emit_counted(&ev, policy.as_ref());
            return;
        }
        // Anything held that can go now goes first, so a container's events keep their order.
        if !self.held.is_empty() {
            self.release(Instant::now());
        }
        if self.enrich(&mut ev) || self.wait.max_events == 0 || self.wait.max_wait.is_zero() {
            if !self.pod_resolved(&ev) {
                flag_pod_unknown(&mut ev);
                self.metrics.pod_events_held.inc();
                self.metrics.pod_events_unresolved.inc();
            }
            strip_stubs(&mut ev);
            self.emit_counted(&ev, policy.as_ref());
            return;
        }
        self.metrics.pod_events_held.inc();
        self.held.push_back(Held {
            ev,
            since: Instant::now(),
            policy,
        });
        while self.held.len() > self.wait.max_events {
            if let Some(h) = self.held.pop_front() {
                self.finish(h, false);
            }
        }
        self.metrics.pod_events_waiting.set(self.held.len() as i64);
    }

    /// Whether the event's process is resolved, or needs no pod.
    fn pod_resolved(&self, ev: &GetEventsResponse) -> bool {
        let inv = match &self.pods {
            Some(i) if i.is_active() => i,
            _ => return true,
        };
        ev.process()
            .is_none_or(|p| p.docker.is_empty() || inv.lookup(&p.docker).is_some())
    }

    /// Fills in `pod` of every process of the event from the inventory; true when the event's
    /// own process has its pod (or needs none, or no inventory is in use).
    fn enrich(&self, ev: &mut GetEventsResponse) -> bool {
        let Some(inv) = &self.pods else {
            return true;
        };
        let Some((process, parent, ancestors)) = ev.processes_mut() else {
            return true;
        };
        let fill = |p: &mut Process| -> bool {
            if p.docker.is_empty() {
                p.pod = None;
                return true;
            }
            let Some((pod, i)) = inv.lookup(&p.docker) else {
                return false;
            };
            let pid = p
                .pod
                .as_ref()
                .and_then(|p| p.container.as_ref())
                .and_then(|c| c.pid);
            p.pod = Some(pod.event_pod(i, pid));
            true
        };
        let ready = process.as_mut().is_none_or(fill);
        for q in parent.iter_mut().chain(ancestors.iter_mut()) {
            fill(q);
        }
        ready || !inv.is_active()
    }

    /// Sends out held events whose pod arrived, and those that waited long enough (without
    /// their pod, flagged). Called on the drain timer and before every new event.
    pub fn release(&mut self, now: Instant) {
        if let Some(p) = &self.pods {
            p.expire();
        }
        if self.held.is_empty() {
            return;
        }
        let generation = self.pods.as_ref().map(|p| p.generation()).unwrap_or(0);
        let oldest_due = self
            .held
            .front()
            .is_some_and(|h| now.duration_since(h.since) >= self.wait.max_wait);
        if generation == self.pods_seen && !oldest_due {
            return;
        }
        self.pods_seen = generation;
        let mut keep = VecDeque::with_capacity(self.held.len());
        for mut h in std::mem::take(&mut self.held) {
            if self.enrich(&mut h.ev) {
                self.metrics.pod_events_resolved.inc();
                strip_stubs(&mut h.ev);
                self.emit_counted(&h.ev, h.policy.as_ref());
            } else if now.duration_since(h.since) >= self.wait.max_wait {
                self.finish(h, true);
            } else {
                keep.push_back(h);
            }
        }
        self.held = keep;
        self.metrics.pod_events_waiting.set(self.held.len() as i64);
    }

    /// A held event goes out as it is: with its pod if it came, else flagged.
    fn finish(&self, mut h: Held, enriched: bool) {
        if enriched || !self.enrich(&mut h.ev) {
            flag_pod_unknown(&mut h.ev);
            self.metrics.pod_events_unresolved.inc();
        } else {
            self.metrics.pod_events_resolved.inc();
        }
        strip_stubs(&mut h.ev);
        self.emit_counted(&h.ev, h.policy.as_ref());
    }

    /// Sends out everything still held (shutdown).
    pub fn flush_held(&mut self) {
        for h in std::mem::take(&mut self.held) {
            self.finish(h, false);
        }
        self.metrics.pod_events_waiting.set(0);
    }

    /// Events currently waiting for their pod.
    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    fn emit_counted(&self, ev: &GetEventsResponse, policy: Option<&(String, String)>) {
        if self.emit(ev)
            && let Some((name, hook)) = policy
        {
            self.metrics.count_policy_event(name, hook);
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

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.flush_held();
    }
}

/// Adds `podUnknown` to the event's process flags.
fn flag_pod_unknown(ev: &mut GetEventsResponse) {
    if let Some((Some(p), _, _)) = ev.processes_mut() {
        let mut f: ProcessFlags = p.flags.parse().unwrap_or_default();
        f.insert(ProcessFlags::POD_UNKNOWN);
        p.flags = f.to_string();
    }
}

/// Removes placeholder pods (a container pid with no pod behind it) before an event goes out.
fn strip_stubs(ev: &mut GetEventsResponse) {
    if let Some((process, parent, ancestors)) = ev.processes_mut() {
        for p in process
            .iter_mut()
            .chain(parent.iter_mut())
            .chain(ancestors.iter_mut())
        {
            if p.pod.as_ref().is_some_and(|pod| pod.name.is_empty()) {
                p.pod = None;
            }
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
            nspid: 0,
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

    fn in_container(pid: u32, ktime: u64, id: &str) -> Record {
        let mut r = exec(pid, 0, ktime, 0);
        if let Record::Exec(e) = &mut r {
            e.cgroup_name = format!("cri-containerd-{id}.scope");
            e.nspid = 7;
        }
        r
    }

    fn pod_of(id: &str, name: &str, uid: &str) -> crate::pods::Pod {
        crate::pods::Pod {
            namespace: "default".into(),
            name: name.into(),
            uid: uid.into(),
            containers: vec![crate::pods::Container {
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
