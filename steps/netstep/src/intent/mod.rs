//! The intent file: model, YAML loading with positions, validation, canonical form, digests and
//! the JSON Schema.
//!
//! ```no_run
//! let intent = netstep::intent::load_file(std::path::Path::new("intent.yaml"))?;
//! println!("{}", intent.digest());
//! for v in intent.vnets() {
//!     println!("{} {} {}", v.region, v.name, v.id);
//! }
//! # Ok::<(), netstep::intent::IntentError>(())
//! ```
//!
//! Loading never panics and is bounded: files over [`MAX_FILE_SIZE`] are refused before being
//! read, the YAML layer rejects anchors/aliases, nesting beyond 64 levels and more than 500,000
//! nodes. Every problem of a file is reported at once, each as
//! `FILE:LINE:COL: path.to.field: message`.

mod canonical;
mod decode;
mod model;
mod resolve;
mod rules;
mod validate;
mod yaml;

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

pub use canonical::Slice;
pub use model::*;
pub use resolve::{
    ResolvedConnectivity, ResolvedDnsLink, ResolvedFirewallPolicy, ResolvedGroup, Topology,
    VnetRef, VnetRole,
};
pub use rules::AZURE_REGIONS;
pub use yaml::{MAX_DEPTH, MAX_FLOW_ITEMS, MAX_NODES};

/// The largest intent file (or snapshot) accepted: 8 MiB.
pub const MAX_FILE_SIZE: u64 = 8 * 1024 * 1024;

/// One problem in an intent file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Diagnostic {
    /// File name as given to the loader.
    pub file: String,
    /// 1-based line (0 when the problem concerns the whole file).
    pub line: u32,
    /// 1-based column in characters (0 when unknown).
    pub col: u32,
    /// Path of the offending value, e.g. `regions[3].spokes[1].address_space[0]` (empty for the
    /// whole document).
    pub path: String,
    /// What is wrong, and when possible how to fix it.
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.col)?;
        }
        if self.path.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.path, self.message)
        }
    }
}

/// An invalid intent: every problem found, each with file, line, column and path.
#[derive(Debug, Clone)]
pub struct IntentError {
    diagnostics: Vec<Diagnostic>,
}

impl IntentError {
    /// An error from diagnostics (sorted by position, duplicates dropped). Steps use it for
    /// plan-time refusals of what the intent asks that Azure's state makes impossible (exit 2).
    pub fn new(mut diagnostics: Vec<Diagnostic>) -> IntentError {
        diagnostics.sort_by(|a, b| {
            (a.line, a.col, &a.path, &a.message).cmp(&(b.line, b.col, &b.path, &b.message))
        });
        diagnostics.dedup();
        IntentError { diagnostics }
    }

    fn whole_file(file: &str, message: String) -> IntentError {
        IntentError::new(vec![Diagnostic {
            file: file.to_string(),
            line: 0,
            col: 0,
            path: String::new(),
            message,
        }])
    }

    /// Every problem, sorted by line then column.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }
}

impl std::fmt::Display for IntentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for IntentError {}

/// A loaded, valid intent.
///
/// Dereferences to the model ([`IntentSpec`]); the methods give the resolved views the steps
/// use, the canonical JSON and the digests.
#[derive(Debug, Clone)]
pub struct Intent {
    spec: IntentSpec,
    file: String,
    locs: Arc<HashMap<String, yaml::Pos>>,
    /// The canonical JSON, computed once (the spec never changes after loading; a step asks
    /// for the digest several times and a 1,260-VNet intent costs milliseconds each time).
    canonical: std::sync::OnceLock<String>,
}

impl std::ops::Deref for Intent {
    type Target = IntentSpec;
    fn deref(&self) -> &IntentSpec {
        &self.spec
    }
}

impl PartialEq for Intent {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

impl Intent {
    /// The model, with every default filled in.
    pub fn spec(&self) -> &IntentSpec {
        &self.spec
    }

    /// The file name the intent was loaded from.
    pub fn file_name(&self) -> &str {
        &self.file
    }

    /// Line and column (1-based) of the value at `path` (e.g. `regions[0].hub.name`) in the
    /// source, if it was written there.
    pub fn position(&self, path: &str) -> Option<(u32, u32)> {
        self.locs.get(path).map(|p| (p.line, p.col))
    }

    /// Loads an intent from the canonical JSON of a stored snapshot, re-validating it.
    pub fn from_snapshot_json(name: &str, bytes: &[u8]) -> Result<Intent, IntentError> {
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if len > MAX_FILE_SIZE {
            return Err(too_big(name, len));
        }
        let to_diag = |e: yaml::YamlError| {
            IntentError::new(vec![Diagnostic {
                file: name.to_string(),
                line: e.pos.line,
                col: e.pos.col,
                path: String::new(),
                message: e.message,
            }])
        };
        let text = yaml::decode_utf8(bytes).map_err(to_diag)?;
        if !text.trim_start().starts_with('{') {
            return Err(IntentError::whole_file(
                name,
                "a snapshot must be a JSON object (the canonical JSON of an intent)".into(),
            ));
        }
        // A snapshot is one long line of JSON: parsed by serde_json (streaming, bounded), not by
        // the YAML scanner. Its diagnostics have paths but no line numbers.
        let root = yaml::parse_json(text).map_err(to_diag)?;
        from_tree(name, &root)
    }
}

/// Loads, decodes and validates an intent file.
///
/// The file's size is checked before it is read: anything over [`MAX_FILE_SIZE`] is refused.
pub fn load_file(path: &Path) -> Result<Intent, IntentError> {
    let name = path.display().to_string();
    let io_err = |e: std::io::Error| IntentError::whole_file(&name, format!("cannot read: {e}"));
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if !meta.is_file() {
        return Err(IntentError::whole_file(
            &name,
            "not a regular file".to_string(),
        ));
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(too_big(&name, meta.len()));
    }
    let file = std::fs::File::open(path).map_err(io_err)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // Never read more than the limit, even if the file grew since the metadata call.
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    load_str(&name, &bytes)
}

fn too_big(name: &str, len: u64) -> IntentError {
    IntentError::whole_file(
        name,
        format!(
            "the file is {len} bytes; the limit for an intent file is {MAX_FILE_SIZE} bytes (8 MiB)"
        ),
    )
}

/// Loads, decodes and validates an intent from bytes; `file_name` is used in diagnostics.
pub fn load_str(file_name: &str, text: &[u8]) -> Result<Intent, IntentError> {
    let len = u64::try_from(text.len()).unwrap_or(u64::MAX);
    if len > MAX_FILE_SIZE {
        return Err(too_big(file_name, len));
    }
    let to_diag = |e: yaml::YamlError| Diagnostic {
        file: file_name.to_string(),
        line: e.pos.line,
        col: e.pos.col,
        path: String::new(),
        message: e.message,
    };
    let text = yaml::decode_utf8(text).map_err(|e| IntentError::new(vec![to_diag(e)]))?;
    let root = yaml::parse(text)
        .map_err(|errs| IntentError::new(errs.into_iter().map(to_diag).collect()))?;
    // No document, or only document markers (`---`, `...`), which parse as one empty scalar.
    let empty = |r: &yaml::Node| matches!(&r.kind, yaml::NodeKind::Scalar { value, plain: true } if value.is_empty());
    let Some(root) = root.filter(|r| !empty(r)) else {
        return Err(IntentError::whole_file(
            file_name,
            "the file is empty; an intent starts with `version: 1`".into(),
        ));
    };
    from_tree(file_name, &root)
}

fn from_tree(file_name: &str, root: &yaml::Node) -> Result<Intent, IntentError> {
    let mut cx = decode::Cx::new(file_name);
    let spec = decode::decode_intent(root, &mut cx);
    let Some(spec) = spec else {
        return Err(IntentError::new(cx.diags));
    };
    if !cx.diags.is_empty() {
        return Err(IntentError::new(cx.diags));
    }
    let intent = Intent {
        spec,
        file: file_name.to_string(),
        locs: Arc::new(cx.locs),
        canonical: std::sync::OnceLock::new(),
    };
    let diags = validate::validate(&intent);
    if diags.is_empty() {
        Ok(intent)
    } else {
        Err(IntentError::new(diags))
    }
}

/// The JSON Schema (draft 2020-12) of the intent file, generated from the Rust types.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(IntentSpec);
    serde_json::to_value(&schema).unwrap_or(serde_json::Value::Null)
}
