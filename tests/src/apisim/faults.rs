//! Fault injection and the request log.
//!
//! ```ignore
//! use tests::apisim::{ApiSim, FaultMatch};
//! let sim = ApiSim::start().await?;
//! // The agent's next two Lease updates fail with 503:
//! sim.faults().fail_next(FaultMatch::new().verb("update").resource("leases")
//!     .user("system:serviceaccount:ns:agent"), 2, 503);
//! // Every eviction takes 200 ms longer:
//! sim.faults().delay(FaultMatch::new().resource("pods/eviction"), Duration::from_millis(200));
//! // A node's agent loses the network, then gets it back:
//! sim.faults().partition_user("system:serviceaccount:ns:agent");
//! sim.faults().heal_user("system:serviceaccount:ns:agent");
//! // Every watch stream ends now (clients re-watch):
//! sim.faults().close_all_watches();
//! let stats = sim.request_log();
//! println!("{} writes", stats.writes());
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::store::Store;

/// Which requests a fault applies to; unset fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultMatch {
    verb: Option<String>,
    resource: Option<String>,
    user: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
}

impl FaultMatch {
    pub fn new() -> FaultMatch {
        FaultMatch::default()
    }
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub fn verb(mut self, v: &str) -> Self {
        self.verb = Some(v.to_owned());
        self
    }
    /// A resource, optionally with its subresource: `leases`, `pods/eviction`, `bottlerocketshadows/status`.
    pub fn resource(mut self, r: &str) -> Self {
        self.resource = Some(r.to_owned());
        self
    }
    /// A user name, e.g. `system:serviceaccount:ns:agent` or `admin`.
    pub fn user(mut self, u: &str) -> Self {
        self.user = Some(u.to_owned());
        self
    }
    pub fn namespace(mut self, n: &str) -> Self {
        self.namespace = Some(n.to_owned());
        self
    }
    pub fn name(mut self, n: &str) -> Self {
        self.name = Some(n.to_owned());
        self
    }

    pub(crate) fn matches(&self, r: &RequestInfo) -> bool {
        let ok = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        ok(&self.verb, &r.verb)
            && ok(&self.resource, &r.resource)
            && ok(&self.user, &r.user)
            && ok(&self.namespace, &r.namespace)
            && ok(&self.name, &r.name)
    }
}

/// What the log and the faults know about a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub verb: String,
    /// `resource` or `resource/subresource`; for non-resource paths, the path.
    pub resource: String,
    pub user: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug)]
struct FailRule {
    matcher: FaultMatch,
    remaining: u32,
    code: u16,
}

#[derive(Debug, Default)]
struct FaultState {
    fails: Vec<FailRule>,
    delays: Vec<(FaultMatch, Duration)>,
    partitioned: BTreeSet<String>,
}

/// What the server does to a request because of a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Proceed,
    /// Answer with this HTTP status (a `Status` body).
    Fail(u16),
    /// Drop the connection without an answer (a network partition).
    Drop,
}

/// Fault injection for one simulator. Cheap to call from tests at any time.
#[derive(Debug)]
pub struct Faults {
    state: Mutex<FaultState>,
    store: Weak<Store>,
}

impl Faults {
    pub(crate) fn new(store: &Arc<Store>) -> Faults {
        Faults { state: Mutex::new(FaultState::default()), store: Arc::downgrade(store) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next `n` requests matching `m` fail with HTTP `code` (a `Status`
    /// with the usual reason for that code).
    pub fn fail_next(&self, m: FaultMatch, n: u32, code: u16) {
        self.state().fails.push(FailRule { matcher: m, remaining: n, code });
    }

    /// Requests matching `m` are answered `d` later (cumulative with other delays).
    pub fn delay(&self, m: FaultMatch, d: Duration) {
        self.state().delays.push((m, d));
    }

    /// Removes every delay.
    pub fn clear_delays(&self) {
        self.state().delays.clear();
    }

    /// Every request of `user` is dropped without an answer (the connection
    /// closes), and its watches end, until [`Faults::heal_user`].
    pub fn partition_user(&self, user: &str) {
        self.state().partitioned.insert(user.to_owned());
        if let Some(store) = self.store.upgrade() {
            store.lock().close_watches(&|u| u == user);
        }
    }

    pub fn heal_user(&self, user: &str) {
        self.state().partitioned.remove(user);
    }

    /// Ends every open watch stream now (clients see the stream end and
    /// re-watch, like after an API server restart or a load balancer reset).
    pub fn close_all_watches(&self) -> usize {
        self.store.upgrade().map_or(0, |s| s.lock().close_watches(&|_| true))
    }

    /// Clears every fault.
    pub fn reset(&self) {
        *self.state() = FaultState::default();
    }

    /// Decides about one request (consumes one use of a matching fail rule).
    pub(crate) fn check(&self, r: &RequestInfo) -> (Verdict, Duration) {
        let mut st = self.state();
        let delay = st.delays.iter().filter(|(m, _)| m.matches(r)).map(|(_, d)| *d).sum();
        if st.partitioned.contains(&r.user) {
            return (Verdict::Drop, delay);
        }
        if let Some(rule) = st.fails.iter_mut().find(|f| f.remaining > 0 && f.matcher.matches(r)) {
            rule.remaining -= 1;
            let code = rule.code;
            st.fails.retain(|f| f.remaining > 0);
            return (Verdict::Fail(code), delay);
        }
        (Verdict::Proceed, delay)
    }
}

/// One logged request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub info: RequestInfo,
    pub code: u16,
}

/// Counts of requests by (verb, resource, user): a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// (verb, resource, user) → count.
    pub counts: BTreeMap<(String, String, String), u64>,
    /// Requests answered with an error status, same key.
    pub errors: BTreeMap<(String, String, String), u64>,
}

const WRITE_VERBS: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

impl RequestStats {
    fn sum(&self, f: impl Fn(&str, &str, &str) -> bool) -> u64 {
        self.counts.iter().filter(|((v, r, u), _)| f(v, r, u)).map(|(_, n)| n).sum()
    }
    pub fn total(&self) -> u64 {
        self.sum(|_, _, _| true)
    }
    /// Requests with this verb on this resource (`pods/eviction`, `leases`, ...), any user.
    pub fn count(&self, verb: &str, resource: &str) -> u64 {
        self.sum(|v, r, _| v == verb && r == resource)
    }
    /// Requests with this verb on this resource by this user.
    pub fn count_by(&self, verb: &str, resource: &str, user: &str) -> u64 {
        self.sum(|v, r, u| v == verb && r == resource && u == user)
    }
    pub fn by_verb(&self, verb: &str) -> u64 {
        self.sum(|v, _, _| v == verb)
    }
    pub fn by_resource(&self, resource: &str) -> u64 {
        self.sum(|_, r, _| r == resource)
    }
    pub fn by_user(&self, user: &str) -> u64 {
        self.sum(|_, _, u| u == user)
    }
    /// create + update + patch + delete + deletecollection.
    pub fn writes(&self) -> u64 {
        self.sum(|v, _, _| WRITE_VERBS.contains(&v))
    }
    pub fn writes_by_user(&self, user: &str) -> u64 {
        self.sum(|v, _, u| u == user && WRITE_VERBS.contains(&v))
    }
    /// The difference `self - earlier` (for measuring one phase of a test).
    pub fn since(&self, earlier: &RequestStats) -> RequestStats {
        let sub = |a: &BTreeMap<(String, String, String), u64>, b: &BTreeMap<(String, String, String), u64>| {
            a.iter()
                .filter_map(|(k, n)| {
                    let d = n.saturating_sub(*b.get(k).unwrap_or(&0));
                    (d > 0).then(|| (k.clone(), d))
                })
                .collect()
        };
        RequestStats { counts: sub(&self.counts, &earlier.counts), errors: sub(&self.errors, &earlier.errors) }
    }
}

/// The request log: counts plus the most recent requests.
#[derive(Debug)]
pub struct RequestLog {
    inner: Mutex<(RequestStats, VecDeque<LoggedRequest>)>,
    keep: usize,
}

impl RequestLog {
    pub fn new(keep: usize) -> RequestLog {
        RequestLog { inner: Mutex::new((RequestStats::default(), VecDeque::new())), keep }
    }

    pub fn record(&self, info: RequestInfo, code: u16) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let key = (info.verb.clone(), info.resource.clone(), info.user.clone());
        *g.0.counts.entry(key.clone()).or_default() += 1;
        if code >= 400 {
            *g.0.errors.entry(key).or_default() += 1;
        }
        if self.keep > 0 {
            if g.1.len() >= self.keep {
                g.1.pop_front();
            }
            g.1.push_back(LoggedRequest { info, code });
        }
    }

    pub fn stats(&self) -> RequestStats {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    pub fn recent(&self) -> Vec<LoggedRequest> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).1.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(verb: &str, resource: &str, user: &str) -> RequestInfo {
        RequestInfo { verb: verb.into(), resource: resource.into(), user: user.into(), ..RequestInfo::default() }
    }

    #[test]
    fn fail_next_counts_down_and_partition_drops() {
        let store = Arc::new(Store::new(Vec::new(), 10));
        let f = Faults::new(&store);
        f.fail_next(FaultMatch::new().verb("update").resource("leases").user("u"), 2, 503);
        assert_eq!(f.check(&req("update", "leases", "other")).0, Verdict::Proceed);
        assert_eq!(f.check(&req("update", "leases", "u")).0, Verdict::Fail(503));
        assert_eq!(f.check(&req("get", "leases", "u")).0, Verdict::Proceed);
        assert_eq!(f.check(&req("update", "leases", "u")).0, Verdict::Fail(503));
        assert_eq!(f.check(&req("update", "leases", "u")).0, Verdict::Proceed);
        f.partition_user("u");
        assert_eq!(f.check(&req("get", "pods", "u")).0, Verdict::Drop);
        f.heal_user("u");
        assert_eq!(f.check(&req("get", "pods", "u")).0, Verdict::Proceed);
        f.delay(FaultMatch::new().resource("pods"), Duration::from_millis(5));
        assert_eq!(f.check(&req("get", "pods", "u")).1, Duration::from_millis(5));
    }

    #[test]
    fn stats_sum_by_key() {
        let log = RequestLog::new(2);
        log.record(req("update", "leases", "a"), 200);
        log.record(req("get", "leases", "a"), 200);
        log.record(req("create", "pods/eviction", "b"), 429);
        let s = log.stats();
        assert_eq!((s.total(), s.writes(), s.count("create", "pods/eviction"), s.by_user("a")), (3, 2, 1, 2));
        assert_eq!(s.errors.len(), 1);
        assert_eq!(log.recent().len(), 2);
        let before = s.clone();
        log.record(req("update", "leases", "a"), 200);
        assert_eq!(log.stats().since(&before).total(), 1);
    }
}
