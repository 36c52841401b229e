//! The leader against a Kubernetes API (the simulator, or a real server with
//! `BRUPOP_TEST_KUBECONFIG`): concurrency, failover, restarts and windows.
//! The rollout rules themselves are unit-tested in `leader::decide`; the
//! whole-fleet behaviours (reclaim, stop after K and resume, pause/resume,
//! changing N live) are end-to-end scenarios in `tests/e2e`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use leader::act::Actor;
use leader::decide::{Action, Plan};
use leader::observe::Shared;
use model::policy::Phase;
use model::{FailureReason, ShadowState, UpdatePolicy, UpdatePolicySpec, names};
use serde_json::json;
use tests::harness::{Fleet, FleetOptions, wait_for};
use tests::hostsim::{CommandKind, Fault};

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_leaders_racing_for_one_slot_never_both_succeed() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let api = tests::backend::TestApi::start("leader-race").await.unwrap();
    api.install_crds().await.unwrap();
    let ns = api.namespace.clone();
    let leases: Api<Lease> = Api::namespaced(api.client.clone(), &ns);
    let mut policy = UpdatePolicy::new(names::POLICY_NAME, UpdatePolicySpec::default());
    policy.metadata.namespace = Some(ns.clone());
    let policies = Api::<UpdatePolicy>::namespaced(api.client.clone(), &ns);
    let mut policy = policies.create(&PostParams::default(), &policy).await.unwrap();
    policy.status = Some(Default::default());
    let policy = policies.replace_status(names::POLICY_NAME, &PostParams::default(), &policy).await.unwrap();
    const SLOTS: usize = 20;
    let mut slots = Vec::new();
    for i in 0..SLOTS {
        let lease: Lease = serde_json::from_value(json!({
            "metadata": {"name": names::slot_name(i as u32), "labels": {names::SLOT_LABEL: "true"}}, "spec": {}
        }))
        .unwrap();
        slots.push(leases.create(&PostParams::default(), &lease).await.unwrap());
    }
    // Two "leaders" (both believing they lead, as after a partition), each
    // granting every slot, from the same observed resourceVersions.
    let actor = |who: &str| {
        let (_tx, leading) = tokio::sync::watch::channel(true);
        let shared = Arc::new(Shared::default());
        shared.put(&policy);
        let actor = Actor::new(
            api.client.clone(),
            ns.clone(),
            model::selector::parse("bottlerocket.aws/updater-interface-version=2.0.0").unwrap(),
            shared,
            leading,
            who.to_owned(),
            leader::metrics::Metrics::new(),
        );
        (actor, _tx)
    };
    let (a, _ka) = actor("leader-a");
    let (b, _kb) = actor("leader-b");
    let plan = |node: &str| Plan {
        status: policy.status.clone().unwrap_or_default(),
        counted: vec![],
        completed: vec![],
        actions: slots
            .iter()
            .map(|l| Action::Grant {
                slot: l.metadata.name.clone().unwrap(),
                node: node.to_owned(),
                lease_duration: Duration::from_secs(60),
                spec: model::BottlerocketShadowSpec {
                    state: model::ShadowState::StagedAndPerformedUpdate,
                    version: Some("1.21.0".into()),
                    slot: l.metadata.name.clone(),
                    ..Default::default()
                },
                resource_version: l.metadata.resource_version.clone(),
                transitions: None,
                waited: None,
            })
            .collect(),
        wake_at: None,
    };
    let (pa, pb) = (plan("node-a"), plan("node-b"));
    let now = jiff::Timestamp::now();
    // Each plan stops at its first lost race; run both, concurrently, until neither can grant more.
    let (ra, rb) = tokio::join!(a.apply(&pa, Some(&policy), now), b.apply(&pb, Some(&policy), now));
    ra.unwrap();
    rb.unwrap();
    let mut holders = std::collections::BTreeMap::new();
    for l in leases.list(&Default::default()).await.unwrap().items {
        let spec = l.spec.unwrap_or_default();
        if let Some(h) = spec.holder_identity {
            *holders.entry(h).or_insert(0) += 1;
            assert_eq!(spec.lease_transitions, Some(1), "each slot granted exactly once");
        }
    }
    let granted: usize = holders.values().sum();
    assert!((1..=SLOTS).contains(&granted), "{holders:?}");
    let m_a = a.metrics.update_started.get();
    let m_b = b.metrics.update_started.get();
    assert_eq!((m_a + m_b) as usize, granted, "every successful grant is one slot; no slot was granted twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_within_one_lease_duration() {
    let fleet =
        Fleet::start("leader-standby", FleetOptions { nodes: 1, leaders: 2, agents: false, ..Default::default() })
            .await
            .unwrap();
    let leases: Api<Lease> = Api::namespaced(fleet.client().clone(), &fleet.ns);
    let holder = || async {
        leases
            .get_opt(names::LEADER_LEASE_NAME)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    };
    let first =
        wait_for("a leader to be elected", T, || async { holder().await.ok_or_else(|| "no holder".to_owned()) }).await;
    let active: usize = first.trim_start_matches("leader-").parse().unwrap();
    fleet.kill_leader(active);
    // --lease-duration is 3s in tests; allow one retry period and scheduling slack on top.
    let second = wait_for("the standby to take over", Duration::from_secs(8), || async {
        match holder().await {
            Some(h) if h != first => Ok(h),
            other => Err(format!("holder {other:?}")),
        }
    })
    .await;
    assert_ne!(second, first);
    // A leader stopped with SIGTERM releases the lease and exits 0.
    let new_active: usize = second.trim_start_matches("leader-").parse().unwrap();
    fleet.start_leader(active);
    assert!(fleet.stop_leader(new_active), "SIGTERM: exit 0");
    let third = wait_for("the restarted replica to take over the released lease", Duration::from_secs(8), || async {
        match holder().await {
            Some(h) if h == first => Ok(h),
            other => Err(format!("holder {other:?}")),
        }
    })
    .await;
    assert_eq!(third, first);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_survives_a_leader_restart_and_is_counted_once() {
    let mut opts = FleetOptions { nodes: 3, ..Default::default() };
    opts.leader_args.retain(|(k, _)| k != "failure-backoff" && k != "failure-backoff-max");
    opts.leader_args.push(("failure-backoff".into(), "10m".into()));
    opts.leader_args.push(("failure-backoff-max".into(), "1h".into()));
    let fleet = Fleet::start("leader-halt-restart", opts).await.unwrap();
    fleet.wait_reported(T).await;
    fleet.hosts.set_fault_all(&Fault::CommandFails {
        command: CommandKind::Activate,
        exit_status: 3,
        stderr: "boot flags".into(),
    });
    fleet.hosts.publish("1.21.0");
    let halted = wait_for("the fleet to halt", T, || async {
        let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
        if p.phase == Phase::Halted { Ok(p) } else { Err(format!("{p:?}")) }
    })
    .await;
    assert_eq!(halted.halt_reason, Some(FailureReason::ActivateFailed));
    fleet.kill_leader(0);
    fleet.start_leader(0);
    // The restarted leader takes over (its own lease expires first) and keeps the halt.
    wait_for("the restarted leader to lead and write its status", T, || async {
        let m = fleet.leader_metrics(0).await;
        if tests::harness::metric(&m, "brupop_leader") == Some(1.0)
            && tests::harness::metric(&m, "brupop_grants_halted") == Some(1.0)
        {
            Ok(())
        } else {
            Err(m
                .lines()
                .filter(|l| l.starts_with("brupop_leader") || l.starts_with("brupop_grants"))
                .collect::<Vec<_>>()
                .join(";"))
        }
    })
    .await;
    let after = fleet.policy().await.unwrap().status.unwrap();
    assert_eq!(after.phase, Phase::Halted);
    assert_eq!(after.halted_until, halted.halted_until, "the same halt");
    assert_eq!(after.consecutive_failures, 1, "the failure was not counted again");
    // The only slot ever held is the failed node's (released shortly after its report).
    let failed = after.recent_failures[0].node.clone();
    let others: Vec<_> =
        fleet.slots().await.into_iter().filter(|(_, h)| h.as_ref().is_some_and(|h| *h != failed)).collect();
    assert!(others.is_empty(), "nothing granted while halted: {others:?}");
    let granted_specs = fleet
        .shadows()
        .await
        .iter()
        .filter(|s| s.spec.slot.is_some() && s.node_name() != Some(failed.as_str()))
        .count();
    assert_eq!(granted_specs, 0);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_wait_for_a_window_and_stop_when_it_closes() {
    let fleet = Fleet::start("leader-window", FleetOptions { nodes: 4, ..Default::default() }).await.unwrap();
    // A window far away: nothing is granted, and the status says when it opens.
    fleet.patch_policy(json!({"updateWindows": ["Mon-Sun 00:00+1m Pacific/Kiritimati", "0 0 0 1 1 * 2099"]})).await;
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    let p = wait_for("the leader to report it is outside the window", T, || async {
        let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
        if p.phase == Phase::OutsideWindow && p.nodes_waiting == 4 { Ok(p) } else { Err(format!("{p:?}")) }
    })
    .await;
    assert!(p.next_window_start.is_some(), "{p:?}");
    assert!(p.message.contains("next opens"), "{}", p.message);
    assert_eq!(p.slots_held, 0);
    // A window that opens a few seconds from now (cron with seconds, the original operator's form).
    let later = jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_secs(4)).unwrap();
    let at = jiff::Timestamp::from_second(later.as_second()).unwrap(); // cron has whole seconds
    let z = at.to_zoned(jiff::tz::TimeZone::UTC);
    let cron = format!("{} {} {} {} {} * {}", z.second(), z.minute(), z.hour(), z.day(), z.month(), z.year());
    fleet.patch_policy(json!({"updateWindows": [cron]})).await;
    wait_for("the first grant once the window opens", T, || async {
        let held = fleet.slots().await.iter().filter(|(_, h)| h.is_some()).count();
        let done = fleet
            .shadows()
            .await
            .iter()
            .filter(|s| s.status.as_ref().is_some_and(|s| s.current_version == "1.21.0"))
            .count();
        if held + done > 0 { Ok(()) } else { Err(fleet.progress().await) }
    })
    .await;
    assert!(jiff::Timestamp::now() >= at, "no grant before the window opened at {at}:\n{}", fleet.logs(30));
    // Closing the window: the node updating finishes, nothing new starts.
    fleet.patch_policy(json!({"updateWindows": ["0 0 0 1 1 * 2099"]})).await;
    wait_for("the running update to finish with the window closed", T, || async {
        let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
        if p.phase == Phase::OutsideWindow && p.slots_held == 0 { Ok(()) } else { Err(format!("{p:?}")) }
    })
    .await;
    let updated = fleet
        .shadows()
        .await
        .iter()
        .filter(|s| {
            s.status.as_ref().is_some_and(|s| s.current_version == "1.21.0" && s.current_state == ShadowState::Idle)
        })
        .count();
    assert!((1..4).contains(&updated), "{updated} updated: the one granted inside the window finished, the rest wait");
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

/// The leader's default `--max-slot-hold` outlasts the longest walk the
/// agent's shipped deadlines allow, so a healthy walk is never cut.
#[test]
fn the_default_max_slot_hold_outlasts_the_longest_walk_of_the_shipped_agent() {
    use clap::Parser;
    let agent = nodeagent::config::Flags::try_parse_from(["nodeagent", "--node-name", "n"]).unwrap();
    let leader = leader::config::Cli::try_parse_from(["leader"]).unwrap().config;
    let walk = agent.longest_walk();
    assert_eq!(walk, Duration::from_secs(95 * 60), "docs/protocol.md section 3 quotes 95m");
    assert_eq!(leader.max_slot_hold, Duration::from_secs(120 * 60));
    assert!(leader.max_slot_hold > walk, "{:?} <= {walk:?}", leader.max_slot_hold);
}

/// The UpdatePolicy CRD with its bounds taken out, as a build before them
/// installed it: objects written under it may hold any number.
fn unbounded_policy_crd() -> String {
    let crd = model::crds().into_iter().find(|c| c.spec.names.kind == "UpdatePolicy").unwrap();
    let mut crd = serde_json::to_value(crd).unwrap();
    fn strip(v: &mut serde_json::Value) {
        if let Some(m) = v.as_object_mut() {
            for k in ["maximum", "minimum", "maxLength", "maxItems"] {
                m.remove(k);
            }
            m.values_mut().for_each(strip);
        } else if let Some(a) = v.as_array_mut() {
            a.iter_mut().for_each(strip);
        }
    }
    strip(&mut crd);
    serde_json::to_string(&crd).unwrap() // JSON is YAML
}

/// Any UpdatePolicy spec is either applied or `InvalidSpec`: a huge
/// count gives one slot per managed node, values beyond the CRD's bounds are
/// refused by the API server, and values an older CRD let in (a number no
/// field can hold) stop grants, naming the field, without stopping the
/// leader, which reads them again after a restart and recovers once fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_update_policies_are_applied_or_invalid_and_never_flood_or_stop_the_leader() {
    const NODES: usize = 3;
    let fleet = Fleet::start("leader-hostile-spec", FleetOptions { nodes: NODES, agents: false, ..Default::default() })
        .await
        .unwrap();
    let leases_at_most_nodes = || async {
        let n = fleet.slots().await.len();
        assert!(n <= NODES, "{n} slot Leases for {NODES} managed nodes");
        n
    };
    let status = || async { fleet.policy().await.and_then(|p| p.status).unwrap_or_default() };
    // The largest count the CRD allows: applied, one slot per managed node.
    fleet.patch_policy(json!({"maxConcurrentUpdates": model::policy::MAX_CONCURRENT_UPDATES_LIMIT})).await;
    wait_for("one slot per managed node", T, || async {
        let (st, leases) = (status().await, leases_at_most_nodes().await);
        if st.phase == Phase::Running && st.slots as usize == NODES && leases == NODES {
            Ok(())
        } else {
            Err(format!("{} Leases, {st:?}", leases))
        }
    })
    .await;
    // Beyond the bounds: the API server refuses the write, naming the field
    // (a string longer than the longest budget, "unlimited").
    let policies = Api::<UpdatePolicy>::namespaced(fleet.client().clone(), &fleet.ns);
    let pp = kube::api::PatchParams::default();
    for (field, value) in [
        ("maxConcurrentUpdates", json!(2147483647)),
        ("maxConcurrentUpdates", json!("999999999%")),
        ("maxConsecutiveFailures", json!(5000000000u64)),
    ] {
        let patch = json!({"spec": {field: value}});
        match policies.patch(names::POLICY_NAME, &pp, &kube::api::Patch::Merge(&patch)).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "{s:?}");
                assert!(s.message.contains(&format!("spec.{field}")), "{}", s.message);
            }
            other => panic!("{field}: {value} was not refused: {other:?}"),
        }
    }
    // Values an older CRD without bounds let in: stored, then the bounded CRD is back.
    fleet.api.install_crds_yaml(&unbounded_policy_crd()).await.unwrap();
    fleet.patch_policy(json!({"maxConcurrentUpdates": 2147483647, "maxConsecutiveFailures": 5000000000u64})).await;
    fleet.api.install_crds().await.unwrap();
    // Restarted, the leader lists the policy (reading it does not fail) and says what is wrong.
    fleet.kill_leader(0);
    fleet.start_leader(0);
    let invalid = wait_for("the policy to be InvalidSpec naming both fields", T, || async {
        let st = status().await;
        leases_at_most_nodes().await;
        let named =
            st.message.contains("spec.maxConsecutiveFailures") && st.message.contains("spec.maxConcurrentUpdates");
        if st.phase == Phase::InvalidSpec && named { Ok(st) } else { Err(format!("{st:?}")) }
    })
    .await;
    assert!(invalid.message.contains("5000000000"), "{}", invalid.message);
    // The restarted process itself decided so (its metrics start empty):
    // it listed the policy, leads, and keeps running.
    wait_for("the restarted leader to decide InvalidSpec", T, || async {
        let m = fleet.leader_metrics(0).await;
        let phase = tests::harness::metric(&m, "brupop_rollout_phase{phase=\"InvalidSpec\"}");
        let leads = tests::harness::metric(&m, "brupop_leader");
        if phase == Some(1.0) && leads == Some(1.0) {
            Ok(())
        } else {
            Err(format!("phase {phase:?}, leader {leads:?}"))
        }
    })
    .await;
    assert!(fleet.leaders[0].lock().unwrap().is_running(), "the leader keeps running:\n{}", fleet.logs(30));
    // Fixed, the policy is applied again.
    fleet.patch_policy(json!({"maxConcurrentUpdates": 2, "maxConsecutiveFailures": 5})).await;
    wait_for("the fixed policy to be applied", T, || async {
        let (st, leases) = (status().await, leases_at_most_nodes().await);
        if st.phase == Phase::Running && st.slots == 2 { Ok(()) } else { Err(format!("{leases} Leases, {st:?}")) }
    })
    .await;
    assert!(fleet.leaders[0].lock().unwrap().is_running());
    fleet.stop().await;
}

/// The leader reads no unmanaged Node per pass: it knows which Nodes exist
/// from a metadata watch; it deletes the shadow of a Node that left the
/// selector (one read confirms it) and of a deleted Node when the watch says
/// so; an unmanaged Node without a shadow then costs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmanaged_nodes_cost_no_reads_per_pass_and_their_shadows_go() {
    let fleet = Fleet::start("leader-node-reads", FleetOptions { nodes: 3, agents: false, ..Default::default() })
        .await
        .unwrap();
    let shadows = fleet.shadows_api();
    for n in &fleet.nodes {
        let mut sh = model::BottlerocketShadow::new(&names::shadow_name(n), Default::default());
        sh.metadata.namespace = Some(fleet.ns.clone());
        shadows.create(&PostParams::default(), &sh).await.unwrap();
    }
    let status = || async { fleet.policy().await.and_then(|p| p.status).unwrap_or_default() };
    wait_for("the leader to manage three nodes", T, || async {
        let st = status().await;
        if st.managed_nodes == 3 { Ok(()) } else { Err(format!("{st:?}")) }
    })
    .await;
    let leader_user = format!("system:serviceaccount:{}:brupop-leader", fleet.ns);
    let node_gets = || fleet.api.sim().map(|s| s.request_log().count_by("get", "nodes", &leader_user));
    let shadow_gone = |node: String| {
        let shadows = shadows.clone();
        async move {
            match shadows.get_opt(&names::shadow_name(&node)).await {
                Ok(None) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    };
    // A node leaves the selector (its fleet label goes); it still exists.
    let left = fleet.nodes[0].clone();
    let start = node_gets();
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(fleet.client().clone());
    let unlabel = json!({"metadata": {"labels": {"brupop-test": null}}});
    nodes.patch(&left, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&unlabel)).await.unwrap();
    wait_for("the node that left the selector to lose its shadow", T, || shadow_gone(left.clone())).await;
    wait_for("the leader to manage two nodes", T, || async {
        let st = status().await;
        if st.managed_nodes == 2 { Ok(()) } else { Err(format!("{st:?}")) }
    })
    .await;
    let before = node_gets();
    if let (Some(start), Some(before)) = (start, before) {
        assert!(before - start <= 1, "one read to confirm it left, got {}", before - start);
    }
    // Ten passes, each one seen in the status.
    for i in 0..10 {
        let paused = i % 2 == 0;
        fleet.patch_policy(json!({"paused": paused})).await;
        let want = if paused { Phase::Paused } else { Phase::Running };
        wait_for("the pass to show the change", T, || async {
            let st = status().await;
            if st.phase == want { Ok(()) } else { Err(format!("{st:?}")) }
        })
        .await;
    }
    if let (Some(before), Some(after)) = (before, node_gets()) {
        assert_eq!(after - before, 0, "the leader read Nodes during passes");
        let all = fleet.api.sim().unwrap().request_log();
        assert!(all.by_user(&leader_user) > 0, "the leader is {leader_user}");
    }
    assert!(shadows.get_opt(&names::shadow_name(&left)).await.unwrap().is_none(), "no shadow came back");
    // A deleted Node's shadow goes (from the watch's delete event).
    let gone = fleet.nodes[1].clone();
    nodes.delete(&gone, &Default::default()).await.unwrap();
    wait_for("the deleted Node's shadow to go", T, || shadow_gone(gone.clone())).await;
    if let (Some(before), Some(after)) = (before, node_gets()) {
        assert!(after - before <= 1, "one read to confirm the deletion, got {}", after - before);
    }
    let kept = fleet.shadows().await.len();
    assert_eq!(kept, 1, "the managed node keeps its own");
    fleet.stop().await;
}
