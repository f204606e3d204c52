//! Loading, selecting and validating a pipeline before anything runs: lint, runner
//! support checks (template types, binaries, artifacts) and workflow parameters.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::diag::{Diagnostic, Error};
use crate::lint::{self, reachable, template_tasks};
use crate::model::{self, Body, Catalog};
use crate::paths::{Mounts, binary_candidates, covers, find_binary};
use crate::subst;

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// A pipeline file (its single pipeline is run) or a WorkflowTemplate name.
    pub pipeline: String,
    /// Default: `templates` next to the workflows dir.
    pub templates_dir: Option<PathBuf>,
    /// Default: the directory of the pipeline file (else `workflows`).
    pub workflows_dir: Option<PathBuf>,
    /// `-p name=value` workflow parameters.
    pub params: Vec<(String, String)>,
    pub bin_dir: PathBuf,
    /// Default: `$TMPDIR/netstep-run/<workflow name>`.
    pub workdir: Option<PathBuf>,
    /// Multiplies every backoff delay and maxDuration (tests use e.g. 0.001).
    pub backoff_scale: f64,
    /// Start armsim and point the steps at it.
    pub simulate: bool,
    pub world: PathBuf,
    /// Extra env for every step process.
    pub env: Vec<(String, String)>,
    /// `--mount CONTAINER_PATH=HOST_DIR`: extra container path mappings (e.g. for input
    /// artifacts). Git input artifacts default to the current directory.
    pub mounts: Mounts,
    /// Suppress progress lines (the summary is returned either way).
    pub quiet: bool,
    /// Forward step stdout/stderr to our stderr, prefixed with `[task]`.
    pub forward_logs: bool,
}

impl RunConfig {
    pub fn new(pipeline: impl Into<String>, bin_dir: impl Into<PathBuf>) -> Self {
        RunConfig {
            pipeline: pipeline.into(),
            templates_dir: None,
            workflows_dir: None,
            params: Vec::new(),
            bin_dir: bin_dir.into(),
            workdir: None,
            backoff_scale: 1.0,
            simulate: false,
            world: PathBuf::from("examples/globojava/world.json"),
            env: Vec::new(),
            mounts: Vec::new(),
            quiet: false,
            forward_logs: true,
        }
    }
}

/// A validated pipeline, ready to run.
#[derive(Debug)]
pub struct Plan {
    pub catalog: Catalog,
    /// The document whose templates run (the WorkflowTemplate for a workflowTemplateRef).
    pub exec_doc: usize,
    pub name: String,
    /// Name the workflow is generated from: the Workflow's (generate)name or the
    /// CronWorkflow's name, else the pipeline's.
    pub root_name: String,
    pub entrypoint: String,
    pub on_exit: Option<String>,
    /// Declared workflow parameters with their values (None = must be supplied).
    pub params: Vec<(String, Option<String>)>,
    pub active_deadline: Option<Duration>,
    pub parallelism: Option<usize>,
    pub mutexes: Vec<String>,
}

/// Loads the manifests, selects the pipeline, lints everything it reaches and checks the
/// runner can execute it (template types, binaries). All problems are reported at once.
pub fn plan(cfg: &RunConfig) -> Result<Plan, Error> {
    let pipeline_path = Path::new(&cfg.pipeline);
    let is_file = pipeline_path.is_file();
    let workflows_dir = cfg.workflows_dir.clone().unwrap_or_else(|| {
        if is_file {
            pipeline_path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        } else {
            PathBuf::from("workflows")
        }
    });
    let templates_dir = cfg.templates_dir.clone().unwrap_or_else(|| {
        workflows_dir
            .parent()
            .map_or_else(|| PathBuf::from("templates"), |p| p.join("templates"))
    });
    let mut paths = Vec::new();
    for (dir, explicit) in [
        (&templates_dir, cfg.templates_dir.is_some()),
        (&workflows_dir, cfg.workflows_dir.is_some()),
    ] {
        if dir.is_dir() {
            paths.push(dir.clone());
        } else if explicit {
            return Err(Error::Usage(format!(
                "{}: no such directory",
                dir.display()
            )));
        }
    }
    if is_file {
        paths.push(pipeline_path.to_path_buf());
    } else if !cfg.pipeline.contains('/') && !cfg.pipeline.ends_with(".yaml") {
        // a WorkflowTemplate name
    } else {
        return Err(Error::Usage(format!("{}: no such file", cfg.pipeline)));
    }
    let mut diags = Vec::new();
    // De-duplicate (the pipeline file usually lives in the workflows dir).
    let mut canon: Vec<PathBuf> = Vec::new();
    let mut unique = Vec::new();
    for p in paths {
        let c = p.canonicalize().unwrap_or_else(|_| p.clone());
        if !canon.iter().any(|x| c.starts_with(x)) {
            canon.push(c);
            unique.push(p);
        }
    }
    let docs = model::load_paths(&unique, &mut diags)?;
    let catalog = Catalog::new(docs, &mut diags);
    if !diags.is_empty() {
        return Err(Error::Invalid(diags));
    }

    // Select the pipeline document.
    let runnable =
        |d: &model::Doc| d.spec.entrypoint.is_some() || d.spec.workflow_template_ref.is_some();
    let root = if is_file {
        let want = pipeline_path.canonicalize().ok();
        let cands: Vec<usize> = (0..catalog.docs.len())
            .filter(|&i| {
                let d = catalog.doc(i);
                d.file.canonicalize().ok() == want && runnable(d)
            })
            .collect();
        match cands.as_slice() {
            [one] => *one,
            [] => {
                return Err(Error::Usage(format!(
                    "{}: no runnable pipeline (a WorkflowTemplate or Workflow with spec.entrypoint)",
                    cfg.pipeline
                )));
            }
            many => {
                let names: Vec<&str> = many.iter().map(|&i| catalog.doc(i).name.as_str()).collect();
                return Err(Error::Usage(format!(
                    "{}: several pipelines ({}); pass --pipeline NAME",
                    cfg.pipeline,
                    names.join(", ")
                )));
            }
        }
    } else {
        // A WorkflowTemplate first, else a Workflow (generateName) or CronWorkflow.
        catalog
            .find_doc(&cfg.pipeline, false)
            .filter(|&i| runnable(catalog.doc(i)))
            .or_else(|| {
                (0..catalog.docs.len()).find(|&i| {
                    let d = catalog.doc(i);
                    runnable(d) && d.name.trim_end_matches('-') == cfg.pipeline
                })
            })
            .ok_or_else(|| {
                Error::Usage(format!(
                    "no pipeline (WorkflowTemplate, Workflow or CronWorkflow) named '{}' in {} or {}",
                    cfg.pipeline,
                    templates_dir.display(),
                    workflows_dir.display()
                ))
            })?
    };
    let root_doc = catalog.doc(root);
    let exec_doc = match &root_doc.spec.workflow_template_ref {
        Some(r) => catalog.find_doc(&r.value, false).ok_or_else(|| {
            Error::Invalid(vec![Diagnostic::new(
                &root_doc.file,
                r.line,
                format!("{}.workflowTemplateRef.name", root_doc.spec_path),
                format!("workflowTemplateRef '{}' not found", r.value),
            )])
        })?,
        None => root,
    };
    // Lint the pipeline and every document it reaches.
    let mut lint_docs = vec![root, exec_doc];
    for id in reachable(&catalog, exec_doc) {
        if !lint_docs.contains(&id.doc) {
            lint_docs.push(id.doc);
        }
    }
    let mut diags = lint::lint(&catalog, Some(&lint_docs));
    diags.extend(check_runnable(
        &catalog,
        exec_doc,
        &cfg.bin_dir,
        &cfg.mounts,
    ));
    if !diags.is_empty() {
        diags.sort();
        diags.dedup();
        return Err(Error::Invalid(diags));
    }
    let ex = catalog.doc(exec_doc);
    let root_doc = catalog.doc(root);
    let entrypoint = root_doc
        .spec
        .entrypoint
        .as_ref()
        .or(ex.spec.entrypoint.as_ref())
        .map(|s| s.value.clone())
        .ok_or_else(|| Error::Usage(format!("pipeline '{}' has no entrypoint", ex.name)))?;
    let on_exit = root_doc
        .spec
        .on_exit
        .as_ref()
        .or(ex.spec.on_exit.as_ref())
        .map(|s| s.value.clone());
    let mut params: Vec<(String, Option<String>)> = ex
        .spec
        .arguments
        .iter()
        .map(|p| (p.name.clone(), p.value.clone()))
        .collect();
    if root != exec_doc {
        for p in &root_doc.spec.arguments {
            match params.iter_mut().find(|(n, _)| *n == p.name) {
                Some(slot) => slot.1 = p.value.clone().or(slot.1.take()),
                None => params.push((p.name.clone(), p.value.clone())),
            }
        }
    }
    // Entrypoint inputs not declared in spec.arguments are submission parameters too.
    if let Some(entry) = catalog.find_local(exec_doc, &entrypoint) {
        for input in &catalog.template(entry).inputs {
            if !params.iter().any(|(n, _)| *n == input.name) {
                params.push((
                    input.name.clone(),
                    input.value.clone().or(input.default.clone()),
                ));
            }
        }
    }
    let num = |s: &Option<model::Spanned>| s.as_ref().and_then(|v| v.value.parse::<u64>().ok());
    Ok(Plan {
        name: ex.name.clone(),
        root_name: root_doc.name.trim_end_matches('-').to_string(),
        entrypoint,
        on_exit,
        params,
        active_deadline: num(&root_doc.spec.active_deadline_seconds)
            .or(num(&ex.spec.active_deadline_seconds))
            .map(Duration::from_secs),
        parallelism: num(&root_doc.spec.parallelism)
            .or(num(&ex.spec.parallelism))
            .map(|n| n.max(1) as usize),
        mutexes: ex.spec.mutexes.clone(),
        exec_doc,
        catalog,
    })
}

/// Runner-specific checks on everything the pipeline reaches.
fn check_runnable(
    cat: &Catalog,
    exec_doc: usize,
    bin_dir: &Path,
    mounts: &[(String, PathBuf)],
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for id in reachable(cat, exec_doc) {
        let doc = cat.doc(id.doc);
        let t = cat.template(id);
        match &t.body {
            Body::Unsupported(k) => out.push(Diagnostic::new(
                &doc.file,
                t.line,
                &t.path,
                format!("template type '{k}' is not supported by netstep-run (container, dag and steps are)"),
            )),
            Body::Container(c) => {
                let cands = binary_candidates(
                    c.command.first().map(String::as_str),
                    c.image.as_ref().map(|i| i.value.as_str()),
                );
                if cands.is_empty() {
                    out.push(Diagnostic::new(
                        &doc.file,
                        c.line,
                        &c.path,
                        "cannot tell which binary to run: no command and no image",
                    ));
                } else if !cands.iter().any(|b| b.contains("{{"))
                    && find_binary(bin_dir, &cands).is_none()
                {
                    let names: Vec<String> = cands.iter().map(|b| format!("'{b}'")).collect();
                    out.push(Diagnostic::new(
                        &doc.file,
                        c.line,
                        format!("{}.command[0]", c.path),
                        format!(
                            "binary {} not found in {} (from command[0] / image; build it with `cargo build`, or pass --bin-dir)",
                            names.join(" or "),
                            bin_dir.display()
                        ),
                    ));
                }
            }
            _ => {}
        }
        if let (Some(r), Body::Dag(_) | Body::Steps(_)) = (&t.retry, &t.body) {
            out.push(Diagnostic::new(
                &doc.file,
                r.line,
                &r.path,
                "retryStrategy on a dag/steps template is not supported by netstep-run (only on container templates)",
            ));
        }
        for a in &t.input_artifacts {
            let covered = a
                .path
                .as_ref()
                .is_some_and(|p| mounts.iter().any(|(m, _)| covers(m, p)));
            if !covered && !a.optional && !matches!(a.source.as_str(), "git" | "raw") {
                out.push(Diagnostic::new(
                    &doc.file,
                    a.line,
                    format!("{}.inputs.artifacts[{}]", t.path, a.name),
                    format!(
                        "input artifact '{}' ({}) cannot be fetched locally: pass --mount {}=HOST_DIR",
                        a.name,
                        a.source,
                        a.path.as_deref().unwrap_or("PATH")
                    ),
                ));
            }
        }
        for o in &t.outputs {
            if let Some(src) = &o.other_source {
                out.push(Diagnostic::new(
                    &doc.file,
                    o.line,
                    &o.path,
                    format!("valueFrom.{src} is not supported by netstep-run"),
                ));
            }
        }
        for task in template_tasks(t) {
            for (field, line) in &task.unsupported {
                out.push(Diagnostic::new(
                    &doc.file,
                    *line,
                    &task.path,
                    format!("'{field}' is not supported by netstep-run"),
                ));
            }
        }
    }
    out
}

/// Resolves the workflow parameters from the plan's defaults and `-p` values.
pub(crate) fn resolve_params(
    plan: &Plan,
    given: &[(String, String)],
    sim_url: Option<&str>,
    globals: Option<&HashMap<String, String>>,
) -> Result<Vec<(String, String)>, Error> {
    let mut problems = Vec::new();
    // Declared values are manifest text: `{{workflow.name}}` etc. are substituted.
    // Values given with -p (or by --simulate) are taken literally.
    let mut values: Vec<(String, Option<String>)> = Vec::new();
    for (name, v) in &plan.params {
        let v = match (v, globals) {
            (Some(v), Some(g)) => match subst::substitute(v, &|t| g.get(t).cloned()) {
                Ok(x) => Some(x),
                Err(e) => {
                    problems.push(format!("workflow parameter '{name}': {e}"));
                    Some(v.clone())
                }
            },
            (v, _) => v.clone(),
        };
        values.push((name.clone(), v));
    }
    for (k, v) in given {
        match values.iter_mut().find(|(n, _)| n == k) {
            Some(slot) => slot.1 = Some(v.clone()),
            None => problems.push(format!(
                "unknown parameter '{k}': pipeline '{}' declares {}",
                plan.name,
                if values.is_empty() {
                    "no parameters".to_string()
                } else {
                    values
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )),
        }
    }
    if let Some(url) = sim_url
        && let Some(slot) = values.iter_mut().find(|(n, _)| n == "arm-endpoint")
    {
        slot.1 = Some(url.to_string());
    }
    let ex = plan.catalog.doc(plan.exec_doc);
    let mut out = Vec::new();
    for (name, v) in values {
        match v {
            None => problems.push(format!(
                "workflow parameter '{name}' has no value: pass -p {name}=VALUE"
            )),
            Some(v) => {
                if let Some(p) = ex.spec.arguments.iter().find(|p| p.name == name)
                    && !p.enum_values.is_empty()
                    && !p.enum_values.contains(&v)
                {
                    problems.push(format!(
                        "parameter '{name}': value '{v}' is not in enum [{}]",
                        p.enum_values.join(", ")
                    ));
                }
                out.push((name, v));
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Error::Usage(problems.join("\n")))
    }
}
