//! Raw ring-buffer records, byte for byte as the kernel writes them (`sensor-bpf/bpf/
//! vigil_abi.h`): for tests across the crate and for the in-process replay ([`crate::process::replay`]).

use vigil_sensor_bpf::abi::{self, Record as AbiRecord};

/// The bytes of a fixed-layout record, as the kernel writes them.
pub fn bytes_of<T: AbiRecord>(v: &T) -> Vec<u8> {
    // SAFETY: `abi::Record` types are repr(C) integers with explicit padding fields, so
    // every byte of `v` is initialised; the slice lives only for the copy.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
        .to_vec()
}

/// One argument: kind, aux and its bytes.
pub type RawArg = (u8, u32, Vec<u8>);

pub fn int(v: i64) -> RawArg {
    (abi::argk::INT, 0, v.to_le_bytes().to_vec())
}

pub fn raw(kind: u8, bytes: &[u8]) -> RawArg {
    (kind, bytes.len() as u32, bytes.to_vec())
}

/// A hook record: `rec`'s header size, nargs and per-argument fields are filled in.
pub fn hook_bytes(mut rec: abi::HookRec, args: &[RawArg]) -> Vec<u8> {
    let data: usize = args.iter().map(|a| a.2.len()).sum();
    rec.hdr.kind = abi::MSG_HOOK;
    rec.hdr.size = (std::mem::size_of::<abi::HookRec>() + data) as u32;
    rec.nargs = args.len() as u32;
    for (i, (kind, aux, bytes)) in args.iter().enumerate() {
        rec.arg_kind[i] = *kind;
        rec.arg_aux[i] = *aux;
        rec.arg_len[i] = bytes.len() as u32;
    }
    let mut out = bytes_of(&rec);
    for a in args {
        out.extend_from_slice(&a.2);
    }
    out
}

/// An exec record: `rec`'s header and the lengths of its variable parts are filled in; `args`
/// is the NUL-separated argv block.
pub fn exec_bytes(
    mut rec: abi::Exec,
    binary: &str,
    args: &[u8],
    cwd: &str,
    cgroup: &str,
) -> Vec<u8> {
    let data = binary.len() + args.len() + cwd.len() + cgroup.len();
    rec.hdr.kind = abi::MSG_EXEC;
    rec.hdr.size = (std::mem::size_of::<abi::Exec>() + data) as u32;
    rec.binary_len = binary.len() as u16;
    rec.args_len = args.len() as u16;
    rec.cwd_len = cwd.len() as u16;
    rec.cgroup_name_len = cgroup.len() as u16;
    let mut out = bytes_of(&rec);
    out.extend_from_slice(binary.as_bytes());
    out.extend_from_slice(args);
    out.extend_from_slice(cwd.as_bytes());
    out.extend_from_slice(cgroup.as_bytes());
    out
}
