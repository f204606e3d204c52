//! One case per validation rule: each edits the valid base intent
//! (tests/fixtures/intents/minimal.yaml) and checks the diagnostic's path, message and line.

use std::path::PathBuf;

use netstep::intent::{self, Diagnostic, IntentError};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/intents")
}

fn base() -> String {
    std::fs::read_to_string(fixtures().join("minimal.yaml")).expect("minimal.yaml")
}

/// Replaces the only occurrence of `from` in the base intent.
fn edit(from: &str, to: &str) -> String {
    edit_in(&base(), from, to)
}

fn edit_in(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "`{from}` must occur exactly once in the text being edited"
    );
    text.replacen(from, to, 1)
}

fn errors(yaml: &str) -> IntentError {
    match intent::load_str("intent.yaml", yaml.as_bytes()) {
        Ok(_) => panic!("expected the intent to be rejected:\n{yaml}"),
        Err(e) => e,
    }
}

/// 1-based line where the first occurrence of `marker` (possibly several lines) starts.
fn line_of(yaml: &str, marker: &str) -> u32 {
    let at = yaml
        .find(marker)
        .unwrap_or_else(|| panic!("marker `{marker}` not found"));
    u32::try_from(yaml[..at].matches('\n').count() + 1).unwrap()
}

/// Asserts a diagnostic with exactly `path`, a message containing `msg`, on the line holding
/// `marker`; returns it.
#[track_caller]
fn expect(yaml: &str, path: &str, msg: &str, marker: &str) -> Diagnostic {
    let e = errors(yaml);
    let line = line_of(yaml, marker);
    let found = e
        .diagnostics()
        .iter()
        .find(|d| d.path == path && d.message.contains(msg));
    match found {
        Some(d) => {
            assert_eq!(d.line, line, "wrong line for {d}\nall:\n{e}");
            assert_eq!(d.file, "intent.yaml");
            assert!(d.col >= 1, "{d}");
            d.clone()
        }
        None => panic!("no diagnostic at `{path}` containing `{msg}`; got:\n{e}"),
    }
}

#[test]
fn base_is_valid() {
    if let Err(e) = intent::load_str("minimal.yaml", base().as_bytes()) {
        panic!("{e}");
    }
}

// ---- structure and typing ----

#[test]
fn unknown_field_with_suggestion() {
    let y = edit(
        "      address_space: [10.1.0.0/22]",
        "      adress_space: [10.1.0.0/22]",
    );
    let d = expect(
        &y,
        "regions[0].hub.adress_space",
        "unknown field `adress_space`; did you mean `address_space`?",
        "adress_space",
    );
    assert_eq!(d.col, 7);
    // The missing required field is reported too, in the same run.
    expect(
        &y,
        "regions[0].hub.address_space",
        "missing required field `address_space`",
        "      name: vnet-hub-westeurope",
    );
}

#[test]
fn wrong_type_boolean_yes() {
    let y = edit(
        "      managed: true\n      address_space: [10.1.0.0/22]",
        "      managed: yes\n      address_space: [10.1.0.0/22]",
    );
    expect(
        &y,
        "regions[0].hub.managed",
        "expected true or false, found the boolean yes",
        "managed: yes",
    );
}

#[test]
fn plain_scalar_that_is_not_a_string() {
    let y = edit("        env: nonprod", "        env: no");
    expect(
        &y,
        "regions[0].spokes[1].env",
        "quote it (\"no\")",
        "env: no",
    );
    let y = edit("  name: avnm-test", "  name: 1.0");
    expect(
        &y,
        "network_manager.name",
        "found the number 1.0",
        "name: 1.0",
    );
}

#[test]
fn quoted_number_where_integer_belongs() {
    let y = edit(
        "          priority: 200\n          direction: Inbound",
        "          priority: \"200\"\n          direction: Inbound",
    );
    expect(
        &y,
        "security_admin.rule_collections[0].rules[1].priority",
        "remove the quotes",
        "priority: \"200\"",
    );
    let y = edit(
        "          priority: 200\n          direction: Inbound",
        "          priority: 1.5\n          direction: Inbound",
    );
    expect(
        &y,
        "security_admin.rule_collections[0].rules[1].priority",
        "expected a non-negative decimal integer",
        "priority: 1.5",
    );
}

#[test]
fn wrong_enum_value_case() {
    let y = edit(
        "          direction: Inbound",
        "          direction: inbound",
    );
    expect(
        &y,
        "security_admin.rule_collections[0].rules[1].direction",
        "write `Inbound`",
        "direction: inbound",
    );
}

#[test]
fn missing_required_field() {
    let y = edit(
        "      - name: vnet-prod-northeurope\n        env: prod\n        resource_group: rg-spokes\n",
        "      - name: vnet-prod-northeurope\n        env: prod\n",
    );
    expect(
        &y,
        "regions[1].spokes[0].resource_group",
        "missing required field `resource_group`",
        "- name: vnet-prod-northeurope",
    );
}

#[test]
fn list_expected() {
    let y = edit(
        "      address_space: [10.2.0.0/22]",
        "      address_space: 10.2.0.0/22",
    );
    expect(
        &y,
        "regions[1].hub.address_space",
        "expected a list",
        "address_space: 10.2.0.0/22",
    );
}

#[test]
fn unsupported_version() {
    let y = edit("version: 1", "version: 2");
    expect(&y, "version", "unsupported intent version 2", "version: 2");
}

#[test]
fn duplicate_mapping_key() {
    let y = edit(
        "  location: westeurope\n  resource_group: rg-net\nregions:",
        "  location: westeurope\n  location: northeurope\n  resource_group: rg-net\nregions:",
    );
    let e = errors(&y);
    let d = &e.diagnostics()[0];
    assert!(d.message.contains("duplicate key `location`"), "{e}");
    assert_eq!(d.line, line_of(&y, "location: northeurope"));
}

#[test]
fn firewall_fields_only_for_managed() {
    let y = edit(
        "        name: afw-existing",
        "        name: afw-existing\n        sku_tier: Premium",
    );
    expect(
        &y,
        "regions[1].hub.firewall.sku_tier",
        "applies only to a managed firewall",
        "sku_tier: Premium",
    );
}

#[test]
fn address_ref_needs_exactly_one_kind() {
    let y = edit(
        "sources: [{group: prod}]",
        "sources: [{group: prod, cidr: 10.0.0.0/8}]",
    );
    expect(
        &y,
        "security_admin.rule_collections[0].rules[0].sources[0]",
        "exactly one of `group`, `cidr` or `service_tag`",
        "cidr: 10.0.0.0/8",
    );
}

#[test]
fn capabilities_all_three_or_none() {
    let y = edit(
        "    spoke_groups: [prod, nonprod]",
        "    spoke_groups: [prod, nonprod]\n  connectivity_capabilities:\n    connected_group_private_endpoints_scale: Standard\n    peering_enforcement: Enforced",
    );
    expect(
        &y,
        "connectivity.connectivity_capabilities.connected_group_address_overlap",
        "missing required field",
        "    connected_group_private_endpoints_scale: Standard",
    );
}

// ---- names ----

#[test]
fn vnet_name_rules() {
    let y = edit(
        "      name: vnet-hub-northeurope",
        "      name: vnet-hub-northeurope-",
    );
    expect(
        &y,
        "regions[1].hub.name",
        "must end with a letter, digit or underscore",
        "vnet-hub-northeurope-",
    );
    let y = edit("      name: vnet-hub-northeurope", "      name: v");
    expect(&y, "regions[1].hub.name", "2-64 characters", "name: v\n");
}

#[test]
fn unicode_lookalike_rejected() {
    // Cyrillic 'е' (U+0435) instead of Latin 'e'.
    let y = edit(
        "      - name: vnet-prod-northeurope",
        "      - name: vnet-prod-north\u{0435}urope",
    );
    expect(&y, "regions[1].spokes[0].name", "U+0435", "vnet-prod-north");
}

#[test]
fn network_manager_name_rules() {
    let y = edit("  name: avnm-test", "  name: avnm-test.");
    expect(
        &y,
        "network_manager.name",
        "must end with",
        "name: avnm-test.",
    );
}

#[test]
fn group_and_rule_name_rules() {
    let long = "g".repeat(65);
    let y = edit("  - name: nonprod\n", &format!("  - name: {long}\n"));
    expect(&y, "network_groups[2].name", "1-64 characters", &long);
    let y = edit("        - name: allow-web", "        - name: allow web");
    expect(
        &y,
        "security_admin.rule_collections[0].rules[1].name",
        "contains ' '",
        "allow web",
    );
}

#[test]
fn resource_group_name_rules() {
    let long = "r".repeat(91);
    let y = edit("  - name: rg-spokes\n", &format!("  - name: {long}\n"));
    expect(&y, "resource_groups[1].name", "1-90 characters", &long);
}

#[test]
fn firewall_policy_name_rules() {
    let y = edit("  name: fwp-global", "  name: -fwp-global");
    expect(
        &y,
        "firewall_policy.name",
        "must start with a letter or digit",
        "-fwp-global",
    );
}

#[test]
fn dns_zone_name_needs_two_labels() {
    let y = edit("    - name: example.internal", "    - name: internal");
    expect(
        &y,
        "dns.zones[0].name",
        "at least two labels",
        "name: internal",
    );
}

#[test]
fn record_name_rules() {
    let y = edit("        - name: db\n", "        - name: db..x\n");
    expect(
        &y,
        "dns.zones[0].records[0].name",
        "DNS labels must be 1-63",
        "db..x",
    );
}

#[test]
fn subscription_must_be_a_guid() {
    let y = edit(
        "subscription: 11111111-2222-3333-4444-555555555555",
        "subscription: my-sub",
    );
    expect(
        &y,
        "subscription",
        "not a subscription id",
        "subscription: my-sub",
    );
}

// ---- regions ----

#[test]
fn unknown_region() {
    let y = edit("  - name: northeurope", "  - name: northeuropa");
    expect(
        &y,
        "regions[1].name",
        "not a known Azure region",
        "northeuropa",
    );
    let y = edit("  - name: northeurope", "  - name: North Europe");
    expect(&y, "regions[1].name", "write `northeurope`", "North Europe");
}

#[test]
fn duplicate_region() {
    let y = edit("  - name: northeurope", "  - name: westeurope");
    let d = expect(
        &y,
        "regions[1].name",
        "duplicate region `westeurope`",
        "  - name: westeurope\n    hub:\n      name: vnet-hub-northeurope",
    );
    assert!(d.message.contains("regions[0].name"));
}

// ---- addresses ----

#[test]
fn ipv6_rejected() {
    let y = edit(
        "address_space: [10.2.16.0/20]",
        "address_space: [\"fd00:1::/48\"]",
    );
    expect(
        &y,
        "regions[1].spokes[0].address_space[0]",
        "IPv6",
        "fd00:1::/48",
    );
}

#[test]
fn prefix_length_out_of_range() {
    let y = edit(
        "address_space: [10.2.16.0/20]",
        "address_space: [10.2.16.0/33]",
    );
    expect(
        &y,
        "regions[1].spokes[0].address_space[0]",
        "/33 is out of range",
        "10.2.16.0/33",
    );
}

#[test]
fn non_canonical_prefix_with_suggestion() {
    let y = edit(
        "address_space: [10.2.16.0/20]",
        "address_space: [10.2.16.1/20]",
    );
    expect(
        &y,
        "regions[1].spokes[0].address_space[0]",
        "the prefix is 10.2.16.0/20",
        "10.2.16.1/20",
    );
}

#[test]
fn slash_zero_rejected_for_vnets() {
    let y = edit(
        "address_space: [10.2.16.0/20]",
        "address_space: [0.0.0.0/0]",
    );
    expect(
        &y,
        "regions[1].spokes[0].address_space[0]",
        "cannot use /0",
        "0.0.0.0/0",
    );
}

#[test]
fn vnet_overlap_names_the_other_vnet() {
    let y = edit(
        "address_space: [10.2.16.0/20]",
        "address_space: [10.1.0.0/16]",
    );
    expect(
        &y,
        "regions[1].spokes[0].address_space[0]",
        "10.1.0.0/16 overlaps vnet-hub-westeurope (10.1.0.0/22)",
        "10.1.0.0/16",
    );
}

#[test]
fn overlap_within_one_vnet() {
    let y = edit(
        "address_space: [10.2.16.0/20]",
        "address_space: [10.2.16.0/20, 10.2.17.0/24]",
    );
    expect(
        &y,
        "regions[1].spokes[0].address_space[1]",
        "overlaps another address prefix of the same VNet",
        "10.2.17.0/24",
    );
}

#[test]
fn subnet_outside_vnet() {
    let y = edit(
        "            prefix: 10.1.16.0/24",
        "            prefix: 10.9.16.0/24",
    );
    expect(
        &y,
        "regions[0].spokes[0].subnets[0].prefix",
        "10.9.16.0/24 is not inside the address space of vnet-prod-westeurope",
        "10.9.16.0/24",
    );
}

#[test]
fn subnets_overlap() {
    let y = edit(
        "          - name: snet-app\n            prefix: 10.1.16.0/24",
        "          - name: snet-app\n            prefix: 10.1.16.0/24\n          - name: snet-db\n            prefix: 10.1.16.128/25",
    );
    expect(
        &y,
        "regions[0].spokes[0].subnets[1].prefix",
        "10.1.16.128/25 overlaps subnet snet-app (10.1.16.0/24)",
        "10.1.16.128/25",
    );
}

#[test]
fn managed_firewall_needs_azure_firewall_subnet() {
    let y = edit(
        "          prefix: 10.1.0.0/26",
        "          prefix: 10.1.0.0/27",
    );
    expect(
        &y,
        "regions[0].hub.subnets[0].prefix",
        "must be /26 or larger, found /27",
        "10.1.0.0/27",
    );
    let y = edit(
        "        - name: AzureFirewallSubnet",
        "        - name: snet-fw",
    );
    expect(
        &y,
        "regions[0].hub.subnets",
        "needs a subnet named AzureFirewallSubnet",
        "- name: snet-fw",
    );
}

#[test]
fn dns_record_outside_every_vnet() {
    let y = edit("ipv4: [10.1.16.10]", "ipv4: [10.1.16.10, 192.168.1.1]");
    expect(
        &y,
        "dns.zones[0].records[0].ipv4[1]",
        "192.168.1.1 is not inside the address space of any VNet",
        "192.168.1.1",
    );
}

#[test]
fn dns_server_must_be_ipv4() {
    let y = edit(
        "      address_space: [10.2.0.0/22]",
        "      address_space: [10.2.0.0/22]\n      dns_servers: [10.2.0.300]",
    );
    expect(
        &y,
        "regions[1].hub.dns_servers[0]",
        "not an IPv4 address",
        "10.2.0.300",
    );
}

// ---- duplicates ----

#[test]
fn duplicate_vnet_name() {
    let y = edit(
        "      - name: vnet-prod-northeurope",
        "      - name: vnet-prod-westeurope",
    );
    expect(
        &y,
        "regions[1].spokes[0].name",
        "duplicate VNet name `vnet-prod-westeurope`",
        "      - name: vnet-prod-westeurope\n        env: prod\n        resource_group: rg-spokes\n        address_space: [10.2",
    );
}

#[test]
fn duplicate_group() {
    let y = edit("  - name: nonprod\n", "  - name: prod\n");
    expect(
        &y,
        "network_groups[2].name",
        "duplicate network group `prod`",
        "  - name: prod\n    match: {tag: env, equals: nonprod}",
    );
}

#[test]
fn duplicate_configuration_name() {
    let y = edit("    name: cc-mesh", "    name: cc-hs-westeurope");
    expect(
        &y,
        "connectivity.hub_and_spoke.name_prefix",
        "`cc-hs-westeurope` is used twice",
        "name_prefix: cc-hs",
    );
}

#[test]
fn duplicate_rule_name_and_priority() {
    let y = edit(
        "        - name: allow-web\n          priority: 200",
        "        - name: deny-p-np\n          priority: 100",
    );
    expect(
        &y,
        "security_admin.rule_collections[0].rules[1].name",
        "duplicate rule `deny-p-np`",
        "        - name: deny-p-np\n          priority: 100\n          direction: Inbound",
    );
    expect(
        &y,
        "security_admin.rule_collections[0].rules[1].priority",
        "priority 100 is already used by rule deny-p-np",
        "          priority: 100\n          direction: Inbound",
    );
}

#[test]
fn duplicate_record() {
    let y = edit(
        "          ipv4: [10.1.16.10]",
        "          ipv4: [10.1.16.10]\n        - name: db\n          type: A\n          ipv4: [10.1.16.11]",
    );
    expect(
        &y,
        "dns.zones[0].records[1].name",
        "duplicate record set `A db`",
        "        - name: db\n          type: A\n          ipv4: [10.1.16.11]",
    );
}

// ---- references ----

#[test]
fn undefined_group_references() {
    let y = edit(
        "applies_to_groups: [prod, nonprod]",
        "applies_to_groups: [prod, staging]",
    );
    expect(
        &y,
        "security_admin.rule_collections[0].applies_to_groups[1]",
        "network group `staging` is not defined",
        "staging",
    );
    let y = edit("    group: hubs", "    group: hubz");
    expect(
        &y,
        "connectivity.mesh.group",
        "`hubz` is not defined",
        "group: hubz",
    );
    let y = edit(
        "destinations: [{group: nonprod}]",
        "destinations: [{group: dev}]",
    );
    expect(
        &y,
        "security_admin.rule_collections[0].rules[0].destinations[0].group",
        "`dev` is not defined",
        "group: dev",
    );
}

#[test]
fn undefined_vnet_references() {
    let y = edit(
        "    match: {tag: network_role, equals: hub}",
        "    static_members: [vnet-hub-eastus]",
    );
    expect(
        &y,
        "network_groups[0].static_members[0]",
        "`vnet-hub-eastus` is not a VNet of this intent",
        "vnet-hub-eastus",
    );
    let y = edit(
        "      resource_group: rg-net\n      records:",
        "      resource_group: rg-net\n      links:\n        vnets: [vnet-nowhere]\n      records:",
    );
    expect(
        &y,
        "dns.zones[0].links.vnets[0]",
        "`vnet-nowhere` is not a VNet of this intent",
        "vnet-nowhere",
    );
}

#[test]
fn undefined_resource_group() {
    let y = edit(
        "        resource_group: rg-spokes\n        address_space: [10.2.16.0/20]",
        "        resource_group: rg-apps\n        address_space: [10.2.16.0/20]",
    );
    expect(
        &y,
        "regions[1].spokes[0].resource_group",
        "`rg-apps` (subscription 11111111-2222-3333-4444-555555555555) is not declared",
        "rg-apps",
    );
}

#[test]
fn undefined_region_in_hub_and_spoke() {
    let y = edit(
        "    spoke_groups: [prod, nonprod]",
        "    spoke_groups: [prod, nonprod]\n    regions: [eastus]",
    );
    expect(
        &y,
        "connectivity.hub_and_spoke.regions[0]",
        "`eastus` is not one of the intent's regions",
        "regions: [eastus]",
    );
}

#[test]
fn derived_group_name_collision() {
    let y = edit(
        "network_groups:\n",
        "network_groups:\n  - name: prod-westeurope\n    match: {tag: env, equals: x}\n",
    );
    expect(
        &y,
        "connectivity.hub_and_spoke.spoke_groups",
        "already defines a group with that name",
        "spoke_groups: [prod, nonprod]",
    );
}

#[test]
fn spoke_group_must_not_match_the_hub() {
    let y = edit(
        "    spoke_groups: [prod, nonprod]",
        "    spoke_groups: [prod, hubs]",
    );
    expect(
        &y,
        "connectivity.hub_and_spoke.spoke_groups",
        "matches the hub vnet-hub-westeurope",
        "spoke_groups: [prod, hubs]",
    );
}

#[test]
fn group_condition_rules() {
    let y = edit(
        "        - {tag: env, equals: prod}\n",
        "        - {tag: env, equals: prod}\n        - {tag: \"team/x\", equals: web}\n        - {tag: env, equals: dev}\n",
    );
    expect(
        &y,
        "network_groups[1].match.all_of[1].tag",
        "cannot contain '/'",
        "team/x",
    );
    expect(
        &y,
        "network_groups[1].match.all_of[2].tag",
        "tested twice",
        "equals: dev",
    );
    let y = edit(
        "  - name: nonprod\n    match: {tag: env, equals: nonprod}\n",
        "  - name: nonprod\n",
    );
    expect(
        &y,
        "network_groups[2]",
        "neither `match` nor `static_members`",
        "  - name: nonprod\n",
    );
}

#[test]
fn unquoted_star_explains_itself() {
    let y = edit(
        "destination_ports: [\"443\", 8080]",
        "destination_ports: [*]",
    );
    let e = errors(&y);
    assert_eq!(e.diagnostics().len(), 1, "{e}");
    assert!(
        e.diagnostics()[0].message.contains("quote it: \"*\""),
        "{e}"
    );
    assert_eq!(e.diagnostics()[0].line, line_of(&y, "[*]"));
}

#[test]
fn reserved_tags() {
    let y = edit(
        "      managed: true\n      address_space: [10.1.0.0/22]",
        "      managed: true\n      tags: {network_role: spoke}\n      address_space: [10.1.0.0/22]",
    );
    expect(
        &y,
        "regions[0].hub.tags.network_role",
        "set by netstep",
        "network_role: spoke",
    );
}

#[test]
fn scope_access_required() {
    let y = edit(
        "  resource_group: rg-net\nregions:",
        "  resource_group: rg-net\n  scope_accesses: [Connectivity]\nregions:",
    );
    expect(
        &y,
        "network_manager.scope_accesses",
        "must include SecurityAdmin",
        "scope_accesses: [Connectivity]",
    );
}

// ---- admin rules ----

#[test]
fn admin_priority_range() {
    let y = edit(
        "          priority: 200\n          direction: Inbound",
        "          priority: 5000\n          direction: Inbound",
    );
    expect(
        &y,
        "security_admin.rule_collections[0].rules[1].priority",
        "out of range 1-4096",
        "priority: 5000",
    );
    let y = edit(
        "          priority: 200\n          direction: Inbound",
        "          priority: 0\n          direction: Inbound",
    );
    expect(
        &y,
        "security_admin.rule_collections[0].rules[1].priority",
        "out of range 1-4096",
        "priority: 0",
    );
}

#[test]
fn admin_description_limit() {
    // AVNM allows 140 characters; netstep appends " [managed-by=netstep]" (21).
    let long = "d".repeat(120);
    let y = edit(
        "        - name: allow-web\n",
        &format!("        - name: allow-web\n          description: {long}\n"),
    );
    expect(
        &y,
        "security_admin.rule_collections[0].rules[1].description",
        "120 characters; the limit is 119",
        &long,
    );
    let fits = "d".repeat(119);
    let y = edit(
        "        - name: allow-web\n",
        &format!("        - name: allow-web\n          description: {fits}\n"),
    );
    assert!(netstep::intent::load_str("intent.yaml", y.as_bytes()).is_ok());
}

#[test]
fn port_ranges() {
    let y = edit(
        "destination_ports: [\"443\", 8080]",
        "destination_ports: [\"443\", 70000]",
    );
    expect(
        &y,
        "security_admin.rule_collections[0].rules[1].destination_ports[1]",
        "out of range 0-65535",
        "70000",
    );
    let y = edit(
        "destination_ports: [\"443\", 8080]",
        "destination_ports: [\"2000-1000\"]",
    );
    expect(
        &y,
        "security_admin.rule_collections[0].rules[1].destination_ports[0]",
        "reversed",
        "2000-1000",
    );
}

#[test]
fn admin_cidr_must_be_a_prefix() {
    let y = edit(
        "destinations: [{cidr: 10.1.16.0/24}]",
        "destinations: [{cidr: 10.1.16.5}]",
    );
    expect(
        &y,
        "security_admin.rule_collections[0].rules[1].destinations[0].cidr",
        "write 10.1.16.5/32",
        "10.1.16.5",
    );
}

#[test]
fn admin_rules_per_collection_limit() {
    let mut rules = String::new();
    for i in 0..101 {
        rules.push_str(&format!(
            "        - {{name: r{i}, priority: {}, direction: Inbound, access: Deny, protocol: Tcp}}\n",
            i + 1000
        ));
    }
    let y = edit(
        "      rules:\n        - name: deny-p-np",
        &format!("      rules:\n{rules}        - name: deny-p-np"),
    );
    expect(
        &y,
        "security_admin.rule_collections[0].rules",
        "103 rules; a rule collection holds at most 100",
        "- {name: r0,",
    );
}

// ---- firewall policy ----

#[test]
fn child_location_must_match_parent() {
    let y = edit(
        "  tier: Standard",
        "  tier: Standard\n  children: {location: northeurope}",
    );
    expect(
        &y,
        "firewall_policy.children.location",
        "must be in the parent's region (westeurope)",
        "children: {location: northeurope}",
    );
}

#[test]
fn firewall_tier_must_match_policy() {
    let y = edit("        sku_tier: Standard", "        sku_tier: Premium");
    expect(
        &y,
        "regions[0].hub.firewall.sku_tier",
        "is Premium but the firewall policy tier is Standard",
        "sku_tier: Premium",
    );
}

#[test]
fn basic_tier_rules() {
    let y = edit(
        "  tier: Standard\n  dns_proxy: true",
        "  tier: Basic\n  dns_proxy: true",
    );
    expect(
        &y,
        "firewall_policy.dns_proxy",
        "Basic tier does not support DNS proxy",
        "dns_proxy: true",
    );
}

#[test]
fn nat_collection_needs_dnat() {
    let y = edit("          action: DNAT", "          action: Allow");
    expect(
        &y,
        "firewall_policy.rule_collection_groups[0].rule_collections[1].action",
        "must be DNAT",
        "action: Allow\n          rules:\n            - name: ssh-in",
    );
}

#[test]
fn fqdn_network_rule_needs_dns_proxy() {
    let y = edit("  dns_proxy: true", "  dns_proxy: false");
    let y = edit_in(
        &y,
        "              destination_addresses: [168.63.129.16]",
        "              destination_fqdns: [ntp.example.com]",
    );
    expect(
        &y,
        "firewall_policy.rule_collection_groups[0].rule_collections[0].rules[0].destination_fqdns",
        "require firewall_policy.dns_proxy: true",
        "ntp.example.com",
    );
}

#[test]
fn firewall_priorities() {
    let y = edit(
        "    - name: rcg-1\n      priority: 100",
        "    - name: rcg-1\n      priority: 99",
    );
    expect(
        &y,
        "firewall_policy.rule_collection_groups[0].priority",
        "out of range 100-65000",
        "priority: 99",
    );
}

#[test]
fn nat_rule_translated_port_single() {
    let y = edit("translated_port: \"22\"", "translated_port: \"22-23\"");
    expect(
        &y,
        "firewall_policy.rule_collection_groups[0].rule_collections[1].rules[0].translated_port",
        "single port",
        "22-23",
    );
}

#[test]
fn rule_type_must_fit_collection() {
    let y = edit(
        "          kind: nat\n          action: DNAT",
        "          kind: filter\n          action: Allow",
    );
    expect(
        &y,
        "firewall_policy.rule_collection_groups[0].rule_collections[1].rules[0].type",
        "nat rules belong in a collection of kind nat",
        "type: nat",
    );
}

// ---- DNS ----

#[test]
fn registration_in_two_zones() {
    let y = edit(
        "      records:\n",
        "      links: {registration_enabled: true}\n      records:\n",
    );
    let y = edit_in(
        &y,
        "dns:\n  zones:\n",
        "dns:\n  zones:\n    - name: other.internal\n      resource_group: rg-net\n      links: {registration_vnets: [vnet-prod-westeurope]}\n",
    );
    expect(
        &y,
        "dns.zones[1].links",
        "can register in only one private zone",
        "links: {registration_enabled: true}",
    );
}

// ---- more rules ----

#[test]
fn vnet_outside_network_manager_scope() {
    let y = edit(
        "        resource_group: rg-spokes\n        address_space: [10.2.16.0/20]",
        "        resource_group: rg-spokes\n        subscription: 99999999-2222-3333-4444-555555555555\n        address_space: [10.2.16.0/20]",
    );
    expect(
        &y,
        "regions[1].spokes[0].subscription",
        "outside the network manager's scope",
        "subscription: 9999",
    );
    // The resource group is declared only in the default subscription.
    expect(
        &y,
        "regions[1].spokes[0].resource_group",
        "is not declared",
        "        resource_group: rg-spokes\n        subscription: 9999",
    );
}

#[test]
fn duplicate_resource_group_and_firewall() {
    let y = edit("  - name: rg-spokes\n", "  - name: RG-NET\n");
    expect(
        &y,
        "resource_groups[1].name",
        "duplicate resource group",
        "RG-NET",
    );
    let y = edit(
        "        name: afw-existing",
        "        name: afw-hub-westeurope\n        resource_group: rg-net",
    );
    expect(
        &y,
        "regions[1].hub.firewall.name",
        "duplicate firewall",
        "        name: afw-hub-westeurope\n        resource_group: rg-net",
    );
}

#[test]
fn firewall_reference_forms() {
    let y = edit(
        "      firewall:\n        name: afw-existing",
        "      firewall: /subscriptions/x/azureFirewalls/afw",
    );
    expect(
        &y,
        "regions[1].hub.firewall",
        "not an Azure Firewall resource id",
        "firewall: /subscriptions/x",
    );
    let y = edit(
        "        name: afw-existing",
        "        name: afw-existing\n        id: /subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-net/providers/Microsoft.Network/azureFirewalls/afw",
    );
    expect(
        &y,
        "regions[1].hub.firewall.name",
        "give either `id` or `name`",
        "        name: afw-existing",
    );
    // The shorthand forms are valid.
    let ok = edit(
        "      firewall:\n        name: afw-existing",
        "      firewall: afw-existing",
    );
    let it = intent::load_str("i.yaml", ok.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let fw = it.regions()[1].hub.firewall.as_ref().unwrap();
    assert_eq!(
        (fw.name.as_str(), fw.resource_group.as_str(), fw.managed),
        ("afw-existing", "rg-net", false)
    );
    let ok = edit(
        "      firewall:\n        name: afw-existing",
        "      firewall: /subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-sec/providers/Microsoft.Network/azureFirewalls/afw-x",
    );
    let it = intent::load_str("i.yaml", ok.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let fw = it.regions()[1].hub.firewall.as_ref().unwrap();
    assert_eq!(
        (fw.name.as_str(), fw.resource_group.as_str()),
        ("afw-x", "rg-sec")
    );
    assert!(
        it.firewall_policies()[2]
            .firewall_id
            .as_deref()
            .unwrap()
            .ends_with("/resourceGroups/rg-sec/providers/Microsoft.Network/azureFirewalls/afw-x")
    );
}

#[test]
fn firewall_zones() {
    let y = edit(
        "        sku_tier: Standard",
        "        sku_tier: Standard\n        zones: [\"1\", \"4\", \"1\"]",
    );
    expect(
        &y,
        "regions[0].hub.firewall.zones[1]",
        "must be \"1\", \"2\" or \"3\"",
        "zones: [",
    );
    expect(
        &y,
        "regions[0].hub.firewall.zones[2]",
        "duplicate zone",
        "zones: [",
    );
}

#[test]
fn static_member_resource_id_rules() {
    let y = edit(
        "    match: {tag: network_role, equals: hub}",
        "    static_members: [/subscriptions/x/virtualNetworks/v]",
    );
    expect(
        &y,
        "network_groups[0].static_members[0]",
        "not a VNet resource id",
        "static_members:",
    );
    let id = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-other/providers/Microsoft.Network/virtualNetworks/vnet-legacy";
    let y = edit(
        "    match: {tag: env, equals: nonprod}",
        &format!("    match: {{tag: env, equals: nonprod}}\n    static_members: [{id}]"),
    );
    expect(
        &y,
        "connectivity.hub_and_spoke.spoke_groups[1]",
        "static members given by resource id",
        "spoke_groups: [prod, nonprod]",
    );
}

#[test]
fn connectivity_needs_a_configuration() {
    let y = edit(
        "  mesh:\n    name: cc-mesh\n    group: hubs\n  hub_and_spoke:\n    name_prefix: cc-hs\n    spoke_groups: [prod, nonprod]\n",
        "  connectivity_capabilities: {connected_group_private_endpoints_scale: Standard, connected_group_address_overlap: Allowed, peering_enforcement: Enforced}\n",
    );
    expect(
        &y,
        "connectivity",
        "needs `mesh` and/or `hub_and_spoke`",
        "  connectivity_capabilities:",
    );
}

#[test]
fn direct_connectivity_connected_group_limit() {
    let mut spokes = String::new();
    for i in 0..250 {
        spokes.push_str(&format!("      - {{name: vnet-x{i}, env: prod, resource_group: rg-spokes, address_space: [10.{}.{}.0/24]}}\n", 100 + i / 256, i % 256));
    }
    let y = edit(
        "    spokes:\n      - name: vnet-prod-northeurope",
        &format!("    spokes:\n{spokes}      - name: vnet-prod-northeurope"),
    );
    let y = edit_in(
        &y,
        "    spoke_groups: [prod, nonprod]",
        "    spoke_groups: [prod, nonprod]\n    direct_spoke_connectivity: true",
    );
    expect(
        &y,
        "connectivity.hub_and_spoke.direct_spoke_connectivity",
        "northeurope: direct connectivity makes a connected group of 252 VNets; the limit is 250",
        "direct_spoke_connectivity: true",
    );
}

#[test]
fn nip_none_alone() {
    let y = edit(
        "  name: sac\n",
        "  name: sac\n  apply_on_network_intent_policy_based_services: [None, All]\n",
    );
    expect(
        &y,
        "security_admin.apply_on_network_intent_policy_based_services",
        "`None` cannot be combined",
        "[None, All]",
    );
}

#[test]
fn dns_link_rules() {
    let long = "l".repeat(70);
    let y = edit(
        "      resource_group: rg-net\n      records:",
        &format!(
            "      resource_group: rg-net\n      links: {{name_prefix: {long}, registration_vnets: [vnet-hub-westeurope]}}\n      records:"
        ),
    );
    expect(&y, "dns.zones[0].links.name_prefix", "link name:", &long);
    let y = edit(
        "      resource_group: rg-net\n      records:",
        "      resource_group: rg-net\n      links: {vnets: [vnet-hub-westeurope], registration_vnets: [vnet-prod-westeurope]}\n      records:",
    );
    expect(
        &y,
        "dns.zones[0].links.registration_vnets[0]",
        "is not linked to zone example.internal",
        "registration_vnets: [vnet-prod",
    );
}

#[test]
fn dns_ttl_range() {
    let y = edit(
        "          type: A\n",
        "          type: A\n          ttl: 0\n",
    );
    expect(
        &y,
        "dns.zones[0].records[0].ttl",
        "ttl must be 1-2147483647",
        "ttl: 0",
    );
}

#[test]
fn firewall_rule_shapes() {
    let y = edit(
        "              destination_addresses: [168.63.129.16]\n              destination_ports: [\"53\"]",
        "              destination_ports: [\"53\"]",
    );
    expect(
        &y,
        "firewall_policy.rule_collection_groups[0].rule_collections[0].rules[0]",
        "needs destination_addresses or destination_fqdns",
        "            - name: dns",
    );
    let y = edit(
        "              protocols: [TCP]",
        "              protocols: [ICMP]",
    );
    expect(
        &y,
        "firewall_policy.rule_collection_groups[0].rule_collections[1].rules[0].protocols[0]",
        "only TCP and UDP",
        "protocols: [ICMP]",
    );
    let y = edit(
        "              translated_address: 10.1.16.4",
        "              translated_address: 10.1.16.0/24",
    );
    expect(
        &y,
        "firewall_policy.rule_collection_groups[0].rule_collections[1].rules[0].translated_address",
        "not an IPv4 address",
        "translated_address: 10.1.16.0/24",
    );
    let y = edit(
        "              source_addresses: [10.0.0.0/8]\n              destination_addresses: [168.63.129.16]",
        "              source_addresses: [10.0.0.1/8]\n              destination_addresses: [168.63.129.16]",
    );
    expect(
        &y,
        "firewall_policy.rule_collection_groups[0].rule_collections[0].rules[0].source_addresses[0]",
        "the prefix is 10.0.0.0/8",
        "10.0.0.1/8",
    );
}

#[test]
fn application_rule_rules() {
    let app = "            - name: web\n              type: application\n              protocols: [{type: Https, port: 70000}]\n              source_addresses: [\"*\"]\n              target_fqdns: [\"*.example.com\", \"bad_host\"]\n              fqdn_tags: [WindowsUpdate]\n";
    let y = edit(
        "        - name: rc-nat\n",
        &format!(
            "        - name: rc-app\n          priority: 300\n          kind: filter\n          action: Allow\n          rules:\n{app}        - name: rc-nat\n"
        ),
    );
    let rp = "firewall_policy.rule_collection_groups[0].rule_collections[1].rules[0]";
    expect(
        &y,
        &format!("{rp}.protocols[0].port"),
        "out of range 1-64000",
        "port: 70000",
    );
    expect(
        &y,
        &format!("{rp}.target_fqdns[1]"),
        "not a valid FQDN",
        "bad_host",
    );
    expect(
        &y,
        &format!("{rp}.fqdn_tags"),
        "not both",
        "fqdn_tags: [WindowsUpdate]",
    );
}

#[test]
fn mixed_filter_collection() {
    let app = "            - name: web\n              type: application\n              protocols: [{type: Https, port: 443}]\n              source_addresses: [\"*\"]\n              target_fqdns: [www.example.com]\n";
    let y = edit(
        "        - name: rc-nat\n",
        &format!("{app}        - name: rc-nat\n"),
    );
    expect(
        &y,
        "firewall_policy.rule_collection_groups[0].rule_collections[0].rules[1].type",
        "holds rules of one type",
        "type: application",
    );
}

#[test]
fn empty_rule_collection() {
    let y = edit(
        "      applies_to_groups: [prod, nonprod]",
        "      applies_to_groups: []",
    );
    expect(
        &y,
        "security_admin.rule_collections[0].applies_to_groups",
        "at least one network group",
        "applies_to_groups: []",
    );
}

// ---- limits (generated intents) ----

fn one_region_with_spokes(n: usize, high_scale: bool) -> String {
    let mut y = String::from(
        "version: 1\nsubscription: 11111111-2222-3333-4444-555555555555\nresource_groups: [{name: rg, location: westeurope}]\nnetwork_manager: {name: nm, location: westeurope, resource_group: rg}\nregions:\n  - name: westeurope\n    hub: {name: vnet-hub, resource_group: rg, address_space: [10.255.0.0/24]}\n    spokes:\n",
    );
    for i in 0..n {
        y.push_str(&format!(
            "      - {{name: vnet-s{i}, env: prod, resource_group: rg, address_space: [10.{}.{}.0/24]}}\n",
            i / 256,
            i % 256
        ));
    }
    y.push_str("network_groups:\n  - {name: prod, match: {tag: env, equals: prod}}\nconnectivity:\n  mesh: {name: cc-mesh, group: prod}\n  hub_and_spoke: {name_prefix: cc-hs, spoke_groups: [prod]}\n");
    if high_scale {
        y.push_str("  connectivity_capabilities: {connected_group_private_endpoints_scale: HighScale, connected_group_address_overlap: Disallowed, peering_enforcement: Unenforced}\n");
    }
    y.push_str("dns:\n  zones:\n    - {name: example.internal, resource_group: rg}\n");
    y
}

#[test]
fn published_limits() {
    let y = one_region_with_spokes(1001, false);
    let e = errors(&y);
    let has = |path: &str, msg: &str| {
        e.diagnostics()
            .iter()
            .any(|d| d.path == path && d.message.contains(msg))
    };
    assert!(
        has(
            "connectivity.mesh.group",
            "the mesh connects 1001 VNets; a connected group holds at most 250"
        ),
        "{e}"
    );
    assert!(
        has(
            "connectivity.hub_and_spoke.spoke_groups",
            "1001 spokes for one hub; the limit is 1000"
        ),
        "{e}"
    );
    assert!(
        has(
            "dns.zones[0].links",
            "1002 VNet links; a private DNS zone holds at most 1000"
        ),
        "{e}"
    );
    assert_eq!(e.diagnostics().len(), 3, "{e}");
    // 300 spokes are fine with HighScale, not without.
    assert!(intent::load_str("i.yaml", one_region_with_spokes(300, true).as_bytes()).is_ok());
    let e = errors(&one_region_with_spokes(300, false));
    assert_eq!(e.diagnostics().len(), 1, "{e}");
}

// ---- reporting ----

#[test]
fn all_problems_at_once_sorted_by_line() {
    let y = edit(
        "address_space: [10.2.16.0/20]",
        "address_space: [10.1.0.0/16]",
    );
    let y = edit_in(&y, "  name: avnm-test", "  name: avnm-test-");
    let y = edit_in(
        &y,
        "          priority: 200\n          direction: Inbound",
        "          priority: 9999\n          direction: Inbound",
    );
    let e = errors(&y);
    // The /16 overlaps all three westeurope VNets: each overlap is reported.
    assert_eq!(e.diagnostics().len(), 5, "{e}");
    let lines: Vec<u32> = e.diagnostics().iter().map(|d| d.line).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
    let text = e.to_string();
    let first = text.lines().next().unwrap();
    let l = line_of(&y, "avnm-test-");
    assert_eq!(
        first,
        format!(
            "intent.yaml:{l}:9: network_manager.name: `avnm-test-`: an AVNM resource name must end with a letter, digit or underscore"
        )
    );
    let overlap = line_of(&y, "10.1.0.0/16");
    assert!(text.contains(&format!(
        "intent.yaml:{overlap}:25: regions[1].spokes[0].address_space[0]: 10.1.0.0/16 overlaps vnet-hub-westeurope (10.1.0.0/22)"
    )), "{text}");
    assert_eq!(text.lines().count(), 5);
}

#[test]
fn error_is_send_sync_static() {
    fn check<T: std::error::Error + Send + Sync + 'static>() {}
    check::<IntentError>();
    let e: netstep::Error = errors(&edit("version: 1", "version: 3")).into();
    assert_eq!(e.exit_status(), netstep::ExitStatus::InvalidInput);
}

#[test]
fn bad_fixture_files() {
    // Each file under bad/ lists the diagnostics it must produce as `# expect: LINE:COL: path: text`
    // (text is matched as a substring of the message).
    let dir = fixtures().join("bad");
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        n += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expected.is_empty(),
            "{} has no `# expect:` line",
            path.display()
        );
        let e = match intent::load_file(&path) {
            Ok(_) => panic!("{} must be rejected", path.display()),
            Err(e) => e,
        };
        let shown: Vec<String> = e
            .diagnostics()
            .iter()
            .map(|d| format!("{}:{}: {}: {}", d.line, d.col, d.path, d.message))
            .collect();
        for exp in &expected {
            let (loc_path, msg) = exp.split_once(": ").map_or((*exp, ""), |(a, b)| (a, b));
            // loc_path is `LINE:COL` and the rest is `path: text`.
            let needle_head = format!("{loc_path}: ");
            assert!(
                shown
                    .iter()
                    .any(|s| s.starts_with(&needle_head) && s.contains(msg)),
                "{}: expected `{exp}`, got:\n{}",
                path.display(),
                shown.join("\n")
            );
        }
        assert_eq!(
            shown.len(),
            expected.len(),
            "{}: unexpected extra diagnostics:\n{}",
            path.display(),
            shown.join("\n")
        );
    }
    assert!(n >= 5, "expected the bad/ fixtures");
}

#[test]
fn static_only_groups_have_no_policy_and_narrow_by_region() {
    let y = edit(
        "  - name: nonprod\n    match: {tag: env, equals: nonprod}\n",
        "  - name: nonprod\n    static_members: [vnet-nonprod-westeurope]\n",
    );
    let it = intent::load_str("i.yaml", y.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let g = it.group("nonprod").unwrap();
    assert!(g.policy_condition().is_none());
    assert!(g.static_members[0].ends_with("/virtualNetworks/vnet-nonprod-westeurope"));
    let we = it.group("nonprod-westeurope").unwrap();
    assert_eq!(we.static_members, g.static_members);
    assert!(we.policy_condition().is_none());
    let ne = it.group("nonprod-northeurope").unwrap();
    assert!(ne.static_members.is_empty());
    assert!(it.group_members("nonprod-northeurope").is_empty());
    let names: Vec<&str> = it
        .group_members("nonprod-westeurope")
        .iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["vnet-nonprod-westeurope"]);
}
