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
}

impl RunOptions {
    /// Checks what can be checked before binding anything.
    pub fn check(&self) -> Result<(), OperatorError> {
        match &self.policy_dir {
            Some(d) if !d.is_dir() => Err(OperatorError::Config {
                option: "policy-dir".into(),
                message: format!("{}: not a directory", d.display()),
            }),
            _ => Ok(()),
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
    tasks: Vec<tokio::task::JoinHandle<Result<(), OperatorError>>>,
}

impl Distributor {
    /// Binds the gRPC and metrics listeners.
    pub async fn bind(opts: &RunOptions) -> Result<Distributor, OperatorError> {
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
            SyncService {
                dist: self.dist.clone(),
                accepting: self.accepting.clone(),
            },
        )));
        if let Some(l) = metrics_listener {
            // Each side names its metrics under its own prefix: distribution's under
            // `vigil_operator`, the Kubernetes side's (`operator_…`) under `vigil`.
            let mut registry = prometheus_client::registry::Registry::default();
            self.metrics
                .register(registry.sub_registry_with_prefix("vigil_operator"));
            if let Some(k) = &self.kube_metrics {
                k.register(registry.sub_registry_with_prefix("vigil"));
            }
            self.tasks
                .push(tokio::spawn(metrics::serve(l, Arc::new(registry))));
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
    for p in &r.upserted {
        tracing::info!(policy = %p, "policy file loaded");
    }
    for p in &r.removed {
        tracing::info!(policy = %p, "policy removed: its file is gone");
    }
    for e in &r.errors {
        tracing::error!("policy directory: {e}");
        metrics.policy_dir_errors.inc();
    }
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
    let mut pd = PolicyDir::new(dir, d.dist.clone());
    report(&pd.sync(), &d.metrics);
    d.serve();
    eprintln!("{READY_LINE} on {}", d.grpc_address);
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
    eprintln!("{READY_LINE} on {} (Kubernetes mode)", d.grpc_address);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (pods_stop_tx, pods_stop_rx) = tokio::sync::oneshot::channel::<()>();
    // Every replica watches pods (not only the leader): a new leader then has the cluster's
    // pods at once instead of sending sensors an empty inventory.
    let feed: Arc<dyn crate::fleet::PodFeed> = d.dist.clone();
    let pods = tokio::spawn(crate::pod_watch::run_pod_watcher(
        client.clone(),
        feed,
        kube_metrics.clone(),
        async move {
            let _ = pods_stop_rx.await;
        },
    ));
    let (nodes_stop_tx, nodes_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let label_feed: Arc<dyn crate::fleet::NodeLabelFeed> = d.dist.clone();
    let nodes = tokio::spawn(crate::node_watch::run_node_watcher(
        client.clone(),
        label_feed,
        kube_metrics.clone(),
        async move {
            let _ = nodes_stop_rx.await;
        },
    ));
    let fleet: Arc<dyn crate::fleet::Fleet> = d.dist.clone();
    let controllers = tokio::spawn(crate::run_kube(client, fleet, kube_metrics, async move {
        let _ = stop_rx.await;
    }));
    let result = tokio::select! {
        () = shutdown => Ok(()),
        e = d.failed() => Err(e),
    };
    let _ = stop_tx.send(());
    let _ = pods_stop_tx.send(());
    let _ = nodes_stop_tx.send(());
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
