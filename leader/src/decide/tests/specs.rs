//! Any UpdatePolicy spec, however hostile, is either applied or
//! `InvalidSpec`: arbitrary JSON for each field (numbers far out of range,
//! wrong types, nonsense durations, windows and budgets) read the way the
//! leader reads a stored object, resolved over the flags and decided on a
//! random cluster. Whatever the spec, the pass does not panic, its phase is
//! one users know, an unreadable or invalid spec grants nothing, and the
//! pool never grows beyond the managed nodes.

use proptest::prelude::*;
use serde_json::Value;

use super::props::world;
use super::*;
use crate::settings::{self, Defaults};

const KEYS: &[&str] = &[
    "maxConcurrentUpdates",
    "paused",
    "updateWindows",
    "failureBackoff",
    "failureBackoffMax",
    "maxConsecutiveFailures",
    "resumeRequest",
    "maxSlotHold",
    "updateCordonedNodes",
    "alertGate",
    "somethingElse",
];

/// Values people (or attackers) type, near the edges.
fn edgy_string() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            "",
            "0",
            "1",
            "3",
            "-1",
            "10%",
            "0%",
            "100%",
            "101%",
            "2147483647",
            "2147483648",
            "99999999999999999999",
            "5m",
            "1h",
            "0s",
            "1ns",
            "9999999999999h",
            "584542046091y",
            "soon",
            "Mon-Fri 02:00-05:00 Europe/Berlin",
            "Sat,Sun 22:00+6h UTC",
            "Mon 00:00+9999999h UTC",
            "Mon 25:00-26:00",
            "Sun 23:59-00:00 Pacific/Kiritimati",
            "0 0 23 * * Mon-Fri *",
            "* * * * * * *",
            "0 0 0 31 2 * *",
            "0 0 0 1 1 * 2099",
            "0 0 0 1 1 * 99999",
            "2026-11-27T10:00:00Z",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
        "[0-9]{1,12}%?",
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        proptest::sample::select(vec![
            0i64,
            1,
            -1,
            3,
            1000,
            1001,
            100_000,
            100_001,
            i64::from(i32::MAX),
            i64::from(i32::MAX) + 1,
            i64::from(u32::MAX),
            5_000_000_000,
            i64::MIN,
            i64::MAX,
        ])
        .prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        edgy_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(edgy_string().prop_map(Value::from), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,3}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn spec() -> impl Strategy<Value = Value> {
    prop_oneof![
        9 => proptest::collection::btree_map(proptest::sample::select(KEYS.to_vec()), json(), 0..6)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        1 => json(),
    ]
}

fn defaults() -> Defaults {
    Defaults {
        budget: model::parse::Budget::Count(2),
        failure_backoff: Duration::from_secs(300),
        failure_backoff_max: Duration::from_secs(3600),
        max_consecutive_failures: 3,
        windows: vec![],
        slot_lease_duration: Duration::from_secs(120),
        max_slot_hold: Duration::from_secs(5400),
        node_selector: String::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn any_spec_is_applied_or_invalid_and_never_floods((w, _) in world(), raw in spec()) {
        // Read the way the leader's watch reads a stored object.
        let read: model::UpdatePolicySpec = serde_json::from_value(raw.clone()).expect("reading a spec never fails");
        let (settings, windows) = settings::resolve(&defaults(), Some(&read));
        let mut w = w;
        w.window = settings::window_state(&windows, w.now);
        let plan = w.decide(&settings);
        let phase = plan.status.phase;
        // A phase users know, as the API stores it.
        let shown = serde_json::to_value(phase).unwrap();
        prop_assert!(
            ["Running", "Paused", "OutsideWindow", "Blocked", "Halted", "Stopped", "InvalidSpec"].contains(&shown.as_str().unwrap_or("")),
            "{shown}"
        );
        // An unreadable value, or one the leader cannot use, stops grants and is named.
        if !read.unreadable.is_empty() {
            let msg = settings.invalid.clone().unwrap_or_default();
            for p in &read.unreadable {
                let field = p.split(':').next().unwrap_or_default();
                prop_assert!(msg.contains(field), "{field} not named in {msg:?}");
            }
        }
        if settings.invalid.is_some() {
            prop_assert_eq!(phase, Phase::InvalidSpec);
            prop_assert!(plan.status.message.contains("invalid"), "{}", plan.status.message);
            prop_assert_eq!(plan.grants().count(), 0);
        }
        // Never a Lease beyond the managed nodes, however large the budget.
        let managed = w.nodes.len();
        let existing: BTreeSet<u32> = w.slots.iter().map(|s| s.index).collect();
        let mut created = 0usize;
        for a in &plan.actions {
            if let Action::CreateSlot { name } = a {
                let index = model::names::slot_index(name).unwrap();
                prop_assert!((index as usize) < managed, "{name} created for {managed} managed nodes");
                prop_assert!(!existing.contains(&index));
                created += 1;
            }
        }
        prop_assert!(created <= managed);
        prop_assert!(plan.status.slots as usize <= managed, "{} slots for {managed} nodes", plan.status.slots);
    }
}

#[test]
fn a_huge_count_gives_one_slot_per_managed_node_and_no_more() {
    let mut w = World::new(3);
    w.slots(1);
    let mut s = settings();
    s.budget = Budget::Count(u32::MAX);
    let plan = w.decide(&s);
    let created: Vec<&Action> = plan.actions.iter().filter(|a| matches!(a, Action::CreateSlot { .. })).collect();
    assert_eq!(created.len(), 2, "{created:?}");
    assert_eq!(plan.status.slots, 3);
    let none = World::new(0).decide(&s);
    assert!(!none.actions.iter().any(|a| matches!(a, Action::CreateSlot { .. })), "no nodes, no slots");
}

#[test]
fn an_unreadable_spec_still_reclaims_expired_slots() {
    let mut w = World::new(2);
    w.slots(1).granted(0, "node-0", ShadowState::StagedAndPerformedUpdate);
    w.held(0, "node-0", 100, 60); // expired long ago
    w.waiting("node-1", 900);
    let read: model::UpdatePolicySpec = serde_json::from_str(r#"{"maxConsecutiveFailures":5000000000}"#).unwrap();
    let (s, _) = settings::resolve(&defaults(), Some(&read));
    let plan = w.decide(&s);
    assert_eq!(plan.status.phase, Phase::InvalidSpec);
    assert!(plan.status.message.contains("spec.maxConsecutiveFailures"), "{}", plan.status.message);
    assert!(plan.actions.iter().any(|a| matches!(a, Action::Reclaim { slot, .. } if slot == "brupop-slot-0")));
    assert_eq!(plan.grants().count(), 0);
}
