//! `vigil-operator`: `crdgen` prints the CRDs; `run` distributes policies to the sensors.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "vigil-operator", version, about = "Vigil's cluster operator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the CustomResourceDefinitions (TracingPolicy, TracingPolicyNamespaced) as
    /// multi-document YAML, or write one file per CRD into a directory.
    Crdgen {
        /// Write `vigil.dev_<plural>.yaml` files into this directory (e.g. config/crd), and the
        /// cilium.io ones into its `cilium.io/` subdirectory, instead of printing.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<std::path::PathBuf>,
        /// Print the same kinds in Tetragon's group cilium.io (Vigil's schema), for clusters
        /// that apply Tetragon's manifests unchanged.
        #[arg(long, conflicts_with = "out_dir")]
        cilium: bool,
    },
    /// Run the operator: serve policy sync to the sensors. With --policy-dir (GitOps mode) the
    /// policies are the *.yaml/*.yml files of a directory; without it, TracingPolicy resources
    /// of the cluster (Kubernetes mode: leader-elected controllers, status on the resources).
    Run(RunArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Address sensors connect to (policy sync gRPC; plain text unless --grpc-tls-cert).
    #[arg(long, env = "VIGIL_OPERATOR_GRPC_ADDRESS", value_name = "ADDR", default_value = vigil_operator::run::DEFAULT_GRPC_ADDRESS)]
    grpc_address: std::net::SocketAddr,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:2113).
    #[arg(long, env = "VIGIL_OPERATOR_METRICS_ADDRESS", value_name = "ADDR")]
    metrics_address: Option<std::net::SocketAddr>,
    /// GitOps mode: every *.yaml/*.yml file of DIR is one policy; the directory is followed.
    #[arg(long, env = "VIGIL_OPERATOR_POLICY_DIR", value_name = "DIR")]
    policy_dir: Option<std::path::PathBuf>,
    /// Serve policy sync over TLS with this certificate chain (PEM, leaf first); needs
    /// --grpc-tls-key. Sensors then connect with https:// and --operator-tls-ca.
    #[arg(long, env = "VIGIL_OPERATOR_GRPC_TLS_CERT", value_name = "FILE")]
    grpc_tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1) of --grpc-tls-cert.
    #[arg(long, env = "VIGIL_OPERATOR_GRPC_TLS_KEY", value_name = "FILE")]
    grpc_tls_key: Option<std::path::PathBuf>,
    /// Require sensors to present a client certificate signed by one of these CAs (PEM): mTLS.
    /// Needs --grpc-tls-cert and --grpc-tls-key.
    #[arg(long, env = "VIGIL_OPERATOR_GRPC_TLS_CLIENT_CA", value_name = "FILE")]
    grpc_tls_client_ca: Option<std::path::PathBuf>,
    /// Kubernetes mode: also reconcile TracingPolicy and TracingPolicyNamespaced of Tetragon's
    /// group cilium.io (the cluster needs Vigil's cilium.io CRDs: `crdgen --cilium`), with the
    /// same status as vigil.dev ones. Leave it off where Tetragon itself serves that group.
    #[arg(long, env = "VIGIL_OPERATOR_CILIUM_POLICIES")]
    cilium_policies: bool,
    /// Log filter (tracing-subscriber syntax).
    #[arg(long, env = "VIGIL_OPERATOR_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crdgen {
            out_dir: None,
            cilium,
        } => {
            if cilium {
                print!("{}", vigil_operator::cilium_crd_yaml()?);
            } else {
                print!("{}", vigil_operator::crd_yaml()?);
            }
            Ok(())
        }
        Command::Crdgen {
            out_dir: Some(dir), ..
        } => {
            let cilium_dir = dir.join(vigil_operator::CILIUM_CRD_DIR);
            std::fs::create_dir_all(&cilium_dir)
                .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", cilium_dir.display()))?;
            let vigil = vigil_operator::CRD_FILES
                .iter()
                .map(|f| dir.join(f))
                .zip(vigil_operator::crd_documents()?);
            let cilium = vigil_operator::CILIUM_CRD_FILES
                .iter()
                .map(|f| cilium_dir.join(f))
                .zip(vigil_operator::cilium_crd_documents()?);
            for (path, doc) in vigil.chain(cilium) {
                std::fs::write(&path, doc)
                    .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", path.display()))?;
            }
            Ok(())
        }
        Command::Run(a) => run(a),
    }
}

fn run(a: RunArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&a.log_level)
        .map_err(|e| anyhow::anyhow!("invalid option --log-level: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: `kubectl logs` and journald get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let opts = vigil_operator::run::RunOptions {
        grpc_address: a.grpc_address,
        metrics_address: a.metrics_address,
        policy_dir: a.policy_dir,
        grpc_tls_cert: a.grpc_tls_cert,
        grpc_tls_key: a.grpc_tls_key,
        grpc_tls_client_ca: a.grpc_tls_client_ca,
        cilium_policies: a.cilium_policies,
    };
    if let Err(e) = opts.check() {
        eprintln!("vigil-operator: {e}");
        std::process::exit(2);
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        vigil_operator::run::run(opts, shutdown).await
    })?;
    // Open sync streams never end by themselves: do not wait for them.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(())
}
