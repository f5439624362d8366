//! A test certificate authority: a CA generated per test (rcgen) and the certificates it
//! signs, as PEM files in a temporary directory. Used by the TLS suites (the sensor's gRPC API,
//! the operator link).

use std::path::PathBuf;

/// A CA and the certificates it signs. Its own certificate is `ca.pem` in [`Ca::path`].
pub struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: tempfile::TempDir,
}

impl Ca {
    /// A new self-signed CA named `name`, written as `ca.pem`.
    pub fn new(name: &str) -> Ca {
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

    /// A file of the CA's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// [`Ca::path`] as a string, for command lines.
    pub fn s(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }

    /// Writes FILE.pem and FILE.key, a certificate for `names` (DNS names or IP addresses).
    pub fn issue(&self, file: &str, names: &[&str]) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(self.path(&format!("{file}.pem")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{file}.key")), key.serialize_pem()).unwrap();
    }
}
