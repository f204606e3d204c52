//! `mesh-connect`: Global hub mesh and per-region hub-and-spoke connectivity configurations, committed as per-region goal states.
//!
//! Flags and exit codes are the shared step contract ([`netstep::step`], docs/exit-codes.md).
//!
//! # What it does
//!
//! 1. **Inputs.** The run's intent; the network group ids from this run's `tag-groups` record
//!    (converged, same intent digest, `group-ids` output), or derived from the intent without a
//!    state store, and in plan mode before `tag-groups` applied ([`upstream`]).
//! 2. **Reads, one call per collection.** `GET .../connectivityConfigurations?$top=20`
//!    (paged with `nextLink`) and one `POST .../listDeploymentStatus` for the Connectivity type
//!    in every region (no region filter, so regions the intent no longer has are seen too).
//! 3. **Desired.** [`desired::desired_configs`]: the mesh (`Mesh`, `isGlobal "True"`, on its
//!    group) and one `HubAndSpoke` per region (hub = the region's hub VNet, applied to the
//!    derived `G-<region>` spoke groups), with the description marker. Only configurations
//!    whose semantic diff is non-empty are written. A configuration without netstep's marker
//!    is never modified: holding a desired name, it is a conflict (apply refuses).
//! 4. **Goal state.** [`desired::goal_state`]: per region, the whole set of Connectivity
//!    configurations that must run there, from the whole intent (the mesh in every region
//!    with a hub, each hub-and-spoke in its region), plus what netstep must not undeploy.
//!    [`netstep::avnm::regions_to_commit`] decides which regions to commit: deployed set
//!    differs, last deployment failed, or a managed configuration was modified after the
//!    region's last commit (`systemData.lastModifiedAt` from the list, and the configurations
//!    this run writes). Regions with the same set are committed together, then the step waits
//!    with `listDeploymentStatus` until each is `Deployed` with exactly its set. A region
//!    already on its goal but still `Deploying` (an earlier run stopped during its wait) is
//!    waited for, not committed again.
//! 5. **Record** (written last): outputs `deployed-regions` (regions committed by this run),
//!    `changes`, `record`; extra: the goal state and commit time per region.
//!
//! # Dropped configurations and `--prune`
//!
//! A managed configuration that the intent no longer has (a region removed from
//! `hub_and_spoke.regions`, a renamed template, a removed mesh) is shown by the plan as
//! `- delete`, with the goal-state change that deleting it needs. Reasoning:
//!
//! - A deployed configuration cannot be deleted (ARM answers 409 unless `force=true`, which
//!   undeploys it behind the goal state's back). The safe order is: commit every region that
//!   runs it with a goal state **without** it (undeploy), wait until `Deployed`, then delete.
//!   `--prune` does exactly that, after the creates/updates, so that a rename swaps old for
//!   new in one commit per region instead of leaving a region without connectivity.
//! - Without `--prune`, apply **refuses before any write** (exit 1, the message names the
//!   configurations). It does not apply the rest of the plan either: a rename is a create
//!   plus a delete, and applying only the create would deploy the old and the new
//!   hub-and-spoke side by side on the same spokes. Nothing half-done, nothing undeployed.
//! - The goal-state rule stays independent of that refusal: unless pruning, a goal state
//!   *keeps* deployed managed configurations the intent dropped ([`desired::goal_state`]),
//!   so no commit computed without `--prune` can ever undeploy them. A plan without
//!   `--prune` therefore shows the commits it would make as they are, and states separately
//!   what `--prune` would commit and delete.
//! - Configurations netstep does not manage are never undeployed: every goal state keeps
//!   them where they are deployed (a goal-state commit would otherwise remove them). Their
//!   modification times never trigger a commit. A deployed configuration id that no longer
//!   exists is left out of the goal (it cannot be committed).

pub mod desired;
pub mod upstream;

use std::collections::{BTreeMap, BTreeSet};

use clap::Parser;
use netstep::avnm::{self, RegionChange, RegionStatus, WaitConfig};
use netstep::context::StepContext;
use netstep::error::{Error, ExitStatus, Result};
use netstep::plan::Plan;
use netstep::resources;
use netstep::state::LockGuard;
use netstep::step::{CommonArgs, Outcome, StepArgs};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use tracing::{info, warn};

use crate::desired::{
    ActualConfig, ConfigPlan, desired_configs, goal_state, index_actual, lc, modified_at,
    plan_configs,
};

/// The step's name (record file, logs).
pub const STEP: &str = "mesh-connect";

/// The AVNM commit type this step deploys.
pub const COMMIT_TYPE: &str = "Connectivity";

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

    /// Undeploy (goal-state commit without them) and then delete the managed connectivity
    /// configurations the intent dropped. Without it, apply refuses a plan that deletes.
    #[arg(long, env = "NETSTEP_PRUNE")]
    pub prune: bool,
}

impl StepArgs for Args {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

/// What a successful reconcile hands to [`StepContext::finish`].
struct Done {
    plan: Plan,
    outputs: BTreeMap<String, String>,
    extra: Value,
}

/// Runs the step.
pub async fn run(args: Args) -> Result<Outcome> {
    let prune = args.prune;
    let ctx = StepContext::init(STEP, args.common).await?;
    if ctx.args.snapshot_only {
        return ctx.finish_snapshot_only();
    }
    let lock = ctx.lock().await?;
    let result = reconcile(&ctx, prune, lock.as_ref()).await;
    if let Some(lock) = lock {
        let released = lock.release().await;
        match (&result, released) {
            (Ok(_), Err(e)) => return Err(e.into()),
            (Err(_), Err(e)) => warn!(error = %e, "releasing the network lease failed"),
            _ => {}
        }
    }
    let done = result?;
    ctx.finish(&done.plan, done.outputs, ExitStatus::Converged, done.extra)
        .await
}

fn check_lock(lock: Option<&LockGuard>) -> Result<()> {
    if let Some(l) = lock {
        l.check()?;
    }
    Ok(())
}

/// Lists the connectivity configurations: `Ok(None)` when the network manager does not exist.
async fn list_configs(ctx: &StepContext, nm: &str) -> Result<Option<Vec<Value>>> {
    match ctx
        .arm
        .list(&format!("{nm}/connectivityConfigurations?$top=20"))
        .await
    {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.status() == Some(404) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The Connectivity deployment status of every region (one POST, no region filter).
async fn read_status(ctx: &StepContext, nm: &str) -> Result<BTreeMap<String, RegionStatus>> {
    let values = ctx
        .arm
        .post_list(
            &format!("{nm}/listDeploymentStatus"),
            &json!({"deploymentTypes": [COMMIT_TYPE]}),
        )
        .await?;
    Ok(avnm::parse_deployment_status(&values, COMMIT_TYPE))
}

/// Waits until every region of `regions` reports `Deployed` (a deployment started by an
/// earlier run); returns their commit times. `Failed` surfaces its `errorMessage`.
async fn wait_deployed(
    ctx: &StepContext,
    nm: &str,
    regions: &[String],
    wait: WaitConfig,
) -> Result<BTreeMap<String, String>> {
    let started = tokio::time::Instant::now();
    info!(regions = ?regions, "waiting for deployments already in progress");
    loop {
        let st = read_status(ctx, nm).await?;
        let mut pending = Vec::new();
        let mut times = BTreeMap::new();
        for r in regions {
            match st.get(r) {
                Some(s) if s.status == "Deployed" => {
                    if let Some(t) = s.commit_time {
                        times.insert(r.clone(), rfc3339(t));
                    }
                }
                Some(s) if s.status == "Failed" => {
                    return Err(avnm::deployment_failed(nm, COMMIT_TYPE, r, s));
                }
                Some(s) => pending.push(format!("{r}: {}", s.status)),
                None => pending.push(format!("{r}: (no status yet)")),
            }
        }
        if pending.is_empty() {
            return Ok(times);
        }
        if started.elapsed() > wait.max_wait {
            return Err(Error::Other(format!(
                "{COMMIT_TYPE} deployment not complete after {:?}: {}",
                wait.max_wait,
                pending.join(", ")
            )));
        }
        tokio::time::sleep(wait.poll_interval).await;
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Plan notes for configurations the intent dropped, when not pruning: what `--prune` does.
fn prune_notes(
    dropped: &[ActualConfig],
    deployed: &BTreeMap<String, RegionStatus>,
    with_prune: &[RegionChange],
) -> Vec<String> {
    let mut notes = Vec::new();
    for d in dropped {
        let regions: Vec<&str> = deployed
            .iter()
            .filter(|(_, s)| s.configuration_ids.iter().any(|i| lc(i) == lc(&d.id)))
            .map(|(r, _)| r.as_str())
            .collect();
        let undeploy: Vec<String> = with_prune
            .iter()
            .filter(|c| c.removed.iter().any(|n| lc(n) == lc(&d.name)))
            .map(|c| c.note(COMMIT_TYPE))
            .collect();
        let how = if undeploy.is_empty() {
            "it is not deployed anywhere, so it is deleted directly".to_string()
        } else {
            format!("first {}, then delete", undeploy.join("; "))
        };
        notes.push(format!(
            "{} was dropped from the intent (deployed in [{}]): apply refuses without --prune; with --prune: {how}",
            d.name,
            regions.join(", ")
        ));
    }
    notes
}

async fn reconcile(ctx: &StepContext, prune: bool, lock: Option<&LockGuard>) -> Result<Done> {
    let apply = ctx.apply();
    let intent = &ctx.intent;
    let nm = intent.network_manager_id();
    let (groups, groups_from) = upstream::group_ids(ctx).await?;
    let desired = desired_configs(intent, &groups).map_err(Error::Other)?;

    // Reads: one list of the configurations, one deployment status for all regions.
    let (listed, deployed) = match list_configs(ctx, &nm).await? {
        Some(listed) => (listed, read_status(ctx, &nm).await?),
        None if apply => {
            return Err(Error::Other(format!(
                "network manager {nm} does not exist; tag-groups creates it (run it first)"
            )));
        }
        None => {
            warn!(network_manager = %nm, "network manager not found; planning from an empty estate");
            (Vec::new(), BTreeMap::new())
        }
    };
    let actual = index_actual(listed);
    let cp: ConfigPlan = plan_configs(&desired, &actual);
    let regions: Vec<String> = intent.region_names().iter().map(|r| lc(r)).collect();
    let mods = modified_at(&actual);
    let writes: BTreeSet<String> = cp.writes.iter().map(|d| lc(&d.id)).collect();
    let goal = goal_state(&regions, &desired, &actual, &deployed, prune);
    let commits = avnm::regions_to_commit(&goal, &deployed, &mods, &writes);
    info!(
        configurations = desired.len(),
        listed = actual.len(),
        writes = cp.writes.len(),
        dropped = cp.dropped.len(),
        regions_to_commit = commits.len(),
        groups_from = %groups_from,
        "plan computed"
    );

    let mut plan = Plan {
        changes: cp.changes.clone(),
        notes: commits.iter().map(|c| c.note(COMMIT_TYPE)).collect(),
    };
    for c in &cp.conflicts {
        plan.notes.push(format!(
            "! {} exists but is not managed by netstep (no {} in its description): apply refuses to modify it",
            c.id,
            resources::MANAGED_MARKER
        ));
    }
    if !cp.dropped.is_empty() {
        if prune {
            for d in &cp.dropped {
                plan.notes.push(format!(
                    "delete {} after the commits above have undeployed it",
                    d.name
                ));
            }
        } else {
            let goal_p = goal_state(&regions, &desired, &actual, &deployed, true);
            let with_prune = avnm::regions_to_commit(&goal_p, &deployed, &mods, &writes);
            plan.notes
                .extend(prune_notes(&cp.dropped, &deployed, &with_prune));
        }
    }
    println!(
        "{STEP}: run {} intent {} mode {}{}",
        ctx.run_key,
        ctx.intent_digest,
        ctx.args.mode,
        if prune { " (--prune)" } else { "" }
    );
    print!("{}", plan.render());

    let mut commit_times: BTreeMap<String, String> = deployed
        .iter()
        .filter_map(|(r, s)| Some((r.clone(), rfc3339(s.commit_time?))))
        .collect();
    let goal_json = |goal: &avnm::GoalState| -> Value {
        goal.iter()
            .map(|(r, ids)| (r.clone(), json!(ids)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };

    if !apply {
        let mut outputs = BTreeMap::new();
        outputs.insert("deployed-regions".into(), "[]".into());
        let extra = json!({
            "group_ids_from": groups_from,
            "goal_state": goal_json(&goal),
            "regions_to_commit": commits,
            "commit_times": commit_times,
        });
        return Ok(Done {
            plan,
            outputs,
            extra,
        });
    }

    // Preconditions, checked before the first write: nothing is half-applied.
    if !cp.conflicts.is_empty() {
        let ids: Vec<&str> = cp.conflicts.iter().map(|c| c.id.as_str()).collect();
        return Err(Error::Other(format!(
            "refusing to modify connectivity configurations not managed by netstep (no {} in their description): {}; rename the configuration in the intent or remove the foreign one (nothing was changed)",
            resources::MANAGED_MARKER,
            ids.join(", ")
        )));
    }
    if !cp.dropped.is_empty() && !prune {
        let names: Vec<&str> = cp.dropped.iter().map(|c| c.name.as_str()).collect();
        return Err(Error::Other(format!(
            "the intent dropped {} managed connectivity configuration(s): {}; apply refuses to undeploy and delete them without --prune (nothing was changed, they stay deployed). Re-run with --prune to commit the goal states without them, wait, then delete them",
            names.len(),
            names.join(", ")
        )));
    }

    // The configurations are independent of each other: written concurrently, bounded (the
    // client's write bucket paces them).
    netstep::concurrent::try_map_bounded(
        &cp.writes,
        netstep::concurrent::PARALLEL,
        |d| async move {
            check_lock(lock)?;
            info!(configuration = %d.name, id = %d.id, "writing connectivity configuration");
            ctx.arm.put(&d.id, &d.body).await?;
            Ok::<_, Error>(())
        },
    )
    .await?;

    let batches = avnm::batch_commits(&goal, &commits);
    let mut committed = Vec::new();
    if !batches.is_empty() {
        check_lock(lock)?;
        let (regions_done, status) = avnm::commit_and_wait_status(
            &ctx.arm,
            &nm,
            COMMIT_TYPE,
            &batches,
            WaitConfig::from_env(),
        )
        .await?;
        for (r, s) in status {
            if let Some(t) = s.commit_time {
                commit_times.insert(r, rfc3339(t));
            }
        }
        committed = regions_done;
    }
    committed.sort();
    committed.dedup();
    // A region already on its goal but still deploying (a previous run committed and stopped
    // before the end of its wait) is waited for, not committed again.
    let in_progress: Vec<String> = goal
        .keys()
        .filter(|r| !committed.contains(r))
        .filter(|r| deployed.get(*r).is_some_and(|s| s.status == "Deploying"))
        .cloned()
        .collect();
    if !in_progress.is_empty() {
        for (r, t) in wait_deployed(ctx, &nm, &in_progress, WaitConfig::from_env()).await? {
            commit_times.insert(r, t);
        }
    }

    let mut deleted = Vec::new();
    if prune {
        for d in &cp.dropped {
            check_lock(lock)?;
            info!(configuration = %d.name, id = %d.id, "deleting connectivity configuration dropped from the intent");
            ctx.arm.delete(&d.id).await?;
            deleted.push(d.id.clone());
        }
    }

    let mut outputs = BTreeMap::new();
    outputs.insert(
        "deployed-regions".into(),
        serde_json::to_string(&committed).unwrap_or_else(|_| "[]".into()),
    );
    let extra = json!({
        "group_ids_from": groups_from,
        "goal_state": goal_json(&goal),
        "commits": batches
            .iter()
            .map(|(regions, ids)| json!({"regions": regions, "configurationIds": ids}))
            .collect::<Vec<_>>(),
        "commit_times": commit_times,
        "deleted": deleted,
    });
    info!(
        written = cp.writes.len(),
        committed = committed.len(),
        deleted = deleted.len(),
        "connectivity converged"
    );
    Ok(Done {
        plan,
        outputs,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_notes_say_what_prune_would_commit_and_delete() {
        let d = ActualConfig {
            id: "/subscriptions/s/x/connectivityConfigurations/cc-old".into(),
            name: "cc-old".into(),
            managed: true,
            last_modified: None,
            body: Value::Null,
        };
        let deployed: BTreeMap<String, RegionStatus> = [(
            "eastus".to_string(),
            RegionStatus {
                status: "Deployed".into(),
                configuration_ids: [d.id.clone()].into(),
                commit_time: None,
                error_message: String::new(),
            },
        )]
        .into();
        let change = RegionChange {
            region: "eastus".into(),
            added: vec![],
            removed: vec!["cc-old".into()],
            redeployed: vec![],
            retry_failed: false,
        };
        let notes = prune_notes(std::slice::from_ref(&d), &deployed, &[change]);
        assert_eq!(
            notes,
            vec![
                "cc-old was dropped from the intent (deployed in [eastus]): apply refuses without --prune; with --prune: first commit Connectivity eastus: - cc-old, then delete"
            ]
        );
        let notes = prune_notes(&[d], &BTreeMap::new(), &[]);
        assert!(notes[0].contains("deleted directly"), "{notes:?}");
    }

    #[test]
    fn prune_is_a_flag_off_by_default() {
        let a = Args::try_parse_from(["mesh-connect", "--intent=x.yaml"]).unwrap();
        assert!(!a.prune);
        let a = Args::try_parse_from(["mesh-connect", "--intent=x.yaml", "--prune"]).unwrap();
        assert!(a.prune);
    }
}
