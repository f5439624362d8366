//! Leader election on a `coordination.k8s.io/v1` Lease (through `kube-lease-manager`): only
//! the replica holding the lease runs the controllers; a standby takes over once the holder
//! stopped renewing it for the lease duration.

use std::future::Future;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{OperatorError, Result};
use crate::kube_metrics::KubeMetrics;

/// Default Lease name.
pub const LEASE_NAME: &str = "vigil-operator";

/// Where and how to hold the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderConfig {
    /// Lease name (default `vigil-operator`).
    pub lease_name: String,
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// Seconds a holder's lease stays valid after its last renewal.
    pub duration_secs: u64,
    /// The holder renews this many seconds before expiry (must be below `duration_secs`).
    pub grace_secs: u64,
}

impl LeaderConfig {
    /// From the environment: `POD_NAME` (else `HOSTNAME`) as identity, `POD_NAMESPACE` (else
    /// `default_namespace`) as namespace; 15 s lease, renewed 5 s before expiry.
    pub fn from_env(default_namespace: &str) -> Self {
        let identity = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("vigil-operator-{}", std::process::id()));
        let namespace = std::env::var("POD_NAMESPACE")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| default_namespace.to_string());
        LeaderConfig {
            lease_name: LEASE_NAME.into(),
            namespace,
            identity,
            duration_secs: 15,
            grace_secs: 5,
        }
    }
}

/// The lease task: `true` on the channel while this replica leads. Dropping the receiver
/// makes the task release the lease and end.
pub type LeaseTask = JoinHandle<kube_lease_manager::Result<LeaseManager>>;

/// Start competing for the lease (creating it when missing).
pub async fn elect(
    client: Client,
    cfg: &LeaderConfig,
) -> Result<(watch::Receiver<bool>, LeaseTask)> {
    let manager = LeaseManagerBuilder::new(client, &cfg.lease_name)
        .with_namespace(&cfg.namespace)
        .with_identity(&cfg.identity)
        .with_duration(cfg.duration_secs)
        .with_grace(cfg.grace_secs)
        .build()
        .await?;
    Ok(manager.watch().await)
}

/// Wait until `rx` holds `want`; `false` if the sender is gone.
async fn wait_for(rx: &mut watch::Receiver<bool>, want: bool) -> bool {
    rx.wait_for(|v| *v == want).await.is_ok()
}

/// Run `work` while `leader` is `true`: start it on gaining the lease, ask it to stop (its
/// argument turns `true`) and wait for it on losing the lease or at `shutdown`. Returns at
/// shutdown, or with an error when the lease task ended.
pub async fn while_leader<F, Fut>(
    mut leader: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
    metrics: &KubeMetrics,
    mut work: F,
) -> Result<()>
where
    F: FnMut(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        tokio::select! {
            biased;
            _ = wait_for(&mut shutdown, true) => return Ok(()),
            alive = wait_for(&mut leader, true) => {
                if !alive {
                    return Err(OperatorError::LeaderElectionStopped);
                }
            }
        }
        tracing::info!("leader lease acquired; starting the controllers");
        metrics.leader.set(1);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = work(stop_rx);
        tokio::pin!(task);
        enum Next {
            Ended,
            Lost,
            Shutdown,
            LeaseGone,
        }
        let next = tokio::select! {
            biased;
            _ = wait_for(&mut shutdown, true) => Next::Shutdown,
            alive = wait_for(&mut leader, false) => if alive { Next::Lost } else { Next::LeaseGone },
            () = &mut task => Next::Ended,
        };
        if !matches!(next, Next::Ended) {
            let _ = stop_tx.send(true);
            task.await;
        }
        metrics.leader.set(0);
        match next {
            Next::Shutdown => return Ok(()),
            Next::LeaseGone => return Err(OperatorError::LeaderElectionStopped),
            Next::Lost => tracing::warn!("leader lease lost; controllers stopped, standing by"),
            Next::Ended => {
                tracing::warn!("controllers ended while leading; restarting them");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::{Value, json};

    use super::*;
    use crate::testing::{ApiServer, Call, mock_client, reply, status_error};

    const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/vigil/leases/vigil-operator";
    const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/vigil/leases";

    fn config(identity: &str) -> LeaderConfig {
        LeaderConfig {
            lease_name: "vigil-operator".into(),
            namespace: "vigil".into(),
            identity: identity.into(),
            duration_secs: 2,
            grace_secs: 1,
        }
    }

    /// A Lease API: GET, POST (create), PATCH (apply and strategic merge: fields set, nulls
    /// removed). Every call is recorded.
    async fn serve_lease(
        mut server: ApiServer,
        lease: Arc<Mutex<Option<Value>>>,
        calls: Arc<Mutex<Vec<Call>>>,
    ) {
        while let Some((call, send)) = server.next_or_end().await {
            calls.lock().unwrap().push(call.clone());
            let mut lease = lease.lock().unwrap();
            match (call.method.as_str(), call.path()) {
                ("GET", LEASE) => match &*lease {
                    Some(l) => reply(send, 200, l),
                    None => reply(
                        send,
                        404,
                        &status_error(404, "NotFound", "leases \"vigil-operator\" not found"),
                    ),
                },
                ("POST", LEASES) => {
                    let mut l = call.body.clone();
                    l["metadata"]["namespace"] = json!("vigil");
                    l["metadata"]["resourceVersion"] = json!("1");
                    *lease = Some(l.clone());
                    reply(send, 201, &l);
                }
                ("PATCH", LEASE) => {
                    let l = lease.as_mut().expect("patch of a missing lease");
                    if l.get("spec").is_none_or(Value::is_null) {
                        l["spec"] = json!({});
                    }
                    for (k, v) in call.body["spec"].as_object().unwrap() {
                        if v.is_null() {
                            l["spec"].as_object_mut().unwrap().remove(k);
                        } else {
                            l["spec"][k] = v.clone();
                        }
                    }
                    reply(send, 200, l);
                }
                _ => panic!(
                    "unexpected request: {} {} {}",
                    call.method, call.uri, call.body
                ),
            }
        }
    }

    fn holder(lease: &Arc<Mutex<Option<Value>>>) -> Option<String> {
        lease.lock().unwrap().as_ref()?["spec"]["holderIdentity"]
            .as_str()
            .map(String::from)
    }

    #[tokio::test]
    async fn acquires_a_missing_lease_and_releases_it_on_exit() {
        let (client, server) = mock_client();
        let lease = Arc::new(Mutex::new(None));
        let calls = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(serve_lease(server, lease.clone(), calls.clone()));

        let (mut rx, task) = elect(client, &config("replica-a")).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|l| *l))
            .await
            .expect("never became leader")
            .unwrap();
        assert_eq!(holder(&lease).as_deref(), Some("replica-a"));
        {
            let calls = calls.lock().unwrap();
            assert_eq!((calls[0].method.as_str(), calls[0].path()), ("GET", LEASE));
            assert_eq!(
                (calls[1].method.as_str(), calls[1].path()),
                ("POST", LEASES)
            );
            assert_eq!(calls[1].body["metadata"]["name"], "vigil-operator");
            let apply = calls
                .iter()
                .find(|c| c.content_type == "application/apply-patch+yaml")
                .expect("no server-side apply of the lease");
            assert_eq!(apply.body["spec"]["holderIdentity"], "replica-a");
            assert_eq!(apply.body["spec"]["leaseDurationSeconds"], 2);
        }
        // Dropping the receiver releases the lease.
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("lease task did not end")
            .unwrap()
            .unwrap();
        assert_eq!(holder(&lease), None);
    }

    #[tokio::test]
    async fn standby_takes_over_after_the_holder_stops_renewing() {
        let (client, server) = mock_client();
        let renewed = Timestamp::now();
        let lease = Arc::new(Mutex::new(Some(json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "vigil-operator", "namespace": "vigil", "resourceVersion": "7"},
            "spec": {
                "holderIdentity": "replica-b",
                "leaseDurationSeconds": 2,
                "acquireTime": MicroTime(renewed),
                "renewTime": MicroTime(renewed),
                "leaseTransitions": 3
            }
        }))));
        let calls = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(serve_lease(server, lease.clone(), calls.clone()));
        let start = Instant::now();

        let (mut rx, _task) = elect(client, &config("replica-a")).await.unwrap();
        // replica-b holds a valid lease: standing by.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(!*rx.borrow(), "took a lease another replica holds");
        assert_eq!(holder(&lease).as_deref(), Some("replica-b"));

        // replica-b never renews: after the lease duration, replica-a takes over.
        tokio::time::timeout(Duration::from_secs(8), rx.wait_for(|l| *l))
            .await
            .expect("standby never took over")
            .unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(1500),
            "took over before expiry"
        );
        assert_eq!(holder(&lease).as_deref(), Some("replica-a"));
        let calls = calls.lock().unwrap();
        assert!(
            !calls.iter().any(|c| c.method == "POST"),
            "an existing lease was re-created"
        );
        let apply = calls
            .iter()
            .position(|c| c.content_type == "application/apply-patch+yaml")
            .expect("no lock attempt");
        assert_eq!(calls[apply].body["spec"]["holderIdentity"], "replica-a");
        let release = calls
            .iter()
            .position(|c| {
                c.method == "PATCH"
                    && c.body["spec"]
                        .get("holderIdentity")
                        .is_some_and(Value::is_null)
            })
            .expect("the expired lease was not released first");
        assert!(release < apply);
    }

    #[tokio::test]
    async fn work_runs_only_while_leading() {
        let (leader_tx, leader_rx) = watch::channel(false);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let metrics = Arc::new(KubeMetrics::new());
        let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
        let (stopped_tx, mut stopped) = tokio::sync::mpsc::unbounded_channel();
        let m = metrics.clone();
        let gate = tokio::spawn(async move {
            while_leader(leader_rx, shutdown_rx, &m, |mut stop| {
                let (started_tx, stopped_tx) = (started_tx.clone(), stopped_tx.clone());
                async move {
                    started_tx.send(()).unwrap();
                    let _ = stop.wait_for(|s| *s).await;
                    stopped_tx.send(()).unwrap();
                }
            })
            .await
        });
        let quiet = Duration::from_millis(200);
        assert!(
            tokio::time::timeout(quiet, started.recv()).await.is_err(),
            "ran as standby"
        );
        assert_eq!(metrics.leader.get(), 0);

        leader_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), started.recv())
            .await
            .unwrap();
        assert_eq!(metrics.leader.get(), 1);

        leader_tx.send(false).unwrap();
        tokio::time::timeout(Duration::from_secs(2), stopped.recv())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(metrics.leader.get(), 0);
        assert!(tokio::time::timeout(quiet, started.recv()).await.is_err());

        // Leading again, then shutdown: the work is stopped and the gate returns.
        leader_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), started.recv())
            .await
            .unwrap();
        shutdown_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), stopped.recv())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(2), gate)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(metrics.leader.get(), 0);
    }

    #[tokio::test]
    async fn a_vanished_lease_task_is_an_error() {
        let (leader_tx, leader_rx) = watch::channel(false);
        let (_shutdown_tx, shutdown_rx) = watch::channel(false);
        drop(leader_tx);
        let metrics = KubeMetrics::new();
        let r = while_leader(leader_rx, shutdown_rx, &metrics, |_| async {}).await;
        assert!(matches!(r, Err(OperatorError::LeaderElectionStopped)));
    }
}
