//! Spec-shaped request bodies of the firewall policy tree (Microsoft.Network 2026-07-01,
//! `firewallPolicy.json` / `firewall.json`) and the *owned views* the semantic diff compares.
//!
//! - Rule collection groups: [`rule_collection_group`] builds
//!   `FirewallPolicyRuleCollectionGroup` with `FirewallPolicyFilterRuleCollection` /
//!   `FirewallPolicyNatRuleCollection` items whose rules are `NetworkRule`, `ApplicationRule`
//!   or `NatRule` (discriminators `ruleCollectionType` and `ruleType`).
//! - [`rcg_owned_view`] projects any rule collection group body (ours, or ARM's answer with
//!   `provisioningState`, `size`, `etag`, empty `sourceIpGroups`, `null` descriptions, ...)
//!   onto exactly the fields netstep owns, with ARM's defaults filled in, so that the diff is
//!   stable and names each changed rule field.
//! - [`policy_put_body`] and [`firewall_put_body`] turn what ARM returned into a PUT body that
//!   keeps every writable field as read and drops the members the spec marks `readOnly`.

use netstep::intent::{
    ApplicationRule, FwAction, FwCollectionKind, FwRule, FwRuleCollection, NatRule, NetworkRule,
    RuleCollectionGroup,
};
use netstep::plan::FieldChange;
pub use netstep::resources::{FIREWALL_READ_ONLY, without_read_only};
use serde_json::{Map, Value, json};

/// `PUT firewallPolicies/{p}/ruleCollectionGroups/{rcg}` for one intent group.
pub fn rule_collection_group(g: &RuleCollectionGroup) -> Value {
    let collections: Vec<Value> = g.rule_collections.iter().map(rule_collection).collect();
    netstep::resources::rule_collection_group(g.priority, collections)
}

/// One `FirewallPolicyFilterRuleCollection` or `FirewallPolicyNatRuleCollection`.
pub fn rule_collection(c: &FwRuleCollection) -> Value {
    let kind = match c.kind {
        FwCollectionKind::Filter => "FirewallPolicyFilterRuleCollection",
        FwCollectionKind::Nat => "FirewallPolicyNatRuleCollection",
    };
    let action = match c.action {
        FwAction::Allow => "Allow",
        FwAction::Deny => "Deny",
        FwAction::Dnat => "DNAT",
    };
    json!({
        "ruleCollectionType": kind,
        "name": c.name,
        "priority": c.priority,
        "action": {"type": action},
        "rules": c.rules.iter().map(rule).collect::<Vec<_>>(),
    })
}

fn with_description(mut v: Value, description: &str) -> Value {
    if !description.is_empty() {
        v["description"] = json!(description);
    }
    v
}

fn protocols<T: serde::Serialize>(p: &[T]) -> Value {
    serde_json::to_value(p).unwrap_or_else(|_| json!([]))
}

/// One rule (`NetworkRule`, `ApplicationRule` or `NatRule`).
pub fn rule(r: &FwRule) -> Value {
    match r {
        FwRule::Network(NetworkRule {
            name,
            description,
            protocols: p,
            source_addresses,
            destination_addresses,
            destination_ports,
            destination_fqdns,
        }) => with_description(
            json!({
                "ruleType": "NetworkRule",
                "name": name,
                "ipProtocols": protocols(p),
                "sourceAddresses": source_addresses,
                "destinationAddresses": destination_addresses,
                "destinationPorts": destination_ports,
                "destinationFqdns": destination_fqdns,
            }),
            description,
        ),
        FwRule::Application(ApplicationRule {
            name,
            description,
            protocols: p,
            source_addresses,
            target_fqdns,
            fqdn_tags,
        }) => {
            let p: Vec<Value> = p
                .iter()
                .map(|x| {
                    json!({
                        "protocolType": serde_json::to_value(x.kind).unwrap_or(Value::Null),
                        "port": x.port,
                    })
                })
                .collect();
            with_description(
                json!({
                    "ruleType": "ApplicationRule",
                    "name": name,
                    "protocols": p,
                    "sourceAddresses": source_addresses,
                    "targetFqdns": target_fqdns,
                    "fqdnTags": fqdn_tags,
                }),
                description,
            )
        }
        FwRule::Nat(NatRule {
            name,
            description,
            protocols: p,
            source_addresses,
            destination_addresses,
            destination_ports,
            translated_address,
            translated_port,
        }) => with_description(
            json!({
                "ruleType": "NatRule",
                "name": name,
                "ipProtocols": protocols(p),
                "sourceAddresses": source_addresses,
                "destinationAddresses": destination_addresses,
                "destinationPorts": destination_ports,
                "translatedAddress": translated_address,
                "translatedPort": translated_port,
            }),
            description,
        ),
    }
}

/// The list members netstep owns per rule type (absent in ARM's answer = empty).
fn owned_rule_lists(rule_type: &str) -> &'static [&'static str] {
    match rule_type {
        "NetworkRule" => &[
            "ipProtocols",
            "sourceAddresses",
            "destinationAddresses",
            "destinationPorts",
            "destinationFqdns",
        ],
        "ApplicationRule" => &["protocols", "sourceAddresses", "targetFqdns", "fqdnTags"],
        "NatRule" => &[
            "ipProtocols",
            "sourceAddresses",
            "destinationAddresses",
            "destinationPorts",
        ],
        _ => &[],
    }
}

/// The string members netstep owns per rule type (absent or `null` = empty).
fn owned_rule_strings(rule_type: &str) -> &'static [&'static str] {
    match rule_type {
        "NatRule" => &["description", "translatedAddress", "translatedPort"],
        _ => &["description"],
    }
}

fn rule_owned_view(r: &Value) -> Value {
    let rule_type = r["ruleType"].as_str().unwrap_or_default();
    let mut m = Map::new();
    m.insert("name".into(), r["name"].clone());
    m.insert("ruleType".into(), json!(rule_type));
    for k in owned_rule_strings(rule_type) {
        m.insert(
            (*k).into(),
            match &r[*k] {
                Value::Null => json!(""),
                v => v.clone(),
            },
        );
    }
    for k in owned_rule_lists(rule_type) {
        let v = match &r[*k] {
            Value::Array(a) if *k == "protocols" => Value::Array(
                a.iter()
                    .map(|p| json!({"protocolType": p["protocolType"], "port": p["port"]}))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.clone()),
            _ => json!([]),
        };
        m.insert((*k).into(), v);
    }
    Value::Object(m)
}

/// The fields of a rule collection group netstep owns, with ARM's defaults filled in
/// (see the module docs). Works on our body and on ARM's answer alike.
pub fn rcg_owned_view(body: &Value) -> Value {
    let p = &body["properties"];
    let collections: Vec<Value> = p["ruleCollections"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    let rules: Vec<Value> = c["rules"]
                        .as_array()
                        .map(|r| r.iter().map(rule_owned_view).collect())
                        .unwrap_or_default();
                    json!({
                        "name": c["name"],
                        "ruleCollectionType": c["ruleCollectionType"],
                        "priority": c["priority"],
                        "action": {"type": c["action"]["type"]},
                        "rules": rules,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({"properties": {"priority": p["priority"], "ruleCollections": collections}})
}

/// The fields a `+ create` of a rule collection group shows: its priority, then one line per
/// collection (type, action, priority) and one per rule, so a reviewer reads every rule.
pub fn rcg_create_fields(body: &Value) -> Vec<FieldChange> {
    let v = rcg_owned_view(body);
    let p = &v["properties"];
    let mut out = vec![FieldChange {
        path: "properties.priority".into(),
        old: None,
        new: Some(p["priority"].clone()),
    }];
    for c in p["ruleCollections"].as_array().into_iter().flatten() {
        let name = c["name"].as_str().unwrap_or_default();
        out.push(FieldChange {
            path: format!("properties.ruleCollections[{name}]"),
            old: None,
            new: Some(json!({
                "ruleCollectionType": c["ruleCollectionType"],
                "priority": c["priority"],
                "action": c["action"]["type"],
            })),
        });
        for r in c["rules"].as_array().into_iter().flatten() {
            let rule = format!(
                "properties.ruleCollections[{name}].rules[{}]",
                r["name"].as_str().unwrap_or_default()
            );
            for (k, val) in r.as_object().into_iter().flatten() {
                let empty = val.as_array().is_some_and(Vec::is_empty) || val == "";
                if k != "name" && !empty {
                    out.push(FieldChange {
                        path: format!("{rule}.{k}"),
                        old: None,
                        new: Some(val.clone()),
                    });
                }
            }
        }
    }
    out
}

/// Members of `FirewallPolicy` that firewallPolicy.json marks `readOnly` (plus `systemData`).
pub const POLICY_READ_ONLY: &[&str] = &[
    "name",
    "type",
    "etag",
    "systemData",
    "properties.size",
    "properties.ruleCollectionGroups",
    "properties.kubeSelectorGroups",
    "properties.provisioningState",
    "properties.firewalls",
    "properties.childPolicies",
    "properties.afcManaged",
    "identity.principalId",
    "identity.tenantId",
];

/// The firewall as read, with `properties.firewallPolicy` set to `policy_id` (or removed when
/// `None`); every other writable member is kept exactly as read.
pub fn firewall_put_body(read: &Value, policy_id: Option<&str>) -> Value {
    let mut v = without_read_only(read, FIREWALL_READ_ONLY);
    if !v["properties"].is_object() {
        v["properties"] = json!({});
    }
    match policy_id {
        Some(id) => v["properties"]["firewallPolicy"] = json!({"id": id}),
        None => {
            if let Some(m) = v["properties"].as_object_mut() {
                m.remove("firewallPolicy");
            }
        }
    }
    v
}

/// Deep merge: objects merge key by key, anything else in `over` replaces `base`.
fn overlay(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(bv) if bv.is_object() && v.is_object() => overlay(bv, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// The PUT body of a managed policy: `desired` on top of what ARM returned (`actual`, when
/// the policy exists), so that writable settings netstep does not own (extra tags, DNS
/// servers, insights, ...) survive the update.
pub fn policy_put_body(desired: &Value, actual: Option<&Value>) -> Value {
    let Some(actual) = actual else {
        return desired.clone();
    };
    let mut v = without_read_only(actual, POLICY_READ_ONLY);
    if let Some(m) = v.as_object_mut() {
        m.remove("id");
    }
    overlay(&mut v, desired);
    v
}

/// The subset of a policy body the diff compares (location is checked apart: it cannot change).
pub fn policy_compared(desired: &Value) -> Value {
    let mut d = desired.clone();
    if let Some(m) = d.as_object_mut() {
        m.remove("location");
    }
    d
}

/// `westeurope` and `West Europe` are the same region.
pub fn same_region(a: &str, b: &str) -> bool {
    let n = |s: &str| {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase()
    };
    n(a) == n(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netstep::intent::{
        AppProtocol, AppProtocolType, ApplicationRule, NatRule, NetProtocol, NetworkRule,
    };
    use netstep::plan::diff;

    fn group() -> RuleCollectionGroup {
        RuleCollectionGroup {
            name: "rcg".into(),
            priority: 200,
            rule_collections: vec![
                FwRuleCollection {
                    name: "net".into(),
                    priority: 100,
                    kind: FwCollectionKind::Filter,
                    action: FwAction::Allow,
                    rules: vec![FwRule::Network(NetworkRule {
                        name: "dns".into(),
                        description: "Azure DNS".into(),
                        protocols: vec![NetProtocol::Udp, NetProtocol::Tcp],
                        source_addresses: vec!["10.0.0.0/8".into()],
                        destination_addresses: vec!["168.63.129.16".into()],
                        destination_ports: vec!["53".into()],
                        destination_fqdns: vec![],
                    })],
                },
                FwRuleCollection {
                    name: "web".into(),
                    priority: 200,
                    kind: FwCollectionKind::Filter,
                    action: FwAction::Deny,
                    rules: vec![FwRule::Application(ApplicationRule {
                        name: "wu".into(),
                        description: String::new(),
                        protocols: vec![AppProtocol {
                            kind: AppProtocolType::Https,
                            port: 443,
                        }],
                        source_addresses: vec!["*".into()],
                        target_fqdns: vec![],
                        fqdn_tags: vec!["WindowsUpdate".into()],
                    })],
                },
                FwRuleCollection {
                    name: "dnat".into(),
                    priority: 300,
                    kind: FwCollectionKind::Nat,
                    action: FwAction::Dnat,
                    rules: vec![FwRule::Nat(NatRule {
                        name: "ssh".into(),
                        description: String::new(),
                        protocols: vec![NetProtocol::Tcp],
                        source_addresses: vec!["*".into()],
                        destination_addresses: vec!["20.1.2.3".into()],
                        destination_ports: vec!["2222".into()],
                        translated_address: "10.1.16.4".into(),
                        translated_port: "22".into(),
                    })],
                },
            ],
        }
    }

    #[test]
    fn rule_collection_group_has_the_spec_discriminators_and_member_names() {
        let b = rule_collection_group(&group());
        let rc = &b["properties"]["ruleCollections"];
        assert_eq!(b["properties"]["priority"], 200);
        assert_eq!(
            rc[0]["ruleCollectionType"],
            "FirewallPolicyFilterRuleCollection"
        );
        assert_eq!(rc[0]["action"]["type"], "Allow");
        assert_eq!(rc[0]["rules"][0]["ruleType"], "NetworkRule");
        assert_eq!(rc[0]["rules"][0]["ipProtocols"], json!(["UDP", "TCP"]));
        assert_eq!(rc[0]["rules"][0]["description"], "Azure DNS");
        assert_eq!(rc[1]["rules"][0]["ruleType"], "ApplicationRule");
        assert_eq!(
            rc[1]["rules"][0]["protocols"],
            json!([{"protocolType": "Https", "port": 443}])
        );
        assert!(rc[1]["rules"][0].get("description").is_none());
        assert_eq!(
            rc[2]["ruleCollectionType"],
            "FirewallPolicyNatRuleCollection"
        );
        assert_eq!(rc[2]["action"]["type"], "DNAT");
        assert_eq!(rc[2]["rules"][0]["translatedPort"], "22");
    }

    #[test]
    fn create_fields_show_one_line_per_rule_field() {
        let f = rcg_create_fields(&rule_collection_group(&group()));
        let paths: Vec<&str> = f.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths[0], "properties.priority");
        assert!(paths.contains(&"properties.ruleCollections[dnat]"));
        let ports = f
            .iter()
            .find(|c| c.path == "properties.ruleCollections[net].rules[dns].destinationPorts")
            .unwrap();
        assert_eq!(ports.new, Some(json!(["53"])));
        // Empty lists are not shown.
        assert!(!paths.contains(&"properties.ruleCollections[net].rules[dns].destinationFqdns"));
        assert!(f.iter().all(|c| c.old.is_none()));
    }

    #[test]
    fn arm_answer_with_extras_and_reordering_is_no_change() {
        let ours = rule_collection_group(&group());
        let mut arm = ours.clone();
        arm["id"] = json!("/subscriptions/s/x");
        arm["etag"] = json!("W/\"1\"");
        arm["properties"]["provisioningState"] = json!("Succeeded");
        let rcs = arm["properties"]["ruleCollections"].as_array_mut().unwrap();
        rcs.reverse();
        // ARM fills defaults we never send and answers null descriptions.
        rcs[0]["rules"][0]["sourceIpGroups"] = json!([]);
        rcs[1]["rules"][0]["description"] = Value::Null;
        rcs[1]["rules"][0]["targetFqdns"] = Value::Null;
        rcs[1]["rules"][0]["terminateTLS"] = json!(false);
        rcs[2]["rules"][0]["ipProtocols"] = json!(["TCP", "UDP"]);
        rcs[2]["rules"][0]
            .as_object_mut()
            .unwrap()
            .remove("destinationFqdns");
        assert!(
            diff(&rcg_owned_view(&ours), &rcg_owned_view(&arm)).is_empty(),
            "{:?}",
            diff(&rcg_owned_view(&ours), &rcg_owned_view(&arm))
        );
    }

    #[test]
    fn one_changed_rule_field_is_named_exactly() {
        let ours = rule_collection_group(&group());
        let mut arm = ours.clone();
        arm["properties"]["ruleCollections"][0]["rules"][0]["destinationPorts"] = json!(["5353"]);
        // A field we do not own, set out of band, does not count.
        arm["properties"]["ruleCollections"][0]["rules"][0]["sourceIpGroups"] = json!(["/x"]);
        let f = diff(&rcg_owned_view(&ours), &rcg_owned_view(&arm));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            f[0].path,
            "properties.ruleCollections[net].rules[dns].destinationPorts"
        );
        assert_eq!(f[0].old, Some(json!(["5353"])));
        assert_eq!(f[0].new, Some(json!(["53"])));
        // A rule added out of band in a group we own is drift too.
        let mut arm2 = ours.clone();
        arm2["properties"]["ruleCollections"][0]["rules"]
            .as_array_mut()
            .unwrap()
            .push(json!({"ruleType": "NetworkRule", "name": "extra"}));
        let f = diff(&rcg_owned_view(&ours), &rcg_owned_view(&arm2));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].path, "properties.ruleCollections[net].rules[extra]");
        assert_eq!(f[0].new, None);
    }

    #[test]
    fn firewall_put_keeps_everything_writable_and_sets_only_the_policy() {
        let read = json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/azureFirewalls/afw",
            "name": "afw", "type": "Microsoft.Network/azureFirewalls", "etag": "W/\"3\"",
            "location": "eastus", "zones": ["1"], "tags": {"costcenter": "cc-4711"},
            "properties": {
                "provisioningState": "Succeeded",
                "sku": {"name": "AZFW_VNet", "tier": "Standard"},
                "threatIntelMode": "Deny",
                "additionalProperties": {"Network.SNAT.PrivateRanges": "IANAPrivateRanges"},
                "ipConfigurations": [{"name": "ipconfig1", "id": "/x/ipc", "etag": "W/\"3\"",
                    "type": "Microsoft.Network/azureFirewalls/azureFirewallIpConfigurations",
                    "properties": {"privateIPAddress": "10.1.0.4", "provisioningState": "Succeeded",
                        "subnet": {"id": "/s"}, "publicIPAddress": {"id": "/p"}}}],
            }
        });
        let b = firewall_put_body(&read, Some("/subscriptions/s/fwp"));
        assert_eq!(
            b["properties"]["firewallPolicy"]["id"],
            "/subscriptions/s/fwp"
        );
        assert_eq!(b["properties"]["threatIntelMode"], "Deny");
        assert_eq!(b["tags"], read["tags"]);
        assert_eq!(b["zones"], read["zones"]);
        assert_eq!(
            b["properties"]["additionalProperties"],
            read["properties"]["additionalProperties"]
        );
        let ipc = &b["properties"]["ipConfigurations"][0];
        assert_eq!(ipc["properties"]["subnet"]["id"], "/s");
        assert!(ipc.get("etag").is_none() && ipc["properties"].get("privateIPAddress").is_none());
        assert!(b.get("etag").is_none() && b["properties"].get("provisioningState").is_none());
        // Everything else is exactly as read.
        let mut expect = without_read_only(&read, FIREWALL_READ_ONLY);
        expect["properties"]["firewallPolicy"] = json!({"id": "/subscriptions/s/fwp"});
        assert_eq!(b, expect);
        let none = firewall_put_body(&b, None);
        assert!(none["properties"].get("firewallPolicy").is_none());
    }

    #[test]
    fn policy_update_keeps_foreign_writable_settings() {
        let desired = json!({"location": "westeurope", "tags": {"managed-by": "netstep"},
            "properties": {"sku": {"tier": "Standard"}, "threatIntelMode": "Alert",
                "dnsSettings": {"enableProxy": true}}});
        let actual = json!({"id": "/p", "name": "p", "etag": "x", "location": "westeurope",
            "tags": {"managed-by": "netstep", "owner": "secops"},
            "properties": {"sku": {"tier": "Standard"}, "threatIntelMode": "Deny",
                "dnsSettings": {"enableProxy": false, "servers": ["10.0.0.5"]},
                "provisioningState": "Succeeded", "childPolicies": [{"id": "/c"}],
                "ruleCollectionGroups": [{"id": "/r"}]}});
        let b = policy_put_body(&desired, Some(&actual));
        assert_eq!(b["tags"]["owner"], "secops");
        assert_eq!(b["properties"]["threatIntelMode"], "Alert");
        assert_eq!(
            b["properties"]["dnsSettings"],
            json!({"enableProxy": true, "servers": ["10.0.0.5"]})
        );
        for k in ["provisioningState", "childPolicies", "ruleCollectionGroups"] {
            assert!(b["properties"].get(k).is_none(), "{k}");
        }
        assert!(b.get("etag").is_none() && b.get("id").is_none());
        assert_eq!(policy_put_body(&desired, None), desired);
    }

    #[test]
    fn regions_compare_loosely() {
        assert!(same_region("West Europe", "westeurope"));
        assert!(!same_region("westus", "westus2"));
    }
}
