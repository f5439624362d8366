//! The gRPC wire format: Tetragon-compatible protobuf messages (package `tetragon`, generated
//! from `api/proto/tetragon/`), the Vigil-only `vigil.sensor.v1` info service, and conversions
//! between the protobuf messages and the serde event model of [`crate::events`].
//!
//! The conversion goes through protojson: the serde model writes exactly Tetragon's JSON, and
//! the descriptor pool compiled into this crate reads that JSON into the protobuf message (and
//! back). A field the proto files do not know is an error, so the tests over the sample events
//! check that the proto files and the JSON model agree name for name.

#![allow(missing_docs)]

use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};

use crate::events::{EventKind, GetEventsResponse};

/// Messages and service code for package `tetragon` (client and server).
#[allow(clippy::all, clippy::pedantic, rust_2018_idioms)]
pub mod tetragon {
    include!(concat!(env!("OUT_DIR"), "/tetragon.rs"));
}

/// Vigil's packages, nested as their proto packages so that the generated cross-package paths
/// resolve: `vigil.sensor.v1` imports the `tetragon` messages (`super::super::super::tetragon`),
/// `vigil.policysync.v1` refers to `vigil.policy.v1` (`super::super::policy::v1`).
pub mod vigil {
    pub mod sensor {
        #[allow(clippy::all, clippy::pedantic, rust_2018_idioms)]
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/vigil.sensor.v1.rs"));
        }
    }
    pub mod policy {
        pub use crate::policy::ir as v1;
    }
    pub mod policysync {
        #[allow(clippy::all, clippy::pedantic, rust_2018_idioms)]
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/vigil.policysync.v1.rs"));
        }
    }
}

/// Vigil's own services: `vigil.sensor.v1.SensorInfo` (probed kernel features) and
/// `vigil.sensor.v1.Sensors` (the `tetragon.FineGuidanceSensors` RPCs under a Vigil name).
pub use vigil::sensor::v1 as sensor_info;

pub mod pod;

/// Vigil's `vigil.policysync.v1.PolicySync` service: operator → sensor policy distribution
/// (see `api/proto/vigil/policysync/v1/sync.proto`).
pub use vigil::policysync::v1 as policy_sync;

static DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vigil_descriptor.bin"));

/// Errors converting between the JSON model and the protobuf messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("descriptor for {0} missing from the compiled descriptor set")]
    Descriptor(&'static str),
    #[error("event JSON does not fit the protobuf schema: {0}")]
    ToProto(String),
    #[error("protobuf event cannot be rendered as an event line: {0}")]
    FromProto(String),
    #[error("bad field filter: {0}")]
    FieldFilter(String),
}

fn pool() -> Result<&'static DescriptorPool, WireError> {
    static POOL: OnceLock<Option<DescriptorPool>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTOR_SET).ok())
        .as_ref()
        .ok_or(WireError::Descriptor("the tetragon package"))
}

/// The descriptors of every message in `api/proto/` (Tetragon's package and Vigil's), for
/// reflection: strict protobuf-JSON decoding, field-path checks.
pub fn descriptor_pool() -> Result<&'static DescriptorPool, WireError> {
    pool()
}

fn response_descriptor() -> Result<MessageDescriptor, WireError> {
    pool()?
        .get_message_by_name("tetragon.GetEventsResponse")
        .ok_or(WireError::Descriptor("tetragon.GetEventsResponse"))
}

/// One event JSON line (Tetragon protojson) → the protobuf envelope.
pub fn json_to_proto(line: &str) -> Result<tetragon::GetEventsResponse, WireError> {
    let desc = response_descriptor()?;
    let mut de = serde_json::Deserializer::from_str(line);
    let msg = DynamicMessage::deserialize(desc, &mut de)
        .map_err(|e| WireError::ToProto(e.to_string()))?;
    de.end().map_err(|e| WireError::ToProto(e.to_string()))?;
    msg.transcode_to::<tetragon::GetEventsResponse>()
        .map_err(|e| WireError::ToProto(e.to_string()))
}

/// The serde event → the protobuf envelope.
pub fn to_proto(ev: &GetEventsResponse) -> Result<tetragon::GetEventsResponse, WireError> {
    let line = ev
        .to_json()
        .map_err(|e| WireError::ToProto(e.to_string()))?;
    json_to_proto(&line)
}

/// The protobuf envelope → one JSON line with Tetragon's protojson rules (proto field names,
/// defaults omitted, 64-bit integers as strings, enums as names).
pub fn proto_to_json(msg: &tetragon::GetEventsResponse) -> Result<String, WireError> {
    let desc = response_descriptor()?;
    let dynamic = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice())
        .map_err(|e| WireError::FromProto(e.to_string()))?;
    let opts = prost_reflect::SerializeOptions::new().use_proto_field_name(true);
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::new(&mut buf);
    dynamic
        .serialize_with_options(&mut ser, &opts)
        .map_err(|e| WireError::FromProto(e.to_string()))?;
    String::from_utf8(buf).map_err(|e| WireError::FromProto(e.to_string()))
}

/// The protobuf envelope → the serde event (a process event, a `rate_limit_info` marker or a
/// `vigil_policy_demoted` event).
pub fn from_proto(msg: &tetragon::GetEventsResponse) -> Result<GetEventsResponse, WireError> {
    let line = proto_to_json(msg)?;
    GetEventsResponse::from_json(&line).map_err(|e| WireError::FromProto(e.to_string()))
}

/// The drop count of a `rate_limit_info` envelope, `None` for any other envelope.
pub fn dropped_events(msg: &tetragon::GetEventsResponse) -> Option<u64> {
    match &msg.event {
        Some(tetragon::get_events_response::Event::RateLimitInfo(r)) => {
            Some(r.number_of_dropped_process_events)
        }
        _ => None,
    }
}

/// A `rate_limit_info` envelope reporting `dropped` events lost for this client.
pub fn rate_limit_info(
    dropped: u64,
    node_name: &str,
    time: Option<prost_types::Timestamp>,
) -> tetragon::GetEventsResponse {
    tetragon::GetEventsResponse {
        event: Some(tetragon::get_events_response::Event::RateLimitInfo(
            tetragon::RateLimitInfo {
                number_of_dropped_process_events: dropped,
            },
        )),
        node_name: node_name.to_string(),
        time,
        ..Default::default()
    }
}

/// The protobuf `EventType` number of an event kind (the same as its envelope field number).
pub fn event_type(kind: EventKind) -> i32 {
    kind.number() as i32
}

/// A field filter ready to apply: which event kinds it concerns, the field paths (relative to
/// the event message, e.g. `process.binary`, `parent`), and include or exclude.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldFilterSpec {
    /// Event kinds concerned; empty means all.
    pub kinds: Vec<EventKind>,
    /// Apply to the kinds *not* listed instead.
    pub invert: bool,
    pub paths: Vec<Vec<String>>,
    pub include: bool,
}

impl FieldFilterSpec {
    /// Checks a request's field filter: a valid action, known event types, and paths that name
    /// fields of every event message concerned.
    pub fn from_proto(f: &tetragon::FieldFilter) -> Result<Self, WireError> {
        let include = match tetragon::FieldFilterAction::try_from(f.action) {
            Ok(tetragon::FieldFilterAction::Include) => true,
            Ok(tetragon::FieldFilterAction::Exclude) => false,
            _ => {
                return Err(WireError::FieldFilter(
                    "action must be INCLUDE or EXCLUDE".into(),
                ));
            }
        };
        let mut kinds = Vec::new();
        for t in &f.event_set {
            let kind = EventKind::ALL
                .into_iter()
                .find(|k| k.number() as i32 == *t)
                .ok_or_else(|| WireError::FieldFilter(format!("unsupported event type {t}")))?;
            kinds.push(kind);
        }
        let paths: Vec<Vec<String>> = f
            .fields
            .as_ref()
            .map(|m| m.paths.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|p| p.split('.').map(str::to_string).collect())
            .collect();
        if paths.is_empty() {
            return Err(WireError::FieldFilter("no field paths given".into()));
        }
        let spec = FieldFilterSpec {
            kinds,
            invert: f.invert_event_set.unwrap_or(false),
            paths,
            include,
        };
        // Every path must name a field of at least one event message concerned.
        let pool = pool()?;
        for path in &spec.paths {
            let known = EventKind::ALL
                .into_iter()
                .filter(|k| spec.applies(*k))
                .any(|k| {
                    let name = format!("tetragon.{}", proto_message_name(k));
                    pool.get_message_by_name(&name)
                        .is_some_and(|d| path_exists(&d, path))
                });
            if !known {
                return Err(WireError::FieldFilter(format!(
                    "no event message has a field `{}`",
                    path.join(".")
                )));
            }
        }
        Ok(spec)
    }

    /// Whether the filter concerns events of `kind`.
    pub fn applies(&self, kind: EventKind) -> bool {
        let listed = self.kinds.is_empty() || self.kinds.contains(&kind);
        listed != self.invert
    }
}

fn proto_message_name(k: EventKind) -> &'static str {
    match k {
        EventKind::ProcessExec => "ProcessExec",
        EventKind::ProcessExit => "ProcessExit",
        EventKind::ProcessKprobe => "ProcessKprobe",
        EventKind::ProcessTracepoint => "ProcessTracepoint",
        EventKind::ProcessUprobe => "ProcessUprobe",
        EventKind::ProcessLsm => "ProcessLsm",
        EventKind::RateLimitInfo => "RateLimitInfo",
        EventKind::PolicyDemoted => "VigilPolicyDemoted",
    }
}

fn path_exists(desc: &MessageDescriptor, path: &[String]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return true;
    };
    let Some(field) = desc.get_field_by_name(first) else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    match field.kind() {
        prost_reflect::Kind::Message(m) if !field.is_list() && !field.is_map() => {
            path_exists(&m, rest)
        }
        _ => false,
    }
}

fn clear_path(msg: &mut DynamicMessage, path: &[String]) {
    match path {
        [] => {}
        [last] => msg.clear_field_by_name(last),
        [first, rest @ ..] => {
            if !msg.has_field_by_name(first) {
                return;
            }
            if let Some(Value::Message(sub)) = msg.get_field_by_name_mut(first) {
                clear_path(sub, rest);
            }
        }
    }
}

fn copy_path(src: &DynamicMessage, dst: &mut DynamicMessage, path: &[String]) {
    match path {
        [] => {}
        [last] => {
            if src.has_field_by_name(last)
                && let Some(v) = src.get_field_by_name(last)
            {
                dst.set_field_by_name(last, v.into_owned());
            }
        }
        [first, rest @ ..] => {
            if !src.has_field_by_name(first) {
                return;
            }
            let Some(v) = src.get_field_by_name(first) else {
                return;
            };
            let Value::Message(sub_src) = v.as_ref() else {
                return;
            };
            if let Some(Value::Message(sub_dst)) = dst.get_field_by_name_mut(first) {
                copy_path(sub_src, sub_dst, rest);
            }
        }
    }
}

/// Applies field filters, in order, to the event message inside `msg` (envelope fields such as
/// `node_name` and `time` are never removed). Include keeps only the listed paths; exclude
/// clears them.
pub fn apply_field_filters(
    msg: &tetragon::GetEventsResponse,
    kind: EventKind,
    filters: &[FieldFilterSpec],
) -> Result<tetragon::GetEventsResponse, WireError> {
    let active: Vec<&FieldFilterSpec> = filters.iter().filter(|f| f.applies(kind)).collect();
    if active.is_empty() {
        return Ok(msg.clone());
    }
    let desc = response_descriptor()?;
    let mut envelope = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice())
        .map_err(|e| WireError::FieldFilter(e.to_string()))?;
    let field = kind.field_name();
    let Some(Value::Message(event)) = envelope.get_field_by_name(field).map(|v| v.into_owned())
    else {
        return Ok(msg.clone());
    };
    let mut event = event;
    for f in active {
        if f.include {
            let mut kept = DynamicMessage::new(prost_reflect::ReflectMessage::descriptor(&event));
            for p in &f.paths {
                copy_path(&event, &mut kept, p);
            }
            event = kept;
        } else {
            for p in &f.paths {
                clear_path(&mut event, p);
            }
        }
    }
    envelope.set_field_by_name(field, Value::Message(event));
    envelope
        .transcode_to::<tetragon::GetEventsResponse>()
        .map_err(|e| WireError::FieldFilter(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../events/testdata/tetragon-sample-events.jsonl");

    fn samples() -> Vec<GetEventsResponse> {
        SAMPLE
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| GetEventsResponse::from_json(l).unwrap())
            .collect()
    }

    fn envelope_kind(msg: &tetragon::GetEventsResponse) -> Option<i32> {
        use tetragon::get_events_response::Event;
        Some(match msg.event.as_ref()? {
            Event::ProcessExec(_) => 1,
            Event::ProcessExit(_) => 5,
            Event::ProcessKprobe(_) => 9,
            Event::ProcessTracepoint(_) => 10,
            Event::ProcessUprobe(_) => 12,
            Event::ProcessLsm(_) => 28,
            Event::RateLimitInfo(_) => 40001,
            Event::VigilPolicyDemoted(_) => 41000,
        })
    }

    fn proc_of(msg: &tetragon::GetEventsResponse) -> Option<&tetragon::Process> {
        use tetragon::get_events_response::Event;
        match msg.event.as_ref()? {
            Event::ProcessExec(e) => e.process.as_ref(),
            Event::ProcessExit(e) => e.process.as_ref(),
            Event::ProcessKprobe(e) => e.process.as_ref(),
            Event::ProcessTracepoint(e) => e.process.as_ref(),
            Event::ProcessUprobe(e) => e.process.as_ref(),
            Event::ProcessLsm(e) => e.process.as_ref(),
            Event::RateLimitInfo(_) | Event::VigilPolicyDemoted(_) => None,
        }
    }

    #[test]
    fn every_sample_line_converts_and_key_fields_survive() {
        let events = samples();
        assert!(events.len() > 10);
        for ev in &events {
            let msg = to_proto(ev).unwrap();
            let kind = ev.kind().unwrap();
            assert_eq!(envelope_kind(&msg), Some(event_type(kind)), "{ev:?}");
            assert_eq!(msg.node_name, ev.node_name);
            assert!(msg.time.is_some());
            let (p, pp) = (ev.process().unwrap(), proc_of(&msg).unwrap());
            assert_eq!(pp.exec_id, p.exec_id);
            assert_eq!(pp.pid, p.pid);
            assert_eq!(pp.uid, p.uid);
            assert_eq!(pp.binary, p.binary);
            assert_eq!(pp.arguments, p.arguments);
            assert_eq!(pp.flags, p.flags);
            assert_eq!(pp.parent_exec_id, p.parent_exec_id);
            assert_eq!(pp.auid, p.auid);
            assert_eq!(pp.in_init_tree, p.in_init_tree);
        }
    }

    #[test]
    fn every_sample_line_round_trips() {
        for ev in samples() {
            let back = from_proto(&to_proto(&ev).unwrap()).unwrap();
            // Timestamps may come back with fewer fraction digits (protojson drops trailing
            // zeros in groups of three); compare them as instants.
            let norm = |e: &GetEventsResponse| {
                let mut v: serde_json::Value = serde_json::to_value(e).unwrap();
                normalize_times(&mut v);
                v
            };
            assert_eq!(norm(&back), norm(&ev));
        }
    }

    fn normalize_times(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if (k == "time" || k == "start_time")
                        && let Some(s) = x.as_str()
                        && let Ok(ts) = s.parse::<prost_types::Timestamp>()
                    {
                        *x = serde_json::json!([ts.seconds, ts.nanos]);
                    } else {
                        normalize_times(x);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(normalize_times),
            _ => {}
        }
    }

    #[test]
    fn wire_numbers_match_tetragon() {
        // process_exec = 1 with process (1) carrying binary (5): tag bytes 0x0a, 0x0a, 0x2a.
        let line = r#"{"process_exec":{"process":{"binary":"/x"}},"node_name":"n"}"#;
        let bytes = json_to_proto(line).unwrap().encode_to_vec();
        assert_eq!(&bytes[..3], &[0x0a, 0x06, 0x0a]);
        assert_eq!(bytes[4], 0x2a);
        // node_name = 1000: varint key (1000 << 3 | 2) = 0xc2 0x3e.
        assert!(bytes.windows(2).any(|w| w == [0xc2, 0x3e]));
    }

    #[test]
    fn policy_status_numbers_match_tetragon() {
        let st = tetragon::TracingPolicyStatus {
            state: tetragon::TracingPolicyState::TpStateDisabled as i32,
            mode: tetragon::TracingPolicyMode::TpModeMonitor as i32,
            ..Default::default()
        };
        // state = 9 (varint): key 0x48; mode = 11: key 0x58.
        assert_eq!(st.encode_to_vec(), vec![0x48, 2, 0x58, 2]);
        let req = tetragon::ConfigureTracingPolicyRequest {
            name: "p".into(),
            enable: Some(false),
            ..Default::default()
        };
        // name = 1, enable = 3 (explicit presence: sent even when false).
        assert_eq!(req.encode_to_vec(), vec![0x0a, 1, b'p', 0x18, 0]);
        // Vigil's detail at 1000: a key Tetragon clients skip as unknown.
        let with_vigil = tetragon::TracingPolicyStatus {
            vigil: Some(tetragon::VigilPolicyStatus {
                origin: "api".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(&with_vigil.encode_to_vec()[..2], &[0xc2, 0x3e]);
    }

    #[test]
    fn field_filters_include_and_exclude() {
        let ev = &samples()[1];
        let msg = to_proto(ev).unwrap();
        let spec = |paths: &[&str], include: bool| {
            FieldFilterSpec::from_proto(&tetragon::FieldFilter {
                event_set: vec![],
                fields: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|s| s.to_string()).collect(),
                }),
                action: if include { 1 } else { 2 },
                invert_event_set: None,
            })
            .unwrap()
        };
        let out = apply_field_filters(
            &msg,
            EventKind::ProcessExec,
            &[spec(&["parent", "process.arguments"], false)],
        )
        .unwrap();
        let back = from_proto(&out).unwrap();
        let exec = back.process_exec.unwrap();
        assert!(exec.parent.is_none());
        assert_eq!(exec.process.as_ref().unwrap().arguments, "");
        assert_eq!(exec.process.unwrap().binary, ev.process().unwrap().binary);
        assert_eq!(back.node_name, ev.node_name);

        let out = apply_field_filters(
            &msg,
            EventKind::ProcessExec,
            &[spec(&["process.binary", "process.pid"], true)],
        )
        .unwrap();
        let exec = from_proto(&out).unwrap().process_exec.unwrap();
        assert!(exec.parent.is_none());
        let p = exec.process.unwrap();
        assert_eq!(p.binary, ev.process().unwrap().binary);
        assert_eq!(p.pid, ev.process().unwrap().pid);
        assert!(p.exec_id.is_empty() && p.flags.is_empty());
    }

    #[test]
    fn field_filter_rejects_unknown_paths_and_actions() {
        let bad_path = tetragon::FieldFilter {
            fields: Some(prost_types::FieldMask {
                paths: vec!["process.nope".into()],
            }),
            action: 1,
            ..Default::default()
        };
        assert!(FieldFilterSpec::from_proto(&bad_path).is_err());
        let bad_action = tetragon::FieldFilter {
            fields: Some(prost_types::FieldMask {
                paths: vec!["process".into()],
            }),
            action: 0,
            ..Default::default()
        };
        assert!(FieldFilterSpec::from_proto(&bad_action).is_err());
    }

    #[test]
    fn rate_limit_info_is_recognised() {
        let m = rate_limit_info(7, "n", None);
        assert_eq!(dropped_events(&m), Some(7));
        assert!(proto_to_json(&m).unwrap().contains("\"rate_limit_info\""));
        let ev = from_proto(&m).unwrap();
        assert_eq!(ev.kind(), Some(EventKind::RateLimitInfo));
        assert_eq!(
            ev.rate_limit_info.unwrap().number_of_dropped_process_events,
            7
        );
    }

    fn demoted() -> GetEventsResponse {
        GetEventsResponse::policy_demoted(
            "n",
            1_700_000_000_123_456_789,
            crate::events::PolicyDemoted {
                policy_name: "p".into(),
                policy_namespace: "team-a".into(),
                action: crate::events::PolicyDemoted::MONITOR.into(),
                reason: "3.2% of a CPU over 10s, budget 1%".into(),
                cpu_percent: 3.2,
                budget_percent: 1.0,
                window_seconds: 10,
            },
        )
    }

    #[test]
    fn policy_demoted_round_trips_through_protobuf() {
        let ev = demoted();
        let msg = to_proto(&ev).unwrap();
        assert_eq!(envelope_kind(&msg), Some(41000));
        assert_eq!(event_type(EventKind::PolicyDemoted), 41000);
        let Some(tetragon::get_events_response::Event::VigilPolicyDemoted(d)) = &msg.event else {
            panic!("{msg:?}");
        };
        assert_eq!(
            (
                d.policy_name.as_str(),
                d.policy_namespace.as_str(),
                d.action.as_str()
            ),
            ("p", "team-a", "monitor")
        );
        assert_eq!(
            (d.cpu_percent, d.budget_percent, d.window_seconds),
            (3.2, 1.0, 10)
        );
        // Field numbers: vigil_policy_demoted = 41000 is key (41000 << 3 | 2), a 3-byte varint.
        assert_eq!(&msg.encode_to_vec()[..3], &[0xc2, 0x82, 0x14]);
        // JSON → protobuf → JSON gives the same event back.
        let back = from_proto(&msg).unwrap();
        assert_eq!(back, ev);
        let text = proto_to_json(&msg).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["vigil_policy_demoted"]["window_seconds"], "10");
        assert_eq!(v["vigil_policy_demoted"]["cpu_percent"], 3.2);
        assert_eq!(dropped_events(&msg), None);
        assert!(proc_of(&msg).is_none());
    }

    #[test]
    fn policy_demoted_non_finite_percentages_survive_the_wire() {
        let mut ev = demoted();
        let d = ev.vigil_policy_demoted.as_mut().unwrap();
        d.cpu_percent = f64::INFINITY;
        d.budget_percent = f64::NAN;
        let line = ev.to_json().unwrap();
        assert!(
            line.contains(r#""cpu_percent":"Infinity","budget_percent":"NaN""#),
            "{line}"
        );
        let back = from_proto(&json_to_proto(&line).unwrap()).unwrap();
        let b = back.vigil_policy_demoted.unwrap();
        assert_eq!(b.cpu_percent, f64::INFINITY);
        assert!(b.budget_percent.is_nan());
    }

    #[test]
    fn field_filters_know_the_policy_demoted_message() {
        let f = FieldFilterSpec::from_proto(&tetragon::FieldFilter {
            event_set: vec![41000],
            fields: Some(prost_types::FieldMask {
                paths: vec!["reason".into()],
            }),
            action: 2,
            invert_event_set: None,
        })
        .unwrap();
        assert_eq!(f.kinds, vec![EventKind::PolicyDemoted]);
        let msg = to_proto(&demoted()).unwrap();
        let out = apply_field_filters(&msg, EventKind::PolicyDemoted, &[f]).unwrap();
        let d = from_proto(&out).unwrap().vigil_policy_demoted.unwrap();
        assert!(d.reason.is_empty());
        assert_eq!(d.policy_name, "p");
    }
}
