//! The user-space pipeline benchmark: replays synthetic ring-buffer records (the file-open mix)
//! through the event path in-process, stage by stage and whole, and prints events/s and
//! ns/event for each (see `vigil_sensor::process::replay`). Prints figures; asserts nothing about time.
//!
//! Usage: `pipeline_bench [N]` (default 1 000 000 records). Environment: `PROCESSES` (64),
//! `DISTINCT` distinct hook records (4096), `PIN_CPU` (the CPU the whole path runs on, `none`
//! to leave it unpinned; default: the last CPU this process may use), `KEEP_DIR` (write the
//! export files there instead of a temporary directory), `ONLY=stages` or `ONLY=whole` (run
//! only those, e.g. under a profiler).

use std::path::PathBuf;

use vigil_sensor::process::replay::{self, Figure, Stage, Workload};

/// The export files rotate at the sensor's default size (10 MB), so a run takes little disk.
const FILE_SIZE: u64 = 10 << 20;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn line(f: &Figure) {
    println!(
        "pipeline {:<18} {:>10.0} events/s {:>8.0} ns/event   ({:>10.0} events per CPU-second)",
        f.name,
        f.per_sec(),
        f.ns_per_event(),
        f.per_cpu_sec()
    );
}

/// Pins the whole process (and the threads it starts later) to one CPU; returns which.
fn pin(choice: Option<String>) -> Option<usize> {
    use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
    if choice.as_deref() == Some("none") {
        return None;
    }
    let allowed = sched_getaffinity(None).ok()?;
    let cpu = match choice.and_then(|c| c.parse().ok()) {
        Some(c) => c,
        None => (0..CpuSet::MAX_CPU).rev().find(|c| allowed.is_set(*c))?,
    };
    let mut one = CpuSet::new();
    one.set(cpu);
    sched_setaffinity(None, &one).ok()?;
    Some(cpu)
}

fn main() -> std::io::Result<()> {
    let n = std::env::args()
        .nth(1)
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or_else(|| env_num("N", 1_000_000));
    let processes = env_num("PROCESSES", 64) as u32;
    let distinct = env_num("DISTINCT", 4096);
    let tmp = tempfile_dir()?;
    let dir = tmp.0.clone();
    let cpu = pin(std::env::var("PIN_CPU").ok());
    let w = Workload::file_open_mix(processes, distinct);
    let n = w.count(n);
    println!(
        "pipeline bench: file-open mix, {n} records ({} exec, the rest sys_openat hook records \
         with a path over {processes} processes, {distinct} distinct), {}",
        w.execs(),
        match cpu {
            Some(c) => format!("pinned to CPU {c}"),
            None => "not pinned".into(),
        }
    );
    let only = std::env::var("ONLY").unwrap_or_default();
    // A short warm-up (allocator, page cache of the export file).
    replay::run_stage(Stage::Write, &w, n.min(50_000), &dir, FILE_SIZE)?;
    let _ = std::fs::remove_file(dir.join("stage.json"));
    for stage in Stage::ALL.into_iter().filter(|_| only != "whole") {
        let f = replay::run_stage(stage, &w, n, &dir, FILE_SIZE)?;
        line(&f);
        let _ = std::fs::remove_file(dir.join("stage.json"));
    }
    if only == "stages" {
        return Ok(());
    }
    let run = replay::run_whole(&w, n, &dir, FILE_SIZE)?;
    line(&run.figure);
    println!(
        "pipeline whole path: {} records in, {} events exported, {} lost ({} dropped by the \
         export queue)",
        run.figure.events, run.exported, run.lost, run.queue_lost
    );
    Ok(())
}

/// A directory for the export files: `KEEP_DIR`, or a temporary one removed at exit.
struct Dir(PathBuf, bool);

impl Drop for Dir {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn tempfile_dir() -> std::io::Result<Dir> {
    if let Ok(d) = std::env::var("KEEP_DIR") {
        std::fs::create_dir_all(&d)?;
        return Ok(Dir(PathBuf::from(d), false));
    }
    let base = std::env::temp_dir().join(format!("vigil-pipeline-bench.{}", std::process::id()));
    std::fs::create_dir_all(&base)?;
    Ok(Dir(base, true))
}
