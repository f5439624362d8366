//! Kubernetes mode: leader election, both policy controllers and the status roll-up, in one
//! entry point ([`run_kube`]).

use std::future::Future;
use std::sync::Arc;

use kube::Client;
use tokio::sync::watch;

use crate::controller::{Context, run_controllers};
use crate::error::Result;
use crate::fleet::Fleet;
use crate::kube_metrics::KubeMetrics;
use crate::leader::{self, LeaderConfig};

/// Settings of [`run_kube_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeConfig {
    /// `None`: run the controllers without leader election (a single replica).
    pub leader_election: Option<LeaderConfig>,
}

impl KubeConfig {
    /// Leader election per [`LeaderConfig::from_env`], unless `VIGIL_LEADER_ELECTION` is
    /// `false`.
    pub fn from_env(default_namespace: &str) -> Self {
        let disabled = std::env::var("VIGIL_LEADER_ELECTION").is_ok_and(|v| v == "false");
        KubeConfig {
            leader_election: (!disabled).then(|| LeaderConfig::from_env(default_namespace)),
        }
    }
}

/// Run the Kubernetes side of the operator until `shutdown` completes: compete for the
/// leader lease and, while leading, run the `TracingPolicy` and `TracingPolicyNamespaced`
/// controllers, which push policies to `fleet` and roll its reports up into each resource's
/// status. Configuration from the environment ([`KubeConfig::from_env`]).
pub async fn run_kube(
    client: Client,
    fleet: Arc<dyn Fleet>,
    metrics: Arc<KubeMetrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let config = KubeConfig::from_env(client.default_namespace());
    run_kube_with(client, fleet, metrics, config, shutdown).await
}

/// [`run_kube`] with explicit settings.
pub async fn run_kube_with(
    client: Client,
    fleet: Arc<dyn Fleet>,
    metrics: Arc<KubeMetrics>,
    config: KubeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let forward = tokio::spawn(async move {
        shutdown.await;
        let _ = shutdown_tx.send(true);
    });
    let ctx = Arc::new(Context::new(client.clone(), fleet, metrics.clone()));
    let result = match &config.leader_election {
        Some(cfg) => {
            tracing::info!(lease = %cfg.lease_name, namespace = %cfg.namespace, identity = %cfg.identity, "leader election");
            let (leader_rx, lease_task) = leader::elect(client, cfg).await?;
            let result = leader::while_leader(leader_rx, shutdown_rx, &metrics, |stop| {
                run_controllers(ctx.clone(), stop)
            })
            .await;
            // The receiver is gone: the lease task releases the lease and ends.
            match lease_task.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "releasing the leader lease"),
                Err(e) => tracing::warn!(error = %e, "leader election task"),
            }
            result
        }
        None => {
            metrics.leader.set(1);
            run_controllers(ctx, shutdown_rx).await;
            metrics.leader.set(0);
            Ok(())
        }
    };
    forward.abort();
    result
}
