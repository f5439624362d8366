//! GitOps mode: every `*.yaml` / `*.yml` file of a directory is one policy. The directory is
//! polled; a new or changed file upserts its policy into the [`Fleet`], a removed file removes
//! it. A file that does not validate is reported (log and `vigil_operator_policy_dir_errors_total`)
//! and the version it replaced, if any, stays distributed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vigil_api::policy::compile_each;

use crate::distribution::fnv1a;
use crate::fleet::{DesiredPolicy, Fleet, PolicyKey};

/// How often the directory is looked at.
pub const POLL_INTERVAL_MS: u64 = 500;

struct Known {
    hash: u64,
    /// The policy this file defines, once it validated.
    key: Option<PolicyKey>,
}

/// The directory and the policies it defined.
pub struct PolicyDir {
    dir: PathBuf,
    fleet: Arc<dyn Fleet>,
    known: BTreeMap<PathBuf, Known>,
}

/// What one pass changed or could not do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub upserted: Vec<String>,
    pub removed: Vec<String>,
    pub errors: Vec<String>,
}

fn is_policy_file(p: &Path) -> bool {
    p.is_file()
        && matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml") | Some("yml")
        )
}

impl PolicyDir {
    pub fn new(dir: PathBuf, fleet: Arc<dyn Fleet>) -> Self {
        PolicyDir {
            dir,
            fleet,
            known: BTreeMap::new(),
        }
    }

    /// One pass over the directory.
    pub fn sync(&mut self) -> SyncReport {
        let mut report = SyncReport::default();
        let mut present = BTreeMap::new();
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                for e in entries.flatten() {
                    let p = e.path();
                    if !is_policy_file(&p) {
                        continue;
                    }
                    match std::fs::read(&p) {
                        Ok(bytes) => {
                            present.insert(p, bytes);
                        }
                        Err(e) => report
                            .errors
                            .push(format!("{}: cannot read: {e}", p.display())),
                    }
                }
            }
            Err(e) => {
                report
                    .errors
                    .push(format!("{}: cannot list: {e}", self.dir.display()));
                return report;
            }
        }
        let gone: Vec<PathBuf> = self
            .known
            .keys()
            .filter(|p| !present.contains_key(*p))
            .cloned()
            .collect();
        for p in gone {
            if let Some(Known { key: Some(k), .. }) = self.known.remove(&p) {
                self.fleet.remove(&k);
                report.removed.push(k.to_string());
            }
        }
        for (p, bytes) in present {
            let h = fnv1a(&bytes);
            if self.known.get(&p).is_some_and(|k| k.hash == h) {
                continue;
            }
            self.load(&p, &bytes, h, &mut report);
        }
        report
    }

    fn load(&mut self, path: &Path, bytes: &[u8], h: u64, report: &mut SyncReport) {
        let old = self.known.get(path).and_then(|k| k.key.clone());
        // Remember the content either way: a bad file is reported once, not every pass.
        let keep = |known: &mut BTreeMap<PathBuf, Known>, key: Option<PolicyKey>| {
            known.insert(path.to_path_buf(), Known { hash: h, key });
        };
        let result = std::str::from_utf8(bytes)
            .map_err(|_| "not UTF-8 text".to_string())
            .and_then(|text| compile_each(text).map_err(|e| e.to_string()))
            .and_then(|mut docs| {
                if docs.len() != 1 {
                    return Err(format!(
                        "expected exactly one TracingPolicy document, found {}",
                        docs.len()
                    ));
                }
                docs.remove(0).map(|(_, ir)| ir).map_err(|e| e.to_string())
            });
        let ir = match result {
            Ok(ir) => ir,
            Err(msg) => {
                let kept = old
                    .as_ref()
                    .map(|k| format!(" (policy {k} keeps its previous version)"))
                    .unwrap_or_default();
                report
                    .errors
                    .push(format!("{}: {msg}{kept}", path.display()));
                keep(&mut self.known, old);
                return;
            }
        };
        let identity = ir.identity.clone().unwrap_or_default();
        let key = PolicyKey::new(&identity.name, &identity.namespace);
        let owner = self
            .known
            .iter()
            .find(|(p, k)| p.as_path() != path && k.key.as_ref() == Some(&key))
            .map(|(p, _)| p.clone());
        if let Some(other) = owner {
            report.errors.push(format!(
                "{}: policy {key} is already defined by {}",
                path.display(),
                other.display()
            ));
            keep(&mut self.known, old);
            return;
        }
        if let Some(o) = old.as_ref().filter(|o| **o != key) {
            // The file now defines another policy: the old one goes.
            self.fleet.remove(o);
            report.removed.push(o.to_string());
        }
        let node_selector = ir.scope.as_ref().and_then(|s| s.node_selector.clone());
        self.fleet.upsert(DesiredPolicy {
            key: key.clone(),
            // Positive, stable across restarts: a content hash of the file.
            generation: (h >> 1) as i64,
            ir,
            node_selector,
        });
        report.upserted.push(key.to_string());
        keep(&mut self.known, Some(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribution::Distribution;
    use crate::metrics::OperatorMetrics;

    fn policy(name: &str, prefix: &str) -> String {
        format!(
            "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: {name}
spec:
  kprobes:
  - call: sys_openat
    syscall: true
    args:
    - index: 1
      type: string
    selectors:
    - matchArgs:
      - index: 1
        operator: Prefix
        values: [\"{prefix}\"]
"
        )
    }

    #[test]
    fn add_change_bad_edit_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let dist = Arc::new(Distribution::new(Arc::new(OperatorMetrics::default())));
        let mut pd = PolicyDir::new(dir.path().to_path_buf(), dist.clone());
        let key = PolicyKey::new("p", "");
        assert_eq!(pd.sync(), SyncReport::default());

        std::fs::write(dir.path().join("p.yaml"), policy("p", "/a/")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let r = pd.sync();
        assert_eq!(r.upserted, ["p"]);
        let g1 = dist.rollup(&key).unwrap().generation;
        // Nothing changed: nothing happens.
        assert_eq!(pd.sync(), SyncReport::default());

        std::fs::write(dir.path().join("p.yaml"), policy("p", "/b/")).unwrap();
        assert_eq!(pd.sync().upserted, ["p"]);
        let g2 = dist.rollup(&key).unwrap().generation;
        assert_ne!(g1, g2);

        // A bad edit is reported once; the previous version stays.
        std::fs::write(dir.path().join("p.yaml"), "kind: TracingPolicy\nspec: 3\n").unwrap();
        let r = pd.sync();
        assert_eq!(r.errors.len(), 1, "{r:?}");
        assert!(r.errors[0].contains("keeps its previous version"), "{r:?}");
        assert_eq!(dist.rollup(&key).unwrap().generation, g2);
        assert_eq!(pd.sync(), SyncReport::default());

        // Another file with the same policy name is refused.
        std::fs::write(dir.path().join("q.yml"), policy("p", "/c/")).unwrap();
        let r = pd.sync();
        assert!(r.errors[0].contains("already defined"), "{r:?}");

        std::fs::remove_file(dir.path().join("q.yml")).unwrap();
        std::fs::remove_file(dir.path().join("p.yaml")).unwrap();
        assert_eq!(pd.sync().removed, ["p"]);
        assert!(dist.rollup(&key).is_none());
    }
}
