//! `kubectl-brupop`: the operator's kubectl plugin. On PATH, `kubectl brupop
//! <command>` runs it; see `kubectl brupop --help`.

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = kubectl_brupop::Args::parse();
    match kubectl_brupop::run(args).await {
        Ok(out) => {
            print!("{out}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
