//! Vigil's sensor: loads the BPF programs, reads their records, keeps the process cache, and
//! exports Tetragon-compatible events.
//!
//! The modules follow the data (docs/architecture.md): [`kernel`] loads the programs and reads
//! their records; [`process`] turns records into events; [`k8s`] adds pods; [`output`] and
//! [`grpc`] take the events out. Policies come in through [`policy`] and are run by [`hooks`].
//! [`config`] and [`runtime`] wire it together.

pub mod config;
pub mod error;
pub mod grpc;
pub mod heap;
pub mod hooks;
pub mod k8s;
pub mod kernel;
pub mod output;
pub mod policy;
pub mod process;
pub mod runtime;

pub use error::SensorError;
