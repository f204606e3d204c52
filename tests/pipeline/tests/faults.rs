//! Faults in Azure, end to end: the real step binaries, in pipeline order, against armsim
//! injecting one fault kind at a time at a 20% seeded rate (then all of them mixed).
//!
//! Each step runs as Argo runs it: a step that exits 75 (transient) is run again, up to its
//! template's `retryStrategy.limit`; any other non-zero exit fails the pipeline (the later
//! steps are not run). For every cell the test records each step's exit codes, armsim's
//! request/retry/429 counters, whether every retry honoured `Retry-After` (armsim counts
//! "early retries"), and the message of a permanent failure. Then the faults are switched off
//! and a clean run (a new run key, the same intent) must converge with the same inventory as
//! a clean run from the untouched estate: same ids, same count per type — no stray or
//! duplicate resource.
//!
//! The matrix is printed as a table and saved as JSON (`target/fault-matrix.json`).
//!
//! Also: the throttling budget — one run against armsim's default ARM token buckets (ARM's
//! per-principal, per-subscription buckets) without a single throttled failure.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use pipeline_tests::{Env, EnvOptions, STEPS, inventory, repo_root, write_ops};
use serde_json::{Value, json};

/// The `retryStrategy.limit` of a step's WorkflowTemplate (0 when it has none): how many
/// times Argo runs a step again after it exited 75.
fn retry_limit(step: &str) -> u32 {
    let path = repo_root().join(format!("templates/{step}/workflowtemplate.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let Some(at) = text.find("retryStrategy:") else {
        return 0;
    };
    text[at..]
        .lines()
        .skip(1)
        .take(6)
        .find_map(|l| l.trim().strip_prefix("limit:"))
        .map(|v| v.trim().trim_matches('"').parse().expect("numeric limit"))
        .unwrap_or(0)
}

/// The retryStrategy's condition: `lastRetry.exitCode == "75"` (a pod `Error` cannot happen
/// to a local process).
const RETRIED_EXIT: i32 = 75;

/// One step's attempts in a cell.
#[derive(Debug, Clone)]
struct StepRun {
    step: String,
    codes: Vec<i32>,
    /// The last error line of the final attempt when it failed.
    error: Option<String>,
}

impl StepRun {
    fn final_code(&self) -> i32 {
        *self.codes.last().expect("at least one attempt")
    }
    fn show(&self) -> String {
        self.codes
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(">")
    }
}

/// The step's error: the `error=` field of its last ERROR log line (else that whole line).
fn error_line(stderr: &str) -> String {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("ERROR") || l.to_ascii_lowercase().starts_with("error"))
        .unwrap_or_else(|| stderr.lines().last().unwrap_or_default())
        .trim();
    line.split_once(" error=")
        .map_or(line, |(_, e)| e)
        .trim_matches('"')
        .to_string()
}

/// A fresh state folder for a run (faults and clean runs of a cell never share records).
fn fresh_state(env: &mut Env, name: &str) {
    let p = env.dir.path().join(format!("state-{name}"));
    std::fs::create_dir_all(&p).expect("state dir");
    env.state = format!("file://{}", p.display());
}

/// Runs every step in pipeline order with the retryStrategy; stops at the first step that
/// fails for good.
async fn pipeline(env: &Env, key: &str) -> Vec<StepRun> {
    let intent = env.globojava_intent();
    let mut runs = Vec::new();
    for step in STEPS {
        let limit = retry_limit(step);
        let mut run = StepRun {
            step: step.to_string(),
            codes: Vec::new(),
            error: None,
        };
        loop {
            let out = env
                .step(step)
                .intent(&intent)
                .run_key(key)
                .apply()
                .env("NETSTEP_RETRY_INITIAL_MS", "100")
                .run()
                .await;
            run.codes.push(out.code);
            if out.code == 0 && step == "verify" {
                assert_eq!(
                    out.outputs.get("drift").map(String::as_str),
                    Some("false"),
                    "verify after {key}:\n{}",
                    out.stdout
                );
            }
            if out.code == 0 {
                break;
            }
            run.error = Some(error_line(&out.stderr));
            if out.code != RETRIED_EXIT || run.codes.len() > limit as usize {
                break;
            }
        }
        let failed = run.final_code() != 0;
        runs.push(run);
        if failed {
            break;
        }
    }
    runs
}

/// The fault rules of a cell: `(kind, matchers)`; each rule fires at `rate`, seeded.
fn rules(kind: &str, rate: f64, seed: u64) -> Vec<Value> {
    // Where each kind can happen: throttling, 5xx and dropped connections on any request;
    // AnotherOperationInProgress on writes; LRO faults on the writes that start one; a failed
    // deployment on AVNM commits.
    let matchers: Vec<Value> = match kind {
        "429" | "500" | "503" | "drop-connection" => vec![json!({})],
        "409-another-op" => ["PUT", "PATCH", "DELETE", "POST"]
            .iter()
            .map(|m| json!({"method": m}))
            .collect(),
        "slow-lro" | "failed-lro" => ["PUT", "DELETE"]
            .iter()
            .map(|m| json!({"method": m}))
            .collect(),
        "failed-deployment" => vec![json!({"op": "POST commit"})],
        other => panic!("no fault kind {other}"),
    };
    matchers
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            json!({
                "match": m, "kind": kind, "rate": rate, "seed": seed + i as u64,
                "retry_after_s": 1,
            })
        })
        .collect()
}

const KINDS: [&str; 8] = [
    "429",
    "500",
    "503",
    "409-another-op",
    "drop-connection",
    "slow-lro",
    "failed-lro",
    "failed-deployment",
];

/// Kinds the steps must absorb (the pipeline succeeds).
fn transient(kind: &str) -> bool {
    !matches!(kind, "failed-lro" | "failed-deployment" | "mixed")
}

fn by_type(inv: &BTreeMap<String, String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for t in inv.values() {
        *m.entry(t.clone()).or_insert(0) += 1;
    }
    m
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_matrix_over_the_pipeline_then_a_clean_run_converges() {
    let started = Instant::now();
    let mut env = Env::start(EnvOptions::globojava().file_state()).await;
    assert!(
        STEPS.iter().all(|s| retry_limit(s) > 0 || *s == "verify"),
        "every ARM step's template retries exit 75"
    );

    // The clean-only baseline: GloboJava converged from its estate.
    fresh_state(&mut env, "baseline");
    let runs = pipeline(&env, "baseline").await;
    assert!(
        runs.iter().all(|r| r.codes == [0]) && runs.len() == STEPS.len(),
        "baseline: {runs:?}"
    );
    let baseline = inventory(&env).await;
    let baseline_types = by_type(&baseline);

    let mut cells: Vec<(String, Vec<Value>)> = KINDS
        .iter()
        .enumerate()
        .map(|(i, k)| (k.to_string(), rules(k, 0.2, 1000 * (i as u64 + 1))))
        .collect();
    // All kinds at once; each at 1/8 of the 20% so that a request draws about one fault in
    // five over all the rules that can match it.
    cells.push((
        "mixed".into(),
        KINDS
            .iter()
            .enumerate()
            .flat_map(|(i, k)| rules(k, 0.2 / KINDS.len() as f64, 9000 + 100 * i as u64))
            .collect(),
    ));

    let mut matrix = Vec::new();
    let mut table = vec![format!(
        "| {:<17} | {:<36} | {:>5} | {:>6} | {:>7} | {:>4} | {:>6} | {:>5} | {:<7} | {:<9} | {}",
        "fault (20%)",
        "exit per step (attempts a>b)",
        "reqs",
        "faults",
        "retries",
        "429s",
        "RA",
        "early",
        "clean",
        "inventory",
        "permanent failure"
    )];
    for (cell, specs) in &cells {
        let t0 = Instant::now();
        let (s, _) = env.sim_post("reset?world=1", &Value::Null).await;
        assert_eq!(s, 200);
        let (s, body) = env.sim_post("faults", &Value::Array(specs.clone())).await;
        assert_eq!(s, 200, "{body}");
        fresh_state(&mut env, cell);
        let key = format!("faults-{cell}");
        let runs = pipeline(&env, &key).await;
        let stats = env.stats().await;
        let fired = env.sim_get("faults").await;
        // Faults off (DELETE /_sim/faults), then a clean run converges.
        let client = reqwest::Client::new();
        let del = client
            .delete(format!("{}/_sim/faults", env.sim.url))
            .send()
            .await
            .expect("DELETE faults");
        assert!(del.status().is_success());
        env.reset_stats().await;
        let clean = pipeline(&env, &format!("clean-{cell}")).await;
        let clean_ok = clean.len() == STEPS.len() && clean.iter().all(|r| r.codes == [0]);
        let clean_writes = write_ops(&env.stats().await);
        let inv = inventory(&env).await;
        let same_ids = inv.keys().eq(baseline.keys());
        let same_types = by_type(&inv) == baseline_types;
        let failure = runs.iter().find(|r| r.final_code() != 0);
        let outcome: Vec<String> = STEPS
            .iter()
            .map(|s| {
                runs.iter()
                    .find(|r| r.step == *s)
                    .map_or("-".into(), StepRun::show)
            })
            .collect();
        let n = |k: &str| stats[k].as_u64().unwrap_or(0);
        let faults_fired: u64 = fired
            .as_array()
            .map(|a| a.iter().map(|f| f["fired"].as_u64().unwrap_or(0)).sum())
            .unwrap_or(0);
        table.push(format!(
            "| {:<17} | {:<36} | {:>5} | {:>6} | {:>7} | {:>4} | {:>6} | {:>5} | {:<7} | {:<9} | {}",
            cell,
            outcome.join(" "),
            n("requests"),
            faults_fired,
            n("retries"),
            n("throttled"),
            n("retry_after_given"),
            n("early_retries"),
            if clean_ok { "0" } else { "FAILED" },
            if same_ids && same_types { "same" } else { "DIFFERS" },
            failure.and_then(|f| f.error.clone()).unwrap_or_default()
        ));
        matrix.push(json!({
            "fault": cell,
            "rate": if cell == "mixed" { 0.2 / KINDS.len() as f64 } else { 0.2 },
            "steps": runs.iter().map(|r| json!({"step": r.step, "exit_codes": r.codes, "error": r.error})).collect::<Vec<_>>(),
            "requests": n("requests"),
            "faults_injected": n("faults_injected"),
            "faults_fired": faults_fired,
            "retries": n("retries"),
            "throttled_429": n("throttled"),
            "retry_after_given": n("retry_after_given"),
            "early_retries": n("early_retries"),
            "pipeline_succeeded": runs.len() == STEPS.len() && runs.iter().all(|r| r.final_code() == 0),
            "clean_run_converged": clean_ok,
            "clean_run_writes": clean_writes.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "inventory_same_ids": same_ids,
            "inventory_same_count_per_type": same_types,
            "seconds": t0.elapsed().as_secs_f64(),
        }));
        println!("{}", table.last().unwrap());

        // Expected semantics.
        assert!(
            clean_ok,
            "{cell}: the clean run after the faults converges: {clean:?}"
        );
        assert!(
            same_ids && same_types,
            "{cell}: no stray or duplicate resource: extra {:?}, missing {:?}",
            inv.keys()
                .filter(|k| !baseline.contains_key(*k))
                .collect::<Vec<_>>(),
            baseline
                .keys()
                .filter(|k| !inv.contains_key(*k))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            n("early_retries"),
            0,
            "{cell}: every retry honoured Retry-After: {stats}"
        );
        assert!(faults_fired > 0, "{cell}: faults were injected: {fired}");
        if transient(cell) {
            assert!(
                runs.len() == STEPS.len() && runs.iter().all(|r| r.final_code() == 0),
                "{cell}: transient faults are absorbed: {runs:?}"
            );
        }
        if matches!(cell.as_str(), "failed-lro" | "failed-deployment") {
            // Seeded: the same requests draw the fault on every run, and they hit.
            let failed = runs.last().expect("a step ran");
            assert_eq!(
                failed.final_code(),
                1,
                "{cell}: a Failed operation fails its step for good: {runs:?}"
            );
            assert_eq!(
                failed.codes.len(),
                1,
                "{cell}: exit 1 is not retried: {runs:?}"
            );
        }
        for r in &runs {
            let code = r.final_code();
            assert!(
                code == 0 || code == 1 || code == RETRIED_EXIT,
                "{cell}: {} exit {code} (only 0, 1, 75 on ARM faults)",
                r.step
            );
            if code != 0 {
                let msg = r.error.clone().unwrap_or_default();
                // The resource id, the operation and the terminal status.
                assert!(
                    msg.contains("/subscriptions/")
                        && ["PUT ", "POST ", "DELETE ", "PATCH "]
                            .iter()
                            .any(|m| msg.contains(m))
                        && msg.contains("Failed"),
                    "{cell}: {}'s failure names the resource, operation and status: {msg}",
                    r.step
                );
            }
        }
    }
    let text = table.join("\n");
    println!(
        "\nfault matrix (GloboJava, {} steps in pipeline order):\n{text}",
        STEPS.len()
    );
    let out = target_dir().join("fault-matrix.json");
    std::fs::write(
        &out,
        serde_json::to_vec_pretty(&json!({
            "steps": STEPS, "cells": matrix,
            "baseline_resources": baseline.len(), "baseline_by_type": baseline_types,
        }))
        .unwrap(),
    )
    .expect("write fault-matrix.json");
    println!(
        "saved {}; wall time {:.1}s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_budget_default_arm_buckets_no_throttled_failure() {
    let mut env = Env::start(EnvOptions::globojava().file_state()).await;
    let limits = armsim::Limits::default();
    // ARM's documented regional buckets (per principal and subscription): reads 250 (+25/s),
    // writes 200 (+10/s), deletes 200 (+10/s).
    assert_eq!(limits.reads, (250, 25.0));
    assert_eq!(limits.writes, (200, 10.0));
    assert_eq!(limits.deletes, (200, 10.0));
    fresh_state(&mut env, "budget");
    let t0 = Instant::now();
    let runs = pipeline(&env, "budget").await;
    let stats = env.stats().await;
    println!(
        "throttling budget: {} requests (reads {}, writes {}, deletes {}, polls {}), 429s {}, retries {}, in {:.1}s",
        stats["requests"],
        stats["reads"],
        stats["writes"],
        stats["deletes"],
        stats["polls"],
        stats["throttled"],
        stats["retries"],
        t0.elapsed().as_secs_f64()
    );
    assert!(
        runs.len() == STEPS.len() && runs.iter().all(|r| r.codes == [0]),
        "every step succeeds at its first attempt: {runs:?}"
    );
    assert_eq!(stats["throttled"], 0, "{stats}");
}
