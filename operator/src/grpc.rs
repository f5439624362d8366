//! The `vigil.policysync.v1.PolicySync` gRPC service over a [`Distribution`].

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio_stream::wrappers::WatchStream;
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

type SetStream = Pin<Box<dyn Stream<Item = Result<pb::PolicySet, Status>> + Send>>;

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
        let stream = WatchStream::new(conn.sets).map(Ok);
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

/// Serves the service on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: SyncService,
) -> Result<(), OperatorError> {
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .add_service(PolicySyncServer::new(service).max_decoding_message_size(64 << 20))
        .serve_with_incoming(incoming)
        .await
        .map_err(|e| OperatorError::Grpc(e.to_string()))
}
