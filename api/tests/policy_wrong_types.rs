//! Every field with the wrong type: each node of the example manifests is replaced, in turn, by
//! values of every other JSON type (but null, which YAML reads as "not given"). The policy is rejected with an error that names that node's
//! path (or one below it), or accepted when the value converts (a number where a string is
//! expected); never a panic, never an error elsewhere.

use serde_json::{Value, json};
use vigil_api::policy::{compile, parse_value};

const SEEDS: [(&str, &str); 5] = [
    (
        "syscall-write",
        include_str!("fixtures/policies/syscall-write.yaml"),
    ),
    ("network", include_str!("fixtures/policies/network.yaml")),
    (
        "lsm-enforce",
        include_str!("fixtures/policies/lsm-enforce.yaml"),
    ),
    (
        "lists-enforcer",
        include_str!("fixtures/policies/lists-enforcer.yaml"),
    ),
    (
        "uprobe-return",
        include_str!("fixtures/policies/uprobe-return.yaml"),
    ),
];

/// Every node below the top, with its path in the validator's notation.
fn paths(v: &Value, at: String, out: &mut Vec<(String, Vec<PathStep>)>, steps: Vec<PathStep>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let p = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                let mut s = steps.clone();
                s.push(PathStep::Key(k.clone()));
                out.push((p.clone(), s.clone()));
                paths(c, p, out, s);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                let p = format!("{at}[{i}]");
                let mut s = steps.clone();
                s.push(PathStep::Index(i));
                out.push((p.clone(), s.clone()));
                paths(c, p, out, s);
            }
        }
        _ => {}
    }
}

#[derive(Clone, Debug)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn at_mut<'a>(v: &'a mut Value, steps: &[PathStep]) -> &'a mut Value {
    steps.iter().fold(v, |v, s| match s {
        PathStep::Key(k) => &mut v[k.as_str()],
        PathStep::Index(i) => &mut v[*i],
    })
}

fn kind(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

#[test]
fn every_field_with_the_wrong_type_is_rejected_naming_its_path() {
    // null is not among them: in YAML it means "not given", and a missing field is reported
    // where it matters (a selector naming an argument that is no longer declared, …).
    let wrong = [
        json!(true),
        json!(7),
        json!("x-wrong"),
        json!([1, "a"]),
        json!({"bogus": 1}),
    ];
    let mut rejected = 0;
    let mut accepted = 0;
    let mut failures = Vec::new();
    for (name, text) in SEEDS {
        let seed: Value = serde_saphyr::from_str(text).unwrap();
        let mut nodes = Vec::new();
        paths(&seed, String::new(), &mut nodes, Vec::new());
        for (path, steps) in nodes {
            // The identity of the document is checked elsewhere; a wrong kind is another story.
            if path == "apiVersion" || path == "kind" {
                continue;
            }
            for w in &wrong {
                let mut v = seed.clone();
                let node = at_mut(&mut v, &steps);
                if kind(node) == kind(w) {
                    continue;
                }
                *node = w.clone();
                let result = parse_value(v.clone()).and_then(|doc| compile(&doc));
                match result {
                    Ok(_) => accepted += 1,
                    Err(errors) => {
                        rejected += 1;
                        let named = errors.iter().any(|e| {
                            let p = e.path();
                            p == path
                                || p.starts_with(&format!("{path}."))
                                || p.starts_with(&format!("{path}["))
                        });
                        if !named {
                            failures.push(format!(
                                "{name}: {path} = {w}: no error names the path: {}",
                                errors.to_string().replace('\n', " | ")
                            ));
                        }
                        for e in errors.iter() {
                            assert!(!e.to_string().contains('\n'), "{e}");
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n{} failures",
        failures.join("\n"),
        failures.len()
    );
    assert!(rejected > 500, "{rejected} rejected, {accepted} accepted");
    println!("{rejected} wrong-typed fields rejected with their path, {accepted} converted");
}
