//! Loading and attaching the process-lifecycle programs, and access to their maps.

use aya::maps::{HashMap as BpfHashMap, Map, MapData, PerCpuArray};

use crate::kernel::ringbuf::RingReader;
use aya::programs::BtfTracePoint;
use aya::{Btf, Ebpf};
use vigil_sensor_bpf::abi::{self, Proc};
use vigil_sensor_bpf::{PROCESS_OBJ, names};

use crate::error::SensorError;
use crate::hooks::kernel::PinDir;
use crate::hooks::links::{Handle, Link};
use crate::hooks::programs::ProgramStats;

/// The exec, fork and exit programs, their tracepoints and the names of their pinned links.
const PROGRAMS: [(&str, &str, &str); 3] = [
    (names::EXEC_PROG, "sched_process_exec", "process-exec"),
    (names::FORK_PROG, "sched_process_fork", "process-fork"),
    (names::EXIT_PROG, "sched_process_exit", "process-exit"),
];

/// The process programs, loaded by this sensor or taken over from the previous one. Their links
/// are pinned: they stay attached when the sensor stops unless the generation is removed.
pub struct ProcessBpf {
    /// Keeps the maps (and the programs this sensor loaded) open.
    _ebpf: Ebpf,
    /// exec, fork, exit.
    links: Vec<crate::hooks::links::Link>,
    pub procs: BpfHashMap<MapData, u32, Proc>,
    pub counters: PerCpuArray<MapData, u64>,
    /// Taken by the ring-buffer reader.
    pub events: Option<RingReader>,
    /// What loading each program cost.
    pub programs: Vec<ProgramStats>,
}

impl std::fmt::Debug for ProcessBpf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessBpf").finish_non_exhaustive()
    }
}

/// The kernel's BTF (`/sys/kernel/btf/vmlinux`), which every object load relocates against. Read
/// when needed and dropped after: parsed, it takes megabytes the sensor does not need at rest.
pub fn kernel_btf() -> Result<Btf, SensorError> {
    Btf::from_sys_fs().map_err(|e| SensorError::bpf("reading /sys/kernel/btf/vmlinux", e))
}

/// Loads the process object with the kernel's BTF, sizes its maps, and attaches exec, fork and
/// exit. Any failure is an error naming the program or map.
///
/// The ring buffer, process table, counters and path buffer are pinned in `pins`, where the hook
/// engine's objects find them.
pub fn load(
    pins: &PinDir,
    btf: &Btf,
    ring_buffer_size: u32,
    process_table_size: u32,
) -> Result<ProcessBpf, SensorError> {
    let mut ebpf = pins
        .loader(btf)
        .map_max_entries(names::EVENTS_MAP, ring_buffer_size)
        .map_max_entries(names::PROCS_MAP, process_table_size)
        .load(PROCESS_OBJ)
        .map_err(|e| SensorError::bpf("loading the process object", e))?;
    let mut programs = Vec::new();
    let mut links = Vec::new();
    for (prog, tracepoint, pin) in PROGRAMS {
        let p: &mut BtfTracePoint = ebpf
            .program_mut(prog)
            .ok_or_else(|| SensorError::bpf(prog, "program missing from the object"))?
            .try_into()
            .map_err(|e| SensorError::bpf(prog, e))?;
        let start = std::time::Instant::now();
        p.load(tracepoint, btf)
            .map_err(|e| SensorError::bpf(format!("loading {prog}"), verifier_detail(e)))?;
        let took = start.elapsed();
        let verified_insns = p.info().ok().and_then(|i| i.verified_instruction_count());
        tracing::info!(
            program = prog,
            load_ms = took.as_secs_f64() * 1000.0,
            verified_insns,
            "BPF program loaded"
        );
        programs.push(ProgramStats {
            name: prog.into(),
            adopted: false,
            loads: 1,
            last_load: took,
            total_load: took,
            verified_insns,
        });
        let p: &mut BtfTracePoint = ebpf
            .program_mut(prog)
            .expect("just loaded")
            .try_into()
            .map_err(|e| SensorError::bpf(prog, e))?;
        let id = p
            .attach()
            .map_err(|e| SensorError::bpf(format!("attaching {prog} to {tracepoint}"), e))?;
        let link = p.take_link(id).map_err(|e| SensorError::bpf(prog, e))?;
        links.push(Link::new(
            Handle::BtfTracepoint(link),
            Some(pins.links_dir().join(pin)),
            true,
        ));
    }
    with_maps(ebpf, links, programs)
}

/// The process programs of the previous sensor of this generation, taken over: the maps are
/// opened from their pins and the pinned links kept; nothing is loaded or attached.
pub fn adopt(
    pins: &PinDir,
    btf: &Btf,
    ring_buffer_size: u32,
    process_table_size: u32,
) -> Result<ProcessBpf, SensorError> {
    // The maps only: the pinned ones are opened, no program is relocated.
    let ebpf = pins
        .loader(btf)
        .map_max_entries(names::EVENTS_MAP, ring_buffer_size)
        .map_max_entries(names::PROCS_MAP, process_table_size)
        .load(vigil_sensor_bpf::MAPS_OBJ)
        .map_err(|e| SensorError::bpf("opening the pinned maps", e))?;
    let links = PROGRAMS
        .iter()
        .map(|(prog, _, pin)| {
            Link::adopt(&pins.links_dir().join(pin)).map_err(|e| SensorError::bpf(*prog, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    with_maps(ebpf, links, Vec::new())
}

fn with_maps(
    mut ebpf: Ebpf,
    links: Vec<Link>,
    programs: Vec<ProgramStats>,
) -> Result<ProcessBpf, SensorError> {
    let take = |ebpf: &mut Ebpf, name: &str| {
        ebpf.take_map(name)
            .ok_or_else(|| SensorError::bpf(name, "map missing from the object"))
    };
    let events = match take(&mut ebpf, names::EVENTS_MAP)? {
        Map::RingBuf(data) => RingReader::new(data)?,
        _ => return Err(SensorError::bpf(names::EVENTS_MAP, "not a ring buffer")),
    };
    let procs = BpfHashMap::try_from(take(&mut ebpf, names::PROCS_MAP)?)
        .map_err(|e| SensorError::bpf(names::PROCS_MAP, e))?;
    let counters = PerCpuArray::try_from(take(&mut ebpf, names::COUNTERS_MAP)?)
        .map_err(|e| SensorError::bpf(names::COUNTERS_MAP, e))?;
    Ok(ProcessBpf {
        _ebpf: ebpf,
        links,
        procs,
        counters,
        events: Some(events),
        programs,
    })
}

/// The verifier log is in the error's source chain; keep its tail, which says why.
fn verifier_detail(e: aya::programs::ProgramError) -> String {
    let text = format!("{e:?}");
    let tail: String = text
        .chars()
        .rev()
        .take(2000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{e}: …{tail}")
}

impl ProcessBpf {
    /// Detaches the process programs for good (their pins go): the sensor stops without
    /// leaving anything behind.
    pub fn detach(&mut self) {
        std::mem::take(&mut self.links)
            .into_iter()
            .for_each(Link::detach);
    }

    /// Sum over CPUs of one kernel counter.
    pub fn counter(&self, index: u32) -> u64 {
        self.counters
            .get(&index, 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }

    /// The identity (`ktime`) the kernel table gives process `pid`, if it has it.
    pub fn table_ktime(&self, pid: u32) -> Option<u64> {
        self.procs
            .get(&pid, 0)
            .ok()
            .filter(|p| p.pid == pid && p.ktime != 0)
            .map(|p| p.ktime)
    }

    /// Entries in the kernel process table (walks the keys).
    pub fn process_table_len(&self) -> usize {
        self.procs.keys().filter(|k| k.is_ok()).count()
    }

    /// Seeds the kernel table with a process found in /proc, unless an exec or fork already
    /// put a fresher entry there.
    pub fn seed(&mut self, entry: &Proc) -> Result<(), SensorError> {
        const BPF_NOEXIST: u64 = 1;
        match self.procs.insert(entry.pid, *entry, BPF_NOEXIST) {
            Ok(()) => Ok(()),
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::EEXIST) =>
            {
                Ok(())
            }
            Err(e) => Err(SensorError::bpf(names::PROCS_MAP, e)),
        }
    }
}

/// The kernel table entry for a scanned process.
pub fn proc_entry(s: &crate::process::procfs_scan::ScannedProc, parent_ktime: u64) -> Proc {
    let mut p = Proc {
        pid: s.pid,
        ppid: s.ppid,
        ktime: s.start_ns,
        parent_ktime,
        kflags: abi::kflags::PROCFS,
        cap_permitted: s.cap_permitted,
        cap_effective: s.cap_effective,
        cap_inheritable: s.cap_inheritable,
        ns: s.ns,
        ..Default::default()
    };
    let bin = s.binary.as_bytes();
    let n = bin.len().min(abi::BIN_KEEP);
    p.bin[..n].copy_from_slice(&bin[..n]);
    p.bin_len = bin.len().min(u16::MAX as usize) as u16;
    p
}
