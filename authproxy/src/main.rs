use clap::Parser;
use runtime::Threads;

fn main() -> anyhow::Result<()> {
    let cfg = authproxy::config::Config::parse();
    runtime::main(cfg.common.log_format, Threads::PerCore, |stop| authproxy::run(cfg, stop))
}
