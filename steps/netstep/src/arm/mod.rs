//! The Azure Resource Manager client every step uses.
//!
//! - [`ArmClient`] (built with [`ClientBuilder`]): `get`/`list`/`put`/`patch`/`delete`/`post`/
//!   `post_list` on ARM resource ids, returning `serde_json::Value`; steps build typed views on
//!   top. The api-version comes from [`api_version::for_resource`] unless overridden.
//! - Authentication: [`Credential`] (static token or azure_identity, picked from the
//!   environment by [`Credential::from_env`]).
//! - Retries: the pure classifier [`classify`] and [`RetryPolicy`] (full-jitter exponential
//!   backoff, server delays honoured, an overall deadline).
//! - Client-side throttling: [`throttle`] token buckets with ARM's published limits.
//! - Long-running operations: `Azure-AsyncOperation`, `Location` and `provisioningState`
//!   are waited for ([`LroConfig`]).
//! - Paging: `nextLink` for GET lists, `skipToken` for POST `list*` actions.
//! - Traffic recording in oav format ([`ClientBuilder::record_traffic`]).
//!
//! # Retry semantics of POST
//!
//! PUT, PATCH, GET and DELETE are idempotent in ARM (they carry the full desired state or
//! address one resource), so they are retried on every retryable outcome, including a
//! connection that broke after the request was sent. A POST action (`commit`) is different:
//! if its response is lost, the action may have been applied. So by default a POST is
//! retried only when ARM provably did not act on it: the connection was never established,
//! ARM answered 429 (throttled before dispatch), or the resource provider answered 409 with
//! a retryable code (`AnotherOperationInProgress`: rejected). A 5xx or a lost response on a
//! POST is returned as a transient error (exit 75): the step is rerun, re-reads the
//! deployment status and decides again. POST `list*` actions ([`ArmClient::post_list`]) only
//! read and are retried like GETs; callers whose action is idempotent (a goal-state commit
//! they re-verify) can opt in with [`PostOptions::idempotent`].
//!
//! # Counters and throttling scope
//!
//! One client (and its clones) holds one set of token buckets and [`Counters`]; build one
//! client per run and clone it, so the buckets really are per principal.

pub mod api_version;
mod client;
mod credential;
mod error;
mod record;
pub mod retry;
pub mod throttle;

pub use client::{
    ArmClient, ClientBuilder, Counters, DeleteOptions, LroConfig, PostOptions, PutOptions,
    ReadOptions, WriteGate,
};
pub use credential::{Credential, PUBLIC_SCOPE, scope_for};
pub use error::{ArmError, ArmErrorKind, parse_error_body};
pub use record::PUBLIC_ORIGIN;
pub use retry::{Class, FixedJitter, Jitter, RandomJitter, RetryPolicy, classify};
pub use throttle::{BucketConfig, OpClass, ThrottleConfig};

/// A short operation name for a resource path: the last resource type, action or collection
/// (`networkGroups`, `commit`, `operationResults`, `virtualNetworks`).
pub fn short_name(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // Segments after the last `providers/<Namespace>`; else the whole path.
    let tail: &[&str] = match segs
        .iter()
        .rposition(|s| s.eq_ignore_ascii_case("providers"))
    {
        Some(i) if i + 2 <= segs.len() => &segs[(i + 2).min(segs.len())..],
        _ => &segs[..],
    };
    let name = match tail.len() {
        0 => segs.last().copied().unwrap_or(""),
        n if n % 2 == 1 => tail[n - 1],
        n => tail[n - 2],
    };
    if name.is_empty() {
        "root".to_string()
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::short_name;

    #[test]
    fn short_names() {
        let nm =
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkManagers/nm";
        assert_eq!(short_name(nm), "networkManagers");
        assert_eq!(
            short_name(&format!("{nm}/networkGroups/ng")),
            "networkGroups"
        );
        assert_eq!(short_name(&format!("{nm}/networkGroups")), "networkGroups");
        assert_eq!(short_name(&format!("{nm}/commit")), "commit");
        assert_eq!(
            short_name(&format!("{nm}/operationResults/0000?api-version=x")),
            "operationResults"
        );
        assert_eq!(
            short_name("/subscriptions/s/resourceGroups/rg"),
            "resourceGroups"
        );
        assert_eq!(
            short_name("/subscriptions/s/providers/Microsoft.Network/virtualNetworks"),
            "virtualNetworks"
        );
        assert_eq!(
            short_name(
                "/subscriptions/s/providers/Microsoft.Network/locations/eastus/operations/1"
            ),
            "operations"
        );
        assert_eq!(short_name("/"), "root");
    }
}
