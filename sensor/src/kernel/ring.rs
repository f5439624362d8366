//! Reading the ring buffer, and the kernel's counters around it: every record goes to the
//! pipeline, and what the kernel could not write is reported in the stream right after the
//! records read before the loss was noticed.

use std::path::Path;
use std::sync::Arc;

use vigil_sensor_bpf::abi::{self, counters};

use crate::hooks::engine::Engine;
use crate::kernel::bpf::ProcessBpf;
use crate::kernel::clock::BootClock;
use crate::kernel::ringbuf::RingReader;
use crate::output::loss::{KernelCounts, KernelLoss, LossBatch, Stage, StageCounters, now_ns};
use crate::output::metrics::{Metrics, RecordLabel};
use crate::process::heal::{TaskIter, procfs_tasks};
use crate::process::pipeline::Pipeline;

/// Reads every record the ring buffer holds; returns how many.
pub fn drain(
    ring: &mut RingReader,
    pipeline: &mut Pipeline,
    metrics: &Metrics,
    kernel: &StageCounters,
) -> u64 {
    let n = ring.drain(|item| {
        metrics.ringbuf_received.inc();
        kernel.out.inc();
        // A hook record's attempt is known from its arrival (its loss from the counters).
        if item.get(..4) == Some(&abi::MSG_HOOK.to_ne_bytes()[..]) {
            kernel.input.inc();
        }
        pipeline.handle_bytes(item);
    });
    pipeline.release(std::time::Instant::now());
    n
}

/// Mirrors the kernel's per-CPU counters into the metrics as deltas, and turns ring-buffer
/// losses into loss batches.
pub struct KernelPoller {
    last: [u64; counters::NUM as usize],
    loss: KernelLoss,
    /// The global hook-loss counter moved at one of the last two polls: policy counters are
    /// read (to attribute, then to settle).
    hook_moving: u8,
    stage: StageCounters,
}

/// What one poll found.
#[derive(Debug, Default)]
pub struct Polled {
    pub lost: LossBatch,
    /// Exec, fork or exit records were lost: the process cache may have holes.
    pub process_records_lost: bool,
}

impl KernelPoller {
    pub fn new(metrics: &Metrics) -> Self {
        KernelPoller {
            last: [0; counters::NUM as usize],
            loss: KernelLoss::new(now_ns()),
            hook_moving: 0,
            stage: metrics.stages.of(Stage::Kernel),
        }
    }

    /// The kernel stage's counters.
    pub fn stage(&self) -> &StageCounters {
        &self.stage
    }

    /// Reads the loss and seen counters (one syscall each; after every drain, so that the kernel
    /// stage's `in` and `out` move together even while processes start all the time); with
    /// `all`, the others too (every second).
    pub fn poll(
        &mut self,
        bpf: &ProcessBpf,
        engine: Option<&Arc<Engine>>,
        metrics: &Metrics,
        all: bool,
    ) -> Polled {
        let mut now = self.last;
        let losses = [
            counters::RB_LOST_EXEC,
            counters::RB_LOST_FORK,
            counters::RB_LOST_EXIT,
            counters::RB_LOST_HOOK,
            counters::EXEC_SEEN,
            counters::FORK_SEEN,
            counters::EXIT_SEEN,
        ];
        let others = [counters::PROC_TABLE_FULL, counters::PENDING_FULL];
        let read: &[u32] = if all { &others } else { &[] };
        for i in losses.iter().chain(read) {
            now[*i as usize] = bpf.counter(*i).max(self.last[*i as usize]);
        }
        let delta = |i: u32| now[i as usize] - self.last[i as usize];
        for (index, record) in [
            (counters::RB_LOST_EXEC, "exec"),
            (counters::RB_LOST_FORK, "fork"),
            (counters::RB_LOST_EXIT, "exit"),
            (counters::RB_LOST_HOOK, "hook"),
        ] {
            let d = delta(index);
            if d > 0 {
                metrics
                    .ringbuf_lost
                    .get_or_create(&RecordLabel {
                        record: record.into(),
                    })
                    .inc_by(d);
                self.stage.lost.inc_by(d);
            }
        }
        metrics
            .process_table_insert_failures
            .inc_by(delta(counters::PROC_TABLE_FULL));
        metrics
            .hook_return_state_lost
            .inc_by(delta(counters::PENDING_FULL));
        self.stage.input.inc_by(
            delta(counters::EXEC_SEEN)
                + delta(counters::FORK_SEEN)
                + delta(counters::EXIT_SEEN)
                + delta(counters::RB_LOST_HOOK),
        );
        if delta(counters::RB_LOST_HOOK) > 0 {
            self.hook_moving = 2;
        }
        let policies = (self.hook_moving > 0).then(|| {
            self.hook_moving -= 1;
            engine
                .map(|e| {
                    e.stats()
                        .into_iter()
                        .map(|(k, s)| (k.to_string(), s.lost))
                        .collect()
                })
                .unwrap_or_default()
        });
        let process_records_lost = delta(counters::RB_LOST_EXEC)
            + delta(counters::RB_LOST_FORK)
            + delta(counters::RB_LOST_EXIT)
            > 0;
        self.last = now;
        let lost = self.loss.poll(
            &KernelCounts {
                exec: now[counters::RB_LOST_EXEC as usize],
                fork: now[counters::RB_LOST_FORK as usize],
                exit: now[counters::RB_LOST_EXIT as usize],
                hook: now[counters::RB_LOST_HOOK as usize],
                policies,
            },
            now_ns(),
        );
        Polled {
            lost,
            process_records_lost,
        }
    }
}

/// Heals the process cache after exec, fork or exit records were lost: empties the ring buffer,
/// then reads the kernel's running processes (with the task iterator, else from /proc) and
/// hands them to [`Pipeline::heal`]. `VIGIL_TEST_HEAL_SOURCE=procfs` forces the /proc walk
/// (a test knob for the path of kernels without iterators).
pub fn heal(
    ring: &mut RingReader,
    pipeline: &mut Pipeline,
    metrics: &Metrics,
    kernel: &StageCounters,
    bpf: &ProcessBpf,
    iter: Option<&mut TaskIter>,
) {
    drain(ring, pipeline, metrics, kernel);
    let drained_at = BootClock::boot_now();
    let forced = std::env::var("VIGIL_TEST_HEAL_SOURCE").is_ok_and(|v| v == "procfs");
    let from_iter = match iter.filter(|_| !forced).map(|it| it.tasks()) {
        Some(Ok(tasks)) => Some(tasks),
        Some(Err(e)) => {
            tracing::warn!("task iterator failed, walking /proc instead: {e}");
            None
        }
        None => None,
    };
    let proc_root = Path::new("/proc");
    let (tasks, source) = match from_iter {
        Some(t) => (t, "iterator"),
        None => (
            procfs_tasks(proc_root, |pid| bpf.procs.get(&pid, 0).ok()),
            "procfs",
        ),
    };
    let r = pipeline.heal(&tasks, drained_at, proc_root, source);
    tracing::info!(
        source,
        running = tasks.len(),
        added = r.added.len(),
        gone = r.expire_candidates,
        "process cache healed after ring-buffer loss"
    );
}
