//! Talking to a running sensor over gRPC: `vigil observe --server`, `vigil status`, and the
//! connection under `vigil policy add|list|…`.
//!
//! ADDR is a unix socket path (`/var/run/vigil/vigil.sock`), `unix://PATH`, `http://HOST:PORT`,
//! or `https://HOST:PORT` (TLS; `--tls-ca`, `--tls-cert`/`--tls-key` for mTLS,
//! `--tls-server-name`). Every remote command takes these through [`ServerArg`] / [`TlsArgs`] and
//! connects through [`connect`]. Connection problems, TLS ones included, are one line on stderr
//! and exit status 2.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use tonic::transport::{Channel, ClientTlsConfig, Endpoint, Uri};
use vigil_api::events::EventKind;
use vigil_api::wire::{self, sensor_info, tetragon};
use vigil_host::tls_files::{self, ServerName, TlsFile};

use crate::{compact, policy_remote};

/// The sensor's default socket.
pub const DEFAULT_SOCKET: &str = "/var/run/vigil/vigil.sock";

/// TLS options of an `https://` server.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsArgs {
    /// With an https:// server: trust the CA certificates (PEM) in FILE for the server's
    /// certificate [default: the system's CAs].
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// With an https:// server: present this client certificate (PEM) for mTLS; needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// With an https:// server: the name the server's certificate must carry [default: the
    /// host of the address].
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

impl TlsArgs {
    pub fn is_empty(&self) -> bool {
        self == &TlsArgs::default()
    }
}

/// Which sensor to talk to: every remote command flattens this.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct ServerArg {
    /// The sensor: a unix socket path, unix://PATH, http://HOST:PORT or https://HOST:PORT.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_SOCKET)]
    pub server: String,
    #[command(flatten)]
    pub tls: TlsArgs,
}

impl ServerArg {
    pub fn target(&self) -> Target {
        Target::new(&self.server, &self.tls)
    }
}

/// Where the sensor listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    Unix(PathBuf),
    /// `http://HOST:PORT` (plain text).
    Http(String),
    /// `https://HOST:PORT` (TLS).
    Https(String),
}

/// A sensor address with the TLS options to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: Addr,
    pub tls: TlsArgs,
}

impl Target {
    /// An address without TLS options.
    #[cfg(test)]
    pub fn parse(s: &str) -> Target {
        Target::new(s, &TlsArgs::default())
    }

    pub fn new(s: &str, tls: &TlsArgs) -> Target {
        let addr = if let Some(p) = s.strip_prefix("unix://") {
            Addr::Unix(PathBuf::from(p))
        } else if s.starts_with("http://") {
            Addr::Http(s.to_string())
        } else if s.starts_with("https://") {
            Addr::Https(s.to_string())
        } else {
            Addr::Unix(PathBuf::from(s))
        };
        Target {
            addr,
            tls: tls.clone(),
        }
    }

    fn describe(&self) -> String {
        match &self.addr {
            Addr::Unix(p) => p.display().to_string(),
            Addr::Http(u) | Addr::Https(u) => u.clone(),
        }
    }
}

/// A TLS failure phrased for a person.
fn explain_tls(what: &str, e: &rustls::Error) -> String {
    use rustls::{CertificateError as C, Error as E};
    match e {
        E::InvalidCertificate(C::UnknownIssuer) => format!(
            "cannot connect to {what}: the server's certificate is not trusted (unknown issuer; \
             give the CA that signed it with --tls-ca)"
        ),
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => format!(
            "cannot connect to {what}: the server's certificate does not match the name ({e}; \
             --tls-server-name checks another name)"
        ),
        E::InvalidCertificate(_) => {
            format!("cannot connect to {what}: the server's certificate was refused: {e}")
        }
        E::AlertReceived(a) => explain_alert(what, &format!("{a:?}")),
        E::InvalidMessage(_) => format!(
            "cannot connect to {what}: TLS handshake failed: {e} (does the server speak TLS on \
             this port?)"
        ),
        _ => format!("cannot connect to {what}: TLS handshake failed: {e}"),
    }
}

/// The server ended the handshake with this TLS alert (rustls' name for it). After the
/// handshake the alert reaches us only as text (HTTP/2 keeps an io::Error's message, not the
/// error), hence names rather than [`rustls::AlertDescription`].
fn explain_alert(what: &str, alert: &str) -> String {
    match alert {
        "CertificateRequired" => format!(
            "cannot connect to {what}: the server requires a client certificate (give one with \
             --tls-cert and --tls-key)"
        ),
        "UnknownCA"
        | "BadCertificate"
        | "CertificateUnknown"
        | "AccessDenied"
        | "UnsupportedCertificate"
        | "CertificateExpired"
        | "CertificateRevoked" => format!(
            "cannot connect to {what}: the server refused our client certificate (TLS alert \
             {alert}; it must be signed by a CA of the sensor's --grpc-tls-client-ca)"
        ),
        _ => format!("cannot connect to {what}: the server ended the TLS handshake ({alert})"),
    }
}

/// An https:// connection that ended right after the handshake without a reason we could read.
fn closed_after_handshake(what: &str, detail: &str) -> String {
    format!(
        "cannot connect to {what}: the server closed the connection after the TLS handshake \
         ({detail}); if it requires client certificates, give one signed by its CA with \
         --tls-cert and --tls-key"
    )
}

/// A connection failure phrased for a person: what failed and the likely cause.
pub fn explain(target: &Target, e: &io::Error) -> String {
    let what = target.describe();
    if let Some(tls) = e.get_ref().and_then(|x| x.downcast_ref::<rustls::Error>()) {
        return explain_tls(&what, tls);
    }
    let text = e.to_string();
    if let Some(alert) = text.split("received fatal alert: ").nth(1) {
        return explain_alert(&what, alert.split_whitespace().next().unwrap_or(alert));
    }
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
        // With TLS 1.3 a server checks the client's certificate after the client is done with
        // the handshake; when it refuses, its alert can be lost to the reset of the connection.
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::UnexpectedEof
            if matches!(target.addr, Addr::Https(_)) =>
        {
            closed_after_handshake(&what, &e.to_string())
        }
        _ => format!("cannot connect to {what}: {e}"),
    }
}

/// The most telling cause in an error chain, phrased by [`explain_tls`] or [`explain`]: a TLS
/// error (alone or inside an io::Error), else an io::Error.
fn explain_chain(target: &Target, e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut io_err = None;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(x) = cur {
        if let Some(tls) = x.downcast_ref::<rustls::Error>() {
            return Some(explain_tls(&target.describe(), tls));
        }
        if let Some(io) = x.downcast_ref::<io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(explain_tls(&target.describe(), tls));
            }
            io_err.get_or_insert(io);
        }
        cur = x.source();
    }
    io_err.map(|io| explain(target, io))
}

/// Every message of an error chain on one line.
fn chain_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(x) = cur {
        let m = x.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        cur = x.source();
    }
    out.replace('\n', " ")
}

/// The TLS configuration of an https:// target, from its files (read and checked here, so a
/// bad file is named instead of failing as a handshake error). Without `--tls-ca`, the system's
/// roots are trusted.
pub fn client_tls(tls: &TlsArgs) -> Result<ClientTlsConfig, String> {
    let identity = match (&tls.tls_cert, &tls.tls_key) {
        (Some(cert), Some(key)) => {
            Some((TlsFile::new("tls-cert", cert), TlsFile::new("tls-key", key)))
        }
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    let cfg = tls_files::client_config(
        tls.tls_ca.as_deref().map(|p| TlsFile::new("tls-ca", p)),
        identity,
        tls.tls_server_name.as_deref().map(|name| ServerName {
            option: "tls-server-name",
            name,
        }),
    )
    .map_err(|e| e.to_string())?;
    Ok(if tls.tls_ca.is_none() {
        cfg.with_native_roots()
    } else {
        cfg
    })
}

/// Connects (with a small HTTP/2 window so that a client that stops reading stops the server
/// from sending, instead of buffering megabytes).
pub async fn connect(target: &Target) -> Result<Channel, String> {
    let tune = |e: Endpoint| {
        e.initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535)
            .connect_timeout(Duration::from_secs(5))
    };
    if !matches!(target.addr, Addr::Https(_)) && !target.tls.is_empty() {
        return Err(format!(
            "--tls-ca, --tls-cert, --tls-key and --tls-server-name need an https:// server, not {}",
            target.describe()
        ));
    }
    match &target.addr {
        Addr::Unix(path) => {
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
            .map_err(|e| {
                explain_chain(target, &e).unwrap_or_else(|| {
                    format!(
                        "cannot connect to {}: {}",
                        target.describe(),
                        chain_line(&e)
                    )
                })
            })
        }
        Addr::Http(url) | Addr::Https(url) => {
            let mut ep = Endpoint::from_shared(url.clone())
                .map_err(|e| format!("bad server address {url:?}: {e}"))?;
            if matches!(target.addr, Addr::Https(_)) {
                ep = ep
                    .tls_config(client_tls(&target.tls)?)
                    .map_err(|e| format!("cannot set up TLS for {url}: {e}"))?;
            }
            tune(ep).connect().await.map_err(|e| {
                explain_chain(target, &e)
                    .unwrap_or_else(|| format!("cannot connect to {url}: {}", chain_line(&e)))
            })
        }
    }
}

pub fn status_line(target: &Target, s: &tonic::Status) -> String {
    if let Some(m) = explain_chain(target, s) {
        return m;
    }
    // The same race as in [`explain`], seen by the RPC as a cancelled or failed stream.
    if matches!(target.addr, Addr::Https(_))
        && matches!(
            s.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
        )
    {
        return closed_after_handshake(&target.describe(), s.message());
    }
    format!("{}: {}", target.describe(), s.message())
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
        // Loss markers (`rate_limit_info`) are part of the stream: they print where the gap is.
        let text = {
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
                "self_protection": info.self_protection,
                "self_protection_detail": info.self_protection_detail,
                "programs": info.programs.iter().map(|p| serde_json::json!({
                    "name": p.name,
                    "loads": p.loads,
                    "last_load_seconds": p.last_load_seconds,
                    "verified_insns": p.verified_insns,
                })).collect::<Vec<_>>(),
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
            println!(
                "self-protection: {}",
                self_protection_text(&info.self_protection, &info.self_protection_detail)
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
            print!("{}", program_lines(&info.programs));
            print!("{}", policy_lines(&policies));
        }
        Ok(if healthy { 0 } else { 1 })
    })
}

/// `vigil status`'s self-protection line: `off`, `active`, or `unavailable (<reason>)`. A
/// sensor older than the field answers "": it has no self-protection.
pub fn self_protection_text(state: &str, detail: &str) -> String {
    match (state, detail) {
        ("", _) => "off".into(),
        (s, "") => s.into(),
        (s, d) => format!("{s} ({d})"),
    }
}

/// The `programs:` section of `vigil status`: what loading each BPF program cost.
pub fn program_lines(programs: &[sensor_info::BpfProgram]) -> String {
    use std::fmt::Write as _;
    if programs.is_empty() {
        return "programs:  none loaded\n".into();
    }
    let width = programs.iter().map(|p| p.name.len()).max().unwrap_or(0);
    let mut out = format!(
        "programs:  {} (load time of the last load, verifier instructions)\n",
        programs.len()
    );
    for p in programs {
        let insns = p
            .verified_insns
            .map(|n| format!("{n} insns"))
            .unwrap_or_else(|| "insns not reported by this kernel".into());
        let loads = if p.loads > 1 {
            format!(", {} loads", p.loads)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {:<width$} {:>7.1} ms  {insns}{loads}",
            p.name,
            p.last_load_seconds * 1000.0
        );
    }
    out
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
    fn self_protection_line_names_the_state_and_the_reason() {
        assert_eq!(self_protection_text("active", ""), "active");
        assert_eq!(
            self_protection_text("unavailable", "BPF-LSM not active"),
            "unavailable (BPF-LSM not active)"
        );
        assert_eq!(self_protection_text("", ""), "off");
    }

    #[test]
    fn addresses_parse() {
        assert_eq!(
            Target::parse("/run/x.sock").addr,
            Addr::Unix("/run/x.sock".into())
        );
        assert_eq!(
            Target::parse("unix:///run/x.sock").addr,
            Addr::Unix("/run/x.sock".into())
        );
        assert_eq!(
            Target::parse("http://127.0.0.1:54321").addr,
            Addr::Http("http://127.0.0.1:54321".into())
        );
        assert_eq!(
            Target::parse("https://sensor:54321").addr,
            Addr::Https("https://sensor:54321".into())
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

    /// A CA (PEM text) and certificates it signs, written into a temporary directory.
    struct Ca {
        issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
        dir: tempfile::TempDir,
    }

    impl Ca {
        fn new(name: &str) -> Ca {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let key = rcgen::KeyPair::generate().unwrap();
            let ca = Ca {
                issuer: rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
                dir: tempfile::tempdir().unwrap(),
            };
            std::fs::write(ca.path("ca.pem"), ca.issuer.pem()).unwrap();
            ca
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        /// Writes FILE.pem and FILE.key for `names`; returns their PEM text.
        fn issue(&self, file: &str, names: &[&str]) -> (String, String) {
            let key = rcgen::KeyPair::generate().unwrap();
            let params = rcgen::CertificateParams::new(
                names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            )
            .unwrap();
            let cert = params.signed_by(&key, &self.issuer).unwrap().pem();
            let key = key.serialize_pem();
            std::fs::write(self.path(&format!("{file}.pem")), &cert).unwrap();
            std::fs::write(self.path(&format!("{file}.key")), &key).unwrap();
            (cert, key)
        }
    }

    /// A tiny TLS server with the generated `vigil.sensor.v1.SensorInfo` service (the CLI does
    /// not depend on the sensor).
    struct Info;

    #[tonic::async_trait]
    impl sensor_info::sensor_info_server::SensorInfo for Info {
        async fn get_info(
            &self,
            _: tonic::Request<sensor_info::GetInfoRequest>,
        ) -> Result<tonic::Response<sensor_info::GetInfoResponse>, tonic::Status> {
            Ok(tonic::Response::new(sensor_info::GetInfoResponse {
                version: "tls-test".into(),
                ..Default::default()
            }))
        }
    }

    /// Serves over TLS with a certificate for localhost/127.0.0.1 signed by `ca` (and client
    /// certificates required from `client_ca`); returns the https:// address.
    async fn serve(ca: &Ca, client_ca: Option<&Ca>) -> String {
        let (cert, key) = ca.issue("server", &["localhost", "127.0.0.1"]);
        let mut tls = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert, key));
        if let Some(c) = client_ca {
            tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(c.issuer.pem()));
        }
        let incoming =
            tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = incoming.local_addr().unwrap();
        let router = tonic::transport::Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(sensor_info::sensor_info_server::SensorInfoServer::new(Info));
        tokio::spawn(router.serve_with_incoming(incoming));
        format!("https://{addr}")
    }

    fn tls_args(ca: Option<&Ca>, client: Option<&Ca>) -> TlsArgs {
        TlsArgs {
            tls_ca: ca.map(|c| c.path("ca.pem")),
            tls_cert: client.map(|c| c.path("client.pem")),
            tls_key: client.map(|c| c.path("client.key")),
            tls_server_name: None,
        }
    }

    async fn get_info(target: &Target) -> Result<String, String> {
        let ch = connect(target).await?;
        sensor_info::sensor_info_client::SensorInfoClient::new(ch)
            .get_info(sensor_info::GetInfoRequest {})
            .await
            .map(|r| r.into_inner().version)
            .map_err(|s| status_line(target, &s))
    }

    fn one_line(msg: &str) {
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[tokio::test]
    async fn tls_server_trusted_untrusted_and_misnamed() {
        let ca = Ca::new("server CA");
        let url = serve(&ca, None).await;
        let ok = Target::new(&url, &tls_args(Some(&ca), None));
        assert_eq!(get_info(&ok).await.unwrap(), "tls-test");

        let other = Ca::new("other CA");
        let untrusted = Target::new(&url, &tls_args(Some(&other), None));
        let msg = connect(&untrusted).await.unwrap_err();
        one_line(&msg);
        assert!(
            msg.starts_with(&format!(
                "cannot connect to {url}: the server's certificate is not trusted"
            )),
            "{msg}"
        );
        assert!(msg.contains("--tls-ca"), "{msg}");

        let mut misnamed = tls_args(Some(&ca), None);
        misnamed.tls_server_name = Some("elsewhere.example".into());
        let msg = connect(&Target::new(&url, &misnamed)).await.unwrap_err();
        one_line(&msg);
        assert!(msg.contains("does not match the name"), "{msg}");
        let mut named = tls_args(Some(&ca), None);
        named.tls_server_name = Some("localhost".into());
        assert_eq!(
            get_info(&Target::new(&url, &named)).await.unwrap(),
            "tls-test"
        );
    }

    /// The server refused the client's certificate (or its lack of one): the alert's meaning,
    /// or, when the TLS 1.3 alert is lost to the connection's reset (a race), the closed
    /// connection with the hint.
    fn refused(msg: &str) -> bool {
        msg.contains("requires a client certificate")
            || msg.contains("refused our client certificate")
            || msg.contains("closed the connection after the TLS handshake")
    }

    #[tokio::test]
    async fn mtls_client_certificates() {
        let ca = Ca::new("server CA");
        let clients = Ca::new("client CA");
        let rogue = Ca::new("rogue CA");
        let url = serve(&ca, Some(&clients)).await;

        let msg = get_info(&Target::new(&url, &tls_args(Some(&ca), None)))
            .await
            .unwrap_err();
        one_line(&msg);
        assert!(refused(&msg), "{msg}");

        rogue.issue("client", &["client"]);
        let mut args = tls_args(Some(&ca), Some(&rogue));
        let msg = get_info(&Target::new(&url, &args)).await.unwrap_err();
        one_line(&msg);
        assert!(refused(&msg), "{msg}");

        clients.issue("client", &["client"]);
        args = tls_args(Some(&ca), Some(&clients));
        assert_eq!(
            get_info(&Target::new(&url, &args)).await.unwrap(),
            "tls-test"
        );
    }

    #[tokio::test]
    async fn bad_tls_files_and_misuse_are_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "nothing here\n").unwrap();
        let cases = [
            (
                "https://127.0.0.1:1",
                TlsArgs {
                    tls_ca: Some("/nonexistent/ca.pem".into()),
                    ..Default::default()
                },
                "--tls-ca: cannot read /nonexistent/ca.pem",
            ),
            (
                "https://127.0.0.1:1",
                TlsArgs {
                    tls_ca: Some(garbage.clone()),
                    ..Default::default()
                },
                "no PEM certificate",
            ),
            (
                "https://127.0.0.1:1",
                TlsArgs {
                    tls_cert: Some(garbage.clone()),
                    tls_key: Some(garbage.clone()),
                    ..Default::default()
                },
                "--tls-cert",
            ),
            (
                "/nonexistent/vigil.sock",
                TlsArgs {
                    tls_server_name: Some("x".into()),
                    ..Default::default()
                },
                "need an https:// server",
            ),
        ];
        for (server, tls, text) in cases {
            let msg = connect(&Target::new(server, &tls)).await.unwrap_err();
            one_line(&msg);
            assert!(msg.contains(text), "{server} {tls:?}: {msg}");
        }
    }

    #[test]
    fn missing_socket_is_one_clear_line() {
        let t = Target::parse("/nonexistent/vigil.sock");
        let msg = runtime().unwrap().block_on(connect(&t)).unwrap_err();
        assert!(msg.contains("no such socket"), "{msg}");
        assert!(!msg.contains('\n'));
    }
}
