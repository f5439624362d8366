//! The envelope (`GetEventsResponse`) and the event kinds it carries.

use super::EventError;
use super::args::KprobeArgument;
use super::codec::{f64_json, is_zero_f64, is_zero_u32, is_zero_u64, u64_str};
use super::format::format_time_ns;
use super::process::{Process, SharedProcess};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// One event line: exactly one of the `process_*` fields, `rate_limit_info` or
/// `vigil_policy_demoted` is set.
///
/// Decoding rejects a line with no event or with more than one. The process events (and the
/// demotion) are boxed so that the envelope stays small to move (the JSON is the same).
///
/// `PartialEq` only: [`PolicyDemoted`] carries `f64` percentages, which are not `Eq`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawResponse")]
pub struct GetEventsResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_exec: Option<Box<ProcessExec>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_exit: Option<Box<ProcessExit>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_kprobe: Option<Box<ProcessKprobe>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_tracepoint: Option<Box<ProcessTracepoint>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_uprobe: Option<Box<ProcessUprobe>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_lsm: Option<Box<ProcessLsm>>,
    /// A loss marker: events that were lost at this point of the stream (see [`super::Loss`]
    /// for the attribution Vigil adds in `node_labels`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_info: Option<RateLimitInfo>,
    /// Vigil-only: a policy over its CPU budget was demoted (see [`PolicyDemoted`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vigil_policy_demoted: Option<Box<PolicyDemoted>>,
    /// Name of the node that observed the event.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    /// When the event was observed, RFC 3339 with nanoseconds (see [`super::format_time_ns`]).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregation_info: Option<AggregationInfo>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster_name: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_labels: BTreeMap<String, String>,
}

/// What the deserializer reads before the one-event check.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResponse {
    #[serde(default)]
    process_exec: Option<Box<ProcessExec>>,
    #[serde(default)]
    process_exit: Option<Box<ProcessExit>>,
    #[serde(default)]
    process_kprobe: Option<Box<ProcessKprobe>>,
    #[serde(default)]
    process_tracepoint: Option<Box<ProcessTracepoint>>,
    #[serde(default)]
    process_uprobe: Option<Box<ProcessUprobe>>,
    #[serde(default)]
    process_lsm: Option<Box<ProcessLsm>>,
    #[serde(default)]
    rate_limit_info: Option<RateLimitInfo>,
    #[serde(default)]
    vigil_policy_demoted: Option<Box<PolicyDemoted>>,
    #[serde(default)]
    node_name: String,
    #[serde(default)]
    time: String,
    #[serde(default)]
    aggregation_info: Option<AggregationInfo>,
    #[serde(default)]
    cluster_name: String,
    #[serde(default)]
    node_labels: BTreeMap<String, String>,
}

impl TryFrom<RawResponse> for GetEventsResponse {
    type Error = EventError;

    fn try_from(r: RawResponse) -> Result<Self, EventError> {
        let ev = GetEventsResponse {
            process_exec: r.process_exec,
            process_exit: r.process_exit,
            process_kprobe: r.process_kprobe,
            process_tracepoint: r.process_tracepoint,
            process_uprobe: r.process_uprobe,
            process_lsm: r.process_lsm,
            rate_limit_info: r.rate_limit_info,
            vigil_policy_demoted: r.vigil_policy_demoted,
            node_name: r.node_name,
            time: r.time,
            aggregation_info: r.aggregation_info,
            cluster_name: r.cluster_name,
            node_labels: r.node_labels,
        };
        ev.check_one_event()?;
        Ok(ev)
    }
}

impl GetEventsResponse {
    /// An envelope around `event` with node name and time set.
    pub fn new(
        event: impl Into<Event>,
        node_name: impl Into<String>,
        time: impl Into<String>,
    ) -> Self {
        let mut r = GetEventsResponse {
            node_name: node_name.into(),
            time: time.into(),
            ..Default::default()
        };
        match event.into() {
            Event::Exec(e) => r.process_exec = Some(e),
            Event::Exit(e) => r.process_exit = Some(e),
            Event::Kprobe(e) => r.process_kprobe = Some(e),
            Event::Tracepoint(e) => r.process_tracepoint = Some(e),
            Event::Uprobe(e) => r.process_uprobe = Some(e),
            Event::Lsm(e) => r.process_lsm = Some(e),
            Event::RateLimitInfo(e) => r.rate_limit_info = Some(e),
            Event::PolicyDemoted(e) => r.vigil_policy_demoted = Some(Box::new(e)),
        }
        r
    }

    /// A `vigil_policy_demoted` envelope: `demoted`, seen on `node_name` at `time_ns`
    /// (nanoseconds since the Unix epoch).
    pub fn policy_demoted(
        node_name: impl Into<String>,
        time_ns: u64,
        demoted: PolicyDemoted,
    ) -> Self {
        Self::new(demoted, node_name, format_time_ns(time_ns))
    }

    /// Decodes one JSON line strictly (unknown fields, no event or two events are errors).
    pub fn from_json(line: &str) -> Result<Self, EventError> {
        serde_json::from_str(line).map_err(|e| {
            // serde_json appends " at line L column C"; keep the reason and position apart.
            let text = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let message = text.strip_suffix(&suffix).unwrap_or(&text).to_string();
            EventError::Decode {
                message,
                line: e.line(),
                column: e.column(),
            }
        })
    }

    /// Encodes as one JSON line (no trailing newline).
    pub fn to_json(&self) -> Result<String, EventError> {
        serde_json::to_string(self).map_err(|e| EventError::Encode(e.to_string()))
    }

    /// [`GetEventsResponse::to_json`] into a string that starts with room for `capacity` bytes
    /// (say, the length of the previous line), so that a typical line is written without
    /// growing it. The same text.
    pub fn to_json_sized(&self, capacity: usize) -> Result<String, EventError> {
        let mut out = Vec::with_capacity(capacity);
        serde_json::to_writer(&mut out, self).map_err(|e| EventError::Encode(e.to_string()))?;
        String::from_utf8(out).map_err(|e| EventError::Encode(e.to_string()))
    }

    /// The kind of the event carried, `None` when no event field is set.
    ///
    /// When several are set (only possible for values built in code), the first in
    /// field order wins; [`GetEventsResponse::check_one_event`] reports that case.
    pub fn kind(&self) -> Option<EventKind> {
        self.kinds_set().next()
    }

    /// Errors unless exactly one event field is set.
    pub fn check_one_event(&self) -> Result<(), EventError> {
        let kinds: Vec<EventKind> = self.kinds_set().collect();
        match kinds.len() {
            0 => Err(EventError::NoEvent),
            1 => Ok(()),
            _ => Err(EventError::SeveralEvents(
                kinds
                    .iter()
                    .map(|k| k.field_name())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }

    fn kinds_set(&self) -> impl Iterator<Item = EventKind> + '_ {
        [
            (self.process_exec.is_some(), EventKind::ProcessExec),
            (self.process_exit.is_some(), EventKind::ProcessExit),
            (self.process_kprobe.is_some(), EventKind::ProcessKprobe),
            (
                self.process_tracepoint.is_some(),
                EventKind::ProcessTracepoint,
            ),
            (self.process_uprobe.is_some(), EventKind::ProcessUprobe),
            (self.process_lsm.is_some(), EventKind::ProcessLsm),
            (self.rate_limit_info.is_some(), EventKind::RateLimitInfo),
            (
                self.vigil_policy_demoted.is_some(),
                EventKind::PolicyDemoted,
            ),
        ]
        .into_iter()
        .filter_map(|(set, k)| set.then_some(k))
    }

    /// The `process` of whichever event is set.
    pub fn process(&self) -> Option<&Process> {
        self.event_ref()?.0.as_deref()
    }

    /// The `parent` of whichever event is set.
    pub fn parent(&self) -> Option<&Process> {
        self.event_ref()?.1.as_deref()
    }

    /// The event's `process`, `parent` and `ancestors`, mutable (for enrichment).
    pub fn processes_mut(
        &mut self,
    ) -> Option<(
        &mut Option<SharedProcess>,
        &mut Option<SharedProcess>,
        &mut Vec<SharedProcess>,
    )> {
        Some(match self.kind()? {
            EventKind::ProcessExec => {
                let e = self.process_exec.as_mut()?;
                (&mut e.process, &mut e.parent, &mut e.ancestors)
            }
            EventKind::ProcessExit => {
                let e = self.process_exit.as_mut()?;
                (&mut e.process, &mut e.parent, &mut e.ancestors)
            }
            EventKind::ProcessKprobe => {
                let e = self.process_kprobe.as_mut()?;
                (&mut e.process, &mut e.parent, &mut e.ancestors)
            }
            EventKind::ProcessTracepoint => {
                let e = self.process_tracepoint.as_mut()?;
                (&mut e.process, &mut e.parent, &mut e.ancestors)
            }
            EventKind::ProcessUprobe => {
                let e = self.process_uprobe.as_mut()?;
                (&mut e.process, &mut e.parent, &mut e.ancestors)
            }
            EventKind::ProcessLsm => {
                let e = self.process_lsm.as_mut()?;
                (&mut e.process, &mut e.parent, &mut e.ancestors)
            }
            EventKind::RateLimitInfo | EventKind::PolicyDemoted => return None,
        })
    }

    fn event_ref(&self) -> Option<(&Option<SharedProcess>, &Option<SharedProcess>)> {
        Some(match self.kind()? {
            EventKind::ProcessExec => {
                let e = self.process_exec.as_ref()?;
                (&e.process, &e.parent)
            }
            EventKind::ProcessExit => {
                let e = self.process_exit.as_ref()?;
                (&e.process, &e.parent)
            }
            EventKind::ProcessKprobe => {
                let e = self.process_kprobe.as_ref()?;
                (&e.process, &e.parent)
            }
            EventKind::ProcessTracepoint => {
                let e = self.process_tracepoint.as_ref()?;
                (&e.process, &e.parent)
            }
            EventKind::ProcessUprobe => {
                let e = self.process_uprobe.as_ref()?;
                (&e.process, &e.parent)
            }
            EventKind::ProcessLsm => {
                let e = self.process_lsm.as_ref()?;
                (&e.process, &e.parent)
            }
            EventKind::RateLimitInfo | EventKind::PolicyDemoted => return None,
        })
    }
}

/// One event of any kind, for [`GetEventsResponse::new`]. The process events are boxed, here
/// and in the envelope: an envelope is moved several times between the ring buffer and the
/// JSON line, and unboxed it would be 13 KiB to copy each time. (`PartialEq` only, as the
/// envelope: [`PolicyDemoted`] has `f64` fields.)
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Exec(Box<ProcessExec>),
    Exit(Box<ProcessExit>),
    Kprobe(Box<ProcessKprobe>),
    Tracepoint(Box<ProcessTracepoint>),
    Uprobe(Box<ProcessUprobe>),
    Lsm(Box<ProcessLsm>),
    RateLimitInfo(RateLimitInfo),
    PolicyDemoted(PolicyDemoted),
}

impl From<RateLimitInfo> for Event {
    fn from(e: RateLimitInfo) -> Self {
        Event::RateLimitInfo(e)
    }
}

impl From<PolicyDemoted> for Event {
    fn from(e: PolicyDemoted) -> Self {
        Event::PolicyDemoted(e)
    }
}

impl From<ProcessExec> for Event {
    fn from(e: ProcessExec) -> Self {
        Event::Exec(Box::new(e))
    }
}

impl From<ProcessExit> for Event {
    fn from(e: ProcessExit) -> Self {
        Event::Exit(Box::new(e))
    }
}

impl From<ProcessKprobe> for Event {
    fn from(e: ProcessKprobe) -> Self {
        Event::Kprobe(Box::new(e))
    }
}

impl From<ProcessTracepoint> for Event {
    fn from(e: ProcessTracepoint) -> Self {
        Event::Tracepoint(Box::new(e))
    }
}

impl From<ProcessUprobe> for Event {
    fn from(e: ProcessUprobe) -> Self {
        Event::Uprobe(Box::new(e))
    }
}

impl From<ProcessLsm> for Event {
    fn from(e: ProcessLsm) -> Self {
        Event::Lsm(Box::new(e))
    }
}

/// The event kinds Vigil emits, named as in Tetragon's `EventType` enum: the six process
/// events, `RATE_LIMIT_INFO`, the loss marker, and the Vigil-only `VIGIL_POLICY_DEMOTED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    ProcessExec,
    ProcessExit,
    ProcessKprobe,
    ProcessTracepoint,
    ProcessUprobe,
    ProcessLsm,
    RateLimitInfo,
    /// Vigil-only (not in Tetragon's `EventType`): a policy over its CPU budget was demoted.
    PolicyDemoted,
}

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        EventKind::ProcessExec,
        EventKind::ProcessExit,
        EventKind::ProcessKprobe,
        EventKind::ProcessTracepoint,
        EventKind::ProcessUprobe,
        EventKind::ProcessLsm,
        EventKind::RateLimitInfo,
        EventKind::PolicyDemoted,
    ];

    /// The six kinds that describe something a process did (every kind but the loss marker and
    /// the policy demotion, which have no process).
    pub const PROCESS: [EventKind; 6] = [
        EventKind::ProcessExec,
        EventKind::ProcessExit,
        EventKind::ProcessKprobe,
        EventKind::ProcessTracepoint,
        EventKind::ProcessUprobe,
        EventKind::ProcessLsm,
    ];

    /// The enum name: `PROCESS_EXEC`, …
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ProcessExec => "PROCESS_EXEC",
            EventKind::ProcessExit => "PROCESS_EXIT",
            EventKind::ProcessKprobe => "PROCESS_KPROBE",
            EventKind::ProcessTracepoint => "PROCESS_TRACEPOINT",
            EventKind::ProcessUprobe => "PROCESS_UPROBE",
            EventKind::ProcessLsm => "PROCESS_LSM",
            EventKind::RateLimitInfo => "RATE_LIMIT_INFO",
            EventKind::PolicyDemoted => "VIGIL_POLICY_DEMOTED",
        }
    }

    /// The envelope field name: `process_exec`, …
    pub fn field_name(self) -> &'static str {
        match self {
            EventKind::ProcessExec => "process_exec",
            EventKind::ProcessExit => "process_exit",
            EventKind::ProcessKprobe => "process_kprobe",
            EventKind::ProcessTracepoint => "process_tracepoint",
            EventKind::ProcessUprobe => "process_uprobe",
            EventKind::ProcessLsm => "process_lsm",
            EventKind::RateLimitInfo => "rate_limit_info",
            EventKind::PolicyDemoted => "vigil_policy_demoted",
        }
    }

    /// The number shared by the `EventType` enum and the envelope's oneof.
    pub fn number(self) -> u32 {
        match self {
            EventKind::ProcessExec => 1,
            EventKind::ProcessExit => 5,
            EventKind::ProcessKprobe => 9,
            EventKind::ProcessTracepoint => 10,
            EventKind::ProcessUprobe => 12,
            EventKind::ProcessLsm => 28,
            EventKind::RateLimitInfo => 40001,
            EventKind::PolicyDemoted => 41000,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = EventError;

    /// Accepts `PROCESS_EXEC` and `process_exec` (any ASCII case).
    fn from_str(s: &str) -> Result<Self, EventError> {
        let t = s.trim();
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| EventError::UnknownEventKind(s.to_string()))
    }
}

/// Action taken by a hook, as an enum name (`KPROBE_ACTION_POST`, …).
///
/// The numeric value is the policy action code + 1; `Unknown` (0) is omitted from JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KprobeAction {
    #[default]
    #[serde(rename = "KPROBE_ACTION_UNKNOWN")]
    Unknown,
    #[serde(rename = "KPROBE_ACTION_POST")]
    Post,
    #[serde(rename = "KPROBE_ACTION_FOLLOWFD")]
    FollowFd,
    #[serde(rename = "KPROBE_ACTION_SIGKILL")]
    Sigkill,
    #[serde(rename = "KPROBE_ACTION_UNFOLLOWFD")]
    UnfollowFd,
    #[serde(rename = "KPROBE_ACTION_OVERRIDE")]
    Override,
    #[serde(rename = "KPROBE_ACTION_COPYFD")]
    CopyFd,
    #[serde(rename = "KPROBE_ACTION_GETURL")]
    GetUrl,
    #[serde(rename = "KPROBE_ACTION_DNSLOOKUP")]
    DnsLookup,
    #[serde(rename = "KPROBE_ACTION_NOPOST")]
    NoPost,
    #[serde(rename = "KPROBE_ACTION_SIGNAL")]
    Signal,
    #[serde(rename = "KPROBE_ACTION_TRACKSOCK")]
    TrackSock,
    #[serde(rename = "KPROBE_ACTION_UNTRACKSOCK")]
    UntrackSock,
    #[serde(rename = "KPROBE_ACTION_NOTIFYENFORCER")]
    NotifyEnforcer,
    #[serde(rename = "KPROBE_ACTION_CLEANUPENFORCERNOTIFICATION")]
    CleanupEnforcerNotification,
    #[serde(rename = "KPROBE_ACTION_SET")]
    Set,
}

impl KprobeAction {
    const BY_NUMBER: [KprobeAction; 16] = [
        KprobeAction::Unknown,
        KprobeAction::Post,
        KprobeAction::FollowFd,
        KprobeAction::Sigkill,
        KprobeAction::UnfollowFd,
        KprobeAction::Override,
        KprobeAction::CopyFd,
        KprobeAction::GetUrl,
        KprobeAction::DnsLookup,
        KprobeAction::NoPost,
        KprobeAction::Signal,
        KprobeAction::TrackSock,
        KprobeAction::UntrackSock,
        KprobeAction::NotifyEnforcer,
        KprobeAction::CleanupEnforcerNotification,
        KprobeAction::Set,
    ];

    /// The enum number (`KPROBE_ACTION_POST` = 1).
    pub fn number(self) -> u32 {
        Self::BY_NUMBER.iter().position(|a| *a == self).unwrap_or(0) as u32
    }

    /// From the enum number; `None` when out of range.
    pub fn from_number(n: u32) -> Option<Self> {
        Self::BY_NUMBER.get(n as usize).copied()
    }

    /// From a policy action code (the enum number minus one: post = 0, sigkill = 2, …).
    pub fn from_policy_code(code: u32) -> Option<Self> {
        Self::from_number(code.checked_add(1)?)
    }

    pub fn is_unknown(&self) -> bool {
        *self == KprobeAction::Unknown
    }
}

/// `process_exec`: a process called execve (or was found running at sensor start).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessExec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SharedProcess>,
    /// Ancestors beyond the parent, nearest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<SharedProcess>,
}

/// `process_exit`: the last thread of a process exited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessExit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SharedProcess>,
    /// Name of the terminating signal (`SIGKILL`), empty for a normal exit.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signal: String,
    /// Exit code for a normal exit.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub status: u32,
    /// When the process exited, RFC 3339 with nanoseconds.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub time: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<SharedProcess>,
}

/// `process_kprobe`: a kprobe (or its syscall-tracepoint fallback) from a policy fired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessKprobe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub function_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<KprobeArgument>,
    /// Return value, for hooks with `return: true`.
    #[serde(rename = "return", default, skip_serializing_if = "Option::is_none")]
    pub return_value: Option<KprobeArgument>,
    #[serde(default, skip_serializing_if = "KprobeAction::is_unknown")]
    pub action: KprobeAction,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_stack_trace: Vec<StackTraceEntry>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub policy_name: String,
    #[serde(default, skip_serializing_if = "KprobeAction::is_unknown")]
    pub return_action: KprobeAction,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_stack_trace: Vec<StackTraceEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<SharedProcess>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<KprobeArgument>,
}

/// `process_tracepoint`: a tracepoint from a policy fired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessTracepoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subsys: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<KprobeArgument>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub policy_name: String,
    #[serde(default, skip_serializing_if = "KprobeAction::is_unknown")]
    pub action: KprobeAction,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<SharedProcess>,
}

/// `process_uprobe`: a uprobe from a policy fired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessUprobe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SharedProcess>,
    /// Path of the probed binary or library.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub symbol: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub policy_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<KprobeArgument>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<SharedProcess>,
    /// Offset in the binary (instead of a symbol).
    #[serde(default, skip_serializing_if = "is_zero_u64", with = "u64_str")]
    pub offset: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64", with = "u64_str")]
    pub ref_ctr_offset: u64,
    #[serde(default, skip_serializing_if = "KprobeAction::is_unknown")]
    pub action: KprobeAction,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<KprobeArgument>,
}

/// `process_lsm`: an LSM hook from a policy fired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessLsm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SharedProcess>,
    /// LSM hook name without the `security_` prefix, e.g. `file_open`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub function_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub policy_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<KprobeArgument>,
    #[serde(default, skip_serializing_if = "KprobeAction::is_unknown")]
    pub action: KprobeAction,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<SharedProcess>,
    /// IMA hash as `algorithm:hex`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ima_hash: String,
}

/// One frame of a kernel or user stack trace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackTraceEntry {
    #[serde(default, skip_serializing_if = "is_zero_u64", with = "u64_str")]
    pub address: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64", with = "u64_str")]
    pub offset: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub symbol: String,
    /// Module path, for user-space frames.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub module: String,
}

/// `rate_limit_info`: how many events were lost at this point of the stream. Tetragon's message
/// has this one field; Vigil's attribution (stage, reason, kind, policy, time window) travels in
/// the envelope's `node_labels` (see [`super::Loss`]), so strict Tetragon parsers read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitInfo {
    #[serde(default, skip_serializing_if = "is_zero_u64", with = "u64_str")]
    pub number_of_dropped_process_events: u64,
}

/// `vigil_policy_demoted` (Vigil-only, not a Tetragon message): the sensor demoted a policy
/// whose hooks used more CPU than its `vigil.dev/cpu-budget` annotation allows, for a whole
/// window of the annotation. An enforcing policy in enforce mode is switched to monitor
/// ([`PolicyDemoted::MONITOR`]); any other policy is disabled ([`PolicyDemoted::DISABLED`]).
/// Only policies that declare the annotation are ever demoted, so Tetragon manifests and
/// pipelines never see this event.
///
/// `PartialEq` only (the percentages are `f64`). They are JSON numbers as protojson writes a
/// `double` (`1`, `3.2`); `window_seconds` is a 64-bit integer, so a JSON string.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDemoted {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub policy_name: String,
    /// Namespace of a TracingPolicyNamespaced; empty (and absent) for a TracingPolicy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub policy_namespace: String,
    /// What the policy was switched to: [`PolicyDemoted::MONITOR`] or
    /// [`PolicyDemoted::DISABLED`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action: String,
    /// Why, in words (for people).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// CPU the policy's hooks used over the window, in percent of one CPU.
    #[serde(default, skip_serializing_if = "is_zero_f64", with = "f64_json")]
    pub cpu_percent: f64,
    /// The budget, in percent of one CPU.
    #[serde(default, skip_serializing_if = "is_zero_f64", with = "f64_json")]
    pub budget_percent: f64,
    /// The window the budget is measured over.
    #[serde(default, skip_serializing_if = "is_zero_u64", with = "u64_str")]
    pub window_seconds: u64,
}

impl PolicyDemoted {
    /// `action` of an enforcing policy switched to monitor mode.
    pub const MONITOR: &'static str = "monitor";
    /// `action` of a policy that was disabled.
    pub const DISABLED: &'static str = "disabled";

    /// `namespace/name`, or the name alone for a cluster-wide policy.
    pub fn policy_ref(&self) -> String {
        if self.policy_namespace.is_empty() {
            self.policy_name.clone()
        } else {
            format!("{}/{}", self.policy_namespace, self.policy_name)
        }
    }
}

/// Set on aggregated responses only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregationInfo {
    #[serde(default, skip_serializing_if = "is_zero_u64", with = "u64_str")]
    pub count: u64,
}
