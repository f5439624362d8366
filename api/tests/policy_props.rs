//! Property tests: the policy parser/compiler never panics, whatever the input, and every
//! error it reports is one line naming what is accepted. 35 000 + 30 000 + 17 500 + 20 000
//! = 102 500 cases, weighted towards the cheap generators so the suite stays well under a
//! minute in a debug build.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use vigil_api::policy::{compile, compile_yaml, ir_to_json, parse_value};

const BYTES_CASES: u32 = 35_000;
const TOKEN_CASES: u32 = 30_000;
const TEXT_MUTATION_CASES: u32 = 17_500;
const STRUCTURAL_CASES: u32 = 20_000;

/// Full manifests: seeds for structural mutations (applied to the parsed value).
const SEEDS: [&str; 5] = [
    include_str!("fixtures/policies/syscall-write.yaml"),
    include_str!("fixtures/policies/network.yaml"),
    include_str!("fixtures/policies/lsm-enforce.yaml"),
    include_str!("fixtures/policies/lists-enforcer.yaml"),
    include_str!("fixtures/policies/uprobe-return.yaml"),
];

/// Small manifests: seeds for text mutations (YAML parsing cost grows with input size).
const SMALL_SEEDS: [&str; 4] = [
    "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {name: a}\nspec:\n  kprobes:\n  - call: tcp_connect\n    syscall: false\n    args: [{index: 0, type: sock}]\n    selectors: [{matchArgs: [{index: 0, operator: DAddr, values: [\"10.0.0.0/8\"]}], matchActions: [{action: Sigkill}]}]\n",
    "apiVersion: vigil.dev/v1alpha1\nkind: TracingPolicyNamespaced\nmetadata: {name: b, namespace: n}\nspec:\n  lsmhooks: [{hook: file_open, args: [{index: 0, type: file}], selectors: [{matchBinaries: [{operator: In, values: [/bin/cat]}], matchActions: [{action: Override, argError: -1}]}]}]\n",
    "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {name: c}\nspec:\n  lists: [{name: d, type: syscalls, values: [sys_dup]}]\n  tracepoints: [{subsystem: raw_syscalls, event: sys_enter, args: [{index: 4, type: syscall64}], selectors: [{matchArgs: [{index: 0, operator: InMap, values: [\"list:d\"]}]}]}]\n",
    "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {name: e}\nspec:\n  kprobes:\n  - {call: sys_write, return: true, args: [{index: 1, type: char_buf, sizeArgIndex: 3}], returnArg: {index: 0, type: int}, selectors: [{matchReturnArgs: [{index: 0, operator: GT, values: [\"0\"]}]}]}\n",
];

/// Tokens that steer random text towards the policy grammar.
const TOKENS: [&str; 48] = [
    "\n",
    "  ",
    "- ",
    ": ",
    "---\n",
    "{",
    "}",
    "[",
    "]",
    ", ",
    "\"",
    "'",
    "#",
    "&a ",
    "*a",
    "!!str ",
    "apiVersion",
    "cilium.io/v1alpha1",
    "kind",
    "TracingPolicy",
    "TracingPolicyNamespaced",
    "metadata",
    "name",
    "spec",
    "kprobes",
    "call",
    "args",
    "index",
    "type",
    "selectors",
    "matchArgs",
    "operator",
    "values",
    "matchActions",
    "action",
    "Override",
    "argError",
    "DAddr",
    "10.0.0.0/8",
    "InRange",
    "1:2",
    "list:x",
    "lists",
    "sock",
    "-1",
    "0x1f",
    "18446744073709551616",
    "${X}",
];

const VALUES: [&str; 24] = [
    "",
    "0",
    "-1",
    "4294967296",
    "0x",
    "0xffffffffffffffff",
    "18446744073709551616",
    "1:0",
    "::1/129",
    "10.0.0.0/8",
    "list:",
    "list:dups",
    "${PODCIDR}",
    "CAP_SYS_ADMIN",
    "host_ns",
    "IPPROTO_UDP",
    "AF_INET",
    "TCP_LISTEN",
    "Equal",
    "Post",
    "sys_dup",
    "/",
    "\u{0}",
    "é",
];

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// The invariant every input must satisfy.
fn check(input: &str) {
    match compile_yaml(input) {
        Ok(irs) => {
            for ir in &irs {
                assert_eq!(ir.ir_version, vigil_api::policy::IR_VERSION);
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in errors.iter() {
                let line = e.to_string();
                assert!(!line.contains('\n'), "multi-line error: {line:?}");
                assert!(
                    line.contains("accepted: "),
                    "error without accepted values: {line}"
                );
            }
        }
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut runner = TestRunner::new(config(BYTES_CASES));
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..160), |bytes| {
            check(&String::from_utf8_lossy(&bytes));
            Ok(())
        })
        .unwrap();
}

#[test]
fn token_soup_never_panics() {
    let mut runner = TestRunner::new(config(TOKEN_CASES));
    let token = proptest::sample::select(TOKENS.to_vec());
    runner
        .run(&proptest::collection::vec(token, 0..32), |tokens| {
            check(&tokens.concat());
            Ok(())
        })
        .unwrap();
}

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, &'static str),
    DuplicateLine(usize),
    DropLine(usize),
}

fn apply(seed: &str, edits: &[Edit]) -> String {
    let mut s: Vec<char> = seed.chars().collect();
    for e in edits {
        let n = s.len().max(1);
        match *e {
            Edit::Delete(at, len) => {
                let at = at % n;
                let end = (at + len % 16).min(s.len());
                if at < s.len() {
                    s.drain(at..end);
                }
            }
            Edit::Insert(at, t) => {
                let at = (at % n).min(s.len());
                s.splice(at..at, t.chars());
            }
            Edit::DuplicateLine(l) | Edit::DropLine(l) => {
                let text: String = s.iter().collect();
                let mut lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    let i = l % lines.len();
                    if matches!(e, Edit::DuplicateLine(_)) {
                        lines.insert(i, lines[i]);
                    } else {
                        lines.remove(i);
                    }
                }
                s = lines.join("\n").chars().collect();
            }
        }
    }
    s.into_iter().collect()
}

#[test]
fn text_mutations_of_valid_manifests_never_panic() {
    let mut runner = TestRunner::new(config(TEXT_MUTATION_CASES));
    let edit = prop_oneof![
        (any::<usize>(), any::<usize>()).prop_map(|(a, l)| Edit::Delete(a, l)),
        (any::<usize>(), proptest::sample::select(TOKENS.to_vec()))
            .prop_map(|(a, t)| Edit::Insert(a, t)),
        (any::<usize>(), proptest::sample::select(VALUES.to_vec()))
            .prop_map(|(a, t)| Edit::Insert(a, t)),
        any::<usize>().prop_map(Edit::DuplicateLine),
        any::<usize>().prop_map(Edit::DropLine),
    ];
    runner
        .run(
            &(0..SMALL_SEEDS.len(), proptest::collection::vec(edit, 1..4)),
            |(seed, edits)| {
                check(&apply(SMALL_SEEDS[seed], &edits));
                Ok(())
            },
        )
        .unwrap();
}

fn random_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        proptest::sample::select(VALUES.to_vec()).prop_map(|s| Value::String(s.to_string())),
        proptest::sample::select(TOKENS.to_vec()).prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(TOKENS.to_vec()), inner), 0..3)
                .prop_map(|kv| Value::Object(
                    kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
        ]
    })
}

/// Replace the `pick`-th node (pre-order) of `v` with `new`; returns nodes visited.
fn replace_node(v: &mut Value, pick: usize, new: &Value, seen: &mut usize) -> bool {
    if *seen == pick {
        *v = new.clone();
        return true;
    }
    *seen += 1;
    match v {
        Value::Array(a) => a.iter_mut().any(|x| replace_node(x, pick, new, seen)),
        Value::Object(m) => m.values_mut().any(|x| replace_node(x, pick, new, seen)),
        _ => false,
    }
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count_nodes).sum(),
        Value::Object(m) => m.values().map(count_nodes).sum(),
        _ => 0,
    }
}

#[test]
fn structural_mutations_of_valid_manifests_never_panic() {
    let seeds: Vec<Value> = SEEDS
        .iter()
        .map(|s| serde_saphyr::from_str::<Value>(s).unwrap())
        .collect();
    let mut runner = TestRunner::new(config(STRUCTURAL_CASES));
    runner
        .run(
            &(
                0..seeds.len(),
                any::<usize>(),
                random_value(),
                any::<bool>(),
            ),
            |(seed, pick, new, twice)| {
                let mut v = seeds[seed].clone();
                let n = count_nodes(&v);
                replace_node(&mut v, pick % n, &new, &mut 0);
                if twice {
                    let m = count_nodes(&v);
                    replace_node(&mut v, pick.rotate_left(7) % m, &new, &mut 0);
                }
                // Straight into the value parser (what the operator calls), no YAML in between.
                match parse_value(v).and_then(|doc| compile(&doc).map(|ir| (doc, ir))) {
                    Ok((doc, ir)) => {
                        // Deterministic output.
                        prop_assert_eq!(ir_to_json(&ir), ir_to_json(&compile(&doc).unwrap()));
                    }
                    Err(errors) => {
                        for e in errors.iter() {
                            let line = e.to_string();
                            prop_assert!(!line.contains('\n'), "multi-line error: {:?}", line);
                            prop_assert!(
                                line.contains("accepted: "),
                                "no accepted values: {}",
                                line
                            );
                        }
                    }
                }
                Ok(())
            },
        )
        .unwrap();
}

// The brief asks for at least 100 000 cases; checked at compile time.
const _: () =
    assert!(BYTES_CASES + TOKEN_CASES + TEXT_MUTATION_CASES + STRUCTURAL_CASES >= 100_000);
