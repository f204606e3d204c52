//! Network RP resources: virtual networks (subnets, peerings), public IPs, Azure Firewalls,
//! firewall policies and their rule collection groups.

use std::net::Ipv4Addr;

use axum::http::Method;
use serde_json::{Map, Value, json};

use crate::avnm::{MemberCache, anm_peerings};
use crate::control::FaultKind;
use crate::core::{Inner, Req, check_tags, list_page, norm_region};
use crate::model::{Api, Kind, Target, valid_network_name};
use crate::reply::Reply;
use crate::schema::{S, any_int, arr, f, int, ro, strip_read_only, sub_resource, validate};
use crate::store::{Prov, Res};

fn top_common(name: &'static str, props: S, extra: Vec<crate::schema::F>) -> S {
    let mut v = vec![
        f("id", S::Str),
        ro("name"),
        ro("type"),
        f("location", S::Str),
        f("tags", S::Map),
        ro("etag"),
        f("properties", props),
    ];
    v.extend(extra);
    S::Obj(name, v)
}

fn subnet_schema() -> S {
    let pol = |n| {
        S::Enum(
            n,
            &[
                "Enabled",
                "Disabled",
                "NetworkSecurityGroupEnabled",
                "RouteTableEnabled",
            ],
        )
    };
    S::Obj(
        "Subnet",
        vec![
            f("id", S::Str),
            f("name", S::Str),
            ro("etag"),
            ro("type"),
            f(
                "properties",
                S::Obj(
                    "SubnetPropertiesFormat",
                    vec![
                        f("addressPrefix", S::Str),
                        f("addressPrefixes", arr(S::Str)),
                        f("networkSecurityGroup", S::Any),
                        f("routeTable", S::Any),
                        f("natGateway", S::Any),
                        f("serviceEndpoints", S::Any),
                        f("serviceEndpointPolicies", S::Any),
                        ro("privateEndpoints"),
                        ro("ipConfigurations"),
                        ro("ipConfigurationProfiles"),
                        f("ipAllocations", S::Any),
                        ro("resourceNavigationLinks"),
                        ro("serviceAssociationLinks"),
                        f("delegations", S::Any),
                        ro("purpose"),
                        ro("provisioningState"),
                        f(
                            "privateEndpointNetworkPolicies",
                            pol("VirtualNetworkPrivateEndpointNetworkPolicies"),
                        ),
                        f(
                            "privateLinkServiceNetworkPolicies",
                            S::Enum(
                                "VirtualNetworkPrivateLinkServiceNetworkPolicies",
                                &["Enabled", "Disabled"],
                            ),
                        ),
                        f("applicationGatewayIPConfigurations", S::Any),
                        f(
                            "sharingScope",
                            S::Enum("SharingScope", &["Tenant", "DelegatedServices"]),
                        ),
                        f("defaultOutboundAccess", S::Bool),
                        f("ipamPoolPrefixAllocations", S::Any),
                        f("serviceGateway", S::Any),
                    ],
                ),
            ),
        ],
    )
}

fn peering_schema() -> S {
    S::Obj(
        "VirtualNetworkPeering",
        vec![
            f("id", S::Str),
            f("name", S::Str),
            ro("etag"),
            ro("type"),
            f(
                "properties",
                S::Obj(
                    "VirtualNetworkPeeringPropertiesFormat",
                    vec![
                        f("allowVirtualNetworkAccess", S::Bool),
                        f("allowForwardedTraffic", S::Bool),
                        f("allowGatewayTransit", S::Bool),
                        f("useRemoteGateways", S::Bool),
                        f("remoteVirtualNetwork", sub_resource()),
                        f("localAddressSpace", S::Any),
                        f("localVirtualNetworkAddressSpace", S::Any),
                        f("remoteAddressSpace", S::Any),
                        f("remoteVirtualNetworkAddressSpace", S::Any),
                        f("remoteBgpCommunities", S::Any),
                        ro("remoteVirtualNetworkEncryption"),
                        f(
                            "peeringState",
                            S::Enum(
                                "VirtualNetworkPeeringState",
                                &["Initiated", "Connected", "Disconnected"],
                            ),
                        ),
                        f(
                            "peeringSyncLevel",
                            S::Enum(
                                "VirtualNetworkPeeringLevel",
                                &[
                                    "FullyInSync",
                                    "RemoteNotInSync",
                                    "LocalNotInSync",
                                    "LocalAndRemoteNotInSync",
                                ],
                            ),
                        ),
                        ro("provisioningState"),
                        f("doNotVerifyRemoteGateways", S::Bool),
                        ro("resourceGuid"),
                        f("peerCompleteVnets", S::Bool),
                        f("enableOnlyIPv6Peering", S::Bool),
                        f("localSubnetNames", arr(S::Str)),
                        f("remoteSubnetNames", arr(S::Str)),
                    ],
                ),
            ),
        ],
    )
}

fn schema_for(kind: Kind) -> S {
    match kind {
        Kind::VirtualNetwork => top_common(
            "VirtualNetwork",
            S::Obj(
                "VirtualNetworkPropertiesFormat",
                vec![
                    f(
                        "addressSpace",
                        S::Obj(
                            "AddressSpace",
                            vec![
                                f("addressPrefixes", arr(S::Str)),
                                f("ipamPoolPrefixAllocations", S::Any),
                            ],
                        ),
                    ),
                    f("dhcpOptions", S::Any),
                    f("flowTimeoutInMinutes", any_int()),
                    f("subnets", arr(subnet_schema())),
                    f("virtualNetworkPeerings", arr(peering_schema())),
                    ro("resourceGuid"),
                    ro("provisioningState"),
                    f("enableDdosProtection", S::Bool),
                    f("enableVmProtection", S::Bool),
                    f("ddosProtectionPlan", sub_resource()),
                    f("bgpCommunities", S::Any),
                    f("encryption", S::Any),
                    f("ipAllocations", S::Any),
                    ro("flowLogs"),
                    f(
                        "privateEndpointVNetPolicies",
                        S::Enum("PrivateEndpointVNetPolicies", &["Disabled", "Basic"]),
                    ),
                    ro("defaultPublicNatGateway"),
                    f("summarizedGatewayPrefixes", S::Any),
                ],
            ),
            vec![f("extendedLocation", S::Any)],
        ),
        Kind::Subnet => subnet_schema(),
        Kind::Peering => peering_schema(),
        Kind::PublicIp => top_common(
            "PublicIPAddress",
            S::Obj(
                "PublicIPAddressPropertiesFormat",
                vec![
                    f(
                        "publicIPAllocationMethod",
                        S::Enum("IPAllocationMethod", &["Static", "Dynamic"]),
                    ),
                    f(
                        "publicIPAddressVersion",
                        S::Enum("IPVersion", &["IPv4", "IPv6"]),
                    ),
                    ro("ipConfiguration"),
                    f("dnsSettings", S::Any),
                    f("ddosSettings", S::Any),
                    f("ipTags", S::Any),
                    f("ipAddress", S::Str),
                    f("publicIPPrefix", S::Any),
                    f("idleTimeoutInMinutes", any_int()),
                    ro("resourceGuid"),
                    ro("provisioningState"),
                    f("servicePublicIPAddress", S::Any),
                    f("natGateway", S::Any),
                    f("migrationPhase", S::Any),
                    f("linkedPublicIPAddress", S::Any),
                    f(
                        "deleteOption",
                        S::Enum("DeleteOptions", &["Delete", "Detach"]),
                    ),
                    ro("upgradedToV2"),
                ],
            ),
            vec![
                f("extendedLocation", S::Any),
                f(
                    "sku",
                    S::Obj(
                        "PublicIPAddressSku",
                        vec![
                            f(
                                "name",
                                S::Enum(
                                    "PublicIPAddressSkuName",
                                    &["Basic", "Standard", "StandardV2"],
                                ),
                            ),
                            f(
                                "tier",
                                S::Enum("PublicIPAddressSkuTier", &["Regional", "Global"]),
                            ),
                        ],
                    ),
                ),
                f("zones", arr(S::Str)),
            ],
        ),
        Kind::Firewall => top_common(
            "AzureFirewall",
            S::Obj(
                "AzureFirewallPropertiesFormat",
                vec![
                    f("applicationRuleCollections", S::Any),
                    f("natRuleCollections", S::Any),
                    f("networkRuleCollections", S::Any),
                    f(
                        "ipConfigurations",
                        arr(S::Obj(
                            "AzureFirewallIPConfiguration",
                            vec![
                                f("id", S::Str),
                                f("name", S::Str),
                                ro("etag"),
                                ro("type"),
                                f(
                                    "properties",
                                    S::Obj(
                                        "AzureFirewallIPConfigurationPropertiesFormat",
                                        vec![
                                            ro("privateIPAddress"),
                                            f("subnet", sub_resource()),
                                            f("publicIPAddress", sub_resource()),
                                            ro("provisioningState"),
                                        ],
                                    ),
                                ),
                            ],
                        )),
                    ),
                    f("managementIpConfiguration", S::Any),
                    ro("provisioningState"),
                    f(
                        "threatIntelMode",
                        S::Enum("AzureFirewallThreatIntelMode", &["Alert", "Deny", "Off"]),
                    ),
                    f("virtualHub", S::Any),
                    f("firewallPolicy", sub_resource()),
                    f("hubIPAddresses", S::Any),
                    ro("ipGroups"),
                    f(
                        "sku",
                        S::Obj(
                            "AzureFirewallSku",
                            vec![
                                f(
                                    "name",
                                    S::Enum("AzureFirewallSkuName", &["AZFW_VNet", "AZFW_Hub"]),
                                ),
                                f(
                                    "tier",
                                    S::Enum(
                                        "AzureFirewallSkuTier",
                                        &["Standard", "Premium", "Basic"],
                                    ),
                                ),
                            ],
                        ),
                    ),
                    f("additionalProperties", S::Map),
                    f("autoscaleConfiguration", S::Any),
                    ro("afcConfiguration"),
                    f("aiSecurityAddOn", S::Bool),
                ],
            ),
            vec![f("extendedLocation", S::Any), f("zones", arr(S::Str))],
        ),
        Kind::FirewallPolicy => top_common(
            "FirewallPolicy",
            S::Obj(
                "FirewallPolicyPropertiesFormat",
                vec![
                    ro("size"),
                    ro("ruleCollectionGroups"),
                    ro("kubeSelectorGroups"),
                    ro("provisioningState"),
                    f("basePolicy", sub_resource()),
                    ro("firewalls"),
                    ro("childPolicies"),
                    f(
                        "threatIntelMode",
                        S::Enum("AzureFirewallThreatIntelMode", &["Alert", "Deny", "Off"]),
                    ),
                    f("threatIntelWhitelist", S::Any),
                    f("insights", S::Any),
                    f("snat", S::Any),
                    f("sql", S::Any),
                    f(
                        "dnsSettings",
                        S::Obj(
                            "DnsSettings",
                            vec![
                                f("servers", arr(S::Str)),
                                f("enableProxy", S::Bool),
                                f("requireProxyForNetworkRules", S::Bool),
                            ],
                        ),
                    ),
                    f("explicitProxy", S::Any),
                    f("intrusionDetection", S::Any),
                    f("transportSecurity", S::Any),
                    f(
                        "sku",
                        S::Obj(
                            "FirewallPolicySku",
                            vec![f(
                                "tier",
                                S::Enum("FirewallPolicySkuTier", &["Standard", "Premium", "Basic"]),
                            )],
                        ),
                    ),
                    ro("afcManaged"),
                ],
            ),
            vec![f("identity", S::Any)],
        ),
        _ => rcg_schema(),
    }
}

fn rcg_schema() -> S {
    let strs = || arr(S::Str);
    let proto = || {
        arr(S::Enum(
            "FirewallPolicyRuleNetworkProtocol",
            &["TCP", "UDP", "Any", "ICMP"],
        ))
    };
    let network = S::Obj(
        "NetworkRule",
        vec![
            f("name", S::Str),
            f("description", S::Str),
            f("ruleType", S::Str),
            f("ipProtocols", proto()),
            f("sourceAddresses", strs()),
            f("destinationAddresses", strs()),
            f("destinationPorts", strs()),
            f("sourceIpGroups", strs()),
            f("destinationIpGroups", strs()),
            f("destinationFqdns", strs()),
            f("sourceKubeSelectorGroups", strs()),
            f("sourceGeoLocations", strs()),
            f("destinationGeoLocations", strs()),
        ],
    );
    let application = S::Obj(
        "ApplicationRule",
        vec![
            f("name", S::Str),
            f("description", S::Str),
            f("ruleType", S::Str),
            f("sourceAddresses", strs()),
            f("destinationAddresses", strs()),
            f(
                "protocols",
                arr(S::Obj(
                    "FirewallPolicyRuleApplicationProtocol",
                    vec![
                        f(
                            "protocolType",
                            S::Enum(
                                "FirewallPolicyRuleApplicationProtocolType",
                                &["Http", "Https"],
                            ),
                        ),
                        f("port", int(0, 64000)),
                    ],
                )),
            ),
            f("targetFqdns", strs()),
            f("targetUrls", strs()),
            f("fqdnTags", strs()),
            f("sourceIpGroups", strs()),
            f("sourceKubeSelectorGroups", strs()),
            f("terminateTLS", S::Bool),
            f("webCategories", strs()),
            f("httpHeadersToInsert", S::Any),
        ],
    );
    let nat = S::Obj(
        "NatRule",
        vec![
            f("name", S::Str),
            f("description", S::Str),
            f("ruleType", S::Str),
            f("ipProtocols", proto()),
            f("sourceAddresses", strs()),
            f("destinationAddresses", strs()),
            f("destinationPorts", strs()),
            f("translatedAddress", S::Str),
            f("translatedPort", S::Str),
            f("sourceIpGroups", strs()),
            f("translatedFqdn", S::Str),
        ],
    );
    let rules = || {
        arr(S::Union(
            "FirewallPolicyRuleType",
            "ruleType",
            vec![
                ("NetworkRule", network.clone()),
                ("ApplicationRule", application.clone()),
                ("NatRule", nat.clone()),
            ],
        ))
    };
    let filter = S::Obj(
        "FirewallPolicyFilterRuleCollection",
        vec![
            f("ruleCollectionType", S::Str),
            f("name", S::Str),
            f("priority", int(100, 65000)),
            f(
                "action",
                S::Obj(
                    "FirewallPolicyFilterRuleCollectionAction",
                    vec![f(
                        "type",
                        S::Enum(
                            "FirewallPolicyFilterRuleCollectionActionType",
                            &["Allow", "Deny"],
                        ),
                    )],
                ),
            ),
            f("rules", rules()),
        ],
    );
    let natc = S::Obj(
        "FirewallPolicyNatRuleCollection",
        vec![
            f("ruleCollectionType", S::Str),
            f("name", S::Str),
            f("priority", int(100, 65000)),
            f(
                "action",
                S::Obj(
                    "FirewallPolicyNatRuleCollectionAction",
                    vec![f(
                        "type",
                        S::Enum("FirewallPolicyNatRuleCollectionActionType", &["DNAT"]),
                    )],
                ),
            ),
            f("rules", rules()),
        ],
    );
    S::Obj(
        "FirewallPolicyRuleCollectionGroup",
        vec![
            f("id", S::Str),
            f("name", S::Str),
            ro("type"),
            ro("etag"),
            f(
                "properties",
                S::Obj(
                    "FirewallPolicyRuleCollectionGroupProperties",
                    vec![
                        ro("size"),
                        f("priority", int(100, 65000)),
                        f(
                            "ruleCollections",
                            arr(S::Union(
                                "FirewallPolicyRuleCollectionType",
                                "ruleCollectionType",
                                vec![
                                    ("FirewallPolicyFilterRuleCollection", filter),
                                    ("FirewallPolicyNatRuleCollection", natc),
                                ],
                            )),
                        ),
                        ro("provisioningState"),
                    ],
                ),
            ),
        ],
    )
}

// ------------------------------------------------------------------------ IP helpers

pub fn parse_cidr(s: &str) -> Option<(u32, u8)> {
    let (ip, bits) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    if bits > 32 {
        return None;
    }
    let v = u32::from(ip);
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    if v & !mask != 0 {
        return None; // host bits set: Azure rejects "10.1.0.1/22"
    }
    Some((v, bits))
}

fn cidr_range(c: (u32, u8)) -> (u64, u64) {
    let size = 1u64 << (32 - c.1 as u64);
    (c.0 as u64, c.0 as u64 + size - 1)
}

fn within(inner: (u32, u8), outer: (u32, u8)) -> bool {
    let (a, b) = cidr_range(inner);
    let (c, d) = cidr_range(outer);
    a >= c && b <= d
}

fn overlaps(x: (u32, u8), y: (u32, u8)) -> bool {
    let (a, b) = cidr_range(x);
    let (c, d) = cidr_range(y);
    a <= d && c <= b
}

// ------------------------------------------------------------------------ dispatch

pub fn handle(g: &mut Inner, req: &Req, t: &Target) -> Reply {
    let rg_name =
        t.rg.as_ref()
            .and_then(|rg| g.rg(&t.sub, rg))
            .map(|r| r.name.clone());
    if t.pairs.is_empty() {
        let Some(tail) = &t.tail else {
            return Reply::gateway(404, "InvalidResourceType", "No resource type given.");
        };
        let tl = tail.to_ascii_lowercase();
        if !matches!(
            tl.as_str(),
            "virtualnetworks" | "publicipaddresses" | "azurefirewalls" | "firewallpolicies"
        ) {
            return Reply::gateway(
                404,
                "InvalidResourceType",
                format!(
                    "The resource type '{tail}' could not be found in the namespace 'Microsoft.Network' for api version '{}'.",
                    req.api_version
                ),
            );
        }
        if !req.is_get() {
            return Reply::error(
                405,
                "MethodNotAllowed",
                "Only GET is allowed on a resource collection.",
            );
        }
        let coll = format!(
            "{}/providers/microsoft.network/{tl}",
            t.scope_prefix(rg_name.as_deref())
        )
        .to_ascii_lowercase();
        let page = g.cfg.page_size;
        let mut cache = MemberCache::default();
        return list_page(g, req, &coll, page, |r| {
            Some(render_with(g, r, req.now, &mut cache))
        });
    }
    let Some(rg_name) = rg_name else {
        return Reply::gateway(
            404,
            "InvalidResourceType",
            "Network resources live in resource groups.",
        );
    };
    let top_chain = t.pairs[0].0.to_ascii_lowercase();
    let Some(top_kind) = Kind::from_chain(&top_chain) else {
        return Reply::gateway(
            404,
            "InvalidResourceType",
            format!(
                "The resource type '{}' could not be found in the namespace 'Microsoft.Network' for api version '{}'.",
                t.pairs[0].0, req.api_version
            ),
        );
    };
    let top_id = t.id_of(1, Some(&rg_name));
    let top_name = t.pairs[0].1.clone();
    if t.pairs.len() == 1 && t.tail.is_some() {
        let tail = t.tail.clone().unwrap_or_default();
        let chain = format!("{top_chain}/{}", tail.to_ascii_lowercase());
        let Some(kind) = Kind::from_chain(&chain) else {
            return Reply::gateway(
                404,
                "InvalidResourceType",
                format!("The resource type '{tail}' is not supported here."),
            );
        };
        if !req.is_get() {
            return Reply::error(
                405,
                "MethodNotAllowed",
                "Only GET is allowed on a resource collection.",
            );
        }
        let Some(top) = g.store.get(&top_id) else {
            return Reply::resource_not_found(top_kind.arm_type(), &top_name, &rg_name);
        };
        return match kind {
            Kind::Subnet | Kind::Peering => {
                let key = if kind == Kind::Subnet {
                    "subnets"
                } else {
                    "virtualNetworkPeerings"
                };
                let v = render(g, top, req.now);
                Reply::ok(json!({"value": v["properties"][key].clone()}))
            }
            _ => {
                let coll = format!("{top_id}/rulecollectiongroups");
                let page = g.cfg.page_size;
                list_page(g, req, &coll, page, |r| Some(render(g, r, req.now)))
            }
        };
    }
    if t.pairs.len() > 2 || t.tail.is_some() {
        return Reply::gateway(
            404,
            "InvalidResourceType",
            format!("The resource type '{}' is not supported.", t.chain()),
        );
    }
    let Some(kind) = Kind::from_chain(&t.chain()) else {
        return Reply::gateway(
            404,
            "InvalidResourceType",
            format!("The resource type '{}' is not supported.", t.chain()),
        );
    };
    let id = t.id_of(t.pairs.len(), Some(&rg_name));
    let name = t.pairs[t.pairs.len() - 1].1.clone();
    if t.pairs.len() == 2 && !g.store.contains(&top_id) {
        return match req.method {
            Method::PUT => Reply::parent_not_found(top_kind.arm_type(), &top_name),
            _ => Reply::resource_not_found(top_kind.arm_type(), &top_name, &rg_name),
        };
    }
    match (kind, req.method.clone()) {
        (Kind::Subnet | Kind::Peering, Method::GET) => {
            let key = if kind == Kind::Subnet {
                "subnets"
            } else {
                "virtualNetworkPeerings"
            };
            let v = render(g, g.store.get(&top_id).expect("checked"), req.now);
            match v["properties"][key].as_array().and_then(|a| {
                a.iter().find(|s| {
                    s["name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(&name))
                })
            }) {
                Some(s) => Reply::ok(s.clone()),
                None => Reply::network_child_not_found(&id),
            }
        }
        (Kind::Subnet | Kind::Peering, Method::PUT) => {
            put_vnet_child(g, req, kind, &top_id, &id, &name)
        }
        (_, Method::GET) => match g.store.get(&id) {
            Some(r) => Reply::ok(render(g, r, req.now)),
            None if kind == Kind::RuleCollectionGroup => Reply::network_child_not_found(&id),
            None => Reply::resource_not_found(kind.arm_type(), &name, &rg_name),
        },
        (Kind::VirtualNetwork, Method::PATCH) => patch_tags(g, req, &id, &name, &rg_name),
        (_, Method::PUT) => put(g, req, t, kind, &id, &name, &rg_name),
        (Kind::FirewallPolicy | Kind::RuleCollectionGroup, Method::DELETE) => {
            delete_policy_part(g, req, kind, &id, &top_id)
        }
        _ => Reply::error(
            405,
            "MethodNotAllowed",
            format!(
                "armsim does not model {} on {}.",
                req.method,
                kind.arm_type()
            ),
        ),
    }
}

fn lro_reply(g: &mut Inner, req: &Req, status: u16, body: Value, location: &str) -> Reply {
    let sub = req.path.split('/').nth(2).unwrap_or("").to_string();
    let (_, url) = g.async_op(req, &sub, location, Api::Network);
    Reply::status(status, body).header("Azure-AsyncOperation", url)
}

fn prov_for(g: &Inner, req: &Req) -> Prov {
    let after = if matches!(req.fault, Some(FaultKind::FailedLro)) {
        "Failed"
    } else {
        "Succeeded"
    };
    Prov {
        until: Some(req.now + g.lro_delay(req)),
        during: "Updating",
        after,
    }
}

fn stored_top(id: &str, name: &str, kind: Kind, body: &Value, props: Value) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("name".into(), json!(name));
    m.insert("type".into(), json!(kind.arm_type()));
    m.insert("location".into(), body["location"].clone());
    m.insert(
        "tags".into(),
        body.get("tags")
            .cloned()
            .filter(|t| !t.is_null())
            .unwrap_or_else(|| json!({})),
    );
    for k in ["sku", "zones", "identity", "extendedLocation"] {
        if let Some(v) = body.get(k).filter(|v| !v.is_null()) {
            m.insert(k.into(), v.clone());
        }
    }
    m.insert("properties".into(), props);
    Value::Object(m)
}

fn put(
    g: &mut Inner,
    req: &Req,
    t: &Target,
    kind: Kind,
    id: &str,
    name: &str,
    rg_name: &str,
) -> Reply {
    if !valid_network_name(name) {
        return Reply::bad_request(
            "InvalidResourceName",
            format!(
                "Resource name {name} is invalid. The name can be up to 80 characters long. It must begin with a word character, and it must end with a word character or with '_'. The name may contain word characters or '.', '-', '_'."
            ),
        );
    }
    let Some(mut body) = req.body.clone() else {
        return Reply::invalid_format("The request body is missing.");
    };
    let schema = schema_for(kind);
    if let Err(e) = validate(&body, &schema, "") {
        return Reply::invalid_format(e);
    }
    strip_read_only(&mut body, &schema);
    if let Err(r) = check_tags(&body) {
        return r;
    }
    let existing = g.store.get(id).cloned();
    if let Some(im) = req.header("if-match")
        && existing
            .as_ref()
            .is_none_or(|e| im != "*" && Inner::etag(e) != im)
    {
        return Reply::error(
            412,
            "PreconditionFailed",
            format!("The If-Match header '{im}' does not match the current ETag of {id}."),
        );
    }
    let location = if kind == Kind::RuleCollectionGroup {
        String::new()
    } else {
        let Some(loc) = body
            .get("location")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return Reply::bad_request(
                "LocationRequired",
                "The location property is required for this definition.",
            );
        };
        if let Some(e) = &existing
            && norm_region(e.location()) != norm_region(&loc)
        {
            return Reply::bad_request(
                "InvalidResourceLocation",
                format!(
                    "The resource '{name}' already exists in location '{}' in resource group '{rg_name}'. A resource with the same name cannot be created in location '{loc}'. Please select a new resource name.",
                    e.location()
                ),
            );
        }
        loc
    };
    let mut props = body
        .get("properties")
        .cloned()
        .filter(|p| !p.is_null())
        .unwrap_or_else(|| json!({}));
    let top_id = t.id_of(1, Some(rg_name));
    let stored = match kind {
        Kind::VirtualNetwork => {
            if let Err(r) = check_vnet(&mut props, id) {
                return r;
            }
            if let Some(e) = &existing
                && let Err(r) = check_vnet_update(g, e, &mut props)
            {
                return r;
            }
            stored_top(id, name, kind, &body, props)
        }
        Kind::PublicIp => {
            let pip_ip = existing
                .as_ref()
                .and_then(|e| e.props()["ipAddress"].as_str().map(str::to_string))
                .unwrap_or_else(|| {
                    let n = g.store.etag_counter + 1;
                    format!(
                        "20.{}.{}.{}",
                        50 + (n / 65536) % 150,
                        (n / 256) % 256,
                        n % 256
                    )
                });
            props["ipAddress"] = json!(pip_ip);
            if props.get("publicIPAllocationMethod").is_none() {
                props["publicIPAllocationMethod"] = json!("Static");
            }
            if props.get("publicIPAddressVersion").is_none() {
                props["publicIPAddressVersion"] = json!("IPv4");
            }
            stored_top(id, name, kind, &body, props)
        }
        Kind::Firewall => {
            if let Err(r) = check_firewall(g, &mut props, &body, id, &location) {
                return r;
            }
            stored_top(id, name, kind, &body, props)
        }
        Kind::FirewallPolicy => {
            if let Some(busy) = policy_tree_busy(g, id, req) {
                return another_op(&busy);
            }
            if let Err(r) = check_policy(g, &props, id, &location) {
                return r;
            }
            if props.get("threatIntelMode").is_none() {
                props["threatIntelMode"] = json!("Alert");
            }
            if props.get("sku").is_none() {
                props["sku"] = json!({"tier": "Standard"});
            }
            stored_top(id, name, kind, &body, props)
        }
        Kind::RuleCollectionGroup => {
            if let Some(busy) = policy_tree_busy(g, &top_id, req) {
                return another_op(&busy);
            }
            if let Err(r) = check_rcg(&props, id) {
                return r;
            }
            json!({"id": id, "name": name, "type": kind.arm_type(), "properties": props})
        }
        _ => return Reply::error(405, "MethodNotAllowed", "Not modelled."),
    };
    let mut prov = prov_for(g, req);
    if kind == Kind::Firewall {
        // Firewalls take minutes in Azure: five times the simulator's LRO delay.
        prov.until = Some(req.now + g.lro_delay(req) * 5);
    }
    let status = if existing.is_some() { 200 } else { 201 };
    let tags_new = stored["tags"].clone();
    match existing {
        Some(e) => {
            g.touch(id, req);
            let r = g.store.get_mut(id).expect("exists");
            if kind == Kind::VirtualNetwork && e.tags() != &tags_new {
                r.prev_tags = e.body["tags"].clone();
                r.tags_changed_at = req.now;
            }
            r.body = stored;
            r.prov = prov.clone();
        }
        None => {
            let mut r = g.new_res(id.to_string(), kind, stored, req);
            r.prov = prov.clone();
            g.store.insert(r);
        }
    }
    // A write on a policy or one of its groups locks the policy tree until the LRO ends.
    if kind == Kind::RuleCollectionGroup
        && let Some(p) = g.store.get_mut(&top_id)
    {
        p.prov = Prov {
            until: prov.until,
            during: "Updating",
            after: p.prov.after,
        };
    }
    let loc = if kind == Kind::RuleCollectionGroup {
        g.store
            .get(&top_id)
            .map(|p| p.location().to_string())
            .unwrap_or_default()
    } else {
        location
    };
    let r = g.store.get(id).expect("stored");
    let body = render(g, r, req.now);
    if kind == Kind::Firewall {
        // The operation completes when the firewall's provisioning does.
        let delay = prov.until.map_or(std::time::Duration::ZERO, |t| {
            t.saturating_duration_since(req.now)
        });
        let sub = req.path.split('/').nth(2).unwrap_or("").to_string();
        let (_, url) = g.async_op_after(req, &sub, &loc, Api::Network, delay);
        return Reply::status(status, body).header("Azure-AsyncOperation", url);
    }
    lro_reply(g, req, status, body, &loc)
}

fn another_op(busy: &str) -> Reply {
    Reply::conflict(
        "AnotherOperationInProgress",
        format!(
            "Another operation on this or dependent resource is in progress. To retry later, please check provisioningState of the resource. Once the provisioningState is Succeeded, retry the operation. Resource: {busy}"
        ),
    )
}

pub(crate) fn check_vnet(props: &mut Value, id: &str) -> Result<(), Reply> {
    let prefixes: Vec<String> = props["addressSpace"]["addressPrefixes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    if prefixes.is_empty() {
        return Err(Reply::bad_request(
            "AddressSpaceMissing",
            format!(
                "Virtual network {id} must have an address space (properties.addressSpace.addressPrefixes)."
            ),
        ));
    }
    let mut space = Vec::new();
    for p in &prefixes {
        let Some(c) = parse_cidr(p) else {
            return Err(Reply::bad_request(
                "InvalidAddressPrefixFormat",
                format!(
                    "Address prefix {p} of resource {id} is not formatted correctly. It should follow CIDR notation, for example 10.0.0.0/24."
                ),
            ));
        };
        if space.iter().any(|o| overlaps(*o, c)) {
            return Err(Reply::bad_request(
                "VnetAddressSpacesOverlap",
                format!(
                    "Address space {p} of virtual network {id} overlaps another address space of the same virtual network."
                ),
            ));
        }
        space.push(c);
    }
    let subnets = props["subnets"].as_array().cloned().unwrap_or_default();
    let mut seen: Vec<(String, (u32, u8))> = Vec::new();
    for s in &subnets {
        let sname = s["name"].as_str().unwrap_or("").to_string();
        if sname.is_empty() {
            return Err(Reply::bad_request(
                "InvalidRequestFormat",
                "Every subnet needs a name.",
            ));
        }
        let sp = s["properties"]["addressPrefix"]
            .as_str()
            .or_else(|| s["properties"]["addressPrefixes"][0].as_str())
            .unwrap_or("");
        let Some(c) = parse_cidr(sp) else {
            return Err(Reply::bad_request(
                "InvalidAddressPrefixFormat",
                format!("Subnet '{sname}' has an invalid address prefix '{sp}'."),
            ));
        };
        if !space.iter().any(|o| within(c, *o)) {
            return Err(Reply::bad_request(
                "NetcfgSubnetRangeOutsideVnet",
                format!(
                    "Subnet '{sname}' is not valid because its IP address range is outside the IP address range of virtual network '{}'.",
                    id.rsplit('/').next().unwrap_or("")
                ),
            ));
        }
        if let Some((other, _)) = seen.iter().find(|(_, o)| overlaps(*o, c)) {
            return Err(Reply::bad_request(
                "NetcfgSubnetRangesOverlap",
                format!(
                    "Subnet '{sname}' is not valid because its IP address range overlaps with that of an existing subnet '{other}' in virtual network."
                ),
            ));
        }
        if seen.iter().any(|(n, _)| n.eq_ignore_ascii_case(&sname)) {
            return Err(Reply::bad_request(
                "DuplicateResourceName",
                format!("Subnet name '{sname}' is used twice in virtual network {id}."),
            ));
        }
        seen.push((sname, c));
    }
    // Keep only what the client may set on sub-objects.
    if let Some(a) = props["subnets"].as_array_mut() {
        for s in a {
            if let Some(o) = s.as_object_mut() {
                o.retain(|k, _| k == "name" || k == "properties");
            }
        }
    }
    if props.get("subnets").is_none() {
        props["subnets"] = json!([]);
    }
    if props.get("virtualNetworkPeerings").is_none() {
        props["virtualNetworkPeerings"] = json!([]);
    }
    // AVNM owns its ANM_ peerings: a GET-modify-PUT that sends them back does not make them
    // user peerings.
    if let Some(a) = props["virtualNetworkPeerings"].as_array_mut() {
        a.retain(|p| !p["name"].as_str().is_some_and(|n| n.starts_with("ANM_")));
        for p in a {
            if let Some(o) = p.as_object_mut() {
                o.retain(|k, _| k == "name" || k == "properties");
            }
        }
    }
    Ok(())
}

fn fnv(s: &str) -> u128 {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in s.to_ascii_lowercase().bytes() {
        h ^= b as u128;
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    h
}

/// Deterministic name of the peering AVNM creates for (configuration, remote VNet).
pub fn anm_peering_name(config: &str, remote: &str) -> String {
    format!("ANM_{:032X}", fnv(&format!("{config}|{remote}")))
}

fn anm_peering_guid(local: &str, remote: &str) -> String {
    uuid::Uuid::from_u128(fnv(&format!("{local}|{remote}"))).to_string()
}

fn check_firewall(
    g: &Inner,
    props: &mut Value,
    body: &Value,
    id: &str,
    location: &str,
) -> Result<(), Reply> {
    let tier = body["properties"]["sku"]["tier"]
        .as_str()
        .unwrap_or("Standard")
        .to_string();
    if props.get("sku").is_none() {
        props["sku"] = json!({"name": "AZFW_VNet", "tier": "Standard"});
    }
    if let Some(a) = props["ipConfigurations"].as_array_mut() {
        for (i, ipc) in a.iter_mut().enumerate() {
            let sid = ipc["properties"]["subnet"]["id"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let Some((vnet_id, sname)) = sid.rsplit_once("/subnets/") else {
                return Err(Reply::bad_request(
                    "AzureFirewallSubnetMissing",
                    format!(
                        "Firewall {id} ipConfigurations[{i}] must reference a subnet named AzureFirewallSubnet."
                    ),
                ));
            };
            if !sname.eq_ignore_ascii_case("AzureFirewallSubnet") {
                return Err(Reply::bad_request(
                    "AzureFirewallSubnetMissing",
                    format!(
                        "Firewall {id} must be deployed in a subnet named AzureFirewallSubnet, not '{sname}'."
                    ),
                ));
            }
            let Some(vnet) = g.store.get(vnet_id) else {
                return Err(Reply::bad_request(
                    "InvalidResourceReference",
                    format!(
                        "Resource {vnet_id} referenced by resource {id} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region."
                    ),
                ));
            };
            if norm_region(vnet.location()) != norm_region(location) {
                return Err(Reply::bad_request(
                    "InvalidResourceReference",
                    format!(
                        "Resource {vnet_id} referenced by resource {id} is in region '{}', the firewall in '{location}'; both must be in the same region.",
                        vnet.location()
                    ),
                ));
            }
            let subnet = vnet.props()["subnets"]
                .as_array()
                .and_then(|s| {
                    s.iter().find(|x| {
                        x["name"]
                            .as_str()
                            .is_some_and(|n| n.eq_ignore_ascii_case(sname))
                    })
                })
                .cloned();
            let Some(subnet) = subnet else {
                return Err(Reply::bad_request(
                    "InvalidResourceReference",
                    format!("Resource {sid} referenced by resource {id} was not found."),
                ));
            };
            if let Some(pip) = ipc["properties"]["publicIPAddress"]["id"].as_str()
                && !g.store.contains(pip)
            {
                return Err(Reply::bad_request(
                    "InvalidResourceReference",
                    format!("Resource {pip} referenced by resource {id} was not found."),
                ));
            }
            let prefix = subnet["properties"]["addressPrefix"]
                .as_str()
                .and_then(parse_cidr);
            if let Some((net, _)) = prefix {
                ipc["properties"]["privateIPAddress"] = json!(Ipv4Addr::from(net + 4).to_string());
            }
            let canon_vnet = vnet.id.clone();
            let canon_subnet = format!(
                "{canon_vnet}/subnets/{}",
                subnet["name"].as_str().unwrap_or(sname)
            );
            ipc["properties"]["subnet"]["id"] = json!(canon_subnet);
        }
    }
    if let Some(pid) = props["firewallPolicy"]["id"].as_str() {
        let Some(pol) = g.store.get(pid).filter(|p| p.kind == Kind::FirewallPolicy) else {
            return Err(Reply::bad_request(
                "InvalidResourceReference",
                format!(
                    "Resource {pid} referenced by resource {id} was not found. Please make sure that the referenced resource exists."
                ),
            ));
        };
        let ptier = pol.props()["sku"]["tier"].as_str().unwrap_or("Standard");
        if !ptier.eq_ignore_ascii_case(&tier) {
            return Err(Reply::bad_request(
                "AzureFirewallAndFirewallPolicyTierMismatch",
                format!(
                    "Firewall {id} of tier '{tier}' cannot be associated with firewall policy {pid} of tier '{ptier}'; the tiers must match."
                ),
            ));
        }
        props["firewallPolicy"] = json!({"id": pol.id});
    }
    Ok(())
}

fn children_of_policy(g: &Inner, pid: &str) -> Vec<String> {
    let sub = pid.split('/').nth(2).unwrap_or("");
    g.store
        .list(&format!(
            "/subscriptions/{sub}/providers/microsoft.network/firewallpolicies"
        ))
        .filter(|c| {
            c.props()["basePolicy"]["id"]
                .as_str()
                .is_some_and(|b| b.eq_ignore_ascii_case(pid))
        })
        .map(|c| c.id.clone())
        .collect()
}

/// The id of a busy policy in the tree of `pid` (itself, its parent, its children).
fn policy_tree_busy(g: &Inner, pid: &str, req: &Req) -> Option<String> {
    let mut ids = vec![pid.to_string()];
    if let Some(p) = g.store.get(pid)
        && let Some(b) = p.props()["basePolicy"]["id"].as_str()
    {
        ids.push(b.to_string());
    }
    ids.extend(children_of_policy(g, pid));
    ids.into_iter()
        .find(|i| g.store.get(i).is_some_and(|r| r.prov.busy(req.now)))
}

fn check_policy(g: &Inner, props: &Value, id: &str, location: &str) -> Result<(), Reply> {
    let tier = props["sku"]["tier"].as_str().unwrap_or("Standard");
    if let Some(base) = props["basePolicy"]["id"].as_str() {
        if base.eq_ignore_ascii_case(id) {
            return Err(Reply::bad_request(
                "FirewallPolicyBasePolicyCycle",
                format!("Firewall policy {id} cannot be its own base policy."),
            ));
        }
        let Some(parent) = g.store.get(base).filter(|p| p.kind == Kind::FirewallPolicy) else {
            return Err(Reply::bad_request(
                "InvalidResourceReference",
                format!("Base policy {base} referenced by firewall policy {id} was not found."),
            ));
        };
        if norm_region(parent.location()) != norm_region(location) {
            return Err(Reply::bad_request(
                "FirewallPolicyBasePolicyLocationMismatch",
                format!(
                    "Firewall policy {id} in '{location}' cannot use base policy {base} in '{}': a child policy must be in the same region as its parent.",
                    parent.location()
                ),
            ));
        }
        let ptier = parent.props()["sku"]["tier"].as_str().unwrap_or("Standard");
        if !ptier.eq_ignore_ascii_case(tier) {
            return Err(Reply::bad_request(
                "FirewallPolicyBasePolicyTierMismatch",
                format!(
                    "Firewall policy {id} of tier '{tier}' cannot inherit from base policy {base} of tier '{ptier}'."
                ),
            ));
        }
        // No cycles through the parent chain.
        let mut cur = parent.props()["basePolicy"]["id"]
            .as_str()
            .map(str::to_string);
        let mut depth = 0;
        while let Some(c) = cur {
            if c.eq_ignore_ascii_case(id) || depth > 64 {
                return Err(Reply::bad_request(
                    "FirewallPolicyBasePolicyCycle",
                    format!("Setting {base} as base policy of {id} creates a cycle."),
                ));
            }
            cur = g
                .store
                .get(&c)
                .and_then(|p| p.props()["basePolicy"]["id"].as_str().map(str::to_string));
            depth += 1;
        }
    }
    if tier != "Premium"
        && (props
            .get("intrusionDetection")
            .is_some_and(|v| !v.is_null())
            || props.get("transportSecurity").is_some_and(|v| !v.is_null()))
    {
        return Err(Reply::bad_request(
            "FirewallPolicyFeatureRequiresPremium",
            format!(
                "intrusionDetection and transportSecurity require the Premium tier; firewall policy {id} is '{tier}'."
            ),
        ));
    }
    Ok(())
}

fn check_rcg(props: &Value, id: &str) -> Result<(), Reply> {
    if props.get("priority").is_none_or(Value::is_null) {
        return Err(Reply::bad_request(
            "FirewallPolicyRuleCollectionGroupPriorityMissing",
            format!("Rule collection group {id} must have a priority (100-65000)."),
        ));
    }
    let mut names: Vec<String> = Vec::new();
    for rc in props["ruleCollections"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let n = rc["name"].as_str().unwrap_or("").to_string();
        if n.is_empty() {
            return Err(Reply::bad_request(
                "FirewallPolicyRuleCollectionNameMissing",
                format!("A rule collection in {id} has no name."),
            ));
        }
        if rc["priority"].is_null() {
            return Err(Reply::bad_request(
                "FirewallPolicyRuleCollectionPriorityMissing",
                format!("Rule collection '{n}' in {id} must have a priority (100-65000)."),
            ));
        }
        if names.iter().any(|x| x.eq_ignore_ascii_case(&n)) {
            return Err(Reply::bad_request(
                "FirewallPolicyRuleCollectionNameDuplicate",
                format!("Rule collection name '{n}' is used more than once in {id}."),
            ));
        }
        let mut rules: Vec<String> = Vec::new();
        for r in rc["rules"].as_array().cloned().unwrap_or_default() {
            let rn = r["name"].as_str().unwrap_or("").to_string();
            if rn.is_empty() || rules.iter().any(|x| x.eq_ignore_ascii_case(&rn)) {
                return Err(Reply::bad_request(
                    "FirewallPolicyRuleNameInvalid",
                    format!(
                        "Rule names in rule collection '{n}' of {id} must be present and unique ('{rn}')."
                    ),
                ));
            }
            rules.push(rn);
        }
        names.push(n);
    }
    Ok(())
}

fn put_vnet_child(
    g: &mut Inner,
    req: &Req,
    kind: Kind,
    vnet_id: &str,
    id: &str,
    name: &str,
) -> Reply {
    let Some(mut body) = req.body.clone() else {
        return Reply::invalid_format("The request body is missing.");
    };
    let schema = schema_for(kind);
    if let Err(e) = validate(&body, &schema, "") {
        return Reply::invalid_format(e);
    }
    strip_read_only(&mut body, &schema);
    if let Some(busy) = g
        .store
        .get(vnet_id)
        .filter(|v| v.prov.busy(req.now))
        .map(|v| v.id.clone())
    {
        return another_op(&busy);
    }
    let vnet = g.store.get(vnet_id).expect("checked").clone();
    let key = if kind == Kind::Subnet {
        "subnets"
    } else {
        "virtualNetworkPeerings"
    };
    let mut props = vnet.props().clone();
    let mut list = props[key].as_array().cloned().unwrap_or_default();
    let mut child_props = body.get("properties").cloned().unwrap_or_else(|| json!({}));
    if kind == Kind::Peering {
        let Some(remote_id) = child_props["remoteVirtualNetwork"]["id"]
            .as_str()
            .map(str::to_string)
        else {
            return Reply::bad_request(
                "InvalidRequestFormat",
                "Cannot parse the request. properties.remoteVirtualNetwork.id is required.",
            );
        };
        let Some(remote) = g.store.get(&remote_id) else {
            return Reply::bad_request(
                "InvalidResourceReference",
                format!("Resource {remote_id} referenced by resource {id} was not found."),
            );
        };
        child_props["remoteVirtualNetwork"] = json!({"id": remote.id});
        let sync = req
            .q("syncRemoteAddressSpace")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let existed = list.iter().any(|s| {
            s["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        });
        if sync && !existed {
            return Reply::bad_request(
                "SyncRemoteAddressSpaceRequiresExistingPeering",
                format!(
                    "syncRemoteAddressSpace can only be used on an existing peering; {id} does not exist."
                ),
            );
        }
        child_props["remoteAddressSpace"] = remote.props()["addressSpace"].clone();
        child_props["remoteVirtualNetworkAddressSpace"] = remote.props()["addressSpace"].clone();
        child_props["peeringState"] = json!("Initiated");
        child_props["peeringSyncLevel"] = json!("FullyInSync");
        for k in [
            "allowVirtualNetworkAccess",
            "allowForwardedTraffic",
            "allowGatewayTransit",
            "useRemoteGateways",
        ] {
            if child_props.get(k).is_none() {
                child_props[k] = json!(k == "allowVirtualNetworkAccess");
            }
        }
    }
    let entry = json!({"name": name, "properties": child_props});
    let existed = match list.iter_mut().find(|s| {
        s["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
    }) {
        Some(s) => {
            *s = entry;
            true
        }
        None => {
            list.push(entry);
            false
        }
    };
    props[key] = Value::Array(list);
    if kind == Kind::Subnet
        && let Err(r) = check_vnet(&mut props, vnet_id)
    {
        return r;
    }
    g.touch(vnet_id, req);
    let prov = prov_for(g, req);
    if let Some(v) = g.store.get_mut(vnet_id) {
        v.body["properties"] = props;
        v.prov = prov;
    }
    let v = render(g, g.store.get(vnet_id).expect("exists"), req.now);
    let child = v["properties"][key]
        .as_array()
        .and_then(|a| {
            a.iter().find(|s| {
                s["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
        })
        .cloned()
        .unwrap_or_default();
    let loc = vnet.location().to_string();
    lro_reply(g, req, if existed { 200 } else { 201 }, child, &loc)
}

fn patch_tags(g: &mut Inner, req: &Req, id: &str, name: &str, rg_name: &str) -> Reply {
    let schema = S::Obj("TagsObject", vec![f("tags", S::Map)]);
    let body = req.body_obj();
    if let Err(e) = validate(&body, &schema, "") {
        return Reply::invalid_format(e);
    }
    if let Err(r) = check_tags(&body) {
        return r;
    }
    let Some(old) = g.store.get(id).map(|r| r.body["tags"].clone()) else {
        return Reply::resource_not_found(Kind::VirtualNetwork.arm_type(), name, rg_name);
    };
    let new = body
        .get("tags")
        .cloned()
        .filter(|t| !t.is_null())
        .unwrap_or_else(|| json!({}));
    g.touch(id, req);
    let r = g.store.get_mut(id).expect("exists");
    if old != new {
        r.prev_tags = old;
        r.tags_changed_at = req.now;
    }
    r.body["tags"] = new;
    Reply::ok(render(g, g.store.get(id).expect("exists"), req.now))
}

fn delete_policy_part(g: &mut Inner, req: &Req, kind: Kind, id: &str, pid: &str) -> Reply {
    if !g.store.contains(id) {
        return Reply::empty(204);
    }
    if let Some(busy) = policy_tree_busy(g, pid, req) {
        return another_op(&busy);
    }
    if kind == Kind::FirewallPolicy {
        let children = children_of_policy(g, id);
        if !children.is_empty() {
            return Reply::bad_request(
                "FirewallPolicyHasChildPolicies",
                format!(
                    "Firewall policy {id} cannot be deleted because it is the base policy of: {}.",
                    children.join(", ")
                ),
            );
        }
        let fws = firewalls_of(g, id);
        if !fws.is_empty() {
            return Reply::bad_request(
                "FirewallPolicyInUse",
                format!(
                    "Firewall policy {id} cannot be deleted because it is associated with firewall(s): {}.",
                    fws.join(", ")
                ),
            );
        }
    }
    let loc = g
        .store
        .get(pid)
        .map(|p| p.location().to_string())
        .unwrap_or_default();
    g.store.remove_tree(id);
    let delay = g.lro_delay(req);
    if kind == Kind::RuleCollectionGroup
        && let Some(p) = g.store.get_mut(pid)
    {
        p.prov = Prov {
            until: Some(req.now + delay),
            during: "Updating",
            after: p.prov.after,
        };
    }
    let sub = req.path.split('/').nth(2).unwrap_or("").to_string();
    let (_, async_url) = g.async_op(req, &sub, &loc, Api::Network);
    let location = g.location_op(
        req,
        &format!(
            "/subscriptions/{sub}/providers/Microsoft.Network/locations/{}",
            norm_region(&loc)
        ),
        200,
    );
    Reply::empty(202)
        .header("Azure-AsyncOperation", async_url)
        .header("Location", location)
}

/// The ip configurations (of Azure Firewalls) placed in a subnet: what makes it "in use".
fn subnet_ip_configurations(g: &Inner, subnet_id: &str) -> Vec<String> {
    let sub = subnet_id.split('/').nth(2).unwrap_or("");
    let mut out = Vec::new();
    for f in g.store.list(&format!(
        "/subscriptions/{sub}/providers/microsoft.network/azurefirewalls"
    )) {
        for c in f.props()["ipConfigurations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if c["properties"]["subnet"]["id"]
                .as_str()
                .is_some_and(|x| x.eq_ignore_ascii_case(subnet_id))
            {
                let n = c["name"].as_str().unwrap_or("ipconfig");
                out.push(format!("{}/azureFirewallIpConfigurations/{n}", f.id));
            }
        }
    }
    out
}

/// A VNet PUT may not delete or re-address a subnet that is in use (real error codes
/// `InUseSubnetCannotBeDeleted` / `InUseSubnetCannotBeUpdated`), and re-sent user peerings keep
/// the remote address space the service last synced (only `syncRemoteAddressSpace` updates it).
fn check_vnet_update(g: &Inner, existing: &Res, props: &mut Value) -> Result<(), Reply> {
    let new_subnets = props["subnets"].as_array().cloned().unwrap_or_default();
    for old in existing.props()["subnets"].as_array().into_iter().flatten() {
        let name = old["name"].as_str().unwrap_or("");
        let sid = format!("{}/subnets/{name}", existing.id);
        let users = subnet_ip_configurations(g, &sid);
        if users.is_empty() {
            continue;
        }
        let prefix = |s: &Value| {
            s["properties"]["addressPrefix"]
                .as_str()
                .or_else(|| s["properties"]["addressPrefixes"][0].as_str())
                .map(str::to_string)
        };
        match new_subnets.iter().find(|s| {
            s["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        }) {
            None => {
                return Err(Reply::bad_request(
                    "InUseSubnetCannotBeDeleted",
                    format!(
                        "Subnet {name} is in use by {} and cannot be deleted. In order to delete the subnet, delete all the resources within the subnet. See aka.ms/deletesubnet.",
                        users[0]
                    ),
                ));
            }
            Some(s) if prefix(s) != prefix(old) => {
                return Err(Reply::bad_request(
                    "InUseSubnetCannotBeUpdated",
                    format!(
                        "Subnet {name} is in use by {} and its address prefix cannot be updated.",
                        users[0]
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(a) = props["virtualNetworkPeerings"].as_array_mut() {
        for p in a {
            let name = p["name"].as_str().unwrap_or("").to_string();
            if let Some(old) = existing.props()["virtualNetworkPeerings"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|o| {
                    o["name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(&name))
                })
            {
                for k in ["remoteAddressSpace", "remoteVirtualNetworkAddressSpace"] {
                    if let Some(v) = old["properties"].get(k) {
                        p["properties"][k] = v.clone();
                    }
                }
            }
        }
    }
    Ok(())
}

fn firewalls_of(g: &Inner, pid: &str) -> Vec<String> {
    let sub = pid.split('/').nth(2).unwrap_or("");
    g.store
        .list(&format!(
            "/subscriptions/{sub}/providers/microsoft.network/azurefirewalls"
        ))
        .filter(|f| {
            f.props()["firewallPolicy"]["id"]
                .as_str()
                .is_some_and(|x| x.eq_ignore_ascii_case(pid))
        })
        .map(|f| f.id.clone())
        .collect()
}

/// The sync level of a user peering of `local`: `Local*` when the remote VNet's address space
/// changed since this peering last synced it, `Remote*` when the remote VNet's peering back
/// has a stale copy of this VNet's space (Microsoft: "Update the address space for a peered
/// virtual network": the peering shows sync required until it is synced with
/// `syncRemoteAddressSpace=true`). AVNM's peerings are rendered from its goal state and are
/// always in sync (AVNM reapplies them).
fn peering_sync_level(g: &Inner, local: &Res, sp: &Value) -> &'static str {
    let Some(remote) = sp["remoteVirtualNetwork"]["id"]
        .as_str()
        .and_then(|id| g.store.get(id))
    else {
        return "FullyInSync";
    };
    let set = |v: &Value| {
        let mut a: Vec<String> = v["addressPrefixes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect();
        a.sort();
        a
    };
    let local_stale = sp.get("remoteAddressSpace").is_some()
        && set(&sp["remoteAddressSpace"]) != set(&remote.props()["addressSpace"]);
    let remote_stale = remote.props()["virtualNetworkPeerings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|q| {
            q["properties"]["remoteVirtualNetwork"]["id"]
                .as_str()
                .is_some_and(|x| x.eq_ignore_ascii_case(&local.id))
        })
        .any(|q| {
            q["properties"].get("remoteAddressSpace").is_some()
                && set(&q["properties"]["remoteAddressSpace"])
                    != set(&local.props()["addressSpace"])
        });
    match (local_stale, remote_stale) {
        (false, false) => "FullyInSync",
        (true, false) => "LocalNotInSync",
        (false, true) => "RemoteNotInSync",
        (true, true) => "LocalAndRemoteNotInSync",
    }
}

/// Renders a Network RP resource as GET returns it.
pub fn render(g: &Inner, r: &Res, now: std::time::Instant) -> Value {
    render_with(g, r, now, &mut MemberCache::default())
}

/// Renders with a group-member cache shared across the items of one list response.
pub fn render_with(g: &Inner, r: &Res, now: std::time::Instant, cache: &mut MemberCache) -> Value {
    let mut b = r.body.clone();
    let etag = Inner::etag(r);
    let state = r.prov.state(now);
    let o = b.as_object_mut().expect("object");
    o.insert("etag".into(), json!(etag));
    let mut props = o.remove("properties").unwrap_or_else(|| json!({}));
    props["provisioningState"] = json!(state);
    match r.kind {
        Kind::VirtualNetwork => {
            props["resourceGuid"] = json!(r.guid);
            if props.get("enableDdosProtection").is_none() {
                props["enableDdosProtection"] = json!(false);
            }
            if props.get("privateEndpointVNetPolicies").is_none() {
                props["privateEndpointVNetPolicies"] = json!("Disabled");
            }
            for (key, ty) in [
                ("subnets", "Microsoft.Network/virtualNetworks/subnets"),
                (
                    "virtualNetworkPeerings",
                    "Microsoft.Network/virtualNetworks/virtualNetworkPeerings",
                ),
            ] {
                if let Some(a) = props[key].as_array_mut() {
                    for s in a.iter_mut() {
                        let n = s["name"].as_str().unwrap_or("").to_string();
                        let mut sp = s["properties"].clone();
                        if !sp.is_object() {
                            sp = json!({});
                        }
                        sp["provisioningState"] = json!(state);
                        if key == "subnets" {
                            let users =
                                subnet_ip_configurations(g, &format!("{}/subnets/{n}", r.id));
                            if !users.is_empty() {
                                sp["ipConfigurations"] = json!(
                                    users.iter().map(|u| json!({"id": u})).collect::<Vec<_>>()
                                );
                            }
                            if sp.get("privateEndpointNetworkPolicies").is_none() {
                                sp["privateEndpointNetworkPolicies"] = json!("Disabled");
                            }
                            if sp.get("privateLinkServiceNetworkPolicies").is_none() {
                                sp["privateLinkServiceNetworkPolicies"] = json!("Enabled");
                            }
                        } else {
                            sp["resourceGuid"] =
                                json!(format!("{}{}", &r.guid[..24], &format!("{:012x}", n.len())));
                            if state == "Succeeded" {
                                sp["peeringState"] = json!("Connected");
                            }
                            sp["peeringSyncLevel"] = json!(peering_sync_level(g, r, &sp));
                        }
                        *s = json!({"name": n, "id": format!("{}/{key}/{n}", r.id), "etag": etag, "properties": sp, "type": ty});
                    }
                }
            }
            // Peerings AVNM's hub-and-spoke deployments created.
            let anm = anm_peerings(g, r, now, cache);
            if !anm.is_empty() {
                if !props["virtualNetworkPeerings"].is_array() {
                    props["virtualNetworkPeerings"] = json!([]);
                }
                let list = props["virtualNetworkPeerings"]
                    .as_array_mut()
                    .expect("array");
                for (remote, config) in anm {
                    let Some(rv) = g.store.get(&remote) else {
                        continue;
                    };
                    let name = anm_peering_name(&config, &rv.id);
                    let space = rv.props()["addressSpace"].clone();
                    list.push(json!({
                        "name": name,
                        "id": format!("{}/virtualNetworkPeerings/{name}", r.id),
                        "etag": etag,
                        "type": "Microsoft.Network/virtualNetworks/virtualNetworkPeerings",
                        "properties": {
                            "provisioningState": "Succeeded",
                            "resourceGuid": anm_peering_guid(&r.id, &rv.id),
                            "peeringState": "Connected",
                            "peeringSyncLevel": "FullyInSync",
                            "remoteVirtualNetwork": {"id": rv.id},
                            "allowVirtualNetworkAccess": true,
                            "allowForwardedTraffic": false,
                            "allowGatewayTransit": false,
                            "useRemoteGateways": false,
                            "doNotVerifyRemoteGateways": false,
                            "peerCompleteVnets": true,
                            "remoteAddressSpace": space,
                            "remoteVirtualNetworkAddressSpace": space,
                        },
                    }));
                }
            }
        }
        Kind::PublicIp => {
            props["resourceGuid"] = json!(r.guid);
            if props.get("idleTimeoutInMinutes").is_none() {
                props["idleTimeoutInMinutes"] = json!(4);
            }
        }
        Kind::Firewall => {
            if let Some(a) = props["ipConfigurations"].as_array_mut() {
                for c in a.iter_mut().filter(|c| c.is_object()) {
                    if !c["properties"].is_object() {
                        c["properties"] = json!({});
                    }
                    let n = c["name"].as_str().unwrap_or("ipconfig").to_string();
                    c["id"] = json!(format!("{}/azureFirewallIpConfigurations/{n}", r.id));
                    c["etag"] = json!(etag);
                    c["type"] =
                        json!("Microsoft.Network/azureFirewalls/azureFirewallIpConfigurations");
                    c["properties"]["provisioningState"] = json!(state);
                }
            }
            for k in [
                "applicationRuleCollections",
                "natRuleCollections",
                "networkRuleCollections",
            ] {
                if props.get(k).is_none() {
                    props[k] = json!([]);
                }
            }
            if props.get("threatIntelMode").is_none() {
                props["threatIntelMode"] = json!("Alert");
            }
        }
        Kind::FirewallPolicy => {
            let rcgs: Vec<Value> = g
                .store
                .list(&format!("{}/rulecollectiongroups", r.id))
                .map(|x| json!({"id": x.id}))
                .collect();
            props["ruleCollectionGroups"] = json!(rcgs);
            props["childPolicies"] = json!(
                children_of_policy(g, &r.id)
                    .into_iter()
                    .map(|i| json!({"id": i}))
                    .collect::<Vec<_>>()
            );
            props["firewalls"] = json!(
                firewalls_of(g, &r.id)
                    .into_iter()
                    .map(|i| json!({"id": i}))
                    .collect::<Vec<_>>()
            );
        }
        _ => {}
    }
    o.insert("properties".into(), props);
    b
}
