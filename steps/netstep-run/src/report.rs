//! Node phases, progress lines on stderr and the end-of-run summary table.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::duration::human;

/// Argo node phases (plus `Running` while in flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    Succeeded,
    Failed,
    Error,
    /// `when` evaluated to false.
    Skipped,
    /// Not run because its dependencies did not allow it (or fail-fast).
    Omitted,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Error => "Error",
            Phase::Skipped => "Skipped",
            Phase::Omitted => "Omitted",
        }
    }

    pub fn failed_or_error(self) -> bool {
        matches!(self, Phase::Failed | Phase::Error)
    }
}

/// One row of the summary: a leaf (container) node, or a skipped/omitted task.
#[derive(Debug, Clone)]
pub struct NodeReport {
    /// Display name: `task`, `parent.task`, `onExit` ...
    pub name: String,
    /// `WorkflowTemplate/template`
    pub template: String,
    pub phase: Phase,
    pub attempts: u32,
    pub duration: Duration,
    pub exit_code: Option<i32>,
    pub message: String,
    pub started_at: Option<Instant>,
}

/// The result of a whole run.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub workflow_name: String,
    pub pipeline: String,
    /// Succeeded or Failed.
    pub phase: Phase,
    pub message: String,
    pub nodes: Vec<NodeReport>,
    pub duration: Duration,
    pub workdir: std::path::PathBuf,
}

impl RunReport {
    pub fn exit_code(&self) -> i32 {
        if self.phase == Phase::Succeeded { 0 } else { 1 }
    }

    pub fn node(&self, name: &str) -> Option<&NodeReport> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The summary table (what `run` prints to stderr at the end).
    pub fn summary(&self) -> String {
        let headers = ["TASK", "STATUS", "ATTEMPTS", "DURATION", "EXIT", "MESSAGE"];
        let rows: Vec<[String; 6]> = self
            .nodes
            .iter()
            .map(|n| {
                [
                    n.name.clone(),
                    n.phase.as_str().to_string(),
                    n.attempts.to_string(),
                    if n.attempts > 0 {
                        human(n.duration)
                    } else {
                        "-".into()
                    },
                    n.exit_code.map_or("-".into(), |c| c.to_string()),
                    n.message.clone(),
                ]
            })
            .collect();
        let mut widths = headers.map(str::len);
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r.iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let line = |cells: &[String], out: &mut String| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    s.push_str(c);
                } else {
                    let _ = write!(s, "{c:<w$}  ", w = widths[i]);
                }
            }
            out.push_str(s.trim_end());
            out.push('\n');
        };
        line(&headers.map(String::from), &mut out);
        for r in &rows {
            line(r, &mut out);
        }
        let _ = writeln!(
            out,
            "workflow {} ({}): {} in {}{}",
            self.workflow_name,
            self.pipeline,
            self.phase.as_str(),
            human(self.duration),
            if self.message.is_empty() {
                String::new()
            } else {
                format!(": {}", self.message)
            }
        );
        out
    }

    /// A machine-readable report.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "workflow": self.workflow_name,
            "pipeline": self.pipeline,
            "phase": self.phase.as_str(),
            "message": self.message,
            "durationSeconds": self.duration.as_secs_f64(),
            "workdir": self.workdir.display().to_string(),
            "nodes": self.nodes.iter().map(|n| serde_json::json!({
                "name": n.name,
                "template": n.template,
                "phase": n.phase.as_str(),
                "attempts": n.attempts,
                "durationSeconds": n.duration.as_secs_f64(),
                "exitCode": n.exit_code,
                "message": n.message,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Progress lines on stderr, stamped with time since the run started.
#[derive(Debug, Clone)]
pub struct Progress {
    start: Instant,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress {
            start: Instant::now(),
            quiet,
        }
    }

    pub fn line(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!(
                "netstep-run [{:>7.2}s] {}",
                self.start.elapsed().as_secs_f64(),
                msg.as_ref()
            );
        }
    }
}
