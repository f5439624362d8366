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
    match &cli.command {
        Some(Command::Probe) => {
            let f = vigil_sensor::kernel::features::probe();
            println!(
                "{}",
                serde_json::to_string(&f).context("encoding features")?
            );
            return Ok(());
        }
        Some(Command::CheckPrograms { budget, output }) => {
            let report = vigil_sensor::kernel::program_check::run(*budget)?;
            if output == "json" {
                println!(
                    "{}",
                    serde_json::to_string(&report).context("encoding the report")?
                );
            } else {
                print!("{}", report.text());
            }
            std::process::exit(if report.ok() { 0 } else { 1 });
        }
        Some(Command::Cleanup { instance, all }) => {
            let instance = if *all {
                None
            } else {
                Some(
                    instance
                        .as_deref()
                        .unwrap_or(vigil_sensor::config::DEFAULT_INSTANCE),
                )
            };
            let removed =
                vigil_sensor::kernel::handoff::cleanup(instance).map_err(anyhow::Error::msg)?;
            if removed.is_empty() {
                println!("nothing pinned");
            }
            for r in removed {
                println!("removed {}", r.display());
            }
            return Ok(());
        }
        None => {}
    }
    let config = Config::resolve(&cli, std::env::var("NODE_NAME").ok())?;
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .with_context(|| format!("invalid option --log-level: {:?}", config.log_level))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: `kubectl logs` and journald get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The handlers are installed now, before anything starts: a SIGTERM that arrives right
    // after the ready line is a clean stop, not the default action (death).
    let shutdown = {
        let _runtime = rt.enter();
        shutdown_signal().context("installing the SIGTERM and SIGINT handlers")?
    };
    rt.block_on(vigil_sensor::runtime::run(config, shutdown))?;
    Ok(())
}

fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
