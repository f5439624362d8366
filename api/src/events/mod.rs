//! The event contract: Tetragon-compatible event JSON as Rust types.
//!
//! One event is one [`GetEventsResponse`] encoded as a JSON line with protojson rules and proto
//! (snake_case) field names: zero/empty values are omitted, wrapper-typed fields (`Option<u32>`,
//! `Option<bool>`) are written whenever set, 64-bit integers are JSON strings (read from a string
//! or a number), enums are names, timestamps are RFC 3339 with nanoseconds. Decoding is strict:
//! an unknown field anywhere is an error naming it.
//!
//! ```
//! use vigil_api::events::*;
//!
//! let process = Process {
//!     exec_id: exec_id("node1", 1_000, 42),
//!     pid: Some(42),
//!     uid: Some(0),
//!     binary: "/bin/true".into(),
//!     flags: (ProcessFlags::EXECVE | ProcessFlags::CLONE).to_string(),
//!     ..Default::default()
//! };
//! // Events share their processes (`SharedProcess`, an `Arc`): one copy per process.
//! let exec = ProcessExec { process: Some(process.into()), ..Default::default() };
//! let ev = GetEventsResponse::new(exec, "node1", format_time_ns(1_700_000_000_000_000_000));
//! assert_eq!(ev.kind(), Some(EventKind::ProcessExec));
//! let line = ev.to_json().unwrap();
//! assert_eq!(GetEventsResponse::from_json(&line).unwrap(), ev);
//! ```
//!
//! No I/O here; see `docs/events.md` for the field-by-field contract.

mod args;
mod codec;
mod event;
mod flags;
mod format;
mod loss;
pub mod names;
mod process;

pub use args::{
    ARGUMENT_FIELDS, ArgValue, KernelModule, KprobeArgument, KprobeBpfAttr, KprobeBpfMap,
    KprobeBpfProg, KprobeCapability, KprobeCred, KprobeError, KprobeFile, KprobeLinuxBinprm,
    KprobeNetDev, KprobePath, KprobePerfEvent, KprobeSkb, KprobeSock, KprobeSockaddr,
    KprobeTruncatedBytes, KprobeUserNamespace, SyscallId,
};
pub use event::{
    AggregationInfo, Event, EventKind, GetEventsResponse, KprobeAction, PolicyDemoted, ProcessExec,
    ProcessExit, ProcessKprobe, ProcessLsm, ProcessTracepoint, ProcessUprobe, RateLimitInfo,
    StackTraceEntry,
};
pub use flags::ProcessFlags;
pub use format::{
    ExecIdParts, SECUREBITS_NAMES, capability_bit, capability_event_name, capability_names,
    exec_id, format_arguments, format_time_ns, parse_exec_id, parse_time_ns, securebits_names,
    signal_name, signal_number,
};
pub use loss::{LOSS_LABEL_PREFIX, Loss, LossKind, LossReason, LossStage};
pub use process::{
    BinaryProperties, Capabilities, Container, EnvVar, FileProperties, Image, InodeProperties,
    Namespace, Namespaces, Pod, Process, ProcessCredentials, SecurityContext, SharedProcess,
    UserNamespace, UserRecord,
};

/// `auid` value meaning "no audit user set".
pub const AUID_UNSET: u32 = u32::MAX;

/// Errors of the event module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The JSON did not decode (syntax, type, unknown field, …); `line`/`column` are 1-based
    /// positions inside the decoded text (0 when unknown).
    #[error("{message} (at line {line} column {column})")]
    Decode {
        message: String,
        line: usize,
        column: usize,
    },
    /// The value could not be encoded.
    #[error("cannot encode event: {0}")]
    Encode(String),
    /// The envelope carries no event.
    #[error(
        "no event set: expected one of process_exec, process_exit, process_kprobe, process_tracepoint, process_uprobe, process_lsm, rate_limit_info, vigil_policy_demoted"
    )]
    NoEvent,
    /// The envelope carries more than one event.
    #[error("more than one event set: {0}")]
    SeveralEvents(String),
    /// An event type name that is not one of the eight kinds.
    #[error(
        "unknown event type `{0}`: expected one of process_exec, process_exit, process_kprobe, process_tracepoint, process_uprobe, process_lsm, rate_limit_info, vigil_policy_demoted"
    )]
    UnknownEventKind(String),
    /// A process flag name that is not in the fixed list.
    #[error("unknown process flag `{0}`")]
    UnknownFlag(String),
    /// A loss marker's attribution label holds a value outside its vocabulary.
    #[error("bad {label}: {message}")]
    BadLabel { label: String, message: String },
    /// An exec_id that is not base64 of `node:ktime:pid`.
    #[error("bad exec_id {id:?}: {reason}")]
    BadExecId { id: String, reason: String },
}
