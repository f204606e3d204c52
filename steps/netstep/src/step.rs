//! The contract every step binary shares: flags (with environment fallbacks), logging, Argo
//! output files, and the mapping of the outcome to an exit code.
//!
//! A step's `main.rs` is a few lines:
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     netstep::step::main("tag-groups", tag_groups::run)
//! }
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

use crate::error::{Error, ExitStatus, Result};

/// The default ARM endpoint (Azure public cloud).
pub const DEFAULT_ARM_ENDPOINT: &str = "https://management.azure.com";

/// Whether a step only reports what it would change, or changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Read, diff and print the plan; make no writes to Azure.
    Plan,
    /// Make the writes the plan needs, wait for them, then record.
    Apply,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Plan => "plan",
            Mode::Apply => "apply",
        })
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for pods and log collectors).
    Json,
    /// Human-readable, for terminals.
    Pretty,
}

/// The flags every step accepts. Each has an environment fallback (`NETSTEP_*`).
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Intent file (YAML). Without it the step takes the run's snapshot from the state store.
    #[arg(long, env = "NETSTEP_INTENT", value_name = "PATH")]
    pub intent: Option<PathBuf>,

    /// State store URL: file:///path, https://ACCOUNT.blob.core.windows.net/CONTAINER[?SAS]
    /// or an Azurite URL http://127.0.0.1:PORT/devstoreaccount1/CONTAINER?SAS.
    #[arg(long, env = "NETSTEP_STATE", value_name = "URL")]
    pub state: Option<String>,

    /// Run key (git SHA + pipeline), the same for every step of a run and across resubmissions.
    #[arg(long, env = "NETSTEP_RUN_KEY", value_name = "KEY")]
    pub run_key: Option<String>,

    /// plan: report the diff, write nothing to Azure. apply: converge.
    #[arg(long, env = "NETSTEP_MODE", value_enum, default_value_t = Mode::Plan)]
    pub mode: Mode,

    /// ARM endpoint (the simulator, a sovereign cloud).
    #[arg(long, env = "NETSTEP_ARM_ENDPOINT", value_name = "URL", default_value = DEFAULT_ARM_ENDPOINT)]
    pub arm_endpoint: String,

    /// Directory receiving one small file per Argo output parameter.
    #[arg(long, env = "NETSTEP_OUTPUTS_DIR", value_name = "DIR")]
    pub outputs_dir: Option<PathBuf>,

    /// Log format on stderr.
    #[arg(long, env = "NETSTEP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Record every ARM request/response pair as one JSON file (oav format) in DIR.
    #[arg(long, env = "NETSTEP_RECORD_TRAFFIC", value_name = "DIR")]
    pub record_traffic: Option<PathBuf>,

    /// Only validate the intent and snapshot it into the state store for the run key (the
    /// first task of a pipeline); no ARM calls.
    #[arg(long)]
    pub snapshot_only: bool,
}

/// Access to the common flags of a step's argument struct.
pub trait StepArgs: Parser + Send + 'static {
    /// The shared flags.
    fn common(&self) -> &CommonArgs;
}

/// What a successful run reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Converged (0) or Drift (3).
    pub status: ExitStatus,
}

impl Outcome {
    /// A converged run (exit 0).
    pub fn converged() -> Self {
        Outcome {
            status: ExitStatus::Converged,
        }
    }
}

/// Installs the tracing subscriber on stderr in the requested format. `RUST_LOG` filters
/// (default `info`).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Pretty => builder
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .compact()
            .try_init(),
    };
}

/// Writes one file per Argo output parameter into `dir` (created if missing). Each file is
/// written to a temporary name and renamed, so Argo never reads a half-written value.
pub fn write_outputs(dir: &Path, outputs: &BTreeMap<String, String>) -> Result<()> {
    let io =
        |e: std::io::Error, p: &Path| Error::Other(format!("writing output {}: {e}", p.display()));
    std::fs::create_dir_all(dir).map_err(|e| io(e, dir))?;
    for (name, value) in outputs {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(Error::Other(format!(
                "invalid output parameter name {name:?}"
            )));
        }
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, value).map_err(|e| io(e, &tmp))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(e, &path))?;
    }
    Ok(())
}

/// Runs a step: parses flags (usage errors exit 2), installs logging, runs `run` on a tokio
/// runtime, prints a failure once on stderr, and returns the exit code of the contract.
pub fn main<A, F, Fut>(step: &'static str, run: F) -> ExitCode
where
    A: StepArgs,
    F: FnOnce(A) -> Fut,
    Fut: Future<Output = Result<Outcome>>,
{
    let args = match A::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            // clap: help/version are not errors; everything else is a usage error (2).
            return if e.use_stderr() {
                ExitStatus::InvalidInput.into()
            } else {
                ExitStatus::Converged.into()
            };
        }
    };
    init_logging(args.common().log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{step}: error: cannot start the runtime: {e}");
            return ExitStatus::Failed.into();
        }
    };
    let result = rt.block_on(run(args));
    match result {
        Ok(outcome) => outcome.status.into(),
        Err(e) => {
            let status = e.exit_status();
            tracing::error!(step, exit_code = status.code(), error = %e, "step failed");
            eprintln!("{step}: error: {e}");
            status.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_written_one_file_each() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = BTreeMap::new();
        m.insert("group-ids".to_string(), "[\"a\"]".to_string());
        m.insert("changes".to_string(), "3".to_string());
        write_outputs(dir.path(), &m).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("group-ids")).unwrap(),
            "[\"a\"]"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("changes")).unwrap(),
            "3"
        );
        assert!(!dir.path().join(".changes.tmp").exists());
    }

    #[test]
    fn output_names_cannot_escape_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = BTreeMap::new();
        m.insert("../evil".to_string(), "x".to_string());
        assert!(write_outputs(dir.path(), &m).is_err());
    }

    #[test]
    fn exit_codes_are_the_documented_contract() {
        assert_eq!(ExitStatus::Converged.code(), 0);
        assert_eq!(ExitStatus::Failed.code(), 1);
        assert_eq!(ExitStatus::InvalidInput.code(), 2);
        assert_eq!(ExitStatus::Drift.code(), 3);
        assert_eq!(ExitStatus::Transient.code(), 75);
    }
}
