//! fmod_ret (BPF_MODIFY_RETURN) programs through the bpf(2) syscall directly: aya 0.14 has no
//! program type for them. Only the feature probe uses this today: it loads `r0 = 0; exit` as an
//! fmod_ret program on a `security_*` function and attaches it, which succeeds exactly where the
//! kernel lets BPF change that function's return value.

use std::os::fd::OwnedFd;

use aya::Btf;
use aya_obj::btf::BtfKind;

use crate::kernel::bpf_syscall::{BPF_PROG_LOAD, BPF_RAW_TRACEPOINT_OPEN};
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_MODIFY_RETURN: u32 = 26;

/// The `BPF_PROG_LOAD` part of `union bpf_attr` (include/uapi/linux/bpf.h), zero-padded.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_btf_obj_fd: u32,
    pad: [u32; 7],
}

/// The `BPF_RAW_TRACEPOINT_OPEN` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct RawTpOpenAttr {
    name: u64,
    prog_fd: u32,
    pad: u32,
    cookie: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<OwnedFd> {
    crate::kernel::bpf_syscall::call_fd(cmd, attr)
}

/// Loads and attaches a do-nothing fmod_ret program on `function`; both are released before
/// returning. `Err` says which step the kernel refused and why.
pub fn probe(btf: &Btf, function: &str) -> Result<(), String> {
    let btf_id = btf
        .id_by_type_name_kind(function, BtfKind::Func)
        .map_err(|e| format!("{function} not in the kernel BTF: {e}"))?;
    // r0 = 0; exit
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = c"GPL";
    let mut log = vec![0u8; 4096];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_TRACING,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        expected_attach_type: BPF_MODIFY_RETURN,
        attach_btf_id: btf_id,
        ..Default::default()
    };
    attr.prog_name[..12].copy_from_slice(b"vigil_fmodrt");
    let prog = bpf(BPF_PROG_LOAD, &mut attr).map_err(|e| {
        let text = String::from_utf8_lossy(&log);
        format!("load: {e}: {}", text.trim_end_matches('\0').trim())
    })?;
    use std::os::fd::AsRawFd;
    let mut open = RawTpOpenAttr {
        prog_fd: prog.as_raw_fd() as u32,
        ..Default::default()
    };
    let _link = bpf(BPF_RAW_TRACEPOINT_OPEN, &mut open)
        .map_err(|e| format!("attach to {function}: {e}"))?;
    Ok(())
}
