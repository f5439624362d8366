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
    /// Also reconcile the `cilium.io` policy kinds (`--cilium-policies`).
    pub cilium_policies: bool,
}

impl KubeConfig {
    /// Leader election per [`LeaderConfig::from_env`], unless `VIGIL_LEADER_ELECTION` is
    /// `false`.
    pub fn from_env(default_namespace: &str) -> Self {
        let disabled = std::env::var("VIGIL_LEADER_ELECTION").is_ok_and(|v| v == "false");
        KubeConfig {
            leader_election: (!disabled).then(|| LeaderConfig::from_env(default_namespace)),
            cilium_policies: false,
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
    let ctx = Arc::new(
        Context::new(client.clone(), fleet, metrics.clone())
            .with_cilium_policies(config.cilium_policies),
    );
    if config.cilium_policies {
        check_cilium_crds(&client).await;
    }
    let result = match &config.leader_election {
        Some(cfg) => {
            tracing::info!(lease = %cfg.lease_name, namespace = %cfg.namespace, identity = %cfg.identity, "leader election");
            let mut stop = shutdown_rx.clone();
            let elected = tokio::select! {
                r = elect_retrying(&client, cfg, &metrics) => r,
                _ = stop.wait_for(|s| *s) => None,
            };
            let Some((leader_rx, lease_task)) = elected else {
                forward.abort();
                return Ok(());
            };
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

/// Delay between attempts to set up leader election.
const ELECT_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// [`leader::elect`] until it succeeds: a refused permission or an unreachable API server is
/// logged and retried, never a reason to exit (that would only make a crash loop of it).
async fn elect_retrying(
    client: &Client,
    cfg: &LeaderConfig,
    metrics: &KubeMetrics,
) -> Option<(watch::Receiver<bool>, leader::LeaseTask)> {
    loop {
        match leader::elect(client.clone(), cfg).await {
            Ok(r) => return Some(r),
            Err(e) => {
                let what = format!(
                    "taking part in leader election (Lease {}/{})",
                    cfg.namespace, cfg.lease_name
                );
                if !crate::forbidden::report(&e, &what, metrics) {
                    tracing::error!(error = %e, "{what} failed; retrying in {ELECT_RETRY:?}");
                }
            }
        }
        tokio::time::sleep(ELECT_RETRY).await;
    }
}

/// Says clearly when `--cilium-policies` is on but the cluster serves no `cilium.io`
/// TracingPolicy kinds (their watches then fail and retry until the CRDs appear).
async fn check_cilium_crds(client: &Client) {
    use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
    for (kind, plural) in [
        ("TracingPolicy", "tracingpolicies"),
        ("TracingPolicyNamespaced", "tracingpoliciesnamespaced"),
    ] {
        let gvk = GroupVersionKind::gvk(
            vigil_api::policy::CILIUM_GROUP,
            vigil_api::policy::VERSION,
            kind,
        );
        let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
        let api: kube::Api<DynamicObject> = kube::Api::all_with(client.clone(), &ar);
        match api.list(&kube::api::ListParams::default().limit(1)).await {
            Ok(_) => tracing::info!(
                kind,
                group = vigil_api::policy::CILIUM_GROUP,
                "reconciling Tetragon's policy kind too"
            ),
            Err(kube::Error::Api(s)) if s.code == 404 => tracing::error!(
                kind,
                "--cilium-policies: the cluster has no {plural}.{} CRD; install Vigil's (Helm value \
                 crds.cilium.install, or `vigil-operator crdgen --cilium | kubectl apply -f -`); \
                 until then {kind} resources of that group are not served",
                vigil_api::policy::CILIUM_GROUP
            ),
            // Anything else (a missing permission included) shows up in the watch as well.
            Err(e) => tracing::debug!(kind, error = %e, "checking the cilium.io CRDs"),
        }
    }
}
