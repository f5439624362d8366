//! The running sensor: load, scan, read the ring buffer, export, until told to stop.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use vigil_api::events::{GetEventsResponse, PolicyDemoted};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::config::Config;
use crate::error::SensorError;
use crate::grpc::server::{self, Broadcaster, Service, ServiceInfo};
use crate::hooks::engine::Demotion;
use crate::hooks::kernel::PinDir;
use crate::hooks::meta::HookRegistry;
use crate::hooks::policy_metrics::PolicyMetrics;
use crate::k8s::pods::PodInventory;
use crate::kernel::bpf;
use crate::kernel::clock::BootClock;
use crate::kernel::features;
use crate::kernel::handoff;
use crate::kernel::ring::{self, KernelPoller};
use crate::output::export::{self, RotatingFile, Sinks};
use crate::output::metrics::{self, FeatureLabel, MapLabel, Metrics};
use crate::policy;
use crate::policy::control::{PolicyControl, PolicyOrigin};
use crate::policy::dir::{PolicyDir, SyncReport};
use crate::policy::sync::{Applier, SyncOptions, SyncTarget};
use crate::process::builder::EventBuilder;
use crate::process::heal::TaskIter;
use crate::process::pipeline::{Pipeline, PodWait};
use crate::process::procfs_scan;

/// How long each step of the start took, for the log line that says the sensor is ready.
struct Phases {
    start: std::time::Instant,
    last: std::time::Instant,
    steps: Vec<(&'static str, Duration)>,
}

impl Default for Phases {
    fn default() -> Self {
        let now = std::time::Instant::now();
        Phases {
            start: now,
            last: now,
            steps: Vec::new(),
        }
    }
}

impl Phases {
    fn mark(&mut self, step: &'static str) {
        let now = std::time::Instant::now();
        self.steps.push((step, now - self.last));
        self.last = now;
    }

    fn summary(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|(s, d)| format!("{s} {:.0}", ms(*d)))
            .collect();
        format!(
            "{:.0} ms ({} ms)",
            ms(self.start.elapsed()),
            steps.join(", ")
        )
    }
}

/// Longest time a record waits in the ring buffer when the kernel did not wake the reader.
pub const DRAIN_INTERVAL_MS: u64 = 20;

/// Seconds between walks of the cgroup tree for container cgroups (new ones are learnt from
/// exec records at once; the walk drops those that are gone).
pub const CONTAINER_RESCAN_SECS: u64 = 30;

/// The line written to stderr once events flow; tests and scripts wait for it.
pub const READY_LINE: &str = "vigil-sensor: ready, listening for events";

/// Runs the sensor until `shutdown` completes, then drains the ring buffer and the export queue,
/// flushes the file, detaches the programs and returns.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), SensorError> {
    let mut phases = Phases::default();
    let metrics = Arc::new(Metrics::new());
    let mut registry = metrics.registry();
    let listener = match config.metrics_address {
        Some(addr) => Some(metrics::bind(addr).await?),
        None => None,
    };

    // Read once for every object load at start, then dropped: parsed, the kernel's BTF takes
    // megabytes that a sensor at rest does not need.
    let btf = bpf::kernel_btf()?;
    phases.mark("btf");
    let root = PinDir::instance_root(&config.instance)?;
    // A protected sensor of this instance refuses every writable open of its maps: say so,
    // rather than fail on the first map.
    if let Some(pid) = crate::kernel::protect::running_protected_sensor(&root) {
        return Err(SensorError::Config {
            option: "instance".into(),
            message: format!(
                "a self-protected sensor of instance {:?} is running (pid {pid}); stop it first \
                 (docs/operations.md, \"Self-protection\")",
                config.instance
            ),
        });
    }
    let mut want = handoff::this_stamp(
        &config.test_stamp,
        config.ring_buffer_size,
        config.process_table_size,
    );
    let feats = match handoff::stamped_features(&root, &want) {
        Some(f) => {
            features::ensure_kernel_filesystems();
            tracing::info!("kernel features as the previous sensor of this instance probed them");
            f
        }
        None => features::probe_with(&btf),
    };
    want.features = Some(feats.clone());
    phases.mark("probe");
    for (name, ok) in feats.as_pairs() {
        metrics
            .kernel_features
            .get_or_create(&FeatureLabel {
                feature: name.into(),
            })
            .set(ok as i64);
    }
    tracing::info!(kernel = %feats.kernel_release, ?feats, "kernel features probed");

    let file = match &config.export_file {
        Some(path) => Some(RotatingFile::open(
            path,
            config.export_file_max_size,
            config.export_file_max_backups,
        )?),
        None => None,
    };
    let host_ns = procfs_scan::host_namespaces(Path::new("/proc"));
    let hook_registry = Arc::new(HookRegistry::new());
    let handoff::Opened {
        pins,
        mut bpf,
        engine,
        took_over,
        reattached,
        retire,
        pins_changed,
    } = handoff::open(
        &root,
        &want,
        &handoff::EngineParts {
            btf: &btf,
            features: &feats,
            host_ns,
            registry: hook_registry.clone(),
            node_labels: config.node_labels.clone(),
            ring_buffer_size: config.ring_buffer_size,
            process_table_size: config.process_table_size,
        },
    )?;
    metrics.handoff_took_over.set(took_over.is_some() as i64);
    metrics.handoff_reattached_points.set(reattached as i64);
    metrics
        .handoff_pins_changed
        .inc_by(pins_changed.len() as u64);
    // Reads the kernel's running processes to heal the process cache after ring-buffer loss;
    // without it (kernels before 5.8), /proc is walked instead.
    let mut task_iter = match TaskIter::load(&pins, &btf) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!("no task iterator, heals after loss will walk /proc: {e}");
            None
        }
    };
    phases.mark(if took_over.is_some() {
        "take-over"
    } else {
        "load"
    });
    let pods = Arc::new(PodInventory::new(crate::process::container::cgroup2_root()));
    engine.follow_pods(pods.clone());
    // Containers already running, before any policy can select host processes.
    pods.rescan_containers();
    let policy_metrics = Arc::new(PolicyMetrics::default());
    for path in &config.policies {
        let yaml = std::fs::read_to_string(path)
            .map_err(|e| SensorError::io(format!("reading policy {}", path.display()), e))?;
        let info = match engine.add(&yaml, PolicyOrigin::File(path.clone())) {
            Ok(info) => info,
            // A valid policy that this kernel cannot serve (e.g. Override without BPF-LSM) is
            // refused, with the reason, and the sensor runs on: one DaemonSet configuration
            // serves a fleet of older and newer nodes. A policy that does not parse or
            // validate is a configuration error on every node and stops the start.
            Err(e @ SensorError::PolicyUnloadable { .. }) => {
                tracing::error!(policy = %path.display(), "policy refused on this kernel: {e}");
                continue;
            }
            Err(e) => {
                return Err(SensorError::Config {
                    option: "policy".into(),
                    message: format!("{}: {e}", path.display()),
                });
            }
        };
        if !info.error.is_empty() {
            tracing::warn!(policy = %info.name, state = info.state.as_str(), "{}", info.error);
        }
    }
    let mut policy_dir = config
        .policy_dir
        .clone()
        .map(|d| PolicyDir::new(d, policy::dir::Engine(engine.clone())));
    if let Some(pd) = policy_dir.as_mut() {
        report_policy_dir(pd.sync(), &policy_metrics);
    }
    // Local sources have claimed what they want of the previous sensor's policies; the
    // operator's are settled once its first set is in (or at once without an operator).
    let mut handover = handoff::Handover::new(retire, config.operator_address.is_some());
    handover.settle(&engine, &metrics, false);
    phases.mark("policies");
    // Self-protection comes after the policies, so that their links are protected from the
    // start; links added later are protected by the refresh on the one-second tick.
    let (mut protection, protect_state) = start_protection(&config, &feats, &pins, &root, &btf);
    for label in crate::kernel::protect::State::LABELS {
        metrics
            .self_protection
            .get_or_create(&crate::output::metrics::StateLabel {
                state: label.into(),
            })
            .set((label == protect_state.label()) as i64);
    }
    for (map, cap) in [
        ("vigil_procs", config.process_table_size),
        ("vigil_events", config.ring_buffer_size),
    ] {
        metrics
            .map_capacity
            .get_or_create(&MapLabel { map: map.into() })
            .set(cap as i64);
    }

    let (queue, writer) = export::start(
        Sinks {
            file,
            stdout: config.export_stdout,
        },
        config.export_queue_size,
        config.node_name.clone(),
        metrics.clone(),
    );
    let builder = EventBuilder {
        node_name: config.node_name.clone(),
        clock: BootClock::now(),
        enable_cred: config.enable_process_cred,
        enable_ns: config.enable_process_ns,
        host_ns,
    };
    let broadcaster = Arc::new(Broadcaster::new(
        config.grpc_client_queue_size,
        metrics.clone(),
    ));
    let mut pipeline = Pipeline::new(builder, config.process_cache_size, queue, metrics.clone())
        .with_broadcaster(broadcaster.clone())
        .with_hooks(hook_registry.clone())
        .with_pods(
            pods.clone(),
            PodWait {
                max_wait: Duration::from_millis(config.pod_wait_ms),
                max_events: config.pod_wait_events,
            },
        );
    let service = Service {
        broadcaster: broadcaster.clone(),
        info: Arc::new(ServiceInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            node_name: config.node_name.clone(),
            features: feats.clone(),
            self_protection: protect_state.clone(),
            programs: {
                let mut process = bpf.programs.clone();
                process.extend(protection.iter().flat_map(|p| p.programs.clone()));
                process.extend(task_iter.as_ref().map(|t| t.stats.clone()));
                let engine = engine.clone();
                server::ProgramSource::new(move || {
                    let mut all = process.clone();
                    all.extend(engine.program_stats());
                    all
                })
            },
        }),
        pods: Some(pods.clone()),
    };
    policy_metrics.register(&mut registry);
    let registry = Arc::new(registry);
    let grpc = server::start(
        service,
        Some(engine.clone() as Arc<dyn PolicyControl>),
        config.grpc_socket.as_deref(),
        config.grpc_address,
        config.grpc_tls.as_ref(),
    )
    .await?;

    // Programs are attached: whatever starts from now on is seen by them; what ran before is
    // found in /proc and seeded into the kernel table so later records can name their parent.
    let mut scanned = procfs_scan::scan(Path::new("/proc"));
    let starts: std::collections::HashMap<u32, u64> =
        scanned.iter().map(|s| (s.pid, s.start_ns)).collect();
    for s in scanned.iter().filter(|s| !s.kernel_thread) {
        let parent_ktime = starts.get(&s.ppid).copied().unwrap_or(0);
        if let Err(e) = bpf.seed(&bpf::proc_entry(s, parent_ktime)) {
            tracing::warn!(
                "seeding the kernel process table failed for pid {}: {e}",
                s.pid
            );
            metrics.process_table_insert_failures.inc();
        }
    }
    // A process the kernel table already knew (its exec seen by the previous sensor of this
    // instance) keeps the identity the table gives it, exact to the nanosecond, rather than
    // /proc's start time: its exec_id stays what it was.
    for s in scanned.iter_mut().filter(|s| !s.kernel_thread) {
        if let Some(ktime) = bpf.table_ktime(s.pid) {
            s.start_ns = ktime;
        }
    }
    pipeline.load_scan(&scanned);
    if !pins_changed.is_empty() {
        pipeline.report_pins_changed(&pins_changed);
    }
    phases.mark("scan");

    let server = listener.map(|l| tokio::spawn(metrics::serve(l, registry.clone())));
    let watcher = policy_dir.map(|pd| tokio::spawn(watch_policy_dir(pd, policy_metrics.clone())));
    // Built before anything is spawned: files that changed since the configuration was checked
    // stop the start like any other bad option.
    let operator_tls = match &config.operator_tls {
        Some(t) => Some(t.client_config()?),
        None => None,
    };
    let operator_client = config.operator_address.clone().map(|address| {
        let opts = SyncOptions {
            address,
            tls: operator_tls,
            node_name: config.node_name.clone(),
            labels: config.node_labels.clone(),
            kernel_release: feats.kernel_release.clone(),
            features: feats
                .as_pairs()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        };
        let applier = Applier::new(engine.clone() as Arc<dyn SyncTarget>);
        tokio::spawn(policy::sync::run(
            opts,
            applier,
            Some(pods.clone()),
            metrics.clone(),
        ))
    });

    let ring = bpf.events.take().expect("ring buffer taken once");
    // SAFETY: the ring buffer owns its map fd, which stays open and unchanged for as long as the
    // AsyncFd (which owns the ring buffer) lives.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| SensorError::io("registering the ring buffer with the reactor", e.into()))?;
    let mut poller = KernelPoller::new(&metrics);
    let kernel_stage = poller.stage().clone();
    poller.poll(&bpf, Some(&engine), &metrics, true);
    metrics.set_programs(&bpf.programs);
    if let Some(t) = &task_iter {
        metrics.set_programs(std::slice::from_ref(&t.stats));
    }
    if let Some(p) = &protection {
        metrics.set_programs(&p.programs);
    }
    let mut heal_due = false;
    metrics.set_programs(&engine.program_stats());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut ticks = 0u64;
    // The kernel wakes the reader only once 64 KiB are pending (see process.bpf.c); this timer
    // picks up smaller batches, so no record waits longer than this.
    let mut drain_tick = tokio::time::interval(Duration::from_millis(DRAIN_INTERVAL_MS));
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    drop(btf);
    crate::heap::release_free_memory();
    if config.keep_enforcing_on_exit {
        // From now on whatever ends this process leaves the programs enforcing.
        pins.keep();
    }
    write_manifest(pins.path());
    tracing::info!("ready in {}", phases.summary());
    eprintln!("{READY_LINE}");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.map_err(|e| SensorError::io("waiting on the ring buffer", e))?;
                if ring::drain(guard.get_inner_mut(), &mut pipeline, &metrics, &kernel_stage) > 0 {
                    let polled = poller.poll(&bpf, Some(&engine), &metrics, false);
                    heal_due |= polled.process_records_lost;
                    pipeline.report_loss(polled.lost);
                }
                pipeline.settle_heal();
                guard.clear_ready();
            }
            _ = drain_tick.tick() => {
                if ring::drain(ring.get_mut(), &mut pipeline, &metrics, &kernel_stage) > 0 {
                    let polled = poller.poll(&bpf, Some(&engine), &metrics, false);
                    heal_due |= polled.process_records_lost;
                    pipeline.report_loss(polled.lost);
                }
                pipeline.settle_heal();
                pipeline.flush_losses();
            }
            _ = tick.tick() => {
                ticks += 1;
                let polled = poller.poll(&bpf, Some(&engine), &metrics, true);
                heal_due |= polled.process_records_lost;
                pipeline.report_loss(polled.lost);
                if heal_due {
                    heal_due = false;
                    ring::heal(ring.get_mut(), &mut pipeline, &metrics, &kernel_stage, &bpf, task_iter.as_mut());
                }
                if handover.pending() {
                    handover.settle(&engine, &metrics, metrics.operator_policy_sets.get() > 0);
                }
                if let Some(p) = protection.as_mut() {
                    p.maybe_refresh();
                }
                for d in engine.check_budgets(std::time::Instant::now()) {
                    policy_metrics.count_demotion(&d.key, d.action.as_str());
                    pipeline.emit_notice(demotion_event(&config.node_name, &d));
                }
                policy_metrics.update(&engine.list());
                metrics.set_programs(&engine.program_stats());
                if ticks.is_multiple_of(5) {
                    metrics.map_entries.get_or_create(&MapLabel { map: "vigil_procs".into() })
                        .set(bpf.process_table_len() as i64);
                }
                if ticks.is_multiple_of(CONTAINER_RESCAN_SECS) {
                    let pods = pods.clone();
                    tokio::task::spawn_blocking(move || pods.rescan_containers());
                }
            }
            () = &mut shutdown => break,
        }
    }

    tracing::info!("stopping: draining the ring buffer and the export queue");
    ring::drain(ring.get_mut(), &mut pipeline, &metrics, &kernel_stage);
    // Twice: the second poll settles hook losses the first could not attribute yet.
    for _ in 0..2 {
        let polled = poller.poll(&bpf, Some(&engine), &metrics, true);
        pipeline.report_loss(polled.lost);
    }
    pipeline.flush_losses();
    drop(pipeline);
    // Streams end once their queued events are sent; then the listeners stop.
    broadcaster.close();
    grpc.shutdown(Duration::from_secs(3)).await;
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .ok();
    if let Some(s) = server {
        s.abort();
    }
    if let Some(w) = watcher {
        w.abort();
    }
    if let Some(c) = operator_client {
        c.abort();
        let _ = c.await;
    }
    if config.keep_enforcing_on_exit {
        // The programs go on enforcing; the next sensor of the instance takes them over.
        engine.release_for_next();
        pins.keep();
        write_manifest(pins.path());
        tracing::info!(
            generation = %pins.path().display(),
            "stopped; the programs keep enforcing for the next sensor (vigil-sensor cleanup removes them)"
        );
    } else {
        engine.stop_persisting();
        engine.clear();
        bpf.detach();
        pins.discard();
    }
    drop(ring);
    drop(bpf);
    drop(protection);
    Ok(())
}

/// Records the generation's pins for the next sensor to check (`pin_manifest.rs`); a failure
/// is logged: the next sensor then finds a difference and loads a new generation.
fn write_manifest(generation: &Path) {
    if let Err(e) = crate::kernel::pin_manifest::write(generation) {
        tracing::warn!("writing the manifest of {}: {e}", generation.display());
    }
}

/// Starts self-protection when it is asked for and the kernel has BPF-LSM. A kernel without it,
/// or programs the kernel refuses, leave the sensor running unprotected, with a warning and the
/// reason in status.
fn start_protection(
    config: &Config,
    feats: &features::Features,
    pins: &PinDir,
    root: &Path,
    btf: &aya::Btf,
) -> (
    Option<crate::kernel::protect::Protection>,
    crate::kernel::protect::State,
) {
    use crate::kernel::protect::{Protection, State};
    if !config.self_protection {
        return (None, State::Off);
    }
    if !feats.bpf_lsm {
        let why = "BPF-LSM not active".to_string();
        tracing::warn!(
            "--self-protection: {why} (boot with lsm=...,bpf); the sensor runs unprotected"
        );
        return (None, State::Unavailable(why));
    }
    match Protection::start(pins, root, btf) {
        Ok(p) => (Some(p), State::Active),
        Err(e) => {
            tracing::warn!("--self-protection: {e}; the sensor runs unprotected");
            (None, State::Unavailable(e.to_string()))
        }
    }
}

fn report_policy_dir(r: SyncReport, metrics: &PolicyMetrics) {
    r.log(&metrics.policy_dir_errors);
}

/// Polls the policy directory until the task is aborted.
async fn watch_policy_dir(pd: PolicyDir, metrics: Arc<PolicyMetrics>) {
    let pd = Arc::new(std::sync::Mutex::new(pd));
    let mut tick = tokio::time::interval(Duration::from_millis(policy::dir::POLL_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let pd = pd.clone();
        let r = tokio::task::spawn_blocking(move || {
            pd.lock().unwrap_or_else(|e| e.into_inner()).sync()
        })
        .await;
        if let Ok(r) = r {
            report_policy_dir(r, &metrics);
        }
    }
}

/// The `vigil_policy_demoted` event of a budget demotion.
fn demotion_event(node_name: &str, d: &Demotion) -> GetEventsResponse {
    GetEventsResponse::policy_demoted(
        node_name,
        crate::output::loss::now_ns(),
        PolicyDemoted {
            policy_name: d.key.name.clone(),
            policy_namespace: d.key.namespace.clone(),
            action: d.action.as_str().to_string(),
            reason: d.reason.clone(),
            cpu_percent: d.cpu_percent,
            budget_percent: d.budget_percent,
            window_seconds: d.window_seconds,
        },
    )
}
