//! `--policy-dir`: every `*.yaml` / `*.yml` file of a directory is a policy; the directory is
//! polled so that files added, changed or removed while the sensor runs add, replace or remove
//! their policy.
//!
//! A file that does not validate is reported (log + `vigil_policy_dir_errors_total`) and,
//! when it replaces a file that did, the policy already running from it stays as it was.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vigil_api::policy::compile_yaml;

use crate::policy_control::{PolicyControl, PolicyKey, PolicyOrigin};

/// How often the directory is looked at.
pub const POLL_INTERVAL_MS: u64 = 500;

struct Known {
    hash: u64,
    /// The policy this file loaded, if it did.
    key: Option<PolicyKey>,
}

/// The directory and what was loaded from it.
pub struct PolicyDir {
    dir: PathBuf,
    control: Arc<dyn PolicyControl>,
    known: BTreeMap<PathBuf, Known>,
}

/// What one pass changed or could not do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub errors: Vec<String>,
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

fn is_policy_file(p: &Path) -> bool {
    p.is_file()
        && matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml") | Some("yml")
        )
}

impl PolicyDir {
    pub fn new(dir: PathBuf, control: Arc<dyn PolicyControl>) -> Self {
        PolicyDir {
            dir,
            control,
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
                    if is_policy_file(&p) {
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
                match self.control.delete(&k) {
                    Ok(()) => report.removed.push(k.to_string()),
                    Err(e) => report.errors.push(format!("{}: {e}", p.display())),
                }
            }
        }
        for (p, bytes) in present {
            let h = hash(&bytes);
            if self.known.get(&p).is_some_and(|k| k.hash == h) {
                continue;
            }
            self.load(&p, &bytes, h, &mut report);
        }
        report
    }

    fn load(&mut self, path: &Path, bytes: &[u8], h: u64, report: &mut SyncReport) {
        let old = self.known.get(path).and_then(|k| k.key.clone());
        let fail = |report: &mut SyncReport, msg: String| {
            report.errors.push(format!("{}: {msg}", path.display()));
        };
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                fail(report, "not UTF-8 text".into());
                self.remember(path, h, old);
                return;
            }
        };
        // Validate before touching what runs: a bad edit leaves the previous version running.
        match compile_yaml(text) {
            Ok(irs) if irs.len() == 1 => {}
            Ok(irs) => {
                fail(
                    report,
                    format!("expected one TracingPolicy document, found {}", irs.len()),
                );
                self.remember(path, h, old);
                return;
            }
            Err(e) => {
                fail(report, e.to_string());
                self.remember(path, h, old);
                return;
            }
        }
        if let Some(k) = &old
            && let Err(e) = self.control.delete(k)
        {
            fail(report, format!("replacing {k}: {e}"));
        }
        match self
            .control
            .add(text, PolicyOrigin::File(path.to_path_buf()))
        {
            Ok(info) => {
                let key = PolicyKey::new(info.name, info.namespace);
                report.added.push(key.to_string());
                self.remember(path, h, Some(key));
            }
            Err(e) => {
                fail(report, e.to_string());
                self.remember(path, h, None);
            }
        }
    }

    fn remember(&mut self, path: &Path, hash: u64, key: Option<PolicyKey>) {
        self.known.insert(path.to_path_buf(), Known { hash, key });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SensorError;
    use crate::policy_control::{PolicyInfo, PolicyMode, PolicyState, PolicyStats};
    use std::sync::Mutex;

    /// Records calls; policies are known by name only.
    #[derive(Default)]
    struct Fake {
        loaded: Mutex<Vec<(String, String)>>,
    }

    impl PolicyControl for Fake {
        fn add(&self, yaml: &str, _: PolicyOrigin) -> Result<PolicyInfo, SensorError> {
            let ir = compile_yaml(yaml)
                .map_err(|e| SensorError::PolicyInvalid(e.to_string()))?
                .remove(0);
            let name = ir.identity.unwrap_or_default().name;
            let mut l = self.loaded.lock().unwrap();
            if l.iter().any(|(n, _)| *n == name) {
                return Err(SensorError::PolicyExists(name));
            }
            l.push((name.clone(), yaml.to_string()));
            Ok(PolicyInfo {
                id: 1,
                name,
                namespace: String::new(),
                origin: PolicyOrigin::Api,
                state: PolicyState::Enabled,
                mode: PolicyMode::Enforce,
                error: String::new(),
                hooks: vec![],
                stats: PolicyStats::default(),
                kernel_memory_bytes: 0,
            })
        }
        fn delete(&self, key: &PolicyKey) -> Result<(), SensorError> {
            let mut l = self.loaded.lock().unwrap();
            let before = l.len();
            l.retain(|(n, _)| *n != key.name);
            if l.len() == before {
                return Err(SensorError::PolicyNotFound(key.to_string()));
            }
            Ok(())
        }
        fn list(&self) -> Vec<PolicyInfo> {
            vec![]
        }
        fn set_enabled(&self, k: &PolicyKey, _: bool) -> Result<PolicyInfo, SensorError> {
            Err(SensorError::PolicyNotFound(k.to_string()))
        }
        fn set_mode(&self, k: &PolicyKey, _: PolicyMode) -> Result<PolicyInfo, SensorError> {
            Err(SensorError::PolicyNotFound(k.to_string()))
        }
    }

    fn policy(name: &str, call: &str) -> String {
        format!(
            "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {{name: {name}}}\nspec:\n  kprobes: [{{call: {call}, syscall: true}}]\n"
        )
    }

    #[test]
    fn follows_adds_edits_and_removals() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let mut pd = PolicyDir::new(dir.path().to_path_buf(), fake.clone());
        std::fs::write(dir.path().join("a.yaml"), policy("a", "sys_close")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a policy").unwrap();
        let r = pd.sync();
        assert_eq!(r.added, vec!["a"]);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(
            pd.sync(),
            SyncReport::default(),
            "unchanged files are not reloaded"
        );

        std::fs::write(dir.path().join("a.yaml"), policy("a", "sys_openat")).unwrap();
        let r = pd.sync();
        assert_eq!(r.added, vec!["a"]);
        assert!(fake.loaded.lock().unwrap()[0].1.contains("sys_openat"));

        std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
        let r = pd.sync();
        assert_eq!(r.removed, vec!["a"]);
        assert!(fake.loaded.lock().unwrap().is_empty());
    }

    #[test]
    fn a_bad_edit_keeps_the_running_version() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let mut pd = PolicyDir::new(dir.path().to_path_buf(), fake.clone());
        let f = dir.path().join("a.yml");
        std::fs::write(&f, policy("a", "sys_close")).unwrap();
        pd.sync();
        std::fs::write(&f, "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {name: a}\nspec: {kprobes: [{call: sys_close, bogus: 1}]}\n").unwrap();
        let r = pd.sync();
        assert_eq!(r.errors.len(), 1);
        assert!(r.errors[0].contains("bogus"), "{:?}", r.errors);
        assert!(r.errors[0].contains("a.yml"), "{:?}", r.errors);
        assert_eq!(
            fake.loaded.lock().unwrap().len(),
            1,
            "old version still loaded"
        );
        assert!(
            pd.sync().errors.is_empty(),
            "the same bad content is reported once"
        );
        // Removing the bad file removes the policy it had loaded.
        std::fs::remove_file(&f).unwrap();
        assert_eq!(pd.sync().removed, vec!["a"]);
    }

    #[test]
    fn a_name_clash_is_an_error_for_the_second_file() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let mut pd = PolicyDir::new(dir.path().to_path_buf(), fake.clone());
        std::fs::write(dir.path().join("1.yaml"), policy("same", "sys_close")).unwrap();
        std::fs::write(dir.path().join("2.yaml"), policy("same", "sys_openat")).unwrap();
        let r = pd.sync();
        assert_eq!(r.added, vec!["same"]);
        assert!(r.errors[0].contains("2.yaml") && r.errors[0].contains("already exists"));
    }

    #[test]
    fn a_missing_directory_is_reported() {
        let mut pd = PolicyDir::new("/nonexistent/vigil".into(), Arc::new(Fake::default()));
        assert!(pd.sync().errors[0].contains("cannot list"));
    }
}
