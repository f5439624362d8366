//! Loss markers must parse with Tetragon's own definitions under strict protobuf-JSON rules
//! (unknown keys are errors), and carry Vigil's attribution through that parse.
//!
//! The strict parser is prost-reflect's `DynamicMessage::deserialize` over the descriptors
//! compiled from `api/proto/tetragon/`; it rejects unknown fields like Go's `protojson.Unmarshal`
//! without `DiscardUnknown`. The first test pins the parts of those definitions the markers rely
//! on to Tetragon's (so that nobody can make the markers pass by adding fields to the proto).

use prost::Message;
use prost_reflect::{DynamicMessage, Kind};
use vigil_api::events::*;
use vigil_api::wire::{self, tetragon};

fn strict_parse(line: &str) -> Result<DynamicMessage, String> {
    let desc = wire::descriptor_pool()
        .unwrap()
        .get_message_by_name("tetragon.GetEventsResponse")
        .unwrap();
    let mut de = serde_json::Deserializer::from_str(line);
    let msg = DynamicMessage::deserialize(desc, &mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(msg)
}

fn every_marker() -> Vec<Loss> {
    let mut out = Vec::new();
    for stage in LossStage::ALL {
        for reason in LossReason::ALL {
            for kind in LossKind::ALL {
                out.push(Loss {
                    count: 1 + out.len() as u64 * 1_000_003,
                    stage: Some(*stage),
                    reason: Some(*reason),
                    kind: Some(*kind),
                    policy: if *kind == LossKind::Hook {
                        "ns-1/policy.with-dots".into()
                    } else {
                        String::new()
                    },
                    from: format_time_ns(1_800_000_000_000_000_001),
                    to: format_time_ns(1_800_000_000_500_000_002),
                });
            }
        }
    }
    out.push(Loss {
        count: u64::MAX,
        ..Default::default()
    });
    out
}

#[test]
fn the_definitions_are_tetragons() {
    let pool = wire::descriptor_pool().unwrap();
    let info = pool.get_message_by_name("tetragon.RateLimitInfo").unwrap();
    let fields: Vec<(String, u32)> = info
        .fields()
        .map(|f| (f.name().to_string(), f.number()))
        .collect();
    assert_eq!(
        fields,
        vec![("number_of_dropped_process_events".to_string(), 1)],
        "Tetragon's RateLimitInfo has exactly this one field"
    );
    let envelope = pool
        .get_message_by_name("tetragon.GetEventsResponse")
        .unwrap();
    let oneof = envelope.get_field_by_name("rate_limit_info").unwrap();
    assert_eq!(oneof.number(), 40001);
    let outside: Vec<(String, u32)> = envelope
        .fields()
        .filter(|f| f.containing_oneof().is_none())
        .map(|f| (f.name().to_string(), f.number()))
        .collect();
    assert_eq!(
        outside,
        [
            ("node_name", 1000),
            ("time", 1001),
            ("aggregation_info", 1002),
            ("cluster_name", 1003),
            ("node_labels", 1004)
        ]
        .map(|(n, k)| (n.to_string(), k))
        .to_vec()
    );
    let labels = envelope.get_field_by_name("node_labels").unwrap();
    assert!(labels.is_map());
    let Kind::Message(entry) = labels.kind() else {
        panic!("map entry")
    };
    for f in entry.fields() {
        assert_eq!(f.kind(), Kind::String, "map<string, string>");
    }
}

#[test]
fn strict_parsers_accept_every_marker_and_keep_its_attribution() {
    for loss in every_marker() {
        let ev = loss.to_event("node-a", &format_time_ns(1_800_000_001_000_000_007));
        let line = ev.to_json().unwrap();
        let msg = strict_parse(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        // The binary form, read by Tetragon's generated message, says the same.
        let bytes = msg.encode_to_vec();
        let typed = tetragon::GetEventsResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!(wire::dropped_events(&typed), Some(loss.count), "{line}");
        let back = wire::from_proto(&typed).unwrap();
        assert_eq!(
            Loss::from_event(&back).unwrap(),
            Some(loss.clone()),
            "{line}"
        );
        assert_eq!(back, ev);
    }
}

#[test]
fn the_strict_parser_really_is_strict() {
    // A Vigil-only key inside rate_limit_info, or next to it, would break Tetragon consumers.
    for line in [
        r#"{"rate_limit_info":{"number_of_dropped_process_events":"3","policy":"p"},"node_name":"n"}"#,
        r#"{"rate_limit_info":{"number_of_dropped_process_events":"3"},"loss":{"policy":"p"}}"#,
        r#"{"rate_limit_info":{"number_of_dropped_process_events":"3"},"node_labels":{"a":1}}"#,
    ] {
        assert!(strict_parse(line).is_err(), "accepted: {line}");
        assert!(
            GetEventsResponse::from_json(line).is_err(),
            "accepted: {line}"
        );
    }
    let ok = r#"{"rate_limit_info":{"number_of_dropped_process_events":"3"},"node_labels":{"vigil.dev/loss-kind":"exec"}}"#;
    assert!(strict_parse(ok).is_ok());
}

#[test]
fn markers_are_events_of_their_own_kind() {
    let ev = Loss {
        count: 9,
        kind: Some(LossKind::Exit),
        ..Default::default()
    }
    .to_event("n", "2026-01-01T00:00:00Z");
    assert_eq!(ev.kind(), Some(EventKind::RateLimitInfo));
    assert_eq!(EventKind::RateLimitInfo.number(), 40001);
    assert_eq!(
        "RATE_LIMIT_INFO".parse::<EventKind>().unwrap(),
        EventKind::RateLimitInfo
    );
    assert!(ev.process().is_none());
    let mut two = ev.clone();
    two.process_exit = Some(Box::default());
    assert!(two.check_one_event().is_err());
}
