//! Requests the API server refused with 403 Forbidden: the operator's identity lacks an RBAC
//! permission. Every place that retries a failed API call reports such a refusal the same way —
//! one error line naming the verb, the resource and its API group, and a count in
//! `vigil_operator_api_forbidden_total{verb,resource}` — and keeps retrying, so that granting the
//! permission heals the operator without a restart.

use crate::kube_metrics::{ForbiddenLabel, KubeMetrics};

/// What the API server refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    /// The RBAC verb (`list`, `watch`, `patch`, …); `?` when the message did not say.
    pub verb: String,
    /// The resource, with its subresource (`tracingpolicies/status`); `?` when unknown.
    pub resource: String,
    /// The API group (empty for the core group).
    pub group: String,
    /// The API server's message.
    pub message: String,
}

/// The 403 answer in `err` or one of its sources, if any.
pub fn find(err: &(dyn std::error::Error + 'static)) -> Option<Forbidden> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(kube::Error::Api(status)) = e.downcast_ref::<kube::Error>()
            && status.code == 403
        {
            return Some(parse(&status.message));
        }
        // A watch's error event carries the Status itself.
        if let Some(status) = e.downcast_ref::<kube::core::Status>()
            && status.code == 403
        {
            return Some(parse(&status.message));
        }
        cur = e.source();
    }
    None
}

/// Reads verb, resource and group from the authorizer's message, e.g.
/// `pods is forbidden: User "system:serviceaccount:vigil:vigil-operator" cannot list resource
/// "pods" in API group "" at the cluster scope`.
pub fn parse(message: &str) -> Forbidden {
    let after = |marker: &str| message.split_once(marker).map(|(_, rest)| rest);
    let quoted = |marker: &str| {
        after(marker)
            .and_then(|rest| rest.strip_prefix('"'))
            .and_then(|rest| rest.split_once('"'))
            .map(|(v, _)| v.to_string())
    };
    let verb = after(" cannot ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("?")
        .to_string();
    Forbidden {
        verb,
        resource: quoted(" resource ").unwrap_or_else(|| "?".into()),
        group: quoted(" in API group ").unwrap_or_default(),
        message: message.to_string(),
    }
}

/// If `err` is a 403, logs it as a missing permission (while doing `context`), counts it and
/// returns true. Other errors are left to the caller.
pub fn report(
    err: &(dyn std::error::Error + 'static),
    context: &str,
    metrics: &KubeMetrics,
) -> bool {
    let Some(f) = find(err) else {
        return false;
    };
    metrics
        .api_forbidden
        .get_or_create(&ForbiddenLabel {
            verb: f.verb.clone(),
            resource: f.resource.clone(),
        })
        .inc();
    tracing::error!(
        verb = %f.verb,
        resource = %f.resource,
        api_group = %f.group,
        "permission denied while {context}: this operator's identity may not {} {} (API group \"{}\"); \
         grant it in the operator's ClusterRole or Role (Helm chart: templates/operator-rbac.yaml). \
         Retrying. API server: {}",
        f.verb,
        f.resource,
        f.group,
        f.message
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_authorizers_message() {
        let f = parse(
            "tracingpolicies.vigil.dev \"x\" is forbidden: User \"system:serviceaccount:vigil:vigil-operator\" cannot patch resource \"tracingpolicies/status\" in API group \"vigil.dev\" at the cluster scope",
        );
        assert_eq!(f.verb, "patch");
        assert_eq!(f.resource, "tracingpolicies/status");
        assert_eq!(f.group, "vigil.dev");
        let f = parse(
            "leases.coordination.k8s.io \"vigil-operator\" is forbidden: User \"system:serviceaccount:vigil:vigil-operator\" cannot get resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"vigil\"",
        );
        assert_eq!(
            (f.verb.as_str(), f.resource.as_str(), f.group.as_str()),
            ("get", "leases", "coordination.k8s.io")
        );
        let f = parse("pods is forbidden: something else");
        assert_eq!((f.verb.as_str(), f.resource.as_str()), ("?", "?"));
    }

    #[test]
    fn finds_a_403_behind_other_errors_and_counts_it() {
        let status = kube::core::Status {
            code: 403,
            message: "pods is forbidden: User \"u\" cannot watch resource \"pods\" in API group \"\" at the cluster scope".into(),
            ..Default::default()
        };
        let err = kube::runtime::watcher::Error::WatchFailed(kube::Error::Api(Box::new(status)));
        let metrics = KubeMetrics::new();
        assert!(report(&err, "watching pods", &metrics));
        assert!(
            metrics
                .encode()
                .contains("vigil_operator_api_forbidden_total{verb=\"watch\",resource=\"pods\"} 1"),
            "{}",
            metrics.encode()
        );
        let other = kube::Error::Api(Box::new(kube::core::Status {
            code: 404,
            ..Default::default()
        }));
        assert!(!report(&other, "x", &metrics));
    }
}
