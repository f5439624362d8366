use super::*;

pub const ID_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa0123456789abcdef0123456789abcdef";
pub const ID_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb0123456789abcdef0123456789abcdef";

fn pod(ns: &str, name: &str, uid: &str, labels: &[(&str, &str)], ids: &[&str]) -> Pod {
    Pod {
        namespace: ns.into(),
        name: name.into(),
        uid: uid.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        containers: ids
            .iter()
            .enumerate()
            .map(|(i, id)| Container {
                id: format!("containerd://{id}"),
                name: format!("c{i}"),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn req(key: &str, op: ir::LabelOperator, values: &[&str]) -> ir::LabelRequirement {
    ir::LabelRequirement {
        key: key.into(),
        operator: op as i32,
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

#[test]
fn selectors_follow_kubernetes_semantics() {
    use ir::LabelOperator::*;
    let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
    let sel = |r: Vec<ir::LabelRequirement>| ir::LabelSelector { requirements: r };
    assert!(selector_matches(&sel(vec![]), &labels));
    assert!(selector_matches(
        &sel(vec![req("app", In, &["web", "x"])]),
        &labels
    ));
    assert!(!selector_matches(
        &sel(vec![req("app", NotIn, &["web"])]),
        &labels
    ));
    assert!(selector_matches(
        &sel(vec![req("tier", NotIn, &["a"])]),
        &labels
    ));
    assert!(selector_matches(
        &sel(vec![req("app", Exists, &[])]),
        &labels
    ));
    assert!(!selector_matches(
        &sel(vec![req("app", DoesNotExist, &[])]),
        &labels
    ));
}

#[test]
fn lookup_by_prefix_and_delete_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let inv = PodInventory::new(root.path());
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    inv.on_change(move || {
        c.fetch_add(1, Ordering::Relaxed);
    });
    assert!(!inv.is_active());
    inv.upsert_pod(pod("default", "xwing", "u1", &[("app", "x")], &[ID_A]));
    assert!(inv.is_active());
    let (p, i) = inv.lookup(&ID_A[..31]).unwrap();
    assert_eq!(
        (p.name.as_str(), p.containers[i].id.as_str()),
        ("xwing", ID_A)
    );
    let ev = p.event_pod(i, Some(1));
    assert_eq!(ev.container.as_ref().unwrap().id, ID_A);
    assert_eq!(ev.container.as_ref().unwrap().pid, Some(1));
    assert!(inv.delete_pod("u1"));
    // Events trailing the deletion still name the pod; scopes never see it again.
    assert_eq!(inv.lookup(&ID_A[..31]).unwrap().0.name, "xwing");
    assert!(inv.scope_cgroups(&WorkloadScope::default()).is_empty());
    inv.write().gone[0].0 = Instant::now() - GONE_GRACE - Duration::from_secs(1);
    assert!(inv.lookup(&ID_A[..31]).is_none());
    inv.expire();
    assert!(inv.read().gone.is_empty());
    assert!(!inv.delete_pod("u1"));
    assert_eq!(inv.len(), 0);
    assert_eq!(calls.load(Ordering::Relaxed), 3);
}

#[test]
fn set_replaces_and_scopes_resolve_cgroups() {
    let root = tempfile::tempdir().unwrap();
    let dir_a = root
        .path()
        .join(format!("k.slice/cri-containerd-{ID_A}.scope"));
    let dir_b = root.path().join(format!("k.slice/crio-{ID_B}.scope"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let ino = |d: &std::path::Path| std::fs::metadata(d).unwrap().ino();
    let inv = PodInventory::new(root.path());
    inv.apply_pods(vec![
        pod("default", "a", "ua", &[("app", "a")], &[ID_A]),
        pod("prod", "b", "ub", &[("app", "b")], &[ID_B]),
    ]);
    assert_eq!(inv.containers_resolved(), 2);
    let ns = WorkloadScope {
        namespace: Some("default".into()),
        ..Default::default()
    };
    assert_eq!(inv.scope_cgroups(&ns), BTreeSet::from([ino(&dir_a)]));
    let sel = WorkloadScope {
        pod_selector: Some(ir::LabelSelector {
            requirements: vec![req("app", ir::LabelOperator::In, &["b"])],
        }),
        ..Default::default()
    };
    assert_eq!(inv.scope_cgroups(&sel), BTreeSet::from([ino(&dir_b)]));
    let cont = WorkloadScope {
        container_selector: Some(ir::LabelSelector {
            requirements: vec![req("name", ir::LabelOperator::In, &["c0"])],
        }),
        ..Default::default()
    };
    assert_eq!(inv.scope_cgroups(&cont).len(), 2);
    // The full set replaces: b is gone, and so is its cgroup.
    inv.apply_pods(vec![pod("default", "a", "ua", &[("app", "a")], &[ID_A])]);
    assert!(inv.scope_cgroups(&sel).is_empty());
    assert_eq!(inv.containers_resolved(), 1);
    // A cgroup learnt from an exec record.
    std::fs::remove_dir(&dir_b).unwrap();
    inv.apply_pods(vec![pod("prod", "c", "uc", &[], &[ID_B])]);
    assert_eq!(inv.containers_resolved(), 0);
    inv.note_cgroup(ID_B, 4242);
    assert_eq!(
        inv.scope_cgroups(&WorkloadScope::default()),
        BTreeSet::from([4242])
    );
}

#[test]
fn pod_selector_sees_the_namespace_pseudo_label() {
    let sel = |op, values: &[&str]| WorkloadScope {
        pod_selector: Some(ir::LabelSelector {
            requirements: vec![req(POD_NAMESPACE_LABEL, op, values)],
        }),
        ..Default::default()
    };
    let p = pod("prod", "a", "u", &[("app", "a")], &[ID_A]);
    let c = &p.containers[0];
    assert!(sel(ir::LabelOperator::In, &["prod", "staging"]).matches(&p, c));
    assert!(!sel(ir::LabelOperator::In, &["default"]).matches(&p, c));
    assert!(sel(ir::LabelOperator::NotIn, &["kube-system"]).matches(&p, c));
    assert!(sel(ir::LabelOperator::Exists, &[]).matches(&p, c));
    // With the pod's own labels.
    let both = WorkloadScope {
        pod_selector: Some(ir::LabelSelector {
            requirements: vec![
                req("app", ir::LabelOperator::In, &["a"]),
                req(POD_NAMESPACE_LABEL, ir::LabelOperator::In, &["prod"]),
            ],
        }),
        ..Default::default()
    };
    assert!(both.matches(&p, c));
    let mut other = p.clone();
    other.namespace = "dev".into();
    assert!(!both.matches(&other, c));
    // Not a label of the pod: events do not show it.
    assert!(
        !p.event_pod(0, None)
            .pod_labels
            .contains_key(POD_NAMESPACE_LABEL)
    );
}

#[test]
fn selectors_are_described_like_kubectl() {
    use ir::LabelOperator::*;
    let sel = ir::LabelSelector {
        requirements: vec![
            req("app", In, &["web"]),
            req("tier", In, &["a", "b"]),
            req("zone", NotIn, &["x"]),
            req("gpu", Exists, &[]),
            req("legacy", DoesNotExist, &[]),
        ],
    };
    assert_eq!(
        describe_selector(&sel),
        "app=web,tier in (a,b),zone notin (x),gpu,!legacy"
    );
}

#[test]
fn container_cgroups_come_from_pods_exec_records_and_walks() {
    let root = tempfile::tempdir().unwrap();
    let ino = |d: &std::path::Path| std::fs::metadata(d).unwrap().ino();
    let dir_a = root
        .path()
        .join(format!("k.slice/cri-containerd-{ID_A}.scope"));
    std::fs::create_dir_all(&dir_a).unwrap();
    let inv = PodInventory::new(root.path());
    let told = Arc::new(AtomicU64::new(0));
    let t = told.clone();
    inv.on_containers_change(move || {
        t.fetch_add(1, Ordering::Relaxed);
    });
    // A known pod's container.
    inv.upsert_pod(pod("default", "a", "ua", &[], &[ID_A]));
    assert_eq!(inv.container_cgroups(), BTreeSet::from([ino(&dir_a)]));
    // An exec in a container the inventory does not know (another runtime, a pod not
    // announced yet): a container all the same, and the inventory is not marked in use.
    let fresh = PodInventory::new(root.path());
    fresh.note_cgroup(ID_B, 777);
    assert_eq!(fresh.container_cgroups(), BTreeSet::from([777]));
    assert!(!fresh.is_active());
    let before = told.load(Ordering::Relaxed);
    inv.note_cgroup(ID_B, 777);
    inv.note_cgroup(ID_B, 777);
    assert_eq!(told.load(Ordering::Relaxed), before + 1, "told once");
    assert_eq!(inv.container_cgroups(), BTreeSet::from([ino(&dir_a), 777]));
    // A walk: containers started before the sensor (Docker here), and the exec-learnt
    // cgroup, not in the tree, is dropped.
    let docker = root
        .path()
        .join(format!("system.slice/docker-{ID_B}.scope"));
    std::fs::create_dir_all(&docker).unwrap();
    inv.rescan_containers();
    assert_eq!(
        inv.container_cgroups(),
        BTreeSet::from([ino(&dir_a), ino(&docker)])
    );
    // Deleting a pod whose cgroup is still there keeps it (its processes may outlive the
    // pod); once the directory is gone, the deletion drops it at once.
    inv.delete_pod("ua");
    assert!(inv.container_cgroups().contains(&ino(&dir_a)));
    inv.upsert_pod(pod("default", "a", "ua", &[], &[ID_A]));
    let a = ino(&dir_a);
    std::fs::remove_dir(&dir_a).unwrap();
    inv.delete_pod("ua");
    assert_eq!(inv.container_cgroups(), BTreeSet::from([ino(&docker)]));
    assert!(!inv.container_cgroups().contains(&a));
    std::fs::remove_dir(&docker).unwrap();
    inv.rescan_containers();
    assert!(inv.container_cgroups().is_empty());
}

#[test]
fn container_cgroups_are_bounded() {
    let root = tempfile::tempdir().unwrap();
    let inv = PodInventory::new(root.path());
    let ids = (1..=MAX_CONTAINER_CGROUPS as u64 + 10).map(|i| (i, None));
    assert!(inv.add_container_cgroups(ids));
    assert_eq!(inv.container_cgroups().len(), MAX_CONTAINER_CGROUPS);
    assert!(!inv.add_container_cgroups([(u64::MAX, None)]));
    // A walk that finds none of them makes room again.
    inv.rescan_containers();
    assert!(inv.container_cgroups().is_empty());
    assert!(inv.add_container_cgroups([(u64::MAX, None)]));
}
