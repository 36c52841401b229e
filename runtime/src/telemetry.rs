//! Logging: text or JSON to stdout, or the systemd journal.

use std::str::FromStr;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Where and how logs are written (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
    /// The host's journal (the agent, on a Bottlerocket host).
    Journald,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            "journald" => Ok(LogFormat::Journald),
            other => Err(format!("{other:?} is not a log format (text, json or journald)")),
        }
    }
}

/// Colours only for a person at a terminal: never in a pod's log (its
/// stdout is a pipe) nor with `NO_COLOR` set.
fn colours() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber. The level comes from `RUST_LOG`, default
/// `info`. Fails if the journal is asked for and cannot be reached.
pub fn init(format: LogFormat) -> Result<(), String> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => {
            registry.with(tracing_subscriber::fmt::layer().with_target(false).with_ansi(colours())).try_init()
        }
        LogFormat::Json => registry.with(tracing_subscriber::fmt::layer().json().flatten_event(true)).try_init(),
        LogFormat::Journald => {
            let layer = tracing_journald::layer().map_err(|e| format!("cannot log to the journal: {e}"))?;
            registry.with(layer).try_init()
        }
    };
    result.map_err(|e| e.to_string())
}
