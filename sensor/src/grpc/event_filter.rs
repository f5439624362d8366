//! GetEvents filters: a request's allow and deny lists compiled once per client.
//!
//! Within one `Filter`, every field that is set must match (AND); an event passes the allow list
//! when any filter matches (an empty allow list passes everything) and is removed when any deny
//! filter matches. `pid_set` follows descendants: once an exec event shows a process whose
//! parent is in the set, that process joins the set for the rest of the stream.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use regex::Regex;
use vigil_api::events::{EventKind, GetEventsResponse, LossKind, Process, capability_event_name};
use vigil_api::wire::tetragon;

use crate::output::loss::LossKey;

/// The event kinds a `record` loss may have been: any process event, or a policy demotion
/// (lost after decoding, see `output::loss::kind_of`).
const RECORD_KINDS: [EventKind; 7] = [
    EventKind::ProcessExec,
    EventKind::ProcessExit,
    EventKind::ProcessKprobe,
    EventKind::ProcessTracepoint,
    EventKind::ProcessUprobe,
    EventKind::ProcessLsm,
    EventKind::PolicyDemoted,
];

/// A filter field that cannot be honoured, or a bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("filter field {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("filter field {0} is not supported by vigil")]
    Unsupported(&'static str),
}

/// One label requirement from a `labels` selector (`k=v`, `k==v`, `k!=v`, `k`, `!k`).
#[derive(Debug, Clone)]
enum LabelReq {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    NotExists(String),
}

impl LabelReq {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            LabelReq::Eq(k, v) => labels.get(k) == Some(v),
            LabelReq::Ne(k, v) => labels.get(k) != Some(v),
            LabelReq::Exists(k) => labels.contains_key(k),
            LabelReq::NotExists(k) => !labels.contains_key(k),
        }
    }
}

fn parse_selector(s: &str) -> Result<Vec<LabelReq>, FilterError> {
    let bad = |m: String| FilterError::Invalid {
        field: "labels",
        message: m,
    };
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            if let Some((k, v)) = p.split_once("!=") {
                Ok(LabelReq::Ne(k.trim().into(), v.trim().into()))
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                Ok(LabelReq::Eq(k.trim().into(), v.trim().into()))
            } else if let Some(k) = p.strip_prefix('!') {
                Ok(LabelReq::NotExists(k.trim().into()))
            } else if p.contains(' ') {
                Err(bad(format!(
                    "{p:?}: only k=v, k==v, k!=v, k and !k are supported"
                )))
            } else {
                Ok(LabelReq::Exists(p.into()))
            }
        })
        .collect()
}

#[derive(Debug, Clone, Default)]
struct CapSet {
    any: Vec<String>,
    all: Vec<String>,
    exactly: Option<Vec<String>>,
    none: Vec<String>,
}

impl CapSet {
    fn from_proto(s: &tetragon::CapFilterSet) -> Result<Self, FilterError> {
        let names = |v: &[i32]| -> Result<Vec<String>, FilterError> {
            v.iter()
                .map(|n| {
                    usize::try_from(*n)
                        .ok()
                        .and_then(capability_event_name)
                        .map(str::to_string)
                        .ok_or(FilterError::Invalid {
                            field: "capabilities",
                            message: format!("unknown capability {n}"),
                        })
                })
                .collect()
        };
        Ok(CapSet {
            any: names(&s.any)?,
            all: names(&s.all)?,
            exactly: if s.exactly.is_empty() {
                None
            } else {
                Some(names(&s.exactly)?)
            },
            none: names(&s.none)?,
        })
    }

    fn matches(&self, have: &[String]) -> bool {
        let has = |c: &String| have.contains(c);
        (self.any.is_empty() || self.any.iter().any(has))
            && self.all.iter().all(has)
            && self.none.iter().all(|c| !has(c))
            && self
                .exactly
                .as_ref()
                .is_none_or(|e| e.len() == have.len() && e.iter().all(has))
    }
}

/// One compiled `Filter`.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    binary: Vec<Regex>,
    namespace: Vec<String>,
    health_check: Option<bool>,
    pid: Vec<u32>,
    pid_set: Option<HashSet<u32>>,
    event_set: Vec<i32>,
    pod: Vec<Regex>,
    arguments: Vec<Regex>,
    labels: Vec<Vec<LabelReq>>,
    policy_names: Vec<String>,
    caps: Option<[Option<CapSet>; 3]>,
    parent_binary: Vec<Regex>,
    parent_arguments: Vec<Regex>,
    container_id: Vec<Regex>,
    in_init_tree: Option<bool>,
    ancestor_binary: Vec<Regex>,
    container_name: Vec<Regex>,
    namespace_regex: Vec<Regex>,
}

fn regexes(field: &'static str, v: &[String]) -> Result<Vec<Regex>, FilterError> {
    v.iter()
        .map(|s| {
            Regex::new(s).map_err(|e| FilterError::Invalid {
                field,
                message: format!("{s:?}: {e}"),
            })
        })
        .collect()
}

fn any_match(res: &[Regex], s: &str) -> bool {
    res.is_empty() || res.iter().any(|r| r.is_match(s))
}

impl EventFilter {
    pub fn compile(f: &tetragon::Filter) -> Result<Self, FilterError> {
        if !f.cel_expression.is_empty() {
            return Err(FilterError::Unsupported("cel_expression"));
        }
        for t in &f.event_set {
            if !EventKind::ALL.iter().any(|k| k.number() as i32 == *t) {
                return Err(FilterError::Invalid {
                    field: "event_set",
                    message: format!("event type {t} is not one vigil emits"),
                });
            }
        }
        let caps = match &f.capabilities {
            None => None,
            Some(c) => {
                let one =
                    |s: &Option<tetragon::CapFilterSet>| -> Result<Option<CapSet>, FilterError> {
                        s.as_ref().map(CapSet::from_proto).transpose()
                    };
                Some([one(&c.permitted)?, one(&c.effective)?, one(&c.inheritable)?])
            }
        };
        Ok(EventFilter {
            binary: regexes("binary_regex", &f.binary_regex)?,
            namespace: f.namespace.clone(),
            health_check: f.health_check,
            pid: f.pid.clone(),
            pid_set: (!f.pid_set.is_empty()).then(|| f.pid_set.iter().copied().collect()),
            event_set: f.event_set.clone(),
            pod: regexes("pod_regex", &f.pod_regex)?,
            arguments: regexes("arguments_regex", &f.arguments_regex)?,
            labels: f
                .labels
                .iter()
                .map(|s| parse_selector(s))
                .collect::<Result<_, _>>()?,
            policy_names: f.policy_names.clone(),
            caps,
            parent_binary: regexes("parent_binary_regex", &f.parent_binary_regex)?,
            parent_arguments: regexes("parent_arguments_regex", &f.parent_arguments_regex)?,
            container_id: regexes("container_id", &f.container_id)?,
            in_init_tree: f.in_init_tree,
            ancestor_binary: regexes("ancestor_binary_regex", &f.ancestor_binary_regex)?,
            container_name: regexes("container_name_regex", &f.container_name_regex)?,
            namespace_regex: regexes("namespace_regex", &f.namespace_regex)?,
        })
    }

    /// Whether `ev` passes this filter. Takes `&mut self` to learn `pid_set` descendants.
    pub fn matches(&mut self, ev: &GetEventsResponse) -> bool {
        let Some(kind) = ev.kind() else {
            return false;
        };
        let empty = Process::default();
        let p = ev.process().unwrap_or(&empty);
        let parent = ev.parent();
        let pid = p.pid.unwrap_or(0);

        if let Some(set) = &mut self.pid_set {
            let parent_in = parent
                .and_then(|q| q.pid)
                .is_some_and(|pp| set.contains(&pp));
            if kind == EventKind::ProcessExec && parent_in {
                set.insert(pid);
            }
            if !set.contains(&pid) {
                return false;
            }
        }
        if !self.event_set.is_empty() && !self.event_set.contains(&(kind.number() as i32)) {
            return false;
        }
        // A policy demotion has no process: a filter on any process field never passes it;
        // `event_set` (above) and `policy_names` (the demoted policy's name) can.
        if kind == EventKind::PolicyDemoted {
            return !self.has_process_fields() && self.passes_policy_names(ev);
        }
        if !self.pid.is_empty() && !self.pid.contains(&pid) {
            return false;
        }
        if !any_match(&self.binary, &p.binary) || !any_match(&self.arguments, &p.arguments) {
            return false;
        }
        let pod = p.pod.as_ref();
        let ns = pod.map(|x| x.namespace.as_str()).unwrap_or("");
        if !self.namespace.is_empty() && !self.namespace.iter().any(|n| n == ns) {
            return false;
        }
        if !any_match(&self.namespace_regex, ns) {
            return false;
        }
        if !self.pod.is_empty() && !pod.is_some_and(|x| any_match(&self.pod, &x.name)) {
            return false;
        }
        if !self.labels.is_empty() {
            let empty_labels = BTreeMap::new();
            let labels = pod.map(|x| &x.pod_labels).unwrap_or(&empty_labels);
            if !self
                .labels
                .iter()
                .any(|sel| sel.iter().all(|r| r.matches(labels)))
            {
                return false;
            }
        }
        let container = pod.and_then(|x| x.container.as_ref());
        if let Some(h) = self.health_check
            && container.is_some_and(|c| c.maybe_exec_probe) != h
        {
            return false;
        }
        if !self.container_id.is_empty() {
            let ids = [Some(p.docker.as_str()), container.map(|c| c.id.as_str())];
            if !ids
                .iter()
                .flatten()
                .any(|id| !id.is_empty() && any_match(&self.container_id, id))
            {
                return false;
            }
        }
        if !self.container_name.is_empty()
            && !container.is_some_and(|c| any_match(&self.container_name, &c.name))
        {
            return false;
        }
        if !self.passes_policy_names(ev) {
            return false;
        }
        if let Some(sets) = &self.caps {
            let cap = p.cap.clone().unwrap_or_default();
            for (set, have) in sets
                .iter()
                .zip([&cap.permitted, &cap.effective, &cap.inheritable])
            {
                if let Some(s) = set
                    && !s.matches(have)
                {
                    return false;
                }
            }
        }
        if !self.parent_binary.is_empty()
            && !parent.is_some_and(|q| any_match(&self.parent_binary, &q.binary))
        {
            return false;
        }
        if !self.parent_arguments.is_empty()
            && !parent.is_some_and(|q| any_match(&self.parent_arguments, &q.arguments))
        {
            return false;
        }
        if let Some(v) = self.in_init_tree
            && p.in_init_tree.unwrap_or(false) != v
        {
            return false;
        }
        if !self.ancestor_binary.is_empty() {
            let mut chain = parent.into_iter().chain(ancestors(ev).iter().map(|a| &**a));
            if !chain.any(|q| self.ancestor_binary.iter().any(|r| r.is_match(&q.binary))) {
                return false;
            }
        }
        true
    }
}

impl EventFilter {
    /// Whether any field that looks at the event's process (or its pod, parent, ancestors) is
    /// set: every field but `event_set` and `policy_names`.
    fn has_process_fields(&self) -> bool {
        !self.binary.is_empty()
            || !self.namespace.is_empty()
            || self.health_check.is_some()
            || !self.pid.is_empty()
            || self.pid_set.is_some()
            || !self.pod.is_empty()
            || !self.arguments.is_empty()
            || !self.labels.is_empty()
            || self.caps.is_some()
            || !self.parent_binary.is_empty()
            || !self.parent_arguments.is_empty()
            || !self.container_id.is_empty()
            || self.in_init_tree.is_some()
            || !self.ancestor_binary.is_empty()
            || !self.container_name.is_empty()
            || !self.namespace_regex.is_empty()
    }

    fn passes_policy_names(&self, ev: &GetEventsResponse) -> bool {
        self.policy_names.is_empty() || {
            let name = policy_name(ev);
            self.policy_names.iter().any(|n| n == name)
        }
    }

    /// Whether events of a loss could have passed this filter. A marker tells only the kind and
    /// the policy of what was lost, so only `event_set` and `policy_names` can rule it out;
    /// every other field could have matched. A filter whose `event_set` names
    /// `RATE_LIMIT_INFO` takes every marker.
    fn may_match_loss(&self, key: &LossKey) -> bool {
        if !self.event_set.is_empty()
            && !self
                .event_set
                .contains(&(EventKind::RateLimitInfo.number() as i32))
        {
            let kinds: &[EventKind] = match key.kind {
                LossKind::Exec => &[EventKind::ProcessExec],
                LossKind::Exit => &[EventKind::ProcessExit],
                // A lost fork leaves the process unknown to its exec and exit events.
                LossKind::Fork => &[EventKind::ProcessExec, EventKind::ProcessExit],
                LossKind::Hook => &[
                    EventKind::ProcessKprobe,
                    EventKind::ProcessTracepoint,
                    EventKind::ProcessUprobe,
                    EventKind::ProcessLsm,
                ],
                // A record of unknown kind, or a policy demotion lost after it was made.
                LossKind::Record => &RECORD_KINDS,
            };
            if !kinds
                .iter()
                .any(|k| self.event_set.contains(&(k.number() as i32)))
            {
                return false;
            }
        }
        if !self.policy_names.is_empty() {
            match (key.kind, key.policy.as_deref()) {
                (LossKind::Hook, Some(p)) => {
                    // Markers name `namespace/name`; events and filters the name alone.
                    let name = p.rsplit('/').next().unwrap_or(p);
                    if !self.policy_names.iter().any(|n| n == name) {
                        return false;
                    }
                }
                (LossKind::Hook | LossKind::Record, _) => {}
                // Process events carry no policy: a policy filter never passes them.
                _ => return false,
            }
        }
        true
    }
}

fn policy_name(ev: &GetEventsResponse) -> &str {
    if let Some(e) = &ev.process_kprobe {
        &e.policy_name
    } else if let Some(e) = &ev.process_tracepoint {
        &e.policy_name
    } else if let Some(e) = &ev.process_uprobe {
        &e.policy_name
    } else if let Some(e) = &ev.process_lsm {
        &e.policy_name
    } else if let Some(e) = &ev.vigil_policy_demoted {
        &e.policy_name
    } else {
        ""
    }
}

fn ancestors(ev: &GetEventsResponse) -> &[Arc<Process>] {
    if let Some(e) = &ev.process_exec {
        &e.ancestors
    } else if let Some(e) = &ev.process_exit {
        &e.ancestors
    } else if let Some(e) = &ev.process_kprobe {
        &e.ancestors
    } else if let Some(e) = &ev.process_tracepoint {
        &e.ancestors
    } else if let Some(e) = &ev.process_uprobe {
        &e.ancestors
    } else if let Some(e) = &ev.process_lsm {
        &e.ancestors
    } else {
        &[]
    }
}

/// A request's allow and deny lists.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    allow: Vec<EventFilter>,
    deny: Vec<EventFilter>,
}

impl RequestFilter {
    pub fn compile(req: &tetragon::GetEventsRequest) -> Result<Self, FilterError> {
        Ok(RequestFilter {
            allow: req
                .allow_list
                .iter()
                .map(EventFilter::compile)
                .collect::<Result<_, _>>()?,
            deny: req
                .deny_list
                .iter()
                .map(EventFilter::compile)
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether the client gets `ev`. Every filter sees every event (so `pid_set` learns
    /// descendants even when another filter decides).
    pub fn matches(&mut self, ev: &GetEventsResponse) -> bool {
        let allowed = if self.allow.is_empty() {
            true
        } else {
            self.allow
                .iter_mut()
                .fold(false, |acc, f| f.matches(ev) | acc)
        };
        let denied = self
            .deny
            .iter_mut()
            .fold(false, |acc, f| f.matches(ev) | acc);
        allowed && !denied
    }

    /// Whether the client gets a loss marker of earlier stages: when some allow filter could
    /// have passed what was lost (see [`EventFilter`]'s rule). The deny list cannot rule out
    /// events nobody saw, and is not applied.
    pub fn wants_loss(&self, key: &LossKey) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|f| f.may_match_loss(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_api::events::*;

    fn proc_(pid: u32, binary: &str, args: &str) -> Process {
        Process {
            exec_id: format!("id{pid}"),
            pid: Some(pid),
            binary: binary.into(),
            arguments: args.into(),
            ..Default::default()
        }
    }

    fn exec(pid: u32, ppid: u32, binary: &str) -> GetEventsResponse {
        GetEventsResponse::new(
            ProcessExec {
                process: Some(proc_(pid, binary, "-a b").into()),
                parent: Some(proc_(ppid, "/bin/sh", "-c x").into()),
                ..Default::default()
            },
            "n",
            "",
        )
    }

    fn exit(pid: u32, ppid: u32, binary: &str) -> GetEventsResponse {
        GetEventsResponse::new(
            ProcessExit {
                process: Some(proc_(pid, binary, "").into()),
                parent: Some(proc_(ppid, "/bin/sh", "").into()),
                ..Default::default()
            },
            "n",
            "",
        )
    }

    fn with_pod(
        mut ev: GetEventsResponse,
        ns: &str,
        name: &str,
        labels: &[(&str, &str)],
    ) -> GetEventsResponse {
        let p = ev
            .process_exec
            .as_mut()
            .unwrap()
            .process
            .as_mut()
            .map(Arc::make_mut)
            .unwrap();
        p.docker = "abc123".into();
        p.pod = Some(Pod {
            namespace: ns.into(),
            name: name.into(),
            pod_labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            container: Some(Container {
                id: "containerd://abc123".into(),
                name: "web".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        ev
    }

    fn req(allow: Vec<tetragon::Filter>, deny: Vec<tetragon::Filter>) -> RequestFilter {
        RequestFilter::compile(&tetragon::GetEventsRequest {
            allow_list: allow,
            deny_list: deny,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn empty_request_passes_everything() {
        assert!(req(vec![], vec![]).matches(&exec(1, 0, "/bin/x")));
    }

    #[test]
    fn loss_markers_pass_unless_event_types_or_policies_rule_them_out() {
        use vigil_api::events::{LossReason, LossStage};
        let key = |kind, policy: Option<&str>| {
            LossKey::new(LossStage::Kernel, LossReason::RingBufferFull, kind)
                .with_policy(policy.map(Into::into))
        };
        let hook_a = key(LossKind::Hook, Some("ns/a"));
        let exec = key(LossKind::Exec, None);
        assert!(req(vec![], vec![]).wants_loss(&hook_a));
        let only = |f: tetragon::Filter| req(vec![f], vec![]);
        let binary = only(tetragon::Filter {
            binary_regex: vec!["^/bin/x$".into()],
            ..Default::default()
        });
        assert!(binary.wants_loss(&hook_a) && binary.wants_loss(&exec));
        let execs = only(tetragon::Filter {
            event_set: vec![EventKind::ProcessExec.number() as i32],
            ..Default::default()
        });
        assert!(execs.wants_loss(&exec) && !execs.wants_loss(&hook_a));
        assert!(execs.wants_loss(&key(LossKind::Fork, None)));
        let kprobes_and_markers = only(tetragon::Filter {
            event_set: vec![EventKind::RateLimitInfo.number() as i32],
            ..Default::default()
        });
        assert!(kprobes_and_markers.wants_loss(&exec));
        let policy_a = only(tetragon::Filter {
            policy_names: vec!["a".into()],
            ..Default::default()
        });
        assert!(policy_a.wants_loss(&hook_a));
        assert!(!policy_a.wants_loss(&key(LossKind::Hook, Some("b"))));
        assert!(
            policy_a.wants_loss(&key(LossKind::Hook, None)),
            "could be a's"
        );
        assert!(!policy_a.wants_loss(&exec));
        // Deny lists do not apply to what nobody saw.
        let deny = req(
            vec![],
            vec![tetragon::Filter {
                event_set: vec![EventKind::ProcessExec.number() as i32],
                ..Default::default()
            }],
        );
        assert!(deny.wants_loss(&exec));
    }

    #[test]
    fn binary_event_set_pid_and_arguments() {
        let mut r = req(
            vec![tetragon::Filter {
                binary_regex: vec!["^/usr/bin/cu".into()],
                event_set: vec![1],
                ..Default::default()
            }],
            vec![],
        );
        assert!(r.matches(&exec(5, 1, "/usr/bin/curl")));
        assert!(!r.matches(&exec(5, 1, "/usr/bin/wget")));
        assert!(!r.matches(&exit(5, 1, "/usr/bin/curl")));
        let mut r = req(
            vec![tetragon::Filter {
                pid: vec![7],
                ..Default::default()
            }],
            vec![],
        );
        assert!(r.matches(&exit(7, 1, "/a")) && !r.matches(&exit(8, 1, "/a")));
        let mut r = req(
            vec![tetragon::Filter {
                arguments_regex: vec!["^-a".into()],
                parent_binary_regex: vec!["sh$".into()],
                ..Default::default()
            }],
            vec![],
        );
        assert!(r.matches(&exec(1, 0, "/a")) && !r.matches(&exit(1, 0, "/a")));
    }

    #[test]
    fn deny_list_removes_and_allow_list_is_an_or() {
        let mut r = req(
            vec![
                tetragon::Filter {
                    binary_regex: vec!["a$".into()],
                    ..Default::default()
                },
                tetragon::Filter {
                    binary_regex: vec!["b$".into()],
                    ..Default::default()
                },
            ],
            vec![tetragon::Filter {
                pid: vec![3],
                ..Default::default()
            }],
        );
        assert!(r.matches(&exec(1, 0, "/a")));
        assert!(r.matches(&exec(2, 0, "/b")));
        assert!(!r.matches(&exec(3, 0, "/b")));
        assert!(!r.matches(&exec(4, 0, "/c")));
    }

    #[test]
    fn pid_set_follows_descendants() {
        let mut r = req(
            vec![tetragon::Filter {
                pid_set: vec![100],
                ..Default::default()
            }],
            vec![],
        );
        assert!(r.matches(&exec(100, 1, "/sh")));
        assert!(r.matches(&exec(101, 100, "/child")));
        assert!(r.matches(&exec(102, 101, "/grandchild")));
        assert!(r.matches(&exit(102, 101, "/grandchild")));
        assert!(!r.matches(&exec(200, 1, "/other")));
        assert!(!r.matches(&exec(201, 200, "/other-child")));
    }

    #[test]
    fn pod_namespace_labels_container() {
        let ev = with_pod(
            exec(1, 0, "/a"),
            "prod",
            "web-1",
            &[("app", "web"), ("tier", "fe")],
        );
        let host = exec(2, 0, "/a");
        let one = |f: tetragon::Filter| req(vec![f], vec![]);
        let mut r = one(tetragon::Filter {
            namespace: vec!["prod".into()],
            ..Default::default()
        });
        assert!(r.matches(&ev) && !r.matches(&host));
        let mut r = one(tetragon::Filter {
            namespace: vec!["".into()],
            ..Default::default()
        });
        assert!(!r.matches(&ev) && r.matches(&host));
        let mut r = one(tetragon::Filter {
            pod_regex: vec!["^web-".into()],
            ..Default::default()
        });
        assert!(r.matches(&ev) && !r.matches(&host));
        let mut r = one(tetragon::Filter {
            labels: vec!["app=web,tier!=be".into()],
            ..Default::default()
        });
        assert!(r.matches(&ev) && !r.matches(&host));
        let mut r = one(tetragon::Filter {
            labels: vec!["app=db".into()],
            ..Default::default()
        });
        assert!(!r.matches(&ev));
        let mut r = one(tetragon::Filter {
            container_id: vec!["^abc".into()],
            container_name_regex: vec!["^web$".into()],
            ..Default::default()
        });
        assert!(r.matches(&ev) && !r.matches(&host));
    }

    #[test]
    fn policy_names_and_capabilities() {
        let mut kp = GetEventsResponse::new(
            ProcessKprobe {
                process: Some(
                    Process {
                        cap: Some(Capabilities {
                            effective: vec!["CAP_SYS_ADMIN".into()],
                            ..Default::default()
                        }),
                        ..proc_(1, "/a", "")
                    }
                    .into(),
                ),
                policy_name: "p1".into(),
                ..Default::default()
            },
            "n",
            "",
        );
        let mut r = req(
            vec![tetragon::Filter {
                policy_names: vec!["p1".into()],
                ..Default::default()
            }],
            vec![],
        );
        assert!(r.matches(&kp) && !r.matches(&exec(1, 0, "/a")));
        let mut r = req(
            vec![tetragon::Filter {
                capabilities: Some(tetragon::CapFilter {
                    effective: Some(tetragon::CapFilterSet {
                        any: vec![21],
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            vec![],
        );
        assert!(r.matches(&kp));
        Arc::make_mut(
            kp.process_kprobe
                .as_mut()
                .unwrap()
                .process
                .as_mut()
                .unwrap(),
        )
        .cap = None;
        assert!(!r.matches(&kp));
    }

    fn demoted(name: &str) -> GetEventsResponse {
        GetEventsResponse::policy_demoted(
            "n",
            1,
            PolicyDemoted {
                policy_name: name.into(),
                policy_namespace: "prod".into(),
                action: PolicyDemoted::MONITOR.into(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn policy_demotions_pass_event_types_and_policy_names_but_no_process_field() {
        let ev = demoted("p1");
        assert!(req(vec![], vec![]).matches(&ev));
        let types = |t: EventKind| tetragon::Filter {
            event_set: vec![t.number() as i32],
            ..Default::default()
        };
        let mut only_demotions = req(vec![types(EventKind::PolicyDemoted)], vec![]);
        assert!(only_demotions.matches(&ev));
        assert!(!only_demotions.matches(&exec(1, 0, "/bin/x")));
        assert!(!req(vec![types(EventKind::ProcessExec)], vec![]).matches(&ev));
        // The denial of the kind removes it.
        assert!(!req(vec![], vec![types(EventKind::PolicyDemoted)]).matches(&ev));
        let names = |n: &str| tetragon::Filter {
            policy_names: vec![n.into()],
            ..Default::default()
        };
        assert!(req(vec![names("p1")], vec![]).matches(&ev));
        assert!(!req(vec![names("p2")], vec![]).matches(&ev));
        // Process fields never match it, even with patterns that match anything, and so deny
        // lists on them leave it alone.
        let process_fields = [
            tetragon::Filter {
                binary_regex: vec![".*".into()],
                ..Default::default()
            },
            tetragon::Filter {
                namespace: vec!["prod".into()],
                ..Default::default()
            },
            tetragon::Filter {
                namespace: vec![String::new()],
                ..Default::default()
            },
            tetragon::Filter {
                namespace_regex: vec![".*".into()],
                ..Default::default()
            },
            tetragon::Filter {
                pod_regex: vec![".*".into()],
                ..Default::default()
            },
            tetragon::Filter {
                arguments_regex: vec![".*".into()],
                ..Default::default()
            },
            tetragon::Filter {
                pid: vec![0],
                ..Default::default()
            },
            tetragon::Filter {
                in_init_tree: Some(false),
                ..Default::default()
            },
            tetragon::Filter {
                labels: vec!["!app".into()],
                ..Default::default()
            },
        ];
        for f in process_fields {
            assert!(!req(vec![f.clone()], vec![]).matches(&ev), "{f:?}");
            assert!(req(vec![], vec![f.clone()]).matches(&ev), "{f:?}");
            let with_kind = tetragon::Filter {
                event_set: vec![EventKind::PolicyDemoted.number() as i32],
                ..f
            };
            assert!(!req(vec![with_kind], vec![]).matches(&ev));
        }
    }

    #[test]
    fn record_losses_may_have_been_demotions() {
        use vigil_api::events::{LossReason, LossStage};
        let record = LossKey::new(LossStage::Export, LossReason::QueueFull, LossKind::Record);
        let hook = LossKey::new(LossStage::Export, LossReason::QueueFull, LossKind::Hook);
        let r = req(
            vec![tetragon::Filter {
                event_set: vec![EventKind::PolicyDemoted.number() as i32],
                ..Default::default()
            }],
            vec![],
        );
        assert!(r.wants_loss(&record) && !r.wants_loss(&hook));
    }

    #[test]
    fn bad_regex_and_cel_are_rejected() {
        let bad = tetragon::GetEventsRequest {
            allow_list: vec![tetragon::Filter {
                binary_regex: vec!["(".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(RequestFilter::compile(&bad).is_err());
        let cel = tetragon::GetEventsRequest {
            allow_list: vec![tetragon::Filter {
                cel_expression: vec!["true".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            RequestFilter::compile(&cel).unwrap_err(),
            FilterError::Unsupported("cel_expression")
        );
    }
}
