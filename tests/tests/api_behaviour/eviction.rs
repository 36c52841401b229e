//! Evictions against PodDisruptionBudgets, as kube-apiserver's eviction
//! handler and the disruption controller's arithmetic decide them.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::Status;
use serde_json::{Value, json};
use tests::backend::TestApi;

use crate::{api, create_node, create_pod, obj, set_pod_ready};

async fn evict(api: &TestApi, pod: &str, grace: Option<i64>) -> Result<Status, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), &api.namespace);
    let mut ev =
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": api.namespace}});
    if let Some(g) = grace {
        ev["deleteOptions"] = json!({"gracePeriodSeconds": g});
    }
    pods.create_subresource("eviction", pod, &PostParams::default(), &ev).await
}

async fn pdb(api: &TestApi, name: &str, spec: Value) -> PodDisruptionBudget {
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(api.client.clone(), &api.namespace);
    pdbs.create(&PostParams::default(), &obj(json!({"metadata": {"name": name}, "spec": spec}))).await.unwrap()
}

async fn pdb_status(api: &TestApi, name: &str) -> Value {
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(api.client.clone(), &api.namespace);
    serde_json::to_value(pdbs.get(name).await.unwrap().status.unwrap()).unwrap()
}

async fn web_pod(api: &TestApi, name: &str, node: Option<&str>, ready: bool) {
    create_pod(api, name, node, &[("app", "web")], "default").await;
    set_pod_ready(api, name, ready).await;
}

fn counts(st: &Value) -> (i64, i64, i64, i64) {
    let n = |k: &str| st[k].as_i64().unwrap_or(0);
    (n("disruptionsAllowed"), n("currentHealthy"), n("desiredHealthy"), n("expectedPods"))
}

#[tokio::test]
async fn an_eviction_that_would_violate_the_budget_is_429_with_its_cause() {
    let api = api("evict-429").await;
    pdb(&api, "web", json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}})).await;
    web_pod(&api, "w1", None, true).await;
    web_pod(&api, "w2", None, true).await;
    let s = crate::failed(evict(&api, "w1", None).await);
    assert_eq!((s.code, s.reason.as_str()), (429, "TooManyRequests"));
    assert_eq!(s.message, "Cannot evict pod as it would violate the pod's disruption budget.");
    let cause = &s.details.unwrap().causes[0];
    assert_eq!(cause.reason, "DisruptionBudget");
    assert_eq!(cause.message, "The disruption budget web needs 2 healthy pods and has 2 currently");
    assert_eq!(counts(&pdb_status(&api, "web").await), (0, 2, 2, 2));
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), &api.namespace);
    assert!(pods.get_opt("w1").await.unwrap().is_some(), "a refused eviction deletes nothing");
}

#[tokio::test]
async fn an_allowed_eviction_updates_the_budget_and_honours_the_grace_period() {
    let api = api("evict-allowed").await;
    let node = api.name("e");
    create_node(&api, "e").await;
    pdb(&api, "web", json!({"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}})).await;
    for p in ["w1", "w2", "w3"] {
        web_pod(&api, p, Some(&node), true).await;
    }
    let ok = evict(&api, "w1", None).await.unwrap();
    assert_eq!(ok.status, Some(kube::core::response::StatusSummary::Success));
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), &api.namespace);
    let w1 = pods.get("w1").await.expect("terminating, not gone: it is on a node and had a grace period");
    assert_eq!(w1.metadata.deletion_grace_period_seconds, Some(30));
    let conds = w1.status.unwrap().conditions.unwrap();
    let target = conds.iter().find(|c| c.type_ == "DisruptionTarget").expect("a DisruptionTarget condition");
    assert_eq!((target.status.as_str(), target.reason.as_deref()), ("True", Some("EvictionByEvictionAPI")));
    let st = pdb_status(&api, "web").await;
    assert_eq!(counts(&st), (0, 3, 2, 3));
    assert!(st["disruptedPods"].get("w1").is_some(), "{st}");
    // The budget is used up (w1 is still terminating): w2 is refused.
    assert_eq!(crate::failed(evict(&api, "w2", None).await).code, 429);
    // A terminating pod is always evictable; grace 0 deletes it now.
    evict(&api, "w1", Some(0)).await.unwrap();
    assert!(pods.get_opt("w1").await.unwrap().is_none());
}

#[tokio::test]
async fn evictions_without_a_budget_or_of_pending_pods_ignore_budgets() {
    let api = api("evict-free").await;
    create_pod(&api, "lonely", None, &[("app", "solo")], "default").await;
    set_pod_ready(&api, "lonely", true).await;
    evict(&api, "lonely", None).await.expect("no budget: allowed");
    pdb(&api, "strict", json!({"minAvailable": 5, "selector": {"matchLabels": {"app": "web"}}})).await;
    create_pod(&api, "pending", None, &[("app", "web")], "default").await;
    evict(&api, "pending", None).await.expect("a Pending pod is deleted without a budget check");
    let s = crate::failed(evict(&api, "nope", None).await);
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
    assert_eq!(s.message, "pods \"nope\" not found");
}

#[tokio::test]
async fn a_pod_under_two_budgets_cannot_be_evicted() {
    let api = api("evict-two-pdbs").await;
    pdb(&api, "a", json!({"minAvailable": 0, "selector": {"matchLabels": {"app": "web"}}})).await;
    pdb(&api, "b", json!({"maxUnavailable": "50%", "selector": {"matchLabels": {"app": "web"}}})).await;
    web_pod(&api, "w1", None, true).await;
    let s = crate::failed(evict(&api, "w1", None).await);
    assert_eq!(s.code, 500);
    assert!(s.message.contains("more than one PodDisruptionBudget"), "{}", s.message);
}

#[tokio::test]
async fn unready_pods_follow_the_unhealthy_pod_eviction_policy() {
    let api = api("evict-unhealthy").await;
    pdb(&api, "web", json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}})).await;
    web_pod(&api, "ready", None, true).await;
    web_pod(&api, "sick", None, false).await;
    evict(&api, "sick", None).await.expect("IfHealthyBudget: an unready pod goes while the budget is healthy");
    web_pod(&api, "sick2", None, false).await;
    set_pod_ready(&api, "ready", false).await;
    let s = crate::failed(evict(&api, "sick2", None).await);
    assert_eq!(s.code, 429, "the budget is unhealthy now: {}", s.message);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(api.client.clone(), &api.namespace);
    pdbs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"unhealthyPodEvictionPolicy": "AlwaysAllow"}})),
    )
    .await
    .unwrap();
    evict(&api, "sick2", None).await.expect("AlwaysAllow evicts unready pods");
}

#[tokio::test]
async fn budget_percentages_round_up_and_status_is_computed_on_write() {
    let api = api("pdb-percent").await;
    for p in ["w1", "w2", "w3"] {
        web_pod(&api, p, None, true).await;
    }
    pdb(&api, "min", json!({"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}})).await;
    assert_eq!(counts(&pdb_status(&api, "min").await), (1, 3, 2, 3), "50% of 3 rounds up to 2");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(api.client.clone(), &api.namespace);
    pdbs.delete("min", &Default::default()).await.unwrap();
    pdb(&api, "max", json!({"maxUnavailable": "50%", "selector": {"matchLabels": {"app": "web"}}})).await;
    let st = pdb_status(&api, "max").await;
    assert_eq!(counts(&st), (2, 3, 1, 3), "3 - ceil(1.5) = 1 desired");
    assert_eq!(st["conditions"][0]["type"], "DisruptionAllowed");
    assert_eq!(st["conditions"][0]["status"], "True");
    let s = crate::failed(
        pdbs.create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "bad"}, "spec": {"minAvailable": 1, "maxUnavailable": 1}})),
        )
        .await,
    );
    assert_eq!(s.code, 422, "{}", s.message);
}

/// An eviction naming the uid of a pod that was replaced (same name, a new
/// pod) is refused and evicts nothing: the authproxy sends the uid it
/// listed, so it never evicts a successor that may run on another node.
#[tokio::test]
async fn an_eviction_with_a_stale_uid_precondition_is_409_and_evicts_nothing() {
    let api = api("evict-uid").await;
    web_pod(&api, "w1", None, true).await;
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), &api.namespace);
    let uid = pods.get("w1").await.unwrap().metadata.uid.unwrap();
    let ev = |uid: &str| {
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "w1", "namespace": api.namespace},
               "deleteOptions": {"preconditions": {"uid": uid}}})
    };
    let stale = "00000000-0000-0000-0000-000000000000";
    let s =
        crate::failed(pods.create_subresource::<_, Status>("eviction", "w1", &PostParams::default(), &ev(stale)).await);
    assert_eq!(s.code, 409, "{s:?}");
    assert!(s.message.contains("the UID in the precondition"), "{}", s.message);
    assert!(pods.get_opt("w1").await.unwrap().is_some(), "nothing was evicted");
    pods.create_subresource::<_, Value>("eviction", "w1", &PostParams::default(), &ev(&uid)).await.unwrap();
    assert!(pods.get_opt("w1").await.unwrap().is_none(), "the right uid evicts");
}
