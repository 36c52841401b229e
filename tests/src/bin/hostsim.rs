//! Runs one simulated Bottlerocket host by hand:
//!
//! ```sh
//! cargo run -p tests --bin hostsim -- --socket /tmp/h.sock --version 1.20.0 --available 1.21.0,1.20.0
//! curl --unix-socket /tmp/h.sock http://localhost/updates/status
//! curl --unix-socket /tmp/h.sock -X POST http://localhost/actions/refresh-updates
//! ```
//!
//! It prints what the host does (commands started and finished, reboots)
//! until Ctrl-C or SIGTERM, then removes its socket.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tests::hostsim::{HostConfig, HostEvent, HostSim, RebootMode, Timings};
use tokio::io::AsyncBufReadExt;

/// A simulated Bottlerocket host serving the update API on a Unix socket.
#[derive(Debug, Parser)]
#[command(name = "hostsim", disable_version_flag = true)]
struct Args {
    /// The Unix socket to serve on (replaced if it exists).
    #[arg(long, env = "HOSTSIM_SOCKET")]
    socket: std::path::PathBuf,
    /// The version the host runs.
    #[arg(long, env = "HOSTSIM_VERSION", default_value = "1.20.0")]
    version: String,
    /// Releases in the host's repository, comma-separated (default: only the running version).
    #[arg(long, env = "HOSTSIM_AVAILABLE", value_delimiter = ',')]
    available: Vec<String>,
    /// The `version-lock` setting: `latest` or a version.
    #[arg(long, env = "HOSTSIM_VERSION_LOCK", default_value = "latest")]
    version_lock: String,
    /// The variant.
    #[arg(long, env = "HOSTSIM_VARIANT", default_value = "aws-k8s-1.29")]
    variant: String,
    /// The architecture.
    #[arg(long, env = "HOSTSIM_ARCH", default_value = "x86_64")]
    arch: String,
    /// How long refresh-updates takes.
    #[arg(long, env = "HOSTSIM_REFRESH", default_value = "1s", value_parser = humantime::parse_duration)]
    refresh: Duration,
    /// How long prepare-update takes.
    #[arg(long, env = "HOSTSIM_PREPARE", default_value = "5s", value_parser = humantime::parse_duration)]
    prepare: Duration,
    /// How long activate-update takes.
    #[arg(long, env = "HOSTSIM_ACTIVATE", default_value = "1s", value_parser = humantime::parse_duration)]
    activate: Duration,
    /// How long deactivate-update takes.
    #[arg(long, env = "HOSTSIM_DEACTIVATE", default_value = "1s", value_parser = humantime::parse_duration)]
    deactivate: Duration,
    /// How long a reboot keeps the host down.
    #[arg(long, env = "HOSTSIM_REBOOT_DOWNTIME", default_value = "5s", value_parser = humantime::parse_duration)]
    reboot_downtime: Duration,
    /// Stay down after a reboot until Enter is pressed.
    #[arg(long, env = "HOSTSIM_MANUAL_REBOOT")]
    manual_reboot: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = HostConfig::new(&args.version)
        .name("hostsim")
        .version_lock(&args.version_lock)
        .timings(Timings {
            refresh: args.refresh,
            prepare: args.prepare,
            activate: args.activate,
            deactivate: args.deactivate,
            reboot_downtime: args.reboot_downtime,
            status_read_hold: Duration::ZERO,
        })
        .reboot_mode(if args.manual_reboot { RebootMode::Manual } else { RebootMode::Automatic });
    config.variant = args.variant;
    config.arch = args.arch;
    if !args.available.is_empty() {
        config.available = args.available;
    }
    println!(
        "hostsim: {} {} ({}) on {}, repository [{}], version-lock {}",
        config.variant,
        config.running_version,
        config.arch,
        args.socket.display(),
        config.available.join(", "),
        args.version_lock,
    );
    let host = HostSim::start(&args.socket, config)
        .await
        .with_context(|| format!("starting the host on {}", args.socket.display()))?;
    println!("hostsim: try  curl --unix-socket {} http://localhost/updates/status", args.socket.display());
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut events = host.events();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                println!("hostsim: stopping");
                return Ok(());
            }
            _ = terminate.recv() => {
                println!("hostsim: terminated");
                return Ok(());
            }
            event = events.recv() => match event {
                Ok(event) => {
                    print_event(&event);
                    if event == HostEvent::Down && args.manual_reboot {
                        println!("hostsim: down; press Enter to boot");
                    }
                }
                Err(e) => println!("hostsim: events: {e}"),
            },
            line = stdin.next_line(), if args.manual_reboot => {
                if let Ok(Some(_)) = line {
                    match host.boot() {
                        Ok(outcome) => println!("hostsim: booted {}", outcome.version),
                        Err(e) => println!("hostsim: {e}"),
                    }
                }
            }
        }
    }
}

fn print_event(event: &HostEvent) {
    match event {
        HostEvent::CommandStarted(cmd) => println!("hostsim: {cmd:?} started (update lock held)"),
        HostEvent::CommandFinished(done) => println!(
            "hostsim: {:?} finished {:?} at {} (exit {}){}",
            done.cmd_type,
            done.cmd_status,
            done.timestamp,
            done.exit_status,
            if done.stderr.is_empty() { String::new() } else { format!(": {}", done.stderr.trim_end()) }
        ),
        HostEvent::RebootRequested => println!("hostsim: reboot requested"),
        HostEvent::Down => println!("hostsim: down (socket removed)"),
        HostEvent::BootFailed { version } => {
            println!("hostsim: {version} failed to boot; falling back")
        }
        HostEvent::Up { version } => println!("hostsim: up, running {version}"),
    }
}

#[cfg(test)]
mod cli {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
        let args = Args::try_parse_from([
            "hostsim",
            "--socket",
            "/tmp/h.sock",
            "--available",
            "1.21.0,1.20.0",
            "--prepare",
            "250ms",
        ])
        .unwrap();
        assert_eq!(args.available, ["1.21.0", "1.20.0"]);
        assert_eq!(args.prepare, Duration::from_millis(250));
    }
}
