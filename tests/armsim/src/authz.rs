//! Microsoft.Authorization policy definitions (subscription scope) and assignments
//! (subscription or resource-group scope).

use axum::http::Method;
use serde_json::{Map, Value, json};

use crate::core::{Inner, Req, list_page, rfc3339};
use crate::model::{Kind, Target};
use crate::policy_eval;
use crate::reply::Reply;
use crate::schema::{S, arr, f, ro, strip_read_only, validate};

fn def_schema() -> S {
    S::Obj(
        "PolicyDefinition",
        vec![
            ro("id"),
            ro("name"),
            ro("type"),
            ro("systemData"),
            f(
                "properties",
                S::Obj(
                    "PolicyDefinitionProperties",
                    vec![
                        f(
                            "policyType",
                            S::Enum(
                                "PolicyType",
                                &["NotSpecified", "BuiltIn", "Custom", "Static"],
                            ),
                        ),
                        f("mode", S::Str),
                        f("displayName", S::StrMax(128)),
                        f("description", S::StrMax(512)),
                        f("policyRule", S::Any),
                        f("metadata", S::Any),
                        f("parameters", S::Map),
                        f("version", S::Str),
                        f("versions", arr(S::Str)),
                        f("externalEvaluationEnforcementSettings", S::Any),
                    ],
                ),
            ),
        ],
    )
}

fn assignment_schema() -> S {
    S::Obj(
        "PolicyAssignment",
        vec![
            ro("id"),
            ro("name"),
            ro("type"),
            ro("systemData"),
            f("location", S::Str),
            f("identity", S::Any),
            f(
                "properties",
                S::Obj(
                    "PolicyAssignmentProperties",
                    vec![
                        f("displayName", S::StrMax(128)),
                        f("policyDefinitionId", S::Str),
                        f("definitionVersion", S::Str),
                        ro("latestDefinitionVersion"),
                        ro("effectiveDefinitionVersion"),
                        ro("scope"),
                        f("notScopes", arr(S::Str)),
                        f("parameters", S::Map),
                        f("description", S::StrMax(512)),
                        f("metadata", S::Any),
                        f(
                            "enforcementMode",
                            S::Enum("EnforcementMode", &["Default", "DoNotEnforce", "Enroll"]),
                        ),
                        f("nonComplianceMessages", S::Any),
                        f("resourceSelectors", S::Any),
                        f("overrides", S::Any),
                        f(
                            "assignmentType",
                            S::Enum(
                                "AssignmentType",
                                &["NotSpecified", "System", "SystemHidden", "Custom"],
                            ),
                        ),
                        ro("instanceId"),
                    ],
                ),
            ),
        ],
    )
}

pub fn handle(g: &mut Inner, req: &Req, t: &Target) -> Reply {
    let rg_name =
        t.rg.as_ref()
            .and_then(|rg| g.rg(&t.sub, rg))
            .map(|r| r.name.clone());
    let what = t
        .pairs
        .first()
        .map(|p| p.0.to_ascii_lowercase())
        .or_else(|| t.tail.as_ref().map(|x| x.to_ascii_lowercase()));
    let kind = match what.as_deref() {
        Some("policydefinitions") if t.rg.is_none() => Kind::PolicyDefinition,
        Some("policyassignments") => Kind::PolicyAssignment,
        _ => {
            return Reply::gateway(
                404,
                "InvalidResourceType",
                "armsim models policyDefinitions (subscription scope) and policyAssignments only.",
            );
        }
    };
    if t.pairs.len() > 1 || (t.pairs.len() == 1 && t.tail.is_some()) {
        return Reply::gateway(
            404,
            "InvalidResourceType",
            "Nested policy resources are not modelled.",
        );
    }
    if t.pairs.is_empty() {
        if !req.is_get() {
            return Reply::error(
                405,
                "MethodNotAllowed",
                "Only GET is allowed on a collection.",
            );
        }
        let coll = req.path.to_ascii_lowercase();
        return list_page(g, req, coll.trim_end_matches('/'), 500, |r| {
            Some(render(g, r))
        });
    }
    let id = t.id_of(1, rg_name.as_deref());
    let name = t.pairs[0].1.clone();
    match req.method {
        Method::GET => match g.store.get(&id) {
            Some(r) => Reply::ok(render(g, r)),
            None => not_found(kind, &name),
        },
        Method::DELETE => {
            if g.store.get(&id).is_none() {
                return Reply::empty(204);
            }
            if kind == Kind::PolicyDefinition {
                let coll = format!(
                    "/subscriptions/{}/providers/microsoft.authorization/policyassignments",
                    t.sub
                );
                let users: Vec<String> = g
                    .store
                    .list(&coll)
                    .filter(|a| {
                        a.props()["policyDefinitionId"]
                            .as_str()
                            .is_some_and(|d| d.eq_ignore_ascii_case(&id))
                    })
                    .map(|a| a.id.clone())
                    .collect();
                if !users.is_empty() {
                    return Reply::bad_request(
                        "PolicyDefinitionInUse",
                        format!(
                            "The policy definition '{name}' is in use by the following assignments: {}. Delete them first.",
                            users.join(", ")
                        ),
                    );
                }
            }
            let r = g.store.remove(&id).expect("checked");
            Reply::ok(render(g, &r))
        }
        Method::PUT => put(g, req, t, kind, &id, &name),
        _ => Reply::error(
            405,
            "MethodNotAllowed",
            format!("The method '{}' is not allowed here.", req.method),
        ),
    }
}

fn not_found(kind: Kind, name: &str) -> Reply {
    match kind {
        Kind::PolicyDefinition => Reply::error(
            404,
            "PolicyDefinitionNotFound",
            format!("The policy definition '{name}' could not be found."),
        ),
        _ => Reply::error(
            404,
            "PolicyAssignmentNotFound",
            format!("The policy assignment '{name}' is not found."),
        ),
    }
}

fn render(g: &Inner, r: &crate::store::Res) -> Value {
    let mut b = r.body.clone();
    b["systemData"] = g.system_data(r);
    b
}

fn put(g: &mut Inner, req: &Req, t: &Target, kind: Kind, id: &str, name: &str) -> Reply {
    let Some(mut body) = req.body.clone() else {
        return Reply::bad_request(
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: 'The request body is missing.'",
        );
    };
    let schema = if kind == Kind::PolicyDefinition {
        def_schema()
    } else {
        assignment_schema()
    };
    if let Err(e) = validate(&body, &schema, "") {
        return Reply::bad_request(
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{e}'"),
        );
    }
    strip_read_only(&mut body, &schema);
    let mut props = body.get("properties").cloned().unwrap_or_else(|| json!({}));
    let existing = g.store.get(id).cloned();
    let scope = t.scope_prefix(
        t.rg.as_ref()
            .and_then(|rg| g.rg(&t.sub, rg))
            .map(|r| r.name.as_str()),
    );
    if kind == Kind::PolicyDefinition {
        let mode = props["mode"].as_str().unwrap_or("Indexed").to_string();
        let known = [
            "All",
            "Indexed",
            "Microsoft.Network.Data",
            "Microsoft.KeyVault.Data",
            "Microsoft.Kubernetes.Data",
            "Microsoft.ManagedHSM.Data",
        ];
        let Some(mode) = known.iter().find(|m| m.eq_ignore_ascii_case(&mode)) else {
            return Reply::bad_request(
                "InvalidPolicyMode",
                format!(
                    "The policy definition mode '{mode}' is not supported. Supported modes: {}.",
                    known.join(", ")
                ),
            );
        };
        props["mode"] = json!(mode);
        if let Some(pt) = props["policyType"].as_str()
            && (pt.eq_ignore_ascii_case("BuiltIn") || pt.eq_ignore_ascii_case("Static"))
        {
            return Reply::bad_request(
                "InvalidPolicyType",
                format!("The policy type '{pt}' cannot be used for a custom policy definition."),
            );
        }
        props["policyType"] = json!("Custom");
        let rule = &props["policyRule"];
        if !rule.is_object() {
            return Reply::bad_request(
                "InvalidPolicyRule",
                "Failed to parse policy rule: the policy definition must contain 'policyRule'.",
            );
        }
        if let Err(e) = policy_eval::check(&rule["if"], "policyRule.if") {
            return Reply::bad_request(
                "InvalidPolicyRule",
                format!("Failed to parse policy rule: {e}"),
            );
        }
        let Some(effect) = rule["then"]["effect"].as_str() else {
            return Reply::bad_request(
                "InvalidPolicyRule",
                "Failed to parse policy rule: 'then.effect' is required.",
            );
        };
        let is_add = effect.eq_ignore_ascii_case("addToNetworkGroup");
        if *mode == "Microsoft.Network.Data" {
            if !is_add {
                return Reply::bad_request(
                    "InvalidPolicyRuleEffectDetails",
                    format!(
                        "The effect '{effect}' is not supported for policy mode 'Microsoft.Network.Data'. Supported effects: addToNetworkGroup."
                    ),
                );
            }
            let gid = rule["then"]["details"]["networkGroupId"]
                .as_str()
                .unwrap_or("");
            let ok = crate::model::parse_id(gid)
                .is_some_and(|x| x.chain() == "networkmanagers/networkgroups" && x.tail.is_none());
            if !ok {
                return Reply::bad_request(
                    "InvalidPolicyRuleEffectDetails",
                    format!(
                        "The 'addToNetworkGroup' effect requires 'then.details.networkGroupId' to be a network group resource id; got '{gid}'."
                    ),
                );
            }
        } else if is_add {
            return Reply::bad_request(
                "InvalidPolicyRuleEffectDetails",
                format!(
                    "The effect 'addToNetworkGroup' requires policy mode 'Microsoft.Network.Data', not '{mode}'."
                ),
            );
        }
        let mut md = props["metadata"].as_object().cloned().unwrap_or_default();
        let created = existing
            .as_ref()
            .map_or_else(|| rfc3339(req.utc), |e| rfc3339(e.created_at));
        md.insert(
            "createdBy".into(),
            json!(
                existing
                    .as_ref()
                    .map_or(req.principal.clone(), |e| e.created_by.clone())
            ),
        );
        md.insert("createdOn".into(), json!(created));
        md.insert("updatedBy".into(), json!(req.principal));
        md.insert("updatedOn".into(), json!(rfc3339(req.utc)));
        props["metadata"] = Value::Object(md);
        if props.get("version").is_none() {
            props["version"] = json!("1.0.0");
        }
        let v = props["version"].clone();
        props["versions"] = json!([v]);
    } else {
        let Some(def_id) = props["policyDefinitionId"].as_str().map(str::to_string) else {
            return Reply::bad_request(
                "InvalidCreatePolicyAssignmentRequest",
                "The policy assignment request is invalid: 'policyDefinitionId' is required.",
            );
        };
        let Some(def) = g
            .store
            .get(&def_id)
            .filter(|d| d.kind == Kind::PolicyDefinition)
        else {
            let dn = def_id.rsplit('/').next().unwrap_or("");
            return Reply::error(
                404,
                "PolicyDefinitionNotFound",
                format!("The policy definition '{dn}' could not be found."),
            );
        };
        let def_scope = def.id[..def
            .id
            .to_ascii_lowercase()
            .find("/providers/microsoft.authorization")
            .unwrap_or(0)]
            .to_ascii_lowercase();
        if !(scope.to_ascii_lowercase() == def_scope
            || scope
                .to_ascii_lowercase()
                .starts_with(&format!("{def_scope}/")))
        {
            return Reply::bad_request(
                "InvalidPolicyDefinitionReference",
                format!(
                    "The policy definition '{def_id}' cannot be assigned at scope '{scope}': the scope is outside the definition's scope."
                ),
            );
        }
        // addToNetworkGroup: the assignment scope must be inside the network manager's scope.
        if let Some(gid) = def.props()["policyRule"]["then"]["details"]["networkGroupId"].as_str()
            && def.props()["mode"] == "Microsoft.Network.Data"
        {
            let nm_id = gid[..gid
                .to_ascii_lowercase()
                .find("/networkgroups/")
                .unwrap_or(gid.len())]
                .to_string();
            let subs: Vec<String> = g
                .store
                .get(&nm_id)
                .and_then(|nm| {
                    nm.props()["networkManagerScopes"]["subscriptions"]
                        .as_array()
                        .cloned()
                })
                .unwrap_or_default()
                .iter()
                .filter_map(|s| s.as_str().map(|s| s.to_ascii_lowercase()))
                .collect();
            let sl = scope.to_ascii_lowercase();
            if !subs
                .iter()
                .any(|s| sl == *s || sl.starts_with(&format!("{s}/")))
            {
                return Reply::bad_request(
                    "InvalidPolicyAssignmentScope",
                    format!(
                        "The assignment scope '{scope}' is not within the scope of network manager '{nm_id}' that owns network group '{gid}'."
                    ),
                );
            }
        }
        props["policyDefinitionId"] = json!(def.id);
        props["scope"] = json!(scope);
        if props.get("notScopes").is_none() {
            props["notScopes"] = json!([]);
        }
        if props.get("enforcementMode").is_none() {
            props["enforcementMode"] = json!("Default");
        }
        props["definitionVersion"] = json!("1.*.*");
        props["instanceId"] = json!(
            existing
                .as_ref()
                .map_or_else(crate::core::new_guid, |e| e.guid.clone())
        );
    }
    let mut stored = Map::new();
    stored.insert("properties".into(), props);
    stored.insert("id".into(), json!(id));
    stored.insert("type".into(), json!(kind.arm_type()));
    stored.insert("name".into(), json!(name));
    if kind == Kind::PolicyAssignment
        && let Some(l) = body.get("location")
    {
        stored.insert("location".into(), l.clone());
    }
    let stored = Value::Object(stored);
    match existing {
        Some(_) => {
            g.touch(id, req);
            if let Some(r) = g.store.get_mut(id) {
                r.body = stored;
                r.tags_changed_at = req.now;
            }
        }
        None => {
            let r = g.new_res(id.to_string(), kind, stored, req);
            g.store.insert(r);
        }
    }
    // Azure Policy answers 201 for both create and update.
    let r = g.store.get(id).expect("stored");
    Reply::status(201, render(g, r))
}
