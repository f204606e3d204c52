//! What the intent wants: each private DNS zone with its virtual network links and A record
//! sets, as spec-shaped desired bodies (from [`netstep::resources`]).

use std::collections::BTreeMap;

use netstep::intent::Intent;
use netstep::resources;
use serde_json::Value;

/// A zone the intent declares.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredZone {
    /// Zone name (`globojava.com`).
    pub name: String,
    /// Zone resource id.
    pub id: String,
    /// Desired zone body.
    pub body: Value,
    /// Desired links, in intent order.
    pub links: Vec<DesiredLink>,
    /// Desired A record sets, in intent order.
    pub records: Vec<DesiredRecord>,
}

/// A virtual network link the intent wants.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredLink {
    /// Link name (`link-vnet-hub-eastus`).
    pub name: String,
    /// Link resource id.
    pub id: String,
    /// Linked VNet id.
    pub vnet_id: String,
    /// Auto-registration.
    pub registration_enabled: bool,
    /// Desired body.
    pub body: Value,
}

/// An A record set the intent wants.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredRecord {
    /// Name relative to the zone (`database.eastus`, `@`).
    pub name: String,
    /// Record set resource id (`.../privateDnsZones/{zone}/A/{name}`).
    pub id: String,
    /// Desired body.
    pub body: Value,
}

/// The zones of the intent, in intent order (empty without a `dns` section).
pub fn zones(intent: &Intent) -> Vec<DesiredZone> {
    let Some(dns) = &intent.dns else {
        return Vec::new();
    };
    let mut links: BTreeMap<String, Vec<DesiredLink>> = BTreeMap::new();
    for l in intent.dns_links() {
        let id = format!("{}/virtualNetworkLinks/{}", l.zone_id, l.name);
        links
            .entry(l.zone_id.to_ascii_lowercase())
            .or_default()
            .push(DesiredLink {
                body: resources::dns_link(&l.vnet_id, l.registration_enabled),
                name: l.name,
                id,
                vnet_id: l.vnet_id,
                registration_enabled: l.registration_enabled,
            });
    }
    dns.zones
        .iter()
        .map(|z| {
            let id = resources::network_id(
                &z.subscription,
                &z.resource_group,
                &format!("privateDnsZones/{}", z.name),
            );
            let records = z
                .records
                .iter()
                .map(|r| DesiredRecord {
                    name: r.name.clone(),
                    id: format!("{id}/A/{}", r.name),
                    body: resources::dns_a_record(r.ttl, &r.ipv4),
                })
                .collect();
            DesiredZone {
                name: z.name.clone(),
                links: links.remove(&id.to_ascii_lowercase()).unwrap_or_default(),
                id,
                body: resources::private_dns_zone(),
                records,
            }
        })
        .collect()
}

/// `(subscription, resource group)` pairs declared by the intent, deduplicated (case-insensitive),
/// in declaration order: where netstep looks for zones it manages.
pub fn resource_groups(intent: &Intent) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for rg in &intent.resource_groups {
        let key = (
            rg.subscription.to_ascii_lowercase(),
            rg.name.to_ascii_lowercase(),
        );
        if !out
            .iter()
            .any(|(s, r)| (s.to_ascii_lowercase(), r.to_ascii_lowercase()) == key)
        {
            out.push((rg.subscription.clone(), rg.name.clone()));
        }
    }
    out
}
