//! The Azure Resource Manager client. (Being written: this stub only fixes the error type.)

/// A failed ARM call.
#[derive(Debug, thiserror::Error)]
#[error("ARM call failed")]
pub struct ArmError {}

impl ArmError {
    /// Whether retrying later may succeed (throttling, 5xx, connection errors, conflicts).
    pub fn is_transient(&self) -> bool {
        false
    }
}
