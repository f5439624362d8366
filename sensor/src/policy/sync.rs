//! The operator client (`--operator-address`): one `vigil.policysync.v1.PolicySync/Sync`
//! stream to the operator. The sensor says Hello (node name, labels, kernel, features, the
//! operator policies it runs), then applies every policy set the operator sends and reports
//! on each policy of it.
//!
//! Applying a set ([`Applier::apply`]): a policy whose version changed is reloaded (the old
//! version is unloaded first, since both carry the same name; when the new one cannot be
//! loaded the old one is loaded back and the new one is NACKed), operator policies no longer in
//! the set are removed, unchanged ones stay untouched. Each policy stands alone: one that fails
//! does not stop the others.
//!
//! In Kubernetes mode the operator also sends the pods of this node (a complete `PodSet`, again
//! whenever one changes); the sensor replaces its pod inventory with each (see
//! [`crate::k8s::pods`]). Pods without a uid, namespace or name are left out and counted.
//!
//! When the operator goes away, the sensor keeps the last set it applied (and keeps enforcing
//! it, and the last pods) and reconnects with backoff (0.5 s doubling to 10 s); every failure is logged and
//! counted in `vigil_operator_connection_failures_total`, never fatal.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{ClientTlsConfig, Endpoint};
use vigil_api::policy::PolicyIr;
use vigil_api::wire::pod::Pod;
use vigil_api::wire::policy_sync as pb;
use vigil_api::wire::policy_sync::policy_sync_client::PolicySyncClient;

use crate::error::SensorError;
use crate::hooks::engine::Engine;
use crate::k8s::pod_api::check_pod;
use crate::k8s::pods::PodInventory;
use crate::output::metrics::Metrics;
use crate::policy::control::{PolicyControl, PolicyInfo, PolicyKey, PolicyOrigin, PolicyState};

/// First reconnect delay; doubled after each failure up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What the operator client needs from the policy engine: [`PolicyControl`] plus loading an
/// already compiled policy.
pub trait SyncTarget: PolicyControl {
    fn add_ir(&self, ir: PolicyIr, origin: PolicyOrigin) -> Result<PolicyInfo, SensorError>;
    /// The node's labels as the operator knows them (hostSelector is matched against them).
    fn set_node_labels(&self, labels: BTreeMap<String, String>);
    /// Changes whenever a policy's CPU budget demotes it; `None`: never.
    fn demotion_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

impl SyncTarget for Engine {
    fn add_ir(&self, ir: PolicyIr, origin: PolicyOrigin) -> Result<PolicyInfo, SensorError> {
        Engine::add_ir(self, ir, origin)
    }
    fn set_node_labels(&self, labels: BTreeMap<String, String>) {
        Engine::set_node_labels(self, labels);
    }
    fn demotion_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(Engine::demotion_changes(self))
    }
}

/// Normalizes and checks `--operator-address`: `http://HOST:PORT`, `https://HOST:PORT` or
/// `HOST:PORT` (plain text).
pub fn parse_address(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty; expected http://HOST:PORT, https://HOST:PORT or HOST:PORT".into());
    }
    let url = if s.contains("://") {
        s.to_string()
    } else {
        format!("http://{s}")
    };
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(format!(
            "{s:?}: expected http://HOST:PORT, https://HOST:PORT or HOST:PORT"
        ));
    }
    let uri: tonic::transport::Uri = url
        .parse()
        .map_err(|e| format!("{s:?} is not an address: {e}; expected http(s)://HOST:PORT"))?;
    if uri.host().is_none_or(str::is_empty) || uri.port().is_none() {
        return Err(format!(
            "{s:?}: expected http(s)://HOST:PORT with both host and port"
        ));
    }
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(format!(
            "{s:?}: a path is not allowed; expected http(s)://HOST:PORT"
        ));
    }
    Ok(url)
}

fn label_key_ok(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
}

fn label_value_ok(v: &str) -> bool {
    v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Checks node labels (Kubernetes label syntax).
pub fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in labels {
        if !label_key_ok(k) {
            return Err(format!(
                "label key {k:?} is not valid; expected letters, digits, '-', '_', '.', '/' (1..=253)"
            ));
        }
        if !label_value_ok(v) {
            return Err(format!(
                "label {k}={v:?}: value not valid; expected letters, digits, '-', '_', '.' (0..=63)"
            ));
        }
    }
    Ok(())
}

/// Parses `--node-labels k=v,k2=v2`.
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} has no '='; expected k=v,k2=v2"))?;
        let (k, v) = (k.trim(), v.trim());
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("label {k:?} is given twice"));
        }
    }
    check_labels(&out)?;
    Ok(out)
}

/// Where the operator is, how to reach it, and who this sensor is, for the Hello.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// `http://HOST:PORT` or `https://HOST:PORT` (see [`parse_address`]).
    pub address: String,
    /// TLS for an `https://` address, built from checked files at start
    /// ([`crate::config::OperatorTls::client_config`]).
    pub tls: Option<ClientTlsConfig>,
    pub node_name: String,
    pub labels: BTreeMap<String, String>,
    pub kernel_release: String,
    pub features: BTreeMap<String, bool>,
}

struct Applied {
    version: String,
    ir: PolicyIr,
}

/// The operator's policies on this sensor, and how to apply a new set.
pub struct Applier {
    target: Arc<dyn SyncTarget>,
    applied: BTreeMap<PolicyKey, Applied>,
    /// Versions that failed to load, with the reason (not retried until the version changes).
    failed: HashMap<PolicyKey, (String, String)>,
}

fn key_of(ir: &PolicyIr) -> PolicyKey {
    let id = ir.identity.clone().unwrap_or_default();
    PolicyKey::new(id.name, id.namespace)
}

fn report_of(key: &PolicyKey, version: &str, info: &PolicyInfo) -> pb::Report {
    let state = match info.state {
        PolicyState::Enabled | PolicyState::Disabled => pb::PolicyState::Ready,
        PolicyState::Partial => pb::PolicyState::Partial,
        PolicyState::Error => pb::PolicyState::Failed,
    };
    pb::Report {
        name: key.name.clone(),
        namespace: key.namespace.clone(),
        version: version.to_string(),
        state: state as i32,
        reason: info.error.clone(),
        hooks: info.hooks.iter().map(Into::into).collect(),
        demotion: info.demotion.clone().unwrap_or_default(),
    }
}

fn failed_report(key: &PolicyKey, version: &str, reason: &str) -> pb::Report {
    pb::Report {
        name: key.name.clone(),
        namespace: key.namespace.clone(),
        version: version.to_string(),
        state: pb::PolicyState::Failed as i32,
        reason: reason.to_string(),
        hooks: Vec::new(),
        demotion: String::new(),
    }
}

impl Applier {
    pub fn new(target: Arc<dyn SyncTarget>) -> Self {
        Applier {
            target,
            applied: BTreeMap::new(),
            failed: HashMap::new(),
        }
    }

    /// The operator policies running now, for the Hello.
    pub fn running(&self) -> Vec<pb::RunningPolicy> {
        self.applied
            .iter()
            .map(|(k, a)| pb::RunningPolicy {
                name: k.name.clone(),
                namespace: k.namespace.clone(),
                version: a.version.clone(),
            })
            .collect()
    }

    fn info(&self, key: &PolicyKey) -> Option<PolicyInfo> {
        self.target
            .list()
            .into_iter()
            .find(|p| p.name == key.name && p.namespace == key.namespace)
    }

    /// Where demotions are announced (see [`SyncTarget::demotion_changes`]).
    pub fn demotion_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.target.demotion_changes()
    }

    /// A report on every operator policy running now (sent again when one is demoted).
    pub fn reports(&self) -> Vec<pb::Report> {
        let infos = self.target.list();
        self.applied
            .iter()
            .filter_map(|(key, a)| {
                infos
                    .iter()
                    .find(|i| {
                        i.name == key.name
                            && i.namespace == key.namespace
                            && i.origin == PolicyOrigin::Operator
                    })
                    .map(|info| report_of(key, &a.version, info))
            })
            .collect()
    }

    /// Applies a complete set; returns one report per policy of the set.
    pub fn apply(&mut self, set: &pb::PolicySet) -> Vec<pb::Report> {
        // First the labels: policies loaded below match their hostSelector against them. An
        // operator that sends none (an older one) leaves `--node-labels` in force.
        if !set.node_labels.is_empty() {
            self.target
                .set_node_labels(set.node_labels.clone().into_iter().collect());
        }
        let wanted: BTreeSet<PolicyKey> = set
            .policies
            .iter()
            .filter_map(|p| p.ir.as_ref().map(key_of))
            .collect();
        // Not sent, but not to be removed either (a staged rollout that has not reached us).
        let kept: BTreeSet<PolicyKey> = set
            .keep
            .iter()
            .map(|r| PolicyKey::new(&r.name, &r.namespace))
            .collect();
        // Removals first: they free slots for what comes.
        let gone: Vec<PolicyKey> = self
            .applied
            .keys()
            .filter(|k| !wanted.contains(*k) && !kept.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            self.applied.remove(&k);
            match self.target.delete(&k) {
                Ok(()) | Err(SensorError::PolicyNotFound(_)) => {
                    tracing::info!(policy = %k, "operator policy removed")
                }
                Err(e) => tracing::warn!(policy = %k, "removing operator policy: {e}"),
            }
        }
        self.failed
            .retain(|k, _| wanted.contains(k) || kept.contains(k));
        let mut reports = Vec::with_capacity(set.policies.len());
        for p in &set.policies {
            let Some(ir) = &p.ir else {
                tracing::warn!(version = %p.version, "operator sent a policy without IR");
                continue;
            };
            let key = key_of(ir);
            if self
                .applied
                .get(&key)
                .is_some_and(|a| a.version == p.version)
            {
                if let Some(info) = self
                    .info(&key)
                    .filter(|i| i.origin == PolicyOrigin::Operator)
                {
                    reports.push(report_of(&key, &p.version, &info));
                    continue;
                }
                // Deleted behind our back (e.g. `vigil policy delete`): load it again.
                self.applied.remove(&key);
            }
            if let Some((v, reason)) = self.failed.get(&key)
                && *v == p.version
            {
                reports.push(failed_report(&key, &p.version, reason));
                continue;
            }
            match self.load(&key, ir.clone(), &p.version) {
                Ok(info) => {
                    self.failed.remove(&key);
                    reports.push(report_of(&key, &p.version, &info));
                }
                Err(reason) => {
                    tracing::warn!(policy = %key, version = %p.version, "operator policy not loaded: {reason}");
                    reports.push(failed_report(&key, &p.version, &reason));
                    self.failed.insert(key, (p.version.clone(), reason));
                }
            }
        }
        reports
    }

    /// Loads one version in place of the running one; on failure the running one stays.
    fn load(&mut self, key: &PolicyKey, ir: PolicyIr, version: &str) -> Result<PolicyInfo, String> {
        if let Some(local) = self.info(key)
            && local.origin != PolicyOrigin::Operator
        {
            return Err(format!(
                "a policy named {key} is already loaded on this node from {} (delete it there to let the operator's run)",
                local.origin
            ));
        }
        let old = self.applied.remove(key);
        if old.is_some()
            && let Err(e) = self.target.delete(key)
            && !matches!(e, SensorError::PolicyNotFound(_))
        {
            let o = old.expect("checked");
            self.applied.insert(key.clone(), o);
            return Err(format!("cannot unload the running version: {e}"));
        }
        let outcome = match self.target.add_ir(ir.clone(), PolicyOrigin::Operator) {
            Ok(info) if info.state == PolicyState::Error => {
                let _ = self.target.delete(key);
                Err(if info.error.is_empty() {
                    "no hook of the policy could be loaded".to_string()
                } else {
                    info.error
                })
            }
            Ok(info) => Ok(info),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(info) => {
                tracing::info!(policy = %key, version, state = info.state.as_str(), "operator policy loaded");
                self.applied.insert(
                    key.clone(),
                    Applied {
                        version: version.to_string(),
                        ir,
                    },
                );
                Ok(info)
            }
            Err(reason) => {
                if let Some(o) = old {
                    match self.target.add_ir(o.ir.clone(), PolicyOrigin::Operator) {
                        Ok(_) => {
                            tracing::info!(policy = %key, version = %o.version, "previous version kept");
                            self.applied.insert(key.clone(), o);
                        }
                        Err(e) => {
                            tracing::error!(policy = %key, "previous version could not be loaded back: {e}")
                        }
                    }
                }
                Err(reason)
            }
        }
    }
}

/// Runs the client until the task is aborted: connect, Hello, apply sets, report; reconnect
/// with backoff whenever the stream ends or cannot be opened.
pub async fn run(
    opts: SyncOptions,
    applier: Applier,
    pods: Option<Arc<PodInventory>>,
    metrics: Arc<Metrics>,
) {
    let applier = Arc::new(Mutex::new(applier));
    let mut backoff = INITIAL_BACKOFF;
    loop {
        let mut got_set = false;
        match session(&opts, &applier, pods.as_ref(), &metrics, &mut got_set).await {
            Ok(()) => tracing::warn!(
                operator = %opts.address,
                "the operator closed the policy stream; keeping the current policies, reconnecting in {backoff:?}"
            ),
            Err(e) => {
                metrics.operator_connection_failures.inc();
                tracing::warn!(
                    operator = %opts.address,
                    "policy sync: {e}; keeping the current policies, reconnecting in {backoff:?}"
                );
            }
        }
        metrics.operator_connected.set(0);
        if got_set {
            backoff = INITIAL_BACKOFF;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The pods of a pod set the inventory can take; the others are logged and counted.
pub fn valid_pods(set: pb::PodSet, metrics: &Metrics) -> Vec<Pod> {
    set.pods
        .into_iter()
        .filter(|p| match check_pod(p) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("operator pod set: {e}; pod left out");
                metrics.operator_pods_rejected.inc();
                false
            }
        })
        .map(Pod::from)
        .collect()
}

async fn session(
    opts: &SyncOptions,
    applier: &Arc<Mutex<Applier>>,
    pods: Option<&Arc<PodInventory>>,
    metrics: &Metrics,
    got_set: &mut bool,
) -> Result<(), String> {
    let mut endpoint = Endpoint::from_shared(opts.address.clone())
        .map_err(|e| format!("bad operator address: {e}"))?;
    // TLS problems (an unknown CA, a name the certificate lacks, a client certificate the
    // operator refuses) surface as transport errors at connect or, with TLS 1.3 client
    // authentication, at the first call: say TLS in both, the chain says why.
    let over = if let Some(tls) = &opts.tls {
        endpoint = endpoint
            .tls_config(tls.clone())
            .map_err(|e| format!("TLS setup: {}", error_chain(&e)))?;
        " over TLS"
    } else {
        ""
    };
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .connect()
        .await
        .map_err(|e| {
            let chain = error_chain(&e);
            format!(
                "cannot connect{over}: {chain}{}",
                tls_hint(&opts.tls, &chain, false)
            )
        })?;
    let mut client = PolicySyncClient::new(channel).max_decoding_message_size(64 << 20);
    let (tx, rx) = mpsc::channel(1024);
    let running = applier.lock().unwrap_or_else(|e| e.into_inner()).running();
    let hello = pb::Hello {
        node_name: opts.node_name.clone(),
        labels: opts.labels.clone().into_iter().collect(),
        kernel_release: opts.kernel_release.clone(),
        features: opts.features.clone().into_iter().collect(),
        running,
        sensor_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    tx.send(pb::SensorMessage {
        message: Some(pb::sensor_message::Message::Hello(hello)),
    })
    .await
    .map_err(|_| "stream closed".to_string())?;
    let mut inbound = client
        .sync(ReceiverStream::new(rx))
        .await
        .map_err(|s| {
            let text = status_text(&s);
            format!(
                "operator refused the stream{over}: {text}{}",
                tls_hint(&opts.tls, &text, true)
            )
        })?
        .into_inner();
    metrics.operator_connected.set(1);
    tracing::info!(operator = %opts.address, "connected to the operator");
    let mut demotions = applier
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .demotion_changes();
    loop {
        let message = tokio::select! {
            m = inbound.message() => match m {
                Ok(Some(m)) => m.message,
                Ok(None) => return Ok(()),
                Err(s) => return Err(format!("stream broke: {}", status_text(&s))),
            },
            changed = next_change(&mut demotions) => {
                if !changed {
                    demotions = None;
                    continue;
                }
                // A policy was demoted: tell the operator unasked.
                let reports = applier.lock().unwrap_or_else(|e| e.into_inner()).reports();
                for r in reports {
                    tx.send(pb::SensorMessage {
                        message: Some(pb::sensor_message::Message::Report(r)),
                    })
                    .await
                    .map_err(|_| "stream closed while reporting".to_string())?;
                }
                continue;
            }
        };
        let set = match message {
            Some(pb::operator_message::Message::Policies(set)) => set,
            Some(pb::operator_message::Message::Pods(set)) => {
                metrics.operator_pod_sets.inc();
                let Some(inv) = pods else {
                    tracing::warn!(
                        "the operator sent pods, but this sensor keeps no pod inventory"
                    );
                    continue;
                };
                let (sequence, count) = (set.sequence, set.pods.len());
                let valid = valid_pods(set, metrics);
                let inv = inv.clone();
                // The store walks the cgroup tree and updates the scoped policies' kernel sets.
                tokio::task::spawn_blocking(move || inv.apply_pods(valid))
                    .await
                    .map_err(|e| format!("applying the pod set failed: {e}"))?;
                tracing::debug!(sequence, pods = count, "pod set received");
                continue;
            }
            None => {
                tracing::warn!("ignoring an empty message from the operator");
                continue;
            }
        };
        *got_set = true;
        metrics.operator_policy_sets.inc();
        tracing::debug!(
            sequence = set.sequence,
            policies = set.policies.len(),
            "policy set received"
        );
        let a = applier.clone();
        let reports = tokio::task::spawn_blocking(move || {
            a.lock().unwrap_or_else(|e| e.into_inner()).apply(&set)
        })
        .await
        .map_err(|e| format!("applying the policy set failed: {e}"))?;
        for r in reports {
            tx.send(pb::SensorMessage {
                message: Some(pb::sensor_message::Message::Report(r)),
            })
            .await
            .map_err(|_| "stream closed while reporting".to_string())?;
        }
    }
}

/// Waits for the next change of `rx`: false when its sender is gone; never returns without one.
async fn next_change(rx: &mut Option<tokio::sync::watch::Receiver<u64>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// The likely cause of a TLS failure, from the error text (after the handshake, HTTP/2 keeps
/// only the text of a TLS alert, not the error): "; CAUSE", or "" when nothing is known.
/// `after_handshake`: the connection was up when it failed (the first call); with TLS 1.3 the
/// operator checks the client certificate then, and its alert may be lost to the reset.
fn tls_hint(tls: &Option<ClientTlsConfig>, text: &str, after_handshake: bool) -> &'static str {
    if tls.is_none() {
        return "";
    }
    let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
    if has(&["UnknownIssuer"]) {
        "; the operator's certificate is not signed by a CA of --operator-tls-ca"
    } else if has(&["NotValidForName", "not valid for name"]) {
        "; the operator's certificate does not carry the address's name (--operator-tls-server-name \
         checks another name)"
    } else if has(&["CertificateRequired"]) {
        "; the operator requires a client certificate (--operator-tls-cert, --operator-tls-key)"
    } else if has(&[
        "UnknownCA",
        "BadCertificate",
        "CertificateUnknown",
        "AccessDenied",
    ]) {
        "; the operator refused our client certificate (it must be signed by a CA of the \
         operator's --grpc-tls-client-ca)"
    } else if has(&["InvalidContentType", "corrupt message", "InvalidMessage"]) {
        "; does the operator serve TLS on this port?"
    } else if after_handshake && has(&["closed", "canceled", "reset", "broken pipe"]) {
        "; the operator closed the connection after the TLS handshake: if it requires client \
         certificates, give one signed by its CA (--operator-tls-cert, --operator-tls-key)"
    } else {
        ""
    }
}

fn status_text(s: &tonic::Status) -> String {
    match std::error::Error::source(s) {
        Some(src) => format!("{} ({})", s.message(), error_chain(src)),
        None => s.message().to_string(),
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = c.source();
    }
    out
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
