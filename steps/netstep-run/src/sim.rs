//! `--simulate`: start the ARM simulator (`armsim`) on loopback for the run and stop it
//! afterwards (SIGKILL to its PID; it is our own child).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::diag::Error;

/// Token the steps get in simulation (armsim accepts any bearer token).
pub const SIM_TOKEN: &str = "simulated";

/// A running simulator.
#[derive(Debug)]
pub struct Simulator {
    child: Child,
    pub url: String,
    pub pid: u32,
}

impl Simulator {
    /// Starts `<bin_dir>/armsim --listen 127.0.0.1:0 --world <world>` and waits (up to
    /// `startup`) for its first stdout line `listening on http://127.0.0.1:PORT`.
    pub async fn start(
        bin_dir: &Path,
        world: &Path,
        log: Option<PathBuf>,
        startup: Duration,
    ) -> Result<Simulator, Error> {
        let program = bin_dir.join("armsim");
        if !program.is_file() {
            return Err(Error::Simulator(format!(
                "{} not found (build it with `cargo build -p armsim`, or pass --bin-dir)",
                program.display()
            )));
        }
        let stderr = match &log {
            Some(p) => std::fs::File::create(p)
                .map(Stdio::from)
                .map_err(|source| Error::Io {
                    path: p.clone(),
                    source,
                })?,
            None => Stdio::inherit(),
        };
        let mut child = Command::new(&program)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--world")
            .arg(world)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Simulator(format!("cannot start {}: {e}", program.display())))?;
        let pid = child.id().unwrap_or(0);
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::Simulator("no stdout pipe".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(startup, lines.next_line()).await;
        let url = match first {
            Ok(Ok(Some(line))) => parse_listening(&line).ok_or_else(|| {
                Error::Simulator(format!(
                    "unexpected first line from armsim: {line:?} (want `listening on http://127.0.0.1:PORT`)"
                ))
            }),
            Ok(Ok(None)) => Err(Error::Simulator(
                "armsim exited before printing its address".into(),
            )),
            Ok(Err(e)) => Err(Error::Simulator(format!("reading armsim stdout: {e}"))),
            Err(_) => Err(Error::Simulator(format!(
                "armsim did not print its address within {}s",
                startup.as_secs()
            ))),
        };
        let url = match url {
            Ok(u) => u,
            Err(e) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(e);
            }
        };
        // Keep draining stdout so armsim never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Simulator { child, url, pid })
    }

    /// Stops the simulator: SIGTERM to its PID (armsim shuts down cleanly and flushes any
    /// traffic recording), then SIGKILL if it has not exited within 5 s; then reaps it.
    pub async fn stop(mut self) {
        if matches!(self.child.try_wait(), Ok(None)) && self.pid > 0 {
            // kill(1) with our own child's PID: no unsafe code, no broad name matching.
            let _ = tokio::process::Command::new("kill")
                .arg("-TERM")
                .arg(self.pid.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
            if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// `listening on http://127.0.0.1:PORT` -> `http://127.0.0.1:PORT` (loopback only).
pub fn parse_listening(line: &str) -> Option<String> {
    let url = line.trim().strip_prefix("listening on ")?.trim();
    let rest = url.strip_prefix("http://127.0.0.1:")?;
    let port = rest.trim_end_matches('/');
    port.parse::<u16>().ok()?;
    Some(url.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listening_line() {
        assert_eq!(
            parse_listening("listening on http://127.0.0.1:41234\n").as_deref(),
            Some("http://127.0.0.1:41234")
        );
        assert_eq!(parse_listening("listening on http://10.0.0.1:80"), None);
        assert_eq!(parse_listening("hello"), None);
    }
}
