//! Decoding of ring-buffer records (see `sensor-bpf/bpf/vigil_abi.h`) into owned values.

use vigil_sensor_bpf::abi::{self, Creds, MsgHeader, read_record};

use crate::error::SensorError;

/// An exec record with its variable parts split out.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecRecord {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub kflags: u32,
    pub ktime: u64,
    pub parent_ktime: u64,
    pub creds: Creds,
    pub ns: [u32; abi::NS_COUNT],
    pub cgroup_id: u64,
    /// The process's pid in its own PID namespace (the container's view).
    pub nspid: u32,
    pub binary: String,
    /// argv[0..] as the kernel had it (argv[0] included).
    pub argv: Vec<String>,
    pub args_total: u32,
    pub cwd: String,
    pub cgroup_name: String,
}

/// One argument of a hook record: how the kernel laid it out, its aux word and its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookArg {
    /// `abi::argk::*`.
    pub kind: u8,
    /// `abi::aux::*` bits and, in the low 30 bits, the full length where known.
    pub aux: u32,
    pub data: Vec<u8>,
}

impl HookArg {
    /// The value could not be read (`aux::ERR`).
    pub fn is_error(&self) -> bool {
        self.aux & abi::aux::ERR != 0
    }

    /// The value was cut to fit (`aux::CUT`).
    pub fn is_cut(&self) -> bool {
        self.aux & abi::aux::CUT != 0
    }

    /// The full length where the kernel knew it (for buffers: the requested size).
    pub fn full_len(&self) -> u32 {
        self.aux & abi::aux::LEN_MASK
    }
}

/// A hook record (`VIGIL_MSG_HOOK`) with its arguments split out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookRecord {
    /// Boot-clock ns when the hook fired.
    pub time: u64,
    pub pid: u32,
    pub tid: u32,
    /// The process's exec identity (0 unknown).
    pub ktime: u64,
    /// Hook slot and the generation it was written under.
    pub hook: u32,
    pub policy: u32,
    pub generation: u32,
    /// Index of the matching selector, 0xffff for hooks without selectors.
    pub selector: u16,
    /// Bit `1 << abi::act::*` per action that ran (or would have, in monitor mode).
    pub actions: u16,
    /// Return value (meaningful when `flags` has `hf::RETURN`).
    pub ret: i64,
    /// `abi::hf::*`.
    pub flags: u32,
    pub args: Vec<HookArg>,
}

impl HookRecord {
    pub fn is_return(&self) -> bool {
        self.flags & abi::hf::RETURN != 0
    }

    pub fn has_action(&self, act: u8) -> bool {
        u32::from(act) < 16 && self.actions & (1u16 << act) != 0
    }
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Exec(Box<ExecRecord>),
    Fork(abi::Fork),
    Exit(abi::Exit),
    Hook(Box<HookRecord>),
    /// Self-protection refused an operation.
    Protect(Box<abi::ProtectRec>),
}

/// Decodes one record. Sizes are checked against the header so a corrupt record is an error,
/// never an out-of-bounds read.
pub fn decode(bytes: &[u8]) -> Result<Record, SensorError> {
    let hdr: MsgHeader = read_record(bytes).ok_or_else(|| {
        SensorError::Decode(format!("{} bytes: shorter than a header", bytes.len()))
    })?;
    if hdr.size as usize > bytes.len() {
        return Err(SensorError::Decode(format!(
            "header says {} bytes, record has {}",
            hdr.size,
            bytes.len()
        )));
    }
    let bytes = &bytes[..hdr.size as usize];
    match hdr.kind {
        abi::MSG_EXEC => decode_exec(bytes).map(|e| Record::Exec(Box::new(e))),
        abi::MSG_FORK => read_record(bytes)
            .map(Record::Fork)
            .ok_or_else(|| SensorError::Decode("short fork record".into())),
        abi::MSG_EXIT => read_record(bytes)
            .map(Record::Exit)
            .ok_or_else(|| SensorError::Decode("short exit record".into())),
        abi::MSG_HOOK => decode_hook(bytes).map(|h| Record::Hook(Box::new(h))),
        abi::MSG_PROTECT => read_record(bytes)
            .map(|r| Record::Protect(Box::new(r)))
            .ok_or_else(|| SensorError::Decode("short self-protection record".into())),
        k => Err(SensorError::Decode(format!("unknown record kind {k}"))),
    }
}

fn decode_exec(bytes: &[u8]) -> Result<ExecRecord, SensorError> {
    let r: abi::Exec =
        read_record(bytes).ok_or_else(|| SensorError::Decode("short exec record".into()))?;
    let mut data = &bytes[std::mem::size_of::<abi::Exec>()..];
    let mut take = |len: u16, what: &str| -> Result<&[u8], SensorError> {
        let len = len as usize;
        if len > data.len() {
            return Err(SensorError::Decode(format!(
                "exec record: {what} length {len} exceeds the {} bytes left",
                data.len()
            )));
        }
        let (head, rest) = data.split_at(len);
        data = rest;
        Ok(head)
    };
    let binary = lossy(take(r.binary_len, "binary")?);
    let args = take(r.args_len, "args")?;
    let cwd = lossy(take(r.cwd_len, "cwd")?);
    let cgroup_name = lossy(take(r.cgroup_name_len, "cgroup name")?);
    Ok(ExecRecord {
        pid: r.pid,
        tid: r.tid,
        ppid: r.ppid,
        kflags: r.kflags,
        ktime: r.ktime,
        parent_ktime: r.parent_ktime,
        creds: r.creds,
        ns: r.ns,
        cgroup_id: r.cgroup_id,
        nspid: r.nspid,
        binary,
        argv: split_argv(args),
        args_total: r.args_total,
        cwd,
        cgroup_name,
    })
}

fn decode_hook(bytes: &[u8]) -> Result<HookRecord, SensorError> {
    let r: abi::HookRec =
        read_record(bytes).ok_or_else(|| SensorError::Decode("short hook record".into()))?;
    let nargs = r.nargs as usize;
    if nargs > abi::HOOK_ARGS {
        return Err(SensorError::Decode(format!(
            "hook record: {nargs} arguments, at most {} allowed",
            abi::HOOK_ARGS
        )));
    }
    let mut data = bytes
        .get(std::mem::size_of::<abi::HookRec>()..)
        .unwrap_or(&[]);
    let mut args = Vec::with_capacity(nargs);
    for i in 0..nargs {
        let len = r.arg_len[i] as usize;
        if len > data.len() {
            return Err(SensorError::Decode(format!(
                "hook record: argument {i} length {len} exceeds the {} bytes left",
                data.len()
            )));
        }
        let (head, rest) = data.split_at(len);
        data = rest;
        args.push(HookArg {
            kind: r.arg_kind[i],
            aux: r.arg_aux[i],
            data: head.to_vec(),
        });
    }
    if !data.is_empty() {
        return Err(SensorError::Decode(format!(
            "hook record: {} bytes after the last argument",
            data.len()
        )));
    }
    Ok(HookRecord {
        time: r.hdr.time,
        pid: r.pid,
        tid: r.tid,
        ktime: r.ktime,
        hook: r.hook,
        policy: r.policy,
        generation: r.generation,
        selector: r.selector,
        actions: r.actions,
        ret: r.ret,
        flags: r.flags,
        args,
    })
}

/// Splits a NUL-separated argv block. A trailing NUL ends the last argument; a block cut in the
/// middle of an argument keeps the partial argument.
pub fn split_argv(block: &[u8]) -> Vec<String> {
    let block = block.strip_suffix(&[0]).unwrap_or(block);
    if block.is_empty() {
        return Vec::new();
    }
    block.split(|b| *b == 0).map(lossy).collect()
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Builders of raw record bytes for tests across the crate.
#[cfg(test)]
pub(crate) use crate::kernel::record_bytes as testutil;

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    fn exec_bytes(binary: &str, args: &[u8], cwd: &str, cg: &str) -> Vec<u8> {
        let data_len = binary.len() + args.len() + cwd.len() + cg.len();
        let r = abi::Exec {
            hdr: MsgHeader {
                kind: abi::MSG_EXEC,
                size: (std::mem::size_of::<abi::Exec>() + data_len) as u32,
                time: 5,
            },
            pid: 42,
            tid: 42,
            ppid: 1,
            ktime: 5,
            binary_len: binary.len() as u16,
            args_len: args.len() as u16,
            cwd_len: cwd.len() as u16,
            cgroup_name_len: cg.len() as u16,
            ..Default::default()
        };
        let mut out = vec![0u8; std::mem::size_of::<abi::Exec>()];
        // Build the fixed part byte-exactly through the same reader used in production.
        let header: [u8; std::mem::size_of::<abi::Exec>()] =
            // SAFETY: abi::Exec is repr(C) integers only; viewing it as bytes is sound.
            unsafe { std::mem::transmute(r) };
        out.copy_from_slice(&header);
        out.extend_from_slice(binary.as_bytes());
        out.extend_from_slice(args);
        out.extend_from_slice(cwd.as_bytes());
        out.extend_from_slice(cg.as_bytes());
        out
    }

    #[test]
    fn decodes_exec_parts() {
        let b = exec_bytes(
            "/usr/bin/echo",
            b"echo\0hello world\0x\0",
            "/tmp",
            "session-3.scope",
        );
        let Record::Exec(e) = decode(&b).unwrap() else {
            panic!("not exec")
        };
        assert_eq!(e.binary, "/usr/bin/echo");
        assert_eq!(e.argv, vec!["echo", "hello world", "x"]);
        assert_eq!(e.cwd, "/tmp");
        assert_eq!(e.cgroup_name, "session-3.scope");
        assert_eq!(e.pid, 42);
    }

    #[test]
    fn rejects_inconsistent_lengths() {
        let mut b = exec_bytes("/bin/true", b"true\0", "/", "");
        b.truncate(b.len() - 3);
        assert!(decode(&b).is_err(), "size larger than the record must fail");
        let mut b = exec_bytes("/bin/true", b"true\0", "/", "");
        // binary_len lies: claims more than the data holds.
        let off = std::mem::offset_of!(abi::Exec, binary_len);
        b[off..off + 2].copy_from_slice(&5000u16.to_ne_bytes());
        let err = decode(&b).unwrap_err().to_string();
        assert!(err.contains("binary length 5000"), "{err}");
        assert!(decode(&[1, 2, 3]).is_err());
        let mut b = exec_bytes("/bin/true", b"", "/", "");
        b[0] = 99;
        assert!(
            decode(&b)
                .unwrap_err()
                .to_string()
                .contains("unknown record kind 99")
        );
    }

    #[test]
    fn argv_splitting() {
        assert_eq!(split_argv(b""), Vec::<String>::new());
        assert_eq!(split_argv(b"a\0"), vec!["a"]);
        assert_eq!(split_argv(b"a\0\0b\0"), vec!["a", "", "b"]);
        assert_eq!(split_argv(b"a\0partial"), vec!["a", "partial"]);
    }

    fn hook_rec() -> abi::HookRec {
        abi::HookRec {
            hdr: MsgHeader {
                time: 77,
                ..Default::default()
            },
            pid: 42,
            tid: 43,
            ktime: 1000,
            hook: 3,
            policy: 1,
            generation: 9,
            selector: 0xffff,
            actions: 1 << abi::act::POST,
            ret: -2,
            flags: abi::hf::RETURN,
            ..Default::default()
        }
    }

    #[test]
    fn decodes_hook_arguments() {
        let b = hook_bytes(
            hook_rec(),
            &[
                int(-1),
                raw(abi::argk::STR, b"/etc/passwd"),
                (abi::argk::BUF, abi::aux::CUT | 9000, vec![1, 2, 3]),
                (abi::argk::FD, abi::aux::ERR, vec![]),
            ],
        );
        let Record::Hook(h) = decode(&b).unwrap() else {
            panic!("not a hook record")
        };
        assert_eq!(
            (h.time, h.pid, h.tid, h.ktime, h.hook, h.generation, h.ret),
            (77, 42, 43, 1000, 3, 9, -2)
        );
        assert!(h.is_return());
        assert!(h.has_action(abi::act::POST) && !h.has_action(abi::act::SIGKILL));
        assert_eq!(h.args.len(), 4);
        assert_eq!(h.args[0].data, (-1i64).to_le_bytes());
        assert_eq!(h.args[1].data, b"/etc/passwd");
        assert!(h.args[2].is_cut() && h.args[2].full_len() == 9000);
        assert!(h.args[3].is_error() && h.args[3].data.is_empty());
    }

    #[test]
    fn rejects_corrupt_hook_records() {
        let good = hook_bytes(hook_rec(), &[int(1), raw(abi::argk::STR, b"abc")]);
        assert!(decode(&good).is_ok());
        // Shorter than its header claims.
        let mut b = good.clone();
        b.truncate(b.len() - 1);
        assert!(matches!(decode(&b), Err(SensorError::Decode(_))));
        // Shorter than the fixed part (header size adjusted so only the fixed part is short).
        let mut b = good[..40].to_vec();
        b[4..8].copy_from_slice(&40u32.to_ne_bytes());
        let err = decode(&b).unwrap_err().to_string();
        assert!(err.contains("short hook record"), "{err}");
        // An argument length past the end.
        let mut b = good.clone();
        let off = std::mem::offset_of!(abi::HookRec, arg_len) + 4;
        b[off..off + 4].copy_from_slice(&u32::MAX.to_ne_bytes());
        let err = decode(&b).unwrap_err().to_string();
        assert!(err.contains("argument 1 length"), "{err}");
        // Too many arguments.
        let mut b = good.clone();
        let off = std::mem::offset_of!(abi::HookRec, nargs);
        b[off..off + 4].copy_from_slice(&6u32.to_ne_bytes());
        let err = decode(&b).unwrap_err().to_string();
        assert!(err.contains("6 arguments"), "{err}");
        // Lengths that leave bytes unaccounted for.
        let mut b = good.clone();
        let off = std::mem::offset_of!(abi::HookRec, arg_len) + 4;
        b[off..off + 4].copy_from_slice(&1u32.to_ne_bytes());
        let err = decode(&b).unwrap_err().to_string();
        assert!(err.contains("2 bytes after the last argument"), "{err}");
        // Every truncation is an error, never a panic.
        for n in 0..good.len() {
            let mut b = good[..n].to_vec();
            if b.len() >= 8 {
                b[4..8].copy_from_slice(&(n as u32).to_ne_bytes());
            }
            assert!(decode(&b).is_err(), "{n} bytes decoded");
        }
    }
}
