//! The per-zone limit: which waiting nodes the zones let through, applied
//! after the slot count. Pure, like its parent module.
//!
//! A zone is the value of the policy's topology label (no label: zone `""`).
//! A zone's unavailable nodes are those holding a slot and its managed nodes
//! that are not Ready (counted once): a zone already short of a node does
//! not lose another to an update. Its limit is `maxUnavailablePerZone` over
//! its managed nodes (a count, or a percentage rounded down, at least 1).
//! With `oneZoneAtATime`, grants go to one zone only: the first, in order
//! (`zoneOrder`, then by name), with a node holding a slot; if none holds
//! one, the first with a node waiting. A zone is finished when none of its
//! nodes holds a slot or waits for one.

use std::collections::{BTreeMap, BTreeSet};

use super::{ObservedNode, ZoneLimit};

/// A node's zone under `limit`.
pub(super) fn zone_of<'a>(limit: &ZoneLimit, node: &'a ObservedNode) -> &'a str {
    node.labels.get(&limit.topology_key).map_or("", String::as_str)
}

/// The zones as this pass sees them, and what each may still take.
#[derive(Debug)]
pub(super) struct Zones<'a> {
    limit: &'a ZoneLimit,
    /// Per zone: managed nodes, unavailable nodes.
    counts: BTreeMap<&'a str, (usize, usize)>,
    /// With one zone at a time: the zone grants go to (`None`: not decided
    /// yet, the first waiting node's zone in order decides).
    active: Option<&'a str>,
}

impl<'a> Zones<'a> {
    /// Counts `nodes` by zone; `holders` are the nodes holding a slot.
    pub(super) fn new(
        limit: &'a ZoneLimit,
        nodes: &'a BTreeMap<String, ObservedNode>,
        holders: &BTreeSet<&str>,
    ) -> Self {
        let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        let mut busy = BTreeSet::new();
        for node in nodes.values() {
            let zone = zone_of(limit, node);
            let c = counts.entry(zone).or_default();
            c.0 += 1;
            let holds = holders.contains(node.name.as_str());
            if holds || !node.ready {
                c.1 += 1;
            }
            if holds {
                busy.insert(zone);
            }
        }
        let active = if limit.one_zone_at_a_time { busy.into_iter().min_by_key(|z| rank(limit, z)) } else { None };
        Zones { limit, counts, active }
    }

    /// The most unavailable nodes `zone` may have (`usize::MAX`: no limit).
    pub(super) fn cap(&self, zone: &str) -> usize {
        let managed = self.counts.get(zone).map_or(0, |c| c.0);
        self.limit.per_zone.map_or(usize::MAX, |b| {
            usize::try_from(b.slots(u32::try_from(managed).unwrap_or(u32::MAX))).unwrap_or(usize::MAX)
        })
    }

    /// Whether a node of `zone` may be granted now; if so, counts it.
    pub(super) fn admit(&mut self, zone: &'a str) -> bool {
        if self.active.is_some_and(|a| a != zone) {
            return false;
        }
        let cap = self.cap(zone);
        let c = self.counts.entry(zone).or_default();
        if c.1 >= cap {
            return false;
        }
        c.1 += 1;
        if self.limit.one_zone_at_a_time {
            self.active = Some(zone);
        }
        true
    }

    /// Orders `waiting` (already in serving order) for one zone at a time:
    /// the zones' order first, serving order within a zone (stable).
    pub(super) fn order<T>(&self, waiting: &mut [T], zone: impl Fn(&T) -> &'a str) {
        if self.limit.one_zone_at_a_time {
            waiting.sort_by_key(|w| rank(self.limit, zone(w)));
        }
    }
}

/// Where `zone` comes in `oneZoneAtATime`'s order: listed zones first, in
/// their order, then the others by name.
fn rank<'z>(limit: &ZoneLimit, zone: &'z str) -> (usize, &'z str) {
    let listed = limit.zone_order.iter().position(|z| z == zone);
    (listed.unwrap_or(limit.zone_order.len()), if listed.is_some() { "" } else { zone })
}
