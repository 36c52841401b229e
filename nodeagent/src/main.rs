use clap::Parser;
use runtime::Threads;

fn main() -> anyhow::Result<()> {
    let cfg = nodeagent::config::Flags::parse();
    // One thread for one node; host API calls run on the blocking pool.
    runtime::main(cfg.common.log_format, Threads::One { max_blocking: 4 }, |stop| nodeagent::run(cfg, stop))
}
