//! The committed CRD YAML must be exactly what the code generates.

use std::path::PathBuf;

const REGENERATE: &str = "cargo run -p leader -- crd > deploy/base/crds.yaml";

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/base/crds.yaml")
}

#[test]
fn committed_crd_yaml_matches_the_code() {
    let generated = model::crds_yaml();
    let path = committed_path();
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; create it with `{REGENERATE}`", path.display()));
    if committed != generated {
        let first_diff = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        let line = |text: &str| text.lines().nth(first_diff).unwrap_or("<end of file>").to_owned();
        panic!(
            "deploy/base/crds.yaml is out of date with the CRD types in model/src.\n\
             First difference at line {}:\n  committed: {}\n  generated: {}\n\
             Regenerate it with: {REGENERATE}",
            first_diff + 1,
            line(&committed),
            line(&generated),
        );
    }
}

#[test]
fn generated_yaml_parses_back_into_the_same_crds() {
    let yaml = model::crds_yaml();
    let docs: Vec<&str> = yaml.split("\n---\n").skip(1).collect();
    assert_eq!(docs.len(), 2);
    for (doc, crd) in docs.iter().zip(model::crds()) {
        let parsed: serde_json::Value = serde_saphyr::from_str(doc).expect("valid YAML");
        assert_eq!(parsed, serde_json::to_value(&crd).unwrap());
    }
}

#[test]
fn shadow_crd_has_the_names_users_know() {
    let crd = &model::crds()[0];
    assert_eq!(crd.metadata.name.as_deref(), Some("bottlerocketshadows.brupop.bottlerocket.aws"));
    assert_eq!(crd.spec.names.short_names.as_deref(), Some(&["brs".to_owned()][..]));
    assert_eq!(crd.spec.scope, "Namespaced");
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v2");
    assert!(v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "status subresource");
    let columns: Vec<_> = v.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
    // The original operator's columns first, with its names; then ours.
    assert_eq!(
        columns,
        [
            "State",
            "Version",
            "Target State",
            "Target Version",
            "Offered",
            "Crash Count",
            "Slot",
            "Waiting",
            "Reason",
            "Age"
        ]
    );
}

#[test]
fn policy_crd_shows_phase_first() {
    let crd = &model::crds()[1];
    assert_eq!(crd.metadata.name.as_deref(), Some("updatepolicies.brupop.bottlerocket.aws"));
    let v = &crd.spec.versions[0];
    let columns: Vec<_> = v.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(columns[0], "Phase");
}
