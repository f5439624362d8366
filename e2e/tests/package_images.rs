//! `make images`: the sensor and operator images build with buildah from images/*/Containerfile
//! (FROM scratch, nothing pulled), carry the names and tags the Helm chart uses by default, and
//! the binaries inside start (`--version`, run from the unpacked image root with chroot, i.e.
//! with only the files of the image). Not run in the VM (e2e/vm/run.sh skips `package_*`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use vigil_e2e::bin_path;
use vigil_e2e::cluster::{crate_root, describe};

fn workspace_version() -> String {
    let toml = std::fs::read_to_string(crate_root().join("Cargo.toml")).unwrap();
    let after = toml.split_once("[workspace.package]").unwrap().1;
    after
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .unwrap()
        .trim_matches('"')
        .to_string()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Unpacks an OCI archive's single image: (its ref name, its config, the root file system).
fn unpack(archive: &Path, dir: &Path) -> (String, Value, PathBuf) {
    let oci = dir.join("oci");
    std::fs::create_dir_all(&oci).unwrap();
    let st = Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(&oci)
        .status()
        .unwrap();
    assert!(st.success());
    let blob = |digest: &str| {
        oci.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let index = read_json(&oci.join("index.json"));
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    let name = manifests[0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = read_json(&blob(manifests[0]["digest"].as_str().unwrap()));
    let config = read_json(&blob(manifest["config"]["digest"].as_str().unwrap()));
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let st = Command::new("tar")
            .arg("-xf")
            .arg(blob(layer["digest"].as_str().unwrap()))
            .arg("-C")
            .arg(&rootfs)
            .status()
            .unwrap();
        assert!(st.success(), "unpacking {layer}");
    }
    (name, config, rootfs)
}

/// Every file of the root file system, relative (`usr/bin/vigil-sensor`).
fn files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_str().unwrap().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn images_build_from_scratch_with_the_charts_names_and_the_binaries_start() {
    let version = workspace_version();
    let work = tempfile::tempdir().unwrap();
    let out_dir = work.path().join("images");
    let bin_dir = bin_path("vigil-sensor").parent().unwrap().to_path_buf();
    let out = Command::new(crate_root().join("scripts/build-images.sh"))
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "make images: {}", describe(&out));

    let values = std::fs::read_to_string(crate_root().join("charts/vigil/values.yaml")).unwrap();
    let chart = std::fs::read_to_string(crate_root().join("charts/vigil/Chart.yaml")).unwrap();
    assert!(
        chart.contains(&format!("appVersion: \"{version}\"")),
        "the chart's default tag (appVersion) is the workspace version"
    );
    for (image, binaries, user) in [
        ("vigil-sensor", &["vigil-sensor", "vigil"][..], None),
        (
            "vigil-operator",
            &["vigil-operator"][..],
            Some("65532:65532"),
        ),
    ] {
        let archive = out_dir.join(format!("{image}-{version}.oci.tar"));
        assert!(archive.is_file(), "{} missing", archive.display());
        let dir = work.path().join(image);
        let (name, config, rootfs) = unpack(&archive, &dir);
        // The chart's default repository and tag.
        assert_eq!(name, format!("vigil/{image}:{version}"));
        assert!(
            values.contains(&format!("repository: vigil/{image}\n")),
            "values.yaml's default repository is vigil/{image}"
        );
        let cfg = &config["config"];
        assert_eq!(
            cfg["Entrypoint"][0],
            format!("/usr/bin/{image}"),
            "{config}"
        );
        assert_eq!(cfg["User"].as_str(), user, "{config}");
        assert_eq!(
            cfg["Labels"]["org.opencontainers.image.version"], version,
            "{config}"
        );
        assert!(
            cfg["Env"]
                .as_array()
                .unwrap()
                .contains(&Value::from("PATH=/usr/bin")),
            "{config}"
        );
        // From scratch: the binaries, their shared libraries, a few files of /etc. No shell.
        let all = files(&rootfs);
        for b in binaries {
            assert!(all.contains(&format!("usr/bin/{b}")), "{all:?}");
        }
        for f in &all {
            let ok = f.starts_with("usr/bin/vigil")
                || f.contains(".so")
                || matches!(
                    f.as_str(),
                    "etc/passwd" | "etc/group" | "etc/ssl/certs/ca-certificates.crt"
                );
            assert!(ok, "{image}: unexpected file {f} (all: {all:?})");
        }
        assert!(!all.iter().any(|f| f.ends_with("/sh")), "{all:?}");
        // The binaries start with nothing but the image's files.
        for b in binaries {
            let out = Command::new("chroot")
                .arg(&rootfs)
                .arg(format!("/usr/bin/{b}"))
                .arg("--version")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{image}: {b} --version: {}",
                describe(&out)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            assert_eq!(text.trim(), format!("{b} {version}"), "{image}");
        }
    }
}
