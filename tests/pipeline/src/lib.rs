//! The end-to-end harness: the real step binaries (built from this workspace) against armsim
//! (in-process, seeded with a world file) and a state store (a real Azurite, or a folder).
//!
//! ```ignore
//! let env = Env::start(EnvOptions::globojava()).await;
//! let out = env.step("tag-groups").intent(&env.globojava_intent()).run_key("r1").apply().run().await;
//! assert_eq!(out.code, 0, "{}", out.stderr);
//! let stats = env.stats().await; // armsim's /_sim/stats
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

pub use armsim;
pub use netstep_testsupport::{Azurite, repo_root};

/// The step binaries, in pipeline order.
pub const STEPS: [&str; 7] = [
    "vnets",
    "tag-groups",
    "mesh-connect",
    "admin-rules",
    "dns-link",
    "fw-policy",
    "verify",
];

/// The bearer token the steps send to armsim (any token is accepted; a distinctive one lets
/// tests grep logs for leaks).
pub const TEST_TOKEN: &str = "netstep-test-token-7f3a9c";

/// The Azurite container holding the state.
pub const STATE_CONTAINER: &str = "netstep-state";

/// Builds every binary of the workspace once per test process (cargo is already holding no
/// lock while tests run), so end-to-end tests never run stale binaries.
pub fn build_binaries() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--workspace", "--bins", "--quiet"])
            .current_dir(repo_root())
            .status()
            .expect("running cargo build for the step binaries");
        assert!(status.success(), "cargo build --workspace --bins failed");
    });
}

/// Path of a workspace binary (built by [`build_binaries`]).
pub fn bin(name: &str) -> PathBuf {
    build_binaries();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let p = target.join("debug").join(name);
    assert!(p.exists(), "binary {} not found", p.display());
    p
}

/// How to start an [`Env`].
#[derive(Debug, Clone)]
pub struct EnvOptions {
    /// World file for armsim (relative to the repo root).
    pub world: PathBuf,
    /// Use a real Azurite for state (else a temporary folder, `file://`).
    pub azurite: bool,
    /// armsim settings (world is filled from `world`).
    pub sim: armsim::Config,
}

impl EnvOptions {
    /// GloboJava's estate before netstep runs, state in Azurite, fast simulated delays.
    pub fn globojava() -> Self {
        EnvOptions {
            world: "examples/globojava/world.json".into(),
            azurite: true,
            sim: armsim::Config {
                policy_delay: Duration::from_millis(150),
                deploy_delay: Duration::from_millis(200),
                lro_delay: Duration::from_millis(50),
                ..armsim::Config::default()
            },
        }
    }

    /// Same, with the state in a temporary folder instead of Azurite.
    pub fn file_state(mut self) -> Self {
        self.azurite = false;
        self
    }
}

/// A running test environment: armsim + a state store + a scratch folder.
pub struct Env {
    /// The simulator.
    pub sim: armsim::Handle,
    /// The state store URL given to the steps.
    pub state: String,
    /// Scratch folder (outputs, recordings).
    pub dir: tempfile::TempDir,
    azurite: Option<Azurite>,
    http: reqwest::Client,
}

impl Env {
    /// Starts armsim with the world and the state store.
    pub async fn start(opts: EnvOptions) -> Env {
        build_binaries();
        let world = armsim::read_world(&repo_root().join(&opts.world)).expect("world file");
        let sim = armsim::start(armsim::Config {
            world: Some(world),
            ..opts.sim
        })
        .await
        .expect("armsim starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let (state, azurite) = if opts.azurite {
            let az = tokio::task::spawn_blocking(Azurite::start)
                .await
                .expect("azurite");
            let url = az.create_container(STATE_CONTAINER).await;
            (url, Some(az))
        } else {
            let p = dir.path().join("state");
            std::fs::create_dir_all(&p).expect("state dir");
            (format!("file://{}", p.display()), None)
        };
        Env {
            sim,
            state,
            dir,
            azurite,
            http: reqwest::Client::new(),
        }
    }

    /// The Azurite instance, when the state lives there.
    pub fn azurite(&self) -> Option<&Azurite> {
        self.azurite.as_ref()
    }

    /// The names of every document in the state store (blobs, or files below the folder),
    /// sorted: snapshots, records and lease blobs.
    pub async fn state_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        match &self.azurite {
            Some(az) => {
                use futures::TryStreamExt;
                let mut pager = az
                    .container_client(STATE_CONTAINER)
                    .list_blobs(None)
                    .expect("list blobs");
                while let Some(item) = pager.try_next().await.expect("list blobs page") {
                    names.extend(item.name);
                }
            }
            None => {
                let root = self.dir.path().join("state");
                let mut stack = vec![root.clone()];
                while let Some(d) = stack.pop() {
                    for e in std::fs::read_dir(&d).expect("state dir").flatten() {
                        let p = e.path();
                        if p.is_dir() {
                            stack.push(p);
                        } else {
                            let rel = p.strip_prefix(&root).expect("below the root");
                            names.push(rel.to_string_lossy().into_owned());
                        }
                    }
                }
            }
        }
        names.sort();
        names
    }

    /// Reads a state document behind the store's back (`None` when absent).
    pub async fn state_read(&self, name: &str) -> Option<Vec<u8>> {
        match &self.azurite {
            Some(az) => {
                let r = az
                    .blob_client(STATE_CONTAINER, name)
                    .download(None)
                    .await
                    .ok()?;
                Some(r.body.collect().await.expect("blob body").to_vec())
            }
            None => std::fs::read(self.dir.path().join("state").join(name)).ok(),
        }
    }

    /// Writes (or, with `None`, deletes) a state document behind the store's back, as an
    /// attacker or a corrupting disk would.
    pub async fn state_write(&self, name: &str, bytes: Option<Vec<u8>>) {
        match (&self.azurite, bytes) {
            (Some(az), Some(b)) => {
                az.blob_client(STATE_CONTAINER, name)
                    .upload(azure_core::http::RequestContent::from(b), None)
                    .await
                    .expect("upload blob");
            }
            (Some(az), None) => {
                az.blob_client(STATE_CONTAINER, name)
                    .delete(None)
                    .await
                    .expect("delete blob");
            }
            (None, Some(b)) => {
                let p = self.dir.path().join("state").join(name);
                std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                std::fs::write(p, b).expect("write state file");
            }
            (None, None) => {
                std::fs::remove_file(self.dir.path().join("state").join(name))
                    .expect("remove state file");
            }
        }
    }

    /// The GloboJava example intent.
    pub fn globojava_intent(&self) -> PathBuf {
        repo_root().join("examples/globojava/intent.yaml")
    }

    /// A command for one step binary, wired to armsim and the state store.
    pub fn step(&self, name: &str) -> StepCmd {
        StepCmd {
            bin: bin(name),
            args: vec![format!("--state={}", self.state)],
            env: vec![
                ("NETSTEP_ARM_ENDPOINT".into(), self.sim.url.clone()),
                ("NETSTEP_ARM_TOKEN".into(), TEST_TOKEN.into()),
                ("NETSTEP_LRO_POLL_MS".into(), "50".into()),
                ("NETSTEP_DEPLOY_POLL_MS".into(), "100".into()),
                ("NETSTEP_POLICY_POLL_MS".into(), "100".into()),
            ],
            outputs: self.dir.path().join(format!("outputs-{name}-{}", unique())),
            launcher: Vec::new(),
        }
    }

    /// `GET /_sim/<path>` as JSON.
    pub async fn sim_get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}/_sim/{path}", self.sim.url))
            .send()
            .await
            .expect("sim get");
        r.json().await.expect("sim json")
    }

    /// `POST /_sim/<path>` with a JSON body; returns the status and the JSON answer (or null).
    pub async fn sim_post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/_sim/{path}", self.sim.url))
            .json(body)
            .send()
            .await
            .expect("sim post");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// armsim's counters (`reads`, `writes`, `deletes`, `polls`, `by_operation`, ...).
    pub async fn stats(&self) -> Value {
        self.sim_get("stats").await
    }

    /// The paths of the ARM requests armsim logged with `method`, in order.
    pub async fn logged_paths(&self, method: &str) -> Vec<String> {
        let log = self.sim_get("log").await;
        log.as_array()
            .expect("armsim log is an array")
            .iter()
            .filter(|e| e["method"] == method)
            .filter_map(|e| e["path"].as_str().map(str::to_string))
            .collect()
    }

    /// Resets armsim's counters and request log (not the world).
    pub async fn reset_stats(&self) {
        let r = self
            .http
            .post(format!("{}/_sim/reset", self.sim.url))
            .send()
            .await
            .expect("reset");
        assert!(r.status().is_success());
    }

    /// Runs the steps in pipeline order with the same run key; panics on the first failure.
    pub async fn run_pipeline(&self, intent: &Path, run_key: &str, mode: &str) -> Vec<StepOutput> {
        let mut outs = Vec::new();
        for s in STEPS {
            let out = self
                .step(s)
                .intent(intent)
                .run_key(run_key)
                .mode(mode)
                .run()
                .await;
            assert_eq!(
                out.code, 0,
                "{s} failed (exit {}):\n{}",
                out.code, out.stderr
            );
            outs.push(out);
        }
        outs
    }
}

/// armsim's resource inventory: every resource id (lower-cased) with its ARM type.
pub async fn inventory(env: &Env) -> BTreeMap<String, String> {
    env.sim_get("inventory")
        .await
        .as_array()
        .expect("armsim inventory is an array")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_ascii_lowercase(),
                r["type"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Copies a folder tree (a file state store), replacing `to`.
pub fn copy_tree(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).expect("create copy");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            copy_tree(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).expect("copy file");
        }
    }
}

/// The write operations in armsim's counters, by operation: PUT/PATCH/DELETE and AVNM commits
/// (POST list* are reads that ARM bills against the writes budget; they are not writes).
pub fn write_ops(stats: &Value) -> Vec<(String, u64)> {
    stats["by_operation"]
        .as_object()
        .expect("armsim stats have by_operation")
        .iter()
        .filter(|(k, _)| {
            k.starts_with("PUT ")
                || k.starts_with("PATCH ")
                || k.starts_with("DELETE ")
                || *k == "POST commit"
        })
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A step invocation being built.
#[derive(Debug, Clone)]
pub struct StepCmd {
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    outputs: PathBuf,
    launcher: Vec<String>,
}

impl StepCmd {
    /// Adds a raw argument.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }
    /// `--intent PATH`.
    pub fn intent(self, p: &Path) -> Self {
        let a = format!("--intent={}", p.display());
        self.arg(a)
    }
    /// `--state URL`, replacing the environment's store.
    pub fn state(mut self, url: &str) -> Self {
        self.args.retain(|a| !a.starts_with("--state="));
        self.arg(format!("--state={url}"))
    }
    /// `--run-key KEY`.
    pub fn run_key(self, k: &str) -> Self {
        self.arg(format!("--run-key={k}"))
    }
    /// `--mode MODE`.
    pub fn mode(self, m: &str) -> Self {
        self.arg(format!("--mode={m}"))
    }
    /// `--mode apply`.
    pub fn apply(self) -> Self {
        self.mode("apply")
    }
    /// Sets an environment variable for the process.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.into(), v.into()));
        self
    }
    /// Runs the binary through a launcher command that execs it (e.g. `timeout -s KILL 20
    /// prlimit --as=N --`): the step's path and arguments are appended to `launcher`.
    pub fn launcher<S: Into<String>>(mut self, launcher: impl IntoIterator<Item = S>) -> Self {
        self.launcher = launcher.into_iter().map(Into::into).collect();
        self
    }
    fn command(&self, program: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.env_remove("RUST_LOG")
            .env("NETSTEP_LOG_FORMAT", "pretty")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs the binary to completion.
    pub async fn run(self) -> StepOutput {
        self.spawn().wait().await
    }

    /// Starts the binary without waiting (stdout and stderr captured): for tests that run
    /// several steps at once or kill one.
    pub fn spawn(self) -> RunningStep {
        let mut cmd = match self.launcher.split_first() {
            None => self.command(&self.bin),
            Some((prog, rest)) => {
                let mut c = self.command(Path::new(prog));
                c.args(rest).arg(&self.bin);
                c
            }
        };
        cmd.args(&self.args)
            .arg(format!("--outputs-dir={}", self.outputs.display()));
        let child = cmd.spawn().expect("spawn step");
        RunningStep {
            pid: child.id().expect("a just-spawned child has a pid"),
            child,
            outputs: self.outputs,
        }
    }

    /// Runs the binary with armsim's kill hook armed on it: armsim SIGKILLs the process
    /// right after answering the `after_request`-th ARM request counted from now (the test
    /// resets armsim's counter first). The process is started stopped (a shell that stops
    /// itself, then `exec`s the step under the same PID), so the hook is in place before its
    /// first request.
    pub async fn run_killed_after(self, env: &Env, after_request: u64) -> StepOutput {
        let mut cmd = self.command(Path::new("sh"));
        cmd.arg("-c")
            .arg("kill -STOP $$ && exec \"$0\" \"$@\"")
            .arg(&self.bin)
            .args(&self.args)
            .arg(format!("--outputs-dir={}", self.outputs.display()));
        let child = cmd.spawn().expect("spawn step");
        let pid = child.id().expect("a running child has a PID");
        // Wait until the shell has stopped itself.
        let stat = format!("/proc/{pid}/stat");
        for _ in 0..2000 {
            let st = std::fs::read_to_string(&stat).unwrap_or_default();
            if st
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let so_far = env.stats().await["requests"].as_u64().unwrap_or(0);
        let (status, body) = env
            .sim_post(
                "hooks",
                &serde_json::json!({"after_request": so_far + after_request, "kill_pid": pid}),
            )
            .await;
        assert_eq!(status, 200, "armsim hook: {body}");
        let cont = std::process::Command::new("kill")
            .args(["-CONT", &pid.to_string()])
            .status()
            .expect("kill -CONT");
        assert!(cont.success(), "kill -CONT {pid}");
        let out = child.wait_with_output().await.expect("wait for step");
        // A hook that did not fire (the step made fewer requests) must not hit a later
        // process that reuses the PID.
        let r = env
            .http
            .delete(format!("{}/_sim/hooks", env.sim.url))
            .send()
            .await
            .expect("DELETE /_sim/hooks");
        assert!(r.status().is_success(), "DELETE /_sim/hooks");
        collect_output(&self.outputs, out)
    }
}

/// A step process started by [`StepCmd::spawn`]. Killed if dropped before [`RunningStep::wait`].
#[derive(Debug)]
pub struct RunningStep {
    child: tokio::process::Child,
    pid: u32,
    outputs: PathBuf,
}

impl RunningStep {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends SIGKILL to this process (only this one, by its pid).
    pub fn kill(&mut self) {
        self.child.start_kill().expect("SIGKILL the step");
    }

    /// Waits for the process and collects what it produced.
    pub async fn wait(self) -> StepOutput {
        let out = self.child.wait_with_output().await.expect("wait for step");
        collect_output(&self.outputs, out)
    }
}

/// Exit code, stdout, stderr and the Argo output files of a finished step.
fn collect_output(outputs_dir: &Path, out: std::process::Output) -> StepOutput {
    let mut outputs = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(outputs_dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                outputs.insert(name, std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    StepOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        outputs,
    }
}

/// What a step run produced.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output (plans, reports).
    pub stdout: String,
    /// Standard error (logs).
    pub stderr: String,
    /// The Argo output files, by name.
    pub outputs: BTreeMap<String, String>,
}

/// What `check-traffic` said about a folder of recorded exchanges.
#[derive(Debug, Clone)]
pub struct TrafficCheck {
    /// Exchanges recorded.
    pub recorded: usize,
    /// The `N passed, N failed` line.
    pub summary: String,
    /// Operation ids seen, with counts (`  Op_Id: n` lines).
    pub operations: Vec<String>,
    /// Exchanges oav cannot attribute (privatedns.json path ambiguity), checked here instead.
    pub set_aside: usize,
}

/// Path of `shared/` (NETSTEP_SHARED, else `<repo>/../shared`).
pub fn shared_dir() -> PathBuf {
    std::env::var_os("NETSTEP_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared"))
}

/// Runs Microsoft's validator (`shared/azure-specs/check-traffic`) over every exchange recorded
/// under `dir` (recursively) and panics unless it reports 0 failures.
///
/// oav cannot tell `privateDnsZones/{z}/virtualNetworkLinks[/{l}]` and `.../ALL` apart from the
/// record-set templates `{recordType}[/{name}]` (MULTIPLE_OPERATIONS_FOUND, an ambiguity of
/// privatedns.json): those exchanges are moved aside and their request bodies checked against
/// the spec's `VirtualNetworkLink` members here.
pub async fn check_traffic(dir: &Path) -> TrafficCheck {
    let flat = dir.with_extension("flat");
    let aside = dir.with_extension("oav-ambiguous");
    for d in [&flat, &aside] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).expect("traffic dirs");
    }
    let mut recorded = 0;
    let mut set_aside = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read traffic dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            recorded += 1;
            let doc: Value = serde_json::from_slice(&std::fs::read(&p).expect("read"))
                .expect("exchange is JSON");
            let url = doc["liveRequest"]["url"].as_str().unwrap_or_default();
            assert!(
                url.starts_with("https://management.azure.com/"),
                "recorded URL host: {url}"
            );
            let path = url.split('?').next().unwrap_or_default();
            let name = format!("{}-{}", unique(), p.file_name().unwrap().to_string_lossy());
            let ambiguous = (path.contains("/virtualNetworkLinks") || path.ends_with("/ALL"))
                && !path.contains("privateDnsOperation");
            if ambiguous {
                if let Some(body) = doc["liveRequest"].get("body").filter(|b| b.is_object()) {
                    for k in body.as_object().unwrap().keys() {
                        assert!(
                            ["location", "tags", "etag", "properties"].contains(&k.as_str()),
                            "link body member {k}: {doc}"
                        );
                    }
                    if let Some(props) = body.get("properties").and_then(Value::as_object) {
                        for k in props.keys() {
                            assert!(
                                ["virtualNetwork", "registrationEnabled", "resolutionPolicy"]
                                    .contains(&k.as_str()),
                                "link property {k}: {doc}"
                            );
                        }
                    }
                }
                std::fs::copy(&p, aside.join(&name)).expect("copy");
                set_aside += 1;
            } else {
                std::fs::copy(&p, flat.join(&name)).expect("copy");
            }
        }
    }
    assert!(recorded > 0, "no traffic recorded under {}", dir.display());
    let checker = shared_dir().join("azure-specs/check-traffic");
    assert!(
        checker.exists(),
        "check-traffic not found at {} (set NETSTEP_SHARED)",
        checker.display()
    );
    let out = tokio::time::timeout(
        Duration::from_secs(1200),
        tokio::process::Command::new(&checker).arg(&flat).output(),
    )
    .await
    .expect("check-traffic timed out")
    .expect("run check-traffic");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains(" passed, "))
        .unwrap_or("")
        .to_string();
    let operations = stdout
        .lines()
        .skip_while(|l| !l.starts_with("operations seen:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.trim().to_string())
        .collect();
    assert!(
        out.status.success() && summary.ends_with(" 0 failed"),
        "check-traffic failed ({summary}):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    TrafficCheck {
        recorded,
        summary,
        operations,
        set_aside,
    }
}
