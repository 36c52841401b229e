//! The authproxy as agents (and attackers) meet it: a real authproxy process
//! against the API simulator or a real API server, requests sent by hand.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use model::BottlerocketShadow;
use model::names;
use serde_json::{Value, json};
use tests::harness::fleet::{AGENT_SA, AUDIENCE, token};
use tests::harness::netproxy::node_address;
use tests::harness::process::rss_kib;
use tests::harness::tlsclient::{client, client_from};
use tests::harness::{Fleet, FleetOptions, metric, wait_for};

const T: Duration = Duration::from_secs(60);

async fn fleet(name: &str, nodes: usize) -> Fleet {
    Fleet::start(name, FleetOptions { nodes, agents: false, leaders: 0, ..Default::default() }).await.unwrap()
}

/// The projected token (authproxy audience) of the agent on `node`.
async fn agent_token(f: &Fleet, node: &str, audience: Option<&str>) -> String {
    let pod = format!("brupop-agent-{node}");
    token(f.client(), &f.ns, AGENT_SA, audience, Some((&pod, &f.agent_pods[node]))).await.unwrap()
}

fn agent_tls(f: &Fleet) -> tests::harness::certs::TlsDir {
    tests::harness::fleet::agent_tls(f)
}

fn url(f: &Fleet, path: &str) -> String {
    format!("https://{}{path}", f.authproxy_addr)
}

/// Sends a request; returns the status code and the error reason (if any).
async fn send(
    c: &reqwest::Client,
    url: &str,
    method: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<(u16, String), String> {
    let mut req = c.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url).body(body);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.map_err(|e| format!("{e:?}"))?;
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let reason = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Ok((code, reason))
}

async fn post(c: &reqwest::Client, url: &str, token: &str, body: Value) -> (u16, String) {
    send(c, url, "POST", Some(token), Some("application/json"), serde_json::to_vec(&body).unwrap()).await.unwrap()
}

/// Every object the tests' requests could touch, by kind/name → resourceVersion.
async fn snapshot(f: &Fleet) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let lp = ListParams::default();
    let rv =
        |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| m.resource_version.clone().unwrap_or_default();
    for n in Api::<Node>::all(f.client().clone()).list(&ListParams::default().labels(&f.selector)).await.unwrap().items
    {
        out.insert(format!("node/{}", n.metadata.name.clone().unwrap()), rv(&n.metadata));
    }
    for p in Api::<Pod>::namespaced(f.client().clone(), &f.ns).list(&lp).await.unwrap().items {
        out.insert(format!("pod/{}", p.metadata.name.clone().unwrap()), rv(&p.metadata));
    }
    for l in Api::<Lease>::namespaced(f.client().clone(), &f.ns).list(&lp).await.unwrap().items {
        out.insert(format!("lease/{}", l.metadata.name.clone().unwrap()), rv(&l.metadata));
    }
    for s in Api::<BottlerocketShadow>::namespaced(f.client().clone(), &f.ns).list(&lp).await.unwrap().items {
        out.insert(format!("shadow/{}", s.metadata.name.clone().unwrap()), rv(&s.metadata));
    }
    out
}

/// Posts `body` with `token` until the authproxy answers 200 (it may still
/// be starting).
async fn until_answered(c: &reqwest::Client, url: &str, token: &str, body: &Value) {
    wait_for("the authproxy to answer", T, || async {
        // Refused connections too: the authproxy may not be listening yet.
        let bytes = serde_json::to_vec(body).unwrap();
        match send(c, url, "POST", Some(token), Some("application/json"), bytes).await {
            Ok((200, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// A node's agent as it reports its status: its client, token, an
/// Idle report and the status URL, once the authproxy answers it.
async fn reporting_agent(f: &Fleet, node: &str) -> (reqwest::Client, String, Value, String) {
    let c = client(&agent_tls(f).ca(), Some(&agent_tls(f)));
    let tok = agent_token(f, node, Some(AUDIENCE)).await;
    let report = json!({"state": "Idle", "currentVersion": "1.20.0"});
    let u = url(f, &format!("/v1/nodes/{node}/status"));
    until_answered(&c, &u, &tok, &report).await;
    (c, tok, report, u)
}

async fn create_lease(f: &Fleet, name: &str, holder: &str, slot_label: bool) {
    let mut labels = json!({});
    if slot_label {
        labels = json!({ names::SLOT_LABEL: "true" });
    }
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": f.ns, "labels": labels},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 300,
                 "acquireTime": jiff::Timestamp::now().to_string(), "renewTime": jiff::Timestamp::now().to_string()},
    }))
    .unwrap();
    Api::<Lease>::namespaced(f.client().clone(), &f.ns).create(&PostParams::default(), &lease).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_writes_only_about_its_own_node() {
    let f = fleet("authproxy-binding", 2).await;
    let (a, b) = (f.nodes[0].clone(), f.nodes[1].clone());
    let c = client(&agent_tls(&f).ca(), Some(&agent_tls(&f)));
    let tok = agent_token(&f, &a, Some(AUDIENCE)).await;
    let report = json!({"state": "Idle", "currentVersion": "1.20.0", "targetVersion": "1.21.0"});
    let ok = wait_for("the authproxy to answer", T, || async {
        let r = send(
            &c,
            &url(&f, &format!("/v1/nodes/{a}/status")),
            "POST",
            Some(&tok),
            Some("application/json"),
            serde_json::to_vec(&report).unwrap(),
        )
        .await?;
        if r.0 == 200 { Ok(r) } else { Err(format!("{r:?}")) }
    })
    .await;
    assert_eq!(ok.0, 200);
    let shadow = f.shadow(&a).await.expect("the shadow was created");
    let owner = &shadow.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Node", a.as_str()), "owned by its Node");
    assert_eq!(shadow.status.unwrap().offered_version(), Some("1.21.0"));
    // The same token about the other node: refused, nothing written.
    let before = snapshot(&f).await;
    assert_eq!(
        post(&c, &url(&f, &format!("/v1/nodes/{b}/status")), &tok, report.clone()).await,
        (403, "NodeMismatch".into())
    );
    assert!(f.shadow(&b).await.is_none());
    assert_eq!(snapshot(&f).await, before);
    // A slot request is recorded, never granted.
    let (code, _) = post(&c, &url(&f, &format!("/v1/nodes/{a}/slot/request")), &tok, report).await;
    assert_eq!(code, 200);
    let shadow = f.shadow(&a).await.unwrap();
    assert!(shadow.status.unwrap().slot_requested_at.is_some());
    assert_eq!(shadow.spec.slot, None);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_are_renewed_and_released_only_by_their_holder_and_cordons_are_owned() {
    let f = fleet("authproxy-slots", 2).await;
    let (a, b) = (f.nodes[0].clone(), f.nodes[1].clone());
    let c = client(&agent_tls(&f).ca(), Some(&agent_tls(&f)));
    let tok = agent_token(&f, &a, Some(AUDIENCE)).await;
    create_lease(&f, "brupop-slot-0", &a, true).await;
    create_lease(&f, "brupop-slot-1", &b, true).await;
    let u = |e: &str| url(&f, &format!("/v1/nodes/{a}/{e}"));
    until_answered(&c, &u("slot/renew"), &tok, &json!({"slot": "brupop-slot-0", "durationSeconds": 60})).await;
    // Capped at --max-slot-lease (whole seconds).
    let max = f.opts.authproxy_args.iter().find(|(k, _)| k == "max-slot-lease").map(|(_, v)| v.clone()).unwrap();
    let max = model::parse::duration(&max).unwrap().as_secs();
    let r = c
        .post(u("slot/renew"))
        .bearer_auth(&tok)
        .json(&json!({"slot": "brupop-slot-0", "durationSeconds": 3600}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["leaseDurationSeconds"], max, "{v}");
    assert_eq!(
        post(&c, &u("slot/renew"), &tok, json!({"slot": "brupop-slot-1", "durationSeconds": 60})).await,
        (409, "NotHolder".into())
    );
    let before = snapshot(&f).await;
    let (code, _) = post(&c, &u("slot/release"), &tok, json!({"slot": "brupop-slot-1"})).await;
    assert_eq!(code, 200, "releasing someone else's slot is a no-op");
    assert_eq!(snapshot(&f).await, before, "and changes nothing");
    // Cordon is fenced: only with the slot held.
    assert_eq!(
        post(
            &c,
            &u("cordon"),
            &tok,
            json!({"slot": "brupop-slot-1", "minRemainingSeconds": 5, "excludeFromLoadBalancers": true})
        )
        .await,
        (409, "NotHolder".into())
    );
    let (code, _) = post(
        &c,
        &u("cordon"),
        &tok,
        json!({"slot": "brupop-slot-0", "minRemainingSeconds": 5, "excludeFromLoadBalancers": true}),
    )
    .await;
    assert_eq!(code, 200);
    let node = f.node(&a).await.unwrap();
    assert!(node.spec.unwrap().unschedulable.unwrap());
    let ann = node.metadata.annotations.unwrap();
    assert!(ann.contains_key(names::CORDONED_ANNOTATION) && ann.contains_key(names::LB_EXCLUDED_ANNOTATION));
    assert!(node.metadata.labels.unwrap().contains_key(names::EXCLUDE_LB_LABEL));
    let (code, _) = post(&c, &u("uncordon"), &tok, json!({"includeInLoadBalancers": true})).await;
    assert_eq!(code, 200);
    let node = f.node(&a).await.unwrap();
    assert!(!node.spec.unwrap().unschedulable.unwrap_or(false));
    assert!(!node.metadata.labels.unwrap().contains_key(names::EXCLUDE_LB_LABEL));
    // An administrator's cordon is neither taken over nor lifted.
    let nodes: Api<Node> = Api::all(f.client().clone());
    nodes
        .patch(&a, &Default::default(), &kube::api::Patch::Merge(&json!({"spec": {"unschedulable": true}})))
        .await
        .unwrap();
    let r = c
        .post(u("cordon"))
        .bearer_auth(&tok)
        .json(&json!({"slot": "brupop-slot-0", "minRemainingSeconds": 5}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["cordonedByUs"].as_bool(), v["changed"].as_bool()), (Some(false), Some(false)), "{v}");
    let (code, _) = post(&c, &u("uncordon"), &tok, json!({})).await;
    assert_eq!(code, 200);
    assert!(f.cordoned(&a).await, "the administrator's cordon stays");
    // Release by the holder frees it.
    let r = c.post(u("slot/release")).bearer_auth(&tok).json(&json!({"slot": "brupop-slot-0"})).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["released"], true);
    assert_eq!(f.slots().await[0], ("brupop-slot-0".to_owned(), None));
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_evicts_through_the_eviction_api_and_reports_pdb_refusals() {
    let f = fleet("authproxy-drain", 1).await;
    let a = f.nodes[0].clone();
    let c = client(&agent_tls(&f).ca(), Some(&agent_tls(&f)));
    let tok = agent_token(&f, &a, Some(AUDIENCE)).await;
    create_lease(&f, "brupop-slot-0", &a, true).await;
    let pdbs: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> = Api::namespaced(f.client().clone(), &f.ns);
    let pdb = serde_json::from_value(json!({"metadata": {"name": "keep-one"}, "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "web"}}}})).unwrap();
    pdbs.create(&Default::default(), &pdb).await.unwrap();
    let report: Value = wait_for("a drain round", T, || async {
        let r = c
            .post(url(&f, &format!("/v1/nodes/{a}/drain")))
            .bearer_auth(&tok)
            .json(&json!({"slot": "brupop-slot-0", "minRemainingSeconds": 5}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status() == 200 { r.json().await.map_err(|e| e.to_string()) } else { Err(format!("{}", r.status())) }
    })
    .await;
    let pods = report["pods"].as_array().unwrap();
    assert_eq!(pods.len(), 2, "the two web pods; the agent and DaemonSet pods are skipped: {report}");
    assert!(pods.iter().all(|p| p["outcome"] == "blocked"), "{report}");
    assert_eq!(report["skipped"], 2, "{report}");
    assert_eq!(report["remaining"], 2);
    pdbs.delete("keep-one", &DeleteParams::default()).await.unwrap();
    let r: Value = c
        .post(url(&f, &format!("/v1/nodes/{a}/drain")))
        .bearer_auth(&tok)
        .json(&json!({"slot": "brupop-slot-0", "minRemainingSeconds": 5}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["pods"].as_array().unwrap().iter().all(|p| p["outcome"] == "evicted"), "{r}");
    wait_for("the evicted pods to be gone", T, || async {
        let r: Value = c
            .post(url(&f, &format!("/v1/nodes/{a}/drain")))
            .bearer_auth(&tok)
            .json(&json!({"slot": "brupop-slot-0", "minRemainingSeconds": 5}))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if r["remaining"] == 0 { Ok(()) } else { Err(r.to_string()) }
    })
    .await;
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificates_are_served_without_a_restart() {
    let mut f = fleet("authproxy-rotation", 1).await;
    let a = f.nodes[0].clone();
    let old_tls = agent_tls(&f);
    let old_ca = f.dir.join("old-ca.crt");
    std::fs::copy(old_tls.ca(), &old_ca).unwrap();
    let old_cert_dir = f.dir.join("old-agent");
    std::fs::create_dir_all(&old_cert_dir).unwrap();
    for file in ["tls.crt", "tls.key", "ca.crt"] {
        std::fs::copy(old_tls.dir.join(file), old_cert_dir.join(file)).unwrap();
    }
    let old_identity = tests::harness::certs::TlsDir { dir: old_cert_dir };
    let tok = agent_token(&f, &a, Some(AUDIENCE)).await;
    let report = json!({"state": "Idle", "currentVersion": "1.20.0"});
    let u = url(&f, &format!("/v1/nodes/{a}/status"));
    // A client with an open (kept-alive) connection from before the rotation.
    let old_client = client(&old_ca, Some(&old_identity));
    until_answered(&old_client, &u, &tok, &report).await;
    let pid_before = f.authproxy.lock().unwrap().pid();
    // cert-manager rotates: a new CA, a new server certificate, a new client CA bundle.
    f.pki.rotate_ca().unwrap();
    f.pki.server("authproxy").unwrap();
    let new_tls = f.pki.client("agent").unwrap();
    let new_client = client(&new_tls.ca(), Some(&new_tls));
    wait_for("the rotated server certificate to be served", T, || async {
        match send(&new_client, &u, "POST", Some(&tok), Some("application/json"), serde_json::to_vec(&report).unwrap())
            .await
        {
            Ok((200, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // The open connection was not dropped: it still works on the old configuration.
    assert_eq!(post(&old_client, &u, &tok, report.clone()).await.0, 200, "kept-alive connection survives the rotation");
    // A new connection with the old client certificate (its CA removed) is refused.
    let old_cert_new_trust = client(&new_tls.ca(), Some(&old_identity));
    let refused = send(&old_cert_new_trust, &u, "POST", Some(&tok), Some("application/json"), vec![]).await;
    assert!(refused.is_err(), "a client certificate from the removed CA is refused: {refused:?}");
    assert_eq!(f.authproxy.lock().unwrap().pid(), pid_before, "no restart");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_reviews_are_cached_per_token() {
    let f = fleet("authproxy-cache", 2).await;
    let a = f.nodes[0].clone();
    let (c, tok, report, u) = reporting_agent(&f, &a).await;
    for _ in 0..20 {
        assert_eq!(post(&c, &u, &tok, report.clone()).await.0, 200);
    }
    let m = f.authproxy_metrics().await;
    let reviews = metric(&m, "brupop_authproxy_tokenreviews_total{result=\"authenticated\"}").unwrap_or(0.0);
    let hits = metric(&m, "brupop_authproxy_token_cache_total{result=\"hit\"}").unwrap_or(0.0);
    assert_eq!(reviews, 1.0, "one TokenReview for 21 requests: {m}");
    assert_eq!(hits, 20.0, "{m}");
    // Another node's token is reviewed on its own.
    let other = agent_token(&f, &f.nodes[1], Some(AUDIENCE)).await;
    assert_eq!(
        post(&c, &u, &other, report).await,
        (403, "NodeMismatch".into()),
        "a cached result never serves another token"
    );
    f.stop().await;
}

/// A token's check is cached for the token's life (one TokenReview per
/// token), but only while its pod lives: deleting the agent pod ends it
/// within seconds, although the cache would keep it for an hour.
#[tokio::test]
async fn a_deleted_agent_pods_token_stops_working_within_seconds() {
    let f = fleet("authproxy-revoke", 1).await;
    let a = f.nodes[0].clone();
    let (c, tok, report, u) = reporting_agent(&f, &a).await;
    let reviews = |m: &str| metric(m, "brupop_authproxy_tokenreviews_total{result=\"authenticated\"}").unwrap_or(0.0);
    let first = reviews(&f.authproxy_metrics().await);
    for _ in 0..10 {
        assert_eq!(post(&c, &u, &tok, report.clone()).await.0, 200);
    }
    assert_eq!(reviews(&f.authproxy_metrics().await), first, "a cached token costs no more reviews");
    let pod = format!("brupop-agent-{a}");
    let dp = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
    Api::<Pod>::namespaced(f.client().clone(), &f.ns).delete(&pod, &dp).await.unwrap();
    let deleted = std::time::Instant::now();
    wait_for("the deleted pod's token to be refused", Duration::from_secs(10), || async {
        match post(&c, &u, &tok, report.clone()).await {
            (401 | 403, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    println!("a deleted pod's token was refused {:?} after the delete", deleted.elapsed());
    f.stop().await;
}

/// A holder of the client certificate floods garbage tokens from one address
/// while 50 honest agents, each from its own address, renew their slots: no
/// honest renewal fails, the flood gets only refusals and costs TokenReviews
/// at no more than the per-peer rate, and the authproxy stays within the
/// memory limit of its Deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_garbage_tokens_from_one_peer_leaves_honest_renewals_working() {
    const AGENTS: usize = 50;
    let f = fleet("authproxy-flood", AGENTS).await;
    let tls = agent_tls(&f);
    let mut honest = Vec::new();
    for (i, n) in f.nodes.iter().enumerate() {
        let slot = format!("brupop-slot-{i}");
        create_lease(&f, &slot, n, true).await;
        let tok = agent_token(&f, n, Some(AUDIENCE)).await;
        let c = client_from(&agent_tls(&f).ca(), Some(&tls), Some(node_address(i)));
        honest.push((n.clone(), slot, tok, c));
    }
    let ap_pid = f.authproxy.lock().unwrap().pid().unwrap();
    // A request head larger than the 8 KiB buffer is refused, never buffered.
    let big = client_from(&tls.ca(), Some(&tls), Some("127.0.3.1".parse().unwrap()));
    let u = url(&f, &format!("/v1/nodes/{}/status", f.nodes[0]));
    let r = big.post(&u).header("x-pad", "a".repeat(12 * 1024)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 431, "an oversized head is refused");
    let before = metric_map(&f.authproxy_metrics().await);

    // The flood: 32 requests at a time from 127.0.2.1, each with a new token.
    let flooding = Arc::new(AtomicBool::new(true));
    let flood_client = client_from(&tls.ca(), Some(&tls), Some("127.0.2.1".parse().unwrap()));
    let target = url(&f, &format!("/v1/nodes/{}/slot/renew", f.nodes[0]));
    let mut flood = Vec::new();
    for t in 0..32 {
        let (c, u, on) = (flood_client.clone(), target.clone(), flooding.clone());
        flood.push(tokio::spawn(async move {
            let mut answers: BTreeMap<String, u64> = BTreeMap::new();
            let mut k = 0u64;
            while on.load(Ordering::Relaxed) {
                k += 1;
                let body = serde_json::to_vec(&json!({"slot": "brupop-slot-0", "durationSeconds": 60})).unwrap();
                let tok = format!("garbage-{t}-{k}");
                let key = match send(&c, &u, "POST", Some(&tok), Some("application/json"), body).await {
                    Ok((code, reason)) => format!("{code} {reason}"),
                    Err(_) => "connection refused or closed".to_owned(),
                };
                *answers.entry(key).or_default() += 1;
            }
            answers
        }));
    }
    wait_for("the flood to be rate limited", T, || async {
        let m = f.authproxy_metrics().await;
        match metric(&m, "brupop_authproxy_denied_total{reason=\"PeerRateLimited\"}") {
            Some(n) if n > 0.0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // Meanwhile every honest agent renews 8 times, 250 ms apart (its first
    // renewal needs a TokenReview of its own, during the flood).
    let started = std::time::Instant::now();
    let renewals = honest.into_iter().map(|(node, slot, tok, c)| {
        let u = url(&f, &format!("/v1/nodes/{node}/slot/renew"));
        async move {
            let mut failed = Vec::new();
            for _ in 0..8 {
                let r = post(&c, &u, &tok, json!({"slot": slot, "durationSeconds": 60})).await;
                if r.0 != 200 {
                    failed.push(format!("{node}: {r:?}"));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            failed
        }
    });
    let failed: Vec<String> = futures::future::join_all(renewals).await.into_iter().flatten().collect();
    let flood_secs = started.elapsed().as_secs_f64();
    flooding.store(false, Ordering::Relaxed);
    let mut answers: BTreeMap<String, u64> = BTreeMap::new();
    for t in flood {
        for (k, n) in t.await.unwrap() {
            *answers.entry(k).or_default() += n;
        }
    }
    let after = metric_map(&f.authproxy_metrics().await);
    let delta = |k: &str| after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0);
    let rejected = delta("brupop_authproxy_tokenreviews_total{result=\"rejected\"}");
    let peak_kib = f.peak_rss.lock().unwrap().get("authproxy").copied().unwrap_or(0).max(rss_kib(ap_pid).unwrap_or(0));
    println!(
        "flood for {flood_secs:.1} s: answers {answers:?}; TokenReviews of garbage {rejected}; \
         authproxy peak RSS {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    assert!(failed.is_empty(), "honest renewals failed during the flood: {failed:#?}");
    assert!(answers.keys().all(|k| !k.starts_with("200")), "the flood got nothing but refusals: {answers:?}");
    let sent: u64 = answers.values().sum();
    // 20/s with a burst of 40 (the shipped --peer-rate-limit), and the
    // time the flood ran before the honest phase (at most T).
    let allowed = 40.0 + 20.0 * (flood_secs + T.as_secs_f64());
    assert!(rejected <= allowed, "the flood cost {rejected} TokenReviews for {sent} requests");
    assert!(peak_kib < 80 * 1024, "the authproxy took {peak_kib} KiB, over half its 160Mi limit");
    f.stop().await;
}

/// Every `name{labels} value` line of a scrape.
fn metric_map(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(k, v)| Some((k.to_owned(), v.parse().ok()?))))
        .collect()
}

#[path = "authproxy/attacks.rs"]
mod attacks;

#[path = "authproxy/ca_rotation.rs"]
mod ca_rotation;
