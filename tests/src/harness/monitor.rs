//! The invariant monitor: watches the cluster for the whole test and records
//! every moment the operator's safety rules were broken:
//!
//! - more slots held than allowed, or one node holding two slots;
//! - more nodes disrupted (cordoned by us, or NotReady because rebooting)
//!   than slots allowed; with a zone limit set ([`Monitor::limit_zones`]),
//!   more disrupted nodes in one zone than it allows, or (one zone at a
//!   time) disrupted nodes in two zones at once;
//! - a grant made while the rollout was not granting: a grant entered in the
//!   leader's ledger (UpdatePolicy `status.grants`) by a status whose phase
//!   is not `Running` (paused, halted, stopped, outside a window, invalid);
//! - at the end: a node still cordoned by us, or a shadow mid-walk without
//!   its slot.
//!
//! Tests end with [`Monitor::assert_clean`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use model::names;
use model::{BottlerocketShadow, UpdatePolicy};
use tokio::task::JoinHandle;

#[derive(Debug, Default)]
struct Seen {
    /// node → (cordoned by us, Ready)
    nodes: BTreeMap<String, (bool, bool)>,
    /// slot → holder
    slots: BTreeMap<String, Option<String>>,
    /// node → (current state, spec slot)
    shadows: BTreeMap<String, (model::ShadowState, Option<String>)>,
    max_slots: usize,
    /// node → its `topology.kubernetes.io/zone` label ("" without).
    zones: BTreeMap<String, String>,
    /// Disrupted nodes allowed per zone, and whether only one zone at a time.
    zone_limit: Option<(usize, bool)>,
    /// Nodes whose host a test crashed (not the operator's doing): their
    /// NotReady is not a disruption until they are Ready again.
    crashed: std::collections::BTreeSet<String>,
    /// The ledger's grants (node, slot, grant time) in the last policy
    /// status seen; `None` before one with a ledger.
    grants: Option<std::collections::BTreeSet<(String, String, String)>>,
    /// Every grant the ledger showed, in the order seen: (node, grant time).
    grant_log: Vec<(String, jiff::Timestamp)>,
    violations: Vec<String>,
    peak_held: usize,
    peak_disrupted: usize,
    events: u64,
}

impl Seen {
    fn check(&mut self, after: &str) {
        let before = self.violations.len();
        self.check_rules(after);
        // When each was seen, to read beside the component logs.
        let at = jiff::Timestamp::now().strftime("%H:%M:%S%.3f").to_string();
        for v in &mut self.violations[before..] {
            *v = format!("[{at}] {v}");
        }
    }

    fn check_rules(&mut self, after: &str) {
        self.events += 1;
        let held: Vec<&String> = self.slots.values().flatten().collect();
        self.peak_held = self.peak_held.max(held.len());
        if held.len() > self.max_slots {
            let v = format!("{} slots held, {} allowed (after {after}): {held:?}", held.len(), self.max_slots);
            self.violations.push(v);
        }
        let mut per_node: BTreeMap<&String, usize> = BTreeMap::new();
        for h in &held {
            *per_node.entry(h).or_default() += 1;
        }
        if let Some((node, n)) = per_node.iter().find(|(_, n)| **n > 1) {
            self.violations.push(format!("node {node} holds {n} slots (after {after})"));
        }
        let disrupted: Vec<&String> =
            self.nodes.iter().filter(|(n, (c, r))| *c || (!*r && !self.crashed.contains(*n))).map(|(n, _)| n).collect();
        self.peak_disrupted = self.peak_disrupted.max(disrupted.len());
        if disrupted.len() > self.max_slots {
            let v = format!(
                "{} nodes disrupted, {} slots allowed (after {after}): {disrupted:?}",
                disrupted.len(),
                self.max_slots
            );
            self.violations.push(v);
        }
        if let Some((per_zone, one_at_a_time)) = self.zone_limit {
            let mut by_zone: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
            for n in &disrupted {
                by_zone.entry(self.zones.get(*n).map_or("", String::as_str)).or_default().push(n);
            }
            for (zone, nodes) in &by_zone {
                if nodes.len() > per_zone {
                    let v = format!(
                        "zone {zone:?} has {} nodes disrupted, {per_zone} allowed (after {after}): {nodes:?}",
                        nodes.len()
                    );
                    self.violations.push(v);
                }
            }
            if one_at_a_time && by_zone.len() > 1 {
                self.violations
                    .push(format!("nodes disrupted in {} zones at once (after {after}): {by_zone:?}", by_zone.len()));
            }
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Monitor {
    seen: Arc<Mutex<Seen>>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the monitor saw, for reports.
#[derive(Debug, Clone, Copy)]
pub struct Peaks {
    pub held: usize,
    pub disrupted: usize,
    pub events: u64,
}

impl Monitor {
    /// Starts watching nodes matching `node_selector` and the operator's
    /// objects in `namespace`, allowing `max_slots` concurrent updates.
    pub fn start(client: &kube::Client, namespace: &str, node_selector: &str, max_slots: usize) -> Monitor {
        let seen = Arc::new(Mutex::new(Seen { max_slots, ..Default::default() }));
        let mut tasks = Vec::new();
        let nodes: Api<Node> = Api::all(client.clone());
        let s = seen.clone();
        tasks.push(tokio::spawn(follow(nodes, watcher::Config::default().labels(node_selector), move |ev| {
            let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
            match ev {
                Change::Put(n) => {
                    let name = n.metadata.name.clone().unwrap_or_default();
                    let ours =
                        n.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(names::CORDONED_ANNOTATION))
                            && n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
                    let ready = n
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                        .is_none_or(|c| c.status == "True");
                    g.nodes.insert(name.clone(), (ours, ready));
                    if ready {
                        g.crashed.remove(&name);
                    }
                    let zone = n.metadata.labels.as_ref().and_then(|l| l.get(names::ZONE_LABEL)).cloned();
                    g.zones.insert(name.clone(), zone.unwrap_or_default());
                    g.check(&format!("node {name} changed"));
                }
                Change::Gone(n) => {
                    g.nodes.remove(n.metadata.name.as_deref().unwrap_or_default());
                }
            }
        })));
        let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
        let s = seen.clone();
        tasks.push(tokio::spawn(follow(
            leases,
            watcher::Config::default().labels(&format!("{}=true", names::SLOT_LABEL)),
            move |ev| {
                let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
                match ev {
                    Change::Put(l) => {
                        let name = l.metadata.name.clone().unwrap_or_default();
                        let holder = l.spec.as_ref().and_then(|s| s.holder_identity.clone()).filter(|h| !h.is_empty());
                        g.slots.insert(name.clone(), holder);
                        g.check(&format!("slot {name} changed"));
                    }
                    Change::Gone(l) => {
                        g.slots.remove(l.metadata.name.as_deref().unwrap_or_default());
                    }
                }
            },
        )));
        let policies: Api<UpdatePolicy> = Api::namespaced(client.clone(), namespace);
        let s = seen.clone();
        tasks.push(tokio::spawn(follow(policies, watcher::Config::default(), move |ev| {
            let Change::Put(p) = ev else { return };
            let Some(st) = p.status else { return };
            let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
            let Some(grants) = st.grants else { return };
            for r in &grants {
                let key = (r.node.clone(), r.slot.clone(), r.granted_at.0.to_string());
                if g.grants.as_ref().is_none_or(|before| !before.contains(&key)) {
                    g.grant_log.push((r.node.clone(), r.granted_at.0));
                }
            }
            let now: std::collections::BTreeSet<(String, String, String)> =
                grants.into_iter().map(|g| (g.node, g.slot, g.granted_at.0.to_string())).collect();
            if let Some(before) = &g.grants
                && st.phase != model::policy::Phase::Running
            {
                let new: Vec<String> =
                    now.difference(before).map(|(node, slot, at)| format!("{slot} to {node} at {at}")).collect();
                if !new.is_empty() {
                    let v = format!("granted while the rollout was {} ({}): {new:?}", st.phase.as_str(), st.message);
                    g.violations.push(v);
                }
            }
            g.grants = Some(now);
        })));
        let shadows: Api<BottlerocketShadow> = Api::namespaced(client.clone(), namespace);
        let s = seen.clone();
        tasks.push(tokio::spawn(follow(shadows, watcher::Config::default(), move |ev| {
            let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
            match ev {
                Change::Put(sh) => {
                    let node = sh.node_name().unwrap_or_default().to_owned();
                    let state = sh.status.as_ref().map_or(model::ShadowState::Idle, |s| s.current_state);
                    g.shadows.insert(node, (state, sh.spec.slot.clone()));
                }
                Change::Gone(sh) => {
                    g.shadows.remove(sh.node_name().unwrap_or_default());
                }
            }
        })));
        Monitor { seen, tasks }
    }

    /// A test crashed `node`'s host: until the node is Ready again, its
    /// NotReady is the crash's, not a disruption by the operator (a cordon
    /// by us still counts).
    pub fn crashed(&self, node: &str) {
        let mut g = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        g.crashed.insert(node.to_owned());
    }

    /// Raises the number of slots allowed (a test that grows the pool live).
    pub fn allow_slots(&self, n: usize) {
        let mut g = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        g.max_slots = g.max_slots.max(n);
    }

    /// Checks from now on that no zone has more than `per_zone` nodes
    /// disrupted and, with `one_at_a_time`, that only one zone has any.
    pub fn limit_zones(&self, per_zone: usize, one_at_a_time: bool) {
        let mut g = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        g.zone_limit = Some((per_zone, one_at_a_time));
    }

    /// Every grant the leader's ledger showed, in the order seen: (node, grant time).
    pub fn grant_log(&self) -> Vec<(String, jiff::Timestamp)> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).grant_log.clone()
    }

    pub fn peaks(&self) -> Peaks {
        let g = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        Peaks { held: g.peak_held, disrupted: g.peak_disrupted, events: g.events }
    }

    pub fn violations(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).violations.clone()
    }

    /// Nodes currently cordoned by us, and shadows mid-walk without a held slot.
    pub fn leftovers(&self) -> Vec<String> {
        let g = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<String> =
            g.nodes.iter().filter(|(_, (c, _))| *c).map(|(n, _)| format!("node {n} is still cordoned by us")).collect();
        for (node, (state, slot)) in &g.shadows {
            let holds =
                slot.as_ref().is_some_and(|s| g.slots.get(s).is_some_and(|h| h.as_deref() == Some(node.as_str())));
            if state.is_updating() && !holds {
                out.push(format!("shadow of {node} is {state} without holding a slot"));
            }
        }
        out
    }

    /// Panics if any invariant was broken, or if the end state has leftovers.
    pub fn assert_clean(&self) {
        let violations = self.violations();
        let leftovers = self.leftovers();
        assert!(
            violations.is_empty() && leftovers.is_empty(),
            "invariant monitor: {} violation(s): {violations:#?}; leftovers at the end: {leftovers:#?}",
            violations.len()
        );
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

enum Change<K> {
    Put(K),
    Gone(K),
}

async fn follow<K>(api: Api<K>, cfg: watcher::Config, mut on: impl FnMut(Change<K>) + Send + 'static)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Apply(o) | Event::InitApply(o)) => on(Change::Put(o)),
            Ok(Event::Delete(o)) => on(Change::Gone(o)),
            _ => {}
        }
    }
}
