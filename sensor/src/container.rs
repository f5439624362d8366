//! Container ids from cgroup names.
//!
//! Recognised last components of a cgroup v2 path (the kernel side sends only the last one):
//! containerd / CRI (`cri-containerd-<id>.scope`), CRI-O (`crio-<id>.scope`), Docker with the
//! systemd driver (`docker-<id>.scope`), Podman (`libpod-<id>.scope`), and the cgroupfs driver's
//! bare 64-hex-digit directory names. The id is the 64 hex digits; like Tetragon, events carry
//! its first 31 characters in `docker`.

/// Characters of the id kept in the `docker` field.
pub const DOCKER_ID_LEN: usize = 31;

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

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1e2a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9012345678abcdef";

    #[test]
    fn recognises_runtimes() {
        for name in [
            format!("cri-containerd-{ID}.scope"),
            format!("crio-{ID}.scope"),
            format!("docker-{ID}.scope"),
            format!("libpod-{ID}.scope"),
            ID.to_string(),
        ] {
            assert_eq!(container_id(&name), Some(ID), "{name}");
            assert_eq!(docker_field(&name), &ID[..31]);
        }
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
    }
}
