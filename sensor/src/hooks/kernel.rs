//! The live kernel side of the engine: the pinned map directory every object shares, the hook
//! maps the engine writes, and loading a generic program for one attach point.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray};
use aya::programs::{BtfTracePoint, KProbe, Lsm, TracePoint, UProbe};
use aya::{Btf, Ebpf, EbpfLoader};
use vigil_sensor_bpf::abi::{self, AttachHooks, Config, HookCfg, IntKey, PolicyCfg};
use vigil_sensor_bpf::{HOOK_OBJ, hook_names};

use super::lower::{KernelInfo, Mechanism};
use super::tracefs::{self, Format};
use crate::error::SensorError;
use crate::features::Features;

/// bpffs magic number (`BPF_FS_MAGIC`).
const BPF_FS_MAGIC: u64 = 0xcafe_4a11;
const PIN_ROOT: &str = "/sys/fs/bpf/vigil";

/// One directory of pinned maps per sensor run (`/sys/fs/bpf/vigil/<pid>`), so that every BPF
/// object the sensor loads shares one ring buffer, process table and set of hook maps. Removed
/// when the sensor stops; directories of sensors that died are removed at the next start.
#[derive(Debug)]
pub struct PinDir {
    path: PathBuf,
}

impl PinDir {
    /// Mounts bpffs at /sys/fs/bpf if needed, clears stale runs, creates this run's directory.
    pub fn create() -> Result<PinDir, SensorError> {
        ensure_bpffs()?;
        let root = Path::new(PIN_ROOT);
        std::fs::create_dir_all(root)
            .map_err(|e| SensorError::io(format!("creating {}", root.display()), e))?;
        if let Ok(entries) = std::fs::read_dir(root) {
            for e in entries.flatten() {
                let name = e.file_name();
                let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    tracing::info!("removing pinned maps of a sensor that is gone (pid {pid})");
                    remove_dir(&e.path());
                }
            }
        }
        let path = root.join(std::process::id().to_string());
        remove_dir(&path);
        std::fs::create_dir(&path)
            .map_err(|e| SensorError::io(format!("creating {}", path.display()), e))?;
        Ok(PinDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A loader that shares every map of the process and hook objects through this directory.
    pub fn loader<'a>(&'a self, btf: &'a Btf) -> EbpfLoader<'a> {
        let mut l = EbpfLoader::new();
        l.btf(Some(btf));
        for name in hook_names::SHARED_MAPS {
            l.map_pin_path(name, self.path.join(name));
        }
        l
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        remove_dir(&self.path);
    }
}

fn remove_dir(path: &Path) {
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let _ = std::fs::remove_dir(path);
}

fn ensure_bpffs() -> Result<(), SensorError> {
    let target = Path::new("/sys/fs/bpf");
    if let Ok(st) = rustix::fs::statfs(target)
        && st.f_type as u64 == BPF_FS_MAGIC
    {
        return Ok(());
    }
    rustix::mount::mount(
        "bpf",
        target,
        "bpf",
        rustix::mount::MountFlags::empty(),
        None::<&std::ffi::CStr>,
    )
    .map_err(|e| SensorError::bpf("mounting bpffs at /sys/fs/bpf", e))
}

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

/// The kernel objects of the engine: BTF, the pin directory and the maps.
pub struct HookBpf {
    pub btf: Btf,
    pins: std::sync::Arc<PinDir>,
    pub maps: HookMaps,
    /// Handed to whoever keeps it ([`HookBpf::take_containers`]).
    containers: Option<ContainerMap>,
    /// Keeps the map-creating instance alive (no programs loaded).
    _base: Ebpf,
}

impl std::fmt::Debug for HookBpf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookBpf")
            .field("pins", &self.pins)
            .finish_non_exhaustive()
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
    /// Creates the hook maps (pinned next to the process object's) and configures them.
    pub fn open(pins: std::sync::Arc<PinDir>, host_userns: u32) -> Result<HookBpf, SensorError> {
        let btf = Btf::from_sys_fs()
            .map_err(|e| SensorError::bpf("reading /sys/kernel/btf/vmlinux", e))?;
        let mut base = {
            let mut l = pins.loader(&btf);
            l.map_max_entries(hook_names::SCRATCH_MAP, possible_cpus());
            l.load(HOOK_OBJ)
                .map_err(|e| SensorError::bpf("loading the hook object", e))?
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
        Ok(HookBpf {
            btf,
            pins,
            maps,
            containers: Some(containers),
            _base: base,
        })
    }

    /// The container cgroup map, once: its keeper writes it under a lock of its own.
    pub fn take_containers(&mut self) -> Option<ContainerMap> {
        self.containers.take()
    }

    /// Loads and attaches the generic program(s) serving `mechanism` as attach point `id`.
    /// The returned object holds the programs; dropping it detaches and unloads them.
    pub fn attach(
        &self,
        id: u32,
        mechanism: &Mechanism,
        return_probe: bool,
    ) -> Result<Ebpf, String> {
        let mut loader = self.pins.loader(&self.btf);
        loader.override_global(hook_names::ATTACH_ID_GLOBAL, &id, true);
        let mut ebpf = loader
            .load(HOOK_OBJ)
            .map_err(|e| format!("loading the hook object: {e}"))?;
        match mechanism {
            Mechanism::SysEnter { .. } => {
                for (name, tp) in [
                    (hook_names::SYS_ENTER_PROG, "sys_enter"),
                    (hook_names::SYS_EXIT_PROG, "sys_exit"),
                ] {
                    let p: &mut BtfTracePoint = program(&mut ebpf, name)?;
                    p.load(tp, &self.btf).map_err(|e| load_error(name, e))?;
                    p.attach().map_err(|e| format!("attaching {name}: {e}"))?;
                }
            }
            Mechanism::Kprobe { function } => {
                let mut progs = vec![hook_names::KPROBE_PROG];
                if return_probe {
                    progs.push(hook_names::KRETPROBE_PROG);
                }
                for name in progs {
                    let p: &mut KProbe = program(&mut ebpf, name)?;
                    p.load().map_err(|e| load_error(name, e))?;
                    p.attach(function, 0)
                        .map_err(|e| format!("attaching {name} to {function}: {e}"))?;
                }
            }
            Mechanism::Tracepoint { subsystem, event } => {
                let name = hook_names::TRACEPOINT_PROG;
                let p: &mut TracePoint = program(&mut ebpf, name)?;
                p.load().map_err(|e| load_error(name, e))?;
                p.attach(subsystem, event)
                    .map_err(|e| format!("attaching to tracepoint {subsystem}/{event}: {e}"))?;
            }
            Mechanism::Uprobe {
                path,
                symbol,
                offset,
            } => {
                let name = hook_names::UPROBE_PROG;
                let p: &mut UProbe = program(&mut ebpf, name)?;
                p.load().map_err(|e| load_error(name, e))?;
                let location = if symbol.is_empty() {
                    aya::programs::uprobe::UProbeAttachLocation::AbsoluteOffset(*offset)
                } else if *offset != 0 {
                    aya::programs::uprobe::UProbeAttachLocation::SymbolOffset(symbol, *offset)
                } else {
                    aya::programs::uprobe::UProbeAttachLocation::Symbol(symbol)
                };
                p.attach(
                    location,
                    path,
                    aya::programs::uprobe::UProbeScope::AllProcesses,
                )
                .map_err(|e| format!("attaching a uprobe to {}:{symbol}: {e}", path.display()))?;
            }
            Mechanism::Lsm { hook } => {
                let name = hook_names::LSM_PROG;
                let p: &mut Lsm = program(&mut ebpf, name)?;
                p.load(hook, &self.btf)
                    .map_err(|e| format!("loading the LSM program for {hook}: {e}"))?;
                p.attach()
                    .map_err(|e| format!("attaching the LSM program to {hook}: {e}"))?;
            }
        }
        Ok(ebpf)
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

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| format!("program {name} missing from the hook object"))?
        .try_into()
        .map_err(|e| format!("program {name}: {e}"))
}

fn load_error(name: &str, e: aya::programs::ProgramError) -> String {
    let text = format!("{e:?}");
    let tail: String = text
        .chars()
        .rev()
        .take(800)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("loading {name}: {e} (…{tail})")
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
