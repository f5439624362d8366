//! The `vigil.policysync.v1.PolicySync` gRPC service over a [`Distribution`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};
use vigil_api::wire::policy_sync as pb;
use vigil_api::wire::policy_sync::policy_sync_server::{PolicySync, PolicySyncServer};

use crate::distribution::Distribution;
use crate::error::OperatorError;

/// How long a sensor has to say Hello after opening the stream.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The service: one stream per sensor, plus GetStatus.
#[derive(Debug, Clone)]
pub struct SyncService {
    pub dist: Arc<Distribution>,
    /// When set and false, sensors are turned away (UNAVAILABLE) and retry: in Kubernetes mode
    /// only the leader has the policy set, and a standby must never send a sensor an empty set
    /// (the sensor would unload everything the operator gave it).
    pub accepting: Option<Arc<std::sync::atomic::AtomicBool>>,
}

type SetStream = Pin<Box<dyn Stream<Item = Result<pb::OperatorMessage, Status>> + Send>>;

fn policies(set: pb::PolicySet) -> pb::OperatorMessage {
    pb::OperatorMessage {
        message: Some(pb::operator_message::Message::Policies(set)),
    }
}

fn pods(set: pb::PodSet) -> pb::OperatorMessage {
    pb::OperatorMessage {
        message: Some(pb::operator_message::Message::Pods(set)),
    }
}

/// What a sensor's stream sends: the newest pod set and policy set of its node, the pod set
/// first whenever both changed (a scoped policy then finds its pods at load). Like the
/// channels, a slow reader gets the newest sets, never a backlog. Ends when the node's channels
/// close (a newer stream of the node replaced this one, or the node was forgotten).
pub fn outbound(
    sets: watch::Receiver<pb::PolicySet>,
    pod_sets: watch::Receiver<Option<pb::PodSet>>,
) -> impl Stream<Item = pb::OperatorMessage> + Send {
    struct Out {
        sets: watch::Receiver<pb::PolicySet>,
        pod_sets: watch::Receiver<Option<pb::PodSet>>,
        queue: VecDeque<pb::OperatorMessage>,
        started: bool,
    }
    let out = Out {
        sets,
        pod_sets,
        queue: VecDeque::new(),
        started: false,
    };
    futures::stream::unfold(out, |mut o| async move {
        loop {
            if let Some(m) = o.queue.pop_front() {
                return Some((m, o));
            }
            if !o.started {
                o.started = true;
                if let Some(p) = o.pod_sets.borrow_and_update().clone() {
                    o.queue.push_back(pods(p));
                }
                o.queue
                    .push_back(policies(o.sets.borrow_and_update().clone()));
                continue;
            }
            // `changed` marks what it saw as seen: remember which one woke us.
            let pods_woke = tokio::select! {
                r = o.pod_sets.changed() => r.map(|()| true),
                r = o.sets.changed() => r.map(|()| false),
            }
            .ok()?;
            if (pods_woke || o.pod_sets.has_changed().unwrap_or(false))
                && let Some(p) = o.pod_sets.borrow_and_update().clone()
            {
                o.queue.push_back(pods(p));
            }
            if !pods_woke || o.sets.has_changed().unwrap_or(false) {
                o.queue
                    .push_back(policies(o.sets.borrow_and_update().clone()));
            }
        }
    })
}

#[tonic::async_trait]
impl PolicySync for SyncService {
    type SyncStream = SetStream;

    async fn sync(
        &self,
        request: Request<Streaming<pb::SensorMessage>>,
    ) -> Result<Response<SetStream>, Status> {
        if let Some(a) = &self.accepting
            && !a.load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(Status::unavailable(
                "this operator replica is not serving policies (not the leader, or its policies are not loaded yet)",
            ));
        }
        let peer = request
            .remote_addr()
            .map_or_else(|| "?".to_string(), |a| a.to_string());
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no Hello within 10 s"))??;
        let hello = match first.and_then(|m| m.message) {
            Some(pb::sensor_message::Message::Hello(h)) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of a Sync stream must be Hello",
                ));
            }
        };
        let conn = self
            .dist
            .connect(hello)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tracing::debug!(node = %conn.node, %peer, "sync stream opened");
        let dist = self.dist.clone();
        let (node, id) = (conn.node.clone(), conn.id);
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(pb::SensorMessage {
                        message: Some(pb::sensor_message::Message::Report(r)),
                    })) => dist.report(&node, id, &r),
                    Ok(Some(_)) => {
                        tracing::warn!(node = %node, "ignoring a second Hello or an empty message");
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::info!(node = %node, "sync stream broke: {}", e.message());
                        break;
                    }
                }
            }
            dist.disconnect(&node, id);
        });
        let stream = outbound(conn.sets, conn.pods).map(Ok);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        Ok(Response::new(self.dist.status()))
    }
}

/// Binds the gRPC listener (so that a bad or busy address fails at start).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, OperatorError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        OperatorError::io(
            format!("cannot listen on {addr} for policy sync (--grpc-address)"),
            e,
        )
    })
}

/// Serves the service on `listener` until the task is dropped; over TLS when `tls` is given
/// (see [`crate::run::RunOptions::tls_config`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tonic::transport::ServerTlsConfig>,
    service: SyncService,
) -> Result<(), OperatorError> {
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls).map_err(|e| OperatorError::Config {
            option: "grpc-tls-cert".into(),
            message: e.to_string(),
        })?;
    }
    server
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .add_service(PolicySyncServer::new(service).max_decoding_message_size(64 << 20))
        .serve_with_incoming(incoming)
        .await
        .map_err(|e| OperatorError::Grpc(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what(m: &pb::OperatorMessage) -> String {
        match &m.message {
            Some(pb::operator_message::Message::Policies(s)) => format!("policies {}", s.sequence),
            Some(pb::operator_message::Message::Pods(s)) => format!("pods {}", s.sequence),
            None => "empty".into(),
        }
    }

    async fn next(s: &mut (impl Stream<Item = pb::OperatorMessage> + Unpin)) -> String {
        let m = tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .expect("a message within 5 s")
            .expect("the stream goes on");
        what(&m)
    }

    fn set(sequence: u64) -> pb::PolicySet {
        pb::PolicySet {
            sequence,
            ..Default::default()
        }
    }

    fn pod_set(sequence: u64) -> Option<pb::PodSet> {
        Some(pb::PodSet {
            sequence,
            pods: Vec::new(),
        })
    }

    #[tokio::test]
    async fn pods_go_first_and_a_slow_reader_gets_the_newest_sets() {
        let (sets_tx, sets) = watch::channel(set(1));
        let (pods_tx, pods) = watch::channel(None);
        let mut s = Box::pin(outbound(sets, pods));
        // No pods known: the policy set alone.
        assert_eq!(next(&mut s).await, "policies 1");
        // Both change before the reader looks: pods first, each once, newest only.
        sets_tx.send_replace(set(2));
        sets_tx.send_replace(set(3));
        pods_tx.send_replace(pod_set(1));
        pods_tx.send_replace(pod_set(2));
        assert_eq!(next(&mut s).await, "pods 2");
        assert_eq!(next(&mut s).await, "policies 3");
        // One side alone.
        sets_tx.send_replace(set(4));
        assert_eq!(next(&mut s).await, "policies 4");
        pods_tx.send_replace(pod_set(3));
        assert_eq!(next(&mut s).await, "pods 3");
        // The node's channels close: the stream ends.
        drop(sets_tx);
        drop(pods_tx);
        let end = tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .expect("the stream ends");
        assert!(end.is_none());
    }

    #[tokio::test]
    async fn a_stream_opened_with_pods_known_starts_with_them() {
        let (_sets_tx, sets) = watch::channel(set(1));
        let (_pods_tx, pods) = watch::channel(pod_set(7));
        let mut s = Box::pin(outbound(sets, pods));
        assert_eq!(next(&mut s).await, "pods 7");
        assert_eq!(next(&mut s).await, "policies 1");
    }
}
