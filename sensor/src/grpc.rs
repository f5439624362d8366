//! gRPC server (`tetragon.FineGuidanceSensors`, the same RPCs as `vigil.sensor.v1.Sensors`, and
//! `vigil.sensor.v1.SensorInfo`) and the event broadcast behind GetEvents. The policy RPCs are in
//! [`crate::policy_api`]; TLS for the TCP listener is in [`crate::grpc_tls`].
//!
//! The pipeline calls [`Broadcaster::publish`] for every event; it never waits. Each GetEvents
//! client has its own bounded queue (`--grpc-client-queue-size`); when that queue is full the
//! event is dropped for that client only, counted in
//! `vigil_grpc_client_events_dropped_total{client}`, and reported to the client in-band as a
//! `rate_limit_info` envelope (`number_of_dropped_process_events` = events lost since the
//! previous report) before the next event it receives, or within a second when nothing else
//! arrives.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};
use vigil_api::events::{EventKind, GetEventsResponse};
use vigil_api::wire::{self, FieldFilterSpec, sensor_info, tetragon};

use crate::error::SensorError;
use crate::event_filter::RequestFilter;
use crate::features::Features;
use crate::grpc_tls::GrpcTls;
use crate::metrics::{ClientLabel, Metrics};
use crate::policy_api::PolicyApi;
use crate::policy_control::PolicyControl;

/// One event as handed to clients: its kind (for field filters) and its protobuf form,
/// converted once for all clients.
#[derive(Debug)]
pub struct Published {
    pub kind: EventKind,
    pub proto: tetragon::GetEventsResponse,
}

struct Client {
    filter: Mutex<RequestFilter>,
    tx: mpsc::Sender<Arc<Published>>,
    /// Dropped since the last in-band report (shared with the stream, which must not hold
    /// `tx`, or the stream would never end).
    pending_drops: Arc<AtomicU64>,
    dropped_metric: Counter,
    /// The metric series of this stream, removed when the stream ends so that series do not
    /// pile up with every connection.
    label: ClientLabel,
}

/// Fans events out to GetEvents clients without ever blocking the caller.
pub struct Broadcaster {
    clients: Mutex<Vec<Arc<Client>>>,
    queue_size: usize,
    next_id: AtomicU64,
    dropped_total: AtomicU64,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Broadcaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broadcaster")
            .field("clients", &self.subscribers())
            .finish_non_exhaustive()
    }
}

impl Broadcaster {
    pub fn new(queue_size: usize, metrics: Arc<Metrics>) -> Self {
        Broadcaster {
            clients: Mutex::new(Vec::new()),
            queue_size: queue_size.max(1),
            next_id: AtomicU64::new(1),
            dropped_total: AtomicU64::new(0),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Client>>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn subscribers(&self) -> usize {
        self.lock().len()
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    /// Whether anyone listens (lets the pipeline skip work when nobody does).
    pub fn has_subscribers(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Offers one event (and its JSON line, already written for the exporters) to every client.
    pub fn publish(&self, event: &GetEventsResponse, line: &str) {
        let clients: Vec<Arc<Client>> = self.lock().clone();
        if clients.is_empty() {
            return;
        }
        let Some(kind) = event.kind() else {
            return;
        };
        let mut shared: Option<Arc<Published>> = None;
        let mut closed = false;
        for c in &clients {
            let pass = c
                .filter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .matches(event);
            if !pass {
                continue;
            }
            let item = match &shared {
                Some(p) => p.clone(),
                None => match wire::json_to_proto(line) {
                    Ok(proto) => {
                        let p = Arc::new(Published { kind, proto });
                        shared = Some(p.clone());
                        p
                    }
                    Err(e) => {
                        tracing::error!("cannot convert an event for gRPC clients: {e}");
                        return;
                    }
                },
            };
            match c.tx.try_send(item) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    c.pending_drops.fetch_add(1, Ordering::Relaxed);
                    c.dropped_metric.inc();
                    self.metrics.grpc_dropped.inc();
                    self.dropped_total.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => closed = true,
            }
        }
        if closed {
            let mut clients = self.lock();
            clients.retain(|c| {
                let open = !c.tx.is_closed();
                if !open {
                    self.metrics.grpc_client_dropped.remove(&c.label);
                }
                open
            });
            self.metrics.grpc_clients.set(clients.len() as i64);
        }
    }

    fn subscribe(
        &self,
        filter: RequestFilter,
        peer: &str,
    ) -> (mpsc::Receiver<Arc<Published>>, Arc<AtomicU64>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.queue_size);
        let label = ClientLabel {
            client: format!("{id}:{peer}"),
        };
        let dropped_metric = self
            .metrics
            .grpc_client_dropped
            .get_or_create(&label)
            .clone();
        let drops = Arc::new(AtomicU64::new(0));
        let client = Arc::new(Client {
            filter: Mutex::new(filter),
            tx,
            pending_drops: drops.clone(),
            dropped_metric,
            label,
        });
        let mut clients = self.lock();
        clients.push(client);
        self.metrics.grpc_clients.set(clients.len() as i64);
        (rx, drops)
    }

    /// Ends every stream (each client still receives what is already queued for it).
    pub fn close(&self) {
        for c in self.lock().drain(..) {
            self.metrics.grpc_client_dropped.remove(&c.label);
        }
        self.metrics.grpc_clients.set(0);
    }
}

/// What GetHealth/GetVersion/GetInfo report.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    pub version: String,
    pub node_name: String,
    pub features: Features,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub broadcaster: Arc<Broadcaster>,
    pub info: Arc<ServiceInfo>,
    /// The pod inventory fed by `vigil.sensor.v1.PodInventory` (UNAVAILABLE without one).
    pub pods: Option<Arc<crate::pods::PodInventory>>,
}

/// What the listeners serve: the [`Service`] plus the policy engine (when there is one).
#[derive(Debug, Clone)]
struct Api {
    service: Service,
    policies: PolicyApi,
}

type EventStream =
    Pin<Box<dyn Stream<Item = Result<tetragon::GetEventsResponse, Status>> + Send + 'static>>;

struct StreamState {
    rx: mpsc::Receiver<Arc<Published>>,
    drops: Arc<AtomicU64>,
    fields: Vec<FieldFilterSpec>,
    pending: Option<tetragon::GetEventsResponse>,
    node_name: String,
}

fn now() -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp::from(std::time::SystemTime::now()))
}

impl StreamState {
    fn take_drops(&self) -> Option<tetragon::GetEventsResponse> {
        let n = self.drops.swap(0, Ordering::Relaxed);
        (n > 0).then(|| wire::rate_limit_info(n, &self.node_name, now()))
    }

    async fn next(&mut self) -> Option<tetragon::GetEventsResponse> {
        if let Some(p) = self.pending.take() {
            return Some(p);
        }
        loop {
            match tokio::time::timeout(Duration::from_secs(1), self.rx.recv()).await {
                Ok(Some(item)) => {
                    let msg = if self.fields.is_empty() {
                        item.proto.clone()
                    } else {
                        match wire::apply_field_filters(&item.proto, item.kind, &self.fields) {
                            Ok(m) => m,
                            Err(e) => {
                                tracing::warn!("field filter failed: {e}");
                                item.proto.clone()
                            }
                        }
                    };
                    if let Some(info) = self.take_drops() {
                        self.pending = Some(msg);
                        return Some(info);
                    }
                    return Some(msg);
                }
                Ok(None) => return self.take_drops(),
                Err(_) => {
                    if let Some(info) = self.take_drops() {
                        return Some(info);
                    }
                }
            }
        }
    }
}

use tetragon::fine_guidance_sensors_server::FineGuidanceSensors as Fgs;

#[tonic::async_trait]
impl Fgs for Api {
    type GetEventsStream = EventStream;

    async fn get_events(
        &self,
        request: Request<tetragon::GetEventsRequest>,
    ) -> Result<Response<Self::GetEventsStream>, Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unix".into());
        let req = request.into_inner();
        let filter =
            RequestFilter::compile(&req).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let fields = req
            .field_filters
            .iter()
            .map(FieldFilterSpec::from_proto)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (rx, drops) = self.service.broadcaster.subscribe(filter, &peer);
        tracing::info!(peer, "GetEvents client connected");
        let state = StreamState {
            rx,
            drops,
            fields,
            pending: None,
            node_name: self.service.info.node_name.clone(),
        };
        let stream = futures::stream::unfold(state, |mut s| async move {
            let m = s.next().await?;
            Some((Ok(m), s))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_health(
        &self,
        _request: Request<tetragon::GetHealthStatusRequest>,
    ) -> Result<Response<tetragon::GetHealthStatusResponse>, Status> {
        Ok(Response::new(tetragon::GetHealthStatusResponse {
            health_status: vec![tetragon::HealthStatus {
                event: tetragon::HealthStatusType::Status as i32,
                status: tetragon::HealthStatusResult::HealthStatusRunning as i32,
                details: "running".into(),
            }],
        }))
    }

    async fn get_version(
        &self,
        _request: Request<tetragon::GetVersionRequest>,
    ) -> Result<Response<tetragon::GetVersionResponse>, Status> {
        Ok(Response::new(tetragon::GetVersionResponse {
            version: self.service.info.version.clone(),
        }))
    }

    async fn add_tracing_policy(
        &self,
        request: Request<tetragon::AddTracingPolicyRequest>,
    ) -> Result<Response<tetragon::AddTracingPolicyResponse>, Status> {
        self.policies
            .add(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn delete_tracing_policy(
        &self,
        request: Request<tetragon::DeleteTracingPolicyRequest>,
    ) -> Result<Response<tetragon::DeleteTracingPolicyResponse>, Status> {
        self.policies
            .delete(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_tracing_policies(
        &self,
        _request: Request<tetragon::ListTracingPoliciesRequest>,
    ) -> Result<Response<tetragon::ListTracingPoliciesResponse>, Status> {
        let policies = self.policies.list().await?;
        Ok(Response::new(tetragon::ListTracingPoliciesResponse {
            policies: policies
                .iter()
                .map(crate::policy_api::policy_status)
                .collect(),
        }))
    }

    async fn configure_tracing_policy(
        &self,
        request: Request<tetragon::ConfigureTracingPolicyRequest>,
    ) -> Result<Response<tetragon::ConfigureTracingPolicyResponse>, Status> {
        self.policies
            .configure(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn enable_tracing_policy(
        &self,
        request: Request<tetragon::EnableTracingPolicyRequest>,
    ) -> Result<Response<tetragon::EnableTracingPolicyResponse>, Status> {
        let r = request.into_inner();
        let status = self
            .policies
            .set_enabled(&r.name, &r.namespace, true)
            .await?;
        Ok(Response::new(tetragon::EnableTracingPolicyResponse {
            vigil_status: Some(status),
        }))
    }

    async fn disable_tracing_policy(
        &self,
        request: Request<tetragon::DisableTracingPolicyRequest>,
    ) -> Result<Response<tetragon::DisableTracingPolicyResponse>, Status> {
        let r = request.into_inner();
        let status = self
            .policies
            .set_enabled(&r.name, &r.namespace, false)
            .await?;
        Ok(Response::new(tetragon::DisableTracingPolicyResponse {
            vigil_status: Some(status),
        }))
    }
}

/// `vigil.sensor.v1.Sensors`: the RPCs of `tetragon.FineGuidanceSensors` under a Vigil name, with
/// the same messages. Every call goes to the Tetragon-named implementation above.
#[tonic::async_trait]
impl sensor_info::sensors_server::Sensors for Api {
    type GetEventsStream = EventStream;

    async fn get_events(
        &self,
        request: Request<tetragon::GetEventsRequest>,
    ) -> Result<Response<Self::GetEventsStream>, Status> {
        Fgs::get_events(self, request).await
    }

    async fn get_health(
        &self,
        request: Request<tetragon::GetHealthStatusRequest>,
    ) -> Result<Response<tetragon::GetHealthStatusResponse>, Status> {
        Fgs::get_health(self, request).await
    }

    async fn get_version(
        &self,
        request: Request<tetragon::GetVersionRequest>,
    ) -> Result<Response<tetragon::GetVersionResponse>, Status> {
        Fgs::get_version(self, request).await
    }

    async fn add_tracing_policy(
        &self,
        request: Request<tetragon::AddTracingPolicyRequest>,
    ) -> Result<Response<tetragon::AddTracingPolicyResponse>, Status> {
        Fgs::add_tracing_policy(self, request).await
    }

    async fn delete_tracing_policy(
        &self,
        request: Request<tetragon::DeleteTracingPolicyRequest>,
    ) -> Result<Response<tetragon::DeleteTracingPolicyResponse>, Status> {
        Fgs::delete_tracing_policy(self, request).await
    }

    async fn list_tracing_policies(
        &self,
        request: Request<tetragon::ListTracingPoliciesRequest>,
    ) -> Result<Response<tetragon::ListTracingPoliciesResponse>, Status> {
        Fgs::list_tracing_policies(self, request).await
    }

    async fn configure_tracing_policy(
        &self,
        request: Request<tetragon::ConfigureTracingPolicyRequest>,
    ) -> Result<Response<tetragon::ConfigureTracingPolicyResponse>, Status> {
        Fgs::configure_tracing_policy(self, request).await
    }

    async fn enable_tracing_policy(
        &self,
        request: Request<tetragon::EnableTracingPolicyRequest>,
    ) -> Result<Response<tetragon::EnableTracingPolicyResponse>, Status> {
        Fgs::enable_tracing_policy(self, request).await
    }

    async fn disable_tracing_policy(
        &self,
        request: Request<tetragon::DisableTracingPolicyRequest>,
    ) -> Result<Response<tetragon::DisableTracingPolicyResponse>, Status> {
        Fgs::disable_tracing_policy(self, request).await
    }
}

#[tonic::async_trait]
impl sensor_info::sensor_info_server::SensorInfo for Api {
    async fn get_info(
        &self,
        _request: Request<sensor_info::GetInfoRequest>,
    ) -> Result<Response<sensor_info::GetInfoResponse>, Status> {
        let info = &self.service.info;
        let broadcaster = &self.service.broadcaster;
        let f = &info.features;
        let features = f
            .as_pairs()
            .into_iter()
            .map(|(name, available)| sensor_info::Feature {
                name: name.into(),
                available,
                detail: f.errors.get(name).cloned().unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(sensor_info::GetInfoResponse {
            version: info.version.clone(),
            node_name: info.node_name.clone(),
            kernel_release: f.kernel_release.clone(),
            features,
            subscribers: broadcaster.subscribers() as u32,
            events_dropped_total: broadcaster.dropped_total(),
        }))
    }
}

/// Running listeners; [`Servers::shutdown`] stops them and removes the socket file.
#[derive(Debug)]
pub struct Servers {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    socket: Option<PathBuf>,
    tcp_address: Option<std::net::SocketAddr>,
}

/// The three services on one listener, over TLS when `tls` is given.
fn router(
    api: Api,
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> Result<tonic::transport::server::Router, SensorError> {
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls).map_err(|e| SensorError::Config {
            option: "grpc-tls-cert".into(),
            message: e.to_string(),
        })?;
    }
    Ok(server
        .add_service(
            tetragon::fine_guidance_sensors_server::FineGuidanceSensorsServer::new(api.clone()),
        )
        .add_service(sensor_info::sensors_server::SensorsServer::new(api.clone()))
        .add_service(crate::pod_api::server(api.service.pods.clone()))
        .add_service(sensor_info::sensor_info_server::SensorInfoServer::new(api)))
}

/// Binds the unix socket (directory created, stale socket replaced, mode 0660) and/or the TCP
/// address (over TLS when `tls` is given; the socket is always plain text), and serves on both
/// until [`Servers::shutdown`]. The policy RPCs go to `policies`; without it they answer
/// `UNAVAILABLE`.
pub async fn start(
    service: Service,
    policies: Option<Arc<dyn PolicyControl>>,
    socket: Option<&Path>,
    address: Option<std::net::SocketAddr>,
    tls: Option<&GrpcTls>,
) -> Result<Servers, SensorError> {
    // Read and check the TLS files before binding anything.
    let tls_config = match (address, tls) {
        (Some(_), Some(t)) => Some(t.server_config()?),
        _ => None,
    };
    let service = Api {
        service,
        policies: PolicyApi::new(policies),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let mut tcp_address = None;
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    if let Some(path) = socket {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                SensorError::io(
                    format!("cannot create socket directory {}", dir.display()),
                    e,
                )
            })?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(SensorError::io(
                        format!("{} is in use by a running server", path.display()),
                        std::io::Error::from(std::io::ErrorKind::AddrInUse),
                    ));
                }
                std::fs::remove_file(path).map_err(|e| {
                    SensorError::io(format!("cannot remove stale socket {}", path.display()), e)
                })?;
            }
            Ok(_) => {
                return Err(SensorError::io(
                    format!("{} exists and is not a socket", path.display()),
                    std::io::Error::from(std::io::ErrorKind::AlreadyExists),
                ));
            }
            Err(_) => {}
        }
        let listener = tokio::net::UnixListener::bind(path)
            .map_err(|e| SensorError::io(format!("cannot listen on {}", path.display()), e))?;
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o660))
            .map_err(|e| SensorError::io(format!("cannot chmod {}", path.display()), e))?;
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        let r = router(service.clone(), None)?;
        let rx = stopped.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = r.serve_with_incoming_shutdown(incoming, wait(rx)).await {
                tracing::error!("gRPC server on the unix socket failed: {e}");
            }
        }));
        tracing::info!(socket = %path.display(), "gRPC listening");
    }
    if let Some(addr) = address {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| SensorError::io(format!("cannot listen on {addr}"), e))?;
        // The bound address (the real port when `addr` asked for port 0).
        let addr = listener
            .local_addr()
            .map_err(|e| SensorError::io(format!("cannot listen on {addr}"), e))?;
        tcp_address = Some(addr);
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let mode = match tls {
            None => "plain text",
            Some(GrpcTls {
                client_ca: None, ..
            }) => "TLS",
            Some(_) => "mTLS: client certificates required",
        };
        let r = router(service, tls_config)?;
        let rx = stopped.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = r.serve_with_incoming_shutdown(incoming, wait(rx)).await {
                tracing::error!("gRPC server on {addr} failed: {e}");
            }
        }));
        tracing::info!(%addr, mode, "gRPC listening");
    }
    Ok(Servers {
        stop,
        tasks,
        socket: socket.map(Path::to_path_buf),
        tcp_address,
    })
}

impl Servers {
    /// The TCP listener's bound address, if there is one.
    pub fn tcp_address(&self) -> Option<std::net::SocketAddr> {
        self.tcp_address
    }

    /// Stops accepting, lets open streams finish (the broadcaster must be closed first so they
    /// do), waits up to `grace`, and removes the socket file.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(grace, t).await.is_err() {
                abort.abort();
            }
        }
        if let Some(p) = &self.socket {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_api::events::{Process, ProcessExec};

    fn ev(pid: u32) -> GetEventsResponse {
        GetEventsResponse::new(
            ProcessExec {
                process: Some(Process {
                    pid: Some(pid),
                    binary: "/bin/x".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            "n",
            "2026-01-01T00:00:00Z",
        )
    }

    #[tokio::test]
    async fn full_client_queue_drops_counts_and_reports() {
        let metrics = Arc::new(Metrics::new());
        let b = Broadcaster::new(2, metrics.clone());
        let (rx, drops) = b.subscribe(RequestFilter::default(), "t");
        for pid in 1..=5 {
            let e = ev(pid);
            b.publish(&e, &e.to_json().unwrap());
        }
        assert_eq!(b.dropped_total(), 3);
        let metric = metrics
            .grpc_client_dropped
            .get_or_create(&ClientLabel {
                client: "1:t".into(),
            })
            .get();
        assert_eq!(metric, 3);
        let mut s = StreamState {
            rx,
            drops,
            fields: vec![],
            pending: None,
            node_name: "n".into(),
        };
        let first = s.next().await.unwrap();
        assert_eq!(wire::dropped_events(&first), Some(3));
        let e1 = wire::from_proto(&s.next().await.unwrap()).unwrap();
        assert_eq!(e1.process().unwrap().pid, Some(1));
        let e2 = wire::from_proto(&s.next().await.unwrap()).unwrap();
        assert_eq!(e2.process().unwrap().pid, Some(2));
        b.close();
        assert!(s.next().await.is_none());
    }

    #[tokio::test]
    async fn a_closed_client_is_forgotten() {
        let metrics = Arc::new(Metrics::new());
        let b = Broadcaster::new(1, metrics.clone());
        let (rx, _c) = b.subscribe(RequestFilter::default(), "t");
        for pid in 1..=2 {
            let e = ev(pid);
            b.publish(&e, &e.to_json().unwrap());
        }
        let text = crate::metrics::render(&metrics.registry());
        assert!(
            text.contains("vigil_grpc_client_events_dropped_total{client=\"1:t\"} 1"),
            "{text}"
        );
        drop(rx);
        let e = ev(3);
        b.publish(&e, &e.to_json().unwrap());
        assert_eq!(b.subscribers(), 0);
        let text = crate::metrics::render(&metrics.registry());
        assert!(
            !text.contains("client=\"1:t\""),
            "the stream's series is gone: {text}"
        );
        assert!(
            text.contains("vigil_grpc_events_dropped_total 1"),
            "the total stays: {text}"
        );
    }
}
