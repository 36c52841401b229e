//! Who is calling, and may they ask about this node? The pure authorization
//! rule of the authproxy.
//!
//! The caller's identity comes from a TokenReview of its projected token
//! (done by the caller of this module); the pod the token is bound to is
//! looked up in the cluster (also done by the caller). [`authorize`] then
//! decides, without I/O, which node the caller is and whether the node named
//! in the request path is that node. A compromised node can therefore only
//! ever act on itself.

use std::collections::BTreeMap;

/// Extra keys a real API server puts on pod-bound ServiceAccount tokens.
pub mod extra {
    pub const POD_NAME: &str = "authentication.kubernetes.io/pod-name";
    pub const POD_UID: &str = "authentication.kubernetes.io/pod-uid";
    pub const NODE_NAME: &str = "authentication.kubernetes.io/node-name";
}

/// The user a TokenReview returned.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Identity {
    pub username: String,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Identity {
    fn single(&self, key: &str) -> Result<Option<&str>, Denial> {
        match self.extra.get(key).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([one]) => Ok(Some(one.as_str())),
            Some(_) => Err(Denial::AmbiguousExtra { key: key.to_owned() }),
        }
    }
}

/// The agents' ServiceAccount: the only identity allowed to call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentAccount {
    pub namespace: String,
    pub service_account: String,
}

impl AgentAccount {
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.service_account)
    }
}

/// The pod a token is bound to, as found in the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFacts {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node_name: Option<String>,
    pub service_account: String,
}

/// Why a request is refused. Every variant is a 403 except where noted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("user {username} is not the agents' service account {expected}")]
    NotAnAgent { username: String, expected: String },
    #[error("the token is not bound to a pod (use a projected ServiceAccount token)")]
    NotPodBound,
    #[error("token extra {key} has more than one value")]
    AmbiguousExtra { key: String },
    #[error("the token's pod {pod} does not exist")]
    PodMissing { pod: String },
    #[error("the token's pod {pod} has uid {actual}, the token was issued for uid {token}")]
    PodReplaced { pod: String, actual: String, token: String },
    #[error("the token's pod {pod} runs as {actual}, not as the agents' service account")]
    WrongServiceAccount { pod: String, actual: String },
    #[error("the token's pod {pod} runs on node {pod_node:?}, the token says {token_node}")]
    PodElsewhere { pod: String, pod_node: Option<String>, token_node: String },
    #[error("the token's pod {pod} is not scheduled to a node")]
    NoNode { pod: String },
    #[error("caller runs on node {caller} but asked about node {asked}")]
    NodeMismatch { caller: String, asked: String },
}

impl Denial {
    /// Machine-readable reason for the error body and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::NodeMismatch { .. } => "NodeMismatch",
            Denial::NotAnAgent { .. } => "NotAnAgent",
            _ => "NotBoundToNode",
        }
    }
}

/// The pod whose facts [`authorize`] needs, named by the token's extras.
pub fn bound_pod(identity: &Identity, agent: &AgentAccount) -> Result<String, Denial> {
    let expected = agent.username();
    if identity.username != expected {
        return Err(Denial::NotAnAgent { username: identity.username.clone(), expected });
    }
    identity.single(extra::POD_NAME)?.map(str::to_owned).ok_or(Denial::NotPodBound)
}

/// The caller's node: the token's `node-name` extra, checked against the pod
/// it names, or the pod's node when the extra is absent. `pod` is the pod
/// [`bound_pod`] named, looked up in the agents' namespace (`None`: not found).
pub fn caller_node(identity: &Identity, agent: &AgentAccount, pod: Option<&PodFacts>) -> Result<String, Denial> {
    let pod_name = bound_pod(identity, agent)?;
    let pod = pod.ok_or_else(|| Denial::PodMissing { pod: pod_name.clone() })?;
    let qualified = format!("{}/{}", pod.namespace, pod.name);
    if pod.namespace != agent.namespace || pod.name != pod_name {
        return Err(Denial::PodMissing { pod: pod_name });
    }
    if let Some(uid) = identity.single(extra::POD_UID)?
        && uid != pod.uid
    {
        return Err(Denial::PodReplaced { pod: qualified, actual: pod.uid.clone(), token: uid.to_owned() });
    }
    if pod.service_account != agent.service_account {
        return Err(Denial::WrongServiceAccount { pod: qualified, actual: pod.service_account.clone() });
    }
    match (identity.single(extra::NODE_NAME)?, pod.node_name.as_deref()) {
        (Some(token_node), Some(pod_node)) if token_node == pod_node => Ok(pod_node.to_owned()),
        (Some(token_node), pod_node) => Err(Denial::PodElsewhere {
            pod: qualified,
            pod_node: pod_node.map(str::to_owned),
            token_node: token_node.to_owned(),
        }),
        (None, Some(pod_node)) => Ok(pod_node.to_owned()),
        (None, None) => Err(Denial::NoNode { pod: qualified }),
    }
}

/// The whole rule: the caller's node must be the node the request is about.
pub fn authorize(
    identity: &Identity,
    agent: &AgentAccount,
    pod: Option<&PodFacts>,
    asked_node: &str,
) -> Result<String, Denial> {
    let caller = caller_node(identity, agent, pod)?;
    if caller != asked_node {
        return Err(Denial::NodeMismatch { caller, asked: asked_node.to_owned() });
    }
    Ok(caller)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> AgentAccount {
        AgentAccount { namespace: "brupop".into(), service_account: "brupop-agent".into() }
    }

    fn identity(extras: &[(&str, &str)]) -> Identity {
        Identity {
            username: "system:serviceaccount:brupop:brupop-agent".into(),
            extra: extras.iter().map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()])).collect(),
        }
    }

    fn bound(node: &str) -> Identity {
        identity(&[(extra::POD_NAME, "agent-abc"), (extra::POD_UID, "uid-1"), (extra::NODE_NAME, node)])
    }

    fn pod(node: Option<&str>) -> PodFacts {
        PodFacts {
            namespace: "brupop".into(),
            name: "agent-abc".into(),
            uid: "uid-1".into(),
            node_name: node.map(Into::into),
            service_account: "brupop-agent".into(),
        }
    }

    #[test]
    fn an_agent_may_act_on_its_own_node() {
        assert_eq!(authorize(&bound("node-1"), &agent(), Some(&pod(Some("node-1"))), "node-1"), Ok("node-1".into()));
    }

    #[test]
    fn an_agent_may_not_act_on_another_node() {
        let err = authorize(&bound("node-1"), &agent(), Some(&pod(Some("node-1"))), "node-2").unwrap_err();
        assert_eq!(err, Denial::NodeMismatch { caller: "node-1".into(), asked: "node-2".into() });
        assert_eq!(err.to_string(), "caller runs on node node-1 but asked about node node-2");
    }

    #[test]
    fn without_node_extras_the_pods_node_decides() {
        let id = identity(&[(extra::POD_NAME, "agent-abc")]);
        assert_eq!(authorize(&id, &agent(), Some(&pod(Some("node-3"))), "node-3"), Ok("node-3".into()));
        assert!(matches!(
            authorize(&id, &agent(), Some(&pod(Some("node-3"))), "node-4"),
            Err(Denial::NodeMismatch { .. })
        ));
    }

    #[test]
    fn other_service_accounts_are_refused() {
        let mut id = bound("node-1");
        id.username = "system:serviceaccount:brupop:default".into();
        assert!(matches!(
            authorize(&id, &agent(), Some(&pod(Some("node-1"))), "node-1"),
            Err(Denial::NotAnAgent { .. })
        ));
        id.username = "admin".into();
        assert!(matches!(
            authorize(&id, &agent(), Some(&pod(Some("node-1"))), "node-1"),
            Err(Denial::NotAnAgent { .. })
        ));
    }

    #[test]
    fn tokens_not_bound_to_a_pod_are_refused() {
        assert_eq!(authorize(&identity(&[]), &agent(), None, "node-1"), Err(Denial::NotPodBound));
    }

    #[test]
    fn a_token_whose_pod_is_gone_is_refused() {
        assert!(matches!(authorize(&bound("node-1"), &agent(), None, "node-1"), Err(Denial::PodMissing { .. })));
    }

    #[test]
    fn a_token_of_a_replaced_pod_is_refused() {
        let mut p = pod(Some("node-1"));
        p.uid = "uid-2".into();
        assert!(matches!(authorize(&bound("node-1"), &agent(), Some(&p), "node-1"), Err(Denial::PodReplaced { .. })));
    }

    #[test]
    fn a_pod_running_as_another_service_account_is_refused() {
        let mut p = pod(Some("node-1"));
        p.service_account = "default".into();
        assert!(matches!(
            authorize(&bound("node-1"), &agent(), Some(&p), "node-1"),
            Err(Denial::WrongServiceAccount { .. })
        ));
    }

    #[test]
    fn a_token_claiming_a_node_its_pod_is_not_on_is_refused() {
        let err = authorize(&bound("node-2"), &agent(), Some(&pod(Some("node-1"))), "node-2").unwrap_err();
        assert!(matches!(err, Denial::PodElsewhere { .. }), "{err}");
    }

    #[test]
    fn an_unscheduled_pod_has_no_node() {
        let id = identity(&[(extra::POD_NAME, "agent-abc")]);
        assert!(matches!(authorize(&id, &agent(), Some(&pod(None)), "node-1"), Err(Denial::NoNode { .. })));
    }

    #[test]
    fn a_pod_in_another_namespace_does_not_count() {
        let mut p = pod(Some("node-1"));
        p.namespace = "elsewhere".into();
        assert!(matches!(authorize(&bound("node-1"), &agent(), Some(&p), "node-1"), Err(Denial::PodMissing { .. })));
    }

    #[test]
    fn ambiguous_extras_are_refused() {
        let mut id = bound("node-1");
        id.extra.insert(extra::NODE_NAME.into(), vec!["node-1".into(), "node-2".into()]);
        assert!(matches!(
            authorize(&id, &agent(), Some(&pod(Some("node-1"))), "node-1"),
            Err(Denial::AmbiguousExtra { .. })
        ));
    }
}
