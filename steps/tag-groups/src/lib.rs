//! `tag-groups`: AVNM network manager, tag-driven network groups (Azure Policy addToNetworkGroup), static members and VNet tags.
//!
//! Flags and exit codes are the shared step contract ([`netstep::step`], docs/exit-codes.md).
//!
//! Reads (one GET for the manager, otherwise one paged list per collection): the network
//! manager; its network groups; the policy definitions and assignments at each scope of the
//! manager (`$filter=atExactScope()`); the VNets of each subscription the intent names; the
//! static members of each existing managed group. Writes, in this order and only what the plan
//! needs: the manager, the groups, the policy definitions, their assignments, static members,
//! the VNets' tags (PATCH with the merged tag set: foreign tags are kept); with `--prune`,
//! stale static members, then dropped assignments, definitions and groups (`force=false`).

pub mod policy;
pub mod reconcile;

use std::collections::BTreeMap;

use clap::Parser;
use serde_json::json;
use tracing::{info, warn};

use netstep::context::StepContext;
use netstep::error::{Error, ExitStatus, Result};
use netstep::plan::Action;
use netstep::step::{CommonArgs, Outcome, StepArgs};

/// The step's name (record file, logs).
pub const STEP: &str = "tag-groups";

/// Flags of `tag-groups`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "tag-groups",
    version,
    about = "AVNM network manager, tag-driven network groups (Azure Policy addToNetworkGroup), static members and VNet tags."
)]
pub struct Args {
    /// The flags every step shares.
    #[command(flatten)]
    pub common: CommonArgs,

    /// In apply mode, also delete the managed groups, policies and static members the intent
    /// dropped (assignments first, then definitions, then groups with force=false).
    #[arg(long, env = "NETSTEP_PRUNE")]
    pub prune: bool,
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
    let lock = ctx.lock().await?;
    let desired = reconcile::desired(&ctx.intent);
    let actual = reconcile::read(&ctx.arm, &desired).await?;
    let rec = reconcile::plan(&ctx.intent, &desired, &actual)?;

    println!(
        "{STEP}: run {} intent {} mode {}",
        ctx.run_key, ctx.intent_digest, ctx.args.mode
    );
    print!("{}", rec.plan.render());

    let deletes = rec.plan.counts().2;
    if ctx.apply() {
        if !rec.missing_vnets.is_empty() {
            if let Some(l) = lock {
                l.release().await?;
            }
            let names: Vec<String> = rec
                .missing_vnets
                .iter()
                .map(|(n, p, id)| format!("{n} ({p}: {id})"))
                .collect();
            return Err(Error::Other(format!(
                "virtual network(s) named in the intent do not exist: {}. netstep does not create VNets yet; create them (or fix the intent) and run again. Nothing was written.",
                names.join(", ")
            )));
        }
        let written = reconcile::apply(&ctx.arm, &rec.ops, args.prune).await?;
        if deletes > 0 && !args.prune {
            println!(
                "{deletes} deletion(s) skipped: run with --prune to delete the managed resources the intent dropped."
            );
            warn!(deletes, "deletions skipped without --prune");
        }
        info!(written, "apply finished");
    } else if !rec.missing_vnets.is_empty() {
        warn!(
            missing = rec.missing_vnets.len(),
            "virtual networks named in the intent do not exist; apply will fail"
        );
    }
    if let Some(l) = lock {
        l.release().await?;
    }

    let group_ids = serde_json::to_string(&rec.group_ids).unwrap_or_default();
    let mut outputs = BTreeMap::new();
    outputs.insert("group-ids".to_string(), group_ids);
    let skipped: Vec<&str> = if ctx.apply() && !args.prune {
        rec.plan
            .changes
            .iter()
            .filter(|c| c.action == Action::Delete)
            .map(|c| c.resource_id.as_str())
            .collect()
    } else {
        Vec::new()
    };
    let extra = json!({
        "group_ids": rec.group_ids,
        "policy_definition_ids": rec.definition_ids,
        "policy_assignment_ids": rec.assignment_ids,
        "missing_vnets": rec.missing_vnets.iter().map(|(n, _, id)| json!({"name": n, "id": id})).collect::<Vec<_>>(),
        "deletes_skipped": skipped,
    });
    ctx.finish(&rec.plan, outputs, ExitStatus::Converged, extra)
        .await
}
