//! Records ARM exchanges in oav's liveRequest/liveResponse format.

use std::path::Path;

use axum::http::{HeaderMap, Method};
use serde_json::{Map, Value, json};

use crate::reply::Reply;

#[allow(clippy::too_many_arguments)]
pub fn write(
    dir: &Path,
    seq: u64,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
    reply: &Reply,
) {
    let mut url = format!("{}{}", crate::core::HOST, crate::pct_encode(path));
    if !query.is_empty() {
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", crate::pct_encode(k), crate::pct_encode(v)))
            .collect();
        url.push('?');
        url.push_str(&q.join("&"));
    }
    let mut req_headers = Map::new();
    for (k, v) in headers {
        let k = k.as_str();
        // Never record the bearer token.
        if k.eq_ignore_ascii_case("authorization") {
            req_headers.insert(k.to_string(), json!("Bearer <redacted>"));
            continue;
        }
        if let Ok(v) = v.to_str() {
            req_headers.insert(k.to_string(), json!(v));
        }
    }
    let mut live_req = json!({"method": method.as_str(), "url": url, "headers": req_headers});
    if !body.is_empty()
        && let Ok(v) = serde_json::from_slice::<Value>(body)
    {
        live_req["body"] = v;
    }
    let mut res_headers = Map::new();
    for (k, v) in &reply.headers {
        res_headers.insert(k.clone(), json!(v));
    }
    if reply.body.is_some() {
        res_headers.insert(
            "content-type".into(),
            json!("application/json; charset=utf-8"),
        );
    }
    let mut live_res = json!({"statusCode": reply.status.to_string(), "headers": res_headers});
    if let Some(b) = &reply.body {
        live_res["body"] = b.clone();
    }
    let last = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("root");
    let safe: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    let file = dir.join(format!("{seq:06}-{}-{safe}.json", method.as_str()));
    let doc = json!({"liveRequest": live_req, "liveResponse": live_res});
    let _ = std::fs::write(file, serde_json::to_vec_pretty(&doc).unwrap_or_default());
}
