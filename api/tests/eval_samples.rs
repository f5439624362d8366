//! Evaluator on real Tetragon output: the sample events (api/src/events/testdata, copied from
//! shared/events) through the Tetragon example policies that produced them, and through the
//! whole example corpus (shared/policies/tetragon-examples, found as policy_corpus.rs finds it;
//! override with VIGIL_POLICY_CORPUS).

use std::path::{Path, PathBuf};

use vigil_api::events::GetEventsResponse;
use vigil_api::policy::compile_yaml;
use vigil_api::policy::eval::{Evaluator, EventView, Outcome, Post, Replay};
use vigil_api::policy::ir::PolicyIr;

const SAMPLES: &str = include_str!("../src/events/testdata/tetragon-sample-events.jsonl");

fn corpus_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("VIGIL_POLICY_CORPUS") {
        return PathBuf::from(p);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|a| a.join("shared/policies/tetragon-examples"))
        .chain([PathBuf::from("/work/shared/policies/tetragon-examples")])
        .find(|p| p.is_dir())
        .unwrap_or_else(|| {
            panic!(
                "Tetragon example corpus not found next to {} or in /work/shared; set VIGIL_POLICY_CORPUS",
                manifest.display()
            )
        })
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

fn example(name: &str) -> PolicyIr {
    let path = corpus_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    compile_yaml(&text).unwrap().remove(0)
}

fn events() -> Vec<(GetEventsResponse, Option<EventView>)> {
    SAMPLES
        .lines()
        .map(|l| {
            let ev = GetEventsResponse::from_json(l).unwrap();
            let view = EventView::from_event(&ev);
            (ev, view)
        })
        .collect()
}

/// (matched, not matched, not for the policy) over the sample hook events.
fn counts(ir: &PolicyIr) -> (usize, usize, usize) {
    let e = Evaluator::new(ir).unwrap();
    let (mut matched, mut not, mut other) = (0, 0, 0);
    for (_, view) in events() {
        let Some(view) = view else { continue };
        match e.verdict(&view).outcome {
            Outcome::NoHook(_) => other += 1,
            Outcome::Match(_) => matched += 1,
            Outcome::NoMatch => not += 1,
            o => panic!("{o:?}"),
        }
    }
    (matched, not, other)
}

#[test]
fn the_policies_that_produced_the_samples_match_their_events() {
    // 8 security_file_permission events, all on /etc/ paths.
    assert_eq!(counts(&example("filename_monitoring.yaml")), (8, 0, 9));
    // 5 tcp events; the policy has no selectors.
    assert_eq!(counts(&example("tcp-connect.yaml")), (5, 0, 12));
    // cat opening /etc/passwd; the three security_file_open kprobe events (another policy's)
    // stand for the same LSM hook, by /bin/bench: not matched.
    assert_eq!(counts(&example("lsm_file_open.yaml")), (1, 3, 13));
}

#[test]
fn the_verdict_reproduces_each_recorded_action() {
    let policies = [
        example("filename_monitoring.yaml"),
        example("tcp-connect.yaml"),
        example("lsm_file_open.yaml"),
    ];
    let mut checked = 0;
    for (ev, view) in events() {
        let Some(view) = view else { continue };
        let Some(ir) = policies
            .iter()
            .find(|p| p.identity.as_ref().unwrap().name == view.policy_name)
        else {
            continue;
        };
        let recorded = ev
            .process_kprobe
            .as_ref()
            .map(|k| k.action)
            .or(ev.process_lsm.as_ref().map(|l| l.action))
            .unwrap();
        let v = Evaluator::new(ir).unwrap().verdict(&view);
        let m = v
            .matched()
            .unwrap_or_else(|| panic!("{v:?} for {}", view.point));
        assert_eq!(m.event_action, recorded, "{}", view.point);
        assert_eq!(m.post, Post::Sent);
        checked += 1;
    }
    assert_eq!(checked, 14);
}

#[test]
fn a_narrower_policy_over_the_samples_is_decided_event_by_event() {
    // Only cat reading /etc/passwd: the lsm sample, not the tetragon process's reads.
    let ir = compile_yaml(
        "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: narrow}
spec:
  kprobes:
  - call: security_file_permission
    syscall: false
    return: true
    args: [{index: 0, type: file}, {index: 1, type: int}]
    returnArg: {index: 0, type: int}
    selectors:
    - matchArgs: [{index: 0, operator: Postfix, values: [tcp-connect.yaml]}]
      matchReturnArgs: [{index: 0, operator: Equal, values: [\"0\"]}]
      matchActions: [{action: Sigkill}]
  lsmhooks:
  - hook: file_open
    args: [{index: 0, type: file}]
    selectors:
    - matchBinaries: [{operator: NotIn, values: [/usr/bin/cat]}]
",
    )
    .unwrap()
    .remove(0);
    let e = Evaluator::new(&ir).unwrap();
    let mut by_outcome = std::collections::BTreeMap::new();
    let mut sigkills = 0;
    for (_, view) in events() {
        let Some(view) = view else { continue };
        let v = e.verdict(&view);
        if v.matched()
            .is_some_and(|m| m.actions.iter().any(|a| a.signal == Some(9)))
        {
            sigkills += 1;
        }
        *by_outcome.entry(v.outcome.name()).or_insert(0) += 1;
    }
    // 2 of the 8 permission checks are on tcp-connect.yaml; the security_file_open events
    // stand for the file_open LSM hook, where cat is excluded.
    assert_eq!(sigkills, 2);
    assert_eq!(by_outcome["match"], 2 + 3);
    assert_eq!(by_outcome["no-match"], 6 + 1);
    assert_eq!(by_outcome["no-hook"], 5);
}

#[test]
fn every_example_policy_evaluates_every_sample_without_panicking() {
    let mut files = Vec::new();
    yaml_files(&corpus_dir(), &mut files);
    let mut evaluated = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let Ok(irs) = compile_yaml(&text) else {
            continue;
        };
        for ir in &irs {
            let mut replay = Replay::new(Evaluator::new(ir).unwrap());
            for (_, view) in events() {
                if let Some(view) = view {
                    let v = replay.next(&view);
                    // A verdict names its hook exactly when the event is for one.
                    assert_eq!(
                        v.hook.is_none(),
                        matches!(v.outcome, Outcome::NoHook(_)),
                        "{}: {v:?}",
                        f.display()
                    );
                    evaluated += 1;
                }
            }
        }
    }
    assert!(evaluated > 17 * 30, "only {evaluated} verdicts");
}
