//! The hook programs as the kernel sees them: every program far within the verifier's budget,
//! syscall hooks that cost only their own syscall, and program loads that block nothing else.
//! Runs on the host and again on every VM kernel.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vigil_e2e::{Sensor, bin_path, open_policy, policy_list, vigil_cli, vigil_ok};

/// The project's budget per program (the kernel's own limit is 1,000,000).
const BUDGET: u64 = 150_000;

fn features() -> serde_json::Value {
    let out = Command::new(bin_path("vigil-sensor"))
        .arg("probe")
        .output()
        .expect("vigil-sensor probe");
    serde_json::from_slice(&out.stdout).expect("probe prints JSON")
}

/// (major, minor) of the running kernel.
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// The verifier's "processed N insns" of each successful load, by the kernel's program name
/// (15 characters), from the log `libvigil-bpflog.so` (e2e/vm/bpflog.c) wrote: lines
/// `<name> <type> <insn_cnt> <processed> <result>`. The last load of a name counts.
fn logged_counts(log: &Path) -> std::collections::HashMap<String, u64> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let processed = f.get(3)?.parse::<u64>().ok()?;
            (f.get(4) == Some(&"0")).then(|| (f[0].to_string(), processed))
        })
        .collect()
}

#[test]
fn every_program_loads_within_the_verifier_budget() {
    let mut cmd = Command::new(bin_path("vigil-sensor"));
    cmd.args(["check-programs", "-o", "json"]);
    // bpf_prog_info has no verified_insns before 5.16; the VM preloads a library that takes the
    // count from the verifier's statistics of every load instead (VIGIL_BPFLOG_SO).
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("bpflog");
    let preload = std::env::var_os("VIGIL_BPFLOG_SO");
    if let Some(so) = &preload {
        cmd.env("LD_PRELOAD", so).env("VIGIL_BPFLOG", &log);
    }
    let out = cmd.output().expect("vigil-sensor check-programs");
    let text = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "bad JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "check-programs failed:\n{report:#}");
    assert_eq!(report["budget"], BUDGET);
    let rows = report["programs"].as_array().expect("programs");
    let loaded = |name: &str| {
        rows.iter()
            .any(|r| r["program"] == name && r["status"] == "loaded")
    };
    for p in [
        "vigil_exec",
        "vigil_fork",
        "vigil_exit",
        "vigil_iter_tasks",
        "vigil_p_exit",
    ] {
        assert!(loaded(p), "{p} did not load:\n{report:#}");
    }
    // Whatever this kernel offers, each kind of hook has a program that loads.
    for alternatives in [
        ["vigil_sc_enter", "vigil_sys_enter"],
        ["vigil_tp", "vigil_tp_id"],
        ["vigil_kprobe", "vigil_kprobe_id"],
        ["vigil_kretprobe", "vigil_kret_id"],
        ["vigil_uprobe", "vigil_uprobe_id"],
    ] {
        assert!(
            alternatives.iter().any(|p| loaded(p)),
            "none of {alternatives:?} loaded:\n{report:#}"
        );
    }
    let reports_counts = kernel_version() >= (5, 16);
    let logged = logged_counts(&log);
    let mut counted = 0;
    let mut lines = String::new();
    for r in rows.iter().filter(|r| r["status"] == "loaded") {
        let name = r["program"].as_str().unwrap_or("?");
        let info = r["verified_insns"].as_u64();
        // The kernel keeps 15 characters of a program's name (vigil_iter_tasks → vigil_iter_task).
        let from_log = logged.get(&name[..name.len().min(15)]).copied();
        if let (Some(a), Some(b)) = (info, from_log) {
            assert_eq!(a, b, "{name}: bpf_prog_info and the verifier log disagree");
        }
        match info.or(from_log) {
            Some(n) => {
                counted += 1;
                lines.push_str(&format!("{name} {n}\n"));
                assert!(n <= BUDGET, "{name} took {n} verified instructions");
            }
            None => assert!(
                !reports_counts && preload.is_none(),
                "{name}: no verified instruction count (kernel {:?}, verifier log {})",
                kernel_version(),
                if preload.is_some() {
                    "preloaded"
                } else {
                    "not preloaded"
                }
            ),
        }
    }
    if reports_counts || preload.is_some() {
        assert!(counted >= 10, "too few programs counted:\n{report:#}");
    }
    // The VM harness reports every program's count per kernel.
    if let Some(path) = std::env::var_os("VIGIL_BUDGET_REPORT") {
        std::fs::write(path, lines).expect("write VIGIL_BUDGET_REPORT");
    }
    if features()["bpf_lsm"] == true {
        assert!(
            loaded("vigil_lsm"),
            "BPF-LSM is active but vigil_lsm did not load"
        );
        // Self-protection's LSM programs (protect.bpf.c).
        for p in [
            "vigil_p_ptrace",
            "vigil_p_kill",
            "vigil_p_unlink",
            "vigil_p_rmdir",
            "vigil_p_rename",
            "vigil_p_bpf",
            "vigil_p_bpf_map",
        ] {
            assert!(
                loaded(p),
                "BPF-LSM is active but {p} did not load:\n{report:#}"
            );
        }
    } else {
        let skipped = |name: &str| {
            rows.iter()
                .any(|r| r["program"] == name && r["status"] == "skipped")
        };
        assert!(
            skipped("vigil_p_ptrace") && skipped("vigil_p_kill"),
            "without BPF-LSM the protect programs are skipped:\n{report:#}"
        );
    }
}

/// Sum of the run counts of every loaded program named one of `names` (needs
/// `kernel.bpf_stats_enabled`).
fn runs(names: &[&str]) -> u64 {
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
        .expect("bpftool");
    let progs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool JSON");
    progs
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"].as_str().is_some_and(|n| names.contains(&n)))
        .map(|p| p["run_cnt"].as_u64().unwrap_or(0))
        .sum()
}

/// Switches BPF run statistics on for the test, back to what they were when dropped.
struct BpfStats(String);

impl BpfStats {
    fn on() -> BpfStats {
        const PATH: &str = "/proc/sys/kernel/bpf_stats_enabled";
        let old = std::fs::read_to_string(PATH).unwrap_or_else(|_| "0".into());
        std::fs::write(PATH, "1").expect("enable kernel.bpf_stats_enabled");
        BpfStats(old)
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", self.0.trim());
    }
}

#[test]
fn a_syscall_hook_runs_for_its_own_syscall_only() {
    let feats = features();
    let work = tempfile::tempdir().unwrap();
    let policy = work.path().join("openat.yaml");
    std::fs::write(
        &policy,
        open_policy("only-openat", "/nonexistent-vigil/", ""),
    )
    .unwrap();
    let sensor = Sensor::start(&["--policy", policy.to_str().unwrap()]);
    let list = policy_list(&sensor.socket);
    let mechanism = list[0]["hooks"][0]["mechanism"]
        .as_str()
        .unwrap_or_default();
    let programs: &[&str] = if feats["kprobe"] == true {
        assert_eq!(mechanism, "kprobe", "{list:?}");
        &["vigil_kprobe", "vigil_kprobe_id"]
    } else {
        assert_eq!(feats["syscall_tracepoint"], true, "{feats}");
        assert_eq!(
            mechanism, "tracepoint syscalls/sys_enter_openat",
            "{list:?}"
        );
        &["vigil_sc_enter"]
    };
    let _stats = BpfStats::on();
    let storm = |args: &[&str]| {
        let out = Command::new(bin_path("vigil-e2e-workload"))
            .args(args)
            .output()
            .expect("workload");
        assert!(out.status.success(), "workload {args:?} failed");
    };
    const CALLS: u64 = 1_000_000;
    let before = runs(programs);
    storm(&["getppid-storm", &CALLS.to_string()]);
    let unwatched = runs(programs) - before;
    let target = work.path().join("f");
    std::fs::write(&target, "x").unwrap();
    const OPENS: u64 = 20_000;
    let before = runs(programs);
    storm(&["open-storm", &OPENS.to_string(), target.to_str().unwrap()]);
    let watched = runs(programs) - before;
    // Other processes on the machine open files too (a busy machine: compilers open many), but
    // not one run per getppid.
    assert!(
        unwatched < CALLS / 4,
        "{CALLS} getppid calls ran the openat hook program {unwatched} times"
    );
    assert!(
        watched >= OPENS,
        "{OPENS} opens ran the openat hook program only {watched} times"
    );
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn a_slow_program_load_blocks_no_list_toggle_or_delete() {
    // Every program load takes at least this long: longer than any list or toggle may take.
    const SLOW_MS: u64 = 4000;
    let work = tempfile::tempdir().unwrap();
    let first = write(
        work.path(),
        "first.yaml",
        &open_policy("first", "/nonexistent-vigil/a/", ""),
    );
    let third = write(
        work.path(),
        "third.yaml",
        &open_policy("third", "/nonexistent-vigil/c/", ""),
    );
    let sensor = Sensor::start_env(
        &["--policy", &first, "--policy", &third],
        &[("VIGIL_TEST_SLOW_LOAD_MS", &SLOW_MS.to_string())],
    );
    // A policy whose hook needs a program kind nothing has loaded yet.
    let second = write(
        work.path(),
        "second.yaml",
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {name: second}\nspec:\n  tracepoints:\n  - {subsystem: sched, event: sched_process_free}\n",
    );
    let socket = sensor.socket.clone();
    let t0 = Instant::now();
    let add = std::thread::spawn(move || {
        let out = vigil_cli(&socket, &["policy", "add", &second]);
        (out, t0.elapsed())
    });
    let mut slowest = Duration::ZERO;
    let mut rounds = 0;
    let mut deleted = false;
    while !add.is_finished() {
        let t = Instant::now();
        let listed = vigil_ok(&sensor.socket, &["policy", "list"]);
        vigil_ok(&sensor.socket, &["policy", "disable", "first"]);
        vigil_ok(&sensor.socket, &["policy", "enable", "first"]);
        if !deleted {
            vigil_ok(&sensor.socket, &["policy", "delete", "third"]);
            deleted = true;
        }
        slowest = slowest.max(t.elapsed());
        assert!(listed.contains("first"), "{listed}");
        rounds += 1;
    }
    let (out, took) = add.join().unwrap();
    assert!(
        out.status.success(),
        "policy add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        took >= Duration::from_millis(SLOW_MS),
        "the add took {took:?}: the slow load was not exercised"
    );
    assert!(
        rounds >= 3,
        "only {rounds} rounds ran during a {took:?} add"
    );
    assert!(deleted);
    assert!(
        slowest < Duration::from_millis(SLOW_MS / 2),
        "a list/toggle/delete round took {slowest:?} while a program loaded for {took:?}"
    );
    let names: Vec<String> = policy_list(&sensor.socket)
        .iter()
        .map(|p| p["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names, ["first", "second"]);
}
