//! Deletion: graceful pod deletion, finalizers, preconditions and
//! namespace cleanup.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

use crate::{api, create_configmap, create_node, create_pod, failed, obj};

#[tokio::test]
async fn a_pod_on_a_node_stays_terminating_until_deleted_with_grace_zero() {
    let api = api("graceful-pod").await;
    let node = api.name("g");
    create_node(&api, "g").await;
    let created = create_pod(&api, "p", Some(&node), &[], "default").await;
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), &api.namespace);
    let first = pods.delete("p", &DeleteParams::default()).await.unwrap();
    let pending = first.left().expect("the pod is returned, not a Status");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert_eq!(pending.metadata.deletion_grace_period_seconds, Some(30));
    assert_eq!(pending.metadata.generation, Some(created.metadata.generation.unwrap() + 1));
    let still = pods.get("p").await.expect("still there: no kubelet finishes it");
    assert!(still.metadata.deletion_timestamp.is_some());
    let again = pods.delete("p", &DeleteParams::default()).await.unwrap().left().unwrap();
    assert_eq!(again.metadata.resource_version, still.metadata.resource_version, "deleting again changes nothing");
    let shorter = pods.delete("p", &DeleteParams::default().grace_period(5)).await.unwrap().left().unwrap();
    assert_eq!(shorter.metadata.deletion_grace_period_seconds, Some(5));
    assert!(shorter.metadata.deletion_timestamp.unwrap().0 < pending.metadata.deletion_timestamp.unwrap().0);
    pods.delete("p", &DeleteParams::default().grace_period(0)).await.unwrap();
    assert!(pods.get_opt("p").await.unwrap().is_none());
}

#[tokio::test]
async fn a_pod_without_a_node_is_deleted_at_once() {
    let api = api("unscheduled-pod").await;
    create_pod(&api, "p", None, &[], "default").await;
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), &api.namespace);
    let out = pods.delete("p", &DeleteParams::default()).await.unwrap();
    assert!(out.is_left(), "pods answer with the deleted pod");
    assert!(pods.get_opt("p").await.unwrap().is_none());
    let s = failed(pods.delete("p", &DeleteParams::default()).await);
    assert_eq!(s.code, 404);
}

#[tokio::test]
async fn finalizers_hold_an_object_until_they_are_removed() {
    let api = api("finalizers").await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), &api.namespace);
    cms.create(&PostParams::default(), &obj(json!({"metadata": {"name": "f", "finalizers": ["example.com/hold"]}})))
        .await
        .unwrap();
    let held = cms.delete("f", &DeleteParams::default()).await.unwrap().left().expect("the object, still there");
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(held.metadata.deletion_grace_period_seconds, Some(0));
    assert!(cms.get("f").await.unwrap().metadata.deletion_timestamp.is_some());
    cms.patch("f", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert!(cms.get_opt("f").await.unwrap().is_none(), "gone with its last finalizer");
    create_configmap(&api, "plain", &[]).await;
    let gone = cms.delete("plain", &DeleteParams::default()).await.unwrap().right().expect("a Status");
    assert_eq!(gone.status, Some(kube::core::response::StatusSummary::Success));
    assert_eq!(gone.details.unwrap().name, "plain");
}

#[tokio::test]
async fn delete_preconditions_conflict_when_stale() {
    let api = api("delete-preconditions").await;
    let cm = create_configmap(&api, "c", &[]).await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), &api.namespace);
    cms.patch("c", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "2"}}))).await.unwrap();
    let dp = DeleteParams::default()
        .preconditions(Preconditions { resource_version: cm.metadata.resource_version.clone(), uid: None });
    let s = failed(cms.delete("c", &dp).await);
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert!(s.message.contains("the ResourceVersion in the precondition"), "{}", s.message);
    let dp = DeleteParams::default().preconditions(Preconditions {
        uid: Some("00000000-0000-0000-0000-000000000000".into()),
        resource_version: None,
    });
    let s = failed(cms.delete("c", &dp).await);
    assert_eq!(s.code, 409);
    assert!(s.message.contains("the UID in the precondition"), "{}", s.message);
    let dp =
        DeleteParams::default().preconditions(Preconditions { uid: cm.metadata.uid.clone(), resource_version: None });
    cms.delete("c", &dp).await.unwrap();
}

#[tokio::test]
async fn deleting_a_namespace_deletes_what_is_in_it() {
    let api = api("namespace-delete").await;
    let other = api.name("inner");
    let nss: Api<Namespace> = Api::all(api.client.clone());
    let ns = nss.create(&PostParams::default(), &obj(json!({"metadata": {"name": other}}))).await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
    assert_eq!(ns.metadata.labels.unwrap()["kubernetes.io/metadata.name"], other);
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), &other);
    cms.create(&PostParams::default(), &obj(json!({"metadata": {"name": "x"}}))).await.unwrap();
    nss.delete(&other, &DeleteParams::default()).await.unwrap();
    crate::eventually(20, "the namespace and its configmap to go", || {
        let (nss, cms, other) = (nss.clone(), cms.clone(), other.clone());
        async move {
            let ns_gone = nss.get_opt(&other).await.unwrap().is_none();
            let cm_gone = cms.get_opt("x").await.unwrap().is_none();
            (ns_gone && cm_gone).then_some(())
        }
    })
    .await;
}
