//! What users apply: the install manifest is current, names only binaries
//! and flags that exist, applies to a real API server with strict validation
//! and deletes cleanly, and its RBAC is sufficient (a rollout runs under it)
//! and minimal for the agent (its direct writes are refused).
//!
//! The real-server part needs a server of its own, started with
//! `--authorization-mode=RBAC` (it installs and deletes cluster-wide objects):
//! `BRUPOP_TEST_RBAC_KUBECONFIG` names it. `.ci/run` starts one.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use model::{BottlerocketShadow, ShadowState, names};
use serde_json::json;
use tests::deploy::{REGENERATE, assemble, deploy_dir, documents};
use tests::harness::bins::binaries;
use tests::harness::{Fleet, FleetOptions};

fn manifest() -> String {
    std::fs::read_to_string(deploy_dir().join("bottlerocket-update-operator.yaml")).unwrap()
}

#[test]
fn the_install_manifest_is_current() {
    let built = assemble(&deploy_dir()).unwrap();
    assert!(built == manifest(), "deploy/bottlerocket-update-operator.yaml is stale; regenerate it with: {REGENERATE}");
}

#[test]
fn every_binary_and_flag_the_manifests_name_exists() {
    let docs = documents(&manifest()).unwrap();
    let bins = binaries();
    let mut checked = 0;
    for doc in &docs {
        let Some(containers) = doc.pointer("/spec/template/spec/containers").and_then(|c| c.as_array()) else {
            continue;
        };
        for c in containers {
            let command = c["command"][0].as_str().expect("every container names its binary");
            let binary = match command.trim_start_matches('/') {
                "leader" => &bins.leader,
                "authproxy" => &bins.authproxy,
                "nodeagent" => &bins.nodeagent,
                other => panic!("{}: unknown binary {other}", doc["metadata"]["name"]),
            };
            let help = Command::new(binary).arg("--help").output().unwrap();
            let help = String::from_utf8_lossy(&help.stdout).into_owned();
            let flags: BTreeSet<String> = help
                .split_whitespace()
                .filter(|w| w.starts_with("--"))
                .map(|w| w.trim_end_matches(|ch: char| !ch.is_ascii_alphanumeric() && ch != '-').to_owned())
                .collect();
            for arg in c["args"].as_array().into_iter().flatten() {
                let arg = arg.as_str().unwrap();
                let flag = arg.split('=').next().unwrap();
                assert!(
                    flags.contains(flag),
                    "{command} has no flag {flag} (used by {}): {flags:?}",
                    doc["metadata"]["name"]
                );
                checked += 1;
            }
            // Environment variables the manifests set that the binaries read.
            for env in c["env"].as_array().into_iter().flatten() {
                let name = env["name"].as_str().unwrap();
                let known = help.contains(&format!("env: {name}")) || ["POD_NAME", "MALLOC_ARENA_MAX"].contains(&name);
                assert!(known, "{command} does not read the environment variable {name}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "{checked} flags checked");
}

/// The admin ports (8080) are admitted only from the namespaces a documented
/// label selects, never from every namespace; the authproxy's port only from
/// agents. (The test servers do not enforce NetworkPolicies: checked here.)
#[test]
fn network_policies_admit_the_admin_port_only_from_labelled_namespaces() {
    const LABEL: &str = "brupop.bottlerocket.aws/scrape-metrics";
    let docs = documents(&manifest()).unwrap();
    let policies: Vec<_> = docs.iter().filter(|d| d["kind"] == "NetworkPolicy").collect();
    assert!(
        policies.iter().any(|p| p["spec"]["podSelector"] == json!({})
            && p["spec"]["ingress"].is_null()
            && p["spec"]["policyTypes"] == json!(["Ingress"])),
        "a default deny of ingress"
    );
    let mut admin_rules = 0;
    for p in &policies {
        for rule in p["spec"]["ingress"].as_array().into_iter().flatten() {
            let name = &p["metadata"]["name"];
            let from = rule["from"].as_array().unwrap_or_else(|| panic!("{name}: a rule without `from` admits anyone"));
            assert!(!from.is_empty(), "{name}: an empty `from` admits anyone");
            let ports: Vec<i64> =
                rule["ports"].as_array().into_iter().flatten().filter_map(|p| p["port"].as_i64()).collect();
            assert!(!ports.is_empty(), "{name}: a rule without ports admits every port");
            for peer in from {
                assert_ne!(peer["namespaceSelector"], json!({}), "{name}: admits every namespace");
                assert!(peer.get("ipBlock").is_none(), "{name}: no address ranges are shipped");
            }
            if ports.contains(&8080) {
                admin_rules += 1;
                for peer in from {
                    assert_eq!(
                        peer["namespaceSelector"]["matchLabels"][LABEL], "true",
                        "{name}: the admin port is admitted from namespaces labelled {LABEL}=true: {peer}"
                    );
                }
            }
            if ports.contains(&8443) {
                for peer in from {
                    assert_eq!(peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"], "brupop-agent", "{name}");
                }
            }
        }
    }
    assert_eq!(admin_rules, 1, "one rule admits the admin ports");
    let readme = std::fs::read_to_string(deploy_dir().join("../README.md")).unwrap();
    assert!(
        readme.contains(&format!("kubectl label namespace <PROMETHEUS-NAMESPACE> {LABEL}=true")),
        "the README says how to admit Prometheus"
    );
}

#[test]
fn every_mounted_secret_is_issued_by_a_certificate() {
    let docs = documents(&manifest()).unwrap();
    let issued: BTreeSet<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "Certificate")
        .filter_map(|d| d.pointer("/spec/secretName").and_then(|s| s.as_str()))
        .collect();
    let mut mounted = Vec::new();
    for d in &docs {
        for v in d.pointer("/spec/template/spec/volumes").and_then(|v| v.as_array()).into_iter().flatten() {
            if let Some(s) = v.pointer("/secret/secretName").and_then(|s| s.as_str()) {
                mounted.push(s.to_owned());
            }
            for src in v.pointer("/projected/sources").and_then(|s| s.as_array()).into_iter().flatten() {
                if let Some(s) = src.pointer("/secret/name").and_then(|s| s.as_str()) {
                    mounted.push(s.to_owned());
                }
            }
        }
    }
    assert!(!mounted.is_empty());
    for s in mounted {
        assert!(issued.contains(s.as_str()), "Secret {s} is mounted but no Certificate issues it");
    }
    let issuers: BTreeSet<&str> =
        docs.iter().filter(|d| d["kind"] == "Issuer").filter_map(|d| d["metadata"]["name"].as_str()).collect();
    for d in docs.iter().filter(|d| d["kind"] == "Certificate") {
        let issuer = d.pointer("/spec/issuerRef/name").and_then(|s| s.as_str()).unwrap();
        assert!(issuers.contains(issuer), "Certificate {} names a missing Issuer {issuer}", d["metadata"]["name"]);
    }
}

/// CA rotation without an outage: the CA keeps its key across renewals, and
/// both workloads trust the optional `brupop-ca-bundle` ConfigMap (through
/// `--extra-ca`, in the same volume as their leaf Secret) for a key rotation.
#[test]
fn the_ca_keeps_its_key_and_both_sides_trust_the_rotation_bundle() {
    let docs = documents(&manifest()).unwrap();
    let ca = docs
        .iter()
        .find(|d| d["kind"] == "Certificate" && d["metadata"]["name"] == "brupop-ca")
        .expect("the CA Certificate");
    assert_eq!(ca.pointer("/spec/isCA"), Some(&json!(true)));
    assert_eq!(
        ca.pointer("/spec/privateKey/rotationPolicy"),
        Some(&json!("Never")),
        "a CA renewal must re-sign the same key, or leaves of the old and new CA distrust each other"
    );
    assert!(
        !docs.iter().any(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "brupop-ca-bundle"),
        "the bundle is not shipped: re-applying the manifest mid-rotation must not empty it"
    );
    for (kind, name, leaf_flag) in
        [("Deployment", "brupop-authproxy", "--client-ca"), ("DaemonSet", "brupop-agent", "--authproxy-ca")]
    {
        let d = docs.iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name).expect(name);
        let spec = &d["spec"]["template"]["spec"];
        let c = &spec["containers"][0];
        let arg = |flag: &str| {
            c["args"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|a| a.as_str())
                .find_map(|a| a.strip_prefix(&format!("{flag}=")).map(str::to_owned))
                .unwrap_or_else(|| panic!("{name} passes {flag}"))
        };
        let (leaf_ca, extra) = (arg(leaf_flag), arg("--extra-ca"));
        // Both files come from one projected volume: the leaf Secret and the
        // optional ConfigMap, so they change together and need no RBAC.
        let dir = extra.rsplit_once('/').unwrap().0.to_owned();
        assert_eq!(leaf_ca.rsplit_once('/').unwrap().0, dir, "{name}: ca.crt and the bundle in one volume");
        let mount = c["volumeMounts"].as_array().unwrap().iter().find(|m| m["mountPath"] == dir.as_str()).unwrap();
        let volume = spec["volumes"].as_array().unwrap().iter().find(|v| v["name"] == mount["name"]).unwrap();
        let sources = volume.pointer("/projected/sources").and_then(|s| s.as_array()).expect("a projected volume");
        let bundle = sources
            .iter()
            .find_map(|s| s.get("configMap").filter(|m| m["name"] == "brupop-ca-bundle"))
            .unwrap_or_else(|| panic!("{name} mounts the brupop-ca-bundle ConfigMap"));
        assert_eq!(bundle["optional"], true, "{name}: the bundle exists only during a rotation");
        let file = extra.rsplit_once('/').unwrap().1;
        assert!(
            bundle["items"].as_array().unwrap().iter().any(|i| i["key"] == "ca-bundle.crt" && i["path"] == file),
            "{name}: --extra-ca names the bundle's ca-bundle.crt"
        );
        assert!(sources.iter().any(|s| s.pointer("/secret/name").is_some()), "{name}: and its leaf Secret");
    }
}

fn rbac_kubeconfig() -> Option<PathBuf> {
    let p = std::env::var_os("BRUPOP_TEST_RBAC_KUBECONFIG").map(PathBuf::from);
    if p.is_none() {
        eprintln!("SKIPPED: BRUPOP_TEST_RBAC_KUBECONFIG is not set (a real API server with --authorization-mode=RBAC)");
    }
    p
}

fn kubectl(kubeconfig: &PathBuf, args: &[&str]) -> String {
    let out = Command::new("kubectl").args(args).env("KUBECONFIG", kubeconfig).output().expect("kubectl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kubectl {args:?} failed:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_manifest_installs_runs_under_its_rbac_and_uninstalls() {
    let Some(kc) = rbac_kubeconfig() else { return };
    let file = deploy_dir().join("bottlerocket-update-operator.yaml");
    let file = file.to_str().unwrap();
    let stand_ins = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/third-party-crds.yaml");
    kubectl(&kc, &["apply", "--server-side", "-f", stand_ins.to_str().unwrap()]);
    kubectl(
        &kc,
        &[
            "wait",
            "--for",
            "condition=established",
            "--timeout=60s",
            "crd/certificates.cert-manager.io",
            "crd/prometheusrules.monitoring.coreos.com",
            "crd/podmonitors.monitoring.coreos.com",
            "crd/issuers.cert-manager.io",
            "crd/servicemonitors.monitoring.coreos.com",
        ],
    );
    // 0. Installed over the original operator, the leader refuses to start
    //    and names the steps; after them, this operator installs and runs.
    moving_over_from_the_original_operator(&kc);
    // 1. The whole file applies with strict server-side validation, and deletes cleanly.
    let applied = kubectl(&kc, &["apply", "--server-side", "--validate=strict", "-f", file]);
    let count = applied.lines().filter(|l| l.contains("serverside-applied")).count();
    assert!(count >= 30, "{count} objects applied:\n{applied}");
    removing_the_original_leaves_this_operator_alone(&kc);
    overlays_pass_the_servers_validation(&kc);
    kubectl(&kc, &["delete", "--ignore-not-found", "--wait=true", "-f", file]);
    let left = kubectl(&kc, &["get", "clusterroles,clusterrolebindings,crd", "-o", "name"]);
    assert!(!left.contains("brupop"), "left behind after delete:\n{left}");
    // The plugin in a cluster without the operator says so.
    let (ok, out) = plugin(&kc, &["status"]);
    assert!(!ok && out.contains("the operator is not installed in this cluster"), "{out}");
    // 2. Sufficient: a rollout runs with each component under exactly the shipped RBAC.
    tests::backend::set_kubeconfig_override(&kc);
    let fleet =
        Fleet::start("rbac-sufficient", FleetOptions { nodes: 4, slots: 2, shipped_rbac: true, ..Default::default() })
            .await
            .unwrap();
    fleet.wait_reported(Duration::from_secs(120)).await;
    fleet.hosts.publish("1.21.0");
    fleet.wait_all(ShadowState::Idle, "1.21.0", Duration::from_secs(120)).await;
    fleet.monitor.assert_clean();
    // 3. Minimal for the agent: with its own token, every direct write is refused.
    let node = fleet.nodes[0].clone();
    let pod = format!("brupop-agent-{node}");
    let tok = tests::harness::fleet::token(
        fleet.client(),
        &fleet.ns,
        "brupop-agent",
        None,
        Some((&pod, &fleet.agent_pods[&node])),
    )
    .await
    .unwrap();
    let cfg = tests::backend::config_from_kubeconfig(&kc, Some(&tok)).await.unwrap();
    let agent = kube::Client::try_from(cfg).unwrap();
    let pp = PatchParams::default();
    let forbidden = |r: Result<serde_json::Value, kube::Error>| matches!(r, Err(kube::Error::Api(s)) if s.code == 403);
    let nodes: Api<Node> = Api::all(agent.clone());
    let r =
        nodes.patch(&node, &pp, &Patch::Merge(&json!({"spec": {"unschedulable": true}}))).await.map(|_| json!(null));
    assert!(forbidden(r), "the agent may not cordon directly");
    let shadows: Api<BottlerocketShadow> = Api::namespaced(agent.clone(), &fleet.ns);
    let r = shadows
        .patch_status(&names::shadow_name(&node), &pp, &Patch::Merge(&json!({"status": {"current_state": "Idle"}})))
        .await
        .map(|_| json!(null));
    assert!(forbidden(r), "the agent may not write its status directly");
    let r = shadows
        .patch(&names::shadow_name(&node), &pp, &Patch::Merge(&json!({"spec": {"slot": "brupop-slot-0"}})))
        .await
        .map(|_| json!(null));
    assert!(forbidden(r), "the agent may not grant itself a slot");
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(agent.clone(), &fleet.ns);
    let r = leases
        .patch("brupop-slot-0", &pp, &Patch::Merge(&json!({"spec": {"holderIdentity": node}})))
        .await
        .map(|_| json!(null));
    assert!(forbidden(r), "the agent may not take a slot Lease");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(agent.clone(), &fleet.ns);
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": format!("web-{node}-0"), "namespace": fleet.ns}});
    let r = pods
        .create_subresource::<_, serde_json::Value>(
            "eviction",
            &format!("web-{node}-0"),
            &Default::default(),
            &eviction,
        )
        .await;
    assert!(forbidden(r), "the agent may not evict pods directly");
    // What it may do: read its shadow.
    assert!(shadows.get(&names::shadow_name(&node)).await.is_ok(), "the agent reads its shadow");
    // The plugin, run by someone without the rights a command needs, names
    // the verb and the resource it was refused.
    let limited = limited_kubeconfig(&kc, &tok);
    let (ok, out) = plugin(&limited, &["pause"]);
    assert!(!ok, "paused without the rights: {out}");
    let refused = format!("no permission to get updatepolicies.brupop.bottlerocket.aws in namespace {}", fleet.ns);
    assert!(out.contains(&refused), "{out}");
    let (ok, out) = plugin(&limited, &["status"]);
    assert!(!ok && out.contains("no permission to ") && out.contains(&format!(" in namespace {}", fleet.ns)), "{out}");
    let _ = std::fs::remove_file(&limited);
    fleet.stop().await;
    // 4. Installed into another namespace by an overlay, a rollout runs there
    //    under the RBAC the overlay made.
    let fleet = Fleet::start(
        "rbac-elsewhere",
        FleetOptions {
            nodes: 3,
            slots: 1,
            shipped_rbac: true,
            install_namespace: Some("fleet-elsewhere".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(fleet.ns, "fleet-elsewhere");
    let binding =
        kubectl(&kc, &["get", "clusterrolebinding", "brupop-leader", "-o", "jsonpath={.subjects[0].namespace}"]);
    assert_eq!(binding.trim(), "fleet-elsewhere");
    fleet.wait_reported(Duration::from_secs(120)).await;
    fleet.hosts.publish("1.21.0");
    fleet.wait_all(ShadowState::Idle, "1.21.0", Duration::from_secs(120)).await;
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

/// Runs `kubectl brupop` (in the default namespace); returns (success,
/// stdout and stderr).
fn plugin(kubeconfig: &PathBuf, args: &[&str]) -> (bool, String) {
    let out = Command::new(tests::harness::bins::plugin())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("runs kubectl-brupop");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A copy of `kubeconfig` whose current user authenticates with `token`.
fn limited_kubeconfig(kubeconfig: &PathBuf, token: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("brupop-limited-{}.kubeconfig", std::process::id()));
    std::fs::copy(kubeconfig, &path).unwrap();
    kubectl(&path, &["config", "set-credentials", "limited", &format!("--token={token}")]);
    kubectl(&path, &["config", "set-context", "--current", "--user=limited"]);
    path
}

/// Everything the overlays and components make passes the server's own
/// validation (strict, server-side dry run; the CRDs are installed).
fn overlays_pass_the_servers_validation(kc: &PathBuf) {
    let dry_run = |what: &str, yaml: String| {
        let mut child = Command::new("kubectl")
            .args(["apply", "--server-side", "--validate=strict", "--dry-run=server", "-f", "-"])
            .env("KUBECONFIG", kc)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
        let n = String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("(server dry run)")).count();
        assert!(n >= 30, "{what}: {n} objects");
    };
    for c in ["metrics-service", "pull-secret", "text-logs", "without-monitoring"] {
        dry_run(c, tests::deploy::overlay(None, &[c]).unwrap());
    }
    // A dry run creates no namespace: the objects in one need it to exist.
    for ns in ["fleet-updates", "fleet-dry-run"] {
        kubectl(kc, &["create", "namespace", ns]);
    }
    dry_run("another namespace", tests::deploy::overlay(Some("fleet-dry-run"), &[]).unwrap());
    dry_run("overlays/example", tests::deploy::kustomize(&deploy_dir().join("overlays/example")).unwrap());
    for ns in ["fleet-updates", "fleet-dry-run"] {
        kubectl(kc, &["delete", "namespace", ns, "--wait=false"]);
    }
}

/// A file of the original operator's release (v1.4.0: its manifest, its Helm
/// values), from `../shared` beside the repository (or `BRUPOP_SHARED`).
/// Missing: a skip, but a failure in CI.
fn original_file(name: &str) -> Option<String> {
    let shared = std::env::var_os("BRUPOP_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let path = shared.join("brupop-v1.4.0").join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => panic!("{}: {e}", path.display()),
        Err(e) => {
            eprintln!("SKIPPED the original operator's install: {}: {e}", path.display());
            None
        }
    }
}

/// The manifest as a test server without the original's conversion webhook
/// takes it: the CRD's conversion becomes `None` (the fixture's README says so).
fn without_conversion_webhook(manifest: &str) -> String {
    let start = manifest.find("  conversion:\n    strategy: Webhook\n").expect("the CRD's conversion webhook");
    let end = start + manifest[start..].find("  group: brupop.bottlerocket.aws\n").expect("the CRD's group");
    format!("{}  conversion:\n    strategy: None\n{}", &manifest[..start], &manifest[end..])
}

/// Moving over on a real API server: the original operator installed from
/// its released manifest, with a node it was updating (its shadow, the node
/// cordoned) and the Secrets cert-manager would have issued. The leader
/// refuses to start beside it; `deploy/remove-original-operator.sh` (the
/// README's step) removes it; then nothing of it remains, checked object by
/// object against the original manifest and by its label.
fn moving_over_from_the_original_operator(kc: &PathBuf) {
    let Some(original) = original_file("bottlerocket-update-operator.yaml") else { return };
    let ns = "brupop-bottlerocket-aws";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("original.yaml");
    std::fs::write(&file, without_conversion_webhook(&original)).unwrap();
    kubectl(kc, &["apply", "-f", file.to_str().unwrap()]);
    for secret in ["brupop-apiserver-client-certificate", "brupop-apiserver-certificate", "brupop-root-ca-secret"] {
        kubectl(kc, &["-n", ns, "create", "secret", "generic", secret, "--from-literal=tls.crt=issued"]);
    }
    let node = "original-updating-node";
    let objects = format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {node}, labels: {{bottlerocket.aws/updater-interface-version: 2.0.0}}}}\nspec: {{unschedulable: true}}\n---\n\
         apiVersion: brupop.bottlerocket.aws/v2\nkind: BottlerocketShadow\nmetadata: {{name: brs-{node}, namespace: {ns}}}\nspec: {{state: RebootedIntoUpdate, version: 1.20.0}}\n"
    );
    let objects_file = dir.path().join("node.yaml");
    std::fs::write(&objects_file, objects).unwrap();
    kubectl(kc, &["apply", "-f", objects_file.to_str().unwrap()]);
    kubectl(
        kc,
        &[
            "-n",
            ns,
            "patch",
            "bottlerocketshadows.v2.brupop.bottlerocket.aws",
            &format!("brs-{node}"),
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"current_state":"RebootedIntoUpdate","current_version":"1.19.0","target_version":"1.20.0","crash_count":0}}"#,
        ],
    );

    let out = Command::new(&binaries().leader)
        .args([&format!("--namespace={ns}"), "--admin-listen=127.0.0.1:0"])
        .env("KUBECONFIG", kc)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "the leader must refuse to run beside the original operator:\n{text}");
    assert!(
        text.contains("original Bottlerocket update operator")
            && text.contains("brupop-controller-deployment")
            && text.contains("brupop-apiserver"),
        "{text}"
    );
    assert!(text.contains("deploy/remove-original-operator.sh"), "the message names the step: {text}");

    // The documented step (README: Moving over from the original operator).
    let script = deploy_dir().join("remove-original-operator.sh");
    let out = Command::new("sh").arg(&script).arg(ns).env("KUBECONFIG", kc).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{} failed:\n{text}", script.display());
    assert!(text.contains(&format!("the original operator is updating: {node}")), "{text}");
    assert!(text.contains(&format!("kubectl uncordon {node}")), "it names the node left cordoned: {text}");
    assert!(text.contains("nothing of the original operator remains"), "{text}");

    // Nothing remains: every object of the original manifest but the shared
    // namespace, its Secrets, and anything carrying its label.
    let mut left = Vec::new();
    for doc in documents(&original).unwrap() {
        let kind = doc["kind"].as_str().unwrap().to_owned();
        let name = doc["metadata"]["name"].as_str().unwrap().to_owned();
        if kind == "Namespace" {
            continue;
        }
        let resource = match kind.as_str() {
            "Certificate" => "certificates.cert-manager.io".to_owned(),
            "Issuer" => "issuers.cert-manager.io".to_owned(),
            "CustomResourceDefinition" => "crd".to_owned(),
            other => other.to_lowercase(),
        };
        let found = kubectl(kc, &["-n", ns, "get", &resource, &name, "--ignore-not-found", "-o", "name"]);
        if !found.trim().is_empty() {
            left.push(found.trim().to_owned());
        }
    }
    let secrets = kubectl(kc, &["-n", ns, "get", "secrets", "-o", "name"]);
    left.extend(secrets.lines().filter(|l| l.contains("brupop")).map(str::to_owned));
    let labelled = kubectl(
        kc,
        &[
            "get",
            "deployments,daemonsets,services,serviceaccounts,clusterroles,clusterrolebindings",
            "-A",
            "-l",
            "app.kubernetes.io/part-of=brupop",
            "-o",
            "name",
        ],
    );
    left.extend(labelled.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned));
    assert!(left.is_empty(), "left of the original operator: {left:?}");
    let cordoned = kubectl(kc, &["get", "node", node, "-o", "jsonpath={.spec.unschedulable}"]);
    assert_eq!(cordoned.trim(), "true", "the script leaves a node's cordon to the person who runs it");
    kubectl(kc, &["delete", "node", node]);
}

/// The script leaves this operator's own objects alone (same namespace, CRD
/// and DaemonSet names as the original's).
fn removing_the_original_leaves_this_operator_alone(kc: &PathBuf) {
    let script = deploy_dir().join("remove-original-operator.sh");
    let out = Command::new("sh").arg(&script).env("KUBECONFIG", kc).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("deleted"), "nothing of this operator is deleted: {text}");
    kubectl(
        kc,
        &[
            "-n",
            "brupop-bottlerocket-aws",
            "get",
            "daemonset/brupop-agent",
            "crd/bottlerocketshadows.brupop.bottlerocket.aws",
        ],
    );
}

/// Every string literal in the components' metric definitions.
fn metric_literals() -> BTreeSet<String> {
    let root = deploy_dir().join("..");
    let mut out = BTreeSet::new();
    for file in ["leader/src/metrics.rs", "authproxy/src/metrics.rs", "nodeagent/src/metrics.rs"] {
        let src = std::fs::read_to_string(root.join(file)).unwrap();
        out.extend(src.split('"').skip(1).step_by(2).map(str::to_owned));
    }
    out
}

/// Metric names (`brupop_*`, histogram suffixes removed) and the labels of
/// `by (...)` clauses used in a PromQL-bearing text.
fn promql_names(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut metrics = BTreeSet::new();
    let mut labels = BTreeSet::new();
    for (i, _) in text.match_indices("brupop_") {
        let name: String = text[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
        metrics.insert(base.to_owned());
    }
    for (i, _) in text.match_indices("by (") {
        let inner = text[i + 4..].split(')').next().unwrap_or_default();
        labels.extend(inner.split(',').map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()));
    }
    (metrics, labels)
}

#[test]
fn the_dashboard_and_alerts_use_only_metrics_and_labels_that_exist() {
    let defined = metric_literals();
    let dashboard = std::fs::read_to_string(deploy_dir().join("grafana-dashboard.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is valid JSON");
    let exprs: Vec<String> = parsed["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() >= 15, "the dashboard shows the rollout, failures, slots, authproxy and agents");
    let rules = std::fs::read_to_string(deploy_dir().join("base/70-monitoring.yaml")).unwrap();
    for (what, text) in [("deploy/grafana-dashboard.json", exprs.join("\n")), ("the PrometheusRule", rules)] {
        let (metrics, labels) = promql_names(&text);
        assert!(!metrics.is_empty(), "{what} uses metrics");
        // A name ending in `_` is a prefix in prose (e.g. "brupop_* metrics").
        let unknown: Vec<_> = metrics.iter().filter(|m| !m.ends_with('_') && !defined.contains(*m)).collect();
        assert!(unknown.is_empty(), "{what} uses metrics no component exports: {unknown:?}");
        let unknown: Vec<_> = labels.iter().filter(|l| *l != "le" && !defined.contains(*l)).collect();
        assert!(unknown.is_empty(), "{what} groups by labels no metric has: {unknown:?}");
    }
}

/// The list literal of a CEL variable such as `"['a', 'b']"`.
fn cel_strings(expr: &str) -> BTreeSet<String> {
    expr.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|s| s.trim().trim_matches('\'').to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The optional ValidatingAdmissionPolicy (the test server does not serve
/// that kind, so it is checked here): it binds with Deny, matches Node
/// updates by exactly the ServiceAccounts the install manifest lets patch
/// Nodes, allows exactly the labels and annotations the operator writes, and
/// guards every Node spec field but `spec.unschedulable`.
#[test]
fn the_optional_admission_policy_narrows_node_changes_to_the_operators_own() {
    let text = std::fs::read_to_string(deploy_dir().join("optional/admission-policy.yaml")).unwrap();
    let docs = documents(&text).unwrap();
    let kind = |k: &str| docs.iter().find(|d| d["kind"] == k).unwrap_or_else(|| panic!("no {k}"));
    let policy = kind("ValidatingAdmissionPolicy");
    let binding = kind("ValidatingAdmissionPolicyBinding");
    for d in [policy, binding] {
        assert_eq!(d["apiVersion"], "admissionregistration.k8s.io/v1");
    }
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
    assert_eq!(policy["spec"]["failurePolicy"], "Fail");
    let rules = policy["spec"]["matchConstraints"]["resourceRules"].as_array().unwrap();
    assert!(
        rules.iter().any(|r| r["resources"] == json!(["nodes"])
            && r["apiGroups"] == json!([""])
            && r["operations"].as_array().unwrap().contains(&json!("UPDATE"))),
        "{rules:?}"
    );

    // Who may patch Nodes under the shipped RBAC: the subjects of every
    // ClusterRole granting `patch` on nodes.
    let manifest_docs = documents(&manifest()).unwrap();
    let patchers: BTreeSet<String> = manifest_docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole")
        .filter(|d| {
            d["rules"].as_array().into_iter().flatten().any(|r| {
                r["apiGroups"] == json!([""])
                    && r["resources"].as_array().unwrap().contains(&json!("nodes"))
                    && r["verbs"].as_array().unwrap().contains(&json!("patch"))
            })
        })
        .flat_map(|role| {
            let name = role["metadata"]["name"].clone();
            manifest_docs
                .iter()
                .filter(move |b| b["kind"] == "ClusterRoleBinding" && b["roleRef"]["name"] == name)
                .flat_map(|b| b["subjects"].as_array().unwrap().clone())
        })
        .map(|s| format!("system:serviceaccount:{}:{}", s["namespace"].as_str().unwrap(), s["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        patchers,
        BTreeSet::from([
            format!("system:serviceaccount:{}:brupop-authproxy", names::DEFAULT_NAMESPACE),
            format!("system:serviceaccount:{}:brupop-leader", names::DEFAULT_NAMESPACE),
        ]),
        "SECURITY.md and the policy name these two"
    );
    let conditions = policy["spec"]["matchConditions"].as_array().unwrap();
    assert_eq!(conditions.len(), 1);
    let matched =
        cel_strings(conditions[0]["expression"].as_str().unwrap().split_once(" in ").map(|(_, list)| list).unwrap());
    assert_eq!(matched, patchers, "the policy applies to exactly the ServiceAccounts that may patch Nodes");

    // Exactly the labels and annotations the operator writes on Nodes.
    let var = |name: &str| {
        let v = policy["spec"]["variables"].as_array().unwrap().iter().find(|v| v["name"] == name).unwrap();
        v["expression"].as_str().unwrap().to_owned()
    };
    assert_eq!(cel_strings(&var("allowedLabels")), BTreeSet::from([names::EXCLUDE_LB_LABEL.to_owned()]));
    assert_eq!(
        cel_strings(&var("allowedAnnotations")),
        BTreeSet::from([
            names::CORDONED_ANNOTATION.to_owned(),
            names::LB_EXCLUDED_ANNOTATION.to_owned(),
            names::HOOKS_ANNOTATION.to_owned()
        ])
    );

    // Every field of a Node's spec but `unschedulable` is guarded. (Naming
    // every field here makes a new one in k8s-openapi a compile error.)
    use k8s_openapi::api::core::v1::{NodeConfigSource, NodePodPreemptionPolicy, NodeSpec, Taint};
    let full = NodeSpec {
        config_source: Some(NodeConfigSource::default()),
        external_id: Some(String::new()),
        pod_cidr: Some(String::new()),
        pod_cidrs: Some(vec![]),
        provider_id: Some(String::new()),
        taints: Some(vec![Taint::default()]),
        unschedulable: Some(true),
        pod_preemption_policy: Some(NodePodPreemptionPolicy::default()),
    };
    // Fields the policy leaves alone: the one the operator writes, and one
    // too new for most clusters' Node schema (an expression naming a field
    // the server does not know fails type checking, and with
    // `failurePolicy: Fail` would deny every Node change of both accounts).
    let unguarded = ["unschedulable", "podPreemptionPolicy"];
    let validations: String = policy["spec"]["validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["expression"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n");
    for field in serde_json::to_value(full).unwrap().as_object().unwrap().keys() {
        let guarded = validations.contains(&format!("object.spec.{field} == oldObject.spec.{field}"));
        assert_eq!(guarded, !unguarded.contains(&field.as_str()), "spec.{field}");
    }
    for field in ["finalizers", "ownerReferences"] {
        assert!(validations.contains(&format!("object.metadata.{field} == oldObject.metadata.{field}")), "{field}");
    }
}

/// The optional RBAC for deleting pods a PodDisruptionBudget keeps: it
/// grants the authproxy's ServiceAccount `delete` on pods and nothing else,
/// and the install manifest grants no one that right.
#[test]
fn the_optional_pod_delete_rbac_grants_the_authproxy_only_pod_deletion() {
    let text = std::fs::read_to_string(deploy_dir().join("optional/delete-blocked-pods-rbac.yaml")).unwrap();
    let docs = documents(&text).unwrap();
    let role = docs.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}]),
        "only pod deletion"
    );
    let binding = docs.iter().find(|d| d["kind"] == "ClusterRoleBinding").unwrap();
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "brupop-authproxy", "namespace": "brupop-bottlerocket-aws"}])
    );
    let shipped = documents(&manifest()).unwrap();
    let deletes_pods = shipped.iter().filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role").any(|d| {
        d["rules"].as_array().into_iter().flatten().any(|r| {
            r["resources"].as_array().is_some_and(|rs| rs.contains(&json!("pods")))
                && r["verbs"].as_array().is_some_and(|v| v.contains(&json!("delete")) || v.contains(&json!("*")))
        })
    });
    assert!(!deletes_pods, "the install manifest must not let anyone delete pods");
}

/// The optional metrics Service selects every component's pods and names the
/// port each of them serves its metrics on; its ServiceMonitor selects it.
#[test]
fn the_optional_metrics_service_reaches_every_components_admin_port() {
    let text = std::fs::read_to_string(deploy_dir().join("components/metrics-service/metrics-service.yaml")).unwrap();
    let docs = documents(&text).unwrap();
    let service = docs.iter().find(|d| d["kind"] == "Service").expect("a Service");
    let monitor = docs.iter().find(|d| d["kind"] == "ServiceMonitor").expect("a ServiceMonitor");
    let selector = service["spec"]["selector"].as_object().unwrap();
    let port = &service["spec"]["ports"][0];
    let mut components = Vec::new();
    for doc in documents(&manifest()).unwrap() {
        if !matches!(doc["kind"].as_str(), Some("Deployment" | "DaemonSet")) {
            continue;
        }
        let name = doc["metadata"]["name"].as_str().unwrap().to_owned();
        let labels = &doc["spec"]["template"]["metadata"]["labels"];
        assert!(selector.iter().all(|(k, v)| &labels[k] == v), "{name}: not selected by {selector:?}");
        let serves = doc["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["ports"].as_array())
            .flatten()
            .any(|p| p["name"] == port["targetPort"] && p["containerPort"] == port["port"]);
        assert!(serves, "{name}: no container port {} on {}", port["targetPort"], port["port"]);
        components.push(name);
    }
    assert_eq!(components.len(), 3, "leader, authproxy and agent: {components:?}");
    let wanted = monitor["spec"]["selector"]["matchLabels"].as_object().unwrap();
    assert!(
        wanted.iter().all(|(k, v)| &service["metadata"]["labels"][k] == v),
        "the ServiceMonitor selects the Service"
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], port["name"]);
    assert_eq!(service["spec"]["clusterIP"], "None", "headless: each pod is its own target");
    for doc in &docs {
        assert_eq!(doc["metadata"]["namespace"], "brupop-bottlerocket-aws");
    }
}

/// The README's table of the original operator's settings has a row for each
/// of them: every environment variable of its manifest and every top-level
/// Helm value (`image_pull_secrets` is commented out there, but users set it).
#[test]
fn every_setting_of_the_original_operator_has_a_row_in_the_readme() {
    let (Some(manifest), Some(values)) =
        (original_file("bottlerocket-update-operator.yaml"), original_file("helm-values.yaml"))
    else {
        return;
    };
    let readme = std::fs::read_to_string(deploy_dir().join("../README.md")).unwrap();
    let table = readme
        .split_once("#### The original's settings, here")
        .and_then(|(_, rest)| rest.split("\n#").next())
        .expect("README: the original's settings table");
    let mut settings = BTreeSet::new();
    for line in manifest.lines() {
        if let Some(name) = line.trim().strip_prefix("- name: ")
            && !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        {
            settings.insert(name.to_owned());
        }
    }
    for line in values.lines() {
        if let Some((key, _)) = line.split_once(':')
            && !key.is_empty()
            && key.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_')
        {
            settings.insert(key.to_owned());
        }
    }
    settings.insert("image_pull_secrets".to_owned());
    assert!(settings.len() >= 20, "{settings:?}");
    let missing: Vec<&String> = settings.iter().filter(|s| !table.contains(&format!("`{s}"))).collect();
    assert!(missing.is_empty(), "README's table of the original's settings lacks {missing:?}");
}

/// Every address the manifests serve on is `[::]` (both stacks: IPv4-only,
/// dual-stack and IPv6-only clusters run the same manifest), and parses as
/// the binaries parse it.
#[test]
fn every_listener_the_manifests_configure_binds_both_stacks() {
    let docs = documents(&manifest()).unwrap();
    let mut listeners = 0;
    for doc in &docs {
        let Some(containers) = doc.pointer("/spec/template/spec/containers").and_then(|c| c.as_array()) else {
            continue;
        };
        for c in containers {
            for arg in c["args"].as_array().into_iter().flatten().filter_map(|a| a.as_str()) {
                let Some((flag, value)) = arg.split_once('=') else { continue };
                if !flag.ends_with("listen") {
                    continue;
                }
                let addr: std::net::SocketAddr = value.parse().unwrap_or_else(|e| panic!("{arg}: {e}"));
                assert!(
                    addr.is_ipv6() && addr.ip().is_unspecified(),
                    "{} {arg}: serve on [::]:PORT (both stacks), not one family",
                    doc["metadata"]["name"]
                );
                listeners += 1;
            }
        }
    }
    assert_eq!(listeners, 4, "the leader's, the agent's and the authproxy's admin ports and the authproxy's API");
}

/// The Dockerfile builds, for amd64 and for arm64, every binary the
/// manifests run, from packages and a profile that exist here. (No container
/// daemon or aarch64 toolchain is on these machines: checked statically.)
#[test]
fn the_dockerfile_builds_every_binary_the_manifests_run_for_amd64_and_arm64() {
    let root = deploy_dir().parent().unwrap().to_path_buf();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    // The architecture comes from the build platform, not a fixed triple.
    assert!(dockerfile.contains("ARG TARGETARCH"), "the build stage reads TARGETARCH");
    assert!(dockerfile.contains("--platform linux/amd64,linux/arm64"), "the buildx command is documented");
    let mut triples = BTreeSet::new();
    for (arch, triple) in [("amd64", "x86_64-unknown-linux-musl"), ("arm64", "aarch64-unknown-linux-musl")] {
        let line = dockerfile
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{arch})")))
            .unwrap_or_else(|| panic!("no case for TARGETARCH {arch}"));
        assert!(line.contains(triple), "{arch} builds {triple}: {line}");
        triples.insert(triple);
    }
    // Those triples are targets rustc knows.
    let known = Command::new("rustc").args(["--print", "target-list"]).output().unwrap();
    let known = String::from_utf8_lossy(&known.stdout).into_owned();
    for t in &triples {
        assert!(known.lines().any(|l| l == *t), "rustc has no target {t}");
    }
    // The profile it builds with exists.
    let cargo_toml = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let profile = dockerfile.split("--profile ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap();
    assert!(cargo_toml.contains(&format!("[profile.{profile}]")), "no profile {profile} in Cargo.toml");
    // Every binary a manifest runs is built (-p), copied out of that
    // profile's directory and into the image's root.
    let docs = documents(&manifest()).unwrap();
    let commands: BTreeSet<String> = docs
        .iter()
        .filter_map(|d| d.pointer("/spec/template/spec/containers").and_then(|c| c.as_array()))
        .flatten()
        .map(|c| c["command"][0].as_str().unwrap().trim_start_matches('/').to_owned())
        .collect();
    assert_eq!(commands.len(), 3, "{commands:?}");
    let copy =
        dockerfile.lines().find(|l| l.starts_with("COPY --from=build")).expect("the run stage copies the binaries");
    for bin in &commands {
        assert!(root.join(bin).join("Cargo.toml").exists(), "no package {bin} in the workspace");
        assert!(dockerfile.contains(&format!("-p {bin}")), "the image does not build {bin}");
        assert!(dockerfile.contains(&format!("\"target/$T/{profile}/{bin}\"")), "the image does not copy {bin} out");
        assert!(copy.contains(&format!("/out/{bin}")), "the run stage does not copy {bin}: {copy}");
    }
}

// ---- The kustomize base, its components and the example overlay ----

fn kinds(docs: &[serde_json::Value]) -> BTreeSet<String> {
    docs.iter().map(|d| d["kind"].as_str().unwrap_or_default().to_owned()).collect()
}

/// The pod templates of the workloads, by workload name.
fn pod_specs(docs: &[serde_json::Value]) -> Vec<(String, serde_json::Value)> {
    docs.iter()
        .filter_map(|d| {
            d.pointer("/spec/template/spec").map(|s| (d["metadata"]["name"].as_str().unwrap().to_owned(), s.clone()))
        })
        .collect()
}

fn env_of<'a>(container: &'a serde_json::Value, name: &str) -> Vec<&'a serde_json::Value> {
    container["env"].as_array().into_iter().flatten().filter(|e| e["name"] == name).collect()
}

#[test]
fn the_kustomize_base_makes_exactly_the_one_file_manifest() {
    let built = tests::deploy::kustomize(&deploy_dir().join("base")).unwrap();
    let from_base = documents(&built).unwrap();
    let one_file = documents(&manifest()).unwrap();
    assert_eq!(from_base.len(), one_file.len(), "the base and the one-file manifest hold different objects");
    // kustomize writes a schema's `minimum: 0` as 0.0: compare numbers by value.
    fn by_value(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Number(n) => json!(n.as_f64()),
            serde_json::Value::Array(a) => a.iter().map(by_value).collect(),
            serde_json::Value::Object(o) => o.iter().map(|(k, v)| (k.clone(), by_value(v))).collect(),
            other => other.clone(),
        }
    }
    for (a, b) in from_base.iter().zip(&one_file) {
        assert_eq!(
            by_value(a),
            by_value(b),
            "kubectl kustomize deploy/base differs from the one-file manifest ({REGENERATE})"
        );
    }
}

#[test]
fn installed_in_another_namespace_nothing_names_the_default_one() {
    let text = tests::deploy::overlay(Some("fleet-x"), &[]).unwrap();
    // Not in any string: no URL, SAN, flag or alert text is left behind.
    assert!(!text.contains(names::DEFAULT_NAMESPACE), "the default namespace is still named:\n{text}");
    let docs = documents(&text).unwrap();
    let ns: Vec<_> = docs.iter().filter(|d| d["kind"] == "Namespace").collect();
    assert_eq!(ns.len(), 1);
    assert_eq!(ns[0]["metadata"]["name"], "fleet-x");
    let cluster_scoped = ["Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"];
    for d in &docs {
        let kind = d["kind"].as_str().unwrap();
        if !cluster_scoped.contains(&kind) {
            assert_eq!(d["metadata"]["namespace"], "fleet-x", "{kind} {}", d["metadata"]["name"]);
        }
        for s in d["subjects"].as_array().into_iter().flatten() {
            assert_eq!(s["namespace"], "fleet-x", "{kind} {}: subject {s}", d["metadata"]["name"]);
        }
    }
    // Each component works in the namespace it runs in (BRUPOP_NAMESPACE from
    // the downward API), never one written into its flags.
    for (name, spec) in pod_specs(&docs) {
        for c in spec["containers"].as_array().unwrap() {
            let from = env_of(c, "BRUPOP_NAMESPACE");
            assert_eq!(from.len(), 1, "{name}: BRUPOP_NAMESPACE");
            assert_eq!(from[0].pointer("/valueFrom/fieldRef/fieldPath"), Some(&json!("metadata.namespace")), "{name}");
            assert!(
                !c["args"].as_array().into_iter().flatten().any(|a| a.as_str().unwrap().starts_with("--namespace")),
                "{name} names a namespace in its flags"
            );
        }
    }
    // The agents reach the authproxy by a name its certificate holds and that
    // resolves in their own namespace: the Service's short name.
    let agent = pod_specs(&docs).into_iter().find(|(n, _)| n == "brupop-agent").unwrap().1;
    let url = agent["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|a| a.as_str().unwrap().strip_prefix("--authproxy-url="))
        .expect("the agent names the authproxy")
        .to_owned();
    let host = url.trim_start_matches("https://").split(':').next().unwrap().to_owned();
    assert!(!host.contains('.'), "{url}: a name with a namespace in it");
    assert!(docs.iter().any(|d| d["kind"] == "Service" && d["metadata"]["name"] == host.as_str()), "no Service {host}");
    let cert = docs
        .iter()
        .find(|d| d["kind"] == "Certificate" && d["metadata"]["name"] == "brupop-authproxy-tls")
        .expect("the authproxy's certificate");
    assert!(cert["spec"]["dnsNames"].as_array().unwrap().contains(&json!(host)), "{host} is not in {cert}");
}

/// Every component under deploy/components does what its name says, alone,
/// and nothing else; a component without a case here fails the test.
#[test]
fn each_component_does_what_it_says_and_nothing_else() {
    let base = documents(&manifest()).unwrap();
    let dirs: BTreeSet<String> = std::fs::read_dir(deploy_dir().join("components"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let cases = ["metrics-service", "pull-secret", "text-logs", "without-monitoring"];
    assert_eq!(dirs, cases.iter().map(|c| c.to_string()).collect(), "a component without a test case");
    for c in cases {
        let docs = documents(&tests::deploy::overlay(None, &[c]).unwrap()).unwrap();
        let k = kinds(&docs);
        match c {
            "without-monitoring" => {
                assert!(!k.contains("PodMonitor") && !k.contains("PrometheusRule"), "{c}: {k:?}");
                assert_eq!(docs.len(), base.len() - 2, "{c}: removes exactly two objects");
            }
            "metrics-service" => {
                assert!(!k.contains("PodMonitor") && k.contains("ServiceMonitor"), "{c}: {k:?}");
                assert!(docs.iter().any(|d| d["kind"] == "Service" && d["metadata"]["name"] == "brupop-metrics"));
                assert_eq!(docs.len(), base.len() + 1, "{c}: a Service and a ServiceMonitor for the PodMonitor");
            }
            "pull-secret" => {
                for (name, spec) in pod_specs(&docs) {
                    assert_eq!(spec["imagePullSecrets"], json!([{"name": "brupop-pull-secret"}]), "{c}: {name}");
                }
                assert_eq!(docs.len(), base.len());
            }
            "text-logs" => {
                for (name, spec) in pod_specs(&docs) {
                    for container in spec["containers"].as_array().unwrap() {
                        let e = env_of(container, "BRUPOP_LOG_FORMAT");
                        assert_eq!(e.len(), 1, "{c}: {name} sets the format once");
                        assert_eq!(e[0]["value"], "text", "{c}: {name}");
                        assert_eq!(env_of(container, "BRUPOP_NAMESPACE").len(), 1, "{c}: {name} keeps its other env");
                    }
                }
                assert_eq!(docs.len(), base.len());
            }
            other => unreachable!("{other}"),
        }
        // Nothing else changed: the objects the component does not touch are
        // exactly the base's.
        let touched = ["PodMonitor", "PrometheusRule", "ServiceMonitor", "Deployment", "DaemonSet", "Service"];
        let untouched = |d: &&serde_json::Value| !touched.contains(&d["kind"].as_str().unwrap());
        let a: Vec<_> = docs.iter().filter(untouched).collect();
        let b: Vec<_> = base.iter().filter(untouched).collect();
        assert_eq!(a.len(), b.len(), "{c}");
    }
}

#[test]
fn the_example_overlay_shapes_namespace_image_secrets_placement_resources_logs_and_monitoring() {
    let text = tests::deploy::kustomize(&deploy_dir().join("overlays/example")).unwrap();
    assert!(!text.contains(names::DEFAULT_NAMESPACE), "the default namespace is still named");
    let docs = documents(&text).unwrap();
    let k = kinds(&docs);
    assert!(!k.contains("PodMonitor") && !k.contains("PrometheusRule"), "{k:?}");
    let specs = pod_specs(&docs);
    assert_eq!(specs.len(), 3, "leader, authproxy, agent");
    for (name, spec) in &specs {
        let c = &spec["containers"][0];
        assert_eq!(c["image"], "registry.example.com/platform/bottlerocket-update-operator:0.1.0", "{name}");
        assert_eq!(spec["imagePullSecrets"], json!([{"name": "brupop-pull-secret"}]), "{name}");
        assert_eq!(env_of(c, "BRUPOP_LOG_FORMAT")[0]["value"], "text", "{name}");
    }
    let spec = |n: &str| specs.iter().find(|(name, _)| name == n).unwrap().1.clone();
    for n in ["brupop-leader", "brupop-authproxy"] {
        let s = spec(n);
        assert_eq!(s["nodeSelector"], json!({"node-role.example.com/platform": "true"}), "{n}");
        assert_eq!(s["priorityClassName"], "system-cluster-critical", "{n}");
        assert_eq!(s["tolerations"][0]["key"], "node-role.example.com/platform", "{n}");
        assert_eq!(s["topologySpreadConstraints"][0]["topologyKey"], "topology.kubernetes.io/zone", "{n}");
        assert!(s["affinity"].is_object(), "{n} keeps its anti-affinity");
    }
    assert_eq!(spec("brupop-authproxy")["containers"][0]["resources"]["limits"]["memory"], "320Mi");
    // The agent keeps the base's tolerations and gains the cluster's own.
    let base = documents(&manifest()).unwrap();
    let base_agent = pod_specs(&base).into_iter().find(|(n, _)| n == "brupop-agent").unwrap().1;
    let agent = spec("brupop-agent");
    let tolerations = agent["tolerations"].as_array().unwrap();
    assert_eq!(tolerations.len(), base_agent["tolerations"].as_array().unwrap().len() + 1);
    assert!(tolerations.iter().any(|t| t["key"] == "dedicated"));
    assert_eq!(agent["priorityClassName"], base_agent["priorityClassName"]);
}

/// The krew manifest a release submits: every placeholder filled, each
/// platform's sha256 that of its archive; bad input refused with a reason.
#[test]
fn the_krew_manifest_is_filled_in_for_a_release_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let archive = |name: &str, member: &str| {
        std::fs::write(dir.path().join(member), name).unwrap();
        let st = Command::new("tar")
            .arg("-czf")
            .arg(dir.path().join(name))
            .arg("-C")
            .arg(dir.path())
            .arg(member)
            .status()
            .unwrap();
        assert!(st.success());
        dir.path().join(name)
    };
    let amd64 = archive("amd64.tar.gz", "kubectl-brupop");
    let arm64 = archive("arm64.tar.gz", "kubectl-brupop");
    let script = deploy_dir().join("krew/release.sh");
    let run = |args: &[&std::ffi::OsStr]| Command::new("bash").arg(&script).args(args).output().unwrap();
    let os = |s: &str| std::ffi::OsString::from(s);
    let out = run(&[&os("1.2.3"), &os("acme/brupop"), amd64.as_os_str(), arm64.as_os_str()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("${"), "left unfilled:\n{text}");
    let doc = &documents(&text).unwrap()[0];
    assert_eq!(doc["kind"], "Plugin");
    assert_eq!(doc["spec"]["version"], "v1.2.3");
    let sha = |p: &PathBuf| {
        let o = Command::new("sha256sum").arg(p).output().unwrap();
        String::from_utf8(o.stdout).unwrap().split_whitespace().next().unwrap().to_owned()
    };
    for (platform, file) in doc["spec"]["platforms"].as_array().unwrap().iter().zip([&amd64, &arm64]) {
        let arch = platform["selector"]["matchLabels"]["arch"].as_str().unwrap();
        assert_eq!(platform["sha256"], sha(file).as_str(), "{arch}");
        let uri = platform["uri"].as_str().unwrap();
        assert_eq!(
            uri,
            format!("https://github.com/acme/brupop/releases/download/v1.2.3/kubectl-brupop-linux-{arch}.tar.gz")
        );
        assert_eq!(platform["bin"], "kubectl-brupop");
    }
    // Refused, each with its reason: a "v" version, a bare repository name,
    // an archive without the binary, a missing archive.
    let wrong = archive("wrong.tar.gz", "README");
    let missing = dir.path().join("missing.tar.gz");
    for (args, reason) in [
        (vec![os("v1.2.3"), os("acme/brupop"), amd64.clone().into(), arm64.clone().into()], "is not MAJOR.MINOR.PATCH"),
        (vec![os("1.2.3"), os("brupop"), amd64.clone().into(), arm64.clone().into()], "is not <owner>/<name>"),
        (vec![os("1.2.3"), os("acme/brupop"), amd64.clone().into(), wrong.into()], "does not hold kubectl-brupop"),
        (vec![os("1.2.3"), os("acme/brupop"), missing.into(), arm64.clone().into()], "no archive"),
    ] {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && out.stdout.is_empty(), "{args:?} was accepted");
        assert!(err.contains(reason), "{args:?}: {err}");
    }
}
