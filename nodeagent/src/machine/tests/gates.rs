//! The gates of the walk: pods that must not be disrupted, the drain's
//! load-balancer wait and budget override, reboot hooks, and the health
//! gate after the reboot.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use model::{FailureReason, ShadowState};

use super::*;

// === Health gate ===

fn seen(name: &str, ready: bool) -> SeenPod {
    SeenPod { namespace: "ns".into(), name: name.into(), ready, ..SeenPod::default() }
}

fn daemon(name: &str, ready: bool) -> SeenPod {
    SeenPod { daemon_set: Some("logs".into()), ..seen(name, ready) }
}

/// Monitoring since t=990, having recorded `logs-a` (a DaemonSet's pod) before the drain.
fn monitoring() -> World {
    let mut w = World::idle().granted().state(ShadowState::MonitoringUpdate).booted_new();
    w.status().state_transition_timestamp = Some(MicroTime(at(990)));
    w.status().pods_before_drain = Some(record(&[daemon("logs-a", true)], "", ""));
    w.now = at(995);
    w
}

#[test]
fn before_the_cordon_the_walk_records_the_pods_ready_on_the_node() {
    let mut w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated();
    w.status().pods_before_drain = None;
    w.mem.pods_listed = None;
    assert_eq!(w.decide(), Step::RecordPods);
    let pods = vec![daemon("logs-a", true), seen("web-0", true), seen("broken", false)];
    learn(&mut w.mem, &Step::RecordPods, &Outcome::Pods(pods), &w.cfg, at(1000));
    match w.decide() {
        Step::Report(r) => {
            assert_eq!(r.state, ShadowState::StagedAndPerformedUpdate);
            let names: Vec<_> = r.pods_before_drain.unwrap().into_iter().map(|p| (p.name, p.stays)).collect();
            assert_eq!(names, vec![("logs-a".to_owned(), true), ("web-0".to_owned(), false)]);
        }
        other => panic!("{other:?}"),
    }
    // Once recorded, the cordon.
    w.status().pods_before_drain = Some(vec![]);
    assert!(matches!(w.decide(), Step::Cordon { .. }));
    // An agent restarted before the cordon lists the pods again (one may
    // not be disrupted now), but records nothing new.
    w.mem.pods_listed = None;
    assert_eq!(w.decide(), Step::RecordPods);
}

/// Staged at t=980, activated: about to cordon.
fn about_to_cordon() -> World {
    let mut w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated();
    w.status().state_transition_timestamp = Some(MicroTime(at(980)));
    w.status().pods_before_drain = None;
    w.mem.pods_listed = None;
    w
}

fn do_not_disrupt(name: &str) -> SeenPod {
    SeenPod { do_not_disrupt: true, ..seen(name, true) }
}

#[test]
fn a_pod_that_must_not_be_disrupted_holds_the_walk_before_the_cordon() {
    let mut w = about_to_cordon();
    learn(&mut w.mem, &Step::RecordPods, &Outcome::Pods(vec![do_not_disrupt("batch-0")]), &w.cfg, at(1000));
    assert_eq!(
        w.decide(),
        Step::Wait { until: Some(at(1005)), why: "waiting for pods that must not be disrupted: ns/batch-0".into() }
    );
    w.now = at(1005);
    assert_eq!(w.decide(), Step::RecordPods, "it looks again");
    // The pod finished: record, then cordon.
    learn(&mut w.mem, &Step::RecordPods, &Outcome::Pods(vec![seen("web-0", true)]), &w.cfg, at(1005));
    assert!(matches!(w.decide(), Step::Report(r) if r.pods_before_drain.is_some()));
    w.status().pods_before_drain = Some(vec![]);
    assert!(matches!(w.decide(), Step::Cordon { .. }));
}

#[test]
fn a_pod_that_must_not_be_disrupted_fails_the_walk_node_only_at_its_deadline() {
    let mut w = about_to_cordon();
    // Ten minutes after the update was staged (t=980).
    w.later(at(1580));
    learn(&mut w.mem, &Step::RecordPods, &Outcome::Pods(vec![do_not_disrupt("batch-0")]), &w.cfg, at(1580));
    let step = w.decide();
    assert!(is_fail(&step, FailureReason::DoNotDisrupt), "{step:?}");
    assert!(matches!(&step, Step::Fail { message, .. } if message.contains("ns/batch-0")), "{step:?}");
    assert!(!FailureReason::DoNotDisrupt.halts_fleet());
    // A pod annotated once the node is cordoned is not waited for (nothing new lands there).
    let mut c = about_to_cordon().cordoned();
    c.status().pods_before_drain = Some(vec![]);
    learn(&mut c.mem, &Step::RecordPods, &Outcome::Pods(vec![do_not_disrupt("b")]), &c.cfg, at(1000));
    assert_eq!(c.decide(), drain_step());
}

#[test]
fn where_the_policy_opts_in_pods_a_budget_keeps_are_deleted_after_its_time() {
    let mut w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated().cordoned();
    w.cfg.delete_blocked_pods_after = Some(Duration::from_secs(120));
    // Cordoned at 980: rounds before 1100 evict, later ones may delete.
    w.mem.last_drain = Some((at(1000), 1, 1));
    w.mem.drain_rounds = 20;
    w.later(at(1099));
    assert!(matches!(w.decide(), Step::Drain { delete_blocked: false, .. }));
    w.later(at(1100));
    assert!(matches!(w.decide(), Step::Drain { delete_blocked: true, .. }));
    // Without the opt-in, never.
    w.cfg.delete_blocked_pods_after = None;
    assert!(matches!(w.decide(), Step::Drain { delete_blocked: false, .. }));
}

#[test]
fn after_the_load_balancer_exclusion_the_drain_waits_its_time() {
    let mut w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated().cordoned();
    w.cfg.load_balancer_wait = Duration::from_secs(30);
    // Cordoned at 980: the first eviction at 1010, the drain deadline 600 s after that.
    assert_eq!(
        w.decide(),
        Step::Wait { until: Some(at(1010)), why: "excluded from load balancers; waiting 30s before draining".into() }
    );
    w.later(at(1010));
    assert_eq!(w.decide(), drain_step());
    w.mem.last_drain = Some((at(1010), 1, 0));
    w.later(at(1600));
    assert!(matches!(w.decide(), Step::Drain { .. }), "the deadline is 1610");
    w.later(at(1610));
    assert!(is_fail(&w.decide(), FailureReason::DrainTimeout));
    // Without the exclusion there is nothing to wait for.
    let mut n = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated().cordoned();
    n.cfg.load_balancer_wait = Duration::from_secs(30);
    n.cfg.exclude_from_load_balancers = false;
    assert_eq!(n.decide(), drain_step());
}

// === Reboot hooks ===

fn hooks() -> model::walk::HooksSpec {
    model::walk::HooksSpec {
        before_drain: Some(model::walk::HookSpec {
            labels: [("storage/maintenance".to_owned(), "true".to_owned())].into(),
            wait_for_annotation: Some("storage/noout".into()),
            wait_for_value: Some("set".into()),
            timeout: Some("5m".into()),
            ..Default::default()
        }),
        after_reboot: Some(model::walk::HookSpec {
            labels: [("storage/rebooted".to_owned(), "true".to_owned())].into(),
            ..Default::default()
        }),
    }
}

fn with_hooks(mut w: World) -> World {
    w.shadow.as_mut().unwrap().spec.walk = Some(model::walk::WalkSpec { hooks: Some(hooks()), ..Default::default() });
    w
}

fn marks(phase: model::walk::HookPhase, since: i64) -> Option<model::hooks::Marks> {
    Some(model::hooks::Marks { phase: Some(phase), since: Some(at(since)), ..Default::default() })
}

#[test]
fn the_before_drain_hook_runs_before_the_cordon_and_waits_for_its_confirmation() {
    use model::walk::HookPhase;
    let mut w = with_hooks(World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated());
    assert_eq!(
        w.decide(),
        Step::Hook {
            slot: "brupop-slot-0".into(),
            phase: HookPhase::BeforeDrain,
            min_remaining: Duration::from_secs(30),
            clears: Some("storage/noout".into())
        }
    );
    w.node.hooks = marks(HookPhase::BeforeDrain, 1000);
    assert_eq!(
        w.decide(),
        Step::Wait {
            until: Some(at(1030)),
            why: "BeforeDrain hook: waiting for the annotation storage/noout (\"set\")".into()
        },
        "the wait never outlasts the renewal; its deadline is 1300"
    );
    w.node.annotations.insert("storage/noout".into(), "not yet".into());
    assert!(matches!(w.decide(), Step::Wait { .. }), "another value is not the confirmation");
    w.node.annotations.insert("storage/noout".into(), "set".into());
    assert!(matches!(w.decide(), Step::Cordon { .. }));
    // Unconfirmed at the deadline: a node-only failure, and the undo clears the marks.
    w.node.annotations.clear();
    w.later(at(1300));
    let step = w.decide();
    assert!(is_fail(&step, FailureReason::HookTimeout), "{step:?}");
    assert!(!FailureReason::HookTimeout.halts_fleet());
}

#[test]
fn the_after_reboot_hook_runs_before_the_uncordon_and_the_marks_go_when_the_walk_ends() {
    use model::walk::HookPhase;
    let mut w = with_hooks(World::idle().granted().state(ShadowState::RebootedIntoUpdate).cordoned().booted_new());
    w.node.hooks = marks(HookPhase::BeforeDrain, 990);
    assert!(matches!(w.decide(), Step::Hook { phase: HookPhase::AfterReboot, clears: None, .. }));
    w.node.hooks = marks(HookPhase::AfterReboot, 1000);
    assert_eq!(w.decide(), Step::Uncordon, "no confirmation to wait for");
    // At the end of a healthy walk: the marks go, then the Idle report.
    let mut m = with_hooks(monitoring());
    m.node.hooks = marks(HookPhase::AfterReboot, 1000);
    m.mem.health = Some((at(995), vec![daemon("logs-a", true)]));
    assert_eq!(m.decide(), Step::ClearHooks);
    m.node.hooks = None;
    assert!(matches!(m.decide(), Step::Report(r) if r.state == ShadowState::Idle));
    // Marks left by an interrupted walk are cleared when the node rests.
    let mut r = World::idle();
    r.node.hooks = marks(HookPhase::BeforeDrain, 900);
    assert_eq!(r.decide(), Step::ClearHooks);
}

#[test]
fn monitoring_checks_health_at_once() {
    let w = monitoring();
    assert_eq!(w.decide(), Step::CheckHealth);
}

#[test]
fn a_healthy_node_is_watched_for_the_minimum_then_ends_its_walk() {
    let mut w = monitoring();
    w.now = at(992);
    w.mem.health = Some((at(992), vec![daemon("logs-a", true)]));
    assert_eq!(
        w.decide(),
        Step::Wait { until: Some(at(995)), why: "the updated node is healthy; watching it a little longer".into() }
    );
    w.now = at(995);
    assert_eq!(w.decide(), Step::CheckHealth, "healthy at the end of the minimum too");
    w.mem.health = Some((at(995), vec![daemon("logs-a", true)]));
    assert!(matches!(w.decide(), Step::Report(r) if r.state == ShadowState::Idle && r.current_version == "1.21.0"));
}

#[test]
fn a_pod_scheduled_after_the_uncordon_is_not_judged() {
    let mut w = monitoring();
    let pods = vec![daemon("logs-a", true), seen("web-new", false), seen("batch-new", false)];
    w.mem.health = Some((at(995), pods));
    assert!(matches!(w.decide(), Step::Report(r) if r.state == ShadowState::Idle));
}

#[test]
fn a_recorded_pod_not_ready_is_waited_for_then_fails_the_walk() {
    let mut w = monitoring();
    w.mem.health = Some((at(995), vec![daemon("logs-b", false)]));
    w.mem.health_checks = 1;
    assert_eq!(
        w.decide(),
        Step::Wait {
            until: Some(at(995).checked_add(jiff::SignedDuration::from_millis(200)).unwrap()),
            why: "waiting for the updated node to be healthy: ns/logs-b (replacing ns/logs-a) not Ready".into()
        }
    );
    // Pauses grow to the poll interval.
    w.mem.health_checks = 20;
    w.now = at(996);
    assert!(matches!(w.decide(), Step::Wait { until: Some(t), .. } if t == at(1000)));
    // At the deadline (300 s after monitoring began) the walk fails, naming the pod.
    w.later(at(1290));
    w.mem.health = Some((at(1290), vec![daemon("logs-b", false)]));
    match w.decide() {
        Step::Fail { reason, message } => {
            assert_eq!(reason, FailureReason::HealthCheckFailed);
            assert!(message.contains("ns/logs-b (replacing ns/logs-a) not Ready"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_daemonset_pod_that_never_comes_back_fails_the_walk_at_the_deadline() {
    let mut w = monitoring();
    w.later(at(1290));
    w.mem.health = Some((at(1290), vec![]));
    let step = w.decide();
    assert!(is_fail(&step, FailureReason::HealthCheckFailed), "{step:?}");
    assert!(matches!(&step, Step::Fail { message, .. } if message.contains("not back on the node")), "{step:?}");
}

#[test]
fn a_node_not_ready_after_the_reboot_fails_the_health_check_at_the_deadline() {
    let mut w = monitoring();
    w.node.ready = false;
    w.mem.health = Some((at(995), vec![daemon("logs-a", true)]));
    assert!(matches!(w.decide(), Step::Wait { .. }));
    w.later(at(1290));
    w.mem.health = Some((at(1290), vec![daemon("logs-a", true)]));
    let step = w.decide();
    assert!(
        matches!(&step, Step::Fail { reason: FailureReason::HealthCheckFailed, message } if message.contains("the node is not Ready")),
        "{step:?}"
    );
}

#[test]
fn a_health_check_from_before_monitoring_began_is_not_trusted() {
    let mut w = monitoring();
    w.mem.health = Some((at(900), vec![daemon("logs-a", true)]));
    assert_eq!(w.decide(), Step::CheckHealth);
}

#[test]
fn the_walk_follows_the_settings_granted_with_its_slot() {
    let mut w = monitoring();
    w.shadow.as_mut().unwrap().spec.walk = Some(model::walk::WalkSpec {
        health: Some(model::walk::HealthSpec {
            timeout: Some("20s".into()),
            ignore_pod_selector: Some("app=logs".into()),
            ..Default::default()
        }),
        drain: Some(model::walk::DrainSpec {
            skip_pod_selector: Some("keep=yes".into()),
            grace_period_seconds: Some(7),
            ..Default::default()
        }),
        hooks: None,
    });
    // logs-b is not Ready and not ignored (no labels): the deadline is 20 s.
    w.now = at(1010);
    w.mem.health = Some((at(1010), vec![daemon("logs-b", false)]));
    assert!(is_fail(&w.decide(), FailureReason::HealthCheckFailed));
    // Labelled app=logs, it is ignored.
    let mut ignored = daemon("logs-b", false);
    ignored.labels.insert("app".into(), "logs".into());
    w.mem.health = Some((at(1010), vec![ignored]));
    assert!(matches!(w.decide(), Step::Report(r) if r.state == ShadowState::Idle));
    // The drain carries the granted selector and grace period to the authproxy.
    let mut d = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated().cordoned();
    d.shadow.as_mut().unwrap().spec.walk = w.shadow.as_ref().unwrap().spec.walk.clone();
    assert_eq!(
        d.decide(),
        Step::Drain {
            slot: "brupop-slot-0".into(),
            min_remaining: Duration::from_secs(30),
            skip_pod_selector: "keep=yes".into(),
            grace_period_seconds: Some(7),
            delete_blocked: false,
        }
    );
}
