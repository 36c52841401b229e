//! The real `kubectl` against the backend, through the kubeconfig the
//! backend provides (the simulator writes one; the demo prints such a
//! KUBECONFIG for people to use). Skipped when kubectl is not installed.

use std::process::Command;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use model::BottlerocketShadow;
use serde_json::json;
use tests::backend::TestApi;

use crate::{api, create_node, obj};

async fn kubectl(api: &TestApi, args: &[&str]) -> (bool, String) {
    let kubeconfig = api.kubeconfig_path();
    let home = tempfile::tempdir().unwrap();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    // Off the async runtime's threads: kubectl may take a moment.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("kubectl")
            .args(&args)
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", home.path())
            .env("KUBECACHEDIR", home.path().join("cache"))
            .output()
    })
    .await
    .unwrap()
    .expect("kubectl runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test]
async fn kubectl_gets_nodes_leases_and_shadows() {
    if Command::new("kubectl").arg("version").arg("--client").output().is_err() {
        println!("SKIPPED: kubectl is not installed");
        return;
    }
    let api = api("kubectl").await;
    let node = api.name("k");
    create_node(&api, "k").await;
    let leases: Api<Lease> = Api::namespaced(api.client.clone(), &api.namespace);
    leases
        .create(&PostParams::default(), &obj(json!({"metadata": {"name": "brupop-slot-0"}, "spec": {"holderIdentity": node, "leaseDurationSeconds": 60}})))
        .await
        .unwrap();
    api.install_crds().await.unwrap();
    let brs: Api<BottlerocketShadow> = Api::namespaced(api.client.clone(), &api.namespace);
    let mut shadow = crate::crs::shadow(&format!("brs-{node}"));
    shadow.spec.slot = Some("brupop-slot-0".into());
    brs.create(&PostParams::default(), &shadow).await.unwrap();

    let (ok, out) = kubectl(&api, &["get", "nodes", &node]).await;
    assert!(ok, "{out}");
    assert!(out.contains("NAME") && out.contains("STATUS") && out.contains(&node), "{out}");
    let (ok, out) = kubectl(&api, &["get", "leases", "-n", &api.namespace]).await;
    assert!(ok, "{out}");
    assert!(out.contains("HOLDER") && out.contains("brupop-slot-0") && out.contains(&node), "{out}");
    let (ok, out) = kubectl(&api, &["get", "brs", "-n", &api.namespace]).await;
    assert!(ok, "{out}");
    for col in ["NAME", "STATE", "SLOT", "AGE"] {
        assert!(out.contains(col), "{col} in {out}");
    }
    assert!(out.contains(&format!("brs-{node}")), "{out}");
    let (ok, out) = kubectl(&api, &["get", "brs", "-n", &api.namespace, "-o", "jsonpath={.items[0].spec.slot}"]).await;
    assert!(ok && out.trim() == "brupop-slot-0", "{out}");
    let (ok, out) = kubectl(&api, &["cordon", &node]).await;
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&api, &["get", "node", &node, "-o", "jsonpath={.spec.unschedulable}"]).await;
    assert!(ok && out.trim() == "true", "{out}");
    let (ok, out) = kubectl(&api, &["auth", "whoami"]).await;
    assert!(ok, "{out}");
}

#[tokio::test]
async fn kubectl_applies_manifests_with_server_side_validation() {
    if Command::new("kubectl").arg("version").arg("--client").output().is_err() {
        println!("SKIPPED: kubectl is not installed");
        return;
    }
    let api = api("kubectl-apply").await;
    api.install_crds().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.yaml");
    let write = |paused: bool| {
        std::fs::write(
            &manifest,
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm}}\ndata: {{paused: \"{paused}\"}}\n---\napiVersion: brupop.bottlerocket.aws/v1\nkind: UpdatePolicy\nmetadata: {{name: default}}\nspec: {{paused: {paused}}}\n"
            ),
        )
        .unwrap()
    };
    let path = manifest.to_string_lossy().to_string();
    write(true);
    let (ok, out) = kubectl(&api, &["apply", "-n", &api.namespace, "-f", &path]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("configmap/cm created") && out.contains("updatepolicy.brupop.bottlerocket.aws/default created"),
        "{out}"
    );
    write(false);
    let (ok, out) = kubectl(&api, &["apply", "-n", &api.namespace, "-f", &path]).await;
    assert!(ok && out.contains("configured"), "{out}");
    let (ok, out) = kubectl(&api, &["apply", "--server-side", "-n", &api.namespace, "-f", &path]).await;
    assert!(ok && out.contains("serverside-applied"), "{out}");
    let (ok, out) =
        kubectl(&api, &["get", "updatepolicy", "default", "-n", &api.namespace, "-o", "jsonpath={.spec.paused}"]).await;
    assert!(ok && out.trim() == "false", "{out}");
    std::fs::write(&manifest, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\nbogus: 1\n").unwrap();
    let (ok, out) = kubectl(&api, &["apply", "-n", &api.namespace, "-f", &path]).await;
    assert!(!ok && out.contains("strict decoding error: unknown field \"bogus\""), "{out}");
    let (ok, out) = kubectl(
        &api,
        &[
            "-n",
            &api.namespace,
            "patch",
            "updatepolicy",
            "default",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"maxConcurrentUpdates":"10%"}}"#,
        ],
    )
    .await;
    assert!(ok, "{out}");
}

#[tokio::test]
async fn kubectl_typed_commands_create_tokens_and_drain() {
    if Command::new("kubectl").arg("version").arg("--client").output().is_err() {
        println!("SKIPPED: kubectl is not installed");
        return;
    }
    let api = api("kubectl-typed").await;
    let ns = api.namespace.clone();
    let extra = api.name("extra");
    let (ok, out) = kubectl(&api, &["create", "namespace", &extra]).await;
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&api, &["-n", &ns, "create", "serviceaccount", "agent"]).await;
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&api, &["-n", &ns, "create", "configmap", "cm", "--from-literal=a=b"]).await;
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&api, &["-n", &ns, "create", "secret", "generic", "s", "--from-literal=p=q"]).await;
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&api, &["-n", &ns, "get", "secret", "s", "-o", "jsonpath={.data.p}"]).await;
    assert!(ok && out.trim() == "cQ==", "{out}");
    let node = api.name("d");
    create_node(&api, "d").await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(api.client.clone(), &ns);
    pods.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "agent-d"}, "spec": {"serviceAccountName": "agent", "nodeName": node, "terminationGracePeriodSeconds": 0, "containers": [{"name": "c", "image": "example.com/agent:1.0"}]}})),
    )
    .await
    .unwrap();
    crate::set_pod_ready(&api, "agent-d", true).await;
    let (ok, token) = kubectl(
        &api,
        &[
            "-n",
            &ns,
            "create",
            "token",
            "agent",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "agent-d",
            "--audience",
            "brupop",
        ],
    )
    .await;
    assert!(ok, "{token}");
    let reviews: Api<k8s_openapi::api::authentication::v1::TokenReview> = Api::all(api.client.clone());
    let review = reviews
        .create(&PostParams::default(), &obj(json!({"spec": {"token": token.trim(), "audiences": ["brupop"]}})))
        .await
        .unwrap();
    assert_eq!(review.status.unwrap().authenticated, Some(true));
    let (ok, out) = kubectl(&api, &["drain", &node, "--force", "--grace-period=0", "--timeout=60s"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("evicted") && out.contains("drained"), "{out}");
    assert!(pods.get_opt("agent-d").await.unwrap().is_none());
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(api.client.clone());
    assert_eq!(nodes.get(&node).await.unwrap().spec.unwrap().unschedulable, Some(true));
}
