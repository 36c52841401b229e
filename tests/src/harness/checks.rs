//! What tests look at: shadows, slots, nodes and metrics, and waits on them.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use model::names;
use model::{BottlerocketShadow, ShadowState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::fleet::Fleet;
use super::wait::wait_for;

/// One node's line in a progress report.
fn line(s: &BottlerocketShadow) -> String {
    let st = s.status.as_ref();
    format!(
        "{}:{}@{}{}{}",
        s.node_name().unwrap_or("?"),
        st.map_or("-".to_owned(), |s| s.current_state.to_string()),
        st.map_or("-", |s| s.current_version.as_str()),
        s.spec.slot.as_ref().map_or(String::new(), |x| format!("[{x}]")),
        st.and_then(|s| s.last_failure.as_ref()).map_or(String::new(), |f| format!("!{}", f.reason)),
    )
}

impl Fleet {
    pub async fn shadows(&self) -> Vec<BottlerocketShadow> {
        self.shadows_api().list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default()
    }

    pub async fn shadow(&self, node: &str) -> Option<BottlerocketShadow> {
        self.shadows_api().get_opt(&names::shadow_name(node)).await.ok().flatten()
    }

    /// Slot Leases: name → holder.
    pub async fn slots(&self) -> Vec<(String, Option<String>)> {
        let leases: Api<Lease> = Api::namespaced(self.client().clone(), &self.ns);
        let lp = ListParams::default().labels(&format!("{}=true", names::SLOT_LABEL));
        let mut out: Vec<(String, Option<String>)> = leases
            .list(&lp)
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .map(|l| {
                (l.metadata.name.unwrap_or_default(), l.spec.and_then(|s| s.holder_identity).filter(|h| !h.is_empty()))
            })
            .collect();
        out.sort();
        out
    }

    pub async fn node(&self, node: &str) -> Option<Node> {
        Api::<Node>::all(self.client().clone()).get_opt(node).await.ok().flatten()
    }

    /// Whether the node is unschedulable.
    pub async fn cordoned(&self, node: &str) -> bool {
        self.node(node).await.and_then(|n| n.spec).and_then(|s| s.unschedulable).unwrap_or(false)
    }

    /// A one-line summary of every shadow, for failure messages.
    pub async fn progress(&self) -> String {
        let mut v: Vec<String> = self.shadows().await.iter().map(line).collect();
        v.sort();
        format!("{} | slots {:?}", v.join(" "), self.slots().await)
    }

    /// Every node reports `state` on `version`, holds no slot, and no slot is held.
    pub async fn wait_all(&self, state: ShadowState, version: &str, timeout: Duration) {
        let what = format!("all {} nodes {state} on {version}", self.nodes.len());
        wait_for(&what, timeout, || async {
            let shadows = self.shadows().await;
            let done = shadows.len() == self.nodes.len()
                && shadows.iter().all(|s| {
                    s.spec.slot.is_none()
                        && s.status
                            .as_ref()
                            .is_some_and(|st| st.current_state == state && st.current_version == version)
                });
            let free = self.slots().await.iter().all(|(_, h)| h.is_none());
            if done && free { Ok(()) } else { Err(self.progress().await) }
        })
        .await;
    }

    /// Waits until every node has reported its status at least once.
    pub async fn wait_reported(&self, timeout: Duration) {
        wait_for("every agent to report its status", timeout, || async {
            let n = self.shadows().await.iter().filter(|s| s.status.is_some()).count();
            if n == self.nodes.len() {
                Ok(())
            } else {
                Err(format!("{n}/{} reported; {}", self.nodes.len(), self.progress().await))
            }
        })
        .await;
    }

    /// The leader `i`'s `/metrics`.
    pub async fn leader_metrics(&self, i: usize) -> String {
        scrape(self.leader_admin[i]).await.unwrap_or_default()
    }

    pub async fn authproxy_metrics(&self) -> String {
        scrape(self.authproxy_admin).await.unwrap_or_default()
    }
}

/// `GET /metrics` on a loopback admin port.
pub async fn scrape(port: u16) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    Ok(buf.split_once("\r\n\r\n").map_or(buf.clone(), |(_, b)| b.to_owned()))
}

/// The value of a metric sample, e.g. `metric(text, "brupop_update_failures_total{reason=\"RolledBack\"}")`.
pub fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == sample).then(|| value.parse().ok()).flatten()
    })
}
