//! The scale benchmark (see `tests::scale`):
//!
//!     cargo run --release -p tests --bin scale -- --nodes 1000 --slots 50 --node-time 2s

use clap::Parser;
use tests::scale::{Args, fleetchild};

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(spec) = &args.fleet_child {
        // The agent fleet: one process, many agents; a small runtime.
        let spec: fleetchild::FleetSpec = serde_json::from_slice(&std::fs::read(spec)?)?;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        runtime::telemetry::init(runtime::telemetry::LogFormat::Text).map_err(anyhow::Error::msg)?;
        return rt.block_on(fleetchild::run(spec));
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(tests::scale::run(args)).map(|_| ())
}
