//! Containers without a container runtime: cgroups created where and as the kubelet and
//! containerd or CRI-O would create them (systemd cgroup driver), with real processes moved
//! into them, so that the sensor sees exactly what it would see of a pod's container. Plus the
//! helpers the pod tests share to run workloads in them and find their events.

use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vigil_api::events::{GetEventsResponse, Process};

use crate::{Sensor, bin_path};

/// The cgroup v2 mount (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts).
pub fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .expect("a cgroup2 mount")
}

/// 64 hex digits, different in every call (and in every test process).
pub fn unique_hex(n: usize) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let seed = format!(
        "{:08x}{:08x}{:016x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos
    );
    seed.repeat(n.div_ceil(seed.len()))[..n].to_string()
}

pub fn pod_uid() -> String {
    let h = unique_hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[derive(Clone, Copy)]
pub enum Runtime {
    /// containerd, systemd cgroup driver.
    Containerd,
    /// CRI-O, systemd cgroup driver.
    Crio,
}

/// A container's cgroup, created like the kubelet and the runtime would; removed (with the
/// pod's slices) when dropped, even when the test failed.
pub struct FakeContainer {
    pub id: String,
    pub pod_uid: String,
    pub runtime: Runtime,
    pub leaf: PathBuf,
    /// Directories to remove, innermost first; the shared ones only if empty.
    dirs: Vec<PathBuf>,
}

impl FakeContainer {
    pub fn new(runtime: Runtime) -> FakeContainer {
        let id = unique_hex(64);
        let pod_uid = pod_uid();
        let (qos, scope) = match runtime {
            Runtime::Containerd => ("besteffort", format!("cri-containerd-{id}.scope")),
            Runtime::Crio => ("burstable", format!("crio-{id}.scope")),
        };
        let kubepods = cgroup2_root().join("kubepods.slice");
        let qos_dir = kubepods.join(format!("kubepods-{qos}.slice"));
        let pod_dir = qos_dir.join(format!(
            "kubepods-{qos}-pod{}.slice",
            pod_uid.replace('-', "_")
        ));
        let leaf = pod_dir.join(scope);
        std::fs::create_dir_all(&leaf)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", leaf.display()));
        FakeContainer {
            id,
            pod_uid,
            runtime,
            dirs: vec![leaf.clone(), pod_dir, qos_dir, kubepods],
            leaf,
        }
    }

    /// Runs `argv` inside the container's cgroup (the shell moves itself in, then execs).
    pub fn run(&self, argv: &[&str]) -> (u32, ExitStatus) {
        let script = format!(
            "echo $$ > {}/cgroup.procs && exec \"$@\"",
            self.leaf.display()
        );
        let mut child = Command::new("/bin/sh")
            .args(["-c", &script, "sh"])
            .args(argv)
            .spawn()
            .expect("spawn");
        let pid = child.id();
        (pid, child.wait().unwrap())
    }

    pub fn pod_json(&self, ns: &str, name: &str, labels: &[(&str, &str)]) -> serde_json::Value {
        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        serde_json::json!({
            "namespace": ns,
            "name": name,
            "uid": self.pod_uid,
            "labels": labels,
            "workload": name,
            "workload_kind": "Deployment",
            "containers": [{
                "id": format!("containerd://{}", self.id),
                "name": format!("{name}-main"),
                "image": "quay.io/cilium/starwars:v2",
                "image_id": "sha256:0123abcd",
                "start_time": "2026-11-28T12:00:00Z",
                "privileged": false,
            }],
        })
    }
}

impl Drop for FakeContainer {
    fn drop(&mut self) {
        // The processes are gone, but the kernel empties a cgroup asynchronously.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.leaf.exists() && std::fs::remove_dir(&self.leaf).is_err() {
            if Instant::now() > deadline {
                eprintln!("cannot remove {}", self.leaf.display());
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for d in &self.dirs[1..] {
            // Shared slices stay while another container (of another test) uses them.
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The process of `e` if it is the exec of `pid`.
pub fn exec_of(e: &GetEventsResponse, pid: u32) -> Option<&Process> {
    e.process_exec
        .as_ref()
        .and_then(|x| x.process.as_deref())
        .filter(|p| p.pid == Some(pid))
}

/// The path of the test workload binary.
pub fn workload() -> String {
    bin_path("vigil-e2e-workload").to_str().unwrap().to_string()
}

/// The `process_kprobe` events of the export with a string argument equal to `path`.
fn kprobes_on(sensor: &Sensor, path: &str) -> Vec<vigil_api::events::ProcessKprobe> {
    sensor
        .events()
        .into_iter()
        .filter_map(|e| e.process_kprobe)
        .filter(|k| {
            k.args.iter().any(|a| match &a.arg {
                Some(vigil_api::events::ArgValue::String(s)) => s == path,
                _ => false,
            })
        })
        .map(|k| *k)
        .collect()
}

/// Openat events of the export whose path argument is `path`, by pid.
pub fn opens_of(sensor: &Sensor, path: &str) -> Vec<(u32, Process)> {
    kprobes_on(sensor, path)
        .into_iter()
        .filter_map(|k| k.process.map(|p| (p.pid.unwrap_or(0), (*p).clone())))
        .collect()
}

/// Openat events of the export whose path argument is `path`: (policy, pid).
pub fn opens_by_policy(sensor: &Sensor, path: &str) -> Vec<(String, u32)> {
    kprobes_on(sensor, path)
        .into_iter()
        .map(|k| {
            let pid = k.process.as_ref().and_then(|p| p.pid).unwrap_or(0);
            (k.policy_name, pid)
        })
        .collect()
}

/// Opens `path` from a process in `c` (or on the host); returns the process's pid.
pub fn open_in(c: Option<&FakeContainer>, path: &str) -> u32 {
    let w = workload();
    let (pid, st) = match c {
        Some(c) => c.run(&[&w, "open", path]),
        None => {
            let mut child = Command::new(&w).args(["open", path]).spawn().unwrap();
            (child.id(), child.wait().unwrap())
        }
    };
    assert!(st.success(), "workload open {path} failed");
    pid
}
