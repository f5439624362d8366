//! Test support: an in-memory [`Fleet`] and a mocked Kubernetes API (tower-test), in the
//! style of kube-rs's own controller tests.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use kube::Client;
use serde_json::Value;
use tokio::sync::watch;
use tower_test::mock;

use crate::fleet::{DesiredPolicy, Fleet, PolicyKey, Rollup};

/// A fleet that records what it is told and reports the roll-ups a test sets.
pub struct FakeFleet {
    pub upserts: Mutex<Vec<DesiredPolicy>>,
    pub removes: Mutex<Vec<PolicyKey>>,
    rollups: Mutex<HashMap<PolicyKey, Rollup>>,
    tick: watch::Sender<u64>,
}

impl FakeFleet {
    pub fn new() -> Self {
        FakeFleet {
            upserts: Mutex::default(),
            removes: Mutex::default(),
            rollups: Mutex::default(),
            tick: watch::channel(0).0,
        }
    }

    /// Set a policy's roll-up (without ticking).
    pub fn set_rollup(&self, key: PolicyKey, rollup: Rollup) {
        self.rollups.lock().unwrap().insert(key, rollup);
    }

    /// Say that roll-ups changed.
    pub fn tick(&self) {
        self.tick.send_modify(|n| *n += 1);
    }

    pub fn upserts(&self) -> Vec<DesiredPolicy> {
        self.upserts.lock().unwrap().clone()
    }

    pub fn removes(&self) -> Vec<PolicyKey> {
        self.removes.lock().unwrap().clone()
    }
}

impl Fleet for FakeFleet {
    fn upsert(&self, policy: DesiredPolicy) {
        let mut rollups = self.rollups.lock().unwrap();
        // A roll-up the test set for this generation stays; otherwise: sent, no node yet.
        if rollups
            .get(&policy.key)
            .is_none_or(|r| r.generation != policy.generation)
        {
            rollups.insert(
                policy.key.clone(),
                Rollup {
                    generation: policy.generation,
                    ..Default::default()
                },
            );
        }
        self.upserts.lock().unwrap().push(policy);
    }

    fn remove(&self, key: &PolicyKey) {
        self.rollups.lock().unwrap().remove(key);
        self.removes.lock().unwrap().push(key.clone());
    }

    fn rollup(&self, key: &PolicyKey) -> Option<Rollup> {
        self.rollups.lock().unwrap().get(key).cloned()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.tick.subscribe()
    }
}

pub type MockBody = UnsyncBoxBody<Bytes, Infallible>;
pub type Responder = mock::SendResponse<Response<MockBody>>;

/// One request the operator made.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    /// Path and query.
    pub uri: String,
    pub content_type: String,
    /// The JSON body (`Null` when empty).
    pub body: Value,
}

impl Call {
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or_default()
    }

    pub fn query(&self) -> &str {
        self.uri.split_once('?').map_or("", |(_, q)| q)
    }
}

pub fn body_of(bytes: Bytes) -> MockBody {
    http_body_util::Full::new(bytes).boxed_unsync()
}

/// Answer with a JSON document.
pub fn reply(send: Responder, status: u16, body: &Value) {
    let resp = Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .body(body_of(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap();
    send.send_response(resp);
}

/// Answer with a stream of watch events (one JSON object per line) fed through the sender.
pub fn reply_stream(send: Responder) -> futures::channel::mpsc::UnboundedSender<Value> {
    use futures::StreamExt;
    let (tx, rx) = futures::channel::mpsc::unbounded::<Value>();
    let stream = rx.map(|v| {
        let mut line = serde_json::to_vec(&v).unwrap();
        line.push(b'\n');
        Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(line)))
    });
    let body = http_body_util::StreamBody::new(stream).boxed_unsync();
    send.send_response(Response::builder().status(200).body(body).unwrap());
    tx
}

/// A Kubernetes `Status` error document.
pub fn status_error(code: u16, reason: &str, message: &str) -> Value {
    serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    })
}

/// The API server side of a mocked client.
pub struct ApiServer(mock::Handle<Request<kube::client::Body>, Response<MockBody>>);

/// A client whose every request is answered by the returned [`ApiServer`].
pub fn mock_client() -> (Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<kube::client::Body>, Response<MockBody>>();
    (Client::new(service, "default"), ApiServer(handle))
}

impl ApiServer {
    /// The next request; panics when none comes within 5 s.
    pub async fn next(&mut self) -> (Call, Responder) {
        let (req, send) = tokio::time::timeout(Duration::from_secs(5), self.0.next_request())
            .await
            .expect("the operator made no request within 5 s")
            .expect("client gone");
        (decode(req).await, send)
    }

    /// The next request, or `None` when the client is gone.
    pub async fn next_or_end(&mut self) -> Option<(Call, Responder)> {
        let (req, send) = self.0.next_request().await?;
        Some((decode(req).await, send))
    }

    /// Fail if a request comes within `wait`.
    pub async fn expect_nothing(&mut self, wait: Duration) {
        if let Ok(Some((req, _))) = tokio::time::timeout(wait, self.0.next_request()).await {
            let call = decode(req).await;
            panic!(
                "unexpected request: {} {} {}",
                call.method, call.uri, call.body
            );
        }
    }
}

async fn decode(req: Request<kube::client::Body>) -> Call {
    let (parts, body) = req.into_parts();
    let bytes = body.collect_bytes().await.unwrap();
    Call {
        method: parts.method,
        uri: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        content_type: parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        body: if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                // Server-side apply bodies are sent as YAML-compatible JSON; anything else as text.
                Value::String(String::from_utf8_lossy(&bytes).into_owned())
            })
        },
    }
}
