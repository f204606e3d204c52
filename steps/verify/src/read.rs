//! Reading Azure: list calls wherever ARM has one, the per-VNet effective POSTs concurrently
//! with a bound. Read-only: this module has no way to write.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use netstep::arm::ArmClient;
use netstep::error::Result;
use serde_json::{Value, json};

/// How many per-VNet effective POSTs run at once.
pub const EFFECTIVE_CONCURRENCY: usize = 8;

/// GET a collection; a missing parent (404) is an empty list.
pub async fn list_or_empty(arm: &ArmClient, path: &str) -> Result<Vec<Value>> {
    match arm.list(path).await {
        Ok(v) => Ok(v),
        Err(e) if e.status() == Some(404) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// POST a `list*` action; a missing parent (404) is an empty list.
pub async fn post_list_or_empty(arm: &ArmClient, path: &str, body: &Value) -> Result<Vec<Value>> {
    match arm.post_list(path, body).await {
        Ok(v) => Ok(v),
        Err(e) if e.status() == Some(404) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Items of a list keyed by lower-cased name.
pub fn by_name(items: Vec<Value>) -> BTreeMap<String, Value> {
    items
        .into_iter()
        .filter_map(|v| {
            let n = v.get("name").and_then(Value::as_str)?.to_ascii_lowercase();
            Some((n, v))
        })
        .collect()
}

/// A VNet as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct Vnet {
    /// Resource id (as ARM spells it).
    pub id: String,
    /// Normalised location.
    pub location: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Address prefixes.
    pub prefixes: Vec<String>,
    /// Subnets: lower-cased name -> (name, prefix as read, lower-cased ids of what uses it).
    pub subnets: BTreeMap<String, (String, String)>,
    /// `dhcpOptions.dnsServers` (empty: Azure-provided DNS).
    pub dns_servers: Vec<String>,
    /// Peerings whose `peeringSyncLevel` is not `FullyInSync`: (name, level).
    pub stale_peerings: Vec<(String, String)>,
}

impl Vnet {
    /// From a listed VNet body.
    pub fn from_value(v: &Value) -> Option<Vnet> {
        Some(Vnet {
            id: v.get("id")?.as_str()?.to_string(),
            location: norm_region(v.get("location").and_then(Value::as_str).unwrap_or("")),
            tags: v
                .get("tags")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default(),
            prefixes: strings_at(v, "/properties/addressSpace/addressPrefixes"),
            subnets: v
                .pointer("/properties/subnets")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| {
                            let name = s.get("name")?.as_str()?.to_string();
                            let p = &s["properties"];
                            let prefix = p["addressPrefix"]
                                .as_str()
                                .or_else(|| p["addressPrefixes"][0].as_str())
                                .unwrap_or("")
                                .to_string();
                            Some((name.to_ascii_lowercase(), (name, prefix)))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            dns_servers: strings_at(v, "/properties/dhcpOptions/dnsServers"),
            stale_peerings: v
                .pointer("/properties/virtualNetworkPeerings")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|p| {
                            let level = p.pointer("/properties/peeringSyncLevel")?.as_str()?;
                            (level != "FullyInSync").then(|| {
                                (
                                    p["name"].as_str().unwrap_or("").to_string(),
                                    level.to_string(),
                                )
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// The VNet's name.
    pub fn name(&self) -> &str {
        netstep::resources::name_of(&self.id)
    }
}

/// `West Europe` / `westeurope` -> `westeurope`.
pub fn norm_region(r: &str) -> String {
    r.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Every VNet of the given subscriptions (one paged list per subscription), keyed by
/// lower-cased id.
pub async fn vnets(
    arm: &ArmClient,
    subscriptions: &BTreeSet<String>,
) -> Result<BTreeMap<String, Vnet>> {
    let mut out = BTreeMap::new();
    for sub in subscriptions {
        let path = format!("/subscriptions/{sub}/providers/Microsoft.Network/virtualNetworks");
        for v in list_or_empty(arm, &path).await? {
            if let Some(v) = Vnet::from_value(&v) {
                out.insert(v.id.to_ascii_lowercase(), v);
            }
        }
    }
    Ok(out)
}

/// The effective AVNM view of one VNet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effective {
    /// `listNetworkManagerEffectiveConnectivityConfigurations` values (None: not read).
    pub connectivity: Option<Vec<Value>>,
    /// `listNetworkManagerEffectiveSecurityAdminRules` values (None: not read).
    pub security: Option<Vec<Value>>,
}

/// Reads the effective configurations of `vnet_ids` (both kinds as asked), at most
/// [`EFFECTIVE_CONCURRENCY`] POSTs at a time.
pub async fn effective(
    arm: &ArmClient,
    vnet_ids: &[String],
    connectivity: bool,
    security: bool,
) -> Result<BTreeMap<String, Effective>> {
    let mut jobs: Vec<(String, bool)> = Vec::new();
    for id in vnet_ids {
        if connectivity {
            jobs.push((id.clone(), false));
        }
        if security {
            jobs.push((id.clone(), true));
        }
    }
    let results: Vec<Result<(String, bool, Vec<Value>)>> = futures::stream::iter(jobs)
        .map(|(id, sec)| async move {
            let action = if sec {
                "listNetworkManagerEffectiveSecurityAdminRules"
            } else {
                "listNetworkManagerEffectiveConnectivityConfigurations"
            };
            let v = arm.post_list(&format!("{id}/{action}"), &json!({})).await?;
            Ok((id, sec, v))
        })
        .buffer_unordered(EFFECTIVE_CONCURRENCY)
        .collect()
        .await;
    let mut out: BTreeMap<String, Effective> = BTreeMap::new();
    for r in results {
        let (id, sec, v) = r?;
        let e = out.entry(id.to_ascii_lowercase()).or_default();
        if sec {
            e.security = Some(v);
        } else {
            e.connectivity = Some(v);
        }
    }
    Ok(out)
}

/// The network groups through which configurations apply to a VNet (lower-cased ids):
/// `configurationGroups` of its effective connectivity configurations and `ruleGroups` of its
/// effective admin rules.
pub fn observed_groups(e: &Effective) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut take = |items: &Option<Vec<Value>>, key: &str| {
        for v in items.iter().flatten() {
            for g in v.get(key).and_then(Value::as_array).into_iter().flatten() {
                if let Some(id) = g.get("id").and_then(Value::as_str) {
                    out.insert(id.to_ascii_lowercase());
                }
            }
        }
    };
    take(&e.connectivity, "configurationGroups");
    take(&e.security, "ruleGroups");
    out
}

/// The strings of the JSON array at `pointer` (empty when absent).
fn strings_at(v: &Value, pointer: &str) -> Vec<String> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
