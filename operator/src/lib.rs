//! Vigil operator library: CRD generation (`vigil-operator crdgen`), the contract between
//! policy sources and policy distribution ([`fleet`]), policy distribution to the sensors
//! ([`distribution`], served by [`grpc`]), GitOps mode ([`gitops`]), the Kubernetes side
//! ([`run_kube`]: leader election, the TracingPolicy controllers, status roll-up), the pod
//! watcher that feeds distribution the cluster's pods ([`pod_watch`]) and `run` ([`run`]).
#![forbid(unsafe_code)]

pub mod controller;
pub mod distribution;
pub mod error;
pub mod fleet;
pub mod gitops;
pub mod grpc;
pub mod kube_metrics;
pub mod kubernetes;
pub mod leader;
pub mod metrics;
pub mod node_watch;
pub mod pod_watch;
pub mod run;
pub mod selector;
pub mod status;
#[cfg(test)]
mod testing;
pub mod watch;

pub use error::OperatorError;
pub use kube_metrics::KubeMetrics;
pub use kubernetes::{KubeConfig, run_kube, run_kube_with};

/// File names under `config/crd/`, in the order `crd_documents` returns them.
pub const CRD_FILES: [&str; 2] = [
    "vigil.dev_tracingpolicies.yaml",
    "vigil.dev_tracingpoliciesnamespaced.yaml",
];

/// The command that regenerates `config/crd/`.
pub const REGENERATE: &str = "cargo run -p vigil-operator -- crdgen --out-dir config/crd";

/// Each CRD as its own YAML document (TracingPolicy, then TracingPolicyNamespaced).
pub fn crd_documents() -> Result<Vec<String>, OperatorError> {
    vigil_api::policy::crds()
        .iter()
        .map(|crd| serde_saphyr::to_string(crd).map_err(|e| OperatorError::Yaml(e.to_string())))
        .collect()
}

/// Both CRDs as one multi-document YAML stream.
pub fn crd_yaml() -> Result<String, OperatorError> {
    let docs = crd_documents()?;
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(&d);
        if !d.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_crd_is_up_to_date() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/crd");
        let docs = crd_documents().expect("CRDs serialize");
        assert_eq!(docs.len(), CRD_FILES.len());
        for (name, want) in CRD_FILES.iter().zip(docs) {
            let path = dir.join(name);
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                have == want,
                "{} is missing or stale: the CRD types changed. Regenerate with `{REGENERATE}` and commit the result.",
                path.display()
            );
        }
    }

    #[test]
    fn crd_stream_has_both_kinds() {
        let yaml = crd_yaml().unwrap();
        assert_eq!(
            yaml.matches("\n---\n").count() + usize::from(yaml.starts_with("---\n")),
            2
        );
        assert!(yaml.contains("name: tracingpolicies.vigil.dev"));
        assert!(yaml.contains("name: tracingpoliciesnamespaced.vigil.dev"));
        assert!(yaml.contains("scope: Namespaced"));
        assert!(yaml.contains("scope: Cluster"));
    }
}
