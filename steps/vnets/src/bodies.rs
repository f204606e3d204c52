//! Spec-shaped request bodies (Microsoft.Network 2026-07-01: `virtualNetwork.json`,
//! `publicIpAddress.json`, `firewall.json`) and the read-only members a read-modify-write must
//! drop before it sends a body back (Microsoft's validator refuses read-only members in a
//! request: `READONLY_PROPERTY_NOT_ALLOWED_IN_REQUEST`).

use std::collections::BTreeMap;

use netstep::resources::{FIREWALL_READ_ONLY, MANAGED_TAG, without_read_only as without};
use serde_json::{Map, Value, json};

/// Members of `VirtualNetwork` (and its envelope) that virtualNetwork.json marks `readOnly`,
/// plus the server-computed state of subnets and peerings netstep never sends back.
pub const VNET_READ_ONLY: &[&str] = &[
    "name",
    "type",
    "etag",
    "systemData",
    "properties.resourceGuid",
    "properties.provisioningState",
    "properties.flowLogs",
    "properties.defaultPublicNatGateway",
    "properties.subnets[].etag",
    "properties.subnets[].type",
    "properties.subnets[].properties.privateEndpoints",
    "properties.subnets[].properties.ipConfigurations",
    "properties.subnets[].properties.ipConfigurationProfiles",
    "properties.subnets[].properties.resourceNavigationLinks",
    "properties.subnets[].properties.serviceAssociationLinks",
    "properties.subnets[].properties.purpose",
    "properties.subnets[].properties.provisioningState",
    "properties.subnets[].properties.delegations[].etag",
    "properties.subnets[].properties.delegations[].properties.actions",
    "properties.subnets[].properties.delegations[].properties.provisioningState",
    "properties.subnets[].properties.serviceEndpoints[].provisioningState",
    "properties.virtualNetworkPeerings[].etag",
    "properties.virtualNetworkPeerings[].type",
    "properties.virtualNetworkPeerings[].properties.provisioningState",
    "properties.virtualNetworkPeerings[].properties.resourceGuid",
    "properties.virtualNetworkPeerings[].properties.remoteVirtualNetworkEncryption",
];

/// Peering members the service computes (the remote side's address space as last synced, the
/// peering's state); a resync PUT sends none of them.
pub const PEERING_SERVER_STATE: &[&str] = &[
    "name",
    "type",
    "etag",
    "systemData",
    "properties.provisioningState",
    "properties.resourceGuid",
    "properties.remoteVirtualNetworkEncryption",
    "properties.peeringState",
    "properties.peeringSyncLevel",
    "properties.remoteAddressSpace",
    "properties.remoteVirtualNetworkAddressSpace",
    "properties.remoteBgpCommunities",
];

/// The tags of a managed resource: the current ones (foreign tags kept), the intent's, and the
/// ownership tag.
pub fn merged_tags(actual: Option<&Value>, wanted: &BTreeMap<String, String>) -> Value {
    let mut tags: Map<String, Value> = actual
        .and_then(|a| a.get("tags"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (k, v) in wanted {
        tags.insert(k.clone(), json!(v));
    }
    tags.insert(MANAGED_TAG.0.into(), json!(MANAGED_TAG.1));
    Value::Object(tags)
}

/// One subnet as netstep creates it.
pub fn subnet(name: &str, prefix: &str) -> Value {
    json!({"name": name, "properties": {"addressPrefix": prefix}})
}

/// The PUT body of a new managed VNet.
pub fn new_vnet(
    location: &str,
    tags: Value,
    prefixes: &[String],
    subnets: &[(String, String)],
    dns_servers: &[String],
) -> Value {
    let mut props = json!({
        "addressSpace": {"addressPrefixes": prefixes},
        "subnets": subnets.iter().map(|(n, p)| subnet(n, p)).collect::<Vec<_>>(),
    });
    if !dns_servers.is_empty() {
        props["dhcpOptions"] = json!({"dnsServers": dns_servers});
    }
    json!({"location": location, "tags": tags, "properties": props})
}

/// The PUT body of an existing managed VNet: everything writable as read (foreign subnets,
/// their NSGs, route tables, delegations; user peerings; DDoS settings), with the owned fields
/// replaced. AVNM's own `ANM_` peerings are left out: AVNM owns them and a VNet PUT does not
/// manage them.
pub fn updated_vnet(
    actual: &Value,
    tags: Value,
    prefixes: &[String],
    subnets: &[Value],
    dns_servers: &[String],
) -> Value {
    let mut v = without(actual, VNET_READ_ONLY);
    if let Some(m) = v.as_object_mut() {
        m.remove("id");
    }
    v["tags"] = tags;
    if !v["properties"].is_object() {
        v["properties"] = json!({});
    }
    let p = &mut v["properties"];
    p["addressSpace"] = json!({"addressPrefixes": prefixes});
    p["subnets"] = Value::Array(subnets.to_vec());
    if dns_servers.is_empty() {
        if let Some(m) = p.as_object_mut() {
            m.remove("dhcpOptions");
        }
    } else {
        p["dhcpOptions"] = json!({"dnsServers": dns_servers});
    }
    if let Some(peerings) = p
        .get_mut("virtualNetworkPeerings")
        .and_then(Value::as_array_mut)
    {
        peerings.retain(|x| !is_avnm_peering(x));
        for x in peerings.iter_mut() {
            *x = without(x, &PEERING_SERVER_STATE[1..]);
        }
    }
    v
}

/// A subnet as read, without its read-only members (for a VNet PUT that keeps it).
pub fn kept_subnet(read: &Value) -> Value {
    let wrapped = json!({"properties": {"subnets": [read]}});
    without(&wrapped, VNET_READ_ONLY)["properties"]["subnets"][0].clone()
}

/// Whether a peering was created by Azure Virtual Network Manager (its name starts `ANM_`).
pub fn is_avnm_peering(p: &Value) -> bool {
    p["name"].as_str().is_some_and(|n| n.starts_with("ANM_"))
}

/// The body of a peering resync (`PUT ...?syncRemoteAddressSpace=true`): the peering as read,
/// without the state the service computes.
pub fn peering_sync_body(read: &Value) -> Value {
    let mut v = without(read, PEERING_SERVER_STATE);
    if let Some(m) = v.as_object_mut() {
        m.remove("id");
    }
    v
}

/// The public IP of a managed firewall: Standard SKU, static IPv4.
pub fn public_ip(location: &str, zones: &[String]) -> Value {
    let mut v = json!({
        "location": location,
        "tags": merged_tags(None, &BTreeMap::new()),
        "sku": {"name": "Standard", "tier": "Regional"},
        "properties": {"publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"},
    });
    if !zones.is_empty() {
        v["zones"] = json!(zones);
    }
    v
}

/// What netstep owns of a managed firewall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallSpec {
    /// Region.
    pub location: String,
    /// Basic, Standard or Premium.
    pub tier: String,
    /// Availability zones (sorted).
    pub zones: Vec<String>,
    /// The hub's AzureFirewallSubnet id.
    pub subnet_id: String,
    /// The public IP's id.
    pub public_ip_id: String,
}

/// The PUT body of a new firewall (`policy`: the region's child policy when it exists).
pub fn new_firewall(spec: &FirewallSpec, policy: Option<&str>) -> Value {
    let mut v = json!({
        "location": spec.location,
        "tags": merged_tags(None, &BTreeMap::new()),
        "properties": {
            "sku": {"name": "AZFW_VNet", "tier": spec.tier},
            "ipConfigurations": [{
                "name": "ipconfig1",
                "properties": {
                    "subnet": {"id": spec.subnet_id},
                    "publicIPAddress": {"id": spec.public_ip_id},
                },
            }],
        },
    });
    if !spec.zones.is_empty() {
        v["zones"] = json!(spec.zones);
    }
    if let Some(p) = policy {
        v["properties"]["firewallPolicy"] = json!({"id": p});
    }
    v
}

/// The PUT body of an existing managed firewall: everything writable as read (its
/// `firewallPolicy`, owned by fw-policy, is kept as read), with the owned fields replaced.
pub fn updated_firewall(actual: &Value, spec: &FirewallSpec) -> Value {
    let mut v = without(actual, FIREWALL_READ_ONLY);
    if let Some(m) = v.as_object_mut() {
        m.remove("id");
    }
    v["tags"] = merged_tags(Some(actual), &BTreeMap::new());
    if spec.zones.is_empty() {
        if let Some(m) = v.as_object_mut() {
            m.remove("zones");
        }
    } else {
        v["zones"] = json!(spec.zones);
    }
    if !v["properties"].is_object() {
        v["properties"] = json!({});
    }
    v["properties"]["sku"] = json!({"name": "AZFW_VNet", "tier": spec.tier});
    let name = actual["properties"]["ipConfigurations"][0]["name"]
        .as_str()
        .unwrap_or("ipconfig1")
        .to_string();
    let mut ipc = v["properties"]["ipConfigurations"][0].clone();
    if !ipc.is_object() {
        ipc = json!({});
    }
    ipc["name"] = json!(name);
    if !ipc["properties"].is_object() {
        ipc["properties"] = json!({});
    }
    ipc["properties"]["subnet"] = json!({"id": spec.subnet_id});
    ipc["properties"]["publicIPAddress"] = json!({"id": spec.public_ip_id});
    let mut rest: Vec<Value> = v["properties"]["ipConfigurations"]
        .as_array()
        .map(|a| a.iter().skip(1).cloned().collect())
        .unwrap_or_default();
    rest.insert(0, ipc);
    v["properties"]["ipConfigurations"] = Value::Array(rest);
    v
}

/// The differences between what netstep owns of a firewall and what exists (empty: none).
pub fn firewall_gaps(actual: &Value, spec: &FirewallSpec) -> Vec<(String, Value, Value)> {
    let mut out = Vec::new();
    let tier = actual["properties"]["sku"]["tier"].clone();
    if !tier
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case(&spec.tier))
    {
        out.push(("properties.sku.tier".into(), tier, json!(spec.tier)));
    }
    let mut zones: Vec<String> = actual["zones"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|z| z.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    zones.sort();
    if zones != spec.zones {
        out.push(("zones".into(), json!(zones), json!(spec.zones)));
    }
    let ipc = &actual["properties"]["ipConfigurations"][0]["properties"];
    for (path, want) in [
        ("subnet", &spec.subnet_id),
        ("publicIPAddress", &spec.public_ip_id),
    ] {
        let got = ipc[path]["id"].clone();
        if !got.as_str().is_some_and(|g| g.eq_ignore_ascii_case(want)) {
            out.push((
                format!("properties.ipConfigurations[0].properties.{path}.id"),
                got,
                json!(want),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnet_update_keeps_foreign_writables_and_drops_read_only_and_avnm_peerings() {
        let read = json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v",
            "name": "v", "type": "Microsoft.Network/virtualNetworks", "etag": "W/\"1\"",
            "location": "eastus", "tags": {"costcenter": "x"},
            "properties": {
                "provisioningState": "Succeeded", "resourceGuid": "g",
                "enableDdosProtection": false,
                "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                "subnets": [{"name": "foreign", "id": "/x", "etag": "e", "type": "t",
                    "properties": {"addressPrefix": "10.0.9.0/24", "provisioningState": "Succeeded",
                        "ipConfigurations": [{"id": "/ip"}], "networkSecurityGroup": {"id": "/nsg"}}}],
                "virtualNetworkPeerings": [
                    {"name": "ANM_1", "properties": {"remoteVirtualNetwork": {"id": "/r"}}},
                    {"name": "user", "etag": "e", "properties": {"remoteVirtualNetwork": {"id": "/r2"},
                        "peeringSyncLevel": "FullyInSync", "remoteAddressSpace": {"addressPrefixes": ["1.0.0.0/8"]},
                        "allowForwardedTraffic": true, "provisioningState": "Succeeded"}}],
            }
        });
        let kept = kept_subnet(&read["properties"]["subnets"][0]);
        let mut tags = BTreeMap::new();
        tags.insert("env".to_string(), "prod".to_string());
        let b = updated_vnet(
            &read,
            merged_tags(Some(&read), &tags),
            &["10.0.0.0/16".into(), "10.1.0.0/16".into()],
            &[kept, subnet("snet-app", "10.0.1.0/24")],
            &["10.0.0.4".into()],
        );
        assert_eq!(
            b,
            json!({
                "location": "eastus",
                "tags": {"costcenter": "x", "env": "prod", "managed-by": "netstep"},
                "properties": {
                    "enableDdosProtection": false,
                    "addressSpace": {"addressPrefixes": ["10.0.0.0/16", "10.1.0.0/16"]},
                    "subnets": [
                        {"name": "foreign", "id": "/x", "properties": {"addressPrefix": "10.0.9.0/24", "networkSecurityGroup": {"id": "/nsg"}}},
                        {"name": "snet-app", "properties": {"addressPrefix": "10.0.1.0/24"}}],
                    "virtualNetworkPeerings": [
                        {"name": "user", "properties": {"remoteVirtualNetwork": {"id": "/r2"}, "allowForwardedTraffic": true}}],
                    "dhcpOptions": {"dnsServers": ["10.0.0.4"]},
                }
            })
        );
    }

    #[test]
    fn firewall_update_keeps_the_policy_and_sets_owned_fields() {
        let read = json!({
            "id": "/f", "name": "f", "etag": "e", "location": "eastus", "tags": {"a": "b"},
            "properties": {"provisioningState": "Succeeded", "threatIntelMode": "Alert",
                "sku": {"name": "AZFW_VNet", "tier": "Standard"},
                "firewallPolicy": {"id": "/pol"},
                "ipConfigurations": [{"name": "cfg", "etag": "e", "properties": {
                    "privateIPAddress": "10.1.0.4", "subnet": {"id": "/s"}, "publicIPAddress": {"id": "/p"}}}]}
        });
        let spec = FirewallSpec {
            location: "eastus".into(),
            tier: "Premium".into(),
            zones: vec!["1".into(), "2".into()],
            subnet_id: "/s".into(),
            public_ip_id: "/p".into(),
        };
        let gaps = firewall_gaps(&read, &spec);
        assert_eq!(
            gaps.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
            ["properties.sku.tier", "zones"]
        );
        let b = updated_firewall(&read, &spec);
        assert_eq!(b["properties"]["firewallPolicy"]["id"], "/pol");
        assert_eq!(b["properties"]["sku"]["tier"], "Premium");
        assert_eq!(b["zones"], json!(["1", "2"]));
        assert_eq!(b["properties"]["ipConfigurations"][0]["name"], "cfg");
        assert!(
            b["properties"]["ipConfigurations"][0]["properties"]
                .get("privateIPAddress")
                .is_none()
        );
        assert!(b.get("etag").is_none() && b.get("id").is_none());
        assert_eq!(b["tags"], json!({"a": "b", "managed-by": "netstep"}));
    }
}
