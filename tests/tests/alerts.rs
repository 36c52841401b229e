//! The shipped alerts (the PrometheusRule in deploy/base/70-monitoring.yaml)
//! checked by Prometheus's own `promtool`: the rules load (`check rules`),
//! and the unit tests in tests/fixtures/alerts prove that the error-rate,
//! halted, stopped, slot-held-too-long and reboot-pending alerts fire when
//! they should and stay silent when they should not (`test rules`).
//!
//! `promtool` comes with the Debian package `prometheus` (`.ci/run`
//! installs it); without it the tests skip loudly, except in CI.

use std::path::{Path, PathBuf};
use std::process::Command;

use tests::deploy::{deploy_dir, documents};
use tests::harness::prometheus::tool;

/// The alerts the unit tests must cover.
const COVERED: [&str; 5] = [
    "BrupopUpdateErrorRateHigh",
    "BrupopGrantsHalted",
    "BrupopRolloutStopped",
    "BrupopSlotHeldTooLong",
    "BrupopRebootPending",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/alerts")
}

/// The PrometheusRule's `spec.groups`, as a Prometheus rules file (JSON is YAML).
fn shipped_rules() -> serde_json::Value {
    let text = std::fs::read_to_string(deploy_dir().join("base/70-monitoring.yaml")).unwrap();
    let docs = documents(&text).unwrap();
    let rule = docs.iter().find(|d| d["kind"] == "PrometheusRule").expect("a PrometheusRule in 70-monitoring.yaml");
    serde_json::json!({ "groups": rule["spec"]["groups"] })
}

/// A directory holding `rules.yaml` (the shipped rules) and the unit-test files beside it.
fn workdir() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::Builder::new().prefix("brupop-alerts-").tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), serde_json::to_string_pretty(&shipped_rules()).unwrap()).unwrap();
    let mut tests = Vec::new();
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let copy = dir.path().join(path.file_name().unwrap());
            std::fs::copy(&path, &copy).unwrap();
            tests.push(copy);
        }
    }
    tests.sort();
    (dir, tests)
}

fn run(promtool: &Path, args: &[&str], dir: &Path) -> String {
    let out = Command::new(promtool).args(args).current_dir(dir).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {}:\n{text}", args.join(" "));
    text
}

#[test]
fn the_shipped_alert_rules_load_in_prometheus() {
    let Some(promtool) = tool("promtool", "the_shipped_alert_rules_load_in_prometheus") else { return };
    let (dir, _) = workdir();
    let rules = shipped_rules();
    let count =
        rules["groups"].as_array().unwrap().iter().map(|g| g["rules"].as_array().map_or(0, Vec::len)).sum::<usize>();
    let text = run(&promtool, &["check", "rules", "rules.yaml"], dir.path());
    assert!(text.contains(&format!("SUCCESS: {count} rules found")), "{text}");
}

#[test]
fn the_shipped_alerts_fire_when_they_should_and_stay_silent_otherwise() {
    let Some(promtool) = tool("promtool", "the_shipped_alerts_fire_when_they_should_and_stay_silent_otherwise") else {
        return;
    };
    let (dir, tests) = workdir();
    assert!(!tests.is_empty(), "no unit tests in {}", fixtures().display());
    // Every alert named here has a unit test, and every one tested ships.
    let shipped: Vec<String> = shipped_rules()["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect();
    let tested: String = tests.iter().map(|t| std::fs::read_to_string(t).unwrap()).collect();
    for alert in COVERED {
        assert!(shipped.iter().any(|s| s == alert), "{alert} is not shipped: {shipped:?}");
        let fires = tested.contains(&format!("alertname: {alert}\n        exp_alerts:\n          - "));
        let silent = tested.contains(&format!("alertname: {alert}\n        exp_alerts: []"));
        assert!(fires && silent, "{alert} needs a test that fires ({fires}) and one that stays silent ({silent})");
    }
    let names: Vec<String> = tests.iter().map(|t| t.file_name().unwrap().to_string_lossy().into_owned()).collect();
    let mut args = vec!["test", "rules"];
    args.extend(names.iter().map(String::as_str));
    let text = run(&promtool, &args, dir.path());
    assert_eq!(text.matches("SUCCESS").count(), tests.len(), "{text}");
}
