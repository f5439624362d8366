//! TLS configuration from files named by options: read each file, check it with
//! [`vigil_api::tls`] (which builds the same rustls configuration tonic builds later), and name
//! the option and the file in every error — the sensor's listener and operator client, the
//! operator's listener and the CLI's client all read their PEM files here.

use std::path::Path;

use tonic::transport::{ClientTlsConfig, ServerTlsConfig};
use vigil_api::tls::{self, TlsError};

use crate::HostError;

/// A PEM file given by an option (its name without the leading dashes).
#[derive(Debug, Clone, Copy)]
pub struct TlsFile<'a> {
    pub option: &'a str,
    pub path: &'a Path,
}

impl<'a> TlsFile<'a> {
    pub fn new(option: &'a str, path: &'a Path) -> Self {
        TlsFile { option, path }
    }

    /// The file's bytes; an unreadable file is an error of its option.
    pub fn read(self) -> Result<Vec<u8>, HostError> {
        std::fs::read(self.path).map_err(|e| {
            HostError::option(
                self.option,
                format!("cannot read {}: {e}", self.path.display()),
            )
        })
    }

    fn error(self, e: &TlsError) -> HostError {
        HostError::option(self.option, format!("{}: {e}", self.path.display()))
    }
}

/// A listener's configuration from its certificate, key and (for mTLS) client CA files.
pub fn server_config(
    cert: TlsFile<'_>,
    key: TlsFile<'_>,
    client_ca: Option<TlsFile<'_>>,
) -> Result<ServerTlsConfig, HostError> {
    let cert_pem = cert.read()?;
    let key_pem = key.read()?;
    let ca_pem = client_ca.map(TlsFile::read).transpose()?;
    tls::server_config(&cert_pem, &key_pem, ca_pem.as_deref()).map_err(|e| match &e {
        TlsError::Key(_) => key.error(&e),
        TlsError::Ca(_) => client_ca.unwrap_or(cert).error(&e),
        TlsError::Cert(_) | TlsError::ServerName(_) => cert.error(&e),
    })
}

/// The name a client checks the server's certificate against, and the option that gave it.
#[derive(Debug, Clone, Copy)]
pub struct ServerName<'a> {
    pub option: &'a str,
    pub name: &'a str,
}

/// A client's configuration: trust the CA file (without one, the caller adds the system's
/// roots), present the certificate and key files (mTLS), check the server against a name.
pub fn client_config(
    ca: Option<TlsFile<'_>>,
    identity: Option<(TlsFile<'_>, TlsFile<'_>)>,
    server_name: Option<ServerName<'_>>,
) -> Result<ClientTlsConfig, HostError> {
    let ca_pem = ca.map(TlsFile::read).transpose()?;
    let identity_pem = match identity {
        Some((c, k)) => Some((c.read()?, k.read()?)),
        None => None,
    };
    tls::client_config(
        ca_pem.as_deref(),
        identity_pem
            .as_ref()
            .map(|(c, k)| (c.as_slice(), k.as_slice())),
        server_name.map(|s| s.name),
    )
    .map_err(|e| {
        let file = match (&e, ca, identity) {
            (TlsError::ServerName(_), ..) => {
                let option = server_name.map_or("server-name", |s| s.option);
                return HostError::option(option, e.to_string());
            }
            (TlsError::Ca(_), Some(ca), _) => ca,
            (TlsError::Key(_), _, Some((_, key))) => key,
            (_, _, Some((cert, _))) => cert,
            (_, Some(ca), None) => ca,
            (_, None, None) => return HostError::option("tls", e.to_string()),
        };
        file.error(&e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    /// Writes a CA and a certificate for `localhost` it signed (with its key) into `dir`.
    fn files(dir: &Path) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        std::fs::write(dir.join("ca.pem"), issuer.pem()).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("garbage.pem"), "not PEM\n").unwrap();
    }

    #[test]
    fn errors_name_the_option_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        files(dir.path());
        let p = |n: &str| dir.path().join(n);
        let (cert, key, ca, garbage) = (p("cert.pem"), p("key.pem"), p("ca.pem"), p("garbage.pem"));
        let f = TlsFile::new;
        server_config(f("c", &cert), f("k", &key), Some(f("a", &ca))).unwrap();
        client_config(Some(f("a", &ca)), Some((f("c", &cert), f("k", &key))), None).unwrap();
        client_config(None, None, None).unwrap();

        let missing = Path::new("/nonexistent/k.pem");
        let e = server_config(f("c", &cert), f("k", missing), None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--k: cannot read /nonexistent/k.pem:"),
            "{e}"
        );
        let e = server_config(f("c", &cert), f("k", &garbage), None).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "--k: {}: no usable PEM private key",
                garbage.display()
            )),
            "{e}"
        );
        let e = server_config(f("c", &cert), f("k", &key), Some(f("a", &garbage))).unwrap_err();
        assert!(e.to_string().starts_with("--a: "), "{e}");
        let e = client_config(Some(f("a", &garbage)), None, None).unwrap_err();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        let e = client_config(None, Some((f("c", &garbage), f("k", &key))), None).unwrap_err();
        assert!(e.to_string().starts_with("--c: "), "{e}");
        let name = ServerName {
            option: "n",
            name: "not a name!",
        };
        let e = client_config(None, None, Some(name)).unwrap_err();
        assert!(e.to_string().starts_with("--n: "), "{e}");
    }
}
