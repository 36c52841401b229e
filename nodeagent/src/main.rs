use clap::Parser;
use model::runtime::{shutdown, telemetry};
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    let cfg = nodeagent::config::Config::parse();
    telemetry::init(cfg.log_format).map_err(anyhow::Error::msg)?;
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls crypto provider was already installed"))?;
    // One thread is plenty for one node and keeps the agent small; host API
    // calls run on tokio's blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().max_blocking_threads(4).build()?;
    runtime.block_on(async {
        let token = CancellationToken::new();
        let signals = tokio::spawn(shutdown::on_signal(token.clone()));
        let result = nodeagent::run(cfg, token.clone()).await;
        token.cancel();
        if let Ok(signal) = signals.await {
            tracing::info!(signal, "exiting");
        }
        result
    })
}
