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
    pub binary: String,
    /// argv[0..] as the kernel had it (argv[0] included).
    pub argv: Vec<String>,
    pub args_total: u32,
    pub cwd: String,
    pub cgroup_name: String,
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Exec(Box<ExecRecord>),
    Fork(abi::Fork),
    Exit(abi::Exit),
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
        binary,
        argv: split_argv(args),
        args_total: r.args_total,
        cwd,
        cgroup_name,
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

#[cfg(test)]
mod tests {
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
}
