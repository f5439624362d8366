//! Fuzzing the policy parser (YAML text → validated, compiled IR): whatever the input, no panic,
//! and every error is one line naming what is accepted.
//!
//! `VIGIL_FUZZ_CASES` sets the cases per target (default 2 000, a deterministic sample run by
//! `make test`); `make fuzz` runs 200 000 per target over this file and
//! `sensor/tests/fuzz_decoders.rs` (over a million in all). `VIGIL_FUZZ_SEED` changes the
//! otherwise fixed seed.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::Value;
use vigil_api::policy::{compile, compile_yaml, parse_value};

const SEEDS: [&str; 5] = [
    include_str!("fixtures/policies/syscall-write.yaml"),
    include_str!("fixtures/policies/network.yaml"),
    include_str!("fixtures/policies/lsm-enforce.yaml"),
    include_str!("fixtures/policies/lists-enforcer.yaml"),
    include_str!("fixtures/policies/uprobe-return.yaml"),
];

fn cases() -> u32 {
    std::env::var("VIGIL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn runner(salt: u8) -> TestRunner {
    let seed: u64 = std::env::var("VIGIL_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(17);
    let mut bytes = [salt; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRunner::new_with_rng(
        Config {
            cases: cases(),
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}

fn check_errors(r: Result<(), vigil_api::policy::PolicyErrors>) {
    if let Err(errors) = r {
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

fn check_text(text: &str) {
    check_errors(compile_yaml(text).map(|_| ()));
}

#[test]
fn arbitrary_text_never_panics() {
    runner(1)
        .run(&proptest::collection::vec(any::<u8>(), 0..400), |b| {
            check_text(&String::from_utf8_lossy(&b));
            Ok(())
        })
        .unwrap();
    println!("policy parser, arbitrary text: {} cases", cases());
}

/// Edits of the example manifests' text: a byte replaced, a span cut, a span duplicated.
#[test]
fn edited_manifests_never_panic() {
    let strategy = (
        0..SEEDS.len(),
        proptest::collection::vec((any::<u16>(), any::<u16>(), 0u8..4, any::<u8>()), 1..6),
    );
    runner(2)
        .run(&strategy, |(seed, edits)| {
            let mut b = SEEDS[seed].as_bytes().to_vec();
            for (at, len, op, byte) in edits {
                if b.is_empty() {
                    break;
                }
                let at = at as usize % b.len();
                let end = (at + len as usize % 64).min(b.len());
                match op {
                    0 => b[at] = byte,
                    1 => {
                        b.drain(at..end);
                    }
                    2 => {
                        let span = b[at..end].to_vec();
                        b.splice(at..at, span);
                    }
                    _ => b.insert(
                        at,
                        [b'\n', b' ', b':', b'-', b'[', b'{', b'&', b'*'][byte as usize % 8],
                    ),
                }
            }
            check_text(&String::from_utf8_lossy(&b));
            Ok(())
        })
        .unwrap();
    println!("policy parser, edited manifests: {} cases", cases());
}

fn random_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        "[a-zA-Z0-9_:/. -]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("kprobes"),
            Just("selectors"),
            Just("matchArgs"),
            Just("Equal"),
            Just("Prefix"),
            Just("In"),
            Just("string"),
            Just("int"),
            Just("file"),
            Just("Sigkill"),
            Just("Override"),
            Just("list:x"),
            Just("-1"),
            Just("0x10"),
            Just("4294967296"),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(m) => m.values().map(count).sum(),
        _ => 0,
    }
}

/// Replaces the `n`-th node (pre-order) of `v` with `new`.
fn replace_nth(v: &mut Value, n: &mut usize, new: &Value) -> bool {
    if *n == 0 {
        *v = new.clone();
        return true;
    }
    *n -= 1;
    match v {
        Value::Array(a) => a.iter_mut().any(|c| replace_nth(c, n, new)),
        Value::Object(m) => m.values_mut().any(|c| replace_nth(c, n, new)),
        _ => false,
    }
}

/// A node of an example manifest replaced by a random value (of any shape).
#[test]
fn structurally_mutated_manifests_never_panic() {
    let seeds: Vec<Value> = SEEDS
        .iter()
        .map(|s| serde_saphyr::from_str(s).unwrap())
        .collect();
    let strategy = (0..seeds.len(), any::<usize>(), random_value());
    runner(3)
        .run(&strategy, |(seed, pick, new)| {
            let mut v = seeds[seed].clone();
            let mut n = pick % count(&v);
            assert!(replace_nth(&mut v, &mut n, &new));
            check_errors(parse_value(v).and_then(|doc| compile(&doc)).map(|_| ()));
            Ok(())
        })
        .unwrap();
    println!("policy parser, mutated structure: {} cases", cases());
}
