//! Enforcement that outlives a sensor: what a sensor finds in its instance's bpffs directory
//! when it starts, and what it does with it.
//!
//! - One generation whose stamp matches this build (same BPF objects, same map sizes) and whose
//!   state reads back: **taken over**. Its maps, programs and links stay as they are — nothing
//!   is verified or attached again, and records written while no sensor ran are read from the
//!   ring buffer. The policies then belong to whichever source of this sensor claims them.
//! - Anything else (another build, other map sizes, a state that does not check out, several
//!   generations left by an interrupted hand-over): a **new generation** is loaded beside the
//!   old one; the old one keeps enforcing until the new one runs the configured policies, and
//!   is then retired. There is never a moment with neither.
//!
//! `vigil-sensor cleanup` removes an instance's generations for good (uninstall).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aya::Btf;
use serde::{Deserialize, Serialize};
use vigil_sensor_bpf::abi;

use crate::error::SensorError;
use crate::hooks::engine::{Engine, TakenOver};
use crate::hooks::kernel::{HookBpf, LiveKernel};
use crate::hooks::meta::HookRegistry;
use crate::hooks::snapshot::Snapshot;
use crate::kernel::bpf::ProcessBpf;
use crate::kernel::features::Features;
use crate::kernel::pins::{PIN_ROOT, PinDir, remove_tree};
use crate::output::metrics::Metrics;
use crate::policy::control::PolicyOrigin;

/// Bumped when the meaning of a pinned object changes in a way the build id would not show.
const STAMP_FORMAT: u32 = 1;

/// What a generation was made by and with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamp {
    pub format: u32,
    /// Identity of the BPF objects and the record ABI (see [`build_id`]).
    pub build: String,
    pub ring_buffer_size: u32,
    pub process_table_size: u32,
    /// When the generation was made (ns since the epoch): also its directory's name.
    pub epoch: u64,
    pub sensor_version: String,
    /// What the probe found when the generation was made: the same kernel, so the sensor that
    /// takes it over need not probe again.
    #[serde(default)]
    pub features: Option<Features>,
}

impl Stamp {
    /// Whether a generation stamped `self` can be taken over by a sensor that wants `other`.
    pub fn compatible(&self, other: &Stamp) -> Result<(), String> {
        if self.format != other.format {
            return Err(format!("stamp format {} ≠ {}", self.format, other.format));
        }
        if self.build != other.build {
            return Err(format!(
                "made by another build (sensor {}, objects {}; this is {}, objects {})",
                self.sensor_version, self.build, other.sensor_version, other.build
            ));
        }
        if (self.ring_buffer_size, self.process_table_size)
            != (other.ring_buffer_size, other.process_table_size)
        {
            return Err(format!(
                "map sizes differ (ring buffer {} B, process table {}; wanted {} B, {})",
                self.ring_buffer_size,
                self.process_table_size,
                other.ring_buffer_size,
                other.process_table_size
            ));
        }
        Ok(())
    }
}

/// Identity of this build's BPF objects and ABI: FNV-1a over the embedded objects. `extra`
/// lets tests make a build that looks different (`--test-stamp`).
pub fn build_id(extra: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        vigil_sensor_bpf::PROCESS_OBJ,
        vigil_sensor_bpf::HOOK_OBJ,
        extra.as_bytes(),
    ] {
        for b in part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h = h.rotate_left(17);
    }
    format!("{h:016x}")
}

/// The stamp this sensor writes and wants.
pub fn this_stamp(extra: &str, ring_buffer_size: u32, process_table_size: u32) -> Stamp {
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    Stamp {
        format: STAMP_FORMAT,
        build: build_id(extra),
        ring_buffer_size,
        process_table_size,
        epoch,
        sensor_version: env!("CARGO_PKG_VERSION").into(),
        features: None,
    }
}

/// The features stamped on the one generation this build would take over, if there is one: the
/// kernel has not changed since (bpffs does not outlive a boot), so they need no new probe.
pub fn stamped_features(root: &Path, want: &Stamp) -> Option<Features> {
    match PinDir::generations(root).as_slice() {
        [only] => read_stamp(only)
            .ok()
            .filter(|s| s.compatible(want).is_ok())
            .and_then(|s| s.features),
        _ => None,
    }
}

pub fn read_stamp(gen_dir: &Path) -> Result<Stamp, String> {
    let bytes = crate::kernel::bpf_syscall::read_blob(&gen_dir.join("vigil_stamp"))
        .map_err(|e| format!("no stamp: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("unreadable stamp: {e}"))
}

pub fn write_stamp(pins: &PinDir, stamp: &Stamp) -> Result<(), String> {
    let json = serde_json::to_vec(stamp).map_err(|e| e.to_string())?;
    crate::kernel::bpf_syscall::write_blob(&pins.stamp_path(), "vigil_stamp", &json)
        .map_err(|e| e.to_string())
}

fn read_state(gen_dir: &Path) -> Result<Snapshot, String> {
    let bytes = crate::kernel::bpf_syscall::read_blob(&gen_dir.join("vigil_state"))
        .map_err(|e| format!("no state: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("unreadable state: {e}"))
}

/// What a starting sensor does with what it found.
#[derive(Debug)]
pub enum Plan {
    /// Take this generation over.
    TakeOver { pins: PinDir, snapshot: Snapshot },
    /// Load a new generation; retire these once it runs.
    Fresh {
        pins: PinDir,
        retire: Vec<PathBuf>,
        /// Why nothing was taken over (for the log), `None` when nothing was there.
        why: Option<String>,
        /// The pins of the generation found changed while no sensor ran (see `pin_manifest`).
        pins_changed: Vec<String>,
    },
}

/// Looks at the instance's generations (`root`) and decides.
pub fn plan(root: &Path, want: &Stamp) -> Result<Plan, SensorError> {
    let gens = PinDir::generations(root);
    let why = match gens.as_slice() {
        [] => None,
        [only] => match read_stamp(only)
            .and_then(|s| s.compatible(want))
            .and_then(|()| read_state(only))
        {
            Ok(snapshot) => {
                let changed = crate::kernel::pin_manifest::changes(only);
                if changed.is_empty() {
                    return Ok(Plan::TakeOver {
                        pins: PinDir::adopt(only.clone()),
                        snapshot,
                    });
                }
                return Ok(Plan::Fresh {
                    pins: PinDir::create(root, want.epoch)?,
                    retire: gens,
                    why: Some(format!(
                        "its pins changed while no sensor ran: {}",
                        changed.join("; ")
                    )),
                    pins_changed: changed,
                });
            }
            Err(e) => Some(e),
        },
        many => Some(format!(
            "{} generations (a hand-over was interrupted)",
            many.len()
        )),
    };
    Ok(Plan::Fresh {
        pins: PinDir::create(root, want.epoch)?,
        retire: gens,
        why,
        pins_changed: Vec::new(),
    })
}

/// Retires an older generation: its links go first (they detach: nothing holds them), then its
/// programs and maps. Records still in its ring buffer are lost with it; their bytes are
/// returned for the loss count.
pub fn retire(gen_dir: &Path) -> u64 {
    let pending = pending_bytes(gen_dir);
    remove_tree(gen_dir);
    pending
}

/// Bytes waiting in a generation's ring buffer (0 when unknown).
fn pending_bytes(gen_dir: &Path) -> u64 {
    let path = gen_dir.join(vigil_sensor_bpf::names::EVENTS_MAP);
    let Ok(map) = aya::maps::MapData::from_pin(&path) else {
        return 0;
    };
    let Ok(mut ring) = crate::kernel::ringbuf::RingReader::new(map) else {
        return 0;
    };
    let mut n = 0u64;
    ring.drain(|item| n += item.len() as u64);
    n
}

/// The sensor's BPF side, opened one way or the other.
pub struct Opened {
    pub pins: Arc<PinDir>,
    pub bpf: ProcessBpf,
    pub engine: Arc<Engine>,
    /// Policies taken over from the previous sensor (`None`: a new generation was loaded).
    pub took_over: Option<usize>,
    /// Attach points taken over whose links the kernel could not pin (perf events before
    /// 5.15): attached again, their hooks did not run between the two sensors.
    pub reattached: usize,
    /// Older generations to retire once this one enforces what it is configured with.
    pub retire: Vec<PathBuf>,
    /// What changed in the previous generation's pins while no sensor ran (then not taken
    /// over).
    pub pins_changed: Vec<String>,
}

/// What building the engine needs besides the pins.
pub struct EngineParts<'a> {
    pub btf: &'a Btf,
    pub features: &'a Features,
    pub host_ns: [u32; abi::NS_COUNT],
    pub registry: Arc<HookRegistry>,
    pub node_labels: BTreeMap<String, String>,
    pub ring_buffer_size: u32,
    pub process_table_size: u32,
}

/// Opens the instance's objects as [`plan`] says: takes the previous generation over, or loads
/// a new one (also when a take-over fails half-way: the old generation is then left as it was
/// and retired later).
pub fn open(root: &Path, want: &Stamp, parts: &EngineParts<'_>) -> Result<Opened, SensorError> {
    match plan(root, want)? {
        Plan::TakeOver { pins, snapshot } => {
            let pins = Arc::new(pins);
            match take_over(&pins, &snapshot, parts) {
                Ok((
                    bpf,
                    engine,
                    TakenOver {
                        policies: n,
                        reattached,
                    },
                )) => {
                    if reattached > 0 {
                        tracing::warn!(
                            points = reattached,
                            "attach points of the previous sensor had links this kernel cannot \
                             pin (perf events have no bpf_link before 5.15): attached again; \
                             their hooks did not run between the two sensors"
                        );
                    }
                    tracing::info!(
                        generation = %pins.path().display(),
                        policies = n,
                        "took over the previous sensor's programs: nothing reloaded"
                    );
                    Ok(Opened {
                        pins,
                        bpf,
                        engine,
                        took_over: Some(n),
                        reattached,
                        retire: Vec::new(),
                        pins_changed: Vec::new(),
                    })
                }
                Err(e) => {
                    tracing::warn!(
                        "cannot take over {}: {e}; loading a new generation beside it",
                        pins.path().display()
                    );
                    pins.keep();
                    let old = pins.path().to_path_buf();
                    drop(pins);
                    fresh(PinDir::create(root, want.epoch)?, vec![old], want, parts)
                }
            }
        }
        Plan::Fresh {
            pins,
            retire,
            why,
            pins_changed,
        } => {
            if !pins_changed.is_empty() {
                tracing::warn!(
                    "the previous generation's pins changed while no sensor ran ({}); loading a \
                     new generation beside it",
                    pins_changed.join("; ")
                );
            } else if let Some(why) = &why {
                tracing::info!(
                    "not taking over the pinned generation: {why}; loading a new one beside it"
                );
            }
            let mut opened = fresh(pins, retire, want, parts)?;
            opened.pins_changed = pins_changed;
            Ok(opened)
        }
    }
}

fn engine(pins: &Arc<PinDir>, parts: &EngineParts<'_>) -> Result<Engine, SensorError> {
    Ok(Engine::new(
        HookBpf::open(
            pins.clone(),
            parts.btf,
            parts.host_ns[abi::ns_slot::USER],
            parts.features.cookie,
        )?,
        LiveKernel::new(parts.features.clone(), parts.host_ns),
        parts.registry.clone(),
    )
    .with_node_labels(parts.node_labels.clone()))
}

fn take_over(
    pins: &Arc<PinDir>,
    snapshot: &Snapshot,
    parts: &EngineParts<'_>,
) -> Result<(ProcessBpf, Arc<Engine>, TakenOver), String> {
    let bpf = crate::kernel::bpf::adopt(
        pins,
        parts.btf,
        parts.ring_buffer_size,
        parts.process_table_size,
    )
    .map_err(|e| e.to_string())?;
    let engine = engine(pins, parts).map_err(|e| e.to_string())?;
    let n = engine.take_over(snapshot, pins.state_path())?;
    Ok((bpf, Arc::new(engine), n))
}

fn fresh(
    pins: PinDir,
    retire: Vec<PathBuf>,
    want: &Stamp,
    parts: &EngineParts<'_>,
) -> Result<Opened, SensorError> {
    let pins = Arc::new(pins);
    write_stamp(&pins, want).map_err(|e| SensorError::bpf("writing the generation's stamp", e))?;
    let bpf = crate::kernel::bpf::load(
        &pins,
        parts.btf,
        parts.ring_buffer_size,
        parts.process_table_size,
    )?;
    let engine = Arc::new(engine(&pins, parts)?);
    engine.persist_to(pins.state_path());
    Ok(Opened {
        pins,
        bpf,
        engine,
        took_over: None,
        reattached: 0,
        retire,
        pins_changed: Vec::new(),
    })
}

/// What is left to settle after start: the previous sensor's policies that no source claimed,
/// and the older generations to retire. Settled on the first call for local sources, and for
/// the operator's once its first policy set is in — or, when the operator stays away, its
/// policies are kept and the old generations retired after [`Handover::OPERATOR_WAIT`].
#[derive(Debug)]
pub struct Handover {
    pub retire: Vec<PathBuf>,
    /// An operator is configured: its policies are settled by its first set.
    pub operator: bool,
    pub since: std::time::Instant,
    pub local_done: bool,
    pub operator_done: bool,
}

impl Handover {
    pub const OPERATOR_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

    pub fn new(retire: Vec<PathBuf>, operator: bool) -> Self {
        Handover {
            retire,
            operator,
            since: std::time::Instant::now(),
            local_done: false,
            operator_done: !operator,
        }
    }

    /// `operator_set_in`: the operator's first policy set was applied.
    pub fn settle(&mut self, engine: &Engine, metrics: &Metrics, operator_set_in: bool) {
        if !self.local_done {
            engine.drop_unclaimed(|o| matches!(o, PolicyOrigin::File(_)));
            if !self.operator {
                engine.drop_unclaimed(|o| *o == PolicyOrigin::Operator);
            }
            self.local_done = true;
        }
        if !self.operator_done && operator_set_in {
            engine.drop_unclaimed(|o| *o == PolicyOrigin::Operator);
            self.operator_done = true;
        }
        if self.retire.is_empty()
            || !(self.operator_done || self.since.elapsed() > Self::OPERATOR_WAIT)
        {
            return;
        }
        for g in std::mem::take(&mut self.retire) {
            let lost = retire(&g);
            metrics.handoff_retired_generations.inc();
            metrics.handoff_lost_bytes.inc_by(lost);
            tracing::info!(
                generation = %g.display(),
                unread_bytes = lost,
                "retired the previous generation: this sensor's programs enforce"
            );
        }
    }

    pub fn pending(&self) -> bool {
        !self.retire.is_empty() || !self.operator_done
    }
}

/// `vigil-sensor cleanup`: removes the instance's pinned objects (every instance with `all`).
/// Returns what was removed. A sensor of the instance must not be running.
pub fn cleanup(instance: Option<&str>) -> Result<Vec<PathBuf>, String> {
    let root = Path::new(PIN_ROOT);
    let instances: Vec<PathBuf> = match instance {
        Some(i) => {
            crate::kernel::pins::check_instance(i)?;
            vec![root.join(i)]
        }
        // Instances only: the numbered directories of older sensors belong to their processes.
        None => std::fs::read_dir(root)
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_str()
                            .is_some_and(|n| crate::kernel::pins::check_instance(n).is_ok())
                    })
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default(),
    };
    let mut removed = Vec::new();
    for dir in instances {
        if !dir.exists() {
            continue;
        }
        let gens = PinDir::generations(&dir);
        for g in &gens {
            remove_tree(g);
        }
        // Directories of the older per-process layout, or a check's leftovers.
        remove_tree(&dir);
        let _ = std::fs::remove_dir(&dir);
        if dir.exists() {
            return Err(format!("{} could not be removed", dir.display()));
        }
        removed.push(dir);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> Stamp {
        this_stamp("", 8 << 20, 32768)
    }

    #[test]
    fn only_the_same_build_with_the_same_map_sizes_is_taken_over() {
        let a = stamp();
        assert!(a.compatible(&stamp()).is_ok());
        let other_build = this_stamp("test", 8 << 20, 32768);
        assert!(
            a.compatible(&other_build)
                .unwrap_err()
                .contains("another build")
        );
        let smaller = this_stamp("", 4 << 20, 32768);
        assert!(a.compatible(&smaller).unwrap_err().contains("map sizes"));
    }

    #[test]
    fn the_build_id_depends_on_the_objects_and_the_extra() {
        assert_eq!(build_id(""), build_id(""));
        assert_ne!(build_id(""), build_id("x"));
    }
}
