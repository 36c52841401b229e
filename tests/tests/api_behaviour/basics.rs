//! Discovery, create/get/update semantics, resourceVersions and the
//! answers to bad requests.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::{api, create_configmap, create_node, failed, obj, raw, rv_of};

#[tokio::test]
async fn discovery_lists_groups_versions_and_resources() {
    let api = api("discovery").await;
    let c = &api.client;
    let version = c.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    let groups = c.list_api_groups().await.unwrap();
    let names: Vec<&str> = groups.groups.iter().map(|g| g.name.as_str()).collect();
    for g in ["coordination.k8s.io", "policy", "events.k8s.io", "authentication.k8s.io", "apiextensions.k8s.io"] {
        assert!(names.contains(&g), "{g} in {names:?}");
    }
    let core = c.list_core_api_resources("v1").await.unwrap();
    let res: Vec<&str> = core.resources.iter().map(|r| r.name.as_str()).collect();
    for r in [
        "namespaces",
        "nodes",
        "nodes/status",
        "pods",
        "pods/status",
        "pods/eviction",
        "serviceaccounts",
        "serviceaccounts/token",
        "events",
    ] {
        assert!(res.contains(&r), "{r} in {res:?}");
    }
    let eviction = core.resources.iter().find(|r| r.name == "pods/eviction").unwrap();
    assert_eq!((eviction.group.as_deref(), eviction.kind.as_str()), (Some("policy"), "Eviction"));
    let pdb = c.list_api_group_resources("policy/v1").await.unwrap();
    assert!(pdb.resources.iter().any(|r| r.name == "poddisruptionbudgets/status"));
    let leases = c.list_api_group_resources("coordination.k8s.io/v1").await.unwrap();
    let lease = leases.resources.iter().find(|r| r.name == "leases").unwrap();
    assert!(lease.namespaced && lease.verbs.contains(&"watch".to_string()));
}

#[tokio::test]
async fn unserved_paths_answer_404() {
    let api = api("unserved").await;
    // A group nobody serves is not an API path at all: a plain-text 404.
    let r = raw(&api.client, "GET", "/apis/nothing.example.com/v1/widgets", None, "").await;
    assert_eq!((r.code, r.text.as_str()), (404, "404 page not found\n"));
    // A served group without that version or resource: a NotFound Status.
    for path in ["/apis/coordination.k8s.io/v9/leases", "/apis/coordination.k8s.io/v1/nopes", "/api/v1/nopes"] {
        let r = raw(&api.client, "GET", path, None, "").await;
        assert_eq!((r.code, r.body["reason"].as_str()), (404, Some("NotFound")), "{path}: {}", r.text);
        assert_eq!(r.body["message"], "the server could not find the requested resource");
    }
}

#[tokio::test]
async fn create_twice_is_already_exists() {
    let api = api("already-exists").await;
    create_configmap(&api, "a", &[]).await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), &api.namespace);
    let s = failed(cms.create(&PostParams::default(), &obj(json!({"metadata": {"name": "a"}}))).await);
    assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(s.message, "configmaps \"a\" already exists");
    assert!(s.is_already_exists());
}

#[tokio::test]
async fn get_of_a_missing_object_is_not_found() {
    let api = api("not-found").await;
    let leases: Api<Lease> = Api::namespaced(api.client.clone(), &api.namespace);
    let s = failed(leases.get("nope").await);
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
    assert_eq!(s.message, "leases.coordination.k8s.io \"nope\" not found");
    let d = s.details.unwrap();
    assert_eq!((d.name.as_str(), d.group.as_str(), d.kind.as_str()), ("nope", "coordination.k8s.io", "leases"));
    assert!(leases.get_opt("nope").await.unwrap().is_none());
}

#[tokio::test]
async fn update_with_a_stale_resource_version_conflicts() {
    let api = api("stale-update").await;
    let leases: Api<Lease> = Api::namespaced(api.client.clone(), &api.namespace);
    let l: Lease =
        obj(json!({"metadata": {"name": "slot"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 30}}));
    let created = leases.create(&PostParams::default(), &l).await.unwrap();
    let mut first = created.clone();
    first.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let updated = leases.replace("slot", &PostParams::default(), &first).await.unwrap();
    assert!(rv_of(&updated.metadata) > rv_of(&created.metadata));
    let mut stale = created.clone();
    stale.spec.as_mut().unwrap().holder_identity = Some("c".into());
    let s = failed(leases.replace("slot", &PostParams::default(), &stale).await);
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert!(
        s.message
            .contains("the object has been modified; please apply your changes to the latest version and try again"),
        "{}",
        s.message
    );
    assert_eq!(leases.get("slot").await.unwrap().spec.unwrap().holder_identity.as_deref(), Some("b"));
}

#[tokio::test]
async fn resource_versions_increase_across_types_and_no_op_updates_keep_them() {
    let api = api("resource-versions").await;
    let cm = create_configmap(&api, "one", &[]).await;
    let node = create_node(&api, "rv").await;
    let leases: Api<Lease> = Api::namespaced(api.client.clone(), &api.namespace);
    let lease =
        leases.create(&PostParams::default(), &obj(json!({"metadata": {"name": "l"}, "spec": {}}))).await.unwrap();
    assert!(rv_of(&cm.metadata) < rv_of(&node.metadata));
    assert!(rv_of(&node.metadata) < rv_of(&lease.metadata));
    let again = leases.replace("l", &PostParams::default(), &lease).await.unwrap();
    assert_eq!(rv_of(&again.metadata), rv_of(&lease.metadata), "a no-op update writes nothing");
    let list = leases.list(&Default::default()).await.unwrap();
    assert!(
        rv_of(&kube::api::ObjectMeta {
            resource_version: list.metadata.resource_version.clone(),
            ..Default::default()
        }) >= rv_of(&lease.metadata)
    );
}

#[tokio::test]
async fn generate_name_makes_unique_names() {
    let api = api("generate-name").await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), &api.namespace);
    let a = cms.create(&PostParams::default(), &obj(json!({"metadata": {"generateName": "gen-"}}))).await.unwrap();
    let b = cms.create(&PostParams::default(), &obj(json!({"metadata": {"generateName": "gen-"}}))).await.unwrap();
    let (a, b) = (a.metadata.name.unwrap(), b.metadata.name.unwrap());
    assert!(a.starts_with("gen-") && a.len() == 9, "{a}");
    assert_ne!(a, b);
    let r = raw(
        &api.client,
        "POST",
        &format!("/api/v1/namespaces/{}/configmaps", api.namespace),
        Some(r#"{"metadata":{}}"#),
        "application/json",
    )
    .await;
    assert_eq!((r.code, r.body["reason"].as_str()), (422, Some("Invalid")), "{}", r.text);
    assert!(r.text.contains("name or generateName is required"), "{}", r.text);
}

#[tokio::test]
async fn bad_bodies_get_400_or_422_like_a_real_server() {
    let api = api("bad-bodies").await;
    let c = &api.client;
    let base = format!("/api/v1/namespaces/{}/configmaps", api.namespace);
    let ct = "application/json";
    let r = raw(c, "POST", &base, Some(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a""#), ct).await;
    assert_eq!(r.code, 400, "malformed JSON: {}", r.text);
    assert_eq!(r.body["reason"], "BadRequest");
    assert!(r.text.contains("the object provided is unrecognized (must be of type ConfigMap)"), "{}", r.text);
    let r = raw(c, "POST", &base, Some(r#"[1,2]"#), ct).await;
    assert_eq!(r.code, 400, "not an object: {}", r.text);
    let r = raw(c, "POST", &base, Some(r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}"#), ct).await;
    assert_eq!(r.code, 400, "wrong kind: {}", r.text);
    assert!(r.text.contains("cannot be handled as a ConfigMap"), "{}", r.text);
    let r = raw(c, "POST", &base, Some(r#"{"apiVersion":"v2","kind":"ConfigMap","metadata":{"name":"x"}}"#), ct).await;
    assert_eq!(r.code, 400, "wrong apiVersion: {}", r.text);
    let r = raw(
        c,
        "POST",
        &base,
        Some(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":1}}"#),
        ct,
    )
    .await;
    assert_eq!(r.code, 400, "wrong type: {}", r.text);
    let r = raw(c, "POST", &base, Some(r#"{"metadata":{"name":"Bad_Name"}}"#), ct).await;
    assert_eq!((r.code, r.body["reason"].as_str()), (422, Some("Invalid")), "bad name: {}", r.text);
    assert_eq!(r.body["details"]["causes"][0]["field"], "metadata.name");
    create_configmap(&api, "a", &[]).await;
    let r = raw(c, "PUT", &format!("{base}/a"), Some(r#"{"metadata":{"name":"b"}}"#), ct).await;
    assert_eq!(r.code, 400, "name mismatch: {}", r.text);
    assert!(r.text.contains("the name of the object (b) does not match the name on the URL (a)"), "{}", r.text);
    let r = raw(
        c,
        "POST",
        &format!("/api/v1/namespaces/{}/configmaps", api.namespace),
        Some(&format!(r#"{{"metadata":{{"name":"z","namespace":"{}-other"}}}}"#, api.namespace)),
        ct,
    )
    .await;
    assert_eq!(r.code, 400, "namespace mismatch: {}", r.text);
    let r = raw(c, "POST", &format!("{base}?fieldValidation=Bogus"), Some(r#"{"metadata":{"name":"q"}}"#), ct).await;
    assert_eq!(r.code, 422, "bad fieldValidation: {}", r.text);
    let r = raw(c, "POST", &base, Some(r#"{"metadata":{"name":"rv","resourceVersion":"5"}}"#), ct).await;
    assert_eq!(r.code, 500, "resourceVersion on create: {}", r.text);
    assert!(r.text.contains("resourceVersion should not be set on objects to be created"));
}

#[tokio::test]
async fn unknown_fields_warn_by_default_and_fail_strict_decoding() {
    let api = api("unknown-fields").await;
    let base = format!("/api/v1/namespaces/{}/configmaps", api.namespace);
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"w"},"data":{"a":"b"},"bogus":1}"#;
    let r = raw(&api.client, "POST", &base, Some(body), "application/json").await;
    assert_eq!(r.code, 201, "{}", r.text);
    assert!(r.body.get("bogus").is_none());
    assert!(r.warnings.iter().any(|w| w.contains("unknown field \\\"bogus\\\"")), "{:?}", r.warnings);
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"s"},"bogus":1}"#;
    let r = raw(&api.client, "POST", &format!("{base}?fieldValidation=Strict"), Some(body), "application/json").await;
    assert_eq!((r.code, r.body["reason"].as_str()), (400, Some("BadRequest")), "{}", r.text);
    assert!(r.text.contains("strict decoding error: unknown field \\\"bogus\\\""), "{}", r.text);
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), &api.namespace);
    let pp =
        kube::api::PatchParams { field_validation: Some(kube::api::ValidationDirective::Strict), ..Default::default() };
    crate::create_pod(&api, "p", None, &[], "default").await;
    // A patch whose result has unknown fields: 422 on the "patch" field.
    let s = failed(
        pods.patch(
            "p",
            &pp,
            &kube::api::Patch::Merge(json!({"spec": {"containers": [{"name": "c", "image": "x", "bogus": 1}]}})),
        )
        .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{}", s.message);
    assert!(s.message.contains("strict decoding error: unknown field \"spec.containers[0].bogus\""), "{}", s.message);
    assert_eq!(s.details.unwrap().causes[0].field, "patch");
    // Server-side apply never accepts fields outside the schema (500, whatever the validation).
    let cfg = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "bogus": 1});
    let s = failed(pods.patch("p", &kube::api::PatchParams::apply("t"), &kube::api::Patch::Apply(&cfg)).await);
    assert_eq!(s.code, 500, "{}", s.message);
    assert!(s.message.ends_with(".bogus: field not declared in schema"), "{}", s.message);
}

#[tokio::test]
async fn built_in_validation_answers_422() {
    let api = api("validation").await;
    let leases: Api<Lease> = Api::namespaced(api.client.clone(), &api.namespace);
    let s = failed(
        leases
            .create(
                &PostParams::default(),
                &obj(json!({"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 0}})),
            )
            .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        s.message,
        "Lease.coordination.k8s.io \"l\" is invalid: spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"
    );
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), &api.namespace);
    let s = failed(
        pods.create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}})),
        )
        .await,
    );
    assert_eq!(s.code, 422);
    assert!(s.message.contains("spec.containers[0].image: Required value"), "{}", s.message);
    let p = crate::create_pod(&api, "p", None, &[], "default").await;
    let mut changed = p.clone();
    changed.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    let s = failed(pods.replace("p", &PostParams::default(), &changed).await);
    assert_eq!(s.code, 422);
    assert!(s.message.contains("pod updates may not change fields other than"), "{}", s.message);
}

#[tokio::test]
async fn pods_get_defaults_and_the_default_service_account() {
    let api = api("pod-defaults").await;
    let p = crate::create_pod(&api, "p", None, &[], "").await;
    let spec = p.spec.unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    assert_eq!(spec.containers[0].image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
    assert_eq!(p.metadata.generation, Some(1));
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(api.client.clone(), &api.namespace);
    crate::eventually(10, "the default service account", || async { sas.get_opt("default").await.unwrap() }).await;
}

#[tokio::test]
async fn core_and_events_k8s_io_events() {
    let api = api("events").await;
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(api.client.clone(), &api.namespace);
    core.create(&PostParams::default(), &obj(json!({"metadata": {"name": "e1"}, "involvedObject": {"kind": "Node", "name": "n"}, "reason": "Cordoned", "message": "m", "type": "Normal"})))
        .await
        .unwrap();
    let listed = core.list(&ListParams::default().fields("involvedObject.kind=Node")).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    let ev: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(api.client.clone(), &api.namespace);
    ev.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "e2"}, "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "brupop.bottlerocket.aws/leader", "reportingInstance": "leader-0", "action": "Grant", "reason": "SlotGranted", "type": "Normal", "regarding": {"kind": "Node", "name": "n"}})),
    )
    .await
    .unwrap();
    let s = failed(ev.create(&PostParams::default(), &obj(json!({"metadata": {"name": "e3"}, "reason": "X"}))).await);
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{}", s.message);
    assert!(s.message.contains("reportingController: Required value"), "{}", s.message);
}
