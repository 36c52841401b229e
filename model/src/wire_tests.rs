//! Tests of the agent ↔ authproxy wire types.

use super::*;
use serde::de::DeserializeOwned;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
    let json = serde_json::to_string(v).unwrap();
    let back: T = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, v, "{json}");
}

#[test]
fn requests_and_answers_round_trip() {
    round_trip(&StatusReport {
        state: ShadowState::ErrorReset,
        current_version: "1.20.0".into(),
        target_version: Some("1.21.0".into()),
        failure: Some(FailureReport { id: 3, reason: FailureReason::RolledBack, message: "booted 1.20.0".into() }),
        reboot_pending_boot_id: Some("0c4f-boot".into()),
        pods_before_drain: None,
    });
    round_trip(&RenewSlot { slot: "brupop-slot-1".into(), duration_seconds: 90 });
    round_trip(&ReleaseSlot { slot: "brupop-slot-1".into() });
    round_trip(&Released { released: true });
    round_trip(&CordonReply { unschedulable: true, cordoned_by_us: true, changed: true, ..Default::default() });
    round_trip(&SlotReply {
        slot: "brupop-slot-0".into(),
        resource_version: Some("7".into()),
        holder: Some("node-1".into()),
        expires_at: Some("2026-11-27T10:00:00.5Z".parse().unwrap()),
        lease_duration_seconds: Some(60),
    });
    round_trip(&DrainReport {
        pods: vec![
            PodResult { namespace: "a".into(), name: "p".into(), outcome: PodOutcome::Evicted },
            PodResult {
                namespace: "a".into(),
                name: "q".into(),
                outcome: PodOutcome::Blocked { message: "pdb".into() },
            },
            PodResult {
                namespace: "a".into(),
                name: "r".into(),
                outcome: PodOutcome::Failed { code: 500, message: "x".into() },
            },
        ],
        remaining: 2,
        skipped: 1,
    });
    round_trip(&ApiError { code: 409, reason: "NotHolder".into(), message: "m".into() });
}

#[test]
fn drain_report_json_is_flat_per_pod() {
    let r =
        PodResult { namespace: "ns".into(), name: "p".into(), outcome: PodOutcome::Blocked { message: "m".into() } };
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        serde_json::json!({"namespace": "ns", "name": "p", "outcome": "blocked", "message": "m"})
    );
}

#[test]
fn unknown_request_fields_are_refused_with_the_field_name() {
    let err =
        serde_json::from_str::<RenewSlot>(r#"{"slot":"brupop-slot-0","durationSeconds":5,"holder":"x"}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `holder`"), "{err}");
    let err = serde_json::from_str::<StatusReport>(r#"{"state":"Idle","currentVersion":"1.0.0","crashCount":0}"#)
        .unwrap_err();
    assert!(err.to_string().contains("unknown field `crashCount`"), "{err}");
}

#[test]
fn answers_tolerate_fields_added_later() {
    let v: Released = serde_json::from_str(r#"{"released":true,"newField":1}"#).unwrap();
    assert!(v.released);
}

#[test]
fn status_report_validation() {
    let ok = StatusReport {
        state: ShadowState::Idle,
        current_version: "1.20.0".into(),
        target_version: None,
        failure: None,
        reboot_pending_boot_id: None,
        pods_before_drain: None,
    };
    assert_eq!(ok.validate(), Ok(()));
    let pod = |ns: &str, name: &str| crate::walk::RecordedPod {
        namespace: ns.into(),
        name: name.into(),
        daemon_set: None,
        stays: false,
    };
    let staged = StatusReport { state: ShadowState::StagedAndPerformedUpdate, ..ok.clone() };
    let record = StatusReport { pods_before_drain: Some(vec![pod("default", "web-0")]), ..staged.clone() };
    assert_eq!(record.validate(), Ok(()));
    let record_when_idle = StatusReport { pods_before_drain: Some(vec![]), ..ok.clone() };
    assert!(matches!(record_when_idle.validate(), Err(InvalidRequest::RecordedPods(_))));
    let bad_name = StatusReport { pods_before_drain: Some(vec![pod("default", "../x")]), ..staged.clone() };
    assert!(matches!(bad_name.validate(), Err(InvalidRequest::RecordedPods(_))));
    let flood = vec![pod("a", "p"); crate::walk::RECORDED_PODS_MAX + 1];
    let flood = StatusReport { pods_before_drain: Some(flood), ..staged };
    assert!(matches!(flood.validate(), Err(InvalidRequest::RecordedPods(_))));
    let pending_without_failure = StatusReport { reboot_pending_boot_id: Some("b".into()), ..ok.clone() };
    assert_eq!(pending_without_failure.validate(), Err(InvalidRequest::RebootPending));
    let bad_version = StatusReport { current_version: "latest; rm -rf".into(), ..ok.clone() };
    assert!(matches!(bad_version.validate(), Err(InvalidRequest::Version { .. })));
    let error_without_failure = StatusReport { state: ShadowState::ErrorReset, ..ok.clone() };
    assert_eq!(error_without_failure.validate(), Err(InvalidRequest::FailureWithoutErrorReset));
    let failure =
        FailureReport { id: 1, reason: FailureReason::PrepareFailed, message: "x".repeat(MAX_MESSAGE_LEN + 1) };
    let long = StatusReport { state: ShadowState::ErrorReset, failure: Some(failure), ..ok };
    assert_eq!(long.validate(), Err(InvalidRequest::MessageTooLong { len: MAX_MESSAGE_LEN + 1 }));
}

#[test]
fn slot_requests_are_validated() {
    assert!(RenewSlot { slot: "brupop-slot-0".into(), duration_seconds: 30 }.validate().is_ok());
    assert!(RenewSlot { slot: "brupop-leader".into(), duration_seconds: 30 }.validate().is_err());
    assert!(RenewSlot { slot: "brupop-slot-0".into(), duration_seconds: 0 }.validate().is_err());
    assert!(ReleaseSlot { slot: "kube-scheduler".into() }.validate().is_err());
}

#[test]
fn endpoint_paths_parse_back() {
    for e in Endpoint::ALL {
        let p = e.path("node-1.example");
        assert_eq!(Endpoint::parse(&p), Some(("node-1.example", e)), "{p}");
    }
    assert_eq!(Endpoint::parse("/v1/nodes//status"), None);
    assert_eq!(Endpoint::parse("/v1/nodes/n/reboot"), None);
    assert_eq!(Endpoint::parse("/v2/nodes/n/status"), None);
}
