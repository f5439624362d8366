//! Process-level filters of a selector (matchPIDs, matchBinaries, matchNamespaces,
//! matchCapabilities, matchNamespaceChanges, matchCapabilityChanges), as the kernel runs them
//! before any argument is read.

use super::verdict::Decision;
use super::view::{CapSets, EventView, ProcView};
use crate::policy::ir::{
    BinaryFilter, BinaryOperator, CapabilityFilter, CapabilitySet, NamespaceChangeFilter,
    NamespaceFilter, PidFilter, Selector, SetOperator, StringSet,
};

/// How far up the process tree followForks / followChildren look (`VIGIL_ANCESTOR_DEPTH`).
pub const ANCESTOR_DEPTH: usize = 8;
/// Leading bytes of a binary path the kernel's process table keeps (`VIGIL_BIN_KEEP`): a
/// longer path has no known tail, so Postfix never matches it (and NotPostfix always does).
pub const BIN_KEEP: usize = 256;

/// Every value of a string set.
pub(crate) fn set_values(s: &Option<StringSet>) -> impl Iterator<Item = &str> {
    s.iter()
        .flat_map(|s| &s.buckets)
        .flat_map(|b| &b.values)
        .map(String::as_str)
}

/// Up to three values for messages, `…` when there are more.
pub(crate) fn show_values<'a>(mut it: impl Iterator<Item = &'a str>) -> String {
    let shown: Vec<&str> = it.by_ref().take(3).collect();
    let more = if it.next().is_some() { ", …" } else { "" };
    format!("[{}{more}]", shown.join(", "))
}

/// The process-level filters of `sel`, ANDed.
pub(crate) fn check(sel: &Selector, ev: &EventView) -> Decision {
    let Some(p) = &ev.process else {
        let any = !sel.pids.is_empty()
            || !sel.binaries.is_empty()
            || !sel.namespaces.is_empty()
            || sel.namespace_changes.is_some()
            || !sel.capabilities.is_empty()
            || !sel.capability_changes.is_empty();
        return if any {
            Decision::Unknown("event has no process".into())
        } else {
            Decision::Yes
        };
    };
    let mut d = Decision::Yes;
    for (i, f) in sel.pids.iter().enumerate() {
        d = d.and(|| pids(i, f, p, ev));
    }
    for (i, f) in sel.binaries.iter().enumerate() {
        d = d.and(|| binaries(i, f, p, ev));
    }
    for (i, f) in sel.namespaces.iter().enumerate() {
        d = d.and(|| namespaces(i, f, p));
    }
    for (i, f) in sel.capabilities.iter().enumerate() {
        d = d.and(|| capabilities(i, f, p));
    }
    for (i, f) in sel.capability_changes.iter().enumerate() {
        d = d.and(|| capability_changes(i, f, p));
    }
    if let Some(f) = &sel.namespace_changes {
        d = d.and(|| namespace_changes(f, p));
    }
    d
}

/// Walks up to [`ANCESTOR_DEPTH`] ancestors as the kernel does (stopping above pid 1):
/// `Some(true)` when `hit` holds for one, `Some(false)` when none holds and the walk ended
/// where the kernel's would, `None` when the event's ancestry is too short to tell.
fn walk(
    p: &ProcView,
    ev: &EventView,
    mut hit: impl FnMut(&ProcView) -> Option<bool>,
) -> Result<bool, String> {
    let Some(mut child) = p.pid else {
        return Err("event has no pid".into());
    };
    let mut unknown = None;
    for i in 0..ANCESTOR_DEPTH {
        if child <= 1 {
            break;
        }
        let Some(a) = ev.ancestors.get(i) else {
            return Err(unknown.unwrap_or_else(|| {
                format!(
                    "event has {} ancestor(s); the kernel looks up to {ANCESTOR_DEPTH} (or up to pid 1)",
                    ev.ancestors.len()
                )
            }));
        };
        let Some(pid) = a.pid.filter(|p| *p != 0) else {
            break;
        };
        match hit(a) {
            Some(true) => return Ok(true),
            Some(false) => {}
            None => {
                unknown.get_or_insert_with(|| format!("ancestor {pid} has no binary"));
            }
        }
        child = pid;
    }
    match unknown {
        Some(u) => Err(u),
        None => Ok(false),
    }
}

fn set_op_in(op: SetOperator) -> bool {
    op != SetOperator::NotIn
}

fn pids(i: usize, f: &PidFilter, p: &ProcView, ev: &EventView) -> Decision {
    let name = format!("matchPIDs[{i}]");
    let pid = if f.is_namespace_pid {
        p.ns_pid
            .ok_or_else(|| "event has no namespace pid (isNamespacePID)".to_string())
    } else {
        p.pid.ok_or_else(|| "event has no pid".to_string())
    };
    let pid = match pid {
        Ok(v) => v,
        Err(e) => return Decision::Unknown(format!("{name}: {e}")),
    };
    let mut hit = f.pids.binary_search(&pid).is_ok();
    if !hit && f.follow_forks && !f.is_namespace_pid {
        match walk(p, ev, |a| a.pid.map(|x| f.pids.binary_search(&x).is_ok())) {
            Ok(h) => hit = h,
            Err(e) => return Decision::Unknown(format!("{name} followForks: {e}")),
        }
    }
    let want = set_op_in(f.operator());
    Decision::from_bool(hit == want, || {
        let op = if want { "In" } else { "NotIn" };
        let list: Vec<String> = f.pids.iter().take(4).map(u32::to_string).collect();
        format!("{name}: pid {pid} not {op} [{}]", list.join(", "))
    })
}

/// Whether `bin` matches `op` (the positive form) with one of `values`, on the kernel's terms.
fn bin_hit(op: BinaryOperator, values: &Option<StringSet>, bin: &str) -> bool {
    let len = bin.len();
    match op {
        BinaryOperator::In | BinaryOperator::NotIn => set_values(values).any(|v| v == bin),
        BinaryOperator::Prefix | BinaryOperator::NotPrefix => {
            set_values(values).any(|v| bin.as_bytes().starts_with(v.as_bytes()))
        }
        BinaryOperator::Postfix | BinaryOperator::NotPostfix => {
            len != 0
                && len <= BIN_KEEP
                && set_values(values).any(|v| bin.as_bytes().ends_with(v.as_bytes()))
        }
        BinaryOperator::Unspecified => false,
    }
}

fn binaries(i: usize, f: &BinaryFilter, p: &ProcView, ev: &EventView) -> Decision {
    let name = format!("matchBinaries[{i}]");
    let op = f.operator();
    let Some(bin) = &p.binary else {
        return Decision::Unknown(format!("{name}: event has no process binary"));
    };
    let mut hit = bin_hit(op, &f.values, bin);
    if !hit && f.follow_children {
        match walk(p, ev, |a| {
            a.binary.as_ref().map(|b| bin_hit(op, &f.values, b))
        }) {
            Ok(h) => hit = h,
            Err(e) => return Decision::Unknown(format!("{name} followChildren: {e}")),
        }
    }
    let positive = matches!(
        op,
        BinaryOperator::In | BinaryOperator::Prefix | BinaryOperator::Postfix
    );
    Decision::from_bool(hit == positive, || {
        format!(
            "{name}: {bin} {} {}",
            if positive { "not" } else { "is" },
            show_values(set_values(&f.values)),
        )
    })
}

fn namespaces(i: usize, f: &NamespaceFilter, p: &ProcView) -> Decision {
    let t = f.namespace();
    let name = format!("matchNamespaces[{i}] ({t:?})");
    let Some(ns) = &p.ns else {
        return Decision::Unknown(format!(
            "{name}: event has no ns (namespaces are in events with the sensor's process namespace option)"
        ));
    };
    let Some(n) = ns.get(t) else {
        return Decision::Unknown(format!("{name}: event has no {t:?} namespace"));
    };
    let hit = f.inodes.binary_search(&n.inum).is_ok() || (f.host_ns && n.is_host);
    let want = set_op_in(f.operator());
    Decision::from_bool(hit == want, || {
        format!(
            "{name}: inode {}{} {} the values",
            n.inum,
            if n.is_host { " (host)" } else { "" },
            if want { "not in" } else { "in" }
        )
    })
}

fn cap_set(c: &CapSets, s: CapabilitySet) -> u64 {
    match s {
        CapabilitySet::Inheritable => c.inheritable,
        CapabilitySet::Permitted => c.permitted,
        _ => c.effective,
    }
}

fn capabilities(i: usize, f: &CapabilityFilter, p: &ProcView) -> Decision {
    let name = format!("matchCapabilities[{i}]");
    let Some(caps) = &p.caps else {
        return Decision::Unknown(format!(
            "{name}: event has no cap (capabilities are in events with the sensor's process credentials option)"
        ));
    };
    let hit = cap_set(caps, f.set()) & f.mask != 0;
    if f.is_namespace_capability {
        match p.host_user_ns {
            None => {
                return Decision::Unknown(format!(
                    "{name}: isNamespaceCapability needs the task's user namespace, which the event does not carry"
                ));
            }
            Some(true) => {
                return Decision::No(format!(
                    "{name}: isNamespaceCapability and the task is in the host user namespace"
                ));
            }
            Some(false) => {}
        }
    }
    let want = set_op_in(f.operator());
    Decision::from_bool(hit == want, || {
        format!(
            "{name}: {:?} set has {} of {}",
            f.set(),
            if hit { "one" } else { "none" },
            f.names.join(", ")
        )
    })
}

fn capability_changes(i: usize, f: &CapabilityFilter, p: &ProcView) -> Decision {
    let name = format!("matchCapabilityChanges[{i}]");
    let (Some(now), Some(exec)) = (&p.caps, &p.exec_caps) else {
        return Decision::Unknown(format!(
            "{name}: needs the task's current and exec-time capabilities; the event carries {}",
            if p.caps.is_some() { "one set" } else { "none" }
        ));
    };
    let hit = (cap_set(now, f.set()) ^ cap_set(exec, f.set())) & f.mask != 0;
    let want = set_op_in(f.operator());
    Decision::from_bool(hit == want, || {
        format!(
            "{name}: {} of {} changed since exec",
            if hit { "one" } else { "none" },
            f.names.join(", ")
        )
    })
}

fn namespace_changes(f: &NamespaceChangeFilter, p: &ProcView) -> Decision {
    let name = "matchNamespaceChanges";
    let (Some(now), Some(exec)) = (&p.ns, &p.exec_ns) else {
        return Decision::Unknown(format!(
            "{name}: needs the task's current and exec-time namespaces; the event carries {}",
            if p.ns.is_some() { "one set" } else { "none" }
        ));
    };
    let mut changed = false;
    for t in f.namespaces() {
        match (now.get(t), exec.get(t)) {
            (Some(a), Some(b)) => changed |= a.inum != b.inum,
            _ => return Decision::Unknown(format!("{name}: event has no {t:?} namespace")),
        }
    }
    let want = set_op_in(f.operator());
    Decision::from_bool(changed == want, || {
        format!(
            "{name}: namespaces {}changed since exec",
            if changed { "" } else { "not " }
        )
    })
}
