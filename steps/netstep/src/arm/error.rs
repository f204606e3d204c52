//! [`ArmError`]: a failed ARM call, with everything an operator needs to act on it.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// What kind of failure an [`ArmError`] is. Decides [`ArmError::is_transient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ArmErrorKind {
    /// 429: ARM or the resource provider throttled us, and retries ran out. Transient.
    Throttled,
    /// 5xx, a retryable 409 (`AnotherOperationInProgress`, `Retryable*`), or a lost response
    /// to a request that is not safe to resend. Transient.
    Transient,
    /// 409 without a retryable code, or 412 (a failed `If-Match`/`If-None-Match`). A rerun
    /// re-reads and recomputes, so this is transient.
    Conflict,
    /// 404 on an operation where the resource must exist.
    NotFound,
    /// 400 and the other 4xx the caller must fix (invalid body, policy denial, quota).
    BadRequest,
    /// 401/403, or no token could be obtained.
    Auth,
    /// A long-running operation did not finish within the configured wait, or a request timed
    /// out. Transient: the operation may still complete.
    Timeout,
    /// A connection or transport error. Transient.
    Io,
    /// The response could not be understood (bad JSON, missing LRO headers, bad URLs).
    InvalidResponse,
    /// A long-running operation ended `Failed` or `Canceled`, or a resource ended in a failed
    /// provisioning state.
    OperationFailed,
    /// The client was configured wrongly (bad endpoint, credential, path).
    Config,
}

impl ArmErrorKind {
    /// Whether retrying later (another run) may succeed.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ArmErrorKind::Throttled
                | ArmErrorKind::Transient
                | ArmErrorKind::Conflict
                | ArmErrorKind::Timeout
                | ArmErrorKind::Io
        )
    }

    /// The kind for an HTTP error status (and ARM error code).
    pub fn from_status(status: StatusCode, code: Option<&str>) -> Self {
        match status.as_u16() {
            429 => ArmErrorKind::Throttled,
            409 if code.is_some_and(super::retry::is_retryable_conflict_code) => {
                ArmErrorKind::Transient
            }
            409 | 412 => ArmErrorKind::Conflict,
            404 => ArmErrorKind::NotFound,
            401 | 403 => ArmErrorKind::Auth,
            408 => ArmErrorKind::Timeout,
            s if s >= 500 => ArmErrorKind::Transient,
            _ => ArmErrorKind::BadRequest,
        }
    }
}

/// A failed ARM call.
///
/// Displays as `PUT /subscriptions/.../networkGroups/x: 400 InvalidRequestFormat: <message>`.
/// Boxed inside, so `Result<T, ArmError>` stays one pointer wide.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ArmError(Box<Inner>);

#[derive(Debug, thiserror::Error)]
struct Inner {
    kind: ArmErrorKind,
    method: String,
    op: String,
    resource: String,
    status: Option<u16>,
    code: Option<String>,
    message: String,
    failure_cause: Option<String>,
    request_id: Option<String>,
    attempts: u32,
    elapsed: Option<Duration>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl fmt::Display for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self;
        if e.resource.is_empty() {
            write!(f, "{}: ", e.method)?;
        } else {
            write!(f, "{} {}: ", e.method, e.resource)?;
        }
        if let Some(s) = e.status {
            write!(f, "{s} ")?;
        }
        if let Some(c) = &e.code {
            write!(f, "{c}: ")?;
        }
        f.write_str(&e.message)?;
        if e.kind == ArmErrorKind::Timeout
            && let Some(el) = e.elapsed
        {
            write!(f, " (after {:.0?} and {} attempts)", el, e.attempts)?;
        }
        Ok(())
    }
}

impl ArmError {
    /// A new error of `kind` for `method resource` with `message`.
    pub fn new(
        kind: ArmErrorKind,
        method: impl Into<String>,
        resource: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let resource = resource.into();
        ArmError(Box::new(Inner {
            kind,
            method: method.into(),
            op: super::short_name(&resource),
            resource,
            status: None,
            code: None,
            message: message.into(),
            failure_cause: None,
            request_id: None,
            attempts: 1,
            elapsed: None,
            source: None,
        }))
    }

    /// The error for an HTTP error response: status, ARM error code and message parsed from a
    /// CloudError / CommonErrorResponse body (`{"error":{"code","message",...}}`) or the flat
    /// `{"code","message"}` some resource providers send.
    pub fn from_response(
        method: &str,
        resource: &str,
        status: StatusCode,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> Self {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let (code, message) = match parsed.as_ref().and_then(parse_error_body) {
            Some((code, message)) => (code, message),
            None => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                let msg = if text.is_empty() {
                    status
                        .canonical_reason()
                        .unwrap_or("no error body")
                        .to_string()
                } else {
                    truncate(text, 512)
                };
                (None, msg)
            }
        };
        let mut e = ArmError::new(
            ArmErrorKind::from_status(status, code.as_deref()),
            method,
            resource,
            message,
        );
        e.0.status = Some(status.as_u16());
        e.0.code = code;
        e.0.failure_cause = header_str(headers, "x-ms-failure-cause");
        e.0.request_id = header_str(headers, "x-ms-correlation-request-id")
            .or_else(|| header_str(headers, "x-ms-request-id"));
        e
    }

    pub(crate) fn with_status(mut self, status: Option<u16>) -> Self {
        self.0.status = status;
        self
    }

    pub(crate) fn with_code(mut self, code: Option<String>) -> Self {
        self.0.code = code;
        self
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.0.source = Some(Box::new(source));
        self
    }

    pub(crate) fn with_progress(mut self, attempts: u32, elapsed: Duration) -> Self {
        self.0.attempts = attempts;
        self.0.elapsed = Some(elapsed);
        self
    }

    /// Whether retrying later may succeed (throttling, 5xx, connection errors, conflicts,
    /// timeouts).
    pub fn is_transient(&self) -> bool {
        self.0.kind.is_transient()
    }

    /// The kind of failure.
    pub fn kind(&self) -> ArmErrorKind {
        self.0.kind
    }

    /// Whether the resource (or its parent) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.0.kind == ArmErrorKind::NotFound
    }

    /// A 404 answered by ARM itself (`ResourceNotFound`, `x-ms-failure-cause: gateway`): the
    /// top-level resource (or its resource group) is missing. A 404 from the resource provider
    /// (code `NotFound`) means a child resource is missing.
    pub fn is_arm_resource_not_found(&self) -> bool {
        self.0.kind == ArmErrorKind::NotFound
            && (self.0.failure_cause.as_deref() == Some("gateway")
                || matches!(
                    self.0.code.as_deref(),
                    Some("ResourceNotFound" | "ResourceGroupNotFound" | "SubscriptionNotFound")
                ))
    }

    /// The HTTP method (`PUT`), or the operation for failures outside a request.
    pub fn method(&self) -> &str {
        &self.0.method
    }

    /// A short operation name: the last resource type or action of the path
    /// (`networkGroups`, `commit`, `operationResults`).
    pub fn op(&self) -> &str {
        &self.0.op
    }

    /// The resource id or URL path the call was about.
    pub fn resource(&self) -> &str {
        &self.0.resource
    }

    /// The HTTP status, if a response was received.
    pub fn status(&self) -> Option<u16> {
        self.0.status
    }

    /// The ARM error code (`InvalidRequestFormat`, `AnotherOperationInProgress`, ...).
    pub fn code(&self) -> Option<&str> {
        self.0.code.as_deref()
    }

    /// The error message (from the response body when there was one).
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The `x-ms-failure-cause` response header (`gateway` when ARM itself answered).
    pub fn failure_cause(&self) -> Option<&str> {
        self.0.failure_cause.as_deref()
    }

    /// `x-ms-correlation-request-id` (or `x-ms-request-id`) of the failed response, for support.
    pub fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }

    /// How many attempts (requests, or LRO polls for a timeout) were made.
    pub fn attempts(&self) -> u32 {
        self.0.attempts
    }

    /// How long the call (with retries or LRO polling) took, when known.
    pub fn elapsed(&self) -> Option<Duration> {
        self.0.elapsed
    }
}

/// Extracts `(code, message)` from an ARM error body: `{"error":{"code","message","details"}}`
/// (CloudError and CommonErrorResponse) or a flat `{"code","message"}`. Detail messages are
/// appended to the message.
pub fn parse_error_body(v: &Value) -> Option<(Option<String>, String)> {
    let err = match v.get("error") {
        Some(e) if e.is_object() => e,
        _ if v.get("code").is_some() || v.get("message").is_some() => v,
        _ => return None,
    };
    let code = err
        .get("code")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let mut message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_string();
    if let Some(details) = err.get("details").and_then(Value::as_array) {
        let parts: Vec<String> = details
            .iter()
            .filter_map(|d| {
                let c = d.get("code").and_then(Value::as_str).unwrap_or("");
                let m = d.get("message").and_then(Value::as_str).unwrap_or("");
                match (c.is_empty(), m.is_empty()) {
                    (true, true) => None,
                    (false, true) => Some(c.to_string()),
                    (true, false) => Some(m.to_string()),
                    (false, false) => Some(format!("{c}: {m}")),
                }
            })
            .collect();
        if !parts.is_empty() {
            if !message.is_empty() {
                message.push(' ');
            }
            message.push_str(&format!("(details: {})", parts.join("; ")));
        }
    }
    if message.is_empty() {
        message = "no message".to_string();
    }
    Some((code, truncate(&message, 2048)))
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

fn header_str(h: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    const NG: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkManagers/nm/networkGroups/x";

    #[test]
    fn display_has_method_path_status_code_and_message() {
        let body =
            br#"{"error":{"code":"InvalidRequestFormat","message":"Cannot parse the request."}}"#;
        let e =
            ArmError::from_response("PUT", NG, StatusCode::BAD_REQUEST, &HeaderMap::new(), body);
        assert_eq!(
            e.to_string(),
            format!("PUT {NG}: 400 InvalidRequestFormat: Cannot parse the request.")
        );
        assert_eq!(e.kind(), ArmErrorKind::BadRequest);
        assert_eq!(e.op(), "networkGroups");
        assert!(!e.is_transient());
        let c = ArmError::new(ArmErrorKind::Config, "credential", "", "no token");
        assert_eq!(c.to_string(), "credential: no token");
    }

    #[test]
    fn arm_and_provider_not_found_are_told_apart() {
        let mut h = HeaderMap::new();
        h.insert("x-ms-failure-cause", HeaderValue::from_static("gateway"));
        let arm = ArmError::from_response(
            "GET",
            NG,
            StatusCode::NOT_FOUND,
            &h,
            br#"{"error":{"code":"ResourceNotFound","message":"The Resource 'Microsoft.Network/networkManagers/nm' under resource group 'rg' was not found."}}"#,
        );
        assert!(arm.is_not_found());
        assert!(arm.is_arm_resource_not_found());
        assert_eq!(arm.failure_cause(), Some("gateway"));
        let rp = ArmError::from_response(
            "GET",
            NG,
            StatusCode::NOT_FOUND,
            &HeaderMap::new(),
            br#"{"error":{"message":"Resource [/x] does not exist or has been deleted","code":"NotFound"}}"#,
        );
        assert!(rp.is_not_found());
        assert!(!rp.is_arm_resource_not_found());
        assert_eq!(rp.code(), Some("NotFound"));
    }

    #[test]
    fn common_error_response_details_and_flat_shapes_parse() {
        let v: Value = serde_json::from_str(
            r#"{"error":{"code":"InvalidResource","message":"bad","target":"properties","details":[{"code":"A","message":"first"},{"message":"second"}],"additionalInfo":[]}}"#,
        )
        .unwrap();
        assert_eq!(
            parse_error_body(&v),
            Some((
                Some("InvalidResource".into()),
                "bad (details: A: first; second)".into()
            ))
        );
        let flat: Value = serde_json::from_str(r#"{"code":"Conflict","message":"busy"}"#).unwrap();
        assert_eq!(
            parse_error_body(&flat),
            Some((Some("Conflict".into()), "busy".into()))
        );
        assert_eq!(parse_error_body(&serde_json::json!({"value": []})), None);
    }

    #[test]
    fn non_json_and_empty_bodies_still_give_a_message() {
        let e = ArmError::from_response(
            "DELETE",
            NG,
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            b"",
        );
        assert_eq!(e.to_string(), format!("DELETE {NG}: 502 Bad Gateway"));
        assert!(e.is_transient());
        let e = ArmError::from_response(
            "GET",
            NG,
            StatusCode::SERVICE_UNAVAILABLE,
            &HeaderMap::new(),
            b"<html>upstream down</html>",
        );
        assert_eq!(e.message(), "<html>upstream down</html>");
    }

    #[test]
    fn kinds_map_statuses_and_conflict_codes() {
        use ArmErrorKind as K;
        assert_eq!(
            K::from_status(StatusCode::TOO_MANY_REQUESTS, None),
            K::Throttled
        );
        assert_eq!(
            K::from_status(StatusCode::CONFLICT, Some("AnotherOperationInProgress")),
            K::Transient
        );
        assert_eq!(
            K::from_status(StatusCode::CONFLICT, Some("InUseSubnetCannotBeDeleted")),
            K::Conflict
        );
        assert_eq!(
            K::from_status(StatusCode::PRECONDITION_FAILED, None),
            K::Conflict
        );
        assert_eq!(
            K::from_status(StatusCode::FORBIDDEN, Some("AuthorizationFailed")),
            K::Auth
        );
        assert_eq!(
            K::from_status(StatusCode::INTERNAL_SERVER_ERROR, None),
            K::Transient
        );
        assert_eq!(
            K::from_status(StatusCode::UNPROCESSABLE_ENTITY, None),
            K::BadRequest
        );
        assert!(K::Throttled.is_transient());
        assert!(!K::OperationFailed.is_transient());
        assert!(!K::Auth.is_transient());
    }
}
