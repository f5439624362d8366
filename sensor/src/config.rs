//! Sensor configuration: command-line flags, environment (`VIGIL_*`), and a YAML file
//! (`--config`). Precedence: flag, then environment, then file, then default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

use crate::error::SensorError;
pub use crate::grpc::tls::{GrpcTls, OperatorTls};

/// Command line of `vigil-sensor`. Every option is optional here so that the file can fill in
/// what the command line and the environment leave out.
#[derive(Parser, Debug, Default)]
#[command(name = "vigil-sensor", version, about = "Vigil's per-node eBPF sensor")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// YAML file with options (same names as the flags, without the leading dashes).
    #[arg(long, env = "VIGIL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Node name used in events and exec_ids (default: env NODE_NAME, else the hostname).
    #[arg(long, env = "VIGIL_NODE_NAME")]
    pub node_name: Option<String>,

    /// Write events as JSON lines to this file (rotated by size).
    #[arg(long, env = "VIGIL_EXPORT_FILE", value_name = "PATH")]
    pub export_file: Option<PathBuf>,

    /// Rotate the export file when it would grow past this size in MiB [default: 10].
    #[arg(long, env = "VIGIL_EXPORT_FILE_MAX_SIZE_MB", value_name = "MB")]
    pub export_file_max_size_mb: Option<u64>,

    /// Rotated files kept beside the export file (PATH.1 … PATH.N) [default: 5].
    #[arg(long, env = "VIGIL_EXPORT_FILE_MAX_BACKUPS", value_name = "N")]
    pub export_file_max_backups: Option<u32>,

    /// Also write events as JSON lines to standard output.
    #[arg(long, env = "VIGIL_EXPORT_STDOUT", num_args = 0..=1, default_missing_value = "true")]
    pub export_stdout: Option<bool>,

    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:2112).
    #[arg(long, env = "VIGIL_METRICS_ADDRESS", value_name = "ADDR")]
    pub metrics_address: Option<SocketAddr>,

    /// Serve the gRPC API on this unix socket ("" disables it) [default: /var/run/vigil/vigil.sock].
    // A String, not a PathBuf: clap refuses an empty path, and "" is how it is disabled.
    #[arg(long, env = "VIGIL_GRPC_SOCKET", value_name = "PATH")]
    pub grpc_socket: Option<String>,

    /// Also serve the gRPC API on this TCP address (e.g. 127.0.0.1:54321).
    #[arg(long, env = "VIGIL_GRPC_ADDRESS", value_name = "ADDR")]
    pub grpc_address: Option<SocketAddr>,

    /// Serve --grpc-address over TLS with this certificate chain (PEM, leaf first); needs
    /// --grpc-tls-key. The unix socket stays plain text.
    #[arg(long, env = "VIGIL_GRPC_TLS_CERT", value_name = "FILE")]
    pub grpc_tls_cert: Option<PathBuf>,

    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1) of --grpc-tls-cert.
    #[arg(long, env = "VIGIL_GRPC_TLS_KEY", value_name = "FILE")]
    pub grpc_tls_key: Option<PathBuf>,

    /// Require TLS clients to present a certificate signed by one of these CAs (PEM): mTLS.
    /// Needs --grpc-tls-cert and --grpc-tls-key.
    #[arg(long, env = "VIGIL_GRPC_TLS_CLIENT_CA", value_name = "FILE")]
    pub grpc_tls_client_ca: Option<PathBuf>,

    /// Events queued per GetEvents client before new ones are dropped for it (and reported to
    /// it) [default: 4096].
    #[arg(long, env = "VIGIL_GRPC_CLIENT_QUEUE_SIZE", value_name = "N")]
    pub grpc_client_queue_size: Option<usize>,

    /// Add `cap` and `process_credentials` to every process.
    #[arg(long, env = "VIGIL_ENABLE_PROCESS_CRED", num_args = 0..=1, default_missing_value = "true")]
    pub enable_process_cred: Option<bool>,

    /// Add `ns` (the ten namespace inodes) to every process.
    #[arg(long, env = "VIGIL_ENABLE_PROCESS_NS", num_args = 0..=1, default_missing_value = "true")]
    pub enable_process_ns: Option<bool>,

    /// Self-protection where BPF-LSM is active: the kernel refuses other processes' ptrace of
    /// the sensor, signals to it (except from pid 1 and its parent: systemd, containerd-shim),
    /// unlinking its pinned objects and bpf() commands that detach or overwrite its programs and
    /// maps. Opt-in: a protected sensor stops only on a signal from init or its parent, or with
    /// `vigil-sensor cleanup` [default: false].
    #[arg(long, env = "VIGIL_SELF_PROTECTION", num_args = 0..=1, default_missing_value = "true")]
    pub self_protection: Option<bool>,

    /// Name of this sensor's pinned objects (`/sys/fs/bpf/vigil/<instance>`): a sensor takes
    /// over what the previous sensor of the same instance left [default: default].
    #[arg(long, env = "VIGIL_INSTANCE", value_name = "NAME")]
    pub instance: Option<String>,

    /// Leave the programs enforcing when the sensor stops, for the next sensor of the instance
    /// to take over without a gap [default: true]. With false the sensor removes everything it
    /// pinned on a clean stop.
    #[arg(long, env = "VIGIL_KEEP_ENFORCING_ON_EXIT", num_args = 0..=1, default_missing_value = "true")]
    pub keep_enforcing_on_exit: Option<bool>,

    /// Test only: make this build's stamp differ, as another build's would.
    #[arg(long, hide = true, value_name = "TEXT")]
    pub test_stamp: Option<String>,

    /// BPF ring buffer size in bytes (a power of two, at least 4096) [default: 8388608].
    #[arg(long, env = "VIGIL_RING_BUFFER_SIZE", value_name = "BYTES")]
    pub ring_buffer_size: Option<u32>,

    /// Capacity of the kernel process table (entries) [default: 32768].
    #[arg(long, env = "VIGIL_PROCESS_TABLE_SIZE", value_name = "N")]
    pub process_table_size: Option<u32>,

    /// Capacity of the user-space process cache (entries) [default: 65536].
    #[arg(long, env = "VIGIL_PROCESS_CACHE_SIZE", value_name = "N")]
    pub process_cache_size: Option<usize>,

    /// Events queued for the exporters before new ones are dropped (and counted) [default: 65536].
    #[arg(long, env = "VIGIL_EXPORT_QUEUE_SIZE", value_name = "N")]
    pub export_queue_size: Option<usize>,

    /// Events of containers whose pod is not known yet are held this long, at most, for the pod
    /// to arrive; then they go out without it, flagged `podUnknown` [default: 5000].
    #[arg(long, env = "VIGIL_POD_WAIT_MS", value_name = "MS")]
    pub pod_wait_ms: Option<u64>,

    /// At most this many events are held waiting for their pod; beyond it the oldest goes out
    /// without its pod (flagged) [default: 8192].
    #[arg(long, env = "VIGIL_POD_WAIT_EVENTS", value_name = "N")]
    pub pod_wait_events: Option<usize>,

    /// Log filter (tracing-subscriber syntax) [default: info].
    #[arg(long, env = "VIGIL_LOG_LEVEL")]
    pub log_level: Option<String>,

    /// Load this TracingPolicy file at start (repeatable). A file that does not validate stops
    /// the sensor with the validator's message.
    #[arg(
        long = "policy",
        env = "VIGIL_POLICY",
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub policies: Vec<PathBuf>,

    /// Load every *.yaml / *.yml file of this directory, and follow it: files added, changed or
    /// removed while the sensor runs add, replace or remove their policy.
    #[arg(long, env = "VIGIL_POLICY_DIR", value_name = "DIR")]
    pub policy_dir: Option<PathBuf>,

    /// Receive policies from the operator at this address: http://HOST:PORT (or HOST:PORT), or
    /// https://HOST:PORT for TLS (needs --operator-tls-ca).
    #[arg(long, env = "VIGIL_OPERATOR_ADDRESS", value_name = "URL")]
    pub operator_address: Option<String>,

    /// CA certificate(s) (PEM) that signed the operator's certificate; the only ones trusted
    /// for it. Required with an https:// --operator-address.
    #[arg(long, env = "VIGIL_OPERATOR_TLS_CA", value_name = "FILE")]
    pub operator_tls_ca: Option<PathBuf>,

    /// This sensor's client certificate chain (PEM, leaf first) for an operator that requires
    /// client certificates (mTLS); needs --operator-tls-key.
    #[arg(long, env = "VIGIL_OPERATOR_TLS_CERT", value_name = "FILE")]
    pub operator_tls_cert: Option<PathBuf>,

    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1) of --operator-tls-cert.
    #[arg(long, env = "VIGIL_OPERATOR_TLS_KEY", value_name = "FILE")]
    pub operator_tls_key: Option<PathBuf>,

    /// Check the operator's certificate against this name instead of the address's host (when
    /// the address is an IP, or a name the certificate does not carry).
    #[arg(long, env = "VIGIL_OPERATOR_TLS_SERVER_NAME", value_name = "NAME")]
    pub operator_tls_server_name: Option<String>,

    /// This node's labels, for the operator's nodeSelector: k=v,k2=v2.
    #[arg(long, env = "VIGIL_NODE_LABELS", value_name = "LABELS")]
    pub node_labels: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Probe the kernel's BPF features and print them as one JSON object.
    Probe,
    /// Remove a sensor instance's pinned programs, links and maps (the kernel stops enforcing
    /// its policies): for uninstalling. No sensor of the instance may be running.
    Cleanup {
        /// The instance [default: default].
        #[arg(long, conflicts_with = "all")]
        instance: Option<String>,
        /// Every instance.
        #[arg(long)]
        all: bool,
    },
    /// Load every BPF program this kernel can run (nothing is attached for long) and report
    /// each one's verifier instruction count and load time; exit 1 when one fails to load or
    /// exceeds the budget.
    CheckPrograms {
        /// Most verified instructions a program may take.
        #[arg(long, default_value_t = crate::kernel::program_check::DEFAULT_BUDGET)]
        budget: u32,
        /// `text` or `json`.
        #[arg(short, long, default_value = "text", value_parser = ["text", "json"])]
        output: String,
    },
}

/// The same options as a YAML file. Unknown keys are errors.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    node_name: Option<String>,
    export_file: Option<PathBuf>,
    export_file_max_size_mb: Option<u64>,
    export_file_max_backups: Option<u32>,
    export_stdout: Option<bool>,
    metrics_address: Option<String>,
    grpc_socket: Option<String>,
    grpc_address: Option<String>,
    grpc_tls_cert: Option<PathBuf>,
    grpc_tls_key: Option<PathBuf>,
    grpc_tls_client_ca: Option<PathBuf>,
    grpc_client_queue_size: Option<usize>,
    enable_process_cred: Option<bool>,
    instance: Option<String>,
    keep_enforcing_on_exit: Option<bool>,
    enable_process_ns: Option<bool>,
    self_protection: Option<bool>,
    ring_buffer_size: Option<u32>,
    process_table_size: Option<u32>,
    process_cache_size: Option<usize>,
    export_queue_size: Option<usize>,
    pod_wait_ms: Option<u64>,
    pod_wait_events: Option<usize>,
    log_level: Option<String>,
    policy: Option<Vec<PathBuf>>,
    policy_dir: Option<PathBuf>,
    operator_address: Option<String>,
    operator_tls_ca: Option<PathBuf>,
    operator_tls_cert: Option<PathBuf>,
    operator_tls_key: Option<PathBuf>,
    operator_tls_server_name: Option<String>,
    node_labels: Option<FileLabels>,
}

/// `node-labels` in the file: `k=v,k2=v2` or a mapping.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum FileLabels {
    Text(String),
    Map(BTreeMap<String, String>),
}

/// The resolved configuration the sensor runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub node_name: String,
    pub export_file: Option<PathBuf>,
    pub export_file_max_size: u64,
    pub export_file_max_backups: u32,
    pub export_stdout: bool,
    pub metrics_address: Option<SocketAddr>,
    /// `None` when disabled (`--grpc-socket ""`).
    pub grpc_socket: Option<PathBuf>,
    pub grpc_address: Option<SocketAddr>,
    /// TLS (and mTLS) for `grpc_address`; `None` serves it in plain text.
    pub grpc_tls: Option<GrpcTls>,
    pub grpc_client_queue_size: usize,
    pub enable_process_cred: bool,
    pub enable_process_ns: bool,
    /// `--self-protection`: load the protect programs (where BPF-LSM is active).
    pub self_protection: bool,
    pub instance: String,
    pub keep_enforcing_on_exit: bool,
    pub test_stamp: String,
    pub ring_buffer_size: u32,
    pub process_table_size: u32,
    pub process_cache_size: usize,
    pub export_queue_size: usize,
    /// Longest time an event waits for its pod.
    pub pod_wait_ms: u64,
    /// Most events held waiting for their pod.
    pub pod_wait_events: usize,
    pub log_level: String,
    /// `--policy` files, loaded at start.
    pub policies: Vec<PathBuf>,
    /// `--policy-dir`, loaded at start and followed.
    pub policy_dir: Option<PathBuf>,
    /// `--operator-address`, normalized to `http://HOST:PORT` or `https://HOST:PORT`.
    pub operator_address: Option<String>,
    /// TLS to the operator (`--operator-tls-*`); set exactly when the address is https://.
    pub operator_tls: Option<OperatorTls>,
    /// `--node-labels`.
    pub node_labels: BTreeMap<String, String>,
}

pub const DEFAULT_RING_BUFFER_SIZE: u32 = 8 << 20;
pub const DEFAULT_INSTANCE: &str = "default";
pub const DEFAULT_PROCESS_TABLE_SIZE: u32 = 32768;
pub const DEFAULT_PROCESS_CACHE_SIZE: usize = 65536;
pub const DEFAULT_EXPORT_QUEUE_SIZE: usize = 65536;
pub const DEFAULT_EXPORT_FILE_MAX_SIZE_MB: u64 = 10;
pub const DEFAULT_EXPORT_FILE_MAX_BACKUPS: u32 = 5;
pub const DEFAULT_GRPC_SOCKET: &str = "/var/run/vigil/vigil.sock";
pub const DEFAULT_GRPC_CLIENT_QUEUE_SIZE: usize = 4096;
pub const DEFAULT_POD_WAIT_MS: u64 = 5000;
pub const DEFAULT_POD_WAIT_EVENTS: usize = 8192;

impl Config {
    /// Resolves the configuration from the parsed command line (flags and environment), the
    /// optional file it names, and `NODE_NAME`/the hostname for the node name.
    pub fn resolve(cli: &Cli, env_node_name: Option<String>) -> Result<Self, SensorError> {
        let file = match &cli.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let metrics_address = match (&cli.metrics_address, &file.metrics_address) {
            (Some(a), _) => Some(*a),
            (None, Some(s)) => Some(s.parse().map_err(|_| SensorError::Config {
                option: "metrics-address".into(),
                message: format!(
                    "{s:?} is not an address; expected HOST:PORT such as 127.0.0.1:2112"
                ),
            })?),
            (None, None) => None,
        };
        let grpc_address = match (&cli.grpc_address, &file.grpc_address) {
            (Some(a), _) => Some(*a),
            (None, Some(s)) => Some(s.parse().map_err(|_| SensorError::Config {
                option: "grpc-address".into(),
                message: format!(
                    "{s:?} is not an address; expected HOST:PORT such as 127.0.0.1:54321"
                ),
            })?),
            (None, None) => None,
        };
        let grpc_tls = match (
            cli.grpc_tls_cert.clone().or(file.grpc_tls_cert),
            cli.grpc_tls_key.clone().or(file.grpc_tls_key),
            cli.grpc_tls_client_ca.clone().or(file.grpc_tls_client_ca),
        ) {
            (None, None, None) => None,
            (Some(cert), Some(key), client_ca) => Some(GrpcTls {
                cert,
                key,
                client_ca,
            }),
            (Some(_), None, _) => {
                return Err(SensorError::Config {
                    option: "grpc-tls-cert".into(),
                    message: "needs --grpc-tls-key (the certificate's private key)".into(),
                });
            }
            (None, Some(_), _) => {
                return Err(SensorError::Config {
                    option: "grpc-tls-key".into(),
                    message: "needs --grpc-tls-cert (the certificate the key belongs to)".into(),
                });
            }
            (None, None, Some(_)) => {
                return Err(SensorError::Config {
                    option: "grpc-tls-client-ca".into(),
                    message: "needs --grpc-tls-cert and --grpc-tls-key (client certificates \
                              are checked inside a TLS connection)"
                        .into(),
                });
            }
        };
        let grpc_socket = cli
            .grpc_socket
            .clone()
            .or(file.grpc_socket)
            .unwrap_or_else(|| DEFAULT_GRPC_SOCKET.to_string());
        let grpc_socket = (!grpc_socket.is_empty()).then(|| PathBuf::from(grpc_socket));
        let node_name = cli
            .node_name
            .clone()
            .or(file.node_name)
            .or(env_node_name.filter(|n| !n.is_empty()))
            .unwrap_or_else(hostname);
        let max_mb = cli
            .export_file_max_size_mb
            .or(file.export_file_max_size_mb)
            .unwrap_or(DEFAULT_EXPORT_FILE_MAX_SIZE_MB);
        let operator_address = match cli.operator_address.clone().or(file.operator_address) {
            Some(a) => Some(crate::policy::sync::parse_address(&a).map_err(|message| {
                SensorError::Config {
                    option: "operator-address".into(),
                    message,
                }
            })?),
            None => None,
        };
        let operator_tls = operator_tls(
            operator_address.as_deref(),
            cli.operator_tls_ca.clone().or(file.operator_tls_ca),
            cli.operator_tls_cert.clone().or(file.operator_tls_cert),
            cli.operator_tls_key.clone().or(file.operator_tls_key),
            cli.operator_tls_server_name
                .clone()
                .or(file.operator_tls_server_name),
        )?;
        let labels_error = |message| SensorError::Config {
            option: "node-labels".into(),
            message,
        };
        let node_labels = match (cli.node_labels.clone(), file.node_labels) {
            (Some(s), _) | (None, Some(FileLabels::Text(s))) => {
                crate::policy::sync::parse_labels(&s).map_err(labels_error)?
            }
            (None, Some(FileLabels::Map(m))) => {
                crate::policy::sync::check_labels(&m).map_err(labels_error)?;
                m
            }
            (None, None) => BTreeMap::new(),
        };
        let instance = cli
            .instance
            .clone()
            .or(file.instance)
            .unwrap_or_else(|| DEFAULT_INSTANCE.to_string());
        crate::kernel::pins::check_instance(&instance).map_err(|message| SensorError::Config {
            option: "instance".into(),
            message,
        })?;
        let config = Config {
            node_name,
            export_file: cli.export_file.clone().or(file.export_file),
            export_file_max_size: max_mb.saturating_mul(1 << 20),
            export_file_max_backups: cli
                .export_file_max_backups
                .or(file.export_file_max_backups)
                .unwrap_or(DEFAULT_EXPORT_FILE_MAX_BACKUPS),
            export_stdout: cli.export_stdout.or(file.export_stdout).unwrap_or(false),
            metrics_address,
            grpc_socket,
            grpc_address,
            grpc_tls,
            grpc_client_queue_size: cli
                .grpc_client_queue_size
                .or(file.grpc_client_queue_size)
                .unwrap_or(DEFAULT_GRPC_CLIENT_QUEUE_SIZE),
            enable_process_cred: cli
                .enable_process_cred
                .or(file.enable_process_cred)
                .unwrap_or(false),
            enable_process_ns: cli
                .enable_process_ns
                .or(file.enable_process_ns)
                .unwrap_or(false),
            self_protection: cli
                .self_protection
                .or(file.self_protection)
                .unwrap_or(false),
            instance,
            keep_enforcing_on_exit: cli
                .keep_enforcing_on_exit
                .or(file.keep_enforcing_on_exit)
                .unwrap_or(true),
            test_stamp: cli.test_stamp.clone().unwrap_or_default(),
            ring_buffer_size: cli
                .ring_buffer_size
                .or(file.ring_buffer_size)
                .unwrap_or(DEFAULT_RING_BUFFER_SIZE),
            process_table_size: cli
                .process_table_size
                .or(file.process_table_size)
                .unwrap_or(DEFAULT_PROCESS_TABLE_SIZE),
            process_cache_size: cli
                .process_cache_size
                .or(file.process_cache_size)
                .unwrap_or(DEFAULT_PROCESS_CACHE_SIZE),
            export_queue_size: cli
                .export_queue_size
                .or(file.export_queue_size)
                .unwrap_or(DEFAULT_EXPORT_QUEUE_SIZE),
            pod_wait_ms: cli
                .pod_wait_ms
                .or(file.pod_wait_ms)
                .unwrap_or(DEFAULT_POD_WAIT_MS),
            pod_wait_events: cli
                .pod_wait_events
                .or(file.pod_wait_events)
                .unwrap_or(DEFAULT_POD_WAIT_EVENTS),
            log_level: cli
                .log_level
                .clone()
                .or(file.log_level)
                .unwrap_or_else(|| "info".into()),
            policies: if cli.policies.is_empty() {
                file.policy.unwrap_or_default()
            } else {
                cli.policies.clone()
            },
            policy_dir: cli.policy_dir.clone().or(file.policy_dir),
            operator_address,
            operator_tls,
            node_labels,
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), SensorError> {
        let bad = |option: &str, message: String| {
            Err(SensorError::Config {
                option: option.into(),
                message,
            })
        };
        for p in &self.policies {
            if !p.is_file() {
                return bad("policy", format!("{}: no such file", p.display()));
            }
        }
        if let Some(d) = &self.policy_dir
            && !d.is_dir()
        {
            return bad("policy-dir", format!("{}: not a directory", d.display()));
        }
        let rb = self.ring_buffer_size;
        if rb < 4096 || !rb.is_power_of_two() {
            return bad(
                "ring-buffer-size",
                format!("{rb} is not a power of two of at least 4096"),
            );
        }
        if !(64..=4_194_304).contains(&self.process_table_size) {
            return bad(
                "process-table-size",
                format!(
                    "{} is out of range; expected 64..=4194304",
                    self.process_table_size
                ),
            );
        }
        if !(64..=16_777_216).contains(&self.process_cache_size) {
            return bad(
                "process-cache-size",
                format!(
                    "{} is out of range; expected 64..=16777216",
                    self.process_cache_size
                ),
            );
        }
        if !(16..=16_777_216).contains(&self.export_queue_size) {
            return bad(
                "export-queue-size",
                format!(
                    "{} is out of range; expected 16..=16777216",
                    self.export_queue_size
                ),
            );
        }
        if self.pod_wait_ms > 600_000 {
            return bad(
                "pod-wait-ms",
                format!("{} is out of range; expected 0..=600000", self.pod_wait_ms),
            );
        }
        if self.pod_wait_events > 1_048_576 {
            return bad(
                "pod-wait-events",
                format!(
                    "{} is out of range; expected 0..=1048576",
                    self.pod_wait_events
                ),
            );
        }
        if !(1..=16_777_216).contains(&self.grpc_client_queue_size) {
            return bad(
                "grpc-client-queue-size",
                format!(
                    "{} is out of range; expected 1..=16777216",
                    self.grpc_client_queue_size
                ),
            );
        }
        if let Some(tls) = &self.grpc_tls {
            if self.grpc_address.is_none() {
                return bad(
                    "grpc-tls-cert",
                    "TLS applies to the TCP listener, but --grpc-address is not set (the unix \
                     socket is always plain text, protected by its file mode)"
                        .into(),
                );
            }
            tls.server_config()?;
        }
        if let Some(tls) = &self.operator_tls {
            tls.client_config()?;
        }
        if self.export_file_max_size == 0 {
            return bad(
                "export-file-max-size-mb",
                "0 is not allowed; expected at least 1".into(),
            );
        }
        if self.node_name.is_empty() || self.node_name.contains(':') {
            return bad(
                "node-name",
                format!(
                    "{:?} is not usable; expected a non-empty name without ':'",
                    self.node_name
                ),
            );
        }
        if let Some(path) = &self.export_file {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return bad(
                    "export-file",
                    format!("directory {} does not exist", dir.display()),
                );
            }
        }
        Ok(())
    }
}

/// Pairs the `--operator-tls-*` options with the address's scheme: https:// needs a CA, and
/// TLS options with http:// (or without an address) would be silently unused, so both are
/// errors. The files themselves are checked in [`Config::check`].
fn operator_tls(
    address: Option<&str>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    server_name: Option<String>,
) -> Result<Option<OperatorTls>, SensorError> {
    let bad = |option: &str, message: String| SensorError::Config {
        option: option.into(),
        message,
    };
    let https = address.is_some_and(|a| a.starts_with("https://"));
    if !https {
        let given = [
            ("operator-tls-ca", ca.is_some()),
            ("operator-tls-cert", cert.is_some()),
            ("operator-tls-key", key.is_some()),
            ("operator-tls-server-name", server_name.is_some()),
        ];
        if let Some((option, _)) = given.iter().find(|(_, set)| *set) {
            let why = match address {
                Some(a) => format!("--operator-address {a} is plain text; use https://HOST:PORT"),
                None => "--operator-address is not set".into(),
            };
            return Err(bad(
                option,
                format!("applies to TLS to the operator, but {why}"),
            ));
        }
        return Ok(None);
    }
    let Some(ca) = ca else {
        return Err(bad(
            "operator-tls-ca",
            "required with an https:// --operator-address (the CA that signed the operator's \
             certificate)"
                .into(),
        ));
    };
    match (&cert, &key) {
        (Some(_), None) => Err(bad(
            "operator-tls-cert",
            "needs --operator-tls-key (the certificate's private key)".into(),
        )),
        (None, Some(_)) => Err(bad(
            "operator-tls-key",
            "needs --operator-tls-cert (the certificate the key belongs to)".into(),
        )),
        _ => Ok(Some(OperatorTls {
            ca,
            cert,
            key,
            server_name,
        })),
    }
}

fn load_file(path: &Path) -> Result<FileConfig, SensorError> {
    let text = std::fs::read_to_string(path).map_err(|e| SensorError::Config {
        option: "config".into(),
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_saphyr::from_str(&text).map_err(|e| SensorError::Config {
        option: "config".into(),
        message: format!("{}: {e}", path.display()),
    })
}

fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
