//! A converged GloboJava estate built directly through armsim's ARM API (what tag-groups,
//! mesh-connect, admin-rules, fw-policy and dns-link do), so verify can be tested on its own.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use netstep::arm::{ArmClient, Credential, LroConfig};
use netstep::avnm::{WaitConfig, commit_and_wait};
use netstep::intent::{AddressRef, Intent, Topology};
use netstep::resources::{self as res, ConnectivityGroup};
use pipeline_tests::{Env, TEST_TOKEN};
use serde_json::{Value, json};

/// The GloboJava intent.
pub fn intent(env: &Env) -> Intent {
    netstep::intent::load_file(&env.globojava_intent()).expect("globojava intent")
}

/// An ARM client on armsim with fast LRO polls.
pub fn client(env: &Env) -> ArmClient {
    let d = Duration::from_millis(20);
    ArmClient::builder()
        .endpoint(env.sim.url.clone())
        .credential(Credential::static_token(TEST_TOKEN))
        .lro(LroConfig {
            default_delay: d,
            min_delay: d,
            max_delay: d,
            ..LroConfig::default()
        })
        .build()
        .expect("arm client")
}

/// Builds the converged estate of the intent in armsim.
pub async fn converge(env: &Env, intent: &Intent) {
    let arm = client(env);
    let sub = &intent.subscription;
    let nm = &intent.network_manager;
    let nm_id = intent.network_manager_id();
    // tag-groups: network manager, groups, membership policies, VNet tags.
    arm.put(
        &nm_id,
        &res::network_manager(
            &nm.location,
            &nm.description,
            &nm.scope
                .subscriptions
                .iter()
                .map(|s| format!("/subscriptions/{s}"))
                .collect::<Vec<_>>(),
            &nm.scope.management_groups,
            &nm.scope_accesses
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>(),
        ),
    )
    .await
    .expect("network manager");
    for g in intent.groups() {
        arm.put(&g.id, &res::network_group(&g.description))
            .await
            .expect("group");
        if g.conditions.is_empty() {
            continue;
        }
        let conds: Vec<res::TagCondition> = g
            .conditions
            .iter()
            .map(|c| res::TagCondition {
                key: c.tag.clone(),
                equals: c.equals.clone(),
            })
            .collect();
        let def_id = res::policy_definition_id(sub, &format!("avnm-{}", g.name));
        arm.put(
            &def_id,
            &res::membership_policy_definition(
                &format!("avnm {}", g.name),
                &g.id,
                &conds,
                g.region.as_deref(),
            ),
        )
        .await
        .expect("policy definition");
        arm.put(
            &res::policy_assignment_id(&res::subscription_id(sub), &format!("avnm-{}", g.name)),
            &res::policy_assignment(&format!("avnm {}", g.name), &def_id),
        )
        .await
        .expect("policy assignment");
    }
    for v in intent.vnets() {
        let cur = arm
            .get(&v.id)
            .await
            .expect("vnet get")
            .expect("vnet exists");
        let mut tags = cur["tags"].as_object().cloned().unwrap_or_default();
        let mut changed = false;
        for (k, val) in &v.tags {
            if tags.get(k).and_then(Value::as_str) != Some(val) {
                tags.insert(k.clone(), json!(val));
                changed = true;
            }
        }
        if changed {
            arm.patch(&v.id, &json!({"tags": tags}))
                .await
                .expect("vnet tags");
        }
    }
    // mesh-connect.
    for c in intent.connectivity_configs() {
        let groups: Vec<ConnectivityGroup> = c
            .groups
            .iter()
            .map(|g| ConnectivityGroup {
                network_group_id: intent.network_group_id(g),
                direct_connectivity: c.direct_connectivity,
                use_hub_gateway: c.use_hub_gateway,
                is_global: c.is_global && c.topology == Topology::Mesh,
            })
            .collect();
        arm.put(
            &c.id,
            &res::connectivity_configuration(
                &c.description,
                c.hub_vnet_id.as_deref(),
                &groups,
                c.is_global,
                c.delete_existing_peering,
                None,
            ),
        )
        .await
        .expect("connectivity configuration");
    }
    // admin-rules.
    let sa = intent.security_admin.as_ref().expect("security admin");
    let sac_id = intent.security_admin_config_id().unwrap();
    arm.put(
        &sac_id,
        &res::security_admin_configuration(&sa.description, &["None".to_string()]),
    )
    .await
    .expect("sac");
    for rc in &sa.rule_collections {
        let rc_id = format!("{sac_id}/ruleCollections/{}", rc.name);
        let gids: Vec<String> = rc
            .applies_to_groups
            .iter()
            .map(|g| intent.network_group_id(g))
            .collect();
        arm.put(&rc_id, &res::admin_rule_collection(&rc.description, &gids))
            .await
            .expect("rule collection");
        for r in &rc.rules {
            let addr = |a: &AddressRef| match a {
                AddressRef::Group { group } => {
                    res::AddressPrefix::NetworkGroup(intent.network_group_id(group))
                }
                AddressRef::Cidr { cidr } => res::AddressPrefix::IpPrefix(cidr.clone()),
                AddressRef::ServiceTag { service_tag } => {
                    res::AddressPrefix::ServiceTag(service_tag.clone())
                }
            };
            let ports = |p: &[String]| {
                if p.is_empty() {
                    vec!["0-65535".to_string()]
                } else {
                    p.to_vec()
                }
            };
            let body = res::admin_rule(&res::AdminRule {
                description: r.description.clone(),
                priority: r.priority as u16,
                direction: format!("{:?}", r.direction),
                access: format!("{:?}", r.access),
                protocol: format!("{:?}", r.protocol),
                sources: r.sources.iter().map(addr).collect(),
                destinations: r.destinations.iter().map(addr).collect(),
                source_port_ranges: ports(&r.source_ports),
                destination_port_ranges: ports(&r.destination_ports),
            });
            arm.put(&format!("{rc_id}/rules/{}", r.name), &body)
                .await
                .expect("admin rule");
        }
    }
    // Commits: the goal state of every region, per type.
    let wait = WaitConfig {
        poll_interval: Duration::from_millis(50),
        max_wait: Duration::from_secs(120),
    };
    for (ty, goal) in verify::desired::goal_states(intent) {
        let mut by_set: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
        for (region, ids) in goal {
            by_set
                .entry(ids.into_iter().collect())
                .or_default()
                .push(region);
        }
        let batches: Vec<(Vec<String>, Vec<String>)> = by_set
            .into_iter()
            .map(|(ids, regions)| (regions, ids))
            .collect();
        commit_and_wait(&arm, &nm_id, ty, &batches, wait)
            .await
            .expect("commit");
    }
    // fw-policy: parent, its rule collection groups, children, firewall associations.
    let fp = intent.firewall_policy.as_ref().expect("firewall policy");
    let tier = format!("{:?}", fp.tier);
    let ti = format!("{:?}", fp.threat_intel_mode);
    let pols = intent.firewall_policies();
    for p in &pols {
        arm.put(
            &p.id,
            &res::firewall_policy(
                &p.location,
                &tier,
                &ti,
                fp.dns_proxy,
                p.base_policy_id.as_deref(),
            ),
        )
        .await
        .expect("firewall policy");
        if p.base_policy_id.is_none() {
            for g in &fp.rule_collection_groups {
                let content = verify::desired::rule_collection_group(g);
                let rcs = content["ruleCollections"].as_array().cloned().unwrap();
                arm.put(
                    &format!("{}/ruleCollectionGroups/{}", p.id, g.name),
                    &res::rule_collection_group(g.priority, rcs),
                )
                .await
                .expect("rule collection group");
            }
        }
    }
    for p in &pols {
        let Some(fw) = &p.firewall_id else { continue };
        let mut body = arm.get(fw).await.expect("fw get").expect("fw exists");
        body["properties"]["sku"]["tier"] = json!(tier);
        body["properties"]["firewallPolicy"] = json!({"id": p.id});
        arm.put(fw, &body).await.expect("firewall association");
    }
    // dns-link.
    for z in &intent.dns.as_ref().expect("dns").zones {
        let zid = res::network_id(
            &z.subscription,
            &z.resource_group,
            &format!("privateDnsZones/{}", z.name),
        );
        arm.put(&zid, &res::private_dns_zone()).await.expect("zone");
        for l in intent.dns_links() {
            arm.put(
                &format!("{zid}/virtualNetworkLinks/{}", l.name),
                &res::dns_link(&l.vnet_id, l.registration_enabled),
            )
            .await
            .expect("link");
        }
        for r in &z.records {
            arm.put(
                &format!("{zid}/A/{}", r.name),
                &res::dns_a_record(r.ttl, &r.ipv4),
            )
            .await
            .expect("record");
        }
    }
}

/// armsim's `by_operation` labels of writes: PUT, PATCH, DELETE and commits.
pub fn writes(stats: &Value) -> Vec<String> {
    stats["by_operation"]
        .as_object()
        .map(|m| {
            m.keys()
                .filter(|k| {
                    k.starts_with("PUT ")
                        || k.starts_with("PATCH ")
                        || k.starts_with("DELETE ")
                        || k.to_ascii_lowercase().contains("commit")
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}
