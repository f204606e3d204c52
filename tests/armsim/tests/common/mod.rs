//! Shared helpers for armsim's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

pub const SUB: &str = "6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718";
pub const CONN: &str = "rg-globojava-connectivity";
pub const SPOKES: &str = "rg-globojava-spokes";
pub const NET: &str = "2026-07-01";
pub const DNS: &str = "2024-06-01";
pub const POL: &str = "2025-03-01";
pub const REGIONS: [&str; 7] = [
    "eastus",
    "westus",
    "northeurope",
    "westeurope",
    "southeastasia",
    "australiaeast",
    "southafricanorth",
];

pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn repo_dir() -> PathBuf {
    crate_dir().join("../..").canonicalize().expect("repo dir")
}

/// `NETSTEP_SHARED`, else `<repo>/../shared`.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("NETSTEP_SHARED") {
        Some(p) => PathBuf::from(p),
        None => repo_dir().join("../shared"),
    }
}

pub fn globojava_world() -> Value {
    armsim::read_world(&repo_dir().join("examples/globojava/world.json")).expect("world")
}

pub fn empty_world() -> Value {
    armsim::read_world(&crate_dir().join("worlds/empty.json")).expect("world")
}

/// A fast config: tiny delays so tests run quickly.
pub fn fast(world: Value) -> armsim::Config {
    armsim::Config {
        world: Some(world),
        policy_delay: Duration::from_millis(150),
        deploy_delay: Duration::from_millis(240),
        lro_delay: Duration::from_millis(80),
        status_empty_window: Duration::from_millis(60),
        ..Default::default()
    }
}

pub fn rg_id(rg: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{rg}")
}
pub fn net_id(rg: &str, rest: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Network/{rest}")
}
pub fn nm_id() -> String {
    net_id(CONN, "networkManagers/avnm-globojava")
}
pub fn vnet_id(name: &str) -> String {
    let rg = if name.starts_with("vnet-hub") {
        CONN
    } else {
        SPOKES
    };
    net_id(rg, &format!("virtualNetworks/{name}"))
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, k: &str) -> Option<String> {
        self.headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub token: Option<String>,
}

fn api_for(path: &str) -> &'static str {
    let l = path.to_ascii_lowercase();
    if l.contains("microsoft.authorization") {
        POL
    } else if l.contains("privatednszones") {
        DNS
    } else {
        NET
    }
}

impl Client {
    pub fn new(base: &str) -> Self {
        Client {
            base: base.to_string(),
            http: reqwest::Client::new(),
            token: Some("test-token".into()),
        }
    }

    /// Sends `method path` with `?api-version` added unless present.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let url = if path.contains("api-version=") || path.starts_with("/_sim") {
            format!("{}{path}", self.base)
        } else {
            let sep = if path.contains('?') { '&' } else { '?' };
            format!("{}{path}{sep}api-version={}", self.base, api_for(path))
        };
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut rb = self.http.request(m, url);
        if let Some(t) = &self.token {
            rb = rb.header("Authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&b).expect("json"));
        }
        let r = rb.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Resp {
            status,
            headers,
            body,
        }
    }
    pub async fn get(&self, path: &str) -> Resp {
        self.call("GET", path, None, &[]).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.call("PUT", path, Some(body), &[]).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.call("PATCH", path, Some(body), &[]).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call("POST", path, Some(body), &[]).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.call("DELETE", path, None, &[]).await
    }
    /// GETs an absolute URL from a Location / Azure-AsyncOperation header.
    pub async fn follow(&self, url: &str) -> Resp {
        let path = url
            .strip_prefix("https://management.azure.com")
            .expect("ARM url");
        self.call("GET", path, None, &[]).await
    }
    /// Polls an Azure-AsyncOperation URL until it leaves InProgress.
    pub async fn wait_async(&self, url: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let r = self.follow(url).await;
            assert_eq!(r.status, 200, "poll {url}: {}", r.body);
            if r.body["status"] != "InProgress" {
                return r.body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("LRO {url} never finished");
    }
    /// Polls a Location URL until it stops answering 202; returns the final status.
    pub async fn wait_location(&self, url: &str) -> u16 {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let r = self.follow(url).await;
            if r.status != 202 {
                return r.status;
            }
            assert!(r.header("Location").is_some(), "202 poll without Location");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("LRO {url} never finished");
    }
    pub async fn sim(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, path, body, &[]).await.body
    }
}

pub async fn start(cfg: armsim::Config) -> (armsim::Handle, Client) {
    let h = armsim::start(cfg).await.expect("start armsim");
    let c = Client::new(&h.url);
    (h, c)
}

// ------------------------------------------------------------------ GloboJava bodies

pub fn nm_body() -> Value {
    json!({"location": "westeurope", "properties": {"description": "GloboJava", "networkManagerScopes": {"managementGroups": [], "subscriptions": [format!("/subscriptions/{SUB}")]}, "networkManagerScopeAccesses": ["Connectivity", "SecurityAdmin"]}})
}

pub fn group_id(name: &str) -> String {
    format!("{}/networkGroups/{name}", nm_id())
}

pub async fn create_nm_and_groups(c: &Client) {
    let r = c.put(&nm_id(), nm_body()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    for (g, d) in [
        ("global-hubs", "network_role=hub"),
        ("all-prod-spokes", "env=prod"),
        ("all-nonprod-spokes", "env=nonprod"),
    ] {
        let r = c
            .put(
                &group_id(g),
                json!({"properties": {"description": d, "memberType": "VirtualNetwork"}}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

pub fn hubspoke_body(region: &str) -> Value {
    json!({"properties": {
    "connectivityTopology": "HubAndSpoke",
    "hubs": [{"resourceId": vnet_id(&format!("vnet-hub-{region}")), "resourceType": "Microsoft.Network/virtualNetworks"}],
    "isGlobal": "False", "deleteExistingPeering": "True",
    "appliesToGroups": [
        {"networkGroupId": group_id("all-prod-spokes"), "groupConnectivity": "None", "useHubGateway": "False", "isGlobal": "False"},
        {"networkGroupId": group_id("all-nonprod-spokes"), "groupConnectivity": "None", "useHubGateway": "False", "isGlobal": "False"}
    ]}})
}

pub fn mesh_body() -> Value {
    json!({"properties": {"connectivityTopology": "Mesh", "isGlobal": "True", "deleteExistingPeering": "False",
        "appliesToGroups": [{"networkGroupId": group_id("global-hubs"), "groupConnectivity": "None", "isGlobal": "True", "useHubGateway": "False"}]}})
}

pub fn policy_def(tag: &str, value: &str, group: &str) -> Value {
    json!({"properties": {"displayName": format!("avnm-{group}"), "mode": "Microsoft.Network.Data", "policyType": "Custom",
        "policyRule": {"if": {"allOf": [
            {"field": "type", "equals": "Microsoft.Network/virtualNetworks"},
            {"field": format!("tags['{tag}']"), "equals": value}]},
          "then": {"effect": "addToNetworkGroup", "details": {"networkGroupId": group_id(group)}}}}})
}

pub fn def_id(name: &str) -> String {
    format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/policyDefinitions/{name}")
}
pub fn assignment_id(name: &str) -> String {
    format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/policyAssignments/{name}")
}

pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// GETs a list and follows every nextLink.
pub async fn list_all(c: &Client, path: &str) -> Vec<Value> {
    let mut url = path.to_string();
    let mut all = Vec::new();
    loop {
        let r = c.get(&url).await;
        assert_eq!(r.status, 200, "GET {url}: {}", r.body);
        all.extend(r.body["value"].as_array().cloned().unwrap_or_default());
        match r.body["nextLink"].as_str() {
            Some(n) => {
                url = n
                    .strip_prefix("https://management.azure.com")
                    .expect("ARM nextLink")
                    .to_string()
            }
            None => return all,
        }
    }
}
