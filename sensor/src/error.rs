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
