//! The step's input from the previous step of the run: the group ids of the `tag-groups`
//! record (see [`StepContext::upstream_group_ids`] for the rules).

use netstep::context::StepContext;
use netstep::error::Result;

use crate::desired::GroupIds;

/// The group ids to use, and a one-line description of their source for the record.
pub async fn group_ids(ctx: &StepContext) -> Result<(GroupIds, String)> {
    let up = ctx.upstream_group_ids().await?;
    let ids = match up.ids {
        None => GroupIds::Derived,
        Some(map) => GroupIds::Upstream(
            map.into_iter()
                .map(|(name, id)| (name.to_ascii_lowercase(), id))
                .collect(),
        ),
    };
    Ok((ids, up.source))
}
