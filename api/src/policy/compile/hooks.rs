//! Hooks: kprobes (incl. syscalls and list expansion), tracepoints, uprobes and LSM hooks,
//! and the duplicate-hook check across them.

use std::collections::{BTreeMap, BTreeSet};

use crate::policy::PolicyError;
use crate::policy::ir;
use crate::policy::limits::*;
use crate::policy::schema::{quote, suggest};
use crate::policy::types::*;
use crate::policy::values::*;

use super::{Cx, HookClass, HookCx, TEMPLATE_HINT};

const SYSCALL_PREFIXES: [&str; 6] = [
    "__x64_sys_",
    "__ia32_sys_",
    "__arm64_sys_",
    "__se_sys_",
    "__do_sys_",
    "sys_",
];

fn syscall_name(call: &str) -> String {
    for p in SYSCALL_PREFIXES {
        if let Some(rest) = call.strip_prefix(p) {
            return rest.to_string();
        }
    }
    call.to_string()
}

impl Cx<'_> {
    fn symbol(&mut self, path: &str, s: &str, what: &str, extra: &[u8]) -> bool {
        if is_template(s) {
            self.err(PolicyError::not_supported(
                path,
                format!("template variable in {}", quote(s)),
                TEMPLATE_HINT,
            ));
            return false;
        }
        if s.len() > MAX_SYMBOL_LEN {
            self.err(PolicyError::over_limit(
                path,
                format!("{} ({} characters)", quote(s), s.len()),
                format!("a {what} has at most {MAX_SYMBOL_LEN} characters"),
            ));
            return false;
        }
        if !is_identifier(s, extra) {
            self.err(PolicyError::invalid(
                path,
                quote(s),
                format!("not a valid {what}"),
                format!("a {what}: letters, digits and '_', not starting with a digit"),
            ));
            return false;
        }
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn base_hook(
        &self,
        kind: ir::HookKind,
        source: &str,
        args: &[ir::ArgSpec],
        selectors: &[ir::Selector],
        message: &str,
        tags: &[String],
    ) -> ir::Hook {
        ir::Hook {
            kind: kind as i32,
            source: source.to_string(),
            args: args.to_vec(),
            selectors: selectors.to_vec(),
            message: message.to_string(),
            tags: tags.to_vec(),
            ..Default::default()
        }
    }

    pub(super) fn kprobe(&mut self, path: &str, k: &KProbeSpec, hooks: &mut Vec<ir::Hook>) {
        let before = self.errs.len();
        let (targets, generated, syscall) = self.kprobe_targets(path, k);
        if k.data.is_some() {
            self.err(PolicyError::not_supported(
                format!("{path}.data"),
                "extra data capture (data)",
                "args",
            ));
        }
        self.message_and_tags(path, &k.message, &k.tags);
        let class = if syscall {
            HookClass::Syscall
        } else {
            HookClass::Kprobe
        };
        let (args, types) = self.args(path, &k.args, MAX_FUNC_ARG_INDEX, class);
        let ret = self.return_arg(path, k.return_arg.as_ref(), k.r#return, class);
        let ret_action = self.return_arg_action(path, k);
        let hcx = HookCx {
            class,
            args: types,
            positions: None,
            ret: k
                .return_arg
                .as_ref()
                .filter(|_| k.r#return)
                .map(|r| r.r#type),
            return_probe: k.r#return,
        };
        let selectors = self.selectors(path, &k.selectors, &hcx);
        if self.errs.len() != before {
            return;
        }
        let kind = if syscall {
            ir::HookKind::Syscall
        } else if k.r#return {
            ir::HookKind::Kretprobe
        } else {
            ir::HookKind::Kprobe
        };
        let make = |cx: &Self, target: String| {
            let mut h = cx.base_hook(kind, path, &args, &selectors, &k.message, &k.tags);
            if syscall && !target.is_empty() {
                h.syscall_name = syscall_name(&target);
            }
            h.target = target;
            h.syscall = syscall;
            h.return_probe = k.r#return;
            h.ignore_call_not_found = k.ignore.as_ref().is_some_and(|i| i.call_not_found);
            h.return_arg = ret.clone();
            h.return_arg_action = ret_action as i32;
            h
        };
        if let Some(g) = generated {
            let mut h = make(self, String::new());
            h.generated = Some(g);
            hooks.push(h);
        }
        for t in targets {
            let h = make(self, t);
            hooks.push(h);
        }
    }

    /// Resolve `call` (a function name or `list:NAME`) to the hook's targets: explicit names,
    /// or a list the sensor generates from the node's kernel. Also decides `syscall`.
    fn kprobe_targets(
        &mut self,
        path: &str,
        k: &KProbeSpec,
    ) -> (Vec<String>, Option<ir::GeneratedTargets>, bool) {
        // Targets: (name, generated)
        let mut targets: Vec<String> = Vec::new();
        let mut generated: Option<ir::GeneratedTargets> = None;
        let mut syscall = k.syscall;
        let cp = format!("{path}.call");
        if let Some(name) = k.call.strip_prefix("list:") {
            let info = self
                .lists
                .get(name)
                .map(|l| (l.kind, l.values.clone(), l.pattern.clone()));
            match info {
                None => {
                    let names = self.list_names();
                    self.err(PolicyError::invalid(
                        cp.clone(),
                        quote(&k.call),
                        format!(
                            "unknown list{}",
                            suggest(name, self.lists.keys().map(String::as_str))
                        ),
                        names,
                    ));
                }
                Some((lkind, lvalues, lpattern)) => match lkind {
                    Some(ListTypeName::Syscalls) | Some(ListTypeName::GeneratedSyscalls) => {
                        if !k.syscall {
                            self.err(PolicyError::invalid(
                                format!("{path}.syscall"),
                                "false",
                                format!("list {name} holds syscalls"),
                                "true (or omit it)",
                            ));
                        }
                        syscall = true;
                        if lkind == Some(ListTypeName::GeneratedSyscalls) {
                            generated = Some(ir::GeneratedTargets {
                                kind: ir::GeneratedKind::Syscalls as i32,
                                pattern: String::new(),
                                list_name: name.to_string(),
                            });
                        } else {
                            targets = lvalues.clone();
                        }
                    }
                    Some(ListTypeName::GeneratedFtrace) => {
                        syscall = false;
                        generated = Some(ir::GeneratedTargets {
                            kind: ir::GeneratedKind::Ftrace as i32,
                            pattern: lpattern.clone(),
                            list_name: name.to_string(),
                        });
                    }
                    None => {
                        syscall = false;
                        targets = lvalues.clone();
                    }
                },
            }
        } else if self.symbol(&cp, &k.call, "kernel function name", b".") {
            targets.push(k.call.clone());
        } else if k.call.is_empty() {
            // reported by symbol()
        }
        (targets, generated, syscall)
    }

    /// `returnArgAction` needs a return probe with a returnArg (of type sock for Track/UntrackSock).
    fn return_arg_action(&mut self, path: &str, k: &KProbeSpec) -> ir::ReturnArgAction {
        match k.return_arg_action {
            None => ir::ReturnArgAction::Unspecified,
            Some(a) => {
                let needs_sock = matches!(
                    a,
                    ReturnArgActionName::TrackSock | ReturnArgActionName::UntrackSock
                );
                let ret_ty = k.return_arg.as_ref().map(|r| r.r#type);
                if !k.r#return || ret_ty.is_none() {
                    self.err(PolicyError::invalid(
                        format!("{path}.returnArgAction"),
                        format!("{a:?}"),
                        "returnArgAction needs `return: true` and a returnArg",
                        "set return: true and returnArg, or remove returnArgAction",
                    ));
                } else if needs_sock && ret_ty != Some(ArgTypeName::Sock) {
                    self.err(PolicyError::invalid(
                        format!("{path}.returnArgAction"),
                        format!("{a:?}"),
                        "TrackSock/UntrackSock need a returnArg of type sock",
                        "Post (or change returnArg.type to sock)",
                    ));
                }
                match a {
                    ReturnArgActionName::Post => ir::ReturnArgAction::Post,
                    ReturnArgActionName::TrackSock => ir::ReturnArgAction::TrackSock,
                    ReturnArgActionName::UntrackSock => ir::ReturnArgAction::UntrackSock,
                }
            }
        }
    }

    pub(super) fn tracepoint(&mut self, path: &str, t: &TracepointSpec, hooks: &mut Vec<ir::Hook>) {
        let before = self.errs.len();
        self.symbol(
            &format!("{path}.subsystem"),
            &t.subsystem,
            "tracepoint subsystem",
            b"",
        );
        self.symbol(&format!("{path}.event"), &t.event, "tracepoint event", b"");
        self.message_and_tags(path, &t.message, &t.tags);
        let (args, types) = self.args(
            path,
            &t.args,
            MAX_TRACEPOINT_ARG_INDEX,
            HookClass::Tracepoint,
        );
        let hcx = HookCx {
            class: HookClass::Tracepoint,
            args: types,
            positions: Some(t.args.iter().map(|a| a.index).collect()),
            ret: None,
            return_probe: false,
        };
        let selectors = self.selectors(path, &t.selectors, &hcx);
        if self.errs.len() != before {
            return;
        }
        let kind = if t.raw {
            ir::HookKind::RawTracepoint
        } else {
            ir::HookKind::Tracepoint
        };
        let mut h = self.base_hook(kind, path, &args, &selectors, &t.message, &t.tags);
        h.target = t.event.clone();
        h.subsystem = t.subsystem.clone();
        hooks.push(h);
    }

    pub(super) fn uprobe(&mut self, path: &str, u: &UProbeSpec, hooks: &mut Vec<ir::Hook>) {
        let before = self.errs.len();
        let points = self.uprobe_attach_points(path, u);
        if u.data.is_some() {
            self.err(PolicyError::not_supported(
                format!("{path}.data"),
                "extra data capture (data)",
                "args",
            ));
        }
        self.message_and_tags(path, &u.message, &u.tags);
        let (args, types) = self.args(path, &u.args, MAX_FUNC_ARG_INDEX, HookClass::Uprobe);
        let ret = self.return_arg(path, u.return_arg.as_ref(), u.r#return, HookClass::Uprobe);
        let hcx = HookCx {
            class: HookClass::Uprobe,
            args: types,
            positions: None,
            ret: u
                .return_arg
                .as_ref()
                .filter(|_| u.r#return)
                .map(|r| r.r#type),
            return_probe: u.r#return,
        };
        let selectors = self.selectors(path, &u.selectors, &hcx);
        if self.errs.len() != before {
            return;
        }
        for i in 0..points {
            let mut h = self.base_hook(
                ir::HookKind::Uprobe,
                path,
                &args,
                &selectors,
                &u.message,
                &u.tags,
            );
            h.binary_path = u.path.clone();
            h.target = u.symbols.get(i).cloned().unwrap_or_default();
            h.offset = u.offsets.get(i).copied().unwrap_or_default();
            h.ref_ctr_offset = u.ref_ctr_offsets.get(i).copied().unwrap_or_default();
            h.return_probe = u.r#return;
            h.return_arg = ret.clone();
            hooks.push(h);
        }
    }

    /// Check the binary path and the attach points (symbols, offsets, refCtrOffsets); returns
    /// the number of attach points.
    fn uprobe_attach_points(&mut self, path: &str, u: &UProbeSpec) -> usize {
        let pp = format!("{path}.path");
        if is_template(&u.path) {
            self.err(PolicyError::not_supported(
                pp,
                format!("template variable in {}", quote(&u.path)),
                TEMPLATE_HINT,
            ));
        } else if !u.path.starts_with('/') || u.path.contains('\0') {
            self.err(PolicyError::invalid(
                pp,
                quote(&u.path),
                "not an absolute path",
                "an absolute path such as /usr/lib/libc.so.6",
            ));
        } else if u.path.len() > MAX_PATH_LEN {
            self.err(PolicyError::over_limit(
                pp,
                format!("{} bytes", u.path.len()),
                format!("a path has at most {MAX_PATH_LEN} bytes"),
            ));
        }
        if u.symbols.is_empty() && u.offsets.is_empty() {
            self.err(PolicyError::MissingField {
                path: format!("{path}.symbols"),
                accepted: "a non-empty list of symbol names (or offsets)".into(),
            });
        }
        if !u.symbols.is_empty() && !u.offsets.is_empty() && u.symbols.len() != u.offsets.len() {
            self.err(PolicyError::invalid(
                format!("{path}.offsets"),
                format!(
                    "{} offsets for {} symbols",
                    u.offsets.len(),
                    u.symbols.len()
                ),
                "with symbols, offsets pair up with them one to one",
                "as many offsets as symbols, or no offsets",
            ));
        }
        let points = u.symbols.len().max(u.offsets.len());
        if !u.ref_ctr_offsets.is_empty() && u.ref_ctr_offsets.len() != points {
            self.err(PolicyError::invalid(
                format!("{path}.refCtrOffsets"),
                format!(
                    "{} refCtrOffsets for {points} attach points",
                    u.ref_ctr_offsets.len()
                ),
                "refCtrOffsets pair up with the attach points one to one",
                "as many refCtrOffsets as symbols/offsets, or none",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, s) in u.symbols.iter().enumerate() {
            let sp = format!("{path}.symbols[{i}]");
            if s.is_empty()
                || s.len() > MAX_UPROBE_SYMBOL_LEN
                || s.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                self.err(PolicyError::invalid(
                    sp,
                    quote(s),
                    "not a symbol name",
                    format!(
                        "a symbol name without spaces, at most {MAX_UPROBE_SYMBOL_LEN} characters"
                    ),
                ));
            } else if !seen.insert(s.as_str()) {
                self.err(PolicyError::invalid(
                    sp,
                    quote(s),
                    "duplicate symbol",
                    "each symbol once",
                ));
            }
        }
        points
    }

    pub(super) fn lsm(&mut self, path: &str, l: &LsmHookSpec, hooks: &mut Vec<ir::Hook>) {
        let before = self.errs.len();
        let hp = format!("{path}.hook");
        if let Some(rest) = l.hook.strip_prefix("security_") {
            self.err(PolicyError::invalid(
                hp,
                quote(&l.hook),
                "LSM hooks are named without the security_ prefix",
                format!("{rest:?}"),
            ));
        } else {
            self.symbol(&hp, &l.hook, "LSM hook name", b"");
        }
        self.message_and_tags(path, &l.message, &l.tags);
        let (args, types) = self.args(path, &l.args, MAX_FUNC_ARG_INDEX, HookClass::Lsm);
        let hcx = HookCx {
            class: HookClass::Lsm,
            args: types,
            positions: None,
            ret: None,
            return_probe: false,
        };
        let selectors = self.selectors(path, &l.selectors, &hcx);
        if self.errs.len() != before {
            return;
        }
        let mut h = self.base_hook(
            ir::HookKind::Lsm,
            path,
            &args,
            &selectors,
            &l.message,
            &l.tags,
        );
        h.target = l.hook.clone();
        hooks.push(h);
    }

    pub(super) fn duplicate_hooks(&mut self, hooks: &[ir::Hook]) {
        let mut seen: BTreeMap<(i32, String, String, String, u64, String), String> =
            BTreeMap::new();
        for h in hooks {
            // kprobes and kretprobes of one function collide too: merge their selectors.
            let kind = if h.kind == ir::HookKind::Kretprobe as i32 {
                ir::HookKind::Kprobe as i32
            } else {
                h.kind
            };
            let gen_name = h
                .generated
                .as_ref()
                .map(|g| g.list_name.clone())
                .unwrap_or_default();
            let key = (
                kind,
                h.target.clone(),
                h.subsystem.clone(),
                h.binary_path.clone(),
                h.offset,
                gen_name,
            );
            if let Some(prev) = seen.get(&key) {
                let what = if h.target.is_empty() {
                    h.source.clone()
                } else {
                    h.target.clone()
                };
                self.err(PolicyError::invalid(
                    h.source.clone(),
                    quote(&what),
                    format!("duplicate hook: already hooked by {prev}"),
                    "one entry per hook target (merge their args and selectors)",
                ));
            } else {
                seen.insert(key, h.source.clone());
            }
        }
    }
}
