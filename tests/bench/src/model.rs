//! Request accounting from armsim's log, the per-step latency chain (the within-step
//! dependency model), and the strictly sequential baseline.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::sim::Knobs;

const POLL_SEGS: &[&str] = &[
    "/operationresults/",
    "/operationstatuses/",
    "/privatednsoperationstatuses/",
    "/privatednsoperationresults/",
];

/// Resource types whose PUT is a long-running operation in ARM (and armsim): the writer
/// polls until it settles. Others answer 200/201 synchronously.
fn is_lro_type(op: &str) -> bool {
    const LRO: &[&str] = &[
        "firewallPolicies",
        "ruleCollectionGroups",
        "azureFirewalls",
        "privateDnsZones",
        "virtualNetworkLinks",
        "POST commit",
    ];
    LRO.iter().any(|t| op.ends_with(t))
}

/// Requests of one step (or a whole phase), classified as armsim classifies them.
#[derive(Debug, Default)]
pub struct Requests {
    pub reads: u64,
    pub polls: u64,
    pub writes: u64,
    pub deletes: u64,
    pub throttled: u64,
    /// POST `list*` actions (read-only, but ARM and armsim count them as writes).
    pub list_actions: u64,
    /// Writes answered 201/202 with an operation to wait for (LROs), by operation label.
    pub lros: BTreeMap<String, u64>,
    /// Successful writes by operation label (`PUT networkGroups`, `POST commit`, ...).
    pub write_ops: BTreeMap<String, u64>,
}

impl Requests {
    pub fn from_log(entries: &[&Value]) -> Requests {
        let mut r = Requests::default();
        for e in entries {
            let method = e["method"].as_str().unwrap_or("");
            let path = e["path"].as_str().unwrap_or("").to_ascii_lowercase();
            let op = e["op"].as_str().unwrap_or("").to_string();
            let status = e["status"].as_u64().unwrap_or(0);
            if status == 429 {
                r.throttled += 1;
            }
            let poll = POLL_SEGS.iter().any(|s| path.contains(s));
            match method {
                _ if poll => r.polls += 1,
                "GET" | "HEAD" => r.reads += 1,
                "DELETE" => r.deletes += 1,
                _ if op.starts_with("POST list") => {
                    r.writes += 1;
                    r.list_actions += 1;
                }
                _ => {
                    r.writes += 1;
                    if (200..300).contains(&status) {
                        *r.write_ops.entry(op.clone()).or_default() += 1;
                    }
                    if (status == 201 || status == 202) && is_lro_type(&op) {
                        *r.lros.entry(op).or_default() += 1;
                    }
                }
            }
        }
        r
    }

    pub fn total(&self) -> u64 {
        self.reads + self.polls + self.writes + self.deletes
    }

    pub fn to_json(&self) -> Value {
        json!({
            "requests": self.total(), "reads": self.reads + self.polls, "polls": self.polls,
            "writes": self.writes, "list_actions_in_writes": self.list_actions,
            "deletes": self.deletes, "throttled_429": self.throttled,
            "write_ops": self.write_ops, "lros": self.lros,
        })
    }
}

/// The latency chain of one step: the rounds of requests that must follow each other (a
/// round = one request latency, however many independent requests it holds) and the waits
/// that only the service decides (LRO durations, AVNM deployments, Azure Policy evaluation).
#[derive(Debug)]
pub struct Chain {
    pub rounds: Vec<String>,
    pub waits_s: f64,
    pub seconds: f64,
}

impl Chain {
    pub fn to_json(&self) -> Value {
        json!({"rounds": self.rounds, "waits_s": self.waits_s, "seconds": self.seconds})
    }
}

/// Write phases of a step that depend on each other, in order; each present phase is one
/// round. Operations of one phase are independent of each other (one round together).
/// Unknown steps (or operations not listed) count one round per operation label.
fn phases(task: &str) -> &'static [&'static [&'static str]] {
    match task {
        // Groups first (the policy's effect names them), then the policy definition, then
        // its assignment; VNet tags are independent of AVNM and go with the groups.
        "tag-groups" => &[
            &[
                "PUT networkGroups",
                "PATCH virtualNetworks",
                "PUT virtualNetworks",
                "PUT networkManagers",
            ],
            &["PUT policyDefinitions"],
            &["PUT policyAssignments"],
            &["PUT staticMembers"],
        ],
        // Configurations, then the goal-state commit.
        "mesh-connect" => &[&["PUT connectivityConfigurations"], &["POST commit"]],
        // Configuration, rule collection, rules, commit.
        "admin-rules" => &[
            &["PUT securityAdminConfigurations"],
            &["PUT ruleCollections"],
            &["PUT rules"],
            &["POST commit"],
        ],
        // The zone, then its links and records (independent of each other).
        "dns-link" => &[
            &["PUT privateDnsZones"],
            &[
                "PUT virtualNetworkLinks",
                "PUT A",
                "PATCH virtualNetworkLinks",
            ],
        ],
        // fw-policy: see `fw_policy_chain`.
        _ => &[],
    }
}

/// fw-policy: parent policy (LRO) → its rule collection groups one after another (ARM
/// serialises writes under one policy) → the child policies (LROs, need the parent) → the
/// firewall associations (read-modify-write: GET, then PUT, an LRO when Azure says so).
fn fw_policy_chain(req: &Requests, k: Knobs, rounds: &mut Vec<String>, waits: &mut f64) {
    let lro = k.lro_ms as f64 / 1000.0;
    let policies = req
        .write_ops
        .get("PUT firewallPolicies")
        .copied()
        .unwrap_or(0);
    let rcgs = req
        .write_ops
        .get("PUT ruleCollectionGroups")
        .copied()
        .unwrap_or(0);
    let fws = req
        .write_ops
        .get("PUT azureFirewalls")
        .copied()
        .unwrap_or(0);
    let lro_round = |name: &str, rounds: &mut Vec<String>, waits: &mut f64| {
        rounds.push(name.to_string());
        rounds.push("LRO poll".into());
        *waits += lro;
    };
    if policies > 0 {
        lro_round("PUT parent policy", rounds, waits);
    }
    for _ in 0..rcgs {
        lro_round("PUT ruleCollectionGroups (serial)", rounds, waits);
    }
    if policies > 1 {
        lro_round("PUT child policies", rounds, waits);
    }
    if fws > 0 {
        rounds.push("GET firewalls".into());
        if req.lros.contains_key("PUT azureFirewalls") {
            lro_round("PUT firewalls", rounds, waits);
        } else {
            rounds.push("PUT firewalls".into());
        }
    }
}

/// The latency chain of `task` given what it actually wrote.
pub fn step_chain(task: &str, req: &Requests, k: Knobs) -> Chain {
    let lat = k.latency_ms as f64 / 1000.0;
    let mut rounds = Vec::new();
    let mut waits = 0.0;
    if req.reads > 0 || req.list_actions > 0 {
        rounds.push("read".to_string());
    }
    // verify reads the effective configurations of the VNets it listed: a second round.
    if task == "verify" && req.list_actions > 0 {
        rounds.push("effective (per VNet)".to_string());
    }
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    if task == "fw-policy" {
        fw_policy_chain(req, k, &mut rounds, &mut waits);
        seen.extend([
            "PUT firewallPolicies",
            "PUT ruleCollectionGroups",
            "PUT azureFirewalls",
        ]);
    }
    let model = phases(task);
    let is_lro = |op: &str| req.lros.contains_key(op);
    for phase in model {
        let present: Vec<&str> = phase
            .iter()
            .copied()
            .filter(|op| req.write_ops.contains_key(*op))
            .collect();
        if present.is_empty() {
            continue;
        }
        seen.extend(present.iter().copied());
        rounds.push(present.join(" | "));
        if present.contains(&"POST commit") {
            // AVNM takes one commit at a time per network manager (a concurrent one is refused
            // with 409): one round per commit, then the deployment.
            let commits = req.write_ops.get("POST commit").copied().unwrap_or(1);
            for _ in 1..commits {
                rounds.push("POST commit (serial)".into());
            }
            waits += k.deploy_ms as f64 / 1000.0;
            rounds.push("deployment status".into());
        } else if present.iter().any(|op| is_lro(op)) {
            waits += k.lro_ms as f64 / 1000.0;
            rounds.push("LRO poll".into());
        }
        if present.contains(&"PUT policyAssignments") {
            waits += k.policy_ms as f64 / 1000.0;
            rounds.push("membership".into());
        }
    }
    // Operations the model does not know: one dependent round each (and their LRO wait).
    for op in req.write_ops.keys() {
        if !seen.contains(op.as_str()) {
            rounds.push(op.clone());
            if is_lro(op) {
                waits += k.lro_ms as f64 / 1000.0;
                rounds.push("LRO poll".into());
            }
        }
    }
    let seconds = rounds.len() as f64 * lat + waits;
    Chain {
        rounds,
        waits_s: waits,
        seconds,
    }
}

/// The same requests of one step one at a time: every non-poll request's mean latency, plus
/// every LRO's duration in full, one deployment wait if the step commits, the policy
/// evaluation if it assigned policies; polls are not counted (they overlap the waits). A
/// lower estimate of a one-request-at-a-time client; the phase's figure is the sum over its
/// steps (run one after another).
pub fn sequential_seconds(req: &Requests, k: Knobs) -> f64 {
    let lat = k.latency_ms as f64 / 1000.0;
    // The commits of a step are waited for together (one deployment wait per step).
    let commits = if req.write_ops.contains_key("POST commit") {
        1.0
    } else {
        0.0
    };
    let lros: u64 = req
        .lros
        .iter()
        .filter(|(op, _)| op.as_str() != "POST commit")
        .map(|(_, n)| *n)
        .sum();
    let policy = if req.write_ops.contains_key("PUT policyAssignments") {
        1.0
    } else {
        0.0
    };
    (req.reads + req.writes + req.deletes) as f64 * lat
        + commits * k.deploy_ms as f64 / 1000.0
        + lros as f64 * k.lro_ms as f64 / 1000.0
        + policy * k.policy_ms as f64 / 1000.0
}
