//! Private DNS: zones, virtual network links and A record sets (api-version 2024-06-01).

use std::net::Ipv4Addr;

use axum::http::Method;
use serde_json::{Value, json};

use crate::control::FaultKind;
use crate::core::{Inner, Req, check_tags, list_page};
use crate::model::{Api, Kind, Target};
use crate::reply::Reply;
use crate::schema::{S, arr, f, int, ro, strip_read_only, sub_resource, validate};
use crate::store::{Prov, Res};

const MAX_RECORD_SETS: u64 = 25000;
const MAX_LINKS: u64 = 1000;
const MAX_REG_LINKS: u64 = 100;

fn zone_schema() -> S {
    S::Obj(
        "PrivateZone",
        vec![
            f("id", S::Str),
            ro("name"),
            ro("type"),
            f("location", S::Str),
            f("tags", S::Map),
            f("etag", S::Str),
            f(
                "properties",
                S::Obj(
                    "PrivateZoneProperties",
                    vec![
                        ro("maxNumberOfRecordSets"),
                        ro("numberOfRecordSets"),
                        ro("maxNumberOfVirtualNetworkLinks"),
                        ro("numberOfVirtualNetworkLinks"),
                        ro("maxNumberOfVirtualNetworkLinksWithRegistration"),
                        ro("numberOfVirtualNetworkLinksWithRegistration"),
                        ro("provisioningState"),
                        ro("internalId"),
                    ],
                ),
            ),
        ],
    )
}

fn link_schema() -> S {
    S::Obj(
        "VirtualNetworkLink",
        vec![
            f("id", S::Str),
            ro("name"),
            ro("type"),
            f("location", S::Str),
            f("tags", S::Map),
            f("etag", S::Str),
            f(
                "properties",
                S::Obj(
                    "VirtualNetworkLinkProperties",
                    vec![
                        f("virtualNetwork", sub_resource()),
                        f("registrationEnabled", S::Bool),
                        ro("virtualNetworkLinkState"),
                        ro("provisioningState"),
                    ],
                ),
            ),
        ],
    )
}

fn record_schema() -> S {
    S::Obj(
        "RecordSet",
        vec![
            f("id", S::Str),
            ro("name"),
            ro("type"),
            f("etag", S::Str),
            f(
                "properties",
                S::Obj(
                    "RecordSetProperties",
                    vec![
                        f("metadata", S::Map),
                        f("ttl", int(0, 2_147_483_647)),
                        ro("fqdn"),
                        ro("isAutoRegistered"),
                        f(
                            "aRecords",
                            arr(S::Obj("ARecord", vec![f("ipv4Address", S::Str)])),
                        ),
                        f("aaaaRecords", S::Any),
                        f("cnameRecord", S::Any),
                        f("mxRecords", S::Any),
                        f("ptrRecords", S::Any),
                        f("soaRecord", S::Any),
                        f("srvRecords", S::Any),
                        f("txtRecords", S::Any),
                    ],
                ),
            ),
        ],
    )
}

fn valid_zone_name(z: &str) -> bool {
    let labels: Vec<&str> = z.trim_end_matches('.').split('.').collect();
    labels.len() >= 2
        && z.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn valid_relative_name(n: &str) -> bool {
    n == "@"
        || (!n.is_empty()
            && n.len() <= 253
            && n.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'*')
            }))
}

fn precondition(req: &Req, existing: Option<&Res>, what: &str, name: &str) -> Result<(), Reply> {
    if req.header("if-none-match") == Some("*") && existing.is_some() {
        return Err(Reply::error(
            412,
            "PreconditionFailed",
            format!("The {what} '{name}' exists already and hence cannot be created again."),
        ));
    }
    if let Some(im) = req.header("if-match") {
        let ok = match existing {
            None => false,
            Some(e) => im == "*" || im.trim_matches('"') == Inner::etag(e),
        };
        if !ok {
            return Err(Reply::error(
                412,
                "PreconditionFailed",
                format!("The {what} '{name}' has been modified (etag mismatch)."),
            ));
        }
    }
    Ok(())
}

pub fn handle(g: &mut Inner, req: &Req, t: &Target) -> Reply {
    let rg_name =
        t.rg.as_ref()
            .and_then(|rg| g.rg(&t.sub, rg))
            .map(|r| r.name.clone());
    if t.pairs.is_empty() {
        if !req.is_get() {
            return Reply::error(
                405,
                "MethodNotAllowed",
                "Only GET is allowed on a collection.",
            );
        }
        let coll = format!(
            "{}/providers/microsoft.network/privatednszones",
            t.scope_prefix(rg_name.as_deref())
        )
        .to_ascii_lowercase();
        return list_page(g, req, &coll, 100, |r| Some(render(g, r, req.now)));
    }
    let Some(rg_name) = rg_name else {
        return Reply::gateway(
            404,
            "InvalidResourceType",
            "Private DNS zones live in resource groups.",
        );
    };
    let zone_id = t.id_of(1, Some(&rg_name));
    let zone_name = t.pairs[0].1.clone();
    let zone_exists = g.store.contains(&zone_id);
    // Collections under a zone.
    if t.pairs.len() == 1 && t.tail.is_some() {
        let tail = t.tail.clone().unwrap_or_default().to_ascii_lowercase();
        if !zone_exists {
            return Reply::resource_not_found(
                "Microsoft.Network/privateDnsZones",
                &zone_name,
                &rg_name,
            );
        }
        if !req.is_get() {
            return Reply::error(
                405,
                "MethodNotAllowed",
                "Only GET is allowed on a collection.",
            );
        }
        return match tail.as_str() {
            "virtualnetworklinks" => {
                if let Err(wait) = g.ctl.take_dns_link_read(&zone_id, req.now) {
                    return link_throttled(&zone_name, wait);
                }
                list_page(
                    g,
                    req,
                    &format!("{zone_id}/virtualnetworklinks"),
                    100,
                    |r| Some(render(g, r, req.now)),
                )
            }
            "a" | "all" => list_page(g, req, &format!("{zone_id}/{tail}"), 100, |r| {
                Some(render(g, r, req.now))
            }),
            "aaaa" | "cname" | "mx" | "ptr" | "soa" | "srv" | "txt" => {
                Reply::ok(json!({"value": []}))
            }
            _ => Reply::gateway(
                404,
                "InvalidResourceType",
                format!("The resource type '{tail}' is not supported under privateDnsZones."),
            ),
        };
    }
    if t.pairs.len() > 2 || t.tail.is_some() {
        return Reply::gateway(404, "InvalidResourceType", "Unsupported private DNS path.");
    }
    let chain = t.chain();
    let kind = match chain.as_str() {
        "privatednszones" => Kind::DnsZone,
        "privatednszones/virtualnetworklinks" => Kind::VnetLink,
        "privatednszones/a" => Kind::RecordSet,
        c if c.starts_with("privatednszones/") => {
            return Reply::bad_request(
                "BadRequest",
                format!("armsim models only A record sets, not '{}'.", t.pairs[1].0),
            );
        }
        _ => return Reply::gateway(404, "InvalidResourceType", "Unsupported private DNS path."),
    };
    let id = t.id_of(t.pairs.len(), Some(&rg_name));
    let name = t.pairs[t.pairs.len() - 1].1.clone();
    if kind != Kind::DnsZone && !zone_exists {
        return match req.method {
            Method::PUT => Reply::parent_not_found("Microsoft.Network/privateDnsZones", &zone_name),
            _ => {
                Reply::resource_not_found("Microsoft.Network/privateDnsZones", &zone_name, &rg_name)
            }
        };
    }
    match req.method {
        Method::GET => {
            if kind == Kind::VnetLink
                && let Err(wait) = g.ctl.take_dns_link_read(&zone_id, req.now)
            {
                return link_throttled(&zone_name, wait);
            }
            match g.store.get(&id) {
                Some(r) => Reply::ok(render(g, r, req.now)),
                None => match kind {
                    Kind::DnsZone => Reply::resource_not_found(
                        "Microsoft.Network/privateDnsZones",
                        &zone_name,
                        &rg_name,
                    ),
                    Kind::VnetLink => Reply::resource_not_found(
                        "Microsoft.Network/privateDnsZones/virtualNetworkLinks",
                        &format!("{zone_name}/{name}"),
                        &rg_name,
                    ),
                    _ => Reply::error(
                        404,
                        "NotFound",
                        format!(
                            "The resource record '{name}' does not exist in resource group '{rg_name}' of subscription '{}'.",
                            t.sub
                        ),
                    ),
                },
            }
        }
        Method::PUT => match kind {
            Kind::DnsZone => put_zone(g, req, &id, &name),
            Kind::VnetLink => put_link(g, req, &zone_id, &id, &name),
            _ => put_record(g, req, &zone_id, &zone_name, &id, &name),
        },
        Method::DELETE => delete(g, req, kind, &zone_id, &id, &name),
        _ => Reply::error(
            405,
            "MethodNotAllowed",
            format!("armsim does not model {} here.", req.method),
        ),
    }
}

fn link_throttled(zone: &str, wait: u64) -> Reply {
    Reply::error(
        429,
        "TooManyRequests",
        format!("Too many requests for virtual network links of private DNS zone '{zone}' (limit 500 reads per 5 minutes per zone). Please try again after '{wait}' seconds."),
    )
    .header("Retry-After", wait.to_string())
}

fn lro(g: &mut Inner, req: &Req, status: u16, body: Value) -> Reply {
    let sub = req.path.split('/').nth(2).unwrap_or("").to_string();
    let (op, url) = g.async_op(req, &sub, "global", Api::PrivateDns);
    let loc = format!(
        "{}/subscriptions/{sub}/providers/Microsoft.Network/privateDnsOperationResults/{op}?api-version={}",
        crate::core::HOST,
        req.api_version
    );
    Reply::status(status, body)
        .header("Azure-AsyncOperation", url)
        .header("Location", loc)
}

fn prov(g: &Inner, req: &Req) -> Prov {
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

fn prepare(req: &Req, schema: &S) -> Result<Value, Reply> {
    let Some(mut body) = req.body.clone() else {
        return Err(Reply::bad_request(
            "BadRequest",
            "The request body is missing.",
        ));
    };
    validate(&body, schema, "")
        .map_err(|e| Reply::bad_request("BadRequest", format!("The request is invalid: {e}")))?;
    strip_read_only(&mut body, schema);
    check_tags(&body)?;
    Ok(body)
}

fn check_global(body: &Value) -> Result<(), Reply> {
    match body.get("location").and_then(Value::as_str) {
        None => Err(Reply::bad_request(
            "LocationRequired",
            "The location property is required for this definition.",
        )),
        Some(l) if !l.eq_ignore_ascii_case("global") => Err(Reply::gateway(
            400,
            "LocationNotAvailableForResourceType",
            format!(
                "The provided location '{l}' is not available for resource type 'Microsoft.Network/privateDnsZones'. List of available regions for the resource type is 'global'."
            ),
        )),
        _ => Ok(()),
    }
}

fn upsert(
    g: &mut Inner,
    req: &Req,
    kind: Kind,
    id: &str,
    stored: Value,
    lro_prov: Option<Prov>,
) -> bool {
    let existed = g.store.contains(id);
    if existed {
        g.touch(id, req);
        let r = g.store.get_mut(id).expect("exists");
        r.body = stored;
        if let Some(p) = lro_prov {
            r.prov = p;
        }
    } else {
        let mut r = g.new_res(id.to_string(), kind, stored, req);
        if let Some(p) = lro_prov {
            r.prov = p;
        }
        g.store.insert(r);
    }
    existed
}

fn put_zone(g: &mut Inner, req: &Req, id: &str, name: &str) -> Reply {
    if !valid_zone_name(name) {
        return Reply::bad_request(
            "BadRequest",
            format!(
                "The zone name '{name}' is invalid: it must have at least two labels of letters, digits and hyphens."
            ),
        );
    }
    let body = match prepare(req, &zone_schema()) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = check_global(&body) {
        return r;
    }
    if let Err(r) = precondition(req, g.store.get(id), "Zone", name) {
        return r;
    }
    let stored = json!({"id": id, "name": name, "type": Kind::DnsZone.arm_type(), "location": "global", "tags": body.get("tags").cloned().filter(|t| !t.is_null()).unwrap_or_else(|| json!({})), "properties": {}});
    let p = prov(g, req);
    let existed = upsert(g, req, Kind::DnsZone, id, stored, Some(p));
    let out = render(g, g.store.get(id).expect("stored"), req.now);
    lro(g, req, if existed { 200 } else { 201 }, out)
}

fn put_link(g: &mut Inner, req: &Req, zone_id: &str, id: &str, name: &str) -> Reply {
    let body = match prepare(req, &link_schema()) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = check_global(&body) {
        return r;
    }
    if let Err(r) = precondition(req, g.store.get(id), "virtual network link", name) {
        return r;
    }
    let Some(vid) = body["properties"]["virtualNetwork"]["id"].as_str() else {
        return Reply::bad_request("BadRequest", "properties.virtualNetwork.id is required.");
    };
    let Some(vnet) = g.store.get(vid).filter(|v| v.kind == Kind::VirtualNetwork) else {
        return Reply::bad_request(
            "BadRequest",
            format!("The virtual network '{vid}' referenced by link '{name}' does not exist."),
        );
    };
    let vnet_id = vnet.id.clone();
    let reg = body["properties"]["registrationEnabled"]
        .as_bool()
        .unwrap_or(false);
    let links: Vec<(String, String, bool)> = g
        .store
        .list(&format!("{zone_id}/virtualnetworklinks"))
        .map(|l| {
            (
                l.id.clone(),
                l.props()["virtualNetwork"]["id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                l.props()["registrationEnabled"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    if let Some((other, _, _)) = links
        .iter()
        .find(|(lid, v, _)| v.eq_ignore_ascii_case(&vnet_id) && !lid.eq_ignore_ascii_case(id))
    {
        return Reply::conflict(
            "Conflict",
            format!(
                "A virtual network cannot be linked to the same private DNS zone more than once: '{vnet_id}' is already linked by '{other}'."
            ),
        );
    }
    let existed = links.iter().any(|(lid, _, _)| lid.eq_ignore_ascii_case(id));
    if !existed && links.len() as u64 >= MAX_LINKS {
        return Reply::bad_request(
            "BadRequest",
            format!(
                "The private DNS zone already has the maximum of {MAX_LINKS} virtual network links."
            ),
        );
    }
    if reg {
        if links
            .iter()
            .filter(|(lid, _, r)| *r && !lid.eq_ignore_ascii_case(id))
            .count() as u64
            >= MAX_REG_LINKS
        {
            return Reply::bad_request(
                "BadRequest",
                format!(
                    "The private DNS zone already has the maximum of {MAX_REG_LINKS} registration-enabled links."
                ),
            );
        }
        // A VNet can have a registration-enabled link to one private zone only.
        let sub = vnet_id.split('/').nth(2).unwrap_or("").to_string();
        let zones: Vec<String> = g
            .store
            .list(&format!(
                "/subscriptions/{sub}/providers/microsoft.network/privatednszones"
            ))
            .map(|z| z.id.clone())
            .collect();
        for z in zones {
            if z.eq_ignore_ascii_case(zone_id) {
                continue;
            }
            if g.store.list(&format!("{z}/virtualnetworklinks")).any(|l| {
                l.props()["registrationEnabled"].as_bool() == Some(true)
                    && l.props()["virtualNetwork"]["id"]
                        .as_str()
                        .is_some_and(|v| v.eq_ignore_ascii_case(&vnet_id))
            }) {
                return Reply::bad_request(
                    "BadRequest",
                    format!(
                        "Virtual network '{vnet_id}' already has a registration-enabled link to private zone '{z}'; a virtual network can be a registration network for one private zone only."
                    ),
                );
            }
        }
    }
    // 2024-06-01 has no `resolutionPolicy` (a later api-version adds it): neither accepted
    // nor answered.
    let props = json!({"virtualNetwork": {"id": vnet_id}, "registrationEnabled": reg});
    let stored = json!({"id": id, "name": name, "type": Kind::VnetLink.arm_type(), "location": "global", "tags": body.get("tags").cloned().filter(|t| !t.is_null()).unwrap_or_else(|| json!({})), "properties": props});
    let p = prov(g, req);
    let existed = upsert(g, req, Kind::VnetLink, id, stored, Some(p));
    let out = render(g, g.store.get(id).expect("stored"), req.now);
    lro(g, req, if existed { 200 } else { 201 }, out)
}

fn put_record(
    g: &mut Inner,
    req: &Req,
    zone_id: &str,
    zone_name: &str,
    id: &str,
    name: &str,
) -> Reply {
    if !valid_relative_name(name) {
        return Reply::bad_request(
            "BadRequest",
            format!("The record set name '{name}' is invalid."),
        );
    }
    let body = match prepare(req, &record_schema()) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = precondition(req, g.store.get(id), "record set", name) {
        return r;
    }
    let p = &body["properties"];
    for k in [
        "aaaaRecords",
        "cnameRecord",
        "mxRecords",
        "ptrRecords",
        "soaRecord",
        "srvRecords",
        "txtRecords",
    ] {
        if p.get(k).is_some_and(|v| !v.is_null()) {
            return Reply::bad_request(
                "BadRequest",
                format!("The record set of type 'A' cannot contain '{k}'."),
            );
        }
    }
    let recs = p["aRecords"].as_array().cloned().unwrap_or_default();
    for (i, r) in recs.iter().enumerate() {
        let ip = r["ipv4Address"].as_str().unwrap_or("");
        if ip.parse::<Ipv4Addr>().is_err() {
            return Reply::bad_request(
                "BadRequest",
                format!(
                    "The value '{ip}' of properties.aRecords[{i}].ipv4Address is not a valid IPv4 address."
                ),
            );
        }
    }
    if p.get("ttl").is_none_or(Value::is_null) {
        return Reply::bad_request(
            "BadRequest",
            "The record set TTL (properties.ttl) is required.",
        );
    }
    let existed = g.store.contains(id);
    if !existed && g.store.count(&format!("{zone_id}/all")) as u64 + 1 >= MAX_RECORD_SETS {
        return Reply::bad_request(
            "BadRequest",
            format!("The zone already has the maximum number of record sets ({MAX_RECORD_SETS})."),
        );
    }
    let fqdn = if name == "@" {
        format!("{zone_name}.")
    } else {
        format!("{name}.{zone_name}.")
    };
    let mut props =
        json!({"ttl": p["ttl"], "fqdn": fqdn, "isAutoRegistered": false, "aRecords": recs});
    if let Some(m) = p.get("metadata").filter(|m| !m.is_null()) {
        props["metadata"] = m.clone();
    }
    let stored =
        json!({"id": id, "name": name, "type": Kind::RecordSet.arm_type(), "properties": props});
    let existed = upsert(g, req, Kind::RecordSet, id, stored, None);
    let out = render(g, g.store.get(id).expect("stored"), req.now);
    Reply::status(if existed { 200 } else { 201 }, out)
}

fn delete(g: &mut Inner, req: &Req, kind: Kind, zone_id: &str, id: &str, name: &str) -> Reply {
    let Some(existing) = g.store.get(id).cloned() else {
        return Reply::empty(204);
    };
    if let Some(im) = req.header("if-match")
        && im != "*"
        && im.trim_matches('"') != Inner::etag(&existing)
    {
        return Reply::error(
            412,
            "PreconditionFailed",
            format!("The resource '{name}' has been modified (etag mismatch)."),
        );
    }
    match kind {
        Kind::DnsZone => {
            let links = g.store.count(&format!("{zone_id}/virtualnetworklinks"));
            if links > 0 {
                return Reply::conflict(
                    "Conflict",
                    format!(
                        "You cannot delete the private DNS zone '{name}' because it has {links} virtual network link(s). Delete all virtual network links of the zone first."
                    ),
                );
            }
            g.store.remove_tree(id);
            lro(g, req, 202, Value::Null).without_body()
        }
        Kind::VnetLink => {
            g.store.remove(id);
            lro(g, req, 202, Value::Null).without_body()
        }
        _ => {
            g.store.remove(id);
            Reply::empty(200)
        }
    }
}

impl Reply {
    fn without_body(mut self) -> Self {
        self.body = None;
        self
    }
}

pub fn render(g: &Inner, r: &Res, now: std::time::Instant) -> Value {
    let mut b = r.body.clone();
    b["etag"] = json!(Inner::etag(r));
    match r.kind {
        Kind::DnsZone => {
            let links: Vec<bool> = g
                .store
                .list(&format!("{}/virtualnetworklinks", r.id))
                .map(|l| l.props()["registrationEnabled"].as_bool().unwrap_or(false))
                .collect();
            // Every zone has its SOA record set.
            let records = g.store.count(&format!("{}/all", r.id)) as u64 + 1;
            b["properties"] = json!({
                "maxNumberOfRecordSets": MAX_RECORD_SETS,
                "maxNumberOfVirtualNetworkLinks": MAX_LINKS,
                "maxNumberOfVirtualNetworkLinksWithRegistration": MAX_REG_LINKS,
                "numberOfRecordSets": records,
                "numberOfVirtualNetworkLinks": links.len(),
                "numberOfVirtualNetworkLinksWithRegistration": links.iter().filter(|x| **x).count(),
                "provisioningState": r.prov.state(now),
                "internalId": format!("SUZvcjtQcml2YXRlWm9uZTs{}", &r.guid[..8]),
            });
        }
        Kind::VnetLink => {
            let state = r.prov.state(now);
            b["properties"]["provisioningState"] = json!(state);
            b["properties"]["virtualNetworkLinkState"] = json!(if state == "Updating" {
                "InProgress"
            } else {
                "Completed"
            });
        }
        _ => {}
    }
    b
}
