//! `--policy-dir`: every `*.yaml` / `*.yml` file of a directory is a policy; the directory is
//! polled so that files added, changed or removed while the sensor runs add, replace or remove
//! their policy.
//!
//! A file that does not validate is reported (log + `vigil_policy_dir_errors_total`) and,
//! when it replaces a file that did, the policy already running from it stays as it was.

use std::sync::Arc;

use vigil_host::policy_files::{Changed, PolicyFiles, PolicyTarget};

use crate::policy::control::{PolicyControl, PolicyKey, PolicyOrigin};

pub use vigil_host::policy_files::{POLL_INTERVAL_MS, SyncReport};

/// The directory and what was loaded from it.
pub type PolicyDir = vigil_host::policy_files::PolicyDir<PolicyKey, Engine>;

/// The policy engine as the directory's target.
pub struct Engine(pub Arc<dyn PolicyControl>);

impl PolicyTarget<PolicyKey> for Engine {
    fn remove(&self, key: &PolicyKey) -> Result<(), String> {
        self.0.delete(key).map_err(|e| e.to_string())
    }

    fn load(
        &self,
        _: &PolicyFiles<PolicyKey>,
        file: &Changed<PolicyKey>,
        report: &mut SyncReport,
    ) -> Option<PolicyKey> {
        let old = file.previous.clone();
        let fail = |report: &mut SyncReport, msg: String| {
            report
                .errors
                .push(format!("{}: {msg}", file.path.display()));
        };
        let text = match &file.text {
            Ok(t) => t,
            Err(why) => {
                fail(report, why.clone());
                return old;
            }
        };
        // Validate before touching what runs: a bad edit leaves the previous version running.
        match crate::policy::compile_yaml(text) {
            Ok(irs) if irs.len() == 1 => {}
            Ok(irs) => {
                fail(
                    report,
                    format!("expected one TracingPolicy document, found {}", irs.len()),
                );
                return old;
            }
            Err(e) => {
                fail(report, e.to_string());
                return old;
            }
        }
        if let Some(k) = &old
            && let Err(e) = self.0.delete(k)
        {
            fail(report, format!("replacing {k}: {e}"));
        }
        match self
            .0
            .add(text, PolicyOrigin::File(file.path.to_path_buf()))
        {
            Ok(info) => {
                let key = PolicyKey::new(info.name, info.namespace);
                report.loaded.push(key.to_string());
                Some(key)
            }
            Err(e) => {
                fail(report, e.to_string());
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SensorError;
    use crate::policy::control::{PolicyInfo, PolicyMode, PolicyState, PolicyStats};
    use std::sync::Mutex;

    /// Records calls; policies are known by name only.
    #[derive(Default)]
    struct Fake {
        loaded: Mutex<Vec<(String, String)>>,
    }

    impl PolicyControl for Fake {
        fn add(&self, yaml: &str, _: PolicyOrigin) -> Result<PolicyInfo, SensorError> {
            let ir = crate::policy::compile_yaml(yaml)
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
                demotion: None,
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
        let mut pd = PolicyDir::new(dir.path().to_path_buf(), Engine(fake.clone()));
        std::fs::write(dir.path().join("a.yaml"), policy("a", "sys_close")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a policy").unwrap();
        let r = pd.sync();
        assert_eq!(r.loaded, vec!["a"]);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(
            pd.sync(),
            SyncReport::default(),
            "unchanged files are not reloaded"
        );

        std::fs::write(dir.path().join("a.yaml"), policy("a", "sys_openat")).unwrap();
        let r = pd.sync();
        assert_eq!(r.loaded, vec!["a"]);
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
        let mut pd = PolicyDir::new(dir.path().to_path_buf(), Engine(fake.clone()));
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
    fn a_file_too_large_to_be_a_policy_is_refused_once_without_being_read() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let mut pd = PolicyDir::new(dir.path().to_path_buf(), Engine(fake.clone()));
        let f = dir.path().join("a.yaml");
        std::fs::write(&f, policy("a", "sys_close")).unwrap();
        pd.sync();
        // Sparse: 100 MB that take no disk, and would take 100 MB of memory if read.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&f)
            .unwrap()
            .set_len(100 << 20)
            .unwrap();
        let r = pd.sync();
        assert_eq!(r.errors.len(), 1, "{r:?}");
        assert!(r.errors[0].contains("104857600 bytes"), "{:?}", r.errors);
        assert_eq!(
            fake.loaded.lock().unwrap().len(),
            1,
            "the running version stays"
        );
        assert_eq!(pd.sync(), SyncReport::default(), "reported once");
        std::fs::write(&f, policy("a", "sys_openat")).unwrap();
        assert_eq!(pd.sync().loaded, vec!["a"]);
    }

    #[test]
    fn a_name_clash_is_an_error_for_the_second_file() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let mut pd = PolicyDir::new(dir.path().to_path_buf(), Engine(fake.clone()));
        std::fs::write(dir.path().join("1.yaml"), policy("same", "sys_close")).unwrap();
        std::fs::write(dir.path().join("2.yaml"), policy("same", "sys_openat")).unwrap();
        let r = pd.sync();
        assert_eq!(r.loaded, vec!["same"]);
        assert!(r.errors[0].contains("2.yaml") && r.errors[0].contains("already exists"));
    }

    #[test]
    fn a_missing_directory_is_reported() {
        let mut pd = PolicyDir::new(
            "/nonexistent/vigil".into(),
            Engine(Arc::new(Fake::default())),
        );
        assert!(pd.sync().errors[0].contains("cannot list"));
    }
}
