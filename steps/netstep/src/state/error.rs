//! [`StateError`]: what went wrong in the state store, where, and how the step should exit.

use std::fmt;

use super::redact::redact_secrets;

/// The category of a state store failure. It decides the exit code (see
/// [`StateError::is_transient`] and [`StateError::is_invalid_input`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StateErrorKind {
    /// The store itself (container, folder) does not exist. Permanent.
    NotFound,
    /// A conditional write lost against another writer (If-None-Match / If-Match failed).
    /// Permanent: the network lease should have prevented it, so it points at a real problem.
    Conflict,
    /// A stored record or snapshot is corrupt: not a valid envelope (e.g. truncated), or its
    /// content does not match its SHA-256 digest. Permanent.
    Tampered,
    /// A stored record belongs to another run key or step than the one asked for. Invalid input:
    /// the caller pointed the step at the wrong run.
    WrongRecord,
    /// The network lease is held by someone else and the wait ran out. Transient (exit 75).
    LockHeld,
    /// A lease this process held was lost (renewal failed or taken over). Transient.
    LockLost,
    /// The storage service is unreachable, throttling or failing (5xx, 408, 429, connection).
    /// Transient.
    Unavailable,
    /// A local file system failure (file backend). Transient.
    Io,
    /// Authentication or authorization failed (401/403, credential could not get a token).
    /// Permanent.
    Auth,
    /// The state store URL is malformed or unsupported. Invalid input.
    InvalidUrl,
    /// A run key does not match `[A-Za-z0-9._-]{1,128}`. Invalid input.
    InvalidRunKey,
    /// Another argument is invalid: a step or lock name, a snapshot that is not JSON.
    /// Invalid input.
    InvalidInput,
    /// The service answered something unexpected. Permanent.
    Service,
}

impl StateErrorKind {
    fn label(self) -> &'static str {
        match self {
            StateErrorKind::NotFound => "not found",
            StateErrorKind::Conflict => "conflict",
            StateErrorKind::Tampered => "corrupt or tampered",
            StateErrorKind::WrongRecord => "wrong record",
            StateErrorKind::LockHeld => "lock held",
            StateErrorKind::LockLost => "lock lost",
            StateErrorKind::Unavailable => "unavailable",
            StateErrorKind::Io => "i/o error",
            StateErrorKind::Auth => "not authorized",
            StateErrorKind::InvalidUrl => "invalid URL",
            StateErrorKind::InvalidRunKey => "invalid run key",
            StateErrorKind::InvalidInput => "invalid input",
            StateErrorKind::Service => "unexpected service response",
        }
    }
}

/// A state store failure: kind, operation, the blob or file it concerns, and (for Azure Blob)
/// the HTTP status and storage error code. Every text in it has SAS signatures redacted.
#[derive(Debug)]
pub struct StateError {
    kind: StateErrorKind,
    operation: &'static str,
    path: Option<String>,
    status: Option<u16>,
    code: Option<String>,
    message: String,
}

impl StateError {
    pub(crate) fn new(
        kind: StateErrorKind,
        operation: &'static str,
        path: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        StateError {
            kind,
            operation,
            path: path.map(redact_secrets),
            status: None,
            code: None,
            message: redact_secrets(&message.into()),
        }
    }

    pub(crate) fn with_http(mut self, status: Option<u16>, code: Option<String>) -> Self {
        self.status = status;
        self.code = code.map(|c| redact_secrets(&c));
        self
    }

    /// The category.
    pub fn kind(&self) -> StateErrorKind {
        self.kind
    }
    /// The operation that failed (`put_record`, `acquire_lock`, ...).
    pub fn operation(&self) -> &'static str {
        self.operation
    }
    /// The blob name or file path concerned, if any (relative to the store root for blobs).
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }
    /// The HTTP status of the failed storage request, if any.
    pub fn status(&self) -> Option<u16> {
        self.status
    }
    /// The storage error code (`x-ms-error-code`, e.g. `ConditionNotMet`), if any.
    pub fn error_code(&self) -> Option<&str> {
        self.code.as_deref()
    }
    /// The human-readable detail (without the kind/operation/path prefix).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether retrying later may succeed (lease held by another run, storage unavailable).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            StateErrorKind::LockHeld
                | StateErrorKind::LockLost
                | StateErrorKind::Unavailable
                | StateErrorKind::Io
        )
    }
    /// Whether the failure is the caller's input (bad URL, record of another run key).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self.kind,
            StateErrorKind::InvalidUrl
                | StateErrorKind::InvalidRunKey
                | StateErrorKind::InvalidInput
                | StateErrorKind::WrongRecord
        )
    }
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "state store {} ({})", self.operation, self.kind.label())?;
        if let Some(p) = &self.path {
            write!(f, " on {p}")?;
        }
        write!(f, ": {}", self.message)?;
        match (self.status, &self.code) {
            (Some(s), Some(c)) => write!(f, " [HTTP {s}, {c}]"),
            (Some(s), None) => write!(f, " [HTTP {s}]"),
            (None, Some(c)) => write!(f, " [{c}]"),
            (None, None) => Ok(()),
        }
    }
}

impl std::error::Error for StateError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_classes() {
        let e = |k| StateError::new(k, "op", None, "m");
        assert!(e(StateErrorKind::LockHeld).is_transient());
        assert!(e(StateErrorKind::Unavailable).is_transient());
        assert!(e(StateErrorKind::Io).is_transient());
        assert!(!e(StateErrorKind::Conflict).is_transient());
        assert!(!e(StateErrorKind::Conflict).is_invalid_input());
        assert!(e(StateErrorKind::InvalidRunKey).is_invalid_input());
        assert!(e(StateErrorKind::InvalidUrl).is_invalid_input());
        assert!(e(StateErrorKind::WrongRecord).is_invalid_input());
        assert!(!e(StateErrorKind::Tampered).is_invalid_input());
        assert!(!e(StateErrorKind::Tampered).is_transient());
    }

    #[test]
    fn display_names_path_status_code_and_redacts() {
        let e = StateError::new(
            StateErrorKind::Conflict,
            "put_record",
            Some("runs/k/s.json"),
            "sent to http://h/c?sv=1&sig=SECRET%2Bx&se=2",
        )
        .with_http(Some(412), Some("ConditionNotMet".into()));
        let s = e.to_string();
        assert_eq!(
            s,
            "state store put_record (conflict) on runs/k/s.json: sent to \
             http://h/c?sv=1&sig=REDACTED&se=2 [HTTP 412, ConditionNotMet]"
        );
        assert_eq!(e.status(), Some(412));
        assert_eq!(e.error_code(), Some("ConditionNotMet"));
    }
}
