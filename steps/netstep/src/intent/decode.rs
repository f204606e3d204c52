//! Node tree -> typed model, collecting every problem (unknown fields, wrong types, missing
//! fields) with its position, and filling every default.
//!
//! Typing rules (see docs/intent.md, "YAML rules"): a plain (unquoted) scalar that YAML 1.1 or
//! 1.2 tools would read as a boolean, null or number (`yes`, `no`, `on`, `1.0`, `0x1F`, `~`) is
//! NOT accepted where a string belongs; quote it. Numbers must be plain decimal integers (a
//! quoted "300" is not a number). Booleans are exactly `true` or `false`.

use std::collections::{BTreeMap, HashMap};

use super::Diagnostic;
use super::model::*;
use super::yaml::{Node, NodeKind, PlainKind, Pos, plain_kind};

/// Decoding context: diagnostics, and the position of every decoded path.
pub(crate) struct Cx {
    pub file: String,
    pub diags: Vec<Diagnostic>,
    pub locs: HashMap<String, Pos>,
    /// The top-level subscription (default of every `subscription` field).
    pub default_sub: String,
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn idx(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

impl Cx {
    pub fn new(file: &str) -> Cx {
        Cx {
            file: file.to_string(),
            diags: Vec::new(),
            locs: HashMap::new(),
            default_sub: String::new(),
        }
    }

    pub fn err(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line: pos.line,
            col: pos.col,
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// Decodes `n` as `T`, recording its position under `path`.
    pub fn decode<T: FromNode>(&mut self, n: &Node, path: &str) -> Option<T> {
        self.locs.insert(path.to_string(), n.pos);
        T::from_node(n, path, self)
    }

    /// Opens a mapping, reporting unknown keys.
    pub fn map<'n>(&mut self, n: &'n Node, path: &str, known: &[&str]) -> Option<MapR<'n>> {
        self.locs.insert(path.to_string(), n.pos);
        let NodeKind::Map(entries) = &n.kind else {
            self.err(
                n.pos,
                path,
                format!("expected a mapping (key: value), found {}", n.describe()),
            );
            return None;
        };
        for (k, _) in entries {
            let key = k.key_str();
            if !known.contains(&key) {
                let hint = suggest(key, known)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                self.err(
                    k.pos,
                    &join(path, key),
                    format!(
                        "unknown field `{key}`{hint} (expected one of: {})",
                        known.join(", ")
                    ),
                );
            }
        }
        Some(MapR {
            entries,
            pos: n.pos,
            path: path.to_string(),
        })
    }
}

/// Closest known key by edit distance (<= 2), for "did you mean".
fn suggest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(64).collect();
    let b: Vec<char> = b.chars().take(64).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// An open mapping being decoded.
pub(crate) struct MapR<'n> {
    entries: &'n [(Node, Node)],
    pub pos: Pos,
    pub path: String,
}

impl<'n> MapR<'n> {
    /// The value node of `key`, treating an explicit plain `null`/`~` as absent.
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.key_str() == key)
            .map(|(_, v)| v)
            .filter(|v| !is_null(v))
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn child(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// A required field.
    pub fn req<T: FromNode>(&self, cx: &mut Cx, key: &str) -> Option<T> {
        match self.get(key) {
            Some(v) => cx.decode(v, &self.child(key)),
            None => {
                cx.err(
                    self.pos,
                    &self.child(key),
                    format!("missing required field `{key}`"),
                );
                None
            }
        }
    }

    /// An optional field: `Some(None)` when absent, `None` when present but invalid.
    pub fn opt<T: FromNode>(&self, cx: &mut Cx, key: &str) -> Option<Option<T>> {
        match self.get(key) {
            Some(v) => cx.decode(v, &self.child(key)).map(Some),
            None => Some(None),
        }
    }

    /// An optional field with a default.
    pub fn or<T: FromNode>(&self, cx: &mut Cx, key: &str, default: T) -> Option<T> {
        self.opt(cx, key).map(|o| o.unwrap_or(default))
    }

    /// An optional list (default empty).
    pub fn list<T: FromNode>(&self, cx: &mut Cx, key: &str) -> Option<Vec<T>> {
        self.or(cx, key, Vec::new())
    }

    /// A subscription field defaulting to `default`.
    pub fn sub(&self, cx: &mut Cx, key: &str, default: &str) -> Option<String> {
        self.opt::<String>(cx, key)
            .map(|o| o.map_or_else(|| default.to_string(), |s| normalize_sub(&s)))
    }
}

fn is_null(n: &Node) -> bool {
    matches!(&n.kind, NodeKind::Scalar { value, plain: true } if plain_kind(value) == PlainKind::Null)
}

/// `/subscriptions/<guid>` or `<guid>` -> lower-case `<guid>`.
pub(crate) fn normalize_sub(s: &str) -> String {
    let t = s.trim_end_matches('/');
    let lower = t.to_ascii_lowercase();
    lower
        .strip_prefix("/subscriptions/")
        .map_or(lower.clone(), str::to_string)
}

/// A type decodable from a node.
pub(crate) trait FromNode: Sized {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self>;
}

impl FromNode for String {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        match &n.kind {
            NodeKind::Scalar { value, plain } => {
                if *plain {
                    match plain_kind(value) {
                        PlainKind::String => {}
                        PlainKind::Null => {
                            cx.err(n.pos, path, "expected a string, found an empty value");
                            return None;
                        }
                        _ => {
                            cx.err(
                                n.pos,
                                path,
                                format!(
                                    "expected a string, found {}; quote it (\"{value}\") if you mean the text",
                                    n.describe()
                                ),
                            );
                            return None;
                        }
                    }
                }
                Some(value.clone())
            }
            _ => {
                cx.err(
                    n.pos,
                    path,
                    format!("expected a string, found {}", n.describe()),
                );
                None
            }
        }
    }
}

fn int_text<'a>(n: &'a Node, path: &str, cx: &mut Cx) -> Option<&'a str> {
    match &n.kind {
        NodeKind::Scalar { value, plain: true }
            if !value.is_empty() && value.chars().all(|c| c.is_ascii_digit()) =>
        {
            Some(value)
        }
        NodeKind::Scalar {
            value,
            plain: false,
        } if !value.is_empty() && value.chars().all(|c| c.is_ascii_digit()) => {
            cx.err(
                n.pos,
                path,
                format!("expected a number, found the string {value:?}; remove the quotes"),
            );
            None
        }
        _ => {
            cx.err(
                n.pos,
                path,
                format!(
                    "expected a non-negative decimal integer, found {}",
                    n.describe()
                ),
            );
            None
        }
    }
}

impl FromNode for u32 {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let t = int_text(n, path, cx)?;
        match t.parse::<u32>() {
            Ok(v) => Some(v),
            Err(_) => {
                cx.err(n.pos, path, format!("number {t} is too large"));
                None
            }
        }
    }
}

impl FromNode for bool {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        match &n.kind {
            NodeKind::Scalar { value, plain: true } if value == "true" => Some(true),
            NodeKind::Scalar { value, plain: true } if value == "false" => Some(false),
            _ => {
                cx.err(
                    n.pos,
                    path,
                    format!("expected true or false, found {}", n.describe()),
                );
                None
            }
        }
    }
}

impl<T: FromNode> FromNode for Vec<T> {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let NodeKind::Seq(items) = &n.kind else {
            cx.err(
                n.pos,
                path,
                format!("expected a list, found {}", n.describe()),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match cx.decode::<T>(item, &idx(path, i)) {
                Some(v) => out.push(v),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

impl FromNode for BTreeMap<String, String> {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let NodeKind::Map(entries) = &n.kind else {
            cx.err(
                n.pos,
                path,
                format!(
                    "expected a mapping of tag names to values, found {}",
                    n.describe()
                ),
            );
            return None;
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (k, v) in entries {
            let p = join(path, k.key_str());
            cx.locs.insert(format!("{p}#key"), k.pos);
            match cx.decode::<String>(v, &p) {
                Some(s) => {
                    out.insert(k.key_str().to_string(), s);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

/// A port or port range, written as a string or a plain integer.
pub(crate) struct PortText(pub String);

impl FromNode for PortText {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        match &n.kind {
            NodeKind::Scalar { value, plain: true } if plain_kind(value) == PlainKind::Int => {
                Some(PortText(value.clone()))
            }
            _ => String::from_node(n, path, cx).map(PortText),
        }
    }
}

fn ports(v: Vec<PortText>) -> Vec<String> {
    v.into_iter().map(|p| p.0).collect()
}

macro_rules! str_enum {
    ($ty:ty { $($text:literal => $var:expr),+ $(,)? }) => {
        impl FromNode for $ty {
            fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
                const ALL: &[&str] = &[$($text),+];
                let s = String::from_node(n, path, cx)?;
                match s.as_str() {
                    $($text => Some($var),)+
                    other => {
                        let hint = ALL
                            .iter()
                            .find(|a| a.eq_ignore_ascii_case(other))
                            .map(|a| format!(" (values are case-sensitive: write `{a}`)"))
                            .unwrap_or_default();
                        cx.err(n.pos, path, format!(
                            "invalid value `{other}`; expected one of: {}{hint}", ALL.join(", ")));
                        None
                    }
                }
            }
        }
    };
}

str_enum!(ScopeAccess { "Connectivity" => ScopeAccess::Connectivity, "SecurityAdmin" => ScopeAccess::SecurityAdmin, "Routing" => ScopeAccess::Routing, "SecurityUser" => ScopeAccess::SecurityUser });
str_enum!(FirewallTier { "Basic" => FirewallTier::Basic, "Standard" => FirewallTier::Standard, "Premium" => FirewallTier::Premium });
str_enum!(PrivateEndpointsScale { "Standard" => PrivateEndpointsScale::Standard, "HighScale" => PrivateEndpointsScale::HighScale });
str_enum!(AddressOverlap { "Allowed" => AddressOverlap::Allowed, "Disallowed" => AddressOverlap::Disallowed });
str_enum!(PeeringEnforcement { "Unenforced" => PeeringEnforcement::Unenforced, "Enforced" => PeeringEnforcement::Enforced });
str_enum!(NipService { "None" => NipService::None, "All" => NipService::All, "AllowRulesOnly" => NipService::AllowRulesOnly });
str_enum!(Direction { "Inbound" => Direction::Inbound, "Outbound" => Direction::Outbound });
str_enum!(AdminAccess { "Allow" => AdminAccess::Allow, "Deny" => AdminAccess::Deny, "AlwaysAllow" => AdminAccess::AlwaysAllow });
str_enum!(AdminProtocol { "Tcp" => AdminProtocol::Tcp, "Udp" => AdminProtocol::Udp, "Icmp" => AdminProtocol::Icmp, "Esp" => AdminProtocol::Esp, "Any" => AdminProtocol::Any, "Ah" => AdminProtocol::Ah });
str_enum!(ThreatIntelMode { "Alert" => ThreatIntelMode::Alert, "Deny" => ThreatIntelMode::Deny, "Off" => ThreatIntelMode::Off });
str_enum!(FwCollectionKind { "filter" => FwCollectionKind::Filter, "nat" => FwCollectionKind::Nat });
str_enum!(FwAction { "Allow" => FwAction::Allow, "Deny" => FwAction::Deny, "DNAT" => FwAction::Dnat });
str_enum!(NetProtocol { "TCP" => NetProtocol::Tcp, "UDP" => NetProtocol::Udp, "ICMP" => NetProtocol::Icmp, "Any" => NetProtocol::Any });
str_enum!(AppProtocolType { "Http" => AppProtocolType::Http, "Https" => AppProtocolType::Https, "Mssql" => AppProtocolType::Mssql });
str_enum!(RecordType { "A" => RecordType::A });

/// Decodes the root node.
pub(crate) fn decode_intent(root: &Node, cx: &mut Cx) -> Option<IntentSpec> {
    let m = cx.map(
        root,
        "",
        &[
            "version",
            "subscription",
            "resource_groups",
            "network_manager",
            "regions",
            "network_groups",
            "connectivity",
            "security_admin",
            "firewall_policy",
            "dns",
        ],
    )?;
    let version = m.req::<u32>(cx, "version");
    if let Some(v) = version
        && v != 1
    {
        let pos = cx.locs.get("version").copied().unwrap_or(m.pos);
        cx.err(
            pos,
            "version",
            format!("unsupported intent version {v}; this netstep reads version 1"),
        );
    }
    let subscription = m
        .req::<String>(cx, "subscription")
        .map(|s| normalize_sub(&s));
    cx.default_sub = subscription.clone().unwrap_or_default();
    let resource_groups = m.req::<Vec<ResourceGroup>>(cx, "resource_groups");
    let network_manager = m.req::<NetworkManager>(cx, "network_manager");
    let regions = m.req::<Vec<Region>>(cx, "regions");
    let network_groups = m.list::<NetworkGroup>(cx, "network_groups");
    let connectivity = m.opt::<Connectivity>(cx, "connectivity");
    let security_admin = m.opt::<SecurityAdmin>(cx, "security_admin");
    let firewall_policy = m.opt::<FirewallPolicy>(cx, "firewall_policy");
    let dns = m.opt::<Dns>(cx, "dns");
    Some(IntentSpec {
        version: version?,
        subscription: subscription?,
        resource_groups: resource_groups?,
        network_manager: network_manager?,
        regions: regions?,
        network_groups: network_groups?,
        connectivity: connectivity?,
        security_admin: security_admin?,
        firewall_policy: firewall_policy?,
        dns: dns?,
    })
}

impl FromNode for ResourceGroup {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(n, path, &["name", "location", "subscription"])?;
        let def = cx.default_sub.clone();
        let name = m.req(cx, "name");
        let location = m.req(cx, "location");
        let subscription = m.sub(cx, "subscription", &def);
        Some(ResourceGroup {
            name: name?,
            location: location?,
            subscription: subscription?,
        })
    }
}

impl FromNode for NetworkManager {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(
            n,
            path,
            &[
                "name",
                "location",
                "resource_group",
                "subscription",
                "description",
                "scope",
                "scope_accesses",
            ],
        )?;
        let def = cx.default_sub.clone();
        let name = m.req(cx, "name");
        let location = m.req(cx, "location");
        let resource_group = m.req(cx, "resource_group");
        let subscription = m.sub(cx, "subscription", &def);
        let description = m.or(cx, "description", String::new());
        let scope = m.or(
            cx,
            "scope",
            Scope {
                subscriptions: vec![def.clone()],
                management_groups: Vec::new(),
            },
        );
        let scope_accesses = m.or(
            cx,
            "scope_accesses",
            vec![ScopeAccess::Connectivity, ScopeAccess::SecurityAdmin],
        );
        Some(NetworkManager {
            name: name?,
            location: location?,
            resource_group: resource_group?,
            subscription: subscription?,
            description: description?,
            scope: scope?,
            scope_accesses: scope_accesses?,
        })
    }
}

impl FromNode for Scope {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(n, path, &["subscriptions", "management_groups"])?;
        let subscriptions = m.list::<String>(cx, "subscriptions");
        let management_groups = m.list::<String>(cx, "management_groups");
        Some(Scope {
            subscriptions: subscriptions?.iter().map(|s| normalize_sub(s)).collect(),
            management_groups: management_groups?
                .iter()
                .map(|s| {
                    let t = s.trim_end_matches('/');
                    t.rsplit_once("/managementGroups/")
                        .or_else(|| t.rsplit_once("/managementgroups/"))
                        .map_or(t.to_string(), |(_, n)| n.to_string())
                })
                .collect(),
        })
    }
}

impl FromNode for Region {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(n, path, &["name", "hub", "spokes"])?;
        let name = m.req(cx, "name");
        let hub = m.req(cx, "hub");
        let spokes = m.list(cx, "spokes");
        Some(Region {
            name: name?,
            hub: hub?,
            spokes: spokes?,
        })
    }
}

impl FromNode for Subnet {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(n, path, &["name", "prefix"])?;
        let name = m.req(cx, "name");
        let prefix = m.req(cx, "prefix");
        Some(Subnet {
            name: name?,
            prefix: prefix?,
        })
    }
}

const HUB_KEYS: &[&str] = &[
    "name",
    "resource_group",
    "subscription",
    "managed",
    "address_space",
    "tags",
    "subnets",
    "dns_servers",
    "firewall",
];

impl FromNode for Hub {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(n, path, HUB_KEYS)?;
        let def = cx.default_sub.clone();
        let name: Option<String> = m.req(cx, "name");
        let resource_group: Option<String> = m.req(cx, "resource_group");
        let subscription = m.sub(cx, "subscription", &def);
        let managed = m.or(cx, "managed", false);
        let address_space = m.req(cx, "address_space");
        let tags = m.or(cx, "tags", Tags::new());
        let subnets = m.list(cx, "subnets");
        let dns_servers = m.list(cx, "dns_servers");
        let firewall = match m.get("firewall") {
            None => Some(None),
            Some(f) => decode_firewall(
                f,
                &m.child("firewall"),
                cx,
                resource_group.as_deref().unwrap_or(""),
                subscription.as_deref().unwrap_or(""),
            )
            .map(Some),
        };
        Some(Hub {
            name: name?,
            resource_group: resource_group?,
            subscription: subscription?,
            managed: managed?,
            address_space: address_space?,
            tags: tags?,
            subnets: subnets?,
            dns_servers: dns_servers?,
            firewall: firewall?,
        })
    }
}

impl FromNode for Spoke {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let mut keys = HUB_KEYS.to_vec();
        keys.retain(|k| *k != "firewall");
        keys.insert(1, "env");
        let m = cx.map(n, path, &keys)?;
        let def = cx.default_sub.clone();
        let name = m.req(cx, "name");
        let env = m.req(cx, "env");
        let resource_group = m.req(cx, "resource_group");
        let subscription = m.sub(cx, "subscription", &def);
        let managed = m.or(cx, "managed", false);
        let address_space = m.req(cx, "address_space");
        let tags = m.or(cx, "tags", Tags::new());
        let subnets = m.list(cx, "subnets");
        let dns_servers = m.list(cx, "dns_servers");
        Some(Spoke {
            name: name?,
            env: env?,
            resource_group: resource_group?,
            subscription: subscription?,
            managed: managed?,
            address_space: address_space?,
            tags: tags?,
            subnets: subnets?,
            dns_servers: dns_servers?,
        })
    }
}

/// Splits `/subscriptions/S/resourceGroups/RG/providers/Microsoft.Network/<kind>/NAME`.
pub(crate) fn split_resource_id(id: &str, kind: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = id.trim_end_matches('/').split('/').collect();
    if parts.len() != 9 || !parts[0].is_empty() {
        return None;
    }
    let ok = parts[1].eq_ignore_ascii_case("subscriptions")
        && parts[3].eq_ignore_ascii_case("resourceGroups")
        && parts[5].eq_ignore_ascii_case("providers")
        && parts[6].eq_ignore_ascii_case("Microsoft.Network")
        && parts[7].eq_ignore_ascii_case(kind)
        && [2, 4, 8].iter().all(|i| !parts[*i].is_empty());
    ok.then(|| {
        (
            parts[2].to_ascii_lowercase(),
            parts[4].to_string(),
            parts[8].to_string(),
        )
    })
}

fn decode_firewall(
    n: &Node,
    path: &str,
    cx: &mut Cx,
    hub_rg: &str,
    hub_sub: &str,
) -> Option<Firewall> {
    // Shorthand: `firewall: afw-name` or `firewall: /subscriptions/.../azureFirewalls/afw`.
    if let NodeKind::Scalar { .. } = &n.kind {
        let text: String = cx.decode(n, path)?;
        let (sub, rg, name) = if text.starts_with('/') {
            match split_resource_id(&text, "azureFirewalls") {
                Some(x) => x,
                None => {
                    cx.err(
                        n.pos,
                        path,
                        format!("`{text}` is not an Azure Firewall resource id (/subscriptions/<guid>/resourceGroups/<rg>/providers/Microsoft.Network/azureFirewalls/<name>)"),
                    );
                    return None;
                }
            }
        } else {
            (hub_sub.to_string(), hub_rg.to_string(), text)
        };
        return Some(Firewall {
            name,
            id: None,
            resource_group: rg,
            subscription: sub,
            managed: false,
            sku_tier: None,
            zones: Vec::new(),
            public_ip: None,
        });
    }
    let m = cx.map(
        n,
        path,
        &[
            "name",
            "id",
            "resource_group",
            "subscription",
            "managed",
            "sku_tier",
            "zones",
            "public_ip",
        ],
    )?;
    let id: Option<Option<String>> = m.opt(cx, "id");
    let managed = m.or(cx, "managed", false);
    let sku_tier: Option<Option<FirewallTier>> = m.opt(cx, "sku_tier");
    let zones: Option<Vec<String>> = m.list(cx, "zones");
    let public_ip: Option<Option<String>> = m.opt(cx, "public_ip");
    let (name, resource_group, subscription) = match id.clone()? {
        Some(id) => {
            for k in ["name", "resource_group", "subscription"] {
                if m.has(k) {
                    cx.err(
                        m.pos,
                        &m.child(k),
                        format!("give either `id` or `{k}`, not both"),
                    );
                }
            }
            match split_resource_id(&id, "azureFirewalls") {
                Some(x) => x,
                None => {
                    cx.err(
                        cx.locs.get(&m.child("id")).copied().unwrap_or(m.pos),
                        &m.child("id"),
                        format!("`{id}` is not an Azure Firewall resource id (/subscriptions/<guid>/resourceGroups/<rg>/providers/Microsoft.Network/azureFirewalls/<name>)"),
                    );
                    return None;
                }
            }
        }
        None => {
            let name: Option<String> = m.req(cx, "name");
            let rg = m.or(cx, "resource_group", hub_rg.to_string());
            let sub = m.sub(cx, "subscription", hub_sub);
            (name?, rg?, sub?)
        }
    };
    let managed = managed?;
    let mut sku_tier = sku_tier?;
    let mut public_ip = public_ip?;
    let zones = zones?;
    if managed {
        sku_tier.get_or_insert(FirewallTier::Standard);
        public_ip.get_or_insert_with(|| format!("pip-{name}"));
    } else {
        for (k, present) in [
            ("sku_tier", sku_tier.is_some()),
            ("zones", !zones.is_empty()),
            ("public_ip", public_ip.is_some()),
        ] {
            if present {
                let p = m.child(k);
                cx.err(
                    cx.locs.get(&p).copied().unwrap_or(m.pos),
                    &p,
                    format!("`{k}` applies only to a managed firewall (managed: true); an existing firewall is only referenced"),
                );
            }
        }
    }
    Some(Firewall {
        name,
        id: None,
        resource_group,
        subscription,
        managed,
        sku_tier,
        zones,
        public_ip,
    })
}

impl FromNode for TagCondition {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(n, path, &["tag", "equals"])?;
        let tag = m.req(cx, "tag");
        let equals = m.req(cx, "equals");
        Some(TagCondition {
            tag: tag?,
            equals: equals?,
        })
    }
}

impl FromNode for NetworkGroup {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(n, path, &["name", "description", "match", "static_members"])?;
        let name = m.req(cx, "name");
        let description = m.or(cx, "description", String::new());
        let match_all = match m.get("match") {
            None => Some(Vec::new()),
            Some(mn) => {
                let p = m.child("match");
                let is_all_of = matches!(&mn.kind, NodeKind::Map(e) if e.iter().any(|(k, _)| k.key_str() == "all_of"));
                if matches!(mn.kind, NodeKind::Seq(_)) {
                    cx.decode::<Vec<TagCondition>>(mn, &p)
                } else if is_all_of {
                    cx.map(mn, &p, &["all_of"])
                        .and_then(|mm| mm.req::<Vec<TagCondition>>(cx, "all_of"))
                } else {
                    cx.decode::<TagCondition>(mn, &p).map(|c| vec![c])
                }
            }
        };
        let static_members = m.list(cx, "static_members");
        Some(NetworkGroup {
            name: name?,
            description: description?,
            match_all: match_all?,
            static_members: static_members?,
        })
    }
}

impl FromNode for Connectivity {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(
            n,
            path,
            &["mesh", "hub_and_spoke", "connectivity_capabilities"],
        )?;
        let mesh = m.opt(cx, "mesh");
        let hub_and_spoke = m.opt(cx, "hub_and_spoke");
        let caps = m.opt(cx, "connectivity_capabilities");
        Some(Connectivity {
            mesh: mesh?,
            hub_and_spoke: hub_and_spoke?,
            connectivity_capabilities: caps?,
        })
    }
}

impl FromNode for Mesh {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(
            n,
            path,
            &[
                "name",
                "description",
                "group",
                "global",
                "delete_existing_peering",
            ],
        )?;
        let name = m.req(cx, "name");
        let description = m.or(cx, "description", String::new());
        let group = m.req(cx, "group");
        let global = m.or(cx, "global", true);
        let dep = m.or(cx, "delete_existing_peering", false);
        Some(Mesh {
            name: name?,
            description: description?,
            group: group?,
            global: global?,
            delete_existing_peering: dep?,
        })
    }
}

impl FromNode for HubAndSpoke {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(
            n,
            path,
            &[
                "name_prefix",
                "description",
                "spoke_groups",
                "direct_spoke_connectivity",
                "use_hub_gateway",
                "delete_existing_peering",
                "regions",
            ],
        )?;
        let name_prefix = m.req(cx, "name_prefix");
        let description = m.or(cx, "description", String::new());
        let spoke_groups = m.req(cx, "spoke_groups");
        let dsc = m.or(cx, "direct_spoke_connectivity", false);
        let uhg = m.or(cx, "use_hub_gateway", false);
        let dep = m.or(cx, "delete_existing_peering", false);
        let regions = m.list(cx, "regions");
        Some(HubAndSpoke {
            name_prefix: name_prefix?,
            description: description?,
            spoke_groups: spoke_groups?,
            direct_spoke_connectivity: dsc?,
            use_hub_gateway: uhg?,
            delete_existing_peering: dep?,
            regions: regions?,
        })
    }
}

impl FromNode for ConnectivityCapabilities {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(
            n,
            path,
            &[
                "connected_group_private_endpoints_scale",
                "connected_group_address_overlap",
                "peering_enforcement",
            ],
        )?;
        let a = m.req(cx, "connected_group_private_endpoints_scale");
        let b = m.req(cx, "connected_group_address_overlap");
        let c = m.req(cx, "peering_enforcement");
        Some(ConnectivityCapabilities {
            connected_group_private_endpoints_scale: a?,
            connected_group_address_overlap: b?,
            peering_enforcement: c?,
        })
    }
}

impl FromNode for SecurityAdmin {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(
            n,
            path,
            &[
                "name",
                "description",
                "apply_on_network_intent_policy_based_services",
                "rule_collections",
            ],
        )?;
        let name = m.req(cx, "name");
        let description = m.or(cx, "description", String::new());
        let nip = m.or(
            cx,
            "apply_on_network_intent_policy_based_services",
            vec![NipService::None],
        );
        let rule_collections = m.req(cx, "rule_collections");
        Some(SecurityAdmin {
            name: name?,
            description: description?,
            apply_on_network_intent_policy_based_services: nip?,
            rule_collections: rule_collections?,
        })
    }
}

impl FromNode for AdminRuleCollection {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(
            n,
            path,
            &["name", "description", "applies_to_groups", "rules"],
        )?;
        let name = m.req(cx, "name");
        let description = m.or(cx, "description", String::new());
        let applies = m.req(cx, "applies_to_groups");
        let rules = m.req(cx, "rules");
        Some(AdminRuleCollection {
            name: name?,
            description: description?,
            applies_to_groups: applies?,
            rules: rules?,
        })
    }
}

impl FromNode for AddressRef {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(n, path, &["group", "cidr", "service_tag"])?;
        let present: Vec<&str> = ["group", "cidr", "service_tag"]
            .into_iter()
            .filter(|k| m.has(k))
            .collect();
        if present.len() != 1 {
            cx.err(
                n.pos,
                path,
                "give exactly one of `group`, `cidr` or `service_tag`",
            );
            return None;
        }
        let v: String = m.req(cx, present[0])?;
        Some(match present[0] {
            "group" => AddressRef::Group { group: v },
            "cidr" => AddressRef::Cidr { cidr: v },
            _ => AddressRef::ServiceTag { service_tag: v },
        })
    }
}

impl FromNode for AdminRule {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(
            n,
            path,
            &[
                "name",
                "description",
                "priority",
                "direction",
                "access",
                "protocol",
                "sources",
                "destinations",
                "source_ports",
                "destination_ports",
            ],
        )?;
        let name = m.req(cx, "name");
        let description = m.or(cx, "description", String::new());
        let priority = m.req(cx, "priority");
        let direction = m.req(cx, "direction");
        let access = m.req(cx, "access");
        let protocol = m.req(cx, "protocol");
        let sources = m.list(cx, "sources");
        let destinations = m.list(cx, "destinations");
        let all = || vec![PortText("0-65535".into())];
        let source_ports = m.or(cx, "source_ports", all());
        let destination_ports = m.or(cx, "destination_ports", all());
        Some(AdminRule {
            name: name?,
            description: description?,
            priority: priority?,
            direction: direction?,
            access: access?,
            protocol: protocol?,
            sources: sources?,
            destinations: destinations?,
            source_ports: ports(source_ports?),
            destination_ports: ports(destination_ports?),
        })
    }
}

impl FromNode for FirewallPolicy {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(
            n,
            path,
            &[
                "name",
                "resource_group",
                "subscription",
                "location",
                "tier",
                "threat_intel_mode",
                "dns_proxy",
                "rule_collection_groups",
                "children",
            ],
        )?;
        let def = cx.default_sub.clone();
        let name: Option<String> = m.req(cx, "name");
        let resource_group: Option<String> = m.req(cx, "resource_group");
        let subscription = m.sub(cx, "subscription", &def);
        let location: Option<String> = m.req(cx, "location");
        let tier = m.req(cx, "tier");
        let tim = m.or(cx, "threat_intel_mode", ThreatIntelMode::Alert);
        let dns_proxy = m.or(cx, "dns_proxy", false);
        let rcgs = m.list(cx, "rule_collection_groups");
        let children: Option<Option<FirewallPolicyChildren>> = m.opt(cx, "children");
        let (name, resource_group, location) = (name?, resource_group?, location?);
        let mut children = children?.unwrap_or_default();
        if children.name_prefix.is_empty() {
            children.name_prefix = name.clone();
        }
        if children.resource_group.is_empty() {
            children.resource_group = resource_group.clone();
        }
        if children.location.is_empty() {
            children.location = location.clone();
        }
        Some(FirewallPolicy {
            name,
            resource_group,
            subscription: subscription?,
            location,
            tier: tier?,
            threat_intel_mode: tim?,
            dns_proxy: dns_proxy?,
            rule_collection_groups: rcgs?,
            children,
        })
    }
}

impl FromNode for FirewallPolicyChildren {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(n, path, &["name_prefix", "resource_group", "location"])?;
        let a = m.or(cx, "name_prefix", String::new());
        let b = m.or(cx, "resource_group", String::new());
        let c = m.or(cx, "location", String::new());
        Some(FirewallPolicyChildren {
            name_prefix: a?,
            resource_group: b?,
            location: c?,
        })
    }
}

impl FromNode for RuleCollectionGroup {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(n, path, &["name", "priority", "rule_collections"])?;
        let name = m.req(cx, "name");
        let priority = m.req(cx, "priority");
        let rc = m.req(cx, "rule_collections");
        Some(RuleCollectionGroup {
            name: name?,
            priority: priority?,
            rule_collections: rc?,
        })
    }
}

impl FromNode for FwRuleCollection {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(n, path, &["name", "priority", "kind", "action", "rules"])?;
        let name = m.req(cx, "name");
        let priority = m.req(cx, "priority");
        let kind = m.req(cx, "kind");
        let action = m.req(cx, "action");
        let rules = m.req(cx, "rules");
        Some(FwRuleCollection {
            name: name?,
            priority: priority?,
            kind: kind?,
            action: action?,
            rules: rules?,
        })
    }
}

impl FromNode for AppProtocol {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(n, path, &["type", "port"])?;
        let kind = m.req(cx, "type");
        let port = m.req(cx, "port");
        Some(AppProtocol {
            kind: kind?,
            port: port?,
        })
    }
}

impl FromNode for FwRule {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let NodeKind::Map(entries) = &n.kind else {
            cx.err(
                n.pos,
                path,
                format!("expected a mapping (key: value), found {}", n.describe()),
            );
            return None;
        };
        let Some((_, tv)) = entries.iter().find(|(k, _)| k.key_str() == "type") else {
            cx.err(
                n.pos,
                &join(path, "type"),
                "missing required field `type` (network, application or nat)",
            );
            return None;
        };
        let t: String = cx.decode(tv, &join(path, "type"))?;
        let common = [
            "type",
            "name",
            "description",
            "protocols",
            "source_addresses",
        ];
        match t.as_str() {
            "network" => {
                let mut keys = common.to_vec();
                keys.extend([
                    "destination_addresses",
                    "destination_ports",
                    "destination_fqdns",
                ]);
                let m = cx.map(n, path, &keys)?;
                let name = m.req(cx, "name");
                let description = m.or(cx, "description", String::new());
                let protocols = m.req(cx, "protocols");
                let sa = m.req(cx, "source_addresses");
                let da = m.list(cx, "destination_addresses");
                let dp: Option<Vec<PortText>> = m.req(cx, "destination_ports");
                let df = m.list(cx, "destination_fqdns");
                Some(FwRule::Network(NetworkRule {
                    name: name?,
                    description: description?,
                    protocols: protocols?,
                    source_addresses: sa?,
                    destination_addresses: da?,
                    destination_ports: ports(dp?),
                    destination_fqdns: df?,
                }))
            }
            "application" => {
                let mut keys = common.to_vec();
                keys.extend(["target_fqdns", "fqdn_tags"]);
                let m = cx.map(n, path, &keys)?;
                let name = m.req(cx, "name");
                let description = m.or(cx, "description", String::new());
                let protocols = m.req(cx, "protocols");
                let sa = m.req(cx, "source_addresses");
                let tf = m.list(cx, "target_fqdns");
                let ft = m.list(cx, "fqdn_tags");
                Some(FwRule::Application(ApplicationRule {
                    name: name?,
                    description: description?,
                    protocols: protocols?,
                    source_addresses: sa?,
                    target_fqdns: tf?,
                    fqdn_tags: ft?,
                }))
            }
            "nat" => {
                let mut keys = common.to_vec();
                keys.extend([
                    "destination_addresses",
                    "destination_ports",
                    "translated_address",
                    "translated_port",
                ]);
                let m = cx.map(n, path, &keys)?;
                let name = m.req(cx, "name");
                let description = m.or(cx, "description", String::new());
                let protocols = m.req(cx, "protocols");
                let sa = m.req(cx, "source_addresses");
                let da = m.req(cx, "destination_addresses");
                let dp: Option<Vec<PortText>> = m.req(cx, "destination_ports");
                let ta = m.req(cx, "translated_address");
                let tp: Option<PortText> = m.req(cx, "translated_port");
                Some(FwRule::Nat(NatRule {
                    name: name?,
                    description: description?,
                    protocols: protocols?,
                    source_addresses: sa?,
                    destination_addresses: da?,
                    destination_ports: ports(dp?),
                    translated_address: ta?,
                    translated_port: tp?.0,
                }))
            }
            other => {
                cx.err(
                    tv.pos,
                    &join(path, "type"),
                    format!(
                        "invalid rule type `{other}`; expected one of: network, application, nat"
                    ),
                );
                None
            }
        }
    }
}

impl FromNode for Dns {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(n, path, &["zones"])?;
        let zones = m.req(cx, "zones");
        Some(Dns { zones: zones? })
    }
}

impl FromNode for DnsZone {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(
            n,
            path,
            &["name", "resource_group", "subscription", "links", "records"],
        )?;
        let def = cx.default_sub.clone();
        let name = m.req(cx, "name");
        let resource_group = m.req(cx, "resource_group");
        let subscription = m.sub(cx, "subscription", &def);
        let links = m.or(cx, "links", DnsLinks::default());
        let records = m.list(cx, "records");
        Some(DnsZone {
            name: name?,
            resource_group: resource_group?,
            subscription: subscription?,
            links: links?,
            records: records?,
        })
    }
}

impl FromNode for DnsLinks {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(
            n,
            path,
            &[
                "vnets",
                "registration_enabled",
                "registration_vnets",
                "name_prefix",
            ],
        )?;
        let vnets = m.opt(cx, "vnets");
        let re = m.or(cx, "registration_enabled", false);
        let rv = m.list(cx, "registration_vnets");
        let np = m.or(cx, "name_prefix", "link-".to_string());
        Some(DnsLinks {
            vnets: vnets?,
            registration_enabled: re?,
            registration_vnets: rv?,
            name_prefix: np?,
        })
    }
}

impl FromNode for DnsRecord {
    fn from_node(n: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        let m = cx.map(n, path, &["name", "type", "ttl", "ipv4"])?;
        let name = m.req(cx, "name");
        let kind = m.req(cx, "type");
        let ttl = m.or(cx, "ttl", 300u32);
        let ipv4 = m.req(cx, "ipv4");
        Some(DnsRecord {
            name: name?,
            kind: kind?,
            ttl: ttl?,
            ipv4: ipv4?,
        })
    }
}
