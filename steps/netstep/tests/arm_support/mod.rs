//! A scripted ARM stand-in for the client tests (kube-rs style): an ordered list of expected
//! requests, each with a canned response. It listens on 127.0.0.1:0 on its own thread and
//! runtime (real time), so the client under test can run on a paused tokio clock without the
//! server's timers interfering. `finish()` asserts every expectation was consumed and no
//! request was unexpected.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

#[derive(Debug, Clone)]
enum Reply {
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Read the request, then close the connection without answering (a lost response).
    Drop,
}

#[derive(Debug)]
struct Expectation {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    body: Option<Value>,
    times: usize,
    reply: Reply,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Expectation>,
    seen: Vec<Seen>,
    errors: Vec<String>,
}

pub struct MockArm {
    base: String,
    state: Arc<Mutex<State>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// One expectation being scripted.
pub struct On<'a> {
    mock: &'a MockArm,
    e: Expectation,
}

impl On<'_> {
    /// The request body must equal this JSON.
    pub fn body(mut self, v: Value) -> Self {
        self.e.body = Some(v);
        self
    }

    /// Matches this many consecutive requests (default 1).
    pub fn times(mut self, n: usize) -> Self {
        self.e.times = n;
        self
    }

    /// Responds with `status`, extra headers and a JSON body (`Value::Null`: empty body).
    /// `{base}` in header values and the body is replaced by the server's base URL.
    pub fn reply(self, status: u16, headers: &[(&str, &str)], body: Value) {
        let base = self.mock.base.clone();
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string().replace("{base}", &base)
        };
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.replace("{base}", &base)))
            .collect();
        self.push(Reply::Respond {
            status,
            headers,
            body,
        })
    }

    /// Responds with a raw (possibly non-JSON) body.
    pub fn reply_raw(self, status: u16, headers: &[(&str, &str)], body: &str) {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.push(Reply::Respond {
            status,
            headers,
            body: body.to_string(),
        })
    }

    /// Closes the connection after reading the request.
    pub fn drop_connection(self) {
        self.push(Reply::Drop)
    }

    fn push(mut self, reply: Reply) {
        self.e.reply = reply;
        self.mock.state.lock().unwrap().queue.push_back(self.e);
    }
}

impl MockArm {
    pub fn start() -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                let serve = async {
                    loop {
                        let Ok((sock, _)) = listener.accept().await else {
                            continue;
                        };
                        let st = st.clone();
                        tokio::spawn(async move { serve_conn(sock, st).await });
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = rx => {}
                }
            });
        });
        MockArm {
            base: format!("http://{addr}"),
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Expects `method target` next; `target` may carry a query whose pairs must all be
    /// present in the request (others may be too).
    pub fn on(&self, method: &str, target: &str) -> On<'_> {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, pairs(q)),
            None => (target, Vec::new()),
        };
        On {
            mock: self,
            e: Expectation {
                method: method.to_string(),
                path: path.to_string(),
                query,
                body: None,
                times: 1,
                reply: Reply::Drop,
            },
        }
    }

    /// Everything received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Asserts every expectation was consumed and nothing unexpected arrived.
    pub fn finish(self) {
        let st = self.state.lock().unwrap();
        assert!(st.errors.is_empty(), "mock ARM errors: {:#?}", st.errors);
        assert!(
            st.queue.is_empty(),
            "expected requests never came: {:#?}",
            st.queue
                .iter()
                .map(|e| format!("{} {} (x{})", e.method, e.path, e.times))
                .collect::<Vec<_>>()
        );
    }
}

impl Drop for MockArm {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pairs(q: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn reason(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown")
}

async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Seen> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 8192];
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let body_start = head_end + 4;
    while buf.len() < body_start + len {
        let mut chunk = [0u8; 8192];
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[body_start..body_start + len].to_vec();
    buf.drain(..body_start + len);
    Some(Seen {
        method,
        target,
        headers,
        body,
    })
}

async fn serve_conn(mut sock: TcpStream, st: Arc<Mutex<State>>) {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut sock, &mut buf).await {
        let reply = decide(&st, &req);
        match reply {
            Reply::Drop => return,
            Reply::Respond {
                status,
                headers,
                body,
            } => {
                let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
                out.push_str(&format!("content-length: {}\r\n", body.len()));
                if !body.is_empty()
                    && !headers
                        .iter()
                        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                {
                    out.push_str("content-type: application/json; charset=utf-8\r\n");
                }
                for (k, v) in &headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&body);
                if sock.write_all(out.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn decide(st: &Mutex<State>, req: &Seen) -> Reply {
    let mut st = st.lock().unwrap();
    st.seen.push(req.clone());
    let (path, query) = match req.target.split_once('?') {
        Some((p, q)) => (p.to_string(), pairs(q)),
        None => (req.target.clone(), Vec::new()),
    };
    let Some(front) = st.queue.front_mut() else {
        let msg = format!(
            "unexpected {} {} (no expectations left)",
            req.method, req.target
        );
        st.errors.push(msg.clone());
        return Reply::Respond {
            status: 599,
            headers: vec![],
            body: serde_json::json!({"error":{"code":"MockUnexpected","message": msg}}).to_string(),
        };
    };
    let mut problems = Vec::new();
    if front.method != req.method || front.path != path {
        problems.push(format!(
            "expected {} {}, got {} {}",
            front.method, front.path, req.method, req.target
        ));
    }
    for (k, v) in &front.query {
        if !query.iter().any(|(qk, qv)| qk == k && qv == v) {
            problems.push(format!(
                "{} {}: query lacks {k}={v}",
                req.method, req.target
            ));
        }
    }
    if let Some(want) = &front.body {
        let got: Option<Value> = serde_json::from_slice(&req.body).ok();
        if got.as_ref() != Some(want) {
            problems.push(format!(
                "{} {}: body {} != expected {}",
                req.method,
                req.target,
                String::from_utf8_lossy(&req.body),
                want
            ));
        }
    }
    if !problems.is_empty() {
        let msg = problems.join("; ");
        st.errors.push(msg.clone());
        return Reply::Respond {
            status: 599,
            headers: vec![],
            body: serde_json::json!({"error":{"code":"MockMismatch","message": msg}}).to_string(),
        };
    }
    let reply = front.reply.clone();
    front.times -= 1;
    if front.times == 0 {
        st.queue.pop_front();
    }
    reply
}
