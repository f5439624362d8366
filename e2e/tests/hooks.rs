//! The hook engine on a real kernel: policies loaded into a real sensor, real workloads, the
//! events they produce (and, as importantly, the ones they must not). Runs as root on the host
//! (syscall hooks on the raw syscall tracepoints) and again in the VM (syscall hooks on
//! kprobes).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use vigil_api::events::{ArgValue, GetEventsResponse, KprobeAction, ProcessKprobe};
use vigil_e2e::{
    OpenStorm, Sensor, bin_path, budgeted_policy, corpus_policy, event_timeout, metric_value,
    open_policy, policy_list, vigil_cli, vigil_ok, wait_for,
};

fn example(name: &str) -> String {
    vigil_e2e::repo_file(&format!("examples/policies/{name}"))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn workload() -> PathBuf {
    bin_path("vigil-e2e-workload")
}

fn kprobe(e: &GetEventsResponse) -> Option<&ProcessKprobe> {
    e.process_kprobe.as_deref()
}

fn pid_of(k: &ProcessKprobe) -> Option<u32> {
    k.process.as_ref().and_then(|p| p.pid)
}

fn arg(k: &ProcessKprobe, i: usize) -> Option<&ArgValue> {
    k.args.get(i).and_then(|a| a.arg.as_ref())
}

/// The path of a string, file or path argument.
fn path_arg(k: &ProcessKprobe, i: usize) -> Option<&str> {
    match arg(k, i)? {
        ArgValue::String(s) => Some(s),
        ArgValue::File(f) => Some(&f.path),
        ArgValue::Path(p) => Some(&p.path),
        _ => None,
    }
}

fn size_arg(k: &ProcessKprobe, i: usize) -> Option<u64> {
    match arg(k, i)? {
        ArgValue::Size(n) => Some(*n),
        _ => None,
    }
}

/// Runs the workload; returns (stdout, status).
fn run_workload(args: &[&str]) -> (String, std::process::ExitStatus) {
    let out = Command::new(workload())
        .args(args)
        .output()
        .expect("run workload");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status,
    )
}

/// Every kprobe event of the export so far that names `path` in an argument.
fn events_on(sensor: &Sensor, path: &str) -> Vec<ProcessKprobe> {
    sensor
        .events()
        .iter()
        .filter_map(kprobe)
        .filter(|k| (0..k.args.len()).any(|i| path_arg(k, i) == Some(path)))
        .cloned()
        .collect()
}

fn wait_open(sensor: &Sensor, path: &str) -> ProcessKprobe {
    wait_for(event_timeout(), &format!("an event on {path}"), || {
        events_on(sensor, path).into_iter().next()
    })
}

fn dirs() -> (tempfile::TempDir, String) {
    let work = tempfile::tempdir().unwrap();
    let d = work.path().join("watched");
    std::fs::create_dir_all(d.join("forbidden")).unwrap();
    (work, d.to_str().unwrap().to_string())
}

#[test]
fn file_access_events_carry_path_and_bytes_and_other_paths_produce_nothing() {
    let (work, d) = dirs();
    let other = work.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let policy = write(
        work.path(),
        "files.yaml",
        &example("file-access.yaml").replace("/tmp/vigil-demo/", &format!("{d}/")),
    );
    let sensor = Sensor::start(&["--policy", policy.to_str().unwrap()]);

    // Outside the directory first: if the kernel let anything through, it would be exported
    // before the events we wait for below.
    let (_, st) = run_workload(&["files", other.to_str().unwrap()]);
    assert!(st.success());
    let (out, st) = run_workload(&["files", &d]);
    assert!(st.success());
    let pid: u32 = out.trim().parse().unwrap();
    let data = format!("{d}/data.txt");

    let mine = wait_for(event_timeout(), "6 file events", || {
        let evs: Vec<ProcessKprobe> = events_on(&sensor, &data)
            .into_iter()
            .filter(|k| pid_of(k) == Some(pid))
            .collect();
        let n = |f: &str| evs.iter().filter(|k| k.function_name == f).count();
        (n("__x64_sys_openat") == 2
            && n("__x64_sys_write") == 1
            && n("__x64_sys_read") == 1
            && n("__x64_sys_close") == 2)
            .then_some(evs)
    });
    let write = mine
        .iter()
        .find(|k| k.function_name == "__x64_sys_write")
        .unwrap();
    assert_eq!(size_arg(write, 1), Some(11), "{write:?}");
    let read = mine
        .iter()
        .find(|k| k.function_name == "__x64_sys_read")
        .unwrap();
    assert_eq!(size_arg(read, 1), Some(64), "{read:?}");
    for k in &mine {
        assert_eq!(k.policy_name, "file-access");
        assert_eq!(k.action, KprobeAction::Post);
        let p = k.process.as_ref().unwrap();
        assert!(p.binary.ends_with("/vigil-e2e-workload"), "{p:?}");
        assert!(k.parent.is_some(), "parent from the process cache: {k:?}");
    }
    let leaked: Vec<_> = sensor
        .events()
        .iter()
        .filter_map(kprobe)
        .filter(|k| format!("{:?}", k.args).contains(other.to_str().unwrap()))
        .cloned()
        .collect();
    assert!(
        leaked.is_empty(),
        "events for a path outside the policy: {leaked:?}"
    );
}

#[test]
fn tcp_connect_send_and_close_carry_the_tuple() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut buf = [0u8; 16];
        let _ = std::io::Read::read(&mut c, &mut buf);
    });
    let work = tempfile::tempdir().unwrap();
    let policy = write(work.path(), "tcp.yaml", &example("tcp-connect.yaml"));
    let sensor = Sensor::start(&["--policy", policy.to_str().unwrap()]);
    let (out, st) = run_workload(&["connect", &port.to_string()]);
    assert!(st.success());
    server.join().unwrap();
    let local: u32 = out.trim().parse().unwrap();

    let ours = |f: &'static str| {
        let sensor = &sensor;
        move || {
            sensor
                .events()
                .iter()
                .filter_map(kprobe)
                .find(|k| {
                    k.function_name == f
                        && matches!(arg(k, 0), Some(ArgValue::Sock(s))
                            if s.dport == u32::from(port) && s.sport == local)
                })
                .cloned()
        }
    };
    let connect = wait_for(event_timeout(), "connect event", ours("__x64_sys_connect"));
    let Some(ArgValue::Sock(s)) = arg(&connect, 0) else {
        unreachable!()
    };
    assert_eq!(
        (s.saddr.as_str(), s.daddr.as_str()),
        ("127.0.0.1", "127.0.0.1")
    );
    assert_eq!(s.family, "AF_INET");
    assert_eq!(s.protocol, "IPPROTO_TCP");
    assert_eq!(
        connect.return_value.as_ref().and_then(|r| r.arg.clone()),
        Some(ArgValue::Int(0)),
        "connect returned 0: {connect:?}"
    );
    let send = wait_for(event_timeout(), "sendto event", ours("__x64_sys_sendto"));
    assert_eq!(size_arg(&send, 1), Some(6));
    wait_for(event_timeout(), "close event", ours("__x64_sys_close"));
}

#[test]
fn sigkill_kills_only_the_matching_process_and_monitor_mode_only_reports() {
    let (work, d) = dirs();
    let policy = write(
        work.path(),
        "kill.yaml",
        &example("sigkill-enforce.yaml").replace("/tmp/vigil-demo/", &format!("{d}/")),
    );
    let sensor = Sensor::start(&["--policy", policy.to_str().unwrap()]);
    let forbidden = format!("{d}/forbidden/x");

    let (out, st) = run_workload(&["open", &format!("{d}/allowed")]);
    assert!(st.success(), "{st}");
    assert_eq!(out.trim(), "opened");

    let child = Command::new(workload())
        .args(["open", &forbidden])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{:?}", out.status);
    assert!(out.stdout.is_empty(), "killed before open returned");

    let k = wait_open(&sensor, &forbidden);
    assert_eq!(pid_of(&k), Some(pid));
    assert_eq!(k.action, KprobeAction::Sigkill);
    let exit = sensor.wait_exit(pid);
    assert_eq!(exit.process_exit.unwrap().signal, "SIGKILL");

    // Monitor mode, switched at runtime: reported, not killed.
    vigil_ok(
        &sensor.socket,
        &["policy", "set-mode", "sigkill-enforce", "monitor"],
    );
    let again = format!("{d}/forbidden/y");
    let (out, st) = run_workload(&["open", &again]);
    assert!(st.success(), "monitor mode must not kill: {st}");
    assert_eq!(out.trim(), "opened");
    wait_open(&sensor, &again);
    let p = &policy_list(&sensor.socket)[0];
    assert_eq!(p["mode"], "monitor");
}

/// Loads an openat policy on a fresh directory with `extra` selector lines, runs `negative`
/// (given the path `<dir>/neg` to open), then the workload opening `<dir>/pos`: only the second
/// may be reported. The negative runs first, so an event it wrongly caused is exported before
/// the one waited for.
fn check_selector(name: &str, extra: &str, negative: impl FnOnce(&str) -> Command, why: &str) {
    let (work, d) = dirs();
    let policy = write(work.path(), "p.yaml", &open_policy(name, &d, extra));
    let sensor = Sensor::start(&["--policy", policy.to_str().unwrap()]);
    let neg = format!("{d}/neg");
    let st = negative(&neg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let _ = st; // some negatives fail by design (cat of a missing file); the open was made
    let pos = format!("{d}/pos");
    assert!(run_workload(&["open", &pos]).1.success());
    wait_open(&sensor, &pos);
    assert!(events_on(&sensor, &neg).is_empty(), "{why}");
}

#[test]
fn match_binaries_in_and_not() {
    let extra = format!(
        "      matchBinaries:\n      - operator: In\n        values: [\"{}\"]\n",
        workload().canonicalize().unwrap().display()
    );
    check_selector(
        "bins",
        &extra,
        |neg| {
            let mut c = Command::new("cat");
            c.arg(neg);
            c
        },
        "cat is not in the binary set",
    );
}

#[test]
fn match_pids_follow_forks() {
    let (work, d) = dirs();
    let pos = format!("{d}/pos");
    // A holder started before the sensor: its pid goes into the policy, and what it forks later
    // must match through followForks.
    let mut holder = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "read x; exec {} fork-open {pos}",
            workload().display()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let hpid = holder.id();
    let extra = format!(
        "      matchPIDs:\n      - operator: In\n        followForks: true\n        values: [{hpid}]\n"
    );
    let policy = write(work.path(), "p.yaml", &open_policy("pids", &d, &extra));
    let sensor = Sensor::start(&["--policy", policy.to_str().unwrap()]);
    let neg = format!("{d}/neg");
    assert!(run_workload(&["open", &neg]).1.success());
    holder.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = holder.wait_with_output().unwrap();
    let child: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let k = wait_open(&sensor, &pos);
    assert_eq!(pid_of(&k), Some(child), "the holder's forked child");
    assert_eq!(k.parent.as_ref().and_then(|p| p.pid), Some(hpid), "{k:?}");
    assert!(
        events_on(&sensor, &neg).is_empty(),
        "a process outside the pid tree"
    );
}

#[test]
fn match_capabilities_in() {
    check_selector(
        "caps",
        "      matchCapabilities:\n      - type: Effective\n        operator: In\n        values: [CAP_SYS_ADMIN]\n",
        |neg| {
            let mut c = Command::new("setpriv");
            c.args(["--bounding-set=-all", "--inh-caps=-all", "--"])
                .arg(workload())
                .args(["open", neg]);
            c
        },
        "no CAP_SYS_ADMIN after dropping the bounding set",
    );
}

#[test]
fn match_namespaces_host_mount_namespace() {
    check_selector(
        "ns",
        "      matchNamespaces:\n      - namespace: Mnt\n        operator: In\n        values: [host_ns]\n",
        |neg| {
            let mut c = Command::new("unshare");
            c.args(["-m", "--"]).arg(workload()).args(["open", neg]);
            c
        },
        "a process in another mount namespace",
    );
}

#[test]
fn raw_syscalls_tracepoint_from_the_corpus() {
    let work = tempfile::tempdir().unwrap();
    let policy = write(work.path(), "raw.yaml", &corpus_policy("raw_syscalls.yaml"));
    // Every syscall of the machine is posted: under load the ring buffer overflows (counted),
    // so the workload runs again until one of its events made it through.
    let sensor = Sensor::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--ring-buffer-size",
        "67108864",
    ]);
    let is_ours = |e: &GetEventsResponse| {
        e.process_tracepoint.as_ref().is_some_and(|t| {
            t.subsys == "raw_syscalls"
                && t.event == "sys_enter"
                && t.policy_name == "raw-syscalls"
                && t.process
                    .as_ref()
                    .is_some_and(|p| p.binary.ends_with("/vigil-e2e-workload"))
        })
    };
    let ev = wait_for(event_timeout(), "a raw_syscalls/sys_enter event", || {
        assert!(run_workload(&["probe-me", "1"]).1.success());
        sensor.events().into_iter().find(|e| is_ours(e))
    });
    let t = ev.process_tracepoint.unwrap();
    assert_eq!(t.args.len(), 1, "{t:?}");
    assert!(t.args[0].arg.is_some(), "{t:?}");
}

#[test]
fn uprobe_on_a_test_binary_function() {
    let work = tempfile::tempdir().unwrap();
    let bin = workload().canonicalize().unwrap();
    let policy = write(
        work.path(),
        "up.yaml",
        &format!(
            "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: uprobe-e2e
spec:
  uprobes:
  - path: \"{}\"
    symbols: [vigil_e2e_probe_me]
    args:
    - index: 0
      type: uint64
",
            bin.display()
        ),
    );
    let sensor = Sensor::start(&["--policy", policy.to_str().unwrap()]);
    let child = Command::new(&bin)
        .args(["probe-me", "42"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&child.stdout).trim(), "127");
    let ev = sensor.wait_event("the uprobe event", |e| e.process_uprobe.is_some());
    let u = ev.process_uprobe.unwrap();
    assert_eq!(u.symbol, "vigil_e2e_probe_me");
    assert_eq!(u.path, bin.to_str().unwrap());
    assert_eq!(u.policy_name, "uprobe-e2e");
    assert_eq!(u.args[0].arg, Some(ArgValue::Size(42)), "{u:?}");
}

#[test]
fn two_policies_on_one_hook_then_one_deleted() {
    let (work, d) = dirs();
    let a = write(
        work.path(),
        "a.yaml",
        &open_policy("pa", &format!("{d}/a"), ""),
    );
    let b = write(
        work.path(),
        "b.yaml",
        &open_policy("pb", &format!("{d}/b"), ""),
    );
    let sensor = Sensor::start(&[
        "--policy",
        a.to_str().unwrap(),
        "--policy",
        b.to_str().unwrap(),
    ]);
    for f in ["a1", "b1"] {
        assert!(run_workload(&["open", &format!("{d}/{f}")]).1.success());
    }
    assert_eq!(wait_open(&sensor, &format!("{d}/a1")).policy_name, "pa");
    assert_eq!(wait_open(&sensor, &format!("{d}/b1")).policy_name, "pb");

    vigil_ok(&sensor.socket, &["policy", "delete", "pb"]);
    for f in ["b2", "a2"] {
        assert!(run_workload(&["open", &format!("{d}/{f}")]).1.success());
    }
    assert_eq!(wait_open(&sensor, &format!("{d}/a2")).policy_name, "pa");
    assert!(events_on(&sensor, &format!("{d}/b2")).is_empty());
    let names: Vec<_> = policy_list(&sensor.socket)
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["pa"]);
}

/// Counts of what the sensor holds in the kernel: its file descriptors, Vigil programs, and
/// entries of the value-set maps.
fn kernel_footprint(sensor: &Sensor) -> (usize, usize, usize, usize) {
    let pid = sensor.pid();
    let pins = sensor.pin_dir();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let progs = Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
        .expect("bpftool");
    let progs: serde_json::Value = serde_json::from_slice(&progs.stdout).unwrap();
    let progs = progs
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"].as_str().is_some_and(|n| n.starts_with("vigil_")))
        .count();
    let entries = |map: &str| {
        let out = Command::new("bpftool")
            .args(["-j", "map", "dump", "pinned"])
            .arg(pins.join(map))
            .output()
            .expect("bpftool");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "bpftool dump {map}: {e}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        v.as_array().map(Vec::len).unwrap_or(0)
    };
    (fds, progs, entries("vigil_ints"), entries("vigil_strs"))
}

#[test]
fn five_policies_loaded_and_unloaded_fifty_times_leave_nothing_behind() {
    let (work, d) = dirs();
    let keeper = write(
        work.path(),
        "keeper.yaml",
        &open_policy("keeper", &format!("{d}/k"), ""),
    );
    let sensor = Sensor::start(&["--policy", keeper.to_str().unwrap()]);
    let files: Vec<PathBuf> = (0..5)
        .map(|i| {
            let extra = format!(
                "      matchBinaries:\n      - operator: NotIn\n        values: [\"/nonexistent/{i}\"]\n"
            );
            write(
                work.path(),
                &format!("p{i}.yaml"),
                &open_policy(&format!("leak{i}"), &format!("{d}/p{i}"), &extra),
            )
        })
        .collect();
    let before = kernel_footprint(&sensor);
    // Under emulation one add or delete (a CLI process and the sensor's work) takes ~0.6 s:
    // ten rounds there still show any per-round leak, within the VM's per-test timeout.
    let rounds = if vigil_e2e::slow_machine() { 10 } else { 50 };
    let start = std::time::Instant::now();
    for round in 0..rounds {
        if round % 10 == 0 {
            eprintln!("round {round}: {:?}", start.elapsed());
        }
        for f in &files {
            vigil_ok(&sensor.socket, &["policy", "add", f.to_str().unwrap()]);
        }
        if round == 0 {
            assert_eq!(policy_list(&sensor.socket).len(), 6);
            let during = kernel_footprint(&sensor);
            assert!(during.3 > before.3, "string sets were written: {during:?}");
        }
        for i in 0..5 {
            vigil_ok(&sensor.socket, &["policy", "delete", &format!("leak{i}")]);
        }
    }
    assert_eq!(policy_list(&sensor.socket).len(), 1);
    assert_eq!(
        kernel_footprint(&sensor),
        before,
        "(fds, programs, int entries, string entries)"
    );

    // A hook of another program kind (a tracepoint) loads that kind once; adding and deleting
    // the policy again attaches and detaches it without loading anything more, and leaves
    // descriptors (links) and map entries as they were. Without BPF cookies (before 5.15) the
    // program is an instance of its attach point: it goes with the last policy there and comes
    // back with the next, so the count is the same after each add and after each delete.
    let cookies = kernel_has_cookies();
    let tp = write(
        work.path(),
        "tp.yaml",
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {name: tp}\nspec:\n  tracepoints:\n  - {subsystem: sched, event: sched_process_free}\n",
    );
    vigil_ok(&sensor.socket, &["policy", "add", tp.to_str().unwrap()]);
    let attached = settled_footprint(&sensor);
    assert_eq!(
        attached.1,
        before.1 + 1,
        "the tracepoint program kind loaded"
    );
    vigil_ok(&sensor.socket, &["policy", "delete", "tp"]);
    let loaded = settled_footprint(&sensor);
    assert_eq!(
        loaded.1,
        before.1 + usize::from(cookies),
        "with cookies the kind stays loaded for the next policy; without, the point's own \
         instance goes with its policy"
    );
    assert!(
        loaded.0 < attached.0,
        "the link went with the policy: {loaded:?} {attached:?}"
    );
    assert_eq!((loaded.2, loaded.3), (before.2, before.3));
    for _ in 0..3 {
        vigil_ok(&sensor.socket, &["policy", "add", tp.to_str().unwrap()]);
        assert_eq!(
            settled_footprint(&sensor),
            attached,
            "no new program per policy"
        );
        vigil_ok(&sensor.socket, &["policy", "delete", "tp"]);
    }
    assert_eq!(settled_footprint(&sensor), loaded);
}

/// Whether the kernel has BPF cookies, as `vigil-sensor probe` finds.
fn kernel_has_cookies() -> bool {
    let out = Command::new(bin_path("vigil-sensor"))
        .arg("probe")
        .output()
        .expect("vigil-sensor probe");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("probe prints JSON");
    v["cookie"].as_bool().expect("the probe reports cookie")
}

/// The footprint once the descriptors of the CLI's last connection are closed on the sensor's
/// side (the server closes them asynchronously): the same twice in a row, 100 ms apart.
fn settled_footprint(sensor: &Sensor) -> (usize, usize, usize, usize) {
    let mut last = kernel_footprint(sensor);
    wait_for(Duration::from_secs(10), "a stable descriptor count", || {
        std::thread::sleep(Duration::from_millis(100));
        let now = kernel_footprint(sensor);
        let same = now == last;
        last = now;
        same.then_some(now)
    })
}

#[test]
fn a_hook_that_cannot_load_is_reported_while_the_rest_runs() {
    let (work, d) = dirs();
    let policy = write(
        work.path(),
        "partial.yaml",
        &format!(
            "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: partial
spec:
  kprobes:
  - call: vigil_no_such_kernel_function
    syscall: false
  - call: sys_openat
    syscall: true
    args:
    - index: 1
      type: string
    selectors:
    - matchArgs:
      - index: 1
        operator: Prefix
        values: [\"{d}/\"]
"
        ),
    );
    let sensor = Sensor::start(&["--policy", policy.to_str().unwrap()]);
    let p = &policy_list(&sensor.socket)[0];
    assert_eq!(p["state"], "partial", "{p}");
    let hooks = p["hooks"].as_array().unwrap();
    let bad = hooks
        .iter()
        .find(|h| h["source"] == "spec.kprobes[0]")
        .unwrap();
    assert_eq!(bad["loaded"], false);
    let reason = bad["error"].as_str().unwrap();
    assert!(
        reason.contains("kprobes are not available") || reason.contains("not found"),
        "{reason}"
    );
    let good = hooks
        .iter()
        .find(|h| h["source"] == "spec.kprobes[1]")
        .unwrap();
    assert_eq!(good["loaded"], true, "{p}");
    let f = format!("{d}/x");
    assert!(run_workload(&["open", &f]).1.success());
    wait_open(&sensor, &f);
    // The CLI says so too, in one line per hook.
    let out = vigil_cli(&sensor.socket, &["policy", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("partial"));
}

#[test]
fn return_filters_report_only_failed_opens() {
    let (work, d) = dirs();
    let policy = write(
        work.path(),
        "ret.yaml",
        &format!(
            "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: failed-opens
spec:
  kprobes:
  - call: sys_openat
    syscall: true
    return: true
    args:
    - index: 1
      type: string
    returnArg:
      index: 0
      type: int
    selectors:
    - matchArgs:
      - index: 1
        operator: Prefix
        values: [\"{d}/\"]
      matchReturnArgs:
      - index: 0
        operator: LT
        values: [\"0\"]
"
        ),
    );
    let sensor = Sensor::start(&["--policy", policy.to_str().unwrap()]);
    let exists = format!("{d}/exists");
    assert!(
        run_workload(&["open", &exists]).1.success(),
        "creates and opens it"
    );
    let missing = format!("{d}/no-such-dir/file");
    let (out, _) = run_workload(&["open", &missing]);
    assert!(out.is_empty(), "the open failed");
    let k = wait_open(&sensor, &missing);
    assert_eq!(
        k.return_value.as_ref().and_then(|r| r.arg.clone()),
        Some(ArgValue::Int(-libc::ENOENT)),
        "{k:?}"
    );
    assert!(
        events_on(&sensor, &exists).is_empty(),
        "a successful open does not pass matchReturnArgs"
    );
}

#[test]
fn rate_limit_suppresses_identical_events_and_counts_them() {
    let (work, d) = dirs();
    // Global scope: each open below comes from a new process (the default scope is a thread).
    let extra = "      matchActions:\n      - action: Post\n        rateLimit: 1m\n        rateLimitScope: global\n";
    let policy = write(work.path(), "rl.yaml", &open_policy("limited", &d, extra));
    let sensor = Sensor::start(&["--policy", policy.to_str().unwrap()]);
    let f = format!("{d}/same");
    for _ in 0..5 {
        assert!(run_workload(&["open", &f]).1.success());
    }
    let last = format!("{d}/other");
    assert!(run_workload(&["open", &last]).1.success());
    wait_open(&sensor, &last);
    assert_eq!(
        events_on(&sensor, &f).len(),
        1,
        "one event per minute for identical opens"
    );
    let stats = wait_for(event_timeout(), "rate-limited count", || {
        let p = policy_list(&sensor.socket).remove(0);
        (p["stats"]["rate_limited"].as_u64() == Some(4)).then_some(p)
    });
    assert_eq!(stats["stats"]["posted"].as_u64(), Some(2), "{stats}");
}

#[test]
fn policy_dir_follows_files_at_runtime() {
    let (work, d) = dirs();
    let pdir = work.path().join("policies");
    std::fs::create_dir_all(&pdir).unwrap();
    let sensor = Sensor::start(&["--policy-dir", pdir.to_str().unwrap()]);
    assert!(policy_list(&sensor.socket).is_empty());
    let file = pdir.join("p.yaml");
    std::fs::write(&file, open_policy("from-dir", &format!("{d}/one"), "")).unwrap();
    wait_for(event_timeout(), "the policy from the directory", || {
        let l = policy_list(&sensor.socket);
        (l.len() == 1 && l[0]["name"] == "from-dir").then_some(())
    });
    assert!(run_workload(&["open", &format!("{d}/one")]).1.success());
    wait_open(&sensor, &format!("{d}/one"));

    // A bad edit is reported and the running version stays.
    std::fs::write(&file, "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {name: from-dir}\nspec: {bogus: 1}\n").unwrap();
    wait_for(event_timeout(), "the bad edit reported", || {
        sensor.stderr().contains("bogus").then_some(())
    });
    assert_eq!(policy_list(&sensor.socket)[0]["name"], "from-dir");

    // An edit replaces it; removing the file removes it.
    std::fs::write(&file, open_policy("from-dir", &format!("{d}/two"), "")).unwrap();
    assert!(run_workload(&["open", &format!("{d}/two")]).1.success());
    wait_for(event_timeout(), "the edited policy's event", || {
        assert!(run_workload(&["open", &format!("{d}/two")]).1.success());
        (!events_on(&sensor, &format!("{d}/two")).is_empty()).then_some(())
    });
    std::fs::remove_file(&file).unwrap();
    wait_for(event_timeout(), "the policy removed", || {
        policy_list(&sensor.socket).is_empty().then_some(())
    });
}

#[test]
fn match_capability_changes_since_exec() {
    let (work, d) = dirs();
    let extra = "      matchCapabilityChanges:\n      - type: Effective\n        operator: In\n        values: [CAP_SYS_ADMIN]\n";
    let policy = write(work.path(), "p.yaml", &open_policy("capchg", &d, extra));
    let sensor = Sensor::start(&["--policy", policy.to_str().unwrap()]);
    let neg = format!("{d}/unchanged");
    assert!(run_workload(&["open", &neg]).1.success());
    let pos = format!("{d}/changed");
    let (out, st) = run_workload(&["drop-cap-open", &pos]);
    assert!(st.success(), "{st}");
    assert_eq!(out.trim(), "opened");
    let k = wait_open(&sensor, &pos);
    assert_eq!(k.policy_name, "capchg");
    assert!(
        events_on(&sensor, &neg).is_empty(),
        "capabilities unchanged since exec"
    );
}

#[test]
fn each_policy_counts_its_evaluations_and_their_sampled_cost() {
    let (work, d) = dirs();
    // Never matches the storm's path below: the cost of filtering alone.
    let costed = write(work.path(), "costed.yaml", &open_policy("costed", &d, ""));
    // A syscall nothing on the machine makes during the test: never evaluated.
    let idle = write(
        work.path(),
        "idle.yaml",
        "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: idle
spec:
  kprobes:
  - call: sys_pivot_root
    syscall: true
",
    );
    let sensor = Sensor::start_with_metrics(&[
        "--policy",
        costed.to_str().unwrap(),
        "--policy",
        idle.to_str().unwrap(),
    ]);
    let outside = work.path().join("outside");
    std::fs::write(&outside, b"x").unwrap();
    let (out, st) = run_workload(&["open-storm", "5000", outside.to_str().unwrap()]);
    assert!(st.success(), "{out}");

    let stats = |name: &str| {
        policy_list(&sensor.socket)
            .into_iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed"))["stats"]
            .clone()
    };
    // Every openat of the machine is an evaluation of `costed`: at least the storm's 5000, and
    // one in 64 per CPU timed, so at least 5000/64 - 1 per CPU samples between them.
    let s = wait_for(event_timeout(), "5000 evaluations of costed", || {
        let s = stats("costed");
        (s["evaluations"].as_u64().unwrap_or(0) >= 5000).then_some(s)
    });
    let ns = s["ns_per_evaluation"]
        .as_f64()
        .unwrap_or_else(|| panic!("no timed sample: {s}"));
    assert!(ns > 0.0 && ns < 1e7, "{s}");
    assert!(s["cpu_seconds"].as_f64().unwrap() > 0.0, "{s}");
    assert_eq!(s["matched"].as_u64(), Some(0), "{s}");
    let i = stats("idle");
    assert_eq!(i["evaluations"].as_u64(), Some(0), "{i}");
    assert!(i["ns_per_evaluation"].is_null(), "{i}");

    // The same in the metrics (mirrored once a second).
    let m = wait_for(event_timeout(), "policy cost metrics", || {
        let m = sensor.metrics();
        (metric_value(&m, "vigil_policy_evaluations_total{policy=\"costed\"}") >= 5000.0)
            .then_some(m)
    });
    assert!(
        metric_value(&m, "vigil_policy_cpu_seconds_total{policy=\"costed\"}") > 0.0,
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "vigil_policy_evaluations_total{policy=\"idle\"}"),
        0.0,
        "{m}"
    );
}

/// A policy over its CPU budget under an open storm: first switched to monitor (it has a
/// Sigkill), then, still over budget, disabled — each time with an event, a metric and the
/// reason in `vigil policy list`; `vigil policy enable` ends the demotion.
#[test]
fn a_policy_over_its_cpu_budget_goes_to_monitor_then_off_and_says_so() {
    let (work, _d) = dirs();
    // 0.2% of one CPU over 2 s is 4 ms: a few thousand openat evaluations. The storm makes
    // hundreds of thousands a second; an idle machine a few hundred.
    let policy = write(
        work.path(),
        "budgeted.yaml",
        &budgeted_policy("budgeted", "0.2%,window=2s", ""),
    );
    let sensor = Sensor::start_with_metrics(&["--policy", policy.to_str().unwrap()]);
    let listed = || {
        policy_list(&sensor.socket)
            .into_iter()
            .find(|p| p["name"] == "budgeted")
            .expect("budgeted listed")
    };
    let p = listed();
    assert_eq!(
        (p["state"].as_str(), p["mode"].as_str()),
        (Some("enabled"), Some("enforce")),
        "{p}"
    );
    assert!(p["demotion"].is_null(), "{p}");
    let demoted_events = |action: &str| {
        sensor
            .events()
            .into_iter()
            .filter_map(|e| e.vigil_policy_demoted)
            .filter(|d| d.policy_name == "budgeted" && d.action == action)
            .count()
    };

    let target = work.path().join("storm");
    std::fs::write(&target, b"x").unwrap();
    let storm = OpenStorm::start(&target);
    // 1. Enforcing and in enforce mode: monitor first.
    let p = wait_for(
        Duration::from_secs(120),
        "budgeted demoted to monitor",
        || Some(listed()).filter(|p| p["mode"] == "monitor"),
    );
    let why = p["demotion"]
        .as_str()
        .unwrap_or_else(|| panic!("no demotion reason: {p}"));
    assert!(
        why.contains("over its CPU budget")
            && why.contains("budget 0.2%")
            && why.contains("switched to monitor"),
        "{why}"
    );
    wait_for(
        event_timeout(),
        "vigil_policy_demoted event (monitor)",
        || (demoted_events("monitor") == 1).then_some(()),
    );
    let e = sensor
        .events()
        .into_iter()
        .find_map(|e| e.vigil_policy_demoted)
        .unwrap();
    assert!(e.cpu_percent > e.budget_percent, "{e:?}");
    assert_eq!((e.budget_percent, e.window_seconds), (0.2, 2), "{e:?}");
    assert_eq!(e.reason, why);
    let table = vigil_ok(&sensor.socket, &["policy", "list"]);
    assert!(table.contains("demoted: over its CPU budget"), "{table}");

    // 2. Still over budget in monitor mode: disabled.
    let p = wait_for(Duration::from_secs(120), "budgeted disabled", || {
        Some(listed()).filter(|p| p["state"] == "disabled")
    });
    assert!(
        p["demotion"]
            .as_str()
            .unwrap_or("")
            .contains("switched to disabled"),
        "{p}"
    );
    wait_for(
        event_timeout(),
        "vigil_policy_demoted event (disabled)",
        || (demoted_events("disabled") == 1).then_some(()),
    );
    let m = wait_for(event_timeout(), "demotion metrics", || {
        let m = sensor.metrics();
        (metric_value(
            &m,
            "vigil_policy_budget_demotions_total{policy=\"budgeted\",action=\"disabled\"}",
        ) == 1.0)
            .then_some(m)
    });
    assert_eq!(
        metric_value(
            &m,
            "vigil_policy_budget_demotions_total{policy=\"budgeted\",action=\"monitor\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "vigil_policy_demoted{policy=\"budgeted\"}"),
        1.0,
        "{m}"
    );
    // A disabled policy is not evaluated, so it cannot be demoted again.
    let evaluations = listed()["stats"]["evaluations"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        listed()["stats"]["evaluations"].as_u64().unwrap(),
        evaluations
    );
    drop(storm);

    // 3. Switching it back ends the demotion.
    vigil_ok(&sensor.socket, &["policy", "enable", "budgeted"]);
    let p = listed();
    assert_eq!(p["state"], "enabled", "{p}");
    assert!(p["demotion"].is_null(), "{p}");
    let m = wait_for(event_timeout(), "demoted gauge back to 0", || {
        let m = sensor.metrics();
        (metric_value(&m, "vigil_policy_demoted{policy=\"budgeted\"}") == 0.0).then_some(m)
    });
    assert_eq!(
        metric_value(
            &m,
            "vigil_policy_budget_demotions_total{policy=\"budgeted\",action=\"disabled\"}"
        ),
        1.0,
        "{m}"
    );
}

/// The fd → path walk that close() runs: whole paths for names of every length the walk copies
/// differently (inline in the dentry, read with the dentry, up to 32 or 40 bytes; stored apart
/// beyond, up to NAME_MAX), in a deep directory, and across a mount point (a tmpfs).
#[test]
fn fd_paths_are_whole_for_every_name_length_and_across_a_mount() {
    let work = tempfile::tempdir().unwrap();
    let d = work.path().join("names");
    let deep = d.join("a/bb/ccc/dddd/eeeee/ffffff/ggggggg/hhhhhhhh/iiiiiiiii");
    std::fs::create_dir_all(&deep).unwrap();
    let fs = vigil_e2e::loss::Tmpfs::mount(1024);
    let in_mount = fs.path.join("sub");
    std::fs::create_dir_all(&in_mount).unwrap();
    let close_policy = format!(
        "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: fd-paths
spec:
  kprobes:
  - call: sys_close
    syscall: true
    args:
    - {{index: 0, type: fd}}
    selectors:
    - matchArgs:
      - {{index: 0, operator: Prefix, values: [\"{}/\", \"{}/\"]}}
",
        d.display(),
        fs.path.display()
    );
    let policy = write(work.path(), "close.yaml", &close_policy);
    let sensor = Sensor::start(&["--policy", policy.to_str().unwrap()]);

    // Names whose bytes differ by position, so a word copied to the wrong place shows.
    let name = |len: usize| -> String {
        (0..len)
            .map(|i| char::from(b'a' + ((i * 7 + len) % 26) as u8))
            .collect()
    };
    let mut paths = Vec::new();
    for len in [
        1, 2, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32, 33, 39, 40, 41, 47, 48, 63, 64, 100, 200,
        255,
    ] {
        paths.push(d.join(name(len)));
    }
    paths.push(deep.join(name(5)));
    paths.push(deep.join(name(45)));
    paths.push(in_mount.join(name(35)));
    paths.push(fs.path.join(name(3)));
    for p in &paths {
        drop(std::fs::File::create(p).unwrap()); // the close is what the policy sees
    }

    let me = std::process::id();
    let closed = |sensor: &Sensor| -> Vec<String> {
        sensor
            .events()
            .iter()
            .filter_map(kprobe)
            .filter(|k| k.function_name == "__x64_sys_close" && pid_of(k) == Some(me))
            .filter_map(|k| path_arg(k, 0).map(str::to_string))
            .collect()
    };
    let missing = |seen: &[String]| -> Vec<String> {
        paths
            .iter()
            .map(|p| p.to_str().unwrap().to_string())
            .filter(|p| !seen.contains(p))
            .collect()
    };
    let deadline = std::time::Instant::now() + event_timeout();
    let mut seen = closed(&sensor);
    while !missing(&seen).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        seen = closed(&sensor);
    }
    assert!(
        missing(&seen).is_empty(),
        "close events missing or with another path: {:?}\nclose paths seen: {seen:#?}",
        missing(&seen)
    );
    let expected = missing(&[]);
    let stray: Vec<&String> = seen.iter().filter(|p| !expected.contains(p)).collect();
    assert!(stray.is_empty(), "paths no file had: {stray:?}");
}
