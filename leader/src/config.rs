//! The leader's flags. Every flag has an environment-variable fallback;
//! durations are humantime. Bad values are refused at start naming the flag.
//! The UpdatePolicy object overrides the rollout settings at run time.

use std::time::Duration;

use clap::{Parser, Subcommand};
use model::parse::Budget;
use runtime::flags::{CommonFlags, duration};

fn budget(s: &str) -> Result<Budget, String> {
    Budget::parse(s).map_err(|e| e.to_string())
}

fn window(s: &str) -> Result<String, String> {
    s.parse::<crate::window::Window>().map(|_| s.to_owned()).map_err(|e| e.to_string())
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "leader",
    version,
    about = "Grants Bottlerocket update slots to waiting nodes",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Print the CustomResourceDefinitions (the content of deploy/base/crds.yaml).
    Crd,
}

#[derive(clap::Args, Debug, Clone)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonFlags,
    /// Label selector of the nodes this installation manages.
    #[arg(long, env = "BRUPOP_NODE_SELECTOR", default_value = "bottlerocket.aws/updater-interface-version=2.0.0")]
    pub node_selector: String,
    /// Concurrent updates when the UpdatePolicy does not say: a count (3) or a percentage (10%).
    #[arg(long, env = "BRUPOP_MAX_CONCURRENT_UPDATES", default_value = "1", value_parser = budget)]
    pub max_concurrent_updates: Budget,
    /// Lease duration written at each grant; the holder's agent renews it.
    #[arg(long, env = "BRUPOP_SLOT_LEASE_DURATION", default_value = "2m", value_parser = duration)]
    pub slot_lease_duration: Duration,
    /// First halt after an update failure; doubles per consecutive failure.
    #[arg(long, env = "BRUPOP_FAILURE_BACKOFF", default_value = "5m", value_parser = duration)]
    pub failure_backoff: Duration,
    /// Longest halt.
    #[arg(long, env = "BRUPOP_FAILURE_BACKOFF_MAX", default_value = "1h", value_parser = duration)]
    pub failure_backoff_max: Duration,
    /// The longest one node may hold a slot for one walk, renewals included;
    /// past it the slot is taken back (`SlotHeldTooLong`) and the node backed
    /// off. Must exceed the longest walk the agents' deadlines allow (95m at
    /// their shipped defaults: docs/protocol.md section 3).
    #[arg(long, env = "BRUPOP_MAX_SLOT_HOLD", default_value = "2h", value_parser = duration)]
    pub max_slot_hold: Duration,
    /// After this many consecutive failures grants stop until resumed (0: never stop, only halt).
    #[arg(long, env = "BRUPOP_MAX_CONSECUTIVE_FAILURES", default_value_t = 3)]
    pub max_consecutive_failures: u32,
    /// Maintenance window (repeatable), e.g. "Mon-Fri 02:00-05:00 Europe/Berlin". None: always.
    #[arg(long = "update-window", env = "BRUPOP_UPDATE_WINDOWS", value_delimiter = ';', value_parser = window)]
    pub update_windows: Vec<String>,
    /// Name of the leader-election Lease.
    #[arg(long, env = "BRUPOP_LEADER_ELECTION_LEASE", default_value = model::names::LEADER_LEASE_NAME)]
    pub leader_election_lease: String,
    /// How long a leader's claim is valid without renewal (whole seconds; at
    /// least --renew-deadline plus 1s: see `leader::election`).
    #[arg(long, env = "BRUPOP_LEASE_DURATION", default_value = "15s", value_parser = duration)]
    pub lease_duration: Duration,
    /// The active leader steps down if it could not renew for this long
    /// (at most --lease-duration minus 1s).
    #[arg(long, env = "BRUPOP_RENEW_DEADLINE", default_value = "10s", value_parser = duration)]
    pub renew_deadline: Duration,
    /// How often the election Lease is renewed or checked (at most half of --renew-deadline).
    #[arg(long, env = "BRUPOP_RETRY_PERIOD", default_value = "2s", value_parser = duration)]
    pub retry_period: Duration,
    /// This replica's identity in the election (default: POD_NAME, else the host name).
    #[arg(long, env = "BRUPOP_IDENTITY")]
    pub identity: Option<String>,
}

impl Config {
    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        self.common.validate()?;
        model::selector::parse(&self.node_selector).map_err(|e| format!("--node-selector: {e}"))?;
        crate::election::check_timings(self.lease_duration, self.renew_deadline, self.retry_period)?;
        if self.failure_backoff > self.failure_backoff_max {
            return Err("--failure-backoff must not exceed --failure-backoff-max".to_owned());
        }
        if self.slot_lease_duration < Duration::from_secs(1) {
            return Err("--slot-lease-duration must be at least 1s".to_owned());
        }
        if self.max_slot_hold <= self.slot_lease_duration {
            return Err("--max-slot-hold must be longer than --slot-lease-duration".to_owned());
        }
        Ok(())
    }

    pub fn identity(&self) -> String {
        self.identity
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("leader-{}", std::process::id()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, String> {
        Cli::try_parse_from(std::iter::once("leader").chain(args.iter().copied())).map_err(|e| e.to_string())
    }

    #[test]
    fn bad_values_are_refused_naming_the_flag() {
        let err = parse(&["--max-concurrent-updates", "0%"]).unwrap_err();
        assert!(err.contains("--max-concurrent-updates") && err.contains("0%"), "{err}");
        let err = parse(&["--failure-backoff", "soon"]).unwrap_err();
        assert!(err.contains("--failure-backoff"), "{err}");
        let err = parse(&["--update-window", "Funday 02:00-03:00"]).unwrap_err();
        assert!(err.contains("--update-window"), "{err}");
    }

    #[test]
    fn an_election_that_could_outlive_its_claim_is_refused() {
        let cli = parse(&["--lease-duration", "10s", "--renew-deadline", "10s"]).unwrap();
        assert!(cli.config.validate().unwrap_err().contains("--renew-deadline"));
        let cli = parse(&["--lease-duration", "10s", "--renew-deadline", "9500ms"]).unwrap();
        assert!(cli.config.validate().unwrap_err().contains("--renew-deadline"), "less than the margin");
        assert_eq!(parse(&[]).unwrap().config.validate(), Ok(()));
    }

    #[test]
    fn windows_are_repeatable() {
        let cli = parse(&["--update-window", "Mon 02:00-03:00", "--update-window", "Sat 22:00+6h UTC"]).unwrap();
        assert_eq!(cli.config.update_windows.len(), 2);
        assert!(matches!(parse(&["crd"]).unwrap().command, Some(Command::Crd)));
    }
}
