//! `admin-rules` end to end: the real binary against armsim (GloboJava world) and a state
//! store. The network manager and groups (tag-groups' job) are created through armsim's ARM
//! API by [`setup_manager_and_groups`], and tag-groups' record of the run is written to the
//! state store by [`record_tag_groups`], so that this step runs exactly as in the pipeline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use netstep::resources;
use netstep::state::{Mode, StateStore, Status, StepRecord};
use pipeline_tests::{Env, EnvOptions, StepOutput, TEST_TOKEN};
use serde_json::{Value, json};

const SUB: &str = "6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718";
const RG: &str = "rg-globojava-connectivity";
const GROUPS: [&str; 3] = ["global-hubs", "all-prod-spokes", "all-nonprod-spokes"];
const API: &str = "2026-07-01";

fn nm_id() -> String {
    resources::network_id(SUB, RG, "networkManagers/avnm-globojava")
}

fn sac_id() -> String {
    format!("{}/securityAdminConfigurations/sac-guardrails", nm_id())
}

fn rule_id(name: &str) -> String {
    format!("{}/ruleCollections/rc-env-isolation/rules/{name}", sac_id())
}

async fn arm_put(env: &Env, id: &str, body: &Value) {
    let r = reqwest::Client::new()
        .put(format!("{}{id}?api-version={API}", env.sim.url))
        .bearer_auth(TEST_TOKEN)
        .json(body)
        .send()
        .await
        .expect("PUT to armsim");
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    assert!(status.is_success(), "PUT {id}: {status} {text}");
}

/// What tag-groups does for this step's needs: the network manager and the three groups.
async fn setup_manager_and_groups(env: &Env) {
    arm_put(
        env,
        &nm_id(),
        &resources::network_manager(
            "westeurope",
            "GloboJava global network manager",
            &[format!("/subscriptions/{SUB}")],
            &[],
            &["Connectivity".into(), "SecurityAdmin".into()],
        ),
    )
    .await;
    for g in GROUPS {
        arm_put(
            env,
            &format!("{}/networkGroups/{g}", nm_id()),
            &resources::network_group(g),
        )
        .await;
    }
    env.reset_stats().await;
}

/// tag-groups' record of `run_key` for `intent` (converged apply, group ids as output).
async fn record_tag_groups(env: &Env, run_key: &str, intent: &Path) {
    let i = netstep::intent::load_file(intent).expect("intent");
    let store = StateStore::open(&env.state, None).await.expect("store");
    let ids: BTreeMap<String, String> = GROUPS
        .iter()
        .map(|g| (g.to_string(), format!("{}/networkGroups/{g}", nm_id())))
        .collect();
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut outputs = BTreeMap::new();
    outputs.insert(
        "group-ids".to_string(),
        serde_json::to_string(&ids).unwrap(),
    );
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
            outputs,
            counters: Value::Null,
            extra: Value::Null,
        })
        .await
        .expect("tag-groups record");
}

async fn apply(env: &Env, intent: &Path, run_key: &str, extra: &[&str]) -> StepOutput {
    let mut cmd = env
        .step("admin-rules")
        .intent(intent)
        .run_key(run_key)
        .apply();
    for a in extra {
        cmd = cmd.arg(*a);
    }
    cmd.run().await
}

/// `by_operation` without reads (GET, list POSTs, polls).
async fn writes(env: &Env) -> BTreeMap<String, u64> {
    let stats = env.stats().await;
    stats["by_operation"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.starts_with("GET ") && *k != "POST listDeploymentStatus")
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

fn ops(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn variant(env: &Env, name: &str, edits: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(env.globojava_intent()).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{from} not in the intent");
        text = text.replacen(from, to, 1);
    }
    let p = env.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

async fn security_deployments(env: &Env) -> BTreeMap<String, Vec<String>> {
    let d = env.sim_get("deployments").await;
    d.as_array()
        .unwrap()
        .iter()
        .filter(|x| x["type"] == "SecurityAdmin")
        .map(|x| {
            (
                x["region"].as_str().unwrap().to_string(),
                x["active"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_ascii_lowercase())
                    .collect(),
            )
        })
        .collect()
}

async fn first_apply(env: &Env, run_key: &str) -> StepOutput {
    setup_manager_and_groups(env).await;
    let intent = env.globojava_intent();
    record_tag_groups(env, run_key, &intent).await;
    let out = apply(env, &intent, run_key, &[]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn globojava_apply_then_noop_then_one_priority_change_writes_one_rule_and_commits_once() {
    let env = Env::start(EnvOptions::globojava()).await;
    let out = first_apply(&env, "r1").await;
    println!("first apply:\n{}\nstats: {}", out.stdout, env.stats().await);
    assert_eq!(
        writes(&env).await,
        ops(&[
            ("PUT securityAdminConfigurations", 1),
            ("PUT ruleCollections", 1),
            ("PUT rules", 4),
            ("POST commit", 1),
        ])
    );
    assert!(out.stdout.contains("+ create"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("commit SecurityAdmin eastus: + sac-guardrails"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("guardrail nonprod -> prod: outbound denied by rc-env-isolation/deny-nonprod-to-prod-out; inbound denied by rc-env-isolation/deny-nonprod-to-prod-in"),
        "{}",
        out.stdout
    );
    let committed: Vec<String> = serde_json::from_str(&out.outputs["committed-regions"]).unwrap();
    assert_eq!(committed.len(), 7, "{committed:?}");
    assert_eq!(out.outputs["changes"], "6");
    assert_eq!(out.outputs["record"], "runs/r1/admin-rules.json");
    let deployed = security_deployments(&env).await;
    assert_eq!(deployed.len(), 7, "{deployed:?}");
    for (region, ids) in &deployed {
        assert_eq!(ids, &vec![sac_id().to_ascii_lowercase()], "{region}");
    }
    // The record carries the goal state and the guardrail.
    let store = StateStore::open(&env.state, None).await.unwrap();
    let rec = store
        .get_record("r1", "admin-rules")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.status, Status::Converged);
    assert_eq!(rec.extra["guardrail"]["holds"], true, "{}", rec.extra);
    assert_eq!(
        rec.extra["goal-state"]["southafricanorth"][0],
        sac_id(),
        "{}",
        rec.extra
    );

    // Same run again: zero writes, zero commits, "No changes".
    env.reset_stats().await;
    let again = apply(&env, &env.globojava_intent(), "r1", &[]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(writes(&env).await, BTreeMap::new());
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);
    assert_eq!(again.outputs["changes"], "0");
    assert_eq!(again.outputs["committed-regions"], "[]");
    println!("no-op re-run stats: {}", env.stats().await);
    // Reads: 1 list of configurations, 1 of collections, 1 of rules, 1 deployment status.
    let stats = env.stats().await;
    let by = &stats["by_operation"];
    assert_eq!(by["GET securityAdminConfigurations"], 1, "{stats}");
    assert_eq!(by["GET ruleCollections"], 1, "{stats}");
    assert_eq!(by["GET rules"], 1, "{stats}");
    assert_eq!(by["POST listDeploymentStatus"], 1, "{stats}");

    // One rule's priority changes (a new run): that rule, one commit, nothing else.
    let changed = variant(&env, "prio.yaml", &[("priority: 100", "priority: 105")]);
    record_tag_groups(&env, "r2", &changed).await;
    let plan = env
        .step("admin-rules")
        .intent(&changed)
        .run_key("r2")
        .run()
        .await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout.contains("~ update networkManagers/avnm-globojava/securityAdminConfigurations/sac-guardrails/ruleCollections/rc-env-isolation/rules/deny-prod-to-nonprod-out"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("properties.priority: 100 -> 105"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("~ sac-guardrails"),
        "commit notes: {}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("Plan: 0 to create, 1 to update, 0 to delete."),
        "{}",
        plan.stdout
    );
    println!("plan of the priority change:\n{}", plan.stdout);
    env.reset_stats().await;
    let out = apply(&env, &changed, "r2", &[]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        writes(&env).await,
        ops(&[("PUT rules", 1), ("POST commit", 1)])
    );
    let puts = env.logged_paths("PUT").await;
    assert_eq!(puts.len(), 1);
    assert!(
        puts[0].ends_with("/rules/deny-prod-to-nonprod-out"),
        "{puts:?}"
    );
    let committed: Vec<String> = serde_json::from_str(&out.outputs["committed-regions"]).unwrap();
    assert_eq!(committed.len(), 7);

    // And the changed intent is converged too.
    env.reset_stats().await;
    let again = apply(&env, &changed, "r2", &[]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(writes(&env).await, BTreeMap::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_changed_behind_our_back_is_rewritten_alone_and_recommitted() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    first_apply(&env, "r1").await;
    // Someone changes a rule's priority in the portal.
    let id = rule_id("deny-nonprod-to-prod-in");
    let cur = env
        .sim_get(&format!("resource?id={}", id.replace('/', "%2F")))
        .await;
    let mut body = cur["body"].clone();
    assert_eq!(body["properties"]["priority"], 120, "{cur}");
    body["properties"]["priority"] = json!(4000);
    let (st, ans) = env
        .sim_post("drift", &json!({"op": "put", "resource": body}))
        .await;
    assert_eq!(st, 200, "{ans}");
    env.reset_stats().await;

    let plan = env
        .step("admin-rules")
        .intent(&env.globojava_intent())
        .run_key("r1")
        .run()
        .await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout.contains("properties.priority: 4000 -> 120"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("commit SecurityAdmin westeurope: ~ sac-guardrails"),
        "{}",
        plan.stdout
    );
    assert_eq!(writes(&env).await, BTreeMap::new(), "plan wrote");

    let out = apply(&env, &env.globojava_intent(), "r1", &[]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        writes(&env).await,
        ops(&[("PUT rules", 1), ("POST commit", 1)])
    );
    let log = env.sim_get("log").await;
    assert!(log.as_array().unwrap().iter().any(|e| {
        e["method"] == "PUT"
            && e["path"]
                .as_str()
                .unwrap()
                .ends_with("/rules/deny-nonprod-to-prod-in")
    }));
    env.reset_stats().await;
    let again = apply(&env, &env.globojava_intent(), "r1", &[]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(writes(&env).await, BTreeMap::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_taken_from_each_other_are_written_in_a_safe_order() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    first_apply(&env, "r1").await;
    // deny-prod-to-nonprod-out 100 -> 110, deny-nonprod-to-prod-out 110 -> 111: the second
    // must move first (AVNM refuses duplicate priorities in a collection).
    let changed = variant(
        &env,
        "shift.yaml",
        &[
            ("priority: 110", "priority: 111"),
            ("priority: 100", "priority: 110"),
        ],
    );
    record_tag_groups(&env, "r2", &changed).await;
    env.reset_stats().await;
    let out = apply(&env, &changed, "r2", &[]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("properties.priority: 100 -> 110"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("properties.priority: 110 -> 111"),
        "{}",
        out.stdout
    );
    assert_eq!(
        writes(&env).await,
        ops(&[("PUT rules", 2), ("POST commit", 1)])
    );
    let puts = env.logged_paths("PUT").await;
    assert!(puts[0].ends_with("/deny-nonprod-to-prod-out"), "{puts:?}");
    assert!(puts[1].ends_with("/deny-prod-to-nonprod-out"), "{puts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_rule_is_deleted_only_with_prune_and_the_regions_recommitted() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    first_apply(&env, "r1").await;
    let text = std::fs::read_to_string(env.globojava_intent()).unwrap();
    let start = text
        .find("        - name: deny-prod-to-nonprod-in")
        .unwrap();
    let end = start + text[start..].find("\n\n").unwrap();
    let dropped = env.dir.path().join("dropped.yaml");
    std::fs::write(&dropped, format!("{}{}", &text[..start], &text[end + 1..])).unwrap();
    record_tag_groups(&env, "r2", &dropped).await;
    env.reset_stats().await;

    let refused = apply(&env, &dropped, "r2", &[]).await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("--prune"), "{}", refused.stderr);
    assert!(
        refused.stdout.contains("- delete networkManagers/avnm-globojava/securityAdminConfigurations/sac-guardrails/ruleCollections/rc-env-isolation/rules/deny-prod-to-nonprod-in"),
        "{}",
        refused.stdout
    );
    assert!(
        refused.stdout.contains("guardrail prod -> nonprod: outbound denied by rc-env-isolation/deny-prod-to-nonprod-out; inbound OPEN"),
        "{}",
        refused.stdout
    );
    assert_eq!(writes(&env).await, BTreeMap::new());

    let out = apply(&env, &dropped, "r2", &["--prune"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        writes(&env).await,
        ops(&[("DELETE rules", 1), ("POST commit", 1)])
    );
    let store = StateStore::open(&env.state, None).await.unwrap();
    let rec = store
        .get_record("r2", "admin-rules")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.extra["guardrail"]["holds"], false, "{}", rec.extra);
    env.reset_stats().await;
    let again = apply(&env, &dropped, "r2", &["--prune"]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(writes(&env).await, BTreeMap::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_priorities_exit_2_from_intent_validation_and_nothing_is_sent() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    for (name, edit) in [
        ("range.yaml", ("priority: 100", "priority: 5000")),
        ("dup.yaml", ("priority: 110", "priority: 100")),
    ] {
        let bad = variant(&env, name, &[edit]);
        let out = apply(&env, &bad, "bad", &[]).await;
        assert_eq!(out.code, 2, "{name}: {}", out.stderr);
        assert!(out.stderr.contains(name), "{}", out.stderr);
        assert!(
            out.stderr.contains("rules[0].priority") || out.stderr.contains("rules[1].priority"),
            "{}",
            out.stderr
        );
    }
    assert_eq!(env.stats().await["requests"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_works_before_the_network_manager_exists_and_apply_needs_tag_groups() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    let intent = env.globojava_intent();
    let plan = env
        .step("admin-rules")
        .intent(&intent)
        .run_key("p1")
        .run()
        .await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout
            .contains("Plan: 6 to create, 0 to update, 0 to delete."),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("commit SecurityAdmin southafricanorth: + sac-guardrails"),
        "{}",
        plan.stdout
    );
    assert_eq!(writes(&env).await, BTreeMap::new());
    // Apply without a converged tag-groups record of the run refuses.
    let out = apply(&env, &intent, "p1", &[]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("no tag-groups record"),
        "{}",
        out.stderr
    );
    assert_eq!(writes(&env).await, BTreeMap::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmanaged_rules_are_never_touched() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    first_apply(&env, "r1").await;
    // Someone adds their own rule to our collection (no marker).
    let mut body = env
        .sim_get(&format!(
            "resource?id={}",
            rule_id("deny-prod-to-nonprod-out").replace('/', "%2F")
        ))
        .await["body"]
        .clone();
    let id = rule_id("team-allow-ssh");
    body["id"] = json!(id);
    body["name"] = json!("team-allow-ssh");
    body["properties"]["priority"] = json!(3000);
    body["properties"]["description"] = json!("added by hand");
    let (st, ans) = env
        .sim_post("drift", &json!({"op": "put", "resource": body}))
        .await;
    assert_eq!(st, 200, "{ans}");
    env.reset_stats().await;
    let out = apply(&env, &env.globojava_intent(), "r1", &["--prune"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Not deleted, not rewritten; the deployed content changed, so the regions are
    // recommitted (the commit carries the whole configuration).
    assert_eq!(writes(&env).await, ops(&[("POST commit", 1)]));
    let after = env
        .sim_get(&format!("resource?id={}", id.replace('/', "%2F")))
        .await;
    assert_eq!(after["body"]["properties"]["priority"], 3000, "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_deployment_exits_1_with_its_message_and_the_next_run_redeploys() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    setup_manager_and_groups(&env).await;
    let intent = env.globojava_intent();
    record_tag_groups(&env, "r1", &intent).await;
    let (st, ans) = env
        .sim_post(
            "faults",
            &json!({"match": {"op": "POST commit"}, "kind": "failed-deployment", "count": 1}),
        )
        .await;
    assert!(st < 300, "{ans}");
    let failed = apply(&env, &intent, "r1", &[]).await;
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(
        failed.stderr.contains("SecurityAdmin deployment to")
            && failed.stderr.contains("injected by armsim"),
        "{}",
        failed.stderr
    );
    // The configuration is written; only the deployment failed: the next run writes nothing
    // but commits again, and converges.
    env.reset_stats().await;
    let plan = env
        .step("admin-rules")
        .intent(&intent)
        .run_key("r1")
        .run()
        .await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout
            .contains("commit SecurityAdmin eastus: redeploy after a failed deployment"),
        "{}",
        plan.stdout
    );
    let out = apply(&env, &intent, "r1", &[]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(writes(&env).await, ops(&[("POST commit", 1)]));
    let deployed = security_deployments(&env).await;
    assert_eq!(deployed.len(), 7);
    assert!(
        deployed
            .values()
            .all(|ids| ids == &vec![sac_id().to_ascii_lowercase()])
    );
}
