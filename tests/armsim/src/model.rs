//! Resource kinds, their ARM types and request-path parsing.

/// Every resource type armsim stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    NetworkManager,
    NetworkGroup,
    StaticMember,
    ConnectivityConfiguration,
    SecurityAdminConfiguration,
    AdminRuleCollection,
    AdminRule,
    VirtualNetwork,
    Subnet,
    Peering,
    PublicIp,
    Firewall,
    FirewallPolicy,
    RuleCollectionGroup,
    DnsZone,
    VnetLink,
    RecordSet,
    PolicyDefinition,
    PolicyAssignment,
}

/// Which API a request belongs to (for api-version checks and error shapes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Network,
    PrivateDns,
    Policy,
}

pub const NETWORK_API: &str = "2026-07-01";
pub const DNS_API: &str = "2024-06-01";
pub const POLICY_API: &str = "2025-03-01";

impl Api {
    pub fn version(self) -> &'static str {
        match self {
            Api::Network => NETWORK_API,
            Api::PrivateDns => DNS_API,
            Api::Policy => POLICY_API,
        }
    }
}

impl Kind {
    /// Lower-cased chain of type segments after the provider namespace.
    pub fn from_chain(chain: &str) -> Option<Kind> {
        Some(match chain {
            "networkmanagers" => Kind::NetworkManager,
            "networkmanagers/networkgroups" => Kind::NetworkGroup,
            "networkmanagers/networkgroups/staticmembers" => Kind::StaticMember,
            "networkmanagers/connectivityconfigurations" => Kind::ConnectivityConfiguration,
            "networkmanagers/securityadminconfigurations" => Kind::SecurityAdminConfiguration,
            "networkmanagers/securityadminconfigurations/rulecollections" => {
                Kind::AdminRuleCollection
            }
            "networkmanagers/securityadminconfigurations/rulecollections/rules" => Kind::AdminRule,
            "virtualnetworks" => Kind::VirtualNetwork,
            "virtualnetworks/subnets" => Kind::Subnet,
            "virtualnetworks/virtualnetworkpeerings" => Kind::Peering,
            "publicipaddresses" => Kind::PublicIp,
            "azurefirewalls" => Kind::Firewall,
            "firewallpolicies" => Kind::FirewallPolicy,
            "firewallpolicies/rulecollectiongroups" => Kind::RuleCollectionGroup,
            "privatednszones" => Kind::DnsZone,
            "privatednszones/virtualnetworklinks" => Kind::VnetLink,
            "privatednszones/a" => Kind::RecordSet,
            "policydefinitions" => Kind::PolicyDefinition,
            "policyassignments" => Kind::PolicyAssignment,
            _ => return None,
        })
    }

    pub fn arm_type(self) -> &'static str {
        match self {
            Kind::NetworkManager => "Microsoft.Network/networkManagers",
            Kind::NetworkGroup => "Microsoft.Network/networkManagers/networkGroups",
            Kind::StaticMember => "Microsoft.Network/networkManagers/networkGroups/staticMembers",
            Kind::ConnectivityConfiguration => {
                "Microsoft.Network/networkManagers/connectivityConfigurations"
            }
            Kind::SecurityAdminConfiguration => {
                "Microsoft.Network/networkManagers/securityAdminConfigurations"
            }
            Kind::AdminRuleCollection => {
                "Microsoft.Network/networkManagers/securityAdminConfigurations/ruleCollections"
            }
            Kind::AdminRule => {
                "Microsoft.Network/networkManagers/securityAdminConfigurations/ruleCollections/rules"
            }
            Kind::VirtualNetwork => "Microsoft.Network/virtualNetworks",
            Kind::Subnet => "Microsoft.Network/virtualNetworks/subnets",
            Kind::Peering => "Microsoft.Network/virtualNetworks/virtualNetworkPeerings",
            Kind::PublicIp => "Microsoft.Network/publicIPAddresses",
            Kind::Firewall => "Microsoft.Network/azureFirewalls",
            Kind::FirewallPolicy => "Microsoft.Network/firewallPolicies",
            Kind::RuleCollectionGroup => "Microsoft.Network/firewallPolicies/ruleCollectionGroups",
            Kind::DnsZone => "Microsoft.Network/privateDnsZones",
            Kind::VnetLink => "Microsoft.Network/privateDnsZones/virtualNetworkLinks",
            Kind::RecordSet => "Microsoft.Network/privateDnsZones/A",
            Kind::PolicyDefinition => "Microsoft.Authorization/policyDefinitions",
            Kind::PolicyAssignment => "Microsoft.Authorization/policyAssignments",
        }
    }

    pub fn api(self) -> Api {
        match self {
            Kind::DnsZone | Kind::VnetLink | Kind::RecordSet => Api::PrivateDns,
            Kind::PolicyDefinition | Kind::PolicyAssignment => Api::Policy,
            _ => Api::Network,
        }
    }

    pub fn is_avnm(self) -> bool {
        matches!(
            self,
            Kind::NetworkManager
                | Kind::NetworkGroup
                | Kind::StaticMember
                | Kind::ConnectivityConfiguration
                | Kind::SecurityAdminConfiguration
                | Kind::AdminRuleCollection
                | Kind::AdminRule
        )
    }
}

/// Canonical spelling of a path segment, so ids come back as Azure spells them.
pub fn canon_seg(seg: &str) -> String {
    let s = match seg.to_ascii_lowercase().as_str() {
        "subscriptions" => "subscriptions",
        "resourcegroups" => "resourceGroups",
        "providers" => "providers",
        "microsoft.network" => "Microsoft.Network",
        "microsoft.authorization" => "Microsoft.Authorization",
        "networkmanagers" => "networkManagers",
        "networkgroups" => "networkGroups",
        "staticmembers" => "staticMembers",
        "connectivityconfigurations" => "connectivityConfigurations",
        "securityadminconfigurations" => "securityAdminConfigurations",
        "rulecollections" => "ruleCollections",
        "rules" => "rules",
        "virtualnetworks" => "virtualNetworks",
        "subnets" => "subnets",
        "virtualnetworkpeerings" => "virtualNetworkPeerings",
        "publicipaddresses" => "publicIPAddresses",
        "azurefirewalls" => "azureFirewalls",
        "firewallpolicies" => "firewallPolicies",
        "rulecollectiongroups" => "ruleCollectionGroups",
        "privatednszones" => "privateDnsZones",
        "virtualnetworklinks" => "virtualNetworkLinks",
        "a" => "A",
        "all" => "ALL",
        "policydefinitions" => "policyDefinitions",
        "policyassignments" => "policyAssignments",
        _ => return seg.to_string(),
    };
    s.to_string()
}

/// A parsed `/subscriptions/...` request path.
#[derive(Debug, Clone)]
pub struct Target {
    pub sub: String,
    pub rg: Option<String>,
    /// Provider namespace, lower-cased (`microsoft.network`).
    pub ns: Option<String>,
    /// (type segment, name) pairs after the namespace.
    pub pairs: Vec<(String, String)>,
    /// Trailing segment: a collection to list or a POST action.
    pub tail: Option<String>,
}

impl Target {
    pub fn parse(path: &str) -> Option<Target> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        if segs.len() < 2 || !segs[0].eq_ignore_ascii_case("subscriptions") || segs[1].is_empty() {
            return None;
        }
        let sub = segs[1].to_string();
        let mut i = 2;
        let mut rg = None;
        if segs.len() > i + 1 && segs[i].eq_ignore_ascii_case("resourcegroups") {
            rg = Some(segs[i + 1].to_string());
            i += 2;
        } else if segs.len() == i + 1 && segs[i].eq_ignore_ascii_case("resourcegroups") {
            return None;
        }
        let mut ns = None;
        let mut pairs = Vec::new();
        let mut tail = None;
        if segs.len() > i {
            if !segs[i].eq_ignore_ascii_case("providers") || segs.len() < i + 2 {
                return None;
            }
            ns = Some(segs[i + 1].to_ascii_lowercase());
            i += 2;
            while i < segs.len() {
                if segs[i].is_empty() {
                    return None;
                }
                if i + 1 < segs.len() {
                    pairs.push((segs[i].to_string(), segs[i + 1].to_string()));
                    i += 2;
                } else {
                    tail = Some(segs[i].to_string());
                    i += 1;
                }
            }
        }
        Some(Target {
            sub,
            rg,
            ns,
            pairs,
            tail,
        })
    }

    /// Lower-cased type chain of the pairs, e.g. `networkmanagers/networkgroups`.
    pub fn chain(&self) -> String {
        self.pairs
            .iter()
            .map(|(t, _)| t.to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join("/")
    }

    pub fn scope_prefix(&self, rg_name: Option<&str>) -> String {
        let mut s = format!("/subscriptions/{}", self.sub);
        if let Some(rg) = rg_name.or(self.rg.as_deref()) {
            s.push_str("/resourceGroups/");
            s.push_str(rg);
        }
        s
    }

    /// Canonical id of the first `n` pairs, with `rg_name` as the stored RG spelling.
    pub fn id_of(&self, n: usize, rg_name: Option<&str>) -> String {
        let mut s = self.scope_prefix(rg_name);
        if let Some(ns) = &self.ns {
            s.push_str("/providers/");
            s.push_str(&canon_seg(ns));
        }
        for (t, name) in self.pairs.iter().take(n) {
            s.push('/');
            s.push_str(&canon_seg(t));
            s.push('/');
            s.push_str(name);
        }
        s
    }
}

/// Parse a resource id into a target (same grammar as request paths).
pub fn parse_id(id: &str) -> Option<Target> {
    Target::parse(id)
}

/// Name rule for network managers and AVNM children (the spec's pattern
/// `^[0-9a-zA-Z]([0-9a-zA-Z_.-]{0,62}[0-9a-zA-Z_])?$`).
pub fn valid_avnm_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 64 || !b[0].is_ascii_alphanumeric() {
        return false;
    }
    if b.len() == 1 {
        return true;
    }
    let last = b[b.len() - 1];
    if !(last.is_ascii_alphanumeric() || last == b'_') {
        return false;
    }
    b[1..b.len() - 1]
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Name rule of most Network RP resources: 1-80 chars, starts alphanumeric, ends
/// alphanumeric or `_`, inner `[\w.-]`.
pub fn valid_network_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 80 || !b[0].is_ascii_alphanumeric() {
        return false;
    }
    let last = b[b.len() - 1];
    (last.is_ascii_alphanumeric() || last == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}
