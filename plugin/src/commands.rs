//! The commands: read what they need, write the one change they make, and
//! say what changed. API errors become [`Error`]s that name the verb and
//! resource refused.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use model::names;
use model::policy::{CanaryState, Phase};
use model::{BottlerocketShadow, UpdatePolicy};
use serde_json::json;

use crate::render::{self, HistoryEntry, StatusReport};
use crate::{Command, Error, Output};

/// The field manager of the plugin's writes.
const MANAGER: &str = "kubectl-brupop";

pub(crate) async fn run(client: &Client, ns: &str, command: Command) -> Result<String, Error> {
    let now = jiff::Timestamp::now();
    match command {
        Command::Status { output } => {
            let policy = policy(client, ns).await?;
            let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
            let leases = leases.list(&ListParams::default()).await.map_err(|e| err(e, "list", "leases", ns))?.items;
            let shadows: Api<BottlerocketShadow> = Api::namespaced(client.clone(), ns);
            let shadows = shadows
                .list(&ListParams::default())
                .await
                .map_err(|e| err(e, "list", "bottlerocketshadows.brupop.bottlerocket.aws", ns))?
                .items;
            let report = StatusReport::new(ns, &policy, &leases, &shadows);
            Ok(match output {
                Output::Text => report.text(now),
                o => render::structured(&report, o),
            })
        }
        Command::History { limit, output } => {
            let policy = policy(client, ns).await?;
            let events: Api<Event> = Api::namespaced(client.clone(), ns);
            let events = events
                .list(&ListParams::default())
                .await
                .map_err(|e| err(e, "list", "events.events.k8s.io", ns))?
                .items;
            let entries = render::history(&policy, events.into_iter().filter_map(entry).collect(), limit);
            Ok(match output {
                Output::Text => render::history_text(&entries),
                o => render::structured(&entries, o),
            })
        }
        Command::Plan { output } => {
            let snap = snapshot(client, ns).await?;
            let report = crate::plan::plan(&snap, now).map_err(Error::Invalid)?;
            Ok(match output {
                Output::Text => report.text(),
                o => render::structured(&report, o),
            })
        }
        Command::Explain { node, output } => {
            let snap = snapshot(client, ns).await?;
            if !snap.all_nodes.contains(&node) {
                return Err(Error::UnknownNode(node));
            }
            let plan = crate::plan::plan(&snap, now).map_err(Error::Invalid)?;
            let report = crate::plan::explain_node(&snap, &plan, &node);
            Ok(match output {
                Output::Text => report.text(),
                o => render::structured(&report, o),
            })
        }
        Command::Pause => {
            let policy = policy(client, ns).await?;
            if policy.spec.paused {
                return Ok("already paused (spec.paused is true): nothing changed\n".to_owned());
            }
            patch_policy(client, ns, json!({"spec": {"paused": true}})).await?;
            let held = policy.status.map_or(0, |s| s.slots_held);
            Ok(format!("paused: spec.paused false -> true; no new grants, {held} node(s) updating finish\n"))
        }
        Command::Resume => {
            let policy = policy(client, ns).await?;
            let st = policy.status.clone().unwrap_or_default();
            let mut spec = serde_json::Map::new();
            let mut said = Vec::new();
            if policy.spec.paused {
                spec.insert("paused".into(), json!(false));
                said.push("spec.paused true -> false".to_owned());
            }
            if matches!(st.phase, Phase::Halted | Phase::Stopped) || st.consecutive_failures > 0 {
                let request = now.to_string();
                spec.insert("resumeRequest".into(), json!(request));
                said.push(format!(
                    "spec.resumeRequest set to {request}: ends the {} and resets {} consecutive failure(s)",
                    if st.phase == Phase::Stopped { "stop" } else { "halt" },
                    st.consecutive_failures
                ));
            }
            if spec.is_empty() {
                return Ok(format!("nothing to resume: the rollout is {} ({})\n", st.phase.as_str(), st.message));
            }
            patch_policy(client, ns, json!({ "spec": spec })).await?;
            Ok(format!("resumed: {}\n", said.join("; ")))
        }
        Command::SetSlots { slots } => {
            let budget = model::parse::Budget::parse(&slots).map_err(|e| {
                Error::Invalid(format!("set-slots {slots}: {e} (a count such as 3, or a percentage such as 10%)"))
            })?;
            let value = match budget {
                model::parse::Budget::Count(n) => json!(n),
                model::parse::Budget::Percent(p) => json!(format!("{p}%")),
            };
            let policy = policy(client, ns).await?;
            let before = policy.spec.max_concurrent_updates.as_ref().map_or_else(
                || "the leader's default".to_owned(),
                |v| match v {
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => n.to_string(),
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
                },
            );
            patch_policy(client, ns, json!({"spec": {"maxConcurrentUpdates": value}})).await?;
            Ok(format!("spec.maxConcurrentUpdates {before} -> {budget}\n"))
        }
        Command::SkipSoak { version } => {
            let policy = policy(client, ns).await?;
            let canaries = policy.status.map(|s| s.canaries).unwrap_or_default();
            let soaking: Vec<&str> =
                canaries.iter().filter(|c| c.state == CanaryState::Soaking).map(|c| c.version.as_str()).collect();
            let version = match version {
                Some(v) if soaking.contains(&v.as_str()) => v,
                Some(v) => {
                    return Err(Error::Invalid(format!(
                        "no soak of {v} under way (soaking: {})",
                        if soaking.is_empty() { "none".to_owned() } else { soaking.join(", ") }
                    )));
                }
                None => match soaking.as_slice() {
                    [one] => (*one).to_owned(),
                    [] => return Err(Error::Invalid("no canary is soaking: nothing to skip".to_owned())),
                    many => {
                        return Err(Error::Invalid(format!(
                            "several canaries soak ({}): name the version",
                            many.join(", ")
                        )));
                    }
                },
            };
            patch_policy(client, ns, json!({"spec": {"canary": {"skipSoak": version}}})).await?;
            Ok(format!("spec.canary.skipSoak set to {version}: the leader ends its soak and grants it to the rest\n"))
        }
        Command::OptOut { node } => opt(client, &node, true).await,
        Command::OptIn { node } => opt(client, &node, false).await,
    }
}

/// Everything the leader reads, read once.
async fn snapshot(client: &Client, ns: &str) -> Result<crate::plan::Snapshot, Error> {
    let policy = policy(client, ns).await?;
    let selector = crate::plan::defaults(&policy).map_err(Error::Invalid)?.node_selector;
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let leases = leases.list(&ListParams::default()).await.map_err(|e| err(e, "list", "leases", ns))?.items;
    let shadows: Api<BottlerocketShadow> = Api::namespaced(client.clone(), ns);
    let shadows = shadows
        .list(&ListParams::default())
        .await
        .map_err(|e| err(e, "list", "bottlerocketshadows.brupop.bottlerocket.aws", ns))?
        .items;
    let nodes: Api<Node> = Api::all(client.clone());
    let managed =
        nodes.list(&ListParams::default().labels(&selector)).await.map_err(|e| err(e, "list", "nodes", ""))?.items;
    let all_nodes = nodes
        .list_metadata(&ListParams::default())
        .await
        .map_err(|e| err(e, "list", "nodes", ""))?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    Ok(crate::plan::Snapshot { policy, leases, shadows, managed, all_nodes })
}

/// The UpdatePolicy `default`, or why it cannot be read.
async fn policy(client: &Client, ns: &str) -> Result<UpdatePolicy, Error> {
    let api: Api<UpdatePolicy> = Api::namespaced(client.clone(), ns);
    match api.get(names::POLICY_NAME).await {
        Ok(p) => Ok(p),
        // The object is missing (the answer names it), or the whole API.
        Err(kube::Error::Api(s)) if s.is_not_found() && s.details.as_ref().is_some_and(|d| !d.name.is_empty()) => {
            Err(Error::NoPolicy { namespace: ns.to_owned() })
        }
        Err(e) => Err(err(e, "get", "updatepolicies.brupop.bottlerocket.aws", ns)),
    }
}

async fn patch_policy(client: &Client, ns: &str, patch: serde_json::Value) -> Result<(), Error> {
    let api: Api<UpdatePolicy> = Api::namespaced(client.clone(), ns);
    api.patch(names::POLICY_NAME, &PatchParams::apply(MANAGER), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| err(e, "patch", "updatepolicies.brupop.bottlerocket.aws", ns))
}

/// Sets or removes a node's opt-out annotation.
async fn opt(client: &Client, node: &str, out: bool) -> Result<String, Error> {
    let api: Api<Node> = Api::all(client.clone());
    let Some(n) = api.get_opt(node).await.map_err(|e| err(e, "get", "nodes", ""))? else {
        return Err(Error::UnknownNode(node.to_owned()));
    };
    let managed = n.metadata.labels.as_ref().and_then(|l| l.get(names::NODE_OPT_IN_LABEL)).map(String::as_str)
        == Some(names::NODE_OPT_IN_VALUE);
    let was = model::objects::opted_out(&n);
    let note = if managed {
        String::new()
    } else {
        format!(
            " (note: the node lacks {}={}, so the operator does not manage it)",
            names::NODE_OPT_IN_LABEL,
            names::NODE_OPT_IN_VALUE
        )
    };
    if was == out {
        let state = if out { "already opted out" } else { "not opted out" };
        return Ok(format!("node {node}: {state}: nothing changed{note}\n"));
    }
    let value = if out { json!("true") } else { serde_json::Value::Null };
    let patch = json!({"metadata": {"annotations": {names::NODE_OPT_OUT_ANNOTATION: value}}});
    api.patch(node, &PatchParams::apply(MANAGER), &Patch::Merge(&patch))
        .await
        .map_err(|e| err(e, "patch", "nodes", ""))?;
    Ok(if out {
        format!(
            "node {node}: opted out ({}=true): no new update starts on it; one under way finishes{note}\n",
            names::NODE_OPT_OUT_ANNOTATION
        )
    } else {
        format!("node {node}: opted in again ({} removed){note}\n", names::NODE_OPT_OUT_ANNOTATION)
    })
}

/// An Event as a history line: Events about the UpdatePolicy and the shadows.
fn entry(e: Event) -> Option<HistoryEntry> {
    let regarding = e.regarding.as_ref()?;
    let about = match regarding.kind.as_deref()? {
        "UpdatePolicy" => format!("UpdatePolicy/{}", regarding.name.as_deref().unwrap_or_default()),
        "BottlerocketShadow" => format!("node/{}", names::node_of_shadow(regarding.name.as_deref()?)?),
        _ => return None,
    };
    let time = e
        .event_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.deprecated_last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
    Some(HistoryEntry { time, about, reason: e.reason.unwrap_or_default(), message: e.note.unwrap_or_default() })
}

/// An API error as a person's error: refused (which verb on which
/// resource), not installed, or as it came.
fn err(e: kube::Error, verb: &'static str, resource: &'static str, ns: &str) -> Error {
    if let kube::Error::Api(s) = &e {
        if s.code == 403 {
            let scope = if ns.is_empty() { String::new() } else { format!(" in namespace {ns}") };
            return Error::Forbidden { verb, resource, scope, message: s.message.clone() };
        }
        if s.code == 404 && resource.contains('.') && !resource.starts_with("events") {
            return Error::NotInstalled { resource: resource.to_owned() };
        }
    }
    Error::Api { verb, resource, source: e }
}
