//! The alert gate: no new grant while it fires or (by default) while
//! Prometheus cannot be asked; slots already held go on.

use model::alert_gate::{AlertGateState, OnUnreachable};

use super::*;

fn gate(on_unreachable: OnUnreachable) -> GateSettings {
    GateSettings {
        url: "http://prom:9090".into(),
        target: GateTarget::Alerts(vec!["NodeDown".into(), "DiskFull".into()]),
        poll_interval: Duration::from_secs(30),
        timeout: Duration::from_secs(10),
        on_unreachable,
    }
}

fn gated(on_unreachable: OnUnreachable) -> Settings {
    Settings { alert_gate: Some(gate(on_unreachable)), ..settings() }
}

/// Prometheus answered `answer` `ago` seconds before the world's now.
fn answered(w: &mut World, settings: &Settings, answer: GateAnswer, ago: i64) {
    let at = w.now.checked_sub(jiff::SignedDuration::from_secs(ago)).unwrap();
    w.gate = Some(GateObservation { gate: settings.alert_gate.clone().unwrap(), at, answer });
}

/// Three nodes waiting, one slot of three held by node-0 mid-walk.
fn world() -> World {
    let mut w = World::new(4);
    w.slots(3).granted(0, "node-0", ShadowState::StagedAndPerformedUpdate);
    w.waiting("node-1", 1).waiting("node-2", 2).waiting("node-3", 3);
    w
}

#[test]
fn a_firing_alert_blocks_new_grants_and_names_the_alert_while_held_slots_go_on() {
    let s = gated(OnUnreachable::Block);
    let mut w = world();
    answered(&mut w, &s, GateAnswer::Firing(vec!["NodeDown".into()]), 5);
    let plan = w.decide(&s);
    assert_eq!(plan.status.phase, Phase::Blocked);
    assert!(granted_nodes(&plan).is_empty());
    assert!(plan.status.message.contains("NodeDown"), "{}", plan.status.message);
    let g = plan.status.alert_gate.as_ref().unwrap();
    assert_eq!(
        (g.blocking, g.state, g.firing.as_slice()),
        (true, AlertGateState::Firing, &["NodeDown".to_owned()][..])
    );
    // The holder keeps its slot: nothing reclaimed, revoked or reset.
    assert!(
        !plan.actions.iter().any(|a| matches!(
            a,
            Action::Reclaim { .. } | Action::Revoke { .. } | Action::Free { .. } | Action::SetSpec { .. }
        )),
        "{:?}",
        plan.actions
    );
    assert_eq!((plan.status.slots_held, plan.status.nodes_waiting), (1, 3));
}

#[test]
fn a_cleared_gate_grants_again() {
    let s = gated(OnUnreachable::Block);
    let mut w = world();
    answered(&mut w, &s, GateAnswer::Clear, 5);
    let plan = w.decide(&s);
    assert_eq!(plan.status.phase, Phase::Running);
    assert_eq!(granted_nodes(&plan), pairs(&[("brupop-slot-1", "node-1"), ("brupop-slot-2", "node-2")]));
    let g = plan.status.alert_gate.as_ref().unwrap();
    assert_eq!((g.blocking, g.state), (false, AlertGateState::Clear));
    assert!(g.message.contains("NodeDown, DiskFull"), "{}", g.message);
}

#[test]
fn unreachable_prometheus_blocks_by_default_and_says_so() {
    let s = gated(OnUnreachable::Block);
    let mut w = world();
    answered(&mut w, &s, GateAnswer::Unreachable("connection refused".into()), 5);
    let plan = w.decide(&s);
    assert_eq!(plan.status.phase, Phase::Blocked);
    assert!(granted_nodes(&plan).is_empty());
    let msg = &plan.status.message;
    assert!(
        msg.contains("Prometheus unreachable: connection refused") && msg.contains("onUnreachable: Block"),
        "{msg}"
    );
    assert_eq!(plan.status.alert_gate.unwrap().state, AlertGateState::Unreachable);
}

#[test]
fn unreachable_prometheus_with_ignore_grants_and_the_status_says_it_is_ignored() {
    let s = gated(OnUnreachable::Ignore);
    let mut w = world();
    answered(&mut w, &s, GateAnswer::Unreachable("connection refused".into()), 5);
    let plan = w.decide(&s);
    assert_eq!(plan.status.phase, Phase::Running);
    assert_eq!(granted_nodes(&plan).len(), 2);
    let msg = &plan.status.message;
    assert!(msg.contains("Prometheus unreachable") && msg.contains("ignored (onUnreachable: Ignore)"), "{msg}");
    let g = plan.status.alert_gate.unwrap();
    assert_eq!((g.blocking, g.state), (false, AlertGateState::Unreachable));
    // A firing alert still blocks under Ignore.
    let mut w = world();
    answered(&mut w, &s, GateAnswer::Firing(vec!["DiskFull".into()]), 5);
    assert_eq!(w.decide(&s).status.phase, Phase::Blocked);
}

#[test]
fn a_stale_answer_counts_as_unreachable_and_the_pass_wakes_when_it_goes_stale() {
    let s = gated(OnUnreachable::Block);
    let stale_after = s.alert_gate.as_ref().unwrap().stale_after().as_secs() as i64; // 3 × 30s + 10s
    let mut w = world();
    answered(&mut w, &s, GateAnswer::Clear, stale_after - 1);
    let fresh = w.decide(&s);
    assert_eq!(fresh.status.phase, Phase::Running, "{}", fresh.status.message);
    let stale_at = w.now.checked_add(jiff::SignedDuration::from_secs(1)).unwrap();
    assert!(
        fresh
            .wake_at
            .is_some_and(|t| t > w.now && t <= stale_at.checked_add(jiff::SignedDuration::from_millis(1)).unwrap()),
        "wakes when the answer goes stale: {:?}",
        fresh.wake_at
    );
    answered(&mut w, &s, GateAnswer::Clear, stale_after + 1);
    let plan = w.decide(&s);
    assert_eq!(plan.status.phase, Phase::Blocked);
    assert!(granted_nodes(&plan).is_empty());
    assert!(plan.status.message.contains("Prometheus unreachable: no answer since"), "{}", plan.status.message);
    // Under Ignore a stale answer grants, and says so.
    let ignore = gated(OnUnreachable::Ignore);
    answered(&mut w, &ignore, GateAnswer::Firing(vec!["NodeDown".into()]), stale_after + 1);
    let plan = w.decide(&ignore);
    assert_eq!(plan.status.phase, Phase::Running, "a stale firing answer is no answer");
    assert!(plan.status.message.contains("ignored"), "{}", plan.status.message);
}

#[test]
fn no_answer_yet_or_an_answer_for_another_gate_counts_as_unreachable() {
    let s = gated(OnUnreachable::Block);
    let mut w = world();
    let plan = w.decide(&s);
    assert_eq!(plan.status.phase, Phase::Blocked);
    assert!(plan.status.message.contains("no answer yet from http://prom:9090"), "{}", plan.status.message);
    // A clear answer to the previous configuration says nothing about this one.
    let before = Settings {
        alert_gate: Some(GateSettings {
            target: GateTarget::Alerts(vec!["Other".into()]),
            ..gate(OnUnreachable::Block)
        }),
        ..settings()
    };
    answered(&mut w, &before, GateAnswer::Clear, 1);
    assert_eq!(w.decide(&s).status.phase, Phase::Blocked);
}

#[test]
fn without_a_gate_its_answer_is_ignored_and_the_status_has_no_gate() {
    let s = gated(OnUnreachable::Block);
    let mut w = world();
    answered(&mut w, &s, GateAnswer::Firing(vec!["NodeDown".into()]), 1);
    w.policy.alert_gate = Some(Default::default());
    let plan = w.decide(&settings());
    assert_eq!(plan.status.phase, Phase::Running);
    assert_eq!(plan.status.alert_gate, None, "a removed gate leaves the status");
}

#[test]
fn a_halt_or_a_pause_outranks_the_gate_but_the_gate_status_is_kept() {
    let s = Settings { paused: true, ..gated(OnUnreachable::Block) };
    let mut w = world();
    answered(&mut w, &s, GateAnswer::Firing(vec!["NodeDown".into()]), 1);
    let plan = w.decide(&s);
    assert_eq!(plan.status.phase, Phase::Paused);
    assert!(plan.status.alert_gate.unwrap().blocking);
}

#[test]
fn a_query_gate_names_the_series_it_returned() {
    let s = Settings {
        alert_gate: Some(GateSettings {
            target: GateTarget::Query("up{job=\"kube-apiserver\"} == 0".into()),
            ..gate(OnUnreachable::Block)
        }),
        ..settings()
    };
    let mut w = world();
    answered(&mut w, &s, GateAnswer::Firing(vec![r#"{job="kube-apiserver"}"#.into()]), 1);
    let plan = w.decide(&s);
    assert_eq!(plan.status.phase, Phase::Blocked);
    assert!(plan.status.message.contains(r#"the query returned {job="kube-apiserver"}"#), "{}", plan.status.message);
    answered(&mut w, &s, GateAnswer::Clear, 1);
    let plan = w.decide(&s);
    assert!(plan.status.alert_gate.unwrap().message.contains("no series"));
}
