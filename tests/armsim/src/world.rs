//! World files (the estate armsim starts with), drift injection and the `/_sim` control API.

use std::time::Instant;

use axum::http::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::Sim;
use crate::control::{FaultSpec, Hook};
use crate::core::{Inner, Req, Rg};
use crate::model::{Kind, parse_id};
use crate::reply::Reply;

/// Loads a world document into an empty simulator.
pub fn load(g: &mut Inner, w: &Value) -> Result<(), String> {
    let Some(subs) = w.get("subscriptions").and_then(Value::as_array) else {
        return Err("world: 'subscriptions' (array) is required".into());
    };
    for (i, s) in subs.iter().enumerate() {
        let Some(id) = s.get("subscriptionId").and_then(Value::as_str) else {
            return Err(format!(
                "world: subscriptions[{i}].subscriptionId is required"
            ));
        };
        g.subs.insert(id.to_ascii_lowercase(), id.to_string());
        for (j, rg) in s
            .get("resourceGroups")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let (Some(name), Some(loc)) = (
                rg.get("name").and_then(Value::as_str),
                rg.get("location").and_then(Value::as_str),
            ) else {
                return Err(format!(
                    "world: subscriptions[{i}].resourceGroups[{j}] needs name and location"
                ));
            };
            g.rgs.insert(
                format!("{}/{}", id.to_ascii_lowercase(), name.to_ascii_lowercase()),
                Rg {
                    name: name.to_string(),
                    location: loc.to_string(),
                },
            );
        }
    }
    for (i, r) in w
        .get("resources")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        put_raw(g, r, Instant::now(), "armsim-world")
            .map_err(|e| format!("world: resources[{i}]: {e}"))?;
    }
    Ok(())
}

/// Stores a resource body as-is (world loading and drift): no LRO, no API checks.
pub fn put_raw(g: &mut Inner, body: &Value, now: Instant, who: &str) -> Result<String, String> {
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .ok_or("resource needs an 'id'")?;
    let t = parse_id(id).ok_or_else(|| format!("'{id}' is not a resource id"))?;
    let kind =
        crate::kind_of_target(&t).ok_or_else(|| format!("'{id}': resource type not modelled"))?;
    if matches!(kind, Kind::Subnet | Kind::Peering) {
        return Err(format!(
            "'{id}': put subnets and peerings inside their virtual network"
        ));
    }
    let rg = match &t.rg {
        Some(rg) => Some(
            g.rg(&t.sub, rg)
                .ok_or_else(|| format!("'{id}': resource group '{rg}' is not in the world"))?
                .name
                .clone(),
        ),
        None => None,
    };
    if !g.subs.contains_key(&t.sub.to_ascii_lowercase()) {
        return Err(format!(
            "'{id}': subscription '{}' is not in the world",
            t.sub
        ));
    }
    let canon = t.id_of(t.pairs.len(), rg.as_deref());
    let mut b = body.clone();
    b["id"] = json!(canon);
    b["name"] = json!(t.pairs.last().map(|p| p.1.clone()).unwrap_or_default());
    b["type"] = json!(kind.arm_type());
    if let Some(o) = b.as_object_mut() {
        o.remove("etag");
        o.remove("systemData");
    }
    if !b["properties"].is_object() {
        b["properties"] = json!({});
    }
    if kind == Kind::VirtualNetwork {
        if b.get("location").and_then(Value::as_str).is_none() {
            return Err(format!("'{id}': a virtual network needs a location"));
        }
        let mut props = b["properties"].clone();
        crate::net::check_vnet(&mut props, &canon).map_err(|r| {
            r.body
                .map(|b| b["error"]["message"].to_string())
                .unwrap_or_default()
        })?;
        b["properties"] = props;
    }
    if b.get("tags").is_none_or(Value::is_null)
        && !matches!(kind, Kind::RecordSet | Kind::RuleCollectionGroup)
        && !kind.is_avnm()
    {
        b["tags"] = json!({});
    }
    if kind == Kind::StaticMember
        && let Some(v) = b["properties"]["resourceId"].as_str()
    {
        g.index_static_member(&canon, v);
    }
    let utc = OffsetDateTime::now_utc();
    let seq = g.store.next_etag();
    if let Some(r) = g.store.get_mut(&canon) {
        if r.body["tags"] != b["tags"] {
            r.prev_tags = r.body["tags"].clone();
            r.tags_changed_at = now;
        }
        r.body = b;
        r.etag_seq = seq;
        r.modified_at = utc;
        r.modified_by = who.to_string();
    } else {
        let req = fake_req(now, utc, who);
        let r = g.new_res(canon.clone(), kind, b, &req);
        g.store.insert(r);
    }
    Ok(canon)
}

fn fake_req(now: Instant, utc: OffsetDateTime, who: &str) -> Req {
    Req {
        method: Method::PUT,
        path: String::new(),
        query: Vec::new(),
        headers: Default::default(),
        body: None,
        api_version: String::new(),
        principal: who.to_string(),
        now,
        utc,
        fault: None,
    }
}

fn q<'a>(query: &'a [(String, String)], k: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(k))
        .map(|(_, v)| v.as_str())
}

fn bad(msg: impl Into<String>) -> Reply {
    Reply::status(400, json!({"error": msg.into()}))
}

/// The `/_sim` control and observation API (no auth, not counted, not recorded).
pub fn control(
    sim: &Sim,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    bytes: &[u8],
) -> Reply {
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => return bad(format!("body is not JSON: {e}")),
        }
    };
    let mut g = sim.lock();
    let now = Instant::now();
    match (method.as_str(), path.trim_end_matches('/')) {
        ("GET", "/_sim/stats") => Reply::ok(g.ctl.stats_json()),
        ("GET", "/_sim/log") => Reply::ok(g.ctl.log_json()),
        ("POST", "/_sim/reset") => {
            g.ctl.stats = Default::default();
            g.ctl.log.clear();
            g.ctl.arm_requests = 0;
            g.ctl.buckets.clear();
            g.ctl.dns_buckets.clear();
            g.ctl.pending_retries.clear();
            if q(query, "world") == Some("1") {
                let cfg = g.cfg.clone();
                let mut fresh = Inner::new(cfg.clone());
                fresh.ctl = std::mem::replace(&mut g.ctl, crate::control::Control::new(&cfg));
                if let Some(w) = &cfg.world
                    && let Err(e) = load(&mut fresh, w)
                {
                    return bad(e);
                }
                *g = fresh;
            }
            Reply::ok(json!({"reset": true}))
        }
        ("GET", "/_sim/faults") => Reply::ok(Value::Array(
            g.ctl
                .faults
                .iter()
                .map(|f| json!({"kind": f.spec.kind, "seen": f.seen, "fired": f.fired}))
                .collect(),
        )),
        ("POST", "/_sim/faults") => {
            let specs: Vec<Value> = match &body {
                Value::Array(a) => a.clone(),
                Value::Object(o) if o.contains_key("rules") => {
                    o["rules"].as_array().cloned().unwrap_or_default()
                }
                Value::Object(_) => vec![body.clone()],
                _ => return bad("expected a fault rule, an array of rules or {\"rules\": [...]}"),
            };
            for s in specs {
                let spec: FaultSpec = match serde_json::from_value(s) {
                    Ok(s) => s,
                    Err(e) => return bad(format!("invalid fault rule: {e}")),
                };
                if let Err(e) = g.ctl.add_fault(spec) {
                    return bad(e);
                }
            }
            Reply::ok(json!({"rules": g.ctl.faults.len()}))
        }
        ("DELETE", "/_sim/faults") => {
            g.ctl.faults.clear();
            Reply::ok(json!({"rules": 0}))
        }
        ("POST", "/_sim/hooks") => {
            let (Some(k), Some(pid)) = (
                body.get("after_request").and_then(Value::as_u64),
                body.get("kill_pid").and_then(Value::as_u64),
            ) else {
                return bad("expected {\"after_request\": K, \"kill_pid\": PID}");
            };
            let Ok(pid) = u32::try_from(pid) else {
                return bad("kill_pid out of range");
            };
            if pid <= 1 {
                return bad("refusing to kill pid 0 or 1");
            }
            // `after_request` counts ARM requests since start or the last /_sim/reset.
            let done = g.ctl.arm_requests;
            if k <= done {
                return Reply::status(
                    409,
                    json!({"error": format!("request {k} was already answered ({done} ARM requests so far)")}),
                );
            }
            g.ctl.hooks.push(Hook {
                after_request: k,
                kill_pid: pid,
                fired: false,
            });
            Reply::ok(json!({"hooks": g.ctl.hooks.len(), "arm_requests_so_far": done}))
        }
        ("DELETE", "/_sim/hooks") => {
            g.ctl.hooks.clear();
            Reply::ok(json!({"hooks": 0}))
        }
        ("POST", "/_sim/drift") => drift(&mut g, &body, now),
        ("POST", "/_sim/snapshot") => {
            let Some(name) = body.get("name").and_then(Value::as_str) else {
                return bad("expected {\"name\": NAME}");
            };
            let snap = g.snapshot();
            let resources = g.store.all().count();
            g.ctl.snapshots.insert(name.to_string(), snap);
            Reply::ok(json!({"snapshot": name, "resources": resources}))
        }
        ("POST", "/_sim/restore") => {
            let Some(name) = body.get("name").and_then(Value::as_str) else {
                return bad("expected {\"name\": NAME}");
            };
            let Some(snap) = g.ctl.snapshots.get(name).cloned() else {
                return Reply::status(404, json!({"error": format!("no snapshot '{name}'")}));
            };
            g.restore(&snap);
            g.ctl.pending_retries.clear();
            let resources = g.store.all().count();
            Reply::ok(json!({"restored": name, "resources": resources}))
        }
        ("GET", "/_sim/inventory") => Reply::ok(Value::Array(
            g.store
                .all()
                .map(|r| json!({"id": r.id, "type": r.kind.arm_type()}))
                .collect(),
        )),
        ("GET", "/_sim/members") => {
            let Some(gid) = q(query, "group") else {
                return bad("?group=<network group id> is required");
            };
            let Some(canon) = g.store.get(gid).map(|r| r.id.clone()) else {
                return Reply::status(404, json!({"error": "no such group"}));
            };
            let members: Vec<Value> = crate::avnm::members(&g, &canon, now)
                .into_iter()
                .map(|(id, src)| json!({"id": id, "source": src}))
                .collect();
            Reply::ok(json!({"group": canon, "members": members}))
        }
        ("GET", "/_sim/resourceGroups") => {
            let mut rgs: Vec<Value> = g.rgs.iter().map(|(k, r)| json!({"subscriptionId": k.split('/').next().unwrap_or(""), "name": r.name, "location": r.location})).collect();
            rgs.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            Reply::ok(Value::Array(rgs))
        }
        ("GET", "/_sim/resource") => {
            let Some(id) = q(query, "id") else {
                return bad("?id= is required");
            };
            match g.store.get(id) {
                Some(r) => Reply::ok(
                    json!({"id": r.id, "body": r.body, "etag": Inner::etag(r), "provisioningState": r.prov.state(now)}),
                ),
                None => Reply::status(404, json!({"error": "no such resource"})),
            }
        }
        ("GET", "/_sim/deployments") => {
            let mut out = Vec::new();
            for (nm, m) in &g.deployments {
                for d in m.values() {
                    out.push(json!({
                        "networkManager": nm, "type": d.deployment_type, "region": d.region,
                        "configurationIds": d.config_ids, "active": crate::avnm::active_ids(&g, d, now),
                        "failed": d.failure.is_some(),
                    }));
                }
            }
            Reply::ok(Value::Array(out))
        }
        _ => Reply::status(
            404,
            json!({"error": format!("no control endpoint {method} {path}")}),
        ),
    }
}

fn drift(g: &mut Inner, body: &Value, now: Instant) -> Reply {
    let op = body.get("op").and_then(Value::as_str).unwrap_or("");
    match op {
        "put" | "add_vnet" => {
            let Some(r) = body.get("resource") else {
                return bad("drift put needs 'resource'");
            };
            if op == "add_vnet"
                && !r
                    .get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|i| i.to_ascii_lowercase().contains("/virtualnetworks/"))
            {
                return bad("add_vnet needs a virtual network resource");
            }
            match put_raw(g, r, now, "armsim-drift") {
                Ok(id) => Reply::ok(json!({"id": id})),
                Err(e) => bad(e),
            }
        }
        "delete" => {
            let Some(id) = body.get("id").and_then(Value::as_str) else {
                return bad("drift delete needs 'id'");
            };
            let removed = g.store.remove_tree(id);
            if removed.is_empty() {
                return Reply::status(404, json!({"error": "no such resource"}));
            }
            Reply::ok(json!({"deleted": removed.len()}))
        }
        "retag" => {
            let (Some(id), Some(tags)) = (
                body.get("id").and_then(Value::as_str),
                body.get("tags").filter(|t| t.is_object()),
            ) else {
                return bad("drift retag needs 'id' and 'tags' (object)");
            };
            let seq = g.store.next_etag();
            let Some(r) = g.store.get_mut(id) else {
                return Reply::status(404, json!({"error": "no such resource"}));
            };
            r.prev_tags = r.body["tags"].clone();
            r.tags_changed_at = now;
            r.body["tags"] = tags.clone();
            r.etag_seq = seq;
            r.modified_by = "armsim-drift".into();
            r.modified_at = OffsetDateTime::now_utc();
            Reply::ok(json!({"id": r.id}))
        }
        _ => bad(format!(
            "unknown drift op '{op}' (put | add_vnet | delete | retag)"
        )),
    }
}
