//! Shared simulator state and the helpers every resource provider module uses.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Config;
use crate::control::{Control, FaultKind};
use crate::model::{Api, Kind};
use crate::reply::Reply;
use crate::store::{Prov, Res, Store};

pub const HOST: &str = "https://management.azure.com";

#[derive(Debug, Clone)]
pub struct Rg {
    pub name: String,
    pub location: String,
}

/// A long-running operation, answered on its polling URL.
#[derive(Debug, Clone)]
pub struct Op {
    pub done_at: Instant,
    pub failure: Option<(String, String)>,
    /// Status code of a `Location` poll once done (AVNM: 204; Network RP deletes: 200).
    pub location_final: u16,
}

/// The goal state of one (configuration type, region) of a network manager.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub deployment_type: String,
    pub region: String,
    pub config_ids: Vec<String>,
    /// What was deployed before this commit (still active until this one completes).
    pub previous: Vec<String>,
    pub commit_time: OffsetDateTime,
    pub committed_at: Instant,
    pub failure: Option<String>,
}

pub struct Inner {
    pub cfg: Config,
    pub store: Store,
    /// Lower-cased subscription id -> canonical.
    pub subs: HashMap<String, String>,
    /// Lower-cased `sub/rg` -> RG.
    pub rgs: HashMap<String, Rg>,
    pub ops: HashMap<String, Op>,
    /// Lower-cased network manager id -> (type lower, region lower) -> deployment.
    pub deployments: HashMap<String, HashMap<(String, String), Deployment>>,
    /// (group id, VNet id), lower-cased -> static member ids (verified on use, so stale
    /// entries after deletes are harmless).
    pub static_index: HashMap<(String, String), BTreeSet<String>>,
    pub ctl: Control,
}

/// A copy of the simulated estate: resources, resource groups, operations and AVNM
/// deployments (not the control plane: counters, log, faults, hooks, buckets).
#[derive(Debug, Clone)]
pub struct WorldSnapshot {
    store: Store,
    subs: HashMap<String, String>,
    rgs: HashMap<String, Rg>,
    ops: HashMap<String, Op>,
    deployments: HashMap<String, HashMap<(String, String), Deployment>>,
    static_index: HashMap<(String, String), BTreeSet<String>>,
}

impl Inner {
    /// Copies the estate.
    pub fn snapshot(&self) -> WorldSnapshot {
        WorldSnapshot {
            store: self.store.clone(),
            subs: self.subs.clone(),
            rgs: self.rgs.clone(),
            ops: self.ops.clone(),
            deployments: self.deployments.clone(),
            static_index: self.static_index.clone(),
        }
    }

    /// Puts a copied estate back (the control plane is left as it is).
    pub fn restore(&mut self, s: &WorldSnapshot) {
        let s = s.clone();
        self.store = s.store;
        self.subs = s.subs;
        self.rgs = s.rgs;
        self.ops = s.ops;
        self.deployments = s.deployments;
        self.static_index = s.static_index;
    }
}

/// One parsed ARM request.
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Option<Value>,
    pub api_version: String,
    pub principal: String,
    pub now: Instant,
    pub utc: OffsetDateTime,
    pub fault: Option<FaultKind>,
}

impl Req {
    pub fn q(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
    pub fn force(&self) -> bool {
        self.q("force")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers.get(k).and_then(|v| v.to_str().ok())
    }
    pub fn body_obj(&self) -> Value {
        self.body.clone().unwrap_or_else(|| json!({}))
    }
    pub fn is_get(&self) -> bool {
        self.method == Method::GET
    }
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// RFC 3339 without sub-seconds, as AVNM prints commit times.
pub fn rfc3339_secs(t: OffsetDateTime) -> String {
    rfc3339(t.replace_nanosecond(0).unwrap_or(t))
}

pub fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Inner {
    pub fn new(cfg: Config) -> Self {
        Inner {
            ctl: Control::new(&cfg),
            cfg,
            store: Store::default(),
            subs: HashMap::new(),
            rgs: HashMap::new(),
            ops: HashMap::new(),
            deployments: HashMap::new(),
            static_index: HashMap::new(),
        }
    }

    pub fn rg(&self, sub: &str, rg: &str) -> Option<&Rg> {
        self.rgs.get(&format!(
            "{}/{}",
            sub.to_ascii_lowercase(),
            rg.to_ascii_lowercase()
        ))
    }

    /// Records that static member `member_id` points at `vnet_id`.
    pub fn index_static_member(&mut self, member_id: &str, vnet_id: &str) {
        let gid = member_id[..member_id
            .to_ascii_lowercase()
            .rfind("/staticmembers/")
            .unwrap_or(0)]
            .to_ascii_lowercase();
        self.static_index
            .entry((gid, vnet_id.to_ascii_lowercase()))
            .or_default()
            .insert(member_id.to_ascii_lowercase());
    }

    /// A fresh resource record for a create.
    pub fn new_res(&mut self, id: String, kind: Kind, body: Value, req: &Req) -> Res {
        let seq = self.store.next_etag();
        Res {
            id,
            kind,
            body,
            etag_seq: seq,
            guid: new_guid(),
            created_at: req.utc,
            created_by: req.principal.clone(),
            modified_at: req.utc,
            modified_by: req.principal.clone(),
            prov: Prov::done(),
            tags_changed_at: req.now,
            prev_tags: json!({}),
        }
    }

    /// Records a write on an existing resource: new etag, modified-by.
    pub fn touch(&mut self, id: &str, req: &Req) {
        let seq = self.store.next_etag();
        if let Some(r) = self.store.get_mut(id) {
            r.etag_seq = seq;
            r.modified_at = req.utc;
            r.modified_by = req.principal.clone();
        }
    }

    pub fn lro_delay(&self, req: &Req) -> Duration {
        match req.fault {
            Some(FaultKind::SlowLro) => self.cfg.lro_delay * 10 + Duration::from_secs(1),
            _ => self.cfg.lro_delay,
        }
    }

    fn new_op(&mut self, req: &Req, location_final: u16, delay: Duration) -> String {
        let id = new_guid();
        let failure = match req.fault {
            Some(FaultKind::FailedLro) => Some((
                "InternalServerError".to_string(),
                "An error occurred while processing the long-running operation (injected by armsim).".to_string(),
            )),
            _ => None,
        };
        self.ops.insert(
            id.clone(),
            Op {
                done_at: req.now + delay,
                failure,
                location_final,
            },
        );
        id
    }

    /// Starts an `Azure-AsyncOperation` LRO; returns (op id, header URL).
    pub fn async_op(&mut self, req: &Req, sub: &str, location: &str, api: Api) -> (String, String) {
        let delay = self.lro_delay(req);
        self.async_op_after(req, sub, location, api, delay)
    }

    /// [`Inner::async_op`] for an operation that takes `delay` (a resource whose provisioning
    /// takes longer than the simulator's usual LRO delay, e.g. a firewall): the operation ends
    /// when the resource's provisioning does, as in Azure.
    pub fn async_op_after(
        &mut self,
        req: &Req,
        sub: &str,
        location: &str,
        api: Api,
        delay: Duration,
    ) -> (String, String) {
        let id = self.new_op(req, 200, delay);
        let url = match api {
            Api::PrivateDns => format!(
                "{HOST}/subscriptions/{sub}/providers/Microsoft.Network/privateDnsOperationStatuses/{id}?api-version={}",
                req.api_version
            ),
            _ => format!(
                "{HOST}/subscriptions/{sub}/providers/Microsoft.Network/locations/{}/operationStatuses/{id}?api-version={}",
                location.to_ascii_lowercase().replace(' ', ""),
                req.api_version
            ),
        };
        (id, url)
    }

    /// Starts a `Location` LRO under `base_id/operationResults/{guid}`.
    pub fn location_op(&mut self, req: &Req, base_id: &str, location_final: u16) -> String {
        let delay = self.lro_delay(req);
        let id = self.new_op(req, location_final, delay);
        format!(
            "{HOST}{base_id}/operationResults/{id}?api-version={}",
            req.api_version
        )
    }

    /// Answers a GET on an operation URL.
    pub fn poll(&self, req: &Req, op_id: &str, style_location: bool) -> Reply {
        let Some(op) = self.ops.get(op_id) else {
            return Reply::error(
                404,
                "OperationNotFound",
                format!("Operation '{op_id}' was not found."),
            );
        };
        let done = req.now >= op.done_at;
        if style_location {
            if !done {
                return Reply::empty(202)
                    .header("Location", format!("{HOST}{}", req_path_query(req)));
            }
            if let Some((code, msg)) = &op.failure {
                return Reply::error(500, code, msg.clone());
            }
            return Reply::empty(op.location_final);
        }
        if !done {
            return Reply::ok(json!({"status": "InProgress"}));
        }
        match &op.failure {
            Some((code, msg)) => {
                Reply::ok(json!({"status": "Failed", "error": {"code": code, "message": msg}}))
            }
            None => Reply::ok(json!({"status": "Succeeded"})),
        }
    }

    pub fn system_data(&self, r: &Res) -> Value {
        json!({
            "createdBy": r.created_by,
            "createdByType": "User",
            "createdAt": rfc3339(r.created_at),
            "lastModifiedBy": r.modified_by,
            "lastModifiedByType": "User",
            "lastModifiedAt": rfc3339(r.modified_at),
        })
    }

    /// The etag as each API prints it.
    pub fn etag(r: &Res) -> String {
        match r.kind.api() {
            Api::Network if r.kind.is_avnm() => {
                let secs = r.modified_at.unix_timestamp() as u64;
                format!(
                    "\"{:08x}-0000-3300-0000-{:08x}0000\"",
                    r.etag_seq,
                    secs & 0xffff_ffff
                )
            }
            Api::Network => format!("W/\"{}\"", etag_guid(r)),
            Api::PrivateDns => etag_guid(r),
            Api::Policy => String::new(),
        }
    }
}

fn etag_guid(r: &Res) -> String {
    // Stable per (resource, version): the resource guid with the version spliced in.
    format!("{:08x}{}", r.etag_seq, &r.guid[8..])
}

pub fn req_path_query(req: &Req) -> String {
    let mut s = req.path.clone();
    if !req.query.is_empty() {
        s.push('?');
        let q: Vec<String> = req
            .query
            .iter()
            .map(|(k, v)| format!("{k}={}", crate::pct_encode(v)))
            .collect();
        s.push_str(&q.join("&"));
    }
    s
}

/// Builds a `{value, nextLink}` page over a collection.
pub fn list_page(
    inner: &Inner,
    req: &Req,
    coll: &str,
    page_size: usize,
    mut render: impl FnMut(&Res) -> Option<Value>,
) -> Reply {
    let top = req
        .q("$top")
        .and_then(|t| t.parse::<usize>().ok())
        .filter(|t| *t > 0);
    let limit = top.map_or(page_size, |t| t.min(page_size));
    let after = req
        .q("$skipToken")
        .and_then(|t| hex::decode(t).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let (items, next) = inner.store.page(coll, after.as_deref(), limit);
    let value: Vec<Value> = items.into_iter().filter_map(&mut render).collect();
    let mut out = Map::new();
    out.insert("value".into(), Value::Array(value));
    if let Some(n) = next {
        let mut q: Vec<(String, String)> = req
            .query
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("$skipToken"))
            .cloned()
            .collect();
        q.push(("$skipToken".into(), hex::encode(n)));
        let qs: Vec<String> = q
            .iter()
            .map(|(k, v)| format!("{k}={}", crate::pct_encode(v)))
            .collect();
        out.insert(
            "nextLink".into(),
            Value::String(format!("{HOST}{}?{}", req.path, qs.join("&"))),
        );
    }
    Reply::ok(Value::Object(out))
}

/// Tags as a string map, or a 400 if a tag value is not a string.
pub fn check_tags(body: &Value) -> Result<(), Reply> {
    match body.get("tags") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(m)) => {
            if m.len() > 50 {
                return Err(Reply::bad_request(
                    "InvalidTagCount",
                    "The number of tags exceeds the limit of 50.",
                ));
            }
            for (k, v) in m {
                if !v.is_string() {
                    return Err(Reply::invalid_format(format!(
                        "Error converting value {v} to type 'System.String'. Path 'tags.{k}'."
                    )));
                }
                if k.len() > 512 {
                    return Err(Reply::bad_request(
                        "InvalidTagNameLength",
                        format!("The tag name '{k}' exceeds 512 characters."),
                    ));
                }
            }
            Ok(())
        }
        Some(_) => Err(Reply::invalid_format(
            "Unexpected token when parsing 'tags'. Path 'tags'.",
        )),
    }
}

/// Case-insensitive region comparison, ignoring spaces ("West Europe" == "westeurope").
pub fn norm_region(r: &str) -> String {
    r.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}
