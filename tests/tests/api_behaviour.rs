//! The API behaviour suite: what the operator relies on from the
//! Kubernetes API, written once against `kube::Client`.
//!
//! Runs against the in-process simulator (`cargo test`), and against a real
//! API server when `BRUPOP_TEST_KUBECONFIG` names its kubeconfig. A case that
//! behaves differently on the two is a bug in the simulator. Cases about
//! fault injection and the request log are simulator-only and print a note on
//! a real server. Every case uses its own namespace (and names cluster-scoped
//! objects with `api.name(..)`), never sleeps a fixed time, and polls with a
//! deadline.

#[path = "api_behaviour/basics.rs"]
mod basics;
#[path = "api_behaviour/crs.rs"]
mod crs;
#[path = "api_behaviour/deletion.rs"]
mod deletion;
#[path = "api_behaviour/differential.rs"]
mod differential;
#[path = "api_behaviour/eviction.rs"]
mod eviction;
#[path = "api_behaviour/kubectl.rs"]
mod kubectl;
#[path = "api_behaviour/patches.rs"]
mod patches;
#[path = "api_behaviour/selectors.rs"]
mod selectors;
#[path = "api_behaviour/sessions.rs"]
mod sessions;
#[path = "api_behaviour/sim_only.rs"]
mod sim_only;
#[path = "api_behaviour/tokens.rs"]
mod tokens;
#[path = "api_behaviour/watches.rs"]
mod watches;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, PostParams};
use kube::core::Status;
use serde_json::{Value, json};
use tests::backend::TestApi;

/// A fresh API for one case.
pub async fn api(name: &str) -> TestApi {
    TestApi::start(name).await.unwrap_or_else(|e| panic!("starting the API for {name}: {e:#}"))
}

/// True (and a printed note) when a simulator-only case runs on a real server.
pub fn skip_on_real(api: &TestApi, case: &str) -> bool {
    if api.is_real() {
        println!("SKIPPED on the real API server: {case} is a simulator-only case");
        true
    } else {
        false
    }
}

/// The `Status` of an API error (panics on other errors).
pub fn status(r: kube::Error) -> Box<Status> {
    match r {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The `Status` of a failed call that should have failed.
pub fn failed<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> Box<Status> {
    match r {
        Ok(v) => panic!("expected an API error, got success: {v:?}"),
        Err(e) => status(e),
    }
}

/// A raw answer: HTTP code, JSON body (Null if not JSON), Warning headers.
#[derive(Debug)]
pub struct Raw {
    pub code: u16,
    pub body: Value,
    pub text: String,
    pub warnings: Vec<String>,
}

/// Sends a raw request through the kube client (its auth and TLS).
pub async fn raw(client: &kube::Client, method: &str, path: &str, body: Option<&str>, content_type: &str) -> Raw {
    let mut req = http::Request::builder().method(method).uri(path);
    if body.is_some() {
        req = req.header("content-type", content_type);
    }
    let req =
        req.body(kube::client::Body::from(body.unwrap_or_default().as_bytes().to_vec())).expect("a valid request");
    let resp = client.send(req).await.expect("the server answers");
    let code = resp.status().as_u16();
    let warnings =
        resp.headers().get_all("warning").iter().filter_map(|v| v.to_str().ok().map(str::to_owned)).collect();
    let bytes = resp.into_body().collect().await.expect("a body").to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Raw { code, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null), text, warnings }
}

/// Polls `f` until it returns Some, or panics after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid object")
}

pub fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub fn rv_of(m: &kube::api::ObjectMeta) -> u64 {
    m.resource_version.as_deref().unwrap_or_default().parse().expect("a numeric resourceVersion")
}

pub async fn create_configmap(api: &TestApi, name: &str, l: &[(&str, &str)]) -> ConfigMap {
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), &api.namespace);
    cms.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": name, "labels": labels(l)}, "data": {"k": "v"}})),
    )
    .await
    .expect("configmap created")
}

pub async fn create_node(api: &TestApi, base: &str) -> Node {
    let nodes: Api<Node> = Api::all(api.client.clone());
    nodes
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": api.name(base), "labels": {"kubernetes.io/hostname": api.name(base)}}})),
        )
        .await
        .expect("node created")
}

/// A pod (on `node` if given) with labels, running as `sa`.
pub async fn create_pod(api: &TestApi, name: &str, node: Option<&str>, l: &[(&str, &str)], sa: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), &api.namespace);
    let mut spec = json!({"serviceAccountName": sa, "containers": [{"name": "c", "image": "example.com/app:1.0"}]});
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    pods.create(&PostParams::default(), &obj(json!({"metadata": {"name": name, "labels": labels(l)}, "spec": spec})))
        .await
        .expect("pod created")
}

/// Marks a pod Running and Ready (or not) through its status subresource, as a kubelet would.
pub async fn set_pod_ready(api: &TestApi, name: &str, ready: bool) {
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), &api.namespace);
    let status = if ready { "True" } else { "False" };
    pods.patch_status(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(
            json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": status}]}}),
        ),
    )
    .await
    .expect("pod status patched");
}
