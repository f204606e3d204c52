//! `dns-link`: The Private DNS zone, a virtual network link for every VNet, and the A records.
//!
//! Flags and exit codes are the shared step contract ([`netstep::step`], docs/exit-codes.md).

use clap::Parser;
use netstep::context::StepContext;
use netstep::error::Result;
use netstep::step::{CommonArgs, Outcome, StepArgs};

/// The step's name (record file, logs).
pub const STEP: &str = "dns-link";

/// Flags of `dns-link`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "dns-link",
    version,
    about = "The Private DNS zone, a virtual network link for every VNet, and the A records."
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
