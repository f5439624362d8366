//! Vigil's sensor: loads the BPF programs, reads their records, keeps the process cache, and
//! exports Tetragon-compatible events.

pub mod bpf;
pub mod bpf_syscall;
pub mod broadcast;
pub mod builder;
pub mod clock;
pub mod config;
pub mod container;
pub mod decode;
pub mod error;
pub mod event_filter;
pub mod event_json;
pub mod export;
pub mod export_file;
pub mod features;
pub mod fmod_ret;
pub mod grpc;
pub mod grpc_tls;
pub mod handoff;
pub mod heal;
pub mod heap;
pub mod hooks;
pub mod loss;
pub mod metrics;
pub mod pin_manifest;
pub mod pins;
pub mod pipeline;
pub mod pod_api;
pub mod pods;
pub mod policy_api;
pub mod policy_control;
pub mod policy_dir;
pub mod policy_sync;
pub mod process_cache;
pub mod procfs_scan;
pub mod program_check;
pub mod protect;
pub mod record_bytes;
pub mod replay;
pub mod ring;
pub mod runtime;

pub use error::SensorError;
