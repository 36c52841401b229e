//! Request paths and parameters: what a URL addresses, which verb a
//! request is (as RBAC and audit logs name it), query parameters, and the
//! reply a handler produces.

use std::collections::HashMap;

use bytes::Bytes;
use http::Method;

use super::errors::ApiError;
use super::watch::WatchBody;

/// Query parameters (the last value of a repeated parameter wins).
#[derive(Debug, Clone, Default)]
pub struct Query(pub HashMap<String, String>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(q.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
}

/// What a path addresses.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Version,
    Health,
    /// `/api`
    Api,
    /// `/apis`
    Apis,
    /// `/apis/{group}`
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`
    GroupVersion(String, String),
    /// `/openapi/v3`
    OpenApiIndex,
    /// `/openapi/v3/api/v1`, `/openapi/v3/apis/{group}/{version}`
    OpenApi(String, String),
    Resource(ResPath),
    Unknown,
}

/// `/{api|apis/g}/{v}/[namespaces/{ns}/]{resource}[/{name}[/{sub}]]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResPath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub sub: Option<String>,
}

impl ResPath {
    /// `resource` or `resource/subresource`, as the request log counts it.
    pub fn resource_key(&self) -> String {
        match &self.sub {
            Some(s) => format!("{}/{s}", self.resource),
            None => self.resource.clone(),
        }
    }
}

fn decode_segment(s: &str) -> String {
    percent_decode(s)
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn resource_path(group: &str, version: &str, rest: &[String]) -> Target {
    let mut p = ResPath { group: group.to_owned(), version: version.to_owned(), ..ResPath::default() };
    let rest: &[String] = if rest.len() >= 3 && rest[0] == "namespaces" && rest[2] != "status" && rest[2] != "finalize"
    {
        p.namespace = Some(rest[1].clone());
        &rest[2..]
    } else {
        rest
    };
    if rest.is_empty() || rest.len() > 3 || rest.iter().any(String::is_empty) {
        return Target::Unknown;
    }
    p.resource = rest[0].clone();
    p.name = rest.get(1).cloned();
    p.sub = rest.get(2).cloned();
    Target::Resource(p)
}

pub fn parse_path(path: &str) -> Target {
    let segs: Vec<String> = path.trim_end_matches('/').split('/').skip(1).map(decode_segment).collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["version"] => Target::Version,
        ["healthz" | "livez" | "readyz", ..] => Target::Health,
        ["api"] => Target::Api,
        ["apis"] => Target::Apis,
        ["api", v] => Target::GroupVersion(String::new(), v.to_string()),
        ["apis", g] => Target::Group(g.to_string()),
        ["apis", g, v] => Target::GroupVersion(g.to_string(), v.to_string()),
        ["openapi", "v3"] => Target::OpenApiIndex,
        ["openapi", "v3", "api", v] => Target::OpenApi(String::new(), v.to_string()),
        ["openapi", "v3", "apis", g, v] => Target::OpenApi(g.to_string(), v.to_string()),
        ["api", v, ..] => resource_path("", v, &segs[2..]),
        ["apis", g, v, ..] => resource_path(g, v, &segs[3..]),
        _ => Target::Unknown,
    }
}

/// The verb of a request on a resource path.
pub fn verb(method: &Method, p: &ResPath, query: &Query) -> &'static str {
    match *method {
        Method::GET | Method::HEAD if p.name.is_some() => "get",
        Method::GET | Method::HEAD if query.flag("watch") => "watch",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if p.name.is_some() => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

/// What a handler answers.
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub body: ReplyBody,
    /// `Warning: 299 - "..."` headers.
    pub warnings: Vec<String>,
}

#[derive(Debug)]
pub enum ReplyBody {
    Json(Bytes),
    Text(&'static str),
    Watch(WatchBody),
}

impl Reply {
    pub fn json(code: u16, body: Bytes) -> Reply {
        Reply { code, body: ReplyBody::Json(body), warnings: Vec::new() }
    }
    pub fn value(code: u16, v: &serde_json::Value) -> Reply {
        Reply::json(code, Bytes::from(v.to_string()))
    }
    pub fn error(e: &ApiError) -> Reply {
        Reply::value(e.code, &e.to_status())
    }
    pub fn with_warnings(mut self, w: Vec<String>) -> Reply {
        self.warnings = w;
        self
    }
}

/// The 404 of a path nothing is served at.
pub fn not_served() -> ApiError {
    ApiError::new(404, "NotFound", "the server could not find the requested resource")
        .with_details(serde_json::json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(parse_path("/version"), Target::Version);
        assert_eq!(parse_path("/api/v1"), Target::GroupVersion(String::new(), "v1".into()));
        let Target::Resource(p) = parse_path("/api/v1/namespaces/ns1/pods/p1/eviction") else { panic!() };
        assert_eq!(
            (p.namespace.as_deref(), p.resource.as_str(), p.name.as_deref(), p.sub.as_deref()),
            (Some("ns1"), "pods", Some("p1"), Some("eviction"))
        );
        let Target::Resource(p) = parse_path("/api/v1/namespaces/ns1/status") else { panic!() };
        assert_eq!(
            (p.resource.as_str(), p.name.as_deref(), p.sub.as_deref()),
            ("namespaces", Some("ns1"), Some("status"))
        );
        let Target::Resource(p) = parse_path("/apis/coordination.k8s.io/v1/namespaces/x/leases") else { panic!() };
        assert_eq!((p.group.as_str(), p.resource.as_str(), p.name), ("coordination.k8s.io", "leases", None));
        let Target::Resource(p) = parse_path("/api/v1/nodes/n%2E1") else { panic!() };
        assert_eq!(p.name.as_deref(), Some("n.1"));
        assert_eq!(parse_path("/api/v1/namespaces/a/pods/b/c/d"), Target::Unknown);
        assert_eq!(parse_path("/foo"), Target::Unknown);
    }
}
