//! Azure Policy condition evaluation for `Microsoft.Network.Data` / `addToNetworkGroup`
//! definitions: which VNets the policy engine puts into a network group, and when.

use std::time::Instant;

use serde_json::Value;

use crate::core::Inner;
use crate::model::Kind;
use crate::store::Res;

const OPERATORS: &[&str] = &[
    "equals",
    "notEquals",
    "like",
    "notLike",
    "match",
    "notMatch",
    "matchInsensitively",
    "notMatchInsensitively",
    "contains",
    "notContains",
    "in",
    "notIn",
    "containsKey",
    "notContainsKey",
    "less",
    "lessOrEquals",
    "greater",
    "greaterOrEquals",
    "exists",
];

/// Checks the structure of a policy rule's `if` condition.
pub fn check(cond: &Value, path: &str) -> Result<(), String> {
    let Some(o) = cond.as_object() else {
        return Err(format!(
            "The policy condition at '{path}' must be a JSON object."
        ));
    };
    if let Some(v) = o.get("allOf").or_else(|| o.get("anyOf")) {
        let key = if o.contains_key("allOf") {
            "allOf"
        } else {
            "anyOf"
        };
        let Some(a) = v.as_array() else {
            return Err(format!(
                "The '{key}' at '{path}' must be an array of conditions."
            ));
        };
        if o.len() != 1 {
            return Err(format!(
                "The logical operator '{key}' at '{path}' cannot be combined with other members."
            ));
        }
        for (i, c) in a.iter().enumerate() {
            check(c, &format!("{path}.{key}[{i}]"))?;
        }
        return Ok(());
    }
    if let Some(v) = o.get("not") {
        if o.len() != 1 {
            return Err(format!(
                "The logical operator 'not' at '{path}' cannot be combined with other members."
            ));
        }
        return check(v, &format!("{path}.not"));
    }
    let has_field = o.contains_key("field");
    let has_value = o.contains_key("value");
    if has_field == has_value {
        return Err(format!(
            "The policy condition at '{path}' must have exactly one of 'field' or 'value'."
        ));
    }
    if has_field && !o["field"].is_string() {
        return Err(format!("The 'field' at '{path}' must be a string."));
    }
    let ops: Vec<&String> = o
        .keys()
        .filter(|k| *k != "field" && *k != "value")
        .collect();
    if ops.len() != 1 {
        return Err(format!(
            "The policy condition at '{path}' must have exactly one operator; found {}.",
            ops.len()
        ));
    }
    let op = ops[0];
    if !OPERATORS.iter().any(|x| x.eq_ignore_ascii_case(op)) {
        return Err(format!(
            "The policy condition operator '{op}' at '{path}' is not supported. Supported operators: {}.",
            OPERATORS.join(", ")
        ));
    }
    if (op.eq_ignore_ascii_case("in") || op.eq_ignore_ascii_case("notIn"))
        && !(o[op].is_array() || is_param_ref(&o[op]))
    {
        return Err(format!(
            "The '{op}' operator at '{path}' requires an array."
        ));
    }
    Ok(())
}

fn is_param_ref(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.starts_with("[parameters('"))
}

/// The view of a resource the policy engine evaluates.
pub struct View<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub ty: &'a str,
    pub location: &'a str,
    pub tags: &'a Value,
}

fn tag_lookup(tags: &Value, key: &str) -> Option<Value> {
    tags.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.clone())
}

fn field(view: &View, f: &str) -> Option<Value> {
    let fl = f.to_ascii_lowercase();
    match fl.as_str() {
        "type" => return Some(Value::String(view.ty.to_string())),
        "name" | "fullname" => return Some(Value::String(view.name.to_string())),
        "location" => return Some(Value::String(view.location.to_string())),
        "id" => return Some(Value::String(view.id.to_string())),
        "tags" => return Some(view.tags.clone()),
        _ => {}
    }
    // tags['x'], tags[x], tags.x
    if fl.starts_with("tags[") && f.ends_with(']') {
        let inner = &f[5..f.len() - 1];
        let key = inner.trim_matches('\'');
        return tag_lookup(view.tags, key);
    }
    if fl.starts_with("tags.") {
        return tag_lookup(view.tags, &f[5..]);
    }
    None
}

fn resolve(v: &Value, params: &Value) -> Value {
    if let Some(s) = v.as_str()
        && let Some(rest) = s.strip_prefix("[parameters('")
        && let Some(name) = rest.strip_suffix("')]")
    {
        return params.get(name).cloned().unwrap_or(Value::Null);
    }
    v.clone()
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn eq_ci(a: &Value, b: &Value) -> bool {
    match (as_text(a), as_text(b)) {
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(&y),
        _ => a == b,
    }
}

/// Wildcard `*` match, case-insensitive.
fn like(s: &str, pat: &str) -> bool {
    let s = s.to_ascii_lowercase();
    let pat = pat.to_ascii_lowercase();
    let parts: Vec<&str> = pat.split('*').collect();
    if parts.len() == 1 {
        return s == pat;
    }
    let mut pos = 0;
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() {
            continue;
        }
        if i == 0 {
            if !s.starts_with(p) {
                return false;
            }
            pos = p.len();
        } else if i == parts.len() - 1 {
            return s.len() >= pos + p.len() && s.ends_with(p);
        } else {
            match s[pos..].find(p) {
                Some(k) => pos += k + p.len(),
                None => return false,
            }
        }
    }
    true
}

/// Policy `match`: `#` a digit, `?` a letter, `.` any character, others literal.
fn pmatch(s: &str, pat: &str, insensitive: bool) -> bool {
    let (s, pat) = if insensitive {
        (s.to_ascii_lowercase(), pat.to_ascii_lowercase())
    } else {
        (s.to_string(), pat.to_string())
    };
    let sc: Vec<char> = s.chars().collect();
    let pc: Vec<char> = pat.chars().collect();
    sc.len() == pc.len()
        && sc.iter().zip(pc.iter()).all(|(c, p)| match p {
            '#' => c.is_ascii_digit(),
            '?' => c.is_alphabetic(),
            '.' => true,
            x => x == c,
        })
}

fn cmp_num(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.partial_cmp(&y),
        _ => Some(
            as_text(a)?
                .to_ascii_lowercase()
                .cmp(&as_text(b)?.to_ascii_lowercase()),
        ),
    }
}

/// Evaluates a condition against a resource view.
pub fn eval(cond: &Value, view: &View, params: &Value) -> bool {
    let Some(o) = cond.as_object() else {
        return false;
    };
    if let Some(a) = o.get("allOf").and_then(Value::as_array) {
        return a.iter().all(|c| eval(c, view, params));
    }
    if let Some(a) = o.get("anyOf").and_then(Value::as_array) {
        return a.iter().any(|c| eval(c, view, params));
    }
    if let Some(c) = o.get("not") {
        return !eval(c, view, params);
    }
    let subject = match (o.get("field"), o.get("value")) {
        (Some(Value::String(f)), _) => field(view, f),
        (_, Some(v)) => Some(resolve(v, params)),
        _ => None,
    };
    let Some((op, arg)) = o.iter().find(|(k, _)| *k != "field" && *k != "value") else {
        return false;
    };
    let arg = resolve(arg, params);
    let s_text = subject.as_ref().and_then(as_text);
    match op.to_ascii_lowercase().as_str() {
        "equals" => subject.as_ref().is_some_and(|s| eq_ci(s, &arg)),
        "notequals" => !subject.as_ref().is_some_and(|s| eq_ci(s, &arg)),
        "like" => s_text
            .as_deref()
            .zip(arg.as_str())
            .is_some_and(|(s, p)| like(s, p)),
        "notlike" => !s_text
            .as_deref()
            .zip(arg.as_str())
            .is_some_and(|(s, p)| like(s, p)),
        "match" => s_text
            .as_deref()
            .zip(arg.as_str())
            .is_some_and(|(s, p)| pmatch(s, p, false)),
        "notmatch" => !s_text
            .as_deref()
            .zip(arg.as_str())
            .is_some_and(|(s, p)| pmatch(s, p, false)),
        "matchinsensitively" => s_text
            .as_deref()
            .zip(arg.as_str())
            .is_some_and(|(s, p)| pmatch(s, p, true)),
        "notmatchinsensitively" => !s_text
            .as_deref()
            .zip(arg.as_str())
            .is_some_and(|(s, p)| pmatch(s, p, true)),
        "contains" => contains(subject.as_ref(), &arg),
        "notcontains" => !contains(subject.as_ref(), &arg),
        "in" => subject.as_ref().is_some_and(|s| {
            arg.as_array()
                .is_some_and(|a| a.iter().any(|x| eq_ci(s, x)))
        }),
        "notin" => !subject.as_ref().is_some_and(|s| {
            arg.as_array()
                .is_some_and(|a| a.iter().any(|x| eq_ci(s, x)))
        }),
        "containskey" => subject
            .as_ref()
            .and_then(Value::as_object)
            .is_some_and(|m| {
                arg.as_str()
                    .is_some_and(|k| m.keys().any(|x| x.eq_ignore_ascii_case(k)))
            }),
        "notcontainskey" => !subject
            .as_ref()
            .and_then(Value::as_object)
            .is_some_and(|m| {
                arg.as_str()
                    .is_some_and(|k| m.keys().any(|x| x.eq_ignore_ascii_case(k)))
            }),
        "less" => subject
            .as_ref()
            .and_then(|s| cmp_num(s, &arg))
            .is_some_and(|o| o.is_lt()),
        "lessorequals" => subject
            .as_ref()
            .and_then(|s| cmp_num(s, &arg))
            .is_some_and(|o| o.is_le()),
        "greater" => subject
            .as_ref()
            .and_then(|s| cmp_num(s, &arg))
            .is_some_and(|o| o.is_gt()),
        "greaterorequals" => subject
            .as_ref()
            .and_then(|s| cmp_num(s, &arg))
            .is_some_and(|o| o.is_ge()),
        "exists" => {
            let want = match &arg {
                Value::Bool(b) => *b,
                Value::String(s) => s.eq_ignore_ascii_case("true"),
                _ => false,
            };
            let present = subject.as_ref().is_some_and(|s| !s.is_null());
            present == want
        }
        _ => false,
    }
}

fn contains(subject: Option<&Value>, arg: &Value) -> bool {
    match subject {
        Some(Value::String(s)) => arg
            .as_str()
            .is_some_and(|a| s.to_ascii_lowercase().contains(&a.to_ascii_lowercase())),
        Some(Value::Array(a)) => a.iter().any(|x| eq_ci(x, arg)),
        Some(Value::Object(m)) => arg
            .as_str()
            .is_some_and(|k| m.keys().any(|x| x.eq_ignore_ascii_case(k))),
        _ => false,
    }
}

/// An assignment whose definition adds to network group `gid`: (assignment, definition).
fn group_assignments<'a>(g: &'a Inner, sub: &str, gid: &str) -> Vec<(&'a Res, &'a Res)> {
    let mut out = Vec::new();
    let coll = format!("/subscriptions/{sub}/providers/microsoft.authorization/policyassignments");
    for a in g.store.list(&coll) {
        if a.kind != Kind::PolicyAssignment {
            continue;
        }
        let p = a.props();
        if p["enforcementMode"]
            .as_str()
            .is_some_and(|m| m.eq_ignore_ascii_case("DoNotEnforce"))
        {
            continue;
        }
        let Some(def) = p["policyDefinitionId"]
            .as_str()
            .and_then(|d| g.store.get(d))
        else {
            continue;
        };
        let dp = def.props();
        if !dp["mode"]
            .as_str()
            .is_some_and(|m| m.eq_ignore_ascii_case("Microsoft.Network.Data"))
        {
            continue;
        }
        let then = &dp["policyRule"]["then"];
        if !then["effect"]
            .as_str()
            .is_some_and(|e| e.eq_ignore_ascii_case("addToNetworkGroup"))
        {
            continue;
        }
        if then["details"]["networkGroupId"]
            .as_str()
            .is_some_and(|x| x.eq_ignore_ascii_case(gid))
        {
            out.push((a, def));
        }
    }
    out
}

fn params_of(a: &Res, def: &Res) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(dp) = def.props()["parameters"].as_object() {
        for (k, v) in dp {
            if let Some(d) = v.get("defaultValue") {
                out.insert(k.clone(), d.clone());
            }
        }
    }
    if let Some(ap) = a.props()["parameters"].as_object() {
        for (k, v) in ap {
            out.insert(k.clone(), v.get("value").cloned().unwrap_or(Value::Null));
        }
    }
    Value::Object(out)
}

/// An applicable assignment, prepared once for evaluating many VNets.
struct Prepared<'a> {
    /// Lower-cased scope with a trailing slash.
    scope: String,
    not_scopes: Vec<String>,
    params: Value,
    rule: &'a Value,
    /// The assignment or definition changed less than `policy_delay` ago.
    pending: bool,
}

impl<'a> Prepared<'a> {
    fn new(g: &Inner, a: &'a Res, def: &'a Res, now: Instant) -> Self {
        let delay = g.cfg.policy_delay;
        Prepared {
            scope: format!(
                "{}/",
                a.props()["scope"]
                    .as_str()
                    .unwrap_or("")
                    .to_ascii_lowercase()
            ),
            not_scopes: a.props()["notScopes"]
                .as_array()
                .map(|n| {
                    n.iter()
                        .filter_map(|s| s.as_str().map(str::to_ascii_lowercase))
                        .collect()
                })
                .unwrap_or_default(),
            params: params_of(a, def),
            rule: &def.props()["policyRule"]["if"],
            pending: now < a.tags_changed_at + delay || now < def.tags_changed_at + delay,
        }
    }

    fn evaluates(&self, g: &Inner, vnet: &Res, now: Instant) -> bool {
        if self.pending {
            return false;
        }
        let vl = vnet.id.to_ascii_lowercase();
        if !vl.starts_with(&self.scope) {
            return false;
        }
        if self.not_scopes.iter().any(|s| {
            vl == *s || (vl.starts_with(s.as_str()) && vl.as_bytes().get(s.len()) == Some(&b'/'))
        }) {
            return false;
        }
        // Tag changes reach the policy engine after the delay.
        let tags = if now < vnet.tags_changed_at + g.cfg.policy_delay {
            &vnet.prev_tags
        } else {
            vnet.tags()
        };
        let view = View {
            id: &vnet.id,
            name: vnet.name(),
            ty: Kind::VirtualNetwork.arm_type(),
            location: vnet.location(),
            tags,
        };
        eval(self.rule, &view, &self.params)
    }
}

/// Whether Azure Policy has made `vnet` a member of network group `gid` by `now`.
pub fn dynamic_member(g: &Inner, gid: &str, vnet: &Res, now: Instant) -> bool {
    let sub = vnet.id.split('/').nth(2).unwrap_or("");
    group_assignments(g, sub, gid)
        .into_iter()
        .any(|(a, def)| Prepared::new(g, a, def, now).evaluates(g, vnet, now))
}

/// All VNets Azure Policy has put into group `gid` by `now`.
pub fn dynamic_members(g: &Inner, gid: &str, now: Instant) -> Vec<String> {
    let sub = gid.split('/').nth(2).unwrap_or("");
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (a, def) in group_assignments(g, sub, gid) {
        let prepared = Prepared::new(g, a, def, now);
        if prepared.pending {
            continue;
        }
        let scope = a.props()["scope"].as_str().unwrap_or("").to_string();
        let st = crate::model::parse_id(&scope);
        let coll = match st.as_ref().and_then(|t| t.rg.clone()) {
            Some(rg) => format!(
                "/subscriptions/{}/resourcegroups/{rg}/providers/microsoft.network/virtualnetworks",
                st.as_ref().map_or("", |t| t.sub.as_str())
            ),
            None => format!(
                "/subscriptions/{}/providers/microsoft.network/virtualnetworks",
                st.as_ref().map_or(sub, |t| t.sub.as_str())
            ),
        };
        for v in g.store.list(&coll) {
            if prepared.evaluates(g, v, now) && seen.insert(v.id.to_ascii_lowercase()) {
                out.push(v.id.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(tags: &Value) -> View<'_> {
        View {
            id: "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/vnet-prod-eastus",
            name: "vnet-prod-eastus",
            ty: "Microsoft.Network/virtualNetworks",
            location: "eastus",
            tags,
        }
    }

    #[test]
    fn operators_and_logic() {
        let tags = json!({"Env": "Prod", "costcenter": "42"});
        let v = view(&tags);
        let p = json!({});
        let t = |c: Value| eval(&c, &v, &p);
        assert!(t(json!({"field": "tags['env']", "equals": "prod"})));
        assert!(t(json!({"field": "tags.env", "equals": "PROD"})));
        assert!(t(json!({"field": "tags[env]", "in": ["dev", "prod"]})));
        assert!(!t(
            json!({"field": "tags['env']", "notIn": ["dev", "prod"]})
        ));
        assert!(t(json!({"field": "tags['missing']", "exists": false})));
        assert!(t(json!({"field": "tags['missing']", "notEquals": "x"})));
        assert!(!t(json!({"field": "tags['missing']", "equals": "x"})));
        assert!(t(json!({"field": "name", "like": "vnet-*-eastus"})));
        assert!(!t(json!({"field": "name", "like": "vnet-*-westus"})));
        assert!(t(json!({"field": "location", "equals": "EastUS"})));
        assert!(t(json!({"field": "name", "contains": "PROD"})));
        assert!(t(
            json!({"field": "type", "equals": "Microsoft.Network/virtualNetworks"})
        ));
        assert!(t(
            json!({"allOf": [{"field": "type", "equals": "Microsoft.Network/virtualNetworks"}, {"not": {"field": "tags['env']", "equals": "nonprod"}}]})
        ));
        assert!(t(
            json!({"anyOf": [{"field": "tags['env']", "equals": "x"}, {"field": "tags['costcenter']", "match": "##"}]})
        ));
        assert!(!t(json!({"anyOf": []})));
        assert!(!t(
            json!({"field": "tags['env']", "equals": "[parameters('e')]"})
        ));
        assert!(eval(
            &json!({"field": "tags['env']", "equals": "[parameters('e')]"}),
            &v,
            &json!({"e": "prod"})
        ));
    }

    #[test]
    fn structure_checks() {
        assert!(check(&json!({"field": "tags['env']", "equals": "prod"}), "if").is_ok());
        assert!(check(&json!({"field": "tags['env']", "equal": "prod"}), "if").is_err());
        assert!(check(&json!({"allOf": {"field": "x", "equals": "y"}}), "if").is_err());
        assert!(check(&json!({"field": "x", "in": "y"}), "if").is_err());
        assert!(check(&json!({"equals": "y"}), "if").is_err());
    }
}
