//! Fault suite, gRPC clients: one that stops reading (what it missed is reported to it, per
//! policy, where it missed it), and one that disconnects mid-stream a thousand times (nothing is
//! left behind). Clients are in-process tonic clients over the sensor's TCP listener.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use vigil_api::events::{GetEventsResponse, Loss, LossKind, LossReason, LossStage};
use vigil_api::wire::{self, tetragon};
use vigil_e2e::loss::{equations_hold, open_n, policy_events, write_open_policy};
use vigil_e2e::{Sensor, event_timeout, free_port, metric_value, wait_for};

type Client =
    tetragon::fine_guidance_sensors_client::FineGuidanceSensorsClient<tonic::transport::Channel>;

const POLICY: &str = "faults-grpc-open";

struct Rig {
    sensor: Sensor,
    target: std::path::PathBuf,
    addr: String,
    _dir: tempfile::TempDir,
}

fn rig(queue: &str) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("watched");
    std::fs::create_dir(&watched).unwrap();
    let target = watched.join("f");
    std::fs::write(&target, b"x").unwrap();
    let policy = write_open_policy(dir.path(), POLICY, &watched);
    let addr = format!("127.0.0.1:{}", free_port());
    let sensor = Sensor::start_with_metrics(&[
        "--policy",
        policy.to_str().unwrap(),
        "--export-file-max-size-mb",
        "1000",
        "--grpc-address",
        &addr,
        "--grpc-client-queue-size",
        queue,
    ]);
    Rig {
        sensor,
        target,
        addr,
        _dir: dir,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn client(addr: &str) -> Client {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to the sensor");
    Client::new(ch).max_decoding_message_size(64 << 20)
}

fn only_policy() -> tetragon::GetEventsRequest {
    tetragon::GetEventsRequest {
        allow_list: vec![tetragon::Filter {
            policy_names: vec![POLICY.into()],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

#[test]
fn a_client_that_stops_reading_is_told_what_it_missed_per_policy_where_it_missed_it() {
    let r = rig("16");
    let rt = runtime();
    let mut stream = rt.block_on(async {
        let mut c = client(&r.addr).await;
        c.get_events(only_policy()).await.unwrap().into_inner()
    });
    wait_for(event_timeout(), "the client to subscribe", || {
        (metric_value(&r.sensor.metrics(), "vigil_grpc_clients") >= 1.0).then_some(())
    });
    // It reads nothing while the burst goes out: the transport's buffers, then its queue, fill.
    let n: u64 = if vigil_e2e::slow_machine() {
        3_000
    } else {
        30_000
    };
    open_n(&r.target, n);
    wait_for(event_timeout() * 3, "the burst in the export file", || {
        let ev = r.sensor.events();
        let got = policy_events(&ev, POLICY) + vigil_e2e::loss::lost_for(&ev, POLICY, None);
        (got == n).then_some(())
    });
    // Now it reads: events plus the losses reported to it are exactly the burst.
    let mut events = 0u64;
    let mut markers: Vec<(u64, Loss)> = Vec::new();
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + event_timeout() * 3;
        while events + markers.iter().map(|(_, l)| l.count).sum::<u64>() < n {
            let msg = tokio::time::timeout_at(deadline, stream.message())
                .await
                .expect("events and losses to add up in time")
                .expect("stream")
                .expect("a message");
            let ev: GetEventsResponse = wire::from_proto(&msg).unwrap();
            match Loss::from_event(&ev).unwrap() {
                Some(l) => markers.push((events, l)),
                None => {
                    assert_eq!(ev.process_kprobe.as_ref().unwrap().policy_name, POLICY);
                    events += 1;
                }
            }
        }
    });
    let lost: u64 = markers.iter().map(|(_, l)| l.count).sum();
    assert_eq!(events + lost, n);
    assert!(
        lost > 0,
        "a client queue of 16 that read nothing lost nothing of {n}"
    );
    let mut client_lost = 0;
    for (at, l) in &markers {
        assert_eq!(l.kind, Some(LossKind::Hook), "{l}");
        assert!(l.policy == POLICY || l.policy.is_empty(), "{l}");
        if l.stage == Some(LossStage::Client) {
            assert_eq!(l.reason, Some(LossReason::ClientQueueFull), "{l}");
            assert_eq!(l.policy, POLICY, "{l}");
            // At the gap: after what was queued before the queue filled.
            assert!(*at > 0, "a marker before any event: {l}");
            client_lost += l.count;
        }
    }
    assert!(client_lost > 0, "no client-stage loss reported");
    let m = r.sensor.metrics();
    assert!(
        metric_value(&m, "vigil_grpc_client_events_dropped_total") as u64 >= lost,
        "{m}"
    );
    println!(
        "figure: client queue 16 reading nothing during {n} events: {events} received, {lost} reported lost in {} markers",
        markers.len()
    );
}

#[test]
fn a_client_that_disconnects_mid_stream_a_thousand_times_leaves_nothing_behind() {
    let r = rig("256");
    let stop = Arc::new(AtomicBool::new(false));
    let (s, target) = (stop.clone(), r.target.clone());
    let load = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            open_n(&target, 50);
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let rt = runtime();
    let before = rss_kib(r.sensor.pid());
    let start = std::time::Instant::now();
    rt.block_on(async {
        let mut c = client(&r.addr).await;
        for i in 0..1000 {
            if i % 10 == 0 {
                // A new connection now and then: the old one goes away with its streams.
                c = client(&r.addr).await;
            }
            let mut stream = c.get_events(only_policy()).await.unwrap().into_inner();
            let first = tokio::time::timeout(event_timeout(), stream.message())
                .await
                .expect("an event in time");
            assert!(matches!(first, Ok(Some(_))), "{first:?}");
            drop(stream);
        }
    });
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let deadline = std::time::Instant::now() + event_timeout();
    let m = loop {
        let m = r.sensor.metrics();
        let clients = metric_value(&m, "vigil_grpc_clients");
        match equations_hold(&m) {
            Ok(()) if clients == 0.0 => break m,
            e => assert!(
                std::time::Instant::now() < deadline,
                "{clients} clients left; {e:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        !m.contains("vigil_grpc_client_events_dropped_total{client="),
        "per-client series left behind:\n{m}"
    );
    let after = rss_kib(r.sensor.pid());
    assert!(
        after < before + 32 * 1024,
        "RSS grew from {before} KiB to {after} KiB over 1000 streams"
    );
    let (pid, _) = vigil_e2e::run(&mut std::process::Command::new("/bin/true"));
    r.sensor.wait_exec(pid);
    println!(
        "figure: 1000 GetEvents streams opened, read once, dropped in {:.1} s; sensor RSS {before} -> {after} KiB",
        took.as_secs_f64()
    );
}
