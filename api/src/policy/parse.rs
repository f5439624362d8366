//! YAML text → [`TracingPolicyDoc`]s, strictly: every structural error of every document is
//! reported, with its path.

use std::collections::BTreeMap;

use serde_json::Value;

use super::limits::{MAX_DOCUMENTS, MAX_YAML_BYTES};
use super::schema::{SchemaChecker, child, escape, show, strip_nulls, suggest};
use super::{
    ACCEPTED_API_VERSIONS, ACCEPTED_KINDS, PolicyError, PolicyErrors, TracingPolicy,
    TracingPolicyNamespaced, TracingPolicySpec,
};

/// Cluster-scoped or namespaced policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// `kind: TracingPolicy`.
    Cluster,
    /// `kind: TracingPolicyNamespaced`.
    Namespaced,
}

impl PolicyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Cluster => "TracingPolicy",
            PolicyKind::Namespaced => "TracingPolicyNamespaced",
        }
    }
}

/// The metadata Vigil uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyMetadata {
    pub name: String,
    /// Namespaced policies: the namespace (`default` when the manifest has none).
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// One parsed, structurally valid policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingPolicyDoc {
    /// The apiVersion as written (`cilium.io/v1alpha1` or `vigil.dev/v1alpha1`).
    pub api_version: String,
    pub kind: PolicyKind,
    pub metadata: PolicyMetadata,
    pub spec: TracingPolicySpec,
    /// Position of the document in its input (0-based, counting non-empty documents).
    pub document_index: usize,
}

impl TracingPolicyDoc {
    /// From a cluster object (operator side).
    pub fn from_cluster(tp: &TracingPolicy) -> Self {
        TracingPolicyDoc {
            api_version: format!("{}/{}", super::GROUP, super::VERSION),
            kind: PolicyKind::Cluster,
            metadata: meta_from_object(&tp.metadata, false),
            spec: tp.spec.clone(),
            document_index: 0,
        }
    }

    /// From a namespaced object (operator side).
    pub fn from_namespaced(tp: &TracingPolicyNamespaced) -> Self {
        TracingPolicyDoc {
            api_version: format!("{}/{}", super::GROUP, super::VERSION),
            kind: PolicyKind::Namespaced,
            metadata: meta_from_object(&tp.metadata, true),
            spec: tp.spec.clone().into(),
            document_index: 0,
        }
    }

    /// From a cluster-scoped object of Tetragon's group `cilium.io` (operator side).
    pub fn from_cilium_cluster(tp: &super::CiliumTracingPolicy) -> Self {
        TracingPolicyDoc {
            api_version: format!("{}/{}", super::CILIUM_GROUP, super::VERSION),
            kind: PolicyKind::Cluster,
            metadata: meta_from_object(&tp.metadata, false),
            spec: tp.spec.clone().into(),
            document_index: 0,
        }
    }

    /// From a namespaced object of Tetragon's group `cilium.io` (operator side).
    pub fn from_cilium_namespaced(tp: &super::CiliumTracingPolicyNamespaced) -> Self {
        TracingPolicyDoc {
            api_version: format!("{}/{}", super::CILIUM_GROUP, super::VERSION),
            kind: PolicyKind::Namespaced,
            metadata: meta_from_object(&tp.metadata, true),
            spec: tp.spec.clone().into(),
            document_index: 0,
        }
    }
}

fn meta_from_object(
    m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    namespaced: bool,
) -> PolicyMetadata {
    PolicyMetadata {
        name: m.name.clone().unwrap_or_default(),
        namespace: namespaced.then(|| m.namespace.clone().unwrap_or_else(|| "default".into())),
        labels: m.labels.clone().unwrap_or_default(),
        annotations: m.annotations.clone().unwrap_or_default(),
    }
}

const TOP_LEVEL_FIELDS: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];
/// ObjectMeta fields: the first four are used, the rest accepted (and ignored) so that
/// objects exported from a cluster validate.
const METADATA_FIELDS: [&str; 15] = [
    "name",
    "namespace",
    "labels",
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "managedFields",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];

/// Parse every YAML document of `yaml` (documents separated by `---`; empty ones skipped).
pub fn parse_documents(yaml: &str) -> Result<Vec<TracingPolicyDoc>, PolicyErrors> {
    let mut errors = PolicyErrors::default();
    let mut docs = Vec::new();
    for d in parse_each(yaml)? {
        match d {
            Ok(d) => docs.push(d),
            Err(e) => errors.extend(e),
        }
    }
    errors.into_result(docs)
}

/// Parse every document separately. The outer error is for the input as a whole (size,
/// YAML syntax, no documents); each inner result is one document, its error paths prefixed
/// with `document[N]` when the input has several documents.
pub fn parse_each(yaml: &str) -> Result<Vec<Result<TracingPolicyDoc, PolicyErrors>>, PolicyErrors> {
    if yaml.len() > MAX_YAML_BYTES {
        return Err(PolicyError::over_limit(
            "input",
            format!("{} bytes", yaml.len()),
            format!("at most {MAX_YAML_BYTES} bytes of YAML per input"),
        )
        .into());
    }
    let values: Vec<Value> = match serde_saphyr::from_multiple(yaml) {
        Ok(v) => v,
        Err(e) => {
            let msg: String = e
                .to_string()
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            return Err(PolicyError::Yaml {
                path: "input".into(),
                message: super::schema::shorten(msg.trim()),
            }
            .into());
        }
    };
    if values.is_empty() {
        return Err(PolicyError::MissingField {
            path: "input".into(),
            accepted: "at least one TracingPolicy or TracingPolicyNamespaced document".into(),
        }
        .into());
    }
    if values.len() > MAX_DOCUMENTS {
        return Err(PolicyError::over_limit(
            "input",
            format!("{} documents", values.len()),
            format!("at most {MAX_DOCUMENTS} documents per input"),
        )
        .into());
    }
    let multi = values.len() > 1;
    Ok(values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            parse_one(v, i).map_err(|e| {
                if multi {
                    e.prefixed(&format!("document[{i}]"))
                } else {
                    e.name_root("document")
                }
            })
        })
        .collect())
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && is_dns_subdomain(s) && !s.contains('.')
}

fn string_map(v: Option<&Value>, path: &str, errs: &mut PolicyErrors) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, x) in m {
                match x {
                    Value::String(s) => {
                        out.insert(k.clone(), s.clone());
                    }
                    other => errs.push(PolicyError::invalid(
                        child(path, k),
                        show(other),
                        "expected a string (quote it)",
                        "a string",
                    )),
                }
            }
        }
        Some(other) => errs.push(PolicyError::invalid(
            path,
            show(other),
            "expected a mapping of strings",
            "a mapping of strings to strings",
        )),
    }
    out
}

/// Parse one manifest that is already a JSON value (e.g. an object read from the Kubernetes
/// API as `DynamicObject`/JSON), with the same strict checks as [`parse_documents`].
pub fn parse_value(v: Value) -> Result<TracingPolicyDoc, PolicyErrors> {
    parse_one(v, 0)
}

fn parse_one(v: Value, index: usize) -> Result<TracingPolicyDoc, PolicyErrors> {
    let mut errs = PolicyErrors::default();
    let Value::Object(mut top) = v else {
        return Err(PolicyError::invalid(
            "",
            show(&v),
            "a document must be a mapping",
            "a mapping with fields apiVersion, kind, metadata, spec",
        )
        .into());
    };
    for k in top.keys() {
        if !TOP_LEVEL_FIELDS.contains(&k.as_str()) {
            errs.push(PolicyError::UnknownField {
                path: String::new(),
                field: escape(k),
                hint: suggest(k, TOP_LEVEL_FIELDS),
                accepted: TOP_LEVEL_FIELDS.join(", "),
            });
        }
    }
    let api_version = match top.get("apiVersion") {
        Some(Value::String(s)) if ACCEPTED_API_VERSIONS.contains(&s.as_str()) => s.clone(),
        None | Some(Value::Null) => {
            errs.push(PolicyError::MissingField {
                path: "apiVersion".into(),
                accepted: ACCEPTED_API_VERSIONS.join(", "),
            });
            String::new()
        }
        Some(other) => {
            errs.push(PolicyError::invalid(
                "apiVersion",
                show(other),
                "unknown apiVersion",
                ACCEPTED_API_VERSIONS.join(", "),
            ));
            String::new()
        }
    };
    let kind = match top.get("kind") {
        Some(Value::String(s)) if s == "TracingPolicy" => Some(PolicyKind::Cluster),
        Some(Value::String(s)) if s == "TracingPolicyNamespaced" => Some(PolicyKind::Namespaced),
        None | Some(Value::Null) => {
            errs.push(PolicyError::MissingField {
                path: "kind".into(),
                accepted: ACCEPTED_KINDS.join(", "),
            });
            None
        }
        Some(other) => {
            let hint = other
                .as_str()
                .map(|s| suggest(s, ACCEPTED_KINDS))
                .unwrap_or_default();
            errs.push(PolicyError::invalid(
                "kind",
                show(other),
                format!("unknown kind{hint}"),
                ACCEPTED_KINDS.join(", "),
            ));
            None
        }
    };
    let metadata = parse_metadata(top.get("metadata"), kind, &mut errs);
    let spec = match top.remove("spec") {
        None | Some(Value::Null) => {
            errs.push(PolicyError::MissingField {
                path: "spec".into(),
                accepted:
                    "a mapping with at least one hook (kprobes, tracepoints, uprobes, lsmhooks)"
                        .into(),
            });
            None
        }
        Some(mut spec) => {
            let before = errs.len();
            SchemaChecker::spec().check_root(&spec, "spec", &mut errs);
            if errs.len() == before {
                strip_nulls(&mut spec);
                match serde_json::from_value::<TracingPolicySpec>(spec) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        errs.push(PolicyError::invalid(
                            "spec",
                            "(spec)",
                            e.to_string(),
                            "a TracingPolicy spec",
                        ));
                        None
                    }
                }
            } else {
                None
            }
        }
    };
    match (errs.is_empty(), kind, spec) {
        (true, Some(kind), Some(spec)) => Ok(TracingPolicyDoc {
            api_version,
            kind,
            metadata,
            spec,
            document_index: index,
        }),
        _ => Err(errs),
    }
}

fn parse_metadata(
    v: Option<&Value>,
    kind: Option<PolicyKind>,
    errs: &mut PolicyErrors,
) -> PolicyMetadata {
    let mut meta = PolicyMetadata::default();
    let m = match v {
        Some(Value::Object(m)) => m,
        None | Some(Value::Null) => {
            errs.push(PolicyError::MissingField {
                path: "metadata".into(),
                accepted: "a mapping with at least `name`".into(),
            });
            return meta;
        }
        Some(other) => {
            errs.push(PolicyError::invalid(
                "metadata",
                show(other),
                "expected a mapping",
                "a mapping with fields name, namespace, labels, annotations",
            ));
            return meta;
        }
    };
    for k in m.keys() {
        if !METADATA_FIELDS.contains(&k.as_str()) {
            errs.push(PolicyError::UnknownField {
                path: "metadata".into(),
                field: escape(k),
                hint: suggest(k, METADATA_FIELDS),
                accepted: METADATA_FIELDS.join(", "),
            });
        }
    }
    match m.get("name") {
        Some(Value::String(s)) if is_dns_subdomain(s) => meta.name = s.clone(),
        None | Some(Value::Null) => errs.push(PolicyError::MissingField {
            path: "metadata.name".into(),
            accepted: "a DNS-1123 subdomain name (lowercase letters, digits, '-', '.'; at most 253 characters)".into(),
        }),
        Some(other) => errs.push(PolicyError::invalid(
            "metadata.name",
            show(other),
            "not a valid policy name",
            "a DNS-1123 subdomain name (lowercase letters, digits, '-', '.'; at most 253 characters)",
        )),
    }
    match (m.get("namespace"), kind) {
        (None | Some(Value::Null), Some(PolicyKind::Namespaced)) => {
            meta.namespace = Some("default".into());
        }
        (None | Some(Value::Null), _) => {}
        (Some(Value::String(s)), Some(PolicyKind::Namespaced)) if is_dns_label(s) => {
            meta.namespace = Some(s.clone());
        }
        (Some(other), Some(PolicyKind::Namespaced)) => errs.push(PolicyError::invalid(
            "metadata.namespace",
            show(other),
            "not a valid namespace name",
            "a DNS-1123 label (lowercase letters, digits, '-'; at most 63 characters)",
        )),
        (Some(other), _) => errs.push(PolicyError::invalid(
            "metadata.namespace",
            show(other),
            "a TracingPolicy is cluster-scoped and has no namespace",
            "no namespace (or use kind TracingPolicyNamespaced)",
        )),
    }
    meta.labels = string_map(m.get("labels"), "metadata.labels", errs);
    meta.annotations = string_map(m.get("annotations"), "metadata.annotations", errs);
    meta
}
