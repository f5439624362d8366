//! Connecting to a sensor (unix socket, http, https with TLS/mTLS) and phrasing connection
//! and TLS failures for a person: one line, what failed and the likely cause.

use std::io::{self};
use std::time::Duration;

use tonic::transport::{Channel, ClientTlsConfig, Endpoint, Uri};
use vigil_host::tls_files::{self, ServerName, TlsFile};

use super::{Addr, Target, TlsArgs};

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
