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
pub const STAT_NUM: usize = 11;
/// One hook evaluation in this many is timed, per CPU.
pub const COST_SAMPLE: u64 = 64;

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
    /// `struct net_device *`: the device name, laid out like a string.
    pub const NETDEV: u8 = 13;
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
    pub const EVALS: usize = 8;
    pub const COST_SAMPLES: usize = 9;
    pub const COST_NS: usize = 10;
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
mod tests;
