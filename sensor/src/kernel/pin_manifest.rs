//! What a generation's pins were when its sensor last changed them, and what changed since.
//!
//! Between two sensors nothing watches `/sys/fs/bpf/vigil/<instance>/`: whoever may use bpffs
//! can unlink a link (its program stops enforcing), pin another program under a known name, or
//! replace a map. The sensor writes a manifest — every pin's path and the kernel id of the object
//! behind it — each time it changes its pins (start, policy changes, exit); the next sensor
//! compares before it takes anything over. A difference is reported (event, metric, log) and
//! the generation is not taken over: a new one is loaded beside it and the old one retired.
//!
//! This detects pins added, removed or replaced; it does not see map contents changed in place
//! (that needs the BPF-LSM self-protection), and someone who can rewrite the manifest too can
//! hide a change: it is tamper evidence for the window without a sensor, not a seal.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::kernel::bpf_syscall;

/// The manifest's pin, beside the generation's other objects.
pub const MANIFEST: &str = "vigil_manifest";

/// Pins the sensor rewrites as a matter of course (by replacing them), never in a manifest.
const REWRITTEN: &[&str] = &[
    "vigil_state",
    "vigil_state_new",
    MANIFEST,
    "vigil_manifest_new",
];

/// Subdirectories of a generation that hold pins (see `pins.rs`).
const SUBDIRS: &[&str] = &["progs", "links"];

/// Every pin of the generation at `gen_dir` and the id of the object behind it (0 when it
/// cannot be opened: that too is a difference when it was not so before).
pub fn scan(gen_dir: &Path) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    let mut add_dir = |dir: &Path, prefix: &str| {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() || REWRITTEN.contains(&name.as_str()) {
                continue;
            }
            out.insert(format!("{prefix}{name}"), object_id(&e.path()).unwrap_or(0));
        }
    };
    add_dir(gen_dir, "");
    for sub in SUBDIRS {
        add_dir(&gen_dir.join(sub), &format!("{sub}/"));
    }
    out
}

/// The kernel id of the program, map or link pinned at `path`.
fn object_id(path: &Path) -> std::io::Result<u32> {
    let fd = bpf_syscall::get(path)?;
    bpf_syscall::object_id(fd.as_raw_fd())
}

/// Writes the manifest of the generation at `gen_dir` as it is now.
pub fn write(gen_dir: &Path) -> Result<(), String> {
    let json = serde_json::to_vec(&scan(gen_dir)).map_err(|e| e.to_string())?;
    bpf_syscall::write_blob(&gen_dir.join(MANIFEST), MANIFEST, &json).map_err(|e| e.to_string())
}

/// What changed in the generation at `gen_dir` since its manifest was written, one line per
/// pin; empty when nothing did.
pub fn changes(gen_dir: &Path) -> Vec<String> {
    let written: BTreeMap<String, u32> =
        match bpf_syscall::read_blob(&gen_dir.join(MANIFEST)).map(|b| serde_json::from_slice(&b)) {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => return vec![format!("{MANIFEST} unreadable: {e}")],
            Err(e) => return vec![format!("{MANIFEST} missing: {e}")],
        };
    diff(&written, &scan(gen_dir))
}

/// The differences between two manifests, in path order.
pub fn diff(was: &BTreeMap<String, u32>, now: &BTreeMap<String, u32>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, id) in was {
        match now.get(path) {
            None => out.push(format!("{path} removed (was id {id})")),
            Some(n) if n != id => out.push(format!("{path} replaced (id {id}, now {n})")),
            Some(_) => {}
        }
    }
    for (path, id) in now {
        if !was.contains_key(path) {
            out.push(format!("{path} added (id {id})"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(items: &[(&str, u32)]) -> BTreeMap<String, u32> {
        items.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn diff_names_removed_replaced_and_added_pins() {
        let was = m(&[("links/a", 1), ("links/b", 2), ("vigil_events", 3)]);
        let now = m(&[("links/a", 1), ("links/b", 9), ("progs/x", 4)]);
        assert_eq!(
            diff(&was, &now),
            vec![
                "links/b replaced (id 2, now 9)",
                "vigil_events removed (was id 3)",
                "progs/x added (id 4)",
            ]
        );
        assert!(diff(&was, &was).is_empty());
    }
}
