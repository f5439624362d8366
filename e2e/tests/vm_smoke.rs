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

    // Debian's kernel has all of these (checked by hand in this VM, see
    // DESIGN.md "Kernel facts"): a `false` is a probe bug or a broken VM.
    let expected_true = [
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
}
