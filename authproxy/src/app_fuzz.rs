//! Fuzzing what the authproxy makes of a request's path and body (the part
//! of a request after the HTTP layer and before the cluster): for any path,
//! [`Endpoint::parse`] never panics and names a node only as the path
//! spells it; for any body, decoding and validating each endpoint's request
//! never panics, and a request that passes validation is one the wire
//! allows (slot names, durations, versions, sizes). Inputs are random bytes,
//! random JSON, and the corpus `authproxy/fuzz/wire` (real bodies) with
//! fields removed, replaced and bytes changed. More cases:
//! `PROPTEST_CASES=20000 cargo test -p authproxy fuzz` (CI runs that).

use model::wire::{
    CordonRequest, DrainRequest, Endpoint, HookRequest, MAX_BODY_BYTES, PREFIX, ReleaseSlot, RenewSlot, StatusReport,
    UncordonRequest,
};
use proptest::prelude::*;
use serde_json::Value;

/// The corpus: (file name, body).
fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/wire");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    assert!(out.len() >= 8, "the corpus in {} is missing", dir.display());
    out
}

/// Decodes and validates `body` as every endpoint's request would be;
/// returns the endpoints that accepted it. Never panics (the property).
fn accepted_by(body: &[u8]) -> Vec<&'static str> {
    fn ok<T: serde::de::DeserializeOwned>(body: &[u8], valid: impl Fn(&T) -> bool) -> bool {
        serde_json::from_slice::<T>(body).is_ok_and(|r| valid(&r))
    }
    let mut out = Vec::new();
    if ok::<StatusReport>(body, |r| r.validate().is_ok()) {
        out.push("status");
    }
    if ok::<RenewSlot>(body, |r| r.validate().is_ok()) {
        out.push("slot-renew");
    }
    if ok::<ReleaseSlot>(body, |r| r.validate().is_ok()) {
        out.push("slot-release");
    }
    if ok::<CordonRequest>(body, |r| r.validate().is_ok()) {
        out.push("cordon");
    }
    if ok::<DrainRequest>(body, |r| r.validate().is_ok()) {
        out.push("drain");
    }
    if ok::<HookRequest>(body, |r| r.validate().is_ok()) {
        out.push("hook");
    }
    if ok::<UncordonRequest>(body, |_| true) {
        out.push("uncordon");
    }
    out
}

/// What a validated request may hold, whatever the input was.
fn within_the_wire(body: &[u8]) -> Result<(), String> {
    let slot_ok = |s: &str| model::names::slot_index(s).is_some();
    if let Ok(r) = serde_json::from_slice::<RenewSlot>(body)
        && r.validate().is_ok()
        && (!slot_ok(&r.slot) || !(1..=86_400).contains(&r.duration_seconds))
    {
        return Err(format!("renew accepted {r:?}"));
    }
    if let Ok(r) = serde_json::from_slice::<StatusReport>(body)
        && r.validate().is_ok()
    {
        let versions = std::iter::once(&r.current_version).chain(r.target_version.as_ref());
        if versions.into_iter().any(|v| v.is_empty() || v.len() > 64) {
            return Err(format!("status accepted a version out of bounds: {r:?}"));
        }
        if r.failure.as_ref().is_some_and(|f| f.id == 0 || f.message.len() > model::wire::MAX_MESSAGE_LEN) {
            return Err(format!("status accepted a failure out of bounds: {r:?}"));
        }
        if r.pods_before_drain.as_ref().is_some_and(|p| p.len() > model::walk::RECORDED_PODS_MAX) {
            return Err("status accepted too many pods".into());
        }
    }
    if let Ok(r) = serde_json::from_slice::<DrainRequest>(body)
        && r.validate().is_ok()
        && (!slot_ok(&r.slot) || r.grace_period_seconds.is_some_and(|g| !(0..=86_400).contains(&g)))
    {
        return Err(format!("drain accepted {r:?}"));
    }
    Ok(())
}

/// JSON values of any shape, strings and numbers included at the edges.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,80}".prop_map(Value::String),
        prop_oneof![
            Just("brupop-slot-0"),
            Just("brupop-slot-99999999999999999999"),
            Just("1.21.0"),
            Just("ErrorReset")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,24}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A corpus body with one field removed or replaced by `value`, or bytes changed.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let corpus = corpus();
    let n = corpus.len();
    (
        0..n,
        any::<prop::sample::Index>(),
        json_value(),
        0u8..3,
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    )
        .prop_map(move |(i, at, value, how, flips)| {
            let body = &corpus[i].1;
            let mut v: Value = serde_json::from_slice(body).unwrap();
            if let Value::Object(m) = &mut v
                && !m.is_empty()
            {
                let key = m.keys().nth(at.index(m.len())).unwrap().clone();
                match how {
                    0 => {
                        m.remove(&key);
                    }
                    1 => {
                        m.insert(key, value);
                    }
                    _ => {
                        m.insert("extra".into(), value);
                    }
                }
            }
            let mut bytes = serde_json::to_vec(&v).unwrap();
            for (i, b) in flips {
                let at = i.index(bytes.len());
                bytes[at] = b;
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_any_path_parses_without_panic_and_names_only_what_it_spells(path in "(/v1/nodes/)?[a-z0-9./%-]{0,40}(/(status|slot/renew|drain|hook/clear|x))?") {
        if let Some((node, endpoint)) = Endpoint::parse(&path) {
            prop_assert!(!node.is_empty());
            prop_assert_eq!(endpoint.path(node), path.clone());
            prop_assert!(path.starts_with(PREFIX));
        }
    }

    #[test]
    fn fuzz_any_bytes_as_a_body_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = accepted_by(&bytes);
        within_the_wire(&bytes).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn fuzz_any_json_as_a_body_is_refused_or_within_the_wire(value in json_value()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        let _ = accepted_by(&bytes);
        within_the_wire(&bytes).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn fuzz_mutated_real_bodies_are_refused_or_within_the_wire(bytes in mutated()) {
        prop_assume!(bytes.len() <= MAX_BODY_BYTES);
        let _ = accepted_by(&bytes);
        within_the_wire(&bytes).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn every_corpus_body_is_accepted_by_its_endpoint() {
    for (name, body) in corpus() {
        let endpoint = match name.as_str() {
            "status" | "status-error" | "slot-request" => "status",
            other => other,
        };
        let accepted = accepted_by(&body);
        assert!(accepted.contains(&endpoint), "{name}: accepted by {accepted:?}");
        within_the_wire(&body).unwrap();
    }
}
