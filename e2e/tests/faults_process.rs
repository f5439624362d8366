//! Fault suite, the sensor process and its links: stopped (SIGSTOP) for 5 s under load, killed
//! with SIGKILL while a policy loads, run in a memory cgroup limited just above its documented
//! need during an exec storm, and its operator link cut and restored across a policy change.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vigil_api::events::{GetEventsResponse, LossStage};
use vigil_e2e::loss::{MemoryCgroup, equations_hold, lost_for, open_n, policy_events};
use vigil_e2e::{
    Operator, Sensor, bin_path, event_timeout, metric_value, open_policy, read_events, signal,
    wait_for,
};

const POLICY: &str = "faults-proc-open";

fn watched_dir(dir: &Path, name: &str) -> PathBuf {
    let w = dir.join(name);
    std::fs::create_dir_all(&w).unwrap();
    std::fs::write(w.join("f"), b"x").unwrap();
    w
}

fn is_policy_event(e: &GetEventsResponse, policy: &str, path: &Path) -> bool {
    e.process_kprobe.as_ref().is_some_and(|k| {
        k.policy_name == policy
            && k.args
                .iter()
                .any(|a| a.string() == Some(path.to_str().unwrap()))
    })
}

/// Opens `file` until an event of `policy` for it shows, so that the policy is known live.
fn wait_live(sensor: &Sensor, policy: &str, file: &Path) {
    wait_for(event_timeout() * 2, "the policy to report an open", || {
        open_n(file, 1);
        std::thread::sleep(Duration::from_millis(100));
        sensor
            .events()
            .iter()
            .any(|e| is_policy_event(e, policy, file))
            .then_some(())
    });
}

#[test]
fn a_sensor_stopped_for_5_s_under_load_reports_what_overflowed_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let watched = watched_dir(dir.path(), "watched");
    let target = watched.join("f");
    let policy = dir.path().join("p.yaml");
    std::fs::write(
        &policy,
        open_policy(POLICY, &format!("{}/", watched.display()), ""),
    )
    .unwrap();
    let sensor = Sensor::start_with_metrics(&[
        "--policy",
        policy.to_str().unwrap(),
        "--ring-buffer-size",
        "1048576",
        "--export-file-max-size-mb",
        "1000",
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let (s, t) = (stop.clone(), target.clone());
    let load = std::thread::spawn(move || {
        let mut n = 0u64;
        while !s.load(Ordering::Relaxed) {
            open_n(&t, 10);
            n += 10;
            std::thread::sleep(Duration::from_millis(2));
        }
        n
    });
    std::thread::sleep(Duration::from_millis(500));
    signal(sensor.pid(), libc::SIGSTOP);
    // The fault itself: five seconds without a reader.
    std::thread::sleep(Duration::from_secs(5));
    signal(sensor.pid(), libc::SIGCONT);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let opened = load.join().unwrap();
    // Cheap first (metrics), then the file once.
    wait_for(event_timeout() * 3, "every open counted", || {
        let m = sensor.metrics();
        // The only policy loaded: its events, sent on or lost.
        let posted = metric_value(&m, "vigil_policy_events_total")
            + metric_value(&m, "vigil_policy_events_lost_total");
        (posted as u64 >= opened && equations_hold(&m).is_ok()).then_some(())
    });
    let ev = wait_for(
        event_timeout(),
        "the file to account for every open",
        || {
            let ev = read_events(&sensor.export);
            (policy_events(&ev, POLICY) + lost_for(&ev, POLICY, None) == opened).then_some(ev)
        },
    );
    let lost = lost_for(&ev, POLICY, Some(LossStage::Kernel));
    assert!(
        lost > 0,
        "5 s stopped under load, a 1 MiB ring buffer lost nothing"
    );
    let (pid, _) = vigil_e2e::run(Command::new("/bin/true").stdout(Stdio::null()));
    sensor.wait_exec(pid);
    println!(
        "figure: SIGSTOP 5 s, {opened} opens at ~5000/s, 1 MiB ring buffer: {} exported, {lost} reported lost",
        policy_events(&ev, POLICY)
    );
}

/// Map ids pinned in a sensor's pin directory.
fn pinned_map_ids(pin_dir: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(pin_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let out = Command::new("bpftool")
                .args(["-j", "map", "show", "pinned"])
                .arg(e.path())
                .output()
                .ok()?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            v["id"].as_u64()
        })
        .collect()
}

fn map_exists(id: u64) -> bool {
    Command::new("bpftool")
        .args(["map", "show", "id", &id.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Removes an instance's pins whatever happens to the test.
struct InstanceGuard(String);

impl Drop for InstanceGuard {
    fn drop(&mut self) {
        let _ = Command::new(bin_path("vigil-sensor"))
            .args(["cleanup", "--instance", &self.0])
            .output();
    }
}

#[test]
fn a_sensor_killed_during_a_policy_load_is_taken_over_and_nothing_it_left_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let watched = watched_dir(dir.path(), "watched");
    let policy = dir.path().join("p.yaml");
    std::fs::write(
        &policy,
        open_policy(POLICY, &format!("{}/", watched.display()), ""),
    )
    .unwrap();
    let inst = InstanceGuard(vigil_e2e::unique_instance());
    // Every program load takes 3 s more, so the kill lands inside one.
    let first = Sensor::start_env(
        &["--instance", &inst.0],
        &[("VIGIL_TEST_SLOW_LOAD_MS", "3000")],
    );
    let pid = first.pid();
    let pin_dir = first.pin_dir();
    let maps = pinned_map_ids(&pin_dir);
    assert!(!maps.is_empty(), "no maps pinned in {}", pin_dir.display());
    let add = Command::new(bin_path("vigil"))
        .args(["policy", "add"])
        .arg(&policy)
        .arg("--server")
        .arg(&first.socket)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The fault: SIGKILL one second into the load.
    std::thread::sleep(Duration::from_secs(1));
    signal(pid, libc::SIGKILL);
    let out = add.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the add finished before the kill: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(first);
    assert!(
        pin_dir.exists(),
        "a killed sensor cannot clean up after itself"
    );
    // The next sensor of the instance takes the generation over and runs normally.
    let mut second = Sensor::start(&["--instance", &inst.0, "--policy", policy.to_str().unwrap()]);
    assert_eq!(
        second.pin_dir(),
        pin_dir,
        "the next sensor did not take the generation over"
    );
    wait_live(&second, POLICY, &watched.join("f"));
    // Stopped without hand-over, it removes the generation with whatever the half-done load
    // of the killed sensor left in it: every map of the first sensor is freed.
    assert!(second.stop().success());
    assert!(
        !pin_dir.exists(),
        "{} left behind after the stop",
        pin_dir.display()
    );
    wait_for(
        event_timeout(),
        "the killed sensor's maps to be freed",
        || maps.iter().all(|id| !map_exists(*id)).then_some(()),
    );
}

/// The sensor's memory need by the formula of charts/vigil/README.md for this configuration.
fn documented_need(ring: u64, table: u64, cache: u64, queue: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1);
    ring + table * 420 + 8 * MIB + cpus * 75 * 1024 + cache * 1024 + queue * 1536 + 40 * MIB
}

#[test]
fn under_an_exec_storm_in_a_memory_cgroup_just_above_its_documented_need_the_sensor_is_not_oom_killed()
 {
    let (ring, table, cache, queue) = (1u64 << 20, 4096, 4096, 4096);
    let need = documented_need(ring, table, cache, queue);
    let limit = need + need / 8;
    let cg = MemoryCgroup::create(&format!("vigil-e2e-mem-{}", std::process::id()), limit);
    let join = format!("echo $$ > {} && exec \"$@\"", cg.procs().display());
    let (ring_s, table_s, cache_s, queue_s) = (
        ring.to_string(),
        table.to_string(),
        cache.to_string(),
        queue.to_string(),
    );
    let mut sensor = Sensor::start_wrapped(
        &["sh", "-c", &join, "sh"],
        &[
            "--ring-buffer-size",
            &ring_s,
            "--process-table-size",
            &table_s,
            "--process-cache-size",
            &cache_s,
            "--export-queue-size",
            &queue_s,
        ],
        &[],
    );
    let in_cgroup = std::fs::read_to_string(cg.procs()).unwrap();
    assert!(
        in_cgroup
            .lines()
            .any(|l| l.trim() == sensor.pid().to_string()),
        "the sensor is not in {}",
        cg.dir.display()
    );
    let execs = if vigil_e2e::slow_machine() {
        "500"
    } else {
        "2500"
    };
    let storms: Vec<_> = (0..4)
        .map(|_| {
            Command::new(bin_path("vigil-e2e-workload"))
                .args(["exec-storm", execs, "/bin/true"])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut s in storms {
        assert!(s.wait().unwrap().success());
    }
    let (pid, _) = vigil_e2e::run(Command::new("/bin/true").stdout(Stdio::null()));
    sensor.wait_exec(pid);
    assert_eq!(
        cg.oom_kills(),
        0,
        "the sensor was OOM-killed in {}",
        cg.dir.display()
    );
    let peak = cg.peak();
    assert!(sensor.stop().success(), "{}", sensor.stderr());
    println!(
        "figure: 4 x {execs} execs under a {} MiB limit (documented need {} MiB): peak {} MiB, no OOM kill",
        limit >> 20,
        need >> 20,
        peak >> 20
    );
}

/// A TCP proxy that the test can cut (every connection closed, the port refused) and restore.
struct Proxy {
    port: u16,
    target: String,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(target: String) -> Proxy {
        let p = Proxy {
            port: vigil_e2e::free_port(),
            target,
            up: Arc::new(AtomicBool::new(false)),
            conns: Arc::default(),
        };
        p.restore();
        p
    }

    fn restore(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("proxy port");
        listener.set_nonblocking(true).unwrap();
        self.up.store(true, Ordering::SeqCst);
        let (up, conns, target) = (self.up.clone(), self.conns.clone(), self.target.clone());
        std::thread::spawn(move || {
            while up.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((a, _)) => {
                        a.set_nonblocking(false).unwrap();
                        let Ok(b) = TcpStream::connect(&target) else {
                            continue;
                        };
                        conns
                            .lock()
                            .unwrap()
                            .extend([a.try_clone().unwrap(), b.try_clone().unwrap()]);
                        for (mut from, mut to) in
                            [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)]
                        {
                            std::thread::spawn(move || {
                                let mut buf = [0u8; 16384];
                                while let Ok(n) = from.read(&mut buf) {
                                    if n == 0 || to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                let _ = to.shutdown(Shutdown::Both);
                            });
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
    }

    /// Every connection closed; the port refuses new ones until [`Proxy::restore`].
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

#[test]
fn an_operator_link_cut_during_a_policy_change_keeps_the_old_version_until_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let a = watched_dir(dir.path(), "a").join("f");
    let b = watched_dir(dir.path(), "b").join("f");
    let version =
        |d: &Path| open_policy(POLICY, &format!("{}/", d.parent().unwrap().display()), "");
    let op = Operator::start_with(&[], &[("p.yaml", &version(&a))]);
    let proxy = Proxy::start(op.address());
    let url = format!("http://127.0.0.1:{}", proxy.port);
    let sensor = Sensor::start_with_metrics(&["--operator-address", &url]);
    wait_live(&sensor, POLICY, &a);
    // The link goes down; the policy changes on the operator meanwhile.
    proxy.cut();
    op.write_policy("p.yaml", &version(&b));
    wait_for(event_timeout(), "the sensor to notice the cut", || {
        (metric_value(&sensor.metrics(), "vigil_operator_connected") == 0.0).then_some(())
    });
    // What runs is still the old version: a is reported, b is not.
    open_n(&b, 1);
    wait_live(&sensor, POLICY, &a);
    assert!(
        !sensor
            .events()
            .iter()
            .any(|e| is_policy_event(e, POLICY, &b)),
        "the new version ran before the link came back"
    );
    // The link returns: the sensor resyncs and runs the new version.
    proxy.restore();
    wait_live(&sensor, POLICY, &b);
    let before = sensor
        .events()
        .iter()
        .filter(|e| is_policy_event(e, POLICY, &a))
        .count();
    open_n(&a, 1);
    open_n(&b, 1);
    wait_for(event_timeout(), "the b open after the a open", || {
        let ev = sensor.events();
        (ev.iter().filter(|e| is_policy_event(e, POLICY, &b)).count() >= 2).then_some(())
    });
    let after = sensor
        .events()
        .iter()
        .filter(|e| is_policy_event(e, POLICY, &a))
        .count();
    assert_eq!(before, after, "the old version still runs after the resync");
    assert!(
        metric_value(
            &sensor.metrics(),
            "vigil_operator_connection_failures_total"
        ) >= 1.0
    );
}
