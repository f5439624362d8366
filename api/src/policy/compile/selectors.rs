//! Selectors: macro expansion (`selectorsMacros`), per-selector limits, and assembly of one
//! [`ir::Selector`] from its filters and actions.

use std::collections::BTreeMap;

use crate::policy::PolicyError;
use crate::policy::ir;
use crate::policy::limits::*;
use crate::policy::schema::{child, escape, quote, suggest};
use crate::policy::types::*;

use super::{Cx, HookClass, HookCx};

/// A selector after macro expansion: every filter keeps the path it came from.
#[derive(Default)]
struct Merged<'a> {
    pids: Vec<(String, &'a PidSelector)>,
    args: Vec<(String, &'a ArgSelector)>,
    return_args: Vec<(String, &'a ArgSelector)>,
    actions: Vec<(String, &'a ActionSelector)>,
    return_actions: Vec<(String, &'a ActionSelector)>,
    binaries: Vec<(String, &'a BinarySelector)>,
    namespaces: Vec<(String, &'a NamespaceSelector)>,
    namespace_changes: Vec<(String, &'a NamespaceChangesSelector)>,
    capabilities: Vec<(String, &'a CapabilitiesSelector)>,
    capability_changes: Vec<(String, &'a CapabilitiesSelector)>,
}

impl<'a> Merged<'a> {
    fn add(&mut self, base: &str, s: &'a KProbeSelector) {
        fn each<'b, T>(out: &mut Vec<(String, &'b T)>, base: &str, field: &str, items: &'b [T]) {
            for (i, x) in items.iter().enumerate() {
                out.push((format!("{base}.{field}[{i}]"), x));
            }
        }
        each(&mut self.pids, base, "matchPIDs", &s.match_pids);
        each(&mut self.args, base, "matchArgs", &s.match_args);
        each(
            &mut self.return_args,
            base,
            "matchReturnArgs",
            &s.match_return_args,
        );
        each(&mut self.actions, base, "matchActions", &s.match_actions);
        each(
            &mut self.return_actions,
            base,
            "matchReturnActions",
            &s.match_return_actions,
        );
        each(&mut self.binaries, base, "matchBinaries", &s.match_binaries);
        each(
            &mut self.namespaces,
            base,
            "matchNamespaces",
            &s.match_namespaces,
        );
        each(
            &mut self.namespace_changes,
            base,
            "matchNamespaceChanges",
            &s.match_namespace_changes,
        );
        each(
            &mut self.capabilities,
            base,
            "matchCapabilities",
            &s.match_capabilities,
        );
        each(
            &mut self.capability_changes,
            base,
            "matchCapabilityChanges",
            &s.match_capability_changes,
        );
    }
}

impl Cx<'_> {
    pub(super) fn macros(&mut self) {
        for (name, m) in &self.spec.selectors_macros {
            let path = child("spec.selectorsMacros", name);
            if !m.macros.is_empty() {
                self.err(PolicyError::invalid(
                    format!("{path}.macros"),
                    format!("{:?}", m.macros),
                    "macros cannot include other macros",
                    "no macros inside a selectorsMacros entry",
                ));
            }
        }
    }

    pub(super) fn selectors(
        &mut self,
        path: &str,
        sels: &[KProbeSelector],
        hcx: &HookCx,
    ) -> Vec<ir::Selector> {
        let mut out = Vec::new();
        let mut total = 0usize;
        for (i, s) in sels.iter().enumerate() {
            let sp = format!("{path}.selectors[{i}]");
            total += 1;
            let mut merged = Merged::default();
            self.selector_unsupported(&sp, s);
            merged.add(&sp, s);
            for (k, m) in s.macros.iter().enumerate() {
                match self.spec.selectors_macros.get(m) {
                    Some(ms) => {
                        let mp = child("spec.selectorsMacros", m);
                        self.selector_unsupported(&mp, ms);
                        merged.add(&mp, ms);
                    }
                    None => {
                        let names: Vec<&str> = self
                            .spec
                            .selectors_macros
                            .keys()
                            .map(String::as_str)
                            .collect();
                        self.err(PolicyError::invalid(
                            format!("{sp}.macros[{k}]"),
                            quote(m),
                            format!(
                                "unknown selector macro{}",
                                suggest(m, names.iter().copied())
                            ),
                            if names.is_empty() {
                                "no macros are defined (add them under spec.selectorsMacros)"
                                    .to_string()
                            } else {
                                names
                                    .iter()
                                    .map(|n| escape(n))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            },
                        ));
                    }
                }
            }
            if let Some(sel) = self.selector(&sp, i, &merged, hcx) {
                out.push(sel);
            }
        }
        if total > MAX_SELECTORS {
            self.err(PolicyError::over_limit(
                format!("{path}.selectors"),
                format!("{total} selectors"),
                format!("at most {MAX_SELECTORS} selectors per hook"),
            ));
        }
        out
    }

    fn selector_unsupported(&mut self, sp: &str, s: &KProbeSelector) {
        if s.match_data.is_some() {
            self.err(PolicyError::not_supported(
                format!("{sp}.matchData"),
                "data filters (matchData)",
                "matchArgs on declared args",
            ));
        }
        if s.match_parent_binaries.is_some() {
            self.err(PolicyError::not_supported(
                format!("{sp}.matchParentBinaries"),
                "parent binary filters (matchParentBinaries)",
                "matchBinaries with followChildren",
            ));
        }
    }

    fn count<T>(&mut self, path: &str, field: &str, items: &[T], max: usize) {
        if items.len() > max {
            self.err(PolicyError::over_limit(
                format!("{path}.{field}"),
                format!("{} entries", items.len()),
                format!("at most {max} {field} entries per selector"),
            ));
        }
    }

    fn selector(
        &mut self,
        sp: &str,
        index: usize,
        m: &Merged<'_>,
        hcx: &HookCx,
    ) -> Option<ir::Selector> {
        let before = self.errs.len();
        self.selector_counts(sp, m);
        let mut sel = ir::Selector {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            ..Default::default()
        };
        self.add_process_filters(m, &mut sel);
        self.add_arg_filters(m, hcx, &mut sel);
        if !m.return_args.is_empty() || !m.return_actions.is_empty() {
            self.add_return_filters(m, hcx, &mut sel);
        }
        for (p, a) in &m.actions {
            if let Some(x) = self.action(p, a, hcx, false) {
                sel.actions.push(x);
            }
        }
        (self.errs.len() == before).then_some(sel)
    }

    /// Per-selector limits on the number of filters and actions.
    fn selector_counts(&mut self, sp: &str, m: &Merged<'_>) {
        self.count(sp, "matchPIDs", &m.pids, MAX_PID_FILTERS);
        self.count(sp, "matchArgs", &m.args, MAX_ARG_FILTERS);
        self.count(sp, "matchReturnArgs", &m.return_args, MAX_ARG_FILTERS);
        self.count(sp, "matchActions", &m.actions, MAX_ACTIONS);
        self.count(sp, "matchReturnActions", &m.return_actions, MAX_ACTIONS);
        self.count(sp, "matchBinaries", &m.binaries, MAX_BINARY_FILTERS);
        self.count(
            sp,
            "matchCapabilities",
            &m.capabilities,
            MAX_CAPABILITY_FILTERS,
        );
        self.count(
            sp,
            "matchCapabilityChanges",
            &m.capability_changes,
            MAX_CAPABILITY_FILTERS,
        );
        self.count(
            sp,
            "matchNamespaceChanges",
            &m.namespace_changes,
            MAX_NAMESPACE_CHANGE_FILTERS,
        );
    }

    /// matchPIDs, matchBinaries, matchNamespaces(Changes), matchCapabilities/CapabilityChanges.
    fn add_process_filters(&mut self, m: &Merged<'_>, sel: &mut ir::Selector) {
        for (p, f) in &m.pids {
            if let Some(x) = self.pid_filter(p, f) {
                sel.pids.push(x);
            }
        }
        for (p, f) in &m.binaries {
            if let Some(x) = self.binary_filter(p, f) {
                sel.binaries.push(x);
            }
        }
        let mut ns_seen: BTreeMap<NamespaceName, &str> = BTreeMap::new();
        for (p, f) in &m.namespaces {
            if let Some(prev) = ns_seen.get(&f.namespace) {
                self.err(PolicyError::invalid(
                    format!("{p}.namespace"),
                    format!("{:?}", f.namespace),
                    format!("namespace type already filtered by {prev}"),
                    "each namespace type once per selector",
                ));
                continue;
            }
            ns_seen.insert(f.namespace, p.as_str());
            if let Some(x) = self.namespace_filter(p, f) {
                sel.namespaces.push(x);
            }
        }
        if let Some((p, f)) = m.namespace_changes.first() {
            sel.namespace_changes = self.namespace_change_filter(p, f);
        }
        for (p, f) in &m.capabilities {
            if let Some(x) = self.capability_filter(p, f) {
                sel.capabilities.push(x);
            }
        }
        for (p, f) in &m.capability_changes {
            if let Some(x) = self.capability_filter(p, f) {
                sel.capability_changes.push(x);
            }
        }
    }

    /// matchArgs: resolve each filter's index to a declared argument (tracepoints: a position
    /// in args), then check its values against the argument's type.
    fn add_arg_filters(&mut self, m: &Merged<'_>, hcx: &HookCx, sel: &mut ir::Selector) {
        for (p, f) in &m.args {
            let field = match &hcx.positions {
                Some(pos) => pos.get(f.index as usize).copied(),
                None => Some(f.index),
            };
            match field.and_then(|i| hcx.args.get(&i).map(|t| (i, *t))) {
                Some((i, t)) => {
                    if let Some(mut x) = self.arg_filter(p, f, t) {
                        x.index = i;
                        sel.args.push(x);
                    }
                }
                None if hcx.positions.is_some() => {
                    let n = hcx.positions.as_ref().map_or(0, Vec::len);
                    self.err(PolicyError::invalid(
                        format!("{p}.index"),
                        f.index.to_string(),
                        "on tracepoints, matchArgs.index is a position in the hook's args list",
                        if n == 0 {
                            "a position in args (none are declared)".to_string()
                        } else {
                            format!("a position from 0 to {}", n - 1)
                        },
                    ));
                }
                None => {
                    let declared: Vec<String> = hcx.args.keys().map(u32::to_string).collect();
                    self.err(PolicyError::invalid(
                        format!("{p}.index"),
                        f.index.to_string(),
                        "no argument with this index is declared in args",
                        if declared.is_empty() {
                            "an index declared in the hook's args (none are declared)".to_string()
                        } else {
                            format!("a declared argument index: {}", declared.join(", "))
                        },
                    ));
                }
            }
        }
    }

    /// matchReturnArgs and matchReturnActions: only on hooks with a return probe.
    fn add_return_filters(&mut self, m: &Merged<'_>, hcx: &HookCx, sel: &mut ir::Selector) {
        if !hcx.return_probe {
            let p = if let Some((p, _)) = m.return_args.first() {
                p
            } else {
                &m.return_actions[0].0
            };
            self.err(PolicyError::invalid(
                p.clone(),
                "(return filter)",
                if matches!(hcx.class, HookClass::Tracepoint | HookClass::Lsm) {
                    format!("a {} has no return value", hcx.class.name())
                } else {
                    "matchReturnArgs/matchReturnActions need `return: true` on the hook".to_string()
                },
                "set `return: true` and a returnArg, or use matchArgs/matchActions",
            ));
        } else {
            for (p, f) in &m.return_args {
                match hcx.ret {
                    Some(t) if f.index == 0 => {
                        if let Some(x) = self.arg_filter(p, f, t) {
                            sel.return_args.push(x);
                        }
                    }
                    Some(_) => self.err(PolicyError::invalid(
                        format!("{p}.index"),
                        f.index.to_string(),
                        "the return value has index 0",
                        "0",
                    )),
                    None => self.err(PolicyError::invalid(
                        p.clone(),
                        "(return filter)",
                        "matchReturnArgs needs a returnArg that declares the return type",
                        "add returnArg: {index: 0, type: ...} to the hook",
                    )),
                }
            }
            for (p, a) in &m.return_actions {
                if let Some(x) = self.action(p, a, hcx, true) {
                    sel.return_actions.push(x);
                }
            }
        }
    }

    pub(super) fn too_many_values(&mut self, path: &str, n: usize) -> bool {
        if n > MAX_VALUES_PER_FILTER {
            self.err(PolicyError::over_limit(
                format!("{path}.values"),
                format!("{n} values"),
                format!("at most {MAX_VALUES_PER_FILTER} values per filter"),
            ));
            return true;
        }
        false
    }

    pub(super) fn empty_values(&mut self, path: &str, n: usize, accepted: &str) -> bool {
        if n == 0 {
            self.err(PolicyError::MissingField {
                path: format!("{path}.values"),
                accepted: format!("a non-empty list of {accepted}"),
            });
            return true;
        }
        false
    }
}
