//! The crate's one error type.

/// What went wrong, naming the option or the resource.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A command-line or configuration option whose value (a file, an address) is unusable.
    #[error("--{option}: {message}")]
    Option { option: String, message: String },
    /// An I/O failure outside any option (the metrics server once running).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl HostError {
    pub fn option(option: &str, message: impl Into<String>) -> Self {
        HostError::Option {
            option: option.into(),
            message: message.into(),
        }
    }
}
