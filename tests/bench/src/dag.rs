//! The pipeline DAG, read from the pipeline YAML with netstep-run's own parser: task names,
//! their dependencies, and the step binary each task runs (from its container image).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use netstep_run::model::Body;

/// One DAG task.
#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    /// Step binary (`netstep/<binary>:<tag>` image), if the task runs a container.
    pub binary: Option<String>,
    /// Task names this one depends on.
    pub deps: Vec<String>,
}

/// Loads `pipeline` (a WorkflowTemplate file) and returns its entrypoint DAG's tasks.
pub fn load(pipeline: &Path, bin_dir: &Path) -> Result<Vec<Task>> {
    let cfg = netstep_run::plan::RunConfig::new(pipeline.display().to_string(), bin_dir);
    let plan = netstep_run::plan::plan(&cfg)
        .map_err(|e| anyhow::anyhow!("{}: {e}", pipeline.display()))?;
    let cat = &plan.catalog;
    let main = cat
        .find_local(plan.exec_doc, &plan.entrypoint)
        .with_context(|| format!("{}: no entrypoint template", pipeline.display()))?;
    let Body::Dag(dag) = &cat.template(main).body else {
        bail!(
            "{}: the entrypoint `{}` is not a DAG",
            pipeline.display(),
            plan.entrypoint
        );
    };
    let names: Vec<String> = dag.tasks.iter().map(|t| t.name.clone()).collect();
    let mut out = Vec::new();
    for t in &dag.tasks {
        let binary = t
            .target
            .as_ref()
            .and_then(|tr| cat.resolve(main.doc, tr))
            .and_then(|id| match &cat.template(id).body {
                Body::Container(c) => c.image.as_ref().map(|i| image_binary(&i.value)),
                _ => None,
            });
        let mut deps = Vec::new();
        if let Some(d) = &t.depends {
            deps.extend(depends_names(&d.value, &names));
        }
        for d in t.dependencies.iter().flatten() {
            if !deps.contains(&d.value) {
                deps.push(d.value.clone());
            }
        }
        out.push(Task {
            name: t.name.clone(),
            binary,
            deps,
        });
    }
    Ok(out)
}

/// `netstep/tag-groups:0.1.0` -> `tag-groups`.
fn image_binary(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split([':', '@']).next().unwrap_or(last).to_string()
}

/// Task names referenced by an Argo `depends` expression (`a && (b.Succeeded || c)`).
pub fn depends_names(expr: &str, tasks: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for tok in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.')) {
        if tok.is_empty() {
            continue;
        }
        // `task.Succeeded` / `task.AnySucceeded` ...: the task name is before the last dot
        // unless the whole token is a task name.
        let name = if tasks.iter().any(|t| t == tok) {
            tok
        } else {
            tok.rsplit_once('.').map_or(tok, |(a, _)| a)
        };
        if tasks.iter().any(|t| t == name) && !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    out
}

/// Longest path through the DAG where each task costs `cost[task]` (0 if absent).
/// Returns the path length and the tasks on it.
pub fn critical_path(tasks: &[Task], cost: &BTreeMap<String, f64>) -> (f64, Vec<String>) {
    let mut finish: BTreeMap<String, (f64, Vec<String>)> = BTreeMap::new();
    // Tasks are few: relax until stable (the DAG is acyclic; netstep-run's lint checks it).
    for _ in 0..=tasks.len() {
        for t in tasks {
            let (start, mut path) = t
                .deps
                .iter()
                .filter_map(|d| finish.get(d))
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .cloned()
                .unwrap_or((0.0, Vec::new()));
            path.push(t.name.clone());
            let f = start + cost.get(&t.name).copied().unwrap_or(0.0);
            finish.insert(t.name.clone(), (f, path));
        }
    }
    finish
        .into_values()
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap_or((0.0, Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_expressions() {
        let tasks: Vec<String> = ["snapshot", "admin-rules", "dns-link", "verify"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            depends_names("admin-rules && dns-link", &tasks),
            ["admin-rules", "dns-link"]
        );
        assert_eq!(
            depends_names("(snapshot.Succeeded || dns-link.Failed)", &tasks),
            ["snapshot", "dns-link"]
        );
        assert_eq!(image_binary("netstep/tag-groups:0.1.0"), "tag-groups");
    }

    #[test]
    fn critical_path_takes_the_longest_branch() {
        let t = |n: &str, d: &[&str]| Task {
            name: n.into(),
            binary: None,
            deps: d.iter().map(|s| s.to_string()).collect(),
        };
        let tasks = vec![
            t("a", &[]),
            t("b", &["a"]),
            t("c", &["a"]),
            t("d", &["b", "c"]),
        ];
        let cost: BTreeMap<String, f64> = [("a", 1.0), ("b", 5.0), ("c", 2.0), ("d", 1.0)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let (len, path) = critical_path(&tasks, &cost);
        assert_eq!(len, 7.0);
        assert_eq!(path, ["a", "b", "d"]);
    }

    #[test]
    fn the_real_pipelines_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = tempfile_dir();
        // Every step crate's binary (the pipeline refers to them by name); none is run.
        for e in std::fs::read_dir(root.join("steps")).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().join("src/main.rs").exists() && name != "netstep-run" {
                std::fs::write(dir.join(name), "").unwrap();
            }
        }
        let tasks = load(&root.join("workflows/pipeline-infra.yaml"), &dir).unwrap();
        let verify = tasks.iter().find(|t| t.name == "verify").unwrap();
        assert!(
            verify.deps.contains(&"admin-rules".to_string()),
            "{tasks:?}"
        );
        let tg = tasks.iter().find(|t| t.name == "tag-groups").unwrap();
        assert_eq!(tg.binary.as_deref(), Some("tag-groups"));
        assert_eq!(tg.deps, ["vnets"]);
        let vnets = tasks.iter().find(|t| t.name == "vnets").unwrap();
        assert_eq!(vnets.deps, ["snapshot"]);
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("netstep-bench-dag-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
