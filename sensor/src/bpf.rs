//! Loading and attaching the process-lifecycle programs, and access to their maps.

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::BtfTracePoint;
use aya::{Btf, Ebpf};
use vigil_sensor_bpf::abi::{self, Proc};
use vigil_sensor_bpf::{PROCESS_OBJ, names};

use crate::error::SensorError;
use crate::hooks::kernel::PinDir;

/// The loaded process programs. Dropping it detaches them and frees the maps.
pub struct ProcessBpf {
    /// Keeps the programs (and their links) alive.
    _ebpf: Ebpf,
    pub procs: BpfHashMap<MapData, u32, Proc>,
    pub counters: PerCpuArray<MapData, u64>,
    /// Taken by the ring-buffer reader.
    pub events: Option<RingBuf<MapData>>,
}

impl std::fmt::Debug for ProcessBpf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessBpf").finish_non_exhaustive()
    }
}

/// Loads the process object with the kernel's BTF, sizes its maps, and attaches exec, fork and
/// exit. Any failure is an error naming the program or map.
///
/// The ring buffer, process table, counters and path buffer are pinned in `pins`, where the hook
/// engine's objects find them.
pub fn load(
    pins: &PinDir,
    ring_buffer_size: u32,
    process_table_size: u32,
) -> Result<ProcessBpf, SensorError> {
    let btf =
        Btf::from_sys_fs().map_err(|e| SensorError::bpf("reading /sys/kernel/btf/vmlinux", e))?;
    let mut ebpf = pins
        .loader(&btf)
        .map_max_entries(names::EVENTS_MAP, ring_buffer_size)
        .map_max_entries(names::PROCS_MAP, process_table_size)
        .load(PROCESS_OBJ)
        .map_err(|e| SensorError::bpf("loading the process object", e))?;
    for (prog, tracepoint) in [
        (names::EXEC_PROG, "sched_process_exec"),
        (names::FORK_PROG, "sched_process_fork"),
        (names::EXIT_PROG, "sched_process_exit"),
    ] {
        let p: &mut BtfTracePoint = ebpf
            .program_mut(prog)
            .ok_or_else(|| SensorError::bpf(prog, "program missing from the object"))?
            .try_into()
            .map_err(|e| SensorError::bpf(prog, e))?;
        p.load(tracepoint, &btf)
            .map_err(|e| SensorError::bpf(format!("loading {prog}"), verifier_detail(e)))?;
        p.attach()
            .map_err(|e| SensorError::bpf(format!("attaching {prog} to {tracepoint}"), e))?;
    }
    let take = |ebpf: &mut Ebpf, name: &str| {
        ebpf.take_map(name)
            .ok_or_else(|| SensorError::bpf(name, "map missing from the object"))
    };
    let events = RingBuf::try_from(take(&mut ebpf, names::EVENTS_MAP)?)
        .map_err(|e| SensorError::bpf(names::EVENTS_MAP, e))?;
    let procs = BpfHashMap::try_from(take(&mut ebpf, names::PROCS_MAP)?)
        .map_err(|e| SensorError::bpf(names::PROCS_MAP, e))?;
    let counters = PerCpuArray::try_from(take(&mut ebpf, names::COUNTERS_MAP)?)
        .map_err(|e| SensorError::bpf(names::COUNTERS_MAP, e))?;
    Ok(ProcessBpf {
        _ebpf: ebpf,
        procs,
        counters,
        events: Some(events),
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
    /// Sum over CPUs of one kernel counter.
    pub fn counter(&self, index: u32) -> u64 {
        self.counters
            .get(&index, 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
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
pub fn proc_entry(s: &crate::procfs_scan::ScannedProc, parent_ktime: u64) -> Proc {
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
