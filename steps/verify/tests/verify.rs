//! verify end to end: the real binary against a converged GloboJava estate in armsim (built
//! by `common::converge` through the ARM API), then drift behind its back.

mod common;

use pipeline_tests::{Env, EnvOptions, StepOutput};
use serde_json::{Value, json};

const CHECKS: [&str; 16] = [
    "network-manager",
    "network-groups",
    "vnets",
    "group-membership",
    "deployment-status-connectivity",
    "active-connectivity",
    "spoke-to-hub",
    "hub-mesh",
    "deployment-status-security-admin",
    "active-security-admin",
    "prod-nonprod-isolation",
    "firewall-policies",
    "firewall-rule-collection-groups",
    "firewall-associations",
    "dns-links",
    "dns-records",
];

async fn converged_env() -> Env {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    let intent = common::intent(&env);
    common::converge(&env, &intent).await;
    env
}

async fn verify(env: &Env, run_key: &str, extra: &[&str]) -> StepOutput {
    let mut cmd = env
        .step("verify")
        .intent(&env.globojava_intent())
        .run_key(run_key);
    for a in extra {
        cmd = cmd.arg(*a);
    }
    cmd.run().await
}

fn report(out: &StepOutput) -> Value {
    let path = &out.outputs["report"];
    serde_json::from_str(&std::fs::read_to_string(path).expect("report file")).expect("report json")
}

fn differences(report: &Value) -> Vec<Value> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["differences"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn has_difference(
    report: &Value,
    resource_end: &str,
    field: &str,
    expected: Value,
    actual: Value,
) -> bool {
    differences(report).iter().any(|d| {
        d["resource"].as_str().unwrap_or("").ends_with(resource_end)
            && d["field"] == field
            && d["expected"] == expected
            && d["actual"] == actual
    })
}

async fn state_record(env: &Env, run_key: &str, step: &str) -> Option<Value> {
    let store = netstep::state::StateStore::open(&env.state, None)
        .await
        .expect("store");
    let rec = store
        .get_record(run_key, step)
        .await
        .expect("record read")?;
    Some(serde_json::to_value(rec).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converged_estate_passes_every_check_with_zero_writes_and_only_filters() {
    let env = converged_env().await;
    env.reset_stats().await;
    let out = verify(&env, "sha1-infra", &[]).await;
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    for name in CHECKS {
        assert!(
            out.stdout.contains(&format!("✓ {name} ")),
            "{name} not passing:\n{}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains('✗'), "{}", out.stdout);
    assert_eq!(out.outputs["drift"], "false");
    assert_eq!(out.outputs["changes"], "0");
    let r = report(&out);
    assert_eq!(r["drift"], false);
    assert_eq!(
        r["membership"]["vnet-prod-eastus"],
        json!(["all-prod-spokes", "all-prod-spokes-eastus"])
    );
    assert_eq!(r["membership"]["vnet-hub-westus"], json!(["global-hubs"]));
    let pairs = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "prod-nonprod-isolation")
        .unwrap();
    assert_eq!(pairs["checked"], 7 * 7 * 2);
    // Read-only: no PUT/PATCH/DELETE/commit; only GETs and POST list* actions.
    let stats = env.stats().await;
    assert!(common::writes(&stats).is_empty(), "{stats}");
    for k in stats["by_operation"].as_object().unwrap().keys() {
        assert!(
            k.starts_with("GET ") || k.starts_with("POST list"),
            "{k}: {stats}"
        );
    }
    // One effective read of each kind per VNet (21) when membership converged at once.
    assert_eq!(
        stats["by_operation"]["POST listNetworkManagerEffectiveConnectivityConfigurations"], 21,
        "{stats}"
    );
    // The record is written with the report.
    let rec = state_record(&env, "sha1-infra", "verify")
        .await
        .expect("verify record");
    let rec_text = rec.to_string();
    assert!(rec_text.contains("prod-nonprod-isolation"), "{rec_text}");

    // --only=firewall checks only firewall things, and reads nothing of AVNM or DNS.
    env.reset_stats().await;
    let out = verify(&env, "sha1-fw", &["--only=firewall"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("✓ firewall-policies"), "{}", out.stdout);
    assert!(
        out.stdout.contains("✓ firewall-associations"),
        "{}",
        out.stdout
    );
    for other in [
        "group-membership",
        "dns-links",
        "spoke-to-hub",
        "active-security-admin",
    ] {
        assert!(!out.stdout.contains(other), "{other} ran:\n{}", out.stdout);
    }
    let stats = env.stats().await;
    for k in stats["by_operation"].as_object().unwrap().keys() {
        assert!(
            k == "GET firewallPolicies"
                || k == "GET ruleCollectionGroups"
                || k == "GET azureFirewalls",
            "{k}: {stats}"
        );
    }

    // --outcome records the workflow outcome and makes no ARM call.
    env.reset_stats().await;
    let out = env
        .step("verify")
        .run_key("sha1-infra")
        .arg("--outcome=Failed")
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.outputs["record"], "runs/sha1-infra/outcome.json");
    assert_eq!(out.outputs["changes"], "1");
    assert_eq!(env.stats().await["requests"], 0);
    let rec = state_record(&env, "sha1-infra", "outcome")
        .await
        .expect("outcome record");
    assert!(rec.to_string().contains("Failed"), "{rec}");
    let again = env
        .step("verify")
        .run_key("sha1-infra")
        .arg("--outcome=Failed")
        .run()
        .await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.outputs["changes"], "0");
}
