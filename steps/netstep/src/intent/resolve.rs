//! Resolved views of an intent: every VNet with its id and effective tags, the network groups
//! (including the per-region groups derived for hub-and-spoke), the expanded connectivity
//! configurations, firewall policies and DNS links. All in deterministic order.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Intent;
use super::model::*;

/// Tag set by netstep on hub VNets (`network_role: hub`).
pub const ROLE_TAG: &str = "network_role";
/// Tag set by netstep on spoke VNets from their `env` field.
pub const ENV_TAG: &str = "env";

/// Whether a VNet is a hub or a spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VnetRole {
    /// The region's hub.
    Hub,
    /// A spoke.
    Spoke,
}

/// One VNet of the intent, resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VnetRef<'a> {
    /// Region name.
    pub region: &'a str,
    /// Index of the region in `regions`.
    pub region_index: usize,
    /// Hub or spoke.
    pub role: VnetRole,
    /// VNet name.
    pub name: &'a str,
    /// Subscription id.
    pub subscription: &'a str,
    /// Resource group.
    pub resource_group: &'a str,
    /// ARM resource id.
    pub id: String,
    /// Whether netstep owns the VNet.
    pub managed: bool,
    /// Address prefixes.
    pub address_space: &'a [String],
    /// Subnets.
    pub subnets: &'a [Subnet],
    /// DNS servers.
    pub dns_servers: &'a [String],
    /// Effective tags: the free tags plus `network_role: hub` (hubs) or `env: <env>` (spokes).
    pub tags: BTreeMap<String, String>,
    /// The `env` of a spoke.
    pub env: Option<&'a str>,
    /// The hub's firewall.
    pub firewall: Option<&'a Firewall>,
    /// Path of the VNet in the intent, e.g. `regions[2].spokes[0]`.
    #[serde(skip)]
    pub path: String,
}

/// A network group, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedGroup {
    /// Group name.
    pub name: String,
    /// ARM resource id.
    pub id: String,
    /// Description.
    pub description: String,
    /// Tag conditions (all must hold). Empty: static membership only.
    pub conditions: Vec<TagCondition>,
    /// For a derived per-region group: the region whose VNets it is limited to (an extra
    /// condition `location == region` in the membership policy).
    pub region: Option<String>,
    /// Static members as VNet resource ids.
    pub static_members: Vec<String>,
    /// For a derived group: the declared group it narrows.
    pub derived_from: Option<String>,
}

impl ResolvedGroup {
    /// The `if` condition of the Azure Policy (mode `Microsoft.Network.Data`, effect
    /// `addToNetworkGroup`) implementing the group's dynamic membership: VNets whose tags satisfy
    /// every condition (and, for a derived group, whose location is the region). `None` for a
    /// group with static members only (a region condition alone would match every VNet of the
    /// region).
    pub fn policy_condition(&self) -> Option<serde_json::Value> {
        if self.conditions.is_empty() {
            return None;
        }
        let mut all = vec![serde_json::json!({
            "field": "type",
            "equals": "Microsoft.Network/virtualNetworks"
        })];
        for c in &self.conditions {
            all.push(
                serde_json::json!({"field": format!("tags['{}']", c.tag), "equals": c.equals}),
            );
        }
        if let Some(r) = &self.region {
            all.push(serde_json::json!({"field": "location", "equals": r}));
        }
        Some(serde_json::json!({ "allOf": all }))
    }
}

/// Connectivity topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Topology {
    /// Mesh.
    Mesh,
    /// HubAndSpoke.
    HubAndSpoke,
}

/// A connectivity configuration, resolved (the hub-and-spoke template expanded per region).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedConnectivity {
    /// Configuration name.
    pub name: String,
    /// ARM resource id.
    pub id: String,
    /// Description.
    pub description: String,
    /// Mesh or HubAndSpoke.
    pub topology: Topology,
    /// Name of the hub VNet (HubAndSpoke).
    pub hub_vnet: Option<String>,
    /// Resource id of the hub VNet (HubAndSpoke).
    pub hub_vnet_id: Option<String>,
    /// Network groups it applies to (per-region derived groups for HubAndSpoke).
    pub groups: Vec<String>,
    /// `isGlobal`.
    pub is_global: bool,
    /// `groupConnectivity: DirectlyConnected` (hub-and-spoke with direct spoke connectivity;
    /// always false for a mesh).
    pub direct_connectivity: bool,
    /// `useHubGateway`.
    pub use_hub_gateway: bool,
    /// `deleteExistingPeering`.
    pub delete_existing_peering: bool,
    /// Connectivity capabilities.
    pub capabilities: Option<ConnectivityCapabilities>,
    /// Regions the configuration must be committed to.
    pub regions: Vec<String>,
}

/// A firewall policy (the parent or a per-region child), resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedFirewallPolicy {
    /// Policy name.
    pub name: String,
    /// ARM resource id.
    pub id: String,
    /// Subscription.
    pub subscription: String,
    /// Resource group.
    pub resource_group: String,
    /// Azure region of the policy resource.
    pub location: String,
    /// Tier.
    pub tier: FirewallTier,
    /// Base (parent) policy id, for children.
    pub base_policy_id: Option<String>,
    /// The intent region a child serves.
    pub region: Option<String>,
    /// The firewall the child is associated with.
    pub firewall_id: Option<String>,
    /// Whether netstep manages that firewall (and may set its policy).
    pub firewall_managed: bool,
}

/// A private DNS zone VNet link, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedDnsLink {
    /// Zone name.
    pub zone: String,
    /// Zone resource id.
    pub zone_id: String,
    /// Link name.
    pub name: String,
    /// VNet name.
    pub vnet: String,
    /// VNet resource id.
    pub vnet_id: String,
    /// Auto-registration.
    pub registration_enabled: bool,
}

/// `/subscriptions/S/resourceGroups/RG/providers/Microsoft.Network/KIND/NAME`.
pub fn network_id(sub: &str, rg: &str, kind: &str, name: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/{kind}/{name}")
}

/// Whether every condition holds for the tags.
pub fn conditions_match(conds: &[TagCondition], tags: &BTreeMap<String, String>) -> bool {
    !conds.is_empty()
        && conds
            .iter()
            .all(|c| tags.get(&c.tag).is_some_and(|v| *v == c.equals))
}

impl Intent {
    /// Every hub and spoke: regions in intent order, hub first, then spokes in order.
    pub fn vnets(&self) -> Vec<VnetRef<'_>> {
        let mut out = Vec::new();
        for (ri, r) in self.spec().regions.iter().enumerate() {
            let h = &r.hub;
            let mut tags = h.tags.clone();
            tags.insert(ROLE_TAG.to_string(), "hub".to_string());
            out.push(VnetRef {
                region: &r.name,
                region_index: ri,
                role: VnetRole::Hub,
                name: &h.name,
                subscription: &h.subscription,
                resource_group: &h.resource_group,
                id: network_id(
                    &h.subscription,
                    &h.resource_group,
                    "virtualNetworks",
                    &h.name,
                ),
                managed: h.managed,
                address_space: &h.address_space,
                subnets: &h.subnets,
                dns_servers: &h.dns_servers,
                tags,
                env: None,
                firewall: h.firewall.as_ref(),
                path: format!("regions[{ri}].hub"),
            });
            for (si, s) in r.spokes.iter().enumerate() {
                let mut tags = s.tags.clone();
                tags.insert(ENV_TAG.to_string(), s.env.clone());
                out.push(VnetRef {
                    region: &r.name,
                    region_index: ri,
                    role: VnetRole::Spoke,
                    name: &s.name,
                    subscription: &s.subscription,
                    resource_group: &s.resource_group,
                    id: network_id(
                        &s.subscription,
                        &s.resource_group,
                        "virtualNetworks",
                        &s.name,
                    ),
                    managed: s.managed,
                    address_space: &s.address_space,
                    subnets: &s.subnets,
                    dns_servers: &s.dns_servers,
                    tags,
                    env: Some(&s.env),
                    firewall: None,
                    path: format!("regions[{ri}].spokes[{si}]"),
                });
            }
        }
        out
    }

    /// The VNet of this intent with that name.
    pub fn vnet(&self, name: &str) -> Option<VnetRef<'_>> {
        self.vnets().into_iter().find(|v| v.name == name)
    }

    /// The regions, in intent order.
    pub fn regions(&self) -> &[Region] {
        &self.spec().regions
    }

    /// Region names, in intent order.
    pub fn region_names(&self) -> Vec<&str> {
        self.spec()
            .regions
            .iter()
            .map(|r| r.name.as_str())
            .collect()
    }

    /// Resource id of the network manager.
    pub fn network_manager_id(&self) -> String {
        let nm = &self.spec().network_manager;
        network_id(
            &nm.subscription,
            &nm.resource_group,
            "networkManagers",
            &nm.name,
        )
    }

    /// Resource id of a network group of the network manager.
    pub fn network_group_id(&self, name: &str) -> String {
        format!("{}/networkGroups/{name}", self.network_manager_id())
    }

    /// Resource id of a connectivity configuration.
    pub fn connectivity_config_id(&self, name: &str) -> String {
        format!(
            "{}/connectivityConfigurations/{name}",
            self.network_manager_id()
        )
    }

    /// Resource id of the security admin configuration (if any).
    pub fn security_admin_config_id(&self) -> Option<String> {
        self.spec().security_admin.as_ref().map(|s| {
            format!(
                "{}/securityAdminConfigurations/{}",
                self.network_manager_id(),
                s.name
            )
        })
    }

    /// Name of the group derived from `group` for `region` (hub-and-spoke expansion).
    pub fn derived_group_name(group: &str, region: &str) -> String {
        format!("{group}-{region}")
    }

    /// Regions the hub-and-spoke template expands to (its `regions`, or every region).
    pub fn hub_and_spoke_regions(&self) -> Vec<&str> {
        match self
            .spec()
            .connectivity
            .as_ref()
            .and_then(|c| c.hub_and_spoke.as_ref())
        {
            None => Vec::new(),
            Some(hs) if hs.regions.is_empty() => self.region_names(),
            Some(hs) => self
                .region_names()
                .into_iter()
                .filter(|r| hs.regions.iter().any(|x| x == r))
                .collect(),
        }
    }

    fn static_member_id(&self, m: &str) -> String {
        if m.starts_with('/') {
            m.to_string()
        } else {
            self.vnet(m).map_or_else(|| m.to_string(), |v| v.id)
        }
    }

    /// Every network group: the declared ones in intent order, then the per-region groups
    /// derived for hub-and-spoke (`<group>-<region>`: the group's conditions plus
    /// `location == region`, and its static members that lie in that region), by region then
    /// spoke group order.
    pub fn groups(&self) -> Vec<ResolvedGroup> {
        let spec = self.spec();
        let mut out: Vec<ResolvedGroup> = spec
            .network_groups
            .iter()
            .map(|g| ResolvedGroup {
                name: g.name.clone(),
                id: self.network_group_id(&g.name),
                description: g.description.clone(),
                conditions: g.match_all.clone(),
                region: None,
                static_members: g
                    .static_members
                    .iter()
                    .map(|m| self.static_member_id(m))
                    .collect(),
                derived_from: None,
            })
            .collect();
        if let Some(hs) = spec
            .connectivity
            .as_ref()
            .and_then(|c| c.hub_and_spoke.as_ref())
        {
            let vnets = self.vnets();
            for region in self.hub_and_spoke_regions() {
                for gname in &hs.spoke_groups {
                    let Some(g) = spec.network_groups.iter().find(|g| &g.name == gname) else {
                        continue;
                    };
                    let name = Self::derived_group_name(gname, region);
                    let static_members = g
                        .static_members
                        .iter()
                        .filter_map(|m| vnets.iter().find(|v| v.name == m))
                        .filter(|v| v.region == region)
                        .map(|v| v.id.clone())
                        .collect();
                    out.push(ResolvedGroup {
                        id: self.network_group_id(&name),
                        description: format!(
                            "{gname} limited to {region} (derived by netstep for hub-and-spoke)"
                        ),
                        name,
                        conditions: g.match_all.clone(),
                        region: Some(region.to_string()),
                        static_members,
                        derived_from: Some(gname.clone()),
                    });
                }
            }
        }
        out
    }

    /// The resolved group of that name (declared or derived).
    pub fn group(&self, name: &str) -> Option<ResolvedGroup> {
        self.groups().into_iter().find(|g| g.name == name)
    }

    /// The intent's VNets that are members of a group (declared or derived): those matching its
    /// tag conditions (and region) plus its static members named in the intent. Members given
    /// only by a foreign resource id are not VNets of the intent and are not listed.
    pub fn group_members(&self, name: &str) -> Vec<VnetRef<'_>> {
        let Some(g) = self.group(name) else {
            return Vec::new();
        };
        self.members_of(&g)
    }

    pub(crate) fn members_of(&self, g: &ResolvedGroup) -> Vec<VnetRef<'_>> {
        self.vnets()
            .into_iter()
            .filter(|v| is_member(g, v))
            .collect()
    }

    /// [`Intent::members_of`] over VNets resolved once by the caller (validation of large
    /// intents asks this for every group; re-resolving every VNet per group was quadratic).
    pub(crate) fn members_in<'v, 'a>(
        g: &'v ResolvedGroup,
        vnets: &'v [VnetRef<'a>],
    ) -> impl Iterator<Item = &'v VnetRef<'a>> + 'v {
        vnets.iter().filter(move |v| is_member(g, v))
    }

    /// The mesh configuration and the hub-and-spoke template expanded per region
    /// (`<name_prefix>-<region>`, hub = the region's hub, groups = the per-region derived spoke
    /// groups), in that order.
    pub fn connectivity_configs(&self) -> Vec<ResolvedConnectivity> {
        let spec = self.spec();
        let Some(c) = &spec.connectivity else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(m) = &c.mesh {
            let members = self.group_members(&m.group);
            let mut regions: Vec<String> = Vec::new();
            for r in self.region_names() {
                if members.iter().any(|v| v.region == r) {
                    regions.push(r.to_string());
                }
            }
            if regions.is_empty() {
                regions = self.region_names().iter().map(|s| s.to_string()).collect();
            }
            out.push(ResolvedConnectivity {
                name: m.name.clone(),
                id: self.connectivity_config_id(&m.name),
                description: m.description.clone(),
                topology: Topology::Mesh,
                hub_vnet: None,
                hub_vnet_id: None,
                groups: vec![m.group.clone()],
                is_global: m.global,
                // In a mesh every member is connected anyway; AVNM expects "None" here.
                direct_connectivity: false,
                use_hub_gateway: false,
                delete_existing_peering: m.delete_existing_peering,
                capabilities: c.connectivity_capabilities,
                regions,
            });
        }
        if let Some(hs) = &c.hub_and_spoke {
            for region in self.hub_and_spoke_regions() {
                let Some(r) = spec.regions.iter().find(|r| r.name == region) else {
                    continue;
                };
                let name = format!("{}-{region}", hs.name_prefix);
                out.push(ResolvedConnectivity {
                    id: self.connectivity_config_id(&name),
                    name,
                    description: hs.description.clone(),
                    topology: Topology::HubAndSpoke,
                    hub_vnet: Some(r.hub.name.clone()),
                    hub_vnet_id: Some(network_id(
                        &r.hub.subscription,
                        &r.hub.resource_group,
                        "virtualNetworks",
                        &r.hub.name,
                    )),
                    groups: hs
                        .spoke_groups
                        .iter()
                        .map(|g| Self::derived_group_name(g, region))
                        .collect(),
                    is_global: false,
                    direct_connectivity: hs.direct_spoke_connectivity,
                    use_hub_gateway: hs.use_hub_gateway,
                    delete_existing_peering: hs.delete_existing_peering,
                    capabilities: c.connectivity_capabilities,
                    regions: vec![region.to_string()],
                });
            }
        }
        out
    }

    /// The firewall policies: the parent first, then one child per region whose hub has a
    /// firewall (`<children.name_prefix>-<region>`), in region order.
    pub fn firewall_policies(&self) -> Vec<ResolvedFirewallPolicy> {
        let spec = self.spec();
        let Some(p) = &spec.firewall_policy else {
            return Vec::new();
        };
        let parent_id = network_id(
            &p.subscription,
            &p.resource_group,
            "firewallPolicies",
            &p.name,
        );
        let mut out = vec![ResolvedFirewallPolicy {
            name: p.name.clone(),
            id: parent_id.clone(),
            subscription: p.subscription.clone(),
            resource_group: p.resource_group.clone(),
            location: p.location.clone(),
            tier: p.tier,
            base_policy_id: None,
            region: None,
            firewall_id: None,
            firewall_managed: false,
        }];
        for r in &spec.regions {
            let Some(fw) = &r.hub.firewall else {
                continue;
            };
            let name = format!("{}-{}", p.children.name_prefix, r.name);
            out.push(ResolvedFirewallPolicy {
                id: network_id(
                    &p.subscription,
                    &p.children.resource_group,
                    "firewallPolicies",
                    &name,
                ),
                name,
                subscription: p.subscription.clone(),
                resource_group: p.children.resource_group.clone(),
                location: p.children.location.clone(),
                tier: p.tier,
                base_policy_id: Some(parent_id.clone()),
                region: Some(r.name.clone()),
                firewall_id: Some(network_id(
                    &fw.subscription,
                    &fw.resource_group,
                    "azureFirewalls",
                    &fw.name,
                )),
                firewall_managed: fw.managed,
            });
        }
        out
    }

    /// Every private DNS zone VNet link, zone by zone, VNets in intent order.
    pub fn dns_links(&self) -> Vec<ResolvedDnsLink> {
        let spec = self.spec();
        let Some(dns) = &spec.dns else {
            return Vec::new();
        };
        let vnets = self.vnets();
        let mut out = Vec::new();
        for z in &dns.zones {
            let zone_id = network_id(
                &z.subscription,
                &z.resource_group,
                "privateDnsZones",
                &z.name,
            );
            for v in &vnets {
                let linked = match &z.links.vnets {
                    None => true,
                    Some(list) => list.iter().any(|n| n == v.name),
                };
                if !linked {
                    continue;
                }
                out.push(ResolvedDnsLink {
                    zone: z.name.clone(),
                    zone_id: zone_id.clone(),
                    name: format!("{}{}", z.links.name_prefix, v.name),
                    vnet: v.name.to_string(),
                    vnet_id: v.id.clone(),
                    registration_enabled: z.links.registration_enabled
                        || z.links.registration_vnets.iter().any(|n| n == v.name),
                });
            }
        }
        out
    }
}

/// Whether a VNet of the intent is a member of the group: in its region (if the group has
/// one) and matching its tag conditions, or one of its static members.
fn is_member(g: &ResolvedGroup, v: &VnetRef<'_>) -> bool {
    g.region.as_deref().is_none_or(|r| r == v.region)
        && (conditions_match(&g.conditions, &v.tags)
            || g.static_members
                .iter()
                .any(|m| m.eq_ignore_ascii_case(&v.id)))
}
