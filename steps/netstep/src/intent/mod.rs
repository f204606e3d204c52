//! The intent file: model, YAML loading with positions, validation, canonical form, digests.
//! (Being written: this stub only fixes the error type's name.)

/// An invalid intent: every problem found, each with file, line, column and path.
#[derive(Debug, thiserror::Error)]
#[error("invalid intent")]
pub struct IntentError {}
