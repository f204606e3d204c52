//! The local runner end to end: `netstep-run` executes the two pipeline WorkflowTemplates
//! (workflows/pipeline-infra.yaml, workflows/pipeline-fw-policy.yaml) from the same YAML Argo
//! runs, with the real step binaries as processes, on the GloboJava intent, with the state in
//! a local folder — the parameters of scripts/demo.
//!
//! - with `--simulate` (the runner starts its own armsim): both pipelines succeed, every task
//!   Succeeded, verify reports no drift;
//! - against one armsim shared by two runs (started here, passed as `arm-endpoint`): the second
//!   run makes no write at all;
//! - a transient 503 storm that exhausts a step's own ARM retries makes the step exit 75; the
//!   template's retryStrategy runs it again and the pipeline succeeds;
//! - a step SIGKILLed mid-run (fw-policy, holding the network lease, its first firewall policy
//!   write in flight) fails the pipeline and is not retried (exit 137 is neither 75 nor a pod
//!   Error); the exit handler breaks the dead step's lease; the same run key then converges.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use netstep::arm::RetryPolicy;
use netstep::state::{StateStore, Status};
use pipeline_tests::{Env, EnvOptions, bin, repo_root, write_ops as writes};
use serde_json::{Value, json};

const INFRA: &str = "workflows/pipeline-infra.yaml";
const FW_POLICY: &str = "workflows/pipeline-fw-policy.yaml";

/// Tasks (and the exit handler) each pipeline runs in apply mode.
const INFRA_NODES: [&str; 8] = [
    "snapshot",
    "vnets",
    "tag-groups",
    "mesh-connect",
    "admin-rules",
    "dns-link",
    "verify",
    "onExit.record-outcome",
];
const FW_POLICY_NODES: [&str; 4] = ["snapshot", "fw-policy", "verify", "onExit.record-outcome"];

/// A run that has not finished after this long is hung: fail instead of blocking CI forever.
/// A safety net, not a timing assertion (a run takes seconds).
const HUNG: Duration = Duration::from_secs(300);

/// Where the steps' ARM requests go.
#[derive(Clone, Copy)]
enum Arm<'a> {
    /// `--simulate`: the runner starts a fresh armsim for this run.
    Simulate,
    /// An armsim started by the test, shared across runs.
    Endpoint(&'a str),
}

/// One `netstep-run run` invocation.
struct Invocation<'a> {
    pipeline: &'a str,
    state: &'a str,
    run_key: &'a str,
    arm: Arm<'a>,
    /// `--backoff-scale` (the templates' retry backoff is 30 s).
    backoff_scale: Option<f64>,
    /// Scratch folder: the run's workdir, report and output files go below it.
    dir: &'a Path,
}

/// A started run: the child process and where its report and output go.
struct Started {
    child: tokio::process::Child,
    workdir: PathBuf,
    report: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
    started: Instant,
}

/// A finished run.
struct Finished {
    code: i32,
    stdout: String,
    stderr: String,
    report: Value,
    workdir: PathBuf,
    elapsed: Duration,
}

impl Invocation<'_> {
    fn start(&self) -> Started {
        let name = format!(
            "{}-{}",
            self.run_key,
            Path::new(self.pipeline)
                .file_stem()
                .unwrap()
                .to_string_lossy()
        );
        let mut n = 0;
        let base = loop {
            let b = self.dir.join(format!("{name}-{n}"));
            if !b.exists() {
                break b;
            }
            n += 1;
        };
        std::fs::create_dir_all(&base).expect("run dir");
        let (workdir, report) = (base.join("work"), base.join("report.json"));
        let (stdout, stderr) = (base.join("stdout"), base.join("stderr"));
        let mut cmd = tokio::process::Command::new(bin("netstep-run"));
        cmd.current_dir(repo_root())
            .args(["run", "--pipeline", self.pipeline])
            .args(["-p", "revision=local", "-p", "mode=apply"])
            .args(["-p", "intent-path=examples/globojava/intent.yaml"])
            .arg("-p")
            .arg(format!("state={}", self.state))
            .arg("-p")
            .arg(format!("run-key={}", self.run_key))
            .args(["-p", "log-format=pretty", "--no-step-logs"])
            .arg("--bin-dir")
            .arg(bin("netstep-run").parent().unwrap())
            .arg("--workdir")
            .arg(&workdir)
            .arg("--report-json")
            .arg(&report)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            // Files, not pipes: nobody reads while the test polls, and a full pipe would
            // block the runner.
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .kill_on_drop(true);
        match self.arm {
            Arm::Simulate => {
                cmd.arg("--simulate");
            }
            Arm::Endpoint(url) => {
                // What --simulate sets for the steps, pointed at the test's armsim.
                cmd.arg("-p")
                    .arg(format!("arm-endpoint={url}"))
                    .env("NETSTEP_ARM_TOKEN", "x")
                    .env("NETSTEP_LRO_POLL_MS", "50")
                    .env("NETSTEP_DEPLOY_POLL_MS", "100")
                    .env("NETSTEP_POLICY_POLL_MS", "100");
            }
        }
        if let Some(s) = self.backoff_scale {
            cmd.arg(format!("--backoff-scale={s}"));
        }
        let child = cmd.spawn().expect("spawn netstep-run");
        Started {
            child,
            workdir,
            report,
            stdout,
            stderr,
            started: Instant::now(),
        }
    }

    async fn run(&self) -> Finished {
        self.start().finish().await
    }
}

impl Started {
    fn pid(&self) -> u32 {
        self.child
            .id()
            .expect("netstep-run has a PID while running")
    }

    /// The run's exit status once it ended, without waiting.
    fn try_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    async fn finish(mut self) -> Finished {
        let status = match tokio::time::timeout(HUNG, self.child.wait()).await {
            Ok(s) => s.expect("wait for netstep-run"),
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                panic!(
                    "netstep-run still running after {}s:\n{}",
                    HUNG.as_secs(),
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
        };
        let elapsed = self.started.elapsed();
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let report = std::fs::read(&self.report)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| panic!("no report JSON at {}:\n{stderr}", self.report.display()));
        Finished {
            code: status.code().unwrap_or(-1),
            stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr,
            report,
            workdir: self.workdir,
            elapsed,
        }
    }
}

impl Finished {
    /// The report row of a task (or `onExit`).
    fn node(&self, name: &str) -> &Value {
        self.report["nodes"]
            .as_array()
            .and_then(|ns| ns.iter().find(|n| n["name"] == name))
            .unwrap_or_else(|| panic!("no node {name}:\n{}", self.explain()))
    }

    fn node_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.report["nodes"]
            .as_array()
            .map(|ns| {
                ns.iter()
                    .map(|n| n["name"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// An output parameter file a task wrote (its pod's /tmp is `<workdir>/<task>/tmp`).
    fn output(&self, task: &str, name: &str) -> Option<String> {
        std::fs::read_to_string(self.workdir.join(task).join("tmp/outputs").join(name))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// The runner's progress lines and summary, then the log tail of every node that did not
    /// succeed (the step logs are under the workdir; the runner does not forward them).
    fn explain(&self) -> String {
        let mut s = format!(
            "exit {}\n--- netstep-run stderr ---\n{}\n--- stdout ---\n{}",
            self.code, self.stderr, self.stdout
        );
        for n in self.report["nodes"].as_array().into_iter().flatten() {
            if n["phase"] == "Succeeded" {
                continue;
            }
            let name = n["name"].as_str().unwrap_or_default();
            let logs = self.workdir.join(name).join("logs");
            let Ok(rd) = std::fs::read_dir(&logs) else {
                continue;
            };
            let mut files: Vec<_> = rd.flatten().map(|e| e.path()).collect();
            files.sort();
            for f in files {
                let text = std::fs::read_to_string(&f).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(40)..];
                s.push_str(&format!("\n--- {} ---\n{}", f.display(), tail.join("\n")));
            }
        }
        s
    }

    /// Asserts: exit 0, exactly the expected nodes, all Succeeded, the printed summary says
    /// so row by row, and verify's `drift` output is `false`.
    fn assert_succeeded(&self, expected_nodes: &[&str]) {
        assert_eq!(self.code, 0, "{}", self.explain());
        assert_eq!(self.report["phase"], "Succeeded", "{}", self.explain());
        let mut want: Vec<String> = expected_nodes.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(self.node_names(), want, "{}", self.explain());
        for n in expected_nodes {
            let node = self.node(n);
            assert_eq!(node["phase"], "Succeeded", "{n}: {}", self.explain());
            assert_eq!(node["exitCode"], 0, "{n}: {}", self.explain());
            // The summary table printed on stderr: `TASK  STATUS  ATTEMPTS ...`.
            assert!(
                self.stderr.lines().any(|l| {
                    let mut cols = l.split_whitespace();
                    cols.next() == Some(n) && cols.next() == Some("Succeeded")
                }),
                "summary row `{n} Succeeded` missing:\n{}",
                self.stderr
            );
        }
        let pipeline = self.report["pipeline"].as_str().unwrap_or_default();
        assert!(
            self.stderr
                .lines()
                .any(|l| l.starts_with("workflow ") && l.contains("): Succeeded in ")),
            "no `workflow ... Succeeded` line for {pipeline}:\n{}",
            self.stderr
        );
        assert_eq!(
            self.output("verify", "drift").as_deref(),
            Some("false"),
            "verify's drift output: {}",
            self.explain()
        );
    }

    fn attempts(&self, name: &str) -> u64 {
        self.node(name)["attempts"].as_u64().unwrap_or(0)
    }
}

fn op_count(stats: &Value, op: &str) -> u64 {
    stats["by_operation"][op].as_u64().unwrap_or(0)
}

/// GloboJava's estate in an armsim run by this test (fast simulated delays), state in a folder.
async fn env() -> Env {
    Env::start(EnvOptions::globojava().file_state()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_runs_both_pipelines_on_globojava() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    let state = format!("file://{}", state_dir.display());
    for (pipeline, key, nodes) in [
        (INFRA, "sim-infra", &INFRA_NODES[..]),
        (FW_POLICY, "sim-fw-policy", &FW_POLICY_NODES[..]),
    ] {
        let run = Invocation {
            pipeline,
            state: &state,
            run_key: key,
            arm: Arm::Simulate,
            backoff_scale: None,
            dir: dir.path(),
        }
        .run()
        .await;
        run.assert_succeeded(nodes);
        assert!(
            run.stderr.contains("armsim started at http://127.0.0.1:"),
            "--simulate starts its own armsim:\n{}",
            run.stderr
        );
        // The state folder holds this run's records.
        for task in nodes
            .iter()
            .filter(|n| !["snapshot", "onExit.record-outcome"].contains(n))
        {
            let rec = state_dir.join(format!("runs/{key}/{task}.json"));
            assert!(rec.is_file(), "record {} missing", rec.display());
        }
        println!(
            "{pipeline} --simulate: {:.1}s wall, workflow {:.1}s",
            run.elapsed.as_secs_f64(),
            run.report["durationSeconds"].as_f64().unwrap_or(0.0)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_run_against_the_same_armsim_makes_no_writes() {
    let env = env().await;
    let url = env.sim.url.clone();
    let dir = env.dir.path().join("runs");
    let mut first = Vec::new();
    for round in 1..=2 {
        for (pipeline, key, nodes) in [
            (INFRA, "rr-infra", &INFRA_NODES[..]),
            (FW_POLICY, "rr-fw-policy", &FW_POLICY_NODES[..]),
        ] {
            let run = Invocation {
                pipeline,
                state: &env.state,
                run_key: key,
                arm: Arm::Endpoint(&url),
                backoff_scale: None,
                dir: &dir,
            }
            .run()
            .await;
            run.assert_succeeded(nodes);
            println!(
                "round {round} {pipeline}: {:.1}s",
                run.report["durationSeconds"].as_f64().unwrap_or(0.0)
            );
        }
        let stats = env.stats().await;
        println!(
            "round {round}: requests={} reads={} writes={} polls={}; write ops {:?}",
            stats["requests"],
            stats["reads"],
            stats["writes"],
            stats["polls"],
            writes(&stats)
        );
        if round == 1 {
            first = writes(&stats);
            assert!(
                !first.is_empty(),
                "the first run converged the estate, so it wrote: {stats}"
            );
            env.reset_stats().await;
        } else {
            assert!(
                stats["requests"].as_u64().unwrap_or(0) > 0,
                "the second run read ARM: {stats}"
            );
            assert_eq!(
                writes(&stats),
                vec![],
                "the second run (same intent, same run keys) must not write; first run wrote {first:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_503_storm_is_retried_by_the_retry_strategy() {
    let env = env().await;
    let url = env.sim.url.clone();
    // Every attempt of the hub mesh PUT answers 503 until the ARM client's whole budget for
    // that one request is spent (RetryPolicy::default().max_attempts). With Retry-After: 0 its
    // retries take no time; it then gives up and the step exits 75 (transient).
    let storm = u64::from(RetryPolicy::default().max_attempts);
    let (status, body) = env
        .sim_post(
            "faults",
            &json!({
                "match": {"op": "PUT connectivityConfigurations", "path_contains": "/cc-hub-mesh"},
                "kind": "503",
                "count": storm,
                "retry_after_s": 0,
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let run = Invocation {
        pipeline: INFRA,
        state: &env.state,
        run_key: "storm-infra",
        arm: Arm::Endpoint(&url),
        // The templates back off 30 s, doubling: 0.3 s here.
        backoff_scale: Some(0.01),
        dir: &env.dir.path().join("runs"),
    }
    .run()
    .await;
    let stats = env.stats().await;
    assert_eq!(
        stats["faults_injected"], storm,
        "every injected 503 was answered: {stats}"
    );
    run.assert_succeeded(&INFRA_NODES);
    let attempts = run.attempts("mesh-connect");
    println!(
        "mesh-connect attempts: {attempts}; pipeline {:.1}s",
        run.report["durationSeconds"].as_f64().unwrap_or(0.0)
    );
    assert!(
        attempts > 1,
        "the retryStrategy ran mesh-connect again: {}",
        run.explain()
    );
    // The progress lines show why: the first attempt exited 75 (transient), then a retry.
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("mesh-connect: Failed in ") && l.contains("(exit 75)")),
        "mesh-connect's first attempt exited 75:\n{}",
        run.stderr
    );
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("mesh-connect: retrying in ")),
        "{}",
        run.stderr
    );
    for n in INFRA_NODES.iter().filter(|n| **n != "mesh-connect") {
        assert_eq!(run.attempts(n), 1, "{n} was not retried: {}", run.explain());
    }
}

/// Direct children of `ppid` (from /proc; a zombie is not running any more).
fn running_children(ppid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may contain spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let (state, parent) = (f.next(), f.next().and_then(|p| p.parse::<u32>().ok()));
        if parent == Some(ppid) && state != Some("Z") {
            pids.push(pid);
        }
    }
    pids
}

fn exe(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_step_fails_the_pipeline_and_the_same_run_key_converges() {
    // pipeline-fw-policy: fw-policy has no sibling task. (In pipeline-infra, dns-link runs
    // beside the AVNM chain but takes the same network lease: killing mesh-connect there
    // leaves dns-link waiting for the dead step's lease to expire, LOCK_TTL = 60 s.)
    let env = env().await;
    let url = env.sim.url.clone();
    let dir = env.dir.path().join("runs");
    let key = "killed-fw-policy";
    // The first firewall policy PUT's long-running operation is slow (1.5 s instead of 50 ms)
    // so that fw-policy is reliably caught mid-run: it holds the network's state lease and
    // its first write is in flight.
    let (status, body) = env
        .sim_post(
            "faults",
            &json!({"match": {"op": "PUT firewallPolicies"}, "kind": "slow-lro", "count": 1}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let inv = Invocation {
        pipeline: FW_POLICY,
        state: &env.state,
        run_key: key,
        arm: Arm::Endpoint(&url),
        backoff_scale: Some(0.01),
        dir: &dir,
    };
    let mut started = inv.start();
    let runner = started.pid();
    let fw_policy = std::fs::canonicalize(bin("fw-policy")).unwrap();
    let is_fw_policy = |pid: u32| exe(pid).as_deref() == Some(fw_policy.as_path());
    let deadline = Instant::now() + HUNG;
    // Find fw-policy among the runner's own children; once its first write is in flight,
    // SIGKILL it by PID.
    let killed = loop {
        assert!(
            !started.try_exited(),
            "the pipeline ended before fw-policy could be killed"
        );
        assert!(Instant::now() < deadline, "fw-policy never wrote a policy");
        let step = running_children(runner)
            .into_iter()
            .find(|p| is_fw_policy(*p));
        if let Some(pid) = step
            && op_count(&env.stats().await, "PUT firewallPolicies") > 0
            // Still the runner's running child, still fw-policy (not exited, PID not reused).
            && running_children(runner).contains(&pid)
            && is_fw_policy(pid)
        {
            let st = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .expect("kill");
            assert!(st.success(), "kill -KILL {pid}");
            break pid;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let run = started.finish().await;
    println!(
        "killed fw-policy (PID {killed}); run 1:\n{}",
        run.stderr
            .lines()
            .skip_while(|l| !l.starts_with("TASK"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(run.code, 1, "{}", run.explain());
    assert_eq!(run.report["phase"], "Failed", "{}", run.explain());
    let node = run.node("fw-policy");
    // A signal death is reported like a container runtime does (128 + 9) and leaves the node
    // Failed; the retryStrategy (`exitCode == "75" || status == "Error"`) does not retry it.
    assert_eq!(node["phase"], "Failed", "{}", run.explain());
    assert_eq!(node["exitCode"], 137, "{}", run.explain());
    assert_eq!(node["attempts"], 1, "{}", run.explain());
    assert!(
        node["message"]
            .as_str()
            .unwrap_or_default()
            .contains("terminated by signal 9"),
        "{node}"
    );
    assert_eq!(
        run.node("snapshot")["phase"],
        "Succeeded",
        "{}",
        run.explain()
    );
    assert_eq!(run.node("verify")["phase"], "Omitted", "{}", run.explain());
    // The exit handler still ran: it recorded the failure and broke the lease the killed
    // step left behind (its holder names the step, the run key and the killed PID).
    let exit_handler = run.node("onExit.record-outcome");
    assert_eq!(exit_handler["phase"], "Succeeded", "{}", run.explain());
    let store = StateStore::open(&env.state, None).await.unwrap();
    let outcome = store
        .get_record(key, "outcome")
        .await
        .unwrap()
        .expect("outcome record");
    assert_eq!(outcome.status, Status::Failed);
    let broken = outcome.extra["lease_broken"].as_str().unwrap_or_default();
    assert!(
        broken.starts_with(&format!("fw-policy run {key} pid {killed} host ")),
        "{:?}",
        outcome.extra
    );

    // The same run key again (argo resubmit): converges at the first attempt of every task.
    env.reset_stats().await;
    let rerun = inv.run().await;
    rerun.assert_succeeded(&FW_POLICY_NODES);
    for n in FW_POLICY_NODES {
        assert_eq!(rerun.attempts(n), 1, "{n}: {}", rerun.explain());
    }
    let stats = env.stats().await;
    println!(
        "re-run: {:.1}s, write ops {:?}",
        rerun.report["durationSeconds"].as_f64().unwrap_or(0.0),
        writes(&stats)
    );
    let outcome = store.get_record(key, "outcome").await.unwrap().unwrap();
    assert_eq!(outcome.status, Status::Converged);
}
