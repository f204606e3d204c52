//! The digest envelope every stored document (intent snapshot, step record) is wrapped in.
//!
//! ```json
//! {"format":1,"kind":"step-record","run_key":"3f2a…-main","step":"mesh-connect",
//!  "sha256":"<hex SHA-256 of the exact bytes of content>","content":{…}}
//! ```
//!
//! `content` is embedded verbatim (a raw JSON value), so the digest is over exactly the bytes
//! between `"content":` and the closing brace of the envelope. A reader re-hashes those bytes and
//! rejects the document if they differ (edited, truncated, bit rot). The digest detects
//! accidental corruption and careless edits; it is not a signature (someone able to write the
//! container can recompute it).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::error::{StateError, StateErrorKind};

/// The envelope format this code writes and reads.
pub const FORMAT: u32 = 1;

/// What a document is; stored in the envelope and checked on read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    /// `runs/<run-key>/intent.json`
    IntentSnapshot,
    /// `runs/<run-key>/<step>.json`
    StepRecord,
}

impl DocKind {
    fn as_str(self) -> &'static str {
        match self {
            DocKind::IntentSnapshot => "intent-snapshot",
            DocKind::StepRecord => "step-record",
        }
    }
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    format: u32,
    kind: &'a str,
    run_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<&'a str>,
    sha256: &'a str,
    content: &'a RawValue,
}

#[derive(Deserialize)]
struct EnvelopeIn<'a> {
    format: u32,
    kind: String,
    run_key: String,
    #[serde(default)]
    step: Option<String>,
    sha256: String,
    #[serde(borrow)]
    content: &'a RawValue,
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Wraps `content` (one JSON value, no surrounding whitespace) into an envelope.
pub fn seal(
    operation: &'static str,
    path: &str,
    kind: DocKind,
    run_key: &str,
    step: Option<&str>,
    content: &[u8],
) -> Result<Vec<u8>, StateError> {
    let text = std::str::from_utf8(content).map_err(|e| {
        StateError::new(
            StateErrorKind::InvalidInput,
            operation,
            Some(path),
            format!("content is not UTF-8: {e}"),
        )
    })?;
    let raw: &RawValue = serde_json::from_str(text).map_err(|e| {
        StateError::new(
            StateErrorKind::InvalidInput,
            operation,
            Some(path),
            format!("content is not one JSON value: {e}"),
        )
    })?;
    if raw.get().len() != text.len() {
        return Err(StateError::new(
            StateErrorKind::InvalidInput,
            operation,
            Some(path),
            "content has leading or trailing whitespace; canonical JSON must not",
        ));
    }
    let digest = sha256_hex(content);
    let env = EnvelopeOut {
        format: FORMAT,
        kind: kind.as_str(),
        run_key,
        step,
        sha256: &digest,
        content: raw,
    };
    serde_json::to_vec(&env).map_err(|e| {
        StateError::new(
            StateErrorKind::InvalidInput,
            operation,
            Some(path),
            format!("cannot serialize envelope: {e}"),
        )
    })
}

/// Checks an envelope read from `path` and returns the exact content bytes.
///
/// Rejects (in this order): bytes that are not an envelope (`Tampered`, e.g. truncated), an
/// unknown format (`Service`), a digest mismatch (`Tampered`, naming expected and actual digest),
/// another kind/run key/step than asked for (`WrongRecord`).
pub fn open(
    operation: &'static str,
    path: &str,
    bytes: &[u8],
    kind: DocKind,
    run_key: &str,
    step: Option<&str>,
) -> Result<Vec<u8>, StateError> {
    let env: EnvelopeIn<'_> = serde_json::from_slice(bytes).map_err(|e| {
        StateError::new(
            StateErrorKind::Tampered,
            operation,
            Some(path),
            format!(
                "not a valid netstep envelope ({} bytes; truncated or edited?): {e}",
                bytes.len()
            ),
        )
    })?;
    if env.format != FORMAT {
        return Err(StateError::new(
            StateErrorKind::Service,
            operation,
            Some(path),
            format!(
                "envelope format {} is not supported (this netstep reads format {FORMAT})",
                env.format
            ),
        ));
    }
    let content = env.content.get().as_bytes();
    let actual = sha256_hex(content);
    if !actual.eq_ignore_ascii_case(&env.sha256) {
        return Err(StateError::new(
            StateErrorKind::Tampered,
            operation,
            Some(path),
            format!(
                "content digest mismatch: expected sha256 {} (from the envelope), actual sha256 \
                 {actual}; the document was modified or corrupted",
                env.sha256
            ),
        ));
    }
    if env.kind != kind.as_str() {
        return Err(StateError::new(
            StateErrorKind::WrongRecord,
            operation,
            Some(path),
            format!(
                "document is a {:?}, expected a {:?}",
                env.kind,
                kind.as_str()
            ),
        ));
    }
    if env.run_key != run_key {
        return Err(StateError::new(
            StateErrorKind::WrongRecord,
            operation,
            Some(path),
            format!(
                "document belongs to run key {:?}, not {run_key:?}",
                env.run_key
            ),
        ));
    }
    if env.step.as_deref() != step {
        return Err(StateError::new(
            StateErrorKind::WrongRecord,
            operation,
            Some(path),
            format!(
                "document belongs to step {:?}, not {step:?}",
                env.step.as_deref().unwrap_or("<none>")
            ),
        ));
    }
    Ok(content.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_exact_bytes() {
        let c = br#"{"b":1,"a":[1.50,"x"]}"#;
        let sealed = seal("t", "p", DocKind::IntentSnapshot, "k", None, c).unwrap();
        let text = String::from_utf8(sealed.clone()).unwrap();
        assert!(text.contains(&sha256_hex(c)), "{text}");
        let back = open("t", "p", &sealed, DocKind::IntentSnapshot, "k", None).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn rejects_whitespace_and_non_json() {
        let e = seal("t", "p", DocKind::IntentSnapshot, "k", None, b"{}\n").unwrap_err();
        assert_eq!(e.kind(), StateErrorKind::InvalidInput);
        let e = seal("t", "p", DocKind::IntentSnapshot, "k", None, b"{").unwrap_err();
        assert_eq!(e.kind(), StateErrorKind::InvalidInput);
    }

    #[test]
    fn detects_edit_truncation_and_identity() {
        let sealed = seal("t", "p", DocKind::StepRecord, "k", Some("s"), br#"{"v":1}"#).unwrap();
        let edited = String::from_utf8(sealed.clone())
            .unwrap()
            .replace(r#""v":1"#, r#""v":2"#);
        let e = open(
            "t",
            "p",
            edited.as_bytes(),
            DocKind::StepRecord,
            "k",
            Some("s"),
        )
        .unwrap_err();
        assert_eq!(e.kind(), StateErrorKind::Tampered);
        assert!(e.to_string().contains("expected sha256"), "{e}");
        let e = open(
            "t",
            "p",
            &sealed[..sealed.len() - 3],
            DocKind::StepRecord,
            "k",
            Some("s"),
        )
        .unwrap_err();
        assert_eq!(e.kind(), StateErrorKind::Tampered);
        let e = open("t", "p", &sealed, DocKind::StepRecord, "other", Some("s")).unwrap_err();
        assert_eq!(e.kind(), StateErrorKind::WrongRecord);
        let e = open("t", "p", &sealed, DocKind::StepRecord, "k", Some("x")).unwrap_err();
        assert_eq!(e.kind(), StateErrorKind::WrongRecord);
        let e = open("t", "p", &sealed, DocKind::IntentSnapshot, "k", None).unwrap_err();
        assert_eq!(e.kind(), StateErrorKind::WrongRecord);
    }
}
