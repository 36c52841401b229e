//! A small cache of authorization results, so a busy fleet does not cost one
//! TokenReview (and one pod lookup) per request.
//!
//! Keyed by the SHA-256 of the whole token: one token's result can never
//! serve another. Bounded in size (the oldest entry is dropped first), and an
//! entry never outlives its token: its expiry is the earlier of `ttl` and the
//! token's own `exp` claim when the token is a JWT. The authproxy keeps one
//! cache of successes (used only while the token's pod lives) and one of
//! refusals (short-lived).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;

type Key = [u8; 32];

fn key(token: &str) -> Key {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut k = [0u8; 32];
    k.copy_from_slice(digest.as_ref());
    k
}

/// The `exp` claim of a JWT, unverified (only used to cap cache life).
pub fn jwt_expiry(token: &str) -> Option<SystemTime> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_u64()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(exp))
}

#[derive(Debug)]
struct Inner<V> {
    map: HashMap<Key, (V, Instant)>,
    order: VecDeque<Key>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct TokenCache<V> {
    inner: Mutex<Inner<V>>,
    capacity: usize,
    ttl: Duration,
}

impl<V: Clone> TokenCache<V> {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        TokenCache { inner: Mutex::new(Inner { map: HashMap::new(), order: VecDeque::new() }), capacity, ttl }
    }

    /// The cached result for `token`, if present and not expired at `now`.
    pub fn get(&self, token: &str, now: Instant) -> Option<V> {
        let k = key(token);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match inner.map.get(&k) {
            Some((v, until)) if *until > now => Some(v.clone()),
            Some(_) => {
                inner.map.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Caches `value` for `token` until the earlier of `now + ttl` and the token's expiry.
    pub fn insert(&self, token: &str, value: V, now: Instant, wall_now: SystemTime) {
        if self.capacity == 0 || self.ttl.is_zero() {
            return;
        }
        let mut life = self.ttl;
        if let Some(exp) = jwt_expiry(token) {
            life = life.min(exp.duration_since(wall_now).unwrap_or(Duration::ZERO));
        }
        if life.is_zero() {
            return;
        }
        let k = key(token);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.map.insert(k, (value, now + life)).is_none() {
            inner.order.push_back(k);
        }
        while inner.map.len() > self.capacity {
            let Some(oldest) = inner.order.pop_front() else { break };
            inner.map.remove(&oldest);
        }
        // Keep the order queue from growing with keys already dropped.
        if inner.order.len() > 2 * self.capacity {
            let Inner { map, order } = &mut *inner;
            order.retain(|k| map.contains_key(k));
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(exp: u64) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b64(r#"{"alg":"RS256"}"#), b64(&format!(r#"{{"exp":{exp},"sub":"x"}}"#)))
    }

    #[test]
    fn a_result_is_served_only_to_the_same_token() {
        let c = TokenCache::new(10, Duration::from_secs(30));
        let now = Instant::now();
        c.insert("token-a", "node-1", now, SystemTime::now());
        assert_eq!(c.get("token-a", now), Some("node-1"));
        assert_eq!(c.get("token-b", now), None);
        assert_eq!(c.get("token-a ", now), None);
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let c = TokenCache::new(10, Duration::from_secs(30));
        let now = Instant::now();
        c.insert("t", 1, now, SystemTime::now());
        assert_eq!(c.get("t", now + Duration::from_secs(29)), Some(1));
        assert_eq!(c.get("t", now + Duration::from_secs(30)), None);
    }

    #[test]
    fn an_entry_never_outlives_its_token() {
        let c = TokenCache::new(10, Duration::from_secs(300));
        let wall = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let now = Instant::now();
        c.insert(&jwt(1_000_010), 1, now, wall);
        assert_eq!(c.get(&jwt(1_000_010), now + Duration::from_secs(9)), Some(1));
        assert_eq!(c.get(&jwt(1_000_010), now + Duration::from_secs(10)), None);
        c.insert(&jwt(999_999), 2, now, wall);
        assert_eq!(c.get(&jwt(999_999), now), None, "an expired token is not cached");
    }

    #[test]
    fn with_the_shipped_cap_an_entry_lives_as_long_as_its_token() {
        // A projected token of an hour, checked when 10 minutes old.
        let c = TokenCache::new(10, Duration::from_secs(3600));
        let wall = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let now = Instant::now();
        let t = jwt(1_000_000 + 50 * 60);
        c.insert(&t, 1, now, wall);
        assert_eq!(c.get(&t, now + Duration::from_secs(49 * 60)), Some(1), "one review serves the token's life");
        assert_eq!(c.get(&t, now + Duration::from_secs(50 * 60)), None);
    }

    #[test]
    fn the_cache_is_bounded_dropping_the_oldest() {
        let c = TokenCache::new(3, Duration::from_secs(30));
        let now = Instant::now();
        for i in 0..5 {
            c.insert(&format!("t{i}"), i, now, SystemTime::now());
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("t0", now), None);
        assert_eq!(c.get("t4", now), Some(4));
    }

    #[test]
    fn jwt_expiry_is_read_and_garbage_is_not_a_jwt() {
        assert_eq!(jwt_expiry(&jwt(42)), Some(UNIX_EPOCH + Duration::from_secs(42)));
        assert_eq!(jwt_expiry("kts-sa.opaque"), None);
        assert_eq!(jwt_expiry("a.!!!.c"), None);
    }
}
