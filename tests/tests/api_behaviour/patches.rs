//! Merge, JSON and strategic merge patches, and server-side apply.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use model::BottlerocketShadow;
use serde_json::json;

use crate::{api, create_configmap, create_node, create_pod, failed, raw};

#[tokio::test]
async fn merge_patch_of_node_labels_annotations_and_unschedulable() {
    let api = api("merge-patch-node").await;
    let node = create_node(&api, "m").await;
    let name = node.metadata.name.unwrap();
    let nodes: Api<Node> = Api::all(api.client.clone());
    let pp = PatchParams::default();
    let patched = nodes
        .patch(&name, &pp, &Patch::Merge(json!({"spec": {"unschedulable": true}, "metadata": {"annotations": {"brupop.bottlerocket.aws/cordoned": "true"}, "labels": {"extra": "1"}}})))
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().unschedulable, Some(true));
    assert_eq!(patched.metadata.annotations.unwrap()["brupop.bottlerocket.aws/cordoned"], "true");
    let l = patched.metadata.labels.unwrap();
    assert_eq!((l["extra"].as_str(), l.contains_key("kubernetes.io/hostname")), ("1", true));
    let undone = nodes
        .patch(&name, &pp, &Patch::Merge(json!({"spec": {"unschedulable": null}, "metadata": {"annotations": {"brupop.bottlerocket.aws/cordoned": null}}})))
        .await
        .unwrap();
    assert_eq!(undone.spec.unwrap().unschedulable, None);
    assert!(undone.metadata.annotations.unwrap_or_default().is_empty());
    assert_eq!(undone.metadata.generation, None, "nodes have no generation");
}

#[tokio::test]
async fn json_patch_applies_operations_and_a_failed_test_is_422() {
    let api = api("json-patch").await;
    create_configmap(&api, "j", &[("a", "1")]).await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), &api.namespace);
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/k", "value": "v"},
        {"op": "replace", "path": "/data/k", "value": "w"},
        {"op": "add", "path": "/metadata/labels/b", "value": "2"},
        {"op": "remove", "path": "/metadata/labels/a"}
    ]))
    .unwrap();
    let out = cms.patch("j", &PatchParams::default(), &Patch::<()>::Json(ops)).await.unwrap();
    assert_eq!(out.data.unwrap()["k"], "w");
    assert_eq!(out.metadata.labels.unwrap().into_iter().collect::<Vec<_>>(), vec![("b".to_string(), "2".to_string())]);
    let bad: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/k", "value": "nope"}])).unwrap();
    let s = failed(cms.patch("j", &PatchParams::default(), &Patch::<()>::Json(bad)).await);
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{}", s.message);
    let r = raw(
        &api.client,
        "PATCH",
        &format!("/api/v1/namespaces/{}/configmaps/j", api.namespace),
        Some(r#"{"data":"#),
        "application/merge-patch+json",
    )
    .await;
    assert_eq!(r.code, 400, "{}", r.text);
    let r = raw(
        &api.client,
        "PATCH",
        &format!("/api/v1/namespaces/{}/configmaps/nope", api.namespace),
        Some(r#"{"data":{}}"#),
        "application/merge-patch+json",
    )
    .await;
    assert_eq!(r.code, 404, "{}", r.text);
    let r = raw(
        &api.client,
        "PATCH",
        &format!("/api/v1/namespaces/{}/configmaps/j", api.namespace),
        Some(r#"{"data":{}}"#),
        "text/plain",
    )
    .await;
    assert_eq!(r.code, 415, "{}", r.text);
}

#[tokio::test]
async fn strategic_merge_patch_merges_pod_conditions_by_type() {
    let api = api("strategic-pod-status").await;
    create_pod(&api, "p", None, &[], "default").await;
    crate::set_pod_ready(&api, "p", false).await;
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), &api.namespace);
    let pp = PatchParams::default();
    pods.patch_status(
        "p",
        &pp,
        &Patch::Strategic(json!({"status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}})),
    )
    .await
    .unwrap();
    let p = pods
        .patch_status(
            "p",
            &pp,
            &Patch::Strategic(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
        )
        .await
        .unwrap();
    let conds = p.status.unwrap().conditions.unwrap();
    let find = |t: &str| conds.iter().find(|c| c.type_ == t).map(|c| c.status.clone());
    assert_eq!(find("Ready").as_deref(), Some("True"));
    assert_eq!(find("PodScheduled").as_deref(), Some("True"), "merged by type, not replaced");
    assert_eq!(conds.len(), 2);
    let nodes: Api<Node> = Api::all(api.client.clone());
    let n = create_node(&api, "s").await.metadata.name.unwrap();
    let out = nodes.patch(&n, &pp, &Patch::Strategic(json!({"spec": {"unschedulable": true}}))).await.unwrap();
    assert_eq!(out.spec.unwrap().unschedulable, Some(true));
}

#[tokio::test]
async fn strategic_merge_patch_of_a_custom_resource_is_415() {
    let api = api("strategic-cr").await;
    api.install_crds().await.unwrap();
    let shadows: Api<BottlerocketShadow> = Api::namespaced(api.client.clone(), &api.namespace);
    shadows.create(&PostParams::default(), &crate::crs::shadow("brs-x")).await.unwrap();
    let s = failed(
        shadows
            .patch("brs-x", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"slot": "brupop-slot-0"}})))
            .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (415, "UnsupportedMediaType"), "{}", s.message);
}

#[tokio::test]
async fn server_side_apply_creates_updates_and_removes_fields() {
    let api = api("ssa").await;
    let leases: Api<Lease> = Api::namespaced(api.client.clone(), &api.namespace);
    let pp = PatchParams::apply("m1");
    let first = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l", "labels": {"x": "1"}}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 10}});
    let l = leases.patch("l", &pp, &Patch::Apply(&first)).await.unwrap();
    assert_eq!(l.spec.as_ref().unwrap().holder_identity.as_deref(), Some("a"));
    let mf = l.metadata.managed_fields.unwrap();
    assert_eq!((mf[0].manager.as_deref(), mf[0].operation.as_deref()), (Some("m1"), Some("Apply")));
    let again = leases.patch("l", &pp, &Patch::Apply(&first)).await.unwrap();
    assert_eq!(
        again.metadata.resource_version, l.metadata.resource_version,
        "re-applying the same config writes nothing"
    );
    let second = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}, "spec": {"holderIdentity": "b", "leaseDurationSeconds": 10}});
    let l = leases.patch("l", &pp, &Patch::Apply(&second)).await.unwrap();
    assert_eq!(l.spec.as_ref().unwrap().holder_identity.as_deref(), Some("b"));
    assert!(l.metadata.labels.unwrap_or_default().is_empty(), "a field the manager stopped applying is removed");
    let r = raw(
        &api.client,
        "PATCH",
        &format!("/apis/coordination.k8s.io/v1/namespaces/{}/leases/l", api.namespace),
        Some(&second.to_string()),
        "application/apply-patch+yaml",
    )
    .await;
    assert_eq!(r.code, 422, "apply needs a fieldManager: {}", r.text);
    assert!(r.text.contains("fieldManager: Required value: is required for apply patch"), "{}", r.text);
}

#[tokio::test]
async fn server_side_apply_conflicts_unless_forced() {
    let api = api("ssa-conflict").await;
    let leases: Api<Lease> = Api::namespaced(api.client.clone(), &api.namespace);
    let cfg = |holder: &str| json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}, "spec": {"holderIdentity": holder}});
    leases.patch("l", &PatchParams::apply("m1"), &Patch::Apply(cfg("a"))).await.unwrap();
    let s = failed(leases.patch("l", &PatchParams::apply("m2"), &Patch::Apply(cfg("b"))).await);
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert_eq!(s.message, "Apply failed with 1 conflict: conflict with \"m1\": .spec.holderIdentity");
    let cause = &s.details.unwrap().causes[0];
    assert_eq!((cause.reason.as_str(), cause.field.as_str()), ("FieldManagerConflict", ".spec.holderIdentity"));
    leases
        .patch("l", &PatchParams::apply("m2"), &Patch::Apply(cfg("a")))
        .await
        .expect("the same value shares ownership");
    let l = leases.patch("l", &PatchParams::apply("m2").force(), &Patch::Apply(cfg("b"))).await.unwrap();
    assert_eq!(l.spec.unwrap().holder_identity.as_deref(), Some("b"));
    let owners: Vec<String> = l.metadata.managed_fields.unwrap().into_iter().filter_map(|m| m.manager).collect();
    assert_eq!(owners, vec!["m2"], "force took the field from m1, which owned nothing else");
    // An Update (a plain patch) takes ownership too: re-applying conflicts with it.
    let pp = PatchParams { field_manager: Some("editor".into()), ..Default::default() };
    leases.patch("l", &pp, &Patch::Merge(json!({"spec": {"holderIdentity": "c"}}))).await.unwrap();
    let s = failed(leases.patch("l", &PatchParams::apply("m2"), &Patch::Apply(cfg("b"))).await);
    assert_eq!(
        s.message,
        "Apply failed with 1 conflict: conflict with \"editor\" using coordination.k8s.io/v1: .spec.holderIdentity"
    );
}

/// The leader grants a slot with a merge patch that carries the
/// resourceVersion it decided on: a stale one must be a 409, never a write.
#[tokio::test]
async fn a_merge_patch_carrying_a_resource_version_is_a_checked_write() {
    let api = api("merge-patch-rv").await;
    let leases: Api<Lease> = Api::namespaced(api.client.clone(), &api.namespace);
    let lease: Lease =
        serde_json::from_value(json!({"metadata": {"name": "slot", "labels": {"keep": "me"}}, "spec": {}})).unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    let pp = PatchParams::default();
    let grant = |holder: &str, rv: &str| {
        Patch::Merge(json!({"metadata": {"resourceVersion": rv}, "spec": {"holderIdentity": holder}}))
    };
    let granted = leases.patch("slot", &pp, &grant("node-a", &rv)).await.unwrap();
    assert_eq!(granted.spec.unwrap().holder_identity.as_deref(), Some("node-a"));
    assert_eq!(granted.metadata.labels.unwrap()["keep"], "me", "a merge patch keeps what it does not name");
    assert_ne!(granted.metadata.resource_version.as_deref(), Some(rv.as_str()));
    let s = failed(leases.patch("slot", &pp, &grant("node-b", &rv)).await);
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"), "{}", s.message);
    let now = leases.get("slot").await.unwrap();
    assert_eq!(now.spec.unwrap().holder_identity.as_deref(), Some("node-a"), "the stale patch wrote nothing");
}
