//! What tests do to a running fleet: change the UpdatePolicy, kill and
//! restart components, cut an agent's network, delete a node.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use model::{UpdatePolicy, UpdatePolicySpec, names};

use super::fleet::Fleet;

impl Fleet {
    fn policies(&self) -> Api<UpdatePolicy> {
        Api::namespaced(self.client().clone(), &self.ns)
    }

    pub async fn policy(&self) -> Option<UpdatePolicy> {
        self.policies().get_opt(names::POLICY_NAME).await.ok().flatten()
    }

    /// Merge-patches the UpdatePolicy spec (creating the object if missing),
    /// as a person would with `kubectl patch updatepolicy default --type merge`.
    pub async fn patch_policy(&self, spec: serde_json::Value) {
        let api = self.policies();
        if api.get_opt(names::POLICY_NAME).await.ok().flatten().is_none() {
            let mut p = UpdatePolicy::new(names::POLICY_NAME, UpdatePolicySpec::default());
            p.metadata.namespace = Some(self.ns.clone());
            let _ = api.create(&PostParams::default(), &p).await;
        }
        let pp = PatchParams { field_manager: Some("kubectl-patch".into()), ..Default::default() };
        api.patch(names::POLICY_NAME, &pp, &Patch::Merge(&serde_json::json!({ "spec": spec })))
            .await
            .expect("patching the UpdatePolicy");
    }

    /// The documented resume command.
    pub async fn resume(&self) {
        self.patch_policy(serde_json::json!({"resumeRequest": jiff::Timestamp::now().to_string()})).await;
    }

    /// Kills leader `i` (SIGKILL: no chance to release its lease).
    pub fn kill_leader(&self, i: usize) {
        self.leaders[i].lock().unwrap_or_else(|e| e.into_inner()).kill();
    }

    pub fn start_leader(&self, i: usize) {
        self.leaders[i].lock().unwrap_or_else(|e| e.into_inner()).restart().expect("restarting the leader");
    }

    /// SIGTERM to leader `i`; returns whether it exited 0 in time.
    pub fn stop_leader(&self, i: usize) -> bool {
        let status = self.leaders[i].lock().unwrap_or_else(|e| e.into_inner()).terminate(Duration::from_secs(10));
        status.is_some_and(|s| s.success())
    }

    /// Restarts the authproxy (same port, same certificates).
    pub fn restart_authproxy(&self) {
        let mut p = self.authproxy.lock().unwrap_or_else(|e| e.into_inner());
        p.terminate(Duration::from_secs(10));
        p.restart().expect("restarting the authproxy");
    }

    /// Upgrades a fleet started with another build ([`super::FleetOptions::binaries`])
    /// to the current one, as a user applying the new manifest would: the
    /// CRDs first, then the leader(s) and the authproxy, then each agent
    /// (the DaemonSet's rolling update), each with today's flags.
    pub async fn upgrade(&self) -> anyhow::Result<()> {
        self.api.install_crds().await?;
        let bins = super::bins::binaries().clone();
        for (i, l) in self.leaders.iter().enumerate() {
            let args = self.full_args(&format!("leader-{i}"));
            l.lock().unwrap_or_else(|e| e.into_inner()).replace(bins.leader.clone(), args)?;
        }
        let args = self.full_args("authproxy");
        self.authproxy.lock().unwrap_or_else(|e| e.into_inner()).replace(bins.authproxy.clone(), args)?;
        for n in &self.nodes {
            let args = self.full_args(&format!("agent-{n}"));
            if let Some(p) = self.agents.lock().unwrap_or_else(|e| e.into_inner()).get_mut(n) {
                p.replace(bins.nodeagent.clone(), args)?;
            }
        }
        Ok(())
    }

    pub fn kill_agent(&self, node: &str) {
        self.agent(node, |p| p.kill());
    }

    pub fn start_agent(&self, node: &str) {
        self.agent(node, |p| p.restart().expect("restarting the agent"));
    }

    /// Cuts the agent's link to the authproxy.
    pub fn cut(&self, node: &str) {
        self.links[node].cut();
    }

    pub fn restore(&self, node: &str) {
        self.links[node].restore();
    }

    /// Deletes a Node as a cluster autoscaler would: its agent dies, its pods go.
    pub async fn delete_node(&self, node: &str) {
        self.kill_agent(node);
        let pods: Api<Pod> = Api::all(self.client().clone());
        let dp = DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
        if let Ok(list) = pods.list(&ListParams::default().fields(&format!("spec.nodeName={node}"))).await {
            for p in list.items {
                if let (Some(ns), Some(name)) = (p.metadata.namespace, p.metadata.name) {
                    let _ = Api::<Pod>::namespaced(self.client().clone(), &ns).delete(&name, &dp).await;
                }
            }
        }
        Api::<Node>::all(self.client().clone())
            .delete(node, &DeleteParams::default())
            .await
            .expect("deleting the node");
    }

    /// Removes the fleet's cluster-scoped objects (its Nodes) and its namespace.
    pub async fn stop(self) {
        let nodes: Api<Node> = Api::all(self.client().clone());
        for n in &self.nodes {
            let _ = nodes.delete(n, &DeleteParams::default()).await;
        }
    }
}
