//! Named lists (`spec.lists`, `list:NAME` references) and length-bucketed string sets.

use std::collections::{BTreeMap, BTreeSet};

use crate::policy::PolicyError;
use crate::policy::ir;
use crate::policy::limits::*;
use crate::policy::schema::{quote, suggest};
use crate::policy::types::*;
use crate::policy::values::*;

use super::Cx;

pub(super) struct ListInfo {
    pub(super) kind: Option<ListTypeName>,
    pub(super) values: Vec<String>,
    pub(super) pattern: String,
}

/// Group strings into length buckets; values sorted and de-duplicated.
pub(super) fn bucketize(values: BTreeSet<String>) -> ir::StringSet {
    let mut buckets: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for v in values {
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        let class = STRING_BUCKETS
            .iter()
            .copied()
            .find(|c| len <= *c)
            .unwrap_or(STRING_BUCKETS[STRING_BUCKETS.len() - 1]);
        buckets.entry(class).or_default().push(v);
    }
    ir::StringSet {
        buckets: buckets
            .into_iter()
            .map(|(max_len, values)| ir::StringBucket { max_len, values })
            .collect(),
    }
}

impl Cx<'_> {
    pub(super) fn lists(&mut self) {
        let spec = self.spec;
        if spec.lists.len() > MAX_LISTS {
            self.err(PolicyError::over_limit(
                "spec.lists",
                format!("{} lists", spec.lists.len()),
                format!("at most {MAX_LISTS} lists per policy"),
            ));
        }
        let mut first: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, l) in spec.lists.iter().enumerate() {
            let path = format!("spec.lists[{i}]");
            let name_ok = !l.name.is_empty()
                && l.name.len() <= MAX_LIST_NAME_LEN
                && is_identifier(&l.name, b"-.");
            if !name_ok {
                self.err(PolicyError::invalid(
                    format!("{path}.name"),
                    quote(&l.name),
                    "not a valid list name",
                    format!("letters, digits, '_', '-', '.', starting with a letter or '_', at most {MAX_LIST_NAME_LEN} characters"),
                ));
            }
            if let Some(j) = first.get(l.name.as_str()) {
                self.err(PolicyError::invalid(
                    format!("{path}.name"),
                    quote(&l.name),
                    format!("duplicate list name (already used by spec.lists[{j}])"),
                    "a name not used by another list",
                ));
                continue;
            }
            first.insert(&l.name, i);
            let values = self.list_values(&path, l);
            if !name_ok {
                continue;
            }
            self.lists.insert(
                l.name.clone(),
                ListInfo {
                    kind: l.r#type,
                    values: values.into_iter().collect(),
                    pattern: l.pattern.clone().unwrap_or_default(),
                },
            );
        }
    }

    /// Check a list's values or pattern against its type; the valid values, sorted.
    fn list_values(&mut self, path: &str, l: &ListSpec) -> BTreeSet<String> {
        let mut values = BTreeSet::new();
        match l.r#type {
            None | Some(ListTypeName::Syscalls) => {
                if l.values.is_empty() {
                    self.err(PolicyError::MissingField {
                        path: format!("{path}.values"),
                        accepted: "a non-empty list of names".into(),
                    });
                }
                if l.values.len() > MAX_LIST_VALUES {
                    self.err(PolicyError::over_limit(
                        format!("{path}.values"),
                        format!("{} values", l.values.len()),
                        format!("at most {MAX_LIST_VALUES} values per list"),
                    ));
                }
                for (j, v) in l.values.iter().enumerate() {
                    if v.len() > MAX_SYMBOL_LEN || !is_identifier(v, b".") {
                        self.err(PolicyError::invalid(
                            format!("{path}.values[{j}]"),
                            quote(v),
                            "not a valid function or syscall name",
                            "a name of letters, digits and '_' (e.g. sys_dup)",
                        ));
                    } else {
                        values.insert(v.clone());
                    }
                }
                if let Some(p) = &l.pattern {
                    self.err(PolicyError::invalid(
                        format!("{path}.pattern"),
                        quote(p),
                        "pattern only applies to generated_ftrace lists",
                        "no pattern (or type: generated_ftrace)",
                    ));
                }
            }
            Some(t @ (ListTypeName::GeneratedSyscalls | ListTypeName::GeneratedFtrace)) => {
                if !l.values.is_empty() {
                    self.err(PolicyError::invalid(
                        format!("{path}.values"),
                        format!("{} values", l.values.len()),
                        "generated lists get their values from the node's kernel",
                        "no values",
                    ));
                }
                match (&l.pattern, t) {
                    (None, ListTypeName::GeneratedFtrace) => self.err(PolicyError::MissingField {
                        path: format!("{path}.pattern"),
                        accepted: "a regular expression over kernel function names, e.g. ^ksys_"
                            .into(),
                    }),
                    (Some(p), ListTypeName::GeneratedFtrace) => {
                        if p.is_empty()
                            || p.len() > 1024
                            || regex::RegexBuilder::new(p)
                                .size_limit(1 << 20)
                                .build()
                                .is_err()
                        {
                            self.err(PolicyError::invalid(
                                format!("{path}.pattern"),
                                quote(p),
                                "not a valid regular expression",
                                "a regular expression (at most 1024 characters), e.g. ^ksys_",
                            ));
                        }
                    }
                    (Some(p), _) => self.err(PolicyError::invalid(
                        format!("{path}.pattern"),
                        quote(p),
                        "pattern only applies to generated_ftrace lists",
                        "no pattern",
                    )),
                    (None, _) => {}
                }
            }
        }
        values
    }

    /// Resolve `list:NAME` to a syscalls list's values, reporting errors at `path`.
    pub(super) fn syscall_list(&mut self, path: &str, name: &str) -> Option<Vec<String>> {
        match self.lists.get(name) {
            Some(l) if l.kind == Some(ListTypeName::Syscalls) => Some(l.values.clone()),
            Some(_) => {
                self.err(PolicyError::invalid(
                    path,
                    quote(&format!("list:{name}")),
                    "the list is not of type syscalls",
                    "a reference to a list with type: syscalls",
                ));
                None
            }
            None => {
                let names = self.list_names();
                self.err(PolicyError::invalid(
                    path,
                    quote(&format!("list:{name}")),
                    format!(
                        "unknown list{}",
                        suggest(name, self.lists.keys().map(String::as_str))
                    ),
                    names,
                ));
                None
            }
        }
    }

    pub(super) fn list_names(&self) -> String {
        if self.lists.is_empty() {
            "no lists are defined (add one under spec.lists)".to_string()
        } else {
            self.lists
                .keys()
                .map(|k| format!("list:{k}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}
