//! A directory of policy files (`*.yaml`, `*.yml`), polled: what changed since the last pass,
//! what is gone, and which policy each file defines. The sensor's `--policy-dir` and the
//! operator's GitOps mode both sit on this; each decides what a policy is (`K`) and what
//! loading one means.
//!
//! A file is compared by a hash of its content, so an unchanged file is not loaded again and a
//! bad file is reported once. A file larger than any policy may be is not read at all (a 100 MB
//! file must not be loaded into memory every pass): it is reported, once per size and
//! modification time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vigil_api::policy::limits::MAX_YAML_BYTES;

/// How often a policy directory is looked at.
pub const POLL_INTERVAL_MS: u64 = 500;

/// FNV-1a, 64 bits: stable across builds and platforms (a file's hash may be used as a policy
/// generation that must not change when the process restarts).
pub fn content_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

struct Known<K> {
    hash: u64,
    /// The policy the file defines, once it loaded.
    key: Option<K>,
}

/// A file that is new or whose content changed since the last pass.
#[derive(Debug)]
pub struct Changed<K> {
    pub path: PathBuf,
    /// The content's hash, to hand back to [`PolicyFiles::remember`].
    pub hash: u64,
    /// The file's text, or why it cannot be a policy (not UTF-8, too large).
    pub text: Result<String, String>,
    /// The policy the previous content defined, if it loaded.
    pub previous: Option<K>,
}

/// What one pass found.
#[derive(Debug)]
pub struct Scan<K> {
    pub changed: Vec<Changed<K>>,
    /// Files that are gone, with the policy each had defined (forgotten already).
    pub gone: Vec<(PathBuf, Option<K>)>,
    /// The directory or a file could not be read: `path: what`.
    pub errors: Vec<String>,
}

impl<K> Default for Scan<K> {
    fn default() -> Self {
        Scan {
            changed: Vec::new(),
            gone: Vec::new(),
            errors: Vec::new(),
        }
    }
}

/// What one pass changed or could not do, by policy name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Policies loaded (new, or replaced by a changed file).
    pub loaded: Vec<String>,
    /// Policies removed because their file is gone.
    pub removed: Vec<String>,
    /// `path: what` for each file or directory that could not be used.
    pub errors: Vec<String>,
}

impl SyncReport {
    /// Logs the pass; every error also counts in `errors` (the binary's
    /// `…policy_dir_errors_total`).
    pub fn log(&self, errors: &prometheus_client::metrics::counter::Counter) {
        for p in &self.loaded {
            tracing::info!(policy = %p, "policy loaded from the policy directory");
        }
        for p in &self.removed {
            tracing::info!(policy = %p, "policy removed: its file is gone");
        }
        for e in &self.errors {
            tracing::error!("policy directory: {e}");
            errors.inc();
        }
    }
}

/// Where the policies of a directory go: the sensor's engine, the operator's fleet.
pub trait PolicyTarget<K> {
    /// Removes `key`, defined by a file that is gone; the error is reported with the file.
    fn remove(&self, key: &K) -> Result<(), String>;
    /// Loads a new or changed file, reporting into `report`; returns the policy the file now
    /// defines (its previous one when the new content did not load). `files` still holds the
    /// other files, to find another file defining the same policy.
    fn load(&self, files: &PolicyFiles<K>, file: &Changed<K>, report: &mut SyncReport)
    -> Option<K>;
}

/// A policy directory feeding a target: [`PolicyDir::sync`] once per poll.
pub struct PolicyDir<K, T> {
    files: PolicyFiles<K>,
    target: T,
}

impl<K: Clone + PartialEq + std::fmt::Display, T: PolicyTarget<K>> PolicyDir<K, T> {
    pub fn new(dir: PathBuf, target: T) -> Self {
        PolicyDir {
            files: PolicyFiles::new(dir),
            target,
        }
    }

    /// One pass over the directory.
    pub fn sync(&mut self) -> SyncReport {
        self.files.sync(&self.target)
    }
}

/// The directory and, per file, the content last seen and the policy it defines.
pub struct PolicyFiles<K> {
    dir: PathBuf,
    known: BTreeMap<PathBuf, Known<K>>,
}

fn is_policy_file(p: &Path) -> bool {
    p.is_file()
        && matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml") | Some("yml")
        )
}

impl<K: Clone + PartialEq> PolicyFiles<K> {
    pub fn new(dir: PathBuf) -> Self {
        PolicyFiles {
            dir,
            known: BTreeMap::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One pass over the directory. Every [`Changed`] file must be answered with
    /// [`PolicyFiles::remember`] (with the policy it now defines, or the previous one when it
    /// did not load), or it is offered again next pass.
    pub fn scan(&mut self) -> Scan<K> {
        let mut scan = Scan::default();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) => {
                scan.errors
                    .push(format!("{}: cannot list: {e}", self.dir.display()));
                return scan;
            }
        };
        let mut present = BTreeMap::new();
        for e in entries.flatten() {
            let p = e.path();
            if !is_policy_file(&p) {
                continue;
            }
            if let Ok(m) = e.metadata()
                && m.len() > MAX_YAML_BYTES as u64
            {
                let stamp = format!("{}:{:?}", m.len(), m.modified().ok());
                let why = format!(
                    "{} bytes, more than the {MAX_YAML_BYTES} a policy file may have; not read",
                    m.len()
                );
                present.insert(p, (content_hash(stamp.as_bytes()), Err(why)));
                continue;
            }
            match std::fs::read(&p) {
                Ok(bytes) => {
                    let h = content_hash(&bytes);
                    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string());
                    present.insert(p, (h, text));
                }
                Err(e) => scan
                    .errors
                    .push(format!("{}: cannot read: {e}", p.display())),
            }
        }
        let gone: Vec<PathBuf> = self
            .known
            .keys()
            .filter(|p| !present.contains_key(*p))
            .cloned()
            .collect();
        for p in gone {
            let key = self.known.remove(&p).and_then(|k| k.key);
            scan.gone.push((p, key));
        }
        for (path, (hash, text)) in present {
            let previous = match self.known.get(&path) {
                Some(k) if k.hash == hash => continue,
                Some(k) => k.key.clone(),
                None => None,
            };
            scan.changed.push(Changed {
                path,
                hash,
                text,
                previous,
            });
        }
        scan
    }

    /// One pass: files that are gone remove their policy, new and changed files are loaded.
    pub fn sync(&mut self, target: &impl PolicyTarget<K>) -> SyncReport
    where
        K: std::fmt::Display,
    {
        let scan = self.scan();
        let mut report = SyncReport {
            errors: scan.errors,
            ..Default::default()
        };
        for (path, key) in scan.gone {
            if let Some(k) = key {
                match target.remove(&k) {
                    Ok(()) => report.removed.push(k.to_string()),
                    Err(e) => report.errors.push(format!("{}: {e}", path.display())),
                }
            }
        }
        for file in scan.changed {
            let key = target.load(self, &file, &mut report);
            self.remember(&file.path, file.hash, key);
        }
        report
    }

    /// Records what `path` with content `hash` now defines.
    pub fn remember(&mut self, path: &Path, hash: u64, key: Option<K>) {
        self.known.insert(path.to_path_buf(), Known { hash, key });
    }

    /// The file, other than `except`, that defines `key`.
    pub fn owner(&self, key: &K, except: &Path) -> Option<&Path> {
        self.known
            .iter()
            .find(|(p, k)| p.as_path() != except && k.key.as_ref() == Some(key))
            .map(|(p, _)| p.as_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_changed_unchanged_and_gone_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = PolicyFiles::<String>::new(dir.path().to_path_buf());
        let a = dir.path().join("a.yaml");
        std::fs::write(&a, "one").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a policy").unwrap();
        let s = files.scan();
        assert_eq!(s.changed.len(), 1, "{s:?}");
        assert_eq!(s.changed[0].text.as_deref(), Ok("one"));
        assert_eq!(s.changed[0].previous, None);
        files.remember(&a, s.changed[0].hash, Some("a".into()));
        assert!(files.scan().changed.is_empty(), "unchanged: not offered");
        assert_eq!(files.owner(&"a".into(), Path::new("/x")), Some(a.as_path()));
        assert_eq!(files.owner(&"a".into(), &a), None);

        std::fs::write(&a, "two").unwrap();
        let s = files.scan();
        assert_eq!(s.changed[0].previous.as_deref(), Some("a"));
        // Not remembered: offered again.
        assert_eq!(files.scan().changed.len(), 1);
        files.remember(&a, s.changed[0].hash, Some("a".into()));

        std::fs::remove_file(&a).unwrap();
        let s = files.scan();
        assert_eq!(s.gone, vec![(a.clone(), Some("a".to_string()))]);
        assert!(files.scan().gone.is_empty());
    }

    #[test]
    fn unreadable_content_is_offered_once_as_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = PolicyFiles::<String>::new(dir.path().to_path_buf());
        let a = dir.path().join("a.yml");
        std::fs::write(&a, [0xff, 0xfe]).unwrap();
        let s = files.scan();
        assert_eq!(s.changed[0].text, Err("not UTF-8 text".to_string()));
        files.remember(&a, s.changed[0].hash, None);
        assert!(files.scan().changed.is_empty());
        // Sparse: 100 MB that take no disk, and would take 100 MB of memory if read.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&a)
            .unwrap()
            .set_len(100 << 20)
            .unwrap();
        let s = files.scan();
        let why = s.changed[0].text.as_ref().unwrap_err();
        assert!(why.starts_with("104857600 bytes"), "{why}");
        files.remember(&a, s.changed[0].hash, None);
        assert!(files.scan().changed.is_empty(), "reported once");
    }

    #[test]
    fn a_missing_directory_is_reported() {
        let mut files = PolicyFiles::<String>::new("/nonexistent/vigil".into());
        assert!(files.scan().errors[0].contains("cannot list"));
    }

    #[test]
    fn the_hash_is_fnv1a() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(content_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(content_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
