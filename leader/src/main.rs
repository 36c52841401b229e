use clap::Parser;
use leader::config::{Cli, Command};
use runtime::Threads;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Crd) = cli.command {
        print!("{}", model::crds_yaml());
        return Ok(());
    }
    // One thread: a pass takes milliseconds even at 5,000 nodes.
    runtime::main(cli.config.common.log_format, Threads::One { max_blocking: 4 }, |stop| leader::run(cli.config, stop))
}
