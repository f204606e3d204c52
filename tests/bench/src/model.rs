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

/// Requests of one step (or a whole phase), classified as armsim classifies them.
#[derive(Debug, Default)]
pub struct Requests {
    pub reads: u64,
    pub polls: u64,
    pub writes: u64,
    pub deletes: u64,
    pub throttled: u64,
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
                _ => {
                    r.writes += 1;
                    if (200..300).contains(&status) {
                        *r.write_ops.entry(op.clone()).or_default() += 1;
                    }
                    if status == 201 || status == 202 {
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
            "writes": self.writes, "deletes": self.deletes, "throttled_429": self.throttled,
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
            &["PUT networkGroups", "PATCH virtualNetworks", "PUT virtualNetworks", "PUT networkManagers"],
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
            &["PUT virtualNetworkLinks", "PUT A", "PATCH virtualNetworkLinks"],
        ],
        // Parent policy, its rule collection groups and the children (children need only the
        // parent), then the firewall associations (need the children).
        "fw-policy" => &[
            &["PUT firewallPolicies"],
            &["PUT ruleCollectionGroups"],
            &["PUT azureFirewalls", "PATCH azureFirewalls"],
        ],
        _ => &[],
    }
}

/// The latency chain of `task` given what it actually wrote.
pub fn step_chain(task: &str, req: &Requests, k: Knobs) -> Chain {
    let lat = k.latency_ms as f64 / 1000.0;
    let mut rounds = Vec::new();
    let mut waits = 0.0;
    if req.reads > 0 {
        rounds.push("read".to_string());
    }
    let mut seen: BTreeSet<&str> = BTreeSet::new();
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
        // Firewall-policy children share their parent's write lock: ARM serialises writes
        // under one policy, so rule collection groups of a policy are one LRO after another.
        let serial = if task == "fw-policy" && present.contains(&"PUT ruleCollectionGroups") {
            req.write_ops.get("PUT ruleCollectionGroups").copied().unwrap_or(1) as f64
                / req.write_ops.get("PUT firewallPolicies").copied().unwrap_or(1).max(1) as f64
        } else {
            1.0
        };
        if present.iter().any(|op| *op == "POST commit") {
            waits += k.deploy_ms as f64 / 1000.0;
            rounds.push("deployment status".into());
        } else if present.iter().any(|op| is_lro(op)) {
            waits += serial * k.lro_ms as f64 / 1000.0;
            rounds.push("LRO poll".into());
            for _ in 1..serial.ceil() as usize {
                rounds.push("serialised LRO".into());
                rounds.push("LRO poll".into());
            }
        }
        if present.iter().any(|op| *op == "PUT policyAssignments") {
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

/// The same requests one at a time: every non-poll request's mean latency, plus every wait
/// in full (each LRO, each deployment, the policy evaluation), polls not counted (they
/// overlap the waits). A lower estimate of a sequential client.
pub fn sequential_seconds(req: &Requests, k: Knobs) -> f64 {
    let lat = k.latency_ms as f64 / 1000.0;
    let commits = req.write_ops.get("POST commit").copied().unwrap_or(0) as f64;
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
