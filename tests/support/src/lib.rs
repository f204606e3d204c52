//! Test support shared by netstep's test suites.
//!
//! [`Azurite`] starts a REAL Azurite blob service (never a mock) on 127.0.0.1 with a free port
//! and in-memory persistence, waits until it listens, and kills it by PID when dropped.
//!
//! The `azurite-blob` executable is taken from the environment variable `NETSTEP_AZURITE`, or
//! else `<repo>/.tools/azurite/node_modules/.bin/azurite-blob` (what `.ci/install-azurite`
//! installs). If neither exists the test FAILS with a message saying to run
//! `.ci/install-azurite`; it never skips silently.
//!
//! Access uses an account SAS for the well-known `devstoreaccount1` key, computed here with
//! HMAC-SHA256, over plain HTTP, with the blob API version pinned to [`API_VERSION`].
//!
//! [`Azurite::start_oauth`] starts it over HTTPS (a throw-away CA and server certificate made
//! with the `openssl` command) with `--oauth basic`, for the Entra ID bearer-token path:
//! [`AzuriteToken`] is a `TokenCredential` minting the unsigned JWTs Azurite accepts, and
//! [`Azurite::transport`] an HTTP transport trusting the test CA.

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::Transport;
use azure_storage_blob::{
    BlobClient, BlobContainerClient, BlobContainerClientOptions, BlobServiceClientOptions,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::Url;

/// Environment variable naming the `azurite-blob` executable.
pub const AZURITE_ENV: &str = "NETSTEP_AZURITE";
/// Azurite's well-known development account.
pub const DEVSTORE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known (public) development account key.
pub const DEVSTORE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// Blob API version Azurite 3.35 accepts (the SDK default is newer); also the SAS `sv`.
pub const API_VERSION: &str = "2025-11-05";
/// How long to wait for Azurite to listen (cold start is ~1 s; CI machines can be slow).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// Finds the `azurite-blob` executable: `$NETSTEP_AZURITE`, else
/// `<repo>/.tools/azurite/node_modules/.bin/azurite-blob`.
pub fn azurite_binary() -> Result<PathBuf, String> {
    locate_azurite(std::env::var_os(AZURITE_ENV), &repo_root())
}

fn locate_azurite(env: Option<std::ffi::OsString>, repo: &Path) -> Result<PathBuf, String> {
    if let Some(p) = env.filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "{AZURITE_ENV}={} does not exist; unset it or run .ci/install-azurite",
                p.display()
            ))
        };
    }
    let default = repo.join(".tools/azurite/node_modules/.bin/azurite-blob");
    if default.is_file() {
        Ok(default)
    } else {
        Err(format!(
            "Azurite not found: {AZURITE_ENV} is not set and {} does not exist. Run \
             .ci/install-azurite (installs azurite@3.35.0 with npm into .tools/azurite) or set \
             {AZURITE_ENV} to an azurite-blob executable",
            default.display()
        ))
    }
}

/// Computes an account SAS query string (`sv=...&sig=...`, no leading `?`) for blob service,
/// container and object resources with permissions `rwdlacup`, valid for `valid_for`.
pub fn account_sas(account: &str, key_b64: &str, valid_for: Duration) -> String {
    let expiry = (OffsetDateTime::now_utc() + valid_for)
        .replace_nanosecond(0)
        .expect("zero nanoseconds")
        .format(&Rfc3339)
        .expect("RFC 3339 time");
    let (sp, ss, srt, spr) = ("rwdlacup", "b", "sco", "https,http");
    // String-to-sign for sv >= 2020-12-06: account, sp, ss, srt, st, se, sip, spr, sv, ses.
    let to_sign = format!("{account}\n{sp}\n{ss}\n{srt}\n\n{expiry}\n\n{spr}\n{API_VERSION}\n\n");
    let key = STANDARD.decode(key_b64).expect("account key is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(to_sign.as_bytes());
    let sig = STANDARD.encode(mac.finalize().into_bytes());
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sv", API_VERSION)
        .append_pair("ss", ss)
        .append_pair("srt", srt)
        .append_pair("sp", sp)
        .append_pair("se", &expiry)
        .append_pair("spr", spr)
        .append_pair("sig", &sig)
        .finish()
}

/// A running Azurite blob service, killed (by PID) when dropped.
pub struct Azurite {
    child: Child,
    port: u16,
    workdir: tempfile::TempDir,
    sas: String,
    /// PEM of the test CA when started with TLS.
    ca_pem: Option<Vec<u8>>,
}

/// A `TokenCredential` minting the unsigned JWTs that Azurite's `--oauth basic` accepts
/// (issuer `https://sts.windows.net/...`, valid `nbf`/`exp`). The audience is configurable so
/// tests can present a token for the wrong resource.
#[derive(Debug, Clone)]
pub struct AzuriteToken {
    audience: String,
}

impl AzuriteToken {
    /// A token for Azure Storage (`https://storage.azure.com`), which Azurite accepts.
    pub fn storage() -> Arc<dyn TokenCredential> {
        Arc::new(AzuriteToken {
            audience: "https://storage.azure.com".into(),
        })
    }
    /// A token for another audience, which Azurite rejects with 403.
    pub fn with_audience(audience: &str) -> Arc<dyn TokenCredential> {
        Arc::new(AzuriteToken {
            audience: audience.into(),
        })
    }
}

#[async_trait::async_trait]
impl TokenCredential for AzuriteToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"aud":"{}","iss":"https://sts.windows.net/00000000-0000-0000-0000-000000000000/","iat":{},"nbf":{},"exp":{}}}"#,
            self.audience,
            now - 60,
            now - 60,
            now + 3600
        ));
        Ok(AccessToken::new(
            format!("{header}.{payload}."),
            OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
    }
}

fn run_openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run openssl (needed for the HTTPS Azurite): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Makes `ca.pem` and a server certificate `server.pem`/`server.key` for 127.0.0.1/localhost.
fn make_certificates(dir: &Path) -> Result<Vec<u8>, String> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=netstep test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run_openssl(dir, &ca)?;
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run_openssl(dir, &csr)?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(|e| format!("cannot write server.ext: {e}"))?;
    run_openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    )?;
    std::fs::read(dir.join("ca.pem")).map_err(|e| format!("cannot read ca.pem: {e}"))
}

impl std::fmt::Debug for Azurite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Azurite")
            .field("pid", &self.child.id())
            .field("port", &self.port)
            .finish()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

fn read_file(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

impl Azurite {
    /// Starts Azurite, panicking with a clear message if it cannot (including when it is not
    /// installed: run `.ci/install-azurite`).
    pub fn start() -> Azurite {
        Self::start_with(&[]).unwrap_or_else(|e| panic!("cannot start Azurite: {e}"))
    }

    /// Starts Azurite over HTTPS with `--oauth basic` (bearer tokens accepted besides SAS);
    /// use [`Azurite::transport`] to trust its certificate and [`AzuriteToken`] as credential.
    pub fn start_oauth() -> Azurite {
        Self::start_inner(&["--oauth", "basic"], true)
            .unwrap_or_else(|e| panic!("cannot start Azurite (HTTPS, OAuth): {e}"))
    }

    /// Starts Azurite with extra command-line arguments (e.g. `--skipApiVersionCheck`).
    pub fn start_with(extra_args: &[&str]) -> Result<Azurite, String> {
        Self::start_inner(extra_args, false)
    }

    fn start_inner(extra_args: &[&str], tls: bool) -> Result<Azurite, String> {
        let bin = azurite_binary()?;
        let mut last_err = String::new();
        // A port picked free can be taken before Azurite binds it; retry a few times.
        for _ in 0..3 {
            match Self::try_start(&bin, extra_args, tls) {
                Ok(a) => return Ok(a),
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }

    fn try_start(bin: &Path, extra_args: &[&str], tls: bool) -> Result<Azurite, String> {
        let workdir = tempfile::Builder::new()
            .prefix("netstep-azurite-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary folder: {e}"))?;
        let ca_pem = if tls {
            Some(make_certificates(workdir.path())?)
        } else {
            None
        };
        let tls_args: &[&str] = if tls {
            &["--cert", "server.pem", "--key", "server.key"]
        } else {
            &[]
        };
        let port = free_port();
        let out = File::create(workdir.path().join("stdout.log"))
            .map_err(|e| format!("cannot create log file: {e}"))?;
        let err = File::create(workdir.path().join("stderr.log"))
            .map_err(|e| format!("cannot create log file: {e}"))?;
        let child = Command::new(bin)
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &port.to_string(),
                "--inMemoryPersistence",
                "--disableTelemetry",
            ])
            .args(tls_args)
            .args(extra_args)
            .current_dir(workdir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let mut az = Azurite {
            child,
            port,
            workdir,
            sas: account_sas(
                DEVSTORE_ACCOUNT,
                DEVSTORE_KEY,
                Duration::from_secs(24 * 3600),
            ),
            ca_pem,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = az.child.try_wait() {
                return Err(format!(
                    "{} exited with {status} before listening on {addr}:\n{}",
                    bin.display(),
                    az.logs()
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(az);
            }
            if start.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "{} did not listen on {addr} within {START_TIMEOUT:?}:\n{}",
                    bin.display(),
                    az.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // `az` is dropped (and the process killed) on every error path above.
    }

    /// Process id of the Azurite (node) process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The blob port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http(s)://127.0.0.1:PORT/devstoreaccount1` (no SAS).
    pub fn account_endpoint(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}/{DEVSTORE_ACCOUNT}", self.port)
    }

    /// `https://127.0.0.1:PORT/devstoreaccount1/CONTAINER` without SAS, for a token credential.
    pub fn container_url_without_sas(&self, container: &str) -> String {
        format!("{}/{container}", self.account_endpoint())
    }

    /// The test CA (PEM) when started with [`Azurite::start_oauth`].
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }

    /// An HTTP transport trusting the test CA (HTTPS Azurite), with automatic decompression
    /// off as the storage SDK expects. `None` for plain-HTTP Azurite.
    pub fn transport(&self) -> Option<Transport> {
        let pem = self.ca_pem.as_deref()?;
        let cert = reqwest::Certificate::from_pem(pem).expect("test CA is PEM");
        let client = reqwest::Client::builder()
            .add_root_certificate(cert)
            .no_gzip()
            .no_deflate()
            .build()
            .expect("reqwest client");
        Some(Transport::new(Arc::new(client)))
    }

    /// The account SAS query string (no leading `?`).
    pub fn sas(&self) -> &str {
        &self.sas
    }

    /// `http://127.0.0.1:PORT/devstoreaccount1/CONTAINER?<SAS>`: what `StateStore::open` takes.
    pub fn container_url(&self, container: &str) -> String {
        format!("{}/{container}?{}", self.account_endpoint(), self.sas)
    }

    /// What Azurite printed so far (stdout and stderr).
    pub fn logs(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            read_file(&self.workdir.path().join("stdout.log")),
            read_file(&self.workdir.path().join("stderr.log"))
        )
    }

    /// A raw SDK client for `container` (SAS auth, pinned API version): for tests that need to
    /// manipulate blobs behind the state store's back.
    pub fn container_client(&self, container: &str) -> BlobContainerClient {
        let url = Url::parse(&self.container_url(container)).expect("container URL");
        let mut options = BlobContainerClientOptions {
            version: API_VERSION.to_owned(),
            ..Default::default()
        };
        options.client_options.transport = self.transport();
        BlobContainerClient::new(url, None, Some(options)).expect("container client")
    }

    /// A raw SDK client for one blob.
    pub fn blob_client(&self, container: &str, blob: &str) -> BlobClient {
        self.container_client(container).blob_client(blob)
    }

    /// Creates `container` and returns [`Azurite::container_url`] for it.
    pub async fn create_container(&self, container: &str) -> String {
        self.container_client(container)
            .create(None)
            .await
            .unwrap_or_else(|e| {
                panic!("cannot create container {container}: {e}\n{}", self.logs())
            });
        self.container_url(container)
    }

    /// Options for a raw `BlobServiceClient`, pinned to [`API_VERSION`].
    pub fn service_client_options() -> BlobServiceClientOptions {
        BlobServiceClientOptions {
            version: API_VERSION.to_owned(),
            ..Default::default()
        }
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        // Kill exactly the process we started, by its PID, and reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_azurite_is_an_error_naming_the_install_script() {
        let empty = tempfile::tempdir().unwrap();
        let e = locate_azurite(None, empty.path()).unwrap_err();
        assert!(e.contains(".ci/install-azurite"), "{e}");
        let e = locate_azurite(Some("/nonexistent/azurite-blob".into()), empty.path()).unwrap_err();
        assert!(
            e.contains(".ci/install-azurite") && e.contains(AZURITE_ENV),
            "{e}"
        );
        let bin = empty.path().join(".tools/azurite/node_modules/.bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("azurite-blob"), "").unwrap();
        assert_eq!(
            locate_azurite(Some("".into()), empty.path()).unwrap(),
            bin.join("azurite-blob")
        );
    }

    #[test]
    fn sas_has_expected_fields() {
        let q = account_sas(DEVSTORE_ACCOUNT, DEVSTORE_KEY, Duration::from_secs(60));
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect();
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["sv", "ss", "srt", "sp", "se", "spr", "sig"]);
        let sig = &pairs[6].1;
        assert_eq!(STANDARD.decode(sig).unwrap().len(), 32);
    }
}
