//! The step's input from the previous step of the run: the `tag-groups` record.

use netstep::context::StepContext;
use netstep::error::{Error, Result};
use netstep::state::Status;
use netstep::step::Mode;
use tracing::{info, warn};

use crate::desired::GroupIds;

/// The step whose record gives the network group ids.
pub const UPSTREAM: &str = "tag-groups";

/// Where the group ids come from, and a one-line description of that source for the record.
///
/// - No state store (a local run): ids derived from the intent.
/// - A state store: this run's `tag-groups` record, which must be `converged`, made from the
///   same intent digest, and (for apply) in apply mode; its `group-ids` output is used.
/// - Plan mode may run before `tag-groups` applied (no record, or a plan record): the ids are
///   derived from the intent, which is deterministic, so the plan is still exact.
pub async fn group_ids(ctx: &StepContext) -> Result<(GroupIds, String)> {
    let Some(store) = &ctx.store else {
        return Ok((
            GroupIds::Derived,
            "derived from the intent (no state store)".into(),
        ));
    };
    let apply = ctx.apply();
    let run = &ctx.run_key;
    let Some(rec) = store.get_record(run, UPSTREAM).await? else {
        if apply {
            return Err(Error::Other(format!(
                "run {run}: no {UPSTREAM} record in the state store; mesh-connect applies only \
                 after {UPSTREAM} converged in the same run (run {UPSTREAM} --mode apply first)"
            )));
        }
        warn!(run_key = %run, upstream = UPSTREAM, "no upstream record yet; deriving group ids from the intent (plan only)");
        return Ok((
            GroupIds::Derived,
            format!("derived from the intent (no {UPSTREAM} record yet)"),
        ));
    };
    if rec.intent_digest != ctx.intent_digest {
        return Err(Error::Other(format!(
            "run {run}: the {UPSTREAM} record was made from intent {}, but the run's intent is {}; \
             the state store is inconsistent for this run key",
            rec.intent_digest, ctx.intent_digest
        )));
    }
    let usable = rec.status == Status::Converged && rec.mode == Mode::Apply;
    if !usable {
        if apply {
            return Err(Error::Other(format!(
                "run {run}: the {UPSTREAM} record is {:?} in {} mode; mesh-connect applies only \
                 after {UPSTREAM} converged in apply mode",
                rec.status, rec.mode
            )));
        }
        warn!(run_key = %run, upstream = UPSTREAM, status = ?rec.status, mode = %rec.mode,
            "upstream has not applied; deriving group ids from the intent (plan only)");
        return Ok((
            GroupIds::Derived,
            format!(
                "derived from the intent ({UPSTREAM} record is {:?}, {})",
                rec.status, rec.mode
            ),
        ));
    }
    let Some(text) = rec.outputs.get("group-ids") else {
        return Err(Error::Other(format!(
            "run {run}: the {UPSTREAM} record has no `group-ids` output"
        )));
    };
    let ids = GroupIds::parse_output(text)
        .map_err(|e| Error::Other(format!("run {run}: the {UPSTREAM} record: {e}")))?;
    info!(run_key = %run, upstream = UPSTREAM, "group ids taken from the upstream record");
    Ok((ids, format!("runs/{run}/{UPSTREAM}.json")))
}
