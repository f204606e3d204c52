//! Executing a pipeline locally.
//!
//! * **Containers are processes.** The binary is the basename of `container.command[0]`
//!   (`/usr/local/bin/tag-groups` -> `tag-groups`) or, when the bin dir has no such file
//!   (e.g. a generic `/step` entrypoint), the image name without registry, tag and digest;
//!   see [`crate::paths`]. `command[1..]` + `args` are passed as argv (no shell); container
//!   `env` is added to the inherited environment.
//! * **Path mapping.** A pod's writable `/tmp` (our steps mount an emptyDir there) becomes
//!   `<workdir>/<node>/tmp`, recreated empty for every attempt like a new pod. Container
//!   paths written *in the template* are rewritten: an argv element, env value,
//!   `workingDir`, `outputs.parameters[].valueFrom.path` or input default that is `/tmp`
//!   or starts with `/tmp/` — or an argv element `--flag=/tmp/...`. The rewrite happens
//!   before `{{...}}` substitution, so values supplied by the user (`-p dir=/tmp/x`) or by
//!   callers are host paths and stay untouched. `TMPDIR` points at the local dir too.
//!   Input artifacts and `--mount`s extend the same mount table.
//! * **DAGs** run tasks as soon as their `dependencies`/`depends` allow, concurrently;
//!   `steps` run group by group, each group's steps concurrently.
//! * **Retries** follow Argo's `processNodeRetries`: backoff (duration x factor^n, cap,
//!   maxDuration from the first attempt's start), retryPolicy, limit, then expression.
//! * **Deadlines**: `activeDeadlineSeconds` per attempt (SIGKILL to the child's PID), the
//!   workflow's `spec.activeDeadlineSeconds` for the whole run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Semaphore;

use crate::diag::Error;
use crate::duration::{human, parse_duration};
use crate::expr::{self, Expr, Val, split_depends_atom};
use crate::lint::task_deps;
use crate::model::{self, Body, Catalog, Container, Dag, Task, Template, TemplateId};
use crate::paths::{Mounts, binary_candidates, covers, find_binary, map_path};
use crate::process::{self, Spawn};
use crate::report::{NodeReport, Phase, Progress, RunReport};
use crate::retry::{Backoff, Decision, RetryPlan, decide_retry};
use crate::sim::{SIM_TOKEN, Simulator};
use crate::subst;

use crate::plan::resolve_params;
pub use crate::plan::{Plan, RunConfig, plan};

/// Plans, then runs the pipeline. `Err` only for invalid input / setup problems (exit 2);
/// a failed workflow is an `Ok` report with phase Failed.
pub async fn run(cfg: RunConfig) -> Result<RunReport, Error> {
    let plan = plan(&cfg)?;
    // Validate parameters before starting anything (the simulator fills arm-endpoint).
    let placeholder = cfg.simulate.then_some("http://127.0.0.1:0");
    resolve_params(&plan, &cfg.params, placeholder, None)?;
    if cfg.simulate && !cfg.world.is_file() {
        return Err(Error::Usage(format!(
            "--world {}: no such file",
            cfg.world.display()
        )));
    }
    let uid = uuid::Uuid::new_v4();
    let suffix: String = uid.simple().to_string().chars().take(5).collect();
    let workflow_name = format!("{}-{suffix}", plan.root_name);
    let workdir = match &cfg.workdir {
        Some(w) => w.clone(),
        None => std::env::temp_dir()
            .join("netstep-run")
            .join(&workflow_name),
    };
    std::fs::create_dir_all(&workdir).map_err(|source| Error::Io {
        path: workdir.clone(),
        source,
    })?;
    let workdir = workdir.canonicalize().unwrap_or(workdir);
    let progress = Progress::new(cfg.quiet);
    let mut env = cfg.env.clone();
    let sim = if cfg.simulate {
        let world = cfg.world.canonicalize().unwrap_or(cfg.world.clone());
        let s = Simulator::start(
            &cfg.bin_dir,
            &world,
            Some(workdir.join("armsim.log")),
            Duration::from_secs(30),
        )
        .await?;
        progress.line(format!("armsim started at {} (PID {})", s.url, s.pid));
        let declares_endpoint = plan.params.iter().any(|(n, _)| n == "arm-endpoint");
        progress.line(format!(
            "steps get NETSTEP_ARM_ENDPOINT={} and NETSTEP_ARM_TOKEN=<simulated>{}",
            s.url,
            if declares_endpoint {
                "; workflow parameter arm-endpoint overridden"
            } else {
                ""
            }
        ));
        env.push(("NETSTEP_ARM_ENDPOINT".into(), s.url.clone()));
        env.push(("NETSTEP_ARM_TOKEN".into(), SIM_TOKEN.into()));
        // The simulator's operations take milliseconds: poll at its time scale (the steps'
        // defaults are Azure's: seconds between LRO polls, 10 s between deployment polls).
        for (k, v) in [
            ("NETSTEP_LRO_POLL_MS", "50"),
            ("NETSTEP_DEPLOY_POLL_MS", "100"),
            ("NETSTEP_POLICY_POLL_MS", "100"),
        ] {
            if std::env::var_os(k).is_none() {
                env.push((k.into(), v.into()));
            }
        }
        Some(s)
    } else {
        None
    };
    let mut globals = HashMap::new();
    globals.insert("workflow.name".to_string(), workflow_name.clone());
    globals.insert("workflow.uid".to_string(), uid.to_string());
    globals.insert("workflow.namespace".to_string(), "local".to_string());
    globals.insert("workflow.status".to_string(), "Running".to_string());
    globals.insert("workflow.failures".to_string(), "[]".to_string());
    globals.insert(
        "workflow.mainEntrypoint".to_string(),
        plan.entrypoint.clone(),
    );
    globals.insert(
        "workflow.creationTimestamp".to_string(),
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    );
    let params = match resolve_params(
        &plan,
        &cfg.params,
        sim.as_ref().map(|s| s.url.as_str()),
        Some(&globals),
    ) {
        Ok(p) => p,
        Err(e) => {
            if let Some(s) = sim {
                s.stop().await;
            }
            return Err(e);
        }
    };
    if !plan.mutexes.is_empty() {
        let lookup = |tag: &str| {
            let name = tag.strip_prefix("workflow.parameters.")?;
            params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let names: Vec<String> = plan
            .mutexes
            .iter()
            .map(|m| subst::substitute(m, &lookup).unwrap_or_else(|_| m.clone()))
            .collect();
        progress.line(format!(
            "note: synchronization mutex(es) {} are not enforced by the local runner",
            names.join(", ")
        ));
    }
    globals.insert(
        "workflow.parameters".to_string(),
        serde_json::Value::Array(
            params
                .iter()
                .map(|(n, v)| serde_json::json!({"name": n, "value": v}))
                .collect(),
        )
        .to_string(),
    );
    for (n, v) in &params {
        globals.insert(format!("workflow.parameters.{n}"), v.clone());
    }
    progress.line(format!(
        "workflow {workflow_name}: pipeline '{}', entrypoint '{}', workdir {}",
        plan.name,
        plan.entrypoint,
        workdir.display()
    ));
    let started = Instant::now();
    let engine = Arc::new(Engine {
        mounts: cfg.mounts.clone(),
        git_dir: std::env::current_dir()
            .and_then(|d| d.canonicalize())
            .unwrap_or_else(|_| PathBuf::from(".")),
        exec_doc: plan.exec_doc,
        cat: plan.catalog,
        bin_dir: cfg.bin_dir.clone(),
        workdir: workdir.clone(),
        backoff_scale: cfg.backoff_scale,
        env,
        globals: Mutex::new(globals),
        nodes: Mutex::new(Vec::new()),
        progress: progress.clone(),
        forward_logs: cfg.forward_logs,
        semaphore: plan.parallelism.map(Semaphore::new),
    });
    let entry = engine
        .cat
        .find_local(engine.exec_doc, &plan.entrypoint)
        .ok_or_else(|| Error::Usage(format!("entrypoint '{}' undefined", plan.entrypoint)))?;
    let entry_args: HashMap<String, String> = params.iter().cloned().collect();
    let main = engine
        .clone()
        .exec(entry, entry_args.clone(), String::new());
    let main_outcome = tokio::select! {
        o = async {
            match plan.active_deadline {
                Some(d) => tokio::time::timeout(d, main).await.map_err(|_| {
                    format!("workflow activeDeadlineSeconds ({}s) exceeded", d.as_secs())
                }),
                None => Ok(main.await),
            }
        } => o,
        _ = tokio::signal::ctrl_c() => Err("interrupted (Ctrl-C)".to_string()),
    };
    let (mut phase, mut message) = match main_outcome {
        Ok(o) => (
            if o.phase == Phase::Succeeded {
                Phase::Succeeded
            } else {
                Phase::Failed
            },
            o.message,
        ),
        Err(m) => {
            engine.fail_running(&m);
            progress.line(&m);
            (Phase::Failed, m)
        }
    };
    if let Some(on_exit) = &plan.on_exit {
        engine.set_global("workflow.status", phase.as_str());
        engine.set_global(
            "workflow.duration",
            &format!("{:.3}", started.elapsed().as_secs_f64()),
        );
        engine.set_global("workflow.failures", &engine.failures_json());
        if let Some(id) = engine.cat.find_local(engine.exec_doc, on_exit) {
            progress.line(format!(
                "running onExit handler '{on_exit}' (workflow.status={})",
                phase.as_str()
            ));
            let out = engine
                .clone()
                .exec(id, HashMap::new(), "onExit".into())
                .await;
            if out.phase.failed_or_error() {
                phase = Phase::Failed;
                if message.is_empty() {
                    message = format!("onExit handler failed: {}", out.message);
                }
            }
        }
    }
    if let Some(s) = sim {
        s.stop().await;
        progress.line("armsim stopped");
    }
    let nodes = engine
        .nodes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(RunReport {
        workflow_name,
        pipeline: plan.name,
        phase,
        message,
        nodes,
        duration: started.elapsed(),
        workdir,
    })
}

/// Result of running a template.
#[derive(Debug, Clone)]
struct Outcome {
    phase: Phase,
    outputs: HashMap<String, String>,
    exit_code: Option<i32>,
    result: Option<String>,
    message: String,
}

impl Outcome {
    fn new(phase: Phase, message: impl Into<String>) -> Outcome {
        Outcome {
            phase,
            outputs: HashMap::new(),
            exit_code: None,
            result: None,
            message: message.into(),
        }
    }
}

struct Engine {
    cat: Catalog,
    mounts: Mounts,
    git_dir: PathBuf,
    exec_doc: usize,
    bin_dir: PathBuf,
    workdir: PathBuf,
    backoff_scale: f64,
    env: Vec<(String, String)>,
    globals: Mutex<HashMap<String, String>>,
    nodes: Mutex<Vec<NodeReport>>,
    progress: Progress,
    forward_logs: bool,
    semaphore: Option<Semaphore>,
}

/// Variables visible while substituting inside one template.
struct Scope<'a> {
    inputs: &'a HashMap<String, String>,
    globals: &'a HashMap<String, String>,
    siblings: Option<(&'static str, &'a HashMap<String, Outcome>)>,
    retries: Option<u32>,
}

impl Scope<'_> {
    fn lookup(&self, tag: &str) -> Option<String> {
        if let Some(n) = tag.strip_prefix("inputs.parameters.") {
            return self.inputs.get(n).cloned();
        }
        if tag.starts_with("workflow.") {
            return self.globals.get(tag).cloned();
        }
        if tag == "retries" {
            return self.retries.map(|r| r.to_string());
        }
        let (prefix, sib) = self.siblings?;
        let rest = tag.strip_prefix(prefix)?.strip_prefix('.')?;
        let (name, field) = rest.split_once('.')?;
        let o = sib.get(name)?;
        match field {
            "status" => Some(o.phase.as_str().to_string()),
            "exitCode" => Some(o.exit_code.map_or("-1".into(), |c| c.to_string())),
            "outputs.result" => o.result.clone(),
            f => o
                .outputs
                .get(f.strip_prefix("outputs.parameters.")?)
                .cloned(),
        }
    }

    fn sub(&self, s: &str) -> Result<String, subst::TagError> {
        subst::substitute(s, &|t| self.lookup(t))
    }
}

fn sanitize(display: &str) -> String {
    display
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Engine {
    /// The node's mount table: its `/tmp`, `--mount`s, then input artifacts not covered
    /// by a `--mount` (git -> the current directory, raw -> a file written per node).
    fn node_mounts(&self, t: &Template, local_tmp: &Path) -> Mounts {
        let mut m: Mounts = vec![("/tmp".into(), local_tmp.to_path_buf())];
        m.extend(self.mounts.iter().cloned());
        let node_dir = local_tmp.parent().unwrap_or(local_tmp);
        for a in &t.input_artifacts {
            let Some(p) = &a.path else { continue };
            if self.mounts.iter().any(|(prefix, _)| covers(prefix, p)) {
                continue;
            }
            match a.source.as_str() {
                "git" => m.push((p.clone(), self.git_dir.clone())),
                "raw" => m.push((p.clone(), node_dir.join("artifacts").join(&a.name))),
                _ => {}
            }
        }
        m
    }

    /// Writes raw input artifacts and reports how git artifacts are resolved.
    fn prepare_artifacts(
        &self,
        t: &Template,
        scope: &Scope,
        node_dir: &Path,
        display: &str,
    ) -> Result<(), String> {
        for a in &t.input_artifacts {
            let Some(p) = &a.path else { continue };
            if let Some((prefix, host)) = self.mounts.iter().find(|(m, _)| covers(m, p)) {
                self.progress.line(format!(
                    "{display}: input artifact '{}' at {p}: --mount {prefix}={}",
                    a.name,
                    host.display()
                ));
                continue;
            }
            match a.source.as_str() {
                "git" => self.progress.line(format!(
                    "{display}: input artifact '{}' (git) at {p}: using the local working tree {} (no checkout; override with --mount {p}=DIR)",
                    a.name,
                    self.git_dir.display()
                )),
                "raw" => {
                    let data = scope
                        .sub(a.raw_data.as_deref().unwrap_or(""))
                        .map_err(|e| format!("input artifact '{}': {e}", a.name))?;
                    let file = node_dir.join("artifacts").join(&a.name);
                    std::fs::create_dir_all(node_dir.join("artifacts"))
                        .and_then(|_| std::fs::write(&file, data))
                        .map_err(|e| format!("input artifact '{}': {}: {e}", a.name, file.display()))?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn globals(&self) -> HashMap<String, String> {
        self.globals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_global(&self, k: &str, v: &str) {
        self.globals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(k.to_string(), v.to_string());
    }

    fn failures_json(&self) -> String {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        serde_json::Value::Array(
            nodes
                .iter()
                .filter(|n| n.phase.failed_or_error())
                .map(|n| {
                    serde_json::json!({
                        "displayName": n.name,
                        "message": n.message,
                        "templateName": n.template,
                        "phase": n.phase.as_str(),
                    })
                })
                .collect(),
        )
        .to_string()
    }

    fn add_node(&self, n: NodeReport) -> usize {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.push(n);
        nodes.len() - 1
    }

    fn update_node(&self, i: usize, f: impl FnOnce(&mut NodeReport)) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = nodes.get_mut(i) {
            f(n);
        }
    }

    fn fail_running(&self, msg: &str) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        for n in nodes.iter_mut().filter(|n| n.phase == Phase::Running) {
            n.phase = Phase::Failed;
            n.message = msg.to_string();
            if let Some(s) = n.started_at {
                n.duration = s.elapsed();
            }
        }
    }

    fn template_label(&self, id: TemplateId) -> String {
        format!(
            "{}/{}",
            self.cat.doc(id.doc).name,
            self.cat.template(id).name
        )
    }

    /// Records a task that did not run (omitted, skipped, or failed before starting).
    fn record_not_run(&self, display: &str, template: String, o: &Outcome) {
        self.progress
            .line(format!("{display}: {} ({})", o.phase.as_str(), o.message));
        self.add_node(NodeReport {
            name: display.to_string(),
            template,
            phase: o.phase,
            attempts: 0,
            duration: Duration::ZERO,
            exit_code: None,
            message: o.message.clone(),
            started_at: None,
        });
        self.write_phase(display, o);
    }

    fn exec(
        self: Arc<Self>,
        id: TemplateId,
        args: HashMap<String, String>,
        display: String,
    ) -> BoxFuture<'static, Outcome> {
        Box::pin(async move {
            let t = self.cat.template(id);
            let globals = self.globals();
            // Resolve inputs: argument, else the input's value, else its default.
            let mut inputs = HashMap::new();
            let local_tmp = self
                .workdir
                .join(sanitize(&display_or(&display, &t.name)))
                .join("tmp");
            let mounts = self.node_mounts(t, &local_tmp);
            for p in &t.inputs {
                // Caller arguments are final values; the template's own value/default is
                // template text (container paths mapped, tags substituted).
                if let Some(v) = args.get(&p.name) {
                    inputs.insert(p.name.clone(), v.clone());
                    continue;
                }
                let raw = p.value.clone().or(p.default.clone()).map(|v| {
                    if matches!(t.body, Body::Container(_)) {
                        map_path(&v, &mounts)
                    } else {
                        v
                    }
                });
                let Some(raw) = raw else {
                    let o = Outcome::new(
                        Phase::Error,
                        format!("inputs.parameters.{} was not supplied", p.name),
                    );
                    self.record_not_run(
                        &display_or(&display, &t.name),
                        self.template_label(id),
                        &o,
                    );
                    return o;
                };
                let empty = HashMap::new();
                let scope = Scope {
                    inputs: &empty,
                    globals: &globals,
                    siblings: None,
                    retries: None,
                };
                match scope.sub(&raw) {
                    Ok(v) => {
                        inputs.insert(p.name.clone(), v);
                    }
                    Err(e) => {
                        let o = Outcome::new(
                            Phase::Error,
                            format!("inputs.parameters.{}: {e}", p.name),
                        );
                        self.record_not_run(
                            &display_or(&display, &t.name),
                            self.template_label(id),
                            &o,
                        );
                        return o;
                    }
                }
            }
            match &t.body {
                Body::Container(c) => {
                    self.exec_container(id, t, c, &inputs, &display_or(&display, &t.name))
                        .await
                }
                Body::Dag(d) => self.exec_dag(id, t, d, &inputs, &display).await,
                Body::Steps(groups) => self.exec_steps(id, t, groups, &inputs, &display).await,
                Body::Unsupported(k) => {
                    let o = Outcome::new(
                        Phase::Error,
                        format!("template type '{k}' is not supported"),
                    );
                    self.record_not_run(
                        &display_or(&display, &t.name),
                        self.template_label(id),
                        &o,
                    );
                    o
                }
                Body::None => Outcome::new(Phase::Error, "template has no type"),
            }
        })
    }

    fn retry_plan(&self, t: &Template, scope: &Scope) -> Result<Option<RetryPlan>, String> {
        let Some(r) = &t.retry else { return Ok(None) };
        let get = |v: &Option<model::Spanned>| -> Result<Option<String>, String> {
            v.as_ref()
                .map(|s| scope.sub(&s.value).map_err(|e| e.to_string()))
                .transpose()
        };
        let limit = get(&r.limit)?
            .map(|l| {
                l.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("retryStrategy.limit: `{l}` is not an integer"))
            })
            .transpose()?;
        let dur = |v: &Option<model::Spanned>, f: &str| -> Result<Option<Duration>, String> {
            get(v)?
                .map(|s| parse_duration(&s).map_err(|e| format!("retryStrategy.backoff.{f}: {e}")))
                .transpose()
        };
        let backoff = if r.duration.is_some()
            || r.factor.is_some()
            || r.max_duration.is_some()
            || r.cap.is_some()
        {
            Some(Backoff {
                duration: dur(&r.duration, "duration")?,
                factor: get(&r.factor)?
                    .map(|f| {
                        f.trim().parse::<u32>().map_err(|_| {
                            format!("retryStrategy.backoff.factor: `{f}` is not an integer")
                        })
                    })
                    .transpose()?,
                max_duration: dur(&r.max_duration, "maxDuration")?,
                cap: dur(&r.cap, "cap")?,
            })
        } else {
            None
        };
        let expression = r
            .expression
            .as_ref()
            .map(|e| {
                expr::parse(&e.value, false).map_err(|e| format!("retryStrategy.expression: {e}"))
            })
            .transpose()?;
        let policy = match (&r.policy, &expression) {
            (Some(p), _) => p.value.clone(),
            (None, Some(_)) => "Always".to_string(),
            (None, None) => "OnFailure".to_string(),
        };
        Ok(Some(RetryPlan {
            limit,
            policy,
            expression,
            backoff,
        }))
    }

    async fn exec_container(
        &self,
        id: TemplateId,
        t: &Template,
        c: &Container,
        inputs: &HashMap<String, String>,
        display: &str,
    ) -> Outcome {
        let label = self.template_label(id);
        let globals = self.globals();
        let scope0 = Scope {
            inputs,
            globals: &globals,
            siblings: None,
            retries: Some(0),
        };
        let node_dir = self.workdir.join(sanitize(display));
        let local_tmp = node_dir.join("tmp");
        let mounts = self.node_mounts(t, &local_tmp);
        type Deadline = Option<(Duration, String)>;
        let setup = (|| -> Result<(Option<RetryPlan>, Deadline), String> {
            self.prepare_artifacts(t, &scope0, &node_dir, display)?;
            let plan = self.retry_plan(t, &scope0)?;
            let deadline = t
                .active_deadline_seconds
                .as_ref()
                .map(|a| {
                    let v = scope0.sub(&a.value).map_err(|e| e.to_string())?;
                    v.trim()
                        .parse::<u64>()
                        .map(|n| (Duration::from_secs(n), format!("activeDeadlineSeconds={n}")))
                        .map_err(|_| format!("activeDeadlineSeconds: `{v}` is not an integer"))
                })
                .transpose()?;
            // Template `timeout` (a duration; locally there is no Pending time) bounds each
            // attempt too; the smaller limit wins.
            let timeout = t
                .timeout
                .as_ref()
                .map(|a| {
                    let v = scope0.sub(&a.value).map_err(|e| e.to_string())?;
                    parse_duration(&v)
                        .map(|d| (d, format!("timeout={}", v.trim())))
                        .map_err(|e| format!("timeout: {e}"))
                })
                .transpose()?;
            let deadline = match (deadline, timeout) {
                (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
                (a, b) => a.or(b),
            };
            Ok((plan, deadline))
        })();
        let (retry, deadline) = match setup {
            Ok(x) => x,
            Err(m) => {
                let o = Outcome::new(Phase::Error, m);
                self.record_not_run(display, label, &o);
                return o;
            }
        };
        let max_attempts = retry.as_ref().map_or(Some(1), |r| r.limit.map(|l| l + 1));
        let attempts_label = |n: u32| match max_attempts {
            Some(m) => format!("{n}/{m}"),
            None => format!("{n}/unlimited"),
        };
        let node = self.add_node(NodeReport {
            name: display.to_string(),
            template: label.clone(),
            phase: Phase::Running,
            attempts: 0,
            duration: Duration::ZERO,
            exit_code: None,
            message: String::new(),
            started_at: Some(Instant::now()),
        });
        let first_start = Instant::now();
        let mut attempts = 0u32;
        let mut total = Duration::ZERO;
        let final_outcome = loop {
            attempts += 1;
            let scope = Scope {
                inputs,
                globals: &globals,
                siblings: None,
                retries: Some(attempts - 1),
            };
            let spawn = match self.build_spawn(
                c,
                &scope,
                &local_tmp,
                &mounts,
                display,
                attempts,
                deadline.clone(),
                retry.as_ref(),
                first_start,
            ) {
                Ok(s) => s,
                Err(m) => break Outcome::new(Phase::Error, m),
            };
            if let Err(e) = std::fs::remove_dir_all(&local_tmp)
                .or_else(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .and_then(|_| std::fs::create_dir_all(&local_tmp))
            {
                break Outcome::new(
                    Phase::Error,
                    format!("cannot prepare {}: {e}", local_tmp.display()),
                );
            }
            let _permit = match &self.semaphore {
                Some(s) => s.acquire().await.ok(),
                None => None,
            };
            self.progress.line(format!(
                "{display}: started (attempt {}) {}",
                attempts_label(attempts),
                spawn.program.display()
            ));
            self.update_node(node, |n| n.attempts = attempts);
            let mut attempt = process::run_attempt(&spawn).await;
            drop(_permit);
            total += attempt.duration;
            let mut outputs = HashMap::new();
            if attempt.phase == Phase::Succeeded {
                match self.read_outputs(t, &scope, &mounts) {
                    Ok(o) => outputs = o,
                    Err(m) => {
                        attempt.phase = Phase::Error;
                        attempt.message = m;
                    }
                }
            }
            let code = attempt.exit_code.map_or("-".into(), |c| c.to_string());
            self.progress.line(format!(
                "{display}: {} in {} (exit {code}){}",
                attempt.phase.as_str(),
                human(attempt.duration),
                if attempt.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", attempt.message)
                }
            ));
            self.update_node(node, |n| n.exit_code = attempt.exit_code);
            if attempt.phase == Phase::Succeeded {
                break Outcome {
                    phase: Phase::Succeeded,
                    outputs,
                    exit_code: attempt.exit_code,
                    result: Some(attempt.stdout),
                    message: String::new(),
                };
            }
            let decision = match &retry {
                None => Decision::Stop(attempt.message.clone()),
                Some(r) => decide_retry(
                    r,
                    attempts,
                    &attempt,
                    first_start.elapsed(),
                    self.backoff_scale,
                ),
            };
            match decision {
                Decision::Retry(wait) => {
                    self.progress.line(format!(
                        "{display}: retrying in {} (attempt {} next)",
                        human(wait),
                        attempts_label(attempts + 1)
                    ));
                    tokio::time::sleep(wait).await;
                }
                Decision::Stop(reason) => {
                    let message = if reason == attempt.message || attempt.message.is_empty() {
                        reason
                    } else {
                        format!("{}; {reason}", attempt.message)
                    };
                    break Outcome {
                        phase: attempt.phase,
                        outputs,
                        exit_code: attempt.exit_code,
                        result: Some(attempt.stdout),
                        message,
                    };
                }
            }
        };
        self.update_node(node, |n| {
            n.phase = final_outcome.phase;
            n.message = final_outcome.message.clone();
            n.duration = total;
            n.attempts = attempts;
        });
        self.write_phase(display, &final_outcome);
        final_outcome
    }

    /// `<workdir>/<node>/phase`: `PHASE [EXIT]`, written when the node is final (for
    /// scripts and tests that watch a run).
    fn write_phase(&self, display: &str, o: &Outcome) {
        let dir = self.workdir.join(sanitize(display));
        let text = match o.exit_code {
            Some(c) => format!("{} {c}\n", o.phase.as_str()),
            None => format!("{}\n", o.phase.as_str()),
        };
        let _ = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(dir.join("phase"), text));
    }

    #[allow(clippy::too_many_arguments)]
    fn build_spawn(
        &self,
        c: &Container,
        scope: &Scope,
        local_tmp: &Path,
        mounts: &[(String, PathBuf)],
        display: &str,
        attempt: u32,
        deadline: Option<(Duration, String)>,
        retry: Option<&RetryPlan>,
        first_start: Instant,
    ) -> Result<Spawn, String> {
        let sub = |s: &str, what: &str| scope.sub(s).map_err(|e| format!("{what}: {e}"));
        let mut command = Vec::new();
        for (i, a) in c.command.iter().enumerate() {
            let raw = if i == 0 {
                a.clone()
            } else {
                map_path(a, mounts)
            };
            command.push(sub(&raw, &format!("command[{i}]"))?);
        }
        let mut args: Vec<String> = command.iter().skip(1).cloned().collect();
        for (i, a) in c.args.iter().enumerate() {
            args.push(sub(&map_path(a, mounts), &format!("args[{i}]"))?);
        }
        let image = c
            .image
            .as_ref()
            .map(|i| sub(&i.value, "image"))
            .transpose()?;
        let cands = binary_candidates(command.first().map(String::as_str), image.as_deref());
        let program = find_binary(&self.bin_dir, &cands).ok_or_else(|| {
            format!(
                "binary {} not found in {}",
                cands.join(" or "),
                self.bin_dir.display()
            )
        })?;
        let mut env: Vec<(String, String)> = Vec::new();
        env.push(("TMPDIR".into(), local_tmp.display().to_string()));
        for e in &c.env {
            match &e.value {
                Some(v) => env.push((
                    e.name.clone(),
                    sub(&map_path(v, mounts), &format!("env {}", e.name))?,
                )),
                None => self.progress.line(format!(
                    "{display}: env {} uses valueFrom, not supported locally: skipped",
                    e.name
                )),
            }
        }
        env.extend(self.env.iter().cloned());
        let cwd = match &c.working_dir {
            Some(w) => {
                let m = map_path(w, mounts);
                (m != *w)
                    .then(|| sub(&m, "workingDir"))
                    .transpose()?
                    .map(PathBuf::from)
            }
            None => None,
        };
        // Per-attempt deadline. Retries (not the first attempt) are also bounded by the
        // backoff maxDuration counted from the first attempt's start (Argo's
        // executionDeadline). --backoff-scale does not shrink this kill deadline.
        let mut limit = deadline;
        if let Some(m) = retry
            .and_then(|r| r.backoff.as_ref())
            .and_then(|b| b.max_duration)
            .filter(|_| attempt > 1)
        {
            let remaining = m.saturating_sub(first_start.elapsed());
            if limit.as_ref().is_none_or(|(d, _)| remaining < *d) {
                limit = Some((remaining, "retryStrategy.backoff.maxDuration".into()));
            }
        }
        let logs = self.workdir.join(sanitize(display)).join("logs");
        let _ = std::fs::create_dir_all(&logs);
        Ok(Spawn {
            program,
            args,
            env,
            cwd,
            deadline: limit.as_ref().map(|l| l.0),
            deadline_reason: limit.map(|l| l.1).unwrap_or_default(),
            log_prefix: self.forward_logs.then(|| format!("  [{display}]")),
            log_file: Some(logs.join(format!("attempt-{attempt}.log"))),
        })
    }

    fn read_outputs(
        &self,
        t: &Template,
        scope: &Scope,
        mounts: &[(String, PathBuf)],
    ) -> Result<HashMap<String, String>, String> {
        let mut out = HashMap::new();
        for o in &t.outputs {
            let default = o
                .default
                .as_ref()
                .map(|d| scope.sub(d).map_err(|e| e.to_string()))
                .transpose()?;
            let v = if let Some(p) = &o.from_path {
                let local = scope.sub(&map_path(p, mounts)).map_err(|e| e.to_string())?;
                match std::fs::read_to_string(&local) {
                    Ok(s) => s.strip_suffix('\n').map(str::to_string).unwrap_or(s),
                    Err(e) => match default {
                        Some(d) => d,
                        None => {
                            return Err(format!(
                                "output parameter '{}': cannot read {p} (local {local}): {e}; give it a valueFrom.default",
                                o.name
                            ));
                        }
                    },
                }
            } else if let Some(v) = &o.value {
                scope.sub(v).map_err(|e| e.to_string())?
            } else {
                default.unwrap_or_default()
            };
            out.insert(o.name.clone(), v);
        }
        Ok(out)
    }

    fn child_display(parent: &str, task: &str) -> String {
        if parent.is_empty() {
            task.to_string()
        } else {
            format!("{parent}.{task}")
        }
    }

    /// Prepares a task launch: arguments and `when`. Err = not launched (Skipped/Error).
    fn prepare_task(
        &self,
        doc: usize,
        task: &Task,
        scope: &Scope,
    ) -> Result<(TemplateId, HashMap<String, String>), Outcome> {
        let Some(target) = task.target.as_ref().and_then(|t| self.cat.resolve(doc, t)) else {
            return Err(Outcome::new(Phase::Error, "template not found"));
        };
        let mut args = HashMap::new();
        for a in &task.arguments {
            let Some(v) = &a.value else {
                return Err(Outcome::new(
                    Phase::Error,
                    format!("argument '{}' has no value", a.name),
                ));
            };
            match scope.sub(v) {
                Ok(v) => {
                    args.insert(a.name.clone(), v);
                }
                Err(e) => {
                    return Err(Outcome::new(
                        Phase::Error,
                        format!("argument '{}': {e}", a.name),
                    ));
                }
            }
        }
        if let Some(w) = &task.when {
            let text = scope
                .sub(&w.value)
                .map_err(|e| Outcome::new(Phase::Error, format!("when: {e}")))?;
            let ok = expr::parse(&text, true)
                .map_err(|e| e.to_string())
                // Like Argo's shouldExecute: bare words are strings (`plan == apply`).
                .and_then(|e| e.eval_bool(&|w| Some(Val::Str(w.to_string()))))
                .map_err(|e| Outcome::new(Phase::Error, format!("when `{text}`: {e}")))?;
            if !ok {
                return Err(Outcome::new(
                    Phase::Skipped,
                    format!("when '{text}' evaluated false"),
                ));
            }
        }
        Ok((target, args))
    }

    async fn exec_dag(
        self: &Arc<Self>,
        id: TemplateId,
        t: &Template,
        dag: &Dag,
        inputs: &HashMap<String, String>,
        display: &str,
    ) -> Outcome {
        let tasks = &dag.tasks;
        let index: HashMap<&str, usize> = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i))
            .collect();
        let deps: Vec<Vec<usize>> = tasks
            .iter()
            .map(|t| {
                task_deps(t)
                    .iter()
                    .filter_map(|d| index.get(d.as_str()).copied())
                    .collect()
            })
            .collect();
        let depends: Vec<Option<Expr>> = tasks
            .iter()
            .map(|t| {
                t.depends
                    .as_ref()
                    .and_then(|d| expr::parse(&d.value, true).ok())
            })
            .collect();
        // Tasks whose failure some other task explicitly handles (`x.Failed` etc.).
        let mut handled_by_depends = vec![false; tasks.len()];
        for e in depends.iter().flatten() {
            let mut ids = Vec::new();
            e.idents(&mut ids);
            for i in ids {
                if let (name, Some("Failed" | "Errored" | "AllFailed")) = split_depends_atom(&i)
                    && let Some(&k) = index.get(name)
                {
                    handled_by_depends[k] = true;
                }
            }
        }
        let mut done: Vec<Option<Outcome>> = vec![None; tasks.len()];
        let mut running = vec![false; tasks.len()];
        let mut results: HashMap<String, Outcome> = HashMap::new();
        let mut futs = FuturesUnordered::new();
        let mut stop: Option<String> = None;
        loop {
            let mut changed = true;
            while changed {
                changed = false;
                for i in 0..tasks.len() {
                    if done[i].is_some() || running[i] || deps[i].iter().any(|&d| done[d].is_none())
                    {
                        continue;
                    }
                    changed = true;
                    let task = &tasks[i];
                    let child = Self::child_display(display, &task.name);
                    let label = task
                        .target
                        .as_ref()
                        .and_then(|x| self.cat.resolve(id.doc, x))
                        .map(|x| self.template_label(x))
                        .unwrap_or_default();
                    let ok = match &depends[i] {
                        Some(e) => {
                            let env = |atom: &str| -> Option<Val> {
                                let (name, res) = split_depends_atom(atom);
                                let o = done[*index.get(name)?].as_ref()?;
                                let p = o.phase;
                                Some(Val::Bool(match res {
                                    None => matches!(p, Phase::Succeeded | Phase::Skipped),
                                    Some("Succeeded" | "AnySucceeded") => p == Phase::Succeeded,
                                    Some("Failed" | "AllFailed") => p == Phase::Failed,
                                    Some("Errored") => p == Phase::Error,
                                    Some("Skipped") => p == Phase::Skipped,
                                    Some("Omitted") => p == Phase::Omitted,
                                    _ => false,
                                }))
                            };
                            e.eval_bool(&env).unwrap_or(false)
                        }
                        None => deps[i].iter().all(|&d| {
                            let o = done[d].as_ref().map_or(Phase::Omitted, |o| o.phase);
                            let dt = &tasks[d];
                            matches!(o, Phase::Succeeded | Phase::Skipped)
                                || (o == Phase::Failed && dt.continue_on_failed)
                                || (o == Phase::Error && dt.continue_on_error)
                        }),
                    };
                    if !ok {
                        let o = Outcome::new(Phase::Omitted, "dependencies not satisfied");
                        self.record_not_run(&child, label, &o);
                        done[i] = Some(o);
                        continue;
                    }
                    if let Some(reason) = &stop {
                        let o = Outcome::new(Phase::Omitted, reason.clone());
                        self.record_not_run(&child, label, &o);
                        done[i] = Some(o);
                        continue;
                    }
                    let globals = self.globals();
                    let scope = Scope {
                        inputs,
                        globals: &globals,
                        siblings: Some(("tasks", &results)),
                        retries: None,
                    };
                    match self.prepare_task(id.doc, task, &scope) {
                        Ok((target, args)) => {
                            running[i] = true;
                            let fut = self.clone().exec(target, args, child);
                            futs.push(async move { (i, fut.await) });
                        }
                        Err(o) => {
                            self.record_not_run(&child, label, &o);
                            results.insert(task.name.clone(), o.clone());
                            done[i] = Some(o);
                        }
                    }
                }
            }
            let Some((i, out)) = futs.next().await else {
                break;
            };
            running[i] = false;
            let task = &tasks[i];
            let continued = (out.phase == Phase::Failed && task.continue_on_failed)
                || (out.phase == Phase::Error && task.continue_on_error);
            if out.phase.failed_or_error()
                && !continued
                && dag.fail_fast
                && !handled_by_depends[i]
                && stop.is_none()
            {
                stop = Some(format!(
                    "not started: task '{}' failed (failFast)",
                    task.name
                ));
            }
            results.insert(task.name.clone(), out.clone());
            done[i] = Some(out);
        }
        // A failure fails the DAG unless handled: continueOn, or a dependent task ran.
        let mut failed = Vec::new();
        for (i, task) in tasks.iter().enumerate() {
            let Some(o) = &done[i] else { continue };
            if !o.phase.failed_or_error() {
                continue;
            }
            let continued = (o.phase == Phase::Failed && task.continue_on_failed)
                || (o.phase == Phase::Error && task.continue_on_error);
            let dependent_ran = (0..tasks.len()).any(|j| {
                deps[j].contains(&i) && done[j].as_ref().is_some_and(|d| d.phase != Phase::Omitted)
            });
            if !continued && !dependent_ran {
                failed.push(task.name.clone());
            }
        }
        self.finish_composite(t, inputs, "tasks", &results, failed)
    }

    async fn exec_steps(
        self: &Arc<Self>,
        id: TemplateId,
        t: &Template,
        groups: &[Vec<Task>],
        inputs: &HashMap<String, String>,
        display: &str,
    ) -> Outcome {
        let mut results: HashMap<String, Outcome> = HashMap::new();
        let mut failed: Vec<String> = Vec::new();
        for group in groups {
            let mut futs = FuturesUnordered::new();
            for step in group {
                let child = Self::child_display(display, &step.name);
                let label = step
                    .target
                    .as_ref()
                    .and_then(|x| self.cat.resolve(id.doc, x))
                    .map(|x| self.template_label(x))
                    .unwrap_or_default();
                if !failed.is_empty() {
                    let o = Outcome::new(
                        Phase::Omitted,
                        format!("not started: step '{}' failed", failed[0]),
                    );
                    self.record_not_run(&child, label, &o);
                    continue;
                }
                let globals = self.globals();
                let scope = Scope {
                    inputs,
                    globals: &globals,
                    siblings: Some(("steps", &results)),
                    retries: None,
                };
                match self.prepare_task(id.doc, step, &scope) {
                    Ok((target, args)) => {
                        let fut = self.clone().exec(target, args, child);
                        let name = step.name.clone();
                        futs.push(async move { (name, fut.await) });
                    }
                    Err(o) => {
                        self.record_not_run(&child, label, &o);
                        if o.phase.failed_or_error() {
                            failed.push(step.name.clone());
                        }
                        results.insert(step.name.clone(), o);
                    }
                }
            }
            let mut group_results = Vec::new();
            while let Some(r) = futs.next().await {
                group_results.push(r);
            }
            for (name, out) in group_results {
                let step = group.iter().find(|s| s.name == name);
                let continued = step.is_some_and(|s| {
                    (out.phase == Phase::Failed && s.continue_on_failed)
                        || (out.phase == Phase::Error && s.continue_on_error)
                });
                if out.phase.failed_or_error() && !continued {
                    failed.push(name.clone());
                }
                results.insert(name, out);
            }
        }
        self.finish_composite(t, inputs, "steps", &results, failed)
    }

    fn finish_composite(
        &self,
        t: &Template,
        inputs: &HashMap<String, String>,
        prefix: &'static str,
        results: &HashMap<String, Outcome>,
        failed: Vec<String>,
    ) -> Outcome {
        if !failed.is_empty() {
            let mut o = Outcome::new(Phase::Failed, format!("failed: {}", failed.join(", ")));
            o.exit_code = None;
            return o;
        }
        let globals = self.globals();
        let scope = Scope {
            inputs,
            globals: &globals,
            siblings: Some((prefix, results)),
            retries: None,
        };
        let mut outputs = HashMap::new();
        for o in &t.outputs {
            let src = o.from_parameter.as_ref().or(o.value.as_ref());
            let v = match src.map(|s| scope.sub(s)) {
                Some(Ok(v)) => v,
                Some(Err(e)) => match &o.default {
                    Some(d) => d.clone(),
                    None => {
                        return Outcome::new(
                            Phase::Error,
                            format!("output parameter '{}': {e}", o.name),
                        );
                    }
                },
                None => o.default.clone().unwrap_or_default(),
            };
            outputs.insert(o.name.clone(), v);
        }
        Outcome {
            phase: Phase::Succeeded,
            outputs,
            exit_code: None,
            result: None,
            message: String::new(),
        }
    }
}

fn display_or(display: &str, name: &str) -> String {
    if display.is_empty() {
        name.to_string()
    } else {
        display.to_string()
    }
}
