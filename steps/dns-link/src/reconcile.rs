//! The diff: desired zones, links and record sets against what ARM listed, as a rendered
//! [`Plan`] plus the concrete write operations, and the reasons apply must refuse (blockers).
//!
//! Pure functions (no I/O), so every decision is unit-tested.
//!
//! Ownership: zones and links are netstep's when they carry the `managed-by: netstep` tag,
//! record sets when their `metadata` carries it ([`resources::is_managed`]). Anything else is
//! never modified nor deleted:
//! - an intent zone that exists without the tag is refused (blocker, exit 1);
//! - an intent link or record whose name is taken by an unmanaged one is refused;
//! - a VNet already linked to the zone under another name is refused, unless that other link
//!   is netstep's and dropped by the intent and `--prune` is given (it is deleted first);
//! - a managed zone the intent dropped is deleted (with `--prune`) only when nothing unmanaged
//!   is left in it (deleting a zone deletes its record sets).

use std::collections::{BTreeMap, BTreeSet};

use netstep::plan::{Action, FieldChange, Plan, ResourceChange, plan_resource};
use netstep::resources::{self, types};
use serde_json::Value;

use crate::desired::DesiredZone;

/// The three resource kinds of this step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A private DNS zone.
    Zone,
    /// A virtual network link.
    Link,
    /// An A record set.
    Record,
}

impl Kind {
    /// The ARM type.
    pub fn arm_type(self) -> &'static str {
        match self {
            Kind::Zone => types::PRIVATE_DNS_ZONE,
            Kind::Link => types::DNS_LINK,
            Kind::Record => types::DNS_A_RECORD,
        }
    }

    /// A human name for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Zone => "private DNS zone",
            Kind::Link => "virtual network link",
            Kind::Record => "A record set",
        }
    }
}

/// The precondition of a PUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// `If-None-Match: *`: a concurrent creator makes the PUT fail (412) instead of being
    /// overwritten.
    Create,
    /// `If-Match: <etag read>` (no header when ARM gave no etag).
    Update(Option<String>),
}

/// One PUT.
#[derive(Debug, Clone, PartialEq)]
pub struct PutOp {
    /// What it writes.
    pub kind: Kind,
    /// Resource id.
    pub id: String,
    /// The zone it belongs to (itself for a zone).
    pub zone_id: String,
    /// The desired body (what is compared).
    pub desired: Value,
    /// The body sent: desired plus what others own on the resource (foreign tags, metadata).
    pub body: Value,
    /// The precondition.
    pub cond: Cond,
}

/// One DELETE (only with `--prune`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteOp {
    /// What it deletes.
    pub kind: Kind,
    /// Resource id.
    pub id: String,
}

/// The outcome of the diff.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Work {
    /// The rendered plan (creates/updates in apply order, then deletes).
    pub plan: Plan,
    /// Zone creates/updates.
    pub zone_puts: Vec<PutOp>,
    /// Link creates/updates.
    pub link_puts: Vec<PutOp>,
    /// Record set creates/updates.
    pub record_puts: Vec<PutOp>,
    /// Record set deletes (first).
    pub record_deletes: Vec<DeleteOp>,
    /// Link deletes (second).
    pub link_deletes: Vec<DeleteOp>,
    /// Zone deletes (last; a zone with links cannot be deleted).
    pub zone_deletes: Vec<DeleteOp>,
    /// Why apply must refuse (unmanaged resources in the way, limits). Empty when it may go.
    pub blockers: Vec<String>,
}

impl Work {
    /// Number of deletes planned.
    pub fn deletes(&self) -> usize {
        self.record_deletes.len() + self.link_deletes.len() + self.zone_deletes.len()
    }

    /// Number of writes apply will make (deletes only with `--prune`).
    pub fn writes(&self, prune: bool) -> usize {
        self.zone_puts.len()
            + self.link_puts.len()
            + self.record_puts.len()
            + if prune { self.deletes() } else { 0 }
    }
}

/// What was read from ARM.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Actual {
    /// Every zone listed in the intent's resource groups.
    pub zones: Vec<Value>,
    /// Links of each zone read, by lower-cased zone id.
    pub links: BTreeMap<String, Vec<Value>>,
    /// Record sets of each zone read, by lower-cased zone id (`A` for intent zones, `ALL` for
    /// dropped ones).
    pub records: BTreeMap<String, Vec<Value>>,
}

/// Why a zone's children are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneRead {
    /// An intent zone that exists and is netstep's: list links and `A` record sets.
    Kept,
    /// A managed zone the intent no longer declares: list links and `ALL` record sets.
    Dropped,
}

fn lc(s: &str) -> String {
    s.to_ascii_lowercase()
}

fn id_of(v: &Value) -> String {
    v.get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn name_of(v: &Value) -> String {
    match v.get("name").and_then(Value::as_str) {
        Some(n) => n.to_string(),
        None => resources::name_of(&id_of(v)).to_string(),
    }
}

fn etag_of(v: &Value) -> Option<String> {
    v.get("etag")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
        .map(str::to_string)
}

/// The zones whose links and record sets must be read, with why.
pub fn zones_to_read(desired: &[DesiredZone], listed: &[Value]) -> Vec<(String, ZoneRead)> {
    let wanted: BTreeSet<String> = desired.iter().map(|z| lc(&z.id)).collect();
    let mut out = Vec::new();
    for z in desired {
        if let Some(a) = listed.iter().find(|a| lc(&id_of(a)) == lc(&z.id))
            && resources::is_managed(a)
        {
            out.push((z.id.clone(), ZoneRead::Kept));
        }
    }
    for a in listed {
        if !wanted.contains(&lc(&id_of(a))) && resources::is_managed(a) {
            out.push((id_of(a), ZoneRead::Dropped));
        }
    }
    out
}

/// The body to PUT over `actual`: `desired`, keeping what others own on the resource (tags or
/// record metadata netstep does not set), since a PUT replaces the whole resource. Only members
/// of the pinned api-version's model are sent (2024-06-01 links have no `resolutionPolicy`).
pub fn merge_foreign(kind: Kind, desired: &Value, actual: Option<&Value>) -> Value {
    let mut body = desired.clone();
    let Some(actual) = actual else {
        return body;
    };
    let keep = |body: &mut Value, pointer: &str, parent: &[&str]| {
        let Some(Value::Object(theirs)) = actual.pointer(pointer) else {
            return;
        };
        let mut node = &mut *body;
        for key in parent {
            node = node
                .as_object_mut()
                .map(|o| {
                    o.entry(key.to_string())
                        .or_insert(Value::Object(Default::default()))
                })
                .expect("desired bodies are objects");
        }
        if let Some(ours) = node.as_object_mut() {
            for (k, v) in theirs {
                ours.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    };
    match kind {
        Kind::Zone | Kind::Link => keep(&mut body, "/tags", &["tags"]),
        Kind::Record => keep(
            &mut body,
            "/properties/metadata",
            &["properties", "metadata"],
        ),
    }
    body
}

/// The PUT for `desired` over `actual` (`None` when absent): `None` when nothing differs.
/// `actual` must be netstep's (the caller checks).
pub fn put_for(
    kind: Kind,
    id: &str,
    zone_id: &str,
    desired: &Value,
    actual: Option<&Value>,
) -> Option<(PutOp, ResourceChange)> {
    let failed = actual
        .and_then(|a| a.pointer("/properties/provisioningState"))
        .and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case("failed"));
    let change = match plan_resource(id, kind.arm_type(), desired, actual) {
        Some(c) => c,
        // Same content but a failed provisioning (an earlier PUT's operation failed): PUT it
        // again, or it would stay broken forever.
        None if failed => ResourceChange {
            action: Action::Update,
            resource_id: id.to_string(),
            resource_type: kind.arm_type().to_string(),
            fields: vec![FieldChange {
                path: "properties.provisioningState".into(),
                old: Some(Value::String("Failed".into())),
                new: Some(Value::String("Succeeded".into())),
            }],
        },
        None => return None,
    };
    let cond = match actual {
        None => Cond::Create,
        Some(a) => Cond::Update(etag_of(a)),
    };
    let op = PutOp {
        kind,
        id: id.to_string(),
        zone_id: zone_id.to_string(),
        desired: desired.clone(),
        body: merge_foreign(kind, desired, actual),
        cond,
    };
    Some((op, change))
}

fn delete_change(kind: Kind, id: &str) -> ResourceChange {
    ResourceChange {
        action: Action::Delete,
        resource_id: id.to_string(),
        resource_type: kind.arm_type().to_string(),
        fields: Vec::new(),
    }
}

fn vnet_of(link: &Value) -> String {
    link.pointer("/properties/virtualNetwork/id")
        .and_then(Value::as_str)
        .map(lc)
        .unwrap_or_default()
}

fn registration(link: &Value) -> bool {
    link.pointer("/properties/registrationEnabled")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn limit(zone: &Value, field: &str) -> Option<u64> {
    zone.pointer(&format!("/properties/{field}"))
        .and_then(Value::as_u64)
}

/// Diffs the intent's zones against what was read. `prune` decides only whether deletes that
/// other changes depend on (a VNet re-linked under a new name) block the apply.
pub fn reconcile(desired: &[DesiredZone], actual: &Actual, prune: bool) -> Work {
    let mut w = Work::default();
    let mut deletes: Vec<ResourceChange> = Vec::new();
    for z in desired {
        let zone_actual = actual.zones.iter().find(|a| lc(&id_of(a)) == lc(&z.id));
        if let Some(a) = zone_actual
            && !resources::is_managed(a)
        {
            w.blockers.push(format!(
                "{} {} exists but is not managed by netstep (no `{}: {}` tag); netstep will not modify it or add links and records to it. Tag it `{}: {}` to hand it to netstep, or remove it from the intent.",
                Kind::Zone.noun(),
                z.id,
                resources::MANAGED_TAG.0,
                resources::MANAGED_TAG.1,
                resources::MANAGED_TAG.0,
                resources::MANAGED_TAG.1,
            ));
            continue;
        }
        if let Some((op, change)) = put_for(Kind::Zone, &z.id, &z.id, &z.body, zone_actual) {
            w.zone_puts.push(op);
            w.plan.changes.push(change);
        }
        let key = lc(&z.id);
        let empty = Vec::new();
        let links = actual.links.get(&key).unwrap_or(&empty);
        let records = actual.records.get(&key).unwrap_or(&empty);

        // Links.
        let by_name: BTreeMap<String, &Value> =
            links.iter().map(|l| (lc(&name_of(l)), l)).collect();
        let wanted: BTreeSet<String> = z.links.iter().map(|l| lc(&l.name)).collect();
        let mut creates = 0u64;
        let mut reg_creates = 0u64;
        for l in &z.links {
            let existing = by_name.get(&lc(&l.name)).copied();
            if let Some(e) = existing {
                if !resources::is_managed(e) {
                    w.blockers.push(format!(
                        "{} {} exists but is not managed by netstep; netstep will not modify it. Remove it, tag it `{}: {}`, or leave VNet {} out of dns links.",
                        Kind::Link.noun(), l.id, resources::MANAGED_TAG.0, resources::MANAGED_TAG.1, resources::name_of(&l.vnet_id)
                    ));
                    continue;
                }
            } else if let Some(other) = links
                .iter()
                .find(|o| vnet_of(o) == lc(&l.vnet_id) && !wanted.contains(&lc(&name_of(o))))
            {
                // Azure links a VNet to a zone once: the other link must go first.
                let managed = resources::is_managed(other);
                if !managed {
                    w.blockers.push(format!(
                        "VNet {} is already linked to zone {} by {} {} which netstep does not manage; netstep will not replace it with {}.",
                        l.vnet_id, z.name, Kind::Link.noun(), id_of(other), l.name
                    ));
                    continue;
                }
                if !prune {
                    w.blockers.push(format!(
                        "VNet {} is linked to zone {} by netstep's link {} which the intent no longer names; it must be deleted before {} can be created: re-run with --prune.",
                        l.vnet_id, z.name, name_of(other), l.name
                    ));
                    continue;
                }
            }
            if let Some((op, change)) = put_for(Kind::Link, &l.id, &z.id, &l.body, existing) {
                if existing.is_none() {
                    creates += 1;
                    reg_creates += u64::from(l.registration_enabled);
                }
                w.link_puts.push(op);
                w.plan.changes.push(change);
            }
        }
        let mut link_deletes = 0u64;
        let mut reg_deletes = 0u64;
        for e in links {
            if !wanted.contains(&lc(&name_of(e))) && resources::is_managed(e) {
                link_deletes += 1;
                reg_deletes += u64::from(registration(e));
                w.link_deletes.push(DeleteOp {
                    kind: Kind::Link,
                    id: id_of(e),
                });
                deletes.push(delete_change(Kind::Link, &id_of(e)));
            }
        }
        // The zone's own limits, read from ARM (the intent validated 1,000 links already).
        if let Some(a) = zone_actual {
            let removed = |n: u64| if prune { n } else { 0 };
            let after = links.len() as u64 + creates - removed(link_deletes);
            if let Some(max) = limit(a, "maxNumberOfVirtualNetworkLinks")
                && after > max
            {
                w.blockers.push(format!(
                    "zone {} would have {after} virtual network links, above its limit of {max} (maxNumberOfVirtualNetworkLinks); link fewer VNets.",
                    z.name
                ));
            }
            let reg_now = links.iter().filter(|l| registration(l)).count() as u64;
            let reg_after = reg_now + reg_creates - removed(reg_deletes);
            if let Some(max) = limit(a, "maxNumberOfVirtualNetworkLinksWithRegistration")
                && reg_creates > 0
                && reg_after > max
            {
                w.blockers.push(format!(
                    "zone {} would have {reg_after} registration-enabled links, above its limit of {max} (maxNumberOfVirtualNetworkLinksWithRegistration).",
                    z.name
                ));
            }
        }

        // Record sets.
        let rec_by_name: BTreeMap<String, &Value> =
            records.iter().map(|r| (lc(&name_of(r)), r)).collect();
        let rec_wanted: BTreeSet<String> = z.records.iter().map(|r| lc(&r.name)).collect();
        for r in &z.records {
            let existing = rec_by_name.get(&lc(&r.name)).copied();
            if let Some(e) = existing
                && !resources::is_managed(e)
            {
                w.blockers.push(format!(
                    "{} {} exists but is not managed by netstep (no `{}` metadata); netstep will not modify it. Remove it or drop it from the intent.",
                    Kind::Record.noun(), r.id, resources::MANAGED_TAG.0
                ));
                continue;
            }
            if let Some((op, change)) = put_for(Kind::Record, &r.id, &z.id, &r.body, existing) {
                w.record_puts.push(op);
                w.plan.changes.push(change);
            }
        }
        for e in records {
            if !rec_wanted.contains(&lc(&name_of(e))) && resources::is_managed(e) {
                w.record_deletes.push(DeleteOp {
                    kind: Kind::Record,
                    id: id_of(e),
                });
                deletes.push(delete_change(Kind::Record, &id_of(e)));
            }
        }
    }

    // Managed zones the intent dropped.
    for (zid, why) in zones_to_read(desired, &actual.zones) {
        if why != ZoneRead::Dropped {
            continue;
        }
        let key = lc(&zid);
        let empty = Vec::new();
        let links = actual.links.get(&key).unwrap_or(&empty);
        let records = actual.records.get(&key).unwrap_or(&empty);
        let mut foreign = 0usize;
        for r in records {
            let ty = r.get("type").and_then(Value::as_str).unwrap_or("");
            if ty.to_ascii_lowercase().ends_with("/soa") {
                continue; // Every zone has its SOA record set; it goes with the zone.
            }
            if resources::is_managed(r) {
                w.record_deletes.push(DeleteOp {
                    kind: Kind::Record,
                    id: id_of(r),
                });
                deletes.push(delete_change(Kind::Record, &id_of(r)));
            } else {
                foreign += 1;
            }
        }
        for l in links {
            if resources::is_managed(l) {
                w.link_deletes.push(DeleteOp {
                    kind: Kind::Link,
                    id: id_of(l),
                });
                deletes.push(delete_change(Kind::Link, &id_of(l)));
            } else {
                foreign += 1;
            }
        }
        if foreign == 0 {
            w.zone_deletes.push(DeleteOp {
                kind: Kind::Zone,
                id: zid.clone(),
            });
            deletes.push(delete_change(Kind::Zone, &zid));
        } else {
            w.plan.notes.push(format!(
                "zone {} is netstep's but no longer in the intent; it holds {foreign} link(s)/record set(s) netstep does not manage, so it is kept (only netstep's are deleted)",
                resources::name_of(&zid)
            ));
        }
    }

    // Deletes last, in their apply order: records, links, zones.
    deletes.sort_by_key(|c| match c.resource_type.as_str() {
        types::DNS_A_RECORD => 0,
        types::DNS_LINK => 1,
        _ => 2,
    });
    w.plan.changes.extend(deletes);
    if w.deletes() > 0 && !prune {
        w.plan.notes.push(format!(
            "{} delete(s) are shown but not applied: run apply with --prune to delete what the intent dropped",
            w.deletes()
        ));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{DesiredLink, DesiredRecord};
    use serde_json::json;

    const Z: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/privateDnsZones/example.com";

    fn vnet(n: &str) -> String {
        format!(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/{n}"
        )
    }

    fn zone(links: &[&str], records: &[(&str, &str)]) -> DesiredZone {
        DesiredZone {
            name: "example.com".into(),
            id: Z.into(),
            body: resources::private_dns_zone(),
            links: links
                .iter()
                .map(|v| DesiredLink {
                    name: format!("link-{v}"),
                    id: format!("{Z}/virtualNetworkLinks/link-{v}"),
                    vnet_id: vnet(v),
                    registration_enabled: false,
                    body: resources::dns_link(&vnet(v), false),
                })
                .collect(),
            records: records
                .iter()
                .map(|(n, ip)| DesiredRecord {
                    name: n.to_string(),
                    id: format!("{Z}/A/{n}"),
                    body: resources::dns_a_record(300, &[ip.to_string()]),
                })
                .collect(),
        }
    }

    /// What ARM answers for a zone/link/record netstep wrote (read-only fields added).
    fn as_read(kind: Kind, id: &str, body: &Value) -> Value {
        let mut v = body.clone();
        v["id"] = json!(id);
        v["name"] = json!(resources::name_of(id));
        v["etag"] = json!(format!("etag-{}", resources::name_of(id)));
        match kind {
            Kind::Zone => {
                v["properties"] = json!({"maxNumberOfVirtualNetworkLinks": 1000,
                    "maxNumberOfVirtualNetworkLinksWithRegistration": 100,
                    "numberOfVirtualNetworkLinks": 0, "provisioningState": "Succeeded"})
            }
            Kind::Link => {
                v["properties"]["provisioningState"] = json!("Succeeded");
                v["properties"]["virtualNetworkLinkState"] = json!("Completed");
            }
            Kind::Record => {
                v["properties"]["fqdn"] = json!("x.example.com.");
                v["properties"]["isAutoRegistered"] = json!(false);
            }
        }
        v
    }

    fn converged(z: &DesiredZone) -> Actual {
        let mut a = Actual {
            zones: vec![as_read(Kind::Zone, &z.id, &z.body)],
            ..Default::default()
        };
        a.links.insert(
            lc(&z.id),
            z.links
                .iter()
                .map(|l| as_read(Kind::Link, &l.id, &l.body))
                .collect(),
        );
        a.records.insert(
            lc(&z.id),
            z.records
                .iter()
                .map(|r| as_read(Kind::Record, &r.id, &r.body))
                .collect(),
        );
        a
    }

    #[test]
    fn empty_estate_creates_zone_links_and_records_with_if_none_match() {
        let z = zone(&["a", "b"], &[("db", "10.0.0.10")]);
        let w = reconcile(std::slice::from_ref(&z), &Actual::default(), false);
        assert!(w.blockers.is_empty(), "{:?}", w.blockers);
        assert_eq!(w.zone_puts.len(), 1);
        assert_eq!(w.link_puts.len(), 2);
        assert_eq!(w.record_puts.len(), 1);
        assert!(
            w.zone_puts
                .iter()
                .chain(&w.link_puts)
                .chain(&w.record_puts)
                .all(|p| p.cond == Cond::Create)
        );
        assert_eq!(w.plan.counts(), (4, 0, 0));
        assert_eq!(w.writes(false), 4);
    }

    #[test]
    fn converged_estate_plans_nothing_despite_read_only_fields() {
        let z = zone(&["a", "b"], &[("db", "10.0.0.10")]);
        let w = reconcile(std::slice::from_ref(&z), &converged(&z), true);
        assert!(w.plan.is_empty(), "{}", w.plan.render());
        assert_eq!(w.writes(true), 0);
    }

    #[test]
    fn changed_record_ip_is_one_update_with_if_match_keeping_foreign_metadata() {
        let z = zone(&["a"], &[("db", "10.0.0.10"), ("web", "10.0.0.20")]);
        let mut a = converged(&z);
        let recs = a.records.get_mut(&lc(Z)).unwrap();
        recs[0]["properties"]["aRecords"] = json!([{"ipv4Address": "10.0.0.99"}]);
        recs[0]["properties"]["metadata"]["owner"] = json!("team-db");
        let w = reconcile(std::slice::from_ref(&z), &a, false);
        assert_eq!(w.writes(false), 1);
        let p = &w.record_puts[0];
        assert_eq!(p.cond, Cond::Update(Some("etag-db".into())));
        assert_eq!(p.body["properties"]["metadata"]["owner"], "team-db");
        assert_eq!(
            p.body["properties"]["aRecords"][0]["ipv4Address"],
            "10.0.0.10"
        );
        let r = w.plan.render();
        assert!(
            r.contains("~ update privateDnsZones/example.com/A/db"),
            "{r}"
        );
    }

    #[test]
    fn unmanaged_things_are_never_touched() {
        let z = zone(&["a"], &[("db", "10.0.0.10")]);
        let mut a = converged(&z);
        // An unmanaged record and link the intent does not mention: left alone, no delete.
        a.records.get_mut(&lc(Z)).unwrap().push(json!({"id": format!("{Z}/A/legacy"),
            "name": "legacy", "properties": {"ttl": 60, "aRecords": [{"ipv4Address": "10.9.9.9"}]}}));
        a.links
            .get_mut(&lc(Z))
            .unwrap()
            .push(json!({"id": format!("{Z}/virtualNetworkLinks/other"),
            "name": "other", "tags": {}, "properties": {"virtualNetwork": {"id": vnet("x")}}}));
        let w = reconcile(std::slice::from_ref(&z), &a, true);
        assert!(w.plan.is_empty(), "{}", w.plan.render());

        // The same names wanted by the intent: refused.
        let z2 = zone(&["a"], &[("db", "10.0.0.10"), ("legacy", "10.0.0.11")]);
        let w = reconcile(std::slice::from_ref(&z2), &a, true);
        assert_eq!(w.blockers.len(), 1, "{:?}", w.blockers);
        assert!(w.blockers[0].contains("A/legacy"), "{:?}", w.blockers);
        assert!(w.record_puts.is_empty());

        // An unmanaged zone: refused, nothing planned under it.
        let mut a2 = Actual::default();
        a2.zones
            .push(json!({"id": Z, "name": "example.com", "location": "global", "tags": {}}));
        let w = reconcile(std::slice::from_ref(&z), &a2, false);
        assert_eq!(w.blockers.len(), 1);
        assert!(w.blockers[0].contains("not managed by netstep"));
        assert_eq!(w.writes(true), 0);
    }

    #[test]
    fn dropped_link_and_record_are_deletes_in_safe_order() {
        let full = zone(&["a", "b"], &[("db", "10.0.0.10"), ("old", "10.0.0.11")]);
        let a = converged(&full);
        let z = zone(&["a"], &[("db", "10.0.0.10")]);
        let w = reconcile(std::slice::from_ref(&z), &a, false);
        assert_eq!(w.plan.counts(), (0, 0, 2));
        assert_eq!(w.record_deletes.len(), 1);
        assert_eq!(w.link_deletes.len(), 1);
        assert_eq!(w.writes(false), 0, "deletes need --prune");
        assert_eq!(w.writes(true), 2);
        let r = w.plan.render();
        let rec = r
            .find("- delete privateDnsZones/example.com/A/old")
            .unwrap();
        let link = r
            .find("- delete privateDnsZones/example.com/virtualNetworkLinks/link-b")
            .unwrap();
        assert!(rec < link, "{r}");
        assert!(r.contains("--prune"), "{r}");
    }

    #[test]
    fn renamed_link_needs_prune_and_unmanaged_link_to_the_vnet_blocks() {
        let old = zone(&["a"], &[]);
        let a = converged(&old);
        let mut z = zone(&["a"], &[]);
        z.links[0].name = "lnk-a".into();
        z.links[0].id = format!("{Z}/virtualNetworkLinks/lnk-a");
        let w = reconcile(std::slice::from_ref(&z), &a, false);
        assert_eq!(w.blockers.len(), 1);
        assert!(w.blockers[0].contains("--prune"), "{:?}", w.blockers);
        let w = reconcile(std::slice::from_ref(&z), &a, true);
        assert!(w.blockers.is_empty());
        assert_eq!((w.link_deletes.len(), w.link_puts.len()), (1, 1));

        let mut a2 = a.clone();
        a2.links.get_mut(&lc(Z)).unwrap()[0]["tags"] = json!({});
        let w = reconcile(std::slice::from_ref(&z), &a2, true);
        assert_eq!(w.blockers.len(), 1);
        assert!(
            w.blockers[0].contains("does not manage"),
            "{:?}",
            w.blockers
        );
    }

    #[test]
    fn a_failed_link_is_put_again_even_with_the_same_content() {
        let z = zone(&["a", "b"], &[]);
        let mut a = converged(&z);
        a.links.get_mut(&lc(Z)).unwrap()[1]["properties"]["provisioningState"] = json!("Failed");
        let w = reconcile(std::slice::from_ref(&z), &a, false);
        assert_eq!(w.link_puts.len(), 1);
        assert_eq!(
            w.link_puts[0].cond,
            Cond::Update(Some("etag-link-b".into()))
        );
        assert!(
            w.plan
                .render()
                .contains("properties.provisioningState: \"Failed\" -> \"Succeeded\""),
            "{}",
            w.plan.render()
        );
    }

    #[test]
    fn zone_link_limit_from_arm_is_enforced() {
        let z = zone(&["a", "b", "c"], &[]);
        let mut a = converged(&zone(&["a"], &[]));
        a.zones[0]["properties"]["maxNumberOfVirtualNetworkLinks"] = json!(2);
        let w = reconcile(std::slice::from_ref(&z), &a, false);
        assert_eq!(w.blockers.len(), 1, "{:?}", w.blockers);
        assert!(w.blockers[0].contains("limit of 2"), "{:?}", w.blockers);
    }

    #[test]
    fn dropped_managed_zone_is_deleted_after_its_children_unless_foreign_content() {
        let old = zone(&["a"], &[("db", "10.0.0.10")]);
        let a = converged(&old);
        let w = reconcile(&[], &a, true);
        assert_eq!(w.plan.counts(), (0, 0, 3));
        assert_eq!(w.zone_deletes.len(), 1);
        let kinds: Vec<&str> = w
            .plan
            .changes
            .iter()
            .map(|c| c.resource_type.as_str())
            .collect();
        assert_eq!(
            kinds,
            [
                types::DNS_A_RECORD,
                types::DNS_LINK,
                types::PRIVATE_DNS_ZONE
            ]
        );

        let mut a2 = a.clone();
        a2.records
            .get_mut(&lc(Z))
            .unwrap()
            .push(json!({"id": format!("{Z}/A/vm1"),
            "name": "vm1", "type": "Microsoft.Network/privateDnsZones/A",
            "properties": {"isAutoRegistered": true}}));
        a2.records
            .get_mut(&lc(Z))
            .unwrap()
            .push(json!({"id": format!("{Z}/SOA/@"),
            "name": "@", "type": "Microsoft.Network/privateDnsZones/SOA", "properties": {}}));
        let w = reconcile(&[], &a2, true);
        assert!(w.zone_deletes.is_empty());
        assert_eq!(w.plan.counts(), (0, 0, 2));
        assert!(w.plan.notes[0].contains("kept"), "{:?}", w.plan.notes);
    }

    #[test]
    fn merge_keeps_foreign_tags_but_sends_only_model_members() {
        let d = resources::dns_link(&vnet("a"), false);
        let a = json!({"tags": {"owner": "x", "managed-by": "someone"},
            "properties": {"resolutionPolicy": "NxDomainRedirect", "provisioningState": "Succeeded"}});
        let b = merge_foreign(Kind::Link, &d, Some(&a));
        assert_eq!(b["tags"]["owner"], "x");
        assert_eq!(b["tags"]["managed-by"], "netstep");
        assert_eq!(b["properties"], d["properties"]);
        assert_eq!(merge_foreign(Kind::Link, &d, None), d);
    }
}
