//! docs/intent.schema.json is generated from the Rust types; this test fails when it is stale.
//! Regenerate with `UPDATE_SCHEMA=1 cargo test -p netstep schema`.

use std::path::PathBuf;

#[test]
fn schema_file_is_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/intent.schema.json");
    let generated = serde_json::to_string_pretty(&netstep::intent::json_schema()).unwrap() + "\n";
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale; regenerate it with `UPDATE_SCHEMA=1 cargo test -p netstep schema`",
        path.display()
    );
}

#[test]
fn schema_describes_the_intent() {
    let s = netstep::intent::json_schema();
    let props = s["properties"].as_object().expect("top-level properties");
    for key in [
        "version",
        "subscription",
        "resource_groups",
        "network_manager",
        "regions",
        "network_groups",
        "connectivity",
        "security_admin",
        "firewall_policy",
        "dns",
    ] {
        assert!(props.contains_key(key), "schema lacks `{key}`");
    }
    let required: Vec<&str> = s["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(required.contains(&"regions") && required.contains(&"network_manager"));
    assert!(!required.contains(&"dns"));
    assert_eq!(s["additionalProperties"], serde_json::Value::Bool(false));
    // Defaulted fields are optional in the schema.
    let hub = &s["$defs"]["Hub"];
    let hub_required: Vec<&str> = hub["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(hub_required.contains(&"address_space"));
    assert!(!hub_required.contains(&"managed"));
    assert!(!hub_required.contains(&"subscription"));
}
