//! The previous build, for upgrade tests: the commit before the
//! BottlerocketShadow took the original operator's snake_case field names,
//! built once from this repository's history (`git archive`) into its own
//! target directory beside the current one, and kept there.
//!
//! The build takes a few minutes the first time (its own dependencies); every
//! later run finds it. Concurrent test processes wait for one another (a
//! file lock).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::bins::Binaries;

/// The last commit whose shadows use camelCase field names.
pub const PREVIOUS_COMMIT: &str = "dbc3d09b1c942c6bd02c72a666fcc6a0f5770f54";

/// The previous build's binaries and the CRDs it installs.
#[derive(Clone, Debug)]
pub struct PreviousBuild {
    pub binaries: Binaries,
    /// Its `deploy/base/crds.yaml`.
    pub crds_yaml: String,
}

static PREVIOUS: OnceLock<Result<PreviousBuild, String>> = OnceLock::new();

/// The previous build, built on first use (blocking: call it from
/// `spawn_blocking` in async tests).
pub fn previous_build() -> anyhow::Result<PreviousBuild> {
    PREVIOUS.get_or_init(|| build().map_err(|e| format!("{e:#}"))).clone().map_err(anyhow::Error::msg)
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd.output().map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    anyhow::ensure!(out.status.success(), "{what} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

fn build() -> anyhow::Result<PreviousBuild> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = super::bins::target_dir()?.join(format!("previous-{}", &PREVIOUS_COMMIT[..12]));
    std::fs::create_dir_all(&dir)?;
    let lock = std::fs::File::create(dir.join(".lock"))?;
    lock.lock()?;
    let bin = dir.join("bin");
    let found = |p: &Path| ["leader", "authproxy", "nodeagent", "crds.yaml"].iter().all(|f| p.join(f).exists());
    if !found(&bin) {
        let src = dir.join("src");
        let _ = std::fs::remove_dir_all(&src);
        std::fs::create_dir_all(&src)?;
        // The commit's tree, without touching the working tree or the index.
        let mut archive = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["archive", "--format=tar", PREVIOUS_COMMIT])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| anyhow::anyhow!("git archive {PREVIOUS_COMMIT}: {e}"))?;
        let tar_in = archive.stdout.take().ok_or_else(|| anyhow::anyhow!("git archive: no output"))?;
        run(Command::new("tar").arg("-x").arg("-C").arg(&src).stdin(tar_in), "unpacking the previous build's sources")?;
        let out = archive.wait_with_output()?;
        anyhow::ensure!(
            out.status.success(),
            "git archive {PREVIOUS_COMMIT} failed (is this a clone with history?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut cmd = Command::new(cargo);
        cmd.arg("build")
            .arg("--manifest-path")
            .arg(src.join("Cargo.toml"))
            .args(["-p", "leader", "-p", "authproxy", "-p", "nodeagent", "--locked"])
            .arg("--target-dir")
            .arg(dir.join("target"));
        run(&mut cmd, "building the previous build")?;
        std::fs::create_dir_all(&bin)?;
        for name in ["leader", "authproxy", "nodeagent"] {
            std::fs::copy(dir.join("target/debug").join(name), bin.join(name))?;
        }
        // Where the CRDs file lies depends on the commit (deploy/ became a
        // kustomize base later).
        let crds = ["deploy/base/crds.yaml", "deploy/crds.yaml"].map(|p| src.join(p));
        let crds =
            crds.iter().find(|p| p.exists()).ok_or_else(|| anyhow::anyhow!("no CRDs file in {PREVIOUS_COMMIT}"))?;
        std::fs::copy(crds, bin.join("crds.yaml"))?;
    }
    Ok(PreviousBuild {
        binaries: Binaries {
            leader: bin.join("leader"),
            authproxy: bin.join("authproxy"),
            nodeagent: bin.join("nodeagent"),
        },
        crds_yaml: std::fs::read_to_string(bin.join("crds.yaml"))?,
    })
}
