//! What the intent says Azure must hold, as the spec-shaped subsets verify compares with
//! [`netstep::plan::diff`] (only the fields given here are compared; extra fields ARM returns are
//! ignored). Empty lists and empty descriptions are left out, since ARM may omit them.

use std::collections::{BTreeMap, BTreeSet};

use netstep::intent::{
    AddressRef, AdminRule, FwAction, FwCollectionKind, FwRule, Intent, ResolvedConnectivity,
    RuleCollectionGroup, Topology,
};
use netstep::resources::{self, AddressPrefix, avnm_bool};
use serde_json::{Map, Value, json};

fn lc(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// The goal state per commit type: `type -> region -> configuration ids`.
pub fn goal_states(intent: &Intent) -> BTreeMap<&'static str, BTreeMap<String, BTreeSet<String>>> {
    let mut out: BTreeMap<&'static str, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let conn = out.entry("Connectivity").or_default();
    for r in intent.region_names() {
        conn.entry(r.to_string()).or_default();
    }
    for c in intent.connectivity_configs() {
        for r in &c.regions {
            conn.entry(r.clone()).or_default().insert(c.id.clone());
        }
    }
    if let Some(sac) = intent.security_admin_config_id() {
        let sec = out.entry("SecurityAdmin").or_default();
        for r in intent.region_names() {
            sec.entry(r.to_string()).or_default().insert(sac.clone());
        }
    }
    out
}

/// The compared subset of a connectivity configuration's `properties`.
pub fn connectivity(intent: &Intent, c: &ResolvedConnectivity) -> Value {
    let groups: Vec<Value> = c
        .groups
        .iter()
        .map(|g| {
            json!({
                "networkGroupId": intent.network_group_id(g),
                "groupConnectivity": if c.direct_connectivity { "DirectlyConnected" } else { "None" },
                "useHubGateway": avnm_bool(c.use_hub_gateway),
            })
        })
        .collect();
    let mut p = json!({
        "connectivityTopology": match c.topology { Topology::Mesh => "Mesh", Topology::HubAndSpoke => "HubAndSpoke" },
        "appliesToGroups": groups,
        "isGlobal": avnm_bool(c.is_global),
    });
    if let Some(hub) = &c.hub_vnet_id {
        p["hubs"] = json!([{"resourceId": hub}]);
    }
    p
}

/// An admin rule source/destination as the resources builder shapes it.
pub fn address(intent: &Intent, a: &AddressRef) -> AddressPrefix {
    match a {
        AddressRef::Group { group } => AddressPrefix::NetworkGroup(intent.network_group_id(group)),
        AddressRef::Cidr { cidr } => AddressPrefix::IpPrefix(cidr.clone()),
        AddressRef::ServiceTag { service_tag } => AddressPrefix::ServiceTag(service_tag.clone()),
    }
}

fn ports(p: &[String]) -> Vec<String> {
    if p.is_empty() {
        vec!["0-65535".to_string()]
    } else {
        p.to_vec()
    }
}

/// The compared subset of an admin rule's `properties` (its content, without the description).
pub fn admin_rule(intent: &Intent, r: &AdminRule) -> Value {
    let body = resources::admin_rule(&resources::AdminRule {
        description: String::new(),
        priority: u16::try_from(r.priority).unwrap_or(u16::MAX),
        direction: format!("{:?}", r.direction),
        access: format!("{:?}", r.access),
        protocol: format!("{:?}", r.protocol),
        sources: r.sources.iter().map(|a| address(intent, a)).collect(),
        destinations: r.destinations.iter().map(|a| address(intent, a)).collect(),
        source_port_ranges: ports(&r.source_ports),
        destination_port_ranges: ports(&r.destination_ports),
    });
    let mut p = body["properties"].clone();
    if let Some(m) = p.as_object_mut() {
        m.remove("description");
        // An empty address list means "any": ARM may omit it.
        for k in ["sources", "destinations"] {
            if m.get(k)
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
            {
                m.remove(k);
            }
        }
    }
    p
}

/// Every admin rule of the intent: lower-cased id -> (id, collection groups, compared content).
pub fn admin_rules(intent: &Intent) -> BTreeMap<String, (String, BTreeSet<String>, Value)> {
    let mut out = BTreeMap::new();
    let (Some(sa), Some(sac_id)) = (&intent.security_admin, intent.security_admin_config_id())
    else {
        return out;
    };
    for rc in &sa.rule_collections {
        let groups: BTreeSet<String> = rc
            .applies_to_groups
            .iter()
            .map(|g| lc(&intent.network_group_id(g)))
            .collect();
        for r in &rc.rules {
            let id = format!("{sac_id}/ruleCollections/{}/rules/{}", rc.name, r.name);
            out.insert(lc(&id), (id, groups.clone(), admin_rule(intent, r)));
        }
    }
    out
}

fn put_list(m: &mut Map<String, Value>, k: &str, v: &[String]) {
    if !v.is_empty() {
        m.insert(k.to_string(), json!(v));
    }
}

fn put_desc(m: &mut Map<String, Value>, d: &str) {
    if !d.is_empty() {
        m.insert("description".into(), json!(d));
    }
}

/// A firewall rule, spec-shaped (`FirewallPolicyRule` subtypes).
pub fn fw_rule(r: &FwRule) -> Value {
    let mut m = Map::new();
    match r {
        FwRule::Network(n) => {
            m.insert("ruleType".into(), json!("NetworkRule"));
            m.insert("name".into(), json!(n.name));
            put_desc(&mut m, &n.description);
            m.insert("ipProtocols".into(), json!(n.protocols));
            put_list(&mut m, "sourceAddresses", &n.source_addresses);
            put_list(&mut m, "destinationAddresses", &n.destination_addresses);
            put_list(&mut m, "destinationPorts", &n.destination_ports);
            put_list(&mut m, "destinationFqdns", &n.destination_fqdns);
        }
        FwRule::Application(a) => {
            m.insert("ruleType".into(), json!("ApplicationRule"));
            m.insert("name".into(), json!(a.name));
            put_desc(&mut m, &a.description);
            let protos: Vec<Value> = a
                .protocols
                .iter()
                .map(|p| json!({"protocolType": p.kind, "port": p.port}))
                .collect();
            m.insert("protocols".into(), json!(protos));
            put_list(&mut m, "sourceAddresses", &a.source_addresses);
            put_list(&mut m, "targetFqdns", &a.target_fqdns);
            put_list(&mut m, "fqdnTags", &a.fqdn_tags);
        }
        FwRule::Nat(n) => {
            m.insert("ruleType".into(), json!("NatRule"));
            m.insert("name".into(), json!(n.name));
            put_desc(&mut m, &n.description);
            m.insert("ipProtocols".into(), json!(n.protocols));
            put_list(&mut m, "sourceAddresses", &n.source_addresses);
            put_list(&mut m, "destinationAddresses", &n.destination_addresses);
            put_list(&mut m, "destinationPorts", &n.destination_ports);
            m.insert("translatedAddress".into(), json!(n.translated_address));
            m.insert("translatedPort".into(), json!(n.translated_port));
        }
    }
    Value::Object(m)
}

/// The compared subset of a rule collection group's `properties`.
pub fn rule_collection_group(g: &RuleCollectionGroup) -> Value {
    let rcs: Vec<Value> = g
        .rule_collections
        .iter()
        .map(|rc| {
            let (ty, action) = match (rc.kind, rc.action) {
                (FwCollectionKind::Nat, _) => ("FirewallPolicyNatRuleCollection", "DNAT"),
                (_, FwAction::Deny) => ("FirewallPolicyFilterRuleCollection", "Deny"),
                (_, FwAction::Dnat) => ("FirewallPolicyNatRuleCollection", "DNAT"),
                (_, FwAction::Allow) => ("FirewallPolicyFilterRuleCollection", "Allow"),
            };
            json!({
                "ruleCollectionType": ty,
                "name": rc.name,
                "priority": rc.priority,
                "action": {"type": action},
                "rules": rc.rules.iter().map(fw_rule).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"priority": g.priority, "ruleCollections": rcs})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globojava() -> Intent {
        let p = netstep_testsupport_path();
        netstep::intent::load_file(&p).unwrap()
    }

    fn netstep_testsupport_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/globojava/intent.yaml")
    }

    #[test]
    fn goal_states_cover_every_region() {
        let i = globojava();
        let g = goal_states(&i);
        assert_eq!(g["Connectivity"].len(), 7);
        assert_eq!(g["Connectivity"]["eastus"].len(), 2);
        assert_eq!(g["SecurityAdmin"]["southafricanorth"].len(), 1);
    }

    #[test]
    fn admin_rules_carry_group_ids_and_default_ports() {
        let i = globojava();
        let rules = admin_rules(&i);
        assert_eq!(rules.len(), 4);
        let (_, groups, body) = rules
            .iter()
            .find(|(k, _)| k.ends_with("/deny-prod-to-nonprod-out"))
            .map(|(_, v)| v)
            .unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(body["priority"], 100);
        assert_eq!(body["destinationPortRanges"], json!(["0-65535"]));
        assert!(
            body["sources"][0]["addressPrefix"]
                .as_str()
                .unwrap()
                .ends_with("/networkGroups/all-prod-spokes")
        );
    }

    #[test]
    fn rule_collection_groups_are_spec_shaped() {
        let i = globojava();
        let fp = i.firewall_policy.as_ref().unwrap();
        let v = rule_collection_group(&fp.rule_collection_groups[0]);
        assert_eq!(
            v["ruleCollections"][0]["ruleCollectionType"],
            "FirewallPolicyFilterRuleCollection"
        );
        assert_eq!(
            v["ruleCollections"][0]["rules"][0]["ruleType"],
            "NetworkRule"
        );
        assert_eq!(
            v["ruleCollections"][1]["rules"][0]["protocols"][0]["protocolType"],
            "Https"
        );
        assert!(
            v["ruleCollections"][0]["rules"][1]
                .get("destinationAddresses")
                .is_none()
        );
    }
}
