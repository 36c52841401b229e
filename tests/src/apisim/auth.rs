//! Who a request is: the static admin token, ServiceAccount tokens from
//! TokenRequest (opaque random strings held in memory, like kube-testserver;
//! not JWTs), anonymous requests; and the TokenRequest, TokenReview and
//! SelfSubjectReview endpoints. Authorization is AlwaysAllow.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use super::errors::{ApiError, ApiResult, Cause};
use super::resources::Gr;
use super::store::Inner;
use super::util::{get_str, now_rfc3339, time_rfc3339};

/// The user a request runs as.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Identity {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Identity {
    pub fn anonymous() -> Identity {
        Identity {
            username: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            ..Identity::default()
        }
    }

    pub fn user_info(&self) -> Value {
        let mut u = json!({"username": self.username, "groups": self.groups});
        if !self.uid.is_empty() {
            u["uid"] = json!(self.uid);
        }
        if !self.extra.is_empty() {
            u["extra"] = json!(self.extra);
        }
        u
    }
}

#[derive(Debug, Clone)]
struct Bound {
    kind: String,
    name: String,
    uid: String,
}

#[derive(Debug, Clone)]
struct Issued {
    ns: String,
    sa: String,
    sa_uid: String,
    audiences: Vec<String>,
    expires: jiff::Timestamp,
    bound: Option<Bound>,
    identity: Identity,
}

/// The tokens this simulator accepts.
#[derive(Debug)]
pub struct Tokens {
    pub admin: String,
    pub api_audiences: Vec<String>,
    pub min_expiration: Duration,
    issued: Mutex<HashMap<String, Issued>>,
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_list(v: &[String]) -> String {
    let q: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", q.join(" "))
}

/// Go's `time.Duration` text for whole seconds (`10m0s`, `1h0m0s`, `1s`).
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

impl Tokens {
    pub fn new(min_expiration: Duration) -> Tokens {
        Tokens {
            admin: super::util::random_token(36),
            api_audiences: vec!["https://kubernetes.default.svc.cluster.local".into()],
            min_expiration,
            issued: Mutex::new(HashMap::new()),
        }
    }

    fn admin_identity() -> Identity {
        Identity {
            username: "admin".into(),
            uid: "admin-uid".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
            extra: BTreeMap::new(),
        }
    }

    /// Authenticates `token` for `audiences` (the API audiences when None).
    /// `Ok(None)`: not a token of this server. `Err`: a known token that is
    /// not valid (the real server's wording). On success: the user and the
    /// audiences it is valid for.
    pub fn authenticate(
        &self,
        inner: &Inner,
        token: &str,
        audiences: Option<&[String]>,
    ) -> Result<Option<(Identity, Vec<String>)>, String> {
        let wanted: Vec<String> = audiences.map_or_else(|| self.api_audiences.clone(), <[String]>::to_vec);
        if token == self.admin {
            let common: Vec<String> = wanted.iter().filter(|a| self.api_audiences.contains(a)).cloned().collect();
            return Ok((!common.is_empty()).then(|| (Self::admin_identity(), common)));
        }
        let Some(t) = self.issued.lock().unwrap_or_else(|e| e.into_inner()).get(token).cloned() else {
            return Ok(None);
        };
        let common: Vec<String> = t.audiences.iter().filter(|a| wanted.contains(a)).cloned().collect();
        if common.is_empty() {
            return Err(format!(
                "token audiences {} is invalid for the target audiences {}",
                go_list(&t.audiences),
                go_list(&wanted)
            ));
        }
        if jiff::Timestamp::now() > t.expires {
            return Err("service account token has expired".into());
        }
        let invalidated = || "service account token has been invalidated".to_owned();
        let sa = inner.get(&Gr::new("", "serviceaccounts"), &t.ns, &t.sa).ok_or_else(invalidated)?;
        if sa.uid != t.sa_uid {
            return Err(invalidated());
        }
        if let Some(b) = &t.bound {
            let (gr, ns) = match b.kind.as_str() {
                "Pod" => (Gr::new("", "pods"), t.ns.as_str()),
                "Secret" => (Gr::new("", "secrets"), t.ns.as_str()),
                _ => (Gr::new("", "nodes"), ""),
            };
            let obj = inner.get(&gr, ns, &b.name).ok_or_else(invalidated)?;
            if obj.uid != b.uid {
                return Err(invalidated());
            }
            let since = obj
                .value()
                .pointer("/metadata/deletionTimestamp")
                .and_then(Value::as_str)
                .and_then(super::util::parse_time);
            if since.is_some_and(|d| d.as_second() < jiff::Timestamp::now().as_second() - 60) {
                return Err(invalidated());
            }
        }
        Ok(Some((t.identity.clone(), common)))
    }

    fn add(&self, t: Issued) -> String {
        let token = format!("apisim-sa.{}", super::util::random_token(32));
        let mut map = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        let cutoff = jiff::Timestamp::now().as_second() - 3600;
        map.retain(|_, v| v.expires.as_second() > cutoff);
        map.insert(token.clone(), t);
        token
    }

    /// `POST serviceaccounts/NAME/token`.
    pub fn token_request(
        &self,
        inner: &Inner,
        ns: &str,
        sa_name: &str,
        body: &[u8],
        dry_run: bool,
    ) -> ApiResult<Value> {
        let mut req = super::builtin::check_request_object::<k8s_openapi::api::authentication::v1::TokenRequest>(
            body,
            "authentication.k8s.io/v1",
            "TokenRequest",
        )?;
        let spec = super::util::obj_mut(&mut req, "spec");
        let exp = match spec.get("expirationSeconds").filter(|v| !v.is_null()) {
            None => 3600,
            Some(v) => v.as_i64().ok_or_else(|| ApiError::bad_request("TokenRequest in version \"v1\" cannot be handled as a TokenRequest: spec.expirationSeconds must be an integer"))?,
        };
        spec.insert("expirationSeconds".into(), json!(exp));
        let audiences: Vec<String> = match spec.get("audiences").and_then(Value::as_array) {
            Some(a) if !a.is_empty() => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
            _ => self.api_audiences.clone(),
        };
        spec.insert("audiences".into(), json!(audiences));
        let min = self.min_expiration.as_secs() as i64;
        if exp < min {
            return Err(ApiError::invalid(
                "TokenRequest",
                "authentication.k8s.io",
                sa_name,
                vec![Cause::invalid(
                    "spec.expirationSeconds",
                    &json!(exp),
                    &format!("may not specify a duration less than {}", go_duration(self.min_expiration)),
                )],
            ));
        }
        if exp > 1 << 32 {
            return Err(ApiError::invalid(
                "TokenRequest",
                "authentication.k8s.io",
                sa_name,
                vec![Cause {
                    reason: "FieldValueTooLong",
                    message: format!("Too long: may not be more than {} bytes", 1i64 << 32),
                    field: "spec.expirationSeconds".into(),
                }],
            ));
        }
        let sa = inner
            .get(&Gr::new("", "serviceaccounts"), ns, sa_name)
            .ok_or_else(|| ApiError::not_found("serviceaccounts", "", sa_name))?;
        let mut identity = Identity {
            username: format!("system:serviceaccount:{ns}:{sa_name}"),
            uid: sa.uid.clone(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
            extra: BTreeMap::new(),
        };
        let mut extra = |k: &str, v: &str| {
            identity.extra.insert(format!("authentication.kubernetes.io/{k}"), vec![v.to_owned()]);
        };
        extra("credential-id", &format!("JTI={}", super::util::uuid()));
        let mut bound = None;
        if let Some(r) = spec.get("boundObjectRef").filter(|r| r.is_object()).cloned() {
            let kind = r.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
            let api_version = r.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
            let bname = r.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
            if bname.is_empty() {
                return Err(ApiError::bad_request("Name parameter required."));
            }
            // Like schema.FromAPIVersionAndKind: only the group matters.
            let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
            let uid = match (group, kind.as_str()) {
                ("", "Pod") => {
                    let pod = inner
                        .get(&Gr::new("", "pods"), ns, &bname)
                        .ok_or_else(|| ApiError::not_found("pods", "", &bname))?;
                    let pv = pod.value();
                    if get_str(&pv, &["spec", "serviceAccountName"]) != Some(sa_name) {
                        return Err(ApiError::bad_request(format!(
                            "cannot bind token for serviceaccount {sa_name:?} to pod running with different serviceaccount name."
                        )));
                    }
                    extra("pod-name", &bname);
                    extra("pod-uid", &pod.uid);
                    if let Some(node) = &pod.node_name {
                        extra("node-name", node);
                        if let Some(n) = inner.get(&Gr::new("", "nodes"), "", node) {
                            extra("node-uid", &n.uid);
                        }
                    }
                    pod.uid.clone()
                }
                ("", "Node") => {
                    let n = inner
                        .get(&Gr::new("", "nodes"), "", &bname)
                        .ok_or_else(|| ApiError::not_found("nodes", "", &bname))?;
                    extra("node-name", &bname);
                    extra("node-uid", &n.uid);
                    n.uid.clone()
                }
                ("", "Secret") => inner
                    .get(&Gr::new("", "secrets"), ns, &bname)
                    .ok_or_else(|| ApiError::not_found("secrets", "", &bname))?
                    .uid
                    .clone(),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "cannot bind token to object of type {api_version}, Kind={kind}"
                    )));
                }
            };
            if let Some(want) = r.get("uid").and_then(Value::as_str).filter(|u| !u.is_empty() && *u != uid) {
                return Err(ApiError::conflict(
                    &kind,
                    "",
                    &bname,
                    &format!(
                        "the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
                    ),
                ));
            }
            if let Some(m) = spec.get_mut("boundObjectRef").and_then(Value::as_object_mut) {
                m.insert("uid".into(), json!(uid));
            }
            bound = Some(Bound { kind, name: bname, uid });
        }
        let now = jiff::Timestamp::now();
        let expires = now.checked_add(jiff::SignedDuration::from_secs(exp)).unwrap_or(now);
        let token = if dry_run {
            String::new()
        } else {
            self.add(Issued {
                ns: ns.to_owned(),
                sa: sa_name.to_owned(),
                sa_uid: sa.uid.clone(),
                audiences,
                expires,
                bound,
                identity,
            })
        };
        Ok(json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": sa_name, "namespace": ns, "creationTimestamp": now_rfc3339()},
            "spec": req.get("spec").cloned().unwrap_or(Value::Null),
            "status": {"token": token, "expirationTimestamp": time_rfc3339(expires)},
        }))
    }

    /// `POST tokenreviews`.
    pub fn token_review(&self, inner: &Inner, body: &[u8]) -> ApiResult<Value> {
        let req = super::builtin::check_request_object::<k8s_openapi::api::authentication::v1::TokenReview>(
            body,
            "authentication.k8s.io/v1",
            "TokenReview",
        )?;
        let token = req.pointer("/spec/token").and_then(Value::as_str).unwrap_or_default();
        if token.is_empty() {
            return Err(ApiError::bad_request("token is required for TokenReview in authentication"));
        }
        let audiences: Option<Vec<String>> = req
            .pointer("/spec/audiences")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect());
        let status = match self.authenticate(inner, token, audiences.as_deref()) {
            Ok(Some((id, auds))) => {
                json!({"authenticated": true, "user": id.user_info(), "audiences": auds})
            }
            Ok(None) => json!({"user": {}, "error": "invalid bearer token"}),
            Err(e) => json!({"user": {}, "error": e}),
        };
        Ok(json!({
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": {},
            "status": status,
        }))
    }
}

/// `POST selfsubjectreviews` (`kubectl auth whoami`).
pub fn self_subject_review(id: &Identity) -> Value {
    json!({
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": now_rfc3339()},
        "status": {"userInfo": id.user_info()},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_formats() {
        assert_eq!(go_duration(Duration::from_secs(600)), "10m0s");
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_list(&["a".into(), "b".into()]), "[\"a\" \"b\"]");
    }
}
