//! TracingPolicy handling: types, strict parser, validator and compiler to the policy IR.
//!
//! Pure code: callers read files and pass strings in.
//!
//! ```text
//! YAML ──parse_documents──► TracingPolicyDoc ──compile──► ir::PolicyIr
//!                                        └──validate (= compile, result dropped)
//! ```
//!
//! Every function reports *all* errors it finds, each with the field path, the offending
//! value and what is accepted (see [`PolicyError`]).

pub mod budget;
mod compile;
pub mod eval;
pub mod ir;
pub mod limits;
mod parse;
pub mod rollout;
mod schema;
mod types;
pub(crate) mod values;

use std::fmt;

pub use budget::{CPU_BUDGET_ANNOTATION, budget_percent, cpu_budget};
pub use ir::{IR_VERSION, PolicyIr, ir_to_json};
pub use parse::{
    PolicyKind, PolicyMetadata, TracingPolicyDoc, parse_documents, parse_each, parse_value,
};
pub use rollout::{ROLLOUT_ANNOTATION, RolloutPlan, rollout_plan};
pub use types::*;

/// Group and version of Vigil's own CRDs.
pub const GROUP: &str = "vigil.dev";
pub const VERSION: &str = "v1alpha1";
/// Tetragon's API group; Vigil can serve its policy kinds there too (see [`cilium_crds`]).
pub const CILIUM_GROUP: &str = "cilium.io";
/// apiVersions accepted in manifests (Tetragon's first).
pub const ACCEPTED_API_VERSIONS: [&str; 2] = ["cilium.io/v1alpha1", "vigil.dev/v1alpha1"];
/// Kinds accepted in manifests.
pub const ACCEPTED_KINDS: [&str; 2] = ["TracingPolicy", "TracingPolicyNamespaced"];

/// One problem in a policy. Every variant names the field path; the display is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is not valid YAML (or not a mapping where one is required).
    #[error("{path}: invalid YAML: {message}; accepted: YAML documents separated by `---`")]
    Yaml { path: String, message: String },
    /// A field that does not exist at this place.
    #[error("{path}: unknown field `{field}`{hint}; accepted: {accepted}")]
    UnknownField {
        path: String,
        field: String,
        hint: String,
        accepted: String,
    },
    /// A required field is absent.
    #[error("{path}: required field is missing; accepted: {accepted}")]
    MissingField { path: String, accepted: String },
    /// A value of the wrong type, syntax or meaning.
    #[error("{path}: invalid value {value}: {reason}; accepted: {accepted}")]
    InvalidValue {
        path: String,
        value: String,
        reason: String,
        accepted: String,
    },
    /// A value beyond one of Vigil's limits.
    #[error("{path}: {value} is over the limit; accepted: {limit}")]
    OverLimit {
        path: String,
        value: String,
        limit: String,
    },
    /// A Tetragon feature Vigil does not implement yet.
    #[error("{path}: not supported yet: {feature}; accepted: {accepted}")]
    NotSupported {
        path: String,
        feature: String,
        accepted: String,
    },
    /// More errors were found than are reported.
    #[error("{path}: {count} more errors not shown; accepted: fix the errors above first")]
    TooMany { path: String, count: usize },
}

impl PolicyError {
    /// The field path the error is about.
    pub fn path(&self) -> &str {
        match self {
            PolicyError::Yaml { path, .. }
            | PolicyError::UnknownField { path, .. }
            | PolicyError::MissingField { path, .. }
            | PolicyError::InvalidValue { path, .. }
            | PolicyError::OverLimit { path, .. }
            | PolicyError::NotSupported { path, .. }
            | PolicyError::TooMany { path, .. } => path,
        }
    }

    fn path_mut(&mut self) -> &mut String {
        match self {
            PolicyError::Yaml { path, .. }
            | PolicyError::UnknownField { path, .. }
            | PolicyError::MissingField { path, .. }
            | PolicyError::InvalidValue { path, .. }
            | PolicyError::OverLimit { path, .. }
            | PolicyError::NotSupported { path, .. }
            | PolicyError::TooMany { path, .. } => path,
        }
    }

    /// True for `not supported yet` errors.
    pub fn is_not_supported(&self) -> bool {
        matches!(self, PolicyError::NotSupported { .. })
    }

    pub(crate) fn invalid(
        path: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
        accepted: impl Into<String>,
    ) -> Self {
        PolicyError::InvalidValue {
            path: path.into(),
            value: value.into(),
            reason: reason.into(),
            accepted: accepted.into(),
        }
    }

    pub(crate) fn over_limit(
        path: impl Into<String>,
        value: impl Into<String>,
        limit: impl Into<String>,
    ) -> Self {
        PolicyError::OverLimit {
            path: path.into(),
            value: value.into(),
            limit: limit.into(),
        }
    }

    pub(crate) fn not_supported(
        path: impl Into<String>,
        feature: impl Into<String>,
        accepted: impl Into<String>,
    ) -> Self {
        PolicyError::NotSupported {
            path: path.into(),
            feature: feature.into(),
            accepted: accepted.into(),
        }
    }
}

/// All errors found in an input, in document and field order. Displays one error per line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyErrors {
    pub errors: Vec<PolicyError>,
}

impl PolicyErrors {
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, PolicyError> {
        self.errors.iter()
    }

    /// True when every error is a `not supported yet` error.
    pub fn only_not_supported(&self) -> bool {
        !self.errors.is_empty() && self.errors.iter().all(PolicyError::is_not_supported)
    }

    pub(crate) fn push(&mut self, e: PolicyError) {
        if self.errors.len() < limits::MAX_ERRORS {
            self.errors.push(e);
            return;
        }
        // Over the cap: count instead of keeping (a summary from a nested list adds its count).
        let add = match &e {
            PolicyError::TooMany { count, .. } => *count,
            _ => 1,
        };
        if let Some(PolicyError::TooMany { count, .. }) = self.errors.last_mut() {
            *count += add;
        } else {
            self.errors.push(PolicyError::TooMany {
                path: e.path().to_string(),
                count: add,
            });
        }
    }

    pub(crate) fn extend(&mut self, other: PolicyErrors) {
        for e in other.errors {
            self.push(e);
        }
    }

    /// Name errors about the document root (empty path) `name`.
    pub(crate) fn name_root(mut self, name: &str) -> Self {
        for e in &mut self.errors {
            let p = e.path_mut();
            if p.is_empty() {
                *p = name.to_string();
            }
        }
        self
    }

    /// Prefix every path (used to name the document in multi-document input).
    pub(crate) fn prefixed(mut self, prefix: &str) -> Self {
        for e in &mut self.errors {
            let p = e.path_mut();
            *p = if p.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{p}")
            };
        }
        self
    }

    pub(crate) fn into_result<T>(self, ok: T) -> Result<T, PolicyErrors> {
        if self.errors.is_empty() {
            Ok(ok)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

impl From<PolicyError> for PolicyErrors {
    fn from(e: PolicyError) -> Self {
        PolicyErrors { errors: vec![e] }
    }
}

impl IntoIterator for PolicyErrors {
    type Item = PolicyError;
    type IntoIter = std::vec::IntoIter<PolicyError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

/// Check a parsed policy completely (everything `compile` checks) without keeping the IR.
pub fn validate(doc: &TracingPolicyDoc) -> Result<(), PolicyErrors> {
    compile(doc).map(|_| ())
}

/// Compile a parsed policy to the IR.
pub fn compile(doc: &TracingPolicyDoc) -> Result<PolicyIr, PolicyErrors> {
    compile::compile(doc)
}

/// Parse, validate and compile every document of `yaml`. Errors of all documents are
/// returned together; with several documents, paths start with `document[N]`.
pub fn compile_yaml(yaml: &str) -> Result<Vec<PolicyIr>, PolicyErrors> {
    let mut errors = PolicyErrors::default();
    let mut out = Vec::new();
    for r in compile_each(yaml)? {
        match r {
            Ok((_, ir)) => out.push(ir),
            Err(e) => errors.extend(e),
        }
    }
    errors.into_result(out)
}

/// Like [`compile_yaml`], but one result per document, so that a caller can report valid
/// documents next to invalid ones. The outer error concerns the input as a whole.
#[allow(clippy::type_complexity)]
pub fn compile_each(
    yaml: &str,
) -> Result<Vec<Result<(TracingPolicyDoc, PolicyIr), PolicyErrors>>, PolicyErrors> {
    let docs = parse_each(yaml)?;
    let multi = docs.len() > 1;
    Ok(docs
        .into_iter()
        .map(|d| {
            let doc = d?;
            match compile(&doc) {
                Ok(ir) => Ok((doc, ir)),
                Err(e) if multi => Err(e.prefixed(&format!("document[{}]", doc.document_index))),
                Err(e) => Err(e),
            }
        })
        .collect())
}

type Crd =
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// The two CustomResourceDefinitions (TracingPolicy, TracingPolicyNamespaced).
pub fn crds() -> Vec<Crd> {
    use kube::CustomResourceExt;
    vec![
        for_api_servers(TracingPolicy::crd()),
        for_api_servers(TracingPolicyNamespaced::crd()),
    ]
}

/// The same two kinds in Tetragon's group `cilium.io`, with Vigil's schema: installed where a
/// cluster should take Tetragon's manifests unchanged (and has no Tetragon CRDs of its own).
pub fn cilium_crds() -> Vec<Crd> {
    use kube::CustomResourceExt;
    vec![
        for_api_servers(CiliumTracingPolicy::crd()),
        for_api_servers(CiliumTracingPolicyNamespaced::crd()),
    ]
}

/// The generated schema, made acceptable to every API server and client the chart supports
/// (down to Kubernetes 1.20, where the cluster suites check it):
/// - an optional enum is generated as `enum: [a, b, null]` plus `nullable: true`; `null` as an
///   enum value is refused by the OpenAPI validation of 1.20-era clients (helm, kubectl:
///   `unknown object type "nil"`), and `nullable` alone already admits it;
/// - `default: ""` (a string field that may be left out) reaches a 1.20 API server as `null`
///   through server-side apply (what Helm 4 uses), which refuses the CRD (`default: Invalid
///   value: "null"`); left out, the field reads as the empty string all the same.
fn for_api_servers(crd: Crd) -> Crd {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                if m.get("nullable") == Some(&serde_json::Value::Bool(true))
                    && let Some(serde_json::Value::Array(values)) = m.get_mut("enum")
                {
                    values.retain(|x| !x.is_null());
                }
                if m.get("default") == Some(&serde_json::Value::String(String::new())) {
                    m.remove("default");
                }
                m.values_mut().for_each(walk);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(&crd).expect("a CRD serializes");
    walk(&mut v);
    serde_json::from_value(v).expect("the rewritten CRD deserializes")
}
