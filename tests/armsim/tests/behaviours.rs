//! One test per simulated behaviour.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

async fn globo() -> (armsim::Handle, Client) {
    start(fast(globojava_world())).await
}

// ------------------------------------------------------------------ ARM front door

#[tokio::test]
async fn requests_without_bearer_token_get_401_authentication_failed() {
    let (_h, mut c) = globo().await;
    c.token = None;
    let r = c.get(&vnet_id("vnet-hub-eastus")).await;
    assert_eq!((r.status, r.code()), (401, "AuthenticationFailed"));
    assert!(r.header("WWW-Authenticate").is_some());
    let r = c
        .call(
            "GET",
            &vnet_id("vnet-hub-eastus"),
            None,
            &[("Authorization", "Basic abc")],
        )
        .await;
    assert_eq!(r.status, 401);
    c.token = Some("anything-goes".into());
    assert_eq!(c.get(&vnet_id("vnet-hub-eastus")).await.status, 200);
}

#[tokio::test]
async fn api_version_missing_malformed_or_unsupported_is_rejected() {
    let (_h, c) = globo().await;
    let id = vnet_id("vnet-hub-eastus");
    let r = c.get(&format!("{id}?api-version=2022-01-01")).await;
    assert_eq!((r.status, r.code()), (400, "NoRegisteredProviderFound"));
    assert!(r.message().contains("2026-07-01"), "{}", r.message());
    let r = c.get(&format!("{id}?api-version=latest")).await;
    assert_eq!((r.status, r.code()), (400, "InvalidApiVersionParameter"));
    let r = c
        .call("GET", &format!("{id}?x=1&api-version="), None, &[])
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .get(&format!(
            "{}/privateDnsZones/z.com?api-version=2026-07-01",
            rg_id(CONN) + "/providers/Microsoft.Network"
        ))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (400, "NoRegisteredProviderFound"),
        "private DNS has its own api-version"
    );
    let r = c
        .get(&format!("{}?api-version=2023-04-01", def_id("x")))
        .await;
    assert_eq!((r.status, r.code()), (400, "NoRegisteredProviderFound"));
}

#[tokio::test]
async fn missing_subscription_resource_group_and_resources_use_arm_404_shapes() {
    let (_h, c) = globo().await;
    let r = c.get("/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.Network/virtualNetworks").await;
    assert_eq!((r.status, r.code()), (404, "SubscriptionNotFound"));
    let r = c.get(&net_id("rg-nope", "networkManagers/x")).await;
    assert_eq!((r.status, r.code()), (404, "ResourceGroupNotFound"));
    assert_eq!(r.header("x-ms-failure-cause").as_deref(), Some("gateway"));
    let r = c.get(&nm_id()).await;
    assert_eq!((r.status, r.code()), (404, "ResourceNotFound"));
    assert_eq!(r.header("x-ms-failure-cause").as_deref(), Some("gateway"));
    assert_eq!(
        r.message(),
        "The Resource 'Microsoft.Network/networkManagers/avnm-globojava' under resource group 'rg-globojava-connectivity' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
    );
    create_nm_and_groups(&c).await;
    let r = c.get(&group_id("nope")).await;
    assert_eq!((r.status, r.code()), (404, "NotFound"));
    assert_eq!(
        r.message(),
        format!(
            "Resource [{}] does not exist or has been deleted",
            group_id("nope")
        )
    );
    assert!(r.header("x-ms-failure-cause").is_none());
    let r = c
        .get(&format!("{}/staticMembers/m1", group_id("global-hubs")))
        .await;
    assert_eq!((r.status, r.code()), (404, "NotFound"));
    let r = c
        .get(&format!("{}/subnets/nope", vnet_id("vnet-hub-eastus")))
        .await;
    assert_eq!((r.status, r.code()), (404, "NotFound"));
    // PUT of a child under a missing parent: ARM's ParentResourceNotFound.
    let r = c
        .put(
            &net_id(CONN, "networkManagers/ghost/networkGroups/g"),
            json!({"properties": {}}),
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "ParentResourceNotFound"));
}

#[tokio::test]
async fn every_arm_response_carries_the_rate_limit_header_for_its_class() {
    let mut cfg = fast(globojava_world());
    cfg.limits.reads = (250, 0.001); // no refill between the two reads compared below
    let (_h, c) = start(cfg).await;
    let r = c.get(&vnet_id("vnet-hub-eastus")).await;
    assert!(
        r.header("x-ms-ratelimit-remaining-subscription-reads")
            .is_some()
    );
    let r = c
        .patch(&vnet_id("vnet-hub-eastus"), json!({"tags": {"a": "b"}}))
        .await;
    assert!(
        r.header("x-ms-ratelimit-remaining-subscription-writes")
            .is_some()
    );
    let r = c.delete(&net_id(CONN, "firewallPolicies/none")).await;
    assert!(
        r.header("x-ms-ratelimit-remaining-subscription-deletes")
            .is_some()
    );
    create_nm_and_groups(&c).await;
    // POST list* calls spend the writes budget.
    let before: u64 = c
        .get(&vnet_id("vnet-hub-eastus"))
        .await
        .header("x-ms-ratelimit-remaining-subscription-reads")
        .unwrap()
        .parse()
        .unwrap();
    let r = c
        .post(&format!("{}/listDeploymentStatus", nm_id()), json!({}))
        .await;
    assert!(
        r.header("x-ms-ratelimit-remaining-subscription-writes")
            .is_some()
    );
    let after: u64 = c
        .get(&vnet_id("vnet-hub-eastus"))
        .await
        .header("x-ms-ratelimit-remaining-subscription-reads")
        .unwrap()
        .parse()
        .unwrap();
    let log = c.sim("GET", "/_sim/log", None).await;
    assert_eq!(
        before,
        after + 1,
        "the POST did not consume a read token: {log}"
    );
}

#[tokio::test]
async fn token_buckets_throttle_per_principal_with_retry_after() {
    let mut cfg = fast(globojava_world());
    cfg.limits.reads = (5, 0.5);
    let (_h, mut c) = start(cfg).await;
    for i in 0..5 {
        let r = c.get(&vnet_id("vnet-hub-eastus")).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("x-ms-ratelimit-remaining-subscription-reads")
                .unwrap(),
            (4 - i).to_string()
        );
    }
    let r = c.get(&vnet_id("vnet-hub-eastus")).await;
    assert_eq!((r.status, r.code()), (429, "SubscriptionRequestsThrottled"));
    let ra: u64 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=2).contains(&ra), "Retry-After {ra}");
    // Writes have their own bucket; another principal has its own buckets.
    assert_eq!(
        c.patch(&vnet_id("vnet-hub-eastus"), json!({"tags": {}}))
            .await
            .status,
        200
    );
    c.token = Some("another-principal".into());
    assert_eq!(c.get(&vnet_id("vnet-hub-eastus")).await.status, 200);
    let stats = c.sim("GET", "/_sim/stats", None).await;
    assert_eq!(stats["throttled"], 1);
}

#[tokio::test]
async fn unknown_members_bad_json_and_non_json_media_types_are_rejected() {
    let (_h, c) = globo().await;
    let r = c.put(&nm_id(), json!({"location": "westeurope", "properties": {"networkManagerScopes": {"subscriptions": [format!("/subscriptions/{SUB}")]}, "scopeAccesses": ["Connectivity"]}})).await;
    assert_eq!((r.status, r.code()), (400, "InvalidRequestFormat"));
    assert!(
        r.message()
            .contains("Could not find member 'scopeAccesses'"),
        "{}",
        r.message()
    );
    let r = c
        .put(
            &nm_id(),
            json!({"location": "westeurope", "properties": {}}),
        )
        .await;
    assert!(
        r.message()
            .contains("Required property 'networkManagerScopes'"),
        "{}",
        r.message()
    );
    let r = c
        .call(
            "PUT",
            &nm_id(),
            None,
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(r.status, 400);
    let send = |ct: &'static str| {
        let url = format!("{}{}?api-version=2026-07-01", c.base, nm_id());
        async move {
            let mut rb = reqwest::Client::new()
                .put(url)
                .header("Authorization", "Bearer t")
                .body("{not json");
            if !ct.is_empty() {
                rb = rb.header("content-type", ct);
            }
            let r = rb.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(send("application/json").await.0, 400);
    let (status, body) = send("text/plain").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (415, Some("UnsupportedMediaType"))
    );
    assert_eq!(send("").await.0, 415, "a body without a content type");
}

// ------------------------------------------------------------------ AVNM resources

#[tokio::test]
async fn avnm_puts_answer_200_with_empty_etag_and_get_etags_change_on_write() {
    let (_h, c) = globo().await;
    let r = c.put(&nm_id(), nm_body()).await;
    assert_eq!(r.status, 200, "create answers 200 like real AVNM");
    assert_eq!(r.body["etag"], "");
    assert!(r.body["systemData"]["createdBy"].is_string());
    assert!(r.body["properties"]["resourceGuid"].is_string());
    let g = group_id("g1");
    let r = c
        .put(&g, json!({"properties": {"description": "one"}}))
        .await;
    assert_eq!((r.status, r.body["etag"].as_str()), (200, Some("")));
    assert!(
        r.header("ETag").is_some(),
        "networkGroups PUT returns an ETag header"
    );
    let e1 = c.get(&g).await.body["etag"].as_str().unwrap().to_string();
    assert!(
        e1.starts_with('"') && e1.ends_with('"') && e1.len() == 38,
        "{e1}"
    );
    assert_eq!(c.get(&g).await.body["etag"], e1, "stable without writes");
    c.put(&g, json!({"properties": {"description": "two"}}))
        .await;
    let e2 = c.get(&g).await.body["etag"].as_str().unwrap().to_string();
    assert_ne!(e1, e2);
    // If-Match on networkGroups.
    let r = c
        .call(
            "PUT",
            &g,
            Some(json!({"properties": {"description": "three"}})),
            &[("If-Match", &e1)],
        )
        .await;
    assert_eq!((r.status, r.code()), (412, "PreconditionFailed"));
    let r = c
        .call(
            "PUT",
            &g,
            Some(json!({"properties": {"description": "three"}})),
            &[("If-Match", &e2)],
        )
        .await;
    assert_eq!(r.status, 200);
    // Like the RP, no memberType is invented when none was sent.
    assert!(
        c.get(&g).await.body["properties"]
            .get("memberType")
            .is_none()
    );
}

#[tokio::test]
async fn static_members_report_updating_from_put_then_succeeded() {
    let (_h, c) = globo().await;
    create_nm_and_groups(&c).await;
    let m = format!("{}/staticMembers/hub-eastus", group_id("global-hubs"));
    let r = c
        .put(
            &m,
            json!({"properties": {"resourceId": vnet_id("vnet-hub-eastus")}}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["properties"]["provisioningState"], "Updating");
    assert_eq!(r.body["properties"]["region"], "eastus");
    sleep_ms(150).await;
    assert_eq!(
        c.get(&m).await.body["properties"]["provisioningState"],
        "Succeeded"
    );
    // A member must be an existing VNet inside the network manager's scope.
    let r = c
        .put(
            &format!("{}/staticMembers/bad", group_id("global-hubs")),
            json!({"properties": {"resourceId": vnet_id("vnet-nope")}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(c.delete(&m).await.status, 200);
    assert_eq!(c.get(&m).await.status, 404);
}

#[tokio::test]
async fn connectivity_configuration_string_booleans_and_required_fields() {
    let (_h, c) = globo().await;
    create_nm_and_groups(&c).await;
    let cc = format!("{}/connectivityConfigurations/cc", nm_id());
    let mut b = mesh_body();
    b["properties"]["isGlobal"] = json!(true);
    let r = c.put(&cc, b).await;
    assert_eq!(r.status, 400);
    assert!(
        r.message().contains("'IsGlobal'") && r.message().contains("properties.isGlobal"),
        "{}",
        r.message()
    );
    let mut b = mesh_body();
    b["properties"]["appliesToGroups"][0]["useHubGateway"] = json!(false);
    assert_eq!(c.put(&cc, b).await.status, 400);
    let mut b = mesh_body();
    b["properties"]["connectivityTopology"] = json!("Star");
    let r = c.put(&cc, b).await;
    assert!(r.message().contains("Star"), "{}", r.message());
    let mut b = mesh_body();
    b["properties"]["appliesToGroups"][0]
        .as_object_mut()
        .unwrap()
        .remove("groupConnectivity");
    let r = c.put(&cc, b).await;
    assert!(
        r.message()
            .contains("Required property 'groupConnectivity'"),
        "{}",
        r.message()
    );
    let mut b = mesh_body();
    b["properties"]["connectivityCapabilities"] =
        json!({"connectedGroupPrivateEndpointsScale": "Standard"});
    assert_eq!(
        c.put(&cc, b).await.status,
        400,
        "all three capability fields are required"
    );
    let mut b = hubspoke_body("eastus");
    b["properties"]["hubs"] = json!([]);
    assert_eq!(
        c.put(&cc, b).await.status,
        400,
        "hub-and-spoke needs its hub"
    );
    let mut b = mesh_body();
    b["properties"]["appliesToGroups"][0]["networkGroupId"] = json!(group_id("ghost"));
    assert_eq!(c.put(&cc, b).await.status, 400, "groups must exist");
    let r = c.put(&cc, hubspoke_body("eastus")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["properties"]["isGlobal"], "False");
}

#[tokio::test]
async fn admin_rules_validate_priority_range_uniqueness_and_use_common_error_response() {
    let (_h, c) = globo().await;
    create_nm_and_groups(&c).await;
    let sac = format!("{}/securityAdminConfigurations/sac", nm_id());
    assert_eq!(
        c.put(
            &sac,
            json!({"properties": {"applyOnNetworkIntentPolicyBasedServices": ["None"]}})
        )
        .await
        .status,
        200
    );
    let rc = format!("{sac}/ruleCollections/rc");
    let r = c.put(&rc, json!({"properties": {}})).await;
    assert_eq!(r.status, 400, "appliesToGroups is required");
    for k in ["target", "details", "additionalInfo"] {
        assert!(
            r.body["error"].get(k).is_some(),
            "CommonErrorResponse has '{k}': {}",
            r.body
        );
    }
    assert_eq!(c.put(&rc, json!({"properties": {"appliesToGroups": [{"networkGroupId": group_id("all-prod-spokes")}]}})).await.status, 200);
    let rule = |p: Value| json!({"kind": "Custom", "properties": {"protocol": "Tcp", "access": "Deny", "priority": p, "direction": "Inbound", "destinationPortRanges": ["22"]}});
    for bad in [json!(0), json!(4097), json!("high")] {
        let r = c.put(&format!("{rc}/rules/r"), rule(bad.clone())).await;
        assert_eq!(r.status, 400, "priority {bad}");
        assert!(r.body["error"].get("additionalInfo").is_some());
    }
    assert_eq!(
        c.put(&format!("{rc}/rules/r1"), rule(json!(4096)))
            .await
            .status,
        200
    );
    assert_eq!(
        c.put(&format!("{rc}/rules/r1"), rule(json!(4096)))
            .await
            .status,
        200,
        "updating a rule keeps its own priority"
    );
    let r = c.put(&format!("{rc}/rules/r2"), rule(json!(4096))).await;
    assert_eq!((r.status, r.code()), (400, "DuplicatePriority"));
    let r = c.put(&format!("{rc}/rules/r3"), json!({"properties": {"protocol": "Tcp", "access": "Deny", "priority": 5, "direction": "Inbound"}})).await;
    assert_eq!(r.status, 400, "kind is required");
    let mut b = rule(json!(7));
    b["properties"]["access"] = json!("Block");
    assert_eq!(c.put(&format!("{rc}/rules/r4"), b).await.status, 400);
    let mut b = rule(json!(8));
    b["properties"]["description"] = json!("x".repeat(141));
    assert_eq!(c.put(&format!("{rc}/rules/r5"), b).await.status, 400);
    let mut b = rule(json!(9));
    b["properties"]["sources"] =
        json!([{"addressPrefixType": "IPPrefix", "addressPrefix": "10.0.0.0/33"}]);
    assert_eq!(c.put(&format!("{rc}/rules/r6"), b).await.status, 400);
    let r = c.get(&format!("{rc}/rules/none")).await;
    assert_eq!(r.status, 404);
    assert!(r.body["error"].get("additionalInfo").is_some());
}

// ------------------------------------------------------------------ commit & deployments

async fn setup_connectivity(c: &Client) {
    create_nm_and_groups(c).await;
    for region in ["eastus", "westus"] {
        let r = c
            .put(
                &format!(
                    "{}/connectivityConfigurations/cc-hubspoke-{region}",
                    nm_id()
                ),
                hubspoke_body(region),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(
        c.put(
            &format!("{}/connectivityConfigurations/cc-hub-mesh", nm_id()),
            mesh_body()
        )
        .await
        .status,
        200
    );
}

fn cc_id(n: &str) -> String {
    format!("{}/connectivityConfigurations/{n}", nm_id())
}

async fn commit(c: &Client, ty: &str, regions: &[&str], ids: &[String]) -> Resp {
    c.post(
        &format!("{}/commit", nm_id()),
        json!({"commitType": ty, "targetLocations": regions, "configurationIds": ids}),
    )
    .await
}

async fn status(c: &Client, region: &str, ty: &str) -> Vec<Value> {
    let r = c
        .post(
            &format!("{}/listDeploymentStatus", nm_id()),
            json!({"regions": [region], "deploymentTypes": [ty]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["skipToken"], "");
    r.body["value"].as_array().cloned().unwrap()
}

async fn until_deployed(c: &Client, region: &str, ty: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let v = status(c, region, ty).await;
        if let Some(d) = v.first()
            && (d["deploymentStatus"] == "Deployed" || d["deploymentStatus"] == "Failed")
        {
            return d.clone();
        }
        sleep_ms(20).await;
    }
    panic!("never deployed");
}

#[tokio::test]
async fn commit_answers_202_with_location_without_retry_after_then_204() {
    let mut cfg = fast(globojava_world());
    cfg.lro_delay = Duration::from_millis(3000); // the first poll must still be pending
    let (_h, c) = start(cfg).await;
    setup_connectivity(&c).await;
    let r = commit(
        &c,
        "Connectivity",
        &["eastus"],
        &[cc_id("cc-hubspoke-eastus")],
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(r.header("Retry-After").is_none());
    assert!(r.header("Azure-AsyncOperation").is_none());
    let loc = r.header("Location").unwrap();
    assert!(
        loc.starts_with(&format!(
            "https://management.azure.com{}/operationResults/",
            nm_id()
        )),
        "{loc}"
    );
    assert!(loc.ends_with("?api-version=2026-07-01"));
    assert_eq!(r.body["commitType"], "Connectivity");
    assert!(r.body["commitId"].is_string());
    let first = c.follow(&loc).await;
    assert_eq!(first.status, 202, "pending right after the commit");
    assert_eq!(c.wait_location(&loc).await, 204);
    let done = c.follow(&loc).await;
    assert_eq!(done.status, 204);
    assert!(done.body.is_null(), "204 has an empty body");
}

#[tokio::test]
async fn commit_checks_configuration_ids_types_and_scope_accesses() {
    let (_h, c) = globo().await;
    setup_connectivity(&c).await;
    let r = commit(&c, "Connectivity", &["eastus"], &[cc_id("ghost")]).await;
    assert_eq!(r.status, 400);
    let sac = format!("{}/securityAdminConfigurations/sac", nm_id());
    c.put(&sac, json!({"properties": {}})).await;
    let r = commit(&c, "Connectivity", &["eastus"], std::slice::from_ref(&sac)).await;
    assert_eq!((r.status, r.code()), (400, "InvalidConfigurationId"));
    let r = commit(&c, "SecurityAdmin", &["eastus"], &[cc_id("cc-hub-mesh")]).await;
    assert_eq!(r.status, 400);
    let r = c
        .post(
            &format!("{}/commit", nm_id()),
            json!({"commitType": "Connectivity", "configurationIds": []}),
        )
        .await;
    assert_eq!(r.status, 400, "targetLocations is required");
    let r = c
        .post(
            &format!("{}/commit", nm_id()),
            json!({"commitType": "Everything", "targetLocations": ["eastus"]}),
        )
        .await;
    assert_eq!(r.status, 400);
    // Scope accesses must include the commit type.
    let mut nm = nm_body();
    nm["properties"]["networkManagerScopeAccesses"] = json!(["Connectivity"]);
    assert_eq!(c.put(&nm_id(), nm).await.status, 200);
    let r = commit(&c, "SecurityAdmin", &["eastus"], &[sac]).await;
    assert_eq!((r.status, r.code()), (400, "CommitTypeNotInScopeAccess"));
}

#[tokio::test]
async fn deployment_status_is_empty_right_after_commit_then_progresses_to_deployed() {
    let mut cfg = fast(globojava_world());
    cfg.status_empty_window = Duration::from_millis(2500);
    cfg.deploy_delay = Duration::from_millis(5000);
    let (_h, c) = start(cfg).await;
    setup_connectivity(&c).await;
    let before = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    assert_eq!(
        commit(
            &c,
            "Connectivity",
            &["eastus"],
            &[cc_id("cc-hubspoke-eastus"), cc_id("cc-hub-mesh")]
        )
        .await
        .status,
        202
    );
    assert!(
        status(&c, "eastus", "Connectivity").await.is_empty(),
        "the empty-list quirk right after a commit"
    );
    let mut seen: Vec<String> = Vec::new();
    let last = loop {
        let v = status(&c, "eastus", "Connectivity").await;
        if let Some(d) = v.first() {
            let s = d["deploymentStatus"].as_str().unwrap().to_string();
            if seen.last() != Some(&s) {
                seen.push(s.clone());
            }
            if s == "Deployed" {
                break d.clone();
            }
        }
        sleep_ms(30).await;
    };
    let order = ["NotStarted", "Deploying", "Deployed"];
    let idx: Vec<usize> = seen
        .iter()
        .map(|s| order.iter().position(|o| o == s).unwrap())
        .collect();
    assert!(
        idx.windows(2).all(|w| w[0] < w[1]),
        "statuses in order: {seen:?}"
    );
    assert!(seen.contains(&"Deploying".to_string()), "{seen:?}");
    assert_eq!(last["errorMessage"], "");
    assert_eq!(last["configurationIds"].as_array().unwrap().len(), 2);
    let t = time::OffsetDateTime::parse(
        last["commitTime"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(t >= before, "commitTime {t} >= {before}");
    // Other regions/types are not reported.
    assert!(status(&c, "westus", "Connectivity").await.is_empty());
    assert!(status(&c, "eastus", "SecurityAdmin").await.is_empty());
}

#[tokio::test]
async fn a_commit_replaces_the_goal_state_of_its_type_and_regions() {
    let (_h, c) = globo().await;
    setup_connectivity(&c).await;
    let active = |region: &'static str| {
        let c = &c;
        async move {
            let r = c
                .post(
                    &format!("{}/listActiveConnectivityConfigurations", nm_id()),
                    json!({"regions": [region]}),
                )
                .await;
            let mut v: Vec<String> = r.body["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| {
                    x["id"]
                        .as_str()
                        .unwrap()
                        .rsplit('/')
                        .next()
                        .unwrap()
                        .to_string()
                })
                .collect();
            v.sort();
            v
        }
    };
    commit(
        &c,
        "Connectivity",
        &["eastus", "westus"],
        &[cc_id("cc-hub-mesh"), cc_id("cc-hubspoke-eastus")],
    )
    .await;
    until_deployed(&c, "eastus", "Connectivity").await;
    assert_eq!(
        active("eastus").await,
        vec!["cc-hub-mesh", "cc-hubspoke-eastus"]
    );
    assert_eq!(
        active("westus").await,
        vec!["cc-hub-mesh", "cc-hubspoke-eastus"]
    );
    // Commit westus alone without the eastus hub-and-spoke: it is undeployed there only.
    commit(
        &c,
        "Connectivity",
        &["westus"],
        &[cc_id("cc-hub-mesh"), cc_id("cc-hubspoke-westus")],
    )
    .await;
    until_deployed(&c, "westus", "Connectivity").await;
    assert_eq!(
        active("westus").await,
        vec!["cc-hub-mesh", "cc-hubspoke-westus"]
    );
    assert_eq!(
        active("eastus").await,
        vec!["cc-hub-mesh", "cc-hubspoke-eastus"]
    );
    // Empty configurationIds removes everything of that type in the region.
    commit(&c, "Connectivity", &["eastus"], &[]).await;
    until_deployed(&c, "eastus", "Connectivity").await;
    assert!(active("eastus").await.is_empty());
    let r = c
        .post(
            &format!("{}/listActiveConnectivityConfigurations", nm_id()),
            json!({"regions": ["westus"]}),
        )
        .await;
    let item = &r.body["value"][0];
    assert!(item["commitTime"].is_string() && item["region"] == "westus");
    assert!(
        item["configurationGroups"]
            .as_array()
            .is_some_and(|g| !g.is_empty())
    );
}

#[tokio::test]
async fn deployed_groups_and_configurations_need_force_to_delete() {
    let (_h, c) = globo().await;
    setup_connectivity(&c).await;
    commit(
        &c,
        "Connectivity",
        &["eastus"],
        &[cc_id("cc-hubspoke-eastus")],
    )
    .await;
    until_deployed(&c, "eastus", "Connectivity").await;
    let r = c.delete(&cc_id("cc-hubspoke-eastus")).await;
    assert_eq!((r.status, r.code()), (409, "CannotDeleteDeployedResource"));
    let r = c
        .delete(&format!("{}?force=false", group_id("all-prod-spokes")))
        .await;
    assert_eq!(r.status, 409, "a group used by a deployed configuration");
    // Not deployed: plain delete answers 200 with no body.
    let r = c
        .delete(&format!("{}?force=false", cc_id("cc-hubspoke-westus")))
        .await;
    assert_eq!((r.status, r.body.is_null()), (200, true));
    // Forced: 202 + Location -> 204, and the configuration leaves the goal state.
    let r = c
        .delete(&format!("{}?force=true", cc_id("cc-hubspoke-eastus")))
        .await;
    assert_eq!(r.status, 202);
    let loc = r.header("Location").unwrap();
    assert!(
        loc.contains("/connectivityConfigurations/cc-hubspoke-eastus/operationResults/"),
        "{loc}"
    );
    assert_eq!(c.wait_location(&loc).await, 204);
    assert_eq!(c.get(&cc_id("cc-hubspoke-eastus")).await.status, 404);
    let r = c
        .post(
            &format!("{}/listActiveConnectivityConfigurations", nm_id()),
            json!({"regions": ["eastus"]}),
        )
        .await;
    assert!(r.body["value"].as_array().unwrap().is_empty());
    assert_eq!(
        c.delete(&format!("{}?force=false", group_id("all-prod-spokes")))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn failed_deployment_fault_reports_failed_with_error_message() {
    let (_h, c) = globo().await;
    setup_connectivity(&c).await;
    c.sim(
        "POST",
        "/_sim/faults",
        Some(json!({"match": {"op": "POST commit"}, "kind": "failed-deployment", "count": 1})),
    )
    .await;
    commit(
        &c,
        "Connectivity",
        &["eastus"],
        &[cc_id("cc-hubspoke-eastus")],
    )
    .await;
    let d = until_deployed(&c, "eastus", "Connectivity").await;
    assert_eq!(d["deploymentStatus"], "Failed");
    assert!(!d["errorMessage"].as_str().unwrap().is_empty());
    let r = c
        .post(
            &format!("{}/listActiveConnectivityConfigurations", nm_id()),
            json!({"regions": ["eastus"]}),
        )
        .await;
    assert!(
        r.body["value"].as_array().unwrap().is_empty(),
        "a failed deployment leaves the old goal state active"
    );
}

// ------------------------------------------------------------------ membership & effective

#[tokio::test]
async fn effective_connectivity_follows_region_and_static_membership() {
    let (_h, c) = globo().await;
    setup_connectivity(&c).await;
    let add = |g: &str, v: &str| {
        let (g, v) = (g.to_string(), v.to_string());
        let c = &c;
        async move {
            let r = c
                .put(
                    &format!("{}/staticMembers/{v}", group_id(&g)),
                    json!({"properties": {"resourceId": vnet_id(&v)}}),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
        }
    };
    add("all-prod-spokes", "vnet-prod-eastus").await;
    add("all-prod-spokes", "vnet-prod-westus").await;
    add("global-hubs", "vnet-hub-eastus").await;
    commit(
        &c,
        "Connectivity",
        &["eastus"],
        &[cc_id("cc-hubspoke-eastus"), cc_id("cc-hub-mesh")],
    )
    .await;
    until_deployed(&c, "eastus", "Connectivity").await;
    let eff = |v: &'static str| {
        let c = &c;
        async move {
            let r = c
                .post(
                    &format!(
                        "{}/listNetworkManagerEffectiveConnectivityConfigurations",
                        vnet_id(v)
                    ),
                    json!({}),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            let mut ids: Vec<String> = r.body["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| {
                    x["id"]
                        .as_str()
                        .unwrap()
                        .rsplit('/')
                        .next()
                        .unwrap()
                        .to_string()
                })
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(eff("vnet-prod-eastus").await, vec!["cc-hubspoke-eastus"]);
    assert!(
        eff("vnet-prod-westus").await.is_empty(),
        "westus has no deployment"
    );
    assert!(eff("vnet-nonprod-eastus").await.is_empty(), "not a member");
    assert_eq!(
        eff("vnet-hub-eastus").await,
        vec!["cc-hub-mesh", "cc-hubspoke-eastus"],
        "the hub of a hub-and-spoke and a mesh member"
    );
    let r = c
        .post(
            &format!(
                "{}/listNetworkManagerEffectiveConnectivityConfigurations",
                vnet_id("vnet-nope")
            ),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 404);
}

async fn assign_policies(c: &Client) {
    for (name, tag, value, group) in [
        ("p-hubs", "network_role", "hub", "global-hubs"),
        ("p-prod", "env", "prod", "all-prod-spokes"),
    ] {
        let r = c.put(&def_id(name), policy_def(tag, value, group)).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let r = c
            .put(
                &assignment_id(name),
                json!({"properties": {"policyDefinitionId": def_id(name)}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
}

async fn members(c: &Client, group: &str) -> Vec<String> {
    let v = c
        .sim(
            "GET",
            &format!("/_sim/members?group={}", group_id(group)),
            None,
        )
        .await;
    let mut m: Vec<String> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            x["id"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    m.sort();
    m
}

#[tokio::test]
async fn policy_adds_tag_matching_vnets_after_the_evaluation_delay_and_drops_them() {
    let mut cfg = fast(globojava_world());
    cfg.policy_delay = Duration::from_millis(2500);
    let (_h, c) = start(cfg).await;
    create_nm_and_groups(&c).await;
    assign_policies(&c).await;
    assert!(
        members(&c, "all-prod-spokes").await.is_empty(),
        "not evaluated yet"
    );
    sleep_ms(2700).await;
    let prod = members(&c, "all-prod-spokes").await;
    assert_eq!(prod.len(), 7, "{prod:?}");
    assert!(prod.iter().all(|v| v.starts_with("vnet-prod-")));
    assert!(
        members(&c, "global-hubs").await.is_empty(),
        "hubs lack network_role"
    );
    // Tagging the hubs adds them after the delay.
    let r = c
        .patch(
            &vnet_id("vnet-hub-eastus"),
            json!({"tags": {"network_role": "hub", "costcenter": "cc-4711"}}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(members(&c, "global-hubs").await.is_empty());
    sleep_ms(2700).await;
    assert_eq!(members(&c, "global-hubs").await, vec!["vnet-hub-eastus"]);
    // Retagging a spoke drops it (after the delay).
    c.patch(
        &vnet_id("vnet-prod-eastus"),
        json!({"tags": {"env": "dev"}}),
    )
    .await;
    assert_eq!(members(&c, "all-prod-spokes").await.len(), 7);
    sleep_ms(2700).await;
    assert_eq!(members(&c, "all-prod-spokes").await.len(), 6);
    // Deleting the assignment removes the policy-driven members.
    assert_eq!(c.delete(&assignment_id("p-prod")).await.status, 200);
    assert!(members(&c, "all-prod-spokes").await.is_empty());
}

#[tokio::test]
async fn policy_membership_shows_in_effective_configurations_and_respects_scope() {
    let (_h, c) = globo().await;
    setup_connectivity(&c).await;
    assign_policies(&c).await;
    // DoNotEnforce and out-of-scope assignments have no effect.
    let rg_assign = format!(
        "{}/providers/Microsoft.Authorization/policyAssignments/p-nonprod",
        rg_id(CONN)
    );
    c.put(
        &def_id("p-nonprod"),
        policy_def("env", "nonprod", "all-nonprod-spokes"),
    )
    .await;
    assert_eq!(
        c.put(
            &rg_assign,
            json!({"properties": {"policyDefinitionId": def_id("p-nonprod")}})
        )
        .await
        .status,
        201
    );
    let dne = assignment_id("p-nonprod-dne");
    assert_eq!(c.put(&dne, json!({"properties": {"policyDefinitionId": def_id("p-nonprod"), "enforcementMode": "DoNotEnforce"}})).await.status, 201);
    commit(
        &c,
        "Connectivity",
        &["eastus"],
        &[cc_id("cc-hubspoke-eastus")],
    )
    .await;
    until_deployed(&c, "eastus", "Connectivity").await;
    sleep_ms(250).await;
    let r = c
        .post(
            &format!(
                "{}/listNetworkManagerEffectiveConnectivityConfigurations",
                vnet_id("vnet-prod-eastus")
            ),
            json!({}),
        )
        .await;
    let v = r.body["value"].as_array().unwrap();
    assert_eq!(v.len(), 1, "{}", r.body);
    assert_eq!(
        v[0]["configurationGroups"][0]["id"],
        group_id("all-prod-spokes")
    );
    let r = c
        .post(
            &format!(
                "{}/listNetworkManagerEffectiveConnectivityConfigurations",
                vnet_id("vnet-nonprod-eastus")
            ),
            json!({}),
        )
        .await;
    assert!(
        r.body["value"].as_array().unwrap().is_empty(),
        "RG-scoped assignment does not reach the spokes RG; DoNotEnforce does nothing"
    );
}

#[tokio::test]
async fn policy_definitions_are_validated() {
    let (_h, c) = globo().await;
    create_nm_and_groups(&c).await;
    let mut d = policy_def("env", "prod", "all-prod-spokes");
    d["properties"]["policyRule"]["if"]["allOf"][1] =
        json!({"field": "tags['env']", "equalz": "prod"});
    let r = c.put(&def_id("x"), d).await;
    assert_eq!((r.status, r.code()), (400, "InvalidPolicyRule"));
    let mut d = policy_def("env", "prod", "all-prod-spokes");
    d["properties"]["mode"] = json!("Indexed");
    assert_eq!(
        c.put(&def_id("x"), d).await.status,
        400,
        "addToNetworkGroup needs Microsoft.Network.Data"
    );
    let mut d = policy_def("env", "prod", "all-prod-spokes");
    d["properties"]["policyRule"]["then"]["details"] = json!({});
    assert_eq!(c.put(&def_id("x"), d).await.status, 400);
    let r = c
        .put(
            &assignment_id("a"),
            json!({"properties": {"policyDefinitionId": def_id("ghost")}}),
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "PolicyDefinitionNotFound"));
    let r = c.get(&assignment_id("ghost")).await;
    assert_eq!((r.status, r.code()), (404, "PolicyAssignmentNotFound"));
    let r = c
        .put(&def_id("ok"), policy_def("env", "prod", "all-prod-spokes"))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["properties"]["policyType"], "Custom");
    assert_eq!(
        c.put(&def_id("ok"), policy_def("env", "prod", "all-prod-spokes"))
            .await
            .status,
        201,
        "update is 201 too"
    );
}

// ------------------------------------------------------------------ virtual networks

#[tokio::test]
async fn vnet_put_is_an_azure_async_operation_lro() {
    let mut cfg = fast(globojava_world());
    cfg.lro_delay = Duration::from_millis(3000); // the first poll must still be in progress
    let (_h, c) = start(cfg).await;
    let id = net_id(SPOKES, "virtualNetworks/vnet-new");
    let body = json!({"location": "eastus", "properties": {"addressSpace": {"addressPrefixes": ["10.50.0.0/16"]}, "subnets": [{"name": "a", "properties": {"addressPrefix": "10.50.1.0/24"}}]}});
    let r = c.put(&id, body.clone()).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["properties"]["provisioningState"], "Updating");
    let op = r.header("Azure-AsyncOperation").unwrap();
    assert_eq!(c.follow(&op).await.body, json!({"status": "InProgress"}));
    assert_eq!(c.wait_async(&op).await, json!({"status": "Succeeded"}));
    let v = c.get(&id).await.body;
    assert_eq!(v["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        v["properties"]["subnets"][0]["id"],
        format!("{id}/subnets/a")
    );
    assert!(v["etag"].as_str().unwrap().starts_with("W/\""));
    assert_eq!(c.put(&id, body).await.status, 200, "update answers 200");
    // Address-space checks.
    let bad = json!({"location": "eastus", "properties": {"addressSpace": {"addressPrefixes": ["10.50.0.0/16"]}, "subnets": [{"name": "a", "properties": {"addressPrefix": "10.51.1.0/24"}}]}});
    assert_eq!(c.put(&id, bad).await.code(), "NetcfgSubnetRangeOutsideVnet");
    let bad = json!({"location": "westus", "properties": {"addressSpace": {"addressPrefixes": ["10.50.0.0/16"]}}});
    assert_eq!(c.put(&id, bad).await.code(), "InvalidResourceLocation");
    let bad = json!({"location": "eastus", "properties": {"addressSpace": {"addressPrefixes": ["10.50.0.1/16"]}}});
    assert_eq!(c.put(&id, bad).await.status, 400);
}

#[tokio::test]
async fn vnet_lists_page_with_next_link_and_tags_update_via_patch() {
    let mut cfg = fast(globojava_world());
    cfg.page_size = 5;
    let (_h, c) = start(cfg).await;
    let first = c
        .get(&format!(
            "/subscriptions/{SUB}/providers/Microsoft.Network/virtualNetworks"
        ))
        .await;
    assert_eq!(first.body["value"].as_array().unwrap().len(), 5);
    assert!(
        first.body["nextLink"]
            .as_str()
            .unwrap()
            .starts_with("https://management.azure.com/subscriptions/")
    );
    let all = list_all(
        &c,
        &format!("/subscriptions/{SUB}/providers/Microsoft.Network/virtualNetworks"),
    )
    .await;
    assert_eq!(all.len(), 21);
    let mut names: Vec<&str> = all.iter().map(|v| v["name"].as_str().unwrap()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 21, "no duplicates across pages");
    let r = c
        .patch(
            &vnet_id("vnet-prod-eastus"),
            json!({"tags": {"env": "prod", "costcenter": "cc-4711", "owner": "x"}}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["tags"]["owner"], "x");
    assert_eq!(
        c.get(&vnet_id("vnet-prod-eastus")).await.body["tags"]["owner"],
        "x"
    );
    let r = c
        .patch(&vnet_id("vnet-prod-eastus"), json!({"tags": {"n": 1}}))
        .await;
    assert_eq!(r.status, 400, "tag values are strings");
    let r = c
        .patch(&vnet_id("vnet-prod-eastus"), json!({"properties": {}}))
        .await;
    assert_eq!(r.status, 400, "updateTags takes tags only");
}

#[tokio::test]
async fn world_file_holds_the_globojava_estate_before_netstep() {
    let (_h, c) = globo().await;
    let all = list_all(
        &c,
        &format!("/subscriptions/{SUB}/providers/Microsoft.Network/virtualNetworks"),
    )
    .await;
    assert_eq!(all.len(), 21);
    for (k, region) in REGIONS.iter().enumerate() {
        let k = k + 1;
        let hub = c.get(&vnet_id(&format!("vnet-hub-{region}"))).await.body;
        assert_eq!(
            hub["properties"]["addressSpace"]["addressPrefixes"][0],
            format!("10.{k}.0.0/22")
        );
        assert!(hub["tags"].get("network_role").is_none());
        assert_eq!(
            hub["properties"]["subnets"][0]["properties"]["addressPrefix"],
            format!("10.{k}.0.0/26")
        );
        let prod = c.get(&vnet_id(&format!("vnet-prod-{region}"))).await.body;
        assert_eq!(
            prod["tags"],
            json!({"env": "prod", "costcenter": "cc-4711"})
        );
        assert_eq!(
            prod["properties"]["subnets"][0]["properties"]["addressPrefix"],
            format!("10.{k}.16.0/24")
        );
        let np = c
            .get(&vnet_id(&format!("vnet-nonprod-{region}")))
            .await
            .body;
        assert_eq!(
            np["properties"]["addressSpace"]["addressPrefixes"][0],
            format!("10.{k}.32.0/20")
        );
        let fw = c
            .get(&net_id(CONN, &format!("azureFirewalls/afw-hub-{region}")))
            .await
            .body;
        assert_eq!(
            fw["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"],
            format!("10.{k}.0.4")
        );
        assert!(fw["properties"].get("firewallPolicy").is_none());
        assert_eq!(
            c.get(&net_id(
                CONN,
                &format!("publicIPAddresses/pip-afw-hub-{region}")
            ))
            .await
            .status,
            200
        );
    }
    let (_h2, c2) = start(fast(empty_world())).await;
    assert!(
        list_all(
            &c2,
            &format!("/subscriptions/{SUB}/providers/Microsoft.Network/virtualNetworks")
        )
        .await
        .is_empty()
    );
}

// ------------------------------------------------------------------ firewall policies

fn policy(region: &str, base: Option<&str>) -> Value {
    let mut b = json!({"location": region, "properties": {"sku": {"tier": "Standard"}, "threatIntelMode": "Alert", "dnsSettings": {"enableProxy": true}}});
    if let Some(p) = base {
        b["properties"]["basePolicy"] = json!({"id": p});
    }
    b
}

#[tokio::test]
async fn firewall_policy_tree_allows_one_write_at_a_time() {
    let mut cfg = fast(globojava_world());
    cfg.lro_delay = Duration::from_millis(3000);
    let (_h, c) = start(cfg).await;
    let parent = net_id(CONN, "firewallPolicies/fwp-parent");
    let r = c.put(&parent, policy("westeurope", None)).await;
    assert_eq!(r.status, 201);
    assert!(r.header("Azure-AsyncOperation").is_some());
    let r = c
        .put(
            &format!("{parent}/ruleCollectionGroups/rcg1"),
            json!({"properties": {"priority": 100}}),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "AnotherOperationInProgress"));
    sleep_ms(3200).await;
    let child = net_id(CONN, "firewallPolicies/fwp-child");
    assert_eq!(
        c.put(&child, policy("westeurope", Some(&parent)))
            .await
            .status,
        201
    );
    // The parent is part of the child's tree.
    let r = c.put(&parent, policy("westeurope", None)).await;
    assert_eq!((r.status, r.code()), (409, "AnotherOperationInProgress"));
    sleep_ms(3200).await;
    let r = c
        .put(
            &format!("{parent}/ruleCollectionGroups/rcg1"),
            json!({"properties": {"priority": 100}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = c
        .put(
            &format!("{parent}/ruleCollectionGroups/rcg2"),
            json!({"properties": {"priority": 200}}),
        )
        .await;
    assert_eq!(
        r.code(),
        "AnotherOperationInProgress",
        "two RCGs of one policy"
    );
    let r = c.put(&child, policy("westeurope", Some(&parent))).await;
    assert_eq!(
        r.code(),
        "AnotherOperationInProgress",
        "a child while its parent's RCG is written"
    );
    let unrelated = net_id(CONN, "firewallPolicies/fwp-other");
    assert_eq!(
        c.put(&unrelated, policy("eastus", None)).await.status,
        201,
        "other trees are independent"
    );
}

#[tokio::test]
async fn firewall_policy_children_share_region_and_are_listed_on_the_parent() {
    let (_h, c) = globo().await;
    let parent = net_id(CONN, "firewallPolicies/fwp-parent");
    let r = c.put(&parent, policy("westeurope", None)).await;
    c.wait_async(&r.header("Azure-AsyncOperation").unwrap())
        .await;
    let r = c
        .put(
            &net_id(CONN, "firewallPolicies/fwp-east"),
            policy("eastus", Some(&parent)),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (400, "FirewallPolicyBasePolicyLocationMismatch")
    );
    let child = net_id(CONN, "firewallPolicies/fwp-child");
    let r = c.put(&child, policy("westeurope", Some(&parent))).await;
    assert_eq!(r.status, 201);
    c.wait_async(&r.header("Azure-AsyncOperation").unwrap())
        .await;
    let mut prem = policy("westeurope", Some(&parent));
    prem["properties"]["sku"]["tier"] = json!("Premium");
    assert_eq!(
        c.put(&net_id(CONN, "firewallPolicies/fwp-prem"), prem)
            .await
            .status,
        400
    );
    let p = c.get(&parent).await.body;
    assert_eq!(p["properties"]["childPolicies"], json!([{"id": child}]));
    assert_eq!(
        c.get(&child).await.body["properties"]["basePolicy"]["id"],
        parent
    );
    // Associate a firewall (GET, modify, PUT the whole resource).
    let fw = net_id(CONN, "azureFirewalls/afw-hub-eastus");
    let mut body = c.get(&fw).await.body;
    body["properties"]["firewallPolicy"] = json!({"id": child});
    let r = c.put(&fw, body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    c.wait_async(&r.header("Azure-AsyncOperation").unwrap())
        .await;
    assert_eq!(
        c.get(&child).await.body["properties"]["firewalls"],
        json!([{"id": fw}])
    );
    assert_eq!(
        c.get(&fw).await.body["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"],
        "10.1.0.4"
    );
    // Policies in use cannot be deleted.
    assert_eq!(
        c.delete(&parent).await.code(),
        "FirewallPolicyHasChildPolicies"
    );
    assert_eq!(c.delete(&child).await.code(), "FirewallPolicyInUse");
    let r = c.get(&format!("{parent}/ruleCollectionGroups/none")).await;
    assert_eq!((r.status, r.code()), (404, "NotFound"));
}

#[tokio::test]
async fn rule_collection_groups_are_validated() {
    let (_h, c) = globo().await;
    let p = net_id(CONN, "firewallPolicies/fwp");
    let r = c.put(&p, policy("westeurope", None)).await;
    c.wait_async(&r.header("Azure-AsyncOperation").unwrap())
        .await;
    let rcg = format!("{p}/ruleCollectionGroups/g");
    let rc = |prio: Value, proto: &str| json!({"properties": {"priority": 300, "ruleCollections": [{"ruleCollectionType": "FirewallPolicyFilterRuleCollection", "name": "c", "priority": prio, "action": {"type": "Allow"}, "rules": [{"ruleType": "NetworkRule", "name": "r", "ipProtocols": [proto], "sourceAddresses": ["*"], "destinationAddresses": ["*"], "destinationPorts": ["443"]}]}]}});
    assert_eq!(c.put(&rcg, rc(json!(99), "TCP")).await.status, 400);
    assert_eq!(c.put(&rcg, rc(json!(100), "HTTP")).await.status, 400);
    assert_eq!(
        c.put(&rcg, json!({"properties": {"priority": 50}}))
            .await
            .status,
        400
    );
    assert_eq!(
        c.put(&rcg, json!({"properties": {"ruleCollections": []}}))
            .await
            .status,
        400,
        "priority required"
    );
    let mut b = rc(json!(100), "TCP");
    b["properties"]["ruleCollections"][0]["ruleCollectionType"] = json!("FirewallPolicyMagic");
    assert_eq!(c.put(&rcg, b).await.status, 400);
    let r = c.put(&rcg, rc(json!(100), "TCP")).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

// ------------------------------------------------------------------ private DNS

#[tokio::test]
async fn dns_zone_with_links_cannot_be_deleted_and_preconditions_hold() {
    let (_h, c) = globo().await;
    let z = net_id(CONN, "privateDnsZones/globojava.com");
    let r = c.put(&z, json!({"location": "westeurope"})).await;
    assert_eq!(r.status, 400, "private zones are global");
    let r = c
        .call(
            "PUT",
            &z,
            Some(json!({"location": "global"})),
            &[("If-None-Match", "*")],
        )
        .await;
    assert_eq!(r.status, 201);
    let op = r.header("Azure-AsyncOperation").unwrap();
    assert!(op.contains("/privateDnsOperationStatuses/"), "{op}");
    c.wait_async(&op).await;
    let r = c
        .call(
            "PUT",
            &z,
            Some(json!({"location": "global"})),
            &[("If-None-Match", "*")],
        )
        .await;
    assert_eq!((r.status, r.code()), (412, "PreconditionFailed"));
    let etag = c.get(&z).await.body["etag"].as_str().unwrap().to_string();
    assert_eq!(
        c.call(
            "PUT",
            &z,
            Some(json!({"location": "global", "tags": {"a": "b"}})),
            &[("If-Match", "stale")]
        )
        .await
        .status,
        412
    );
    assert_eq!(
        c.call(
            "PUT",
            &z,
            Some(json!({"location": "global", "tags": {"a": "b"}})),
            &[("If-Match", &etag)]
        )
        .await
        .status,
        200
    );
    let link = format!("{z}/virtualNetworkLinks/link-vnet-hub-eastus");
    let r = c.put(&link, json!({"location": "global", "properties": {"virtualNetwork": {"id": vnet_id("vnet-hub-eastus")}, "registrationEnabled": false}})).await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.body["properties"]["virtualNetworkLinkState"],
        "InProgress"
    );
    c.wait_async(&r.header("Azure-AsyncOperation").unwrap())
        .await;
    let r = c.put(&format!("{z}/virtualNetworkLinks/dup"), json!({"location": "global", "properties": {"virtualNetwork": {"id": vnet_id("vnet-hub-eastus")}}})).await;
    assert_eq!(r.status, 409, "one link per VNet per zone");
    let r = c.delete(&z).await;
    assert_eq!(r.status, 409);
    assert!(
        r.message().contains("virtual network link"),
        "{}",
        r.message()
    );
    let r = c.delete(&link).await;
    assert_eq!(r.status, 202);
    let r = c.delete(&z).await;
    assert_eq!(r.status, 202);
    assert_eq!(c.get(&z).await.status, 404);
}

#[tokio::test]
async fn dns_a_records_are_synchronous_and_listed_under_a_and_all() {
    let (_h, c) = globo().await;
    let z = net_id(CONN, "privateDnsZones/globojava.com");
    c.put(&z, json!({"location": "global"})).await;
    let rec = format!("{z}/A/database.eastus");
    let r = c
        .put(
            &rec,
            json!({"properties": {"ttl": 300, "aRecords": [{"ipv4Address": "10.1.16.10"}]}}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(r.header("Azure-AsyncOperation").is_none());
    assert_eq!(
        r.body["properties"]["fqdn"],
        "database.eastus.globojava.com."
    );
    assert_eq!(
        c.put(
            &rec,
            json!({"properties": {"ttl": 300, "aRecords": [{"ipv4Address": "10.1.16.11"}]}})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        c.put(
            &format!("{z}/A/bad"),
            json!({"properties": {"ttl": 300, "aRecords": [{"ipv4Address": "10.1.16"}]}})
        )
        .await
        .status,
        400
    );
    let r = c
        .call(
            "PUT",
            &rec,
            Some(json!({"properties": {"ttl": 60, "aRecords": []}})),
            &[("If-None-Match", "*")],
        )
        .await;
    assert_eq!(r.status, 412);
    assert_eq!(
        c.get(&format!("{z}/A")).await.body["value"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        c.get(&format!("{z}/ALL")).await.body["value"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        c.get(&z).await.body["properties"]["numberOfRecordSets"],
        2,
        "the SOA counts"
    );
    assert_eq!(c.delete(&rec).await.status, 200);
    assert_eq!(c.delete(&rec).await.status, 204);
    assert_eq!(c.get(&rec).await.code(), "NotFound");
}

#[tokio::test]
async fn dns_link_reads_have_their_own_per_zone_bucket() {
    let mut cfg = fast(globojava_world());
    cfg.limits.dns_link_reads = (3, 0.01);
    let (_h, c) = start(cfg).await;
    let z = net_id(CONN, "privateDnsZones/globojava.com");
    c.put(&z, json!({"location": "global"})).await;
    for _ in 0..3 {
        assert_eq!(c.get(&format!("{z}/virtualNetworkLinks")).await.status, 200);
    }
    let r = c.get(&format!("{z}/virtualNetworkLinks/x")).await;
    assert_eq!(r.status, 429);
    assert!(r.header("Retry-After").is_some());
    assert_eq!(
        c.get(&z).await.status,
        200,
        "zone reads are not in the link bucket"
    );
    let z2 = net_id(CONN, "privateDnsZones/other.com");
    c.put(&z2, json!({"location": "global"})).await;
    assert_eq!(
        c.get(&format!("{z2}/virtualNetworkLinks")).await.status,
        200,
        "per zone"
    );
}

// ------------------------------------------------------------------ faults, hooks, drift, control

#[tokio::test]
async fn faults_by_status_sequence_count_and_seeded_rate() {
    let (_h, c) = globo().await;
    let hub = vnet_id("vnet-hub-eastus");
    c.sim("POST", "/_sim/faults", Some(json!({"match": {"method": "GET", "path_contains": "vnet-hub-eastus"}, "kind": 503, "sequence": [true, false, true], "retry_after_s": 7}))).await;
    let r = c.get(&hub).await;
    assert_eq!(
        (r.status, r.header("Retry-After").as_deref()),
        (503, Some("7"))
    );
    assert_eq!(c.get(&hub).await.status, 200);
    assert_eq!(c.get(&hub).await.status, 503);
    assert_eq!(
        c.get(&hub).await.status,
        200,
        "past the end of the sequence"
    );
    c.sim("DELETE", "/_sim/faults", None).await;
    c.sim(
        "POST",
        "/_sim/faults",
        Some(
            json!({"match": {"op": "PATCH virtualNetworks"}, "kind": "409-another-op", "count": 2}),
        ),
    )
    .await;
    for want in [409, 409, 200] {
        assert_eq!(c.patch(&hub, json!({"tags": {}})).await.status, want);
    }
    c.sim("DELETE", "/_sim/faults", None).await;
    c.sim(
        "POST",
        "/_sim/faults",
        Some(json!({"match": {"regex": "/virtualNetworks/vnet-(prod|nonprod)-"}, "kind": "500"})),
    )
    .await;
    assert_eq!(
        c.get(&vnet_id("vnet-prod-westus")).await.code(),
        "InternalServerError"
    );
    assert_eq!(c.get(&hub).await.status, 200);
    c.sim("DELETE", "/_sim/faults", None).await;
    // A seeded rate gives the same pattern on every run.
    let pattern = |seed: u64| async move {
        let mut cfg = fast(globojava_world());
        cfg.seed = seed;
        let (_h, c) = start(cfg).await;
        c.sim(
            "POST",
            "/_sim/faults",
            Some(json!({"match": {"method": "GET"}, "kind": 429, "rate": 0.3})),
        )
        .await;
        let mut out = Vec::new();
        for _ in 0..40 {
            out.push(c.get(&vnet_id("vnet-hub-eastus")).await.status == 429);
        }
        out
    };
    let a = pattern(42).await;
    assert_eq!(a, pattern(42).await);
    let hits = a.iter().filter(|x| **x).count();
    assert!((3..=25).contains(&hits), "{hits} of 40");
    let stats = c.sim("GET", "/_sim/stats", None).await;
    assert_eq!(stats["faults_injected"], 5);
    let r = c
        .call("POST", "/_sim/faults", Some(json!({"kind": "418"})), &[])
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn drop_connection_fault_processes_the_request_but_loses_the_answer() {
    let (_h, c) = globo().await;
    c.sim(
        "POST",
        "/_sim/faults",
        Some(json!({"match": {"method": "PATCH"}, "kind": "drop-connection", "count": 1})),
    )
    .await;
    let res = reqwest::Client::new()
        .patch(format!(
            "{}{}?api-version=2026-07-01",
            c.base,
            vnet_id("vnet-hub-eastus")
        ))
        .header("Authorization", "Bearer t")
        .json(&json!({"tags": {"network_role": "hub"}}))
        .send()
        .await;
    let failed = match res {
        Err(_) => true,
        Ok(r) => r.bytes().await.is_err(),
    };
    assert!(failed, "the client must see a broken connection");
    assert_eq!(
        c.get(&vnet_id("vnet-hub-eastus")).await.body["tags"]["network_role"],
        "hub",
        "the write happened"
    );
}

#[tokio::test]
async fn slow_and_failed_lro_faults() {
    let (_h, c) = globo().await;
    c.sim(
        "POST",
        "/_sim/faults",
        Some(json!({"match": {"op": "PUT firewallPolicies"}, "kind": "failed-lro", "count": 1})),
    )
    .await;
    let p = net_id(CONN, "firewallPolicies/fwp");
    let r = c.put(&p, policy("westeurope", None)).await;
    let st = c
        .wait_async(&r.header("Azure-AsyncOperation").unwrap())
        .await;
    assert_eq!(st["status"], "Failed");
    assert!(st["error"]["code"].is_string());
    assert_eq!(
        c.get(&p).await.body["properties"]["provisioningState"],
        "Failed"
    );
    c.sim(
        "POST",
        "/_sim/faults",
        Some(json!({"match": {"op": "PUT privateDnsZones"}, "kind": "slow-lro", "count": 1})),
    )
    .await;
    let r = c
        .put(
            &net_id(CONN, "privateDnsZones/slow.com"),
            json!({"location": "global"}),
        )
        .await;
    let op = r.header("Azure-AsyncOperation").unwrap();
    sleep_ms(300).await;
    assert_eq!(
        c.follow(&op).await.body["status"],
        "InProgress",
        "slow LROs take 10x + 1 s"
    );
}

#[tokio::test]
async fn hook_kills_a_process_after_the_kth_request() {
    let (_h, c) = globo().await;
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    let pid = child.id();
    let r = c
        .sim(
            "POST",
            "/_sim/hooks",
            Some(json!({"after_request": 3, "kill_pid": pid})),
        )
        .await;
    assert_eq!(r["hooks"], 1);
    for _ in 0..2 {
        c.get(&vnet_id("vnet-hub-eastus")).await;
    }
    sleep_ms(100).await;
    assert!(child.try_wait().unwrap().is_none(), "not yet");
    c.get(&vnet_id("vnet-hub-eastus")).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "sleep was not killed");
        sleep_ms(20).await;
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9));
    // `after_request` is absolute (since start or reset): a passed request is refused.
    let r = c
        .call(
            "POST",
            "/_sim/hooks",
            Some(json!({"after_request": 2, "kill_pid": pid})),
            &[],
        )
        .await;
    assert_eq!(r.status, 409);
}

#[tokio::test]
async fn drift_changes_resources_behind_the_tools_back() {
    let (_h, c) = globo().await;
    let r = c.sim("POST", "/_sim/drift", Some(json!({"op": "retag", "id": vnet_id("vnet-prod-eastus"), "tags": {"env": "nonprod"}}))).await;
    assert!(r["id"].is_string(), "{r}");
    assert_eq!(
        c.get(&vnet_id("vnet-prod-eastus")).await.body["tags"],
        json!({"env": "nonprod"})
    );
    let new = net_id(SPOKES, "virtualNetworks/vnet-prod-eastus-2");
    let r = c.sim("POST", "/_sim/drift", Some(json!({"op": "add_vnet", "resource": {"id": new, "location": "eastus", "tags": {"env": "prod"}, "properties": {"addressSpace": {"addressPrefixes": ["10.1.64.0/20"]}}}}))).await;
    assert_eq!(r["id"], new);
    assert_eq!(c.get(&new).await.status, 200);
    c.sim(
        "POST",
        "/_sim/drift",
        Some(json!({"op": "delete", "id": vnet_id("vnet-prod-westus")})),
    )
    .await;
    assert_eq!(c.get(&vnet_id("vnet-prod-westus")).await.status, 404);
    create_nm_and_groups(&c).await;
    let e1 = c.get(&group_id("global-hubs")).await.body["etag"].clone();
    c.sim("POST", "/_sim/drift", Some(json!({"op": "put", "resource": {"id": group_id("global-hubs"), "properties": {"description": "changed by hand", "memberType": "VirtualNetwork"}}}))).await;
    let g = c.get(&group_id("global-hubs")).await.body;
    assert_eq!(g["properties"]["description"], "changed by hand");
    assert_ne!(g["etag"], e1);
    let r = c
        .call("POST", "/_sim/drift", Some(json!({"op": "explode"})), &[])
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn stats_log_and_reset() {
    let (_h, c) = globo().await;
    create_nm_and_groups(&c).await;
    c.get(&vnet_id("vnet-hub-eastus")).await;
    c.delete(&group_id("all-prod-spokes")).await;
    let s = c.sim("GET", "/_sim/stats", None).await;
    assert_eq!(s["by_operation"]["PUT networkGroups"], 3);
    assert_eq!(s["by_operation"]["PUT networkManagers"], 1);
    assert_eq!(s["by_operation"]["GET virtualNetworks"], 1);
    assert_eq!(
        (
            s["reads"].as_u64(),
            s["writes"].as_u64(),
            s["deletes"].as_u64()
        ),
        (Some(1), Some(4), Some(1))
    );
    let log = c.sim("GET", "/_sim/log", None).await;
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 6);
    assert_eq!(log[0]["method"], "PUT");
    assert_eq!(log[0]["status"], 200);
    assert!(log[0]["time"].is_string());
    c.sim("POST", "/_sim/reset", None).await;
    assert_eq!(c.sim("GET", "/_sim/stats", None).await["writes"], 0);
    assert_eq!(
        c.get(&nm_id()).await.status,
        200,
        "plain reset keeps resources"
    );
    c.sim("POST", "/_sim/reset?world=1", None).await;
    assert_eq!(
        c.get(&nm_id()).await.status,
        404,
        "world reset reloads the world"
    );
    assert_eq!(c.get(&vnet_id("vnet-hub-eastus")).await.status, 200);
}

#[tokio::test]
async fn simulated_latency_delays_arm_requests() {
    let mut cfg = fast(globojava_world());
    cfg.latency = Duration::from_millis(80);
    cfg.jitter = Duration::from_millis(20);
    let (_h, c) = start(cfg).await;
    for _ in 0..3 {
        let t = Instant::now();
        assert_eq!(c.get(&vnet_id("vnet-hub-eastus")).await.status, 200);
        assert!(
            t.elapsed() >= Duration::from_millis(60),
            "{:?}",
            t.elapsed()
        );
    }
}

#[tokio::test]
async fn recorder_writes_oav_exchanges_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = fast(globojava_world());
    cfg.record_traffic = Some(dir.path().to_path_buf());
    let (_h, c) = start(cfg).await;
    c.get(&vnet_id("vnet-hub-eastus")).await;
    c.delete(&net_id(CONN, "firewallPolicies/none")).await;
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2);
    let doc: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert_eq!(doc["liveRequest"]["method"], "GET");
    assert!(
        doc["liveRequest"]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://management.azure.com/subscriptions/")
    );
    assert_eq!(doc["liveResponse"]["statusCode"], "200");
    assert_eq!(doc["liveResponse"]["body"]["name"], "vnet-hub-eastus");
    assert!(
        !std::fs::read_to_string(&files[0])
            .unwrap()
            .contains("test-token")
    );
    let doc: Value = serde_json::from_slice(&std::fs::read(&files[1]).unwrap()).unwrap();
    assert_eq!(doc["liveResponse"]["statusCode"], "204");
    assert!(doc["liveResponse"].get("body").is_none());
}

#[tokio::test]
async fn thousands_of_vnets_list_page_and_resolve_membership() {
    let mut world = empty_world();
    let mut res = Vec::new();
    for i in 0..3000u32 {
        let env = if i % 2 == 0 { "prod" } else { "nonprod" };
        res.push(json!({"id": net_id(SPOKES, &format!("virtualNetworks/vnet-{i:05}")), "location": REGIONS[(i % 7) as usize], "tags": {"env": env},
            "properties": {"addressSpace": {"addressPrefixes": [format!("10.{}.{}.0/24", 100 + i / 256, i % 256)]}}}));
    }
    world["resources"] = Value::Array(res);
    let (_h, c) = start(fast(world)).await;
    let all = list_all(
        &c,
        &format!("/subscriptions/{SUB}/providers/Microsoft.Network/virtualNetworks"),
    )
    .await;
    assert_eq!(all.len(), 3000);
    create_nm_and_groups(&c).await;
    c.put(&def_id("p"), policy_def("env", "prod", "all-prod-spokes"))
        .await;
    c.put(
        &assignment_id("p"),
        json!({"properties": {"policyDefinitionId": def_id("p")}}),
    )
    .await;
    sleep_ms(200).await;
    assert_eq!(members(&c, "all-prod-spokes").await.len(), 1500);
}

#[tokio::test]
async fn binary_prints_listening_line_first_and_stops_on_sigterm() {
    use tokio::io::AsyncBufReadExt;
    let world = repo_dir().join("examples/globojava/world.json");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_armsim"))
        .args(["--listen", "127.0.0.1:0", "--world"])
        .arg(&world)
        .args([
            "--latency-ms",
            "5,2",
            "--seed",
            "3",
            "--policy-delay-ms",
            "10",
            "--deploy-delay-ms",
            "10",
            "--lro-delay-ms",
            "10",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn armsim");
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("first line")
        .unwrap()
        .unwrap();
    let url = first
        .strip_prefix("listening on ")
        .expect(&first)
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"));
    let c = Client::new(&url);
    assert_eq!(c.get(&vnet_id("vnet-hub-eastus")).await.status, 200);
    let pid = child.id().unwrap();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exit after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    // Usage errors exit 2.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_armsim"))
        .args(["--latency-ms", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn hub_and_spoke_deployments_show_anm_peerings_in_both_directions() {
    let (_h, c) = globo().await;
    setup_connectivity(&c).await;
    for v in ["vnet-prod-eastus", "vnet-prod-westus"] {
        let r = c
            .put(
                &format!("{}/staticMembers/{v}", group_id("all-prod-spokes")),
                json!({"properties": {"resourceId": vnet_id(v)}}),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let peerings = |v: &'static str| {
        let c = &c;
        async move {
            let r = c
                .get(&format!("{}/virtualNetworkPeerings", vnet_id(v)))
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.body["value"].as_array().unwrap().clone()
        }
    };
    assert!(
        peerings("vnet-prod-eastus").await.is_empty(),
        "nothing before a deployment"
    );
    commit(
        &c,
        "Connectivity",
        &["eastus"],
        &[cc_id("cc-hubspoke-eastus"), cc_id("cc-hub-mesh")],
    )
    .await;
    until_deployed(&c, "eastus", "Connectivity").await;
    let spoke = peerings("vnet-prod-eastus").await;
    assert_eq!(spoke.len(), 1);
    let p = &spoke[0];
    assert!(p["name"].as_str().unwrap().starts_with("ANM_"), "{p}");
    assert_eq!(
        p["properties"]["remoteVirtualNetwork"]["id"],
        vnet_id("vnet-hub-eastus")
    );
    assert_eq!(p["properties"]["peeringState"], "Connected");
    let hub = peerings("vnet-hub-eastus").await;
    let remotes: Vec<&str> = hub
        .iter()
        .map(|p| {
            p["properties"]["remoteVirtualNetwork"]["id"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        remotes,
        vec![vnet_id("vnet-prod-eastus").as_str()],
        "westus spokes are not deployed; the mesh adds no peerings"
    );
    assert!(peerings("vnet-prod-westus").await.is_empty());
    let name = p["name"].as_str().unwrap();
    assert_eq!(
        c.get(&format!(
            "{}/virtualNetworkPeerings/{name}",
            vnet_id("vnet-prod-eastus")
        ))
        .await
        .status,
        200
    );
    // A GET-modify-PUT that sends the ANM peering back does not duplicate it.
    let mut body = c.get(&vnet_id("vnet-prod-eastus")).await.body;
    body["tags"]["x"] = json!("y");
    let r = c.put(&vnet_id("vnet-prod-eastus"), body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(peerings("vnet-prod-eastus").await.len(), 1);
    // Undeploying removes them.
    commit(&c, "Connectivity", &["eastus"], &[]).await;
    until_deployed(&c, "eastus", "Connectivity").await;
    assert!(peerings("vnet-prod-eastus").await.is_empty());
    assert!(peerings("vnet-hub-eastus").await.is_empty());
}

// ------------------------------------------------------------ VNets owned by netstep

#[tokio::test]
async fn a_subnet_holding_a_firewall_lists_it_and_cannot_be_deleted_or_readdressed() {
    let (_h, c) = globo().await;
    let id = vnet_id("vnet-hub-eastus");
    let v = c.get(&id).await.body;
    let fw = net_id(CONN, "azureFirewalls/afw-hub-eastus");
    assert_eq!(
        v["properties"]["subnets"][0]["properties"]["ipConfigurations"][0]["id"],
        format!("{fw}/azureFirewallIpConfigurations/ipconfig1")
    );
    let mut without = v.clone();
    without["properties"]["subnets"] = json!([]);
    let r = c.put(&id, without).await;
    assert_eq!((r.status, r.code()), (400, "InUseSubnetCannotBeDeleted"));
    assert!(r.message().contains(&fw), "{}", r.message());
    let mut moved = v.clone();
    moved["properties"]["subnets"][0]["properties"]["addressPrefix"] = json!("10.1.1.0/26");
    let r = c.put(&id, moved).await;
    assert_eq!((r.status, r.code()), (400, "InUseSubnetCannotBeUpdated"));
    // Shrinking the address space under the subnet is refused too.
    let mut shrunk = v.clone();
    shrunk["properties"]["addressSpace"]["addressPrefixes"] = json!(["10.1.2.0/23"]);
    let r = c.put(&id, shrunk).await;
    assert_eq!((r.status, r.code()), (400, "NetcfgSubnetRangeOutsideVnet"));
    // Sent back unchanged, it is accepted.
    assert!(c.put(&id, v).await.status < 300);
}

#[tokio::test]
async fn a_peering_goes_out_of_sync_when_the_remote_space_changes_until_it_is_synced() {
    let (_h, c) = globo().await;
    let prod = vnet_id("vnet-prod-eastus");
    let nonprod = vnet_id("vnet-nonprod-eastus");
    let peer = |remote: &str| json!({"properties": {"remoteVirtualNetwork": {"id": remote}}});
    let p1 = format!("{prod}/virtualNetworkPeerings/to-nonprod");
    let p2 = format!("{nonprod}/virtualNetworkPeerings/to-prod");
    assert!(c.put(&p1, peer(&nonprod)).await.status < 300);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(c.put(&p2, peer(&prod)).await.status < 300);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        c.get(&p1).await.body["properties"]["peeringSyncLevel"],
        "FullyInSync"
    );
    // nonprod grows (its own peering is sent back with the VNet and keeps its synced copy).
    let mut v = c.get(&nonprod).await.body;
    v["properties"]["addressSpace"]["addressPrefixes"] = json!(["10.1.32.0/20", "10.1.48.0/20"]);
    assert!(c.put(&nonprod, v).await.status < 300);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a = c.get(&p1).await.body;
    assert_eq!(a["properties"]["peeringSyncLevel"], "LocalNotInSync");
    assert_eq!(
        a["properties"]["remoteAddressSpace"]["addressPrefixes"],
        json!(["10.1.32.0/20"])
    );
    assert_eq!(
        c.get(&p2).await.body["properties"]["peeringSyncLevel"],
        "RemoteNotInSync"
    );
    // Sync on the stale side.
    let r = c
        .put(&format!("{p1}?syncRemoteAddressSpace=true"), peer(&nonprod))
        .await;
    assert!(r.status < 300, "{}", r.body);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a = c.get(&p1).await.body;
    assert_eq!(a["properties"]["peeringSyncLevel"], "FullyInSync");
    assert_eq!(
        a["properties"]["remoteAddressSpace"]["addressPrefixes"],
        json!(["10.1.32.0/20", "10.1.48.0/20"])
    );
    assert_eq!(
        c.get(&p2).await.body["properties"]["peeringSyncLevel"],
        "FullyInSync"
    );
}

// ------------------------------------------------------------------ control plane for tests

#[tokio::test]
async fn retries_are_counted_and_early_ones_flagged_against_retry_after() {
    let (_h, c) = globo().await;
    let id = vnet_id("vnet-hub-eastus");
    // Two injected 503s with Retry-After: 1 on this VNet's GETs.
    c.sim(
        "POST",
        "/_sim/faults",
        Some(json!({"match": {"method": "GET", "path_contains": "vnet-hub-eastus"}, "kind": "503", "count": 2, "retry_after_s": 1})),
    )
    .await;
    assert_eq!(c.get(&id).await.status, 503);
    // Retried at once: early.
    assert_eq!(c.get(&id).await.status, 503);
    // Retried after the Retry-After: on time.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(c.get(&id).await.status, 200);
    // Not a retry: the previous answer succeeded.
    assert_eq!(c.get(&id).await.status, 200);
    let stats = c.sim("GET", "/_sim/stats", None).await;
    assert_eq!(stats["retries"], 2, "{stats}");
    assert_eq!(stats["retry_after_given"], 2, "{stats}");
    assert_eq!(stats["early_retries"], 1, "{stats}");
}

#[tokio::test]
async fn seeded_fault_rules_fire_on_the_same_requests_every_time() {
    let mut fired = Vec::new();
    for _ in 0..2 {
        let (_h, c) = globo().await;
        c.sim(
            "POST",
            "/_sim/faults",
            Some(json!({"match": {"method": "GET"}, "kind": "500", "rate": 0.3, "seed": 42})),
        )
        .await;
        let mut seq = Vec::new();
        for _ in 0..40 {
            seq.push(c.get(&vnet_id("vnet-hub-eastus")).await.status == 500);
        }
        fired.push(seq);
    }
    assert_eq!(fired[0], fired[1]);
    let n = fired[0].iter().filter(|f| **f).count();
    assert!((3..=25).contains(&n), "{n} of 40 at 30%");
}

#[tokio::test]
async fn snapshot_and_restore_put_the_whole_estate_back_and_inventory_lists_it() {
    let (_h, c) = globo().await;
    let before = c.sim("GET", "/_sim/inventory", None).await;
    let n = before.as_array().unwrap().len();
    assert!(n > 20, "{before}");
    assert!(
        before
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["type"] == "Microsoft.Network/virtualNetworks"),
        "{before}"
    );
    let snap = c
        .sim("POST", "/_sim/snapshot", Some(json!({"name": "s1"})))
        .await;
    assert_eq!(snap["resources"], n);
    // Change the estate: a new network manager's group, a retag.
    setup_connectivity(&c).await;
    let after = c.sim("GET", "/_sim/inventory", None).await;
    assert!(after.as_array().unwrap().len() > n);
    let restored = c
        .sim("POST", "/_sim/restore", Some(json!({"name": "s1"})))
        .await;
    assert_eq!(restored["resources"], n, "{restored}");
    assert_eq!(c.sim("GET", "/_sim/inventory", None).await, before);
    // The estate answers as before; an unknown snapshot is 404.
    assert_eq!(c.get(&vnet_id("vnet-hub-eastus")).await.status, 200);
    let r = c
        .sim("POST", "/_sim/restore", Some(json!({"name": "nope"})))
        .await;
    assert!(r["error"].as_str().unwrap().contains("no snapshot"), "{r}");
}
