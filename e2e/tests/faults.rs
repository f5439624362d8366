//! The fault suite: each case breaks something under the sensor, states what is lost, and checks
//! that exactly that is reported — in the stream, at the gap, attributed — and that the sensor
//! keeps running. Figures in docs/operations.md ("Faults and bad input").
//!
//! Most cases count the events of a policy only the test triggers (opens of a file in the test's
//! own directory), so that `events exported + events reported lost = opens made` holds exactly
//! whatever else the machine does. GRPC cases are in `faults_grpc.rs`, process-level ones
//! (SIGSTOP, kill -9, memory limit, operator link) in `faults_process.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use vigil_api::events::{GetEventsResponse, LossKind, LossReason, LossStage};
use vigil_e2e::loss::{
    Tmpfs, equations_hold, losses, lost_by, lost_for, open_n, policy_events, write_open_policy,
};
use vigil_e2e::{Sensor, bin_path, event_timeout, read_events, wait_for};

const POLICY: &str = "faults-open";

/// A sensor with the open policy, and the file whose opens it reports.
struct Rig {
    sensor: Sensor,
    target: PathBuf,
    _dir: tempfile::TempDir,
    /// Opens made so far.
    opened: u64,
}

impl Rig {
    fn start(args: &[&str]) -> Rig {
        Self::start_env(args, &[])
    }

    fn start_env(args: &[&str], env: &[(&str, &str)]) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let watched = dir.path().join("watched");
        std::fs::create_dir(&watched).unwrap();
        let target = watched.join("f");
        std::fs::write(&target, b"x").unwrap();
        let policy = write_open_policy(dir.path(), POLICY, &watched);
        // No rotation of our own in the way: every line stays in the one file.
        let mut all = vec![
            "--policy",
            policy.to_str().unwrap(),
            "--export-file-max-size-mb",
            "1000",
        ];
        all.extend_from_slice(args);
        let sensor = Sensor::start_wrapped(&["env"], &all, env);
        let mut rig = Rig {
            sensor,
            target,
            _dir: dir,
            opened: 0,
        };
        // The policy is live once one open is reported.
        rig.open(1);
        rig.sensor.wait_event("the first open", |e| {
            e.process_kprobe
                .as_ref()
                .is_some_and(|k| k.policy_name == POLICY)
        });
        rig
    }

    fn open(&mut self, n: u64) {
        open_n(&self.target, n);
        self.opened += n;
    }

    /// Waits until every open is either exported or reported lost, in the export file (or in
    /// `files`, oldest first), and returns the events read.
    fn settle_in(&self, files: &[&Path]) -> Vec<GetEventsResponse> {
        let deadline = std::time::Instant::now() + event_timeout() * 3;
        loop {
            let ev: Vec<GetEventsResponse> = files.iter().flat_map(|f| read_events(f)).collect();
            let (got, lost) = (policy_events(&ev, POLICY), lost_for(&ev, POLICY, None));
            assert!(
                got + lost <= self.opened,
                "{got} exported + {lost} reported lost, only {} opens made",
                self.opened
            );
            if got + lost == self.opened {
                return ev;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{got} exported + {lost} reported lost of {} opens\n{}",
                self.opened,
                self.sensor
                    .metrics()
                    .lines()
                    .filter(|l| l.contains("stage_events")
                        || l.contains("reopened")
                        || l.contains("loss_"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn settle(&self) -> Vec<GetEventsResponse> {
        self.settle_in(&[&self.sensor.export])
    }

    /// Waits until the per-stage equations hold in the metrics (the stages are quiet); returns
    /// the metrics.
    fn equations(&self) -> String {
        let deadline = std::time::Instant::now() + event_timeout();
        loop {
            let m = self.sensor.metrics();
            match equations_hold(&m) {
                Ok(()) => return m,
                Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The sensor still works: a new process is reported.
    fn still_runs(&self) {
        let (pid, st) = vigil_e2e::run(Command::new("/bin/true").stdout(Stdio::null()));
        assert!(st.success());
        self.sensor.wait_exec(pid);
    }
}

#[test]
fn a_ring_buffer_far_too_small_for_a_burst_is_reported_per_policy_at_the_gap() {
    // 4 KiB holds a couple of dozen hook records; nothing wakes the reader before its 20 ms
    // timer, so a burst of opens overflows it many times over.
    let mut rig = Rig::start(&["--ring-buffer-size", "4096"]);
    let burst = if vigil_e2e::slow_machine() {
        5_000
    } else {
        50_000
    };
    // Two bursts, the second once the first is all accounted for: the first burst's markers
    // must then stand before the second burst's events (at the gap, not at the end of the
    // stream), whatever the scheduler did within a burst.
    rig.open(burst / 2);
    rig.settle();
    rig.open(burst - burst / 2);
    let ev = rig.settle();
    let exported = policy_events(&ev, POLICY);
    let lost = lost_for(&ev, POLICY, Some(LossStage::Kernel));
    assert!(
        lost > 0,
        "a 4 KiB ring buffer lost nothing of {burst} opens"
    );
    assert_eq!(exported + lost, rig.opened);
    // Every marker of the policy says where and why, with a window.
    let markers: Vec<_> = losses(&ev)
        .into_iter()
        .filter(|l| l.policy == POLICY)
        .collect();
    for m in &markers {
        assert_eq!(
            (m.stage, m.reason, m.kind),
            (
                Some(LossStage::Kernel),
                Some(LossReason::RingBufferFull),
                Some(LossKind::Hook)
            ),
            "{m}"
        );
        assert!(!m.from.is_empty() && m.from <= m.to, "{m}");
    }
    // At the gap: the first marker comes before events that followed it.
    let first_marker = ev
        .iter()
        .position(|e| {
            vigil_api::events::Loss::from_event(e)
                .unwrap()
                .is_some_and(|l| l.policy == POLICY)
        })
        .unwrap();
    let after = policy_events(&ev[first_marker..], POLICY);
    assert!(
        !markers.is_empty() && after > 0,
        "{} markers; {after} events after the first",
        markers.len()
    );
    // The metric says the same (it follows the kernel's counters every second), and every
    // stage adds up.
    rig.equations();
    let name = format!("vigil_policy_events_lost_total{{policy=\"{POLICY}\"}}");
    wait_for(event_timeout(), "the policy's loss metric", || {
        let m = rig.sensor.metrics();
        (vigil_e2e::metric_value(&m, &name) as u64 == lost).then_some(())
    });
    rig.still_runs();
    println!(
        "figure: ring buffer 4 KiB, {burst} opens: {exported} exported, {lost} reported lost in {} markers",
        markers.len()
    );
}

/// Starts, while the sensor is stopped and an exec storm has filled its small ring buffer, shells
/// that run a child for every line on their stdin: their exec records are lost.
fn heal_case(env: &[(&str, &str)], source: &str) {
    let rig = Rig::start_env(&["--ring-buffer-size", "4096"], env);
    // The newest exec of the pid: pids are reused quickly under exec storms.
    let exec_of = |ev: &[GetEventsResponse], pid: u32| {
        ev.iter()
            .rev()
            .filter_map(|e| e.process_exec.as_ref()?.process.clone())
            .find(|p| p.pid == Some(pid))
    };
    // The shells' exec records are lost for certain: the sensor is stopped (SIGSTOP) while an
    // exec storm fills its 4 KiB ring buffer, then the shells start, then it goes on.
    let sensor_pid = rig.sensor.pid();
    vigil_e2e::signal(sensor_pid, libc::SIGSTOP);
    let storm = Command::new(bin_path("vigil-e2e-workload"))
        .args(["exec-storm", "200", "/bin/true"])
        .stdout(Stdio::null())
        .status();
    let mut shells = Vec::new();
    for i in 0..20 {
        let child = Command::new("/bin/sh")
            .args([
                "-c",
                &format!("while read x; do /bin/true heal-child-{i}; done"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn();
        match child {
            Ok(c) => shells.push(c),
            Err(e) => {
                vigil_e2e::signal(sensor_pid, libc::SIGCONT);
                panic!("cannot start a shell: {e}");
            }
        }
    }
    vigil_e2e::signal(sensor_pid, libc::SIGCONT);
    assert!(storm.unwrap().success());
    // Every shell is known by now: seen executing, or healed.
    let known = wait_for(event_timeout() * 2, "every shell seen or healed", || {
        let ev = rig.sensor.events();
        shells
            .iter()
            .map(|s| exec_of(&ev, s.id()))
            .collect::<Option<Vec<_>>>()
    });
    let healed: Vec<_> = known
        .iter()
        .filter(|p| p.flags.split(' ').any(|f| f == "healed"))
        .collect();
    let m = rig.sensor.metrics();
    let exec_lost = vigil_e2e::metric_value(
        &m,
        "vigil_observer_ringbuf_events_lost_total{record=\"exec\"}",
    );
    assert!(
        exec_lost > 0.0,
        "the storm lost no exec record; nothing to heal"
    );
    assert!(
        !healed.is_empty(),
        "{exec_lost} exec records lost, yet every shell was seen executing"
    );
    for p in &healed {
        assert!(p.flags.contains("procFS"), "{}", p.flags);
    }
    assert!(
        vigil_e2e::metric_value(
            &m,
            &format!("vigil_process_heals_total{{source=\"{source}\"}}")
        ) >= 1.0,
        "{m}"
    );
    // Events after the heal have their parents again: each healed shell's child names it. (A
    // child's own exec record can be lost to the small ring buffer too: another line, another
    // child.)
    use std::io::Write;
    for p in &healed {
        let pid = p.pid.unwrap();
        let shell = shells.iter_mut().find(|s| s.id() == pid).unwrap();
        let child_of = |e: &GetEventsResponse| {
            e.process_exec.as_ref().is_some_and(|x| {
                x.parent.as_ref().and_then(|q| q.pid) == Some(pid)
                    && x.process
                        .as_ref()
                        .is_some_and(|c| c.arguments.starts_with("heal-child-"))
            })
        };
        let child = wait_for(event_timeout(), "the healed shell's child", || {
            writeln!(shell.stdin.as_mut().unwrap()).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            rig.sensor.events().into_iter().find(|e| child_of(e))
        });
        let x = child.process_exec.unwrap();
        let c = x.process.unwrap();
        assert_eq!(
            c.parent_exec_id,
            p.exec_id,
            "the child's parent is the healed shell {p:?}; every exec of pid {pid}: {:?}",
            rig.sensor
                .events()
                .iter()
                .filter_map(|e| e.process_exec.as_ref()?.process.clone())
                .filter(|q| q.pid == Some(pid))
                .map(|q| (q.exec_id.clone(), q.flags.clone(), q.binary.clone()))
                .collect::<Vec<_>>()
        );
        assert!(!c.flags.contains("miss"), "{}", c.flags);
        assert_eq!(x.parent.unwrap().exec_id, p.exec_id);
    }
    let total = shells.len();
    for mut s in shells {
        drop(s.stdin.take());
        s.wait().unwrap();
    }
    println!(
        "figure: heal ({source}): {exec_lost} exec records lost, {} of {total} shells healed",
        healed.len()
    );
}

#[test]
fn lost_exec_records_are_healed_from_the_task_iterator() {
    heal_case(&[], "iterator");
}

#[test]
fn lost_exec_records_are_healed_from_proc_where_there_is_no_iterator() {
    heal_case(&[("VIGIL_TEST_HEAL_SOURCE", "procfs")], "procfs");
}

#[test]
fn a_full_disk_loses_lines_marks_the_gap_and_export_resumes_when_space_is_freed() {
    // Room for the lines before and after; while the filler is there, none.
    let fs = Tmpfs::mount(32 * 1024);
    let export = fs.path.join("events.json");
    let mut rig = Rig::start(&["--export-file", export.to_str().unwrap()]);
    let filler = fs.fill("filler");
    let while_full = if vigil_e2e::slow_machine() {
        3_000
    } else {
        20_000
    };
    rig.open(while_full);
    // The lines that did not fit are counted lost while the disk is full.
    wait_for(event_timeout(), "lines refused by the full disk", || {
        let m = rig.sensor.metrics();
        (vigil_api_stage_lost(&m) > 0).then_some(())
    });
    std::fs::remove_file(&filler).unwrap();
    rig.open(100);
    let ev = rig.settle_in(&[&export]);
    let lost = lost_by(&ev, POLICY, LossReason::WriteFailed);
    assert!(lost > 0, "nothing lost on a full disk");
    let exported = policy_events(&ev, POLICY);
    assert_eq!(exported + lost_for(&ev, POLICY, None), rig.opened);
    // The marker sits in the file where the gap is: after the lines written before the disk
    // filled, before those written after it was freed.
    let marker_at = ev
        .iter()
        .position(|e| {
            vigil_api::events::Loss::from_event(e)
                .unwrap()
                .is_some_and(|l| l.reason == Some(LossReason::WriteFailed))
        })
        .unwrap();
    assert!(policy_events(&ev[..marker_at], POLICY) > 0);
    assert!(policy_events(&ev[marker_at..], POLICY) > 0);
    rig.equations();
    rig.still_runs();
    println!(
        "figure: disk full (tmpfs), {while_full} opens + 100 after: {exported} exported, {lost} reported lost"
    );
}

fn vigil_api_stage_lost(metrics: &str) -> u64 {
    vigil_e2e::loss::stage(metrics, "export", "lost")
}

#[test]
fn an_export_file_renamed_away_loses_nothing_and_is_written_again_at_its_path() {
    let mut rig = Rig::start(&[]);
    let export = rig.sensor.export.clone();
    let rotated = export.with_extension("json.rotated");
    // Opens keep coming while logrotate's `create` style renames the file away.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let target = rig.target.clone();
    let s = stop.clone();
    let load = std::thread::spawn(move || {
        let mut n = 0u64;
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            open_n(&target, 200);
            n += 200;
            std::thread::sleep(Duration::from_millis(2));
        }
        n
    });
    std::thread::sleep(Duration::from_millis(300));
    std::fs::rename(&export, &rotated).unwrap();
    wait_for(event_timeout(), "the export file written again", || {
        export.exists().then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    rig.opened += load.join().unwrap();
    let ev = rig.settle_in(&[&rotated, &export]);
    assert_eq!(lost_for(&ev, POLICY, None), 0, "a rename loses nothing");
    assert!(policy_events(&read_events(&export), POLICY) > 0);
    let m = rig.equations();
    assert!(
        vigil_e2e::metric_value(&m, "vigil_export_file_reopened_total{reason=\"renamed\"}") >= 1.0
    );
    rig.still_runs();
}

#[test]
fn an_export_file_deleted_under_load_is_recreated_and_what_went_with_it_is_reported() {
    let mut rig = Rig::start(&[]);
    let export = rig.sensor.export.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let target = rig.target.clone();
    let s = stop.clone();
    let load = std::thread::spawn(move || {
        let mut n = 0u64;
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            open_n(&target, 200);
            n += 200;
            std::thread::sleep(Duration::from_millis(2));
        }
        n
    });
    std::thread::sleep(Duration::from_millis(300));
    // Keep the deleted inode open: it shows what was written to it, before and after.
    let old = std::fs::File::open(&export).unwrap();
    std::fs::remove_file(&export).unwrap();
    wait_for(event_timeout(), "the export file created again", || {
        export.exists().then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    rig.opened += load.join().unwrap();
    let old_path = PathBuf::from(format!("/proc/self/fd/{}", {
        use std::os::fd::AsRawFd;
        old.as_raw_fd()
    }));
    let old_events = read_events(&old_path);
    let new_events = wait_for(event_timeout() * 2, "the rest exported", || {
        let ev = read_events(&export);
        let have = policy_events(&old_events, POLICY)
            + policy_events(&ev, POLICY)
            + lost_for(&ev, POLICY, None)
            - lost_by(&ev, POLICY, LossReason::FileDeleted);
        (have == rig.opened).then_some(ev)
    });
    // What the sensor reports lost with the file are lines it wrote there after its last look
    // at the file: they are in the deleted inode, and nowhere else.
    let with_file = lost_by(&new_events, POLICY, LossReason::FileDeleted);
    assert!(with_file <= policy_events(&old_events, POLICY));
    let m = rig.equations();
    assert!(
        vigil_e2e::metric_value(&m, "vigil_export_file_reopened_total{reason=\"deleted\"}") >= 1.0
    );
    rig.still_runs();
    println!("figure: export file deleted under load: {with_file} lines reported lost with it");
}

#[test]
fn copytruncate_goes_on_at_the_start_of_the_file_without_a_hole() {
    let mut rig = Rig::start(&[]);
    let export = rig.sensor.export.clone();
    rig.open(500);
    rig.settle();
    // logrotate's copytruncate: copy, then truncate in place. Lines written between the two
    // are lost and no writer can count them; here nothing is written meanwhile.
    let copy = export.with_extension("json.1");
    std::fs::copy(&export, &copy).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&export)
        .unwrap()
        .set_len(0)
        .unwrap();
    rig.open(500);
    let ev = rig.settle_in(&[&copy, &export]);
    assert_eq!(lost_for(&ev, POLICY, None), 0);
    let bytes = std::fs::read(&export).unwrap();
    assert!(
        !bytes.contains(&0),
        "a hole of NUL bytes where the old content was"
    );
    assert_eq!(bytes.first(), Some(&b'{'));
    let m = rig.equations();
    assert!(
        vigil_e2e::metric_value(&m, "vigil_export_file_reopened_total{reason=\"truncated\"}")
            >= 1.0
    );
}
