use super::*;
use std::io::Write;

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("vigil-sensor").chain(args.iter().copied())).unwrap()
}

#[test]
fn grpc_socket_default_and_empty_disables() {
    let c = Config::resolve(&parse(&[]), None).unwrap();
    assert_eq!(c.grpc_socket, Some(PathBuf::from(DEFAULT_GRPC_SOCKET)));
    assert_eq!(c.grpc_address, None);
    assert_eq!(c.grpc_client_queue_size, DEFAULT_GRPC_CLIENT_QUEUE_SIZE);
    let c = Config::resolve(&parse(&["--grpc-socket", ""]), None).unwrap();
    assert_eq!(c.grpc_socket, None);
    let c = Config::resolve(
        &parse(&[
            "--grpc-address",
            "127.0.0.1:54321",
            "--grpc-client-queue-size",
            "8",
        ]),
        None,
    )
    .unwrap();
    assert_eq!(c.grpc_address, Some("127.0.0.1:54321".parse().unwrap()));
    assert_eq!(c.grpc_client_queue_size, 8);
    let e = Config::resolve(&parse(&["--grpc-client-queue-size", "0"]), None).unwrap_err();
    assert!(e.to_string().contains("grpc-client-queue-size"), "{e}");
}

#[test]
fn defaults_and_node_name_fallbacks() {
    let c = Config::resolve(&parse(&[]), Some("from-env".into())).unwrap();
    assert_eq!(c.node_name, "from-env");
    assert_eq!(c.ring_buffer_size, DEFAULT_RING_BUFFER_SIZE);
    assert!(!c.enable_process_cred);
    let c = Config::resolve(&parse(&["--node-name", "flag"]), Some("env".into())).unwrap();
    assert_eq!(c.node_name, "flag");
    let c = Config::resolve(&parse(&[]), None).unwrap();
    assert_eq!(c.node_name, hostname());
}

#[test]
fn file_fills_in_and_flags_win() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        f,
        "node-name: filenode\nenable-process-ns: true\nexport-file-max-size-mb: 3"
    )
    .unwrap();
    let path = f.path().to_str().unwrap();
    let c = Config::resolve(&parse(&["--config", path]), None).unwrap();
    assert_eq!(c.node_name, "filenode");
    assert!(c.enable_process_ns);
    assert!(!c.self_protection, "self-protection is opt-in");
    assert_eq!(c.export_file_max_size, 3 << 20);
    let c = Config::resolve(
        &parse(&[
            "--config",
            path,
            "--node-name",
            "x",
            "--export-file-max-size-mb",
            "7",
        ]),
        None,
    )
    .unwrap();
    assert_eq!(c.node_name, "x");
    assert_eq!(c.export_file_max_size, 7 << 20);
}

#[test]
fn bad_file_names_the_key() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "export-fiel: /tmp/x").unwrap();
    let err = Config::resolve(&parse(&["--config", f.path().to_str().unwrap()]), None).unwrap_err();
    assert!(err.to_string().contains("export-fiel"), "{err}");
    let err = Config::resolve(&parse(&["--config", "/nonexistent/vigil.yaml"]), None).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/vigil.yaml"), "{err}");
}

#[test]
fn out_of_range_values_are_rejected() {
    let err = Config::resolve(&parse(&["--ring-buffer-size", "5000"]), None).unwrap_err();
    assert!(err.to_string().contains("ring-buffer-size"), "{err}");
    let err = Config::resolve(&parse(&["--process-table-size", "1"]), None).unwrap_err();
    assert!(err.to_string().contains("process-table-size"), "{err}");
    let err =
        Config::resolve(&parse(&["--export-file", "/nonexistent-dir/x.json"]), None).unwrap_err();
    assert!(err.to_string().contains("export-file"), "{err}");
    let err = Config::resolve(&parse(&["--node-name", "a:b"]), None).unwrap_err();
    assert!(err.to_string().contains("node-name"), "{err}");
}

#[test]
fn operator_address_and_node_labels() {
    let c = Config::resolve(&parse(&[]), None).unwrap();
    assert_eq!(c.operator_address, None);
    assert!(c.node_labels.is_empty());
    let c = Config::resolve(
        &parse(&[
            "--operator-address",
            "127.0.0.1:4245",
            "--node-labels",
            "zone=a,role=web",
        ]),
        None,
    )
    .unwrap();
    assert_eq!(c.operator_address.as_deref(), Some("http://127.0.0.1:4245"));
    assert_eq!(c.node_labels.len(), 2);
    let e = Config::resolve(&parse(&["--operator-address", "ftp://x:1"]), None).unwrap_err();
    assert!(e.to_string().contains("--operator-address"), "{e}");
    let e = Config::resolve(&parse(&["--node-labels", "zone"]), None).unwrap_err();
    assert!(e.to_string().contains("--node-labels"), "{e}");
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        f,
        "operator-address: http://op:4245\nnode-labels:\n  zone: b\n  tier: \"1\""
    )
    .unwrap();
    let c = Config::resolve(&parse(&["--config", f.path().to_str().unwrap()]), None).unwrap();
    assert_eq!(c.operator_address.as_deref(), Some("http://op:4245"));
    assert_eq!(c.node_labels["zone"], "b");
    assert_eq!(c.node_labels["tier"], "1");
    let c = Config::resolve(
        &parse(&[
            "--config",
            f.path().to_str().unwrap(),
            "--node-labels",
            "zone=c",
        ]),
        None,
    )
    .unwrap();
    assert_eq!(c.node_labels.len(), 1);
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "node-labels: \"zone=a,zone=b\"").unwrap();
    let e = Config::resolve(&parse(&["--config", f.path().to_str().unwrap()]), None).unwrap_err();
    assert!(e.to_string().contains("twice"), "{e}");
}

#[test]
fn bad_flag_values_are_clap_errors() {
    let err = Cli::try_parse_from(["vigil-sensor", "--metrics-address", "nope"]).unwrap_err();
    assert!(err.to_string().contains("--metrics-address"), "{err}");
    let err = Cli::try_parse_from(["vigil-sensor", "--bogus"]).unwrap_err();
    assert!(err.to_string().contains("--bogus"), "{err}");
}
