//! Reading what exists, computing the plan, and applying it in dependency order.

use std::collections::{BTreeMap, BTreeSet};

use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::{Value, json};
use tracing::{info, warn};

use netstep::arm::{ArmClient, ArmError};
use netstep::error::{Error, Result};
use netstep::intent::{Intent, ResolvedGroup, VnetRole};
use netstep::plan::{self, Action, Plan, ResourceChange};
use netstep::resources::{self, MANAGED_TAG, types};

use crate::policy::{self, PolicyScope};

/// Parallel writes (and per-group reads) in flight at once: well inside ARM's write budget,
/// fast enough for hundreds of groups.
const PARALLEL: usize = 4;

/// One write the plan needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// PUT a body (create or replace).
    Put {
        /// Resource id.
        id: String,
        /// Body.
        body: Value,
    },
    /// PATCH a VNet's tags (`updateTags`: the whole, merged tag set).
    PatchTags {
        /// VNet id.
        id: String,
        /// Every tag the VNet must carry afterwards (foreign tags kept).
        tags: Value,
    },
    /// DELETE (only with `--prune`).
    Delete {
        /// Resource id (with `?force=false` for groups).
        id: String,
        /// ARM type, for messages.
        kind: &'static str,
    },
}

/// Apply phases, in dependency order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// The network manager.
    NetworkManager,
    /// Network groups.
    Groups,
    /// Policy definitions.
    Definitions,
    /// Policy assignments.
    Assignments,
    /// Static members (creates/updates).
    StaticMembers,
    /// VNet tags.
    VnetTags,
    /// Prune: stale static members.
    PruneStaticMembers,
    /// Prune: assignments first.
    PruneAssignments,
    /// Prune: then definitions.
    PruneDefinitions,
    /// Prune: then groups (force=false).
    PruneGroups,
}

/// A planned write with its phase.
#[derive(Debug, Clone)]
pub struct Op {
    /// When it runs.
    pub phase: Phase,
    /// What it does.
    pub write: Write,
}

/// What exists in Azure (only the collections this step reads).
#[derive(Debug, Default)]
pub struct Actual {
    /// The network manager.
    pub network_manager: Option<Value>,
    /// Network groups of the manager, by lower-cased id.
    pub groups: BTreeMap<String, Value>,
    /// Static members of existing managed groups, by lower-cased group id.
    pub static_members: BTreeMap<String, Vec<Value>>,
    /// Policy definitions at each scope, by lower-cased id (all, ours and foreign).
    pub definitions: BTreeMap<String, Value>,
    /// Policy assignments at each scope, by lower-cased id.
    pub assignments: BTreeMap<String, Value>,
    /// VNets of the intent's subscriptions, by lower-cased id.
    pub vnets: BTreeMap<String, Value>,
}

/// The desired state, derived from the intent.
#[derive(Debug)]
pub struct Desired {
    /// Network manager id.
    pub nm_id: String,
    /// Network manager name.
    pub nm_name: String,
    /// Its desired body.
    pub nm_body: Value,
    /// Every resolved group.
    pub groups: Vec<ResolvedGroup>,
    /// Policy scopes (subscriptions and management groups of the manager's scope).
    pub scopes: Vec<PolicyScope>,
    /// Subscriptions whose VNets the intent names.
    pub vnet_subscriptions: Vec<String>,
}

/// The plan and the writes it needs.
#[derive(Debug, Default)]
pub struct Reconcile {
    /// The rendered/recorded plan.
    pub plan: Plan,
    /// Writes, in plan order (sorted by phase when applied).
    pub ops: Vec<Op>,
    /// VNets named in the intent that do not exist: `(name, path in the intent, id)`.
    pub missing_vnets: Vec<(String, String, String)>,
    /// Group ids by name (every resolved group).
    pub group_ids: BTreeMap<String, String>,
    /// Policy definition ids by group name.
    pub definition_ids: BTreeMap<String, Vec<String>>,
    /// Policy assignment ids by group name.
    pub assignment_ids: BTreeMap<String, Vec<String>>,
}

fn lc(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Builds the desired state from the intent.
pub fn desired(intent: &Intent) -> Desired {
    let spec = intent.spec();
    let nm = &spec.network_manager;
    let subs: Vec<String> = nm
        .scope
        .subscriptions
        .iter()
        .map(|s| resources::subscription_id(s))
        .collect();
    let mgs: Vec<String> = nm
        .scope
        .management_groups
        .iter()
        .map(|m| policy::management_group_id(m))
        .collect();
    let accesses: Vec<String> = nm
        .scope_accesses
        .iter()
        .filter_map(|a| serde_json::to_value(a).ok())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let nm_body = resources::network_manager(&nm.location, &nm.description, &subs, &mgs, &accesses);
    let mut scopes: Vec<PolicyScope> = nm
        .scope
        .subscriptions
        .iter()
        .map(|s| PolicyScope::Subscription(s.clone()))
        .chain(
            nm.scope
                .management_groups
                .iter()
                .map(|m| PolicyScope::ManagementGroup(m.clone())),
        )
        .collect();
    scopes.dedup();
    let vnet_subscriptions: BTreeSet<String> = intent
        .vnets()
        .iter()
        .map(|v| v.subscription.to_string())
        .collect();
    Desired {
        nm_id: intent.network_manager_id(),
        nm_name: nm.name.clone(),
        nm_body,
        groups: intent.groups(),
        scopes,
        vnet_subscriptions: vnet_subscriptions.into_iter().collect(),
    }
}

/// Reads what exists: one GET for the manager, then one (paged) list per collection: groups,
/// policy definitions and assignments per scope, VNets per subscription; static members per
/// existing managed group.
pub async fn read(arm: &ArmClient, d: &Desired) -> Result<Actual> {
    let network_manager = arm.get(&d.nm_id).await?;
    let groups_fut = async {
        if network_manager.is_none() {
            return Ok::<_, ArmError>(Vec::new());
        }
        arm.list(&format!("{}/networkGroups", d.nm_id)).await
    };
    let def_paths: Vec<String> = d.scopes.iter().map(|s| s.definitions_list_path()).collect();
    let asg_paths: Vec<String> = d.scopes.iter().map(|s| s.assignments_list_path()).collect();
    let vnet_paths: Vec<String> = d
        .vnet_subscriptions
        .iter()
        .map(|s| format!("/subscriptions/{s}/providers/Microsoft.Network/virtualNetworks"))
        .collect();
    let list_all = |paths: Vec<String>| {
        stream::iter(paths)
            .map(move |p| async move { arm.list(&p).await })
            .buffered(PARALLEL)
            .try_concat()
    };
    let defs_fut = list_all(def_paths);
    let asgs_fut = list_all(asg_paths);
    let vnets_fut = list_all(vnet_paths);
    let (groups, defs, asgs, vnets) =
        futures::try_join!(groups_fut, defs_fut, asgs_fut, vnets_fut)?;
    let by_id = |items: Vec<Value>| -> BTreeMap<String, Value> {
        items
            .into_iter()
            .filter_map(|v| Some((lc(v.get("id")?.as_str()?), v)))
            .collect()
    };
    let groups = by_id(groups);
    // Static members of the managed groups that exist (new groups have none).
    let managed: Vec<String> = groups
        .iter()
        .filter(|(_, g)| resources::is_managed(g))
        .filter_map(|(k, g)| Some((k.clone(), g.get("id")?.as_str()?.to_string())))
        .map(|(_, id)| id)
        .collect();
    let members: Vec<(String, Vec<Value>)> = stream::iter(managed)
        .map(|gid| async move {
            let m = arm.list(&format!("{gid}/staticMembers")).await?;
            Ok::<_, ArmError>((lc(&gid), m))
        })
        .buffered(PARALLEL)
        .try_collect()
        .await?;
    Ok(Actual {
        network_manager,
        groups,
        static_members: members.into_iter().collect(),
        definitions: by_id(defs),
        assignments: by_id(asgs),
        vnets: by_id(vnets),
    })
}

/// Fields of an existing network manager netstep does not manage that do not meet the intent's
/// needs (location, scope, scope accesses). Extra scope or accesses are fine.
pub fn foreign_manager_gaps(desired: &Value, actual: &Value) -> Vec<String> {
    let norm = |s: &str| lc(&s.replace(' ', ""));
    let mut gaps = Vec::new();
    let (dl, al) = (
        desired["location"].as_str().unwrap_or(""),
        actual["location"].as_str().unwrap_or(""),
    );
    if norm(dl) != norm(al) {
        gaps.push(format!("location: {al:?}, the intent needs {dl:?}"));
    }
    let set = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|s| lc(s.trim_end_matches('/')))
            .collect()
    };
    for (path, label) in [
        (
            "/properties/networkManagerScopes/subscriptions",
            "properties.networkManagerScopes.subscriptions",
        ),
        (
            "/properties/networkManagerScopes/managementGroups",
            "properties.networkManagerScopes.managementGroups",
        ),
        (
            "/properties/networkManagerScopeAccesses",
            "properties.networkManagerScopeAccesses",
        ),
    ] {
        let want = set(desired.pointer(path).unwrap_or(&Value::Null));
        let have = set(actual.pointer(path).unwrap_or(&Value::Null));
        let missing: Vec<&String> = want.difference(&have).collect();
        if !missing.is_empty() {
            gaps.push(format!("{label}: missing {missing:?}"));
        }
    }
    gaps
}

/// The merged tag set a VNet must carry: its current tags (foreign ones kept) overlaid with the
/// intent's. `None` when the VNet already carries them all.
pub fn merged_tags(actual: &Value, wanted: &BTreeMap<String, String>) -> Option<Value> {
    let mut tags = actual
        .get("tags")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut changed = false;
    for (k, v) in wanted {
        if tags.get(k).and_then(Value::as_str) != Some(v.as_str()) {
            tags.insert(k.clone(), Value::String(v.clone()));
            changed = true;
        }
    }
    changed.then_some(Value::Object(tags))
}

fn change(action: Action, id: &str, kind: &str, fields: Vec<plan::FieldChange>) -> ResourceChange {
    ResourceChange {
        action,
        resource_id: id.to_string(),
        resource_type: kind.to_string(),
        fields,
    }
}

/// Computes the plan. Errors (exit 1) when an existing resource netstep does not manage stands
/// in the way.
pub fn plan(intent: &Intent, d: &Desired, a: &Actual) -> Result<Reconcile> {
    let mut r = Reconcile::default();
    let mut conflicts = Vec::new();

    // 1. The network manager.
    match &a.network_manager {
        None => {
            r.plan.push(plan::plan_resource(
                &d.nm_id,
                types::NETWORK_MANAGER,
                &d.nm_body,
                None,
            ));
            r.ops.push(Op {
                phase: Phase::NetworkManager,
                write: Write::Put {
                    id: d.nm_id.clone(),
                    body: d.nm_body.clone(),
                },
            });
        }
        Some(nm) if resources::is_managed(nm) => {
            if let Some(c) =
                plan::plan_resource(&d.nm_id, types::NETWORK_MANAGER, &d.nm_body, Some(nm))
            {
                // PUT replaces the whole resource: keep tags we do not own.
                let mut body = d.nm_body.clone();
                if let Some(Value::Object(existing)) = nm.get("tags") {
                    let mut tags = existing.clone();
                    tags.insert(MANAGED_TAG.0.into(), MANAGED_TAG.1.into());
                    body["tags"] = Value::Object(tags);
                }
                r.plan.push(Some(c));
                r.ops.push(Op {
                    phase: Phase::NetworkManager,
                    write: Write::Put {
                        id: d.nm_id.clone(),
                        body,
                    },
                });
            }
        }
        Some(nm) => {
            let gaps = foreign_manager_gaps(&d.nm_body, nm);
            if gaps.is_empty() {
                info!(network_manager = %d.nm_id, "using the existing network manager (not managed by netstep; left unchanged)");
            } else {
                conflicts.push(format!(
                    "network manager {} exists and is not managed by netstep (no {}={} tag), so netstep will not modify it, and it does not meet the intent: {}",
                    d.nm_id,
                    MANAGED_TAG.0,
                    MANAGED_TAG.1,
                    gaps.join("; ")
                ));
            }
        }
    }

    // 2. Network groups.
    let wanted_groups: BTreeSet<String> = d.groups.iter().map(|g| lc(&g.id)).collect();
    for g in &d.groups {
        r.group_ids.insert(g.name.clone(), g.id.clone());
        let body = resources::network_group(&g.description);
        let actual = a.groups.get(&lc(&g.id));
        if let Some(existing) = actual
            && !resources::is_managed(existing)
        {
            conflicts.push(format!(
                "network group {} exists and is not managed by netstep (its description lacks {}); rename the group in the intent or remove the existing one",
                g.id,
                resources::MANAGED_MARKER
            ));
            continue;
        }
        if let Some(c) = plan::plan_resource(&g.id, types::NETWORK_GROUP, &body, actual) {
            r.plan.push(Some(c));
            r.ops.push(Op {
                phase: Phase::Groups,
                write: Write::Put {
                    id: g.id.clone(),
                    body,
                },
            });
        }
    }

    // 3. Policy definitions and assignments, per scope.
    let mut wanted_defs = BTreeSet::new();
    let mut wanted_asgs = BTreeSet::new();
    let mut def_changes = Vec::new();
    let mut asg_changes = Vec::new();
    for scope in &d.scopes {
        for g in &d.groups {
            let Some(def_body) = policy::definition_body(&d.nm_name, &d.nm_id, g) else {
                continue;
            };
            let def_id = scope.definition_id(&scope.definition_name(&d.nm_name, &g.name));
            let asg_id = scope.assignment_id(&scope.assignment_name(&d.nm_name, &g.name));
            wanted_defs.insert(lc(&def_id));
            wanted_asgs.insert(lc(&asg_id));
            r.definition_ids
                .entry(g.name.clone())
                .or_default()
                .push(def_id.clone());
            r.assignment_ids
                .entry(g.name.clone())
                .or_default()
                .push(asg_id.clone());
            let actual_def = a.definitions.get(&lc(&def_id));
            match actual_def {
                Some(x) if !policy::is_ours(x, &d.nm_id) => conflicts.push(format!(
                    "policy definition {def_id} exists and is not netstep's for this network manager (metadata.managedBy/{}); remove or rename it",
                    policy::META_NETWORK_MANAGER
                )),
                None => {
                    def_changes.push(plan::plan_resource(
                        &def_id,
                        types::POLICY_DEFINITION,
                        &def_body,
                        None,
                    ));
                    r.ops.push(Op {
                        phase: Phase::Definitions,
                        write: Write::Put {
                            id: def_id.clone(),
                            body: def_body.clone(),
                        },
                    });
                }
                Some(x) => {
                    let fields = policy::definition_diff(&def_body, x);
                    if !fields.is_empty() {
                        def_changes.push(Some(change(
                            Action::Update,
                            &def_id,
                            types::POLICY_DEFINITION,
                            fields,
                        )));
                        r.ops.push(Op {
                            phase: Phase::Definitions,
                            write: Write::Put {
                                id: def_id.clone(),
                                body: def_body.clone(),
                            },
                        });
                    }
                }
            }
            let asg_body = policy::assignment_body(&d.nm_name, &d.nm_id, &g.name, &def_id);
            match a.assignments.get(&lc(&asg_id)) {
                Some(x) if !policy::is_ours(x, &d.nm_id) => conflicts.push(format!(
                    "policy assignment {asg_id} exists and is not netstep's for this network manager; remove or rename it"
                )),
                None => {
                    asg_changes.push(plan::plan_resource(
                        &asg_id,
                        types::POLICY_ASSIGNMENT,
                        &asg_body,
                        None,
                    ));
                    r.ops.push(Op {
                        phase: Phase::Assignments,
                        write: Write::Put {
                            id: asg_id,
                            body: asg_body,
                        },
                    });
                }
                Some(x) => {
                    let fields = policy::assignment_diff(&asg_body, x);
                    if !fields.is_empty() {
                        asg_changes.push(Some(change(
                            Action::Update,
                            &asg_id,
                            types::POLICY_ASSIGNMENT,
                            fields,
                        )));
                        r.ops.push(Op {
                            phase: Phase::Assignments,
                            write: Write::Put {
                                id: asg_id,
                                body: asg_body,
                            },
                        });
                    }
                }
            }
        }
    }
    for c in def_changes.into_iter().chain(asg_changes) {
        r.plan.push(c);
    }

    // 4. Static members.
    for g in &d.groups {
        let existing = a
            .static_members
            .get(&lc(&g.id))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let by_name: BTreeMap<String, &Value> = existing
            .iter()
            .filter_map(|m| Some((lc(m.get("name")?.as_str()?), m)))
            .collect();
        let mut wanted = BTreeSet::new();
        for vnet_id in &g.static_members {
            let name = resources::static_member_name(vnet_id);
            wanted.insert(lc(&name));
            let id = format!("{}/staticMembers/{name}", g.id);
            let body = resources::static_member(vnet_id);
            if let Some(c) = plan::plan_resource(
                &id,
                types::STATIC_MEMBER,
                &body,
                by_name.get(&lc(&name)).copied(),
            ) {
                r.plan.push(Some(c));
                r.ops.push(Op {
                    phase: Phase::StaticMembers,
                    write: Write::Put { id, body },
                });
            }
        }
        // Stale members netstep created (their name is the hash of their VNet id).
        for (name, m) in &by_name {
            let rid = m
                .pointer("/properties/resourceId")
                .and_then(Value::as_str)
                .unwrap_or("");
            let ours = !rid.is_empty() && lc(&resources::static_member_name(rid)) == *name;
            if ours && !wanted.contains(name) {
                let id = m
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("{}/staticMembers/{name}", g.id), str::to_string);
                r.plan.push(Some(change(
                    Action::Delete,
                    &id,
                    types::STATIC_MEMBER,
                    vec![],
                )));
                r.ops.push(Op {
                    phase: Phase::PruneStaticMembers,
                    write: Write::Delete {
                        id,
                        kind: types::STATIC_MEMBER,
                    },
                });
            }
        }
    }

    // 5. VNet tags.
    for v in intent.vnets() {
        match a.vnets.get(&lc(&v.id)) {
            None => {
                r.missing_vnets
                    .push((v.name.to_string(), v.path.clone(), v.id.clone()));
                r.plan.notes.push(format!(
                    "! virtual network {} ({}, {}) does not exist: netstep does not create VNets yet (managed VNets are a later issue); apply will fail until it exists",
                    v.name,
                    v.path,
                    match v.role {
                        VnetRole::Hub => "hub",
                        VnetRole::Spoke => "spoke",
                    }
                ));
            }
            Some(actual) => {
                let desired = json!({ "tags": v.tags });
                let fields = plan::diff(&desired, actual);
                if let Some(tags) = merged_tags(actual, &v.tags)
                    && !fields.is_empty()
                {
                    r.plan.push(Some(change(
                        Action::Update,
                        &v.id,
                        types::VIRTUAL_NETWORK,
                        fields,
                    )));
                    r.ops.push(Op {
                        phase: Phase::VnetTags,
                        write: Write::PatchTags {
                            id: v.id.clone(),
                            tags,
                        },
                    });
                }
            }
        }
    }

    // 6. Prune candidates: managed resources of this manager the intent dropped.
    for (key, asg) in &a.assignments {
        if policy::is_ours(asg, &d.nm_id) && !wanted_asgs.contains(key) {
            let id = asg["id"].as_str().unwrap_or(key).to_string();
            r.plan.push(Some(change(
                Action::Delete,
                &id,
                types::POLICY_ASSIGNMENT,
                vec![],
            )));
            r.ops.push(Op {
                phase: Phase::PruneAssignments,
                write: Write::Delete {
                    id,
                    kind: types::POLICY_ASSIGNMENT,
                },
            });
        }
    }
    for (key, def) in &a.definitions {
        if policy::is_ours(def, &d.nm_id) && !wanted_defs.contains(key) {
            let id = def["id"].as_str().unwrap_or(key).to_string();
            r.plan.push(Some(change(
                Action::Delete,
                &id,
                types::POLICY_DEFINITION,
                vec![],
            )));
            r.ops.push(Op {
                phase: Phase::PruneDefinitions,
                write: Write::Delete {
                    id,
                    kind: types::POLICY_DEFINITION,
                },
            });
        }
    }
    for (key, g) in &a.groups {
        if resources::is_managed(g) && !wanted_groups.contains(key) {
            let id = g["id"].as_str().unwrap_or(key).to_string();
            r.plan.push(Some(change(
                Action::Delete,
                &id,
                types::NETWORK_GROUP,
                vec![],
            )));
            r.ops.push(Op {
                phase: Phase::PruneGroups,
                write: Write::Delete {
                    id: format!("{id}?force=false"),
                    kind: types::NETWORK_GROUP,
                },
            });
        }
    }

    if !conflicts.is_empty() {
        return Err(Error::Other(conflicts.join("\n")));
    }
    // Dependency order (stable within a phase).
    r.ops.sort_by_key(|o| o.phase);
    Ok(r)
}

/// The managed groups the plan deletes (lower-cased ids, without the query).
pub fn groups_to_delete(ops: &[Op]) -> Vec<String> {
    ops.iter()
        .filter_map(|op| match &op.write {
            Write::Delete { id, kind } if *kind == types::NETWORK_GROUP => {
                Some(lc(id.split('?').next().unwrap_or(id)))
            }
            _ => None,
        })
        .collect()
}

/// What still refers to each network group of the manager: connectivity configurations
/// (`appliesToGroups`), security admin rule collections (`appliesToGroups`) and admin rules
/// (`NetworkGroup` sources and destinations). Keys are lower-cased group ids; values name the
/// referring resources. Read only when a prune would delete a group.
pub async fn group_references(
    arm: &ArmClient,
    nm_id: &str,
) -> Result<BTreeMap<String, Vec<String>>> {
    let mut refs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut note = |gid: &str, by: &Value| {
        let by = by["id"].as_str().unwrap_or_default();
        refs.entry(lc(gid)).or_default().push(by.to_string());
    };
    let applies = |v: &Value| -> Vec<String> {
        v.pointer("/properties/appliesToGroups")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|g| g["networkGroupId"].as_str().map(str::to_string))
            .collect()
    };
    for cc in arm
        .list(&format!("{nm_id}/connectivityConfigurations"))
        .await?
    {
        for g in applies(&cc) {
            note(&g, &cc);
        }
    }
    let sacs = arm
        .list(&format!("{nm_id}/securityAdminConfigurations"))
        .await?;
    for sac in &sacs {
        let Some(sac_id) = sac["id"].as_str() else {
            continue;
        };
        for rc in arm.list(&format!("{sac_id}/ruleCollections")).await? {
            for g in applies(&rc) {
                note(&g, &rc);
            }
            let Some(rc_id) = rc["id"].as_str() else {
                continue;
            };
            for rule in arm.list(&format!("{rc_id}/rules")).await? {
                for side in ["sources", "destinations"] {
                    let ids: Vec<String> = rule
                        .pointer(&format!("/properties/{side}"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter(|p| p["addressPrefixType"] == "NetworkGroup")
                        .filter_map(|p| p["addressPrefix"].as_str().map(str::to_string))
                        .collect();
                    for g in ids {
                        note(&g, &rule);
                    }
                }
            }
        }
    }
    Ok(refs)
}

/// Applies the writes phase by phase (writes of one phase run in parallel, bounded). Deletes
/// run only when `prune` is set.
pub async fn apply(arm: &ArmClient, ops: &[Op], prune: bool) -> Result<usize> {
    let mut phases: BTreeMap<Phase, Vec<&Write>> = BTreeMap::new();
    for op in ops {
        if matches!(op.write, Write::Delete { .. }) && !prune {
            continue;
        }
        phases.entry(op.phase).or_default().push(&op.write);
    }
    let mut done = 0;
    for (phase, writes) in phases {
        info!(?phase, writes = writes.len(), "applying");
        let results: Vec<Result<()>> = stream::iter(writes)
            .map(|w| run_write(arm, w))
            .buffered(PARALLEL)
            .collect()
            .await;
        for res in results {
            res?;
            done += 1;
        }
    }
    Ok(done)
}

async fn run_write(arm: &ArmClient, w: &Write) -> Result<()> {
    match w {
        Write::Put { id, body } => {
            let out = arm.put(id, body).await?;
            let state = out
                .pointer("/properties/provisioningState")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            info!(resource = %id, state, "written");
        }
        Write::PatchTags { id, tags } => {
            arm.patch(id, &json!({ "tags": tags })).await?;
            info!(resource = %id, "tags merged");
        }
        Write::Delete { id, kind } => match arm.delete(id).await {
            Ok(()) => info!(resource = %id, "deleted"),
            Err(e) if *kind == types::NETWORK_GROUP && e.status() == Some(409) => {
                let name = resources::name_of(id.split('?').next().unwrap_or(id));
                warn!(resource = %id, code = e.code().unwrap_or(""), "group still deployed");
                return Err(Error::Other(format!(
                    "refusing to delete network group {name}: it is still part of a deployed configuration ({}: {}). Undeploy it first (mesh-connect / admin-rules with --prune), then run tag-groups --prune again",
                    e.code().unwrap_or("409"),
                    e.message()
                )));
            }
            Err(e) => return Err(e.into()),
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globojava() -> Intent {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/globojava/intent.yaml");
        netstep::intent::load_file(&p).unwrap()
    }

    #[test]
    fn plan_from_nothing_creates_everything_and_names_missing_vnets() {
        let intent = globojava();
        let d = desired(&intent);
        let r = plan(&intent, &d, &Actual::default()).unwrap();
        // 1 manager + 17 groups + 17 definitions + 17 assignments.
        assert_eq!(r.plan.counts(), (52, 0, 0));
        assert_eq!(r.missing_vnets.len(), 21);
        assert_eq!(r.plan.notes.len(), 21);
        // Phases come out in dependency order.
        let phases: Vec<Phase> = r.ops.iter().map(|o| o.phase).collect();
        let mut sorted = phases.clone();
        sorted.sort();
        assert_eq!(phases, sorted);
        assert_eq!(r.definition_ids["all-prod-spokes-eastus"], vec![
            "/subscriptions/6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718/providers/Microsoft.Authorization/policyDefinitions/netstep-avnm-globojava-all-prod-spokes-eastus".to_string()
        ]);
    }

    #[test]
    fn foreign_groups_and_policies_in_the_way_are_errors() {
        let intent = globojava();
        let d = desired(&intent);
        let mut a = Actual::default();
        let gid = intent.network_group_id("global-hubs");
        a.groups.insert(
            lc(&gid),
            json!({"id": gid, "properties": {"description": "hand-made"}}),
        );
        let scope = &d.scopes[0];
        let def_id = scope.definition_id(&scope.definition_name(&d.nm_name, "all-prod-spokes"));
        a.definitions.insert(
            lc(&def_id),
            json!({"id": def_id, "properties": {"metadata": {"managedBy": "someone"}}}),
        );
        let e = plan(&intent, &d, &a).unwrap_err().to_string();
        assert!(
            e.contains("network group") && e.contains("global-hubs"),
            "{e}"
        );
        assert!(
            e.contains("policy definition") && e.contains("all-prod-spokes"),
            "{e}"
        );
    }

    #[test]
    fn stale_static_members_netstep_made_are_pruned_and_others_left_alone() {
        let intent = globojava();
        let d = desired(&intent);
        let mut a = Actual::default();
        let gid = intent.network_group_id("global-hubs");
        a.groups.insert(
            lc(&gid),
            json!({"id": gid, "properties": {"description": "Every hub VNet [managed-by=netstep]", "memberType": "VirtualNetwork"}}),
        );
        let vnet =
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/old";
        let ours = resources::static_member_name(vnet);
        a.static_members.insert(
            lc(&gid),
            vec![
                json!({"id": format!("{gid}/staticMembers/{ours}"), "name": ours, "properties": {"resourceId": vnet}}),
                json!({"id": format!("{gid}/staticMembers/manual"), "name": "manual", "properties": {"resourceId": vnet}}),
            ],
        );
        let r = plan(&intent, &d, &a).unwrap();
        let deletes: Vec<&str> = r
            .plan
            .changes
            .iter()
            .filter(|c| c.action == Action::Delete)
            .map(|c| c.resource_id.as_str())
            .collect();
        assert_eq!(deletes, vec![format!("{gid}/staticMembers/{ours}")]);
    }

    #[test]
    fn merged_tags_keep_foreign_tags_and_report_nothing_when_present() {
        let a = json!({"tags": {"costcenter": "cc-4711", "env": "dev"}});
        let want: BTreeMap<String, String> = [("env".to_string(), "prod".to_string())].into();
        assert_eq!(
            merged_tags(&a, &want),
            Some(json!({"costcenter": "cc-4711", "env": "prod"}))
        );
        let ok = json!({"tags": {"costcenter": "cc-4711", "env": "prod"}});
        assert_eq!(merged_tags(&ok, &want), None);
        assert_eq!(merged_tags(&json!({}), &want), Some(json!({"env": "prod"})));
    }

    #[test]
    fn a_foreign_manager_is_used_when_it_covers_the_intent() {
        let desired = resources::network_manager(
            "westeurope",
            "",
            &["/subscriptions/abc".into()],
            &[],
            &["Connectivity".into(), "SecurityAdmin".into()],
        );
        let covers = json!({"location": "West Europe", "properties": {
            "networkManagerScopes": {"subscriptions": ["/subscriptions/ABC", "/subscriptions/def"], "managementGroups": []},
            "networkManagerScopeAccesses": ["SecurityAdmin", "Connectivity", "Routing"]}});
        assert!(foreign_manager_gaps(&desired, &covers).is_empty());
        let short = json!({"location": "eastus", "properties": {
            "networkManagerScopes": {"subscriptions": ["/subscriptions/def"]},
            "networkManagerScopeAccesses": ["Connectivity"]}});
        let gaps = foreign_manager_gaps(&desired, &short);
        assert_eq!(gaps.len(), 3, "{gaps:?}");
        assert!(gaps[0].starts_with("location"), "{gaps:?}");
        assert!(gaps[1].contains("subscriptions"), "{gaps:?}");
        assert!(gaps[2].contains("securityadmin"), "{gaps:?}");
    }
}
