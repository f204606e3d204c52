//! Azure Virtual Network Manager: network managers, groups, static members, connectivity and
//! security admin configurations, commit / deployment status and active / effective queries.

use std::collections::BTreeSet;
use std::time::Instant;

use axum::http::Method;
use serde_json::{Map, Value, json};

use crate::control::FaultKind;
use crate::core::{
    Deployment, Inner, Req, check_tags, list_page, new_guid, norm_region, rfc3339_secs,
};
use crate::model::{Kind, Target, valid_avnm_name};
use crate::policy_eval;
use crate::reply::Reply;
use crate::schema::{BOOL_STRING, S, arr, f, int, req as rq, ro, strip_read_only, validate};
use crate::store::{Prov, Res};

const CONFIG_TYPES: &[&str] = &["SecurityAdmin", "Connectivity", "SecurityUser", "Routing"];
/// AVNM caps `$top` at 20.
const AVNM_PAGE: usize = 20;

fn child_common() -> Vec<crate::schema::F> {
    vec![
        ro("id"),
        ro("name"),
        ro("type"),
        ro("etag"),
        ro("systemData"),
    ]
}

fn schema_for(kind: Kind) -> S {
    let prov = || ro("provisioningState");
    let guid = || ro("resourceGuid");
    let with = |mut v: Vec<crate::schema::F>, more: Vec<crate::schema::F>| {
        v.extend(more);
        v
    };
    match kind {
        Kind::NetworkManager => S::Obj(
            "NetworkManager",
            vec![
                f("id", S::Str),
                ro("name"),
                ro("type"),
                f("location", S::Str),
                f("tags", S::Map),
                ro("etag"),
                ro("systemData"),
                rq(
                    "properties",
                    S::Obj(
                        "NetworkManagerProperties",
                        vec![
                            f("description", S::Str),
                            rq(
                                "networkManagerScopes",
                                S::Obj(
                                    "NetworkManagerPropertiesNetworkManagerScopes",
                                    vec![
                                        f("managementGroups", arr(S::Str)),
                                        f("subscriptions", arr(S::Str)),
                                        ro("crossTenantScopes"),
                                    ],
                                ),
                            ),
                            f(
                                "networkManagerScopeAccesses",
                                arr(S::Enum("ConfigurationType", CONFIG_TYPES)),
                            ),
                            prov(),
                            guid(),
                        ],
                    ),
                ),
            ],
        ),
        Kind::NetworkGroup => S::Obj(
            "NetworkGroup",
            with(
                child_common(),
                vec![f(
                    "properties",
                    S::Obj(
                        "NetworkGroupProperties",
                        vec![
                            f("description", S::Str),
                            f(
                                "memberType",
                                S::Enum("GroupMemberType", &["VirtualNetwork", "Subnet"]),
                            ),
                            prov(),
                            guid(),
                        ],
                    ),
                )],
            ),
        ),
        Kind::StaticMember => S::Obj(
            "StaticMember",
            with(
                child_common(),
                vec![rq(
                    "properties",
                    S::Obj(
                        "StaticMemberProperties",
                        vec![rq("resourceId", S::Str), ro("region"), prov()],
                    ),
                )],
            ),
        ),
        Kind::ConnectivityConfiguration => S::Obj(
            "ConnectivityConfiguration",
            with(
                child_common(),
                vec![rq(
                    "properties",
                    S::Obj(
                        "ConnectivityConfigurationProperties",
                        vec![
                            f("description", S::Str),
                            rq(
                                "connectivityTopology",
                                S::Enum("ConnectivityTopology", &["HubAndSpoke", "Mesh"]),
                            ),
                            f(
                                "hubs",
                                arr(S::Obj(
                                    "Hub",
                                    vec![f("resourceId", S::Str), f("resourceType", S::Str)],
                                )),
                            ),
                            f("isGlobal", S::Enum("IsGlobal", BOOL_STRING)),
                            f(
                                "connectivityCapabilities",
                                S::Obj(
                                    "ConnectivityConfigurationPropertiesConnectivityCapabilities",
                                    vec![
                                        rq(
                                            "connectedGroupPrivateEndpointsScale",
                                            S::Enum(
                                                "ConnectedGroupPrivateEndpointsScale",
                                                &["Standard", "HighScale"],
                                            ),
                                        ),
                                        rq(
                                            "connectedGroupAddressOverlap",
                                            S::Enum(
                                                "ConnectedGroupAddressOverlap",
                                                &["Allowed", "Disallowed"],
                                            ),
                                        ),
                                        rq(
                                            "peeringEnforcement",
                                            S::Enum(
                                                "PeeringEnforcement",
                                                &["Unenforced", "Enforced"],
                                            ),
                                        ),
                                    ],
                                ),
                            ),
                            rq(
                                "appliesToGroups",
                                arr(S::Obj(
                                    "ConnectivityGroupItem",
                                    vec![
                                        rq("networkGroupId", S::Str),
                                        f("useHubGateway", S::Enum("UseHubGateway", BOOL_STRING)),
                                        f("isGlobal", S::Enum("IsGlobal", BOOL_STRING)),
                                        rq(
                                            "groupConnectivity",
                                            S::Enum(
                                                "GroupConnectivity",
                                                &["None", "DirectlyConnected"],
                                            ),
                                        ),
                                    ],
                                )),
                            ),
                            prov(),
                            f(
                                "deleteExistingPeering",
                                S::Enum("DeleteExistingPeering", BOOL_STRING),
                            ),
                            guid(),
                        ],
                    ),
                )],
            ),
        ),
        Kind::SecurityAdminConfiguration => S::Obj(
            "SecurityAdminConfiguration",
            with(
                child_common(),
                vec![f(
                    "properties",
                    S::Obj(
                        "SecurityAdminConfigurationPropertiesFormat",
                        vec![
                            f("description", S::Str),
                            f(
                                "applyOnNetworkIntentPolicyBasedServices",
                                arr(S::Enum(
                                    "NetworkIntentPolicyBasedService",
                                    &["None", "All", "AllowRulesOnly"],
                                )),
                            ),
                            f(
                                "networkGroupAddressSpaceAggregationOption",
                                S::Enum("AddressSpaceAggregationOption", &["None", "Manual"]),
                            ),
                            prov(),
                            guid(),
                        ],
                    ),
                )],
            ),
        ),
        Kind::AdminRuleCollection => S::Obj(
            "AdminRuleCollection",
            with(
                child_common(),
                vec![rq(
                    "properties",
                    S::Obj(
                        "AdminRuleCollectionPropertiesFormat",
                        vec![
                            f("description", S::Str),
                            rq(
                                "appliesToGroups",
                                arr(S::Obj(
                                    "NetworkManagerSecurityGroupItem",
                                    vec![rq("networkGroupId", S::Str)],
                                )),
                            ),
                            prov(),
                            guid(),
                        ],
                    ),
                )],
            ),
        ),
        _ => {
            let prefix = || {
                arr(S::Obj(
                    "AddressPrefixItem",
                    vec![
                        f("addressPrefix", S::Str),
                        f(
                            "addressPrefixType",
                            S::Enum(
                                "AddressPrefixType",
                                &["IPPrefix", "ServiceTag", "NetworkGroup"],
                            ),
                        ),
                    ],
                ))
            };
            let custom = S::Obj(
                "AdminRule",
                with(
                    child_common(),
                    vec![
                        rq("kind", S::Str),
                        rq(
                            "properties",
                            S::Obj(
                                "AdminPropertiesFormat",
                                vec![
                                    f("description", S::StrMax(140)),
                                    rq(
                                        "protocol",
                                        S::Enum(
                                            "SecurityConfigurationRuleProtocol",
                                            &["Tcp", "Udp", "Icmp", "Esp", "Any", "Ah"],
                                        ),
                                    ),
                                    f("sources", prefix()),
                                    f("destinations", prefix()),
                                    f("sourcePortRanges", arr(S::Str)),
                                    f("destinationPortRanges", arr(S::Str)),
                                    rq(
                                        "access",
                                        S::Enum(
                                            "SecurityConfigurationRuleAccess",
                                            &["Allow", "Deny", "AlwaysAllow"],
                                        ),
                                    ),
                                    rq("priority", int(1, 4096)),
                                    rq(
                                        "direction",
                                        S::Enum(
                                            "SecurityConfigurationRuleDirection",
                                            &["Inbound", "Outbound"],
                                        ),
                                    ),
                                    prov(),
                                    guid(),
                                ],
                            ),
                        ),
                    ],
                ),
            );
            let default = S::Obj(
                "DefaultAdminRule",
                with(
                    child_common(),
                    vec![
                        rq("kind", S::Str),
                        f(
                            "properties",
                            S::Obj(
                                "DefaultAdminPropertiesFormat",
                                vec![
                                    ro("description"),
                                    f("flag", S::Str),
                                    ro("protocol"),
                                    ro("sources"),
                                    ro("destinations"),
                                    ro("sourcePortRanges"),
                                    ro("destinationPortRanges"),
                                    ro("access"),
                                    ro("priority"),
                                    ro("direction"),
                                    prov(),
                                    guid(),
                                ],
                            ),
                        ),
                    ],
                ),
            );
            S::Union(
                "BaseAdminRule",
                "kind",
                vec![("Custom", custom), ("Default", default)],
            )
        }
    }
}

/// Security-admin operations answer with CommonErrorResponse (same outer shape, plus
/// `target`, `details` and `additionalInfo`).
fn common_error(status: u16, code: &str, msg: impl Into<String>) -> Reply {
    Reply::status(
        status,
        json!({"error": {"code": code, "message": msg.into(), "target": null, "details": [], "additionalInfo": []}}),
    )
}

fn is_security(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::SecurityAdminConfiguration | Kind::AdminRuleCollection | Kind::AdminRule
    )
}

fn bad(kind: Kind, code: &str, msg: impl Into<String>) -> Reply {
    if is_security(kind) {
        common_error(400, code, msg)
    } else {
        Reply::bad_request(code, msg)
    }
}

pub fn handle(g: &mut Inner, req: &Req, t: &Target) -> Reply {
    let Some(rg_name) =
        t.rg.as_ref()
            .and_then(|rg| g.rg(&t.sub, rg))
            .map(|r| r.name.clone())
    else {
        // Subscription-level list of network managers.
        if t.pairs.is_empty() && req.is_get() {
            let coll = format!(
                "/subscriptions/{}/providers/microsoft.network/networkmanagers",
                t.sub
            );
            return list_page(g, req, &coll, AVNM_PAGE, |r| {
                Some(render(g, r, req.now, false))
            });
        }
        return Reply::gateway(
            404,
            "InvalidResourceType",
            "Network managers are resource-group resources.",
        );
    };
    if t.pairs.is_empty() {
        if !req.is_get() {
            return Reply::error(
                405,
                "MethodNotAllowed",
                "Only GET is allowed on a resource collection.",
            );
        }
        let coll = format!(
            "{}/providers/microsoft.network/networkmanagers",
            t.scope_prefix(Some(&rg_name))
        );
        return list_page(g, req, &coll, AVNM_PAGE, |r| {
            Some(render(g, r, req.now, false))
        });
    }
    let nm_id = t.id_of(1, Some(&rg_name));
    let nm_exists = g.store.contains(&nm_id);
    let nm_name = t.pairs[0].1.clone();
    // POST actions and child collections on the network manager.
    if t.pairs.len() == 1
        && let Some(tail) = &t.tail
    {
        if !nm_exists {
            return Reply::resource_not_found(
                "Microsoft.Network/networkManagers",
                &nm_name,
                &rg_name,
            );
        }
        let tl = tail.to_ascii_lowercase();
        if req.method == Method::POST {
            return match tl.as_str() {
                "commit" => commit(g, req, &nm_id),
                "listdeploymentstatus" => list_deployment_status(g, req, &nm_id),
                "listactiveconnectivityconfigurations" => list_active_connectivity(g, req, &nm_id),
                "listactivesecurityadminrules" => list_active_security(g, req, &nm_id),
                _ => Reply::gateway(
                    404,
                    "InvalidResourceType",
                    format!("The action '{tail}' is not supported on network managers."),
                ),
            };
        }
        if req.is_get()
            && matches!(
                tl.as_str(),
                "networkgroups" | "connectivityconfigurations" | "securityadminconfigurations"
            )
        {
            let coll = format!("{nm_id}/{tl}");
            return list_page(g, req, &coll, AVNM_PAGE, |r| {
                Some(render(g, r, req.now, false))
            });
        }
        return Reply::gateway(
            404,
            "InvalidResourceType",
            format!("The resource type '{tail}' is not supported under network managers."),
        );
    }
    // Lists of grandchildren.
    if let Some(tail) = &t.tail {
        if !req.is_get() {
            return Reply::error(
                405,
                "MethodNotAllowed",
                "Only GET is allowed on a resource collection.",
            );
        }
        let parent = t.id_of(t.pairs.len(), Some(&rg_name));
        let chain = format!("{}/{}", t.chain(), tail.to_ascii_lowercase());
        if Kind::from_chain(&chain).is_none() {
            return Reply::gateway(
                404,
                "InvalidResourceType",
                format!("The resource type '{tail}' is not supported here."),
            );
        }
        if !g.store.contains(&parent) {
            return Reply::avnm_not_found(&parent);
        }
        let coll = format!("{parent}/{}", tail.to_ascii_lowercase());
        return list_page(g, req, &coll, AVNM_PAGE, |r| {
            Some(render(g, r, req.now, false))
        });
    }
    let Some(kind) = Kind::from_chain(&t.chain()) else {
        return Reply::gateway(
            404,
            "InvalidResourceType",
            format!("The resource type '{}' is not supported.", t.chain()),
        );
    };
    let id = t.id_of(t.pairs.len(), Some(&rg_name));
    match req.method {
        Method::GET => match g.store.get(&id) {
            Some(r) => Reply::ok(render(g, r, req.now, false)),
            None if kind == Kind::NetworkManager => {
                Reply::resource_not_found("Microsoft.Network/networkManagers", &nm_name, &rg_name)
            }
            None if kind == Kind::StaticMember => {
                // The RP really prints this id without the slash before the member name.
                let parent = t.id_of(t.pairs.len() - 1, Some(&rg_name));
                Reply::avnm_not_found(&format!(
                    "{parent}/staticMembers{}",
                    t.pairs[t.pairs.len() - 1].1
                ))
            }
            None if is_security(kind) => common_error(
                404,
                "NotFound",
                format!("Resource [{id}] does not exist or has been deleted"),
            ),
            None => Reply::avnm_not_found(&id),
        },
        Method::PUT => put(g, req, t, kind, &id, &nm_id, &rg_name),
        Method::DELETE => delete(g, req, kind, &id, &nm_id),
        _ => Reply::error(
            405,
            "MethodNotAllowed",
            format!("The method '{}' is not allowed here.", req.method),
        ),
    }
}

fn put(
    g: &mut Inner,
    req: &Req,
    t: &Target,
    kind: Kind,
    id: &str,
    nm_id: &str,
    rg_name: &str,
) -> Reply {
    let name = t.pairs[t.pairs.len() - 1].1.clone();
    if !valid_avnm_name(&name) {
        return bad(
            kind,
            "InvalidResourceName",
            format!(
                "Resource name {name} is invalid. The name must match ^[0-9a-zA-Z]([0-9a-zA-Z_.-]{{0,62}}[0-9a-zA-Z_])?$."
            ),
        );
    }
    if kind != Kind::NetworkManager {
        if !g.store.contains(nm_id) {
            return Reply::parent_not_found("Microsoft.Network/networkManagers", &t.pairs[0].1);
        }
        let parent = t.id_of(t.pairs.len() - 1, Some(rg_name));
        if !g.store.contains(&parent) {
            return if is_security(kind) {
                common_error(
                    404,
                    "NotFound",
                    format!("Resource [{parent}] does not exist or has been deleted"),
                )
            } else {
                Reply::avnm_not_found(&parent)
            };
        }
    }
    let Some(mut body) = req.body.clone() else {
        return bad(
            kind,
            "InvalidRequestFormat",
            "Cannot parse the request. The request body is missing.",
        );
    };
    let schema = schema_for(kind);
    if let Err(e) = validate(&body, &schema, "") {
        return if is_security(kind) {
            common_error(
                400,
                "InvalidRequestFormat",
                format!("Cannot parse the request. {e}"),
            )
        } else {
            Reply::invalid_format(e)
        };
    }
    strip_read_only(&mut body, &schema);
    if let Err(r) = check_tags(&body) {
        return r;
    }
    let existing = g.store.get(id).cloned();
    // If-Match (accepted by networkGroups PUT).
    if let Some(im) = req.header("if-match") {
        let cur = existing.as_ref().map(Inner::etag);
        if im != "*" && cur.as_deref() != Some(im) || im == "*" && cur.is_none() {
            return Reply::error(
                412,
                "PreconditionFailed",
                format!(
                    "The specified If-Match value '{im}' does not match the resource's current ETag."
                ),
            );
        }
    }
    let mut props = body
        .get("properties")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    if let Err(r) = semantic(g, kind, id, nm_id, &mut props, &body) {
        return r;
    }
    let mut stored = Map::new();
    stored.insert("id".into(), json!(id));
    stored.insert("name".into(), json!(name));
    stored.insert("type".into(), json!(kind.arm_type()));
    if kind == Kind::NetworkManager {
        let Some(loc) = body.get("location").and_then(Value::as_str) else {
            return Reply::bad_request(
                "LocationRequired",
                "The location property is required for this definition.",
            );
        };
        if let Some(e) = &existing
            && norm_region(e.location()) != norm_region(loc)
        {
            return Reply::bad_request(
                "InvalidResourceLocation",
                format!(
                    "The resource '{name}' already exists in location '{}' in resource group '{rg_name}'. A resource with the same name cannot be created in location '{loc}'. Please select a new resource name.",
                    e.location()
                ),
            );
        }
        stored.insert("location".into(), json!(loc));
        stored.insert(
            "tags".into(),
            body.get("tags").cloned().unwrap_or_else(|| json!({})),
        );
    }
    if kind == Kind::AdminRule {
        let k = body["kind"].as_str().unwrap_or("Custom");
        stored.insert(
            "kind".into(),
            json!(if k.eq_ignore_ascii_case("default") {
                "Default"
            } else {
                "Custom"
            }),
        );
    }
    stored.insert("properties".into(), props);
    let body = Value::Object(stored);
    match existing {
        Some(_) => {
            let seq = g.store.next_etag();
            if let Some(r) = g.store.get_mut(id) {
                r.body = body;
                r.etag_seq = seq;
                r.modified_at = req.utc;
                r.modified_by = req.principal.clone();
                if kind == Kind::StaticMember {
                    r.prov = Prov {
                        until: Some(req.now + g.cfg.lro_delay),
                        during: "Updating",
                        after: "Succeeded",
                    };
                }
            }
        }
        None => {
            let mut r = g.new_res(id.to_string(), kind, body, req);
            if kind == Kind::StaticMember {
                r.prov = Prov {
                    until: Some(req.now + g.cfg.lro_delay),
                    during: "Updating",
                    after: "Succeeded",
                };
            }
            g.store.insert(r);
        }
    }
    if kind == Kind::StaticMember {
        let vnet = g
            .store
            .get(id)
            .and_then(|r| r.props()["resourceId"].as_str().map(str::to_string))
            .unwrap_or_default();
        g.index_static_member(id, &vnet);
    }
    let r = g.store.get(id).expect("just stored");
    let mut reply = Reply::ok(render(g, r, req.now, true));
    if kind == Kind::NetworkGroup {
        reply = reply.header("ETag", Inner::etag(r));
    }
    reply
}

fn is_vnet_id(id: &str) -> bool {
    crate::model::parse_id(id)
        .is_some_and(|t| t.rg.is_some() && t.tail.is_none() && t.chain() == "virtualnetworks")
}

fn nm_scope_subs(g: &Inner, nm_id: &str) -> Vec<String> {
    g.store
        .get(nm_id)
        .and_then(|nm| {
            nm.props()["networkManagerScopes"]["subscriptions"]
                .as_array()
                .cloned()
        })
        .unwrap_or_default()
        .iter()
        .filter_map(|s| {
            s.as_str()
                .map(|s| s.trim_end_matches('/').to_ascii_lowercase())
        })
        .collect()
}

fn in_nm_scope(g: &Inner, nm_id: &str, res_id: &str) -> bool {
    let lower = res_id.to_ascii_lowercase();
    nm_scope_subs(g, nm_id)
        .iter()
        .any(|s| lower.starts_with(&format!("{s}/")))
}

fn group_exists_in(g: &Inner, nm_id: &str, gid: &str) -> bool {
    gid.to_ascii_lowercase()
        .starts_with(&format!("{}/networkgroups/", nm_id.to_ascii_lowercase()))
        && g.store.contains(gid)
}

/// Cross-resource checks the RP performs on a PUT.
fn semantic(
    g: &Inner,
    kind: Kind,
    id: &str,
    nm_id: &str,
    props: &mut Value,
    body: &Value,
) -> Result<(), Reply> {
    match kind {
        Kind::NetworkManager => {
            let scopes = &props["networkManagerScopes"];
            let subs = scopes["subscriptions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mgs = scopes["managementGroups"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if subs.is_empty() && mgs.is_empty() {
                return Err(Reply::bad_request(
                    "InvalidNetworkManagerScope",
                    "Network manager scope must contain at least one subscription or management group.",
                ));
            }
            for s in &subs {
                let s = s.as_str().unwrap_or("");
                let ok = s
                    .strip_prefix("/subscriptions/")
                    .is_some_and(|rest| uuid::Uuid::parse_str(rest.trim_end_matches('/')).is_ok());
                if !ok {
                    return Err(Reply::bad_request(
                        "InvalidNetworkManagerScope",
                        format!(
                            "Subscription scope '{s}' is not a valid subscription resource id (expected /subscriptions/{{guid}})."
                        ),
                    ));
                }
            }
            let scopes = props["networkManagerScopes"]
                .as_object_mut()
                .expect("validated object");
            scopes.entry("managementGroups").or_insert(json!([]));
            scopes.entry("subscriptions").or_insert(json!([]));
            if props.get("networkManagerScopeAccesses").is_none() {
                props["networkManagerScopeAccesses"] = json!([]);
            }
            if props.get("description").is_none() {
                props["description"] = json!("");
            }
        }
        Kind::NetworkGroup if props.get("description").is_none() => {
            props["description"] = json!("");
        }
        Kind::StaticMember => {
            let rid = props["resourceId"].as_str().unwrap_or("").to_string();
            if !is_vnet_id(&rid) {
                return Err(Reply::bad_request(
                    "InvalidResourceId",
                    format!(
                        "Static member resourceId '{rid}' is not a virtual network resource id."
                    ),
                ));
            }
            let Some(vnet) = g.store.get(&rid) else {
                return Err(Reply::bad_request(
                    "InvalidResourceId",
                    format!(
                        "The virtual network '{rid}' referenced by the static member does not exist."
                    ),
                ));
            };
            if !in_nm_scope(g, nm_id, &rid) {
                return Err(Reply::bad_request(
                    "ResourceNotInNetworkManagerScope",
                    format!(
                        "The virtual network '{rid}' is not within the scope of network manager '{nm_id}'."
                    ),
                ));
            }
            props["resourceId"] = json!(vnet.id);
            props["region"] = json!(vnet.location());
        }
        Kind::ConnectivityConfiguration => {
            let topo = props["connectivityTopology"].as_str().unwrap_or("");
            let groups = props["appliesToGroups"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if groups.is_empty() {
                return Err(Reply::bad_request(
                    "InvalidConnectivityConfiguration",
                    "appliesToGroups must contain at least one network group.",
                ));
            }
            let mut seen = BTreeSet::new();
            for gi in &groups {
                let gid = gi["networkGroupId"].as_str().unwrap_or("");
                if !group_exists_in(g, nm_id, gid) {
                    return Err(Reply::bad_request(
                        "InvalidNetworkGroupId",
                        format!(
                            "Network group '{gid}' referenced in appliesToGroups does not exist in network manager '{nm_id}'."
                        ),
                    ));
                }
                if !seen.insert(gid.to_ascii_lowercase()) {
                    return Err(Reply::bad_request(
                        "DuplicateNetworkGroup",
                        format!("Network group '{gid}' appears more than once in appliesToGroups."),
                    ));
                }
            }
            let hubs = props["hubs"].as_array().cloned().unwrap_or_default();
            if topo.eq_ignore_ascii_case("HubAndSpoke") && hubs.len() != 1 {
                {
                    return Err(Reply::bad_request(
                        "InvalidHubCount",
                        format!(
                            "A HubAndSpoke configuration needs exactly one hub, got {}.",
                            hubs.len()
                        ),
                    ));
                }
            }
            for h in &hubs {
                let rid = h["resourceId"].as_str().unwrap_or("");
                let rt = h["resourceType"].as_str().unwrap_or("");
                if !rt.eq_ignore_ascii_case("Microsoft.Network/virtualNetworks") {
                    return Err(Reply::bad_request(
                        "InvalidHubResourceType",
                        format!(
                            "Hub resourceType '{rt}' is not supported; use 'Microsoft.Network/virtualNetworks'."
                        ),
                    ));
                }
                if !is_vnet_id(rid) || !g.store.contains(rid) {
                    return Err(Reply::bad_request(
                        "InvalidHubResourceId",
                        format!("Hub virtual network '{rid}' does not exist."),
                    ));
                }
            }
            if props.get("hubs").is_none() {
                props["hubs"] = json!([]);
            }
            for (k, d) in [
                ("isGlobal", "False"),
                ("deleteExistingPeering", "False"),
                ("description", ""),
            ] {
                if props.get(k).is_none() {
                    props[k] = json!(d);
                }
            }
            if let Some(a) = props["appliesToGroups"].as_array_mut() {
                for gi in a {
                    for k in ["useHubGateway", "isGlobal"] {
                        if gi.get(k).is_none() {
                            gi[k] = json!("False");
                        }
                    }
                }
            }
        }
        Kind::SecurityAdminConfiguration if props.get("description").is_none() => {
            props["description"] = json!("");
        }
        Kind::AdminRuleCollection => {
            let groups = props["appliesToGroups"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if groups.is_empty() {
                return Err(common_error(
                    400,
                    "InvalidRuleCollection",
                    "appliesToGroups must contain at least one network group.",
                ));
            }
            for gi in &groups {
                let gid = gi["networkGroupId"].as_str().unwrap_or("");
                if !group_exists_in(g, nm_id, gid) {
                    return Err(common_error(
                        400,
                        "InvalidNetworkGroupId",
                        format!(
                            "Network group '{gid}' referenced in appliesToGroups does not exist in network manager '{nm_id}'."
                        ),
                    ));
                }
            }
            if props.get("description").is_none() {
                props["description"] = json!("");
            }
        }
        Kind::AdminRule => {
            let is_default = body["kind"]
                .as_str()
                .is_some_and(|k| k.eq_ignore_ascii_case("default"));
            if is_default {
                return Ok(());
            }
            // Priority unique within the collection.
            let prio = props["priority"].as_i64().unwrap_or(0);
            let parent = &id[..id.rfind('/').unwrap_or(0)];
            for other in g.store.list(parent) {
                if !other.id.eq_ignore_ascii_case(id)
                    && other.props()["priority"].as_i64() == Some(prio)
                {
                    return Err(common_error(
                        400,
                        "DuplicatePriority",
                        format!(
                            "Security admin rule priority {prio} is already used by rule '{}' in the same rule collection; priorities must be unique within a rule collection.",
                            other.id
                        ),
                    ));
                }
            }
            for side in ["sources", "destinations"] {
                for p in props[side].as_array().cloned().unwrap_or_default() {
                    let ty = p["addressPrefixType"].as_str().unwrap_or("");
                    let ap = p["addressPrefix"].as_str().unwrap_or("");
                    if ty.eq_ignore_ascii_case("NetworkGroup") && !group_exists_in(g, nm_id, ap) {
                        return Err(common_error(
                            400,
                            "InvalidAddressPrefix",
                            format!(
                                "Network group '{ap}' used as {side} address prefix does not exist in network manager '{nm_id}'."
                            ),
                        ));
                    }
                    if ty.eq_ignore_ascii_case("IPPrefix") && !valid_ip_prefix(ap) {
                        return Err(common_error(
                            400,
                            "InvalidAddressPrefix",
                            format!(
                                "'{ap}' in properties.{side} is not a valid IP address or CIDR prefix."
                            ),
                        ));
                    }
                }
            }
            for side in ["sourcePortRanges", "destinationPortRanges"] {
                for p in props[side].as_array().cloned().unwrap_or_default() {
                    let s = p.as_str().unwrap_or("");
                    if !valid_port_range(s) {
                        return Err(common_error(
                            400,
                            "InvalidPortRange",
                            format!(
                                "'{s}' in properties.{side} is not a valid port or port range (0-65535)."
                            ),
                        ));
                    }
                }
            }
            for k in [
                "sources",
                "destinations",
                "sourcePortRanges",
                "destinationPortRanges",
            ] {
                if props.get(k).is_none() {
                    props[k] = json!([]);
                }
            }
            if props.get("description").is_none() {
                props["description"] = json!("");
            }
        }
        _ => {}
    }
    Ok(())
}

pub fn valid_ip_prefix(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let (ip, bits) = match s.split_once('/') {
        Some((ip, b)) => (ip, Some(b)),
        None => (s, None),
    };
    if let Ok(addr) = ip.parse::<std::net::IpAddr>() {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        return bits.is_none_or(|b| b.parse::<u8>().is_ok_and(|n| n <= max));
    }
    false
}

fn valid_port_range(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let p = |x: &str| x.parse::<u32>().is_ok_and(|n| n <= 65535);
    match s.split_once('-') {
        Some((a, b)) => {
            p(a) && p(b) && a.parse::<u32>().unwrap_or(0) <= b.parse::<u32>().unwrap_or(0)
        }
        None => p(s),
    }
}

/// Regions (lower-cased) where a configuration is in the deployed goal state.
fn deployed_regions(g: &Inner, nm_id: &str, config_id: &str, now: Instant) -> Vec<String> {
    let cl = config_id.to_ascii_lowercase();
    let mut out = Vec::new();
    if let Some(map) = g.deployments.get(&nm_id.to_ascii_lowercase()) {
        for d in map.values() {
            let goal = d
                .config_ids
                .iter()
                .chain(active_ids(g, d, now).iter())
                .any(|c| c.to_ascii_lowercase() == cl);
            if goal {
                out.push(d.region.clone());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The configurations referencing a network group.
fn configs_using_group(g: &Inner, nm_id: &str, gid: &str) -> Vec<String> {
    let gl = gid.to_ascii_lowercase();
    let mut out = Vec::new();
    for c in g.store.list(&format!("{nm_id}/connectivityconfigurations")) {
        if c.props()["appliesToGroups"].as_array().is_some_and(|a| {
            a.iter().any(|x| {
                x["networkGroupId"]
                    .as_str()
                    .is_some_and(|s| s.to_ascii_lowercase() == gl)
            })
        }) {
            out.push(c.id.clone());
        }
    }
    for sac in g
        .store
        .list(&format!("{nm_id}/securityadminconfigurations"))
    {
        for rc in g.store.list(&format!("{}/rulecollections", sac.id)) {
            if rc.props()["appliesToGroups"].as_array().is_some_and(|a| {
                a.iter().any(|x| {
                    x["networkGroupId"]
                        .as_str()
                        .is_some_and(|s| s.to_ascii_lowercase() == gl)
                })
            }) {
                out.push(sac.id.clone());
            }
        }
    }
    out
}

fn delete(g: &mut Inner, req: &Req, kind: Kind, id: &str, nm_id: &str) -> Reply {
    let Some(res) = g.store.get(id).cloned() else {
        return Reply::empty(204);
    };
    // Which deployed configuration(s) this resource is part of.
    let configs: Vec<String> = match kind {
        Kind::NetworkManager => {
            let mut all = Vec::new();
            for c in g
                .store
                .list(&format!("{nm_id}/connectivityconfigurations"))
                .chain(
                    g.store
                        .list(&format!("{nm_id}/securityadminconfigurations")),
                )
            {
                all.push(c.id.clone());
            }
            all
        }
        Kind::NetworkGroup => configs_using_group(g, nm_id, id),
        Kind::ConnectivityConfiguration | Kind::SecurityAdminConfiguration => vec![id.to_string()],
        Kind::AdminRuleCollection | Kind::AdminRule => {
            let sac_end = id
                .to_ascii_lowercase()
                .find("/rulecollections/")
                .unwrap_or(id.len());
            vec![id[..sac_end].to_string()]
        }
        _ => Vec::new(),
    };
    let mut deployed: Vec<(String, Vec<String>)> = Vec::new();
    for c in &configs {
        let regions = deployed_regions(g, nm_id, c, req.now);
        if !regions.is_empty() {
            deployed.push((c.clone(), regions));
        }
    }
    if !deployed.is_empty() && !req.force() {
        let (c, regions) = &deployed[0];
        let msg = format!(
            "Cannot delete '{id}' because configuration '{c}' that uses it is deployed in region(s) {}. Commit a goal state without it first, or delete with force=true.",
            regions.join(", ")
        );
        return if is_security(kind) {
            common_error(409, "CannotDeleteDeployedResource", msg)
        } else {
            Reply::conflict("CannotDeleteDeployedResource", msg)
        };
    }
    if kind == Kind::StaticMember {
        g.store.remove(id);
        return Reply::empty(200);
    }
    // Forced: clean-up deployment removes the configurations from every goal state.
    if req.force() {
        let undeploy: BTreeSet<String> = match kind {
            Kind::ConnectivityConfiguration
            | Kind::SecurityAdminConfiguration
            | Kind::NetworkManager => configs.iter().map(|c| c.to_ascii_lowercase()).collect(),
            Kind::NetworkGroup => {
                // Groups are removed from the configurations in the background; we undeploy
                // the configurations that referenced the group.
                configs.iter().map(|c| c.to_ascii_lowercase()).collect()
            }
            _ => BTreeSet::new(),
        };
        if !undeploy.is_empty()
            && let Some(map) = g.deployments.get_mut(&nm_id.to_ascii_lowercase())
        {
            for d in map.values_mut() {
                d.config_ids
                    .retain(|c| !undeploy.contains(&c.to_ascii_lowercase()));
                d.previous
                    .retain(|c| !undeploy.contains(&c.to_ascii_lowercase()));
            }
        }
    }
    g.store.remove_tree(id);
    if kind == Kind::NetworkManager {
        g.deployments.remove(&nm_id.to_ascii_lowercase());
    }
    if req.force() {
        let loc = g.location_op(req, &res.id, 204);
        return Reply::empty(202).header("Location", loc);
    }
    Reply::empty(200)
}

/// Renders a stored AVNM resource; `put` renders a PUT response (empty etag).
pub fn render(g: &Inner, r: &Res, now: Instant, put: bool) -> Value {
    let mut b = r.body.clone();
    let o = b.as_object_mut().expect("stored bodies are objects");
    let mut props = o.remove("properties").unwrap_or_else(|| json!({}));
    let p = props.as_object_mut().expect("properties object");
    match r.kind {
        Kind::StaticMember => {
            p.insert(
                "provisioningState".into(),
                json!(if put { "Updating" } else { r.prov.state(now) }),
            );
        }
        Kind::NetworkManager => {
            if let Some(s) = p
                .get_mut("networkManagerScopes")
                .and_then(Value::as_object_mut)
            {
                s.insert("crossTenantScopes".into(), json!([]));
            }
            p.insert("provisioningState".into(), json!("Succeeded"));
            p.insert("resourceGuid".into(), json!(r.guid));
        }
        _ => {
            p.insert("provisioningState".into(), json!("Succeeded"));
            p.insert("resourceGuid".into(), json!(r.guid));
        }
    }
    o.insert(
        "etag".into(),
        json!(if put { String::new() } else { Inner::etag(r) }),
    );
    o.insert("properties".into(), props);
    o.insert("systemData".into(), g.system_data(r));
    b
}

// ---------------------------------------------------------------- commit & deployments

fn type_chain_for(commit_type: &str) -> Option<&'static str> {
    match commit_type.to_ascii_lowercase().as_str() {
        "connectivity" => Some("connectivityconfigurations"),
        "securityadmin" => Some("securityadminconfigurations"),
        _ => None,
    }
}

fn canonical_type(t: &str) -> &'static str {
    CONFIG_TYPES
        .iter()
        .find(|c| c.eq_ignore_ascii_case(t))
        .copied()
        .unwrap_or("Connectivity")
}

/// The configurations active (deployed) for a deployment at `now`.
pub fn active_ids(g: &Inner, d: &Deployment, now: Instant) -> Vec<String> {
    let done = now.saturating_duration_since(d.committed_at) >= g.cfg.deploy_delay;
    if done && d.failure.is_none() {
        d.config_ids.clone()
    } else {
        d.previous.clone()
    }
}

fn status_of(g: &Inner, d: &Deployment, now: Instant) -> Option<&'static str> {
    let el = now.saturating_duration_since(d.committed_at);
    if el < g.cfg.status_empty_window {
        return None;
    }
    if el < g.cfg.deploy_delay / 3 {
        Some("NotStarted")
    } else if el < g.cfg.deploy_delay {
        Some("Deploying")
    } else if d.failure.is_some() {
        Some("Failed")
    } else {
        Some("Deployed")
    }
}

fn commit(g: &mut Inner, req: &Req, nm_id: &str) -> Reply {
    let schema = S::Obj(
        "NetworkManagerCommit",
        vec![
            ro("commitId"),
            rq("targetLocations", arr(S::Str)),
            f("configurationIds", arr(S::Str)),
            rq("commitType", S::Enum("ConfigurationType", CONFIG_TYPES)),
        ],
    );
    let body = req.body_obj();
    if let Err(e) = validate(&body, &schema, "") {
        return Reply::invalid_format(e);
    }
    let ct = canonical_type(body["commitType"].as_str().unwrap_or(""));
    let nm = g.store.get(nm_id).expect("checked");
    let accesses: Vec<String> = nm.props()["networkManagerScopeAccesses"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_ascii_lowercase))
        .collect();
    if !accesses.contains(&ct.to_ascii_lowercase()) {
        return Reply::bad_request(
            "CommitTypeNotInScopeAccess",
            format!(
                "Commit type '{ct}' is not allowed: network manager '{nm_id}' has networkManagerScopeAccesses [{}].",
                accesses.join(", ")
            ),
        );
    }
    let regions: Vec<String> = body["targetLocations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    if regions.is_empty() {
        return Reply::bad_request(
            "InvalidTargetLocations",
            "targetLocations must contain at least one region.",
        );
    }
    let Some(chain) = type_chain_for(ct) else {
        return Reply::bad_request(
            "UnsupportedCommitType",
            format!("armsim does not model '{ct}' configurations."),
        );
    };
    let mut ids = Vec::new();
    for c in body["configurationIds"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let cid = c.as_str().unwrap_or("");
        let prefix = format!("{}/{chain}/", nm_id.to_ascii_lowercase());
        let Some(r) = g
            .store
            .get(cid)
            .filter(|_| cid.to_ascii_lowercase().starts_with(&prefix))
        else {
            if g.store.contains(cid) {
                return Reply::bad_request(
                    "InvalidConfigurationId",
                    format!(
                        "Configuration '{cid}' is not a {ct} configuration of network manager '{nm_id}'."
                    ),
                );
            }
            return Reply::bad_request(
                "ConfigurationNotFound",
                format!("Configuration '{cid}' does not exist."),
            );
        };
        if ids.iter().any(|x: &String| x.eq_ignore_ascii_case(&r.id)) {
            return Reply::bad_request(
                "DuplicateConfigurationId",
                format!("Configuration '{cid}' is listed more than once."),
            );
        }
        ids.push(r.id.clone());
    }
    let failure = matches!(req.fault, Some(FaultKind::FailedDeployment))
        .then(|| "Deployment failed: an internal error occurred while programming the goal state (injected by armsim).".to_string());
    let nm_key = nm_id.to_ascii_lowercase();
    for region in &regions {
        let key = (ct.to_ascii_lowercase(), norm_region(region));
        let previous = g
            .deployments
            .get(&nm_key)
            .and_then(|m| m.get(&key))
            .map(|d| active_ids(g, d, req.now))
            .unwrap_or_default();
        let d = Deployment {
            deployment_type: ct.to_string(),
            region: norm_region(region),
            config_ids: ids.clone(),
            previous,
            commit_time: req.utc,
            committed_at: req.now,
            failure: failure.clone(),
        };
        g.deployments
            .entry(nm_key.clone())
            .or_default()
            .insert(key, d);
    }
    let commit_id = new_guid();
    let loc = format!(
        "{}{nm_id}/operationResults/{commit_id}?api-version={}",
        crate::core::HOST,
        req.api_version
    );
    g.ops.insert(
        commit_id.clone(),
        crate::core::Op {
            done_at: req.now + g.lro_delay(req),
            failure: None,
            location_final: 204,
        },
    );
    Reply::status(202, json!({"commitId": commit_id, "targetLocations": regions, "configurationIds": ids, "commitType": ct})).header("Location", loc)
}

fn str_list(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| {
        a.iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect()
    })
}

fn list_deployment_status(g: &Inner, req: &Req, nm_id: &str) -> Reply {
    let schema = S::Obj(
        "NetworkManagerDeploymentStatusParameter",
        vec![
            f("regions", arr(S::Str)),
            f(
                "deploymentTypes",
                arr(S::Enum("ConfigurationType", CONFIG_TYPES)),
            ),
            f("skipToken", S::Str),
        ],
    );
    let body = req.body_obj();
    if let Err(e) = validate(&body, &schema, "") {
        return Reply::invalid_format(e);
    }
    let regions =
        str_list(&body["regions"]).map(|v| v.iter().map(|r| norm_region(r)).collect::<Vec<_>>());
    let types = str_list(&body["deploymentTypes"])
        .map(|v| v.iter().map(|t| t.to_ascii_lowercase()).collect::<Vec<_>>());
    let mut value = Vec::new();
    if let Some(map) = g.deployments.get(&nm_id.to_ascii_lowercase()) {
        let mut ds: Vec<&Deployment> = map.values().collect();
        ds.sort_by(|a, b| (&a.region, &a.deployment_type).cmp(&(&b.region, &b.deployment_type)));
        for d in ds {
            if regions.as_ref().is_some_and(|r| !r.contains(&d.region))
                || types
                    .as_ref()
                    .is_some_and(|t| !t.contains(&d.deployment_type.to_ascii_lowercase()))
            {
                continue;
            }
            let Some(status) = status_of(g, d, req.now) else {
                continue;
            };
            value.push(json!({
                "commitTime": rfc3339_secs(d.commit_time),
                "region": d.region,
                "deploymentStatus": status,
                "configurationIds": d.config_ids,
                "deploymentType": d.deployment_type,
                "errorMessage": if status == "Failed" { d.failure.clone().unwrap_or_default() } else { String::new() },
            }));
        }
    }
    Reply::ok(json!({"value": value, "skipToken": ""}))
}

fn active_param(req: &Req) -> Result<Option<Vec<String>>, Reply> {
    let schema = S::Obj(
        "ActiveConfigurationParameter",
        vec![f("regions", arr(S::Str)), f("skipToken", S::Str)],
    );
    let body = req.body_obj();
    validate(&body, &schema, "").map_err(Reply::invalid_format)?;
    Ok(str_list(&body["regions"]).map(|v| v.iter().map(|r| norm_region(r)).collect()))
}

fn group_item(g: &Inner, gid: &str) -> Option<Value> {
    let r = g.store.get(gid)?;
    let mut p = r.props().clone();
    p["provisioningState"] = json!("Succeeded");
    p["resourceGuid"] = json!(r.guid);
    Some(json!({"id": r.id, "properties": p}))
}

fn config_props(g: &Inner, r: &Res, now: Instant) -> Value {
    render(g, r, now, false)["properties"].clone()
}

/// (region, deployment) pairs of a type, sorted by region.
fn deployments_of<'a>(
    g: &'a Inner,
    nm_id: &str,
    ty: &str,
    regions: &Option<Vec<String>>,
) -> Vec<&'a Deployment> {
    let mut out: Vec<&Deployment> = g
        .deployments
        .get(&nm_id.to_ascii_lowercase())
        .map(|m| {
            m.values()
                .filter(|d| d.deployment_type.eq_ignore_ascii_case(ty))
                .filter(|d| regions.as_ref().is_none_or(|r| r.contains(&d.region)))
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.region.cmp(&b.region));
    out
}

fn list_active_connectivity(g: &Inner, req: &Req, nm_id: &str) -> Reply {
    let regions = match active_param(req) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let mut value = Vec::new();
    for d in deployments_of(g, nm_id, "Connectivity", &regions) {
        for cid in active_ids(g, d, req.now) {
            let Some(c) = g.store.get(&cid) else { continue };
            let groups: Vec<Value> = c.props()["appliesToGroups"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|x| group_item(g, x["networkGroupId"].as_str().unwrap_or("")))
                .collect();
            value.push(json!({"id": c.id, "commitTime": rfc3339_secs(d.commit_time), "region": d.region, "properties": config_props(g, c, req.now), "configurationGroups": groups}));
        }
    }
    Reply::ok(json!({"value": value, "skipToken": ""}))
}

fn rule_entries(g: &Inner, sac: &Res, filter_groups: Option<&BTreeSet<String>>) -> Vec<Value> {
    let mut out = Vec::new();
    for rc in g.store.list(&format!("{}/rulecollections", sac.id)) {
        let applies = rc.props()["appliesToGroups"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(fg) = filter_groups
            && !applies.iter().any(|x| {
                x["networkGroupId"]
                    .as_str()
                    .is_some_and(|s| fg.contains(&s.to_ascii_lowercase()))
            })
        {
            continue;
        }
        // `ruleGroups` ("effective configuration groups"): for a VNet's effective rules, the
        // groups of the collection the VNet is a member of (the ones the rules apply through);
        // for the active rules of a region, every group of the collection.
        let rule_groups: Vec<Value> = applies
            .iter()
            .filter_map(|x| x["networkGroupId"].as_str())
            .filter(|gid| filter_groups.is_none_or(|fg| fg.contains(&gid.to_ascii_lowercase())))
            .filter_map(|gid| group_item(g, gid))
            .collect();
        let applies_items: Vec<Value> = applies
            .iter()
            .map(|x| json!({"networkGroupId": x["networkGroupId"]}))
            .collect();
        for rule in g.store.list(&format!("{}/rules", rc.id)) {
            let mut p = rule.props().clone();
            p["provisioningState"] = json!("Succeeded");
            p["resourceGuid"] = json!(rule.guid);
            out.push(json!({
                "id": rule.id,
                "configurationDescription": sac.props()["description"],
                "ruleCollectionDescription": rc.props()["description"],
                "ruleCollectionAppliesToGroups": applies_items,
                "ruleGroups": rule_groups,
                "kind": rule.body["kind"],
                "properties": p,
            }));
        }
    }
    out
}

fn list_active_security(g: &Inner, req: &Req, nm_id: &str) -> Reply {
    let regions = match active_param(req) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let mut value = Vec::new();
    for d in deployments_of(g, nm_id, "SecurityAdmin", &regions) {
        for sid in active_ids(g, d, req.now) {
            let Some(sac) = g.store.get(&sid) else {
                continue;
            };
            for mut e in rule_entries(g, sac, None) {
                e["commitTime"] = json!(rfc3339_secs(d.commit_time));
                e["region"] = json!(d.region);
                value.push(e);
            }
        }
    }
    Reply::ok(json!({"value": value, "skipToken": ""}))
}

// ---------------------------------------------------------------- membership & effective

/// Group id (lower-cased) -> its members as (VNet id, region), computed once per response.
pub type MemberCache = std::collections::HashMap<String, Vec<(String, String)>>;

/// The peerings AVNM's active hub-and-spoke deployments create for `vnet`:
/// (remote VNet id, configuration id). A configuration active in region R peers the
/// members of its groups located in R with its hub (both directions). Mesh topologies use
/// connected groups, not peerings, so they add none.
pub fn anm_peerings(
    g: &Inner,
    vnet: &Res,
    now: Instant,
    cache: &mut MemberCache,
) -> Vec<(String, String)> {
    let sub = vnet.id.split('/').nth(2).unwrap_or("");
    let region = norm_region(vnet.location());
    let mut out: Vec<(String, String)> = Vec::new();
    let nms: Vec<String> = g
        .store
        .list(&format!(
            "/subscriptions/{sub}/providers/microsoft.network/networkmanagers"
        ))
        .map(|r| r.id.clone())
        .collect();
    for nm_id in nms {
        let Some(map) = g.deployments.get(&nm_id.to_ascii_lowercase()) else {
            continue;
        };
        if !in_nm_scope(g, &nm_id, &vnet.id) {
            continue;
        }
        let mut ds: Vec<&Deployment> = map
            .values()
            .filter(|d| d.deployment_type == "Connectivity")
            .collect();
        ds.sort_by(|a, b| a.region.cmp(&b.region));
        for d in ds {
            for cid in active_ids(g, d, now) {
                let Some(c) = g.store.get(&cid) else { continue };
                if !c.props()["connectivityTopology"]
                    .as_str()
                    .is_some_and(|t| t.eq_ignore_ascii_case("HubAndSpoke"))
                {
                    continue;
                }
                let Some(hub) = c.props()["hubs"][0]["resourceId"]
                    .as_str()
                    .and_then(|h| g.store.get(h))
                else {
                    continue;
                };
                let gids: Vec<String> = c.props()["appliesToGroups"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|x| x["networkGroupId"].as_str().map(str::to_string))
                    .collect();
                if hub.id.eq_ignore_ascii_case(&vnet.id) {
                    for gid in &gids {
                        let members = cache.entry(gid.to_ascii_lowercase()).or_insert_with(|| {
                            members(g, gid, now)
                                .into_iter()
                                .filter_map(|(id, _)| {
                                    g.store
                                        .get(&id)
                                        .map(|v| (v.id.clone(), norm_region(v.location())))
                                })
                                .collect()
                        });
                        for (m, mr) in members.iter() {
                            if *mr == d.region && !m.eq_ignore_ascii_case(&hub.id) {
                                out.push((m.clone(), c.id.clone()));
                            }
                        }
                    }
                } else if region == d.region && gids.iter().any(|gid| is_member(g, gid, vnet, now))
                {
                    out.push((hub.id.clone(), c.id.clone()));
                }
            }
        }
    }
    // One peering per remote VNet.
    let mut seen = BTreeSet::new();
    out.retain(|(remote, _)| seen.insert(remote.to_ascii_lowercase()));
    out
}

/// Whether `vnet` is a member of network group `gid` (static or via Azure Policy).
pub fn is_member(g: &Inner, gid: &str, vnet: &Res, now: Instant) -> bool {
    let vl = vnet.id.to_ascii_lowercase();
    let key = (gid.to_ascii_lowercase(), vl);
    let static_member = g.static_index.get(&key).is_some_and(|ids| {
        ids.iter().any(|mid| {
            g.store.get(mid).is_some_and(|m| {
                m.props()["resourceId"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(&vnet.id))
            })
        })
    });
    static_member || policy_eval::dynamic_member(g, gid, vnet, now)
}

/// All members of a group: (vnet id, "static" | "policy").
pub fn members(g: &Inner, gid: &str, now: Instant) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for m in g.store.list(&format!("{gid}/staticmembers")) {
        if let Some(s) = m.props()["resourceId"].as_str()
            && seen.insert(s.to_ascii_lowercase())
        {
            {
                out.push((
                    g.store
                        .get(s)
                        .map_or_else(|| s.to_string(), |v| v.id.clone()),
                    "static",
                ));
            }
        }
    }
    for v in policy_eval::dynamic_members(g, gid, now) {
        if seen.insert(v.to_ascii_lowercase()) {
            out.push((v, "policy"));
        }
    }
    out
}

/// POST .../virtualNetworks/{vnet}/listNetworkManagerEffective{ConnectivityConfigurations|SecurityAdminRules}.
pub fn effective(g: &mut Inner, req: &Req, t: &Target) -> Reply {
    let rg_name = g
        .rg(&t.sub, t.rg.as_deref().unwrap_or(""))
        .map(|r| r.name.clone())
        .unwrap_or_default();
    let vid = t.id_of(1, Some(&rg_name));
    let schema = S::Obj("QueryRequestOptions", vec![f("skipToken", S::Str)]);
    if let Err(e) = validate(&req.body_obj(), &schema, "") {
        return Reply::invalid_format(e);
    }
    let Some(vnet) = g.store.get(&vid) else {
        return Reply::resource_not_found(
            "Microsoft.Network/virtualNetworks",
            &t.pairs[0].1,
            &rg_name,
        );
    };
    let region = norm_region(vnet.location());
    let regions = Some(vec![region]);
    let security = t
        .tail
        .as_ref()
        .is_some_and(|x| x.to_ascii_lowercase().ends_with("securityadminrules"));
    let nms: Vec<String> = g
        .store
        .list(&format!(
            "/subscriptions/{}/providers/microsoft.network/networkmanagers",
            t.sub
        ))
        .map(|r| r.id.clone())
        .collect();
    let mut value = Vec::new();
    for nm_id in nms {
        if !in_nm_scope(g, &nm_id, &vnet.id) {
            continue;
        }
        if security {
            for d in deployments_of(g, &nm_id, "SecurityAdmin", &regions) {
                for sid in active_ids(g, d, req.now) {
                    let Some(sac) = g.store.get(&sid) else {
                        continue;
                    };
                    let mut groups = BTreeSet::new();
                    for rc in g.store.list(&format!("{}/rulecollections", sac.id)) {
                        for x in rc.props()["appliesToGroups"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                        {
                            let gid = x["networkGroupId"].as_str().unwrap_or("").to_string();
                            if is_member(g, &gid, vnet, req.now) {
                                groups.insert(gid.to_ascii_lowercase());
                            }
                        }
                    }
                    if !groups.is_empty() {
                        value.extend(rule_entries(g, sac, Some(&groups)));
                    }
                }
            }
        } else {
            for d in deployments_of(g, &nm_id, "Connectivity", &regions) {
                for cid in active_ids(g, d, req.now) {
                    let Some(c) = g.store.get(&cid) else { continue };
                    let mut groups = Vec::new();
                    for x in c.props()["appliesToGroups"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                    {
                        let gid = x["networkGroupId"].as_str().unwrap_or("");
                        if is_member(g, gid, vnet, req.now)
                            && let Some(item) = group_item(g, gid)
                        {
                            groups.push(item);
                        }
                    }
                    let is_hub = c.props()["hubs"].as_array().is_some_and(|h| {
                        h.iter().any(|x| {
                            x["resourceId"]
                                .as_str()
                                .is_some_and(|s| s.eq_ignore_ascii_case(&vnet.id))
                        })
                    });
                    if !groups.is_empty() || is_hub {
                        value.push(json!({"id": c.id, "properties": config_props(g, c, req.now), "configurationGroups": groups}));
                    }
                }
            }
        }
    }
    Reply::ok(json!({"value": value, "skipToken": ""}))
}
