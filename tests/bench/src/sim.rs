//! The armsim process the benchmark runs against, and its `/_sim` API over plain HTTP/1.1
//! on loopback (no client library needed for a few GETs).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// armsim settings for one size.
#[derive(Debug, Clone, Copy)]
pub struct Knobs {
    pub latency_ms: u64,
    pub jitter_ms: u64,
    pub lro_ms: u64,
    pub deploy_ms: u64,
    pub policy_ms: u64,
}

pub struct Armsim {
    child: Child,
    pub addr: String,
}

impl Armsim {
    pub fn start(bin_dir: &Path, world: &Path, knobs: Knobs, log: &Path) -> Result<Armsim> {
        let program = bin_dir.join("armsim");
        let mut child = Command::new(&program)
            .args(["--listen", "127.0.0.1:0", "--world"])
            .arg(world)
            .arg(format!(
                "--latency-ms={},{}",
                knobs.latency_ms, knobs.jitter_ms
            ))
            .arg(format!("--lro-delay-ms={}", knobs.lro_ms))
            .arg(format!("--deploy-delay-ms={}", knobs.deploy_ms))
            .arg(format!("--policy-delay-ms={}", knobs.policy_ms))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let stdout = child.stdout.take().context("armsim stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().transpose()?.unwrap_or_default();
        let Some(url) = netstep_run::sim::parse_listening(&first) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("armsim did not start: {first:?} (see {})", log.display());
        };
        // Keep draining stdout so armsim never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let addr = url.trim_start_matches("http://").to_string();
        Ok(Armsim { child, addr })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// GET `path` of the control API as JSON.
    pub fn get(&self, path: &str) -> Result<Value> {
        let mut s = TcpStream::connect(&self.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)?;
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("armsim: malformed HTTP response")?;
        let head = String::from_utf8_lossy(&buf[..split]);
        if !head.starts_with("HTTP/1.1 200") {
            bail!("armsim {path}: {}", head.lines().next().unwrap_or_default());
        }
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            bail!("armsim {path}: chunked responses are not expected");
        }
        serde_json::from_slice(&buf[split + 4..]).with_context(|| format!("armsim {path}"))
    }

    /// Stops armsim (SIGKILL to our own child by its handle) and reaps it.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Armsim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
