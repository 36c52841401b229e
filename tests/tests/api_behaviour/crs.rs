//! Custom resources: CRD installation, the BottlerocketShadow status
//! subresource, generation, structural-schema pruning, defaults and
//! validation, and the updates custom resources refuse.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use model::{BottlerocketShadow, BottlerocketShadowSpec, ShadowState, UpdatePolicy};
use serde_json::json;

use crate::{api, failed, raw};

pub fn shadow(name: &str) -> BottlerocketShadow {
    BottlerocketShadow::new(name, BottlerocketShadowSpec { state: ShadowState::Idle, ..Default::default() })
}

fn shadows(api: &tests::backend::TestApi) -> Api<BottlerocketShadow> {
    Api::namespaced(api.client.clone(), &api.namespace)
}

#[tokio::test]
async fn crds_install_idempotently_and_are_discoverable() {
    let api = api("install-crds").await;
    api.install_crds().await.unwrap();
    api.install_crds().await.expect("applying the CRDs again is fine");
    let res = api.client.list_api_group_resources("brupop.bottlerocket.aws/v2").await.unwrap();
    let brs = res.resources.iter().find(|r| r.name == "bottlerocketshadows").unwrap();
    assert_eq!(brs.short_names.as_deref(), Some(&["brs".to_string()][..]));
    assert!(res.resources.iter().any(|r| r.name == "bottlerocketshadows/status"));
    let created = shadows(&api).create(&PostParams::default(), &shadow("brs-a")).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.status.is_none(), "status is not written on create");
}

#[tokio::test]
async fn status_writes_change_only_status_and_main_writes_only_the_rest() {
    let api = api("status-subresource").await;
    api.install_crds().await.unwrap();
    let brs = shadows(&api);
    brs.create(&PostParams::default(), &shadow("brs-a")).await.unwrap();
    let pp = PatchParams::default();
    let s = brs
        .patch_status(
            "brs-a",
            &pp,
            &Patch::Merge(json!({"spec": {"state": "StagedAndPerformedUpdate"}, "status": {"current_state": "Idle", "current_version": "1.0.0"}})),
        )
        .await
        .unwrap();
    assert_eq!(s.spec.state, ShadowState::Idle, "a status write keeps spec");
    assert_eq!(s.status.as_ref().unwrap().current_version, "1.0.0");
    assert_eq!(s.metadata.generation, Some(1), "status writes do not bump generation");
    let mut main = s.clone();
    main.spec.slot = Some("brupop-slot-0".into());
    main.status.as_mut().unwrap().current_version = "9.9.9".into();
    let m = brs.replace("brs-a", &PostParams::default(), &main).await.unwrap();
    assert_eq!(m.spec.slot.as_deref(), Some("brupop-slot-0"));
    assert_eq!(m.status.as_ref().unwrap().current_version, "1.0.0", "a main write keeps status");
    assert_eq!(m.metadata.generation, Some(2), "a spec change bumps generation");
    let l = brs
        .patch("brs-a", &pp, &Patch::Merge(json!({"metadata": {"labels": {"brupop.bottlerocket.aws/node": "a"}}})))
        .await
        .unwrap();
    assert_eq!(l.metadata.generation, Some(2), "metadata changes do not bump generation");
    let applied = brs
        .patch_status(
            "brs-a",
            &PatchParams::apply(model::names::managers::AUTHPROXY).force(),
            &Patch::Apply(json!({"apiVersion": "brupop.bottlerocket.aws/v2", "kind": "BottlerocketShadow", "metadata": {"name": "brs-a"}, "status": {"current_state": "Idle", "current_version": "1.1.0"}})),
        )
        .await
        .unwrap();
    assert_eq!(applied.status.unwrap().current_version, "1.1.0");
    let got = brs.get_status("brs-a").await.unwrap();
    assert_eq!(got.spec.slot.as_deref(), Some("brupop-slot-0"));
}

#[tokio::test]
async fn generation_of_built_in_types_matches_the_real_server() {
    let api = api("generation-builtins").await;
    let p = crate::create_pod(&api, "p", None, &[], "default").await;
    assert_eq!(p.metadata.generation, Some(1));
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), &api.namespace);
    let p2 = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"containers": [{"name": "c", "image": "example.com/app:2.0"}]}})),
        )
        .await
        .unwrap();
    assert_eq!(p2.metadata.generation, Some(2));
    let p3 = pods
        .patch("p", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})))
        .await
        .unwrap();
    assert_eq!(p3.metadata.generation, Some(2));
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(api.client.clone(), &api.namespace);
    let l = leases
        .create(
            &PostParams::default(),
            &crate::obj(json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "x"}})),
        )
        .await
        .unwrap();
    assert_eq!(l.metadata.generation, None, "leases have no generation");
    let pdbs: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        Api::namespaced(api.client.clone(), &api.namespace);
    let pdb = pdbs.create(&PostParams::default(), &crate::obj(json!({"metadata": {"name": "b"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"a": "b"}}}}))).await.unwrap();
    assert_eq!(pdb.metadata.generation, Some(1));
    let pdb =
        pdbs.patch("b", &PatchParams::default(), &Patch::Merge(json!({"spec": {"minAvailable": 2}}))).await.unwrap();
    assert_eq!(pdb.metadata.generation, Some(2));
}

#[tokio::test]
async fn unknown_fields_of_custom_resources_are_pruned_or_refused_when_strict() {
    let api = api("cr-pruning").await;
    api.install_crds().await.unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("brupop.bottlerocket.aws", "v2", "BottlerocketShadow"),
        "bottlerocketshadows",
    );
    let dynamic: Api<DynamicObject> = Api::namespaced_with(api.client.clone(), &api.namespace, &ar);
    let body: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "brupop.bottlerocket.aws/v2", "kind": "BottlerocketShadow",
        "metadata": {"name": "brs-p"}, "spec": {"state": "Idle", "notInSchema": 1}, "extra": true
    }))
    .unwrap();
    let created = dynamic.create(&PostParams::default(), &body).await.unwrap();
    assert!(created.data["spec"].get("notInSchema").is_none(), "{:?}", created.data);
    assert!(created.data.get("extra").is_none());
    let path = format!("/apis/brupop.bottlerocket.aws/v2/namespaces/{}/bottlerocketshadows", api.namespace);
    let strict = json!({"apiVersion": "brupop.bottlerocket.aws/v2", "kind": "BottlerocketShadow", "metadata": {"name": "brs-q"}, "spec": {"state": "Idle", "notInSchema": 1}});
    let r = raw(
        &api.client,
        "POST",
        &format!("{path}?fieldValidation=Strict"),
        Some(&strict.to_string()),
        "application/json",
    )
    .await;
    assert_eq!((r.code, r.body["reason"].as_str()), (400, Some("BadRequest")), "{}", r.text);
    assert!(r.text.contains("strict decoding error: unknown field \\\"spec.notInSchema\\\""), "{}", r.text);
    let r = raw(&api.client, "POST", &path, Some(&strict.to_string()), "application/json").await;
    assert_eq!(r.code, 201, "{}", r.text);
    assert!(r.warnings.iter().any(|w| w.contains("spec.notInSchema")), "{:?}", r.warnings);
    let pp = PatchParams::default();
    let patched = dynamic
        .patch("brs-p", &pp, &Patch::Merge(json!({"spec": {"alsoNot": "x", "version": "1.2.3"}})))
        .await
        .unwrap();
    assert!(patched.data["spec"].get("alsoNot").is_none());
    assert_eq!(patched.data["spec"]["version"], "1.2.3");
}

#[tokio::test]
async fn custom_resource_schema_violations_are_422() {
    let api = api("cr-validation").await;
    api.install_crds().await.unwrap();
    let path = format!("/apis/brupop.bottlerocket.aws/v2/namespaces/{}/bottlerocketshadows", api.namespace);
    let post = |body: serde_json::Value| {
        let (c, p) = (api.client.clone(), path.clone());
        async move { raw(&c, "POST", &p, Some(&body.to_string()), "application/json").await }
    };
    let r = post(json!({"apiVersion": "brupop.bottlerocket.aws/v2", "kind": "BottlerocketShadow", "metadata": {"name": "brs-e"}, "spec": {"state": "Dancing"}})).await;
    assert_eq!((r.code, r.body["reason"].as_str()), (422, Some("Invalid")), "{}", r.text);
    let msg = r.body["message"].as_str().unwrap();
    assert!(msg.starts_with("BottlerocketShadow.brupop.bottlerocket.aws \"brs-e\" is invalid: spec.state: Unsupported value: \"Dancing\": supported values: \"Idle\""), "{msg}");
    assert_eq!(r.body["details"]["causes"][0]["reason"], "FieldValueNotSupported");
    let r = post(json!({"apiVersion": "brupop.bottlerocket.aws/v2", "kind": "BottlerocketShadow", "metadata": {"name": "brs-r"}, "spec": {}})).await;
    assert_eq!(r.code, 422, "{}", r.text);
    assert!(r.text.contains("spec.state: Required value"), "{}", r.text);
    let r = post(json!({"apiVersion": "brupop.bottlerocket.aws/v2", "kind": "BottlerocketShadow", "metadata": {"name": "brs-t"}, "spec": {"state": "Idle", "acknowledged_failure": "three"}})).await;
    assert_eq!(r.code, 422, "{}", r.text);
    assert!(r.text.contains("spec.acknowledged_failure in body must be of type integer: \\\"string\\\""), "{}", r.text);
    let r = post(json!({"apiVersion": "brupop.bottlerocket.aws/v2", "kind": "BottlerocketShadow", "metadata": {"name": "brs-m"}, "spec": {"state": "Idle", "acknowledged_failure": -1}})).await;
    assert_eq!(r.code, 422, "{}", r.text);
    assert!(r.text.contains("should be greater than or equal to 0"), "{}", r.text);
    let brs = shadows(&api);
    brs.create(&PostParams::default(), &shadow("brs-ok")).await.unwrap();
    let s = failed(
        brs.patch_status("brs-ok", &PatchParams::default(), &Patch::Merge(json!({"status": {"crash_count": -1}})))
            .await,
    );
    assert_eq!(s.code, 422, "status.crash_count is at least 0: {}", s.message);
    let r = raw(&api.client, "PUT", &format!("{path}/brs-ok"), Some(&json!({"apiVersion": "brupop.bottlerocket.aws/v2", "kind": "BottlerocketShadow", "metadata": {"name": "brs-ok"}, "spec": {"state": "Idle"}}).to_string()), "application/json").await;
    assert_eq!(r.code, 422, "custom resources need a resourceVersion to update: {}", r.text);
    assert!(r.text.contains("must be specified for an update"), "{}", r.text);
}

#[tokio::test]
async fn schema_defaults_are_applied() {
    let api = api("cr-defaults").await;
    api.install_crds().await.unwrap();
    let policies: Api<UpdatePolicy> = Api::namespaced(api.client.clone(), &api.namespace);
    let ar = ApiResource::erase::<UpdatePolicy>(&());
    let dynamic: Api<DynamicObject> = Api::namespaced_with(api.client.clone(), &api.namespace, &ar);
    let body: DynamicObject = serde_json::from_value(json!({"apiVersion": "brupop.bottlerocket.aws/v1", "kind": "UpdatePolicy", "metadata": {"name": "default"}, "spec": {}})).unwrap();
    let created = dynamic.create(&PostParams::default(), &body).await.unwrap();
    assert_eq!(created.data["spec"]["paused"], false);
    assert_eq!(created.data["spec"]["updateCordonedNodes"], false);
    let p = policies.get("default").await.unwrap();
    assert!(!p.spec.paused);
    let brs = shadows(&api);
    brs.create(&PostParams::default(), &shadow("brs-d")).await.unwrap();
    let ar = ApiResource::erase::<BottlerocketShadow>(&());
    let dyn_brs: Api<DynamicObject> = Api::namespaced_with(api.client.clone(), &api.namespace, &ar);
    let s = dyn_brs
        .patch_status(
            "brs-d",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"current_state": "Idle", "current_version": "1.0.0"}})),
        )
        .await
        .unwrap();
    assert_eq!(s.data["status"]["crash_count"], 0, "{:?}", s.data);
    assert_eq!(s.data["status"]["target_version"], "", "every status field has a default: {:?}", s.data);
}

/// A CRD of this test's own (its group names the test's namespace, so the
/// cleanup removes it and no other test sees it).
fn widget_crd(
    group: &str,
    spec_properties: serde_json::Value,
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {"type": "object", "properties": spec_properties}},
            }}}],
        },
    }))
    .unwrap()
}

#[tokio::test]
async fn a_changed_schema_prunes_and_defaults_stored_objects_as_they_are_read() {
    // What an upgrade that renames fields relies on: objects stored under
    // the old schema read without the fields the new one dropped.
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::runtime::wait::{await_condition, conditions};
    let api = api("cr-schema-change").await;
    let group = format!("{}.brupop-test.io", api.namespace);
    let crds: Api<CustomResourceDefinition> = Api::all(api.client.clone());
    let apply = PatchParams::apply("brupop-test-harness").force();
    let name = format!("widgets.{group}");
    let old = widget_crd(&group, json!({"kept": {"type": "string"}, "renamed": {"type": "string"}}));
    crds.patch(&name, &apply, &Patch::Apply(&old)).await.unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        await_condition(crds.clone(), &name, conditions::is_crd_established()),
    )
    .await
    .unwrap()
    .unwrap();
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(&group, "v1", "Widget"), "widgets");
    let widgets: Api<DynamicObject> = Api::namespaced_with(api.client.clone(), &api.namespace, &ar);
    let w: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{group}/v1"), "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"kept": "a", "renamed": "b"},
    }))
    .unwrap();
    let created = widgets.create(&PostParams::default(), &w).await.unwrap();
    let rv = created.metadata.resource_version.clone();
    let new = widget_crd(&group, json!({"kept": {"type": "string"}, "new_name": {"type": "string", "default": "d"}}));
    crds.patch(&name, &apply, &Patch::Apply(&new)).await.unwrap();
    // The server reloads the schema in the background: read until it applies.
    tests::harness::wait_for(
        "the stored widget to read under the new schema",
        std::time::Duration::from_secs(30),
        || async {
            let got = widgets.get("w").await.map_err(|e| e.to_string())?;
            let spec = &got.data["spec"];
            if spec.get("renamed").is_none() && spec["new_name"] == "d" { Ok(()) } else { Err(format!("{spec}")) }
        },
    )
    .await;
    let got = widgets.get("w").await.unwrap();
    assert_eq!(got.data["spec"]["kept"], "a", "fields the schema keeps stay");
    assert_eq!(got.metadata.resource_version, rv, "reading is not a write: same resourceVersion");
    crds.delete(&name, &Default::default()).await.unwrap();
}
