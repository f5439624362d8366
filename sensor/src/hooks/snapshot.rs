//! What a sensor leaves for the next one to take its programs over without a gap: the engine's
//! state, written as JSON into a pinned blob (`vigil_state`) next to the pinned maps, programs
//! and links, whenever a policy is added, removed or switched.
//!
//! Only what cannot be derived again is kept. Each policy's compiled IR is kept and lowered
//! again by the next sensor with the same value-set ids (`ids_start`): lowering is a pure
//! function of the IR and the kernel, so the hook configuration it yields must equal what the
//! pinned `vigil_hooks` holds — which the next sensor checks before it adopts anything.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::attach::AttachKey;

/// Bumped when the layout of this state changes; a sensor never adopts another version.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub format: u32,
    pub generation: u32,
    pub next_id: u64,
    pub set_next: u32,
    pub policies: Vec<PolicySnap>,
    pub points: Vec<PointSnap>,
    /// Pins (file names under `links/`) of the raw sys_enter/sys_exit links.
    pub raw_links: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicySnap {
    pub name: String,
    pub namespace: String,
    pub id: u64,
    pub slot: u32,
    pub origin: OriginSnap,
    pub monitor: bool,
    pub enabled: bool,
    /// Why the CPU budget demoted the policy (absent in states of older sensors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demotion: Option<String>,
    /// The compiled policy, protobuf, hex.
    pub ir: String,
    /// The value-set id lowering started from.
    pub ids_start: u32,
    pub scope: Option<ScopeSnap>,
    pub hooks: Vec<HookSnap>,
    /// Hooks that lowered but could not be loaded, with the reason.
    pub failed: Vec<FailedSnap>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OriginSnap {
    File(PathBuf),
    Api,
    Operator,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScopeSnap {
    pub set: u32,
    pub host: bool,
    pub cgroups: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookSnap {
    /// Position in the lowered policy's hooks.
    pub index: usize,
    pub slot: u32,
    pub generation: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedSnap {
    pub index: usize,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointSnap {
    pub key: AttachKey,
    pub id: u32,
    pub hooks: Vec<u32>,
    pub exit_users: usize,
    pub links: Vec<String>,
    pub exit_link: Option<String>,
    /// Some of the point's links could not be pinned (perf-event attachments have no
    /// `bpf_link` before 5.15): they ended with the sensor, and the next one attaches again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unpinned: bool,
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("odd hex length".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let b = vec![0u8, 1, 0xab, 0xff];
        assert_eq!(unhex(&hex(&b)).unwrap(), b);
        assert!(unhex("abc").is_err());
        assert!(unhex("zz").is_err());
    }

    #[test]
    fn a_snapshot_survives_json() {
        let s = Snapshot {
            format: FORMAT,
            generation: 7,
            next_id: 3,
            set_next: 42,
            policies: vec![PolicySnap {
                name: "p".into(),
                namespace: String::new(),
                id: 2,
                slot: 0,
                origin: OriginSnap::File("/etc/p.yaml".into()),
                monitor: false,
                enabled: true,
                demotion: Some("over budget".into()),
                ir: hex(b"ir"),
                ids_start: 1,
                scope: Some(ScopeSnap {
                    set: 5,
                    host: true,
                    cgroups: vec![9],
                }),
                hooks: vec![HookSnap {
                    index: 0,
                    slot: 3,
                    generation: 7,
                }],
                failed: vec![],
            }],
            points: vec![PointSnap {
                key: AttachKey::SysTp {
                    name: "openat".into(),
                    nr: 257,
                },
                id: 1,
                hooks: vec![3],
                exit_users: 0,
                links: vec!["1-0".into()],
                exit_link: None,
                unpinned: false,
            }],
            raw_links: vec![],
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), s);
        // A state without `unpinned` (an older sensor's) reads as pinned; a set one round-trips.
        assert!(!json.contains("unpinned"));
        let mut u = s.clone();
        u.points[0].unpinned = true;
        let json = serde_json::to_string(&u).unwrap();
        assert!(json.contains("\"unpinned\":true"));
        assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), u);
    }
}
