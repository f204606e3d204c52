//! `fw-policy` end to end: the real binary against armsim seeded with the GloboJava world.
//!
//! The GloboJava world's hub firewalls are Standard tier (armsim README, "Firewall tiers"), and
//! Azure associates a firewall only with a policy of its own tier; the reference intent is
//! Standard too. `premium_intent_on_standard_firewalls_...` checks that a Premium intent on
//! these firewalls is refused before any write.

use std::path::{Path, PathBuf};

use pipeline_tests::{Env, EnvOptions, StepOutput, repo_root, write_ops as writes};
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

fn net_id(path: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/{path}"
    )
}

fn reference_intent() -> String {
    std::fs::read_to_string(repo_root().join("examples/globojava/intent.yaml")).unwrap()
}

/// The reference intent on Standard tier (policy and firewalls), written into the env's folder.
fn standard_intent(env: &Env, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = reference_intent()
        .replace("sku_tier: Premium", "sku_tier: Standard")
        .replace("\n  tier: Premium ", "\n  tier: Standard ");
    assert!(
        !text.contains("tier: Premium"),
        "the tier edit missed a place"
    );
    let text = edit(text);
    let p = env.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn op(stats: &Value, name: &str) -> u64 {
    stats["by_operation"][name].as_u64().unwrap_or(0)
}

async fn resource(env: &Env, id: &str) -> Value {
    let r = env
        .sim_get(&format!("resource?id={}", id.replace('/', "%2F")))
        .await;
    r["body"].clone()
}

async fn apply(env: &Env, intent: &Path, run_key: &str) -> StepOutput {
    let out = env
        .step("fw-policy")
        .intent(intent)
        .run_key(run_key)
        .apply()
        .run()
        .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    out
}

async fn assert_associated(env: &Env) {
    for r in REGIONS {
        let fw = resource(env, &net_id(&format!("azureFirewalls/afw-hub-{r}"))).await;
        let got = fw["properties"]["firewallPolicy"]["id"]
            .as_str()
            .unwrap_or("");
        assert!(
            got.eq_ignore_ascii_case(&net_id(&format!("firewallPolicies/fwp-globojava-{r}"))),
            "afw-hub-{r} is associated with {got:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_globojava_then_noop_then_one_rule_is_one_rcg_put() {
    // The Azurite-backed run: the record goes to real blob storage.
    let env = Env::start(EnvOptions::globojava()).await;
    let intent = standard_intent(&env, "intent.yaml", |t| t);

    // Plan first: readable, and write-free.
    let plan = env
        .step("fw-policy")
        .intent(&intent)
        .run_key("fw-1")
        .run()
        .await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout.contains("mode plan"),
        "header missing:\n{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains(
            "+ create firewallPolicies/fwp-globojava-global (Microsoft.Network/firewallPolicies)"
        ),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("~ update azureFirewalls/afw-hub-eastus (Microsoft.Network/azureFirewalls)"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("Plan: 10 to create, 7 to update, 0 to delete."),
        "{}",
        plan.stdout
    );
    let stats = env.stats().await;
    assert!(writes(&stats).is_empty(), "plan wrote: {stats}");
    assert_eq!(stats["writes"], 0, "{stats}");
    assert_eq!(plan.outputs["changes"], "17");

    // Apply from the fresh world.
    env.reset_stats().await;
    let out = apply(&env, &intent, "fw-1").await;
    let stats = env.stats().await;
    assert_eq!(op(&stats, "PUT firewallPolicies"), 8, "{stats}");
    assert_eq!(op(&stats, "PUT ruleCollectionGroups"), 2, "{stats}");
    assert_eq!(op(&stats, "PUT azureFirewalls"), 7, "{stats}");
    assert_eq!(writes(&stats).len(), 3, "{stats}");
    // One list per collection: policies, firewalls (the parent did not exist: no RCG list).
    assert_eq!(op(&stats, "GET ruleCollectionGroups"), 2, "{stats}");
    assert_eq!(stats["throttled"], 0, "{stats}");
    assert_associated(&env).await;
    for r in REGIONS {
        let child = resource(
            &env,
            &net_id(&format!("firewallPolicies/fwp-globojava-{r}")),
        )
        .await;
        assert_eq!(child["location"], "westeurope");
        assert!(
            child["properties"]["basePolicy"]["id"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case(&net_id("firewallPolicies/fwp-globojava-global"))
        );
        assert_eq!(child["tags"]["managed-by"], "netstep");
    }
    let parent = resource(&env, &net_id("firewallPolicies/fwp-globojava-global")).await;
    assert_eq!(parent["properties"]["threatIntelMode"], "Alert");
    assert_eq!(parent["properties"]["dnsSettings"]["enableProxy"], true);
    assert_eq!(parent["properties"]["sku"]["tier"], "Standard");
    let ids: Value = serde_json::from_str(&out.outputs["policy-ids"]).unwrap();
    assert_eq!(
        ids["parent"],
        json!(net_id("firewallPolicies/fwp-globojava-global"))
    );
    assert_eq!(ids["children"].as_object().unwrap().len(), 7);
    assert_eq!(out.outputs["changes"], "17");
    assert_eq!(out.outputs["record"], "runs/fw-1/fw-policy.json");

    // The same run key again: zero writes, "No changes".
    env.reset_stats().await;
    let again = apply(&env, &intent, "fw-1").await;
    let stats = env.stats().await;
    assert!(writes(&stats).is_empty(), "re-run wrote: {stats}");
    assert_eq!(stats["writes"], 0, "{stats}");
    assert_eq!(stats["reads"], 3, "three lists and nothing else: {stats}");
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);
    assert_eq!(again.outputs["changes"], "0");

    // One rule changed in the intent: the plan names the field, apply makes one RCG PUT.
    let changed = standard_intent(&env, "intent-ntp.yaml", |t| {
        let n = t.replace(
            "destination_ports: [\"123\"]",
            "destination_ports: [\"124\"]",
        );
        assert_ne!(n, t);
        n
    });
    env.reset_stats().await;
    let plan = env
        .step("fw-policy")
        .intent(&changed)
        .run_key("fw-2")
        .run()
        .await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout.contains(
            "properties.ruleCollections[rc-platform-network].rules[allow-ntp].destinationPorts: [\"123\"] -> [\"124\"]"
        ),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("Plan: 0 to create, 1 to update, 0 to delete."),
        "{}",
        plan.stdout
    );
    assert!(writes(&env.stats().await).is_empty());
    env.reset_stats().await;
    apply(&env, &changed, "fw-2").await;
    let stats = env.stats().await;
    assert_eq!(
        writes(&stats),
        vec![("PUT ruleCollectionGroups".to_string(), 1)],
        "{stats}"
    );
    let rcg = resource(
        &env,
        &net_id("firewallPolicies/fwp-globojava-global/ruleCollectionGroups/rcg-platform"),
    )
    .await;
    let ntp = &rcg["properties"]["ruleCollections"][0]["rules"][1];
    assert_eq!(ntp["name"], "allow-ntp");
    assert_eq!(ntp["destinationPorts"], json!(["124"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_firewall_properties_survive_and_drift_is_repaired_exactly() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    let intent = standard_intent(&env, "intent.yaml", |t| t);

    // Someone else owns afw-hub-westus and has set things netstep does not manage.
    let fw_id = net_id("azureFirewalls/afw-hub-westus");
    let mut fw = resource(&env, &fw_id).await;
    fw["tags"]["owner"] = json!("secops");
    fw["properties"]["threatIntelMode"] = json!("Deny");
    fw["properties"]["additionalProperties"] =
        json!({"Network.SNAT.PrivateRanges": "IANAPrivateRanges"});
    let (s, r) = env
        .sim_post("drift", &json!({"op": "put", "resource": fw}))
        .await;
    assert_eq!(s, 200, "{r}");

    apply(&env, &intent, "fw-d1").await;
    assert_associated(&env).await;
    let after = resource(&env, &fw_id).await;
    assert_eq!(
        after["tags"],
        json!({"costcenter": "cc-4711", "owner": "secops"})
    );
    assert_eq!(after["properties"]["threatIntelMode"], "Deny");
    assert_eq!(
        after["properties"]["additionalProperties"],
        json!({"Network.SNAT.PrivateRanges": "IANAPrivateRanges"})
    );
    assert_eq!(after["properties"]["sku"], fw["properties"]["sku"]);
    assert_eq!(
        after["properties"]["ipConfigurations"][0]["properties"]["publicIPAddress"],
        fw["properties"]["ipConfigurations"][0]["properties"]["publicIPAddress"]
    );

    // The association is removed behind our back.
    let mut drifted = resource(&env, &fw_id).await;
    drifted["properties"]
        .as_object_mut()
        .unwrap()
        .remove("firewallPolicy");
    let (s, r) = env
        .sim_post("drift", &json!({"op": "put", "resource": drifted}))
        .await;
    assert_eq!(s, 200, "{r}");

    env.reset_stats().await;
    let plan = env
        .step("fw-policy")
        .intent(&intent)
        .run_key("fw-d2")
        .run()
        .await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout
            .contains("~ update azureFirewalls/afw-hub-westus"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains(
            "* associate azureFirewalls/afw-hub-westus with firewallPolicies/fwp-globojava-westus (now: none)"
        ),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("Plan: 0 to create, 1 to update, 0 to delete."),
        "{}",
        plan.stdout
    );
    assert!(writes(&env.stats().await).is_empty());

    env.reset_stats().await;
    apply(&env, &intent, "fw-d2").await;
    let stats = env.stats().await;
    assert_eq!(
        writes(&stats),
        vec![("PUT azureFirewalls".to_string(), 1)],
        "{stats}"
    );
    let puts = env.logged_paths("PUT").await;
    assert_eq!(puts.len(), 1);
    assert!(
        puts[0].contains("/azureFirewalls/afw-hub-westus"),
        "{puts:?}"
    );
    assert_associated(&env).await;
    let repaired = resource(&env, &fw_id).await;
    assert_eq!(repaired["tags"]["owner"], "secops");
    assert_eq!(repaired["properties"]["threatIntelMode"], "Deny");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_operation_in_progress_is_absorbed() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    let intent = standard_intent(&env, "intent.yaml", |t| t);
    let (s, r) = env
        .sim_post(
            "faults",
            &json!([
                {"match": {"method": "PUT", "path_contains": "ruleCollectionGroups"},
                 "kind": "409-another-op", "count": 2, "retry_after_s": 0},
                {"match": {"method": "PUT", "path_contains": "firewallPolicies/fwp-globojava-eastus"},
                 "kind": "409-another-op", "count": 1, "retry_after_s": 0},
            ]),
        )
        .await;
    assert!(s < 300, "{r}");
    apply(&env, &intent, "fw-409").await;
    let stats = env.stats().await;
    assert_eq!(stats["faults_injected"], 3, "{stats}");
    // Each rejected attempt was resent: 2 + 2 group PUTs, 8 + 1 policy PUTs.
    assert_eq!(op(&stats, "PUT ruleCollectionGroups"), 4, "{stats}");
    assert_eq!(op(&stats, "PUT firewallPolicies"), 9, "{stats}");
    assert_associated(&env).await;
    // Converged: a re-run writes nothing.
    env.reset_stats().await;
    apply(&env, &intent, "fw-409").await;
    assert!(writes(&env.stats().await).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn premium_intent_on_standard_firewalls_is_refused_before_any_write() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    // The reference intent moved to Premium (policy and firewalls); the estate's firewalls
    // are Standard.
    let text = reference_intent()
        .replace("sku_tier: Standard", "sku_tier: Premium")
        .replace("\n  tier: Standard ", "\n  tier: Premium ");
    assert!(
        text.contains("\n  tier: Premium "),
        "the tier edit missed the policy"
    );
    let intent = env.dir.path().join("premium.yaml");
    std::fs::write(&intent, text).unwrap();
    for mode in ["plan", "apply"] {
        let out = env
            .step("fw-policy")
            .intent(&intent)
            .run_key("fw-premium")
            .mode(mode)
            .run()
            .await;
        assert_eq!(out.code, 1, "{mode}: {}\n{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains(
                "afw-hub-eastus is Standard but firewall policy fwp-globojava-eastus is Premium"
            ),
            "{mode}: {}",
            out.stderr
        );
        assert!(out.stdout.contains("  ! firewall"), "{}", out.stdout);
    }
    let stats = env.stats().await;
    assert!(writes(&stats).is_empty(), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_children_and_groups_are_deleted_only_with_prune() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    let intent = standard_intent(&env, "intent.yaml", |t| t);
    apply(&env, &intent, "fw-p1").await;

    // Children renamed (fwp-gj-<region>) and rcg-deny dropped.
    let renamed = standard_intent(&env, "intent-renamed.yaml", |t| {
        let start = t.find("    - name: rcg-deny").unwrap();
        let end = t.find("\n# Private DNS").unwrap();
        format!("{}{}", &t[..start], &t[end..])
            .replace("name_prefix: fwp-globojava", "name_prefix: fwp-gj")
    });
    env.reset_stats().await;
    let out = apply(&env, &renamed, "fw-p2").await;
    assert!(
        out.stdout.contains(
            "- delete firewallPolicies/fwp-globojava-global/ruleCollectionGroups/rcg-deny"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("- delete firewallPolicies/fwp-globojava-eastus"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("only with --prune"), "{}", out.stdout);
    let stats = env.stats().await;
    assert_eq!(stats["deletes"], 0, "{stats}");
    assert_eq!(op(&stats, "PUT firewallPolicies"), 7, "{stats}");
    assert_eq!(op(&stats, "PUT azureFirewalls"), 7, "{stats}");
    let fw = resource(&env, &net_id("azureFirewalls/afw-hub-eastus")).await;
    assert!(
        fw["properties"]["firewallPolicy"]["id"]
            .as_str()
            .unwrap()
            .ends_with("/fwp-gj-eastus")
    );

    // With --prune: the 7 old children and the dropped group go, in that order.
    env.reset_stats().await;
    let out = env
        .step("fw-policy")
        .intent(&renamed)
        .run_key("fw-p2")
        .apply()
        .arg("--prune")
        .run()
        .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let stats = env.stats().await;
    assert_eq!(stats["deletes"], 8, "{stats}");
    assert_eq!(writes(&stats).len(), 2, "{stats}");
    let deletes = env.logged_paths("DELETE").await;
    assert!(
        deletes
            .last()
            .unwrap()
            .contains("ruleCollectionGroups/rcg-deny"),
        "{deletes:?}"
    );
    assert!(
        resource(&env, &net_id("firewallPolicies/fwp-globojava-eastus"))
            .await
            .is_null()
    );

    env.reset_stats().await;
    let out = apply(&env, &renamed, "fw-p2").await;
    assert!(out.stdout.contains("No changes."), "{}", out.stdout);
    assert!(writes(&env.stats().await).is_empty());
}

/// Records the apply traffic from the fresh world and validates it against Microsoft's specs
/// with `check-traffic` (about 100 s). Runs when the shared folder is present
/// (`NETSTEP_SHARED` or `<repo>/../shared`, like armsim's scenario test).
#[ignore = "oav over this step's own scenarios (~100 s); CI validates every step's traffic once in tests/pipeline/tests/globojava.rs; run with --ignored"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_apply_traffic_passes_check_traffic() {
    let shared = std::env::var_os("NETSTEP_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared"));
    let checker = shared.join("azure-specs/check-traffic");
    if !checker.exists() {
        eprintln!("skipping: {} not found", checker.display());
        return;
    }
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    let intent = standard_intent(&env, "intent.yaml", |t| t);
    let dir = env.dir.path().join("traffic");
    let out = env
        .step("fw-policy")
        .intent(&intent)
        .run_key("fw-rec")
        .apply()
        .arg(format!("--record-traffic={}", dir.display()))
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert!(files >= 20, "only {files} exchanges recorded");
    let res = tokio::process::Command::new(&checker)
        .arg(&dir)
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&res.stdout);
    eprintln!("{report}");
    assert!(
        res.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(report.contains(" 0 failed"), "{report}");
    for op in [
        "FirewallPolicies_CreateOrUpdate",
        "FirewallPolicyRuleCollectionGroups_CreateOrUpdate",
        "AzureFirewalls_CreateOrUpdate",
        "AzureFirewalls_Get",
        "AzureFirewalls_List",
        "FirewallPolicies_List",
    ] {
        assert!(report.contains(op), "{op} not covered:\n{report}");
    }
}
