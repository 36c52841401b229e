//! Upgrading a running operator: the previous build (whose shadows used
//! camelCase field names) rolls out an update; mid-rollout the CRD, then the
//! leader and the authproxy, then every agent are replaced by the current
//! build (snake_case, the original operator's names), and the rollout
//! completes with nothing failed and the invariant monitor clean.
//!
//! Its own test binary: on a real API server the CRDs are shared by every
//! test running there, so this one must run alone (cargo runs test binaries
//! one after another). The previous build is built once from the
//! repository's history (`tests::harness::previous`; minutes the first time).

use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject};
use model::ShadowState;
use tests::harness::previous::previous_build;
use tests::harness::{Fleet, FleetOptions, wait_for};

const T: Duration = Duration::from_secs(180);

/// The shadows as stored, whatever their field names (`name`: the object's).
async fn raw_shadows(fleet: &Fleet) -> Vec<serde_json::Value> {
    let ar = ApiResource {
        group: "brupop.bottlerocket.aws".into(),
        version: "v2".into(),
        api_version: "brupop.bottlerocket.aws/v2".into(),
        kind: "BottlerocketShadow".into(),
        plural: "bottlerocketshadows".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(fleet.client().clone(), &fleet.ns, &ar);
    api.list(&Default::default()).await.map(|l| l.items.into_iter().map(|o| o.data).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_from_the_camel_case_build_mid_rollout() {
    let previous = tokio::task::spawn_blocking(previous_build).await.unwrap().unwrap();
    // The current build too, before the rollout: the swap itself then takes
    // moments, as a manifest's rollout does.
    tokio::task::spawn_blocking(tests::harness::bins::binaries).await.unwrap();
    let opts = FleetOptions {
        nodes: 4,
        slots: 2,
        binaries: Some(previous.binaries.clone()),
        crds_yaml: Some(previous.crds_yaml.clone()),
        ..Default::default()
    };
    let fleet = Fleet::start("upgrade", opts).await.unwrap();
    wait_for("every agent of the previous build to report", T, || async {
        let shadows = raw_shadows(&fleet).await;
        let reported = shadows.iter().filter(|s| s["status"]["currentState"].is_string()).count();
        if reported == 4 { Ok(()) } else { Err(format!("{shadows:?}")) }
    })
    .await;
    fleet.hosts.publish("1.21.0");
    // Mid-rollout: a node walking, under the previous build's names.
    let walking = wait_for("a node of the previous build to be mid-walk", T, || async {
        let shadows = raw_shadows(&fleet).await;
        let mid = shadows.iter().find(|s| {
            matches!(s["status"]["currentState"].as_str(), Some("StagedAndPerformedUpdate" | "RebootedIntoUpdate"))
        });
        match mid {
            Some(s) => Ok(format!("{} ({})", s["name"].as_str().unwrap_or("?"), s["status"]["currentState"])),
            None => Err(format!("{shadows:?}")),
        }
    })
    .await;
    eprintln!("upgrading while {walking} is mid-walk");
    fleet.upgrade().await.unwrap();
    // The stored shadows now read under the original operator's names.
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    let shadows = raw_shadows(&fleet).await;
    for s in &shadows {
        assert!(s["status"]["current_state"].is_string(), "snake_case after the upgrade: {s}");
        assert!(s["status"].get("currentState").is_none(), "no camelCase field left: {s}");
        assert!(s["spec"]["state_transition_timestamp"].is_string(), "the new leader wrote the spec: {s}");
    }
    let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
    assert!(p.recent_failures.is_empty(), "nothing failed across the upgrade: {:?}", p.recent_failures);
    for n in &fleet.nodes {
        assert!(!fleet.cordoned(n).await, "{n} uncordoned");
        assert_eq!(fleet.hosts.host(n).unwrap().os_version(), "1.21.0");
    }
    fleet.monitor.assert_clean();
    fleet.stop().await;
}
