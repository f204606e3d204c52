//! `admin-rules`: Security admin configuration, rule collections and rules (global guardrails above NSGs), committed as goal states.
//!
//! Flags and exit codes are the shared step contract ([`netstep::step`], docs/exit-codes.md).
//!
//! The loop:
//! 1. the run's intent; with a state store, the `tag-groups` record of the same run (converged,
//!    same intent digest) gives the group ids, else they are derived from the intent (plan mode
//!    works before the groups exist);
//! 2. reads: one list of configurations, one of the intent configuration's rule collections,
//!    one of rules per collection, one `listDeploymentStatus` ([`reconcile::read`]);
//! 3. the plan: creates/updates of the configuration, collections and rules (only what
//!    differs: one changed rule is one write), `- delete` for managed ones the intent dropped,
//!    and the per-region SecurityAdmin goal-state commits ([`reconcile::plan`]);
//! 4. apply: rule deletes, configuration, collections, rules (priority-safe order), collection
//!    deletes, the commits (waiting for `Deployed`), then deletes of dropped configurations
//!    (already undeployed by the commit). Deletes need `--prune`;
//! 5. the record (goal state, commits, the env-isolation guardrail) and the outputs
//!    `changes`, `record`, `committed-regions`.

pub mod desired;
pub mod guardrail;
pub mod reconcile;

use std::collections::BTreeMap;

use clap::Parser;
use netstep::avnm::{self, WaitConfig};
use netstep::context::StepContext;
use netstep::error::{Error, Result};
use netstep::step::{CommonArgs, Outcome, StepArgs};
use netstep::{ExitStatus, arm::DeleteOptions};
use serde_json::json;
use tracing::{info, warn};

/// The step's name (record file, logs).
pub const STEP: &str = "admin-rules";

/// The upstream step that owns the network manager and the groups.
pub const UPSTREAM: &str = "tag-groups";

/// Flags of `admin-rules`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "admin-rules",
    version,
    about = "Security admin configuration, rule collections and rules (global guardrails above NSGs), committed as goal states."
)]
pub struct Args {
    /// The flags every step shares.
    #[command(flatten)]
    pub common: CommonArgs,

    /// Also delete managed rules, collections and configurations the intent dropped (a
    /// configuration is undeployed by the commit first). Without it, apply refuses a plan that
    /// deletes.
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
    let ctx = StepContext::init(STEP, args.common.clone()).await?;
    if ctx.args.snapshot_only {
        return ctx.finish_snapshot_only();
    }
    let lock = ctx.lock().await?;
    let result = reconcile_run(&ctx, args.prune).await;
    // Release the lease on every path: a refused or failed apply must not make the next step
    // wait for the lease to expire.
    if let Some(l) = lock {
        match (l.release().await, &result) {
            (Err(e), Ok(_)) => return Err(e.into()),
            (Err(e), Err(_)) => warn!(error = %e, "releasing the network lease failed"),
            _ => {}
        }
    }
    let (plan, report, goal, committed) = result?;
    let mut outputs = BTreeMap::new();
    outputs.insert(
        "committed-regions".to_string(),
        serde_json::to_string(&committed).unwrap_or_else(|_| "[]".into()),
    );
    let extra = json!({
        "goal-state": goal,
        "commits": plan.notes,
        "committed-regions": committed,
        "guardrail": report,
    });
    ctx.finish(&plan, outputs, ExitStatus::Converged, extra)
        .await
}

type RunResult = (
    netstep::plan::Plan,
    guardrail::GuardrailReport,
    avnm::GoalState,
    Vec<String>,
);

/// Reads, plans, prints, and in apply mode writes and commits.
async fn reconcile_run(ctx: &StepContext, prune: bool) -> Result<RunResult> {
    let recorded = ctx.upstream_group_ids().await?.ids.unwrap_or_default();
    let groups = desired::group_ids(&ctx.intent, &recorded);
    let want = desired::desired(&ctx.intent, &groups);
    let nm_id = ctx.intent.network_manager_id();
    let regions: Vec<String> = ctx
        .intent
        .region_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    let (g_rules, g_endpoints) = desired::guardrail_inputs(&ctx.intent);
    let report = guardrail::env_isolation(&g_rules, &g_endpoints);

    let actual = reconcile::read(&ctx.arm, &nm_id, want.as_ref(), &regions).await?;
    let work = reconcile::plan(want.as_ref(), &actual, &regions)?;

    println!(
        "{STEP}: run {} intent {} mode {}",
        ctx.run_key, ctx.intent_digest, ctx.args.mode
    );
    print!("{}", work.plan.render());
    for line in report.summary() {
        println!("  # {line}");
    }

    let mut committed: Vec<String> = Vec::new();
    if ctx.apply() {
        if work.has_deletes() && !prune {
            let n = work.plan.counts().2;
            return Err(Error::Other(format!(
                "the plan deletes {n} managed resource(s) the intent dropped; apply deletes only with --prune (nothing was written)"
            )));
        }
        if !work.plan.is_empty() && !actual.nm_exists {
            return Err(Error::Other(format!(
                "network manager {nm_id} does not exist; {UPSTREAM} creates it (nothing was written)"
            )));
        }
        committed = apply(ctx, &work, &nm_id).await?;
    }
    Ok((work.plan, report, work.goal, committed))
}

fn force(id: &str, deployed: bool) -> String {
    if deployed {
        format!("{id}?force=true")
    } else {
        id.to_string()
    }
}

/// The writes, in the safe order (see the crate docs). Returns the committed regions.
async fn apply(ctx: &StepContext, work: &reconcile::Work, nm_id: &str) -> Result<Vec<String>> {
    let arm = &ctx.arm;
    for id in &work.rule_deletes {
        info!(rule = %id, "deleting admin rule dropped from the intent");
        arm.delete_with(&force(id, work.config_deployed), &DeleteOptions::default())
            .await?;
    }
    if let Some((id, body)) = &work.config_put {
        info!(configuration = %id, "writing security admin configuration");
        arm.put(id, body).await?;
    }
    // Collections are independent of each other: written concurrently, bounded.
    netstep::concurrent::try_map_bounded(
        &work.collection_puts,
        netstep::concurrent::PARALLEL,
        |(id, body)| async move {
            info!(collection = %id, "writing rule collection");
            arm.put(id, body).await
        },
    )
    .await?;
    // Rules one after another: their order is the safe order when rules take each other's
    // priorities (a collection's priorities are unique at every moment).
    for w in &work.rule_puts {
        info!(rule = %w.id, priority = %w.body["properties"]["priority"], "writing admin rule");
        arm.put(&w.id, &w.body).await?;
    }
    for id in &work.collection_deletes {
        info!(collection = %id, "deleting rule collection dropped from the intent");
        arm.delete(&force(id, work.config_deployed)).await?;
    }
    let batches = work.batches();
    let wrote = work.config_put.is_some()
        || !work.rule_deletes.is_empty()
        || !work.collection_puts.is_empty()
        || !work.rule_puts.is_empty()
        || !work.collection_deletes.is_empty();
    if !batches.is_empty() {
        // commitTime has whole seconds: commit in a later second than the last write of the
        // content (ours, or an earlier run's that was killed before its commit), so that the
        // next run can tell those writes (before the commit) from later changes.
        let now = time::OffsetDateTime::now_utc();
        let next_second = now.replace_nanosecond(0).unwrap_or(now) + time::Duration::seconds(1);
        let not_before = match (wrote, work.content_modified) {
            (true, m) => Some(m.map_or(next_second, |m| m.max(next_second))),
            (false, m) => m,
        };
        if let Some(t) = not_before.filter(|t| *t > now) {
            let wait = (t - now) + time::Duration::milliseconds(50);
            tokio::time::sleep(wait.try_into().unwrap_or_default()).await;
        }
    }
    let committed = avnm::commit_and_wait(
        arm,
        nm_id,
        reconcile::COMMIT_TYPE,
        &batches,
        WaitConfig::from_env(),
    )
    .await?;
    for id in &work.config_deletes {
        info!(configuration = %id, "deleting security admin configuration dropped from the intent (undeployed)");
        arm.delete(id).await?;
    }
    Ok(committed)
}
