//! Benchmark helper (not a test): N simulated sensors on one operator. Each opens its own
//! policy sync stream, says Hello and ACKs (READY) every policy of every set it receives. Once
//! all are connected it changes a manifest in the operator's policy directory, ROUNDS times,
//! and prints how long it took until every sensor had received the new set and ACKed it, and
//! until the operator's status showed every node ready.
//!
//! usage: vigil-e2e-fake-sensors ADDR COUNT POLICY_DIR [ROUNDS]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use vigil_api::wire::policy_sync as pb;
use vigil_api::wire::policy_sync::policy_sync_client::PolicySyncClient;

struct Shared {
    /// Per round: how many sensors ACKed a set holding that round's policy.
    acked: Vec<AtomicUsize>,
    /// Per round: when the last ACK was sent.
    last_ack: Vec<Mutex<Option<Instant>>>,
    connected: AtomicUsize,
}

fn usage() -> ! {
    eprintln!("usage: vigil-e2e-fake-sensors ADDR COUNT POLICY_DIR [ROUNDS]");
    std::process::exit(2)
}

fn manifest(round: usize) -> String {
    vigil_e2e::open_policy(
        "bench-sync",
        &format!("/nonexistent/bench-round-{round}/"),
        "",
    )
}

/// The round a set's bench policy belongs to (from its prefix), if any.
fn round_of(set: &pb::PolicySet) -> Option<usize> {
    set.policies.iter().find_map(|p| {
        let ir = p.ir.as_ref()?;
        if ir.identity.as_ref()?.name != "bench-sync" {
            return None;
        }
        let dbg = format!("{ir:?}");
        let i = dbg.find("bench-round-")? + "bench-round-".len();
        dbg[i..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    })
}

async fn fake(addr: String, i: usize, shared: Arc<Shared>) {
    let ch = loop {
        match tonic::transport::Endpoint::from_shared(addr.clone())
            .unwrap()
            .connect()
            .await
        {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let mut client = PolicySyncClient::new(ch);
    let (tx, rx) = mpsc::channel(64);
    tx.send(pb::SensorMessage {
        message: Some(pb::sensor_message::Message::Hello(pb::Hello {
            node_name: format!("fake-{i:04}"),
            labels: [("zone".to_string(), format!("z{}", i % 3))].into(),
            kernel_release: "fake".into(),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut inbound = client
        .sync(ReceiverStream::new(rx))
        .await
        .expect("open sync stream")
        .into_inner();
    let mut first = true;
    while let Ok(Some(m)) = inbound.message().await {
        // GitOps mode sends policy sets only; anything else is not about this benchmark.
        let Some(pb::operator_message::Message::Policies(set)) = m.message else {
            continue;
        };
        if first {
            shared.connected.fetch_add(1, Ordering::SeqCst);
            first = false;
        }
        for p in &set.policies {
            let id =
                p.ir.as_ref()
                    .and_then(|ir| ir.identity.clone())
                    .unwrap_or_default();
            let _ = tx
                .send(pb::SensorMessage {
                    message: Some(pb::sensor_message::Message::Report(pb::Report {
                        name: id.name,
                        namespace: id.namespace,
                        version: p.version.clone(),
                        state: pb::PolicyState::Ready as i32,
                        ..Default::default()
                    })),
                })
                .await;
        }
        if let Some(r) = round_of(&set)
            && r < shared.acked.len()
        {
            *shared.last_ack[r].lock().await = Some(Instant::now());
            shared.acked[r].fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args.first().cloned().unwrap_or_else(|| usage());
    let addr = if addr.contains("://") {
        addr
    } else {
        format!("http://{addr}")
    };
    let count: usize = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| usage());
    let dir = std::path::PathBuf::from(args.get(2).cloned().unwrap_or_else(|| usage()));
    let rounds: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(5);
    let shared = Arc::new(Shared {
        acked: (0..rounds).map(|_| AtomicUsize::new(0)).collect(),
        last_ack: (0..rounds).map(|_| Mutex::new(None)).collect(),
        connected: AtomicUsize::new(0),
    });
    let t = Instant::now();
    for i in 0..count {
        tokio::spawn(fake(addr.clone(), i, shared.clone()));
    }
    while shared.connected.load(Ordering::SeqCst) < count {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("{count} fake sensors connected in {:?}", t.elapsed());
    let mut status = PolicySyncClient::new(
        tonic::transport::Endpoint::from_shared(addr.clone())
            .unwrap()
            .connect()
            .await
            .expect("connect for status"),
    )
    .max_decoding_message_size(256 << 20);
    let mut lat = Vec::new();
    for round in 0..rounds {
        let path = dir.join("bench-sync.yaml");
        let tmp = dir.join(".bench-sync.tmp");
        std::fs::write(&tmp, manifest(round)).unwrap();
        let t0 = Instant::now();
        std::fs::rename(&tmp, &path).unwrap();
        while shared.acked[round].load(Ordering::SeqCst) < count {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let acks = shared.last_ack[round].lock().await.unwrap() - t0;
        // The operator's view: every node ready with this round's version.
        loop {
            let s = status
                .get_status(pb::GetStatusRequest {})
                .await
                .expect("GetStatus")
                .into_inner();
            if s.policies
                .iter()
                .any(|p| p.name == "bench-sync" && p.ready as usize == count)
                && shared.acked[round].load(Ordering::SeqCst) >= count
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let seen = t0.elapsed();
        println!(
            "round {round}: manifest written → last ACK sent {:>8.1} ms; operator status {count}/{count} ready {:>8.1} ms (includes the ≤500 ms directory poll)",
            acks.as_secs_f64() * 1e3,
            seen.as_secs_f64() * 1e3
        );
        lat.push(acks.as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "{count} sensors, {rounds} rounds: manifest change → last ACK: min {:.1} ms, median {:.1} ms, max {:.1} ms",
        lat[0],
        lat[lat.len() / 2],
        lat[lat.len() - 1]
    );
    std::process::exit(0);
}
