//! The gRPC API end to end: a real sensor serving its per-test unix socket, the real `vigil`
//! CLI as the client. Run as root (`make test-host`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vigil_api::events::{EventKind, GetEventsResponse};
use vigil_e2e::{Sensor, bin_path, event_timeout, free_port, read_events, run, wait_for};

/// A `vigil observe --server … -o json` child whose stdout is collected by a thread.
struct Observer {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Observer {
    fn start(socket: &Path, args: &[&str]) -> Observer {
        let mut o = Self::start_unread(socket, args);
        o.read();
        o
    }

    /// Started, but nobody reads its output until [`Observer::read`].
    fn start_unread(socket: &Path, args: &[&str]) -> Observer {
        let child = Command::new(bin_path("vigil"))
            .arg("observe")
            .arg("--server")
            .arg(socket)
            .args(["-o", "json"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("vigil observe");
        Observer {
            child,
            lines: Arc::default(),
        }
    }

    fn read(&mut self) {
        let out = self.child.stdout.take().expect("stdout");
        let sink = self.lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(l);
            }
        });
    }

    /// Events received so far, and the sum of the drop counts reported in-band.
    fn received(&self) -> (Vec<GetEventsResponse>, u64) {
        let mut events = Vec::new();
        let mut dropped = 0;
        for l in self.lines.lock().unwrap().iter() {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            if let Some(r) = v.get("rate_limit_info") {
                let n = &r["number_of_dropped_process_events"];
                dropped += n
                    .as_str()
                    .map(|s| s.parse::<u64>().unwrap())
                    .or_else(|| n.as_u64())
                    .unwrap_or(0);
            } else if v.get("vigil_policy_demoted").is_some() {
                // No policy here declares a CPU budget; a demotion has no process to compare.
                continue;
            } else {
                events.push(GetEventsResponse::from_json(l).expect("event line"));
            }
        }
        (events, dropped)
    }

    /// Waits for the CLI to end (the sensor stopped) and returns everything it printed.
    fn finish(mut self) -> (Vec<GetEventsResponse>, u64) {
        let deadline = std::time::Instant::now() + event_timeout();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "vigil observe exited with {st}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "vigil observe did not end after the sensor stopped"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Let the reader thread take the last lines.
        std::thread::sleep(Duration::from_millis(200));
        self.received()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_json(socket: &Path) -> serde_json::Value {
    let out = Command::new(bin_path("vigil"))
        .args(["status", "-o", "json", "--server"])
        .arg(socket)
        .output()
        .expect("vigil status");
    assert!(
        out.status.success(),
        "vigil status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

/// Waits until the sensor has `n` GetEvents clients, so that nothing is missed.
fn wait_subscribers(socket: &Path, n: u64) {
    wait_for(event_timeout(), "GetEvents clients to subscribe", || {
        (status_json(socket)["subscribers"].as_u64() == Some(n)).then_some(())
    });
}

/// Copies /bin/true to `dir/name` (a binary name no other process on the machine has).
fn true_copy(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy("/bin/true", &p).unwrap();
    p
}

fn binaries(events: &[GetEventsResponse]) -> Vec<(EventKind, String, u32)> {
    events
        .iter()
        .map(|e| {
            let p = e.process().unwrap();
            (e.kind().unwrap(), p.binary.clone(), p.pid.unwrap_or(0))
        })
        .collect()
}

#[test]
fn each_filter_kind_selects_exactly_the_matching_events() {
    let mut sensor = Sensor::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let a = true_copy(dir.path(), "vigil-grpc-a");
    let b = true_copy(dir.path(), "vigil-grpc-b");
    let a_s = a.to_str().unwrap().to_string();
    let b_s = b.to_str().unwrap().to_string();

    // A shell that waits for a line on stdin, then runs a and b as its children.
    let mut parent = Command::new("/bin/sh")
        .args(["-c", &format!("read x; {a_s} child; {b_s} child")])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let parent_pid = parent.id();
    // A shell that waits, then execs b in place (same pid).
    let mut execer = Command::new("/bin/sh")
        .args(["-c", &format!("read x; exec {b_s} same-pid")])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let execer_pid = execer.id();
    // Their own exec events are out before anyone subscribes (an event reaches the file after
    // it was offered to the clients), so no stream can see them: the results below are exact.
    sensor.wait_exec(parent_pid);
    sensor.wait_exec(execer_pid);

    let by_binary = Observer::start(&sensor.socket, &["--process", "vigil-grpc-a$"]);
    let exits_only = Observer::start(
        &sensor.socket,
        &[
            "--process",
            "vigil-grpc-[ab]$",
            "--event-types",
            "process_exit",
        ],
    );
    let by_pid = Observer::start(&sensor.socket, &["--pid", &execer_pid.to_string()]);
    let by_pid_set = Observer::start(&sensor.socket, &["--pid-set", &parent_pid.to_string()]);
    let by_namespace = Observer::start(&sensor.socket, &["--namespace", "prod"]);
    wait_subscribers(&sensor.socket, 5);

    let (pa, _) = run(Command::new(&a).arg("direct"));
    let (pb, _) = run(Command::new(&b).arg("direct"));
    use std::io::Write;
    writeln!(parent.stdin.take().unwrap()).unwrap();
    writeln!(execer.stdin.take().unwrap()).unwrap();
    assert!(parent.wait().unwrap().success());
    assert!(execer.wait().unwrap().success());
    sensor.wait_exit(parent_pid);
    sensor.wait_exit(execer_pid);
    sensor.wait_exit(pa);
    sensor.wait_exit(pb);

    // Stopping the sensor ends every stream after what is queued: then outputs are complete.
    assert!(sensor.stop().success());
    assert!(!sensor.socket.exists(), "socket left behind after SIGTERM");

    let (ev, _) = by_binary.finish();
    let got = binaries(&ev);
    let children_a: Vec<_> = got.iter().filter(|(_, bin, _)| *bin == a_s).collect();
    assert_eq!(got.len(), children_a.len(), "{got:?}");
    // a ran twice (direct, and as the shell's child): exec + exit each.
    assert_eq!(got.len(), 4, "{got:?}");

    let (ev, _) = exits_only.finish();
    let got = binaries(&ev);
    assert!(
        got.iter().all(|(k, _, _)| *k == EventKind::ProcessExit),
        "{got:?}"
    );
    // a twice, b three times (direct, child, exec'd in place).
    assert_eq!(
        got.iter().filter(|(_, bin, _)| *bin == a_s).count(),
        2,
        "{got:?}"
    );
    assert_eq!(
        got.iter().filter(|(_, bin, _)| *bin == b_s).count(),
        3,
        "{got:?}"
    );

    let (ev, _) = by_pid.finish();
    let got = binaries(&ev);
    assert!(got.iter().all(|(_, _, pid)| *pid == execer_pid), "{got:?}");
    assert!(
        got.contains(&(EventKind::ProcessExec, b_s.clone(), execer_pid)),
        "{got:?}"
    );
    assert!(
        got.contains(&(EventKind::ProcessExit, b_s.clone(), execer_pid)),
        "{got:?}"
    );

    let (ev, _) = by_pid_set.finish();
    let got = binaries(&ev);
    // The shell's two children (exec + exit each) and the shell's own exit; never the direct runs.
    assert!(
        !got.iter().any(|(_, _, pid)| *pid == pa || *pid == pb),
        "{got:?}"
    );
    // (The shell may exec its last command in place, so b's pid may be the shell's.)
    let execs: Vec<_> = got
        .iter()
        .filter(|(k, _, _)| *k == EventKind::ProcessExec)
        .map(|(_, bin, _)| bin.clone())
        .collect();
    assert_eq!(execs, vec![a_s.clone(), b_s.clone()], "{got:?}");
    assert!(
        got.iter()
            .any(|(k, _, pid)| *k == EventKind::ProcessExit && *pid == parent_pid),
        "{got:?}"
    );

    // Host processes have no pod: a namespace filter selects none of them.
    let (ev, _) = by_namespace.finish();
    assert!(ev.is_empty(), "{:?}", binaries(&ev));
}

#[test]
fn field_filters_drop_the_fields() {
    let mut sensor = Sensor::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let a = true_copy(dir.path(), "vigil-grpc-fields");
    let a_s = a.to_str().unwrap().to_string();
    let exclude = Observer::start(
        &sensor.socket,
        &[
            "--process",
            "vigil-grpc-fields$",
            "--exclude-fields",
            "parent,process.arguments",
        ],
    );
    let include = Observer::start(
        &sensor.socket,
        &[
            "--process",
            "vigil-grpc-fields$",
            "--include-fields",
            "process.binary",
        ],
    );
    wait_subscribers(&sensor.socket, 2);
    let (pid, _) = run(Command::new(&a).args(["x", "y"]));
    sensor.wait_exit(pid);
    assert!(sensor.stop().success());

    let full = read_events(&sensor.export);
    let exported = full
        .iter()
        .find(|e| e.process_exec.is_some() && e.process().unwrap().pid == Some(pid))
        .expect("exec exported");
    assert!(exported.parent().is_some());
    assert_eq!(exported.process().unwrap().arguments, "x y");

    let (ev, _) = exclude.finish();
    assert_eq!(ev.len(), 2, "{ev:?}");
    for e in &ev {
        let p = e.process().unwrap();
        assert_eq!(p.binary, a_s);
        assert_eq!(p.pid, Some(pid));
        assert_eq!(p.arguments, "");
        assert!(e.parent().is_none());
        assert_eq!(e.node_name, "e2e");
    }
    let (ev, _) = include.finish();
    assert_eq!(ev.len(), 2, "{ev:?}");
    for e in &ev {
        let p = e.process().unwrap();
        assert_eq!(p.binary, a_s);
        assert_eq!(p.pid, None);
        assert!(p.exec_id.is_empty());
        assert!(e.parent().is_none());
    }
}

#[test]
fn a_client_that_reads_nothing_does_not_stall_the_export_and_is_told_what_it_missed() {
    // Under the VM's emulated CPU a burst takes much longer: fewer events, more time. The
    // transport buffers about a thousand events before the sensor's queue fills, so only the
    // larger host burst is sure to overflow it; the accounting must be exact either way.
    let slow = vigil_e2e::slow_machine();
    let n: usize = if slow { 1000 } else { 3000 };
    let patience = Duration::from_secs(if slow { 240 } else { 60 });
    let mut sensor = Sensor::start_with_metrics(&["--grpc-client-queue-size", "16"]);
    let dir = tempfile::tempdir().unwrap();
    let burst = true_copy(dir.path(), "vigil-grpc-burst");
    let burst_s = burst.to_str().unwrap().to_string();
    let mut stuck = Observer::start_unread(
        &sensor.socket,
        &[
            "--process",
            "vigil-grpc-burst$",
            "--event-types",
            "process_exec",
        ],
    );
    wait_subscribers(&sensor.socket, 1);
    for _ in 0..n {
        run(&mut Command::new(&burst));
    }
    // The export has every one of them while the client still reads nothing.
    let count_exported = || {
        read_events(&sensor.export)
            .iter()
            .filter(|e| {
                e.process_exec.is_some() && e.process().is_some_and(|p| p.binary == burst_s)
            })
            .count()
    };
    wait_for(patience, "every burst exec in the export file", || {
        (count_exported() == n).then_some(())
    });
    if !slow {
        let metrics = sensor.metrics();
        assert!(
            metrics.contains("vigil_grpc_client_events_dropped_total{client="),
            "{metrics}"
        );
    }

    // Now it reads: what it gets plus what it is told it missed is exactly the burst.
    stuck.read();
    let (got, dropped) = wait_for(patience, "events + drops to add up", || {
        let (ev, dropped) = stuck.received();
        (ev.len() as u64 + dropped == n as u64).then_some((ev.len(), dropped))
    });
    assert!(slow || dropped > 0, "no drops reported; received {got}");
    assert!(got > 0);
    assert!(sensor.stop().success());
}

#[test]
fn status_reports_the_probed_features() {
    let mut sensor = Sensor::start(&[]);
    let probe = Command::new(bin_path("vigil-sensor"))
        .arg("probe")
        .output()
        .unwrap();
    let probed: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    let status = status_json(&sensor.socket);
    assert_eq!(status["health"], "running");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["node_name"], "e2e");
    let features = status["features"].as_object().unwrap();
    assert!(features.len() >= 10, "{status}");
    for (name, available) in features {
        assert_eq!(
            Some(available),
            probed.get(name),
            "feature {name}: status says {available}, probe says {:?}",
            probed.get(name)
        );
    }
    // The text form names them too.
    let out = Command::new(bin_path("vigil"))
        .args(["status", "--server"])
        .arg(&sensor.socket)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("health:    running"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("tracepoint")),
        "{text}"
    );
    assert!(sensor.stop().success());
}

#[test]
fn observe_against_a_missing_socket_fails_with_one_clear_line() {
    for args in [
        vec!["observe", "--server", "/nonexistent.sock"],
        vec!["status", "--server", "/nonexistent.sock"],
    ] {
        let out = Command::new(bin_path("vigil"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("/nonexistent.sock"), "{err}");
        assert!(err.contains("no such socket"), "{err}");
    }
}

#[test]
fn socket_is_0660_replaces_a_stale_one_refuses_a_live_one_and_tcp_works() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("run");
    std::fs::create_dir(&sub).unwrap();
    let socket = sub.join("vigil.sock");
    // A socket file nobody listens on, as a crashed sensor leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let sock_s = socket.to_str().unwrap();
    let mut sensor = Sensor::start(&["--grpc-socket", sock_s, "--grpc-address", &addr]);
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(status_json(&socket)["health"], "running");
    let url = format!("http://{addr}");
    assert_eq!(status_json(Path::new(&url))["health"], "running");

    // A second sensor must not take over a socket that is in use.
    let out = Command::new(bin_path("vigil-sensor"))
        .args([
            "--instance",
            &vigil_e2e::unique_instance(),
            "--keep-enforcing-on-exit=false",
            "--node-name",
            "e2e2",
            "--log-level",
            "warn",
            "--grpc-socket",
            sock_s,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use"), "{err}");
    assert_eq!(status_json(&socket)["node_name"], "e2e");

    assert!(sensor.stop().success());
    assert!(!socket.exists());
}

#[test]
fn reconnect_follows_a_restarted_sensor() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vigil.sock");
    let sock_s = socket.to_str().unwrap().to_string();
    let bin = true_copy(dir.path(), "vigil-grpc-again");
    let bin_s = bin.to_str().unwrap().to_string();
    let mut first = Sensor::start(&["--grpc-socket", &sock_s]);
    let obs = Observer::start(
        &socket,
        &[
            "--reconnect",
            "--process",
            "vigil-grpc-again$",
            "--event-types",
            "process_exec",
        ],
    );
    wait_subscribers(&socket, 1);
    let (p1, _) = run(&mut Command::new(&bin));
    first.wait_exit(p1);
    assert!(first.stop().success());
    let mut second = Sensor::start(&["--grpc-socket", &sock_s]);
    wait_subscribers(&socket, 1);
    let (p2, _) = run(&mut Command::new(&bin));
    second.wait_exit(p2);
    let pids = wait_for(event_timeout(), "both execs through one observe", || {
        let (ev, _) = obs.received();
        let pids: Vec<u32> = ev
            .iter()
            .filter_map(|e| {
                e.process()
                    .filter(|p| p.binary == bin_s)
                    .and_then(|p| p.pid)
            })
            .collect();
        (pids.len() >= 2).then_some(pids)
    });
    assert_eq!(pids, vec![p1, p2]);
    assert!(second.stop().success());
}

#[test]
fn an_empty_grpc_socket_disables_the_api() {
    let mut sensor = Sensor::start(&["--grpc-socket", ""]);
    let (pid, _) = run(&mut Command::new("/bin/true"));
    sensor.wait_exit(pid);
    let sockets: Vec<_> = std::fs::read_dir(sensor.dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| std::os::unix::fs::FileTypeExt::is_socket(&e.file_type().unwrap()))
        .collect();
    assert!(sockets.is_empty(), "{sockets:?}");
    assert!(sensor.stop().success());
}
