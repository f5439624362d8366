//! The Helm chart against a real API server (kube-apiserver v1.20.2 + etcd on loopback,
//! `vigil_e2e::cluster`), installed, upgraded and uninstalled with the real `helm`, and read with
//! the real `kubectl`: every object the chart renders is created and passes the server's own
//! validation, an upgrade with changed values changes them, and the CRDs (with the policies in
//! them) stay after `helm uninstall`. Also: `cilium.io` CRDs the cluster already has (Tetragon's)
//! are detected and left alone. Not run in the VM (e2e/vm/run.sh skips `k8s_*`).

use std::path::PathBuf;

use serde_json::{Value, json};
use vigil_e2e::cluster::{Cluster, describe};

fn chart() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/vigil")
        .canonicalize()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

/// `KIND/NAME` (with namespace) of every object of a multi-document manifest.
fn manifest_objects(manifest: &str) -> Vec<(String, String, Option<String>)> {
    manifest
        .split("\n---")
        .map(|d| d.trim_start_matches("---"))
        .filter(|d| {
            !d.lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        })
        .map(|d| {
            let v: Value = serde_saphyr::from_str(d).unwrap_or_else(|e| panic!("{e}:\n{d}"));
            (
                v["kind"].as_str().unwrap().to_string(),
                v["metadata"]["name"].as_str().unwrap().to_string(),
                v["metadata"]["namespace"].as_str().map(String::from),
            )
        })
        .collect()
}

/// `kubectl get KIND NAME [-n NS] -o json`, which must exist.
fn must_get(c: &Cluster, kind: &str, name: &str, ns: Option<&str>) -> Value {
    let mut args = vec![kind, name];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    c.get_json(&args)
        .unwrap_or_else(|| panic!("{kind}/{name} is not in the cluster"))
}

fn crd_names(c: &Cluster) -> Vec<String> {
    let out = c.kubectl_ok(&["get", "crd", "-o", "name"]);
    let mut v: Vec<String> = out.lines().map(String::from).collect();
    v.sort();
    v
}

const ALL_CRDS: [&str; 4] = [
    "customresourcedefinition.apiextensions.k8s.io/tracingpolicies.cilium.io",
    "customresourcedefinition.apiextensions.k8s.io/tracingpolicies.vigil.dev",
    "customresourcedefinition.apiextensions.k8s.io/tracingpoliciesnamespaced.cilium.io",
    "customresourcedefinition.apiextensions.k8s.io/tracingpoliciesnamespaced.vigil.dev",
];

#[test]
fn helm_install_upgrade_and_uninstall_against_a_real_api_server() {
    let c = Cluster::start();
    c.kubectl_ok(&["create", "namespace", "vigil"]);
    let chart = chart();

    // Server-side dry run first: the API server validates every object without keeping any.
    let dry = c.helm_ok(&[
        "install",
        "vigil",
        &chart,
        "-n",
        "vigil",
        "--dry-run=server",
    ]);
    assert!(dry.contains("STATUS: pending-install"), "{dry}");
    assert!(crd_names(&c).is_empty(), "a dry run created CRDs");

    let out = c.helm_ok(&["install", "vigil", &chart, "-n", "vigil"]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(
        out.contains("Tetragon's manifests (cilium.io/v1alpha1) apply unchanged"),
        "no Tetragon CRDs in this cluster: the notes say the cilium.io kinds are served\n{out}"
    );
    let list = c.helm_ok(&["list", "-n", "vigil", "-o", "json"]);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["name"], "vigil", "{list}");
    assert_eq!(list[0]["status"], "deployed", "{list}");

    // Every object of the release is in the cluster, and it is the set the chart documents.
    let manifest = c.helm_ok(&["get", "manifest", "vigil", "-n", "vigil"]);
    let objs = manifest_objects(&manifest);
    let mut kinds: Vec<String> = objs.iter().map(|(k, n, _)| format!("{k}/{n}")).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole/vigil-operator",
            "ClusterRoleBinding/vigil-operator",
            "ConfigMap/vigil-config",
            "CustomResourceDefinition/tracingpolicies.cilium.io",
            "CustomResourceDefinition/tracingpolicies.vigil.dev",
            "CustomResourceDefinition/tracingpoliciesnamespaced.cilium.io",
            "CustomResourceDefinition/tracingpoliciesnamespaced.vigil.dev",
            "DaemonSet/vigil",
            "Deployment/vigil-operator",
            "Role/vigil-operator-leader-election",
            "RoleBinding/vigil-operator-leader-election",
            "Service/vigil-operator",
            "ServiceAccount/vigil",
            "ServiceAccount/vigil-operator",
        ]
    );
    for (kind, name, ns) in &objs {
        let o = must_get(&c, kind, name, ns.as_deref());
        assert_eq!(
            o["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm",
            "{kind}/{name}"
        );
    }
    // The CRDs are established (structural schemas the 1.20 server accepts) and kept.
    for name in [
        "tracingpolicies.vigil.dev",
        "tracingpoliciesnamespaced.vigil.dev",
        "tracingpolicies.cilium.io",
        "tracingpoliciesnamespaced.cilium.io",
    ] {
        let wait = c.kubectl(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/{name}"),
            "--timeout=60s",
        ]);
        assert!(wait.status.success(), "{}", describe(&wait));
        let crd = must_get(&c, "crd", name, None);
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{name}"
        );
        let conds = crd["status"]["conditions"].as_array().unwrap();
        assert!(
            !conds
                .iter()
                .any(|c| c["type"] == "NonStructuralSchema" && c["status"] == "True"),
            "{name}: {conds:?}"
        );
    }
    let d = must_get(&c, "deployment", "vigil-operator", Some("vigil"));
    assert_eq!(d["spec"]["replicas"], 2);
    // Nothing runs pods here (no scheduler or kubelet): the DaemonSet is stored, not rolled out.
    must_get(&c, "daemonset", "vigil", Some("vigil"));

    // A policy in the cluster, to outlive the release.
    c.apply(
        "apiVersion: vigil.dev/v1alpha1\nkind: TracingPolicy\nmetadata: {name: keep-me}\n\
         spec:\n  tracepoints:\n  - {subsystem: sched, event: sched_process_free}\n",
    );

    // Upgrade with changed values: each change reaches the stored objects, through the server's
    // validation (unprivileged sensor with the 1.20 AppArmor annotation, TLS volumes, a TCP
    // gRPC listener).
    let out = c.helm_ok(&[
        "upgrade",
        "vigil",
        &chart,
        "-n",
        "vigil",
        "--set",
        "operator.replicas=3",
        "--set",
        "sensor.config.log-level=debug",
        "--set",
        "sensor.privileged=false",
        "--set",
        "tls.enabled=true",
        "--set",
        "sensor.grpc.address=0.0.0.0:54321",
    ]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(out.contains("REVISION: 2"), "{out}");
    let d = must_get(&c, "deployment", "vigil-operator", Some("vigil"));
    assert_eq!(d["spec"]["replicas"], 3);
    let args = d["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    assert!(
        args.as_array()
            .unwrap()
            .contains(&json!("--grpc-tls-cert=/etc/vigil/tls/tls.crt")),
        "{args}"
    );
    let cm = must_get(&c, "configmap", "vigil-config", Some("vigil"));
    let config = cm["data"]["config.yaml"].as_str().unwrap();
    assert!(config.contains("log-level: debug"), "{config}");
    assert!(
        config.contains("grpc-address: \"0.0.0.0:54321\""),
        "{config}"
    );
    let ds = must_get(&c, "daemonset", "vigil", Some("vigil"));
    let tmpl = &ds["spec"]["template"];
    assert_eq!(
        tmpl["metadata"]["annotations"]["container.apparmor.security.beta.kubernetes.io/sensor"],
        "unconfined",
        "on 1.20 AppArmor is an annotation"
    );
    let sensor = &tmpl["spec"]["containers"][0];
    assert_eq!(sensor["securityContext"]["privileged"], false);
    assert_eq!(
        sensor["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    let history = c.helm_ok(&["history", "vigil", "-n", "vigil", "-o", "json"]);
    let history: Value = serde_json::from_str(&history).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 2, "{history}");

    // Uninstall: the release's objects go, the CRDs and the policy stay.
    let out = c.helm_ok(&["uninstall", "vigil", "-n", "vigil", "--wait"]);
    assert!(out.contains("uninstalled"), "{out}");
    for (kind, name, ns) in &objs {
        if kind == "CustomResourceDefinition" {
            continue;
        }
        let mut args = vec![kind.as_str(), name.as_str()];
        if let Some(ns) = ns {
            args.extend(["-n", ns.as_str()]);
        }
        assert!(
            c.get_json(&args).is_none(),
            "{kind}/{name} still exists after helm uninstall"
        );
    }
    assert_eq!(crd_names(&c), ALL_CRDS, "the CRDs stay (crds.keep)");
    let kept = c.kubectl_ok(&["get", "tracingpolicies.vigil.dev", "-o", "name"]);
    assert_eq!(kept.trim(), "tracingpolicy.vigil.dev/keep-me");

    // Installed again under the same name: the kept CRDs are this release's again.
    let out = c.helm_ok(&["install", "vigil", &chart, "-n", "vigil"]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    let manifest = c.helm_ok(&["get", "manifest", "vigil", "-n", "vigil"]);
    assert!(
        manifest.contains("name: tracingpolicies.cilium.io"),
        "the reinstall owns its cilium.io CRDs again"
    );
}

/// A `tracingpolicies.cilium.io` CRD as another product (Tetragon) would install it: not
/// Vigil's schema, not from a Vigil release.
const FOREIGN_CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: tracingpolicies.cilium.io
  labels: {app.kubernetes.io/part-of: another-product}
spec:
  group: cilium.io
  names: {kind: TracingPolicy, plural: tracingpolicies, singular: tracingpolicy, listKind: TracingPolicyList}
  scope: Cluster
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
";

#[test]
fn existing_cilium_io_crds_are_detected_and_left_alone() {
    let c = Cluster::start();
    c.kubectl_ok(&["create", "namespace", "vigil"]);
    c.apply(FOREIGN_CRD);
    let before = must_get(&c, "crd", "tracingpolicies.cilium.io", None);
    let chart = chart();

    // Asked to install them anyway: refused, naming the CRD.
    let out = c.helm(&[
        "install",
        "vigil",
        &chart,
        "-n",
        "vigil",
        "--set",
        "crds.cilium.install=true",
    ]);
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "crds.cilium.install=true, but the cluster already has the CRD tracingpolicies.cilium.io"
        ),
        "{err}"
    );

    // The default (auto): installed without them, and the notes say why.
    let out = c.helm_ok(&["install", "vigil", &chart, "-n", "vigil"]);
    assert!(
        out.contains(
            "The cluster already has the CRD tracingpolicies.cilium.io, not installed by this release"
        ),
        "{out}"
    );
    assert!(out.contains("does not reconcile its policies"), "{out}");
    assert!(
        out.contains("sed 's#cilium.io/v1alpha1#vigil.dev/v1alpha1#'"),
        "{out}"
    );
    let manifest = c.helm_ok(&["get", "manifest", "vigil", "-n", "vigil"]);
    let names: Vec<String> = manifest_objects(&manifest)
        .into_iter()
        .filter(|(k, _, _)| k == "CustomResourceDefinition")
        .map(|(_, n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "tracingpolicies.vigil.dev",
            "tracingpoliciesnamespaced.vigil.dev"
        ]
    );
    // The foreign CRD is untouched, the operator leaves the group alone and may not touch it.
    let after = must_get(&c, "crd", "tracingpolicies.cilium.io", None);
    assert_eq!(
        before["metadata"]["resourceVersion"], after["metadata"]["resourceVersion"],
        "the foreign CRD was changed"
    );
    assert!(after["metadata"]["annotations"]["meta.helm.sh/release-name"].is_null());
    let d = must_get(&c, "deployment", "vigil-operator", Some("vigil"));
    let args = d["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    assert!(
        !args
            .as_array()
            .unwrap()
            .contains(&json!("--cilium-policies")),
        "{args}"
    );
    let role = must_get(&c, "clusterrole", "vigil-operator", None);
    assert!(
        !role["rules"].to_string().contains("cilium.io"),
        "{}",
        role["rules"]
    );
    // An upgrade keeps deciding the same way.
    c.helm_ok(&["upgrade", "vigil", &chart, "-n", "vigil"]);
    let manifest = c.helm_ok(&["get", "manifest", "vigil", "-n", "vigil"]);
    assert!(!manifest.contains("name: tracingpolicies.cilium.io"));
}
