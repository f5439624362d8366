//! Talking to a running sensor over gRPC: `vigil observe --server`, `vigil status`, and the
//! connection under `vigil policy add|list|…`.
//!
//! ADDR is a unix socket path (`/var/run/vigil/vigil.sock`), `unix://PATH`, or
//! `http://HOST:PORT`. Connection problems are one line on stderr and exit status 2.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint, Uri};
use vigil_api::events::EventKind;
use vigil_api::wire::{self, sensor_info, tetragon};

use crate::{compact, policy_remote};

/// The sensor's default socket.
pub const DEFAULT_SOCKET: &str = "/var/run/vigil/vigil.sock";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    Http(String),
}

impl Target {
    pub fn parse(s: &str) -> Target {
        if let Some(p) = s.strip_prefix("unix://") {
            Target::Unix(PathBuf::from(p))
        } else if s.starts_with("http://") || s.starts_with("https://") {
            Target::Http(s.to_string())
        } else {
            Target::Unix(PathBuf::from(s))
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Unix(p) => p.display().to_string(),
            Target::Http(u) => u.clone(),
        }
    }
}

/// A connection failure phrased for a person: what failed and the likely cause.
pub fn explain(target: &Target, e: &io::Error) -> String {
    let what = target.describe();
    match e.kind() {
        io::ErrorKind::NotFound => {
            format!(
                "cannot connect to {what}: no such socket (is vigil-sensor running? use --server to pick another)"
            )
        }
        io::ErrorKind::PermissionDenied => {
            format!(
                "cannot connect to {what}: permission denied (run as root or as a member of the socket's group)"
            )
        }
        io::ErrorKind::ConnectionRefused => {
            format!("cannot connect to {what}: connection refused (is vigil-sensor running?)")
        }
        _ => format!("cannot connect to {what}: {e}"),
    }
}

fn io_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(x) = cur {
        if let Some(io) = x.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = x.source();
    }
    None
}

/// Connects (with a small HTTP/2 window so that a client that stops reading stops the server
/// from sending, instead of buffering megabytes).
pub async fn connect(target: &Target) -> Result<Channel, String> {
    let tune = |e: Endpoint| {
        e.initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535)
            .connect_timeout(Duration::from_secs(5))
    };
    match target {
        Target::Unix(path) => {
            // Probe first so that the error is the plain io::Error of connect(2).
            if let Err(e) = std::os::unix::net::UnixStream::connect(path) {
                return Err(explain(target, &e));
            }
            let path = path.clone();
            let ep = tune(Endpoint::from_static("http://localhost"));
            ep.connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let s = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(s))
                }
            }))
            .await
            .map_err(|e| match io_cause(&e) {
                Some(io) => explain(target, io),
                None => format!("cannot connect to {}: {e}", target.describe()),
            })
        }
        Target::Http(url) => {
            let ep = Endpoint::from_shared(url.clone())
                .map_err(|e| format!("bad server address {url:?}: {e}"))?;
            tune(ep).connect().await.map_err(|e| match io_cause(&e) {
                Some(io) => explain(target, io),
                None => format!("cannot connect to {url}: {e}"),
            })
        }
    }
}

pub fn status_line(target: &Target, s: &tonic::Status) -> String {
    match io_cause(s) {
        Some(io) => explain(target, io),
        None => format!("{}: {}", target.describe(), s.message()),
    }
}

/// Server-side filters from the observe flags.
#[derive(Debug, Clone, Default)]
pub struct RemoteFilter {
    pub namespaces: Vec<String>,
    pub pods: Vec<String>,
    pub processes: Vec<String>,
    pub kinds: Vec<EventKind>,
    pub pids: Vec<u32>,
    pub pid_set: Vec<u32>,
    pub policy_names: Vec<String>,
    pub include_fields: Vec<String>,
    pub exclude_fields: Vec<String>,
}

impl RemoteFilter {
    pub fn request(&self) -> tetragon::GetEventsRequest {
        let f = tetragon::Filter {
            namespace: self.namespaces.clone(),
            pod_regex: self.pods.clone(),
            binary_regex: self.processes.clone(),
            event_set: self.kinds.iter().map(|k| wire::event_type(*k)).collect(),
            pid: self.pids.clone(),
            pid_set: self.pid_set.clone(),
            policy_names: self.policy_names.clone(),
            ..Default::default()
        };
        let empty = f == tetragon::Filter::default();
        let field = |paths: &[String], action: tetragon::FieldFilterAction| {
            (!paths.is_empty()).then(|| tetragon::FieldFilter {
                fields: Some(prost_types::FieldMask {
                    paths: paths.to_vec(),
                }),
                action: action as i32,
                ..Default::default()
            })
        };
        tetragon::GetEventsRequest {
            allow_list: if empty { vec![] } else { vec![f] },
            field_filters: [
                field(&self.include_fields, tetragon::FieldFilterAction::Include),
                field(&self.exclude_fields, tetragon::FieldFilterAction::Exclude),
            ]
            .into_iter()
            .flatten()
            .collect(),
            ..Default::default()
        }
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

enum StreamEnd {
    /// The sensor ended the stream (it stopped).
    Closed,
    /// Output closed (e.g. `| head`): stop quietly.
    OutputGone,
    Failed(String),
}

/// `vigil observe --server`: prints the stream until it ends; with `reconnect`, connects again.
pub fn observe(
    target: &Target,
    filter: &RemoteFilter,
    json: bool,
    reconnect: bool,
) -> anyhow::Result<i32> {
    let rt = runtime()?;
    rt.block_on(async {
        let mut announced = false;
        loop {
            let end = match connect(target).await {
                Ok(ch) => {
                    announced = false;
                    stream_once(ch, target, filter, json).await
                }
                Err(msg) => StreamEnd::Failed(msg),
            };
            match end {
                StreamEnd::OutputGone => return Ok(0),
                StreamEnd::Closed if !reconnect => return Ok(0),
                StreamEnd::Failed(msg) if !reconnect => {
                    eprintln!("vigil observe: {msg}");
                    return Ok(2);
                }
                StreamEnd::Closed | StreamEnd::Failed(_) => {
                    if !announced {
                        if let StreamEnd::Failed(msg) = &end {
                            eprintln!("vigil observe: {msg}; retrying every second");
                        } else {
                            eprintln!("vigil observe: the sensor closed the stream; reconnecting");
                        }
                        announced = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
}

async fn stream_once(ch: Channel, target: &Target, filter: &RemoteFilter, json: bool) -> StreamEnd {
    let mut client = tetragon::fine_guidance_sensors_client::FineGuidanceSensorsClient::new(ch)
        .max_decoding_message_size(64 << 20);
    let mut stream = match client.get_events(filter.request()).await {
        Ok(r) => r.into_inner(),
        Err(s) => return StreamEnd::Failed(status_line(target, &s)),
    };
    let stdout = io::stdout();
    loop {
        let msg = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return StreamEnd::Closed,
            Err(s) => return StreamEnd::Failed(status_line(target, &s)),
        };
        let text = if let Some(n) = wire::dropped_events(&msg) {
            if json {
                wire::proto_to_json(&msg).unwrap_or_default()
            } else {
                eprintln!(
                    "vigil observe: the sensor dropped {n} events for this client (it read too slowly)"
                );
                continue;
            }
        } else {
            match wire::from_proto(&msg) {
                Ok(ev) if json => match ev.to_json() {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("vigil observe: {e}");
                        continue;
                    }
                },
                Ok(ev) => match compact::render(&ev) {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("vigil observe: cannot render: {e}");
                        continue;
                    }
                },
                Err(e) => {
                    eprintln!("vigil observe: {e}");
                    continue;
                }
            }
        };
        let mut out = stdout.lock();
        if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
            return StreamEnd::OutputGone;
        }
    }
}

/// `vigil status`: health, version and the kernel features the sensor probed.
pub fn status(target: &Target, json: bool) -> anyhow::Result<i32> {
    let rt = runtime()?;
    rt.block_on(async {
        let ch = match connect(target).await {
            Ok(c) => c,
            Err(msg) => {
                eprintln!("vigil status: {msg}");
                return Ok(2);
            }
        };
        let mut fgs =
            tetragon::fine_guidance_sensors_client::FineGuidanceSensorsClient::new(ch.clone());
        let mut info = sensor_info::sensor_info_client::SensorInfoClient::new(ch);
        let fail = |s: tonic::Status| {
            eprintln!("vigil status: {}", status_line(target, &s));
            Ok(2)
        };
        let health = match fgs
            .get_health(tetragon::GetHealthStatusRequest::default())
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => return fail(s),
        };
        let version = match fgs.get_version(tetragon::GetVersionRequest {}).await {
            Ok(r) => r.into_inner().version,
            Err(s) => return fail(s),
        };
        let info = match info.get_info(sensor_info::GetInfoRequest {}).await {
            Ok(r) => r.into_inner(),
            Err(s) => return fail(s),
        };
        // Policies: a sensor without a policy engine answers UNAVAILABLE; that is not a
        // failure of `vigil status`.
        let policies = match fgs
            .list_tracing_policies(tetragon::ListTracingPoliciesRequest {})
            .await
        {
            Ok(r) => Ok(r.into_inner().policies),
            Err(s) if s.code() == tonic::Code::Unavailable || s.code() == tonic::Code::Unimplemented => {
                Err(s.message().to_string())
            }
            Err(s) => return fail(s),
        };
        let healthy = health
            .health_status
            .iter()
            .all(|h| h.status == tetragon::HealthStatusResult::HealthStatusRunning as i32)
            && !health.health_status.is_empty();
        let health_text = if healthy { "running" } else { "not running" };
        if json {
            let features: serde_json::Map<String, serde_json::Value> = info
                .features
                .iter()
                .map(|f| (f.name.clone(), serde_json::Value::Bool(f.available)))
                .collect();
            let v = serde_json::json!({
                "health": health_text,
                "version": version,
                "node_name": info.node_name,
                "kernel_release": info.kernel_release,
                "subscribers": info.subscribers,
                "events_dropped_total": info.events_dropped_total,
                "features": features,
                "policies": match &policies {
                    Ok(p) => serde_json::Value::Array(p.iter().map(policy_remote::policy_json).collect()),
                    Err(_) => serde_json::Value::Null,
                },
                "policies_error": policies.as_ref().err(),
            });
            println!("{v}");
        } else {
            println!("health:    {health_text}");
            println!("version:   {version}");
            println!("node:      {}", info.node_name);
            println!("kernel:    {}", info.kernel_release);
            println!(
                "clients:   {} (events dropped for slow clients: {})",
                info.subscribers, info.events_dropped_total
            );
            println!("features:");
            for f in &info.features {
                let yes = if f.available { "yes" } else { "no" };
                let detail = f.detail.lines().next().unwrap_or("").trim();
                if detail.is_empty() {
                    println!("  {:<16} {yes}", f.name);
                } else {
                    println!("  {:<16} {yes}  ({detail})", f.name);
                }
            }
            print!("{}", policy_lines(&policies));
        }
        Ok(if healthy { 0 } else { 1 })
    })
}

/// The `policies:` section of `vigil status`.
pub fn policy_lines(policies: &Result<Vec<tetragon::TracingPolicyStatus>, String>) -> String {
    use std::fmt::Write as _;
    match policies {
        Err(why) => format!("policies:  unavailable ({why})\n"),
        Ok(p) if p.is_empty() => "policies:  none\n".into(),
        Ok(p) => {
            let width = p
                .iter()
                .map(|x| policy_remote::display_key(x).len())
                .max()
                .unwrap_or(0)
                .max(14);
            let mut out = format!("policies:  {}\n", p.len());
            for x in p {
                let _ = writeln!(
                    out,
                    "  {:<width$} {:<9} {:<8} hooks {}",
                    policy_remote::display_key(x),
                    policy_remote::state_word(x.state),
                    policy_remote::mode_word(x.mode),
                    policy_remote::hooks_column(x),
                );
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            Target::parse("/run/x.sock"),
            Target::Unix("/run/x.sock".into())
        );
        assert_eq!(
            Target::parse("unix:///run/x.sock"),
            Target::Unix("/run/x.sock".into())
        );
        assert_eq!(
            Target::parse("http://127.0.0.1:54321"),
            Target::Http("http://127.0.0.1:54321".into())
        );
    }

    #[test]
    fn empty_flags_send_no_filter_and_flags_make_one() {
        assert!(RemoteFilter::default().request().allow_list.is_empty());
        let r = RemoteFilter {
            processes: vec!["curl".into()],
            kinds: vec![EventKind::ProcessExit],
            pids: vec![4],
            ..Default::default()
        }
        .request();
        assert_eq!(r.allow_list.len(), 1);
        assert_eq!(r.allow_list[0].event_set, vec![5]);
        assert_eq!(r.allow_list[0].binary_regex, vec!["curl".to_string()]);
        assert_eq!(r.allow_list[0].pid, vec![4]);
    }

    #[test]
    fn missing_socket_is_one_clear_line() {
        let t = Target::parse("/nonexistent/vigil.sock");
        let msg = runtime().unwrap().block_on(connect(&t)).unwrap_err();
        assert!(msg.contains("no such socket"), "{msg}");
        assert!(!msg.contains('\n'));
    }
}
