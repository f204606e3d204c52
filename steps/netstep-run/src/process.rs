//! Running one attempt of a container step as a local child process: argv without a
//! shell, env, stdout/stderr streamed to our stderr with a prefix (and to a log file),
//! stdout captured for `outputs.result`, and a deadline enforced with SIGKILL on the
//! child's own PID.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use crate::report::Phase;

/// Argo keeps at most 256 kB of stdout as `outputs.result`.
pub const MAX_RESULT_BYTES: usize = 256 * 1024;

/// What to run.
#[derive(Debug, Clone)]
pub struct Spawn {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// Kill the process (SIGKILL) when it runs longer than this.
    pub deadline: Option<Duration>,
    /// Why the deadline exists (for the message), e.g. "activeDeadlineSeconds=5".
    pub deadline_reason: String,
    /// Prefix for forwarded output lines, e.g. `[mesh-connect]`; None = do not forward.
    pub log_prefix: Option<String>,
    /// Combined stdout+stderr log file.
    pub log_file: Option<PathBuf>,
}

/// The outcome of one attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub phase: Phase,
    /// Exit code; a signal N is reported as 128+N (like a container runtime).
    pub exit_code: Option<i32>,
    pub message: String,
    pub stdout: String,
    pub duration: Duration,
    pub pid: Option<u32>,
}

pub async fn run_attempt(s: &Spawn) -> Attempt {
    let started = Instant::now();
    let mut cmd = Command::new(&s.program);
    cmd.args(&s.args)
        .envs(s.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(cwd) = &s.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Attempt {
                phase: Phase::Error,
                exit_code: None,
                message: format!("cannot start {}: {e}", s.program.display()),
                stdout: String::new(),
                duration: started.elapsed(),
                pid: None,
            };
        }
    };
    let pid = child.id();
    let log = s.log_file.as_ref().and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
            .map(|f| Arc::new(Mutex::new(f)))
    });
    let captured = Arc::new(Mutex::new(String::new()));
    let out_task = child.stdout.take().map(|o| {
        tokio::spawn(pump(
            o,
            s.log_prefix.clone(),
            log.clone(),
            Some(captured.clone()),
        ))
    });
    let err_task = child
        .stderr
        .take()
        .map(|e| tokio::spawn(pump(e, s.log_prefix.clone(), log.clone(), None)));

    let mut killed = false;
    let status = match s.deadline {
        Some(d) => tokio::select! {
            st = child.wait() => st,
            _ = tokio::time::sleep(d) => {
                killed = true;
                // SIGKILL to our own child, by PID (tokio's start_kill).
                let _ = child.start_kill();
                child.wait().await
            }
        },
        None => child.wait().await,
    };
    // Pipes close when the process exits (unless it left children holding them).
    for t in [out_task, err_task].into_iter().flatten() {
        let abort = t.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    let stdout = std::mem::take(&mut *captured.lock().unwrap_or_else(|e| e.into_inner()));
    let duration = started.elapsed();
    match status {
        Err(e) => Attempt {
            phase: Phase::Error,
            exit_code: None,
            message: format!("waiting for PID {pid:?} failed: {e}"),
            stdout,
            duration,
            pid,
        },
        Ok(st) => {
            let code = st.code().or_else(|| st.signal().map(|sig| 128 + sig));
            let (phase, message) = if killed {
                (
                    Phase::Failed,
                    format!(
                        "{} exceeded: killed PID {} with SIGKILL",
                        s.deadline_reason,
                        pid.unwrap_or(0)
                    ),
                )
            } else if st.success() {
                (Phase::Succeeded, String::new())
            } else if let Some(sig) = st.signal() {
                (Phase::Failed, format!("terminated by signal {sig}"))
            } else {
                (Phase::Failed, format!("exit code {}", code.unwrap_or(-1)))
            };
            Attempt {
                phase,
                exit_code: code,
                message,
                stdout,
                duration,
                pid,
            }
        }
    }
}

async fn pump<R: AsyncRead + Unpin>(
    r: R,
    prefix: Option<String>,
    log: Option<Arc<Mutex<std::fs::File>>>,
    capture: Option<Arc<Mutex<String>>>,
) {
    use std::io::Write;
    // Bytes, not `lines()`: invalid UTF-8 must not stop the draining (a child writing into a
    // full pipe would block forever).
    let mut reader = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim_end_matches(['\n', '\r']);
        if let Some(p) = &prefix {
            eprintln!("{p} {line}");
        }
        if let Some(f) = &log {
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(f, "{line}");
        }
        if let Some(c) = &capture {
            let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
            if c.len() + line.len() < MAX_RESULT_BYTES {
                if !c.is_empty() {
                    c.push('\n');
                }
                c.push_str(line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn(program: &str, args: &[&str], deadline_ms: u64) -> Spawn {
        Spawn {
            program: PathBuf::from(program),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec![],
            cwd: None,
            deadline: Some(Duration::from_millis(deadline_ms)),
            deadline_reason: "test deadline".into(),
            log_prefix: None,
            log_file: None,
        }
    }

    #[tokio::test]
    async fn drains_large_non_utf8_output() {
        // 1 MB of random bytes (invalid UTF-8, far beyond a pipe buffer): if the reader
        // stopped at the first bad byte, `head` would block until the deadline.
        let a = run_attempt(&spawn("head", &["-c", "1000000", "/dev/urandom"], 60_000)).await;
        assert_eq!(a.phase, Phase::Succeeded, "{}", a.message);
        assert_eq!(a.exit_code, Some(0));
        assert!(a.stdout.len() <= MAX_RESULT_BYTES + 4, "result is capped");
    }

    #[tokio::test]
    async fn exit_codes_signals_and_spawn_errors() {
        let a = run_attempt(&spawn("false", &[], 60_000)).await;
        assert_eq!((a.phase, a.exit_code), (Phase::Failed, Some(1)));
        let a = run_attempt(&spawn("sleep", &["30"], 100)).await;
        assert_eq!((a.phase, a.exit_code), (Phase::Failed, Some(137)));
        assert!(
            a.message.starts_with("test deadline exceeded: killed PID"),
            "{}",
            a.message
        );
        let a = run_attempt(&spawn("/nonexistent/binary", &[], 1000)).await;
        assert_eq!((a.phase, a.exit_code), (Phase::Error, None));
        assert!(
            a.message.contains("cannot start /nonexistent/binary"),
            "{}",
            a.message
        );
    }
}
