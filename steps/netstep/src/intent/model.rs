//! The typed intent model. Field names are the YAML keys (snake_case). The serde attributes
//! describe the canonical JSON form and, through schemars, the published JSON Schema; the YAML
//! itself is read by [`super::decode`] (which keeps line/column for every value).
//!
//! Every defaulted field is filled in by the loader, so the model (and the canonical JSON) never
//! depends on whether a default was written out or left implicit.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

/// Removes the `default` schemars derives from `Default` for fields whose real default depends
/// on the context (e.g. "the top-level subscription").
fn contextual_default(s: &mut schemars::Schema) {
    s.remove("default");
}

/// Free-form Azure tags (name -> value).
pub type Tags = BTreeMap<String, String>;

/// The whole intent file.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "netstep intent",
    description = "One declarative file describing a hub-and-spoke Azure network managed through Azure Virtual Network Manager. See docs/intent.md."
)]
pub struct IntentSpec {
    /// Schema version of the intent file. Always 1.
    pub version: u32,
    /// The default subscription id (a GUID): every resource without its own `subscription`
    /// lives here.
    pub subscription: String,
    /// Resource groups the intent's resources live in (netstep does not create them; it checks
    /// every reference against this list).
    pub resource_groups: Vec<ResourceGroup>,
    /// The Azure Virtual Network Manager instance.
    pub network_manager: NetworkManager,
    /// Azure regions, each with one hub VNet and its spokes. Order is significant only for
    /// display.
    pub regions: Vec<Region>,
    /// AVNM network groups (global; membership by tag conditions and/or static members).
    #[serde(default)]
    pub network_groups: Vec<NetworkGroup>,
    /// AVNM connectivity configurations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity: Option<Connectivity>,
    /// The AVNM security admin configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_admin: Option<SecurityAdmin>,
    /// One global Azure Firewall Policy (parent) with per-region children.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall_policy: Option<FirewallPolicy>,
    /// Private DNS zones, their VNet links and records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
}

/// A resource group referenced by the intent.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceGroup {
    /// Resource group name (1-90 characters).
    pub name: String,
    /// Azure region of the resource group.
    pub location: String,
    /// Subscription id; defaults to the top-level `subscription`.
    #[serde(default)]
    #[schemars(transform = contextual_default)]
    pub subscription: String,
}

/// Which configuration types the network manager may deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
pub enum ScopeAccess {
    /// Connectivity configurations (mesh, hub-and-spoke).
    Connectivity,
    /// Security admin configurations.
    SecurityAdmin,
    /// Routing configurations.
    Routing,
    /// Security user configurations.
    SecurityUser,
}

/// The network manager.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkManager {
    /// Network manager name.
    pub name: String,
    /// Azure region of the network manager resource.
    pub location: String,
    /// Resource group of the network manager.
    pub resource_group: String,
    /// Subscription; defaults to the top-level `subscription`.
    #[serde(default)]
    #[schemars(transform = contextual_default)]
    pub subscription: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// What the manager governs. Defaults to the top-level subscription.
    #[serde(default)]
    #[schemars(transform = contextual_default)]
    pub scope: Scope,
    /// Configuration types the manager may deploy. Default: [Connectivity, SecurityAdmin].
    #[serde(default)]
    #[schemars(extend("default" = ["Connectivity", "SecurityAdmin"]))]
    pub scope_accesses: Vec<ScopeAccess>,
}

/// Network manager scope: subscriptions and/or management groups.
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Subscription ids (GUIDs, or `/subscriptions/<guid>`; stored as the bare GUID).
    #[serde(default)]
    pub subscriptions: Vec<String>,
    /// Management group names (or `/providers/Microsoft.Management/managementGroups/<name>`;
    /// stored as the bare name).
    #[serde(default)]
    pub management_groups: Vec<String>,
}

/// One region: a hub and its spokes.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// Azure region name, e.g. `westeurope` (public cloud names, lower case).
    pub name: String,
    /// The region's hub VNet.
    pub hub: Hub,
    /// The region's spoke VNets.
    #[serde(default)]
    pub spokes: Vec<Spoke>,
}

/// A subnet of a VNet.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Subnet {
    /// Subnet name (1-80 characters). `AzureFirewallSubnet` hosts the firewall.
    pub name: String,
    /// IPv4 prefix in canonical CIDR form, inside the VNet's address space.
    pub prefix: String,
}

/// A hub VNet.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hub {
    /// VNet name.
    pub name: String,
    /// Resource group of the VNet (must be declared in `resource_groups`).
    pub resource_group: String,
    /// Subscription; defaults to the top-level `subscription`.
    #[serde(default)]
    #[schemars(transform = contextual_default)]
    pub subscription: String,
    /// true: netstep owns the VNet (creates and updates it, including subnets and DNS servers).
    /// false (default): the VNet exists and is owned elsewhere; netstep only tags it and onboards
    /// it into AVNM, and checks that it matches.
    #[serde(default)]
    pub managed: bool,
    /// IPv4 address prefixes of the VNet (canonical CIDR).
    pub address_space: Vec<String>,
    /// Extra tags. `network_role: hub` is added by netstep.
    #[serde(default)]
    pub tags: Tags,
    /// Subnets.
    #[serde(default)]
    pub subnets: Vec<Subnet>,
    /// Custom DNS servers (IPv4); empty means Azure-provided DNS.
    #[serde(default)]
    pub dns_servers: Vec<String>,
    /// The hub's Azure Firewall: managed, or an existing one referenced by a mapping, by its
    /// name alone or by its resource id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<FirewallInput>")]
    pub firewall: Option<Firewall>,
}

/// A spoke VNet.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spoke {
    /// VNet name.
    pub name: String,
    /// Value of the `env` tag (e.g. `prod`, `nonprod`); drives network group membership.
    pub env: String,
    /// Resource group of the VNet (must be declared in `resource_groups`).
    pub resource_group: String,
    /// Subscription; defaults to the top-level `subscription`.
    #[serde(default)]
    #[schemars(transform = contextual_default)]
    pub subscription: String,
    /// See `Hub.managed`. Default false.
    #[serde(default)]
    pub managed: bool,
    /// IPv4 address prefixes of the VNet (canonical CIDR).
    pub address_space: Vec<String>,
    /// Extra tags. `env` is set from the `env` field.
    #[serde(default)]
    pub tags: Tags,
    /// Subnets.
    #[serde(default)]
    pub subnets: Vec<Subnet>,
    /// Custom DNS servers (IPv4).
    #[serde(default)]
    pub dns_servers: Vec<String>,
}

/// Azure Firewall SKU tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
pub enum FirewallTier {
    /// Basic.
    Basic,
    /// Standard.
    Standard,
    /// Premium.
    Premium,
}

/// The hub's firewall. Either managed by netstep (`managed: true`, with SKU, zones and public
/// IP) or a reference to an existing firewall by `name` (in the hub's resource group unless
/// `resource_group` says otherwise) or by full resource `id`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Firewall {
    /// Firewall name. Required unless `id` is given.
    #[serde(default)]
    #[schemars(transform = contextual_default)]
    pub name: String,
    /// Full resource id of an existing firewall (alternative to name/resource_group/subscription;
    /// the loader splits it into those fields).
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    /// Resource group; defaults to the hub's.
    #[serde(default)]
    #[schemars(transform = contextual_default)]
    pub resource_group: String,
    /// Subscription; defaults to the hub's.
    #[serde(default)]
    #[schemars(transform = contextual_default)]
    pub subscription: String,
    /// true: netstep creates and owns the firewall. Default false (existing firewall).
    #[serde(default)]
    pub managed: bool,
    /// SKU tier of a managed firewall (default Standard). Must match the firewall policy tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku_tier: Option<FirewallTier>,
    /// Availability zones of a managed firewall, e.g. ["1", "2", "3"].
    #[serde(default)]
    pub zones: Vec<String>,
    /// Public IP resource name of a managed firewall (default `pip-<firewall name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<String>,
}

/// How a hub's firewall may be written.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum FirewallInput {
    /// An existing firewall's name (in the hub's resource group) or full resource id.
    Reference(String),
    /// The full form.
    Spec(Firewall),
}

/// A port or port range: a string (`"80"`, `"1000-2000"`, `"*"`) or a plain integer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum PortInput {
    /// `"80"`, `"1000-2000"` or `"*"`.
    Text(String),
    /// A single port.
    Number(u16),
}

/// One tag condition of a network group: the VNet's tag `tag` equals `equals`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagCondition {
    /// Tag name.
    pub tag: String,
    /// Required tag value (exact, case-sensitive).
    pub equals: String,
}

/// A group's member condition as written: one tag condition, or `all_of` several.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum MatchInput {
    /// A single condition.
    One(TagCondition),
    /// A list of conditions (all must hold); the canonical JSON uses this form.
    List(Vec<TagCondition>),
    /// All conditions must hold.
    AllOf {
        /// The conditions.
        all_of: Vec<TagCondition>,
    },
}

/// An AVNM network group.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkGroup {
    /// Group name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Dynamic membership: VNets whose tags satisfy all conditions (implemented with an Azure
    /// Policy `addToNetworkGroup`). Canonical form: the list of conditions.
    #[serde(default, rename = "match")]
    #[schemars(with = "Option<MatchInput>", transform = contextual_default)]
    pub match_all: Vec<TagCondition>,
    /// Static members: VNet names from this intent or full VNet resource ids.
    #[serde(default)]
    pub static_members: Vec<String>,
}

/// Connectivity configurations.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Connectivity {
    /// A mesh across one group (typically the hubs, globally).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<Mesh>,
    /// A hub-and-spoke template expanded once per region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_and_spoke: Option<HubAndSpoke>,
    /// Optional connectivity capabilities applied to every connectivity configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity_capabilities: Option<ConnectivityCapabilities>,
}

/// The mesh configuration.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mesh {
    /// Configuration name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// The network group meshed together.
    pub group: String,
    /// Global mesh (across regions). Default true.
    #[serde(default)]
    #[schemars(extend("default" = true))]
    pub global: bool,
    /// Remove pre-existing peerings of members. Default false.
    #[serde(default)]
    pub delete_existing_peering: bool,
}

/// The hub-and-spoke template, expanded per region into `<name_prefix>-<region>`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HubAndSpoke {
    /// Per-region configuration name is `<name_prefix>-<region>`.
    pub name_prefix: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Global spoke groups; each is narrowed to the region (see docs/intent.md).
    pub spoke_groups: Vec<String>,
    /// Spokes of the same region talk directly (AVNM "DirectlyConnected"). Default false.
    #[serde(default)]
    pub direct_spoke_connectivity: bool,
    /// Spokes use the hub's gateway. Default false.
    #[serde(default)]
    pub use_hub_gateway: bool,
    /// Remove pre-existing peerings of spokes. Default false.
    #[serde(default)]
    pub delete_existing_peering: bool,
    /// Regions to expand to; default (empty) all regions of the intent.
    #[serde(default)]
    pub regions: Vec<String>,
}

/// Private endpoint scale of connected groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub enum PrivateEndpointsScale {
    /// Up to 250 VNets per connected group.
    Standard,
    /// Up to 20,000 VNets per connected group.
    HighScale,
}

/// Whether overlapping address spaces are allowed in a connected group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub enum AddressOverlap {
    /// Allowed.
    Allowed,
    /// Disallowed.
    Disallowed,
}

/// Whether AVNM enforces its peerings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub enum PeeringEnforcement {
    /// Not enforced.
    Unenforced,
    /// Enforced.
    Enforced,
}

/// AVNM connectivity capabilities; all three fields are required when the block is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectivityCapabilities {
    /// Standard (250 VNets per connected group) or HighScale.
    pub connected_group_private_endpoints_scale: PrivateEndpointsScale,
    /// Allowed or Disallowed.
    pub connected_group_address_overlap: AddressOverlap,
    /// Unenforced or Enforced.
    pub peering_enforcement: PeeringEnforcement,
}

/// `applyOnNetworkIntentPolicyBasedServices` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub enum NipService {
    /// None.
    None,
    /// All.
    All,
    /// AllowRulesOnly.
    AllowRulesOnly,
}

/// The security admin configuration.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityAdmin {
    /// Configuration name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Whether the rules also apply to services using network intent policies. Default [None].
    #[serde(default)]
    #[schemars(extend("default" = ["None"]))]
    pub apply_on_network_intent_policy_based_services: Vec<NipService>,
    /// Rule collections.
    pub rule_collections: Vec<AdminRuleCollection>,
}

/// A security admin rule collection.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminRuleCollection {
    /// Collection name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Network groups the rules apply to.
    pub applies_to_groups: Vec<String>,
    /// Rules (at most 100).
    pub rules: Vec<AdminRule>,
}

/// Rule direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub enum Direction {
    /// Inbound.
    Inbound,
    /// Outbound.
    Outbound,
}

/// Admin rule access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub enum AdminAccess {
    /// Allow (NSGs can still deny).
    Allow,
    /// Deny.
    Deny,
    /// Allow, overriding NSGs.
    AlwaysAllow,
}

/// Admin rule protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub enum AdminProtocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP.
    Icmp,
    /// ESP.
    Esp,
    /// Any.
    Any,
    /// AH.
    Ah,
}

/// A source or destination of an admin rule: exactly one of a network group, a CIDR or a
/// service tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum AddressRef {
    /// A network group of this intent.
    Group {
        /// Group name.
        group: String,
    },
    /// An IPv4 prefix.
    Cidr {
        /// Canonical CIDR, e.g. 10.0.0.0/8.
        cidr: String,
    },
    /// An Azure service tag.
    ServiceTag {
        /// e.g. Internet, AzureCloud, Storage.westeurope.
        service_tag: String,
    },
}

/// A security admin rule.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminRule {
    /// Rule name.
    pub name: String,
    /// Up to 119 characters (AVNM's 140, less the ownership marker netstep appends).
    #[serde(default)]
    pub description: String,
    /// 1-4096, unique within the collection; lower wins.
    pub priority: u32,
    /// Inbound or Outbound.
    pub direction: Direction,
    /// Allow, Deny or AlwaysAllow.
    pub access: AdminAccess,
    /// Tcp, Udp, Icmp, Esp, Any or Ah.
    pub protocol: AdminProtocol,
    /// Sources; empty means any.
    #[serde(default)]
    pub sources: Vec<AddressRef>,
    /// Destinations; empty means any.
    #[serde(default)]
    pub destinations: Vec<AddressRef>,
    /// Source ports: "80", "1000-2000", "*" or "0-65535". Default ["0-65535"].
    #[serde(default)]
    #[schemars(with = "Vec<PortInput>", extend("default" = ["0-65535"]))]
    pub source_ports: Vec<String>,
    /// Destination ports, as `source_ports`. Default ["0-65535"].
    #[serde(default)]
    #[schemars(with = "Vec<PortInput>", extend("default" = ["0-65535"]))]
    pub destination_ports: Vec<String>,
}

/// Firewall policy threat intelligence mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub enum ThreatIntelMode {
    /// Alert.
    Alert,
    /// Deny.
    Deny,
    /// Off.
    Off,
}

/// The global firewall policy (parent) and its per-region children.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FirewallPolicy {
    /// Parent policy name.
    pub name: String,
    /// Resource group of the parent (and, by default, of the children).
    pub resource_group: String,
    /// Subscription; defaults to the top-level `subscription`.
    #[serde(default)]
    #[schemars(transform = contextual_default)]
    pub subscription: String,
    /// Azure region of the parent. Children must be in the same region.
    pub location: String,
    /// Basic, Standard or Premium. Must equal the tier of every managed firewall it governs.
    pub tier: FirewallTier,
    /// Alert (default), Deny or Off.
    #[serde(default = "default_threat_intel")]
    pub threat_intel_mode: ThreatIntelMode,
    /// DNS proxy on the firewalls using the policy. Default false.
    #[serde(default)]
    pub dns_proxy: bool,
    /// Rule collection groups of the parent, inherited by every child.
    #[serde(default)]
    pub rule_collection_groups: Vec<RuleCollectionGroup>,
    /// Per-region child policies (one per region whose hub has a firewall).
    #[serde(default)]
    #[schemars(transform = contextual_default)]
    pub children: FirewallPolicyChildren,
}

fn default_threat_intel() -> ThreatIntelMode {
    ThreatIntelMode::Alert
}

/// How the per-region child policies are named and placed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FirewallPolicyChildren {
    /// Child name is `<name_prefix>-<region>`; default: the parent's name.
    #[serde(default)]
    #[schemars(transform = contextual_default)]
    pub name_prefix: String,
    /// Default: the parent's resource group.
    #[serde(default)]
    #[schemars(transform = contextual_default)]
    pub resource_group: String,
    /// Must equal the parent's location (Azure requires parent and child in one region);
    /// default: the parent's location.
    #[serde(default)]
    #[schemars(transform = contextual_default)]
    pub location: String,
}

/// A rule collection group.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleCollectionGroup {
    /// Name.
    pub name: String,
    /// 100-65000, unique within the policy.
    pub priority: u32,
    /// Rule collections.
    pub rule_collections: Vec<FwRuleCollection>,
}

/// Kind of a firewall rule collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FwCollectionKind {
    /// Network or application rules (FirewallPolicyFilterRuleCollection).
    Filter,
    /// DNAT rules (FirewallPolicyNatRuleCollection).
    Nat,
}

/// Action of a firewall rule collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub enum FwAction {
    /// Allow (filter collections).
    Allow,
    /// Deny (filter collections).
    Deny,
    /// DNAT (nat collections).
    #[serde(rename = "DNAT")]
    Dnat,
}

/// A firewall rule collection.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FwRuleCollection {
    /// Name.
    pub name: String,
    /// 100-65000, unique within the group.
    pub priority: u32,
    /// filter or nat.
    pub kind: FwCollectionKind,
    /// Allow or Deny (filter), DNAT (nat).
    pub action: FwAction,
    /// Rules; a filter collection holds only network or only application rules.
    pub rules: Vec<FwRule>,
}

/// Network rule protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub enum NetProtocol {
    /// TCP.
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// ICMP.
    #[serde(rename = "ICMP")]
    Icmp,
    /// Any.
    Any,
}

/// Application rule protocol types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub enum AppProtocolType {
    /// HTTP.
    Http,
    /// HTTPS.
    Https,
    /// MSSQL.
    Mssql,
}

/// An application rule protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppProtocol {
    /// Http, Https or Mssql.
    #[serde(rename = "type")]
    pub kind: AppProtocolType,
    /// Port 1-64000.
    pub port: u32,
}

/// A firewall rule, by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FwRule {
    /// A network rule.
    Network(NetworkRule),
    /// An application rule.
    Application(ApplicationRule),
    /// A DNAT rule.
    Nat(NatRule),
}

impl FwRule {
    /// The rule's name.
    pub fn name(&self) -> &str {
        match self {
            FwRule::Network(r) => &r.name,
            FwRule::Application(r) => &r.name,
            FwRule::Nat(r) => &r.name,
        }
    }
}

/// A network rule.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkRule {
    /// Name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// TCP, UDP, ICMP or Any.
    pub protocols: Vec<NetProtocol>,
    /// Source CIDRs, IPs or `*`.
    pub source_addresses: Vec<String>,
    /// Destination CIDRs, IPs, `*` or service tags.
    #[serde(default)]
    pub destination_addresses: Vec<String>,
    /// Destination ports: "443", "8000-8080", "*".
    #[schemars(with = "Vec<PortInput>")]
    pub destination_ports: Vec<String>,
    /// Destination FQDNs (requires DNS proxy).
    #[serde(default)]
    pub destination_fqdns: Vec<String>,
}

/// An application rule.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicationRule {
    /// Name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Protocols and ports.
    pub protocols: Vec<AppProtocol>,
    /// Source CIDRs, IPs or `*`.
    pub source_addresses: Vec<String>,
    /// Target FQDNs (wildcards like `*.example.com` allowed).
    #[serde(default)]
    pub target_fqdns: Vec<String>,
    /// FQDN tags, e.g. WindowsUpdate.
    #[serde(default)]
    pub fqdn_tags: Vec<String>,
}

/// A DNAT rule.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NatRule {
    /// Name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// TCP and/or UDP.
    pub protocols: Vec<NetProtocol>,
    /// Source CIDRs, IPs or `*`.
    pub source_addresses: Vec<String>,
    /// The firewall's public IP address(es).
    pub destination_addresses: Vec<String>,
    /// Destination ports.
    #[schemars(with = "Vec<PortInput>")]
    pub destination_ports: Vec<String>,
    /// Private IP the traffic is translated to.
    pub translated_address: String,
    /// Port the traffic is translated to.
    #[schemars(with = "PortInput")]
    pub translated_port: String,
}

/// Private DNS.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// Private DNS zones.
    pub zones: Vec<DnsZone>,
}

/// A private DNS zone.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsZone {
    /// Zone name, e.g. globojava.com (at least two labels).
    pub name: String,
    /// Resource group of the zone.
    pub resource_group: String,
    /// Subscription; defaults to the top-level `subscription`.
    #[serde(default)]
    #[schemars(transform = contextual_default)]
    pub subscription: String,
    /// VNet links. Default: every VNet of the intent, registration off, named `link-<vnet>`.
    #[serde(default)]
    pub links: DnsLinks,
    /// Record sets.
    #[serde(default)]
    pub records: Vec<DnsRecord>,
}

/// VNet links of a zone.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsLinks {
    /// VNet names to link; omitted = every VNet of the intent (hubs and spokes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vnets: Option<Vec<String>>,
    /// Auto-registration of VM records, for every link. Default false.
    #[serde(default)]
    pub registration_enabled: bool,
    /// VNets whose link has auto-registration regardless of `registration_enabled`.
    #[serde(default)]
    pub registration_vnets: Vec<String>,
    /// Link name is `<name_prefix><vnet name>`. Default `link-`.
    #[serde(default = "default_link_prefix")]
    pub name_prefix: String,
}

fn default_link_prefix() -> String {
    "link-".to_string()
}

impl Default for DnsLinks {
    fn default() -> Self {
        DnsLinks {
            vnets: None,
            registration_enabled: false,
            registration_vnets: Vec::new(),
            name_prefix: default_link_prefix(),
        }
    }
}

/// DNS record types supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub enum RecordType {
    /// IPv4 address records.
    A,
}

/// A record set.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsRecord {
    /// Name relative to the zone, e.g. `database.westeurope` (`@` for the apex).
    pub name: String,
    /// Record type (A).
    #[serde(rename = "type")]
    pub kind: RecordType,
    /// TTL in seconds (1-2147483647). Default 300.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// IPv4 addresses (A records); each must lie inside some VNet of the intent.
    pub ipv4: Vec<String>,
}

fn default_ttl() -> u32 {
    300
}
