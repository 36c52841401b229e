//! The walk's reboot hooks on its Node, as pure functions like
//! [`crate::cordon`]: each returns the merge patch to send (or `None`) and
//! what the Node will show. The authproxy applies them for an agent, with
//! the hook its shadow's grant names (`spec.walk.hooks`), never marks the
//! agent chose.
//!
//! What a hook set is listed in [`HOOKS_ANNOTATION`] (with the hook's phase
//! and start time), so [`clear`] removes exactly that, and a restarted
//! agent knows a hook ran and when its wait began. A label or annotation
//! already on the Node is left alone and not listed: clearing never removes
//! what someone else set. The annotation a hook waits for is removed when
//! the hook's marks are set, so only a confirmation given after them counts.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cordon::PatchBuilder;
use crate::names::HOOKS_ANNOTATION;
use crate::walk::{HookPhase, HookSpec};
use crate::wire::HookReply;

/// What [`HOOKS_ANNOTATION`] records.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Marks {
    /// The last hook that ran.
    #[serde(default)]
    pub phase: Option<HookPhase>,
    /// When it ran: its wait counts from here.
    #[serde(default)]
    pub since: Option<Timestamp>,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub annotations: Vec<String>,
}

/// The hook marks on `node`: `None` without the annotation; a value that
/// does not read gives empty marks (still to be cleared).
pub fn marks(node: &Node) -> Option<Marks> {
    let v = node.metadata.annotations.as_ref()?.get(HOOKS_ANNOTATION)?;
    Some(serde_json::from_str(v).unwrap_or_default())
}

fn reply(m: Option<&Marks>, changed: bool) -> HookReply {
    HookReply { phase: m.and_then(|m| m.phase), since: m.and_then(|m| m.since), changed }
}

/// The marks on `node` as a reply that changes nothing.
pub fn marks_reply(node: &Node) -> HookReply {
    reply(marks(node).as_ref(), false)
}

/// Runs the hook of `phase`: sets its labels and annotations that are not
/// on the Node yet, removes the annotation it waits for, records them.
/// Nothing changes if this phase already ran (a retry, or a restarted
/// agent): its wait keeps its start and a confirmation given meanwhile.
pub fn apply(node: &Node, phase: HookPhase, hook: &HookSpec, now: Timestamp) -> (Option<Value>, HookReply) {
    let current = marks(node);
    if current.as_ref().is_some_and(|m| m.phase == Some(phase)) {
        return (None, reply(current.as_ref(), false));
    }
    let mut m = current.unwrap_or_default();
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let annotations = node.metadata.annotations.clone().unwrap_or_default();
    let mut p = PatchBuilder::new();
    for (k, v) in &hook.labels {
        if !labels.contains_key(k) {
            p.labels.insert(k.clone(), json!(v));
            m.labels.push(k.clone());
        }
    }
    for (k, v) in &hook.annotations {
        if !annotations.contains_key(k) {
            p.annotations.insert(k.clone(), json!(v));
            m.annotations.push(k.clone());
        }
    }
    if let Some(k) = &hook.wait_for_annotation
        && annotations.contains_key(k)
        && !m.annotations.contains(k)
    {
        p.annotations.insert(k.clone(), Value::Null);
    }
    m.phase = Some(phase);
    m.since = Some(now);
    p.annotations.insert(HOOKS_ANNOTATION.into(), json!(serde_json::to_string(&m).unwrap_or_default()));
    (p.build(node), reply(Some(&m), true))
}

/// Removes every mark the hooks set, and the record of them.
pub fn clear(node: &Node) -> (Option<Value>, HookReply) {
    let Some(m) = marks(node) else {
        return (None, reply(None, false));
    };
    let mut p = PatchBuilder::new();
    for k in &m.labels {
        p.labels.insert(k.clone(), Value::Null);
    }
    for k in &m.annotations {
        p.annotations.insert(k.clone(), Value::Null);
    }
    p.annotations.insert(HOOKS_ANNOTATION.into(), Value::Null);
    (p.build(node), reply(None, true))
}

/// Whether the confirmation `hook` waits for is on `node` (true when it waits for none).
pub fn confirmed(annotations: &std::collections::BTreeMap<String, String>, hook: &HookSpec) -> bool {
    match &hook.wait_for_annotation {
        None => true,
        Some(k) => annotations.get(k).is_some_and(|v| hook.wait_for_value.as_ref().is_none_or(|want| v == want)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn node(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Node {
        let map = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
        };
        let mut n = Node::default();
        n.metadata.resource_version = Some("7".into());
        n.metadata.labels = Some(map(labels));
        n.metadata.annotations = Some(map(annotations));
        n
    }

    /// `node` after `patch` (a merge patch of labels and annotations).
    fn patched(node: &Node, patch: &Value) -> Node {
        let mut n = node.clone();
        for (field, map) in [("labels", &mut n.metadata.labels), ("annotations", &mut n.metadata.annotations)] {
            let m = map.get_or_insert_with(BTreeMap::new);
            for (k, v) in patch["metadata"][field].as_object().cloned().unwrap_or_default() {
                match v.as_str() {
                    Some(s) => m.insert(k, s.to_owned()),
                    None => m.remove(&k),
                };
            }
        }
        n
    }

    fn hook() -> HookSpec {
        HookSpec {
            labels: [("storage.example.com/maintenance".to_owned(), "true".to_owned())].into(),
            annotations: [("storage.example.com/reason".to_owned(), "os-update".to_owned())].into(),
            wait_for_annotation: Some("storage.example.com/noout".into()),
            wait_for_value: Some("set".into()),
            timeout: None,
        }
    }

    #[test]
    fn a_hook_sets_its_marks_clears_a_stale_confirmation_and_clear_removes_only_its_own() {
        let t0: Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
        let before = node(
            &[("team", "a")],
            &[("storage.example.com/noout", "set"), ("storage.example.com/reason", "a person's")],
        );
        let (patch, r) = apply(&before, HookPhase::BeforeDrain, &hook(), t0);
        let patch = patch.unwrap();
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        assert!(r.changed && r.phase == Some(HookPhase::BeforeDrain) && r.since == Some(t0));
        let after = patched(&before, &patch);
        let a = after.metadata.annotations.clone().unwrap();
        assert!(!a.contains_key("storage.example.com/noout"), "a stale confirmation is removed");
        assert_eq!(a["storage.example.com/reason"], "a person's", "an annotation already there is left alone");
        assert_eq!(after.metadata.labels.as_ref().unwrap()["storage.example.com/maintenance"], "true");
        assert!(!confirmed(&a, &hook()));
        // Confirmed by the storage system; a retry changes nothing, keeping it.
        let mut confirmed_node = after.clone();
        confirmed_node.metadata.annotations.as_mut().unwrap().insert("storage.example.com/noout".into(), "set".into());
        let later: Timestamp = "2026-12-07T10:01:00Z".parse().unwrap();
        let (again, r) = apply(&confirmed_node, HookPhase::BeforeDrain, &hook(), later);
        assert!(again.is_none() && !r.changed && r.since == Some(t0), "{r:?}");
        assert!(confirmed(confirmed_node.metadata.annotations.as_ref().unwrap(), &hook()));
        // Clear removes the label the hook set and the record, nothing else.
        let (clear_patch, r) = clear(&confirmed_node);
        let cleared = patched(&confirmed_node, &clear_patch.unwrap());
        assert!(r.changed && r.phase.is_none());
        assert_eq!(cleared.metadata.labels.clone().unwrap(), [("team".to_owned(), "a".to_owned())].into());
        let a = cleared.metadata.annotations.clone().unwrap();
        assert!(!a.contains_key(HOOKS_ANNOTATION));
        assert_eq!(a["storage.example.com/reason"], "a person's");
        assert_eq!(a["storage.example.com/noout"], "set", "another system's annotation stays");
        assert_eq!(clear(&cleared).0, None, "nothing left to clear");
    }

    #[test]
    fn the_next_phase_adds_its_marks_to_the_record() {
        let t0: Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
        let n = node(&[], &[]);
        let n = patched(&n, &apply(&n, HookPhase::BeforeDrain, &hook(), t0).0.unwrap());
        let after_reboot =
            HookSpec { labels: [("x/rebooted".to_owned(), "yes".to_owned())].into(), ..HookSpec::default() };
        let n = patched(&n, &apply(&n, HookPhase::AfterReboot, &after_reboot, t0).0.unwrap());
        let m = marks(&n).unwrap();
        assert_eq!(m.phase, Some(HookPhase::AfterReboot));
        assert_eq!(m.labels, vec!["storage.example.com/maintenance".to_owned(), "x/rebooted".to_owned()]);
        assert!(confirmed(&BTreeMap::new(), &after_reboot), "no wait");
    }

    #[test]
    fn an_unreadable_record_is_still_cleared() {
        let n = node(&[], &[(HOOKS_ANNOTATION, "{not json")]);
        assert_eq!(marks(&n), Some(Marks::default()));
        assert!(clear(&n).0.is_some());
    }
}
