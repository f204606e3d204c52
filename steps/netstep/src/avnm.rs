//! AVNM commits as per-region goal states.
//!
//! A commit of (commit type, regions) *replaces* the set of configurations of that type
//! deployed in those regions: a configuration left out is undeployed. So a step never commits
//! "the configuration it just changed"; it computes, from the whole intent, the full set of
//! configurations every region must run ([`GoalState`]), compares it with what is deployed
//! (`listDeploymentStatus`), and commits only the regions whose deployed set differs, whose
//! last deployment failed, or whose configurations changed after their last commit (which
//! also repairs a run that crashed between a configuration write and its commit). Regions
//! with the same goal are committed together, one POST per distinct set.
//!
//! After the commit it waits with `listDeploymentStatus` until every committed region reports
//! `Deployed` with exactly the committed configuration ids and a `commitTime` at or after the
//! commit, tolerating the empty list ARM returns just after a commit and surfacing
//! `errorMessage` on `Failed`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
#[cfg(test)]
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::{info, warn};

use crate::arm::{ArmClient, PostOptions};
use crate::error::{Error, Result};

/// The configurations each region must run, for one commit type.
pub type GoalState = BTreeMap<String, BTreeSet<String>>;

/// What `listDeploymentStatus` says about one region.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RegionStatus {
    /// `NotStarted`, `Deploying`, `Deployed` or `Failed`.
    pub status: String,
    /// The configuration ids deployed (or being deployed).
    pub configuration_ids: BTreeSet<String>,
    /// When the last commit to the region happened.
    pub commit_time: Option<OffsetDateTime>,
    /// The error of a failed deployment.
    pub error_message: String,
}

/// The error for a region whose deployment ended `Failed`: names the network manager's
/// commit, the deployment type, the region, its `deploymentStatus` and commit time, and
/// AVNM's `errorMessage`. AVNM reports no ARM error code for a failed deployment (the status
/// carries only `errorMessage`), so none is invented. Permanent (exit 1): a failed goal state
/// is not retried blindly by the pipeline; an operator reads the message, and the next run
/// re-commits.
pub fn deployment_failed(
    network_manager_id: &str,
    commit_type: &str,
    region: &str,
    status: &RegionStatus,
) -> Error {
    let when = status
        .commit_time
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "unknown".into());
    crate::arm::ArmError::new(
        crate::arm::ArmErrorKind::OperationFailed,
        "POST",
        format!("{network_manager_id}/commit"),
        format!(
            "{commit_type} deployment to {region} (commitTime {when}) ended with deploymentStatus {}: {}",
            status.status,
            if status.error_message.is_empty() {
                "(no errorMessage)"
            } else {
                &status.error_message
            }
        ),
    )
    .into()
}

/// Why a region needs a commit (shown in the plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionChange {
    /// The region.
    pub region: String,
    /// Configuration names added to the region's deployed set.
    pub added: Vec<String>,
    /// Configuration names removed from it (undeployed).
    pub removed: Vec<String>,
    /// Configurations whose content changed after the last commit (redeployed).
    pub redeployed: Vec<String>,
    /// The last deployment failed or never started.
    pub retry_failed: bool,
}

impl RegionChange {
    /// A one-line plan note, e.g. `commit Connectivity eastus: + cc-a, - cc-b, ~ cc-c`.
    pub fn note(&self, commit_type: &str) -> String {
        let mut parts: Vec<String> = Vec::new();
        parts.extend(self.added.iter().map(|n| format!("+ {n}")));
        parts.extend(self.removed.iter().map(|n| format!("- {n}")));
        parts.extend(self.redeployed.iter().map(|n| format!("~ {n}")));
        if self.retry_failed {
            parts.push("redeploy after a failed deployment".into());
        }
        format!("commit {commit_type} {}: {}", self.region, parts.join(", "))
    }
}

fn lc(s: &str) -> String {
    s.to_ascii_lowercase()
}

fn short(id: &str) -> String {
    crate::resources::name_of(id).to_string()
}

/// Decides which regions need a commit. `modified_at` maps a configuration id (lower-case) to
/// the last modification time of its content (the configuration and, for security admin, its
/// collections and rules); `changed_now` are configurations this run writes.
pub fn regions_to_commit(
    goal: &GoalState,
    deployed: &BTreeMap<String, RegionStatus>,
    modified_at: &BTreeMap<String, OffsetDateTime>,
    changed_now: &BTreeSet<String>,
) -> Vec<RegionChange> {
    let mut out = Vec::new();
    for (region, want) in goal {
        let want_lc: BTreeSet<String> = want.iter().map(|s| lc(s)).collect();
        let current = deployed.get(&lc(region)).cloned().unwrap_or_default();
        let have_lc: BTreeSet<String> = current.configuration_ids.iter().map(|s| lc(s)).collect();
        let added: Vec<String> = want
            .iter()
            .filter(|id| !have_lc.contains(&lc(id)))
            .map(|id| short(id))
            .collect();
        let removed: Vec<String> = current
            .configuration_ids
            .iter()
            .filter(|id| !want_lc.contains(&lc(id)))
            .map(|id| short(id))
            .collect();
        let redeployed: Vec<String> = want
            .iter()
            .filter(|id| have_lc.contains(&lc(id)))
            .filter(|id| {
                changed_now.contains(&lc(id))
                    || match (modified_at.get(&lc(id)), current.commit_time) {
                        // AVNM prints commitTime in whole seconds while lastModifiedAt has
                        // sub-seconds: a configuration written in the same second just before
                        // its commit would otherwise look modified after it, and every re-run
                        // would commit again. Compare at the commit time's resolution.
                        (Some(m), Some(c)) if c.nanosecond() == 0 => {
                            m.replace_nanosecond(0).unwrap_or(*m) > c
                        }
                        (Some(m), Some(c)) => *m > c,
                        (Some(_), None) => true,
                        _ => false,
                    }
            })
            .map(|id| short(id))
            .collect();
        let deployed_something = !want.is_empty() || !current.configuration_ids.is_empty();
        let retry_failed = deployed_something
            && added.is_empty()
            && removed.is_empty()
            && matches!(current.status.as_str(), "Failed" | "NotStarted");
        if !added.is_empty() || !removed.is_empty() || !redeployed.is_empty() || retry_failed {
            out.push(RegionChange {
                region: region.clone(),
                added,
                removed,
                redeployed,
                retry_failed,
            });
        }
    }
    out
}

/// Groups regions that need the same configuration set into one commit each:
/// `(sorted regions, sorted configuration ids)`.
pub fn batch_commits(
    goal: &GoalState,
    regions: &[RegionChange],
) -> Vec<(Vec<String>, Vec<String>)> {
    let mut by_set: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for r in regions {
        let set: Vec<String> = goal
            .get(&r.region)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        by_set.entry(set).or_default().push(r.region.clone());
    }
    by_set
        .into_iter()
        .map(|(set, regions)| (regions, set))
        .collect()
}

/// Parses `listDeploymentStatus` values into a map keyed by lower-case region.
pub fn parse_deployment_status(
    values: &[Value],
    commit_type: &str,
) -> BTreeMap<String, RegionStatus> {
    let mut out = BTreeMap::new();
    for v in values {
        if v.get("deploymentType")
            .and_then(Value::as_str)
            .is_some_and(|t| !t.eq_ignore_ascii_case(commit_type))
        {
            continue;
        }
        let Some(region) = v.get("region").and_then(Value::as_str) else {
            continue;
        };
        let ids = v
            .get("configurationIds")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let commit_time = v
            .get("commitTime")
            .and_then(Value::as_str)
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok());
        out.insert(
            lc(region),
            RegionStatus {
                status: v
                    .get("deploymentStatus")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                configuration_ids: ids,
                commit_time,
                error_message: v
                    .get("errorMessage")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            },
        );
    }
    out
}

/// Timing of the deployment wait.
#[derive(Debug, Clone, Copy)]
pub struct WaitConfig {
    /// Delay between `listDeploymentStatus` polls (they count against the writes budget).
    pub poll_interval: Duration,
    /// How long to wait for all regions to reach `Deployed`.
    pub max_wait: Duration,
}

impl Default for WaitConfig {
    fn default() -> Self {
        WaitConfig {
            poll_interval: Duration::from_secs(10),
            max_wait: Duration::from_secs(30 * 60),
        }
    }
}

impl WaitConfig {
    /// Reads `NETSTEP_DEPLOY_POLL_MS` (used against the simulator) over the defaults.
    pub fn from_env() -> Self {
        let mut c = WaitConfig::default();
        if let Some(ms) = std::env::var("NETSTEP_DEPLOY_POLL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            c.poll_interval = Duration::from_millis(ms);
        }
        c
    }
}

/// Reads the deployment status of `regions` for `commit_type`.
pub async fn deployment_status(
    arm: &ArmClient,
    network_manager_id: &str,
    commit_type: &str,
    regions: &[String],
) -> Result<BTreeMap<String, RegionStatus>> {
    let body = crate::resources::deployment_status_query(regions, &[commit_type.to_string()]);
    let values = arm
        .post_list(&format!("{network_manager_id}/listDeploymentStatus"), &body)
        .await?;
    Ok(parse_deployment_status(&values, commit_type))
}

/// Commits each batch and waits until every committed region is `Deployed` with exactly its
/// goal set. Returns the committed regions.
pub async fn commit_and_wait(
    arm: &ArmClient,
    network_manager_id: &str,
    commit_type: &str,
    batches: &[(Vec<String>, Vec<String>)],
    wait: WaitConfig,
) -> Result<Vec<String>> {
    commit_and_wait_status(arm, network_manager_id, commit_type, batches, wait)
        .await
        .map(|(regions, _)| regions)
}

/// [`commit_and_wait`], also returning the final deployment status of the committed regions
/// (keyed by lower-case region; their `commitTime`s go into step records).
pub async fn commit_and_wait_status(
    arm: &ArmClient,
    network_manager_id: &str,
    commit_type: &str,
    batches: &[(Vec<String>, Vec<String>)],
    wait: WaitConfig,
) -> Result<(Vec<String>, BTreeMap<String, RegionStatus>)> {
    let started = tokio::time::Instant::now();
    let all_regions: Vec<String> = batches.iter().flat_map(|(r, _)| r.clone()).collect();
    if all_regions.is_empty() {
        return Ok((all_regions, BTreeMap::new()));
    }
    // A commit must not land while a target region is still deploying.
    loop {
        let st = deployment_status(arm, network_manager_id, commit_type, &all_regions).await?;
        let busy: Vec<&String> = all_regions
            .iter()
            .filter(|r| st.get(&lc(r)).is_some_and(|s| s.status == "Deploying"))
            .collect();
        if busy.is_empty() {
            break;
        }
        if started.elapsed() > wait.max_wait {
            return Err(Error::Other(format!(
                "{commit_type} deployment still in progress in {busy:?} after {:?}; not committing over it",
                wait.max_wait
            )));
        }
        info!(commit_type, regions = ?busy, "waiting for a running deployment before committing");
        tokio::time::sleep(wait.poll_interval).await;
    }
    // commitTime has second resolution.
    let commit_floor = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc())
        - time::Duration::seconds(1);
    for (regions, ids) in batches {
        info!(commit_type, regions = ?regions, configurations = ids.len(), "committing goal state");
        let body = crate::resources::commit(commit_type, regions, ids);
        // A goal-state commit is idempotent: re-sending the same goal converges to it.
        let opts = PostOptions {
            idempotent: true,
            ..PostOptions::default()
        };
        arm.post_with(&format!("{network_manager_id}/commit"), &body, &opts)
            .await?;
    }
    let goal: BTreeMap<String, BTreeSet<String>> = batches
        .iter()
        .flat_map(|(regions, ids)| {
            let set: BTreeSet<String> = ids.iter().map(|i| lc(i)).collect();
            regions.iter().map(move |r| (lc(r), set.clone()))
        })
        .collect();
    let mut polls = 0u32;
    loop {
        let st = deployment_status(arm, network_manager_id, commit_type, &all_regions).await?;
        polls += 1;
        let mut pending = Vec::new();
        for (region, want) in &goal {
            match st.get(region) {
                None => pending.push(format!("{region}: (no status yet)")),
                Some(s) => {
                    let have: BTreeSet<String> =
                        s.configuration_ids.iter().map(|i| lc(i)).collect();
                    let fresh = s.commit_time.is_none_or(|t| t >= commit_floor);
                    if s.status == "Failed" && fresh && &have == want {
                        return Err(deployment_failed(
                            network_manager_id,
                            commit_type,
                            region,
                            s,
                        ));
                    }
                    if !(s.status == "Deployed" && fresh && &have == want) {
                        pending.push(format!("{region}: {}", s.status));
                    }
                }
            }
        }
        if pending.is_empty() {
            info!(
                commit_type,
                regions = goal.len(),
                polls,
                "deployment complete"
            );
            let done = st
                .into_iter()
                .filter(|(r, _)| goal.contains_key(r))
                .collect();
            return Ok((all_regions, done));
        }
        if started.elapsed() > wait.max_wait {
            return Err(Error::Other(format!(
                "{commit_type} deployment not complete after {:?} ({polls} polls): {}",
                wait.max_wait,
                pending.join(", ")
            )));
        }
        if polls.is_multiple_of(6) {
            warn!(commit_type, pending = ?pending, "deployment still in progress");
        }
        tokio::time::sleep(wait.poll_interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn deployed(
        region: &str,
        status: &str,
        ids: &[&str],
        t: Option<OffsetDateTime>,
    ) -> (String, RegionStatus) {
        (
            region.to_string(),
            RegionStatus {
                status: status.into(),
                configuration_ids: set(ids),
                commit_time: t,
                error_message: String::new(),
            },
        )
    }

    #[test]
    fn only_regions_whose_goal_differs_are_committed() {
        let goal: GoalState = [
            (
                "eastus".to_string(),
                set(&["/x/cc-mesh", "/x/cc-hs-eastus"]),
            ),
            (
                "westus".to_string(),
                set(&["/x/cc-mesh", "/x/cc-hs-westus"]),
            ),
        ]
        .into();
        let t = Some(datetime!(2026-01-01 0:00 UTC));
        let dep: BTreeMap<_, _> = [
            deployed("eastus", "Deployed", &["/X/CC-MESH", "/x/cc-hs-eastus"], t),
            deployed("westus", "Deployed", &["/x/cc-mesh"], t),
        ]
        .into();
        let r = regions_to_commit(&goal, &dep, &BTreeMap::new(), &BTreeSet::new());
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].region, "westus");
        assert_eq!(r[0].added, vec!["cc-hs-westus"]);
        assert_eq!(
            r[0].note("Connectivity"),
            "commit Connectivity westus: + cc-hs-westus"
        );
    }

    #[test]
    fn configurations_left_out_are_undeployed_and_changed_content_redeployed() {
        let goal: GoalState = [("eastus".to_string(), set(&["/x/a"]))].into();
        let t = datetime!(2026-01-01 0:00 UTC);
        let dep: BTreeMap<_, _> =
            [deployed("eastus", "Deployed", &["/x/a", "/x/old"], Some(t))].into();
        let r = regions_to_commit(&goal, &dep, &BTreeMap::new(), &BTreeSet::new());
        assert_eq!(r[0].removed, vec!["old"]);
        // Same set, but the configuration was modified after the commit (a crashed run).
        let dep: BTreeMap<_, _> = [deployed("eastus", "Deployed", &["/x/a"], Some(t))].into();
        let modified = [("/x/a".to_string(), t + time::Duration::minutes(1))].into();
        let r = regions_to_commit(&goal, &dep, &modified, &BTreeSet::new());
        assert_eq!(r[0].redeployed, vec!["a"]);
        // Modified before the commit: nothing to do.
        let modified = [("/x/a".to_string(), t - time::Duration::minutes(1))].into();
        assert!(regions_to_commit(&goal, &dep, &modified, &BTreeSet::new()).is_empty());
        // Written in the same second as the commit (commitTime has whole seconds): not after it.
        let modified = [("/x/a".to_string(), t + time::Duration::milliseconds(300))].into();
        assert!(regions_to_commit(&goal, &dep, &modified, &BTreeSet::new()).is_empty());
        // The next second is after it.
        let modified = [("/x/a".to_string(), t + time::Duration::milliseconds(1300))].into();
        assert_eq!(
            regions_to_commit(&goal, &dep, &modified, &BTreeSet::new())[0].redeployed,
            vec!["a"]
        );
        // Changed by this run: redeploy.
        assert_eq!(
            regions_to_commit(&goal, &dep, &BTreeMap::new(), &set(&["/x/a"])).len(),
            1
        );
    }

    #[test]
    fn failed_deployments_are_retried_and_empty_goals_on_empty_regions_are_not_committed() {
        let goal: GoalState = [
            ("eastus".to_string(), set(&["/x/a"])),
            ("westus".to_string(), set(&[])),
        ]
        .into();
        let dep: BTreeMap<_, _> = [deployed("eastus", "Failed", &["/x/a"], None)].into();
        let r = regions_to_commit(&goal, &dep, &BTreeMap::new(), &BTreeSet::new());
        assert_eq!(r.len(), 1);
        assert!(r[0].retry_failed);
    }

    #[test]
    fn batches_group_regions_with_the_same_set() {
        let goal: GoalState = [
            ("eastus".to_string(), set(&["/x/m"])),
            ("westus".to_string(), set(&["/x/m"])),
            ("uksouth".to_string(), set(&["/x/m", "/x/h"])),
        ]
        .into();
        let changes =
            regions_to_commit(&goal, &BTreeMap::new(), &BTreeMap::new(), &BTreeSet::new());
        let b = batch_commits(&goal, &changes);
        assert_eq!(b.len(), 2);
        assert!(b.contains(&(vec!["eastus".into(), "westus".into()], vec!["/x/m".into()])));
    }

    #[test]
    fn deployment_status_is_parsed_per_region_and_type() {
        let v = vec![
            json!({"deploymentType": "Connectivity", "region": "EastUS", "deploymentStatus": "Deployed",
                   "configurationIds": ["/x/a"], "commitTime": "2022-07-22T16:18:58Z", "errorMessage": ""}),
            json!({"deploymentType": "SecurityAdmin", "region": "eastus", "deploymentStatus": "Failed"}),
        ];
        let m = parse_deployment_status(&v, "Connectivity");
        assert_eq!(m.len(), 1);
        assert_eq!(m["eastus"].status, "Deployed");
        assert_eq!(
            m["eastus"].commit_time,
            Some(datetime!(2022-07-22 16:18:58 UTC))
        );
    }
}
