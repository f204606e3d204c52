//! Plan and diff: desired ARM bodies against what ARM returned, field by field.
//!
//! The comparison is *semantic*, the way ARM behaves, so that an unchanged intent never shows
//! false drift:
//! - only fields present in the desired body are compared: ARM adds read-only fields
//!   (`provisioningState`, `resourceGuid`, `etag`, `systemData`, ...) that the intent never sets;
//! - strings that are ARM resource ids (`/subscriptions/...`) compare case-insensitively, as ARM
//!   does (it may answer `resourcegroups` for `resourceGroups`);
//! - numbers compare by value (`1` equals `1.0`);
//! - arrays are unordered sets in every resource netstep manages: arrays of objects that carry a
//!   `name` are matched by name (so one changed rule shows as one changed field), other arrays
//!   compare as sorted multisets of their canonical JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a plan does to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The resource does not exist and will be created.
    Create,
    /// The resource exists and some fields differ.
    Update,
    /// A managed resource the intent dropped (only with `--prune`).
    Delete,
}

impl Action {
    fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Delete => "-",
        }
    }
}

/// One differing field: its dotted path and the old and new values (`None` = absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// Dotted path, e.g. `properties.priority` or `properties.rules[deny-prod].priority`.
    pub path: String,
    /// Value in Azure now (`None` when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    /// Value the intent wants (`None` when it must go away).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

/// A planned change to one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceChange {
    /// create, update or delete.
    pub action: Action,
    /// The ARM resource id.
    pub resource_id: String,
    /// The ARM type, e.g. `Microsoft.Network/networkManagers/networkGroups`.
    pub resource_type: String,
    /// The differing fields (for create: the fields set; for delete: empty).
    pub fields: Vec<FieldChange>,
}

/// Compares a desired body with the actual one. Returns the differing fields; empty when equal.
pub fn diff(desired: &Value, actual: &Value) -> Vec<FieldChange> {
    let mut out = Vec::new();
    diff_at("", desired, Some(actual), &mut out);
    out
}

/// The plan of one resource: `None` when nothing changes, `Create` when `actual` is `None`,
/// `Update` with the differing fields otherwise.
pub fn plan_resource(
    resource_id: &str,
    resource_type: &str,
    desired: &Value,
    actual: Option<&Value>,
) -> Option<ResourceChange> {
    match actual {
        None => Some(ResourceChange {
            action: Action::Create,
            resource_id: resource_id.to_string(),
            resource_type: resource_type.to_string(),
            fields: leaves("", desired),
        }),
        Some(actual) => {
            let fields = diff(desired, actual);
            (!fields.is_empty()).then(|| ResourceChange {
                action: Action::Update,
                resource_id: resource_id.to_string(),
                resource_type: resource_type.to_string(),
                fields,
            })
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn leaves(prefix: &str, v: &Value) -> Vec<FieldChange> {
    match v {
        Value::Object(m) if !m.is_empty() => m
            .iter()
            .flat_map(|(k, v)| leaves(&join(prefix, k), v))
            .collect(),
        _ => vec![FieldChange {
            path: prefix.to_string(),
            old: None,
            new: Some(v.clone()),
        }],
    }
}

fn diff_at(path: &str, desired: &Value, actual: Option<&Value>, out: &mut Vec<FieldChange>) {
    match (desired, actual) {
        (Value::Object(d), Some(Value::Object(a))) => {
            for (k, dv) in d {
                diff_at(&join(path, k), dv, a.get(k), out);
            }
        }
        (Value::Null, None) => {}
        (Value::Array(d), Some(Value::Array(a))) if keyed_by_name(d) && keyed_by_name(a) => {
            let index: BTreeMap<String, &Value> =
                a.iter().filter_map(|v| Some((name_of(v)?, v))).collect();
            let mut seen = std::collections::BTreeSet::new();
            for dv in d {
                let name = name_of(dv).unwrap_or_default();
                seen.insert(name.clone());
                let p = format!("{path}[{name}]");
                match index.get(&name) {
                    Some(av) => diff_at(&p, dv, Some(av), out),
                    None => out.push(FieldChange {
                        path: p,
                        old: None,
                        new: Some(dv.clone()),
                    }),
                }
            }
            for (name, av) in &index {
                if !seen.contains(name) {
                    out.push(FieldChange {
                        path: format!("{path}[{name}]"),
                        old: Some((*av).clone()),
                        new: None,
                    });
                }
            }
        }
        (d, Some(a)) => {
            if !equivalent(d, a) {
                out.push(FieldChange {
                    path: path.to_string(),
                    old: Some(a.clone()),
                    new: Some(d.clone()),
                });
            }
        }
        (d, None) => out.push(FieldChange {
            path: path.to_string(),
            old: None,
            new: Some(d.clone()),
        }),
    }
}

fn name_of(v: &Value) -> Option<String> {
    v.get("name")?.as_str().map(str::to_string)
}

fn keyed_by_name(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(|v| name_of(v).is_some())
}

/// Semantic equality of two JSON values, as described in the module docs. For objects only the
/// keys of `desired` count (a recursive subset check).
pub fn equivalent(desired: &Value, actual: &Value) -> bool {
    match (desired, actual) {
        (Value::String(d), Value::String(a)) => {
            if is_resource_id(d) || is_resource_id(a) {
                d.eq_ignore_ascii_case(a)
            } else {
                d == a
            }
        }
        (Value::Number(d), Value::Number(a)) => d.as_f64() == a.as_f64(),
        (Value::Object(d), Value::Object(a)) => d.iter().all(|(k, dv)| match a.get(k) {
            Some(av) => equivalent(dv, av),
            None => dv.is_null(),
        }),
        (Value::Array(d), Value::Array(a)) => {
            if d.len() != a.len() {
                return false;
            }
            if keyed_by_name(d) && keyed_by_name(a) {
                let index: BTreeMap<String, &Value> =
                    a.iter().filter_map(|v| Some((name_of(v)?, v))).collect();
                return d.iter().all(|dv| {
                    name_of(dv)
                        .and_then(|n| index.get(&n).copied())
                        .is_some_and(|av| equivalent(dv, av))
                });
            }
            // Unordered: every desired element matches a distinct actual element.
            let mut used = vec![false; a.len()];
            d.iter().all(
                |dv| match (0..a.len()).find(|&i| !used[i] && equivalent(dv, &a[i])) {
                    Some(i) => {
                        used[i] = true;
                        true
                    }
                    None => false,
                },
            )
        }
        (d, a) => d == a,
    }
}

fn is_resource_id(s: &str) -> bool {
    s.len() > 15 && s[..15].eq_ignore_ascii_case("/subscriptions/")
}

/// A step's whole plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Resource changes in the order they will be applied.
    pub changes: Vec<ResourceChange>,
    /// Extra lines (e.g. per-region commit goal-state changes) shown after the resources.
    pub notes: Vec<String>,
}

impl Plan {
    /// Adds a change when there is one.
    pub fn push(&mut self, change: Option<ResourceChange>) {
        if let Some(c) = change {
            self.changes.push(c);
        }
    }

    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.notes.is_empty()
    }

    /// Counts of create, update and delete.
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |a| self.changes.iter().filter(|c| c.action == a).count();
        (n(Action::Create), n(Action::Update), n(Action::Delete))
    }

    /// Renders the plan the way a Terraform user reads it at a glance.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for c in &self.changes {
            let _ = writeln!(
                s,
                "  {} {:<6} {} ({})",
                c.action.symbol(),
                format!("{:?}", c.action).to_lowercase(),
                short_id(&c.resource_id),
                c.resource_type
            );
            for f in &c.fields {
                let show = |v: &Option<Value>| match v {
                    None => "(absent)".to_string(),
                    Some(v) => compact(v),
                };
                match c.action {
                    Action::Create => {
                        let _ = writeln!(s, "      {}: {}", f.path, show(&f.new));
                    }
                    _ => {
                        let _ =
                            writeln!(s, "      {}: {} -> {}", f.path, show(&f.old), show(&f.new));
                    }
                }
            }
        }
        for n in &self.notes {
            let _ = writeln!(s, "  * {n}");
        }
        let (c, u, d) = self.counts();
        if self.is_empty() {
            s.push_str("No changes. Azure matches the intent.\n");
        } else {
            let _ = writeln!(s, "Plan: {c} to create, {u} to update, {d} to delete.");
        }
        s
    }
}

fn compact(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 120 {
        let cut = (0..=117)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        format!("{}...", &s[..cut])
    } else {
        s
    }
}

/// Shortens an ARM id to what follows `/providers/` (the readable part), or returns it whole.
pub fn short_id(id: &str) -> &str {
    match id.rfind("/providers/") {
        Some(i) => {
            let rest = &id[i + "/providers/".len()..];
            // Skip the namespace (`Microsoft.Network/`).
            rest.split_once('/').map_or(rest, |(_, r)| r)
        }
        None => id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn read_only_fields_in_actual_are_ignored() {
        let desired =
            json!({"properties": {"description": "env=prod", "memberType": "VirtualNetwork"}});
        let actual = json!({"id": "/x", "etag": "\"1\"", "properties": {"description": "env=prod",
            "memberType": "VirtualNetwork", "provisioningState": "Succeeded", "resourceGuid": "g"}});
        assert!(diff(&desired, &actual).is_empty());
    }

    #[test]
    fn changed_scalar_is_reported_with_old_and_new() {
        let d = json!({"properties": {"priority": 110}});
        let a = json!({"properties": {"priority": 100}});
        assert_eq!(
            diff(&d, &a),
            vec![FieldChange {
                path: "properties.priority".into(),
                old: Some(json!(100)),
                new: Some(json!(110))
            }]
        );
    }

    #[test]
    fn resource_ids_compare_case_insensitively_and_numbers_by_value() {
        let d = json!({"id": "/subscriptions/S/resourceGroups/RG/providers/X", "n": 1});
        let a = json!({"id": "/subscriptions/s/resourcegroups/rg/providers/x", "n": 1.0});
        assert!(diff(&d, &a).is_empty());
        // Other strings are case-sensitive.
        assert_eq!(diff(&json!({"a": "Deny"}), &json!({"a": "deny"})).len(), 1);
    }

    #[test]
    fn scalar_arrays_are_sets() {
        let d = json!({"p": ["10.0.0.0/16", "10.1.0.0/16"]});
        assert!(diff(&d, &json!({"p": ["10.1.0.0/16", "10.0.0.0/16"]})).is_empty());
        assert_eq!(diff(&d, &json!({"p": ["10.1.0.0/16"]})).len(), 1);
        // Multisets: duplicates count.
        assert_eq!(diff(&json!(["a", "a"]), &json!(["a", "b"])).len(), 1);
    }

    #[test]
    fn named_arrays_match_by_name_so_one_rule_change_is_one_field() {
        let d = json!({"rules": [{"name": "a", "priority": 1}, {"name": "b", "priority": 3}]});
        let a = json!({"rules": [{"name": "b", "priority": 2}, {"name": "a", "priority": 1}, {"name": "c"}]});
        let f = diff(&d, &a);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[0].path, "rules[b].priority");
        assert_eq!(f[1].path, "rules[c]");
        assert_eq!(f[1].new, None);
    }

    #[test]
    fn missing_field_in_actual_is_a_change_and_null_means_absent() {
        let f = diff(&json!({"tags": {"env": "prod"}}), &json!({"tags": {}}));
        assert_eq!(f[0].path, "tags.env");
        assert_eq!(f[0].old, None);
        assert!(diff(&json!({"x": null}), &json!({})).is_empty());
    }

    #[test]
    fn plan_resource_create_update_noop() {
        let d = json!({"properties": {"a": 1}});
        let c = plan_resource("/subscriptions/s/x", "T", &d, None).unwrap();
        assert_eq!(c.action, Action::Create);
        assert_eq!(c.fields[0].path, "properties.a");
        assert!(plan_resource("/subscriptions/s/x", "T", &d, Some(&d)).is_none());
        let u = plan_resource(
            "/subscriptions/s/x",
            "T",
            &d,
            Some(&json!({"properties": {"a": 2}})),
        );
        assert_eq!(u.unwrap().action, Action::Update);
    }

    #[test]
    fn render_reads_like_terraform() {
        let mut p = Plan::default();
        p.push(plan_resource(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkManagers/nm/networkGroups/g",
            "Microsoft.Network/networkManagers/networkGroups",
            &json!({"properties": {"description": "x"}}),
            Some(&json!({"properties": {"description": "y"}})),
        ));
        p.notes
            .push("commit Connectivity in eastus: + cc-hub-mesh".into());
        let r = p.render();
        assert!(
            r.contains("~ update networkManagers/nm/networkGroups/g"),
            "{r}"
        );
        assert!(r.contains("properties.description: \"y\" -> \"x\""), "{r}");
        assert!(
            r.contains("Plan: 0 to create, 1 to update, 0 to delete."),
            "{r}"
        );
        assert!(Plan::default().render().contains("No changes."));
    }
}
