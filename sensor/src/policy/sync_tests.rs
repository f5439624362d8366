use super::*;
use crate::policy::control::{HookStatus, PolicyMode, PolicyStats};
use vigil_api::policy::ir::PolicyIdentity;

/// A policy engine in memory: a policy whose IR says `source_api_version: fail` is refused,
/// `partial` loads partially, `error` loads nothing.
#[derive(Default)]
struct Fake {
    policies: Mutex<BTreeMap<PolicyKey, PolicyInfo>>,
    /// Every call, in order: "add NAME TAG", "delete NAME".
    calls: Mutex<Vec<String>>,
}

fn info(key: &PolicyKey, origin: PolicyOrigin, state: PolicyState, error: &str) -> PolicyInfo {
    PolicyInfo {
        id: 1,
        name: key.name.clone(),
        namespace: key.namespace.clone(),
        origin,
        state,
        mode: PolicyMode::Enforce,
        error: error.into(),
        hooks: vec![HookStatus {
            source: "spec.kprobes[0]".into(),
            target: "tcp_connect".into(),
            mechanism: String::new(),
            error: (!error.is_empty()).then(|| error.to_string()),
        }],
        stats: PolicyStats::default(),
        kernel_memory_bytes: 0,
        demotion: None,
    }
}

impl PolicyControl for Fake {
    fn add(&self, _yaml: &str, _origin: PolicyOrigin) -> Result<PolicyInfo, SensorError> {
        unreachable!()
    }
    fn delete(&self, key: &PolicyKey) -> Result<(), SensorError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("delete {}", key.name));
        self.policies
            .lock()
            .unwrap()
            .remove(key)
            .map(|_| ())
            .ok_or_else(|| SensorError::PolicyNotFound(key.to_string()))
    }
    fn list(&self) -> Vec<PolicyInfo> {
        self.policies.lock().unwrap().values().cloned().collect()
    }
    fn set_enabled(&self, _: &PolicyKey, _: bool) -> Result<PolicyInfo, SensorError> {
        unreachable!()
    }
    fn set_mode(&self, _: &PolicyKey, _: PolicyMode) -> Result<PolicyInfo, SensorError> {
        unreachable!()
    }
}

impl SyncTarget for Fake {
    fn set_node_labels(&self, labels: BTreeMap<String, String>) {
        self.calls
            .lock()
            .unwrap()
            .push(format!("labels {labels:?}"));
    }
    fn add_ir(&self, ir: PolicyIr, origin: PolicyOrigin) -> Result<PolicyInfo, SensorError> {
        let key = key_of(&ir);
        let tag = ir.identity.as_ref().unwrap().source_api_version.clone();
        self.calls
            .lock()
            .unwrap()
            .push(format!("add {} {tag}", key.name));
        let mut p = self.policies.lock().unwrap();
        if p.contains_key(&key) {
            return Err(SensorError::PolicyExists(key.to_string()));
        }
        let i = match tag.as_str() {
            "fail" => {
                return Err(SensorError::PolicyUnloadable {
                    policy: key.to_string(),
                    message: "Override cannot be honoured here".into(),
                });
            }
            "partial" => info(
                &key,
                origin,
                PolicyState::Partial,
                "kprobes are not available",
            ),
            "error" => info(&key, origin, PolicyState::Error, "nothing attached"),
            _ => info(&key, origin, PolicyState::Enabled, ""),
        };
        p.insert(key, i.clone());
        Ok(i)
    }
}

fn vp(name: &str, tag: &str) -> pb::VersionedPolicy {
    pb::VersionedPolicy {
        version: format!("{name}-{tag}"),
        generation: 1,
        ir: Some(PolicyIr {
            ir_version: 1,
            identity: Some(PolicyIdentity {
                name: name.into(),
                source_api_version: tag.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn set(ps: &[pb::VersionedPolicy]) -> pb::PolicySet {
    pb::PolicySet {
        sequence: 1,
        policies: ps.to_vec(),
        node_labels: Default::default(),
        keep: Vec::new(),
    }
}

fn states(reports: &[pb::Report]) -> Vec<(String, pb::PolicyState, String)> {
    reports
        .iter()
        .map(|r| (r.name.clone(), r.state(), r.reason.clone()))
        .collect()
}

fn setup() -> (Arc<Fake>, Applier) {
    let fake = Arc::new(Fake::default());
    (fake.clone(), Applier::new(fake))
}

fn take_calls(f: &Fake) -> Vec<String> {
    std::mem::take(&mut *f.calls.lock().unwrap())
}

#[test]
fn first_set_loads_everything_and_reports_each() {
    let (fake, mut a) = setup();
    let r = a.apply(&set(&[vp("a", "v1"), vp("b", "partial"), vp("c", "fail")]));
    assert_eq!(
        states(&r),
        [
            ("a".into(), pb::PolicyState::Ready, String::new()),
            (
                "b".into(),
                pb::PolicyState::Partial,
                "kprobes are not available".into()
            ),
            (
                "c".into(),
                pb::PolicyState::Failed,
                "policy c: Override cannot be honoured here".into()
            ),
        ]
    );
    assert_eq!(r[1].hooks.len(), 1);
    assert!(!r[1].hooks[0].loaded);
    assert_eq!(r[0].version, "a-v1");
    assert_eq!(fake.list().len(), 2);
    assert!(
        fake.list()
            .iter()
            .all(|p| p.origin == PolicyOrigin::Operator)
    );
    let running: Vec<String> = a.running().iter().map(|p| p.version.clone()).collect();
    assert_eq!(running, ["a-v1", "b-partial"]);
}

#[test]
fn only_changed_policies_are_reloaded_and_missing_ones_removed() {
    let (fake, mut a) = setup();
    a.apply(&set(&[vp("a", "v1"), vp("b", "v1"), vp("c", "v1")]));
    take_calls(&fake);
    let r = a.apply(&set(&[vp("a", "v1"), vp("b", "v2")]));
    assert_eq!(take_calls(&fake), ["delete c", "delete b", "add b v2"]);
    assert_eq!(r.len(), 2);
    assert!(r.iter().all(|r| r.state() == pb::PolicyState::Ready));
    assert_eq!(r[1].version, "b-v2");
    // The same set again: nothing to do, same reports.
    let again = a.apply(&set(&[vp("a", "v1"), vp("b", "v2")]));
    assert!(take_calls(&fake).is_empty());
    assert_eq!(states(&again), states(&r));
    // Empty set: everything of the operator goes.
    a.apply(&set(&[]));
    assert!(fake.list().is_empty());
    assert!(a.running().is_empty());
}

#[test]
fn policies_the_set_says_to_keep_stay_at_the_version_they_run() {
    let (fake, mut a) = setup();
    a.apply(&set(&[vp("a", "v1"), vp("b", "v1")]));
    take_calls(&fake);
    // `b` is not sent but kept (a staged rollout has not reached this node); `c` is kept but
    // never ran here: nothing to keep, nothing loaded.
    let mut s = set(&[vp("a", "v1")]);
    s.keep = ["b", "c"]
        .map(|n| pb::PolicyRef {
            name: n.into(),
            namespace: String::new(),
        })
        .to_vec();
    let r = a.apply(&s);
    assert!(take_calls(&fake).is_empty());
    assert_eq!(r.len(), 1, "reports only about what the set carries");
    let running: Vec<String> = a.running().iter().map(|p| p.version.clone()).collect();
    assert_eq!(running, ["a-v1", "b-v1"]);
    // Once no longer kept, it goes.
    a.apply(&set(&[vp("a", "v1")]));
    assert_eq!(take_calls(&fake), ["delete b"]);
}

#[test]
fn a_version_that_fails_keeps_the_previous_one_and_is_not_retried() {
    let (fake, mut a) = setup();
    a.apply(&set(&[vp("a", "v1"), vp("b", "v1")]));
    take_calls(&fake);
    let r = a.apply(&set(&[vp("a", "fail"), vp("b", "v1")]));
    assert_eq!(r[0].state(), pb::PolicyState::Failed);
    assert_eq!(r[1].state(), pb::PolicyState::Ready);
    assert_eq!(take_calls(&fake), ["delete a", "add a fail", "add a v1"]);
    assert_eq!(a.running()[0].version, "a-v1");
    // Same failing version again: reported, not retried.
    let r = a.apply(&set(&[vp("a", "fail"), vp("b", "v1")]));
    assert_eq!(r[0].state(), pb::PolicyState::Failed);
    assert!(take_calls(&fake).is_empty());
    // A version whose hooks all fail counts as a failure too.
    let r = a.apply(&set(&[vp("a", "error"), vp("b", "v1")]));
    assert_eq!(r[0].state(), pb::PolicyState::Failed);
    assert_eq!(r[0].reason, "nothing attached");
    assert_eq!(
        take_calls(&fake),
        ["delete a", "add a error", "delete a", "add a v1"]
    );
    assert_eq!(fake.list().len(), 2);
}

#[test]
fn local_policies_are_not_touched() {
    let (fake, mut a) = setup();
    let key = PolicyKey::new("mine", "");
    fake.policies.lock().unwrap().insert(
        key.clone(),
        info(&key, PolicyOrigin::Api, PolicyState::Enabled, ""),
    );
    let r = a.apply(&set(&[vp("mine", "v1"), vp("x", "v1")]));
    assert_eq!(r[0].state(), pb::PolicyState::Failed);
    assert!(
        r[0].reason.contains("already loaded on this node from api"),
        "{r:?}"
    );
    assert_eq!(r[1].state(), pb::PolicyState::Ready);
    a.apply(&set(&[]));
    assert_eq!(fake.list().len(), 1);
    assert_eq!(fake.list()[0].origin, PolicyOrigin::Api);
}

#[test]
fn a_policy_deleted_locally_is_loaded_again() {
    let (fake, mut a) = setup();
    a.apply(&set(&[vp("a", "v1")]));
    fake.delete(&PolicyKey::new("a", "")).unwrap();
    take_calls(&fake);
    let r = a.apply(&set(&[vp("a", "v1")]));
    assert_eq!(r[0].state(), pb::PolicyState::Ready);
    assert_eq!(take_calls(&fake), ["add a v1"]);
}

#[test]
fn node_labels_of_a_set_are_set_before_its_policies_load() {
    let (fake, mut applier) = setup();
    let mut with_labels = set(&[vp("a", "v1")]);
    with_labels.node_labels = [("zone".to_string(), "b".to_string())].into();
    applier.apply(&with_labels);
    assert_eq!(
        take_calls(&fake),
        [r#"labels {"zone": "b"}"#, "add a v1"],
        "labels first, so that a hostSelector is matched against them at load"
    );
    // A set without labels (an older operator) leaves the sensor's own labels alone.
    applier.apply(&set(&[vp("a", "v1")]));
    assert!(take_calls(&fake).iter().all(|c| !c.starts_with("labels")));
}

#[test]
fn unnamed_pods_of_a_pod_set_are_left_out_and_counted() {
    use vigil_api::wire::sensor_info::PodInfo;
    let metrics = Metrics::default();
    let named = |uid: &str, ns: &str, name: &str| PodInfo {
        uid: uid.into(),
        namespace: ns.into(),
        name: name.into(),
        ..Default::default()
    };
    let set = pb::PodSet {
        sequence: 1,
        pods: vec![
            named("u1", "default", "a"),
            named("", "default", "b"),
            named("u3", "", "c"),
            named("u4", "prod", "d"),
        ],
    };
    let pods = valid_pods(set, &metrics);
    let uids: Vec<&str> = pods.iter().map(|p| p.uid.as_str()).collect();
    assert_eq!(uids, ["u1", "u4"]);
    assert_eq!(metrics.operator_pods_rejected.get(), 2);
}

#[test]
fn tls_failures_get_their_likely_cause() {
    let tls = Some(ClientTlsConfig::new());
    let hint = |text: &str, after: bool| tls_hint(&tls, text, after);
    assert!(hint("invalid peer certificate: UnknownIssuer", false).contains("--operator-tls-ca"));
    assert!(hint("certificate not valid for name \"x\"", false).contains("server-name"));
    assert!(
        hint("received fatal alert: CertificateRequired", true).contains("--operator-tls-cert")
    );
    assert!(hint("received fatal alert: UnknownCA", true).contains("--grpc-tls-client-ca"));
    assert!(
        hint("received corrupt message of type InvalidContentType", false).contains("serve TLS")
    );
    assert!(
        hint("operation was canceled: connection closed", true).contains("after the TLS handshake")
    );
    assert!(
        hint(
            "transport error: connection error: stream closed because of a broken pipe",
            true
        )
        .contains("after the TLS handshake")
    );
    // Before the handshake a closed connection says nothing about certificates.
    assert_eq!(hint("connection closed", false), "");
    // Plain text: no TLS hint.
    assert_eq!(tls_hint(&None, "UnknownIssuer", false), "");
}

#[test]
fn addresses_and_labels() {
    assert_eq!(
        parse_address("10.0.0.1:4245").unwrap(),
        "http://10.0.0.1:4245"
    );
    assert_eq!(
        parse_address("http://operator.vigil:4245").unwrap(),
        "http://operator.vigil:4245"
    );
    assert_eq!(
        parse_address("https://operator.vigil:4245").unwrap(),
        "https://operator.vigil:4245"
    );
    assert!(parse_address("https://x").is_err());
    assert!(parse_address("").is_err());
    assert!(parse_address("http://x").is_err());
    assert!(parse_address("ftp://x:1").is_err());
    assert!(parse_address("http://x:1/path").is_err());
    let l = parse_labels("zone=a, role=web,empty=").unwrap();
    assert_eq!(l["zone"], "a");
    assert_eq!(l["role"], "web");
    assert_eq!(l["empty"], "");
    assert!(parse_labels("").unwrap().is_empty());
    assert!(parse_labels("novalue").unwrap_err().contains("no '='"));
    assert!(parse_labels("a=1,a=2").unwrap_err().contains("twice"));
    assert!(parse_labels("bad key=1").is_err());
    assert!(parse_labels("k=has space").is_err());
    assert!(parse_labels("topology.kubernetes.io/zone=eu-1").is_ok());
}
