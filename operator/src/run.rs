//! `vigil-operator run`: the options both modes share, and the run loop.
//!
//! GitOps mode (`--policy-dir`) reads policies from a directory; Kubernetes mode (no
//! `--policy-dir`) reads TracingPolicy resources through the controllers and the cluster's
//! pods through the pod watcher. Both feed the same [`Distribution`], which serves the sensors
//! over gRPC.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::ServerTlsConfig;
use vigil_host::tls_files::{self, TlsFile};

use crate::distribution::Distribution;
use crate::error::OperatorError;
use crate::gitops::{self, PolicyDir, SyncReport};
use crate::grpc::{self, SyncService};
use crate::metrics::{self, OperatorMetrics};

/// The default policy sync address.
pub const DEFAULT_GRPC_ADDRESS: &str = "0.0.0.0:4245";

/// The line written to stderr once the operator serves sensors; tests and scripts wait for it.
pub const READY_LINE: &str = "vigil-operator: ready, serving policy sync";

/// Options of `vigil-operator run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// Where sensors connect (`--grpc-address`).
    pub grpc_address: SocketAddr,
    /// Prometheus `/metrics` (`--metrics-address`).
    pub metrics_address: Option<SocketAddr>,
    /// GitOps mode: the policy directory (`--policy-dir`); `None` is Kubernetes mode.
    pub policy_dir: Option<PathBuf>,
    /// Serve policy sync over TLS with this certificate chain (`--grpc-tls-cert`, PEM).
    pub grpc_tls_cert: Option<PathBuf>,
    /// The private key of `grpc_tls_cert` (`--grpc-tls-key`, PEM).
    pub grpc_tls_key: Option<PathBuf>,
    /// Require client certificates signed by these CAs (`--grpc-tls-client-ca`, PEM): mTLS.
    pub grpc_tls_client_ca: Option<PathBuf>,
    /// Kubernetes mode: also reconcile the `cilium.io` policy kinds (`--cilium-policies`).
    pub cilium_policies: bool,
}

fn config_error(option: &str, message: String) -> OperatorError {
    OperatorError::Config {
        option: option.into(),
        message,
    }
}

impl RunOptions {
    /// Checks what can be checked before binding anything, the TLS files included.
    pub fn check(&self) -> Result<(), OperatorError> {
        if let Some(d) = &self.policy_dir
            && !d.is_dir()
        {
            return Err(config_error(
                "policy-dir",
                format!("{}: not a directory", d.display()),
            ));
        }
        if self.cilium_policies && self.policy_dir.is_some() {
            return Err(config_error(
                "cilium-policies",
                "is for Kubernetes mode; with --policy-dir, files of both apiVersions \
                 (cilium.io/v1alpha1 and vigil.dev/v1alpha1) are read anyway"
                    .into(),
            ));
        }
        self.tls_config().map(|_| ())
    }

    /// Reads and checks the TLS files: `None` serves plain text.
    pub fn tls_config(&self) -> Result<Option<ServerTlsConfig>, OperatorError> {
        let (cert, key) = match (&self.grpc_tls_cert, &self.grpc_tls_key) {
            (Some(c), Some(k)) => (c, k),
            (None, None) if self.grpc_tls_client_ca.is_some() => {
                return Err(config_error(
                    "grpc-tls-client-ca",
                    "needs --grpc-tls-cert and --grpc-tls-key (client certificates are checked \
                     inside a TLS connection)"
                        .into(),
                ));
            }
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(config_error(
                    "grpc-tls-cert",
                    "needs --grpc-tls-key (the certificate's private key)".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(config_error(
                    "grpc-tls-key",
                    "needs --grpc-tls-cert (the certificate the key belongs to)".into(),
                ));
            }
        };
        Ok(Some(tls_files::server_config(
            TlsFile::new("grpc-tls-cert", cert),
            TlsFile::new("grpc-tls-key", key),
            self.grpc_tls_client_ca
                .as_deref()
                .map(|p| TlsFile::new("grpc-tls-client-ca", p)),
        )?))
    }

    /// How sensors connect, for the log and the ready line.
    fn mode(&self) -> &'static str {
        match (&self.grpc_tls_cert, &self.grpc_tls_client_ca) {
            (None, _) => "plain text",
            (Some(_), None) => "TLS",
            (Some(_), Some(_)) => "mTLS: client certificates required",
        }
    }
}

/// The distribution side: what both modes start. [`Distributor::bind`] binds the listeners
/// (a busy address fails at once); [`Distributor::serve`] starts answering sensors. A source
/// upserts its initial policies in between, so that no sensor is ever sent a set that lacks
/// them (it would unload them).
pub struct Distributor {
    pub dist: Arc<Distribution>,
    pub metrics: Arc<OperatorMetrics>,
    pub grpc_address: SocketAddr,
    /// Kubernetes mode: the controllers' metrics, served beside the distribution's.
    pub kube_metrics: Option<Arc<crate::KubeMetrics>>,
    /// Kubernetes mode: whether sensors are served (see [`SyncService::accepting`]).
    pub accepting: Option<Arc<std::sync::atomic::AtomicBool>>,
    listeners: Option<(tokio::net::TcpListener, Option<tokio::net::TcpListener>)>,
    /// TLS of the gRPC listener, read and checked before binding.
    tls: Option<ServerTlsConfig>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), OperatorError>>>,
}

/// How often staged rollouts are checked for an elapsed pause (answers move them at once).
const ROLLOUT_TICK: Duration = Duration::from_millis(500);

/// The clock of staged rollouts' pauses; never ends.
async fn advance_rollouts_forever(dist: Arc<Distribution>) -> Result<(), OperatorError> {
    let mut every = tokio::time::interval(ROLLOUT_TICK);
    loop {
        every.tick().await;
        dist.advance_rollouts();
    }
}

impl Distributor {
    /// Binds the gRPC and metrics listeners.
    pub async fn bind(opts: &RunOptions) -> Result<Distributor, OperatorError> {
        let tls = opts.tls_config()?;
        let metrics = Arc::new(OperatorMetrics::default());
        let dist = Arc::new(Distribution::new(metrics.clone()));
        let grpc_listener = grpc::bind(opts.grpc_address).await?;
        let grpc_address = grpc_listener
            .local_addr()
            .map_err(|e| OperatorError::io("gRPC listener address", e))?;
        let metrics_listener = match opts.metrics_address {
            Some(addr) => Some(metrics::bind(addr).await?),
            None => None,
        };
        Ok(Distributor {
            dist,
            metrics,
            grpc_address,
            kube_metrics: None,
            accepting: None,
            listeners: Some((grpc_listener, metrics_listener)),
            tls,
            tasks: Vec::new(),
        })
    }

    /// Starts serving sensors and metrics.
    pub fn serve(&mut self) {
        let Some((grpc_listener, metrics_listener)) = self.listeners.take() else {
            return;
        };
        self.tasks.push(tokio::spawn(grpc::serve(
            grpc_listener,
            self.tls.take(),
            SyncService {
                dist: self.dist.clone(),
                accepting: self.accepting.clone(),
            },
        )));
        self.tasks
            .push(tokio::spawn(advance_rollouts_forever(self.dist.clone())));
        if let Some(l) = metrics_listener {
            // Each side names its metrics under its own prefix: distribution's under
            // `vigil_operator`, the Kubernetes side's (`operator_…`) under `vigil`.
            let mut registry = prometheus_client::registry::Registry::default();
            self.metrics
                .register(registry.sub_registry_with_prefix("vigil_operator"));
            if let Some(k) = &self.kube_metrics {
                k.register(registry.sub_registry_with_prefix("vigil"));
            }
            self.tasks.push(tokio::spawn(async move {
                Ok(metrics::serve(l, Arc::new(registry)).await?)
            }));
        }
    }

    /// Waits until a server task fails (they do not end otherwise).
    pub async fn failed(&mut self) -> OperatorError {
        if self.tasks.is_empty() {
            return std::future::pending().await;
        }
        let (r, _, _) = futures::future::select_all(self.tasks.iter_mut()).await;
        match r {
            Ok(Err(e)) => e,
            Ok(Ok(())) => OperatorError::Grpc("a server stopped".into()),
            Err(e) => OperatorError::Grpc(format!("a server task failed: {e}")),
        }
    }
}

impl Drop for Distributor {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn report(r: &SyncReport, metrics: &OperatorMetrics) {
    r.log(&metrics.policy_dir_errors);
}

/// Runs the operator until `shutdown` completes (or a server fails).
pub async fn run(
    opts: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), OperatorError> {
    opts.check()?;
    let Some(dir) = opts.policy_dir.clone() else {
        return run_kubernetes(opts, shutdown).await;
    };
    let mut d = Distributor::bind(&opts).await?;
    let mut pd = PolicyDir::new(dir, gitops::FleetTarget(d.dist.clone()));
    report(&pd.sync(), &d.metrics);
    d.serve();
    eprintln!("{READY_LINE} on {} ({})", d.grpc_address, opts.mode());
    let metrics = d.metrics.clone();
    let watcher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(gitops::POLL_INTERVAL_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let pd = Arc::new(std::sync::Mutex::new(pd));
        loop {
            tick.tick().await;
            let pd = pd.clone();
            let r = tokio::task::spawn_blocking(move || {
                pd.lock().unwrap_or_else(|e| e.into_inner()).sync()
            })
            .await;
            if let Ok(r) = r {
                report(&r, &metrics);
            }
        }
    });
    let result = tokio::select! {
        () = shutdown => Ok(()),
        e = d.failed() => Err(e),
    };
    watcher.abort();
    tracing::info!("stopping");
    result
}

/// Kubernetes mode: the TracingPolicy controllers (under leader election) feed distribution.
async fn run_kubernetes(
    opts: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), OperatorError> {
    let client = kube::Client::try_default().await?;
    let mut d = Distributor::bind(&opts).await?;
    let kube_metrics = Arc::new(crate::KubeMetrics::new());
    d.kube_metrics = Some(kube_metrics.clone());
    let accepting = Arc::new(std::sync::atomic::AtomicBool::new(false));
    d.accepting = Some(accepting.clone());
    d.serve();
    // Serve sensors only while leading, and only once the controllers have had time to load the
    // cluster's policies after winning the lease: a sensor is sent the full set on connect.
    let gate = tokio::spawn(leader_gate(kube_metrics.clone(), accepting));
    eprintln!(
        "{READY_LINE} on {} (Kubernetes mode, {})",
        d.grpc_address,
        opts.mode()
    );
    // One stop signal for the watchers and the controllers.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop = || crate::controller::stopped(stop_rx.clone());
    // Every replica watches pods and nodes (not only the leader): a new leader then has them at
    // once instead of sending sensors an empty inventory.
    let feed: Arc<dyn crate::fleet::PodFeed> = d.dist.clone();
    let pods = tokio::spawn(crate::pod_watch::run_pod_watcher(
        client.clone(),
        feed,
        kube_metrics.clone(),
        stop(),
    ));
    let label_feed: Arc<dyn crate::fleet::NodeLabelFeed> = d.dist.clone();
    let nodes = tokio::spawn(crate::node_watch::run_node_watcher(
        client.clone(),
        label_feed,
        kube_metrics.clone(),
        stop(),
    ));
    let fleet: Arc<dyn crate::fleet::Fleet> = d.dist.clone();
    let mut config = crate::KubeConfig::from_env(client.default_namespace());
    config.cilium_policies = opts.cilium_policies;
    let controllers = tokio::spawn(crate::run_kube_with(
        client,
        fleet,
        kube_metrics,
        config,
        stop(),
    ));
    let result = tokio::select! {
        () = shutdown => Ok(()),
        e = d.failed() => Err(e),
    };
    let _ = stop_tx.send(true);
    gate.abort();
    let _ = pods.await;
    let _ = nodes.await;
    match controllers.await {
        Ok(Err(e)) if result.is_ok() => return Err(e),
        _ => {}
    }
    tracing::info!("stopping");
    result
}

/// How long a new leader waits before serving sensors, so that its controllers' first pass has
/// pushed the cluster's policies into distribution.
pub const LEADER_SETTLE: Duration = Duration::from_secs(3);

/// Flips `accepting` with leadership (checked every 250 ms).
async fn leader_gate(
    metrics: Arc<crate::KubeMetrics>,
    accepting: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    let mut since: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let leading = metrics.leader.get() == 1;
        since = match (leading, since) {
            (true, None) => Some(tokio::time::Instant::now()),
            (true, s) => s,
            (false, _) => None,
        };
        let serve = since.is_some_and(|t| t.elapsed() >= LEADER_SETTLE);
        if accepting.swap(serve, Ordering::SeqCst) != serve {
            tracing::info!(serving = serve, "policy sync to sensors");
        }
    }
}

#[cfg(test)]
mod gate_tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test(start_paused = true)]
    async fn sensors_are_served_only_by_a_settled_leader() {
        let metrics = Arc::new(crate::KubeMetrics::new());
        let accepting = Arc::new(AtomicBool::new(false));
        let gate = tokio::spawn(leader_gate(metrics.clone(), accepting.clone()));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!accepting.load(Ordering::SeqCst), "a standby never serves");
        metrics.leader.set(1);
        tokio::time::sleep(LEADER_SETTLE / 2).await;
        assert!(
            !accepting.load(Ordering::SeqCst),
            "not before the settle time"
        );
        tokio::time::sleep(LEADER_SETTLE).await;
        assert!(accepting.load(Ordering::SeqCst), "a settled leader serves");
        metrics.leader.set(0);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !accepting.load(Ordering::SeqCst),
            "losing the lease stops serving"
        );
        gate.abort();
    }
}

#[cfg(test)]
mod tls_tests {
    use super::*;
    use std::path::Path;

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    /// Writes `ca.pem` and, for each name, NAME.pem/NAME.key signed by it, into `dir`.
    fn pki(dir: &Path, names: &[&str]) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.pem"), issuer.pem()).unwrap();
        for n in names {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec!["localhost".to_string()])
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            std::fs::write(dir.join(format!("{n}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{n}.key")), key.serialize_pem()).unwrap();
        }
        std::fs::write(dir.join("garbage.pem"), "not PEM\n").unwrap();
    }

    fn opts(dir: &Path, cert: Option<&str>, key: Option<&str>, ca: Option<&str>) -> RunOptions {
        RunOptions {
            grpc_address: DEFAULT_GRPC_ADDRESS.parse().unwrap(),
            metrics_address: None,
            policy_dir: Some(dir.to_path_buf()),
            grpc_tls_cert: cert.map(|f| dir.join(f)),
            grpc_tls_key: key.map(|f| dir.join(f)),
            grpc_tls_client_ca: ca.map(|f| dir.join(f)),
            cilium_policies: false,
        }
    }

    /// `check` fails with one line naming `option` and containing `text`.
    fn refused(o: RunOptions, option: &str, text: &str) {
        let e = o.check().unwrap_err();
        let s = e.to_string();
        assert!(
            matches!(&e, OperatorError::Config { option: o, .. } if o == option),
            "{s}"
        );
        assert!(
            s.starts_with(&format!("invalid option --{option}: ")),
            "{s}"
        );
        assert!(s.contains(text), "{s}");
        assert!(!s.contains('\n'), "{s}");
    }

    #[test]
    fn tls_and_mtls_options_are_accepted() {
        let d = tempfile::tempdir().unwrap();
        let d = d.path();
        pki(d, &["server"]);
        let plain = opts(d, None, None, None);
        plain.check().unwrap();
        assert!(plain.tls_config().unwrap().is_none());
        assert_eq!(plain.mode(), "plain text");
        let tls = opts(d, Some("server.pem"), Some("server.key"), None);
        assert!(tls.tls_config().unwrap().is_some());
        assert_eq!(tls.mode(), "TLS");
        let mtls = opts(d, Some("server.pem"), Some("server.key"), Some("ca.pem"));
        mtls.check().unwrap();
        assert!(mtls.mode().starts_with("mTLS"));
    }

    #[test]
    fn each_bad_tls_input_names_its_option() {
        let d = tempfile::tempdir().unwrap();
        let d = d.path();
        pki(d, &["server", "other"]);
        let c = Some("server.pem");
        let k = Some("server.key");
        // Pairing.
        refused(
            opts(d, c, None, None),
            "grpc-tls-cert",
            "needs --grpc-tls-key",
        );
        refused(
            opts(d, None, k, None),
            "grpc-tls-key",
            "needs --grpc-tls-cert",
        );
        refused(
            opts(d, None, None, Some("ca.pem")),
            "grpc-tls-client-ca",
            "needs --grpc-tls-cert and --grpc-tls-key",
        );
        // Missing or unreadable files.
        refused(
            opts(d, Some("nope.pem"), k, None),
            "grpc-tls-cert",
            "cannot read",
        );
        refused(
            opts(d, c, Some("nope.key"), None),
            "grpc-tls-key",
            "cannot read",
        );
        refused(
            opts(d, c, k, Some("nope.pem")),
            "grpc-tls-client-ca",
            "cannot read",
        );
        // A directory is not a file.
        refused(opts(d, c, Some(""), None), "grpc-tls-key", "cannot read");
        // Bad PEM.
        refused(
            opts(d, Some("garbage.pem"), k, None),
            "grpc-tls-cert",
            "no PEM certificate",
        );
        refused(
            opts(d, c, Some("garbage.pem"), None),
            "grpc-tls-key",
            "no usable PEM private key",
        );
        refused(
            opts(d, c, Some("server.pem"), None),
            "grpc-tls-key",
            "no usable PEM private key",
        );
        refused(
            opts(d, c, k, Some("garbage.pem")),
            "grpc-tls-client-ca",
            "no PEM certificate",
        );
        // A key that belongs to another certificate.
        refused(
            opts(d, c, Some("other.key"), None),
            "grpc-tls-key",
            "does not belong to the certificate",
        );
    }

    #[tokio::test]
    async fn bind_refuses_bad_tls_before_listening() {
        let d = tempfile::tempdir().unwrap();
        let d = d.path();
        pki(d, &["server", "other"]);
        // A port that stays free: binding it would succeed, so the error must come first.
        let mut o = opts(d, Some("server.pem"), Some("other.key"), None);
        o.grpc_address = "127.0.0.1:0".parse().unwrap();
        match Distributor::bind(&o).await {
            Err(OperatorError::Config { option, .. }) => assert_eq!(option, "grpc-tls-key"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("bound with a mismatched key"),
        }
    }
}
