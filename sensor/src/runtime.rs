//! The running sensor: load, scan, read the ring buffer, export, until told to stop.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use vigil_sensor_bpf::abi::{self, counters};

use crate::bpf::{self, ProcessBpf};
use crate::builder::EventBuilder;
use crate::clock::BootClock;
use crate::config::Config;
use crate::decode::decode;
use crate::error::SensorError;
use crate::export::{self, RotatingFile, Sinks};
use crate::features;
use crate::grpc::{self, Broadcaster, Service, ServiceInfo};
use crate::hooks::engine::Engine;
use crate::hooks::kernel::{HookBpf, LiveKernel, PinDir};
use crate::hooks::meta::HookRegistry;
use crate::hooks::policy_metrics::PolicyMetrics;
use crate::metrics::{self, FeatureLabel, MapLabel, Metrics, RecordLabel};
use crate::pipeline::{Pipeline, PodWait};
use crate::pods::PodInventory;
use crate::policy_control::{PolicyControl, PolicyOrigin};
use crate::policy_dir::{self, PolicyDir, SyncReport};
use crate::policy_sync::{self, Applier, SyncOptions, SyncTarget};
use crate::procfs_scan;

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
    let metrics = Arc::new(Metrics::new());
    let mut registry = metrics.registry();
    let listener = match config.metrics_address {
        Some(addr) => Some(metrics::bind(addr).await?),
        None => None,
    };

    let feats = features::probe();
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
    let pins = Arc::new(PinDir::create()?);
    let mut bpf = bpf::load(&pins, config.ring_buffer_size, config.process_table_size)?;
    let host_ns = procfs_scan::host_namespaces(Path::new("/proc"));
    let hook_registry = Arc::new(HookRegistry::new());
    let engine = Arc::new(
        Engine::new(
            HookBpf::open(pins.clone(), host_ns[abi::ns_slot::USER])?,
            LiveKernel::new(feats.clone(), host_ns),
            hook_registry.clone(),
        )
        .with_node_labels(config.node_labels.clone()),
    );
    let pods = Arc::new(PodInventory::new(crate::container::cgroup2_root()));
    engine.follow_pods(pods.clone());
    // Containers already running, before any policy can select host processes.
    pods.rescan_containers();
    let policy_metrics = Arc::new(PolicyMetrics::default());
    for path in &config.policies {
        let yaml = std::fs::read_to_string(path)
            .map_err(|e| SensorError::io(format!("reading policy {}", path.display()), e))?;
        let info = engine
            .add(&yaml, PolicyOrigin::File(path.clone()))
            .map_err(|e| SensorError::Config {
                option: "policy".into(),
                message: format!("{}: {e}", path.display()),
            })?;
        if !info.error.is_empty() {
            tracing::warn!(policy = %info.name, state = info.state.as_str(), "{}", info.error);
        }
    }
    let mut policy_dir = config
        .policy_dir
        .clone()
        .map(|d| PolicyDir::new(d, engine.clone() as Arc<dyn PolicyControl>));
    if let Some(pd) = policy_dir.as_mut() {
        report_policy_dir(pd.sync(), &policy_metrics);
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
        }),
        pods: Some(pods.clone()),
    };
    policy_metrics.register(&mut registry);
    let registry = Arc::new(registry);
    let grpc = grpc::start(
        service,
        Some(engine.clone() as Arc<dyn PolicyControl>),
        config.grpc_socket.as_deref(),
        config.grpc_address,
        config.grpc_tls.as_ref(),
    )
    .await?;

    // Programs are attached: whatever starts from now on is seen by them; what ran before is
    // found in /proc and seeded into the kernel table so later records can name their parent.
    let scanned = procfs_scan::scan(Path::new("/proc"));
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
    pipeline.load_scan(&scanned);

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
        tokio::spawn(policy_sync::run(
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
    let mut poller = KernelCounters::default();
    poller.poll(&bpf, &metrics);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut ticks = 0u64;
    // The kernel wakes the reader only once 64 KiB are pending (see process.bpf.c); this timer
    // picks up smaller batches, so no record waits longer than this.
    let mut drain_tick = tokio::time::interval(Duration::from_millis(DRAIN_INTERVAL_MS));
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    eprintln!("{READY_LINE}");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.map_err(|e| SensorError::io("waiting on the ring buffer", e))?;
                drain(guard.get_inner_mut(), &mut pipeline, &metrics);
                guard.clear_ready();
            }
            _ = drain_tick.tick() => drain(ring.get_mut(), &mut pipeline, &metrics),
            _ = tick.tick() => {
                ticks += 1;
                poller.poll(&bpf, &metrics);
                policy_metrics.update(&engine.list());
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
    drain(ring.get_mut(), &mut pipeline, &metrics);
    poller.poll(&bpf, &metrics);
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
    engine.clear();
    drop(ring);
    drop(bpf);
    Ok(())
}

fn report_policy_dir(r: SyncReport, metrics: &PolicyMetrics) {
    for p in &r.added {
        tracing::info!(policy = %p, "policy loaded from the policy directory");
    }
    for p in &r.removed {
        tracing::info!(policy = %p, "policy removed: its file is gone");
    }
    for e in &r.errors {
        tracing::error!("policy directory: {e}");
        metrics.policy_dir_errors.inc();
    }
}

/// Polls the policy directory until the task is aborted.
async fn watch_policy_dir(pd: PolicyDir, metrics: Arc<PolicyMetrics>) {
    let pd = Arc::new(std::sync::Mutex::new(pd));
    let mut tick = tokio::time::interval(Duration::from_millis(policy_dir::POLL_INTERVAL_MS));
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

fn drain(
    ring: &mut aya::maps::RingBuf<aya::maps::MapData>,
    pipeline: &mut Pipeline,
    metrics: &Metrics,
) {
    while let Some(item) = ring.next() {
        metrics.ringbuf_received.inc();
        match decode(&item) {
            Ok(record) => {
                drop(item);
                pipeline.handle(record);
            }
            Err(e) => {
                metrics.decode_errors.inc();
                tracing::warn!("{e}");
            }
        }
    }
    pipeline.release(std::time::Instant::now());
}

/// Mirrors the kernel's per-CPU counters into the metrics as deltas.
#[derive(Default)]
struct KernelCounters {
    last: [u64; counters::NUM as usize],
}

impl KernelCounters {
    fn poll(&mut self, bpf: &ProcessBpf, metrics: &Metrics) {
        for (index, record) in [
            (counters::RB_LOST_EXEC, Some("exec")),
            (counters::RB_LOST_FORK, Some("fork")),
            (counters::RB_LOST_EXIT, Some("exit")),
            (counters::RB_LOST_HOOK, Some("hook")),
            (counters::PROC_TABLE_FULL, None),
            (counters::PENDING_FULL, None),
        ] {
            let now = bpf.counter(index);
            let delta = now.saturating_sub(self.last[index as usize]);
            self.last[index as usize] = now;
            if delta == 0 {
                continue;
            }
            match record {
                Some(r) => metrics
                    .ringbuf_lost
                    .get_or_create(&RecordLabel { record: r.into() })
                    .inc_by(delta),
                None if index == counters::PENDING_FULL => {
                    metrics.hook_return_state_lost.inc_by(delta)
                }
                None => metrics.process_table_insert_failures.inc_by(delta),
            };
        }
    }
}
