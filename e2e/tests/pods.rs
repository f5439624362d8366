//! Kubernetes identity without a cluster: real cgroups named the way containerd and CRI-O name
//! a pod's containers, real processes inside them, and the pod inventory fed to a real sensor
//! through `vigil pod` (the gRPC `vigil.sensor.v1.PodInventory` service). Events must carry the
//! right pod; scoped policies (TracingPolicyNamespaced, podSelector) must fire only for their
//! pods, with the kernel's cgroup sets following relabels and deletions. Runs as root.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vigil_api::events::{GetEventsResponse, Process};
use vigil_e2e::containers::{FakeContainer, Runtime, exec_of, open_in, opens_by_policy, opens_of};
use vigil_e2e::{Sensor, bin_path, event_timeout, metric_value, slow_machine, vigil_ok, wait_for};

fn write_json(dir: &Path, name: &str, v: &serde_json::Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string(v).unwrap()).unwrap();
    p.to_str().unwrap().to_string()
}

fn upsert(sensor: &Sensor, pod: serde_json::Value) {
    let f = write_json(sensor.dir.path(), "pod.json", &pod);
    vigil_ok(&sensor.socket, &["pod", "upsert", &f]);
}

fn set_pods(sensor: &Sensor, pods: Vec<serde_json::Value>) {
    let f = write_json(
        sensor.dir.path(),
        "pods.json",
        &serde_json::Value::Array(pods),
    );
    vigil_ok(&sensor.socket, &["pod", "set", &f]);
}

/// The exec of `pid` with these arguments (the shell that moved itself into the cgroup has the
/// same pid, but it exec'd on the host).
fn exec_with<'a>(e: &'a GetEventsResponse, pid: u32, arguments: &str) -> Option<&'a Process> {
    exec_of(e, pid).filter(|p| p.arguments == arguments)
}

/// An openat policy on files under `dir`; `head` is the kind/metadata part, `scope` spec lines.
fn open_policy(kind_and_meta: &str, scope: &str, dir: &str) -> String {
    format!(
        "apiVersion: cilium.io/v1alpha1
{kind_and_meta}
spec:
{scope}
  kprobes:
  - call: sys_openat
    syscall: true
    args:
    - index: 1
      type: string
    selectors:
    - matchArgs:
      - index: 1
        operator: Prefix
        values: [\"{dir}/\"]
"
    )
}

fn policy_file(dir: &Path, text: &str) -> String {
    let p = dir.join("policy.yaml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn exec_and_hook_events_carry_pod_and_container() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_str().unwrap().to_string();
    let target = format!("{dir}/secret");
    std::fs::write(&target, "x").unwrap();
    let policy = policy_file(
        work.path(),
        &open_policy("kind: TracingPolicy\nmetadata: {name: opens}", "", &dir),
    );
    let c = FakeContainer::new(Runtime::Containerd);
    let sensor = Sensor::start(&["--policy", &policy]);
    upsert(
        &sensor,
        c.pod_json("default", "xwing", &[("app", "xwing"), ("class", "ship")]),
    );

    let pid = open_in(Some(&c), &target);
    let ev = sensor.wait_event("the exec in the container", |e| {
        exec_of(e, pid).is_some_and(|p| p.binary.ends_with("vigil-e2e-workload"))
    });
    let p = exec_of(&ev, pid).unwrap();
    assert_eq!(p.docker, &c.id[..31]);
    let pod = p.pod.as_ref().expect("the exec carries the pod");
    assert_eq!(pod.namespace, "default");
    assert_eq!(pod.name, "xwing");
    assert_eq!(pod.uid, c.pod_uid);
    assert_eq!(pod.pod_labels["app"], "xwing");
    assert_eq!(pod.pod_labels["class"], "ship");
    assert_eq!(pod.workload, "xwing");
    assert_eq!(pod.workload_kind, "Deployment");
    let ct = pod.container.as_ref().expect("the container");
    assert_eq!(ct.id, c.id, "the full id, without the runtime prefix");
    assert_eq!(ct.name, "xwing-main");
    let image = ct.image.as_ref().unwrap();
    assert_eq!(
        (image.name.as_str(), image.id.as_str()),
        ("quay.io/cilium/starwars:v2", "sha256:0123abcd")
    );
    assert_eq!(ct.start_time, "2026-11-28T12:00:00Z");
    // No PID namespace here: the container's view of the pid is the host's.
    assert_eq!(ct.pid, Some(pid));
    assert!(ct.security_context.is_none());

    let hook = wait_for(event_timeout(), "the open in the container", || {
        opens_of(&sensor, &target)
            .into_iter()
            .find(|(p, _)| *p == pid)
    });
    let hp = hook.1.pod.expect("the hook event carries the pod");
    assert_eq!(
        (hp.namespace.as_str(), hp.name.as_str()),
        ("default", "xwing")
    );
    assert_eq!(hp.container.unwrap().id, c.id);

    // A process outside any container has neither.
    let host = open_in(None, &target);
    let ev = sensor.wait_exec(host);
    let p = exec_of(&ev, host).unwrap();
    assert!(p.pod.is_none() && p.docker.is_empty(), "{p:?}");
    let (_, hp) = wait_for(event_timeout(), "the open on the host", || {
        opens_of(&sensor, &target)
            .into_iter()
            .find(|(p, _)| *p == host)
    });
    assert!(hp.pod.is_none());
}

#[test]
fn crio_container_is_recognised() {
    let c = FakeContainer::new(Runtime::Crio);
    let sensor = Sensor::start(&[]);
    upsert(&sensor, c.pod_json("prod", "tiefighter", &[]));
    let (pid, st) = c.run(&["/bin/true"]);
    assert!(st.success());
    let ev = sensor.wait_event("the exec in the CRI-O container", |e| {
        exec_of(e, pid).is_some_and(|p| p.binary == "/bin/true" || p.binary == "/usr/bin/true")
    });
    let pod = exec_of(&ev, pid).unwrap().pod.clone().expect("pod");
    assert_eq!(
        (pod.namespace.as_str(), pod.name.as_str()),
        ("prod", "tiefighter")
    );
}

#[test]
fn namespaced_policy_fires_only_in_its_namespace() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_str().unwrap().to_string();
    let target = format!("{dir}/f");
    std::fs::write(&target, "x").unwrap();
    let policy = policy_file(
        work.path(),
        &open_policy(
            "kind: TracingPolicyNamespaced\nmetadata: {name: prod-opens, namespace: prod}",
            "",
            &dir,
        ),
    );
    let a = FakeContainer::new(Runtime::Containerd);
    let b = FakeContainer::new(Runtime::Crio);
    let sensor = Sensor::start(&[]);
    set_pods(
        &sensor,
        vec![
            a.pod_json("default", "a", &[]),
            b.pod_json("prod", "b", &[]),
        ],
    );
    vigil_ok(&sensor.socket, &["policy", "add", &policy]);
    // Others first: anything they produced would be exported before B's event.
    let in_default = open_in(Some(&a), &target);
    let on_host = open_in(None, &target);
    let in_prod = open_in(Some(&b), &target);
    let (_, p) = wait_for(event_timeout(), "the open in prod", || {
        opens_of(&sensor, &target)
            .into_iter()
            .find(|(p, _)| *p == in_prod)
    });
    assert_eq!(p.pod.unwrap().namespace, "prod");
    let pids: Vec<u32> = opens_of(&sensor, &target).iter().map(|(p, _)| *p).collect();
    assert!(
        !pids.contains(&in_default) && !pids.contains(&on_host),
        "only prod's pod may match: {pids:?}"
    );
}

#[test]
fn pod_selector_follows_relabel_and_deletion() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_str().unwrap().to_string();
    let target = format!("{dir}/f");
    std::fs::write(&target, "x").unwrap();
    let policy = policy_file(
        work.path(),
        &open_policy(
            "kind: TracingPolicy\nmetadata: {name: web-opens}",
            "  podSelector:\n    matchLabels:\n      app: web",
            &dir,
        ),
    );
    let w = FakeContainer::new(Runtime::Containerd);
    let o = FakeContainer::new(Runtime::Containerd);
    let sensor = Sensor::start_with_metrics(&["--policy", &policy]);
    upsert(&sensor, w.pod_json("default", "w", &[("app", "web")]));
    upsert(&sensor, o.pod_json("default", "o", &[("app", "db")]));

    let seen = |pid: u32| opens_of(&sensor, &target).iter().any(|(p, _)| *p == pid);
    let wait_seen = |pid: u32, what: &str| {
        wait_for(event_timeout(), what, || seen(pid).then_some(()));
    };
    // 1. Only the pod labelled app=web.
    let o1 = open_in(Some(&o), &target);
    let w1 = open_in(Some(&w), &target);
    wait_seen(w1, "the open of the app=web pod");
    assert!(!seen(o1), "a pod without app=web matched");

    // 2. Relabel: o becomes web, w stops being.
    upsert(&sensor, w.pod_json("default", "w", &[("app", "db")]));
    upsert(&sensor, o.pod_json("default", "o", &[("app", "web")]));
    let w2 = open_in(Some(&w), &target);
    let o2 = open_in(Some(&o), &target);
    wait_seen(o2, "the open of the relabelled pod");
    assert!(!seen(w2), "the pod relabelled away still matched");

    // 3. Delete o: its cgroup leaves the set. w is labelled back to show events still flow.
    vigil_ok(&sensor.socket, &["pod", "delete", &o.pod_uid]);
    let o3 = open_in(Some(&o), &target);
    upsert(&sensor, w.pod_json("default", "w", &[("app", "web")]));
    let w3 = open_in(Some(&w), &target);
    wait_seen(w3, "the open of the pod labelled back");
    assert!(!seen(o3), "a deleted pod still matched");
    // The inventory holds only w now.
    let list = vigil_ok(&sensor.socket, &["pod", "list"]);
    let pods: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(pods.len(), 1, "{list}");
    let text = sensor.metrics();
    assert_eq!(
        metric_value(&text, "vigil_pod_inventory_pods"),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "vigil_pod_inventory_containers"),
        1.0,
        "{text}"
    );
}

#[test]
fn events_wait_for_a_late_pod_and_go_out_flagged_without_one() {
    let late = FakeContainer::new(Runtime::Containerd);
    let never = FakeContainer::new(Runtime::Crio);
    // Long enough for the late pod to arrive in time even under emulation (the VM suite).
    let wait_ms: u64 = if slow_machine() { 20_000 } else { 4000 };
    let sensor = Sensor::start_with_metrics(&["--pod-wait-ms", &wait_ms.to_string()]);
    // An inventory is in use (a node with no pods yet).
    set_pods(&sensor, vec![]);

    let (pid, st) = late.run(&["/bin/true", "late"]);
    assert!(st.success());
    wait_for(event_timeout(), "the exec to be held", || {
        (metric_value(&sensor.metrics(), "vigil_pod_events_waiting") >= 1.0).then_some(())
    });
    assert!(
        !sensor
            .events()
            .iter()
            .any(|e| exec_with(e, pid, "late").is_some()),
        "the exec went out before its pod"
    );
    // The pod arrives 2 s later: the event goes out with it.
    std::thread::sleep(Duration::from_secs(2));
    upsert(&sensor, late.pod_json("default", "late", &[]));
    let ev = sensor.wait_event("the held exec", |e| exec_with(e, pid, "late").is_some());
    let p = exec_of(&ev, pid).unwrap();
    assert_eq!(p.pod.as_ref().expect("the late pod").name, "late");
    assert!(!p.flags.contains("podUnknown"));
    // Its exit (held behind it or not) carries the pod too.
    let exit = sensor.wait_exit(pid);
    let xp = exit.process_exit.unwrap().process.unwrap();
    assert_eq!(xp.pod.as_ref().expect("the exit's pod").name, "late");

    // A pod that never comes: after the bound, out without it and flagged.
    let started = Instant::now();
    let (pid, st) = never.run(&["/bin/true", "never"]);
    assert!(st.success());
    let ev = sensor.wait_event("the exec without its pod", |e| {
        exec_with(e, pid, "never").is_some()
    });
    let waited = started.elapsed();
    let p = exec_of(&ev, pid).unwrap();
    assert!(p.pod.is_none());
    assert_eq!(p.docker, &never.id[..31]);
    assert!(p.flags.contains("podUnknown"), "{}", p.flags);
    assert!(
        waited >= Duration::from_millis(wait_ms - 500),
        "went out after {waited:?}"
    );
    let text = sensor.metrics();
    assert!(
        metric_value(&text, "vigil_pod_events_held_total") >= 3.0,
        "{text}"
    );
    assert!(
        metric_value(&text, "vigil_pod_events_resolved_total") >= 1.0,
        "{text}"
    );
    assert!(
        metric_value(&text, "vigil_pod_events_unresolved_total") >= 1.0,
        "{text}"
    );
}

/// The seed's quickstart on a synthetic pod: `vigil observe --namespace default --pod xwing`.
#[test]
fn quickstart_observe_by_namespace_and_pod() {
    let c = FakeContainer::new(Runtime::Containerd);
    let sensor = Sensor::start(&[]);
    upsert(&sensor, c.pod_json("default", "xwing", &[("app", "xwing")]));
    // Live, from the sensor's stream (filtered by the sensor), as in the quickstart.
    let mut live = Command::new(bin_path("vigil"))
        .args([
            "observe",
            "--namespace",
            "default",
            "--pod",
            "xwing",
            "--server",
        ])
        .arg(&sensor.socket)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let live_lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = live_lines.clone();
    let stdout = live.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push(l);
        }
    });
    wait_for(event_timeout(), "the observer to subscribe", || {
        let out = vigil_ok(&sensor.socket, &["status", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).ok()?;
        (v["subscribers"].as_u64()? >= 1).then_some(())
    });
    let (pid, st) = c.run(&["/usr/bin/whoami"]);
    assert!(st.success());
    let (host, _) =
        vigil_e2e::run(Command::new("/usr/bin/whoami").stdout(std::process::Stdio::null()));
    sensor.wait_exit(pid);
    sensor.wait_exit(host);
    let out = Command::new(bin_path("vigil"))
        .args([
            "observe",
            "--namespace",
            "default",
            "--pod",
            "xwing",
            "--file",
        ])
        .arg(&sensor.export)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("🚀 process default/xwing /usr/bin/whoami")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("💥 exit    default/xwing /usr/bin/whoami")),
        "{text}"
    );
    assert_eq!(lines.len(), 2, "only the pod's exec and exit: {text}");
    let live_text = wait_for(event_timeout(), "the live exec and exit", || {
        let l = live_lines.lock().unwrap();
        (l.iter()
            .any(|l| l.starts_with("🚀 process default/xwing /usr/bin/whoami"))
            && l.iter()
                .any(|l| l.starts_with("💥 exit    default/xwing /usr/bin/whoami")))
        .then(|| l.join("\n"))
    });
    let _ = live.kill();
    let _ = live.wait();
    assert!(
        live_text.lines().all(|l| l.contains(" default/xwing ")),
        "only the pod's events: {live_text}"
    );
}

/// The last component of this process's cgroup v2 path.
fn own_cgroup_name() -> String {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("/");
    path.rsplit('/').next().unwrap_or("").to_string()
}

/// hostSelector against `--node-labels`, in the kernel: host processes of a matching node only,
/// unioned with the selected pods' containers; a selector that misses this node selects nothing.
/// A nodeSelector that misses this node is refused by `vigil policy add`.
#[test]
fn host_selector_selects_host_processes_of_matching_nodes() {
    let own = own_cgroup_name();
    assert!(
        own.len() < 64 || !own.bytes().rev().take(64).all(|b| b.is_ascii_hexdigit()),
        "this test must run outside a container (its processes are the host's); cgroup {own}"
    );
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_str().unwrap().to_string();
    let target = format!("{dir}/f");
    std::fs::write(&target, "x").unwrap();
    let web = FakeContainer::new(Runtime::Containerd);
    let db = FakeContainer::new(Runtime::Crio);
    let sensor = Sensor::start(&["--node-labels", "role=worker,zone=e2e"]);
    set_pods(
        &sensor,
        vec![
            web.pod_json("default", "web", &[("app", "web")]),
            db.pod_json("default", "db", &[("app", "db")]),
        ],
    );
    let add = |name: &str, scope: &str| -> std::process::Output {
        let text = open_policy(
            &format!("kind: TracingPolicy\nmetadata: {{name: {name}}}"),
            scope,
            &dir,
        );
        let f = work.path().join(format!("{name}.yaml"));
        std::fs::write(&f, text).unwrap();
        vigil_e2e::vigil_cli(&sensor.socket, &["policy", "add", f.to_str().unwrap()])
    };

    // nodeSelector: another node's policy is refused, naming the selector and these labels.
    let out = add(
        "elsewhere",
        "  nodeSelector:\n    matchLabels:\n      role: control-plane",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a policy for another node loaded");
    assert!(
        err.contains("spec.nodeSelector (role=control-plane)")
            && err.contains("role=worker,zone=e2e"),
        "{err}"
    );
    assert!(vigil_e2e::policy_list(&sensor.socket).is_empty());

    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Host processes of role=worker nodes; loaded here (its nodeSelector matches).
    ok(add(
        "host-only",
        "  nodeSelector:\n    matchLabels:\n      zone: e2e\n  hostSelector:\n    matchLabels:\n      role: worker",
    ));
    // Host processes of control-plane nodes: nothing here.
    ok(add(
        "host-miss",
        "  hostSelector:\n    matchLabels:\n      role: control-plane",
    ));
    // The web pod's containers and this node's host processes.
    ok(add(
        "web-and-host",
        "  podSelector:\n    matchLabels:\n      app: web\n  hostSelector:\n    matchExpressions:\n    - {key: zone, operator: In, values: [e2e]}",
    ));

    // Negatives first: whatever they produced would be exported before the later events.
    let in_db = open_in(Some(&db), &target);
    let in_web = open_in(Some(&web), &target);
    let on_host = open_in(None, &target);
    let barrier = open_in(None, &target);
    let has = |policy: &str, pid: u32| {
        opens_by_policy(&sensor, &target)
            .iter()
            .any(|(p, q)| p == policy && *q == pid)
    };
    for (policy, pid, what) in [
        ("web-and-host", in_web, "the selected pod's open"),
        ("host-only", on_host, "the host open (host-only)"),
        ("web-and-host", on_host, "the host open (web-and-host)"),
        ("host-only", barrier, "the last host open"),
    ] {
        wait_for(event_timeout(), what, || has(policy, pid).then_some(()));
    }
    let seen = opens_by_policy(&sensor, &target);
    assert!(
        !seen.iter().any(|(_, pid)| *pid == in_db),
        "an unselected pod's container matched: {seen:?}"
    );
    assert!(
        !seen.iter().any(|(p, _)| p == "host-miss"),
        "a hostSelector of other nodes matched: {seen:?}"
    );
    assert!(
        !has("host-only", in_web),
        "a container process counted as a host process: {seen:?}"
    );
}
