//! The sensor's objects in bpffs. Each sensor instance (`--instance`, one per node in
//! production; tests give each sensor its own) owns `/sys/fs/bpf/vigil/<instance>/`, which holds
//! one directory per generation of objects:
//!
//! ```text
//! /sys/fs/bpf/vigil/<instance>/<generation>/
//!     vigil_events, vigil_procs, vigil_hooks, …   the maps every object shares
//!     progs/<program>                              shared programs, loaded (verified) once
//!     links/<name>                                 attachments: they stay when the sensor stops
//!     vigil_stamp, vigil_state                     what the next sensor checks and takes over
//! ```
//!
//! A sensor takes over the one generation it finds when its stamp matches this build, or loads
//! a new generation beside it and retires the old one once the new one enforces (see
//! `handoff.rs`). Generation names are hexadecimal epochs: the newest sorts last.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use aya::{Btf, EbpfLoader};
use vigil_sensor_bpf::hook_names;

use crate::error::SensorError;

/// bpffs magic number (`BPF_FS_MAGIC`).
const BPF_FS_MAGIC: u64 = 0xcafe_4a11;
pub const PIN_ROOT: &str = "/sys/fs/bpf/vigil";

/// Checks an instance name: it names a bpffs directory, so letters, digits, `_` and `-` (bpffs
/// refuses dots), starting with a letter (bare numbers were the per-process directories of
/// older sensors).
pub fn check_instance(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?}: expected 1-64 letters, digits, '_' or '-', starting with a letter"
        ))
    }
}

/// One generation of pinned objects.
#[derive(Debug)]
pub struct PinDir {
    path: PathBuf,
    /// Removed with everything in it when dropped, unless kept for the next sensor.
    remove: AtomicBool,
}

impl PinDir {
    /// `/sys/fs/bpf/vigil/<instance>`, created if needed (bpffs mounted if nothing is at
    /// /sys/fs/bpf). Directories of sensors of the older per-process layout that are gone are
    /// removed on the way.
    pub fn instance_root(instance: &str) -> Result<PathBuf, SensorError> {
        check_instance(instance).map_err(|message| SensorError::Config {
            option: "instance".into(),
            message,
        })?;
        ensure_bpffs()?;
        let root = Path::new(PIN_ROOT);
        std::fs::create_dir_all(root)
            .map_err(|e| SensorError::io(format!("creating {}", root.display()), e))?;
        remove_legacy(root);
        let dir = root.join(instance);
        std::fs::create_dir_all(&dir)
            .map_err(|e| SensorError::io(format!("creating {}", dir.display()), e))?;
        Ok(dir)
    }

    /// The generations under an instance directory, oldest first.
    pub fn generations(root: &Path) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(root)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().is_dir())
                    .filter(|e| {
                        e.file_name()
                            .to_str()
                            .is_some_and(|n| u64::from_str_radix(n, 16).is_ok())
                    })
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// A new, empty generation named by `epoch`.
    pub fn create(root: &Path, epoch: u64) -> Result<PinDir, SensorError> {
        let path = root.join(format!("{epoch:016x}"));
        remove_tree(&path);
        for d in [path.clone(), path.join("progs"), path.join("links")] {
            std::fs::create_dir_all(&d)
                .map_err(|e| SensorError::io(format!("creating {}", d.display()), e))?;
        }
        Ok(PinDir {
            path,
            remove: AtomicBool::new(true),
        })
    }

    /// A generation the previous sensor left, taken over. Kept when dropped (a sensor that
    /// fails to start must not take away what enforces), unless [`PinDir::discard`] is called.
    pub fn adopt(path: PathBuf) -> PinDir {
        for d in [path.join("progs"), path.join("links")] {
            let _ = std::fs::create_dir_all(d);
        }
        PinDir {
            path,
            remove: AtomicBool::new(false),
        }
    }

    /// A private generation for a one-off check (`check-programs`), removed when dropped.
    pub fn scratch() -> Result<PinDir, SensorError> {
        ensure_bpffs()?;
        let root = Path::new(PIN_ROOT);
        std::fs::create_dir_all(root)
            .map_err(|e| SensorError::io(format!("creating {}", root.display()), e))?;
        // Removed with its own parent directory (see Drop).
        PinDir::create(&root.join(format!("check-{}", std::process::id())), 0)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn progs_dir(&self) -> PathBuf {
        self.path.join("progs")
    }

    pub fn links_dir(&self) -> PathBuf {
        self.path.join("links")
    }

    pub fn stamp_path(&self) -> PathBuf {
        self.path.join("vigil_stamp")
    }

    pub fn state_path(&self) -> PathBuf {
        self.path.join("vigil_state")
    }

    /// Leave everything pinned when this value goes: the programs keep enforcing and the next
    /// sensor of the instance takes them over.
    pub fn keep(&self) {
        self.remove.store(false, Ordering::Relaxed);
    }

    /// Remove everything pinned here when this value goes (a stop without hand-over).
    pub fn discard(&self) {
        self.remove.store(true, Ordering::Relaxed);
    }

    /// A loader that shares every map of the process and hook objects through this directory.
    pub fn loader<'a>(&'a self, btf: &'a Btf) -> EbpfLoader<'a> {
        let mut l = EbpfLoader::new();
        l.btf(Some(btf));
        for name in hook_names::SHARED_MAPS {
            l.map_pin_path(name, self.path.join(name));
        }
        l
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if self.remove.load(Ordering::Relaxed) {
            remove_tree(&self.path);
            // The instance's directory too, once it holds no other generation.
            if let Some(parent) = self.path.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

/// Removes a pinned tree: links first (unpinning a link no process holds detaches it), then
/// programs, maps and the directories.
pub fn remove_tree(path: &Path) {
    for sub in ["links", "progs"] {
        remove_files(&path.join(sub));
        let _ = std::fs::remove_dir(path.join(sub));
    }
    remove_files(path);
    let _ = std::fs::remove_dir(path);
}

fn remove_files(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_file() || !e.path().is_dir() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Per-process directories (`/sys/fs/bpf/vigil/<pid>`) of sensors before instances existed.
fn remove_legacy(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!("removing pinned maps of a sensor that is gone (pid {pid})");
            remove_tree(&e.path());
        }
    }
}

fn ensure_bpffs() -> Result<(), SensorError> {
    let target = Path::new("/sys/fs/bpf");
    if let Ok(st) = rustix::fs::statfs(target)
        && st.f_type as u64 == BPF_FS_MAGIC
    {
        return Ok(());
    }
    rustix::mount::mount(
        "bpf",
        target,
        "bpf",
        rustix::mount::MountFlags::empty(),
        None::<&std::ffi::CStr>,
    )
    .map_err(|e| SensorError::bpf("mounting bpffs at /sys/fs/bpf", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_directory_names_that_start_with_a_letter() {
        for ok in ["default", "node-1", "e2e_test-3"] {
            assert!(check_instance(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1234", "../x", "a/b", "a b", "a.b", &"x".repeat(65)] {
            assert!(check_instance(bad).is_err(), "{bad}");
        }
    }
}
