//! Structured fuzzing: valid requests for the objects the operator uses,
//! each with one value swapped for a value of another type. On a real
//! server the simulator answers each of them in the same process and every
//! HTTP status must match (the real server is the judge); on the simulator
//! alone every answer must be a `Status` and the server must survive.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::{api, raw};

/// One request of the corpus.
struct Probe {
    method: &'static str,
    path: String,
    body: String,
    content_type: &'static str,
    /// The object a successful create made (deleted again to keep both stores alike).
    created: Option<String>,
}

/// Every JSON pointer in a value.
fn pointers(v: &Value, prefix: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let p = format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(c, p, out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                let p = format!("{prefix}/{i}");
                out.push(p.clone());
                pointers(c, p, out);
            }
        }
        _ => {}
    }
}

/// The objects the corpus works on: CRDs, a service account, a pod, a lease, a shadow.
pub async fn setup(client: &kube::Client, ns: &str) {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for crd in model::crds() {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(&name, &PatchParams::apply("fuzz").force(), &Patch::Apply(&crd)).await.unwrap();
        kube::runtime::wait::await_condition(crds.clone(), &name, kube::runtime::conditions::is_crd_established())
            .await
            .unwrap();
    }
    for (path, body) in [
        (format!("/api/v1/namespaces/{ns}/serviceaccounts"), json!({"metadata": {"name": "sa"}})),
        (
            format!("/api/v1/namespaces/{ns}/pods"),
            json!({"metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"serviceAccountName": "sa", "containers": [{"name": "c", "image": "i"}]}}),
        ),
        (
            format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"),
            json!({"metadata": {"name": "l"}, "spec": {}}),
        ),
        (
            format!("/apis/brupop.bottlerocket.aws/v2/namespaces/{ns}/bottlerocketshadows"),
            json!({"apiVersion": "brupop.bottlerocket.aws/v2", "kind": "BottlerocketShadow", "metadata": {"name": "brs-x"}, "spec": {"state": "Idle"}}),
        ),
    ] {
        let r = raw(client, "POST", &path, Some(&body.to_string()), "application/json").await;
        assert_eq!(r.code, 201, "{path}: {}", r.text);
    }
}

fn corpus(ns: &str) -> Vec<Probe> {
    let targets: Vec<(&'static str, String, Value)> = vec![
        (
            "POST",
            format!("/api/v1/namespaces/{ns}/pods"),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q", "labels": {"a": "b"}, "finalizers": ["x/y"]}, "spec": {"nodeName": "n", "terminationGracePeriodSeconds": 0, "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]}}),
        ),
        (
            "PUT",
            format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/l"),
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}, "spec": {"holderIdentity": "h", "leaseDurationSeconds": 5, "leaseTransitions": 1}}),
        ),
        (
            "POST",
            format!("/apis/brupop.bottlerocket.aws/v2/namespaces/{ns}/bottlerocketshadows"),
            json!({"apiVersion": "brupop.bottlerocket.aws/v2", "kind": "BottlerocketShadow", "metadata": {"name": "brs-q"}, "spec": {"state": "Idle", "acknowledgedFailure": 1, "stateTransitionTimestamp": "2020-01-01T00:00:00Z"}}),
        ),
        (
            "PATCH",
            format!("/apis/brupop.bottlerocket.aws/v2/namespaces/{ns}/bottlerocketshadows/brs-x/status"),
            json!({"status": {"current_state": "Idle", "current_version": "1", "crash_count": 1, "conditions": [{"type": "a", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z", "reason": "r", "message": "m"}]}}),
        ),
        (
            "POST",
            format!("/api/v1/namespaces/{ns}/pods/p/eviction"),
            json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"}, "deleteOptions": {"gracePeriodSeconds": 5, "dryRun": ["All"]}}),
        ),
        (
            "POST",
            format!("/api/v1/namespaces/{ns}/serviceaccounts/sa/token"),
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"audiences": ["a"], "expirationSeconds": 3600, "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p"}}}),
        ),
        (
            "POST",
            "/apis/authentication.k8s.io/v1/tokenreviews".to_string(),
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "t", "audiences": ["a"]}}),
        ),
        (
            "POST",
            format!("/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets"),
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "b"}, "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"a": "b"}, "matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}}}),
        ),
        (
            "PATCH",
            format!("/api/v1/namespaces/{ns}/pods/p"),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"x": "y"}}, "spec": {"activeDeadlineSeconds": 5}}),
        ),
    ];
    let swaps =
        [json!(null), json!(1), json!(-1), json!(1.5), json!("x"), json!(true), json!([]), json!({}), json!([[{}]])];
    let patch_types =
        ["application/merge-patch+json", "application/strategic-merge-patch+json", "application/apply-patch+yaml"];
    let mut out = Vec::new();
    for (method, path, valid) in targets {
        let mut ptrs = Vec::new();
        pointers(&valid, String::new(), &mut ptrs);
        for ptr in &ptrs {
            for (j, swap) in swaps.iter().enumerate() {
                let mut body = valid.clone();
                if let Some(slot) = body.pointer_mut(ptr) {
                    *slot = swap.clone();
                }
                let content_type =
                    if method == "PATCH" { patch_types[j % patch_types.len()] } else { "application/json" };
                let query = if j % 2 == 0 { "?fieldManager=fuzz&fieldValidation=Strict" } else { "?fieldManager=fuzz" };
                let created = (method == "POST"
                    && !path.contains("/eviction")
                    && !path.contains("/token")
                    && !path.contains("tokenreviews"))
                .then(|| body.pointer("/metadata/name").and_then(Value::as_str).map(|n| format!("{path}/{n}")))
                .flatten();
                out.push(Probe {
                    method,
                    path: format!("{path}{query}"),
                    body: body.to_string(),
                    content_type,
                    created,
                });
            }
        }
    }
    for junk in ["", "{", "[]", "null", "\"x\"", "{\"metadata\":[]}", "{\"apiVersion\":1}", "\u{0}\u{1}"] {
        for path in [
            format!("/api/v1/namespaces/{ns}/pods"),
            format!("/api/v1/namespaces/{ns}/pods/p/eviction"),
            format!("/apis/brupop.bottlerocket.aws/v2/namespaces/{ns}/bottlerocketshadows"),
        ] {
            out.push(Probe {
                method: "POST",
                path,
                body: junk.to_owned(),
                content_type: "application/json",
                created: None,
            });
        }
    }
    out
}

async fn run(client: &kube::Client, p: &Probe) -> crate::Raw {
    let r = raw(client, p.method, &p.path, Some(&p.body), p.content_type).await;
    if let Some(obj) = p.created.as_deref().filter(|_| r.code == 201) {
        raw(client, "PATCH", obj, Some(r#"{"metadata":{"finalizers":null}}"#), "application/merge-patch+json").await;
        raw(client, "DELETE", obj, Some(r#"{"gracePeriodSeconds":0}"#), "application/json").await;
    }
    r
}

#[tokio::test]
async fn fuzzed_requests_are_answered_like_the_real_server() {
    let api = api("fuzz-differential").await;
    if !api.is_real() {
        println!("SKIPPED on the simulator alone: this case compares the simulator with a real API server");
        return;
    }
    let sim = tests::apisim::ApiSim::start().await.unwrap();
    let mut config = sim.client_config(&sim.admin_token());
    config.default_retry = false;
    let sim_client = kube::Client::try_from(config).unwrap();
    let ns = api.namespace.clone();
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
    let probes = corpus(&ns);
    let mut diffs = Vec::new();
    for p in &probes {
        let real = run(&api.client, p).await;
        let simulated = run(&sim_client, p).await;
        if real.code != simulated.code {
            diffs.push(format!(
                "{} {} [{}] {}\n  real {} {}\n  sim  {} {}",
                p.method,
                p.path,
                p.content_type,
                p.body,
                real.code,
                real.body["message"],
                simulated.code,
                simulated.body["message"]
            ));
        }
    }
    assert!(diffs.is_empty(), "{} of {} answers differ:\n{}", diffs.len(), probes.len(), diffs.join("\n"));
}

#[tokio::test]
async fn malformed_input_never_crashes_the_simulator() {
    let api = api("fuzz-sim").await;
    if crate::skip_on_real(&api, "fuzzing the simulator alone") {
        return;
    }
    let ns = api.namespace.clone();
    setup(&api.client, &ns).await;
    let probes = corpus(&ns);
    for p in &probes {
        let r = run(&api.client, p).await;
        assert!((200..600).contains(&r.code), "{} {}: {}", p.method, p.path, r.code);
        if r.code >= 400 {
            assert_eq!(r.body["kind"], "Status", "{} {} {}: {}", p.method, p.path, p.body, r.text);
        }
    }
    // Query parameters, as kube-testserver answers them.
    for (q, code) in [
        ("?fieldSelector=a%3D%3D%3D", 400),
        ("?limit=-1", 200),
        ("?limit=abc", 400),
        ("?resourceVersion=x", 400),
        ("?watch=1&resourceVersion=-5", 500),
        ("?timeoutSeconds=abc&watch=true&resourceVersion=1", 400),
    ] {
        let r = raw(&api.client, "GET", &format!("/api/v1/namespaces/{ns}/pods{q}"), None, "").await;
        assert_eq!(r.code, code, "{q}: {}", r.text);
    }
    assert!(probes.len() > 500, "{}", probes.len());
    assert_eq!(raw(&api.client, "GET", "/version", None, "").await.code, 200, "still serving");
}
