//! Process plumbing every binary of the project shares, so each `main.rs`
//! says only what differs:
//!
//! - [`flags::CommonFlags`]: the flags every component has (namespace,
//!   admin address, log format), flattened into each one's clap struct;
//! - [`client`]: the Kubernetes client as every component builds it
//!   (`Config::infer`, kube's own retries off, field managers on writes);
//! - [`listen`]: binding listeners (`[::]` serves IPv6 and IPv4);
//! - [`admin`]: the plain-HTTP admin server (`/metrics`, `/healthz`, `/readyz`),
//!   bounded by [`conngate`] (connection caps in all and per peer);
//! - [`telemetry`]: logging (text, JSON or the journal);
//! - [`events`]: Kubernetes Events, published in the background;
//! - [`shutdown`]: the one shutdown signal, fanned out;
//! - [`cache`]: the rule that keeps a write-through cache from going back
//!   in time, for the caches fed by watches and by one's own writes;
//! - [`main`]: logging, the TLS provider, the tokio runtime and the signal
//!   handler around a component's `run`.
//!
//! This crate holds no rule of the operator's domain (those live in `model`
//! and in each component's pure modules) and no component's behaviour.

pub mod admin;
pub mod cache;
pub mod client;
pub mod conngate;
pub mod events;
pub mod flags;
pub mod listen;
pub mod shutdown;
pub mod telemetry;

use std::future::Future;

use tokio_util::sync::CancellationToken;

use crate::telemetry::LogFormat;

/// How many threads a component's tokio runtime has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// One thread (the leader and the agent: their work is small, and one
    /// thread keeps them small in memory), and at most this many blocking
    /// threads (the agent's host API calls run there).
    One { max_blocking: usize },
    /// One worker per core (the authproxy serves a whole fleet).
    PerCore,
}

/// Runs a component: logging in `log_format`, the process's one rustls
/// crypto provider (`ring`, as kube's own TLS), a tokio runtime of
/// `threads`, SIGTERM/SIGINT cancelling the token `run` receives; then logs
/// why it exits and returns what `run` returned.
pub fn main<F, Fut>(log_format: LogFormat, threads: Threads, run: F) -> anyhow::Result<()>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    telemetry::init(log_format).map_err(anyhow::Error::msg)?;
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls crypto provider was already installed"))?;
    let runtime = match threads {
        Threads::One { max_blocking } => {
            tokio::runtime::Builder::new_current_thread().enable_all().max_blocking_threads(max_blocking).build()?
        }
        Threads::PerCore => tokio::runtime::Builder::new_multi_thread().enable_all().build()?,
    };
    runtime.block_on(async {
        let token = CancellationToken::new();
        let signals = tokio::spawn(shutdown::on_signal(token.clone()));
        let result = run(token.clone()).await;
        token.cancel();
        if let Ok(signal) = signals.await {
            tracing::info!(signal, "exiting");
        }
        result
    })
}
