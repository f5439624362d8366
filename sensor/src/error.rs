//! The sensor library's error type.

/// Everything that can go wrong in the sensor library.
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    /// A configuration option (flag, environment or file) has a bad value.
    #[error("invalid option --{option}: {message}")]
    Config { option: String, message: String },
    /// Loading, configuring or attaching BPF failed.
    #[error("BPF {what}: {message}")]
    Bpf { what: String, message: String },
    /// A ring-buffer record could not be decoded.
    #[error("bad record from the kernel: {0}")]
    Decode(String),
    /// A policy manifest was rejected by the validator or compiler (the message names the
    /// field and what was expected).
    #[error("policy rejected: {0}")]
    PolicyInvalid(String),
    /// A policy with this name (and namespace) is already loaded.
    #[error("policy {0} already exists; delete it first")]
    PolicyExists(String),
    /// No policy with this name (and namespace) is loaded.
    #[error("policy {0} not found")]
    PolicyNotFound(String),
    /// The policy cannot run on this kernel as written (e.g. Override where no mechanism can
    /// deny), or a configured limit would be exceeded.
    #[error("policy {policy}: {message}")]
    PolicyUnloadable { policy: String, message: String },
    /// File or socket I/O failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl SensorError {
    pub fn bpf(what: impl Into<String>, err: impl std::fmt::Display) -> Self {
        SensorError::Bpf {
            what: what.into(),
            message: err.to_string(),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SensorError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<vigil_host::HostError> for SensorError {
    fn from(e: vigil_host::HostError) -> Self {
        match e {
            vigil_host::HostError::Option { option, message } => {
                SensorError::Config { option, message }
            }
            vigil_host::HostError::Io { context, source } => SensorError::Io { context, source },
        }
    }
}
