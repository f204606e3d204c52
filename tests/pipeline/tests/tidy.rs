//! Tidy checks of the Argo manifests (templates/, workflows/) against the step crates, the step
//! binary contract (steps/netstep/src/step.rs) and the hardening rules. Offline and fast: it
//! only reads files. The structural (schema) check is `.ci/validate-manifests`; this test does
//! the semantic part that a schema cannot see:
//!
//! * every step crate has a WorkflowTemplate, a README, a test Workflow and an image target;
//! * every step template's image and command belong to a step crate, and every `--flag=` it
//!   passes is one the binary accepts;
//! * annotations, labels, identity, retry semantics, deadlines, resources and the pod/container
//!   security context are as required;
//! * no shell anywhere (`sh -c`, script templates);
//! * templateRefs resolve, arguments match the referenced inputs, required inputs are supplied,
//!   DAG dependencies exist and are acyclic, workflow parameters are declared;
//! * the pipelines share one mutex and order their steps as AVNM requires;
//! * the Sensor submits existing pipelines with the run key and revision it documents.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// A small YAML loader (saphyr-parser events -> serde_json::Value): block and flow collections,
// anchors and aliases, YAML 1.2 core-schema scalars, duplicate keys rejected.
// ---------------------------------------------------------------------------------------------
mod yaml {
    use saphyr_parser::{Event, Parser, ScalarStyle};
    use serde_json::{Map, Number, Value};
    use std::collections::HashMap;

    enum Frame {
        Seq(Vec<Value>, usize),
        Map(Map<String, Value>, Option<String>, usize),
    }

    /// Parses every document of a YAML stream. Errors carry the line number.
    pub fn load_all(text: &str) -> Result<Vec<Value>, String> {
        let mut parser = Parser::new_from_str(text);
        let mut docs = Vec::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut anchors: HashMap<usize, Value> = HashMap::new();
        let mut root: Option<Value> = None;
        while let Some(next) = parser.next_event() {
            let (event, span) = next.map_err(|e| format!("YAML error: {e}"))?;
            let line = span.start.line();
            let complete: Option<(Value, usize)> = match event {
                Event::StreamStart | Event::Nothing => None,
                Event::StreamEnd => break,
                Event::DocumentStart(_) => {
                    root = None;
                    None
                }
                Event::DocumentEnd => {
                    docs.push(root.take().unwrap_or(Value::Null));
                    None
                }
                Event::Alias(id) => Some((
                    anchors
                        .get(&id)
                        .cloned()
                        .ok_or_else(|| format!("line {line}: unknown alias"))?,
                    0,
                )),
                Event::Scalar(v, style, anchor, _tag) => {
                    Some((resolve_scalar(&v, style == ScalarStyle::Plain), anchor))
                }
                Event::SequenceStart(anchor, _) => {
                    stack.push(Frame::Seq(Vec::new(), anchor));
                    None
                }
                Event::MappingStart(anchor, _) => {
                    stack.push(Frame::Map(Map::new(), None, anchor));
                    None
                }
                Event::SequenceEnd => match stack.pop() {
                    Some(Frame::Seq(items, anchor)) => Some((Value::Array(items), anchor)),
                    _ => return Err(format!("line {line}: unbalanced sequence end")),
                },
                Event::MappingEnd => match stack.pop() {
                    Some(Frame::Map(map, None, anchor)) => Some((Value::Object(map), anchor)),
                    _ => return Err(format!("line {line}: unbalanced mapping end")),
                },
            };
            let Some((value, anchor)) = complete else {
                continue;
            };
            if anchor != 0 {
                anchors.insert(anchor, value.clone());
            }
            match stack.last_mut() {
                None => root = Some(value),
                Some(Frame::Seq(items, _)) => items.push(value),
                Some(Frame::Map(map, pending, _)) => match pending.take() {
                    None => {
                        let key = match value {
                            Value::String(s) => s,
                            Value::Null => String::new(),
                            other => other.to_string(),
                        };
                        if map.contains_key(&key) {
                            return Err(format!("line {line}: duplicate key {key:?}"));
                        }
                        *pending = Some(key);
                    }
                    Some(key) => {
                        map.insert(key, value);
                    }
                },
            }
        }
        Ok(docs)
    }

    fn resolve_scalar(s: &str, plain: bool) -> Value {
        if !plain {
            return Value::String(s.to_string());
        }
        match s {
            "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
            "true" | "True" | "TRUE" => return Value::Bool(true),
            "false" | "False" | "FALSE" => return Value::Bool(false),
            _ => {}
        }
        let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
        if !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && let Ok(i) = s.parse::<i64>()
        {
            return Value::Number(i.into());
        }
        let looks_float = digits.bytes().any(|b| b.is_ascii_digit())
            && digits
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
            && digits.starts_with(|c: char| c.is_ascii_digit() || c == '.');
        if looks_float && let Some(n) = s.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
        Value::String(s.to_string())
    }

    #[test]
    fn loader_handles_the_yaml_the_manifests_use() {
        let docs = load_all(
            "# c\na: &x {b: [1, \"2\", true, ~]}\nc: *x\nd: |-\n  line1\n  line2\ne: '07'\nf: 1.5\n---\n- x\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["a"]["b"], serde_json::json!([1, "2", true, null]));
        assert_eq!(docs[0]["c"], docs[0]["a"]);
        assert_eq!(docs[0]["d"], "line1\nline2");
        assert_eq!(docs[0]["e"], "07");
        assert_eq!(docs[0]["f"], 1.5);
        assert_eq!(docs[1], serde_json::json!(["x"]));
        assert!(
            load_all("a: 1\na: 2\n")
                .unwrap_err()
                .contains("duplicate key")
        );
        assert!(load_all("a: [1\n").is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// The contract and the repository layout.
// ---------------------------------------------------------------------------------------------

/// Crates under steps/ that are libraries or tools, not step images.
const NOT_STEP_CRATES: &[&str] = &["netstep", "netstep-run"];

/// Flags the templates pass that the binaries do not define yet: the integrator adds them
/// (see the templates' READMEs and docs/operations.md). A flag listed here is accepted only
/// for that crate; once the crate's sources define it, it is found there anyway.
const PENDING_FLAGS: &[(&str, &[&str])] = &[];

/// Outputs each step must declare (besides `changes` and `record`).
const STEP_OUTPUTS: &[(&str, &[&str])] = &[
    ("vnets", &["vnet-ids"]),
    ("tag-groups", &["group-ids"]),
    ("mesh-connect", &["deployed-regions"]),
    ("admin-rules", &["committed-regions"]),
    ("fw-policy", &["policy-ids"]),
    ("dns-link", &["zone-ids"]),
    ("verify", &["drift", "report"]),
];

/// The exact retry expression: exit 75 (transient) or a pod-level Error.
const RETRY_EXPRESSION: &str = r#"lastRetry.exitCode == "75" || lastRetry.status == "Error""#;

const RUN_AS: i64 = 65532;
/// The ServiceAccount of Argo's executor containers (templates/rbac).
const EXECUTOR_SA: &str = "netstep-executor";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The step crates: directories under steps/ with a Cargo.toml, minus the libraries.
fn step_crates(root: &Path) -> BTreeSet<String> {
    let mut crates = BTreeSet::new();
    for entry in std::fs::read_dir(root.join("steps")).expect("steps/") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().to_string();
        if entry.path().join("Cargo.toml").is_file() && !NOT_STEP_CRATES.contains(&name.as_str()) {
            crates.insert(name);
        }
    }
    assert!(
        crates.len() >= 6,
        "expected the six step crates, found {crates:?}"
    );
    crates
}

/// `#[arg(long ...)]` fields of a Rust source, as flag names: the field name in kebab case, or
/// the explicit `long = "name"`. `only_struct` limits the scan to one struct's body.
fn long_flags_in(source: &str, only_struct: Option<&str>) -> BTreeSet<String> {
    let body = match only_struct {
        Some(name) => {
            let start = source
                .find(&format!("pub struct {name} {{"))
                .unwrap_or_else(|| panic!("struct {name} not found"));
            let rest = &source[start..];
            &rest[..rest.find("\n}").expect("end of struct")]
        }
        None => source,
    };
    let mut flags = BTreeSet::new();
    // Some(None): a `long` arg attribute was seen; Some(Some(name)): with an explicit name.
    let mut pending: Option<Option<String>> = None;
    for line in body.lines().map(str::trim) {
        if line.starts_with("#[arg(") {
            let explicit = line
                .split_once("long = \"")
                .and_then(|(_, r)| r.split_once('"'));
            if let Some((name, _)) = explicit {
                pending = Some(Some(name.to_string()));
            } else if line.contains("long") {
                pending = Some(None);
            }
        } else if line.starts_with("#[") || line.starts_with("//") || line.is_empty() {
            // Other attributes and doc comments between the arg attribute and its field.
        } else if let Some(explicit) = pending.take() {
            let decl = line
                .strip_prefix("pub(crate) ")
                .or_else(|| line.strip_prefix("pub "))
                .unwrap_or(line);
            if let Some((field, _)) = decl.split_once(':') {
                let field = field.trim();
                if !field.is_empty() && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    flags.insert(explicit.unwrap_or_else(|| field.replace('_', "-")));
                }
            }
        }
    }
    flags
}

#[test]
fn flag_scanner_reads_clap_fields() {
    let src = r#"
struct A {
    /// Doc.
    #[arg(long, env = "X")]
    pub run_key: Option<String>,
    #[arg(long = "only", value_enum)]
    area: Area,
    #[arg(short)]
    verbose: bool,
    #[arg(long)]
    #[arg(default_value_t = false)]
    snapshot_only: bool,
}
"#;
    let flags: Vec<String> = long_flags_in(src, None).into_iter().collect();
    assert_eq!(flags, ["only", "run-key", "snapshot-only"]);
}

/// Flags every step binary accepts: the `CommonArgs` of the step contract.
fn common_flags(root: &Path) -> BTreeSet<String> {
    let flags = long_flags_in(
        &read(&root.join("steps/netstep/src/step.rs")),
        Some("CommonArgs"),
    );
    for must in [
        "intent",
        "state",
        "run-key",
        "mode",
        "arm-endpoint",
        "outputs-dir",
        "log-format",
    ] {
        assert!(flags.contains(must), "CommonArgs lost --{must}: {flags:?}");
    }
    flags
}

/// Flags the binary of `krate` accepts: the common ones, its own `#[arg(long)]` fields and the
/// pending ones listed above.
fn accepted_flags(root: &Path, common: &BTreeSet<String>, krate: &str) -> BTreeSet<String> {
    let mut flags = common.clone();
    let src = root.join("steps").join(krate).join("src");
    if let Ok(dir) = std::fs::read_dir(&src) {
        for entry in dir.flatten() {
            if entry.path().extension().is_some_and(|e| e == "rs") {
                flags.extend(long_flags_in(&read(&entry.path()), None));
            }
        }
    }
    for (c, pending) in PENDING_FLAGS {
        if *c == krate {
            flags.extend(pending.iter().map(|s| s.to_string()));
        }
    }
    flags
}

/// One YAML document of the repository.
struct Doc {
    file: String,
    value: Value,
}

impl Doc {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }
    fn name(&self) -> &str {
        self.value["metadata"]["name"]
            .as_str()
            .or_else(|| self.value["metadata"]["generateName"].as_str())
            .unwrap_or("?")
    }
    fn label(&self) -> String {
        format!("{} {}/{}", self.file, self.kind(), self.name())
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "kustomizeconfig") {
                yaml_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml")
            && path.file_name().is_some_and(|n| n != "kustomization.yaml")
        {
            out.push(path);
        }
    }
}

fn load_docs(root: &Path) -> Vec<Doc> {
    let mut files = Vec::new();
    yaml_files(&root.join("templates"), &mut files);
    yaml_files(&root.join("workflows"), &mut files);
    files.sort();
    let mut docs = Vec::new();
    for path in files {
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let values = yaml::load_all(&read(&path)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        for value in values.into_iter().filter(|v| !v.is_null()) {
            docs.push(Doc {
                file: rel.clone(),
                value,
            });
        }
    }
    docs
}

// ---------------------------------------------------------------------------------------------
// Checks. Each returns the problems it found, so the unit tests below can prove it fails.
// ---------------------------------------------------------------------------------------------

fn s<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn arr<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// `{{inputs.parameters.X}}`-style references (prefix `inputs.parameters.`) in a string.
fn refs(text: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else { break };
        let inner = after[..j].trim();
        if let Some(name) = inner.strip_prefix(prefix) {
            out.push(name.to_string());
        }
        rest = &after[j + 2..];
    }
    out
}

fn all_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| all_strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| all_strings(x, out)),
        _ => {}
    }
}

/// Evaluates a retry expression of the form `A == "x" || B == "y"` (the only form the
/// templates use) for one failed attempt. Anything else is an error, so a changed expression
/// fails this test until its semantics are checked here too.
fn retry_expression_retries(expr: &str, exit_code: &str, status: &str) -> Result<bool, String> {
    if expr.contains(['(', ')', '&', '!']) {
        return Err(format!("unsupported retry expression {expr:?}"));
    }
    let mut result = false;
    for term in expr.split("||") {
        let (lhs, rhs) = term
            .split_once("==")
            .ok_or_else(|| format!("not an equality: {term:?}"))?;
        let rhs = rhs.trim();
        let literal = rhs
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .or_else(|| rhs.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
            .ok_or_else(|| format!("right side must be a string literal: {rhs:?}"))?;
        let actual = match lhs.trim() {
            "lastRetry.exitCode" => exit_code,
            "lastRetry.status" => status,
            other => return Err(format!("unsupported variable {other:?}")),
        };
        result |= actual == literal;
    }
    Ok(result)
}

/// The retry semantics every step template must have: (exit code, node phase, retried?).
/// Argo gives the expression the exit code as a string, "-1" when there is none.
const RETRY_CASES: &[(&str, &str, bool)] = &[
    ("75", "Failed", true),   // transient
    ("-1", "Error", true),    // pod-level failure, no exit code
    ("1", "Error", true),     // executor/pod error after the container exited
    ("1", "Failed", false),   // permanent
    ("2", "Failed", false),   // invalid input
    ("3", "Failed", false),   // drift
    ("101", "Failed", false), // panic
    ("137", "Failed", false), // OOM-killed: retrying would fail the same way
    ("64", "Failed", false),  // never used by netstep; emissary's own failure
];

fn expected_service_account(template_name: &str) -> &'static str {
    match template_name {
        "step-fw-policy" => "netstep-firewall-writer",
        "step-vnets" => "netstep-vnet-writer",
        "step-verify" | "step-snapshot" | "step-record-outcome" => "netstep-verifier",
        _ => "netstep-infra-writer",
    }
}

struct Contract<'a> {
    crates: &'a BTreeSet<String>,
    flags: &'a dyn Fn(&str) -> BTreeSet<String>,
}

/// Checks one step-library WorkflowTemplate (templates/).
fn check_step_template(doc: &Value, contract: &Contract) -> Vec<String> {
    let mut errs = Vec::new();
    let name = s(doc, "/metadata/name").unwrap_or("");
    let mut err = |m: String| errs.push(format!("{name}: {m}"));
    if !name.starts_with("step-") {
        err("step templates are named step-<step>".into());
    }

    // Catalog annotations.
    let desc = s(
        doc,
        "/metadata/annotations/workflows.argoproj.io~1description",
    )
    .unwrap_or("");
    let desc = desc.trim();
    let one_sentence = !desc
        .as_bytes()
        .windows(3)
        .any(|w| w[0] == b'.' && w[1] == b' ' && w[2].is_ascii_uppercase());
    if desc.is_empty() || !desc.ends_with('.') || !one_sentence {
        err("workflows.argoproj.io/description must be one sentence ending with a period".into());
    }
    if !s(
        doc,
        "/metadata/annotations/workflows.argoproj.io~1maintainer",
    )
    .is_some_and(|m| m.starts_with('@') && m.len() > 1)
    {
        err("workflows.argoproj.io/maintainer must be @someone".into());
    }
    let tags = s(doc, "/metadata/annotations/workflows.argoproj.io~1tags").unwrap_or("");
    if tags.split(',').any(|t| t.trim().is_empty()) {
        err("workflows.argoproj.io/tags must be a comma-separated, non-empty list".into());
    }
    if !s(doc, "/metadata/annotations/workflows.argoproj.io~1version")
        .is_some_and(|v| v.starts_with(">= ") && v[3..].split('.').count() == 3)
    {
        err("workflows.argoproj.io/version must be a minimum Argo version like '>= 3.6.0'".into());
    }
    // Recommended labels.
    if s(doc, "/metadata/labels/app.kubernetes.io~1name") != Some(name) {
        err("label app.kubernetes.io/name must equal the template name".into());
    }
    let version = s(doc, "/metadata/labels/app.kubernetes.io~1version").unwrap_or("");
    if version.is_empty() {
        err("label app.kubernetes.io/version missing".into());
    }
    if s(doc, "/metadata/labels/app.kubernetes.io~1component").is_none_or(str::is_empty) {
        err("label app.kubernetes.io/component missing".into());
    }
    if s(doc, "/metadata/labels/app.kubernetes.io~1part-of") != Some("netstep") {
        err("label app.kubernetes.io/part-of must be netstep".into());
    }

    // One template, "main", a container; a library entry has no entrypoint.
    if doc.pointer("/spec/entrypoint").is_some() {
        err("a step library template has no entrypoint".into());
    }
    let templates = arr(doc, "/spec/templates");
    if templates.len() != 1 || s(&templates[0], "/name") != Some("main") {
        err("exactly one template, named main".into());
        return errs;
    }
    let t = &templates[0];
    let Some(c) = t.get("container") else {
        err("main must be a container template (no script, no shell)".into());
        return errs;
    };

    // Image and command belong to a step crate.
    let image = s(c, "/image").unwrap_or("");
    let (repo, tag) = image.rsplit_once(':').unwrap_or((image, ""));
    let krate = repo.strip_prefix("netstep/").unwrap_or("");
    if !contract.crates.contains(krate) {
        err(format!("image {image:?} is not netstep/<step crate>:<tag>"));
    }
    if let Some(own) = name.strip_prefix("step-")
        && contract.crates.contains(own)
        && own != krate
    {
        err(format!("template of crate {own} runs image {image:?}"));
    }
    if tag != version {
        err(format!(
            "image tag {tag:?} differs from app.kubernetes.io/version {version:?}"
        ));
    }
    if c.get("command") != Some(&serde_json::json!(["/step"])) {
        err("command must be [/step], the binary of the image".into());
    }

    // Inputs: described; referenced ones declared.
    let inputs: BTreeMap<&str, &Value> = arr(t, "/inputs/parameters")
        .iter()
        .filter_map(|p| Some((s(p, "/name")?, p)))
        .collect();
    for (n, p) in &inputs {
        if s(p, "/description").is_none_or(|d| d.trim().is_empty()) {
            err(format!("input {n} has no description"));
        }
    }

    // Args: --flag=value (or a bare --flag) the binary accepts; no duplicates.
    let accepted = (contract.flags)(krate);
    let mut seen = BTreeSet::new();
    let mut outputs_dir = None;
    for a in arr(c, "/args") {
        let Some(a) = a.as_str() else {
            err(format!("non-string arg {a}"));
            continue;
        };
        let Some(flag) = a.strip_prefix("--") else {
            err(format!("arg {a:?} is not a --flag"));
            continue;
        };
        let (flag, value) = flag.split_once('=').unwrap_or((flag, ""));
        if !accepted.contains(flag) {
            err(format!("--{flag} is not a flag the {krate} binary accepts"));
        }
        if !seen.insert(flag.to_string()) {
            err(format!("--{flag} passed twice"));
        }
        if flag == "outputs-dir" {
            outputs_dir = Some(value.to_string());
        }
        for r in refs(value, "inputs.parameters.") {
            if !inputs.contains_key(r.as_str()) {
                err(format!("arg {a:?} references undeclared input {r}"));
            }
        }
    }

    // Outputs: one file per parameter in the outputs dir, each with a default.
    let outputs: BTreeSet<&str> = arr(t, "/outputs/parameters")
        .iter()
        .filter_map(|p| s(p, "/name"))
        .collect();
    match &outputs_dir {
        None if !outputs.is_empty() => err("outputs declared but no --outputs-dir".into()),
        _ => {}
    }
    for p in arr(t, "/outputs/parameters") {
        let n = s(p, "/name").unwrap_or("?");
        let want = format!("{}/{n}", outputs_dir.as_deref().unwrap_or("?"));
        if s(p, "/valueFrom/path") != Some(want.as_str()) {
            err(format!("output {n} must be read from {want}"));
        }
        if p.pointer("/valueFrom/default").is_none() {
            err(format!("output {n} has no valueFrom.default"));
        }
    }
    let mut required: Vec<&str> = vec!["changes", "record"];
    if let Some(own) = name.strip_prefix("step-") {
        for (c, outs) in STEP_OUTPUTS {
            if *c == own {
                required.extend(outs.iter());
            }
        }
    }
    for r in required {
        if !outputs.contains(r) {
            err(format!("missing output parameter {r}"));
        }
    }
    if outputs_dir.as_deref().is_some_and(|d| d != "/tmp/outputs") {
        err("--outputs-dir must be /tmp/outputs (the writable emptyDir)".into());
    }

    // Identity.
    if s(t, "/metadata/labels/azure.workload.identity~1use") != Some("true") {
        err("pod label azure.workload.identity/use: \"true\" missing".into());
    }
    let sa = s(t, "/serviceAccountName").unwrap_or("");
    if sa != expected_service_account(name) {
        err(format!(
            "serviceAccountName {sa:?}, expected {:?} for its trust level",
            expected_service_account(name)
        ));
    }

    // Hardening.
    let pod = &t["securityContext"];
    if pod["runAsNonRoot"] != true {
        err("securityContext.runAsNonRoot must be true".into());
    }
    if pod["runAsUser"] != RUN_AS || pod["runAsGroup"] != RUN_AS {
        err("securityContext.runAsUser/runAsGroup must be 65532".into());
    }
    if s(pod, "/seccompProfile/type") != Some("RuntimeDefault") {
        err("seccompProfile RuntimeDefault missing".into());
    }
    let csc = &c["securityContext"];
    if csc["readOnlyRootFilesystem"] != true {
        err("container readOnlyRootFilesystem must be true".into());
    }
    if csc["allowPrivilegeEscalation"] != false {
        err("container allowPrivilegeEscalation must be false".into());
    }
    if !arr(csc, "/capabilities/drop").iter().any(|d| d == "ALL") {
        err("container capabilities must drop ALL".into());
    }
    if csc.get("privileged") == Some(&Value::Bool(true)) {
        err("privileged container".into());
    }
    if !arr(csc, "/capabilities/add").is_empty() {
        err("container adds capabilities".into());
    }
    // No Kubernetes API token in the step container: Argo's executor reports outputs with the
    // token of its own service account, mounted into its init/wait containers only.
    if t.get("automountServiceAccountToken") != Some(&Value::Bool(false)) {
        err(
            "automountServiceAccountToken must be false (the step needs no Kubernetes token)"
                .into(),
        );
    }
    if s(t, "/executor/serviceAccountName") != Some(EXECUTOR_SA) {
        err(format!(
            "executor.serviceAccountName must be {EXECUTOR_SA} (the only identity with \
             workflowtaskresults RBAC)"
        ));
    }
    for extra in ["initContainers", "sidecars", "podSpecPatch"] {
        if t.get(extra).is_some() {
            err(format!("{extra} would run outside the hardened container"));
        }
    }
    if pod.get("runAsUser").is_some_and(|u| u == 0) || csc.get("runAsUser").is_some_and(|u| u == 0)
    {
        err("runAsUser 0".into());
    }
    if csc.get("runAsNonRoot") == Some(&Value::Bool(false)) {
        err("container runAsNonRoot false overrides the pod's".into());
    }
    let tmp_volume = arr(c, "/volumeMounts")
        .iter()
        .find(|m| s(m, "/mountPath") == Some("/tmp"))
        .and_then(|m| s(m, "/name"));
    let tmp_is_empty_dir = tmp_volume.is_some_and(|v| {
        arr(t, "/volumes")
            .iter()
            .any(|vol| s(vol, "/name") == Some(v) && vol.get("emptyDir").is_some())
    });
    if !tmp_is_empty_dir {
        err("/tmp must be an emptyDir volume (the root filesystem is read-only)".into());
    }

    // Retries, deadline, resources.
    let rs = &t["retryStrategy"];
    if s(rs, "/retryPolicy") != Some("Always") {
        err("retryStrategy.retryPolicy must be Always (the expression decides)".into());
    }
    if rs.get("limit").is_none() {
        err("retryStrategy.limit missing".into());
    }
    for f in ["duration", "factor", "maxDuration"] {
        if rs.pointer(&format!("/backoff/{f}")).is_none() {
            err(format!("retryStrategy.backoff.{f} missing"));
        }
    }
    match s(rs, "/expression") {
        None => err("retryStrategy.expression missing".into()),
        Some(expr) => {
            for (code, status, want) in RETRY_CASES {
                match retry_expression_retries(expr, code, status) {
                    Ok(got) if got == *want => {}
                    Ok(got) => err(format!(
                        "retry expression retries exit {code}/{status}: {got}, must be {want}"
                    )),
                    Err(e) => {
                        err(e);
                        break;
                    }
                }
            }
        }
    }
    let deadline = match &t["activeDeadlineSeconds"] {
        Value::String(v) => v.parse::<u64>().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    };
    if deadline.is_none_or(|d| d == 0) {
        err("activeDeadlineSeconds (per attempt) missing".into());
    }
    for r in [
        "requests/cpu",
        "requests/memory",
        "limits/cpu",
        "limits/memory",
    ] {
        if c.pointer(&format!("/resources/{r}")).is_none() {
            err(format!("resources.{} missing", r.replace('/', ".")));
        }
    }
    errs
}

/// No shell anywhere: no `sh -c`/`bash -c` in any string or command list, no script templates.
fn check_no_shell(label: &str, doc: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let mut strings = Vec::new();
    all_strings(doc, &mut strings);
    for text in strings {
        let compact: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for shell in ["sh -c", "bash -c", "/bin/sh", "/bin/bash"] {
            if compact == shell.trim_start_matches("/bin/")
                || compact.starts_with(&format!("{shell} "))
                || compact.contains(&format!(" {shell} "))
                || compact == shell
            {
                errs.push(format!("{label}: shell invocation {text:?}"));
            }
        }
    }
    fn walk(v: &Value, label: &str, errs: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for key in ["command", "args"] {
                    if let Some(Value::Array(items)) = m.get(key) {
                        let words: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                        if words.windows(2).any(|w| {
                            matches!(w[0], "sh" | "bash" | "/bin/sh" | "/bin/bash" | "ash")
                                && w[1].starts_with('-')
                                && w[1].contains('c')
                        }) {
                            errs.push(format!("{label}: {key} runs a shell: {words:?}"));
                        }
                    }
                }
                if let Some(Value::Array(templates)) = m.get("templates") {
                    for t in templates {
                        if t.get("script").is_some() {
                            errs.push(format!(
                                "{label}: template {} is a script template",
                                t["name"]
                            ));
                        }
                    }
                }
                m.values().for_each(|x| walk(x, label, errs));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, label, errs)),
            _ => {}
        }
    }
    walk(doc, label, &mut errs);
    errs
}

/// Names of the tasks a `depends` expression refers to.
fn depends_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| {
        c == '&' || c == '|' || c == '(' || c == ')' || c == '!' || c.is_whitespace()
    })
    .filter(|t| !t.is_empty())
    .map(|t| t.split('.').next().unwrap().to_string())
    .collect()
}

/// Checks a Workflow-like spec (Workflow, WorkflowTemplate with entrypoint, a CronWorkflow's or
/// a Sensor's workflow) against the step library: templateRefs, arguments, DAGs, parameters.
fn check_workflow_spec(
    label: &str,
    spec: &Value,
    library: &BTreeMap<String, Value>,
    declared_elsewhere: Option<&BTreeSet<String>>,
) -> Vec<String> {
    let mut errs = Vec::new();
    let mut err = |m: String| errs.push(format!("{label}: {m}"));
    let local: BTreeMap<&str, &Value> = arr(spec, "/templates")
        .iter()
        .filter_map(|t| Some((s(t, "/name")?, t)))
        .collect();
    let mut params: BTreeSet<String> = arr(spec, "/arguments/parameters")
        .iter()
        .filter_map(|p| s(p, "/name").map(str::to_string))
        .collect();
    if let Some(more) = declared_elsewhere {
        params.extend(more.iter().cloned());
    }

    if let Some(wtr) = s(spec, "/workflowTemplateRef/name") {
        match library.get(wtr) {
            None => err(format!("workflowTemplateRef {wtr} does not exist")),
            Some(target) => {
                let theirs: BTreeMap<&str, &Value> = arr(target, "/spec/arguments/parameters")
                    .iter()
                    .filter_map(|p| Some((s(p, "/name")?, p)))
                    .collect();
                for p in arr(spec, "/arguments/parameters") {
                    let n = s(p, "/name").unwrap_or("?");
                    match theirs.get(n) {
                        None => err(format!("argument {n} is not a parameter of {wtr}")),
                        Some(decl) => {
                            if let (Some(v), Some(en)) = (s(p, "/value"), decl.get("enum"))
                                && !v.contains("{{")
                                && !en.as_array().unwrap().iter().any(|e| e == v)
                            {
                                err(format!("argument {n}={v} not in the enum of {wtr}"));
                            }
                        }
                    }
                }
                for (n, decl) in theirs {
                    let supplied = arr(spec, "/arguments/parameters")
                        .iter()
                        .any(|p| s(p, "/name") == Some(n));
                    if decl.get("value").is_none() && !supplied {
                        err(format!("{wtr} requires argument {n}"));
                    }
                }
            }
        }
        if !local.is_empty() {
            err("workflowTemplateRef with inline templates".into());
        }
        return errs;
    }

    match s(spec, "/entrypoint") {
        None => err("no entrypoint".into()),
        Some(e) if !local.contains_key(e) => err(format!("entrypoint {e} undefined")),
        _ => {}
    }
    if let Some(on_exit) = s(spec, "/onExit")
        && !local.contains_key(on_exit)
    {
        err(format!("onExit template {on_exit} undefined"));
    }
    let mut strings = Vec::new();
    all_strings(spec, &mut strings);
    for text in strings {
        for r in refs(text, "workflow.parameters.") {
            if !params.contains(&r) {
                err(format!("{{{{workflow.parameters.{r}}}}} is not declared"));
            }
        }
    }

    for (tname, t) in &local {
        let tasks: Vec<&Value> = arr(t, "/dag/tasks")
            .iter()
            .chain(
                arr(t, "/steps")
                    .iter()
                    .flat_map(|g| g.as_array().into_iter().flatten()),
            )
            .collect();
        let task_names: BTreeSet<&str> = tasks.iter().filter_map(|x| s(x, "/name")).collect();
        let mut graph: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for task in &tasks {
            let n = s(task, "/name").unwrap_or("?");
            let deps: BTreeSet<String> = s(task, "/depends")
                .map(depends_names)
                .unwrap_or_default()
                .into_iter()
                .chain(
                    arr(task, "/dependencies")
                        .iter()
                        .filter_map(|d| d.as_str().map(str::to_string)),
                )
                .collect();
            graph.insert(n, deps.clone());
            let inputs: Vec<Value> = if let Some(r) = task.get("templateRef") {
                let (wt, tt) = (s(r, "/name").unwrap_or(""), s(r, "/template").unwrap_or(""));
                let found = library.get(wt).and_then(|w| {
                    arr(w, "/spec/templates")
                        .iter()
                        .find(|x| s(x, "/name") == Some(tt))
                });
                match found {
                    None => {
                        err(format!("{tname}/{n}: templateRef {wt}/{tt} not found"));
                        continue;
                    }
                    Some(x) => arr(x, "/inputs/parameters").to_vec(),
                }
            } else if let Some(l) = s(task, "/template") {
                match local.get(l) {
                    None => {
                        err(format!("{tname}/{n}: template {l} undefined"));
                        continue;
                    }
                    Some(x) => arr(x, "/inputs/parameters").to_vec(),
                }
            } else {
                err(format!("{tname}/{n}: neither template nor templateRef"));
                continue;
            };
            let given: BTreeMap<&str, &Value> = arr(task, "/arguments/parameters")
                .iter()
                .filter_map(|p| Some((s(p, "/name")?, p)))
                .collect();
            for (g, p) in &given {
                match inputs.iter().find(|i| s(i, "/name") == Some(g)) {
                    None => err(format!("{tname}/{n}: argument {g} is not an input")),
                    Some(decl) => {
                        if let (Some(v), Some(Value::Array(en))) =
                            (s(p, "/value"), decl.get("enum"))
                            && !v.contains("{{")
                            && !en.iter().any(|e| e == v)
                        {
                            err(format!("{tname}/{n}: {g}={v} not in its enum"));
                        }
                    }
                }
            }
            for i in &inputs {
                let iname = s(i, "/name").unwrap_or("?");
                if i.get("default").is_none()
                    && i.get("value").is_none()
                    && !given.contains_key(iname)
                {
                    err(format!("{tname}/{n}: required input {iname} not supplied"));
                }
            }
            for d in &deps {
                if !task_names.contains(d.as_str()) {
                    err(format!("{tname}/{n}: depends on unknown task {d}"));
                }
            }
            let mut strings = Vec::new();
            all_strings(task, &mut strings);
            for text in strings {
                for r in refs(text, "tasks.") {
                    let t = r.split('.').next().unwrap_or("");
                    if !deps.contains(t) {
                        err(format!(
                            "{tname}/{n}: uses tasks.{r} without depending on {t}"
                        ));
                    }
                }
            }
        }
        // Cycles.
        fn visit<'a>(
            n: &'a str,
            g: &'a BTreeMap<&'a str, BTreeSet<String>>,
            state: &mut BTreeMap<&'a str, u8>,
        ) -> bool {
            match state.get(n) {
                Some(1) => return true,
                Some(2) => return false,
                _ => {}
            }
            state.insert(n, 1);
            for d in g.get(n).into_iter().flatten() {
                if let Some((k, _)) = g.get_key_value(d.as_str())
                    && visit(k, g, state)
                {
                    return true;
                }
            }
            state.insert(n, 2);
            false
        }
        let mut state = BTreeMap::new();
        if graph.keys().any(|n| visit(n, &graph, &mut state)) {
            err(format!("{tname}: the DAG has a cycle"));
        }
    }
    errs
}

/// Transitive dependencies of a task in the `main` DAG of a pipeline.
fn upstream(pipeline: &Value, task: &str) -> BTreeSet<String> {
    let tasks = arr(pipeline, "/spec/templates")
        .iter()
        .find(|t| s(t, "/name") == Some("main"))
        .map(|t| arr(t, "/dag/tasks").to_vec())
        .unwrap_or_default();
    let deps_of = |n: &str| -> BTreeSet<String> {
        tasks
            .iter()
            .find(|t| s(t, "/name") == Some(n))
            .and_then(|t| s(t, "/depends"))
            .map(depends_names)
            .unwrap_or_default()
    };
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = deps_of(task).into_iter().collect();
    while let Some(n) = todo.pop() {
        if seen.insert(n.clone()) {
            todo.extend(deps_of(&n));
        }
    }
    seen
}

// ---------------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------------

struct Repo {
    root: PathBuf,
    crates: BTreeSet<String>,
    common: BTreeSet<String>,
    docs: Vec<Doc>,
}

impl Repo {
    fn load() -> Repo {
        let root = root();
        Repo {
            crates: step_crates(&root),
            common: common_flags(&root),
            docs: load_docs(&root),
            root,
        }
    }
    fn flags(&self) -> impl Fn(&str) -> BTreeSet<String> + '_ {
        |krate| accepted_flags(&self.root, &self.common, krate)
    }
    /// Every WorkflowTemplate by name (templates/ and workflows/).
    fn library(&self) -> BTreeMap<String, Value> {
        let mut lib = BTreeMap::new();
        for d in self.docs.iter().filter(|d| d.kind() == "WorkflowTemplate") {
            assert!(
                lib.insert(d.name().to_string(), d.value.clone()).is_none(),
                "WorkflowTemplate {} defined twice",
                d.name()
            );
        }
        lib
    }
    fn template(&self, name: &str) -> &Value {
        &self
            .docs
            .iter()
            .find(|d| d.kind() == "WorkflowTemplate" && d.name() == name)
            .unwrap_or_else(|| panic!("WorkflowTemplate {name} not found"))
            .value
    }
}

fn fail_on(errs: Vec<String>) {
    assert!(
        errs.is_empty(),
        "{} problem(s):\n  {}",
        errs.len(),
        errs.join("\n  ")
    );
}

#[test]
fn every_step_crate_has_a_template_a_readme_a_test_and_an_image_target() {
    let repo = Repo::load();
    let build = read(&repo.root.join("images/build"));
    let all_steps_line = build
        .lines()
        .find(|l| l.starts_with("ALL_STEPS=("))
        .expect("images/build declares ALL_STEPS=(...)");
    let image_steps: BTreeSet<String> = all_steps_line["ALL_STEPS=(".len()..]
        .trim_end_matches(')')
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let kustomization = yaml::load_all(&read(&repo.root.join("templates/kustomization.yaml")))
        .unwrap()
        .remove(0);
    let kustomized: BTreeSet<&str> = arr(&kustomization, "/images")
        .iter()
        .filter_map(|i| s(i, "/name"))
        .collect();
    let mut errs = Vec::new();
    for c in &repo.crates {
        let dir = repo.root.join("templates").join(c);
        for f in ["workflowtemplate.yaml", "README.md", "tests/run-task.yaml"] {
            if !dir.join(f).is_file() {
                errs.push(format!("templates/{c}/{f} missing"));
            }
        }
        if !repo
            .docs
            .iter()
            .any(|d| d.kind() == "WorkflowTemplate" && d.name() == format!("step-{c}"))
        {
            errs.push(format!("no WorkflowTemplate step-{c}"));
        }
        if !image_steps.contains(c) {
            errs.push(format!("images/build does not build {c}"));
        }
        if !kustomized.contains(format!("netstep/{c}").as_str()) {
            errs.push(format!(
                "templates/kustomization.yaml images: has no netstep/{c}"
            ));
        }
        let cargo = read(&repo.root.join("steps").join(c).join("Cargo.toml"));
        if !cargo.contains(&format!("name = \"{c}\"")) {
            errs.push(format!(
                "steps/{c}/Cargo.toml has no binary/package named {c}"
            ));
        }
    }
    for s in &image_steps {
        if !repo.crates.contains(s) {
            errs.push(format!(
                "images/build builds {s}, which is not a step crate"
            ));
        }
    }
    for d in repo.docs.iter().filter(|d| d.file.contains("/tests/")) {
        if d.kind() != "Workflow" {
            errs.push(format!("{}: tests are Workflows", d.label()));
        }
    }
    fail_on(errs);
}

#[test]
fn step_templates_meet_the_contract_and_the_hardening_rules() {
    let repo = Repo::load();
    let flags = repo.flags();
    let contract = Contract {
        crates: &repo.crates,
        flags: &flags,
    };
    let mut errs = Vec::new();
    let mut checked = 0;
    for d in repo
        .docs
        .iter()
        .filter(|d| d.kind() == "WorkflowTemplate" && d.file.starts_with("templates/"))
    {
        checked += 1;
        errs.extend(check_step_template(&d.value, &contract));
    }
    assert!(
        checked >= repo.crates.len(),
        "only {checked} step templates"
    );
    fail_on(errs);
}

#[test]
fn service_accounts_exist_with_a_workload_identity_client_id() {
    let repo = Repo::load();
    let mut errs = Vec::new();
    for sa in [
        "netstep-infra-writer",
        "netstep-firewall-writer",
        "netstep-vnet-writer",
        "netstep-verifier",
    ] {
        match repo
            .docs
            .iter()
            .find(|d| d.kind() == "ServiceAccount" && d.name() == sa)
        {
            None => errs.push(format!("ServiceAccount {sa} missing")),
            Some(d) => {
                let id = s(
                    &d.value,
                    "/metadata/annotations/azure.workload.identity~1client-id",
                );
                if !id.is_some_and(|id| id.len() == 36 && id.split('-').count() == 5) {
                    errs.push(format!(
                        "{sa}: azure.workload.identity/client-id is not a GUID"
                    ));
                }
            }
        }
    }
    fail_on(errs);
}

#[test]
fn no_shell_anywhere() {
    let repo = Repo::load();
    let mut errs = Vec::new();
    for d in &repo.docs {
        errs.extend(check_no_shell(&d.label(), &d.value));
    }
    let dockerfile = read(&repo.root.join("images/Dockerfile"));
    let instructions: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if instructions.first().is_none_or(|l| *l != "FROM scratch") {
        errs.push("images/Dockerfile must start FROM scratch".into());
    }
    for l in &instructions {
        if l.starts_with("RUN ") || l.starts_with("SHELL ") {
            errs.push(format!("images/Dockerfile: {l} (the image has no shell)"));
        }
    }
    if !instructions.contains(&"USER 65532:65532") {
        errs.push("images/Dockerfile must run as USER 65532:65532".into());
    }
    if !instructions.contains(&"ENTRYPOINT [\"/step\"]") {
        errs.push(
            "images/Dockerfile ENTRYPOINT must be [\"/step\"] (the templates' command)".into(),
        );
    }
    fail_on(errs);
}

/// Pod-creating template kinds (anything else is a DAG/steps/suspend template).
const POD_KINDS: [&str; 5] = ["container", "script", "containerSet", "resource", "data"];

#[test]
fn only_the_hardened_step_library_creates_pods() {
    let repo = Repo::load();
    let mut errs = Vec::new();
    let mut pipelines = 0;
    for d in &repo.docs {
        let specs: Vec<&Value> = match d.kind() {
            "Workflow" | "WorkflowTemplate" => vec![&d.value["spec"]],
            "CronWorkflow" => vec![&d.value["spec"]["workflowSpec"]],
            "Sensor" => arr(&d.value, "/spec/triggers")
                .iter()
                .filter_map(|t| t.pointer("/template/argoWorkflow/source/resource/spec"))
                .collect(),
            _ => continue,
        };
        let library = d.kind() == "WorkflowTemplate"
            && d.file.starts_with("templates/")
            && d.name().starts_with("step-");
        for spec in specs {
            if spec.get("podSpecPatch").is_some() {
                errs.push(format!(
                    "{}: podSpecPatch bypasses the hardening",
                    d.label()
                ));
            }
            for t in arr(spec, "/templates") {
                let kind = POD_KINDS.iter().find(|k| t.get(**k).is_some());
                if let Some(kind) = kind
                    && !library
                {
                    errs.push(format!(
                        "{}: template {} creates a pod ({kind}) outside the step library",
                        d.label(),
                        t["name"]
                    ));
                }
            }
            // Workflow-level defaults of the pipelines: hardened too (defence in depth).
            if spec.get("serviceAccountName").is_some() {
                pipelines += 1;
                let sc = &spec["securityContext"];
                if sc["runAsNonRoot"] != true
                    || sc["runAsUser"] != RUN_AS
                    || s(sc, "/seccompProfile/type") != Some("RuntimeDefault")
                {
                    errs.push(format!(
                        "{}: spec.securityContext must be non-root {RUN_AS} with RuntimeDefault seccomp",
                        d.label()
                    ));
                }
                if spec.get("automountServiceAccountToken") != Some(&Value::Bool(false))
                    || s(spec, "/executor/serviceAccountName") != Some(EXECUTOR_SA)
                {
                    errs.push(format!(
                        "{}: spec must set automountServiceAccountToken: false and \
                         executor.serviceAccountName: {EXECUTOR_SA}",
                        d.label()
                    ));
                }
            }
        }
    }
    assert!(
        pipelines >= 3,
        "only {pipelines} pipelines with pod defaults"
    );
    fail_on(errs);
}

#[test]
fn kubernetes_rbac_is_the_executors_alone() {
    let repo = Repo::load();
    let mut errs = Vec::new();
    let step_sas = [
        "netstep-infra-writer",
        "netstep-firewall-writer",
        "netstep-verifier",
    ];
    match repo
        .docs
        .iter()
        .find(|d| d.kind() == "ServiceAccount" && d.name() == EXECUTOR_SA)
    {
        None => errs.push(format!("ServiceAccount {EXECUTOR_SA} missing")),
        Some(d) => {
            if d.value
                .pointer("/metadata/annotations/azure.workload.identity~1client-id")
                .is_some()
            {
                errs.push(format!(
                    "{EXECUTOR_SA} must not be federated with an Azure identity"
                ));
            }
        }
    }
    for d in repo
        .docs
        .iter()
        .filter(|d| d.kind() == "Role" || d.kind() == "ClusterRole")
    {
        if d.name() != EXECUTOR_SA {
            continue;
        }
        let rules = arr(&d.value, "/rules");
        let ok = rules.len() == 1
            && arr(&rules[0], "/resources") == [Value::from("workflowtaskresults")]
            && arr(&rules[0], "/verbs")
                .iter()
                .all(|v| v == "create" || v == "patch");
        if !ok {
            errs.push(format!(
                "Role {EXECUTOR_SA}: only create/patch workflowtaskresults, got {rules:?}"
            ));
        }
    }
    for d in repo
        .docs
        .iter()
        .filter(|d| d.kind() == "RoleBinding" || d.kind() == "ClusterRoleBinding")
    {
        for sub in arr(&d.value, "/subjects") {
            let n = s(sub, "/name").unwrap_or("");
            if step_sas.contains(&n) {
                errs.push(format!(
                    "{}: step identity {n} bound to Kubernetes RBAC (the steps need none)",
                    d.label()
                ));
            }
        }
        if d.name() == EXECUTOR_SA {
            let subjects: Vec<&str> = arr(&d.value, "/subjects")
                .iter()
                .filter_map(|x| s(x, "/name"))
                .collect();
            if subjects != [EXECUTOR_SA] {
                errs.push(format!(
                    "RoleBinding {EXECUTOR_SA} binds {subjects:?}, expected only {EXECUTOR_SA}"
                ));
            }
        }
    }
    fail_on(errs);
}

#[test]
fn the_image_holds_only_the_binary_and_the_ca_bundle() {
    let dockerfile = read(&root().join("images/Dockerfile"));
    let mut errs = Vec::new();
    let mut copied = BTreeSet::new();
    for l in dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let word = l
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match word.as_str() {
            "FROM" if l != "FROM scratch" => errs.push(format!("{l}: only FROM scratch")),
            "ADD" => errs.push(format!("{l}: ADD can fetch and unpack; use COPY")),
            "COPY" => {
                let parts: Vec<&str> = l.split_whitespace().skip(1).collect();
                if parts.iter().any(|p| p.starts_with("--")) {
                    errs.push(format!(
                        "{l}: no COPY flags (--from would pull in another image)"
                    ));
                }
                if let [src, dst] = parts.as_slice() {
                    copied.insert(((*src).to_string(), (*dst).to_string()));
                } else {
                    errs.push(format!("{l}: COPY one source to one destination"));
                }
            }
            "VOLUME" | "EXPOSE" | "HEALTHCHECK" | "ONBUILD" => {
                errs.push(format!("{l}: not expected in a step image"))
            }
            _ => {}
        }
    }
    let want: BTreeSet<(String, String)> = [
        ("ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt"),
        ("step", "/step"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    if copied != want {
        errs.push(format!(
            "images/Dockerfile copies {copied:?}; only the binary and the CA bundle belong in \
             the image (no shell, no busybox)"
        ));
    }
    let smoke = read(&root().join("images/ci-smoke"));
    if !smoke.contains("--entrypoint /bin/sh") {
        errs.push("images/ci-smoke must prove the image has no /bin/sh".into());
    }
    fail_on(errs);
}

#[test]
fn workflows_resolve_against_the_step_library() {
    let repo = Repo::load();
    let library = repo.library();
    let mut errs = Vec::new();
    let mut checked = 0;
    for d in &repo.docs {
        let label = d.label();
        match d.kind() {
            "Workflow" => {
                checked += 1;
                errs.extend(check_workflow_spec(
                    &label,
                    &d.value["spec"],
                    &library,
                    None,
                ));
            }
            "WorkflowTemplate" if d.value.pointer("/spec/entrypoint").is_some() => {
                checked += 1;
                errs.extend(check_workflow_spec(
                    &label,
                    &d.value["spec"],
                    &library,
                    None,
                ));
            }
            "CronWorkflow" => {
                checked += 1;
                errs.extend(check_workflow_spec(
                    &label,
                    &d.value["spec"]["workflowSpec"],
                    &library,
                    None,
                ));
            }
            "Sensor" => {
                for t in arr(&d.value, "/spec/triggers") {
                    if let Some(res) = t.pointer("/template/argoWorkflow/source/resource") {
                        checked += 1;
                        errs.extend(check_workflow_spec(&label, &res["spec"], &library, None));
                    }
                }
            }
            _ => {}
        }
    }
    assert!(checked >= 10, "only {checked} workflows checked");
    fail_on(errs);
}

#[test]
fn pipelines_share_one_mutex_and_order_the_steps_as_avnm_requires() {
    let repo = Repo::load();
    let mut errs = Vec::new();
    let mut mutexes = BTreeSet::new();
    for name in ["pipeline-infra", "pipeline-fw-policy", "pipeline-verify"] {
        let p = repo.template(name);
        let m: Vec<&str> = arr(p, "/spec/synchronization/mutexes")
            .iter()
            .filter_map(|m| s(m, "/name"))
            .collect();
        if m.len() != 1 {
            errs.push(format!(
                "{name}: exactly one workflow-level mutex expected, got {m:?}"
            ));
        }
        mutexes.extend(m.into_iter().map(str::to_string));
        for f in ["ttlStrategy", "podGC"] {
            if p["spec"].get(f).is_none() {
                errs.push(format!("{name}: spec.{f} missing"));
            }
        }
        if s(p, "/spec/synchronization/mutex/name").is_some() {
            errs.push(format!(
                "{name}: singular synchronization.mutex was removed in Argo v4"
            ));
        }
    }
    if mutexes.len() != 1 {
        errs.push(format!(
            "the pipelines must share one mutex, found {mutexes:?}"
        ));
    }
    for name in ["pipeline-infra", "pipeline-fw-policy"] {
        let p = repo.template(name);
        if s(p, "/spec/onExit").is_none() {
            errs.push(format!("{name}: no onExit handler"));
        }
        let first = upstream(p, "verify");
        if !first.contains("snapshot") {
            errs.push(format!("{name}: verify does not run after the snapshot"));
        }
    }

    let infra = repo.template("pipeline-infra");
    let needs = |task: &str, before: &str, why: &str, errs: &mut Vec<String>| {
        if !upstream(infra, task).contains(before) {
            errs.push(format!(
                "pipeline-infra: {task} must run after {before} ({why})"
            ));
        }
    };
    needs(
        "vnets",
        "snapshot",
        "steps read the run's snapshot",
        &mut errs,
    );
    needs(
        "tag-groups",
        "vnets",
        "the VNets exist before they are tagged and grouped",
        &mut errs,
    );
    needs(
        "dns-link",
        "vnets",
        "the VNets exist before they are linked",
        &mut errs,
    );
    needs(
        "dns-link",
        "snapshot",
        "steps read the run's snapshot",
        &mut errs,
    );
    needs(
        "mesh-connect",
        "tag-groups",
        "connectivity references the groups",
        &mut errs,
    );
    needs(
        "admin-rules",
        "tag-groups",
        "rule collections reference the groups",
        &mut errs,
    );
    needs(
        "admin-rules",
        "mesh-connect",
        "AVNM commits are serialised per network manager",
        &mut errs,
    );
    for t in [
        "vnets",
        "tag-groups",
        "mesh-connect",
        "admin-rules",
        "dns-link",
    ] {
        needs("verify", t, "verify checks what the run applied", &mut errs);
    }

    let fw = repo.template("pipeline-fw-policy");
    if !upstream(fw, "verify").contains("fw-policy") {
        errs.push("pipeline-fw-policy: verify must run after fw-policy".into());
    }
    let only = arr(fw, "/spec/templates")
        .iter()
        .flat_map(|t| arr(t, "/dag/tasks").iter())
        .find(|t| s(t, "/name") == Some("verify"))
        .map(|t| arr(t, "/arguments/parameters").to_vec())
        .unwrap_or_default()
        .into_iter()
        .find(|p| s(p, "/name") == Some("only"))
        .and_then(|p| s(&p, "/value").map(str::to_string));
    if only.as_deref() != Some("firewall") {
        errs.push(format!(
            "pipeline-fw-policy: verify must get only=firewall, got {only:?}"
        ));
    }
    let cron = repo
        .docs
        .iter()
        .find(|d| d.kind() == "CronWorkflow")
        .expect("a drift-check CronWorkflow");
    if s(&cron.value, "/spec/concurrencyPolicy") != Some("Forbid") {
        errs.push("the drift CronWorkflow must have concurrencyPolicy Forbid".into());
    }
    fail_on(errs);
}

#[test]
fn the_sensor_submits_existing_pipelines_with_revision_and_run_key() {
    let repo = Repo::load();
    let library = repo.library();
    let sensor = repo
        .docs
        .iter()
        .find(|d| d.kind() == "Sensor")
        .expect("a Sensor");
    let deps: BTreeSet<&str> = arr(&sensor.value, "/spec/dependencies")
        .iter()
        .filter_map(|d| s(d, "/name"))
        .collect();
    let mut errs = Vec::new();
    let mut pipelines = BTreeSet::new();
    for t in arr(&sensor.value, "/spec/triggers") {
        let name = s(t, "/template/name").unwrap_or("?");
        let cond = s(t, "/template/conditions").unwrap_or("");
        if cond.is_empty() {
            errs.push(format!(
                "{name}: no conditions (it would wait for every dependency)"
            ));
        }
        for d in depends_names(cond) {
            if !deps.contains(d.as_str()) {
                errs.push(format!("{name}: condition on unknown dependency {d}"));
            }
        }
        let Some(res) = t.pointer("/template/argoWorkflow/source/resource") else {
            errs.push(format!("{name}: not an argoWorkflow resource trigger"));
            continue;
        };
        let wtr = s(res, "/spec/workflowTemplateRef/name").unwrap_or("?");
        pipelines.insert(wtr.to_string());
        let suffix = wtr.strip_prefix("pipeline-").unwrap_or(wtr);
        if !library.contains_key(wtr) {
            errs.push(format!("{name}: submits unknown WorkflowTemplate {wtr}"));
        }
        let args = arr(res, "/spec/arguments/parameters");
        let mut set = BTreeMap::new();
        for p in arr(t, "/template/argoWorkflow/parameters") {
            let dest = s(p, "/dest").unwrap_or("");
            let idx = dest
                .strip_prefix("spec.arguments.parameters.")
                .and_then(|r| r.strip_suffix(".value"))
                .and_then(|i| i.parse::<usize>().ok());
            match idx.and_then(|i| args.get(i)).and_then(|a| s(a, "/name")) {
                None => errs.push(format!(
                    "{name}: parameter dest {dest:?} matches no argument"
                )),
                Some(arg) => {
                    set.insert(arg.to_string(), p.clone());
                }
            }
            if let Some(dep) = s(p, "/src/dependencyName")
                && !deps.contains(dep)
            {
                errs.push(format!("{name}: parameter from unknown dependency {dep}"));
            }
        }
        match set.get("revision") {
            Some(p) if s(p, "/src/dataKey") == Some("body.after") => {}
            _ => errs.push(format!("{name}: revision must come from body.after")),
        }
        match set.get("run-key").and_then(|p| s(p, "/src/dataTemplate")) {
            Some(tpl)
                if tpl.contains(".Input.body.after") && tpl.ends_with(&format!("-{suffix}")) => {}
            other => errs.push(format!(
                "{name}: run-key must be <body.after>-{suffix}, got {other:?}"
            )),
        }
        let mode = args
            .iter()
            .find(|a| s(a, "/name") == Some("mode"))
            .and_then(|a| s(a, "/value"));
        if mode != Some("apply") {
            errs.push(format!(
                "{name}: pushes to main apply (mode=apply), got {mode:?}"
            ));
        }
    }
    for p in ["pipeline-infra", "pipeline-fw-policy"] {
        if !pipelines.contains(p) {
            errs.push(format!("the Sensor never submits {p}"));
        }
    }
    fail_on(errs);
}

// ---------------------------------------------------------------------------------------------
// The checks themselves must be able to fail.
// ---------------------------------------------------------------------------------------------

fn good_step() -> Value {
    let root = root();
    yaml::load_all(&read(
        &root.join("templates/dns-link/workflowtemplate.yaml"),
    ))
    .unwrap()
    .remove(0)
}

fn check_mutated(mutate: impl FnOnce(&mut Value)) -> Vec<String> {
    let repo = Repo::load();
    let flags = repo.flags();
    let contract = Contract {
        crates: &repo.crates,
        flags: &flags,
    };
    let mut doc = good_step();
    assert!(check_step_template(&doc, &contract).is_empty());
    mutate(&mut doc);
    check_step_template(&doc, &contract)
}

#[test]
fn the_template_check_catches_each_violation() {
    type Mutation = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "--color",
            Box::new(|d| {
                d["spec"]["templates"][0]["container"]["args"]
                    .as_array_mut()
                    .unwrap()
                    .push("--color=always".into())
            }),
        ),
        (
            "readOnlyRootFilesystem",
            Box::new(|d| {
                d["spec"]["templates"][0]["container"]["securityContext"]["readOnlyRootFilesystem"] =
                    false.into()
            }),
        ),
        (
            "drop ALL",
            Box::new(|d| {
                d["spec"]["templates"][0]["container"]["securityContext"]["capabilities"]["drop"] =
                    serde_json::json!(["NET_RAW"])
            }),
        ),
        (
            "allowPrivilegeEscalation",
            Box::new(|d| {
                d["spec"]["templates"][0]["container"]["securityContext"]
                    .as_object_mut()
                    .unwrap()
                    .remove("allowPrivilegeEscalation");
            }),
        ),
        (
            "runAsNonRoot",
            Box::new(|d| {
                d["spec"]["templates"][0]["securityContext"]["runAsNonRoot"] = false.into()
            }),
        ),
        (
            "RuntimeDefault",
            Box::new(|d| {
                d["spec"]["templates"][0]["securityContext"]["seccompProfile"]["type"] =
                    "Unconfined".into()
            }),
        ),
        (
            "not netstep/<step crate>",
            Box::new(|d| d["spec"]["templates"][0]["container"]["image"] = "alpine:3".into()),
        ),
        (
            "command must be",
            Box::new(|d| {
                d["spec"]["templates"][0]["container"]["command"] = serde_json::json!(["sh", "-c"])
            }),
        ),
        (
            "retry expression",
            Box::new(|d| {
                d["spec"]["templates"][0]["retryStrategy"]["expression"] =
                    r#"lastRetry.status == "Failed" || lastRetry.status == "Error""#.into()
            }),
        ),
        (
            "ending with a period",
            Box::new(|d| {
                d["metadata"]["annotations"]["workflows.argoproj.io/description"] =
                    "No period".into()
            }),
        ),
        (
            "one sentence",
            Box::new(|d| {
                d["metadata"]["annotations"]["workflows.argoproj.io/description"] =
                    "Links zones. Also records.".into()
            }),
        ),
        (
            "serviceAccountName",
            Box::new(|d| {
                d["spec"]["templates"][0]["serviceAccountName"] = "netstep-firewall-writer".into()
            }),
        ),
        (
            "valueFrom.default",
            Box::new(|d| {
                d["spec"]["templates"][0]["outputs"]["parameters"][0]["valueFrom"]
                    .as_object_mut()
                    .unwrap()
                    .remove("default");
            }),
        ),
        (
            "undeclared input",
            Box::new(|d| {
                d["spec"]["templates"][0]["container"]["args"][0] =
                    "--state={{inputs.parameters.nope}}".into()
            }),
        ),
        (
            "automountServiceAccountToken",
            Box::new(|d| d["spec"]["templates"][0]["automountServiceAccountToken"] = true.into()),
        ),
        (
            "executor.serviceAccountName",
            Box::new(|d| {
                d["spec"]["templates"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("executor");
            }),
        ),
        (
            "initContainers",
            Box::new(|d| {
                d["spec"]["templates"][0]["initContainers"] =
                    serde_json::json!([{"name": "x", "image": "busybox"}])
            }),
        ),
        (
            "runAsUser 0",
            Box::new(|d| {
                d["spec"]["templates"][0]["container"]["securityContext"]["runAsUser"] = 0.into()
            }),
        ),
        (
            "azure.workload.identity/use",
            Box::new(|d| {
                d["spec"]["templates"][0]["metadata"]["labels"]
                    .as_object_mut()
                    .unwrap()
                    .remove("azure.workload.identity/use");
            }),
        ),
    ];
    for (expect, mutate) in cases {
        let errs = check_mutated(mutate);
        assert!(
            errs.iter().any(|e| e.contains(expect)),
            "mutation expecting {expect:?} gave {errs:?}"
        );
    }
}

#[test]
fn the_retry_expression_retries_only_transient_failures() {
    for (code, status, want) in RETRY_CASES {
        assert_eq!(
            retry_expression_retries(RETRY_EXPRESSION, code, status).unwrap(),
            *want,
            "exit {code} / {status}"
        );
    }
    assert!(retry_expression_retries("asInt(lastRetry.exitCode) == 75", "75", "Failed").is_err());
}

#[test]
fn the_shell_and_workflow_checks_catch_violations() {
    let bad = serde_json::json!({"spec": {"templates": [
        {"name": "a", "container": {"image": "x", "command": ["/bin/sh", "-c", "echo hi"]}},
        {"name": "b", "script": {"image": "x", "source": "echo"}}
    ]}});
    let errs = check_no_shell("bad", &bad);
    assert!(errs.iter().any(|e| e.contains("runs a shell")), "{errs:?}");
    assert!(
        errs.iter().any(|e| e.contains("script template")),
        "{errs:?}"
    );
    assert!(check_no_shell("ok", &serde_json::json!({"args": ["--state=x"]})).is_empty());

    let library = Repo::load().library();
    let wf = serde_json::json!({
        "entrypoint": "main",
        "arguments": {"parameters": [{"name": "p", "value": "v"}]},
        "templates": [{"name": "main", "dag": {"tasks": [
            {"name": "a", "depends": "b", "templateRef": {"name": "step-verify", "template": "main"},
             "arguments": {"parameters": [{"name": "state", "value": "{{workflow.parameters.q}}"},
                                          {"name": "mode", "value": "destroy"}]}},
            {"name": "b", "depends": "a", "templateRef": {"name": "step-nope", "template": "main"}}
        ]}}]
    });
    let errs = check_workflow_spec("wf", &wf, &library, None);
    for want in [
        "workflow.parameters.q",
        "required input run-key",
        "mode=destroy not in its enum",
        "step-nope/main not found",
        "cycle",
    ] {
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "missing {want:?} in {errs:?}"
        );
    }
}
