//! Talking to a running sensor over gRPC: `vigil observe --server`, `vigil status`, and the
//! connection under `vigil policy add|list|…`.
//!
//! ADDR is a unix socket path (`/var/run/vigil/vigil.sock`), `unix://PATH`, `http://HOST:PORT`,
//! or `https://HOST:PORT` (TLS; `--tls-ca`, `--tls-cert`/`--tls-key` for mTLS,
//! `--tls-server-name`). Every remote command takes these through [`ServerArg`] / [`TlsArgs`] and
//! connects through [`connect`]. Connection problems, TLS ones included, are one line on stderr
//! and exit status 2.

mod connection;
mod observe;
mod status;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use connection::{connect, status_line};
pub use observe::{RemoteFilter, observe};
pub use status::status;
#[cfg(test)]
pub use status::{policy_lines, self_protection_text};

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

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
