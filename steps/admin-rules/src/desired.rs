//! The desired security admin configuration, its rule collections and rules, built from the
//! intent and the network group ids; and the guardrail inputs derived from the same intent.

use std::collections::{BTreeMap, BTreeSet};

use netstep::intent::{AddressRef, Intent};
use netstep::resources::{self, AddressPrefix, MANAGED_MARKER};
use serde_json::Value;
use tracing::warn;

use crate::guardrail;

/// AVNM's limit on an admin rule description (the marker included).
pub const RULE_DESCRIPTION_MAX: usize = 140;

/// A desired admin rule.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredRule {
    /// Rule name.
    pub name: String,
    /// Resource id.
    pub id: String,
    /// Priority.
    pub priority: u16,
    /// PUT body.
    pub body: Value,
}

/// A desired rule collection.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredCollection {
    /// Collection name.
    pub name: String,
    /// Resource id.
    pub id: String,
    /// PUT body.
    pub body: Value,
    /// Rules in intent order.
    pub rules: Vec<DesiredRule>,
}

/// The desired security admin configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredConfig {
    /// Configuration name.
    pub name: String,
    /// Resource id.
    pub id: String,
    /// PUT body.
    pub body: Value,
    /// Collections in intent order.
    pub collections: Vec<DesiredCollection>,
}

/// The id of each network group the intent declares: from `recorded` (the tag-groups
/// record's output, by name), else derived from the intent (ids are deterministic).
pub fn group_ids(intent: &Intent, recorded: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    intent
        .groups()
        .into_iter()
        .map(|g| {
            let id = match recorded.get(&g.name) {
                Some(r) if !r.eq_ignore_ascii_case(&g.id) => {
                    warn!(group = %g.name, recorded = %r, derived = %g.id, "tag-groups recorded a different group id; using the recorded one");
                    r.clone()
                }
                Some(r) => r.clone(),
                None => g.id,
            };
            (g.name, id)
        })
        .collect()
}

/// A rule description that fits AVNM's limit once the marker is appended (cut on a character
/// boundary with `...`).
pub fn fit_description(description: &str) -> String {
    let room = RULE_DESCRIPTION_MAX - MANAGED_MARKER.len() - 1;
    let d = description.trim();
    if d.chars().count() <= room {
        return d.to_string();
    }
    let cut: String = d.chars().take(room - 3).collect();
    format!("{}...", cut.trim_end())
}

fn ports(list: &[String]) -> Vec<String> {
    let v: Vec<String> = list
        .iter()
        .map(|p| {
            if p == "*" {
                "0-65535".to_string()
            } else {
                p.clone()
            }
        })
        .collect();
    if v.is_empty() {
        vec!["0-65535".to_string()]
    } else {
        v
    }
}

fn enum_str<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn prefix(a: &AddressRef, groups: &BTreeMap<String, String>, intent: &Intent) -> AddressPrefix {
    match a {
        AddressRef::Group { group } => AddressPrefix::NetworkGroup(
            groups
                .get(group)
                .cloned()
                .unwrap_or_else(|| intent.network_group_id(group)),
        ),
        AddressRef::Cidr { cidr } => AddressPrefix::IpPrefix(cidr.clone()),
        AddressRef::ServiceTag { service_tag } => AddressPrefix::ServiceTag(service_tag.clone()),
    }
}

/// The desired configuration (`None` when the intent has no `security_admin`).
pub fn desired(intent: &Intent, groups: &BTreeMap<String, String>) -> Option<DesiredConfig> {
    let sa = intent.security_admin.as_ref()?;
    let config_id = intent.security_admin_config_id()?;
    let services: Vec<String> = if sa.apply_on_network_intent_policy_based_services.is_empty() {
        vec!["None".to_string()]
    } else {
        sa.apply_on_network_intent_policy_based_services
            .iter()
            .map(enum_str)
            .collect()
    };
    let collections = sa
        .rule_collections
        .iter()
        .map(|c| {
            let cid = format!("{config_id}/ruleCollections/{}", c.name);
            let gids: Vec<String> = c
                .applies_to_groups
                .iter()
                .map(|g| {
                    groups
                        .get(g)
                        .cloned()
                        .unwrap_or_else(|| intent.network_group_id(g))
                })
                .collect();
            let rules = c
                .rules
                .iter()
                .map(|r| {
                    let rule = resources::AdminRule {
                        description: fit_description(&r.description),
                        // Validated 1..=4096 by the intent loader.
                        priority: u16::try_from(r.priority).unwrap_or(u16::MAX),
                        direction: enum_str(&r.direction),
                        access: enum_str(&r.access),
                        protocol: enum_str(&r.protocol),
                        sources: r
                            .sources
                            .iter()
                            .map(|a| prefix(a, groups, intent))
                            .collect(),
                        destinations: r
                            .destinations
                            .iter()
                            .map(|a| prefix(a, groups, intent))
                            .collect(),
                        source_port_ranges: ports(&r.source_ports),
                        destination_port_ranges: ports(&r.destination_ports),
                    };
                    DesiredRule {
                        name: r.name.clone(),
                        id: format!("{cid}/rules/{}", r.name),
                        priority: rule.priority,
                        body: resources::admin_rule(&rule),
                    }
                })
                .collect();
            DesiredCollection {
                name: c.name.clone(),
                id: cid,
                body: resources::admin_rule_collection(&c.description, &gids),
                rules,
            }
        })
        .collect();
    Some(DesiredConfig {
        name: sa.name.clone(),
        id: config_id,
        body: resources::security_admin_configuration(&sa.description, &services),
        collections,
    })
}

/// The guardrail inputs from the intent: its admin rules and its VNets with their group
/// memberships (as the intent resolves them: tag conditions and static members).
pub fn guardrail_inputs(intent: &Intent) -> (Vec<guardrail::Rule>, Vec<guardrail::Endpoint>) {
    let mut rules = Vec::new();
    if let Some(sa) = intent.security_admin.as_ref() {
        for c in &sa.rule_collections {
            let applies: BTreeSet<String> = c.applies_to_groups.iter().cloned().collect();
            for r in &c.rules {
                let addr = |a: &AddressRef| match a {
                    AddressRef::Group { group } => guardrail::Addr::Group(group.clone()),
                    AddressRef::Cidr { cidr } => guardrail::Addr::Prefix(cidr.clone()),
                    AddressRef::ServiceTag { service_tag } => {
                        guardrail::Addr::ServiceTag(service_tag.clone())
                    }
                };
                let full = |l: &[String]| {
                    let p = ports(l);
                    p.iter().any(|x| x == "0-65535")
                };
                rules.push(guardrail::Rule {
                    name: format!("{}/{}", c.name, r.name),
                    applies_to: applies.clone(),
                    direction: match r.direction {
                        netstep::intent::Direction::Inbound => guardrail::Direction::Inbound,
                        netstep::intent::Direction::Outbound => guardrail::Direction::Outbound,
                    },
                    access: match r.access {
                        netstep::intent::AdminAccess::Allow => guardrail::Access::Allow,
                        netstep::intent::AdminAccess::Deny => guardrail::Access::Deny,
                        netstep::intent::AdminAccess::AlwaysAllow => guardrail::Access::AlwaysAllow,
                    },
                    priority: r.priority,
                    any_protocol: matches!(r.protocol, netstep::intent::AdminProtocol::Any),
                    sources: r.sources.iter().map(addr).collect(),
                    destinations: r.destinations.iter().map(addr).collect(),
                    all_ports: full(&r.source_ports) && full(&r.destination_ports),
                });
            }
        }
    }
    // Memberships: one pass per declared group.
    let mut member_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for g in &intent.network_groups {
        for v in intent.group_members(&g.name) {
            member_of
                .entry(v.name.to_string())
                .or_default()
                .insert(g.name.clone());
        }
    }
    let endpoints = intent
        .vnets()
        .into_iter()
        .map(|v| guardrail::Endpoint {
            name: v.name.to_string(),
            env: v.env.map(str::to_string),
            groups: member_of.remove(v.name).unwrap_or_default(),
            address_space: v.address_space.to_vec(),
        })
        .collect();
    (rules, endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_descriptions_are_cut_to_fit_with_the_marker() {
        let d = "x".repeat(140);
        let f = fit_description(&d);
        let full = resources::marked_description(&f);
        assert_eq!(full.chars().count(), RULE_DESCRIPTION_MAX);
        assert!(f.ends_with("..."));
        assert_eq!(fit_description("short"), "short");
    }

    #[test]
    fn star_ports_become_the_full_range() {
        assert_eq!(ports(&["*".into()]), vec!["0-65535"]);
        assert_eq!(ports(&[]), vec!["0-65535"]);
        assert_eq!(ports(&["80".into()]), vec!["80"]);
    }
}
