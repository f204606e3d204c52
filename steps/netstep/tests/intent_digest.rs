//! Canonical form and digests: formatting, comments, key order and written-out defaults do not
//! change the digest; values do. Slice digests move only with their slice. Also the large
//! generated intent (60 regions x 20 spokes) validates.

use std::path::PathBuf;

use netstep::intent::{self, Intent, Slice};

fn base() -> String {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/intents/minimal.yaml");
    std::fs::read_to_string(p).unwrap()
}

fn load(y: &str) -> Intent {
    intent::load_str("intent.yaml", y.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "`{from}`");
    text.replacen(from, to, 1)
}

#[test]
fn formatting_comments_order_and_defaults_do_not_change_the_digest() {
    let a = load(&base());
    // Comments, blank lines, quoting, flow vs block style.
    let mut y = base().replace(
        "\n  - name: westeurope\n",
        "\n\n  # the primary region\n  - name: \"westeurope\"  # quoted\n",
    );
    y = edit(
        &y,
        "      address_space: [10.1.0.0/22]",
        "      address_space:\n        - '10.1.0.0/22'",
    );
    // Key order: move `subscription` above `version`, and network_manager's keys around.
    y = edit(
        &y,
        "version: 1\nsubscription: 11111111-2222-3333-4444-555555555555\n",
        "subscription: 11111111-2222-3333-4444-555555555555\nversion: 1\n",
    );
    y = edit(
        &y,
        "  name: avnm-test\n  location: westeurope\n  resource_group: rg-net\n",
        "  resource_group: rg-net\n  location: westeurope\n  name: avnm-test\n",
    );
    // Defaults written out.
    y = edit(
        &y,
        "        env: nonprod\n",
        "        env: nonprod\n        managed: false\n        subscription: /subscriptions/11111111-2222-3333-4444-555555555555\n",
    );
    y = edit(
        &y,
        "  tier: Standard\n",
        "  tier: Standard\n  threat_intel_mode: Alert\n  children: {name_prefix: fwp-global}\n",
    );
    y = edit(
        &y,
        "          type: A\n",
        "          type: A\n          ttl: 300\n",
    );
    y = edit(
        &y,
        "    match: {tag: network_role, equals: hub}",
        "    match:\n      all_of: [{equals: hub, tag: network_role}]",
    );
    y = edit(
        &y,
        "    group: hubs\n",
        "    group: hubs\n    global: true\n",
    );
    let b = load(&y);
    assert_eq!(a.canonical_json(), b.canonical_json());
    assert_eq!(a.digest(), b.digest());
    for s in Slice::ALL {
        assert_eq!(a.slice_digest(s), b.slice_digest(s), "{s:?}");
    }
}

#[test]
fn canonical_json_is_sorted_and_has_defaults() {
    let a = load(&base());
    let json = a.canonical_json();
    assert!(!json.contains('\n') && !json.contains(": "));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    fn check_sorted(v: &serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                let keys: Vec<&String> = m.keys().collect();
                let mut sorted = keys.clone();
                sorted.sort();
                assert_eq!(keys, sorted);
                m.values().for_each(check_sorted);
            }
            serde_json::Value::Array(a) => a.iter().for_each(check_sorted),
            _ => {}
        }
    }
    check_sorted(&v);
    // Defaults are filled in.
    assert_eq!(v["regions"][0]["spokes"][0]["managed"], false);
    assert_eq!(
        v["regions"][0]["spokes"][0]["subscription"],
        "11111111-2222-3333-4444-555555555555"
    );
    assert_eq!(v["dns"]["zones"][0]["records"][0]["ttl"], 300);
    assert_eq!(v["dns"]["zones"][0]["links"]["name_prefix"], "link-");
    assert_eq!(v["connectivity"]["mesh"]["global"], true);
    assert_eq!(
        v["network_manager"]["scope_accesses"],
        serde_json::json!(["Connectivity", "SecurityAdmin"])
    );
    assert_eq!(
        v["firewall_policy"]["children"]["name_prefix"],
        "fwp-global"
    );
    assert_eq!(
        v["regions"][0]["hub"]["firewall"]["public_ip"],
        "pip-afw-hub-westeurope"
    );
    assert_eq!(
        v["network_groups"][0]["match"],
        serde_json::json!([{"equals": "hub", "tag": "network_role"}])
    );
}

/// Which slices changed between the base and an edited intent.
fn changed(from: &str, to: &str) -> Vec<Slice> {
    let a = load(&base());
    let b = load(&edit(&base(), from, to));
    assert_ne!(
        a.digest(),
        b.digest(),
        "a value change must change the digest"
    );
    Slice::ALL
        .into_iter()
        .filter(|s| a.slice_digest(*s) != b.slice_digest(*s))
        .collect()
}

#[test]
fn value_changes_move_exactly_their_slices() {
    use Slice::*;
    assert_eq!(
        changed(
            "          type: A\n",
            "          type: A\n          ttl: 301\n"
        ),
        [DnsLink, Verify]
    );
    assert_eq!(
        changed(
            "          priority: 200\n          direction: Inbound",
            "          priority: 201\n          direction: Inbound"
        ),
        [AdminRules, Verify]
    );
    assert_eq!(
        changed(
            "              destination_ports: [\"53\"]",
            "              destination_ports: [\"5353\"]"
        ),
        [FwPolicy, Verify]
    );
    assert_eq!(
        changed("    name_prefix: cc-hs", "    name_prefix: cc-hubspoke"),
        [MeshConnect, Verify]
    );
    // A spoke's env moves group membership inputs, connectivity inputs stay (names only).
    assert_eq!(
        changed(
            "            prefix: 10.1.16.0/24",
            "            prefix: 10.1.17.0/24"
        ),
        [Verify, Vnets]
    );
    let all_but_fw = changed(
        "        env: nonprod\n",
        "        env: nonprod\n        tags: {team: web}\n",
    );
    assert_eq!(all_but_fw, [TagGroups, Verify, Vnets]);
    // Renaming a VNet touches everything that names or links it.
    // (mesh-connect consumes hub names and group names, not spoke names.)
    assert_eq!(
        changed(
            "      - name: vnet-prod-northeurope",
            "      - name: vnet-prod-northeurope2"
        ),
        [TagGroups, DnsLink, Verify, Vnets]
    );
    assert_eq!(
        changed(
            "      name: vnet-hub-northeurope",
            "      name: vnet-hub-northeurope2"
        ),
        [TagGroups, MeshConnect, DnsLink, Verify, Vnets]
    );
}

#[test]
fn slice_digests_are_distinct_and_stable() {
    let a = load(&base());
    let mut seen = std::collections::HashSet::new();
    for s in Slice::ALL {
        let d = a.slice_digest(s);
        assert!(d.starts_with("sha256:") && d.len() == 71);
        assert_eq!(d, a.slice_digest(s));
        assert!(seen.insert(d), "{s:?} collides");
    }
}

/// A generated intent: `regions` regions x `spokes` spokes, prod/nonprod alternating.
fn generated(regions: usize, spokes: usize) -> String {
    let names = intent::AZURE_REGIONS;
    assert!(regions <= names.len());
    let mut y = String::from(
        "version: 1\nsubscription: 11111111-2222-3333-4444-555555555555\nresource_groups:\n  - {name: rg-net, location: westeurope}\n  - {name: rg-spokes, location: westeurope}\nnetwork_manager: {name: avnm, location: westeurope, resource_group: rg-net}\nregions:\n",
    );
    for (k, r) in names.iter().take(regions).enumerate() {
        y.push_str(&format!(
            "  - name: {r}\n    hub:\n      name: vnet-hub-{r}\n      resource_group: rg-net\n      managed: true\n      address_space: [10.{k}.0.0/22]\n      subnets:\n        - {{name: AzureFirewallSubnet, prefix: 10.{k}.0.0/26}}\n      firewall: {{name: afw-{r}, managed: true, sku_tier: Premium}}\n    spokes:\n"
        ));
        for s in 0..spokes {
            let env = if s % 2 == 0 { "prod" } else { "nonprod" };
            y.push_str(&format!(
                "      - name: vnet-{env}-{r}-{s}\n        env: {env}\n        resource_group: rg-spokes\n        address_space: [10.{k}.{}.0/22]\n        subnets:\n          - {{name: snet-app, prefix: 10.{k}.{}.0/24}}\n",
                4 + s * 4,
                4 + s * 4
            ));
        }
    }
    // A private zone holds at most 1,000 links: link the hubs only.
    let hubs: Vec<String> = names
        .iter()
        .take(regions)
        .map(|r| format!("vnet-hub-{r}"))
        .collect();
    y.push_str(
        "network_groups:\n  - {name: hubs, match: {tag: network_role, equals: hub}}\n  - {name: prod, match: {tag: env, equals: prod}}\n  - {name: nonprod, match: {tag: env, equals: nonprod}}\nconnectivity:\n  mesh: {name: cc-mesh, group: hubs}\n  hub_and_spoke: {name_prefix: cc-hs, spoke_groups: [prod, nonprod]}\nsecurity_admin:\n  name: sac\n  rule_collections:\n    - name: rc\n      applies_to_groups: [prod, nonprod]\n      rules:\n        - {name: deny, priority: 100, direction: Outbound, access: Deny, protocol: Any, sources: [{group: prod}], destinations: [{group: nonprod}]}\nfirewall_policy: {name: fwp, resource_group: rg-net, location: westeurope, tier: Premium}\ndns:\n  zones:\n    - name: example.internal\n      resource_group: rg-net\n      records:\n",
    );
    y = y.replace(
        "      records:\n",
        &format!(
            "      links: {{vnets: [{}]}}\n      records:\n",
            hubs.join(", ")
        ),
    );
    for k in 0..regions {
        y.push_str(&format!(
            "        - {{name: db.r{k}, type: A, ipv4: [10.{k}.4.10]}}\n"
        ));
    }
    y
}

#[test]
fn large_generated_intent_validates() {
    // 60 regions x (1 hub + 20 spokes) = 1,260 VNets; the validation is O(n log n) in the number
    // of prefixes (speed is measured by benchmarks, not asserted here).
    let y = generated(60, 20);
    let it = load(&y);
    assert_eq!(it.vnets().len(), 1260);
    assert_eq!(it.groups().len(), 3 + 60 * 2);
    assert_eq!(it.connectivity_configs().len(), 1 + 60);
    assert_eq!(it.dns_links().len(), 60);
    assert_eq!(it.firewall_policies().len(), 61);
    // The snapshot of a large intent round-trips too.
    let back = Intent::from_snapshot_json("snap.json", it.canonical_json().as_bytes()).unwrap();
    assert_eq!(back.digest(), it.digest());
    // And one overlap among 1,260 VNets is found and named.
    let bad = edit(
        &y,
        "address_space: [10.59.80.0/22]",
        "address_space: [10.3.80.0/22]",
    );
    let e = intent::load_str("intent.yaml", bad.as_bytes()).unwrap_err();
    // The overlap, and the spoke's subnet now outside its address space.
    assert_eq!(e.diagnostics().len(), 2, "{e}");
    assert!(
        e.to_string().contains(
            "regions[59].spokes[19].address_space[0]: 10.3.80.0/22 overlaps vnet-nonprod-"
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("regions[59].spokes[19].subnets[0].prefix: 10.59.80.0/24 is not inside"),
        "{e}"
    );
}
