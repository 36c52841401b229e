//! `cargo run -p xtask -- manifest`: prints the one-file install manifest
//! (see the library).

fn main() -> std::process::ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("manifest") => match xtask::assemble(&xtask::deploy_dir()) {
            Ok(m) => {
                print!("{m}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("xtask manifest: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: cargo run -p xtask -- manifest > deploy/bottlerocket-update-operator.yaml");
            std::process::ExitCode::from(2)
        }
    }
}
