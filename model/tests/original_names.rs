#![allow(clippy::unwrap_used)]
//! The BottlerocketShadow serves the original operator's field names
//! (`brupop.bottlerocket.aws/v2`, its `crd-v2` types: snake_case, no
//! rename), so jsonpath scripts, kube-state-metrics configurations and
//! dashboards keyed on them keep working.
//!
//! - A shadow the original wrote (`fixtures/original-shadow-v2.json`) reads
//!   with the same meaning for every shared field.
//! - Every shared field of a shadow this operator writes has the original's
//!   name, and this operator's own fields are named in the same style.

use jiff::Timestamp;
use model::shadow::Failure;
use model::{BottlerocketShadow, BottlerocketShadowSpec, BottlerocketShadowStatus, FailureReason, ShadowState};
use serde_json::Value;

fn original() -> Value {
    serde_json::from_str(include_str!("fixtures/original-shadow-v2.json")).unwrap()
}

#[test]
fn a_shadow_written_by_the_original_operator_reads_with_the_same_meaning() {
    let brs: BottlerocketShadow = serde_json::from_value(original()).unwrap();
    assert_eq!(brs.spec.state, ShadowState::StagedAndPerformedUpdate);
    assert_eq!(brs.spec.version.as_deref(), Some("1.21.0"));
    let t: Timestamp = "2026-11-20T09:14:03.512345Z".parse().unwrap();
    assert_eq!(brs.spec.state_transition_timestamp.map(|m| m.0), Some(t));
    let st = brs.status.unwrap();
    assert_eq!(st.current_version, "1.20.0");
    assert_eq!(st.target_version, "1.21.0");
    assert_eq!(st.offered_version(), Some("1.21.0"), "target differs from current: an update is offered");
    assert_eq!(st.current_state, ShadowState::Idle);
    assert_eq!(st.crash_count, 2);
    let failed: Timestamp = "2026-11-19T22:01:44Z".parse().unwrap();
    assert_eq!(st.state_transition_failure_timestamp.map(|t| t.0), Some(failed));
}

#[test]
fn an_up_to_date_node_reads_as_the_original_writes_it() {
    // The original sets target_version to the running version when nothing is offered.
    let mut v = original();
    v["status"]["target_version"] = "1.20.0".into();
    let brs: BottlerocketShadow = serde_json::from_value(v).unwrap();
    assert_eq!(brs.status.unwrap().offered_version(), None);
}

#[test]
fn every_shared_field_of_a_shadow_we_write_has_the_originals_name() {
    let at = |s: &str| s.parse::<Timestamp>().unwrap();
    let mut brs = BottlerocketShadow::new(
        "brs-node-1",
        BottlerocketShadowSpec {
            state: ShadowState::StagedAndPerformedUpdate,
            state_transition_timestamp: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(at(
                "2026-11-27T10:00:00Z",
            ))),
            version: Some("1.21.0".into()),
            slot: Some("brupop-slot-0".into()),
            acknowledged_failure: Some(1),
            walk: Some(model::walk::WalkSpec::default()),
        },
    );
    brs.status = Some(BottlerocketShadowStatus {
        current_version: "1.20.0".into(),
        target_version: "1.21.0".into(),
        current_state: ShadowState::ErrorReset,
        crash_count: 1,
        state_transition_failure_timestamp: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(
            "2026-11-27T10:05:00Z",
        ))),
        state_transition_timestamp: None,
        slot_requested_at: None,
        last_failure: Some(Failure {
            id: 1,
            reason: FailureReason::PrepareFailed,
            message: "m".into(),
            time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at("2026-11-27T10:05:00Z")),
            state: ShadowState::StagedAndPerformedUpdate,
        }),
        reboot_pending: Some(model::shadow::RebootPending {
            boot_id: "b".into(),
            since: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at("2026-11-27T10:05:00Z")),
        }),
        pods_before_drain: Some(vec![model::walk::RecordedPod {
            namespace: "ns".into(),
            name: "p".into(),
            daemon_set: Some("ds".into()),
            stays: true,
        }]),
        conditions: vec![],
    });
    let v = serde_json::to_value(&brs).unwrap();
    let original = original();
    // Every field the original has is there, under the same name and JSON type.
    for part in ["spec", "status"] {
        for (k, ov) in original[part].as_object().unwrap() {
            let ours = &v[part][k];
            assert!(!ours.is_null(), "{part}.{k} is missing from what we write: {}", v[part]);
            assert_eq!(
                std::mem::discriminant(ours),
                std::mem::discriminant(ov),
                "{part}.{k}: ours {ours}, the original's {ov}"
            );
        }
    }
    // Our own fields are named in the same style.
    for part in ["spec", "status"] {
        for k in v[part].as_object().unwrap().keys() {
            assert!(k.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{part}.{k} is not snake_case");
        }
    }
    for field in ["last_failure", "reboot_pending"] {
        for k in v["status"][field].as_object().unwrap().keys() {
            assert!(k.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "status.{field}.{k}");
        }
    }
}

#[test]
fn the_crd_schema_and_columns_use_the_originals_names() {
    let crd = serde_json::to_value(&model::crds()[0]).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
    for (part, fields) in [
        ("spec", &["state", "state_transition_timestamp", "version"][..]),
        (
            "status",
            &[
                "current_version",
                "target_version",
                "current_state",
                "crash_count",
                "state_transition_failure_timestamp",
            ][..],
        ),
    ] {
        for f in fields {
            assert!(schema[part]["properties"][f].is_object(), "{part}.{f} in the CRD schema");
        }
    }
    let columns = crd["spec"]["versions"][0]["additionalPrinterColumns"].as_array().unwrap();
    let path = |name: &str| columns.iter().find(|c| c["name"] == name).map(|c| c["jsonPath"].clone());
    assert_eq!(path("State"), Some(".status.current_state".into()));
    assert_eq!(path("Version"), Some(".status.current_version".into()));
    assert_eq!(path("Target State"), Some(".spec.state".into()));
    assert_eq!(path("Target Version"), Some(".spec.version".into()));
    assert_eq!(path("Crash Count"), Some(".status.crash_count".into()));
}
