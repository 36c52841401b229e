//! TokenRequest bound to a pod, TokenReview (user, groups, audiences,
//! pod/node extras, the real server's error wording) and requests that
//! authenticate with service-account tokens.

use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenRequest, TokenReview};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use tests::backend::TestApi;

use crate::{api, create_node, create_pod, failed, obj};

const PROXY_AUDIENCE: &str = "brupop-authproxy";

async fn agent_setup(api: &TestApi) -> (String, Pod) {
    let node = api.name("t");
    create_node(api, "t").await;
    let sas: Api<ServiceAccount> = Api::namespaced(api.client.clone(), &api.namespace);
    sas.create(&PostParams::default(), &obj(json!({"metadata": {"name": "agent"}}))).await.unwrap();
    let pod = create_pod(api, "agent-x", Some(&node), &[("app", "agent")], "agent").await;
    (node, pod)
}

async fn request_token(api: &TestApi, audiences: &[&str], pod: &str, secs: i64) -> Result<String, kube::Error> {
    let sas: Api<ServiceAccount> = Api::namespaced(api.client.clone(), &api.namespace);
    let mut spec =
        json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod}, "expirationSeconds": secs});
    if !audiences.is_empty() {
        spec["audiences"] = json!(audiences);
    }
    let tr: TokenRequest = obj(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}));
    let out = sas.create_token_request("agent", &PostParams::default(), &tr).await?;
    Ok(out.status.and_then(|s| s.token).unwrap_or_default())
}

async fn review(api: &TestApi, token: &str, audiences: &[&str]) -> serde_json::Value {
    let reviews: Api<TokenReview> = Api::all(api.client.clone());
    let tr: TokenReview = obj(
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token, "audiences": audiences}}),
    );
    let out = reviews.create(&PostParams::default(), &tr).await.unwrap();
    serde_json::to_value(out.status.unwrap()).unwrap()
}

#[tokio::test]
async fn a_pod_bound_token_reviews_as_its_service_account_with_pod_and_node_extras() {
    let api = api("token-review").await;
    let (node, pod) = agent_setup(&api).await;
    let token = request_token(&api, &[PROXY_AUDIENCE], "agent-x", 3600).await.unwrap();
    assert!(!token.is_empty());
    let st = review(&api, &token, &[PROXY_AUDIENCE]).await;
    assert_eq!(st["authenticated"], true, "{st}");
    assert_eq!(st["user"]["username"], format!("system:serviceaccount:{}:agent", api.namespace));
    let groups: Vec<&str> = st["user"]["groups"].as_array().unwrap().iter().map(|g| g.as_str().unwrap()).collect();
    assert_eq!(
        groups,
        vec!["system:serviceaccounts", &format!("system:serviceaccounts:{}", api.namespace), "system:authenticated"]
    );
    assert_eq!(st["audiences"], json!([PROXY_AUDIENCE]));
    let extra = &st["user"]["extra"];
    let node_uid = Api::<k8s_openapi::api::core::v1::Node>::all(api.client.clone())
        .get(&node)
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    assert_eq!(extra["authentication.kubernetes.io/pod-name"], json!(["agent-x"]));
    assert_eq!(extra["authentication.kubernetes.io/pod-uid"], json!([pod.metadata.uid.unwrap()]));
    assert_eq!(extra["authentication.kubernetes.io/node-name"], json!([node]));
    assert_eq!(extra["authentication.kubernetes.io/node-uid"], json!([node_uid]));
    assert!(extra["authentication.kubernetes.io/credential-id"][0].as_str().unwrap().starts_with("JTI="), "{extra}");
}

#[tokio::test]
async fn token_review_refuses_other_audiences_and_garbage_with_the_real_wording() {
    let api = api("token-audience").await;
    agent_setup(&api).await;
    let token = request_token(&api, &[PROXY_AUDIENCE], "agent-x", 3600).await.unwrap();
    let st = review(&api, &token, &["someone-else"]).await;
    assert_ne!(st["authenticated"], true);
    assert_eq!(
        st["error"],
        format!("token audiences [\"{PROXY_AUDIENCE}\"] is invalid for the target audiences [\"someone-else\"]")
    );
    let st = review(&api, "garbage", &[]).await;
    assert_ne!(st["authenticated"], true);
    assert_eq!(st["error"], "invalid bearer token");
    let reviews: Api<TokenReview> = Api::all(api.client.clone());
    let s = failed(reviews.create(&PostParams::default(), &obj(json!({"spec": {"token": ""}}))).await);
    assert_eq!(s.code, 400, "{}", s.message);
}

#[tokio::test]
async fn a_token_dies_with_its_bound_pod() {
    let api = api("token-bound-pod").await;
    agent_setup(&api).await;
    let token = request_token(&api, &[PROXY_AUDIENCE], "agent-x", 3600).await.unwrap();
    assert_eq!(review(&api, &token, &[PROXY_AUDIENCE]).await["authenticated"], true);
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), &api.namespace);
    pods.delete("agent-x", &DeleteParams::default().grace_period(0)).await.unwrap();
    let st = review(&api, &token, &[PROXY_AUDIENCE]).await;
    assert_ne!(st["authenticated"], true);
    assert_eq!(st["error"], "service account token has been invalidated");
}

#[tokio::test]
async fn requests_with_an_api_audience_token_run_as_the_service_account() {
    let api = api("token-requests").await;
    agent_setup(&api).await;
    let token = request_token(&api, &[], "agent-x", 3600).await.unwrap();
    let agent = api.client_with_token(&token).await.unwrap();
    let whoami: Api<SelfSubjectReview> = Api::all(agent.clone());
    let me = whoami
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})),
        )
        .await
        .unwrap();
    let user = me.status.unwrap().user_info.unwrap();
    assert_eq!(user.username.unwrap(), format!("system:serviceaccount:{}:agent", api.namespace));
    assert_eq!(user.extra.unwrap()["authentication.kubernetes.io/pod-name"], vec!["agent-x".to_string()]);
    let pods: Api<Pod> = Api::namespaced(agent, &api.namespace);
    assert_eq!(pods.list(&Default::default()).await.unwrap().items.len(), 1, "AlwaysAllow: the agent may read");
    let proxy_only = request_token(&api, &[PROXY_AUDIENCE], "agent-x", 3600).await.unwrap();
    let foreign = api.client_with_token(&proxy_only).await.unwrap();
    let s = failed(Api::<Pod>::namespaced(foreign, &api.namespace).list(&Default::default()).await);
    assert_eq!((s.code, s.reason.as_str()), (401, "Unauthorized"), "a token without an API audience is refused");
    let garbage = api.client_with_token("not-a-token").await.unwrap();
    let s = failed(Api::<Pod>::namespaced(garbage, &api.namespace).list(&Default::default()).await);
    assert_eq!(s.code, 401);
}

#[tokio::test]
async fn token_requests_are_validated() {
    let api = api("token-validation").await;
    agent_setup(&api).await;
    let s = status_of(request_token(&api, &[], "agent-x", 5).await);
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    assert!(
        s.message.contains("spec.expirationSeconds: Invalid value: 5: may not specify a duration less than 10m0s"),
        "{}",
        s.message
    );
    create_pod(&api, "other", None, &[], "default").await;
    let s = status_of(request_token(&api, &[], "other", 3600).await);
    assert_eq!(s.code, 400);
    assert_eq!(
        s.message,
        "cannot bind token for serviceaccount \"agent\" to pod running with different serviceaccount name."
    );
    let s = status_of(request_token(&api, &[], "missing", 3600).await);
    assert_eq!(s.code, 404);
}

fn status_of(r: Result<String, kube::Error>) -> Box<kube::core::Status> {
    crate::failed(r)
}
