//! armsim: an in-process simulator of the Azure Resource Manager endpoints netstep uses
//! (AVNM, virtual networks, firewalls, firewall policies, private DNS, Azure Policy),
//! held to Microsoft's REST specs and to the behaviour recorded from real Azure.
//!
//! Start it with [`start`]; the returned [`Handle`] carries the base URL. See README.md.

mod authz;
mod avnm;
pub mod control;
mod core;
mod dns;
mod model;
mod net;
mod policy_eval;
mod record;
mod reply;
mod schema;
mod store;
mod world;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use rand::Rng;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::oneshot;

pub use control::Limits;
use control::{Class, FaultKind, LogEntry};
use core::{Inner, Req};
use model::{Api, Kind, Target};
use reply::Reply;

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// World file contents (see README.md); `None` starts empty (no subscriptions).
    pub world: Option<Value>,
    /// Simulated latency per ARM request: base ± jitter.
    pub latency: Duration,
    pub jitter: Duration,
    pub seed: u64,
    /// Lag before Azure Policy membership follows tag/assignment changes.
    pub policy_delay: Duration,
    /// Time an AVNM deployment takes from commit to Deployed.
    pub deploy_delay: Duration,
    /// Time an LRO takes to complete.
    pub lro_delay: Duration,
    /// Window after a commit during which listDeploymentStatus omits the region (real quirk).
    pub status_empty_window: Duration,
    pub limits: Limits,
    /// Record every ARM exchange as an oav liveRequest/liveResponse file in this folder.
    pub record_traffic: Option<PathBuf>,
    /// Page size of GET lists (AVNM lists cap `$top` at 20 as the spec does).
    pub page_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            world: None,
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            seed: 1,
            policy_delay: Duration::from_millis(200),
            deploy_delay: Duration::from_millis(300),
            lro_delay: Duration::from_millis(100),
            status_empty_window: Duration::from_millis(50),
            limits: Limits::default(),
            record_traffic: None,
            page_size: 100,
        }
    }
}

#[derive(Debug)]
pub enum Error {
    Bind(std::io::Error),
    World(String),
    Record(std::io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Bind(e) => write!(f, "armsim: cannot bind: {e}"),
            Error::World(e) => write!(f, "armsim: invalid world: {e}"),
            Error::Record(e) => write!(f, "armsim: cannot create traffic folder: {e}"),
        }
    }
}
impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A running simulator.
pub struct Handle {
    /// Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub url: String,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Handle {
    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

pub(crate) struct Sim {
    inner: Mutex<Inner>,
}

impl Sim {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Loads the world and starts serving on `config.listen`.
pub async fn start(config: Config) -> Result<Handle> {
    if let Some(dir) = &config.record_traffic {
        std::fs::create_dir_all(dir).map_err(Error::Record)?;
    }
    let mut inner = Inner::new(config.clone());
    if let Some(w) = &config.world {
        world::load(&mut inner, w).map_err(Error::World)?;
    }
    let sim = Arc::new(Sim {
        inner: Mutex::new(inner),
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(Error::Bind)?;
    let addr = listener.local_addr().map_err(Error::Bind)?;
    let app = Router::new().fallback(handle).with_state(sim);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    Ok(Handle {
        url: format!("http://{addr}"),
        addr,
        stop: Some(tx),
        task: Some(task),
    })
}

/// Parses a world file (for the binary's `--world`).
pub fn read_world(path: &std::path::Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::World(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::World(format!("{}:{}: {e}", path.display(), e.line())))
}

pub(crate) fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 3 <= b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn pct_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.bytes() {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~' | b'/' | b':' | b'$')
        {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (
                pct_decode(&k.replace('+', " ")),
                pct_decode(&v.replace('+', " ")),
            ),
            None => (pct_decode(p), String::new()),
        })
        .collect()
}

async fn handle(State(sim): State<Arc<Sim>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let path = pct_decode(parts.uri.path());
    let query = parse_query(parts.uri.query());
    if path == "/_sim" || path.starts_with("/_sim/") {
        let reply = world::control(&sim, &parts.method, &path, &query, &bytes);
        return to_response(reply);
    }
    // Arrival time, before the simulated latency: benchmarks compare it with process spawn.
    let arrived = OffsetDateTime::now_utc();
    let delay = {
        let mut g = sim.lock();
        let (base, jit) = (g.cfg.latency, g.cfg.jitter);
        if base.is_zero() && jit.is_zero() {
            Duration::ZERO
        } else {
            let j = jit.as_millis() as i64;
            let off = if j > 0 {
                g.ctl.rng.random_range(-j..=j)
            } else {
                0
            };
            Duration::from_millis((base.as_millis() as i64 + off).max(0) as u64)
        }
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (reply, kills) = {
        let mut g = sim.lock();
        let reply = process(
            &mut g,
            &parts.method,
            &path,
            query,
            &parts.headers,
            &bytes,
            arrived,
        );
        g.ctl.arm_requests += 1;
        let n = g.ctl.arm_requests;
        (reply, g.ctl.due_hooks(n))
    };
    for pid in kills {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = tokio::process::Command::new("kill")
                .arg("-9")
                .arg(pid.to_string())
                .status()
                .await;
        });
    }
    to_response(reply)
}

fn to_response(reply: Reply) -> Response {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    for (k, v) in &reply.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            builder = builder.header(n, v);
        }
    }
    if reply.drop_connection {
        // Headers promise a body that never comes: hyper aborts the connection.
        let stream = futures::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "armsim: injected drop",
            ))
        });
        return builder
            .header("content-length", "100")
            .body(Body::from_stream(stream))
            .unwrap_or_default();
    }
    match reply.body {
        Some(b) => builder
            .header("content-type", "application/json; charset=utf-8")
            .body(Body::from(serde_json::to_vec(&b).unwrap_or_default()))
            .unwrap_or_default(),
        None => builder
            .header("content-length", "0")
            .body(Body::empty())
            .unwrap_or_default(),
    }
}

/// Operation label for stats and fault matching, e.g. "PUT networkGroups", "POST commit".
fn op_label(method: &Method, t: &Target) -> String {
    let what = match (&t.tail, t.pairs.last()) {
        (Some(tail), _) => tail.clone(),
        (None, Some((ty, _))) => ty.clone(),
        (None, None) => "resourceGroups".into(),
    };
    format!("{method} {}", model::canon_seg(&what))
}

const POLL_SEGS: &[&str] = &[
    "operationresults",
    "operationstatuses",
    "privatednsoperationstatuses",
    "privatednsoperationresults",
];

fn api_of(t: &Target) -> Option<Api> {
    match t.ns.as_deref() {
        Some("microsoft.authorization") => Some(Api::Policy),
        Some("microsoft.network") => {
            let first = t
                .pairs
                .first()
                .map(|p| p.0.to_ascii_lowercase())
                .or_else(|| t.tail.as_ref().map(|x| x.to_ascii_lowercase()));
            match first.as_deref() {
                Some("privatednszones")
                | Some("privatednsoperationstatuses")
                | Some("privatednsoperationresults") => Some(Api::PrivateDns),
                _ => Some(Api::Network),
            }
        }
        _ => None,
    }
}

fn valid_api_version_format(v: &str) -> bool {
    let b = v.as_bytes();
    let date_ok = b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit);
    date_ok && (b.len() == 10 || v[10..].starts_with("-preview") || v[10..].starts_with("-beta"))
}

fn principal_of(token: &str) -> String {
    // A stable fake object id per bearer token (the token itself is never stored or logged).
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in token.bytes() {
        h ^= b as u128;
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    uuid::Uuid::from_u128(h).to_string()
}

fn process(
    g: &mut Inner,
    method: &Method,
    path: &str,
    query: Vec<(String, String)>,
    headers: &HeaderMap,
    bytes: &[u8],
    arrived: OffsetDateTime,
) -> Reply {
    let now = Instant::now();
    let utc = OffsetDateTime::now_utc();
    let target = Target::parse(path);
    let label = target
        .as_ref()
        .map_or_else(|| format!("{method} {path}"), |t| op_label(method, t));
    let is_poll = target.as_ref().is_some_and(|t| {
        t.pairs
            .iter()
            .any(|(ty, _)| POLL_SEGS.contains(&ty.to_ascii_lowercase().as_str()))
    });
    let class = if is_poll || *method == Method::GET || *method == Method::HEAD {
        Class::Read
    } else if *method == Method::DELETE {
        Class::Delete
    } else {
        Class::Write
    };
    let mut reply = process_inner(
        g,
        method,
        path,
        &query,
        headers,
        bytes,
        target.as_ref(),
        &label,
        class,
        is_poll,
        now,
        utc,
    );
    // Headers every ARM response carries.
    let rid = core::new_guid();
    reply.headers.push(("x-ms-request-id".into(), rid.clone()));
    reply
        .headers
        .push(("x-ms-correlation-request-id".into(), rid));
    reply
        .headers
        .push(("cache-control".into(), "no-cache".into()));
    // Retries as the server sees them, and whether they honoured Retry-After.
    let principal = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(|t| principal_of(t.trim()))
        .unwrap_or_default();
    let retry_after = reply
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
        .and_then(|(_, v)| v.trim().parse::<u64>().ok());
    let arm_code = reply
        .body
        .as_ref()
        .and_then(|b| b["error"]["code"].as_str())
        .map(str::to_string);
    g.ctl.track_retry(
        &principal,
        method.as_str(),
        path,
        reply.status,
        arm_code.as_deref(),
        reply.drop_connection,
        retry_after,
        now,
    );
    // Stats and log.
    let st = &mut g.ctl.stats;
    if is_poll {
        st.polls += 1;
    }
    match class {
        Class::Read => st.reads += 1,
        Class::Write => st.writes += 1,
        Class::Delete => st.deletes += 1,
    }
    *st.by_operation
        .entry(if is_poll {
            format!("{method} operationStatus")
        } else {
            label.clone()
        })
        .or_insert(0) += 1;
    if reply.status == 429 {
        st.throttled += 1;
    }
    let seq = g.ctl.log.len() as u64 + 1;
    g.ctl.log(LogEntry {
        seq,
        method: method.to_string(),
        path: path.to_string(),
        op: label,
        status: reply.status,
        time: core::rfc3339(utc),
        arrived_unix_ms: (arrived.unix_timestamp_nanos() / 1_000) as f64 / 1_000.0,
        user_agent: headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
    });
    if let Some(dir) = g.cfg.record_traffic.clone() {
        g.ctl.record_seq += 1;
        record::write(
            &dir,
            g.ctl.record_seq,
            method,
            path,
            &query,
            headers,
            bytes,
            &reply,
        );
    }
    reply
}

#[allow(clippy::too_many_arguments)]
fn process_inner(
    g: &mut Inner,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    bytes: &[u8],
    target: Option<&Target>,
    label: &str,
    class: Class,
    is_poll: bool,
    now: Instant,
    utc: OffsetDateTime,
) -> Reply {
    // 1. Authentication, done by ARM before anything else.
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    let token = match auth {
        None => {
            return Reply::error(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
                .header("WWW-Authenticate", "Bearer authorization_uri=\"https://login.windows.net/\", error=\"invalid_token\", error_description=\"The authentication failed because of missing 'Authorization' header.\"");
        }
        Some(a) => match a.strip_prefix("Bearer ").map(str::trim) {
            Some(t) if !t.is_empty() => t.to_string(),
            _ => {
                return Reply::error(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is provided in an invalid format.")
                    .header("WWW-Authenticate", "Bearer authorization_uri=\"https://login.windows.net/\", error=\"invalid_token\", error_description=\"The authentication failed because of invalid 'Authorization' header format.\"");
            }
        },
    };
    let principal = principal_of(&token);
    // 2. api-version.
    let Some(api_version) = query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("api-version"))
        .map(|(_, v)| v.clone())
    else {
        return Reply::error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    };
    let Some(t) = target else {
        return Reply::gateway(
            404,
            "InvalidResourceType",
            format!("The resource path '{path}' is not supported by armsim (no such ARM route)."),
        );
    };
    let Some(api) = api_of(t) else {
        let ns = t.ns.clone().unwrap_or_default();
        return Reply::gateway(
            400,
            "InvalidResourceNamespace",
            format!("The resource namespace '{ns}' is invalid."),
        );
    };
    if !valid_api_version_format(&api_version) {
        return Reply::gateway(
            400,
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{api_version}' is invalid. The supported versions are '{}'.",
                api.version()
            ),
        );
    }
    if api_version != api.version() {
        let ty = t.pairs.first().map_or_else(
            || t.tail.clone().unwrap_or_default(),
            |p| model::canon_seg(&p.0),
        );
        return Reply::gateway(
            400,
            "NoRegisteredProviderFound",
            format!(
                "No registered resource provider found for location 'global' and API version '{api_version}' for type '{ty}'. The supported api-versions are '{}'. The supported locations are 'eastus, westus, northeurope, westeurope, southeastasia, australiaeast, southafricanorth, global'.",
                api.version()
            ),
        );
    }
    // 3. Subscription and resource group.
    if !g.subs.contains_key(&t.sub.to_ascii_lowercase()) {
        return Reply::gateway(
            404,
            "SubscriptionNotFound",
            format!("The subscription '{}' could not be found.", t.sub),
        );
    }
    // 4. Throttling (per principal and subscription, reads/writes/deletes apart).
    let remaining = match g.ctl.take_token(&principal, &t.sub, class, now) {
        Ok(r) => r,
        Err(wait) => {
            return Reply::error(
                429,
                "SubscriptionRequestsThrottled",
                format!(
                    "Number of '{}' requests for subscription '{}' actor '{principal}' exceeded. Please try again after '{wait}' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling for more information.",
                    &class.name()[..class.name().len() - 1],
                    t.sub
                ),
            )
            .header("Retry-After", wait.to_string())
            .header(&format!("x-ms-ratelimit-remaining-subscription-{}", class.name()), "0");
        }
    };
    let rl = (
        format!("x-ms-ratelimit-remaining-subscription-{}", class.name()),
        remaining.to_string(),
    );
    // 5. Faults.
    let mut fault = None;
    if !is_poll && let Some((kind, retry_after)) = g.ctl.pick_fault(method.as_str(), path, label) {
        g.ctl.stats.faults_injected += 1;
        let early = match kind {
            FaultKind::Status429 => Some(
                Reply::error(429, "SubscriptionRequestsThrottled", format!("Number of requests for subscription '{}' exceeded (injected by armsim). Please try again after '{retry_after}' seconds.", t.sub))
                    .header("Retry-After", retry_after.to_string()),
            ),
            FaultKind::Status500 => Some(Reply::error(500, "InternalServerError", "An unexpected error occured while processing the request (injected by armsim).")),
            FaultKind::Status503 => Some(
                Reply::error(503, "ServiceUnavailable", "The service is temporarily unavailable (injected by armsim).").header("Retry-After", retry_after.to_string()),
            ),
            FaultKind::AnotherOp409 => Some(Reply::conflict(
                "AnotherOperationInProgress",
                format!("Another operation on this or dependent resource is in progress. To retry later, please check provisioningState of the resource (injected by armsim). Request: {path}"),
            )),
            _ => None,
        };
        if let Some(r) = early {
            return r.header(&rl.0, rl.1.clone());
        }
        fault = Some(kind);
    }
    // 6. Body: ARM only accepts JSON payloads.
    if !bytes.is_empty() {
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct
            .trim()
            .to_ascii_lowercase()
            .starts_with("application/json")
        {
            return Reply::gateway(
                415,
                "UnsupportedMediaType",
                format!("The content media type '{ct}' is not supported. Only 'application/json' is supported."),
            )
            .header(&rl.0, rl.1.clone());
        }
    }
    let body = if bytes.is_empty() {
        None
    } else {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                return Reply::invalid_format(format!(
                    "Unexpected character encountered while parsing value: {e}. Path '', line {}.",
                    e.line()
                ))
                .header(&rl.0, rl.1.clone());
            }
        }
    };
    let req = Req {
        method: method.clone(),
        path: path.to_string(),
        query: query.to_vec(),
        headers: headers.clone(),
        body,
        api_version,
        principal,
        now,
        utc,
        fault,
    };
    let mut reply = if is_poll {
        let (i, _) = t
            .pairs
            .iter()
            .enumerate()
            .find(|(_, (ty, _))| POLL_SEGS.contains(&ty.to_ascii_lowercase().as_str()))
            .unwrap_or((0, &t.pairs[0]));
        let ty = t.pairs[i].0.to_ascii_lowercase();
        let style_location = ty == "operationresults" || ty == "privatednsoperationresults";
        if *method != Method::GET {
            Reply::error(
                405,
                "MethodNotAllowed",
                "The requested method is not allowed on an operation URL.",
            )
        } else {
            g.poll(&req, &t.pairs[i].1, style_location)
        }
    } else if let Some(rg) = &t.rg
        && g.rg(&t.sub, rg).is_none()
    {
        Reply::rg_not_found(rg)
    } else {
        dispatch(g, &req, t, api)
    };
    if let Some(FaultKind::DropConnection) = fault {
        reply.drop_connection = true;
    }
    reply.header(&rl.0, rl.1)
}

fn dispatch(g: &mut Inner, req: &Req, t: &Target, api: Api) -> Reply {
    let first = t.pairs.first().map(|p| p.0.to_ascii_lowercase());
    match api {
        Api::Policy => authz::handle(g, req, t),
        Api::PrivateDns => dns::handle(g, req, t),
        Api::Network => match first.as_deref() {
            Some("networkmanagers") => avnm::handle(g, req, t),
            None if t
                .tail
                .as_ref()
                .is_some_and(|x| x.eq_ignore_ascii_case("networkManagers")) =>
            {
                avnm::handle(g, req, t)
            }
            Some("virtualnetworks")
                if t.pairs.len() == 1
                    && req.method == Method::POST
                    && t.tail.as_ref().is_some_and(|x| {
                        x.to_ascii_lowercase()
                            .starts_with("listnetworkmanagereffective")
                    }) =>
            {
                avnm::effective(g, req, t)
            }
            _ => net::handle(g, req, t),
        },
    }
}

/// Kind for a resource id, if armsim models it.
pub(crate) fn kind_of_target(t: &Target) -> Option<Kind> {
    if t.tail.is_some() {
        return None;
    }
    Kind::from_chain(&t.chain())
}
