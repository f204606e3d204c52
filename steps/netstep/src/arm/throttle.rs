//! Client-side token buckets, so a run stays under ARM's request limits instead of collecting
//! 429s.
//!
//! Defaults are ARM's regional token-bucket limits per subscription and principal, as
//! published in "Understand how Azure Resource Manager throttles requests"
//! (<https://learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling>,
//! "Regional throttling and token bucket algorithm"): reads 250 bucket / 25 per second,
//! writes 200 / 10, deletes 200 / 10. One [`Throttle`] belongs to one client, and a client has
//! one credential, so the buckets are per principal (conservatively shared across all
//! subscriptions the client touches).
//!
//! Waiting is `tokio::time` based, so paused-time tests see exact virtual delays.

use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::time::Instant;

/// Which ARM budget a request consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpClass {
    /// GET (including LRO polls).
    Read,
    /// PUT, PATCH and every POST (ARM charges POST `list*` actions to the writes budget).
    Write,
    /// DELETE.
    Delete,
}

impl OpClass {
    /// The class of an HTTP method.
    pub fn of(method: &reqwest::Method) -> Self {
        match *method {
            reqwest::Method::GET | reqwest::Method::HEAD => OpClass::Read,
            reqwest::Method::DELETE => OpClass::Delete,
            _ => OpClass::Write,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            OpClass::Read => "reads",
            OpClass::Write => "writes",
            OpClass::Delete => "deletes",
        }
    }
}

/// One bucket: `capacity` tokens, refilled at `refill_per_sec`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketConfig {
    /// Burst size.
    pub capacity: f64,
    /// Tokens added per second.
    pub refill_per_sec: f64,
}

/// The three buckets (or none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleConfig {
    /// GET budget.
    pub reads: BucketConfig,
    /// PUT/PATCH/POST budget.
    pub writes: BucketConfig,
    /// DELETE budget.
    pub deletes: BucketConfig,
    /// When false, requests never wait on the client side.
    pub enabled: bool,
}

impl Default for ThrottleConfig {
    /// ARM's published regional limits per subscription and principal.
    fn default() -> Self {
        ThrottleConfig {
            reads: BucketConfig {
                capacity: 250.0,
                refill_per_sec: 25.0,
            },
            writes: BucketConfig {
                capacity: 200.0,
                refill_per_sec: 10.0,
            },
            deletes: BucketConfig {
                capacity: 200.0,
                refill_per_sec: 10.0,
            },
            enabled: true,
        }
    }
}

impl ThrottleConfig {
    /// No client-side throttling.
    pub fn disabled() -> Self {
        ThrottleConfig {
            enabled: false,
            ..ThrottleConfig::default()
        }
    }
}

#[derive(Debug)]
struct Bucket {
    cfg: BucketConfig,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    /// May go negative: each waiter reserves its token and sleeps until it has refilled, so
    /// waiters are served in arrival order without holding the lock while sleeping.
    tokens: f64,
    last: Instant,
    /// Share of the configured refill rate in use (AIMD): halved on every 429 of this class —
    /// another client (a parallel step of the same run, another pipeline) is spending the same
    /// subscription budget — and recovered additively on every accepted request.
    rate_factor: f64,
}

/// Lowest share of the refill rate the client falls to after repeated 429s.
const MIN_RATE_FACTOR: f64 = 1.0 / 16.0;
/// Share recovered per accepted request of the class (about 50 requests from half to full).
const RATE_RECOVERY: f64 = 0.01;

impl Bucket {
    fn new(cfg: BucketConfig) -> Self {
        Bucket {
            cfg,
            state: Mutex::new(BucketState {
                tokens: cfg.capacity,
                last: Instant::now(),
                rate_factor: 1.0,
            }),
        }
    }

    fn refill(&self, s: &mut BucketState, now: Instant) {
        let dt = now.saturating_duration_since(s.last).as_secs_f64();
        s.tokens = (s.tokens + dt * self.cfg.refill_per_sec * s.rate_factor).min(self.cfg.capacity);
        s.last = now;
    }

    /// Takes one token; returns how long to wait before using it.
    fn reserve(&self) -> Duration {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(&mut s, Instant::now());
        s.tokens -= 1.0;
        let rate = self.cfg.refill_per_sec * s.rate_factor;
        if s.tokens >= 0.0 || rate <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.tokens / rate)
        }
    }

    /// ARM answered 429: the budget is shared with someone else; halve the rate and give up
    /// whatever burst the bucket still believes it has.
    fn throttled(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(&mut s, Instant::now());
        s.rate_factor = (s.rate_factor / 2.0).max(MIN_RATE_FACTOR);
        s.tokens = s.tokens.min(0.0);
    }

    /// ARM accepted a request: recover some of the rate.
    fn accepted(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.rate_factor < 1.0 {
            self.refill(&mut s, Instant::now());
            s.rate_factor = (s.rate_factor + RATE_RECOVERY).min(1.0);
        }
    }

    fn rate_factor(&self) -> f64 {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .rate_factor
    }

    /// ARM said only `remaining` requests are left: never believe we hold more.
    fn observe_remaining(&self, remaining: f64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(&mut s, Instant::now());
        if remaining < s.tokens {
            s.tokens = remaining;
        }
    }

    fn available(&self) -> f64 {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(&mut s, Instant::now());
        s.tokens
    }
}

/// Token buckets for reads, writes and deletes.
#[derive(Debug)]
pub struct Throttle {
    reads: Bucket,
    writes: Bucket,
    deletes: Bucket,
    enabled: bool,
}

impl Throttle {
    /// Full buckets per `cfg`.
    pub fn new(cfg: ThrottleConfig) -> Self {
        Throttle {
            reads: Bucket::new(cfg.reads),
            writes: Bucket::new(cfg.writes),
            deletes: Bucket::new(cfg.deletes),
            enabled: cfg.enabled,
        }
    }

    fn bucket(&self, class: OpClass) -> &Bucket {
        match class {
            OpClass::Read => &self.reads,
            OpClass::Write => &self.writes,
            OpClass::Delete => &self.deletes,
        }
    }

    /// Waits (tokio time) until a token of `class` is available and takes it. Returns the
    /// time waited.
    pub async fn acquire(&self, class: OpClass) -> Duration {
        if !self.enabled {
            return Duration::ZERO;
        }
        let wait = self.bucket(class).reserve();
        if !wait.is_zero() {
            tracing::debug!(
                ?class,
                wait_ms = wait.as_millis() as u64,
                "client-side throttle"
            );
            tokio::time::sleep(wait).await;
        }
        wait
    }

    /// ARM answered 429 for `class`: slow down (multiplicative decrease of the refill rate, the
    /// burst forfeited). Retry-After still decides when the rejected request is resent.
    pub fn throttled(&self, class: OpClass) {
        if self.enabled {
            self.bucket(class).throttled();
        }
    }

    /// ARM accepted a request of `class` (any non-429 answer): additive recovery of the rate.
    pub fn accepted(&self, class: OpClass) {
        if self.enabled {
            self.bucket(class).accepted();
        }
    }

    /// Share of the configured refill rate `class` currently uses (1.0 until a 429).
    pub fn rate_factor(&self, class: OpClass) -> f64 {
        self.bucket(class).rate_factor()
    }

    /// Tokens currently available in the bucket of `class` (negative when waiters queue).
    pub fn available(&self, class: OpClass) -> f64 {
        self.bucket(class).available()
    }

    /// Adapts to ARM's `x-ms-ratelimit-remaining-{subscription,tenant}[-global]-{reads,writes,deletes}`
    /// headers: when ARM reports fewer remaining requests than the local bucket holds, the
    /// bucket drops to that number, which slows the client down before ARM answers 429.
    pub fn observe(&self, class: OpClass, headers: &HeaderMap) {
        if !self.enabled {
            return;
        }
        let suffix = class.suffix();
        let remaining = headers
            .iter()
            .filter(|(name, _)| {
                let n = name.as_str();
                n.starts_with("x-ms-ratelimit-remaining-") && n.ends_with(suffix)
            })
            .filter_map(|(_, v)| v.to_str().ok()?.trim().parse::<f64>().ok())
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v))));
        if let Some(r) = remaining {
            self.bucket(class).observe_remaining(r.max(0.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn small() -> ThrottleConfig {
        ThrottleConfig {
            reads: BucketConfig {
                capacity: 3.0,
                refill_per_sec: 1.0,
            },
            writes: BucketConfig {
                capacity: 2.0,
                refill_per_sec: 0.5,
            },
            deletes: BucketConfig {
                capacity: 1.0,
                refill_per_sec: 1.0,
            },
            enabled: true,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_refill_rate() {
        let t = Throttle::new(small());
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.acquire(OpClass::Read).await, Duration::ZERO);
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        // Bucket empty: the next three come one per second.
        for i in 1..=3u64 {
            t.acquire(OpClass::Read).await;
            assert_eq!(start.elapsed(), Duration::from_secs(i));
        }
        // Writes are a separate bucket, still full.
        assert_eq!(t.acquire(OpClass::Write).await, Duration::ZERO);
        assert_eq!(t.acquire(OpClass::Write).await, Duration::ZERO);
        assert_eq!(t.acquire(OpClass::Write).await, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_halves_the_rate_and_accepted_requests_restore_it() {
        let t = Throttle::new(small());
        let start = Instant::now();
        // Reads: 3 burst, 1/s. A 429 forfeits the burst and halves the rate to 0.5/s.
        t.throttled(OpClass::Read);
        assert_eq!(t.rate_factor(OpClass::Read), 0.5);
        t.acquire(OpClass::Read).await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        t.acquire(OpClass::Read).await;
        assert_eq!(start.elapsed(), Duration::from_secs(4));
        // Repeated 429s bottom out at 1/16 of the rate.
        for _ in 0..10 {
            t.throttled(OpClass::Read);
        }
        assert_eq!(t.rate_factor(OpClass::Read), MIN_RATE_FACTOR);
        // Other classes are unaffected.
        assert_eq!(t.rate_factor(OpClass::Write), 1.0);
        // Additive recovery back to the full rate, never beyond.
        for _ in 0..200 {
            t.accepted(OpClass::Read);
        }
        assert_eq!(t.rate_factor(OpClass::Read), 1.0);
        // Disabled throttles ignore 429s.
        let off = Throttle::new(ThrottleConfig::disabled());
        off.throttled(OpClass::Read);
        assert_eq!(off.rate_factor(OpClass::Read), 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_waiters_are_spaced_by_the_refill_rate() {
        let t = std::sync::Arc::new(Throttle::new(small()));
        let start = Instant::now();
        t.acquire(OpClass::Delete).await;
        let mut handles = Vec::new();
        for _ in 0..3 {
            let t = t.clone();
            handles.push(tokio::spawn(async move {
                t.acquire(OpClass::Delete).await;
                start.elapsed()
            }));
        }
        let mut done: Vec<Duration> = Vec::new();
        for h in handles {
            done.push(h.await.unwrap());
        }
        done.sort();
        assert_eq!(
            done,
            vec![
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(3)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn low_remaining_headers_slow_the_client_down() {
        let t = Throttle::new(ThrottleConfig::default());
        let mut h = HeaderMap::new();
        h.insert(
            "x-ms-ratelimit-remaining-subscription-writes",
            HeaderValue::from_static("199"),
        );
        h.insert(
            "x-ms-ratelimit-remaining-subscription-global-writes",
            HeaderValue::from_static("1"),
        );
        h.insert(
            "x-ms-ratelimit-remaining-subscription-reads",
            HeaderValue::from_static("0"),
        );
        t.observe(OpClass::Write, &h);
        assert_eq!(t.available(OpClass::Write), 1.0);
        assert_eq!(t.available(OpClass::Read), 250.0);
        assert_eq!(t.acquire(OpClass::Write).await, Duration::ZERO);
        // 0 tokens left, refill 10/s: 100 ms.
        assert_eq!(t.acquire(OpClass::Write).await, Duration::from_millis(100));
        // Hourly-style large numbers never raise the bucket above its capacity.
        let mut big = HeaderMap::new();
        big.insert(
            "x-ms-ratelimit-remaining-subscription-deletes",
            HeaderValue::from_static("14999"),
        );
        t.observe(OpClass::Delete, &big);
        assert_eq!(t.available(OpClass::Delete), 200.0);
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_never_waits() {
        let t = Throttle::new(ThrottleConfig::disabled());
        for _ in 0..1000 {
            assert_eq!(t.acquire(OpClass::Write).await, Duration::ZERO);
        }
    }

    #[test]
    fn methods_map_to_budgets() {
        use reqwest::Method;
        assert_eq!(OpClass::of(&Method::GET), OpClass::Read);
        assert_eq!(OpClass::of(&Method::PUT), OpClass::Write);
        assert_eq!(OpClass::of(&Method::PATCH), OpClass::Write);
        assert_eq!(OpClass::of(&Method::POST), OpClass::Write);
        assert_eq!(OpClass::of(&Method::DELETE), OpClass::Delete);
    }
}
