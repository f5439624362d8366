//! Helpers of the fault and bad-input suites: a policy whose events the test alone produces,
//! counting its events and the losses reported for it, and scratch kernel objects (a small
//! tmpfs, a memory cgroup) removed when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use vigil_api::events::{GetEventsResponse, Loss, LossReason, LossStage};

/// A policy reporting every `openat` of a path under `prefix`: the test's own opens are its
/// only events, so their number is known exactly.
pub fn write_open_policy(dir: &Path, name: &str, prefix: &Path) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    let text = crate::open_policy(name, &format!("{}/", prefix.display()), "");
    std::fs::write(&path, text).unwrap();
    path
}

/// Opens (and closes) `path` `n` times from this process.
pub fn open_n(path: &Path, n: u64) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    for _ in 0..n {
        // SAFETY: a valid NUL-terminated path; the descriptor is closed at once.
        unsafe {
            let fd = libc::open(c.as_ptr(), libc::O_RDONLY);
            if fd >= 0 {
                libc::close(fd);
            }
        }
    }
}

/// Events of `policy` among `events`.
pub fn policy_events(events: &[GetEventsResponse], policy: &str) -> u64 {
    events
        .iter()
        .filter(|e| {
            e.process_kprobe
                .as_ref()
                .is_some_and(|k| k.policy_name == policy)
        })
        .count() as u64
}

/// The loss markers among `events`.
pub fn losses(events: &[GetEventsResponse]) -> Vec<Loss> {
    events
        .iter()
        .filter_map(|e| Loss::from_event(e).expect("a well-formed marker"))
        .collect()
}

/// Events of `policy` the markers among `events` report lost, at `stage` (any stage: `None`).
pub fn lost_for(events: &[GetEventsResponse], policy: &str, stage: Option<LossStage>) -> u64 {
    losses(events)
        .iter()
        .filter(|l| l.policy == policy && stage.is_none_or(|s| l.stage == Some(s)))
        .map(|l| l.count)
        .sum()
}

/// Events of `policy` reported lost for `reason`.
pub fn lost_by(events: &[GetEventsResponse], policy: &str, reason: LossReason) -> u64 {
    losses(events)
        .iter()
        .filter(|l| l.policy == policy && l.reason == Some(reason))
        .map(|l| l.count)
        .sum()
}

/// The value of `vigil_stage_events_total{stage,result}` in a metrics text.
pub fn stage(metrics: &str, stage: &str, result: &str) -> u64 {
    let want = format!("vigil_stage_events_total{{stage=\"{stage}\",result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&want)?.trim().parse().ok())
        .unwrap_or(0)
}

/// The value of `vigil_stage_events_inside{stage}` in a metrics text.
pub fn inside(metrics: &str, stage: &str) -> i64 {
    let want = format!("vigil_stage_events_inside{{stage=\"{stage}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&want)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether every stage's equation holds in `metrics`: in = out + lost + inside (+ abandoned
/// for clients), and the lost events of each stage were all announced in the export file.
/// `Err` says which does not.
pub fn equations_hold(metrics: &str) -> Result<(), String> {
    for s in ["kernel", "decode", "pod_wait", "export", "client"] {
        let (i, o, l, a) = (
            stage(metrics, s, "in"),
            stage(metrics, s, "out"),
            stage(metrics, s, "lost"),
            stage(metrics, s, "abandoned"),
        );
        let inside = inside(metrics, s);
        if i as i64 != (o + l + a) as i64 + inside {
            return Err(format!(
                "stage {s}: in {i} != out {o} + lost {l} + abandoned {a} + inside {inside}"
            ));
        }
    }
    let reported = |s: &str| {
        let want = format!("vigil_loss_reported_events_total{{output=\"file\",stage=\"{s}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&want)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let decode_lost = stage(metrics, "decode", "lost") + stage(metrics, "pod_wait", "lost");
    for (s, lost) in [
        ("kernel", stage(metrics, "kernel", "lost")),
        ("decode", decode_lost),
        ("export", stage(metrics, "export", "lost")),
    ] {
        if reported(s) != lost {
            return Err(format!(
                "stage {s}: {lost} lost, {} reported in the file",
                reported(s)
            ));
        }
    }
    Ok(())
}

/// A tmpfs of `size_kib` KiB mounted on a fresh directory; unmounted when dropped.
pub struct Tmpfs {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Tmpfs {
    pub fn mount(size_kib: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_kib}k"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("mount");
        assert!(
            st.success(),
            "mounting a tmpfs on {} failed",
            path.display()
        );
        Tmpfs { _dir: dir, path }
    }

    /// Fills the file system with `name` until it is full; returns the file's path.
    pub fn fill(&self, name: &str) -> PathBuf {
        use std::io::Write;
        let p = self.path.join(name);
        let mut f = std::fs::File::create(&p).unwrap();
        let block = vec![b'x'; 4096];
        loop {
            match f.write(&block) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        let _ = f.flush();
        p
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A memory cgroup with a limit, on the v1 memory hierarchy or on cgroup v2 (whichever the
/// kernel runs); removed when dropped (once empty).
pub struct MemoryCgroup {
    pub dir: PathBuf,
    v2: bool,
}

impl MemoryCgroup {
    pub fn create(name: &str, limit_bytes: u64) -> MemoryCgroup {
        let v1 = Path::new("/sys/fs/cgroup/memory");
        let (dir, v2) = if v1.join("memory.limit_in_bytes").exists() {
            (v1.join(name), false)
        } else {
            let root = crate::containers::cgroup2_root();
            let controllers =
                std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            assert!(
                controllers.split_whitespace().any(|c| c == "memory"),
                "no memory controller on v1 or on cgroup v2 ({}): cannot limit memory",
                root.display()
            );
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory");
            (root.join(name), true)
        };
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let (file, value) = if v2 {
            ("memory.max", limit_bytes.to_string())
        } else {
            ("memory.limit_in_bytes", limit_bytes.to_string())
        };
        std::fs::write(dir.join(file), value).unwrap();
        if v2 {
            let _ = std::fs::write(dir.join("memory.swap.max"), "0");
        }
        MemoryCgroup { dir, v2 }
    }

    /// The file a process writes its pid to, to join.
    pub fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// OOM kills in the cgroup so far.
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = if self.v2 {
            ("memory.events", "oom_kill")
        } else {
            ("memory.oom_control", "oom_kill")
        };
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Highest memory use seen (bytes).
    pub fn peak(&self) -> u64 {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        std::fs::read_to_string(self.dir.join(file))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}
