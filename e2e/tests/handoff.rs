//! Enforcement that outlives a sensor: the programs of a sensor that stops (or is killed) keep
//! enforcing, the next sensor of the instance takes them over without reloading anything, an
//! upgrade — same build with another configuration, or another build — never leaves a moment
//! without enforcement, and `vigil-sensor cleanup` removes everything. Host and VM.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use vigil_e2e::{
    Sensor, bin_path, event_timeout, metric_value, open_policy, policy_list, unique_instance,
    wait_for,
};

/// Removes the instance's pins whatever happens to the test.
struct Instance(String);

impl Instance {
    fn new() -> Instance {
        Instance(unique_instance())
    }

    fn generations(&self) -> Vec<PathBuf> {
        std::fs::read_dir(Path::new("/sys/fs/bpf/vigil").join(&self.0))
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = Command::new(bin_path("vigil-sensor"))
            .args(["cleanup", "--instance", &self.0])
            .output();
    }
}

fn sigkill_policy(name: &str, prefix: &str) -> String {
    open_policy(
        name,
        prefix,
        "      matchActions:\n      - action: Sigkill\n",
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// Opens `path` in a new process: true when the process was killed by SIGKILL.
fn killed_opening(path: &str) -> bool {
    use std::os::unix::process::ExitStatusExt as _;
    let st = Command::new(bin_path("vigil-e2e-workload"))
        .args(["open", path])
        .output()
        .expect("workload")
        .status;
    st.signal() == Some(libc::SIGKILL)
}

/// Ids of the loaded `vigil_*` programs, but the task iterator: each sensor loads its own (it
/// enforces nothing; it runs only when the process cache heals after a loss).
fn program_ids() -> Vec<u64> {
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
        .expect("bpftool");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool JSON");
    let mut ids: Vec<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("vigil_") && !n.starts_with("vigil_iter"))
        })
        .filter_map(|p| p["id"].as_u64())
        .collect();
    ids.sort();
    ids
}

/// Runs `path` opens in a loop until stopped; counts the ones that were not killed.
struct Probe {
    stop: Arc<AtomicBool>,
    runs: Arc<AtomicU64>,
    escapes: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Probe {
    fn start(path: String) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let runs = Arc::new(AtomicU64::new(0));
        let escapes = Arc::new(AtomicU64::new(0));
        let (s, r, e) = (stop.clone(), runs.clone(), escapes.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if !killed_opening(&path) {
                    e.fetch_add(1, Ordering::Relaxed);
                }
                r.fetch_add(1, Ordering::Relaxed);
            }
        });
        Probe {
            stop,
            runs,
            escapes,
            thread: Some(thread),
        }
    }

    fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    fn escapes(&self) -> u64 {
        self.escapes.load(Ordering::Relaxed)
    }

    /// Stops the loop; returns (runs, escapes).
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        (
            self.runs.load(Ordering::Relaxed),
            self.escapes.load(Ordering::Relaxed),
        )
    }
}

/// Waits until the probe has run at least `n` more times.
fn probe_runs(p: &Probe, n: u64) {
    let target = p.runs() + n;
    wait_for(event_timeout(), "probe runs", || {
        (p.runs() >= target).then_some(())
    });
}

#[test]
fn a_killed_sensor_keeps_enforcing_and_the_next_takes_over_without_reloading() {
    let inst = Instance::new();
    let work = tempfile::tempdir().unwrap();
    let d = work.path().to_str().unwrap().to_string();
    let policy = write(
        work.path(),
        "kill.yaml",
        &sigkill_policy("kill-forbidden", &format!("{d}/forbidden/")),
    );
    std::fs::create_dir_all(work.path().join("forbidden")).unwrap();
    let forbidden = format!("{d}/forbidden/f");
    let mut a = Sensor::start(&[
        "--instance",
        &inst.0,
        "--keep-enforcing-on-exit=true",
        "--policy",
        &policy,
    ]);
    assert!(killed_opening(&forbidden), "the policy enforces");
    // A process that lives across the hand-over: its exec_id must stay the same.
    let mut long = Command::new("sleep").arg("300").spawn().unwrap();
    let long_pid = long.id();
    let exec = a.wait_exec(long_pid);
    let exec_id = exec.process_exec.unwrap().process.unwrap().exec_id.clone();
    let ids_before = program_ids();
    a.kill();

    // No sensor runs: the pinned programs go on.
    assert!(killed_opening(&forbidden), "killed while no sensor ran");
    let (away_pid, away_status) =
        vigil_e2e::run(Command::new(bin_path("vigil-e2e-workload")).args(["open", &forbidden]));
    assert!(!away_status.success());

    let b = Sensor::start_with_metrics(&["--instance", &inst.0, "--policy", &policy]);
    assert_eq!(metric_value(&b.metrics(), "vigil_handoff_took_over"), 1.0);
    assert_eq!(
        program_ids(),
        ids_before,
        "the same programs run: nothing loaded again"
    );
    // The task iterator (for heals after loss) is each sensor's own; nothing else is loaded.
    assert!(
        !b.metrics()
            .lines()
            .any(|l| l.starts_with("vigil_bpf_program_loads") && !l.contains("vigil_iter")),
        "no program was loaded:\n{}",
        b.metrics()
    );
    let list = policy_list(&b.socket);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["name"], "kill-forbidden");
    assert!(killed_opening(&forbidden), "enforced after the take-over");

    // What happened while no sensor ran is exported by the next one: the exec of the
    // process killed then, from the ring buffer.
    b.wait_exec(away_pid);
    // The process that lived across the hand-over keeps its exec_id.
    long.kill().unwrap();
    long.wait().unwrap();
    let exit = b.wait_exit(long_pid);
    assert_eq!(exit.process_exit.unwrap().process.unwrap().exec_id, exec_id);

    // The last sensor stops without hand-over (--keep-enforcing-on-exit=false): nothing is
    // left, nothing enforces.
    let mut b = b;
    assert!(b.stop().success());
    assert!(inst.generations().is_empty(), "{:?}", inst.generations());
    assert!(
        !killed_opening(&forbidden),
        "nothing enforces after the stop"
    );
}

/// Sensor A (policies keep + gone) hands over to sensor B (keep + new) while a probe opens the
/// kept path in a loop: every probe is killed, before, during and after.
/// What [`upgrade`] saw: probes run, probes that escaped in all and once the new sensor was
/// ready, the new sensor and its instance.
struct Upgrade {
    runs: u64,
    escapes: u64,
    escapes_after_ready: u64,
    b: Sensor,
    inst: Instance,
    _work: tempfile::TempDir,
}

impl Upgrade {
    /// No gap where the kernel pins every link (5.15+). Before, the kprobe links end with the
    /// old sensor, so the probes may escape between its exit and the new one's start, and none
    /// may once the new one is ready.
    fn assert_no_gap_the_kernel_allows(&self) {
        let (runs, escapes, late) = (self.runs, self.escapes, self.escapes_after_ready);
        if kernel_at_least(5, 15) {
            assert_eq!(escapes, 0, "{escapes} of {runs} probes escaped");
        } else {
            assert_eq!(
                late, 0,
                "{late} of {runs} probes escaped after the take-over"
            );
        }
    }
}

fn upgrade(extra_b: &[&str]) -> Upgrade {
    let inst = Instance::new();
    let work = tempfile::tempdir().unwrap();
    let d = work.path().to_str().unwrap().to_string();
    for sub in ["keep", "gone", "new"] {
        std::fs::create_dir_all(work.path().join(sub)).unwrap();
    }
    let keep = write(
        work.path(),
        "keep.yaml",
        &sigkill_policy("keep", &format!("{d}/keep/")),
    );
    let gone = write(
        work.path(),
        "gone.yaml",
        &sigkill_policy("gone", &format!("{d}/gone/")),
    );
    let new = write(
        work.path(),
        "new.yaml",
        &sigkill_policy("new", &format!("{d}/new/")),
    );
    let mut a = Sensor::start(&[
        "--instance",
        &inst.0,
        "--keep-enforcing-on-exit",
        "--policy",
        &keep,
        "--policy",
        &gone,
    ]);
    let probe = Probe::start(format!("{d}/keep/f"));
    probe_runs(&probe, 3);
    assert!(a.stop().success());
    probe_runs(&probe, 3);
    let mut args = vec![
        "--instance",
        inst.0.as_str(),
        "--policy",
        keep.as_str(),
        "--policy",
        new.as_str(),
    ];
    args.extend_from_slice(extra_b);
    let b = Sensor::start_with_metrics(&args);
    // The run in flight when the sensor became ready may have started before it.
    probe_runs(&probe, 2);
    let ready_escapes = probe.escapes();
    probe_runs(&probe, 3);
    let (runs, escapes) = probe.finish();
    assert!(
        !killed_opening(&format!("{d}/gone/f")),
        "the removed policy no longer acts"
    );
    assert!(
        killed_opening(&format!("{d}/new/f")),
        "the added policy acts"
    );
    let mut names: Vec<String> = policy_list(&b.socket)
        .iter()
        .map(|p| p["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["keep", "new"]);
    assert_eq!(inst.generations().len(), 1, "{:?}", inst.generations());
    Upgrade {
        runs,
        escapes,
        escapes_after_ready: escapes - ready_escapes,
        b,
        inst,
        _work: work,
    }
}

#[test]
fn an_upgrade_with_another_configuration_leaves_no_gap() {
    let u = upgrade(&[]);
    u.assert_no_gap_the_kernel_allows();
    let (b, inst) = (&u.b, &u.inst);
    assert_eq!(metric_value(&b.metrics(), "vigil_handoff_took_over"), 1.0);
    // The policy removed from the configuration left nothing behind in the kernel.
    let links: Vec<String> = std::fs::read_dir(inst.generations()[0].join("links"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut hook_links: Vec<&String> = links
        .iter()
        .filter(|l| !l.starts_with("process-"))
        .collect();
    hook_links.sort();
    // Before 5.15 a kprobe link cannot be pinned: the point is attached again, not pinned.
    let pinned = usize::from(kernel_at_least(5, 15));
    assert_eq!(
        hook_links.len(),
        pinned,
        "one openat attach point: {links:?}"
    );
}

#[test]
fn another_build_loads_beside_the_old_one_and_retires_it_without_a_gap() {
    let u = upgrade(&["--test-stamp", "another-build"]);
    u.assert_no_gap_the_kernel_allows();
    let m = u.b.metrics();
    assert_eq!(metric_value(&m, "vigil_handoff_took_over"), 0.0);
    assert_eq!(
        metric_value(&m, "vigil_handoff_retired_generations_total"),
        1.0
    );
}

#[test]
fn cleanup_removes_what_a_stopped_sensor_left_enforcing() {
    let inst = Instance::new();
    let work = tempfile::tempdir().unwrap();
    let d = work.path().to_str().unwrap().to_string();
    std::fs::create_dir_all(work.path().join("x")).unwrap();
    let p = write(
        work.path(),
        "p.yaml",
        &sigkill_policy("p", &format!("{d}/x/")),
    );
    let mut a = Sensor::start(&[
        "--instance",
        &inst.0,
        "--keep-enforcing-on-exit",
        "--policy",
        &p,
    ]);
    assert!(a.stop().success());
    assert_eq!(inst.generations().len(), 1);
    assert!(killed_opening(&format!("{d}/x/f")), "left enforcing");
    let out = Command::new(bin_path("vigil-sensor"))
        .args(["cleanup", "--instance", &inst.0])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed"));
    assert!(inst.generations().is_empty());
    assert!(
        !killed_opening(&format!("{d}/x/f")),
        "nothing enforces after cleanup"
    );
    let bad = Command::new(bin_path("vigil-sensor"))
        .args(["cleanup", "--instance", "../etc"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("starting with a letter"));
}

#[test]
fn pins_changed_while_no_sensor_ran_are_reported_and_not_taken_over() {
    let inst = Instance::new();
    let work = tempfile::tempdir().unwrap();
    let d = work.path().to_str().unwrap().to_string();
    std::fs::create_dir_all(work.path().join("x")).unwrap();
    let p = write(
        work.path(),
        "p.yaml",
        &sigkill_policy("p", &format!("{d}/x/")),
    );
    let args = [
        "--instance",
        &inst.0,
        "--keep-enforcing-on-exit",
        "--policy",
        &p,
    ];
    let mut a = Sensor::start(&args);
    assert!(a.stop().success());
    let old = inst.generations();
    assert_eq!(old.len(), 1);
    // While no sensor runs, someone unlinks one of the enforcing links.
    let links = old[0].join("links");
    let victim = std::fs::read_dir(&links)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .next()
        .unwrap_or_else(|| panic!("no link pinned in {}", links.display()));
    std::fs::remove_file(&victim).unwrap();
    let name = victim.file_name().unwrap().to_str().unwrap().to_string();

    let b = Sensor::start_with_metrics(&args);
    let m = b.metrics();
    assert_eq!(
        metric_value(&m, "vigil_handoff_took_over"),
        0.0,
        "a changed generation is not taken over"
    );
    assert!(
        metric_value(&m, "vigil_handoff_pins_changed_total") >= 1.0,
        "{m}"
    );
    let ev = b.wait_event("the pins-changed event", |e| {
        e.process_lsm
            .as_ref()
            .is_some_and(|l| l.function_name == "vigil_pins_changed")
    });
    let lsm = ev.process_lsm.unwrap();
    assert_eq!(lsm.policy_name, "vigil-self-protection");
    assert_eq!(
        lsm.process.as_ref().and_then(|p| p.pid),
        Some(b.pid()),
        "the event is the sensor's own"
    );
    let text = serde_json::to_string(&lsm.args).unwrap();
    assert!(
        text.contains(&format!("links/{name} removed")),
        "the change names the unlinked pin: {text}"
    );
    // A new generation enforces; the changed one is retired.
    assert!(
        killed_opening(&format!("{d}/x/f")),
        "the new generation enforces"
    );
    wait_for(
        event_timeout(),
        "the changed generation to be retired",
        || (!old[0].exists()).then_some(()),
    );
    // An untouched generation is taken over as before.
    drop(b);
    let c = Sensor::start_with_metrics(&args);
    assert_eq!(metric_value(&c.metrics(), "vigil_handoff_took_over"), 1.0);
    assert_eq!(
        metric_value(&c.metrics(), "vigil_handoff_pins_changed_total"),
        0.0
    );
}

/// Whether the running kernel is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

/// What a kernel without pinnable perf-event links (before 5.15: kprobes, tracepoints and
/// uprobes) does at a restart: those attachments end with the sensor, and the next one takes
/// the policies over, attaches them again and says how many points it had to attach (their
/// hooks did not run in between). Where every link is pinned nothing stops and nothing is
/// attached again. The same test on every kernel, with the kernel deciding which half holds.
#[test]
fn a_restart_attaches_again_what_the_kernel_could_not_pin_and_says_so() {
    let inst = Instance::new();
    let work = tempfile::tempdir().unwrap();
    let d = work.path().to_str().unwrap().to_string();
    let policy = write(
        work.path(),
        "kill.yaml",
        &sigkill_policy("kill-reattach", &format!("{d}/forbidden/")),
    );
    std::fs::create_dir_all(work.path().join("forbidden")).unwrap();
    let forbidden = format!("{d}/forbidden/f");
    let pinnable = kernel_at_least(5, 15);
    let mut a = Sensor::start(&[
        "--instance",
        &inst.0,
        "--keep-enforcing-on-exit=true",
        "--policy",
        &policy,
    ]);
    assert!(killed_opening(&forbidden), "the policy enforces");
    a.kill();
    assert_eq!(
        killed_opening(&forbidden),
        pinnable,
        "enforced while no sensor ran: only where the links are pinned"
    );

    // Twice: the state the second sensor leaves must say the same as the first's.
    for round in 1..=2 {
        let mut b = Sensor::start_with_metrics(&[
            "--instance",
            &inst.0,
            "--keep-enforcing-on-exit=true",
            "--policy",
            &policy,
        ]);
        let m = b.metrics();
        assert_eq!(metric_value(&m, "vigil_handoff_took_over"), 1.0, "{m}");
        let reattached = metric_value(&m, "vigil_handoff_reattached_points");
        if pinnable {
            assert_eq!(reattached, 0.0, "round {round}: {m}");
        } else {
            assert!(reattached >= 1.0, "round {round}: {m}");
            assert!(
                b.stderr().contains("attached again"),
                "round {round}: {}",
                b.stderr()
            );
        }
        let list = policy_list(&b.socket);
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0]["state"], "enabled", "{list:?}");
        assert!(
            killed_opening(&forbidden),
            "round {round}: enforced after the take-over"
        );
        b.kill();
    }
}
