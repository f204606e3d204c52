//! `dns-link`: the private DNS zones of the intent, a virtual network link for every VNet the
//! intent links, and the A record sets.
//!
//! Flags and exit codes are the shared step contract ([`netstep::step`], docs/exit-codes.md).
//!
//! The loop:
//! 1. **Read** (no per-resource GETs): the zones of every resource group the intent declares
//!    (one list each), then, for every zone netstep manages, its links (one paged list: link
//!    reads are throttled by Azure at 500 per 5 minutes per zone) and its `A` record sets (one
//!    list; `ALL` for a managed zone the intent dropped).
//! 2. **Diff** ([`reconcile`]) semantically against the spec-shaped desired bodies: ARM's
//!    read-only fields (`etag`, `fqdn`, `isAutoRegistered`, `virtualNetworkLinkState`,
//!    `provisioningState`, ...) and foreign tags or metadata never count as changes.
//! 3. **Plan** on stdout; in `plan` mode stop there (zero writes).
//! 4. **Apply**, in dependency order: zones (PUT, LRO); with `--prune` the dropped record sets
//!    then links; links (PUT, LRO, [`arm_io::PARALLEL_WRITES`] in flight, not awaited one by
//!    one); record sets (PUT, synchronous); then the links are awaited together from their
//!    zone's list until `Succeeded` and `Completed`; finally, with `--prune`, dropped zones.
//!    Creates carry `If-None-Match: *`, updates `If-Match: <etag read>`; a 412 re-reads once.
//! 5. **Record** and Argo outputs (`changes`, `record`, `zone-ids`) last.
//!
//! netstep never modifies or deletes a zone, link or record set it does not manage; an intent
//! zone that exists unmanaged is refused (exit 1) with the reason.

pub mod arm_io;
pub mod desired;
pub mod reconcile;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use clap::Parser;
use netstep::context::{StepContext, env_ms};
use netstep::error::{Error, ExitStatus, Result};
use netstep::step::{CommonArgs, Outcome, StepArgs};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::reconcile::{Cond, Work};

/// The step's name (record file, logs).
pub const STEP: &str = "dns-link";

/// Default delay between polls of a zone's link list while links provision.
pub const LINK_POLL: Duration = Duration::from_secs(5);

/// Flags of `dns-link`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "dns-link",
    version,
    about = "The Private DNS zones, a virtual network link for every VNet, and the A records."
)]
pub struct Args {
    /// The flags every step shares.
    #[command(flatten)]
    pub common: CommonArgs,

    /// In apply mode, also delete the zones, links and record sets netstep manages that the
    /// intent dropped (record sets, then links, then zones). Without it they are only shown.
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
    let prune = args.prune;
    let ctx = StepContext::init(STEP, args.common).await?;
    if ctx.args.snapshot_only {
        return ctx.finish_snapshot_only();
    }
    let lock = ctx.lock_dns().await?;
    let result = converge(&ctx, prune).await;
    if let Some(lock) = lock {
        match (lock.release().await, &result) {
            (Err(e), Ok(_)) => return Err(e.into()),
            (Err(e), Err(_)) => warn!(error = %e, "releasing the network lease failed"),
            _ => {}
        }
    }
    let (work, zone_ids, extra) = result?;
    let mut outputs = BTreeMap::new();
    outputs.insert(
        "zone-ids".to_string(),
        serde_json::to_string(&zone_ids).unwrap_or_default(),
    );
    ctx.finish(&work.plan, outputs, ExitStatus::Converged, extra)
        .await
}

/// Read, diff, print, and (apply mode) write. Returns the work, the zone ids and the record's
/// `extra`.
async fn converge(ctx: &StepContext, prune: bool) -> Result<(Work, Vec<String>, Value)> {
    let desired = desired::zones(&ctx.intent);
    let zone_ids: Vec<String> = desired.iter().map(|z| z.id.clone()).collect();
    let actual = arm_io::read(&ctx.arm, &desired::resource_groups(&ctx.intent), &desired).await?;
    let work = reconcile::reconcile(&desired, &actual, prune);

    println!(
        "{STEP} · run {} · intent {} · mode {}{}",
        ctx.run_key,
        ctx.intent_digest,
        ctx.args.mode,
        if prune { " (--prune)" } else { "" }
    );
    print!("{}", work.plan.render());
    if !work.blockers.is_empty() {
        for b in &work.blockers {
            println!("  ! refused: {b}");
        }
        return Err(Error::Other(format!(
            "{STEP}: {} problem(s) prevent convergence, nothing was written:\n  {}",
            work.blockers.len(),
            work.blockers.join("\n  ")
        )));
    }
    let links_desired: usize = desired.iter().map(|z| z.links.len()).sum();
    let records_desired: usize = desired.iter().map(|z| z.records.len()).sum();
    let mut extra = json!({
        "zones": desired.len(),
        "links": links_desired,
        "records": records_desired,
        "prune": prune,
        "deletes_planned": work.deletes(),
        "deletes_skipped": if prune { 0 } else { work.deletes() },
    });
    if !ctx.apply() {
        return Ok((work, zone_ids, extra));
    }
    if work.writes(prune) == 0 {
        info!("nothing to write: Azure matches the intent");
        return Ok((work, zone_ids, extra));
    }
    apply(ctx, &work, prune).await?;
    extra["writes"] = json!(work.writes(prune));
    Ok((work, zone_ids, extra))
}

/// The writes, in dependency order.
async fn apply(ctx: &StepContext, work: &Work, prune: bool) -> Result<()> {
    let arm = &ctx.arm;
    // 1. Zones. A new zone's limits come from ARM's answer; check them before linking.
    for op in &work.zone_puts {
        info!(zone = %op.id, create = op.cond == Cond::Create, "writing zone");
        if let Some(zone) = arm_io::put_guarded(arm, op, true).await? {
            let creates = work
                .link_puts
                .iter()
                .filter(|l| l.zone_id.eq_ignore_ascii_case(&op.id) && l.cond == Cond::Create)
                .count() as u64;
            let existing = zone
                .pointer("/properties/numberOfVirtualNetworkLinks")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if let Some(max) = zone
                .pointer("/properties/maxNumberOfVirtualNetworkLinks")
                .and_then(Value::as_u64)
                && existing + creates > max
            {
                return Err(Error::Other(format!(
                    "zone {} allows {max} virtual network links (maxNumberOfVirtualNetworkLinks); it has {existing} and the intent adds {creates}",
                    op.id
                )));
            }
        }
    }
    // 2. With --prune: dropped record sets, then dropped links (a renamed link must go before
    //    its VNet can be linked again).
    if prune {
        arm_io::delete_all(arm, &work.record_deletes).await?;
        arm_io::delete_all(arm, &work.link_deletes).await?;
    }
    // 3. Links, concurrently, without waiting on each LRO (that would GET each link).
    let written = arm_io::put_all(arm, &work.link_puts, false).await?;
    // 4. Record sets (synchronous), while the links provision.
    arm_io::put_all(arm, &work.record_puts, true).await?;
    // 5. Wait for the links, zone by zone, from the zone's list.
    let mut pending: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (op, resp) in &written {
        let settled = resp.as_ref().and_then(arm_io::link_settled);
        if settled != Some(true) {
            pending
                .entry(op.zone_id.clone())
                .or_default()
                .insert(netstep::resources::name_of(&op.id).to_ascii_lowercase());
        }
    }
    let poll = env_ms("NETSTEP_LRO_POLL_MS").map_or(LINK_POLL, Duration::from_millis);
    for (zone_id, names) in &pending {
        arm_io::wait_links(arm, zone_id, names, poll, arm_io::LINK_MAX_WAIT).await?;
    }
    // 6. With --prune: dropped zones, now that their links are gone.
    if prune {
        arm_io::delete_all(arm, &work.zone_deletes).await?;
    }
    Ok(())
}
