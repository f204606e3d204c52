//! The lease-based lock per network manager (`leases/<name>`).
//!
//! Azure Blob: a blob lease of 15–60 s (the ttl, clamped) on `leases/<name>` (created empty with
//! If-None-Match: * when missing). The holder's description and acquisition time are written into
//! the blob under the lease so a waiter can name the holder. A background task renews the lease
//! every duration/3. A holder that dies stops renewing and the service expires the lease after at
//! most its duration; a waiter then takes it over.
//!
//! File: `leases/<name>` created exclusively, holding holder, token and `expires_at`; renewed by
//! a compare-and-swap rewrite every ttl/3; taken over (compare-and-swap) once expired. Single
//! host only (see [`super::file`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::blob::{BlobBackend, http_parts};
use super::error::{StateError, StateErrorKind};
use super::file::FileBackend;
use super::{Backend, CreateOutcome};

/// Shortest and longest blob lease the service accepts (seconds).
pub const BLOB_LEASE_MIN_S: u64 = 15;
/// See [`BLOB_LEASE_MIN_S`].
pub const BLOB_LEASE_MAX_S: u64 = 60;
const MAX_HOLDER_LEN: usize = 256;

/// What a lock file / lock blob says about its holder.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HolderInfo {
    holder: String,
    acquired_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease_duration_s: Option<u64>,
    pid: u32,
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "unknown".into())
}

fn rfc3339_in(d: Duration) -> String {
    (OffsetDateTime::now_utc() + d)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "unknown".into())
}

fn is_expired(info: &HolderInfo) -> bool {
    match info
        .expires_at
        .as_deref()
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
    {
        Some(t) => t <= OffsetDateTime::now_utc(),
        // No parsable expiry: treat as expired so a damaged lock file cannot block forever.
        None => true,
    }
}

fn held_error(name: &str, path: &str, info: Option<&HolderInfo>, waited: Duration) -> StateError {
    let (holder, since) = match info {
        Some(i) => (i.holder.as_str(), i.acquired_at.as_str()),
        None => ("an unknown holder", "an unknown time"),
    };
    StateError::new(
        StateErrorKind::LockHeld,
        "acquire_lock",
        Some(path),
        format!(
            "lease on network {name} held by {holder} since {since}; gave up after waiting \
             {:.1}s",
            waited.as_secs_f64()
        ),
    )
}

fn lost_error(name: &str, path: &str, why: &str) -> StateError {
    StateError::new(
        StateErrorKind::LockLost,
        "lock",
        Some(path),
        format!("lease on network {name} was lost: {why}"),
    )
}

/// Shared between the guard and its renewal task.
#[derive(Debug)]
struct Shared {
    lost: Mutex<Option<String>>,
    /// When the lease was last acquired or renewed, and for how long that makes it valid.
    renewed: Mutex<Instant>,
    validity: Duration,
}

impl Shared {
    fn new(validity: Duration) -> Self {
        Shared {
            lost: Mutex::new(None),
            renewed: Mutex::new(Instant::now()),
            validity,
        }
    }
    fn renewed_now(&self) {
        if let Ok(mut r) = self.renewed.lock() {
            *r = Instant::now();
        }
    }
    /// Why the lease can no longer be relied on, if it cannot: renewal was rejected, or it has
    /// not succeeded for the whole validity period (the service may have expired it).
    fn problem(&self) -> Option<String> {
        if let Some(why) = self.lost() {
            return Some(why);
        }
        let since = self.renewed.lock().ok()?.elapsed();
        (since >= self.validity).then(|| {
            format!(
                "not renewed for {:.1}s (lease valid for {}s); it may have expired",
                since.as_secs_f64(),
                self.validity.as_secs()
            )
        })
    }
    fn mark_lost(&self, why: String) {
        tracing::error!(reason = %why, "network lease lost");
        if let Ok(mut l) = self.lost.lock() {
            l.get_or_insert(why);
        }
    }
    fn lost(&self) -> Option<String> {
        self.lost.lock().ok().and_then(|l| l.clone())
    }
}

enum Held {
    Blob {
        backend: BlobBackend,
        lease_id: String,
    },
    File {
        backend: FileBackend,
        etag: Arc<Mutex<String>>,
    },
}

/// An acquired network lease. Renewed in the background while alive.
///
/// Call [`LockGuard::release`] when done; dropping the guard stops renewal and releases on a
/// best-effort background task (if a tokio runtime is still running). If the process dies the
/// lease expires on its own (blob: after at most the lease duration; file: after the ttl).
/// [`LockGuard::write_gate`] (installed into the ARM client by the step context) stops every
/// ARM write once the lease is lost; [`LockGuard::check`] is the same test for other work. Both
/// fail once renewal has failed and another process may hold the lease.
pub struct LockGuard {
    name: String,
    path: String,
    holder: String,
    held: Option<Held>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    renewer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("name", &self.name)
            .field("holder", &self.holder)
            .field("held", &self.is_held())
            .finish()
    }
}

impl LockGuard {
    /// The lock name (network manager).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The holder description this guard registered.
    pub fn holder(&self) -> &str {
        &self.holder
    }
    /// False once renewal failed (the lease may now belong to someone else).
    pub fn is_held(&self) -> bool {
        self.held.is_some() && self.shared.problem().is_none()
    }
    /// `Err(LockLost)` once renewal failed or has not succeeded for the lease's whole validity.
    pub fn check(&self) -> Result<(), StateError> {
        match self.shared.problem() {
            Some(why) => Err(lost_error(&self.name, &self.path, &why)),
            None => Ok(()),
        }
    }

    /// A [`crate::arm::WriteGate`] that stops every ARM write once this lease is lost or may
    /// have expired (renewal rejected or overdue), naming the lease.
    pub fn write_gate(&self) -> crate::arm::WriteGate {
        let shared = Arc::clone(&self.shared);
        let name = self.name.clone();
        crate::arm::WriteGate::new(move || {
            shared
                .problem()
                .map(|why| format!("the lease on network {name} is no longer held: {why}"))
        })
    }

    /// Stops renewal and releases the lease (if it is still ours). Fails with `LockLost` if the
    /// lease had been lost (renewal rejected, or another holder took it over) — the work done
    /// under it was not exclusive.
    pub async fn release(mut self) -> Result<(), StateError> {
        let _ = self.stop.send(true);
        if let Some(h) = self.renewer.take() {
            let _ = h.await;
        }
        let held = self.held.take();
        let result = match held {
            None => Ok(()),
            Some(h) => release_held(&self.name, &self.path, h).await,
        };
        // Renewal trouble is reported even if the release itself went through: the work done
        // under the lease may not have been exclusive.
        match self.shared.lost() {
            Some(why) => Err(lost_error(&self.name, &self.path, &why)),
            None => result,
        }
    }
}

async fn release_held(name: &str, path: &str, held: Held) -> Result<(), StateError> {
    match held {
        Held::Blob { backend, lease_id } => {
            match backend.release_lease("release_lock", path, &lease_id).await {
                Ok(()) => {
                    tracing::info!(lock = name, "network lease released");
                    Ok(())
                }
                Err(e) if matches!(e.status(), Some(409 | 412)) => Err(lost_error(
                    name,
                    path,
                    &format!("the service no longer knows our lease: {}", e.message()),
                )),
                Err(e) => Err(e),
            }
        }
        Held::File { backend, etag } => {
            let etag = etag.lock().map(|e| e.clone()).unwrap_or_default();
            if backend.delete_if_match("release_lock", path, &etag).await? {
                tracing::info!(lock = name, "network lease released");
                Ok(())
            } else {
                Err(lost_error(
                    name,
                    path,
                    "the lock file was taken over by another holder",
                ))
            }
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let Some(held) = self.held.take() else {
            return;
        };
        let renewer = self.renewer.take();
        let name = self.name.clone();
        let path = self.path.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                tracing::warn!(lock = %name, "lease guard dropped without release(); releasing in background");
                rt.spawn(async move {
                    if let Some(h) = renewer {
                        let _ = h.await;
                    }
                    if let Err(e) = release_held(&name, &path, held).await {
                        tracing::warn!(lock = %name, error = %e, "background lease release failed; it will expire");
                    }
                });
            }
            Err(_) => {
                if let Some(h) = renewer {
                    h.abort();
                }
                tracing::warn!(lock = %name, "lease guard dropped outside a runtime; the lease will expire");
            }
        }
    }
}

/// Acquires the lock; see the module docs.
pub(crate) async fn acquire(
    backend: &Backend,
    name: &str,
    holder: &str,
    ttl: Duration,
    wait: Duration,
    poll: Duration,
) -> Result<LockGuard, StateError> {
    let path = format!("leases/{name}");
    let holder: String = holder.chars().take(MAX_HOLDER_LEN).collect();
    let holder = if holder.trim().is_empty() {
        format!("pid {}", std::process::id())
    } else {
        holder
    };
    let (stop, stop_rx) = watch::channel(false);
    let (held, renewer, shared) = match backend {
        Backend::Blob(b) => {
            let (lease_id, duration) =
                acquire_blob(b, name, &path, &holder, ttl, wait, poll).await?;
            let shared = Arc::new(Shared::new(duration));
            let renewer = tokio::spawn(renew_blob(
                b.clone(),
                path.clone(),
                lease_id.clone(),
                duration,
                shared.clone(),
                stop_rx,
            ));
            (
                Held::Blob {
                    backend: b.clone(),
                    lease_id,
                },
                renewer,
                shared,
            )
        }
        Backend::File(f) => {
            let (etag, info) = acquire_file(f, name, &path, &holder, ttl, wait, poll).await?;
            let shared = Arc::new(Shared::new(ttl));
            let etag = Arc::new(Mutex::new(etag));
            let renewer = tokio::spawn(renew_file(
                f.clone(),
                path.clone(),
                info,
                ttl,
                etag.clone(),
                shared.clone(),
                stop_rx,
            ));
            (
                Held::File {
                    backend: f.clone(),
                    etag,
                },
                renewer,
                shared,
            )
        }
    };
    tracing::info!(lock = name, holder = %holder, ttl_s = ttl.as_secs_f64(), "network lease acquired");
    Ok(LockGuard {
        name: name.to_owned(),
        path,
        holder,
        held: Some(held),
        shared,
        stop,
        renewer: Some(renewer),
    })
}

/// Breaks the lease `name` when its holder description contains `marker` (e.g. the run key of
/// a workflow whose steps have all ended: a lease still held under it belongs to a killed step).
/// Returns the holder whose lease was broken (file: whose lock file was removed), `None` when
/// the lease is free, held by someone else, or changed hands while we looked.
pub(crate) async fn break_if_held_by(
    backend: &Backend,
    name: &str,
    marker: &str,
) -> Result<Option<String>, StateError> {
    let op = "break_lock";
    let path = format!("leases/{name}");
    let Some(cur) = backend.read(op, &path).await? else {
        return Ok(None);
    };
    let Some(info) = parse_info(&cur.bytes) else {
        return Ok(None);
    };
    if marker.is_empty() || !info.holder.contains(marker) {
        return Ok(None);
    }
    let broken = match backend {
        Backend::File(f) => f.delete_if_match(op, &path, &cur.etag).await?,
        Backend::Blob(b) => b.break_lease(op, &path, &cur.etag).await?,
    };
    if broken {
        tracing::warn!(lock = name, holder = %info.holder, "broke a leftover network lease");
    }
    Ok(broken.then_some(info.holder))
}

fn parse_info(bytes: &[u8]) -> Option<HolderInfo> {
    serde_json::from_slice(bytes).ok()
}

async fn sleep_until_next_poll(deadline: Instant, poll: Duration) {
    let remaining = deadline.saturating_duration_since(Instant::now());
    tokio::time::sleep(poll.min(remaining).max(Duration::from_millis(10))).await;
}

async fn acquire_blob(
    b: &BlobBackend,
    name: &str,
    path: &str,
    holder: &str,
    ttl: Duration,
    wait: Duration,
    poll: Duration,
) -> Result<(String, Duration), StateError> {
    let op = "acquire_lock";
    let duration_s = ttl.as_secs().clamp(BLOB_LEASE_MIN_S, BLOB_LEASE_MAX_S);
    let start = Instant::now();
    let deadline = start + wait;
    let proposed = uuid::Uuid::new_v4().to_string();
    let mut creations = 0;
    let lease_id = loop {
        match b
            .try_acquire_lease(op, path, duration_s as i32, &proposed)
            .await
        {
            Ok(Some(id)) => break id,
            Ok(None) => {
                if Instant::now() >= deadline {
                    let info = b
                        .read(op, path)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|v| parse_info(&v.bytes));
                    return Err(held_error(name, path, info.as_ref(), start.elapsed()));
                }
                tracing::debug!(lock = name, "lease held by another process; waiting");
                sleep_until_next_poll(deadline, poll).await;
            }
            Err(e) if e.error_code() == Some("BlobNotFound") && creations < 3 => {
                creations += 1;
                // Create the lock blob; losing the race to another creator is fine.
                match b.create(op, path, b"{}".to_vec()).await? {
                    CreateOutcome::Created(_) | CreateOutcome::Exists => {}
                }
            }
            Err(e) => return Err(e),
        }
    };
    let info = HolderInfo {
        holder: holder.to_owned(),
        acquired_at: now_rfc3339(),
        expires_at: None,
        token: None,
        lease_duration_s: Some(duration_s),
        pid: std::process::id(),
    };
    let bytes = serde_json::to_vec(&info).unwrap_or_default();
    if let Err(e) = b.overwrite_leased(op, path, bytes, &lease_id).await {
        let _ = b.release_lease(op, path, &lease_id).await;
        return Err(e);
    }
    Ok((lease_id, Duration::from_secs(duration_s)))
}

async fn renew_blob(
    b: BlobBackend,
    path: String,
    lease_id: String,
    duration: Duration,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let interval = duration / 3;
    let mut last_ok = Instant::now();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if *stop.borrow() {
            return;
        }
        match b.renew_lease("renew_lock", &path, &lease_id).await {
            Ok(()) => {
                last_ok = Instant::now();
                shared.renewed_now();
                tracing::debug!(lock = %path, "lease renewed");
            }
            Err(e) => {
                let (status, code) = http_parts(&e);
                let text = super::redact::redact_secrets(&e.to_string());
                if matches!(status, Some(404 | 409 | 412)) {
                    shared.mark_lost(format!(
                        "renewal rejected [HTTP {}, {}]: {text}",
                        status.unwrap_or_default(),
                        code.unwrap_or_default()
                    ));
                    return;
                }
                if last_ok.elapsed() >= duration {
                    shared.mark_lost(format!(
                        "could not renew for {:.0}s (lease duration {}s): {text}",
                        last_ok.elapsed().as_secs_f64(),
                        duration.as_secs()
                    ));
                    return;
                }
                tracing::warn!(lock = %path, error = %text, "lease renewal failed; retrying");
            }
        }
    }
}

async fn acquire_file(
    f: &FileBackend,
    name: &str,
    path: &str,
    holder: &str,
    ttl: Duration,
    wait: Duration,
    poll: Duration,
) -> Result<(String, HolderInfo), StateError> {
    let op = "acquire_lock";
    let start = Instant::now();
    let deadline = start + wait;
    let token = uuid::Uuid::new_v4().to_string();
    let fresh = || HolderInfo {
        holder: holder.to_owned(),
        acquired_at: now_rfc3339(),
        expires_at: Some(rfc3339_in(ttl)),
        token: Some(token.clone()),
        lease_duration_s: None,
        pid: std::process::id(),
    };
    loop {
        let mine = fresh();
        let bytes = serde_json::to_vec(&mine).unwrap_or_default();
        if let CreateOutcome::Created(etag) = f.create(op, path, bytes).await? {
            return Ok((etag, mine));
        }
        let Some(cur) = f.read(op, path).await? else {
            continue; // released in between
        };
        let info = parse_info(&cur.bytes);
        if info.as_ref().is_none_or(is_expired) {
            let previous = info
                .as_ref()
                .map(|i| i.holder.clone())
                .unwrap_or_else(|| "an unreadable lock file".into());
            let mine = fresh();
            let bytes = serde_json::to_vec(&mine).unwrap_or_default();
            match f.replace(op, path, bytes, &cur.etag).await {
                Ok(etag) => {
                    tracing::warn!(lock = name, previous = %previous, "took over an expired lease");
                    return Ok((etag, mine));
                }
                Err(e) if e.kind() == StateErrorKind::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        if Instant::now() >= deadline {
            return Err(held_error(name, path, info.as_ref(), start.elapsed()));
        }
        sleep_until_next_poll(deadline, poll).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn renew_file(
    f: FileBackend,
    path: String,
    mut info: HolderInfo,
    ttl: Duration,
    etag: Arc<Mutex<String>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let interval = ttl / 3;
    let mut last_ok = Instant::now();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if *stop.borrow() {
            return;
        }
        info.expires_at = Some(rfc3339_in(ttl));
        let bytes = serde_json::to_vec(&info).unwrap_or_default();
        let current = etag.lock().map(|e| e.clone()).unwrap_or_default();
        match f.replace("renew_lock", &path, bytes, &current).await {
            Ok(new) => {
                last_ok = Instant::now();
                shared.renewed_now();
                if let Ok(mut e) = etag.lock() {
                    *e = new;
                }
            }
            Err(e) if e.kind() == StateErrorKind::Conflict => {
                shared.mark_lost(format!("lock file changed by another holder: {e}"));
                return;
            }
            Err(e) => {
                if last_ok.elapsed() >= ttl {
                    shared.mark_lost(format!("could not renew for longer than the ttl: {e}"));
                    return;
                }
                tracing::warn!(lock = %path, error = %e, "lock renewal failed; retrying");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_renewal_means_not_held() {
        let s = Shared::new(Duration::from_millis(20));
        assert!(s.problem().is_none());
        std::thread::sleep(Duration::from_millis(30));
        assert!(s.problem().unwrap().contains("not renewed"));
        s.renewed_now();
        assert!(s.problem().is_none());
        s.mark_lost("rejected".into());
        assert_eq!(s.problem().as_deref(), Some("rejected"));
    }

    #[tokio::test]
    async fn file_lock_takeover_of_damaged_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = FileBackend::new(dir.path().to_owned());
        std::fs::create_dir_all(dir.path().join("leases")).unwrap();
        std::fs::write(dir.path().join("leases/net"), b"garbage").unwrap();
        let backend = Backend::File(f);
        let g = acquire(
            &backend,
            "net",
            "me",
            Duration::from_secs(5),
            Duration::ZERO,
            Duration::from_millis(10),
        )
        .await
        .unwrap();
        assert!(g.is_held());
        let e = acquire(
            &backend,
            "net",
            "other",
            Duration::from_secs(5),
            Duration::ZERO,
            Duration::from_millis(10),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), StateErrorKind::LockHeld);
        assert!(e.to_string().contains("held by me since"), "{e}");
        g.release().await.unwrap();
        assert!(!dir.path().join("leases/net").exists());
    }
}
