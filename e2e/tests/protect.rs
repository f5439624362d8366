//! `--self-protection` on a kernel without BPF-LSM (this project's host): the sensor starts,
//! says self-protection is unavailable and why (`vigil status`, the metric), and everything else
//! works. The refusals themselves are tested where BPF-LSM is active (vm_protect.rs).

use std::process::Command;

use vigil_e2e::{Sensor, metric_value, vigil_ok};

fn bpf_lsm_active() -> bool {
    std::fs::read_to_string("/sys/kernel/security/lsm")
        .is_ok_and(|l| l.split(',').any(|m| m == "bpf"))
        && Command::new(vigil_e2e::bin_path("vigil-sensor"))
            .arg("probe")
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .is_some_and(|f| f["bpf_lsm"] == true)
}

#[test]
fn without_bpf_lsm_self_protection_is_unavailable_and_the_sensor_runs() {
    if bpf_lsm_active() {
        eprintln!("BPF-LSM is active here: vm_protect.rs covers this kernel");
        return;
    }
    let sensor = Sensor::start_with_metrics(&["--self-protection"]);
    assert!(
        sensor.stderr().contains("BPF-LSM not active"),
        "the start warns that the sensor runs unprotected:\n{}",
        sensor.stderr()
    );
    let status = vigil_ok(&sensor.socket, &["status"]);
    assert!(
        status.contains("self-protection: unavailable (BPF-LSM not active)"),
        "{status}"
    );
    let json: serde_json::Value =
        serde_json::from_str(vigil_ok(&sensor.socket, &["status", "-o", "json"]).trim()).unwrap();
    assert_eq!(json["self_protection"], "unavailable");
    let metrics = sensor.metrics();
    assert_eq!(
        metric_value(&metrics, "vigil_self_protection{state=\"unavailable\"}"),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, "vigil_self_protection{state=\"active\"}"),
        0.0
    );
    // Everything else works: an exec is reported.
    let mut child = Command::new("/bin/true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    sensor.wait_exec(pid);
    // No protect program was loaded, so none is listed.
    assert!(!status.contains("vigil_p_"), "{status}");
}

#[test]
fn self_protection_is_off_unless_asked_for() {
    let sensor = Sensor::start_with_metrics(&[]);
    let status = vigil_ok(&sensor.socket, &["status"]);
    assert!(status.contains("self-protection: off"), "{status}");
    assert_eq!(
        metric_value(&sensor.metrics(), "vigil_self_protection{state=\"off\"}"),
        1.0
    );
}
