//! The state store. (Being written: this stub only fixes the error type.)

/// A state store failure.
#[derive(Debug, thiserror::Error)]
#[error("state store failed")]
pub struct StateError {}

impl StateError {
    /// Whether retrying later may succeed (lease held by another run, storage unavailable).
    pub fn is_transient(&self) -> bool {
        false
    }
    /// Whether the failure is the caller's input (bad URL, record of another run key).
    pub fn is_invalid_input(&self) -> bool {
        false
    }
}
