//! `mesh-connect`: Global hub mesh and per-region hub-and-spoke connectivity configurations, committed as per-region goal states.
//!
//! Flags and exit codes are the shared step contract ([`netstep::step`], docs/exit-codes.md).

use clap::Parser;
use netstep::context::StepContext;
use netstep::error::Result;
use netstep::step::{CommonArgs, Outcome, StepArgs};

/// The step's name (record file, logs).
pub const STEP: &str = "mesh-connect";

/// Flags of `mesh-connect`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "mesh-connect",
    version,
    about = "Global hub mesh and per-region hub-and-spoke connectivity configurations, committed as per-region goal states."
)]
pub struct Args {
    /// The flags every step shares.
    #[command(flatten)]
    pub common: CommonArgs,
}

impl StepArgs for Args {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

/// Runs the step.
pub async fn run(args: Args) -> Result<Outcome> {
    let ctx = StepContext::init(STEP, args.common).await?;
    if ctx.args.snapshot_only {
        return ctx.finish_snapshot_only();
    }
    Err(netstep::Error::Other(format!(
        "{STEP}: the reconcile loop is not implemented yet (intent {} validated)",
        ctx.intent_digest
    )))
}
