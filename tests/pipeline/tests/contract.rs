//! The step contract, end to end on the real binaries: snapshots per run key in a real
//! Azurite, invalid input exits 2 and writes nothing, usage errors exit 2.

use pipeline_tests::{Env, EnvOptions, STEPS, repo_root};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_is_taken_once_per_run_key_and_reused_by_resubmissions() {
    let env = Env::start(EnvOptions::globojava()).await;
    let intent = env.globojava_intent();
    let first = env
        .step("tag-groups")
        .arg("--snapshot-only")
        .intent(&intent)
        .run_key("sha1-infra")
        .run()
        .await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.outputs["changes"], "1");
    assert_eq!(first.outputs["record"], "runs/sha1-infra/intent.json");
    let digest = first.outputs["intent-digest"].clone();
    assert!(digest.starts_with("sha256:"), "{digest}");

    // The intent file changes, the run key does not (a resubmission): the run's snapshot wins.
    let changed = env.dir.path().join("intent.yaml");
    let text = std::fs::read_to_string(&intent).unwrap();
    std::fs::write(&changed, text.replacen("ttl: 300", "ttl: 600", 1)).unwrap();
    let again = env
        .step("tag-groups")
        .arg("--snapshot-only")
        .intent(&changed)
        .run_key("sha1-infra")
        .run()
        .await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.outputs["changes"], "0");
    assert_eq!(again.outputs["intent-digest"], digest);
    assert!(
        again.stderr.contains("using the run's snapshot"),
        "{}",
        again.stderr
    );

    // A new run key takes the new intent.
    let next = env
        .step("tag-groups")
        .arg("--snapshot-only")
        .intent(&changed)
        .run_key("sha2-infra")
        .run()
        .await;
    assert_eq!(next.code, 0, "{}", next.stderr);
    assert_ne!(next.outputs["intent-digest"], digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_rejects_a_bad_intent_with_exit_2_and_writes_nothing() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    let bad = repo_root().join("tests/fixtures/intents/bad/overlaps.yaml");
    for step in STEPS {
        let out = env
            .step(step)
            .intent(&bad)
            .run_key("bad-1")
            .apply()
            .run()
            .await;
        assert_eq!(out.code, 2, "{step}: {}", out.stderr);
        assert!(
            out.stderr.contains("overlaps.yaml:"),
            "{step}: {}",
            out.stderr
        );
    }
    let stats = env.stats().await;
    assert_eq!(stats["requests"], 0, "{stats}");
    let state = env.state.trim_start_matches("file://");
    let entries: Vec<_> = std::fs::read_dir(state).unwrap().collect();
    assert!(entries.is_empty(), "state written: {entries:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_and_help_exits_0() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    for step in STEPS {
        let out = env.step(step).arg("--no-such-flag").run().await;
        assert_eq!(out.code, 2, "{step}: {}", out.stderr);
        let out = env.step(step).arg("--mode=sideways").run().await;
        assert_eq!(out.code, 2, "{step}: {}", out.stderr);
        let out = env.step(step).arg("--help").run().await;
        assert_eq!(out.code, 0, "{step}: {}", out.stderr);
        assert!(out.stdout.contains("--run-key"), "{step}: {}", out.stdout);
    }
}
