//! Loss markers: `rate_limit_info` envelopes that say, at the point of the stream where events
//! went missing, how many were lost, and Vigil's attribution of them.
//!
//! Tetragon's `RateLimitInfo` message has a single field, `number_of_dropped_process_events`,
//! and a strict protobuf-JSON parser rejects any key its message does not define. The one place
//! of the envelope that takes arbitrary keys is `node_labels` (a `map<string, string>`), so the
//! attribution travels there, under keys prefixed with [`LOSS_LABEL_PREFIX`]:
//!
//! | Key | Value |
//! |---|---|
//! | `vigil.dev/loss-stage` | where the events were lost: [`LossStage`] |
//! | `vigil.dev/loss-reason` | why: [`LossReason`] |
//! | `vigil.dev/loss-kind` | what was lost: [`LossKind`] |
//! | `vigil.dev/loss-policy` | the policy of lost hook events, when known |
//! | `vigil.dev/loss-from`, `vigil.dev/loss-to` | the time window the loss happened in (RFC 3339) |
//!
//! A marker without these keys (Tetragon's own, or a per-client report of an older Vigil)
//! decodes as a [`Loss`] with no attribution.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::EventError;
use super::event::{GetEventsResponse, RateLimitInfo};

/// Prefix of the `node_labels` keys that carry a loss marker's attribution.
pub const LOSS_LABEL_PREFIX: &str = "vigil.dev/loss-";

const STAGE: &str = "vigil.dev/loss-stage";
const REASON: &str = "vigil.dev/loss-reason";
const KIND: &str = "vigil.dev/loss-kind";
const POLICY: &str = "vigil.dev/loss-policy";
const FROM: &str = "vigil.dev/loss-from";
const TO: &str = "vigil.dev/loss-to";

macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $( $(#[$vdoc:meta])* $variant:ident = $text:literal, )* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vdoc])* $variant, )*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| {
                        let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                        format!("{s:?} is not one of {}", names.join(", "))
                    })
            }
        }
    };
}

vocabulary! {
    /// Where on the way from the kernel to the reader events were lost.
    LossStage {
        /// The BPF ring buffer was full: the kernel could not write the record.
        Kernel = "kernel",
        /// The sensor read the record but could not turn it into an event.
        Decode = "decode",
        /// The exporters (JSON file, stdout) could not take or write the event.
        Export = "export",
        /// One gRPC `GetEvents` client: its queue was full.
        Client = "client",
    }
}

vocabulary! {
    /// Why events were lost.
    LossReason {
        /// The ring buffer had no room for the record (stage `kernel`).
        RingBufferFull = "ring_buffer_full",
        /// The record was malformed (stage `decode`).
        DecodeError = "decode_error",
        /// The record's hook was unloaded before the record was read (stage `decode`).
        HookUnloaded = "hook_unloaded",
        /// The event could not be serialized (stage `decode`).
        EncodeError = "encode_error",
        /// The export queue was full: the writer fell behind (stage `export`).
        QueueFull = "queue_full",
        /// Writing the export file failed, e.g. the disk was full (stage `export`).
        WriteFailed = "write_failed",
        /// The export file was deleted by another program after these lines were written to it
        /// (stage `export`).
        FileDeleted = "file_deleted",
        /// The client's queue was full: it read too slowly (stage `client`).
        ClientQueueFull = "client_queue_full",
    }
}

vocabulary! {
    /// What was lost.
    LossKind {
        /// Exec records / `process_exec` events.
        Exec = "exec",
        /// Records of new processes (fork/clone); they have no event of their own, but the
        /// process cache misses the process.
        Fork = "fork",
        /// Exit records / `process_exit` events.
        Exit = "exit",
        /// Hook records / events of a tracing policy (`process_kprobe`, `process_tracepoint`,
        /// `process_uprobe`, `process_lsm`).
        Hook = "hook",
        /// A record whose kind could not be read, or an event that is none of the above (a
        /// Vigil-only `vigil_policy_demoted`).
        Record = "record",
    }
}

/// One loss marker, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loss {
    /// How many events were lost (`number_of_dropped_process_events`).
    pub count: u64,
    /// `None` on a marker without Vigil's attribution.
    pub stage: Option<LossStage>,
    pub reason: Option<LossReason>,
    pub kind: Option<LossKind>,
    /// The policy of lost hook events (`namespace/name` for namespaced policies); empty when
    /// not known or not a hook loss.
    pub policy: String,
    /// The window the loss happened in, RFC 3339 (empty when unknown).
    pub from: String,
    pub to: String,
}

impl Loss {
    /// The marker envelope for this loss.
    pub fn to_event(&self, node_name: &str, time: &str) -> GetEventsResponse {
        let mut labels = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            if !v.is_empty() {
                labels.insert(k.to_string(), v.to_string());
            }
        };
        put(STAGE, self.stage.map(LossStage::as_str).unwrap_or(""));
        put(REASON, self.reason.map(LossReason::as_str).unwrap_or(""));
        put(KIND, self.kind.map(LossKind::as_str).unwrap_or(""));
        put(POLICY, &self.policy);
        put(FROM, &self.from);
        put(TO, &self.to);
        let mut ev = GetEventsResponse::new(
            RateLimitInfo {
                number_of_dropped_process_events: self.count,
            },
            node_name,
            time,
        );
        ev.node_labels = labels;
        ev
    }

    /// The loss a `rate_limit_info` envelope reports; `Ok(None)` for any other event. An
    /// attribution label with a value outside the vocabulary is an error naming the label.
    pub fn from_event(ev: &GetEventsResponse) -> Result<Option<Loss>, EventError> {
        let Some(info) = &ev.rate_limit_info else {
            return Ok(None);
        };
        fn parse<T: FromStr<Err = String>>(
            labels: &BTreeMap<String, String>,
            key: &str,
        ) -> Result<Option<T>, EventError> {
            labels
                .get(key)
                .map(|v| {
                    v.parse().map_err(|message| EventError::BadLabel {
                        label: key.to_string(),
                        message,
                    })
                })
                .transpose()
        }
        let l = &ev.node_labels;
        let text = |k: &str| l.get(k).cloned().unwrap_or_default();
        Ok(Some(Loss {
            count: info.number_of_dropped_process_events,
            stage: parse(l, STAGE)?,
            reason: parse(l, REASON)?,
            kind: parse(l, KIND)?,
            policy: text(POLICY),
            from: text(FROM),
            to: text(TO),
        }))
    }
}

impl fmt::Display for Loss {
    /// `512 hook events of policy p (kernel: ring_buffer_full) between A and B`, as far as the
    /// marker tells.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.count)?;
        match self.kind {
            Some(k) => write!(f, " {k} events")?,
            None => f.write_str(" events")?,
        }
        if !self.policy.is_empty() {
            write!(f, " of policy {}", self.policy)?;
        }
        match (self.stage, self.reason) {
            (Some(s), Some(r)) => write!(f, " ({s}: {r})")?,
            (Some(s), None) => write!(f, " ({s})")?,
            (None, Some(r)) => write!(f, " ({r})")?,
            (None, None) => {}
        }
        if !self.from.is_empty() && !self.to.is_empty() {
            write!(f, " between {} and {}", self.from, self.to)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Loss {
        Loss {
            count: 512,
            stage: Some(LossStage::Kernel),
            reason: Some(LossReason::RingBufferFull),
            kind: Some(LossKind::Hook),
            policy: "file-open".into(),
            from: "2026-01-01T00:00:00.000000001Z".into(),
            to: "2026-01-01T00:00:01.000000002Z".into(),
        }
    }

    #[test]
    fn marker_round_trips_through_json() {
        let ev = sample().to_event("n1", "2026-01-01T00:00:01.000000003Z");
        let line = ev.to_json().unwrap();
        assert!(
            line.starts_with(
                r#"{"rate_limit_info":{"number_of_dropped_process_events":"512"},"node_name":"n1""#
            ),
            "{line}"
        );
        assert!(
            line.contains(r#""vigil.dev/loss-policy":"file-open""#),
            "{line}"
        );
        let back = GetEventsResponse::from_json(&line).unwrap();
        assert_eq!(Loss::from_event(&back).unwrap(), Some(sample()));
        assert_eq!(
            sample().to_string(),
            "512 hook events of policy file-open (kernel: ring_buffer_full) between \
             2026-01-01T00:00:00.000000001Z and 2026-01-01T00:00:01.000000002Z"
        );
    }

    #[test]
    fn unattributed_and_bad_markers() {
        let line =
            r#"{"rate_limit_info":{"number_of_dropped_process_events":"7"},"node_name":"t"}"#;
        let ev = GetEventsResponse::from_json(line).unwrap();
        let loss = Loss::from_event(&ev).unwrap().unwrap();
        assert_eq!((loss.count, loss.stage, loss.kind), (7, None, None));
        assert_eq!(loss.to_string(), "7 events");
        let mut bad = ev.clone();
        bad.node_labels
            .insert("vigil.dev/loss-stage".into(), "orbit".into());
        let err = Loss::from_event(&bad).unwrap_err().to_string();
        assert!(
            err.contains("vigil.dev/loss-stage") && err.contains("kernel"),
            "{err}"
        );
        let exec = GetEventsResponse::new(
            super::super::ProcessExec::default(),
            "n",
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(Loss::from_event(&exec).unwrap(), None);
    }

    #[test]
    fn vocabularies_parse_their_own_names() {
        for s in LossStage::ALL {
            assert_eq!(s.as_str().parse::<LossStage>(), Ok(*s));
        }
        for r in LossReason::ALL {
            assert_eq!(r.as_str().parse::<LossReason>(), Ok(*r));
        }
        for k in LossKind::ALL {
            assert_eq!(k.as_str().parse::<LossKind>(), Ok(*k));
        }
    }
}
