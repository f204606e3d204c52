//! `fw-policy`: Global parent Azure Firewall Policy, regional child policies and each hub firewall's association.
//!
//! Flags and exit codes are the shared step contract ([`netstep::step`], docs/exit-codes.md).

use clap::Parser;
use netstep::context::StepContext;
use netstep::error::Result;
use netstep::step::{CommonArgs, Outcome, StepArgs};

/// The step's name (record file, logs).
pub const STEP: &str = "fw-policy";

/// Flags of `fw-policy`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "fw-policy",
    version,
    about = "Global parent Azure Firewall Policy, regional child policies and each hub firewall's association."
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
