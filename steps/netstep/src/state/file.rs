//! Local-folder backend (`file:///abs/path`).
//!
//! Same layout as the blob backend, one file per blob name under the root folder.
//! - ETags are the hex SHA-256 of the file's bytes.
//! - Create (If-None-Match: *) writes a temporary file, fsyncs it and hard-links it to the final
//!   name: atomic, never overwrites, and a reader never sees a half-written file.
//! - Replace (If-Match) and delete-if-match run under a short-lived mutex file `<name>.cas`
//!   (exclusive create; one left behind by a killed process is removed as soon as its
//!   holder's PID is gone from `/proc`, else after [`CAS_STALE_AFTER`]), compare the current digest with the expected one and rename a
//!   temporary file over the target.
//!
//! Limits: this is correct between processes on ONE host with a local file system that supports
//! hard links and atomic rename. It is not a distributed lock (NFS/SMB semantics vary); use the
//! Azure Blob backend for anything shared between machines.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::envelope::sha256_hex;
use super::error::{StateError, StateErrorKind};
use super::{CreateOutcome, Versioned};

/// A `.cas` mutex file older than this is considered left behind by a killed process.
pub const CAS_STALE_AFTER: Duration = Duration::from_secs(30);
/// How long a replace waits for the `.cas` mutex before reporting the store unavailable:
/// longer than [`CAS_STALE_AFTER`], so a mutex left by a killed process never fails a waiter.
const CAS_WAIT: Duration = Duration::from_secs(40);

/// Whether a `.cas` mutex file was left by a process that is gone: it names its holder
/// (`pid N`) and, this backend being single-host, `/proc/N` does not exist. False when that
/// cannot be told (no `/proc`, an empty file being written): the age rule then applies.
fn holder_is_dead(mutex: &Path) -> bool {
    let proc_root = Path::new("/proc");
    if !proc_root.join("self").exists() {
        return false;
    }
    fs::read_to_string(mutex)
        .ok()
        .and_then(|t| t.trim().strip_prefix("pid ")?.parse::<u32>().ok())
        .is_some_and(|pid| pid != std::process::id() && !proc_root.join(pid.to_string()).exists())
}

#[derive(Debug, Clone)]
pub(crate) struct FileBackend {
    root: PathBuf,
}

fn io_err(op: &'static str, path: &Path, what: &str, e: io::Error) -> StateError {
    StateError::new(
        StateErrorKind::Io,
        op,
        Some(&path.display().to_string()),
        format!("{what}: {e}"),
    )
}

fn join_err(op: &'static str, e: tokio::task::JoinError) -> StateError {
    StateError::new(
        StateErrorKind::Io,
        op,
        None,
        format!("file task failed: {e}"),
    )
}

impl FileBackend {
    pub(crate) fn new(root: PathBuf) -> Self {
        FileBackend { root }
    }

    fn path_of(&self, name: &str) -> PathBuf {
        // `name` is built from validated segments ([A-Za-z0-9._-], never "." or "..").
        self.root.join(name)
    }

    pub(crate) async fn read(
        &self,
        op: &'static str,
        name: &str,
    ) -> Result<Option<Versioned>, StateError> {
        let path = self.path_of(name);
        tokio::task::spawn_blocking(move || read_sync(op, &path))
            .await
            .map_err(|e| join_err(op, e))?
    }

    pub(crate) async fn create(
        &self,
        op: &'static str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<CreateOutcome, StateError> {
        let path = self.path_of(name);
        tokio::task::spawn_blocking(move || create_sync(op, &path, &bytes))
            .await
            .map_err(|e| join_err(op, e))?
    }

    pub(crate) async fn replace(
        &self,
        op: &'static str,
        name: &str,
        bytes: Vec<u8>,
        etag: &str,
    ) -> Result<String, StateError> {
        let path = self.path_of(name);
        let etag = etag.to_owned();
        tokio::task::spawn_blocking(move || replace_sync(op, &path, &bytes, &etag))
            .await
            .map_err(|e| join_err(op, e))?
    }

    /// Deletes `name` if its digest is still `etag`; returns whether it was deleted.
    pub(crate) async fn delete_if_match(
        &self,
        op: &'static str,
        name: &str,
        etag: &str,
    ) -> Result<bool, StateError> {
        let path = self.path_of(name);
        let etag = etag.to_owned();
        tokio::task::spawn_blocking(move || delete_if_match_sync(op, &path, &etag))
            .await
            .map_err(|e| join_err(op, e))?
    }

    /// File names (not paths) directly inside folder `dir` (relative to the root).
    pub(crate) async fn list(
        &self,
        op: &'static str,
        dir: &str,
    ) -> Result<Vec<String>, StateError> {
        let path = self.path_of(dir);
        tokio::task::spawn_blocking(move || {
            let entries = match fs::read_dir(&path) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io_err(op, &path, "cannot list folder", e)),
            };
            let mut names = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| io_err(op, &path, "cannot list folder", e))?;
                if entry.file_type().map(|t| t.is_file()).unwrap_or(false)
                    && let Some(n) = entry.file_name().to_str()
                {
                    names.push(n.to_owned());
                }
            }
            Ok(names)
        })
        .await
        .map_err(|e| join_err(op, e))?
    }
}

fn read_sync(op: &'static str, path: &Path) -> Result<Option<Versioned>, StateError> {
    match fs::read(path) {
        Ok(bytes) => {
            let etag = sha256_hex(&bytes);
            Ok(Some(Versioned { bytes, etag }))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(op, path, "cannot read", e)),
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", uuid::Uuid::new_v4().simple()))
}

fn write_temp(op: &'static str, path: &Path, bytes: &[u8]) -> Result<PathBuf, StateError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir).map_err(|e| io_err(op, dir, "cannot create folder", e))?;
    let tmp = temp_path(path);
    let res = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(op, &tmp, "cannot write temporary file", e));
    }
    Ok(tmp)
}

fn sync_dir(path: &Path) {
    // Best effort: persist the directory entry (rename/link) on crash.
    if let Some(dir) = path.parent()
        && let Ok(d) = fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

fn create_sync(op: &'static str, path: &Path, bytes: &[u8]) -> Result<CreateOutcome, StateError> {
    let tmp = write_temp(op, path, bytes)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(path);
            Ok(CreateOutcome::Created(sha256_hex(bytes)))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(CreateOutcome::Exists),
        Err(e) => Err(io_err(op, path, "cannot create", e)),
    }
}

/// The `.cas` mutex around compare-and-swap operations on one file.
struct CasLock {
    path: PathBuf,
}

impl CasLock {
    fn acquire(op: &'static str, target: &Path) -> Result<CasLock, StateError> {
        let mut name = target.as_os_str().to_owned();
        name.push(".cas");
        let path = PathBuf::from(name);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| io_err(op, dir, "cannot create folder", e))?;
        }
        let start = std::time::Instant::now();
        loop {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    let _ = writeln!(f, "pid {}", std::process::id());
                    return Ok(CasLock { path });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let stale = fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|m| SystemTime::now().duration_since(m).ok())
                        .is_some_and(|age| age > CAS_STALE_AFTER)
                        || holder_is_dead(&path);
                    if stale {
                        tracing::warn!(path = %path.display(), "removing stale .cas mutex file");
                        let _ = fs::remove_file(&path);
                        continue;
                    }
                    if start.elapsed() > CAS_WAIT {
                        return Err(StateError::new(
                            StateErrorKind::Unavailable,
                            op,
                            Some(&target.display().to_string()),
                            format!(
                                "another writer holds {} for more than {CAS_WAIT:?}",
                                path.display()
                            ),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(io_err(op, &path, "cannot create mutex file", e)),
            }
        }
    }
}

impl Drop for CasLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn conflict(op: &'static str, path: &Path, detail: String) -> StateError {
    StateError::new(
        StateErrorKind::Conflict,
        op,
        Some(&path.display().to_string()),
        detail,
    )
}

fn replace_sync(
    op: &'static str,
    path: &Path,
    bytes: &[u8],
    etag: &str,
) -> Result<String, StateError> {
    let _cas = CasLock::acquire(op, path)?;
    match read_sync(op, path)? {
        None => {
            return Err(conflict(
                op,
                path,
                format!("expected version {etag} but the file was deleted by another writer"),
            ));
        }
        Some(cur) if cur.etag != etag => {
            return Err(conflict(
                op,
                path,
                format!(
                    "expected version {etag} but another writer changed it to {}",
                    cur.etag
                ),
            ));
        }
        Some(_) => {}
    }
    let tmp = write_temp(op, path, bytes)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(op, path, "cannot replace", e));
    }
    sync_dir(path);
    Ok(sha256_hex(bytes))
}

fn delete_if_match_sync(op: &'static str, path: &Path, etag: &str) -> Result<bool, StateError> {
    let _cas = CasLock::acquire(op, path)?;
    match read_sync(op, path)? {
        Some(cur) if cur.etag == etag => {
            fs::remove_file(path).map_err(|e| io_err(op, path, "cannot delete", e))?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_replace_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let b = FileBackend::new(dir.path().to_owned());
        let CreateOutcome::Created(e1) = b.create("t", "a/x.json", b"1".to_vec()).await.unwrap()
        else {
            panic!("not created")
        };
        assert!(matches!(
            b.create("t", "a/x.json", b"2".to_vec()).await.unwrap(),
            CreateOutcome::Exists
        ));
        let e2 = b
            .replace("t", "a/x.json", b"3".to_vec(), &e1)
            .await
            .unwrap();
        let err = b
            .replace("t", "a/x.json", b"4".to_vec(), &e1)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StateErrorKind::Conflict);
        assert_eq!(b.read("t", "a/x.json").await.unwrap().unwrap().bytes, b"3");
        assert!(!b.delete_if_match("t", "a/x.json", &e1).await.unwrap());
        assert!(b.delete_if_match("t", "a/x.json", &e2).await.unwrap());
        assert!(b.read("t", "a/x.json").await.unwrap().is_none());
        // No temporary or mutex files left behind.
        assert!(b.list("t", "a").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_mutex_left_by_a_killed_process_does_not_block_writers() {
        let dir = tempfile::tempdir().unwrap();
        let b = FileBackend::new(dir.path().to_owned());
        let CreateOutcome::Created(e1) = b.create("t", "x.json", b"1".to_vec()).await.unwrap()
        else {
            panic!("not created")
        };
        // A process that has exited: its PID is gone from /proc.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let mutex = dir.path().join("x.json.cas");
        fs::write(&mutex, format!("pid {dead}\n")).unwrap();
        assert!(holder_is_dead(&mutex));
        // A fresh mutex file (age below CAS_STALE_AFTER) of a dead holder is removed at once.
        let started = std::time::Instant::now();
        b.replace("t", "x.json", b"2".to_vec(), &e1).await.unwrap();
        assert!(started.elapsed() < CAS_STALE_AFTER);
        assert!(!mutex.exists());
        // A live holder (this process) is waited for, not removed.
        fs::write(&mutex, format!("pid {}\n", std::process::id())).unwrap();
        assert!(!holder_is_dead(&mutex));
        fs::write(&mutex, "").unwrap();
        assert!(!holder_is_dead(&mutex), "an empty mutex is being written");
    }
}
