//! Just enough Kubernetes protobuf to read the bodies kubectl's typed
//! commands send (`create namespace|serviceaccount|configmap|secret|token`,
//! `drain`'s evictions): the `k8s\0` envelope (`runtime.Unknown`) and the
//! fields of those few kinds, turned into the JSON the rest of the server
//! handles. Field numbers are those of the `generated.proto` files of
//! k8s.io/api and k8s.io/apimachinery. Anything else is a 415.

use base64::Engine;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
    Msg(&'static [Field]),
    StrList,
    MsgList(&'static [Field]),
    StrMap,
    BytesMap,
}

#[derive(Debug, Clone, Copy)]
struct Field {
    num: u64,
    name: &'static str,
    kind: Kind,
}

const fn f(num: u64, name: &'static str, kind: Kind) -> Field {
    Field { num, name, kind }
}

const OWNER_REF: &[Field] = &[
    f(1, "kind", Kind::Str),
    f(3, "name", Kind::Str),
    f(4, "uid", Kind::Str),
    f(5, "apiVersion", Kind::Str),
    f(6, "controller", Kind::Bool),
    f(7, "blockOwnerDeletion", Kind::Bool),
];
const OBJECT_META: &[Field] = &[
    f(1, "name", Kind::Str),
    f(2, "generateName", Kind::Str),
    f(3, "namespace", Kind::Str),
    f(5, "uid", Kind::Str),
    f(6, "resourceVersion", Kind::Str),
    f(11, "labels", Kind::StrMap),
    f(12, "annotations", Kind::StrMap),
    f(13, "ownerReferences", Kind::MsgList(OWNER_REF)),
    f(14, "finalizers", Kind::StrList),
];
const PRECONDITIONS: &[Field] = &[f(1, "uid", Kind::Str), f(2, "resourceVersion", Kind::Str)];
const DELETE_OPTIONS: &[Field] = &[
    f(1, "gracePeriodSeconds", Kind::Int),
    f(2, "preconditions", Kind::Msg(PRECONDITIONS)),
    f(3, "orphanDependents", Kind::Bool),
    f(4, "propagationPolicy", Kind::Str),
    f(5, "dryRun", Kind::StrList),
];
const EVICTION: &[Field] =
    &[f(1, "metadata", Kind::Msg(OBJECT_META)), f(2, "deleteOptions", Kind::Msg(DELETE_OPTIONS))];
const BOUND_REF: &[Field] =
    &[f(1, "kind", Kind::Str), f(2, "apiVersion", Kind::Str), f(3, "name", Kind::Str), f(4, "uid", Kind::Str)];
const TOKEN_SPEC: &[Field] = &[
    f(1, "audiences", Kind::StrList),
    f(3, "boundObjectRef", Kind::Msg(BOUND_REF)),
    f(4, "expirationSeconds", Kind::Int),
];
const TOKEN_REQUEST: &[Field] = &[f(1, "metadata", Kind::Msg(OBJECT_META)), f(2, "spec", Kind::Msg(TOKEN_SPEC))];
const ONLY_META: &[Field] = &[f(1, "metadata", Kind::Msg(OBJECT_META))];
const OBJECT_REF: &[Field] = &[
    f(1, "kind", Kind::Str),
    f(2, "namespace", Kind::Str),
    f(3, "name", Kind::Str),
    f(4, "uid", Kind::Str),
    f(5, "apiVersion", Kind::Str),
];
const LOCAL_REF: &[Field] = &[f(1, "name", Kind::Str)];
const SERVICE_ACCOUNT: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "secrets", Kind::MsgList(OBJECT_REF)),
    f(3, "imagePullSecrets", Kind::MsgList(LOCAL_REF)),
    f(4, "automountServiceAccountToken", Kind::Bool),
];
const CONFIG_MAP: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "data", Kind::StrMap),
    f(3, "binaryData", Kind::BytesMap),
    f(4, "immutable", Kind::Bool),
];
const SECRET: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "data", Kind::BytesMap),
    f(3, "type", Kind::Str),
    f(4, "stringData", Kind::StrMap),
    f(5, "immutable", Kind::Bool),
];
const TYPE_META: &[Field] = &[f(1, "apiVersion", Kind::Str), f(2, "kind", Kind::Str)];

/// A protobuf reader over one message.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        let end = self.pos.checked_add(len)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    /// The next (field number, wire type, value) of the message.
    fn next(&mut self) -> Option<Option<(u64, Wire<'a>)>> {
        if self.pos >= self.buf.len() {
            return Some(None);
        }
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.pos = self.pos.checked_add(8).filter(|p| *p <= self.buf.len())?;
                Wire::Skipped
            }
            2 => Wire::Bytes(self.bytes()?),
            5 => {
                self.pos = self.pos.checked_add(4).filter(|p| *p <= self.buf.len())?;
                Wire::Skipped
            }
            _ => return None,
        };
        Some(Some((key >> 3, wire)))
    }
}

#[derive(Debug)]
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Skipped,
}

fn text(b: &[u8]) -> Option<Value> {
    std::str::from_utf8(b).ok().map(|s| json!(s))
}

/// A map entry: key 1, value 2.
fn entry(b: &[u8], bytes_value: bool) -> Option<(String, Value)> {
    let mut r = Reader { buf: b, pos: 0 };
    let (mut k, mut v) = (String::new(), json!(""));
    while let Some((num, w)) = r.next()? {
        match (num, w) {
            (1, Wire::Bytes(x)) => k = std::str::from_utf8(x).ok()?.to_owned(),
            (2, Wire::Bytes(x)) if bytes_value => v = json!(base64::engine::general_purpose::STANDARD.encode(x)),
            (2, Wire::Bytes(x)) => v = text(x)?,
            _ => {}
        }
    }
    Some((k, v))
}

fn message(b: &[u8], fields: &[Field]) -> Option<Value> {
    let mut r = Reader { buf: b, pos: 0 };
    let mut out = Map::new();
    while let Some((num, w)) = r.next()? {
        let Some(fd) = fields.iter().find(|fd| fd.num == num) else {
            continue;
        };
        let name = fd.name.to_owned();
        match (fd.kind, w) {
            (Kind::Str, Wire::Bytes(x)) => {
                out.insert(name, text(x)?);
            }
            (Kind::Int, Wire::Varint(v)) => {
                out.insert(name, json!(v as i64));
            }
            (Kind::Bool, Wire::Varint(v)) => {
                out.insert(name, json!(v != 0));
            }
            (Kind::Msg(sub), Wire::Bytes(x)) => {
                out.insert(name, message(x, sub)?);
            }
            (Kind::StrList, Wire::Bytes(x)) => {
                let list = out.entry(name).or_insert_with(|| json!([]));
                list.as_array_mut()?.push(text(x)?);
            }
            (Kind::MsgList(sub), Wire::Bytes(x)) => {
                let item = message(x, sub)?;
                out.entry(name).or_insert_with(|| json!([])).as_array_mut()?.push(item);
            }
            (Kind::StrMap | Kind::BytesMap, Wire::Bytes(x)) => {
                let (k, v) = entry(x, matches!(fd.kind, Kind::BytesMap))?;
                let map = out.entry(name).or_insert_with(|| json!({}));
                map.as_object_mut()?.insert(k, v);
            }
            _ => return None,
        }
    }
    Some(Value::Object(out))
}

/// The JSON form of a protobuf body, or None if it is not one this
/// simulator reads (the caller answers 415).
pub fn to_json(body: &[u8]) -> Option<Value> {
    let envelope = body.strip_prefix(b"k8s\0")?;
    let mut r = Reader { buf: envelope, pos: 0 };
    let (mut type_meta, mut raw) = (Value::Null, &[][..]);
    while let Some((num, w)) = r.next()? {
        match (num, w) {
            (1, Wire::Bytes(x)) => type_meta = message(x, TYPE_META)?,
            (2, Wire::Bytes(x)) => raw = x,
            _ => {}
        }
    }
    let kind = type_meta.get("kind")?.as_str()?.to_owned();
    let fields = match kind.as_str() {
        "Eviction" => EVICTION,
        "TokenRequest" => TOKEN_REQUEST,
        "Namespace" | "SelfSubjectReview" => ONLY_META,
        "ServiceAccount" => SERVICE_ACCOUNT,
        "ConfigMap" => CONFIG_MAP,
        "Secret" => SECRET,
        _ => return None,
    };
    let mut v = message(raw, fields)?;
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), type_meta.get("apiVersion").cloned().unwrap_or(Value::Null));
        m.insert("kind".into(), json!(kind));
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u64, wire: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![((num << 3) as u8) | wire];
        if wire == 2 {
            out.push(payload.len() as u8);
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn an_eviction_envelope_decodes() {
        let meta = [field(1, 2, b"web-1"), field(3, 2, b"ns")].concat();
        let opts = field(1, 0, &[30]);
        let raw = [field(1, 2, &meta), field(2, 2, &opts)].concat();
        let tm = [field(1, 2, b"policy/v1"), field(2, 2, b"Eviction")].concat();
        let body = [b"k8s\0".to_vec(), field(1, 2, &tm), field(2, 2, &raw)].concat();
        let v = to_json(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-1", "namespace": "ns"}, "deleteOptions": {"gracePeriodSeconds": 30}})
        );
        assert!(to_json(b"k8s\0\xff").is_none());
        assert!(to_json(b"{}").is_none());
    }

    #[test]
    fn maps_and_lists() {
        let label = [field(1, 2, b"a"), field(2, 2, b"b")].concat();
        let meta = [field(1, 2, b"cm"), field(11, 2, &label), field(14, 2, b"x/y")].concat();
        let data = [field(1, 2, b"k"), field(2, 2, b"v")].concat();
        let raw = [field(1, 2, &meta), field(2, 2, &data)].concat();
        let tm = [field(1, 2, b"v1"), field(2, 2, b"ConfigMap")].concat();
        let body = [b"k8s\0".to_vec(), field(1, 2, &tm), field(2, 2, &raw)].concat();
        let v = to_json(&body).unwrap();
        assert_eq!(v["metadata"]["labels"]["a"], "b");
        assert_eq!(v["metadata"]["finalizers"], json!(["x/y"]));
        assert_eq!(v["data"]["k"], "v");
    }
}
