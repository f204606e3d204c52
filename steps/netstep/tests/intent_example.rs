//! The GloboJava example: it validates, and its resolved views use the names of the brief.

use std::path::PathBuf;

use netstep::intent::{self, Intent, Slice, Topology, VnetRole};

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

fn example_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/globojava/intent.yaml")
}

fn example() -> Intent {
    match intent::load_file(&example_path()) {
        Ok(it) => it,
        Err(e) => panic!("the GloboJava example must validate:\n{e}"),
    }
}

#[test]
fn vnets_follow_the_addressing_plan() {
    let it = example();
    let regions: Vec<&str> = it.region_names();
    assert_eq!(regions, REGIONS);
    let vnets = it.vnets();
    assert_eq!(vnets.len(), 21);
    for (i, r) in REGIONS.iter().enumerate() {
        let k = i + 1;
        let hub = &vnets[i * 3];
        assert_eq!(hub.name, format!("vnet-hub-{r}"));
        assert_eq!(hub.role, VnetRole::Hub);
        assert_eq!(hub.region, *r);
        assert_eq!(hub.address_space, [format!("10.{k}.0.0/22")]);
        assert_eq!(
            hub.tags.get("network_role").map(String::as_str),
            Some("hub")
        );
        assert_eq!(
            hub.id,
            format!(
                "/subscriptions/{SUB}/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/virtualNetworks/vnet-hub-{r}"
            )
        );
        let fw = hub.firewall.expect("hub firewall");
        assert_eq!(fw.name, format!("afw-hub-{r}"));
        assert_eq!(
            fw.public_ip.as_deref(),
            Some(format!("pip-afw-hub-{r}").as_str())
        );
        assert!(fw.managed);
        let prod = &vnets[i * 3 + 1];
        assert_eq!(prod.name, format!("vnet-prod-{r}"));
        assert_eq!(prod.role, VnetRole::Spoke);
        assert_eq!(prod.tags.get("env").map(String::as_str), Some("prod"));
        assert_eq!(prod.address_space, [format!("10.{k}.16.0/20")]);
        assert!(!prod.managed);
        assert_eq!(
            prod.id,
            format!(
                "/subscriptions/{SUB}/resourceGroups/rg-globojava-spokes/providers/Microsoft.Network/virtualNetworks/vnet-prod-{r}"
            )
        );
        let nonprod = &vnets[i * 3 + 2];
        assert_eq!(nonprod.name, format!("vnet-nonprod-{r}"));
        assert_eq!(nonprod.tags.get("env").map(String::as_str), Some("nonprod"));
        assert_eq!(nonprod.address_space, [format!("10.{k}.32.0/20")]);
    }
}

#[test]
fn groups_include_per_region_derivations() {
    let it = example();
    let groups = it.groups();
    let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(
        &names[..3],
        ["global-hubs", "all-prod-spokes", "all-nonprod-spokes"]
    );
    assert_eq!(groups.len(), 3 + 2 * 7);
    let d = it
        .group("all-prod-spokes-westeurope")
        .expect("derived group");
    assert_eq!(d.region.as_deref(), Some("westeurope"));
    assert_eq!(d.derived_from.as_deref(), Some("all-prod-spokes"));
    assert_eq!(d.conditions.len(), 1);
    assert_eq!(d.conditions[0].tag, "env");
    assert_eq!(d.conditions[0].equals, "prod");
    assert_eq!(
        d.policy_condition().unwrap(),
        serde_json::json!({"allOf": [
            {"field": "type", "equals": "Microsoft.Network/virtualNetworks"},
            {"field": "tags['env']", "equals": "prod"},
            {"field": "location", "equals": "westeurope"}
        ]})
    );
    assert_eq!(
        it.group("global-hubs").unwrap().policy_condition().unwrap()["allOf"][1],
        serde_json::json!({"field": "tags['network_role']", "equals": "hub"})
    );
    let members: Vec<&str> = it
        .group_members("all-prod-spokes-westeurope")
        .iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(members, ["vnet-prod-westeurope"]);
    assert_eq!(it.group_members("global-hubs").len(), 7);
    assert_eq!(it.group_members("all-nonprod-spokes").len(), 7);
    assert_eq!(
        it.network_group_id("global-hubs"),
        format!(
            "/subscriptions/{SUB}/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/networkManagers/avnm-globojava/networkGroups/global-hubs"
        )
    );
    assert_eq!(
        it.network_manager_id(),
        format!(
            "/subscriptions/{SUB}/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/networkManagers/avnm-globojava"
        )
    );
}

#[test]
fn connectivity_expands_per_region() {
    let it = example();
    let cc = it.connectivity_configs();
    assert_eq!(cc.len(), 8);
    assert_eq!(cc[0].name, "cc-hub-mesh");
    assert_eq!(cc[0].topology, Topology::Mesh);
    assert!(cc[0].is_global);
    assert_eq!(cc[0].groups, ["global-hubs"]);
    assert_eq!(cc[0].regions, REGIONS);
    for (i, r) in REGIONS.iter().enumerate() {
        let c = &cc[i + 1];
        assert_eq!(c.name, format!("cc-hubspoke-{r}"));
        assert_eq!(c.topology, Topology::HubAndSpoke);
        assert_eq!(
            c.hub_vnet.as_deref(),
            Some(format!("vnet-hub-{r}").as_str())
        );
        assert!(
            c.hub_vnet_id
                .as_deref()
                .unwrap()
                .ends_with(&format!("/virtualNetworks/vnet-hub-{r}"))
        );
        assert_eq!(
            c.groups,
            [
                format!("all-prod-spokes-{r}"),
                format!("all-nonprod-spokes-{r}")
            ]
        );
        assert_eq!(c.regions, [r.to_string()]);
        assert!(!c.is_global && !c.direct_connectivity && !c.use_hub_gateway);
    }
}

#[test]
fn firewall_policies_and_dns_links() {
    let it = example();
    let fp = it.firewall_policies();
    assert_eq!(fp.len(), 8);
    assert_eq!(fp[0].name, "fwp-globojava-global");
    assert!(fp[0].base_policy_id.is_none());
    for (i, r) in REGIONS.iter().enumerate() {
        let c = &fp[i + 1];
        assert_eq!(c.name, format!("fwp-globojava-{r}"));
        assert_eq!(c.location, "westeurope");
        assert_eq!(c.base_policy_id.as_deref(), Some(fp[0].id.as_str()));
        assert!(
            c.firewall_id
                .as_deref()
                .unwrap()
                .ends_with(&format!("/azureFirewalls/afw-hub-{r}"))
        );
    }
    let links = it.dns_links();
    assert_eq!(links.len(), 21);
    assert!(
        links
            .iter()
            .all(|l| l.name == format!("link-{}", l.vnet) && !l.registration_enabled)
    );
    let zone = &it.dns.as_ref().unwrap().zones[0];
    assert_eq!(zone.records.len(), 7);
    assert_eq!(zone.records[3].name, "database.westeurope");
    assert_eq!(zone.records[3].ipv4, ["10.4.16.10"]);
}

#[test]
fn snapshot_round_trip_keeps_the_digest() {
    let it = example();
    let json = it.canonical_json();
    let back = Intent::from_snapshot_json("snapshot.json", json.as_bytes())
        .unwrap_or_else(|e| panic!("snapshot must reload:\n{e}"));
    assert_eq!(back.canonical_json(), json);
    assert_eq!(back.digest(), it.digest());
    for s in Slice::ALL {
        assert_eq!(back.slice_digest(s), it.slice_digest(s));
    }
    assert!(it.digest().starts_with("sha256:"));
    assert_eq!(it.digest().len(), "sha256:".len() + 64);
}

#[test]
fn snapshot_that_is_not_json_object_is_rejected() {
    let e = Intent::from_snapshot_json("snap.json", b"version: 1").unwrap_err();
    assert!(e.to_string().contains("JSON object"), "{e}");
    // A tampered snapshot is re-validated.
    let it = example();
    let bad = it.canonical_json().replace("10.4.16.0/20", "10.4.0.0/20");
    let e = Intent::from_snapshot_json("snap.json", bad.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("overlaps"), "{e}");
    assert!(
        e.diagnostics()
            .iter()
            .all(|d| d.file == "snap.json" && d.line == 0)
    );
}

#[test]
fn example_position_lookup() {
    let it = example();
    let (line, col) = it.position("regions[3].hub.name").expect("recorded");
    let text = std::fs::read_to_string(example_path()).unwrap();
    let l = text.lines().nth(line as usize - 1).unwrap();
    assert_eq!(&l[col as usize - 1..], "vnet-hub-westeurope");
}
