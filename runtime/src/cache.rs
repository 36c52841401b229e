//! The one rule that keeps a cache fed by a watch *and* by the answers to
//! one's own requests from going back in time.
//!
//! The answer to a write (or a read) carries the object's version X at that
//! moment. It may arrive before the watch delivers X, and the watch may
//! first deliver older changes (made by others before the request): storing
//! those would undo the write in the cache for a moment, and a decision
//! taken then would act on a picture older than one's own writes (a second
//! grant of a slot just granted). It may also arrive *after* the watch
//! delivered X and newer versions: storing it then would go back.
//!
//! resourceVersion is opaque to clients: it may be compared for equality
//! only, never ordered. A watch delivers every change of an object in
//! order. So the rule remembers the last few versions the watch delivered
//! per object, and:
//!
//! - an answer whose version the watch already delivered is old news: not
//!   stored;
//! - otherwise it is stored, and the watch's events of that object are not
//!   stored until the one carrying its version arrives (those before it are
//!   older);
//! - a relist shows what is stored now and ends any wait;
//! - a delete ends any wait but keeps the versions the watch delivered, so
//!   an answer read before the delete (and arriving after it) cannot bring
//!   the deleted object back: nothing else would ever remove it again;
//! - as a safety net, a wait ends after [`GIVE_UP_AFTER`] events without the
//!   awaited version (it can only be missed if more than [`REMEMBERED`]
//!   changes came between the request and its answer).
//!
//! Versions are kept as 64-bit hashes: a few bytes per object at thousands
//! of objects.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// Versions delivered by the watch remembered per object.
pub const REMEMBERED: usize = 4;
/// Watch events of an object after which a wait for an answer's version ends.
pub const GIVE_UP_AFTER: u32 = 64;

/// Where a version of an object comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The answer to one's own request (a write, or a read).
    Answer,
    /// A watch event (`Apply`).
    Watch,
    /// A (re)list: the state as stored now.
    Relist,
}

#[derive(Debug, Default, Clone)]
struct Versions {
    /// The last versions the watch delivered, newest at `next - 1`.
    seen: [u64; REMEMBERED],
    next: usize,
    /// The version of an answer the watch has not delivered yet.
    awaiting: Option<u64>,
    /// Watch events refused while awaiting.
    refused: u32,
}

impl Versions {
    fn saw(&mut self, v: u64) {
        self.seen[self.next % REMEMBERED] = v;
        self.next += 1;
    }

    fn has_seen(&self, v: u64) -> bool {
        self.seen[..self.next.min(REMEMBERED)].contains(&v)
    }
}

fn hash(rv: &str) -> u64 {
    let mut h = DefaultHasher::new();
    rv.hash(&mut h);
    h.finish()
}

/// What the cache knows of the versions of its objects, by key.
#[derive(Debug)]
pub struct Freshness<K> {
    keys: HashMap<K, Versions>,
}

impl<K> Default for Freshness<K> {
    fn default() -> Self {
        Freshness { keys: HashMap::new() }
    }
}

impl<K: Eq + Hash + Clone> Freshness<K> {
    /// Whether the version `rv` of object `key`, from `source`, may replace
    /// what the cache holds. An object without a version is always stored.
    pub fn accept(&mut self, key: &K, rv: Option<&str>, source: Source) -> bool {
        let Some(v) = rv.map(hash) else {
            return true;
        };
        let entry = self.keys.entry(key.clone()).or_default();
        match source {
            Source::Relist => {
                *entry = Versions::default();
                entry.saw(v);
                true
            }
            Source::Answer => {
                if entry.has_seen(v) {
                    return false;
                }
                entry.awaiting = Some(v);
                entry.refused = 0;
                true
            }
            Source::Watch => {
                entry.saw(v);
                match entry.awaiting {
                    None => true,
                    Some(a) if a == v => {
                        entry.awaiting = None;
                        true
                    }
                    Some(_) => {
                        entry.refused += 1;
                        if entry.refused >= GIVE_UP_AFTER {
                            entry.awaiting = None;
                            return true;
                        }
                        false
                    }
                }
            }
        }
    }

    /// The object is gone (deleted, or left the watched set).
    pub fn forget(&mut self, key: &K) {
        self.keys.remove(key);
    }

    /// The watch delivered the object's deletion at version `rv`: answers
    /// carrying any version the watch delivered (before the delete, or the
    /// delete's own) are old news from now on; a new object under the same
    /// key brings versions of its own.
    pub fn deleted(&mut self, key: &K, rv: Option<&str>) {
        let entry = self.keys.entry(key.clone()).or_default();
        if let Some(v) = rv.map(hash) {
            entry.saw(v);
        }
        entry.awaiting = None;
        entry.refused = 0;
    }

    /// The objects matching `pred` were relisted into `fresh` (built with
    /// [`Source::Relist`]): what `fresh` knows replaces what was known.
    pub fn relisted(&mut self, pred: impl Fn(&K) -> bool, fresh: Freshness<K>) {
        self.keys.retain(|k, _| !pred(k));
        self.keys.extend(fresh.keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_watch_events_do_not_undo_an_answer_until_the_watch_catches_up() {
        let mut f = Freshness::default();
        assert!(f.accept(&"a", Some("7"), Source::Watch), "nothing awaited: the watch is followed");
        assert!(f.accept(&"a", Some("12"), Source::Answer));
        assert!(!f.accept(&"a", Some("9"), Source::Watch), "a change made before our write");
        assert!(!f.accept(&"a", Some("10"), Source::Watch));
        assert!(f.accept(&"a", Some("12"), Source::Watch), "the echo of our write");
        assert!(f.accept(&"a", Some("13"), Source::Watch), "then every later change");
    }

    #[test]
    fn an_answer_the_watch_already_delivered_is_old_news() {
        // The watch brought our write (12) and a newer change (13) before the
        // write's answer arrived: storing the answer would go back.
        let mut f = Freshness::default();
        assert!(f.accept(&"a", Some("12"), Source::Watch));
        assert!(f.accept(&"a", Some("13"), Source::Watch));
        assert!(!f.accept(&"a", Some("12"), Source::Answer));
        assert!(f.accept(&"a", Some("14"), Source::Watch), "nothing is awaited");
    }

    #[test]
    fn versions_are_compared_for_equality_only() {
        // Opaque versions: "100" is not taken for newer than "99".
        let mut f = Freshness::default();
        f.accept(&"a", Some("99"), Source::Answer);
        assert!(!f.accept(&"a", Some("100"), Source::Watch));
        assert!(f.accept(&"a", Some("99"), Source::Watch));
    }

    #[test]
    fn a_relist_or_a_delete_ends_the_wait() {
        let mut f = Freshness::default();
        f.accept(&"a", Some("5"), Source::Answer);
        f.accept(&"b", Some("6"), Source::Answer);
        assert!(f.accept(&"a", Some("8"), Source::Relist));
        assert!(f.accept(&"a", Some("9"), Source::Watch));
        f.forget(&"b");
        assert!(f.accept(&"b", Some("3"), Source::Watch));
        f.accept(&"c", Some("5"), Source::Answer);
        let mut fresh = Freshness::default();
        fresh.accept(&"c", Some("6"), Source::Relist);
        f.relisted(|k| *k == "c", fresh);
        assert!(f.accept(&"c", Some("7"), Source::Watch));
        assert!(!f.accept(&"c", Some("6"), Source::Answer), "the relist delivered it");
    }

    #[test]
    fn an_answer_read_before_a_delete_does_not_bring_the_object_back() {
        let mut f = Freshness::default();
        assert!(f.accept(&"a", Some("7"), Source::Watch));
        f.deleted(&"a", Some("8"));
        // A request that read version 7 before the delete answers after it.
        assert!(!f.accept(&"a", Some("7"), Source::Answer));
        assert!(!f.accept(&"a", Some("8"), Source::Answer));
        // A new object under the same name is followed as usual.
        assert!(f.accept(&"a", Some("20"), Source::Watch));
        assert!(f.accept(&"a", Some("21"), Source::Answer));
    }

    #[test]
    fn a_wait_for_a_version_the_watch_never_brings_ends() {
        let mut f = Freshness::default();
        f.accept(&"a", Some("x"), Source::Answer);
        for i in 0..GIVE_UP_AFTER - 1 {
            assert!(!f.accept(&"a", Some(&format!("v{i}")), Source::Watch));
        }
        assert!(f.accept(&"a", Some("last"), Source::Watch));
        assert!(f.accept(&"a", Some("later"), Source::Watch));
    }

    #[test]
    fn keys_are_independent_and_unversioned_objects_are_stored() {
        let mut f = Freshness::default();
        f.accept(&"a", Some("5"), Source::Answer);
        assert!(f.accept(&"b", Some("4"), Source::Watch));
        assert!(f.accept(&"a", None, Source::Watch));
    }
}
