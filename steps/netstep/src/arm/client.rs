//! [`ArmClient`]: requests, retries, throttling, long-running operations and paging.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use super::api_version;
use super::credential::{Credential, is_loopback, scope_for};
use super::error::{ArmError, ArmErrorKind, parse_error_body};
use super::record::{Exchange, Recorder};
use super::retry::{Class, Jitter, RandomJitter, RetryPolicy, classify, server_delay};
use super::throttle::{OpClass, Throttle, ThrottleConfig};

/// How long-running operations are waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LroConfig {
    /// Poll delay when the service gives no `Retry-After` (AVNM's commit gives none).
    pub default_delay: Duration,
    /// Lower bound of a poll delay (a `Retry-After: 0` never makes a busy loop).
    pub min_delay: Duration,
    /// Upper bound of a poll delay.
    pub max_delay: Duration,
    /// Overall wait for one operation; past it the call fails with a timeout.
    pub max_wait: Duration,
    /// Progress is logged at info at most this often.
    pub progress_every: Duration,
}

impl Default for LroConfig {
    fn default() -> Self {
        LroConfig {
            default_delay: Duration::from_secs(5),
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_wait: Duration::from_secs(30 * 60),
            progress_every: Duration::from_secs(30),
        }
    }
}

/// Requests sent by one client, by kind. Every attempt on the wire counts once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// GET requests (not counting LRO polls).
    pub reads: u64,
    /// PUT, PATCH and POST requests.
    pub writes: u64,
    /// DELETE requests.
    pub deletes: u64,
    /// Long-running-operation polls.
    pub polls: u64,
    /// Attempts that were retries of an earlier one.
    pub retries: u64,
    /// 429 responses seen.
    pub throttled: u64,
}

#[derive(Debug, Default)]
struct AtomicCounters {
    reads: AtomicU64,
    writes: AtomicU64,
    deletes: AtomicU64,
    polls: AtomicU64,
    retries: AtomicU64,
    throttled: AtomicU64,
}

impl AtomicCounters {
    fn snapshot(&self) -> Counters {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counters {
            reads: l(&self.reads),
            writes: l(&self.writes),
            deletes: l(&self.deletes),
            polls: l(&self.polls),
            retries: l(&self.retries),
            throttled: l(&self.throttled),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Options of a GET, a list or a POST list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// api-version instead of [`api_version::for_resource`].
    pub api_version: Option<String>,
}

/// Options of a PUT or PATCH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOptions {
    /// `If-Match` (an ETag, or `*`).
    pub if_match: Option<String>,
    /// `If-None-Match` (`*`: create only).
    pub if_none_match: Option<String>,
    /// Wait for the long-running operation and return the final resource (default true).
    /// When false, the first response body is returned as is (`null` when empty).
    pub wait: bool,
    /// api-version instead of [`api_version::for_resource`].
    pub api_version: Option<String>,
}

impl Default for PutOptions {
    fn default() -> Self {
        PutOptions {
            if_match: None,
            if_none_match: None,
            wait: true,
            api_version: None,
        }
    }
}

/// Options of a DELETE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Wait until the resource is gone (default true).
    pub wait: bool,
    /// api-version instead of [`api_version::for_resource`].
    pub api_version: Option<String>,
}

impl Default for DeleteOptions {
    fn default() -> Self {
        DeleteOptions {
            wait: true,
            api_version: None,
        }
    }
}

/// Options of a POST action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostOptions {
    /// Whether resending the POST after a lost response or a 5xx is harmless. Default false:
    /// only provably-unprocessed attempts are retried (see the module docs).
    pub idempotent: bool,
    /// Wait for a 202 + `Location`/`Azure-AsyncOperation` operation (default true).
    pub wait: bool,
    /// api-version instead of [`api_version::for_resource`].
    pub api_version: Option<String>,
}

impl Default for PostOptions {
    fn default() -> Self {
        PostOptions {
            idempotent: false,
            wait: true,
            api_version: None,
        }
    }
}

/// Builds an [`ArmClient`].
#[derive(Debug)]
pub struct ClientBuilder {
    endpoint: String,
    credential: Option<Credential>,
    scope: Option<String>,
    retry: RetryPolicy,
    throttle: ThrottleConfig,
    lro: LroConfig,
    user_agent: String,
    record_dir: Option<PathBuf>,
    jitter: Option<Arc<dyn Jitter>>,
    http: Option<reqwest::Client>,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            endpoint: crate::step::DEFAULT_ARM_ENDPOINT.to_string(),
            credential: None,
            scope: None,
            retry: RetryPolicy::default(),
            throttle: ThrottleConfig::default(),
            lro: LroConfig::default(),
            user_agent: format!("netstep/{}", env!("CARGO_PKG_VERSION")),
            record_dir: None,
            jitter: None,
            http: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
        }
    }
}

impl ClientBuilder {
    /// Defaults: public cloud, ARM's throttle limits, [`RetryPolicy::default`],
    /// [`LroConfig::default`], connect timeout 10 s, request timeout 60 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// The ARM endpoint: `https://management.azure.com` (default), a sovereign cloud, or a
    /// loopback simulator `http://127.0.0.1:PORT`. Plain http is accepted only for loopback.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = url.into();
        self
    }

    /// The credential (required).
    pub fn credential(mut self, credential: Credential) -> Self {
        self.credential = Some(credential);
        self
    }

    /// The token scope instead of the one derived from the endpoint (`https://{host}/.default`).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Retry limits.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Client-side token buckets.
    pub fn throttle(mut self, config: ThrottleConfig) -> Self {
        self.throttle = config;
        self
    }

    /// Long-running operation waiting.
    pub fn lro(mut self, config: LroConfig) -> Self {
        self.lro = config;
        self
    }

    /// Poll delay of long-running operations that give no `Retry-After`.
    pub fn lro_default_delay(mut self, delay: Duration) -> Self {
        self.lro.default_delay = delay;
        self
    }

    /// Overall wait of one long-running operation.
    pub fn lro_max_wait(mut self, max_wait: Duration) -> Self {
        self.lro.max_wait = max_wait;
        self
    }

    /// The `User-Agent` (default `netstep/<version>`).
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }

    /// Records every request/response pair (LRO polls included) into `dir` in oav format.
    pub fn record_traffic(mut self, dir: impl Into<PathBuf>) -> Self {
        self.record_dir = Some(dir.into());
        self
    }

    /// The jitter source of backoff delays (default: a PRNG seeded by the OS).
    pub fn jitter(mut self, jitter: Arc<dyn Jitter>) -> Self {
        self.jitter = Some(jitter);
        self
    }

    /// Deterministic jitter from a seed.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter = Some(Arc::new(RandomJitter::seeded(seed)));
        self
    }

    /// Connect and whole-request timeouts of the default HTTP client.
    pub fn timeouts(mut self, connect: Duration, request: Duration) -> Self {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }

    /// Uses this HTTP client instead of building one (its timeouts and user agent are the
    /// caller's; the `User-Agent` header is still set per request). Paused-time tests pass a
    /// client without timers here.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<ArmClient, ArmError> {
        let cfg = |msg: String| ArmError::new(ArmErrorKind::Config, "configure", "", msg);
        let endpoint = Url::parse(self.endpoint.trim())
            .map_err(|e| cfg(format!("ARM endpoint {:?}: {e}", self.endpoint)))?;
        let host = endpoint.host_str().unwrap_or("").to_string();
        match endpoint.scheme() {
            "https" => {}
            "http" if is_loopback(&host) => {}
            "http" => {
                return Err(cfg(format!(
                    "ARM endpoint {endpoint}: plain http is only allowed for a loopback simulator \
                     (tokens would travel in clear text)"
                )));
            }
            s => {
                return Err(cfg(format!(
                    "ARM endpoint {endpoint}: unsupported scheme {s}"
                )));
            }
        }
        if host.is_empty() {
            return Err(cfg(format!("ARM endpoint {endpoint}: no host")));
        }
        if endpoint.path() != "/" || endpoint.query().is_some() {
            return Err(cfg(format!(
                "ARM endpoint {endpoint}: give the origin only (scheme, host, port)"
            )));
        }
        let credential = self
            .credential
            .ok_or_else(|| cfg("no ARM credential configured".into()))?;
        let scope = self.scope.unwrap_or_else(|| scope_for(&endpoint));
        let origin = endpoint.origin().ascii_serialization();
        let http = match self.http {
            Some(h) => h,
            None => reqwest::Client::builder()
                .connect_timeout(self.connect_timeout)
                .timeout(self.request_timeout)
                .user_agent(self.user_agent.clone())
                // ARM never redirects; never forward a token anywhere.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| cfg(format!("cannot build the HTTP client: {e}")).with_source(e))?,
        };
        let recorder = match self.record_dir {
            Some(dir) => Some(Recorder::new(&dir, &origin).map_err(|e| {
                cfg(format!(
                    "traffic recording directory {}: {e}",
                    dir.display()
                ))
            })?),
            None => None,
        };
        let user_agent = HeaderValue::from_str(&self.user_agent)
            .map_err(|e| cfg(format!("user agent {:?}: {e}", self.user_agent)))?;
        Ok(ArmClient {
            inner: Arc::new(Inner {
                http,
                endpoint,
                origin,
                credential,
                scope,
                retry: self.retry,
                jitter: self
                    .jitter
                    .unwrap_or_else(|| Arc::new(RandomJitter::from_os())),
                throttle: Throttle::new(self.throttle),
                lro: self.lro,
                user_agent,
                recorder,
                counters: AtomicCounters::default(),
                gate: std::sync::RwLock::new(None),
            }),
        })
    }
}

/// The ARM client. Cheap to clone (shared state behind an `Arc`); `Send + Sync`.
#[derive(Debug, Clone)]
pub struct ArmClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    endpoint: Url,
    origin: String,
    credential: Credential,
    scope: String,
    retry: RetryPolicy,
    jitter: Arc<dyn Jitter>,
    throttle: Throttle,
    lro: LroConfig,
    user_agent: HeaderValue,
    recorder: Option<Recorder>,
    counters: AtomicCounters,
    gate: std::sync::RwLock<Option<WriteGate>>,
}

/// A check run before every attempt of a mutating request (PUT, PATCH, DELETE, action POST):
/// `Some(reason)` stops the request before it is sent. The step context installs one that
/// reports a lost or expired network lease, so a step that lost its lease (another run may now
/// hold it) never writes again; the error is a [`ArmErrorKind::Conflict`] (exit 75: the rerun
/// queues for the lease and re-reads).
#[derive(Clone)]
pub struct WriteGate(Arc<dyn Fn() -> Option<String> + Send + Sync>);

impl WriteGate {
    /// A gate from a closure returning why writing must stop, if it must.
    pub fn new(f: impl Fn() -> Option<String> + Send + Sync + 'static) -> Self {
        WriteGate(Arc::new(f))
    }
    /// Why writing must stop now, if it must.
    pub fn problem(&self) -> Option<String> {
        (self.0)()
    }
}

impl std::fmt::Debug for WriteGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteGate")
    }
}

/// One logical request (retried as a whole).
struct Req<'a> {
    method: Method,
    url: Url,
    /// The resource id or path, for errors and logs.
    resource: &'a str,
    body: Option<Vec<u8>>,
    headers: Vec<(HeaderName, HeaderValue)>,
    idempotent: bool,
    poll: bool,
    /// Mutates Azure: checked against the write gate before every attempt.
    mutates: bool,
}

/// A response with its body read.
#[derive(Debug)]
struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: bytes::Bytes,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    /// The body as JSON; `None` when empty.
    fn json(&self, method: &str, resource: &str) -> Result<Option<Value>, ArmError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&self.body).map(Some).map_err(|e| {
            ArmError::new(
                ArmErrorKind::InvalidResponse,
                method,
                resource,
                format!("response body is not JSON: {e}"),
            )
            .with_status(Some(self.status.as_u16()))
            .with_source(e)
        })
    }
}

enum LroKind {
    Put,
    Patch,
    Delete,
    Post,
}

impl LroKind {
    fn method(&self) -> &'static str {
        match self {
            LroKind::Put => "PUT",
            LroKind::Patch => "PATCH",
            LroKind::Delete => "DELETE",
            LroKind::Post => "POST",
        }
    }
}

/// State of one long-running-operation wait.
struct Waiter<'a> {
    method: &'static str,
    resource: &'a str,
    started: Instant,
    polls: u32,
    last_progress: Instant,
}

fn strip_query(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

fn terminal_state(state: &str) -> Option<bool> {
    match state.to_ascii_lowercase().as_str() {
        "succeeded" => Some(true),
        "failed" | "canceled" | "cancelled" => Some(false),
        _ => None,
    }
}

fn provisioning_state(v: &Value) -> Option<&str> {
    v.get("properties")
        .and_then(|p| p.get("provisioningState"))
        .and_then(Value::as_str)
}

impl ArmClient {
    /// A builder with defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// The endpoint origin (`https://management.azure.com`).
    pub fn endpoint(&self) -> &str {
        &self.inner.origin
    }

    /// The token scope in use.
    pub fn scope(&self) -> &str {
        &self.inner.scope
    }

    /// Installs (or with `None` removes) the [`WriteGate`] checked before every mutating
    /// request of this client and all its clones.
    pub fn set_write_gate(&self, gate: Option<WriteGate>) {
        if let Ok(mut g) = self.inner.gate.write() {
            *g = gate;
        }
    }

    fn gate_problem(&self) -> Option<String> {
        let gate = self.inner.gate.read().ok()?.clone()?;
        gate.problem()
    }

    /// Requests sent so far by this client and its clones.
    pub fn counters(&self) -> Counters {
        self.inner.counters.snapshot()
    }

    /// GET a resource. `Ok(None)` on 404 (whether ARM's `ResourceNotFound` or the resource
    /// provider's `NotFound`).
    pub async fn get(&self, id: &str) -> Result<Option<Value>, ArmError> {
        self.get_with(id, &ReadOptions::default()).await
    }

    /// [`ArmClient::get`] with options.
    pub async fn get_with(&self, id: &str, opts: &ReadOptions) -> Result<Option<Value>, ArmError> {
        let url = self.url_for(id, opts.api_version.as_deref())?;
        let resource = strip_query(id);
        match self.send(self.req(Method::GET, url, resource, None)).await {
            Ok(r) => r.json("GET", resource),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// GET a collection, following `nextLink` to the end; returns every `value` item.
    pub async fn list(&self, path: &str) -> Result<Vec<Value>, ArmError> {
        self.list_with(path, &ReadOptions::default()).await
    }

    /// [`ArmClient::list`] with options.
    pub async fn list_with(&self, path: &str, opts: &ReadOptions) -> Result<Vec<Value>, ArmError> {
        let resource = strip_query(path);
        let mut url = self.url_for(path, opts.api_version.as_deref())?;
        let mut items = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            let r = self
                .send(self.req(Method::GET, url.clone(), resource, None))
                .await?;
            let page = r.json("GET", resource)?.unwrap_or(Value::Null);
            items.extend(Self::page_values("GET", resource, &page)?);
            match page.get("nextLink").and_then(Value::as_str) {
                Some(next) if !next.trim().is_empty() => {
                    if !seen.insert(next.to_string()) {
                        return Err(ArmError::new(
                            ArmErrorKind::InvalidResponse,
                            "GET",
                            resource,
                            format!("nextLink repeats: {next}"),
                        ));
                    }
                    url = self.rebase(next, "GET", resource)?;
                    self.ensure_api_version(&mut url, opts.api_version.as_deref(), resource);
                }
                _ => return Ok(items),
            }
        }
    }

    /// PUT a resource and wait for it (LRO, provisioning state); returns the final resource.
    pub async fn put(&self, id: &str, body: &Value) -> Result<Value, ArmError> {
        self.put_with(id, body, &PutOptions::default()).await
    }

    /// [`ArmClient::put`] with `If-Match`/`If-None-Match`, no-wait or an api-version.
    pub async fn put_with(
        &self,
        id: &str,
        body: &Value,
        opts: &PutOptions,
    ) -> Result<Value, ArmError> {
        self.write(Method::PUT, LroKind::Put, id, body, opts).await
    }

    /// PATCH a resource and wait for it; returns the final resource.
    pub async fn patch(&self, id: &str, body: &Value) -> Result<Value, ArmError> {
        self.patch_with(id, body, &PutOptions::default()).await
    }

    /// [`ArmClient::patch`] with options.
    pub async fn patch_with(
        &self,
        id: &str,
        body: &Value,
        opts: &PutOptions,
    ) -> Result<Value, ArmError> {
        self.write(Method::PATCH, LroKind::Patch, id, body, opts)
            .await
    }

    /// DELETE a resource and wait until it is gone. A 404 is success (already gone). Query
    /// parameters in `id` (`?force=true`) are kept.
    pub async fn delete(&self, id: &str) -> Result<(), ArmError> {
        self.delete_with(id, &DeleteOptions::default()).await
    }

    /// [`ArmClient::delete`] with options.
    pub async fn delete_with(&self, id: &str, opts: &DeleteOptions) -> Result<(), ArmError> {
        let url = self.url_for(id, opts.api_version.as_deref())?;
        let resource = strip_query(id);
        let r = match self
            .send(self.req(Method::DELETE, url, resource, None))
            .await
        {
            Ok(r) => r,
            Err(e) if e.status() == Some(404) => return Ok(()),
            Err(e) => return Err(e),
        };
        if opts.wait {
            let api = self.api_for(id, opts.api_version.as_deref());
            self.finish(LroKind::Delete, resource, api, r).await?;
        }
        Ok(())
    }

    /// POST an action (`commit`), waiting for a 202 + `Location` (or `Azure-AsyncOperation`)
    /// operation. Returns the final body, `None` when empty (204). Not retried after a sent
    /// request whose outcome is unknown; see the module docs.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Option<Value>, ArmError> {
        self.post_with(path, body, &PostOptions::default()).await
    }

    /// [`ArmClient::post`] with options.
    pub async fn post_with(
        &self,
        path: &str,
        body: &Value,
        opts: &PostOptions,
    ) -> Result<Option<Value>, ArmError> {
        let url = self.url_for(path, opts.api_version.as_deref())?;
        let resource = strip_query(path);
        let mut req = self.req(Method::POST, url, resource, Some(Self::encode(body)));
        req.idempotent = opts.idempotent;
        let r = self.send(req).await?;
        if !opts.wait {
            return r.json("POST", resource);
        }
        let api = self.api_for(path, opts.api_version.as_deref());
        self.finish(LroKind::Post, resource, api, r).await
    }

    /// POST a `list*` action (`listDeploymentStatus`, `listActive*`,
    /// `listNetworkManagerEffective*`), re-posting with the returned `skipToken` until it is
    /// empty; returns every `value` item. These only read, so they are retried like GETs (but
    /// ARM charges them to the writes budget, and so does the client-side throttle).
    pub async fn post_list(&self, path: &str, body: &Value) -> Result<Vec<Value>, ArmError> {
        self.post_list_with(path, body, &ReadOptions::default())
            .await
    }

    /// [`ArmClient::post_list`] with options.
    pub async fn post_list_with(
        &self,
        path: &str,
        body: &Value,
        opts: &ReadOptions,
    ) -> Result<Vec<Value>, ArmError> {
        let resource = strip_query(path);
        let url = self.url_for(path, opts.api_version.as_deref())?;
        let mut body = match body {
            Value::Object(_) => body.clone(),
            Value::Null => Value::Object(Default::default()),
            _ => {
                return Err(ArmError::new(
                    ArmErrorKind::Config,
                    "POST",
                    resource,
                    "a list action body must be a JSON object",
                ));
            }
        };
        let mut items = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            let mut req = self.req(
                Method::POST,
                url.clone(),
                resource,
                Some(Self::encode(&body)),
            );
            // List actions only read: resending them is harmless.
            req.idempotent = true;
            req.mutates = false;
            let r = self.send(req).await?;
            let page = r.json("POST", resource)?.unwrap_or(Value::Null);
            items.extend(Self::page_values("POST", resource, &page)?);
            match page.get("skipToken").and_then(Value::as_str) {
                Some(tok) if !tok.is_empty() => {
                    if !seen.insert(tok.to_string()) {
                        return Err(ArmError::new(
                            ArmErrorKind::InvalidResponse,
                            "POST",
                            resource,
                            format!("skipToken repeats: {tok}"),
                        ));
                    }
                    body["skipToken"] = Value::String(tok.to_string());
                }
                _ => return Ok(items),
            }
        }
    }

    // ----- internals -----

    fn encode(body: &Value) -> Vec<u8> {
        // Serializing a Value cannot fail (keys are strings).
        serde_json::to_vec(body).unwrap_or_default()
    }

    fn page_values(method: &str, resource: &str, page: &Value) -> Result<Vec<Value>, ArmError> {
        if !(page.is_object() || page.is_null()) {
            return Err(ArmError::new(
                ArmErrorKind::InvalidResponse,
                method,
                resource,
                "list response is not a JSON object",
            ));
        }
        match page.get("value") {
            Some(Value::Array(v)) => Ok(v.clone()),
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(_) => Err(ArmError::new(
                ArmErrorKind::InvalidResponse,
                method,
                resource,
                "list response `value` is not an array",
            )),
        }
    }

    fn api_for<'a>(&self, path: &str, overridden: Option<&'a str>) -> &'a str {
        overridden.unwrap_or_else(|| api_version::for_resource(path))
    }

    /// `endpoint + path`, with `api-version` appended unless the path already has one.
    fn url_for(&self, path: &str, api: Option<&str>) -> Result<Url, ArmError> {
        if !path.starts_with('/') || path.starts_with("//") {
            return Err(ArmError::new(
                ArmErrorKind::Config,
                "request",
                path,
                "a resource id must start with a single '/' (/subscriptions/...)",
            ));
        }
        let mut url = self.inner.endpoint.join(path).map_err(|e| {
            ArmError::new(
                ArmErrorKind::Config,
                "request",
                path,
                format!("invalid resource path: {e}"),
            )
        })?;
        self.ensure_api_version(&mut url, api, path);
        Ok(url)
    }

    fn ensure_api_version(&self, url: &mut Url, api: Option<&str>, resource: &str) {
        if !url.query_pairs().any(|(k, _)| k == "api-version") {
            let v = api.unwrap_or_else(|| api_version::for_resource(resource));
            url.query_pairs_mut().append_pair("api-version", v);
        }
    }

    /// An absolute URL from the service (nextLink, Location, Azure-AsyncOperation) on our
    /// endpoint's origin. A different origin (a simulator answering with the public host) is
    /// rewritten to ours, so the bearer token never goes anywhere but the configured endpoint.
    fn rebase(&self, link: &str, method: &str, resource: &str) -> Result<Url, ArmError> {
        let mut url = Url::parse(link)
            .or_else(|_| self.inner.endpoint.join(link))
            .map_err(|e| {
                ArmError::new(
                    ArmErrorKind::InvalidResponse,
                    method,
                    resource,
                    format!("invalid URL {link:?} from the service: {e}"),
                )
            })?;
        if url.origin() != self.inner.endpoint.origin() {
            tracing::debug!(from = %url.origin().ascii_serialization(), to = %self.inner.origin, "rebasing a service URL on the endpoint");
            let ep = &self.inner.endpoint;
            let ok = url.set_scheme(ep.scheme()).is_ok()
                && url.set_host(ep.host_str()).is_ok()
                && url.set_port(ep.port()).is_ok();
            if !ok {
                return Err(ArmError::new(
                    ArmErrorKind::InvalidResponse,
                    method,
                    resource,
                    format!("cannot rebase URL {link:?} on {}", self.inner.origin),
                ));
            }
        }
        Ok(url)
    }

    fn req<'a>(
        &self,
        method: Method,
        url: Url,
        resource: &'a str,
        body: Option<Vec<u8>>,
    ) -> Req<'a> {
        // PUT, GET, PATCH and DELETE are idempotent in ARM; a POST action is not unless the
        // caller says so (post_list, PostOptions::idempotent).
        let idempotent = method != Method::POST;
        // GETs only read; a `list*` action POST clears this itself (post_list).
        let mutates = method != Method::GET;
        Req {
            method,
            url,
            resource,
            body,
            headers: Vec::new(),
            idempotent,
            poll: false,
            mutates,
        }
    }

    async fn bearer(&self, method: &str, resource: &str) -> Result<String, ArmError> {
        match &self.inner.credential {
            Credential::Static(s) => Ok(format!("Bearer {}", s.secret())),
            Credential::Azure(c) => {
                let tok = c
                    .get_token(&[self.inner.scope.as_str()], None)
                    .await
                    .map_err(|e| {
                        ArmError::new(
                            ArmErrorKind::Auth,
                            method,
                            resource,
                            format!("cannot get a token for {}: {e}", self.inner.scope),
                        )
                        .with_source(e)
                    })?;
                Ok(format!("Bearer {}", tok.token.secret()))
            }
        }
    }

    /// One attempt on the wire. `Err((error, sent))`: the transport failed; `sent` false when
    /// the connection was never made (the request provably did not reach the service).
    async fn attempt(
        &self,
        req: &Req<'_>,
    ) -> Result<Result<Resp, (reqwest::Error, bool)>, ArmError> {
        let method = req.method.as_str();
        let auth = self.bearer(method, req.resource).await?;
        let mut auth = HeaderValue::from_str(&auth).map_err(|_| {
            ArmError::new(
                ArmErrorKind::Auth,
                method,
                req.resource,
                "the token is not a valid header value",
            )
        })?;
        auth.set_sensitive(true);
        let mut b = self
            .inner
            .http
            .request(req.method.clone(), req.url.clone())
            .header(reqwest::header::AUTHORIZATION, auth)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::USER_AGENT, self.inner.user_agent.clone())
            .header(
                "x-ms-client-request-id",
                uuid::Uuid::new_v4().hyphenated().to_string(),
            );
        for (k, v) in &req.headers {
            b = b.header(k.clone(), v.clone());
        }
        if let Some(body) = &req.body {
            b = b
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let request = b.build().map_err(|e| {
            ArmError::new(ArmErrorKind::Config, method, req.resource, format!("{e}")).with_source(e)
        })?;
        let request_headers = self
            .inner
            .recorder
            .as_ref()
            .map(|_| request.headers().clone());
        let started = Instant::now();
        let resp = match self.inner.http.execute(request).await {
            Ok(r) => r,
            Err(e) => {
                let sent = !e.is_connect();
                return Ok(Err((e, sent)));
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Ok(Err((e, true))),
        };
        tracing::debug!(
            method,
            path = req.url.path(),
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "ARM request"
        );
        if let (Some(rec), Some(rh)) = (&self.inner.recorder, &request_headers) {
            rec.record(&Exchange {
                method,
                url: &req.url,
                request_headers: rh,
                request_body: req.body.as_deref(),
                status: status.as_u16(),
                response_headers: &headers,
                response_body: &body,
            });
        }
        Ok(Ok(Resp {
            status,
            headers,
            body,
        }))
    }

    /// Sends with throttling and retries. `Ok` for 2xx; an [`ArmError`] otherwise.
    async fn send(&self, req: Req<'_>) -> Result<Resp, ArmError> {
        let inner = &self.inner;
        let policy = inner.retry;
        let class = OpClass::of(&req.method);
        let method = req.method.as_str();
        let started = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            inner.throttle.acquire(class).await;
            if let Some(why) = (req.mutates && !req.poll)
                .then(|| self.gate_problem())
                .flatten()
            {
                return Err(ArmError::new(
                    ArmErrorKind::Conflict,
                    method,
                    req.resource,
                    format!("not sent: {why}"),
                ));
            }
            let c = &inner.counters;
            if req.poll {
                bump(&c.polls);
            } else {
                match class {
                    OpClass::Read => bump(&c.reads),
                    OpClass::Write => bump(&c.writes),
                    OpClass::Delete => bump(&c.deletes),
                }
            }
            if attempt > 1 {
                bump(&c.retries);
            }
            let outcome = self.attempt(&req).await?;
            // What failed, whether to retry, and the server's delay.
            let (err, retry, server) = match outcome {
                Ok(resp) => {
                    inner.throttle.observe(class, &resp.headers);
                    if resp.status.as_u16() == 429 {
                        bump(&c.throttled);
                        inner.throttle.throttled(class);
                    } else {
                        inner.throttle.accepted(class);
                    }
                    if resp.status.is_success() {
                        return Ok(resp);
                    }
                    let err = ArmError::from_response(
                        method,
                        req.resource,
                        resp.status,
                        &resp.headers,
                        &resp.body,
                    );
                    let cls = classify(Some(resp.status), err.code(), false);
                    // A non-idempotent request is resent only when the service provably did
                    // not act on it: throttled before dispatch, or rejected as busy.
                    let retry = match cls {
                        Class::Fatal => false,
                        Class::Throttled => true,
                        Class::Retry => req.idempotent || resp.status.as_u16() == 409,
                    };
                    let server = server_delay(&resp.headers, time::OffsetDateTime::now_utc());
                    (err, retry, server)
                }
                Err((e, sent)) => {
                    let kind = if e.is_timeout() {
                        ArmErrorKind::Timeout
                    } else {
                        ArmErrorKind::Io
                    };
                    let mut msg = format!("transport error: {e}");
                    if sent && !req.idempotent {
                        msg.push_str(
                            " (the request may have been applied; not resent: a rerun re-reads the state)",
                        );
                    }
                    let err = ArmError::new(kind, method, req.resource, msg).with_source(e);
                    let cls = classify(None, None, true);
                    let retry = cls != Class::Fatal && (req.idempotent || !sent);
                    (err, retry, None)
                }
            };
            let elapsed = started.elapsed();
            if !retry {
                return Err(err.with_progress(attempt, elapsed));
            }
            if attempt >= policy.max_attempts {
                tracing::warn!(method, resource = req.resource, attempts = attempt, error = %err, "giving up after the last attempt");
                return Err(err.with_progress(attempt, elapsed));
            }
            let delay = policy.delay(attempt - 1, server, inner.jitter.fraction());
            if elapsed + delay > policy.max_elapsed {
                tracing::warn!(method, resource = req.resource, attempts = attempt, elapsed_ms = elapsed.as_millis() as u64, error = %err, "giving up: the retry deadline would pass");
                return Err(err.with_progress(attempt, elapsed));
            }
            tracing::info!(
                method,
                resource = req.resource,
                attempt,
                status = err.status(),
                code = err.code(),
                delay_ms = delay.as_millis() as u64,
                "retrying ARM request"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn write(
        &self,
        method: Method,
        kind: LroKind,
        id: &str,
        body: &Value,
        opts: &PutOptions,
    ) -> Result<Value, ArmError> {
        let url = self.url_for(id, opts.api_version.as_deref())?;
        let resource = strip_query(id);
        let mut req = self.req(method, url, resource, Some(Self::encode(body)));
        let m = kind.method();
        for (name, v) in [
            (reqwest::header::IF_MATCH, &opts.if_match),
            (reqwest::header::IF_NONE_MATCH, &opts.if_none_match),
        ] {
            if let Some(v) = v {
                let v = HeaderValue::from_str(v).map_err(|_| {
                    ArmError::new(
                        ArmErrorKind::Config,
                        m,
                        resource,
                        format!("invalid {name} value {v:?}"),
                    )
                })?;
                req.headers.push((name, v));
            }
        }
        let r = self.send(req).await?;
        if !opts.wait {
            return Ok(r.json(m, resource)?.unwrap_or(Value::Null));
        }
        let api = self.api_for(id, opts.api_version.as_deref());
        Ok(self
            .finish(kind, resource, api, r)
            .await?
            .unwrap_or(Value::Null))
    }

    /// Waits for whatever the first response started: `Azure-AsyncOperation`, `Location`
    /// (202), or a non-terminal `provisioningState`. Returns the final body.
    async fn finish(
        &self,
        kind: LroKind,
        resource: &str,
        api: &str,
        first: Resp,
    ) -> Result<Option<Value>, ArmError> {
        let m = kind.method();
        let status = first.status.as_u16();
        let aao = first.header("azure-asyncoperation").map(str::to_string);
        let location = first.header("location").map(str::to_string);
        let now = Instant::now();
        let mut w = Waiter {
            method: m,
            resource,
            started: now,
            polls: 0,
            last_progress: now,
        };
        // A POST that answers 200 is done (its body is the result), whatever its headers.
        let pending = match kind {
            LroKind::Post => (201..=202).contains(&status),
            _ => (200..=202).contains(&status),
        };
        if let (Some(aao), true) = (aao, pending) {
            let url = self.rebase(&aao, m, resource)?;
            self.wait_async_operation(&mut w, url, &first).await?;
            return match kind {
                LroKind::Put | LroKind::Patch => self.final_get(resource, api).await.map(Some),
                LroKind::Delete => Ok(None),
                LroKind::Post => match location {
                    Some(loc) => {
                        let url = self.rebase(&loc, m, resource)?;
                        self.wait_location(&mut w, url, None).await
                    }
                    None => Ok(None),
                },
            };
        }
        if status == 202 {
            if let Some(loc) = location {
                let url = self.rebase(&loc, m, resource)?;
                let result = self.wait_location(&mut w, url, Some(&first)).await?;
                return match kind {
                    LroKind::Put | LroKind::Patch => self.final_get(resource, api).await.map(Some),
                    LroKind::Delete => Ok(None),
                    LroKind::Post => Ok(result),
                };
            }
            return match kind {
                LroKind::Put | LroKind::Patch => self
                    .wait_provisioning(&mut w, api, Some(&first))
                    .await
                    .map(Some),
                LroKind::Delete => self.wait_gone(&mut w, api, &first).await.map(|_| None),
                LroKind::Post => Err(ArmError::new(
                    ArmErrorKind::InvalidResponse,
                    m,
                    resource,
                    "202 Accepted without a Location or Azure-AsyncOperation header: nothing to wait on",
                )
                .with_status(Some(202))),
            };
        }
        let body = first.json(m, resource)?;
        match kind {
            LroKind::Put | LroKind::Patch => {
                let body = body.unwrap_or(Value::Null);
                match provisioning_state(&body).map(terminal_state) {
                    Some(None) => self
                        .wait_provisioning(&mut w, api, Some(&first))
                        .await
                        .map(Some),
                    Some(Some(false)) => Err(self.failed_state(m, resource, &body)),
                    _ => Ok(Some(body)),
                }
            }
            LroKind::Delete => Ok(None),
            LroKind::Post => Ok(body),
        }
    }

    fn failed_state(&self, method: &str, resource: &str, body: &Value) -> ArmError {
        let state = provisioning_state(body).unwrap_or("Failed");
        ArmError::new(
            ArmErrorKind::OperationFailed,
            method,
            resource,
            format!("provisioningState is {state}"),
        )
        .with_code(Some(state.to_string()))
    }

    /// Sleeps before the next poll, or fails with a timeout when the wait would pass
    /// `max_wait`.
    async fn pause(
        &self,
        w: &mut Waiter<'_>,
        after: Option<&Resp>,
        status: &str,
    ) -> Result<(), ArmError> {
        let lro = &self.inner.lro;
        let delay = after
            .and_then(|r| server_delay(&r.headers, time::OffsetDateTime::now_utc()))
            .unwrap_or(lro.default_delay)
            .clamp(lro.min_delay, lro.max_delay.max(lro.min_delay));
        let elapsed = w.started.elapsed();
        if elapsed + delay > lro.max_wait {
            return Err(ArmError::new(
                ArmErrorKind::Timeout,
                w.method,
                w.resource,
                format!(
                    "long-running operation still {status} after {elapsed:.0?}; gave up (max wait {:.0?})",
                    lro.max_wait
                ),
            )
            .with_progress(w.polls, elapsed));
        }
        let now = Instant::now();
        if now.duration_since(w.last_progress) >= lro.progress_every {
            w.last_progress = now;
            tracing::info!(
                method = w.method,
                resource = w.resource,
                status,
                polls = w.polls,
                elapsed_s = elapsed.as_secs(),
                "waiting for a long-running operation"
            );
        } else {
            tracing::debug!(
                method = w.method,
                resource = w.resource,
                status,
                polls = w.polls,
                "polling"
            );
        }
        tokio::time::sleep(delay).await;
        w.polls += 1;
        Ok(())
    }

    async fn poll(&self, w: &Waiter<'_>, url: Url) -> Result<Resp, ArmError> {
        let mut req = self.req(Method::GET, url, w.resource, None);
        req.poll = true;
        self.send(req).await
    }

    /// Polls an `Azure-AsyncOperation` status URL until `Succeeded` (Ok), `Failed` or
    /// `Canceled` (an error carrying the operation's code and message).
    async fn wait_async_operation(
        &self,
        w: &mut Waiter<'_>,
        url: Url,
        first: &Resp,
    ) -> Result<(), ArmError> {
        let mut last: Option<Resp> = None;
        let mut status = "InProgress".to_string();
        loop {
            self.pause(w, Some(last.as_ref().unwrap_or(first)), &status)
                .await?;
            let r = self.poll(w, url.clone()).await?;
            let body = r.json("GET", w.resource)?;
            let st = body
                .as_ref()
                .and_then(|b| b.get("status"))
                .and_then(Value::as_str)
                .map(str::to_string);
            match (r.status.as_u16(), st.as_deref()) {
                (_, Some(s)) => match terminal_state(s) {
                    Some(true) => return Ok(()),
                    Some(false) => {
                        let b = body.unwrap_or(Value::Null);
                        let (code, message) = parse_error_body(&b).unwrap_or((
                            None,
                            format!("long-running operation ended {s} without an error"),
                        ));
                        return Err(ArmError::new(
                            ArmErrorKind::OperationFailed,
                            w.method,
                            w.resource,
                            format!("operation {s}: {message}"),
                        )
                        .with_code(code)
                        .with_progress(w.polls, w.started.elapsed()));
                    }
                    None => status = s.to_string(),
                },
                (202, None) => status = "Accepted".into(),
                (code, None) => {
                    return Err(ArmError::new(
                        ArmErrorKind::InvalidResponse,
                        w.method,
                        w.resource,
                        format!("Azure-AsyncOperation poll answered {code} without a status"),
                    )
                    .with_status(Some(code)));
                }
            }
            last = Some(r);
        }
    }

    /// Polls a `Location` URL: 202 means running; 200 (body or empty) or 204 means done.
    async fn wait_location(
        &self,
        w: &mut Waiter<'_>,
        url: Url,
        first: Option<&Resp>,
    ) -> Result<Option<Value>, ArmError> {
        let mut last: Option<Resp> = None;
        loop {
            self.pause(w, last.as_ref().or(first), "Accepted").await?;
            let r = match self.poll(w, url.clone()).await {
                Ok(r) => r,
                // The operation itself failed: name the resource, keep status and code.
                Err(e) if !e.is_transient() && e.status().is_some() => {
                    return Err(ArmError::new(
                        ArmErrorKind::OperationFailed,
                        w.method,
                        w.resource,
                        format!("operation failed: {}", e.message()),
                    )
                    .with_status(e.status())
                    .with_code(e.code().map(str::to_string))
                    .with_progress(w.polls, w.started.elapsed()));
                }
                Err(e) => return Err(e),
            };
            if r.status.as_u16() == 202 {
                last = Some(r);
                continue;
            }
            return r.json("GET", w.resource);
        }
    }

    /// Polls GET on the resource until its `provisioningState` is terminal.
    async fn wait_provisioning(
        &self,
        w: &mut Waiter<'_>,
        api: &str,
        first: Option<&Resp>,
    ) -> Result<Value, ArmError> {
        let url = self.url_for(w.resource, Some(api))?;
        let mut last: Option<Resp> = None;
        let mut state = first
            .and_then(|f| f.json("GET", w.resource).ok().flatten())
            .as_ref()
            .and_then(provisioning_state)
            .unwrap_or("Accepted")
            .to_string();
        loop {
            self.pause(w, last.as_ref().or(first), &state).await?;
            let r = self.poll(w, url.clone()).await?;
            let body = r.json("GET", w.resource)?.unwrap_or(Value::Null);
            match provisioning_state(&body) {
                None => return Ok(body),
                Some(s) => match terminal_state(s) {
                    Some(true) => return Ok(body),
                    Some(false) => return Err(self.failed_state(w.method, w.resource, &body)),
                    None => state = s.to_string(),
                },
            }
            last = Some(r);
        }
    }

    /// Polls GET on a deleted resource until it answers 404.
    async fn wait_gone(&self, w: &mut Waiter<'_>, api: &str, first: &Resp) -> Result<(), ArmError> {
        let url = self.url_for(w.resource, Some(api))?;
        let mut last: Option<Resp> = None;
        loop {
            self.pause(w, Some(last.as_ref().unwrap_or(first)), "Deleting")
                .await?;
            match self.poll(w, url.clone()).await {
                Err(e) if e.status() == Some(404) => return Ok(()),
                Err(e) => return Err(e),
                Ok(r) => {
                    let body = r.json("GET", w.resource)?.unwrap_or(Value::Null);
                    if provisioning_state(&body).and_then(terminal_state) == Some(false) {
                        return Err(self.failed_state(w.method, w.resource, &body));
                    }
                    last = Some(r);
                }
            }
        }
    }

    /// The resource after a successful PUT/PATCH operation.
    async fn final_get(&self, resource: &str, api: &str) -> Result<Value, ArmError> {
        self.get_with(
            resource,
            &ReadOptions {
                api_version: Some(api.to_string()),
            },
        )
        .await?
        .ok_or_else(|| {
            ArmError::new(
                ArmErrorKind::InvalidResponse,
                "GET",
                resource,
                "the resource is missing after its operation succeeded",
            )
            .with_status(Some(404))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(endpoint: &str) -> Result<ArmClient, ArmError> {
        ArmClient::builder()
            .endpoint(endpoint)
            .credential(Credential::static_token("super-secret-token"))
            .build()
    }

    #[test]
    fn client_is_send_sync_clone() {
        fn assert_traits<T: Send + Sync + Clone + 'static>() {}
        assert_traits::<ArmClient>();
    }

    #[test]
    fn endpoints_are_validated() {
        assert!(client("https://management.azure.com").is_ok());
        assert!(client("https://management.chinacloudapi.cn/").is_ok());
        assert!(client("http://127.0.0.1:8080").is_ok());
        let e = client("http://management.azure.com").unwrap_err();
        assert_eq!(e.kind(), ArmErrorKind::Config);
        assert!(e.to_string().contains("loopback"), "{e}");
        assert!(client("ftp://x").is_err());
        assert!(client("https://management.azure.com/subscriptions").is_err());
        let no_cred = ArmClient::builder().build().unwrap_err();
        assert!(no_cred.to_string().contains("credential"), "{no_cred}");
    }

    #[test]
    fn urls_get_the_pinned_api_version_unless_present() {
        let c = client("http://127.0.0.1:8080").unwrap();
        let u = c
            .url_for(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/privateDnsZones/z",
                None,
            )
            .unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8080/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/privateDnsZones/z?api-version=2024-06-01"
        );
        let u = c
            .url_for(
                "/subscriptions/s/x/networkGroups/g?force=true",
                Some("2024-05-01"),
            )
            .unwrap();
        assert_eq!(u.query(), Some("force=true&api-version=2024-05-01"));
        let u = c
            .url_for("/subscriptions/s?api-version=2022-12-01", None)
            .unwrap();
        assert_eq!(u.query(), Some("api-version=2022-12-01"));
        assert!(c.url_for("subscriptions/s", None).is_err());
        assert!(c.url_for("//evil.example/x", None).is_err());
    }

    #[test]
    fn service_urls_are_rebased_on_the_endpoint() {
        let c = client("http://127.0.0.1:8080").unwrap();
        let u = c
            .rebase(
                "https://management.azure.com/subscriptions/s/providers/Microsoft.Network/virtualNetworks?api-version=2026-07-01&$skiptoken=abc",
                "GET",
                "/x",
            )
            .unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8080/subscriptions/s/providers/Microsoft.Network/virtualNetworks?api-version=2026-07-01&$skiptoken=abc"
        );
        let same = c
            .rebase("http://127.0.0.1:8080/a?b=1", "GET", "/x")
            .unwrap();
        assert_eq!(same.as_str(), "http://127.0.0.1:8080/a?b=1");
        let public = client("https://management.azure.com").unwrap();
        let u = public
            .rebase("https://attacker.example/steal?x=1", "GET", "/x")
            .unwrap();
        assert_eq!(u.as_str(), "https://management.azure.com/steal?x=1");
    }

    #[test]
    fn debug_output_has_no_token() {
        let c = client("http://127.0.0.1:8080").unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("super-secret-token"), "{d}");
        assert!(d.contains("<redacted>"), "{d}");
    }
}
