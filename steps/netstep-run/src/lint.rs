//! Offline semantic lint, modelled on `argo lint --offline` (workflow/validate/validate.go):
//! templateRefs resolve only against the loaded documents; every problem is collected.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::diag::Diagnostic;
use crate::duration::parse_duration;
use crate::expr::{self, split_depends_atom};
use crate::model::{Body, Catalog, Doc, Kind, Param, TargetRef, Task, Template, TemplateId};
use crate::subst::{self, TagError};

/// Global variables the runner provides (besides `workflow.parameters.*`).
pub const GLOBALS: &[&str] = &[
    "workflow.name",
    "workflow.namespace",
    "workflow.uid",
    "workflow.status",
    "workflow.failures",
    "workflow.duration",
    "workflow.creationTimestamp",
    "workflow.mainEntrypoint",
    "workflow.serviceAccountName",
    "workflow.parameters",
];

const RETRY_POLICIES: &[&str] = &["Always", "OnFailure", "OnError", "OnTransientError"];

struct Linter<'a> {
    cat: &'a Catalog,
    diags: BTreeSet<Diagnostic>,
}

/// Lints the given documents (indices into the catalog; all when `docs` is None).
/// Pipelines (documents with an entrypoint) are also checked end to end: every
/// template they reach through templateRef is checked against their `spec.arguments`.
pub fn lint(cat: &Catalog, docs: Option<&[usize]>) -> Vec<Diagnostic> {
    let mut l = Linter {
        cat,
        diags: BTreeSet::new(),
    };
    let all: Vec<usize> = (0..cat.docs.len()).collect();
    for &d in docs.unwrap_or(&all) {
        l.check_doc(d);
        l.check_pipeline(d);
    }
    l.diags.into_iter().collect()
}

/// Templates reachable from a pipeline's entrypoint and onExit, in visit order.
pub fn reachable(cat: &Catalog, doc: usize) -> Vec<TemplateId> {
    let spec = &cat.doc(doc).spec;
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<TemplateId> = [&spec.entrypoint, &spec.on_exit]
        .into_iter()
        .flatten()
        .filter_map(|n| cat.find_local(doc, &n.value))
        .collect();
    stack.reverse();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        out.push(id);
        for task in template_tasks(cat.template(id)) {
            if let Some(t) = task.target.as_ref().and_then(|t| cat.resolve(id.doc, t)) {
                stack.push(t);
            }
        }
    }
    out
}

/// The tasks of a DAG or the steps of a steps template.
pub fn template_tasks(t: &Template) -> Vec<&Task> {
    match &t.body {
        Body::Dag(d) => d.tasks.iter().collect(),
        Body::Steps(groups) => groups.iter().flatten().collect(),
        _ => Vec::new(),
    }
}

/// The task names a DAG task depends on (from `dependencies` or `depends`).
pub fn task_deps(task: &Task) -> Vec<String> {
    if let Some(d) = &task.dependencies {
        return d.iter().map(|s| s.value.clone()).collect();
    }
    if let Some(dep) = &task.depends
        && let Ok(e) = expr::parse(&dep.value, true)
    {
        let mut ids = Vec::new();
        e.idents(&mut ids);
        let mut out: Vec<String> = Vec::new();
        for i in ids {
            let t = split_depends_atom(&i).0.to_string();
            if !out.contains(&t) {
                out.push(t);
            }
        }
        return out;
    }
    Vec::new()
}

/// Scope for resolving tags in one place.
struct Scope<'s> {
    inputs: HashSet<&'s str>,
    /// `tasks.` or `steps.` sibling names visible here -> their template.
    siblings: HashMap<String, Option<TemplateId>>,
    sibling_prefix: &'static str,
    /// Declared workflow parameters; None when linting a template on its own.
    wf_params: Option<&'s HashSet<String>>,
    retries: bool,
}

impl Linter<'_> {
    fn err(&mut self, doc: &Doc, line: usize, path: &str, msg: impl Into<String>) {
        self.diags
            .insert(Diagnostic::new(&doc.file, line, path, msg.into()));
    }

    fn check_doc(&mut self, di: usize) {
        let doc = self.cat.doc(di);
        let spec = &doc.spec;
        let sp = &doc.spec_path;
        let mut names: HashMap<&str, usize> = HashMap::new();
        for t in &spec.templates {
            if let Some(prev) = names.insert(&t.name, t.line) {
                self.err(
                    doc,
                    t.line,
                    &t.path,
                    format!(
                        "template name '{}' is not unique (also on line {prev})",
                        t.name
                    ),
                );
            }
        }
        let is_wf = matches!(doc.kind, Kind::Workflow | Kind::CronWorkflow);
        if let Some(r) = &spec.workflow_template_ref {
            if self.cat.find_doc(&r.value, false).is_none() {
                self.err(
                    doc,
                    r.line,
                    &format!("{sp}.workflowTemplateRef.name"),
                    format!("workflowTemplateRef '{}' not found", r.value),
                );
            }
            if !spec.templates.is_empty() {
                self.err(
                    doc,
                    spec.line,
                    &format!("{sp}.templates"),
                    "templates must be empty when workflowTemplateRef is used",
                );
            }
        } else if is_wf && spec.entrypoint.is_none() {
            self.err(
                doc,
                spec.line,
                &format!("{sp}.entrypoint"),
                "spec.entrypoint is required",
            );
        }
        for (field, v) in [("entrypoint", &spec.entrypoint), ("onExit", &spec.on_exit)] {
            if let Some(v) = v
                && self.cat.find_local(di, &v.value).is_none()
            {
                self.err(
                    doc,
                    v.line,
                    &format!("{sp}.{field}"),
                    format!("template name '{}' undefined", v.value),
                );
            }
        }
        if let Some(ads) = &spec.active_deadline_seconds
            && ads.value.parse::<u64>().map_or(true, |n| n == 0)
        {
            self.err(
                doc,
                ads.line,
                &format!("{sp}.activeDeadlineSeconds"),
                format!("must be a positive integer, got `{}`", ads.value),
            );
        }
        self.check_params_unique(doc, &spec.arguments);
        for p in &spec.arguments {
            self.check_enum(doc, p);
        }
        for (ti, _) in spec.templates.iter().enumerate() {
            self.check_template(
                TemplateId {
                    doc: di,
                    template: ti,
                },
                None,
            );
        }
    }

    fn check_params_unique(&mut self, doc: &Doc, params: &[Param]) {
        let mut seen = HashSet::new();
        for p in params {
            if !seen.insert(&p.name) {
                self.err(
                    doc,
                    p.line,
                    &p.path,
                    format!("parameter '{}' is defined more than once", p.name),
                );
            }
        }
    }

    fn check_enum(&mut self, doc: &Doc, p: &Param) {
        if p.enum_values.is_empty() {
            return;
        }
        for v in [&p.value, &p.default].into_iter().flatten() {
            if !v.contains("{{") && !p.enum_values.contains(v) {
                self.err(
                    doc,
                    p.line,
                    &p.path,
                    format!("value '{v}' is not in enum [{}]", p.enum_values.join(", ")),
                );
            }
        }
    }

    /// Pipeline checks: entrypoint inputs supplied, workflow.parameters declared in
    /// every template the pipeline reaches.
    fn check_pipeline(&mut self, di: usize) {
        let doc = self.cat.doc(di);
        let Some(ep) = &doc.spec.entrypoint else {
            return;
        };
        let declared: HashSet<String> = doc.spec.arguments.iter().map(|p| p.name.clone()).collect();
        // A WorkflowTemplate's entrypoint inputs may be supplied at submission
        // (`argo submit --from workflowtemplate/x -p name=value`); a Workflow's may not.
        let submitted_later = matches!(
            doc.kind,
            Kind::WorkflowTemplate | Kind::ClusterWorkflowTemplate
        );
        if let Some(entry) = self.cat.find_local(di, &ep.value)
            && !submitted_later
        {
            let t = self.cat.template(entry);
            for input in &t.inputs {
                if input.value.is_none()
                    && input.default.is_none()
                    && !declared.contains(&input.name)
                {
                    self.err(
                        doc,
                        ep.line,
                        &format!("{}.entrypoint", doc.spec_path),
                        format!(
                            "inputs.parameters.{} was not supplied (entrypoint '{}' needs it from spec.arguments)",
                            input.name, t.name
                        ),
                    );
                }
            }
        }
        for id in reachable(self.cat, di) {
            self.check_template(id, Some((&declared, doc)));
        }
    }

    fn check_template(&mut self, id: TemplateId, pipeline: Option<(&HashSet<String>, &Doc)>) {
        let cat = self.cat;
        let doc = cat.doc(id.doc);
        let t = cat.template(id);
        let tp = &t.path;
        // Structural checks only once (standalone pass); the pipeline pass only checks
        // workflow.parameters references.
        let standalone = pipeline.is_none();
        let wf_params = pipeline.map(|p| p.0);
        let suffix = pipeline
            .map(|(_, d)| format!(" in spec.arguments of pipeline '{}'", d.name))
            .unwrap_or_default();
        if standalone {
            self.check_template_structure(doc, t);
        }
        let inputs: HashSet<&str> = t.inputs.iter().map(|p| p.name.as_str()).collect();
        let base = Scope {
            inputs: inputs.clone(),
            siblings: HashMap::new(),
            sibling_prefix: "tasks",
            wf_params,
            retries: t.retry.is_some(),
        };
        for p in &t.inputs {
            for v in [&p.value, &p.default].into_iter().flatten() {
                let s = Scope {
                    inputs: HashSet::new(),
                    ..base_clone(&base)
                };
                self.check_tags(doc, p.line, &p.path, v, &s, &suffix);
            }
        }
        if let Some(r) = &t.retry {
            for v in [&r.limit, &r.duration, &r.factor, &r.max_duration, &r.cap]
                .into_iter()
                .flatten()
            {
                self.check_tags(doc, v.line, &r.path, &v.value, &base, &suffix);
            }
        }
        if let Some(a) = &t.active_deadline_seconds {
            self.check_tags(
                doc,
                a.line,
                &format!("{tp}.activeDeadlineSeconds"),
                &a.value,
                &base,
                &suffix,
            );
        }
        match &t.body {
            Body::Container(c) => {
                let cp = &c.path;
                if let Some(img) = &c.image {
                    self.check_tags(
                        doc,
                        img.line,
                        &format!("{cp}.image"),
                        &img.value,
                        &base,
                        &suffix,
                    );
                }
                for (i, a) in c.command.iter().enumerate() {
                    self.check_tags(
                        doc,
                        c.line,
                        &format!("{cp}.command[{i}]"),
                        a,
                        &base,
                        &suffix,
                    );
                }
                for (i, a) in c.args.iter().enumerate() {
                    self.check_tags(doc, c.line, &format!("{cp}.args[{i}]"), a, &base, &suffix);
                }
                for e in &c.env {
                    if let Some(v) = &e.value {
                        self.check_tags(
                            doc,
                            e.line,
                            &format!("{cp}.env[{}]", e.name),
                            v,
                            &base,
                            &suffix,
                        );
                    }
                }
                if let Some(w) = &c.working_dir {
                    self.check_tags(doc, c.line, &format!("{cp}.workingDir"), w, &base, &suffix);
                }
                for o in &t.outputs {
                    for v in [&o.from_path, &o.default, &o.value].into_iter().flatten() {
                        self.check_tags(doc, o.line, &o.path, v, &base, &suffix);
                    }
                }
            }
            Body::Dag(dag) => {
                let siblings: HashMap<String, Option<TemplateId>> = dag
                    .tasks
                    .iter()
                    .map(|task| {
                        (
                            task.name.clone(),
                            task.target.as_ref().and_then(|x| cat.resolve(id.doc, x)),
                        )
                    })
                    .collect();
                let deps: HashMap<&str, Vec<String>> = dag
                    .tasks
                    .iter()
                    .map(|x| (x.name.as_str(), task_deps(x)))
                    .collect();
                if standalone {
                    self.check_dag_graph(doc, t, &dag.tasks, &deps);
                }
                for task in &dag.tasks {
                    // Only ancestors' outputs may be referenced.
                    let anc = ancestors(&task.name, &deps);
                    let scope = Scope {
                        inputs: inputs.clone(),
                        siblings: siblings
                            .iter()
                            .filter(|(k, _)| anc.contains(k.as_str()))
                            .map(|(k, v)| (k.clone(), *v))
                            .collect(),
                        sibling_prefix: "tasks",
                        wf_params,
                        retries: false,
                    };
                    self.check_task(id, task, &scope, standalone, &suffix, &siblings);
                }
                for o in &t.outputs {
                    let scope = Scope {
                        siblings: siblings.clone(),
                        ..base_clone(&base)
                    };
                    for v in [&o.from_parameter, &o.default, &o.value]
                        .into_iter()
                        .flatten()
                    {
                        self.check_tags(doc, o.line, &o.path, v, &scope, &suffix);
                    }
                }
            }
            Body::Steps(groups) => {
                let mut visible: HashMap<String, Option<TemplateId>> = HashMap::new();
                let mut names = HashSet::new();
                for group in groups {
                    let scope = Scope {
                        inputs: inputs.clone(),
                        siblings: visible.clone(),
                        sibling_prefix: "steps",
                        wf_params,
                        retries: false,
                    };
                    for step in group {
                        if standalone && !names.insert(step.name.clone()) {
                            self.err(
                                doc,
                                step.line,
                                &step.path,
                                format!("step name '{}' is not unique", step.name),
                            );
                        }
                        self.check_task(id, step, &scope, standalone, &suffix, &HashMap::new());
                    }
                    for step in group {
                        visible.insert(
                            step.name.clone(),
                            step.target.as_ref().and_then(|x| cat.resolve(id.doc, x)),
                        );
                    }
                }
                for o in &t.outputs {
                    let scope = Scope {
                        siblings: visible.clone(),
                        sibling_prefix: "steps",
                        ..base_clone(&base)
                    };
                    for v in [&o.from_parameter, &o.default, &o.value]
                        .into_iter()
                        .flatten()
                    {
                        self.check_tags(doc, o.line, &o.path, v, &scope, &suffix);
                    }
                }
            }
            Body::Unsupported(_) | Body::None => {}
        }
    }

    fn check_template_structure(&mut self, doc: &Doc, t: &Template) {
        let tp = &t.path;
        match t.body_kinds.len() {
            1 => {}
            0 => self.err(doc, t.line, tp, "template type unspecified: it needs exactly one of container, script, dag, steps, resource, suspend, ..."),
            _ => self.err(
                doc,
                t.line,
                tp,
                format!(
                    "template must have exactly one template type, found {}",
                    t.body_kinds.join(", ")
                ),
            ),
        }
        self.check_params_unique(doc, &t.inputs);
        for p in &t.inputs {
            self.check_enum(doc, p);
        }
        let leaf = !matches!(t.body, Body::Dag(_) | Body::Steps(_));
        if let Some(a) = &t.active_deadline_seconds {
            if !leaf {
                self.err(
                    doc,
                    a.line,
                    &format!("{tp}.activeDeadlineSeconds"),
                    "activeDeadlineSeconds is only valid for leaf templates",
                );
            } else if !a.value.contains("{{") && a.value.parse::<u64>().map_or(true, |n| n == 0) {
                self.err(
                    doc,
                    a.line,
                    &format!("{tp}.activeDeadlineSeconds"),
                    format!(
                        "activeDeadlineSeconds must be a positive integer, got `{}`",
                        a.value
                    ),
                );
            }
        }
        if let Some(to) = &t.timeout
            && !to.value.contains("{{")
            && let Err(e) = parse_duration(&to.value)
        {
            self.err(doc, to.line, &format!("{tp}.timeout"), e);
        }
        if let Some(r) = &t.retry {
            let rp = &r.path;
            if let Some(p) = &r.policy
                && !RETRY_POLICIES.contains(&p.value.as_str())
            {
                self.err(
                    doc,
                    p.line,
                    &format!("{rp}.retryPolicy"),
                    format!(
                        "retryPolicy '{}' is invalid (valid: {})",
                        p.value,
                        RETRY_POLICIES.join(", ")
                    ),
                );
            }
            if let Some(l) = &r.limit
                && !l.value.contains("{{")
                && l.value.parse::<u32>().is_err()
            {
                self.err(
                    doc,
                    l.line,
                    &format!("{rp}.limit"),
                    format!("limit must be a non-negative integer, got `{}`", l.value),
                );
            }
            if let Some(e) = &r.expression {
                match expr::parse(&e.value, false) {
                    Err(err) => self.err(
                        doc,
                        e.line,
                        &format!("{rp}.expression"),
                        format!("unsupported or invalid expression: {err}"),
                    ),
                    Ok(ex) => {
                        let mut ids = Vec::new();
                        ex.idents(&mut ids);
                        for i in ids {
                            if !RETRY_VARS.contains(&i.as_str()) {
                                self.err(
                                    doc,
                                    e.line,
                                    &format!("{rp}.expression"),
                                    format!(
                                        "unknown variable `{i}` (known: {})",
                                        RETRY_VARS.join(", ")
                                    ),
                                );
                            }
                        }
                        if ex.compares_ident_with_number("lastRetry.exitCode") {
                            self.err(
                                doc,
                                e.line,
                                &format!("{rp}.expression"),
                                "lastRetry.exitCode is a string: comparing it with a number is always false; use asInt(lastRetry.exitCode) or quote the number",
                            );
                        }
                    }
                }
            }
            for (field, v) in [
                ("duration", &r.duration),
                ("maxDuration", &r.max_duration),
                ("cap", &r.cap),
            ] {
                if let Some(v) = v
                    && !v.value.contains("{{")
                    && let Err(e) = parse_duration(&v.value)
                {
                    self.err(doc, v.line, &format!("{rp}.backoff.{field}"), e);
                }
            }
            if let Some(f) = &r.factor
                && !f.value.contains("{{")
                && f.value.trim().parse::<u32>().is_err()
            {
                self.err(
                    doc,
                    f.line,
                    &format!("{rp}.backoff.factor"),
                    format!(
                        "factor must be a non-negative integer (Argo parses it as int32), got `{}`",
                        f.value
                    ),
                );
            }
        }
        for o in &t.outputs {
            if o.value.is_some()
                && (o.from_path.is_some() || o.from_parameter.is_some() || o.other_source.is_some())
            {
                self.err(
                    doc,
                    o.line,
                    &o.path,
                    "value and valueFrom are mutually exclusive",
                );
            }
            match &t.body {
                Body::Container(_)
                    if o.from_path.is_none() && o.value.is_none() && o.other_source.is_none() =>
                {
                    self.err(
                        doc,
                        o.line,
                        &o.path,
                        "valueFrom.path must be specified for container templates",
                    );
                }
                Body::Dag(_) | Body::Steps(_)
                    if o.from_parameter.is_none()
                        && o.value.is_none()
                        && o.other_source.is_none() =>
                {
                    self.err(
                        doc,
                        o.line,
                        &o.path,
                        "valueFrom.parameter must be specified for dag/steps templates",
                    );
                }
                _ => {}
            }
        }
        if let Body::Container(c) = &t.body {
            match &c.image {
                Some(i) if !i.value.trim().is_empty() => {}
                _ => self.err(
                    doc,
                    c.line,
                    &format!("{}.image", c.path),
                    "container image is required",
                ),
            }
        }
    }

    fn check_dag_graph(
        &mut self,
        doc: &Doc,
        t: &Template,
        tasks: &[Task],
        deps: &HashMap<&str, Vec<String>>,
    ) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for task in tasks {
            if let Some(prev) = seen.insert(&task.name, task.line) {
                self.err(
                    doc,
                    task.line,
                    &task.path,
                    format!(
                        "task name '{}' is not unique (also on line {prev})",
                        task.name
                    ),
                );
            }
        }
        for task in tasks {
            if task.dependencies.is_some() && task.depends.is_some() {
                self.err(
                    doc,
                    task.line,
                    &task.path,
                    "cannot use both 'depends' and 'dependencies' in the same DAG template",
                );
            }
            if task.depends.is_some() && (task.continue_on_failed || task.continue_on_error) {
                self.err(
                    doc,
                    task.line,
                    &task.path,
                    "cannot use 'continueOn' when using 'depends'; use '.Failed'/'.Errored' results instead",
                );
            }
            if let Some(d) = &task.depends {
                match expr::parse(&d.value, true) {
                    Err(e) => self.err(
                        doc,
                        d.line,
                        &format!("{}.depends", task.path),
                        format!("invalid depends expression: {e}"),
                    ),
                    Ok(e) => {
                        let mut ids = Vec::new();
                        e.idents(&mut ids);
                        for i in ids {
                            let (name, _) = split_depends_atom(&i);
                            if !seen.contains_key(name) {
                                self.err(
                                    doc,
                                    d.line,
                                    &format!("{}.depends", task.path),
                                    format!(
                                        "dependency '{name}' not found in the DAG (task '{}')",
                                        task.name
                                    ),
                                );
                            }
                        }
                    }
                }
            }
            for d in task.dependencies.iter().flatten() {
                if !seen.contains_key(d.value.as_str()) {
                    self.err(
                        doc,
                        d.line,
                        &format!("{}.dependencies", task.path),
                        format!(
                            "dependency '{}' not found in the DAG (task '{}')",
                            d.value, task.name
                        ),
                    );
                }
            }
        }
        // Cycles: DFS with colours; report each cycle once.
        let mut colour: HashMap<&str, u8> = HashMap::new();
        let mut reported: HashSet<Vec<String>> = HashSet::new();
        for task in tasks {
            let mut stack = Vec::new();
            self.dfs_cycle(
                doc,
                t,
                tasks,
                deps,
                &task.name,
                &mut colour,
                &mut stack,
                &mut reported,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn dfs_cycle<'t>(
        &mut self,
        doc: &Doc,
        t: &Template,
        tasks: &'t [Task],
        deps: &'t HashMap<&str, Vec<String>>,
        node: &'t str,
        colour: &mut HashMap<&'t str, u8>,
        stack: &mut Vec<&'t str>,
        reported: &mut HashSet<Vec<String>>,
    ) {
        match colour.get(node) {
            Some(2) => return,
            Some(1) => {
                let start = stack.iter().position(|n| *n == node).unwrap_or(0);
                let mut cycle: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                let mut key = cycle.clone();
                key.sort();
                if reported.insert(key) {
                    cycle.push(node.to_string());
                    let line = tasks
                        .iter()
                        .find(|x| x.name == node)
                        .map_or(t.line, |x| x.line);
                    self.err(
                        doc,
                        line,
                        &format!("{}.dag", t.path),
                        format!("dependency cycle: {}", cycle.join(" -> ")),
                    );
                }
                return;
            }
            _ => {}
        }
        let Some(ds) = deps.get(node) else { return };
        colour.insert(node, 1);
        stack.push(node);
        for d in ds {
            if let Some((k, _)) = deps.get_key_value(d.as_str()) {
                self.dfs_cycle(doc, t, tasks, deps, k, colour, stack, reported);
            }
        }
        stack.pop();
        colour.insert(node, 2);
    }

    fn check_task(
        &mut self,
        caller: TemplateId,
        task: &Task,
        scope: &Scope,
        standalone: bool,
        suffix: &str,
        all_siblings: &HashMap<String, Option<TemplateId>>,
    ) {
        let cat = self.cat;
        let doc = cat.doc(caller.doc);
        let callee = task
            .target
            .as_ref()
            .and_then(|x| cat.resolve(caller.doc, x));
        if standalone {
            match (&task.target, callee) {
                (Some(TargetRef::Local(n)), None) => self.err(
                    doc,
                    n.line,
                    &format!("{}.template", task.path),
                    format!("template name '{}' undefined", n.value),
                ),
                (Some(TargetRef::Ref { name, template, .. }), None) => {
                    let msg = if cat
                        .find_doc(
                            &name.value,
                            matches!(
                                task.target,
                                Some(TargetRef::Ref {
                                    cluster_scope: true,
                                    ..
                                })
                            ),
                        )
                        .is_none()
                    {
                        format!(
                            "template reference {}.{} not found: WorkflowTemplate '{}' is not among the loaded files",
                            name.value, template.value, name.value
                        )
                    } else {
                        format!(
                            "template reference {}.{} not found: WorkflowTemplate '{}' has no template '{}'",
                            name.value, template.value, name.value, template.value
                        )
                    };
                    self.err(
                        doc,
                        template.line,
                        &format!("{}.templateRef", task.path),
                        msg,
                    );
                }
                _ => {}
            }
            self.check_params_unique(doc, &task.arguments);
            for a in &task.arguments {
                if a.value.is_none() && !a.has_value_from {
                    self.err(
                        doc,
                        a.line,
                        &a.path,
                        format!("argument '{}' has no value or valueFrom", a.name),
                    );
                }
            }
            if let Some(cid) = callee {
                let ct = cat.template(cid);
                for input in &ct.inputs {
                    let supplied = task.arguments.iter().any(|a| a.name == input.name);
                    if !supplied && input.value.is_none() && input.default.is_none() {
                        self.err(
                            doc,
                            task.line,
                            &task.path,
                            format!(
                                "inputs.parameters.{} was not supplied (required by template '{}')",
                                input.name, ct.name
                            ),
                        );
                    }
                }
                for a in &task.arguments {
                    match ct.inputs.iter().find(|i| i.name == a.name) {
                        None => self.err(
                            doc,
                            a.line,
                            &a.path,
                            format!(
                                "argument '{}' is not an input of template '{}'",
                                a.name, ct.name
                            ),
                        ),
                        Some(i) => {
                            if let Some(v) = &a.value
                                && !i.enum_values.is_empty()
                                && !v.contains("{{")
                                && !i.enum_values.contains(v)
                            {
                                self.err(
                                    doc,
                                    a.line,
                                    &a.path,
                                    format!(
                                        "value '{v}' is not in enum [{}] of input '{}'",
                                        i.enum_values.join(", "),
                                        i.name
                                    ),
                                );
                            }
                        }
                    }
                }
            }
        }
        for a in &task.arguments {
            if let Some(v) = &a.value {
                self.check_task_tags(doc, a.line, &a.path, v, scope, suffix, all_siblings);
            }
        }
        if let Some(w) = &task.when {
            self.check_task_tags(
                doc,
                w.line,
                &format!("{}.when", task.path),
                &w.value,
                scope,
                suffix,
                all_siblings,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check_task_tags(
        &mut self,
        doc: &Doc,
        line: usize,
        path: &str,
        v: &str,
        scope: &Scope,
        suffix: &str,
        all_siblings: &HashMap<String, Option<TemplateId>>,
    ) {
        // A clearer message for tasks that exist but are not dependencies.
        if let Ok(tags) = subst::tags(v) {
            for tag in &tags {
                if let Some(rest) = tag.strip_prefix("tasks.") {
                    let name = rest.split('.').next().unwrap_or("");
                    if all_siblings.contains_key(name) && !scope.siblings.contains_key(name) {
                        self.err(
                            doc,
                            line,
                            path,
                            format!("failed to resolve {{{{{tag}}}}}: task '{name}' is not a dependency (direct or indirect) of this task"),
                        );
                        return;
                    }
                }
            }
        }
        self.check_tags(doc, line, path, v, scope, suffix);
    }

    fn check_tags(
        &mut self,
        doc: &Doc,
        line: usize,
        path: &str,
        v: &str,
        scope: &Scope,
        suffix: &str,
    ) {
        let tags = match subst::tags(v) {
            Ok(t) => t,
            Err(e) => {
                self.err(doc, line, path, e.to_string());
                return;
            }
        };
        for tag in tags {
            if tag.starts_with('=') {
                continue; // expression tags: not checked (the runner rejects them)
            }
            if let Err(reason) = self.resolve_tag(&tag, scope) {
                let base = TagError::Unresolved(tag.clone()).to_string();
                let msg = match reason {
                    TagProblem::WorkflowParam => {
                        format!("{base}: not declared{suffix}")
                    }
                    TagProblem::Other(r) if r.is_empty() => base,
                    TagProblem::Other(r) => format!("{base}: {r}"),
                };
                self.err(doc, line, path, msg);
            }
        }
    }

    fn resolve_tag(&self, tag: &str, scope: &Scope) -> Result<(), TagProblem> {
        if let Some(name) = tag.strip_prefix("inputs.parameters.") {
            return if scope.inputs.contains(name) {
                Ok(())
            } else {
                Err(TagProblem::Other(format!(
                    "input parameter '{name}' is not declared"
                )))
            };
        }
        if let Some(name) = tag.strip_prefix("workflow.parameters.") {
            return match scope.wf_params {
                Some(p) if !p.contains(name) => Err(TagProblem::WorkflowParam),
                _ => Ok(()),
            };
        }
        if GLOBALS.contains(&tag) || (scope.retries && tag == "retries") {
            return Ok(());
        }
        let prefix = scope.sibling_prefix;
        if let Some(rest) = tag.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) {
            let (name, field) = rest.split_once('.').unwrap_or((rest, ""));
            let Some(target) = scope.siblings.get(name) else {
                return Err(TagProblem::Other(if prefix == "tasks" {
                    format!("there is no task '{name}' in this DAG")
                } else {
                    format!("there is no earlier step '{name}'")
                }));
            };
            return match field {
                "status" | "exitCode" | "startedAt" | "finishedAt" | "id" => Ok(()),
                "outputs.result" => Ok(()),
                f => match f.strip_prefix("outputs.parameters.") {
                    Some(out) => match target {
                        Some(tid) => {
                            let t = self.cat.template(*tid);
                            if t.outputs.iter().any(|o| o.name == out) {
                                Ok(())
                            } else {
                                Err(TagProblem::Other(format!(
                                    "template '{}' of '{name}' has no output parameter '{out}'",
                                    t.name
                                )))
                            }
                        }
                        None => Ok(()), // unresolved target is reported elsewhere
                    },
                    None => Err(TagProblem::Other(String::new())),
                },
            };
        }
        Err(TagProblem::Other(String::new()))
    }
}

enum TagProblem {
    WorkflowParam,
    Other(String),
}

fn base_clone<'s>(s: &Scope<'s>) -> Scope<'s> {
    Scope {
        inputs: s.inputs.clone(),
        siblings: s.siblings.clone(),
        sibling_prefix: s.sibling_prefix,
        wf_params: s.wf_params,
        retries: s.retries,
    }
}

/// Variables visible to `retryStrategy.expression`.
pub const RETRY_VARS: &[&str] = &[
    "lastRetry.exitCode",
    "lastRetry.status",
    "lastRetry.duration",
    "lastRetry.message",
];

/// All (transitive) dependencies of `task`.
fn ancestors<'d>(task: &str, deps: &'d HashMap<&str, Vec<String>>) -> HashSet<&'d str> {
    let mut out = HashSet::new();
    let mut stack: Vec<&str> = deps
        .get(task)
        .map(|d| d.iter().map(String::as_str).collect())
        .unwrap_or_default();
    while let Some(n) = stack.pop() {
        if let Some((k, ds)) = deps.get_key_value(n)
            && out.insert(*k)
        {
            stack.extend(ds.iter().map(String::as_str));
        }
    }
    out
}
