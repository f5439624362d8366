//! Recorded events for `vigil policy test` and `vigil observe`: a newer Tetragon or Vigil may
//! write fields this version does not know. Such a field cannot change a verdict (the
//! evaluator reads only fields it knows), so it is dropped and reported by its path instead of
//! making the whole line malformed. Anything else that does not decode (bad JSON, a known field
//! of the wrong type, no event) stays an error.

use serde_json::Value;
use serde_path_to_error::Segment;
use vigil_api::events::{EventError, GetEventsResponse};

/// At most this many unknown fields are dropped from one line before it counts as malformed.
const MAX_DROPPED: usize = 64;

/// One step from a JSON value to a field inside it.
enum Step {
    Key(String),
    Index(usize),
}

/// The event of `line` and the paths of the unknown fields dropped from it
/// (`process_exec.process.brand_new`; list positions as `[]`).
pub fn decode(line: &str) -> Result<(GetEventsResponse, Vec<String>), EventError> {
    let strict = match GetEventsResponse::from_json(line) {
        Ok(ev) => return Ok((ev, Vec::new())),
        Err(e) => e,
    };
    let Ok(mut value) = serde_json::from_str::<Value>(line) else {
        return Err(strict);
    };
    let mut dropped = Vec::new();
    while dropped.len() < MAX_DROPPED {
        let err = match serde_path_to_error::deserialize::<_, GetEventsResponse>(&value) {
            Ok(ev) => return Ok((ev, dropped)),
            Err(e) => e,
        };
        if !err.inner().to_string().starts_with("unknown field") {
            break;
        }
        let mut steps = Vec::new();
        for seg in err.path().iter() {
            match seg {
                Segment::Map { key } => steps.push(Step::Key(key.clone())),
                Segment::Seq { index } => steps.push(Step::Index(*index)),
                // An externally tagged enum is an object keyed by the variant's name.
                Segment::Enum { variant } => steps.push(Step::Key(variant.clone())),
                _ => return Err(strict),
            }
        }
        let Some(Step::Key(field)) = steps.pop() else {
            break;
        };
        let Some(Value::Object(parent)) = locate(&mut value, &steps) else {
            break;
        };
        if parent.remove(&field).is_none() {
            break;
        }
        dropped.push(shown(&steps, &field));
    }
    Err(strict)
}

fn locate<'a>(mut v: &'a mut Value, steps: &[Step]) -> Option<&'a mut Value> {
    for s in steps {
        v = match s {
            Step::Key(k) => v.get_mut(k.as_str())?,
            Step::Index(i) => v.get_mut(*i)?,
        };
    }
    Some(v)
}

fn shown(steps: &[Step], field: &str) -> String {
    let mut out = String::new();
    for s in steps {
        match s {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(_) => out.push_str("[]"),
        }
    }
    if !out.is_empty() {
        out.push('.');
    }
    out.push_str(field);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &str =
        include_str!("../../api/src/events/testdata/tetragon-sample-events.jsonl");

    fn first(kind: &str) -> Value {
        let line = SAMPLES
            .lines()
            .find(|l| l.starts_with(&format!("{{\"{kind}\"")))
            .unwrap_or_else(|| panic!("no {kind} sample"));
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn unknown_fields_anywhere_are_dropped_and_named() {
        let exec = first("process_exec");
        let mut newer = exec.clone();
        newer["brand_new_top"] = serde_json::json!(1);
        newer["process_exec"]["process"]["brand_new"] = serde_json::json!({"x": [1, 2]});
        newer["process_exec"]["parent"]["also_new"] = serde_json::json!("y");
        let (ev, dropped) = decode(&newer.to_string()).unwrap();
        let (want, none) = decode(&exec.to_string()).unwrap();
        assert_eq!(ev, want);
        assert!(none.is_empty());
        let mut dropped = dropped;
        dropped.sort();
        assert_eq!(
            dropped,
            [
                "brand_new_top",
                "process_exec.parent.also_new",
                "process_exec.process.brand_new"
            ]
        );
    }

    #[test]
    fn fields_inside_lists_are_named_without_their_position() {
        let kprobe = first("process_kprobe");
        assert!(kprobe["process_kprobe"]["args"].is_array(), "{kprobe}");
        let mut newer = kprobe.clone();
        newer["process_kprobe"]["args"][0]["file_arg"]["new_arg_field"] = serde_json::json!(true);
        let (ev, dropped) = decode(&newer.to_string()).unwrap();
        assert_eq!(ev, decode(&kprobe.to_string()).unwrap().0);
        assert_eq!(dropped, ["process_kprobe.args[].file_arg.new_arg_field"]);
    }

    #[test]
    fn what_is_not_an_unknown_field_stays_an_error() {
        // Not JSON, a known field of the wrong type, no event at all.
        let mut wrong_type = first("process_exec");
        wrong_type["process_exec"]["process"]["pid"] = serde_json::json!("many");
        for line in [
            "not json".to_string(),
            wrong_type.to_string(),
            r#"{"node_name":"n"}"#.to_string(),
        ] {
            let strict = GetEventsResponse::from_json(&line).unwrap_err();
            let lenient = decode(&line).unwrap_err();
            assert_eq!(lenient.to_string(), strict.to_string(), "{line}");
        }
    }
}
