//! The safety rules of the decision over random clusters: nodes in every
//! walk state, Ready or not, opted out or cordoned, slots held (expired or
//! not, by existing nodes or vanished ones), failures acknowledged or not,
//! any budget, phase and time. Whatever the cluster, a pass never plans:
//! more holders than slots, two slots for one node, a grant while grants
//! are not running, a grant to a node that does not wait for one, or a
//! slot that is not free.

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
struct NodeCase {
    ready: bool,
    opted_out: bool,
    admin_cordon: bool,
    state: ShadowState,
    waiting: bool,
    /// The slot its spec names, if any.
    spec_slot: Option<u32>,
    /// An unacknowledged failure.
    unacked: Option<FailureReason>,
    has_target: bool,
}

fn state() -> impl Strategy<Value = ShadowState> {
    prop_oneof![
        Just(ShadowState::Idle),
        Just(ShadowState::StagedAndPerformedUpdate),
        Just(ShadowState::RebootedIntoUpdate),
        Just(ShadowState::MonitoringUpdate),
        Just(ShadowState::ErrorReset),
    ]
}

fn reason() -> impl Strategy<Value = FailureReason> {
    proptest::sample::select(FailureReason::ALL.to_vec())
}

fn node_case(slots: u32) -> impl Strategy<Value = NodeCase> {
    (
        any::<bool>(),
        proptest::bool::weighted(0.1),
        proptest::bool::weighted(0.1),
        state(),
        any::<bool>(),
        proptest::option::weighted(0.3, 0..slots.max(1)),
        proptest::option::weighted(0.2, reason()),
        proptest::bool::weighted(0.8),
    )
        .prop_map(|(ready, opted_out, admin_cordon, state, waiting, spec_slot, unacked, has_target)| NodeCase {
            ready,
            opted_out,
            admin_cordon,
            state,
            waiting,
            spec_slot,
            unacked,
            has_target,
        })
}

#[derive(Debug, Clone)]
struct SlotCase {
    /// Held by node index (possibly beyond the node list: a vanished node).
    holder: Option<usize>,
    /// Seconds before now it was renewed, and for how long.
    renewed_ago: i64,
    secs: i32,
}

fn slot_case(nodes: usize) -> impl Strategy<Value = SlotCase> {
    (proptest::option::weighted(0.5, 0..nodes + 2), 0i64..400, 1i32..200)
        .prop_map(|(holder, renewed_ago, secs)| SlotCase { holder, renewed_ago, secs })
}

/// An alert gate: what unreachable means, the last answer (if any) and its age in seconds.
fn gate_case() -> impl Strategy<Value = (model::alert_gate::OnUnreachable, Option<GateAnswer>, i64)> {
    use model::alert_gate::OnUnreachable;
    let answer = prop_oneof![
        Just(GateAnswer::Clear),
        Just(GateAnswer::Firing(vec!["A".into()])),
        Just(GateAnswer::Unreachable("refused".into())),
    ];
    (prop_oneof![Just(OnUnreachable::Block), Just(OnUnreachable::Ignore)], proptest::option::of(answer), 0i64..200)
}

pub(super) fn world() -> impl Strategy<Value = (World, Settings)> {
    (1usize..12, 1u32..6).prop_flat_map(|(n, slots)| {
        (
            proptest::collection::vec(node_case(slots), n),
            proptest::collection::vec(slot_case(n), slots as usize),
            1u32..6,
            any::<bool>(),
            any::<bool>(),
            0u32..5,
            any::<bool>(),
            proptest::option::of(gate_case()),
        )
            .prop_map(
                move |(cases, slot_cases, budget, paused, window_open, failures, update_cordoned, gate)| {
                    let mut w = World::new(n);
                    w.slots(slots);
                    for (i, c) in cases.iter().enumerate() {
                        let name = format!("node-{i}");
                        let node = w.nodes.get_mut(&name).unwrap();
                        node.ready = c.ready;
                        node.opted_out = c.opted_out;
                        node.unschedulable = c.admin_cordon;
                        if c.waiting {
                            w.waiting(&name, 900);
                        }
                        w.status(&name).current_state = c.state;
                        if !c.has_target {
                            w.status(&name).target_version = "1.20.0".into();
                        }
                        if let Some(s) = c.spec_slot {
                            let spec = w.spec(&name);
                            spec.state = ShadowState::StagedAndPerformedUpdate;
                            spec.slot = Some(model::names::slot_name(s));
                            spec.version = Some("1.21.0".into());
                            spec.state_transition_timestamp = Some(MicroTime(at(900)));
                        }
                        if let Some(r) = c.unacked {
                            w.failed(&name, 1, r);
                            w.status(&name).current_state = c.state;
                        }
                    }
                    for (i, s) in slot_cases.iter().enumerate() {
                        if let Some(h) = s.holder {
                            let holder = format!("node-{h}");
                            w.held(i as u32, &holder, 1000 - s.renewed_ago, s.secs);
                        }
                    }
                    w.policy.consecutive_failures = failures;
                    w.window = WindowState { open: window_open, ..WindowState::ALWAYS };
                    let mut st = settings();
                    if let Some((on_unreachable, answer, ago)) = gate.clone() {
                        let g = GateSettings {
                            url: "http://prom:9090".into(),
                            target: GateTarget::Alerts(vec!["A".into()]),
                            poll_interval: Duration::from_secs(30),
                            timeout: Duration::from_secs(10),
                            on_unreachable,
                        };
                        let at = w.now.checked_sub(jiff::SignedDuration::from_secs(ago)).unwrap();
                        w.gate = answer.map(|answer| GateObservation { gate: g.clone(), at, answer });
                        st.alert_gate = Some(g);
                    }
                    st.budget = model::parse::Budget::Count(budget);
                    st.paused = paused;
                    st.update_cordoned_nodes = update_cordoned;
                    (w, st)
                },
            )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn no_pass_ever_grants_beyond_the_rules((w, settings) in world()) {
        let plan = w.decide(&settings);
        let grants: Vec<(&str, &str)> = plan
            .grants()
            .filter_map(|a| match a {
                Action::Grant { slot, node, .. } => Some((slot.as_str(), node.as_str())),
                _ => None,
            })
            .collect();
        // No grant while the alert gate blocks.
        if plan.status.alert_gate.as_ref().is_some_and(|g| g.blocking) {
            prop_assert!(grants.is_empty(), "granted while the gate blocks: {grants:?}");
        }
        // No grant unless grants run.
        if plan.status.phase != model::policy::Phase::Running {
            prop_assert!(grants.is_empty(), "granted while {:?}: {grants:?}", plan.status.phase);
        }
        // Never more holders than the pool allows.
        let size = settings.budget.slots(u32::try_from(w.nodes.len()).unwrap());
        let held = w.slots.iter().filter(|s| s.holder.is_some()).count();
        if !grants.is_empty() {
            prop_assert!(held + grants.len() <= size as usize, "{held} held + {} granted > {size}", grants.len());
        }
        // A node is granted once, and holds at most one slot after the pass.
        let mut granted_nodes: Vec<&str> = grants.iter().map(|(_, n)| *n).collect();
        granted_nodes.sort_unstable();
        granted_nodes.dedup();
        prop_assert_eq!(granted_nodes.len(), grants.len(), "a node granted twice: {:?}", grants);
        for (slot, node) in &grants {
            // Only a free slot of the pool, never one a spec still names.
            let s = w.slots.iter().find(|s| s.name == *slot).unwrap();
            prop_assert!(s.holder.is_none(), "{slot} is held by {:?}", s.holder);
            prop_assert!(s.index < size);
            prop_assert!(!w.slots.iter().any(|s| s.holder.as_deref() == Some(*node)), "{node} already holds a slot");
            // Only to a node that waits: Ready, not opted out, resting with
            // an update, its failures acknowledged, no grant on its spec.
            let n = &w.nodes[*node];
            let sh = &w.shadows[*node];
            let st = sh.status.as_ref().unwrap();
            prop_assert!(n.ready && !n.opted_out);
            prop_assert!(!n.unschedulable || settings.update_cordoned_nodes);
            prop_assert!(st.current_state.is_resting() && st.offered_version().is_some() && st.slot_requested_at.is_some());
            prop_assert!(sh.unacked_failure_is_none(), "{node} has an unacknowledged failure");
        }
        // Every unacknowledged failure is acknowledged by the pass.
        for (node, sh) in &w.shadows {
            let unacked = sh.status.as_ref().and_then(|s| s.last_failure.as_ref())
                .filter(|f| f.id > sh.spec.acknowledged_failure.unwrap_or(0));
            if let Some(f) = unacked {
                let acked = plan.actions.iter().any(|a| matches!(a,
                    Action::SetSpec { node: n, spec } if n == node && spec.acknowledged_failure == Some(f.id)));
                prop_assert!(acked, "the failure of {node} is not acknowledged");
            }
        }
    }

    #[test]
    fn explaining_a_pass_never_changes_what_it_decides((w, settings) in world()) {
        let (plan, why) = w.explain(&settings);
        prop_assert_eq!(&plan, &w.decide(&settings));
        // Every managed node is granted, next in the queue, or held, and a
        // node granted is not held.
        for node in w.nodes.keys() {
            let granted = why.granted.iter().any(|(n, _)| n == node);
            let queued = why.queue.contains(node);
            let held = why.held.get(node);
            prop_assert!(granted || queued || held.is_some(), "{node} is not explained: {why:?}");
            prop_assert!(!(granted && held.is_some()), "{node} granted and held: {why:?}");
        }
    }
}
