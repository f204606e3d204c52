//! In-memory resource store: resources keyed by lower-cased id, plus collection indexes
//! so that lists, paging and cascading deletes never scan the whole store.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::time::Instant;

use serde_json::Value;
use time::OffsetDateTime;

use crate::model::Kind;

/// Provisioning state over simulated time.
#[derive(Debug, Clone)]
pub struct Prov {
    pub until: Option<Instant>,
    pub during: &'static str,
    pub after: &'static str,
}

impl Prov {
    pub fn done() -> Self {
        Prov {
            until: None,
            during: "Succeeded",
            after: "Succeeded",
        }
    }
    pub fn state(&self, now: Instant) -> &'static str {
        match self.until {
            Some(t) if now < t => self.during,
            _ => self.after,
        }
    }
    pub fn busy(&self, now: Instant) -> bool {
        matches!(self.until, Some(t) if now < t)
    }
}

#[derive(Debug, Clone)]
pub struct Res {
    /// Canonical id, as Azure spells it.
    pub id: String,
    pub kind: Kind,
    /// The stored resource body (id, name, type, location, tags, properties, ...), without etag.
    pub body: Value,
    pub etag_seq: u64,
    pub guid: String,
    pub created_at: OffsetDateTime,
    pub created_by: String,
    pub modified_at: OffsetDateTime,
    pub modified_by: String,
    pub prov: Prov,
    /// When this resource's tags last changed (policy evaluation lag).
    pub tags_changed_at: Instant,
    /// Tags before the last change (what policy still sees during the lag).
    pub prev_tags: Value,
}

impl Res {
    pub fn name(&self) -> &str {
        self.id.rsplit('/').next().unwrap_or("")
    }
    pub fn props(&self) -> &Value {
        &self.body["properties"]
    }
    pub fn tags(&self) -> &Value {
        &self.body["tags"]
    }
    pub fn location(&self) -> &str {
        self.body["location"].as_str().unwrap_or("")
    }
}

#[derive(Debug, Default, Clone)]
pub struct Store {
    res: HashMap<String, Res>,
    all: BTreeSet<String>,
    coll: HashMap<String, BTreeSet<String>>,
    pub etag_counter: u64,
}

/// Lower-cased keys of the collections a resource id belongs to.
fn collection_keys(id_lower: &str) -> Vec<String> {
    let mut keys = Vec::with_capacity(2);
    let Some(pos) = id_lower.rfind('/') else {
        return keys;
    };
    let parent = &id_lower[..pos];
    keys.push(parent.to_string());
    let segs: Vec<&str> = id_lower.trim_start_matches('/').split('/').collect();
    // /subscriptions/s/resourceGroups/rg/providers/ns/type/name: also listed by subscription.
    if segs.len() == 8 && segs[2] == "resourcegroups" && segs[4] == "providers" {
        keys.push(format!(
            "/subscriptions/{}/providers/{}/{}",
            segs[1], segs[5], segs[6]
        ));
    }
    // Record sets are also listed under `/ALL`.
    if segs.len() == 10 && segs[6] == "privatednszones" && segs[8] != "virtualnetworklinks" {
        keys.push(format!("{}/all", &parent[..parent.rfind('/').unwrap_or(0)]));
    }
    keys
}

impl Store {
    pub fn next_etag(&mut self) -> u64 {
        self.etag_counter += 1;
        self.etag_counter
    }
    /// Every resource, in id order.
    pub fn all(&self) -> impl Iterator<Item = &Res> {
        self.all.iter().filter_map(|k| self.res.get(k))
    }
    pub fn get(&self, id: &str) -> Option<&Res> {
        self.res.get(&id.to_ascii_lowercase())
    }
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Res> {
        self.res.get_mut(&id.to_ascii_lowercase())
    }
    pub fn contains(&self, id: &str) -> bool {
        self.res.contains_key(&id.to_ascii_lowercase())
    }
    pub fn insert(&mut self, res: Res) {
        let key = res.id.to_ascii_lowercase();
        for c in collection_keys(&key) {
            self.coll.entry(c).or_default().insert(key.clone());
        }
        self.all.insert(key.clone());
        self.res.insert(key, res);
    }
    pub fn remove(&mut self, id: &str) -> Option<Res> {
        let key = id.to_ascii_lowercase();
        let r = self.res.remove(&key)?;
        self.all.remove(&key);
        for c in collection_keys(&key) {
            if let Some(set) = self.coll.get_mut(&c) {
                set.remove(&key);
                if set.is_empty() {
                    self.coll.remove(&c);
                }
            }
        }
        Some(r)
    }
    /// Removes a resource and everything below it.
    pub fn remove_tree(&mut self, id: &str) -> Vec<Res> {
        let mut out = Vec::new();
        for d in self.descendants(id) {
            if let Some(r) = self.remove(&d) {
                out.push(r);
            }
        }
        if let Some(r) = self.remove(id) {
            out.push(r);
        }
        out
    }
    /// Lower-cased ids strictly below `id`.
    pub fn descendants(&self, id: &str) -> Vec<String> {
        let prefix = format!("{}/", id.to_ascii_lowercase());
        self.all
            .range::<String, _>((Bound::Included(&prefix), Bound::Unbounded))
            .take_while(|k| k.starts_with(&prefix))
            .cloned()
            .collect()
    }
    /// Members of a collection (lower-cased collection path), in id order.
    pub fn list(&self, coll: &str) -> impl Iterator<Item = &Res> {
        self.coll
            .get(&coll.to_ascii_lowercase())
            .into_iter()
            .flat_map(|s| s.iter())
            .filter_map(|k| self.res.get(k))
    }
    pub fn count(&self, coll: &str) -> usize {
        self.coll
            .get(&coll.to_ascii_lowercase())
            .map_or(0, |s| s.len())
    }
    /// One page of a collection, starting after `after` (a lower-cased id).
    pub fn page(
        &self,
        coll: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<&Res>, Option<String>) {
        let Some(set) = self.coll.get(&coll.to_ascii_lowercase()) else {
            return (Vec::new(), None);
        };
        let start = match after {
            Some(a) => Bound::Excluded(a.to_string()),
            None => Bound::Unbounded,
        };
        let mut items = Vec::new();
        let mut last = None;
        let mut more = false;
        for k in set.range::<String, _>((start, Bound::Unbounded)) {
            if items.len() == limit {
                more = true;
                break;
            }
            if let Some(r) = self.res.get(k) {
                items.push(r);
                last = Some(k.clone());
            }
        }
        (items, if more { last } else { None })
    }
}
