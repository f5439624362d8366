//! `vigil-sensor`: the per-node sensor binary.

use anyhow::Context;
use clap::Parser;
use vigil_sensor::config::{Cli, Command, Config};

fn main() {
    let cli = Cli::parse();
    if let Err(e) = real_main(cli) {
        eprintln!("vigil-sensor: {e:#}");
        std::process::exit(1);
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Probe) = cli.command {
        let f = vigil_sensor::features::probe();
        println!(
            "{}",
            serde_json::to_string(&f).context("encoding features")?
        );
        return Ok(());
    }
    let config = Config::resolve(&cli, std::env::var("NODE_NAME").ok())?;
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .with_context(|| format!("invalid option --log-level: {:?}", config.log_level))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(vigil_sensor::runtime::run(config, shutdown_signal()))?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
