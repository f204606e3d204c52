//! `tag-groups` end to end: the real binary against armsim (GloboJava world) and a state store.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use pipeline_tests::{Env, EnvOptions};
use serde_json::{Value, json};

const SUB: &str = "6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718";
const REGIONS: [&str; 7] = [
    "eastus",
    "westus",
    "northeurope",
    "westeurope",
    "southeastasia",
    "australiaeast",
    "southafricanorth",
];

fn nm_id() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/networkManagers/avnm-globojava"
    )
}

fn group_id(name: &str) -> String {
    format!("{}/networkGroups/{name}", nm_id())
}

fn vnet_id(name: &str) -> String {
    let rg = if name.starts_with("vnet-hub-") {
        "rg-globojava-connectivity"
    } else {
        "rg-globojava-spokes"
    };
    format!(
        "/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Network/virtualNetworks/{name}"
    )
}

fn op_count(stats: &Value, op: &str) -> u64 {
    stats["by_operation"][op].as_u64().unwrap_or(0)
}

/// Every PUT/PATCH/DELETE (and POST other than a read-only list) in the stats.
fn mutations(stats: &Value) -> Vec<(String, u64)> {
    stats["by_operation"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| {
            k.starts_with("PUT ")
                || k.starts_with("PATCH ")
                || k.starts_with("DELETE ")
                || (k.starts_with("POST ") && !k.starts_with("POST list"))
        })
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
        .collect()
}

async fn resource(env: &Env, id: &str) -> Value {
    env.sim_get(&format!("resource?id={id}")).await["body"].clone()
}

async fn members(env: &Env, group: &str) -> BTreeSet<String> {
    let v = env
        .sim_get(&format!("members?group={}", group_id(group)))
        .await;
    v["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str())
        .map(|id| id.rsplit('/').next().unwrap_or(id).to_string())
        .collect()
}

/// Waits (bounded) until Azure Policy has evaluated a group's membership to `want`.
async fn wait_members(env: &Env, group: &str, want: &BTreeSet<String>) -> BTreeSet<String> {
    let mut got = BTreeSet::new();
    for _ in 0..50 {
        got = members(env, group).await;
        if &got == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    got
}

fn set(items: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    items.into_iter().collect()
}

/// The GloboJava intent with `network_groups` extended by `extra` (YAML list items).
fn intent_with_groups(env: &Env, file: &str, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(env.globojava_intent()).unwrap();
    let anchor = "    match: {tag: env, equals: nonprod}\n";
    assert!(text.contains(anchor));
    let p = env.dir.path().join(file);
    std::fs::write(&p, text.replacen(anchor, &format!("{anchor}{extra}"), 1)).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn globojava_first_apply_converges_then_reruns_make_zero_writes() {
    let env = Env::start(EnvOptions::globojava()).await;
    let intent = env.globojava_intent();
    let before = resource(&env, &vnet_id("vnet-hub-eastus")).await;

    let out = env
        .step("tag-groups")
        .intent(&intent)
        .run_key("sha1-infra")
        .apply()
        .run()
        .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("Plan: 52 to create, 7 to update, 0 to delete."),
        "{}",
        out.stdout
    );
    let stats = env.stats().await;
    assert_eq!(op_count(&stats, "PUT networkManagers"), 1, "{stats}");
    // 3 declared groups + 2 spoke groups x 7 regions.
    assert_eq!(op_count(&stats, "PUT networkGroups"), 17, "{stats}");
    assert_eq!(op_count(&stats, "PUT policyDefinitions"), 17, "{stats}");
    assert_eq!(op_count(&stats, "PUT policyAssignments"), 17, "{stats}");
    // Only the 7 hubs lack their tags (spokes were vended with env=...).
    assert_eq!(op_count(&stats, "PATCH virtualNetworks"), 7, "{stats}");
    assert_eq!(stats["deletes"], 0, "{stats}");
    // One list per collection: no per-VNet or per-policy GETs.
    assert_eq!(op_count(&stats, "GET virtualNetworks"), 1, "{stats}");
    assert_eq!(op_count(&stats, "GET policyDefinitions"), 1, "{stats}");
    assert_eq!(op_count(&stats, "GET policyAssignments"), 1, "{stats}");

    let ids: Value = serde_json::from_str(&out.outputs["group-ids"]).unwrap();
    assert_eq!(ids.as_object().unwrap().len(), 17);
    assert_eq!(
        ids["all-prod-spokes-eastus"],
        group_id("all-prod-spokes-eastus")
    );
    assert_eq!(out.outputs["changes"], "59");
    assert_eq!(out.outputs["record"], "runs/sha1-infra/tag-groups.json");

    // The hubs now carry network_role=hub, the intent's free tag, and the foreign tag.
    let after = resource(&env, &vnet_id("vnet-hub-eastus")).await;
    assert_eq!(after["tags"]["network_role"], "hub");
    assert_eq!(after["tags"]["cost_center"], "network");
    assert_eq!(after["tags"]["costcenter"], "cc-4711");
    // Nothing but tags changed on the VNet.
    for k in ["location", "properties"] {
        assert_eq!(after[k], before[k], "{k} changed");
    }
    let spoke = resource(&env, &vnet_id("vnet-prod-westus")).await;
    assert_eq!(
        spoke["tags"],
        json!({"env": "prod", "costcenter": "cc-4711"})
    );

    // Azure Policy evaluation: every VNet lands in the right groups.
    let hubs = set(REGIONS.iter().map(|r| format!("vnet-hub-{r}")));
    let prod = set(REGIONS.iter().map(|r| format!("vnet-prod-{r}")));
    let nonprod = set(REGIONS.iter().map(|r| format!("vnet-nonprod-{r}")));
    assert_eq!(wait_members(&env, "global-hubs", &hubs).await, hubs);
    assert_eq!(wait_members(&env, "all-prod-spokes", &prod).await, prod);
    assert_eq!(
        wait_members(&env, "all-nonprod-spokes", &nonprod).await,
        nonprod
    );
    let east = set(["vnet-prod-eastus".to_string()]);
    assert_eq!(
        wait_members(&env, "all-prod-spokes-eastus", &east).await,
        east
    );
    let se = set(["vnet-nonprod-southeastasia".to_string()]);
    assert_eq!(
        wait_members(&env, "all-nonprod-spokes-southeastasia", &se).await,
        se
    );

    // Same run key again: zero writes, and the plan says so.
    env.reset_stats().await;
    let again = env
        .step("tag-groups")
        .intent(&intent)
        .run_key("sha1-infra")
        .apply()
        .run()
        .await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    let stats = env.stats().await;
    assert_eq!(mutations(&stats), vec![], "{stats}");
    assert_eq!(stats["writes"], 0, "{stats}");
    assert_eq!(stats["deletes"], 0, "{stats}");
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);
    assert_eq!(again.outputs["changes"], "0");

    // Plan on the converged estate (a new run key, from the run's snapshot path too).
    env.reset_stats().await;
    let plan = env
        .step("tag-groups")
        .intent(&intent)
        .run_key("sha2-infra")
        .run()
        .await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(plan.stdout.contains("No changes."), "{}", plan.stdout);
    assert!(plan.stdout.contains("mode plan"), "{}", plan.stdout);
    assert_eq!(env.stats().await["writes"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_writes_nothing_and_a_retagged_vnet_is_repaired_with_one_patch() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    let intent = env.globojava_intent();
    let plan = env
        .step("tag-groups")
        .intent(&intent)
        .run_key("p1")
        .run()
        .await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout
            .contains("+ create networkManagers/avnm-globojava "),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains(
            "~ update virtualNetworks/vnet-hub-eastus (Microsoft.Network/virtualNetworks)"
        ),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("tags.network_role: (absent) -> \"hub\""),
        "{}",
        plan.stdout
    );
    let stats = env.stats().await;
    assert_eq!(mutations(&stats), vec![], "{stats}");
    assert_eq!(stats["writes"], 0, "{stats}");

    let out = env
        .step("tag-groups")
        .intent(&intent)
        .run_key("r1")
        .apply()
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);

    // Someone retags a spoke behind our back.
    let id = vnet_id("vnet-prod-westus");
    let (status, _) = env
        .sim_post(
            "drift",
            &json!({"op": "retag", "id": id, "tags": {"env": "dev", "costcenter": "cc-4711", "owner": "team-x"}}),
        )
        .await;
    assert!(status < 300, "{status}");
    env.reset_stats().await;
    let fix = env
        .step("tag-groups")
        .intent(&intent)
        .run_key("r2")
        .apply()
        .run()
        .await;
    assert_eq!(fix.code, 0, "{}", fix.stderr);
    assert!(
        fix.stdout.contains("tags.env: \"dev\" -> \"prod\""),
        "{}",
        fix.stdout
    );
    let stats = env.stats().await;
    assert_eq!(
        mutations(&stats),
        vec![("PATCH virtualNetworks".to_string(), 1)],
        "{stats}"
    );
    let log = env.sim_get("log").await;
    let patched: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["method"] == "PATCH")
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert_eq!(patched, vec![id.as_str()]);
    let v = resource(&env, &id).await;
    assert_eq!(
        v["tags"],
        json!({"env": "prod", "costcenter": "cc-4711", "owner": "team-x"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_vnet_is_named_by_plan_and_fails_apply_without_writes() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    let intent = env.globojava_intent();
    let (status, _) = env
        .sim_post(
            "drift",
            &json!({"op": "delete", "id": vnet_id("vnet-nonprod-australiaeast")}),
        )
        .await;
    assert!(status < 300, "{status}");
    env.reset_stats().await;
    let plan = env
        .step("tag-groups")
        .intent(&intent)
        .run_key("m1")
        .run()
        .await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout.contains(
            "! virtual network vnet-nonprod-australiaeast (regions[5].spokes[1], spoke) does not exist"
        ),
        "{}",
        plan.stdout
    );
    let apply = env
        .step("tag-groups")
        .intent(&intent)
        .run_key("m1")
        .apply()
        .run()
        .await;
    assert_eq!(apply.code, 1, "{}", apply.stderr);
    assert!(
        apply.stderr.contains("vnet-nonprod-australiaeast")
            && apply.stderr.contains("do not exist"),
        "{}",
        apply.stderr
    );
    let stats = env.stats().await;
    assert_eq!(mutations(&stats), vec![], "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmanaged_network_manager_is_used_when_it_fits_and_never_modified() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    let intent = env.globojava_intent();
    let foreign = |accesses: Value| {
        json!({"op": "put", "resource": {
            "id": nm_id(), "location": "westeurope", "tags": {"owner": "platform"},
            "properties": {"description": "made by hand",
                "networkManagerScopes": {"subscriptions": [format!("/subscriptions/{SUB}")], "managementGroups": []},
                "networkManagerScopeAccesses": accesses}}})
    };
    // Missing SecurityAdmin: refused, naming the field, nothing written.
    let (status, _) = env
        .sim_post("drift", &foreign(json!(["Connectivity"])))
        .await;
    assert!(status < 300, "{status}");
    env.reset_stats().await;
    let out = env
        .step("tag-groups")
        .intent(&intent)
        .run_key("u1")
        .apply()
        .run()
        .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("not managed by netstep")
            && out.stderr.contains("networkManagerScopeAccesses")
            && out.stderr.contains("securityadmin"),
        "{}",
        out.stderr
    );
    assert_eq!(mutations(&env.stats().await), vec![]);

    // A foreign manager that covers the intent is used as is.
    let (status, _) = env
        .sim_post(
            "drift",
            &foreign(json!(["Connectivity", "SecurityAdmin", "Routing"])),
        )
        .await;
    assert!(status < 300, "{status}");
    env.reset_stats().await;
    let out = env
        .step("tag-groups")
        .intent(&intent)
        .run_key("u2")
        .apply()
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let stats = env.stats().await;
    assert_eq!(op_count(&stats, "PUT networkManagers"), 0, "{stats}");
    assert_eq!(op_count(&stats, "PUT networkGroups"), 17, "{stats}");
    let nm = resource(&env, &nm_id()).await;
    assert_eq!(nm["tags"], json!({"owner": "platform"}));
    assert_eq!(nm["properties"]["description"], "made by hand");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_groups_are_pruned_only_with_prune_in_safe_order() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    let extra = "  - name: web-pinned\n    description: Web spokes\n    match: {tag: app, equals: web}\n    static_members: [vnet-prod-eastus]\n";
    let with_extra = intent_with_groups(&env, "extra.yaml", extra);
    let out = env
        .step("tag-groups")
        .intent(&with_extra)
        .run_key("x1")
        .apply()
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let stats = env.stats().await;
    assert_eq!(op_count(&stats, "PUT staticMembers"), 1, "{stats}");
    assert_eq!(op_count(&stats, "PUT networkGroups"), 18, "{stats}");
    let pinned = set(["vnet-prod-eastus".to_string()]);
    assert_eq!(wait_members(&env, "web-pinned", &pinned).await, pinned);

    // Re-run: the static member reads back (Updating then Succeeded): no drift.
    env.reset_stats().await;
    let again = env
        .step("tag-groups")
        .intent(&with_extra)
        .run_key("x1")
        .apply()
        .run()
        .await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(mutations(&env.stats().await), vec![], "{}", again.stdout);

    // The group leaves the intent: plan shows deletes, apply without --prune keeps them.
    let intent = env.globojava_intent();
    env.reset_stats().await;
    let keep = env
        .step("tag-groups")
        .intent(&intent)
        .run_key("x2")
        .apply()
        .run()
        .await;
    assert_eq!(keep.code, 0, "{}", keep.stderr);
    for line in [
        "- delete networkManagers/avnm-globojava/networkGroups/web-pinned ",
        "- delete policyAssignments/netstep-avnm-globojava-web-pinned ",
        "- delete policyDefinitions/netstep-avnm-globojava-web-pinned ",
        "Plan: 0 to create, 0 to update, 3 to delete.",
        "3 deletion(s) skipped: run with --prune",
    ] {
        assert!(keep.stdout.contains(line), "{line}\n{}", keep.stdout);
    }
    assert_eq!(mutations(&env.stats().await), vec![]);

    env.reset_stats().await;
    let prune = env
        .step("tag-groups")
        .intent(&intent)
        .run_key("x2")
        .apply()
        .arg("--prune")
        .run()
        .await;
    assert_eq!(prune.code, 0, "{}", prune.stderr);
    let log = env.sim_get("log").await;
    let deletes: Vec<String> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["method"] == "DELETE")
        .filter_map(|e| e["op"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        deletes,
        vec![
            "DELETE policyAssignments",
            "DELETE policyDefinitions",
            "DELETE networkGroups"
        ]
    );
    let mut m = mutations(&env.stats().await);
    m.sort();
    assert_eq!(m.len(), 3, "{m:?}");

    // Converged: nothing left to delete.
    env.reset_stats().await;
    let done = env
        .step("tag-groups")
        .intent(&intent)
        .run_key("x3")
        .apply()
        .arg("--prune")
        .run()
        .await;
    assert_eq!(done.code, 0, "{}", done.stderr);
    assert!(done.stdout.contains("No changes."), "{}", done.stdout);
    assert_eq!(mutations(&env.stats().await), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_refuses_a_group_a_configuration_still_uses_and_writes_nothing() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    let extra = "  - name: web\n    match: {tag: app, equals: web}\n";
    let with_extra = intent_with_groups(&env, "web.yaml", extra);
    let out = env
        .step("tag-groups")
        .intent(&with_extra)
        .run_key("w1")
        .apply()
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);

    // A configuration (made outside netstep here) applies to the group and is deployed.
    let http = reqwest::Client::new();
    let cc = format!("{}/connectivityConfigurations/cc-web", nm_id());
    let body = netstep::resources::connectivity_configuration(
        "web mesh",
        None,
        &[netstep::resources::ConnectivityGroup {
            network_group_id: group_id("web"),
            direct_connectivity: false,
            use_hub_gateway: false,
            is_global: false,
        }],
        false,
        false,
        None,
    );
    let url = |path: &str| format!("{}{path}?api-version=2026-07-01", env.sim.url);
    let r = http
        .put(url(&cc))
        .bearer_auth("t")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = http
        .post(url(&format!("{}/commit", nm_id())))
        .bearer_auth("t")
        .json(&json!({"commitType": "Connectivity", "targetLocations": ["eastus"], "configurationIds": [cc]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());

    env.reset_stats().await;
    let prune = env
        .step("tag-groups")
        .intent(&env.globojava_intent())
        .run_key("w2")
        .apply()
        .arg("--prune")
        .run()
        .await;
    assert_eq!(prune.code, 1, "{}", prune.stderr);
    assert!(
        prune.stderr.contains("refusing to prune network group(s)")
            && prune.stderr.contains(
                "web (used by networkManagers/avnm-globojava/connectivityConfigurations/cc-web)"
            ),
        "{}",
        prune.stderr
    );
    assert_eq!(mutations(&env.stats().await), vec![]);
    let stats = env.stats().await;
    assert_eq!(stats["deletes"], 0, "{stats}");
}

/// Microsoft's validator over everything this step sends on GloboJava (first apply, no-op re-run,
/// a static member, a prune). Slow (~100 s to load the specs): run with `--ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs oav over the specs (~100 s); run with --ignored"]
async fn recorded_traffic_passes_check_traffic() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    let rec = env.dir.path().join("traffic");
    let extra = "  - name: web-pinned\n    match: {tag: app, equals: web}\n    static_members: [vnet-prod-eastus]\n";
    let with_extra = intent_with_groups(&env, "extra.yaml", extra);
    let intent = env.globojava_intent();
    for (i, (file, key, prune)) in [
        (&with_extra, "t1", false),
        (&with_extra, "t1", false),
        (&intent, "t2", true),
    ]
    .into_iter()
    .enumerate()
    {
        // One folder per run: the recorder numbers files from 1 in each process.
        let dir = rec.join(format!("run{i}"));
        let mut cmd = env
            .step("tag-groups")
            .intent(file)
            .run_key(key)
            .apply()
            .arg(format!("--record-traffic={}", dir.display()));
        if prune {
            cmd = cmd.arg("--prune");
        }
        let out = cmd.run().await;
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    // check-traffic takes one folder: gather the runs with distinct names.
    let all = env.dir.path().join("all");
    std::fs::create_dir_all(&all).unwrap();
    for i in 0..3 {
        for e in std::fs::read_dir(rec.join(format!("run{i}"))).unwrap() {
            let e = e.unwrap();
            let name = format!("{i}-{}", e.file_name().to_string_lossy());
            std::fs::copy(e.path(), all.join(name)).unwrap();
        }
    }
    let shared = std::env::var_os("NETSTEP_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| pipeline_tests::repo_root().join("../shared"));
    let out = tokio::process::Command::new(shared.join("azure-specs/check-traffic"))
        .arg(&all)
        .output()
        .await
        .expect("check-traffic runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    println!("{text}");
    assert!(out.status.success(), "{text}");
    assert!(text.contains(" 0 failed"), "{text}");
}
