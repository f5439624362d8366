//! Event filters for `vigil observe`.
//!
//! Values of one filter are alternatives (any may match); different filters must all match.
//! An empty filter matches everything.

use regex::Regex;
use vigil_api::events::{EventKind, GetEventsResponse};

#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Pod namespaces (exact); events without a pod never match.
    pub namespaces: Vec<String>,
    /// Regexes over the pod name; events without a pod never match.
    pub pods: Vec<Regex>,
    /// Regexes over the process binary.
    pub processes: Vec<Regex>,
    /// Event kinds.
    pub kinds: Vec<EventKind>,
}

impl Filter {
    pub fn matches(&self, ev: &GetEventsResponse) -> bool {
        if !self.kinds.is_empty() && !ev.kind().is_some_and(|k| self.kinds.contains(&k)) {
            return false;
        }
        // A loss marker says events are missing here; what they were cannot be matched against
        // pod or binary filters, so it is always shown (unless --event-types leaves it out).
        // A policy demotion has no process: like any event without one, it never matches a
        // namespace, pod or process filter (below).
        if ev.kind() == Some(EventKind::RateLimitInfo) {
            return true;
        }
        let process = ev.process();
        let pod = process.and_then(|p| p.pod.as_ref());
        if !self.namespaces.is_empty()
            && !pod.is_some_and(|p| self.namespaces.contains(&p.namespace))
        {
            return false;
        }
        if !self.pods.is_empty()
            && !pod.is_some_and(|p| self.pods.iter().any(|r| r.is_match(&p.name)))
        {
            return false;
        }
        if !self.processes.is_empty()
            && !process.is_some_and(|p| self.processes.iter().any(|r| r.is_match(&p.binary)))
        {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_api::events::{Pod, Process, ProcessExec, ProcessExit};

    fn exec(binary: &str, pod: Option<(&str, &str)>) -> GetEventsResponse {
        GetEventsResponse::new(
            ProcessExec {
                process: Some(
                    Process {
                        binary: binary.into(),
                        pod: pod.map(|(ns, name)| Pod {
                            namespace: ns.into(),
                            name: name.into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }
                    .into(),
                ),
                ..Default::default()
            },
            "n",
            "t",
        )
    }

    #[test]
    fn empty_filter_matches_all() {
        assert!(Filter::default().matches(&exec("/bin/ls", None)));
    }

    #[test]
    fn loss_markers_pass_process_filters_but_not_event_types() {
        let marker = vigil_api::events::Loss {
            count: 1,
            ..Default::default()
        }
        .to_event("n", "t");
        let f = Filter {
            namespaces: vec!["prod".into()],
            processes: vec![Regex::new("^/bin/ls$").unwrap()],
            ..Default::default()
        };
        assert!(f.matches(&marker));
        let f = Filter {
            kinds: vec![EventKind::ProcessExec],
            ..Default::default()
        };
        assert!(!f.matches(&marker));
        let f = Filter {
            kinds: vec![EventKind::RateLimitInfo],
            ..Default::default()
        };
        assert!(f.matches(&marker));
    }

    #[test]
    fn policy_demotions_pass_their_event_type_but_no_process_filter() {
        let demoted = GetEventsResponse::policy_demoted(
            "n",
            1,
            vigil_api::events::PolicyDemoted {
                policy_name: "p".into(),
                policy_namespace: "prod".into(),
                action: "monitor".into(),
                ..Default::default()
            },
        );
        assert!(Filter::default().matches(&demoted));
        let only = |k: &str| Filter {
            kinds: vec![k.parse().unwrap()],
            ..Default::default()
        };
        assert!(only("VIGIL_POLICY_DEMOTED").matches(&demoted));
        assert!(!only("PROCESS_EXEC").matches(&demoted));
        assert!(!only("VIGIL_POLICY_DEMOTED").matches(&exec("/bin/ls", None)));
        for f in [
            Filter {
                namespaces: vec!["prod".into()],
                ..Default::default()
            },
            Filter {
                pods: vec![Regex::new(".*").unwrap()],
                ..Default::default()
            },
            Filter {
                processes: vec![Regex::new(".*").unwrap()],
                ..Default::default()
            },
        ] {
            assert!(!f.matches(&demoted), "{f:?}");
        }
    }

    #[test]
    fn namespace_and_pod_need_a_pod() {
        let f = Filter {
            namespaces: vec!["default".into(), "prod".into()],
            ..Default::default()
        };
        assert!(f.matches(&exec("/bin/ls", Some(("prod", "web-1")))));
        assert!(!f.matches(&exec("/bin/ls", Some(("kube-system", "dns")))));
        assert!(!f.matches(&exec("/bin/ls", None)));
        let f = Filter {
            pods: vec![Regex::new("^web-").unwrap()],
            ..Default::default()
        };
        assert!(f.matches(&exec("/bin/ls", Some(("prod", "web-1")))));
        assert!(!f.matches(&exec("/bin/ls", Some(("prod", "db-1")))));
        assert!(!f.matches(&exec("/bin/ls", None)));
    }

    #[test]
    fn process_regex_and_kinds_combine() {
        let f = Filter {
            processes: vec![Regex::new("cat$").unwrap()],
            kinds: vec![EventKind::ProcessExec],
            ..Default::default()
        };
        assert!(f.matches(&exec("/usr/bin/cat", None)));
        assert!(!f.matches(&exec("/usr/bin/head", None)));
        let exit = GetEventsResponse::new(
            ProcessExit {
                process: Some(
                    Process {
                        binary: "/usr/bin/cat".into(),
                        ..Default::default()
                    }
                    .into(),
                ),
                ..Default::default()
            },
            "n",
            "t",
        );
        assert!(!f.matches(&exit));
    }
}
