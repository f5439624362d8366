//! The exec and exit events of one fixed workload, as exported JSON, against a golden file:
//! the same text on the host's kernel and on every kernel of the VM matrix (5.10, 6.1, 6.12).
//! What legitimately differs between runs (pids, times, exec ids, namespace inode numbers, the
//! directory the binaries were built into, the test process that is the parent) is normalised
//! away; everything else — binary, arguments, cwd, flags, credentials, capabilities, which
//! namespaces are the host's, the container id, the exit status — must be equal. The
//! workload runs as nobody with one capability in a UTS namespace and a container cgroup of its
//! own, so that credentials, capabilities, namespaces and the container id all carry something
//! to compare.
//!
//! `VIGIL_GOLDEN_WRITE=1` rewrites the golden file from this run instead of comparing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use vigil_e2e::{Sensor, bin_path, event_timeout, repo_root, run, wait_for};

const GOLDEN: &str = "e2e/tests/golden/exec_exit.json";
/// A container id (the cgroup is named as containerd names a container's scope).
const CONTAINER: &str = "901de2b5e4c4a0ff1e1d1c0ffee0123456789abcdef0123456789abcdef01234";

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

/// Removes what differs from run to run from an exec or exit event; `bin_dir` becomes
/// `$VIGIL_BIN_DIR`.
fn normalise(event: &mut Value, bin_dir: &str) {
    let Value::Object(e) = event else {
        panic!("an event is a JSON object: {event}")
    };
    e.remove("time");
    for kind in ["process_exec", "process_exit"] {
        let Some(Value::Object(k)) = e.get_mut(kind) else {
            continue;
        };
        // The parent is the test process: its binary and arguments depend on the build.
        k.remove("parent");
        k.remove("time");
        let Some(Value::Object(p)) = k.get_mut("process") else {
            continue;
        };
        for f in ["exec_id", "parent_exec_id", "pid", "tid", "start_time"] {
            p.remove(f);
        }
        if let Some(Value::String(b)) = p.get_mut("binary")
            && let Some(rest) = b.strip_prefix(bin_dir)
        {
            *b = format!("$VIGIL_BIN_DIR{rest}");
        }
        // Inode numbers differ per boot; whether each is the host's does not.
        if let Some(Value::Object(ns)) = p.get_mut("ns") {
            for (_, one) in ns.iter_mut() {
                if let Value::Object(o) = one {
                    o.remove("inum");
                }
            }
        }
    }
}

fn raw_events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn pid_of(e: &Value, kind: &str) -> Option<u64> {
    e.get(kind)?.get("process")?.get("pid")?.as_u64()
}

#[test]
fn exec_and_exit_json_match_the_golden_file() {
    let cgroup = cgroup2_root().join(format!("cri-containerd-{CONTAINER}.scope"));
    let _ = std::fs::remove_dir(&cgroup);
    std::fs::create_dir(&cgroup).unwrap();
    let mut sensor = Sensor::start(&["--enable-process-cred", "--enable-process-ns"]);
    let workload = bin_path("vigil-e2e-workload");
    let bin_dir = workload.parent().unwrap().to_str().unwrap().to_string();
    // One process: the shell enters the container's cgroup, unshare gives it a UTS namespace of
    // its own, setpriv makes it nobody with exactly one capability (ambient, so that it survives
    // the exec), and each execs the next.
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec unshare --uts setpriv --reuid=65534 --regid=65534 \
         --clear-groups --bounding-set=-all,+net_bind_service \
         --inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service \
         {} exit 7 'golden arg'",
        cgroup.display(),
        workload.display()
    );
    let (pid, status) = run(Command::new("/bin/sh")
        .args(["-c", &script])
        .current_dir("/"));
    assert_eq!(status.code(), Some(7), "the workload chain failed");
    let events = wait_for(event_timeout(), "the workload's exec and exit", || {
        let all = raw_events(&sensor.export);
        let exec = all.iter().find(|e| {
            pid_of(e, "process_exec") == Some(u64::from(pid))
                && e["process_exec"]["process"]["binary"] == workload.to_str().unwrap()
        })?;
        let exit = all
            .iter()
            .find(|e| pid_of(e, "process_exit") == Some(u64::from(pid)))?;
        Some(vec![exec.clone(), exit.clone()])
    });
    assert!(sensor.stop().success());
    wait_for(
        Duration::from_secs(10),
        "the container cgroup to empty",
        || std::fs::remove_dir(&cgroup).ok(),
    );

    let mut got = Value::Array(events);
    if let Value::Array(a) = &mut got {
        a.iter_mut().for_each(|e| normalise(e, &bin_dir));
    }
    let got = serde_json::to_string_pretty(&got).unwrap() + "\n";
    let path = repo_root().join(GOLDEN);
    if std::env::var_os("VIGIL_GOLDEN_WRITE").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (VIGIL_GOLDEN_WRITE=1 creates it)", path.display()));
    let (w, g): (Value, Value) = (
        serde_json::from_str(&want).unwrap(),
        serde_json::from_str(&got).unwrap(),
    );
    if w != g {
        let diff: Vec<String> = diff_paths(&w, &g, String::new());
        panic!(
            "exec/exit JSON differs from {GOLDEN} on kernel {}:\n{}\n--- this run:\n{got}",
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim(),
            diff.join("\n")
        );
    }
}

/// Where two JSON values differ, as `path: want != got` lines.
fn diff_paths(w: &Value, g: &Value, at: String) -> Vec<String> {
    match (w, g) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter()
                .flat_map(|k| {
                    let (x, y) = (
                        a.get(k).unwrap_or(&Value::Null),
                        b.get(k).unwrap_or(&Value::Null),
                    );
                    diff_paths(x, y, format!("{at}.{k}"))
                })
                .collect()
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .flat_map(|(i, (x, y))| diff_paths(x, y, format!("{at}[{i}]")))
            .collect(),
        _ if w == g => Vec::new(),
        _ => vec![format!("{at}: {w} != {g}")],
    }
}
