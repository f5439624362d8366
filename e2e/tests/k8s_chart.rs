//! The Helm chart `charts/vigil/`, checked without a cluster: every template is rendered by the
//! real `helm template` (for Kubernetes 1.20, the oldest the chart supports) and linted with
//! `helm lint --strict`, every rendered object is parsed into the typed Kubernetes API structs
//! with unknown fields caught (deserialize, serialize, compare), and the security-relevant
//! facts are asserted:
//! the sensor's ServiceAccount is bound to nothing, the operator's rules are exactly the
//! documented ones, the host paths are exactly the documented ones, and images, ports, flags
//! and config keys agree with the binaries' sources.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Value as Json, json};

fn root() -> PathBuf {
    vigil_e2e::repo_root()
}

fn chart_dir() -> PathBuf {
    root().join("charts/vigil")
}

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Rendering with the real `helm` (the pinned one, scripts/install-k8s.sh).
mod helm {
    use std::collections::BTreeMap;
    use std::path::Path;

    use serde_json::Value as Json;
    use vigil_e2e::cluster::helm_local;

    /// The Kubernetes version templates are rendered for: the oldest the chart supports and the
    /// one the cluster suites run (kube-apiserver v1.20.2).
    pub const KUBE_VERSION: &str = "1.20.2";

    fn values_file(dir: &Path, overrides: &Json) -> String {
        let path = dir.join("values.json");
        std::fs::write(&path, serde_json::to_string(overrides).unwrap()).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// `helm template NAME CHART -n NAMESPACE -f OVERRIDES --kube-version KUBE_VERSION`: each
    /// template's output by its path (`templates/x.yaml`), or helm's error.
    pub fn render(
        chart: &Path,
        release: &str,
        namespace: &str,
        overrides: &Json,
    ) -> Result<BTreeMap<String, String>, String> {
        render_for(chart, release, namespace, overrides, KUBE_VERSION)
    }

    /// [`render`] for another Kubernetes version.
    pub fn render_for(
        chart: &Path,
        release: &str,
        namespace: &str,
        overrides: &Json,
        kube_version: &str,
    ) -> Result<BTreeMap<String, String>, String> {
        let dir = tempfile::tempdir().unwrap();
        let values = values_file(dir.path(), overrides);
        let out = helm_local(&[
            "template",
            release,
            chart.to_str().unwrap(),
            "-n",
            namespace,
            "-f",
            &values,
            "--kube-version",
            kube_version,
        ]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let prefix = format!(
            "# Source: {}/",
            chart.file_name().unwrap().to_str().unwrap()
        );
        let mut by_file: BTreeMap<String, String> = BTreeMap::new();
        for doc in text.split("\n---\n") {
            let doc = doc.trim_start_matches("---\n");
            let Some(first) = doc.lines().next() else {
                continue;
            };
            let Some(path) = first.strip_prefix(&prefix) else {
                return Err(format!("a document without a # Source line:\n{doc}"));
            };
            let body = doc.split_once('\n').map(|(_, b)| b).unwrap_or("");
            let entry = by_file.entry(path.to_string()).or_default();
            if !entry.is_empty() {
                entry.push_str("\n---\n");
            }
            entry.push_str(body);
        }
        Ok(by_file)
    }

    /// The install notes (`helm install --dry-run=client`), as a user sees them.
    pub fn notes(chart: &Path, release: &str, namespace: &str, overrides: &Json) -> String {
        let dir = tempfile::tempdir().unwrap();
        let values = values_file(dir.path(), overrides);
        let out = helm_local(&[
            "install",
            release,
            chart.to_str().unwrap(),
            "-n",
            namespace,
            "-f",
            &values,
            "--dry-run=client",
        ]);
        assert!(
            out.status.success(),
            "{}",
            vigil_e2e::cluster::describe(&out)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_once("\nNOTES:\n")
            .map(|(_, n)| n.to_string())
            .unwrap_or_else(|| panic!("no NOTES in:\n{text}"))
    }

    /// `helm lint --strict` (warnings are errors) with `overrides`: helm's output, or its
    /// error.
    pub fn lint(chart: &Path, overrides: &Json) -> Result<String, String> {
        let dir = tempfile::tempdir().unwrap();
        let values = values_file(dir.path(), overrides);
        let out = helm_local(&[
            "lint",
            "--strict",
            chart.to_str().unwrap(),
            "-f",
            &values,
            "--kube-version",
            KUBE_VERSION,
        ]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }
}

/// Every object of a rendering (NOTES.txt excluded), in template order.
fn objects(rendered: &BTreeMap<String, String>) -> Vec<Json> {
    let mut objs = Vec::new();
    for (path, text) in rendered {
        if !path.ends_with(".yaml") {
            continue;
        }
        for doc in text.split("\n---") {
            let doc = doc.trim_start_matches("---");
            if doc
                .lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
            {
                continue;
            }
            let v: Json = serde_saphyr::from_str(doc)
                .unwrap_or_else(|e| panic!("{path}: not YAML: {e}\n{doc}"));
            assert!(v.is_object(), "{path}: not an object:\n{doc}");
            objs.push(v);
        }
    }
    objs
}

/// Renders as `helm template vigil charts/vigil -n kube-system` with `overrides` on top of
/// values.yaml, and checks every object against its type. `VIGIL_CHART_OUT=DIR` also writes
/// the default rendering there, for reading.
fn render(overrides: Json) -> Vec<Json> {
    let r = helm::render(&chart_dir(), "vigil", "kube-system", &overrides)
        .unwrap_or_else(|e| panic!("render failed: {e}"));
    if let Some(dir) = std::env::var_os("VIGIL_CHART_OUT") {
        let name = if overrides == json!({}) {
            "default"
        } else {
            "custom"
        };
        let all: String = r
            .iter()
            .map(|(p, t)| format!("# Source: {p}\n{t}\n---\n"))
            .collect();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(Path::new(&dir).join(format!("{name}.yaml")), all).unwrap();
    }
    let objs = objects(&r);
    for o in &objs {
        check_typed(o);
    }
    objs
}

/// Deserializes into the typed struct and serializes back: a field the struct does not know
/// (a typo, a field in the wrong place) or a value it normalizes away shows as a difference.
fn roundtrip<T: serde::de::DeserializeOwned + serde::Serialize>(obj: &Json) {
    let typed: T = serde_json::from_value(obj.clone()).unwrap_or_else(|e| {
        panic!(
            "{} {}: does not parse: {e}",
            obj["kind"], obj["metadata"]["name"]
        )
    });
    let back = serde_json::to_value(&typed).unwrap();
    if &back != obj {
        panic!(
            "{} {}: unknown or dropped fields\nrendered: {}\ntyped:    {}",
            obj["kind"],
            obj["metadata"]["name"],
            serde_json::to_string_pretty(obj).unwrap(),
            serde_json::to_string_pretty(&back).unwrap()
        );
    }
}

/// The fields of the Prometheus Operator's ServiceMonitor the chart uses (k8s-openapi does
/// not have it); unknown fields are errors.
mod monitoring {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct ServiceMonitor {
        pub api_version: String,
        pub kind: String,
        pub metadata: ObjectMeta,
        pub spec: Spec,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Spec {
        pub selector: LabelSelector,
        pub namespace_selector: NamespaceSelector,
        pub endpoints: Vec<Endpoint>,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct NamespaceSelector {
        pub match_names: Vec<String>,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Endpoint {
        pub port: String,
        pub path: String,
        pub interval: String,
        pub scrape_timeout: String,
    }
}

fn check_typed(obj: &Json) {
    use k8s_openapi::api::{apps::v1 as apps, core::v1 as core, rbac::v1 as rbac};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    match (obj["apiVersion"].as_str(), obj["kind"].as_str()) {
        (Some("apps/v1"), Some("DaemonSet")) => roundtrip::<apps::DaemonSet>(obj),
        (Some("apps/v1"), Some("Deployment")) => roundtrip::<apps::Deployment>(obj),
        (Some("v1"), Some("Service")) => roundtrip::<core::Service>(obj),
        (Some("v1"), Some("ServiceAccount")) => roundtrip::<core::ServiceAccount>(obj),
        (Some("v1"), Some("ConfigMap")) => roundtrip::<core::ConfigMap>(obj),
        (Some("rbac.authorization.k8s.io/v1"), Some("ClusterRole")) => {
            roundtrip::<rbac::ClusterRole>(obj)
        }
        (Some("rbac.authorization.k8s.io/v1"), Some("ClusterRoleBinding")) => {
            roundtrip::<rbac::ClusterRoleBinding>(obj)
        }
        (Some("rbac.authorization.k8s.io/v1"), Some("Role")) => roundtrip::<rbac::Role>(obj),
        (Some("rbac.authorization.k8s.io/v1"), Some("RoleBinding")) => {
            roundtrip::<rbac::RoleBinding>(obj)
        }
        (Some("apiextensions.k8s.io/v1"), Some("CustomResourceDefinition")) => {
            roundtrip::<ext::CustomResourceDefinition>(obj)
        }
        (Some("monitoring.coreos.com/v1"), Some("ServiceMonitor")) => {
            roundtrip::<monitoring::ServiceMonitor>(obj)
        }
        (v, k) => panic!("unexpected object {v:?} {k:?}"),
    }
}

fn find<'a>(objs: &'a [Json], kind: &str, name: &str) -> &'a Json {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn kinds(objs: &[Json]) -> BTreeSet<String> {
    objs.iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

/// Every optional feature switched on.
fn all_on() -> Json {
    json!({
        "commonLabels": {"team": "security"},
        "imagePullSecrets": [{"name": "regcred"}],
        "sensor": {
            "grpc": {"address": "0.0.0.0:54321"},
            "nodeLabels": {"topology.kubernetes.io/zone": "a", "role": "edge"},
            "extraArgs": ["--export-stdout=false"],
            "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}],
            "podAnnotations": {"example.com/a": "b"},
            "podLabels": {"example.com/l": "x"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}
                ]}]}}},
            "serviceAccount": {"annotations": {"example.com/sa": "s"}},
            "config": {"enable-process-cred": true, "enable-process-ns": true},
        },
        "operator": {
            "extraArgs": ["--log-level=debug"],
            "extraEnv": [{"name": "RUST_LOG", "value": "debug"}],
            "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}],
            "priorityClassName": "system-cluster-critical",
            "podAnnotations": {"example.com/o": "p"},
            "serviceAccount": {"annotations": {"example.com/sa": "o"}},
        },
        "metrics": {"serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}}},
        "tls": {"enabled": true},
    })
}

fn sensor_pod(objs: &[Json]) -> &Json {
    &find(objs, "DaemonSet", "vigil")["spec"]["template"]["spec"]
}

fn container<'a>(pod: &'a Json, name: &str) -> &'a Json {
    pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn args(c: &Json) -> Vec<String> {
    c["args"]
        .as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The binaries' defaults, read from their sources.

/// `pub const NAME: T = VALUE;` from a Rust source file, VALUE as written.
fn rust_const(path: &str, name: &str) -> String {
    let text = read(root().join(path));
    let re = regex::Regex::new(&format!(r"pub const {name}: [^=]+= ([^;]+);")).unwrap();
    re.captures(&text)
        .unwrap_or_else(|| panic!("{path}: no const {name}"))[1]
        .trim()
        .trim_matches('"')
        .to_string()
}

/// The kebab-case names of the fields of `struct NAME` in a Rust source file.
fn struct_fields(path: &str, name: &str) -> BTreeSet<String> {
    let text = read(root().join(path));
    let start = text
        .find(&format!("struct {name} {{"))
        .unwrap_or_else(|| panic!("{path}: no struct {name}"));
    let body = &text[start..start + text[start..].find("\n}").unwrap()];
    let re = regex::Regex::new(r"(?m)^\s+(?:pub )?([a-z_]+): ").unwrap();
    re.captures_iter(body)
        .map(|c| c[1].replace('_', "-"))
        .collect()
}

/// The long flags of the sensor (`struct Cli`; `policies` is `--policy`).
fn sensor_flags() -> BTreeSet<String> {
    struct_fields("sensor/src/config.rs", "Cli")
        .into_iter()
        .filter(|f| f != "command")
        .map(|f| if f == "policies" { "policy".into() } else { f })
        .collect()
}

/// The operator's policy-distribution port (`vigil-operator run --grpc-address`, default
/// 0.0.0.0:4245, as the operator issue specifies).
const OPERATOR_GRPC_PORT: u64 = 4245;

/// Long flag name of `--name=value` / `--name`.
fn flag_name(arg: &str) -> Option<&str> {
    arg.strip_prefix("--").map(|a| a.split('=').next().unwrap())
}

fn workspace_version() -> String {
    let text = read(root().join("Cargo.toml"));
    let re =
        regex::Regex::new(r#"(?m)^\[workspace\.package\][^\[]*?^version = "([^"]+)""#).unwrap();
    re.captures(&text).expect("workspace version")[1].to_string()
}

fn values_yaml() -> Json {
    serde_saphyr::from_str(&read(chart_dir().join("values.yaml"))).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn default_values_render_every_object() {
    let objs = render(json!({}));
    let expected: BTreeSet<String> = [
        "ServiceAccount/vigil",
        "ConfigMap/vigil-config",
        "DaemonSet/vigil",
        "ServiceAccount/vigil-operator",
        "ClusterRole/vigil-operator",
        "ClusterRoleBinding/vigil-operator",
        "Role/vigil-operator-leader-election",
        "RoleBinding/vigil-operator-leader-election",
        "Deployment/vigil-operator",
        "Service/vigil-operator",
        "CustomResourceDefinition/tracingpolicies.vigil.dev",
        "CustomResourceDefinition/tracingpoliciesnamespaced.vigil.dev",
        // No cluster to look into (helm template): no Tetragon CRDs found, so Vigil's cilium.io
        // CRDs are installed (crds.cilium.install=auto).
        "CustomResourceDefinition/tracingpolicies.cilium.io",
        "CustomResourceDefinition/tracingpoliciesnamespaced.cilium.io",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(kinds(&objs), expected);
    let op = find(&objs, "Deployment", "vigil-operator");
    assert!(
        args(&op["spec"]["template"]["spec"]["containers"][0])
            .contains(&"--cilium-policies".into()),
        "the operator reconciles the cilium.io kinds the chart installs"
    );
    for o in &objs {
        let ns = o["metadata"]["namespace"].as_str();
        match o["kind"].as_str().unwrap() {
            "ClusterRole" | "ClusterRoleBinding" | "CustomResourceDefinition" => {
                assert_eq!(ns, None, "{}", o["metadata"]["name"])
            }
            _ => assert_eq!(ns, Some("kube-system"), "{}", o["metadata"]["name"]),
        }
    }
}

#[test]
fn every_optional_feature_renders() {
    let objs = render(all_on());
    let k = kinds(&objs);
    for want in [
        "ServiceMonitor/vigil",
        "ServiceMonitor/vigil-operator",
        "Service/vigil-metrics",
    ] {
        assert!(k.contains(want), "{want} missing from {k:?}");
    }
    let pod = sensor_pod(&objs);
    let sensor = container(pod, "sensor");
    let a = args(sensor);
    for want in [
        "--operator-address=https://vigil-operator.kube-system.svc:4245",
        "--operator-tls-ca=/etc/vigil/tls/ca.crt",
        "--grpc-tls-client-ca=/etc/vigil/tls/ca.crt",
        "--node-labels=role=edge,topology.kubernetes.io/zone=a",
        "--export-stdout=false",
    ] {
        assert!(a.iter().any(|x| x == want), "{want} not in {a:?}");
    }
    let tls_volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tls")
        .expect("tls volume");
    assert_eq!(tls_volume["secret"]["secretName"], "vigil-sensor-tls");
    let op = &find(&objs, "Deployment", "vigil-operator")["spec"]["template"]["spec"];
    let oa = args(&op["containers"][0]);
    assert!(oa.contains(&"--grpc-tls-client-ca=/etc/vigil/tls/ca.crt".to_string()));
    assert_eq!(
        op["volumes"][0]["secret"]["secretName"],
        "vigil-operator-tls"
    );
    assert_eq!(
        find(&objs, "ServiceMonitor", "vigil")["metadata"]["labels"]["release"],
        "prometheus"
    );
    // Every object carries the common labels.
    // Every object carries the common labels (the CRDs are config/crd/ as generated).
    for o in objs
        .iter()
        .filter(|o| o["kind"] != "CustomResourceDefinition")
    {
        assert_eq!(
            o["metadata"]["labels"]["team"], "security",
            "{}",
            o["metadata"]["name"]
        );
    }
}

#[test]
fn unprivileged_mode_adds_exactly_the_documented_capabilities() {
    let objs = render(json!({"sensor": {"privileged": false}}));
    let sc = &container(sensor_pod(&objs), "sensor")["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(
        sc["capabilities"]["add"],
        json!([
            "BPF",
            "PERFMON",
            "SYS_RESOURCE",
            "SYS_ADMIN",
            "SYS_PTRACE",
            "DAC_READ_SEARCH"
        ])
    );
    let readme = read(chart_dir().join("README.md"));
    for cap in [
        "CAP_BPF",
        "CAP_PERFMON",
        "CAP_SYS_RESOURCE",
        "CAP_SYS_ADMIN",
        "CAP_SYS_PTRACE",
        "CAP_DAC_READ_SEARCH",
    ] {
        assert!(readme.contains(cap), "README does not document {cap}");
    }
    let objs = render(json!({}));
    assert_eq!(
        container(sensor_pod(&objs), "sensor")["securityContext"]["privileged"],
        true
    );
}

#[test]
fn parts_switch_off() {
    let objs = render(json!({"operator": {"enabled": false}, "crds": {"install": false}}));
    let k = kinds(&objs);
    assert_eq!(
        k,
        [
            "ServiceAccount/vigil",
            "ConfigMap/vigil-config",
            "DaemonSet/vigil"
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );
    // Without an operator the sensor is not told to connect to one.
    let a = args(container(sensor_pod(&objs), "sensor"));
    assert!(!a.iter().any(|x| x.starts_with("--operator")), "{a:?}");

    let objs =
        render(json!({"sensor": {"enabled": false}, "export": {"stdout": {"enabled": false}}}));
    assert!(!kinds(&objs).iter().any(|k| k.starts_with("DaemonSet")));

    let objs = render(
        json!({"export": {"stdout": {"enabled": false}}, "metrics": {"podAnnotations": false}}),
    );
    let pod = sensor_pod(&objs);
    assert_eq!(pod["containers"].as_array().unwrap().len(), 1);
    let op = find(&objs, "Deployment", "vigil-operator");
    assert!(op["spec"]["template"]["metadata"]["annotations"].is_null());
}

#[test]
fn template_errors_are_reported() {
    let e = helm::render(
        &chart_dir(),
        "vigil",
        "kube-system",
        &json!({"sensor": {"config": {"export-file": "/tmp/x"}}}),
    )
    .unwrap_err();
    assert!(
        e.contains("sensor.config.export-file is set by the chart"),
        "{e}"
    );
    let e = helm::render(
        &chart_dir(),
        "vigil",
        "kube-system",
        &json!({"sensor": {"image": {"repository": ""}}}),
    )
    .unwrap_err();
    assert!(e.contains("image.repository is required"), "{e}");
    // A value the templates need, removed: helm names the template and the value.
    let e = helm::render(
        &chart_dir(),
        "vigil",
        "kube-system",
        &json!({"sensor": {"probes": null}}),
    )
    .unwrap_err();
    assert!(
        e.contains("sensor-daemonset.yaml") && e.contains(".Values.sensor.probes"),
        "{e}"
    );
    let e = helm::render(
        &chart_dir(),
        "vigil",
        "kube-system",
        &json!({"crds": {"cilium": {"install": "yes"}}}),
    )
    .unwrap_err();
    assert!(
        e.contains("crds.cilium.install must be auto, true or false, not \"yes\""),
        "{e}"
    );
    let e = helm::render(
        &chart_dir(),
        "vigil",
        "kube-system",
        &json!({"operator": {"ciliumPolicies": "maybe"}}),
    )
    .unwrap_err();
    assert!(e.contains("operator.ciliumPolicies must be auto"), "{e}");
}

#[test]
fn helm_lint_passes_with_default_and_every_feature() {
    for overrides in [json!({}), all_on()] {
        let out = helm::lint(&chart_dir(), &overrides)
            .unwrap_or_else(|e| panic!("helm lint --strict {overrides}: {e}"));
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{out}"
        );
    }
}

#[test]
fn kube_version_floor_is_1_20_and_newer_fields_are_conditional() {
    // The chart's constraint: 1.20 renders, 1.19 is refused by helm with the constraint named.
    let e =
        helm::render_for(&chart_dir(), "vigil", "kube-system", &json!({}), "1.19.16").unwrap_err();
    assert!(
        e.contains(">=1.20.0-0") && e.contains("v1.19.16"),
        "helm's refusal names the constraint and the version: {e}"
    );
    // securityContext.appArmorProfile exists from 1.30; before it the pod annotation.
    let unprivileged = json!({"sensor": {"privileged": false}});
    let annotation = "container.apparmor.security.beta.kubernetes.io/sensor";
    for (version, field) in [("1.20.2", false), ("1.29.0", false), ("1.30.0", true)] {
        let r =
            helm::render_for(&chart_dir(), "vigil", "kube-system", &unprivileged, version).unwrap();
        let objs = objects(&r);
        let ds = find(&objs, "DaemonSet", "vigil");
        let pod = &ds["spec"]["template"]["spec"];
        let sc = &container(pod, "sensor")["securityContext"];
        assert_eq!(
            sc["appArmorProfile"].is_object(),
            field,
            "Kubernetes {version}: {sc}"
        );
        assert_eq!(
            ds["spec"]["template"]["metadata"]["annotations"][annotation] == "unconfined",
            !field,
            "Kubernetes {version}"
        );
    }
    // Privileged (the default): neither.
    let objs = render(json!({}));
    let ds = find(&objs, "DaemonSet", "vigil");
    assert!(ds["spec"]["template"]["metadata"]["annotations"][annotation].is_null());
}

#[test]
fn sensor_service_account_has_no_api_access() {
    for overrides in [json!({}), all_on()] {
        let objs = render(overrides);
        let sa = find(&objs, "ServiceAccount", "vigil");
        assert_eq!(sa["automountServiceAccountToken"], false);
        let pod = sensor_pod(&objs);
        assert_eq!(pod["serviceAccountName"], "vigil");
        assert_eq!(pod["automountServiceAccountToken"], false);
        for o in &objs {
            if matches!(
                o["kind"].as_str(),
                Some("RoleBinding" | "ClusterRoleBinding")
            ) {
                for s in o["subjects"].as_array().unwrap() {
                    assert_ne!(
                        s["name"], "vigil",
                        "{} binds the sensor",
                        o["metadata"]["name"]
                    );
                    assert_eq!(s["name"], "vigil-operator");
                }
            }
        }
        // Nothing else mounts a token into the sensor.
        assert!(
            !serde_json::to_string(pod)
                .unwrap()
                .contains("serviceaccount")
        );
    }
}

/// The operator's rules, as charts/vigil/README.md ("RBAC") documents them.
fn documented_operator_rules() -> (Json, Json) {
    // The rendering without a cluster installs the cilium.io CRDs, so the operator reconciles
    // that group too.
    let cluster = json!([
        {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["list", "watch"]},
        {"apiGroups": ["vigil.dev"], "resources": ["tracingpolicies", "tracingpoliciesnamespaced"],
         "verbs": ["list", "watch", "patch"]},
        {"apiGroups": ["vigil.dev"], "resources": ["tracingpolicies/status", "tracingpoliciesnamespaced/status"],
         "verbs": ["patch"]},
        {"apiGroups": ["cilium.io"], "resources": ["tracingpolicies", "tracingpoliciesnamespaced"],
         "verbs": ["list", "watch", "patch"]},
        {"apiGroups": ["cilium.io"], "resources": ["tracingpolicies/status", "tracingpoliciesnamespaced/status"],
         "verbs": ["patch"]},
    ]);
    let namespaced = json!([
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "verbs": ["get", "create", "patch"]},
    ]);
    (cluster, namespaced)
}

#[test]
fn operator_rules_are_exactly_the_documented_ones() {
    let objs = render(json!({}));
    let (cluster, namespaced) = documented_operator_rules();
    assert_eq!(
        find(&objs, "ClusterRole", "vigil-operator")["rules"],
        cluster
    );
    // Without the cilium.io kinds, no rule for that group.
    let without = render(json!({"crds": {"cilium": {"install": false}}}));
    assert_eq!(
        find(&without, "ClusterRole", "vigil-operator")["rules"],
        json!(cluster.as_array().unwrap()[..3])
    );
    let role = find(&objs, "Role", "vigil-operator-leader-election");
    assert_eq!(role["rules"], namespaced);
    assert_eq!(role["metadata"]["namespace"], "kube-system");
    let roles: Vec<_> = objs
        .iter()
        .filter(|o| matches!(o["kind"].as_str(), Some("Role" | "ClusterRole")))
        .collect();
    assert_eq!(roles.len(), 2, "only the two documented roles");
    for (kind, name, role_kind) in [
        ("ClusterRoleBinding", "vigil-operator", "ClusterRole"),
        ("RoleBinding", "vigil-operator-leader-election", "Role"),
    ] {
        let b = find(&objs, kind, name);
        assert_eq!(b["roleRef"]["kind"], role_kind);
        assert_eq!(b["roleRef"]["name"], name);
        assert_eq!(
            b["subjects"],
            json!([{"kind": "ServiceAccount", "name": "vigil-operator", "namespace": "kube-system"}])
        );
    }
    // The README's table lists the same rules.
    let readme = read(chart_dir().join("README.md"));
    for rules in [cluster, namespaced] {
        for r in rules.as_array().unwrap() {
            let row = format!(
                "| `{}` | {} | {} |",
                r["apiGroups"][0].as_str().unwrap(),
                r["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| format!("`{}`", x.as_str().unwrap()))
                    .collect::<Vec<_>>()
                    .join(", "),
                r["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            assert!(readme.contains(&row), "README lacks the row {row}");
        }
    }
    // Leader election: two replicas that know who they are.
    let d = find(&objs, "Deployment", "vigil-operator");
    assert_eq!(d["spec"]["replicas"], 2);
    let env: Vec<_> = d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(env, ["POD_NAME", "POD_NAMESPACE"]);
}

/// The host paths of the sensor: (volume, host path, mount path, read-only), as the README's
/// "Host access" table lists them.
const HOST_PATHS: &[(&str, &str, &str, bool)] = &[
    ("bpffs", "/sys/fs/bpf", "/sys/fs/bpf", false),
    ("btf", "/sys/kernel/btf", "/sys/kernel/btf", true),
    (
        "tracefs",
        "/sys/kernel/tracing",
        "/sys/kernel/tracing",
        false,
    ),
    ("cgroup", "/sys/fs/cgroup", "/sys/fs/cgroup", true),
];

#[test]
fn host_access_is_exactly_the_documented_one() {
    let readme = read(chart_dir().join("README.md"));
    for (_, host, _, ro) in HOST_PATHS {
        let row = format!(
            "| `{host}` | {} |",
            if *ro { "read-only" } else { "read-write" }
        );
        assert!(readme.contains(&row), "README lacks {row}");
    }
    for overrides in [
        json!({}),
        all_on(),
        json!({"sensor": {"privileged": false}}),
    ] {
        let objs = render(overrides);
        let mut host_volumes = BTreeMap::new();
        for o in &objs {
            let pod = &o["spec"]["template"]["spec"];
            for v in pod["volumes"].as_array().into_iter().flatten() {
                if let Some(p) = v["hostPath"]["path"].as_str() {
                    host_volumes.insert(
                        v["name"].as_str().unwrap().to_string(),
                        (o["kind"].as_str().unwrap().to_string(), p.to_string()),
                    );
                }
            }
            if o["kind"] == "Deployment" {
                for k in ["hostPID", "hostNetwork", "hostIPC"] {
                    assert!(pod[k].is_null(), "operator sets {k}");
                }
            }
        }
        let want: BTreeMap<_, _> = HOST_PATHS
            .iter()
            .map(|(n, h, _, _)| (n.to_string(), ("DaemonSet".to_string(), h.to_string())))
            .collect();
        assert_eq!(host_volumes, want);

        let pod = sensor_pod(&objs);
        assert_eq!(pod["hostPID"], true);
        assert!(pod["hostNetwork"].is_null());
        assert!(pod["hostIPC"].is_null());
        let sensor = container(pod, "sensor");
        for (name, _, mount, ro) in HOST_PATHS {
            let m = sensor["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == *name)
                .unwrap_or_else(|| panic!("{name} not mounted"));
            assert_eq!(m["mountPath"], *mount);
            assert_eq!(m["readOnly"].as_bool().unwrap_or(false), *ro, "{name}");
            assert!(m["mountPropagation"].is_null());
        }
        // The export-stdout container sees the export volume, read-only, and nothing else.
        if let Some(c) = pod["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "export-stdout")
        {
            assert_eq!(
                c["volumeMounts"],
                json!([{"name": "export", "mountPath": "/var/log/vigil", "readOnly": true}])
            );
            let sc = &c["securityContext"];
            assert_eq!(sc["runAsNonRoot"], true);
            assert_eq!(sc["allowPrivilegeEscalation"], false);
            assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        }
        // Tolerate every taint so that every node runs a sensor.
        assert_eq!(pod["tolerations"], json!([{"operator": "Exists"}]));
    }
}

#[test]
fn images_ports_and_paths_agree_with_the_binaries() {
    let version = workspace_version();
    let chart: Json = serde_saphyr::from_str(&read(chart_dir().join("Chart.yaml"))).unwrap();
    assert_eq!(
        chart["appVersion"],
        version.as_str(),
        "Chart.yaml appVersion"
    );
    let objs = render(json!({}));
    let pod = sensor_pod(&objs);
    let sensor = container(pod, "sensor");
    assert_eq!(sensor["image"], format!("vigil/vigil-sensor:{version}"));
    assert_eq!(sensor["command"], json!(["vigil-sensor"]));
    let op =
        &find(&objs, "Deployment", "vigil-operator")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(op["image"], format!("vigil/vigil-operator:{version}"));
    assert_eq!(op["command"], json!(["vigil-operator"]));
    assert_eq!(args(op)[0], "run");
    // A pinned tag wins over appVersion.
    let objs2 = render(json!({"sensor": {"image": {"tag": "9.9.9"}}}));
    assert_eq!(
        container(sensor_pod(&objs2), "sensor")["image"],
        "vigil/vigil-sensor:9.9.9"
    );

    // The sensor's config: the socket is the sensor's default, metrics on the probed port.
    let cm = find(&objs, "ConfigMap", "vigil-config");
    let config: Json = serde_saphyr::from_str(cm["data"]["config.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(
        config["grpc-socket"],
        rust_const("sensor/src/config.rs", "DEFAULT_GRPC_SOCKET").as_str()
    );
    assert_eq!(config["metrics-address"], "0.0.0.0:2112");
    assert_eq!(config["export-file"], "/var/log/vigil/events.json");
    assert_eq!(
        sensor["ports"],
        json!([{"name": "metrics", "containerPort": 2112, "protocol": "TCP"}])
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            sensor[probe]["httpGet"],
            json!({"path": "/healthz", "port": "metrics"})
        );
    }
    // The sensor serves /healthz on its metrics address: its metrics server is the shared one.
    assert!(
        read(root().join("sensor/src/output/metrics.rs")).contains("vigil_host::metrics_http::")
    );
    assert!(read(root().join("host/src/metrics_http.rs")).contains(r#".route("/healthz""#));
    let annotations =
        &find(&objs, "DaemonSet", "vigil")["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], "2112");
    assert_eq!(annotations["prometheus.io/scrape"], "true");

    // The export file's default rotation matches the sensor's.
    assert_eq!(
        config["export-file-max-size-mb"].to_string(),
        rust_const("sensor/src/config.rs", "DEFAULT_EXPORT_FILE_MAX_SIZE_MB")
    );
    assert_eq!(
        config["export-file-max-backups"].to_string(),
        rust_const("sensor/src/config.rs", "DEFAULT_EXPORT_FILE_MAX_BACKUPS")
    );
    // And the sizes in values.yaml are the sensor's defaults.
    let rb = rust_const("sensor/src/config.rs", "DEFAULT_RING_BUFFER_SIZE");
    assert_eq!(rb, "8 << 20");
    assert_eq!(config["ring-buffer-size"], 8 << 20);
    for (key, c) in [
        ("process-table-size", "DEFAULT_PROCESS_TABLE_SIZE"),
        ("process-cache-size", "DEFAULT_PROCESS_CACHE_SIZE"),
        ("export-queue-size", "DEFAULT_EXPORT_QUEUE_SIZE"),
    ] {
        assert_eq!(
            config[key].to_string(),
            rust_const("sensor/src/config.rs", c),
            "{key}"
        );
    }

    // The operator: gRPC port 4245 behind the Service the sensors are pointed at.
    assert!(args(op).contains(&format!("--grpc-address=0.0.0.0:{OPERATOR_GRPC_PORT}")));
    assert_eq!(
        op["ports"][0],
        json!({"name": "grpc", "containerPort": OPERATOR_GRPC_PORT, "protocol": "TCP"})
    );
    let svc = find(&objs, "Service", "vigil-operator");
    assert_eq!(svc["spec"]["ports"][0]["port"], OPERATOR_GRPC_PORT);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "grpc");
    assert_eq!(
        svc["spec"]["selector"],
        find(&objs, "Deployment", "vigil-operator")["spec"]["selector"]["matchLabels"]
    );
    assert!(args(sensor).contains(&format!(
        "--operator-address=http://vigil-operator.kube-system.svc:{OPERATOR_GRPC_PORT}"
    )));
    // The operator's --grpc-address default (operator/src/run.rs) is this port.
    let operator_src = read(root().join("operator/src/run.rs"));
    assert!(
        operator_src.contains(&format!(
            "DEFAULT_GRPC_ADDRESS: &str = \"0.0.0.0:{OPERATOR_GRPC_PORT}\""
        )),
        "operator/src/run.rs: --grpc-address default is not port {OPERATOR_GRPC_PORT}"
    );
}

#[test]
fn sensor_args_and_config_keys_are_the_sensors() {
    let flags = sensor_flags();
    assert!(
        flags.contains("export-file") && flags.contains("config"),
        "{flags:?}"
    );
    let file_keys = struct_fields("sensor/src/config.rs", "FileConfig");
    assert!(file_keys.contains("enable-process-ns"), "{file_keys:?}");
    for overrides in [json!({}), all_on()] {
        let objs = render(overrides);
        let sensor = container(sensor_pod(&objs), "sensor");
        for a in args(sensor) {
            let f = flag_name(&a).unwrap_or_else(|| panic!("{a} is not a long flag"));
            assert!(flags.contains(f), "vigil-sensor has no --{f}");
        }
        // Every key of config.yaml is a key the sensor's FileConfig accepts (it refuses others).
        let cm = find(&objs, "ConfigMap", "vigil-config");
        let config: Json =
            serde_saphyr::from_str(cm["data"]["config.yaml"].as_str().unwrap()).unwrap();
        for k in config.as_object().unwrap().keys() {
            assert!(
                file_keys.contains(k),
                "config.yaml key {k} is not a sensor option"
            );
        }
        let d = find(&objs, "Deployment", "vigil-operator");
        let operator_src = read(root().join("operator/src/main.rs"));
        for a in args(&d["spec"]["template"]["spec"]["containers"][0])
            .iter()
            .skip(1)
        {
            let f = flag_name(a).unwrap();
            let declared = operator_src.contains(&format!("{}:", f.replace('-', "_")));
            assert!(
                declared || a.starts_with("--log-level"),
                "vigil-operator run has no --{f}"
            );
        }
    }
}

/// Entry sizes of docs/architecture.md ("Memory is a function of configuration"), typical case.
const PROCESS_TABLE_ENTRY: u64 = 420;
const PER_CPU_SCRATCH: u64 = 25 << 10;
const PROCESS_CACHE_ENTRY_TYPICAL: u64 = 1 << 10;
const EXPORT_QUEUE_ENTRY_TYPICAL: u64 = 1536;

#[test]
fn memory_limit_covers_the_documented_formula() {
    let arch = read(root().join("docs/architecture.md"));
    for fact in [
        "`--process-table-size` × ~420 B",
        "~25 KiB × CPUs",
        "~1 KiB typical",
        "~1.5 KiB typical",
        "| ring buffer | `--ring-buffer-size`",
    ] {
        assert!(
            arch.contains(fact),
            "docs/architecture.md no longer says {fact:?}: update the chart"
        );
    }
    let bpf = read(root().join("docs/bpf.md"));
    assert!(bpf.contains("≈ 4.5 MiB (preallocated)") && bpf.contains("512 × 3816 ≈ 1.9 MiB"));

    let values = values_yaml();
    let c = &values["sensor"]["config"];
    let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("sensor.config.{k}"));
    let mib = 1u64 << 20;
    // Fixed BPF maps besides the process table (bpf.md: hooks, ints, exited, pending,
    // ratelimit, attach, policies), rounded up.
    let other_maps = 8 * mib;
    let cpus = 128;
    let runtime = 40 * mib;
    let formula = n("ring-buffer-size")
        + n("process-table-size") * PROCESS_TABLE_ENTRY
        + other_maps
        + cpus * 3 * PER_CPU_SCRATCH
        + n("process-cache-size") * PROCESS_CACHE_ENTRY_TYPICAL
        + n("export-queue-size") * EXPORT_QUEUE_ENTRY_TYPICAL
        + runtime;
    let quantity = |q: &str| -> u64 {
        let (num, unit) = q.split_at(q.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(q.len()));
        let num: u64 = num.parse().unwrap();
        num * match unit {
            "Mi" => mib,
            "Gi" => 1 << 30,
            "" => 1,
            u => panic!("unit {u}"),
        }
    };
    let res = &values["sensor"]["resources"];
    let limit = quantity(res["limits"]["memory"].as_str().unwrap());
    let request = quantity(res["requests"]["memory"].as_str().unwrap());
    assert!(
        limit >= formula,
        "sensor memory limit {limit} is below the formula {formula} ({} MiB)",
        formula / mib
    );
    // The fixed part (preallocated maps, ring buffer, runtime) fits the request.
    let fixed = n("ring-buffer-size")
        + n("process-table-size") * PROCESS_TABLE_ENTRY
        + other_maps
        + runtime;
    assert!(
        request >= fixed,
        "request {request} below the fixed part {fixed}"
    );
    assert!(
        res["limits"]["cpu"].is_null(),
        "no CPU limit (throttling loses events)"
    );
}

#[test]
fn crds_in_the_chart_equal_config_crd() {
    // config/crd/*.yaml (vigil.dev) and config/crd/cilium.io/*.yaml (Tetragon's group).
    let files = |dir: PathBuf| -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for sub in ["", "cilium.io"] {
            for e in std::fs::read_dir(dir.join(sub)).unwrap().flatten() {
                if e.path().is_file() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    out.insert(if sub.is_empty() {
                        name
                    } else {
                        format!("{sub}/{name}")
                    });
                }
            }
        }
        out
    };
    let names = files(root().join("config/crd"));
    assert_eq!(names.len(), 4, "{names:?}");
    assert_eq!(
        files(chart_dir().join("files/crds")),
        names,
        "charts/vigil/files/crds vs config/crd"
    );
    for n in &names {
        assert_eq!(
            read(chart_dir().join("files/crds").join(n)),
            read(root().join("config/crd").join(n)),
            "charts/vigil/files/crds/{n} differs from config/crd/{n}: cp -r config/crd/. charts/vigil/files/crds/"
        );
    }
    // In the order the chart renders them: vigil.dev, then cilium.io.
    let mut ordered: Vec<&String> = names.iter().filter(|n| !n.contains('/')).collect();
    ordered.extend(names.iter().filter(|n| n.contains('/')));
    let originals: Vec<Json> = ordered
        .iter()
        .map(|n| serde_saphyr::from_str(&read(root().join("config/crd").join(n))).unwrap())
        .collect();
    let crds = |objs: Vec<Json>| -> Vec<Json> {
        objs.into_iter()
            .filter(|o| o["kind"] == "CustomResourceDefinition")
            .collect()
    };
    // Without `keep` the rendered CRDs are the files; with it they only gain the annotation.
    assert_eq!(crds(render(json!({"crds": {"keep": false}}))), originals);
    let kept = crds(render(json!({})));
    assert_eq!(kept.len(), originals.len());
    for (k, o) in kept.iter().zip(&originals) {
        let mut o = o.clone();
        o["metadata"]["annotations"] = json!({"helm.sh/resource-policy": "keep"});
        assert_eq!(k, &o);
    }
    // crds.cilium.install=false: only Vigil's group.
    let vigil_only = crds(render(json!({"crds": {"cilium": {"install": false}}})));
    assert_eq!(vigil_only.len(), 2);
    assert!(vigil_only.iter().all(|c| c["spec"]["group"] == "vigil.dev"));
}

#[test]
fn values_are_documented_field_by_field() {
    let text = read(chart_dir().join("values.yaml"));
    let lines: Vec<&str> = text.lines().collect();
    // (indent, documented) of the open keys above the current line.
    let mut stack: Vec<(usize, bool)> = Vec::new();
    let key = regex::Regex::new(r"^(\s*)([A-Za-z][A-Za-z0-9.-]*):").unwrap();
    let mut undocumented = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(c) = key.captures(line) else {
            continue;
        };
        let indent = c[1].len();
        while stack.last().is_some_and(|(d, _)| *d >= indent) {
            stack.pop();
        }
        let commented = i > 0 && lines[i - 1].trim_start().starts_with('#');
        let parent_documented = stack.last().is_some_and(|(_, d)| *d);
        let is_section = line.trim_end().ends_with(':')
            && lines.get(i + 1).is_some_and(|n| {
                n.len() - n.trim_start().len() > indent && !n.trim_start().starts_with('-')
            });
        if !commented && !parent_documented && !is_section {
            undocumented.push(format!("line {}: {}", i + 1, line.trim()));
        }
        stack.push((indent, commented || parent_documented));
    }
    assert!(
        undocumented.is_empty(),
        "values.yaml fields without a comment:\n{}",
        undocumented.join("\n")
    );
}

#[test]
fn readme_and_notes_match_the_quickstart() {
    let readme = read(chart_dir().join("README.md"));
    for cmd in [
        "helm install vigil -n kube-system ./charts/vigil",
        "kubectl rollout status -n kube-system ds/vigil",
        "kubectl rollout status -n kube-system deploy/vigil-operator",
        "kubectl logs -n kube-system ds/vigil -c export-stdout -f | vigil observe",
    ] {
        assert!(readme.contains(cmd), "README lacks `{cmd}`");
    }
    let r = helm::render(&chart_dir(), "vigil", "kube-system", &json!({})).unwrap();
    let notes = helm::notes(&chart_dir(), "vigil", "kube-system", &json!({}));
    assert!(
        notes.contains("kubectl logs -n kube-system ds/vigil -c export-stdout -f | vigil observe"),
        "{notes}"
    );
    // Without a cluster to look into, the cilium.io CRDs are installed: Tetragon's manifests
    // apply unchanged.
    assert!(
        notes.contains("kubectl apply -f examples/policies/file-access.yaml"),
        "{notes}"
    );
    let notes = helm::notes(
        &chart_dir(),
        "vigil",
        "kube-system",
        &json!({"crds": {"cilium": {"install": false}}}),
    );
    assert!(
        notes.contains(
            "sed 's#cilium.io/v1alpha1#vigil.dev/v1alpha1#' examples/policies/file-access.yaml | kubectl apply -f -"
        ),
        "{notes}"
    );
    // The names in those commands are the rendered ones.
    let objs = objects(&r);
    find(&objs, "DaemonSet", "vigil");
    find(&objs, "Deployment", "vigil-operator");
    container(sensor_pod(&objs), "export-stdout");
    let ops = read(root().join("docs/operations.md"));
    assert!(
        ops.contains("charts/vigil/README.md"),
        "docs/operations.md points to the chart"
    );
}
