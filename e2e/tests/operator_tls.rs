//! Policy sync over TLS and mTLS end to end: a real `vigil-operator run --policy-dir` with
//! `--grpc-tls-*`, real sensors with `--operator-address https://…` and `--operator-tls-*`,
//! observed with the real `vigil policy list` and the sensors' metrics. Certificates are
//! generated per test (rcgen). Run as root (`make test-host`).

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use vigil_e2e::test_ca::Ca;
use vigil_e2e::{
    Operator, Sensor, bin_path, free_port, metric_value, open_policy, policy_list, wait_for,
};

const POLICY: &str = "e2e-optls-open";
const FAILURES: &str = "vigil_operator_connection_failures_total";

fn sync_timeout() -> Duration {
    // Reconnects back off up to 10 s.
    Duration::from_secs(if vigil_e2e::slow_machine() { 180 } else { 45 })
}

fn listed(s: &Sensor) -> Option<Value> {
    policy_list(&s.socket)
        .into_iter()
        .find(|p| p["name"] == POLICY)
}

/// A sensor of node `node` connecting to `address` with `tls` (more `--operator-tls-*` args),
/// its metrics served.
fn sensor(node: &str, address: &str, tls: &[&str]) -> Sensor {
    let mut args = vec!["--node-name", node, "--operator-address", address];
    args.extend_from_slice(tls);
    Sensor::start_with_metrics(&args)
}

/// Waits until `s` counted a failed connection to the operator; returns its stderr then.
fn wait_failure(s: &Sensor) -> String {
    wait_for(
        sync_timeout(),
        &format!("{FAILURES} >= 1 on {}", s.socket.display()),
        || (metric_value(&s.metrics(), FAILURES) >= 1.0).then_some(()),
    );
    s.stderr()
}

#[test]
fn mtls_delivers_policies_only_to_sensors_with_the_right_certificate() {
    let server_ca = Ca::new("e2e operator CA");
    server_ca.issue("server", &["127.0.0.1", "localhost"]);
    let client_ca = Ca::new("e2e sensor CA");
    client_ca.issue("client", &["e2e-sensor"]);
    let work = tempfile::tempdir().unwrap();
    let prefix = format!("{}/", work.path().display());
    let op = Operator::start_with(
        &[
            "--grpc-tls-cert",
            &server_ca.s("server.pem"),
            "--grpc-tls-key",
            &server_ca.s("server.key"),
            "--grpc-tls-client-ca",
            &client_ca.s("ca.pem"),
        ],
        &[("open.yaml", &open_policy(POLICY, &prefix, ""))],
    );
    assert!(op.stderr().contains("mTLS"), "{}", op.stderr());
    let ca = server_ca.s("ca.pem");

    // (a) The right CA and a client certificate of the CA the operator requires: the policy
    // of the directory arrives, from the operator.
    let good = sensor(
        "tls-good",
        &op.https_url(),
        &[
            "--operator-tls-ca",
            &ca,
            "--operator-tls-cert",
            &client_ca.s("client.pem"),
            "--operator-tls-key",
            &client_ca.s("client.key"),
        ],
    );
    let p = wait_for(sync_timeout(), "the policy on the mTLS sensor", || {
        listed(&good).filter(|p| p["origin"] == "operator" && p["state"] == "enabled")
    });
    assert_eq!(p["name"], POLICY);
    assert_eq!(
        metric_value(&good.metrics(), "vigil_operator_connected"),
        1.0
    );

    // (b) No client certificate: the operator refuses it during the handshake. The sensor
    // counts the failure, logs it as a TLS failure, keeps running, and never gets the policy.
    let anonymous = sensor(
        "tls-anonymous",
        &op.https_url(),
        &["--operator-tls-ca", &ca],
    );
    let err = wait_failure(&anonymous);
    assert!(err.contains("over TLS"), "{err}");
    // The alert (CertificateRequired) or, when it is lost to the reset, the closed connection:
    // both point at the client certificate.
    assert!(err.contains("--operator-tls-cert"), "{err}");
    assert!(
        listed(&anonymous).is_none(),
        "{:?}",
        policy_list(&anonymous.socket)
    );
    assert_eq!(
        metric_value(&anonymous.metrics(), "vigil_operator_connected"),
        0.0
    );

    // (c) Plain text against the TLS port: a failed connection too, and no policy.
    let plain = sensor("tls-plain", &op.url(), &[]);
    let err = wait_failure(&plain);
    assert!(err.contains("policy sync"), "{err}");
    assert!(listed(&plain).is_none(), "{:?}", policy_list(&plain.socket));

    // The refused sensors retry with backoff and still get nothing; the good one keeps its
    // stream and its policy.
    wait_for(
        sync_timeout(),
        "a second failure of the anonymous sensor",
        || (metric_value(&anonymous.metrics(), FAILURES) >= 2.0).then_some(()),
    );
    assert!(listed(&anonymous).is_none());
    assert!(listed(&plain).is_none());
    assert!(listed(&good).is_some());
    assert_eq!(
        metric_value(&good.metrics(), "vigil_operator_connected"),
        1.0
    );
    assert_eq!(metric_value(&good.metrics(), FAILURES), 0.0);

    // `vigil status --operator` reaches the mTLS operator with the same kind of files, and is
    // refused without a client certificate.
    let status = |extra: &[&str]| {
        std::process::Command::new(vigil_e2e::bin_path("vigil"))
            .args([
                "status",
                "--operator",
                &op.https_url(),
                "-o",
                "json",
                "--tls-ca",
                &ca,
            ])
            .args(extra)
            .output()
            .expect("run vigil status")
    };
    let out = status(&[
        "--tls-cert",
        &client_ca.s("client.pem"),
        "--tls-key",
        &client_ca.s("client.key"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(v["nodes"][0]["name"], "tls-good", "{v}");
    assert_eq!(v["policies"][0]["ready"], 1, "{v}");
    let out = status(&[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_sensor_that_does_not_trust_the_operator_ca_fails_over_tls() {
    let server_ca = Ca::new("e2e operator CA");
    server_ca.issue("server", &["127.0.0.1", "localhost"]);
    let other = Ca::new("e2e other CA");
    let op = Operator::start_with_args(&[
        "--grpc-tls-cert",
        &server_ca.s("server.pem"),
        "--grpc-tls-key",
        &server_ca.s("server.key"),
    ]);
    // TLS without client certificates: the right CA (checked by name: the address is an IP,
    // the name given is on the certificate) is enough.
    let good = sensor(
        "tls-named",
        &op.https_url(),
        &[
            "--operator-tls-ca",
            &server_ca.s("ca.pem"),
            "--operator-tls-server-name",
            "localhost",
        ],
    );
    wait_for(sync_timeout(), "the TLS sensor connected", || {
        (metric_value(&good.metrics(), "vigil_operator_connected") == 1.0).then_some(())
    });
    // A CA that did not sign the operator's certificate: the sensor's own check fails.
    let wrong = sensor(
        "tls-wrong-ca",
        &op.https_url(),
        &["--operator-tls-ca", &other.s("ca.pem")],
    );
    let err = wait_failure(&wrong);
    assert!(err.contains("over TLS"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(
        err.contains("not signed by a CA of --operator-tls-ca"),
        "{err}"
    );
}

#[test]
fn the_operator_refuses_a_key_that_does_not_match_its_certificate() {
    let ca = Ca::new("e2e operator CA");
    ca.issue("server", &["127.0.0.1"]);
    ca.issue("other", &["127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin_path("vigil-operator"))
        .args(["run", "--policy-dir"])
        .arg(dir.path())
        .args(["--grpc-address", &format!("127.0.0.1:{}", free_port())])
        .args(["--grpc-tls-cert", &ca.s("server.pem")])
        .args(["--grpc-tls-key", &ca.s("other.key")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--grpc-tls-key"), "{err}");
    assert!(err.contains("does not belong to the certificate"), "{err}");
    assert!(!err.contains("ready"), "nothing may start: {err}");
}
