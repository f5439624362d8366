//! The gRPC API over TLS and mTLS end to end: the real sensor with `--grpc-address` and
//! `--grpc-tls-*`, the real `vigil` CLI with `--server https://…` and `--tls-*`. Certificates are
//! generated per test (rcgen). Run as root (`make test-host`).

use std::path::Path;
use std::process::{Command, Output};

use vigil_e2e::test_ca::Ca;
use vigil_e2e::{Sensor, bin_path, free_port};

fn vigil(args: &[&str]) -> Output {
    Command::new(bin_path("vigil"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run vigil {args:?}: {e}"))
}

/// A failed command: exit status 2 and exactly one line on stderr, containing one of `texts`.
fn fails_with_one_line(out: &Output, texts: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "stderr: {err}");
    assert!(texts.iter().any(|t| err.contains(t)), "stderr: {err}");
}

/// What the CLI says when the server refuses its client certificate (or the lack of one):
/// the alert's meaning, or — when the server's TLS 1.3 alert is lost to the connection reset,
/// which is a race — that the server closed the connection after the handshake.
const CLOSED: &str = "the server closed the connection after the TLS handshake";

fn succeeds(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn status_and_policy_list_over_mtls() {
    let server_ca = Ca::new("e2e server CA");
    let client_ca = Ca::new("e2e client CA");
    let rogue_ca = Ca::new("e2e rogue CA");
    server_ca.issue("server", &["localhost", "127.0.0.1"]);
    client_ca.issue("client", &["vigil-cli"]);
    rogue_ca.issue("client", &["vigil-cli"]);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut sensor = Sensor::start(&[
        "--grpc-address",
        &addr,
        "--grpc-tls-cert",
        &server_ca.s("server.pem"),
        "--grpc-tls-key",
        &server_ca.s("server.key"),
        "--grpc-tls-client-ca",
        &client_ca.s("ca.pem"),
    ]);
    let url = format!("https://{addr}");
    let ca = server_ca.s("ca.pem");
    let (cert, key) = (client_ca.s("client.pem"), client_ca.s("client.key"));

    // The right CA and client certificate.
    let out = succeeds(&vigil(&[
        "status",
        "--server",
        &url,
        "--tls-ca",
        &ca,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]));
    assert!(out.contains("health:    running"), "{out}");
    let out = succeeds(&vigil(&[
        "policy",
        "list",
        "-o",
        "json",
        "--server",
        &url,
        "--tls-ca",
        &ca,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-server-name",
        "localhost",
    ]));
    assert!(out.trim().starts_with('['), "{out}");

    // No client certificate.
    fails_with_one_line(
        &vigil(&["status", "--server", &url, "--tls-ca", &ca]),
        &["requires a client certificate", CLOSED],
    );
    // A client certificate from another CA.
    fails_with_one_line(
        &vigil(&[
            "status",
            "--server",
            &url,
            "--tls-ca",
            &ca,
            "--tls-cert",
            &rogue_ca.s("client.pem"),
            "--tls-key",
            &rogue_ca.s("client.key"),
        ]),
        &["refused our client certificate", CLOSED],
    );
    // A server certificate the CLI does not trust.
    fails_with_one_line(
        &vigil(&[
            "status",
            "--server",
            &url,
            "--tls-ca",
            &rogue_ca.s("ca.pem"),
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ]),
        &["the server's certificate is not trusted"],
    );
    // Plain text to the TLS port.
    let out = vigil(&["status", "--server", &format!("http://{addr}")]);
    assert_eq!(out.status.code(), Some(2));
    // The unix socket stays plain text.
    let socket = sensor.socket.clone();
    succeeds(&vigil(&["status", "--server", socket.to_str().unwrap()]));
    assert!(sensor.stop().success());
}

/// The sensor refuses bad TLS input before starting anything: one line naming the option.
#[test]
fn bad_tls_options_stop_the_sensor_at_start() {
    let ca = Ca::new("e2e CA");
    ca.issue("server", &["localhost"]);
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not PEM\n").unwrap();
    let garbage = garbage.to_str().unwrap().to_string();
    let addr = format!("127.0.0.1:{}", free_port());
    let socket = dir.path().join("vigil.sock");
    let run = |extra: &[&str]| -> Output {
        Command::new(bin_path("vigil-sensor"))
            .args(["--instance", &vigil_e2e::unique_instance()])
            .arg("--keep-enforcing-on-exit=false")
            .args(["--grpc-socket", socket.to_str().unwrap()])
            .args(["--grpc-address", &addr])
            .args(extra)
            .output()
            .unwrap()
    };
    let (key, ca_pem) = (ca.s("server.key"), ca.s("ca.pem"));
    let cases: [(Vec<&str>, &str); 4] = [
        (
            vec!["--grpc-tls-key", &key],
            "invalid option --grpc-tls-key: needs --grpc-tls-cert",
        ),
        (
            vec!["--grpc-tls-client-ca", &ca_pem],
            "invalid option --grpc-tls-client-ca",
        ),
        (
            vec![
                "--grpc-tls-cert",
                "/nonexistent/cert.pem",
                "--grpc-tls-key",
                &key,
            ],
            "invalid option --grpc-tls-cert: cannot read /nonexistent/cert.pem",
        ),
        (
            vec!["--grpc-tls-cert", &garbage, "--grpc-tls-key", &key],
            "invalid option --grpc-tls-cert",
        ),
    ];
    for (args, text) in cases {
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(text), "{args:?}: {err}");
        assert!(!Path::new(&socket).exists(), "{args:?}: nothing may start");
    }
}
