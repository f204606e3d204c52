//! The pure part of the step: desired configuration bodies from the intent, the view of what
//! ARM returned, the resource plan, and the per-region goal state of the Connectivity commit.
//! No I/O here, so every rule is unit-tested.

use std::collections::{BTreeMap, BTreeSet};

use netstep::avnm::{GoalState, RegionStatus};
use netstep::intent::{Intent, ResolvedConnectivity, Topology};
use netstep::plan::{Action, ResourceChange, plan_resource};
use netstep::resources::{self, ConnectivityCapabilities, ConnectivityGroup, types};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Lower-case key for ids, names and regions (ARM compares them case-insensitively).
pub fn lc(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Network group name → id, the way the step resolves the groups its configurations apply to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupIds {
    /// From the `group-ids` output of this run's `tag-groups` record.
    Upstream(BTreeMap<String, String>),
    /// Derived from the intent (no state store, or a plan before `tag-groups` applied).
    Derived,
}

impl GroupIds {
    /// The id of group `name`.
    pub fn id(&self, intent: &Intent, name: &str) -> Result<String, String> {
        match self {
            GroupIds::Derived => Ok(intent.network_group_id(name)),
            GroupIds::Upstream(map) => map.get(&lc(name)).cloned().ok_or_else(|| {
                format!(
                    "the tag-groups record of this run does not list network group {name} \
                     (its group-ids has {} groups); tag-groups and mesh-connect disagree on the intent",
                    map.len()
                )
            }),
        }
    }
}

/// One connectivity configuration the intent wants.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredConfig {
    /// Configuration name.
    pub name: String,
    /// ARM id.
    pub id: String,
    /// The spec-shaped PUT body.
    pub body: Value,
    /// Regions where the configuration must be deployed (lower-case).
    pub regions: Vec<String>,
}

/// The desired bodies of every connectivity configuration of the intent, mesh first, then the
/// hub-and-spoke expansion in region order.
pub fn desired_configs(intent: &Intent, groups: &GroupIds) -> Result<Vec<DesiredConfig>, String> {
    intent
        .connectivity_configs()
        .iter()
        .map(|c| desired_config(intent, groups, c))
        .collect()
}

fn desired_config(
    intent: &Intent,
    groups: &GroupIds,
    c: &ResolvedConnectivity,
) -> Result<DesiredConfig, String> {
    let hub = match c.topology {
        Topology::Mesh => None,
        Topology::HubAndSpoke => Some(c.hub_vnet_id.as_deref().ok_or_else(|| {
            format!(
                "hub-and-spoke configuration {} has no hub virtual network",
                c.name
            )
        })?),
    };
    let items = c
        .groups
        .iter()
        .map(|g| {
            Ok(ConnectivityGroup {
                network_group_id: groups.id(intent, g)?,
                direct_connectivity: c.direct_connectivity,
                use_hub_gateway: c.use_hub_gateway,
                // A global mesh is global on its group too; a regional hub-and-spoke is not.
                is_global: c.is_global,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let caps = c.capabilities.map(|k| ConnectivityCapabilities {
        connected_group_private_endpoints_scale: enum_name(
            &k.connected_group_private_endpoints_scale,
        ),
        connected_group_address_overlap: enum_name(&k.connected_group_address_overlap),
        peering_enforcement: enum_name(&k.peering_enforcement),
    });
    let body = resources::connectivity_configuration(
        &c.description,
        hub,
        &items,
        c.is_global,
        c.delete_existing_peering,
        caps.as_ref(),
    );
    Ok(DesiredConfig {
        name: c.name.clone(),
        id: c.id.clone(),
        body,
        regions: c.regions.iter().map(|r| lc(r)).collect(),
    })
}

/// The serialized name of a unit enum (`Standard`, `Disallowed`, ...).
fn enum_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A connectivity configuration as ARM listed it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActualConfig {
    /// ARM id as returned.
    pub id: String,
    /// Name.
    pub name: String,
    /// Carries netstep's description marker.
    pub managed: bool,
    /// `systemData.lastModifiedAt`.
    pub last_modified: Option<OffsetDateTime>,
    /// The whole resource, for the diff.
    pub body: Value,
}

/// Indexes the listed configurations by lower-case name.
pub fn index_actual(items: Vec<Value>) -> BTreeMap<String, ActualConfig> {
    let mut out = BTreeMap::new();
    for v in items {
        let Some(id) = v.get("id").and_then(Value::as_str).map(str::to_string) else {
            continue;
        };
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_else(|| resources::name_of(&id))
            .to_string();
        let last_modified = v
            .pointer("/systemData/lastModifiedAt")
            .and_then(Value::as_str)
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok());
        out.insert(
            lc(&name),
            ActualConfig {
                managed: resources::is_managed(&v),
                id,
                name,
                last_modified,
                body: v,
            },
        );
    }
    out
}

/// The resource side of the plan.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigPlan {
    /// Creates and updates (in intent order), then deletes of dropped managed configurations.
    pub changes: Vec<ResourceChange>,
    /// Desired configurations to write (create or update), with their bodies.
    pub writes: Vec<DesiredConfig>,
    /// Managed configurations the intent dropped (by their listed id).
    pub dropped: Vec<ActualConfig>,
    /// Desired configurations whose name is taken by a configuration netstep does not manage.
    pub conflicts: Vec<ActualConfig>,
}

/// Diffs desired against listed configurations. Unmanaged configurations are never changed:
/// one holding a desired name is a conflict, others are left alone.
pub fn plan_configs(
    desired: &[DesiredConfig],
    actual: &BTreeMap<String, ActualConfig>,
) -> ConfigPlan {
    let mut p = ConfigPlan::default();
    for d in desired {
        let a = actual.get(&lc(&d.name));
        if let Some(a) = a.filter(|a| !a.managed) {
            p.conflicts.push(a.clone());
            continue;
        }
        if let Some(change) = plan_resource(
            &d.id,
            types::CONNECTIVITY_CONFIG,
            &d.body,
            a.map(|a| &a.body),
        ) {
            p.changes.push(change);
            p.writes.push(d.clone());
        }
    }
    let wanted: BTreeSet<String> = desired.iter().map(|d| lc(&d.name)).collect();
    for (name, a) in actual {
        if a.managed && !wanted.contains(name) {
            p.changes.push(ResourceChange {
                action: Action::Delete,
                resource_id: a.id.clone(),
                resource_type: types::CONNECTIVITY_CONFIG.to_string(),
                fields: Vec::new(),
            });
            p.dropped.push(a.clone());
        }
    }
    p
}

/// The Connectivity goal state of every region: for each region of the intent, the desired
/// configurations placed there; for every region (also one the intent no longer has) the
/// deployed configurations netstep must not undeploy: those it does not manage, and, unless
/// `prune`, managed ones the intent dropped. A deployed id that no longer exists is left out
/// (it cannot be committed).
pub fn goal_state(
    intent_regions: &[String],
    desired: &[DesiredConfig],
    actual: &BTreeMap<String, ActualConfig>,
    deployed: &BTreeMap<String, RegionStatus>,
    prune: bool,
) -> GoalState {
    let mut goal: GoalState = BTreeMap::new();
    for r in intent_regions {
        goal.entry(lc(r)).or_default();
    }
    for d in desired {
        for r in &d.regions {
            goal.entry(lc(r)).or_default().insert(d.id.clone());
        }
    }
    let desired_ids: BTreeSet<String> = desired.iter().map(|d| lc(&d.id)).collect();
    let by_id: BTreeMap<String, &ActualConfig> = actual.values().map(|a| (lc(&a.id), a)).collect();
    for (region, st) in deployed {
        // A region running anything has a goal, even if it becomes empty: that empty goal is
        // the commit that undeploys there (also in a region the intent no longer has).
        if !st.configuration_ids.is_empty() {
            goal.entry(lc(region)).or_default();
        }
        for id in &st.configuration_ids {
            if desired_ids.contains(&lc(id)) {
                // The intent decides where its configurations run.
                continue;
            }
            let Some(a) = by_id.get(&lc(id)) else {
                continue;
            };
            if !a.managed || !prune {
                goal.entry(lc(region)).or_default().insert(a.id.clone());
            }
        }
    }
    goal
}

/// `lastModifiedAt` of the managed configurations (lower-case id → time). Unmanaged ones are
/// left out: someone else's uncommitted edit must not make netstep commit.
pub fn modified_at(actual: &BTreeMap<String, ActualConfig>) -> BTreeMap<String, OffsetDateTime> {
    actual
        .values()
        .filter(|a| a.managed)
        .filter_map(|a| Some((lc(&a.id), a.last_modified?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use netstep::avnm::regions_to_commit;
    use serde_json::json;

    fn intent() -> Intent {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/globojava/intent.yaml");
        netstep::intent::load_file(&p).expect("globojava intent")
    }

    fn as_listed(d: &DesiredConfig, managed: bool) -> Value {
        let mut b = d.body.clone();
        b["id"] = json!(d.id);
        b["name"] = json!(d.name);
        b["properties"]["provisioningState"] = json!("Succeeded");
        b["systemData"] = json!({"lastModifiedAt": "2026-01-01T00:00:00.5Z"});
        if !managed {
            b["properties"]["description"] = json!("owned by the app team");
        }
        b
    }

    #[test]
    fn globojava_wants_a_global_mesh_and_one_hub_and_spoke_per_region() {
        let it = intent();
        let d = desired_configs(&it, &GroupIds::Derived).unwrap();
        assert_eq!(d.len(), 8);
        let mesh = &d[0].body["properties"];
        assert_eq!(d[0].name, "cc-hub-mesh");
        assert_eq!(mesh["connectivityTopology"], "Mesh");
        assert_eq!(mesh["isGlobal"], "True");
        assert_eq!(mesh["appliesToGroups"][0]["isGlobal"], "True");
        assert!(
            mesh["appliesToGroups"][0]["networkGroupId"]
                .as_str()
                .unwrap()
                .ends_with("/networkGroups/global-hubs")
        );
        assert_eq!(d[0].regions.len(), 7);
        let hs = &d[1];
        assert_eq!(hs.name, "cc-hubspoke-eastus");
        assert_eq!(hs.regions, vec!["eastus"]);
        let p = &hs.body["properties"];
        assert_eq!(p["connectivityTopology"], "HubAndSpoke");
        assert_eq!(p["isGlobal"], "False");
        assert!(
            p["hubs"][0]["resourceId"]
                .as_str()
                .unwrap()
                .ends_with("/virtualNetworks/vnet-hub-eastus")
        );
        let groups: Vec<&str> = p["appliesToGroups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["networkGroupId"].as_str().unwrap())
            .collect();
        assert!(groups[0].ends_with("/all-prod-spokes-eastus"), "{groups:?}");
        assert!(
            groups[1].ends_with("/all-nonprod-spokes-eastus"),
            "{groups:?}"
        );
        assert_eq!(p["appliesToGroups"][0]["groupConnectivity"], "None");
        assert!(resources::is_managed(&hs.body));
    }

    #[test]
    fn upstream_group_ids_are_used_and_a_missing_group_is_an_error() {
        let it = intent();
        let all: BTreeMap<String, String> = it
            .groups()
            .iter()
            .map(|g| (g.name.clone(), g.id.to_uppercase()))
            .collect();
        let ids = GroupIds::Upstream(all.iter().map(|(k, v)| (lc(k), v.clone())).collect());
        let d = desired_configs(&it, &ids).unwrap();
        assert!(
            d[0].body["properties"]["appliesToGroups"][0]["networkGroupId"]
                .as_str()
                .unwrap()
                .ends_with("/NETWORKGROUPS/GLOBAL-HUBS")
        );
        let mut fewer = all.clone();
        fewer.remove("all-prod-spokes-westus");
        let ids = GroupIds::Upstream(fewer.iter().map(|(k, v)| (lc(k), v.clone())).collect());
        let e = desired_configs(&it, &ids).unwrap_err();
        assert!(e.contains("all-prod-spokes-westus"), "{e}");
    }

    #[test]
    fn only_differing_managed_configs_are_written_and_unmanaged_names_conflict() {
        let it = intent();
        let d = desired_configs(&it, &GroupIds::Derived).unwrap();
        let mut listed: Vec<Value> = d.iter().map(|c| as_listed(c, true)).collect();
        // ARM answers with other casing and read-only fields: no change.
        listed[0]["properties"]["appliesToGroups"][0]["networkGroupId"] = json!(
            d[0].body["properties"]["appliesToGroups"][0]["networkGroupId"]
                .as_str()
                .unwrap()
                .to_lowercase()
        );
        let p = plan_configs(&d, &index_actual(listed.clone()));
        assert!(p.changes.is_empty(), "{:?}", p.changes);
        // One setting differs: one update, with that field.
        listed[3]["properties"]["appliesToGroups"][1]["useHubGateway"] = json!("True");
        let p = plan_configs(&d, &index_actual(listed.clone()));
        assert_eq!(p.changes.len(), 1);
        assert_eq!(p.changes[0].action, Action::Update);
        assert_eq!(p.writes[0].name, "cc-hubspoke-northeurope");
        // An unmanaged configuration under a desired name is never overwritten.
        listed[3] = as_listed(&d[3], false);
        let p = plan_configs(&d, &index_actual(listed.clone()));
        assert!(p.changes.is_empty());
        assert_eq!(p.conflicts.len(), 1);
        // A managed configuration the intent dropped is a delete; an unmanaged one is ignored.
        let mut extra = as_listed(&d[1], true);
        extra["id"] = json!(d[1].id.replace("cc-hubspoke-eastus", "cc-old"));
        extra["name"] = json!("cc-old");
        let mut foreign = extra.clone();
        foreign["name"] = json!("cc-team");
        foreign["id"] = json!(d[1].id.replace("cc-hubspoke-eastus", "cc-team"));
        foreign["properties"]["description"] = json!("theirs");
        listed.push(extra);
        listed.push(foreign);
        let p = plan_configs(&d, &index_actual(listed));
        assert_eq!(p.dropped.len(), 1);
        assert_eq!(p.dropped[0].name, "cc-old");
        assert_eq!(p.changes.last().unwrap().action, Action::Delete);
    }

    fn status(ids: &[&str]) -> RegionStatus {
        RegionStatus {
            status: "Deployed".into(),
            configuration_ids: ids.iter().map(|s| s.to_string()).collect(),
            commit_time: Some(time::macros::datetime!(2026-01-01 0:00:01 UTC)),
            error_message: String::new(),
        }
    }

    #[test]
    fn goal_state_is_computed_from_the_whole_intent_and_keeps_what_is_not_ours() {
        let it = intent();
        let d = desired_configs(&it, &GroupIds::Derived).unwrap();
        let regions: Vec<String> = it.region_names().iter().map(|s| s.to_string()).collect();
        let mut listed: Vec<Value> = d.iter().map(|c| as_listed(c, true)).collect();
        let nm = it.network_manager_id();
        let old = format!("{nm}/connectivityConfigurations/cc-old");
        let team = format!("{nm}/connectivityConfigurations/cc-team");
        let mut o = as_listed(&d[1], true);
        o["id"] = json!(old);
        o["name"] = json!("cc-old");
        let mut t = as_listed(&d[1], false);
        t["id"] = json!(team);
        t["name"] = json!("cc-team");
        listed.push(o);
        listed.push(t);
        let actual = index_actual(listed);

        // Fresh estate: every region gets the mesh and its own hub-and-spoke.
        let goal = goal_state(&regions, &d, &actual, &BTreeMap::new(), false);
        assert_eq!(goal.len(), 7);
        for (r, set) in &goal {
            let names: BTreeSet<String> = set
                .iter()
                .map(|i| resources::name_of(i).to_string())
                .collect();
            let want: BTreeSet<String> =
                ["cc-hub-mesh".to_string(), format!("cc-hubspoke-{r}")].into();
            assert_eq!(names, want, "{r}");
        }
        let changes =
            regions_to_commit(&goal, &BTreeMap::new(), &BTreeMap::new(), &BTreeSet::new());
        assert_eq!(changes.len(), 7);
        assert_eq!(
            changes
                .iter()
                .find(|c| c.region == "eastus")
                .unwrap()
                .note("Connectivity"),
            "commit Connectivity eastus: + cc-hub-mesh, + cc-hubspoke-eastus"
        );

        // eastus runs a foreign config and a dropped managed one; a region the intent does not
        // have runs the dropped one; a deleted config is deployed in westus.
        let mesh = d[0].id.clone();
        let hs_e = d[1].id.clone();
        let gone = format!("{nm}/connectivityConfigurations/cc-gone");
        let deployed: BTreeMap<String, RegionStatus> = [
            ("eastus".to_string(), status(&[&mesh, &hs_e, &team, &old])),
            ("uksouth".to_string(), status(&[&old])),
            ("westus".to_string(), status(&[&mesh, &gone])),
        ]
        .into();
        let keep = goal_state(&regions, &d, &actual, &deployed, false);
        assert!(keep["eastus"].contains(&team) && keep["eastus"].contains(&old));
        assert!(keep["uksouth"].contains(&old));
        assert!(!keep["westus"].contains(&gone));
        let pruned = goal_state(&regions, &d, &actual, &deployed, true);
        assert!(
            pruned["eastus"].contains(&team),
            "foreign configs stay deployed"
        );
        assert!(!pruned["eastus"].contains(&old));
        assert!(pruned["uksouth"].is_empty());
        let c = regions_to_commit(&pruned, &deployed, &BTreeMap::new(), &BTreeSet::new());
        let e = c.iter().find(|c| c.region == "eastus").unwrap();
        assert_eq!(e.removed, vec!["cc-old"]);
        assert!(
            c.iter()
                .any(|c| c.region == "uksouth" && c.removed == vec!["cc-old"])
        );
        // Without prune, eastus has nothing to change.
        let c = regions_to_commit(&keep, &deployed, &BTreeMap::new(), &BTreeSet::new());
        assert!(
            !c.iter()
                .any(|c| c.region == "eastus" || c.region == "uksouth"),
            "{c:?}"
        );
    }

    #[test]
    fn only_managed_configs_report_modification_times() {
        let it = intent();
        let d = desired_configs(&it, &GroupIds::Derived).unwrap();
        let actual = index_actual(vec![as_listed(&d[0], true), as_listed(&d[1], false)]);
        let m = modified_at(&actual);
        assert_eq!(m.len(), 1);
        assert!(m.contains_key(&lc(&d[0].id)));
    }
}
