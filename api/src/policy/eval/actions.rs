//! What a matching selector does: its actions in order, monitor vs enforce, whether an event is
//! written, and the `action` the event carries — as the kernel's `act()` does.

use super::ratelimit::RateLimits;
use super::verdict::{ActionEffect, Execution, Match, Post};
use super::view::EventView;
use crate::events::KprobeAction;
use crate::policy::ir::{Action, ActionKind, Hook, HookKind, Selector};

const NO_OVERRIDE: &str = "Override needs bpf_override_return on syscalls and kernel functions, which neither supported kernel has; the sensor denies only through BPF-LSM (lsmhooks, or a security_* kprobe)";
const NOT_YET: &str = "not supported by Vigil's kernel programs yet";

/// Why the sensor cannot deny the call of `h`, if it cannot: it denies through BPF-LSM only
/// (LSM hooks, and `security_*` kprobes without return probes).
fn no_override(h: &Hook) -> Option<String> {
    match h.kind() {
        HookKind::Lsm => None,
        HookKind::Kprobe if h.target.starts_with("security_") => None,
        HookKind::Kretprobe if h.target.starts_with("security_") => Some(
            "Override with return: true is not supported (the LSM program decides at entry)".into(),
        ),
        _ => Some(NO_OVERRIDE.into()),
    }
}

/// The effect of one action of a matching selector.
fn effect(a: &Action, h: &Hook, monitor: bool) -> ActionEffect {
    let enforcing = |e: &mut ActionEffect| {
        e.execution = if monitor {
            Execution::Monitored
        } else {
            Execution::Done
        };
    };
    let mut e = ActionEffect {
        kind: a.kind(),
        signal: None,
        error: None,
        rate_limit_ms: 0,
        execution: Execution::Done,
    };
    match a.kind() {
        ActionKind::Post => {
            e.rate_limit_ms = a.rate_limit_ms;
            if a.kernel_stack_trace || a.user_stack_trace {
                e.execution = Execution::Refused(format!("stack traces: {NOT_YET}"));
            }
        }
        ActionKind::NoPost => {}
        ActionKind::Sigkill => {
            e.signal = Some(9);
            enforcing(&mut e);
        }
        ActionKind::Signal => {
            e.signal = Some(a.signal);
            enforcing(&mut e);
        }
        ActionKind::Override => {
            e.error = Some(a.error.unwrap_or(-1));
            match no_override(h) {
                None => enforcing(&mut e),
                Some(why) => e.execution = Execution::Refused(why),
            }
        }
        _ => {
            e.signal = (a.signal != 0).then_some(a.signal);
            e.error = a.error;
            e.execution = Execution::Refused(NOT_YET.into());
        }
    }
    e
}

/// The match of `sel` (`None`: a hook without selectors, which posts every call). With
/// `limits`, rate-limited Post actions are decided against the earlier events.
pub(crate) fn matched(
    hook_id: u32,
    h: &Hook,
    sel: Option<&Selector>,
    monitor: bool,
    ev: &EventView,
    limits: Option<&mut RateLimits>,
) -> Match {
    let actions: Vec<&Action> = sel
        .map(|s| s.actions.iter().chain(&s.return_actions).collect())
        .unwrap_or_default();
    let effects: Vec<ActionEffect> = actions.iter().map(|a| effect(a, h, monitor)).collect();
    let has = |k: ActionKind| {
        effects
            .iter()
            .any(|e| e.kind == k && !matches!(e.execution, Execution::Refused(_)))
    };
    let event_action = if has(ActionKind::Sigkill) {
        KprobeAction::Sigkill
    } else if has(ActionKind::Override) {
        KprobeAction::Override
    } else if has(ActionKind::Signal) {
        KprobeAction::Signal
    } else {
        KprobeAction::Post
    };
    // Every rate-limited Post consults (and updates) the table, even when NoPost follows.
    let limited_posts: Vec<&&Action> = actions
        .iter()
        .filter(|a| a.kind() == ActionKind::Post && a.rate_limit_ms > 0)
        .collect();
    let rate = match limits {
        None => limited_posts
            .iter()
            .map(|a| a.rate_limit_ms)
            .min()
            .map(|rate_limit_ms| Post::SentUnlessLimited { rate_limit_ms }),
        Some(table) => {
            let mut out = None;
            for a in &limited_posts {
                match table.limited(hook_id, h, a, ev) {
                    Ok(true) => out = Some(Post::RateLimited),
                    Ok(false) => {}
                    Err(e) => {
                        out.get_or_insert(Post::Unknown(e));
                    }
                }
            }
            out
        }
    };
    let post = if has(ActionKind::NoPost) {
        Post::Suppressed
    } else {
        rate.unwrap_or(Post::Sent)
    };
    Match {
        selector: sel.map(|s| s.index),
        actions: effects,
        post,
        event_action,
        monitor,
    }
}
