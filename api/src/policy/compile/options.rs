//! `spec.options` (policy mode, mechanism hints) and `spec.enforcers`.

use std::collections::{BTreeMap, BTreeSet};

use crate::policy::PolicyError;
use crate::policy::ir;
use crate::policy::limits::*;
use crate::policy::schema::{quote, suggest};
use crate::policy::values::*;

use super::Cx;

fn is_bool_option(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

const OPTION_NAMES: [&str; 3] = [
    "policy-mode",
    "disable-kprobe-multi",
    "disable-uprobe-multi",
];

impl Cx<'_> {
    pub(super) fn options(&mut self) -> (ir::PolicyMode, ir::MechanismHints) {
        let mut mode = ir::PolicyMode::Enforce;
        let mut hints = ir::MechanismHints::default();
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, o) in self.spec.options.iter().enumerate() {
            let path = format!("spec.options[{i}]");
            if let Some(j) = seen.get(o.name.as_str()) {
                self.err(PolicyError::invalid(
                    format!("{path}.name"),
                    quote(&o.name),
                    format!("option already set by spec.options[{j}]"),
                    "each option once",
                ));
                continue;
            }
            seen.insert(&o.name, i);
            match o.name.as_str() {
                "policy-mode" => match o.value.as_str() {
                    "enforce" => mode = ir::PolicyMode::Enforce,
                    "monitor" => mode = ir::PolicyMode::Monitor,
                    other => self.err(PolicyError::invalid(
                        format!("{path}.value"),
                        quote(other),
                        format!(
                            "unknown policy mode{}",
                            suggest(other, ["enforce", "monitor"])
                        ),
                        "enforce, monitor",
                    )),
                },
                "disable-kprobe-multi" | "disable-uprobe-multi" => match is_bool_option(&o.value) {
                    Some(b) => {
                        if o.name == "disable-kprobe-multi" {
                            hints.disable_kprobe_multi = b;
                        } else {
                            hints.disable_uprobe_multi = b;
                        }
                    }
                    None => self.err(PolicyError::invalid(
                        format!("{path}.value"),
                        quote(&o.value),
                        "not a boolean",
                        "1, 0, true, false",
                    )),
                },
                other => self.err(PolicyError::invalid(
                    format!("{path}.name"),
                    quote(other),
                    format!("unknown option{}", suggest(other, OPTION_NAMES)),
                    OPTION_NAMES.join(", "),
                )),
            }
        }
        (mode, hints)
    }

    pub(super) fn enforcers(&mut self) -> Vec<ir::Enforcer> {
        let spec = self.spec;
        if spec.enforcers.len() > MAX_ENFORCERS {
            self.err(PolicyError::over_limit(
                "spec.enforcers",
                format!("{} enforcers", spec.enforcers.len()),
                format!("at most {MAX_ENFORCERS} enforcers per policy"),
            ));
        }
        let mut out = Vec::new();
        for (i, e) in spec.enforcers.iter().enumerate() {
            let path = format!("spec.enforcers[{i}]");
            if e.calls.is_empty() {
                self.err(PolicyError::MissingField {
                    path: format!("{path}.calls"),
                    accepted: "a non-empty list of syscall names or list:NAME references".into(),
                });
            }
            let mut set = BTreeSet::new();
            for (j, c) in e.calls.iter().enumerate() {
                let p = format!("{path}.calls[{j}]");
                if let Some(name) = c.strip_prefix("list:") {
                    if let Some(v) = self.syscall_list(&p, name) {
                        set.extend(v);
                    }
                } else if is_identifier(c, b"") && c.len() <= MAX_SYMBOL_LEN {
                    set.insert(c.clone());
                } else {
                    self.err(PolicyError::invalid(
                        p,
                        quote(c),
                        "not a syscall name or list reference",
                        "a syscall name (e.g. sys_dup) or list:NAME",
                    ));
                }
            }
            out.push(ir::Enforcer {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                syscalls: set.into_iter().collect(),
            });
        }
        out
    }
}
