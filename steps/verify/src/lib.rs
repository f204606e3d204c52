//! `verify`: Reads back what is deployed and proves the intent holds; exit 3 on drift. Read-only.
//!
//! Flags and exit codes are the shared step contract ([`netstep::step`], docs/exit-codes.md).
//!
//! # What it reads (never writes)
//!
//! One call per collection: the network manager, its groups (and static members of groups that
//! declare some), the VNets of every subscription in scope, `listDeploymentStatus`,
//! `listActiveConnectivityConfigurations`, `listActiveSecurityAdminRules`, the firewall
//! policies, the parent's rule collection groups, the firewalls, the DNS zone, its links and
//! its A records. Then, per VNet of interest, `listNetworkManagerEffectiveConnectivity
//! Configurations` and `listNetworkManagerEffectiveSecurityAdminRules` (at most 8 at a time).
//!
//! # Membership, including VNets the intent does not name
//!
//! AVNM has no "list members" API for policy-driven membership; the effective APIs tell which
//! groups a VNet is in through the configurations applying to it (`configurationGroups`,
//! `ruleGroups`). So membership is observable only for groups an active configuration in the
//! VNet's region references. The *expected* membership of a tag-driven group is the set of
//! VNets whose tags match its conditions (and location, for the per-region derived groups):
//! for the intent's VNets, their declared tags; for every other VNet in scope, its actual
//! tags. A VNet the intent does not name but whose tags match a group is a *dynamic member*:
//! it is checked like the others (membership, spoke-to-hub, isolation). Policy takes time:
//! verify polls the effective APIs (`NETSTEP_POLICY_POLL_MS`, default 10 s) until every
//! VNet's observed membership equals what policy must produce from its current tags, or
//! `--wait-membership` seconds have passed; then it compares with the intent.
//!
//! # Outcome mode
//!
//! `--outcome=Succeeded|Failed|Error` (the pipelines' onExit handler) records the workflow
//! outcome as the record `outcome` of the run key, breaks a network lease a killed step of the
//! run still holds, and makes no ARM call.

pub mod checks;
pub mod desired;
pub mod isolation;
pub mod read;
pub mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use netstep::context::{StepContext, env_ms};
use netstep::error::{Error, ExitStatus, Result};
use netstep::plan::Plan;
use netstep::step::{CommonArgs, Outcome, StepArgs};
use serde_json::{Value, json};
use tracing::info;

use crate::checks::{Membership, World};
use crate::report::{Check, Report};

/// The step's name (record file, logs).
pub const STEP: &str = "verify";

/// Which checks to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Only {
    /// Everything.
    All,
    /// Everything pipeline-infra converges: all but the firewall checks (those belong to
    /// pipeline-fw-policy, which may not have run yet).
    Infra,
    /// Network manager, groups, VNets, membership.
    Groups,
    /// Connectivity deployments, active configurations, spoke-to-hub, hub mesh.
    Connectivity,
    /// Security admin deployments, active rules, prod/nonprod isolation.
    SecurityAdmin,
    /// Firewall policies, rule collection groups, associations.
    Firewall,
    /// DNS zone, links, records.
    Dns,
}

impl Only {
    fn name(self) -> &'static str {
        match self {
            Only::All => "all",
            Only::Infra => "infra",
            Only::Groups => "groups",
            Only::Connectivity => "connectivity",
            Only::SecurityAdmin => "security-admin",
            Only::Firewall => "firewall",
            Only::Dns => "dns",
        }
    }

    fn wants(self, category: Only) -> bool {
        match self {
            Only::All => true,
            Only::Infra => category != Only::Firewall,
            _ => self == category,
        }
    }
}

/// A workflow's final status (`--outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkflowOutcome {
    /// Succeeded.
    #[value(name = "Succeeded")]
    Succeeded,
    /// Failed.
    #[value(name = "Failed")]
    Failed,
    /// Error.
    #[value(name = "Error")]
    Error,
}

/// Flags of `verify`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "verify",
    version,
    about = "Reads back what is deployed and proves the intent holds; exit 3 on drift. Read-only."
)]
pub struct Args {
    /// The flags every step shares.
    #[command(flatten)]
    pub common: CommonArgs,

    /// Which checks to run.
    #[arg(long, env = "NETSTEP_VERIFY_ONLY", value_enum, default_value_t = Only::All)]
    pub only: Only,

    /// Record the workflow's outcome for the run key (onExit handler); no ARM call.
    #[arg(long, value_enum)]
    pub outcome: Option<WorkflowOutcome>,

    /// How long to wait for policy-driven membership to converge, in seconds.
    #[arg(
        long,
        env = "NETSTEP_WAIT_MEMBERSHIP",
        value_name = "SECONDS",
        default_value_t = 300
    )]
    pub wait_membership: u64,
}

impl StepArgs for Args {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

/// Runs the step.
pub async fn run(args: Args) -> Result<Outcome> {
    if let Some(o) = args.outcome {
        return record_outcome(&args.common, o).await;
    }
    let ctx = StepContext::init(STEP, args.common).await?;
    if ctx.args.snapshot_only {
        return ctx.finish_snapshot_only();
    }
    let only = args.only;
    let wait = Duration::from_secs(args.wait_membership);
    let (world, membership, converged) = read_world(&ctx, only, wait).await?;
    let checks = run_checks(&ctx, only, &world, &membership, converged);
    let view = if only.wants(Only::Groups)
        || only.wants(Only::Connectivity)
        || only.wants(Only::SecurityAdmin)
    {
        checks::membership_view(&ctx.intent, &world, &membership)
    } else {
        Value::Null
    };
    let report = Report::new(&ctx.run_key, &ctx.intent_digest, only.name(), checks, view);
    println!(
        "verify run {} intent {} (only {}; read-only)",
        ctx.run_key,
        ctx.intent_digest,
        only.name()
    );
    print!("{}", report.render());
    let report_json = serde_json::to_value(&report).unwrap_or(Value::Null);
    let mut outputs = BTreeMap::new();
    outputs.insert("drift".to_string(), report.drift.to_string());
    if let Some(dir) = &ctx.args.outputs_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Other(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join("report.json");
        let text = serde_json::to_string_pretty(&report_json).unwrap_or_default();
        std::fs::write(&path, text)
            .map_err(|e| Error::Other(format!("writing {}: {e}", path.display())))?;
        outputs.insert("report".to_string(), path.display().to_string());
    }
    let status = if report.drift {
        ExitStatus::Drift
    } else {
        ExitStatus::Converged
    };
    let changes = report.changes;
    info!(drift = report.drift, changes, "verify finished");
    let outputs_dir = ctx.args.outputs_dir.clone();
    let out = ctx
        .finish(
            &Plan::default(),
            outputs,
            status,
            json!({"report": report_json}),
        )
        .await?;
    // `finish` counts plan changes (verify plans none); verify's `changes` output is the
    // number of differences found.
    if let Some(dir) = outputs_dir {
        let mut o = BTreeMap::new();
        o.insert("changes".to_string(), changes.to_string());
        netstep::step::write_outputs(&dir, &o)?;
    }
    Ok(out)
}

fn run_checks(
    ctx: &StepContext,
    only: Only,
    w: &World,
    m: &Membership,
    converged: bool,
) -> Vec<Check> {
    let i = &ctx.intent;
    let mut out = Vec::new();
    if only.wants(Only::Groups) {
        out.push(checks::network_manager(i, w));
        out.push(checks::network_groups(i, w));
        out.push(checks::vnets(i, w));
        out.push(checks::managed_vnets(i, w));
        out.push(checks::peering_sync(i, w));
        out.extend(checks::managed_firewalls(i, w));
        out.push(checks::group_membership(i, w, m, converged));
    }
    if only.wants(Only::Connectivity) {
        out.extend(checks::deployment_status(
            i,
            w,
            "Connectivity",
            "connectivity",
        ));
        out.push(checks::active_connectivity(i, w));
        out.push(checks::spoke_to_hub(i, w, m));
        out.push(checks::hub_mesh(i, w, m));
    }
    if only.wants(Only::SecurityAdmin) {
        out.extend(checks::deployment_status(
            i,
            w,
            "SecurityAdmin",
            "security-admin",
        ));
        out.extend(checks::active_security_admin(i, w));
        out.push(checks::isolation_check(i, w, m));
    }
    if only.wants(Only::Firewall) {
        out.extend(checks::firewall_policies(i, w));
        out.extend(checks::firewall_rcgs(i, w));
        out.extend(checks::firewall_associations(i, w));
    }
    if only.wants(Only::Dns) {
        out.extend(checks::dns(i, w));
    }
    out
}

fn lc(s: &str) -> String {
    s.to_ascii_lowercase()
}

async fn read_world(
    ctx: &StepContext,
    only: Only,
    wait: Duration,
) -> Result<(World, Membership, bool)> {
    let arm = &ctx.arm;
    let i = &ctx.intent;
    let mut w = World::default();
    let avnm = only.wants(Only::Groups)
        || only.wants(Only::Connectivity)
        || only.wants(Only::SecurityAdmin);
    let mut converged = true;
    if avnm {
        let nm_id = i.network_manager_id();
        w.network_manager = arm.get(&nm_id).await?;
        if w.network_manager.is_some() {
            if only.wants(Only::Groups) {
                w.groups = read::by_name(
                    read::list_or_empty(arm, &format!("{nm_id}/networkGroups")).await?,
                );
                for g in i.groups() {
                    if !g.static_members.is_empty() && w.groups.contains_key(&lc(&g.name)) {
                        let members =
                            read::list_or_empty(arm, &format!("{}/staticMembers", g.id)).await?;
                        w.static_members.insert(
                            lc(&g.name),
                            members
                                .iter()
                                .filter_map(|m| m.pointer("/properties/resourceId")?.as_str())
                                .map(lc)
                                .collect(),
                        );
                    }
                }
            }
            let regions: Vec<String> = i.region_names().iter().map(|s| s.to_string()).collect();
            let mut types = Vec::new();
            if only.wants(Only::Connectivity) || only.wants(Only::Groups) {
                types.push("Connectivity".to_string());
            }
            if only.wants(Only::SecurityAdmin) || only.wants(Only::Groups) {
                types.push("SecurityAdmin".to_string());
            }
            w.deployment_status = read::post_list_or_empty(
                arm,
                &format!("{nm_id}/listDeploymentStatus"),
                &netstep::resources::deployment_status_query(&regions, &types),
            )
            .await?;
            if types.iter().any(|t| t == "Connectivity") {
                w.active_connectivity = read::post_list_or_empty(
                    arm,
                    &format!("{nm_id}/listActiveConnectivityConfigurations"),
                    &json!({"regions": regions}),
                )
                .await?;
            }
            if types.iter().any(|t| t == "SecurityAdmin") {
                w.active_security = read::post_list_or_empty(
                    arm,
                    &format!("{nm_id}/listActiveSecurityAdminRules"),
                    &json!({"regions": regions}),
                )
                .await?;
            }
        }
        let mut subs: BTreeSet<String> = i
            .network_manager
            .scope
            .subscriptions
            .iter()
            .map(|s| s.trim_start_matches("/subscriptions/").to_string())
            .collect();
        for v in i.vnets() {
            subs.insert(v.subscription.to_string());
        }
        w.vnets = read::vnets(arm, &subs).await?;
        let m = Membership::build(i, &w);
        let conn = only.wants(Only::Connectivity) || only.wants(Only::Groups);
        let sec = only.wants(Only::SecurityAdmin) || only.wants(Only::Groups);
        // Poll until policy-driven membership matches the VNets' current tags, bounded.
        let poll = Duration::from_millis(env_ms("NETSTEP_POLICY_POLL_MS").unwrap_or(10_000));
        let started = tokio::time::Instant::now();
        let mut pending = m.vnets.clone();
        loop {
            let fresh = read::effective(arm, &pending, conn, sec).await?;
            w.effective.extend(fresh);
            pending = m.unconverged(&w);
            if pending.is_empty() {
                break;
            }
            if started.elapsed() >= wait {
                converged = false;
                break;
            }
            info!(
                unconverged = pending.len(),
                "waiting for policy-driven membership to converge"
            );
            tokio::time::sleep(poll).await;
        }
        read_firewall_dns(ctx, only, &mut w).await?;
        return Ok((w, m, converged));
    }
    read_firewall_dns(ctx, only, &mut w).await?;
    Ok((w, Membership::default(), converged))
}

async fn read_firewall_dns(ctx: &StepContext, only: Only, w: &mut World) -> Result<()> {
    let arm = &ctx.arm;
    let i = &ctx.intent;
    if only.wants(Only::Groups) {
        // Managed hub firewalls (step vnets): the firewalls and public IPs of their groups.
        let mut rgs: BTreeSet<String> = BTreeSet::new();
        for v in i.vnets() {
            if let Some(fw) = v.firewall.filter(|f| f.managed) {
                rgs.insert(netstep::resources::resource_group_id(
                    &fw.subscription,
                    &fw.resource_group,
                ));
            }
        }
        for rg in rgs {
            for (kind, into) in [
                ("azureFirewalls", &mut w.firewalls),
                ("publicIPAddresses", &mut w.public_ips),
            ] {
                let path = format!("{rg}/providers/Microsoft.Network/{kind}");
                for f in read::list_or_empty(arm, &path).await? {
                    if let Some(id) = f.get("id").and_then(Value::as_str) {
                        into.insert(lc(id), f.clone());
                    }
                }
            }
        }
    }
    if only.wants(Only::Firewall) && i.firewall_policy.is_some() {
        let pols = i.firewall_policies();
        let mut rgs: BTreeSet<(String, String)> = BTreeSet::new();
        for p in &pols {
            rgs.insert((p.subscription.clone(), p.resource_group.clone()));
        }
        for (sub, rg) in &rgs {
            let path = netstep::resources::network_id(sub, rg, "firewallPolicies");
            w.firewall_policies
                .extend(read::by_name(read::list_or_empty(arm, &path).await?));
        }
        if let Some(parent) = pols.first() {
            w.rule_collection_groups = read::by_name(
                read::list_or_empty(arm, &format!("{}/ruleCollectionGroups", parent.id)).await?,
            );
        }
        let mut fw_rgs: BTreeSet<String> = BTreeSet::new();
        for p in &pols {
            if let Some(fw) = &p.firewall_id
                && let Some(idx) = fw.to_ascii_lowercase().find("/providers/")
            {
                fw_rgs.insert(fw[..idx].to_string());
            }
        }
        for rg in fw_rgs {
            let path = format!("{rg}/providers/Microsoft.Network/azureFirewalls");
            for f in read::list_or_empty(arm, &path).await? {
                if let Some(id) = f.get("id").and_then(Value::as_str) {
                    w.firewalls.insert(lc(id), f.clone());
                }
            }
        }
    }
    if only.wants(Only::Dns)
        && let Some(dns) = &i.dns
    {
        for z in &dns.zones {
            let zid = netstep::resources::network_id(
                &z.subscription,
                &z.resource_group,
                &format!("privateDnsZones/{}", z.name),
            );
            let zone = arm.get(&zid).await?;
            let present = zone.is_some();
            w.dns_zones.insert(lc(&zid), zone);
            if present {
                w.dns_links.insert(
                    lc(&zid),
                    read::by_name(
                        read::list_or_empty(arm, &format!("{zid}/virtualNetworkLinks")).await?,
                    ),
                );
                w.dns_records.insert(
                    lc(&zid),
                    read::by_name(read::list_or_empty(arm, &format!("{zid}/A")).await?),
                );
            }
        }
    }
    Ok(())
}

/// `--outcome`: records the workflow outcome as the run's `outcome` record. No ARM call.
async fn record_outcome(common: &CommonArgs, outcome: WorkflowOutcome) -> Result<Outcome> {
    use netstep::state::{StateStore, Status, StepRecord};
    let (Some(url), Some(run_key)) = (&common.state, &common.run_key) else {
        return Err(Error::Usage("--outcome needs --state and --run-key".into()));
    };
    let cred = if url.starts_with("https://") && !url.contains("sig=") {
        match netstep::arm::Credential::from_env() {
            Ok(netstep::arm::Credential::Azure(c)) => Some(c),
            Ok(_) => {
                return Err(Error::Usage(
                    "the state store needs an Entra ID credential or a SAS in its URL".into(),
                ));
            }
            Err(e) => return Err(Error::Usage(format!("no Azure credential: {e}"))),
        }
    } else {
        None
    };
    let store = StateStore::open(url, cred).await?;
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let name = match outcome {
        WorkflowOutcome::Succeeded => "Succeeded",
        WorkflowOutcome::Failed => "Failed",
        WorkflowOutcome::Error => "Error",
    };
    let previous = store.get_record(run_key, "outcome").await?;
    let changed = previous
        .as_ref()
        .is_none_or(|p| p.extra.get("outcome").and_then(Value::as_str) != Some(name));
    // The run's intent, when its snapshot exists (a run can fail before it does; then no step
    // of it ever took the network lease).
    let intent = match store.get_snapshot(run_key).await? {
        Some(b) => netstep::intent::Intent::from_snapshot_json("snapshot", &b).ok(),
        None => None,
    };
    let digest = intent.as_ref().map(|i| i.digest()).unwrap_or_default();
    // Every step of the run has ended: a lease still held under its run key was left by a
    // killed step (holders are "<step> run <run-key> pid <pid>", see StepContext::lock).
    let mut broken = None;
    if let Some(i) = &intent {
        for lock_name in netstep::context::lock_names(&i.network_manager_id()) {
            if let Some(b) = store
                .break_lock_held_by(&lock_name, &format!(" run {run_key} pid "))
                .await?
            {
                broken = Some(match broken {
                    None => b,
                    Some(prev) => format!("{prev}; {b}"),
                });
            }
        }
    }
    let mut outputs = BTreeMap::new();
    outputs.insert("outcome".to_string(), name.to_string());
    outputs.insert(
        "lease-broken".to_string(),
        broken.clone().unwrap_or_default(),
    );
    let record = StepRecord {
        step: "outcome".into(),
        run_key: run_key.clone(),
        intent_digest: digest,
        mode: common.mode,
        started_at: now.clone(),
        ended_at: now,
        status: if outcome == WorkflowOutcome::Succeeded {
            Status::Converged
        } else {
            Status::Failed
        },
        changes: Vec::new(),
        outputs: outputs.clone(),
        counters: Value::Null,
        extra: json!({"outcome": name, "lease_broken": broken}),
    };
    store.put_record(&record).await?;
    outputs.insert(
        "changes".into(),
        u8::from(changed || broken.is_some()).to_string(),
    );
    outputs.insert("record".into(), format!("runs/{run_key}/outcome.json"));
    if let Some(dir) = &common.outputs_dir {
        netstep::step::write_outputs(dir, &outputs)?;
    }
    info!(run_key, outcome = name, "workflow outcome recorded");
    Ok(Outcome::converged())
}
