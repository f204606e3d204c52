//! Every request `admin-rules` sends, held against Microsoft's REST specs: the first apply on
//! the GloboJava world, a one-rule change, and a pruned rule (force delete) are recorded with
//! `--record-traffic` and validated by `shared/azure-specs/check-traffic` (oav). 0 failures.
//! The checker loads the specs first (~100 s).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use netstep::resources;
use netstep::state::{Mode, StateStore, Status, StepRecord};
use pipeline_tests::{Env, EnvOptions, TEST_TOKEN, repo_root};
use serde_json::Value;

const SUB: &str = "6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718";

fn nm_id() -> String {
    resources::network_id(
        SUB,
        "rg-globojava-connectivity",
        "networkManagers/avnm-globojava",
    )
}

const GROUPS: [&str; 3] = ["global-hubs", "all-prod-spokes", "all-nonprod-spokes"];

async fn setup(env: &Env) {
    let http = reqwest::Client::new();
    let mut puts = vec![(
        nm_id(),
        resources::network_manager(
            "westeurope",
            "GloboJava",
            &[format!("/subscriptions/{SUB}")],
            &[],
            &["Connectivity".into(), "SecurityAdmin".into()],
        ),
    )];
    for g in GROUPS {
        puts.push((
            format!("{}/networkGroups/{g}", nm_id()),
            resources::network_group(g),
        ));
    }
    for (id, body) in puts {
        let r = http
            .put(format!("{}{id}?api-version=2026-07-01", env.sim.url))
            .bearer_auth(TEST_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{id}: {}", r.status());
    }
}

async fn record_tag_groups(env: &Env, run_key: &str, intent: &Path) {
    let i = netstep::intent::load_file(intent).unwrap();
    let store = StateStore::open(&env.state, None).await.unwrap();
    let ids: BTreeMap<String, String> = GROUPS
        .iter()
        .map(|g| (g.to_string(), format!("{}/networkGroups/{g}", nm_id())))
        .collect();
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    store
        .put_record(&StepRecord {
            step: "tag-groups".into(),
            run_key: run_key.into(),
            intent_digest: i.digest(),
            mode: Mode::Apply,
            started_at: now.clone(),
            ended_at: now,
            status: Status::Converged,
            changes: Vec::new(),
            outputs: [(
                "group-ids".to_string(),
                serde_json::to_string(&ids).unwrap(),
            )]
            .into(),
            counters: Value::Null,
            extra: Value::Null,
        })
        .await
        .unwrap();
}

fn shared_dir() -> PathBuf {
    std::env::var_os("NETSTEP_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared"))
}

#[ignore = "oav over this step's own scenarios (~100 s); CI validates every step's traffic once in tests/pipeline/tests/globojava.rs; run with --ignored"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_apply_traffic_passes_check_traffic() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    setup(&env).await;
    let base = env.globojava_intent();
    let text = std::fs::read_to_string(&base).unwrap();
    let changed = env.dir.path().join("changed.yaml");
    std::fs::write(&changed, text.replacen("priority: 100", "priority: 105", 1)).unwrap();
    let start = text
        .find("        - name: deny-prod-to-nonprod-in")
        .unwrap();
    let end = start + text[start..].find("\n\n").unwrap();
    let dropped = env.dir.path().join("dropped.yaml");
    std::fs::write(&dropped, format!("{}{}", &text[..start], &text[end + 1..])).unwrap();

    let all = env.dir.path().join("traffic");
    std::fs::create_dir_all(&all).unwrap();
    let mut total = 0;
    for (i, (key, intent, extra)) in [
        ("t1", &base, None),
        ("t2", &changed, None),
        ("t3", &dropped, Some("--prune")),
    ]
    .into_iter()
    .enumerate()
    {
        record_tag_groups(&env, key, intent).await;
        let dir = env.dir.path().join(format!("rec-{key}"));
        let mut cmd = env
            .step("admin-rules")
            .intent(intent)
            .run_key(key)
            .apply()
            .arg(format!("--record-traffic={}", dir.display()));
        if let Some(a) = extra {
            cmd = cmd.arg(a);
        }
        let out = cmd.run().await;
        assert_eq!(out.code, 0, "{key}: {}", out.stderr);
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            std::fs::copy(&p, all.join(format!("run{i}-{name}"))).unwrap();
            total += 1;
        }
    }
    // What was exercised: creates, one update, a force delete, commits, lists, polls.
    let names: Vec<String> = std::fs::read_dir(&all)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for needle in ["-put-", "-delete-", "-post-commit"] {
        assert!(
            names.iter().any(|n| n.contains(needle)),
            "{needle}: {names:?}"
        );
    }

    let checker = shared_dir().join("azure-specs/check-traffic");
    assert!(
        checker.exists(),
        "{} (set NETSTEP_SHARED)",
        checker.display()
    );
    let out = tokio::time::timeout(
        Duration::from_secs(900),
        tokio::process::Command::new(&checker).arg(&all).output(),
    )
    .await
    .expect("check-traffic timed out")
    .expect("run check-traffic");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains(" passed, "))
        .unwrap_or("")
        .to_string();
    // The operations covered (oav's "operations seen" block) and the verdict.
    let seen: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("operations seen"))
        .collect();
    println!(
        "admin-rules: {total} exchanges recorded; check-traffic: {summary}\n{}",
        seen.join("\n")
    );
    assert!(
        out.status.success(),
        "check-traffic failed ({summary}):\n{stdout}\n{stderr}"
    );
    assert!(summary.ends_with("0 failed"), "{summary}\n{stdout}");
}
