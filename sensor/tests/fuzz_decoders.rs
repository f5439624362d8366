//! Fuzzing the sensor's decoders: ring-buffer records (decoded and run through the whole
//! pipeline: process cache, hook event building with real hook metadata) and the policy IR as
//! the operator sends it (protobuf bytes, decoded and lowered for a kernel). Whatever the
//! input, no panic; a record that does not decode is reported as a loss.
//!
//! `VIGIL_FUZZ_CASES` sets the cases per target (default 2 000, the deterministic sample of
//! `make test`); `make fuzz` runs 200 000 per target. `VIGIL_FUZZ_SEED` changes the seed.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use prost::Message;
use serde_json::Value;
use vigil_api::policy::compile_yaml;
use vigil_api::policy::ir::{PolicyIr, ir_to_json};
use vigil_sensor::hooks::lower::{self, KernelInfo, SetIds};
use vigil_sensor::hooks::meta::HookRegistry;
use vigil_sensor::hooks::tracefs::{self, Format};
use vigil_sensor::kernel::clock::BootClock;
use vigil_sensor::output::export::{self, Sinks};
use vigil_sensor::output::metrics::Metrics;
use vigil_sensor::process::builder::EventBuilder;
use vigil_sensor::process::pipeline::Pipeline;
use vigil_sensor_bpf::abi;

const SEEDS: [&str; 9] = [
    include_str!("../../api/tests/fixtures/policies/syscall-write.yaml"),
    include_str!("../../api/tests/fixtures/policies/network.yaml"),
    include_str!("../../api/tests/fixtures/policies/lsm-enforce.yaml"),
    include_str!("../../api/tests/fixtures/policies/lists-enforcer.yaml"),
    include_str!("../../api/tests/fixtures/policies/uprobe-return.yaml"),
    include_str!("../../examples/policies/file-access.yaml"),
    include_str!("../../examples/policies/privileged-exec.yaml"),
    include_str!("../../examples/policies/sigkill-enforce.yaml"),
    include_str!("../../examples/policies/tcp-connect.yaml"),
];

const SYS_ENTER: &str = "ID: 443\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\tfield:long id;\toffset:8;\tsize:8;\tsigned:1;\n\tfield:unsigned long args[6];\toffset:16;\tsize:48;\tsigned:0;\n";

/// A kernel as lowering sees it, with or without kprobes and BPF-LSM.
struct Kernel {
    full: bool,
}

impl KernelInfo for Kernel {
    fn kprobes(&self) -> bool {
        self.full
    }
    fn bpf_lsm(&self) -> bool {
        self.full
    }
    fn kernel_symbol(&self, name: &str) -> bool {
        !name.is_empty() && name.len() < 128
    }
    fn tracepoint(&self, subsystem: &str, event: &str) -> Result<Format, String> {
        match (subsystem, event) {
            ("raw_syscalls", "sys_enter" | "sys_exit") => tracefs::parse(SYS_ENTER),
            ("syscalls", _) => tracefs::parse("ID: 700\n"),
            _ => Err(format!("tracepoint {subsystem}/{event} not found")),
        }
    }
    fn host_namespace(&self, slot: usize) -> u32 {
        4026531830 + slot as u32
    }
}

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

fn seed_irs() -> Vec<PolicyIr> {
    SEEDS
        .iter()
        .flat_map(|s| compile_yaml(s).expect("a valid fixture"))
        .collect()
}

/// A pipeline whose hook registry holds the fixtures' hooks (slots 0.., generation 0), feeding
/// an exporter with no output.
fn pipeline() -> (Pipeline, usize, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let (queue, _writer) = export::start(Sinks::default(), 1 << 16, "n".into(), metrics.clone());
    let builder = EventBuilder {
        node_name: "fuzz".into(),
        clock: BootClock::now(),
        enable_cred: true,
        enable_ns: true,
        host_ns: [7; abi::NS_COUNT],
    };
    let registry = Arc::new(HookRegistry::new());
    let mut slot = 0u32;
    for ir in seed_irs() {
        // Some fixtures use what the sensor cannot lower yet; the others give the metadata.
        let Ok(lowered) = lower::lower(
            &ir,
            &Kernel { full: true },
            &BTreeMap::new(),
            &mut SetIds::default(),
        ) else {
            continue;
        };
        for h in lowered.hooks.into_iter().flatten() {
            registry.set(slot, 0, h.meta);
            slot += 1;
        }
    }
    assert!(slot >= 4, "only {slot} hooks to build events with");
    let p = Pipeline::new(builder, 256, queue, metrics.clone()).with_hooks(registry);
    (p, slot as usize, metrics)
}

fn bytes_of<T: abi::Record>(v: &T) -> Vec<u8> {
    // SAFETY: `abi::Record` types are repr(C) integers with explicit padding fields, so every
    // byte of `v` is initialised; the slice lives only for the copy.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
        .to_vec()
}

/// A record of kind `kind` with plausible fields and `data` behind it, its lengths either
/// consistent or taken from `lens`.
fn record(
    kind: u8,
    pid: u32,
    ktime: u64,
    slot: u32,
    lens: &[u16],
    data: &[u8],
    honest: bool,
) -> Vec<u8> {
    let mut out = match kind % 4 {
        0 => {
            let l = |i: usize| lens.get(i).copied().unwrap_or(0);
            let mut r = abi::Exec {
                pid,
                tid: pid,
                ppid: pid / 2,
                ktime,
                parent_ktime: ktime / 2,
                binary_len: l(0),
                args_len: l(1),
                cwd_len: l(2),
                cgroup_name_len: l(3),
                ..Default::default()
            };
            if honest {
                let n = data.len() as u16;
                (r.binary_len, r.args_len, r.cwd_len, r.cgroup_name_len) =
                    (n / 4, n / 4, n / 4, n - 3 * (n / 4));
            }
            r.hdr.kind = abi::MSG_EXEC;
            bytes_of(&r)
        }
        1 => bytes_of(&abi::Fork {
            hdr: abi::MsgHeader {
                kind: abi::MSG_FORK,
                ..Default::default()
            },
            pid,
            ppid: pid / 2,
            ktime,
            parent_ktime: ktime / 2,
        }),
        2 => bytes_of(&abi::Exit {
            hdr: abi::MsgHeader {
                kind: abi::MSG_EXIT,
                ..Default::default()
            },
            pid,
            ktime,
            exit_code: u32::from(lens.first().copied().unwrap_or(0)),
            ..Default::default()
        }),
        _ => {
            let nargs = lens.len().min(abi::HOOK_ARGS);
            let mut r = abi::HookRec {
                pid,
                tid: pid,
                ktime,
                hook: slot,
                generation: 0,
                actions: 1 << abi::act::POST,
                nargs: nargs as u32,
                ..Default::default()
            };
            r.hdr.kind = abi::MSG_HOOK;
            let mut left = data.len();
            for (i, len) in lens.iter().take(nargs).enumerate() {
                r.arg_kind[i] = (*len % 14) as u8;
                r.arg_aux[i] = u32::from(*len) << 3;
                let want = *len as usize % 300;
                r.arg_len[i] = if honest {
                    let n = want.min(left);
                    left -= n;
                    n as u32
                } else {
                    u32::from(*len)
                };
            }
            if honest {
                // The rest goes to the last argument, so that the lengths add up.
                if let Some(last) = nargs.checked_sub(1) {
                    r.arg_len[last] += left as u32;
                }
            }
            bytes_of(&r)
        }
    };
    out.extend_from_slice(data);
    let size = out.len() as u32;
    out[4..8].copy_from_slice(&size.to_ne_bytes());
    out
}

/// Records built from random parts, then corrupted in a few places: the whole pipeline takes
/// them, one after the other (so the process cache sees exits of execs, hooks of processes, …).
#[test]
fn records_never_panic_the_pipeline() {
    let (p, slots, metrics) = pipeline();
    let p = std::cell::RefCell::new(p);
    let strategy = (
        0u8..5,
        1u32..64,
        0u64..8,
        any::<u16>(),
        proptest::collection::vec(any::<u16>(), 0..7),
        proptest::collection::vec(any::<u8>(), 0..600),
        any::<bool>(),
        proptest::collection::vec((any::<u16>(), any::<u8>()), 0..4),
    );
    runner(4)
        .run(
            &strategy,
            |(kind, pid, ktime, slot, lens, data, honest, flips)| {
                let mut b = if kind == 4 {
                    data.clone()
                } else {
                    record(
                        kind,
                        pid,
                        ktime * 1000,
                        u32::from(slot) % (slots as u32 + 2),
                        &lens,
                        &data,
                        honest,
                    )
                };
                for (at, v) in flips {
                    if !b.is_empty() {
                        let i = at as usize % b.len();
                        b[i] = v;
                    }
                }
                p.borrow_mut().handle_bytes(&b);
                Ok(())
            },
        )
        .unwrap();
    p.borrow_mut().release(std::time::Instant::now());
    // The corruption leaves enough intact that every path was taken, not only the errors.
    let text = vigil_sensor::output::metrics::render(&metrics.registry());
    for series in [
        "vigil_events_total{type=\"process_exec\"}",
        "vigil_events_total{type=\"process_exit\"}",
        "vigil_events_total{type=\"process_kprobe\"}",
        "vigil_decode_errors_total",
        "vigil_hook_records_orphaned_total",
    ] {
        let n: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0);
        assert!(n > 0.0, "no {series} in {} cases", cases());
    }
    println!("record decoder + pipeline: {} cases", cases());
}

fn lower_all(ir: &PolicyIr) {
    for full in [false, true] {
        let _ = lower::lower(
            ir,
            &Kernel { full },
            &BTreeMap::from([("zone".to_string(), "a".to_string())]),
            &mut SetIds::default(),
        );
    }
}

/// Protobuf bytes as the operator could send them: random, or a real IR's bytes edited.
#[test]
fn ir_bytes_never_panic_the_lowering() {
    let seeds: Vec<Vec<u8>> = seed_irs().iter().map(|ir| ir.encode_to_vec()).collect();
    let strategy = (
        0..seeds.len() + 1,
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec((any::<u16>(), any::<u8>(), any::<bool>()), 0..6),
    );
    runner(5)
        .run(&strategy, |(seed, random, edits)| {
            let mut b = seeds.get(seed).cloned().unwrap_or(random);
            for (at, v, insert) in edits {
                let i = at as usize % (b.len() + 1);
                if insert || i == b.len() {
                    b.insert(i, v);
                } else {
                    b[i] = v;
                }
            }
            if let Ok(ir) = PolicyIr::decode(b.as_slice()) {
                lower_all(&ir);
            }
            Ok(())
        })
        .unwrap();
    println!("IR decoder + lowering, bytes: {} cases", cases());
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(m) => m.values().map(count).sum(),
        _ => 0,
    }
}

fn replace_nth(v: &mut Value, n: &mut usize, new: &Value) -> bool {
    if *n == 0 {
        if !v.is_object() && !v.is_array() {
            *v = new.clone();
        }
        return true;
    }
    *n -= 1;
    match v {
        Value::Array(a) => a.iter_mut().any(|c| replace_nth(c, n, new)),
        Value::Object(m) => m.values_mut().any(|c| replace_nth(c, n, new)),
        _ => false,
    }
}

/// A value of a real IR replaced by another of any size or sign (indices, enum numbers, lengths,
/// strings): decoded by the schema, lowered.
#[test]
fn ir_with_out_of_range_values_never_panics_the_lowering() {
    let seeds: Vec<Value> = seed_irs()
        .iter()
        .map(|ir| serde_json::from_str(&ir_to_json(ir)).unwrap())
        .collect();
    let desc = vigil_api::wire::descriptor_pool()
        .unwrap()
        .get_message_by_name("vigil.policy.v1.PolicyIr")
        .unwrap();
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u32>().prop_map(Value::from),
        (0u64..70).prop_map(Value::from),
        any::<bool>().prop_map(Value::Bool),
        "[a-z0-9_/:.]{0,40}".prop_map(Value::String),
        Just(Value::String("x".repeat(5000))),
    ];
    let strategy = (
        0..seeds.len(),
        proptest::collection::vec((any::<usize>(), leaf), 1..4),
    );
    runner(6)
        .run(&strategy, |(seed, edits)| {
            let mut v = seeds[seed].clone();
            for (pick, new) in edits {
                let mut n = pick % count(&v);
                replace_nth(&mut v, &mut n, &new);
            }
            let Ok(msg) = prost_reflect::DynamicMessage::deserialize(desc.clone(), v) else {
                return Ok(());
            };
            if let Ok(ir) = msg.transcode_to::<PolicyIr>() {
                lower_all(&ir);
            }
            Ok(())
        })
        .unwrap();
    println!("IR decoder + lowering, values: {} cases", cases());
}
