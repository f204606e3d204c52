//! Shared setup of the mesh-connect end-to-end tests.
//!
//! mesh-connect takes its group ids from the run's `tag-groups` record. [`upstream`] runs the
//! real `tag-groups` step; while that step is still the placeholder (it says "not implemented
//! yet"), it builds the same result directly instead: the network manager and every network
//! group (declared and derived) through armsim's ARM API, and a converged `tag-groups` record
//! with the `group-ids` output in the run's state. Once tag-groups is implemented the fallback
//! is no longer taken (any other failure of tag-groups fails the test).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use netstep::intent::Intent;
use netstep::resources;
use netstep::state::{StateStore, Status, StepRecord};
use netstep::step::Mode;
use pipeline_tests::{Env, StepOutput, TEST_TOKEN};
use serde_json::{Value, json};

pub const API: &str = "2026-07-01";

pub fn load(path: &Path) -> Intent {
    netstep::intent::load_file(path).expect("intent loads")
}

/// Makes this run's `tag-groups` result exist (see the module docs).
pub async fn upstream(env: &Env, intent_path: &Path, run_key: &str) {
    let out = env
        .step("tag-groups")
        .intent(intent_path)
        .run_key(run_key)
        .apply()
        .run()
        .await;
    if out.code == 0 {
        return;
    }
    assert!(
        out.stderr.contains("not implemented yet"),
        "tag-groups failed (exit {}):\n{}",
        out.code,
        out.stderr
    );
    direct_upstream(env, &load(intent_path), run_key).await;
}

async fn arm_put(env: &Env, id: &str, body: &Value) -> Value {
    let r = reqwest::Client::new()
        .put(format!("{}{id}?api-version={API}", env.sim.url))
        .bearer_auth(TEST_TOKEN)
        .json(body)
        .send()
        .await
        .expect("PUT to armsim");
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "PUT {id}: {status} {v}");
    v
}

/// POSTs an ARM action; returns the status code and the JSON answer (or null).
pub async fn arm_post(env: &Env, path: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}?api-version={API}", env.sim.url))
        .bearer_auth(TEST_TOKEN)
        .json(body)
        .send()
        .await
        .expect("POST to armsim");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// What tag-groups produces for mesh-connect, made directly: network manager, groups, record.
pub async fn direct_upstream(env: &Env, intent: &Intent, run_key: &str) {
    let nm = &intent.network_manager;
    let subs: Vec<String> = nm
        .scope
        .subscriptions
        .iter()
        .map(|s| {
            if s.starts_with('/') {
                s.clone()
            } else {
                resources::subscription_id(s)
            }
        })
        .collect();
    let accesses: Vec<String> = nm
        .scope_accesses
        .iter()
        .map(|a| {
            serde_json::to_value(a)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    arm_put(
        env,
        &intent.network_manager_id(),
        &resources::network_manager(
            &nm.location,
            &nm.description,
            &subs,
            &nm.scope.management_groups,
            &accesses,
        ),
    )
    .await;
    let mut ids = serde_json::Map::new();
    for g in intent.groups() {
        arm_put(env, &g.id, &resources::network_group(&g.description)).await;
        ids.insert(g.name.clone(), json!(g.id));
    }
    let store = StateStore::open(&env.state, None)
        .await
        .expect("state store");
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut outputs = BTreeMap::new();
    outputs.insert("group-ids".to_string(), Value::Object(ids).to_string());
    store
        .put_record(&StepRecord {
            step: "tag-groups".into(),
            run_key: run_key.into(),
            intent_digest: intent.digest(),
            mode: Mode::Apply,
            started_at: now.clone(),
            ended_at: now,
            status: Status::Converged,
            changes: Vec::new(),
            outputs,
            counters: Value::Null,
            extra: json!({"made_by": "mesh-connect tests (tag-groups placeholder)"}),
        })
        .await
        .expect("tag-groups record");
}

/// `by_operation[op]` of armsim's stats (0 when absent).
pub fn op_count(stats: &Value, op: &str) -> u64 {
    stats["by_operation"][op].as_u64().unwrap_or(0)
}

/// The operations that change something (every PUT, PATCH, DELETE and POST except the read-only
/// `list*` actions), with their counts.
pub fn mutations(stats: &Value) -> BTreeMap<String, u64> {
    stats["by_operation"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    k.starts_with("PUT ")
                        || k.starts_with("PATCH ")
                        || k.starts_with("DELETE ")
                        || (k.starts_with("POST ") && !k.starts_with("POST list"))
                })
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// Connectivity deployments per region from `/_sim/deployments`:
/// region → (goal configuration names, active names, failed).
pub async fn deployments(env: &Env) -> BTreeMap<String, (Vec<String>, Vec<String>, bool)> {
    let v = env.sim_get("deployments").await;
    let names = |a: &Value| -> Vec<String> {
        let mut n: Vec<String> = a
            .as_array()
            .unwrap()
            .iter()
            .map(|i| resources::name_of(i.as_str().unwrap()).to_lowercase())
            .collect();
        n.sort();
        n
    };
    v.as_array()
        .unwrap()
        .iter()
        .filter(|d| d["type"] == "Connectivity")
        .map(|d| {
            (
                d["region"].as_str().unwrap().to_string(),
                (
                    names(&d["configurationIds"]),
                    names(&d["active"]),
                    d["failed"].as_bool().unwrap(),
                ),
            )
        })
        .collect()
}

/// The recorded exchanges of a `--record-traffic` folder, in order.
pub fn recorded(dir: &Path) -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("traffic dir")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let doc: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), doc)
        })
        .collect()
}

/// The bodies of the commit POSTs of a recording.
pub fn commit_bodies(dir: &Path) -> Vec<Value> {
    recorded(dir)
        .into_iter()
        .filter(|(n, _)| n.ends_with("-post-commit.json"))
        .map(|(_, d)| d["liveRequest"]["body"].clone())
        .collect()
}

/// Writes a variant of the GloboJava intent (one text replacement) into the env's folder.
pub fn variant(env: &Env, name: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(env.globojava_intent()).unwrap();
    assert!(text.contains(from), "{from:?} not in the intent");
    let p = env.dir.path().join(name);
    std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    p
}

/// Fails with the step's output when its exit code is not `code`.
pub fn expect_code(out: &StepOutput, code: i32) {
    assert_eq!(
        out.code, code,
        "exit {} (wanted {code})\nstdout:\n{}\nstderr:\n{}",
        out.code, out.stdout, out.stderr
    );
}

pub const REGIONS: [&str; 7] = [
    "eastus",
    "westus",
    "northeurope",
    "westeurope",
    "southeastasia",
    "australiaeast",
    "southafricanorth",
];
