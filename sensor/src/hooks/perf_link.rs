//! kprobes, kretprobes and tracepoints attached with a BPF cookie, through perf_event_open(2)
//! and `BPF_LINK_CREATE` directly: aya 0.14 passes no cookie for them. The cookie is the attach
//! point's id, so one loaded program serves every kernel function or tracepoint a policy hooks
//! (`bpf_get_attach_cookie`, kernels >= 5.15).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use aya_obj::generated::perf_event_attr;

const BPF_PERF_EVENT: u32 = 41;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
const PERF_TYPE_TRACEPOINT: u32 = 2;

/// The `BPF_LINK_CREATE` part of `union bpf_attr` for a perf event: the cookie sits in the
/// `perf_event` member of the union that starts at offset 16; the rest stays zero.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    bpf_cookie: u64,
    rest: [u64; 4],
}

/// A perf event (kprobe, kretprobe, tracepoint) with the program linked to it. Dropping it
/// detaches the program and removes the probe.
#[derive(Debug)]
pub struct PerfLink {
    link: OwnedFd,
    _event: OwnedFd,
}

impl PerfLink {
    /// The link's descriptor (to pin it).
    pub fn link_fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd as _;
        self.link.as_fd()
    }
}

fn read_pmu(path: &str) -> io::Result<String> {
    std::fs::read_to_string(path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

/// The kprobe PMU's type, and for return probes the bit of `config` that asks for one.
fn kprobe_pmu(retprobe: bool) -> io::Result<(u32, u64)> {
    let ty: u32 = read_pmu("/sys/bus/event_source/devices/kprobe/type")?
        .trim()
        .parse()
        .map_err(|e| io::Error::other(format!("kprobe PMU type: {e}")))?;
    if !retprobe {
        return Ok((ty, 0));
    }
    // "config:0"
    let fmt = read_pmu("/sys/bus/event_source/devices/kprobe/format/retprobe")?;
    let bit: u32 = fmt
        .trim()
        .strip_prefix("config:")
        .and_then(|b| b.parse().ok())
        .ok_or_else(|| io::Error::other(format!("kprobe retprobe format {fmt:?}")))?;
    Ok((ty, 1u64 << bit))
}

/// Attaches `prog` (a loaded kprobe program) to `function`, entry or return, with `cookie`.
pub fn attach_kprobe(
    prog: BorrowedFd<'_>,
    function: &str,
    retprobe: bool,
    cookie: u64,
) -> io::Result<PerfLink> {
    let (ty, config) = kprobe_pmu(retprobe)?;
    let name = CString::new(function)
        .map_err(|_| io::Error::other(format!("function name {function:?} contains NUL")))?;
    let mut attr = new_attr(ty, config);
    attr.__bindgen_anon_3.config1 = name.as_ptr() as u64; // kprobe_func
    attr.__bindgen_anon_4.config2 = 0; // probe_offset
    let what = format!("a kprobe on {function}");
    // `name` lives until the event is open.
    let event = open_event(&attr, &what)?;
    link(prog, event, cookie, &what)
}

/// Attaches `prog` (a loaded tracepoint program) to the tracepoint with tracefs id `event_id`.
pub fn attach_tracepoint(
    prog: BorrowedFd<'_>,
    event_id: u32,
    what: &str,
    cookie: u64,
) -> io::Result<PerfLink> {
    let mut attr = new_attr(PERF_TYPE_TRACEPOINT, u64::from(event_id));
    attr.__bindgen_anon_1.sample_period = 1;
    attr.__bindgen_anon_2.wakeup_events = 1;
    let what = format!("tracepoint {what}");
    let event = open_event(&attr, &what)?;
    link(prog, event, cookie, &what)
}

fn new_attr(ty: u32, config: u64) -> perf_event_attr {
    // SAFETY: perf_event_attr is a plain C struct for which all-zero is the documented
    // "nothing set" value.
    let mut attr: perf_event_attr = unsafe { std::mem::zeroed() };
    attr.size = std::mem::size_of::<perf_event_attr>() as u32;
    attr.type_ = ty;
    attr.config = config;
    attr
}

/// Opens the event for every task (pid -1) on one CPU, as BPF-attached events are.
fn open_event(attr: &perf_event_attr, what: &str) -> io::Result<OwnedFd> {
    // SAFETY: attr is a valid, fully initialised perf_event_attr that lives across the call
    // (with whatever its pointers point to: the caller keeps them alive).
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr as *const perf_event_attr,
            -1 as libc::c_int,
            0 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("perf_event_open for {what}: {e}"),
        ));
    }
    // SAFETY: the syscall returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

fn link(prog: BorrowedFd<'_>, event: OwnedFd, cookie: u64, what: &str) -> io::Result<PerfLink> {
    let attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_fd: event.as_raw_fd() as u32,
        attach_type: BPF_PERF_EVENT,
        bpf_cookie: cookie,
        ..Default::default()
    };
    let mut attr = attr;
    let link =
        crate::kernel::bpf_syscall::call_fd(crate::kernel::bpf_syscall::BPF_LINK_CREATE, &mut attr)
            .map_err(|e| io::Error::new(e.kind(), format!("linking the program to {what}: {e}")))?;
    Ok(PerfLink {
        link,
        _event: event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_create_attr_puts_the_cookie_at_offset_16() {
        assert_eq!(std::mem::offset_of!(LinkCreateAttr, bpf_cookie), 16);
        assert_eq!(std::mem::offset_of!(LinkCreateAttr, attach_type), 8);
    }
}
