//! Scenario tests of the ARM client against a scripted loopback server, on a paused tokio
//! clock (every delay asserted below is virtual time, exact).

mod arm_support;

use std::sync::Arc;
use std::time::Duration;

use arm_support::MockArm;
use netstep::arm::{
    ArmClient, ArmErrorKind, BucketConfig, ClientBuilder, Counters, Credential, DeleteOptions,
    FixedJitter, PostOptions, PutOptions, RetryPolicy, ThrottleConfig,
};
use serde_json::{Value, json};
use tokio::time::Instant;

const TOKEN: &str = "tok-3f9a-very-secret";
const NM: &str = "/subscriptions/6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/networkManagers/avnm-globojava";
const NET: &str = "api-version=2026-07-01";

fn ng() -> String {
    format!("{NM}/networkGroups/global-hubs")
}

/// An HTTP client without timers of its own (no timeouts, no idle-pool sweeper), so a paused
/// clock only moves for the client's own sleeps.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(None)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn builder(mock: &MockArm) -> ClientBuilder {
    ArmClient::builder()
        .endpoint(mock.base())
        .credential(Credential::static_token(TOKEN))
        .http_client(http())
        .jitter(Arc::new(FixedJitter::new(vec![0.5])))
        .throttle(ThrottleConfig::disabled())
}

fn client(mock: &MockArm) -> ArmClient {
    builder(mock).build().unwrap()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[tokio::test(start_paused = true)]
async fn get_returns_the_resource_and_none_on_either_404() {
    let mock = MockArm::start();
    let id = ng();
    mock.on("GET", &format!("{id}?{NET}")).reply(
        200,
        &[],
        json!({"id": id, "name": "global-hubs", "properties": {"provisioningState": "Succeeded"}}),
    );
    mock.on("GET", &format!("{id}?{NET}")).reply(
        404,
        &[],
        json!({"error": {"code": "NotFound", "message": "Resource [x] does not exist or has been deleted"}}),
    );
    mock.on("GET", &format!("{NM}?{NET}")).reply(
        404,
        &[("x-ms-failure-cause", "gateway")],
        json!({"error": {"code": "ResourceNotFound", "message": "The Resource 'Microsoft.Network/networkManagers/avnm-globojava' was not found."}}),
    );
    let c = client(&mock);
    let v = c.get(&id).await.unwrap().unwrap();
    assert_eq!(v["name"], "global-hubs");
    assert_eq!(c.get(&id).await.unwrap(), None);
    assert_eq!(c.get(NM).await.unwrap(), None);
    let seen = mock.seen();
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(
        seen[0].header("user-agent"),
        Some(format!("netstep/{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    assert!(seen[0].header("x-ms-client-request-id").is_some());
    assert_eq!(
        c.counters(),
        Counters {
            reads: 3,
            ..Counters::default()
        }
    );
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn backoff_uses_full_jitter_with_exact_delays() {
    let mock = MockArm::start();
    let id = ng();
    let target = format!("{id}?{NET}");
    mock.on("GET", &target).reply(500, &[], Value::Null);
    mock.on("GET", &target).reply(
        503,
        &[],
        json!({"error": {"code": "ServiceUnavailable", "message": "busy"}}),
    );
    mock.on("GET", &target).reply(502, &[], Value::Null);
    mock.on("GET", &target).reply(200, &[], json!({"id": id}));
    let c = builder(&mock)
        .jitter(Arc::new(FixedJitter::new(vec![0.5, 0.25, 1.0])))
        .build()
        .unwrap();
    let start = Instant::now();
    let v = c.get(&id).await.unwrap().unwrap();
    assert_eq!(v["id"], id.as_str());
    // caps 4 s, 8 s, 16 s; fractions 0.5, 0.25, 1.0 → 2 + 2 + 16 s.
    assert_eq!(start.elapsed(), secs(20.0));
    let n = c.counters();
    assert_eq!((n.reads, n.retries, n.throttled), (4, 3, 0));
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn retry_after_and_retry_after_ms_are_honoured_and_clamped() {
    let mock = MockArm::start();
    let id = ng();
    let target = format!("{id}?{NET}");
    mock.on("GET", &target).reply(
        429,
        &[("Retry-After", "7")],
        json!({"error": {"code": "SubscriptionRequestsThrottled", "message": "slow down"}}),
    );
    mock.on("GET", &target)
        .reply(503, &[("retry-after-ms", "1500")], Value::Null);
    mock.on("GET", &target)
        .reply(503, &[("x-ms-retry-after-ms", "250")], Value::Null);
    mock.on("GET", &target)
        .reply(429, &[("Retry-After", "3600")], Value::Null);
    mock.on("GET", &target).reply(200, &[], json!({"id": id}));
    let c = builder(&mock)
        .retry_policy(RetryPolicy {
            max_delay: Duration::from_secs(60),
            ..RetryPolicy::default()
        })
        .build()
        .unwrap();
    let start = Instant::now();
    c.get(&id).await.unwrap().unwrap();
    // 7 s + 1.5 s + 0.25 s + min(3600, 60) s
    assert_eq!(start.elapsed(), secs(68.75));
    let n = c.counters();
    assert_eq!((n.reads, n.retries, n.throttled), (5, 4, 2));
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn the_deadline_stops_retries() {
    let mock = MockArm::start();
    let id = ng();
    let target = format!("{id}?{NET}");
    mock.on("GET", &target).times(2).reply(
        503,
        &[("Retry-After", "20")],
        json!({"error": {"code": "ServiceUnavailable", "message": "down"}}),
    );
    let c = builder(&mock)
        .retry_policy(RetryPolicy {
            max_elapsed: Duration::from_secs(30),
            ..RetryPolicy::default()
        })
        .build()
        .unwrap();
    let start = Instant::now();
    let e = c.get(&id).await.unwrap_err();
    // One retry after 20 s; a second would end at 40 s > 30 s, so it never starts.
    assert_eq!(start.elapsed(), secs(20.0));
    assert!(e.is_transient());
    assert_eq!(e.status(), Some(503));
    assert_eq!(e.attempts(), 2);
    assert_eq!(e.elapsed(), Some(secs(20.0)));
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn max_attempts_bounds_retries() {
    let mock = MockArm::start();
    let id = ng();
    mock.on("GET", &format!("{id}?{NET}")).times(3).reply(
        429,
        &[("Retry-After", "1")],
        Value::Null,
    );
    let c = builder(&mock)
        .retry_policy(RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        })
        .build()
        .unwrap();
    let e = c.get(&id).await.unwrap_err();
    assert_eq!(e.kind(), ArmErrorKind::Throttled);
    assert!(e.is_transient());
    assert_eq!(e.attempts(), 3);
    assert_eq!(c.counters().throttled, 3);
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn conflict_another_operation_in_progress_is_retried() {
    let mock = MockArm::start();
    let id = ng();
    let body =
        json!({"properties": {"memberType": "VirtualNetwork", "description": "network_role=hub"}});
    mock.on("PUT", &format!("{id}?{NET}")).body(body.clone()).reply(
        409,
        &[],
        json!({"error": {"code": "AnotherOperationInProgress", "message": "Another operation on this or dependent resource is in progress."}}),
    );
    mock.on("PUT", &format!("{id}?{NET}")).body(body.clone()).reply(
        200,
        &[],
        json!({"id": id, "properties": {"provisioningState": "Succeeded", "memberType": "VirtualNetwork"}}),
    );
    let c = client(&mock);
    let start = Instant::now();
    let v = c.put(&id, &body).await.unwrap();
    assert_eq!(v["properties"]["provisioningState"], "Succeeded");
    assert_eq!(start.elapsed(), secs(2.0)); // 0.5 × 4 s
    assert_eq!((c.counters().writes, c.counters().retries), (2, 1));
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn a_closed_write_gate_stops_writes_before_they_are_sent_even_mid_retry() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let mock = MockArm::start();
    let id = ng();
    let body = json!({"properties": {"memberType": "VirtualNetwork"}});
    // The first attempt goes out and meets a busy 409; before the retry the lease is lost.
    mock.on("PUT", &format!("{id}?{NET}"))
        .body(body.clone())
        .reply(
            409,
            &[],
            json!({"error": {"code": "AnotherOperationInProgress", "message": "busy"}}),
        );
    mock.on("GET", &format!("{id}?{NET}"))
        .reply(200, &[], json!({"id": id, "properties": {}}));
    let c = client(&mock);
    let checks = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&checks);
    c.clone()
        .set_write_gate(Some(netstep::arm::WriteGate::new(move || {
            (seen.fetch_add(1, Ordering::SeqCst) >= 1)
                .then(|| "lease lost (renewal rejected)".into())
        })));
    let err = c.put(&id, &body).await.unwrap_err();
    assert_eq!(err.kind(), ArmErrorKind::Conflict, "{err}");
    assert!(err.kind().is_transient());
    assert!(
        err.to_string()
            .contains("not sent: lease lost (renewal rejected)"),
        "{err}"
    );
    assert!(err.to_string().contains(&id), "{err}");
    // Reads are not gated.
    assert!(c.get(&id).await.unwrap().is_some());
    assert_eq!(checks.load(Ordering::SeqCst), 2);
    assert_eq!((c.counters().writes, c.counters().reads), (1, 1)); // the retry was never sent
    // Removing the gate lets writes through again (no request scripted: an unscripted PUT
    // would fail the mock, so only assert the gate itself is gone).
    c.set_write_gate(None);
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn bad_request_is_not_retried_and_reads_well() {
    let mock = MockArm::start();
    let id = ng();
    mock.on("PUT", &format!("{id}?{NET}")).reply(
        400,
        &[(
            "x-ms-correlation-request-id",
            "c0ffee00-0000-0000-0000-000000000001",
        )],
        json!({"error": {"code": "InvalidRequestFormat", "message": "Cannot parse the request."}}),
    );
    let c = client(&mock);
    let e = c.put(&id, &json!({"properties": {}})).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("PUT {id}: 400 InvalidRequestFormat: Cannot parse the request.")
    );
    assert_eq!(e.kind(), ArmErrorKind::BadRequest);
    assert!(!e.is_transient());
    assert_eq!(e.attempts(), 1);
    assert_eq!(e.request_id(), Some("c0ffee00-0000-0000-0000-000000000001"));
    assert_eq!(c.counters().retries, 0);
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn a_post_whose_response_was_lost_is_not_resent() {
    let mock = MockArm::start();
    let commit = format!("{NM}/commit");
    let body = json!({"commitType": "Connectivity", "targetLocations": ["eastus"], "configurationIds": []});
    mock.on("POST", &format!("{commit}?{NET}"))
        .drop_connection();
    let c = client(&mock);
    let e = c.post(&commit, &body).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert_eq!(e.kind(), ArmErrorKind::Io);
    assert_eq!(e.attempts(), 1);
    assert!(e.to_string().contains("may have been applied"), "{e}");
    assert_eq!(c.counters().writes, 1);
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn a_post_5xx_is_not_resent_but_429_and_busy_409_are() {
    let mock = MockArm::start();
    let commit = format!("{NM}/commit");
    let target = format!("{commit}?{NET}");
    let body = json!({"commitType": "SecurityAdmin", "targetLocations": ["westeurope"]});
    mock.on("POST", &target).reply(
        500,
        &[],
        json!({"error": {"code": "InternalServerError", "message": "oops"}}),
    );
    mock.on("POST", &target)
        .reply(429, &[("Retry-After", "3")], Value::Null);
    mock.on("POST", &target).reply(
        409,
        &[],
        json!({"error": {"code": "AnotherOperationInProgress", "message": "busy"}}),
    );
    mock.on("POST", &target).reply(200, &[], Value::Null);
    let c = client(&mock);
    let e = c.post(&commit, &body).await.unwrap_err();
    assert_eq!(e.status(), Some(500));
    assert!(e.is_transient());
    assert_eq!(e.attempts(), 1);
    let start = Instant::now();
    assert_eq!(c.post(&commit, &body).await.unwrap(), None);
    // 3 s (Retry-After) + 0.5 × 8 s (second retry's cap)
    assert_eq!(start.elapsed(), secs(7.0));
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn an_idempotent_post_and_get_are_resent_after_a_lost_response() {
    let mock = MockArm::start();
    let commit = format!("{NM}/commit");
    mock.on("POST", &format!("{commit}?{NET}"))
        .drop_connection();
    mock.on("POST", &format!("{commit}?{NET}")).reply(
        200,
        &[],
        json!({"commitType": "Connectivity"}),
    );
    mock.on("GET", &format!("{}?{NET}", ng())).drop_connection();
    mock.on("GET", &format!("{}?{NET}", ng()))
        .reply(200, &[], json!({"name": "global-hubs"}));
    let c = client(&mock);
    let v = c
        .post_with(
            &commit,
            &json!({"commitType": "Connectivity"}),
            &PostOptions {
                idempotent: true,
                ..PostOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(v, Some(json!({"commitType": "Connectivity"})));
    assert_eq!(c.get(&ng()).await.unwrap().unwrap()["name"], "global-hubs");
    assert_eq!(c.counters().retries, 2);
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn a_refused_connection_is_retried_even_for_post() {
    // Reserve a port, then close it: connections are refused, the request never left.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = ArmClient::builder()
        .endpoint(format!("http://127.0.0.1:{port}"))
        .credential(Credential::static_token(TOKEN))
        .http_client(http())
        .jitter(Arc::new(FixedJitter::new(vec![1.0])))
        .throttle(ThrottleConfig::disabled())
        .retry_policy(RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        })
        .build()
        .unwrap();
    let start = Instant::now();
    let e = c
        .post(&format!("{NM}/commit"), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ArmErrorKind::Io);
    assert!(e.is_transient());
    assert_eq!(e.attempts(), 3);
    assert_eq!(start.elapsed(), secs(12.0)); // 4 s + 8 s
    assert_eq!(c.counters().writes, 3);
}

#[tokio::test(start_paused = true)]
async fn lro_azure_async_operation_then_final_get() {
    let mock = MockArm::start();
    let fwp = "/subscriptions/6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/firewallPolicies/fwp-globojava-global";
    let op = "/subscriptions/6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718/providers/Microsoft.Network/locations/westeurope/operations/op-1";
    let body = json!({"location": "westeurope", "properties": {"threatIntelMode": "Alert"}});
    mock.on("PUT", &format!("{fwp}?{NET}")).body(body.clone()).reply(
        201,
        &[
            ("Azure-AsyncOperation", &format!("{{base}}{op}?{NET}")),
            ("Retry-After", "10"),
        ],
        json!({"name": "fwp-globojava-global", "properties": {"provisioningState": "Updating"}}),
    );
    mock.on("GET", &format!("{op}?{NET}")).reply(
        200,
        &[("Retry-After", "10")],
        json!({"status": "InProgress"}),
    );
    mock.on("GET", &format!("{op}?{NET}"))
        .reply(200, &[], json!({"status": "InProgress"}));
    mock.on("GET", &format!("{op}?{NET}"))
        .reply(200, &[], json!({"status": "Succeeded"}));
    mock.on("GET", &format!("{fwp}?{NET}")).reply(
        200,
        &[],
        json!({"name": "fwp-globojava-global", "properties": {"provisioningState": "Succeeded", "threatIntelMode": "Alert"}}),
    );
    let c = client(&mock);
    let start = Instant::now();
    let v = c.put(fwp, &body).await.unwrap();
    assert_eq!(v["properties"]["provisioningState"], "Succeeded");
    // Retry-After 10 (PUT), 10 (first poll), then the 5 s default.
    assert_eq!(start.elapsed(), secs(25.0));
    let n = c.counters();
    assert_eq!((n.writes, n.polls, n.reads), (1, 3, 1));
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn lro_location_202_202_204_uses_the_default_delay() {
    let mock = MockArm::start();
    let commit = format!("{NM}/commit");
    let loc = format!("{NM}/operationResults/00000000-0000-0000-0000-000000000000");
    let body = json!({"commitType": "Connectivity", "targetLocations": ["eastus", "westeurope"], "configurationIds": []});
    mock.on("POST", &format!("{commit}?{NET}"))
        .body(body.clone())
        .reply(
            202,
            &[(
                "Location",
                &format!("https://management.azure.com{loc}?api-version=2026-07-01"),
            )],
            json!({"commitType": "Connectivity"}),
        );
    mock.on("GET", &format!("{loc}?{NET}"))
        .times(2)
        .reply(202, &[], Value::Null);
    // 204 with an empty body and no Content-Type: done.
    mock.on("GET", &format!("{loc}?{NET}"))
        .reply(204, &[], Value::Null);
    let c = builder(&mock)
        .lro_default_delay(Duration::from_secs(5))
        .build()
        .unwrap();
    let start = Instant::now();
    assert_eq!(c.post(&commit, &body).await.unwrap(), None);
    assert_eq!(start.elapsed(), secs(15.0));
    assert_eq!(c.counters().polls, 3);
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn lro_location_200_returns_the_operation_body() {
    let mock = MockArm::start();
    let action = format!("{NM}/commit");
    let loc = format!("{NM}/operationResults/op-2");
    mock.on("POST", &format!("{action}?{NET}")).reply(
        202,
        &[
            ("Location", &format!("{{base}}{loc}?{NET}")),
            ("Retry-After", "2"),
        ],
        Value::Null,
    );
    mock.on("GET", &format!("{loc}?{NET}"))
        .reply(200, &[], json!({"result": "done"}));
    let c = client(&mock);
    let start = Instant::now();
    assert_eq!(
        c.post(&action, &json!({})).await.unwrap(),
        Some(json!({"result": "done"}))
    );
    assert_eq!(start.elapsed(), secs(2.0));
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn lro_failed_surfaces_the_operation_error() {
    let mock = MockArm::start();
    let fwp = "/subscriptions/6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/firewallPolicies/fwp-globojava-eastus";
    let op = "/subscriptions/6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718/providers/Microsoft.Network/locations/westeurope/operations/op-f";
    mock.on("PUT", &format!("{fwp}?{NET}")).reply(
        201,
        &[("Azure-AsyncOperation", &format!("{{base}}{op}?{NET}"))],
        json!({}),
    );
    mock.on("GET", &format!("{op}?{NET}")).reply(
        200,
        &[],
        json!({"status": "Failed", "error": {"code": "FirewallPolicyBasePolicyLocationMismatch", "message": "Base policy must be in the same region."}}),
    );
    let c = client(&mock);
    let e = c
        .put(fwp, &json!({"location": "eastus"}))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ArmErrorKind::OperationFailed);
    assert!(!e.is_transient());
    assert_eq!(e.code(), Some("FirewallPolicyBasePolicyLocationMismatch"));
    assert_eq!(e.resource(), fwp);
    assert_eq!(
        e.to_string(),
        format!(
            "PUT {fwp}: FirewallPolicyBasePolicyLocationMismatch: operation Failed: Base policy must be in the same region."
        )
    );
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn lro_gives_up_after_max_wait() {
    let mock = MockArm::start();
    let link = "/subscriptions/6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/privateDnsZones/globojava.com/virtualNetworkLinks/link-vnet-hub-eastus";
    let op = "/subscriptions/6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/privateDnsOperationStatuses/op-t";
    let dns = "api-version=2024-06-01";
    mock.on("PUT", &format!("{link}?{dns}")).reply(
        202,
        &[("Azure-AsyncOperation", &format!("{{base}}{op}?{dns}"))],
        Value::Null,
    );
    mock.on("GET", &format!("{op}?{dns}")).times(12).reply(
        200,
        &[],
        json!({"status": "InProgress"}),
    );
    let c = builder(&mock)
        .lro_default_delay(Duration::from_secs(5))
        .lro_max_wait(Duration::from_secs(60))
        .build()
        .unwrap();
    let start = Instant::now();
    let e = c
        .put(link, &json!({"location": "global"}))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), secs(60.0));
    assert_eq!(e.kind(), ArmErrorKind::Timeout);
    assert!(e.is_transient());
    assert_eq!(e.attempts(), 12);
    assert_eq!(e.elapsed(), Some(secs(60.0)));
    assert!(e.to_string().contains("after 60s and 12 attempts"), "{e}");
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn provisioning_state_is_polled_until_terminal() {
    let mock = MockArm::start();
    let member = format!("{}/staticMembers/sm-1", ng());
    mock.on("PUT", &format!("{member}?{NET}")).reply(
        200,
        &[],
        json!({"properties": {"provisioningState": "Updating"}}),
    );
    mock.on("GET", &format!("{member}?{NET}")).reply(
        200,
        &[],
        json!({"properties": {"provisioningState": "Updating"}}),
    );
    mock.on("GET", &format!("{member}?{NET}")).reply(
        200,
        &[],
        json!({"properties": {"provisioningState": "Succeeded", "region": "eastus"}}),
    );
    let c = client(&mock);
    let start = Instant::now();
    let v = c
        .put(&member, &json!({"properties": {"resourceId": "/x"}}))
        .await
        .unwrap();
    assert_eq!(v["properties"]["region"], "eastus");
    assert_eq!(start.elapsed(), secs(10.0));
    assert_eq!(c.counters().polls, 2);
    // A terminal failure is an error.
    mock.on("PUT", &format!("{member}?{NET}")).reply(
        200,
        &[],
        json!({"properties": {"provisioningState": "Failed"}}),
    );
    let e = c.put(&member, &json!({})).await.unwrap_err();
    assert_eq!(e.kind(), ArmErrorKind::OperationFailed);
    assert_eq!(e.code(), Some("Failed"));
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn delete_waits_and_404_means_gone() {
    let mock = MockArm::start();
    let cc = format!("{NM}/connectivityConfigurations/cc-hub-mesh");
    let loc = format!("{cc}/operationResults/guid-1");
    mock.on("DELETE", &format!("{cc}?force=true&{NET}")).reply(
        202,
        &[("Location", &format!("{{base}}{loc}?{NET}"))],
        Value::Null,
    );
    mock.on("GET", &format!("{loc}?{NET}"))
        .reply(204, &[], Value::Null);
    mock.on("DELETE", &format!("{cc}?{NET}")).reply(
        404,
        &[],
        json!({"error": {"code": "NotFound", "message": "gone"}}),
    );
    mock.on("DELETE", &format!("{}?{NET}", ng()))
        .reply(200, &[], Value::Null);
    mock.on("DELETE", &format!("{}?{NET}", ng())).reply(
        202,
        &[("Location", "{base}/whatever")],
        Value::Null,
    );
    let c = client(&mock);
    c.delete(&format!("{cc}?force=true")).await.unwrap();
    c.delete(&cc).await.unwrap();
    c.delete(&ng()).await.unwrap();
    c.delete_with(
        &ng(),
        &DeleteOptions {
            wait: false,
            ..DeleteOptions::default()
        },
    )
    .await
    .unwrap();
    let n = c.counters();
    assert_eq!((n.deletes, n.polls), (4, 1));
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn list_follows_next_link_across_three_pages() {
    let mock = MockArm::start();
    let path = "/subscriptions/6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718/providers/Microsoft.Network/virtualNetworks";
    mock.on("GET", &format!("{path}?{NET}")).reply(
        200,
        &[],
        // The public host, as a real nextLink would have: rebased on the simulator.
        json!({"value": [{"name": "a"}, {"name": "b"}], "nextLink": format!("https://management.azure.com{path}?api-version=2026-07-01&$skiptoken=p2")}),
    );
    mock.on("GET", &format!("{path}?{NET}&$skiptoken=p2")).reply(
        200,
        &[],
        json!({"value": [{"name": "c"}], "nextLink": format!("{{base}}{path}?api-version=2026-07-01&$skiptoken=p3")}),
    );
    mock.on("GET", &format!("{path}?{NET}&$skiptoken=p3"))
        .reply(
            200,
            &[],
            json!({"value": [{"name": "d"}, {"name": "e"}], "nextLink": null}),
        );
    let c = client(&mock);
    let names: Vec<String> = c
        .list(path)
        .await
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["a", "b", "c", "d", "e"]);
    // The api-version is not appended twice to a nextLink that has one.
    assert!(
        mock.seen()
            .iter()
            .all(|s| s.target.matches("api-version").count() == 1)
    );
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn post_list_follows_skip_token_across_three_pages() {
    let mock = MockArm::start();
    let path = format!("{NM}/listDeploymentStatus");
    let body =
        json!({"regions": ["eastus"], "deploymentTypes": ["Connectivity"], "skipToken": null});
    mock.on("POST", &format!("{path}?{NET}")).body(body.clone()).reply(
        200,
        &[],
        json!({"skipToken": "t2", "value": [{"region": "eastus", "deploymentStatus": "Deployed"}]}),
    );
    mock.on("POST", &format!("{path}?{NET}"))
        .body(
            json!({"regions": ["eastus"], "deploymentTypes": ["Connectivity"], "skipToken": "t2"}),
        )
        .reply(503, &[], Value::Null); // list actions only read: retried
    mock.on("POST", &format!("{path}?{NET}"))
        .body(
            json!({"regions": ["eastus"], "deploymentTypes": ["Connectivity"], "skipToken": "t2"}),
        )
        .reply(
            200,
            &[],
            json!({"skipToken": "t3", "value": [{"region": "westus"}]}),
        );
    mock.on("POST", &format!("{path}?{NET}"))
        .body(
            json!({"regions": ["eastus"], "deploymentTypes": ["Connectivity"], "skipToken": "t3"}),
        )
        .reply(
            200,
            &[],
            json!({"skipToken": "", "value": [{"region": "northeurope"}]}),
        );
    let c = client(&mock);
    let v = c.post_list(&path, &body).await.unwrap();
    assert_eq!(v.len(), 3);
    assert_eq!(v[2]["region"], "northeurope");
    let n = c.counters();
    assert_eq!((n.writes, n.retries, n.reads), (4, 1, 0));
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn client_token_buckets_burst_then_refill_and_post_lists_are_writes() {
    let mock = MockArm::start();
    let id = ng();
    let list = format!("{NM}/listActiveConnectivityConfigurations");
    mock.on("GET", &format!("{id}?{NET}"))
        .times(3)
        .reply(200, &[], json!({}));
    mock.on("POST", &format!("{list}?{NET}"))
        .times(3)
        .reply(200, &[], json!({"value": []}));
    let c = builder(&mock)
        .throttle(ThrottleConfig {
            reads: BucketConfig {
                capacity: 2.0,
                refill_per_sec: 1.0,
            },
            writes: BucketConfig {
                capacity: 1.0,
                refill_per_sec: 0.25,
            },
            deletes: BucketConfig {
                capacity: 1.0,
                refill_per_sec: 1.0,
            },
            enabled: true,
        })
        .build()
        .unwrap();
    let start = Instant::now();
    c.get(&id).await.unwrap();
    c.get(&id).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO); // burst of 2
    c.get(&id).await.unwrap();
    assert_eq!(start.elapsed(), secs(1.0)); // refill 1/s
    // The POST list action draws on the writes bucket, not the (refilled) reads bucket.
    c.post_list(&list, &json!({"regions": ["eastus"]}))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), secs(1.0));
    c.post_list(&list, &json!({"regions": ["eastus"]}))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), secs(5.0)); // 1 token / 4 s
    c.post_list(&list, &json!({"regions": ["eastus"]}))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), secs(9.0));
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn conditional_put_headers_and_no_wait() {
    let mock = MockArm::start();
    let zone = "/subscriptions/6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/privateDnsZones/globojava.com";
    mock.on("PUT", &format!("{zone}?api-version=2024-06-01"))
        .reply(202, &[("Azure-AsyncOperation", "{base}/op")], Value::Null);
    mock.on("PUT", &format!("{zone}?api-version=2024-06-01"))
        .reply(
            412,
            &[],
            json!({"error": {"code": "PreconditionFailed", "message": "The zone exists."}}),
        );
    let c = client(&mock);
    let v = c
        .put_with(
            zone,
            &json!({"location": "global"}),
            &PutOptions {
                if_none_match: Some("*".into()),
                wait: false,
                ..PutOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(v, Value::Null);
    let e = c
        .put_with(
            zone,
            &json!({"location": "global"}),
            &PutOptions {
                if_match: Some("\"00009eec-0000-3300-0000-62dacded0000\"".into()),
                ..PutOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ArmErrorKind::Conflict);
    let seen = mock.seen();
    assert_eq!(seen[0].header("if-none-match"), Some("*"));
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(seen[0].json(), json!({"location": "global"}));
    assert_eq!(
        seen[1].header("if-match"),
        Some("\"00009eec-0000-3300-0000-62dacded0000\"")
    );
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn api_version_can_be_overridden() {
    let mock = MockArm::start();
    let ws = format!("{NM}/verifierWorkspaces/ws-1");
    mock.on("GET", &format!("{ws}?api-version=2024-05-01"))
        .reply(200, &[], json!({"name": "ws-1"}));
    let c = client(&mock);
    let v = c
        .get_with(
            &ws,
            &netstep::arm::ReadOptions {
                api_version: Some("2024-05-01".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(v.unwrap()["name"], "ws-1");
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn counters_serialize_for_the_step_record() {
    let mock = MockArm::start();
    mock.on("GET", &format!("{}?{NET}", ng()))
        .reply(429, &[("Retry-After", "1")], Value::Null);
    mock.on("GET", &format!("{}?{NET}", ng()))
        .reply(200, &[], json!({}));
    mock.on("DELETE", &format!("{}?{NET}", ng()))
        .reply(204, &[], Value::Null);
    let c = client(&mock);
    let clone = c.clone();
    c.get(&ng()).await.unwrap();
    clone.delete(&ng()).await.unwrap();
    assert_eq!(
        serde_json::to_value(c.counters()).unwrap(),
        json!({"reads": 2, "writes": 0, "deletes": 1, "polls": 0, "retries": 1, "throttled": 1})
    );
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn put_202_location_then_get_and_delete_202_polls_until_404() {
    let mock = MockArm::start();
    let zone = "/subscriptions/6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/privateDnsZones/globojava.com";
    let dns = "api-version=2024-06-01";
    let loc = "/subscriptions/6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/privateDnsOperationResults/r1";
    mock.on("PUT", &format!("{zone}?{dns}")).reply(
        202,
        &[
            ("Location", &format!("{{base}}{loc}?{dns}")),
            ("Retry-After", "3"),
        ],
        Value::Null,
    );
    mock.on("GET", &format!("{loc}?{dns}"))
        .reply(200, &[], Value::Null);
    mock.on("GET", &format!("{zone}?{dns}")).reply(
        200,
        &[],
        json!({"name": "globojava.com", "properties": {"provisioningState": "Succeeded"}}),
    );
    // A 202 with neither header: poll the resource until it is gone.
    mock.on("DELETE", &format!("{zone}?{dns}"))
        .reply(202, &[], Value::Null);
    mock.on("GET", &format!("{zone}?{dns}")).reply(
        200,
        &[],
        json!({"properties": {"provisioningState": "Deleting"}}),
    );
    mock.on("GET", &format!("{zone}?{dns}")).reply(
        404,
        &[],
        json!({"error": {"code": "ResourceNotFound", "message": "gone"}}),
    );
    let c = client(&mock);
    let start = Instant::now();
    let v = c.put(zone, &json!({"location": "global"})).await.unwrap();
    assert_eq!(v["name"], "globojava.com");
    assert_eq!(start.elapsed(), secs(3.0));
    c.delete(zone).await.unwrap();
    assert_eq!(start.elapsed(), secs(13.0));
    let n = c.counters();
    assert_eq!((n.writes, n.deletes, n.reads, n.polls), (1, 1, 1, 3));
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn a_post_answering_200_returns_its_body_without_polling() {
    let mock = MockArm::start();
    let action = format!("{NM}/commit");
    mock.on("POST", &format!("{action}?{NET}")).reply(
        200,
        &[("Azure-AsyncOperation", "{base}/op")],
        json!({"commitType": "Connectivity"}),
    );
    let c = client(&mock);
    assert_eq!(
        c.post(&action, &json!({})).await.unwrap(),
        Some(json!({"commitType": "Connectivity"}))
    );
    assert_eq!(c.counters().polls, 0);
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn invalid_json_is_an_invalid_response() {
    let mock = MockArm::start();
    mock.on("GET", &format!("{}?{NET}", ng())).reply_raw(
        200,
        &[("content-type", "application/json")],
        "{\"value\": [",
    );
    mock.on("GET", &format!("{}?{NET}", ng()))
        .reply(200, &[], json!("a string, not a page"));
    let c = client(&mock);
    let e = c.get(&ng()).await.unwrap_err();
    assert_eq!(e.kind(), ArmErrorKind::InvalidResponse);
    assert!(!e.is_transient());
    assert!(e.to_string().contains("not JSON"), "{e}");
    let e = c.list(&ng()).await.unwrap_err();
    assert_eq!(e.kind(), ArmErrorKind::InvalidResponse);
    mock.finish();
}
