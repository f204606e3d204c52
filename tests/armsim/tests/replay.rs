//! Proof of fidelity 2: the requests of real Azure recordings (azure-powershell session
//! records, read from the shared folder at test time) are replayed against armsim and the
//! answers compared with what Azure sent: status codes, the headers that matter, body shapes.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// JSON paths of a body, arrays collapsed (`value[].id`).
fn shape(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(p.clone());
                shape(x, &p, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                shape(x, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

/// Members that exist in the 2022-01-01 recordings but not in the 2026-07-01 models (or the
/// other way round). Each entry is a documented version difference, not a simulator gap.
fn version_difference(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    // 2022 only: displayName on AVNM resources; conditionalMembership and groupMembers on
    // groups. 2026 only: commitId (commit response), commitTime (active configurations),
    // region (static members, read-only in NM 2026-07-01).
    matches!(
        last,
        "displayName" | "conditionalMembership" | "groupMembers" | "commitId" | "commitTime"
    ) || path == "properties.region"
}

fn body_of(s: &Value) -> Value {
    match s.as_str() {
        Some(t) if !t.trim().is_empty() => serde_json::from_str(t).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

fn path_of(uri: &str) -> &str {
    uri.split('?').next().unwrap()
}

fn header(e: &Value, k: &str) -> Option<String> {
    e["ResponseHeaders"]
        .as_object()?
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(k))
        .and_then(|(_, v)| v[0].as_str().or(v.as_str()).map(str::to_string))
}

struct Context {
    sub: String,
    rgs: Vec<(String, String)>,
    vnets: Vec<String>,
}

/// Subscription, resource groups (with location) and VNets the recording assumes exist.
fn context(entries: &[Value]) -> Context {
    let mut sub = String::new();
    let mut rgs: Vec<(String, String)> = Vec::new();
    let mut vnets = BTreeSet::new();
    let mut loc = "centraluseuap".to_string();
    for e in entries {
        let uri = e["RequestUri"].as_str().unwrap();
        let segs: Vec<&str> = path_of(uri).split('/').collect();
        if sub.is_empty() && segs.len() > 2 {
            sub = segs[2].to_string();
        }
        let b = body_of(&e["RequestBody"]);
        if segs.len() == 5
            && segs[3].eq_ignore_ascii_case("resourcegroups")
            && e["RequestMethod"] == "PUT"
        {
            loc = b["location"].as_str().unwrap_or(&loc).to_string();
            rgs.push((segs[4].to_string(), loc.clone()));
        }
        let text = format!("{uri} {}", e["RequestBody"].as_str().unwrap_or(""));
        for part in text.split('"').flat_map(|p| p.split(' ')) {
            if let Some(i) = part
                .to_ascii_lowercase()
                .find("/providers/microsoft.network/virtualnetworks/")
            {
                let tail = &part[i + "/providers/Microsoft.Network/virtualNetworks/".len()..];
                let name = tail.split(['/', '?']).next().unwrap();
                vnets.insert(format!(
                    "{}{name}",
                    &part[..i + "/providers/Microsoft.Network/virtualNetworks/".len()]
                ));
            }
        }
    }
    // Resource groups of the VNets (created outside the recording).
    for v in &vnets {
        let rg = v.split('/').nth(4).unwrap().to_string();
        if !rgs.iter().any(|(n, _)| n.eq_ignore_ascii_case(&rg)) {
            rgs.push((rg, loc.clone()));
        }
    }
    Context {
        sub,
        rgs,
        vnets: vnets.into_iter().collect(),
    }
}

fn world(ctx: &Context) -> Value {
    let loc = ctx.rgs[0].1.clone();
    let resources: Vec<Value> = ctx
        .vnets
        .iter()
        .enumerate()
        .map(|(i, id)| json!({"id": id, "location": loc, "tags": {}, "properties": {"addressSpace": {"addressPrefixes": [format!("10.{}.0.0/16", 10 + i)]}, "subnets": [{"name": "default", "properties": {"addressPrefix": format!("10.{}.0.0/24", 10 + i)}}]}}))
        .collect();
    json!({"subscriptions": [{"subscriptionId": ctx.sub, "resourceGroups": ctx.rgs.iter().map(|(n, l)| json!({"name": n, "location": l})).collect::<Vec<_>>()}], "resources": resources})
}

/// Puts a recorded GET-200 that precedes the PUT of the same resource after that PUT.
fn order(entries: Vec<Value>) -> Vec<Value> {
    let mut out = Vec::new();
    let mut pending: HashMap<String, Vec<Value>> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let p = path_of(e["RequestUri"].as_str().unwrap()).to_ascii_lowercase();
        let is_early_get = e["RequestMethod"] == "GET"
            && e["StatusCode"] == 200
            && entries[i + 1..]
                .iter()
                .find(|x| {
                    path_of(x["RequestUri"].as_str().unwrap()).eq_ignore_ascii_case(&p)
                        && x["RequestMethod"] != "GET"
                })
                .is_some_and(|x| x["RequestMethod"] == "PUT");
        if is_early_get {
            pending.entry(p).or_default().push(e.clone());
            continue;
        }
        out.push(e.clone());
        if e["RequestMethod"] == "PUT"
            && let Some(v) = pending.remove(&p)
        {
            out.extend(v);
        }
    }
    assert!(pending.is_empty());
    out
}

struct Outcome {
    replayed: usize,
    skipped: usize,
    polls: usize,
    mismatches: Vec<String>,
}

async fn replay(file: &str) -> Outcome {
    let path = shared_dir()
        .join("azure-recordings/azure-powershell")
        .join(file);
    let doc: Value = serde_json::from_slice(
        &std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (set NETSTEP_SHARED)", path.display())),
    )
    .unwrap();
    let entries = doc["Entries"].as_array().unwrap().clone();
    let ctx = context(&entries);
    let mut cfg = fast(world(&ctx));
    cfg.status_empty_window = Duration::from_millis(20);
    let (h, c) = start(cfg).await;
    let mut out = Outcome {
        replayed: 0,
        skipped: 0,
        polls: 0,
        mismatches: Vec::new(),
    };
    let mut loc_map: HashMap<String, String> = HashMap::new();
    for e in order(entries) {
        let uri = e["RequestUri"]
            .as_str()
            .unwrap()
            .replace("api-version=2022-01-01", "api-version=2026-07-01");
        let method = e["RequestMethod"].as_str().unwrap();
        let want = e["StatusCode"].as_u64().unwrap() as u16;
        let p = path_of(&uri).to_ascii_lowercase();
        // Resource groups (Microsoft.Resources) are not modelled: their effect comes from the world.
        if p.split('/').count() == 5 && p.contains("/resourcegroups/")
            || p.contains("/operationresults/ey")
        {
            out.skipped += 1;
            continue;
        }
        // LRO polls: follow our own Location for the recorded one.
        if p.contains("/operationresults/") {
            let key = p.trim_end_matches('/').to_string();
            let Some(ours) = loc_map.get(&key) else {
                out.mismatches
                    .push(format!("{method} {uri}: poll without a matching Location"));
                continue;
            };
            let got = c.wait_location(ours).await;
            out.polls += 1;
            if got != want {
                out.mismatches
                    .push(format!("poll {uri}: status {got}, Azure {want}"));
            }
            continue;
        }
        let body = body_of(&e["RequestBody"]);
        let body = if body.is_null() && method != "POST" {
            None
        } else {
            Some(if body.is_null() { json!({}) } else { body })
        };
        // listDeploymentStatus: wait for the deployment as a real client polls.
        let mut r = c.call(method, &uri, body.clone(), &[]).await;
        if p.ends_with("/listdeploymentstatus") {
            for _ in 0..100 {
                if r.body["value"].as_array().is_some_and(|v| {
                    v.iter().all(|d| d["deploymentStatus"] == "Deployed") && !v.is_empty()
                }) {
                    break;
                }
                sleep_ms(30).await;
                r = c.call(method, &uri, body.clone(), &[]).await;
            }
        }
        out.replayed += 1;
        let what = format!("{method} {}", path_of(&uri));
        if r.status != want {
            out.mismatches.push(format!(
                "{what}: status {} (Azure {want}): {}",
                r.status, r.body
            ));
            continue;
        }
        for hname in ["Location", "Azure-AsyncOperation", "Retry-After"] {
            let theirs = header(&e, hname);
            let ours = r.header(hname);
            if theirs.is_some() != ours.is_some() {
                out.mismatches.push(format!(
                    "{what}: header {hname}: ours {ours:?}, Azure {theirs:?}"
                ));
            }
            if let (Some(t), Some(o)) = (&theirs, &ours)
                && hname == "Location"
            {
                loc_map.insert(
                    path_of(t)
                        .trim_start_matches("https://management.azure.com")
                        .to_ascii_lowercase(),
                    o.clone(),
                );
                // The recorded Location template is the same apart from the operation id.
                let strip = |u: &str| {
                    path_of(u)
                        .rsplit_once('/')
                        .map(|x| x.0.to_ascii_lowercase())
                        .unwrap_or_default()
                };
                if strip(t) != strip(o) {
                    out.mismatches
                        .push(format!("{what}: Location {o} vs Azure {t}"));
                }
            }
        }
        if let Some(fc) = header(&e, "x-ms-failure-cause")
            && r.header("x-ms-failure-cause") != Some(fc.clone())
        {
            out.mismatches
                .push(format!("{what}: x-ms-failure-cause missing"));
        }
        let theirs = body_of(&e["ResponseBody"]);
        if theirs.is_null() != r.body.is_null() {
            out.mismatches.push(format!(
                "{what}: body presence differs (ours {}, Azure {theirs})",
                r.body
            ));
            continue;
        }
        let (mut a, mut b) = (BTreeSet::new(), BTreeSet::new());
        shape(&theirs, "", &mut a);
        shape(&r.body, "", &mut b);
        // The commit response: 2022 echoed id/type; 2026's NetworkManagerCommit has commitId.
        let commit = p.ends_with("/commit");
        let only_theirs: Vec<&String> = a
            .difference(&b)
            .filter(|x| !version_difference(x) && !(commit && (*x == "id" || *x == "type")))
            .collect();
        let only_ours: Vec<&String> = b
            .difference(&a)
            .filter(|x| !version_difference(x))
            .collect();
        if !only_theirs.is_empty() || !only_ours.is_empty() {
            out.mismatches.push(format!(
                "{what}: shape differs: Azure-only {only_theirs:?}, armsim-only {only_ours:?}"
            ));
        }
        if theirs["error"]["code"].is_string() && theirs["error"]["code"] != r.body["error"]["code"]
        {
            out.mismatches.push(format!(
                "{what}: error code {} vs Azure {}",
                r.body["error"]["code"], theirs["error"]["code"]
            ));
        }
        if theirs["error"]["code"] == "ResourceNotFound"
            && theirs["error"]["message"] != r.body["error"]["message"]
        {
            out.mismatches.push(format!(
                "{what}: message {} vs Azure {}",
                r.body["error"]["message"], theirs["error"]["message"]
            ));
        }
    }
    h.shutdown().await;
    out
}

async fn check(file: &str) {
    let o = replay(file).await;
    println!(
        "{file}: {} requests replayed, {} LRO polls followed, {} resource-group entries skipped, {} mismatches",
        o.replayed,
        o.polls,
        o.skipped,
        o.mismatches.len()
    );
    for m in &o.mismatches {
        println!("  MISMATCH {m}");
    }
    assert!(o.replayed >= 10, "recording {file} looks empty");
    assert!(
        o.mismatches.is_empty(),
        "{} mismatches against {file}:\n{}",
        o.mismatches.len(),
        o.mismatches.join("\n")
    );
}

#[tokio::test]
async fn replay_connectivity_configuration_crud_recording() {
    check("TestNetworkManagerConnectivityConfigurationCRUD.json").await;
}

#[tokio::test]
async fn replay_static_member_crud_recording() {
    check("TestNetworkManagerStaticMemberCRUD.json").await;
}
