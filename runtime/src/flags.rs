//! The flags every component has, as one clap group flattened into each
//! component's own flags (`#[command(flatten)]`), and the value parsers
//! they share. Every flag has an environment-variable fallback; durations
//! are humantime (`90s`, `10m`).

use std::net::SocketAddr;
use std::time::Duration;

use crate::telemetry::LogFormat;

/// Parses a humantime duration (`30s`, `15m`) for clap.
pub fn duration(s: &str) -> Result<Duration, String> {
    model::parse::duration(s).map_err(|e| e.to_string())
}

/// Flags common to the leader, the authproxy and the agent.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct CommonFlags {
    /// Namespace of the operator: shadows, slot Leases, the UpdatePolicy and the election Lease live here.
    #[arg(long, env = "BRUPOP_NAMESPACE", default_value = model::names::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Address of the plain-HTTP admin server (/metrics, /healthz, /readyz).
    #[arg(long, env = "BRUPOP_ADMIN_LISTEN", default_value = "[::]:8080")]
    pub admin_listen: SocketAddr,
    /// Log format: text, json, or journald (the host's journal).
    #[arg(long, env = "BRUPOP_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

impl CommonFlags {
    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        model::parse::dns_subdomain("namespace", &self.namespace).map_err(|e| format!("--namespace: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        common: CommonFlags,
    }

    #[test]
    fn common_flags_have_defaults_and_name_bad_values() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.common.namespace, model::names::DEFAULT_NAMESPACE);
        assert_eq!(cli.common.log_format, LogFormat::Text);
        assert_eq!(cli.common.validate(), Ok(()));
        let bad = Cli::try_parse_from(["x", "--namespace", "Not_A_Namespace"]).unwrap();
        assert!(bad.common.validate().unwrap_err().contains("--namespace"));
        let err = Cli::try_parse_from(["x", "--log-format", "xml"]).unwrap_err().to_string();
        assert!(err.contains("--log-format"), "{err}");
        assert_eq!(duration("90s"), Ok(Duration::from_secs(90)));
        assert!(duration("soon").is_err());
    }
}
