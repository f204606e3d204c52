//! The plan of `vnets`, computed from the intent and what was read (no I/O here).
//!
//! Managed VNets: created whole, or updated with one PUT of the VNet as read, owned fields
//! replaced (address space, subnets' prefixes, DNS servers); foreign subnets and their settings
//! are kept. Changes of tags alone are tag-groups' job (it runs next); every PUT carries the
//! merged tags. Existing (unmanaged) VNets are never written.
//!
//! Refusals (exit 2, nothing written): a prefix removed or shrunk while a subnet that stays
//! still uses it; a subnet removed (`--prune`) or re-addressed while in use.

use std::collections::{BTreeMap, BTreeSet};

use netstep::intent::{Diagnostic, Intent, VnetRef};
use netstep::plan::{Action, FieldChange, Plan, ResourceChange, plan_resource};
use netstep::resources::{MANAGED_TAG, types};
use serde_json::{Value, json};

use crate::bodies::{self, FirewallSpec};

/// The name Azure requires for the firewall's subnet.
pub const FIREWALL_SUBNET: &str = "AzureFirewallSubnet";

/// What was read from Azure, keyed by lower-case resource id.
#[derive(Debug, Default, Clone)]
pub struct Actual {
    /// VNets of the resource groups holding declared VNets.
    pub vnets: BTreeMap<String, Value>,
    /// Public IPs of the resource groups holding managed firewalls.
    pub public_ips: BTreeMap<String, Value>,
    /// Firewalls of the resource groups holding managed firewalls.
    pub firewalls: BTreeMap<String, Value>,
    /// Ids (lower case) of the firewall policies that exist.
    pub policies: BTreeSet<String>,
}

/// One PUT.
#[derive(Debug, Clone, PartialEq)]
pub struct Put {
    /// Resource id.
    pub id: String,
    /// Request body.
    pub body: Value,
    /// Creates the resource (sent with `If-None-Match: *`).
    pub create: bool,
    /// The ETag read (sent as `If-Match` on updates).
    pub etag: Option<String>,
}

/// The work of one run.
#[derive(Debug, Default, Clone)]
pub struct Work {
    /// The rendered plan.
    pub plan: Plan,
    /// VNet PUTs.
    pub vnets: Vec<Put>,
    /// Public IP PUTs (creates).
    pub public_ips: Vec<Put>,
    /// Firewall PUTs.
    pub firewalls: Vec<Put>,
    /// Firewalls that match the intent but are still provisioning (an earlier run's operation,
    /// e.g. after a timeout): apply waits for them without writing.
    pub firewalls_pending: Vec<String>,
    /// VNets whose peerings must be resynced and verified in sync afterwards.
    pub resync: Vec<String>,
    /// What the intent asks that the estate makes impossible (exit 2, nothing written).
    pub refusals: Vec<Diagnostic>,
    /// Conflicts with the estate netstep must not resolve itself (exit 1, nothing written).
    pub blockers: Vec<String>,
}

impl Work {
    /// Number of writes the plan needs (peering resyncs are counted when they happen).
    pub fn writes(&self) -> usize {
        self.vnets.len() + self.public_ips.len() + self.firewalls.len()
    }
}

fn lc(s: &str) -> String {
    s.to_ascii_lowercase()
}

fn norm_region(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// An IPv4 prefix as (network, length).
pub fn cidr(s: &str) -> Option<(u32, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    (len <= 32).then_some((u32::from(ip), len))
}

fn range(c: (u32, u8)) -> (u64, u64) {
    let size = 1u64 << (32 - u32::from(c.1));
    let start = u64::from(c.0) & !(size - 1);
    (start, start + size - 1)
}

/// Whether `inner` lies within `outer`.
pub fn within(inner: &str, outer: &str) -> bool {
    match (cidr(inner), cidr(outer)) {
        (Some(i), Some(o)) => {
            let (a, b) = range(i);
            let (c, d) = range(o);
            a >= c && b <= d
        }
        _ => false,
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A subnet's single prefix as read (`addressPrefix`, or the only `addressPrefixes` entry).
pub fn subnet_prefix(s: &Value) -> Option<String> {
    s["properties"]["addressPrefix"]
        .as_str()
        .map(str::to_string)
        .or_else(|| {
            let all = strings(&s["properties"]["addressPrefixes"]);
            (all.len() == 1).then(|| all[0].clone())
        })
}

/// What uses a subnet (ip configurations, private endpoints, service links, delegations), for
/// the refusal message; empty when it is free.
pub fn subnet_users(s: &Value) -> Vec<String> {
    let p = &s["properties"];
    let mut out = Vec::new();
    for key in [
        "ipConfigurations",
        "privateEndpoints",
        "serviceAssociationLinks",
        "resourceNavigationLinks",
        "delegations",
    ] {
        for item in p[key].as_array().into_iter().flatten() {
            let who = item["id"]
                .as_str()
                .or_else(|| item["name"].as_str())
                .unwrap_or(key);
            out.push(format!("{key}: {who}"));
        }
    }
    out
}

/// Peerings of a VNet as read that are not in sync with their remote side, AVNM's included
/// (name, sync level).
pub fn out_of_sync_peerings(vnet: &Value) -> Vec<(String, String)> {
    vnet["properties"]["virtualNetworkPeerings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let level = p["properties"]["peeringSyncLevel"].as_str()?;
            (level != "FullyInSync").then(|| {
                (
                    p["name"].as_str().unwrap_or_default().to_string(),
                    level.to_string(),
                )
            })
        })
        .collect()
}

fn diag(intent: &Intent, v: &VnetRef<'_>, field: &str, message: String) -> Diagnostic {
    let path = format!("{}.{field}", v.path);
    let (line, col) = intent
        .position(&path)
        .or_else(|| intent.position(&format!("{}.name", v.path)))
        .unwrap_or((0, 0));
    Diagnostic {
        file: intent.file_name().to_string(),
        line,
        col,
        path,
        message,
    }
}

fn field(path: impl Into<String>, old: Option<Value>, new: Option<Value>) -> FieldChange {
    FieldChange {
        path: path.into(),
        old,
        new,
    }
}

/// Computes the work.
pub fn reconcile(intent: &Intent, actual: &Actual, prune: bool) -> Work {
    let mut w = Work::default();
    for v in intent.vnets() {
        let read = actual.vnets.get(&lc(&v.id));
        if !v.managed {
            match read {
                None => w.plan.notes.push(format!(
                    "{} is declared existing (managed: false) but does not exist; netstep does not create it",
                    v.name
                )),
                Some(r) if !out_of_sync_peerings(r).is_empty() => w.plan.notes.push(format!(
                    "{}: peerings out of sync {:?}; it is not managed, so netstep leaves them (the owner runs a peering sync)",
                    v.name,
                    out_of_sync_peerings(r)
                )),
                Some(_) => {}
            }
            continue;
        }
        plan_vnet(intent, &v, read, prune, &mut w);
    }
    for v in intent.vnets() {
        if let Some(fw) = v.firewall.filter(|f| f.managed) {
            plan_firewall(intent, &v, fw, actual, &mut w);
        }
    }
    w
}

fn plan_vnet(intent: &Intent, v: &VnetRef<'_>, read: Option<&Value>, prune: bool, w: &mut Work) {
    let prefixes: Vec<String> = v.address_space.to_vec();
    let declared: Vec<(String, String)> = v
        .subnets
        .iter()
        .map(|s| (s.name.clone(), s.prefix.clone()))
        .collect();
    let dns: Vec<String> = v.dns_servers.to_vec();
    let Some(read) = read else {
        let body = bodies::new_vnet(
            v.region,
            bodies::merged_tags(None, &v.tags),
            &prefixes,
            &declared,
            &dns,
        );
        w.plan
            .push(plan_resource(&v.id, types::VIRTUAL_NETWORK, &body, None));
        w.vnets.push(Put {
            id: v.id.clone(),
            body,
            create: true,
            etag: None,
        });
        return;
    };
    let location = read["location"].as_str().unwrap_or_default();
    if norm_region(location) != norm_region(v.region) {
        w.blockers.push(format!(
            "VNet {} exists in {location}, the intent puts it in region {}; a VNet cannot move (recreate it or fix the intent)",
            v.id, v.region
        ));
        return;
    }
    let mut fields = Vec::new();
    // Address space (a set).
    let have: Vec<String> = strings(&read["properties"]["addressSpace"]["addressPrefixes"]);
    let have_set: BTreeSet<&str> = have.iter().map(String::as_str).collect();
    let want_set: BTreeSet<&str> = prefixes.iter().map(String::as_str).collect();
    let space_changed = have_set != want_set;
    if space_changed {
        fields.push(field(
            "properties.addressSpace.addressPrefixes",
            Some(json!(have)),
            Some(json!(prefixes)),
        ));
    }
    // DNS servers (ordered: resolvers are tried in order).
    let have_dns = strings(&read["properties"]["dhcpOptions"]["dnsServers"]);
    if have_dns != dns {
        fields.push(field(
            "properties.dhcpOptions.dnsServers",
            Some(json!(have_dns)),
            Some(json!(dns)),
        ));
    }
    // Subnets: declared ones by name; the others are kept unless --prune (and free).
    let read_subnets: Vec<Value> = read["properties"]["subnets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let by_name: BTreeMap<String, &Value> = read_subnets
        .iter()
        .filter_map(|s| Some((lc(s["name"].as_str()?), s)))
        .collect();
    let mut body_subnets = Vec::new();
    let mut refusals = Vec::new();
    for (name, prefix) in &declared {
        match by_name.get(&lc(name)) {
            None => {
                fields.push(field(
                    format!("properties.subnets[{name}].properties.addressPrefix"),
                    None,
                    Some(json!(prefix)),
                ));
                body_subnets.push(bodies::subnet(name, prefix));
            }
            Some(s) => {
                let mut kept = bodies::kept_subnet(s);
                let have_prefix = subnet_prefix(s);
                if have_prefix.as_deref() != Some(prefix.as_str()) {
                    let users = subnet_users(s);
                    if !users.is_empty() {
                        refusals.push(diag(
                            intent,
                            v,
                            "subnets",
                            format!(
                                "VNet {}: subnet {name} cannot change from {} to {prefix}: it is in use ({}); move what uses it first",
                                v.name,
                                have_prefix.as_deref().unwrap_or("?"),
                                users.join(", ")
                            ),
                        ));
                    }
                    fields.push(field(
                        format!("properties.subnets[{name}].properties.addressPrefix"),
                        have_prefix.map(Value::String),
                        Some(json!(prefix)),
                    ));
                    if let Some(p) = kept["properties"].as_object_mut() {
                        p.remove("addressPrefixes");
                        p.insert("addressPrefix".into(), json!(prefix));
                    }
                }
                body_subnets.push(kept);
            }
        }
    }
    let declared_names: BTreeSet<String> = declared.iter().map(|(n, _)| lc(n)).collect();
    for s in &read_subnets {
        let name = s["name"].as_str().unwrap_or_default();
        if declared_names.contains(&lc(name)) {
            continue;
        }
        let users = subnet_users(s);
        let prefix = subnet_prefix(s).unwrap_or_default();
        if prune && users.is_empty() {
            fields.push(field(
                format!("properties.subnets[{name}]"),
                Some(json!({"addressPrefix": prefix})),
                None,
            ));
            continue;
        }
        if prune {
            refusals.push(diag(
                intent,
                v,
                "subnets",
                format!(
                    "VNet {}: subnet {name} ({prefix}) is not in the intent but cannot be deleted: it is in use ({})",
                    v.name,
                    users.join(", ")
                ),
            ));
        } else {
            w.plan.notes.push(format!(
                "{}: subnet {name} ({prefix}) is not in the intent; kept (--prune deletes it when nothing uses it)",
                v.name
            ));
        }
        // A kept subnet must stay inside the address space.
        if !prefixes.iter().any(|p| within(&prefix, p)) {
            let gone = have
                .iter()
                .find(|h| within(&prefix, h))
                .cloned()
                .unwrap_or_else(|| "its prefix".into());
            refusals.push(diag(
                intent,
                v,
                "address_space",
                format!(
                    "VNet {}: address prefix {gone} cannot be removed or shrunk: subnet {name} ({prefix}) still uses it{}; delete or move the subnet first (or keep the prefix)",
                    v.name,
                    if users.is_empty() {
                        String::from(" (declare it, or delete it with --prune)")
                    } else {
                        format!(" and is in use ({})", users.join(", "))
                    }
                ),
            ));
        }
        body_subnets.push(bodies::kept_subnet(s));
    }
    let stale = out_of_sync_peerings(read);
    if !refusals.is_empty() {
        w.refusals.extend(refusals);
        return;
    }
    if !fields.is_empty() {
        let body = bodies::updated_vnet(
            read,
            bodies::merged_tags(Some(read), &v.tags),
            &prefixes,
            &body_subnets,
            &dns,
        );
        w.plan.changes.push(ResourceChange {
            action: Action::Update,
            resource_id: v.id.clone(),
            resource_type: types::VIRTUAL_NETWORK.to_string(),
            fields,
        });
        w.vnets.push(Put {
            id: v.id.clone(),
            body,
            create: false,
            etag: read["etag"].as_str().map(str::to_string),
        });
    }
    if space_changed {
        w.plan.notes.push(format!(
            "{}: address space changes; every peering of it is resynced (syncRemoteAddressSpace) and verified FullyInSync",
            v.name
        ));
        w.resync.push(v.id.clone());
    } else if !stale.is_empty() {
        w.plan.notes.push(format!(
            "{}: peerings out of sync {stale:?}; resynced (syncRemoteAddressSpace) and verified FullyInSync",
            v.name
        ));
        w.resync.push(v.id.clone());
    }
}

fn plan_firewall(
    intent: &Intent,
    hub: &VnetRef<'_>,
    fw: &netstep::intent::Firewall,
    actual: &Actual,
    w: &mut Work,
) {
    let net = |kind: &str, name: &str| {
        netstep::resources::network_id(
            &fw.subscription,
            &fw.resource_group,
            &format!("{kind}/{name}"),
        )
    };
    let fw_id = net("azureFirewalls", &fw.name);
    let pip_name = fw
        .public_ip
        .clone()
        .unwrap_or_else(|| format!("pip-{}", fw.name));
    let pip_id = net("publicIPAddresses", &pip_name);
    let mut zones = fw.zones.clone();
    zones.sort();
    let spec = FirewallSpec {
        location: hub.region.to_string(),
        tier: format!(
            "{:?}",
            fw.sku_tier
                .unwrap_or(netstep::intent::FirewallTier::Standard)
        ),
        zones: zones.clone(),
        subnet_id: format!("{}/subnets/{FIREWALL_SUBNET}", hub.id),
        public_ip_id: pip_id.clone(),
    };
    let hub_read = actual.vnets.get(&lc(&hub.id));
    if !hub.managed && hub_read.is_none() {
        w.blockers.push(format!(
            "firewall {fw_id}: its hub {} does not exist and is not managed by netstep",
            hub.name
        ));
        return;
    }
    // The public IP: created when missing; an existing one must already fit (SKU and
    // allocation cannot change in place).
    match actual.public_ips.get(&lc(&pip_id)) {
        None => {
            let body = bodies::public_ip(hub.region, &zones);
            w.plan
                .push(plan_resource(&pip_id, types::PUBLIC_IP, &body, None));
            w.public_ips.push(Put {
                id: pip_id.clone(),
                body,
                create: true,
                etag: None,
            });
        }
        Some(p) => {
            let sku = p["sku"]["name"].as_str().unwrap_or("Basic");
            let alloc = p["properties"]["publicIPAllocationMethod"]
                .as_str()
                .unwrap_or("Dynamic");
            if !sku.eq_ignore_ascii_case("Standard") || !alloc.eq_ignore_ascii_case("Static") {
                w.blockers.push(format!(
                    "public IP {pip_id} of firewall {} is {sku} SKU with {alloc} allocation; a firewall needs a Standard static IP, and neither can change in place (delete it or name another public_ip)",
                    fw.name
                ));
            }
        }
    }
    let policy = intent
        .firewall_policies()
        .into_iter()
        .find(|p| {
            p.firewall_id
                .as_deref()
                .is_some_and(|f| f.eq_ignore_ascii_case(&fw_id))
        })
        .map(|p| p.id)
        .filter(|id| actual.policies.contains(&lc(id)));
    match actual.firewalls.get(&lc(&fw_id)) {
        None => {
            let body = bodies::new_firewall(&spec, policy.as_deref());
            w.plan
                .push(plan_resource(&fw_id, types::AZURE_FIREWALL, &body, None));
            w.firewalls.push(Put {
                id: fw_id,
                body,
                create: true,
                etag: None,
            });
        }
        Some(read) => {
            let mut gaps = bodies::firewall_gaps(read, &spec);
            let state = read["properties"]["provisioningState"]
                .as_str()
                .unwrap_or("Succeeded");
            if gaps.is_empty() {
                match state {
                    "Succeeded" => return,
                    // A failed firewall is repaired by PUTting it again as it should be.
                    "Failed" | "Canceled" => gaps.push((
                        "properties.provisioningState".into(),
                        json!(state),
                        json!("Succeeded"),
                    )),
                    _ => {
                        w.plan.notes.push(format!(
                            "{}: still provisioning ({state}); apply waits for it",
                            fw.name
                        ));
                        w.firewalls_pending.push(fw_id);
                        return;
                    }
                }
            }
            w.plan.changes.push(ResourceChange {
                action: Action::Update,
                resource_id: fw_id.clone(),
                resource_type: types::AZURE_FIREWALL.to_string(),
                fields: gaps
                    .into_iter()
                    .map(|(p, o, n)| field(p, Some(o), Some(n)))
                    .collect(),
            });
            w.firewalls.push(Put {
                id: fw_id,
                body: bodies::updated_firewall(read, &spec),
                create: false,
                etag: read["etag"].as_str().map(str::to_string),
            });
        }
    }
}

/// Whether a resource carries netstep's ownership tag.
pub fn tagged_managed(v: &Value) -> bool {
    v["tags"][MANAGED_TAG.0].as_str() == Some(MANAGED_TAG.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_containment() {
        assert!(within("10.1.16.0/24", "10.1.16.0/20"));
        assert!(!within("10.1.64.0/24", "10.1.16.0/20"));
        assert!(within("10.1.16.0/20", "10.1.16.0/20"));
        assert!(!within("10.1.16.0/20", "10.1.16.0/21"));
        assert!(!within("garbage", "10.0.0.0/8"));
    }

    #[test]
    fn subnet_users_lists_what_holds_a_subnet() {
        let s = json!({"name": "a", "properties": {"addressPrefix": "10.0.0.0/24",
            "ipConfigurations": [{"id": "/fw/ipconfig1"}], "delegations": [{"name": "d"}]}});
        assert_eq!(
            subnet_users(&s),
            ["ipConfigurations: /fw/ipconfig1", "delegations: d"]
        );
        assert_eq!(subnet_prefix(&s).as_deref(), Some("10.0.0.0/24"));
        let free = json!({"name": "b", "properties": {"addressPrefixes": ["10.0.1.0/24"]}});
        assert!(subnet_users(&free).is_empty());
        assert_eq!(subnet_prefix(&free).as_deref(), Some("10.0.1.0/24"));
    }
}
