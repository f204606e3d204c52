//! Semantic validation of a decoded intent. Every rule reports into one list; nothing stops at
//! the first problem. Overlap checks are sort-based (O(n log n)).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::model::*;
use super::resolve::{ENV_TAG, ROLE_TAG, ResolvedGroup, VnetRef, VnetRole};
use super::rules::{
    Cidr, NameKind, check_ascii, check_guid, check_name, check_port_range, check_record_name,
    check_region, check_tag, check_zone_name, parse_cidr, parse_ipv4,
};
use super::yaml::Pos;
use super::{Diagnostic, Intent};

/// Published limits enforced by validation.
pub mod limits {
    /// Virtual network links per private DNS zone.
    pub const DNS_LINKS_PER_ZONE: usize = 1000;
    /// VNets per connected group (mesh, or hub-and-spoke with direct connectivity) unless
    /// `connected_group_private_endpoints_scale: HighScale`.
    pub const CONNECTED_GROUP_STANDARD: usize = 250;
    /// VNets per connected group with HighScale.
    pub const CONNECTED_GROUP_HIGH_SCALE: usize = 20_000;
    /// Spokes per hub in a hub-and-spoke configuration.
    pub const SPOKES_PER_HUB: usize = 1000;
    /// Rules per security admin rule collection.
    pub const ADMIN_RULES_PER_COLLECTION: usize = 100;
    /// Maximum admin rule description length: AVNM allows 140 characters, and netstep appends
    /// its ownership marker (` [managed-by=netstep]`, 21 characters) to what it creates.
    pub const ADMIN_RULE_DESCRIPTION: usize = 140 - 1 - crate::resources::MANAGED_MARKER.len();
}

struct V<'a> {
    it: &'a Intent,
    diags: Vec<Diagnostic>,
}

impl V<'_> {
    fn pos(&self, path: &str) -> Pos {
        let mut p = path.to_string();
        loop {
            if let Some(pos) = self.it.locs.get(&p) {
                return *pos;
            }
            if p.is_empty() {
                return Pos::default();
            }
            // Strip the last segment: `.key` or `[i]`.
            let cut = p.rfind(['.', '[']).unwrap_or(0);
            p.truncate(cut);
        }
    }

    fn err(&mut self, path: &str, message: impl Into<String>) {
        let pos = self.pos(path);
        self.diags.push(Diagnostic {
            file: self.it.file.clone(),
            line: pos.line,
            col: pos.col,
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn check(&mut self, path: &str, r: Result<(), String>) -> bool {
        match r {
            Ok(()) => true,
            Err(m) => {
                self.err(path, m);
                false
            }
        }
    }

    fn name(&mut self, path: &str, kind: NameKind, s: &str) -> bool {
        self.check(path, check_name(kind, s))
    }

    /// Reports duplicates among `(path, key)` pairs (keys compared case-insensitively, as ARM
    /// does).
    fn unique<'k>(&mut self, what: &str, items: impl IntoIterator<Item = (String, &'k str)>) {
        let mut seen: HashMap<String, String> = HashMap::new();
        for (path, key) in items {
            let k = key.to_ascii_lowercase();
            if let Some(first) = seen.get(&k) {
                let first = first.clone();
                let line = self.pos(&first).line;
                self.err(
                    &path,
                    format!("duplicate {what} `{key}` (also at {first}, line {line})"),
                );
            } else {
                seen.insert(k, path);
            }
        }
    }
}

/// Runs every rule; returns the problems found (empty when valid).
pub(crate) fn validate(it: &Intent) -> Vec<Diagnostic> {
    let mut v = V {
        it,
        diags: Vec::new(),
    };
    let spec = it.spec();
    let vnets = it.vnets();
    top_level(&mut v, spec);
    regions_and_vnets(&mut v, spec, &vnets);
    overlaps(&mut v, &vnets);
    let groups = network_groups(&mut v, spec, &vnets);
    connectivity(&mut v, spec, &vnets, &groups);
    security_admin(&mut v, spec);
    firewall_policy(&mut v, spec);
    dns(&mut v, spec, &vnets);
    v.diags
}

fn top_level(v: &mut V<'_>, spec: &IntentSpec) {
    v.check("subscription", check_guid(&spec.subscription));
    for (i, rg) in spec.resource_groups.iter().enumerate() {
        let p = format!("resource_groups[{i}]");
        v.name(&format!("{p}.name"), NameKind::ResourceGroup, &rg.name);
        v.check(&format!("{p}.location"), check_region(&rg.location));
        if rg.subscription != spec.subscription {
            v.check(&format!("{p}.subscription"), check_guid(&rg.subscription));
        }
    }
    let keys: Vec<(String, String)> = spec
        .resource_groups
        .iter()
        .enumerate()
        .map(|(i, rg)| {
            (
                format!("resource_groups[{i}].name"),
                format!("{}/{}", rg.subscription, rg.name),
            )
        })
        .collect();
    v.unique(
        "resource group",
        keys.iter().map(|(p, k)| (p.clone(), k.as_str())),
    );

    let nm = &spec.network_manager;
    v.name("network_manager.name", NameKind::Avnm, &nm.name);
    v.check("network_manager.location", check_region(&nm.location));
    rg_ref(
        v,
        spec,
        "network_manager.resource_group",
        &nm.subscription,
        &nm.resource_group,
    );
    if nm.subscription != spec.subscription {
        v.check("network_manager.subscription", check_guid(&nm.subscription));
    }
    if nm.scope.subscriptions.is_empty() && nm.scope.management_groups.is_empty() {
        v.err(
            "network_manager.scope",
            "the scope needs at least one subscription or management group",
        );
    }
    for (i, s) in nm.scope.subscriptions.iter().enumerate() {
        v.check(
            &format!("network_manager.scope.subscriptions[{i}]"),
            check_guid(s),
        );
    }
    for (i, g) in nm.scope.management_groups.iter().enumerate() {
        let p = format!("network_manager.scope.management_groups[{i}]");
        if v.check(&p, check_ascii(g)) && (g.is_empty() || g.len() > 90) {
            v.err(&p, "a management group id is 1-90 characters");
        }
    }
    let mut seen = HashSet::new();
    for (i, a) in nm.scope_accesses.iter().enumerate() {
        if !seen.insert(*a) {
            v.err(
                &format!("network_manager.scope_accesses[{i}]"),
                format!("duplicate scope access {a:?}"),
            );
        }
    }
    let need = |a: ScopeAccess| !nm.scope_accesses.contains(&a);
    if spec.connectivity.is_some() && need(ScopeAccess::Connectivity) {
        v.err(
            "network_manager.scope_accesses",
            "`connectivity` is configured, so the scope accesses must include Connectivity",
        );
    }
    if spec.security_admin.is_some() && need(ScopeAccess::SecurityAdmin) {
        v.err(
            "network_manager.scope_accesses",
            "`security_admin` is configured, so the scope accesses must include SecurityAdmin",
        );
    }
}

/// A resource group reference must be declared in `resource_groups`.
fn rg_ref(v: &mut V<'_>, spec: &IntentSpec, path: &str, sub: &str, rg: &str) {
    if !v.name(path, NameKind::ResourceGroup, rg) {
        return;
    }
    let found = spec
        .resource_groups
        .iter()
        .any(|r| r.name.eq_ignore_ascii_case(rg) && r.subscription == sub);
    if !found {
        let declared: Vec<&str> = spec
            .resource_groups
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        v.err(
            path,
            format!(
                "resource group `{rg}` (subscription {sub}) is not declared in resource_groups (declared: {})",
                if declared.is_empty() {
                    "none".to_string()
                } else {
                    declared.join(", ")
                }
            ),
        );
    }
}

fn in_scope(spec: &IntentSpec, sub: &str) -> bool {
    let s = &spec.network_manager.scope;
    !s.management_groups.is_empty() || s.subscriptions.iter().any(|x| x == sub)
}

fn regions_and_vnets(v: &mut V<'_>, spec: &IntentSpec, vnets: &[VnetRef<'_>]) {
    if spec.regions.is_empty() {
        v.err("regions", "at least one region is required");
    }
    for (i, r) in spec.regions.iter().enumerate() {
        v.check(&format!("regions[{i}].name"), check_region(&r.name));
    }
    v.unique(
        "region",
        spec.regions
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("regions[{i}].name"), r.name.as_str())),
    );
    v.unique(
        "VNet name",
        vnets.iter().map(|x| (format!("{}.name", x.path), x.name)),
    );
    for x in vnets {
        let p = &x.path;
        v.name(&format!("{p}.name"), NameKind::Vnet, x.name);
        rg_ref(
            v,
            spec,
            &format!("{p}.resource_group"),
            x.subscription,
            x.resource_group,
        );
        if x.subscription != spec.subscription {
            v.check(&format!("{p}.subscription"), check_guid(x.subscription));
        }
        if !in_scope(spec, x.subscription) {
            v.err(
                &format!("{p}.subscription"),
                format!(
                    "subscription {} is outside the network manager's scope (network_manager.scope)",
                    x.subscription
                ),
            );
        }
        // Tags.
        let raw_tags = match x.role {
            VnetRole::Hub => &spec.regions[x.region_index].hub.tags,
            VnetRole::Spoke => {
                let si: usize = p
                    .rsplit('[')
                    .next()
                    .and_then(|s| s.trim_end_matches(']').parse().ok())
                    .unwrap_or(0);
                &spec.regions[x.region_index].spokes[si].tags
            }
        };
        for (k, val) in raw_tags {
            let tp = format!("{p}.tags.{k}");
            v.check(&tp, check_tag(k, val));
            if k == ROLE_TAG || k == ENV_TAG {
                let how = if k == ROLE_TAG {
                    "from the VNet's role (hub)"
                } else {
                    "from the spoke's `env` field"
                };
                if x.role == VnetRole::Hub && k == ENV_TAG {
                    continue;
                }
                v.err(
                    &tp,
                    format!("tag `{k}` is set by netstep {how}; remove it from `tags`"),
                );
            }
        }
        if let Some(env) = x.env {
            let ep = format!("{p}.env");
            if env.is_empty() {
                v.err(&ep, "env must not be empty");
            } else {
                v.check(&ep, check_tag(ENV_TAG, env));
                v.check(&ep, check_ascii(env));
            }
        }
        // Address space.
        if x.address_space.is_empty() {
            v.err(
                &format!("{p}.address_space"),
                "a VNet needs at least one address prefix",
            );
        }
        let mut prefixes: Vec<Cidr> = Vec::new();
        for (ai, a) in x.address_space.iter().enumerate() {
            let ap = format!("{p}.address_space[{ai}]");
            match parse_cidr(a) {
                Err(m) => v.err(&ap, m),
                Ok(c) if c.len == 0 => v.err(
                    &ap,
                    format!("{a}: a VNet cannot use /0 (it would overlap everything)"),
                ),
                Ok(c) if c.len > 29 => {
                    v.err(&ap, format!("{a}: the smallest VNet address space is /29"))
                }
                Ok(c) => prefixes.push(c),
            }
        }
        // DNS servers.
        for (di, d) in x.dns_servers.iter().enumerate() {
            v.check(&format!("{p}.dns_servers[{di}]"), parse_ipv4(d).map(|_| ()));
        }
        // Subnets.
        v.unique(
            "subnet name",
            x.subnets
                .iter()
                .enumerate()
                .map(|(si, s)| (format!("{p}.subnets[{si}].name"), s.name.as_str())),
        );
        let mut subs: Vec<(Cidr, usize)> = Vec::new();
        for (si, s) in x.subnets.iter().enumerate() {
            let sp = format!("{p}.subnets[{si}]");
            v.name(&format!("{sp}.name"), NameKind::Subnet, &s.name);
            match parse_cidr(&s.prefix) {
                Err(m) => v.err(&format!("{sp}.prefix"), m),
                Ok(c) if c.len > 29 => v.err(
                    &format!("{sp}.prefix"),
                    format!("{}: the smallest Azure subnet is /29", s.prefix),
                ),
                Ok(c) => {
                    if !prefixes.is_empty() && !prefixes.iter().any(|a| a.contains(c)) {
                        v.err(
                            &format!("{sp}.prefix"),
                            format!(
                                "{c} is not inside the address space of {} ({})",
                                x.name,
                                x.address_space.join(", ")
                            ),
                        );
                    }
                    subs.push((c, si));
                }
            }
        }
        subs.sort();
        let mut max: Option<(Cidr, usize)> = None;
        for &(c, si) in &subs {
            if let Some((m, mi)) = max {
                if c.start() <= m.end() {
                    v.err(
                        &format!("{p}.subnets[{si}].prefix"),
                        format!("{c} overlaps subnet {} ({m})", x.subnets[mi].name),
                    );
                }
                if c.end() > m.end() {
                    max = Some((c, si));
                }
            } else {
                max = Some((c, si));
            }
        }
        // Firewall.
        if let Some(fw) = x.firewall {
            let fp = format!("{p}.firewall");
            v.name(&format!("{fp}.name"), NameKind::Network80, &fw.name);
            if fw.managed {
                rg_ref(
                    v,
                    spec,
                    &format!("{fp}.resource_group"),
                    &fw.subscription,
                    &fw.resource_group,
                );
                if let Some(pip) = &fw.public_ip {
                    v.name(&format!("{fp}.public_ip"), NameKind::Network80, pip);
                }
                let mut zs = HashSet::new();
                for (zi, z) in fw.zones.iter().enumerate() {
                    if !matches!(z.as_str(), "1" | "2" | "3") {
                        v.err(
                            &format!("{fp}.zones[{zi}]"),
                            format!("availability zone `{z}` must be \"1\", \"2\" or \"3\""),
                        );
                    } else if !zs.insert(z) {
                        v.err(
                            &format!("{fp}.zones[{zi}]"),
                            format!("duplicate zone `{z}`"),
                        );
                    }
                }
                match x.subnets.iter().position(|s| s.name == "AzureFirewallSubnet") {
                    None => v.err(
                        &format!("{p}.subnets"),
                        format!(
                            "the managed firewall {} needs a subnet named AzureFirewallSubnet (/26 or larger) in {}",
                            fw.name, x.name
                        ),
                    ),
                    Some(si) => {
                        if let Ok(c) = parse_cidr(&x.subnets[si].prefix)
                            && c.len > 26 {
                                v.err(
                                    &format!("{p}.subnets[{si}].prefix"),
                                    format!(
                                        "AzureFirewallSubnet must be /26 or larger, found /{}",
                                        c.len
                                    ),
                                );
                            }
                    }
                }
            } else if fw.subscription != spec.subscription {
                v.check(&format!("{fp}.subscription"), check_guid(&fw.subscription));
            }
        }
    }
    let fws: Vec<(String, String)> = vnets
        .iter()
        .filter_map(|x| {
            x.firewall.map(|f| {
                (
                    format!("{}.firewall.name", x.path),
                    format!("{}/{}/{}", f.subscription, f.resource_group, f.name),
                )
            })
        })
        .collect();
    v.unique("firewall", fws.iter().map(|(p, k)| (p.clone(), k.as_str())));
}

/// Address-space overlaps between VNets (and within one VNet), by a sweep over prefixes
/// sorted by start address: O(n log n).
fn overlaps(v: &mut V<'_>, vnets: &[VnetRef<'_>]) {
    let mut all: Vec<(Cidr, usize, usize)> = Vec::new();
    for (vi, x) in vnets.iter().enumerate() {
        for (ai, a) in x.address_space.iter().enumerate() {
            if let Ok(c) = parse_cidr(a)
                && c.len > 0
            {
                all.push((c, vi, ai));
            }
        }
    }
    all.sort_by_key(|(c, vi, ai)| (c.start(), std::cmp::Reverse(c.end()), *vi, *ai));
    // The prefix reaching furthest so far: (prefix, vnet index, address_space index).
    let mut max: Option<(Cidr, usize, usize)> = None;
    for &(c, vi, ai) in &all {
        if let Some((m, mvi, mai)) = max {
            if c.start() <= m.end() {
                // Report on whichever comes later in the file, naming the earlier one.
                let ((rc, rvi, rai), (oc, ovi)) = if (vi, ai) > (mvi, mai) {
                    ((c, vi, ai), (m, mvi))
                } else {
                    ((m, mvi, mai), (c, vi))
                };
                let other = if ovi == rvi {
                    "another address prefix of the same VNet".to_string()
                } else {
                    vnets[ovi].name.to_string()
                };
                v.err(
                    &format!("{}.address_space[{rai}]", vnets[rvi].path),
                    format!("{rc} overlaps {other} ({oc})"),
                );
            }
            if c.end() > m.end() {
                max = Some((c, vi, ai));
            }
        } else {
            max = Some((c, vi, ai));
        }
    }
}

fn network_groups(v: &mut V<'_>, spec: &IntentSpec, vnets: &[VnetRef<'_>]) -> Vec<ResolvedGroup> {
    let names: HashSet<&str> = vnets.iter().map(|x| x.name).collect();
    v.unique(
        "network group",
        spec.network_groups
            .iter()
            .enumerate()
            .map(|(i, g)| (format!("network_groups[{i}].name"), g.name.as_str())),
    );
    for (i, g) in spec.network_groups.iter().enumerate() {
        let p = format!("network_groups[{i}]");
        v.name(&format!("{p}.name"), NameKind::Avnm, &g.name);
        if g.match_all.is_empty() && g.static_members.is_empty() {
            v.err(
                &p,
                format!(
                    "network group {} has neither `match` nor `static_members`; it would stay empty",
                    g.name
                ),
            );
        }
        let mut seen = HashSet::new();
        for (ci, c) in g.match_all.iter().enumerate() {
            // The condition's path depends on how `match` was written: a single condition,
            // `all_of: [...]`, or a list.
            let m = format!("{p}.match");
            let cp = [format!("{m}.all_of[{ci}]"), format!("{m}[{ci}]")]
                .into_iter()
                .find(|c| v.it.locs.contains_key(c))
                .unwrap_or(m);
            v.check(&format!("{cp}.tag"), check_tag(&c.tag, &c.equals));
            if !seen.insert(c.tag.as_str()) {
                v.err(
                    &format!("{cp}.tag"),
                    format!(
                        "tag `{}` is tested twice; the conditions could never both hold",
                        c.tag
                    ),
                );
            }
        }
        for (mi, m) in g.static_members.iter().enumerate() {
            let mp = format!("{p}.static_members[{mi}]");
            if m.starts_with('/') {
                if super::decode::split_resource_id(m, "virtualNetworks").is_none() {
                    v.err(
                        &mp,
                        format!("`{m}` is not a VNet resource id (/subscriptions/<guid>/resourceGroups/<rg>/providers/Microsoft.Network/virtualNetworks/<name>)"),
                    );
                }
            } else if !names.contains(m.as_str()) {
                v.err(
                    &mp,
                    format!("`{m}` is not a VNet of this intent (give a VNet name from `regions` or a full resource id)"),
                );
            }
        }
    }
    v.it.groups()
}

fn group_ref(v: &mut V<'_>, spec: &IntentSpec, path: &str, name: &str) -> bool {
    if spec.network_groups.iter().any(|g| g.name == name) {
        return true;
    }
    let known: Vec<&str> = spec
        .network_groups
        .iter()
        .map(|g| g.name.as_str())
        .collect();
    v.err(
        path,
        format!(
            "network group `{name}` is not defined in network_groups (defined: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ),
    );
    false
}

fn connectivity(v: &mut V<'_>, spec: &IntentSpec, vnets: &[VnetRef<'_>], groups: &[ResolvedGroup]) {
    let Some(c) = &spec.connectivity else {
        return;
    };
    let high_scale = c.connectivity_capabilities.is_some_and(|k| {
        k.connected_group_private_endpoints_scale == PrivateEndpointsScale::HighScale
    });
    let connected_limit = if high_scale {
        limits::CONNECTED_GROUP_HIGH_SCALE
    } else {
        limits::CONNECTED_GROUP_STANDARD
    };
    let mut config_names: Vec<(String, String)> = Vec::new();
    if c.mesh.is_none() && c.hub_and_spoke.is_none() {
        v.err(
            "connectivity",
            "connectivity needs `mesh` and/or `hub_and_spoke`",
        );
    }
    if let Some(m) = &c.mesh {
        v.name("connectivity.mesh.name", NameKind::Avnm, &m.name);
        config_names.push(("connectivity.mesh.name".into(), m.name.clone()));
        if group_ref(v, spec, "connectivity.mesh.group", &m.group)
            && let Some(g) = groups.iter().find(|g| g.name == m.group)
        {
            let n = Intent::members_in(g, vnets).count() + external_members(g, vnets);
            if n > connected_limit {
                v.err(
                        "connectivity.mesh.group",
                        format!(
                            "the mesh connects {n} VNets; a connected group holds at most {connected_limit}{}",
                            if high_scale { "" } else { " (set connectivity_capabilities.connected_group_private_endpoints_scale: HighScale for up to 20000)" }
                        ),
                    );
            }
        }
    }
    if let Some(hs) = &c.hub_and_spoke {
        let base = "connectivity.hub_and_spoke";
        v.name(
            &format!("{base}.name_prefix"),
            NameKind::Avnm,
            &hs.name_prefix,
        );
        if hs.spoke_groups.is_empty() {
            v.err(
                &format!("{base}.spoke_groups"),
                "list at least one spoke group",
            );
        }
        let region_names: Vec<&str> = spec.regions.iter().map(|r| r.name.as_str()).collect();
        for (i, r) in hs.regions.iter().enumerate() {
            if !region_names.contains(&r.as_str()) {
                v.err(
                    &format!("{base}.regions[{i}]"),
                    format!(
                        "region `{r}` is not one of the intent's regions ({})",
                        region_names.join(", ")
                    ),
                );
            }
        }
        v.unique(
            "spoke group",
            hs.spoke_groups
                .iter()
                .enumerate()
                .map(|(i, g)| (format!("{base}.spoke_groups[{i}]"), g.as_str())),
        );
        let mut ok_groups = Vec::new();
        for (i, gname) in hs.spoke_groups.iter().enumerate() {
            let gp = format!("{base}.spoke_groups[{i}]");
            if !group_ref(v, spec, &gp, gname) {
                continue;
            }
            ok_groups.push(gname.as_str());
            if let Some(g) = spec.network_groups.iter().find(|g| &g.name == gname)
                && g.static_members.iter().any(|m| m.starts_with('/'))
            {
                v.err(
                        &gp,
                        format!("group `{gname}` has static members given by resource id; netstep cannot tell their region, so it cannot narrow the group per region for hub-and-spoke (name intent VNets instead)"),
                    );
            }
        }
        let prefix_ok = check_name(NameKind::Avnm, &hs.name_prefix).is_ok();
        for region in v.it.hub_and_spoke_regions() {
            let cname = format!("{}-{region}", hs.name_prefix);
            // An invalid prefix is reported once above; otherwise check the expanded name
            // (its length grows with the region name).
            if prefix_ok && v.name(&format!("{base}.name_prefix"), NameKind::Avnm, &cname) {
                config_names.push((format!("{base}.name_prefix"), cname));
            }
            let hub = spec
                .regions
                .iter()
                .find(|r| r.name == region)
                .map(|r| &r.hub);
            let mut spokes: HashSet<&str> = HashSet::new();
            for gname in &ok_groups {
                let dname = Intent::derived_group_name(gname, region);
                let gp = format!("{base}.spoke_groups");
                if check_name(NameKind::Avnm, gname).is_ok()
                    && check_name(NameKind::Avnm, &dname).is_err()
                {
                    v.err(
                        &gp,
                        format!("derived per-region group name `{dname}` is longer than 64 characters or invalid; shorten `{gname}`"),
                    );
                }
                if spec.network_groups.iter().any(|g| g.name == dname) {
                    v.err(
                        &gp,
                        format!("netstep derives the per-region group `{dname}` from `{gname}`, but network_groups already defines a group with that name"),
                    );
                }
                let Some(dg) = groups.iter().find(|g| g.name == dname) else {
                    continue;
                };
                for m in Intent::members_in(dg, vnets) {
                    if Some(m.name) == hub.map(|h| h.name.as_str()) {
                        v.err(
                            &gp,
                            format!("group `{gname}` matches the hub {} of {region}; a hub cannot be its own spoke", m.name),
                        );
                    } else {
                        spokes.insert(m.name);
                    }
                }
            }
            if spokes.len() > limits::SPOKES_PER_HUB {
                v.err(
                    &format!("{base}.spoke_groups"),
                    format!(
                        "{region}: {} spokes for one hub; the limit is {}",
                        spokes.len(),
                        limits::SPOKES_PER_HUB
                    ),
                );
            }
            if hs.direct_spoke_connectivity && spokes.len() + 1 > connected_limit {
                v.err(
                    &format!("{base}.direct_spoke_connectivity"),
                    format!(
                        "{region}: direct connectivity makes a connected group of {} VNets; the limit is {connected_limit}",
                        spokes.len() + 1
                    ),
                );
            }
        }
    }
    let mut seen: HashMap<String, String> = HashMap::new();
    for (p, n) in config_names {
        if let Some(first) = seen.get(&n.to_ascii_lowercase()) {
            let first = first.clone();
            v.err(
                &p,
                format!("connectivity configuration name `{n}` is used twice (also {first})"),
            );
        } else {
            seen.insert(n.to_ascii_lowercase(), p);
        }
    }
}

fn external_members(g: &ResolvedGroup, vnets: &[VnetRef<'_>]) -> usize {
    g.static_members
        .iter()
        .filter(|m| !vnets.iter().any(|x| x.id.eq_ignore_ascii_case(m)))
        .count()
}

fn address_ref(v: &mut V<'_>, spec: &IntentSpec, path: &str, a: &AddressRef) {
    match a {
        AddressRef::Group { group } => {
            group_ref(v, spec, &format!("{path}.group"), group);
        }
        AddressRef::Cidr { cidr } => {
            let p = format!("{path}.cidr");
            if let Err(m) = parse_cidr(cidr) {
                // A bare address is a common slip: suggest the /32.
                if parse_ipv4(cidr).is_ok() {
                    v.err(
                        &p,
                        format!("`{cidr}` is an address, not a prefix; write {cidr}/32"),
                    );
                } else {
                    v.err(&p, m);
                }
            }
        }
        AddressRef::ServiceTag { service_tag } => {
            let p = format!("{path}.service_tag");
            if v.check(&p, check_ascii(service_tag))
                && (service_tag.is_empty()
                    || !service_tag
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
            {
                v.err(&p, format!("`{service_tag}` is not a service tag name (e.g. Internet, AzureCloud, Storage.westeurope)"));
            }
        }
    }
}

fn security_admin(v: &mut V<'_>, spec: &IntentSpec) {
    let Some(sa) = &spec.security_admin else {
        return;
    };
    v.name("security_admin.name", NameKind::Avnm, &sa.name);
    let nip = &sa.apply_on_network_intent_policy_based_services;
    if nip.is_empty() {
        v.err(
            "security_admin.apply_on_network_intent_policy_based_services",
            "list at least one value (None, All or AllowRulesOnly)",
        );
    }
    if nip.len() > 1 && nip.contains(&NipService::None) {
        v.err(
            "security_admin.apply_on_network_intent_policy_based_services",
            "`None` cannot be combined with other values",
        );
    }
    v.unique(
        "rule collection",
        sa.rule_collections.iter().enumerate().map(|(i, c)| {
            (
                format!("security_admin.rule_collections[{i}].name"),
                c.name.as_str(),
            )
        }),
    );
    for (ci, c) in sa.rule_collections.iter().enumerate() {
        let cp = format!("security_admin.rule_collections[{ci}]");
        v.name(&format!("{cp}.name"), NameKind::Avnm, &c.name);
        if c.applies_to_groups.is_empty() {
            v.err(
                &format!("{cp}.applies_to_groups"),
                "a rule collection must apply to at least one network group",
            );
        }
        for (gi, g) in c.applies_to_groups.iter().enumerate() {
            group_ref(v, spec, &format!("{cp}.applies_to_groups[{gi}]"), g);
        }
        if c.rules.len() > limits::ADMIN_RULES_PER_COLLECTION {
            v.err(
                &format!("{cp}.rules"),
                format!(
                    "{} rules; a rule collection holds at most {}",
                    c.rules.len(),
                    limits::ADMIN_RULES_PER_COLLECTION
                ),
            );
        }
        v.unique(
            "rule",
            c.rules
                .iter()
                .enumerate()
                .map(|(ri, r)| (format!("{cp}.rules[{ri}].name"), r.name.as_str())),
        );
        let mut prios: HashMap<u32, usize> = HashMap::new();
        for (ri, r) in c.rules.iter().enumerate() {
            let rp = format!("{cp}.rules[{ri}]");
            v.name(&format!("{rp}.name"), NameKind::Avnm, &r.name);
            let dlen = r.description.chars().count();
            if dlen > limits::ADMIN_RULE_DESCRIPTION {
                v.err(
                    &format!("{rp}.description"),
                    format!(
                        "description is {dlen} characters; the limit is {} (AVNM's 140 less \
                         the ownership marker netstep appends)",
                        limits::ADMIN_RULE_DESCRIPTION
                    ),
                );
            }
            if !(1..=4096).contains(&r.priority) {
                v.err(
                    &format!("{rp}.priority"),
                    format!("priority {} is out of range 1-4096", r.priority),
                );
            } else if let Some(first) = prios.get(&r.priority) {
                v.err(
                    &format!("{rp}.priority"),
                    format!(
                        "priority {} is already used by rule {} in this collection",
                        r.priority, c.rules[*first].name
                    ),
                );
            } else {
                prios.insert(r.priority, ri);
            }
            for (ai, a) in r.sources.iter().enumerate() {
                address_ref(v, spec, &format!("{rp}.sources[{ai}]"), a);
            }
            for (ai, a) in r.destinations.iter().enumerate() {
                address_ref(v, spec, &format!("{rp}.destinations[{ai}]"), a);
            }
            for (key, list) in [
                ("source_ports", &r.source_ports),
                ("destination_ports", &r.destination_ports),
            ] {
                for (pi, port) in list.iter().enumerate() {
                    v.check(
                        &format!("{rp}.{key}[{pi}]"),
                        check_port_range(port).map(|_| ()),
                    );
                }
            }
        }
    }
}

/// `*`, an IPv4 address, or a canonical IPv4 CIDR.
fn check_fw_address(s: &str, allow_service_tag: bool) -> Result<(), String> {
    if s == "*" || parse_ipv4(s).is_ok() {
        return Ok(());
    }
    if s.contains('/') || s.contains(':') || s.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        return parse_cidr(s).map(|_| ());
    }
    if allow_service_tag
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && !s.is_empty()
    {
        return Ok(());
    }
    Err(format!(
        "`{s}` is not `*`, an IPv4 address or an IPv4 CIDR prefix{}",
        if allow_service_tag {
            " or a service tag"
        } else {
            ""
        }
    ))
}

fn check_fqdn(s: &str, allow_wildcard: bool) -> Result<(), String> {
    check_ascii(s)?;
    let body = if allow_wildcard {
        s.strip_prefix("*.").unwrap_or(s)
    } else {
        s
    };
    if s == "*" && allow_wildcard {
        return Ok(());
    }
    let ok = !body.is_empty()
        && body.len() <= 253
        && body.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("`{s}` is not a valid FQDN"))
    }
}

fn firewall_policy(v: &mut V<'_>, spec: &IntentSpec) {
    let Some(p) = &spec.firewall_policy else {
        return;
    };
    let base = "firewall_policy";
    v.name(&format!("{base}.name"), NameKind::Network80, &p.name);
    rg_ref(
        v,
        spec,
        &format!("{base}.resource_group"),
        &p.subscription,
        &p.resource_group,
    );
    v.check(&format!("{base}.location"), check_region(&p.location));
    if p.tier == FirewallTier::Basic {
        if p.threat_intel_mode == ThreatIntelMode::Deny {
            v.err(
                &format!("{base}.threat_intel_mode"),
                "the Basic tier supports threat intelligence in Alert mode only (or Off)",
            );
        }
        if p.dns_proxy {
            v.err(
                &format!("{base}.dns_proxy"),
                "the Basic tier does not support DNS proxy",
            );
        }
    }
    // Children.
    let ch = &p.children;
    if ch.location != p.location {
        v.err(
            &format!("{base}.children.location"),
            format!(
                "child policies must be in the parent's region ({}), found {}: Azure requires a base policy and its children to share a region (a policy can still serve firewalls in any region)",
                p.location, ch.location
            ),
        );
    }
    rg_ref(
        v,
        spec,
        &format!("{base}.children.resource_group"),
        &p.subscription,
        &ch.resource_group,
    );
    let mut child_names: Vec<(String, String)> = vec![(format!("{base}.name"), p.name.clone())];
    for r in &spec.regions {
        if r.hub.firewall.is_none() {
            continue;
        }
        let n = format!("{}-{}", ch.name_prefix, r.name);
        if let Err(m) = check_name(NameKind::Network80, &n) {
            v.err(
                &format!("{base}.children.name_prefix"),
                format!("child policy name: {m}"),
            );
        }
        child_names.push((format!("{base}.children.name_prefix"), n));
    }
    v.unique(
        "firewall policy name",
        child_names.iter().map(|(a, b)| (a.clone(), b.as_str())),
    );
    // Firewall tiers must match the policy tier.
    for (ri, r) in spec.regions.iter().enumerate() {
        if let Some(fw) = &r.hub.firewall
            && let Some(t) = fw.sku_tier
            && t != p.tier
        {
            v.err(
                        &format!("regions[{ri}].hub.firewall.sku_tier"),
                        format!(
                            "firewall {} is {t:?} but the firewall policy tier is {:?}; a firewall can only use a policy of its own tier",
                            fw.name, p.tier
                        ),
                    );
        }
    }
    // Rule collection groups.
    let gp = format!("{base}.rule_collection_groups");
    v.unique(
        "rule collection group",
        p.rule_collection_groups
            .iter()
            .enumerate()
            .map(|(i, g)| (format!("{gp}[{i}].name"), g.name.as_str())),
    );
    let mut prios: HashMap<u32, &str> = HashMap::new();
    for (gi, g) in p.rule_collection_groups.iter().enumerate() {
        let gpp = format!("{gp}[{gi}]");
        v.name(&format!("{gpp}.name"), NameKind::Network80, &g.name);
        if !(100..=65000).contains(&g.priority) {
            v.err(
                &format!("{gpp}.priority"),
                format!("priority {} is out of range 100-65000", g.priority),
            );
        } else if let Some(other) = prios.get(&g.priority) {
            v.err(
                &format!("{gpp}.priority"),
                format!(
                    "priority {} is already used by rule collection group {other}",
                    g.priority
                ),
            );
        } else {
            prios.insert(g.priority, &g.name);
        }
        v.unique(
            "rule collection",
            g.rule_collections
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("{gpp}.rule_collections[{i}].name"), c.name.as_str())),
        );
        let mut cprios: HashMap<u32, &str> = HashMap::new();
        for (ci, c) in g.rule_collections.iter().enumerate() {
            let cp = format!("{gpp}.rule_collections[{ci}]");
            v.name(&format!("{cp}.name"), NameKind::Network80, &c.name);
            if !(100..=65000).contains(&c.priority) {
                v.err(
                    &format!("{cp}.priority"),
                    format!("priority {} is out of range 100-65000", c.priority),
                );
            } else if let Some(other) = cprios.get(&c.priority) {
                v.err(
                    &format!("{cp}.priority"),
                    format!(
                        "priority {} is already used by rule collection {other} in this group",
                        c.priority
                    ),
                );
            } else {
                cprios.insert(c.priority, &c.name);
            }
            match (c.kind, c.action) {
                (FwCollectionKind::Nat, FwAction::Dnat)
                | (FwCollectionKind::Filter, FwAction::Allow | FwAction::Deny) => {}
                (FwCollectionKind::Nat, a) => v.err(
                    &format!("{cp}.action"),
                    format!("a nat collection's action must be DNAT, found {a:?}"),
                ),
                (FwCollectionKind::Filter, _) => v.err(
                    &format!("{cp}.action"),
                    "a filter collection's action must be Allow or Deny",
                ),
            }
            if c.rules.is_empty() {
                v.err(
                    &format!("{cp}.rules"),
                    "a rule collection needs at least one rule",
                );
            }
            v.unique(
                "firewall rule",
                c.rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (format!("{cp}.rules[{i}].name"), r.name())),
            );
            let mut first_kind: Option<&str> = None;
            for (ri, r) in c.rules.iter().enumerate() {
                let rp = format!("{cp}.rules[{ri}]");
                v.name(&format!("{rp}.name"), NameKind::Network80, r.name());
                let kind = match r {
                    FwRule::Network(_) => "network",
                    FwRule::Application(_) => "application",
                    FwRule::Nat(_) => "nat",
                };
                match c.kind {
                    FwCollectionKind::Nat if kind != "nat" => v.err(
                        &format!("{rp}.type"),
                        format!("a nat collection holds only nat rules, found a {kind} rule"),
                    ),
                    FwCollectionKind::Filter if kind == "nat" => v.err(
                        &format!("{rp}.type"),
                        "nat rules belong in a collection of kind nat",
                    ),
                    FwCollectionKind::Filter => match first_kind {
                        Some(k) if k != kind => v.err(
                            &format!("{rp}.type"),
                            format!("a filter collection holds rules of one type; this one started with {k} rules, found a {kind} rule"),
                        ),
                        _ => first_kind = Some(kind),
                    },
                    FwCollectionKind::Nat => {}
                }
                fw_rule(v, &rp, r, p.dns_proxy);
            }
        }
    }
}

fn fw_rule(v: &mut V<'_>, rp: &str, r: &FwRule, dns_proxy: bool) {
    let addrs = |v: &mut V<'_>, key: &str, list: &[String], tags: bool| {
        for (i, a) in list.iter().enumerate() {
            v.check(&format!("{rp}.{key}[{i}]"), check_fw_address(a, tags));
        }
    };
    let ports = |v: &mut V<'_>, key: &str, list: &[String]| {
        if list.is_empty() {
            v.err(&format!("{rp}.{key}"), "list at least one port (or \"*\")");
        }
        for (i, p) in list.iter().enumerate() {
            v.check(&format!("{rp}.{key}[{i}]"), check_port_range(p).map(|_| ()));
        }
    };
    match r {
        FwRule::Network(n) => {
            if n.protocols.is_empty() {
                v.err(&format!("{rp}.protocols"), "list at least one protocol");
            }
            if n.source_addresses.is_empty() {
                v.err(
                    &format!("{rp}.source_addresses"),
                    "list at least one source (or \"*\")",
                );
            }
            addrs(v, "source_addresses", &n.source_addresses, false);
            addrs(v, "destination_addresses", &n.destination_addresses, true);
            if n.destination_addresses.is_empty() && n.destination_fqdns.is_empty() {
                v.err(
                    rp,
                    "a network rule needs destination_addresses or destination_fqdns",
                );
            }
            for (i, f) in n.destination_fqdns.iter().enumerate() {
                v.check(
                    &format!("{rp}.destination_fqdns[{i}]"),
                    check_fqdn(f, false),
                );
            }
            if !n.destination_fqdns.is_empty() && !dns_proxy {
                v.err(
                    &format!("{rp}.destination_fqdns"),
                    "FQDNs in network rules require firewall_policy.dns_proxy: true",
                );
            }
            ports(v, "destination_ports", &n.destination_ports);
        }
        FwRule::Application(a) => {
            if a.protocols.is_empty() {
                v.err(&format!("{rp}.protocols"), "list at least one protocol");
            }
            for (i, pr) in a.protocols.iter().enumerate() {
                if !(1..=64000).contains(&pr.port) {
                    v.err(
                        &format!("{rp}.protocols[{i}].port"),
                        format!("port {} is out of range 1-64000", pr.port),
                    );
                }
            }
            if a.source_addresses.is_empty() {
                v.err(
                    &format!("{rp}.source_addresses"),
                    "list at least one source (or \"*\")",
                );
            }
            addrs(v, "source_addresses", &a.source_addresses, false);
            match (a.target_fqdns.is_empty(), a.fqdn_tags.is_empty()) {
                (true, true) => v.err(rp, "an application rule needs target_fqdns or fqdn_tags"),
                (false, false) => v.err(
                    &format!("{rp}.fqdn_tags"),
                    "give target_fqdns or fqdn_tags, not both",
                ),
                _ => {}
            }
            for (i, f) in a.target_fqdns.iter().enumerate() {
                v.check(&format!("{rp}.target_fqdns[{i}]"), check_fqdn(f, true));
            }
        }
        FwRule::Nat(n) => {
            if n.protocols.is_empty() {
                v.err(&format!("{rp}.protocols"), "list TCP and/or UDP");
            }
            for (i, pr) in n.protocols.iter().enumerate() {
                if !matches!(pr, NetProtocol::Tcp | NetProtocol::Udp) {
                    v.err(
                        &format!("{rp}.protocols[{i}]"),
                        "DNAT rules support only TCP and UDP",
                    );
                }
            }
            addrs(v, "source_addresses", &n.source_addresses, false);
            if n.destination_addresses.is_empty() {
                v.err(
                    &format!("{rp}.destination_addresses"),
                    "list the firewall public IP address the rule listens on",
                );
            }
            for (i, a) in n.destination_addresses.iter().enumerate() {
                v.check(
                    &format!("{rp}.destination_addresses[{i}]"),
                    parse_ipv4(a).map(|_| ()),
                );
            }
            ports(v, "destination_ports", &n.destination_ports);
            v.check(
                &format!("{rp}.translated_address"),
                parse_ipv4(&n.translated_address).map(|_| ()),
            );
            match check_port_range(&n.translated_port) {
                Ok((lo, hi)) if lo == hi && lo > 0 => {}
                Ok(_) => v.err(
                    &format!("{rp}.translated_port"),
                    "translated_port must be a single port 1-65535",
                ),
                Err(m) => v.err(&format!("{rp}.translated_port"), m),
            }
        }
    }
}

fn dns(v: &mut V<'_>, spec: &IntentSpec, vnets: &[VnetRef<'_>]) {
    let Some(d) = &spec.dns else {
        return;
    };
    v.unique(
        "DNS zone",
        d.zones
            .iter()
            .enumerate()
            .map(|(i, z)| (format!("dns.zones[{i}].name"), z.name.as_str())),
    );
    let mut spaces: Vec<(Cidr, &str)> = Vec::new();
    for x in vnets {
        for a in x.address_space {
            if let Ok(c) = parse_cidr(a) {
                spaces.push((c, x.name));
            }
        }
    }
    spaces.sort();
    let names: HashSet<&str> = vnets.iter().map(|x| x.name).collect();
    let mut registration: BTreeMap<&str, String> = BTreeMap::new();
    for (zi, z) in d.zones.iter().enumerate() {
        let zp = format!("dns.zones[{zi}]");
        v.check(&format!("{zp}.name"), check_zone_name(&z.name));
        rg_ref(
            v,
            spec,
            &format!("{zp}.resource_group"),
            &z.subscription,
            &z.resource_group,
        );
        // Links.
        let lp = format!("{zp}.links");
        let linked: Vec<&str> = match &z.links.vnets {
            None => vnets.iter().map(|x| x.name).collect(),
            Some(list) => {
                for (i, n) in list.iter().enumerate() {
                    if !names.contains(n.as_str()) {
                        v.err(
                            &format!("{lp}.vnets[{i}]"),
                            format!("`{n}` is not a VNet of this intent"),
                        );
                    }
                }
                v.unique(
                    "linked VNet",
                    list.iter()
                        .enumerate()
                        .map(|(i, n)| (format!("{lp}.vnets[{i}]"), n.as_str())),
                );
                list.iter().map(String::as_str).collect()
            }
        };
        if linked.len() > limits::DNS_LINKS_PER_ZONE {
            v.err(
                &lp,
                format!(
                    "zone {} would have {} VNet links; a private DNS zone holds at most {}",
                    z.name,
                    linked.len(),
                    limits::DNS_LINKS_PER_ZONE
                ),
            );
        }
        for n in &linked {
            let link = format!("{}{n}", z.links.name_prefix);
            if let Err(m) = check_name(NameKind::Network80, &link) {
                v.err(&format!("{lp}.name_prefix"), format!("link name: {m}"));
                break;
            }
        }
        for (i, n) in z.links.registration_vnets.iter().enumerate() {
            if !linked.contains(&n.as_str()) {
                v.err(
                    &format!("{lp}.registration_vnets[{i}]"),
                    format!("`{n}` is not linked to zone {}", z.name),
                );
            }
        }
        for n in &linked {
            let reg =
                z.links.registration_enabled || z.links.registration_vnets.iter().any(|r| r == n);
            if reg {
                if let Some(other) = registration.get(n) {
                    v.err(
                        &lp,
                        format!("VNet {n} would have auto-registration in zones {other} and {}; a VNet can register in only one private zone", z.name),
                    );
                } else {
                    registration.insert(n, z.name.clone());
                }
            }
        }
        // Records.
        let keys: Vec<(String, String)> = z
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    format!("{zp}.records[{i}].name"),
                    format!("{:?} {}", r.kind, r.name),
                )
            })
            .collect();
        v.unique(
            "record set",
            keys.iter().map(|(p, k)| (p.clone(), k.as_str())),
        );
        for (ri, r) in z.records.iter().enumerate() {
            let rp = format!("{zp}.records[{ri}]");
            v.check(&format!("{rp}.name"), check_record_name(&r.name));
            if r.ttl == 0 || r.ttl > 2_147_483_647 {
                v.err(&format!("{rp}.ttl"), "ttl must be 1-2147483647 seconds");
            }
            if r.ipv4.is_empty() {
                v.err(
                    &format!("{rp}.ipv4"),
                    "an A record needs at least one address",
                );
            }
            let mut seen = HashSet::new();
            for (ii, ip) in r.ipv4.iter().enumerate() {
                let ip_path = format!("{rp}.ipv4[{ii}]");
                match parse_ipv4(ip) {
                    Err(m) => v.err(&ip_path, m),
                    Ok(a) => {
                        if !seen.insert(a) {
                            v.err(&ip_path, format!("duplicate address {ip}"));
                        }
                        // Binary search on the sorted prefixes: the candidate is the last
                        // prefix starting at or before the address; larger enclosing prefixes
                        // may start earlier, so scan back while they could still contain it.
                        let idx = spaces.partition_point(|(c, _)| c.start() <= a);
                        let inside = spaces[..idx].iter().rev().any(|(c, _)| c.contains_ip(a));
                        if !inside {
                            v.err(
                                &ip_path,
                                format!("{ip} is not inside the address space of any VNet of this intent"),
                            );
                        }
                    }
                }
            }
        }
    }
}
