//! GloboJava end to end: the seven real step binaries (vnets first; it writes nothing on this
//! estate, whose managed hubs and firewalls already match) in pipeline order against armsim (seeded
//! with GloboJava's estate) and a real Azurite. These are the acceptance tests of the steps:
//! converge from the estate, re-run with zero writes, minimal writes for a one-rule change,
//! drift found by verify and repaired by apply, tag-driven onboarding of a new VNet, records
//! digest-checked in the state store, and every request validated against Microsoft's specs.

use std::path::Path;

use netstep::state::{StateStore, Status};
use pipeline_tests::{Env, EnvOptions, STEPS, check_traffic, write_ops as writes};
use serde_json::{Value, json};

const SUB: &str = "6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718";

fn vnet_id(rg: &str, name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Network/virtualNetworks/{name}"
    )
}

fn figures(label: &str, stats: &Value) {
    println!(
        "{label}: requests={} reads={} writes={} deletes={} polls={} throttled={}; write ops: {:?}",
        stats["requests"],
        stats["reads"],
        stats["writes"],
        stats["deletes"],
        stats["polls"],
        stats["throttled"],
        writes(stats)
    );
}

async fn run_all(env: &Env, intent: &Path, key: &str, mode: &str, traffic: Option<&Path>) {
    for step in STEPS {
        let mut cmd = env.step(step).intent(intent).run_key(key).mode(mode);
        if let Some(t) = traffic {
            cmd = cmd.arg(format!("--record-traffic={}", t.join(step).display()));
        }
        let out = cmd.run().await;
        assert_eq!(
            out.code, 0,
            "{step} ({mode}, {key}) exit {}:\n{}\n{}",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn globojava_converges_reruns_with_zero_writes_and_validates_against_the_specs() {
    let env = Env::start(EnvOptions::globojava()).await;
    let intent = env.globojava_intent();
    let traffic = env.dir.path().join("traffic");

    // 1. From the estate: every step exits 0 and verify reports everything as intended.
    run_all(&env, &intent, "sha1-infra", "apply", Some(&traffic)).await;
    let run1 = env.stats().await;
    figures("run 1 (from the estate)", &run1);
    assert!(!writes(&run1).is_empty());
    assert_eq!(
        run1["throttled"], 0,
        "no 429 under armsim's default ARM buckets"
    );

    // 7. Records: one per step, digest-checked on read, all of the same intent revision; the
    // next steps took the groups from tag-groups' record.
    let store = StateStore::open(&env.state, None).await.unwrap();
    let mut digests = std::collections::BTreeSet::new();
    for step in STEPS {
        let rec = store
            .get_record("sha1-infra", step)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{step} record"));
        assert_eq!(rec.status, Status::Converged, "{step}");
        assert_eq!(rec.run_key, "sha1-infra");
        digests.insert(rec.intent_digest.clone());
    }
    assert_eq!(
        digests.len(),
        1,
        "every step worked on the run's snapshot: {digests:?}"
    );
    let tg = store
        .get_record("sha1-infra", "tag-groups")
        .await
        .unwrap()
        .unwrap();
    let groups: Value = serde_json::from_str(&tg.outputs["group-ids"]).expect("group-ids is JSON");
    assert!(groups.get("all-prod-spokes").is_some(), "{groups}");

    // 2. The same run key again: zero writes; plan shows no change.
    env.reset_stats().await;
    run_all(&env, &intent, "sha1-infra", "apply", None).await;
    let run2 = env.stats().await;
    figures("run 2 (same run key, no-op)", &run2);
    assert_eq!(writes(&run2), vec![], "a no-op re-run writes nothing");
    for step in STEPS.iter().filter(|s| **s != "verify") {
        let out = env
            .step(step)
            .intent(&intent)
            .run_key("sha1-infra")
            .mode("plan")
            .run()
            .await;
        assert_eq!(out.code, 0, "{step}: {}", out.stderr);
        assert!(
            out.stdout.contains("No changes"),
            "{step} plan:\n{}",
            out.stdout
        );
    }
    assert_eq!(writes(&env.stats().await), vec![], "plan writes nothing");

    // 3. One admin rule's priority changes: exactly that rule and one SecurityAdmin commit.
    let changed = env.dir.path().join("intent-r2.yaml");
    let text = std::fs::read_to_string(&intent).unwrap();
    let anchor = "- name: deny-prod-to-nonprod-out";
    let at = text.find(anchor).expect("rule in the example");
    let rel = text[at..].find("priority: 100").expect("its priority");
    let mut edited = text.clone();
    edited.replace_range(at + rel..at + rel + "priority: 100".len(), "priority: 105");
    std::fs::write(&changed, edited).unwrap();
    env.reset_stats().await;
    run_all(&env, &changed, "sha2-infra", "apply", None).await;
    let run3 = env.stats().await;
    figures("run 3 (one admin rule priority changed)", &run3);
    assert_eq!(
        writes(&run3),
        vec![("POST commit".to_string(), 1), ("PUT rules".to_string(), 1)],
        "exactly the rule and one SecurityAdmin commit"
    );
    let deployments = env.sim_get("deployments").await;
    assert!(
        deployments.to_string().contains("SecurityAdmin"),
        "{deployments}"
    );

    // 6. Everything run 1 sent validates against Microsoft's specs.
    let check = check_traffic(&traffic).await;
    println!(
        "check-traffic over run 1: {} exchanges recorded, {} (oav-ambiguous DNS link paths checked in-test: {}); operations: {}",
        check.recorded,
        check.summary,
        check.set_aside,
        check.operations.join(", ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drift_is_named_by_verify_and_repaired_by_apply_and_new_spokes_onboard_by_tag() {
    let env = Env::start(EnvOptions::globojava().file_state()).await;
    let intent = env.globojava_intent();
    run_all(&env, &intent, "d1-infra", "apply", None).await;

    // 5. Drift behind netstep's back: a deleted DNS link, a changed admin rule, a retagged VNet.
    let nm = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/networkManagers/avnm-globojava"
    );
    let link = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/privateDnsZones/globojava.com/virtualNetworkLinks/link-vnet-nonprod-westus"
    );
    let rule_id = format!(
        "{nm}/securityAdminConfigurations/sac-guardrails/ruleCollections/rc-env-isolation/rules/deny-prod-to-nonprod-out"
    );
    let rule = env.sim_get(&format!("resource?id={rule_id}")).await;
    let mut drifted = rule["body"].clone();
    assert!(drifted["properties"]["priority"].is_number(), "{rule}");
    drifted["id"] = json!(rule_id);
    drifted["properties"]["priority"] = json!(150);
    for op in [
        json!({"op": "delete", "id": link}),
        json!({"op": "put", "resource": drifted}),
        json!({"op": "retag", "id": vnet_id("rg-globojava-spokes", "vnet-prod-westus"),
               "tags": {"env": "nonprod", "costcenter": "cc-4711"}}),
    ] {
        let (status, body) = env.sim_post("drift", &op).await;
        assert!(status < 300, "drift {op}: {status} {body}");
    }
    let out = env
        .step("verify")
        .intent(&intent)
        .run_key("d2-infra")
        .mode("apply")
        .run()
        .await;
    assert_eq!(
        out.code, 3,
        "verify finds drift:\n{}\n{}",
        out.stdout, out.stderr
    );
    for needle in [
        "link-vnet-nonprod-westus",
        "deny-prod-to-nonprod-out",
        "vnet-prod-westus",
    ] {
        assert!(
            out.stdout.contains(needle),
            "verify names {needle}:\n{}",
            out.stdout
        );
    }
    assert_eq!(out.outputs.get("drift").map(String::as_str), Some("true"));

    // The next apply repairs exactly those.
    env.reset_stats().await;
    run_all(&env, &intent, "d2-infra", "apply", None).await;
    let repair = env.stats().await;
    figures("drift repair", &repair);
    let w = writes(&repair);
    assert!(
        w.contains(&("PATCH virtualNetworks".to_string(), 1)),
        "{w:?}"
    );
    assert!(w.contains(&("PUT rules".to_string(), 1)), "{w:?}");
    assert!(
        w.contains(&("PUT virtualNetworkLinks".to_string(), 1)),
        "{w:?}"
    );
    let total: u64 = w.iter().map(|(_, n)| n).sum();
    // The three repairs, plus the SecurityAdmin commit the rule change needs.
    assert_eq!(total, 4, "only the drifted resources are written: {w:?}");

    // 4. A new VNet tagged env=prod appears: policy makes it a member of all-prod-spokes (and of
    // its region's derived group), and verify finds it connected to its hub and isolated.
    let new_vnet = json!({
        "id": vnet_id("rg-globojava-spokes", "vnet-prod2-eastus"),
        "location": "eastus",
        "tags": {"env": "prod", "costcenter": "cc-4711"},
        "properties": {"addressSpace": {"addressPrefixes": ["10.1.48.0/20"]},
                       "subnets": [{"name": "snet-app", "properties": {"addressPrefix": "10.1.48.0/24"}}]}
    });
    let (status, body) = env
        .sim_post("drift", &json!({"op": "add_vnet", "resource": new_vnet}))
        .await;
    assert!(status < 300, "{status} {body}");
    let out = env
        .step("verify")
        .intent(&intent)
        .run_key("d3-infra")
        .mode("apply")
        .run()
        .await;
    assert_eq!(
        out.code, 0,
        "the onboarded spoke holds the invariants:\n{}\n{}",
        out.stdout, out.stderr
    );
    let group = format!("{nm}/networkGroups/all-prod-spokes");
    let members = env.sim_get(&format!("members?group={group}")).await;
    assert!(
        members.to_string().contains("vnet-prod2-eastus"),
        "{members}"
    );
}
