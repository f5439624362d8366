//! VM-kernel smoke tests.
//!
//! Test names start with `vm_`: they need kprobes, trampolines and BPF-LSM,
//! which the host kernel lacks, so the host suite skips them
//! (`cargo test -p vigil-e2e -- --skip vm_`) and `e2e/vm/run.sh` runs them in
//! a VM on Debian's kernel. Each must fail when the feature it checks is not
//! there: a silently missing hook is exactly what they exist to catch.

use std::process::Command;

use serde_json::{Map, Value};
use vigil_e2e::bin_path;

/// Runs `vigil-sensor probe` and returns its JSON object.
fn probe() -> Map<String, Value> {
    let sensor = bin_path("vigil-sensor");
    let out = Command::new(&sensor)
        .arg("probe")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} probe: {e}", sensor.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`vigil-sensor probe` failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    match serde_json::from_str::<Value>(stdout.trim()) {
        Ok(Value::Object(map)) => map,
        Ok(other) => panic!("`vigil-sensor probe` printed {other}, not a JSON object"),
        Err(e) => {
            panic!("`vigil-sensor probe` printed invalid JSON ({e}):\n{stdout}\nstderr:\n{stderr}")
        }
    }
}

const BOOL_KEYS: &[&str] = &[
    "kprobe",
    "kretprobe",
    "bpf_lsm",
    "trampoline",
    "fmod_ret",
    "tracepoint",
    "raw_tracepoint",
    "btf_tracepoint",
    "ringbuf",
    "send_signal",
    "override_return",
    "cookie",
    "bpf_loop",
    "syscall_tracepoint",
];

#[test]
fn vm_feature_probe() {
    let features = probe();
    let shown = Value::Object(features.clone());

    let mut malformed = Vec::new();
    for key in BOOL_KEYS {
        if !features.get(*key).is_some_and(Value::is_boolean) {
            malformed.push(*key);
        }
    }
    assert!(
        malformed.is_empty(),
        "probe lacks boolean keys {malformed:?}: {shown}"
    );

    let release = features
        .get("kernel_release")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("probe lacks the string key kernel_release: {shown}"));
    let running = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("read osrelease");
    assert_eq!(
        release,
        running.trim(),
        "kernel_release is not the running kernel's: {shown}"
    );

    // Debian's kernels (5.10, 6.1, 6.12) have all of these (DESIGN.md "Kernel facts", the
    // table in docs/bpf.md): a `false` is a probe bug or a broken VM.
    let expected_true = [
        "kprobe",
        "kretprobe",
        "trampoline",
        "fmod_ret",
        "tracepoint",
        "syscall_tracepoint",
        "raw_tracepoint",
        "btf_tracepoint",
        "ringbuf",
        "send_signal",
    ];
    let missing: Vec<&str> = expected_true
        .iter()
        .copied()
        .filter(|k| features.get(*k) != Some(&Value::Bool(true)))
        .collect();
    assert!(
        missing.is_empty(),
        "kernel {release}: the probe reports {missing:?} unavailable: {shown}"
    );

    // Debian builds without CONFIG_BPF_KPROBE_OVERRIDE.
    assert_eq!(
        features.get("override_return"),
        Some(&Value::Bool(false)),
        "kernel {release}: override_return should be unavailable on Debian's kernel: {shown}"
    );

    // BPF-LSM is active exactly when the harness booted with bpf in lsm= (run.sh --no-bpf-lsm
    // boots without it).
    let lsm_expected = std::env::var("VIGIL_EXPECT_BPF_LSM").map_or(true, |v| v != "0");
    assert_eq!(
        features.get("bpf_lsm"),
        Some(&Value::Bool(lsm_expected)),
        "kernel {release}: bpf_lsm should be {lsm_expected} (lsm={}): {shown}",
        std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default()
    );

    // BPF cookies (bpf_get_attach_cookie) came with 5.15; bpf_loop with 5.17.
    let version = kernel_version(release);
    for (key, since) in [("cookie", (5, 15)), ("bpf_loop", (5, 17))] {
        assert_eq!(
            features.get(key),
            Some(&Value::Bool(version >= since)),
            "kernel {release}: {key} should be {} (since {}.{}): {shown}",
            version >= since,
            since.0,
            since.1
        );
    }
}

/// (major, minor) of a kernel release such as `5.10.0-46-cloud-amd64`.
fn kernel_version(release: &str) -> (u32, u32) {
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}
