//! The step record: what one step did (or would do) in one run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::plan::{Action, FieldChange, ResourceChange as Change};
pub use crate::step::Mode;

/// Outcome of the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Azure matches the intent (after apply, or nothing to do).
    Converged,
    /// Azure differs from the intent (plan or verify).
    Drift,
    /// The step failed.
    Failed,
}

/// The record a step writes at the end of its run (`runs/<run-key>/<step>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Step name (`tag-groups`, `mesh-connect`, ...); also the record's file name.
    pub step: String,
    /// The run key (git SHA + pipeline).
    pub run_key: String,
    /// SHA-256 (hex) of the intent snapshot this step worked from.
    pub intent_digest: String,
    /// Plan or apply.
    pub mode: Mode,
    /// Start time, RFC 3339.
    pub started_at: String,
    /// End time, RFC 3339.
    pub ended_at: String,
    /// Outcome.
    pub status: Status,
    /// The changes made (apply) or proposed (plan), in order.
    #[serde(default)]
    pub changes: Vec<Change>,
    /// Named outputs for later steps (e.g. resource ids).
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// The ARM client's counters (requests, retries, throttles, ...).
    #[serde(default)]
    pub counters: serde_json::Value,
    /// Step-specific data.
    #[serde(default)]
    pub extra: serde_json::Value,
}
