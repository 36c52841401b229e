//! Simulator-only cases: fault injection, the request log, watch fan-out
//! limits and tunables a real server does not expose. On a real server
//! they print a note and pass.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use tests::apisim::{FaultMatch, SimOptions};
use tests::backend::TestApi;

use crate::{api, create_configmap, create_pod, failed, obj, skip_on_real};

async fn sim_api(name: &str, opts: SimOptions) -> TestApi {
    TestApi::start_with(name, opts).await.unwrap()
}

#[tokio::test]
async fn fail_next_fails_matching_requests_only() {
    let api = api("fault-fail-next").await;
    if skip_on_real(&api, "fail_next") {
        return;
    }
    let sim = api.sim().unwrap();
    let leases: Api<Lease> = Api::namespaced(api.client.clone(), &api.namespace);
    let l = leases.create(&PostParams::default(), &obj(json!({"metadata": {"name": "l"}, "spec": {}}))).await.unwrap();
    sim.faults().fail_next(FaultMatch::new().verb("update").resource("leases").user("admin"), 2, 503);
    sim.faults().fail_next(FaultMatch::new().verb("get").resource("leases").user("someone-else"), 1, 500);
    leases.get("l").await.expect("other users' faults do not apply");
    for _ in 0..2 {
        let s = failed(leases.replace("l", &PostParams::default(), &l).await);
        assert_eq!((s.code, s.reason.as_str()), (503, "ServiceUnavailable"));
    }
    leases.replace("l", &PostParams::default(), &l).await.expect("only the next two failed");
}

#[tokio::test]
async fn delays_slow_down_matching_requests() {
    let api = api("fault-delay").await;
    if skip_on_real(&api, "delay") {
        return;
    }
    let sim = api.sim().unwrap();
    sim.faults().delay(FaultMatch::new().verb("list").resource("configmaps"), Duration::from_millis(800));
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), &api.namespace);
    let t = tokio::time::Instant::now();
    cms.list(&ListParams::default()).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(800));
    sim.faults().clear_delays();
    let t = tokio::time::Instant::now();
    cms.list(&ListParams::default()).await.unwrap();
    assert!(t.elapsed() < Duration::from_millis(800));
}

#[tokio::test]
async fn a_partitioned_user_loses_requests_and_watches_until_healed() {
    let api = api("fault-partition").await;
    if skip_on_real(&api, "partition_user") {
        return;
    }
    let sim = api.sim().unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(api.client.clone(), &api.namespace);
    sas.create(&PostParams::default(), &obj(json!({"metadata": {"name": "agent"}}))).await.unwrap();
    let tr: TokenRequest = obj(json!({"spec": {}}));
    let token =
        sas.create_token_request("agent", &PostParams::default(), &tr).await.unwrap().status.unwrap().token.unwrap();
    let agent = api.client_with_token(&token).await.unwrap();
    let user = format!("system:serviceaccount:{}:agent", api.namespace);
    let cms: Api<ConfigMap> = Api::namespaced(agent, &api.namespace);
    let mut w = cms.watch(&WatchParams::default().timeout(60), "0").await.unwrap().boxed();
    sim.faults().partition_user(&user);
    let end = tokio::time::timeout(Duration::from_secs(10), w.next()).await.expect("the watch ends");
    assert!(end.is_none(), "{end:?}");
    let err = cms.list(&ListParams::default()).await.expect_err("requests are dropped");
    assert!(!matches!(err, kube::Error::Api(_)), "no answer at all, not a Status: {err:?}");
    Api::<ConfigMap>::namespaced(api.client.clone(), &api.namespace)
        .list(&ListParams::default())
        .await
        .expect("other users are fine");
    sim.faults().heal_user(&user);
    crate::eventually(10, "the agent to reach the server again", || {
        let cms = cms.clone();
        async move { cms.list(&ListParams::default()).await.ok() }
    })
    .await;
}

#[tokio::test]
async fn close_all_watches_ends_streams_and_watchers_recover() {
    let api = api("fault-close-watches").await;
    if skip_on_real(&api, "close_all_watches") {
        return;
    }
    let sim = api.sim().unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), &api.namespace);
    let mut raw = cms.watch(&WatchParams::default().timeout(60), "0").await.unwrap().boxed();
    // A kube-runtime watcher, driven by its own task as an operator would.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watched = cms.clone();
    let driver = tokio::spawn(async move {
        let mut w = kube::runtime::watcher(watched, Default::default()).boxed();
        while let Some(e) = w.next().await {
            if let Ok(kube::runtime::watcher::Event::Apply(c) | kube::runtime::watcher::Event::InitApply(c)) = e {
                let _ = tx.send(c.metadata.name.unwrap_or_default());
            }
        }
    });
    crate::eventually(10, "both watches to be open", || async { (sim.watch_count() >= 2).then_some(()) }).await;
    assert!(sim.faults().close_all_watches() >= 2);
    assert!(tokio::time::timeout(Duration::from_secs(10), raw.next()).await.unwrap().is_none(), "the raw stream ended");
    create_configmap(&api, "after", &[]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::timeout_at(deadline, rx.recv())
        .await
        .expect("the runtime watcher re-watched and saw it")
        .as_deref()
        != Some("after")
    {}
    driver.abort();
}

#[tokio::test]
async fn the_request_log_counts_by_verb_resource_and_user() {
    let api = api("request-log").await;
    if skip_on_real(&api, "request_log") {
        return;
    }
    let sim = api.sim().unwrap();
    let before = sim.request_log();
    let leases: Api<Lease> = Api::namespaced(api.client.clone(), &api.namespace);
    let l = leases.create(&PostParams::default(), &obj(json!({"metadata": {"name": "l"}, "spec": {}}))).await.unwrap();
    leases.replace("l", &PostParams::default(), &l).await.unwrap();
    leases.patch("l", &PatchParams::default(), &Patch::Merge(json!({"spec": {"holderIdentity": "x"}}))).await.unwrap();
    leases.get("l").await.unwrap();
    leases.list(&ListParams::default()).await.unwrap();
    create_pod(&api, "p", None, &[], "default").await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(api.client.clone(), &api.namespace);
    let _ = pods
        .create_subresource::<_, kube::core::Status>(
            "eviction",
            "p",
            &PostParams::default(),
            &json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"}}),
        )
        .await;
    let d = sim.request_log().since(&before);
    assert_eq!((d.count("create", "leases"), d.count("update", "leases"), d.count("patch", "leases")), (1, 1, 1));
    assert_eq!((d.count("get", "leases"), d.count("list", "leases")), (1, 1));
    assert_eq!(d.count("create", "pods/eviction"), 1);
    assert_eq!(d.by_user("admin"), d.total());
    assert_eq!(d.writes(), 5, "{d:?}");
    let r = sim.recent_requests();
    assert!(r.iter().any(|x| x.info.resource == "pods/eviction" && x.code == 201), "{r:?}");
}

#[tokio::test]
async fn a_slow_watcher_is_closed_without_blocking_writers() {
    let api = sim_api("slow-watcher", SimOptions { watch_queue: 4, ..SimOptions::default() }).await;
    if skip_on_real(&api, "slow watcher") {
        return;
    }
    let sim = api.sim().unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), &api.namespace);
    let rv = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    // Never read: once the connection's buffers are full, its queue fills.
    let mut w = cms.watch(&WatchParams::default().timeout(120), &rv).await.unwrap().boxed();
    crate::eventually(10, "the watch to be registered", || async { (sim.watch_count() == 1).then_some(()) }).await;
    let big = "x".repeat(64 * 1024);
    let t = tokio::time::Instant::now();
    for i in 0..200 {
        cms.create(&PostParams::default(), &obj(json!({"metadata": {"name": format!("c{i}")}, "data": {"big": big}})))
            .await
            .unwrap();
        if sim.watch_count() == 0 {
            break;
        }
    }
    assert_eq!(sim.watch_count(), 0, "the watcher that fell behind was closed");
    assert!(t.elapsed() < Duration::from_secs(60), "writers were not blocked");
    let mut got = 0;
    while let Some(Ok(e)) = tokio::time::timeout(Duration::from_secs(10), w.next()).await.unwrap() {
        assert!(matches!(e, WatchEvent::Added(_)));
        got += 1;
    }
    assert!(got < 200, "it got what was buffered, then the stream ended: {got}");
}

#[tokio::test]
async fn a_bounded_history_expires_old_resource_versions() {
    let api = sim_api("bounded-history", SimOptions { history_per_resource: 5, ..SimOptions::default() }).await;
    if skip_on_real(&api, "bounded history") {
        return;
    }
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), &api.namespace);
    let rv = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    for i in 0..10 {
        create_configmap(&api, &format!("c{i}"), &[]).await;
    }
    let mut w = cms.watch(&WatchParams::default().timeout(10), &rv).await.unwrap().boxed();
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await.unwrap() {
        Some(Ok(WatchEvent::Error(s))) => assert_eq!((s.code, s.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn bookmarks_arrive_when_allowed() {
    let api =
        sim_api("bookmarks", SimOptions { bookmark_interval: Duration::from_millis(200), ..SimOptions::default() })
            .await;
    if skip_on_real(&api, "bookmark interval") {
        return;
    }
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), &api.namespace);
    let rv = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut w = cms.watch(&WatchParams::default().timeout(10), &rv).await.unwrap().boxed();
    let created = create_configmap(&api, "a", &[]).await;
    let created_rv = crate::rv_of(&created.metadata);
    // Bookmarks may come at any time; one after the event must cover it.
    let mut seen_added = false;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), w.next()).await.unwrap() {
            Some(Ok(WatchEvent::Added(_))) => seen_added = true,
            Some(Ok(WatchEvent::Bookmark(b))) => {
                let at = b.metadata.resource_version.parse::<u64>().unwrap();
                assert!(at >= rv.parse::<u64>().unwrap());
                if seen_added {
                    assert!(at >= created_rv, "a bookmark never goes back before delivered events");
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn tokens_expire() {
    let api =
        sim_api("token-expiry", SimOptions { token_min_expiration: Duration::from_secs(1), ..SimOptions::default() })
            .await;
    if skip_on_real(&api, "token expiry (needs a 1 s minimum expiration)") {
        return;
    }
    let sas: Api<ServiceAccount> = Api::namespaced(api.client.clone(), &api.namespace);
    sas.create(&PostParams::default(), &obj(json!({"metadata": {"name": "agent"}}))).await.unwrap();
    let tr: TokenRequest = obj(json!({"spec": {"expirationSeconds": 1}}));
    let token =
        sas.create_token_request("agent", &PostParams::default(), &tr).await.unwrap().status.unwrap().token.unwrap();
    let reviews: Api<k8s_openapi::api::authentication::v1::TokenReview> = Api::all(api.client.clone());
    let review = |t: String| {
        let reviews = reviews.clone();
        async move {
            let out = reviews.create(&PostParams::default(), &obj(json!({"spec": {"token": t}}))).await.unwrap();
            serde_json::to_value(out.status.unwrap()).unwrap()
        }
    };
    assert_eq!(review(token.clone()).await["authenticated"], true);
    let st = crate::eventually(10, "the token to expire", || {
        let (review, token) = (&review, token.clone());
        async move {
            let st = review(token).await;
            (st["authenticated"] != true).then_some(st)
        }
    })
    .await;
    assert_eq!(st["error"], "service account token has expired");
}
