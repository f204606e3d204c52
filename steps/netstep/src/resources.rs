//! ARM resource ids, types and the *desired* request bodies of every resource netstep manages,
//! shaped as Microsoft's REST specs require (Microsoft.Network 2026-07-01, Private DNS
//! 2024-06-01, Azure Policy 2025-03-01).
//!
//! Builders take plain values, not intent types, so that each body is easy to test against the
//! spec and the steps stay thin. Every body is minimal: it carries only what netstep owns, which
//! is also exactly what [`crate::plan::diff`] compares against ARM's answer.
//!
//! Ownership marking: resources that have `tags` get [`MANAGED_TAG`]; AVNM children (network
//! groups, configurations, rule collections, rules), which have no tags, get
//! [`MANAGED_MARKER`] at the end of their `description`; policy definitions and assignments get
//! it in `metadata`. netstep never modifies or deletes a resource without its marker.

use serde_json::{Map, Value, json};

/// The tag that marks a resource as created and owned by netstep.
pub const MANAGED_TAG: (&str, &str) = ("managed-by", "netstep");

/// The description suffix that marks tag-less resources (AVNM children) as netstep's.
pub const MANAGED_MARKER: &str = "[managed-by=netstep]";

/// ARM resource types netstep touches.
pub mod types {
    /// AVNM network manager.
    pub const NETWORK_MANAGER: &str = "Microsoft.Network/networkManagers";
    /// AVNM network group.
    pub const NETWORK_GROUP: &str = "Microsoft.Network/networkManagers/networkGroups";
    /// AVNM static member of a network group.
    pub const STATIC_MEMBER: &str = "Microsoft.Network/networkManagers/networkGroups/staticMembers";
    /// AVNM connectivity configuration.
    pub const CONNECTIVITY_CONFIG: &str =
        "Microsoft.Network/networkManagers/connectivityConfigurations";
    /// AVNM security admin configuration.
    pub const SECURITY_ADMIN_CONFIG: &str =
        "Microsoft.Network/networkManagers/securityAdminConfigurations";
    /// AVNM admin rule collection.
    pub const RULE_COLLECTION: &str =
        "Microsoft.Network/networkManagers/securityAdminConfigurations/ruleCollections";
    /// AVNM admin rule.
    pub const ADMIN_RULE: &str =
        "Microsoft.Network/networkManagers/securityAdminConfigurations/ruleCollections/rules";
    /// Virtual network.
    pub const VIRTUAL_NETWORK: &str = "Microsoft.Network/virtualNetworks";
    /// Azure Firewall.
    pub const AZURE_FIREWALL: &str = "Microsoft.Network/azureFirewalls";
    /// Public IP address.
    pub const PUBLIC_IP: &str = "Microsoft.Network/publicIPAddresses";
    /// Firewall policy.
    pub const FIREWALL_POLICY: &str = "Microsoft.Network/firewallPolicies";
    /// Firewall policy rule collection group.
    pub const RULE_COLLECTION_GROUP: &str =
        "Microsoft.Network/firewallPolicies/ruleCollectionGroups";
    /// Private DNS zone.
    pub const PRIVATE_DNS_ZONE: &str = "Microsoft.Network/privateDnsZones";
    /// Private DNS virtual network link.
    pub const DNS_LINK: &str = "Microsoft.Network/privateDnsZones/virtualNetworkLinks";
    /// Private DNS A record set.
    pub const DNS_A_RECORD: &str = "Microsoft.Network/privateDnsZones/A";
    /// Azure Policy definition.
    pub const POLICY_DEFINITION: &str = "Microsoft.Authorization/policyDefinitions";
    /// Azure Policy assignment.
    pub const POLICY_ASSIGNMENT: &str = "Microsoft.Authorization/policyAssignments";
}

/// `/subscriptions/{sub}`.
pub fn subscription_id(sub: &str) -> String {
    format!("/subscriptions/{sub}")
}

/// `/subscriptions/{sub}/resourceGroups/{rg}`.
pub fn resource_group_id(sub: &str, rg: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}")
}

/// A Microsoft.Network resource id: `.../resourceGroups/{rg}/providers/Microsoft.Network/{path}`
/// where `path` is e.g. `virtualNetworks/vnet-hub-eastus`.
pub fn network_id(sub: &str, rg: &str, path: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/{path}")
}

/// A subscription-scoped policy definition id.
pub fn policy_definition_id(sub: &str, name: &str) -> String {
    format!("/subscriptions/{sub}/providers/Microsoft.Authorization/policyDefinitions/{name}")
}

/// A policy assignment id at `scope` (a subscription, resource group or management group id).
pub fn policy_assignment_id(scope: &str, name: &str) -> String {
    format!("{scope}/providers/Microsoft.Authorization/policyAssignments/{name}")
}

/// The last segment of a resource id (its name).
pub fn name_of(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// Whether a resource carries netstep's ownership mark (tag, description marker or policy
/// metadata).
pub fn is_managed(resource: &Value) -> bool {
    let tag = resource
        .pointer(&format!("/tags/{}", MANAGED_TAG.0))
        .and_then(Value::as_str)
        == Some(MANAGED_TAG.1);
    let desc = resource
        .pointer("/properties/description")
        .and_then(Value::as_str)
        .is_some_and(|d| d.ends_with(MANAGED_MARKER));
    let meta = resource
        .pointer("/properties/metadata/managedBy")
        .and_then(Value::as_str)
        == Some(MANAGED_TAG.1);
    // Private DNS record sets have no tags: `dns_a_record` puts the tag pair in `metadata`.
    let record_meta = resource
        .pointer(&format!("/properties/metadata/{}", MANAGED_TAG.0))
        .and_then(Value::as_str)
        == Some(MANAGED_TAG.1);
    tag || desc || meta || record_meta
}

/// A description carrying the ownership marker.
pub fn marked_description(description: &str) -> String {
    let d = description.trim();
    if d.is_empty() {
        MANAGED_MARKER.to_string()
    } else {
        format!("{d} {MANAGED_MARKER}")
    }
}

/// Tags with the ownership tag added.
pub fn managed_tags<'a>(extra: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    let mut m = Map::new();
    for (k, v) in extra {
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
    m.insert(MANAGED_TAG.0.into(), MANAGED_TAG.1.into());
    Value::Object(m)
}

/// AVNM string booleans: `"True"` / `"False"` (a JSON bool is rejected by the service).
pub fn avnm_bool(b: bool) -> Value {
    Value::String(if b { "True" } else { "False" }.into())
}

/// `PUT networkManagers/{nm}`.
pub fn network_manager(
    location: &str,
    description: &str,
    subscriptions: &[String],
    management_groups: &[String],
    scope_accesses: &[String],
) -> Value {
    json!({
        "location": location,
        "tags": managed_tags([]),
        "properties": {
            "description": marked_description(description),
            "networkManagerScopes": {
                "subscriptions": subscriptions,
                "managementGroups": management_groups,
            },
            "networkManagerScopeAccesses": scope_accesses,
        }
    })
}

/// `PUT networkGroups/{ng}`: a group of virtual networks.
pub fn network_group(description: &str) -> Value {
    json!({"properties": {"description": marked_description(description), "memberType": "VirtualNetwork"}})
}

/// `PUT networkGroups/{ng}/staticMembers/{name}`.
pub fn static_member(vnet_id: &str) -> Value {
    json!({"properties": {"resourceId": vnet_id}})
}

/// A deterministic static member name for a VNet id (ARM names allow 80 chars; ids do not fit).
pub fn static_member_name(vnet_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(vnet_id.to_ascii_lowercase().as_bytes());
    format!(
        "sm-{}-{}",
        name_of(vnet_id).chars().take(40).collect::<String>(),
        &hex::encode(h)[..12]
    )
}

/// One group a connectivity configuration applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectivityGroup {
    /// Network group id.
    pub network_group_id: String,
    /// Spokes of this group are directly connected to each other (`DirectlyConnected`).
    pub direct_connectivity: bool,
    /// Spokes use the hub's gateway.
    pub use_hub_gateway: bool,
    /// Direct connectivity across regions.
    pub is_global: bool,
}

/// The three connectivity capabilities (all or none, as the spec requires).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectivityCapabilities {
    /// `Standard` or `HighScale`.
    pub connected_group_private_endpoints_scale: String,
    /// `Allowed` or `Disallowed`.
    pub connected_group_address_overlap: String,
    /// `Unenforced` or `Enforced`.
    pub peering_enforcement: String,
}

/// `PUT connectivityConfigurations/{cc}`: `hub_vnet_id` set means HubAndSpoke, else Mesh.
pub fn connectivity_configuration(
    description: &str,
    hub_vnet_id: Option<&str>,
    groups: &[ConnectivityGroup],
    is_global: bool,
    delete_existing_peering: bool,
    capabilities: Option<&ConnectivityCapabilities>,
) -> Value {
    let applies: Vec<Value> = groups
        .iter()
        .map(|g| {
            json!({
                "networkGroupId": g.network_group_id,
                "groupConnectivity": if g.direct_connectivity { "DirectlyConnected" } else { "None" },
                "useHubGateway": avnm_bool(g.use_hub_gateway),
                "isGlobal": avnm_bool(g.is_global),
            })
        })
        .collect();
    let mut props = json!({
        "description": marked_description(description),
        "connectivityTopology": if hub_vnet_id.is_some() { "HubAndSpoke" } else { "Mesh" },
        "appliesToGroups": applies,
        "isGlobal": avnm_bool(is_global),
        "deleteExistingPeering": avnm_bool(delete_existing_peering && hub_vnet_id.is_some()),
    });
    if let Some(hub) = hub_vnet_id {
        props["hubs"] = json!([{"resourceId": hub, "resourceType": types::VIRTUAL_NETWORK}]);
    }
    if let Some(c) = capabilities {
        props["connectivityCapabilities"] = json!({
            "connectedGroupPrivateEndpointsScale": c.connected_group_private_endpoints_scale,
            "connectedGroupAddressOverlap": c.connected_group_address_overlap,
            "peeringEnforcement": c.peering_enforcement,
        });
    }
    json!({ "properties": props })
}

/// `PUT securityAdminConfigurations/{sac}`.
pub fn security_admin_configuration(
    description: &str,
    apply_on_intent_policy_services: &[String],
) -> Value {
    json!({"properties": {
        "description": marked_description(description),
        "applyOnNetworkIntentPolicyBasedServices": apply_on_intent_policy_services,
    }})
}

/// `PUT ruleCollections/{rc}`.
pub fn admin_rule_collection(description: &str, group_ids: &[String]) -> Value {
    let groups: Vec<Value> = group_ids
        .iter()
        .map(|g| json!({"networkGroupId": g}))
        .collect();
    json!({"properties": {"description": marked_description(description), "appliesToGroups": groups}})
}

/// A source or destination of an admin rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressPrefix {
    /// A network group (by id).
    NetworkGroup(String),
    /// A CIDR or IP.
    IpPrefix(String),
    /// An Azure service tag (`Internet`, `AzureCloud`, ...).
    ServiceTag(String),
}

impl AddressPrefix {
    fn to_json(&self) -> Value {
        let (t, p) = match self {
            AddressPrefix::NetworkGroup(id) => ("NetworkGroup", id),
            AddressPrefix::IpPrefix(c) => ("IPPrefix", c),
            AddressPrefix::ServiceTag(s) => ("ServiceTag", s),
        };
        json!({"addressPrefixType": t, "addressPrefix": p})
    }
}

/// An admin rule's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRule {
    /// Description (max 140 characters including the marker).
    pub description: String,
    /// 1..=4096, unique in its collection.
    pub priority: u16,
    /// `Inbound` or `Outbound`.
    pub direction: String,
    /// `Allow`, `Deny` or `AlwaysAllow`.
    pub access: String,
    /// `Tcp`, `Udp`, `Icmp`, `Esp`, `Any` or `Ah`.
    pub protocol: String,
    /// Sources.
    pub sources: Vec<AddressPrefix>,
    /// Destinations.
    pub destinations: Vec<AddressPrefix>,
    /// Source port ranges (`"0-65535"`, `"80"`).
    pub source_port_ranges: Vec<String>,
    /// Destination port ranges.
    pub destination_port_ranges: Vec<String>,
}

/// `PUT rules/{rule}` (kind `Custom`).
pub fn admin_rule(rule: &AdminRule) -> Value {
    json!({"kind": "Custom", "properties": {
        "description": marked_description(&rule.description),
        "priority": rule.priority,
        "direction": rule.direction,
        "access": rule.access,
        "protocol": rule.protocol,
        "sources": rule.sources.iter().map(AddressPrefix::to_json).collect::<Vec<_>>(),
        "destinations": rule.destinations.iter().map(AddressPrefix::to_json).collect::<Vec<_>>(),
        "sourcePortRanges": rule.source_port_ranges,
        "destinationPortRanges": rule.destination_port_ranges,
    }})
}

/// `POST networkManagers/{nm}/commit`: the goal state of `commit_type` in `regions`.
pub fn commit(commit_type: &str, regions: &[String], configuration_ids: &[String]) -> Value {
    json!({"commitType": commit_type, "targetLocations": regions, "configurationIds": configuration_ids})
}

/// `POST networkManagers/{nm}/listDeploymentStatus`.
pub fn deployment_status_query(regions: &[String], deployment_types: &[String]) -> Value {
    json!({"regions": regions, "deploymentTypes": deployment_types})
}

/// One tag condition of a dynamic-membership policy: `tags[key] == value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagCondition {
    /// Tag name.
    pub key: String,
    /// Required value.
    pub equals: String,
}

/// `PUT policyDefinitions/{name}`: VNets whose tags match all `conditions` (and, when given,
/// whose location is `location`) become members of `network_group_id`.
pub fn membership_policy_definition(
    display_name: &str,
    network_group_id: &str,
    conditions: &[TagCondition],
    location: Option<&str>,
) -> Value {
    let mut all: Vec<Value> = vec![json!({"field": "type", "equals": types::VIRTUAL_NETWORK})];
    all.extend(
        conditions
            .iter()
            .map(|c| json!({"field": format!("tags['{}']", c.key), "equals": c.equals})),
    );
    if let Some(l) = location {
        all.push(json!({"field": "location", "equals": l}));
    }
    json!({"properties": {
        "displayName": display_name,
        "description": format!("Adds matching virtual networks to {} {MANAGED_MARKER}", name_of(network_group_id)),
        "policyType": "Custom",
        "mode": "Microsoft.Network.Data",
        "metadata": {"category": "Azure Virtual Network Manager", "managedBy": MANAGED_TAG.1},
        "policyRule": {
            "if": {"allOf": all},
            "then": {"effect": "addToNetworkGroup", "details": {"networkGroupId": network_group_id}},
        },
    }})
}

/// `PUT policyAssignments/{name}`.
pub fn policy_assignment(display_name: &str, policy_definition_id: &str) -> Value {
    json!({"properties": {
        "displayName": display_name,
        "policyDefinitionId": policy_definition_id,
        "enforcementMode": "Default",
        "metadata": {"managedBy": MANAGED_TAG.1},
    }})
}

/// `PUT firewallPolicies/{p}`: `base_policy_id` makes it a child inheriting the parent's rules.
pub fn firewall_policy(
    location: &str,
    tier: &str,
    threat_intel_mode: &str,
    dns_proxy: bool,
    base_policy_id: Option<&str>,
) -> Value {
    let mut props = json!({
        "sku": {"tier": tier},
        "threatIntelMode": threat_intel_mode,
        "dnsSettings": {"enableProxy": dns_proxy},
    });
    if let Some(b) = base_policy_id {
        props["basePolicy"] = json!({"id": b});
    }
    json!({"location": location, "tags": managed_tags([]), "properties": props})
}

/// `PUT firewallPolicies/{p}/ruleCollectionGroups/{rcg}`: `rule_collections` are spec-shaped
/// `FirewallPolicyFilterRuleCollection` / `FirewallPolicyNatRuleCollection` objects.
pub fn rule_collection_group(priority: u32, rule_collections: Vec<Value>) -> Value {
    json!({"properties": {"priority": priority, "ruleCollections": rule_collections}})
}

/// `PUT privateDnsZones/{zone}` (always `global`).
pub fn private_dns_zone() -> Value {
    json!({"location": "global", "tags": managed_tags([])})
}

/// `PUT privateDnsZones/{zone}/virtualNetworkLinks/{link}`.
pub fn dns_link(vnet_id: &str, registration_enabled: bool) -> Value {
    json!({"location": "global", "tags": managed_tags([]), "properties": {
        "virtualNetwork": {"id": vnet_id},
        "registrationEnabled": registration_enabled,
    }})
}

/// `PUT privateDnsZones/{zone}/A/{name}`: record sets carry the marker in `metadata`.
pub fn dns_a_record(ttl: u32, ipv4: &[String]) -> Value {
    let records: Vec<Value> = ipv4.iter().map(|ip| json!({"ipv4Address": ip})).collect();
    json!({"properties": {"ttl": ttl, "aRecords": records, "metadata": {MANAGED_TAG.0: MANAGED_TAG.1}}})
}

/// Members of `AzureFirewall` (and its `Resource` envelope) that firewall.json marks
/// `readOnly`, plus `systemData`, which is not part of the 2026-07-01 model. Dropping them is
/// needed: a PUT that echoes the GET verbatim fails Microsoft's validator (`check-traffic`
/// reported `READONLY_PROPERTY_NOT_ALLOWED_IN_REQUEST` for `$.name`, `$.type`, `$.etag` and
/// `$.properties.ipConfigurations[0].{etag,type,properties.privateIPAddress}` on such a
/// recorded request); the Network RP itself ignores them. Everything else is sent as read.
pub const FIREWALL_READ_ONLY: &[&str] = &[
    "name",
    "type",
    "etag",
    "systemData",
    "properties.provisioningState",
    "properties.ipGroups",
    "properties.afcConfiguration",
    "properties.ipConfigurations[].etag",
    "properties.ipConfigurations[].type",
    "properties.ipConfigurations[].properties.privateIPAddress",
    "properties.ipConfigurations[].properties.provisioningState",
    "properties.managementIpConfiguration.etag",
    "properties.managementIpConfiguration.type",
    "properties.managementIpConfiguration.properties.privateIPAddress",
    "properties.managementIpConfiguration.properties.provisioningState",
    "properties.applicationRuleCollections[].etag",
    "properties.applicationRuleCollections[].properties.provisioningState",
    "properties.natRuleCollections[].etag",
    "properties.natRuleCollections[].properties.provisioningState",
    "properties.networkRuleCollections[].etag",
    "properties.networkRuleCollections[].properties.provisioningState",
];

/// A copy of `read` without the members listed in `read_only`.
pub fn without_read_only(read: &Value, read_only: &[&str]) -> Value {
    let mut v = read.clone();
    for p in read_only {
        let parts: Vec<&str> = p.split('.').collect();
        strip_path(&mut v, &parts);
    }
    v
}

/// Deletes the member at a dotted path where `[]` walks every array item.
fn strip_path(v: &mut Value, path: &[&str]) {
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    if let Some(key) = head.strip_suffix("[]") {
        if let Some(Value::Array(items)) = v.get_mut(key) {
            for it in items {
                strip_path(it, rest);
            }
        }
        return;
    }
    match (rest.is_empty(), v) {
        (true, Value::Object(m)) => {
            m.remove(*head);
        }
        (false, Value::Object(m)) => {
            if let Some(child) = m.get_mut(*head) {
                strip_path(child, rest);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        let id = network_id("s", "rg", "virtualNetworks/vnet-a");
        assert_eq!(
            id,
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet-a"
        );
        assert_eq!(name_of(&id), "vnet-a");
        assert_eq!(
            policy_assignment_id(&subscription_id("s"), "a"),
            "/subscriptions/s/providers/Microsoft.Authorization/policyAssignments/a"
        );
    }

    #[test]
    fn static_member_names_are_deterministic_and_case_insensitive() {
        let a = static_member_name(
            "/subscriptions/S/resourceGroups/RG/providers/Microsoft.Network/virtualNetworks/v",
        );
        let b = static_member_name(
            "/subscriptions/s/resourcegroups/rg/providers/microsoft.network/virtualnetworks/v",
        );
        assert_eq!(a, b);
        assert!(a.len() <= 80);
    }

    #[test]
    fn connectivity_uses_string_booleans_and_required_fields() {
        let g = ConnectivityGroup {
            network_group_id: "/ng".into(),
            direct_connectivity: false,
            use_hub_gateway: false,
            is_global: false,
        };
        let hs = connectivity_configuration(
            "hs",
            Some("/hub"),
            std::slice::from_ref(&g),
            false,
            true,
            None,
        );
        let p = &hs["properties"];
        assert_eq!(p["connectivityTopology"], "HubAndSpoke");
        assert_eq!(p["isGlobal"], "False");
        assert_eq!(p["deleteExistingPeering"], "True");
        assert_eq!(p["appliesToGroups"][0]["groupConnectivity"], "None");
        assert_eq!(p["appliesToGroups"][0]["useHubGateway"], "False");
        assert_eq!(
            p["hubs"][0]["resourceType"],
            "Microsoft.Network/virtualNetworks"
        );
        let mesh = connectivity_configuration("m", None, &[g], true, true, None);
        assert_eq!(mesh["properties"]["connectivityTopology"], "Mesh");
        assert_eq!(mesh["properties"]["isGlobal"], "True");
        // deleteExistingPeering only applies to hub-and-spoke.
        assert_eq!(mesh["properties"]["deleteExistingPeering"], "False");
        assert!(mesh["properties"].get("hubs").is_none());
    }

    #[test]
    fn managed_marks_are_recognised_on_every_kind() {
        assert!(is_managed(&network_group("env=prod")));
        assert!(is_managed(&private_dns_zone()));
        assert!(is_managed(&dns_link("/v", false)));
        assert!(is_managed(&dns_a_record(300, &["10.0.0.1".into()])));
        assert!(is_managed(&membership_policy_definition(
            "d",
            "/ng",
            &[],
            None
        )));
        assert!(!is_managed(
            &json!({"tags": {"costcenter": "1"}, "properties": {"description": "x"}})
        ));
    }

    #[test]
    fn admin_rule_body_matches_the_spec_shape() {
        let r = admin_rule(&AdminRule {
            description: "deny prod to nonprod".into(),
            priority: 100,
            direction: "Outbound".into(),
            access: "Deny".into(),
            protocol: "Any".into(),
            sources: vec![AddressPrefix::NetworkGroup("/ng/prod".into())],
            destinations: vec![AddressPrefix::IpPrefix("10.0.0.0/8".into())],
            source_port_ranges: vec!["0-65535".into()],
            destination_port_ranges: vec!["0-65535".into()],
        });
        assert_eq!(r["kind"], "Custom");
        assert_eq!(
            r["properties"]["sources"][0]["addressPrefixType"],
            "NetworkGroup"
        );
        assert_eq!(
            r["properties"]["destinations"][0]["addressPrefixType"],
            "IPPrefix"
        );
        assert_eq!(r["properties"]["priority"], 100);
    }

    #[test]
    fn membership_policy_is_network_data_mode_with_add_to_network_group() {
        let d = membership_policy_definition(
            "avnm all-prod-spokes",
            "/subscriptions/s/ng",
            &[TagCondition {
                key: "env".into(),
                equals: "prod".into(),
            }],
            Some("eastus"),
        );
        let p = &d["properties"];
        assert_eq!(p["mode"], "Microsoft.Network.Data");
        assert_eq!(p["policyRule"]["then"]["effect"], "addToNetworkGroup");
        assert_eq!(p["policyRule"]["if"]["allOf"][1]["field"], "tags['env']");
        assert_eq!(p["policyRule"]["if"]["allOf"][2]["field"], "location");
    }
}
