use super::*;
use vigil_api::events::EventKind;
use vigil_api::wire::sensor_info;

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
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
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
