//! Proof of fidelity 1: a scripted scenario exercising every modelled operation, recorded by
//! armsim's traffic recorder in oav format and validated with Microsoft's validator (oav,
//! via `shared/azure-specs/check-traffic`) against the REST specs.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// What a well-behaved client sends back after GET-modify: no read-only members (the spec
/// forbids them in requests even though the Network RP ignores them).
fn strip_read_only(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(o) => {
                for k in [
                    "etag",
                    "resourceGuid",
                    "provisioningState",
                    "privateIPAddress",
                    "type",
                ] {
                    o.remove(k);
                }
                // A subnet's users are read-only (armsim lists a firewall's ip configuration).
                if o.contains_key("addressPrefix") {
                    o.remove("ipConfigurations");
                }
                for x in o.values_mut() {
                    walk(x);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    if let Some(o) = v.as_object_mut() {
        o.remove("name");
    }
    v
}

async fn lro_put(c: &Client, path: &str, body: Value, want: u16) -> Resp {
    let r = c.put(path, body).await;
    assert_eq!(r.status, want, "PUT {path}: {}", r.body);
    let op = r
        .header("Azure-AsyncOperation")
        .unwrap_or_else(|| panic!("PUT {path}: no Azure-AsyncOperation"));
    let st = c.wait_async(&op).await;
    assert_eq!(st["status"], "Succeeded", "{path}: {st}");
    r
}

async fn wait_deployed(c: &Client, ty: &str, regions: &[&str]) -> Value {
    let nm = nm_id();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let r = c
            .post(
                &format!("{nm}/listDeploymentStatus"),
                json!({"regions": regions, "deploymentTypes": [ty]}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.body["value"].as_array().cloned().unwrap_or_default();
        if v.len() == regions.len() && v.iter().all(|d| d["deploymentStatus"] == "Deployed") {
            return r.body;
        }
        sleep_ms(40).await;
    }
    panic!("{ty} deployment never reached Deployed");
}

/// Runs the scenario, recording into `dir`; returns the number of ARM requests made.
async fn scenario(dir: PathBuf) -> u64 {
    let mut cfg = fast(globojava_world());
    cfg.record_traffic = Some(dir);
    cfg.page_size = 8;
    let (h, c) = start(cfg).await;
    let sub_vnets = format!("/subscriptions/{SUB}/providers/Microsoft.Network/virtualNetworks");

    // ---- Virtual networks: list by subscription with paging, list by RG, get, tags, PUT LRO.
    let mut url = sub_vnets.clone();
    let mut all = Vec::new();
    loop {
        let r = c.get(&url).await;
        assert_eq!(r.status, 200, "{}", r.body);
        all.extend(r.body["value"].as_array().cloned().unwrap_or_default());
        match r.body["nextLink"].as_str() {
            Some(n) => {
                url = n
                    .strip_prefix("https://management.azure.com")
                    .unwrap()
                    .to_string()
            }
            None => break,
        }
    }
    assert_eq!(all.len(), 21);
    assert_eq!(
        list_all(
            &c,
            &format!(
                "{}/providers/Microsoft.Network/virtualNetworks",
                rg_id(SPOKES)
            )
        )
        .await
        .len(),
        14
    );
    for region in REGIONS {
        let hub = vnet_id(&format!("vnet-hub-{region}"));
        let r = c
            .patch(
                &hub,
                json!({"tags": {"costcenter": "cc-4711", "network_role": "hub"}}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let hub = vnet_id("vnet-hub-westeurope");
    let v = c.get(&hub).await;
    assert_eq!(v.status, 200);
    let mut body = strip_read_only(v.body.clone());
    body["tags"]["owner"] = json!("netops");
    lro_put(&c, &hub, body, 200).await;
    let r = c.get(&format!("{hub}/subnets")).await;
    assert_eq!(r.status, 200);
    let r = c.get(&format!("{hub}/subnets/AzureFirewallSubnet")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let spoke = vnet_id("vnet-prod-westeurope");
    lro_put(
        &c,
        &format!("{spoke}/subnets/snet-data"),
        json!({"properties": {"addressPrefix": "10.4.17.0/24"}}),
        201,
    )
    .await;
    let r = c.get(&format!("{spoke}/virtualNetworkPeerings")).await;
    assert_eq!(r.status, 200);
    // A new VNet (create: 201 + LRO).
    let extra = net_id(SPOKES, "virtualNetworks/vnet-sandbox-westeurope");
    lro_put(&c, &extra, json!({"location": "westeurope", "tags": {"env": "sandbox"}, "properties": {"addressSpace": {"addressPrefixes": ["10.99.0.0/16"]}, "subnets": [{"name": "default", "properties": {"addressPrefix": "10.99.0.0/24"}}]}}), 201).await;
    // Peering with remote address space sync.
    let peer = format!("{extra}/virtualNetworkPeerings/sandbox-to-hub");
    lro_put(&c, &peer, json!({"properties": {"remoteVirtualNetwork": {"id": hub}, "allowVirtualNetworkAccess": true}}), 201).await;
    lro_put(&c, &format!("{peer}?syncRemoteAddressSpace=true"), json!({"properties": {"remoteVirtualNetwork": {"id": hub}, "allowVirtualNetworkAccess": true}}), 200).await;
    let r = c.get(&peer).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // ---- Network manager and groups.
    let nm = nm_id();
    let r = c.get(&nm).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-ms-failure-cause").as_deref(), Some("gateway"));
    create_nm_and_groups(&c).await;
    assert_eq!(c.get(&nm).await.status, 200);
    let r = c
        .get(&format!(
            "{}/providers/Microsoft.Network/networkManagers",
            rg_id(CONN)
        ))
        .await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 1);
    let r = c.get(&format!("{nm}/networkGroups")).await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 3);
    let r = c.get(&group_id("ghost")).await;
    assert_eq!((r.status, r.code()), (404, "NotFound"));

    // ---- Azure Policy for dynamic membership.
    for (name, tag, value, group) in [
        ("avnm-hubs", "network_role", "hub", "global-hubs"),
        ("avnm-prod", "env", "prod", "all-prod-spokes"),
        ("avnm-nonprod", "env", "nonprod", "all-nonprod-spokes"),
    ] {
        let r = c.put(&def_id(name), policy_def(tag, value, group)).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let r = c
            .put(
                &assignment_id(name),
                json!({"properties": {"displayName": name, "policyDefinitionId": def_id(name)}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    assert_eq!(c.get(&def_id("avnm-prod")).await.status, 200);
    assert_eq!(c.get(&assignment_id("avnm-prod")).await.status, 200);
    let r = c
        .get(&format!(
            "/subscriptions/{SUB}/providers/Microsoft.Authorization/policyDefinitions"
        ))
        .await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 3);
    let r = c
        .get(&format!(
            "/subscriptions/{SUB}/providers/Microsoft.Authorization/policyAssignments"
        ))
        .await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 3);
    let rg_assign = format!(
        "{}/providers/Microsoft.Authorization/policyAssignments/avnm-sandbox",
        rg_id(SPOKES)
    );
    let r = c.put(&rg_assign, json!({"properties": {"policyDefinitionId": def_id("avnm-prod"), "enforcementMode": "DoNotEnforce"}})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = c
        .get(&format!(
            "{}/providers/Microsoft.Authorization/policyAssignments",
            rg_id(SPOKES)
        ))
        .await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 1);

    // ---- Static members.
    let temp = group_id("temp-static");
    assert_eq!(
        c.put(
            &temp,
            json!({"properties": {"description": "temp", "memberType": "VirtualNetwork"}})
        )
        .await
        .status,
        200
    );
    let sm = format!("{temp}/staticMembers/sm-sandbox");
    let r = c
        .put(&sm, json!({"properties": {"resourceId": extra}}))
        .await;
    assert_eq!(
        (r.status, r.body["properties"]["provisioningState"].as_str()),
        (200, Some("Updating"))
    );
    sleep_ms(100).await;
    let r = c.get(&sm).await;
    assert_eq!(r.body["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        c.get(&format!("{temp}/staticMembers")).await.body["value"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // ---- Connectivity: mesh + hub-and-spoke per region, commit, deployment status.
    let cc = |n: &str| format!("{nm}/connectivityConfigurations/{n}");
    assert_eq!(c.put(&cc("cc-hub-mesh"), mesh_body()).await.status, 200);
    for region in REGIONS {
        let r = c
            .put(&cc(&format!("cc-hubspoke-{region}")), hubspoke_body(region))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(c.get(&cc("cc-hub-mesh")).await.status, 200);
    let r = c.get(&format!("{nm}/connectivityConfigurations")).await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 8);
    // A commit sets the goal state per region: each region gets the mesh plus its own
    // hub-and-spoke (the spoke groups span all regions).
    for region in REGIONS {
        let ids = vec![cc("cc-hub-mesh"), cc(&format!("cc-hubspoke-{region}"))];
        let r = c.post(&format!("{nm}/commit"), json!({"commitType": "Connectivity", "targetLocations": [region], "configurationIds": ids})).await;
        assert_eq!(r.status, 202, "{}", r.body);
        assert!(r.header("Retry-After").is_none());
        assert_eq!(c.wait_location(&r.header("Location").unwrap()).await, 204);
    }
    wait_deployed(&c, "Connectivity", &REGIONS).await;
    let r = c
        .post(
            &format!("{nm}/listActiveConnectivityConfigurations"),
            json!({"regions": ["westeurope"]}),
        )
        .await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 2);
    sleep_ms(200).await; // policy evaluation delay
    // Hub-and-spoke deployments show up as ANM_ peerings on both sides.
    let r = c.get(&format!("{spoke}/virtualNetworkPeerings")).await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 1, "{}", r.body);
    let r = c.get(&hub).await;
    assert_eq!(
        r.body["properties"]["virtualNetworkPeerings"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{}",
        r.body
    );
    let r = c
        .post(
            &format!("{spoke}/listNetworkManagerEffectiveConnectivityConfigurations"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let effective: Vec<&str> = r.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(effective, vec![cc("cc-hubspoke-westeurope").as_str()]);

    // ---- Security admin.
    let sac = format!("{nm}/securityAdminConfigurations/sac-guardrails");
    let r = c.put(&sac, json!({"properties": {"description": "guardrails", "applyOnNetworkIntentPolicyBasedServices": ["None"]}})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rc = format!("{sac}/ruleCollections/rc-env-isolation");
    let r = c.put(&rc, json!({"properties": {"description": "prod/nonprod isolation", "appliesToGroups": [{"networkGroupId": group_id("all-prod-spokes")}, {"networkGroupId": group_id("all-nonprod-spokes")}]}})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut prio = 100;
    for (from, to) in [
        ("all-prod-spokes", "all-nonprod-spokes"),
        ("all-nonprod-spokes", "all-prod-spokes"),
    ] {
        for dir in ["Inbound", "Outbound"] {
            let name = format!(
                "deny-{}-to-{}-{}",
                &from[4..from.len() - 7],
                &to[4..to.len() - 7],
                dir.to_lowercase()
            );
            let r = c.put(&format!("{rc}/rules/{name}"), json!({"kind": "Custom", "properties": {"description": "isolation", "protocol": "Any", "access": "Deny", "priority": prio, "direction": dir,
                "sources": [{"addressPrefixType": "NetworkGroup", "addressPrefix": group_id(from)}], "destinations": [{"addressPrefixType": "NetworkGroup", "addressPrefix": group_id(to)}],
                "sourcePortRanges": ["0-65535"], "destinationPortRanges": ["0-65535"]}})).await;
            assert_eq!(r.status, 200, "{}", r.body);
            prio += 10;
        }
    }
    assert_eq!(
        c.get(&format!("{nm}/securityAdminConfigurations"))
            .await
            .status,
        200
    );
    assert_eq!(c.get(&format!("{sac}/ruleCollections")).await.status, 200);
    let r = c.get(&format!("{rc}/rules")).await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 4);
    assert_eq!(c.get(&rc).await.status, 200);
    assert_eq!(c.get(&sac).await.status, 200);
    let r = c.post(&format!("{nm}/commit"), json!({"commitType": "SecurityAdmin", "targetLocations": REGIONS, "configurationIds": [sac]})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(c.wait_location(&r.header("Location").unwrap()).await, 204);
    wait_deployed(&c, "SecurityAdmin", &REGIONS).await;
    let r = c
        .post(
            &format!("{nm}/listActiveSecurityAdminRules"),
            json!({"regions": ["eastus"]}),
        )
        .await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 4, "{}", r.body);
    let r = c
        .post(
            &format!("{spoke}/listNetworkManagerEffectiveSecurityAdminRules"),
            json!({}),
        )
        .await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 4, "{}", r.body);

    // ---- Errors the specs describe (CloudError / CommonErrorResponse).
    // (Schema-invalid requests -- booleans for "True"/"False", priority 5000 -- are covered in
    // behaviours.rs: oav rightly rejects such requests, so they stay out of this folder.)
    let r = c.put(&format!("{rc}/rules/dup-prio"), json!({"kind": "Custom", "properties": {"protocol": "Tcp", "access": "Allow", "priority": 100, "direction": "Inbound"}})).await;
    assert_eq!(r.status, 400);
    let r = c.get(&format!("{rc}/rules/ghost")).await;
    assert_eq!(r.status, 404);
    let r = c.delete(&cc("cc-hubspoke-eastus")).await;
    assert_eq!(r.status, 409, "{}", r.body);

    // ---- Public IPs, firewalls, firewall policies.
    let pip = net_id(CONN, "publicIPAddresses/pip-afw-hub-westeurope");
    assert_eq!(c.get(&pip).await.status, 200);
    lro_put(&c, &net_id(CONN, "publicIPAddresses/pip-extra"), json!({"location": "westeurope", "sku": {"name": "Standard", "tier": "Regional"}, "properties": {"publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"}}), 201).await;
    let parent = net_id(CONN, "firewallPolicies/fwp-globojava-global");
    lro_put(&c, &parent, json!({"location": "westeurope", "properties": {"sku": {"tier": "Standard"}, "threatIntelMode": "Alert", "dnsSettings": {"enableProxy": true}}}), 201).await;
    let rcg = format!("{parent}/ruleCollectionGroups/rcg-baseline");
    lro_put(&c, &rcg, json!({"properties": {"priority": 200, "ruleCollections": [{"ruleCollectionType": "FirewallPolicyFilterRuleCollection", "name": "deny-env", "priority": 100, "action": {"type": "Deny"},
        "rules": [{"ruleType": "NetworkRule", "name": "prod-to-nonprod", "ipProtocols": ["Any"], "sourceAddresses": ["10.1.16.0/20"], "destinationAddresses": ["10.1.32.0/20"], "destinationPorts": ["*"]}]}]}}), 201).await;
    for region in ["westeurope", "eastus"] {
        let child = net_id(CONN, &format!("firewallPolicies/fwp-globojava-{region}"));
        lro_put(&c, &child, json!({"location": "westeurope", "properties": {"sku": {"tier": "Standard"}, "basePolicy": {"id": parent}, "threatIntelMode": "Alert", "dnsSettings": {"enableProxy": true}}}), 201).await;
        let fw = net_id(CONN, &format!("azureFirewalls/afw-hub-{region}"));
        let mut body = strip_read_only(c.get(&fw).await.body);
        body["properties"]["firewallPolicy"] = json!({"id": child});
        lro_put(&c, &fw, body, 200).await;
    }
    let r = c.get(&parent).await;
    assert_eq!(
        r.body["properties"]["childPolicies"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(c.get(&rcg).await.status, 200);
    assert_eq!(
        c.get(&format!("{parent}/ruleCollectionGroups"))
            .await
            .status,
        200
    );
    assert_eq!(
        c.get(&format!(
            "{}/providers/Microsoft.Network/firewallPolicies",
            rg_id(CONN)
        ))
        .await
        .status,
        200
    );
    let r = c
        .get(&format!(
            "{}/providers/Microsoft.Network/azureFirewalls",
            rg_id(CONN)
        ))
        .await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 7);
    let child = net_id(CONN, "firewallPolicies/fwp-globojava-eastus");
    assert!(
        c.get(&child).await.body["properties"]["firewalls"]
            .as_array()
            .unwrap()
            .len()
            == 1
    );
    let r = c.delete(&rcg).await;
    assert_eq!(r.status, 202);
    assert_eq!(
        c.wait_async(&r.header("Azure-AsyncOperation").unwrap())
            .await["status"],
        "Succeeded"
    );

    // ---- Private DNS.
    let zone = net_id(CONN, "privateDnsZones/globojava.com");
    lro_put(&c, &zone, json!({"location": "global"}), 201).await;
    for name in ["vnet-hub-westeurope", "vnet-prod-westeurope"] {
        lro_put(&c, &format!("{zone}/virtualNetworkLinks/link-{name}"), json!({"location": "global", "properties": {"virtualNetwork": {"id": vnet_id(name)}, "registrationEnabled": false}}), 201).await;
    }
    let r = c
        .get(&format!(
            "{zone}/virtualNetworkLinks/link-vnet-hub-westeurope"
        ))
        .await;
    assert_eq!(r.body["properties"]["virtualNetworkLinkState"], "Completed");
    assert_eq!(
        c.get(&format!("{zone}/virtualNetworkLinks")).await.body["value"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    for (k, region) in REGIONS.iter().enumerate().take(2) {
        let r = c.put(&format!("{zone}/A/database.{region}"), json!({"properties": {"ttl": 300, "aRecords": [{"ipv4Address": format!("10.{}.16.10", k + 1)}]}})).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    assert_eq!(
        c.get(&format!("{zone}/A/database.eastus")).await.status,
        200
    );
    assert_eq!(
        c.get(&format!("{zone}/A")).await.body["value"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        c.get(&format!("{zone}/ALL")).await.body["value"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        c.get(&zone).await.body["properties"]["numberOfVirtualNetworkLinks"],
        2
    );
    assert_eq!(
        c.get(&format!(
            "{}/providers/Microsoft.Network/privateDnsZones",
            rg_id(CONN)
        ))
        .await
        .status,
        200
    );
    let r = c.delete(&zone).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(
        c.delete(&format!("{zone}/A/database.westus")).await.status,
        200
    );
    for name in ["vnet-hub-westeurope", "vnet-prod-westeurope"] {
        let r = c
            .delete(&format!("{zone}/virtualNetworkLinks/link-{name}"))
            .await;
        assert_eq!(r.status, 202);
        c.wait_async(&r.header("Azure-AsyncOperation").unwrap())
            .await;
    }
    let r = c.delete(&zone).await;
    assert_eq!(r.status, 202, "{}", r.body);

    // ---- Deletes: forced config delete LRO, members, groups, rules, NM; policy.
    let r = c
        .delete(&format!("{}?force=true", cc("cc-hubspoke-eastus")))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(c.wait_location(&r.header("Location").unwrap()).await, 204);
    assert_eq!(c.delete(&sm).await.status, 200);
    assert_eq!(c.delete(&format!("{temp}?force=false")).await.status, 200);
    assert_eq!(
        c.delete(&format!(
            "{rc}/rules/deny-prod-to-nonprod-inbound?force=true"
        ))
        .await
        .status,
        202
    );
    let r = c.delete(&format!("{sac}?force=true")).await;
    assert_eq!(r.status, 202);
    let r = c.delete(&format!("{nm}?force=true")).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(c.delete(&rg_assign).await.status, 200);
    let r = c.delete(&def_id("avnm-prod")).await;
    assert_eq!(r.status, 400, "definition in use: {}", r.body);

    let stats = c.sim("GET", "/_sim/stats", None).await;
    h.shutdown().await;
    stats["requests"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_traffic_validates_against_microsoft_specs() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("armsim-scenario-traffic");
    let _ = std::fs::remove_dir_all(&dir);
    let requests = scenario(dir.clone()).await;
    let files = std::fs::read_dir(&dir).unwrap().count() as u64;
    assert_eq!(files, requests, "every ARM exchange is recorded");

    // oav cannot tell `privateDnsZones/{z}/virtualNetworkLinks[/{l}]` and `.../ALL` apart from
    // the record-set templates `{recordType}[/{relativeRecordSetName}]` (MULTIPLE_OPERATIONS_FOUND:
    // a path ambiguity in privatedns.json, not a traffic defect). Those exchanges are moved
    // aside and their bodies checked here against the spec's VirtualNetworkLink / RecordSet
    // property lists instead.
    let aside = dir.with_file_name("armsim-scenario-traffic-oav-ambiguous");
    let _ = std::fs::remove_dir_all(&aside);
    std::fs::create_dir_all(&aside).unwrap();
    let mut moved = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let doc: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let url = doc["liveRequest"]["url"].as_str().unwrap().to_string();
        let path = url.split('?').next().unwrap();
        let ambiguous = path.contains("/virtualNetworkLinks") || path.ends_with("/ALL");
        if !ambiguous || path.contains("privateDnsOperation") {
            continue;
        }
        check_dns_shape(&doc);
        std::fs::rename(&p, aside.join(p.file_name().unwrap())).unwrap();
        moved += 1;
    }
    assert!(moved >= 6, "link and ALL exchanges were made ({moved})");

    let checker = shared_dir().join("azure-specs/check-traffic");
    assert!(
        checker.exists(),
        "check-traffic not found at {} (set NETSTEP_SHARED)",
        checker.display()
    );
    let out = tokio::time::timeout(
        Duration::from_secs(900),
        tokio::process::Command::new(&checker).arg(&dir).output(),
    )
    .await
    .expect("check-traffic timed out")
    .expect("run check-traffic");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains(" passed, "))
        .unwrap_or("")
        .to_string();
    println!(
        "armsim scenario: {requests} exchanges recorded, {moved} checked in-test (oav-ambiguous DNS paths); check-traffic: {summary}"
    );
    assert!(
        out.status.success(),
        "check-traffic failed ({summary}); traffic kept in {}",
        dir.display()
    );
    assert!(summary.ends_with("0 failed"), "{summary}");
}

/// Checks a private DNS link / record-set list exchange against privatedns.json's models.
fn check_dns_shape(doc: &Value) {
    let res = &doc["liveResponse"];
    let status = res["statusCode"].as_str().unwrap();
    let Some(body) = res.get("body") else {
        assert!(["200", "202", "204"].contains(&status), "{doc}");
        return;
    };
    let link_top = [
        "id",
        "name",
        "type",
        "tags",
        "location",
        "etag",
        "properties",
    ];
    let link_props = [
        "virtualNetwork",
        "registrationEnabled",
        "virtualNetworkLinkState",
        "provisioningState",
    ];
    let record_top = ["id", "name", "type", "etag", "properties"];
    let record_props = [
        "metadata",
        "ttl",
        "fqdn",
        "isAutoRegistered",
        "aRecords",
        "aaaaRecords",
        "cnameRecord",
        "mxRecords",
        "ptrRecords",
        "soaRecord",
        "srvRecords",
        "txtRecords",
    ];
    let check = |item: &Value, top: &[&str], props: &[&str]| {
        for k in item.as_object().unwrap().keys() {
            assert!(
                top.contains(&k.as_str()),
                "unexpected member '{k}' in {item}"
            );
        }
        for k in item["properties"].as_object().unwrap().keys() {
            assert!(
                props.contains(&k.as_str()),
                "unexpected property '{k}' in {item}"
            );
        }
        assert!(item["etag"].is_string() && item["id"].is_string());
    };
    let is_link = doc["liveRequest"]["url"]
        .as_str()
        .unwrap()
        .contains("/virtualNetworkLinks");
    let (top, props): (&[&str], &[&str]) = if is_link {
        (&link_top, &link_props)
    } else {
        (&record_top, &record_props)
    };
    if let Some(items) = body.get("value") {
        for k in body.as_object().unwrap().keys() {
            assert!(
                k == "value" || k == "nextLink",
                "unexpected list member '{k}'"
            );
        }
        for item in items.as_array().unwrap() {
            check(item, top, props);
        }
    } else if body.get("error").is_some() {
        assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string());
    } else {
        check(body, top, props);
        if is_link {
            assert!(body["properties"]["virtualNetwork"]["id"].is_string());
            assert!(
                ["InProgress", "Completed"].contains(
                    &body["properties"]["virtualNetworkLinkState"]
                        .as_str()
                        .unwrap()
                )
            );
        }
    }
}
