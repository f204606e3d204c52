//! The guarded writes of `dns-link` against armsim: `If-None-Match: *` / `If-Match: <etag>`,
//! and the single re-read after a 412.

use std::time::Duration;

use dns_link::arm_io::{put_guarded, wait_links};
use dns_link::reconcile::{Cond, Kind, PutOp};
use netstep::arm::{ArmClient, Credential};
use netstep::resources;
use pipeline_tests::{armsim, repo_root};
use serde_json::{Value, json};

const Z: &str = "/subscriptions/6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/privateDnsZones/globojava.com";

async fn sim() -> armsim::Handle {
    armsim::start(armsim::Config {
        world: Some(
            armsim::read_world(&repo_root().join("examples/globojava/world.json")).unwrap(),
        ),
        lro_delay: Duration::from_millis(30),
        ..Default::default()
    })
    .await
    .unwrap()
}

fn client(url: &str) -> ArmClient {
    ArmClient::builder()
        .endpoint(url.to_string())
        .credential(Credential::static_token("t"))
        .lro_default_delay(Duration::from_millis(20))
        .build()
        .unwrap()
}

async fn stats(url: &str) -> Value {
    reqwest::get(format!("{url}/_sim/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn reset(url: &str) {
    reqwest::Client::new()
        .post(format!("{url}/_sim/reset"))
        .send()
        .await
        .unwrap();
}

async fn drift(url: &str, body: Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}/_sim/drift"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

fn record_op(cond: Cond, ip: &str) -> PutOp {
    let desired = resources::dns_a_record(300, &[ip.to_string()]);
    PutOp {
        kind: Kind::Record,
        id: format!("{Z}/A/db"),
        zone_id: Z.into(),
        body: desired.clone(),
        desired,
        cond,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precondition_failures_reread_once_and_never_overwrite_foreign_writes() {
    let h = sim().await;
    let arm = client(&h.url);
    drift(
        &h.url,
        json!({"op": "put", "resource": {"id": Z, "location": "global", "tags": {"managed-by": "netstep"}}}),
    )
    .await;

    // Created concurrently by netstep (same content): If-None-Match fails, the re-read shows
    // it converged, no second write.
    drift(
        &h.url,
        json!({"op": "put", "resource": {"id": format!("{Z}/A/db"),
            "properties": {"ttl": 300, "aRecords": [{"ipv4Address": "10.4.16.10"}], "metadata": {"managed-by": "netstep"}}}}),
    )
    .await;
    reset(&h.url).await;
    let r = put_guarded(&arm, &record_op(Cond::Create, "10.4.16.10"), true)
        .await
        .unwrap();
    assert!(r.is_none());
    let s = stats(&h.url).await;
    assert_eq!(s["by_operation"]["PUT A"], 1, "{s}");
    assert_eq!(s["by_operation"]["GET A"], 1, "{s}");

    // Updated with a stale etag: 412, re-read, one more PUT with the fresh etag.
    reset(&h.url).await;
    let out = put_guarded(
        &arm,
        &record_op(Cond::Update(Some("stale".into())), "10.4.16.11"),
        true,
    )
    .await
    .unwrap()
    .expect("written");
    assert_eq!(
        out["properties"]["aRecords"][0]["ipv4Address"],
        "10.4.16.11"
    );
    let s = stats(&h.url).await;
    assert_eq!(s["by_operation"]["PUT A"], 2, "{s}");

    // Taken over by someone else meanwhile (metadata gone): refused, not overwritten.
    drift(
        &h.url,
        json!({"op": "put", "resource": {"id": format!("{Z}/A/db"),
            "properties": {"ttl": 60, "aRecords": [{"ipv4Address": "10.4.16.50"}]}}}),
    )
    .await;
    let e = put_guarded(&arm, &record_op(Cond::Create, "10.4.16.10"), true)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not managed by netstep"), "{e}");
    let kept: Value = reqwest::get(format!("{}/_sim/resource?id={Z}/A/db", h.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        kept["body"]["properties"]["aRecords"][0]["ipv4Address"],
        "10.4.16.50"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_are_awaited_from_the_zone_list_without_per_link_gets() {
    let h = sim().await;
    let arm = client(&h.url);
    drift(
        &h.url,
        json!({"op": "put", "resource": {"id": Z, "location": "global", "tags": {"managed-by": "netstep"}}}),
    )
    .await;
    let vnet = "/subscriptions/6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/virtualNetworks/vnet-hub-eastus";
    let desired = resources::dns_link(vnet, false);
    let op = PutOp {
        kind: Kind::Link,
        id: format!("{Z}/virtualNetworkLinks/link-vnet-hub-eastus"),
        zone_id: Z.into(),
        body: desired.clone(),
        desired,
        cond: Cond::Create,
    };
    reset(&h.url).await;
    let first = put_guarded(&arm, &op, false).await.unwrap().unwrap();
    assert_eq!(first["properties"]["virtualNetworkLinkState"], "InProgress");
    let names = std::iter::once("link-vnet-hub-eastus".to_string()).collect();
    wait_links(
        &arm,
        Z,
        &names,
        Duration::from_millis(10),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let log: Value = reqwest::get(format!("{}/_sim/log", h.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for e in log.as_array().unwrap() {
        if e["method"] == "GET" {
            assert!(
                e["path"]
                    .as_str()
                    .unwrap()
                    .ends_with("/virtualNetworkLinks"),
                "per-link read: {e}"
            );
        }
    }

    // A link that never shows up in the list is reported, not waited on forever.
    let missing = std::iter::once("link-nowhere".to_string()).collect();
    let e = wait_links(
        &arm,
        Z,
        &missing,
        Duration::from_millis(5),
        Duration::from_secs(10),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains("missing from the zone's list"),
        "{e}"
    );
    h.shutdown().await;
}
