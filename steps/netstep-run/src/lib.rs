//! netstep-run: runs netstep's Argo pipeline WorkflowTemplates on one machine, from the
//! same YAML Argo runs, and lints them offline like `argo lint --offline`.
//!
//! Containers become local processes: the binary is the basename of `command[0]` (or of
//! the image name) looked up in a bin dir; paths under `/tmp` (the pod's emptyDir) map to
//! a per-task directory. See `README`-level docs in [`engine`].

pub mod cli;
pub mod diag;
pub mod duration;
pub mod engine;
pub mod expr;
pub mod lint;
pub mod model;
pub mod paths;
pub mod plan;
pub mod process;
pub mod report;
pub mod retry;
pub mod sim;
pub mod subst;
pub mod yaml;

pub use diag::{Diagnostic, Error};
