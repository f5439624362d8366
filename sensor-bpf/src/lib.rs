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

/// Names of the maps and programs in [`PROCESS_OBJ`].
pub mod names {
    pub const EVENTS_MAP: &str = "vigil_events";
    pub const PROCS_MAP: &str = "vigil_procs";
    pub const COUNTERS_MAP: &str = "vigil_counters";
    pub const EXEC_PROG: &str = "vigil_exec";
    pub const FORK_PROG: &str = "vigil_fork";
    pub const EXIT_PROG: &str = "vigil_exit";
}
