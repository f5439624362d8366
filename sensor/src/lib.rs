//! Vigil's sensor: loads the BPF programs, reads their records, keeps the process cache, and
//! exports Tetragon-compatible events.

pub mod bpf;
pub mod builder;
pub mod clock;
pub mod config;
pub mod container;
pub mod decode;
pub mod error;
pub mod event_filter;
pub mod export;
pub mod features;
pub mod fmod_ret;
pub mod grpc;
pub mod grpc_tls;
pub mod hooks;
pub mod metrics;
pub mod pipeline;
pub mod pod_api;
pub mod pods;
pub mod policy_api;
pub mod policy_control;
pub mod policy_dir;
pub mod policy_sync;
pub mod process_cache;
pub mod procfs_scan;
pub mod runtime;

pub use error::SensorError;
