//! `vnets` end to end: the real binaries against armsim.
//!
//! - GloboJava from a subscription with only its resource groups
//!   (tests/armsim/worlds/empty.json) and examples/globojava/intent-managed.yaml (every VNet
//!   managed): the infra pipeline (vnets first) creates every VNet, subnet, public IP and hub
//!   firewall, then everything else; fw-policy associates the policies; verify passes; a
//!   re-run writes nothing; a CIDR added to a managed spoke updates exactly that VNet and
//!   resyncs its peering; all recorded traffic passes Microsoft's validator.
//! - A CIDR removed while a subnet uses it: plan and apply refuse (exit 2), zero writes.
//! - An existing VNet with a foreign tag and subnet: only the declared tags are added.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pipeline_tests::{
    Env, EnvOptions, STEPS, TEST_TOKEN, check_traffic, repo_root, write_ops as writes,
};
use serde_json::{Value, json};

const SUB: &str = "6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718";
const API: &str = "api-version=2026-07-01";

fn net_id(rg: &str, path: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Network/{path}")
}

fn empty_world() -> EnvOptions {
    EnvOptions {
        world: "tests/armsim/worlds/empty.json".into(),
        ..EnvOptions::globojava().file_state()
    }
}

fn managed_intent() -> String {
    std::fs::read_to_string(repo_root().join("examples/globojava/intent-managed.yaml"))
        .expect("intent-managed.yaml")
}

fn write_intent(env: &Env, name: &str, text: &str) -> PathBuf {
    let p = env.dir.path().join(name);
    std::fs::write(&p, text).expect("write intent");
    p
}

fn figures(label: &str, stats: &Value) {
    println!(
        "{label}: requests={} reads={} writes={} deletes={} polls={}; write ops: {:?}",
        stats["requests"],
        stats["reads"],
        stats["writes"],
        stats["deletes"],
        stats["polls"],
        writes(stats)
    );
}

async fn pipeline(env: &Env, intent: &Path, key: &str, traffic: Option<&Path>) {
    steps(env, &STEPS, intent, key, traffic).await;
}

async fn steps(env: &Env, which: &[&str], intent: &Path, key: &str, traffic: Option<&Path>) {
    for &step in which {
        let mut cmd = env.step(step).intent(intent).run_key(key).apply();
        if let Some(t) = traffic {
            cmd = cmd.arg(format!("--record-traffic={}", t.join(step).display()));
        }
        let out = cmd.run().await;
        assert_eq!(
            out.code, 0,
            "{step} ({key}) exit {}:\n{}\n{}",
            out.code, out.stdout, out.stderr
        );
        if step == "verify" {
            assert_eq!(
                out.outputs.get("drift").map(String::as_str),
                Some("false"),
                "{}",
                out.stdout
            );
        }
    }
}

/// A direct ARM request to armsim (what another team would do), waiting for its LRO.
async fn arm(env: &Env, method: reqwest::Method, id: &str, body: &Value) -> Value {
    let url = if id.contains('?') {
        format!("{}{id}&{API}", env.sim.url)
    } else {
        format!("{}{id}?{API}", env.sim.url)
    };
    let r = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(TEST_TOKEN)
        .json(body)
        .send()
        .await
        .expect("arm request");
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{id}: {status} {v}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    v
}

async fn get(env: &Env, id: &str) -> Value {
    let r = reqwest::Client::new()
        .get(format!("{}{id}?{API}", env.sim.url))
        .bearer_auth(TEST_TOKEN)
        .send()
        .await
        .expect("get");
    assert!(r.status().is_success(), "GET {id}: {}", r.status());
    r.json().await.expect("json")
}

fn total_writes(stats: &Value) -> u64 {
    writes(stats).iter().map(|(_, n)| n).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn globojava_from_scratch_then_noop_then_cidr_added_with_peering_resync() {
    let env = Env::start(empty_world()).await;
    let intent = write_intent(&env, "intent-managed.yaml", &managed_intent());
    let traffic = env.dir.path().join("traffic");

    // 1. From an empty subscription: vnets (its own figures), then the rest of the pipeline.
    assert_eq!(STEPS[0], "vnets", "vnets runs first");
    steps(&env, &STEPS[..1], &intent, "scratch", Some(&traffic)).await;
    let vnets1 = env.stats().await;
    figures("vnets from scratch", &vnets1);
    assert_eq!(
        writes(&vnets1),
        [
            ("PUT azureFirewalls".to_string(), 7),
            ("PUT publicIPAddresses".to_string(), 7),
            ("PUT virtualNetworks".to_string(), 21)
        ]
    );
    steps(&env, &STEPS[1..], &intent, "scratch", Some(&traffic)).await;
    let run1 = env.stats().await;
    figures(
        "from scratch (whole infra pipeline + fw-policy + verify)",
        &run1,
    );
    let log = env.logged_paths("PUT").await;
    let puts = |kind: &str| log.iter().filter(|p| p.contains(kind)).count();
    assert_eq!(
        log.iter()
            .filter(|p| p.contains("/virtualNetworks/") && !p.contains("/virtualNetworkPeerings/"))
            .count(),
        21,
        "one PUT per VNet"
    );
    assert_eq!(puts("/publicIPAddresses/"), 7);
    // Created by vnets, then associated with their policy by fw-policy.
    assert_eq!(puts("/azureFirewalls/"), 14);
    for (k, r) in [(1, "eastus"), (7, "southafricanorth")] {
        let fw = get(
            &env,
            &net_id(
                "rg-globojava-connectivity",
                &format!("azureFirewalls/afw-hub-{r}"),
            ),
        )
        .await;
        assert_eq!(fw["properties"]["provisioningState"], "Succeeded");
        assert_eq!(
            fw["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"],
            format!("10.{k}.0.4")
        );
        assert!(
            fw["properties"]["firewallPolicy"]["id"]
                .as_str()
                .unwrap()
                .ends_with(&format!("fwp-globojava-{r}"))
        );
        assert_eq!(fw["zones"], json!(["1", "2", "3"]));
        let spoke = get(
            &env,
            &net_id(
                "rg-globojava-spokes",
                &format!("virtualNetworks/vnet-prod-{r}"),
            ),
        )
        .await;
        assert_eq!(
            spoke["properties"]["dhcpOptions"]["dnsServers"],
            json!([format!("10.{k}.0.4")])
        );
        assert_eq!(spoke["tags"]["env"], "prod");
        assert_eq!(spoke["tags"]["managed-by"], "netstep");
    }

    // 2. Re-run of the unchanged intent: zero writes.
    env.reset_stats().await;
    steps(&env, &STEPS[..1], &intent, "noop", None).await;
    figures("vnets no-op re-run", &env.stats().await);
    steps(&env, &STEPS[1..], &intent, "noop", None).await;
    let run2 = env.stats().await;
    figures("no-op re-run", &run2);
    assert!(writes(&run2).is_empty(), "{:?}", writes(&run2));

    // 3. Another team peers its VNet with vnet-prod-eastus (user peerings, both sides).
    let shared = net_id("rg-globojava-spokes", "virtualNetworks/vnet-shared");
    let prod = net_id("rg-globojava-spokes", "virtualNetworks/vnet-prod-eastus");
    arm(
        &env,
        reqwest::Method::PUT,
        &shared,
        &json!({"location": "eastus", "properties": {"addressSpace": {"addressPrefixes": ["10.200.0.0/16"]}}}),
    )
    .await;
    let peering = |remote: &str| json!({"properties": {"remoteVirtualNetwork": {"id": remote}, "allowVirtualNetworkAccess": true}});
    arm(
        &env,
        reqwest::Method::PUT,
        &format!("{shared}/virtualNetworkPeerings/peer-prod-eastus"),
        &peering(&prod),
    )
    .await;
    arm(
        &env,
        reqwest::Method::PUT,
        &format!("{prod}/virtualNetworkPeerings/peer-shared"),
        &peering(&shared),
    )
    .await;

    // 4. A CIDR added to that managed spoke: exactly one VNet PUT, the stale remote peering
    //    resynced, everything else unchanged, verify passes.
    let grown = managed_intent().replacen(
        "address_space: [10.1.16.0/20]",
        "address_space: [10.1.16.0/20, 10.1.64.0/20]",
        1,
    );
    let grown = write_intent(&env, "intent-grown.yaml", &grown);
    env.reset_stats().await;
    let plan = env
        .step("vnets")
        .intent(&grown)
        .run_key("grow-plan")
        .run()
        .await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout.contains("~ update") && plan.stdout.contains("vnet-prod-eastus"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("Plan: 0 to create, 1 to update"),
        "{}",
        plan.stdout
    );
    pipeline(&env, &grown, "grow", Some(&traffic)).await;
    let run3 = env.stats().await;
    figures("CIDR added to vnet-prod-eastus", &run3);
    let put_paths = env.logged_paths("PUT").await;
    let vnet_puts: Vec<&String> = put_paths
        .iter()
        .filter(|p| p.contains("/virtualNetworks/") && !p.contains("/virtualNetworkPeerings/"))
        .collect();
    assert_eq!(vnet_puts.len(), 1, "{put_paths:?}");
    assert!(vnet_puts[0].ends_with("/vnet-prod-eastus"));
    let peering_puts: Vec<&String> = put_paths
        .iter()
        .filter(|p| p.contains("/virtualNetworkPeerings/"))
        .collect();
    assert_eq!(peering_puts.len(), 1, "{put_paths:?}");
    assert!(peering_puts[0].ends_with("/vnet-shared/virtualNetworkPeerings/peer-prod-eastus"));
    assert_eq!(
        total_writes(&run3),
        2,
        "only the VNet and the peering were written: {:?}",
        writes(&run3)
    );
    let prod_now = get(&env, &prod).await;
    let theirs = get(
        &env,
        &format!("{shared}/virtualNetworkPeerings/peer-prod-eastus"),
    )
    .await;
    assert_eq!(theirs["properties"]["peeringSyncLevel"], "FullyInSync");
    assert_eq!(
        theirs["properties"]["remoteAddressSpace"]["addressPrefixes"],
        json!(["10.1.16.0/20", "10.1.64.0/20"])
    );
    for p in prod_now["properties"]["virtualNetworkPeerings"]
        .as_array()
        .unwrap()
    {
        assert_eq!(p["properties"]["peeringSyncLevel"], "FullyInSync", "{p}");
    }
    assert!(
        prod_now["properties"]["virtualNetworkPeerings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "peer-shared"),
        "the user peering survived the VNet PUT"
    );

    // 5. Every request of the three runs, against Microsoft's specs (one invocation).
    let check = check_traffic(&traffic).await;
    println!(
        "check-traffic: {} exchanges recorded; {}",
        check.recorded, check.summary
    );
    for op in [
        "VirtualNetworks_CreateOrUpdate",
        "PublicIPAddresses_CreateOrUpdate",
        "AzureFirewalls_CreateOrUpdate",
        "VirtualNetworkPeerings_CreateOrUpdate",
    ] {
        assert!(
            check.operations.iter().any(|o| o.contains(op)),
            "{op} validated: {:?}",
            check.operations
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_a_cidr_a_subnet_still_uses_is_refused_and_writes_nothing() {
    let env = Env::start(empty_world()).await;
    let two = managed_intent()
        .replacen(
            "address_space: [10.1.16.0/20]",
            "address_space: [10.1.16.0/20, 10.1.64.0/20]",
            1,
        )
        .replacen(
            "          - {name: snet-app, prefix: 10.1.16.0/24}\n",
            "          - {name: snet-app, prefix: 10.1.16.0/24}\n          - {name: snet-data, prefix: 10.1.64.0/24}\n",
            1,
        );
    assert!(two.contains("snet-data"));
    let two = write_intent(&env, "intent-two.yaml", &two);
    let out = env
        .step("vnets")
        .intent(&two)
        .run_key("two")
        .apply()
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);

    // The CIDR and the subnet's declaration go; the subnet is still there.
    let one = write_intent(&env, "intent-one.yaml", &managed_intent());
    let line = managed_intent()
        .lines()
        .position(|l| l.contains("address_space: [10.1.16.0/20]"))
        .unwrap()
        + 1;
    env.reset_stats().await;
    for mode in ["plan", "apply"] {
        let out = env
            .step("vnets")
            .intent(&one)
            .run_key(&format!("one-{mode}"))
            .mode(mode)
            .run()
            .await;
        assert_eq!(out.code, 2, "{mode}: {}\n{}", out.stdout, out.stderr);
        let msg = format!("{}{}", out.stdout, out.stderr);
        for needle in [
            "vnet-prod-eastus",
            "10.1.64.0/20",
            "snet-data",
            &format!("intent-one.yaml:{line}:"),
            "regions[0].spokes[0].address_space",
        ] {
            assert!(msg.contains(needle), "{mode}: {needle} missing in\n{msg}");
        }
    }
    let stats = env.stats().await;
    assert!(writes(&stats).is_empty(), "{:?}", writes(&stats));
    let prod = get(
        &env,
        &net_id("rg-globojava-spokes", "virtualNetworks/vnet-prod-eastus"),
    )
    .await;
    assert_eq!(
        prod["properties"]["addressSpace"]["addressPrefixes"],
        json!(["10.1.16.0/20", "10.1.64.0/20"])
    );

    // With --prune the free subnet is deleted together with the CIDR.
    let out = env
        .step("vnets")
        .intent(&one)
        .run_key("one-prune")
        .apply()
        .arg("--prune")
        .run()
        .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let prod = get(
        &env,
        &net_id("rg-globojava-spokes", "virtualNetworks/vnet-prod-eastus"),
    )
    .await;
    assert_eq!(
        prod["properties"]["addressSpace"]["addressPrefixes"],
        json!(["10.1.16.0/20"])
    );
    assert_eq!(prod["properties"]["subnets"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subnet_in_use_by_the_firewall_is_never_deleted() {
    let env = Env::start(empty_world()).await;
    let intent = write_intent(&env, "intent-managed.yaml", &managed_intent());
    let out = env
        .step("vnets")
        .intent(&intent)
        .run_key("a")
        .apply()
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The eastus firewall becomes unmanaged (a reference); its subnet leaves the intent.
    let text = managed_intent().replacen(
        "      subnets:\n        - {name: AzureFirewallSubnet, prefix: 10.1.0.0/26}\n      firewall:\n        name: afw-hub-eastus\n        managed: true\n        sku_tier: Standard\n        zones: [\"1\", \"2\", \"3\"]\n        public_ip: pip-afw-hub-eastus\n",
        "      firewall: afw-hub-eastus\n",
        1,
    );
    assert!(
        text.contains("firewall: afw-hub-eastus\n"),
        "fixture edit applied"
    );
    let edited = write_intent(&env, "intent-nosubnet.yaml", &text);
    env.reset_stats().await;
    let out = env
        .step("vnets")
        .intent(&edited)
        .run_key("b")
        .apply()
        .arg("--prune")
        .run()
        .await;
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("AzureFirewallSubnet") && out.stderr.contains("in use"),
        "{}",
        out.stderr
    );
    assert!(writes(&env.stats().await).is_empty());
    // Without --prune it is kept and the plan says so.
    let out = env
        .step("vnets")
        .intent(&edited)
        .run_key("c")
        .apply()
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("subnet AzureFirewallSubnet (10.1.0.0/26) is not in the intent; kept"),
        "{}",
        out.stdout
    );
    assert!(writes(&env.stats().await).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn existing_vnets_get_only_their_declared_tags() {
    // GloboJava's estate, with a foreign subnet added to an existing (unmanaged) spoke.
    let mut world: Value = serde_json::from_slice(
        &std::fs::read(repo_root().join("examples/globojava/world.json")).unwrap(),
    )
    .unwrap();
    let prod = net_id("rg-globojava-spokes", "virtualNetworks/vnet-prod-eastus");
    for r in world["resources"].as_array_mut().unwrap() {
        if r["id"] == prod {
            r["properties"]["subnets"].as_array_mut().unwrap().push(
                json!({"name": "snet-foreign", "properties": {"addressPrefix": "10.1.20.0/24"}}),
            );
            r["properties"]["dhcpOptions"] = json!({"dnsServers": ["192.0.2.53"]});
            // Subscription vending forgot the env tag: tag-groups adds it.
            r["tags"].as_object_mut().unwrap().remove("env");
        }
    }
    let dir = tempfile_dir();
    let world_path = dir.join("world.json");
    std::fs::write(&world_path, serde_json::to_vec_pretty(&world).unwrap()).unwrap();
    let env = Env::start(EnvOptions {
        world: world_path,
        ..EnvOptions::globojava().file_state()
    })
    .await;
    let before = get(&env, &prod).await;
    let intent = env.globojava_intent();
    let out = env
        .step("vnets")
        .intent(&intent)
        .run_key("r1")
        .apply()
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let stats = env.stats().await;
    figures("vnets on the GloboJava estate", &stats);
    assert!(
        writes(&stats).is_empty(),
        "the estate matches the managed hubs; existing spokes are read only: {:?}",
        writes(&stats)
    );
    pipeline(&env, &intent, "r1", None).await;
    let after = get(&env, &prod).await;
    // Only the declared tag was added; the foreign tag, the foreign subnet, the DNS servers
    // and the address space are untouched.
    let mut expected = before["tags"].clone();
    expected["env"] = json!("prod");
    assert_eq!(after["tags"], expected);
    assert_eq!(after["tags"]["costcenter"], "cc-4711");
    assert_eq!(
        after["properties"]["subnets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["snet-app", "snet-foreign"]
    );
    assert_eq!(
        after["properties"]["dhcpOptions"],
        before["properties"]["dhcpOptions"]
    );
    assert_eq!(
        after["properties"]["addressSpace"],
        before["properties"]["addressSpace"]
    );
    let puts = env.logged_paths("PUT").await;
    assert!(
        !puts.iter().any(|p| p.eq_ignore_ascii_case(&prod)),
        "no PUT of the existing VNet: {puts:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "vnets-e2e-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_firewall_times_out_with_75_and_the_rerun_waits_for_it_without_writing() {
    let env = Env::start(empty_world()).await;
    let intent = write_intent(&env, "intent-managed.yaml", &managed_intent());
    // One firewall takes 5 x (10 x lro_delay + 1 s) = 7.5 s to provision.
    let (status, _) = env
        .sim_post(
            "faults",
            &json!({"match": {"method": "PUT", "path_contains": "azureFirewalls/afw-hub-eastus"},
                    "kind": "slow-lro", "count": 1}),
        )
        .await;
    assert!(status < 300);
    let out = env
        .step("vnets")
        .intent(&intent)
        .run_key("slow-1")
        .apply()
        .arg("--firewall-timeout-secs=2")
        .env("NETSTEP_PROGRESS_MS", "500")
        .run()
        .await;
    assert_eq!(out.code, 75, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("waiting for firewall"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("provisioning_state"), "{}", out.stderr);
    assert!(
        out.stderr.contains("still provisioning after 2 s"),
        "{}",
        out.stderr
    );
    // The retry finds the firewall as intended but still provisioning: it waits, no write.
    env.reset_stats().await;
    let out = env
        .step("vnets")
        .intent(&intent)
        .run_key("slow-2")
        .apply()
        .run()
        .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("afw-hub-eastus: still provisioning (Updating); apply waits for it"),
        "{}",
        out.stdout
    );
    assert!(writes(&env.stats().await).is_empty());
    let fw = get(
        &env,
        &net_id("rg-globojava-connectivity", "azureFirewalls/afw-hub-eastus"),
    )
    .await;
    assert_eq!(fw["properties"]["provisioningState"], "Succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_reports_managed_vnet_drift_and_stale_peerings_and_vnets_repairs_them() {
    let env = Env::start(empty_world()).await;
    let intent = write_intent(&env, "intent-managed.yaml", &managed_intent());
    let out = env
        .step("vnets")
        .intent(&intent)
        .run_key("base")
        .apply()
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Someone peers vnet-shared with vnet-nonprod-eastus, then changes vnet-shared's space
    // outside netstep and never syncs: nonprod's peering is stale. Someone also drops the
    // DNS servers of vnet-prod-eastus.
    let shared = net_id("rg-globojava-spokes", "virtualNetworks/vnet-shared");
    let nonprod = net_id("rg-globojava-spokes", "virtualNetworks/vnet-nonprod-eastus");
    let prod = net_id("rg-globojava-spokes", "virtualNetworks/vnet-prod-eastus");
    let space = |p: &str| json!({"location": "eastus", "properties": {"addressSpace": {"addressPrefixes": [p]}}});
    arm(&env, reqwest::Method::PUT, &shared, &space("10.200.0.0/16")).await;
    let peering = |remote: &str| json!({"properties": {"remoteVirtualNetwork": {"id": remote}}});
    arm(
        &env,
        reqwest::Method::PUT,
        &format!("{nonprod}/virtualNetworkPeerings/peer-shared"),
        &peering(&shared),
    )
    .await;
    arm(
        &env,
        reqwest::Method::PUT,
        &format!("{shared}/virtualNetworkPeerings/peer-nonprod"),
        &peering(&nonprod),
    )
    .await;
    let mut grown = get(&env, &shared).await;
    grown["properties"]["addressSpace"]["addressPrefixes"] =
        json!(["10.200.0.0/16", "10.201.0.0/16"]);
    for k in ["etag", "id", "name", "type"] {
        grown.as_object_mut().unwrap().remove(k);
    }
    arm(&env, reqwest::Method::PUT, &shared, &grown).await;
    let mut p = get(&env, &prod).await;
    p["properties"]
        .as_object_mut()
        .unwrap()
        .remove("dhcpOptions");
    let (status, _) = env
        .sim_post("drift", &json!({"op": "put", "resource": p}))
        .await;
    assert!(status < 300);

    let report = env
        .step("verify")
        .intent(&intent)
        .run_key("check-1")
        .arg("--only=groups")
        .run()
        .await;
    assert_eq!(report.code, 3, "{}\n{}", report.stdout, report.stderr);
    for needle in [
        "✗ peering-sync",
        "vnet-nonprod-eastus/virtualNetworkPeerings/peer-shared properties.peeringSyncLevel: expected \"FullyInSync\", actual \"LocalNotInSync\"",
        "✗ managed-vnets",
        "vnet-prod-eastus properties.dhcpOptions.dnsServers: expected [\"10.1.0.4\"], actual []",
        "✓ managed-firewalls (7 checked)",
    ] {
        assert!(
            report.stdout.contains(needle),
            "{needle}:\n{}",
            report.stdout
        );
    }

    // vnets repairs both: one VNet PUT (DNS servers) and the stale peering synced on the
    // managed side; nothing else.
    env.reset_stats().await;
    let out = env
        .step("vnets")
        .intent(&intent)
        .run_key("repair")
        .apply()
        .run()
        .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("peerings out of sync"),
        "{}",
        out.stdout
    );
    let stats = env.stats().await;
    assert_eq!(
        writes(&stats),
        [
            ("PUT virtualNetworkPeerings".to_string(), 1),
            ("PUT virtualNetworks".to_string(), 1)
        ]
    );
    let report = env
        .step("verify")
        .intent(&intent)
        .run_key("check-2")
        .arg("--only=groups")
        .run()
        .await;
    for needle in ["✓ peering-sync", "✓ managed-vnets", "✓ managed-firewalls"] {
        assert!(
            report.stdout.contains(needle),
            "{needle}:\n{}",
            report.stdout
        );
    }
}
