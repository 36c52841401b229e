//! Runs the Kubernetes API simulator until Ctrl-C and prints a kubeconfig
//! path for `kubectl`: `cargo run -p tests --example apisim [PATH]`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sim = tests::apisim::ApiSim::start().await?;
    let path = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("apisim-{}.kubeconfig", std::process::id())));
    sim.write_kubeconfig(&path, &sim.admin_token())?;
    println!("API simulator at {}", sim.url());
    println!("export KUBECONFIG={}", path.display());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
