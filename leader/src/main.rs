use clap::Parser;
use leader::config::{Cli, Command};
use model::runtime::{shutdown, telemetry};
use tokio_util::sync::CancellationToken;

// One thread: the leader's work is small, and one thread keeps it small in
// memory too (a pass takes milliseconds even at 5,000 nodes).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Crd) = cli.command {
        print!("{}", model::crds_yaml());
        return Ok(());
    }
    telemetry::init(cli.config.log_format).map_err(anyhow::Error::msg)?;
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls crypto provider was already installed"))?;
    let token = CancellationToken::new();
    let signals = tokio::spawn(shutdown::on_signal(token.clone()));
    let result = leader::run(cli.config, token.clone()).await;
    token.cancel();
    if let Ok(signal) = signals.await {
        tracing::info!(signal, "exiting");
    }
    result
}
