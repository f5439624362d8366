//! Which hook of a policy an event belongs to: by attach point, never by policy name (events
//! recorded under another policy are what `vigil policy test` replays).

use regex::Regex;

use super::view::HookPoint;
use crate::policy::ir::{GeneratedKind, Hook, HookKind};

/// Prefixes kernels and Tetragon put before a syscall's name in function names.
const SYSCALL_PREFIXES: [&str; 6] = [
    "__x64_sys_",
    "__ia32_sys_",
    "__arm64_sys_",
    "__se_sys_",
    "__do_sys_",
    "sys_",
];

/// The bare syscall name of a function name (`__x64_sys_openat` → `openat`), if it is one.
pub(crate) fn syscall_of(function: &str) -> Option<&str> {
    SYSCALL_PREFIXES
        .iter()
        .find_map(|p| function.strip_prefix(p))
        .filter(|s| !s.is_empty())
}

/// How a hook is named in verdicts: `kprobe tcp_connect`, `syscall openat`, …
pub fn describe(h: &Hook) -> String {
    let target = if h.target.is_empty() {
        h.generated
            .as_ref()
            .map(|g| format!("list:{}", g.list_name))
            .unwrap_or_default()
    } else {
        h.target.clone()
    };
    match h.kind() {
        HookKind::Syscall => format!("syscall {target}"),
        HookKind::Kprobe => format!("kprobe {target}"),
        HookKind::Kretprobe => format!("kretprobe {target}"),
        HookKind::Tracepoint => format!("tracepoint {}/{target}", h.subsystem),
        HookKind::RawTracepoint => format!("raw_tracepoint {}/{target}", h.subsystem),
        HookKind::Uprobe if h.target.is_empty() => {
            format!("uprobe {}+{:#x}", h.binary_path, h.offset)
        }
        HookKind::Uprobe => format!("uprobe {}:{target}", h.binary_path),
        HookKind::Lsm => format!("lsm {target}"),
        HookKind::Unspecified => format!("hook {target}"),
    }
}

/// A hook's attach-point matcher, prepared once per policy.
pub(crate) struct HookMatcher {
    /// generated_ftrace lists: the pattern over kernel function names.
    pattern: Option<Regex>,
}

impl HookMatcher {
    pub(crate) fn new(h: &Hook) -> Result<Self, regex::Error> {
        let pattern = match &h.generated {
            Some(g) if g.kind() == GeneratedKind::Ftrace => Some(Regex::new(&g.pattern)?),
            _ => None,
        };
        Ok(HookMatcher { pattern })
    }

    /// Whether the event at `point` comes from hook `h`; `Some(note)` when it does through the
    /// equivalence of a `security_X` kprobe and the LSM hook `X` (same kernel call, same
    /// arguments).
    pub(crate) fn matches(&self, h: &Hook, point: &HookPoint) -> Option<Option<String>> {
        let exact = match (h.kind(), point) {
            (HookKind::Syscall, HookPoint::Kprobe { function }) => match &h.generated {
                Some(g) if g.kind() == GeneratedKind::Syscalls => syscall_of(function).is_some(),
                _ => syscall_of(function) == Some(h.syscall_name.as_str()) || *function == h.target,
            },
            (HookKind::Kprobe | HookKind::Kretprobe, HookPoint::Kprobe { function }) => {
                match &self.pattern {
                    Some(re) => re.is_match(function),
                    None => *function == h.target,
                }
            }
            (
                HookKind::Tracepoint | HookKind::RawTracepoint,
                HookPoint::Tracepoint { subsystem, event },
            ) => *subsystem == h.subsystem && *event == h.target,
            (
                HookKind::Uprobe,
                HookPoint::Uprobe {
                    path,
                    symbol,
                    offset,
                },
            ) => *path == h.binary_path && *symbol == h.target && *offset == h.offset,
            (HookKind::Lsm, HookPoint::Lsm { hook }) => lsm_name(hook) == h.target,
            _ => false,
        };
        if exact {
            return Some(None);
        }
        // The same kernel call seen through the other mechanism.
        match (h.kind(), point) {
            (HookKind::Lsm, HookPoint::Kprobe { function })
                if function.strip_prefix("security_") == Some(h.target.as_str()) =>
            {
                Some(Some(format!(
                    "kprobe event on {function} evaluated for LSM hook {}",
                    h.target
                )))
            }
            (HookKind::Kprobe, HookPoint::Lsm { hook })
                if h.target.strip_prefix("security_") == Some(lsm_name(hook)) =>
            {
                Some(Some(format!(
                    "LSM event on {hook} evaluated for kprobe {}",
                    h.target
                )))
            }
            _ => None,
        }
    }
}

/// An LSM hook name without the prefixes some tools put before it.
fn lsm_name(hook: &str) -> &str {
    hook.strip_prefix("bpf_lsm_")
        .or_else(|| hook.strip_prefix("security_"))
        .unwrap_or(hook)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_names_lose_their_prefixes() {
        assert_eq!(syscall_of("__x64_sys_openat"), Some("openat"));
        assert_eq!(syscall_of("sys_write"), Some("write"));
        assert_eq!(syscall_of("__arm64_sys_dup3"), Some("dup3"));
        assert_eq!(syscall_of("tcp_connect"), None);
        assert_eq!(syscall_of("sys_"), None);
    }
}
