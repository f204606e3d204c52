//! The ARM side of the step: the reads (lists wherever ARM has one; links are only ever
//! listed, never fetched one by one, because link reads are throttled per zone) and the
//! guarded writes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use netstep::arm::{ArmClient, ArmError, ArmErrorKind, PutOptions};
use netstep::error::{Error, Result};
use netstep::resources;
use serde_json::Value;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::desired::DesiredZone;
use crate::reconcile::{Actual, Cond, DeleteOp, Kind, PutOp, ZoneRead, put_for, zones_to_read};

/// Independent link (and record) writes in flight at once. The client's token bucket still
/// paces them against ARM's write budget.
pub const PARALLEL_WRITES: usize = 8;

/// How long links may take to reach `Succeeded` / `Completed` after their PUTs.
pub const LINK_MAX_WAIT: Duration = Duration::from_secs(30 * 60);

/// How many polls a written link may be missing from its zone's list (eventual consistency)
/// before the step reports it lost.
const MISSING_POLLS: u32 = 3;

fn lc(s: &str) -> String {
    s.to_ascii_lowercase()
}

fn name_lc(v: &Value) -> String {
    lc(v.get("name")
        .and_then(Value::as_str)
        .unwrap_or_else(|| resources::name_of(v.get("id").and_then(Value::as_str).unwrap_or(""))))
}

/// Reads what exists: the zones of every resource group the intent declares (one list each;
/// a missing group lists as empty), then the links (one paged list per zone) and record sets
/// (`A` for intent zones, `ALL` for managed zones the intent dropped) of the zones netstep
/// manages.
pub async fn read(
    arm: &ArmClient,
    resource_groups: &[(String, String)],
    desired: &[DesiredZone],
) -> Result<Actual> {
    let mut actual = Actual::default();
    for (sub, rg) in resource_groups {
        let path = format!(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/privateDnsZones"
        );
        match arm.list(&path).await {
            Ok(zones) => actual.zones.extend(zones),
            Err(e) if e.status() == Some(404) => {
                debug!(resource_group = %rg, error = %e, "resource group not found: no zones there");
            }
            Err(e) => return Err(e.into()),
        }
    }
    for (zone_id, why) in zones_to_read(desired, &actual.zones) {
        let links = arm.list(&format!("{zone_id}/virtualNetworkLinks")).await?;
        let kind = match why {
            ZoneRead::Kept => "A",
            ZoneRead::Dropped => "ALL",
        };
        let records = arm.list(&format!("{zone_id}/{kind}")).await?;
        debug!(zone = %zone_id, links = links.len(), records = records.len(), "zone read");
        actual.links.insert(lc(&zone_id), links);
        actual.records.insert(lc(&zone_id), records);
    }
    Ok(actual)
}

/// Lists one zone's links (never a per-link GET).
async fn list_links(arm: &ArmClient, zone_id: &str) -> Result<Vec<Value>, ArmError> {
    arm.list(&format!("{zone_id}/virtualNetworkLinks")).await
}

/// Re-reads the resource a PUT was about after a 412: zones and record sets by GET, a link
/// from its zone's list.
async fn reread(arm: &ArmClient, op: &PutOp) -> Result<Option<Value>, ArmError> {
    match op.kind {
        Kind::Zone | Kind::Record => arm.get(&op.id).await,
        Kind::Link => {
            let name = lc(resources::name_of(&op.id));
            Ok(list_links(arm, &op.zone_id)
                .await?
                .into_iter()
                .find(|l| name_lc(l) == name))
        }
    }
}

fn options(cond: &Cond, wait: bool) -> PutOptions {
    let mut o = PutOptions {
        wait,
        ..PutOptions::default()
    };
    match cond {
        Cond::Create => o.if_none_match = Some("*".into()),
        Cond::Update(etag) => o.if_match = etag.clone(),
    }
    o
}

/// PUTs `op` with its precondition (`If-None-Match: *` to create, `If-Match: <etag>` to
/// update). On 412 (someone else wrote it since the read) re-reads it once and recomputes: done
/// when it already matches, refused when it is no longer netstep's, else one more guarded PUT.
/// Returns the response body, `None` when no write was needed after all.
pub async fn put_guarded(arm: &ArmClient, op: &PutOp, wait: bool) -> Result<Option<Value>> {
    let mut op = op.clone();
    let mut reread_done = false;
    loop {
        match arm
            .put_with(&op.id, &op.body, &options(&op.cond, wait))
            .await
        {
            Ok(v) => return Ok(Some(v)),
            Err(e) if e.status() == Some(412) && !reread_done => {
                reread_done = true;
                warn!(resource = %op.id, error = %e, "precondition failed: re-reading once");
                let current = reread(arm, &op).await?;
                if let Some(c) = &current
                    && !resources::is_managed(c)
                {
                    return Err(Error::Other(format!(
                        "{} {} was created or changed concurrently by someone else and is not managed by netstep; not overwriting it",
                        op.kind.noun(),
                        op.id
                    )));
                }
                match put_for(op.kind, &op.id, &op.zone_id, &op.desired, current.as_ref()) {
                    None => {
                        info!(resource = %op.id, "already as intended after the concurrent write");
                        return Ok(None);
                    }
                    Some((next, _)) => op = next,
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Runs `ops` with at most [`PARALLEL_WRITES`] in flight; after the first failure no new one
/// starts. Returns each op's result in input order, or the first error.
pub async fn put_all(
    arm: &ArmClient,
    ops: &[PutOp],
    wait: bool,
) -> Result<Vec<(PutOp, Option<Value>)>> {
    let failed = Arc::new(AtomicBool::new(false));
    let results: Vec<(usize, Option<Result<Option<Value>>>)> =
        futures::stream::iter(ops.iter().enumerate())
            .map(|(i, op)| {
                let failed = failed.clone();
                async move {
                    if failed.load(Ordering::Relaxed) {
                        return (i, None);
                    }
                    let r = put_guarded(arm, op, wait).await;
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    (i, Some(r))
                }
            })
            .buffer_unordered(PARALLEL_WRITES)
            .collect()
            .await;
    let mut by_index: BTreeMap<usize, Result<Option<Value>>> = BTreeMap::new();
    for (i, r) in results {
        if let Some(r) = r {
            by_index.insert(i, r);
        }
    }
    let mut out = Vec::with_capacity(ops.len());
    let mut first_err = None;
    for (i, r) in by_index {
        match r {
            Ok(v) => out.push((ops[i].clone(), v)),
            Err(e) if first_err.is_none() => first_err = Some(e),
            Err(e) => warn!(resource = %ops[i].id, error = %e, "another write failed too"),
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Deletes `ops` (waiting for each), at most [`PARALLEL_WRITES`] at once.
pub async fn delete_all(arm: &ArmClient, ops: &[DeleteOp]) -> Result<()> {
    let results: Vec<Result<(), ArmError>> = futures::stream::iter(ops)
        .map(|op| async move {
            info!(resource = %op.id, kind = op.kind.noun(), "deleting");
            arm.delete(&op.id).await
        })
        .buffer_unordered(PARALLEL_WRITES)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(())
}

/// Whether a link has settled: `Some(true)` done, `Some(false)` failed, `None` still going.
pub fn link_settled(link: &Value) -> Option<bool> {
    let p = link.get("properties")?;
    let prov = p.get("provisioningState").and_then(Value::as_str)?;
    match prov.to_ascii_lowercase().as_str() {
        "failed" | "canceled" | "cancelled" => Some(false),
        "succeeded" => {
            let state = p.get("virtualNetworkLinkState").and_then(Value::as_str)?;
            state.eq_ignore_ascii_case("completed").then_some(true)
        }
        _ => None,
    }
}

/// Waits until every link in `names` (lower-case) of `zone_id` is `Succeeded` and `Completed`,
/// polling the zone's link LIST (one call per page), never a per-link GET.
pub async fn wait_links(
    arm: &ArmClient,
    zone_id: &str,
    names: &BTreeSet<String>,
    poll: Duration,
    max_wait: Duration,
) -> Result<()> {
    let started = Instant::now();
    let mut missing_polls = 0u32;
    loop {
        let links = list_links(arm, zone_id).await?;
        let by_name: BTreeMap<String, &Value> = links.iter().map(|l| (name_lc(l), l)).collect();
        let mut pending = Vec::new();
        let mut missing = Vec::new();
        for n in names {
            match by_name.get(n) {
                None => missing.push(n.clone()),
                Some(l) => match link_settled(l) {
                    Some(true) => {}
                    Some(false) => {
                        let state = l
                            .pointer("/properties/provisioningState")
                            .and_then(Value::as_str)
                            .unwrap_or("?");
                        return Err(ArmError::new(
                            ArmErrorKind::OperationFailed,
                            "PUT",
                            format!("{zone_id}/virtualNetworkLinks/{n}"),
                            format!("the virtual network link ended in provisioningState {state}"),
                        )
                        .into());
                    }
                    None => pending.push(n.clone()),
                },
            }
        }
        if !missing.is_empty() {
            missing_polls += 1;
            if missing_polls > MISSING_POLLS {
                return Err(ArmError::new(
                    ArmErrorKind::OperationFailed,
                    "PUT",
                    format!("{zone_id}/virtualNetworkLinks"),
                    format!(
                        "link(s) {} accepted by ARM are missing from the zone's list: the operation failed or they were deleted concurrently",
                        missing.join(", ")
                    ),
                )
                .into());
            }
        }
        if pending.is_empty() && missing.is_empty() {
            info!(zone = %zone_id, links = names.len(), elapsed_ms = started.elapsed().as_millis() as u64, "links Succeeded and Completed");
            return Ok(());
        }
        if started.elapsed() >= max_wait {
            return Err(ArmError::new(
                ArmErrorKind::Timeout,
                "GET",
                format!("{zone_id}/virtualNetworkLinks"),
                format!(
                    "links not Succeeded/Completed after {max_wait:?}: {}",
                    pending
                        .iter()
                        .chain(&missing)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .into());
        }
        debug!(zone = %zone_id, pending = pending.len(), missing = missing.len(), "waiting for links");
        tokio::time::sleep(poll).await;
    }
}
