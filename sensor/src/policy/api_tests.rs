use std::collections::BTreeMap;
use std::sync::Mutex;

use tonic::Code;
use tonic::transport::{Channel, Endpoint, Uri};
use vigil_api::wire::sensor_info::sensors_client::SensorsClient;
use vigil_api::wire::tetragon::fine_guidance_sensors_client::FineGuidanceSensorsClient;

use super::*;
use crate::grpc::server::{self, Broadcaster, Service, ServiceInfo};
use crate::output::metrics::Metrics;
use crate::policy::control::{HookStatus, PolicyOrigin, PolicyStats};

/// An in-memory engine: validates with `vigil_api::policy` like the real one, keeps policies
/// in a map, reports one loaded tracepoint per hook.
#[derive(Default)]
struct FakeEngine {
    policies: Mutex<BTreeMap<PolicyKey, PolicyInfo>>,
    next_id: Mutex<u64>,
}

impl FakeEngine {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<PolicyKey, PolicyInfo>> {
        self.policies.lock().unwrap()
    }

    fn update(
        &self,
        key: &PolicyKey,
        f: impl FnOnce(&mut PolicyInfo),
    ) -> Result<PolicyInfo, SensorError> {
        let mut map = self.lock();
        let p = map
            .get_mut(key)
            .ok_or_else(|| SensorError::PolicyNotFound(key.to_string()))?;
        f(p);
        Ok(p.clone())
    }
}

impl PolicyControl for FakeEngine {
    fn add(&self, yaml: &str, origin: PolicyOrigin) -> Result<PolicyInfo, SensorError> {
        let mut irs = vigil_api::policy::compile_yaml(yaml)
            .map_err(|e| SensorError::PolicyInvalid(e.to_string()))?;
        if irs.len() != 1 {
            return Err(SensorError::PolicyInvalid("one policy per call".into()));
        }
        let ir = irs.remove(0);
        let ident = ir.identity.unwrap_or_default();
        let key = PolicyKey::new(ident.name, ident.namespace);
        let mut map = self.lock();
        if map.contains_key(&key) {
            return Err(SensorError::PolicyExists(key.to_string()));
        }
        let mut id = self.next_id.lock().unwrap();
        *id += 1;
        let info = PolicyInfo {
            id: *id,
            name: key.name.clone(),
            namespace: key.namespace.clone(),
            origin,
            state: PolicyState::Enabled,
            mode: PolicyMode::Enforce,
            error: String::new(),
            hooks: ir
                .hooks
                .iter()
                .map(|h| HookStatus {
                    source: h.source.clone(),
                    target: format!("{}/{}", h.subsystem, h.target),
                    mechanism: "tracepoint".into(),
                    error: None,
                })
                .collect(),
            stats: PolicyStats {
                matched: 7,
                posted: 5,
                monitored: 2,
                ..Default::default()
            },
            kernel_memory_bytes: 4096,
            demotion: None,
        };
        map.insert(key, info.clone());
        Ok(info)
    }

    fn delete(&self, key: &PolicyKey) -> Result<(), SensorError> {
        self.lock()
            .remove(key)
            .map(|_| ())
            .ok_or_else(|| SensorError::PolicyNotFound(key.to_string()))
    }

    fn list(&self) -> Vec<PolicyInfo> {
        self.lock().values().cloned().collect()
    }

    fn set_enabled(&self, key: &PolicyKey, enabled: bool) -> Result<PolicyInfo, SensorError> {
        self.update(key, |p| {
            p.state = if enabled {
                PolicyState::Enabled
            } else {
                PolicyState::Disabled
            }
        })
    }

    fn set_mode(&self, key: &PolicyKey, mode: PolicyMode) -> Result<PolicyInfo, SensorError> {
        self.update(key, |p| p.mode = mode)
    }
}

const POLICY: &str = "\
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: sys-enter
spec:
  tracepoints:
  - subsystem: raw_syscalls
    event: sys_enter
    args:
    - index: 4
      type: int64
";

/// A real server on a temporary unix socket and a real client connected to it.
struct Harness {
    client: FineGuidanceSensorsClient<Channel>,
    /// The same connection, through `vigil.sensor.v1.Sensors`.
    vigil: SensorsClient<Channel>,
    servers: Option<server::Servers>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start(engine: Option<Arc<dyn PolicyControl>>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("vigil.sock");
        let service = Service {
            broadcaster: Arc::new(Broadcaster::new(16, Arc::new(Metrics::new()))),
            info: Arc::new(ServiceInfo {
                version: "test".into(),
                node_name: "n".into(),
                features: Default::default(),
                self_protection: crate::kernel::protect::State::Off,
                programs: Default::default(),
            }),
            pods: None,
        };
        let servers = server::start(service, engine, Some(&socket), None, None)
            .await
            .unwrap();
        let channel = Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move {
                    let s = tokio::net::UnixStream::connect(socket).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                }
            }))
            .await
            .unwrap();
        Harness {
            client: FineGuidanceSensorsClient::new(channel.clone()),
            vigil: SensorsClient::new(channel),
            servers: Some(servers),
            _dir: dir,
        }
    }

    async fn list(&mut self) -> Vec<tetragon::TracingPolicyStatus> {
        self.client
            .list_tracing_policies(tetragon::ListTracingPoliciesRequest {})
            .await
            .unwrap()
            .into_inner()
            .policies
    }

    async fn add(&mut self, yaml: &str) -> Result<tetragon::TracingPolicyStatus, Status> {
        self.client
            .add_tracing_policy(tetragon::AddTracingPolicyRequest { yaml: yaml.into() })
            .await
            .map(|r| r.into_inner().vigil_status.unwrap())
    }

    async fn stop(mut self) {
        if let Some(s) = self.servers.take() {
            s.shutdown(std::time::Duration::from_secs(5)).await;
        }
    }
}

fn named(name: &str) -> (String, String) {
    (name.to_string(), String::new())
}

#[tokio::test]
async fn vigil_named_service_answers_like_the_tetragon_one() {
    let mut h = Harness::start(Some(Arc::new(FakeEngine::default()))).await;
    let health = h
        .client
        .get_health(tetragon::GetHealthStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    let vigil_health = h
        .vigil
        .get_health(tetragon::GetHealthStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(vigil_health, health);
    assert_eq!(
        vigil_health.health_status[0].status,
        tetragon::HealthStatusResult::HealthStatusRunning as i32
    );
    let version = h
        .vigil
        .get_version(tetragon::GetVersionRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version.version, "test");

    // A policy added through one name is listed identically through both.
    let added = h
        .vigil
        .add_tracing_policy(tetragon::AddTracingPolicyRequest {
            yaml: POLICY.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.vigil_status.unwrap().name, "sys-enter");
    let tetragon_list = h.list().await;
    let vigil_list = h
        .vigil
        .list_tracing_policies(tetragon::ListTracingPoliciesRequest {})
        .await
        .unwrap()
        .into_inner()
        .policies;
    assert_eq!(tetragon_list.len(), 1);
    assert_eq!(vigil_list, tetragon_list);

    // Errors are the same too.
    let e = h
        .vigil
        .add_tracing_policy(tetragon::AddTracingPolicyRequest {
            yaml: POLICY.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    h.stop().await;
}

#[tokio::test]
async fn add_list_disable_enable_mode_delete_round_trip() {
    let mut h = Harness::start(Some(Arc::new(FakeEngine::default()))).await;
    assert!(h.list().await.is_empty());

    let added = h.add(POLICY).await.unwrap();
    assert_eq!(added.name, "sys-enter");
    assert_eq!(
        added.state,
        tetragon::TracingPolicyState::TpStateEnabled as i32
    );

    let listed = h.list().await;
    assert_eq!(listed.len(), 1);
    let p = &listed[0];
    assert_eq!((p.name.as_str(), p.namespace.as_str()), ("sys-enter", ""));
    assert!(p.enabled);
    assert_eq!(p.mode, tetragon::TracingPolicyMode::TpModeEnforce as i32);
    assert_eq!(p.sensors, vec!["tracepoint".to_string()]);
    assert_eq!(p.kernel_memory_bytes, 4096);
    assert_eq!(p.stats.unwrap().action_counters.unwrap().post, 5);
    let v = p.vigil.as_ref().unwrap();
    assert_eq!(v.origin, "api");
    assert_eq!(v.hooks.len(), 1);
    assert_eq!(v.hooks[0].source, "spec.tracepoints[0]");
    assert_eq!(v.hooks[0].target, "raw_syscalls/sys_enter");
    assert!(v.hooks[0].loaded && v.hooks[0].error.is_empty());
    let c = v.counters.unwrap();
    assert_eq!((c.matched, c.posted, c.monitored), (7, 5, 2));

    let (name, namespace) = named("sys-enter");
    let r = h
        .client
        .disable_tracing_policy(tetragon::DisableTracingPolicyRequest {
            name: name.clone(),
            namespace: namespace.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.vigil_status.unwrap().state,
        tetragon::TracingPolicyState::TpStateDisabled as i32
    );
    let p = &h.list().await[0];
    assert_eq!(
        p.state,
        tetragon::TracingPolicyState::TpStateDisabled as i32
    );
    assert!(!p.enabled);

    h.client
        .enable_tracing_policy(tetragon::EnableTracingPolicyRequest {
            name: name.clone(),
            namespace: namespace.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        h.list().await[0].state,
        tetragon::TracingPolicyState::TpStateEnabled as i32
    );

    // ConfigureTracingPolicy: mode and enable together.
    let r = h
        .client
        .configure_tracing_policy(tetragon::ConfigureTracingPolicyRequest {
            name: name.clone(),
            namespace: namespace.clone(),
            enable: Some(false),
            mode: Some(tetragon::TracingPolicyMode::TpModeMonitor as i32),
        })
        .await
        .unwrap()
        .into_inner()
        .vigil_status
        .unwrap();
    assert_eq!(r.mode, tetragon::TracingPolicyMode::TpModeMonitor as i32);
    assert_eq!(
        r.state,
        tetragon::TracingPolicyState::TpStateDisabled as i32
    );
    let p = &h.list().await[0];
    assert_eq!(p.mode, tetragon::TracingPolicyMode::TpModeMonitor as i32);
    assert_eq!(
        p.state,
        tetragon::TracingPolicyState::TpStateDisabled as i32
    );

    h.client
        .configure_tracing_policy(tetragon::ConfigureTracingPolicyRequest {
            name: name.clone(),
            namespace: namespace.clone(),
            enable: Some(true),
            mode: Some(tetragon::TracingPolicyMode::TpModeEnforce as i32),
        })
        .await
        .unwrap();
    let p = &h.list().await[0];
    assert_eq!(p.mode, tetragon::TracingPolicyMode::TpModeEnforce as i32);
    assert_eq!(p.state, tetragon::TracingPolicyState::TpStateEnabled as i32);

    h.client
        .delete_tracing_policy(tetragon::DeleteTracingPolicyRequest { name, namespace })
        .await
        .unwrap();
    assert!(h.list().await.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn invalid_yaml_is_invalid_argument_with_the_validators_text_and_changes_nothing() {
    let mut h = Harness::start(Some(Arc::new(FakeEngine::default()))).await;
    h.add(POLICY).await.unwrap();
    let bad = POLICY
        .replace("name: sys-enter", "name: other")
        .replace("type: int64", "type: nosuchtype");
    let expected = vigil_api::policy::compile_yaml(&bad)
        .unwrap_err()
        .to_string();
    assert!(expected.contains("nosuchtype"), "{expected}");
    let err = h.add(&bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), expected);
    let names: Vec<String> = h.list().await.into_iter().map(|p| p.name).collect();
    assert_eq!(names, vec!["sys-enter".to_string()]);
    h.stop().await;
}

#[tokio::test]
async fn duplicate_is_already_exists_and_unknown_is_not_found() {
    let mut h = Harness::start(Some(Arc::new(FakeEngine::default()))).await;
    h.add(POLICY).await.unwrap();
    let err = h.add(POLICY).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains("sys-enter"), "{err:?}");
    assert_eq!(h.list().await.len(), 1);

    let err = h
        .client
        .delete_tracing_policy(tetragon::DeleteTracingPolicyRequest {
            name: "nope".into(),
            namespace: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = h
        .client
        .enable_tracing_policy(tetragon::EnableTracingPolicyRequest {
            name: "nope".into(),
            namespace: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // Same name, other namespace: a different policy.
    let err = h
        .client
        .configure_tracing_policy(tetragon::ConfigureTracingPolicyRequest {
            name: "sys-enter".into(),
            namespace: "ns".into(),
            enable: None,
            mode: Some(tetragon::TracingPolicyMode::TpModeMonitor as i32),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // Unsupported mode: refused before anything changes.
    let err = h
        .client
        .configure_tracing_policy(tetragon::ConfigureTracingPolicyRequest {
            name: "sys-enter".into(),
            namespace: String::new(),
            enable: Some(false),
            mode: Some(tetragon::TracingPolicyMode::TpModeMonitorOnly as i32),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(
        h.list().await[0].state,
        tetragon::TracingPolicyState::TpStateEnabled as i32
    );
    h.stop().await;
}

#[tokio::test]
async fn without_an_engine_every_policy_call_is_unavailable() {
    let mut h = Harness::start(None).await;
    let err = h.add(POLICY).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(err.message(), NO_ENGINE);
    let err = h
        .client
        .list_tracing_policies(tetragon::ListTracingPoliciesRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let err = h
        .client
        .delete_tracing_policy(tetragon::DeleteTracingPolicyRequest {
            name: "x".into(),
            namespace: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    // The rest of the service still works.
    let v = h
        .client
        .get_version(tetragon::GetVersionRequest {})
        .await
        .unwrap();
    assert_eq!(v.into_inner().version, "test");
    h.stop().await;
}

#[test]
fn engine_errors_map_to_codes() {
    let cases = [
        (
            SensorError::PolicyInvalid("spec: bad".into()),
            Code::InvalidArgument,
        ),
        (SensorError::PolicyExists("p".into()), Code::AlreadyExists),
        (SensorError::PolicyNotFound("p".into()), Code::NotFound),
        (
            SensorError::PolicyUnloadable {
                policy: "p".into(),
                message: "no mechanism".into(),
            },
            Code::FailedPrecondition,
        ),
        (SensorError::bpf("map", "full"), Code::Internal),
    ];
    for (e, code) in cases {
        assert_eq!(status_of_error(e).code(), code);
    }
    assert_eq!(
        status_of_error(SensorError::PolicyInvalid("spec: bad".into())).message(),
        "spec: bad"
    );
}

#[test]
fn partial_and_error_states_and_hook_errors() {
    let info = PolicyInfo {
        id: 1,
        name: "p".into(),
        namespace: "ns".into(),
        origin: PolicyOrigin::File("/etc/vigil/p.yaml".into()),
        state: PolicyState::Partial,
        mode: PolicyMode::Monitor,
        error: "1 of 2 hooks not loaded".into(),
        hooks: vec![
            HookStatus {
                source: "spec.kprobes[0]".into(),
                target: "security_file_open".into(),
                mechanism: String::new(),
                error: Some("no kprobes".into()),
            },
            HookStatus {
                source: "spec.tracepoints[0]".into(),
                target: "raw_syscalls/sys_enter".into(),
                mechanism: "tracepoint".into(),
                error: None,
            },
        ],
        stats: PolicyStats {
            sigkill: 2,
            signal: 3,
            ..Default::default()
        },
        kernel_memory_bytes: 0,
        demotion: None,
    };
    let s = policy_status(&info);
    assert_eq!(
        s.state,
        tetragon::TracingPolicyState::TpStatePartiallyEnabled as i32
    );
    assert!(s.enabled);
    assert_eq!(s.sensors, vec!["tracepoint".to_string()]);
    assert_eq!(s.stats.unwrap().action_counters.unwrap().signal, 5);
    let v = s.vigil.unwrap();
    assert_eq!(v.origin, "file:/etc/vigil/p.yaml");
    assert!(!v.hooks[0].loaded);
    assert_eq!(v.hooks[0].error, "no kprobes");
    let err = PolicyInfo {
        state: PolicyState::Error,
        ..info
    };
    let s = policy_status(&err);
    assert_eq!(
        s.state,
        tetragon::TracingPolicyState::TpStateLoadError as i32
    );
    assert!(!s.enabled);
}
