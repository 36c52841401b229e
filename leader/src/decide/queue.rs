//! The waiting queue: who waits for a slot, and in what order they are
//! served. Pure, like its parent module.

use std::collections::BTreeMap;

use model::BottlerocketShadowSpec;

use super::{Observed, ObservedNode, ObservedShadow, ObservedSlot, Settings};

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
) -> Vec<(&'a ObservedShadow, &'a str)> {
    let mut holder_names = holders.keys().peekable();
    with_nodes(obs.shadows, obs.nodes)
        .filter_map(|(sh, node)| {
            let status = sh.status.as_ref()?;
            let target = status.offered_version()?;
            status.slot_requested_at.as_ref()?;
            while holder_names.next_if(|h| **h < sh.node.as_str()).is_some() {}
            let holds = holder_names.peek().is_some_and(|h| **h == sh.node.as_str());
            if !status.current_state.is_resting() || holds {
                return None;
            }
            let spec = specs.get(&sh.node).unwrap_or(&sh.spec);
            if spec.slot.is_some() || !sh.unacked_failure_is_none() {
                return None;
            }
            let node = node?;
            let admin_cordon = node.unschedulable && !node.cordoned_by_us;
            if !node.ready || node.opted_out || (admin_cordon && !settings.update_cordoned_nodes) {
                return None;
            }
            Some((sh, target))
        })
        .collect()
}
