//! mesh-connect end to end: the real binary against armsim, from the fresh GloboJava world.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use pipeline_tests::{Env, EnvOptions};
use serde_json::{Value, json};

fn regions_output(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("deployed-regions {s:?}: {e}"))
}

fn names(ids: &Value) -> BTreeSet<String> {
    ids.as_array()
        .unwrap()
        .iter()
        .map(|i| netstep::resources::name_of(i.as_str().unwrap()).to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_from_the_fresh_world_shows_configs_and_goal_states_and_writes_nothing() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    // No tag-groups yet: the network manager and the groups do not exist.
    let out = env
        .step("mesh-connect")
        .intent(&env.globojava_intent())
        .run_key("plan-1")
        .run()
        .await;
    expect_code(&out, 0);
    assert!(
        out.stdout
            .contains("mesh-connect: run plan-1 intent sha256:"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "+ create networkManagers/avnm-globojava/connectivityConfigurations/cc-hub-mesh"
        ),
        "{}",
        out.stdout
    );
    for r in REGIONS {
        assert!(
            out.stdout.contains(&format!(
                "commit Connectivity {r}: + cc-hub-mesh, + cc-hubspoke-{r}"
            )),
            "{r}: {}",
            out.stdout
        );
    }
    assert!(
        out.stdout
            .contains("Plan: 8 to create, 0 to update, 0 to delete."),
        "{}",
        out.stdout
    );
    assert_eq!(out.outputs["changes"], "8");
    assert_eq!(out.outputs["deployed-regions"], "[]");
    let stats = env.stats().await;
    assert!(mutations(&stats).is_empty(), "{stats}");
    assert_eq!(stats["writes"], 0, "{stats}");

    // Apply takes its inputs from the run's tag-groups record: without one it refuses.
    let out = env
        .step("mesh-connect")
        .intent(&env.globojava_intent())
        .run_key("plan-1")
        .apply()
        .run()
        .await;
    expect_code(&out, 1);
    assert!(
        out.stderr.contains("no tag-groups record") && out.stderr.contains("run plan-1"),
        "{}",
        out.stderr
    );
    assert!(mutations(&env.stats().await).is_empty());
}

/// The main story: first apply from the fresh world, the no-op re-run, one region's change,
/// and Microsoft's checker over the first apply's traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_converges_reruns_with_zero_writes_and_commits_only_the_changed_region() {
    // The Azurite-backed run of this crate's tests.
    let env = Env::start(EnvOptions::globojava()).await;
    let intent = env.globojava_intent();
    upstream(&env, &intent, "sha1-infra").await;
    env.reset_stats().await;

    // Plan with the groups in place: the goal-state notes, no writes.
    let plan = env
        .step("mesh-connect")
        .intent(&intent)
        .run_key("sha1-infra")
        .run()
        .await;
    expect_code(&plan, 0);
    assert!(
        plan.stdout
            .contains("commit Connectivity eastus: + cc-hub-mesh, + cc-hubspoke-eastus"),
        "{}",
        plan.stdout
    );
    let stats = env.stats().await;
    assert!(mutations(&stats).is_empty(), "plan wrote: {stats}");
    env.reset_stats().await;

    // First apply.
    let traffic = env.dir.path().join("traffic-first-apply");
    let out = env
        .step("mesh-connect")
        .intent(&intent)
        .run_key("sha1-infra")
        .apply()
        .arg(format!("--record-traffic={}", traffic.display()))
        .run()
        .await;
    expect_code(&out, 0);
    let first_apply = traffic.clone();
    let checker = tokio::spawn(async move { pipeline_tests::check_traffic(&first_apply).await });
    let stats = env.stats().await;
    println!("mesh-connect first apply: plan:\n{}", out.stdout);
    println!("mesh-connect first apply: /_sim/stats {stats}");
    let muts = mutations(&stats);
    assert_eq!(
        op_count(&stats, "PUT connectivityConfigurations"),
        8,
        "{stats}"
    );
    assert_eq!(op_count(&stats, "POST commit"), 7, "{stats}");
    assert_eq!(muts.values().sum::<u64>(), 15, "{muts:?}");
    assert_eq!(
        op_count(&stats, "GET connectivityConfigurations"),
        1,
        "one list: {stats}"
    );
    let mut deployed = regions_output(&out.outputs["deployed-regions"]);
    deployed.sort();
    let mut all: Vec<String> = REGIONS.iter().map(|s| s.to_string()).collect();
    all.sort();
    assert_eq!(deployed, all);
    let deps = deployments(&env).await;
    assert_eq!(deps.len(), 7, "{deps:?}");
    for r in REGIONS {
        let want = vec!["cc-hub-mesh".to_string(), format!("cc-hubspoke-{r}")];
        let (goal, active, failed) = &deps[r];
        assert_eq!(goal, &want, "{r}");
        assert_eq!(active, &want, "{r}: deployed when the step returned");
        assert!(!failed);
    }
    // Each commit is one region's whole goal state.
    for body in commit_bodies(&traffic) {
        assert_eq!(body["commitType"], "Connectivity");
        let regions = body["targetLocations"].as_array().unwrap();
        assert_eq!(regions.len(), 1, "{body}");
        let r = regions[0].as_str().unwrap();
        assert_eq!(
            names(&body["configurationIds"]),
            ["cc-hub-mesh".to_string(), format!("cc-hubspoke-{r}")].into()
        );
    }

    // Same run key again: zero writes, zero commits.
    env.reset_stats().await;
    let again = env
        .step("mesh-connect")
        .intent(&intent)
        .run_key("sha1-infra")
        .apply()
        .run()
        .await;
    expect_code(&again, 0);
    let stats = env.stats().await;
    println!("mesh-connect no-op re-run: /_sim/stats {stats}");
    assert!(mutations(&stats).is_empty(), "re-run wrote: {stats}");
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);
    assert_eq!(again.outputs["changes"], "0");
    assert_eq!(again.outputs["deployed-regions"], "[]");
    assert_eq!(again.outputs["record"], "runs/sha1-infra/mesh-connect.json");

    // A new revision moves westus's hub to a new VNet: exactly that configuration is written
    // and exactly westus is committed.
    let (code, v) = env
        .sim_post(
            "drift",
            &json!({"op": "add_vnet", "resource": {
                "id": "/subscriptions/6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/virtualNetworks/vnet-hub2-westus",
                "location": "westus",
                "tags": {"network_role": "hub"},
                "properties": {"addressSpace": {"addressPrefixes": ["10.2.0.0/22"]},
                               "subnets": [{"name": "AzureFirewallSubnet", "properties": {"addressPrefix": "10.2.0.0/26"}}]}}}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let v2 = variant(
        &env,
        "intent-v2.yaml",
        "name: vnet-hub-westus",
        "name: vnet-hub2-westus",
    );
    upstream(&env, &v2, "sha2-infra").await;
    env.reset_stats().await;
    let traffic2 = env.dir.path().join("traffic-v2");
    let out = env
        .step("mesh-connect")
        .intent(&v2)
        .run_key("sha2-infra")
        .apply()
        .arg(format!("--record-traffic={}", traffic2.display()))
        .run()
        .await;
    expect_code(&out, 0);
    assert!(
        out.stdout.contains(
            "~ update networkManagers/avnm-globojava/connectivityConfigurations/cc-hubspoke-westus"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("commit Connectivity westus: ~ cc-hubspoke-westus"),
        "{}",
        out.stdout
    );
    let stats = env.stats().await;
    let muts = mutations(&stats);
    assert_eq!(
        muts,
        [
            ("PUT connectivityConfigurations".to_string(), 1),
            ("POST commit".to_string(), 1)
        ]
        .into(),
        "{stats}"
    );
    let puts: Vec<String> = recorded(&traffic2)
        .into_iter()
        .filter(|(_, d)| d["liveRequest"]["method"] == "PUT")
        .map(|(_, d)| d["liveRequest"]["url"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(puts.len(), 1);
    assert!(
        puts[0].contains("/connectivityConfigurations/cc-hubspoke-westus?"),
        "{puts:?}"
    );
    let commits = commit_bodies(&traffic2);
    assert_eq!(commits.len(), 1);
    assert_eq!(commits[0]["targetLocations"], json!(["westus"]));
    assert_eq!(
        names(&commits[0]["configurationIds"]),
        ["cc-hub-mesh".to_string(), "cc-hubspoke-westus".to_string()].into()
    );
    assert_eq!(
        regions_output(&out.outputs["deployed-regions"]),
        vec!["westus"]
    );

    // The first apply's requests and responses match Microsoft's specs.
    // (check_traffic panics unless Microsoft's checker reports 0 failures.)
    let check = checker.await.expect("check-traffic passes");
    println!(
        "mesh-connect first apply: check-traffic: {} ({} exchanges); operations: {}",
        check.summary,
        check.recorded,
        check.operations.join(", ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_deployment_exits_1_with_its_error_message_and_the_next_run_retries_it() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    let intent = env.globojava_intent();
    upstream(&env, &intent, "fail-1").await;
    let (code, v) = env
        .sim_post(
            "faults",
            &json!({"match": {"op": "POST commit"}, "kind": "failed-deployment", "count": 1}),
        )
        .await;
    assert!(code < 300, "{v}");
    let out = env
        .step("mesh-connect")
        .intent(&intent)
        .run_key("fail-1")
        .apply()
        .run()
        .await;
    expect_code(&out, 1);
    assert!(
        out.stderr.contains("Connectivity deployment to")
            && out
                .stderr
                .contains("Deployment failed: an internal error occurred"),
        "{}",
        out.stderr
    );
    assert!(
        !out.outputs.contains_key("record"),
        "no record for a failed run"
    );
    let failed: Vec<String> = deployments(&env)
        .await
        .into_iter()
        .filter(|(_, d)| d.2)
        .map(|(r, _)| r)
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");

    // The fault is spent: the re-run commits exactly the failed region again.
    env.reset_stats().await;
    let out = env
        .step("mesh-connect")
        .intent(&intent)
        .run_key("fail-1")
        .apply()
        .run()
        .await;
    expect_code(&out, 0);
    assert!(
        out.stdout.contains(&format!(
            "commit Connectivity {}: redeploy after a failed deployment",
            failed[0]
        )),
        "{}",
        out.stdout
    );
    let stats = env.stats().await;
    assert_eq!(
        mutations(&stats),
        [("POST commit".to_string(), 1)].into(),
        "{stats}"
    );
    assert_eq!(regions_output(&out.outputs["deployed-regions"]), failed);
    assert!(deployments(&env).await.values().all(|d| !d.2));

    // The record: inputs from tag-groups, the goal state and commit time of every region.
    let store = netstep::state::StateStore::open(&env.state, None)
        .await
        .unwrap();
    let rec = store
        .get_record("fail-1", "mesh-connect")
        .await
        .unwrap()
        .expect("record");
    assert_eq!(rec.extra["group_ids_from"], "runs/fail-1/tag-groups.json");
    let goal = rec.extra["goal_state"].as_object().unwrap();
    assert_eq!(goal.len(), 7);
    assert_eq!(
        names(&goal["westus"]),
        ["cc-hub-mesh".to_string(), "cc-hubspoke-westus".to_string()].into()
    );
    let times = rec.extra["commit_times"].as_object().unwrap();
    assert_eq!(times.len(), 7, "{times:?}");
    assert!(
        times
            .values()
            .all(|t| t.as_str().is_some_and(|t| t.ends_with('Z')))
    );
    assert_eq!(
        rec.outputs["deployed-regions"],
        out.outputs["deployed-regions"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_empty_status_list_right_after_a_commit_is_tolerated() {
    let mut opts = EnvOptions::globojava().file_state();
    // listDeploymentStatus leaves a region out for 600 ms after its commit.
    opts.sim.status_empty_window = Duration::from_millis(600);
    opts.sim.deploy_delay = Duration::from_millis(900);
    let env = Env::start(opts).await;
    let intent = env.globojava_intent();
    upstream(&env, &intent, "quirk-1").await;
    let traffic = env.dir.path().join("traffic-quirk");
    let out = env
        .step("mesh-connect")
        .intent(&intent)
        .run_key("quirk-1")
        .apply()
        .arg(format!("--record-traffic={}", traffic.display()))
        .run()
        .await;
    expect_code(&out, 0);
    // The poller did see the empty list after the commits, and carried on.
    let ex = recorded(&traffic);
    let first_commit = ex
        .iter()
        .position(|(n, _)| n.ends_with("-post-commit.json"))
        .expect("a commit");
    let empty_after = ex[first_commit..]
        .iter()
        .filter(|(n, d)| {
            n.ends_with("-post-listDeploymentStatus.json")
                && d["liveResponse"]["body"]["value"]
                    .as_array()
                    .is_some_and(|v| v.is_empty())
        })
        .count();
    assert!(
        empty_after >= 1,
        "no empty status list was seen after the commits"
    );
    assert!(deployments(&env).await.values().all(|d| d.1.len() == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_configuration_needs_prune_which_undeploys_it_before_deleting_it() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    let intent = env.globojava_intent();
    upstream(&env, &intent, "p-1").await;
    expect_code(
        &env.step("mesh-connect")
            .intent(&intent)
            .run_key("p-1")
            .apply()
            .run()
            .await,
        0,
    );

    // The new revision keeps hub-and-spoke out of southafricanorth.
    let v2 = variant(
        &env,
        "intent-no-zaf.yaml",
        "    use_hub_gateway: false\n",
        "    use_hub_gateway: false\n    regions: [eastus, westus, northeurope, westeurope, southeastasia, australiaeast]\n",
    );
    upstream(&env, &v2, "p-2").await;
    env.reset_stats().await;
    let plan = env
        .step("mesh-connect")
        .intent(&v2)
        .run_key("p-2")
        .run()
        .await;
    expect_code(&plan, 0);
    assert!(
        plan.stdout.contains("- delete networkManagers/avnm-globojava/connectivityConfigurations/cc-hubspoke-southafricanorth"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("cc-hubspoke-southafricanorth was dropped from the intent (deployed in [southafricanorth]): apply refuses without --prune; with --prune: first commit Connectivity southafricanorth: - cc-hubspoke-southafricanorth, then delete"),
        "{}",
        plan.stdout
    );

    // Apply without --prune refuses, changes nothing, undeploys nothing.
    let out = env
        .step("mesh-connect")
        .intent(&v2)
        .run_key("p-2")
        .apply()
        .run()
        .await;
    expect_code(&out, 1);
    assert!(
        out.stderr.contains("--prune") && out.stderr.contains("cc-hubspoke-southafricanorth"),
        "{}",
        out.stderr
    );
    let stats = env.stats().await;
    assert!(mutations(&stats).is_empty(), "{stats}");
    assert_eq!(deployments(&env).await["southafricanorth"].1.len(), 2);

    // With --prune: commit southafricanorth without it, wait, delete it.
    env.reset_stats().await;
    let traffic = env.dir.path().join("traffic-prune");
    let out = env
        .step("mesh-connect")
        .intent(&v2)
        .run_key("p-2")
        .apply()
        .arg("--prune")
        .arg(format!("--record-traffic={}", traffic.display()))
        .run()
        .await;
    expect_code(&out, 0);
    let stats = env.stats().await;
    assert_eq!(
        mutations(&stats),
        [
            ("POST commit".to_string(), 1),
            ("DELETE connectivityConfigurations".to_string(), 1)
        ]
        .into(),
        "{stats}"
    );
    let ex = recorded(&traffic);
    let commit = ex
        .iter()
        .position(|(n, _)| n.ends_with("-post-commit.json"))
        .unwrap();
    let delete = ex.iter().position(|(n, _)| n.contains("-delete-")).unwrap();
    assert!(commit < delete, "undeploy first, then delete");
    assert_eq!(
        ex[commit].1["liveRequest"]["body"]["targetLocations"],
        json!(["southafricanorth"])
    );
    let deps = deployments(&env).await;
    assert_eq!(deps["southafricanorth"].1, vec!["cc-hub-mesh"]);
    assert_eq!(deps["eastus"].1.len(), 2);
    let gone = env
        .sim_get("resource?id=/subscriptions/6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/networkManagers/avnm-globojava/connectivityConfigurations/cc-hubspoke-southafricanorth")
        .await;
    assert_eq!(gone["error"], "no such resource", "{gone}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configurations_netstep_does_not_manage_stay_untouched_and_deployed() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    let intent_path = env.globojava_intent();
    upstream(&env, &intent_path, "u-1").await;
    let it = load(&intent_path);
    let nm = it.network_manager_id();
    let team = format!("{nm}/connectivityConfigurations/cc-team-eastus");
    // An application team's own configuration, committed to eastus before netstep runs.
    let body = json!({"properties": {
        "description": "app team mesh",
        "connectivityTopology": "Mesh",
        "appliesToGroups": [{"networkGroupId": it.network_group_id("all-prod-spokes-eastus"),
                              "groupConnectivity": "None", "isGlobal": "False", "useHubGateway": "False"}]}});
    let r = reqwest::Client::new()
        .put(format!("{}{team}?api-version={API}", env.sim.url))
        .bearer_auth(pipeline_tests::TEST_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let (code, _) = arm_post(
        &env,
        &format!("{nm}/commit"),
        &json!({"commitType": "Connectivity", "targetLocations": ["eastus"], "configurationIds": [team]}),
    )
    .await;
    assert_eq!(code, 202);
    env.reset_stats().await;

    let out = env
        .step("mesh-connect")
        .intent(&intent_path)
        .run_key("u-1")
        .apply()
        .run()
        .await;
    expect_code(&out, 0);
    assert!(
        out.stdout
            .contains("commit Connectivity eastus: + cc-hub-mesh, + cc-hubspoke-eastus\n"),
        "the team's configuration stays in eastus's goal: {}",
        out.stdout
    );
    let stats = env.stats().await;
    assert_eq!(
        op_count(&stats, "PUT connectivityConfigurations"),
        8,
        "{stats}"
    );
    let deps = deployments(&env).await;
    assert_eq!(
        deps["eastus"].1,
        vec!["cc-hub-mesh", "cc-hubspoke-eastus", "cc-team-eastus"]
    );
    let v = env.sim_get(&format!("resource?id={team}")).await;
    assert_eq!(v["body"]["properties"]["description"], "app team mesh");

    // Re-run: still nothing to do.
    env.reset_stats().await;
    let out = env
        .step("mesh-connect")
        .intent(&intent_path)
        .run_key("u-1")
        .apply()
        .run()
        .await;
    expect_code(&out, 0);
    assert!(mutations(&env.stats().await).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_already_in_progress_is_waited_for_not_committed_again() {
    let mut opts = EnvOptions::globojava().file_state();
    // Deployments take 3 s (NotStarted for the first second, then Deploying).
    opts.sim.deploy_delay = Duration::from_secs(3);
    let env = Env::start(opts).await;
    let intent_path = env.globojava_intent();
    upstream(&env, &intent_path, "ip-1").await;
    expect_code(
        &env.step("mesh-connect")
            .intent(&intent_path)
            .run_key("ip-1")
            .apply()
            .run()
            .await,
        0,
    );

    // Someone (a run that stopped during its wait) commits eastus's goal again.
    let it = load(&intent_path);
    let nm = it.network_manager_id();
    let goal = json!([
        it.connectivity_config_id("cc-hub-mesh"),
        it.connectivity_config_id("cc-hubspoke-eastus")
    ]);
    let (code, v) = arm_post(
        &env,
        &format!("{nm}/commit"),
        &json!({"commitType": "Connectivity", "targetLocations": ["eastus"], "configurationIds": goal}),
    )
    .await;
    assert_eq!(code, 202, "{v}");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    env.reset_stats().await;
    let out = env
        .step("mesh-connect")
        .intent(&intent_path)
        .run_key("ip-1")
        .apply()
        .run()
        .await;
    expect_code(&out, 0);
    assert!(
        mutations(&env.stats().await).is_empty(),
        "no commit: the set is already the goal"
    );
    // The step returned only once eastus was deployed.
    let (code, v) = arm_post(
        &env,
        &format!("{nm}/listDeploymentStatus"),
        &json!({"regions": ["eastus"], "deploymentTypes": ["Connectivity"]}),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(v["value"][0]["deploymentStatus"], "Deployed", "{v}");
}
