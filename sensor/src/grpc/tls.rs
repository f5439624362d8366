//! TLS for the gRPC TCP listener (`--grpc-address`): the PEM files named by `--grpc-tls-cert`,
//! `--grpc-tls-key` and `--grpc-tls-client-ca`, and for the client to the operator
//! (`--operator-tls-*`), read and checked before anything starts.
//!
//! Reading and checking is [`vigil_host::tls_files`] (shared with the operator and the CLI):
//! each error is one [`SensorError::Config`] naming the option and the file.

use std::path::PathBuf;

use tonic::transport::{ClientTlsConfig, ServerTlsConfig};
use vigil_host::tls_files::{self, ServerName, TlsFile};

use crate::error::SensorError;

/// The TLS files of the TCP listener. With `client_ca`, clients must present a certificate
/// signed by it (mTLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcTls {
    /// `--grpc-tls-cert`: the server's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// `--grpc-tls-key`: the server's private key (PEM).
    pub key: PathBuf,
    /// `--grpc-tls-client-ca`: CA certificates (PEM) that client certificates must chain to.
    pub client_ca: Option<PathBuf>,
}

/// TLS of the link to the operator (`--operator-address https://…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorTls {
    /// `--operator-tls-ca`: the CA (PEM) that signed the operator's certificate; the only one
    /// trusted for it.
    pub ca: PathBuf,
    /// `--operator-tls-cert`: this sensor's client certificate chain (PEM), for mTLS.
    pub cert: Option<PathBuf>,
    /// `--operator-tls-key`: the private key (PEM) of `cert`; given with it or not at all.
    pub key: Option<PathBuf>,
    /// `--operator-tls-server-name`: the name the operator's certificate is checked against
    /// (default: the address's host).
    pub server_name: Option<String>,
}

fn bad(option: &str, message: String) -> SensorError {
    SensorError::Config {
        option: option.into(),
        message,
    }
}

impl GrpcTls {
    /// Reads and checks the files; returns the configuration for the listener.
    pub fn server_config(&self) -> Result<ServerTlsConfig, SensorError> {
        Ok(tls_files::server_config(
            TlsFile::new("grpc-tls-cert", &self.cert),
            TlsFile::new("grpc-tls-key", &self.key),
            self.client_ca
                .as_deref()
                .map(|p| TlsFile::new("grpc-tls-client-ca", p)),
        )?)
    }
}

impl OperatorTls {
    /// Reads and checks the files; returns the configuration for the operator connection.
    pub fn client_config(&self) -> Result<ClientTlsConfig, SensorError> {
        let identity = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Some((
                TlsFile::new("operator-tls-cert", c),
                TlsFile::new("operator-tls-key", k),
            )),
            (None, None) => None,
            (Some(_), None) => {
                return Err(bad(
                    "operator-tls-cert",
                    "needs --operator-tls-key (the certificate's private key)".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(bad(
                    "operator-tls-key",
                    "needs --operator-tls-cert (the certificate the key belongs to)".into(),
                ));
            }
        };
        Ok(tls_files::client_config(
            Some(TlsFile::new("operator-tls-ca", &self.ca)),
            identity,
            self.server_name.as_deref().map(|name| ServerName {
                option: "operator-tls-server-name",
                name,
            }),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use std::time::Duration;

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
    use vigil_api::wire::sensor_info::sensors_client::SensorsClient;
    use vigil_api::wire::tetragon::{
        self, fine_guidance_sensors_client::FineGuidanceSensorsClient,
    };

    use super::*;
    use crate::config::{Cli, Config};
    use crate::grpc::server::{self, Broadcaster, Service, ServiceInfo};
    use crate::output::metrics::Metrics;

    /// A CA and PEM files it signed, written into a temporary directory.
    struct Ca {
        issuer: CertifiedIssuer<'static, KeyPair>,
        dir: tempfile::TempDir,
    }

    impl Ca {
        fn new(name: &str) -> Ca {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let issuer =
                CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
            let ca = Ca {
                issuer,
                dir: tempfile::tempdir().unwrap(),
            };
            std::fs::write(ca.path("ca.pem"), ca.issuer.pem()).unwrap();
            ca
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        /// Issues a certificate for `names` (DNS names or IP addresses); writes NAME.pem and
        /// NAME.key; returns their PEM text.
        fn issue(&self, file: &str, names: &[&str]) -> (String, String) {
            let key = KeyPair::generate().unwrap();
            let params =
                CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                    .unwrap();
            let cert = params.signed_by(&key, &self.issuer).unwrap().pem();
            let key = key.serialize_pem();
            std::fs::write(self.path(&format!("{file}.pem")), &cert).unwrap();
            std::fs::write(self.path(&format!("{file}.key")), &key).unwrap();
            (cert, key)
        }

        fn ca_pem(&self) -> String {
            self.issuer.pem()
        }

        fn server_tls(&self, client_ca: Option<PathBuf>) -> GrpcTls {
            self.issue("server", &["localhost", "127.0.0.1"]);
            GrpcTls {
                cert: self.path("server.pem"),
                key: self.path("server.key"),
                client_ca,
            }
        }
    }

    fn service() -> Service {
        Service {
            broadcaster: Arc::new(Broadcaster::new(16, Arc::new(Metrics::new()))),
            info: Arc::new(ServiceInfo {
                version: "test".into(),
                node_name: "n".into(),
                features: Default::default(),
                self_protection: crate::kernel::protect::State::Off,
                programs: Default::default(),
            }),
            pods: None,
        }
    }

    async fn serve(tls: &GrpcTls) -> (server::Servers, SocketAddr) {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let servers = server::start(service(), None, None, Some(any), Some(tls))
            .await
            .unwrap();
        let addr = servers.tcp_address().unwrap();
        (servers, addr)
    }

    /// Connects and calls GetHealth; the error text when either fails.
    async fn health(endpoint: Endpoint) -> Result<(), String> {
        let ch: Channel = endpoint
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(10))
            .connect()
            .await
            .map_err(|e| format!("connect: {}", chain(&e)))?;
        FineGuidanceSensorsClient::new(ch)
            .get_health(tetragon::GetHealthStatusRequest::default())
            .await
            .map(|_| ())
            .map_err(|s| format!("rpc: {}", chain(&s)))
    }

    fn chain(e: &(dyn std::error::Error + 'static)) -> String {
        let mut out = e.to_string();
        let mut cur = e.source();
        while let Some(x) = cur {
            out.push_str(": ");
            out.push_str(&x.to_string());
            cur = x.source();
        }
        out
    }

    fn https(addr: SocketAddr, tls: ClientTlsConfig) -> Endpoint {
        Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
    }

    fn trusting(ca: &Ca) -> ClientTlsConfig {
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca.ca_pem()))
    }

    #[tokio::test]
    async fn tls_server_and_tls_client() {
        let ca = Ca::new("server CA");
        let (servers, addr) = serve(&ca.server_tls(None)).await;
        health(https(addr, trusting(&ca))).await.unwrap();
        // By name, with the address in the URL.
        health(https(addr, trusting(&ca).domain_name("localhost")))
            .await
            .unwrap();
        // The Vigil-named service is on the TLS listener too.
        let ch = https(addr, trusting(&ca)).connect().await.unwrap();
        let v = SensorsClient::new(ch)
            .get_version(tetragon::GetVersionRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(v.version, "test");
        // A client that does not trust the server's CA is refused by its own check.
        let other = Ca::new("other CA");
        let e = health(https(addr, trusting(&other))).await.unwrap_err();
        assert!(e.contains("UnknownIssuer"), "{e}");
        // A name the certificate does not carry.
        let e = health(https(addr, trusting(&ca).domain_name("elsewhere.example")))
            .await
            .unwrap_err();
        assert!(e.contains("not valid for name"), "{e}");
        servers.shutdown(Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn plaintext_client_to_the_tls_port_fails() {
        let ca = Ca::new("server CA");
        let (servers, addr) = serve(&ca.server_tls(None)).await;
        let plain = Endpoint::from_shared(format!("http://{addr}")).unwrap();
        let e = health(plain).await.unwrap_err();
        assert!(!e.is_empty());
        servers.shutdown(Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn mtls_refuses_clients_without_the_right_certificate() {
        let server_ca = Ca::new("server CA");
        let client_ca = Ca::new("client CA");
        let rogue_ca = Ca::new("rogue CA");
        let (servers, addr) = serve(&server_ca.server_tls(Some(client_ca.path("ca.pem")))).await;

        // No client certificate.
        let e = health(https(addr, trusting(&server_ca))).await.unwrap_err();
        assert!(e.contains("CertificateRequired"), "{e}");

        // A certificate from another CA.
        let (cert, key) = rogue_ca.issue("client", &["client"]);
        let e = health(https(
            addr,
            trusting(&server_ca).identity(Identity::from_pem(cert, key)),
        ))
        .await
        .unwrap_err();
        assert!(
            e.contains("UnknownCA") || e.contains("BadCertificate"),
            "{e}"
        );

        // The right one.
        let (cert, key) = client_ca.issue("client", &["client"]);
        health(https(
            addr,
            trusting(&server_ca).identity(Identity::from_pem(cert, key)),
        ))
        .await
        .unwrap();
        servers.shutdown(Duration::from_secs(5)).await;
    }

    fn resolve(args: &[&str]) -> Result<Config, SensorError> {
        use clap::Parser;
        let cli = Cli::try_parse_from(
            ["vigil-sensor", "--grpc-socket", ""]
                .into_iter()
                .chain(args.iter().copied()),
        )
        .unwrap();
        Config::resolve(&cli, Some("n".into()))
    }

    /// The error of `args`, checked to be one line naming `option`.
    fn refused(args: &[&str], option: &str, text: &str) {
        let e = resolve(args).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("invalid option --{option}: ")),
            "{args:?}: {e}"
        );
        assert!(e.contains(text), "{args:?}: {e}");
        assert!(!e.contains('\n'), "{args:?}: {e}");
    }

    #[test]
    fn config_accepts_tls_and_mtls() {
        let ca = Ca::new("CA");
        ca.server_tls(None);
        let (cert, key, client_ca) = (
            ca.path("server.pem"),
            ca.path("server.key"),
            ca.path("ca.pem"),
        );
        let s = |p: &PathBuf| p.to_str().unwrap().to_string();
        let addr = ["--grpc-address", "127.0.0.1:54321"];
        let c = resolve(
            &[
                &addr[..],
                &["--grpc-tls-cert", &s(&cert), "--grpc-tls-key", &s(&key)],
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(
            c.grpc_tls,
            Some(GrpcTls {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: None
            })
        );
        let c = resolve(
            &[
                &addr[..],
                &[
                    "--grpc-tls-cert",
                    &s(&cert),
                    "--grpc-tls-key",
                    &s(&key),
                    "--grpc-tls-client-ca",
                    &s(&client_ca),
                ],
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(c.grpc_tls.unwrap().client_ca, Some(client_ca));
        // The same from the YAML file.
        let yaml = ca.path("vigil.yaml");
        std::fs::write(
            &yaml,
            format!(
                "grpc-address: 127.0.0.1:54321\ngrpc-tls-cert: {}\ngrpc-tls-key: {}\n",
                s(&cert),
                s(&key)
            ),
        )
        .unwrap();
        let c = resolve(&["--config", &s(&yaml)]).unwrap();
        assert_eq!(c.grpc_tls.unwrap().cert, cert);
        // Without TLS options there is no TLS.
        assert_eq!(resolve(&addr).unwrap().grpc_tls, None);
    }

    #[test]
    fn config_refuses_bad_tls_input() {
        let ca = Ca::new("CA");
        ca.server_tls(None);
        let other = Ca::new("other");
        other.issue("server", &["localhost"]);
        let p = |c: &Ca, f: &str| c.path(f).to_str().unwrap().to_string();
        let (cert, key, client_ca) = (p(&ca, "server.pem"), p(&ca, "server.key"), p(&ca, "ca.pem"));
        let garbage = ca.path("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let garbage = garbage.to_str().unwrap();
        let broken = ca.path("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let broken = broken.to_str().unwrap();
        let dir = ca.dir.path().to_str().unwrap();
        let a = ["--grpc-address", "127.0.0.1:54321"];
        let with = |extra: &[&str]| -> Vec<String> {
            a.iter().chain(extra).map(|s| s.to_string()).collect()
        };
        let check = |args: Vec<String>, option: &str, text: &str| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            refused(&args, option, text);
        };

        // Pairing rules.
        check(
            with(&["--grpc-tls-key", &key]),
            "grpc-tls-key",
            "needs --grpc-tls-cert",
        );
        check(
            with(&["--grpc-tls-cert", &cert]),
            "grpc-tls-cert",
            "needs --grpc-tls-key",
        );
        check(
            with(&["--grpc-tls-client-ca", &client_ca]),
            "grpc-tls-client-ca",
            "needs --grpc-tls-cert and --grpc-tls-key",
        );
        check(
            with(&["--grpc-tls-client-ca", &client_ca, "--grpc-tls-key", &key]),
            "grpc-tls-key",
            "needs --grpc-tls-cert",
        );
        // TLS without the TCP listener it applies to.
        check(
            vec![
                "--grpc-tls-cert".into(),
                cert.clone(),
                "--grpc-tls-key".into(),
                key.clone(),
            ],
            "grpc-tls-cert",
            "--grpc-address is not set",
        );
        // Missing and unreadable files.
        check(
            with(&[
                "--grpc-tls-cert",
                "/nonexistent/c.pem",
                "--grpc-tls-key",
                &key,
            ]),
            "grpc-tls-cert",
            "cannot read /nonexistent/c.pem",
        );
        check(
            with(&[
                "--grpc-tls-cert",
                &cert,
                "--grpc-tls-key",
                "/nonexistent/k.pem",
            ]),
            "grpc-tls-key",
            "cannot read /nonexistent/k.pem",
        );
        check(
            with(&["--grpc-tls-cert", &cert, "--grpc-tls-key", dir]),
            "grpc-tls-key",
            "cannot read",
        );
        check(
            with(&[
                "--grpc-tls-cert",
                &cert,
                "--grpc-tls-key",
                &key,
                "--grpc-tls-client-ca",
                "/nonexistent/ca.pem",
            ]),
            "grpc-tls-client-ca",
            "cannot read /nonexistent/ca.pem",
        );
        // Unparsable PEM.
        check(
            with(&["--grpc-tls-cert", garbage, "--grpc-tls-key", &key]),
            "grpc-tls-cert",
            "no PEM certificate",
        );
        check(
            with(&["--grpc-tls-cert", broken, "--grpc-tls-key", &key]),
            "grpc-tls-cert",
            "broken.pem",
        );
        check(
            with(&["--grpc-tls-cert", &cert, "--grpc-tls-key", garbage]),
            "grpc-tls-key",
            "no usable PEM private key",
        );
        // The certificate file given as the key: no key in it.
        check(
            with(&["--grpc-tls-cert", &cert, "--grpc-tls-key", &cert]),
            "grpc-tls-key",
            "no usable PEM private key",
        );
        check(
            with(&[
                "--grpc-tls-cert",
                &cert,
                "--grpc-tls-key",
                &key,
                "--grpc-tls-client-ca",
                garbage,
            ]),
            "grpc-tls-client-ca",
            "no PEM certificate",
        );
        check(
            with(&[
                "--grpc-tls-cert",
                &cert,
                "--grpc-tls-key",
                &key,
                "--grpc-tls-client-ca",
                broken,
            ]),
            "grpc-tls-client-ca",
            "not a usable CA certificate",
        );
        // A key that belongs to another certificate.
        check(
            with(&[
                "--grpc-tls-cert",
                &cert,
                "--grpc-tls-key",
                &p(&other, "server.key"),
            ]),
            "grpc-tls-key",
            "does not belong to the certificate",
        );
    }

    #[test]
    fn config_accepts_operator_tls_from_flags_and_file() {
        let ca = Ca::new("operator CA");
        let client = Ca::new("client CA");
        client.issue("client", &["n"]);
        let s = |p: PathBuf| p.to_str().unwrap().to_string();
        let ca_pem = s(ca.path("ca.pem"));
        let c = resolve(&[
            "--operator-address",
            "https://127.0.0.1:4245",
            "--operator-tls-ca",
            &ca_pem,
        ])
        .unwrap();
        assert_eq!(
            c.operator_address.as_deref(),
            Some("https://127.0.0.1:4245")
        );
        assert_eq!(
            c.operator_tls,
            Some(OperatorTls {
                ca: ca.path("ca.pem"),
                cert: None,
                key: None,
                server_name: None,
            })
        );
        let c = resolve(&[
            "--operator-address",
            "https://127.0.0.1:4245",
            "--operator-tls-ca",
            &ca_pem,
            "--operator-tls-cert",
            &s(client.path("client.pem")),
            "--operator-tls-key",
            &s(client.path("client.key")),
            "--operator-tls-server-name",
            "vigil-operator.kube-system.svc",
        ])
        .unwrap();
        let tls = c.operator_tls.unwrap();
        assert_eq!(tls.cert, Some(client.path("client.pem")));
        assert_eq!(
            tls.server_name.as_deref(),
            Some("vigil-operator.kube-system.svc")
        );
        // The same from the YAML file.
        let yaml = ca.path("vigil.yaml");
        std::fs::write(
            &yaml,
            format!(
                "operator-address: https://op:4245\noperator-tls-ca: {ca_pem}\n\
                 operator-tls-cert: {}\noperator-tls-key: {}\noperator-tls-server-name: op\n",
                s(client.path("client.pem")),
                s(client.path("client.key"))
            ),
        )
        .unwrap();
        let c = resolve(&["--config", &s(yaml)]).unwrap();
        let tls = c.operator_tls.unwrap();
        assert_eq!(tls.ca, ca.path("ca.pem"));
        assert_eq!(tls.key, Some(client.path("client.key")));
        assert_eq!(tls.server_name.as_deref(), Some("op"));
        // Plain text: no TLS.
        let c = resolve(&["--operator-address", "http://op:4245"]).unwrap();
        assert_eq!(c.operator_tls, None);
    }

    #[test]
    fn config_refuses_bad_operator_tls_input() {
        let ca = Ca::new("operator CA");
        let client = Ca::new("client CA");
        client.issue("client", &["n"]);
        client.issue("other", &["n"]);
        let p = |c: &Ca, f: &str| c.path(f).to_str().unwrap().to_string();
        let (ca_pem, cert, key) = (
            p(&ca, "ca.pem"),
            p(&client, "client.pem"),
            p(&client, "client.key"),
        );
        let garbage = ca.path("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let garbage = garbage.to_str().unwrap();
        let https = ["--operator-address", "https://127.0.0.1:4245"];
        let with = |extra: &[&str]| -> Vec<String> {
            https.iter().chain(extra).map(|s| s.to_string()).collect()
        };
        let check = |args: Vec<String>, option: &str, text: &str| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            refused(&args, option, text);
        };

        // https:// without the CA.
        check(with(&[]), "operator-tls-ca", "required with an https://");
        check(
            with(&["--operator-tls-cert", &cert, "--operator-tls-key", &key]),
            "operator-tls-ca",
            "required with an https://",
        );
        // TLS files with plain text, or without an address.
        for (option, value) in [
            ("operator-tls-ca", ca_pem.as_str()),
            ("operator-tls-cert", cert.as_str()),
            ("operator-tls-key", key.as_str()),
            ("operator-tls-server-name", "op"),
        ] {
            let flag = format!("--{option}");
            check(
                vec![
                    "--operator-address".into(),
                    "http://127.0.0.1:4245".into(),
                    flag.clone(),
                    value.into(),
                ],
                option,
                "is plain text",
            );
            check(
                vec![
                    "--operator-address".into(),
                    "127.0.0.1:4245".into(),
                    flag.clone(),
                    value.into(),
                ],
                option,
                "is plain text",
            );
            check(
                vec![flag, value.into()],
                option,
                "--operator-address is not set",
            );
        }
        // Pairing of the client certificate and its key.
        check(
            with(&["--operator-tls-ca", &ca_pem, "--operator-tls-cert", &cert]),
            "operator-tls-cert",
            "needs --operator-tls-key",
        );
        check(
            with(&["--operator-tls-ca", &ca_pem, "--operator-tls-key", &key]),
            "operator-tls-key",
            "needs --operator-tls-cert",
        );
        // Missing files.
        check(
            with(&["--operator-tls-ca", "/nonexistent/ca.pem"]),
            "operator-tls-ca",
            "cannot read /nonexistent/ca.pem",
        );
        check(
            with(&[
                "--operator-tls-ca",
                &ca_pem,
                "--operator-tls-cert",
                "/nonexistent/c.pem",
                "--operator-tls-key",
                &key,
            ]),
            "operator-tls-cert",
            "cannot read /nonexistent/c.pem",
        );
        check(
            with(&[
                "--operator-tls-ca",
                &ca_pem,
                "--operator-tls-cert",
                &cert,
                "--operator-tls-key",
                "/nonexistent/k.pem",
            ]),
            "operator-tls-key",
            "cannot read /nonexistent/k.pem",
        );
        // Bad PEM, each file.
        check(
            with(&["--operator-tls-ca", garbage]),
            "operator-tls-ca",
            "no PEM certificate",
        );
        check(
            with(&[
                "--operator-tls-ca",
                &ca_pem,
                "--operator-tls-cert",
                garbage,
                "--operator-tls-key",
                &key,
            ]),
            "operator-tls-cert",
            "no PEM certificate",
        );
        check(
            with(&[
                "--operator-tls-ca",
                &ca_pem,
                "--operator-tls-cert",
                &cert,
                "--operator-tls-key",
                garbage,
            ]),
            "operator-tls-key",
            "no usable PEM private key",
        );
        // A key of another certificate.
        check(
            with(&[
                "--operator-tls-ca",
                &ca_pem,
                "--operator-tls-cert",
                &cert,
                "--operator-tls-key",
                &p(&client, "other.key"),
            ]),
            "operator-tls-key",
            "does not belong to the certificate",
        );
        // A server name that is neither a DNS name nor an IP address.
        check(
            with(&[
                "--operator-tls-ca",
                &ca_pem,
                "--operator-tls-server-name",
                "not a name!",
            ]),
            "operator-tls-server-name",
            "not a DNS name or IP address",
        );
    }

    #[tokio::test]
    async fn start_refuses_bad_files_before_listening() {
        let ca = Ca::new("CA");
        let tls = GrpcTls {
            cert: ca.path("missing.pem"),
            key: ca.path("missing.key"),
            client_ca: None,
        };
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let e = server::start(service(), None, None, Some(any), Some(&tls))
            .await
            .unwrap_err();
        assert!(
            e.to_string().starts_with("invalid option --grpc-tls-cert"),
            "{e}"
        );
    }
}
