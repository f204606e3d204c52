//! The subset of the Argo Workflows model the runner and linter understand, parsed from
//! [`yaml::Node`]s with line numbers, and the catalog of loaded documents.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::diag::{Diagnostic, Error};
use crate::yaml::{self, Node};

/// A string with the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned {
    pub value: String,
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    WorkflowTemplate,
    ClusterWorkflowTemplate,
    Workflow,
    CronWorkflow,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "WorkflowTemplate" => Kind::WorkflowTemplate,
            "ClusterWorkflowTemplate" => Kind::ClusterWorkflowTemplate,
            "Workflow" => Kind::Workflow,
            "CronWorkflow" => Kind::CronWorkflow,
            _ => return None,
        })
    }
}

/// One Argo document (WorkflowTemplate, ClusterWorkflowTemplate, Workflow, CronWorkflow).
#[derive(Debug, Clone)]
pub struct Doc {
    pub file: PathBuf,
    pub kind: Kind,
    pub name: String,
    pub line: usize,
    pub spec: Spec,
    /// `spec.` for templates/workflows, `spec.workflowSpec.` for CronWorkflows.
    pub spec_path: String,
}

#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub line: usize,
    pub entrypoint: Option<Spanned>,
    pub arguments: Vec<Param>,
    pub templates: Vec<Template>,
    pub on_exit: Option<Spanned>,
    pub active_deadline_seconds: Option<Spanned>,
    pub parallelism: Option<Spanned>,
    pub workflow_template_ref: Option<Spanned>,
    pub mutexes: Vec<String>,
}

/// An input parameter, a workflow argument or a task argument.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub line: usize,
    pub path: String,
    pub value: Option<String>,
    pub default: Option<String>,
    pub enum_values: Vec<String>,
    /// `valueFrom` present (not evaluated by the runner except on outputs).
    pub has_value_from: bool,
}

#[derive(Debug, Clone)]
pub struct OutputParam {
    pub name: String,
    pub line: usize,
    pub path: String,
    /// `valueFrom.path`
    pub from_path: Option<String>,
    /// `valueFrom.parameter` (DAG/steps outputs)
    pub from_parameter: Option<String>,
    /// `valueFrom.default`
    pub default: Option<String>,
    /// `value`
    pub value: Option<String>,
    /// `valueFrom.expression`/`jqFilter`/`jsonPath`/... (unsupported by the runner)
    pub other_source: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    pub line: usize,
    pub path: String,
    pub inputs: Vec<Param>,
    pub input_artifacts: Vec<Artifact>,
    pub outputs: Vec<OutputParam>,
    pub body: Body,
    /// Every template type key present (`container`, `dag`, ...), for the "exactly one" check.
    pub body_kinds: Vec<&'static str>,
    pub retry: Option<RetryStrategy>,
    pub active_deadline_seconds: Option<Spanned>,
    pub timeout: Option<Spanned>,
    pub parallelism: Option<Spanned>,
}

/// An input artifact: where it lands in the container and where it comes from.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub name: String,
    pub line: usize,
    pub path: Option<String>,
    /// `git`, `raw`, `s3`, `azure`, `http`, ... (the source key), or `unknown`.
    pub source: String,
    /// `raw.data`
    pub raw_data: Option<String>,
    /// `optional: true`
    pub optional: bool,
}

#[derive(Debug, Clone)]
pub enum Body {
    Container(Container),
    Dag(Dag),
    Steps(Vec<Vec<Task>>),
    /// A template type the runner cannot execute (script, resource, suspend, ...).
    Unsupported(&'static str),
    None,
}

#[derive(Debug, Clone)]
pub struct Container {
    pub line: usize,
    pub path: String,
    pub image: Option<Spanned>,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    pub working_dir: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EnvVar {
    pub name: String,
    pub line: usize,
    /// None when the variable uses `valueFrom` (secrets etc.), which the runner skips.
    pub value: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Dag {
    pub tasks: Vec<Task>,
    pub fail_fast: bool,
}

/// A DAG task or a step.
#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    pub line: usize,
    pub path: String,
    pub target: Option<TargetRef>,
    pub arguments: Vec<Param>,
    pub dependencies: Option<Vec<Spanned>>,
    pub depends: Option<Spanned>,
    pub when: Option<Spanned>,
    pub continue_on_failed: bool,
    pub continue_on_error: bool,
    /// Fields the runner does not support (`withItems`, `withParam`, `inline`, `hooks`...).
    pub unsupported: Vec<(String, usize)>,
}

#[derive(Debug, Clone)]
pub enum TargetRef {
    /// `template: name` in the same document.
    Local(Spanned),
    /// `templateRef: {name, template, clusterScope}`.
    Ref {
        name: Spanned,
        template: Spanned,
        cluster_scope: bool,
    },
}

#[derive(Debug, Clone)]
pub struct RetryStrategy {
    pub line: usize,
    pub path: String,
    pub limit: Option<Spanned>,
    pub policy: Option<Spanned>,
    pub expression: Option<Spanned>,
    pub duration: Option<Spanned>,
    pub factor: Option<Spanned>,
    pub max_duration: Option<Spanned>,
    pub cap: Option<Spanned>,
}

/// Parse context: the file being parsed and where diagnostics go.
struct Cx<'a> {
    file: &'a Path,
    diags: &'a mut Vec<Diagnostic>,
}

impl Cx<'_> {
    fn err(&mut self, line: usize, path: &str, msg: impl Into<String>) {
        self.diags
            .push(Diagnostic::new(self.file, line, path, msg.into()));
    }

    /// A scalar field (numbers/bools as text). Wrong type -> diagnostic, None.
    fn scalar(&mut self, parent: &Node, key: &str, path: &str) -> Option<Spanned> {
        let node = parent.get(key)?;
        if node.is_null() {
            return None;
        }
        match node.as_str() {
            Some(s) => Some(Spanned {
                value: s.to_string(),
                line: node.line,
            }),
            None => {
                self.err(
                    node.line,
                    &format!("{path}.{key}"),
                    format!("expected a string, found {}", node.type_name()),
                );
                None
            }
        }
    }

    fn seq<'n>(&mut self, parent: &'n Node, key: &str, path: &str) -> &'n [Node] {
        let Some(node) = parent.get(key) else {
            return &[];
        };
        if node.is_null() {
            return &[];
        }
        match node.as_seq() {
            Some(s) => s,
            None => {
                self.err(
                    node.line,
                    &format!("{path}.{key}"),
                    format!("expected a list, found {}", node.type_name()),
                );
                &[]
            }
        }
    }

    fn map<'n>(&mut self, parent: &'n Node, key: &str, path: &str) -> Option<&'n Node> {
        let node = parent.get(key)?;
        if node.is_null() {
            return None;
        }
        if node.as_map().is_none() {
            self.err(
                node.line,
                &format!("{path}.{key}"),
                format!("expected a mapping, found {}", node.type_name()),
            );
            return None;
        }
        Some(node)
    }

    fn strings(&mut self, parent: &Node, key: &str, path: &str) -> Vec<String> {
        let items = self.seq(parent, key, path);
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) => out.push(s.to_string()),
                None => self.err(
                    item.line,
                    &format!("{path}.{key}[{i}]"),
                    format!("expected a string, found {}", item.type_name()),
                ),
            }
        }
        out
    }

    fn params(&mut self, parent: &Node, key: &str, path: &str) -> Vec<Param> {
        let items = self.seq(parent, key, path);
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{path}.{key}[{i}]");
            if item.as_map().is_none() {
                self.err(item.line, &ipath, "expected a parameter mapping");
                continue;
            }
            let Some(name) = self.scalar(item, "name", &ipath) else {
                self.err(item.line, &ipath, "parameter has no name");
                continue;
            };
            let value = self.scalar(item, "value", &ipath).map(|s| s.value);
            let default = self.scalar(item, "default", &ipath).map(|s| s.value);
            let enum_values = self.strings(item, "enum", &ipath);
            out.push(Param {
                path: format!("{path}.{key}[{}]", name.value),
                name: name.value,
                line: item.line,
                value,
                default,
                enum_values,
                has_value_from: item.get("valueFrom").is_some_and(|n| !n.is_null()),
            });
        }
        out
    }
}

const BODY_KINDS: &[&str] = &[
    "container",
    "script",
    "dag",
    "steps",
    "resource",
    "suspend",
    "containerSet",
    "data",
    "http",
    "plugin",
];

fn parse_template(cx: &mut Cx, node: &Node, path: &str) -> Option<Template> {
    if node.as_map().is_none() {
        cx.err(node.line, path, "expected a template mapping");
        return None;
    }
    let name = cx.scalar(node, "name", path);
    let Some(name) = name else {
        cx.err(node.line, path, "template has no name");
        return None;
    };
    let path = format!(
        "{}[{}]",
        path.rsplit_once('[').map_or(path, |p| p.0),
        name.value
    );
    let inputs_node = cx.map(node, "inputs", &path);
    let inputs = inputs_node
        .map(|n| cx.params(n, "parameters", &format!("{path}.inputs")))
        .unwrap_or_default();
    let mut input_artifacts = Vec::new();
    if let Some(n) = inputs_node {
        let apath = format!("{path}.inputs");
        for (i, a) in cx.seq(n, "artifacts", &apath).iter().enumerate() {
            let ipath = format!("{apath}.artifacts[{i}]");
            let Some(name) = cx.scalar(a, "name", &ipath) else {
                cx.err(a.line, &ipath, "artifact has no name");
                continue;
            };
            const SOURCES: &[&str] = &[
                "git",
                "raw",
                "s3",
                "azure",
                "gcs",
                "http",
                "hdfs",
                "oss",
                "artifactory",
                "plugin",
                "from",
            ];
            let source = SOURCES
                .iter()
                .find(|k| a.get(k).is_some())
                .map_or("unknown", |k| k)
                .to_string();
            let raw_data = a
                .get("raw")
                .and_then(|r| r.get("data"))
                .and_then(Node::as_str)
                .map(str::to_string);
            input_artifacts.push(Artifact {
                path: cx.scalar(a, "path", &ipath).map(|s| s.value),
                optional: cx
                    .scalar(a, "optional", &ipath)
                    .is_some_and(|s| s.value == "true"),
                name: name.value,
                line: a.line,
                source,
                raw_data,
            });
        }
    }
    let outputs = cx
        .map(node, "outputs", &path)
        .map(|n| parse_outputs(cx, n, &format!("{path}.outputs")))
        .unwrap_or_default();
    let body_kinds: Vec<&'static str> = BODY_KINDS
        .iter()
        .copied()
        .filter(|k| node.get(k).is_some_and(|n| !n.is_null()))
        .collect();
    let body = match body_kinds.first().copied() {
        Some("container") => match cx.map(node, "container", &path) {
            Some(c) => Body::Container(parse_container(cx, c, &format!("{path}.container"))),
            None => Body::None,
        },
        Some("dag") => match cx.map(node, "dag", &path) {
            Some(d) => {
                let dpath = format!("{path}.dag");
                let tasks = cx
                    .seq(d, "tasks", &dpath)
                    .iter()
                    .enumerate()
                    .filter_map(|(i, t)| parse_task(cx, t, &format!("{dpath}.tasks[{i}]")))
                    .collect();
                let fail_fast = cx
                    .scalar(d, "failFast", &dpath)
                    .is_none_or(|s| s.value != "false");
                Body::Dag(Dag { tasks, fail_fast })
            }
            None => Body::None,
        },
        Some("steps") => {
            let groups = cx.seq(node, "steps", &path);
            let mut out = Vec::new();
            for (g, group) in groups.iter().enumerate() {
                let gpath = format!("{path}.steps[{g}]");
                match group.as_seq() {
                    Some(items) => out.push(
                        items
                            .iter()
                            .enumerate()
                            .filter_map(|(i, t)| parse_task(cx, t, &format!("{gpath}[{i}]")))
                            .collect(),
                    ),
                    None => cx.err(group.line, &gpath, "expected a list of parallel steps"),
                }
            }
            Body::Steps(out)
        }
        Some(other) => Body::Unsupported(other),
        None => Body::None,
    };
    let retry = cx.map(node, "retryStrategy", &path).map(|r| {
        let rpath = format!("{path}.retryStrategy");
        let backoff = cx.map(r, "backoff", &rpath);
        let bpath = format!("{rpath}.backoff");
        RetryStrategy {
            line: r.line,
            limit: cx.scalar(r, "limit", &rpath),
            policy: cx.scalar(r, "retryPolicy", &rpath),
            expression: cx.scalar(r, "expression", &rpath),
            duration: backoff.and_then(|b| cx.scalar(b, "duration", &bpath)),
            factor: backoff.and_then(|b| cx.scalar(b, "factor", &bpath)),
            max_duration: backoff.and_then(|b| cx.scalar(b, "maxDuration", &bpath)),
            cap: backoff.and_then(|b| cx.scalar(b, "cap", &bpath)),
            path: rpath,
        }
    });
    Some(Template {
        active_deadline_seconds: cx.scalar(node, "activeDeadlineSeconds", &path),
        timeout: cx.scalar(node, "timeout", &path),
        parallelism: cx.scalar(node, "parallelism", &path),
        name: name.value,
        line: node.line,
        inputs,
        input_artifacts,
        outputs,
        body,
        body_kinds,
        retry,
        path,
    })
}

fn parse_outputs(cx: &mut Cx, node: &Node, path: &str) -> Vec<OutputParam> {
    let mut out = Vec::new();
    for (i, item) in cx.seq(node, "parameters", path).iter().enumerate() {
        let ipath = format!("{path}.parameters[{i}]");
        let Some(name) = cx.scalar(item, "name", &ipath) else {
            cx.err(item.line, &ipath, "output parameter has no name");
            continue;
        };
        let ipath = format!("{path}.parameters[{}]", name.value);
        let vf = cx.map(item, "valueFrom", &ipath);
        let vpath = format!("{ipath}.valueFrom");
        let other_source = vf.and_then(|v| {
            [
                "expression",
                "jqFilter",
                "jsonPath",
                "event",
                "supplied",
                "configMapKeyRef",
            ]
            .into_iter()
            .find(|k| v.get(k).is_some())
            .map(str::to_string)
        });
        out.push(OutputParam {
            name: name.value,
            line: item.line,
            from_path: vf
                .and_then(|v| cx.scalar(v, "path", &vpath))
                .map(|s| s.value),
            from_parameter: vf
                .and_then(|v| cx.scalar(v, "parameter", &vpath))
                .map(|s| s.value),
            default: vf
                .and_then(|v| cx.scalar(v, "default", &vpath))
                .map(|s| s.value),
            value: cx.scalar(item, "value", &ipath).map(|s| s.value),
            other_source,
            path: ipath,
        });
    }
    out
}

fn parse_container(cx: &mut Cx, node: &Node, path: &str) -> Container {
    let mut env = Vec::new();
    for (i, e) in cx.seq(node, "env", path).iter().enumerate() {
        let epath = format!("{path}.env[{i}]");
        let Some(name) = cx.scalar(e, "name", &epath) else {
            cx.err(e.line, &epath, "env var has no name");
            continue;
        };
        let value = if e.get("valueFrom").is_some() {
            None
        } else {
            Some(
                cx.scalar(e, "value", &epath)
                    .map(|s| s.value)
                    .unwrap_or_default(),
            )
        };
        env.push(EnvVar {
            name: name.value,
            line: e.line,
            value,
        });
    }
    Container {
        line: node.line,
        path: path.to_string(),
        image: cx.scalar(node, "image", path),
        command: cx.strings(node, "command", path),
        args: cx.strings(node, "args", path),
        env,
        working_dir: cx.scalar(node, "workingDir", path).map(|s| s.value),
    }
}

fn parse_task(cx: &mut Cx, node: &Node, path: &str) -> Option<Task> {
    if node.as_map().is_none() {
        cx.err(node.line, path, "expected a task mapping");
        return None;
    }
    let name = cx.scalar(node, "name", path);
    let name = match name {
        Some(n) if !n.value.is_empty() => n,
        _ => {
            cx.err(node.line, path, "task/step has no name");
            return None;
        }
    };
    let path = format!(
        "{}[{}]",
        path.rsplit_once('[').map_or(path, |p| p.0),
        name.value
    );
    let local = cx.scalar(node, "template", &path);
    let tref = cx.map(node, "templateRef", &path).map(|r| {
        let rpath = format!("{path}.templateRef");
        let n = cx.scalar(r, "name", &rpath);
        let t = cx.scalar(r, "template", &rpath);
        if n.is_none() {
            cx.err(r.line, &rpath, "templateRef.name is required");
        }
        if t.is_none() {
            cx.err(r.line, &rpath, "templateRef.template is required");
        }
        (
            n,
            t,
            cx.scalar(r, "clusterScope", &rpath)
                .is_some_and(|s| s.value == "true"),
            r.line,
        )
    });
    let target = match (local, tref) {
        (Some(_), Some(_)) => {
            cx.err(
                node.line,
                &path,
                "only one of template and templateRef may be set",
            );
            None
        }
        (Some(l), None) => Some(TargetRef::Local(l)),
        (None, Some((Some(n), Some(t), cs, _))) => Some(TargetRef::Ref {
            name: n,
            template: t,
            cluster_scope: cs,
        }),
        (None, Some(_)) => None,
        (None, None) => {
            if node.get("inline").is_none() {
                cx.err(
                    node.line,
                    &path,
                    "one of template or templateRef is required",
                );
            }
            None
        }
    };
    let arguments = cx
        .map(node, "arguments", &path)
        .map(|a| cx.params(a, "parameters", &format!("{path}.arguments")))
        .unwrap_or_default();
    let dependencies = node.get("dependencies").map(|_| {
        let items = cx.seq(node, "dependencies", &path);
        items
            .iter()
            .filter_map(|d| {
                d.as_str().map(|s| Spanned {
                    value: s.to_string(),
                    line: d.line,
                })
            })
            .collect()
    });
    let continue_on = cx.map(node, "continueOn", &path);
    let cpath = format!("{path}.continueOn");
    let continue_on_failed = continue_on
        .and_then(|c| cx.scalar(c, "failed", &cpath))
        .is_some_and(|s| s.value == "true");
    let continue_on_error = continue_on
        .and_then(|c| cx.scalar(c, "error", &cpath))
        .is_some_and(|s| s.value == "true");
    let unsupported = [
        "withItems",
        "withParam",
        "withSequence",
        "inline",
        "hooks",
        "onExit",
    ]
    .into_iter()
    .filter_map(|k| node.get(k).map(|n| (k.to_string(), n.line)))
    .collect();
    Some(Task {
        line: node.line,
        target,
        arguments,
        dependencies,
        depends: cx.scalar(node, "depends", &path),
        when: cx.scalar(node, "when", &path),
        continue_on_failed,
        continue_on_error,
        unsupported,
        name: name.value,
        path,
    })
}

fn parse_spec(cx: &mut Cx, node: &Node, path: &str) -> Spec {
    let arguments = cx
        .map(node, "arguments", path)
        .map(|a| cx.params(a, "parameters", &format!("{path}.arguments")))
        .unwrap_or_default();
    let templates = cx
        .seq(node, "templates", path)
        .iter()
        .enumerate()
        .filter_map(|(i, t)| parse_template(cx, t, &format!("{path}.templates[{i}]")))
        .collect();
    let mut mutexes = Vec::new();
    if let Some(sync) = cx.map(node, "synchronization", path) {
        let spath = format!("{path}.synchronization");
        for m in cx.seq(sync, "mutexes", &spath) {
            if let Some(n) = m.get("name").and_then(Node::as_str) {
                mutexes.push(n.to_string());
            }
        }
        if let Some(n) = sync
            .get("mutex")
            .and_then(|m| m.get("name"))
            .and_then(Node::as_str)
        {
            mutexes.push(n.to_string());
        }
    }
    let wtref = cx
        .map(node, "workflowTemplateRef", path)
        .and_then(|r| cx.scalar(r, "name", &format!("{path}.workflowTemplateRef")));
    Spec {
        line: node.line,
        entrypoint: cx.scalar(node, "entrypoint", path),
        arguments,
        templates,
        on_exit: cx.scalar(node, "onExit", path),
        active_deadline_seconds: cx.scalar(node, "activeDeadlineSeconds", path),
        parallelism: cx.scalar(node, "parallelism", path),
        workflow_template_ref: wtref,
        mutexes,
    }
}

/// Parses one YAML document; returns None for non-Argo kinds (kustomization,
/// ServiceAccount, EventSource, Sensor, ...).
pub fn parse_doc(file: &Path, node: &Node, diags: &mut Vec<Diagnostic>) -> Option<Doc> {
    let api = node.get("apiVersion").and_then(Node::as_str).unwrap_or("");
    if !api.starts_with("argoproj.io/") {
        return None;
    }
    let kind = Kind::parse(node.get("kind").and_then(Node::as_str).unwrap_or(""))?;
    let mut cx = Cx { file, diags };
    let meta = cx.map(node, "metadata", "");
    let name = meta
        .and_then(|m| {
            cx.scalar(m, "name", "metadata")
                .or_else(|| cx.scalar(m, "generateName", "metadata"))
        })
        .map(|s| s.value);
    let Some(name) = name else {
        cx.err(node.line, "metadata.name", "metadata.name is required");
        return None;
    };
    let (spec_node, spec_path) = match kind {
        Kind::CronWorkflow => (
            cx.map(node, "spec", "")
                .and_then(|s| cx.map(s, "workflowSpec", "spec")),
            "spec.workflowSpec",
        ),
        _ => (cx.map(node, "spec", ""), "spec"),
    };
    let Some(spec_node) = spec_node else {
        cx.err(node.line, spec_path, format!("{spec_path} is required"));
        return None;
    };
    let spec = parse_spec(&mut cx, spec_node, spec_path);
    Some(Doc {
        file: file.to_path_buf(),
        kind,
        name,
        line: node.line,
        spec,
        spec_path: spec_path.to_string(),
    })
}

/// All loaded Argo documents, indexed by (cluster-scoped?, name).
#[derive(Debug, Default)]
pub struct Catalog {
    pub docs: Vec<Doc>,
    index: HashMap<(bool, String), usize>,
}

/// A template located in the catalog: (document index, template index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TemplateId {
    pub doc: usize,
    pub template: usize,
}

impl Catalog {
    /// Builds the catalog; reports duplicate WorkflowTemplate names.
    pub fn new(docs: Vec<Doc>, diags: &mut Vec<Diagnostic>) -> Catalog {
        let mut index = HashMap::new();
        for (i, d) in docs.iter().enumerate() {
            let cluster = match d.kind {
                Kind::WorkflowTemplate => false,
                Kind::ClusterWorkflowTemplate => true,
                _ => continue,
            };
            if let Some(&prev) = index.get(&(cluster, d.name.clone())) {
                let p: &Doc = &docs[prev];
                diags.push(Diagnostic::new(
                    &d.file,
                    d.line,
                    "metadata.name",
                    format!(
                        "duplicate WorkflowTemplate name `{}` (also defined in {}:{})",
                        d.name,
                        p.file.display(),
                        p.line
                    ),
                ));
                continue;
            }
            index.insert((cluster, d.name.clone()), i);
        }
        Catalog { docs, index }
    }

    pub fn doc(&self, i: usize) -> &Doc {
        &self.docs[i]
    }

    pub fn template(&self, id: TemplateId) -> &Template {
        &self.docs[id.doc].spec.templates[id.template]
    }

    /// A (Cluster)WorkflowTemplate by name.
    pub fn find_doc(&self, name: &str, cluster: bool) -> Option<usize> {
        self.index.get(&(cluster, name.to_string())).copied()
    }

    /// A template by name inside a document.
    pub fn find_local(&self, doc: usize, name: &str) -> Option<TemplateId> {
        self.docs[doc]
            .spec
            .templates
            .iter()
            .position(|t| t.name == name)
            .map(|template| TemplateId { doc, template })
    }

    /// Resolves a task's target from the document `doc` it is written in.
    pub fn resolve(&self, doc: usize, target: &TargetRef) -> Option<TemplateId> {
        match target {
            TargetRef::Local(n) => self.find_local(doc, &n.value),
            TargetRef::Ref {
                name,
                template,
                cluster_scope,
            } => {
                let d = self.find_doc(&name.value, *cluster_scope)?;
                self.find_local(d, &template.value)
            }
        }
    }
}

/// Reads and parses YAML files; directories are walked recursively for `*.yaml`/`*.yml`.
/// YAML syntax errors become diagnostics (all files are read).
pub fn load_paths(paths: &[PathBuf], diags: &mut Vec<Diagnostic>) -> Result<Vec<Doc>, Error> {
    let mut files = Vec::new();
    for p in paths {
        collect_files(p, &mut files)?;
    }
    let mut docs = Vec::new();
    for f in files {
        let src = std::fs::read_to_string(&f).map_err(|source| Error::Io {
            path: f.clone(),
            source,
        })?;
        match yaml::load_all(&src) {
            Ok(nodes) => {
                for n in &nodes {
                    if let Some(d) = parse_doc(&f, n, diags) {
                        docs.push(d);
                    }
                }
            }
            Err(e) => diags.push(Diagnostic::new(&f, e.line, "", e.message)),
        }
    }
    Ok(docs)
}

fn collect_files(p: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let meta = std::fs::metadata(p).map_err(|source| Error::Io {
        path: p.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|source| Error::Io {
                path: p.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            let is_yaml = e.extension().is_some_and(|x| x == "yaml" || x == "yml");
            if e.is_dir() || is_yaml {
                collect_files(&e, out)?;
            }
        }
    } else if !out.contains(&p.to_path_buf()) {
        out.push(p.to_path_buf());
    }
    Ok(())
}
