//! Process lifecycle on the real kernel: a real sensor, real processes, the exported JSON.
//! Run as root (`make test-host`; the VM suite runs them too).

use std::collections::HashMap;
use std::os::unix::fs::symlink;
use std::process::{Command, Stdio};
use std::time::Duration;

use vigil_api::events::{GetEventsResponse, parse_exec_id};
use vigil_e2e::{Sensor, bin_path, metric_value, run, signal, slow_machine, wait_for};

fn workload() -> Command {
    Command::new(bin_path("vigil-e2e-workload"))
}

fn exec_process(e: &GetEventsResponse) -> &vigil_api::events::Process {
    e.process_exec
        .as_ref()
        .and_then(|x| x.process.as_ref())
        .expect("exec event")
}

/// A copy of /bin/true under a directory whose name has a space, reached through a relative
/// symlink: `binary` must be the resolved absolute path, `cwd` the real directory, and the
/// arguments quoted where they contain spaces.
#[test]
fn exec_resolves_binary_cwd_and_quotes_arguments() {
    let mut sensor = Sensor::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let real_dir = dir.path().join("bin dir");
    std::fs::create_dir(&real_dir).unwrap();
    let target = real_dir.join("vigil-true");
    std::fs::copy("/bin/true", &target).unwrap();
    // Not an applet name: in the VM /bin/true is busybox, which picks its applet by argv[0].
    symlink(&target, dir.path().join("vigil-link")).unwrap();
    let (pid, _) = run(Command::new("./vigil-link")
        .args(["a b", "c"])
        .current_dir(dir.path()));
    let ev = sensor.wait_exec(pid);
    let p = exec_process(&ev);
    assert_eq!(p.binary, target.to_str().unwrap());
    assert_eq!(p.arguments, "\"a b\" c");
    assert_eq!(p.cwd, dir.path().to_str().unwrap());
    assert!(p.flags.split(' ').any(|f| f == "execve"), "{}", p.flags);
    assert!(!p.flags.contains("rootcwd"));
    let id = parse_exec_id(&p.exec_id).unwrap();
    assert_eq!((id.node.as_str(), id.pid), ("e2e", pid));
    assert!(sensor.stop().success());
}

#[test]
fn exit_status_and_sigkill() {
    let mut sensor = Sensor::start(&[]);
    let (pid, status) = run(Command::new("/bin/sh").args(["-c", "exit 3"]));
    assert_eq!(status.code(), Some(3));
    let exit = sensor.wait_exit(pid);
    let x = exit.process_exit.as_ref().unwrap();
    assert_eq!(x.status, 3);
    assert_eq!(x.signal, "");
    assert_eq!(exit.process().unwrap().arguments, "-c \"exit 3\"");

    let mut child = Command::new("/bin/sleep").arg("60").spawn().unwrap();
    let pid = child.id();
    sensor.wait_exec(pid);
    signal(pid, libc::SIGKILL);
    child.wait().unwrap();
    let exit = sensor.wait_exit(pid);
    let x = exit.process_exit.as_ref().unwrap();
    assert_eq!(x.signal, "SIGKILL");
    assert_eq!(x.status, 0);
    assert!(sensor.stop().success());
}

/// The shell's exec_id is its child's parent_exec_id, in the child's process and as its parent.
#[test]
fn child_links_to_parent_exec_id() {
    let mut sensor = Sensor::start(&[]);
    let out = Command::new("/bin/sh")
        .args(["-c", "/bin/true vigil-marker; echo $$"])
        .output()
        .unwrap();
    let sh_pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let sh = sensor.wait_exec(sh_pid);
    let sh_id = exec_process(&sh).exec_id.clone();
    let child = sensor.wait_event("exec of /bin/true under the shell", |e| {
        e.process_exec
            .as_ref()
            .and_then(|x| x.process.as_ref())
            .is_some_and(|p| p.parent_exec_id == sh_id && p.arguments == "vigil-marker")
    });
    let x = child.process_exec.as_ref().unwrap();
    assert_eq!(x.parent.as_ref().unwrap().exec_id, sh_id);
    assert_eq!(x.parent.as_ref().unwrap().pid, Some(sh_pid));
    assert!(sensor.stop().success());
}

/// A fork without exec is a process of its own (flag `clone`), with its parent's image; a
/// process with 16 threads is one process: one exec, one exit.
#[test]
fn fork_is_clone_and_threads_are_not_processes() {
    let mut sensor = Sensor::start(&[]);
    let out = workload().args(["fork-exit", "7"]).output().unwrap();
    assert!(out.status.success());
    let child: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let exit = sensor.wait_exit(child);
    let p = exit.process().unwrap();
    assert!(p.flags.split(' ').any(|f| f == "clone"), "{}", p.flags);
    assert!(p.binary.ends_with("vigil-e2e-workload"), "{}", p.binary);
    assert_eq!(exit.process_exit.as_ref().unwrap().status, 7);
    assert!(
        !sensor
            .events()
            .iter()
            .any(|e| e.process_exec.is_some() && e.process().unwrap().pid == Some(child)),
        "a fork without exec has no exec event"
    );

    // Threads exiting together race on the group's end; repeat to give a double report a chance.
    for _ in 0..5 {
        let (pid, status) = run(workload().args(["threads", "16"]));
        assert!(status.success());
        sensor.wait_exit(pid);
        let events = sensor.events();
        let kinds: Vec<&str> = events
            .iter()
            .filter(|e| e.process().and_then(|p| p.pid) == Some(pid))
            .map(|e| e.kind().unwrap().field_name())
            .collect();
        assert_eq!(kinds, vec!["process_exec", "process_exit"]);
    }
    assert!(sensor.stop().success());
}

/// A process started before the sensor is reported at start with `procFS`, a well-formed
/// exec_id, and a parent chain that reaches `<kernel>`.
#[test]
fn processes_running_at_start_are_reported_from_procfs() {
    let mut sleeper = Command::new("/bin/sh")
        .args(["-c", "exec /bin/sleep 60"])
        .spawn()
        .unwrap();
    let pid = sleeper.id();
    wait_for(Duration::from_secs(10), "sleep to exec", || {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .filter(|c| c.starts_with(b"/bin/sleep\0"))
    });
    let mut sensor = Sensor::start(&[]);
    let ev = sensor.wait_exec(pid);
    let p = exec_process(&ev);
    assert!(p.flags.split(' ').any(|f| f == "procFS"), "{}", p.flags);
    assert_eq!(
        p.binary,
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .unwrap()
            .to_str()
            .unwrap()
    );
    assert_eq!(p.arguments, "60");
    let id = parse_exec_id(&p.exec_id).unwrap();
    assert_eq!(id.pid, pid);
    assert!(id.ktime_ns > 0);

    let events = sensor.events();
    let by_id: HashMap<&str, &vigil_api::events::Process> = events
        .iter()
        .filter_map(|e| e.process_exec.as_ref()?.process.as_deref())
        .map(|p| (p.exec_id.as_str(), p))
        .collect();
    let mut cur = p;
    let mut hops = 0;
    while cur.binary != "<kernel>" {
        cur = by_id.get(cur.parent_exec_id.as_str()).unwrap_or_else(|| {
            panic!(
                "parent {} of {} not reported",
                cur.parent_exec_id, cur.binary
            )
        });
        hops += 1;
        assert!(hops < 100, "parent chain loops");
    }
    assert!(hops >= 2, "sleep's chain goes through at least init");
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    sensor.wait_exit(pid);
    assert!(sensor.stop().success());
}

/// Arguments over the kernel limit are cut and flagged; a 300-character binary path is whole.
#[test]
fn long_arguments_and_paths() {
    let mut sensor = Sensor::start(&[]);
    let big: Vec<String> = (0..100)
        .map(|i| format!("{i:03}-{}", "x".repeat(100)))
        .collect();
    let (pid, _) = run(Command::new("/bin/true").args(&big));
    let ev = sensor.wait_exec(pid);
    let p = exec_process(&ev);
    assert!(p.flags.split(' ').any(|f| f == "truncArgs"), "{}", p.flags);
    assert!(p.arguments.starts_with("000-x"));
    assert!(p.arguments.len() < big.join(" ").len());

    let dir = tempfile::tempdir().unwrap();
    let mut deep = dir.path().to_path_buf();
    while deep.to_str().unwrap().len() < 230 {
        deep.push("d".repeat(40));
    }
    std::fs::create_dir_all(&deep).unwrap();
    let mut name = String::from("t");
    while deep.join(&name).to_str().unwrap().len() < 300 {
        name.push('t');
    }
    let target = deep.join(&name);
    assert_eq!(target.to_str().unwrap().len(), 300);
    std::fs::copy("/bin/true", &target).unwrap();
    let (pid, _) = run(&mut Command::new(&target));
    let ev = sensor.wait_exec(pid);
    let p = exec_process(&ev);
    assert_eq!(p.binary, target.to_str().unwrap());
    assert!(
        !p.flags.contains("truncArgs") && !p.flags.contains("errorFilename"),
        "{}",
        p.flags
    );
    assert!(sensor.stop().success());
}

/// Credentials and namespaces appear only when enabled; CAP_SYS_ADMIN is in a root process's
/// effective set and gone after setpriv drops every capability.
#[test]
fn credentials_and_namespaces_only_when_enabled() {
    let mut sensor = Sensor::start(&[]);
    let (pid, _) = run(&mut Command::new("/bin/true"));
    let ev = sensor.wait_exec(pid);
    let p = exec_process(&ev);
    assert!(p.cap.is_none() && p.process_credentials.is_none() && p.ns.is_none());
    assert!(sensor.stop().success());

    let mut sensor = Sensor::start(&["--enable-process-cred", "--enable-process-ns"]);
    let (pid, _) = run(&mut Command::new("/bin/true"));
    let ev = sensor.wait_exec(pid);
    let p = exec_process(&ev);
    let cap = p.cap.as_ref().expect("cap enabled");
    assert!(
        cap.effective.iter().any(|c| c == "CAP_SYS_ADMIN"),
        "{cap:?}"
    );
    let cred = p.process_credentials.as_ref().expect("credentials enabled");
    assert_eq!(cred.euid, Some(0));
    let ns = p.ns.as_ref().expect("ns enabled");
    let mnt = ns.mnt.as_ref().unwrap();
    assert!(mnt.inum != 0);
    let own_mnt = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    assert!(
        own_mnt.to_str().unwrap().contains(&mnt.inum.to_string()),
        "{own_mnt:?} vs {}",
        mnt.inum
    );

    let (pid, status) =
        run(Command::new("setpriv").args(["--inh-caps=-all", "--bounding-set=-all", "/bin/true"]));
    assert!(status.success(), "setpriv failed");
    let ev = sensor.wait_event("exec of true under setpriv", |e| {
        e.process_exec
            .as_ref()
            .and_then(|x| x.process.as_ref())
            .is_some_and(|p| p.pid == Some(pid) && !p.binary.ends_with("setpriv"))
    });
    let cap = exec_process(&ev).cap.as_ref().unwrap();
    assert!(
        !cap.effective.iter().any(|c| c == "CAP_SYS_ADMIN"),
        "{cap:?}"
    );
    assert!(cap.permitted.is_empty(), "{cap:?}");
    assert!(sensor.stop().success());
}

/// 10 000 execs: each appears exactly once, or the loss counters account for the missing ones.
#[test]
fn exec_storm_is_complete_or_accounted() {
    // Large enough that the storm's events stay in one file.
    let mut sensor = Sensor::start_with_metrics(&["--export-file-max-size-mb", "500"]);
    let n = if slow_machine() { 1000 } else { 10_000 };
    let child = workload()
        .args(["exec-storm", &n.to_string(), "/bin/true"])
        .stderr(Stdio::inherit())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let storm_pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let pids: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), n);
    let last = *pids.last().unwrap();
    // Wait until the last exit was exported, or the counters say records were lost.
    wait_for(
        Duration::from_secs(120),
        "the storm's last exit or a loss",
        || {
            let lost = metric_value(
                &sensor.metrics(),
                "vigil_observer_ringbuf_events_lost_total",
            ) + metric_value(
                &sensor.metrics(),
                "vigil_observer_ringbuf_queue_events_lost_total",
            );
            let done = sensor
                .events()
                .iter()
                .any(|e| e.process_exit.is_some() && e.process().and_then(|p| p.pid) == Some(last));
            (done || lost > 0.0).then_some(())
        },
    );
    let metrics = sensor.metrics();
    assert!(sensor.stop().success());
    let events = sensor.events();
    let wanted: std::collections::HashSet<u32> = pids.iter().copied().collect();
    let mut seen: HashMap<u32, usize> = HashMap::new();
    // The storm's children only: on a busy machine with a small pid space, another process can
    // get one of their pids after them.
    let of_storm = |e: &&vigil_api::events::GetEventsResponse| {
        e.process_exec
            .as_ref()
            .and_then(|x| x.parent.as_ref())
            .and_then(|p| p.pid)
            == Some(storm_pid)
    };
    for e in events
        .iter()
        .filter(|e| e.process_exec.is_some())
        .filter(of_storm)
    {
        if let Some(pid) = e
            .process()
            .and_then(|p| p.pid)
            .filter(|p| wanted.contains(p))
        {
            *seen.entry(pid).or_default() += 1;
        }
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        duplicates.is_empty(),
        "execs reported twice: {duplicates:?}"
    );
    let missing = pids.iter().filter(|p| !seen.contains_key(p)).count();
    let lost = metric_value(&metrics, "vigil_observer_ringbuf_events_lost_total")
        + metric_value(&metrics, "vigil_observer_ringbuf_queue_events_lost_total");
    assert!(
        missing as f64 <= lost,
        "{missing} of {n} execs missing but only {lost} records counted as lost"
    );
    assert!(
        metric_value(&metrics, "vigil_observer_ringbuf_events_received_total")
            >= (n - missing) as f64
    );
}

/// The export file rotates by size, keeps the configured backups, and never splits a line.
#[test]
fn export_file_rotation() {
    let mut sensor = Sensor::start(&[
        "--export-file-max-size-mb",
        "1",
        "--export-file-max-backups",
        "2",
    ]);
    // Long arguments (in the exec and exit events, and the parent's in both) fill the 3 MiB of
    // a file and its backups with 400 execs rather than thousands: minutes under emulation.
    let filler = "r".repeat(3000);
    let out = workload()
        .args(["exec-storm", "400", "/bin/true", &filler])
        .output()
        .unwrap();
    assert!(out.status.success());
    let last: u32 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .parse()
        .unwrap();
    let export = sensor.export.clone();
    let backup = |n: u32| {
        let mut s = export.clone().into_os_string();
        s.push(format!(".{n}"));
        std::path::PathBuf::from(s)
    };
    wait_for(Duration::from_secs(60), "the storm's last exit", || {
        [export.clone(), backup(1), backup(2)].iter().find_map(|p| {
            std::fs::read_to_string(p)
                .ok()
                .filter(|t| t.contains(&format!("\"pid\":{last},")))
        })
    });
    assert!(sensor.stop().success());
    assert!(
        backup(1).exists() && backup(2).exists(),
        "two backups expected"
    );
    assert!(!backup(3).exists(), "at most two backups");
    for p in [export.clone(), backup(1), backup(2)] {
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.len() as u64 <= 1 << 20,
            "{} is {} bytes",
            p.display(),
            text.len()
        );
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            GetEventsResponse::from_json(line)
                .unwrap_or_else(|e| panic!("{}: broken line ({e})", p.display()));
        }
    }
}

/// Options from the environment and a config file apply; a flag wins over both.
#[test]
fn environment_and_config_file_with_flags_winning() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vigil.yaml");
    std::fs::write(&cfg, "enable-process-ns: true\nnode-name: from-file\n").unwrap();
    let cfg = cfg.to_str().unwrap();
    let env = [
        ("VIGIL_ENABLE_PROCESS_CRED", "true"),
        ("VIGIL_NODE_NAME", "from-env"),
    ];
    let mut sensor = Sensor::start_env(&["--config", cfg], &env);
    let (pid, _) = run(&mut Command::new("/bin/true"));
    let ev = sensor.wait_exec(pid);
    let p = exec_process(&ev);
    assert!(
        p.cap.is_some(),
        "VIGIL_ENABLE_PROCESS_CRED from the environment applies"
    );
    assert!(p.ns.is_some(), "enable-process-ns from the file applies");
    assert_eq!(
        ev.node_name, "from-env",
        "the environment wins over the file"
    );
    assert!(sensor.stop().success());

    let mut sensor = Sensor::start_env(&["--config", cfg, "--node-name", "from-flag"], &env);
    let (pid, _) = run(&mut Command::new("/bin/true"));
    let ev = sensor.wait_exec(pid);
    assert_eq!(
        ev.node_name, "from-flag",
        "the flag wins over environment and file"
    );
    assert!(sensor.stop().success());
}

/// Bad flags and config files: a message naming the option, a non-zero exit, nothing started.
#[test]
fn bad_options_are_rejected_clearly() {
    let sensor = bin_path("vigil-sensor");
    let out = Command::new(&sensor)
        .args(["--ring-buffer-size", "5000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--ring-buffer-size") && err.contains("power of two"),
        "{err}"
    );

    let out = Command::new(&sensor)
        .args(["--export-file-max-backups", "many"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--export-file-max-backups"));

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vigil.yaml");
    std::fs::write(&cfg, "enable-process-cred: true\nexport-fiel: /tmp/x\n").unwrap();
    let out = Command::new(&sensor)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("export-fiel"), "{err}");

    let out = Command::new(&sensor)
        .args(["--export-file", "/nonexistent/dir/e.json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("export-file"));
}

/// Metrics are served with the vigil_ prefix and count what happened.
#[test]
fn metrics_endpoint_counts_events() {
    let mut sensor = Sensor::start_with_metrics(&[]);
    let (pid, _) = run(&mut Command::new("/bin/true"));
    sensor.wait_exit(pid);
    let text = wait_for(Duration::from_secs(10), "metrics to count the exit", || {
        let t = sensor.metrics();
        (metric_value(&t, "vigil_events_total") > 0.0).then_some(t)
    });
    for name in [
        "vigil_events_total",
        "vigil_observer_ringbuf_events_received_total",
        "vigil_process_cache_size",
        "vigil_process_cache_capacity",
        "vigil_map_capacity",
        "vigil_build_info",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    assert_eq!(metric_value(&text, "vigil_process_cache_capacity"), 65536.0);
    assert!(sensor.stop().success());
}

/// The cgroup v2 mount point, from /proc/self/mounts.
fn cgroup2_root() -> std::path::PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| std::path::PathBuf::from(f[1]))
        })
        .expect("a cgroup2 mount")
}

/// A process in a cgroup named the way containerd names a container's scope carries the
/// container id in `docker` (31 characters, as Tetragon); a process outside carries none.
#[test]
fn container_id_from_the_cgroup_name() {
    let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let cgroup = cgroup2_root().join(format!("cri-containerd-{id}.scope"));
    let _ = std::fs::remove_dir(&cgroup);
    std::fs::create_dir(&cgroup).unwrap();
    let mut sensor = Sensor::start(&[]);
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec /bin/true vigil-in-container",
        cgroup.display()
    );
    let (pid, status) = run(Command::new("/bin/sh").args(["-c", &script]));
    assert!(status.success(), "could not enter the cgroup");
    let ev = sensor.wait_event("exec inside the container cgroup", |e| {
        e.process_exec
            .as_ref()
            .and_then(|x| x.process.as_ref())
            .is_some_and(|p| p.pid == Some(pid) && p.arguments == "vigil-in-container")
    });
    assert_eq!(exec_process(&ev).docker, &id[..31]);
    let (pid, _) = run(Command::new("/bin/true").arg("vigil-outside"));
    let ev = sensor.wait_exec(pid);
    assert_eq!(exec_process(&ev).docker, "");
    assert!(sensor.stop().success());
    wait_for(
        Duration::from_secs(10),
        "the container cgroup to empty",
        || std::fs::remove_dir(&cgroup).ok(),
    );
}
