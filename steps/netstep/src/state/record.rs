//! The step record: what one step did (or would do) in one run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Whether the step only previewed or also wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Preview only; nothing written to Azure.
    Plan,
    /// Changes applied.
    Apply,
}

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

/// The kind of change to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The resource is (to be) created.
    Create,
    /// The resource is (to be) updated in place.
    Update,
    /// The resource is (to be) deleted.
    Delete,
}

/// One changed field of a resource, addressed by a JSON path (e.g. `properties.appliesToGroups[0]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// Path of the field inside the resource body.
    pub path: String,
    /// Value before (`null` when absent).
    pub old: serde_json::Value,
    /// Value after (`null` when removed).
    pub new: serde_json::Value,
}

/// A change to one ARM resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Create, update or delete.
    pub action: Action,
    /// The ARM resource id.
    pub resource_id: String,
    /// The ARM resource type, e.g. `Microsoft.Network/networkManagers/networkGroups`.
    pub resource_type: String,
    /// The changed fields (empty for create/delete when the whole body is new/gone).
    #[serde(default)]
    pub fields: Vec<FieldChange>,
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
