//! Vigil's shared API crate: pure code, no I/O, no kernel.
//!
//! - [`events`]: the event contract (Tetragon-compatible JSON model, flags, exec_id).
//! - [`policy`]: TracingPolicy types, parser, validator and compiler to the IR.
//! - [`tls`]: TLS configurations of the gRPC links, checked from PEM bytes.
#![forbid(unsafe_code)]

pub mod capabilities;
pub mod events;
pub mod policy;
pub mod syscalls;
pub mod tls;
pub mod wire;
