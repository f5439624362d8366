//! JSON lines of events, with the JSON of recurring processes reused.
//!
//! A hook event carries its process and that process's parent, most of its line, and the same
//! process fires its hooks again and again. The encoder keeps the JSON of the processes it wrote
//! last and reuses it when the event's process is the one it was made from (the same shared
//! process of the process cache, checked by pointer) or equal to it field for field: the line
//! is the same text as [`GetEventsResponse::to_json`], written with the processes' JSON copied
//! in rather than encoded again.

use std::collections::HashMap;
use std::sync::Arc;

use vigil_api::events::{EventError, EventKind, GetEventsResponse, Process};

/// Processes whose JSON is kept; past this the memo starts over.
pub const MEMO_PROCESSES: usize = 512;
/// JSON variants kept per process (they differ by `tid`, or by pod once it is known).
const VARIANTS: usize = 4;
/// Bytes the memo may hold (processes and their JSON, estimated as twice the JSON); past this it
/// starts over. ~1.5 KiB per process and variant typically, so the count binds first.
pub const MEMO_BYTES: usize = 4 << 20;

/// What one kept process is counted for in [`MEMO_BYTES`].
fn weight(json: &str) -> usize {
    2 * json.len() + 256
}

/// Encodes events as JSON lines; keep one per pipeline.
#[derive(Debug, Default)]
pub struct LineEncoder {
    /// By exec_id: the processes last written and their JSON.
    memo: HashMap<String, Vec<(Arc<Process>, String)>>,
    /// Length of the last line: the next one starts with this much room (plus a margin).
    hint: usize,
    /// What the memo holds, by [`weight`].
    bytes: usize,
}

impl LineEncoder {
    /// The event as one JSON line (no trailing newline), as [`GetEventsResponse::to_json`]
    /// writes it. `ev` is taken apart and put back together on the way.
    pub fn encode(&mut self, ev: &mut GetEventsResponse) -> Result<String, EventError> {
        let line = self.encode_inner(ev)?;
        self.hint = line.len();
        Ok(line)
    }

    fn encode_inner(&mut self, ev: &mut GetEventsResponse) -> Result<String, EventError> {
        let capacity = self.hint + 128;
        // The hook events: `process` and `parent` are the first fields of their event, and
        // their event is the envelope's first field (every field before it is unset).
        let prefix = match ev.kind() {
            Some(EventKind::ProcessKprobe) => "{\"process_kprobe\":{",
            Some(EventKind::ProcessTracepoint) => "{\"process_tracepoint\":{",
            Some(EventKind::ProcessUprobe) => "{\"process_uprobe\":{",
            Some(EventKind::ProcessLsm) => "{\"process_lsm\":{",
            _ => return ev.to_json_sized(capacity),
        };
        let Some((process, parent, _)) = ev.processes_mut() else {
            return ev.to_json_sized(capacity);
        };
        let (process, parent) = (process.take(), parent.take());
        let line = self.splice(ev, prefix, capacity, process.as_ref(), parent.as_ref());
        if let Some((p, q, _)) = ev.processes_mut() {
            *p = process;
            *q = parent;
        }
        match line? {
            Some(line) => Ok(line),
            None => ev.to_json_sized(capacity),
        }
    }

    /// The line of `ev` (whose `process` and `parent` were taken out: they are given apart),
    /// or `None` when its JSON does not start with `prefix`.
    fn splice(
        &mut self,
        ev: &GetEventsResponse,
        prefix: &str,
        capacity: usize,
        process: Option<&Arc<Process>>,
        parent: Option<&Arc<Process>>,
    ) -> Result<Option<String>, EventError> {
        let rest = ev.to_json_sized(capacity)?;
        let Some(tail) = rest.strip_prefix(prefix) else {
            return Ok(None);
        };
        let mut out = String::with_capacity(capacity.max(rest.len() + 64));
        out.push_str(prefix);
        let mut fields = 0;
        for (name, p) in [("\"process\":", process), ("\"parent\":", parent)] {
            if let Some(p) = p {
                if fields > 0 {
                    out.push(',');
                }
                out.push_str(name);
                self.write_process(p, &mut out)?;
                fields += 1;
            }
        }
        if fields > 0 && !tail.starts_with('}') {
            out.push(',');
        }
        out.push_str(tail);
        Ok(Some(out))
    }

    /// Appends the JSON of `p`: from the memo when it holds `p`, else encoded now (and kept).
    fn write_process(&mut self, p: &Arc<Process>, out: &mut String) -> Result<(), EventError> {
        // Events of the same process share it with the process cache: the pointer is checked
        // first, and only a process made apart (another thread, a pod filled in) is compared
        // field by field.
        if let Some((_, json)) = self.memo.get(&p.exec_id).and_then(|v| {
            v.iter()
                .find(|(q, _)| Arc::ptr_eq(q, p))
                .or_else(|| v.iter().find(|(q, _)| q == p))
        }) {
            out.push_str(json);
            return Ok(());
        }
        let json =
            serde_json::to_string(p.as_ref()).map_err(|e| EventError::Encode(e.to_string()))?;
        out.push_str(&json);
        let w = weight(&json);
        if w > MEMO_BYTES {
            return Ok(());
        }
        if (!self.memo.contains_key(&p.exec_id) && self.memo.len() >= MEMO_PROCESSES)
            || self.bytes + w > MEMO_BYTES
        {
            self.memo.clear();
            self.bytes = 0;
        }
        let v = self.memo.entry(p.exec_id.clone()).or_default();
        if v.len() >= VARIANTS {
            let (_, old) = v.remove(0);
            self.bytes -= weight(&old);
        }
        v.push((p.clone(), json));
        self.bytes += w;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_api::events::{
        ArgValue, KprobeArgument, ProcessExec, ProcessKprobe, ProcessLsm, ProcessTracepoint,
        ProcessUprobe,
    };

    fn process(pid: u32, tid: u32) -> Process {
        Process {
            exec_id: format!("id-{pid}"),
            pid: Some(pid),
            tid: Some(tid),
            binary: "/bin/x \"quoted\"\n".into(),
            arguments: "-c \u{e9}\u{1}".into(),
            flags: "execve".into(),
            ..Default::default()
        }
    }

    fn kprobe(p: Option<Process>, q: Option<Process>, full: bool) -> GetEventsResponse {
        let k = ProcessKprobe {
            process: p.map(Into::into),
            parent: q.map(Into::into),
            function_name: if full { "f".into() } else { String::new() },
            args: if full {
                vec![KprobeArgument::new(ArgValue::String("/etc/x".into()))]
            } else {
                vec![]
            },
            ..Default::default()
        };
        GetEventsResponse::new(k, if full { "node" } else { "" }, "")
    }

    fn check(enc: &mut LineEncoder, ev: &GetEventsResponse) {
        let want = ev.to_json().unwrap();
        let mut copy = ev.clone();
        assert_eq!(enc.encode(&mut copy).unwrap(), want);
        assert_eq!(&copy, ev, "the event is put back together");
    }

    #[test]
    fn lines_are_those_of_to_json() {
        let mut enc = LineEncoder::default();
        for round in 0..3 {
            for full in [true, false] {
                for (p, q) in [
                    (Some(process(1, 1)), Some(process(2, 2))),
                    (Some(process(1, 1 + round)), None),
                    (None, Some(process(2, 2))),
                    (None, None),
                ] {
                    check(&mut enc, &kprobe(p, q, full));
                }
            }
            let mut changed = process(1, 1);
            changed.docker = format!("c{round}");
            check(&mut enc, &kprobe(Some(changed), Some(process(2, 2)), true));
            let (p, q) = (Some(process(3, 4)), Some(process(1, 1)));
            let events = [
                GetEventsResponse::new(
                    ProcessTracepoint {
                        process: p.clone().map(Into::into),
                        parent: q.clone().map(Into::into),
                        subsys: "s".into(),
                        ..Default::default()
                    },
                    "n",
                    "t",
                ),
                GetEventsResponse::new(
                    ProcessUprobe {
                        process: p.clone().map(Into::into),
                        parent: q.clone().map(Into::into),
                        ..Default::default()
                    },
                    "n",
                    "t",
                ),
                GetEventsResponse::new(
                    ProcessLsm {
                        process: p.clone().map(Into::into),
                        parent: q.clone().map(Into::into),
                        ..Default::default()
                    },
                    "n",
                    "t",
                ),
                GetEventsResponse::new(
                    ProcessExec {
                        process: p.map(Into::into),
                        parent: q.map(Into::into),
                        ..Default::default()
                    },
                    "n",
                    "t",
                ),
            ];
            for ev in &events {
                check(&mut enc, ev);
            }
        }
    }

    #[test]
    fn the_memo_is_bounded() {
        let mut enc = LineEncoder::default();
        for pid in 0..(MEMO_PROCESSES as u32 * 2 + 3) {
            for tid in 0..(VARIANTS as u32 + 2) {
                check(&mut enc, &kprobe(Some(process(pid, tid)), None, true));
            }
            assert!(enc.memo.len() <= MEMO_PROCESSES);
            assert!(enc.memo.values().all(|v| v.len() <= VARIANTS));
            assert!(enc.bytes <= MEMO_BYTES);
        }
        // Long processes: the byte bound comes first.
        let mut enc = LineEncoder::default();
        for pid in 0..64 {
            let mut p = process(pid, pid);
            p.arguments = "x".repeat(200 * 1024);
            check(&mut enc, &kprobe(Some(p), None, true));
            let held: usize = enc.memo.values().flatten().map(|(_, j)| weight(j)).sum();
            assert_eq!(held, enc.bytes);
            assert!(enc.bytes <= MEMO_BYTES);
        }
    }
}
