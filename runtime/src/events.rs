//! Kubernetes Events (`events.k8s.io/v1`), published in the background.
//!
//! kube's `Recorder` keeps every Event it published for six minutes, to fold
//! repeats into a series, and scans that whole cache on every publish. This
//! project's Events are one per step of one node's update (granted,
//! cordoned, drained, uncordoned), never repeats: at thousands of nodes the
//! cache only grew the leader and the authproxy by tens of MiB and cost a
//! scan per Event. This publisher keeps nothing.
//!
//! An Event is never worth failing the work it describes: publishing runs
//! in its own task and a failure is logged at debug level only.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

/// The API server's limit on an Event's note, in bytes.
const NOTE_MAX: usize = 1024;

/// Normal or Warning, as `kubectl get events` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// Publishes Events as one controller instance.
#[derive(Clone)]
pub struct Events {
    client: kube::Client,
    controller: String,
    instance: String,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("controller", &self.controller).field("instance", &self.instance).finish()
    }
}

impl Events {
    /// `instance` defaults to the controller's name.
    pub fn new(client: kube::Client, controller: &str, instance: Option<String>) -> Self {
        let instance = instance.unwrap_or_else(|| controller.to_owned());
        Events { client, controller: controller.to_owned(), instance }
    }

    /// Publishes an Event about `regarding` in the background.
    pub fn publish(&self, regarding: ObjectReference, type_: EventType, reason: &str, action: &str, note: String) {
        let event = self.build(regarding, type_, reason, action, note, jiff::Timestamp::now());
        let ns = event.metadata.namespace.clone().unwrap_or_else(|| "default".to_owned());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        tokio::spawn(async move {
            if let Err(e) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(error = %e, "could not publish an Event");
            }
        });
    }

    /// The Event object: in the namespace of what it regards (`default` for
    /// cluster-scoped objects such as Nodes), named uniquely after it.
    pub fn build(
        &self,
        regarding: ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
        now: jiff::Timestamp,
    ) -> Event {
        let namespace = regarding.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".to_owned());
        let about = regarding.name.clone().unwrap_or_else(|| self.controller.clone());
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{about}.{:x}", now.as_nanosecond())),
                namespace: Some(namespace),
                ..Default::default()
            },
            action: Some(action.to_owned()),
            reason: Some(reason.to_owned()),
            note: Some(truncate(note, NOTE_MAX)),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(match type_ {
                EventType::Normal => "Normal".to_owned(),
                EventType::Warning => "Warning".to_owned(),
            }),
            ..Default::default()
        }
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> Events {
        // A client that is never called: building an Event needs no I/O.
        let cfg = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        Events::new(kube::Client::try_from(cfg).unwrap(), "brupop-leader", None)
    }

    #[tokio::test]
    async fn an_event_about_a_node_lives_in_default_and_names_its_reporter() {
        let node = ObjectReference { kind: Some("Node".into()), name: Some("n1".into()), ..Default::default() };
        let now: jiff::Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let e = events().build(node, EventType::Warning, "DrainBlocked", "Drain", "pdb".into(), now);
        assert_eq!(e.metadata.namespace.as_deref(), Some("default"));
        assert!(e.metadata.name.as_deref().unwrap().starts_with("n1."));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.reporting_controller.as_deref(), Some("brupop-leader"));
        assert_eq!(e.reporting_instance.as_deref(), Some("brupop-leader"));
        assert_eq!((e.reason.as_deref(), e.action.as_deref()), (Some("DrainBlocked"), Some("Drain")));
        assert!(e.event_time.is_some());
    }

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        let note = "é".repeat(600);
        let cut = truncate(note, NOTE_MAX);
        assert!(cut.len() <= NOTE_MAX);
        assert_eq!(cut.chars().count(), 512);
    }
}
