//! Container ids from cgroup names, and containers' cgroups on this host.
//!
//! Recognised cgroup v2 directory names (the kernel side sends the last component of the
//! process's cgroup path; the id is the 64 hex digits):
//!
//! | Runtime, cgroup driver | Container cgroup |
//! |---|---|
//! | containerd (CRI), systemd | `…/kubepods-<qos>-pod<uid>.slice/cri-containerd-<id>.scope` |
//! | containerd (CRI), cgroupfs | `…/kubepods/<qos>/pod<uid>/<id>` |
//! | CRI-O, systemd | `…/kubepods-<qos>-pod<uid>.slice/crio-<id>.scope` |
//! | CRI-O, cgroupfs | `…/kubepods/<qos>/pod<uid>/crio-<id>` |
//! | Docker (and cri-dockerd), systemd | `…/docker-<id>.scope` |
//! | Docker, cgroupfs | `/docker/<id>` |
//! | Podman | `…/libpod-<id>.scope` |
//!
//! CRI-O's `crio-conmon-<id>.scope` (the monitor process, not the container) is not a
//! container. Like Tetragon, events carry the id's first 31 characters in `docker`; the pod
//! inventory is looked up with the same 31 characters.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Characters of the id kept in the `docker` field.
pub const DOCKER_ID_LEN: usize = 31;

/// Deepest directory level searched below the cgroup root.
const MAX_CGROUP_DEPTH: usize = 12;

/// The full container id in a cgroup name, if it names a container.
pub fn container_id(cgroup_name: &str) -> Option<&str> {
    let name = cgroup_name.strip_suffix(".scope").unwrap_or(cgroup_name);
    let id = ["cri-containerd-", "crio-", "docker-", "libpod-"]
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name);
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// The value of the event's `docker` field for a cgroup name ("" when not a container).
pub fn docker_field(cgroup_name: &str) -> String {
    container_id(cgroup_name)
        .map(|id| id[..DOCKER_ID_LEN].to_string())
        .unwrap_or_default()
}

/// A container id as runtimes and the Kubernetes API report it (`containerd://<id>`,
/// `cri-o://<id>`, `docker://<id>`), without the runtime prefix and lower-cased.
pub fn normalize_id(id: &str) -> String {
    let bare = id.rsplit_once("://").map(|(_, i)| i).unwrap_or(id);
    bare.trim().to_ascii_lowercase()
}

/// The pod uid in a cgroup path (systemd driver: `kubepods-<qos>-pod<uid with _>.slice`;
/// cgroupfs driver: `pod<uid>`), if any component names one.
pub fn pod_uid(cgroup_path: &str) -> Option<String> {
    cgroup_path.split('/').rev().find_map(|c| {
        let c = c.strip_suffix(".slice").unwrap_or(c);
        let i = c.rfind("pod")?;
        let uid = &c[i + 3..];
        (uid.len() == 36
            && uid
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_'))
        .then(|| uid.replace('_', "-"))
    })
}

/// Where cgroup v2 is mounted: `/sys/fs/cgroup` on unified hosts, `/sys/fs/cgroup/unified` on
/// hybrid (v1 + v2) ones; read from /proc/self/mounts, `/sys/fs/cgroup` when none is found.
pub fn cgroup2_root() -> PathBuf {
    std::fs::read_to_string("/proc/self/mounts")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
            })
        })
        .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"))
}

/// Finds the cgroup directories of the containers in `wanted` (full ids) under `root` (the
/// cgroup v2 mount): container id → (cgroup id, directory). The cgroup id is the directory's
/// inode number, which is what `bpf_get_current_cgroup_id()` returns.
pub fn find_cgroups(root: &Path, wanted: &HashSet<String>) -> HashMap<String, (u64, PathBuf)> {
    let mut found = HashMap::new();
    if wanted.is_empty() {
        return found;
    }
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = container_id(&name)
                && wanted.contains(id)
                && let Ok(m) = e.metadata()
            {
                found.insert(id.to_string(), (m.ino(), e.path()));
                if found.len() == wanted.len() {
                    return found;
                }
            }
            if depth + 1 < MAX_CGROUP_DEPTH {
                stack.push((e.path(), depth + 1));
            }
        }
    }
    found
}

/// Every container cgroup under `root` (the cgroup v2 mount), whatever the runtime and whether
/// or not its pod is known, and every cgroup below one (a container may make sub-cgroups; their
/// processes are the container's): cgroup id → directory. Stops at `limit` entries.
pub fn scan_container_cgroups(root: &Path, limit: usize) -> HashMap<u64, PathBuf> {
    let mut found = HashMap::new();
    // (directory, depth, inside a container's cgroup)
    let mut stack = vec![(root.to_path_buf(), 0usize, false)];
    while let Some((dir, depth, inside)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let container = inside || container_id(&e.file_name().to_string_lossy()).is_some();
            if container && let Ok(m) = e.metadata() {
                if found.len() >= limit {
                    return found;
                }
                found.insert(m.ino(), e.path());
            }
            if depth + 1 < MAX_CGROUP_DEPTH {
                stack.push((e.path(), depth + 1, container));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1e2a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9012345678abcdef";
    const UID: &str = "0f4b2c3a-1d2e-4f50-8a6b-7c8d9e0f1a2b";

    fn last(path: &str) -> &str {
        path.rsplit('/').next().unwrap()
    }

    #[test]
    fn containerd_systemd_driver() {
        let p = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{ID}.scope",
            UID.replace('-', "_")
        );
        assert_eq!(container_id(last(&p)), Some(ID));
        assert_eq!(pod_uid(&p).as_deref(), Some(UID));
    }

    #[test]
    fn containerd_cgroupfs_driver() {
        let p = format!("/kubepods/burstable/pod{UID}/{ID}");
        assert_eq!(container_id(last(&p)), Some(ID));
        assert_eq!(pod_uid(&p).as_deref(), Some(UID));
    }

    #[test]
    fn crio_systemd_and_cgroupfs() {
        let p = format!(
            "/kubepods.slice/kubepods-pod{}.slice/crio-{ID}.scope",
            UID.replace('-', "_")
        );
        assert_eq!(container_id(last(&p)), Some(ID));
        assert_eq!(pod_uid(&p).as_deref(), Some(UID));
        let p = format!("/kubepods/pod{UID}/crio-{ID}");
        assert_eq!(container_id(last(&p)), Some(ID));
        // conmon runs next to the container, in its own scope: not the container.
        assert_eq!(container_id(&format!("crio-conmon-{ID}.scope")), None);
    }

    #[test]
    fn docker_systemd_and_cgroupfs() {
        let p = format!("/system.slice/docker-{ID}.scope");
        assert_eq!(container_id(last(&p)), Some(ID));
        assert_eq!(pod_uid(&p), None);
        let p = format!("/docker/{ID}");
        assert_eq!(container_id(last(&p)), Some(ID));
        assert_eq!(container_id(&format!("libpod-{ID}.scope")), Some(ID));
        for name in [format!("docker-{ID}.scope"), ID.to_string()] {
            assert_eq!(docker_field(&name), &ID[..31]);
        }
    }

    #[test]
    fn runtime_prefixes_are_removed() {
        assert_eq!(normalize_id(&format!("containerd://{ID}")), ID);
        assert_eq!(normalize_id(&format!("cri-o://{ID}")), ID);
        assert_eq!(normalize_id(&format!("docker://{}", ID.to_uppercase())), ID);
        assert_eq!(normalize_id(ID), ID);
    }

    #[test]
    fn ignores_non_containers() {
        for name in [
            "",
            "session-3.scope",
            "user@0.service",
            "init.scope",
            &ID[..63],
            "crio-xyz.scope",
        ] {
            assert_eq!(container_id(name), None, "{name}");
            assert_eq!(docker_field(name), "");
        }
        assert_eq!(pod_uid("/user.slice/user-0.slice/session-3.scope"), None);
    }

    #[test]
    fn finds_container_cgroups_in_a_tree() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(format!(
            "kubepods.slice/kubepods-pod{UID}.slice/cri-containerd-{ID}.scope"
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let other = format!("{}0", &ID[..63]);
        let wanted: HashSet<String> = [ID.to_string(), other].into();
        let found = find_cgroups(root.path(), &wanted);
        assert_eq!(found.len(), 1);
        assert_eq!(found[ID], (std::fs::metadata(&dir).unwrap().ino(), dir));
    }

    #[test]
    fn scan_finds_every_container_and_its_sub_cgroups() {
        let root = tempfile::tempdir().unwrap();
        let ino = |d: &Path| std::fs::metadata(d).unwrap().ino();
        let pod = root
            .path()
            .join(format!("kubepods.slice/kubepods-pod{UID}.slice"));
        let crio = pod.join(format!("crio-{ID}.scope"));
        let nested = crio.join("init.scope");
        let conmon = pod.join(format!("crio-conmon-{ID}.scope"));
        let docker = root.path().join(format!("system.slice/docker-{ID}.scope"));
        let host = root.path().join("user.slice/user-0.slice/session-1.scope");
        for d in [&nested, &conmon, &docker, &host] {
            std::fs::create_dir_all(d).unwrap();
        }
        let found = scan_container_cgroups(root.path(), 100);
        let want: HashMap<u64, PathBuf> = [&crio, &nested, &docker]
            .into_iter()
            .map(|d| (ino(d), d.clone()))
            .collect();
        assert_eq!(
            found, want,
            "containers and what is below them; not conmon, slices or sessions"
        );
        assert_eq!(scan_container_cgroups(root.path(), 2).len(), 2, "bounded");
    }
}
