//! The operator library's error type.

/// Everything that can go wrong in the operator library.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// A run option has a bad value (the message names the option).
    #[error("invalid option --{option}: {message}")]
    Config { option: String, message: String },
    /// A sensor said something the protocol does not allow.
    #[error("policy sync protocol: {0}")]
    Protocol(String),
    /// A policy file could not be turned into a policy.
    #[error("{path}: {message}")]
    PolicyFile { path: String, message: String },
    /// File or socket I/O failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Grpc(String),
}

impl OperatorError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        OperatorError::Io {
            context: context.into(),
            source,
        }
    }
}
