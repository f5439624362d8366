//! A user-space evaluator of the compiled policy IR with the kernel programs' semantics
//! (`sensor-bpf/bpf/hook.bpf.c` as lowered by the sensor's `hooks/lower.rs`): given a policy and
//! one hook call, which hook the call belongs to, which selector matches first, and what its
//! actions do. No I/O.
//!
//! ```text
//! event JSON ──EventView::from_event──► EventView ──Evaluator::verdict──► Verdict
//!                       (or built directly by a test)   (Replay: with rate limits)
//! ```
//!
//! The order is the kernel's: the policy's workload scope, then per selector the process-level
//! filters, the argument filters and the return filters (ANDed); selectors are ORed and the
//! first that matches decides; a hook without selectors posts every call. Where the view lacks
//! something the kernel would have read, the verdict says so ([`Outcome::Unknown`]) instead of
//! guessing; a definite "no" from another filter of the same selector still decides.
//!
//! What cannot be reproduced from events is listed in `docs/policy-reference.md`
//! ("Testing a policy against recorded events").

mod actions;
mod args;
mod from_event;
mod hooks;
mod process;
mod ratelimit;
mod scope;
mod verdict;
mod view;

pub use from_event::{arg_view, proc_view};
pub use hooks::describe as describe_hook;
pub use process::{ANCESTOR_DEPTH, BIN_KEEP};
pub use ratelimit::RateLimits;
pub use verdict::{
    ActionEffect, Decision, Execution, HookRef, Match, Outcome, Post, SelectorTrace, Verdict,
    action_name,
};
pub use view::{
    ArgView, CapSets, EventView, HookPoint, Ns, NsSet, PodView, ProcView, SockView, SockaddrView,
};

use crate::policy::IR_VERSION;
use crate::policy::ir::{PolicyIr, PolicyMode};
use hooks::HookMatcher;

/// Why a policy cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The IR was written for another schema version.
    #[error(
        "policy IR version {found} is not supported (this evaluator reads version {supported})"
    )]
    IrVersion { found: u32, supported: u32 },
    /// A generated_ftrace list's pattern is not a valid regular expression.
    #[error("{hook}: generated_ftrace pattern {pattern:?}: {message}")]
    Pattern {
        hook: String,
        pattern: String,
        message: String,
    },
}

/// One policy, ready to evaluate calls.
pub struct Evaluator<'a> {
    ir: &'a PolicyIr,
    monitor: bool,
    matchers: Vec<HookMatcher>,
}

impl<'a> Evaluator<'a> {
    pub fn new(ir: &'a PolicyIr) -> Result<Self, EvalError> {
        if ir.ir_version != IR_VERSION {
            return Err(EvalError::IrVersion {
                found: ir.ir_version,
                supported: IR_VERSION,
            });
        }
        let matchers = ir
            .hooks
            .iter()
            .map(|h| {
                HookMatcher::new(h).map_err(|e| EvalError::Pattern {
                    hook: h.source.clone(),
                    pattern: h
                        .generated
                        .as_ref()
                        .map(|g| g.pattern.clone())
                        .unwrap_or_default(),
                    message: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Evaluator {
            ir,
            monitor: ir.mode() == PolicyMode::Monitor,
            matchers,
        })
    }

    /// Evaluate as if the policy ran in `mode` (as after `vigil policy set-mode`).
    pub fn with_mode(mut self, mode: PolicyMode) -> Self {
        self.monitor = mode == PolicyMode::Monitor;
        self
    }

    pub fn ir(&self) -> &PolicyIr {
        self.ir
    }

    /// The verdict on one call, without state: a rate-limited Post is reported as
    /// [`Post::SentUnlessLimited`].
    pub fn verdict(&self, ev: &EventView) -> Verdict {
        self.evaluate(ev, None)
    }

    fn evaluate(&self, ev: &EventView, limits: Option<&mut RateLimits>) -> Verdict {
        let found = self
            .ir
            .hooks
            .iter()
            .zip(&self.matchers)
            .enumerate()
            .find_map(|(i, (h, m))| m.matches(h, &ev.point).map(|note| (i, note)));
        let Some((id, note)) = found else {
            return Verdict {
                hook: None,
                outcome: Outcome::NoHook(format!("the policy has no hook on {}", ev.point)),
                selectors: Vec::new(),
            };
        };
        let h = &self.ir.hooks[id];
        let id = id as u32;
        let hook = Some(HookRef {
            id,
            source: h.source.clone(),
            target: hooks::describe(h),
            note,
        });
        match scope::check(self.ir, ev) {
            Decision::Yes => {}
            Decision::No(why) => {
                return Verdict {
                    hook,
                    outcome: Outcome::OutOfScope(why),
                    selectors: Vec::new(),
                };
            }
            Decision::Unknown(why) => {
                return Verdict {
                    hook,
                    outcome: Outcome::Unknown {
                        possible: (0..h.selectors.len() as u32).collect(),
                        reasons: vec![why],
                    },
                    selectors: Vec::new(),
                };
            }
        }
        if h.selectors.is_empty() {
            let m = actions::matched(id, h, None, self.monitor, ev, limits);
            return Verdict {
                hook,
                outcome: Outcome::Match(m),
                selectors: Vec::new(),
            };
        }
        let mut traces = Vec::new();
        let mut possible = Vec::new();
        let mut reasons = Vec::new();
        for (i, sel) in h.selectors.iter().enumerate() {
            let d = process::check(sel, ev)
                .and(|| args::check_args(h, &sel.args, ev))
                .and(|| args::check_return(&sel.return_args, ev));
            traces.push(SelectorTrace {
                index: i as u32,
                decision: d.clone(),
            });
            match d {
                Decision::No(_) => {}
                Decision::Unknown(why) => {
                    possible.push(i as u32);
                    reasons.push(format!("selector {i}: {why}"));
                }
                Decision::Yes if possible.is_empty() => {
                    let m = actions::matched(id, h, Some(sel), self.monitor, ev, limits);
                    return Verdict {
                        hook,
                        outcome: Outcome::Match(m),
                        selectors: traces,
                    };
                }
                Decision::Yes => {
                    possible.push(i as u32);
                    break;
                }
            }
        }
        let outcome = if possible.is_empty() {
            Outcome::NoMatch
        } else {
            Outcome::Unknown { possible, reasons }
        };
        Verdict {
            hook,
            outcome,
            selectors: traces,
        }
    }
}

/// Evaluates a sequence of calls in order, with the state the kernel keeps between them (the
/// rate-limit table).
pub struct Replay<'a> {
    eval: Evaluator<'a>,
    limits: RateLimits,
}

impl<'a> Replay<'a> {
    pub fn new(eval: Evaluator<'a>) -> Self {
        Replay {
            eval,
            limits: RateLimits::default(),
        }
    }

    pub fn evaluator(&self) -> &Evaluator<'a> {
        &self.eval
    }

    /// The verdict on the next call of the sequence.
    pub fn next(&mut self, ev: &EventView) -> Verdict {
        self.eval.evaluate(ev, Some(&mut self.limits))
    }
}

/// The verdict of `ir` on one call (stateless; see [`Evaluator`] to evaluate many).
pub fn verdict(ir: &PolicyIr, ev: &EventView) -> Result<Verdict, EvalError> {
    Ok(Evaluator::new(ir)?.verdict(ev))
}
