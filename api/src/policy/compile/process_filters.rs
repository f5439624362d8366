//! Process filters of a selector: matchPIDs, matchBinaries, matchNamespaces,
//! matchNamespaceChanges, matchCapabilities and matchCapabilityChanges.

use std::collections::BTreeSet;

use crate::policy::PolicyError;
use crate::policy::ir;
use crate::policy::limits::*;
use crate::policy::schema::{quote, suggest};
use crate::policy::types::*;
use crate::policy::values::*;

use super::value_sets::bucketize;
use super::{Cx, TEMPLATE_HINT};

fn set_op(o: SetOperatorName) -> ir::SetOperator {
    match o {
        SetOperatorName::In => ir::SetOperator::In,
        SetOperatorName::NotIn => ir::SetOperator::NotIn,
    }
}

fn ns_ir(n: NamespaceName) -> ir::NamespaceType {
    use NamespaceName as N;
    use ir::NamespaceType as I;
    match n {
        N::Uts => I::Uts,
        N::Ipc => I::Ipc,
        N::Mnt => I::Mnt,
        N::Pid => I::Pid,
        N::PidForChildren => I::PidForChildren,
        N::Net => I::Net,
        N::Time => I::Time,
        N::TimeForChildren => I::TimeForChildren,
        N::Cgroup => I::Cgroup,
        N::User => I::User,
    }
}

const NAMESPACE_NAMES: [(&str, NamespaceName); 10] = [
    ("Uts", NamespaceName::Uts),
    ("Ipc", NamespaceName::Ipc),
    ("Mnt", NamespaceName::Mnt),
    ("Pid", NamespaceName::Pid),
    ("PidForChildren", NamespaceName::PidForChildren),
    ("Net", NamespaceName::Net),
    ("Time", NamespaceName::Time),
    ("TimeForChildren", NamespaceName::TimeForChildren),
    ("Cgroup", NamespaceName::Cgroup),
    ("User", NamespaceName::User),
];

impl Cx<'_> {
    pub(super) fn pid_filter(&mut self, p: &str, f: &PidSelector) -> Option<ir::PidFilter> {
        if self.empty_values(p, f.values.len(), "process IDs")
            || self.too_many_values(p, f.values.len())
        {
            return None;
        }
        let pids: BTreeSet<u32> = f.values.iter().copied().collect();
        Some(ir::PidFilter {
            operator: set_op(f.operator) as i32,
            pids: pids.into_iter().collect(),
            follow_forks: f.follow_forks,
            is_namespace_pid: f.is_namespace_pid,
        })
    }

    pub(super) fn binary_filter(
        &mut self,
        p: &str,
        f: &BinarySelector,
    ) -> Option<ir::BinaryFilter> {
        use BinaryOperatorName as B;
        if self.empty_values(p, f.values.len(), "binary paths")
            || self.too_many_values(p, f.values.len())
        {
            return None;
        }
        let exact = matches!(f.operator, B::In | B::NotIn);
        if f.follow_children && !exact {
            self.err(PolicyError::invalid(
                format!("{p}.followChildren"),
                "true",
                "followChildren only applies to In and NotIn",
                "operator In or NotIn, or followChildren: false",
            ));
        }
        let mut set = BTreeSet::new();
        let mut ok = true;
        for (i, v) in f.values.iter().enumerate() {
            let vp = format!("{p}.values[{i}]");
            if is_template(v) {
                self.err(PolicyError::not_supported(
                    vp,
                    format!("template variable in {}", quote(v)),
                    TEMPLATE_HINT,
                ));
                ok = false;
                continue;
            }
            let max = if exact {
                MAX_STRING_EQUAL_LEN - 1
            } else {
                MAX_STRING_AFFIX_LEN
            };
            if v.is_empty() || v.contains('\0') {
                self.err(PolicyError::invalid(
                    vp,
                    quote(v),
                    "empty or contains NUL",
                    "a non-empty path",
                ));
                ok = false;
            } else if v.len() > max {
                self.err(PolicyError::over_limit(
                    vp,
                    format!("{} ({} bytes)", quote(v), v.len()),
                    format!(
                        "matchBinaries {:?} values have at most {max} bytes",
                        f.operator
                    ),
                ));
                ok = false;
            } else if exact && !v.starts_with('/') {
                self.err(PolicyError::invalid(
                    vp,
                    quote(v),
                    "In/NotIn compare the full executable path",
                    "an absolute path such as /usr/bin/curl (or use operator Postfix)",
                ));
                ok = false;
            } else {
                set.insert(v.clone());
            }
        }
        let op = match f.operator {
            B::In => ir::BinaryOperator::In,
            B::NotIn => ir::BinaryOperator::NotIn,
            B::Prefix => ir::BinaryOperator::Prefix,
            B::NotPrefix => ir::BinaryOperator::NotPrefix,
            B::Postfix => ir::BinaryOperator::Postfix,
            B::NotPostfix => ir::BinaryOperator::NotPostfix,
        };
        ok.then(|| ir::BinaryFilter {
            operator: op as i32,
            values: Some(bucketize(set)),
            follow_children: f.follow_children,
        })
    }

    pub(super) fn namespace_filter(
        &mut self,
        p: &str,
        f: &NamespaceSelector,
    ) -> Option<ir::NamespaceFilter> {
        if self.empty_values(p, f.values.len(), "namespace inode numbers or host_ns")
            || self.too_many_values(p, f.values.len())
        {
            return None;
        }
        let mut inodes = BTreeSet::new();
        let mut host_ns = false;
        let mut ok = true;
        for (i, v) in f.values.iter().enumerate() {
            if v == "host_ns" {
                host_ns = true;
                continue;
            }
            match parse_int(v) {
                Some(Int::Unsigned(u)) if u32::try_from(u).is_ok() => {
                    inodes.insert(u32::try_from(u).unwrap_or_default());
                }
                _ => {
                    self.err(PolicyError::invalid(
                        format!("{p}.values[{i}]"),
                        quote(v),
                        "not a namespace inode number",
                        "an integer from 0 to 4294967295, or host_ns",
                    ));
                    ok = false;
                }
            }
        }
        ok.then(|| ir::NamespaceFilter {
            namespace: ns_ir(f.namespace) as i32,
            operator: set_op(f.operator) as i32,
            inodes: inodes.into_iter().collect(),
            host_ns,
        })
    }

    pub(super) fn namespace_change_filter(
        &mut self,
        p: &str,
        f: &NamespaceChangesSelector,
    ) -> Option<ir::NamespaceChangeFilter> {
        let accepted = NAMESPACE_NAMES
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ");
        if self.empty_values(p, f.values.len(), "namespace types") {
            return None;
        }
        let mut set = BTreeSet::new();
        let mut ok = true;
        for (i, v) in f.values.iter().enumerate() {
            match NAMESPACE_NAMES.iter().find(|(n, _)| n == v) {
                Some((_, ns)) => {
                    set.insert(ns_ir(*ns) as i32);
                }
                None => {
                    self.err(PolicyError::invalid(
                        format!("{p}.values[{i}]"),
                        quote(v),
                        format!(
                            "unknown namespace type{}",
                            suggest(v, NAMESPACE_NAMES.iter().map(|(n, _)| *n))
                        ),
                        accepted.clone(),
                    ));
                    ok = false;
                }
            }
        }
        ok.then(|| ir::NamespaceChangeFilter {
            operator: set_op(f.operator) as i32,
            namespaces: set.into_iter().collect(),
        })
    }

    pub(super) fn capability_filter(
        &mut self,
        p: &str,
        f: &CapabilitiesSelector,
    ) -> Option<ir::CapabilityFilter> {
        if self.empty_values(p, f.values.len(), "capability names (CAP_*)") {
            return None;
        }
        let mut mask = 0u64;
        let mut ok = true;
        for (i, v) in f.values.iter().enumerate() {
            match capability(v) {
                Some(n) => mask |= 1u64 << n,
                None => {
                    self.err(PolicyError::invalid(
                        format!("{p}.values[{i}]"),
                        quote(v),
                        format!("unknown capability{}", suggest(v, CAPABILITIES)),
                        "capability names CAP_CHOWN … CAP_CHECKPOINT_RESTORE (see capabilities(7))",
                    ));
                    ok = false;
                }
            }
        }
        let names = (0..64u32)
            .filter(|b| mask & (1u64 << b) != 0)
            .filter_map(|b| CAPABILITIES.get(b as usize).map(|s| s.to_string()))
            .collect();
        let set = match f.r#type {
            CapabilityTypeName::Effective => ir::CapabilitySet::Effective,
            CapabilityTypeName::Inheritable => ir::CapabilitySet::Inheritable,
            CapabilityTypeName::Permitted => ir::CapabilitySet::Permitted,
        };
        ok.then(|| ir::CapabilityFilter {
            set: set as i32,
            operator: set_op(f.operator) as i32,
            is_namespace_capability: f.is_namespace_capability,
            mask,
            names,
        })
    }
}
