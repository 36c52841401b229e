use clap::Parser;
use leader::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => print!("{}", model::crds_yaml()),
    }
    Ok(())
}
