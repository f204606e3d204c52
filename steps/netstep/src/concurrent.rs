//! Bounded concurrency for independent ARM requests of one step.
//!
//! Steps issue the independent writes of one phase (links, child policies, firewall
//! associations, configurations) concurrently, at most `limit` in flight; the client's token
//! buckets pace them to ARM's budget, so the bound only caps the memory and connections in
//! use. After the first failure no new request starts; those in flight finish. The first
//! error in input order is returned (deterministic messages and exit codes).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;

/// Requests in flight per step phase: at ARM's ~80-200 ms per request this is ~50-100
/// requests per second, well above the write bucket's 10 per second refill, so the bucket
/// (not this bound) paces a step once its burst is spent.
pub const PARALLEL: usize = 8;

/// Runs `f` over `items`, at most `limit` at once; returns the results in input order, or
/// the first error (in input order) once everything started has finished.
pub async fn try_map_bounded<'a, T, R, E, F, Fut>(
    items: &'a [T],
    limit: usize,
    f: F,
) -> Result<Vec<R>, E>
where
    F: Fn(&'a T) -> Fut,
    Fut: std::future::Future<Output = Result<R, E>>,
{
    let failed = Arc::new(AtomicBool::new(false));
    let mut done: Vec<(usize, Option<Result<R, E>>)> =
        futures::stream::iter(items.iter().enumerate())
            .map(|(i, item)| {
                let failed = failed.clone();
                let fut = f(item);
                async move {
                    if failed.load(Ordering::Relaxed) {
                        return (i, None);
                    }
                    let r = fut.await;
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    (i, Some(r))
                }
            })
            .buffer_unordered(limit.max(1))
            .collect()
            .await;
    done.sort_by_key(|(i, _)| *i);
    let mut out = Vec::with_capacity(items.len());
    let mut first_err = None;
    for (_, r) in done {
        match r {
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) if first_err.is_none() => first_err = Some(e),
            Some(Err(_)) | None => {}
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn runs_at_most_limit_at_once_and_keeps_order() {
        let in_flight = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let items: Vec<u64> = (0..20).collect();
        let out = try_map_bounded(&items, 3, |i| {
            let (in_flight, peak) = (&in_flight, &peak);
            async move {
                let n = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10 * (20 - i))).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, String>(i * 2)
            }
        })
        .await
        .unwrap();
        assert_eq!(out, (0..20).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(peak.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn stops_starting_after_a_failure_and_returns_the_first_error() {
        let started = AtomicUsize::new(0);
        let items: Vec<u64> = (0..50).collect();
        let err = try_map_bounded(&items, 2, |i| {
            let started = &started;
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                if *i == 3 || *i == 4 {
                    Err(format!("failed {i}"))
                } else {
                    Ok(())
                }
            }
        })
        .await
        .unwrap_err();
        assert_eq!(err, "failed 3");
        assert!(
            started.load(Ordering::SeqCst) < 10,
            "kept starting after the failure"
        );
    }
}
