//! `dns-link` end to end on the real binary, against armsim seeded with the GloboJava estate
//! before netstep runs (the 21 VNets exist; no DNS yet).

use std::path::PathBuf;

use pipeline_tests::{Env, EnvOptions, StepOutput};
use serde_json::{Value, json};

const SUB: &str = "6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718";

fn zone_id() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/privateDnsZones/globojava.com"
    )
}

/// The GloboJava intent with `edit` applied to its text, written into the env's folder.
fn intent_with(env: &Env, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(env.globojava_intent()).unwrap();
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit changed nothing");
    let p = env.dir.path().join(name);
    std::fs::write(&p, edited).unwrap();
    p
}

async fn apply(env: &Env, intent: &std::path::Path, run_key: &str, extra: &[&str]) -> StepOutput {
    let mut cmd = env.step("dns-link").intent(intent).run_key(run_key).apply();
    for a in extra {
        cmd = cmd.arg(*a);
    }
    cmd.run().await
}

fn count(stats: &Value, op: &str) -> u64 {
    stats["by_operation"][op].as_u64().unwrap_or(0)
}

/// PUT/PATCH/DELETE/POST requests in armsim's log since the last reset, as `METHOD path`.
async fn writes(env: &Env) -> Vec<String> {
    env.sim_get("log")
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["method"] != "GET")
        .map(|e| {
            format!(
                "{} {}",
                e["method"].as_str().unwrap(),
                e["path"].as_str().unwrap()
            )
        })
        .collect()
}

/// GETs of single links (`.../virtualNetworkLinks/{name}`): must never happen.
async fn per_link_gets(env: &Env) -> Vec<String> {
    env.sim_get("log")
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["method"] == "GET")
        .filter_map(|e| e["path"].as_str())
        .filter(|p| {
            let lower = p.to_ascii_lowercase();
            lower
                .split_once("/virtualnetworklinks/")
                .is_some_and(|(_, rest)| !rest.is_empty())
        })
        .map(str::to_string)
        .collect()
}

async fn resource(env: &Env, id: &str) -> Value {
    env.sim_get(&format!("resource?id={id}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn globojava_plan_apply_noop_drift_repair_and_record_change() {
    // State in a real Azurite (the other tests use a folder).
    let env = Env::start(EnvOptions::globojava()).await;
    let intent = env.globojava_intent();

    // Plan from the fresh world: readable, complete, and write-free.
    let plan = env
        .step("dns-link")
        .intent(&intent)
        .run_key("r1")
        .mode("plan")
        .run()
        .await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout
            .lines()
            .next()
            .unwrap()
            .starts_with("dns-link · run r1 · intent sha256:"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("+ create privateDnsZones/globojava.com (Microsoft.Network/privateDnsZones)"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("+ create privateDnsZones/globojava.com/virtualNetworkLinks/link-vnet-nonprod-southafricanorth"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("properties.aRecords: [{\"ipv4Address\":\"10.4.16.10\"}]"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("Plan: 29 to create, 0 to update, 0 to delete."),
        "{}",
        plan.stdout
    );
    assert_eq!(plan.outputs["changes"], "29");
    assert!(writes(&env).await.is_empty());

    // Apply: the zone, 21 links, 7 A records; links only ever listed.
    env.reset_stats().await;
    let out = apply(&env, &intent, "r1", &[]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let stats = env.stats().await;
    assert_eq!(count(&stats, "PUT privateDnsZones"), 1, "{stats}");
    assert_eq!(count(&stats, "PUT virtualNetworkLinks"), 21, "{stats}");
    assert_eq!(count(&stats, "PUT A"), 7, "{stats}");
    assert_eq!(stats["writes"], 29, "{stats}");
    assert_eq!(stats["deletes"], 0, "{stats}");
    assert!(per_link_gets(&env).await.is_empty());
    assert_eq!(out.outputs["changes"], "29");
    assert_eq!(out.outputs["record"], "runs/r1/dns-link.json");
    let ids: Vec<String> = serde_json::from_str(&out.outputs["zone-ids"]).unwrap();
    assert_eq!(ids, [zone_id()]);
    let zone = resource(&env, &zone_id()).await;
    assert_eq!(zone["body"]["tags"]["managed-by"], "netstep", "{zone}");
    let link = resource(
        &env,
        &format!("{}/virtualNetworkLinks/link-vnet-hub-westeurope", zone_id()),
    )
    .await;
    assert_eq!(link["provisioningState"], "Succeeded", "{link}");
    assert_eq!(link["body"]["properties"]["registrationEnabled"], false);
    let rec = resource(&env, &format!("{}/A/database.westeurope", zone_id())).await;
    assert_eq!(
        rec["body"]["properties"]["aRecords"],
        json!([{"ipv4Address": "10.4.16.10"}])
    );
    assert_eq!(rec["body"]["properties"]["ttl"], 300);

    // Re-run with the same run key: zero writes, link reads are list calls only.
    env.reset_stats().await;
    let again = apply(&env, &intent, "r1", &[]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    let stats = env.stats().await;
    assert_eq!(stats["writes"], 0, "{stats}");
    assert_eq!(stats["deletes"], 0, "{stats}");
    assert_eq!(count(&stats, "GET virtualNetworkLinks"), 1, "{stats}");
    assert!(per_link_gets(&env).await.is_empty());
    assert!(
        again
            .stdout
            .contains("No changes. Azure matches the intent."),
        "{}",
        again.stdout
    );
    assert_eq!(again.outputs["changes"], "0");

    // A link deleted behind our back: the next apply recreates exactly that link.
    let victim = format!(
        "{}/virtualNetworkLinks/link-vnet-prod-northeurope",
        zone_id()
    );
    let (st, _) = env
        .sim_post("drift", &json!({"op": "delete", "id": victim}))
        .await;
    assert!(st < 300, "drift {st}");
    // An unmanaged record set someone added to the zone: it must survive every apply.
    let legacy = format!("{}/A/legacy-app", zone_id());
    let (st, _) = env
        .sim_post(
            "drift",
            &json!({"op": "put", "resource": {"id": legacy,
                "properties": {"ttl": 60, "aRecords": [{"ipv4Address": "10.4.16.99"}]}}}),
        )
        .await;
    assert!(st < 300, "drift {st}");
    env.reset_stats().await;
    let repair = apply(&env, &intent, "r1", &[]).await;
    assert_eq!(repair.code, 0, "{}", repair.stderr);
    assert_eq!(writes(&env).await, [format!("PUT {victim}")]);
    assert!(per_link_gets(&env).await.is_empty());
    assert_eq!(repair.outputs["changes"], "1");
    let relinked = resource(&env, &victim).await;
    assert_eq!(relinked["provisioningState"], "Succeeded", "{relinked}");

    // A changed record IP in the intent (a new run): exactly one record PUT.
    let moved = intent_with(&env, "moved.yaml", |t| {
        t.replace("ipv4: [10.4.16.10]", "ipv4: [10.4.16.11]")
    });
    let plan = env
        .step("dns-link")
        .intent(&moved)
        .run_key("r2")
        .mode("plan")
        .run()
        .await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout.contains(
            "~ update privateDnsZones/globojava.com/A/database.westeurope (Microsoft.Network/privateDnsZones/A)"
        ),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains(
            "properties.aRecords: [{\"ipv4Address\":\"10.4.16.10\"}] -> [{\"ipv4Address\":\"10.4.16.11\"}]"
        ),
        "{}",
        plan.stdout
    );
    env.reset_stats().await;
    let out = apply(&env, &moved, "r2", &[]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        writes(&env).await,
        [format!("PUT {}/A/database.westeurope", zone_id())]
    );
    let rec = resource(&env, &format!("{}/A/database.westeurope", zone_id())).await;
    assert_eq!(
        rec["body"]["properties"]["aRecords"],
        json!([{"ipv4Address": "10.4.16.11"}])
    );
    let kept = resource(&env, &legacy).await;
    assert_eq!(
        kept["body"]["properties"]["aRecords"],
        json!([{"ipv4Address": "10.4.16.99"}]),
        "the unmanaged record set was touched: {kept}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_records_and_links_are_deleted_only_with_prune() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    let out = apply(&env, &env.globojava_intent(), "p1", &[]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);

    // The intent drops one record and links only the hubs.
    let smaller = intent_with(&env, "smaller.yaml", |t| {
        t.replace(
            "        - {name: database.southafricanorth, type: A, ttl: 300, ipv4: [10.7.16.10]}\n",
            "",
        )
        .replace(
            "        registration_enabled: false\n",
            "        registration_enabled: false\n        vnets: [vnet-hub-eastus, vnet-hub-westus, vnet-hub-northeurope, vnet-hub-westeurope, vnet-hub-southeastasia, vnet-hub-australiaeast, vnet-hub-southafricanorth]\n",
        )
    });
    env.reset_stats().await;
    let plan_only = apply(&env, &smaller, "p2", &[]).await;
    assert_eq!(plan_only.code, 0, "{}", plan_only.stderr);
    assert!(
        plan_only
            .stdout
            .contains("- delete privateDnsZones/globojava.com/A/database.southafricanorth"),
        "{}",
        plan_only.stdout
    );
    assert!(
        plan_only
            .stdout
            .contains("Plan: 0 to create, 0 to update, 15 to delete."),
        "{}",
        plan_only.stdout
    );
    assert!(plan_only.stdout.contains("--prune"), "{}", plan_only.stdout);
    assert!(writes(&env).await.is_empty(), "deleted without --prune");

    env.reset_stats().await;
    let pruned = apply(&env, &smaller, "p2", &["--prune"]).await;
    assert_eq!(pruned.code, 0, "{}", pruned.stderr);
    let w = writes(&env).await;
    assert_eq!(w.len(), 15, "{w:?}");
    assert!(w.iter().all(|x| x.starts_with("DELETE ")), "{w:?}");
    // Record sets first, then links.
    assert!(w[0].ends_with("/A/database.southafricanorth"), "{w:?}");
    let stats = env.stats().await;
    assert_eq!(count(&stats, "DELETE virtualNetworkLinks"), 14, "{stats}");

    env.reset_stats().await;
    let again = apply(&env, &smaller, "p2", &["--prune"]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(writes(&env).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmanaged_zone_or_link_in_the_way_is_refused_with_exit_1_and_no_writes() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    // Someone else's zone of the same name (no managed-by tag).
    let (st, _) = env
        .sim_post(
            "drift",
            &json!({"op": "put", "resource": {"id": zone_id(), "location": "global",
                "tags": {"owner": "dns-team"}, "properties": {}}}),
        )
        .await;
    assert!(st < 300, "drift {st}");
    env.reset_stats().await;
    let out = apply(&env, &env.globojava_intent(), "u1", &[]).await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("is not managed by netstep"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("! refused:"), "{}", out.stdout);
    assert!(writes(&env).await.is_empty());
    let zone = resource(&env, &zone_id()).await;
    assert_eq!(zone["body"]["tags"], json!({"owner": "dns-team"}));

    // Handed over (tagged): netstep converges it, keeping the foreign tag.
    let (st, _) = env
        .sim_post(
            "drift",
            &json!({"op": "retag", "id": zone_id(),
                "tags": {"owner": "dns-team", "managed-by": "netstep"}}),
        )
        .await;
    assert!(st < 300, "drift {st}");
    // But a hand-made link for one VNet under another name blocks that VNet's link.
    let vnet = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-globojava-spokes/providers/Microsoft.Network/virtualNetworks/vnet-prod-eastus"
    );
    let (st, _) = env
        .sim_post(
            "drift",
            &json!({"op": "put", "resource": {"id": format!("{}/virtualNetworkLinks/handmade", zone_id()),
                "location": "global", "tags": {},
                "properties": {"virtualNetwork": {"id": vnet}, "registrationEnabled": false}}}),
        )
        .await;
    assert!(st < 300, "drift {st}");
    env.reset_stats().await;
    let out = apply(&env, &env.globojava_intent(), "u2", &[]).await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("handmade"), "{}", out.stderr);
    assert!(writes(&env).await.is_empty());

    // Without it, apply converges and keeps the zone's foreign tag.
    let (st, _) = env
        .sim_post(
            "drift",
            &json!({"op": "delete", "id": format!("{}/virtualNetworkLinks/handmade", zone_id())}),
        )
        .await;
    assert!(st < 300, "drift {st}");
    let out = apply(&env, &env.globojava_intent(), "u3", &[]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let zone = resource(&env, &zone_id()).await;
    assert_eq!(zone["body"]["tags"]["owner"], "dns-team", "{zone}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_link_reads_are_retried_and_a_failed_link_is_repaired_by_the_next_apply() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    // Azure throttles link reads per zone: the list is retried after Retry-After.
    let (st, _) = env
        .sim_post(
            "faults",
            &json!({"match": {"op": "GET virtualNetworkLinks"}, "kind": "429", "count": 1, "retry_after_s": 1}),
        )
        .await;
    assert!(st < 300, "fault {st}");
    // One link's operation fails.
    let (st, _) = env
        .sim_post(
            "faults",
            &json!({"match": {"op": "PUT virtualNetworkLinks", "path_contains": "link-vnet-hub-westus"},
                "kind": "failed-lro", "count": 1}),
        )
        .await;
    assert!(st < 300, "fault {st}");
    let out = apply(&env, &env.globojava_intent(), "f1", &[]).await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("link-vnet-hub-westus"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("provisioningState Failed"),
        "{}",
        out.stderr
    );
    let stats = env.stats().await;
    assert_eq!(stats["throttled"], 1, "{stats}");

    env.reset_stats().await;
    let again = apply(&env, &env.globojava_intent(), "f1", &[]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        writes(&env).await,
        [format!(
            "PUT {}/virtualNetworkLinks/link-vnet-hub-westus",
            zone_id()
        )]
    );
    assert!(per_link_gets(&env).await.is_empty());
}
