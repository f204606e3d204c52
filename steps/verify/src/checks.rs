//! The checks, as pure functions of the intent and what was read from Azure ([`World`]).

use std::collections::{BTreeMap, BTreeSet};

use netstep::intent::{Intent, ResolvedGroup, Topology, VnetRole};
use netstep::plan;
use netstep::resources::name_of;
use serde_json::{Value, json};

use crate::desired;
use crate::isolation::{self, Endpoint, Rule};
use crate::read::{Effective, Vnet, norm_region, observed_groups};
use crate::report::{Check, Difference};

/// The tag spokes carry their env in (netstep's `env:` field).
pub const ENV_TAG: &str = "env";

fn lc(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Everything verify read from Azure.
#[derive(Debug, Default)]
pub struct World {
    /// The network manager (None: absent).
    pub network_manager: Option<Value>,
    /// Network groups by lower-cased name.
    pub groups: BTreeMap<String, Value>,
    /// Static members' resource ids (lower-cased) per lower-cased group name (only for groups
    /// the intent gives static members).
    pub static_members: BTreeMap<String, BTreeSet<String>>,
    /// VNets in scope by lower-cased id.
    pub vnets: BTreeMap<String, Vnet>,
    /// `listDeploymentStatus` values.
    pub deployment_status: Vec<Value>,
    /// `listActiveConnectivityConfigurations` values.
    pub active_connectivity: Vec<Value>,
    /// `listActiveSecurityAdminRules` values.
    pub active_security: Vec<Value>,
    /// Effective configurations per lower-cased VNet id.
    pub effective: BTreeMap<String, Effective>,
    /// Firewall policies by lower-cased name.
    pub firewall_policies: BTreeMap<String, Value>,
    /// Rule collection groups of the parent policy by lower-cased name.
    pub rule_collection_groups: BTreeMap<String, Value>,
    /// Azure firewalls by lower-cased id.
    pub firewalls: BTreeMap<String, Value>,
    /// Public IPs of the managed firewalls' resource groups, by lower-cased id.
    pub public_ips: BTreeMap<String, Value>,
    /// DNS zones by lower-cased id (None: absent).
    pub dns_zones: BTreeMap<String, Option<Value>>,
    /// Links per lower-cased zone id, by lower-cased link name.
    pub dns_links: BTreeMap<String, BTreeMap<String, Value>>,
    /// A record sets per lower-cased zone id, by lower-cased record name.
    pub dns_records: BTreeMap<String, BTreeMap<String, Value>>,
}

/// Diffs `expected` against `actual` into differences on `resource` (field paths prefixed).
fn diffs(resource: &str, prefix: &str, expected: &Value, actual: &Value) -> Vec<Difference> {
    plan::diff(expected, actual)
        .into_iter()
        .map(|f| {
            let field = if f.path.is_empty() {
                prefix.to_string()
            } else if prefix.is_empty() {
                f.path
            } else {
                format!("{prefix}.{}", f.path)
            };
            Difference::new(
                resource,
                field,
                f.new.unwrap_or(Value::Null),
                f.old.unwrap_or(Value::Null),
            )
        })
        .collect()
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn set_of(v: Option<&Value>, f: impl Fn(&Value) -> Option<String>) -> BTreeSet<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(f).collect())
        .unwrap_or_default()
}

fn sub_of(s: &str) -> String {
    lc(s.trim_start_matches("/subscriptions/")
        .trim_end_matches('/'))
}

// ------------------------------------------------------------------------------ groups

/// `network-manager`: it exists, with the intent's scope and scope accesses.
pub fn network_manager(intent: &Intent, w: &World) -> Check {
    let id = intent.network_manager_id();
    let nm = &intent.network_manager;
    let mut d = Vec::new();
    match &w.network_manager {
        None => d.push(Difference::missing(&id)),
        Some(a) => {
            let want_subs: BTreeSet<String> =
                nm.scope.subscriptions.iter().map(|s| sub_of(s)).collect();
            let have_subs = set_of(
                a.pointer("/properties/networkManagerScopes/subscriptions"),
                |v| v.as_str().map(sub_of),
            );
            if want_subs != have_subs {
                d.push(Difference::new(
                    &id,
                    "properties.networkManagerScopes.subscriptions",
                    json!(want_subs),
                    json!(have_subs),
                ));
            }
            let want_mg: BTreeSet<String> = nm
                .scope
                .management_groups
                .iter()
                .map(|s| lc(name_of(s)))
                .collect();
            let have_mg = set_of(
                a.pointer("/properties/networkManagerScopes/managementGroups"),
                |v| v.as_str().map(|s| lc(name_of(s))),
            );
            if want_mg != have_mg {
                d.push(Difference::new(
                    &id,
                    "properties.networkManagerScopes.managementGroups",
                    json!(want_mg),
                    json!(have_mg),
                ));
            }
            let want_acc: BTreeSet<String> =
                nm.scope_accesses.iter().map(|s| format!("{s:?}")).collect();
            let have_acc = set_of(a.pointer("/properties/networkManagerScopeAccesses"), |v| {
                v.as_str().map(str::to_string)
            });
            if want_acc != have_acc {
                d.push(Difference::new(
                    &id,
                    "properties.networkManagerScopeAccesses",
                    json!(want_acc),
                    json!(have_acc),
                ));
            }
        }
    }
    Check::new("network-manager", "groups", 1, d)
}

/// `network-groups`: every group (declared and derived) exists, of VNets, with its static
/// members.
pub fn network_groups(intent: &Intent, w: &World) -> Check {
    let groups = intent.groups();
    let mut d = Vec::new();
    for g in &groups {
        match w.groups.get(&lc(&g.name)) {
            None => d.push(Difference::missing(&g.id)),
            Some(a) => {
                let mt = str_at(a, "/properties/memberType");
                if !mt.is_empty() && mt != "VirtualNetwork" {
                    d.push(Difference::new(
                        &g.id,
                        "properties.memberType",
                        "VirtualNetwork",
                        mt,
                    ));
                }
                if !g.static_members.is_empty() {
                    let have = w
                        .static_members
                        .get(&lc(&g.name))
                        .cloned()
                        .unwrap_or_default();
                    for m in &g.static_members {
                        if !have.contains(&lc(m)) {
                            d.push(Difference::new(
                                &g.id,
                                format!("staticMembers[{}]", name_of(m)),
                                m.as_str(),
                                Value::Null,
                            ));
                        }
                    }
                }
            }
        }
    }
    Check::new("network-groups", "groups", groups.len(), d)
}

/// `vnets`: every VNet of the intent exists with its address space and carries its declared
/// tags (foreign tags are fine).
pub fn vnets(intent: &Intent, w: &World) -> Check {
    let all = intent.vnets();
    let mut d = Vec::new();
    for v in &all {
        let Some(a) = w.vnets.get(&lc(&v.id)) else {
            d.push(Difference::missing(&v.id));
            continue;
        };
        let want: BTreeSet<&str> = v.address_space.iter().map(String::as_str).collect();
        let have: BTreeSet<&str> = a.prefixes.iter().map(String::as_str).collect();
        if want != have {
            d.push(Difference::new(
                &v.id,
                "properties.addressSpace.addressPrefixes",
                json!(want),
                json!(have),
            ));
        }
        if norm_region(v.region) != a.location {
            d.push(Difference::new(
                &v.id,
                "location",
                v.region,
                a.location.as_str(),
            ));
        }
        for (k, val) in &v.tags {
            let actual = a
                .tags
                .iter()
                .find(|(ak, _)| ak.eq_ignore_ascii_case(k))
                .map(|(_, av)| av.as_str());
            if actual != Some(val.as_str()) {
                d.push(Difference::new(
                    &v.id,
                    format!("tags.{k}"),
                    val.as_str(),
                    actual.map_or(Value::Null, Value::from),
                ));
            }
        }
    }
    Check::new("vnets", "groups", all.len(), d)
}

/// `managed-vnets`: every managed VNet has the declared subnets (name, prefix) and DNS servers
/// (address space and location are checked by `vnets` for every VNet).
pub fn managed_vnets(intent: &Intent, w: &World) -> Check {
    let mut d = Vec::new();
    let mut n = 0;
    for v in intent.vnets().iter().filter(|v| v.managed) {
        n += 1;
        let Some(a) = w.vnets.get(&lc(&v.id)) else {
            d.push(Difference::missing(&v.id));
            continue;
        };
        for s in v.subnets {
            let have = a.subnets.get(&lc(&s.name)).map(|(_, p)| p.as_str());
            if have != Some(s.prefix.as_str()) {
                d.push(Difference::new(
                    &v.id,
                    format!("properties.subnets[{}].properties.addressPrefix", s.name),
                    s.prefix.as_str(),
                    have.map_or(Value::Null, Value::from),
                ));
            }
        }
        if a.dns_servers != v.dns_servers {
            d.push(Difference::new(
                &v.id,
                "properties.dhcpOptions.dnsServers",
                json!(v.dns_servers),
                json!(a.dns_servers),
            ));
        }
    }
    Check::new("managed-vnets", "groups", n, d)
}

/// `peering-sync`: no peering of a declared VNet is out of sync with its remote address space
/// (after an address-space change the peering must be synced: `syncRemoteAddressSpace`).
pub fn peering_sync(intent: &Intent, w: &World) -> Check {
    let all = intent.vnets();
    let mut d = Vec::new();
    for v in &all {
        let Some(a) = w.vnets.get(&lc(&v.id)) else {
            continue;
        };
        for (name, level) in &a.stale_peerings {
            d.push(Difference::new(
                format!("{}/virtualNetworkPeerings/{name}", v.id),
                "properties.peeringSyncLevel",
                "FullyInSync",
                level.as_str(),
            ));
        }
    }
    Check::new("peering-sync", "groups", all.len(), d)
}

/// `managed-firewalls`: every managed hub firewall exists, is `Succeeded`, sits in its hub's
/// `AzureFirewallSubnet` and has its public IP attached (which exists).
pub fn managed_firewalls(intent: &Intent, w: &World) -> Option<Check> {
    let mut d = Vec::new();
    let mut n = 0;
    for v in intent.vnets() {
        let Some(fw) = v.firewall.filter(|f| f.managed) else {
            continue;
        };
        n += 1;
        let id = netstep::resources::network_id(
            &fw.subscription,
            &fw.resource_group,
            &format!("azureFirewalls/{}", fw.name),
        );
        let pip_name = fw
            .public_ip
            .clone()
            .unwrap_or_else(|| format!("pip-{}", fw.name));
        let pip = netstep::resources::network_id(
            &fw.subscription,
            &fw.resource_group,
            &format!("publicIPAddresses/{pip_name}"),
        );
        let Some(a) = w.firewalls.get(&lc(&id)) else {
            d.push(Difference::missing(&id));
            continue;
        };
        let state = str_at(a, "/properties/provisioningState");
        if state != "Succeeded" {
            d.push(Difference::new(
                &id,
                "properties.provisioningState",
                "Succeeded",
                state,
            ));
        }
        let subnet = format!("{}/subnets/AzureFirewallSubnet", v.id);
        let have_subnet = str_at(a, "/properties/ipConfigurations/0/properties/subnet/id");
        if !have_subnet.eq_ignore_ascii_case(&subnet) {
            d.push(Difference::new(
                &id,
                "properties.ipConfigurations[0].properties.subnet.id",
                subnet.as_str(),
                have_subnet,
            ));
        }
        let have_pip = str_at(
            a,
            "/properties/ipConfigurations/0/properties/publicIPAddress/id",
        );
        if !have_pip.eq_ignore_ascii_case(&pip) {
            d.push(Difference::new(
                &id,
                "properties.ipConfigurations[0].properties.publicIPAddress.id",
                pip.as_str(),
                have_pip,
            ));
        } else if !w.public_ips.contains_key(&lc(&pip)) {
            d.push(Difference::missing(&pip));
        }
    }
    (n > 0).then(|| Check::new("managed-firewalls", "groups", n, d))
}

/// Membership of one VNet in the intent's groups, by tags (+ location for derived groups)
/// and static members.
pub fn groups_matching(
    groups: &[ResolvedGroup],
    vnet_id: &str,
    location: &str,
    tags: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    groups
        .iter()
        .filter(|g| {
            g.region
                .as_deref()
                .is_none_or(|r| norm_region(r) == location)
        })
        .filter(|g| {
            let tag_match = !g.conditions.is_empty()
                && g.conditions.iter().all(|c| {
                    tags.iter()
                        .any(|(k, v)| k.eq_ignore_ascii_case(&c.tag) && *v == c.equals)
                });
            tag_match
                || g.static_members
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(vnet_id))
        })
        .map(|g| lc(&g.id))
        .collect()
}

/// Membership model (see the crate docs): who should be in which group, by the intent (for
/// the intent's VNets: their declared tags) and by policy (every VNet in scope: its actual
/// tags), and which groups AVNM lets us observe per region.
#[derive(Debug, Default)]
pub struct Membership {
    /// Lower-cased VNet id -> groups the intent expects it in (lower-cased group ids).
    pub expected: BTreeMap<String, BTreeSet<String>>,
    /// Lower-cased VNet id -> groups Azure Policy should put it in given its current tags.
    pub by_policy: BTreeMap<String, BTreeSet<String>>,
    /// VNets of interest: the intent's (existing) ones and every other VNet in scope that a
    /// group's conditions match (dynamic members the intent does not name).
    pub vnets: Vec<String>,
    /// Region -> groups that active configurations reference there (observable membership).
    pub observable: BTreeMap<String, BTreeSet<String>>,
}

impl Membership {
    /// Builds the model.
    pub fn build(intent: &Intent, w: &World) -> Membership {
        let groups = intent.groups();
        let mut m = Membership::default();
        let intent_ids: BTreeSet<String> = intent.vnets().iter().map(|v| lc(&v.id)).collect();
        for v in intent.vnets() {
            let key = lc(&v.id);
            if !w.vnets.contains_key(&key) {
                continue;
            }
            let exp = groups_matching(&groups, &v.id, &norm_region(v.region), &v.tags);
            m.expected.insert(key.clone(), exp);
            m.vnets.push(key);
        }
        for (key, v) in &w.vnets {
            let pol = groups_matching(&groups, &v.id, &v.location, &v.tags);
            if !intent_ids.contains(key) {
                if pol.is_empty() {
                    continue;
                }
                m.expected.insert(key.clone(), pol.clone());
                m.vnets.push(key.clone());
            }
            m.by_policy.insert(key.clone(), pol);
        }
        for a in &w.active_connectivity {
            let region = norm_region(str_at(a, "/region"));
            let e = m.observable.entry(region).or_default();
            for g in a
                .pointer("/properties/appliesToGroups")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(id) = g.get("networkGroupId").and_then(Value::as_str) {
                    e.insert(lc(id));
                }
            }
        }
        for a in &w.active_security {
            let region = norm_region(str_at(a, "/region"));
            let e = m.observable.entry(region).or_default();
            for g in a
                .get("ruleCollectionAppliesToGroups")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(id) = g.get("networkGroupId").and_then(Value::as_str) {
                    e.insert(lc(id));
                }
            }
        }
        m
    }

    fn observable_in(&self, w: &World, vnet: &str) -> BTreeSet<String> {
        let region = w
            .vnets
            .get(vnet)
            .map(|v| v.location.clone())
            .unwrap_or_default();
        self.observable.get(&region).cloned().unwrap_or_default()
    }

    /// VNets whose observed membership does not (yet) match what policy should produce from
    /// their current tags; the membership wait polls until this is empty.
    pub fn unconverged(&self, w: &World) -> Vec<String> {
        self.vnets
            .iter()
            .filter(|v| {
                let obs = self.observable_in(w, v);
                let want: BTreeSet<String> = self
                    .by_policy
                    .get(*v)
                    .map(|s| s.intersection(&obs).cloned().collect())
                    .unwrap_or_default();
                let have: BTreeSet<String> = w
                    .effective
                    .get(*v)
                    .map(|e| observed_groups(e).intersection(&obs).cloned().collect())
                    .unwrap_or_default();
                want != have
            })
            .cloned()
            .collect()
    }
}

/// `group-membership`: effective membership (after policy) equals the intent's, for every
/// VNet of interest, over the groups AVNM exposes in its region.
pub fn group_membership(intent: &Intent, w: &World, m: &Membership, converged: bool) -> Check {
    let names: BTreeMap<String, String> = intent
        .groups()
        .into_iter()
        .map(|g| (lc(&g.id), g.name))
        .collect();
    let nm = lc(&intent.network_manager_id());
    let mut d = Vec::new();
    for v in &m.vnets {
        let id = w.vnets.get(v).map_or(v.as_str(), |x| x.id.as_str());
        let obs = m.observable_in(w, v);
        let want: BTreeSet<String> = m.expected[v].intersection(&obs).cloned().collect();
        let have: BTreeSet<String> = w
            .effective
            .get(v)
            .map(|e| {
                observed_groups(e)
                    .into_iter()
                    .filter(|g| g.starts_with(&nm))
                    .filter(|g| obs.contains(g))
                    .collect()
            })
            .unwrap_or_default();
        for g in want.union(&have) {
            let (e, a) = (want.contains(g), have.contains(g));
            if e != a {
                let name = names
                    .get(g)
                    .cloned()
                    .unwrap_or_else(|| name_of(g).to_string());
                d.push(Difference::new(id, format!("membership[{name}]"), e, a));
            }
        }
    }
    let intent_ids: BTreeSet<String> = intent.vnets().iter().map(|v| lc(&v.id)).collect();
    let mut c = Check::new("group-membership", "groups", m.vnets.len(), d);
    let dynamic: Vec<&str> = m
        .vnets
        .iter()
        .filter(|v| !intent_ids.contains(*v))
        .map(|v| w.vnets.get(v).map_or(v.as_str(), |x| x.name()))
        .collect();
    if !dynamic.is_empty() {
        c = c.note(format!(
            "dynamic members not named in the intent: {}",
            dynamic.join(", ")
        ));
    }
    if !converged {
        c = c.note("membership had not converged when the --wait-membership bound ran out");
    }
    c
}

// ------------------------------------------------------------------------ deployments

/// `deployment-status-<type>`: every region of the intent is Deployed with exactly its goal
/// state.
pub fn deployment_status(
    intent: &Intent,
    w: &World,
    commit_type: &'static str,
    category: &'static str,
) -> Option<Check> {
    let goals = desired::goal_states(intent);
    let goal = goals.get(commit_type)?;
    let nm = intent.network_manager_id();
    let status = netstep::avnm::parse_deployment_status(&w.deployment_status, commit_type);
    let mut d = Vec::new();
    for (region, want) in goal {
        let have = status.get(&norm_region(region));
        if want.is_empty() && have.is_none_or(|h| h.configuration_ids.is_empty()) {
            continue;
        }
        let st = have.map(|h| h.status.as_str());
        if st != Some("Deployed") {
            let mut x = Difference::new(
                &nm,
                format!("deploymentStatus[{commit_type}]"),
                "Deployed",
                st.map_or(Value::Null, Value::from),
            );
            x.regions = vec![region.clone()];
            if let Some(h) = have.filter(|h| !h.error_message.is_empty()) {
                x.actual = json!(format!("{} ({})", h.status, h.error_message));
            }
            d.push(x);
        }
        let want_names: BTreeSet<String> = want.iter().map(|i| name_of(i).to_string()).collect();
        let want_lc: BTreeSet<String> = want.iter().map(|i| lc(i)).collect();
        let have_lc: BTreeSet<String> = have
            .map(|h| h.configuration_ids.iter().map(|i| lc(i)).collect())
            .unwrap_or_default();
        if want_lc != have_lc {
            let have_names: BTreeSet<String> =
                have_lc.iter().map(|i| name_of(i).to_string()).collect();
            let mut x = Difference::new(
                &nm,
                format!("configurationIds[{commit_type}]"),
                json!(want_names),
                json!(have_names),
            );
            x.regions = vec![region.clone()];
            d.push(x);
        }
    }
    Some(Check::new(
        &format!("deployment-status-{category}"),
        category,
        goal.len(),
        d,
    ))
}

/// `active-connectivity`: per region, the active configurations are the goal state and their
/// content is the intent's.
pub fn active_connectivity(intent: &Intent, w: &World) -> Check {
    let configs = intent.connectivity_configs();
    let goals = desired::goal_states(intent);
    let goal = &goals["Connectivity"];
    let mut by_region: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for a in &w.active_connectivity {
        by_region
            .entry(norm_region(str_at(a, "/region")))
            .or_default()
            .push(a);
    }
    let mut d = Vec::new();
    for (region, want) in goal {
        let active = by_region
            .get(&norm_region(region))
            .cloned()
            .unwrap_or_default();
        for c in &configs {
            if !want.contains(&c.id) {
                continue;
            }
            match active
                .iter()
                .find(|a| str_at(a, "/id").eq_ignore_ascii_case(&c.id))
            {
                None => {
                    let mut x = Difference::new(&c.id, "active", true, false);
                    x.regions = vec![region.clone()];
                    d.push(x);
                }
                Some(a) => {
                    let props = a.get("properties").cloned().unwrap_or(Value::Null);
                    for mut x in diffs(
                        &c.id,
                        "properties",
                        &desired::connectivity(intent, c),
                        &props,
                    ) {
                        x.regions = vec![region.clone()];
                        d.push(x);
                    }
                }
            }
        }
        let want_lc: BTreeSet<String> = want.iter().map(|i| lc(i)).collect();
        for a in &active {
            let id = str_at(a, "/id");
            if !want_lc.contains(&lc(id)) {
                let mut x = Difference::new(id, "active", false, true);
                x.regions = vec![region.clone()];
                d.push(x);
            }
        }
    }
    Check::new("active-connectivity", "connectivity", configs.len(), d)
}

/// `active-security-admin`: per region, the active admin rules are exactly the intent's, with
/// its content and collection groups.
pub fn active_security_admin(intent: &Intent, w: &World) -> Option<Check> {
    intent.security_admin.as_ref()?;
    let rules = desired::admin_rules(intent);
    let mut d = Vec::new();
    for region in intent.region_names() {
        let active: Vec<&Value> = w
            .active_security
            .iter()
            .filter(|a| norm_region(str_at(a, "/region")) == norm_region(region))
            .collect();
        let mut seen = BTreeSet::new();
        for a in &active {
            let id = str_at(a, "/id");
            seen.insert(lc(id));
            let Some((rid, groups, want)) = rules.get(&lc(id)) else {
                // Default rules (kind Default) are AVNM's own; anything else is not ours.
                if a.get("kind").and_then(Value::as_str) != Some("Default") {
                    let mut x = Difference::new(id, "active", false, true);
                    x.regions = vec![region.to_string()];
                    d.push(x);
                }
                continue;
            };
            let props = a.get("properties").cloned().unwrap_or(Value::Null);
            let mut found = diffs(rid, "properties", want, &props);
            let have_groups = set_of(a.get("ruleCollectionAppliesToGroups"), |g| {
                g.get("networkGroupId").and_then(Value::as_str).map(lc)
            });
            if &have_groups != groups {
                let n = |s: &BTreeSet<String>| {
                    json!(s.iter().map(|g| name_of(g).to_string()).collect::<Vec<_>>())
                };
                found.push(Difference::new(
                    rid,
                    "ruleCollection.appliesToGroups",
                    n(groups),
                    n(&have_groups),
                ));
            }
            for mut x in found {
                x.regions = vec![region.to_string()];
                d.push(x);
            }
        }
        for (key, (rid, _, _)) in &rules {
            if !seen.contains(key) {
                let mut x = Difference::new(rid, "active", true, false);
                x.regions = vec![region.to_string()];
                d.push(x);
            }
        }
    }
    Some(Check::new(
        "active-security-admin",
        "security-admin",
        rules.len(),
        d,
    ))
}

// ------------------------------------------------------------------------- invariants

/// Roles of the VNets of interest: the intent's hubs, and every spoke (intent spokes and
/// dynamic members of the spoke groups) with its region and env.
struct Roles {
    hubs: Vec<String>,
    /// (vnet key, region, env)
    spokes: Vec<(String, String, Option<String>)>,
}

fn roles(intent: &Intent, w: &World, m: &Membership) -> Roles {
    let mut hubs = Vec::new();
    let mut spokes = Vec::new();
    let intent_vnets: BTreeMap<String, netstep::intent::VnetRef<'_>> =
        intent.vnets().into_iter().map(|v| (lc(&v.id), v)).collect();
    let spoke_group_ids: BTreeSet<String> = intent
        .connectivity
        .as_ref()
        .and_then(|c| c.hub_and_spoke.as_ref())
        .map(|hs| {
            hs.spoke_groups
                .iter()
                .map(|g| lc(&intent.network_group_id(g)))
                .collect()
        })
        .unwrap_or_default();
    for key in &m.vnets {
        match intent_vnets.get(key) {
            Some(v) if v.role == VnetRole::Hub => hubs.push(key.clone()),
            Some(v) => spokes.push((
                key.clone(),
                norm_region(v.region),
                v.env.map(str::to_string),
            )),
            None => {
                let Some(x) = w.vnets.get(key) else { continue };
                if m.expected[key].iter().any(|g| spoke_group_ids.contains(g)) {
                    let env = x
                        .tags
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(ENV_TAG))
                        .map(|(_, v)| v.clone());
                    spokes.push((key.clone(), x.location.clone(), env));
                }
            }
        }
    }
    Roles { hubs, spokes }
}

fn vnet_label(w: &World, key: &str) -> String {
    w.vnets
        .get(key)
        .map_or_else(|| key.to_string(), |v| v.id.clone())
}

/// `spoke-to-hub`: every spoke has its region's hub-and-spoke configuration effective with
/// that region's hub.
pub fn spoke_to_hub(intent: &Intent, w: &World, m: &Membership) -> Check {
    let r = roles(intent, w, m);
    let hub_of: BTreeMap<String, String> = intent
        .regions()
        .iter()
        .map(|reg| {
            let h = intent
                .vnets()
                .into_iter()
                .find(|v| v.region == reg.name && v.role == VnetRole::Hub);
            (norm_region(&reg.name), h.map(|h| h.id).unwrap_or_default())
        })
        .collect();
    let mut d = Vec::new();
    for (key, region, _) in &r.spokes {
        let id = vnet_label(w, key);
        let Some(hub) = hub_of.get(region).filter(|h| !h.is_empty()) else {
            d.push(Difference::new(
                &id,
                "connectedHub",
                format!("a hub in {region}"),
                "the intent has no hub in that region",
            ));
            continue;
        };
        let eff = w
            .effective
            .get(key)
            .and_then(|e| e.connectivity.clone())
            .unwrap_or_default();
        let hubs_reached: Vec<String> = eff
            .iter()
            .filter(|c| str_at(c, "/properties/connectivityTopology") == "HubAndSpoke")
            .filter(|c| {
                c.get("configurationGroups")
                    .and_then(Value::as_array)
                    .is_some_and(|g| !g.is_empty())
            })
            .flat_map(|c| {
                c.pointer("/properties/hubs")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|h| {
                        h.get("resourceId")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
            })
            .collect();
        if !hubs_reached.iter().any(|h| h.eq_ignore_ascii_case(hub)) {
            d.push(Difference::new(
                &id,
                "connectedHub",
                hub.as_str(),
                json!(hubs_reached),
            ));
        }
    }
    Check::new("spoke-to-hub", "connectivity", r.spokes.len(), d)
}

/// `hub-mesh`: one global mesh configuration is effective on every hub.
pub fn hub_mesh(intent: &Intent, w: &World, m: &Membership) -> Check {
    let r = roles(intent, w, m);
    let regions: BTreeSet<String> = intent
        .region_names()
        .iter()
        .map(|s| norm_region(s))
        .collect();
    let mut d = Vec::new();
    let mut common: Option<BTreeSet<String>> = None;
    let mut per_hub: Vec<(String, BTreeSet<String>)> = Vec::new();
    for key in &r.hubs {
        let eff = w
            .effective
            .get(key)
            .and_then(|e| e.connectivity.clone())
            .unwrap_or_default();
        let meshes: BTreeSet<String> = eff
            .iter()
            .filter(|c| str_at(c, "/properties/connectivityTopology") == "Mesh")
            .filter(|c| {
                c.get("configurationGroups")
                    .and_then(Value::as_array)
                    .is_some_and(|g| !g.is_empty())
            })
            .filter(|c| regions.len() <= 1 || str_at(c, "/properties/isGlobal") == "True")
            .filter_map(|c| c.get("id").and_then(Value::as_str).map(lc))
            .collect();
        common = Some(match common {
            None => meshes.clone(),
            Some(c) => c.intersection(&meshes).cloned().collect(),
        });
        per_hub.push((key.clone(), meshes));
    }
    let common = common.unwrap_or_default();
    if common.is_empty() && !r.hubs.is_empty() {
        let want = intent
            .connectivity_configs()
            .into_iter()
            .find(|c| c.topology == Topology::Mesh)
            .map_or_else(|| "a global mesh".to_string(), |c| c.id);
        for (key, meshes) in &per_hub {
            if !meshes.iter().any(|x| x.eq_ignore_ascii_case(&want)) {
                d.push(Difference::new(
                    vnet_label(w, key),
                    "effectiveGlobalMesh",
                    want.as_str(),
                    json!(meshes),
                ));
            }
        }
        if d.is_empty() {
            d.push(Difference::new(
                intent.network_manager_id(),
                "effectiveGlobalMesh",
                "one mesh on every hub",
                "no mesh common to all hubs",
            ));
        }
    }
    Check::new("hub-mesh", "connectivity", r.hubs.len(), d)
}

/// `prod-nonprod-isolation`: for every prod spoke P and non-prod spoke N, traffic P→N and
/// N→P is fully denied at the source (Outbound) or at the destination (Inbound), by the
/// effective admin rules with AVNM precedence ([`isolation`]).
pub fn isolation_check(intent: &Intent, w: &World, m: &Membership) -> Check {
    let r = roles(intent, w, m);
    let mut d = Vec::new();
    let mut rules: BTreeMap<String, Vec<Rule>> = BTreeMap::new();
    let mut eps: BTreeMap<String, Endpoint> = BTreeMap::new();
    for (key, _, _) in &r.spokes {
        let eff = w.effective.get(key).cloned().unwrap_or_default();
        let mut parsed = Vec::new();
        for v in eff.security.iter().flatten() {
            match isolation::parse_effective_rule(v) {
                Ok(x) => parsed.push(x),
                Err(e) => d.push(Difference::new(
                    vnet_label(w, key),
                    "effectiveSecurityAdminRules",
                    "parseable rules",
                    e,
                )),
            }
        }
        rules.insert(key.clone(), parsed);
        // Membership as AVNM shows it; for groups no active configuration in the VNet's
        // region exposes, what policy must produce from the VNet's current tags.
        let observable = m.observable_in(w, key);
        let mut groups = observed_groups(&eff);
        groups.extend(
            m.by_policy
                .get(key)
                .into_iter()
                .flatten()
                .filter(|g| !observable.contains(*g))
                .cloned(),
        );
        eps.insert(
            key.clone(),
            Endpoint {
                id: vnet_label(w, key),
                groups,
                prefixes: w
                    .vnets
                    .get(key)
                    .map(|v| v.prefixes.clone())
                    .unwrap_or_default(),
            },
        );
    }
    let prod: Vec<&String> = r
        .spokes
        .iter()
        .filter(|s| s.2.as_deref() == Some("prod"))
        .map(|s| &s.0)
        .collect();
    let nonprod: Vec<&String> = r
        .spokes
        .iter()
        .filter(|s| s.2.as_deref().is_some_and(|e| e != "prod"))
        .map(|s| &s.0)
        .collect();
    let mut pairs = 0;
    for p in &prod {
        for n in &nonprod {
            for (a, b) in [(p, n), (n, p)] {
                pairs += 1;
                let v = isolation::evaluate_pair(&eps[*a], &eps[*b], &rules[*a], &rules[*b]);
                if !v.isolated() {
                    d.push(Difference::new(
                        format!("{} -> {}", name_of(&eps[*a].id), name_of(&eps[*b].id)),
                        "isolation",
                        "all traffic denied (Outbound at the source or Inbound at the destination)",
                        json!({"at_source": v.at_source, "at_destination": v.at_destination}),
                    ));
                }
            }
        }
    }
    let _ = intent;
    Check::new("prod-nonprod-isolation", "security-admin", pairs, d)
}

// --------------------------------------------------------------------------- firewall

/// `firewall-policies`: the parent with its settings, every child with basePolicy = parent.
pub fn firewall_policies(intent: &Intent, w: &World) -> Option<Check> {
    let fp = intent.firewall_policy.as_ref()?;
    let pols = intent.firewall_policies();
    let mut d = Vec::new();
    for p in &pols {
        let Some(a) = w.firewall_policies.get(&lc(&p.name)) else {
            d.push(Difference::missing(&p.id));
            continue;
        };
        let mut want = json!({
            "location": norm_region(&p.location),
            "properties": {
                "sku": {"tier": format!("{:?}", fp.tier)},
                "threatIntelMode": format!("{:?}", fp.threat_intel_mode),
                "dnsSettings": {"enableProxy": fp.dns_proxy},
            }
        });
        if let Some(b) = &p.base_policy_id {
            want["properties"]["basePolicy"] = json!({"id": b});
        }
        let mut actual = a.clone();
        actual["location"] = json!(norm_region(str_at(a, "/location")));
        if p.base_policy_id.is_none()
            && let Some(b) = a.pointer("/properties/basePolicy/id")
        {
            d.push(Difference::new(
                &p.id,
                "properties.basePolicy.id",
                Value::Null,
                b.clone(),
            ));
        }
        d.extend(diffs(&p.id, "", &want, &actual));
    }
    Some(Check::new("firewall-policies", "firewall", pols.len(), d))
}

/// `firewall-rule-collection-groups`: the parent's rule collection groups and their content.
pub fn firewall_rcgs(intent: &Intent, w: &World) -> Option<Check> {
    let fp = intent.firewall_policy.as_ref()?;
    let parent = intent.firewall_policies().into_iter().next()?;
    let mut d = Vec::new();
    for g in &fp.rule_collection_groups {
        let id = format!("{}/ruleCollectionGroups/{}", parent.id, g.name);
        match w.rule_collection_groups.get(&lc(&g.name)) {
            None => d.push(Difference::missing(&id)),
            Some(a) => {
                let props = a.get("properties").cloned().unwrap_or(Value::Null);
                d.extend(diffs(
                    &id,
                    "properties",
                    &desired::rule_collection_group(g),
                    &props,
                ));
            }
        }
    }
    Some(Check::new(
        "firewall-rule-collection-groups",
        "firewall",
        fp.rule_collection_groups.len(),
        d,
    ))
}

/// `firewall-associations`: each hub firewall uses its region's child policy.
pub fn firewall_associations(intent: &Intent, w: &World) -> Option<Check> {
    intent.firewall_policy.as_ref()?;
    let mut d = Vec::new();
    let mut n = 0;
    for p in intent.firewall_policies() {
        let Some(fw) = &p.firewall_id else { continue };
        n += 1;
        match w.firewalls.get(&lc(fw)) {
            None => d.push(Difference::missing(fw)),
            Some(a) => {
                let have = a
                    .pointer("/properties/firewallPolicy/id")
                    .and_then(Value::as_str);
                if !have.is_some_and(|h| h.eq_ignore_ascii_case(&p.id)) {
                    d.push(Difference::new(
                        fw,
                        "properties.firewallPolicy.id",
                        p.id.as_str(),
                        have.map_or(Value::Null, Value::from),
                    ));
                }
            }
        }
    }
    Some(Check::new("firewall-associations", "firewall", n, d))
}

// -------------------------------------------------------------------------------- dns

fn zone_id(intent: &Intent, z: &netstep::intent::DnsZone) -> String {
    let _ = intent;
    netstep::resources::network_id(
        &z.subscription,
        &z.resource_group,
        &format!("privateDnsZones/{}", z.name),
    )
}

/// `dns-zone`, `dns-links`, `dns-records`.
pub fn dns(intent: &Intent, w: &World) -> Vec<Check> {
    let Some(dns) = &intent.dns else {
        return Vec::new();
    };
    let mut zd = Vec::new();
    let mut ld = Vec::new();
    let mut rd = Vec::new();
    let links = intent.dns_links();
    let mut records = 0;
    for z in &dns.zones {
        let zid = zone_id(intent, z);
        if w.dns_zones.get(&lc(&zid)).is_none_or(Option::is_none) {
            zd.push(Difference::missing(&zid));
        }
        let have_links = w.dns_links.get(&lc(&zid)).cloned().unwrap_or_default();
        for l in links
            .iter()
            .filter(|l| l.zone_id.eq_ignore_ascii_case(&zid))
        {
            let id = format!("{zid}/virtualNetworkLinks/{}", l.name);
            match have_links.get(&lc(&l.name)) {
                None => ld.push(Difference::missing(&id)),
                Some(a) => {
                    let want = json!({"properties": {
                        "virtualNetwork": {"id": l.vnet_id},
                        "registrationEnabled": l.registration_enabled,
                    }});
                    ld.extend(diffs(&id, "", &want, a));
                }
            }
        }
        let have_recs = w.dns_records.get(&lc(&zid)).cloned().unwrap_or_default();
        for r in &z.records {
            records += 1;
            let id = format!("{zid}/A/{}", r.name);
            match have_recs.get(&lc(&r.name)) {
                None => rd.push(Difference::missing(&id)),
                Some(a) => {
                    let ips: Vec<Value> =
                        r.ipv4.iter().map(|ip| json!({"ipv4Address": ip})).collect();
                    let want = json!({"properties": {"ttl": r.ttl, "aRecords": ips}});
                    rd.extend(diffs(&id, "", &want, a));
                }
            }
        }
    }
    vec![
        Check::new("dns-zone", "dns", dns.zones.len(), zd),
        Check::new("dns-links", "dns", links.len(), ld),
        Check::new("dns-records", "dns", records, rd),
    ]
}

/// The observed membership per VNet (names), for the report.
pub fn membership_view(intent: &Intent, w: &World, m: &Membership) -> Value {
    let names: BTreeMap<String, String> = intent
        .groups()
        .into_iter()
        .map(|g| (lc(&g.id), g.name))
        .collect();
    let mut out = serde_json::Map::new();
    for v in &m.vnets {
        let Some(e) = w.effective.get(v) else {
            continue;
        };
        let groups: Vec<String> = observed_groups(e)
            .iter()
            .map(|g| names.get(g).cloned().unwrap_or_else(|| g.clone()))
            .collect();
        out.insert(
            w.vnets
                .get(v)
                .map_or_else(|| v.clone(), |x| x.name().to_string()),
            json!(groups),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globojava() -> Intent {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/globojava/intent.yaml");
        netstep::intent::load_file(&p).unwrap()
    }

    fn vnet(id: &str, location: &str, tags: &[(&str, &str)]) -> Vnet {
        Vnet {
            id: id.into(),
            location: location.into(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            prefixes: vec!["10.9.0.0/16".into()],
            subnets: BTreeMap::new(),
            dns_servers: Vec::new(),
            stale_peerings: Vec::new(),
        }
    }

    /// Azure as the intent wants it (VNets with their declared tags), nothing deployed.
    fn world_of(i: &Intent) -> World {
        let mut w = World::default();
        for v in i.vnets() {
            let tags: Vec<(&str, &str)> = v
                .tags
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            w.vnets.insert(
                lc(&v.id),
                Vnet {
                    prefixes: v.address_space.to_vec(),
                    ..vnet(&v.id, v.region, &tags)
                },
            );
        }
        w
    }

    #[test]
    fn tag_groups_match_by_tags_location_and_static_members() {
        let i = globojava();
        let groups = i.groups();
        let tags: BTreeMap<String, String> = [("ENV".to_string(), "prod".to_string())].into();
        let m = groups_matching(&groups, "/v", "eastus", &tags);
        let names: Vec<&str> = m.iter().map(|g| name_of(g)).collect();
        assert_eq!(names, vec!["all-prod-spokes", "all-prod-spokes-eastus"]);
        assert!(groups_matching(&groups, "/v", "eastus", &BTreeMap::new()).is_empty());
    }

    #[test]
    fn dynamic_members_are_vnets_the_intent_does_not_name_whose_tags_match() {
        let i = globojava();
        let mut w = world_of(&i);
        let extra =
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/new";
        w.vnets
            .insert(lc(extra), vnet(extra, "westus", &[("env", "nonprod")]));
        let other = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/unrelated";
        w.vnets
            .insert(lc(other), vnet(other, "westus", &[("team", "x")]));
        let m = Membership::build(&i, &w);
        assert_eq!(m.vnets.len(), 22);
        assert!(m.vnets.contains(&lc(extra)));
        assert!(!m.vnets.contains(&lc(other)));
        let names: Vec<&str> = m.expected[&lc(extra)].iter().map(|g| name_of(g)).collect();
        assert_eq!(
            names,
            vec!["all-nonprod-spokes", "all-nonprod-spokes-westus"]
        );
        // Nothing deployed: nothing observable, so nothing to wait for and nothing to report.
        assert!(m.unconverged(&w).is_empty());
        assert!(group_membership(&i, &w, &m, true).passed);
    }

    #[test]
    fn membership_differences_are_reported_per_observable_group() {
        let i = globojava();
        let mut w = world_of(&i);
        let prod = i.network_group_id("all-prod-spokes");
        let nonprod = i.network_group_id("all-nonprod-spokes");
        w.active_security = vec![json!({"region": "eastus", "id": "/r",
            "ruleCollectionAppliesToGroups": [{"networkGroupId": prod}, {"networkGroupId": nonprod}]})];
        let p = i.vnet("vnet-prod-eastus").unwrap().id;
        // AVNM says the prod spoke is in the nonprod group.
        w.effective.insert(
            lc(&p),
            Effective {
                connectivity: None,
                security: Some(vec![json!({"ruleGroups": [{"id": nonprod}]})]),
            },
        );
        let m = Membership::build(&i, &w);
        assert_eq!(
            m.unconverged(&w).len(),
            2,
            "the prod spoke and the nonprod spoke (no data)"
        );
        let c = group_membership(&i, &w, &m, false);
        assert!(!c.passed);
        assert!(c.differences.contains(&Difference::new(
            &p,
            "membership[all-prod-spokes]",
            true,
            false
        )));
        assert!(c.differences.contains(&Difference::new(
            &p,
            "membership[all-nonprod-spokes]",
            false,
            true
        )));
        assert!(c.notes.iter().any(|n| n.contains("had not converged")));
    }

    #[test]
    fn deployment_status_wants_deployed_goal_states() {
        let i = globojava();
        let mut w = world_of(&i);
        let goals = desired::goal_states(&i);
        for (region, ids) in &goals["Connectivity"] {
            w.deployment_status
                .push(json!({"region": region, "deploymentType": "Connectivity",
                "deploymentStatus": "Deployed", "configurationIds": ids}));
        }
        assert!(
            deployment_status(&i, &w, "Connectivity", "connectivity")
                .unwrap()
                .passed
        );
        w.deployment_status[0]["deploymentStatus"] = json!("Failed");
        w.deployment_status[0]["errorMessage"] = json!("boom");
        w.deployment_status[1]["configurationIds"] = json!([]);
        let c = deployment_status(&i, &w, "Connectivity", "connectivity").unwrap();
        assert_eq!(c.differences.len(), 2, "{:?}", c.differences);
        assert_eq!(c.differences[0].actual, json!("Failed (boom)"));
        assert_eq!(c.differences[1].field, "configurationIds[Connectivity]");
        // Nothing deployed for SecurityAdmin at all: one difference per field, all 7 regions.
        let c = deployment_status(&i, &w, "SecurityAdmin", "security-admin").unwrap();
        assert_eq!(c.differences.len(), 2);
        assert!(c.differences.iter().all(|d| d.regions.len() == 7));
    }
}
