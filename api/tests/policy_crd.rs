//! CRD types: crd() works for both kinds (an internally tagged enum would panic here), and
//! objects coming from a cluster compile like the same manifest read from a file.

use kube::CustomResourceExt;
use vigil_api::policy::{
    TracingPolicy, TracingPolicyDoc, TracingPolicyNamespaced, compile, compile_yaml, ir_to_json,
    parse_documents, parse_value,
};

#[test]
fn crd_for_both_kinds() {
    let cluster = TracingPolicy::crd();
    let namespaced = TracingPolicyNamespaced::crd();
    assert_eq!(
        cluster.metadata.name.as_deref(),
        Some("tracingpolicies.vigil.dev")
    );
    assert_eq!(
        namespaced.metadata.name.as_deref(),
        Some("tracingpoliciesnamespaced.vigil.dev")
    );
    assert_eq!(cluster.spec.scope, "Cluster");
    assert_eq!(namespaced.spec.scope, "Namespaced");
    for crd in [&cluster, &namespaced] {
        assert_eq!(crd.spec.group, "vigil.dev");
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let schema = serde_json::to_value(v.schema.as_ref().unwrap()).unwrap();
        let spec = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"];
        for field in [
            "kprobes",
            "tracepoints",
            "uprobes",
            "lsmhooks",
            "lists",
            "options",
            "enforcers",
            "selectorsMacros",
            "podSelector",
            "containerSelector",
            "hostSelector",
            "nodeSelector",
        ] {
            assert!(
                spec.get(field).is_some(),
                "{field} missing from the CRD schema"
            );
        }
        // Defaults as Tetragon's CRD applies them.
        let kprobe = &spec["kprobes"]["items"]["properties"];
        assert_eq!(kprobe["syscall"]["default"], serde_json::json!(true));
        assert_eq!(kprobe["return"]["default"], serde_json::json!(false));
        let arg_type = &kprobe["args"]["items"]["properties"]["type"];
        assert_eq!(arg_type["default"], serde_json::json!("auto"));
        assert!(arg_type["enum"].as_array().unwrap().len() > 40);
    }
    assert_eq!(vigil_api::policy::crds().len(), 2);
}

const MANIFEST: &str = include_str!("fixtures/policies/network.yaml");

#[test]
fn cluster_object_compiles_like_the_file() {
    let doc = parse_documents(MANIFEST).unwrap().remove(0);
    let object = TracingPolicy::new(&doc.metadata.name, doc.spec.clone());
    let from_object = compile(&TracingPolicyDoc::from_cluster(&object)).unwrap();
    let from_file = compile_yaml(MANIFEST).unwrap().remove(0);
    assert_eq!(from_object.hooks, from_file.hooks);
    assert_eq!(from_object.scope, from_file.scope);
    assert_eq!(
        from_object.identity.as_ref().unwrap().source_api_version,
        "vigil.dev/v1alpha1"
    );

    // The object serialized as the API server would send it parses strictly too.
    let json = serde_json::to_value(&object).unwrap();
    let reparsed = parse_value(json).unwrap();
    assert_eq!(reparsed.spec, doc.spec);
    assert_eq!(
        ir_to_json(&compile(&reparsed).unwrap())
            .replace("vigil.dev/v1alpha1", "cilium.io/v1alpha1"),
        ir_to_json(&from_file)
    );
}

#[test]
fn namespaced_object_keeps_its_namespace() {
    let yaml = include_str!("fixtures/policies/lsm-enforce.yaml");
    let doc = parse_documents(yaml).unwrap().remove(0);
    let mut object = TracingPolicyNamespaced::new(&doc.metadata.name, doc.spec.clone().into());
    object.metadata.namespace = Some("payments".into());
    let ir = compile(&TracingPolicyDoc::from_namespaced(&object)).unwrap();
    assert_eq!(ir.identity.as_ref().unwrap().namespace, "payments");
    assert_eq!(ir.scope.as_ref().unwrap().namespace, "payments");
    assert_eq!(ir.hooks, compile(&doc).unwrap().hooks);
}

/// Optional enums are `nullable` without a `null` enum value (1.20-era OpenAPI validation in
/// helm and kubectl refuses `null` there), and no string defaults to "" (a 1.20 API server
/// refuses that through server-side apply), in both groups.
#[test]
fn crds_have_no_null_enum_values() {
    fn nulls(v: &serde_json::Value, path: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::Array(e)) = m.get("enum")
                    && e.iter().any(|x| x.is_null())
                {
                    out.push(path.to_string());
                }
                if m.get("default") == Some(&serde_json::Value::String(String::new())) {
                    out.push(format!("{path} (default \"\")"));
                }
                for (k, x) in m {
                    nulls(x, &format!("{path}.{k}"), out);
                }
            }
            serde_json::Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    nulls(x, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let all: Vec<_> = vigil_api::policy::crds()
        .into_iter()
        .chain(vigil_api::policy::cilium_crds())
        .collect();
    assert_eq!(all.len(), 4);
    let mut found = Vec::new();
    let mut optional_enums = 0;
    for crd in &all {
        let v = serde_json::to_value(crd).unwrap();
        nulls(&v, crd.metadata.name.as_deref().unwrap(), &mut found);
        optional_enums += v
            .to_string()
            .matches("\"nullable\":true,\"type\":\"string\"")
            .count();
    }
    assert!(
        found.is_empty(),
        "null enum values or empty defaults at {found:?}"
    );
    assert!(optional_enums > 0, "the optional enums are still nullable");
    let groups: Vec<&str> = all.iter().map(|c| c.spec.group.as_str()).collect();
    assert_eq!(groups, ["vigil.dev", "vigil.dev", "cilium.io", "cilium.io"]);
}
