//! Why a pass of the leader's writes stopped early.

/// Why a pass stopped early: one variant per write (or read) of the
/// leader, named after it, each with a metrics label
/// (`brupop_leader_errors_total{action}`).
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error("not the leader any more")]
    NotLeader,
    #[error("creating the UpdatePolicy: {0}")]
    CreatePolicy(#[source] kube::Error),
    #[error("writing the UpdatePolicy status: {0}")]
    WriteStatus(#[source] kube::Error),
    #[error("creating slot {slot}: {source}")]
    CreateSlot { slot: String, source: kube::Error },
    #[error("deleting slot {slot}: {source}")]
    DeleteSlot { slot: String, source: kube::Error },
    #[error("reading slot {slot}: {source}")]
    ReadSlot { slot: String, source: kube::Error },
    #[error("clearing slot {slot}: {source}")]
    ClearSlot { slot: String, source: kube::Error },
    #[error("granting slot {slot}: {source}")]
    GrantSlot { slot: String, source: kube::Error },
    #[error("writing the spec of the shadow of {node}: {source}")]
    WriteSpec { node: String, source: kube::Error },
    #[error("reading node {node}: {source}")]
    ReadNode { node: String, source: kube::Error },
    #[error("uncordoning node {node}: {source}")]
    Uncordon { node: String, source: kube::Error },
    #[error("deleting the shadow of {node}: {source}")]
    DeleteShadow { node: String, source: kube::Error },
}

impl ActError {
    /// The label of `brupop_leader_errors_total{action}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ActError::NotLeader => "not_leader",
            ActError::CreatePolicy(_) => "create_policy",
            ActError::WriteStatus(_) => "write_status",
            ActError::CreateSlot { .. } => "create_slot",
            ActError::DeleteSlot { .. } => "delete_slot",
            ActError::ReadSlot { .. } => "read_slot",
            ActError::ClearSlot { .. } => "clear_slot",
            ActError::GrantSlot { .. } => "grant_slot",
            ActError::WriteSpec { .. } => "write_spec",
            ActError::ReadNode { .. } => "read_node",
            ActError::Uncordon { .. } => "uncordon",
            ActError::DeleteShadow { .. } => "delete_shadow",
        }
    }

    /// Every label, for registering the counter's series up front.
    pub const LABELS: [&'static str; 11] = [
        "create_policy",
        "write_status",
        "create_slot",
        "delete_slot",
        "read_slot",
        "clear_slot",
        "grant_slot",
        "write_spec",
        "read_node",
        "uncordon",
        "delete_shadow",
    ];
}

pub(super) fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict() || s.is_not_found())
}
