//! Turns decoded kernel records into events: keeps the process cache current, attaches parents,
//! and hands serialized events to the export queue.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use vigil_api::events::{
    self, EventKind, GetEventsResponse, LossKind, LossReason, LossStage, Process, ProcessFlags,
};
use vigil_sensor_bpf::abi;

use crate::grpc::server::Broadcaster;
use crate::hooks::event as hook_event;
use crate::hooks::meta::{HookMeta, HookRegistry};
use crate::k8s::pods::{EventPod, PodInventory};
use crate::kernel::decode::{ExecRecord, HookRecord, Record, decode};
use crate::output::event_json::LineEncoder;
use crate::output::export::ExportQueue;
use crate::output::loss::{LossBatch, LossKey, Stage, StageCounters, kind_of};
use crate::output::metrics::Metrics;
use crate::process::builder::{EventBuilder, KERNEL_KTIME};
use crate::process::process_cache::{ProcKey, ProcessCache};
use crate::process::procfs_scan::ScannedProc;
use crate::process::thread_variants::ThreadVariants;

/// The `policy_name` of the events Vigil reports about itself.
pub const SELF_POLICY: &str = "vigil-self-protection";
/// The `function_name` of the event for pins changed while no sensor ran.
pub const PINS_CHANGED: &str = "vigil_pins_changed";

pub struct Pipeline {
    pub builder: EventBuilder,
    pub cache: ProcessCache,
    queue: ExportQueue,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) kernel_key: ProcKey,
    decode_stage: StageCounters,
    pod_stage: StageCounters,
    broadcaster: Option<Arc<Broadcaster>>,
    hooks: Option<Arc<HookRegistry>>,
    pods: Option<Arc<PodInventory>>,
    wait: PodWait,
    held: VecDeque<Held>,
    /// Inventory generation seen by the last release pass.
    pods_seen: u64,
    /// Live cache entries the last heal did not find running, expired after the next drain
    /// unless their exit record came meanwhile (see [`crate::process::heal`]).
    pub(crate) heal_expire: Vec<ProcKey>,
    /// Per hook slot: the generation and the policy of the hook last seen there.
    policies: Vec<Option<(u32, PolicyRef)>>,
    /// `vigil_events_total` per event kind, looked up once.
    kind_counters: Vec<(EventKind, Counter)>,
    /// Writes the JSON lines.
    encoder: LineEncoder,
    /// Hook events' processes as other threads than the cached one see them.
    threads: ThreadVariants,
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
    policy: Option<PolicyRef>,
}

/// What the pipeline knows when a hook record arrives: the hook's metadata, the process it fired
/// in and that process's parent (as cached; `None` when not known).
pub(crate) struct HookContext {
    pub(crate) meta: Arc<HookMeta>,
    pub(crate) process: Option<Arc<Process>>,
    pub(crate) parent: Option<Arc<Process>>,
}

/// The policy of a hook event: counted per policy and hook when it goes out, named in loss
/// markers if it is lost further on. Made once per loaded hook (see [`Pipeline::policy_of`]).
#[derive(Debug, Clone)]
pub(crate) struct PolicyRef {
    /// `vigil_policy_events_total{policy, hook}` of the hook.
    events: Counter,
    /// `namespace/name`, as loss markers name it.
    pub(crate) key: Arc<str>,
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
            decode_stage: metrics.stages.of(Stage::Decode),
            pod_stage: metrics.stages.of(Stage::PodWait),
            metrics,
            kernel_key,
            broadcaster: None,
            hooks: None,
            pods: None,
            wait: PodWait::default(),
            held: VecDeque::new(),
            pods_seen: 0,
            heal_expire: Vec::new(),
            policies: Vec::new(),
            kind_counters: Vec::new(),
            encoder: LineEncoder::default(),
            threads: ThreadVariants::default(),
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

    /// One record as read from the ring buffer: decoded and handled, or reported lost (stage
    /// `decode`) at this point of the stream.
    pub fn handle_bytes(&mut self, bytes: &[u8]) {
        self.decode_stage.input.inc();
        match decode(bytes) {
            Ok(record) => {
                if self.handle(record) {
                    self.decode_stage.out.inc();
                }
            }
            Err(e) => {
                self.metrics.decode_errors.inc();
                tracing::warn!("{e}");
                let kind = match bytes
                    .get(..4)
                    .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                {
                    Some(abi::MSG_EXEC) => LossKind::Exec,
                    Some(abi::MSG_FORK) => LossKind::Fork,
                    Some(abi::MSG_EXIT) => LossKind::Exit,
                    Some(abi::MSG_HOOK | abi::MSG_PROTECT) => LossKind::Hook,
                    _ => LossKind::Record,
                };
                self.decode_lost(LossReason::DecodeError, kind, None);
            }
        }
    }

    /// One decoded record; false when it had to be dropped (its hook is gone).
    pub fn handle(&mut self, record: Record) -> bool {
        let kept = match record {
            Record::Exec(r) => {
                self.on_exec(&r);
                true
            }
            Record::Fork(f) => {
                self.on_fork(f.pid, f.ktime, f.ppid, f.parent_ktime);
                true
            }
            Record::Exit(x) => {
                self.on_exit(x.pid, x.ktime, x.exit_code, x.hdr.time);
                true
            }
            Record::Hook(h) => self.on_hook(&h),
            Record::Protect(r) => {
                self.on_protect(&r);
                true
            }
        };
        self.update_cache_metrics();
        kept
    }

    /// A record lost in the decode stage, reported at once.
    fn decode_lost(&mut self, reason: LossReason, kind: LossKind, policy: Option<Arc<str>>) {
        self.decode_stage.lost.inc();
        let mut b = LossBatch::default();
        b.add_now(
            LossKey::new(LossStage::Decode, reason, kind).with_policy(policy),
            1,
        );
        self.report_loss(b);
    }

    /// Puts loss markers for `batch` into the stream here: to the exporters and to every
    /// GetEvents client that could have wanted what was lost.
    pub fn report_loss(&mut self, batch: LossBatch) {
        if batch.is_empty() {
            return;
        }
        self.metrics
            .loss_markers
            .inc_by(batch.entries().count() as u64);
        if let Some(b) = &self.broadcaster {
            b.publish_loss(&batch, &self.builder.node_name);
        }
        self.queue.push_loss(batch);
    }

    /// Sends losses the export queue holds for lack of room (called on the drain timer).
    pub fn flush_losses(&self) {
        self.queue.flush_pending();
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
        if let (Some(inv), Some(id)) = (
            &self.pods,
            crate::process::container::container_id(&r.cgroup_name),
        ) {
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
    fn on_hook(&mut self, r: &HookRecord) -> bool {
        let Some((event, policy)) = self.hook_event(r) else {
            self.metrics.hook_records_orphaned.inc();
            self.decode_lost(LossReason::HookUnloaded, LossKind::Hook, None);
            return false;
        };
        self.dispatch(event, Some(policy));
        true
    }

    /// The hook of `r` and the cached process and parent it fired in; `None` when the hook is
    /// gone. A process the cache does not know is counted as a miss (and `None` here).
    pub(crate) fn hook_context(&mut self, r: &HookRecord) -> Option<HookContext> {
        let meta = self.hooks.as_ref()?.get(r.hook, r.generation)?;
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
                    .map(|e| e.process.clone());
                (Some(process), parent)
            }
            None => {
                self.metrics.process_cache_misses.inc();
                (None, None)
            }
        };
        Some(HookContext {
            meta,
            process,
            parent,
        })
    }

    /// The event of hook record `r` and its policy; `None` when its hook is gone.
    pub(crate) fn hook_event(&mut self, r: &HookRecord) -> Option<(GetEventsResponse, PolicyRef)> {
        let HookContext {
            meta,
            process,
            parent,
        } = self.hook_context(r)?;
        let process = match process {
            Some(p) => self.threads.for_thread(&p, r.tid),
            None => self.builder.unknown_process(r.pid, r.ktime).into(),
        };
        let built = hook_event::build(&self.builder, r, &meta, process, parent);
        if built.arg_errors > 0 {
            self.metrics.hook_arg_errors.inc_by(built.arg_errors);
        }
        let policy = self.policy_of(r, &meta);
        Some((built.event, policy))
    }

    /// The policy of the hook `r` came from, made once per slot and generation (a slot's
    /// generation changes whenever another hook is loaded there).
    fn policy_of(&mut self, r: &HookRecord, meta: &HookMeta) -> PolicyRef {
        let slot = r.hook as usize;
        if let Some(Some((generation, p))) = self.policies.get(slot)
            && *generation == r.generation
        {
            return p.clone();
        }
        let key = if meta.policy_namespace.is_empty() {
            meta.policy_name.clone()
        } else {
            format!("{}/{}", meta.policy_namespace, meta.policy_name)
        };
        let policy = PolicyRef {
            events: self
                .metrics
                .policy_event_counter(&meta.policy_name, &hook_event::hook_label(meta)),
            key: Arc::from(key),
        };
        if slot < abi::MAX_HOOKS {
            if self.policies.len() <= slot {
                self.policies.resize(slot + 1, None);
            }
            self.policies[slot] = Some((r.generation, policy.clone()));
        }
        policy
    }

    /// The JSON line of `ev`, as the pipeline writes it.
    pub(crate) fn encode(
        &mut self,
        ev: &mut GetEventsResponse,
    ) -> Result<String, vigil_api::events::EventError> {
        self.encoder.encode(ev)
    }

    /// `vigil_events_total{type}` of `kind`.
    fn kind_counter(&mut self, kind: EventKind) -> &Counter {
        let i = match self.kind_counters.iter().position(|(k, _)| *k == kind) {
            Some(i) => i,
            None => {
                let c = self.metrics.event_counter(kind.field_name());
                self.kind_counters.push((kind, c));
                self.kind_counters.len() - 1
            }
        };
        &self.kind_counters[i].1
    }

    /// Reports, as a `process_lsm` event of the sensor's own process, that the pins of the
    /// previous generation changed while no sensor ran (`pin_manifest.rs`): one argument per
    /// change.
    pub fn report_pins_changed(&mut self, changes: &[String]) {
        let pid = std::process::id();
        let process = self
            .cache
            .live(pid)
            .and_then(|k| self.cache.get(&k))
            .map(|e| e.process.clone())
            .unwrap_or_else(|| self.builder.unknown_process(pid, 0).into());
        let ev = GetEventsResponse::new(
            events::ProcessLsm {
                process: Some(process),
                function_name: PINS_CHANGED.into(),
                policy_name: SELF_POLICY.into(),
                message: "Vigil's pinned objects changed while no sensor ran".into(),
                args: changes
                    .iter()
                    .map(|c| events::KprobeArgument::new(events::ArgValue::String(c.clone())))
                    .collect(),
                action: events::KprobeAction::Post,
                ..Default::default()
            },
            self.builder.node_name.clone(),
            events::format_time_ns(crate::output::loss::now_ns()),
        );
        self.dispatch(ev, None);
    }

    /// Self-protection refused an operation: a `process_lsm` event of the caller (policy
    /// `vigil-self-protection`, action Override), counted by hook.
    fn on_protect(&mut self, r: &abi::ProtectRec) {
        let hook = crate::kernel::protect::hook_name(r.hook);
        self.metrics
            .self_protection_refusals
            .get_or_create(&crate::output::metrics::HookLabel { hook: hook.into() })
            .inc();
        let key = self.cache.resolve(r.pid, r.ktime);
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
        let ev = hook_event::protect_event(&self.builder, r, process, parent);
        self.dispatch(ev, None);
    }

    /// Keeps the container's pid of a containerised process until its pod is known: the pod
    /// itself is filled in when an event goes out (so relabels and late pods are seen).
    pub(crate) fn stub_pod(&self, p: &mut Process, nspid: u32) {
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
    pub(crate) fn dispatch(&mut self, mut ev: GetEventsResponse, policy: Option<PolicyRef>) {
        self.pod_stage.input.inc();
        if self.pods.is_none() {
            self.emit_counted(&mut ev, policy.as_ref());
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
            self.emit_counted(&mut ev, policy.as_ref());
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
        self.set_waiting();
    }

    fn set_waiting(&self) {
        self.metrics.pod_events_waiting.set(self.held.len() as i64);
        self.pod_stage.inside.set(self.held.len() as i64);
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
        // The process is shared with the cache and other events: it is copied only when its
        // pod changes here.
        let fill = |p: &mut Arc<Process>| -> bool {
            if p.docker.is_empty() {
                if p.pod.is_some() {
                    Arc::make_mut(p).pod = None;
                }
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
            let pod = Some(pod.event_pod(i, pid));
            if p.pod != pod {
                Arc::make_mut(p).pod = pod;
            }
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
                self.emit_counted(&mut h.ev, h.policy.as_ref());
            } else if now.duration_since(h.since) >= self.wait.max_wait {
                self.finish(h, true);
            } else {
                keep.push_back(h);
            }
        }
        self.held = keep;
        self.set_waiting();
    }

    /// A held event goes out as it is: with its pod if it came, else flagged.
    fn finish(&mut self, mut h: Held, enriched: bool) {
        if enriched || !self.enrich(&mut h.ev) {
            flag_pod_unknown(&mut h.ev);
            self.metrics.pod_events_unresolved.inc();
        } else {
            self.metrics.pod_events_resolved.inc();
        }
        strip_stubs(&mut h.ev);
        self.emit_counted(&mut h.ev, h.policy.as_ref());
    }

    /// Sends out everything still held (shutdown).
    pub fn flush_held(&mut self) {
        for h in std::mem::take(&mut self.held) {
            self.finish(h, false);
        }
        self.set_waiting();
    }

    /// Events currently waiting for their pod.
    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    fn emit_counted(&mut self, ev: &mut GetEventsResponse, policy: Option<&PolicyRef>) {
        if self.emit(ev, policy)
            && let Some(p) = policy
        {
            p.events.inc();
        }
    }

    /// Hands out an event the sensor itself raises (not from a ring-buffer record), such as a
    /// policy's budget demotion.
    pub fn emit_notice(&mut self, mut ev: GetEventsResponse) {
        self.emit(&mut ev, None);
    }

    /// Serializes and hands out one event; false when it could not be encoded (then it is
    /// reported lost).
    fn emit(&mut self, ev: &mut GetEventsResponse, policy: Option<&PolicyRef>) -> bool {
        let key = policy.map(|p| p.key.clone());
        match self.encoder.encode(ev) {
            Ok(line) => {
                if let Some(kind) = ev.kind() {
                    self.kind_counter(kind).inc();
                }
                self.pod_stage.out.inc();
                // The line is serialized once; gRPC clients get it converted once for all.
                if let Some(b) = &self.broadcaster {
                    b.publish(ev, &line, key.as_ref());
                }
                self.queue.push(line, kind_of(ev.kind()), key);
                true
            }
            Err(e) => {
                tracing::error!("cannot encode event: {e}");
                self.pod_stage.lost.inc();
                let mut b = LossBatch::default();
                b.add_now(
                    LossKey::new(
                        LossStage::Decode,
                        LossReason::EncodeError,
                        kind_of(ev.kind()),
                    )
                    .with_policy(key),
                    1,
                );
                self.report_loss(b);
                false
            }
        }
    }

    pub(crate) fn update_cache_metrics(&self) {
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
        self.queue.finish();
    }
}

/// Adds `podUnknown` to the event's process flags.
fn flag_pod_unknown(ev: &mut GetEventsResponse) {
    if let Some((Some(p), _, _)) = ev.processes_mut() {
        let mut f: ProcessFlags = p.flags.parse().unwrap_or_default();
        f.insert(ProcessFlags::POD_UNKNOWN);
        Arc::make_mut(p).flags = f.to_string();
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
                Arc::make_mut(p).pod = None;
            }
        }
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
