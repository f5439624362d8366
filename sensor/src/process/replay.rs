//! In-process replay of ring-buffer records through the sensor's user-space event path: what
//! the pipeline benchmark (`sensor/examples/pipeline_bench.rs`, `e2e/bench/pipeline.sh`,
//! `make bench`) times stage by stage, and what a unit test runs to check that every replayed
//! record becomes exactly one exported event.
//!
//! The workload is the file-open mix a policy like `examples/policies/file-access.yaml`
//! produces: one exec record per process, then `sys_openat` hook records with their path
//! argument, spread over those processes, byte for byte as the kernel writes them.

use std::io;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_api::events::LossKind;
use vigil_api::policy::ir::ArgType;
use vigil_sensor_bpf::abi;

use crate::config::{
    DEFAULT_EXPORT_QUEUE_SIZE, DEFAULT_GRPC_CLIENT_QUEUE_SIZE, DEFAULT_PROCESS_CACHE_SIZE,
};
use crate::grpc::server::Broadcaster;
use crate::hooks::meta::{ArgMeta, HookEventKind, HookMeta, HookRegistry};
use crate::k8s::pods::PodInventory;
use crate::kernel::clock::BootClock;
use crate::kernel::decode::{Record, decode};
use crate::kernel::record_bytes::{exec_bytes, hook_bytes, raw};
use crate::output::export::{self, RotatingFile, Sinks};
use crate::output::export_file::Tag;
use crate::output::metrics::Metrics;
use crate::process::builder::EventBuilder;
use crate::process::pipeline::{Pipeline, PodWait};

/// Hook slot and generation of the replayed policy's openat hook.
const SLOT: u32 = 7;
const GENERATION: u32 = 3;
/// Records handed to the pipeline between two looks at the export queue (one ring-buffer
/// drain's worth).
pub const BATCH: usize = 4096;
const NODE: &str = "bench-node";

/// Ring-buffer records to replay: exec records first, then hook records.
#[derive(Debug)]
pub struct Workload {
    /// Every record's bytes, back to back.
    bytes: Vec<u8>,
    execs: Vec<Range<usize>>,
    hooks: Vec<Range<usize>>,
}

impl Workload {
    /// `processes` exec records (a process tree under the `<kernel>` root), then
    /// `distinct_hooks` openat records of those processes, each with its own path and time.
    pub fn file_open_mix(processes: u32, distinct_hooks: usize) -> Self {
        let processes = processes.max(1);
        let mut bytes = Vec::new();
        let mut execs = Vec::new();
        let mut hooks = Vec::new();
        let mut push = |rec: Vec<u8>, to: &mut Vec<Range<usize>>| {
            let start = bytes.len();
            bytes.extend_from_slice(&rec);
            to.push(start..bytes.len());
        };
        let binaries = [
            "/usr/bin/cat",
            "/usr/bin/python3",
            "/usr/sbin/nginx",
            "/bin/bash",
        ];
        for i in 0..processes {
            let (pid, ktime) = process_id(i);
            // The first process is a child of the kernel root; each other one of an earlier one.
            let (ppid, parent_ktime) = if i == 0 {
                (0, 0)
            } else {
                process_id((i - 1) / 4)
            };
            let binary = binaries[i as usize % binaries.len()];
            let name = binary.rsplit('/').next().unwrap_or(binary);
            let args = format!("{name}\0--config\0/etc/vigil-demo/{i}.conf\0");
            let rec = abi::Exec {
                hdr: abi::MsgHeader {
                    time: ktime,
                    ..Default::default()
                },
                pid,
                tid: pid,
                ppid,
                ktime,
                parent_ktime,
                creds: abi::Creds {
                    uid: 1000,
                    gid: 1000,
                    euid: 1000,
                    egid: 1000,
                    suid: 1000,
                    sgid: 1000,
                    fsuid: 1000,
                    fsgid: 1000,
                    auid: 1000,
                    ..Default::default()
                },
                cgroup_id: 4242,
                nspid: pid,
                ..Default::default()
            };
            push(
                exec_bytes(
                    rec,
                    binary,
                    args.as_bytes(),
                    "/home/user/work",
                    "session-3.scope",
                ),
                &mut execs,
            );
        }
        let start_time = process_id(processes).1;
        for k in 0..distinct_hooks {
            let (pid, ktime) = process_id((k % processes as usize) as u32);
            let path = format!("/tmp/vigil-demo/dir{}/file-{k}.txt", k % 16);
            let rec = abi::HookRec {
                hdr: abi::MsgHeader {
                    // Two microseconds apart: every event has its own time.
                    time: start_time + 2_000 * k as u64,
                    ..Default::default()
                },
                pid,
                tid: pid + (k % 3) as u32,
                ktime,
                hook: SLOT,
                policy: 1,
                generation: GENERATION,
                selector: 0,
                actions: 1 << abi::act::POST,
                ..Default::default()
            };
            push(
                hook_bytes(rec, &[raw(abi::argk::STR, path.as_bytes())]),
                &mut hooks,
            );
        }
        Workload {
            bytes,
            execs,
            hooks,
        }
    }

    /// The exec records.
    pub fn execs(&self) -> usize {
        self.execs.len()
    }

    /// `n` records (never fewer than the exec records): every exec record, then hook records
    /// round robin.
    pub fn records(&self, n: usize) -> impl Iterator<Item = &[u8]> + '_ {
        let hooks = n.saturating_sub(self.execs.len());
        let cycle = self
            .hooks
            .iter()
            .cycle()
            .take(if self.hooks.is_empty() { 0 } else { hooks });
        self.execs
            .iter()
            .chain(cycle)
            .map(|r| &self.bytes[r.clone()])
    }

    /// How many records [`Workload::records`] yields for `n`.
    pub fn count(&self, n: usize) -> usize {
        if self.hooks.is_empty() {
            self.execs.len()
        } else {
            n.max(self.execs.len())
        }
    }
}

/// Pid and exec ktime of the `i`-th process of the mix.
fn process_id(i: u32) -> (u32, u64) {
    (1000 + i, 1_000_000_000 + u64::from(i) * 1_000_000)
}

/// The registry the engine would hold for the file-access policy's openat hook.
pub fn registry() -> Arc<HookRegistry> {
    let reg = Arc::new(HookRegistry::new());
    reg.set(
        SLOT,
        GENERATION,
        Arc::new(HookMeta {
            policy_name: "file-access".into(),
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
        }),
    );
    reg
}

fn builder() -> EventBuilder {
    EventBuilder {
        node_name: NODE.into(),
        clock: BootClock::now(),
        enable_cred: false,
        enable_ns: false,
        host_ns: [0; abi::NS_COUNT],
    }
}

/// What a timed run did.
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: &'static str,
    /// Records replayed.
    pub events: u64,
    pub wall: Duration,
    /// CPU time of the run (the replaying thread for stages, every thread of the process for
    /// the whole path).
    pub cpu: Duration,
}

impl Figure {
    /// Events per wall-clock second.
    pub fn per_sec(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Wall-clock ns per event.
    pub fn ns_per_event(&self) -> f64 {
        self.wall.as_nanos() as f64 / self.events.max(1) as f64
    }

    /// Events per second of CPU time: what one core sustains, whatever else the machine runs.
    pub fn per_cpu_sec(&self) -> f64 {
        self.events as f64 / self.cpu.as_secs_f64().max(1e-9)
    }
}

/// The stages of the event path, each timed with those before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Ring-buffer bytes to a record.
    Decode,
    /// + the hook's metadata, the process and its parent from the cache.
    Lookup,
    /// + the event (process, parent, arguments, policy).
    Build,
    /// + the JSON line.
    Json,
    /// + the line written to the export file (buffered, flushed and checked per batch, as the
    ///   writer thread does).
    Write,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::Decode,
        Stage::Lookup,
        Stage::Build,
        Stage::Json,
        Stage::Write,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Lookup => "+ process cache",
            Stage::Build => "+ event building",
            Stage::Json => "+ JSON",
            Stage::Write => "+ file write",
        }
    }
}

fn thread_cpu() -> Duration {
    cpu(rustix::time::ClockId::ThreadCPUTime)
}

fn process_cpu() -> Duration {
    cpu(rustix::time::ClockId::ProcessCPUTime)
}

fn cpu(id: rustix::time::ClockId) -> Duration {
    let ts = rustix::time::clock_gettime(id);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Replays `n` records of `w` through the event path up to `stage`, on this thread. Exec
/// records go through the whole pipeline (they fill the process cache); hook records stop
/// after `stage`. The export file of [`Stage::Write`] is `dir/stage.json`, rotated at
/// `file_size` bytes with one backup.
pub fn run_stage(
    stage: Stage,
    w: &Workload,
    n: usize,
    dir: &Path,
    file_size: u64,
) -> io::Result<Figure> {
    let metrics = Arc::new(Metrics::new());
    // Only exec events reach the queue here; a writer with no output takes them.
    let (queue, writer) = export::start(Sinks::default(), 1024, NODE.into(), metrics.clone());
    let mut p =
        Pipeline::new(builder(), DEFAULT_PROCESS_CACHE_SIZE, queue, metrics).with_hooks(registry());
    let mut file = match stage {
        Stage::Write => Some(
            RotatingFile::open(&dir.join("stage.json"), file_size, 1)
                .map_err(|e| io::Error::other(e.to_string()))?,
        ),
        _ => None,
    };
    let mut sink = 0usize;
    let mut since_flush = 0usize;
    let cpu0 = thread_cpu();
    let t0 = Instant::now();
    let mut events = 0u64;
    for bytes in w.records(n) {
        events += 1;
        let record = match decode(bytes) {
            Ok(r) => r,
            Err(e) => return Err(io::Error::other(e.to_string())),
        };
        let Record::Hook(h) = record else {
            p.handle(record);
            continue;
        };
        if stage == Stage::Decode {
            sink = sink.wrapping_add(std::hint::black_box(&h).args.len());
            continue;
        }
        if stage == Stage::Lookup {
            let c = p.hook_context(&h);
            sink = sink.wrapping_add(std::hint::black_box(&c).is_some() as usize);
            continue;
        }
        let Some((mut ev, policy)) = p.hook_event(&h) else {
            return Err(io::Error::other("hook record without its hook"));
        };
        if stage == Stage::Build {
            sink = sink.wrapping_add(std::hint::black_box(&ev).node_name.len());
            continue;
        }
        let line = p
            .encode(&mut ev)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let Some(f) = file.as_mut() else {
            sink = sink.wrapping_add(std::hint::black_box(&line).len());
            continue;
        };
        f.write_line(&line, Tag::Event(LossKind::Hook, Some(policy.key.clone())))?;
        since_flush += 1;
        if since_flush == BATCH {
            since_flush = 0;
            let _ = f.check();
            f.flush()?;
        }
    }
    if let Some(f) = file.as_mut() {
        let _ = f.check();
        f.flush()?;
    }
    let wall = t0.elapsed();
    let cpu = thread_cpu().saturating_sub(cpu0);
    std::hint::black_box(sink);
    drop(p);
    let _ = writer.join();
    Ok(Figure {
        name: stage.name(),
        events,
        wall,
        cpu,
    })
}

/// The whole path's outcome.
#[derive(Debug, Clone)]
pub struct WholeRun {
    pub figure: Figure,
    /// Events the export file took (lines confirmed written).
    pub exported: u64,
    /// Events the export queue dropped for lack of room.
    pub queue_lost: u64,
    /// Records that did not become an exported event, whatever the reason.
    pub lost: u64,
}

/// Replays `n` records of `w` through [`Pipeline::handle_bytes`] as the sensor runs it
/// (broadcaster, hook registry, pod inventory, the export queue and its writer thread writing
/// `dir/events.json`, rotated at `max_file_size` bytes with 5 backups). Records go in batches
/// of [`BATCH`]; a batch waits while the queue has no room for it, as the ring buffer holds
/// records while the reader is busy, so what is measured is the rate sustained without loss.
/// The time runs until the writer has written and confirmed the last line.
pub fn run_whole(w: &Workload, n: usize, dir: &Path, max_file_size: u64) -> io::Result<WholeRun> {
    let metrics = Arc::new(Metrics::new());
    let file = RotatingFile::open(&dir.join("events.json"), max_file_size, 5)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let capacity = DEFAULT_EXPORT_QUEUE_SIZE;
    let (queue, writer) = export::start(
        Sinks {
            file: Some(file),
            stdout: false,
        },
        capacity,
        NODE.into(),
        metrics.clone(),
    );
    let room = queue.clone();
    let pods = Arc::new(PodInventory::new(dir.join("cgroup")));
    let broadcaster = Arc::new(Broadcaster::new(
        DEFAULT_GRPC_CLIENT_QUEUE_SIZE,
        metrics.clone(),
    ));
    let mut p = Pipeline::new(
        builder(),
        DEFAULT_PROCESS_CACHE_SIZE,
        queue,
        metrics.clone(),
    )
    .with_broadcaster(broadcaster)
    .with_hooks(registry())
    .with_pods(pods, PodWait::default());
    let cpu0 = process_cpu();
    let t0 = Instant::now();
    let mut events = 0u64;
    for bytes in w.records(n) {
        if events.is_multiple_of(BATCH as u64) {
            p.release(Instant::now());
            while room.queued() + BATCH > capacity {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        events += 1;
        p.handle_bytes(bytes);
    }
    p.release(Instant::now());
    drop(p);
    drop(room);
    writer
        .join()
        .map_err(|_| io::Error::other("the export writer panicked"))?;
    let wall = t0.elapsed();
    let cpu = process_cpu().saturating_sub(cpu0);
    let exported = metrics.exported.get();
    Ok(WholeRun {
        figure: Figure {
            name: "whole path",
            events,
            wall,
            cpu,
        },
        exported,
        queue_lost: metrics.export_queue_lost.get(),
        lost: events.saturating_sub(exported),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_api::events::GetEventsResponse;

    #[test]
    fn every_replayed_record_is_exported_once() {
        let dir = tempfile::tempdir().unwrap();
        let w = Workload::file_open_mix(16, 256);
        let n = 3 * BATCH + 17;
        let run = run_whole(&w, n, dir.path(), u64::MAX).unwrap();
        assert_eq!(run.figure.events, n as u64);
        assert_eq!((run.exported, run.queue_lost, run.lost), (n as u64, 0, 0));
        let text = std::fs::read_to_string(dir.path().join("events.json")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), n, "one line per record");
        let mut kprobes = 0;
        for line in &lines {
            let ev = GetEventsResponse::from_json(line).unwrap();
            if let Some(k) = &ev.process_kprobe {
                kprobes += 1;
                let process = k.process.as_ref().unwrap();
                assert_eq!(process.flags, "execve", "every process is known: {line}");
                assert!(k.parent.is_some(), "{line}");
                assert!(k.args[0].string().unwrap().starts_with("/tmp/vigil-demo/"));
            }
        }
        assert_eq!(kprobes, n - w.execs());
    }

    #[test]
    fn every_stage_replays_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let w = Workload::file_open_mix(8, 64);
        for stage in Stage::ALL {
            let f = run_stage(stage, &w, 1000, dir.path(), u64::MAX).unwrap();
            assert_eq!(f.events, 1000, "{}", stage.name());
        }
        let written = std::fs::read_to_string(dir.path().join("stage.json")).unwrap();
        assert_eq!(written.lines().count(), 1000 - w.execs());
    }
}
