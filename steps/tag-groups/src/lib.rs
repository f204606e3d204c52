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
    let work = reconcile_and_apply(&ctx, args.prune).await;
    if let Some(l) = lock {
        let released = l.release().await;
        if work.is_ok() {
            released?;
        } else if let Err(e) = released {
            warn!(error = %e, "releasing the network lease failed");
        }
    }
    let rec = work?;

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

/// Reads, plans, prints the plan and (apply mode) writes. Runs under the network lease.
async fn reconcile_and_apply(ctx: &StepContext, prune: bool) -> Result<reconcile::Reconcile> {
    let desired = reconcile::desired(&ctx.intent);
    let actual = reconcile::read(&ctx.arm, &desired).await?;
    let rec = reconcile::plan(&ctx.intent, &desired, &actual)?;

    println!(
        "{STEP}: run {} intent {} mode {}",
        ctx.run_key, ctx.intent_digest, ctx.args.mode
    );
    print!("{}", rec.plan.render());

    let deletes = rec.plan.counts().2;
    if !ctx.apply() {
        if !rec.missing_vnets.is_empty() {
            warn!(
                missing = rec.missing_vnets.len(),
                "virtual networks named in the intent do not exist; apply will fail"
            );
        }
        return Ok(rec);
    }
    if !rec.missing_vnets.is_empty() {
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
    if prune {
        refuse_deleting_used_groups(ctx, &desired.nm_id, &rec.ops).await?;
    }
    let written = reconcile::apply(&ctx.arm, &rec.ops, prune).await?;
    if deletes > 0 && !prune {
        println!(
            "{deletes} deletion(s) skipped: run with --prune to delete the managed resources the intent dropped."
        );
        warn!(deletes, "deletions skipped without --prune");
    }
    info!(written, "apply finished");
    Ok(rec)
}

/// `--prune` never takes a group away from a configuration: when a group to delete is still
/// referenced (by a connectivity configuration, an admin rule collection or an admin rule),
/// nothing is written — not even its policy, whose removal would silently empty a deployed
/// group. Undeploying is mesh-connect's and admin-rules' job.
async fn refuse_deleting_used_groups(
    ctx: &StepContext,
    nm_id: &str,
    ops: &[reconcile::Op],
) -> Result<()> {
    let doomed = reconcile::groups_to_delete(ops);
    if doomed.is_empty() {
        return Ok(());
    }
    let refs = reconcile::group_references(&ctx.arm, nm_id).await?;
    let used: Vec<String> = doomed
        .iter()
        .filter_map(|g| {
            let by = refs.get(g)?;
            let names: Vec<&str> = by.iter().map(|id| netstep::plan::short_id(id)).collect();
            Some(format!(
                "{} (used by {})",
                netstep::resources::name_of(g),
                names.join(", ")
            ))
        })
        .collect();
    if used.is_empty() {
        return Ok(());
    }
    Err(Error::Other(format!(
        "refusing to prune network group(s) still used by configurations: {}. Remove them from the configurations and undeploy them first (mesh-connect / admin-rules), then run tag-groups --prune again. Nothing was written.",
        used.join("; ")
    )))
}
