//! How the client authenticates: a static bearer token (simulator, tests, pre-fetched tokens)
//! or an azure_identity credential chosen from the environment.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use azure_core::credentials::{Secret, TokenCredential};

use super::error::{ArmError, ArmErrorKind};

/// The public-cloud ARM token scope.
pub const PUBLIC_SCOPE: &str = "https://management.azure.com/.default";

/// A source of bearer tokens. `Debug` never prints a token.
#[derive(Clone)]
pub enum Credential {
    /// A fixed bearer token (the simulator; a token fetched by the caller).
    Static(Secret),
    /// An Entra ID credential (workload identity, client secret, managed identity, Azure CLI).
    Azure(Arc<dyn TokenCredential>),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Static(_) => f.write_str("Static(<redacted>)"),
            // azure_identity's Debug impls print only the type name.
            Credential::Azure(c) => f.debug_tuple("Azure").field(c).finish(),
        }
    }
}

impl Credential {
    /// A static bearer token.
    pub fn static_token(token: impl Into<String>) -> Self {
        Credential::Static(Secret::new(token.into()))
    }

    /// Picks a credential from the environment, never probing anything:
    ///
    /// 1. `NETSTEP_ARM_TOKEN` (a bearer token) or `NETSTEP_ARM_TOKEN_FILE` (a file holding one,
    ///    trimmed);
    /// 2. `AZURE_FEDERATED_TOKEN_FILE` set: workload identity (`AZURE_TENANT_ID`,
    ///    `AZURE_CLIENT_ID`);
    /// 3. `AZURE_CLIENT_SECRET` set: client secret (with `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`);
    /// 4. `IDENTITY_ENDPOINT` or `MSI_ENDPOINT` set, or `NETSTEP_USE_MANAGED_IDENTITY=1`:
    ///    managed identity (user-assigned when `AZURE_CLIENT_ID` is set). Managed identity is
    ///    never tried otherwise: off Azure its token call retries for ~80 s before failing;
    /// 5. otherwise the Azure CLI.
    pub fn from_env() -> Result<Credential, ArmError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`Credential::from_env`] over any variable lookup (testable without touching the
    /// process environment).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Credential, ArmError> {
        // Unset, empty and blank variables are all "not set".
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let err = |kind: ArmErrorKind, msg: String| ArmError::new(kind, "credential", "", msg);
        if let Some(t) = get("NETSTEP_ARM_TOKEN") {
            return Ok(Credential::static_token(t.trim()));
        }
        if let Some(path) = get("NETSTEP_ARM_TOKEN_FILE") {
            let text = std::fs::read_to_string(Path::new(&path)).map_err(|e| {
                err(
                    ArmErrorKind::Config,
                    format!("NETSTEP_ARM_TOKEN_FILE {path}: cannot read: {e}"),
                )
            })?;
            let t = text.trim();
            if t.is_empty() {
                return Err(err(
                    ArmErrorKind::Config,
                    format!("NETSTEP_ARM_TOKEN_FILE {path} is empty"),
                ));
            }
            return Ok(Credential::static_token(t));
        }
        let azure = |r: azure_core::Result<Arc<dyn TokenCredential>>, what: &str| {
            r.map(Credential::Azure)
                .map_err(|e| err(ArmErrorKind::Auth, format!("{what}: {e}")).with_source(e))
        };
        if get("AZURE_FEDERATED_TOKEN_FILE").is_some() {
            return azure(
                azure_identity::WorkloadIdentityCredential::new(None)
                    .map(|c| c as Arc<dyn TokenCredential>),
                "workload identity (AZURE_FEDERATED_TOKEN_FILE)",
            );
        }
        if let Some(secret) = get("AZURE_CLIENT_SECRET") {
            let (Some(tenant), Some(client)) = (get("AZURE_TENANT_ID"), get("AZURE_CLIENT_ID"))
            else {
                return Err(err(
                    ArmErrorKind::Config,
                    "AZURE_CLIENT_SECRET is set but AZURE_TENANT_ID or AZURE_CLIENT_ID is not"
                        .into(),
                ));
            };
            return azure(
                azure_identity::ClientSecretCredential::new(
                    &tenant,
                    client,
                    Secret::new(secret),
                    None,
                )
                .map(|c| c as Arc<dyn TokenCredential>),
                "client secret (AZURE_CLIENT_SECRET)",
            );
        }
        let explicit_mi = get("NETSTEP_USE_MANAGED_IDENTITY")
            .is_some_and(|v| matches!(v.trim(), "1" | "true" | "TRUE" | "True" | "yes"));
        if get("IDENTITY_ENDPOINT").is_some() || get("MSI_ENDPOINT").is_some() || explicit_mi {
            let options =
                get("AZURE_CLIENT_ID").map(|id| azure_identity::ManagedIdentityCredentialOptions {
                    user_assigned_id: Some(azure_identity::UserAssignedId::ClientId(id)),
                    ..Default::default()
                });
            return azure(
                azure_identity::ManagedIdentityCredential::new(options)
                    .map(|c| c as Arc<dyn TokenCredential>),
                "managed identity",
            );
        }
        azure(
            azure_identity::AzureCliCredential::new(None).map(|c| c as Arc<dyn TokenCredential>),
            "Azure CLI",
        )
    }

    /// A short name of the credential source for logs.
    pub fn source(&self) -> &'static str {
        match self {
            Credential::Static(_) => "static",
            Credential::Azure(_) => "azure",
        }
    }
}

/// The token scope for an ARM endpoint: `https://{host}/.default` (so sovereign clouds such as
/// `management.chinacloudapi.cn` get their own audience); the public scope for a loopback
/// simulator.
pub fn scope_for(endpoint: &url::Url) -> String {
    match endpoint.host_str() {
        Some(h) if !is_loopback(h) => format!("https://{h}/.default"),
        _ => PUBLIC_SCOPE.to_string(),
    }
}

pub(crate) fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn static_token_is_never_debug_printed() {
        let c = Credential::static_token("eyJ0eXAiOiJKV1Qi.secret-token-value");
        let d = format!("{c:?}");
        assert_eq!(d, "Static(<redacted>)");
        assert!(!d.contains("secret-token-value"));
    }

    #[test]
    fn env_token_and_token_file_come_first() {
        let c = Credential::from_lookup(lookup(&[
            ("NETSTEP_ARM_TOKEN", " tok-1 \n"),
            ("AZURE_CLIENT_SECRET", "s"),
        ]))
        .unwrap();
        match c {
            Credential::Static(s) => assert_eq!(s.secret(), "tok-1"),
            other => panic!("expected static, got {other:?}"),
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "  tok-from-file\n").unwrap();
        let c = Credential::from_lookup(lookup(&[("NETSTEP_ARM_TOKEN_FILE", f.to_str().unwrap())]))
            .unwrap();
        match c {
            Credential::Static(s) => assert_eq!(s.secret(), "tok-from-file"),
            other => panic!("expected static, got {other:?}"),
        }
        let missing = dir.path().join("nope");
        let e = Credential::from_lookup(lookup(&[(
            "NETSTEP_ARM_TOKEN_FILE",
            missing.to_str().unwrap(),
        )]))
        .unwrap_err();
        assert_eq!(e.kind(), ArmErrorKind::Config);
        assert!(e.to_string().contains("NETSTEP_ARM_TOKEN_FILE"), "{e}");
    }

    #[test]
    fn blank_variables_count_as_unset() {
        let c = Credential::from_lookup(lookup(&[
            ("NETSTEP_ARM_TOKEN", "  "),
            ("NETSTEP_ARM_TOKEN_FILE", ""),
        ]))
        .unwrap();
        assert!(matches!(c, Credential::Azure(_)), "{c:?}");
    }

    #[test]
    fn client_secret_needs_tenant_and_client() {
        let e = Credential::from_lookup(lookup(&[("AZURE_CLIENT_SECRET", "hunter2")])).unwrap_err();
        assert_eq!(e.kind(), ArmErrorKind::Config);
        assert!(!e.to_string().contains("hunter2"));
        let c = Credential::from_lookup(lookup(&[
            ("AZURE_CLIENT_SECRET", "hunter2"),
            ("AZURE_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
            ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000001"),
        ]))
        .unwrap();
        assert!(matches!(c, Credential::Azure(_)));
        assert!(!format!("{c:?}").contains("hunter2"), "{c:?}");
    }

    #[test]
    fn managed_identity_only_when_the_platform_says_so() {
        // No hints: the Azure CLI, never managed identity.
        let c = Credential::from_lookup(lookup(&[])).unwrap();
        assert!(format!("{c:?}").contains("AzureCli"), "{c:?}");
        let c = Credential::from_lookup(lookup(&[("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi")]))
            .unwrap();
        assert!(format!("{c:?}").contains("ManagedIdentity"), "{c:?}");
        let c = Credential::from_lookup(lookup(&[("NETSTEP_USE_MANAGED_IDENTITY", "1")])).unwrap();
        assert!(format!("{c:?}").contains("ManagedIdentity"), "{c:?}");
    }

    #[test]
    fn scope_follows_the_endpoint_host() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(scope_for(&u("https://management.azure.com")), PUBLIC_SCOPE);
        assert_eq!(
            scope_for(&u("https://management.chinacloudapi.cn/")),
            "https://management.chinacloudapi.cn/.default"
        );
        assert_eq!(
            scope_for(&u("https://management.usgovcloudapi.net")),
            "https://management.usgovcloudapi.net/.default"
        );
        assert_eq!(scope_for(&u("http://127.0.0.1:8080")), PUBLIC_SCOPE);
        assert!(is_loopback("[::1]"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("management.azure.com"));
    }
}
