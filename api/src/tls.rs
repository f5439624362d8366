//! TLS configuration for Vigil's gRPC links, from PEM bytes: the sensor's TCP listener
//! (`--grpc-tls-*`), the operator's policy-sync listener (`--grpc-tls-*`) and the sensor's
//! client to the operator (`--operator-tls-*`).
//!
//! Pure checking, no file I/O: the binaries read the files and map each [`TlsError`] to their
//! own configuration error naming the option (and the file). The checks build the same rustls
//! configuration tonic builds later (ring provider), so bytes that pass here cannot fail when
//! the listener or the connection is set up: every certificate must parse, a key must be a
//! usable PKCS#8/PKCS#1/SEC1 key that belongs to the first certificate, and every CA must be a
//! usable trust anchor.

use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// How long a client may take to finish the TLS handshake before a server closes the connection.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What is wrong, and with which input: the caller maps the input to its option name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The certificate (chain) PEM: the server's, or the client's own for mTLS.
    #[error("{0}")]
    Cert(String),
    /// The private key PEM of that certificate.
    #[error("{0}")]
    Key(String),
    /// The CA PEM: client CAs of a server, or the CA a client trusts for the server.
    #[error("{0}")]
    Ca(String),
    /// The name a client verifies the server's certificate against.
    #[error("{0}")]
    ServerName(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(
    pem: &[u8],
    err: fn(String) -> TlsError,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err(
            "no PEM certificate (-----BEGIN CERTIFICATE-----) found".into(),
        ));
    }
    Ok(certs)
}

/// The trust anchors of a CA file.
fn roots(pem: &[u8]) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certificates(pem, TlsError::Ca)? {
        roots
            .add(c)
            .map_err(|e| TlsError::Ca(format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// A certificate chain and its key, checked to parse and to belong together.
fn identity(
    provider: &CryptoProvider,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = certificates(cert_pem, TlsError::Cert)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        TlsError::Key(format!(
            "no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"
        ))
    })?;
    provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| TlsError::Key(e.to_string()))?;
    Ok((chain, key))
}

fn mismatch(e: rustls::Error) -> TlsError {
    match e {
        rustls::Error::InconsistentKeys(_) => {
            TlsError::Key(format!("does not belong to the certificate: {e}"))
        }
        e => TlsError::Cert(e.to_string()),
    }
}

/// A server's TLS configuration; with `client_ca`, clients must present a certificate signed
/// by one of its CAs (mTLS).
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<ServerTlsConfig, TlsError> {
    let provider = provider();
    let (chain, key) = identity(&provider, cert_pem, key_pem)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    let mut tls = ServerTlsConfig::new().timeout(HANDSHAKE_TIMEOUT);
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca_pem) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca_pem)?),
                provider.clone(),
            )
            .build()
            .map_err(|e| TlsError::Ca(e.to_string()))?;
            tls = tls.client_ca_root(Certificate::from_pem(ca_pem));
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder.with_single_cert(chain, key).map_err(mismatch)?;
    Ok(tls.identity(Identity::from_pem(cert_pem, key_pem)))
}

/// A client's TLS configuration: trust `ca_pem` (only it: no system roots) for the server's
/// certificate, present `client` (certificate chain PEM, key PEM) when given (mTLS), and
/// verify the server against `server_name` instead of the address's host when given. Without
/// `ca_pem` the configuration trusts nothing yet: the caller adds the system's roots.
pub fn client_config(
    ca_pem: Option<&[u8]>,
    client: Option<(&[u8], &[u8])>,
    server_name: Option<&str>,
) -> Result<ClientTlsConfig, TlsError> {
    let provider = provider();
    let roots = match ca_pem {
        Some(pem) => roots(pem)?,
        None => rustls::RootCertStore::empty(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Ca(e.to_string()))?
        .with_root_certificates(roots);
    let mut tls = ClientTlsConfig::new();
    if let Some(pem) = ca_pem {
        tls = tls.ca_certificate(Certificate::from_pem(pem));
    }
    if let Some((cert_pem, key_pem)) = client {
        let (chain, key) = identity(&provider, cert_pem, key_pem)?;
        builder
            .with_client_auth_cert(chain, key)
            .map_err(mismatch)?;
        tls = tls.identity(Identity::from_pem(cert_pem, key_pem));
    }
    if let Some(name) = server_name {
        ServerName::try_from(name).map_err(|e| {
            TlsError::ServerName(format!("{name:?} is not a DNS name or IP address: {e}"))
        })?;
        tls = tls.domain_name(name);
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    /// A CA's PEM and a certificate for `names` it signed, with its key (PEM).
    struct Issued {
        ca: String,
        cert: String,
        key: String,
    }

    fn issue(names: &[&str]) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        Issued {
            ca: issuer.pem(),
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    const GARBAGE: &[u8] = b"not PEM at all\n";
    const BROKEN: &[u8] = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

    fn is_cert(e: TlsError, text: &str) {
        assert!(matches!(&e, TlsError::Cert(m) if m.contains(text)), "{e:?}");
    }
    fn is_key(e: TlsError, text: &str) {
        assert!(matches!(&e, TlsError::Key(m) if m.contains(text)), "{e:?}");
    }
    fn is_ca(e: TlsError, text: &str) {
        assert!(matches!(&e, TlsError::Ca(m) if m.contains(text)), "{e:?}");
    }

    #[test]
    fn server_config_accepts_tls_and_mtls() {
        let s = issue(&["localhost", "127.0.0.1"]);
        let c = issue(&["client"]);
        server_config(s.cert.as_bytes(), s.key.as_bytes(), None).unwrap();
        server_config(s.cert.as_bytes(), s.key.as_bytes(), Some(c.ca.as_bytes())).unwrap();
    }

    #[test]
    fn server_config_names_the_bad_input() {
        let s = issue(&["localhost"]);
        let other = issue(&["localhost"]);
        let (cert, key) = (s.cert.as_bytes(), s.key.as_bytes());
        is_cert(
            server_config(GARBAGE, key, None).unwrap_err(),
            "no PEM certificate",
        );
        is_cert(server_config(BROKEN, key, None).unwrap_err(), "");
        is_key(
            server_config(cert, GARBAGE, None).unwrap_err(),
            "no usable PEM private key",
        );
        // The certificate given as the key.
        is_key(
            server_config(cert, cert, None).unwrap_err(),
            "no usable PEM private key",
        );
        is_key(
            server_config(cert, other.key.as_bytes(), None).unwrap_err(),
            "does not belong to the certificate",
        );
        is_ca(
            server_config(cert, key, Some(GARBAGE)).unwrap_err(),
            "no PEM certificate",
        );
        is_ca(
            server_config(cert, key, Some(BROKEN)).unwrap_err(),
            "not a usable CA certificate",
        );
    }

    #[test]
    fn client_config_checks_ca_identity_and_name() {
        let s = issue(&["localhost"]);
        let c = issue(&["client"]);
        let other = issue(&["client"]);
        let ca = s.ca.as_bytes();
        let id = (c.cert.as_bytes(), c.key.as_bytes());
        client_config(Some(ca), None, None).unwrap();
        client_config(Some(ca), Some(id), Some("localhost")).unwrap();
        client_config(Some(ca), None, Some("10.0.0.1")).unwrap();
        is_ca(
            client_config(Some(GARBAGE), None, None).unwrap_err(),
            "no PEM certificate",
        );
        is_ca(
            client_config(Some(BROKEN), None, None).unwrap_err(),
            "not a usable CA certificate",
        );
        is_cert(
            client_config(Some(ca), Some((GARBAGE, id.1)), None).unwrap_err(),
            "no PEM certificate",
        );
        is_key(
            client_config(Some(ca), Some((id.0, GARBAGE)), None).unwrap_err(),
            "no usable PEM private key",
        );
        is_key(
            client_config(Some(ca), Some((id.0, other.key.as_bytes())), None).unwrap_err(),
            "does not belong to the certificate",
        );
        let e = client_config(Some(ca), None, Some("not a name!")).unwrap_err();
        // Without a CA (the caller trusts the system's roots), identity and name are checked.
        client_config(None, Some(id), None).unwrap();
        is_key(
            client_config(None, Some((id.0, GARBAGE)), None).unwrap_err(),
            "no usable PEM private key",
        );
        assert!(matches!(e, TlsError::ServerName(_)), "{e:?}");
    }
}
