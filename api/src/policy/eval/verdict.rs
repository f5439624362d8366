//! The evaluator's output: which hook, which selector, which actions.

use std::fmt;

use crate::events::KprobeAction;
use crate::policy::ir::ActionKind;

/// The result of one filter, one selector or one scope check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Yes,
    /// Does not match; why (the first filter that failed).
    No(String),
    /// Cannot be decided from what is known about the call; why.
    Unknown(String),
}

impl Decision {
    /// `Yes` when `cond`, else `No(why())`.
    pub(crate) fn from_bool(cond: bool, why: impl FnOnce() -> String) -> Self {
        if cond {
            Decision::Yes
        } else {
            Decision::No(why())
        }
    }

    /// Both must hold (the kernel ANDs the filters of a selector): a definite `No` anywhere
    /// decides, even after an unknown; otherwise the first unknown is kept.
    pub(crate) fn and(self, other: impl FnOnce() -> Decision) -> Decision {
        match self {
            Decision::No(_) => self,
            Decision::Yes => other(),
            Decision::Unknown(u) => match other() {
                no @ Decision::No(_) => no,
                _ => Decision::Unknown(u),
            },
        }
    }

    /// Either may hold: a definite `Yes` anywhere decides, otherwise the first unknown.
    pub(crate) fn or(self, other: impl FnOnce() -> Decision) -> Decision {
        match self {
            Decision::Yes => self,
            Decision::No(n) => match other() {
                Decision::No(_) => Decision::No(n),
                d => d,
            },
            Decision::Unknown(u) => match other() {
                Decision::Yes => Decision::Yes,
                _ => Decision::Unknown(u),
            },
        }
    }

    pub fn is_yes(&self) -> bool {
        matches!(self, Decision::Yes)
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Yes => f.write_str("matches"),
            Decision::No(why) => write!(f, "no: {why}"),
            Decision::Unknown(why) => write!(f, "unknown: {why}"),
        }
    }
}

/// The verdict on one event for one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The hook the event belongs to; `None` when it belongs to none of the policy's hooks.
    pub hook: Option<HookRef>,
    pub outcome: Outcome,
    /// How each selector evaluated, in order, up to the one that decided.
    pub selectors: Vec<SelectorTrace>,
}

impl Verdict {
    /// The match, when a selector (or a hook without selectors) matched.
    pub fn matched(&self) -> Option<&Match> {
        match &self.outcome {
            Outcome::Match(m) => Some(m),
            _ => None,
        }
    }
}

/// A hook of the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRef {
    /// Position in `PolicyIr.hooks`.
    pub id: u32,
    /// Where it came from in the manifest (`spec.kprobes[0]`).
    pub source: String,
    /// What it hooks, e.g. `kprobe security_file_open`.
    pub target: String,
    /// Set when the event came from a different kind of hook on the same kernel function (a
    /// `security_*` kprobe event evaluated for an LSM hook, or the other way round).
    pub note: Option<String>,
}

/// What the kernel programs would do with the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// None of the policy's hooks is attached where the event was raised.
    NoHook(String),
    /// The policy's workload scope (pods, containers, host) leaves the process out.
    OutOfScope(String),
    /// Every selector decided "no": nothing happens.
    NoMatch,
    Match(Match),
    /// Cannot be decided: `possible` are the selectors that might be the first to match (the
    /// undecided ones, and the first one after them that matches); `reasons` say what is missing.
    Unknown {
        possible: Vec<u32>,
        reasons: Vec<String>,
    },
}

impl Outcome {
    /// A short name: `no-hook`, `out-of-scope`, `no-match`, `match`, `unknown`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::NoHook(_) => "no-hook",
            Outcome::OutOfScope(_) => "out-of-scope",
            Outcome::NoMatch => "no-match",
            Outcome::Match(_) => "match",
            Outcome::Unknown { .. } => "unknown",
        }
    }
}

/// One selector's evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorTrace {
    /// Position in the hook's selectors.
    pub index: u32,
    pub decision: Decision,
}

/// A hook matched the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The first selector that matched; `None` for a hook without selectors (every call).
    pub selector: Option<u32>,
    /// The selector's actions (matchActions, then matchReturnActions), in order.
    pub actions: Vec<ActionEffect>,
    /// Whether an event is written.
    pub post: Post,
    /// The `action` field the event carries (Sigkill, then Override, then Signal, else Post).
    pub event_action: KprobeAction,
    /// The policy runs in monitor mode: enforcing actions are reported, not carried out.
    pub monitor: bool,
}

/// One action of the matching selector and what becomes of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionEffect {
    pub kind: ActionKind,
    /// Signal sent (Sigkill: 9, Signal: its argSig).
    pub signal: Option<u32>,
    /// Value the call fails with (Override).
    pub error: Option<i32>,
    /// Post: minimum interval between identical events (0: none).
    pub rate_limit_ms: u64,
    pub execution: Execution,
}

/// Whether an action is carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Execution {
    /// Carried out (for Post and NoPost: see [`Match::post`]).
    Done,
    /// Monitor mode: flagged on the event, counted, not carried out.
    Monitored,
    /// Vigil's kernel programs cannot carry it out here; the sensor refuses the policy at load
    /// with this reason.
    Refused(String),
}

/// Whether the call produces an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Post {
    /// An event is written.
    Sent,
    /// A NoPost action suppresses the event (other actions still run).
    Suppressed,
    /// A rateLimit of the Post action suppresses it: an identical event was posted less than
    /// the interval before (stateful replay only).
    RateLimited,
    /// Stateless evaluation of a rate-limited Post: sent unless an identical event was posted
    /// within `rate_limit_ms` before.
    SentUnlessLimited { rate_limit_ms: u64 },
    /// The rate limit could not be evaluated; why.
    Unknown(String),
}

impl fmt::Display for Post {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Post::Sent => f.write_str("posted"),
            Post::Suppressed => f.write_str("not posted (NoPost)"),
            Post::RateLimited => f.write_str("not posted (rate limited)"),
            Post::SentUnlessLimited { rate_limit_ms } => {
                write!(f, "posted unless rate limited ({rate_limit_ms} ms)")
            }
            Post::Unknown(why) => write!(f, "rate limit unknown: {why}"),
        }
    }
}

impl fmt::Display for ActionEffect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(action_name(self.kind))?;
        match self.kind {
            ActionKind::Signal | ActionKind::NotifyEnforcer if self.signal.is_some() => {
                write!(
                    f,
                    " {}",
                    crate::events::signal_name(self.signal.unwrap_or(0) as i32)
                )?;
            }
            _ => {}
        }
        if let Some(e) = self.error {
            write!(f, " {e}")?;
        }
        if self.rate_limit_ms > 0 {
            write!(f, " (rateLimit {} ms)", self.rate_limit_ms)?;
        }
        match &self.execution {
            Execution::Done => Ok(()),
            Execution::Monitored => f.write_str(" [monitor: not executed]"),
            Execution::Refused(why) => write!(f, " [refused by the sensor: {why}]"),
        }
    }
}

/// The manifest spelling of an action kind (`Sigkill`, `NoPost`, …).
pub fn action_name(k: ActionKind) -> &'static str {
    match k {
        ActionKind::Unspecified => "?",
        ActionKind::Post => "Post",
        ActionKind::NoPost => "NoPost",
        ActionKind::Sigkill => "Sigkill",
        ActionKind::Signal => "Signal",
        ActionKind::Override => "Override",
        ActionKind::NotifyEnforcer => "NotifyEnforcer",
        ActionKind::CleanupEnforcerNotification => "CleanupEnforcerNotification",
        ActionKind::TrackSock => "TrackSock",
        ActionKind::UntrackSock => "UntrackSock",
        ActionKind::GetUrl => "GetUrl",
        ActionKind::DnsLookup => "DnsLookup",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no() -> Decision {
        Decision::No("n".into())
    }
    fn unk() -> Decision {
        Decision::Unknown("u".into())
    }

    #[test]
    fn and_lets_a_definite_no_win_over_unknown() {
        assert_eq!(Decision::Yes.and(|| Decision::Yes), Decision::Yes);
        assert_eq!(Decision::Yes.and(no), no());
        assert_eq!(unk().and(no), no());
        assert_eq!(unk().and(|| Decision::Yes), unk());
        assert_eq!(Decision::Yes.and(unk), unk());
        assert_eq!(no().and(|| panic!("not evaluated after a no")), no());
    }

    #[test]
    fn or_lets_a_definite_yes_win_over_unknown() {
        assert_eq!(no().or(no), no());
        assert_eq!(no().or(|| Decision::Yes), Decision::Yes);
        assert_eq!(unk().or(|| Decision::Yes), Decision::Yes);
        assert_eq!(unk().or(no), unk());
        assert_eq!(no().or(unk), unk());
        assert_eq!(
            Decision::Yes.or(|| panic!("not evaluated after a yes")),
            Decision::Yes
        );
    }
}
