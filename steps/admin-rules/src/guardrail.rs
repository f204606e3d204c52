//! The environment-isolation guardrail the intent's security admin rules express, evaluated
//! offline with AVNM precedence.
//!
//! Precedence (as netstep's contract states it): among the admin rules that match a flow, an
//! `AlwaysAllow` wins over a `Deny`, which wins over an `Allow`; within the winning access the
//! rule with the lowest priority number is reported as the deciding one. No matching rule means
//! the admin layer does not decide (the flow falls through to NSGs: not isolated).
//!
//! A flow from VNet `s` to VNet `d` is evaluated twice: **outbound** at `s` (the rules of every
//! collection that applies to a group containing `s`, direction `Outbound`) and **inbound** at
//! `d` (collections applying to `d`, direction `Inbound`). A rule matches when its sources match
//! `s` and its destinations match `d` (empty = any).
//!
//! The evaluation is conservative in both directions:
//! - a `Deny` only counts when it matches the whole flow: protocol `Any`, every port, and, for
//!   an IP prefix, the prefix covers the VNet's whole address space;
//! - an `AlwaysAllow` (or `Allow`) counts as soon as it matches part of the flow (any protocol,
//!   any port range, a prefix overlapping the address space), since it opens that part.
//!
//! Service tags match nothing private except `VirtualNetwork`, which matches every VNet.
//!
//! VNets are grouped into equivalence classes (env, group memberships, address space) before
//! the pairwise evaluation, so the cost follows the number of distinct classes, not VNets².

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::Serialize;

/// Rule direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Direction {
    /// Applies to traffic entering the VNet.
    Inbound,
    /// Applies to traffic leaving the VNet.
    Outbound,
}

/// Rule access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Access {
    /// Allow (NSGs still evaluated).
    Allow,
    /// Deny.
    Deny,
    /// Allow, skipping NSGs.
    AlwaysAllow,
}

impl Access {
    fn rank(self) -> u8 {
        match self {
            Access::AlwaysAllow => 3,
            Access::Deny => 2,
            Access::Allow => 1,
        }
    }
}

/// A source or destination of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// A network group, by name.
    Group(String),
    /// An IPv4 prefix.
    Prefix(String),
    /// An Azure service tag.
    ServiceTag(String),
}

/// One admin rule as the evaluator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `collection/rule`, for reports.
    pub name: String,
    /// Groups (names) the rule's collection applies to.
    pub applies_to: BTreeSet<String>,
    /// Direction.
    pub direction: Direction,
    /// Access.
    pub access: Access,
    /// Priority (lower first).
    pub priority: u32,
    /// Whether the protocol is `Any`.
    pub any_protocol: bool,
    /// Sources (empty = any).
    pub sources: Vec<Addr>,
    /// Destinations (empty = any).
    pub destinations: Vec<Addr>,
    /// Whether both port lists cover 0-65535.
    pub all_ports: bool,
}

/// A VNet as the evaluator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// VNet name.
    pub name: String,
    /// Its environment (spokes); hubs have none and are not part of env isolation.
    pub env: Option<String>,
    /// Groups (names) it is a member of.
    pub groups: BTreeSet<String>,
    /// Its address prefixes (CIDRs).
    pub address_space: Vec<String>,
}

/// The admin layer's decision for one flow in one direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The winning access, `None` when no rule matches.
    pub access: Option<Access>,
    /// The deciding rule (`collection/rule`).
    pub rule: Option<String>,
    /// Whether the whole flow is denied by the admin layer.
    pub denied: bool,
}

/// How strongly a rule matches a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    None,
    Partial,
    Full,
}

fn parse_cidr(s: &str) -> Option<(u32, u32)> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, l)) => (ip, l.parse::<u8>().ok()?),
        None => (s, 32),
    };
    if len > 32 {
        return None;
    }
    let a = u32::from(ip.parse::<Ipv4Addr>().ok()?);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let start = a & mask;
    Some((start, start | !mask))
}

fn match_addr(a: &Addr, ep: &Endpoint) -> Match {
    match a {
        Addr::Group(g) => {
            if ep.groups.contains(g) {
                Match::Full
            } else {
                Match::None
            }
        }
        Addr::ServiceTag(t) => {
            if t.eq_ignore_ascii_case("VirtualNetwork") {
                Match::Full
            } else {
                Match::None
            }
        }
        Addr::Prefix(p) => {
            if p == "*" {
                return Match::Full;
            }
            let Some((ps, pe)) = parse_cidr(p) else {
                return Match::None;
            };
            let spaces: Vec<(u32, u32)> = ep
                .address_space
                .iter()
                .filter_map(|c| parse_cidr(c))
                .collect();
            if spaces.is_empty() {
                return Match::None;
            }
            let inside = spaces.iter().all(|&(s, e)| s >= ps && e <= pe);
            let overlap = spaces.iter().any(|&(s, e)| s <= pe && e >= ps);
            if inside {
                Match::Full
            } else if overlap {
                Match::Partial
            } else {
                Match::None
            }
        }
    }
}

fn match_side(list: &[Addr], ep: &Endpoint) -> Match {
    if list.is_empty() {
        return Match::Full;
    }
    let ms: Vec<Match> = list.iter().map(|a| match_addr(a, ep)).collect();
    if ms.contains(&Match::Full) {
        Match::Full
    } else if ms.contains(&Match::Partial) {
        Match::Partial
    } else {
        Match::None
    }
}

fn rule_match(r: &Rule, src: &Endpoint, dst: &Endpoint) -> Match {
    let s = match_side(&r.sources, src);
    let d = match_side(&r.destinations, dst);
    match (s, d) {
        (Match::None, _) | (_, Match::None) => Match::None,
        (Match::Full, Match::Full) if r.any_protocol && r.all_ports => Match::Full,
        _ => Match::Partial,
    }
}

/// Evaluates the flow `src -> dst` at the VNet where `direction` applies (outbound: `src`,
/// inbound: `dst`).
pub fn evaluate(rules: &[Rule], src: &Endpoint, dst: &Endpoint, direction: Direction) -> Verdict {
    let at = match direction {
        Direction::Outbound => src,
        Direction::Inbound => dst,
    };
    // (rank, -priority) best first; partial matches only count for allowing accesses.
    let mut best: Option<(&Rule, Match)> = None;
    for r in rules {
        if r.direction != direction || r.applies_to.is_disjoint(&at.groups) {
            continue;
        }
        let m = rule_match(r, src, dst);
        let counts = match r.access {
            Access::Deny => m == Match::Full,
            Access::Allow | Access::AlwaysAllow => m != Match::None,
        };
        if !counts {
            continue;
        }
        let better = match best {
            None => true,
            Some((b, _)) => {
                (r.access.rank(), std::cmp::Reverse(r.priority))
                    > (b.access.rank(), std::cmp::Reverse(b.priority))
            }
        };
        if better {
            best = Some((r, m));
        }
    }
    match best {
        None => Verdict {
            access: None,
            rule: None,
            denied: false,
        },
        Some((r, _)) => Verdict {
            access: Some(r.access),
            rule: Some(r.name.clone()),
            denied: r.access == Access::Deny,
        },
    }
}

/// One checked flow of the isolation guardrail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowCheck {
    /// Source environment.
    pub from_env: String,
    /// Destination environment.
    pub to_env: String,
    /// Where the flow was evaluated.
    pub direction: Direction,
    /// Whether every VNet pair of these environments is denied in this direction.
    pub denied: bool,
    /// The deciding rules seen (sorted, deduplicated).
    pub rules: Vec<String>,
    /// Up to 5 VNet pairs that are not denied (`src -> dst`).
    pub open: Vec<String>,
}

/// The isolation guardrail: every pair of distinct spoke environments, both ways, both
/// directions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuardrailReport {
    /// Whether every check is denied.
    pub holds: bool,
    /// The checks, ordered by (from, to, direction).
    pub checks: Vec<FlowCheck>,
}

impl GuardrailReport {
    /// One line per environment pair, for the plan output.
    pub fn summary(&self) -> Vec<String> {
        let mut pairs: BTreeMap<(String, String), Vec<&FlowCheck>> = BTreeMap::new();
        for c in &self.checks {
            pairs
                .entry((c.from_env.clone(), c.to_env.clone()))
                .or_default()
                .push(c);
        }
        pairs
            .into_iter()
            .map(|((f, t), cs)| {
                let parts: Vec<String> = cs
                    .iter()
                    .map(|c| {
                        let dir = match c.direction {
                            Direction::Inbound => "inbound",
                            Direction::Outbound => "outbound",
                        };
                        if c.denied {
                            format!("{dir} denied by {}", c.rules.join("+"))
                        } else {
                            format!("{dir} OPEN ({})", c.open.join(", "))
                        }
                    })
                    .collect();
                format!("guardrail {f} -> {t}: {}", parts.join("; "))
            })
            .collect()
    }
}

/// (env, groups, address space) of a VNet equivalence class.
type ClassKey = (String, Vec<String>, Vec<String>);

/// Evaluates env isolation over `endpoints` (only those with an env take part).
pub fn env_isolation(rules: &[Rule], endpoints: &[Endpoint]) -> GuardrailReport {
    // Equivalence classes: VNets with the same env and groups behave the same under every
    // group or service-tag rule; IP prefix rules also depend on the address space, which then
    // joins the key. One representative per class is evaluated.
    let mut classes: BTreeMap<ClassKey, Vec<&Endpoint>> = BTreeMap::new();
    let has_prefix_rules = rules.iter().any(|r| {
        r.sources
            .iter()
            .chain(&r.destinations)
            .any(|a| matches!(a, Addr::Prefix(_)))
    });
    for e in endpoints {
        let Some(env) = &e.env else { continue };
        let space = if has_prefix_rules {
            e.address_space.clone()
        } else {
            Vec::new()
        };
        classes
            .entry((env.clone(), e.groups.iter().cloned().collect(), space))
            .or_default()
            .push(e);
    }
    let envs: BTreeSet<&String> = classes.keys().map(|k| &k.0).collect();
    let mut checks = Vec::new();
    for from in &envs {
        for to in &envs {
            if from == to {
                continue;
            }
            for direction in [Direction::Outbound, Direction::Inbound] {
                let mut denied = true;
                let mut seen = BTreeSet::new();
                let mut open = Vec::new();
                for ((e1, ..), srcs) in &classes {
                    if e1 != *from {
                        continue;
                    }
                    for ((e2, ..), dsts) in &classes {
                        if e2 != *to {
                            continue;
                        }
                        let v = evaluate(rules, srcs[0], dsts[0], direction);
                        if let Some(r) = &v.rule {
                            seen.insert(r.clone());
                        }
                        if !v.denied {
                            denied = false;
                            if open.len() < 5 {
                                open.push(format!("{} -> {}", srcs[0].name, dsts[0].name));
                            }
                        }
                    }
                }
                let rules_seen: Vec<String> = if denied {
                    seen.into_iter().collect()
                } else {
                    Vec::new()
                };
                checks.push(FlowCheck {
                    from_env: (*from).clone(),
                    to_env: (*to).clone(),
                    direction,
                    denied,
                    rules: rules_seen,
                    open,
                });
            }
        }
    }
    GuardrailReport {
        holds: !checks.is_empty() && checks.iter().all(|c| c.denied),
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(name: &str, env: &str, groups: &[&str], space: &str) -> Endpoint {
        Endpoint {
            name: name.into(),
            env: Some(env.into()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            address_space: vec![space.into()],
        }
    }

    fn rule(
        name: &str,
        dir: Direction,
        access: Access,
        prio: u32,
        src: Vec<Addr>,
        dst: Vec<Addr>,
    ) -> Rule {
        Rule {
            name: name.into(),
            applies_to: ["prod", "nonprod"].iter().map(|s| s.to_string()).collect(),
            direction: dir,
            access,
            priority: prio,
            any_protocol: true,
            sources: src,
            destinations: dst,
            all_ports: true,
        }
    }

    fn g(n: &str) -> Addr {
        Addr::Group(n.into())
    }

    fn globojava_rules() -> Vec<Rule> {
        use Access::Deny;
        use Direction::*;
        vec![
            rule(
                "rc/p2n-out",
                Outbound,
                Deny,
                100,
                vec![g("prod")],
                vec![g("nonprod")],
            ),
            rule(
                "rc/n2p-out",
                Outbound,
                Deny,
                110,
                vec![g("nonprod")],
                vec![g("prod")],
            ),
            rule(
                "rc/n2p-in",
                Inbound,
                Deny,
                120,
                vec![g("nonprod")],
                vec![g("prod")],
            ),
            rule(
                "rc/p2n-in",
                Inbound,
                Deny,
                130,
                vec![g("prod")],
                vec![g("nonprod")],
            ),
        ]
    }

    fn endpoints() -> Vec<Endpoint> {
        vec![
            ep("vnet-prod-eastus", "prod", &["prod"], "10.1.16.0/20"),
            ep(
                "vnet-nonprod-eastus",
                "nonprod",
                &["nonprod"],
                "10.1.32.0/20",
            ),
            ep("vnet-prod-westus", "prod", &["prod"], "10.2.16.0/20"),
            ep(
                "vnet-nonprod-westus",
                "nonprod",
                &["nonprod"],
                "10.2.32.0/20",
            ),
        ]
    }

    #[test]
    fn globojava_rules_isolate_prod_and_nonprod_both_ways_in_both_directions() {
        let r = env_isolation(&globojava_rules(), &endpoints());
        assert!(r.holds, "{r:?}");
        assert_eq!(r.checks.len(), 4);
        let out = r
            .checks
            .iter()
            .find(|c| c.from_env == "prod" && c.direction == Direction::Outbound)
            .unwrap();
        assert_eq!(out.rules, vec!["rc/p2n-out"]);
        let inb = r
            .checks
            .iter()
            .find(|c| c.from_env == "prod" && c.direction == Direction::Inbound)
            .unwrap();
        assert_eq!(inb.rules, vec!["rc/p2n-in"]);
    }

    #[test]
    fn a_missing_direction_breaks_the_guardrail_and_names_the_open_flow() {
        let mut rules = globojava_rules();
        rules.retain(|r| r.name != "rc/n2p-in");
        let r = env_isolation(&rules, &endpoints());
        assert!(!r.holds);
        let open: Vec<&FlowCheck> = r.checks.iter().filter(|c| !c.denied).collect();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].from_env, "nonprod");
        assert_eq!(open[0].direction, Direction::Inbound);
        assert!(open[0].open[0].contains("vnet-nonprod-"), "{:?}", open[0]);
        assert!(r.summary().iter().any(|l| l.contains("inbound OPEN")));
    }

    #[test]
    fn always_allow_beats_deny_even_at_a_worse_priority_and_deny_beats_allow() {
        let src = ep("p", "prod", &["prod"], "10.1.16.0/20");
        let dst = ep("n", "nonprod", &["nonprod"], "10.1.32.0/20");
        let deny = rule(
            "rc/deny",
            Direction::Outbound,
            Access::Deny,
            100,
            vec![],
            vec![],
        );
        let allow = rule(
            "rc/allow",
            Direction::Outbound,
            Access::Allow,
            10,
            vec![],
            vec![],
        );
        let v = evaluate(&[deny.clone(), allow], &src, &dst, Direction::Outbound);
        assert!(v.denied);
        assert_eq!(v.rule.as_deref(), Some("rc/deny"));
        let mut always = rule(
            "rc/always",
            Direction::Outbound,
            Access::AlwaysAllow,
            4000,
            vec![],
            vec![],
        );
        // Even a narrow AlwaysAllow (TCP 443 only) opens the flow.
        always.any_protocol = false;
        always.all_ports = false;
        let v = evaluate(&[deny.clone(), always], &src, &dst, Direction::Outbound);
        assert!(!v.denied);
        assert_eq!(v.access, Some(Access::AlwaysAllow));
        // Among denies the lowest priority number decides.
        let deny2 = rule(
            "rc/deny2",
            Direction::Outbound,
            Access::Deny,
            50,
            vec![],
            vec![],
        );
        let v = evaluate(&[deny, deny2], &src, &dst, Direction::Outbound);
        assert_eq!(v.rule.as_deref(), Some("rc/deny2"));
    }

    #[test]
    fn partial_denies_do_not_count_and_rules_only_apply_to_their_groups() {
        let src = ep("p", "prod", &["prod"], "10.1.16.0/20");
        let dst = ep("n", "nonprod", &["nonprod"], "10.1.32.0/20");
        let mut tcp = rule(
            "rc/tcp",
            Direction::Outbound,
            Access::Deny,
            100,
            vec![],
            vec![],
        );
        tcp.any_protocol = false;
        assert!(!evaluate(&[tcp], &src, &dst, Direction::Outbound).denied);
        // A prefix covering only half of the destination space is not a full deny.
        let half = rule(
            "rc/half",
            Direction::Outbound,
            Access::Deny,
            100,
            vec![],
            vec![Addr::Prefix("10.1.32.0/21".into())],
        );
        assert!(!evaluate(&[half], &src, &dst, Direction::Outbound).denied);
        let whole = rule(
            "rc/whole",
            Direction::Outbound,
            Access::Deny,
            100,
            vec![],
            vec![Addr::Prefix("10.0.0.0/8".into())],
        );
        assert!(
            evaluate(
                std::slice::from_ref(&whole),
                &src,
                &dst,
                Direction::Outbound
            )
            .denied
        );
        // The collection applies to other groups: no effect on these VNets.
        let mut elsewhere = whole;
        elsewhere.applies_to = ["hubs".to_string()].into();
        assert!(!evaluate(&[elsewhere], &src, &dst, Direction::Outbound).denied);
        // Service tags: VirtualNetwork matches, Internet does not.
        let vn = rule(
            "rc/vn",
            Direction::Inbound,
            Access::Deny,
            1,
            vec![Addr::ServiceTag("VirtualNetwork".into())],
            vec![],
        );
        assert!(evaluate(&[vn], &src, &dst, Direction::Inbound).denied);
        let inet = rule(
            "rc/inet",
            Direction::Inbound,
            Access::Deny,
            1,
            vec![Addr::ServiceTag("Internet".into())],
            vec![],
        );
        assert!(!evaluate(&[inet], &src, &dst, Direction::Inbound).denied);
    }

    #[test]
    fn no_rules_or_no_envs_means_the_guardrail_does_not_hold() {
        assert!(!env_isolation(&[], &endpoints()).holds);
        assert!(!env_isolation(&globojava_rules(), &[]).holds);
    }
}
