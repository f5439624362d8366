//! Helpers shared by the evaluator tests: small policies from YAML, calls built directly.
#![allow(dead_code)]

use vigil_api::policy::compile_yaml;
use vigil_api::policy::eval::{ArgView, EventView, HookPoint, Outcome, ProcView, Verdict, verdict};
use vigil_api::policy::ir::PolicyIr;

/// The one policy of `yaml` (panics with the errors when it does not compile).
pub fn policy(yaml: &str) -> PolicyIr {
    compile_yaml(yaml)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
        .remove(0)
}

/// A policy with one kprobe on `fn_x` reading `args` (YAML flow list) with `selectors`.
pub fn kprobe(args: &str, selectors: &str) -> PolicyIr {
    policy(&format!(
        "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {{name: t}}
spec:
  kprobes:
  - call: fn_x
    syscall: false
    args: {args}
    selectors: {selectors}
"
    ))
}

/// A policy whose only selector has one matchArgs filter on argument 0 of type `ty`.
pub fn arg_filter(ty: &str, op: &str, values: &[&str]) -> PolicyIr {
    let values: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    kprobe(
        &format!("[{{index: 0, type: {ty}}}]"),
        &format!(
            "[{{matchArgs: [{{index: 0, operator: {op}, values: [{}]}}]}}]",
            values.join(", ")
        ),
    )
}

pub fn proc(pid: u32, binary: &str) -> ProcView {
    ProcView {
        pid: Some(pid),
        tid: Some(pid),
        binary: Some(binary.into()),
        in_container: Some(false),
        ..Default::default()
    }
}

/// A call of `fn_x` by pid 100 (`/usr/bin/cat`, child of pid 1 `/sbin/init`).
pub fn call(args: Vec<ArgView>) -> EventView {
    EventView {
        point: HookPoint::Kprobe {
            function: "fn_x".into(),
        },
        process: Some(proc(100, "/usr/bin/cat")),
        ancestors: vec![proc(1, "/sbin/init")],
        args,
        ..Default::default()
    }
}

pub fn eval(ir: &PolicyIr, ev: &EventView) -> Verdict {
    verdict(ir, ev).unwrap()
}

/// The outcome in short: `match 0` (selector), `match -` (no selectors), `no-match`,
/// `unknown`, `no-hook`, `out-of-scope`.
pub fn outcome(ir: &PolicyIr, ev: &EventView) -> String {
    match eval(ir, ev).outcome {
        Outcome::Match(m) => format!(
            "match {}",
            m.selector.map_or("-".to_string(), |s| s.to_string())
        ),
        o => o.name().to_string(),
    }
}

/// Whether the one-filter policy `ir` matches a call with argument `v`; panics when the
/// evaluator cannot decide.
pub fn hit(ir: &PolicyIr, v: ArgView) -> bool {
    match outcome(ir, &call(vec![v.clone()])).as_str() {
        "match 0" => true,
        "no-match" => false,
        other => panic!("{other} for {v:?}: {:?}", eval(ir, &call(vec![v.clone()]))),
    }
}

/// The unknown reasons of a verdict (panics when it is decided).
pub fn unknown(ir: &PolicyIr, ev: &EventView) -> String {
    match eval(ir, ev).outcome {
        Outcome::Unknown { reasons, .. } => reasons.join("; "),
        o => panic!("decided: {o:?}"),
    }
}
