//! A Kubernetes API server in miniature, for running the real `vigil-operator` in Kubernetes
//! mode without a cluster: plain HTTP on 127.0.0.1, an in-memory object store, and what the
//! operator's clients use of the API — list and watch (with resource versions, replaying what a
//! watcher missed), get, JSON patch and merge patch (finalizers), server-side apply of the
//! status subresource, and deletion that waits for finalizers.
//!
//! It serves the resources it is told about ([`RESOURCES`]): nodes, pods, and both policy kinds. The
//! test changes the cluster with [`FakeKube::apply`] and [`FakeKube::delete`] and reads what the
//! operator wrote back with [`FakeKube::get`]. Requests it cannot answer get a 404 `Status` and
//! are recorded ([`FakeKube::unanswered`]), so that a test can tell a gap in the fake from a bug.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A resource the fake serves: URL group prefix, plural, kind, apiVersion, namespaced.
pub struct Resource {
    pub prefix: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub api_version: &'static str,
    pub namespaced: bool,
}

pub const RESOURCES: [Resource; 4] = [
    Resource {
        prefix: "/api/v1",
        plural: "nodes",
        kind: "Node",
        api_version: "v1",
        namespaced: false,
    },
    Resource {
        prefix: "/api/v1",
        plural: "pods",
        kind: "Pod",
        api_version: "v1",
        namespaced: true,
    },
    Resource {
        prefix: "/apis/vigil.dev/v1alpha1",
        plural: "tracingpolicies",
        kind: "TracingPolicy",
        api_version: "vigil.dev/v1alpha1",
        namespaced: false,
    },
    Resource {
        prefix: "/apis/vigil.dev/v1alpha1",
        plural: "tracingpoliciesnamespaced",
        kind: "TracingPolicyNamespaced",
        api_version: "vigil.dev/v1alpha1",
        namespaced: true,
    },
];

fn resource_of_kind(kind: &str) -> &'static Resource {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind)
        .unwrap_or_else(|| panic!("the fake API server does not serve kind {kind}"))
}

/// (plural, namespace, name).
type Key = (String, String, String);

struct Watcher {
    plural: String,
    namespace: Option<String>,
    tx: mpsc::UnboundedSender<Value>,
}

#[derive(Default)]
struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    /// Every change: (resourceVersion, plural, namespace, event).
    log: Vec<(u64, String, String, Value)>,
    watchers: Vec<Watcher>,
    unanswered: Vec<String>,
}

impl Store {
    /// Stamps `obj` with a new resourceVersion and tells watchers.
    fn emit(&mut self, key: &Key, kind: &str, obj: &mut Value) {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let event = json!({"type": kind, "object": obj.clone()});
        self.log
            .push((self.rv, key.0.clone(), key.1.clone(), event.clone()));
        self.watchers.retain(|w| {
            if w.plural != key.0 || w.namespace.as_ref().is_some_and(|n| *n != key.1) {
                return !w.tx.is_closed();
            }
            w.tx.send(event.clone()).is_ok()
        });
    }

    /// Stores `obj` (a changed existing object): deleted for good when it is being deleted and
    /// has no finalizers left.
    fn update(&mut self, key: Key, mut obj: Value) -> Value {
        let finalizers_left = obj["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if obj["metadata"]["deletionTimestamp"].is_string() && !finalizers_left {
            self.objects.remove(&key);
            self.emit(&key, "DELETED", &mut obj);
        } else {
            self.emit(&key, "MODIFIED", &mut obj);
            self.objects.insert(key, obj.clone());
        }
        obj
    }
}

/// The running fake; stops with the test process.
pub struct FakeKube {
    store: Arc<Mutex<Store>>,
    pub url: String,
    dir: tempfile::TempDir,
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    respond(code, &body)
}

fn respond(code: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response")
}

/// What a path names: a collection (`name` empty) or an object, maybe its status.
struct Target {
    resource: &'static Resource,
    namespace: Option<String>,
    name: String,
    status: bool,
}

fn parse_path(path: &str) -> Option<Target> {
    for r in &RESOURCES {
        let Some(rest) = path.strip_prefix(r.prefix) else {
            continue;
        };
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        let (namespace, parts) = match parts.as_slice() {
            ["namespaces", ns, tail @ ..] if r.namespaced => (Some(ns.to_string()), tail.to_vec()),
            _ => (None, parts),
        };
        let target = |name: &str, status: bool| Target {
            resource: r,
            namespace: namespace.clone(),
            name: name.to_string(),
            status,
        };
        match parts.as_slice() {
            [p] if *p == r.plural => return Some(target("", false)),
            [p, name] if *p == r.plural => return Some(target(name, false)),
            [p, name, "status"] if *p == r.plural => return Some(target(name, true)),
            _ => {}
        }
    }
    None
}

fn query_param<'a>(uri: &'a Uri, key: &str) -> Option<&'a str> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then_some(v)
    })
}

async fn handle(
    store: Arc<Mutex<Store>>,
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let Some(t) = parse_path(uri.path()) else {
        store
            .lock()
            .unwrap()
            .unanswered
            .push(format!("{method} {uri}"));
        return status(StatusCode::NOT_FOUND, "NotFound", "not served by the fake");
    };
    let ns = t.namespace.clone().unwrap_or_default();
    let key = (t.resource.plural.to_string(), ns.clone(), t.name.clone());
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    match (method, t.name.is_empty()) {
        (Method::GET, true) if query_param(&uri, "watch") == Some("true") => {
            let from: u64 = query_param(&uri, "resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let (tx, rx) = mpsc::unbounded_channel();
            {
                let mut st = store.lock().unwrap();
                for (rv, plural, ons, event) in &st.log {
                    if *rv > from
                        && *plural == t.resource.plural
                        && t.namespace.as_ref().is_none_or(|n| n == ons)
                    {
                        let _ = tx.send(event.clone());
                    }
                }
                st.watchers.push(Watcher {
                    plural: t.resource.plural.to_string(),
                    namespace: t.namespace.clone(),
                    tx,
                });
            }
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                let event = rx.recv().await?;
                let mut line = serde_json::to_vec(&event).expect("json");
                line.push(b'\n');
                Some((Ok::<_, Infallible>(Bytes::from(line)), rx))
            });
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(stream))
                .expect("response")
        }
        (Method::GET, true) => {
            let st = store.lock().unwrap();
            let items: Vec<Value> = st
                .objects
                .iter()
                .filter(|((p, ons, _), _)| {
                    *p == t.resource.plural && t.namespace.as_ref().is_none_or(|n| n == ons)
                })
                .map(|(_, v)| v.clone())
                .collect();
            respond(
                StatusCode::OK,
                &json!({
                    "kind": format!("{}List", t.resource.kind),
                    "apiVersion": t.resource.api_version,
                    "metadata": {"resourceVersion": st.rv.to_string()},
                    "items": items,
                }),
            )
        }
        (Method::GET, false) => match store.lock().unwrap().objects.get(&key) {
            Some(v) => respond(StatusCode::OK, v),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{} not found", t.name),
            ),
        },
        (Method::PATCH, false) => {
            let patch: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string());
                }
            };
            let mut st = store.lock().unwrap();
            let Some(mut obj) = st.objects.get(&key).cloned() else {
                return status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("{} not found", t.name),
                );
            };
            if content_type.starts_with("application/json-patch+json") {
                // The API server's `test` of a missing path against null succeeds (the
                // finalizer helper tests `/metadata/finalizers` that way); json-patch's fails.
                let mut patch = patch;
                if let Some(ops) = patch.as_array_mut() {
                    let mut absent_ok = true;
                    ops.retain(|op| {
                        let null_test = op["op"] == "test" && op["value"].is_null();
                        if null_test {
                            let cur = op["path"].as_str().and_then(|p| obj.pointer(p));
                            absent_ok &= cur.is_none_or(Value::is_null);
                        }
                        !null_test
                    });
                    if !absent_ok {
                        return status(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "Invalid",
                            "test operation failed: the path is not null",
                        );
                    }
                }
                let ops: json_patch::Patch = match serde_json::from_value(patch) {
                    Ok(p) => p,
                    Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
                };
                if let Err(e) = json_patch::patch(&mut obj, &ops) {
                    // A failed `test` op: the object changed under the client.
                    return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &e.to_string());
                }
            } else if t.status {
                // Server-side apply or a merge patch of the status subresource: status only.
                obj["status"] = patch["status"].clone();
            } else {
                json_patch::merge(&mut obj, &patch);
            }
            let obj = st.update(key, obj);
            respond(StatusCode::OK, &obj)
        }
        (m, _) => {
            store.lock().unwrap().unanswered.push(format!("{m} {uri}"));
            status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "not served by the fake",
            )
        }
    }
}

/// A CA certificate (base64 PEM) for the kubeconfig. The fake speaks plain HTTP, so it is never
/// used; but without a CA kube's client asks the platform's trust store, which a minimal system
/// (the VM's initramfs) does not have, and refuses to start.
fn unused_ca() -> String {
    use base64::Engine;
    let cert = rcgen::generate_simple_self_signed(vec!["fake-kube".to_string()])
        .expect("self-signed certificate");
    base64::engine::general_purpose::STANDARD.encode(cert.cert.pem())
}

impl FakeKube {
    /// Serves on a free port of 127.0.0.1 from a thread of its own.
    pub fn start() -> FakeKube {
        let store = Arc::new(Mutex::new(Store::default()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let s = store.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().fallback(
                    move |method: Method, uri: Uri, headers: axum::http::HeaderMap, body: Bytes| {
                        handle(s.clone(), method, uri, headers, body)
                    },
                );
                axum::serve(listener, app).await.expect("fake API server");
            });
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = FakeKube { store, url, dir };
        std::fs::write(
            fake.kubeconfig(),
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"{}\", certificate-authority-data: {}}}\nusers:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: fake, namespace: vigil}}\ncurrent-context: fake\n",
                fake.url,
                unused_ca()
            ),
        )
        .expect("kubeconfig");
        fake
    }

    /// A kubeconfig pointing at the fake (for `KUBECONFIG`).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates or replaces an object (`kind`, `metadata.name`, and `metadata.namespace` for
    /// namespaced kinds are required). A new object gets a uid and generation 1; a changed
    /// `spec` bumps the generation, as the API server does. Returns the stored object.
    pub fn apply(&self, mut obj: Value) -> Value {
        let r = resource_of_kind(obj["kind"].as_str().expect("kind"));
        let name = obj["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_string();
        let ns = if r.namespaced {
            obj["metadata"]["namespace"]
                .as_str()
                .expect("metadata.namespace")
                .to_string()
        } else {
            String::new()
        };
        obj["apiVersion"] = json!(r.api_version);
        let key = (r.plural.to_string(), ns, name.clone());
        let mut st = self.store.lock().unwrap();
        match st.objects.get(&key).cloned() {
            Some(old) => {
                let meta = &old["metadata"];
                let generation = meta["generation"].as_i64().unwrap_or(1)
                    + i64::from(old["spec"] != obj["spec"]);
                for k in ["uid", "creationTimestamp", "finalizers"] {
                    if !meta[k].is_null() {
                        obj["metadata"][k] = meta[k].clone();
                    }
                }
                obj["metadata"]["generation"] = json!(generation);
                if obj["status"].is_null() && !old["status"].is_null() {
                    obj["status"] = old["status"].clone();
                }
                st.update(key, obj)
            }
            None => {
                if obj["metadata"]["uid"].is_null() {
                    obj["metadata"]["uid"] = json!(format!("fake-{}-{}", r.plural, st.rv + 1));
                }
                obj["metadata"]["generation"] = json!(1);
                obj["metadata"]["creationTimestamp"] = json!("2026-11-28T12:00:00Z");
                st.emit(&key, "ADDED", &mut obj);
                st.objects.insert(key, obj.clone());
                obj
            }
        }
    }

    /// Deletes an object as the API server does: at once without finalizers, else it gets a
    /// `deletionTimestamp` and goes when the last finalizer is removed. False if unknown.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> bool {
        let r = resource_of_kind(kind);
        let key = (
            r.plural.to_string(),
            if r.namespaced {
                namespace.to_string()
            } else {
                String::new()
            },
            name.to_string(),
        );
        let mut st = self.store.lock().unwrap();
        let Some(mut obj) = st.objects.get(&key).cloned() else {
            return false;
        };
        obj["metadata"]["deletionTimestamp"] = json!("2026-11-28T12:00:01Z");
        st.update(key, obj);
        true
    }

    /// The stored object, if it exists.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let r = resource_of_kind(kind);
        let ns = if r.namespaced { namespace } else { "" };
        self.store
            .lock()
            .unwrap()
            .objects
            .get(&(r.plural.to_string(), ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Requests the fake could not answer (method and URI).
    pub fn unanswered(&self) -> Vec<String> {
        self.store.lock().unwrap().unanswered.clone()
    }
}
