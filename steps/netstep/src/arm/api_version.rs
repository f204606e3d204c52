//! The ARM api-versions netstep speaks, pinned in one place.

/// Microsoft.Network: AVNM, virtual networks, firewalls, firewall policies, public IPs.
pub const NETWORK: &str = "2026-07-01";
/// Microsoft.Network/privateDnsZones and everything below them.
pub const PRIVATE_DNS: &str = "2024-06-01";
/// Microsoft.Authorization policy definitions, set definitions and assignments.
pub const POLICY: &str = "2025-03-01";

/// The api-version to use for a resource id or path (`/subscriptions/...`, optionally with a
/// query string): Private DNS for anything under `privateDnsZones`, Azure Policy for
/// `Microsoft.Authorization/policy*`, otherwise Microsoft.Network.
pub fn for_resource(id: &str) -> &'static str {
    let path = id.split('?').next().unwrap_or(id).to_ascii_lowercase();
    if path.contains("/privatednszones") {
        PRIVATE_DNS
    } else if path.contains("/microsoft.authorization/policy") {
        POLICY
    } else {
        NETWORK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_api_version_by_provider() {
        let rg = "/subscriptions/6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718/resourceGroups/rg-globojava-connectivity";
        assert_eq!(
            for_resource(&format!(
                "{rg}/providers/Microsoft.Network/privateDnsZones/globojava.com/virtualNetworkLinks/l"
            )),
            PRIVATE_DNS
        );
        assert_eq!(
            for_resource(&format!(
                "{rg}/providers/microsoft.network/PRIVATEDNSZONES/z"
            )),
            PRIVATE_DNS
        );
        assert_eq!(
            for_resource(
                "/subscriptions/s/providers/Microsoft.Authorization/policyDefinitions/avnm-ng-prod"
            ),
            POLICY
        );
        assert_eq!(
            for_resource("/subscriptions/s/providers/Microsoft.Authorization/policyAssignments/a"),
            POLICY
        );
        assert_eq!(
            for_resource(&format!(
                "{rg}/providers/Microsoft.Network/networkManagers/avnm-globojava/commit"
            )),
            NETWORK
        );
        assert_eq!(
            for_resource(&format!(
                "{rg}/providers/Microsoft.Network/virtualNetworks?$top=20"
            )),
            NETWORK
        );
        // A query string never selects the version.
        assert_eq!(
            for_resource(
                "/subscriptions/s/providers/Microsoft.Network/virtualNetworks?x=/privateDnsZones"
            ),
            NETWORK
        );
    }
}
