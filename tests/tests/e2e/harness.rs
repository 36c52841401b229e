//! The harness itself, on whichever backend runs: one call brings up a test
//! cluster whose nodes, pods, tokens and certificates work as the
//! components need them.

use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use tests::harness::fleet::{AGENT_SA, AUDIENCE, agent_tls, token};
use tests::harness::tlsclient::client;
use tests::harness::{Fleet, FleetOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_node_test_cluster_comes_up_with_ready_nodes_pods_tokens_and_certificates() {
    let started = Instant::now();
    let opts = FleetOptions { nodes: 10, agents: false, leaders: 0, ..Default::default() };
    let fleet = Fleet::start("harness-smoke", opts).await.unwrap();
    let backend = if fleet.api.is_real() { "the real API server" } else { "the API simulator" };
    eprintln!("harness: a 10-node test cluster came up in {:.2}s on {backend}", started.elapsed().as_secs_f64());
    let nodes: Api<Node> = Api::all(fleet.client().clone());
    let pods: Api<Pod> = Api::all(fleet.client().clone());
    for name in &fleet.nodes {
        let node = nodes.get(name).await.unwrap();
        let ready = node
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        assert!(ready, "{name} is Ready");
        let on_node = pods.list(&ListParams::default().fields(&format!("spec.nodeName={name}"))).await.unwrap();
        assert!(on_node.items.len() >= 2, "{name} runs its agent pod and workload pods: {}", on_node.items.len());
    }
    // The agent's pod-bound token is reviewed and both certificates chain to
    // the test CA: the authproxy accepts a status report over mTLS.
    let node = &fleet.nodes[0];
    let pod = format!("brupop-agent-{node}");
    let tok = token(fleet.client(), &fleet.ns, AGENT_SA, Some(AUDIENCE), Some((&pod, &fleet.agent_pods[node])))
        .await
        .unwrap();
    let tls = agent_tls(&fleet);
    let answer = client(&tls.ca(), Some(&tls))
        .post(format!("https://{}/v1/nodes/{node}/status", fleet.authproxy_addr))
        .bearer_auth(&tok)
        .header("content-type", "application/json")
        .body(r#"{"state":"Idle","currentVersion":"1.20.0"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200, "{}", answer.text().await.unwrap_or_default());
    assert!(fleet.shadow(node).await.is_some(), "the report created the node's shadow");
    // Without the agent certificate the TLS handshake is refused.
    let anonymous = client(&tls.ca(), None).get(format!("https://{}/v1/nodes/{node}/status", fleet.authproxy_addr));
    assert!(anonymous.send().await.is_err(), "a client without a certificate is refused");
    fleet.stop().await;
}
