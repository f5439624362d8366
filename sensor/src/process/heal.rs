//! Heal after loss: when exec, fork or exit records were lost, the process cache may miss
//! processes (their events would come without parent, flagged `miss`) or keep dead ones. The
//! sensor then re-reads the kernel's view of the running processes — with the BPF task iterator
//! (`iter/task`, `bpf/iter.bpf.c`), or by walking /proc where iterators are missing — and
//!
//! - adds every running process the cache does not know, reported as a `process_exec` event
//!   flagged `procFS healed`, under the identity the kernel's process table holds (so its later
//!   hook events and children find it);
//! - expires every live cache entry the kernel no longer runs (its exit record was lost).
//!
//! Records still in the ring buffer when the view is taken must not be mistaken for losses: the
//! heal runs right after a drain that emptied the ring buffer, leaves out processes whose
//! identity is younger than that drain (their exec or fork record is on its way), and expires
//! entries only after the next drain (their exit record may be on its way).
//!
//! Counted in `vigil_process_heals_total{source}`, `vigil_process_heal_added_total` and
//! `vigil_process_heal_expired_total`.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use aya::programs::Iter;
use aya::{Btf, Ebpf};
use vigil_api::events::ProcessFlags;
use vigil_sensor_bpf::abi::{self, Task, read_record};
use vigil_sensor_bpf::{ITER_OBJ, ITER_TASKS_PROG};

use crate::error::SensorError;
use crate::hooks::kernel::PinDir;
use crate::hooks::programs::ProgramStats;
use crate::output::metrics::SourceLabel;
use crate::process::pipeline::Pipeline;
use crate::process::process_cache::ProcKey;

/// /proc start times have clock-tick resolution: a cache identity this much older than a
/// task's start time is still the same process.
const START_SLACK_NS: u64 = 20_000_000;

/// One running process, as the kernel sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveTask {
    pub pid: u32,
    pub ppid: u32,
    /// Boot ns at fork.
    pub start_ns: u64,
    /// The identity the kernel process table holds (`None`: no entry).
    pub ktime: Option<u64>,
    pub parent_ktime: u64,
}

impl LiveTask {
    /// The identity the process's records carry.
    pub fn identity(&self) -> u64 {
        self.ktime.unwrap_or(self.start_ns)
    }

    fn from_abi(t: &Task) -> Self {
        let entry = t.flags & abi::TF_ENTRY != 0;
        LiveTask {
            pid: t.pid,
            ppid: t.ppid,
            start_ns: t.start_ns,
            ktime: entry.then_some(t.ktime),
            parent_ktime: if entry { t.parent_ktime } else { 0 },
        }
    }
}

/// The loaded task iterator.
pub struct TaskIter {
    ebpf: Ebpf,
    pub stats: ProgramStats,
}

impl std::fmt::Debug for TaskIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskIter").finish_non_exhaustive()
    }
}

impl TaskIter {
    /// Loads the iterator (it reads the process table pinned in `pins`).
    pub fn load(pins: &PinDir, btf: &Btf) -> Result<TaskIter, SensorError> {
        let mut ebpf = pins
            .loader(btf)
            .load(ITER_OBJ)
            .map_err(|e| SensorError::bpf("loading the task iterator object", e))?;
        let p: &mut Iter = ebpf
            .program_mut(ITER_TASKS_PROG)
            .ok_or_else(|| SensorError::bpf(ITER_TASKS_PROG, "program missing from the object"))?
            .try_into()
            .map_err(|e| SensorError::bpf(ITER_TASKS_PROG, e))?;
        let start = std::time::Instant::now();
        p.load("task", btf)
            .map_err(|e| SensorError::bpf(format!("loading {ITER_TASKS_PROG}"), e))?;
        let took = start.elapsed();
        let verified_insns = p.info().ok().and_then(|i| i.verified_instruction_count());
        Ok(TaskIter {
            ebpf,
            stats: ProgramStats {
                name: ITER_TASKS_PROG.into(),
                loads: 1,
                last_load: took,
                total_load: took,
                verified_insns,
                adopted: false,
            },
        })
    }

    /// One walk over the kernel's tasks.
    pub fn tasks(&mut self) -> Result<Vec<LiveTask>, SensorError> {
        let p: &mut Iter = self
            .ebpf
            .program_mut(ITER_TASKS_PROG)
            .ok_or_else(|| SensorError::bpf(ITER_TASKS_PROG, "program missing"))?
            .try_into()
            .map_err(|e| SensorError::bpf(ITER_TASKS_PROG, e))?;
        let id = p
            .attach()
            .map_err(|e| SensorError::bpf(format!("attaching {ITER_TASKS_PROG}"), e))?;
        let link = p
            .take_link(id)
            .map_err(|e| SensorError::bpf(ITER_TASKS_PROG, e))?;
        let mut file = link
            .into_file()
            .map_err(|e| SensorError::bpf(format!("reading {ITER_TASKS_PROG}"), e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| SensorError::io("reading the task iterator", e))?;
        Ok(bytes
            .chunks_exact(std::mem::size_of::<Task>())
            .filter_map(read_record::<Task>)
            .map(|t| LiveTask::from_abi(&t))
            .collect())
    }
}

/// The running processes from `proc_root`, with the process table's identity from `table`.
pub fn procfs_tasks(proc_root: &Path, table: impl Fn(u32) -> Option<abi::Proc>) -> Vec<LiveTask> {
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat =
                std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
            let (ppid, flags, start) = crate::process::procfs_scan::parse_stat(&stat)?;
            if flags & 0x0020_0000 != 0 {
                return None;
            }
            let entry = table(pid);
            Some(LiveTask {
                pid,
                ppid,
                start_ns: start.saturating_mul(1_000_000_000) / ticks,
                ktime: entry.map(|p| p.ktime),
                parent_ktime: entry.map(|p| p.parent_ktime).unwrap_or(0),
            })
        })
        .collect()
}

/// What one heal did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HealReport {
    pub added: Vec<u32>,
    /// Entries to expire after the next drain unless their exit comes.
    pub expire_candidates: usize,
}

impl Pipeline {
    /// Brings the process cache in line with `tasks`, the kernel's running processes read right
    /// after a drain that ended at boot time `drained_at`. Details of added processes are read
    /// from `proc_root`.
    pub fn heal(
        &mut self,
        tasks: &[LiveTask],
        drained_at: u64,
        proc_root: &Path,
        source: &str,
    ) -> HealReport {
        self.metrics
            .process_heals
            .get_or_create(&SourceLabel {
                source: source.into(),
            })
            .inc();
        let running: HashMap<u32, &LiveTask> = tasks.iter().map(|t| (t.pid, t)).collect();
        let mut report = HealReport::default();
        // Dead entries: confirmed after the next drain.
        self.heal_expire = self
            .cache
            .live_keys()
            .into_iter()
            .filter(|k| k.pid != 0 && !running.contains_key(&k.pid))
            .collect();
        report.expire_candidates = self.heal_expire.len();
        // Missing processes, parents first.
        let mut missing: Vec<&LiveTask> = tasks
            .iter()
            .filter(|t| t.identity() < drained_at && !self.knows(t))
            .collect();
        missing.sort_by_key(|t| (t.start_ns, t.pid));
        for t in missing {
            let Some(mut s) = crate::process::procfs_scan::read_one(proc_root, t.pid) else {
                continue; // gone meanwhile: its exit is on its way
            };
            s.start_ns = t.identity();
            let parent_key = if t.ppid == 0 {
                Some(self.kernel_key)
            } else {
                self.cache.resolve(t.ppid, t.parent_ktime)
            };
            let parent = parent_key.and_then(|k| self.cache.get(&k).map(|e| e.process.clone()));
            let mut process = self.builder.scanned_process(
                &s,
                parent
                    .as_ref()
                    .map(|p| p.exec_id.clone())
                    .unwrap_or_default(),
            );
            let mut flags: ProcessFlags = process.flags.parse().unwrap_or_default();
            flags.insert(ProcessFlags::HEALED);
            if parent.is_none() {
                flags.insert(ProcessFlags::MISS);
            }
            process.flags = flags.to_string();
            self.stub_pod(&mut process, s.nspid);
            let key = ProcKey {
                pid: t.pid,
                ktime: t.identity(),
            };
            self.cache.insert(
                key,
                Arc::new(process.clone()),
                parent.as_ref().and(parent_key),
            );
            let ev = self
                .builder
                .exec_event(process, parent.map(|p| (*p).clone()), t.identity());
            self.dispatch(ev, None);
            self.metrics.process_heal_added.inc();
            report.added.push(t.pid);
        }
        self.update_cache_metrics();
        report
    }

    /// Whether the cache's live incarnation of the task's pid is the task.
    fn knows(&self, t: &LiveTask) -> bool {
        let Some(key) = self.cache.live(t.pid) else {
            return false;
        };
        match t.ktime {
            Some(k) => key.ktime >= k,
            None => key.ktime + START_SLACK_NS >= t.start_ns,
        }
    }

    /// Expires the entries the last heal found gone whose exit did not come since (called after
    /// every drain; nothing to do unless a heal ran).
    pub fn settle_heal(&mut self) {
        if self.heal_expire.is_empty() {
            return;
        }
        for key in std::mem::take(&mut self.heal_expire) {
            if self.cache.live(key.pid) == Some(key) {
                self.cache.exit(key);
                self.metrics.process_heal_expired.inc();
            }
        }
        self.update_cache_metrics();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::clock::BootClock;
    use crate::kernel::decode::{ExecRecord, Record};
    use crate::output::export::{ExportQueue, Item};
    use crate::output::metrics::Metrics;
    use crate::process::builder::EventBuilder;
    use vigil_api::events::GetEventsResponse;

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
        (Pipeline::new(b, 1000, q, metrics.clone()), rx, metrics)
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
            argv: vec![],
            args_total: 0,
            cwd: "/".into(),
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

    /// A /proc with the given processes (stat, exe, cwd, cmdline), enough for `read_one`.
    fn fake_proc(procs: &[(u32, u32, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (pid, ppid, exe) in procs {
            let d = root.path().join(pid.to_string());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(
                d.join("stat"),
                format!("{pid} (x) S {ppid} 0 0 0 -1 4194560 0 0 0 0 1 2 0 0 20 0 1 0 100 1000 10"),
            )
            .unwrap();
            std::os::unix::fs::symlink(exe, d.join("exe")).unwrap();
            std::os::unix::fs::symlink("/", d.join("cwd")).unwrap();
            std::fs::write(d.join("cmdline"), format!("{exe}\0--flag\0")).unwrap();
        }
        root
    }

    fn task(pid: u32, ppid: u32, ktime: u64, parent_ktime: u64) -> LiveTask {
        LiveTask {
            pid,
            ppid,
            start_ns: ktime,
            ktime: Some(ktime),
            parent_ktime,
        }
    }

    #[test]
    fn lost_processes_come_back_with_their_parents_and_dead_ones_go() {
        let (mut p, rx, m) = pipeline();
        p.handle(exec(100, 0, 1_000, 0));
        p.handle(exec(200, 100, 2_000, 1_000)); // exits; its exit record is lost
        events(&rx);
        // 300 (child of 100) and 301 (child of 300) exec'd while records were lost; 400 exec'd
        // after the drain (its record is still coming).
        let proc_root = fake_proc(&[
            (100, 0, "/bin/p100"),
            (300, 100, "/bin/lost"),
            (301, 300, "/bin/lost-child"),
            (400, 100, "/bin/new"),
        ]);
        let tasks = [
            task(100, 0, 1_000, 0),
            task(301, 300, 3_500, 3_000),
            task(300, 100, 3_000, 1_000),
            task(400, 100, 9_000, 1_000),
        ];
        let r = p.heal(&tasks, 5_000, proc_root.path(), "test");
        assert_eq!(
            r.added,
            vec![300, 301],
            "parents first; 400 is left to its record"
        );
        assert_eq!(r.expire_candidates, 1);
        let ev = events(&rx);
        assert_eq!(ev.len(), 2);
        let healed = ev[0].process_exec.as_ref().unwrap();
        let proc_ = healed.process.as_ref().unwrap();
        assert_eq!(proc_.flags, "procFS rootcwd healed");
        assert_eq!(proc_.binary, "/bin/lost");
        assert_eq!(proc_.arguments, "--flag");
        assert_eq!(
            proc_.exec_id,
            p.builder.exec_id(300, 3_000),
            "the table's identity"
        );
        assert_eq!(healed.parent.as_ref().unwrap().binary, "/bin/p100");
        let child = ev[1].process_exec.as_ref().unwrap();
        assert_eq!(child.parent.as_ref().unwrap().exec_id, proc_.exec_id);
        // 200's exit never comes: expired after the next drain.
        assert!(p.cache.live(200).is_some());
        p.settle_heal();
        assert!(p.cache.live(200).is_none());
        assert_eq!(m.process_heal_expired.get(), 1);
        assert_eq!(m.process_heal_added.get(), 2);
        // Events after the heal have their parents again.
        p.handle(exec(302, 301, 6_000, 3_500));
        let ev = events(&rx);
        let e = ev[0].process_exec.as_ref().unwrap();
        assert_eq!(e.process.as_ref().unwrap().flags, "execve rootcwd");
        assert_eq!(e.parent.as_ref().unwrap().binary, "/bin/lost-child");
        // A heal with nothing missing adds nothing.
        let tasks = [task(100, 0, 1_000, 0), task(300, 100, 3_000, 1_000)];
        assert!(
            p.heal(&tasks, 7_000, proc_root.path(), "test")
                .added
                .is_empty()
        );
    }

    #[test]
    fn an_exit_that_arrives_after_the_heal_is_not_expired_twice() {
        let (mut p, rx, m) = pipeline();
        p.handle(exec(100, 0, 1_000, 0));
        let proc_root = fake_proc(&[]);
        p.heal(&[], 5_000, proc_root.path(), "test");
        p.handle(Record::Exit(abi::Exit {
            pid: 100,
            ktime: 1_000,
            ..Default::default()
        }));
        p.settle_heal();
        assert_eq!(m.process_heal_expired.get(), 0);
        let ev = events(&rx);
        let exit = ev.last().unwrap().process_exit.as_ref().unwrap();
        assert_eq!(exit.process.as_ref().unwrap().flags, "execve rootcwd");
    }

    #[test]
    fn a_reused_pid_replaces_the_stale_entry() {
        let (mut p, rx, _) = pipeline();
        p.handle(exec(100, 0, 1_000, 0));
        events(&rx);
        let proc_root = fake_proc(&[(100, 0, "/bin/again")]);
        // The table has no entry (e.g. it was full): the start time tells the incarnations apart.
        let t = LiveTask {
            pid: 100,
            ppid: 0,
            start_ns: 1_000 + START_SLACK_NS + 1,
            ktime: None,
            parent_ktime: 0,
        };
        let r = p.heal(&[t], u64::MAX, proc_root.path(), "test");
        assert_eq!(r.added, vec![100]);
        assert_eq!(p.cache.live(100).unwrap().ktime, t.start_ns);
        let same = LiveTask {
            start_ns: 1_000 + START_SLACK_NS + 5,
            ..t
        };
        assert!(
            p.heal(&[same], u64::MAX, proc_root.path(), "test")
                .added
                .is_empty()
        );
    }
}
