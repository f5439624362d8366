//! Workload scope: the processes a policy applies to at all (TracingPolicyNamespaced, podSelector,
//! containerSelector, hostSelector, nodeSelector), checked before any selector, as the kernel
//! checks the task's cgroup against the policy's scope set first.
//!
//! The kernel knows a container's pod from the sensor's pod inventory; an event knows it from
//! its `process.pod`. A scoped policy applies to the containers of known pods only, so an event
//! without a pod is out of a pod scope (as the sensor would have had no pod for it either).

use std::collections::BTreeMap;

use super::verdict::Decision;
use super::view::{EventView, PodView};
use crate::policy::ir::{LabelOperator, LabelSelector, PolicyIr, PolicyKind};

/// The pseudo-label through which a podSelector sees the pod's namespace.
const POD_NAMESPACE_LABEL: &str = "k8s:io.kubernetes.pod.namespace";

/// Kubernetes label-selector semantics (as the sensor's `pods::selector_matches`).
fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    sel.requirements.iter().all(|r| {
        let v = labels.get(&r.key);
        match r.operator() {
            LabelOperator::In => v.is_some_and(|v| r.values.contains(v)),
            LabelOperator::NotIn => !v.is_some_and(|v| r.values.contains(v)),
            LabelOperator::Exists => v.is_some(),
            LabelOperator::DoesNotExist => v.is_none(),
            LabelOperator::Unspecified => false,
        }
    })
}

/// A selector against labels that may be unknown: with no labels known, only a selector
/// without requirements is decided.
fn labels_decide(
    sel: &LabelSelector,
    labels: Option<&BTreeMap<String, String>>,
    what: &str,
) -> Decision {
    match labels {
        Some(l) => Decision::from_bool(selector_matches(sel, l), || {
            format!("{what} does not select this node's labels")
        }),
        None if sel.requirements.is_empty() => Decision::Yes,
        None => Decision::Unknown(format!("event has no node_labels ({what})")),
    }
}

struct Workload<'a> {
    namespace: Option<&'a str>,
    pod_selector: Option<&'a LabelSelector>,
    container_selector: Option<&'a LabelSelector>,
}

impl Workload<'_> {
    fn is_set(&self) -> bool {
        self.namespace.is_some() || self.pod_selector.is_some() || self.container_selector.is_some()
    }

    fn matches(&self, pod: &PodView) -> Decision {
        if let Some(ns) = self.namespace
            && ns != pod.namespace
        {
            return Decision::No(format!(
                "pod {}/{} is not in namespace {ns}",
                pod.namespace, pod.name
            ));
        }
        if let Some(sel) = self.pod_selector {
            let mut labels = pod.labels.clone();
            if sel
                .requirements
                .iter()
                .any(|r| r.key == POD_NAMESPACE_LABEL)
            {
                labels.insert(POD_NAMESPACE_LABEL.to_string(), pod.namespace.clone());
            }
            if !selector_matches(sel, &labels) {
                return Decision::No(format!(
                    "podSelector does not select pod {}/{}",
                    pod.namespace, pod.name
                ));
            }
        }
        if let Some(sel) = self.container_selector {
            let labels = BTreeMap::from([("name".to_string(), pod.container_name.clone())]);
            if !selector_matches(sel, &labels) {
                return Decision::No(format!(
                    "containerSelector does not select container {:?}",
                    pod.container_name
                ));
            }
        }
        Decision::Yes
    }
}

/// Whether the policy applies to the process of `ev` at all.
pub(crate) fn check(ir: &PolicyIr, ev: &EventView) -> Decision {
    let Some(scope) = &ir.scope else {
        return Decision::Yes;
    };
    if let Some(sel) = &scope.node_selector {
        let d = labels_decide(sel, ev.node_labels.as_ref(), "nodeSelector");
        if !d.is_yes() {
            return d;
        }
    }
    let identity = ir.identity.clone().unwrap_or_default();
    let namespace = if identity.kind() == PolicyKind::Namespaced {
        Some(if scope.namespace.is_empty() {
            identity.namespace.clone()
        } else {
            scope.namespace.clone()
        })
    } else {
        (!scope.namespace.is_empty()).then(|| scope.namespace.clone())
    };
    let workload = Workload {
        namespace: namespace.as_deref(),
        pod_selector: scope.pod_selector.as_ref(),
        container_selector: scope.container_selector.as_ref(),
    };
    let host = scope.host_selector.as_ref();
    if !workload.is_set() && host.is_none() {
        return Decision::Yes;
    }
    let Some(p) = &ev.process else {
        return Decision::Unknown("event has no process (workload scope)".into());
    };
    let in_workload = || match &p.pod {
        Some(pod) => workload.matches(pod),
        None => Decision::No("the process is in no known pod".into()),
    };
    let on_host = |sel: &LabelSelector| {
        let host = match p.in_container {
            Some(false) => Decision::Yes,
            Some(true) => Decision::No("hostSelector: the process runs in a container".into()),
            None => Decision::Unknown("event does not say whether it ran in a container".into()),
        };
        host.and(|| labels_decide(sel, ev.node_labels.as_ref(), "hostSelector"))
    };
    match host {
        None => in_workload(),
        Some(sel) if !workload.is_set() => on_host(sel),
        // Both: the selected containers and this node's host processes.
        Some(sel) => match (in_workload(), on_host(sel)) {
            (Decision::No(a), Decision::No(b)) => Decision::No(format!("{a}; {b}")),
            (a, b) => a.or(|| b),
        },
    }
}
