//! Crash sweep: every step, in pipeline order, SIGKILLed right after its k-th ARM request, for
//! the k of its first run from the state where its upstream steps have run; then the same run
//! key again. For every kill point:
//! - the re-run exits 0 and converges (its plan shows no changes; verify reports no drift);
//! - it makes no duplicate write: the killed run's completed writes plus the re-run's writes
//!   stay within the uninterrupted reference run's writes, plus the one write the kill
//!   interrupted;
//! - every record of the state store loads through the store API (digest checked), after the
//!   kill and after the re-run.
//!
//! The world is put back to "upstream done" for each k: armsim's whole estate by
//! `/_sim/snapshot` + `/_sim/restore`, the file state store by copying its folder.
//!
//! `NETSTEP_CRASH_SWEEP=full` tries every k; otherwise (CI) a deterministic sample: the first
//! and last 5 requests of each step and every `NETSTEP_CRASH_SWEEP_STRIDE`-th (default 10)
//! in between. A step killed while holding the network lease leaves it behind; as the
//! pipeline's exit handler does, the test breaks leases held under the run key before the
//! re-run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use netstep::state::StateStore;
use pipeline_tests::{Env, EnvOptions, STEPS, copy_tree};
use serde_json::{Value, json};

const KEY: &str = "sweep";

/// Write requests of armsim's log as `METHOD path` (lower-cased), with their status.
fn writes_of(log: &Value) -> Vec<(String, u16)> {
    log.as_array()
        .expect("log")
        .iter()
        .filter(|e| {
            let m = e["method"].as_str().unwrap_or_default();
            matches!(m, "PUT" | "PATCH" | "DELETE") || e["op"] == "POST commit"
        })
        .map(|e| {
            (
                format!(
                    "{} {}",
                    e["method"].as_str().unwrap_or_default(),
                    e["path"].as_str().unwrap_or_default().to_ascii_lowercase()
                ),
                e["status"].as_u64().unwrap_or(0) as u16,
            )
        })
        .collect()
}

fn multiset<'a>(it: impl Iterator<Item = &'a String>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for k in it {
        *m.entry(k.clone()).or_insert(0) += 1;
    }
    m
}

/// The kill points tried for a step that makes `n` requests.
fn kill_points(n: u64) -> Vec<u64> {
    let mode = std::env::var("NETSTEP_CRASH_SWEEP").unwrap_or_default();
    if mode == "full" {
        return (1..=n).collect();
    }
    let stride: u64 = std::env::var("NETSTEP_CRASH_SWEEP_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(10);
    (1..=n)
        .filter(|k| *k <= 5 || *k + 5 > n || k % stride == 0)
        .collect()
}

/// Loads every record and snapshot of the store through its API (each digest-checked).
async fn check_store(state_dir: &Path, url: &str, ctx: &str) -> usize {
    let store = StateStore::open(url, None).await.expect("open store");
    let mut n = 0;
    let runs = state_dir.join("runs");
    for e in std::fs::read_dir(&runs).into_iter().flatten().flatten() {
        let key = e.file_name().to_string_lossy().into_owned();
        store
            .get_snapshot(&key)
            .await
            .unwrap_or_else(|err| panic!("{ctx}: snapshot of {key}: {err}"));
        for step in store
            .list_records(&key)
            .await
            .unwrap_or_else(|err| panic!("{ctx}: list {key}: {err}"))
        {
            let rec = store
                .get_record(&key, &step)
                .await
                .unwrap_or_else(|err| panic!("{ctx}: record {key}/{step} is torn: {err}"));
            assert!(
                rec.is_some(),
                "{ctx}: record {key}/{step} listed but absent"
            );
            n += 1;
        }
    }
    n
}

/// Breaks the network leases a killed step of run `KEY` left (what the exit handler does).
async fn break_leases(url: &str) -> Vec<String> {
    let store = StateStore::open(url, None).await.expect("open store");
    let Some(bytes) = store.get_snapshot(KEY).await.expect("snapshot") else {
        return Vec::new();
    };
    let intent = netstep::intent::Intent::from_snapshot_json("snapshot", &bytes).expect("intent");
    let mut broken = Vec::new();
    for name in netstep::context::lock_names(&intent.network_manager_id()) {
        if let Some(h) = store
            .break_lock_held_by(&name, &format!(" run {KEY} pid "))
            .await
            .expect("break lease")
        {
            broken.push(h);
        }
    }
    broken
}

struct Reference {
    /// Requests of the uninterrupted first run.
    requests: u64,
    /// Its writes, as a multiset.
    writes: BTreeMap<String, u64>,
    /// Copy of the state folder before the step ran.
    state: PathBuf,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_sweep_every_step_killed_after_request_k_then_rerun_converges() {
    let started = Instant::now();
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    let intent = env.globojava_intent();
    let state_dir = PathBuf::from(env.state.trim_start_matches("file://"));
    let step = |s: &str| {
        env.step(s)
            .intent(&intent)
            .run_key(KEY)
            .env("NETSTEP_RETRY_INITIAL_MS", "100")
    };

    // Reference: each step's first run from "upstream done", uninterrupted.
    let mut refs = BTreeMap::new();
    for s in STEPS {
        let snap = format!("before-{s}");
        let (st, body) = env.sim_post("snapshot", &json!({"name": snap})).await;
        assert_eq!(st, 200, "{body}");
        let copy = env.dir.path().join(&snap);
        copy_tree(&state_dir, &copy);
        env.reset_stats().await;
        let out = step(s).apply().run().await;
        assert_eq!(out.code, 0, "{s} reference run:\n{}", out.stderr);
        let requests = env.stats().await["requests"].as_u64().unwrap_or(0);
        let writes = writes_of(&env.sim_get("log").await);
        assert!(writes.iter().all(|(_, st)| (200..300).contains(st)));
        refs.insert(
            s,
            Reference {
                requests,
                writes: multiset(writes.iter().map(|(k, _)| k)),
                state: copy,
            },
        );
        println!(
            "reference {s}: {requests} ARM requests, {} writes",
            writes.len()
        );
    }

    let mut report = Vec::new();
    let mut total = 0;
    // NETSTEP_CRASH_SWEEP_STEPS=a,b restricts the kill points to those steps (debugging).
    let only = std::env::var("NETSTEP_CRASH_SWEEP_STEPS").unwrap_or_default();
    for s in STEPS {
        if !only.is_empty() && !only.split(',').any(|o| o == s) {
            continue;
        }
        let r = &refs[s];
        let points = kill_points(r.requests);
        let t0 = Instant::now();
        let mut killed = 0;
        let mut leases_broken = 0;
        for &k in &points {
            let ctx = format!("{s} killed after request {k}/{}", r.requests);
            let (st, body) = env
                .sim_post("restore", &json!({"name": format!("before-{s}")}))
                .await;
            assert_eq!(st, 200, "{body}");
            copy_tree(&r.state, &state_dir);
            env.reset_stats().await;
            let out = step(s).apply().run_killed_after(&env, k).await;
            let first_log = env.sim_get("log").await;
            if out.code == -1 {
                killed += 1;
            } else {
                // The kill came after the step had already finished (k = its last requests).
                assert_eq!(
                    out.code, 0,
                    "{ctx}: not killed, exit {}:\n{}",
                    out.code, out.stderr
                );
            }
            check_store(&state_dir, &env.state, &format!("{ctx}, after the kill")).await;
            leases_broken += break_leases(&env.state).await.len();

            // The same run key again.
            env.reset_stats().await;
            let again = step(s).apply().run().await;
            assert_eq!(
                again.code, 0,
                "{ctx}: re-run exit {}:\n{}",
                again.code, again.stderr
            );
            let rerun_log = env.sim_get("log").await;
            check_store(&state_dir, &env.state, &format!("{ctx}, after the re-run")).await;

            // No duplicate write beyond the interrupted one.
            let first = writes_of(&first_log);
            let done = multiset(
                first
                    .iter()
                    .filter(|(_, st)| (200..300).contains(st))
                    .map(|(k, _)| k),
            );
            let interrupted = first.last().map(|(k, _)| k.clone());
            let rerun = multiset(writes_of(&rerun_log).iter().map(|(k, _)| k));
            for (w, n) in &rerun {
                let allowed = r.writes.get(w).copied().unwrap_or(0)
                    + u64::from(interrupted.as_ref() == Some(w));
                let total_w = n + done.get(w).copied().unwrap_or(0);
                assert!(
                    total_w <= allowed,
                    "{ctx}: {w} written {total_w} times (killed run {}, re-run {n}), the reference run wrote it {} times",
                    done.get(w).copied().unwrap_or(0),
                    r.writes.get(w).copied().unwrap_or(0)
                );
            }

            // Converged.
            if s == "verify" {
                assert_eq!(
                    again.outputs.get("drift").map(String::as_str),
                    Some("false"),
                    "{ctx}:\n{}",
                    again.stdout
                );
            } else {
                let plan = step(s).mode("plan").run().await;
                assert_eq!(plan.code, 0, "{ctx}: plan:\n{}", plan.stderr);
                assert!(
                    plan.stdout.contains("No changes"),
                    "{ctx}: plan after the re-run:\n{}\n--- killed run's requests ---\n{}\n--- re-run ---\n{}",
                    plan.stdout,
                    first_log
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|e| format!("{} {} {}", e["method"], e["path"], e["status"]))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    again.stderr
                );
            }
        }
        total += points.len();
        println!(
            "{s}: {} ARM requests on its first run; {} kill points tried ({} killed mid-run, {} leases broken) in {:.1}s",
            r.requests,
            points.len(),
            killed,
            leases_broken,
            t0.elapsed().as_secs_f64()
        );
        report.push(json!({
            "step": s, "requests": r.requests, "kill_points": points,
            "killed_mid_run": killed, "leases_broken": leases_broken,
            "seconds": t0.elapsed().as_secs_f64(),
        }));
    }
    let mode = std::env::var("NETSTEP_CRASH_SWEEP").unwrap_or_else(|_| "sample".into());
    println!(
        "crash sweep ({mode}): {total} kill points over {} steps in {:.1}s",
        STEPS.len(),
        started.elapsed().as_secs_f64()
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| pipeline_tests::repo_root().join("target"));
    std::fs::write(
        target.join(format!("crash-sweep-{mode}.json")),
        serde_json::to_vec_pretty(&json!({
            "mode": mode, "kill_points_total": total, "steps": report,
            "seconds": started.elapsed().as_secs_f64(),
        }))
        .unwrap(),
    )
    .expect("write crash sweep report");
}
