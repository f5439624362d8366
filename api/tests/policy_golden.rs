//! Golden IR snapshots: fixtures/policies/NAME.yaml compiles to exactly fixtures/golden/NAME.json.
//! Regenerate after an intended IR change with `VIGIL_UPDATE_GOLDEN=1 cargo test -p vigil-api --test policy_golden`.

use std::path::PathBuf;

use vigil_api::policy::{compile_yaml, ir_to_json};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

const CASES: [&str; 5] = [
    "syscall-write",
    "network",
    "lsm-enforce",
    "lists-enforcer",
    "uprobe-return",
];

fn render(name: &str) -> String {
    let path = fixtures().join("policies").join(format!("{name}.yaml"));
    let yaml = std::fs::read_to_string(&path).unwrap();
    let irs = compile_yaml(&yaml).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(irs.len(), 1);
    ir_to_json(&irs[0]) + "\n"
}

#[test]
fn golden_snapshots() {
    let update = std::env::var_os("VIGIL_UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for name in CASES {
        let got = render(name);
        let path = fixtures().join("golden").join(format!("{name}.json"));
        if update {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if got != want {
            stale.push(format!("{}\n--- got ---\n{got}", path.display()));
        }
    }
    assert!(
        stale.is_empty(),
        "IR differs from the golden files (if intended, run VIGIL_UPDATE_GOLDEN=1 cargo test -p vigil-api --test policy_golden):\n{}",
        stale.join("\n")
    );
}

#[test]
fn same_input_gives_identical_bytes() {
    for name in CASES {
        assert_eq!(render(name), render(name), "{name}");
    }
}

#[test]
fn value_order_and_duplicates_do_not_change_the_ir() {
    let a = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: order}
spec:
  kprobes:
  - call: tcp_connect
    syscall: false
    args: [{index: 0, type: sock}]
    selectors:
    - matchArgs:
      - {index: 0, operator: DAddr, values: ["10.0.0.0/8", "127.0.0.1", "10.9.9.9/8"]}
      - {index: 0, operator: DPort, values: ["80", "443", "80"]}
      matchBinaries:
      - {operator: In, values: ["/b", "/a", "/b"]}
"#;
    let b = a
        .replace(
            r#"["10.0.0.0/8", "127.0.0.1", "10.9.9.9/8"]"#,
            r#"["127.0.0.1/32", "10.0.0.0/8"]"#,
        )
        .replace(r#"["80", "443", "80"]"#, r#"["443", "80"]"#)
        .replace(r#"["/b", "/a", "/b"]"#, r#"["/a", "/b"]"#);
    assert_ne!(a, b);
    let ja = ir_to_json(&compile_yaml(a).unwrap()[0]);
    let jb = ir_to_json(&compile_yaml(&b).unwrap()[0]);
    assert_eq!(ja, jb);
    assert!(ja.contains("\"text\": \"10.0.0.0/8\""));
}

#[test]
fn ir_carries_version_identity_and_kinds() {
    use vigil_api::policy::ir::{HookKind, PolicyKind, PolicyMode};
    let yaml = std::fs::read_to_string(fixtures().join("policies/uprobe-return.yaml")).unwrap();
    let ir = &compile_yaml(&yaml).unwrap()[0];
    assert_eq!(ir.ir_version, vigil_api::policy::IR_VERSION);
    let id = ir.identity.as_ref().unwrap();
    assert_eq!(id.name, "libc-calls");
    assert_eq!(id.kind, PolicyKind::Cluster as i32);
    assert_eq!(ir.mode, PolicyMode::Enforce as i32);
    let kinds: Vec<i32> = ir.hooks.iter().map(|h| h.kind).collect();
    assert_eq!(
        kinds,
        vec![
            HookKind::Kretprobe as i32,
            HookKind::Uprobe as i32,
            HookKind::Uprobe as i32
        ]
    );
    let targets: Vec<&str> = ir.hooks.iter().map(|h| h.target.as_str()).collect();
    assert_eq!(targets, ["security_bprm_check", "malloc", "calloc"]);
    let ids: Vec<u32> = ir.hooks.iter().map(|h| h.id).collect();
    assert_eq!(ids, [0, 1, 2]);
}
