//! Resubmission semantics on the real pipeline: a re-run with the same run key works on the
//! run's intent snapshot even after the intent file changed (the changed admin rule is NOT
//! applied); a new run key takes the new intent (the rule is applied).

use pipeline_tests::{Env, EnvOptions, STEPS, write_ops};
use serde_json::Value;

const SUB: &str = "6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718";

async fn run_all(env: &Env, intent: &std::path::Path, key: &str) {
    for s in STEPS {
        let out = env.step(s).intent(intent).run_key(key).apply().run().await;
        assert_eq!(out.code, 0, "{s} ({key}):\n{}", out.stderr);
    }
}

async fn rule_priority(env: &Env) -> Value {
    let id = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/networkManagers/avnm-globojava/securityAdminConfigurations/sac-guardrails/ruleCollections/rc-env-isolation/rules/deny-prod-to-nonprod-out"
    );
    let r = env.sim_get(&format!("resource?id={id}")).await;
    r["body"]["properties"]["priority"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_run_key_keeps_its_snapshot_a_new_run_key_takes_the_new_intent() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    let intent = env.globojava_intent();
    run_all(&env, &intent, "r1").await;
    assert_eq!(rule_priority(&env).await, 100);

    // The intent changes in git: one admin rule's priority.
    let changed = env.dir.path().join("intent-changed.yaml");
    let text = std::fs::read_to_string(&intent).unwrap();
    let at = text
        .find("- name: deny-prod-to-nonprod-out")
        .expect("rule in the example");
    let rel = text[at..].find("priority: 100").expect("its priority");
    let mut edited = text.clone();
    edited.replace_range(at + rel..at + rel + "priority: 100".len(), "priority: 105");
    std::fs::write(&changed, edited).unwrap();

    // Resubmission of r1 with the changed file: the run's snapshot wins, nothing is written.
    env.reset_stats().await;
    for s in STEPS {
        let out = env
            .step(s)
            .intent(&changed)
            .run_key("r1")
            .apply()
            .run()
            .await;
        assert_eq!(out.code, 0, "{s}:\n{}", out.stderr);
        assert!(
            out.stderr.contains("using the run's snapshot"),
            "{s} says it keeps the run's snapshot:\n{}",
            out.stderr
        );
    }
    assert_eq!(write_ops(&env.stats().await), vec![]);
    assert_eq!(
        rule_priority(&env).await,
        100,
        "the changed rule is not applied under the old run key"
    );

    // A new run key takes the new intent.
    env.reset_stats().await;
    run_all(&env, &changed, "r2").await;
    assert_eq!(
        rule_priority(&env).await,
        105,
        "applied under the new run key"
    );
    assert_eq!(
        write_ops(&env.stats().await),
        vec![("POST commit".to_string(), 1), ("PUT rules".to_string(), 1)]
    );
}
