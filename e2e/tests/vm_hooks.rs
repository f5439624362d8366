//! Hooks that need kprobes, BPF-LSM and trampolines: run only in the VM (`vm_` prefix; the
//! host kernel has none of them). Tetragon's own example policies load and produce their events,
//! and an Override policy really denies.

use std::path::Path;
use std::process::Command;

use vigil_api::events::{ArgValue, GetEventsResponse, ProcessKprobe};
use vigil_e2e::{Sensor, bin_path, corpus_policy, policy_list};

fn start_with(dir: &Path, name: &str, yaml: &str) -> Sensor {
    let p = dir.join(name);
    std::fs::write(&p, yaml).unwrap();
    let s = Sensor::start(&["--policy", p.to_str().unwrap()]);
    let list = policy_list(&s.socket);
    assert!(
        list.first().is_some_and(|p| p["state"] == "enabled"),
        "every hook loads in the VM: {list:?}\nsensor:\n{}",
        s.stderr()
    );
    s
}

fn kprobe_where(
    sensor: &Sensor,
    what: &str,
    pred: impl Fn(&ProcessKprobe) -> bool,
) -> ProcessKprobe {
    sensor
        .wait_event(what, |e: &GetEventsResponse| {
            e.process_kprobe.as_deref().is_some_and(&pred)
        })
        .process_kprobe
        .map(|k| *k)
        .unwrap()
}

fn file_path(k: &ProcessKprobe, i: usize) -> Option<&str> {
    match k.args.get(i)?.arg.as_ref()? {
        ArgValue::File(f) => Some(&f.path),
        ArgValue::Path(p) => Some(&p.path),
        _ => None,
    }
}

#[test]
fn vm_write_yaml_reports_writes_to_stdout() {
    let work = tempfile::tempdir().unwrap();
    let sensor = start_with(work.path(), "write.yaml", &corpus_policy("write.yaml"));
    let out = Command::new(bin_path("vigil-e2e-workload"))
        .args(["probe-me", "1"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "4\n");
    let k = kprobe_where(&sensor, "a sys_write of \"4\\n\"", |k| {
        k.function_name == "__x64_sys_write"
            && k.args.get(1).and_then(|a| a.arg.as_ref()) == Some(&ArgValue::Bytes(b"4\n".to_vec()))
    });
    assert_eq!(k.args[0].arg, Some(ArgValue::Int(1)));
    assert_eq!(k.args[2].arg, Some(ArgValue::Size(2)));
    assert_eq!(k.policy_name, "sys-write");
}

#[test]
fn vm_tcp_connect_yaml_on_kernel_functions() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = u32::from(listener.local_addr().unwrap().port());
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut buf = [0u8; 16];
        let _ = std::io::Read::read(&mut c, &mut buf);
    });
    let work = tempfile::tempdir().unwrap();
    let sensor = start_with(work.path(), "tcp.yaml", &corpus_policy("tcp-connect.yaml"));
    let out = Command::new(bin_path("vigil-e2e-workload"))
        .args(["connect", &port.to_string()])
        .output()
        .unwrap();
    server.join().unwrap();
    let local: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    for f in ["tcp_connect", "tcp_sendmsg", "tcp_close"] {
        let k = kprobe_where(&sensor, f, |k| {
            k.function_name == f
                && matches!(k.args.first().and_then(|a| a.arg.as_ref()),
                    Some(ArgValue::Sock(s)) if s.sport == local && s.dport == port)
        });
        assert_eq!(k.policy_name, "connect");
        if f == "tcp_connect" {
            let Some(ArgValue::Sock(s)) = k.args[0].arg.as_ref() else {
                unreachable!()
            };
            assert_eq!(
                (s.saddr.as_str(), s.daddr.as_str()),
                ("127.0.0.1", "127.0.0.1")
            );
            assert_eq!(s.state, "TCP_SYN_SENT");
        }
    }
}

#[test]
fn vm_filename_monitoring_yaml_with_return_values() {
    let work = tempfile::tempdir().unwrap();
    let sensor = start_with(
        work.path(),
        "fm.yaml",
        &corpus_policy("filename_monitoring.yaml"),
    );
    let st = Command::new("/usr/bin/cat")
        .arg("/etc/passwd")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let k = kprobe_where(&sensor, "security_file_permission on /etc/passwd", |k| {
        k.function_name == "security_file_permission" && file_path(k, 0) == Some("/etc/passwd")
    });
    assert_eq!(
        k.return_value.as_ref().and_then(|r| r.arg.clone()),
        Some(ArgValue::Int(0))
    );
    assert_eq!(k.policy_name, "file-monitoring");
}

#[test]
fn vm_lsm_file_open_yaml() {
    let work = tempfile::tempdir().unwrap();
    let sensor = start_with(
        work.path(),
        "lsm.yaml",
        &corpus_policy("lsm_file_open.yaml"),
    );
    let st = Command::new("/usr/bin/cat")
        .arg("/etc/passwd")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "observation only: the open is allowed");
    let ev = sensor.wait_event("process_lsm file_open", |e| {
        e.process_lsm.as_ref().is_some_and(|l| {
            l.function_name == "file_open"
                && matches!(l.args.first().and_then(|a| a.arg.as_ref()),
                    Some(ArgValue::File(f)) if f.path == "/etc/passwd")
        })
    });
    let l = ev.process_lsm.unwrap();
    assert_eq!(l.policy_name, "lsm-file-open");
    assert_eq!(l.process.unwrap().binary, "/usr/bin/cat");
}

#[test]
fn vm_override_denies_the_open() {
    let work = tempfile::tempdir().unwrap();
    let secret = work.path().join("secret");
    std::fs::write(&secret, "top secret\n").unwrap();
    let open = work.path().join("open");
    std::fs::write(&open, "fine\n").unwrap();
    let yaml = format!(
        "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: deny-secret
spec:
  lsmhooks:
  - hook: file_open
    args:
    - index: 0
      type: file
    selectors:
    - matchArgs:
      - index: 0
        operator: Equal
        values: [\"{}\"]
      matchActions:
      - action: Override
        argError: -1
",
        secret.display()
    );
    let sensor = start_with(work.path(), "deny.yaml", &yaml);
    let out = Command::new("/usr/bin/cat").arg(&secret).output().unwrap();
    assert!(!out.status.success(), "the open must be denied");
    assert!(out.stdout.is_empty(), "nothing of the file was read");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
        "{out:?}"
    );
    let out = Command::new("/usr/bin/cat").arg(&open).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "fine\n",
        "other files open"
    );
    let ev = sensor.wait_event("the denied open's event", |e| {
        e.process_lsm.as_ref().is_some_and(|l| {
            matches!(l.args.first().and_then(|a| a.arg.as_ref()),
                Some(ArgValue::File(f)) if Path::new(&f.path) == secret)
        })
    });
    assert_eq!(
        ev.process_lsm.unwrap().action,
        vigil_api::events::KprobeAction::Override
    );
    // Monitor mode: reported, not denied.
    vigil_e2e::vigil_ok(
        &sensor.socket,
        &["policy", "set-mode", "deny-secret", "monitor"],
    );
    let out = Command::new("/usr/bin/cat").arg(&secret).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "top secret\n");
}

/// Override on a `security_*` kprobe runs on BPF-LSM (`security_file_permission` →
/// `file_permission`), whose arguments the program reads from its context slots: a filter on the
/// second argument (the access mask) decides, so writes to the file are denied and reads are
/// not.
#[test]
fn vm_override_on_a_security_function_runs_on_bpf_lsm() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("append-only-not");
    std::fs::write(&file, "kept\n").unwrap();
    let yaml = format!(
        "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: deny-write
spec:
  kprobes:
  - call: security_file_permission
    syscall: false
    args:
    - index: 0
      type: file
    - index: 1
      type: int
    selectors:
    - matchArgs:
      - index: 0
        operator: Equal
        values: [\"{}\"]
      - index: 1
        operator: Mask
        values: [\"2\"]
      matchActions:
      - action: Override
        argError: -1
",
        file.display()
    );
    let sensor = start_with(work.path(), "deny-write.yaml", &yaml);
    let hooks = policy_list(&sensor.socket)[0]["hooks"].to_string();
    assert!(hooks.contains("lsm"), "lowered to BPF-LSM: {hooks}");
    let script = format!("printf more >> '{}'", file.display());
    let out = Command::new("/bin/sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the write must be denied: {out:?}");
    let out = Command::new("/usr/bin/cat").arg(&file).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "kept\n",
        "reads pass, nothing was written"
    );
    let ev = sensor.wait_event("the denied write's event", |e| {
        e.process_kprobe.as_ref().is_some_and(|k| {
            k.function_name == "security_file_permission"
                && k.args.get(1).and_then(|a| a.arg.as_ref()) == Some(&ArgValue::Int(2))
        })
    });
    assert_eq!(
        ev.process_kprobe.unwrap().action,
        vigil_api::events::KprobeAction::Override
    );
}

/// A `net_device` argument is read as the device's name and compared as a string: the same
/// call posts through the policy whose filter matches the name, and not through the one whose
/// filter does not.
#[test]
fn vm_net_device_arguments_filter_on_the_device_name() {
    let policy = |name: &str, op: &str| {
        format!(
            r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {{name: {name}}}
spec:
  kprobes:
  - call: dev_set_mtu
    syscall: false
    args:
    - {{index: 0, type: net_device}}
    - {{index: 1, type: int}}
    selectors:
    - matchArgs:
      - {{index: 0, operator: {op}, values: ["lo"]}}
"#
        )
    };
    let work = tempfile::tempdir().unwrap();
    let (is_lo, not_lo) = (work.path().join("is.yaml"), work.path().join("not.yaml"));
    std::fs::write(&is_lo, policy("mtu-lo", "Equal")).unwrap();
    std::fs::write(&not_lo, policy("mtu-not-lo", "NotEqual")).unwrap();
    let sensor = Sensor::start(&[
        "--policy",
        is_lo.to_str().unwrap(),
        "--policy",
        not_lo.to_str().unwrap(),
    ]);
    let list = policy_list(&sensor.socket);
    assert!(
        list.len() == 2 && list.iter().all(|p| p["state"] == "enabled"),
        "both load: {list:?}\nsensor:\n{}",
        sensor.stderr()
    );
    let set_mtu = || {
        let child = Command::new(bin_path("vigil-e2e-workload"))
            .args(["set-mtu", "lo"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "set-mtu lo: {out:?}");
        let mtu: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        (pid, mtu)
    };
    let by = |k: &ProcessKprobe, pid: u32, policy: &str| {
        k.function_name == "dev_set_mtu"
            && k.policy_name == policy
            && k.process.as_ref().and_then(|p| p.pid) == Some(pid)
    };
    let (first, mtu) = set_mtu();
    let k = kprobe_where(&sensor, "dev_set_mtu on lo", |k| by(k, first, "mtu-lo"));
    assert_eq!(
        k.args[0].arg,
        Some(ArgValue::NetDev(vigil_api::events::KprobeNetDev {
            name: "lo".into()
        }))
    );
    assert_eq!(k.args[1].arg, Some(ArgValue::Int(mtu)));
    // Records leave the kernel in order: once a later call's event is out, the first call's
    // event through the NotEqual policy would be out too, had it posted one.
    let (second, _) = set_mtu();
    kprobe_where(&sensor, "the second dev_set_mtu on lo", |k| {
        by(k, second, "mtu-lo")
    });
    let wrong: Vec<_> = sensor
        .events()
        .into_iter()
        .filter_map(|e| e.process_kprobe)
        .filter(|k| by(k, first, "mtu-not-lo"))
        .collect();
    assert!(wrong.is_empty(), "NotEqual lo posted lo: {wrong:?}");
}
