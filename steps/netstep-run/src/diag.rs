//! Diagnostics (`FILE:LINE: path: message`) and the library error type.

use std::fmt;
use std::path::{Path, PathBuf};

/// One lint / load problem, pointing at a file, a line and a path inside the document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub path: String,
    pub message: String,
}

impl Diagnostic {
    pub fn new(
        file: &Path,
        line: usize,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            line,
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if self.path.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.path, self.message)
        }
    }
}

/// Errors of the runner library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifests are invalid (all problems found, not just the first).
    #[error("{} problem(s) found:\n{}", .0.len(), render(.0))]
    Invalid(Vec<Diagnostic>),
    /// Bad command-line usage (unknown parameter, missing value, bad file...).
    #[error("{0}")]
    Usage(String),
    /// Reading a file or directory failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The ARM simulator could not be started.
    #[error("armsim: {0}")]
    Simulator(String),
}

fn render(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl Error {
    /// The process exit code for this error (2: invalid input / usage).
    pub fn exit_code(&self) -> i32 {
        2
    }
}
