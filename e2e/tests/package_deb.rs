//! `make deb`: the Debian package for hosts without Kubernetes. It installs the binaries and a
//! systemd unit for the sensor (policies from /etc/vigil/policies, events to /var/log/vigil,
//! socket in /run/vigil); installed into a scratch root (`dpkg -x`, beside the host's systemd
//! units), the unit passes `systemd-analyze verify` and the binaries start. Not run in the VM (e2e/vm/run.sh skips
//! `package_*`).

use std::process::Command;

use vigil_e2e::bin_path;
use vigil_e2e::cluster::{crate_root, describe};

#[test]
fn deb_installs_the_binaries_and_a_unit_systemd_accepts() {
    let work = tempfile::tempdir().unwrap();
    let out_dir = work.path().join("deb");
    let bin_dir = bin_path("vigil-sensor").parent().unwrap().to_path_buf();
    let out = Command::new(crate_root().join("scripts/build-deb.sh"))
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "make deb: {}", describe(&out));
    let deb = std::fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("a .deb");

    // The control fields dpkg reads.
    let info = Command::new("dpkg-deb")
        .arg("-f")
        .arg(&deb)
        .output()
        .unwrap();
    assert!(info.status.success(), "{}", describe(&info));
    let info = String::from_utf8_lossy(&info.stdout);
    for want in [
        "Package: vigil\n",
        "Architecture: amd64\n",
        "Depends: libc6",
    ] {
        assert!(info.contains(want), "`{want}` not in:\n{info}");
    }
    let conffiles = Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .arg("conffiles")
        .output()
        .unwrap();
    assert!(conffiles.status.success(), "{}", describe(&conffiles));
    assert_eq!(
        String::from_utf8_lossy(&conffiles.stdout).trim(),
        "/etc/default/vigil-sensor",
        "local settings survive upgrades"
    );

    // Installed into a scratch root.
    let root = work.path().join("root");
    let st = Command::new("dpkg")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    for f in [
        "usr/bin/vigil-sensor",
        "usr/bin/vigil",
        "usr/bin/vigil-operator",
        "lib/systemd/system/vigil-sensor.service",
        "etc/default/vigil-sensor",
        "usr/share/doc/vigil/examples/policies/kill-signals.yaml",
    ] {
        assert!(root.join(f).exists(), "{f} not in the package");
    }
    assert!(root.join("etc/vigil/policies").is_dir());
    let unit =
        std::fs::read_to_string(root.join("lib/systemd/system/vigil-sensor.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    for want in [
        "/usr/bin/vigil-sensor ",
        "--policy-dir /etc/vigil/policies",
        "--export-file /var/log/vigil/events.json",
        "--grpc-socket /run/vigil/vigil.sock",
    ] {
        assert!(exec.contains(want), "`{want}` not in ExecStart={exec}");
    }
    for want in [
        "RuntimeDirectory=vigil",
        "LogsDirectory=vigil",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.contains(want), "{want}");
    }

    // systemd's own check of the unit, against the scratch root (the binary must be there).
    // The root gets the host's systemd units too (sysinit.target, …), as a host with systemd
    // has them.
    let units = root.join("usr/lib/systemd");
    std::fs::create_dir_all(&units).unwrap();
    let st = Command::new("cp")
        .args(["-a", "/usr/lib/systemd/system"])
        .arg(&units)
        .status()
        .unwrap();
    assert!(st.success(), "copying the host's systemd units");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("--man=no")
        .arg("/lib/systemd/system/vigil-sensor.service")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}",
        describe(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("vigil-sensor.service:"),
        "systemd-analyze complains about the unit:\n{err}"
    );
    // It would complain about a unit whose binary is missing: the check is real.
    std::fs::remove_file(root.join("usr/bin/vigil-sensor")).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("--man=no")
        .arg("/lib/systemd/system/vigil-sensor.service")
        .output()
        .unwrap();
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr)
                .contains("Command /usr/bin/vigil-sensor is not executable"),
        "systemd-analyze accepted a unit without its binary: {}",
        describe(&out)
    );

    // The packaged binaries run.
    for b in ["vigil", "vigil-operator"] {
        let out = Command::new(root.join("usr/bin").join(b))
            .arg("--version")
            .output()
            .unwrap();
        assert!(out.status.success(), "{b}: {}", describe(&out));
    }
}
