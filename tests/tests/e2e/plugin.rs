//! `kubectl brupop` against a running fleet: the binary as a user runs it
//! (the test's kubeconfig, `-n` the fleet's namespace), its output read as
//! a user would, its writes checked on the objects.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubectl_brupop::StatusReport;
use model::ShadowState;
use model::policy::{CanaryState, Phase};
use tests::harness::{Fleet, FleetOptions, bins, wait_for};
use tests::hostsim::{CommandKind, Fault};

use super::T;

/// Runs the plugin; returns (success, stdout, stderr).
async fn brupop(fleet: &Fleet, args: &[&str]) -> (bool, String, String) {
    let kubeconfig = fleet.api.kubeconfig_path();
    let mut cmd = std::process::Command::new(bins::plugin());
    cmd.arg("--kubeconfig").arg(kubeconfig).args(["-n", &fleet.ns]).args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().expect("runs kubectl-brupop");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// Runs the plugin and expects success; returns its output.
async fn ok(fleet: &Fleet, args: &[&str]) -> String {
    let (ok, out, err) = brupop(fleet, args).await;
    assert!(ok, "kubectl brupop {args:?} failed: {err}{out}");
    out
}

async fn status(fleet: &Fleet) -> StatusReport {
    let out = ok(fleet, &["status", "-o", "json"]).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status -o json does not parse: {e}: {out}"))
}

/// Pause, set the slots, opt a node out, resume, opt it in: each command
/// says what it changed, the objects show it, and `status` and `history`
/// tell the story; bad input and an unknown node are clear errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_pauses_sets_slots_opts_out_and_resumes_a_rollout() {
    let fleet = Fleet::start("plugin", FleetOptions { nodes: 3, slots: 1, ..Default::default() }).await.unwrap();
    let nodes: Vec<String> = fleet.hosts.hosts().iter().map(|h| h.name().to_owned()).collect();
    fleet.wait_reported(T).await;
    let out = ok(&fleet, &["pause"]).await;
    assert!(out.contains("paused: spec.paused false -> true"), "{out}");
    assert!(ok(&fleet, &["pause"]).await.contains("already paused"));
    fleet.hosts.publish("1.21.0");
    let paused = wait_for("status to show the paused rollout with 3 nodes waiting", T, || async {
        let s = status(&fleet).await;
        if s.phase == "Paused" && s.nodes_waiting == 3 { Ok(s) } else { Err(format!("{s:?}")) }
    })
    .await;
    assert!(paused.progress.iter().any(|p| p.offered.as_deref() == Some("1.21.0") && p.nodes == 3), "{paused:?}");
    let text = ok(&fleet, &["status"]).await;
    for want in
        ["Rollout ", ": Paused", "Slots: 1 (0 held, 1 free)", "3 managed, 3 waiting", "Idle on 1.20.0 (offered 1.21.0)"]
    {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }
    // Slots: a count, then nonsense.
    fleet.monitor.allow_slots(2);
    let out = ok(&fleet, &["set-slots", "2"]).await;
    assert!(out.contains("-> 2"), "{out}");
    assert_eq!(fleet.policy().await.unwrap().spec.max_concurrent_updates, Some(IntOrString::Int(2)));
    let (ok_, _, err) = brupop(&fleet, &["set-slots", "lots"]).await;
    assert!(!ok_ && err.contains("set-slots lots"), "{err}");
    // Opt-out: one node; an unknown node is named.
    let out = ok(&fleet, &["opt-out", &nodes[0]]).await;
    assert!(out.contains("opted out"), "{out}");
    let (ok_, _, err) = brupop(&fleet, &["opt-out", "no-such-node"]).await;
    assert!(!ok_ && err.contains("no node no-such-node"), "{err}");
    // Resume: the others update, the opted-out node waits.
    let out = ok(&fleet, &["resume"]).await;
    assert!(out.contains("spec.paused true -> false"), "{out}");
    wait_for("the two nodes not opted out to update", T, || async {
        let mut on = Vec::new();
        for n in &nodes[1..] {
            let sh = fleet.shadow(n).await.and_then(|s| s.status);
            on.push(sh.is_some_and(|s| s.current_version == "1.21.0" && s.current_state == ShadowState::Idle));
        }
        if on.iter().all(|b| *b) { Ok(()) } else { Err(fleet.progress().await) }
    })
    .await;
    let v = fleet.shadow(&nodes[0]).await.and_then(|s| s.status).map(|s| s.current_version);
    assert_eq!(v.as_deref(), Some("1.20.0"), "the opted-out node did not update");
    assert!(ok(&fleet, &["resume"]).await.contains("nothing to resume"));
    let out = ok(&fleet, &["opt-in", &nodes[0]]).await;
    assert!(out.contains("opted in again"), "{out}");
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    // History: the phase changes, in time order, as text and as JSON.
    let hist = wait_for("history to show the pause", T, || async {
        let out = ok(&fleet, &["history", "-o", "json"]).await;
        let entries: Vec<serde_json::Value> = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
        let reasons: Vec<String> = entries.iter().filter_map(|e| e["reason"].as_str().map(str::to_owned)).collect();
        if reasons.iter().any(|r| r == "Paused") { Ok(reasons) } else { Err(format!("{reasons:?}")) }
    })
    .await;
    let paused_at = hist.iter().position(|r| r == "Paused").unwrap();
    assert!(hist[paused_at..].iter().any(|r| r == "Running"), "running again after the pause: {hist:?}");
    assert!(ok(&fleet, &["history"]).await.contains("UpdatePolicy/default"));
    // Another namespace: nothing installed there.
    let kubeconfig = fleet.api.kubeconfig_path();
    let mut cmd = std::process::Command::new(bins::plugin());
    cmd.arg("--kubeconfig").arg(kubeconfig).args(["-n", "no-operator-here", "status"]);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no UpdatePolicy default in namespace no-operator-here"), "{err}");
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

/// A canary that fails stops the rollout: `status` shows it, `history`
/// has the canary's failure, `resume` sets the resume request, and once
/// the canary passes `skip-soak` ends an hour's soak at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_resumes_a_stopped_rollout_and_skips_a_soak() {
    let fleet = Fleet::start("plugin-canary", FleetOptions { nodes: 3, slots: 2, ..Default::default() }).await.unwrap();
    fleet.patch_policy(serde_json::json!({"canary": {"nodes": 1, "soak": "1h"}})).await;
    fleet.wait_reported(T).await;
    let (ok_, _, err) = brupop(&fleet, &["skip-soak"]).await;
    assert!(!ok_ && err.contains("no canary is soaking"), "{err}");
    let fault = Fault::CommandFails {
        command: CommandKind::Prepare,
        exit_status: 1,
        stderr: "Failed to download update".into(),
    };
    fleet.hosts.set_fault_all(&fault);
    fleet.hosts.publish("1.21.0");
    let stopped = wait_for("status to show the stop", T, || async {
        let s = status(&fleet).await;
        if s.phase == "Stopped" { Ok(s) } else { Err(format!("{s:?}")) }
    })
    .await;
    assert!(stopped.message.contains("canary of 1.21.0 failed"), "{}", stopped.message);
    assert_eq!(stopped.canaries[0].state, CanaryState::Failed);
    assert_eq!(stopped.recent_failures.len(), 1, "{stopped:?}");
    let text = ok(&fleet, &["status"]).await;
    assert!(text.contains("Canary 1.21.0: Failed") && text.contains("PrepareFailed"), "{text}");
    let text = ok(&fleet, &["plan"]).await;
    assert!(text.contains("Phase: Stopped") && text.contains("grants do not run: Stopped"), "{text}");
    let hist = wait_for("history to show the canary's failure", T, || async {
        let out = ok(&fleet, &["history"]).await;
        if out.contains("CanaryFailed") && out.contains("PrepareFailed") { Ok(out) } else { Err(out) }
    })
    .await;
    assert!(hist.contains("canary of 1.21.0 failed"), "{hist}");
    for h in fleet.hosts.hosts() {
        h.clear_faults();
    }
    let out = ok(&fleet, &["resume"]).await;
    assert!(out.contains("spec.resumeRequest set to") && out.contains("ends the stop"), "{out}");
    let soaking = wait_for("the canary to pass and soak", T, || async {
        let s = status(&fleet).await;
        match s.canaries.first() {
            Some(c) if c.state == CanaryState::Soaking => Ok(s),
            _ => Err(format!("{s:?}")),
        }
    })
    .await;
    assert_eq!(soaking.phase, Phase::Running.as_str());
    assert!(ok(&fleet, &["status"]).await.contains("Canary 1.21.0: Soaking until"));
    // The plan names the soak for the nodes it holds, and grants nothing.
    let plan: kubectl_brupop::plan::PlanReport =
        serde_json::from_str(&ok(&fleet, &["plan", "-o", "json"]).await).unwrap();
    let soaked: Vec<&str> = plan
        .held
        .iter()
        .filter(|h| h.why.starts_with("canary of 1.21.0 Soaking until"))
        .map(|h| h.node.as_str())
        .collect();
    // (The node whose canary failed may still be backing off, not asking.)
    assert!(!soaked.is_empty() && plan.granted.is_empty(), "{plan:?}");
    let out = ok(&fleet, &["skip-soak"]).await;
    assert!(out.contains("spec.canary.skipSoak set to 1.21.0"), "{out}");
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    assert_eq!(status(&fleet).await.canaries[0].state, CanaryState::Passed);
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

/// While paused with every node waiting, `plan` names the pause for each
/// node and gives the order they will be served in; `explain` says the
/// same of one node with its host's offer. Resumed, the leader grants in
/// exactly that order (one slot: one node at a time), and `status` then
/// has an ETA from the walks it measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_names_what_holds_each_node_and_predicts_the_grant_order() {
    let fleet = Fleet::start("plugin-plan", FleetOptions { nodes: 4, slots: 1, ..Default::default() }).await.unwrap();
    let nodes: Vec<String> = fleet.hosts.hosts().iter().map(|h| h.name().to_owned()).collect();
    fleet.wait_reported(T).await;
    ok(&fleet, &["pause"]).await;
    fleet.hosts.publish("1.21.0");
    let plan: kubectl_brupop::plan::PlanReport = wait_for("plan to queue all four nodes", T, || async {
        let out = ok(&fleet, &["plan", "-o", "json"]).await;
        let p: kubectl_brupop::plan::PlanReport = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
        if p.queue.len() == 4 { Ok(p) } else { Err(out) }
    })
    .await;
    assert_eq!(plan.phase, "Paused");
    assert!(plan.granted.is_empty(), "{plan:?}");
    for h in &plan.held {
        assert_eq!(h.why, "grants do not run: Paused", "{plan:?}");
    }
    let text = ok(&fleet, &["plan"]).await;
    assert!(text.contains("Queue (serving order):") && text.contains("grants do not run: Paused"), "{text}");
    let out = ok(&fleet, &["explain", &nodes[1]]).await;
    for want in ["state: Idle on 1.20.0", "offered: 1.21.0", "now: grants do not run: Paused"] {
        assert!(out.contains(want), "{want:?} in:\n{out}");
    }
    let (ok_, _, err) = brupop(&fleet, &["explain", "no-such-node"]).await;
    assert!(!ok_ && err.contains("no node no-such-node"), "{err}");
    ok(&fleet, &["resume"]).await;
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    let order: Vec<String> = fleet.monitor.grant_log().into_iter().map(|(n, _)| n).collect();
    assert_eq!(order, plan.queue, "the leader granted in the planned order");
    // Nothing left: no ETA; the walks were measured.
    let s = status(&fleet).await;
    assert_eq!(s.eta, None, "{s:?}");
    let policy = fleet.policy().await.unwrap().status.unwrap();
    assert_eq!(policy.recent_walks.len(), 4, "{:?}", policy.recent_walks);
    assert!(policy.leader_defaults.is_some());
    let out = ok(&fleet, &["plan"]).await;
    assert!(out.contains("no node waits for a slot") && out.contains("no newer version offered"), "{out}");
    fleet.monitor.assert_clean();
    fleet.stop().await;
}
