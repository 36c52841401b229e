//! The harness playing kubelet, where a real cluster would:
//!
//! - a pod deleted or evicted from a node disappears once it has terminated
//!   (after a short, scaled-down grace: the harness deletes it with grace 0);
//! - a host reboot (the host simulator's power state) kills the node's agent
//!   process, marks the Node and its pods NotReady, and when the host is up
//!   again marks them Ready and starts the agent again, as the DaemonSet
//!   would, with the same Pod object (so its pod-bound tokens stay valid);
//! - each boot gets a new boot ID (`status.nodeInfo.bootID`), as a kubelet
//!   reports it;
//! - after a boot the node's pods turn Ready only a while after the Node
//!   ([`PodStarts::after_boot`]), as containers restart, and pods a test
//!   marks failing ([`PodStarts::failing`], `namespace/name`) stay NotReady,
//!   as a crash-looping container's pod does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use tokio::task::JoinHandle;

use super::process::Proc;
use crate::hostsim::{HostSim, PowerState};

/// The agents, by node, shared with the kubelet so a reboot can kill and restart them.
pub type Agents = Arc<Mutex<BTreeMap<String, Proc>>>;

/// How the node's pods come back after a boot.
#[derive(Clone, Debug, Default)]
pub struct PodStarts {
    /// How long after the Node turns Ready its pods do.
    pub after_boot: Duration,
    /// Pods (`namespace/name`) that stay NotReady after every boot.
    pub failing: Arc<Mutex<std::collections::BTreeSet<String>>>,
}

fn pp() -> PatchParams {
    runtime::client::patch_params(model::names::managers::HARNESS)
}

/// Marks a Node Ready or NotReady (status subresource).
pub async fn set_node_ready(client: &kube::Client, node: &str, ready: bool) -> kube::Result<()> {
    let (status, reason) = if ready { ("True", "KubeletReady") } else { ("False", "NodeRebooting") };
    let patch = json!({"status": {"conditions": [{
        "type": "Ready", "status": status, "reason": reason,
        "message": if ready { "kubelet is posting ready status" } else { "the node is rebooting" },
        "lastHeartbeatTime": jiff::Timestamp::now().to_string(),
        "lastTransitionTime": jiff::Timestamp::now().to_string(),
    }]}});
    Api::<Node>::all(client.clone()).patch_status(node, &pp(), &Patch::Merge(&patch)).await.map(|_| ())
}

/// Reports a new boot of `node`: a fresh `status.nodeInfo.bootID` (every
/// field of nodeInfo is set: clients read them as required).
pub async fn new_boot(client: &kube::Client, node: &str) -> kube::Result<String> {
    let boot_id = format!("{node}-boot-{}", jiff::Timestamp::now().as_nanosecond());
    let patch = json!({"status": {"nodeInfo": {
        "bootID": boot_id, "machineID": node, "systemUUID": node,
        "kernelVersion": "6.1.0", "osImage": "Bottlerocket OS (simulated)",
        "containerRuntimeVersion": "containerd://1.7.0", "kubeletVersion": "v1.32.0",
        "kubeProxyVersion": "v1.32.0", "operatingSystem": "linux", "architecture": "amd64",
    }}});
    Api::<Node>::all(client.clone()).patch_status(node, &pp(), &Patch::Merge(&patch)).await?;
    Ok(boot_id)
}

/// Marks a pod Running and Ready or not Ready.
pub async fn set_pod_ready(client: &kube::Client, namespace: &str, pod: &str, ready: bool) -> kube::Result<()> {
    let patch = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": if ready { "True" } else { "False" }},
    ]}});
    Api::<Pod>::namespaced(client.clone(), namespace).patch_status(pod, &pp(), &Patch::Merge(&patch)).await.map(|_| ())
}

async fn set_node_pods_ready(
    client: &kube::Client,
    node: &str,
    ready: bool,
    failing: &Mutex<std::collections::BTreeSet<String>>,
) -> kube::Result<()> {
    let pods =
        Api::<Pod>::all(client.clone()).list(&ListParams::default().fields(&format!("spec.nodeName={node}"))).await?;
    for p in pods.items {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let (Some(ns), Some(name)) = (p.metadata.namespace.as_deref(), p.metadata.name.as_deref()) else {
            continue;
        };
        let fails = failing.lock().unwrap_or_else(|e| e.into_inner()).contains(&format!("{ns}/{name}"));
        set_pod_ready(client, ns, name, ready && !fails).await?;
    }
    Ok(())
}

/// Deletes terminating pods in `namespace` (grace 0) after `delay`.
pub fn finish_terminating_pods(client: kube::Client, namespace: String, delay: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let mut stream = watcher::watcher(pods.clone(), watcher::Config::default()).default_backoff().boxed();
        while let Some(ev) = stream.next().await {
            let pod = match ev {
                Ok(Event::Apply(p) | Event::InitApply(p)) => p,
                _ => continue,
            };
            if pod.metadata.deletion_timestamp.is_none() {
                continue;
            }
            let Some(name) = pod.metadata.name.clone() else {
                continue;
            };
            let pods = pods.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let dp = DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
                let _ = pods.delete(&name, &dp).await;
            });
        }
    })
}

/// Follows one host's power: down → kill the agent, node and pods NotReady;
/// up → Ready again, agent restarted. Returns the task.
pub fn follow_reboots(
    client: kube::Client,
    host: &HostSim,
    node: String,
    agents: Agents,
    starts: PodStarts,
) -> JoinHandle<()> {
    let mut power = host.power();
    tokio::spawn(async move {
        let mut down = false;
        loop {
            let state = power.borrow_and_update().state;
            match state {
                PowerState::GoingDown | PowerState::Down if !down => {
                    down = true;
                    if let Some(p) = agents.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&node) {
                        p.kill();
                    }
                    let _ = set_node_ready(&client, &node, false).await;
                    let _ = set_node_pods_ready(&client, &node, false, &starts.failing).await;
                    tracing::info!(%node, "host going down: agent killed, node NotReady");
                }
                PowerState::Up if down => {
                    down = false;
                    let _ = new_boot(&client, &node).await;
                    let _ = set_node_ready(&client, &node, true).await;
                    // Containers start a while after the kubelet reports Ready.
                    let (c, n, s) = (client.clone(), node.clone(), starts.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(s.after_boot).await;
                        let _ = set_node_pods_ready(&c, &n, true, &s.failing).await;
                    });
                    if let Some(p) = agents.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&node)
                        && let Err(e) = p.restart()
                    {
                        tracing::warn!(%node, error = %e, "could not restart the agent");
                    }
                    tracing::info!(%node, "host up: node Ready, agent restarted");
                }
                _ => {}
            }
            if power.changed().await.is_err() {
                return;
            }
        }
    })
}
