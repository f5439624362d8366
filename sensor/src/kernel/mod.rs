//! In: the BPF objects of `vigil-sensor-bpf`, the running kernel and its bpffs.
//! Out: loaded and pinned programs and maps, decoded ring-buffer records, kernel counters.
//!
//! The kernel side of the sensor: feature probe, loading and attaching the process programs,
//! pins and the hand-over between sensors, self-protection, and reading the ring buffer.

pub mod bpf;
pub mod bpf_syscall;
pub mod clock;
pub mod decode;
pub mod features;
pub mod fmod_ret;
pub mod handoff;
pub mod pin_manifest;
pub mod pins;
pub mod program_check;
pub mod protect;
pub mod record_bytes;
pub mod ring;
pub mod ringbuf;
