//! `vnets`: the VNets and hub firewalls the intent declares as managed (`managed: true`).
//! The first step of pipeline-infra: every later step finds the VNets it works on.
//!
//! Flags and exit codes are the shared step contract ([`netstep::step`], docs/exit-codes.md).
//!
//! The loop:
//! 1. **Read** (list calls, no per-resource GETs): the VNets of every resource group holding a
//!    declared VNet; for managed firewalls the public IPs and firewalls of their resource
//!    groups and the firewall policies of the policies' resource group (to associate the
//!    region's child policy at creation when it exists).
//! 2. **Diff** ([`reconcile`]): managed VNets (location, address space, subnets' prefixes, DNS
//!    servers; tags are tag-groups' job, but every PUT carries the merged tags and the
//!    `managed-by: netstep` tag), their peerings' sync level, managed firewalls (SKU tier,
//!    zones, ipConfiguration in the hub's `AzureFirewallSubnet` with the public IP) and their
//!    public IPs (Standard, static). Existing (unmanaged) VNets are read only.
//! 3. **Plan** on stdout. Refusals (a prefix removed or shrunk under a subnet, a subnet in use
//!    removed or re-addressed) stop the step with exit 2 in plan and apply mode alike, before
//!    any write, with `FILE:LINE:COL: path: message` naming the VNet, prefix and subnet.
//! 4. **Apply** under the network lease: VNets (PUT, LRO), public IPs, firewalls (PUT without
//!    waiting, then polled together with progress lines every 30 s and a bounded timeout, exit
//!    75 past it), then the peering resync of every VNet whose address space changed or whose
//!    peerings are out of sync (`PUT ...?syncRemoteAddressSpace=true` on the out-of-sync
//!    side), verified `FullyInSync`.
//! 5. **Record** and Argo outputs (`changes`, `record`, `vnet-ids`) last.

pub mod bodies;
pub mod reconcile;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{StreamExt, TryStreamExt, stream};
use netstep::arm::{ArmClient, ArmError, ArmErrorKind, PutOptions};
use netstep::context::{StepContext, env_ms};
use netstep::error::{Error, ExitStatus, Result};
use netstep::intent::IntentError;
use netstep::step::{CommonArgs, Outcome, StepArgs};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::reconcile::{Actual, Put, Work};

/// The step's name (record file, logs).
pub const STEP: &str = "vnets";

/// Writes in flight at once (VNets and public IPs).
pub const PARALLEL_WRITES: usize = 4;

/// Default delay between polls of a provisioning firewall, and of peering sync levels.
pub const POLL: Duration = Duration::from_secs(10);

/// How often a progress line is logged while firewalls provision.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// How long peerings may take to report `FullyInSync` after a resync.
pub const SYNC_MAX_WAIT: Duration = Duration::from_secs(300);

/// Flags of `vnets`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "vnets",
    version,
    about = "The managed VNets (address space, subnets, DNS servers) and hub firewalls of the intent."
)]
pub struct Args {
    /// The flags every step shares.
    #[command(flatten)]
    pub common: CommonArgs,

    /// In apply mode, also delete subnets of managed VNets that the intent does not declare
    /// (only when nothing uses them). Without it they are kept and shown in the plan.
    #[arg(long, env = "NETSTEP_PRUNE")]
    pub prune: bool,

    /// How long to wait for firewalls to provision (seconds) before giving up with exit 75
    /// (the operation continues in Azure; a rerun picks it up).
    #[arg(long, env = "NETSTEP_FIREWALL_TIMEOUT_SECS", default_value_t = 1800)]
    pub firewall_timeout_secs: u64,
}

impl StepArgs for Args {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

/// Runs the step.
pub async fn run(args: Args) -> Result<Outcome> {
    let prune = args.prune;
    let fw_timeout = Duration::from_secs(args.firewall_timeout_secs.max(1));
    let ctx = StepContext::init(STEP, args.common).await?;
    if ctx.args.snapshot_only {
        return ctx.finish_snapshot_only();
    }
    let lock = ctx.lock().await?;
    let result = converge(&ctx, prune, fw_timeout).await;
    if let Some(lock) = lock {
        match (lock.release().await, &result) {
            (Err(e), Ok(_)) => return Err(e.into()),
            (Err(e), Err(_)) => warn!(error = %e, "releasing the network lease failed"),
            _ => {}
        }
    }
    let (work, extra) = result?;
    let ids: Vec<String> = ctx.intent.vnets().into_iter().map(|v| v.id).collect();
    let mut outputs = BTreeMap::new();
    outputs.insert(
        "vnet-ids".to_string(),
        serde_json::to_string(&ids).unwrap_or_default(),
    );
    ctx.finish(&work.plan, outputs, ExitStatus::Converged, extra)
        .await
}

/// Read, diff, print, and (apply mode) write.
async fn converge(ctx: &StepContext, prune: bool, fw_timeout: Duration) -> Result<(Work, Value)> {
    let actual = read(&ctx.arm, &ctx.intent).await?;
    let work = reconcile::reconcile(&ctx.intent, &actual, prune);
    println!(
        "{STEP} · run {} · intent {} · mode {}{}",
        ctx.run_key,
        ctx.intent_digest,
        ctx.args.mode,
        if prune { " (--prune)" } else { "" }
    );
    print!("{}", work.plan.render());
    if !work.refusals.is_empty() {
        for r in &work.refusals {
            println!("  ! refused: {r}");
        }
        return Err(Error::Intent(IntentError::new(work.refusals.clone())));
    }
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
    let managed = ctx.intent.vnets().iter().filter(|v| v.managed).count();
    let mut extra = json!({
        "managed_vnets": managed,
        "vnet_writes": work.vnets.len(),
        "public_ip_writes": work.public_ips.len(),
        "firewall_writes": work.firewalls.len(),
        "firewalls_waited": work.firewalls_pending.len(),
        "resync_vnets": work.resync.len(),
        "prune": prune,
    });
    if !ctx.apply() {
        return Ok((work, extra));
    }
    if work.writes() == 0 && work.resync.is_empty() && work.firewalls_pending.is_empty() {
        info!("nothing to write: Azure matches the intent");
        return Ok((work, extra));
    }
    let arm = &ctx.arm;
    put_all(arm, &work.vnets).await?;
    put_all(arm, &work.public_ips).await?;
    let poll = env_ms("NETSTEP_LRO_POLL_MS").map_or(POLL, Duration::from_millis);
    let progress = env_ms("NETSTEP_PROGRESS_MS").map_or(PROGRESS_EVERY, Duration::from_millis);
    put_firewalls(
        arm,
        &work.firewalls,
        &work.firewalls_pending,
        Wait {
            poll,
            progress,
            timeout: fw_timeout,
        },
    )
    .await?;
    let mut resynced = 0;
    for vnet in &work.resync {
        resynced += resync_peerings(arm, vnet, poll).await?;
    }
    extra["peering_resyncs"] = json!(resynced);
    Ok((work, extra))
}

/// The reads: one list per resource group and collection.
pub async fn read(arm: &ArmClient, intent: &netstep::intent::Intent) -> Result<Actual> {
    let rg_path = |sub: &str, rg: &str, kind: &str| {
        format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/{kind}")
    };
    let vnets = intent.vnets();
    let vnet_paths: BTreeSet<String> = vnets
        .iter()
        .map(|v| rg_path(v.subscription, v.resource_group, "virtualNetworks"))
        .collect();
    let mut fw_paths = BTreeSet::new();
    for v in &vnets {
        if let Some(fw) = v.firewall.filter(|f| f.managed) {
            fw_paths.insert(rg_path(
                &fw.subscription,
                &fw.resource_group,
                "azureFirewalls",
            ));
            fw_paths.insert(rg_path(
                &fw.subscription,
                &fw.resource_group,
                "publicIPAddresses",
            ));
        }
    }
    let policy_paths: BTreeSet<String> = if fw_paths.is_empty() {
        BTreeSet::new()
    } else {
        intent
            .firewall_policies()
            .iter()
            .filter(|p| p.firewall_managed)
            .map(|p| rg_path(&p.subscription, &p.resource_group, "firewallPolicies"))
            .collect()
    };
    let list_all = |paths: BTreeSet<String>| async move {
        stream::iter(paths)
            .map(|p| async move { arm.list(&p).await })
            .buffered(PARALLEL_WRITES)
            .try_concat()
            .await
    };
    let (v, f, p) = futures::try_join!(
        list_all(vnet_paths),
        list_all(fw_paths),
        list_all(policy_paths)
    )?;
    let key = |x: &Value| x["id"].as_str().map(str::to_ascii_lowercase);
    let mut actual = Actual::default();
    for x in v {
        if let Some(k) = key(&x) {
            actual.vnets.insert(k, x);
        }
    }
    for x in f {
        let Some(k) = key(&x) else { continue };
        if k.contains("/providers/microsoft.network/azurefirewalls/") {
            actual.firewalls.insert(k, x);
        } else {
            actual.public_ips.insert(k, x);
        }
    }
    for x in p {
        if let Some(k) = key(&x) {
            actual.policies.insert(k);
        }
    }
    Ok(actual)
}

fn put_options(p: &Put, wait: bool) -> PutOptions {
    PutOptions {
        if_none_match: p.create.then(|| "*".to_string()),
        if_match: if p.create { None } else { p.etag.clone() },
        wait,
        ..PutOptions::default()
    }
}

/// PUTs, a few in flight, each awaited to completion (LRO).
async fn put_all(arm: &ArmClient, puts: &[Put]) -> Result<()> {
    stream::iter(puts)
        .map(|p| async move {
            info!(resource = %p.id, create = p.create, "writing");
            arm.put_with(&p.id, &p.body, &put_options(p, true)).await
        })
        .buffer_unordered(PARALLEL_WRITES)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// How firewalls are waited for.
#[derive(Debug, Clone, Copy)]
struct Wait {
    poll: Duration,
    progress: Duration,
    timeout: Duration,
}

/// Firewalls: every PUT is sent without waiting on each, then all (with those an earlier run
/// left provisioning) are polled together (one list per resource group and round) until each reports a terminal provisioning state,
/// with a progress line every `progress` ([`PROGRESS_EVERY`]) and `timeout` overall (exit 75:
/// the operations continue in Azure and a rerun waits for them without writing again).
async fn put_firewalls(
    arm: &ArmClient,
    puts: &[Put],
    already: &[String],
    wait: Wait,
) -> Result<()> {
    if puts.is_empty() && already.is_empty() {
        return Ok(());
    }
    for p in puts {
        info!(resource = %p.id, create = p.create, "writing firewall (long-running)");
        arm.put_with(&p.id, &p.body, &put_options(p, false)).await?;
    }
    let Wait {
        poll,
        progress,
        timeout,
    } = wait;
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut pending: Vec<&str> = puts
        .iter()
        .map(|p| p.id.as_str())
        .chain(already.iter().map(String::as_str))
        .collect();
    loop {
        // One list per resource group and round (not a GET per firewall).
        let mut states: BTreeMap<String, String> = BTreeMap::new();
        let lists: BTreeSet<String> = pending
            .iter()
            .filter_map(|id| {
                let i = id.to_ascii_lowercase().rfind("/azurefirewalls/")?;
                Some(format!("{}/azureFirewalls", &id[..i]))
            })
            .collect();
        for path in &lists {
            for f in arm.list(path).await? {
                if let (Some(id), Some(st)) = (
                    f["id"].as_str(),
                    f["properties"]["provisioningState"].as_str(),
                ) {
                    states.insert(lc(id), st.to_string());
                }
            }
        }
        let mut still = Vec::new();
        for id in &pending {
            let state = states
                .get(&lc(id))
                .cloned()
                .unwrap_or_else(|| "NotFound".to_string());
            match state.as_str() {
                "Succeeded" => {
                    info!(resource = %id, elapsed_s = started.elapsed().as_secs(), "firewall provisioned")
                }
                "Failed" | "Canceled" => {
                    return Err(Error::Arm(ArmError::new(
                        ArmErrorKind::OperationFailed,
                        "PUT",
                        *id,
                        format!("the firewall ended in provisioningState {state}"),
                    )));
                }
                _ => still.push((*id, state)),
            }
        }
        if still.is_empty() {
            return Ok(());
        }
        if last_progress.elapsed() >= progress {
            for (id, state) in &still {
                info!(resource = %id, elapsed_s = started.elapsed().as_secs(), provisioning_state = %state, "waiting for firewall");
            }
            last_progress = Instant::now();
        }
        if started.elapsed() >= timeout {
            return Err(Error::Arm(ArmError::new(
                ArmErrorKind::Timeout,
                "PUT",
                still[0].0,
                format!(
                    "{} firewall(s) still provisioning after {} s (--firewall-timeout-secs); the operations continue in Azure, a rerun waits for them",
                    still.len(),
                    timeout.as_secs()
                ),
            )));
        }
        pending = still.into_iter().map(|(id, _)| id).collect();
        tokio::time::sleep(poll).await;
    }
}

fn remote_of(p: &Value) -> Option<&str> {
    p["properties"]["remoteVirtualNetwork"]["id"].as_str()
}

fn level(p: &Value) -> &str {
    p["properties"]["peeringSyncLevel"]
        .as_str()
        .unwrap_or("FullyInSync")
}

async fn sync_peering(arm: &ArmClient, p: &Value) -> Result<()> {
    let Some(id) = p["id"].as_str() else {
        return Ok(());
    };
    info!(peering = %id, sync_level = level(p), "resyncing the peering's remote address space");
    let body = bodies::peering_sync_body(p);
    arm.put_with(
        &format!("{id}?syncRemoteAddressSpace=true"),
        &body,
        &PutOptions::default(),
    )
    .await?;
    Ok(())
}

/// Brings every peering of `vnet` to `FullyInSync`: a peering whose local copy of the remote
/// space is stale is resynced on this side; one whose remote side is stale is resynced on the
/// remote VNet. AVNM's own peerings are AVNM's to sync (it reapplies its goal state); they are
/// only verified. Returns the number of resync PUTs.
async fn resync_peerings(arm: &ArmClient, vnet: &str, poll: Duration) -> Result<usize> {
    let started = Instant::now();
    let mut puts = 0;
    let mut synced: BTreeSet<String> = BTreeSet::new();
    loop {
        let peerings = arm.list(&format!("{vnet}/virtualNetworkPeerings")).await?;
        let stale: Vec<&Value> = peerings
            .iter()
            .filter(|p| level(p) != "FullyInSync")
            .collect();
        if stale.is_empty() {
            info!(vnet, resyncs = puts, "peerings FullyInSync");
            return Ok(puts);
        }
        for p in &stale {
            if bodies::is_avnm_peering(p) {
                continue;
            }
            let name = p["name"].as_str().unwrap_or_default().to_string();
            if level(p).starts_with("Local") && synced.insert(lc(p["id"].as_str().unwrap_or(&name)))
            {
                sync_peering(arm, p).await?;
                puts += 1;
            }
            if level(p).contains("Remote")
                && let Some(remote) = remote_of(p)
            {
                let theirs = arm
                    .list(&format!("{remote}/virtualNetworkPeerings"))
                    .await?;
                for q in theirs.iter().filter(|q| {
                    remote_of(q).is_some_and(|r| r.eq_ignore_ascii_case(vnet))
                        && level(q) != "FullyInSync"
                        && !bodies::is_avnm_peering(q)
                }) {
                    if synced.insert(lc(q["id"].as_str().unwrap_or_default())) {
                        sync_peering(arm, q).await?;
                        puts += 1;
                    }
                }
            }
        }
        if started.elapsed() >= SYNC_MAX_WAIT {
            return Err(Error::Arm(ArmError::new(
                ArmErrorKind::Timeout,
                "PUT",
                vnet,
                format!(
                    "peerings still out of sync after {} s: {:?}",
                    SYNC_MAX_WAIT.as_secs(),
                    stale
                        .iter()
                        .map(|p| format!("{} {}", p["name"].as_str().unwrap_or("?"), level(p)))
                        .collect::<Vec<_>>()
                ),
            )));
        }
        tokio::time::sleep(poll).await;
    }
}

fn lc(s: &str) -> String {
    s.to_ascii_lowercase()
}
