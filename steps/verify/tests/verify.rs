//! verify end to end: the real binary against a converged GloboJava estate in armsim (built
//! by `common::converge` through the ARM API), then drift behind its back.

mod common;

use pipeline_tests::{Env, EnvOptions, StepOutput};
use serde_json::{Value, json};
use std::time::Duration;

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
    let traffic = env.dir.path().join("traffic");
    let out = verify(
        &env,
        "sha1-infra",
        &[&format!("--record-traffic={}", traffic.display())],
    )
    .await;
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
    // Every exchange was recorded (oav format) for check-traffic; set
    // NETSTEP_VERIFY_TRAFFIC_OUT to keep a copy.
    let recorded: Vec<_> = std::fs::read_dir(&traffic).unwrap().flatten().collect();
    assert!(
        recorded.len() >= 42,
        "{} exchanges recorded",
        recorded.len()
    );
    if let Ok(keep) = std::env::var("NETSTEP_VERIFY_TRAFFIC_OUT") {
        std::fs::create_dir_all(&keep).unwrap();
        for e in &recorded {
            std::fs::copy(e.path(), std::path::Path::new(&keep).join(e.file_name())).unwrap();
        }
    }
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

    // --outcome records the workflow outcome, breaks the lease a killed step of the run left,
    // and makes no ARM call.
    let store = netstep::state::StateStore::open(&env.state, None)
        .await
        .unwrap();
    let lock = netstep::context::lock_name(&common::intent(&env).network_manager_id());
    let killed = store
        .acquire_lock(
            &lock,
            "mesh-connect run sha1-infra pid 4242",
            LEASE,
            Duration::ZERO,
        )
        .await
        .unwrap();
    std::mem::forget(killed);
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
    assert_eq!(
        out.outputs["lease-broken"],
        "mesh-connect run sha1-infra pid 4242"
    );
    assert_eq!(env.stats().await["requests"], 0);
    let next = store
        .acquire_lock(&lock, "tag-groups run sha9 pid 1", LEASE, Duration::ZERO)
        .await
        .expect("the lease is free again");
    next.release().await.unwrap();
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
    // A lease of another run is left alone.
    let other = store
        .acquire_lock(
            &lock,
            "admin-rules run sha2-infra pid 7",
            LEASE,
            Duration::ZERO,
        )
        .await
        .unwrap();
    let third = env
        .step("verify")
        .run_key("sha1-infra")
        .arg("--outcome=Failed")
        .run()
        .await;
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert_eq!(third.outputs["lease-broken"], "");
    other.release().await.expect("still ours");
}

const LEASE: Duration = Duration::from_secs(60);

const SUB: &str = "/subscriptions/6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_behind_our_back_exits_3_naming_each_difference() {
    let env = converged_env().await;
    let intent = common::intent(&env);
    let arm = common::client(&env);
    let nm = intent.network_manager_id();
    // A deleted DNS link.
    let zone = format!(
        "{SUB}/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/privateDnsZones/globojava.com"
    );
    let (st, _) = env
        .sim_post("drift", &json!({"op": "delete", "id": format!("{zone}/virtualNetworkLinks/link-vnet-nonprod-westus")}))
        .await;
    assert_eq!(st, 200);
    // A changed admin rule (priority 100 -> 150).
    let rule_id = format!(
        "{nm}/securityAdminConfigurations/sac-guardrails/ruleCollections/rc-env-isolation/rules/deny-prod-to-nonprod-out"
    );
    let mut rule = arm.get(&rule_id).await.unwrap().unwrap();
    rule["properties"]["priority"] = json!(150);
    let (st, body) = env
        .sim_post("drift", &json!({"op": "put", "resource": rule}))
        .await;
    assert_eq!(st, 200, "{body}");
    // A retagged VNet: prod -> nonprod.
    let vnet = format!(
        "{SUB}/resourceGroups/rg-globojava-spokes/providers/Microsoft.Network/virtualNetworks/vnet-prod-westus"
    );
    let (st, body) = env
        .sim_post("drift", &json!({"op": "retag", "id": vnet, "tags": {"env": "nonprod", "costcenter": "cc-4711"}}))
        .await;
    assert_eq!(st, 200, "{body}");
    env.reset_stats().await;

    let out = verify(&env, "sha2-drift", &["--wait-membership=20"]).await;
    assert_eq!(
        out.code, 3,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert_eq!(out.outputs["drift"], "true");
    let r = report(&out);
    assert!(
        has_difference(
            &r,
            "/virtualNetworkLinks/link-vnet-nonprod-westus",
            "exists",
            json!(true),
            json!(false)
        ),
        "{r:#}"
    );
    assert!(
        has_difference(
            &r,
            "/rules/deny-prod-to-nonprod-out",
            "properties.priority",
            json!(100),
            json!(150)
        ),
        "{r:#}"
    );
    assert!(
        has_difference(
            &r,
            "/virtualNetworks/vnet-prod-westus",
            "tags.env",
            json!("prod"),
            json!("nonprod")
        ),
        "{r:#}"
    );
    assert!(
        has_difference(
            &r,
            "/virtualNetworks/vnet-prod-westus",
            "membership[all-prod-spokes]",
            json!(true),
            json!(false)
        ),
        "{r:#}"
    );
    assert!(
        has_difference(
            &r,
            "/virtualNetworks/vnet-prod-westus",
            "membership[all-nonprod-spokes]",
            json!(false),
            json!(true)
        ),
        "{r:#}"
    );
    // The retagged spoke is no longer isolated from westus' nonprod spoke.
    assert!(
        differences(&r).iter().any(
            |d| d["resource"] == "vnet-prod-westus -> vnet-nonprod-westus"
                && d["field"] == "isolation"
        ),
        "{r:#}"
    );
    // The summary names them too.
    assert!(out.stdout.contains("✗ dns-links"), "{}", out.stdout);
    assert!(
        out.stdout.contains(
            "rules/deny-prod-to-nonprod-out properties.priority: expected 100, actual 150"
        ),
        "{}",
        out.stdout
    );
    assert_eq!(out.outputs["changes"], r["changes"].to_string());
    // Nothing else drifted.
    for ok in [
        "network-manager",
        "firewall-policies",
        "dns-records",
        "hub-mesh",
    ] {
        assert!(
            out.stdout.contains(&format!("✓ {ok} ")),
            "{ok}:\n{}",
            out.stdout
        );
    }
    // Written before exiting 3, read-only all the same.
    let rec = state_record(&env, "sha2-drift", "verify")
        .await
        .expect("record before exit 3");
    assert_eq!(rec["status"], "drift");
    assert!(common::writes(&env.stats().await).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_prod_vnet_is_a_dynamic_member_connected_to_its_hub_and_isolated() {
    let env = converged_env().await;
    // A VNet the intent does not name appears, tagged env=prod, in eastus.
    let vnet = format!(
        "{SUB}/resourceGroups/rg-globojava-spokes/providers/Microsoft.Network/virtualNetworks/vnet-prod2-eastus"
    );
    let (st, body) = env
        .sim_post(
            "drift",
            &json!({"op": "add_vnet", "resource": {
                "id": vnet, "location": "eastus", "tags": {"env": "prod"},
                "properties": {"addressSpace": {"addressPrefixes": ["10.1.64.0/20"]},
                    "subnets": [{"name": "snet-app", "properties": {"addressPrefix": "10.1.64.0/24"}}]}}}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    // Immediately: policy has not evaluated it yet; verify waits for it.
    let out = verify(&env, "sha3-new", &["--wait-membership=30"]).await;
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let r = report(&out);
    assert_eq!(
        r["membership"]["vnet-prod2-eastus"],
        json!(["all-prod-spokes", "all-prod-spokes-eastus"]),
        "{r:#}"
    );
    let check = |name: &str| {
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(check("spoke-to-hub")["checked"], 15);
    assert_eq!(check("spoke-to-hub")["passed"], true);
    // 8 prod x 7 nonprod, both directions.
    assert_eq!(check("prod-nonprod-isolation")["checked"], 8 * 7 * 2);
    assert_eq!(check("prod-nonprod-isolation")["passed"], true);
    assert!(
        check("group-membership")["notes"]
            .to_string()
            .contains("vnet-prod2-eastus"),
        "{r:#}"
    );

    // The same VNet, but the admin rules no longer apply to prod: it is found leaking.
    let arm = common::client(&env);
    let intent = common::intent(&env);
    let rc = format!(
        "{}/securityAdminConfigurations/sac-guardrails/ruleCollections/rc-env-isolation",
        intent.network_manager_id()
    );
    let mut body = arm.get(&rc).await.unwrap().unwrap();
    body["properties"]["appliesToGroups"] =
        json!([{"networkGroupId": intent.network_group_id("all-nonprod-spokes")}]);
    let (st, b) = env
        .sim_post("drift", &json!({"op": "put", "resource": body}))
        .await;
    assert_eq!(st, 200, "{b}");
    let out = verify(
        &env,
        "sha3-leak",
        &["--only=security-admin", "--wait-membership=5"],
    )
    .await;
    assert_eq!(
        out.code, 3,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let r = report(&out);
    // Nonprod's own rules still deny both ways at the nonprod side: isolation holds.
    assert_eq!(
        check_of(&r, "prod-nonprod-isolation")["passed"],
        true,
        "{r:#}"
    );
    assert!(
        has_difference(
            &r,
            "/rules/deny-prod-to-nonprod-out",
            "ruleCollection.appliesToGroups",
            json!(["all-nonprod-spokes", "all-prod-spokes"]),
            json!(["all-nonprod-spokes"])
        ),
        "{r:#}"
    );
}

fn check_of(r: &Value, name: &str) -> Value {
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_wait_is_bounded_and_waits_for_policy() {
    let mut opts = EnvOptions::globojava().file_state();
    opts.sim.policy_delay = std::time::Duration::from_secs(3);
    let env = Env::start(opts).await;
    let intent = common::intent(&env);
    common::converge(&env, &intent).await;
    // Let the initial policy evaluation land.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let vnet = format!(
        "{SUB}/resourceGroups/rg-globojava-spokes/providers/Microsoft.Network/virtualNetworks/vnet-prod2-westus"
    );
    let (st, body) = env
        .sim_post(
            "drift",
            &json!({"op": "add_vnet", "resource": {
                "id": vnet, "location": "westus", "tags": {"env": "prod"},
                "properties": {"addressSpace": {"addressPrefixes": ["10.2.64.0/20"]}}}}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    // No waiting: policy has not caught up, the new VNet is not a member yet -> drift.
    let out = verify(
        &env,
        "sha4-nowait",
        &["--wait-membership=0", "--only=groups"],
    )
    .await;
    assert_eq!(
        out.code, 3,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let r = report(&out);
    assert!(
        has_difference(
            &r,
            "/vnet-prod2-westus",
            "membership[all-prod-spokes-westus]",
            json!(true),
            json!(false)
        ),
        "{r:#}"
    );
    assert!(
        check_of(&r, "group-membership")["notes"]
            .to_string()
            .contains("had not converged"),
        "{r:#}"
    );
    // With a bound long enough, verify polls until policy has evaluated it.
    let out = verify(
        &env,
        "sha4-wait",
        &["--wait-membership=30", "--only=groups"],
    )
    .await;
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert!(
        out.stderr.contains("waiting for policy-driven membership"),
        "{}",
        out.stderr
    );
    assert_eq!(
        report(&out)["membership"]["vnet-prod2-westus"],
        json!(["all-prod-spokes", "all-prod-spokes-westus"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_and_outcome_records_in_azurite() {
    let env = Env::start(EnvOptions::globojava()).await;
    let intent = common::intent(&env);
    common::converge(&env, &intent).await;
    let out = verify(&env, "sha5-az", &["--only=dns"]).await;
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert_eq!(out.outputs["record"], "runs/sha5-az/verify.json");
    let rec = state_record(&env, "sha5-az", "verify")
        .await
        .expect("verify record");
    assert_eq!(rec["status"], "converged");
    assert_eq!(rec["extra"]["report"]["checks"][1]["name"], "dns-links");
    assert_eq!(rec["extra"]["report"]["checks"][1]["checked"], 21);
    let store = netstep::state::StateStore::open(&env.state, None)
        .await
        .unwrap();
    let lock = netstep::context::lock_name(&intent.network_manager_id());
    let killed = store
        .acquire_lock(
            &lock,
            "dns-link run sha5-az pid 4242",
            LEASE,
            Duration::ZERO,
        )
        .await
        .unwrap();
    std::mem::forget(killed);
    env.reset_stats().await;
    let out = env
        .step("verify")
        .run_key("sha5-az")
        .arg("--outcome=Succeeded")
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.outputs["lease-broken"], "dns-link run sha5-az pid 4242");
    // Broken at once (break period 0): the next pipeline does not wait for the 60 s lease.
    let next = store
        .acquire_lock(
            &lock,
            "tag-groups run sha6 pid 1",
            LEASE,
            Duration::from_secs(2),
        )
        .await
        .expect("the lease is free again");
    next.release().await.unwrap();
    assert_eq!(env.stats().await["requests"], 0);
    let rec = state_record(&env, "sha5-az", "outcome")
        .await
        .expect("outcome record");
    assert_eq!(rec["status"], "converged");
    assert_eq!(rec["extra"]["outcome"], "Succeeded");
    assert_eq!(rec["intent_digest"], intent.digest());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_allow_rules_on_both_sides_break_isolation() {
    let env = converged_env().await;
    let intent = common::intent(&env);
    let rc = format!(
        "{}/securityAdminConfigurations/sac-guardrails/ruleCollections/rc-env-isolation",
        intent.network_manager_id()
    );
    let prod = intent.network_group_id("all-prod-spokes");
    let nonprod = intent.network_group_id("all-nonprod-spokes");
    for (name, dir, prio) in [("aa-out", "Outbound", 10), ("aa-in", "Inbound", 11)] {
        let rule = json!({"id": format!("{rc}/rules/{name}"), "kind": "Custom", "properties": {
            "priority": prio, "direction": dir, "access": "AlwaysAllow", "protocol": "Tcp",
            "sources": [{"addressPrefixType": "NetworkGroup", "addressPrefix": prod}],
            "destinations": [{"addressPrefixType": "NetworkGroup", "addressPrefix": nonprod}],
            "sourcePortRanges": ["0-65535"], "destinationPortRanges": ["443"]}});
        let (st, b) = env
            .sim_post("drift", &json!({"op": "put", "resource": rule}))
            .await;
        assert_eq!(st, 200, "{b}");
    }
    let out = verify(&env, "sha7-leak", &["--only=security-admin"]).await;
    assert_eq!(
        out.code, 3,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let r = report(&out);
    assert!(
        has_difference(&r, "/rules/aa-out", "active", json!(false), json!(true)),
        "{r:#}"
    );
    let leaks: Vec<Value> = differences(&r)
        .into_iter()
        .filter(|d| d["field"] == "isolation")
        .collect();
    // prod -> nonprod leaks (Tcp 443) in every pair; nonprod -> prod stays denied.
    assert_eq!(leaks.len(), 7 * 7, "{leaks:#?}");
    let one = leaks
        .iter()
        .find(|d| d["resource"] == "vnet-prod-eastus -> vnet-nonprod-westus")
        .expect("cross-region pair");
    assert_eq!(
        one["actual"]["at_source"]["allowed_by"],
        json!(format!("{rc}/rules/aa-out"))
    );
    assert_eq!(one["actual"]["at_destination"]["port"], 443);
    assert!(
        out.stdout.contains("✗ prod-nonprod-isolation (98 checked)"),
        "{}",
        out.stdout
    );
}
