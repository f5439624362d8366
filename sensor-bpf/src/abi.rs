//! Rust mirror of `bpf/vigil_abi.h`. Keep both in step: `layout_matches_c_header` compiles the
//! header with the host C compiler and compares every size and offset.

/// Record kinds.
pub const MSG_EXEC: u32 = 1;
pub const MSG_FORK: u32 = 2;
pub const MSG_EXIT: u32 = 3;
pub const MSG_HOOK: u32 = 4;
/// Self-protection refused an operation (`vigil_protect_rec`).
pub const MSG_PROTECT: u32 = 5;

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
    pub const RB_LOST_HOOK: u32 = 7;
    pub const HOOK_NO_CFG: u32 = 8;
    pub const PENDING_FULL: u32 = 9;
    pub const NUM: u32 = 12;
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
    /// Thread group id in the process's own PID namespace (the container's pid).
    pub nspid: u32,
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

// ------------------------------------------------------------------------------ hook engine

pub const MAX_POLICIES: usize = 256;
pub const MAX_HOOKS: usize = 512;
pub const MAX_ATTACH: usize = 512;
pub const ATTACH_HOOKS: usize = 8;
pub const SYSCALL_MAX: usize = 512;
pub const HOOK_ARGS: usize = 5;
pub const HOOK_SELECTORS: usize = 5;
pub const SEL_ARG_FILTERS: usize = 5;
pub const SEL_RET_FILTERS: usize = 2;
pub const SEL_BIN_FILTERS: usize = 2;
pub const SEL_NS_FILTERS: usize = 4;
pub const SEL_CAP_FILTERS: usize = 2;
pub const SEL_ACTIONS: usize = 4;
pub const FILTER_RANGES: usize = 4;
pub const STR_MAX: usize = 248;
pub const ARG_SLOT: usize = 4096;
pub const ANCESTOR_DEPTH: usize = 8;
pub const STAT_NUM: usize = 8;

/// `vigil_hook_cfg.source`
pub mod source {
    pub const REGS: u8 = 1;
    pub const SYSCALL_WRAPPER: u8 = 2;
    pub const TRACEPOINT: u8 = 3;
    pub const BTF_ARGS: u8 = 4;
}

/// `vigil_hook_cfg.flags`
pub mod hook_flags {
    pub const RETURN: u32 = 1 << 0;
    pub const USER_MEM: u32 = 1 << 1;
    pub const NEED_CAPS: u32 = 1 << 2;
    pub const NEED_NS: u32 = 1 << 3;
    pub const CAN_OVERRIDE: u32 = 1 << 4;
    /// Some selector reads the process table entry (binaries, capability/namespace changes).
    pub const NEED_PROC: u32 = 1 << 5;
}

/// Argument kinds (`VIGIL_ARGK_*`).
pub mod argk {
    pub const INT: u8 = 1;
    pub const STR: u8 = 2;
    pub const BUF: u8 = 3;
    pub const FD: u8 = 4;
    pub const FILE: u8 = 5;
    pub const PATH: u8 = 6;
    pub const DENTRY: u8 = 7;
    pub const BINPRM: u8 = 8;
    pub const SOCK: u8 = 9;
    pub const FD_SOCK: u8 = 10;
    pub const SOCKADDR: u8 = 11;
    pub const CRED: u8 = 12;
}

/// `vigil_arg_cfg.flags`
pub mod argf {
    pub const SIGNED: u8 = 1 << 0;
    pub const RETURN_COPY: u8 = 1 << 1;
    pub const SIZE_ARG: u8 = 1 << 2;
}

/// Filter operators: the numbers of `vigil.policy.v1.ArgOperator` (`VIGIL_OP_*`).
pub mod op {
    pub const EQUAL: u8 = 1;
    pub const NOT_EQUAL: u8 = 2;
    pub const PREFIX: u8 = 3;
    pub const NOT_PREFIX: u8 = 4;
    pub const POSTFIX: u8 = 5;
    pub const NOT_POSTFIX: u8 = 6;
    pub const GT: u8 = 7;
    pub const LT: u8 = 8;
    pub const MASK: u8 = 9;
    pub const IN_RANGE: u8 = 10;
    pub const NOT_IN_RANGE: u8 = 11;
    pub const IN_MAP: u8 = 12;
    pub const NOT_IN_MAP: u8 = 13;
    pub const SADDR: u8 = 18;
    pub const NOT_SADDR: u8 = 19;
    pub const DADDR: u8 = 20;
    pub const NOT_DADDR: u8 = 21;
    pub const SPORT: u8 = 22;
    pub const NOT_SPORT: u8 = 23;
    pub const SPORT_PRIV: u8 = 24;
    pub const NOT_SPORT_PRIV: u8 = 25;
    pub const DPORT: u8 = 26;
    pub const NOT_DPORT: u8 = 27;
    pub const DPORT_PRIV: u8 = 28;
    pub const NOT_DPORT_PRIV: u8 = 29;
    pub const PROTOCOL: u8 = 30;
    pub const FAMILY: u8 = 31;
    pub const STATE: u8 = 32;
}

pub const SET_IN: u8 = 1;
pub const SET_NOT_IN: u8 = 2;

/// Binary operators: the numbers of `vigil.policy.v1.BinaryOperator`.
pub mod binop {
    pub const IN: u8 = 1;
    pub const NOT_IN: u8 = 2;
    pub const PREFIX: u8 = 3;
    pub const NOT_PREFIX: u8 = 4;
    pub const POSTFIX: u8 = 5;
    pub const NOT_POSTFIX: u8 = 6;
}

pub const PID_FOLLOW_FORKS: u8 = 1 << 0;
pub const PID_NAMESPACE: u8 = 1 << 1;

/// Actions: the numbers of `vigil.policy.v1.ActionKind`.
pub mod act {
    pub const POST: u8 = 1;
    pub const NOPOST: u8 = 2;
    pub const SIGKILL: u8 = 3;
    pub const SIGNAL: u8 = 4;
    pub const OVERRIDE: u8 = 5;
}

pub mod scope {
    pub const THREAD: u8 = 1;
    pub const PROCESS: u8 = 2;
    pub const GLOBAL: u8 = 3;
}

pub const MODE_ENFORCE: u32 = 1;
pub const MODE_MONITOR: u32 = 2;

/// `vigil_policy_cfg.scope_flags` (`VIGIL_POL_*`).
pub mod pol_scope {
    /// Only tasks in the scope run the policy's hooks; without it, every task does.
    pub const SCOPED: u32 = 1 << 0;
    /// Host processes (cgroup not in `vigil_containers`) are in the scope.
    pub const HOST: u32 = 1 << 1;
}

/// Entries of `vigil_containers`: the node's container cgroups.
pub const MAX_CONTAINERS: usize = 8192;

/// Per-policy counters (`VIGIL_STAT_*`).
pub mod stat {
    pub const MATCHED: usize = 0;
    pub const POSTED: usize = 1;
    pub const LOST: usize = 2;
    pub const RATE_LIMITED: usize = 3;
    pub const SIGKILL: usize = 4;
    pub const SIGNAL: usize = 5;
    pub const OVERRIDE: usize = 6;
    pub const MONITORED: usize = 7;
}

/// `vigil_hook_rec.flags`
pub mod hf {
    pub const RETURN: u32 = 1 << 0;
    pub const MONITOR: u32 = 1 << 1;
    pub const NO_PROC: u32 = 1 << 2;
}

/// `vigil_hook_rec.arg_aux`
pub mod aux {
    pub const CUT: u32 = 1 << 31;
    pub const ERR: u32 = 1 << 30;
    pub const LEN_MASK: u32 = 0x3fff_ffff;
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Config {
    pub self_tgid: u32,
    pub host_userns: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyCfg {
    pub enabled: u32,
    pub mode: u32,
    /// Workload scope: a `vigil_ints` set of cgroup ids (0: no container selected).
    pub scope_set: u32,
    /// [`pol_scope`] bits: whether the policy is scoped at all, and whether host processes are
    /// in its scope.
    pub scope_flags: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArgCfg {
    pub kind: u8,
    pub index: u8,
    pub size: u8,
    pub flags: u8,
    pub size_arg: u8,
    pub pad: u8,
    pub tp_offset: u16,
    /// Strings and buffers: bytes read before the selectors decide (0: the whole slot).
    pub peek: u16,
    pub pad2: u16,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    pub op: u8,
    pub arg: u8,
    pub nranges: u8,
    pub is_signed: u8,
    pub set: u32,
    pub value: u64,
    pub ranges: [[u64; 2]; FILTER_RANGES],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BinFilter {
    pub op: u8,
    pub follow: u8,
    pub pad: u16,
    pub set: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NsFilter {
    pub slot: u8,
    pub op: u8,
    pub pad: u16,
    pub set: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapFilter {
    pub which: u8,
    pub op: u8,
    pub ns_cap: u8,
    pub pad: u8,
    pub pad2: u32,
    pub mask: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Action {
    pub kind: u8,
    pub scope: u8,
    pub pad: u16,
    pub arg: i32,
    pub rate_ns: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Selector {
    pub n_bin: u8,
    pub n_ns: u8,
    pub n_cap: u8,
    pub n_capchg: u8,
    pub n_args: u8,
    pub n_ret: u8,
    pub n_actions: u8,
    pub pid_op: u8,
    pub pid_flags: u8,
    pub nschg_op: u8,
    pub nschg_mask: u16,
    pub pid_set: u32,
    pub bins: [BinFilter; SEL_BIN_FILTERS],
    pub ns: [NsFilter; SEL_NS_FILTERS],
    pub caps: [CapFilter; SEL_CAP_FILTERS],
    pub capchg: [CapFilter; SEL_CAP_FILTERS],
    pub args: [Filter; SEL_ARG_FILTERS],
    pub ret: [Filter; SEL_RET_FILTERS],
    pub actions: [Action; SEL_ACTIONS],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookCfg {
    pub policy: u32,
    pub generation: u32,
    pub flags: u32,
    pub source: u8,
    pub nargs: u8,
    pub nsel: u8,
    pub ret_signed: u8,
    /// Bit per argument some matchArgs filter reads.
    pub filter_args: u8,
    pub pad: [u8; 3],
    pub args: [ArgCfg; HOOK_ARGS],
    pub sel: [Selector; HOOK_SELECTORS],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttachHooks {
    pub n: u32,
    pub hooks: [u32; ATTACH_HOOKS],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct IntKey {
    pub set: u32,
    pub pad: u32,
    pub value: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StrKey {
    pub prefixlen: u32,
    pub set: u32,
    pub data: [u8; STR_MAX],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AddrKey {
    pub prefixlen: u32,
    pub set: u32,
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pending {
    pub raw: [u64; HOOK_ARGS],
    pub sel_mask: u32,
    pub pad: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateKey {
    pub hook: u32,
    pub scope_id: u32,
    pub hash: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SockArg {
    pub family: u16,
    pub sock_type: u16,
    pub protocol: u16,
    pub state: u16,
    pub sport: u16,
    pub dport: u16,
    pub pad: u32,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub cookie: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SockaddrArg {
    pub family: u16,
    pub port: u16,
    pub pad: u32,
    pub addr: [u8; 16],
}

/// The fixed part of a hook record; the arguments follow.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookRec {
    pub hdr: MsgHeader,
    pub pid: u32,
    pub tid: u32,
    pub ktime: u64,
    pub hook: u32,
    pub policy: u32,
    pub generation: u32,
    pub selector: u16,
    pub actions: u16,
    pub ret: i64,
    pub flags: u32,
    pub nargs: u32,
    pub arg_len: [u32; HOOK_ARGS],
    pub arg_aux: [u32; HOOK_ARGS],
    pub arg_kind: [u8; HOOK_ARGS],
    pub pad: [u8; 3],
}

pub const HOOK_DATA_MAX: usize = HOOK_ARGS * ARG_SLOT;

// SAFETY: repr(C) structs of integers and integer arrays with explicit padding fields (this
// and the impls below): every bit pattern is valid and there are no uninitialised bytes.
unsafe impl aya::Pod for Config {}
// SAFETY: repr(C) integers only, no padding (u32, u32, u64).
unsafe impl aya::Pod for ProtectCfg {}
// SAFETY: as above.
unsafe impl aya::Pod for PolicyCfg {}
// SAFETY: as above.
unsafe impl aya::Pod for HookCfg {}
// SAFETY: as above.
unsafe impl aya::Pod for AttachHooks {}

// SAFETY: as above.
unsafe impl aya::Pod for IntKey {}
// SAFETY: as above.
unsafe impl aya::Pod for StrKey {}
// SAFETY: as above.
unsafe impl aya::Pod for AddrKey {}

/// `vigil_task.flags`: the table fields are set.
pub const TF_ENTRY: u32 = 1 << 0;

/// One running process, as the task iterator writes it (`vigil_task`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Task {
    pub pid: u32,
    pub ppid: u32,
    pub start_ns: u64,
    pub ktime: u64,
    pub parent_ktime: u64,
    pub kflags: u32,
    pub flags: u32,
}

/// `vigil_protect_rec.hook`: the LSM hook that refused.
pub mod protect_hook {
    pub const PTRACE: u32 = 1;
    pub const KILL: u32 = 2;
    pub const UNLINK: u32 = 3;
    pub const RMDIR: u32 = 4;
    pub const RENAME: u32 = 5;
    pub const BPF: u32 = 6;
    pub const BPF_MAP: u32 = 7;
}

pub const PROTECT_NAME_MAX: usize = 64;
pub const PROTECT_DEPTH: usize = 8;
/// Capacity of each of the protected-id maps (links, maps).
pub const PROTECT_IDS: usize = 4096;

/// The single entry of `vigil_prot_cfg` (`vigil_protect_cfg`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProtectCfg {
    /// The protected sensor; 0: protection dormant.
    pub tgid: u32,
    /// Kernel `dev_t` (`major << 20 | minor`) of the bpffs holding the pins.
    pub pin_dev: u32,
    /// Inode number of the instance pin directory.
    pub pin_ino: u64,
}

/// A refused operation (`vigil_protect_rec`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtectRec {
    pub hdr: MsgHeader,
    pub pid: u32,
    pub tid: u32,
    pub ktime: u64,
    pub hook: u32,
    pub target_pid: u32,
    pub arg: u32,
    pub name_len: u32,
    pub id: u64,
    pub name: [u8; PROTECT_NAME_MAX],
}

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
// SAFETY: as above.
unsafe impl Record for HookRec {}
// SAFETY: as above.
unsafe impl Record for SockArg {}
// SAFETY: as above.
unsafe impl Record for SockaddrArg {}
// SAFETY: as above.
unsafe impl Record for Creds {}
// SAFETY: as above.
unsafe impl Record for Task {}
// SAFETY: as above.
unsafe impl Record for ProtectRec {}

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
                nspid
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
        check!("vigil_config", Config, [self_tgid, host_userns]);
        check!(
            "vigil_policy_cfg",
            PolicyCfg,
            [enabled, mode, scope_set, scope_flags]
        );
        check!(
            "vigil_arg_cfg",
            ArgCfg,
            [
                kind, index, size, flags, size_arg, pad, tp_offset, peek, pad2
            ]
        );
        check!(
            "vigil_filter",
            Filter,
            [op, arg, nranges, is_signed, set, value, ranges]
        );
        check!("vigil_bin_filter", BinFilter, [op, follow, pad, set]);
        check!("vigil_ns_filter", NsFilter, [slot, op, pad, set]);
        check!(
            "vigil_cap_filter",
            CapFilter,
            [which, op, ns_cap, pad, pad2, mask]
        );
        check!("vigil_action", Action, [kind, scope, pad, arg, rate_ns]);
        check!(
            "vigil_selector",
            Selector,
            [
                n_bin, n_ns, n_cap, n_capchg, n_args, n_ret, n_actions, pid_op, pid_flags,
                nschg_op, nschg_mask, pid_set, bins, ns, caps, capchg, args, ret, actions
            ]
        );
        check!(
            "vigil_hook_cfg",
            HookCfg,
            [
                policy,
                generation,
                flags,
                source,
                nargs,
                nsel,
                ret_signed,
                filter_args,
                pad,
                args,
                sel
            ]
        );
        check!("vigil_attach_hooks", AttachHooks, [n, hooks]);
        check!("vigil_int_key", IntKey, [set, pad, value]);
        check!("vigil_str_key", StrKey, [prefixlen, set, data]);
        check!("vigil_addr_key", AddrKey, [prefixlen, set, addr]);
        check!("vigil_pending", Pending, [raw, sel_mask, pad]);
        check!("vigil_rate_key", RateKey, [hook, scope_id, hash]);
        check!(
            "vigil_sock_arg",
            SockArg,
            [
                family, sock_type, protocol, state, sport, dport, pad, saddr, daddr, cookie
            ]
        );
        check!("vigil_sockaddr_arg", SockaddrArg, [family, port, pad, addr]);
        check!(
            "vigil_hook_rec",
            HookRec,
            [
                hdr, pid, tid, ktime, hook, policy, generation, selector, actions, ret, flags,
                nargs, arg_len, arg_aux, arg_kind, pad
            ]
        );
        check!(
            "vigil_task",
            Task,
            [pid, ppid, start_ns, ktime, parent_ktime, kflags, flags]
        );
        check!("vigil_protect_cfg", ProtectCfg, [tgid, pin_dev, pin_ino]);
        check!(
            "vigil_protect_rec",
            ProtectRec,
            [
                hdr, pid, tid, ktime, hook, target_pid, arg, name_len, id, name
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
            ("VIGIL_MSG_HOOK", MSG_HOOK as usize),
            ("VIGIL_MSG_PROTECT", MSG_PROTECT as usize),
            ("VIGIL_PROTECT_PTRACE", protect_hook::PTRACE as usize),
            ("VIGIL_PROTECT_KILL", protect_hook::KILL as usize),
            ("VIGIL_PROTECT_UNLINK", protect_hook::UNLINK as usize),
            ("VIGIL_PROTECT_RMDIR", protect_hook::RMDIR as usize),
            ("VIGIL_PROTECT_RENAME", protect_hook::RENAME as usize),
            ("VIGIL_PROTECT_BPF", protect_hook::BPF as usize),
            ("VIGIL_PROTECT_BPF_MAP", protect_hook::BPF_MAP as usize),
            ("VIGIL_PROTECT_NAME_MAX", PROTECT_NAME_MAX),
            ("VIGIL_PROTECT_DEPTH", PROTECT_DEPTH),
            ("VIGIL_PROTECT_IDS", PROTECT_IDS),
            ("VIGIL_TF_ENTRY", TF_ENTRY as usize),
            ("VIGIL_CNT_RB_LOST_HOOK", counters::RB_LOST_HOOK as usize),
            ("VIGIL_CNT_HOOK_NO_CFG", counters::HOOK_NO_CFG as usize),
            ("VIGIL_CNT_PENDING_FULL", counters::PENDING_FULL as usize),
            ("VIGIL_MAX_POLICIES", MAX_POLICIES),
            ("VIGIL_MAX_HOOKS", MAX_HOOKS),
            ("VIGIL_MAX_ATTACH", MAX_ATTACH),
            ("VIGIL_ATTACH_HOOKS", ATTACH_HOOKS),
            ("VIGIL_SYSCALL_MAX", SYSCALL_MAX),
            ("VIGIL_HOOK_ARGS", HOOK_ARGS),
            ("VIGIL_HOOK_SELECTORS", HOOK_SELECTORS),
            ("VIGIL_SEL_ARG_FILTERS", SEL_ARG_FILTERS),
            ("VIGIL_SEL_RET_FILTERS", SEL_RET_FILTERS),
            ("VIGIL_SEL_BIN_FILTERS", SEL_BIN_FILTERS),
            ("VIGIL_SEL_NS_FILTERS", SEL_NS_FILTERS),
            ("VIGIL_SEL_CAP_FILTERS", SEL_CAP_FILTERS),
            ("VIGIL_SEL_ACTIONS", SEL_ACTIONS),
            ("VIGIL_FILTER_RANGES", FILTER_RANGES),
            ("VIGIL_STR_MAX", STR_MAX),
            ("VIGIL_ARG_SLOT", ARG_SLOT),
            ("VIGIL_ANCESTOR_DEPTH", ANCESTOR_DEPTH),
            ("VIGIL_STAT_NUM", STAT_NUM),
            ("VIGIL_MAX_CONTAINERS", MAX_CONTAINERS),
            ("VIGIL_SRC_REGS", source::REGS as usize),
            (
                "VIGIL_SRC_SYSCALL_WRAPPER",
                source::SYSCALL_WRAPPER as usize,
            ),
            ("VIGIL_SRC_TRACEPOINT", source::TRACEPOINT as usize),
            ("VIGIL_SRC_BTF_ARGS", source::BTF_ARGS as usize),
            ("VIGIL_ARGK_INT", argk::INT as usize),
            ("VIGIL_ARGK_STR", argk::STR as usize),
            ("VIGIL_ARGK_BUF", argk::BUF as usize),
            ("VIGIL_ARGK_FD", argk::FD as usize),
            ("VIGIL_ARGK_FILE", argk::FILE as usize),
            ("VIGIL_ARGK_PATH", argk::PATH as usize),
            ("VIGIL_ARGK_DENTRY", argk::DENTRY as usize),
            ("VIGIL_ARGK_BINPRM", argk::BINPRM as usize),
            ("VIGIL_ARGK_SOCK", argk::SOCK as usize),
            ("VIGIL_ARGK_FD_SOCK", argk::FD_SOCK as usize),
            ("VIGIL_ARGK_SOCKADDR", argk::SOCKADDR as usize),
            ("VIGIL_ARGK_CRED", argk::CRED as usize),
            ("VIGIL_OP_EQUAL", op::EQUAL as usize),
            ("VIGIL_OP_NOT_EQUAL", op::NOT_EQUAL as usize),
            ("VIGIL_OP_PREFIX", op::PREFIX as usize),
            ("VIGIL_OP_NOT_PREFIX", op::NOT_PREFIX as usize),
            ("VIGIL_OP_POSTFIX", op::POSTFIX as usize),
            ("VIGIL_OP_NOT_POSTFIX", op::NOT_POSTFIX as usize),
            ("VIGIL_OP_GT", op::GT as usize),
            ("VIGIL_OP_LT", op::LT as usize),
            ("VIGIL_OP_MASK", op::MASK as usize),
            ("VIGIL_OP_IN_RANGE", op::IN_RANGE as usize),
            ("VIGIL_OP_NOT_IN_RANGE", op::NOT_IN_RANGE as usize),
            ("VIGIL_OP_IN_MAP", op::IN_MAP as usize),
            ("VIGIL_OP_NOT_IN_MAP", op::NOT_IN_MAP as usize),
            ("VIGIL_OP_SADDR", op::SADDR as usize),
            ("VIGIL_OP_NOT_SADDR", op::NOT_SADDR as usize),
            ("VIGIL_OP_DADDR", op::DADDR as usize),
            ("VIGIL_OP_NOT_DADDR", op::NOT_DADDR as usize),
            ("VIGIL_OP_SPORT", op::SPORT as usize),
            ("VIGIL_OP_NOT_SPORT", op::NOT_SPORT as usize),
            ("VIGIL_OP_SPORT_PRIV", op::SPORT_PRIV as usize),
            ("VIGIL_OP_NOT_SPORT_PRIV", op::NOT_SPORT_PRIV as usize),
            ("VIGIL_OP_DPORT", op::DPORT as usize),
            ("VIGIL_OP_NOT_DPORT", op::NOT_DPORT as usize),
            ("VIGIL_OP_DPORT_PRIV", op::DPORT_PRIV as usize),
            ("VIGIL_OP_NOT_DPORT_PRIV", op::NOT_DPORT_PRIV as usize),
            ("VIGIL_OP_PROTOCOL", op::PROTOCOL as usize),
            ("VIGIL_OP_FAMILY", op::FAMILY as usize),
            ("VIGIL_OP_STATE", op::STATE as usize),
            ("VIGIL_SET_IN", SET_IN as usize),
            ("VIGIL_SET_NOT_IN", SET_NOT_IN as usize),
            ("VIGIL_BIN_IN", binop::IN as usize),
            ("VIGIL_BIN_NOT_IN", binop::NOT_IN as usize),
            ("VIGIL_BIN_PREFIX", binop::PREFIX as usize),
            ("VIGIL_BIN_NOT_PREFIX", binop::NOT_PREFIX as usize),
            ("VIGIL_BIN_POSTFIX", binop::POSTFIX as usize),
            ("VIGIL_BIN_NOT_POSTFIX", binop::NOT_POSTFIX as usize),
            ("VIGIL_ACT_POST", act::POST as usize),
            ("VIGIL_ACT_NOPOST", act::NOPOST as usize),
            ("VIGIL_ACT_SIGKILL", act::SIGKILL as usize),
            ("VIGIL_ACT_SIGNAL", act::SIGNAL as usize),
            ("VIGIL_ACT_OVERRIDE", act::OVERRIDE as usize),
            ("VIGIL_SCOPE_THREAD", scope::THREAD as usize),
            ("VIGIL_SCOPE_PROCESS", scope::PROCESS as usize),
            ("VIGIL_SCOPE_GLOBAL", scope::GLOBAL as usize),
            ("VIGIL_MODE_ENFORCE", MODE_ENFORCE as usize),
            ("VIGIL_MODE_MONITOR", MODE_MONITOR as usize),
            ("VIGIL_STAT_MATCHED", stat::MATCHED),
            ("VIGIL_STAT_POSTED", stat::POSTED),
            ("VIGIL_STAT_LOST", stat::LOST),
            ("VIGIL_STAT_RATE_LIMITED", stat::RATE_LIMITED),
            ("VIGIL_STAT_SIGKILL", stat::SIGKILL),
            ("VIGIL_STAT_SIGNAL", stat::SIGNAL),
            ("VIGIL_STAT_OVERRIDE", stat::OVERRIDE),
            ("VIGIL_STAT_MONITORED", stat::MONITORED),
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
    fn flag_constants_match_c_header() {
        let header = include_str!("../bpf/vigil_abi.h");
        for (name, value) in [
            ("VIGIL_HOOK_RETURN", u64::from(hook_flags::RETURN)),
            ("VIGIL_HOOK_USER_MEM", u64::from(hook_flags::USER_MEM)),
            ("VIGIL_HOOK_NEED_CAPS", u64::from(hook_flags::NEED_CAPS)),
            ("VIGIL_HOOK_NEED_NS", u64::from(hook_flags::NEED_NS)),
            (
                "VIGIL_HOOK_CAN_OVERRIDE",
                u64::from(hook_flags::CAN_OVERRIDE),
            ),
            ("VIGIL_HOOK_NEED_PROC", u64::from(hook_flags::NEED_PROC)),
            ("VIGIL_ARGF_SIGNED", u64::from(argf::SIGNED)),
            ("VIGIL_ARGF_RETURN_COPY", u64::from(argf::RETURN_COPY)),
            ("VIGIL_ARGF_SIZE_ARG", u64::from(argf::SIZE_ARG)),
            ("VIGIL_PID_FOLLOW_FORKS", u64::from(PID_FOLLOW_FORKS)),
            ("VIGIL_PID_NAMESPACE", u64::from(PID_NAMESPACE)),
            ("VIGIL_HF_RETURN", u64::from(hf::RETURN)),
            ("VIGIL_HF_MONITOR", u64::from(hf::MONITOR)),
            ("VIGIL_HF_NO_PROC", u64::from(hf::NO_PROC)),
            ("VIGIL_AUX_CUT", u64::from(aux::CUT)),
            ("VIGIL_AUX_ERR", u64::from(aux::ERR)),
            ("VIGIL_POL_SCOPED", u64::from(pol_scope::SCOPED)),
            ("VIGIL_POL_HOST", u64::from(pol_scope::HOST)),
        ] {
            let line = header
                .lines()
                .find(|l| l.starts_with(&format!("#define {name} ")))
                .unwrap_or_else(|| panic!("{name} missing from the header"));
            let shift: u64 = line
                .split("<< ")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .unwrap_or_else(|| panic!("{name}: not a (1u << n) flag"))
                .parse()
                .unwrap();
            assert_eq!(1u64 << shift, value, "{name}");
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
        assert!(crate::HOOK_OBJ.starts_with(b"\x7fELF"));
        assert!(crate::PROTECT_OBJ.starts_with(b"\x7fELF"));
    }
}
