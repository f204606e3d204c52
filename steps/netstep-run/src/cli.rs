//! Command line: `netstep-run run ...` and `netstep-run lint FILES...`.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::diag::Error;
use crate::engine::{self, RunConfig};
use crate::model::{self, Catalog};

#[derive(Debug, Parser)]
#[command(
    name = "netstep-run",
    version,
    about = "Run netstep's Argo pipeline WorkflowTemplates locally (steps as processes), or lint them offline.",
    after_help = "Exit codes: 0 workflow Succeeded / lint clean, 1 workflow Failed, 2 invalid manifests or usage."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Lint, then run a pipeline WorkflowTemplate with local processes.
    Run(Box<RunArgs>),
    /// Lint Argo manifests offline (files or directories), like `argo lint --offline`.
    Lint {
        /// YAML files or directories (searched recursively for *.yaml / *.yml).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Pipeline file (e.g. workflows/pipeline-infra.yaml) or WorkflowTemplate name.
    #[arg(long)]
    pub pipeline: String,
    /// Step WorkflowTemplates [default: `templates` next to the workflows dir].
    #[arg(long)]
    pub templates_dir: Option<PathBuf>,
    /// Pipeline WorkflowTemplates [default: the pipeline file's directory].
    #[arg(long)]
    pub workflows_dir: Option<PathBuf>,
    /// Workflow parameter NAME=VALUE (repeatable), e.g. -p state=file:///abs/dir.
    #[arg(short = 'p', long = "parameter", value_parser = parse_kv)]
    pub params: Vec<(String, String)>,
    /// Where the step binaries are [default: <workspace>/target/debug].
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Per-run directory for step tmp dirs and logs [default: $TMPDIR/netstep-run/<workflow>].
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Start armsim (from --bin-dir) on 127.0.0.1 and point the steps at it.
    #[arg(long)]
    pub simulate: bool,
    /// World file for armsim.
    #[arg(long, default_value = "examples/globojava/world.json")]
    pub world: PathBuf,
    /// Multiply retry backoff delays and maxDuration by this factor (e.g. 0.01 in tests).
    #[arg(long, default_value_t = 1.0)]
    pub backoff_scale: f64,
    /// Map a container path to a host directory, CONTAINER_PATH=HOST_DIR (repeatable),
    /// e.g. --mount /work/intent=../intent-repo. Git input artifacts default to the
    /// current directory; the pod's /tmp always maps to <workdir>/<task>/tmp.
    #[arg(long = "mount", value_parser = parse_mount)]
    pub mounts: Vec<(String, PathBuf)>,
    /// Also write the run report as JSON to this file.
    #[arg(long)]
    pub report_json: Option<PathBuf>,
    /// Do not forward step stdout/stderr (they are still in <workdir>/<task>/logs/).
    #[arg(long)]
    pub no_step_logs: bool,
}

fn parse_mount(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((c, h)) if c.starts_with('/') && !h.is_empty() => {
            let host = PathBuf::from(h);
            let host = host.canonicalize().map_err(|e| format!("{h}: {e}"))?;
            Ok((c.to_string(), host))
        }
        _ => Err(format!(
            "expected /CONTAINER/PATH=HOST_DIR (an existing host path), got `{s}`"
        )),
    }
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected NAME=VALUE, got `{s}`")),
    }
}

/// `<workspace>/target/debug` (walking up from the current directory), else the
/// directory of this executable.
pub fn default_bin_dir() -> PathBuf {
    if let Ok(mut dir) = std::env::current_dir() {
        loop {
            let manifest = dir.join("Cargo.toml");
            if std::fs::read_to_string(&manifest).is_ok_and(|s| s.contains("[workspace]")) {
                let d = dir.join("target").join("debug");
                if d.is_dir() {
                    return d;
                }
                break;
            }
            if !dir.pop() {
                break;
            }
        }
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target/debug"))
}

/// Lints files/directories; prints diagnostics; returns the exit code.
pub fn lint_paths(paths: &[PathBuf]) -> i32 {
    let mut diags = Vec::new();
    let docs = match model::load_paths(paths, &mut diags) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("netstep-run: {e}");
            return 2;
        }
    };
    if docs.is_empty() && diags.is_empty() {
        eprintln!("netstep-run: no Argo Workflow/WorkflowTemplate/CronWorkflow documents found");
        return 2;
    }
    let n = docs.len();
    let cat = Catalog::new(docs, &mut diags);
    diags.extend(crate::lint::lint(&cat, None));
    diags.sort();
    diags.dedup();
    if diags.is_empty() {
        println!("no linting errors found ({n} Argo documents)");
        0
    } else {
        for d in &diags {
            eprintln!("{d}");
        }
        eprintln!("{} linting error(s)", diags.len());
        2
    }
}

/// Runs the CLI; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Lint { paths } => lint_paths(&paths),
        Command::Run(a) => {
            let a = *a;
            let mut cfg = RunConfig::new(a.pipeline, a.bin_dir.unwrap_or_else(default_bin_dir));
            cfg.templates_dir = a.templates_dir;
            cfg.workflows_dir = a.workflows_dir;
            cfg.params = a.params;
            cfg.workdir = a.workdir;
            cfg.mounts = a.mounts;
            cfg.simulate = a.simulate;
            cfg.world = a.world;
            cfg.backoff_scale = a.backoff_scale;
            cfg.forward_logs = !a.no_step_logs;
            if !(cfg.backoff_scale.is_finite() && cfg.backoff_scale >= 0.0) {
                eprintln!("netstep-run: --backoff-scale must be a non-negative number");
                return 2;
            }
            match engine::run(cfg).await {
                Ok(report) => {
                    eprint!("\n{}", report.summary());
                    if let Some(p) = a.report_json {
                        let text =
                            serde_json::to_string_pretty(&report.to_json()).unwrap_or_default();
                        if let Err(e) = std::fs::write(&p, text) {
                            eprintln!("netstep-run: {}: {e}", p.display());
                        }
                    }
                    report.exit_code()
                }
                Err(e) => {
                    match &e {
                        Error::Invalid(diags) => {
                            for d in diags {
                                eprintln!("{d}");
                            }
                            eprintln!("{} problem(s); nothing was run", diags.len());
                        }
                        other => eprintln!("netstep-run: {other}"),
                    }
                    e.exit_code()
                }
            }
        }
    }
}
