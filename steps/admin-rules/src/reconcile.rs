//! Reading what exists, diffing it against the desired configuration, and the write order.
//!
//! Reads (never a GET per rule): one list of the manager's security admin configurations, one
//! list of the rule collections of the intent's configuration, one list of rules per
//! collection, and one `listDeploymentStatus` for the intent's regions.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt};
use netstep::arm::ArmClient;
use netstep::avnm::{self, GoalState, RegionChange, RegionStatus};
use netstep::error::{Error, Result};
use netstep::plan::{Action, Plan, ResourceChange, plan_resource};
use netstep::resources::{is_managed, name_of, types};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::desired::DesiredConfig;

/// The AVNM commit type of this step.
pub const COMMIT_TYPE: &str = "SecurityAdmin";

/// What exists in Azure.
#[derive(Debug, Clone, Default)]
pub struct Actual {
    /// Whether the network manager exists (plan mode runs before tag-groups created it).
    pub nm_exists: bool,
    /// Every security admin configuration of the manager.
    pub configs: Vec<Value>,
    /// Rule collections of the intent's configuration.
    pub collections: Vec<Value>,
    /// Rules by lower-case collection id.
    pub rules: BTreeMap<String, Vec<Value>>,
    /// Deployment status of the intent's regions (lower-case region).
    pub deployed: BTreeMap<String, RegionStatus>,
}

fn lc(s: &str) -> String {
    s.to_ascii_lowercase()
}

fn id_of(v: &Value) -> &str {
    v.get("id").and_then(Value::as_str).unwrap_or("")
}

fn find_by_name<'a>(items: &'a [Value], name: &str) -> Option<&'a Value> {
    items.iter().find(|v| {
        v.get("name")
            .and_then(Value::as_str)
            .unwrap_or_else(|| name_of(id_of(v)))
            .eq_ignore_ascii_case(name)
    })
}

/// Reads what exists (see the module docs).
pub async fn read(
    arm: &ArmClient,
    nm_id: &str,
    desired: Option<&DesiredConfig>,
    regions: &[String],
) -> Result<Actual> {
    let configs = match arm
        .list(&format!("{nm_id}/securityAdminConfigurations"))
        .await
    {
        Ok(v) => v,
        Err(e) if e.is_not_found() => {
            tracing::info!(
                network_manager = nm_id,
                "network manager not found; everything is to be created"
            );
            return Ok(Actual::default());
        }
        Err(e) => return Err(e.into()),
    };
    let mut actual = Actual {
        nm_exists: true,
        configs,
        ..Actual::default()
    };
    if let Some(d) = desired
        && let Some(cfg) = find_by_name(&actual.configs, &d.name)
    {
        let cfg_id = id_of(cfg).to_string();
        actual.collections = arm.list(&format!("{cfg_id}/ruleCollections")).await?;
        let ids: Vec<String> = actual
            .collections
            .iter()
            .map(|c| id_of(c).to_string())
            .collect();
        // One list per collection, a few at a time.
        let lists: Vec<Vec<Value>> = futures::stream::iter(ids.iter().map(|cid| {
            let path = format!("{cid}/rules");
            async move { arm.list(&path).await }
        }))
        .buffered(4)
        .try_collect()
        .await?;
        for (cid, rules) in ids.iter().zip(lists) {
            actual.rules.insert(lc(cid), rules);
        }
    }
    actual.deployed = avnm::deployment_status(arm, nm_id, COMMIT_TYPE, regions).await?;
    Ok(actual)
}

/// One rule write in apply order (`priority` differs from the desired one for a temporary
/// move that breaks a priority swap).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleWrite {
    /// Rule id.
    pub id: String,
    /// Body to PUT.
    pub body: Value,
}

/// Everything the apply will do, in order.
#[derive(Debug, Clone, Default)]
pub struct Work {
    /// The plan shown to the user (resource changes in apply order, commit notes).
    pub plan: Plan,
    /// Rules to delete first (they may hold priorities the new rules need).
    pub rule_deletes: Vec<String>,
    /// The configuration PUT.
    pub config_put: Option<(String, Value)>,
    /// Collection PUTs.
    pub collection_puts: Vec<(String, Value)>,
    /// Rule PUTs in a priority-safe order.
    pub rule_puts: Vec<RuleWrite>,
    /// Collections to delete (after the puts, before the commit).
    pub collection_deletes: Vec<String>,
    /// Whole configurations to delete (after the commit undeployed them).
    pub config_deletes: Vec<String>,
    /// Whether the intent's configuration is deployed somewhere (deletes below it need force).
    pub config_deployed: bool,
    /// The goal state per region.
    pub goal: GoalState,
    /// Regions to commit and why.
    pub region_changes: Vec<RegionChange>,
    /// The newest content modification of the configurations in Azure, in the commit time's
    /// resolution (the first whole second after it; see `modified_at`). A commit must land at
    /// or after it: a write made in the commit's own second would look newer than the commit
    /// and make the next run commit again (e.g. the writes of a run killed before its commit,
    /// committed by the re-run within the same second).
    pub content_modified: Option<time::OffsetDateTime>,
}

impl Work {
    /// Whether the plan deletes anything.
    pub fn has_deletes(&self) -> bool {
        self.plan.changes.iter().any(|c| c.action == Action::Delete)
    }

    /// The commits to make: `(regions, configuration ids)`.
    pub fn batches(&self) -> Vec<(Vec<String>, Vec<String>)> {
        avnm::batch_commits(&self.goal, &self.region_changes)
    }
}

fn delete_change(id: &str, ty: &str) -> ResourceChange {
    ResourceChange {
        action: Action::Delete,
        resource_id: id.to_string(),
        resource_type: ty.to_string(),
        fields: Vec::new(),
    }
}

fn modified_at(v: &Value) -> Option<OffsetDateTime> {
    let s = v.pointer("/systemData/lastModifiedAt")?.as_str()?;
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    // AVNM reports commitTime in whole seconds, so compare in whole seconds, and count a
    // change made in the commit's own second as newer than the commit (`avnm` tests `>`, hence
    // the extra second): a drift right after a commit must not go unnoticed. netstep's own
    // writes never share the commit's second (`lib::apply` waits for the next second before
    // committing), so they do not cause a recommit on the next run.
    Some(t.replace_nanosecond(0).unwrap_or(t) + time::Duration::seconds(1))
}

/// Orders rule writes so that no write takes a priority another rule of the collection still
/// holds (AVNM refuses duplicate priorities). `occupied` maps each priority held after the
/// deletes to its rule (lower-case name); `writes` are `(lower-case name, target priority)`.
/// A cycle (two rules swapping priorities) is broken by moving one rule to a free temporary
/// priority first. Returns `(name, priority)` in order; a name may appear twice (temp, final).
pub fn order_rule_writes(
    occupied: &BTreeMap<u16, String>,
    writes: &[(String, u16)],
) -> std::result::Result<Vec<(String, u16)>, String> {
    let mut occ = occupied.clone();
    let mut pending: Vec<(String, u16)> = writes.to_vec();
    let pending_names: BTreeSet<String> = writes.iter().map(|(n, _)| n.clone()).collect();
    let targets: BTreeSet<u16> = writes.iter().map(|(_, p)| *p).collect();
    // Permanent conflicts: a target held by a rule that is not moving.
    for (name, p) in writes {
        if let Some(holder) = occ.get(p)
            && holder != name
            && !pending_names.contains(holder)
        {
            return Err(format!(
                "priority {p} wanted by rule {name} is held by rule {holder}, which netstep does not change"
            ));
        }
    }
    let mut out = Vec::new();
    let mut guard = 0usize;
    while !pending.is_empty() {
        guard += 1;
        if guard > 4 * writes.len() + 8 {
            return Err("cannot order the rule priority changes".into());
        }
        let ready = pending
            .iter()
            .position(|(n, p)| occ.get(p).is_none_or(|h| h == n));
        let (name, p) = match ready {
            Some(i) => pending.remove(i),
            None => {
                // A cycle: move the first pending rule out of the way.
                let (name, _) = pending[0].clone();
                let temp = (1..=4096u16)
                    .rev()
                    .find(|t| !occ.contains_key(t) && !targets.contains(t))
                    .ok_or("no free priority to break a priority swap")?;
                (name, temp)
            }
        };
        occ.retain(|_, h| *h != name);
        occ.insert(p, name.clone());
        out.push((name, p));
    }
    Ok(out)
}

/// Diffs desired against actual and derives the writes, the goal state and the commits.
pub fn plan(desired: Option<&DesiredConfig>, actual: &Actual, regions: &[String]) -> Result<Work> {
    let mut w = Work::default();
    let mut changed_config = false;
    let mut modified: BTreeMap<String, OffsetDateTime> = BTreeMap::new();
    let actual_cfg = desired.and_then(|d| find_by_name(&actual.configs, &d.name));

    if let Some(d) = desired {
        if let Some(a) = actual_cfg
            && !is_managed(a)
        {
            return Err(Error::Other(format!(
                "security admin configuration {} exists and is not managed by netstep (no {} marker in its description); refusing to modify it",
                id_of(a),
                netstep::resources::MANAGED_MARKER
            )));
        }
        // Content modification time of the configuration, its collections and rules.
        let mut newest = actual_cfg.and_then(modified_at);
        for v in actual
            .collections
            .iter()
            .chain(actual.rules.values().flatten())
        {
            newest = newest.max(modified_at(v));
        }
        if let Some(t) = newest {
            modified.insert(lc(&d.id), t);
        }

        let cfg_change = plan_resource(&d.id, types::SECURITY_ADMIN_CONFIG, &d.body, actual_cfg);
        if cfg_change.is_some() {
            w.config_put = Some((d.id.clone(), d.body.clone()));
        }
        let mut coll_changes = Vec::new();
        let mut rule_changes = Vec::new();
        let mut rule_delete_changes = Vec::new();
        let desired_colls: BTreeSet<String> = d.collections.iter().map(|c| lc(&c.name)).collect();
        for c in &d.collections {
            let a = find_by_name(&actual.collections, &c.name);
            if let Some(a) = a
                && !is_managed(a)
            {
                return Err(Error::Other(format!(
                    "rule collection {} exists and is not managed by netstep; refusing to modify it",
                    id_of(a)
                )));
            }
            if let Some(ch) = plan_resource(&c.id, types::RULE_COLLECTION, &c.body, a) {
                w.collection_puts.push((c.id.clone(), c.body.clone()));
                coll_changes.push(ch);
            }
            let existing: &[Value] = a
                .and_then(|a| actual.rules.get(&lc(id_of(a))))
                .map_or(&[], Vec::as_slice);
            let desired_rules: BTreeSet<String> = c.rules.iter().map(|r| lc(&r.name)).collect();
            // Priorities held once the dropped managed rules are deleted.
            let mut occupied: BTreeMap<u16, String> = BTreeMap::new();
            for r in existing {
                let name = lc(r
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or(name_of(id_of(r))));
                let dropped = !desired_rules.contains(&name) && is_managed(r);
                if dropped {
                    w.rule_deletes.push(id_of(r).to_string());
                    rule_delete_changes.push(delete_change(id_of(r), types::ADMIN_RULE));
                    continue;
                }
                if let Some(p) = r
                    .pointer("/properties/priority")
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
                {
                    occupied.insert(p, name);
                }
            }
            let mut writes = Vec::new();
            let mut bodies: BTreeMap<String, (&str, &Value)> = BTreeMap::new();
            for r in &c.rules {
                let a = find_by_name(existing, &r.name);
                if let Some(a) = a
                    && !is_managed(a)
                {
                    return Err(Error::Other(format!(
                        "admin rule {} exists and is not managed by netstep; refusing to modify it",
                        id_of(a)
                    )));
                }
                if let Some(ch) = plan_resource(&r.id, types::ADMIN_RULE, &r.body, a) {
                    rule_changes.push(ch);
                    writes.push((lc(&r.name), r.priority));
                    bodies.insert(lc(&r.name), (r.id.as_str(), &r.body));
                }
            }
            let order = order_rule_writes(&occupied, &writes)
                .map_err(|e| Error::Other(format!("rule collection {}: {e}", c.id)))?;
            for (name, p) in order {
                let (id, body) = bodies[&name];
                let mut body = body.clone();
                body["properties"]["priority"] = Value::from(p);
                w.rule_puts.push(RuleWrite {
                    id: id.to_string(),
                    body,
                });
            }
        }
        // Managed collections the intent dropped.
        let mut coll_delete_changes = Vec::new();
        for a in &actual.collections {
            let name = lc(a
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(name_of(id_of(a))));
            if desired_colls.contains(&name) || !is_managed(a) {
                continue;
            }
            let foreign = actual
                .rules
                .get(&lc(id_of(a)))
                .into_iter()
                .flatten()
                .find(|r| !is_managed(r));
            if let Some(f) = foreign {
                return Err(Error::Other(format!(
                    "rule collection {} was dropped from the intent but holds rule {} that netstep does not manage; remove that rule first",
                    id_of(a),
                    id_of(f)
                )));
            }
            w.collection_deletes.push(id_of(a).to_string());
            coll_delete_changes.push(delete_change(id_of(a), types::RULE_COLLECTION));
        }
        changed_config = cfg_change.is_some()
            || !coll_changes.is_empty()
            || !rule_changes.is_empty()
            || !rule_delete_changes.is_empty()
            || !coll_delete_changes.is_empty();
        w.plan.changes.extend(rule_delete_changes);
        w.plan.push(cfg_change);
        w.plan.changes.extend(coll_changes);
        w.plan.changes.extend(rule_changes);
        w.plan.changes.extend(coll_delete_changes);
    }
    // Managed configurations the intent dropped.
    let desired_id = desired.map(|d| lc(&d.id));
    for a in &actual.configs {
        if Some(lc(id_of(a))) != desired_id && is_managed(a) {
            w.config_deletes.push(id_of(a).to_string());
            w.plan
                .changes
                .push(delete_change(id_of(a), types::SECURITY_ADMIN_CONFIG));
        }
    }

    // Goal state: the intent's configuration everywhere, plus configurations netstep does not
    // manage that are deployed in a region (a commit replaces the set: leaving them out would
    // undeploy someone else's guardrails).
    let unmanaged: BTreeSet<String> = actual
        .configs
        .iter()
        .filter(|c| !is_managed(c))
        .map(|c| lc(id_of(c)))
        .collect();
    for region in regions {
        let mut set = BTreeSet::new();
        if let Some(d) = desired {
            set.insert(d.id.clone());
        }
        if let Some(st) = actual.deployed.get(&lc(region)) {
            for id in &st.configuration_ids {
                if unmanaged.contains(&lc(id)) {
                    set.insert(id.clone());
                }
            }
        }
        w.goal.insert(region.clone(), set);
    }
    w.config_deployed = desired_id.as_ref().is_some_and(|d| {
        actual
            .deployed
            .values()
            .any(|s| s.configuration_ids.iter().any(|i| lc(i) == *d))
    });
    let changed_now: BTreeSet<String> = match (&desired_id, changed_config) {
        (Some(d), true) => [d.clone()].into(),
        _ => BTreeSet::new(),
    };
    w.region_changes = avnm::regions_to_commit(&w.goal, &actual.deployed, &modified, &changed_now);
    w.content_modified = modified.values().max().copied();
    w.plan.notes = w
        .region_changes
        .iter()
        .map(|r| r.note(COMMIT_TYPE))
        .collect();
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn occ(pairs: &[(u16, &str)]) -> BTreeMap<u16, String> {
        pairs.iter().map(|(p, n)| (*p, n.to_string())).collect()
    }

    #[test]
    fn a_free_priority_is_written_directly() {
        let o = order_rule_writes(&occ(&[(100, "a"), (110, "b")]), &[("a".into(), 105)]).unwrap();
        assert_eq!(o, vec![("a".to_string(), 105)]);
    }

    #[test]
    fn a_chain_is_ordered_so_the_freed_priority_is_taken_last() {
        // a 100 -> 110, b 110 -> 120: b must move first.
        let o = order_rule_writes(
            &occ(&[(100, "a"), (110, "b")]),
            &[("a".into(), 110), ("b".into(), 120)],
        )
        .unwrap();
        assert_eq!(o, vec![("b".to_string(), 120), ("a".to_string(), 110)]);
    }

    #[test]
    fn a_swap_goes_through_a_temporary_priority() {
        let o = order_rule_writes(
            &occ(&[(100, "a"), (110, "b")]),
            &[("a".into(), 110), ("b".into(), 100)],
        )
        .unwrap();
        assert_eq!(o.len(), 3, "{o:?}");
        assert_eq!(o[0], ("a".to_string(), 4096));
        assert_eq!(o[1], ("b".to_string(), 100));
        assert_eq!(o[2], ("a".to_string(), 110));
    }

    #[test]
    fn a_priority_held_by_a_rule_netstep_does_not_change_is_an_error() {
        let e = order_rule_writes(&occ(&[(100, "foreign")]), &[("a".into(), 100)]).unwrap_err();
        assert!(e.contains("held by rule foreign"), "{e}");
    }

    use crate::desired::{DesiredCollection, DesiredConfig, DesiredRule};
    use netstep::resources::{self as res, AddressPrefix, AdminRule};
    use serde_json::json;

    const NM: &str =
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkManagers/nm";

    fn rule_body(prio: u16) -> Value {
        res::admin_rule(&AdminRule {
            description: "d".into(),
            priority: prio,
            direction: "Inbound".into(),
            access: "Deny".into(),
            protocol: "Any".into(),
            sources: vec![AddressPrefix::NetworkGroup(format!("{NM}/networkGroups/a"))],
            destinations: vec![],
            source_port_ranges: vec!["0-65535".into()],
            destination_port_ranges: vec!["0-65535".into()],
        })
    }

    fn desired() -> DesiredConfig {
        let id = format!("{NM}/securityAdminConfigurations/sac");
        let cid = format!("{id}/ruleCollections/rc");
        DesiredConfig {
            name: "sac".into(),
            body: res::security_admin_configuration("g", &["None".into()]),
            collections: vec![DesiredCollection {
                name: "rc".into(),
                body: res::admin_rule_collection("c", &[format!("{NM}/networkGroups/a")]),
                rules: vec![DesiredRule {
                    name: "r1".into(),
                    id: format!("{cid}/rules/r1"),
                    priority: 100,
                    body: rule_body(100),
                }],
                id: cid,
            }],
            id,
        }
    }

    /// Azure's view of `desired()` as deployed at 12:00:00 (modified 11:59:59.5).
    fn actual(rule_prio: u16) -> Actual {
        let d = desired();
        let with = |id: &str, body: &Value| {
            let mut v = body.clone();
            v["id"] = json!(id);
            v["name"] = json!(name_of(id));
            v["systemData"] = json!({"lastModifiedAt": "2026-01-01T11:59:59.5Z"});
            v
        };
        let c = &d.collections[0];
        Actual {
            nm_exists: true,
            configs: vec![with(&d.id, &d.body)],
            collections: vec![with(&c.id, &c.body)],
            rules: [(lc(&c.id), vec![with(&c.rules[0].id, &rule_body(rule_prio))])].into(),
            deployed: ["eastus", "westus"]
                .iter()
                .map(|r| {
                    (
                        r.to_string(),
                        RegionStatus {
                            status: "Deployed".into(),
                            configuration_ids: [d.id.clone()].into(),
                            commit_time: Some(time::macros::datetime!(2026-01-01 12:00:00 UTC)),
                            error_message: String::new(),
                        },
                    )
                })
                .collect(),
        }
    }

    fn regions() -> Vec<String> {
        vec!["eastus".into(), "westus".into()]
    }

    #[test]
    fn converged_means_no_change_and_no_commit() {
        let w = plan(Some(&desired()), &actual(100), &regions()).unwrap();
        assert!(w.plan.is_empty(), "{:?}", w.plan);
        assert!(w.batches().is_empty());
    }

    #[test]
    fn one_changed_rule_is_one_write_and_every_region_is_recommitted_in_one_batch() {
        let w = plan(Some(&desired()), &actual(120), &regions()).unwrap();
        assert_eq!(w.plan.changes.len(), 1);
        assert_eq!(w.plan.changes[0].fields[0].path, "properties.priority");
        assert_eq!(w.rule_puts.len(), 1);
        assert!(w.config_put.is_none() && w.collection_puts.is_empty());
        assert_eq!(w.batches().len(), 1);
        assert_eq!(w.batches()[0].0, regions());
        assert_eq!(w.plan.notes[0], "commit SecurityAdmin eastus: ~ sac");
    }

    #[test]
    fn a_change_in_the_commit_second_counts_as_after_the_commit() {
        let mut a = actual(100);
        a.collections[0]["systemData"]["lastModifiedAt"] = json!("2026-01-01T12:00:00.7Z");
        let w = plan(Some(&desired()), &a, &regions()).unwrap();
        assert!(w.plan.changes.is_empty());
        assert_eq!(w.region_changes.len(), 2, "{:?}", w.region_changes);
        assert_eq!(w.region_changes[0].redeployed, vec!["sac"]);
    }

    #[test]
    fn unmanaged_configurations_are_refused_and_kept_in_the_goal_state() {
        let mut a = actual(100);
        a.configs[0]["properties"]["description"] = json!("hand made");
        let e = plan(Some(&desired()), &a, &regions()).unwrap_err();
        assert!(e.to_string().contains("not managed by netstep"), "{e}");

        // Someone else's configuration deployed in eastus stays in eastus's goal.
        let mut a = actual(100);
        let theirs = format!("{NM}/securityAdminConfigurations/theirs");
        a.configs
            .push(json!({"id": theirs, "name": "theirs", "properties": {"description": "x"}}));
        a.deployed
            .get_mut("eastus")
            .unwrap()
            .configuration_ids
            .insert(theirs.clone());
        let w = plan(Some(&desired()), &a, &regions()).unwrap();
        assert!(w.goal["eastus"].contains(&theirs));
        assert!(!w.goal["westus"].contains(&theirs));
        assert!(w.plan.is_empty(), "{:?}", w.plan);
    }

    #[test]
    fn dropped_managed_configurations_are_deleted_after_being_undeployed() {
        let mut a = actual(100);
        let old = format!("{NM}/securityAdminConfigurations/old");
        a.configs.push(json!({"id": old, "name": "old",
            "properties": {"description": format!("x {}", res::MANAGED_MARKER)}}));
        a.deployed
            .get_mut("westus")
            .unwrap()
            .configuration_ids
            .insert(old.clone());
        let w = plan(Some(&desired()), &a, &regions()).unwrap();
        assert!(w.has_deletes());
        assert_eq!(w.config_deletes, vec![old]);
        assert_eq!(w.region_changes.len(), 1);
        assert_eq!(w.region_changes[0].removed, vec!["old"]);
        assert_eq!(w.plan.notes[0], "commit SecurityAdmin westus: - old");
    }

    #[test]
    fn new_rules_and_unchanged_priorities_need_no_ordering() {
        let o = order_rule_writes(&occ(&[(100, "a")]), &[("a".into(), 100), ("n".into(), 200)])
            .unwrap();
        assert_eq!(o.len(), 2);
    }
}
