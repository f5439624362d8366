//! Evaluator: selectors (ORed, first match wins), matchReturnArgs, actions in enforce and
//! monitor mode, the event's action field, and rate limits replayed over a sequence.

mod common;

use common::*;
use vigil_api::events::KprobeAction;
use vigil_api::policy::eval::{
    ArgView, Evaluator, EventView, Execution, HookPoint, Match, Outcome, Post, Replay,
};
use vigil_api::policy::ir::{ActionKind, PolicyIr, PolicyMode};

fn actions(list: &str) -> PolicyIr {
    kprobe(
        "[{index: 0, type: int}]",
        &format!(
            "[{{matchArgs: [{{index: 0, operator: Equal, values: [\"1\"]}}], matchActions: {list}}}]"
        ),
    )
}

fn matched(ir: &PolicyIr, ev: &EventView) -> Match {
    match eval(ir, ev).outcome {
        Outcome::Match(m) => m,
        o => panic!("{o:?}"),
    }
}

fn one() -> EventView {
    call(vec![ArgView::Int(1)])
}

#[test]
fn selectors_are_ored_and_the_first_match_decides() {
    let ir = kprobe(
        "[{index: 0, type: int}]",
        "[{matchArgs: [{index: 0, operator: GT, values: [\"10\"]}], matchActions: [{action: Sigkill}]},
          {matchArgs: [{index: 0, operator: GT, values: [\"5\"]}], matchActions: [{action: NoPost}]},
          {matchArgs: [{index: 0, operator: GT, values: [\"0\"]}]}]",
    );
    let at = |v: i64| eval(&ir, &call(vec![ArgView::Int(v as u64)]));
    let m = at(20).matched().cloned().unwrap();
    assert_eq!(
        (m.selector, m.event_action),
        (Some(0), KprobeAction::Sigkill)
    );
    let v = at(7);
    assert_eq!(v.matched().unwrap().selector, Some(1));
    assert_eq!(v.matched().unwrap().post, Post::Suppressed);
    assert_eq!(
        v.selectors.len(),
        2,
        "selector 0 failed, selector 1 decided"
    );
    assert!(!v.selectors[0].decision.is_yes());
    let m = at(1).matched().cloned().unwrap();
    assert_eq!((m.selector, m.post.clone()), (Some(2), Post::Sent));
    assert!(m.actions.is_empty());
    assert_eq!(at(0).outcome, Outcome::NoMatch);
}

#[test]
fn an_undecided_selector_before_a_match_leaves_the_choice_open() {
    let ir = kprobe(
        "[{index: 0, type: int}]",
        "[{matchNamespaces: [{namespace: Net, operator: In, values: [host_ns]}], matchActions: [{action: Sigkill}]},
          {matchArgs: [{index: 0, operator: Equal, values: [\"1\"]}]}]",
    );
    match eval(&ir, &one()).outcome {
        Outcome::Unknown { possible, reasons } => {
            assert_eq!(possible, vec![0, 1]);
            assert!(
                reasons[0].starts_with("selector 0: matchNamespaces[0]"),
                "{reasons:?}"
            );
        }
        o => panic!("{o:?}"),
    }
    // When selector 1 does not match either, only selector 0 is possible.
    match eval(&ir, &call(vec![ArgView::Int(2)])).outcome {
        Outcome::Unknown { possible, .. } => assert_eq!(possible, vec![0]),
        o => panic!("{o:?}"),
    }
}

#[test]
fn a_hook_without_selectors_posts_every_call() {
    let ir = kprobe("[]", "[]");
    let m = matched(&ir, &call(vec![]));
    assert_eq!(m.selector, None);
    assert_eq!((m.post, m.event_action), (Post::Sent, KprobeAction::Post));
}

fn ret_policy(filters: &str) -> PolicyIr {
    policy(&format!(
        "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {{name: t}}
spec:
  kprobes:
  - call: fn_x
    syscall: false
    return: true
    args: [{{index: 0, type: int}}]
    returnArg: {{index: 0, type: int}}
    selectors:
    - matchArgs: [{{index: 0, operator: Equal, values: [\"1\"]}}]
      matchReturnArgs: {filters}
"
    ))
}

#[test]
fn match_return_args_compare_the_return_value() {
    let ir = ret_policy("[{index: 0, operator: LT, values: [\"0\"]}]");
    let with = |ret: Option<i64>| EventView { ret, ..one() };
    assert_eq!(outcome(&ir, &with(Some(-13))), "match 0");
    assert_eq!(outcome(&ir, &with(Some(0))), "no-match");
    assert!(unknown(&ir, &with(None)).contains("no return value"));
    // The entry filter still decides alone.
    let ev = EventView {
        ret: None,
        ..call(vec![ArgView::Int(2)])
    };
    assert_eq!(outcome(&ir, &ev), "no-match");
    let ir = ret_policy(
        "[{index: 0, operator: NotEqual, values: [\"0\"]}, {index: 0, operator: GT, values: [\"-100\"]}]",
    );
    assert_eq!(outcome(&ir, &with(Some(-13))), "match 0");
    assert_eq!(outcome(&ir, &with(Some(-200))), "no-match");
}

#[test]
fn post_and_no_post() {
    let m = matched(&actions("[{action: Post}]"), &one());
    assert_eq!(m.post, Post::Sent);
    assert_eq!(m.actions[0].kind, ActionKind::Post);
    assert_eq!(m.actions[0].execution, Execution::Done);
    let m = matched(&actions("[{action: NoPost}]"), &one());
    assert_eq!(m.post, Post::Suppressed);
    assert_eq!(m.event_action, KprobeAction::Post);
}

#[test]
fn sigkill_and_signal_run_in_enforce_mode() {
    let m = matched(&actions("[{action: Sigkill}]"), &one());
    assert_eq!(m.actions[0].signal, Some(9));
    assert_eq!(m.actions[0].execution, Execution::Done);
    assert_eq!(
        (m.event_action, m.post, m.monitor),
        (KprobeAction::Sigkill, Post::Sent, false)
    );
    let m = matched(&actions("[{action: Signal, argSig: 10}]"), &one());
    assert_eq!(m.actions[0].signal, Some(10));
    assert_eq!(m.event_action, KprobeAction::Signal);
    // Killed without an event.
    let m = matched(&actions("[{action: Sigkill}, {action: NoPost}]"), &one());
    assert_eq!(
        (m.event_action, m.post),
        (KprobeAction::Sigkill, Post::Suppressed)
    );
}

#[test]
fn monitor_mode_reports_enforcing_actions_without_running_them() {
    let ir = policy(
        "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: t}
spec:
  options: [{name: policy-mode, value: monitor}]
  lsmhooks:
  - hook: file_open
    selectors: [{matchActions: [{action: Sigkill}, {action: Override, argError: -1}]}]
",
    );
    let ev = EventView {
        point: HookPoint::Lsm {
            hook: "file_open".into(),
        },
        ..call(vec![])
    };
    let m = matched(&ir, &ev);
    assert!(m.monitor);
    assert!(
        m.actions
            .iter()
            .all(|a| a.execution == Execution::Monitored)
    );
    assert_eq!(
        (m.event_action, m.post),
        (KprobeAction::Sigkill, Post::Sent)
    );
    // The same policy switched to enforce.
    let e = Evaluator::new(&ir).unwrap().with_mode(PolicyMode::Enforce);
    let m = e.verdict(&ev).matched().cloned().unwrap();
    assert!(!m.monitor);
    assert!(m.actions.iter().all(|a| a.execution == Execution::Done));
    // And an enforcing policy switched to monitor.
    let ir = actions("[{action: Signal, argSig: 15}]");
    let e = Evaluator::new(&ir).unwrap().with_mode(PolicyMode::Monitor);
    let m = e.verdict(&one()).matched().cloned().unwrap();
    assert_eq!(m.actions[0].execution, Execution::Monitored);
    assert_eq!(m.event_action, KprobeAction::Signal);
}

#[test]
fn override_denies_only_where_bpf_lsm_serves_the_hook() {
    let lsm = policy(
        "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: t}
spec:
  kprobes:
  - call: security_file_open
    syscall: false
    selectors: [{matchActions: [{action: Override, argError: -13}]}]
  - call: sys_openat
    selectors: [{matchActions: [{action: Override, argError: -1}]}]
",
    );
    let at = |function: &str| {
        let ev = EventView {
            point: HookPoint::Kprobe {
                function: function.into(),
            },
            ..call(vec![])
        };
        matched(&lsm, &ev)
    };
    let m = at("security_file_open");
    assert_eq!(m.actions[0].error, Some(-13));
    assert_eq!(m.actions[0].execution, Execution::Done);
    assert_eq!(m.event_action, KprobeAction::Override);
    let m = at("__x64_sys_openat");
    match &m.actions[0].execution {
        Execution::Refused(why) => assert!(why.contains("bpf_override_return"), "{why}"),
        e => panic!("{e:?}"),
    }
    assert_eq!(
        m.event_action,
        KprobeAction::Post,
        "no override bit on the record"
    );
}

#[test]
fn sigkill_wins_over_override_and_signal_in_the_event() {
    let ir = policy(
        "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: t}
spec:
  lsmhooks:
  - hook: file_open
    selectors:
    - matchActions: [{action: Signal, argSig: 10}, {action: Override, argError: -1}]
      matchBinaries: [{operator: In, values: [/usr/bin/cat]}]
    - matchActions: [{action: Override, argError: -1}, {action: Sigkill}]
",
    );
    let ev = |bin: &str| EventView {
        point: HookPoint::Lsm {
            hook: "file_open".into(),
        },
        process: Some(proc(5, bin)),
        ..call(vec![])
    };
    assert_eq!(
        matched(&ir, &ev("/usr/bin/cat")).event_action,
        KprobeAction::Override
    );
    assert_eq!(
        matched(&ir, &ev("/bin/sh")).event_action,
        KprobeAction::Sigkill
    );
}

#[test]
fn actions_the_kernel_programs_lack_are_reported_as_refused() {
    let m = matched(
        &actions("[{action: GetUrl, argUrl: \"https://example.com/x\"}]"),
        &one(),
    );
    assert!(matches!(m.actions[0].execution, Execution::Refused(_)));
    assert_eq!(m.post, Post::Sent);
    let m = matched(&actions("[{action: Post, kernelStackTrace: true}]"), &one());
    match &m.actions[0].execution {
        Execution::Refused(why) => assert!(why.contains("stack traces")),
        e => panic!("{e:?}"),
    }
}

fn timed(ev: EventView, t_ms: u64) -> EventView {
    EventView {
        time_ns: Some(t_ms * 1_000_000),
        ..ev
    }
}

#[test]
fn rate_limits_are_stateless_in_a_single_verdict() {
    let ir = actions("[{action: Post, rateLimit: 1m}]");
    let m = matched(&ir, &timed(one(), 0));
    assert_eq!(
        m.post,
        Post::SentUnlessLimited {
            rate_limit_ms: 60_000
        }
    );
    assert_eq!(m.actions[0].rate_limit_ms, 60_000);
}

#[test]
fn rate_limits_replay_identical_events_per_interval() {
    let ir = kprobe(
        "[{index: 0, type: int}]",
        "[{matchActions: [{action: Post, rateLimit: 10s, rateLimitScope: process}]}]",
    );
    let mut r = Replay::new(Evaluator::new(&ir).unwrap());
    let mut post = |v: u64, pid: u32, t_ms: u64| {
        let mut ev = timed(call(vec![ArgView::Int(v)]), t_ms);
        ev.process.as_mut().unwrap().pid = Some(pid);
        r.next(&ev).matched().unwrap().post.clone()
    };
    assert_eq!(post(1, 100, 0), Post::Sent);
    assert_eq!(post(1, 100, 9_999), Post::RateLimited);
    assert_eq!(
        post(2, 100, 9_999),
        Post::Sent,
        "other arguments: another event"
    );
    assert_eq!(post(1, 101, 9_999), Post::Sent, "another process");
    // Measured from the last event posted, not the last one dropped.
    assert_eq!(post(1, 100, 10_000), Post::Sent);
    assert_eq!(post(1, 100, 15_000), Post::RateLimited);
    assert_eq!(post(1, 100, 20_000), Post::Sent);
}

#[test]
fn rate_limit_scopes_and_missing_data() {
    let ir = kprobe("[]", "[{matchActions: [{action: Post, rateLimit: 1s}]}]");
    let mut r = Replay::new(Evaluator::new(&ir).unwrap());
    let mut at = |tid: Option<u32>, time: Option<u64>| {
        let mut ev = call(vec![]);
        ev.process.as_mut().unwrap().tid = tid;
        ev.time_ns = time;
        r.next(&ev).matched().unwrap().post.clone()
    };
    // Default scope is the thread.
    assert_eq!(at(Some(7), Some(0)), Post::Sent);
    assert_eq!(at(Some(7), Some(1)), Post::RateLimited);
    assert_eq!(at(Some(8), Some(1)), Post::Sent);
    assert!(matches!(at(None, Some(2)), Post::Unknown(w) if w.contains("no tid")));
    assert!(matches!(at(Some(7), None), Post::Unknown(w) if w.contains("no time")));
    let ir = kprobe(
        "[]",
        "[{matchActions: [{action: Post, rateLimit: 1s, rateLimitScope: global}]}]",
    );
    let mut r = Replay::new(Evaluator::new(&ir).unwrap());
    let mut at = |pid: u32, t: u64| {
        let mut ev = timed(call(vec![]), t);
        ev.process = Some(proc(pid, "/x"));
        r.next(&ev).matched().unwrap().post.clone()
    };
    assert_eq!(at(1, 0), Post::Sent);
    assert_eq!(at(2, 500), Post::RateLimited, "global: any process");
    assert_eq!(at(2, 1000), Post::Sent);
}

#[test]
fn a_rate_limit_is_consulted_even_when_no_post_suppresses_the_event() {
    let ir = kprobe(
        "[{index: 0, type: int}]",
        "[{matchArgs: [{index: 0, operator: Equal, values: [\"1\"]}], matchActions: [{action: Post, rateLimit: 1m}, {action: NoPost}]}]",
    );
    let mut r = Replay::new(Evaluator::new(&ir).unwrap());
    assert_eq!(
        r.next(&timed(one(), 0)).matched().unwrap().post,
        Post::Suppressed
    );
    assert_eq!(
        r.next(&timed(one(), 1)).matched().unwrap().post,
        Post::Suppressed
    );
}

#[test]
fn unsupported_ir_versions_are_refused() {
    let mut ir = actions("[{action: Post}]");
    ir.ir_version = 99;
    let e = Evaluator::new(&ir).err().unwrap();
    assert!(e.to_string().contains("version 99"), "{e}");
}
