//! The error type of the core library and its mapping to the exit codes that form the contract
//! with Argo's `retryStrategy` (see docs/exit-codes.md).

use std::process::ExitCode;

/// Process exit status of a step binary. The numeric values are a public contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// 0: converged (including a no-op run).
    Converged = 0,
    /// 1: permanent failure; retrying will not help.
    Failed = 1,
    /// 2: invalid input or usage; nothing was written.
    InvalidInput = 2,
    /// 3: `verify` found drift between the intent and what is deployed.
    Drift = 3,
    /// 75: transient failure (EX_TEMPFAIL); Argo retries it.
    Transient = 75,
}

impl ExitStatus {
    /// The numeric exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> Self {
        ExitCode::from(s.code())
    }
}

/// Any failure of a step. Each variant knows whether it is permanent, transient or the user's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The intent file (or a snapshot of it) is invalid.
    #[error(transparent)]
    Intent(#[from] crate::intent::IntentError),
    /// A call to Azure Resource Manager failed.
    #[error(transparent)]
    Arm(#[from] crate::arm::ArmError),
    /// The state store failed or holds something unusable.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// Bad flags or environment (exit 2).
    #[error("usage: {0}")]
    Usage(String),
    /// verify found drift (exit 3); the report has the details.
    #[error("drift found: {0}")]
    Drift(String),
    /// Any other permanent failure, with context.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The exit status this error maps to.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Intent(_) | Error::Usage(_) => ExitStatus::InvalidInput,
            Error::Arm(e) if e.is_transient() => ExitStatus::Transient,
            Error::State(e) if e.is_transient() => ExitStatus::Transient,
            Error::State(e) if e.is_invalid_input() => ExitStatus::InvalidInput,
            Error::Drift(_) => ExitStatus::Drift,
            _ => ExitStatus::Failed,
        }
    }
}

/// Result alias of the core library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
