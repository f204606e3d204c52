//! The prod/nonprod isolation evaluator: a pure function over the *effective* security admin
//! rules of two VNets (as `listNetworkManagerEffectiveSecurityAdminRules` returns them).
//!
//! Traffic from `src` to `dst` passes two enforcement points: the Outbound rules effective on
//! `src` and the Inbound rules effective on `dst`. The pair is isolated in that direction when
//! at least one side denies ALL of it: every protocol (Tcp, Udp, Icmp, Esp, Ah), every source
//! port and every destination port.
//!
//! Precedence (AVNM): `AlwaysAllow` > `Deny` > `Allow`; within one access, the lower priority
//! number first (it only decides which rule is reported). A rule's addresses are judged
//! conservatively, so that "denied" is only concluded when it is certain:
//!
//! - a `Deny` rule counts only if its sources cover *every* address of `src` and its
//!   destinations every address of `dst` (a network group the VNet is a member of, a CIDR
//!   containing its whole address space, `*`, or no addresses at all = any);
//! - an `Allow` / `AlwaysAllow` rule counts as soon as it *may* match some of the traffic (a
//!   member group, an overlapping CIDR, `*`, any service tag).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde::Serialize;
use serde_json::Value;

/// Protocols an admin rule can name (`Any` = all of them).
pub const PROTOCOLS: [&str; 5] = ["Tcp", "Udp", "Icmp", "Esp", "Ah"];

/// Rule access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Access {
    /// Allow, overriding NSGs (strongest).
    AlwaysAllow,
    /// Deny.
    Deny,
    /// Allow (NSGs may still deny).
    Allow,
}

/// Rule direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Direction {
    /// Inbound to the VNet.
    Inbound,
    /// Outbound from the VNet.
    Outbound,
}

/// A source or destination of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// A network group id (compared case-insensitively).
    Group(String),
    /// An IPv4 prefix (`10.0.0.0/8`, `10.1.2.3`) or `*`.
    Prefix(String),
    /// A service tag (`Internet`, `VirtualNetwork`, ...).
    ServiceTag(String),
}

/// One effective admin rule, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Rule id (for the report).
    pub id: String,
    /// Access.
    pub access: Access,
    /// Priority (lower first).
    pub priority: u32,
    /// Direction.
    pub direction: Direction,
    /// Protocols covered (expanded from `Any`).
    pub protocols: BTreeSet<&'static str>,
    /// Sources; empty = any.
    pub sources: Vec<Addr>,
    /// Destinations; empty = any.
    pub destinations: Vec<Addr>,
    /// Source port ranges (inclusive); empty = all.
    pub source_ports: Vec<(u16, u16)>,
    /// Destination port ranges (inclusive); empty = all.
    pub destination_ports: Vec<(u16, u16)>,
}

/// A VNet as the evaluator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// VNet id.
    pub id: String,
    /// Network groups it is a member of (lower-cased ids), as AVNM sees it.
    pub groups: BTreeSet<String>,
    /// Its address space.
    pub prefixes: Vec<String>,
}

/// How one side treats the traffic of a pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum SideVerdict {
    /// Every protocol and port is denied; the deciding Deny rules.
    DeniesAll {
        /// Rules that deny.
        rules: Vec<String>,
    },
    /// Some traffic is not denied.
    Passes {
        /// An example: protocol.
        protocol: String,
        /// An example: destination port.
        port: u16,
        /// The rule letting it through, if one does (else no rule denies it).
        allowed_by: Option<String>,
    },
}

impl SideVerdict {
    /// Whether the side denies everything.
    pub fn denies_all(&self) -> bool {
        matches!(self, SideVerdict::DeniesAll { .. })
    }
}

/// The verdict of one direction of a pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairVerdict {
    /// Source VNet.
    pub src: String,
    /// Destination VNet.
    pub dst: String,
    /// Outbound rules effective on the source.
    pub at_source: SideVerdict,
    /// Inbound rules effective on the destination.
    pub at_destination: SideVerdict,
}

impl PairVerdict {
    /// Whether the traffic is fully denied by at least one side.
    pub fn isolated(&self) -> bool {
        self.at_source.denies_all() || self.at_destination.denies_all()
    }
}

/// Evaluates traffic `src` → `dst`: `src_rules` are the effective rules of the source VNet,
/// `dst_rules` those of the destination.
pub fn evaluate_pair(
    src: &Endpoint,
    dst: &Endpoint,
    src_rules: &[Rule],
    dst_rules: &[Rule],
) -> PairVerdict {
    PairVerdict {
        src: src.id.clone(),
        dst: dst.id.clone(),
        at_source: evaluate_side(src_rules, Direction::Outbound, src, dst),
        at_destination: evaluate_side(dst_rules, Direction::Inbound, src, dst),
    }
}

/// Evaluates one enforcement point: the rules of `direction` among `rules`, for traffic
/// `src` → `dst`.
pub fn evaluate_side(
    rules: &[Rule],
    direction: Direction,
    src: &Endpoint,
    dst: &Endpoint,
) -> SideVerdict {
    let mut relevant: Vec<&Rule> = rules
        .iter()
        .filter(|r| r.direction == direction)
        .filter(|r| {
            let must = r.access == Access::Deny;
            addrs_match(&r.sources, src, must) && addrs_match(&r.destinations, dst, must)
        })
        .collect();
    relevant.sort_by_key(|r| (r.access, r.priority));
    // Elementary port intervals over every boundary the relevant rules use.
    let src_cells = cells(relevant.iter().map(|r| &r.source_ports));
    let dst_cells = cells(relevant.iter().map(|r| &r.destination_ports));
    let mut deciding: BTreeSet<String> = BTreeSet::new();
    for proto in PROTOCOLS {
        for &(s_lo, _) in &src_cells {
            for &(d_lo, _) in &dst_cells {
                let first = relevant.iter().find(|r| {
                    r.protocols.contains(proto)
                        && covers(&r.source_ports, s_lo)
                        && covers(&r.destination_ports, d_lo)
                });
                match first {
                    Some(r) if r.access == Access::Deny => {
                        deciding.insert(r.id.clone());
                    }
                    other => {
                        return SideVerdict::Passes {
                            protocol: proto.to_string(),
                            port: d_lo,
                            allowed_by: other.map(|r| r.id.clone()),
                        };
                    }
                }
            }
        }
    }
    SideVerdict::DeniesAll {
        rules: deciding.into_iter().collect(),
    }
}

/// Splits 0..=65535 at every boundary of the given range lists.
fn cells<'a>(lists: impl Iterator<Item = &'a Vec<(u16, u16)>>) -> Vec<(u16, u16)> {
    let mut starts: BTreeSet<u32> = BTreeSet::from([0]);
    for l in lists {
        for &(lo, hi) in l {
            starts.insert(u32::from(lo));
            starts.insert(u32::from(hi) + 1);
        }
    }
    let starts: Vec<u32> = starts.into_iter().filter(|s| *s <= 65535).collect();
    starts
        .iter()
        .enumerate()
        .map(|(i, &lo)| {
            let hi = starts.get(i + 1).map_or(65535, |n| n - 1);
            (lo as u16, hi as u16)
        })
        .collect()
}

fn covers(ranges: &[(u16, u16)], port: u16) -> bool {
    ranges.is_empty() || ranges.iter().any(|&(lo, hi)| lo <= port && port <= hi)
}

/// Whether an address list matches the endpoint: `must` = covers all of it (for Deny), else
/// may touch some of it (for Allow / AlwaysAllow). Empty = any.
fn addrs_match(addrs: &[Addr], ep: &Endpoint, must: bool) -> bool {
    if addrs.is_empty() {
        return true;
    }
    addrs.iter().any(|a| match a {
        Addr::Group(g) => ep.groups.contains(&g.to_ascii_lowercase()),
        Addr::Prefix(p) if p.trim() == "*" => true,
        Addr::Prefix(p) => match parse_cidr(p) {
            Some(rule_net) => {
                let nets: Vec<(u32, u8)> =
                    ep.prefixes.iter().filter_map(|x| parse_cidr(x)).collect();
                if must {
                    !nets.is_empty() && nets.iter().all(|n| contains(rule_net, *n))
                } else {
                    nets.iter().any(|n| overlaps(rule_net, *n)) || nets.len() != ep.prefixes.len()
                }
            }
            // Unparseable: cannot prove a Deny covers it; an Allow may match.
            None => !must,
        },
        // A service tag's addresses are not known here.
        Addr::ServiceTag(_) => !must,
    })
}

/// Parses `a.b.c.d/len` or `a.b.c.d` into (network, length).
pub fn parse_cidr(s: &str) -> Option<(u32, u8)> {
    let s = s.trim();
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip, len.parse::<u8>().ok()?),
        None => (s, 32),
    };
    if len > 32 {
        return None;
    }
    let ip: Ipv4Addr = ip.parse().ok()?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((u32::from(ip) & mask, len))
}

fn contains(outer: (u32, u8), inner: (u32, u8)) -> bool {
    if inner.1 < outer.1 {
        return false;
    }
    let mask = if outer.1 == 0 {
        0
    } else {
        u32::MAX << (32 - outer.1)
    };
    inner.0 & mask == outer.0
}

fn overlaps(a: (u32, u8), b: (u32, u8)) -> bool {
    contains(a, b) || contains(b, a)
}

/// Parses one port range: `*`, `80`, `1000-2000`.
pub fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    let s = s.trim();
    if s == "*" {
        return Some((0, 65535));
    }
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            (a <= b).then_some((a, b))
        }
        None => s.parse().ok().map(|p| (p, p)),
    }
}

/// Parses one entry of `listNetworkManagerEffectiveSecurityAdminRules` (Custom or Default
/// kind). `None` when the entry is not a usable rule; the reason is returned instead.
pub fn parse_effective_rule(v: &Value) -> Result<Rule, String> {
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let p = v
        .get("properties")
        .ok_or_else(|| format!("rule {id}: no properties"))?;
    let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
    let access = match s("access").to_ascii_lowercase().as_str() {
        "alwaysallow" => Access::AlwaysAllow,
        "deny" => Access::Deny,
        "allow" => Access::Allow,
        other => return Err(format!("rule {id}: unknown access {other:?}")),
    };
    let direction = match s("direction").to_ascii_lowercase().as_str() {
        "inbound" => Direction::Inbound,
        "outbound" => Direction::Outbound,
        other => return Err(format!("rule {id}: unknown direction {other:?}")),
    };
    let protocol = s("protocol");
    let protocols: BTreeSet<&'static str> = if protocol.eq_ignore_ascii_case("any") {
        PROTOCOLS.into_iter().collect()
    } else {
        match PROTOCOLS
            .into_iter()
            .find(|p| p.eq_ignore_ascii_case(protocol))
        {
            Some(p) => BTreeSet::from([p]),
            None => return Err(format!("rule {id}: unknown protocol {protocol:?}")),
        }
    };
    let priority = p
        .get("priority")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("rule {id}: no priority"))?;
    let addrs = |k: &str| -> Vec<Addr> {
        p.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|x| {
                        let t = x
                            .get("addressPrefixType")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        let v = x
                            .get("addressPrefix")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string();
                        match t.to_ascii_lowercase().as_str() {
                            "networkgroup" => Addr::Group(v),
                            "servicetag" => Addr::ServiceTag(v),
                            _ => Addr::Prefix(v),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let ports = |k: &str| -> Result<Vec<(u16, u16)>, String> {
        p.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|x| {
                        x.as_str()
                            .and_then(parse_port_range)
                            .ok_or_else(|| format!("rule {id}: bad port range {x}"))
                    })
                    .collect()
            })
            .unwrap_or(Ok(Vec::new()))
    };
    Ok(Rule {
        id: id.clone(),
        access,
        priority,
        direction,
        protocols,
        sources: addrs("sources"),
        destinations: addrs("destinations"),
        source_ports: ports("sourcePortRanges")?,
        destination_ports: ports("destinationPortRanges")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROD: &str = "/ng/all-prod-spokes";
    const NONPROD: &str = "/ng/all-nonprod-spokes";

    fn ep(id: &str, group: &str, prefix: &str) -> Endpoint {
        Endpoint {
            id: id.into(),
            groups: BTreeSet::from([group.to_ascii_lowercase()]),
            prefixes: vec![prefix.into()],
        }
    }

    fn rule(id: &str, access: Access, prio: u32, dir: Direction, src: Addr, dst: Addr) -> Rule {
        Rule {
            id: id.into(),
            access,
            priority: prio,
            direction: dir,
            protocols: PROTOCOLS.into_iter().collect(),
            sources: vec![src],
            destinations: vec![dst],
            source_ports: vec![(0, 65535)],
            destination_ports: vec![(0, 65535)],
        }
    }

    fn g(id: &str) -> Addr {
        Addr::Group(id.into())
    }

    fn globojava_rules() -> Vec<Rule> {
        use Direction::*;
        vec![
            rule("out-p2n", Access::Deny, 100, Outbound, g(PROD), g(NONPROD)),
            rule("out-n2p", Access::Deny, 110, Outbound, g(NONPROD), g(PROD)),
            rule("in-n2p", Access::Deny, 120, Inbound, g(NONPROD), g(PROD)),
            rule("in-p2n", Access::Deny, 130, Inbound, g(PROD), g(NONPROD)),
        ]
    }

    #[test]
    fn globojava_rules_isolate_both_directions_on_both_sides() {
        let p = ep("p", PROD, "10.1.16.0/20");
        let n = ep("n", NONPROD, "10.1.32.0/20");
        let rules = globojava_rules();
        let v = evaluate_pair(&p, &n, &rules, &rules);
        assert!(v.isolated());
        assert_eq!(
            v.at_source,
            SideVerdict::DeniesAll {
                rules: vec!["out-p2n".into()]
            }
        );
        assert!(v.at_destination.denies_all());
        let back = evaluate_pair(&n, &p, &rules, &rules);
        assert!(back.at_source.denies_all() && back.at_destination.denies_all());
    }

    #[test]
    fn one_denying_side_is_enough_and_none_is_a_leak() {
        let p = ep("p", PROD, "10.1.16.0/20");
        let n = ep("n", NONPROD, "10.1.32.0/20");
        let only_out = vec![globojava_rules()[0].clone()];
        let v = evaluate_pair(&p, &n, &only_out, &[]);
        assert!(v.isolated());
        assert!(!v.at_destination.denies_all());
        let v = evaluate_pair(&n, &p, &only_out, &[]);
        assert!(!v.isolated());
        assert_eq!(
            v.at_source,
            SideVerdict::Passes {
                protocol: "Tcp".into(),
                port: 0,
                allowed_by: None
            }
        );
    }

    #[test]
    fn always_allow_beats_deny_whatever_the_priority() {
        let p = ep("p", PROD, "10.1.16.0/20");
        let n = ep("n", NONPROD, "10.1.32.0/20");
        let mut rules = globojava_rules();
        let mut aa = rule(
            "aa-ssh",
            Access::AlwaysAllow,
            4000,
            Direction::Outbound,
            g(PROD),
            Addr::Prefix("10.0.0.0/8".into()),
        );
        aa.protocols = BTreeSet::from(["Tcp"]);
        aa.destination_ports = vec![(22, 22)];
        rules.push(aa);
        let v = evaluate_side(&rules, Direction::Outbound, &p, &n);
        assert_eq!(
            v,
            SideVerdict::Passes {
                protocol: "Tcp".into(),
                port: 22,
                allowed_by: Some("aa-ssh".into())
            }
        );
        // The Inbound side at the destination still denies everything.
        assert!(evaluate_pair(&p, &n, &rules, &rules).isolated());
    }

    #[test]
    fn deny_beats_allow_even_with_a_lower_priority_number_for_the_allow() {
        let p = ep("p", PROD, "10.1.16.0/20");
        let n = ep("n", NONPROD, "10.1.32.0/20");
        let mut rules = globojava_rules();
        rules.push(rule(
            "allow-all",
            Access::Allow,
            1,
            Direction::Outbound,
            Addr::Prefix("*".into()),
            Addr::Prefix("*".into()),
        ));
        assert!(evaluate_side(&rules, Direction::Outbound, &p, &n).denies_all());
    }

    #[test]
    fn partial_denies_do_not_count() {
        let p = ep("p", PROD, "10.1.16.0/20");
        let n = ep("n", NONPROD, "10.1.32.0/20");
        // Tcp only.
        let mut tcp = globojava_rules()[0].clone();
        tcp.protocols = BTreeSet::from(["Tcp"]);
        let v = evaluate_side(&[tcp], Direction::Outbound, &p, &n);
        assert!(matches!(v, SideVerdict::Passes { ref protocol, .. } if protocol == "Udp"));
        // Ports 0-1023 only.
        let mut low = globojava_rules()[0].clone();
        low.destination_ports = vec![(0, 1023)];
        let v = evaluate_side(&[low], Direction::Outbound, &p, &n);
        assert!(matches!(v, SideVerdict::Passes { port: 1024, .. }), "{v:?}");
        // Two rules together covering all ports do count.
        let mut a = globojava_rules()[0].clone();
        a.destination_ports = vec![(0, 1023)];
        let mut b = a.clone();
        b.id = "b".into();
        b.destination_ports = vec![(1024, 65535)];
        assert!(evaluate_side(&[a, b], Direction::Outbound, &p, &n).denies_all());
    }

    #[test]
    fn addresses_are_judged_conservatively() {
        let p = ep("p", PROD, "10.1.16.0/20");
        let n = ep("n", NONPROD, "10.1.32.0/20");
        let deny =
            |src: Addr, dst: Addr| rule("d", Access::Deny, 100, Direction::Outbound, src, dst);
        // A CIDR covering the whole destination space denies it.
        let r = deny(g(PROD), Addr::Prefix("10.1.0.0/16".into()));
        assert!(evaluate_side(&[r], Direction::Outbound, &p, &n).denies_all());
        // A CIDR covering only part of it does not.
        let r = deny(g(PROD), Addr::Prefix("10.1.32.0/24".into()));
        assert!(!evaluate_side(&[r], Direction::Outbound, &p, &n).denies_all());
        // A service tag cannot prove a deny.
        let r = deny(g(PROD), Addr::ServiceTag("VirtualNetwork".into()));
        assert!(!evaluate_side(&[r], Direction::Outbound, &p, &n).denies_all());
        // A group the VNet is not in does not apply.
        let r = deny(g(PROD), g("/ng/other"));
        assert!(!evaluate_side(&[r], Direction::Outbound, &p, &n).denies_all());
        // Group ids compare case-insensitively; empty addresses mean any.
        let mut r = deny(g(&PROD.to_uppercase()), g(NONPROD));
        r.destinations.clear();
        assert!(evaluate_side(&[r], Direction::Outbound, &p, &n).denies_all());
        // Direction matters.
        let r = deny(g(PROD), g(NONPROD));
        assert!(!evaluate_side(&[r], Direction::Inbound, &p, &n).denies_all());
        // An allow on an overlapping CIDR with AlwaysAllow may let traffic through.
        let mut aa = deny(
            Addr::Prefix("10.1.16.0/24".into()),
            Addr::Prefix("10.1.33.0/24".into()),
        );
        aa.access = Access::AlwaysAllow;
        let rules = vec![deny(g(PROD), g(NONPROD)), aa];
        assert!(!evaluate_side(&rules, Direction::Outbound, &p, &n).denies_all());
    }

    #[test]
    fn parses_effective_rules_and_ports() {
        let v = serde_json::json!({
            "id": "/r/deny", "kind": "Custom",
            "properties": {"access": "Deny", "priority": 100, "direction": "Outbound", "protocol": "Any",
                "sources": [{"addressPrefixType": "NetworkGroup", "addressPrefix": PROD}],
                "destinations": [{"addressPrefixType": "IPPrefix", "addressPrefix": "10.0.0.0/8"}],
                "sourcePortRanges": ["0-65535"], "destinationPortRanges": ["80", "*"]}
        });
        let r = parse_effective_rule(&v).unwrap();
        assert_eq!(r.protocols.len(), 5);
        assert_eq!(r.destination_ports, vec![(80, 80), (0, 65535)]);
        assert_eq!(r.sources, vec![Addr::Group(PROD.into())]);
        let mut bad = v.clone();
        bad["properties"]["access"] = "Maybe".into();
        assert!(parse_effective_rule(&bad).is_err());
        assert_eq!(parse_port_range("9-3"), None);
        assert_eq!(parse_cidr("10.1.2.3/8"), Some((0x0a00_0000, 8)));
        assert_eq!(parse_cidr("10.1.2.3/33"), None);
    }
}
