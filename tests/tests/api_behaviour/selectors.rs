//! Label and field selectors, pagination and list resourceVersions.

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams};

use crate::{api, create_configmap, create_node, create_pod, failed, raw};

async fn names(cms: &Api<ConfigMap>, selector: &str) -> Vec<String> {
    let mut n: Vec<String> = cms
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    n.sort();
    n
}

#[tokio::test]
async fn label_selectors_support_every_operator() {
    let api = api("label-selectors").await;
    create_configmap(&api, "web", &[("app", "web"), ("tier", "front")]).await;
    create_configmap(&api, "db", &[("app", "db"), ("tier", "back")]).await;
    create_configmap(&api, "bare", &[]).await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), &api.namespace);
    let cases: &[(&str, &[&str])] = &[
        ("app=web", &["web"]),
        ("app==web", &["web"]),
        ("app!=web", &["bare", "db"]),
        ("app in (web,db)", &["db", "web"]),
        ("app notin (web)", &["bare", "db"]),
        ("tier", &["db", "web"]),
        ("!tier", &["bare"]),
        ("app=web,tier=front", &["web"]),
        ("app=web,tier=back", &[]),
    ];
    for (sel, want) in cases {
        assert_eq!(names(&cms, sel).await, *want, "{sel}");
    }
    let s = failed(cms.list(&ListParams::default().labels("app in (web")).await);
    assert_eq!((s.code, s.reason.as_str()), (400, "BadRequest"));
    assert!(s.message.starts_with("unable to parse requirement"), "{}", s.message);
}

#[tokio::test]
async fn field_selectors_by_name_namespace_and_pod_node() {
    let api = api("field-selectors").await;
    let (n1, n2) = (api.name("n1"), api.name("n2"));
    create_node(&api, "n1").await;
    create_node(&api, "n2").await;
    create_pod(&api, "a", Some(&n1), &[], "default").await;
    create_pod(&api, "b", Some(&n2), &[], "default").await;
    create_pod(&api, "c", None, &[], "default").await;
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), &api.namespace);
    let list = |f: String| {
        let pods = pods.clone();
        async move {
            let mut v: Vec<String> = pods
                .list(&ListParams::default().fields(&f))
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|p| p.metadata.name.unwrap())
                .collect();
            v.sort();
            v
        }
    };
    assert_eq!(list(format!("spec.nodeName={n1}")).await, vec!["a"]);
    assert_eq!(list(format!("spec.nodeName!={n1}")).await, vec!["b", "c"]);
    assert_eq!(list("spec.nodeName=".to_string()).await, vec!["c"]);
    assert_eq!(list("metadata.name=b".to_string()).await, vec!["b"]);
    assert_eq!(list(format!("metadata.namespace={},metadata.name!=a", api.namespace)).await, vec!["b", "c"]);
    assert_eq!(list("status.phase=Pending".to_string()).await, vec!["a", "b", "c"]);
    let all: Api<Pod> = Api::all(api.client.clone());
    let on_node: Vec<String> = all
        .list(&ListParams::default().fields(&format!("spec.nodeName={n2}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    assert_eq!(on_node, vec!["b"]);
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(api.client.clone());
    let found = nodes.list(&ListParams::default().fields(&format!("metadata.name={n1}"))).await.unwrap();
    assert_eq!(found.items.len(), 1);
    let s = failed(pods.list(&ListParams::default().fields("spec.bogus=x")).await);
    assert_eq!((s.code, s.reason.as_str()), (400, "BadRequest"), "{}", s.message);
}

#[tokio::test]
async fn lists_paginate_with_limit_and_continue() {
    let api = api("pagination").await;
    for i in 0..5 {
        create_configmap(&api, &format!("cm-{i}"), &[("page", "yes")]).await;
    }
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), &api.namespace);
    let unselected = cms.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(unselected.metadata.remaining_item_count, Some(3), "counted only for lists without selectors");
    let first = cms.list(&ListParams::default().labels("page=yes").limit(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.metadata.remaining_item_count, None);
    let token = first.metadata.continue_.clone().expect("a continue token");
    let second = cms.list(&ListParams::default().labels("page=yes").limit(2).continue_token(&token)).await.unwrap();
    let third = cms
        .list(
            &ListParams::default()
                .labels("page=yes")
                .limit(2)
                .continue_token(second.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(third.items.len(), 1);
    assert!(third.metadata.continue_.as_deref().unwrap_or_default().is_empty());
    let all: Vec<String> =
        first.items.iter().chain(&second.items).chain(&third.items).map(|c| c.metadata.name.clone().unwrap()).collect();
    assert_eq!(all, vec!["cm-0", "cm-1", "cm-2", "cm-3", "cm-4"], "sorted by name, no repeats");
    let s = failed(cms.list(&ListParams::default().limit(2).continue_token("garbage")).await);
    assert_eq!(s.code, 400, "{}", s.message);
}

#[tokio::test]
async fn lists_at_a_resource_version() {
    let api = api("list-rv").await;
    create_configmap(&api, "a", &[]).await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), &api.namespace);
    let now = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let at = cms.list(&ListParams::default().at(&now)).await.unwrap();
    assert_eq!(at.items.len(), 1);
    let any = cms.list(&ListParams::default().match_any()).await.unwrap();
    assert_eq!(any.items.len(), 1);
    let future = now.parse::<u64>().unwrap() + 1_000_000;
    let r = raw(
        &api.client,
        "GET",
        &format!("/api/v1/namespaces/{}/configmaps?resourceVersion={future}", api.namespace),
        None,
        "",
    )
    .await;
    assert_eq!((r.code, r.body["reason"].as_str()), (504, Some("Timeout")), "{}", r.text);
    assert!(r.text.contains("Too large resource version"), "{}", r.text);
}

#[tokio::test]
async fn metadata_only_gets_lists_and_watches() {
    use futures::StreamExt;
    let api = api("metadata-only").await;
    create_pod(&api, "p", None, &[("app", "m")], "default").await;
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), &api.namespace);
    let one = pods.get_metadata("p").await.unwrap();
    assert_eq!(one.metadata.labels.unwrap()["app"], "m");
    assert_eq!(one.types.as_ref().map(|t| t.kind.as_str()), Some("PartialObjectMetadata"));
    let list = pods.list_metadata(&ListParams::default().labels("app=m")).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let rv = list.metadata.resource_version.unwrap();
    let mut w = pods.watch_metadata(&kube::api::WatchParams::default().timeout(20), &rv).await.unwrap().boxed();
    create_pod(&api, "q", None, &[], "default").await;
    match tokio::time::timeout(std::time::Duration::from_secs(10), w.next()).await.unwrap().unwrap().unwrap() {
        kube::api::WatchEvent::Added(m) => assert_eq!(m.metadata.name.as_deref(), Some("q")),
        other => panic!("unexpected {other:?}"),
    }
}
