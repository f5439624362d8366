//! `--self-protection` where BPF-LSM is active (VM only, `vm_` prefix): another process's
//! signal, ptrace attach, unlink of a pin, writable open of a pinned map and detach of a pinned
//! link are refused, each refusal is a `process_lsm` event, and the sensor still stops the
//! documented way (SIGTERM from its real parent).
//!
//! The sensor runs under a `sh` that is its real parent (not the test process): the test's own
//! children are then neither the sensor's parent nor its parent's children, so the signal rule
//! is really exercised. `sh` forwards SIGTERM to the sensor (its `kill` builtin runs in the
//! parent itself), which is how Sensor::stop() stops it.

use std::ffi::CString;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vigil_api::events::{GetEventsResponse, ProcessLsm};
use vigil_e2e::{Sensor, bin_path, metric_value, signal, vigil_ok, wait_for};

/// Runs the sensor as `sh`'s child and forwards SIGTERM to it.
const WRAPPER: &[&str] = &[
    "sh",
    "-c",
    "trap 'kill -TERM $pid' TERM; \"$@\" & pid=$!; wait $pid; wait $pid",
    "sh",
];

fn ppid_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The sensor: the child of the wrapper `sh`.
fn child_of(parent: u32) -> u32 {
    wait_for(Duration::from_secs(10), "the sensor under sh", || {
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|&p| ppid_of(p) == Some(parent))
    })
}

/// Stops a sensor the test left running (a failed assertion): SIGTERM to its parent `sh`.
struct Guard {
    sh: u32,
    sensor: u32,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if alive(self.sensor) {
            signal(self.sh, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(60);
            while alive(self.sensor) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn lsm_event(sensor: &Sensor, function: &str) -> ProcessLsm {
    sensor
        .wait_event(
            &format!("self-protection event {function}"),
            |e: &GetEventsResponse| {
                e.process_lsm.as_ref().is_some_and(|l| {
                    l.policy_name == "vigil-self-protection" && l.function_name == function
                })
            },
        )
        .process_lsm
        .map(|l| *l)
        .unwrap()
}

/// bpf(BPF_OBJ_GET) of a pinned object with `flags`; the new descriptor or the errno.
fn obj_get(path: &Path, flags: u32) -> Result<i32, i32> {
    #[repr(C)]
    struct Attr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        pad: [u32; 4],
    }
    let c = CString::new(path.to_str().unwrap()).unwrap();
    let mut attr = Attr {
        pathname: c.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: flags,
        pad: [0; 4],
    };
    // SAFETY: attr is a live repr(C) prefix of union bpf_attr, of the size passed; the path it
    // points to outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            7, // BPF_OBJ_GET
            &mut attr as *mut Attr,
            std::mem::size_of::<Attr>(),
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r as i32)
    }
}

/// bpf(BPF_LINK_DETACH, fd); 0 or the errno.
fn link_detach(fd: i32) -> i32 {
    let mut attr = [0u32; 4];
    attr[0] = fd as u32;
    // SAFETY: a zeroed repr(C) attribute block of the size passed (link_detach.link_fd first).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            34, // BPF_LINK_DETACH
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if r < 0 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    } else {
        0
    }
}

fn close(fd: i32) {
    // SAFETY: fd is a descriptor this test opened and owns.
    unsafe {
        libc::close(fd);
    }
}

#[test]
fn vm_protect_refuses_signals_ptrace_unlink_and_bpf_and_reports_each() {
    // Kept enforcing on exit, so that `vigil-sensor cleanup` has something to remove at the end.
    let mut sensor = Sensor::start_wrapped(
        WRAPPER,
        &["--self-protection", "--keep-enforcing-on-exit"],
        &[],
    );
    let sh = sensor.pid();
    let pid = child_of(sh);
    let _guard = Guard { sh, sensor: pid };
    assert_ne!(
        ppid_of(pid),
        Some(std::process::id()),
        "the test must not be the sensor's parent"
    );
    let status = vigil_ok(&sensor.socket, &["status"]);
    assert!(
        status.contains("self-protection: active"),
        "{status}\n{}",
        sensor.stderr()
    );
    assert!(
        status.contains("vigil_p_kill"),
        "the protect programs are listed: {status}"
    );

    // A signal from a process that is neither init, the parent nor the parent's child.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -TERM {pid}"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "kill -TERM of the protected sensor succeeded"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(alive(pid), "the sensor died of a refused signal");
    let ev = lsm_event(&sensor, "task_kill");
    assert_eq!(ev.action, vigil_api::events::KprobeAction::Override);
    let caller = ev.process.as_ref().and_then(|p| p.pid);
    assert_ne!(caller, Some(pid), "the caller is reported, not the sensor");
    let args = format!("{:?}", ev.args);
    assert!(
        args.contains(&format!("Int({pid})")),
        "target pid in {args}"
    );
    assert!(args.contains("Int(15)"), "SIGTERM in {args}");

    // ptrace attach from this (non-sensor) process.
    // SAFETY: PTRACE_ATTACH takes a pid and two ignored pointers.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_ATTACH,
            pid as libc::pid_t,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    let err = std::io::Error::last_os_error().raw_os_error();
    if r == 0 {
        // SAFETY: as above; undo the attach before failing.
        unsafe {
            libc::ptrace(
                libc::PTRACE_DETACH,
                pid as libc::pid_t,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_void>(),
            );
        }
        panic!("PTRACE_ATTACH to the protected sensor succeeded");
    }
    assert_eq!(err, Some(libc::EPERM));
    lsm_event(&sensor, "ptrace_access_check");

    // rm of a pinned file under the instance directory.
    let gen_dir = sensor.pin_dir();
    let pinned = gen_dir.join("links").join("process-exec");
    assert!(pinned.exists(), "{} is pinned", pinned.display());
    let out = Command::new("rm").arg(&pinned).output().unwrap();
    assert!(!out.status.success(), "rm of a pin succeeded");
    assert!(pinned.exists(), "the pin is still there");
    let ev = lsm_event(&sensor, "inode_unlink");
    assert!(
        format!("{:?}", ev.args).contains("process-exec"),
        "{:?}",
        ev.args
    );
    // rmdir of the generation, rename of a pin.
    assert!(std::fs::remove_dir(gen_dir.join("links")).is_err());
    assert!(std::fs::rename(&pinned, gen_dir.join("moved")).is_err());
    assert!(pinned.exists());

    // A writable descriptor of a pinned map is refused, a read-only one is not.
    let map = gen_dir.join("vigil_procs");
    assert_eq!(obj_get(&map, 0), Err(libc::EPERM), "writable open of a map");
    let ro = obj_get(&map, 1 << 3).expect("read-only open of a map (BPF_F_RDONLY)");
    close(ro);
    lsm_event(&sensor, "bpf_map");
    // Detaching a pinned link.
    let link = obj_get(&pinned, 0).expect("a descriptor of the pinned link");
    assert_eq!(link_detach(link), libc::EPERM, "BPF_LINK_DETACH");
    close(link);
    lsm_event(&sensor, "bpf");

    // Still running, still reporting: an exec after all that.
    let mut c = Command::new("/bin/true").spawn().unwrap();
    let tpid = c.id();
    c.wait().unwrap();
    sensor.wait_exec(tpid);
    let metrics = sensor.metrics();
    assert_eq!(
        metric_value(&metrics, "vigil_self_protection{state=\"active\"}"),
        1.0,
        "{metrics}"
    );
    for hook in [
        "task_kill",
        "ptrace_access_check",
        "inode_unlink",
        "bpf_map",
        "bpf",
    ] {
        assert!(
            metric_value(
                &metrics,
                &format!("vigil_self_protection_refusals_total{{hook=\"{hook}\"}}")
            ) >= 1.0,
            "{hook}: {metrics}"
        );
    }

    // A second sensor of the instance is told clearly that a protected one runs.
    let out = Command::new(bin_path("vigil-sensor"))
        .args([
            "--instance",
            &sensor.instance,
            "--grpc-socket",
            "",
            "--node-name",
            "second",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second sensor started: {err}");
    assert!(
        err.contains(&format!(
            "self-protected sensor of instance {:?} is running (pid {pid})",
            sensor.instance
        )),
        "{err}"
    );
    assert!(alive(pid));

    // The documented way to stop it: SIGTERM from its real parent.
    let status = sensor.stop();
    assert!(
        status.success(),
        "clean stop through the parent: {status}\n{}",
        sensor.stderr()
    );
    assert!(!alive(pid));
    // Protection goes with the sensor: what it left enforcing can be removed for good.
    let root = Path::new("/sys/fs/bpf/vigil").join(&sensor.instance);
    assert!(root.exists(), "the stopped sensor left its pins");
    let out = Command::new(bin_path("vigil-sensor"))
        .args(["cleanup", "--instance", &sensor.instance])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cleanup after a protected sensor: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !root.exists() || std::fs::read_dir(&root).unwrap().next().is_none(),
        "cleanup left {}",
        root.display()
    );
}
