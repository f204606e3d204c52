//! `fw-policy`: the global parent Azure Firewall Policy, its rule collection groups, the
//! regional child policies (`basePolicy` = the parent) and each regional hub firewall's
//! association to its child.
//!
//! Flags and exit codes are the shared step contract ([`netstep::step`], docs/exit-codes.md),
//! plus `--prune`.
//!
//! # Its own pipeline
//!
//! `fw-policy` runs in `pipeline-fw-policy` and needs no record of the infra steps: everything
//! it needs (what exists, the firewalls and their tiers) it reads from Azure. It takes the same
//! network lease as the infra pipeline in apply mode ([`StepContext::lock`]), so the two
//! pipelines never write at once.
//!
//! # Reads (one list per collection)
//!
//! - `GET .../resourceGroups/{rg}/providers/Microsoft.Network/firewallPolicies` for each
//!   resource group holding the parent or the children (GloboJava: one list);
//! - `GET .../firewallPolicies/{parent}/ruleCollectionGroups` (when the parent exists);
//! - `GET .../resourceGroups/{rg}/providers/Microsoft.Network/azureFirewalls` for each resource
//!   group holding an associated firewall (GloboJava: one list);
//! - in apply mode only, one `GET` of each firewall whose association must change, right before
//!   its `PUT` (read-modify-write on the freshest copy, with `If-Match`).
//!
//! # Writes, in order, one at a time
//!
//! Azure Firewall Policy accepts **one write at a time per policy tree** (the policy, its base,
//! its children and their rule collection groups): a second write while one is running gets
//! 409 `AnotherOperationInProgress`. GloboJava has one tree, so the writes are simply
//! sequential, each long-running operation (`Azure-AsyncOperation`) waited for by the client
//! before the next starts; a 409 that still happens (another tool writing) is retried by the
//! client with backoff. The order is the dependency order:
//!
//! 1. the parent policy (children need it as `basePolicy`);
//! 2. the parent's rule collection groups, only those whose content changed;
//! 3. the child policies;
//! 4. the firewall associations (a child must exist before a firewall can use it);
//! 5. with `--prune` only: dissociate firewalls from children the intent dropped, delete those
//!    children, then delete the parent's rule collection groups the intent dropped. Without
//!    `--prune` the plan shows them as `- delete` and apply leaves them alone.
//!
//! # Why a changed rule rewrites its whole rule collection group
//!
//! The smallest writable unit of firewall policy rules in ARM is the **rule collection
//! group**. In `specification/network/resource-manager/Microsoft.Network/Network/stable/
//! 2026-07-01/firewallPolicy.json` the only paths that write rules are
//! `PUT .../firewallPolicies/{p}/ruleCollectionGroups/{rcg}`
//! (`FirewallPolicyRuleCollectionGroups_CreateOrUpdate`, body
//! `FirewallPolicyRuleCollectionGroup` whose `ruleCollections` array holds the collections
//! and their `rules`) and its draft twin `.../ruleCollectionGroups/{rcg}/
//! ruleCollectionGroupDrafts/default` (`FirewallPolicyRuleCollectionGroupDrafts_CreateOrUpdate`,
//! also a whole group, made live by `POST .../deploy`). Rule collections and rules are plain
//! array items (`x-ms-identifiers: []`), not resources: there is no per-collection or per-rule
//! PUT, PATCH or DELETE, and `FirewallPolicies_UpdateTags` (PATCH) only takes `TagsObject`.
//! So "one rule changed" is exactly one rule collection group PUT, and nothing else is
//! written; the plan names the changed rule fields
//! (`properties.ruleCollections[rc].rules[rule].destinationPorts: ["123"] -> ["124"]`).
//!
//! # Firewalls
//!
//! The hub firewalls may be owned elsewhere. Their policy association is the one thing
//! netstep changes on them. ARM offers no narrower write for it (`AzureFirewalls_UpdateTags`
//! takes tags only), so the step GETs the firewall, sets `properties.firewallPolicy.id` and
//! PUTs the whole resource back: every other member is sent exactly as read, except the
//! members firewall.json marks `readOnly` (see [`bodies::FIREWALL_READ_ONLY`]). A firewall
//! whose tier differs from the policy tier cannot take the policy (Azure refuses it): the step
//! reports that before writing anything (exit 1).
//!
//! # Ownership
//!
//! Policies netstep creates carry the `managed-by: netstep` tag. An existing policy without it
//! is never modified (exit 1 naming it). Rule collection groups have no tags; the groups of
//! the managed parent policy are netstep's (the policy is the unit of ownership), so a group
//! the intent drops is pruned. Rule collection groups of child policies are left alone.

pub mod bodies;

use std::collections::{BTreeMap, BTreeSet};

use clap::Parser;
use netstep::arm::{ArmClient, PutOptions};
use netstep::context::StepContext;
use netstep::error::{Error, ExitStatus, Result};
use netstep::intent::{FirewallPolicy, ResolvedFirewallPolicy};
use netstep::plan::{self, Action, FieldChange, Plan, ResourceChange};
use netstep::resources::{self, is_managed, types};
use netstep::step::{CommonArgs, Outcome, StepArgs};
use serde_json::{Value, json};
use tracing::{info, warn};

/// The step's name (record file, logs).
pub const STEP: &str = "fw-policy";

/// Flags of `fw-policy`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "fw-policy",
    version,
    about = "Global parent Azure Firewall Policy, regional child policies and each hub firewall's association."
)]
pub struct Args {
    /// The flags every step shares.
    #[command(flatten)]
    pub common: CommonArgs,

    /// Apply the `- delete` entries of the plan (managed child policies and rule collection
    /// groups the intent dropped; their firewalls are dissociated first).
    #[arg(long, env = "NETSTEP_PRUNE")]
    pub prune: bool,
}

impl StepArgs for Args {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

/// One write of the apply phase, in order.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    /// PUT a firewall policy (`body` is final).
    Policy { id: String, body: Value },
    /// PUT a rule collection group.
    Rcg { id: String, body: Value },
    /// GET the firewall, set (or remove) its policy, PUT it back.
    Associate {
        firewall_id: String,
        policy_id: Option<String>,
    },
    /// DELETE a managed policy or rule collection group.
    Delete { id: String },
}

impl Op {
    fn is_prune(&self) -> bool {
        matches!(
            self,
            Op::Delete { .. }
                | Op::Associate {
                    policy_id: None,
                    ..
                }
        )
    }
}

/// What was read from Azure.
#[derive(Debug, Default)]
struct Actual {
    /// Policies by lower-cased id.
    policies: BTreeMap<String, Value>,
    /// The parent's rule collection groups by lower-cased name.
    rcgs: BTreeMap<String, Value>,
    /// Firewalls by lower-cased id.
    firewalls: BTreeMap<String, Value>,
}

/// The reconcile result before any write.
#[derive(Debug, Default)]
struct Planned {
    plan: Plan,
    ops: Vec<Op>,
    /// Conditions that make the intent impossible to apply (nothing is written).
    blockers: Vec<String>,
}

fn key(id: &str) -> String {
    id.to_ascii_lowercase()
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn tier_name(p: &ResolvedFirewallPolicy) -> String {
    format!("{:?}", p.tier)
}

/// `/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Network/{kind}` of a resource id.
fn collection_of(id: &str, kind: &str) -> Option<String> {
    let lower = id.to_ascii_lowercase();
    let i = lower.find("/providers/")?;
    Some(format!("{}/providers/Microsoft.Network/{kind}", &id[..i]))
}

/// Reads everything the step compares, one list per collection.
async fn read_actual(
    arm: &ArmClient,
    policies: &[ResolvedFirewallPolicy],
) -> Result<Actual, netstep::arm::ArmError> {
    let mut actual = Actual::default();
    let policy_collections: BTreeSet<String> = policies
        .iter()
        .map(|p| resources::network_id(&p.subscription, &p.resource_group, "firewallPolicies"))
        .collect();
    for c in &policy_collections {
        for p in arm.list(c).await? {
            if let Some(id) = p["id"].as_str() {
                actual.policies.insert(key(id), p.clone());
            }
        }
    }
    let parent = &policies[0];
    if actual.policies.contains_key(&key(&parent.id)) {
        for g in arm
            .list(&format!("{}/ruleCollectionGroups", parent.id))
            .await?
        {
            if let Some(n) = g["name"].as_str() {
                actual.rcgs.insert(n.to_ascii_lowercase(), g.clone());
            }
        }
    }
    let fw_collections: BTreeSet<String> = policies
        .iter()
        .filter_map(|p| p.firewall_id.as_deref())
        .filter_map(|id| collection_of(id, "azureFirewalls"))
        .collect();
    for c in &fw_collections {
        for f in arm.list(c).await? {
            if let Some(id) = f["id"].as_str() {
                actual.firewalls.insert(key(id), f.clone());
            }
        }
    }
    Ok(actual)
}

/// Plans the policy PUT (create or update) of `p`, or records why it cannot be written.
fn plan_policy(out: &mut Planned, p: &ResolvedFirewallPolicy, desired: Value, actual: &Actual) {
    let current = actual.policies.get(&key(&p.id));
    if let Some(cur) = current {
        if !is_managed(cur) {
            out.blockers.push(format!(
                "firewall policy {} exists but is not managed by netstep (no tag {}: {}); netstep never modifies it",
                p.id,
                resources::MANAGED_TAG.0,
                resources::MANAGED_TAG.1
            ));
            return;
        }
        let loc = cur["location"].as_str().unwrap_or_default();
        if !bodies::same_region(loc, &p.location) {
            out.blockers.push(format!(
                "firewall policy {} is in {loc}, the intent puts it in {}; a resource cannot move (delete it or rename the policy)",
                p.id, p.location
            ));
            return;
        }
    }
    let change = plan::plan_resource(
        &p.id,
        types::FIREWALL_POLICY,
        &bodies::policy_compared(&desired),
        current,
    );
    if let Some(mut c) = change {
        if c.action == Action::Create {
            c.fields = plan::plan_resource(&p.id, types::FIREWALL_POLICY, &desired, None)
                .map(|c| c.fields)
                .unwrap_or_default();
        }
        out.plan.changes.push(c);
        out.ops.push(Op::Policy {
            id: p.id.clone(),
            body: bodies::policy_put_body(&desired, current),
        });
    }
}

/// Builds the plan and the ordered writes.
fn reconcile(
    spec: &FirewallPolicy,
    policies: &[ResolvedFirewallPolicy],
    actual: &Actual,
) -> Planned {
    let mut out = Planned::default();
    let parent = &policies[0];
    let threat = format!("{:?}", spec.threat_intel_mode);
    let policy_body = |p: &ResolvedFirewallPolicy| {
        resources::firewall_policy(
            &p.location,
            &tier_name(p),
            &threat,
            spec.dns_proxy,
            p.base_policy_id.as_deref(),
        )
    };

    // 1. The parent.
    plan_policy(&mut out, parent, policy_body(parent), actual);

    // 2. Its rule collection groups.
    let mut wanted_rcgs = BTreeSet::new();
    for g in &spec.rule_collection_groups {
        wanted_rcgs.insert(g.name.to_ascii_lowercase());
        let id = format!("{}/ruleCollectionGroups/{}", parent.id, g.name);
        let desired = bodies::rule_collection_group(g);
        let change = match actual.rcgs.get(&g.name.to_ascii_lowercase()) {
            None => Some(ResourceChange {
                action: Action::Create,
                resource_id: id.clone(),
                resource_type: types::RULE_COLLECTION_GROUP.into(),
                fields: bodies::rcg_create_fields(&desired),
            }),
            Some(cur) => {
                let fields = plan::diff(
                    &bodies::rcg_owned_view(&desired),
                    &bodies::rcg_owned_view(cur),
                );
                (!fields.is_empty()).then(|| ResourceChange {
                    action: Action::Update,
                    resource_id: id.clone(),
                    resource_type: types::RULE_COLLECTION_GROUP.into(),
                    fields,
                })
            }
        };
        if let Some(c) = change {
            out.plan.changes.push(c);
            out.ops.push(Op::Rcg { id, body: desired });
        }
    }

    // 3. The children; 4. the firewall associations.
    let mut associations = Vec::new();
    for child in &policies[1..] {
        plan_policy(&mut out, child, policy_body(child), actual);
        let Some(fw_id) = child.firewall_id.as_deref() else {
            continue;
        };
        let Some(fw) = actual.firewalls.get(&key(fw_id)) else {
            out.blockers.push(format!(
                "firewall {fw_id} (hub of {}) does not exist; fw-policy associates existing firewalls only",
                child.region.as_deref().unwrap_or("?")
            ));
            continue;
        };
        let fw_tier = str_at(fw, "/properties/sku/tier").unwrap_or("Standard");
        if !fw_tier.eq_ignore_ascii_case(&tier_name(child)) {
            out.blockers.push(format!(
                "firewall {fw_id} is {fw_tier} but firewall policy {} is {}; Azure only associates a firewall with a policy of its own tier (set firewall_policy.tier to {fw_tier}, or upgrade the firewall)",
                child.name,
                tier_name(child)
            ));
            continue;
        }
        let current = str_at(fw, "/properties/firewallPolicy/id");
        if current.is_some_and(|c| c.eq_ignore_ascii_case(&child.id)) {
            continue;
        }
        out.plan.notes.push(format!(
            "associate {} with {} (now: {})",
            plan::short_id(fw["id"].as_str().unwrap_or(fw_id)),
            plan::short_id(&child.id),
            current.map_or("none", plan::short_id)
        ));
        associations.push((
            ResourceChange {
                action: Action::Update,
                resource_id: fw["id"].as_str().unwrap_or(fw_id).to_string(),
                resource_type: types::AZURE_FIREWALL.into(),
                fields: vec![FieldChange {
                    path: "properties.firewallPolicy.id".into(),
                    old: current.map(|c| json!(c)),
                    new: Some(json!(child.id)),
                }],
            },
            Op::Associate {
                firewall_id: fw["id"].as_str().unwrap_or(fw_id).to_string(),
                policy_id: Some(child.id.clone()),
            },
        ));
    }
    for (c, op) in associations {
        out.plan.changes.push(c);
        out.ops.push(op);
    }

    // 5. Prune candidates: managed children of the parent the intent dropped (their firewalls
    // first), then the parent's rule collection groups the intent dropped.
    let wanted_children: BTreeSet<String> = policies[1..].iter().map(|p| key(&p.id)).collect();
    let wanted_assoc: BTreeSet<String> = policies[1..]
        .iter()
        .filter_map(|p| p.firewall_id.as_deref().map(key))
        .collect();
    let mut dissociate = Vec::new();
    let mut delete_children = Vec::new();
    for (k, pol) in &actual.policies {
        let is_child = str_at(pol, "/properties/basePolicy/id")
            .is_some_and(|b| b.eq_ignore_ascii_case(&parent.id));
        if !is_child || !is_managed(pol) || wanted_children.contains(k) {
            continue;
        }
        let id = pol["id"].as_str().unwrap_or(k).to_string();
        // Firewalls still using it: from the policy's read-only `firewalls` list and our lists.
        let mut fws: BTreeMap<String, String> = BTreeMap::new();
        for f in pol["properties"]["firewalls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(fid) = f["id"].as_str() {
                fws.insert(key(fid), fid.to_string());
            }
        }
        for (fk, fw) in &actual.firewalls {
            if str_at(fw, "/properties/firewallPolicy/id")
                .is_some_and(|p| p.eq_ignore_ascii_case(&id))
            {
                fws.insert(fk.clone(), fw["id"].as_str().unwrap_or(fk).to_string());
            }
        }
        for (fk, fid) in fws {
            // A firewall the intent re-associates is handled by step 4.
            if wanted_assoc.contains(&fk) {
                continue;
            }
            out.plan.notes.push(format!(
                "dissociate {} from {} (prune)",
                plan::short_id(&fid),
                plan::short_id(&id)
            ));
            dissociate.push((
                ResourceChange {
                    action: Action::Update,
                    resource_id: fid.clone(),
                    resource_type: types::AZURE_FIREWALL.into(),
                    fields: vec![FieldChange {
                        path: "properties.firewallPolicy.id".into(),
                        old: Some(json!(id)),
                        new: None,
                    }],
                },
                Op::Associate {
                    firewall_id: fid,
                    policy_id: None,
                },
            ));
        }
        delete_children.push((
            ResourceChange {
                action: Action::Delete,
                resource_id: id.clone(),
                resource_type: types::FIREWALL_POLICY.into(),
                fields: vec![],
            },
            Op::Delete { id },
        ));
    }
    let mut delete_rcgs = Vec::new();
    if actual
        .policies
        .get(&key(&parent.id))
        .is_some_and(is_managed)
    {
        for (n, g) in &actual.rcgs {
            if wanted_rcgs.contains(n) {
                continue;
            }
            let id = g["id"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{}/ruleCollectionGroups/{n}", parent.id));
            delete_rcgs.push((
                ResourceChange {
                    action: Action::Delete,
                    resource_id: id.clone(),
                    resource_type: types::RULE_COLLECTION_GROUP.into(),
                    fields: vec![],
                },
                Op::Delete { id },
            ));
        }
    }
    for (c, op) in dissociate
        .into_iter()
        .chain(delete_children)
        .chain(delete_rcgs)
    {
        out.plan.changes.push(c);
        out.ops.push(op);
    }
    out
}

/// GET the firewall, set (or remove) its policy, PUT it back with `If-Match`. Retries the
/// read-modify-write when someone else changed the firewall in between (412).
async fn associate(arm: &ArmClient, firewall_id: &str, policy_id: Option<&str>) -> Result<()> {
    for attempt in 1..=3 {
        let Some(fw) = arm.get(firewall_id).await? else {
            return Err(Error::Other(format!(
                "firewall {firewall_id} disappeared before its policy association could be set"
            )));
        };
        let current = str_at(&fw, "/properties/firewallPolicy/id");
        let done = match (current, policy_id) {
            (Some(c), Some(p)) => c.eq_ignore_ascii_case(p),
            (None, None) => true,
            _ => false,
        };
        if done {
            info!(
                firewall = firewall_id,
                "firewall association already as intended"
            );
            return Ok(());
        }
        let body = bodies::firewall_put_body(&fw, policy_id);
        let opts = PutOptions {
            if_match: fw["etag"].as_str().map(str::to_string),
            ..PutOptions::default()
        };
        match arm.put_with(firewall_id, &body, &opts).await {
            Ok(_) => return Ok(()),
            Err(e) if e.status() == Some(412) && attempt < 3 => {
                warn!(
                    firewall = firewall_id,
                    attempt, "firewall changed while being updated; reading it again"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// How a write may run beside the writes next to it: ARM serialises writes under one firewall
/// policy (its rule collection groups), so those run one after another; child policies (which
/// need the parent written first), firewall associations and deletions of whole policies are
/// independent of each other and run concurrently, [`netstep::concurrent::PARALLEL`] at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wave {
    Parent,
    Rcg,
    Child,
    Associate,
    Dissociate,
    DeletePolicy,
    DeleteRcg,
}

impl Wave {
    fn of(op: &Op, parent_id: &str) -> Wave {
        match op {
            Op::Policy { id, .. } if id.eq_ignore_ascii_case(parent_id) => Wave::Parent,
            Op::Policy { .. } => Wave::Child,
            Op::Rcg { .. } => Wave::Rcg,
            Op::Associate {
                policy_id: Some(_), ..
            } => Wave::Associate,
            Op::Associate {
                policy_id: None, ..
            } => Wave::Dissociate,
            Op::Delete { id } if id.to_ascii_lowercase().contains("/rulecollectiongroups/") => {
                Wave::DeleteRcg
            }
            Op::Delete { .. } => Wave::DeletePolicy,
        }
    }
    fn concurrent(self) -> bool {
        matches!(
            self,
            Wave::Child | Wave::Associate | Wave::Dissociate | Wave::DeletePolicy
        )
    }
}

async fn apply_one(arm: &ArmClient, n: usize, of: usize, op: &Op) -> Result<()> {
    match op {
        Op::Policy { id, body } => {
            info!(step = n, resource = %id, "writing firewall policy (long-running; waiting)");
            arm.put(id, body).await?;
        }
        Op::Rcg { id, body } => {
            info!(step = n, resource = %id, "writing rule collection group (long-running; waiting)");
            arm.put(id, body).await?;
        }
        Op::Associate {
            firewall_id,
            policy_id,
        } => {
            info!(step = n, firewall = %firewall_id, policy = ?policy_id, "setting the firewall's policy association");
            associate(arm, firewall_id, policy_id.as_deref()).await?;
        }
        Op::Delete { id } => {
            info!(step = n, resource = %id, "deleting (pruned from the intent)");
            arm.delete(id).await?;
        }
    }
    info!(step = n, of, "write done");
    Ok(())
}

/// Applies `ops` in order, wave by wave: consecutive writes of one concurrent kind run
/// together (bounded), the others one at a time. Prune writes are skipped without `prune`.
async fn apply_ops(arm: &ArmClient, ops: &[Op], prune: bool, parent_id: &str) -> Result<usize> {
    let skipped = ops.iter().filter(|op| op.is_prune() && !prune).count();
    let todo: Vec<(usize, &Op)> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| prune || !op.is_prune())
        .map(|(i, op)| (i + 1, op))
        .collect();
    let of = ops.len();
    let mut rest = &todo[..];
    while let Some((_, first)) = rest.first() {
        let wave = Wave::of(first, parent_id);
        let len = if wave.concurrent() {
            rest.iter()
                .take_while(|(_, op)| Wave::of(op, parent_id) == wave)
                .count()
        } else {
            1
        };
        let (now, later) = rest.split_at(len);
        if len == 1 {
            apply_one(arm, now[0].0, of, now[0].1).await?;
        } else {
            info!(?wave, writes = len, "writing concurrently");
            netstep::concurrent::try_map_bounded(now, netstep::concurrent::PARALLEL, |(n, op)| {
                apply_one(arm, *n, of, op)
            })
            .await?;
        }
        rest = later;
    }
    Ok(skipped)
}

/// Runs the step.
pub async fn run(args: Args) -> Result<Outcome> {
    let prune = args.prune;
    let ctx = StepContext::init(STEP, args.common).await?;
    if ctx.args.snapshot_only {
        return ctx.finish_snapshot_only();
    }
    let lock = ctx.lock().await?;
    let policies = ctx.intent.firewall_policies();
    let header = format!(
        "fw-policy plan (run {}, intent {}, mode {}{})",
        ctx.run_key,
        ctx.intent_digest,
        ctx.args.mode,
        if prune { ", prune" } else { "" }
    );
    let Some(spec) = ctx.intent.firewall_policy.clone() else {
        println!("{header}\nThe intent has no firewall_policy.");
        let plan = Plan::default();
        print!("{}", plan.render());
        if let Some(l) = lock {
            l.release().await?;
        }
        let mut outputs = BTreeMap::new();
        outputs.insert("policy-ids".into(), "{}".into());
        return ctx
            .finish(&plan, outputs, ExitStatus::Converged, json!({}))
            .await;
    };

    let actual = read_actual(&ctx.arm, &policies).await?;
    info!(
        policies = actual.policies.len(),
        rule_collection_groups = actual.rcgs.len(),
        firewalls = actual.firewalls.len(),
        "read firewall policies, rule collection groups and firewalls"
    );
    let mut planned = reconcile(&spec, &policies, &actual);
    let prune_count = planned.ops.iter().filter(|o| o.is_prune()).count();
    if prune_count > 0 && !prune {
        planned.plan.notes.push(format!(
            "{prune_count} prune change(s) above (firewall dissociations, deletions) are applied only with --prune"
        ));
    }
    println!("{header}");
    print!("{}", planned.plan.render());
    if !planned.blockers.is_empty() {
        for b in &planned.blockers {
            println!("  ! {b}");
        }
        return Err(Error::Other(format!(
            "fw-policy cannot converge; nothing was written: {}",
            planned.blockers.join("; ")
        )));
    }

    if ctx.apply() {
        let skipped = apply_ops(&ctx.arm, &planned.ops, prune, &policies[0].id).await?;
        if skipped > 0 {
            warn!(
                skipped,
                "prune changes left in place; rerun with --prune to apply them"
            );
        }
    }
    if let Some(l) = lock {
        l.release().await?;
    }

    let parent = &policies[0];
    let children: BTreeMap<String, String> = policies[1..]
        .iter()
        .filter_map(|p| Some((p.region.clone()?, p.id.clone())))
        .collect();
    let associations: BTreeMap<String, String> = policies[1..]
        .iter()
        .filter_map(|p| Some((p.firewall_id.clone()?, p.id.clone())))
        .collect();
    let policy_ids = json!({"parent": parent.id, "children": children});
    let mut outputs = BTreeMap::new();
    outputs.insert("policy-ids".into(), policy_ids.to_string());
    let extra = json!({
        "policy_ids": policy_ids,
        "associations": associations,
        "prune": prune,
        "prune_changes_pending": if prune { 0 } else { prune_count },
    });
    ctx.finish(&planned.plan, outputs, ExitStatus::Converged, extra)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTENT: &str = "../../examples/globojava/intent.yaml";

    #[test]
    fn waves_keep_writes_under_one_policy_serial_and_run_the_rest_concurrently() {
        let parent = "/x/firewallPolicies/fwp-globojava-global";
        let put = |id: &str| Op::Policy {
            id: id.into(),
            body: json!({}),
        };
        assert_eq!(Wave::of(&put(&parent.to_uppercase()), parent), Wave::Parent);
        assert_eq!(
            Wave::of(&put("/x/firewallPolicies/fwp-globojava-eastus"), parent),
            Wave::Child
        );
        let rcg = Op::Rcg {
            id: format!("{parent}/ruleCollectionGroups/rcg-platform"),
            body: json!({}),
        };
        assert_eq!(Wave::of(&rcg, parent), Wave::Rcg);
        let del_rcg = Op::Delete {
            id: format!("{parent}/ruleCollectionGroups/rcg-old"),
        };
        assert_eq!(Wave::of(&del_rcg, parent), Wave::DeleteRcg);
        let assoc = Op::Associate {
            firewall_id: "/x/azureFirewalls/afw".into(),
            policy_id: Some("/x/firewallPolicies/fwp-globojava-eastus".into()),
        };
        assert_eq!(Wave::of(&assoc, parent), Wave::Associate);
        assert!(
            !Wave::Parent.concurrent() && !Wave::Rcg.concurrent() && !Wave::DeleteRcg.concurrent()
        );
        assert!(Wave::Child.concurrent() && Wave::Associate.concurrent());
    }

    fn intent() -> netstep::intent::Intent {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(INTENT);
        netstep::intent::load_file(&p).expect("reference intent")
    }

    fn firewall(id: &str, tier: &str, policy: Option<&str>) -> Value {
        let mut f = json!({"id": id, "name": resources::name_of(id), "location": "eastus",
            "properties": {"sku": {"name": "AZFW_VNet", "tier": tier}}});
        if let Some(p) = policy {
            f["properties"]["firewallPolicy"] = json!({"id": p});
        }
        f
    }

    /// Azure as netstep leaves it after a converged apply (tier Standard, like the intent).
    fn converged(policies: &[ResolvedFirewallPolicy], spec: &FirewallPolicy) -> Actual {
        let mut a = Actual::default();
        for p in policies {
            let mut body = resources::firewall_policy(
                &p.location,
                "Standard",
                "Alert",
                spec.dns_proxy,
                p.base_policy_id.as_deref(),
            );
            body["id"] = json!(p.id.to_ascii_lowercase());
            body["properties"]["provisioningState"] = json!("Succeeded");
            a.policies.insert(key(&p.id), body);
            if let Some(f) = &p.firewall_id {
                a.firewalls
                    .insert(key(f), firewall(f, "Standard", Some(&p.id.to_uppercase())));
            }
        }
        for g in &spec.rule_collection_groups {
            let mut b = bodies::rule_collection_group(g);
            b["name"] = json!(g.name);
            b["id"] = json!(format!(
                "{}/ruleCollectionGroups/{}",
                policies[0].id, g.name
            ));
            a.rcgs.insert(g.name.to_ascii_lowercase(), b);
        }
        a
    }

    #[test]
    fn converged_estate_plans_nothing() {
        let i = intent();
        let ps = i.firewall_policies();
        let spec = i.firewall_policy.clone().unwrap();
        let out = reconcile(&spec, &ps, &converged(&ps, &spec));
        assert!(out.plan.is_empty(), "{}", out.plan.render());
        assert!(out.ops.is_empty() && out.blockers.is_empty());
    }

    #[test]
    fn fresh_estate_writes_in_dependency_order() {
        let i = intent();
        let ps = i.firewall_policies();
        let spec = i.firewall_policy.clone().unwrap();
        let mut a = Actual::default();
        for p in &ps[1..] {
            let f = p.firewall_id.as_deref().unwrap();
            a.firewalls.insert(key(f), firewall(f, "Standard", None));
        }
        let out = reconcile(&spec, &ps, &a);
        assert!(out.blockers.is_empty(), "{:?}", out.blockers);
        let kinds: Vec<&str> = out
            .ops
            .iter()
            .map(|o| match o {
                Op::Policy { .. } => "policy",
                Op::Rcg { .. } => "rcg",
                Op::Associate { .. } => "fw",
                Op::Delete { .. } => "delete",
            })
            .collect();
        let mut expect = vec!["policy", "rcg", "rcg"];
        expect.extend(["policy"; 7]);
        expect.extend(["fw"; 7]);
        assert_eq!(kinds, expect);
        assert_eq!(out.plan.counts(), (10, 7, 0));
    }

    #[test]
    fn unmanaged_or_mismatched_resources_block_every_write() {
        let i = intent();
        let ps = i.firewall_policies();
        let spec = i.firewall_policy.clone().unwrap();
        let mut a = converged(&ps, &spec);
        a.policies
            .get_mut(&key(&ps[0].id))
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove("tags");
        let fw = ps[2].firewall_id.clone().unwrap();
        a.firewalls.insert(key(&fw), firewall(&fw, "Premium", None));
        a.firewalls
            .remove(&key(ps[3].firewall_id.as_deref().unwrap()));
        let out = reconcile(&spec, &ps, &a);
        assert_eq!(out.blockers.len(), 3, "{:#?}", out.blockers);
        assert!(out.blockers[0].contains("not managed by netstep"));
        assert!(out.blockers[1].contains("afw-hub-westus is Premium"));
        assert!(
            out.blockers[2].contains("afw-hub-northeurope")
                && out.blockers[2].contains("does not exist")
        );
    }

    #[test]
    fn prune_dissociates_then_deletes_children_then_groups() {
        let i = intent();
        let ps = i.firewall_policies();
        let spec = i.firewall_policy.clone().unwrap();
        let mut a = converged(&ps, &spec);
        // A managed child the intent no longer has, used by a firewall outside the intent,
        // an unmanaged child (left alone), and a group the intent dropped.
        let old = ps[0]
            .id
            .replace("fwp-globojava-global", "fwp-globojava-old");
        let old_fw = ps[1]
            .firewall_id
            .clone()
            .unwrap()
            .replace("afw-hub-eastus", "afw-legacy");
        let mut body =
            resources::firewall_policy("westeurope", "Standard", "Alert", true, Some(&ps[0].id));
        body["id"] = json!(old);
        body["properties"]["firewalls"] = json!([{"id": old_fw}]);
        a.policies.insert(key(&old), body.clone());
        let foreign = ps[0].id.replace("fwp-globojava-global", "fwp-team");
        body["id"] = json!(foreign);
        body.as_object_mut().unwrap().remove("tags");
        a.policies.insert(key(&foreign), body);
        a.rcgs.insert(
            "rcg-old".into(),
            json!({"name": "rcg-old", "id": format!("{}/ruleCollectionGroups/rcg-old", ps[0].id)}),
        );
        let out = reconcile(&spec, &ps, &a);
        assert!(out.blockers.is_empty());
        assert_eq!(
            out.ops,
            vec![
                Op::Associate {
                    firewall_id: old_fw,
                    policy_id: None
                },
                Op::Delete { id: old },
                Op::Delete {
                    id: format!("{}/ruleCollectionGroups/rcg-old", ps[0].id)
                },
            ]
        );
        assert!(out.ops.iter().all(Op::is_prune));
        assert_eq!(out.plan.counts(), (0, 1, 2));
    }
}
