//! The state store against both backends: a local folder and a REAL Azurite (started per test
//! by `netstep-testsupport` on 127.0.0.1 with a free port, killed by PID at the end). The same
//! scenarios run on both (`state_store::<scenario>::{file,blob}`); `state_blob::*` covers what
//! only the blob backend has (SAS redaction, API version pin, bearer tokens over HTTPS).
//!
//! Azurite is found through `NETSTEP_AZURITE` or `<repo>/.tools/azurite` (run
//! `.ci/install-azurite`); if it is missing the blob tests fail, they never skip.
//!
//! `lease_holder_child_process` is not a test of its own: it is the holder process that
//! `lease_held_by_killed_process` starts (this binary again) and kills with SIGKILL.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use azure_core::http::RequestContent;
use netstep::state::{
    Action, Change, FieldChange, Mode, SnapshotOutcome, StateError, StateErrorKind, StateStore,
    Status, StepRecord, StoreOptions,
};
use netstep_testsupport::Azurite;
use serde_json::json;

const RUN: &str = "3f2a9c1d0e5b-main";

enum Fx {
    File {
        dir: tempfile::TempDir,
        url: String,
    },
    Blob {
        az: Arc<Azurite>,
        container: String,
        url: String,
    },
}

impl Fx {
    async fn file() -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/state", dir.path().display());
        Fx::File { dir, url }
    }

    async fn blob() -> Fx {
        let az = tokio::task::spawn_blocking(Azurite::start).await.unwrap();
        let container = "netstep-state".to_owned();
        let url = az.create_container(&container).await;
        Fx::Blob {
            az: Arc::new(az),
            container,
            url,
        }
    }

    fn url(&self) -> &str {
        match self {
            Fx::File { url, .. } | Fx::Blob { url, .. } => url,
        }
    }

    fn is_blob(&self) -> bool {
        matches!(self, Fx::Blob { .. })
    }

    /// A new, independent client of the same store.
    async fn store(&self) -> StateStore {
        let options = StoreOptions {
            lock_poll_interval: Duration::from_millis(250),
            ..StoreOptions::default()
        };
        StateStore::open_with(self.url(), None, options)
            .await
            .unwrap()
    }

    fn file_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
        dir.path().join("state").join(name)
    }

    /// Reads a stored document behind the store's back.
    async fn raw_read(&self, name: &str) -> Vec<u8> {
        match self {
            Fx::File { dir, .. } => std::fs::read(Self::file_path(dir, name)).unwrap(),
            Fx::Blob { az, container, .. } => az
                .blob_client(container, name)
                .download(None)
                .await
                .unwrap()
                .body
                .collect()
                .await
                .unwrap()
                .to_vec(),
        }
    }

    /// Overwrites a stored document behind the store's back.
    async fn raw_write(&self, name: &str, bytes: Vec<u8>) {
        match self {
            Fx::File { dir, .. } => {
                let p = Self::file_path(dir, name);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, bytes).unwrap();
            }
            Fx::Blob { az, container, .. } => {
                az.blob_client(container, name)
                    .upload(RequestContent::from(bytes), None)
                    .await
                    .unwrap();
            }
        }
    }

    /// Takes the lease `leases/<name>` away from its holder behind the store's back: breaks the
    /// blob lease immediately, or damages the lock file (the next acquirer then takes it over).
    async fn steal_lease(&self, name: &str) {
        let path = format!("leases/{name}");
        match self {
            Fx::File { .. } => self.raw_write(&path, b"stolen".to_vec()).await,
            Fx::Blob { az, container, .. } => {
                let options = azure_storage_blob::models::BlobClientBreakLeaseOptions {
                    break_period: Some(0),
                    ..Default::default()
                };
                az.blob_client(container, &path)
                    .break_lease(Some(options))
                    .await
                    .unwrap();
            }
        }
    }

    fn logs(&self) -> String {
        match self {
            Fx::File { .. } => String::new(),
            Fx::Blob { az, .. } => az.logs(),
        }
    }
}

fn record(step: &str, status: Status) -> StepRecord {
    StepRecord {
        step: step.to_owned(),
        run_key: RUN.to_owned(),
        intent_digest: "ab".repeat(32),
        mode: Mode::Apply,
        started_at: "2026-11-26T10:00:00Z".to_owned(),
        ended_at: "2026-11-26T10:01:30.250Z".to_owned(),
        status,
        changes: vec![Change {
            action: Action::Update,
            resource_id: "/subscriptions/6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718/resourceGroups/\
                          rg-globojava-connectivity/providers/Microsoft.Network/networkManagers/\
                          avnm-globojava/networkGroups/global-hubs"
                .to_owned(),
            resource_type: "Microsoft.Network/networkManagers/networkGroups".to_owned(),
            fields: vec![FieldChange {
                path: "properties.description".to_owned(),
                old: None,
                new: Some(json!("hubs — all regions")),
            }],
        }],
        outputs: BTreeMap::from([("groups".to_owned(), "3".to_owned())]),
        counters: json!({"requests": 12, "retries": 1, "throttled": 0}),
        extra: json!({"z": 1, "a": [1.5, "x"]}),
    }
}

fn expect_err<T: std::fmt::Debug>(r: Result<T, StateError>, kind: StateErrorKind) -> StateError {
    match r {
        Err(e) if e.kind() == kind => e,
        other => panic!("expected a {kind:?} error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios (each runs against both backends)
// ---------------------------------------------------------------------------------------------

async fn snapshot_first_wins(fx: Fx) {
    let s = fx.store().await;
    let first = br#"{"version":1,"regions":["eastus","westus"]}"#;
    let second = br#"{"version":1,"regions":["eastus"]}"#;
    assert_eq!(s.get_snapshot(RUN).await.unwrap(), None);
    assert_eq!(
        s.put_snapshot(RUN, first).await.unwrap(),
        SnapshotOutcome::Created,
        "{}",
        fx.logs()
    );
    // A resubmission with a changed intent gets the FIRST snapshot back, from another client.
    let other = fx.store().await;
    assert_eq!(
        other.put_snapshot(RUN, second).await.unwrap(),
        SnapshotOutcome::AlreadyPresent {
            bytes: first.to_vec()
        }
    );
    assert_eq!(other.get_snapshot(RUN).await.unwrap(), Some(first.to_vec()));
    // Stored inside the digest envelope.
    let raw: serde_json::Value =
        serde_json::from_slice(&fx.raw_read(&format!("runs/{RUN}/intent.json")).await).unwrap();
    assert_eq!(raw["format"], 1);
    assert_eq!(raw["sha256"], netstep::state::sha256_hex(first));
    assert_eq!(raw["content"]["regions"][1], "westus");
    // Other run keys are independent.
    assert_eq!(s.get_snapshot("other-run").await.unwrap(), None);
    // Not JSON / bad run key: rejected, nothing written.
    let e = expect_err(
        s.put_snapshot("r2", b"regions: [eastus]").await,
        StateErrorKind::InvalidInput,
    );
    assert!(e.is_invalid_input());
    assert_eq!(s.get_snapshot("r2").await.unwrap(), None);
    let e = expect_err(
        s.put_snapshot("../escape", first).await,
        StateErrorKind::InvalidRunKey,
    );
    assert!(e.is_invalid_input(), "{e}");
}

async fn records_round_trip(fx: Fx) {
    let s = fx.store().await;
    assert_eq!(s.get_record(RUN, "tag-groups").await.unwrap(), None);
    assert!(s.list_records(RUN).await.unwrap().is_empty());
    s.put_snapshot(RUN, b"{}").await.unwrap();
    let r1 = record("tag-groups", Status::Converged);
    s.put_record(&r1).await.unwrap();
    s.put_record(&record("mesh-connect", Status::Drift))
        .await
        .unwrap();
    let other = fx.store().await;
    assert_eq!(other.get_record(RUN, "tag-groups").await.unwrap(), Some(r1));
    assert_eq!(
        other.list_records(RUN).await.unwrap(),
        ["mesh-connect", "tag-groups"]
    );
    // A re-run of the step replaces its record (If-Match on the current ETag).
    let mut r2 = record("tag-groups", Status::Failed);
    r2.mode = Mode::Plan;
    r2.changes.clear();
    other.put_record(&r2).await.unwrap();
    assert_eq!(s.get_record(RUN, "tag-groups").await.unwrap(), Some(r2));
    // Reserved and invalid names, unfinished records.
    let mut bad = record("intent", Status::Converged);
    expect_err(s.put_record(&bad).await, StateErrorKind::InvalidInput);
    bad.step = "a/b".into();
    expect_err(s.put_record(&bad).await, StateErrorKind::InvalidInput);
    let mut unfinished = record("dns-link", Status::Converged);
    unfinished.ended_at = "2026-11-26T09:00:00Z".into();
    let e = expect_err(
        s.put_record(&unfinished).await,
        StateErrorKind::InvalidInput,
    );
    assert!(e.to_string().contains("before started_at"), "{e}");
    unfinished.ended_at = "soon".into();
    expect_err(
        s.put_record(&unfinished).await,
        StateErrorKind::InvalidInput,
    );
    assert_eq!(s.get_record(RUN, "dns-link").await.unwrap(), None);
}

async fn conditional_write_conflict(fx: Fx) {
    let a = fx.store().await;
    let b = fx.store().await;
    let step = "admin-rules";
    // Two creators: the second one loses.
    a.put_record_if(&record(step, Status::Converged), None)
        .await
        .unwrap();
    let e = expect_err(
        b.put_record_if(&record(step, Status::Drift), None).await,
        StateErrorKind::Conflict,
    );
    assert!(!e.is_transient() && !e.is_invalid_input());
    // Two replacers holding the same ETag: the one writing with the stale ETag loses.
    let (_, etag_a) = a.get_record_versioned(RUN, step).await.unwrap().unwrap();
    let (_, etag_b) = b.get_record_versioned(RUN, step).await.unwrap().unwrap();
    assert_eq!(etag_a, etag_b);
    let new_etag = a
        .put_record_if(&record(step, Status::Failed), Some(&etag_a))
        .await
        .unwrap();
    assert_ne!(new_etag, etag_a);
    let e = expect_err(
        b.put_record_if(&record(step, Status::Drift), Some(&etag_b))
            .await,
        StateErrorKind::Conflict,
    );
    assert!(
        e.to_string().contains(&format!("runs/{RUN}/{step}.json")),
        "{e}"
    );
    if fx.is_blob() {
        assert_eq!(e.status(), Some(412), "{e}");
        assert_eq!(e.error_code(), Some("ConditionNotMet"), "{e}");
    }
    // The winner's record is what is stored.
    assert_eq!(
        b.get_record(RUN, step).await.unwrap().unwrap().status,
        Status::Failed
    );

    // Truly concurrent writers holding the same ETag: exactly one wins.
    let (_, etag) = a.get_record_versioned(RUN, step).await.unwrap().unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = fx.store().await;
        let etag = etag.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = record(step, Status::Converged);
            r.outputs.insert("writer".into(), i.to_string());
            store.put_record_if(&r, Some(&etag)).await.map(|_| i)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(i) => winners.push(i),
            Err(e) => assert_eq!(e.kind(), StateErrorKind::Conflict, "{e}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let stored = a.get_record(RUN, step).await.unwrap().unwrap();
    assert_eq!(stored.outputs["writer"], winners[0].to_string());

    // Concurrent first steps of a new run: one snapshot wins, everyone gets its bytes.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = fx.store().await;
        tasks.push(tokio::spawn(async move {
            let mine = format!(r#"{{"writer":{i}}}"#).into_bytes();
            let outcome = store.put_snapshot("concurrent-run", &mine).await.unwrap();
            (mine, outcome)
        }));
    }
    let mut created = Vec::new();
    let mut seen = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (mine, SnapshotOutcome::Created) => created.push(mine),
            (_, SnapshotOutcome::AlreadyPresent { bytes }) => seen.push(bytes),
        }
    }
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(seen.iter().all(|b| *b == created[0]), "{seen:?}");
}

async fn tampered_record_rejected(fx: Fx) {
    let s = fx.store().await;
    let step = "fw-policy";
    s.put_record(&record(step, Status::Converged))
        .await
        .unwrap();
    let name = format!("runs/{RUN}/{step}.json");
    let original = String::from_utf8(fx.raw_read(&name).await).unwrap();
    let edited = original.replace(r#""status":"converged""#, r#""status":"drift""#);
    assert_ne!(edited, original);
    fx.raw_write(&name, edited.into_bytes()).await;
    let e = expect_err(s.get_record(RUN, step).await, StateErrorKind::Tampered);
    let text = e.to_string();
    assert!(text.contains(&name), "{text}");
    assert!(text.contains("expected sha256"), "{text}");
    assert!(text.contains("actual sha256"), "{text}");
    assert!(!e.is_transient() && !e.is_invalid_input());

    // The snapshot is protected the same way.
    s.put_snapshot(RUN, br#"{"regions":["eastus"]}"#)
        .await
        .unwrap();
    let snap = format!("runs/{RUN}/intent.json");
    let raw = String::from_utf8(fx.raw_read(&snap).await).unwrap();
    fx.raw_write(&snap, raw.replace("eastus", "westus").into_bytes())
        .await;
    let e = expect_err(s.get_snapshot(RUN).await, StateErrorKind::Tampered);
    assert!(e.to_string().contains("digest mismatch"), "{e}");
    // ... also when put_snapshot finds it present.
    expect_err(
        s.put_snapshot(RUN, br#"{"regions":["eastus"]}"#).await,
        StateErrorKind::Tampered,
    );
}

async fn truncated_record_rejected(fx: Fx) {
    let s = fx.store().await;
    let step = "dns-link";
    s.put_record(&record(step, Status::Converged))
        .await
        .unwrap();
    let name = format!("runs/{RUN}/{step}.json");
    let full = fx.raw_read(&name).await;
    fx.raw_write(&name, full[..full.len() / 2].to_vec()).await;
    let e = expect_err(s.get_record(RUN, step).await, StateErrorKind::Tampered);
    assert!(e.to_string().contains(&name), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
    fx.raw_write(&name, Vec::new()).await;
    expect_err(s.get_record(RUN, step).await, StateErrorKind::Tampered);
}

async fn record_of_other_run_rejected(fx: Fx) {
    let s = fx.store().await;
    let step = "verify";
    s.put_record(&record(step, Status::Converged))
        .await
        .unwrap();
    let bytes = fx.raw_read(&format!("runs/{RUN}/{step}.json")).await;
    // Copied into another run: intact digest, wrong run key.
    fx.raw_write(&format!("runs/other-run/{step}.json"), bytes.clone())
        .await;
    let e = expect_err(
        s.get_record("other-run", step).await,
        StateErrorKind::WrongRecord,
    );
    assert!(e.is_invalid_input(), "{e}");
    assert!(e.to_string().contains(RUN), "{e}");
    // Copied under another step name.
    fx.raw_write(&format!("runs/{RUN}/tag-groups.json"), bytes)
        .await;
    expect_err(
        s.get_record(RUN, "tag-groups").await,
        StateErrorKind::WrongRecord,
    );
}

async fn lease_exclusive_and_released(fx: Fx) {
    let a = fx.store().await;
    let b = fx.store().await;
    let ttl = Duration::from_secs(15);
    let g = a
        .acquire_lock(
            "avnm-globojava",
            "mesh-connect run A pod p-1",
            ttl,
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert!(g.is_held());
    // The second client waits, then gives up naming the holder.
    let e = expect_err(
        b.acquire_lock("avnm-globojava", "run B", ttl, Duration::from_millis(800))
            .await,
        StateErrorKind::LockHeld,
    );
    let text = e.to_string();
    assert!(e.is_transient(), "{text}");
    assert!(text.contains("lease on network avnm-globojava"), "{text}");
    assert!(
        text.contains("held by mesh-connect run A pod p-1 since 20"),
        "{text}"
    );
    // Another network is not blocked.
    let other = b
        .acquire_lock("avnm-other", "run B", ttl, Duration::ZERO)
        .await
        .unwrap();
    // A waiter gets in once the holder releases.
    let waiter = tokio::spawn(async move {
        b.acquire_lock("avnm-globojava", "run B", ttl, Duration::from_secs(30))
            .await
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !waiter.is_finished(),
        "waiter got the lock while it was held"
    );
    g.check().unwrap();
    g.release().await.unwrap();
    let g2 = waiter.await.unwrap().unwrap();
    assert_eq!(g2.holder(), "run B");
    let e = expect_err(
        a.acquire_lock("avnm-globojava", "run C", ttl, Duration::ZERO)
            .await,
        StateErrorKind::LockHeld,
    );
    assert!(e.to_string().contains("held by run B"), "{e}");
    g2.release().await.unwrap();
    other.release().await.unwrap();
    // Dropping a guard releases in the background: the next holder gets in well before the
    // lease could have expired (wait 5 s < ttl 15 s).
    let dropped = a
        .acquire_lock("avnm-globojava", "dropped", ttl, Duration::ZERO)
        .await
        .unwrap();
    drop(dropped);
    let g3 = fx
        .store()
        .await
        .acquire_lock("avnm-globojava", "after drop", ttl, Duration::from_secs(5))
        .await
        .unwrap();
    g3.release().await.unwrap();
    // Bad names are the caller's error.
    expect_err(
        a.acquire_lock("../x", "h", ttl, Duration::ZERO).await,
        StateErrorKind::InvalidInput,
    );
}

async fn lease_loss_is_reported(fx: Fx) {
    let ttl = if fx.is_blob() {
        Duration::from_secs(15)
    } else {
        Duration::from_secs(1)
    };
    let a = fx.store().await;
    let g = a
        .acquire_lock("net-x", "first", ttl, Duration::ZERO)
        .await
        .unwrap();
    fx.steal_lease("net-x").await;
    let b = fx.store().await;
    let thief = b
        .acquire_lock("net-x", "thief", ttl, Duration::ZERO)
        .await
        .expect("lease free after it was broken");
    // The first holder's next renewal (at ttl/3) is rejected.
    let deadline = tokio::time::Instant::now() + ttl;
    while g.is_held() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = expect_err(g.check(), StateErrorKind::LockLost);
    assert!(e.is_transient(), "{e}");
    assert!(
        e.to_string().contains("lease on network net-x was lost"),
        "{e}"
    );
    // The write gate the step context hands the ARM client closes with it.
    let why = g
        .write_gate()
        .problem()
        .expect("gate closed once the lease is lost");
    assert!(why.contains("network net-x is no longer held"), "{why}");
    assert!(thief.write_gate().problem().is_none());
    expect_err(g.release().await, StateErrorKind::LockLost);
    // The new holder is unaffected.
    thief.check().unwrap();
    let e = expect_err(
        a.acquire_lock("net-x", "first", ttl, Duration::ZERO).await,
        StateErrorKind::LockHeld,
    );
    assert!(e.to_string().contains("held by thief"), "{e}");
    thief.release().await.unwrap();
}

/// Acquires a lock in a separate runtime and then kills that runtime without releasing:
/// renewal stops as if the holder process had been killed.
fn acquire_and_abandon(url: String, name: &'static str, holder: &'static str, ttl: Duration) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let guard = rt.block_on(async {
            let s = StateStore::open(&url, None).await.unwrap();
            s.acquire_lock(name, holder, ttl, Duration::ZERO)
                .await
                .unwrap()
        });
        // Neither release nor drop: the process "dies" holding the lease.
        std::mem::forget(guard);
        rt.shutdown_background();
    })
    .join()
    .unwrap();
}

async fn lease_expiry_and_renewal(fx: Fx) {
    // The blob service's shortest lease is 15 s; the file backend takes any ttl.
    let ttl = if fx.is_blob() {
        Duration::from_secs(15)
    } else {
        Duration::from_secs(2)
    };
    let expiry = async {
        acquire_and_abandon(fx.url().to_owned(), "net-dead", "killed holder", ttl);
        let s = fx.store().await;
        let e = expect_err(
            s.acquire_lock("net-dead", "successor", ttl, Duration::ZERO)
                .await,
            StateErrorKind::LockHeld,
        );
        assert!(e.to_string().contains("held by killed holder"), "{e}");
        let g = s
            .acquire_lock("net-dead", "successor", ttl, ttl * 3)
            .await
            .expect("expired lease taken over");
        g.release().await.unwrap();
    };
    let renewal = async {
        let a = fx.store().await;
        let b = fx.store().await;
        let g = a
            .acquire_lock("net-live", "long worker", ttl, Duration::ZERO)
            .await
            .unwrap();
        tokio::time::sleep(ttl + ttl / 2).await;
        let e = expect_err(
            b.acquire_lock("net-live", "intruder", ttl, Duration::ZERO)
                .await,
            StateErrorKind::LockHeld,
        );
        assert!(e.to_string().contains("held by long worker"), "{e}");
        g.check().unwrap();
        assert!(g.is_held());
        g.release().await.unwrap();
        b.acquire_lock("net-live", "intruder", ttl, Duration::ZERO)
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    };
    tokio::join!(expiry, renewal);
}

// ---------------------------------------------------------------------------------------------
// Two processes: the holder is a child process (this test binary re-run on an ignored helper
// test), killed with SIGKILL while holding the lease.
// ---------------------------------------------------------------------------------------------

const CHILD_ENV: &str = "NETSTEP_TEST_LEASE_CHILD";
const CHILD_READY: &str = "NETSTEP-LEASE-ACQUIRED";

/// Helper process for [`lease_held_by_killed_process`]; not a test on its own.
#[test]
#[ignore = "helper process of the two-process lease test; started by it"]
fn lease_holder_child_process() {
    let spec = std::env::var(CHILD_ENV).expect("only run by the two-process lease test");
    let mut parts = spec.splitn(3, '\n');
    let (ttl, name, url) = (
        parts.next().unwrap().parse::<u64>().unwrap(),
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = StateStore::open(&url, None).await.unwrap();
        let holder = format!("child process {}", std::process::id());
        let g = s
            .acquire_lock(
                &name,
                &holder,
                Duration::from_secs(ttl),
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        use std::io::Write;
        println!("{CHILD_READY}");
        std::io::stdout().flush().unwrap();
        // Work "forever" (renewing); the parent kills this process.
        tokio::time::sleep(Duration::from_secs(600)).await;
        g.release().await.unwrap();
    });
}

/// Kills the child (by PID) if the test fails before doing so.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn lease_held_by_killed_process(fx: Fx) {
    use std::io::BufRead;
    let ttl = if fx.is_blob() { 15 } else { 2 };
    let name = "avnm-globojava";
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lease_holder_child_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{ttl}\n{name}\n{}", fx.url()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut child = KillOnDrop(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(CHILD_READY) {
                let _ = tx.send(());
            }
        }
    });
    tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(120)))
        .await
        .unwrap()
        .expect("child process did not acquire the lease");
    let pid = child.0.id();

    let s = fx.store().await;
    let ttl = Duration::from_secs(ttl);
    let e = expect_err(
        s.acquire_lock(name, "parent", ttl, Duration::from_millis(500))
            .await,
        StateErrorKind::LockHeld,
    );
    assert!(
        e.to_string()
            .contains(&format!("held by child process {pid}")),
        "{e}"
    );
    // SIGKILL: no release, no more renewals. The lease expires and the parent takes over.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let g = s
        .acquire_lock(name, "parent", ttl, ttl * 3)
        .await
        .expect("lease of the killed process taken over");
    g.release().await.unwrap();
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod state_store {
            $(
                mod $name {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn file() {
                        super::super::$name(super::super::Fx::file().await).await
                    }
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn blob() {
                        super::super::$name(super::super::Fx::blob().await).await
                    }
                }
            )*
        }
    };
}

both_backends!(
    snapshot_first_wins,
    records_round_trip,
    conditional_write_conflict,
    tampered_record_rejected,
    truncated_record_rejected,
    record_of_other_run_rejected,
    lease_exclusive_and_released,
    lease_expiry_and_renewal,
    lease_held_by_killed_process,
    lease_loss_is_reported,
);

// ---------------------------------------------------------------------------------------------
// Blob-only
// ---------------------------------------------------------------------------------------------

mod state_blob {
    use super::*;

    /// Collects everything logged (all levels, all targets) while alive on this thread.
    #[derive(Clone, Default)]
    struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for LogBuffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl LogBuffer {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    /// The SAS signature never appears in error texts, logs or the store's Display/Debug.
    /// (current_thread runtime: every SDK call runs on this thread, under the capturing
    /// subscriber.)
    #[tokio::test(flavor = "current_thread")]
    async fn sas_signature_redacted() {
        let logs = LogBuffer::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _log_guard = tracing::subscriber::set_default(subscriber);

        let az = Azurite::start();
        let sig: String = url::form_urlencoded::parse(az.sas().as_bytes())
            .find(|(k, _)| k == "sig")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        let encoded_sig: String = url::form_urlencoded::byte_serialize(sig.as_bytes()).collect();
        let leaks = |text: &str| text.contains(&sig) || text.contains(&encoded_sig);
        let quick = || StoreOptions {
            retry_max_elapsed: Duration::from_secs(2),
            ..StoreOptions::default()
        };

        // Normal traffic: records, snapshot, lease.
        let url = az.create_container("netstep-state").await;
        let s = StateStore::open_with(&url, None, quick()).await.unwrap();
        assert!(!leaks(&format!("{s} {s:?}")));
        s.put_snapshot(RUN, b"{}").await.unwrap();
        s.put_record(&record("tag-groups", Status::Converged))
            .await
            .unwrap();
        s.acquire_lock(
            "avnm-globojava",
            "h",
            Duration::from_secs(15),
            Duration::ZERO,
        )
        .await
        .unwrap()
        .release()
        .await
        .unwrap();

        // A container that does not exist: the service error names it, not the signature.
        let s = StateStore::open_with(&az.container_url("no-such-container"), None, quick())
            .await
            .unwrap();
        let e = expect_err(s.put_snapshot(RUN, b"{}").await, StateErrorKind::NotFound);
        let text = format!("{e} {e:?}");
        assert!(!leaks(&text), "{text}");
        assert_eq!(e.error_code(), Some("ContainerNotFound"), "{text}");

        // A wrong signature: 403, classified as an auth failure.
        let forged = url.replace(&encoded_sig, "AAAA");
        assert_ne!(forged, url);
        let s = StateStore::open_with(&forged, None, quick()).await.unwrap();
        let e = expect_err(s.get_snapshot(RUN).await, StateErrorKind::Auth);
        assert_eq!(e.status(), Some(403), "{e}");

        // Unreachable service: the transport error quotes the URL; it must come out redacted.
        let port = az.port();
        drop(az);
        let s = StateStore::open_with(&url, None, quick()).await.unwrap();
        let e = expect_err(s.get_snapshot(RUN).await, StateErrorKind::Unavailable);
        let text = format!("{e} {e:?}");
        assert!(e.is_transient(), "{text}");
        assert!(!leaks(&text), "{text}");

        // A URL that fails validation is shown redacted too.
        let e = expect_err(
            StateStore::open(
                &format!("http://127.0.0.1:{port}/devstoreaccount1/Bad_Name?sig={encoded_sig}"),
                None,
            )
            .await,
            StateErrorKind::InvalidUrl,
        );
        assert!(!leaks(&e.to_string()), "{e}");
        assert!(e.to_string().contains("sig=REDACTED"), "{e}");

        let logged = logs.text();
        assert!(logged.contains("127.0.0.1"), "nothing captured:\n{logged}");
        assert!(!leaks(&logged), "signature logged:\n{logged}");
    }

    /// A credential whose token request fails (as an unreachable identity endpoint would).
    #[derive(Debug)]
    struct NoToken;

    #[async_trait::async_trait]
    impl azure_core::credentials::TokenCredential for NoToken {
        async fn get_token(
            &self,
            _scopes: &[&str],
            _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
        ) -> azure_core::Result<azure_core::credentials::AccessToken> {
            Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                "no identity available",
            ))
        }
    }

    /// The Entra ID path: https URL without SAS plus a `TokenCredential` (bearer token), against
    /// Azurite in `--oauth basic` mode over TLS.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn token_credential_over_https() {
        use netstep_testsupport::AzuriteToken;
        let az = tokio::task::spawn_blocking(Azurite::start_oauth)
            .await
            .unwrap();
        az.create_container("netstep-state").await;
        let url = az.container_url_without_sas("netstep-state");
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        let options = || StoreOptions {
            transport: az.transport(),
            retry_max_elapsed: Duration::from_secs(2),
            lock_poll_interval: Duration::from_millis(200),
            ..StoreOptions::default()
        };
        // Neither SAS nor credential: a usage error before any request.
        expect_err(
            StateStore::open_with(&url, None, options()).await,
            StateErrorKind::InvalidUrl,
        );
        // A credential over plain http is refused (the token would travel in clear text).
        let plain = url.replacen("https://", "http://", 1);
        expect_err(
            StateStore::open_with(&plain, Some(AzuriteToken::storage()), options()).await,
            StateErrorKind::InvalidUrl,
        );

        let s = StateStore::open_with(&url, Some(AzuriteToken::storage()), options())
            .await
            .unwrap();
        assert_eq!(
            s.put_snapshot(RUN, br#"{"v":1}"#).await.unwrap(),
            SnapshotOutcome::Created,
            "{}",
            az.logs()
        );
        assert_eq!(
            s.get_snapshot(RUN).await.unwrap(),
            Some(br#"{"v":1}"#.to_vec())
        );
        let r = record("tag-groups", Status::Converged);
        s.put_record(&r).await.unwrap();
        assert_eq!(s.get_record(RUN, "tag-groups").await.unwrap(), Some(r));
        assert_eq!(s.list_records(RUN).await.unwrap(), ["tag-groups"]);
        let g = s
            .acquire_lock(
                "avnm-globojava",
                "bearer",
                Duration::from_secs(15),
                Duration::ZERO,
            )
            .await
            .unwrap();
        let other = StateStore::open_with(&url, Some(AzuriteToken::storage()), options())
            .await
            .unwrap();
        let e = expect_err(
            other
                .acquire_lock(
                    "avnm-globojava",
                    "x",
                    Duration::from_secs(15),
                    Duration::ZERO,
                )
                .await,
            StateErrorKind::LockHeld,
        );
        assert!(e.to_string().contains("held by bearer"), "{e}");
        g.release().await.unwrap();

        // A token for another audience: 403, an authorization failure (permanent).
        let wrong = StateStore::open_with(
            &url,
            Some(AzuriteToken::with_audience("https://management.azure.com")),
            options(),
        )
        .await
        .unwrap();
        let e = expect_err(wrong.get_snapshot(RUN).await, StateErrorKind::Auth);
        assert_eq!(e.status(), Some(403), "{e}");
        assert!(!e.is_transient() && !e.is_invalid_input());

        // No token at all: an authorization failure too.
        let none = StateStore::open_with(&url, Some(Arc::new(NoToken)), options())
            .await
            .unwrap();
        let e = expect_err(none.get_snapshot(RUN).await, StateErrorKind::Auth);
        assert!(e.to_string().contains("no identity available"), "{e}");
    }

    /// The API version pin is what makes Azurite 3.35 accept the requests (these tests start it
    /// WITHOUT --skipApiVersionCheck); the override reaches the wire.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn api_version_pinned_and_overridable() {
        let az = tokio::task::spawn_blocking(Azurite::start).await.unwrap();
        let url = az.create_container("versions").await;
        let pinned = StateStore::open(&url, None).await.unwrap();
        assert_eq!(pinned.get_snapshot(RUN).await.unwrap(), None);
        let options = StoreOptions {
            blob_api_version: Some("2026-04-06".into()),
            ..StoreOptions::default()
        };
        let newer = StateStore::open_with(&url, None, options).await.unwrap();
        let e = newer.get_snapshot(RUN).await.unwrap_err();
        assert_eq!(e.status(), Some(400), "{e}");
        assert!(e.to_string().contains("2026-04-06"), "{e}");
    }
}
