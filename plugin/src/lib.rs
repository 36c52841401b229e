//! The `kubectl brupop` plugin: what the rollout is doing and the few
//! changes people make to it, without hand-written patches.
//!
//! It reads the UpdatePolicy, the slot Leases, the BottlerocketShadows, the
//! Nodes and Events with the user's kubeconfig and context (as kubectl
//! does: `--kubeconfig`, `--context`, else `KUBECONFIG` and the current
//! context), and writes only what a person would: the UpdatePolicy's spec
//! (`paused`, `resumeRequest`, `maxConcurrentUpdates`, `canary.skipSoak`)
//! and a Node's opt-out annotation. It never writes a status, a Lease or a
//! shadow: those belong to the leader and the agents.

use clap::{Parser, Subcommand, ValueEnum};
use kube::Client;

mod commands;
pub mod plan;
pub mod render;

pub use render::StatusReport;

/// `kubectl brupop`: see and steer the Bottlerocket update rollout.
#[derive(Parser, Debug)]
#[command(name = "kubectl-brupop", bin_name = "kubectl brupop", version)]
pub struct Args {
    /// The kubeconfig file (default: KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context (default: the current one).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The operator's namespace.
    #[arg(short = 'n', long, global = true, default_value = model::names::DEFAULT_NAMESPACE)]
    pub namespace: String,
    #[command(subcommand)]
    pub command: Command,
}

/// Output format of commands with structured output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    #[default]
    Text,
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Phase and why, slots and their holders, halt, window, canaries,
    /// nodes by state and version, the last failures.
    Status {
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Output,
    },
    /// Recent failures, halts, canary steps and phase changes, oldest first.
    History {
        /// How many entries, the newest.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Output,
    },
    /// Who is granted next, in order, and for every other managed node the
    /// rule that holds it back (the leader's own decision, run here).
    Plan {
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Output,
    },
    /// One node: its walk so far, its last failure, its host's offer, and
    /// why it is or is not moving.
    Explain {
        node: String,
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Output,
    },
    /// Stop new grants (nodes already updating finish).
    Pause,
    /// Undo a pause, and end a halt or a stop (sets spec.resumeRequest).
    Resume,
    /// Set how many nodes may update at once: a count or a percentage.
    SetSlots {
        /// `3` or `10%`.
        slots: String,
    },
    /// End a canary's soak now (default: the version soaking).
    SkipSoak { version: Option<String> },
    /// No new update starts on NODE (one under way finishes).
    OptOut { node: String },
    /// Undo `opt-out`.
    OptIn { node: String },
}

/// What went wrong, said for a person.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the cluster: {0}")]
    Config(String),
    #[error(
        "the operator is not installed in this cluster: no {resource} API (kubectl get crd updatepolicies.brupop.bottlerocket.aws)"
    )]
    NotInstalled { resource: String },
    #[error(
        "no UpdatePolicy default in namespace {namespace}: is the operator installed there? (use -n for another namespace)"
    )]
    NoPolicy { namespace: String },
    #[error("no permission to {verb} {resource}{scope}: {message}")]
    Forbidden { verb: &'static str, resource: &'static str, scope: String, message: String },
    #[error("no node {0} in this cluster")]
    UnknownNode(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{verb} {resource}: {source}")]
    Api {
        verb: &'static str,
        resource: &'static str,
        #[source]
        source: kube::Error,
    },
}

/// Runs one command; returns what to print.
pub async fn run(args: Args) -> Result<String, Error> {
    let client = client(&args).await?;
    commands::run(&client, &args.namespace, args.command).await
}

/// A client for the kubeconfig and context the flags (or the environment) name.
async fn client(args: &Args) -> Result<Client, Error> {
    let options = kube::config::KubeConfigOptions { context: args.context.clone(), cluster: None, user: None };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &options).await.map_err(|e| Error::Config(e.to_string()))?
        }
        None if args.context.is_some() => {
            kube::Config::from_kubeconfig(&options).await.map_err(|e| Error::Config(e.to_string()))?
        }
        None => kube::Config::infer().await.map_err(|e| Error::Config(e.to_string()))?,
    };
    Client::try_from(config).map_err(|e| Error::Config(e.to_string()))
}
