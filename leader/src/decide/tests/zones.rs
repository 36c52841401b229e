//! The per-zone limit and one zone at a time, together with the slot count.

use super::*;

const ZONE: &str = model::names::ZONE_LABEL;

fn limited(per_zone: Option<Budget>, one_at_a_time: bool, order: &[&str]) -> Settings {
    Settings {
        budget: Budget::Count(10),
        zones: Some(ZoneLimit {
            topology_key: ZONE.to_owned(),
            per_zone,
            one_zone_at_a_time: one_at_a_time,
            zone_order: order.iter().map(|z| (*z).to_owned()).collect(),
        }),
        ..settings()
    }
}

/// Nodes `node-0..` placed in `zones` (`""`: no label), all waiting in
/// index order, with `slots` slots.
fn world(zones: &[&str], slots: u32) -> World {
    let mut w = World::new(zones.len());
    w.slots(slots);
    for (i, z) in zones.iter().enumerate() {
        let name = format!("node-{i}");
        if !z.is_empty() {
            w.nodes.get_mut(&name).unwrap().labels.insert(ZONE.to_owned(), (*z).to_owned());
        }
        w.waiting(&name, i64::try_from(i).unwrap());
    }
    w
}

fn granted(plan: &Plan) -> Vec<String> {
    granted_nodes(plan).into_iter().map(|(_, n)| n).collect()
}

#[test]
fn uneven_zones_each_get_their_own_limit() {
    // a: 4 nodes, b: 2, c: 1; 50% per zone → a 2, b 1, c 1 (at least 1).
    let w = world(&["a", "a", "a", "a", "b", "b", "c"], 10);
    let plan = w.decide(&limited(Some(Budget::Percent(50)), false, &[]));
    assert_eq!(granted(&plan), ["node-0", "node-1", "node-4", "node-6"]);
}

#[test]
fn the_slot_count_still_applies_beside_the_zones() {
    let w = world(&["a", "a", "b", "b", "c", "c"], 2);
    let s = Settings { budget: Budget::Count(2), ..limited(Some(Budget::Count(1)), false, &[]) };
    assert_eq!(granted(&w.decide(&s)), ["node-0", "node-2"]);
}

#[test]
fn unlabelled_nodes_form_one_zone_of_their_own() {
    let w = world(&["", "", "a", ""], 10);
    assert_eq!(granted(&w.decide(&limited(Some(Budget::Count(1)), false, &[]))), ["node-0", "node-2"]);
}

#[test]
fn a_custom_topology_key_is_read() {
    let mut w = world(&["", "", ""], 10);
    for (i, rack) in ["r1", "r1", "r2"].iter().enumerate() {
        w.nodes.get_mut(&format!("node-{i}")).unwrap().labels.insert("rack".into(), (*rack).into());
    }
    let mut s = limited(Some(Budget::Count(1)), false, &[]);
    s.zones.as_mut().unwrap().topology_key = "rack".into();
    assert_eq!(granted(&w.decide(&s)), ["node-0", "node-2"]);
}

#[test]
fn nodes_updating_or_not_ready_use_up_their_zone() {
    // a: node-0 updating, b: node-2 not Ready; limit 1 each: only c grants.
    let mut w = world(&["a", "a", "b", "b", "c"], 10);
    w.granted(0, "node-0", ShadowState::StagedAndPerformedUpdate);
    w.nodes.get_mut("node-2").unwrap().ready = false;
    assert_eq!(granted(&w.decide(&limited(Some(Budget::Count(1)), false, &[]))), ["node-4"]);
}

#[test]
fn one_zone_at_a_time_finishes_the_zone_under_way_before_the_next() {
    // b is under way (node-2 updating), so b goes on although a comes first by name.
    let mut w = world(&["a", "a", "b", "b", "b"], 10);
    w.granted(0, "node-2", ShadowState::StagedAndPerformedUpdate);
    let s = limited(None, true, &[]);
    assert_eq!(granted(&w.decide(&s)), ["node-3", "node-4"]);
    // b finished (nothing of it updating or waiting): a starts.
    let mut w = world(&["a", "a", "b", "b", "b"], 10);
    for n in ["node-2", "node-3", "node-4"] {
        w.status(n).slot_requested_at = None;
    }
    assert_eq!(granted(&w.decide(&s)), ["node-0", "node-1"]);
}

#[test]
fn one_zone_at_a_time_follows_zone_order_then_names() {
    let w = world(&["a", "b", "c", ""], 10);
    assert_eq!(granted(&w.decide(&limited(None, true, &["c", "a"]))), ["node-2"]);
    assert_eq!(granted(&w.decide(&limited(None, true, &[]))), ["node-3"], "zone \"\" sorts first by name");
    // With a limit per zone too.
    let w = world(&["b", "b", "b", "a"], 10);
    assert_eq!(granted(&w.decide(&limited(Some(Budget::Count(2)), true, &["b"]))), ["node-0", "node-1"]);
}

#[test]
fn a_zone_that_empties_mid_rollout_lets_the_next_one_start() {
    // Zone a's last nodes are deleted while one of them updated: a's walk
    // ended with its Node; c is next.
    let mut w = world(&["a", "a", "c"], 10);
    w.granted(0, "node-0", ShadowState::StagedAndPerformedUpdate);
    let s = limited(Some(Budget::Count(1)), true, &["a", "c"]);
    assert!(granted(&w.decide(&s)).is_empty(), "a is under way and full");
    w.nodes.remove("node-0");
    w.nodes.remove("node-1");
    w.slots[0].holder = None;
    let plan = w.decide(&s);
    assert_eq!(granted(&plan), ["node-2"]);
}

#[test]
fn no_grant_ever_passes_a_zone_limit_over_random_zones() {
    // A small exhaustive sweep: every assignment of 5 nodes to 3 zones
    // (and no zone), 0-2 of them already updating, limits 1 and 2.
    let zones = ["", "a", "b", "c"];
    for code in 0..4usize.pow(5) {
        let layout: Vec<&str> = (0..5).map(|i| zones[(code / 4usize.pow(i)) % 4]).collect();
        for busy in 0..3u32 {
            for cap in [1u32, 2] {
                let mut w = world(&layout, 10);
                for b in 0..busy {
                    w.granted(b, &format!("node-{b}"), ShadowState::StagedAndPerformedUpdate);
                }
                let s = limited(Some(Budget::Count(cap)), false, &[]);
                let plan = w.decide(&s);
                let mut per_zone: BTreeMap<&str, u32> = BTreeMap::new();
                let updating = (0..busy).map(|b| format!("node-{b}"));
                for n in updating.chain(granted(&plan)) {
                    let i: usize = n.trim_start_matches("node-").parse().unwrap();
                    *per_zone.entry(layout[i]).or_default() += 1;
                }
                for (z, n) in &per_zone {
                    let before = (0..busy as usize).filter(|b| layout[*b] == *z).count() as u32;
                    assert!(*n <= cap.max(before), "{layout:?} busy {busy} cap {cap}: zone {z:?} has {n}");
                }
                // And every zone with room and a waiting node got one.
                for z in zones {
                    let waiting = layout.iter().enumerate().any(|(i, l)| *l == z && i >= busy as usize);
                    if waiting {
                        assert!(per_zone.get(z).copied().unwrap_or(0) >= 1, "{layout:?}: zone {z:?} got nothing");
                    }
                }
            }
        }
    }
}
