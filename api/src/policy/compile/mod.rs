//! Semantic validation and lowering: parsed TracingPolicy types ([`TracingPolicyDoc`]) flow in,
//! the policy IR ([`ir::PolicyIr`]) flows out. One pass does both, so `validate` and `compile` agree.
//!
//! All errors are collected. The pass is split by concern:
//! - `value_sets`: `spec.lists` and string sets; `options`: `spec.options`, `spec.enforcers`;
//! - `hooks`: kprobes, tracepoints, uprobes, LSM hooks; `arguments`: `args`, `returnArg`;
//! - `arg_types`: argument type groups and the operators each accepts;
//! - `selectors`: macro expansion and selector assembly, with `process_filters` (PIDs,
//!   binaries, namespaces, capabilities), `match_args` (argument values) and `actions`;
//! - `scope`: the workload scope (label selectors).

mod actions;
mod arg_types;
mod arguments;
mod hooks;
mod match_args;
mod options;
mod process_filters;
mod scope;
mod selectors;
mod value_sets;

use std::collections::BTreeMap;

use super::ir;
use super::limits::*;
use super::parse::{PolicyKind, TracingPolicyDoc};
use super::schema::quote;
use super::types::*;
use super::{PolicyError, PolicyErrors};

use value_sets::ListInfo;

const TEMPLATE_HINT: &str =
    "a literal value (substitute template variables before loading, e.g. with envsubst)";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum HookClass {
    Kprobe,
    Syscall,
    Tracepoint,
    Uprobe,
    Lsm,
}

impl HookClass {
    fn name(self) -> &'static str {
        match self {
            HookClass::Kprobe => "kprobe",
            HookClass::Syscall => "syscall kprobe",
            HookClass::Tracepoint => "tracepoint",
            HookClass::Uprobe => "uprobe",
            HookClass::Lsm => "LSM hook",
        }
    }
}

struct HookCx {
    class: HookClass,
    args: BTreeMap<u32, ArgTypeName>,
    /// Tracepoints: matchArgs.index is a position in `args`; this maps it to the field index.
    positions: Option<Vec<u32>>,
    ret: Option<ArgTypeName>,
    return_probe: bool,
}

struct Cx<'a> {
    spec: &'a TracingPolicySpec,
    errs: PolicyErrors,
    lists: BTreeMap<String, ListInfo>,
}

pub(crate) fn compile(doc: &TracingPolicyDoc) -> Result<ir::PolicyIr, PolicyErrors> {
    let spec = &doc.spec;
    let mut cx = Cx {
        spec,
        errs: PolicyErrors::default(),
        lists: BTreeMap::new(),
    };
    let mut unsupported_top = false;
    if spec.loader {
        unsupported_top = true;
        cx.err(PolicyError::not_supported(
            "spec.loader",
            "loader events (spec.loader)",
            "remove `loader` (process_exec events already report every executed binary)",
        ));
    }
    if spec.usdts.is_some() {
        unsupported_top = true;
        cx.err(PolicyError::not_supported(
            "spec.usdts",
            "USDT probes (spec.usdts)",
            "kprobes, tracepoints, uprobes, lsmhooks",
        ));
    }
    if spec.fentries.is_some() {
        unsupported_top = true;
        cx.err(PolicyError::not_supported(
            "spec.fentries",
            "fentry hooks (spec.fentries)",
            "kprobes (the sensor picks fentry itself where the kernel allows)",
        ));
    }
    cx.lists();
    let (mode, hints) = cx.options();
    let enforcers = cx.enforcers();
    cx.macros();

    let mut hooks: Vec<ir::Hook> = Vec::new();
    for (i, k) in spec.kprobes.iter().enumerate() {
        cx.kprobe(&format!("spec.kprobes[{i}]"), k, &mut hooks);
    }
    for (i, t) in spec.tracepoints.iter().enumerate() {
        cx.tracepoint(&format!("spec.tracepoints[{i}]"), t, &mut hooks);
    }
    for (i, u) in spec.uprobes.iter().enumerate() {
        cx.uprobe(&format!("spec.uprobes[{i}]"), u, &mut hooks);
    }
    for (i, l) in spec.lsmhooks.iter().enumerate() {
        cx.lsm(&format!("spec.lsmhooks[{i}]"), l, &mut hooks);
    }
    let declared =
        spec.kprobes.len() + spec.tracepoints.len() + spec.uprobes.len() + spec.lsmhooks.len();
    if declared == 0 && !unsupported_top {
        cx.err(PolicyError::MissingField {
            path: "spec".into(),
            accepted: "at least one hook in kprobes, tracepoints, uprobes or lsmhooks".into(),
        });
    }
    if hooks.len() > MAX_HOOKS {
        cx.err(PolicyError::over_limit(
            "spec",
            format!("{} hooks after list expansion", hooks.len()),
            format!("at most {MAX_HOOKS} hooks per policy"),
        ));
    }
    cx.duplicate_hooks(&hooks);
    for (i, h) in hooks.iter_mut().enumerate() {
        h.id = u32::try_from(i).unwrap_or(u32::MAX);
    }
    let scope = cx.scope(doc);
    // The rollout plan is the operator's, not the IR's; a bad one rejects the policy all the
    // same, so that `vigil policy validate` catches it before a cluster does.
    if let Err(e) = super::rollout::rollout_plan(&doc.metadata.annotations) {
        cx.err(e);
    }
    let cpu_budget = super::budget::cpu_budget(&doc.metadata.annotations).unwrap_or_else(|e| {
        cx.err(e);
        None
    });
    let Cx { errs, .. } = cx;
    errs.into_result(ir::PolicyIr {
        ir_version: ir::IR_VERSION,
        identity: Some(ir::PolicyIdentity {
            name: doc.metadata.name.clone(),
            namespace: doc.metadata.namespace.clone().unwrap_or_default(),
            kind: match doc.kind {
                PolicyKind::Cluster => ir::PolicyKind::Cluster,
                PolicyKind::Namespaced => ir::PolicyKind::Namespaced,
            } as i32,
            source_api_version: doc.api_version.clone(),
        }),
        mode: mode as i32,
        scope: Some(scope),
        hooks,
        enforcers,
        hints: Some(hints),
        cpu_budget,
    })
}

impl Cx<'_> {
    fn err(&mut self, e: PolicyError) {
        self.errs.push(e);
    }

    fn check_text(&mut self, path: &str, s: &str, max: usize, what: &str) {
        if s.chars().count() > max {
            self.err(PolicyError::over_limit(
                path,
                format!("{} ({} characters)", quote(s), s.chars().count()),
                format!("{what} has at most {max} characters"),
            ));
        }
        if s.chars().any(char::is_control) {
            self.err(PolicyError::invalid(
                path,
                quote(s),
                "contains control characters",
                format!("{what} without control characters"),
            ));
        }
    }

    fn message_and_tags(&mut self, path: &str, message: &str, tags: &[String]) {
        self.check_text(
            &format!("{path}.message"),
            message,
            MAX_MESSAGE_LEN,
            "a message",
        );
        if tags.len() > MAX_TAGS {
            self.err(PolicyError::over_limit(
                format!("{path}.tags"),
                format!("{} tags", tags.len()),
                format!("at most {MAX_TAGS} tags per hook"),
            ));
        }
        for (i, t) in tags.iter().enumerate() {
            let p = format!("{path}.tags[{i}]");
            if t.is_empty() {
                self.err(PolicyError::invalid(
                    p,
                    "\"\"",
                    "empty tag",
                    "a non-empty string",
                ));
            } else {
                self.check_text(&p, t, MAX_TAG_LEN, "a tag");
            }
        }
    }
}
