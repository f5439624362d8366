//! Host-side plumbing that the sensor, the operator and the CLI share: reading a directory of
//! policy files, serving `/metrics` and `/healthz`, and reading TLS files named by options.
//!
//! `vigil-api` stays free of I/O; what touches files and sockets for more than one binary
//! lives here.

pub mod error;
pub mod metrics_http;
pub mod policy_files;
pub mod tls_files;

pub use error::HostError;
