//! The kernel programs and the evaluator (`vigil_api::policy::eval`, behind `vigil policy
//! test`) give the same verdict for the same call. Generated policies (string and integer
//! operators, value sets, one or two selectors per hook, matchBinaries) are loaded into a real
//! sensor; a workload makes generated `openat` calls; each (hook, call) pair is a case: the
//! kernel's verdict is whether the hook posted the call, the evaluator's is `Match` or
//! `NoMatch` for the same call built from what the workload passed. On the host the syscall
//! hooks run on the per-syscall tracepoint, in the VM on kprobes.
//!
//! `make test` runs a fixed seed (so a red run can be replayed); `make fuzz` runs random seeds
//! with more cases. `VIGIL_DIFF_SEED` and `VIGIL_DIFF_CALLS` set both by hand.

use std::collections::BTreeSet;
use std::process::Command;

use vigil_api::events::{ArgValue, GetEventsResponse};
use vigil_api::policy::compile_yaml;
use vigil_api::policy::eval::{ArgView, EventView, HookPoint, Outcome, ProcView, verdict};
use vigil_e2e::loss::losses;
use vigil_e2e::{Sensor, bin_path, policy_list, slow_machine};

/// Generated policies, one hook each (a policy hooks a function once), all on sys_openat: 7
/// and the marker's make the 8 hooks one attach point takes. The kernel keeps 5 selectors of 5
/// filters per hook and compares strings of up to 248 bytes; the generator stays inside that.
const HOOKS: usize = 7;
const MAX_VALUE: usize = 248;
const DEFAULT_SEED: u64 = 0x005e_ed0f_d1ff;

/// splitmix64: small, seedable, good enough to spread cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Where every generated path lives: nothing else on the machine opens these.
const ROOT: &str = "/tmp/vigil-diff";
const PARTS: [&str; 12] = [
    "a", "ab", "abc", "etc", "passwd", ".conf", "x", "-", "vigil", "log", "zz", "0",
];
/// Open flags that never create or change anything, so a call only looks.
const FLAGS: [i64; 6] = [
    0,                       // O_RDONLY
    libc::O_CLOEXEC as i64,  // 0x80000
    libc::O_NONBLOCK as i64, // 0x800
    (libc::O_DIRECTORY | libc::O_CLOEXEC) as i64,
    libc::O_NOFOLLOW as i64,
    libc::O_PATH as i64,
];

/// A path under ROOT of 1 to `max_parts` parts, separated by '/' or nothing; sometimes long
/// (past every compared value, so the kernel's short read before deciding is exercised).
fn gen_path(r: &mut Rng) -> String {
    let mut p = String::from(ROOT);
    p.push('/');
    for i in 0..1 + r.below(6) {
        if i > 0 && r.chance(40) {
            p.push('/');
        }
        let part: &&str = r.pick(&PARTS);
        p.push_str(part);
    }
    if r.chance(10) {
        let n = 100 + r.below(400);
        p.extend(std::iter::repeat_n('L', n));
    }
    p
}

/// A value for a string filter: usually a piece of a call's path, so that matches happen.
fn gen_string_value(r: &mut Rng, paths: &[String], op: &str) -> String {
    let p = r.pick(paths).clone();
    let v = match op {
        "Equal" | "NotEqual" => p,
        "Prefix" | "NotPrefix" => p[..ROOT.len() + 1 + r.below(p.len() - ROOT.len())].to_string(),
        _ => p[r.below(p.len() - 1) + 1..].to_string(),
    };
    if r.chance(15) {
        // A near miss: one byte more, or a different last byte.
        let mut v = v;
        if r.chance(50) {
            v.push('q');
        } else {
            v.pop();
            v.push('#');
        }
        return v;
    }
    v
}

/// One matchArgs filter as YAML, on argument 1 (the path) or 2 (the flags).
fn gen_filter(r: &mut Rng, paths: &[String]) -> String {
    if r.chance(65) {
        let op = *r.pick(&[
            "Equal",
            "NotEqual",
            "Prefix",
            "NotPrefix",
            "Postfix",
            "NotPostfix",
        ]);
        let n = 1 + r.below(3);
        let values: BTreeSet<String> = (0..n).map(|_| gen_string_value(r, paths, op)).collect();
        let values: Vec<String> = values
            .into_iter()
            .filter(|v| v.len() <= MAX_VALUE)
            .map(|v| format!("{v:?}"))
            .collect();
        if values.is_empty() {
            return gen_filter(r, paths);
        }
        format!(
            "{{index: 1, operator: {op}, values: [{}]}}",
            values.join(", ")
        )
    } else {
        let flag = |r: &mut Rng| *r.pick(&FLAGS);
        let (op, values) = match r.below(6) {
            0 => ("Equal", vec![flag(r).to_string(), flag(r).to_string()]),
            1 => ("NotEqual", vec![flag(r).to_string()]),
            2 => ("Mask", vec![format!("{:#x}", flag(r) | 0x800)]),
            3 => ("GT", vec![flag(r).to_string()]),
            4 => ("LT", vec![flag(r).to_string()]),
            _ => {
                let (a, b) = (flag(r), flag(r));
                ("InRange", vec![format!("{}:{}", a.min(b), a.max(b))])
            }
        };
        let values: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
        format!(
            "{{index: 2, operator: {op}, values: [{}]}}",
            values.join(", ")
        )
    }
}

/// The hook of policy `h{i}` on sys_openat: 1 or 2 selectors, each 1 or 2 filters (both on
/// different arguments or the same one), each restricted to the workload's binary.
fn gen_hook(r: &mut Rng, paths: &[String], binary: &str) -> String {
    let mut sels = Vec::new();
    for _ in 0..1 + r.below(2) {
        let filters: Vec<String> = (0..1 + r.below(2)).map(|_| gen_filter(r, paths)).collect();
        sels.push(format!(
            "    - matchBinaries: [{{operator: In, values: [{binary:?}]}}]\n      matchArgs:\n{}",
            filters
                .iter()
                .map(|f| format!("      - {f}\n"))
                .collect::<String>()
        ));
    }
    hook_yaml(&sels.concat())
}

fn hook_yaml(selectors: &str) -> String {
    format!(
        "  - call: sys_openat\n    syscall: true\n    args:\n    - {{index: 1, type: string}}\n    - {{index: 2, type: int}}\n    selectors:\n{selectors}"
    )
}

fn policy_yaml(name: &str, hooks: &[String]) -> String {
    format!(
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {{name: {name}}}\nspec:\n  kprobes:\n{}",
        hooks.concat()
    )
}

struct Case {
    hook: usize,
    call: usize,
}

#[test]
fn kernel_and_evaluator_agree_on_generated_policies_and_calls() {
    let seed = std::env::var("VIGIL_DIFF_SEED")
        .ok()
        .map(|s| s.parse().expect("VIGIL_DIFF_SEED: an integer"))
        .unwrap_or(DEFAULT_SEED);
    let calls: usize = std::env::var("VIGIL_DIFF_CALLS")
        .ok()
        .map(|s| s.parse().expect("VIGIL_DIFF_CALLS: an integer"))
        .unwrap_or(if slow_machine() { 80 } else { 500 });
    eprintln!("differential: seed {seed}, {HOOKS} hooks x {calls} calls");
    let mut r = Rng(seed);
    let workload = bin_path("vigil-e2e-workload");
    let binary = workload.to_str().unwrap().to_string();

    // The calls: distinct paths (a posted event names its call by path), each with flags.
    let mut seen = BTreeSet::new();
    let mut opens: Vec<(i64, String)> = Vec::new();
    while opens.len() < calls {
        let p = gen_path(&mut r);
        if seen.insert(p.clone()) {
            opens.push((*r.pick(&FLAGS), p));
        }
    }
    let paths: Vec<String> = opens.iter().map(|(_, p)| p.clone()).collect();
    let hooks: Vec<String> = (0..HOOKS)
        .map(|_| gen_hook(&mut r, &paths, &binary))
        .collect();
    // The last call is a marker its own hook always posts: records leave the kernel in order,
    // so once it is out, every posted call before it is out too.
    let marker = format!("{ROOT}/marker-{seed}");
    let marker_hook = hook_yaml(&format!(
        "    - matchBinaries: [{{operator: In, values: [{binary:?}]}}]\n      matchArgs:\n      - {{index: 1, operator: Equal, values: [{marker:?}]}}\n"
    ));
    let work = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, hook) in hooks
        .iter()
        .enumerate()
        .map(|(i, h)| (format!("h{i}"), h))
        .chain([("marker".to_string(), &marker_hook)])
    {
        let f = work.path().join(format!("{name}.yaml"));
        std::fs::write(&f, policy_yaml(&name, std::slice::from_ref(hook))).unwrap();
        files.push(f.to_str().unwrap().to_string());
    }
    let list = work.path().join("opens.txt");
    let mut text: String = opens.iter().map(|(f, p)| format!("{f:x} {p}\n")).collect();
    text.push_str(&format!("0 {marker}\n"));
    std::fs::write(&list, text).unwrap();

    let mut args = Vec::new();
    for f in &files {
        args.extend(["--policy", f.as_str()]);
    }
    let sensor = Sensor::start(&args);
    let pl = policy_list(&sensor.socket);
    assert!(
        pl.len() == HOOKS + 1 && pl.iter().all(|p| p["state"] == "enabled"),
        "every generated policy loads (seed {seed}): {pl:?}\nsensor:\n{}",
        sensor.stderr()
    );
    let child = Command::new(&workload)
        .arg("open-list")
        .arg(&list)
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "workload: {out:?}");
    sensor.wait_event("the marker call", |e: &GetEventsResponse| {
        e.process_kprobe.as_ref().is_some_and(|k| {
            k.policy_name == "marker" && k.process.as_ref().and_then(|p| p.pid) == Some(pid)
        })
    });
    let events = sensor.events();
    let lost = losses(&events);
    assert!(
        lost.is_empty(),
        "events were lost, so absent events prove nothing: {lost:?}"
    );

    // Kernel verdicts: (policy, path) of every posted call.
    let mut posted = BTreeSet::new();
    for e in &events {
        let Some(k) = e.process_kprobe.as_deref() else {
            continue;
        };
        if k.process.as_ref().and_then(|p| p.pid) != Some(pid) {
            continue;
        }
        let path = match k.args.first().and_then(|a| a.arg.as_ref()) {
            Some(ArgValue::String(s)) => s.clone(),
            other => panic!("argument 0 of a posted call is not a string: {other:?}"),
        };
        posted.insert((k.policy_name.clone(), path));
    }

    // Evaluator verdicts, each policy alone.
    let mut disagreements = Vec::new();
    let mut matched = 0usize;
    let cases: Vec<Case> = (0..HOOKS)
        .flat_map(|hook| (0..opens.len()).map(move |call| Case { hook, call }))
        .collect();
    let irs: Vec<_> = hooks
        .iter()
        .map(|h| {
            compile_yaml(&policy_yaml("h", std::slice::from_ref(h)))
                .expect("the hook compiles alone")
                .remove(0)
        })
        .collect();
    for c in &cases {
        let (flags, path) = &opens[c.call];
        let view = EventView {
            point: HookPoint::Kprobe {
                function: "__x64_sys_openat".into(),
            },
            policy_name: format!("h{}", c.hook),
            process: Some(ProcView {
                pid: Some(pid),
                tid: Some(pid),
                binary: Some(binary.clone()),
                in_container: Some(false),
                ..Default::default()
            }),
            args: vec![ArgView::text(path.as_bytes()), ArgView::Int(*flags as u64)],
            ..Default::default()
        };
        let v = verdict(&irs[c.hook], &view).expect("evaluates");
        let eval = match &v.outcome {
            Outcome::Match(_) => true,
            Outcome::NoMatch => false,
            other => panic!("the evaluator cannot decide a generated call: {other:?}"),
        };
        let kernel = posted.contains(&(format!("h{}", c.hook), path.clone()));
        matched += usize::from(kernel);
        if kernel != eval {
            disagreements.push(format!(
                "h{} on openat({path:?}, {flags:#x}): kernel {}, evaluator {}\n{}",
                c.hook,
                if kernel { "posted" } else { "did not post" },
                if eval { "matches" } else { "does not match" },
                hooks[c.hook]
            ));
        }
    }
    eprintln!(
        "differential: {} cases, {matched} posted, {} disagreements",
        cases.len(),
        disagreements.len()
    );
    assert!(
        disagreements.is_empty(),
        "seed {seed}: {} of {} cases disagree (replay with VIGIL_DIFF_SEED={seed}):\n{}",
        disagreements.len(),
        cases.len(),
        disagreements
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // A generator that never (or always) matches proves little: both kinds of verdict occur.
    assert!(
        matched > cases.len() / 20 && matched < cases.len() * 19 / 20,
        "seed {seed}: {matched} of {} cases posted; the generator is off balance",
        cases.len()
    );
}

/// Which recorded paths a replayed filter selects.
type Selects = Box<dyn Fn(&str) -> bool>;

/// `vigil policy test` over what a real sensor recorded: a broad policy records every `openat`
/// of the workload into the export file; narrower policies replayed over that file match
/// exactly the recorded calls their filters select (decided here from the recorded paths), and
/// `--expect` with that number succeeds.
#[test]
fn vigil_policy_test_over_a_sensor_recording_matches_what_the_filters_select() {
    let workload = bin_path("vigil-e2e-workload");
    let binary = workload.to_str().unwrap().to_string();
    let root = format!("{ROOT}/replay-{}", std::process::id());
    let names = [
        "a.conf",
        "b.log",
        "etc/passwd",
        "etc/shadow.conf",
        "x/y/z",
        "etc.conf",
    ];
    let mut calls: Vec<String> = names.iter().map(|n| format!("{root}/{n}")).collect();
    calls.push(format!("{root}/{}", "L".repeat(300)));
    let marker = format!("{root}/marker");
    let only_workload = format!("    - matchBinaries: [{{operator: In, values: [{binary:?}]}}]\n");
    let work = tempfile::tempdir().unwrap();
    let record = work.path().join("record.yaml");
    std::fs::write(&record, policy_yaml("record", &[hook_yaml(&only_workload)])).unwrap();
    let list = work.path().join("opens.txt");
    let text: String = calls
        .iter()
        .chain([&marker])
        .map(|p| format!("0 {p}\n"))
        .collect();
    std::fs::write(&list, text).unwrap();

    let sensor = Sensor::start(&["--policy", record.to_str().unwrap()]);
    let out = Command::new(&workload)
        .arg("open-list")
        .arg(&list)
        .output()
        .unwrap();
    assert!(out.status.success(), "workload: {out:?}");
    let path_of = |e: &GetEventsResponse| {
        let k = e.process_kprobe.as_deref()?;
        match k.args.first()?.arg.as_ref()? {
            ArgValue::String(s) if k.policy_name == "record" => Some(s.clone()),
            _ => None,
        }
    };
    sensor.wait_event("the marker call", |e| {
        path_of(e).as_deref() == Some(marker.as_str())
    });
    let events = sensor.events();
    assert!(losses(&events).is_empty(), "nothing lost while recording");
    let recorded: Vec<String> = events.iter().filter_map(path_of).collect();
    for c in &calls {
        assert!(recorded.contains(c), "{c} was recorded: {recorded:?}");
    }

    let narrow: [(&str, &str, String, Selects); 4] = [
        ("under-etc", "Prefix", format!("{root}/etc/"), {
            let p = format!("{root}/etc/");
            Box::new(move |s: &str| s.starts_with(&p))
        }),
        (
            "conf-files",
            "Postfix",
            ".conf".into(),
            Box::new(|s: &str| s.ends_with(".conf")),
        ),
        ("not-a-conf", "NotEqual", calls[0].clone(), {
            let p = calls[0].clone();
            Box::new(move |s: &str| s != p)
        }),
        ("long-name", "Equal", calls[calls.len() - 1].clone(), {
            let p = calls[calls.len() - 1].clone();
            Box::new(move |s: &str| s == p)
        }),
    ];
    for (name, op, value, selects) in &narrow {
        let want = recorded.iter().filter(|p| selects(p)).count();
        let yaml = policy_yaml(
            name,
            &[hook_yaml(&format!(
                "{only_workload}      matchArgs:\n      - {{index: 1, operator: {op}, values: [{value:?}]}}\n"
            ))],
        );
        let file = work.path().join(format!("{name}.yaml"));
        std::fs::write(&file, yaml).unwrap();
        let o = Command::new(bin_path("vigil"))
            .args(["policy", "test"])
            .arg(&file)
            .arg("--events")
            .arg(&sensor.export)
            .args(["-o", "json", "--expect", &want.to_string()])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{name}: expected {want} of {} recorded calls\n{stdout}\n{}",
            recorded.len(),
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["policies"][0]["matched"], want, "{name}: {stdout}");
        assert_eq!(v["policies"][0]["unknown"], 0, "{name}: {stdout}");
    }
}
