//! Azure Policy for dynamic group membership: deterministic names, the desired definition and
//! assignment bodies, and the *semantic* comparison that keeps ARM's rewrites from showing up
//! as drift.
//!
//! ARM echoes a policy definition back with its own additions: `metadata.createdBy`,
//! `createdOn`, `updatedBy`, `updatedOn`, a normalized `policyType`, `parameters: {}`,
//! `version`/`versions`, `systemData`, keys in another order, resource ids in another case.
//! Terraform's azurerm provider famously reports such differences as drift on every plan.
//! netstep compares only what it owns: `displayName`, `description`, `mode` (case-insensitive,
//! as ARM treats it), the metadata keys it sets, and the `policyRule` as canonical JSON (key
//! order ignored, `allOf`/`anyOf` as sets, ids case-insensitive, numbers by value; but an
//! extra or missing key inside the rule IS a change, since netstep owns the whole rule).

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use netstep::intent::ResolvedGroup;
use netstep::plan::{self, FieldChange};
use netstep::resources::{self, MANAGED_MARKER, MANAGED_TAG, TagCondition};

/// Maximum length of a policy definition name (ARM).
pub const DEFINITION_NAME_MAX: usize = 64;
/// Maximum length of a policy assignment name at subscription or resource group scope.
pub const ASSIGNMENT_NAME_MAX: usize = 64;
/// Maximum length of a policy assignment name at management group scope.
pub const MG_ASSIGNMENT_NAME_MAX: usize = 24;
/// Metadata key naming the network manager a policy belongs to (ownership filter).
pub const META_NETWORK_MANAGER: &str = "networkManagerId";
/// Metadata key naming the network group a policy fills.
pub const META_NETWORK_GROUP: &str = "networkGroup";

/// An ARM-safe deterministic name: `base` itself when it fits `max` and uses only letters,
/// digits, `-` and `_`; otherwise a cleaned prefix plus `-` and 8 hex digits of the SHA-256 of
/// `base` (so two long names never collide on their common prefix).
pub fn arm_name(base: &str, max: usize) -> String {
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean == base && base.len() <= max {
        return clean;
    }
    let hash = hex::encode(Sha256::digest(base.as_bytes()));
    let keep = max.saturating_sub(9);
    let prefix: String = clean.chars().take(keep).collect();
    let prefix = prefix.trim_end_matches(['-', '_']);
    if prefix.is_empty() {
        hash[..max.min(hash.len())].to_string()
    } else {
        format!("{prefix}-{}", &hash[..8])
    }
}

/// A policy scope: a subscription or a management group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PolicyScope {
    /// `/subscriptions/{id}`.
    Subscription(String),
    /// `/providers/Microsoft.Management/managementGroups/{name}`.
    ManagementGroup(String),
}

impl PolicyScope {
    /// The scope's ARM id.
    pub fn id(&self) -> String {
        match self {
            PolicyScope::Subscription(s) => resources::subscription_id(s),
            PolicyScope::ManagementGroup(m) => management_group_id(m),
        }
    }

    /// Deterministic definition name for a group of a network manager.
    pub fn definition_name(&self, nm: &str, group: &str) -> String {
        arm_name(&format!("netstep-{nm}-{group}"), DEFINITION_NAME_MAX)
    }

    /// Deterministic assignment name (management group scope allows only 24 characters).
    pub fn assignment_name(&self, nm: &str, group: &str) -> String {
        let max = match self {
            PolicyScope::Subscription(_) => ASSIGNMENT_NAME_MAX,
            PolicyScope::ManagementGroup(_) => MG_ASSIGNMENT_NAME_MAX,
        };
        arm_name(&format!("netstep-{nm}-{group}"), max)
    }

    /// The definitions collection at this scope, filtered to those defined exactly here (no
    /// built-ins, nothing inherited from management groups above).
    pub fn definitions_list_path(&self) -> String {
        format!(
            "{}/providers/Microsoft.Authorization/policyDefinitions?$filter=atExactScope()",
            self.id()
        )
    }

    /// The assignments collection at this scope, filtered to those assigned exactly here.
    pub fn assignments_list_path(&self) -> String {
        format!(
            "{}/providers/Microsoft.Authorization/policyAssignments?$filter=atExactScope()",
            self.id()
        )
    }

    /// Id of a definition at this scope.
    pub fn definition_id(&self, name: &str) -> String {
        format!(
            "{}/providers/Microsoft.Authorization/policyDefinitions/{name}",
            self.id()
        )
    }

    /// Id of an assignment at this scope.
    pub fn assignment_id(&self, name: &str) -> String {
        resources::policy_assignment_id(&self.id(), name)
    }
}

/// `/providers/Microsoft.Management/managementGroups/{name}`.
pub fn management_group_id(name: &str) -> String {
    format!("/providers/Microsoft.Management/managementGroups/{name}")
}

/// The desired definition of a group's dynamic membership (`None` for a static-only group).
/// The rule's `if` is exactly [`ResolvedGroup::policy_condition`].
pub fn definition_body(nm_name: &str, nm_id: &str, group: &ResolvedGroup) -> Option<Value> {
    let condition = group.policy_condition()?;
    let conditions: Vec<TagCondition> = group
        .conditions
        .iter()
        .map(|c| TagCondition {
            key: c.tag.clone(),
            equals: c.equals.clone(),
        })
        .collect();
    let mut body = resources::membership_policy_definition(
        &display_name(nm_name, &group.name),
        &group.id,
        &conditions,
        group.region.as_deref(),
    );
    // One source of truth for the condition (the builder produces the same shape).
    body["properties"]["policyRule"]["if"] = condition;
    let md = &mut body["properties"]["metadata"];
    md[META_NETWORK_MANAGER] = json!(nm_id);
    md[META_NETWORK_GROUP] = json!(group.name);
    Some(body)
}

/// The desired assignment of a definition.
pub fn assignment_body(nm_name: &str, nm_id: &str, group: &str, definition_id: &str) -> Value {
    let mut body = resources::policy_assignment(&display_name(nm_name, group), definition_id);
    body["properties"]["description"] = json!(format!(
        "Dynamic membership of network group {group} of {nm_name} {MANAGED_MARKER}"
    ));
    let md = &mut body["properties"]["metadata"];
    md[META_NETWORK_MANAGER] = json!(nm_id);
    md[META_NETWORK_GROUP] = json!(group);
    body
}

fn display_name(nm: &str, group: &str) -> String {
    let s = format!("netstep {nm} {group} membership");
    s.chars().take(128).collect()
}

/// Whether a policy definition or assignment belongs to netstep AND to this network manager.
pub fn is_ours(resource: &Value, nm_id: &str) -> bool {
    let md = resource.pointer("/properties/metadata");
    md.and_then(|m| m.get("managedBy")).and_then(Value::as_str) == Some(MANAGED_TAG.1)
        && md
            .and_then(|m| m.get(META_NETWORK_MANAGER))
            .and_then(Value::as_str)
            .is_some_and(|id| id.eq_ignore_ascii_case(nm_id))
}

/// The network group a managed policy resource fills (from its metadata).
pub fn group_of(resource: &Value) -> Option<&str> {
    resource
        .pointer(&format!("/properties/metadata/{META_NETWORK_GROUP}"))
        .and_then(Value::as_str)
}

/// Differences between a desired definition and ARM's answer, over what netstep owns only.
pub fn definition_diff(desired: &Value, actual: &Value) -> Vec<FieldChange> {
    let d = &desired["properties"];
    let a = &actual["properties"];
    let mut owned = Map::new();
    for k in ["displayName", "description", "metadata"] {
        if let Some(v) = d.get(k) {
            owned.insert(k.to_string(), v.clone());
        }
    }
    let mut out = plan::diff(&json!({ "properties": owned }), actual);
    let (dm, am) = (d["mode"].as_str(), a["mode"].as_str());
    if let Some(dm) = dm
        && !am.is_some_and(|am| am.eq_ignore_ascii_case(dm))
    {
        out.push(FieldChange {
            path: "properties.mode".into(),
            old: am.map(|s| json!(s)),
            new: Some(json!(dm)),
        });
    }
    let (dr, ar) = (&d["policyRule"], &a["policyRule"]);
    if !rule_equal(dr, ar) {
        // Name the fields when the subset diff can; otherwise (an extra key or element in
        // ARM's rule) show the whole rule.
        let detail: Vec<FieldChange> = plan::diff(dr, ar)
            .into_iter()
            .map(|mut f| {
                f.path = format!("properties.policyRule.{}", f.path);
                f
            })
            .collect();
        if detail.is_empty() {
            out.push(FieldChange {
                path: "properties.policyRule".into(),
                old: (!ar.is_null()).then(|| ar.clone()),
                new: Some(dr.clone()),
            });
        } else {
            out.extend(detail);
        }
    }
    out
}

/// Differences between a desired assignment and ARM's answer (owned fields; metadata keys ARM
/// adds are ignored; the definition id compares case-insensitively).
pub fn assignment_diff(desired: &Value, actual: &Value) -> Vec<FieldChange> {
    plan::diff(desired, actual)
}

/// Canonical equality of two policy rules: objects have the same keys (order ignored) with
/// equal values; arrays are multisets (`allOf`/`anyOf` operands commute); resource ids compare
/// case-insensitively; numbers by value.
pub fn rule_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| rule_equal(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return false;
            }
            let mut used = vec![false; y.len()];
            x.iter().all(
                |v| match (0..y.len()).find(|&i| !used[i] && rule_equal(v, &y[i])) {
                    Some(i) => {
                        used[i] = true;
                        true
                    }
                    None => false,
                },
            )
        }
        (Value::String(x), Value::String(y)) => {
            if x.starts_with('/') || y.starts_with('/') {
                x.eq_ignore_ascii_case(y)
            } else {
                x == y
            }
        }
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netstep::intent::TagCondition as IntentCondition;

    fn group(region: Option<&str>) -> ResolvedGroup {
        ResolvedGroup {
            name: "all-prod-spokes".into(),
            id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkManagers/nm/networkGroups/all-prod-spokes".into(),
            description: String::new(),
            conditions: vec![IntentCondition {
                tag: "env".into(),
                equals: "prod".into(),
            }],
            region: region.map(str::to_string),
            static_members: vec![],
            derived_from: None,
        }
    }

    const NM: &str =
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkManagers/nm";

    /// What ARM answers after a PUT of `desired`: keys reordered, ids upper-cased, its own
    /// metadata, a normalized policyType, empty parameters, versions and systemData.
    fn as_arm_returns_it(desired: &Value) -> Value {
        let p = &desired["properties"];
        let rule = &p["policyRule"];
        let gid = rule["then"]["details"]["networkGroupId"]
            .as_str()
            .unwrap()
            .replace("resourceGroups", "resourcegroups")
            .replace("/rg/", "/RG/");
        let mut allof: Vec<Value> = rule["if"]["allOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| json!({"equals": c["equals"], "field": c["field"]}))
            .collect();
        allof.reverse();
        let mut md = serde_json::Map::new();
        md.insert("updatedOn".into(), json!("2026-11-26T10:00:00Z"));
        md.insert("createdBy".into(), json!("00000000-aaaa"));
        md.insert("createdOn".into(), json!("2026-11-26T09:00:00Z"));
        md.insert("updatedBy".into(), json!("00000000-bbbb"));
        for (k, v) in p["metadata"].as_object().unwrap().iter().rev() {
            md.insert(k.clone(), v.clone());
        }
        json!({
            "type": "Microsoft.Authorization/policyDefinitions",
            "systemData": {"createdBy": "x", "createdAt": "2026-11-26T09:00:00Z"},
            "properties": {
                "versions": ["1.0.0"],
                "version": "1.0.0",
                "parameters": {},
                "policyRule": {
                    "then": {"details": {"networkGroupId": gid}, "effect": "addToNetworkGroup"},
                    "if": {"allOf": allof},
                },
                "metadata": md,
                "mode": "microsoft.network.data",
                "description": p["description"],
                "displayName": p["displayName"],
                "policyType": "Custom",
            },
            "name": "netstep-nm-all-prod-spokes",
            "id": "/subscriptions/S/providers/Microsoft.Authorization/policyDefinitions/netstep-nm-all-prod-spokes",
        })
    }

    #[test]
    fn arm_rewrites_of_a_definition_are_not_drift() {
        for region in [None, Some("eastus")] {
            let d = definition_body("nm", NM, &group(region)).unwrap();
            let a = as_arm_returns_it(&d);
            assert_eq!(definition_diff(&d, &a), vec![], "{a:#}");
        }
    }

    #[test]
    fn real_definition_changes_are_drift() {
        let d = definition_body("nm", NM, &group(None)).unwrap();
        // The tag value changed behind our back.
        let mut a = as_arm_returns_it(&d);
        a["properties"]["policyRule"]["if"]["allOf"][0]["equals"] = json!("nonprod");
        let f = definition_diff(&d, &a);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].path.starts_with("properties.policyRule.if.allOf"),
            "{f:?}"
        );
        // An extra condition in the rule (netstep owns the whole rule).
        let mut a = as_arm_returns_it(&d);
        a["properties"]["policyRule"]["if"]["allOf"]
            .as_array_mut()
            .unwrap()
            .push(json!({"field": "location", "equals": "eastus"}));
        let f = definition_diff(&d, &a);
        assert_eq!(f.len(), 1, "{f:?}");
        // An extra key inside an object of the rule.
        let mut a = as_arm_returns_it(&d);
        a["properties"]["policyRule"]["then"]["details"]["extra"] = json!(1);
        let f = definition_diff(&d, &a);
        assert_eq!(f[0].path, "properties.policyRule", "{f:?}");
        // Mode, display name, our metadata.
        let mut a = as_arm_returns_it(&d);
        a["properties"]["mode"] = json!("All");
        a["properties"]["displayName"] = json!("x");
        a["properties"]["metadata"]["managedBy"] = json!("someone");
        let paths: Vec<String> = definition_diff(&d, &a)
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(
            paths,
            vec![
                "properties.displayName",
                "properties.metadata.managedBy",
                "properties.mode"
            ]
        );
    }

    #[test]
    fn the_rule_is_the_groups_policy_condition() {
        let g = group(Some("eastus"));
        let d = definition_body("nm", NM, &g).unwrap();
        assert_eq!(
            d["properties"]["policyRule"]["if"],
            g.policy_condition().unwrap()
        );
        // The core builder produces the same condition.
        let built = resources::membership_policy_definition(
            "x",
            &g.id,
            &[TagCondition {
                key: "env".into(),
                equals: "prod".into(),
            }],
            Some("eastus"),
        );
        assert_eq!(
            built["properties"]["policyRule"]["if"],
            d["properties"]["policyRule"]["if"]
        );
        assert_eq!(d["properties"]["mode"], "Microsoft.Network.Data");
        assert_eq!(
            d["properties"]["policyRule"]["then"]["effect"],
            "addToNetworkGroup"
        );
        assert!(is_ours(&d, &NM.to_uppercase()));
        assert!(!is_ours(&d, "/subscriptions/s/other"));
        let mut static_only = g.clone();
        static_only.conditions.clear();
        assert!(definition_body("nm", NM, &static_only).is_none());
    }

    #[test]
    fn assignment_metadata_added_by_arm_is_not_drift() {
        let d = assignment_body(
            "nm",
            NM,
            "g",
            "/subscriptions/s/providers/Microsoft.Authorization/policyDefinitions/netstep-nm-g",
        );
        let mut a = d.clone();
        a["properties"]["metadata"]["createdBy"] = json!("x");
        a["properties"]["policyDefinitionId"] = json!(
            "/subscriptions/S/providers/microsoft.authorization/policyDefinitions/netstep-nm-g"
        );
        a["properties"]["notScopes"] = json!([]);
        a["properties"]["scope"] = json!("/subscriptions/s");
        assert!(assignment_diff(&d, &a).is_empty());
        a["properties"]["enforcementMode"] = json!("DoNotEnforce");
        assert_eq!(assignment_diff(&d, &a).len(), 1);
    }

    #[test]
    fn names_fit_arm_limits_and_stay_deterministic() {
        assert_eq!(arm_name("netstep-nm-g", 64), "netstep-nm-g");
        let long = format!("netstep-avnm-globojava-{}", "x".repeat(60));
        let n = arm_name(&long, 64);
        assert_eq!(n.len(), 64, "{n}");
        assert_eq!(n, arm_name(&long, 64));
        assert_ne!(n, arm_name(&format!("{long}y"), 64));
        let mg = PolicyScope::ManagementGroup("mg".into());
        let a = mg.assignment_name("avnm-globojava", "all-prod-spokes");
        assert!(a.len() <= 24, "{a}");
        // Characters policy names refuse are replaced, and the hash keeps names distinct.
        let dotted = arm_name("netstep-nm-a.b", 64);
        assert!(!dotted.contains('.'), "{dotted}");
        assert_ne!(dotted, arm_name("netstep-nm-a-b", 64));
        assert_eq!(
            PolicyScope::Subscription("s".into()).definitions_list_path(),
            "/subscriptions/s/providers/Microsoft.Authorization/policyDefinitions?$filter=atExactScope()"
        );
    }
}
