//! Fault injection, throttling, hooks, statistics and the request log.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    Status429,
    Status500,
    Status503,
    AnotherOp409,
    DropConnection,
    SlowLro,
    FailedLro,
    FailedDeployment,
}

impl FaultKind {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "429" => FaultKind::Status429,
            "500" => FaultKind::Status500,
            "503" => FaultKind::Status503,
            "409-another-op" => FaultKind::AnotherOp409,
            "drop-connection" => FaultKind::DropConnection,
            "slow-lro" => FaultKind::SlowLro,
            "failed-lro" => FaultKind::FailedLro,
            "failed-deployment" => FaultKind::FailedDeployment,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FaultMatch {
    pub method: Option<String>,
    pub path_contains: Option<String>,
    pub regex: Option<String>,
    /// Operation label as in stats, e.g. "PUT networkGroups" or "POST commit".
    pub op: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    #[serde(rename = "match", default)]
    pub matcher: FaultMatch,
    pub kind: Value,
    pub rate: Option<f64>,
    pub sequence: Option<Vec<bool>>,
    pub count: Option<u64>,
    pub retry_after_s: Option<u64>,
    /// Seed of this rule's own random draws (with `rate`): the rule fires on the same
    /// requests whatever other rules draw. Without it the simulator's shared PRNG is used.
    pub seed: Option<u64>,
}

#[derive(Debug)]
pub struct FaultRule {
    pub spec: FaultSpec,
    pub kind: FaultKind,
    pub regex: Option<regex::Regex>,
    pub seen: u64,
    pub fired: u64,
    pub rng: Option<SmallRng>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Read,
    Write,
    Delete,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Read => "reads",
            Class::Write => "writes",
            Class::Delete => "deletes",
        }
    }
}

/// ARM-style token bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
    cap: f64,
    rate: f64,
}

impl Bucket {
    pub fn new(cap: u32, rate: f64, now: Instant) -> Self {
        Bucket {
            tokens: cap as f64,
            last: now,
            cap: cap as f64,
            rate,
        }
    }
    /// Takes one token: Ok(remaining) or Err(seconds to wait).
    pub fn take(&mut self, now: Instant) -> Result<u64, u64> {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.cap);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(self.tokens.floor() as u64)
        } else {
            let wait = ((1.0 - self.tokens) / self.rate).ceil().max(1.0);
            Err(wait as u64)
        }
    }
}

/// Token-bucket limits: (bucket size, refill per second).
#[derive(Debug, Clone)]
pub struct Limits {
    pub reads: (u32, f64),
    pub writes: (u32, f64),
    pub deletes: (u32, f64),
    /// Private DNS virtual network link reads, per zone: 500 per 5 minutes.
    pub dns_link_reads: (u32, f64),
}

impl Default for Limits {
    fn default() -> Self {
        // ARM's regional token-bucket defaults (per principal, per subscription).
        Limits {
            reads: (250, 25.0),
            writes: (200, 10.0),
            deletes: (200, 10.0),
            dns_link_reads: (500, 500.0 / 300.0),
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub reads: u64,
    pub writes: u64,
    pub deletes: u64,
    pub polls: u64,
    pub throttled: u64,
    pub faults_injected: u64,
    /// Requests that repeat (same principal, method and path) a request answered with a
    /// retryable failure (429, 500/502/503/504, 409 AnotherOperationInProgress, a dropped
    /// connection): the clients' retries as the server sees them.
    pub retries: u64,
    /// Retryable failures whose answer carried `Retry-After`.
    pub retry_after_given: u64,
    /// Retries that came before the `Retry-After` of the failure they repeat had elapsed
    /// (a client that does not honour `Retry-After`).
    pub early_retries: u64,
    pub by_operation: BTreeMap<String, u64>,
}

#[derive(Debug, Clone)]
pub struct LogEntry {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub op: String,
    pub status: u16,
    pub time: String,
    /// When the request arrived (Unix epoch, milliseconds), before the simulated latency.
    pub arrived_unix_ms: f64,
    /// The client's User-Agent header (netstep sends `netstep/<version> <binary>`).
    pub user_agent: String,
}

#[derive(Debug, Clone)]
pub struct Hook {
    pub after_request: u64,
    pub kill_pid: u32,
    pub fired: bool,
}

pub struct Control {
    pub rng: SmallRng,
    pub faults: Vec<FaultRule>,
    pub limits: Limits,
    pub buckets: HashMap<(String, String, Class), Bucket>,
    pub dns_buckets: HashMap<String, Bucket>,
    pub stats: Stats,
    pub log: Vec<LogEntry>,
    pub hooks: Vec<Hook>,
    /// ARM requests answered so far (the hook counter).
    pub arm_requests: u64,
    pub record_seq: u64,
    /// Retryable failures not yet repeated: (principal, method, path) -> the earliest instant
    /// the answer's `Retry-After` allowed a retry (None: no `Retry-After`).
    pub pending_retries: HashMap<(String, String, String), Option<Instant>>,
    /// Saved estates, by name (`POST /_sim/snapshot`, `POST /_sim/restore`).
    pub snapshots: HashMap<String, crate::core::WorldSnapshot>,
}

const LOG_CAP: usize = 200_000;

impl Control {
    pub fn new(cfg: &Config) -> Self {
        Control {
            rng: SmallRng::seed_from_u64(cfg.seed),
            faults: Vec::new(),
            limits: cfg.limits.clone(),
            buckets: HashMap::new(),
            dns_buckets: HashMap::new(),
            stats: Stats::default(),
            log: Vec::new(),
            hooks: Vec::new(),
            arm_requests: 0,
            record_seq: 0,
            pending_retries: HashMap::new(),
            snapshots: HashMap::new(),
        }
    }

    pub fn add_fault(&mut self, spec: FaultSpec) -> Result<(), String> {
        let kind_s = match &spec.kind {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            other => {
                return Err(format!(
                    "fault kind must be a string or number, got {other}"
                ));
            }
        };
        let kind = FaultKind::parse(&kind_s).ok_or_else(|| {
            format!(
                "unknown fault kind '{kind_s}' (429|500|503|409-another-op|drop-connection|slow-lro|failed-lro|failed-deployment)"
            )
        })?;
        if let Some(r) = spec.rate
            && !(0.0..=1.0).contains(&r)
        {
            return Err(format!("rate {r} is not within 0..=1"));
        }
        let regex = match &spec.matcher.regex {
            Some(r) => Some(regex::Regex::new(r).map_err(|e| format!("bad regex: {e}"))?),
            None => None,
        };
        let rng = spec.seed.map(SmallRng::seed_from_u64);
        self.faults.push(FaultRule {
            spec,
            kind,
            regex,
            seen: 0,
            fired: 0,
            rng,
        });
        Ok(())
    }

    /// Picks the fault (if any) for this request; every matching rule counts the request.
    pub fn pick_fault(&mut self, method: &str, path: &str, op: &str) -> Option<(FaultKind, u64)> {
        let mut chosen = None;
        for rule in &mut self.faults {
            let m = &rule.spec.matcher;
            if m.method
                .as_ref()
                .is_some_and(|x| !x.eq_ignore_ascii_case(method))
            {
                continue;
            }
            if m.path_contains
                .as_ref()
                .is_some_and(|x| !path.to_ascii_lowercase().contains(&x.to_ascii_lowercase()))
            {
                continue;
            }
            if rule.regex.as_ref().is_some_and(|r| !r.is_match(path)) {
                continue;
            }
            if m.op.as_ref().is_some_and(|x| !x.eq_ignore_ascii_case(op)) {
                continue;
            }
            let n = rule.seen;
            rule.seen += 1;
            if rule.spec.count.is_some_and(|c| rule.fired >= c) {
                continue;
            }
            let fire = match (&rule.spec.sequence, rule.spec.rate) {
                (Some(seq), _) => seq.get(n as usize).copied().unwrap_or(false),
                (None, Some(rate)) => match &mut rule.rng {
                    Some(own) => own.random::<f64>() < rate,
                    None => self.rng.random::<f64>() < rate,
                },
                (None, None) => true,
            };
            if fire && chosen.is_none() {
                rule.fired += 1;
                chosen = Some((rule.kind, rule.spec.retry_after_s.unwrap_or(1)));
            }
        }
        chosen
    }

    pub fn limit_for(&self, class: Class) -> (u32, f64) {
        match class {
            Class::Read => self.limits.reads,
            Class::Write => self.limits.writes,
            Class::Delete => self.limits.deletes,
        }
    }

    pub fn take_token(
        &mut self,
        principal: &str,
        sub: &str,
        class: Class,
        now: Instant,
    ) -> Result<u64, u64> {
        let (cap, rate) = self.limit_for(class);
        self.buckets
            .entry((principal.to_string(), sub.to_ascii_lowercase(), class))
            .or_insert_with(|| Bucket::new(cap, rate, now))
            .take(now)
    }

    pub fn take_dns_link_read(&mut self, zone_id: &str, now: Instant) -> Result<u64, u64> {
        let (cap, rate) = self.limits.dns_link_reads;
        self.dns_buckets
            .entry(zone_id.to_ascii_lowercase())
            .or_insert_with(|| Bucket::new(cap, rate, now))
            .take(now)
    }

    pub fn log(&mut self, e: LogEntry) {
        if self.log.len() < LOG_CAP {
            self.log.push(e);
        }
    }

    pub fn stats_json(&self) -> Value {
        let s = &self.stats;
        json!({
            "reads": s.reads, "writes": s.writes, "deletes": s.deletes, "polls": s.polls,
            "throttled": s.throttled, "faults_injected": s.faults_injected,
            "retries": s.retries, "retry_after_given": s.retry_after_given,
            "early_retries": s.early_retries,
            "requests": self.arm_requests,
            "by_operation": s.by_operation,
        })
    }

    pub fn log_json(&self) -> Value {
        Value::Array(
            self.log
                .iter()
                .map(|e| json!({"seq": e.seq, "method": e.method, "path": e.path, "op": e.op, "status": e.status, "time": e.time, "arrived_unix_ms": e.arrived_unix_ms, "user_agent": e.user_agent}))
                .collect(),
        )
    }

    /// Counts a request that repeats a retryable failure (and whether it came too early),
    /// then remembers this answer when it is itself a retryable failure.
    #[allow(clippy::too_many_arguments)]
    pub fn track_retry(
        &mut self,
        principal: &str,
        method: &str,
        path: &str,
        status: u16,
        arm_code: Option<&str>,
        dropped: bool,
        retry_after: Option<u64>,
        now: Instant,
    ) {
        let key = (
            principal.to_string(),
            method.to_string(),
            path.to_ascii_lowercase(),
        );
        if let Some(not_before) = self.pending_retries.remove(&key) {
            self.stats.retries += 1;
            if not_before.is_some_and(|t| now < t) {
                self.stats.early_retries += 1;
            }
        }
        let retryable = dropped
            || matches!(status, 429 | 500 | 502 | 503 | 504)
            || (status == 409 && arm_code == Some("AnotherOperationInProgress"));
        if retryable {
            if retry_after.is_some() {
                self.stats.retry_after_given += 1;
            }
            let not_before = retry_after.map(|s| now + std::time::Duration::from_secs(s));
            self.pending_retries.insert(key, not_before);
        }
    }

    /// Hooks due after the `n`-th ARM request.
    pub fn due_hooks(&mut self, n: u64) -> Vec<u32> {
        let mut pids = Vec::new();
        for h in &mut self.hooks {
            if !h.fired && h.after_request == n {
                h.fired = true;
                pids.push(h.kill_pid);
            }
        }
        pids
    }
}
