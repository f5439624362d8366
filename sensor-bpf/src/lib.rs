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

/// The maps every object shares and no program (see `bpf/maps.bpf.c`).
pub static MAPS_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/maps.bpf.o"));

/// Generic hook programs of the policy engine (see `bpf/hook.bpf.c`).
pub static HOOK_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hook.bpf.o"));

/// The task iterator: the kernel's running processes (see `bpf/iter.bpf.c`).
pub static ITER_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/iter.bpf.o"));

/// Self-protection's LSM programs (see `bpf/protect.bpf.c`).
pub static PROTECT_OBJ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/protect.bpf.o"));

/// Names of the maps and programs in [`PROTECT_OBJ`].
pub mod protect_names {
    pub const CONFIG_MAP: &str = "vigil_prot_cfg";
    pub const LINKS_MAP: &str = "vigil_prot_links";
    pub const MAPS_MAP: &str = "vigil_prot_maps";
    /// `(program, LSM hook)`: every refusing program and the hook it is bound to.
    pub const LSM_PROGRAMS: &[(&str, &str)] = &[
        ("vigil_p_ptrace", "ptrace_access_check"),
        ("vigil_p_kill", "task_kill"),
        ("vigil_p_unlink", "inode_unlink"),
        ("vigil_p_rmdir", "inode_rmdir"),
        ("vigil_p_rename", "inode_rename"),
        ("vigil_p_bpf", "bpf"),
        ("vigil_p_bpf_map", "bpf_map"),
    ];
    /// Clears the protected tgid when the sensor's main thread exits.
    pub const EXIT_PROG: &str = "vigil_p_exit";
}

/// The program in [`ITER_OBJ`].
pub const ITER_TASKS_PROG: &str = "vigil_iter_tasks";

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
    /// Syscall hooks on the per-syscall tracepoints, routed by syscall number.
    pub const SYS_ENTER_TP_PROG: &str = "vigil_sc_enter";
    pub const SYS_EXIT_TP_PROG: &str = "vigil_sc_exit";
    /// The raw syscall route: one pair for every syscall, where per-syscall tracepoints miss.
    pub const SYS_ENTER_PROG: &str = "vigil_sys_enter";
    pub const SYS_EXIT_PROG: &str = "vigil_sys_exit";
    /// Tracepoints, by cookie.
    pub const TRACEPOINT_PROG: &str = "vigil_tp";
    /// Attach point from the link's BPF cookie (kernels >= 5.15): loaded once.
    pub const KPROBE_PROG: &str = "vigil_kprobe";
    pub const KRETPROBE_PROG: &str = "vigil_kretprobe";
    pub const UPROBE_PROG: &str = "vigil_uprobe";
    /// Attach point from `.rodata` (kernels without cookies): one instance per attach point.
    pub const TRACEPOINT_ID_PROG: &str = "vigil_tp_id";
    pub const KPROBE_ID_PROG: &str = "vigil_kprobe_id";
    pub const KRETPROBE_ID_PROG: &str = "vigil_kret_id";
    pub const UPROBE_ID_PROG: &str = "vigil_uprobe_id";
    /// BPF-LSM: bound to its hook at load, one instance per LSM hook.
    pub const LSM_PROG: &str = "vigil_lsm";
    /// Every program of the hook object. Names stay within the kernel's 15 characters, so that
    /// `bpftool prog show` tells them apart.
    pub const PROGRAMS: &[&str] = &[
        SYS_ENTER_TP_PROG,
        SYS_EXIT_TP_PROG,
        TRACEPOINT_PROG,
        SYS_ENTER_PROG,
        SYS_EXIT_PROG,
        KPROBE_PROG,
        KRETPROBE_PROG,
        UPROBE_PROG,
        TRACEPOINT_ID_PROG,
        KPROBE_ID_PROG,
        KRETPROBE_ID_PROG,
        UPROBE_ID_PROG,
        LSM_PROG,
    ];
    /// The `.rodata` global each per-attach-point instance is loaded with.
    pub const ATTACH_ID_GLOBAL: &str = "VIGIL_ATTACH_ID";
    /// The `.rodata` global an LSM instance is loaded with: its hook's argument count.
    pub const LSM_NARGS_GLOBAL: &str = "VIGIL_LSM_NARGS";
}

#[cfg(test)]
mod tests {
    use super::{hook_names, names, protect_names};

    #[test]
    fn program_names_fit_the_kernels_15_characters_and_differ() {
        let all: Vec<&str> = hook_names::PROGRAMS
            .iter()
            .copied()
            .chain([names::EXEC_PROG, names::FORK_PROG, names::EXIT_PROG])
            .chain(protect_names::LSM_PROGRAMS.iter().map(|(p, _)| *p))
            .chain([protect_names::EXIT_PROG])
            .collect();
        for n in &all {
            assert!(n.len() <= 15, "{n} is cut short in bpftool's listing");
        }
        let mut sorted = all.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len());
    }

    #[test]
    fn every_listed_program_is_in_the_hook_object() {
        let obj = aya_obj::Object::parse(crate::HOOK_OBJ).expect("hook object parses");
        for n in hook_names::PROGRAMS {
            assert!(obj.programs.contains_key(*n), "{n} missing from hook.bpf.c");
        }
    }

    #[test]
    fn every_listed_program_is_in_the_protect_object() {
        let obj = aya_obj::Object::parse(crate::PROTECT_OBJ).expect("protect object parses");
        for (n, _) in protect_names::LSM_PROGRAMS {
            assert!(
                obj.programs.contains_key(*n),
                "{n} missing from protect.bpf.c"
            );
        }
        assert!(obj.programs.contains_key(protect_names::EXIT_PROG));
        assert_eq!(
            obj.programs.len(),
            protect_names::LSM_PROGRAMS.len() + 1,
            "a program of protect.bpf.c is not listed"
        );
    }
}
