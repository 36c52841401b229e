//! Watches: events in order from a resourceVersion, selectors (objects
//! leaving the selection), 410 Expired, timeouts, initial events and the
//! kube-runtime watcher.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::watcher;
use serde_json::json;

use crate::{api, create_configmap, create_node, create_pod, obj};

/// The next event of a watch stream within 10 s.
async fn next<S, K>(s: &mut S) -> WatchEvent<K>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<K>>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream is open")
        .expect("a decodable event")
}

fn kind_and_name(e: &WatchEvent<ConfigMap>) -> (&'static str, String) {
    match e {
        WatchEvent::Added(c) => ("ADDED", c.metadata.name.clone().unwrap()),
        WatchEvent::Modified(c) => ("MODIFIED", c.metadata.name.clone().unwrap()),
        WatchEvent::Deleted(c) => ("DELETED", c.metadata.name.clone().unwrap()),
        WatchEvent::Bookmark(_) => ("BOOKMARK", String::new()),
        WatchEvent::Error(s) => panic!("watch error {s:?}"),
    }
}

/// The next non-bookmark event.
async fn next_change<S>(s: &mut S) -> (&'static str, String)
where
    S: futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin,
{
    loop {
        let e = next(s).await;
        let kn = kind_and_name(&e);
        if kn.0 != "BOOKMARK" {
            return kn;
        }
    }
}

#[tokio::test]
async fn watch_from_a_resource_version_sees_every_change_in_order() {
    let api = api("watch-order").await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), &api.namespace);
    let rv = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    create_configmap(&api, "a", &[]).await;
    cms.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "2"}}))).await.unwrap();
    create_configmap(&api, "b", &[]).await;
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    let mut s = cms.watch(&WatchParams::default().timeout(20), &rv).await.unwrap().boxed();
    let got = vec![
        next_change(&mut s).await,
        next_change(&mut s).await,
        next_change(&mut s).await,
        next_change(&mut s).await,
    ];
    let want =
        vec![("ADDED", "a".to_string()), ("MODIFIED", "a".into()), ("ADDED", "b".into()), ("DELETED", "a".into())];
    assert_eq!(got, want);
    // Live events after the replay.
    create_configmap(&api, "c", &[]).await;
    assert_eq!(next_change(&mut s).await, ("ADDED", "c".into()));
}

#[tokio::test]
async fn watch_with_a_label_selector_sees_objects_enter_and_leave() {
    let api = api("watch-selector").await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), &api.namespace);
    create_configmap(&api, "x", &[("team", "a")]).await;
    let rv = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut s = cms.watch(&WatchParams::default().labels("team=a").timeout(20), &rv).await.unwrap().boxed();
    create_configmap(&api, "ignored", &[("team", "b")]).await;
    cms.patch("x", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"team": "b"}}})))
        .await
        .unwrap();
    let e = next(&mut s).await;
    let WatchEvent::Deleted(left) = e else { panic!("expected DELETED, got {e:?}") };
    assert_eq!(left.metadata.name.as_deref(), Some("x"));
    assert_eq!(left.metadata.labels.unwrap()["team"], "a", "the last state that matched");
    cms.patch("ignored", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})))
        .await
        .unwrap();
    assert_eq!(next_change(&mut s).await, ("ADDED", "ignored".into()));
}

#[tokio::test]
async fn watch_by_exact_name_and_by_node_name() {
    let api = api("watch-fields").await;
    let node = api.name("w");
    create_node(&api, "w").await;
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), &api.namespace);
    let rv = pods.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut by_node = pods
        .watch(&WatchParams::default().fields(&format!("spec.nodeName={node}")).timeout(20), &rv)
        .await
        .unwrap()
        .boxed();
    let mut by_name =
        pods.watch(&WatchParams::default().fields("metadata.name=two").timeout(20), &rv).await.unwrap().boxed();
    create_pod(&api, "one", Some(&node), &[], "default").await;
    create_pod(&api, "two", None, &[], "default").await;
    let name = |e: WatchEvent<Pod>| match e {
        WatchEvent::Added(p) => p.metadata.name.unwrap(),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(name(next(&mut by_node).await), "one");
    assert_eq!(name(next(&mut by_name).await), "two");
}

#[tokio::test]
async fn watch_from_before_the_history_gets_410_expired() {
    // A custom resource's watch cache starts when its CRD is established,
    // so resourceVersion 1 is always too old for it, on both backends.
    let api = api("watch-expired").await;
    let group = format!("{}.example.com", api.namespace);
    let crds: Api<CustomResourceDefinition> = Api::all(api.client.clone());
    let crd: CustomResourceDefinition = obj(json!({
        "metadata": {"name": format!("gadgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced", "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                 "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }));
    crds.create(&PostParams::default(), &crd).await.unwrap();
    kube::runtime::wait::await_condition(
        crds.clone(),
        &format!("gadgets.{group}"),
        kube::runtime::conditions::is_crd_established(),
    )
    .await
    .unwrap();
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(&group, "v1", "Gadget"), "gadgets");
    let gadgets: Api<DynamicObject> = Api::namespaced_with(api.client.clone(), &api.namespace, &ar);
    let mut s = crate::eventually(10, "the new type to be served", || {
        let gadgets = gadgets.clone();
        async move { gadgets.watch(&WatchParams::default().timeout(10), "1").await.ok().map(|s| s.boxed()) }
    })
    .await;
    match next(&mut s).await {
        WatchEvent::Error(st) => {
            assert_eq!((st.code, st.reason.as_str()), (410, "Expired"));
            assert!(st.message.starts_with("too old resource version: 1 ("), "{}", st.message);
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    crds.delete(&format!("gadgets.{group}"), &DeleteParams::default()).await.unwrap();
}

#[tokio::test]
async fn watch_ends_at_its_timeout() {
    let api = api("watch-timeout").await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), &api.namespace);
    let rv = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let started = tokio::time::Instant::now();
    let mut s = cms.watch(&WatchParams::default().disable_bookmarks().timeout(2), &rv).await.unwrap().boxed();
    let end = tokio::time::timeout(Duration::from_secs(15), s.next()).await.expect("the stream ends by itself");
    assert!(end.is_none(), "no event expected, got {end:?}");
    assert!(started.elapsed() >= Duration::from_millis(1500), "ended too early: {:?}", started.elapsed());
}

#[tokio::test]
async fn initial_events_end_with_a_bookmark() {
    let api = api("initial-events").await;
    create_configmap(&api, "a", &[]).await;
    create_configmap(&api, "b", &[]).await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), &api.namespace);
    let mut s = cms.watch(&WatchParams::streaming_lists().timeout(20), "").await.unwrap().boxed();
    assert_eq!(kind_and_name(&next(&mut s).await), ("ADDED", "a".into()));
    assert_eq!(kind_and_name(&next(&mut s).await), ("ADDED", "b".into()));
    match next(&mut s).await {
        WatchEvent::Bookmark(b) => {
            assert_eq!(b.metadata.annotations.get("k8s.io/initial-events-end").map(String::as_str), Some("true"));
            assert!(!b.metadata.resource_version.is_empty());
        }
        other => panic!("expected the initial-events-end bookmark, got {other:?}"),
    }
    // Watching without a resourceVersion also starts with the current objects.
    let mut s = cms.watch(&WatchParams::default().timeout(20), "0").await.unwrap().boxed();
    assert_eq!(kind_and_name(&next(&mut s).await), ("ADDED", "a".into()));
}

#[tokio::test]
async fn the_runtime_watcher_lists_then_follows_changes() {
    let api = api("runtime-watcher").await;
    create_configmap(&api, "before", &[]).await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), &api.namespace);
    let mut events = watcher(cms.clone(), watcher::Config::default()).boxed();
    let mut seen_init_done = false;
    let mut applied = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while applied.len() < 2 {
        let e = tokio::time::timeout_at(deadline, events.try_next()).await.expect("events in time").unwrap().unwrap();
        match e {
            watcher::Event::InitApply(c) | watcher::Event::Apply(c) => applied.push(c.metadata.name.unwrap()),
            watcher::Event::InitDone => {
                seen_init_done = true;
                create_configmap(&api, "after", &[]).await;
            }
            _ => {}
        }
    }
    assert!(seen_init_done);
    assert_eq!(applied, vec!["before", "after"]);
}
