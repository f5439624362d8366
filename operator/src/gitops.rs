//! GitOps mode: every `*.yaml` / `*.yml` file of a directory is one policy. The directory is
//! polled; a new or changed file upserts its policy into the [`Fleet`], a removed file removes
//! it. A file that does not validate is reported (log and `vigil_operator_policy_dir_errors_total`)
//! and the version it replaced, if any, stays distributed.

use std::sync::Arc;

use vigil_api::policy::{compile_each, rollout_plan};
use vigil_host::policy_files::{Changed, PolicyFiles, PolicyTarget};

use crate::fleet::{DesiredPolicy, Fleet, PolicyKey};

pub use vigil_host::policy_files::{POLL_INTERVAL_MS, SyncReport};

/// The directory and the policies it defined.
pub type PolicyDir = vigil_host::policy_files::PolicyDir<PolicyKey, FleetTarget>;

/// The fleet as the directory's target.
pub struct FleetTarget(pub Arc<dyn Fleet>);

impl PolicyTarget<PolicyKey> for FleetTarget {
    fn remove(&self, key: &PolicyKey) -> Result<(), String> {
        self.0.remove(key);
        Ok(())
    }

    /// Upserts the policy of a new or changed file; returns the policy the file now defines.
    fn load(
        &self,
        files: &PolicyFiles<PolicyKey>,
        file: &Changed<PolicyKey>,
        report: &mut SyncReport,
    ) -> Option<PolicyKey> {
        let path = &file.path;
        let old = file.previous.clone();
        let result = file
            .text
            .clone()
            .and_then(|text| compile_each(&text).map_err(|e| e.to_string()))
            .and_then(|mut docs| {
                if docs.len() != 1 {
                    return Err(format!(
                        "expected exactly one TracingPolicy document, found {}",
                        docs.len()
                    ));
                }
                docs.remove(0).map_err(|e| e.to_string())
            })
            .and_then(|(doc, ir)| {
                rollout_plan(&doc.metadata.annotations)
                    .map(|plan| (ir, plan))
                    .map_err(|e| e.to_string())
            });
        let (ir, rollout) = match result {
            Ok(r) => r,
            Err(msg) => {
                let kept = old
                    .as_ref()
                    .map(|k| format!(" (policy {k} keeps its previous version)"))
                    .unwrap_or_default();
                report
                    .errors
                    .push(format!("{}: {msg}{kept}", path.display()));
                return old;
            }
        };
        let identity = ir.identity.clone().unwrap_or_default();
        let key = PolicyKey::new(&identity.name, &identity.namespace);
        if let Some(other) = files.owner(&key, path) {
            report.errors.push(format!(
                "{}: policy {key} is already defined by {}",
                path.display(),
                other.display()
            ));
            return old;
        }
        if let Some(o) = old.as_ref().filter(|o| **o != key) {
            // The file now defines another policy: the old one goes.
            self.0.remove(o);
            report.removed.push(o.to_string());
        }
        let node_selector = ir.scope.as_ref().and_then(|s| s.node_selector.clone());
        self.0.upsert(DesiredPolicy {
            key: key.clone(),
            // Positive, stable across restarts: a content hash of the file.
            generation: (file.hash >> 1) as i64,
            ir,
            node_selector,
            rollout,
        });
        report.loaded.push(key.to_string());
        Some(key)
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
        let mut pd = PolicyDir::new(dir.path().to_path_buf(), FleetTarget(dist.clone()));
        let key = PolicyKey::new("p", "");
        assert_eq!(pd.sync(), SyncReport::default());

        std::fs::write(dir.path().join("p.yaml"), policy("p", "/a/")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let r = pd.sync();
        assert_eq!(r.loaded, ["p"]);
        let g1 = dist.rollup(&key).unwrap().generation;
        // Nothing changed: nothing happens.
        assert_eq!(pd.sync(), SyncReport::default());

        std::fs::write(dir.path().join("p.yaml"), policy("p", "/b/")).unwrap();
        assert_eq!(pd.sync().loaded, ["p"]);
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

    #[test]
    fn the_rollout_annotation_reaches_the_fleet_and_a_bad_one_keeps_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let dist = Arc::new(Distribution::new(Arc::new(OperatorMetrics::default())));
        let mut pd = PolicyDir::new(dir.path().to_path_buf(), FleetTarget(dist.clone()));
        let key = PolicyKey::new("p", "");
        let annotated = |prefix: &str, plan: &str| {
            policy("p", prefix).replace(
                "  name: p\n",
                &format!("  name: p\n  annotations:\n    vigil.dev/rollout: \"{plan}\"\n"),
            )
        };
        std::fs::write(
            dir.path().join("p.yaml"),
            annotated("/a/", "canary=10%,pause=1m"),
        )
        .unwrap();
        assert_eq!(pd.sync().loaded, ["p"]);
        let r = dist.rollup(&key).unwrap().rollout.unwrap();
        assert_eq!(r.plan.to_string(), "canary=10%,pause=60s");
        let generation = dist.rollup(&key).unwrap().generation;

        std::fs::write(
            dir.path().join("p.yaml"),
            annotated("/b/", "canary=10%,pause=1w"),
        )
        .unwrap();
        let r = pd.sync();
        let [error] = r.errors.as_slice() else {
            panic!("one error: {r:?}")
        };
        assert!(error.contains("vigil.dev/rollout"), "{error}");
        assert!(error.contains("unknown unit"), "{error}");
        assert!(error.contains("keeps its previous version"), "{error}");
        assert_eq!(dist.rollup(&key).unwrap().generation, generation);
    }

    #[test]
    fn a_file_too_large_to_be_a_policy_is_reported_without_being_read() {
        let dir = tempfile::tempdir().unwrap();
        let dist = Arc::new(Distribution::new(Arc::new(OperatorMetrics::default())));
        let mut pd = PolicyDir::new(dir.path().to_path_buf(), FleetTarget(dist.clone()));
        let f = dir.path().join("p.yaml");
        std::fs::write(&f, policy("p", "/a/")).unwrap();
        assert_eq!(pd.sync().loaded, ["p"]);
        // Sparse: takes no disk (the scan itself is tested in vigil-host).
        let file = std::fs::File::options().write(true).open(&f).unwrap();
        file.set_len(100 << 20).unwrap();
        let r = pd.sync();
        let [error] = r.errors.as_slice() else {
            panic!("one error: {r:?}")
        };
        assert!(error.contains("104857600 bytes"), "{error}");
        assert!(error.contains("keeps its previous version"), "{error}");
        assert!(dist.rollup(&PolicyKey::new("p", "")).is_some());
        assert_eq!(pd.sync(), SyncReport::default(), "reported once");
    }
}
