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
pub mod forbidden;
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

/// Subdirectory of `config/crd/` with the `cilium.io` CRDs (Tetragon's group, Vigil's schema):
/// apart, so that `kubectl apply -f config/crd/` does not install them by accident.
pub const CILIUM_CRD_DIR: &str = "cilium.io";

/// File names under `config/crd/cilium.io/`, in the order `cilium_crd_documents` returns them.
pub const CILIUM_CRD_FILES: [&str; 2] = [
    "cilium.io_tracingpolicies.yaml",
    "cilium.io_tracingpoliciesnamespaced.yaml",
];

/// The command that regenerates `config/crd/`.
pub const REGENERATE: &str = "cargo run -p vigil-operator -- crdgen --out-dir config/crd";

fn to_yaml(
    crds: Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>,
) -> Result<Vec<String>, OperatorError> {
    crds.iter()
        .map(|crd| serde_saphyr::to_string(crd).map_err(|e| OperatorError::Yaml(e.to_string())))
        .collect()
}

/// Each CRD as its own YAML document (TracingPolicy, then TracingPolicyNamespaced).
pub fn crd_documents() -> Result<Vec<String>, OperatorError> {
    to_yaml(vigil_api::policy::crds())
}

/// The `cilium.io` CRDs, each as its own YAML document (TracingPolicy, then
/// TracingPolicyNamespaced).
pub fn cilium_crd_documents() -> Result<Vec<String>, OperatorError> {
    to_yaml(vigil_api::policy::cilium_crds())
}

/// Both CRDs as one multi-document YAML stream.
pub fn crd_yaml() -> Result<String, OperatorError> {
    stream(crd_documents()?)
}

/// Both `cilium.io` CRDs as one multi-document YAML stream.
pub fn cilium_crd_yaml() -> Result<String, OperatorError> {
    stream(cilium_crd_documents()?)
}

fn stream(docs: Vec<String>) -> Result<String, OperatorError> {
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
        let cilium = cilium_crd_documents().expect("cilium.io CRDs serialize");
        let cilium_files = CILIUM_CRD_FILES.map(|f| format!("{CILIUM_CRD_DIR}/{f}"));
        for (name, want) in CRD_FILES
            .iter()
            .map(|f| f.to_string())
            .zip(docs)
            .chain(cilium_files.into_iter().zip(cilium))
        {
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

    #[test]
    fn cilium_crds_are_tetragons_names_with_vigils_schema() {
        let yaml = cilium_crd_yaml().unwrap();
        assert!(yaml.contains("name: tracingpolicies.cilium.io"));
        assert!(yaml.contains("name: tracingpoliciesnamespaced.cilium.io"));
        assert!(!yaml.contains("vigil.dev"), "{yaml}");
        // The same schema and columns as Vigil's own group (compared as JSON: YAML folds the
        // longer type names differently).
        let json = |crds| serde_json::to_string(&crds).unwrap();
        assert_eq!(
            json(vigil_api::policy::cilium_crds())
                .replace("cilium.io", "vigil.dev")
                .replace("CiliumTracingPolicy", "TracingPolicy"),
            json(vigil_api::policy::crds())
        );
    }
}
