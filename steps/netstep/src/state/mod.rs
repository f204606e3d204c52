//! The state store: run snapshots, step records and the network lease, in Azure Blob Storage or a
//! local folder, behind one URL.
//!
//! # URLs
//! - `file:///abs/path`: a local folder (single host; see [`mod@file`] for the limits).
//! - `https://ACCOUNT.blob.core.windows.net/CONTAINER`: Azure Blob with a
//!   [`TokenCredential`] (Entra ID), or `...?<SAS>` with a SAS query string (then the credential,
//!   if any, is not used).
//! - `http://127.0.0.1:PORT/devstoreaccount1/CONTAINER?<SAS>`: Azurite. Plain http is accepted
//!   only for loopback hosts; loopback URLs use path-style `ACCOUNT/CONTAINER`.
//!
//! The blob service API version is pinned to [`AZURITE_API_VERSION`] for loopback URLs (Azurite
//! 3.35 rejects the SDK default) and left at the SDK default otherwise; both can be overridden
//! with [`StoreOptions::blob_api_version`] or the `NETSTEP_BLOB_API_VERSION` environment variable.
//!
//! # Layout (relative to the container or folder)
//! - `runs/<run-key>/intent.json`: the intent snapshot of the run. The first step of a run writes
//!   it (create-only); later steps and resubmissions read it, so a re-run with the same run key
//!   uses the same intent even if the file in git changed since.
//! - `runs/<run-key>/<step>.json`: the step record.
//! - `leases/<name>`: the lock of network manager `<name>`.
//!
//! Run keys, step names and lock names must match `[A-Za-z0-9._-]{1,128}` (not `.`/`..`); the
//! step name `intent` is reserved.
//!
//! # Documents
//! Snapshots and records are wrapped in a digest envelope (see [`envelope`]):
//! `{"format":1,"kind":…,"run_key":…,"step":…,"sha256":"<hex>","content":…}`. Readers verify the
//! digest and the run key/step and reject anything else with a [`StateError`].
//!
//! # Write order
//! A step writes its record LAST: after every Azure write it made has finished. A present record
//! therefore means "this step finished in this run" (with the status in it); a step that dies
//! midway leaves no record (or its previous one) and is simply run again. [`StateStore::put_record`]
//! enforces what it can: the record must be finished (`ended_at` set, not before `started_at`).
//!
//! # Concurrency
//! Writes are conditional: snapshots and new records with `If-None-Match: *`, replacements with
//! `If-Match: <etag>`; losing writers get a `Conflict` error. Steps of one network serialize on
//! [`StateStore::acquire_lock`].

mod blob;
pub mod envelope;
mod error;
pub mod file;
mod lock;
mod record;
mod redact;

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ExponentialRetryOptions, RetryOptions};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::Url;

pub use envelope::sha256_hex;
pub use error::{StateError, StateErrorKind};
pub use lock::{BLOB_LEASE_MAX_S, BLOB_LEASE_MIN_S, LockGuard};
pub use record::{Action, Change, FieldChange, Mode, Status, StepRecord};
pub use redact::redact_secrets;

use envelope::DocKind;

/// Blob service API version used for loopback (Azurite) URLs: the newest Azurite 3.35 accepts.
pub const AZURITE_API_VERSION: &str = "2025-11-05";
/// Environment variable overriding the blob service API version.
pub const API_VERSION_ENV: &str = "NETSTEP_BLOB_API_VERSION";
/// Reserved step name (the snapshot file).
const SNAPSHOT_STEM: &str = "intent";

/// Result of [`StateStore::put_snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotOutcome {
    /// This call wrote the snapshot.
    Created,
    /// A snapshot existed already (an earlier step or attempt of this run wrote it); these are
    /// its verified content bytes, which the run must use instead of the caller's.
    AlreadyPresent {
        /// The stored canonical JSON.
        bytes: Vec<u8>,
    },
}

/// The version of a stored document, for conditional replacement
/// ([`StateStore::put_record_if`]). Opaque.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ETag(String);

impl ETag {
    /// The raw value (blob ETag, or hex SHA-256 of the file for the file backend).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Tuning knobs of [`StateStore::open_with`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Blob service API version (`x-ms-version`). `None`: [`AZURITE_API_VERSION`] for loopback
    /// hosts, the SDK default otherwise.
    pub blob_api_version: Option<String>,
    /// How often a waiting [`StateStore::acquire_lock`] retries.
    pub lock_poll_interval: Duration,
    /// Total time the SDK may spend retrying one blob request (throttling, 5xx, connection
    /// failures) before the operation fails as `Unavailable` (transient).
    pub retry_max_elapsed: Duration,
    /// Custom HTTP transport for the blob client (e.g. a `reqwest::Client` trusting an extra
    /// root certificate). `None`: the SDK's default transport. A custom reqwest client should
    /// disable automatic decompression (`.no_gzip().no_deflate()`), as the SDK's default does.
    pub transport: Option<azure_core::http::Transport>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            blob_api_version: None,
            lock_poll_interval: Duration::from_secs(1),
            retry_max_elapsed: Duration::from_secs(60),
            transport: None,
        }
    }
}

impl StoreOptions {
    /// Defaults, with the API version from `NETSTEP_BLOB_API_VERSION` if set and non-empty.
    pub fn from_env() -> Self {
        StoreOptions {
            blob_api_version: std::env::var(API_VERSION_ENV)
                .ok()
                .filter(|v| !v.trim().is_empty()),
            ..Default::default()
        }
    }
}

/// A stored document and its version.
#[derive(Debug, Clone)]
pub(crate) struct Versioned {
    pub(crate) bytes: Vec<u8>,
    pub(crate) etag: String,
}

/// Outcome of a create-only write.
#[derive(Debug)]
pub(crate) enum CreateOutcome {
    Created(String),
    Exists,
}

#[derive(Debug, Clone)]
pub(crate) enum Backend {
    File(file::FileBackend),
    Blob(blob::BlobBackend),
}

impl Backend {
    async fn read(&self, op: &'static str, name: &str) -> Result<Option<Versioned>, StateError> {
        match self {
            Backend::File(f) => f.read(op, name).await,
            Backend::Blob(b) => b.read(op, name).await,
        }
    }
    async fn create(
        &self,
        op: &'static str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<CreateOutcome, StateError> {
        match self {
            Backend::File(f) => f.create(op, name, bytes).await,
            Backend::Blob(b) => b.create(op, name, bytes).await,
        }
    }
    async fn replace(
        &self,
        op: &'static str,
        name: &str,
        bytes: Vec<u8>,
        etag: &str,
    ) -> Result<String, StateError> {
        match self {
            Backend::File(f) => f.replace(op, name, bytes, etag).await,
            Backend::Blob(b) => b.replace(op, name, bytes, etag, None).await,
        }
    }
    /// Names of the documents directly under folder `dir` (no trailing slash), without the
    /// folder prefix.
    async fn list_dir(&self, op: &'static str, dir: &str) -> Result<Vec<String>, StateError> {
        match self {
            Backend::File(f) => f.list(op, dir).await,
            Backend::Blob(b) => {
                let prefix = format!("{dir}/");
                Ok(b.list(op, &prefix)
                    .await?
                    .into_iter()
                    .filter_map(|n| n.strip_prefix(&prefix).map(str::to_owned))
                    .filter(|n| !n.contains('/'))
                    .collect())
            }
        }
    }
}

/// The state store. Cheap to clone.
#[derive(Clone)]
pub struct StateStore {
    backend: Backend,
    display: String,
    options: StoreOptions,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("url", &self.display)
            .finish()
    }
}

impl std::fmt::Display for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

fn invalid_url(url: &str, why: impl std::fmt::Display) -> StateError {
    StateError::new(
        StateErrorKind::InvalidUrl,
        "open",
        None,
        format!("state store URL {url:?}: {why}"),
    )
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn valid_container(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

fn valid_segment(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Checks a run key: `[A-Za-z0-9._-]`, 1–128 characters, not `.` or `..`.
pub fn validate_run_key(run_key: &str) -> Result<(), StateError> {
    if valid_segment(run_key, 128) {
        Ok(())
    } else {
        Err(StateError::new(
            StateErrorKind::InvalidRunKey,
            "validate",
            None,
            format!(
                "run key {run_key:?} is invalid: use 1-128 characters of [A-Za-z0-9._-] \
                 (not \".\" or \"..\")"
            ),
        ))
    }
}

fn validate_name(op: &'static str, what: &str, name: &str) -> Result<(), StateError> {
    if valid_segment(name, 128) {
        Ok(())
    } else {
        Err(StateError::new(
            StateErrorKind::InvalidInput,
            op,
            None,
            format!(
                "{what} {name:?} is invalid: use 1-128 characters of [A-Za-z0-9._-] \
                 (not \".\" or \"..\")"
            ),
        ))
    }
}

fn validate_step(op: &'static str, step: &str) -> Result<(), StateError> {
    validate_name(op, "step name", step)?;
    if step == SNAPSHOT_STEM {
        return Err(StateError::new(
            StateErrorKind::InvalidInput,
            op,
            None,
            "step name \"intent\" is reserved for the run's intent snapshot",
        ));
    }
    Ok(())
}

fn snapshot_path(run_key: &str) -> String {
    format!("runs/{run_key}/{SNAPSHOT_STEM}.json")
}

fn record_path(run_key: &str, step: &str) -> String {
    format!("runs/{run_key}/{step}.json")
}

fn parse_time(
    op: &'static str,
    path: &str,
    field: &str,
    v: &str,
) -> Result<OffsetDateTime, StateError> {
    OffsetDateTime::parse(v, &Rfc3339).map_err(|e| {
        StateError::new(
            StateErrorKind::InvalidInput,
            op,
            Some(path),
            format!("{field} {v:?} is not an RFC 3339 time: {e}"),
        )
    })
}

impl StateStore {
    /// Opens the store at `url` (see the module docs), with [`StoreOptions::from_env`].
    ///
    /// Nothing is read or written yet: a missing container or wrong credential shows up on the
    /// first operation. `credential` is used for `https` blob URLs without a SAS.
    pub async fn open(
        url: &str,
        credential: Option<Arc<dyn TokenCredential>>,
    ) -> Result<StateStore, StateError> {
        Self::open_with(url, credential, StoreOptions::from_env()).await
    }

    /// [`StateStore::open`] with explicit options.
    pub async fn open_with(
        url: &str,
        credential: Option<Arc<dyn TokenCredential>>,
        options: StoreOptions,
    ) -> Result<StateStore, StateError> {
        let shown = redact_secrets(url);
        let parsed = Url::parse(url).map_err(|e| invalid_url(&shown, e))?;
        if parsed.fragment().is_some() {
            return Err(invalid_url(&shown, "a fragment (#...) is not allowed"));
        }
        match parsed.scheme() {
            "file" => {
                if parsed.query().is_some() {
                    return Err(invalid_url(&shown, "a file URL takes no query string"));
                }
                if !matches!(parsed.host_str(), None | Some("") | Some("localhost")) {
                    return Err(invalid_url(
                        &shown,
                        "only local paths (file:///abs/path) are supported",
                    ));
                }
                let root = parsed
                    .to_file_path()
                    .map_err(|()| invalid_url(&shown, "not an absolute local path"))?;
                tracing::debug!(root = %root.display(), "state store: local folder");
                Ok(StateStore {
                    display: format!("file://{}", root.display()),
                    backend: Backend::File(file::FileBackend::new(root)),
                    options,
                })
            }
            "http" | "https" => Self::open_blob(parsed, &shown, credential, options),
            other => Err(invalid_url(
                &shown,
                format!(
                    "scheme {other:?} is not supported (use file, https, or http for loopback)"
                ),
            )),
        }
    }

    fn open_blob(
        mut parsed: Url,
        shown: &str,
        credential: Option<Arc<dyn TokenCredential>>,
        options: StoreOptions,
    ) -> Result<StateStore, StateError> {
        let loopback = is_loopback(&parsed);
        if parsed.scheme() == "http" && !loopback {
            return Err(invalid_url(
                shown,
                "plain http is only allowed for a loopback emulator (Azurite); use https",
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid_url(
                shown,
                "credentials in the URL are not supported",
            ));
        }
        let segments: Vec<String> = parsed
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        let want = if loopback { 2 } else { 1 };
        if segments.len() != want {
            let shape = if loopback {
                "http://127.0.0.1:PORT/ACCOUNT/CONTAINER?SAS"
            } else {
                "https://ACCOUNT.blob.core.windows.net/CONTAINER"
            };
            return Err(invalid_url(shown, format!("expected {shape}")));
        }
        let container = &segments[want - 1];
        if !valid_container(container) {
            return Err(invalid_url(
                shown,
                format!(
                    "{container:?} is not a valid container name (3-63 of a-z, 0-9, single '-')"
                ),
            ));
        }
        let path = format!("/{}", segments.join("/"));
        parsed.set_path(&path);
        let has_sas = parsed.query_pairs().any(|(k, _)| k == "sig");
        let credential = if has_sas {
            if credential.is_some() {
                tracing::debug!("state store URL has a SAS; not using the token credential");
            }
            None
        } else if credential.is_none() {
            return Err(invalid_url(
                shown,
                "Azure Blob needs a SAS query string in the URL or a token credential",
            ));
        } else {
            if parsed.scheme() != "https" {
                return Err(invalid_url(shown, "a token credential requires https"));
            }
            credential
        };
        let version = options
            .blob_api_version
            .clone()
            .or_else(|| loopback.then(|| AZURITE_API_VERSION.to_owned()));
        let mut client_options = BlobContainerClientOptions::default();
        if let Some(v) = version {
            client_options.version = v;
        }
        client_options.client_options.retry = RetryOptions::exponential(ExponentialRetryOptions {
            max_total_elapsed: azure_core::time::Duration::try_from(options.retry_max_elapsed)
                .unwrap_or(azure_core::time::Duration::seconds(60)),
            ..ExponentialRetryOptions::default()
        });
        client_options.client_options.transport = options.transport.clone();
        let api_version = client_options.version.clone();
        let shown_url = redact_secrets(parsed.as_str());
        let client = BlobContainerClient::new(parsed, credential, Some(client_options))
            .map_err(|e| invalid_url(shown, redact_secrets(&e.to_string())))?;
        tracing::debug!(url = %shown_url, api_version = %api_version, "state store: Azure Blob");
        Ok(StateStore {
            backend: Backend::Blob(blob::BlobBackend::new(client)),
            display: shown_url,
            options,
        })
    }

    /// Writes the intent snapshot of `run_key` if none exists (`If-None-Match: *`).
    ///
    /// `canonical_json` must be one JSON value without surrounding whitespace; it is stored and
    /// returned byte for byte. If a snapshot exists already, returns its verified bytes (the
    /// FIRST snapshot wins; the caller must continue with those).
    pub async fn put_snapshot(
        &self,
        run_key: &str,
        canonical_json: &[u8],
    ) -> Result<SnapshotOutcome, StateError> {
        const OP: &str = "put_snapshot";
        validate_run_key(run_key)?;
        let path = snapshot_path(run_key);
        let sealed = envelope::seal(
            OP,
            &path,
            DocKind::IntentSnapshot,
            run_key,
            None,
            canonical_json,
        )?;
        match self.backend.create(OP, &path, sealed).await? {
            CreateOutcome::Created(_) => {
                tracing::info!(run_key, path = %path, digest = %sha256_hex(canonical_json), "intent snapshot written");
                Ok(SnapshotOutcome::Created)
            }
            CreateOutcome::Exists => {
                let bytes = self.get_snapshot_as(OP, run_key).await?.ok_or_else(|| {
                    StateError::new(
                        StateErrorKind::Conflict,
                        OP,
                        Some(&path),
                        "the snapshot existed at write time but was deleted right after",
                    )
                })?;
                tracing::info!(run_key, path = %path, "intent snapshot already present; using it");
                Ok(SnapshotOutcome::AlreadyPresent { bytes })
            }
        }
    }

    /// Reads and verifies the intent snapshot of `run_key`.
    pub async fn get_snapshot(&self, run_key: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.get_snapshot_as("get_snapshot", run_key).await
    }

    async fn get_snapshot_as(
        &self,
        op: &'static str,
        run_key: &str,
    ) -> Result<Option<Vec<u8>>, StateError> {
        validate_run_key(run_key)?;
        let path = snapshot_path(run_key);
        match self.backend.read(op, &path).await? {
            None => Ok(None),
            Some(v) => envelope::open(op, &path, &v.bytes, DocKind::IntentSnapshot, run_key, None)
                .map(Some),
        }
    }

    /// Writes the step record: creates it, or replaces this run's previous record of the same
    /// step (a re-run) with `If-Match` on the ETag just read. Call this LAST (see the module
    /// docs). A writer that races another gets `Conflict`.
    pub async fn put_record(&self, record: &StepRecord) -> Result<(), StateError> {
        const OP: &str = "put_record";
        validate_run_key(&record.run_key)?;
        validate_step(OP, &record.step)?;
        let path = record_path(&record.run_key, &record.step);
        let current = self.backend.read(OP, &path).await?.map(|v| ETag(v.etag));
        self.put_record_as(OP, record, current.as_ref())
            .await
            .map(|_| ())
    }

    /// Conditional write of a step record: `expected = None` creates it (fails with `Conflict`
    /// if it exists), `Some(etag)` replaces the version read with
    /// [`StateStore::get_record_versioned`] (fails with `Conflict` if it changed since).
    pub async fn put_record_if(
        &self,
        record: &StepRecord,
        expected: Option<&ETag>,
    ) -> Result<ETag, StateError> {
        self.put_record_as("put_record", record, expected).await
    }

    async fn put_record_as(
        &self,
        op: &'static str,
        record: &StepRecord,
        expected: Option<&ETag>,
    ) -> Result<ETag, StateError> {
        validate_run_key(&record.run_key)?;
        validate_step(op, &record.step)?;
        let path = record_path(&record.run_key, &record.step);
        let started = parse_time(op, &path, "started_at", &record.started_at)?;
        let ended = parse_time(op, &path, "ended_at", &record.ended_at)?;
        if ended < started {
            return Err(StateError::new(
                StateErrorKind::InvalidInput,
                op,
                Some(&path),
                format!(
                    "ended_at {} is before started_at {}; records are written when the step has \
                     finished",
                    record.ended_at, record.started_at
                ),
            ));
        }
        let content = serde_json::to_vec(record).map_err(|e| {
            StateError::new(
                StateErrorKind::InvalidInput,
                op,
                Some(&path),
                format!("cannot serialize record: {e}"),
            )
        })?;
        let sealed = envelope::seal(
            op,
            &path,
            DocKind::StepRecord,
            &record.run_key,
            Some(&record.step),
            &content,
        )?;
        let etag = match expected {
            None => match self.backend.create(op, &path, sealed).await? {
                CreateOutcome::Created(etag) => etag,
                CreateOutcome::Exists => {
                    return Err(StateError::new(
                        StateErrorKind::Conflict,
                        op,
                        Some(&path),
                        "another writer created this record concurrently",
                    ));
                }
            },
            Some(etag) => {
                self.backend
                    .replace(op, &path, sealed, etag.as_str())
                    .await?
            }
        };
        tracing::info!(run_key = %record.run_key, step = %record.step, status = ?record.status, path = %path, "step record written");
        Ok(ETag(etag))
    }

    /// Reads and verifies the record of `step` in `run_key`.
    pub async fn get_record(
        &self,
        run_key: &str,
        step: &str,
    ) -> Result<Option<StepRecord>, StateError> {
        Ok(self
            .get_record_as("get_record", run_key, step)
            .await?
            .map(|(r, _)| r))
    }

    /// [`StateStore::get_record`] plus the version, for [`StateStore::put_record_if`].
    pub async fn get_record_versioned(
        &self,
        run_key: &str,
        step: &str,
    ) -> Result<Option<(StepRecord, ETag)>, StateError> {
        self.get_record_as("get_record", run_key, step).await
    }

    async fn get_record_as(
        &self,
        op: &'static str,
        run_key: &str,
        step: &str,
    ) -> Result<Option<(StepRecord, ETag)>, StateError> {
        validate_run_key(run_key)?;
        validate_step(op, step)?;
        let path = record_path(run_key, step);
        let Some(v) = self.backend.read(op, &path).await? else {
            return Ok(None);
        };
        let content = envelope::open(
            op,
            &path,
            &v.bytes,
            DocKind::StepRecord,
            run_key,
            Some(step),
        )?;
        let record: StepRecord = serde_json::from_slice(&content).map_err(|e| {
            StateError::new(
                StateErrorKind::Service,
                op,
                Some(&path),
                format!("record content does not match the step record schema: {e}"),
            )
        })?;
        if record.run_key != run_key || record.step != step {
            return Err(StateError::new(
                StateErrorKind::WrongRecord,
                op,
                Some(&path),
                format!(
                    "record content is for run key {:?} step {:?}, not run key {run_key:?} step \
                     {step:?}",
                    record.run_key, record.step
                ),
            ));
        }
        Ok(Some((record, ETag(v.etag))))
    }

    /// The steps that have a record in `run_key`, sorted.
    pub async fn list_records(&self, run_key: &str) -> Result<Vec<String>, StateError> {
        const OP: &str = "list_records";
        validate_run_key(run_key)?;
        let mut steps: Vec<String> = self
            .backend
            .list_dir(OP, &format!("runs/{run_key}"))
            .await?
            .into_iter()
            .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
            .filter(|s| s != SNAPSHOT_STEM && valid_segment(s, 128) && !s.starts_with('.'))
            .collect();
        steps.sort();
        steps.dedup();
        Ok(steps)
    }

    /// Breaks the lock `name` if its holder description contains `marker` (the onExit handler
    /// passes ` run <run-key> `: every step of that run has ended, so a lease still held under
    /// it was left by a killed step). Returns the holder whose lease was broken.
    pub async fn break_lock_held_by(
        &self,
        name: &str,
        marker: &str,
    ) -> Result<Option<String>, StateError> {
        validate_name("break_lock", "lock name", name)?;
        lock::break_if_held_by(&self.backend, name, marker).await
    }

    /// Acquires the lock `name` (the network manager), waiting up to `wait` for another holder
    /// to release it or for its lease to expire. `holder` describes this process for waiters
    /// (e.g. `"mesh-connect run <key> pod <pod>"`). `ttl` is the lease duration (blob: clamped to
    /// 15–60 s); the guard renews it every ttl/3 until released.
    ///
    /// Fails with the transient `LockHeld` ("lease on network X held by H since T") when the
    /// wait runs out.
    pub async fn acquire_lock(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<LockGuard, StateError> {
        validate_name("acquire_lock", "lock name", name)?;
        if ttl.is_zero() {
            return Err(StateError::new(
                StateErrorKind::InvalidInput,
                "acquire_lock",
                None,
                "lock ttl must be positive",
            ));
        }
        lock::acquire(
            &self.backend,
            name,
            holder,
            ttl,
            wait,
            self.options.lock_poll_interval,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn url_validation() {
        let bad = [
            "ftp://x/y",
            "http://example.com/devstoreaccount1/c1?sig=x",
            "https://acct.blob.core.windows.net/",
            "https://acct.blob.core.windows.net/Bad_Name?sig=x",
            "https://acct.blob.core.windows.net/cont/extra?sig=x",
            "https://acct.blob.core.windows.net/cont",
            "http://127.0.0.1:1/devstoreaccount1?sig=x",
            "file://remotehost/x",
            "not a url",
        ];
        for u in bad {
            let e = StateStore::open(u, None).await.unwrap_err();
            assert_eq!(e.kind(), StateErrorKind::InvalidUrl, "{u}: {e}");
            assert!(e.is_invalid_input());
        }
        let e = StateStore::open(
            "https://acct.blob.core.windows.net/Bad?sv=1&sig=TOPSECRET",
            None,
        )
        .await
        .unwrap_err();
        assert!(!e.to_string().contains("TOPSECRET"), "{e}");
        assert!(e.to_string().contains("sig=REDACTED"), "{e}");

        let s = StateStore::open(
            "http://127.0.0.1:10000/devstoreaccount1/state?sv=1&sig=SECRET",
            None,
        )
        .await
        .unwrap();
        assert!(!format!("{s} {s:?}").contains("SECRET"));
        StateStore::open("file:///tmp/netstep-state", None)
            .await
            .unwrap();
    }

    #[test]
    fn run_keys() {
        for ok in ["a", "3f2a9c-main", "A.b_c-1", &"x".repeat(128)] {
            validate_run_key(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a b", "ä", &"x".repeat(129)] {
            let e = validate_run_key(bad).unwrap_err();
            assert_eq!(e.kind(), StateErrorKind::InvalidRunKey);
            assert!(e.is_invalid_input());
        }
    }
}
