//! The update repository that simulated hosts refresh from.
//!
//! What this module does: holds the releases a host may install. One
//! repository can be shared by many hosts (a fleet), so a test can publish a
//! new release to every host mid-test; a host without a shared repository
//! gets a private one from its configured list.
//!
//! What it must not do: choose versions for a host (the state machine does,
//! from its `version-lock`) or model update waves.

use std::sync::{Arc, Mutex, PoisonError};

use super::machine::newest_first;

/// A shared, cheaply cloned set of released versions.
#[derive(Debug, Clone, Default)]
pub struct Repository {
    versions: Arc<Mutex<Vec<String>>>,
}

impl Repository {
    /// A repository holding `versions`.
    pub fn new<I, S>(versions: I) -> Repository
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let list: Vec<String> = versions.into_iter().map(Into::into).collect();
        Repository { versions: Arc::new(Mutex::new(newest_first(&list))) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Vec<String>) -> T) -> T {
        let mut guard = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// Publishes `version`: hosts see it at their next refresh.
    pub fn publish(&self, version: &str) {
        self.with(|list| {
            list.push(version.to_owned());
            *list = newest_first(list);
        });
    }

    /// Withdraws `version`: refreshes no longer list it, and a prepare of it
    /// fails.
    pub fn withdraw(&self, version: &str) {
        self.with(|list| list.retain(|v| v != version));
    }

    /// Every release, newest first.
    pub fn versions(&self) -> Vec<String> {
        self.with(|list| list.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishing_is_seen_by_every_clone_newest_first() {
        let repo = Repository::new(["1.20.0", "1.19.5"]);
        let other = repo.clone();
        repo.publish("1.21.0");
        repo.publish("1.21.0");
        assert_eq!(other.versions(), ["1.21.0", "1.20.0", "1.19.5"]);
        other.withdraw("1.20.0");
        assert_eq!(repo.versions(), ["1.21.0", "1.19.5"]);
    }
}
