//! A kernel booted without BPF-LSM (`e2e/vm/run.sh --no-bpf-lsm`; the matrix boots 5.10 so, as
//! Debian ships it): what needs BPF-LSM is refused with the reason, everything else loads and
//! the sensor runs. The harness runs these tests only in that boot (they fail elsewhere, rather
//! than pass without checking anything).

use std::process::Command;

use vigil_api::events::ProcessKprobe;
use vigil_e2e::{
    Sensor, bin_path, corpus_policy, event_timeout, policy_list, repo_file, vigil_cli, wait_for,
};

fn bpf_lsm_active() -> bool {
    std::fs::read_to_string("/sys/kernel/security/lsm")
        .unwrap_or_default()
        .trim()
        .split(',')
        .any(|l| l == "bpf")
}

const DENY_OPEN: &str = "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: deny-open
spec:
  kprobes:
  - call: security_file_open
    syscall: false
    args:
    - index: 0
      type: file
    selectors:
    - matchArgs:
      - index: 0
        operator: Prefix
        values: [\"/etc/vigil-secret\"]
      matchActions:
      - action: Override
        argError: -1
";

#[test]
fn vm_nolsm_override_is_refused_with_the_reason_and_the_rest_loads() {
    assert!(
        !bpf_lsm_active(),
        "BPF-LSM is active: this test needs a boot without bpf in lsm= (run.sh --no-bpf-lsm)"
    );
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("files");
    std::fs::create_dir(&dir).unwrap();
    let d = dir.to_str().unwrap();
    let write = |name: &str, text: &str| {
        let p = work.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let deny = write("deny.yaml", DENY_OPEN);
    let files = write(
        "files.yaml",
        &repo_file("examples/policies/file-access.yaml")
            .replace("/tmp/vigil-demo/", &format!("{d}/")),
    );
    let lsm = write("lsm.yaml", &corpus_policy("lsm_file_open.yaml"));

    // The same configuration as on a node with BPF-LSM: the sensor starts all the same.
    let sensor = Sensor::start(&["--policy", &deny, "--policy", &files, "--policy", &lsm]);
    let stderr = sensor.stderr();
    assert!(
        stderr.contains("policy refused on this kernel")
            && stderr.contains("deny-open")
            && stderr.contains("needs BPF-LSM"),
        "the refusal and its reason are logged:\n{stderr}"
    );

    // Added at run time, the Override policy is refused with the same reason.
    let out = vigil_cli(&sensor.socket, &["policy", "add", &deny]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "vigil policy add must fail: {out:?}");
    assert!(
        err.contains("Override on security_file_open needs BPF-LSM (boot with lsm=...,bpf)"),
        "{err}"
    );

    let list = policy_list(&sensor.socket);
    let state = |name: &str| {
        list.iter()
            .find(|p| p["name"] == name)
            .map(|p| p["state"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(state("deny-open"), None, "refused, not loaded: {list:?}");
    assert_eq!(state("file-access").as_deref(), Some("enabled"), "{list:?}");
    // An lsmhooks policy has no other mechanism: its hook is reported failed, with the reason.
    let lsm_policy = list
        .iter()
        .find(|p| p["name"] == "lsm-file-open")
        .unwrap_or_else(|| panic!("lsm-file-open listed: {list:?}"));
    assert_eq!(lsm_policy["state"], "error", "{lsm_policy}");
    assert!(
        lsm_policy
            .to_string()
            .contains("BPF-LSM is not active on this kernel"),
        "{lsm_policy}"
    );

    // The rest works: the file policy reports, exec events flow.
    let out = Command::new(bin_path("vigil-e2e-workload"))
        .args(["files", d])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    sensor.wait_exec(pid);
    let data = format!("{d}/data.txt");
    wait_for(
        event_timeout(),
        "an openat event of the file policy",
        || {
            sensor.events().into_iter().find_map(|e| {
                let k: ProcessKprobe = *e.process_kprobe?;
                (k.function_name == "__x64_sys_openat" && format!("{:?}", k.args).contains(&data))
                    .then_some(())
            })
        },
    );
}
