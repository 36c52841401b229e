//! Sessions replayed on the simulator and on a real API server side by side:
//! the objects every step answers with (after removing what legitimately
//! differs: identities, times, versions) and the events watches see must be
//! the same. Run only with a real server (`BRUPOP_TEST_KUBECONFIG`).

use serde_json::{Value, json};

use crate::differential::setup;
use crate::{api, raw};

/// Removes what legitimately differs between two servers (identities,
/// times, versions, field-manager bookkeeping) and what Go serializes but
/// means nothing (null, "", {}, [] values), so answers can be compared.
fn normalize(v: &mut Value) {
    const VOLATILE: &[&str] = &[
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
        "lastTransitionTime",
        "lastHeartbeatTime",
        "lastProbeTime",
        "deletionTimestamp",
        "token",
        "expirationTimestamp",
        "continue",
        "selfLink",
        "time",
        "eventTime",
        "firstTimestamp",
        "lastTimestamp",
        "generateName",
        "audit-id",
    ];
    match v {
        Value::Object(m) => {
            for k in VOLATILE {
                if let Some(x) = m.get_mut(*k)
                    && !x.is_null()
                {
                    *x = json!("<volatile>");
                }
            }
            // disruptedPods: which pods, not when.
            if let Some(Value::Object(d)) = m.get_mut("disruptedPods") {
                for x in d.values_mut() {
                    *x = json!("<time>");
                }
            }
            // Go serializes these zero-valued structs of a Node; they mean nothing.
            for k in ["daemonEndpoints", "nodeInfo"] {
                if m.get(k).is_some_and(all_zero) {
                    m.remove(k);
                }
            }
            for x in m.values_mut() {
                normalize(x);
            }
            m.retain(|_, x| !matches!(x, Value::Null) && *x != json!("") && *x != json!({}) && *x != json!([]));
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

fn all_zero(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.values().all(all_zero),
        Value::Array(a) => a.iter().all(all_zero),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Null => true,
    }
}

/// Differences between two normalized values, as `path: real != sim` lines.
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                differences(
                    &format!("{path}.{k}"),
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}[{i}]"), p, q, out);
            }
        }
        _ if tests::apisim::fields::same(a, b) => {}
        _ => out.push(format!("{path}: real {a} != sim {b}")),
    }
}

#[tokio::test]
async fn a_scripted_session_gives_the_same_objects_as_the_real_server() {
    let api = api("scripted-differential").await;
    if !api.is_real() {
        println!("SKIPPED on the simulator alone: this case compares the simulator with a real API server");
        return;
    }
    let sim = tests::apisim::ApiSim::start().await.unwrap();
    let mut config = sim.client_config(&sim.admin_token());
    config.default_retry = false;
    let sim_client = kube::Client::try_from(config).unwrap();
    let ns = api.namespace.clone();
    let node = api.name("n");
    raw(
        &sim_client,
        "POST",
        "/api/v1/namespaces",
        Some(&json!({"metadata": {"name": ns}}).to_string()),
        "application/json",
    )
    .await;
    setup(&api.client, &ns).await;
    setup(&sim_client, &ns).await;
    let core = format!("/api/v1/namespaces/{ns}");
    let brs = format!("/apis/brupop.bottlerocket.aws/v2/namespaces/{ns}/bottlerocketshadows");
    let merge = "application/merge-patch+json";
    let smp = "application/strategic-merge-patch+json";
    let apply = "application/apply-patch+yaml";
    let jsn = "application/json";
    let steps: Vec<(&str, String, Value, &str)> = vec![
        (
            "POST",
            "/api/v1/nodes".into(),
            json!({"metadata": {"name": node, "labels": {"bottlerocket.aws/updater-interface-version": "2.0.0"}}, "spec": {"podCIDR": "10.0.0.0/24"}, "status": {"capacity": {"cpu": "2"}}}),
            jsn,
        ),
        (
            "PATCH",
            format!("/api/v1/nodes/{node}"),
            json!({"spec": {"unschedulable": true}, "metadata": {"annotations": {"brupop.bottlerocket.aws/cordoned": "true"}}}),
            merge,
        ),
        (
            "PATCH",
            format!("/api/v1/nodes/{node}"),
            json!({"metadata": {"labels": {"node.kubernetes.io/exclude-from-external-load-balancers": "true"}}}),
            smp,
        ),
        (
            "PATCH",
            format!("/api/v1/nodes/{node}/status"),
            json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}),
            smp,
        ),
        (
            "PATCH",
            format!("/api/v1/nodes/{node}"),
            json!({"spec": {"unschedulable": null}, "metadata": {"annotations": {"brupop.bottlerocket.aws/cordoned": null}}}),
            merge,
        ),
        ("GET", format!("/api/v1/nodes/{node}"), Value::Null, jsn),
        (
            "POST",
            format!("{core}/pods"),
            json!({"metadata": {"name": "w1", "labels": {"app": "web"}}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "example.com/web:1.0", "ports": [{"containerPort": 80}]}]}}),
            jsn,
        ),
        (
            "POST",
            format!("{core}/pods"),
            json!({"metadata": {"name": "w2", "labels": {"app": "web"}}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "example.com/web"}]}}),
            jsn,
        ),
        (
            "PATCH",
            format!("{core}/pods/w1/status"),
            json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
            merge,
        ),
        (
            "PATCH",
            format!("{core}/pods/w2/status"),
            json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
            merge,
        ),
        (
            "PATCH",
            format!("{core}/pods/w2/status"),
            json!({"status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}}),
            smp,
        ),
        (
            "PATCH",
            format!("{core}/pods/w1"),
            json!({"spec": {"containers": [{"name": "c", "image": "example.com/web:2.0"}]}}),
            smp,
        ),
        (
            "POST",
            "/apis/policy/v1/namespaces/".to_string() + &ns + "/poddisruptionbudgets",
            json!({"metadata": {"name": "web"}, "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}}),
            jsn,
        ),
        (
            "POST",
            format!("{core}/pods/w1/eviction"),
            json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "w1"}}),
            jsn,
        ),
        ("GET", format!("/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/web"), Value::Null, jsn),
        (
            "POST",
            format!("{core}/pods/w2/eviction"),
            json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "w2"}}),
            jsn,
        ),
        ("GET", format!("{core}/pods/w1"), Value::Null, jsn),
        ("DELETE", format!("{core}/pods/w2"), json!({"gracePeriodSeconds": 10}), jsn),
        ("DELETE", format!("{core}/pods/w1"), json!({"gracePeriodSeconds": 0}), jsn),
        ("GET", format!("{core}/pods/w2"), Value::Null, jsn),
        (
            "PATCH",
            format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/brupop-slot-0?fieldManager=brupop-leader"),
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "brupop-slot-0", "labels": {"brupop.bottlerocket.aws/slot": "true"}}, "spec": {"holderIdentity": node, "leaseDurationSeconds": 120, "leaseTransitions": 1}}),
            apply,
        ),
        (
            "PATCH",
            format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/brupop-slot-0?fieldManager=brupop-authproxy"),
            json!({"spec": {"leaseDurationSeconds": 600}}),
            merge,
        ),
        (
            "PATCH",
            format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/brupop-slot-0?fieldManager=brupop-leader"),
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "brupop-slot-0"}, "spec": {"holderIdentity": node, "leaseDurationSeconds": 120}}),
            apply,
        ),
        (
            "PATCH",
            format!(
                "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/brupop-slot-0?fieldManager=brupop-leader&force=true"
            ),
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "brupop-slot-0"}, "spec": {"holderIdentity": null, "leaseDurationSeconds": 120}}),
            apply,
        ),
        (
            "POST",
            brs.clone(),
            json!({"apiVersion": "brupop.bottlerocket.aws/v2", "kind": "BottlerocketShadow", "metadata": {"name": format!("brs-{node}"), "labels": {"brupop.bottlerocket.aws/node": node}, "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": "00000000-0000-0000-0000-000000000001"}]}, "spec": {"state": "Idle"}, "status": {"current_state": "Idle", "current_version": "1.0.0"}}),
            jsn,
        ),
        (
            "PATCH",
            format!("{brs}/brs-{node}/status"),
            json!({"status": {"current_state": "Idle", "current_version": "1.0.0", "target_version": "1.1.0", "slot_requested_at": "2026-01-01T00:00:00.123456Z"}}),
            merge,
        ),
        (
            "PATCH",
            format!("{brs}/brs-{node}/status?fieldManager=brupop-authproxy&force=true"),
            json!({"apiVersion": "brupop.bottlerocket.aws/v2", "kind": "BottlerocketShadow", "metadata": {"name": format!("brs-{node}")}, "status": {"current_state": "StagedAndPerformedUpdate", "current_version": "1.0.0", "target_version": "1.1.0", "crash_count": 1}}),
            apply,
        ),
        (
            "PATCH",
            format!("{brs}/brs-{node}"),
            json!({"spec": {"state": "StagedAndPerformedUpdate", "version": "1.1.0", "slot": "brupop-slot-0"}}),
            merge,
        ),
        (
            "PATCH",
            format!("{brs}/brs-{node}"),
            json!([{"op": "replace", "path": "/spec/state", "value": "Idle"}, {"op": "remove", "path": "/spec/slot"}]),
            "application/json-patch+json",
        ),
        ("GET", format!("{brs}/brs-{node}"), Value::Null, jsn),
        (
            "POST",
            format!("/apis/brupop.bottlerocket.aws/v1/namespaces/{ns}/updatepolicies"),
            json!({"apiVersion": "brupop.bottlerocket.aws/v1", "kind": "UpdatePolicy", "metadata": {"name": "default"}, "spec": {"maxConcurrentUpdates": "10%"}}),
            jsn,
        ),
        (
            "PATCH",
            format!("/apis/brupop.bottlerocket.aws/v1/namespaces/{ns}/updatepolicies/default/status"),
            json!({"status": {"phase": "Running", "slots": 1}}),
            merge,
        ),
        (
            "POST",
            format!("{core}/configmaps"),
            json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}, "data": {"a": "b"}}),
            jsn,
        ),
        ("DELETE", format!("{core}/configmaps/held"), Value::Null, jsn),
        ("PATCH", format!("{core}/configmaps/held"), json!({"metadata": {"finalizers": null}}), merge),
        ("GET", format!("{core}/configmaps/held"), Value::Null, jsn),
        (
            "POST",
            format!("{core}/events"),
            json!({"metadata": {"name": "e1"}, "involvedObject": {"kind": "Node", "name": node}, "reason": "Cordoned", "message": "m", "type": "Normal", "source": {"component": "brupop"}}),
            jsn,
        ),
        (
            "POST",
            format!("/apis/events.k8s.io/v1/namespaces/{ns}/events"),
            json!({"metadata": {"name": "e2"}, "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "brupop.bottlerocket.aws/leader", "reportingInstance": "leader-0", "action": "Grant", "reason": "SlotGranted", "type": "Normal", "regarding": {"kind": "Node", "name": node}}),
            jsn,
        ),
        ("GET", format!("{core}/pods?fieldSelector=spec.nodeName%3D{node}"), Value::Null, jsn),
        // Unconditional updates (no resourceVersion) of built-ins, main and status.
        (
            "PUT",
            format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/l"),
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l", "labels": {"k": "v"}}, "spec": {"holderIdentity": "x", "leaseDurationSeconds": 30}}),
            jsn,
        ),
        (
            "PUT",
            format!("/api/v1/nodes/{node}/status"),
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": {"ignored": "no"}}, "spec": {"unschedulable": true}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
            jsn,
        ),
        ("GET", format!("/api/v1/nodes/{node}"), Value::Null, jsn),
        // Server-side apply of a custom resource's spec by two managers.
        (
            "PATCH",
            format!("{brs}/brs-{node}?fieldManager=brupop-leader"),
            json!({"apiVersion": "brupop.bottlerocket.aws/v2", "kind": "BottlerocketShadow", "metadata": {"name": format!("brs-{node}")}, "spec": {"state": "Idle", "acknowledgedFailure": 2}}),
            apply,
        ),
        (
            "PATCH",
            format!("{brs}/brs-{node}?fieldManager=someone"),
            json!({"apiVersion": "brupop.bottlerocket.aws/v2", "kind": "BottlerocketShadow", "metadata": {"name": format!("brs-{node}")}, "spec": {"state": "Idle", "acknowledgedFailure": 3}}),
            apply,
        ),
        (
            "PATCH",
            format!("{brs}/brs-{node}?fieldManager=brupop-leader"),
            json!({"apiVersion": "brupop.bottlerocket.aws/v2", "kind": "BottlerocketShadow", "metadata": {"name": format!("brs-{node}")}, "spec": {"state": "Idle"}}),
            apply,
        ),
        ("GET", format!("{brs}/brs-{node}"), Value::Null, jsn),
        // Dry runs change nothing; lists by label; delete collections.
        (
            "POST",
            format!("{core}/configmaps?dryRun=All"),
            json!({"metadata": {"name": "dry", "labels": {"set": "a"}}}),
            jsn,
        ),
        ("GET", format!("{core}/configmaps/dry"), Value::Null, jsn),
        ("POST", format!("{core}/configmaps"), json!({"metadata": {"name": "c1", "labels": {"set": "a"}}}), jsn),
        ("POST", format!("{core}/configmaps"), json!({"metadata": {"name": "c2", "labels": {"set": "b"}}}), jsn),
        ("GET", format!("{core}/configmaps?labelSelector=set"), Value::Null, jsn),
        ("DELETE", format!("{core}/configmaps?labelSelector=set%3Da"), Value::Null, jsn),
        ("GET", format!("{core}/configmaps?labelSelector=set"), Value::Null, jsn),
        // Evictions that cannot happen.
        (
            "POST",
            format!("{core}/pods/ghost/eviction"),
            json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "ghost"}}),
            jsn,
        ),
        (
            "POST",
            format!("{core}/pods"),
            json!({"metadata": {"name": "solo", "labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
            jsn,
        ),
        (
            "POST",
            format!("{core}/pods/solo/eviction?dryRun=All"),
            json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "solo"}}),
            jsn,
        ),
        ("GET", format!("{core}/pods/solo"), Value::Null, jsn),
        // The CRDs as installed, and discovery of their group.
        (
            "GET",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/bottlerocketshadows.brupop.bottlerocket.aws"
                .to_string(),
            Value::Null,
            jsn,
        ),
        ("GET", "/apis/brupop.bottlerocket.aws/v2".to_string(), Value::Null, jsn),
        ("GET", "/apis/brupop.bottlerocket.aws".to_string(), Value::Null, jsn),
        ("GET", "/api/v1".to_string(), Value::Null, jsn),
        ("GET", "/apis/policy/v1".to_string(), Value::Null, jsn),
        ("GET", "/apis/coordination.k8s.io/v1".to_string(), Value::Null, jsn),
        ("DELETE", format!("/api/v1/nodes/{node}"), Value::Null, jsn),
    ];
    let mut diffs = Vec::new();
    for (method, path, body, ct) in &steps {
        let body = (!body.is_null()).then(|| body.to_string());
        let mut real = raw(&api.client, method, path, body.as_deref(), ct).await;
        let mut simulated = raw(&sim_client, method, path, body.as_deref(), ct).await;
        normalize(&mut real.body);
        normalize(&mut simulated.body);
        let mut d = Vec::new();
        if real.code != simulated.code {
            d.push(format!("status: real {} != sim {}", real.code, simulated.code));
        }
        differences("", &real.body, &simulated.body, &mut d);
        if !d.is_empty() {
            diffs.push(format!("{method} {path}\n    {}", d.join("\n    ")));
        }
    }
    assert!(diffs.is_empty(), "{} of {} steps differ:\n{}", diffs.len(), steps.len(), diffs.join("\n"));
}

/// The events of a raw watch stream until an event for `sentinel`, as
/// `TYPE name labels phase terminating`.
async fn events_until(client: &kube::Client, path: &str, sentinel: &str) -> Vec<String> {
    use futures::StreamExt;
    use http_body_util::BodyExt;
    let req = http::Request::get(path).body(kube::client::Body::from(Vec::new())).unwrap();
    let resp = client.send(req).await.unwrap();
    let mut body = resp.into_body().into_data_stream();
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, body.next()).await {
        buf.extend_from_slice(&chunk);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let e: Value = serde_json::from_slice(&line).unwrap();
            let o = &e["object"];
            let name = o["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            if e["type"] == "BOOKMARK" {
                continue;
            }
            out.push(format!(
                "{} {} {} {} {}",
                e["type"].as_str().unwrap_or_default(),
                name,
                o["metadata"]["labels"],
                o["status"]["phase"],
                o["metadata"]["deletionTimestamp"].is_string()
            ));
            if name == sentinel {
                return out;
            }
        }
    }
    out.push("<no sentinel>".into());
    out
}

#[tokio::test]
async fn watches_see_the_same_events_as_on_the_real_server() {
    let api = api("watch-differential").await;
    if !api.is_real() {
        println!("SKIPPED on the simulator alone: this case compares the simulator with a real API server");
        return;
    }
    let sim = tests::apisim::ApiSim::start().await.unwrap();
    let mut config = sim.client_config(&sim.admin_token());
    config.default_retry = false;
    let sim_client = kube::Client::try_from(config).unwrap();
    let ns = api.namespace.clone();
    let node = api.name("w");
    raw(
        &sim_client,
        "POST",
        "/api/v1/namespaces",
        Some(&json!({"metadata": {"name": ns}}).to_string()),
        "application/json",
    )
    .await;
    let core = format!("/api/v1/namespaces/{ns}");
    let jsn = "application/json";
    let merge = "application/merge-patch+json";
    let mut rvs = Vec::new();
    for c in [&api.client, &sim_client] {
        raw(c, "POST", "/api/v1/nodes", Some(&json!({"metadata": {"name": node}}).to_string()), jsn).await;
        let pre = raw(c, "POST", &format!("{core}/pods"), Some(&json!({"metadata": {"name": "before", "labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}).to_string()), jsn).await;
        rvs.push(pre.body["metadata"]["resourceVersion"].as_str().unwrap().to_owned());
    }
    let steps: Vec<(&str, String, Value, &str)> = vec![
        (
            "POST",
            format!("{core}/pods"),
            json!({"metadata": {"name": "a", "labels": {"app": "web"}}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}}),
            jsn,
        ),
        (
            "POST",
            format!("{core}/pods"),
            json!({"metadata": {"name": "b", "labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
            jsn,
        ),
        ("PATCH", format!("{core}/pods/a/status"), json!({"status": {"phase": "Running"}}), merge),
        ("PATCH", format!("{core}/pods/b"), json!({"metadata": {"labels": {"app": "web"}}}), merge),
        ("PATCH", format!("{core}/pods/a"), json!({"metadata": {"labels": {"app": "gone"}}}), merge),
        ("PATCH", format!("{core}/pods/a"), json!({"metadata": {"labels": {"app": "web"}}}), merge),
        ("DELETE", format!("{core}/pods/a"), Value::Null, jsn),
        ("DELETE", format!("{core}/pods/a"), json!({"gracePeriodSeconds": 0}), jsn),
        ("DELETE", format!("{core}/pods/b"), Value::Null, jsn),
        (
            "POST",
            format!("{core}/pods"),
            json!({"metadata": {"name": "sentinel", "labels": {"app": "web"}}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}}),
            jsn,
        ),
    ];
    for c in [&api.client, &sim_client] {
        for (m, p, b, ct) in &steps {
            let body = (!b.is_null()).then(|| b.to_string());
            raw(c, m, p, body.as_deref(), ct).await;
        }
    }
    let watches =
        ["labelSelector=app%3Dweb".to_string(), format!("fieldSelector=spec.nodeName%3D{node}"), String::new()];
    for w in watches {
        let real = events_until(
            &api.client,
            &format!("{core}/pods?watch=1&timeoutSeconds=20&resourceVersion={}&{w}", rvs[0]),
            "sentinel",
        )
        .await;
        let simulated = events_until(
            &sim_client,
            &format!("{core}/pods?watch=1&timeoutSeconds=20&resourceVersion={}&{w}", rvs[1]),
            "sentinel",
        )
        .await;
        assert_eq!(real, simulated, "watch with {w:?}");
    }
    for c in [&api.client, &sim_client] {
        raw(c, "DELETE", &format!("/api/v1/nodes/{node}"), None, jsn).await;
    }
}
