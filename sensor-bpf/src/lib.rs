//! Vigil's BPF objects and the record ABI shared with the C side.
//!
//! The C sources live in `bpf/`; `build.rs` compiles them with clang (CO-RE) and this crate
//! embeds the objects. [`abi`] mirrors `bpf/vigil_abi.h` field for field.

pub mod abi;

/// Process lifecycle programs (exec, fork, exit), the process table and the ring buffer.
pub static PROCESS_OBJ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/process.bpf.o"));

/// Feature-probe programs: one trivial program per mechanism the hook engine may use.
pub static PROBE_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probe.bpf.o"));

/// Generic hook programs of the policy engine (see `bpf/hook.bpf.c`).
pub static HOOK_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hook.bpf.o"));

/// Names of the maps and programs in [`PROCESS_OBJ`].
pub mod names {
    pub const EVENTS_MAP: &str = "vigil_events";
    pub const PROCS_MAP: &str = "vigil_procs";
    pub const COUNTERS_MAP: &str = "vigil_counters";
    pub const EXEC_PROG: &str = "vigil_exec";
    pub const FORK_PROG: &str = "vigil_fork";
    pub const EXIT_PROG: &str = "vigil_exit";
}

/// Names of the maps and programs in [`HOOK_OBJ`].
pub mod hook_names {
    pub const CONFIG_MAP: &str = "vigil_config";
    pub const POLICIES_MAP: &str = "vigil_policies";
    pub const POLICY_STATS_MAP: &str = "vigil_policy_stats";
    pub const HOOKS_MAP: &str = "vigil_hooks";
    pub const ATTACH_MAP: &str = "vigil_attach";
    pub const SYS_ATTACH_MAP: &str = "vigil_sys_attach";
    pub const INTS_MAP: &str = "vigil_ints";
    pub const CONTAINERS_MAP: &str = "vigil_containers";
    pub const STRS_MAP: &str = "vigil_strs";
    pub const ADDRS_MAP: &str = "vigil_addrs";
    pub const PENDING_MAP: &str = "vigil_pending";
    pub const RATELIMIT_MAP: &str = "vigil_ratelimit";
    pub const SCRATCH_MAP: &str = "vigil_hook_scratch";
    pub const PATHBUF_MAP: &str = "vigil_pathbuf";
    /// Every map of the hook object; all are shared (pinned) between its instances.
    pub const SHARED_MAPS: &[&str] = &[
        CONFIG_MAP,
        POLICIES_MAP,
        POLICY_STATS_MAP,
        HOOKS_MAP,
        ATTACH_MAP,
        SYS_ATTACH_MAP,
        INTS_MAP,
        CONTAINERS_MAP,
        STRS_MAP,
        ADDRS_MAP,
        PENDING_MAP,
        RATELIMIT_MAP,
        SCRATCH_MAP,
        PATHBUF_MAP,
        super::names::EVENTS_MAP,
        super::names::PROCS_MAP,
        super::names::COUNTERS_MAP,
    ];
    pub const SYS_ENTER_PROG: &str = "vigil_sys_enter";
    pub const SYS_EXIT_PROG: &str = "vigil_sys_exit";
    pub const KPROBE_PROG: &str = "vigil_kprobe";
    pub const KRETPROBE_PROG: &str = "vigil_kretprobe";
    pub const TRACEPOINT_PROG: &str = "vigil_tracepoint";
    pub const UPROBE_PROG: &str = "vigil_uprobe";
    pub const LSM_PROG: &str = "vigil_lsm";
    /// The `.rodata` global each per-attach-point instance is loaded with.
    pub const ATTACH_ID_GLOBAL: &str = "VIGIL_ATTACH_ID";
}
