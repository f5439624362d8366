//! gRPC server (`tetragon.FineGuidanceSensors`, the same RPCs as `vigil.sensor.v1.Sensors`, and
//! `vigil.sensor.v1.SensorInfo`). GetEvents streams come from the [`Broadcaster`] (see
//! [`crate::grpc::broadcast`]: per-client queues, drops reported in-band as loss markers). The policy
//! RPCs are in [`crate::policy::api`]; TLS for the TCP listener is in [`crate::grpc::tls`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};
use vigil_api::wire::{FieldFilterSpec, sensor_info, tetragon};

use crate::error::SensorError;
pub use crate::grpc::broadcast::{Broadcaster, EventStream, Published};
use crate::grpc::event_filter::RequestFilter;
use crate::grpc::tls::GrpcTls;
use crate::kernel::features::Features;
use crate::policy::api::PolicyApi;
use crate::policy::control::PolicyControl;

/// What GetHealth/GetVersion/GetInfo report.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    pub version: String,
    pub node_name: String,
    pub features: Features,
    /// `--self-protection`: off, active, or unavailable (with the reason).
    pub self_protection: crate::kernel::protect::State,
    /// The BPF programs loaded so far (the process programs and the hook engine's).
    pub programs: ProgramSource,
}

type ProgramFn = dyn Fn() -> Vec<crate::hooks::programs::ProgramStats> + Send + Sync;

/// Where [`ServiceInfo`] reads the loaded programs from (none: no BPF, as in tests).
#[derive(Clone, Default)]
pub struct ProgramSource(Option<Arc<ProgramFn>>);

impl ProgramSource {
    pub fn new(
        f: impl Fn() -> Vec<crate::hooks::programs::ProgramStats> + Send + Sync + 'static,
    ) -> Self {
        ProgramSource(Some(Arc::new(f)))
    }

    pub fn get(&self) -> Vec<crate::hooks::programs::ProgramStats> {
        self.0.as_ref().map(|f| f()).unwrap_or_default()
    }
}

impl std::fmt::Debug for ProgramSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgramSource")
    }
}

#[derive(Debug, Clone)]
pub struct Service {
    pub broadcaster: Arc<Broadcaster>,
    pub info: Arc<ServiceInfo>,
    /// The pod inventory fed by `vigil.sensor.v1.PodInventory` (UNAVAILABLE without one).
    pub pods: Option<Arc<crate::k8s::pods::PodInventory>>,
}

/// What the listeners serve: the [`Service`] plus the policy engine (when there is one).
#[derive(Debug, Clone)]
struct Api {
    service: Service,
    policies: PolicyApi,
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
        tracing::info!(peer, "GetEvents client connected");
        let stream =
            self.service
                .broadcaster
                .stream(filter, fields, &peer, &self.service.info.node_name);
        Ok(Response::new(stream))
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
                .map(crate::policy::api::policy_status)
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
            self_protection: info.self_protection.label().into(),
            self_protection_detail: info.self_protection.detail().into(),
            events_dropped_total: broadcaster.dropped_total(),
            programs: info
                .programs
                .get()
                .into_iter()
                .map(|p| sensor_info::BpfProgram {
                    name: p.name,
                    loads: p.loads,
                    last_load_seconds: p.last_load.as_secs_f64(),
                    verified_insns: p.verified_insns,
                })
                .collect(),
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
        .add_service(crate::k8s::pod_api::server(api.service.pods.clone()))
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
