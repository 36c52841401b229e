//! One misbehaving node, or something with the authproxy's rights, must not
//! stop or steer the fleet: fake failures from a node never granted, a slot
//! Lease handed out behind the leader's back with a forged shadow spec, and
//! a node re-created under a name whose failures were counted before.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use model::policy::Phase;
use model::{BottlerocketShadow, FailureReason, ShadowState, names};
use serde_json::json;
use tests::harness::fleet::{AGENT_SA, AUDIENCE, agent_tls, token};
use tests::harness::tlsclient::client;
use tests::harness::{Fleet, FleetOptions, kubelet, metric, wait_for};
use tests::hostsim::{CommandKind, Fault};

use super::{T, total};

/// Waits until each of `nodes` runs `version` and rests.
async fn wait_updated(fleet: &Fleet, nodes: &[String], version: &str) {
    wait_for(&format!("{nodes:?} to run {version}"), T * 2, || async {
        for n in nodes {
            let st = fleet.shadow(n).await.and_then(|s| s.status);
            if !st.is_some_and(|s| s.current_version == version && s.current_state == ShadowState::Idle) {
                return Err(fleet.progress().await);
            }
        }
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_never_granted_cannot_halt_the_fleet_with_fake_failures() {
    let fleet = Fleet::start("fake-failures", FleetOptions { nodes: 3, ..Default::default() }).await.unwrap();
    fleet.wait_reported(T).await;
    // The agent of node 0 is replaced by something that only reports, as a
    // compromised agent with the node's own credentials could.
    let liar = fleet.nodes[0].clone();
    fleet.kill_agent(&liar);
    let tls = agent_tls(&fleet);
    let http = client(&tls.ca(), Some(&tls));
    let pod = format!("brupop-agent-{liar}");
    let tok = token(fleet.client(), &fleet.ns, AGENT_SA, Some(AUDIENCE), Some((&pod, &fleet.agent_pods[&liar])))
        .await
        .unwrap();
    let url = format!("https://{}/v1/nodes/{liar}/status", fleet.authproxy_addr);
    for id in 1..=3u64 {
        let report = json!({"state": "ErrorReset", "currentVersion": "1.20.0", "targetVersion": "1.21.0",
            "failure": {"id": id, "reason": "RolledBack", "message": "a lie"}});
        let resp = http.post(&url).bearer_auth(&tok).json(&report).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().await.unwrap_or_default());
        wait_for(&format!("fake failure {id} to be acknowledged"), T, || async {
            let ack = fleet.shadow(&liar).await.and_then(|s| s.spec.acknowledged_failure);
            if ack == Some(id) { Ok(()) } else { Err(format!("acknowledged {ack:?}")) }
        })
        .await;
    }
    let p = fleet.policy().await.and_then(|p| p.status).unwrap();
    assert_eq!((p.phase, p.consecutive_failures), (Phase::Running, 0), "{p:?}");
    let lies: Vec<_> = p.recent_failures.iter().filter(|f| f.node == liar).collect();
    assert_eq!(lies.len(), 3, "{p:?}");
    assert!(lies.iter().all(|f| f.ungranted && f.reason == FailureReason::RolledBack), "{lies:?}");
    // The rest of the fleet updates as if nothing happened.
    fleet.hosts.publish("1.21.0");
    wait_updated(&fleet, &fleet.nodes[1..], "1.21.0").await;
    let m = fleet.leader_metrics(0).await;
    assert_eq!(total(&m, "brupop_update_failures_total"), 0.0, "{m}");
    assert_eq!(metric(&m, "brupop_ungranted_failures_total{reason=\"RolledBack\"}"), Some(3.0), "{m}");
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_handed_out_behind_the_leaders_back_is_revoked_and_the_forged_spec_reset() {
    let fleet = Fleet::start("hijack", FleetOptions { nodes: 2, ..Default::default() }).await.unwrap();
    fleet.wait_reported(T).await;
    fleet.patch_policy(json!({"paused": true})).await;
    fleet.hosts.publish("1.21.0");
    // With the authproxy's own credentials (it may create shadows and update
    // Leases): a node without an agent, a shadow created with a grant in its
    // spec, and the slot Lease handed to it, all while the rollout is paused.
    let rogue = format!("rogue-{}", fleet.run);
    let nodes: Api<Node> = Api::all(fleet.client().clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": rogue, "labels": {
        names::NODE_OPT_IN_LABEL: names::NODE_OPT_IN_VALUE, "brupop-test": fleet.run}}}))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    kubelet::set_node_ready(fleet.client(), &rogue, true).await.unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(fleet.dir.join("kubeconfig-authproxy")).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    let as_authproxy = kube::Client::try_from(cfg).unwrap();
    let shadows: Api<BottlerocketShadow> = Api::namespaced(as_authproxy.clone(), &fleet.ns);
    let forged: BottlerocketShadow = serde_json::from_value(json!({
        "metadata": {"name": names::shadow_name(&rogue), "labels": {names::SHADOW_NODE_LABEL: rogue}},
        "spec": {"state": "StagedAndPerformedUpdate", "version": "1.21.0", "slot": "brupop-slot-0"},
    }))
    .unwrap();
    shadows.create(&PostParams::default(), &forged).await.unwrap();
    let leases: Api<Lease> = Api::namespaced(as_authproxy, &fleet.ns);
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(jiff::Timestamp::now());
    let hijack =
        json!({"spec": {"holderIdentity": rogue, "acquireTime": now, "renewTime": now, "leaseDurationSeconds": 600}});
    leases.patch("brupop-slot-0", &PatchParams::default(), &Patch::Merge(&hijack)).await.unwrap();
    // Revoked long before the hijacked Lease (ten minutes) would expire.
    wait_for("the hijacked slot to be revoked and the forged spec reset", Duration::from_secs(30), || async {
        let holder = fleet.slots().await.into_iter().find(|(n, _)| n == "brupop-slot-0").and_then(|(_, h)| h);
        let spec = fleet.shadow(&rogue).await.map(|s| s.spec);
        let reset = spec.as_ref().is_some_and(|s| s.slot.is_none() && s.state == ShadowState::Idle);
        if holder.is_none() && reset { Ok(()) } else { Err(format!("holder {holder:?}, spec {spec:?}")) }
    })
    .await;
    let m = fleet.leader_metrics(0).await;
    assert_eq!(metric(&m, "brupop_slots_revoked_total"), Some(1.0), "{m}");
    assert_eq!(total(&m, "brupop_update_started_total"), 0.0, "paused: nothing granted: {m}");
    // The paused rollout resumes normally; the rogue node (no agent) never walks.
    fleet.patch_policy(json!({"paused": false})).await;
    wait_updated(&fleet, &fleet.nodes, "1.21.0").await;
    let p = fleet.policy().await.and_then(|p| p.status).unwrap();
    assert!(p.recent_failures.is_empty(), "{:?}", p.recent_failures);
    fleet.monitor.assert_clean();
    let _ = nodes.delete(&rogue, &DeleteParams::default()).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_re_created_under_a_reused_name_has_its_first_failure_counted() {
    let opts = FleetOptions { nodes: 1, ..Default::default() }
        .leader_flag("failure-backoff", "2s")
        .leader_flag("max-consecutive-failures", "5");
    let fleet = Fleet::start("reused-name", opts).await.unwrap();
    fleet.wait_reported(T).await;
    let node = fleet.nodes[0].clone();
    let fault = Fault::CommandFails {
        command: CommandKind::Prepare,
        exit_status: 1,
        stderr: "Failed to download update".into(),
    };
    fleet.hosts.set_fault_all(&fault);
    fleet.hosts.publish("1.21.0");
    let first = wait_for("the first failure to be counted and the walk to end", T, || async {
        let sh = fleet.shadow(&node).await.ok_or("no shadow")?;
        let released = fleet.slots().await.iter().all(|(_, h)| h.is_none());
        let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
        if sh.spec.acknowledged_failure == Some(1) && released && p.consecutive_failures == 1 {
            Ok(sh.metadata.uid.unwrap())
        } else {
            Err(format!("{:?} {p:?}", sh.spec))
        }
    })
    .await;
    // The node is replaced by one of the same name: a new shadow, whose
    // failure ids start again at 1.
    fleet.shadows_api().delete(&names::shadow_name(&node), &DeleteParams::default()).await.unwrap();
    let second = wait_for("the new node's first failure to be counted", T, || async {
        let sh = fleet.shadow(&node).await.ok_or("no shadow")?;
        let uid = sh.metadata.uid.clone().unwrap();
        let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
        let counted = p.recent_failures.iter().any(|f| f.key == format!("{uid}#1"));
        if uid != first && counted { Ok(p) } else { Err(format!("{uid} {p:?}")) }
    })
    .await;
    assert_eq!(second.consecutive_failures, 2, "{second:?}");
    assert!(matches!(second.phase, Phase::Halted), "{second:?}");
    assert!(second.recent_failures.iter().any(|f| f.key == format!("{first}#1")), "{second:?}");
    for h in fleet.hosts.hosts() {
        h.clear_faults();
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_renews_its_slot_forever_loses_it_at_max_slot_hold_and_is_backed_off() {
    let opts = FleetOptions { nodes: 3, ..Default::default() }
        .leader_flag("failure-backoff", "90s")
        .leader_flag("failure-backoff-max", "180s");
    let fleet = Fleet::start("renews-forever", opts).await.unwrap();
    fleet.wait_reported(T).await;
    // The cap is five slot leases here (60 at the shipped defaults).
    fleet.patch_policy(json!({"maxSlotHold": "15s"})).await;
    let hog = fleet.nodes[0].clone();
    fleet.kill_agent(&hog);
    let tls = agent_tls(&fleet);
    let http = client(&tls.ca(), Some(&tls));
    let pod = format!("brupop-agent-{hog}");
    let tok = token(fleet.client(), &fleet.ns, AGENT_SA, Some(AUDIENCE), Some((&pod, &fleet.agent_pods[&hog])))
        .await
        .unwrap();
    let url = |ep: &str| format!("https://{}/v1/nodes/{hog}/{ep}", fleet.authproxy_addr);
    let ask = json!({"state": "Idle", "currentVersion": "1.20.0", "targetVersion": "1.21.0"});
    let resp = http.post(url("slot/request")).bearer_auth(&tok).json(&ask).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().await.unwrap_or_default());
    let slot = wait_for("the hog to be granted", T, || async {
        fleet.shadow(&hog).await.and_then(|s| s.spec.slot).ok_or_else(|| "not yet".to_owned())
    })
    .await;
    let granted = std::time::Instant::now();
    // It renews on schedule, for ever, and never walks.
    let renewals = {
        let (http, tok, url, slot) = (http.clone(), tok.clone(), url("slot/renew"), slot.clone());
        tokio::spawn(async move {
            // Every third of its 3 s lease, as the agent's renewal rule does.
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                let body = json!({"slot": slot, "durationSeconds": 3});
                if let Ok(r) = http.post(&url).bearer_auth(&tok).json(&body).send().await
                    && r.status().as_u16() == 409
                {
                    return;
                }
            }
        })
    };
    fleet.hosts.publish("1.21.0");
    tokio::time::timeout(T, renewals).await.expect("renewals refused once the slot is taken back").unwrap();
    let held = granted.elapsed();
    assert!(held >= Duration::from_secs(14), "taken back after {held:?}, before maxSlotHold");
    let others = fleet.nodes[1..].to_vec();
    wait_updated(&fleet, &others, "1.21.0").await;
    let p = fleet.policy().await.and_then(|p| p.status).unwrap();
    let cut: Vec<_> = p.recent_failures.iter().filter(|f| f.reason == FailureReason::SlotHeldTooLong).collect();
    assert_eq!(cut.len(), 1, "{p:?}");
    assert_eq!(cut[0].node, hog);
    assert_eq!(p.phase, Phase::Running, "node-only: {p:?}");
    let backoff = p.node_backoffs.iter().find(|b| b.node == hog).expect("the hog is backed off");
    assert!(backoff.until.0 > jiff::Timestamp::now(), "{backoff:?}");
    let m = fleet.leader_metrics(0).await;
    assert_eq!(total(&m, "brupop_update_started_total"), 3.0, "the hog was not granted again: {m}");
    assert_eq!(metric(&m, "brupop_update_failures_total{reason=\"SlotHeldTooLong\"}"), Some(1.0), "{m}");
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reboot_still_pending_keeps_its_cordon_and_slot_until_the_node_reboots() {
    // The shipped ratios: --reboot-timeout is 2.5 leases; this host takes
    // 8 leases to go down after accepting the reboot (a stuck shutdown).
    let opts = FleetOptions { nodes: 2, ..Default::default() };
    let fleet = Fleet::start("reboot-pending", opts).await.unwrap();
    fleet.wait_reported(T).await;
    fleet.hosts.set_fault_all(&Fault::RebootDelayed(tests::harness::TEST_LEASE * 8));
    fleet.hosts.publish("1.21.0");
    let node = wait_for("a reboot to be pending", T, || async {
        for n in &fleet.nodes {
            if fleet.shadow(n).await.and_then(|s| s.status?.reboot_pending).is_some() {
                return Ok(n.clone());
            }
        }
        Err(fleet.progress().await)
    })
    .await;
    // Only the pending node's host is stuck; the next reboots normally.
    for h in fleet.hosts.hosts() {
        h.clear_faults();
    }
    // Counted against the walk (fleet-halting; the scaled halt is short).
    wait_for("the RebootFailed to be counted", T, || async {
        let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
        let counted = p.recent_failures.iter().any(|f| f.node == node && f.reason == FailureReason::RebootFailed);
        if counted && p.consecutive_failures >= 1 { Ok(()) } else { Err(format!("{p:?}")) }
    })
    .await;
    assert!(fleet.cordoned(&node).await, "the node stays cordoned (drained) while its host may still go down");
    let holder = |slots: Vec<(String, Option<String>)>| slots.into_iter().find_map(|(_, h)| h);
    assert_eq!(holder(fleet.slots().await).as_deref(), Some(node.as_str()), "and keeps its slot");
    wait_for("the pending reboot on the leader's gauge", T, || async {
        let m = fleet.leader_metrics(0).await;
        if metric(&m, "brupop_reboots_pending") == Some(1.0) { Ok(()) } else { Err(m) }
    })
    .await;
    // A cap the walk is already past: a pending reboot is exempt from it.
    fleet.patch_policy(json!({"maxSlotHold": "4s"})).await;
    wait_for("the leader to apply the new cap", T, || async {
        let m = fleet.leader_metrics(0).await;
        if metric(&m, "brupop_max_slot_hold_seconds") == Some(4.0) { Ok(()) } else { Err(m) }
    })
    .await;
    let capped = jiff::Timestamp::now();
    let leases: Api<Lease> = Api::namespaced(fleet.client().clone(), &fleet.ns);
    wait_for("the pending node to keep renewing its slot past maxSlotHold", T, || async {
        let l = leases.get("brupop-slot-0").await.map_err(|e| e.to_string())?;
        let spec = l.spec.unwrap_or_default();
        let renewed = spec.renew_time.map(|t| t.0).unwrap_or_default();
        let held = spec.holder_identity.as_deref() == Some(node.as_str());
        if !held {
            panic!("the slot of a pending reboot was taken back: {:?}", fleet.progress().await);
        }
        if renewed > capped + tests::harness::TEST_LEASE { Ok(()) } else { Err(format!("renewed {renewed}")) }
    })
    .await;
    // Once the node reboots the cap applies again: give the walk room to end.
    fleet.patch_policy(json!({"maxSlotHold": "1h"})).await;
    // The host goes down at last and boots the new version: the walk ends.
    wait_for("the node to reboot, lift its cordon and release its slot", T, || async {
        let st = fleet.shadow(&node).await.and_then(|s| s.status).ok_or("no status")?;
        let released = holder(fleet.slots().await).as_deref() != Some(node.as_str());
        let done = st.reboot_pending.is_none() && st.current_version == "1.21.0";
        if done && released && !fleet.cordoned(&node).await { Ok(()) } else { Err(fleet.progress().await) }
    })
    .await;
    let p = fleet.policy().await.and_then(|p| p.status).unwrap();
    assert!(!p.recent_failures.iter().any(|f| f.reason == FailureReason::SlotHeldTooLong), "{p:?}");
    let other: Vec<String> = fleet.nodes.iter().filter(|n| **n != node).cloned().collect();
    wait_updated(&fleet, &other, "1.21.0").await;
    fleet.monitor.assert_clean();
    fleet.stop().await;
}
