//! netstep core library.
//!
//! Every step binary (`tag-groups`, `mesh-connect`, `admin-rules`, `fw-policy`, `dns-link`,
//! `verify`) is a thin `main` over this crate:
//!
//! - [`intent`]: the intent file model, its YAML loader with line/column, validation, canonical
//!   form and digests, and the JSON Schema.
//! - [`arm`]: the Azure Resource Manager client (auth, retry, throttle, LRO, paging, traffic
//!   recording).
//! - [`avnm`]: AVNM commits as per-region goal states, and the deployment wait.
//! - [`state`]: the state store (Azure Blob or a local folder): run snapshots, step records,
//!   the network lease.
//! - [`plan`]: semantic diff of desired ARM bodies against actual ones, and the rendered plan.
//! - [`resources`]: ARM ids, types and the desired request bodies of every managed resource.
//! - [`step`]: the contract every step binary shares (flags, logging, exit codes, outputs).
//! - [`context`]: the run context (flags, snapshot, store, ARM client, lock, record).
//! - [`error`]: the error type and its mapping to exit codes.

pub mod arm;
pub mod avnm;
pub mod concurrent;
pub mod context;
pub mod error;
pub mod intent;
pub mod plan;
pub mod resources;
pub mod state;
pub mod step;

pub use error::{Error, ExitStatus};
