//! The event broadcast behind GetEvents: every event (and every loss marker) offered to every
//! client, never waiting for any.
//!
//! Each client has its own bounded queue (`--grpc-client-queue-size`). When it is full, the
//! event is dropped for that client only, counted (`vigil_grpc_client_events_dropped_total
//! {client}`), and reported to the client in-band: before the next event it receives, or within
//! a second when nothing else arrives, it gets loss markers (`rate_limit_info`, stage `client`,
//! reason `client_queue_full`, by kind and policy). Loss markers of earlier stages (kernel,
//! decode, export queue) reach every client whose filters could have matched what was lost; one
//! that finds the client's queue full is folded into the client's next report, so a client's
//! events plus the losses reported to it always add up to what it asked for.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tonic::Status;
use vigil_api::events::{EventKind, GetEventsResponse, LossReason, LossStage};
use vigil_api::wire::{self, FieldFilterSpec, tetragon};

use crate::grpc::event_filter::RequestFilter;
use crate::output::loss::{LossBatch, LossKey, StageCounters, kind_of, now_ns};
use crate::output::metrics::{ClientLabel, Metrics, OutputStageLabel};

/// One event or marker as handed to clients: its kind (for field filters), its protobuf form
/// (converted once for all clients) and, for a marker, the losses it reports.
#[derive(Debug)]
pub struct Published {
    pub kind: EventKind,
    pub proto: tetragon::GetEventsResponse,
    pub loss: Option<LossBatch>,
}

/// A client's losses not reported yet, each group due after the item it followed in the queue.
#[derive(Debug, Default)]
struct Pending {
    /// Items queued for the client so far.
    queued: u64,
    /// `(items queued before the gap, what the gap lost)`, oldest first.
    gaps: std::collections::VecDeque<(u64, LossBatch)>,
}

impl Pending {
    fn add(&mut self, batch: LossBatch) {
        match self.gaps.back_mut() {
            Some((at, b)) if *at == self.queued => b.merge(batch),
            _ => self.gaps.push_back((self.queued, batch)),
        }
    }

    /// The losses due once `received` items were taken from the queue.
    fn due(&mut self, received: u64) -> LossBatch {
        let mut out = LossBatch::default();
        while self.gaps.front().is_some_and(|(at, _)| *at <= received) {
            let (_, b) = self.gaps.pop_front().expect("front exists");
            out.merge(b);
        }
        out
    }
}

struct Client {
    filter: Mutex<RequestFilter>,
    tx: mpsc::Sender<Arc<Published>>,
    /// Losses not reported to the client yet (shared with the stream, which must not hold
    /// `tx`, or the stream would never end).
    pending: Arc<Mutex<Pending>>,
    dropped_metric: Counter,
    matched_metric: Counter,
    /// The metric series of this stream, removed when the stream ends so that series do not
    /// pile up with every connection.
    label: ClientLabel,
}

fn relock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fans events out to GetEvents clients without ever blocking the caller.
pub struct Broadcaster {
    /// Shared with every client's queue, which forgets its client when the stream ends (a
    /// client that went away is not counted until the next event happens to find it closed).
    clients: Arc<Mutex<Vec<Arc<Client>>>>,
    queue_size: usize,
    next_id: AtomicU64,
    dropped_total: AtomicU64,
    metrics: Arc<Metrics>,
    stage: StageCounters,
}

impl std::fmt::Debug for Broadcaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broadcaster")
            .field("clients", &self.subscribers())
            .finish_non_exhaustive()
    }
}

impl Broadcaster {
    pub fn new(queue_size: usize, metrics: Arc<Metrics>) -> Self {
        let stage = metrics.stages.of(crate::output::loss::Stage::Client);
        Broadcaster {
            clients: Arc::new(Mutex::new(Vec::new())),
            queue_size: queue_size.max(1),
            next_id: AtomicU64::new(1),
            dropped_total: AtomicU64::new(0),
            metrics,
            stage,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Client>>> {
        relock(&self.clients)
    }

    pub fn subscribers(&self) -> usize {
        self.lock().len()
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    /// Whether anyone listens (lets the pipeline skip work when nobody does).
    pub fn has_subscribers(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Offers one event (and its JSON line, already written for the exporters) to every client.
    /// `policy` is the `namespace/name` of the policy of a hook event, for loss attribution.
    pub fn publish(&self, event: &GetEventsResponse, line: &str, policy: Option<&Arc<str>>) {
        let clients: Vec<Arc<Client>> = self.lock().clone();
        if clients.is_empty() {
            return;
        }
        let Some(kind) = event.kind() else {
            return;
        };
        let mut shared: Option<Arc<Published>> = None;
        let mut closed = false;
        for c in &clients {
            if !relock(&c.filter).matches(event) {
                continue;
            }
            c.matched_metric.inc();
            self.stage.input.inc();
            let item = match &shared {
                Some(p) => p.clone(),
                None => match wire::json_to_proto(line) {
                    Ok(proto) => {
                        let p = Arc::new(Published {
                            kind,
                            proto,
                            loss: None,
                        });
                        shared = Some(p.clone());
                        p
                    }
                    Err(e) => {
                        tracing::error!("cannot convert an event for gRPC clients: {e}");
                        return;
                    }
                },
            };
            let mut pending = relock(&c.pending);
            match c.tx.try_send(item) {
                Ok(()) => {
                    pending.queued += 1;
                    self.stage.inside.inc();
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let mut b = LossBatch::default();
                    b.add_now(
                        LossKey::new(
                            LossStage::Client,
                            LossReason::ClientQueueFull,
                            kind_of(Some(kind)),
                        )
                        .with_policy(policy.cloned()),
                        1,
                    );
                    pending.add(b);
                    c.dropped_metric.inc();
                    self.stage.lost.inc();
                    self.metrics.grpc_dropped.inc();
                    self.dropped_total.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    // The client went before the event could be queued for it.
                    self.stage.abandoned.inc();
                    closed = true;
                }
            }
        }
        if closed {
            self.forget_closed();
        }
    }

    /// Offers loss markers of an earlier stage to every client whose filters could have matched
    /// what was lost.
    pub fn publish_loss(&self, batch: &LossBatch, node_name: &str) {
        let clients: Vec<Arc<Client>> = self.lock().clone();
        if clients.is_empty() || batch.is_empty() {
            return;
        }
        let now = now_ns();
        let mut closed = false;
        for (key, span) in batch.entries() {
            let mut one = LossBatch::default();
            one.add(key.clone(), span.count, span.from_ns, span.to_ns);
            let Some(marker) = one.markers(node_name, now).pop() else {
                continue;
            };
            let proto = match wire::to_proto(&marker) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!("cannot convert a loss marker for gRPC clients: {e}");
                    continue;
                }
            };
            let item = Arc::new(Published {
                kind: EventKind::RateLimitInfo,
                proto,
                loss: Some(one.clone()),
            });
            for c in &clients {
                if !relock(&c.filter).wants_loss(key) {
                    continue;
                }
                let mut pending = relock(&c.pending);
                match c.tx.try_send(item.clone()) {
                    Ok(()) => pending.queued += 1,
                    Err(mpsc::error::TrySendError::Full(_)) => pending.add(one.clone()),
                    Err(mpsc::error::TrySendError::Closed(_)) => closed = true,
                }
            }
        }
        if closed {
            self.forget_closed();
        }
    }

    fn forget_closed(&self) {
        forget_closed(&self.clients, &self.metrics);
    }

    fn remove_series(&self, c: &Client) {
        remove_series(&self.metrics, c);
    }

    fn subscribe(&self, filter: RequestFilter, peer: &str) -> (ClientQueue, Arc<Mutex<Pending>>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.queue_size);
        let label = ClientLabel {
            client: format!("{id}:{peer}"),
        };
        let dropped_metric = self
            .metrics
            .grpc_client_dropped
            .get_or_create(&label)
            .clone();
        let matched_metric = self
            .metrics
            .grpc_client_matched
            .get_or_create(&label)
            .clone();
        let pending = Arc::new(Mutex::new(Pending::default()));
        let client = Arc::new(Client {
            filter: Mutex::new(filter),
            tx,
            pending: pending.clone(),
            dropped_metric,
            matched_metric,
            label,
        });
        let mut clients = self.lock();
        clients.push(client);
        self.metrics.grpc_clients.set(clients.len() as i64);
        (
            ClientQueue {
                rx,
                stage: self.stage.clone(),
                clients: Arc::downgrade(&self.clients),
                metrics: self.metrics.clone(),
            },
            pending,
        )
    }

    /// The GetEvents stream of a new client.
    pub fn stream(
        &self,
        filter: RequestFilter,
        fields: Vec<FieldFilterSpec>,
        peer: &str,
        node_name: &str,
    ) -> EventStream {
        let (rx, pending) = self.subscribe(filter, peer);
        let state = StreamState {
            rx,
            pending,
            received: 0,
            fields,
            ready: std::collections::VecDeque::new(),
            node_name: node_name.to_string(),
            metrics: self.metrics.clone(),
        };
        Box::pin(futures::stream::unfold(state, |mut s| async move {
            let m = s.next().await?;
            Some((Ok(m), s))
        }))
    }

    /// Ends every stream (each client still receives what is already queued for it).
    pub fn close(&self) {
        for c in self.lock().drain(..) {
            self.remove_series(&c);
        }
        self.metrics.grpc_clients.set(0);
    }
}

pub type EventStream =
    Pin<Box<dyn Stream<Item = Result<tetragon::GetEventsResponse, Status>> + Send + 'static>>;

/// A client's queue; what is still in it when the client goes was never sent (counted
/// `abandoned`).
struct ClientQueue {
    rx: mpsc::Receiver<Arc<Published>>,
    stage: StageCounters,
    clients: std::sync::Weak<Mutex<Vec<Arc<Client>>>>,
    metrics: Arc<Metrics>,
}

impl Drop for ClientQueue {
    fn drop(&mut self) {
        self.rx.close();
        while let Ok(item) = self.rx.try_recv() {
            if item.loss.is_none() {
                self.stage.inside.dec();
                self.stage.abandoned.inc();
            }
        }
        // The closed queue makes its client's sender closed: forget it now rather than when
        // the next event finds it.
        if let Some(clients) = self.clients.upgrade() {
            forget_closed(&clients, &self.metrics);
        }
    }
}

/// Drops every client whose stream has ended, with its metric series.
fn forget_closed(clients: &Mutex<Vec<Arc<Client>>>, metrics: &Metrics) {
    let mut clients = relock(clients);
    clients.retain(|c| {
        let open = !c.tx.is_closed();
        if !open {
            remove_series(metrics, c);
        }
        open
    });
    metrics.grpc_clients.set(clients.len() as i64);
}

fn remove_series(metrics: &Metrics, c: &Client) {
    metrics.grpc_client_dropped.remove(&c.label);
    metrics.grpc_client_matched.remove(&c.label);
}

struct StreamState {
    rx: ClientQueue,
    pending: Arc<Mutex<Pending>>,
    /// Items taken from the queue so far.
    received: u64,
    fields: Vec<FieldFilterSpec>,
    /// Messages due before the next one from the queue (this client's loss reports).
    ready: std::collections::VecDeque<(tetragon::GetEventsResponse, LossBatch)>,
    node_name: String,
    metrics: Arc<Metrics>,
}

impl StreamState {
    /// Turns what this client lost before the next queued item into markers, in `ready`.
    fn take_losses(&mut self) {
        let batch = relock(&self.pending).due(self.received);
        if batch.is_empty() {
            return;
        }
        let now = now_ns();
        for (key, span) in batch.entries() {
            let mut one = LossBatch::default();
            one.add(key.clone(), span.count, span.from_ns, span.to_ns);
            let Some(marker) = one.markers(&self.node_name, now).pop() else {
                continue;
            };
            match wire::to_proto(&marker) {
                Ok(p) => self.ready.push_back((p, one)),
                Err(e) => {
                    // Never happens with the markers the sensor builds; the plain count still
                    // reaches the client.
                    tracing::error!("cannot convert a loss marker: {e}");
                    let n = one.total();
                    self.ready
                        .push_back((wire::rate_limit_info(n, &self.node_name, None), one));
                }
            }
        }
    }

    fn sent_marker(&self, batch: &LossBatch) {
        for (k, s) in batch.entries() {
            self.metrics
                .loss_reported
                .get_or_create(&OutputStageLabel {
                    output: "client".into(),
                    stage: k.stage.as_str().into(),
                })
                .inc_by(s.count);
        }
    }

    /// One item taken from the queue: markers it brings, or the event after the losses due
    /// before it.
    fn took(&mut self, item: Arc<Published>) {
        self.take_losses();
        self.received += 1;
        if let Some(batch) = &item.loss {
            self.ready.push_back((item.proto.clone(), batch.clone()));
            return;
        }
        self.rx.stage.inside.dec();
        self.rx.stage.out.inc();
        let msg = if self.fields.is_empty() {
            item.proto.clone()
        } else {
            match wire::apply_field_filters(&item.proto, item.kind, &self.fields) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("field filter failed: {e}");
                    item.proto.clone()
                }
            }
        };
        self.ready.push_back((msg, LossBatch::default()));
    }

    async fn next(&mut self) -> Option<tetragon::GetEventsResponse> {
        loop {
            if let Some((msg, batch)) = self.ready.pop_front() {
                self.sent_marker(&batch);
                return Some(msg);
            }
            match self.rx.rx.try_recv() {
                Ok(item) => {
                    self.took(item);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Empty) => {
                    // Nothing queued: losses after the last item are due now.
                    self.take_losses();
                    if !self.ready.is_empty() {
                        continue;
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.received = u64::MAX;
                    self.take_losses();
                    let (msg, batch) = self.ready.pop_front()?;
                    self.sent_marker(&batch);
                    return Some(msg);
                }
            }
            match tokio::time::timeout(Duration::from_secs(1), self.rx.rx.recv()).await {
                Ok(Some(item)) => self.took(item),
                Ok(None) => {
                    self.received = u64::MAX;
                    self.take_losses();
                    let (msg, batch) = self.ready.pop_front()?;
                    self.sent_marker(&batch);
                    return Some(msg);
                }
                Err(_) => self.take_losses(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_api::events::{Loss, LossKind, Process, ProcessExec};

    fn ev(pid: u32) -> GetEventsResponse {
        GetEventsResponse::new(
            ProcessExec {
                process: Some(
                    Process {
                        pid: Some(pid),
                        binary: "/bin/x".into(),
                        ..Default::default()
                    }
                    .into(),
                ),
                ..Default::default()
            },
            "n",
            "2026-01-01T00:00:00Z",
        )
    }

    fn state(b: &Broadcaster) -> StreamState {
        let (rx, pending) = b.subscribe(RequestFilter::default(), "t");
        StreamState {
            rx,
            pending,
            received: 0,
            fields: vec![],
            ready: Default::default(),
            node_name: "n".into(),
            metrics: b.metrics.clone(),
        }
    }

    #[test]
    fn a_stream_that_ends_is_forgotten_without_waiting_for_an_event() {
        let metrics = Arc::new(Metrics::new());
        let b = Broadcaster::new(2, metrics.clone());
        let first = state(&b);
        let second = state(&b);
        assert_eq!(metrics.grpc_clients.get(), 2);
        drop(first);
        assert_eq!(b.subscribers(), 1);
        assert_eq!(metrics.grpc_clients.get(), 1);
        drop(second);
        assert_eq!(b.subscribers(), 0);
        assert_eq!(metrics.grpc_clients.get(), 0);
    }

    #[tokio::test]
    async fn full_client_queue_drops_counts_and_reports() {
        let metrics = Arc::new(Metrics::new());
        let b = Broadcaster::new(2, metrics.clone());
        let mut s = state(&b);
        for pid in 1..=5 {
            let e = ev(pid);
            b.publish(&e, &e.to_json().unwrap(), None);
        }
        assert_eq!(b.dropped_total(), 3);
        let metric = metrics
            .grpc_client_dropped
            .get_or_create(&ClientLabel {
                client: "1:t".into(),
            })
            .get();
        assert_eq!(metric, 3);
        // The two queued events come first: the gap is after them.
        let e1 = wire::from_proto(&s.next().await.unwrap()).unwrap();
        assert_eq!(e1.process().unwrap().pid, Some(1));
        let e2 = wire::from_proto(&s.next().await.unwrap()).unwrap();
        assert_eq!(e2.process().unwrap().pid, Some(2));
        let marker = s.next().await.unwrap();
        assert_eq!(wire::dropped_events(&marker), Some(3));
        let loss = Loss::from_event(&wire::from_proto(&marker).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(
            (loss.stage, loss.reason, loss.kind),
            (
                Some(LossStage::Client),
                Some(LossReason::ClientQueueFull),
                Some(LossKind::Exec)
            )
        );
        let e6 = ev(6);
        b.publish(&e6, &e6.to_json().unwrap(), None);
        let e6 = wire::from_proto(&s.next().await.unwrap()).unwrap();
        assert_eq!(e6.process().unwrap().pid, Some(6));
        b.close();
        assert!(s.next().await.is_none());
    }

    #[tokio::test]
    async fn upstream_markers_reach_clients_or_fold_into_their_report() {
        let metrics = Arc::new(Metrics::new());
        let b = Broadcaster::new(1, metrics.clone());
        let mut s = state(&b);
        let mut kernel = LossBatch::default();
        kernel.add_now(
            LossKey::new(
                LossStage::Kernel,
                LossReason::RingBufferFull,
                LossKind::Exit,
            ),
            4,
        );
        let e = ev(1);
        b.publish(&e, &e.to_json().unwrap(), None);
        // The queue is full: the marker folds into the client's own report, after the event.
        b.publish_loss(&kernel, "n");
        assert_eq!(
            wire::from_proto(&s.next().await.unwrap())
                .unwrap()
                .process()
                .unwrap()
                .pid,
            Some(1)
        );
        let m = wire::from_proto(&s.next().await.unwrap()).unwrap();
        let loss = Loss::from_event(&m).unwrap().unwrap();
        assert_eq!((loss.count, loss.stage), (4, Some(LossStage::Kernel)));
        // With room, it is queued in place.
        b.publish_loss(&kernel, "n");
        let m = wire::from_proto(&s.next().await.unwrap()).unwrap();
        assert_eq!(Loss::from_event(&m).unwrap().unwrap().count, 4);
    }

    #[tokio::test]
    async fn a_closed_client_is_forgotten() {
        let metrics = Arc::new(Metrics::new());
        let b = Broadcaster::new(1, metrics.clone());
        let s = state(&b);
        for pid in 1..=2 {
            let e = ev(pid);
            b.publish(&e, &e.to_json().unwrap(), None);
        }
        let text = crate::output::metrics::render(&metrics.registry());
        assert!(
            text.contains("vigil_grpc_client_events_dropped_total{client=\"1:t\"} 1"),
            "{text}"
        );
        drop(s);
        assert_eq!(b.subscribers(), 0);
        // Nobody listens any more: a later event is not offered to anyone.
        let e = ev(3);
        b.publish(&e, &e.to_json().unwrap(), None);
        let text = crate::output::metrics::render(&metrics.registry());
        assert!(
            !text.contains("client=\"1:t\""),
            "the stream's series is gone: {text}"
        );
        assert!(
            text.contains("vigil_grpc_events_dropped_total 1"),
            "the total stays: {text}"
        );
        // in = out + lost + abandoned: pid 1 was left in the closed queue; pid 2 found the queue
        // full.
        for (result, n) in [("in", 2), ("out", 0), ("lost", 1), ("abandoned", 1)] {
            let line =
                format!("vigil_stage_events_total{{stage=\"client\",result=\"{result}\"}} {n}");
            assert!(text.contains(&line), "{line} missing: {text}");
        }
    }
}
