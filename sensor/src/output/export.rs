//! Event export: a bounded queue in front of a writer thread that appends JSON lines to a file
//! (rotated by size, see [`crate::output::export_file`]) and/or standard output.
//!
//! The pipeline never waits for the exporters: when the queue is full the event is dropped and
//! counted (`vigil_observer_ringbuf_queue_events_lost_total`). Nothing is lost silently: the
//! drop rides with the next event that fits in the queue, and each output writes a loss marker
//! (`rate_limit_info`) just before that event, at the place of the gap. Losses of earlier stages
//! come as batches ([`ExportQueue::push_loss`]) and are written the same way. A line the file
//! could not take (disk full, file deleted under it) is reported by a marker in the file as soon
//! as it can be written again.

use std::io::{self, Write};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use vigil_api::events::{LossKind, LossReason, LossStage};

pub use crate::output::export_file::RotatingFile;
use crate::output::export_file::{Found, Tag};
use crate::output::loss::{LossBatch, LossKey, Stage, StageCounters, now_ns};
use crate::output::metrics::{Metrics, OutputStageLabel, ReasonLabel};

/// How long the writer waits for an event before it checks the file and retries what is
/// pending (markers, buffered lines) on its own.
pub const IDLE_CHECK_MS: u64 = 200;

/// Where events go.
#[derive(Debug, Default)]
pub struct Sinks {
    pub file: Option<RotatingFile>,
    pub stdout: bool,
}

/// What the queue carries.
#[derive(Debug)]
pub enum Item {
    /// One serialized event, with the losses to report just before it.
    Event {
        line: String,
        kind: LossKind,
        policy: Option<Arc<str>>,
        lost_before: Option<Box<LossBatch>>,
    },
    /// Losses to report now.
    Loss(Box<LossBatch>),
}

/// The sending side handed to the pipeline.
#[derive(Debug, Clone)]
pub struct ExportQueue {
    tx: SyncSender<Item>,
    metrics: Arc<Metrics>,
    /// Losses (of this queue, or handed in) waiting for room in the queue.
    pending: Arc<Mutex<LossBatch>>,
    queued: Arc<AtomicI64>,
    /// The stage counters of every output the queue feeds.
    stages: Arc<Vec<StageCounters>>,
}

impl ExportQueue {
    fn new(
        tx: SyncSender<Item>,
        metrics: Arc<Metrics>,
        stages: Vec<StageCounters>,
    ) -> (Self, Arc<AtomicI64>) {
        let queued = Arc::new(AtomicI64::new(0));
        (
            ExportQueue {
                tx,
                metrics,
                pending: Arc::new(Mutex::new(LossBatch::default())),
                queued: queued.clone(),
                stages: Arc::new(stages),
            },
            queued,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LossBatch> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Events queued and not yet taken by the writer.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed).max(0) as usize
    }

    /// Queues one serialized event of `kind` (and `policy`); drops and counts it when the queue
    /// is full.
    pub fn push(&self, line: String, kind: LossKind, policy: Option<Arc<str>>) {
        for s in self.stages.iter() {
            s.input.inc();
        }
        let mut pending = self.lock();
        let lost_before = (!pending.is_empty()).then(|| Box::new(pending.take()));
        let item = Item::Event {
            line,
            kind,
            policy,
            lost_before,
        };
        match self.tx.try_send(item) {
            Ok(()) => {
                self.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(item)) | Err(TrySendError::Disconnected(item)) => {
                let Item::Event {
                    kind,
                    policy,
                    lost_before,
                    ..
                } = item
                else {
                    unreachable!("an event was sent")
                };
                if let Some(b) = lost_before {
                    pending.merge(*b);
                }
                pending.add_now(
                    LossKey::new(LossStage::Export, LossReason::QueueFull, kind)
                        .with_policy(policy),
                    1,
                );
                self.metrics.export_queue_lost.inc();
                for s in self.stages.iter() {
                    s.lost.inc();
                }
            }
        }
    }

    /// Hands losses of an earlier stage to the outputs (sent as soon as the queue has room).
    pub fn push_loss(&self, batch: LossBatch) {
        if batch.is_empty() {
            return;
        }
        self.lock().merge(batch);
        self.flush_pending();
    }

    /// Sends what is pending, waiting for room (shutdown: the writer is draining).
    pub fn finish(&self) {
        let b = self.lock().take();
        if !b.is_empty() {
            let _ = self.tx.send(Item::Loss(Box::new(b)));
        }
    }

    /// Sends what is pending on its own when the queue has room (called on a timer, so a gap
    /// is marked even when no event follows it).
    pub fn flush_pending(&self) {
        let mut pending = self.lock();
        if pending.is_empty() {
            return;
        }
        let b = Box::new(pending.take());
        if let Err(TrySendError::Full(Item::Loss(b)) | TrySendError::Disconnected(Item::Loss(b))) =
            self.tx.try_send(Item::Loss(b))
        {
            pending.merge(*b);
        }
    }
}

#[cfg(test)]
impl ExportQueue {
    /// A queue whose receiving end the test reads directly.
    pub fn for_test(capacity: usize, metrics: Arc<Metrics>) -> (Self, Receiver<Item>) {
        let (tx, rx) = mpsc::sync_channel(capacity);
        (Self::new(tx, metrics, vec![]).0, rx)
    }
}

/// Starts the writer thread. Dropping every `ExportQueue` ends it after the queue is drained
/// and the file flushed; join the handle to wait for that.
pub fn start(
    sinks: Sinks,
    capacity: usize,
    node_name: String,
    metrics: Arc<Metrics>,
) -> (ExportQueue, JoinHandle<()>) {
    let (tx, rx) = mpsc::sync_channel(capacity);
    let mut outputs: Vec<Output> = Vec::new();
    if let Some(f) = sinks.file {
        outputs.push(Output::new(Dest::File(f), &metrics));
    }
    if sinks.stdout {
        outputs.push(Output::new(Dest::Stdout(io::stdout()), &metrics));
    }
    let stages = outputs.iter().map(|o| o.stage.clone()).collect();
    let (queue, queued) = ExportQueue::new(tx, metrics.clone(), stages);
    let m = metrics.clone();
    let handle = std::thread::Builder::new()
        .name("vigil-export".into())
        .spawn(move || {
            let mut w = Writer {
                outputs,
                node_name,
                metrics: m,
                queued,
                pause: busy_pause(capacity),
            };
            w.run(rx);
        })
        .expect("spawn export thread");
    (queue, handle)
}

enum Dest {
    File(RotatingFile),
    Stdout(io::Stdout),
}

/// One output and its own view of what it lost.
struct Output {
    dest: Dest,
    /// Losses not yet written to this output.
    pending: LossBatch,
    stage: StageCounters,
    name: &'static str,
}

impl Output {
    fn new(dest: Dest, metrics: &Metrics) -> Self {
        let (stage, name) = match &dest {
            Dest::File(_) => (Stage::Export, "file"),
            Dest::Stdout(_) => (Stage::Stdout, "stdout"),
        };
        Output {
            dest,
            pending: LossBatch::default(),
            stage: metrics.stages.of(stage),
            name,
        }
    }

    /// Accepts a line whole, or refuses it whole.
    fn write(&mut self, line: &str, tag: Tag) -> io::Result<Option<Tag>> {
        match &mut self.dest {
            Dest::File(f) => f.write_line(line, tag).map(|()| None),
            Dest::Stdout(s) => {
                let mut out = s.lock();
                out.write_all(line.as_bytes())
                    .and_then(|()| out.write_all(b"\n"))
                    .map(|()| Some(tag))
            }
        }
    }
}

struct Writer {
    outputs: Vec<Output>,
    node_name: String,
    metrics: Arc<Metrics>,
    queued: Arc<AtomicI64>,
    /// How long the writer lets events gather after a busy drain (see [`busy_pause`]).
    pause: Duration,
}

/// How long the writer sleeps after writing what it found queued, before it waits for the next
/// event: meanwhile events gather in the queue without waking it, so under load it takes them
/// by the hundred, with one flush and one file check for all, instead of being woken (a futex
/// wake and two context switches) for each. At most 1 ms, and short enough that the queue
/// fills only past 8 million events/s; none for small queues.
fn busy_pause(capacity: usize) -> Duration {
    if capacity < 4096 {
        Duration::ZERO
    } else {
        Duration::from_micros((capacity as u64 / 8).min(1000))
    }
}

impl Writer {
    fn run(&mut self, rx: Receiver<Item>) {
        loop {
            match rx.recv_timeout(Duration::from_millis(IDLE_CHECK_MS)) {
                Ok(item) => {
                    self.take(item);
                    // Batch whatever is already queued, then flush once the queue is empty, so
                    // readers see events promptly without a write syscall per event under load.
                    while let Ok(item) = rx.try_recv() {
                        self.take(item);
                    }
                    self.settle();
                    if !self.pause.is_zero() {
                        std::thread::sleep(self.pause);
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.settle(),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.settle();
        self.settle();
        for o in &self.outputs {
            let left = o.pending.total();
            let buffered = match &o.dest {
                Dest::File(f) => f.buffered(),
                Dest::Stdout(_) => 0,
            };
            if left > 0 || buffered > 0 {
                tracing::error!(
                    output = o.name,
                    unreported_losses = left,
                    unwritten_lines = buffered,
                    "export stopped with lines it could not write"
                );
            }
        }
    }

    fn take(&mut self, item: Item) {
        match item {
            Item::Loss(b) => {
                for o in &mut self.outputs {
                    o.pending.merge((*b).clone());
                    write_markers(o, &self.node_name, &self.metrics);
                }
            }
            Item::Event {
                line,
                kind,
                policy,
                lost_before,
            } => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                for o in &mut self.outputs {
                    if let Some(b) = &lost_before {
                        o.pending.merge((**b).clone());
                    }
                    // Markers go before the event; while they cannot, neither can it.
                    let written = write_markers(o, &self.node_name, &self.metrics)
                        && match o.write(&line, Tag::Event(kind, policy.clone())) {
                            Ok(done) => {
                                if let Some(tag) = done {
                                    account(o, &[tag], &self.metrics);
                                }
                                true
                            }
                            Err(e) => {
                                tracing::debug!(output = o.name, "export write failed: {e}");
                                false
                            }
                        };
                    if !written {
                        self.metrics.export_errors.inc();
                        o.stage.lost.inc();
                        o.pending.add_now(
                            LossKey::new(LossStage::Export, LossReason::WriteFailed, kind)
                                .with_policy(policy.clone()),
                            1,
                        );
                    }
                }
            }
        }
    }

    /// Flushes, checks the file, settles what is now known written or lost, writes pending
    /// markers.
    fn settle(&mut self) {
        for o in &mut self.outputs {
            let checked = match &mut o.dest {
                Dest::File(f) => {
                    // The check comes first: lines must not go to a file that is gone.
                    let c = f.check();
                    if let Err(e) = f.flush() {
                        tracing::debug!("export file write failed: {e}");
                    }
                    Some(c)
                }
                Dest::Stdout(s) => {
                    let _ = s.flush();
                    None
                }
            };
            if let Some(c) = checked {
                account(o, &c.confirmed, &self.metrics);
                lost_with_file(o, c.lost);
                if let Some(found) = c.found.filter(|f| *f != Found::InPlace) {
                    let reason = match found {
                        Found::Renamed => "renamed",
                        Found::Deleted => "deleted",
                        _ => "truncated",
                    };
                    tracing::warn!(
                        "the export file was {reason} by another program; writing goes on at its path"
                    );
                    self.metrics
                        .export_file_reopened
                        .get_or_create(&ReasonLabel {
                            reason: reason.into(),
                        })
                        .inc();
                }
            }
            if write_markers(o, &self.node_name, &self.metrics)
                && let Dest::File(f) = &mut o.dest
            {
                let _ = f.flush();
            }
            let inside = match &o.dest {
                Dest::File(f) => f.buffered() + f.unconfirmed(),
                Dest::Stdout(_) => 0,
            };
            o.stage
                .inside
                .set(self.queued.load(Ordering::Relaxed) + inside as i64);
        }
    }
}

/// Lines that went down with a deleted file: events become losses, markers report again.
fn lost_with_file(o: &mut Output, tags: Vec<Tag>) {
    for tag in tags {
        match tag {
            Tag::Event(kind, policy) => {
                o.stage.lost.inc();
                o.pending.add_now(
                    LossKey::new(LossStage::Export, LossReason::FileDeleted, kind)
                        .with_policy(policy),
                    1,
                );
            }
            Tag::Marker(b) => o.pending.merge(b),
        }
    }
}

/// Counts lines known written: events as out, markers as reported.
fn account(o: &Output, tags: &[Tag], metrics: &Metrics) {
    for tag in tags {
        match tag {
            Tag::Event(..) => {
                o.stage.out.inc();
                metrics.exported.inc();
            }
            Tag::Marker(b) => {
                for (k, s) in b.entries() {
                    metrics
                        .loss_reported
                        .get_or_create(&OutputStageLabel {
                            output: o.name.into(),
                            stage: k.stage.as_str().into(),
                        })
                        .inc_by(s.count);
                }
            }
        }
    }
}

/// Writes the output's pending markers; true when none is left.
fn write_markers(o: &mut Output, node_name: &str, metrics: &Metrics) -> bool {
    if o.pending.is_empty() {
        return true;
    }
    let pending = o.pending.take();
    let now = now_ns();
    let mut left = LossBatch::default();
    let mut failed = false;
    for (key, span) in pending.entries() {
        let mut one = LossBatch::default();
        one.add(key.clone(), span.count, span.from_ns, span.to_ns);
        if failed {
            left.merge(one);
            continue;
        }
        let marker = one.markers(node_name, now).remove(0);
        let line = match marker.to_json() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("cannot encode a loss marker: {e}");
                left.merge(one);
                failed = true;
                continue;
            }
        };
        match o.write(&line, Tag::Marker(one.clone())) {
            Ok(done) => {
                if let Some(tag) = done {
                    account(o, &[tag], metrics);
                }
            }
            Err(_) => {
                left.merge(one);
                failed = true;
            }
        }
    }
    o.pending = left;
    !failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;
    use vigil_api::events::{GetEventsResponse, Loss};

    fn lines_of(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn stage_value(m: &Metrics, stage: &str, result: &str) -> u64 {
        let text = crate::output::metrics::render(&m.registry());
        let want = format!("vigil_stage_events_total{{stage=\"{stage}\",result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&want)?.parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn full_queue_drops_counts_and_marks_the_gap() {
        let metrics = Arc::new(Metrics::new());
        let (q, rx) = ExportQueue::for_test(2, metrics.clone());
        for i in 0..5 {
            q.push(format!("{i}"), LossKind::Hook, Some("pol".into()));
        }
        assert_eq!(metrics.export_queue_lost.get(), 3);
        // The writer takes two; the next event carries the three lost before it.
        let got: Vec<Item> = rx.try_iter().collect();
        assert_eq!(got.len(), 2);
        q.push("5".into(), LossKind::Exec, None);
        let Some(Item::Event {
            line, lost_before, ..
        }) = rx.try_iter().next()
        else {
            panic!("an event")
        };
        assert_eq!(line, "5");
        let b = lost_before.expect("the gap rides with the next event");
        assert_eq!(b.total(), 3);
        let (k, _) = b.entries().next().unwrap();
        assert_eq!(
            (k.stage, k.reason, k.kind, k.policy.as_deref()),
            (
                LossStage::Export,
                LossReason::QueueFull,
                LossKind::Hook,
                Some("pol")
            )
        );
    }

    #[test]
    fn writer_drains_flushes_and_accounts_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        let metrics = Arc::new(Metrics::new());
        let sinks = Sinks {
            file: Some(RotatingFile::open(&path, 1 << 20, 1).unwrap()),
            stdout: false,
        };
        let (q, handle) = start(sinks, 1000, "n".into(), metrics.clone());
        for i in 0..500 {
            q.push(format!("{{\"i\":{i}}}"), LossKind::Exec, None);
        }
        let mut upstream = LossBatch::default();
        upstream.add_now(
            LossKey::new(
                LossStage::Kernel,
                LossReason::RingBufferFull,
                LossKind::Fork,
            ),
            7,
        );
        q.push_loss(upstream);
        q.push("{\"i\":500}".into(), LossKind::Exec, None);
        drop(q);
        handle.join().unwrap();
        let lines = lines_of(&path);
        assert_eq!(lines.len(), 502);
        let marker = GetEventsResponse::from_json(&lines[500]).unwrap();
        let loss = Loss::from_event(&marker).unwrap().unwrap();
        assert_eq!((loss.count, loss.stage), (7, Some(LossStage::Kernel)));
        assert_eq!(metrics.exported.get(), 501);
        assert_eq!(stage_value(&metrics, "export", "in"), 501);
        assert_eq!(stage_value(&metrics, "export", "out"), 501);
        assert_eq!(stage_value(&metrics, "export", "lost"), 0);
    }
}
