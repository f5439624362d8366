//! Workload scope: namespace and the pod/container/host/node label selectors.

use std::collections::BTreeSet;

use crate::policy::PolicyError;
use crate::policy::ir;
use crate::policy::schema::{child, quote};
use crate::policy::types::*;

use super::Cx;
use crate::policy::parse::TracingPolicyDoc;

impl Cx<'_> {
    fn label_selector(
        &mut self,
        path: &str,
        s: Option<&LabelSelector>,
    ) -> Option<ir::LabelSelector> {
        let s = s?;
        let mut reqs: Vec<ir::LabelRequirement> = Vec::new();
        for (k, v) in &s.match_labels {
            self.label_key(&format!("{path}.matchLabels"), k);
            if v.len() > 63 {
                self.err(PolicyError::over_limit(
                    child(&format!("{path}.matchLabels"), k),
                    quote(v),
                    "a label value has at most 63 characters",
                ));
            }
            reqs.push(ir::LabelRequirement {
                key: k.clone(),
                operator: ir::LabelOperator::In as i32,
                values: vec![v.clone()],
            });
        }
        for (i, e) in s.match_expressions.iter().enumerate() {
            let p = format!("{path}.matchExpressions[{i}]");
            self.label_key(&p, &e.key);
            let (op, needs_values) = match e.operator {
                LabelSelectorOperator::In => (ir::LabelOperator::In, true),
                LabelSelectorOperator::NotIn => (ir::LabelOperator::NotIn, true),
                LabelSelectorOperator::Exists => (ir::LabelOperator::Exists, false),
                LabelSelectorOperator::DoesNotExist => (ir::LabelOperator::DoesNotExist, false),
            };
            if needs_values && e.values.is_empty() {
                self.err(PolicyError::MissingField {
                    path: format!("{p}.values"),
                    accepted: "a non-empty list of label values for In/NotIn".into(),
                });
            }
            if !needs_values && !e.values.is_empty() {
                self.err(PolicyError::invalid(
                    format!("{p}.values"),
                    format!("{:?}", e.values),
                    "Exists/DoesNotExist take no values",
                    "no values",
                ));
            }
            let vals: BTreeSet<String> = e.values.iter().cloned().collect();
            reqs.push(ir::LabelRequirement {
                key: e.key.clone(),
                operator: op as i32,
                values: vals.into_iter().collect(),
            });
        }
        reqs.sort_by(|a, b| (&a.key, a.operator, &a.values).cmp(&(&b.key, b.operator, &b.values)));
        reqs.dedup();
        Some(ir::LabelSelector { requirements: reqs })
    }

    fn label_key(&mut self, path: &str, k: &str) {
        // Tetragon's pseudo-label for the pod's namespace: a podSelector may name it (the
        // sensor matches it against the pod's namespace); it is no valid label key elsewhere.
        if k == "k8s:io.kubernetes.pod.namespace" && path.starts_with("spec.podSelector.") {
            return;
        }
        let (prefix, name) = k.rsplit_once('/').unwrap_or(("", k));
        let name_ok = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && name
                .bytes()
                .last()
                .is_some_and(|b| b.is_ascii_alphanumeric());
        let prefix_ok = prefix.len() <= 253
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b));
        if !(name_ok && prefix_ok) {
            self.err(PolicyError::invalid(
                path,
                quote(k),
                "not a valid label key",
                "[prefix/]name: name of at most 63 alphanumerics, '-', '_', '.', starting and ending alphanumeric",
            ));
        }
    }

    pub(super) fn scope(&mut self, doc: &TracingPolicyDoc) -> ir::WorkloadScope {
        let s = &doc.spec;
        ir::WorkloadScope {
            namespace: doc.metadata.namespace.clone().unwrap_or_default(),
            pod_selector: self.label_selector("spec.podSelector", s.pod_selector.as_ref()),
            container_selector: self
                .label_selector("spec.containerSelector", s.container_selector.as_ref()),
            host_selector: self.label_selector("spec.hostSelector", s.host_selector.as_ref()),
            node_selector: self.label_selector("spec.nodeSelector", s.node_selector.as_ref()),
        }
    }
}
