//! Kernel feature probe: which BPF mechanisms this kernel offers, found by loading and attaching
//! a trivial program of each kind (`sensor-bpf/bpf/probe.bpf.c`).

use std::collections::BTreeMap;

use aya::programs::{BtfTracePoint, FEntry, KProbe, Lsm, RawTracePoint, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};
use serde::Serialize;

/// What the probe found. `errors` says, for each missing feature, why.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Features {
    pub kernel_release: String,
    pub btf: bool,
    pub ringbuf: bool,
    pub tracepoint: bool,
    /// `syscalls/sys_enter_<name>` tracepoints: a syscall hook costs only its own syscall.
    pub syscall_tracepoint: bool,
    pub raw_tracepoint: bool,
    pub btf_tracepoint: bool,
    pub kprobe: bool,
    pub kretprobe: bool,
    pub trampoline: bool,
    pub fmod_ret: bool,
    pub bpf_lsm: bool,
    pub send_signal: bool,
    pub override_return: bool,
    /// `bpf_get_attach_cookie` (5.15+): one kprobe/uprobe program serves every attach point.
    pub cookie: bool,
    /// `bpf_loop` (5.17+). Not used: reported so that operators see what the kernel offers.
    pub bpf_loop: bool,
    pub errors: BTreeMap<String, String>,
}

const TARGET_FN: &str = "security_file_open";

impl Features {
    pub fn as_pairs(&self) -> Vec<(&'static str, bool)> {
        vec![
            ("btf", self.btf),
            ("ringbuf", self.ringbuf),
            ("tracepoint", self.tracepoint),
            ("syscall_tracepoint", self.syscall_tracepoint),
            ("raw_tracepoint", self.raw_tracepoint),
            ("btf_tracepoint", self.btf_tracepoint),
            ("kprobe", self.kprobe),
            ("kretprobe", self.kretprobe),
            ("trampoline", self.trampoline),
            ("fmod_ret", self.fmod_ret),
            ("bpf_lsm", self.bpf_lsm),
            ("send_signal", self.send_signal),
            ("override_return", self.override_return),
            ("cookie", self.cookie),
            ("bpf_loop", self.bpf_loop),
        ]
    }
}

/// Mounts tracefs and securityfs where the kernel has them but nobody mounted them (as a
/// minimal host or an initramfs may leave them): tracepoints attach through tracefs and the
/// active LSM list is read from securityfs. Failures are left to the probes to report.
pub fn ensure_kernel_filesystems() {
    for (fstype, target, probe) in [
        (
            "tracefs",
            "/sys/kernel/tracing",
            "/sys/kernel/tracing/events",
        ),
        (
            "securityfs",
            "/sys/kernel/security",
            "/sys/kernel/security/lsm",
        ),
    ] {
        if std::path::Path::new(probe).exists() || !std::path::Path::new(target).is_dir() {
            continue;
        }
        if let Err(e) = rustix::mount::mount(
            fstype,
            target,
            fstype,
            rustix::mount::MountFlags::empty(),
            None::<&std::ffi::CStr>,
        ) {
            tracing::debug!("mounting {fstype} at {target} failed: {e}");
        }
    }
}

/// Runs every probe. Never fails: what cannot be probed is reported as absent with a reason.
pub fn probe() -> Features {
    match Btf::from_sys_fs() {
        Ok(btf) => probe_with(&btf),
        Err(e) => {
            let mut f = Features {
                kernel_release: kernel_release(),
                ..Default::default()
            };
            f.errors.insert("btf".into(), e.to_string());
            f
        }
    }
}

fn kernel_release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

/// [`probe`] with the kernel's BTF already read (the sensor reads it once at start).
pub fn probe_with(btf: &Btf) -> Features {
    ensure_kernel_filesystems();
    let mut f = Features {
        kernel_release: kernel_release(),
        btf: true,
        ..Default::default()
    };
    let mut ebpf = match EbpfLoader::new()
        .btf(Some(btf))
        .load(vigil_sensor_bpf::PROBE_OBJ)
    {
        Ok(e) => e,
        Err(e) => {
            f.errors
                .insert("ringbuf".into(), format!("probe object did not load: {e}"));
            return f;
        }
    };
    f.ringbuf = true;
    let mut record = |name: &str, r: Result<(), String>| -> bool {
        match r {
            Ok(()) => true,
            Err(e) => {
                f.errors.insert(name.into(), e);
                false
            }
        }
    };
    let tracepoint = record("tracepoint", try_tracepoint(&mut ebpf));
    let syscall_tracepoint = record("syscall_tracepoint", try_syscall_tracepoints());
    let cookie = record("cookie", try_cookie(&mut ebpf));
    let bpf_loop = record("bpf_loop", try_bpf_loop(&mut ebpf));
    let raw = record("raw_tracepoint", try_raw(&mut ebpf));
    let btf_tp = record("btf_tracepoint", try_btf_tp(&mut ebpf, btf));
    let send_signal = btf_tp;
    let kprobe = record("kprobe", try_kprobe(&mut ebpf, "probe_kprobe"));
    let kretprobe = record("kretprobe", try_kprobe(&mut ebpf, "probe_kretprobe"));
    let trampoline = record("trampoline", try_fentry(&mut ebpf, btf));
    let lsm = record("bpf_lsm", try_lsm(&mut ebpf, btf));
    let over = record("override_return", try_override(&mut ebpf));
    let fmod = record("fmod_ret", crate::kernel::fmod_ret::probe(btf, TARGET_FN));
    f.tracepoint = tracepoint;
    f.syscall_tracepoint = syscall_tracepoint;
    f.cookie = cookie;
    f.bpf_loop = bpf_loop;
    f.raw_tracepoint = raw;
    f.btf_tracepoint = btf_tp;
    f.send_signal = send_signal;
    f.kprobe = kprobe;
    f.kretprobe = kretprobe;
    f.trampoline = trampoline;
    f.bpf_lsm = lsm;
    f.override_return = over;
    f.fmod_ret = fmod;
    f
}

fn prog<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| format!("{name} missing from the probe object"))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())
}

fn try_tracepoint(ebpf: &mut Ebpf) -> Result<(), String> {
    let p: &mut TracePoint = prog(ebpf, "probe_tracepoint")?;
    p.load().map_err(|e| format!("load: {e}"))?;
    p.attach("syscalls", "sys_enter_getpid")
        .map_err(|e| format!("attach: {e}"))?;
    Ok(())
}

/// The per-syscall tracepoints exist where the kernel was built with CONFIG_FTRACE_SYSCALLS.
fn try_syscall_tracepoints() -> Result<(), String> {
    let root = crate::hooks::tracefs::root();
    crate::hooks::tracefs::read(&root, "syscalls", "sys_enter_openat")
        .map(|_| ())
        .map_err(|e| format!("{e}: syscall hooks use the raw sys_enter/sys_exit route"))
}

/// A tracepoint program calling `bpf_get_attach_cookie` loads only where the helper exists.
fn try_cookie(ebpf: &mut Ebpf) -> Result<(), String> {
    let p: &mut TracePoint = prog(ebpf, "probe_cookie")?;
    p.load().map_err(|e| {
        format!("bpf_get_attach_cookie refused (kernel before 5.15?): {e}; kprobes and uprobes load one program per attach point")
    })
}

/// A program calling `bpf_loop` loads only where the helper exists.
fn try_bpf_loop(ebpf: &mut Ebpf) -> Result<(), String> {
    let p: &mut TracePoint = prog(ebpf, "probe_bpf_loop")?;
    p.load()
        .map_err(|e| format!("bpf_loop refused (kernel before 5.17?): {e}; not needed by Vigil"))
}

fn try_raw(ebpf: &mut Ebpf) -> Result<(), String> {
    let p: &mut RawTracePoint = prog(ebpf, "probe_raw_tracepoint")?;
    p.load().map_err(|e| format!("load: {e}"))?;
    p.attach("sys_enter").map_err(|e| format!("attach: {e}"))?;
    Ok(())
}

fn try_btf_tp(ebpf: &mut Ebpf, btf: &Btf) -> Result<(), String> {
    let p: &mut BtfTracePoint = prog(ebpf, "probe_send_signal")?;
    p.load("sched_process_free", btf)
        .map_err(|e| format!("load: {e}"))?;
    p.attach().map_err(|e| format!("attach: {e}"))?;
    Ok(())
}

fn try_kprobe(ebpf: &mut Ebpf, name: &str) -> Result<(), String> {
    let p: &mut KProbe = prog(ebpf, name)?;
    p.load().map_err(|e| format!("load: {e}"))?;
    p.attach(TARGET_FN, 0)
        .map_err(|e| format!("attach to {TARGET_FN}: {e}"))?;
    Ok(())
}

fn try_override(ebpf: &mut Ebpf) -> Result<(), String> {
    let p: &mut KProbe = prog(ebpf, "probe_override")?;
    p.load().map_err(|e| {
        format!(
            "bpf_override_return refused (kernel built without CONFIG_BPF_KPROBE_OVERRIDE?): {e}"
        )
    })?;
    Ok(())
}

fn try_fentry(ebpf: &mut Ebpf, btf: &Btf) -> Result<(), String> {
    let p: &mut FEntry = prog(ebpf, "probe_fentry")?;
    p.load(TARGET_FN, btf).map_err(|e| format!("load: {e}"))?;
    p.attach()
        .map_err(|e| format!("attach to {TARGET_FN}: {e}"))?;
    Ok(())
}

fn try_lsm(ebpf: &mut Ebpf, btf: &Btf) -> Result<(), String> {
    let active = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
    if !active.split(',').any(|l| l.trim() == "bpf") {
        return Err(format!(
            "bpf is not in the active LSM list ({:?}); boot with lsm=...,bpf",
            active.trim()
        ));
    }
    let p: &mut Lsm = prog(ebpf, "probe_lsm")?;
    p.load("file_open", btf).map_err(|e| format!("load: {e}"))?;
    p.attach().map_err(|e| format!("attach: {e}"))?;
    Ok(())
}
