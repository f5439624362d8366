//! The live kernel side of the engine: the hook maps the engine writes (pinned with the other
//! objects, `pins.rs`). The programs are in `programs.rs`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray};
use aya::{Btf, Ebpf};
use vigil_sensor_bpf::abi::{self, AttachHooks, Config, HookCfg, IntKey, PolicyCfg};
use vigil_sensor_bpf::{MAPS_OBJ, hook_names};

use super::lower::KernelInfo;
use super::programs::HookPrograms;
use super::tracefs::{self, Format};
use crate::error::SensorError;
use crate::kernel::features::Features;

pub use crate::kernel::pins::PinDir;

/// LPM key data of `vigil_strs` (the part after the prefix length).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StrData {
    pub set: u32,
    pub data: [u8; abi::STR_MAX],
}

/// LPM key data of `vigil_addrs`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct AddrData {
    pub set: u32,
    pub addr: [u8; 16],
}

// SAFETY: repr(C) integers and byte arrays without padding: every bit pattern is valid.
unsafe impl aya::Pod for StrData {}
// SAFETY: as above.
unsafe impl aya::Pod for AddrData {}

/// The hook maps, opened once, written by the engine.
pub struct HookMaps {
    pub config: Array<MapData, Config>,
    pub policies: Array<MapData, PolicyCfg>,
    pub stats: PerCpuArray<MapData, u64>,
    pub hooks: Array<MapData, HookCfg>,
    pub attach: Array<MapData, AttachHooks>,
    pub sys_attach: Array<MapData, u32>,
    pub ints: BpfHashMap<MapData, IntKey, u8>,
    pub strs: LpmTrie<MapData, StrData, u32>,
    pub addrs: LpmTrie<MapData, AddrData, u8>,
}

/// `vigil_containers`: the node's container cgroup ids (key), value unused.
pub type ContainerMap = BpfHashMap<MapData, u64, u8>;

/// The hook maps of the engine.
pub struct HookBpf {
    pub maps: HookMaps,
    /// Handed to whoever keeps it ([`HookBpf::take_containers`]).
    containers: Option<ContainerMap>,
}

impl std::fmt::Debug for HookBpf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookBpf").finish_non_exhaustive()
    }
}

fn possible_cpus() -> u32 {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| {
            s.trim()
                .split(',')
                .filter_map(|r| r.rsplit('-').next()?.parse::<u32>().ok())
                .max()
        })
        .map(|m| m + 1)
        .unwrap_or(1)
}

impl HookBpf {
    /// Creates the hook maps (pinned next to the process object's) and configures them. The
    /// object instance that created them holds the shared programs, loaded on first use.
    /// `perf_links`: perf-event attachments are pinnable `bpf_link`s on this kernel (5.15+).
    pub fn open(
        pins: std::sync::Arc<PinDir>,
        btf: &Btf,
        host_userns: u32,
        perf_links: bool,
    ) -> Result<(HookBpf, HookPrograms), SensorError> {
        // The maps only: the hook programs' object is relocated when a first program of it is
        // needed (a sensor without policies, or one taking everything over, never needs it).
        let mut base = {
            let mut l = pins.loader(btf);
            l.map_max_entries(hook_names::SCRATCH_MAP, possible_cpus());
            l.load(MAPS_OBJ)
                .map_err(|e| SensorError::bpf("creating the shared maps", e))?
        };
        fn take<T>(ebpf: &mut Ebpf, name: &str) -> Result<T, SensorError>
        where
            T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
        {
            let m = ebpf
                .take_map(name)
                .ok_or_else(|| SensorError::bpf(name, "map missing from the hook object"))?;
            T::try_from(m).map_err(|e| SensorError::bpf(name, e))
        }
        let mut maps = HookMaps {
            config: take(&mut base, hook_names::CONFIG_MAP)?,
            policies: take(&mut base, hook_names::POLICIES_MAP)?,
            stats: take(&mut base, hook_names::POLICY_STATS_MAP)?,
            hooks: take(&mut base, hook_names::HOOKS_MAP)?,
            attach: take(&mut base, hook_names::ATTACH_MAP)?,
            sys_attach: take(&mut base, hook_names::SYS_ATTACH_MAP)?,
            ints: take(&mut base, hook_names::INTS_MAP)?,
            strs: take(&mut base, hook_names::STRS_MAP)?,
            addrs: take(&mut base, hook_names::ADDRS_MAP)?,
        };
        let containers = take(&mut base, hook_names::CONTAINERS_MAP)?;
        maps.config
            .set(
                0,
                Config {
                    self_tgid: std::process::id(),
                    host_userns,
                },
                0,
            )
            .map_err(|e| SensorError::bpf(hook_names::CONFIG_MAP, e))?;
        Ok((
            HookBpf {
                maps,
                containers: Some(containers),
            },
            HookPrograms::new(pins, base, perf_links),
        ))
    }

    /// The container cgroup map, once: its keeper writes it under a lock of its own.
    pub fn take_containers(&mut self) -> Option<ContainerMap> {
        self.containers.take()
    }

    /// Sum over CPUs of the per-policy counters of policy slot `slot`.
    pub fn policy_stats(&self, slot: u32) -> [u64; abi::STAT_NUM] {
        let mut out = [0u64; abi::STAT_NUM];
        for (i, o) in out.iter_mut().enumerate() {
            let idx = slot * abi::STAT_NUM as u32 + i as u32;
            *o = self
                .maps
                .stats
                .get(&idx, 0)
                .map(|v| v.iter().sum())
                .unwrap_or(0);
        }
        out
    }

    /// Zeroes the counters of a policy slot before it is reused.
    pub fn reset_stats(&mut self, slot: u32) {
        let ncpu = aya::util::nr_cpus().unwrap_or(1);
        for i in 0..abi::STAT_NUM as u32 {
            let idx = slot * abi::STAT_NUM as u32 + i;
            let zero = aya::maps::PerCpuValues::try_from(vec![0u64; ncpu]);
            if let Ok(z) = zero {
                let _ = self.maps.stats.set(idx, z, 0);
            }
        }
    }

    pub fn str_key(set: u32, bytes: &[u8]) -> Key<StrData> {
        let mut d = StrData {
            set,
            data: [0; abi::STR_MAX],
        };
        let n = bytes.len().min(abi::STR_MAX);
        d.data[..n].copy_from_slice(&bytes[..n]);
        Key::new(32 + 8 * n as u32, d)
    }

    pub fn addr_key(set: u32, prefix_len: u32, addr: &[u8]) -> Key<AddrData> {
        let mut d = AddrData { set, addr: [0; 16] };
        let n = addr.len().min(16);
        d.addr[..n].copy_from_slice(&addr[..n]);
        Key::new(32 + prefix_len, d)
    }
}

/// [`KernelInfo`] of the running kernel.
pub struct LiveKernel {
    pub features: Features,
    pub tracefs: PathBuf,
    pub host_ns: [u32; abi::NS_COUNT],
    symbols: OnceLock<HashSet<String>>,
}

impl LiveKernel {
    pub fn new(features: Features, host_ns: [u32; abi::NS_COUNT]) -> Self {
        LiveKernel {
            features,
            tracefs: tracefs::root(),
            host_ns,
            symbols: OnceLock::new(),
        }
    }

    /// Functions kprobes can attach to: tracefs' list, or kallsyms where tracefs lacks it.
    fn symbols(&self) -> &HashSet<String> {
        self.symbols.get_or_init(|| {
            let text = std::fs::read_to_string(self.tracefs.join("available_filter_functions"))
                .or_else(|_| std::fs::read_to_string("/proc/kallsyms"))
                .unwrap_or_default();
            text.lines()
                .filter_map(|l| {
                    let mut w = l.split_whitespace();
                    let first = w.next()?;
                    // kallsyms: "addr type name"; available_filter_functions: "name [mod]".
                    match (w.next(), w.next()) {
                        (Some(_), Some(name)) if first.len() >= 8 => Some(name.to_string()),
                        _ => Some(first.to_string()),
                    }
                })
                .collect()
        })
    }
}

impl KernelInfo for LiveKernel {
    fn kprobes(&self) -> bool {
        self.features.kprobe
    }

    fn bpf_lsm(&self) -> bool {
        self.features.bpf_lsm
    }

    fn kernel_symbol(&self, name: &str) -> bool {
        self.symbols().contains(name)
    }

    fn tracepoint(&self, subsystem: &str, event: &str) -> Result<Format, String> {
        tracefs::read(&self.tracefs, subsystem, event)
    }

    fn host_namespace(&self, slot: usize) -> u32 {
        self.host_ns.get(slot).copied().unwrap_or(0)
    }
}
