//! API errors as `metav1.Status` objects, worded like kube-apiserver's
//! (`k8s.io/apimachinery/pkg/api/errors`), so clients that match on `reason`,
//! `code` or message text behave the same against the simulator.

use serde_json::{Value, json};

/// One `details.causes[]` entry (a `field.Error` of the real server).
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub reason: &'static str,
    pub message: String,
    pub field: String,
}

impl Cause {
    /// `field: Invalid value: <value>: <detail>`.
    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Cause {
        Cause {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {}: {detail}", go_value(value)),
            field: field.into(),
        }
    }
    pub fn required(field: impl Into<String>, detail: &str) -> Cause {
        let message = if detail.is_empty() { "Required value".to_owned() } else { format!("Required value: {detail}") };
        Cause { reason: "FieldValueRequired", message, field: field.into() }
    }
    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[String]) -> Cause {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Cause {
            reason: "FieldValueNotSupported",
            message: format!("Unsupported value: {}: supported values: {}", go_value(value), list.join(", ")),
            field: field.into(),
        }
    }
    pub fn forbidden(field: impl Into<String>, detail: &str) -> Cause {
        Cause { reason: "FieldValueForbidden", message: format!("Forbidden: {detail}"), field: field.into() }
    }
    /// A value of the wrong JSON type (CR schema validation).
    pub fn type_invalid(field: &str, actual: &str, expected: &str) -> Cause {
        Cause {
            reason: "FieldValueTypeInvalid",
            message: format!("Invalid value: \"{actual}\": {field} in body must be of type {expected}: \"{actual}\""),
            field: field.to_owned(),
        }
    }
    fn text(&self) -> String {
        if self.field.is_empty() { self.message.clone() } else { format!("{}: {}", self.field, self.message) }
    }
}

/// How Go's `%v`/`%q` shows a value in field errors: strings quoted, numbers bare.
pub fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".to_owned(),
        other => other.to_string(),
    }
}

/// A failed request: becomes a `Status` body with this HTTP code.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Value>,
}

/// `resource.group` as Go's `GroupResource.String()` prints it.
pub fn qualified(resource: &str, group: &str) -> String {
    if group.is_empty() { resource.to_owned() } else { format!("{resource}.{group}") }
}

fn details(name: &str, group: &str, kind: &str) -> Value {
    let mut d = serde_json::Map::new();
    if !name.is_empty() {
        d.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        d.insert("group".into(), json!(group));
    }
    if !kind.is_empty() {
        d.insert("kind".into(), json!(kind));
    }
    Value::Object(d)
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason: reason.to_owned(), message: message.into(), details: None }
    }
    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }
    pub fn not_found(resource: &str, group: &str, name: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("{} {name:?} not found", qualified(resource, group)))
            .with_details(details(name, group, resource))
    }
    pub fn already_exists(resource: &str, group: &str, name: &str) -> ApiError {
        ApiError::new(409, "AlreadyExists", format!("{} {name:?} already exists", qualified(resource, group)))
            .with_details(details(name, group, resource))
    }
    /// 409 Conflict: `Operation cannot be fulfilled on <what> "<name>": <why>`.
    pub fn conflict(resource: &str, group: &str, name: &str, why: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} {name:?}: {why}", qualified(resource, group)),
        )
        .with_details(details(name, group, resource))
    }
    /// The optimistic-concurrency conflict of an update with a stale resourceVersion.
    pub fn stale(resource: &str, group: &str, name: &str) -> ApiError {
        ApiError::conflict(
            resource,
            group,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }
    /// 422 Invalid with field causes, as `apierrors.NewInvalid`.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> ApiError {
        let what = if kind.is_empty() { String::new() } else { qualified(kind, group) };
        let message = match causes.as_slice() {
            [] => format!("{what} {name:?} is invalid"),
            [one] => format!("{what} {name:?} is invalid: {}", one.text()),
            many => {
                let all: Vec<String> = many.iter().map(Cause::text).collect();
                format!("{what} {name:?} is invalid: [{}]", all.join(", "))
            }
        };
        let mut d = details(name, group, kind);
        let list: Vec<Value> =
            causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect();
        if let Some(m) = d.as_object_mut() {
            m.insert("causes".into(), Value::Array(list));
        }
        ApiError::new(422, "Invalid", message).with_details(d)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        let m = message.into();
        ApiError::new(500, "InternalError", format!("Internal error occurred: {m}"))
            .with_details(json!({"causes": [{"message": m}]}))
    }
    pub fn unsupported_media_type(accepted: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: {accepted}"),
        )
    }
    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }
    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }
    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }
    pub fn too_large() -> ApiError {
        ApiError::new(413, "RequestEntityTooLarge", "Request entity too large")
    }
    /// The answer for a status code chosen by fault injection.
    pub fn injected(code: u16) -> ApiError {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            409 => "Conflict",
            410 => "Expired",
            422 => "Invalid",
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "",
        };
        ApiError::new(code, reason, format!("injected fault: HTTP {code}"))
    }

    /// The `Status` object for the response body (or a watch ERROR event).
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        });
        if let Some(m) = s.as_object_mut() {
            if !self.reason.is_empty() {
                m.insert("reason".into(), json!(self.reason));
            }
            if let Some(d) = &self.details {
                m.insert("details".into(), d.clone());
            }
        }
        s
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_messages_aggregate_like_go() {
        let one = ApiError::invalid(
            "Lease",
            "coordination.k8s.io",
            "l2",
            vec![Cause::invalid("spec.leaseDurationSeconds", &json!(0), "must be greater than 0")],
        );
        assert_eq!(
            one.message,
            "Lease.coordination.k8s.io \"l2\" is invalid: spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"
        );
        let two = ApiError::invalid(
            "Widget",
            "example.com",
            "w3",
            vec![Cause::type_invalid("spec.size", "string", "integer"), Cause::required("spec.inner.a", "")],
        );
        assert_eq!(
            two.message,
            "Widget.example.com \"w3\" is invalid: [spec.size: Invalid value: \"string\": spec.size in body must be of type integer: \"string\", spec.inner.a: Required value]"
        );
        assert_eq!(two.to_status()["details"]["causes"][1]["reason"], "FieldValueRequired");
    }

    #[test]
    fn not_found_names_the_qualified_resource() {
        let e = ApiError::not_found("leases", "coordination.k8s.io", "x");
        assert_eq!(e.message, "leases.coordination.k8s.io \"x\" not found");
        assert_eq!(e.to_status()["details"]["kind"], "leases");
    }
}
