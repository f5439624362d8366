//! Rust mirror of `bpf/vigil_abi.h`. Keep both in step: `layout_matches_c_header` compiles the
//! header with the host C compiler and compares every size and offset.

/// Record kinds.
pub const MSG_EXEC: u32 = 1;
pub const MSG_FORK: u32 = 2;
pub const MSG_EXIT: u32 = 3;

pub const PATH_MAX: usize = 4096;
pub const ARGS_MAX: usize = 8192;
pub const CGROUP_NAME_MAX: usize = 256;
pub const BIN_KEEP: usize = 256;
pub const PATH_DEPTH: usize = 64;

/// `vigil_exec.kflags` bits.
pub mod kflags {
    pub const TRUNC_ARGS: u32 = 1 << 0;
    pub const TRUNC_BINARY: u32 = 1 << 1;
    pub const TRUNC_CWD: u32 = 1 << 2;
    pub const CLONE: u32 = 1 << 3;
    pub const NO_PARENT: u32 = 1 << 4;
    pub const ERR_ARGS: u32 = 1 << 5;
    pub const ERR_CWD: u32 = 1 << 6;
    pub const PROCFS: u32 = 1 << 7;
    pub const EXECVE: u32 = 1 << 8;
}

/// Indexes of the per-CPU counter array `vigil_counters`.
pub mod counters {
    pub const RB_LOST_EXEC: u32 = 0;
    pub const RB_LOST_FORK: u32 = 1;
    pub const RB_LOST_EXIT: u32 = 2;
    pub const PROC_TABLE_FULL: u32 = 3;
    pub const EXEC_SEEN: u32 = 4;
    pub const FORK_SEEN: u32 = 5;
    pub const EXIT_SEEN: u32 = 6;
    pub const NUM: u32 = 8;
}

pub const NS_COUNT: usize = 10;

/// Slots of the namespace array (`VIGIL_NS_*`), in the order of the event's `ns` object.
pub mod ns_slot {
    pub const UTS: usize = 0;
    pub const IPC: usize = 1;
    pub const MNT: usize = 2;
    pub const PID: usize = 3;
    pub const PID_FOR_CHILDREN: usize = 4;
    pub const NET: usize = 5;
    pub const TIME: usize = 6;
    pub const TIME_FOR_CHILDREN: usize = 7;
    pub const CGROUP: usize = 8;
    pub const USER: usize = 9;
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MsgHeader {
    pub kind: u32,
    pub size: u32,
    pub time: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub suid: u32,
    pub sgid: u32,
    pub fsuid: u32,
    pub fsgid: u32,
    pub securebits: u32,
    pub auid: u32,
    pub cap_permitted: u64,
    pub cap_effective: u64,
    pub cap_inheritable: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exec {
    pub hdr: MsgHeader,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub kflags: u32,
    pub ktime: u64,
    pub parent_ktime: u64,
    pub creds: Creds,
    pub ns: [u32; NS_COUNT],
    pub cgroup_id: u64,
    pub args_total: u32,
    pub binary_len: u16,
    pub args_len: u16,
    pub cwd_len: u16,
    pub cgroup_name_len: u16,
    pub pad: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fork {
    pub hdr: MsgHeader,
    pub pid: u32,
    pub ppid: u32,
    pub ktime: u64,
    pub parent_ktime: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exit {
    pub hdr: MsgHeader,
    pub pid: u32,
    pub tid: u32,
    pub ktime: u64,
    pub exit_code: u32,
    pub pad: u32,
}

/// Value of the kernel process table `vigil_procs` (key: tgid as `u32`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub ktime: u64,
    pub parent_ktime: u64,
    pub kflags: u32,
    pub bin_len: u16,
    pub pad: u16,
    pub cap_permitted: u64,
    pub cap_effective: u64,
    pub cap_inheritable: u64,
    pub ns: [u32; NS_COUNT],
    pub cgroup_id: u64,
    pub bin: [u8; BIN_KEEP],
}

impl Default for Proc {
    fn default() -> Self {
        Self {
            pid: 0,
            ppid: 0,
            ktime: 0,
            parent_ktime: 0,
            kflags: 0,
            bin_len: 0,
            pad: 0,
            cap_permitted: 0,
            cap_effective: 0,
            cap_inheritable: 0,
            ns: [0; NS_COUNT],
            cgroup_id: 0,
            bin: [0; BIN_KEEP],
        }
    }
}

// SAFETY: `Proc` is `repr(C)`, made only of integers and integer arrays with explicit padding
// fields, so every bit pattern is valid and it has no uninitialised bytes.
unsafe impl aya::Pod for Proc {}

/// A fixed-layout record that can be read from ring-buffer bytes.
///
/// # Safety
/// Implementors must be `repr(C)` plain integers (every bit pattern valid).
pub unsafe trait Record: Copy {}
// SAFETY: all of these are repr(C) structs of integers and integer arrays.
unsafe impl Record for MsgHeader {}
// SAFETY: as above.
unsafe impl Record for Exec {}
// SAFETY: as above.
unsafe impl Record for Fork {}
// SAFETY: as above.
unsafe impl Record for Exit {}

/// Reads a `T` from the start of `bytes`, or `None` when there are too few bytes.
pub fn read_record<T: Record>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: the length was checked above, `read_unaligned` has no alignment requirement, and
    // `Record` guarantees every bit pattern is a valid `T`.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};
    use std::process::Command;

    /// Compiles a C program that prints the header's layout and compares it with Rust's.
    #[test]
    fn layout_matches_c_header() {
        let dir = std::env::temp_dir().join(format!("vigil-abi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let header = concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/vigil_abi.h");
        let mut c = format!(
            "#include <stdio.h>\n#include <stddef.h>\n#include \"{header}\"\n#define P(t,f) printf(\"%s.%s %zu\\n\", #t, #f, offsetof(struct t, f));\n#define S(t) printf(\"%s %zu\\n\", #t, sizeof(struct t));\nint main(void) {{\n"
        );
        let mut expected = Vec::new();
        macro_rules! check {
            ($cname:literal, $ty:ty, [$($f:ident),*]) => {
                c.push_str(&format!("S({})\n", $cname));
                expected.push(format!("{} {}", $cname, size_of::<$ty>()));
                $(
                    c.push_str(&format!("P({},{})\n", $cname, stringify!($f)));
                    expected.push(format!("{}.{} {}", $cname, stringify!($f), offset_of!($ty, $f)));
                )*
            };
        }
        check!("vigil_msg_header", MsgHeader, [kind, size, time]);
        check!(
            "vigil_creds",
            Creds,
            [
                uid,
                gid,
                euid,
                egid,
                suid,
                sgid,
                fsuid,
                fsgid,
                securebits,
                auid,
                cap_permitted,
                cap_effective,
                cap_inheritable
            ]
        );
        check!(
            "vigil_exec",
            Exec,
            [
                hdr,
                pid,
                tid,
                ppid,
                kflags,
                ktime,
                parent_ktime,
                creds,
                ns,
                cgroup_id,
                args_total,
                binary_len,
                args_len,
                cwd_len,
                cgroup_name_len,
                pad
            ]
        );
        check!("vigil_fork", Fork, [hdr, pid, ppid, ktime, parent_ktime]);
        check!("vigil_exit", Exit, [hdr, pid, tid, ktime, exit_code, pad]);
        check!(
            "vigil_proc",
            Proc,
            [
                pid,
                ppid,
                ktime,
                parent_ktime,
                kflags,
                bin_len,
                pad,
                cap_permitted,
                cap_effective,
                cap_inheritable,
                ns,
                cgroup_id,
                bin
            ]
        );
        c.push_str("return 0; }\n");
        let src = dir.join("layout.c");
        let bin = dir.join("layout");
        std::fs::write(&src, c).unwrap();
        let status = Command::new("cc")
            .arg(&src)
            .arg("-o")
            .arg(&bin)
            .status()
            .expect("run cc");
        assert!(status.success(), "cc failed on the layout program");
        let out = Command::new(&bin).output().expect("run layout program");
        let got: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(got, expected, "bpf/vigil_abi.h and src/abi.rs disagree");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn constants_match_c_header() {
        let header = include_str!("../bpf/vigil_abi.h");
        for (name, value) in [
            ("VIGIL_MSG_EXEC", MSG_EXEC as usize),
            ("VIGIL_MSG_FORK", MSG_FORK as usize),
            ("VIGIL_MSG_EXIT", MSG_EXIT as usize),
            ("VIGIL_PATH_MAX", PATH_MAX),
            ("VIGIL_ARGS_MAX", ARGS_MAX),
            ("VIGIL_CGROUP_NAME_MAX", CGROUP_NAME_MAX),
            ("VIGIL_BIN_KEEP", BIN_KEEP),
            ("VIGIL_PATH_DEPTH", PATH_DEPTH),
            ("VIGIL_NS_COUNT", NS_COUNT),
            ("VIGIL_NS_UTS", ns_slot::UTS),
            ("VIGIL_NS_IPC", ns_slot::IPC),
            ("VIGIL_NS_MNT", ns_slot::MNT),
            ("VIGIL_NS_PID", ns_slot::PID),
            ("VIGIL_NS_PID_FOR_CHILDREN", ns_slot::PID_FOR_CHILDREN),
            ("VIGIL_NS_NET", ns_slot::NET),
            ("VIGIL_NS_TIME", ns_slot::TIME),
            ("VIGIL_NS_TIME_FOR_CHILDREN", ns_slot::TIME_FOR_CHILDREN),
            ("VIGIL_NS_CGROUP", ns_slot::CGROUP),
            ("VIGIL_NS_USER", ns_slot::USER),
            ("VIGIL_CNT_NUM", counters::NUM as usize),
        ] {
            let line = header
                .lines()
                .find(|l| l.starts_with(&format!("#define {name} ")))
                .unwrap_or_else(|| panic!("{name} missing from the header"));
            let v: usize = line.split_whitespace().nth(2).unwrap().parse().unwrap();
            assert_eq!(v, value, "{name}");
        }
    }

    #[test]
    fn read_record_checks_length() {
        let bytes = [0u8; 8];
        assert!(read_record::<MsgHeader>(&bytes).is_none());
        let mut bytes = [0u8; 16];
        bytes[0] = 3;
        bytes[4] = 16;
        let h = read_record::<MsgHeader>(&bytes).unwrap();
        assert_eq!((h.kind, h.size), (3, 16));
    }

    #[test]
    fn objects_are_embedded() {
        assert!(crate::PROCESS_OBJ.starts_with(b"\x7fELF"));
        assert!(crate::PROBE_OBJ.starts_with(b"\x7fELF"));
    }
}
