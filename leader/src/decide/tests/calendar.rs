//! When grants may start and how many: pause, windows, blackouts, window
//! budgets, release age.

use std::time::Duration;

use model::parse::Budget;
use model::policy::Phase;

use super::*;

#[test]
fn pausing_stops_new_grants_but_keeps_holders() {
    let mut w = World::new(3);
    w.slots(2).granted(0, "node-0", ShadowState::StagedAndPerformedUpdate).waiting("node-1", 1);
    let plan = w.decide(&Settings { paused: true, ..settings() });
    assert_eq!(plan.status.phase, Phase::Paused);
    assert!(granted_nodes(&plan).is_empty());
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::Reclaim { .. } | Action::Free { .. } | Action::SetSpec { .. }))
    );
}

#[test]
fn outside_every_window_nothing_is_granted_and_the_next_start_is_shown() {
    let mut w = World::new(2);
    w.slots(1).waiting("node-0", 1);
    w.window = WindowState { open: false, next_start: Some(at(5000)), ..WindowState::ALWAYS };
    let plan = w.decide(&settings());
    assert_eq!(plan.status.phase, Phase::OutsideWindow);
    assert_eq!(plan.status.next_window_start, Some(Time(at(5000))));
    assert_eq!(plan.wake_at, Some(at(5000)));
    assert!(granted_nodes(&plan).is_empty());
}

#[test]
fn in_a_blackout_nothing_new_is_granted_and_the_status_says_until_when() {
    let mut w = World::new(3);
    w.slots(2).waiting("node-1", 2).waiting("node-2", 3);
    w.window =
        WindowState { open: false, next_start: Some(at(9000)), blackout_until: Some(at(9000)), ..WindowState::ALWAYS };
    let plan = w.decide(&settings());
    assert_eq!(plan.status.phase, Phase::OutsideWindow);
    assert!(plan.status.message.contains("in a blackout (spec.updateExclusions) until"), "{}", plan.status.message);
    assert!(granted_nodes(&plan).is_empty());
    assert_eq!(plan.wake_at, Some(at(9000)));
}

#[test]
fn a_version_younger_than_the_release_age_is_not_granted_until_it_is_old_enough() {
    let age = Settings { min_release_age: Some(Duration::from_secs(3600)), ..settings() };
    let mut w = World::new(2);
    w.slots(1).waiting("node-0", 1).waiting("node-1", 2);
    let plan = w.decide(&age);
    assert!(granted_nodes(&plan).is_empty());
    let seen = &plan.status.versions_offered;
    assert_eq!((seen.len(), seen[0].version.as_str(), seen[0].first_offered.0), (1, "1.21.0", at(1000)));
    assert_eq!(plan.status.nodes_waiting, 2, "held back by the release age, they still wait");
    assert!(plan.status.message.contains("1.21.0 is granted from"), "{}", plan.status.message);
    assert_eq!(plan.wake_at, Some(at(4600)));
    // The first sighting is kept from pass to pass; an hour later it is granted.
    w.policy = plan.status;
    w.now = at(4600);
    let plan = w.decide(&age);
    assert_eq!(plan.status.versions_offered[0].first_offered.0, at(1000));
    assert_eq!(granted_nodes(&plan).len(), 1);
    // Without the setting nothing waits.
    let mut w = World::new(1);
    w.slots(1).waiting("node-0", 1);
    assert_eq!(granted_nodes(&w.decide(&settings())).len(), 1);
}

#[test]
fn an_open_budget_window_replaces_the_budget_and_its_edge_wakes_the_leader() {
    let mut w = World::new(10);
    w.slots(3);
    for i in 0..10 {
        w.waiting(&format!("node-{i}"), i);
    }
    w.window =
        WindowState { budget: Some(Budget::Percent(50)), budget_change_at: Some(at(2000)), ..WindowState::ALWAYS };
    let plan = w.decide(&settings());
    assert_eq!(plan.status.slots, 5, "50% of 10 nodes, not the policy's 3");
    assert_eq!(plan.wake_at, Some(at(2000)));
}

#[test]
fn the_record_of_offered_versions_is_bounded() {
    let mut offered = Vec::new();
    for i in 0..40 {
        let v = format!("1.{i}.0");
        crate::decide::queue::record_offered(&mut offered, std::iter::once(v.as_str()), at(i));
    }
    assert_eq!(offered.len(), model::policy::VERSIONS_OFFERED_MAX);
    assert_eq!(offered.last().unwrap().version, "1.39.0", "the newest are kept");
}
