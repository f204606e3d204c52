//! Retry decisions: the pure classifier, the backoff policy with injectable jitter, and the
//! server-given delays (`Retry-After`, `retry-after-ms`, `x-ms-retry-after-ms`).

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::SmallRng};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use time::OffsetDateTime;

/// How a failed attempt should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Transient: back off and retry.
    Retry,
    /// 429: back off (honouring `Retry-After`) and retry; counted as throttled.
    Throttled,
    /// Permanent: do not retry.
    Fatal,
}

/// ARM error codes on a 409 that mean "try again later": the resource (or one it depends on)
/// is busy with another operation.
pub fn is_retryable_conflict_code(code: &str) -> bool {
    matches!(
        code,
        "AnotherOperationInProgress"
            | "RetryableErrorDueToAnotherOperation"
            | "OperationNotAllowedDueToAnotherOperation"
            | "ConflictingOperationInProgress"
            | "OperationPreempted"
            | "ResourceBusy"
    ) || code.starts_with("Retryable")
}

/// Classifies the outcome of one attempt. `status` is the HTTP status (None when no response
/// arrived), `arm_code` the ARM error code of the body, `is_connect_or_io_error` true when
/// the transport failed (connection refused/reset, timeout).
///
/// 429 → Throttled; 500/502/503/504 → Retry; 409 with a retryable code
/// (`AnotherOperationInProgress`, `RetryableErrorDueToAnotherOperation`, `Retryable*`, ...)
/// → Retry; transport errors → Retry; everything else → Fatal.
pub fn classify(
    status: Option<StatusCode>,
    arm_code: Option<&str>,
    is_connect_or_io_error: bool,
) -> Class {
    match status.map(|s| s.as_u16()) {
        Some(429) => Class::Throttled,
        Some(500 | 502 | 503 | 504) => Class::Retry,
        Some(409) if arm_code.is_some_and(is_retryable_conflict_code) => Class::Retry,
        Some(_) => Class::Fatal,
        None if is_connect_or_io_error => Class::Retry,
        None => Class::Fatal,
    }
}

/// Backoff limits for one logical request (all its attempts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Backoff cap of the first retry; doubles on each further retry.
    pub initial: Duration,
    /// Upper bound of any single delay (backoff or server-given).
    pub max_delay: Duration,
    /// Attempts in total, including the first (1 = never retry).
    pub max_attempts: u32,
    /// Overall deadline from the first attempt: no retry starts (or sleeps) past it.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(4),
            max_delay: Duration::from_secs(60),
            max_attempts: 8,
            max_elapsed: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The backoff cap before retry number `retry` (0 for the first retry):
    /// `min(max_delay, initial * 2^retry)`.
    pub fn cap(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(31));
        self.initial.saturating_mul(factor).min(self.max_delay)
    }

    /// Full-jitter backoff: `fraction * cap(retry)`, with `fraction` in `[0, 1]`.
    pub fn backoff(&self, retry: u32, fraction: f64) -> Duration {
        self.cap(retry).mul_f64(fraction.clamp(0.0, 1.0))
    }

    /// The delay before retry number `retry`: the server's delay when it gave one (clamped to
    /// `max_delay`), otherwise full-jitter backoff.
    pub fn delay(&self, retry: u32, server: Option<Duration>, fraction: f64) -> Duration {
        match server {
            Some(d) => d.min(self.max_delay),
            None => self.backoff(retry, fraction),
        }
    }
}

/// A source of jitter fractions in `[0, 1)`. Injectable so tests are deterministic.
pub trait Jitter: Send + Sync + fmt::Debug {
    /// The next fraction in `[0, 1)`.
    fn fraction(&self) -> f64;
}

/// Jitter from a small PRNG; seed it for reproducible delays.
#[derive(Debug)]
pub struct RandomJitter(Mutex<SmallRng>);

impl RandomJitter {
    /// Seeded from the operating system.
    pub fn from_os() -> Self {
        RandomJitter(Mutex::new(SmallRng::from_os_rng()))
    }

    /// Deterministic, from `seed`.
    pub fn seeded(seed: u64) -> Self {
        RandomJitter(Mutex::new(SmallRng::seed_from_u64(seed)))
    }
}

impl Jitter for RandomJitter {
    fn fraction(&self) -> f64 {
        let mut rng = self.0.lock().unwrap_or_else(|p| p.into_inner());
        rng.random::<f64>()
    }
}

/// Jitter that replays fixed fractions in a cycle (tests).
#[derive(Debug)]
pub struct FixedJitter {
    fractions: Vec<f64>,
    next: Mutex<usize>,
}

impl FixedJitter {
    /// Replays `fractions` (at least one) in order, cycling.
    pub fn new(fractions: Vec<f64>) -> Self {
        assert!(
            !fractions.is_empty(),
            "FixedJitter needs at least one fraction"
        );
        FixedJitter {
            fractions,
            next: Mutex::new(0),
        }
    }
}

impl Jitter for FixedJitter {
    fn fraction(&self) -> f64 {
        let mut i = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let f = self.fractions[*i % self.fractions.len()];
        *i += 1;
        f
    }
}

/// The delay the server asked for: `retry-after-ms`, then `x-ms-retry-after-ms`
/// (milliseconds), then `Retry-After` (delta-seconds or an HTTP date, relative to `now`).
/// A date in the past gives zero.
pub fn server_delay(headers: &HeaderMap, now: OffsetDateTime) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = get(name).and_then(|v| v.parse::<u64>().ok()) {
            return Some(Duration::from_millis(ms));
        }
    }
    let ra = get("retry-after")?;
    if let Ok(secs) = ra.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = ra.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs));
    }
    let at = parse_http_date(ra)?;
    let delta = at - now;
    Some(if delta.is_positive() {
        Duration::try_from(delta).unwrap_or(Duration::ZERO)
    } else {
        Duration::ZERO
    })
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form HTTP requires.
pub fn parse_http_date(s: &str) -> Option<OffsetDateTime> {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(s.trim(), &fmt)
        .ok()
        .map(|p| p.assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn s(code: u16) -> Option<StatusCode> {
        Some(StatusCode::from_u16(code).unwrap())
    }

    #[test]
    fn classifier_table() {
        let table: &[(Option<StatusCode>, Option<&str>, bool, Class)] = &[
            (
                s(429),
                Some("SubscriptionRequestsThrottled"),
                false,
                Class::Throttled,
            ),
            (s(429), None, false, Class::Throttled),
            (s(500), None, false, Class::Retry),
            (s(502), None, false, Class::Retry),
            (s(503), Some("ServiceUnavailable"), false, Class::Retry),
            (s(504), None, false, Class::Retry),
            (s(501), None, false, Class::Fatal),
            (s(505), None, false, Class::Fatal),
            (
                s(409),
                Some("AnotherOperationInProgress"),
                false,
                Class::Retry,
            ),
            (
                s(409),
                Some("RetryableErrorDueToAnotherOperation"),
                false,
                Class::Retry,
            ),
            (s(409), Some("RetryableError"), false, Class::Retry),
            (s(409), Some("Conflict"), false, Class::Fatal),
            (s(409), None, false, Class::Fatal),
            (s(400), Some("InvalidRequestFormat"), false, Class::Fatal),
            (
                s(400),
                Some("AnotherOperationInProgress"),
                false,
                Class::Fatal,
            ),
            (s(401), None, false, Class::Fatal),
            (s(403), Some("AuthorizationFailed"), false, Class::Fatal),
            (s(404), Some("ResourceNotFound"), false, Class::Fatal),
            (s(412), None, false, Class::Fatal),
            (None, None, true, Class::Retry),
            (None, None, false, Class::Fatal),
        ];
        for (status, code, io, want) in table {
            assert_eq!(
                classify(*status, *code, *io),
                *want,
                "classify({status:?}, {code:?}, {io})"
            );
        }
    }

    #[test]
    fn backoff_is_full_jitter_exponential_and_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.cap(0), Duration::from_secs(4));
        assert_eq!(p.cap(1), Duration::from_secs(8));
        assert_eq!(p.cap(3), Duration::from_secs(32));
        assert_eq!(p.cap(4), Duration::from_secs(60));
        assert_eq!(p.cap(40), Duration::from_secs(60));
        assert_eq!(p.backoff(0, 0.5), Duration::from_secs(2));
        assert_eq!(p.backoff(2, 0.25), Duration::from_secs(4));
        assert_eq!(p.backoff(5, 1.0), Duration::from_secs(60));
        assert_eq!(p.backoff(1, 0.0), Duration::ZERO);
        // A server delay wins over backoff but is clamped.
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(7)), 0.9),
            Duration::from_secs(7)
        );
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(3600)), 0.9),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn seeded_jitter_is_reproducible_and_in_range() {
        let a = RandomJitter::seeded(42);
        let b = RandomJitter::seeded(42);
        let xs: Vec<f64> = (0..20).map(|_| a.fraction()).collect();
        let ys: Vec<f64> = (0..20).map(|_| b.fraction()).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|f| (0.0..1.0).contains(f)));
        assert!(xs.windows(2).any(|w| w[0] != w[1]));
        let f = FixedJitter::new(vec![0.1, 0.2]);
        assert_eq!([f.fraction(), f.fraction(), f.fraction()], [0.1, 0.2, 0.1]);
    }

    #[test]
    fn server_delays_in_all_three_headers() {
        let now = OffsetDateTime::from_unix_timestamp(784_111_777).unwrap(); // Sun, 06 Nov 1994 08:49:37 GMT
        let mut h = HeaderMap::new();
        assert_eq!(server_delay(&h, now), None);
        h.insert("retry-after", HeaderValue::from_static("17"));
        assert_eq!(server_delay(&h, now), Some(Duration::from_secs(17)));
        h.insert(
            "retry-after",
            HeaderValue::from_static("Sun, 06 Nov 1994 08:50:07 GMT"),
        );
        assert_eq!(server_delay(&h, now), Some(Duration::from_secs(30)));
        h.insert(
            "retry-after",
            HeaderValue::from_static("Sun, 06 Nov 1994 08:40:00 GMT"),
        );
        assert_eq!(server_delay(&h, now), Some(Duration::ZERO));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(server_delay(&h, now), None);
        h.insert("x-ms-retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(server_delay(&h, now), Some(Duration::from_millis(1500)));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(server_delay(&h, now), Some(Duration::from_millis(250)));
    }
}
