//! The alert gate against a real Prometheus: a rollout waits while the
//! alert fires and completes once it clears; an unreachable Prometheus
//! blocks by default and `onUnreachable: Ignore` lets the rollout through.

use std::time::Duration;

use model::ShadowState;
use model::alert_gate::AlertGateState;
use model::policy::{Phase, UpdatePolicyStatus};
use tests::harness::process::free_port;
use tests::harness::prometheus::{self, ALARM_METRIC, Alarm, Prometheus};
use tests::harness::{Fleet, FleetOptions, metric, wait_for};

use super::{T, policy_events};

const ALERT: &str = "BrupopTestGate";

fn rules() -> String {
    format!(
        "groups:\n  - name: test\n    rules:\n      - alert: {ALERT}\n        expr: {ALARM_METRIC} == 1\n        for: 0s\n"
    )
}

async fn status(fleet: &Fleet) -> UpdatePolicyStatus {
    fleet.policy().await.and_then(|p| p.status).unwrap_or_default()
}

/// The leader's count of gate answers read as `result`.
async fn checks(fleet: &Fleet, result: &str) -> f64 {
    let m = fleet.leader_metrics(0).await;
    metric(&m, &format!("brupop_alert_gate_checks_total{{result=\"{result}\"}}")).unwrap_or(0.0)
}

/// While the gate blocks and every node waits, the gate answers `n` more
/// times `result` and nothing is granted: no Lease held, no update started.
async fn nothing_granted_over(fleet: &Fleet, result: &str, n: f64) {
    let from = checks(fleet, result).await;
    wait_for(&format!("{n} more {result} answers of the gate"), T, || async {
        let now = checks(fleet, result).await;
        if now >= from + n { Ok(()) } else { Err(format!("{now} (from {from})")) }
    })
    .await;
    let st = status(fleet).await;
    assert_eq!(st.phase, Phase::Blocked, "{st:?}");
    assert_eq!((st.slots_held, st.nodes_waiting), (0, fleet.nodes.len() as u32), "{st:?}");
    assert!(fleet.slots().await.iter().all(|(_, h)| h.is_none()), "no Lease held: {:?}", fleet.slots().await);
    let m = fleet.leader_metrics(0).await;
    assert_eq!(metric(&m, "brupop_update_started_total"), Some(0.0), "{m}");
    assert_eq!(metric(&m, "brupop_alert_gate_blocking"), Some(1.0), "{m}");
    assert_eq!(fleet.monitor.peaks().held, 0, "{:?}", fleet.monitor.peaks());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_alert_blocks_the_rollout_until_it_clears() {
    let test = "a_firing_alert_blocks_the_rollout_until_it_clears";
    let Some(binary) = prometheus::tool("prometheus", test) else { return };
    let alarm = Alarm::start().await.unwrap();
    alarm.set(true);
    let prom = Prometheus::start(&binary, alarm.addr(), &rules(), Duration::from_millis(200)).await.unwrap();
    wait_for("Prometheus to fire the test alert", T, || async {
        let firing = prom.firing().await?;
        if firing.iter().any(|a| a == ALERT) { Ok(()) } else { Err(format!("{firing:?}\n{}", prom.log_tail(10))) }
    })
    .await;
    let fleet = Fleet::start("alert-gate", FleetOptions { nodes: 3, slots: 2, ..Default::default() }).await.unwrap();
    fleet
        .patch_policy(serde_json::json!({"alertGate": {
            "prometheusUrl": prom.url(), "alerts": [ALERT], "pollInterval": "200ms", "timeout": "2s"
        }}))
        .await;
    wait_for("phase Blocked naming the alert", T, || async {
        let st = status(&fleet).await;
        if st.phase == Phase::Blocked && st.message.contains(ALERT) { Ok(()) } else { Err(format!("{st:?}")) }
    })
    .await;
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    wait_for("every node waiting while the alert fires", T, || async {
        let st = status(&fleet).await;
        if st.phase == Phase::Blocked && st.nodes_waiting == 3 { Ok(()) } else { Err(fleet.progress().await) }
    })
    .await;
    nothing_granted_over(&fleet, "firing", 5.0).await;
    let gate = status(&fleet).await.alert_gate.unwrap();
    assert_eq!((gate.state, gate.firing.as_slice()), (AlertGateState::Firing, &[ALERT.to_owned()][..]), "{gate:?}");

    alarm.set(false);
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    let st = status(&fleet).await;
    assert_eq!(st.phase, Phase::Running, "{st:?}");
    assert_eq!(st.alert_gate.map(|g| (g.blocking, g.state)), Some((false, AlertGateState::Clear)));
    let m = fleet.leader_metrics(0).await;
    assert_eq!(metric(&m, "brupop_update_started_total"), Some(3.0), "{m}");
    assert_eq!(metric(&m, "brupop_alert_gate_blocking"), Some(0.0), "{m}");
    let events = policy_events(&fleet).await;
    for reason in ["AlertGateBlocking", "AlertGateCleared"] {
        assert!(events.iter().any(|e| e == reason), "{reason} in {events:?}");
    }
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_prometheus_blocks_by_default_and_ignore_lets_the_rollout_through() {
    let fleet = Fleet::start("alert-gate-down", FleetOptions { nodes: 2, ..Default::default() }).await.unwrap();
    // Nothing listens there.
    let url = format!("http://127.0.0.1:{}", free_port());
    fleet
        .patch_policy(serde_json::json!({"alertGate": {
            "prometheusUrl": url, "alerts": [ALERT], "pollInterval": "200ms", "timeout": "1s"
        }}))
        .await;
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    wait_for("Blocked, saying Prometheus is unreachable, every node waiting", T, || async {
        let st = status(&fleet).await;
        let said = st.message.contains("Prometheus unreachable") && st.message.contains("onUnreachable: Block");
        if st.phase == Phase::Blocked && said && st.nodes_waiting == 2 { Ok(()) } else { Err(format!("{st:?}")) }
    })
    .await;
    nothing_granted_over(&fleet, "unreachable", 5.0).await;
    assert_eq!(status(&fleet).await.alert_gate.map(|g| g.state), Some(AlertGateState::Unreachable));

    fleet.patch_policy(serde_json::json!({"alertGate": {"onUnreachable": "Ignore"}})).await;
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    let st = status(&fleet).await;
    assert_eq!(st.phase, Phase::Running, "{st:?}");
    assert!(st.message.contains("ignored (onUnreachable: Ignore)"), "the status says so: {}", st.message);
    fleet.monitor.assert_clean();
    fleet.stop().await;
}
