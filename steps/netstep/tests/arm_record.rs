//! Traffic recording (oav format, public host, redacted Authorization) and token hygiene.

mod arm_support;

use std::sync::{Arc, Mutex};

use arm_support::MockArm;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use netstep::arm::{ArmClient, Credential, FixedJitter, PUBLIC_SCOPE, ThrottleConfig};
use serde_json::{Value, json};

const TOKEN: &str = "tok-9d2e-never-log-me";
const NM: &str = "/subscriptions/6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/networkManagers/avnm-globojava";
const NET: &str = "api-version=2026-07-01";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(None)
        .build()
        .unwrap()
}

fn read_dir_sorted(dir: &std::path::Path) -> Vec<(String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(!text.contains(TOKEN), "{} leaks the token", p.display());
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::from_str(&text).unwrap(),
            )
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn traffic_is_recorded_in_oav_format_with_the_public_host() {
    let mock = MockArm::start();
    let dir = tempfile::tempdir().unwrap();
    let ng = format!("{NM}/networkGroups/global-hubs");
    let op = "/subscriptions/6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718/providers/Microsoft.Network/locations/westeurope/operations/op-1";
    let commit = format!("{NM}/commit");
    let loc = format!("{NM}/operationResults/00000000-0000-0000-0000-000000000000");
    let body = json!({"properties": {"memberType": "VirtualNetwork"}});
    mock.on("PUT", &format!("{ng}?{NET}")).reply(
        201,
        &[("Azure-AsyncOperation", &format!("{{base}}{op}?{NET}"))],
        json!({"name": "global-hubs", "properties": {"provisioningState": "Updating"}}),
    );
    mock.on("GET", &format!("{op}?{NET}"))
        .reply(200, &[], json!({"status": "Succeeded"}));
    mock.on("GET", &format!("{ng}?{NET}")).reply(
        200,
        &[],
        json!({"name": "global-hubs", "properties": {"provisioningState": "Succeeded"}}),
    );
    mock.on("POST", &format!("{commit}?{NET}")).reply(
        202,
        &[("Location", &format!("{{base}}{loc}?{NET}"))],
        Value::Null,
    );
    mock.on("GET", &format!("{loc}?{NET}"))
        .reply(204, &[], Value::Null);
    let c = ArmClient::builder()
        .endpoint(mock.base())
        .credential(Credential::static_token(TOKEN))
        .http_client(http())
        .jitter(Arc::new(FixedJitter::new(vec![0.5])))
        .throttle(ThrottleConfig::disabled())
        .record_traffic(dir.path().join("traffic"))
        .build()
        .unwrap();
    c.put(&ng, &body).await.unwrap();
    c.post(
        &commit,
        &json!({"commitType": "Connectivity", "targetLocations": ["eastus"]}),
    )
    .await
    .unwrap();
    let base = mock.base().to_string();
    mock.finish();

    let files = read_dir_sorted(&dir.path().join("traffic"));
    // `<start ms>-p<pid>-NNNNNN-...`: the run prefix is the same for every file of a process.
    let prefix = format!("-p{}-", std::process::id());
    let names: Vec<&str> = files
        .iter()
        .map(|(n, _)| {
            let at = n.find(&prefix).expect("run prefix");
            assert!(n[..at].chars().all(|c| c.is_ascii_digit()), "{n}");
            &n[at + prefix.len()..]
        })
        .collect();
    assert_eq!(
        names,
        [
            "000001-put-networkGroups.json",
            "000002-get-operations.json",
            "000003-get-networkGroups.json",
            "000004-post-commit.json",
            "000005-get-operationResults.json",
        ]
    );
    for (name, doc) in &files {
        let req = &doc["liveRequest"];
        let res = &doc["liveResponse"];
        let url = req["url"].as_str().unwrap();
        assert!(
            url.starts_with("https://management.azure.com/subscriptions/"),
            "{name}: {url}"
        );
        assert!(url.contains("api-version=2026-07-01"), "{name}: {url}");
        assert!(req["method"].is_string(), "{name}");
        assert_eq!(
            req["headers"]["authorization"], "Bearer <redacted>",
            "{name}"
        );
        assert!(
            res["statusCode"].is_string(),
            "{name}: statusCode must be a string"
        );
        assert!(res["headers"].is_object(), "{name}");
        assert!(
            !doc.to_string().contains(&base),
            "{name} names the simulator"
        );
    }
    let put = &files[0].1;
    assert_eq!(put["liveRequest"]["method"], "PUT");
    assert_eq!(put["liveRequest"]["body"], body);
    assert_eq!(
        put["liveRequest"]["headers"]["content-type"],
        "application/json"
    );
    assert_eq!(put["liveResponse"]["statusCode"], "201");
    assert_eq!(put["liveResponse"]["body"]["name"], "global-hubs");
    assert_eq!(
        put["liveResponse"]["headers"]["azure-asyncoperation"],
        format!("https://management.azure.com{op}?{NET}")
    );
    // GETs carry no body; an empty 204 has none either.
    assert!(files[1].1["liveRequest"].get("body").is_none());
    let done = &files[4].1["liveResponse"];
    assert_eq!(done["statusCode"], "204");
    assert!(done.get("body").is_none());
}

#[derive(Debug, Default)]
struct FakeEntra {
    scopes: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl TokenCredential for FakeEntra {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.scopes
            .lock()
            .unwrap()
            .extend(scopes.iter().map(|s| s.to_string()));
        Ok(AccessToken::new(
            TOKEN,
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
    }
}

#[tokio::test(start_paused = true)]
async fn azure_credentials_get_the_arm_scope_and_never_show_in_debug() {
    let mock = MockArm::start();
    let ng = format!("{NM}/networkGroups/global-hubs");
    mock.on("GET", &format!("{ng}?{NET}"))
        .reply(200, &[], json!({"name": "global-hubs"}));
    let entra = Arc::new(FakeEntra::default());
    let c = ArmClient::builder()
        .endpoint(mock.base())
        .credential(Credential::Azure(entra.clone()))
        .http_client(http())
        .build()
        .unwrap();
    assert_eq!(c.scope(), PUBLIC_SCOPE);
    c.get(&ng).await.unwrap().unwrap();
    assert_eq!(
        *entra.scopes.lock().unwrap(),
        vec![PUBLIC_SCOPE.to_string()]
    );
    assert_eq!(
        mock.seen()[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let debug = format!("{c:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    let st = ArmClient::builder()
        .endpoint(mock.base())
        .credential(Credential::static_token(TOKEN))
        .build()
        .unwrap();
    let debug = format!("{st:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(debug.contains("Static(<redacted>)"), "{debug}");
    mock.finish();
}

#[test]
fn sovereign_endpoints_get_their_own_scope() {
    let c = ArmClient::builder()
        .endpoint("https://management.usgovcloudapi.net")
        .credential(Credential::static_token(TOKEN))
        .build()
        .unwrap();
    assert_eq!(c.scope(), "https://management.usgovcloudapi.net/.default");
    assert_eq!(c.endpoint(), "https://management.usgovcloudapi.net");
}

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn no_token_in_trace_logs_or_errors() {
    let buf = Buf::default();
    let sink = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mock = MockArm::start();
    let ng = format!("{NM}/networkGroups/global-hubs");
    mock.on("GET", &format!("{ng}?{NET}"))
        .reply(429, &[("Retry-After", "1")], Value::Null);
    mock.on("GET", &format!("{ng}?{NET}")).reply(
        401,
        &[],
        json!({"error": {"code": "InvalidAuthenticationToken", "message": "The access token is invalid."}}),
    );
    let c = ArmClient::builder()
        .endpoint(mock.base())
        .credential(Credential::static_token(TOKEN))
        .http_client(http())
        .throttle(ThrottleConfig::disabled())
        .build()
        .unwrap();
    tracing::info!(client = ?c, "built");
    let e = c.get(&ng).await.unwrap_err();
    tracing::error!(error = %e, debug = ?e, "failed");
    assert_eq!(e.kind(), netstep::arm::ArmErrorKind::Auth);
    assert!(!format!("{e} {e:?}").contains(TOKEN));
    mock.finish();
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("retrying ARM request"), "{logs}");
    assert!(logs.contains("InvalidAuthenticationToken"), "{logs}");
    assert!(!logs.contains(TOKEN), "token leaked into the logs:\n{logs}");
}
