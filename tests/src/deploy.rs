//! Reading the install manifest in tests: its documents, parsed. It is
//! assembled by the `xtask` crate (`cargo run -p xtask -- manifest`).

pub use xtask::{REGENERATE, assemble, deploy_dir};

/// The documents of a multi-document YAML text, parsed.
pub fn documents(yaml: &str) -> Result<Vec<serde_json::Value>, String> {
    yaml.split("\n---\n")
        .map(|d| d.trim())
        .filter(|d| d.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#') && l.trim() != "---"))
        .map(|d| {
            serde_saphyr::from_str::<serde_json::Value>(d.trim_start_matches("---")).map_err(|e| format!("{e}\n{d}"))
        })
        .collect()
}

/// What `kubectl kustomize` makes of a kustomization directory (kubectl's
/// built-in kustomize).
pub fn kustomize(dir: &std::path::Path) -> Result<String, String> {
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .map_err(|e| format!("kubectl kustomize {}: {e} (kubectl is required)", dir.display()))?;
    if !out.status.success() {
        return Err(format!("kubectl kustomize {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr)));
    }
    String::from_utf8(out.stdout).map_err(|e| e.to_string())
}

/// `to` as a path relative to `from` (kustomize refuses absolute paths).
fn relative(from: &std::path::Path, to: &std::path::Path) -> std::path::PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = std::path::PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    out
}

/// The install as a user's overlay of `deploy/base` makes it: in
/// `namespace`, with the named components of `deploy/components` (made in a
/// temporary directory, as a user's own overlay would be).
pub fn overlay(namespace: Option<&str>, components: &[&str]) -> Result<String, String> {
    let dir = tempfile::Builder::new().prefix("brupop-overlay-").tempdir().map_err(|e| e.to_string())?;
    let here = dir.path().canonicalize().map_err(|e| e.to_string())?;
    let deploy = deploy_dir().canonicalize().map_err(|e| e.to_string())?;
    let mut k = format!("resources:\n  - {}\n", relative(&here, &deploy.join("base")).display());
    if let Some(ns) = namespace {
        k.push_str(&format!("namespace: {ns}\n"));
    }
    if !components.is_empty() {
        k.push_str("components:\n");
        for c in components {
            k.push_str(&format!("  - {}\n", relative(&here, &deploy.join("components").join(c)).display()));
        }
    }
    std::fs::write(here.join("kustomization.yaml"), k).map_err(|e| e.to_string())?;
    kustomize(&here)
}
