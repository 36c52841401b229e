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
