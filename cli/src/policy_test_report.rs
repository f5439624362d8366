//! `vigil policy test`: what the verdicts add up to, per policy, hook and selector, and how it
//! is printed (text or JSON).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};
use vigil_api::policy::eval::{
    ArgView, EventView, Execution, Outcome, Post, Verdict, action_name, describe_hook,
};
use vigil_api::policy::ir::{ActionKind, PolicyIr, Selector};

/// Events of one selector (or of a hook without selectors).
#[derive(Debug, Default, Clone)]
pub struct SelectorTally {
    /// Selector index; `None` for "every call" (a hook without selectors).
    pub index: Option<u32>,
    /// The actions as written (`Sigkill`, `Post (rateLimit 60000 ms)`, …).
    pub actions: Vec<String>,
    /// Matched events: (line, one-line description).
    pub lines: Vec<(usize, String)>,
    pub posted: usize,
    pub suppressed: usize,
    pub rate_limited: usize,
    /// Posted unless rate limited (stateless), or the rate limit could not be evaluated.
    pub maybe_limited: usize,
    /// Actions the sensor cannot carry out (reason), from the first match.
    pub refused: Vec<String>,
}

/// Events of one hook.
#[derive(Debug, Default, Clone)]
pub struct HookTally {
    pub source: String,
    pub target: String,
    pub events: usize,
    pub selectors: Vec<SelectorTally>,
    pub no_match: Vec<usize>,
    /// (line, reason)
    pub out_of_scope: Vec<(usize, String)>,
    /// (line, possible selectors, reasons)
    pub unknown: Vec<(usize, Vec<u32>, Vec<String>)>,
    /// Notes such as "kprobe event … evaluated for LSM hook …", with their count.
    pub notes: BTreeMap<String, usize>,
}

/// Everything about one policy.
#[derive(Debug, Clone)]
pub struct PolicyTally {
    pub name: String,
    pub monitor: bool,
    pub hooks: Vec<HookTally>,
    /// Hook events for none of the policy's hooks.
    pub no_hook: usize,
}

/// What was read.
#[derive(Debug, Default, Clone)]
pub struct InputTally {
    pub lines: usize,
    pub hook_events: usize,
    /// process_exec / process_exit: no hook fired.
    pub process_events: usize,
    /// Event kinds the evaluator does not look at (process_throttle, rate_limit_info,
    /// vigil_policy_demoted, …).
    pub skipped: usize,
    pub malformed: usize,
    /// Fields this version does not know (a newer Tetragon or Vigil wrote them), by path:
    /// dropped from the events that had them, with the number of such events.
    pub unknown_fields: BTreeMap<String, usize>,
}

/// The actions of a selector as written; a selector without actions posts.
fn describe_actions(sel: &Selector, monitor: bool) -> Vec<String> {
    if sel.actions.is_empty() && sel.return_actions.is_empty() {
        return vec!["Post".into()];
    }
    sel.actions
        .iter()
        .chain(&sel.return_actions)
        .map(|a| {
            let k = a.kind();
            let mut s = action_name(k).to_string();
            match k {
                ActionKind::Signal => {
                    let _ = write!(s, " {}", vigil_api::events::signal_name(a.signal as i32));
                }
                ActionKind::Override => {
                    let _ = write!(s, " {}", a.error.unwrap_or(-1));
                }
                ActionKind::Post if a.rate_limit_ms > 0 => {
                    let _ = write!(s, " (rateLimit {} ms)", a.rate_limit_ms);
                }
                _ => {}
            }
            let enforcing = matches!(
                k,
                ActionKind::Sigkill | ActionKind::Signal | ActionKind::Override
            );
            if monitor && enforcing {
                s.push_str(" [monitor]");
            }
            s
        })
        .collect()
}

impl PolicyTally {
    pub fn new(ir: &PolicyIr, monitor: bool) -> Self {
        let hooks = ir
            .hooks
            .iter()
            .map(|h| {
                let selectors = if h.selectors.is_empty() {
                    vec![SelectorTally {
                        actions: vec!["Post".into()],
                        ..Default::default()
                    }]
                } else {
                    h.selectors
                        .iter()
                        .enumerate()
                        .map(|(i, s)| SelectorTally {
                            index: Some(i as u32),
                            actions: describe_actions(s, monitor),
                            ..Default::default()
                        })
                        .collect()
                };
                HookTally {
                    source: h.source.clone(),
                    target: describe_hook(h),
                    selectors,
                    ..Default::default()
                }
            })
            .collect();
        PolicyTally {
            name: ir
                .identity
                .as_ref()
                .map(|i| i.name.clone())
                .unwrap_or_default(),
            monitor,
            hooks,
            no_hook: 0,
        }
    }

    /// Adds the verdict on the event of `line`.
    pub fn add(&mut self, line: usize, ev: &EventView, v: &Verdict) {
        let Some(h) = &v.hook else {
            self.no_hook += 1;
            return;
        };
        let Some(t) = self.hooks.get_mut(h.id as usize) else {
            return;
        };
        t.events += 1;
        if let Some(n) = &h.note {
            *t.notes.entry(n.clone()).or_insert(0) += 1;
        }
        match &v.outcome {
            Outcome::NoHook(_) => {}
            Outcome::OutOfScope(why) => t.out_of_scope.push((line, why.clone())),
            Outcome::NoMatch => t.no_match.push(line),
            Outcome::Unknown { possible, reasons } => {
                t.unknown.push((line, possible.clone(), reasons.clone()));
            }
            Outcome::Match(m) => {
                let pos = m.selector.unwrap_or(0) as usize;
                let Some(s) = t.selectors.get_mut(pos) else {
                    return;
                };
                s.lines.push((line, describe_event(ev)));
                match &m.post {
                    Post::Sent => s.posted += 1,
                    Post::Suppressed => s.suppressed += 1,
                    Post::RateLimited => s.rate_limited += 1,
                    Post::SentUnlessLimited { .. } | Post::Unknown(_) => s.maybe_limited += 1,
                }
                if s.refused.is_empty() {
                    s.refused = m
                        .actions
                        .iter()
                        .filter_map(|a| match &a.execution {
                            Execution::Refused(why) => {
                                Some(format!("{}: {why}", action_name(a.kind)))
                            }
                            _ => None,
                        })
                        .collect();
                }
            }
        }
    }

    pub fn matched(&self) -> usize {
        self.hooks
            .iter()
            .flat_map(|h| &h.selectors)
            .map(|s| s.lines.len())
            .sum()
    }

    pub fn unknown(&self) -> usize {
        self.hooks.iter().map(|h| h.unknown.len()).sum()
    }
}

/// One line about a call: binary, pid, arguments, return value.
pub fn describe_event(ev: &EventView) -> String {
    let mut s = String::new();
    if let Some(p) = &ev.process {
        s.push_str(p.binary.as_deref().unwrap_or("?"));
        if let Some(pid) = p.pid {
            let _ = write!(s, " (pid {pid})");
        }
    }
    let args: Vec<String> = ev.args.iter().map(describe_arg).collect();
    if !args.is_empty() {
        let _ = write!(s, ": {}", args.join(", "));
    }
    if let Some(r) = ev.ret {
        let _ = write!(s, " → returned {r}");
    }
    s
}

fn describe_arg(a: &ArgView) -> String {
    match a {
        ArgView::Int(v) => (*v as i64).to_string(),
        ArgView::Text { bytes, .. } => {
            let t = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]);
            let more = if bytes.len() > 80 { "…" } else { "" };
            format!("{t}{more}")
        }
        ArgView::Sock(k) => {
            let a = |x: &Option<std::net::IpAddr>| x.map(|a| a.to_string()).unwrap_or_default();
            format!("{}:{} -> {}:{}", a(&k.saddr), k.sport, a(&k.daddr), k.dport)
        }
        ArgView::Sockaddr(k) => format!(
            "{}:{}",
            k.addr.map(|a| a.to_string()).unwrap_or_default(),
            k.port
        ),
        ArgView::Unreadable => "(unreadable)".into(),
        ArgView::Opaque(name) => format!("({name})"),
    }
}

fn lines_list(lines: impl Iterator<Item = usize>, max: usize) -> String {
    let all: Vec<usize> = lines.collect();
    let shown: Vec<String> = all.iter().take(max.max(1)).map(usize::to_string).collect();
    let more = if all.len() > shown.len() {
        format!(" … and {} more", all.len() - shown.len())
    } else {
        String::new()
    };
    format!("{}{more}", shown.join(", "))
}

/// The text report; `max` matched events listed per selector (0: counts only).
pub fn render_text(input: &InputTally, policies: &[PolicyTally], max: usize) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} line(s): {} hook event(s), {} process exec/exit event(s){}{}",
        input.lines,
        input.hook_events,
        input.process_events,
        if input.skipped > 0 {
            format!(", {} of other kinds skipped", input.skipped)
        } else {
            String::new()
        },
        if input.malformed > 0 {
            format!(", {} malformed", input.malformed)
        } else {
            String::new()
        },
    );
    if !input.unknown_fields.is_empty() {
        let fields: Vec<String> = input
            .unknown_fields
            .iter()
            .map(|(path, n)| format!("{path} ({n} event(s))"))
            .collect();
        let _ = writeln!(
            o,
            "fields this version does not know, ignored (they cannot change a verdict): {}",
            fields.join(", ")
        );
    }
    for p in policies {
        let _ = writeln!(
            o,
            "\npolicy {} (mode {}): {} matched, {} unknown, {} hook event(s) for other hooks",
            p.name,
            if p.monitor { "monitor" } else { "enforce" },
            p.matched(),
            p.unknown(),
            p.no_hook
        );
        for h in &p.hooks {
            render_hook(&mut o, h, max);
        }
    }
    o
}

fn render_hook(o: &mut String, h: &HookTally, max: usize) {
    if h.events == 0 {
        let _ = writeln!(o, "  {} {}: no events", h.source, h.target);
        return;
    }
    let _ = writeln!(o, "  {} {}: {} event(s)", h.source, h.target, h.events);
    for (note, n) in &h.notes {
        let _ = writeln!(o, "    note: {note} ({n} event(s))");
    }
    for s in &h.selectors {
        let name = match s.index {
            Some(i) => format!("selector {i}"),
            None => "every call (no selectors)".to_string(),
        };
        let actions = s.actions.join(", ");
        let mut counts = vec![format!("{} posted", s.posted)];
        for (n, what) in [
            (s.suppressed, "not posted (NoPost)"),
            (s.rate_limited, "rate limited"),
            (s.maybe_limited, "posted unless rate limited"),
        ] {
            if n > 0 {
                counts.push(format!("{n} {what}"));
            }
        }
        let _ = writeln!(
            o,
            "    {name} → {actions}: {} event(s) ({})",
            s.lines.len(),
            counts.join(", ")
        );
        for r in &s.refused {
            let _ = writeln!(o, "      refused by the sensor: {r}");
        }
        for (line, what) in s.lines.iter().take(max) {
            let _ = writeln!(o, "      line {line}: {what}");
        }
        if max > 0 && s.lines.len() > max {
            let _ = writeln!(o, "      … and {} more", s.lines.len() - max);
        }
    }
    if !h.no_match.is_empty() {
        let _ = writeln!(
            o,
            "    no selector matched: {} event(s) (lines {})",
            h.no_match.len(),
            lines_list(h.no_match.iter().copied(), max)
        );
    }
    if !h.out_of_scope.is_empty() {
        let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (l, why) in &h.out_of_scope {
            by.entry(why).or_default().push(*l);
        }
        for (why, lines) in by {
            let _ = writeln!(
                o,
                "    out of the policy's scope: {} event(s): {why} (lines {})",
                lines.len(),
                lines_list(lines.into_iter(), max)
            );
        }
    }
    if !h.unknown.is_empty() {
        let mut by: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (l, _, reasons) in &h.unknown {
            by.entry(reasons.join("; ")).or_default().push(*l);
        }
        for (why, lines) in by {
            let _ = writeln!(
                o,
                "    unknown: {} event(s): {why} (lines {})",
                lines.len(),
                lines_list(lines.into_iter(), max)
            );
        }
    }
}

/// The JSON report (every line number, no descriptions).
pub fn render_json(input: &InputTally, policies: &[PolicyTally], expectation: Value) -> Value {
    let policies: Vec<Value> = policies
        .iter()
        .map(|p| {
            let hooks: Vec<Value> = p
                .hooks
                .iter()
                .map(|h| {
                    let selectors: Vec<Value> = h
                        .selectors
                        .iter()
                        .map(|s| {
                            json!({
                                "index": s.index,
                                "actions": s.actions,
                                "matched": s.lines.len(),
                                "posted": s.posted,
                                "not_posted": s.suppressed,
                                "rate_limited": s.rate_limited,
                                "posted_unless_rate_limited": s.maybe_limited,
                                "refused": s.refused,
                                "lines": s.lines.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
                            })
                        })
                        .collect();
                    json!({
                        "source": h.source,
                        "target": h.target,
                        "events": h.events,
                        "selectors": selectors,
                        "no_match": h.no_match,
                        "out_of_scope": h.out_of_scope.iter()
                            .map(|(l, why)| json!({"line": l, "reason": why}))
                            .collect::<Vec<_>>(),
                        "unknown": h.unknown.iter()
                            .map(|(l, possible, reasons)| json!({
                                "line": l, "possible_selectors": possible, "reasons": reasons
                            }))
                            .collect::<Vec<_>>(),
                        "notes": h.notes,
                    })
                })
                .collect();
            json!({
                "name": p.name,
                "mode": if p.monitor { "monitor" } else { "enforce" },
                "matched": p.matched(),
                "unknown": p.unknown(),
                "other_hook_events": p.no_hook,
                "hooks": hooks,
            })
        })
        .collect();
    json!({
        "input": {
            "lines": input.lines,
            "hook_events": input.hook_events,
            "process_events": input.process_events,
            "skipped": input.skipped,
            "malformed": input.malformed,
            "unknown_fields": input.unknown_fields,
        },
        "policies": policies,
        "expectation": expectation,
    })
}
