//! The operator library's one error type.

/// Everything that can go wrong in the operator library.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Adding or removing the cleanup finalizer, or the reconcile step it wraps, failed.
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<OperatorError>>),
    /// Leader election (the coordination.k8s.io Lease) failed.
    #[error("leader election: {0}")]
    LeaderElection(#[from] kube_lease_manager::LeaseManagerError),
    /// The leader-election task ended while the operator was still running.
    #[error("leader election stopped unexpectedly")]
    LeaderElectionStopped,
    /// An object the API server sent lacks a field every object has.
    #[error("{kind} object without {field}")]
    MissingField {
        kind: &'static str,
        field: &'static str,
    },
    /// Serializing a CRD to YAML failed.
    #[error("CRD to YAML: {0}")]
    Yaml(String),
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

    /// A short label for the `error` metric label.
    pub fn metric_label(&self) -> &'static str {
        match self {
            OperatorError::Kube(_) => "kube",
            OperatorError::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.metric_label(),
                _ => "finalizer",
            },
            OperatorError::LeaderElection(_) | OperatorError::LeaderElectionStopped => {
                "leader_election"
            }
            OperatorError::MissingField { .. } => "invalid_object",
            OperatorError::Yaml(_) => "yaml",
            OperatorError::Config { .. } => "config",
            OperatorError::Protocol(_) => "protocol",
            OperatorError::PolicyFile { .. } => "policy_file",
            OperatorError::Io { .. } => "io",
            OperatorError::Grpc(_) => "grpc",
        }
    }
}

/// Result with [`OperatorError`].
pub type Result<T, E = OperatorError> = std::result::Result<T, E>;

impl From<vigil_host::HostError> for OperatorError {
    fn from(e: vigil_host::HostError) -> Self {
        match e {
            vigil_host::HostError::Option { option, message } => {
                OperatorError::Config { option, message }
            }
            vigil_host::HostError::Io { context, source } => OperatorError::Io { context, source },
        }
    }
}
