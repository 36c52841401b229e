//! The waiting queue: who waits for a slot, and in what order they are
//! served. Pure, like its parent module.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use model::BottlerocketShadowSpec;

use super::{Hold, Observed, ObservedNode, ObservedShadow, ObservedSlot, Settings};

/// Each shadow (keyed by node name) with its managed Node, if any: both maps
/// walked together in key order, so a pass makes no lookup per shadow (at
/// thousands of nodes those lookups were the largest part of a pass).
pub(super) fn with_nodes<'a>(
    shadows: &'a BTreeMap<String, ObservedShadow>,
    nodes: &'a BTreeMap<String, ObservedNode>,
) -> impl Iterator<Item = (&'a ObservedShadow, Option<&'a ObservedNode>)> {
    let mut nodes = nodes.iter().peekable();
    shadows.iter().map(move |(key, sh)| {
        while nodes.next_if(|(n, _)| n.as_str() < key.as_str()).is_some() {}
        (sh, nodes.next_if(|(n, _)| *n == key).map(|(_, v)| v))
    })
}

/// Orders the first `k` waiting nodes as they are served (crash count,
/// request time, name: a total order); the rest stay unordered. Only as
/// many as there are free slots are needed, so a pass does not sort the
/// whole queue.
pub(super) fn serve_first(waiting: &mut [(&ObservedShadow, &str)], k: usize) {
    let key = |s: &ObservedShadow| {
        let st = s.status.as_ref();
        (st.map_or(0, |s| s.crash_count), st.and_then(|s| s.slot_requested_at.as_ref()).map(|t| t.0))
    };
    let order = |(a, _): &(&ObservedShadow, &str), (b, _): &(&ObservedShadow, &str)| {
        key(a).cmp(&key(b)).then_with(|| a.node.cmp(&b.node))
    };
    if k == 0 || waiting.is_empty() {
        return;
    }
    if k < waiting.len() {
        waiting.select_nth_unstable_by(k - 1, order);
    }
    let k = k.min(waiting.len());
    waiting[..k].sort_by(order);
}

/// Nodes waiting for a slot, unordered (see [`serve_first`]), with the version
/// each would be granted. Runs every pass over every shadow: no copies, and
/// the holders are met by a merge walk (both are in node-name order).
pub(super) fn waiting_nodes<'a>(
    obs: &Observed<'a>,
    settings: &Settings,
    holders: &BTreeMap<&str, Vec<&ObservedSlot>>,
    specs: &BTreeMap<String, BottlerocketShadowSpec>,
    mut why: Option<&mut BTreeMap<String, Hold>>,
) -> Vec<(&'a ObservedShadow, &'a str)> {
    let mut holder_names = holders.keys().peekable();
    let mut hold = |sh: &ObservedShadow, h: Hold| {
        if let Some(w) = why.as_deref_mut() {
            w.insert(sh.node.clone(), h);
        }
        None
    };
    with_nodes(obs.shadows, obs.nodes)
        .filter_map(|(sh, node)| {
            // Unmanaged nodes' shadows are not explained.
            node?;
            let Some(status) = sh.status.as_ref() else { return hold(sh, Hold::NotReported) };
            let Some(target) = status.offered_version() else { return hold(sh, Hold::NoNewerVersion) };
            while holder_names.next_if(|h| **h < sh.node.as_str()).is_some() {}
            let holds = holder_names.peek().is_some_and(|h| **h == sh.node.as_str());
            let spec = specs.get(&sh.node).unwrap_or(&sh.spec);
            if !status.current_state.is_resting() || holds || spec.slot.is_some() {
                return hold(sh, Hold::Updating { state: status.current_state.as_str().to_owned() });
            }
            if status.slot_requested_at.is_none() {
                return hold(sh, Hold::NotAsking);
            }
            if !sh.unacked_failure_is_none() {
                return hold(sh, Hold::FailureNotAcknowledged);
            }
            let node = node?;
            let admin_cordon = node.unschedulable && !node.cordoned_by_us;
            if !node.ready {
                return hold(sh, Hold::NotReady);
            }
            if node.opted_out {
                return hold(sh, Hold::OptedOut);
            }
            if admin_cordon && !settings.update_cordoned_nodes {
                return hold(sh, Hold::AdminCordon);
            }
            Some((sh, target))
        })
        .collect()
}

/// Records `versions` in `offered` with `now` unless already there; keeps
/// the [`model::policy::VERSIONS_OFFERED_MAX`] most recently first offered.
pub(super) fn record_offered<'a>(
    offered: &mut Vec<model::policy::OfferedVersion>,
    versions: impl Iterator<Item = &'a str>,
    now: Timestamp,
) {
    for v in versions {
        if !offered.iter().any(|o| o.version == v) {
            offered.push(model::policy::OfferedVersion { version: v.to_owned(), first_offered: Time(now) });
        }
    }
    if offered.len() > model::policy::VERSIONS_OFFERED_MAX {
        offered.sort_by(|a, b| b.first_offered.0.cmp(&a.first_offered.0).then_with(|| a.version.cmp(&b.version)));
        offered.truncate(model::policy::VERSIONS_OFFERED_MAX);
        offered.sort_by(|a, b| a.first_offered.0.cmp(&b.first_offered.0).then_with(|| a.version.cmp(&b.version)));
    }
}

/// When `version` may be granted under a release age of `age`.
pub(super) fn grantable_at(
    offered: &[model::policy::OfferedVersion],
    version: &str,
    age: std::time::Duration,
) -> Option<Timestamp> {
    offered.iter().find(|o| o.version == version).map(|o| super::add(o.first_offered.0, age))
}

/// Whether `version` has been offered at least `age` (unknown: not yet).
pub(super) fn old_enough(
    offered: &[model::policy::OfferedVersion],
    version: &str,
    age: std::time::Duration,
    now: Timestamp,
) -> bool {
    grantable_at(offered, version, age).is_some_and(|t| t <= now)
}
