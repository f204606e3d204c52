//! Canonical JSON and digests.
//!
//! The canonical form is the model serialized with every default filled in, object keys sorted
//! (byte order), no whitespace, and serde_json's number/string formatting. Comments, key order,
//! quoting style and whether a default was written out do not change it; any value change does.

use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::Intent;

/// The parts of the intent each step consumes, for per-step digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slice {
    /// `tag-groups`: the network manager, resolved groups (incl. derived per-region ones) and
    /// every VNet's id, region and effective tags.
    TagGroups,
    /// `mesh-connect`: network manager, resolved groups, and the expanded connectivity
    /// configurations.
    MeshConnect,
    /// `admin-rules`: network manager, resolved groups, security admin configuration, regions.
    AdminRules,
    /// `fw-policy`: the firewall policy, resolved parent/children, and the hub firewalls.
    FwPolicy,
    /// `dns-link`: the DNS zones, resolved links and records.
    DnsLink,
    /// `verify`: everything (same as [`Intent::digest`]'s input).
    Verify,
    /// VNets: subscription, resource groups, regions with their hubs, spokes and firewalls.
    Vnets,
}

impl Slice {
    /// Every slice.
    pub const ALL: [Slice; 7] = [
        Slice::TagGroups,
        Slice::MeshConnect,
        Slice::AdminRules,
        Slice::FwPolicy,
        Slice::DnsLink,
        Slice::Verify,
        Slice::Vnets,
    ];

    /// Stable name (also the step name where there is one).
    pub fn name(self) -> &'static str {
        match self {
            Slice::TagGroups => "tag-groups",
            Slice::MeshConnect => "mesh-connect",
            Slice::AdminRules => "admin-rules",
            Slice::FwPolicy => "fw-policy",
            Slice::DnsLink => "dns-link",
            Slice::Verify => "verify",
            Slice::Vnets => "vnets",
        }
    }
}

/// Recursively sorts object keys.
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out = Map::new();
            for (k, v) in entries {
                out.insert(k, sorted(v));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

fn to_value<T: Serialize>(t: &T) -> Value {
    // Serializing plain data structs with string keys cannot fail.
    serde_json::to_value(t).unwrap_or(Value::Null)
}

fn canonical_string(v: Value) -> String {
    sorted(v).to_string()
}

fn sha256(s: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(s.as_bytes())))
}

impl Intent {
    /// Deterministic JSON of the whole intent (sorted keys, defaults filled).
    pub fn canonical_json(&self) -> String {
        self.canonical
            .get_or_init(|| canonical_string(to_value(self.spec())))
            .clone()
    }

    /// `sha256:<hex>` of [`Intent::canonical_json`].
    pub fn digest(&self) -> String {
        sha256(&self.canonical_json())
    }

    /// The canonical JSON of one slice (see [`Slice`]).
    pub fn slice_json(&self, slice: Slice) -> String {
        let spec = self.spec();
        let vnets: Vec<Value> = self
            .vnets()
            .iter()
            .map(|v| json!({"id": v.id, "name": v.name, "region": v.region, "role": v.role, "tags": v.tags, "managed": v.managed}))
            .collect();
        let v = match slice {
            Slice::Verify => to_value(spec),
            Slice::Vnets => json!({
                "subscription": spec.subscription,
                "resource_groups": to_value(&spec.resource_groups),
                "regions": to_value(&spec.regions),
            }),
            Slice::TagGroups => json!({
                "network_manager": to_value(&spec.network_manager),
                "groups": to_value(&self.groups()),
                "vnets": vnets,
            }),
            Slice::MeshConnect => json!({
                "network_manager": to_value(&spec.network_manager),
                "groups": to_value(&self.groups()),
                "connectivity": to_value(&self.connectivity_configs()),
            }),
            Slice::AdminRules => json!({
                "network_manager": to_value(&spec.network_manager),
                "groups": to_value(&self.groups()),
                "security_admin": to_value(&spec.security_admin),
                "regions": self.region_names(),
            }),
            Slice::FwPolicy => json!({
                "firewall_policy": to_value(&spec.firewall_policy),
                "policies": to_value(&self.firewall_policies()),
                "firewalls": spec.regions.iter().map(|r| json!({"region": r.name, "firewall": to_value(&r.hub.firewall)})).collect::<Vec<_>>(),
            }),
            Slice::DnsLink => json!({
                "dns": to_value(&spec.dns),
                "links": to_value(&self.dns_links()),
            }),
        };
        canonical_string(json!({"slice": slice.name(), "content": v}))
    }

    /// `sha256:<hex>` of the slice's canonical JSON.
    pub fn slice_digest(&self, slice: Slice) -> String {
        sha256(&self.slice_json(slice))
    }
}
