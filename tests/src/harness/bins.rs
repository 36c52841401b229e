//! The real `leader`, `authproxy` and `nodeagent` binaries (and the `kubectl-brupop` plugin), built once per
//! test process. `cargo test` does not build other packages' binaries, so
//! the harness runs `cargo build` itself (with the `CARGO` the tests were
//! started with, into the same target directory and profile) and finds the
//! binaries next to the test executable: no hard-coded paths.
//! `BRUPOP_BIN_DIR` points at prebuilt binaries instead (a release build for
//! measurements).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Paths of the three binaries.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub leader: PathBuf,
    pub authproxy: PathBuf,
    pub nodeagent: PathBuf,
}

static BINARIES: OnceLock<Result<Binaries, String>> = OnceLock::new();

/// `<target>/<profile>` of the running test or binary.
fn profile_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating the test executable: {e}"))?;
    // <target>/<profile>/deps/<test>-<hash> for tests, <target>/<profile>/<bin> for binaries.
    let parent = exe.parent().ok_or("unexpected executable location")?;
    let profile_dir = if parent.file_name().is_some_and(|n| n == "deps") { parent.parent() } else { Some(parent) };
    Ok(profile_dir.ok_or("unexpected executable location")?.to_owned())
}

/// The cargo target directory the tests were built in.
pub fn target_dir() -> anyhow::Result<PathBuf> {
    let profile = profile_dir().map_err(anyhow::Error::msg)?;
    profile.parent().map(std::path::Path::to_owned).ok_or_else(|| anyhow::anyhow!("unexpected target directory"))
}

fn build() -> Result<Binaries, String> {
    // Prebuilt binaries (e.g. a release build for measurements).
    if let Some(dir) = std::env::var_os("BRUPOP_BIN_DIR").map(PathBuf::from) {
        let bin = |name: &str| {
            let p = dir.join(name);
            if p.exists() { Ok(p) } else { Err(format!("BRUPOP_BIN_DIR: {} does not exist", p.display())) }
        };
        return Ok(Binaries { leader: bin("leader")?, authproxy: bin("authproxy")?, nodeagent: bin("nodeagent")? });
    }
    let profile_dir = profile_dir()?;
    let target_dir = profile_dir.parent().ok_or("unexpected target directory")?.to_owned();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = Command::new(&cargo);
    cmd.arg("build").arg("--manifest-path").arg(&manifest).args([
        "-p",
        "leader",
        "-p",
        "authproxy",
        "-p",
        "nodeagent",
        "-p",
        "kubectl-brupop",
    ]);
    if release {
        cmd.arg("--release");
    }
    cmd.arg("--target-dir").arg(&target_dir);
    if std::env::var_os("CARGO_LOCKED_BUILD").is_some() || std::env::var_os("CI").is_some() {
        cmd.arg("--locked");
    }
    let out = cmd.output().map_err(|e| format!("running {cargo} build: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo build of the components failed:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    let bin = |name: &str| {
        let p = profile_dir.join(name);
        if p.exists() { Ok(p) } else { Err(format!("{} was not built", p.display())) }
    };
    Ok(Binaries { leader: bin("leader")?, authproxy: bin("authproxy")?, nodeagent: bin("nodeagent")? })
}

/// The binaries, built on first use.
pub fn binaries() -> &'static Binaries {
    match BINARIES.get_or_init(build) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    }
}

/// The `kubectl-brupop` plugin, built with the components (or from
/// `BRUPOP_BIN_DIR`).
pub fn plugin() -> PathBuf {
    if let Some(dir) = std::env::var_os("BRUPOP_BIN_DIR") {
        return PathBuf::from(dir).join("kubectl-brupop");
    }
    binaries();
    profile_dir().map(|d| d.join("kubectl-brupop")).unwrap_or_else(|e| panic!("{e}"))
}
