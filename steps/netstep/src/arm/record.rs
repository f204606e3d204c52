//! Traffic recording: each request/response pair as one oav-format JSON file, for
//! `check-traffic` (Microsoft's live validator) to hold against the REST specs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::header::HeaderMap;
use serde_json::{Map, Value, json};

/// The host every recorded URL carries (the validator matches the public cloud's paths).
pub const PUBLIC_ORIGIN: &str = "https://management.azure.com";

/// Writes `<run>-NNNNNN-<method>-<short>.json` files into a directory. `<run>` (the start
/// time in milliseconds and the process id) keeps several processes recording into one folder
/// from overwriting each other, and names sort in time order.
#[derive(Debug)]
pub struct Recorder {
    dir: PathBuf,
    origin: String,
    run: String,
    seq: AtomicU64,
}

/// One exchange to record.
pub(crate) struct Exchange<'a> {
    pub method: &'a str,
    pub url: &'a url::Url,
    pub request_headers: &'a HeaderMap,
    pub request_body: Option<&'a [u8]>,
    pub status: u16,
    pub response_headers: &'a HeaderMap,
    pub response_body: &'a [u8],
}

impl Recorder {
    /// Records into `dir` (created if missing). `origin` is the client's endpoint origin
    /// (`http://127.0.0.1:PORT`), rewritten to the public host in URLs and headers.
    pub fn new(dir: impl Into<PathBuf>, origin: &str) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Recorder {
            dir,
            origin: origin.trim_end_matches('/').to_string(),
            run: format!(
                "{:013}-p{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or_default(),
                std::process::id()
            ),
            seq: AtomicU64::new(0),
        })
    }

    fn public(&self, s: &str) -> String {
        if self.origin.is_empty() || self.origin == PUBLIC_ORIGIN {
            s.to_string()
        } else {
            s.replace(&self.origin, PUBLIC_ORIGIN)
        }
    }

    fn headers(&self, h: &HeaderMap) -> Value {
        let mut m = Map::new();
        for (name, value) in h {
            let n = name.as_str();
            let v = if n.eq_ignore_ascii_case("authorization") {
                "Bearer <redacted>".to_string()
            } else {
                self.public(&String::from_utf8_lossy(value.as_bytes()))
            };
            m.insert(n.to_string(), Value::String(v));
        }
        Value::Object(m)
    }

    fn body(bytes: &[u8]) -> Option<Value> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        Some(
            serde_json::from_slice(bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned())),
        )
    }

    /// Writes one exchange. Failures are logged, never fatal: recording is a diagnostic.
    pub(crate) fn record(&self, x: &Exchange<'_>) {
        let n = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let short = super::short_name(x.url.path());
        let name = format!(
            "{}-{n:06}-{}-{}.json",
            self.run,
            x.method.to_ascii_lowercase(),
            sanitize(&short)
        );
        let mut req = Map::new();
        req.insert("method".into(), json!(x.method));
        req.insert("url".into(), json!(self.public(x.url.as_str())));
        req.insert("headers".into(), self.headers(x.request_headers));
        if let Some(b) = x.request_body.and_then(Self::body) {
            req.insert("body".into(), b);
        }
        let mut res = Map::new();
        res.insert("statusCode".into(), json!(x.status.to_string()));
        res.insert("headers".into(), self.headers(x.response_headers));
        if let Some(b) = Self::body(x.response_body) {
            res.insert("body".into(), b);
        }
        let doc = json!({"liveRequest": req, "liveResponse": res});
        let path = self.dir.join(name);
        let text = match serde_json::to_vec_pretty(&doc) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot serialize recorded traffic");
                return;
            }
        };
        if let Err(e) = std::fs::write(&path, text) {
            tracing::warn!(path = %path.display(), error = %e, "cannot record traffic");
        }
    }
}

fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    if out.is_empty() { "root".into() } else { out }
}
