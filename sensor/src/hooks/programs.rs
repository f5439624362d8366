//! The generic hook programs of `hook.bpf.c`, loaded once per program kind and attached
//! wherever a hook needs them; only where the kernel binds a program to its target at load
//! (BPF-LSM) or cannot tell attach points apart (no BPF cookies) is a program loaded per attach
//! point. Loading is what costs: the kernel verifies the program. Each load is timed and its
//! verifier instruction count kept for metrics and `vigil status`.
//!
//! Shared programs are pinned in the generation's `progs/` directory and links in `links/`, so
//! that the next sensor of the instance takes them over instead of loading them again.

use std::collections::BTreeMap;
use std::os::fd::AsFd as _;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aya::Ebpf;
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope};
use aya::programs::{BtfTracePoint, KProbe, Lsm, Program, TracePoint, UProbe};
use vigil_sensor_bpf::{HOOK_OBJ, hook_names as names};

use super::kernel::PinDir;
use super::links::{Handle, Link};
use super::perf_link;

/// What loading one program kind cost, for metrics and status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProgramStats {
    /// Program name in the object (`vigil_tp`, `vigil_lsm`, …).
    pub name: String,
    /// Taken over from the previous sensor of the instance (pinned), not loaded by this one.
    pub adopted: bool,
    /// Times it was loaded (per-attach-point kinds load once per point).
    pub loads: u64,
    /// Wall time of the last load (the kernel's verification, mostly).
    pub last_load: Duration,
    /// Sum over all loads.
    pub total_load: Duration,
    /// The verifier's processed-instruction count of the last load (`None`: the kernel does
    /// not report it, before 5.16).
    pub verified_insns: Option<u32>,
}

/// Load statistics by program name, readable while a load holds [`HookPrograms`].
pub type StatsHandle = Arc<std::sync::Mutex<BTreeMap<&'static str, ProgramStats>>>;

/// Programs loaded for one attach point but not attached yet.
pub struct Instance {
    ebpf: Ebpf,
    names: Vec<&'static str>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// The shared programs (in one object instance whose maps are the pinned ones) and the
/// statistics of every load.
pub struct HookPrograms {
    pins: Arc<PinDir>,
    /// The hook programs' object, relocated against the kernel's BTF (read again for it) the
    /// first time a shared program is loaded. `maps` holds the shared maps open meanwhile.
    base: Option<Ebpf>,
    _maps: Ebpf,
    /// Shared programs the previous sensor pinned, taken over instead of loaded.
    adopted: std::collections::HashMap<&'static str, Program>,
    /// Perf-event attachments are `bpf_link`s here (5.15+, as cookies), so they can be pinned.
    perf_links: bool,
    /// Shared with readers (metrics, status) that must not wait for a load in progress.
    stats: StatsHandle,
    /// Shared programs loaded in `base`.
    loaded: std::collections::BTreeSet<&'static str>,
    /// Test knob (`VIGIL_TEST_SLOW_LOAD_MS`): every load takes at least this long, so tests can
    /// show that nothing else waits for a load.
    slow_load: Option<Duration>,
}

impl std::fmt::Debug for HookPrograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookPrograms")
            .field("loaded", &self.loaded)
            .finish_non_exhaustive()
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| format!("program {name} missing from the hook object"))?
        .try_into()
        .map_err(|e| format!("program {name}: {e}"))
}

/// The end of a verifier error (the part that says why), for status.
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

fn verified_insns(p: &Program) -> Option<u32> {
    p.info().ok()?.verified_instruction_count()
}

impl HookPrograms {
    /// `base` is the hook object instance that created the pinned maps; its programs are the
    /// shared ones.
    pub fn new(pins: Arc<PinDir>, maps: Ebpf, perf_links: bool) -> Self {
        let slow_load = std::env::var("VIGIL_TEST_SLOW_LOAD_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis);
        HookPrograms {
            pins,
            base: None,
            _maps: maps,
            adopted: Default::default(),
            perf_links,
            stats: StatsHandle::default(),
            loaded: Default::default(),
            slow_load,
        }
    }

    /// The statistics of every load, for readers that must not wait for this value's lock.
    pub fn stats_handle(&self) -> StatsHandle {
        self.stats.clone()
    }

    fn record(&mut self, name: &'static str, took: Duration, insns: Option<u32>) {
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let s = stats.entry(name).or_insert_with(|| ProgramStats {
            name: name.into(),
            ..Default::default()
        });
        s.loads += 1;
        s.last_load = took;
        s.total_load += took;
        s.verified_insns = insns;
        drop(stats);
        tracing::info!(
            program = name,
            load_ms = took.as_secs_f64() * 1000.0,
            verified_insns = insns,
            "BPF program loaded"
        );
    }

    fn pause(&self) {
        if let Some(d) = self.slow_load {
            std::thread::sleep(d);
        }
    }

    /// Whether the shared program `name` is loaded.
    pub fn is_loaded(&self, name: &'static str) -> bool {
        self.loaded.contains(name)
    }

    /// Loads the shared program `name` unless it is loaded already.
    pub fn ensure(&mut self, name: &'static str) -> Result<(), String> {
        if self.is_loaded(name) {
            return Ok(());
        }
        self.pause();
        let start = Instant::now();
        let base = self.base()?;
        let insns = match name {
            names::SYS_ENTER_PROG | names::SYS_EXIT_PROG => {
                let btf = crate::kernel::bpf::kernel_btf().map_err(|e| e.to_string())?;
                let tp = if name == names::SYS_ENTER_PROG {
                    "sys_enter"
                } else {
                    "sys_exit"
                };
                let p: &mut BtfTracePoint = program(base, name)?;
                p.load(tp, &btf).map_err(|e| load_error(name, e))?;
                verified_insns(base.program(name).expect("just loaded"))
            }
            names::TRACEPOINT_PROG | names::SYS_ENTER_TP_PROG | names::SYS_EXIT_TP_PROG => {
                let p: &mut TracePoint = program(base, name)?;
                p.load().map_err(|e| load_error(name, e))?;
                verified_insns(base.program(name).expect("just loaded"))
            }
            names::KPROBE_PROG | names::KRETPROBE_PROG => {
                let p: &mut KProbe = program(base, name)?;
                p.load().map_err(|e| load_error(name, e))?;
                verified_insns(base.program(name).expect("just loaded"))
            }
            names::UPROBE_PROG => {
                let p: &mut UProbe = program(base, name)?;
                p.load().map_err(|e| load_error(name, e))?;
                verified_insns(base.program(name).expect("just loaded"))
            }
            other => return Err(format!("{other} is not a shared program")),
        };
        self.loaded.insert(name);
        self.record(name, start.elapsed(), insns);
        let path = self.pins.progs_dir().join(name);
        if let Some(p) = self.base.as_mut().and_then(|b| b.program_mut(name))
            && let Err(e) = p.pin(&path)
        {
            tracing::warn!(
                "pinning {}: {e}: the next sensor will load it again",
                path.display()
            );
        }
        Ok(())
    }

    /// Takes over the shared programs the previous sensor pinned in this generation: they are
    /// loaded and verified already. Returns their names.
    pub fn adopt_pinned(&mut self) -> Vec<&'static str> {
        use aya::programs::ProbeKind;
        let mut out = Vec::new();
        for &name in names::PROGRAMS {
            let path = self.pins.progs_dir().join(name);
            if !path.exists() {
                continue;
            }
            let prog = match name {
                names::SYS_ENTER_PROG | names::SYS_EXIT_PROG => {
                    BtfTracePoint::from_pin(&path).map(Program::BtfTracePoint)
                }
                names::TRACEPOINT_PROG | names::SYS_ENTER_TP_PROG | names::SYS_EXIT_TP_PROG => {
                    TracePoint::from_pin(&path).map(Program::TracePoint)
                }
                names::KPROBE_PROG => {
                    KProbe::from_pin(&path, ProbeKind::Entry).map(Program::KProbe)
                }
                names::KRETPROBE_PROG => {
                    KProbe::from_pin(&path, ProbeKind::Return).map(Program::KProbe)
                }
                names::UPROBE_PROG => {
                    UProbe::from_pin(&path, ProbeKind::Entry).map(Program::UProbe)
                }
                _ => continue,
            };
            match prog {
                Ok(p) => {
                    let insns = verified_insns(&p);
                    self.adopted.insert(name, p);
                    self.loaded.insert(name);
                    self.stats.lock().unwrap_or_else(|e| e.into_inner()).insert(
                        name,
                        ProgramStats {
                            name: name.into(),
                            adopted: true,
                            verified_insns: insns,
                            ..Default::default()
                        },
                    );
                    out.push(name);
                }
                Err(e) => tracing::warn!("taking over {}: {e}", path.display()),
            }
        }
        out
    }

    /// The hook programs' object, loaded (relocated) on first use with the pinned maps.
    fn base(&mut self) -> Result<&mut Ebpf, String> {
        if self.base.is_none() {
            let btf = crate::kernel::bpf::kernel_btf().map_err(|e| e.to_string())?;
            let ebpf = self
                .pins
                .loader(&btf)
                .load(HOOK_OBJ)
                .map_err(|e| format!("loading the hook object: {e}"))?;
            self.base = Some(ebpf);
        }
        Ok(self.base.as_mut().expect("just loaded"))
    }

    /// A link's pin path, by name.
    fn pin_path(&self, name: &str) -> Option<PathBuf> {
        Some(self.pins.links_dir().join(name))
    }

    /// The shared program `name`, as loaded here or taken over.
    fn shared<'a, T>(&'a mut self, name: &str) -> Result<&'a mut T, String>
    where
        &'a mut T: TryFrom<&'a mut Program, Error = aya::programs::ProgramError>,
    {
        let prog = match self.adopted.get_mut(name) {
            Some(p) => p,
            None => self
                .base
                .as_mut()
                .and_then(|b| b.program_mut(name))
                .ok_or_else(|| format!("program {name} is not loaded"))?,
        };
        prog.try_into().map_err(|e| format!("program {name}: {e}"))
    }

    /// Attaches the shared tracepoint program to `subsystem/event` (tracefs id `event_id`) with
    /// cookie `attach`; the link is pinned as `pin`.
    pub fn attach_tracepoint(
        &mut self,
        subsystem: &str,
        event: &str,
        event_id: u32,
        attach: u32,
        pin: &str,
    ) -> Result<Link, String> {
        self.ensure(names::TRACEPOINT_PROG)?;
        let fd = self.fd(names::TRACEPOINT_PROG)?;
        let link = perf_link::attach_tracepoint(
            fd.as_fd(),
            event_id,
            &format!("{subsystem}/{event}"),
            u64::from(attach),
        )
        .map_err(|e| e.to_string())?;
        Ok(self.link(Handle::Perf(link), pin))
    }

    /// Attaches the shared syscall program to `syscalls/sys_enter_<name>` (or, with `exit`,
    /// the return program to `sys_exit_<name>`); the link is pinned as `pin`.
    pub fn attach_syscall_tracepoint(
        &mut self,
        name: &str,
        exit: bool,
        pin: &str,
    ) -> Result<Link, String> {
        let (prog, event) = if exit {
            (names::SYS_EXIT_TP_PROG, format!("sys_exit_{name}"))
        } else {
            (names::SYS_ENTER_TP_PROG, format!("sys_enter_{name}"))
        };
        self.ensure(prog)?;
        let p: &mut TracePoint = self.shared(prog)?;
        let id = p
            .attach("syscalls", &event)
            .map_err(|e| format!("attaching to tracepoint syscalls/{event}: {e}"))?;
        let link = p
            .take_link(id)
            .map_err(|e| format!("tracepoint syscalls/{event}: {e}"))?;
        Ok(self.link(Handle::Tracepoint(link), pin))
    }

    fn link(&self, handle: Handle, pin: &str) -> Link {
        Link::new(handle, self.pin_path(pin), self.perf_links)
    }

    fn fd(&mut self, name: &str) -> Result<aya::programs::ProgramFd, String> {
        let p: &mut Program = match self.adopted.get_mut(name) {
            Some(p) => p,
            None => self
                .base
                .as_mut()
                .and_then(|b| b.program_mut(name))
                .ok_or_else(|| format!("program {name} is not loaded"))?,
        };
        p.fd()
            .map_err(|e| format!("{name}: {e}"))?
            .try_clone()
            .map_err(|e| format!("{name}: {e}"))
    }

    /// Attaches the shared raw `sys_enter` and `sys_exit` programs (pinned as `raw-enter`,
    /// `raw-exit`).
    pub fn attach_raw_syscalls(&mut self) -> Result<Vec<Link>, String> {
        let mut out = Vec::new();
        for (name, pin) in [
            (names::SYS_ENTER_PROG, "raw-enter"),
            (names::SYS_EXIT_PROG, "raw-exit"),
        ] {
            self.ensure(name)?;
            let p: &mut BtfTracePoint = self.shared(name)?;
            let id = p.attach().map_err(|e| format!("attaching {name}: {e}"))?;
            let link = p.take_link(id).map_err(|e| format!("{name}: {e}"))?;
            out.push(self.link(Handle::BtfTracepoint(link), pin));
        }
        Ok(out)
    }

    /// Attaches the shared kprobe (or kretprobe) program to `function` with cookie `attach`.
    pub fn attach_kprobe(
        &mut self,
        function: &str,
        retprobe: bool,
        attach: u32,
        pin: &str,
    ) -> Result<Link, String> {
        let name = if retprobe {
            names::KRETPROBE_PROG
        } else {
            names::KPROBE_PROG
        };
        self.ensure(name)?;
        let fd = self.fd(name)?;
        let link = perf_link::attach_kprobe(fd.as_fd(), function, retprobe, u64::from(attach))
            .map_err(|e| e.to_string())?;
        Ok(self.link(Handle::Perf(link), pin))
    }

    /// Attaches the shared uprobe program with cookie `attach`.
    pub fn attach_uprobe(
        &mut self,
        path: &Path,
        symbol: &str,
        offset: u64,
        attach: u32,
        pin: &str,
    ) -> Result<Link, String> {
        self.ensure(names::UPROBE_PROG)?;
        let p: &mut UProbe = self.shared(names::UPROBE_PROG)?;
        let point = UProbeAttachPoint {
            location: uprobe_location(symbol, offset),
            cookie: Some(u64::from(attach)),
        };
        let id = p
            .attach(point, path, UProbeScope::AllProcesses)
            .map_err(|e| format!("attaching a uprobe to {}:{symbol}: {e}", path.display()))?;
        let link = p.take_link(id).map_err(|e| format!("uprobe: {e}"))?;
        Ok(self.link(Handle::Uprobe(link), pin))
    }

    /// Loads programs `progs` for one attach point (`attach` in their `.rodata`): the LSM
    /// program (bound to `lsm_hook` at load) or the `*_id` variants on kernels without
    /// cookies. An associated function, so that the caller holds no lock while the kernel
    /// verifies. Returns each program's load time and instruction count.
    pub fn load_instance(
        pins: &PinDir,
        progs: &[&'static str],
        attach: u32,
        lsm_hook: Option<&str>,
    ) -> Result<(Instance, Vec<LoadTiming>), String> {
        let btf = crate::kernel::bpf::kernel_btf().map_err(|e| e.to_string())?;
        let btf = &btf;
        let mut loader = pins.loader(btf);
        loader.override_global(names::ATTACH_ID_GLOBAL, &attach, true);
        let lsm_nargs = match lsm_hook {
            Some(hook) => super::btf_funcs::lsm_hook_args(hook)?,
            None => 0,
        };
        loader.override_global(names::LSM_NARGS_GLOBAL, &lsm_nargs, true);
        let mut ebpf = loader
            .load(HOOK_OBJ)
            .map_err(|e| format!("loading the hook object: {e}"))?;
        let mut timings = Vec::new();
        for &name in progs {
            let start = Instant::now();
            match name {
                names::LSM_PROG => {
                    let hook = lsm_hook.ok_or("the LSM program needs a hook")?;
                    let p: &mut Lsm = program(&mut ebpf, name)?;
                    p.load(hook, btf)
                        .map_err(|e| format!("loading the LSM program for {hook}: {e}"))?;
                }
                names::KPROBE_ID_PROG | names::KRETPROBE_ID_PROG => {
                    let p: &mut KProbe = program(&mut ebpf, name)?;
                    p.load().map_err(|e| load_error(name, e))?;
                }
                names::UPROBE_ID_PROG => {
                    let p: &mut UProbe = program(&mut ebpf, name)?;
                    p.load().map_err(|e| load_error(name, e))?;
                }
                names::TRACEPOINT_ID_PROG => {
                    let p: &mut TracePoint = program(&mut ebpf, name)?;
                    p.load().map_err(|e| load_error(name, e))?;
                }
                other => return Err(format!("{other} is not loaded per attach point")),
            }
            timings.push(LoadTiming {
                name,
                took: start.elapsed(),
                insns: ebpf.program(name).and_then(verified_insns),
            });
        }
        Ok((
            Instance {
                ebpf,
                names: progs.to_vec(),
            },
            timings,
        ))
    }

    /// The pin directory [`HookPrograms::load_instance`] needs, for a caller that holds this
    /// value only briefly.
    pub fn pins(&self) -> Arc<PinDir> {
        self.pins.clone()
    }

    /// Books the loads done by [`HookPrograms::load_instance`].
    pub fn record_instance(&mut self, timings: &[LoadTiming]) {
        for t in timings {
            self.record(t.name, t.took, t.insns);
        }
    }

    /// The test knob's delay, for loads made without this value locked.
    pub fn slow_load(&self) -> Option<Duration> {
        self.slow_load
    }

    /// Attaches a per-point instance: kprobe (and kretprobe) to `function`, a uprobe, a
    /// tracepoint, or an LSM program to the hook it was loaded for. An LSM link is pinned as
    /// `pin`; the others are perf events on kernels without cookies, whose attachments are no
    /// `bpf_link`s and end with the sensor.
    pub fn attach_instance(
        &self,
        mut inst: Instance,
        target: InstanceTarget<'_>,
        pin: &str,
    ) -> Result<Link, String> {
        for name in inst.names.clone() {
            match target {
                InstanceTarget::Kprobe { function } => {
                    let p: &mut KProbe = program(&mut inst.ebpf, name)?;
                    p.attach(function, 0)
                        .map_err(|e| format!("attaching {name} to {function}: {e}"))?;
                }
                InstanceTarget::Uprobe {
                    path,
                    symbol,
                    offset,
                } => {
                    let p: &mut UProbe = program(&mut inst.ebpf, name)?;
                    p.attach(
                        uprobe_location(symbol, offset),
                        path,
                        UProbeScope::AllProcesses,
                    )
                    .map_err(|e| {
                        format!("attaching a uprobe to {}:{symbol}: {e}", path.display())
                    })?;
                }
                InstanceTarget::Tracepoint { subsystem, event } => {
                    let p: &mut TracePoint = program(&mut inst.ebpf, name)?;
                    p.attach(subsystem, event)
                        .map_err(|e| format!("attaching to tracepoint {subsystem}/{event}: {e}"))?;
                }
                InstanceTarget::Lsm => {
                    let p: &mut Lsm = program(&mut inst.ebpf, name)?;
                    let id = p
                        .attach()
                        .map_err(|e| format!("attaching the LSM program: {e}"))?;
                    let link = p.take_link(id).map_err(|e| format!("the LSM link: {e}"))?;
                    // The link holds the program; the instance can go.
                    return Ok(self.link(Handle::Lsm(link), pin));
                }
            }
        }
        Ok(self.link(Handle::Instance(Box::new(inst.ebpf)), pin))
    }
}

/// One program load: which, how long, the verifier's count.
#[derive(Debug, Clone)]
pub struct LoadTiming {
    pub name: &'static str,
    pub took: Duration,
    pub insns: Option<u32>,
}

/// Where a per-point instance attaches.
#[derive(Debug, Clone, Copy)]
pub enum InstanceTarget<'a> {
    Tracepoint {
        subsystem: &'a str,
        event: &'a str,
    },
    Kprobe {
        function: &'a str,
    },
    Uprobe {
        path: &'a Path,
        symbol: &'a str,
        offset: u64,
    },
    Lsm,
}

fn uprobe_location(symbol: &str, offset: u64) -> UProbeAttachLocation<'_> {
    if symbol.is_empty() {
        UProbeAttachLocation::AbsoluteOffset(offset)
    } else if offset != 0 {
        UProbeAttachLocation::SymbolOffset(symbol, offset)
    } else {
        UProbeAttachLocation::Symbol(symbol)
    }
}
