//! Small helpers: clocks, identifiers and JSON access used by every module.

use serde_json::{Map, Value};

/// Now, as the API server writes timestamps (RFC 3339, whole seconds, UTC).
pub fn now_rfc3339() -> String {
    time_rfc3339(jiff::Timestamp::now())
}

pub fn time_rfc3339(t: jiff::Timestamp) -> String {
    // Truncate to seconds like metav1.Time.
    let secs = t.as_second();
    jiff::Timestamp::from_second(secs).unwrap_or(t).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Now with microseconds, like metav1.MicroTime.
pub fn now_micro() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // getrandom only fails when the OS has no entropy source; fall back to a
    // time-seeded value rather than panicking (ids stay unique enough for tests).
    if getrandom::fill(&mut b).is_err() {
        let seed = jiff::Timestamp::now().as_nanosecond() as u128;
        for (i, x) in b.iter_mut().enumerate() {
            *x = (seed >> ((i % 16) * 8)) as u8 ^ (i as u8);
        }
    }
    b
}

/// A random (version 4) UUID.
pub fn uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The 5-character suffix of `generateName`, from the same alphabet as Kubernetes.
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    random_bytes::<5>().iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// URL-safe random token text.
pub fn random_token(bytes: usize) -> String {
    use base64::Engine;
    let mut buf = vec![0u8; bytes];
    for chunk in buf.chunks_mut(32) {
        let r = random_bytes::<32>();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// `value[a][b]...` for a dotted path of object keys.
pub fn get_path<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, k| v.get(*k))
}

pub fn get_str<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    get_path(value, path).and_then(Value::as_str)
}

/// The object map at `value[key]`, created (or replaced if not an object) on demand.
pub fn obj_mut<'a>(value: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    let Value::Object(map) = value else { unreachable!("just made an object") };
    let entry = map.entry(key.to_owned()).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    match entry {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// `metadata` of an object, created on demand.
pub fn meta_mut(value: &mut Value) -> &mut Map<String, Value> {
    obj_mut(value, "metadata")
}

/// `metadata` of an object as a value (an object), created on demand.
pub fn meta_mut_value(value: &mut Value) -> &mut Value {
    obj_mut(value, "metadata");
    match value.get_mut("metadata") {
        Some(m) => m,
        None => unreachable!("just created"),
    }
}

/// The JSON type name as Kubernetes' OpenAPI validation words it.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Validates a DNS-1123 subdomain (most object names).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !p.starts_with('-')
                && !p.ends_with('-')
        })
}

/// Validates a DNS-1123 label (namespace names).
pub fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && !s.contains('.') && is_dns_subdomain(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_look_like_uuids() {
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(uuid(), u);
    }

    #[test]
    fn names() {
        assert!(is_dns_subdomain("a.b-c.d"));
        assert!(!is_dns_subdomain("Bad_Name"));
        assert!(!is_dns_label("a.b"));
        assert_eq!(name_suffix().len(), 5);
        assert!(now_rfc3339().ends_with('Z'));
    }
}
