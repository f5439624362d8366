//! Self-protection (`--self-protection`): the LSM programs of `protect.bpf.c`, which make the
//! kernel refuse other processes' ptrace of the sensor, signals to it (except from pid 1, its
//! real parent and, when that parent is not pid 1, the parent's other children), unlinking or
//! renaming anything under its instance pin directory, and bpf() commands that detach or update
//! its links or open its maps for writing.
//!
//! The programs and their links belong to this sensor process: nothing of them is pinned or
//! taken over, so they go with the process and the next sensor loads them fresh. The protected
//! link and map ids are what the sensor holds open and what its generation pins; they are read
//! again on a timer ([`REFRESH`]), so links that policies add later are protected too.

use std::collections::HashSet;
use std::os::fd::{AsFd as _, BorrowedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use aya::maps::{Array, HashMap, MapData};
use aya::programs::{BtfTracePoint, Lsm};
use aya::{Btf, Ebpf};
use vigil_sensor_bpf::{PROTECT_OBJ, abi, protect_names as names};

use crate::error::SensorError;
use crate::hooks::kernel::PinDir;
use crate::hooks::programs::ProgramStats;

/// How often the protected link and map ids are read again.
pub const REFRESH: Duration = Duration::from_secs(2);

/// What `vigil status` and `vigil_self_protection{state}` say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not requested.
    Off,
    /// The programs are attached and the sensor registered.
    Active,
    /// Requested, but this kernel cannot do it (the reason).
    Unavailable(String),
}

impl State {
    /// The metric label: `off`, `active` or `unavailable`.
    pub fn label(&self) -> &'static str {
        match self {
            State::Off => "off",
            State::Active => "active",
            State::Unavailable(_) => "unavailable",
        }
    }

    /// The reason it is unavailable, else empty.
    pub fn detail(&self) -> &str {
        match self {
            State::Unavailable(why) => why,
            _ => "",
        }
    }

    pub const LABELS: [&'static str; 3] = ["active", "off", "unavailable"];
}

/// `<instance root>/vigil_protected_by`: the protected sensor's pid, for a second sensor of the
/// instance to say clearly why it cannot start (it could open none of the first one's maps).
pub const OWNER_PIN: &str = "vigil_protected_by";

/// The pid of a protected sensor of this instance that is running, other than this process.
pub fn running_protected_sensor(instance_root: &Path) -> Option<u32> {
    let bytes = crate::kernel::bpf_syscall::read_blob(&instance_root.join(OWNER_PIN)).ok()?;
    let pid = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
    if pid == std::process::id() {
        return None;
    }
    // A stale entry (the sensor is gone, its pid perhaps reused) names no vigil-sensor.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "vigil-sensor").then_some(pid)
}

/// The LSM hook name of a refusal record's `hook`, as events carry it.
pub fn hook_name(hook: u32) -> &'static str {
    use abi::protect_hook as h;
    match hook {
        h::PTRACE => "ptrace_access_check",
        h::KILL => "task_kill",
        h::UNLINK => "inode_unlink",
        h::RMDIR => "inode_rmdir",
        h::RENAME => "inode_rename",
        h::BPF => "bpf",
        h::BPF_MAP => "bpf_map",
        _ => "unknown",
    }
}

/// The attached programs; dropping this detaches them.
pub struct Protection {
    ebpf: Ebpf,
    /// What loading each program cost (for status and metrics).
    pub programs: Vec<ProgramStats>,
    links: HashSet<u32>,
    maps: HashSet<u32>,
    pins: std::path::PathBuf,
    instance_root: std::path::PathBuf,
    last_refresh: Instant,
}

impl Drop for Protection {
    /// The sensor stops: no protected sensor of the instance runs any more.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.instance_root.join(OWNER_PIN));
    }
}

impl std::fmt::Debug for Protection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protection")
            .field("links", &self.links.len())
            .field("maps", &self.maps.len())
            .finish_non_exhaustive()
    }
}

/// Kernel `dev_t` (`MKDEV`: major << 20 | minor) of a user-space `st_dev`.
pub fn kernel_dev(st_dev: u64) -> u32 {
    let major = rustix::fs::major(st_dev);
    let minor = rustix::fs::minor(st_dev);
    (major << 20) | (minor & 0xfffff)
}

impl Protection {
    /// Loads and attaches the protect programs (their ring buffer and process table are the
    /// generation's pinned ones), protects what the sensor holds and pins, and registers this
    /// process as the protected one.
    pub fn start(pins: &PinDir, instance_root: &Path, btf: &Btf) -> Result<Self, SensorError> {
        let mut ebpf = pins
            .loader(btf)
            .load(PROTECT_OBJ)
            .map_err(|e| SensorError::bpf("loading the protect object", e))?;
        let mut programs = Vec::new();
        for (name, hook) in names::LSM_PROGRAMS {
            let start = Instant::now();
            let p: &mut Lsm = ebpf
                .program_mut(name)
                .ok_or_else(|| SensorError::bpf(*name, "program missing from the object"))?
                .try_into()
                .map_err(|e| SensorError::bpf(*name, e))?;
            p.load(hook, btf)
                .map_err(|e| SensorError::bpf(format!("loading {name} (lsm/{hook})"), e))?;
            let took = start.elapsed();
            let verified_insns = p.info().ok().and_then(|i| i.verified_instruction_count());
            p.attach()
                .map_err(|e| SensorError::bpf(format!("attaching {name} to lsm/{hook}"), e))?;
            programs.push(stats(name, took, verified_insns));
        }
        let start = Instant::now();
        let p: &mut BtfTracePoint = ebpf
            .program_mut(names::EXIT_PROG)
            .ok_or_else(|| SensorError::bpf(names::EXIT_PROG, "program missing from the object"))?
            .try_into()
            .map_err(|e| SensorError::bpf(names::EXIT_PROG, e))?;
        p.load("sched_process_exit", btf)
            .map_err(|e| SensorError::bpf(format!("loading {}", names::EXIT_PROG), e))?;
        let took = start.elapsed();
        let verified_insns = p.info().ok().and_then(|i| i.verified_instruction_count());
        p.attach()
            .map_err(|e| SensorError::bpf(format!("attaching {}", names::EXIT_PROG), e))?;
        programs.push(stats(names::EXIT_PROG, took, verified_insns));

        let mut this = Protection {
            ebpf,
            programs,
            links: HashSet::new(),
            maps: HashSet::new(),
            pins: pins.path().to_path_buf(),
            instance_root: instance_root.to_path_buf(),
            last_refresh: Instant::now(),
        };
        this.refresh()?;
        let st = rustix::fs::stat(instance_root)
            .map_err(|e| SensorError::io(format!("stat {}", instance_root.display()), e.into()))?;
        let cfg = abi::ProtectCfg {
            tgid: std::process::id(),
            pin_dev: kernel_dev(st.st_dev),
            pin_ino: st.st_ino,
        };
        let mut map: Array<&mut MapData, abi::ProtectCfg> = Array::try_from(
            this.ebpf
                .map_mut(names::CONFIG_MAP)
                .ok_or_else(|| SensorError::bpf(names::CONFIG_MAP, "map missing"))?,
        )
        .map_err(|e| SensorError::bpf(names::CONFIG_MAP, e))?;
        map.set(0, cfg, 0)
            .map_err(|e| SensorError::bpf(names::CONFIG_MAP, e))?;
        // Not among the protected maps (it lies outside the generation and no descriptor of it
        // stays open): a second sensor must be able to read it. It cannot be unlinked or
        // replaced while this sensor runs (the inode hooks cover the instance directory).
        crate::kernel::bpf_syscall::write_blob(
            &instance_root.join(OWNER_PIN),
            "vigil_prot_by",
            &std::process::id().to_le_bytes(),
        )
        .map_err(|e| SensorError::io(format!("writing {OWNER_PIN}"), e))?;
        tracing::info!(
            links = this.links.len(),
            maps = this.maps.len(),
            pin_dir = %instance_root.display(),
            "self-protection active"
        );
        Ok(this)
    }

    /// Reads the protected ids again when [`REFRESH`] has passed since the last time.
    pub fn maybe_refresh(&mut self) {
        if self.last_refresh.elapsed() < REFRESH {
            return;
        }
        if let Err(e) = self.refresh() {
            tracing::warn!("self-protection: updating the protected ids failed: {e}");
        }
    }

    /// Protects the links and maps this process holds open and those its generation pins;
    /// ids no longer found are dropped.
    pub fn refresh(&mut self) -> Result<(), SensorError> {
        self.last_refresh = Instant::now();
        let (mut links, mut maps) = own_objects();
        pinned_objects(&self.pins, &mut links, &mut maps);
        sync_ids(&mut self.ebpf, names::LINKS_MAP, &mut self.links, links)?;
        sync_ids(&mut self.ebpf, names::MAPS_MAP, &mut self.maps, maps)?;
        Ok(())
    }
}

/// For `check-programs`: loads (verifies) every protect program without attaching it, sharing
/// the maps pinned in `pins`. The LSM programs only where BPF-LSM is active (`None`: skipped);
/// each row is the program, its verified instruction count or the kernel's refusal, and the
/// load time.
pub type CheckRow = (&'static str, Option<Result<Option<u32>, String>>, Duration);

pub fn check(pins: &PinDir, btf: &Btf, bpf_lsm: bool) -> Result<Vec<CheckRow>, SensorError> {
    let mut ebpf = pins
        .loader(btf)
        .load(PROTECT_OBJ)
        .map_err(|e| SensorError::bpf("loading the protect object", e))?;
    let mut rows = Vec::new();
    for (name, hook) in names::LSM_PROGRAMS {
        if !bpf_lsm {
            rows.push((*name, None, Duration::ZERO));
            continue;
        }
        let start = Instant::now();
        let r = load_lsm(&mut ebpf, name, hook, btf);
        rows.push((*name, Some(r), start.elapsed()));
    }
    let start = Instant::now();
    let r = load_exit(&mut ebpf, btf);
    rows.push((names::EXIT_PROG, Some(r), start.elapsed()));
    Ok(rows)
}

/// Loads (verifies) one LSM program of the protect object without attaching it.
fn load_lsm(ebpf: &mut Ebpf, name: &str, hook: &str, btf: &Btf) -> Result<Option<u32>, String> {
    let p: &mut Lsm = ebpf
        .program_mut(name)
        .ok_or("missing from the object")?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    p.load(hook, btf).map_err(|e| format!("{e:?}"))?;
    Ok(p.info().ok().and_then(|i| i.verified_instruction_count()))
}

/// Loads (verifies) the exit program without attaching it.
fn load_exit(ebpf: &mut Ebpf, btf: &Btf) -> Result<Option<u32>, String> {
    let p: &mut BtfTracePoint = ebpf
        .program_mut(names::EXIT_PROG)
        .ok_or("missing from the object")?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    p.load("sched_process_exit", btf)
        .map_err(|e| format!("{e:?}"))?;
    Ok(p.info().ok().and_then(|i| i.verified_instruction_count()))
}

fn stats(name: &str, took: Duration, verified_insns: Option<u32>) -> ProgramStats {
    tracing::info!(
        program = name,
        load_ms = took.as_secs_f64() * 1000.0,
        verified_insns,
        "BPF program loaded"
    );
    ProgramStats {
        name: name.into(),
        adopted: false,
        loads: 1,
        last_load: took,
        total_load: took,
        verified_insns,
    }
}

/// Makes the kernel map `map` hold exactly `want` (as far as its capacity allows).
fn sync_ids(
    ebpf: &mut Ebpf,
    map: &str,
    have: &mut HashSet<u32>,
    want: HashSet<u32>,
) -> Result<(), SensorError> {
    let mut m: HashMap<&mut MapData, u32, u8> = HashMap::try_from(
        ebpf.map_mut(map)
            .ok_or_else(|| SensorError::bpf(map, "map missing"))?,
    )
    .map_err(|e| SensorError::bpf(map, e))?;
    for id in have.difference(&want) {
        let _ = m.remove(id);
    }
    let mut full = 0usize;
    for id in want.difference(have) {
        if m.insert(id, 1, 0).is_err() {
            full += 1;
        }
    }
    if full > 0 {
        tracing::warn!(
            "self-protection: {full} ids not protected, {map} is full ({} entries)",
            abi::PROTECT_IDS
        );
    }
    *have = want;
    Ok(())
}

/// The ids of the links and maps this process holds descriptors of.
fn own_objects() -> (HashSet<u32>, HashSet<u32>) {
    let mut links = HashSet::new();
    let mut maps = HashSet::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return (links, maps);
    };
    for e in dir.flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<RawFd>().ok()) else {
            continue;
        };
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        let set = match target.as_ref() {
            "anon_inode:bpf_link" => &mut links,
            "anon_inode:bpf-map" => &mut maps,
            _ => continue,
        };
        // SAFETY: the descriptor is this process's own, listed in /proc/self/fd just now; it is
        // only borrowed for one bpf() call. Had it been closed and reused meanwhile, the call
        // describes whatever it is now, or fails.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Ok(id) = crate::kernel::bpf_syscall::obj_id(fd) {
            set.insert(id);
        }
    }
    (links, maps)
}

/// The ids of the links (`links/`) and maps (the files at the top) pinned in a generation.
fn pinned_objects(gen_dir: &Path, links: &mut HashSet<u32>, maps: &mut HashSet<u32>) {
    let add = |dir: &Path, set: &mut HashSet<u32>| {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if e.path().is_dir() {
                continue;
            }
            if let Ok(fd) = crate::kernel::bpf_syscall::get(&e.path())
                && let Ok(id) = crate::kernel::bpf_syscall::obj_id(fd.as_fd())
            {
                set.insert(id);
            }
        }
    };
    add(&gen_dir.join("links"), links);
    add(gen_dir, maps);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_have_the_metric_labels_and_only_unavailable_a_reason() {
        assert_eq!(State::Off.label(), "off");
        assert_eq!(State::Active.label(), "active");
        let u = State::Unavailable("BPF-LSM not active".into());
        assert_eq!(u.label(), "unavailable");
        assert_eq!(u.detail(), "BPF-LSM not active");
        assert_eq!(State::Active.detail(), "");
        for s in [State::Off, State::Active, u] {
            assert!(State::LABELS.contains(&s.label()));
        }
    }

    #[test]
    fn kernel_dev_is_mkdev_of_the_user_space_encoding() {
        // User space encodes (major 0, minor 0x123) as 0x12023 (minor's high bits at 20..);
        // the kernel's MKDEV is major << 20 | minor.
        let st_dev = rustix::fs::makedev(0, 0x123);
        assert_eq!(kernel_dev(st_dev), 0x123);
        let st_dev = rustix::fs::makedev(8, 1);
        assert_eq!(kernel_dev(st_dev), (8 << 20) | 1);
    }

    #[test]
    fn every_refusal_hook_has_its_lsm_name() {
        for (i, (_, hook)) in names::LSM_PROGRAMS.iter().enumerate() {
            // The record's hook numbers follow LSM_PROGRAMS' order from 1.
            assert_eq!(hook_name(i as u32 + 1), *hook);
        }
        assert_eq!(hook_name(99), "unknown");
    }
}
