//! End-to-end runs of fixture pipelines with real processes (netstep-fake-step).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use netstep_run::Error;
use netstep_run::engine::{self, RunConfig};
use netstep_run::report::{Phase, RunReport};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipelines")
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_netstep-fake-step"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn config(pipeline: &str, dir: &Path, params: &[(&str, String)]) -> RunConfig {
    let mut cfg = RunConfig::new(
        fixtures()
            .join("workflows")
            .join(pipeline)
            .display()
            .to_string(),
        bin_dir(),
    );
    cfg.params = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    cfg.workdir = Some(dir.join("work"));
    cfg.backoff_scale = 0.001;
    cfg.quiet = true;
    cfg.forward_logs = false;
    cfg
}

/// `start`/`end` timestamps (ns) per step name, and `value` lines, from the shared log.
struct Log {
    start: HashMap<String, u128>,
    end: HashMap<String, u128>,
    values: HashMap<String, String>,
    envs: HashMap<String, String>,
}

fn read_log(path: &Path) -> Log {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut log = Log {
        start: HashMap::new(),
        end: HashMap::new(),
        values: HashMap::new(),
        envs: HashMap::new(),
    };
    for line in text.lines() {
        let mut parts = line.splitn(3, ' ');
        let (kind, name, rest) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        match kind {
            "start" => {
                log.start.insert(name, rest.parse().unwrap());
            }
            "end" => {
                log.end.insert(name, rest.parse().unwrap());
            }
            "value" => {
                log.values.insert(name, rest);
            }
            "env" => {
                log.envs.insert(name, rest);
            }
            _ => {}
        }
    }
    log
}

fn node<'r>(r: &'r RunReport, name: &str) -> &'r netstep_run::report::NodeReport {
    r.node(name)
        .unwrap_or_else(|| panic!("no node {name} in\n{}", r.summary()))
}

/// True while the process runs (a zombie awaiting its reaper counts as dead).
fn pid_alive(pid_file: &Path) -> bool {
    let pid = std::fs::read_to_string(pid_file).expect("pid file");
    match std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
        // state is the field after the parenthesised command name
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test]
async fn dag_runs_in_dependency_order_with_parallel_branches() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let cfg = config(
        "pipeline-dag.yaml",
        dir.path(),
        &[
            ("log", log.display().to_string()),
            ("dir", dir.path().display().to_string()),
        ],
    );
    let report = engine::run(cfg).await.expect("run");
    assert_eq!(report.phase, Phase::Succeeded, "{}", report.summary());
    assert_eq!(report.exit_code(), 0);
    let l = read_log(&log);
    let (s, e) = (&l.start, &l.end);
    // a before b and c; b and c before d; onExit last.
    assert!(
        e["a"] < s["b"] && e["a"] < s["c"],
        "a must finish before b, c"
    );
    assert!(
        e["b"] < s["d"] && e["c"] < s["d"],
        "b, c must finish before d"
    );
    assert!(e["d"] < s["exit"], "onExit runs after the DAG");
    // b and c overlapped: each waited (barrier files) until the other had started, so a
    // sequential runner would have deadlocked until their deadline.
    assert!(s["b"] < e["c"] && s["c"] < e["b"], "b and c must overlap");
    for n in ["a", "b", "c", "d"] {
        let nr = node(&report, n);
        assert_eq!(nr.phase, Phase::Succeeded);
        assert_eq!(nr.attempts, 1);
        assert_eq!(nr.exit_code, Some(0));
    }
}

#[tokio::test]
async fn parameters_and_task_outputs_are_substituted() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let cfg = config(
        "pipeline-dag.yaml",
        dir.path(),
        &[
            ("log", log.display().to_string()),
            ("dir", dir.path().display().to_string()),
            ("greeting", "bonjour".into()),
        ],
    );
    let report = engine::run(cfg).await.expect("run");
    let l = read_log(&log);
    let a = format!("from-a:{}", report.workflow_name);
    assert!(report.workflow_name.starts_with("pipeline-dag-"));
    assert_eq!(l.values["a"], a, "workflow.name substituted");
    assert_eq!(
        l.values["b"],
        format!("B({a})"),
        "tasks.a output passed to b"
    );
    // tasks.b/c outputs (read from the mapped /tmp/outputs files), the -p override, and
    // an output that was never written falling back to valueFrom.default.
    assert_eq!(l.values["d"], format!("B({a})+C+bonjour+fallback"));
    // outputs were written under <workdir>/<task>/tmp, not the real /tmp/outputs
    let written = report.workdir.join("b/tmp/outputs/value");
    assert_eq!(std::fs::read_to_string(written).unwrap(), format!("B({a})"));
    // onExit saw the final status
    assert_eq!(
        std::fs::read_to_string(dir.path().join("status")).unwrap(),
        "Succeeded"
    );
}

#[tokio::test]
async fn retries_only_transient_failures_up_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        "pipeline-retry.yaml",
        dir.path(),
        &[("dir", dir.path().display().to_string())],
    );
    let report = engine::run(cfg).await.expect("run");
    let count = |n: &str| -> u32 {
        std::fs::read_to_string(dir.path().join(format!("{n}.count")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    // 75 twice then success, limit 3: three attempts, Succeeded.
    assert_eq!(count("transient-then-ok"), 3);
    let n = node(&report, "transient-then-ok");
    assert_eq!(
        (n.phase, n.attempts, n.exit_code),
        (Phase::Succeeded, 3, Some(0))
    );
    // always 75, limit 1: two attempts, then "No more retries left".
    assert_eq!(count("transient-exhausted"), 2);
    let n = node(&report, "transient-exhausted");
    assert_eq!(
        (n.phase, n.attempts, n.exit_code),
        (Phase::Failed, 2, Some(75))
    );
    assert!(n.message.contains("No more retries left"), "{}", n.message);
    // permanent failures: exactly one attempt each.
    for code in [1, 2, 3] {
        let name = format!("exit-{code}");
        assert_eq!(count(&name), 1, "{name} must not be retried");
        let n = node(&report, &name);
        assert_eq!(
            (n.phase, n.attempts, n.exit_code),
            (Phase::Failed, 1, Some(code))
        );
        assert!(
            n.message.contains("expression evaluated to false"),
            "{}",
            n.message
        );
    }
    // a task depending on a failed one is omitted; the workflow fails; onExit sees it.
    assert_eq!(node(&report, "after-exit-1").phase, Phase::Omitted);
    assert!(!dir.path().join("after.count").exists());
    assert_eq!(report.phase, Phase::Failed);
    assert_eq!(report.exit_code(), 1);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("status")).unwrap(),
        "Failed"
    );
    assert_eq!(node(&report, "onExit").phase, Phase::Succeeded);
}

#[tokio::test]
async fn active_deadline_kills_a_hung_step() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        "pipeline-deadline.yaml",
        dir.path(),
        &[("dir", dir.path().display().to_string())],
    );
    let report = engine::run(cfg).await.expect("run");
    let n = node(&report, "hang");
    assert_eq!(n.phase, Phase::Failed);
    assert_eq!(n.exit_code, Some(137), "SIGKILL");
    assert!(
        n.message
            .contains("activeDeadlineSeconds=1 exceeded: killed PID"),
        "{}",
        n.message
    );
    assert!(
        !pid_alive(&dir.path().join("hang.pid")),
        "hung process is gone"
    );
    let n = node(&report, "hang-timeout");
    assert_eq!((n.phase, n.exit_code), (Phase::Failed, Some(137)));
    assert!(
        n.message.contains("timeout=1s exceeded: killed PID"),
        "{}",
        n.message
    );
    assert!(!pid_alive(&dir.path().join("hang-timeout.pid")));
    assert_eq!(node(&report, "never").phase, Phase::Omitted);
    assert!(!dir.path().join("never.pid").exists());
    assert_eq!(report.phase, Phase::Failed);
}

#[tokio::test]
async fn steps_run_group_by_group_and_pass_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut cfg = config(
        "pipeline-steps.yaml",
        dir.path(),
        &[("log", log.display().to_string())],
    );
    // select by WorkflowTemplate name, with explicit directories
    cfg.pipeline = "pipeline-steps".into();
    cfg.workflows_dir = Some(fixtures().join("workflows"));
    cfg.templates_dir = Some(fixtures().join("templates"));
    let report = engine::run(cfg).await.expect("run");
    assert_eq!(report.phase, Phase::Succeeded, "{}", report.summary());
    let l = read_log(&log);
    assert_eq!(l.values["second-a"], "one-a");
    assert_eq!(
        l.values["second-b"],
        format!("one-b@{}", report.workflow_name),
        "a declared parameter value using {{{{workflow.name}}}} is substituted"
    );
    assert!(l.end["first"] < l.start["second-a"] && l.end["first"] < l.start["second-b"]);
    // second-b's template has no command: the binary comes from the image name.
    assert_eq!(
        node(&report, "second-b").template,
        "pipeline-steps/local-step"
    );
}

#[tokio::test]
async fn missing_and_unknown_parameters_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        "pipeline-dag.yaml",
        dir.path(),
        &[
            ("dir", dir.path().display().to_string()),
            ("colour", "blue".into()),
        ],
    );
    let err = engine::run(cfg).await.unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.exit_code(), 2);
    assert!(
        msg.contains("workflow parameter 'log' has no value: pass -p log=VALUE"),
        "{msg}"
    );
    assert!(msg.contains("unknown parameter 'colour'"), "{msg}");
    assert!(!dir.path().join("status").exists(), "nothing ran");
}

#[tokio::test]
async fn missing_binary_is_reported_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        "pipeline-dag.yaml",
        dir.path(),
        &[("log", "x".into()), ("dir", "y".into())],
    );
    cfg.bin_dir = dir.path().to_path_buf();
    match engine::run(cfg).await {
        Err(Error::Invalid(d)) => {
            let all: Vec<String> = d.iter().map(ToString::to_string).collect();
            assert!(
                all.iter().any(|l| l.contains("step-fake.yaml")
                    && l.contains(
                        "container.command[0]: binary 'netstep-fake-step' or 'fake-step' not found"
                    )),
                "{all:#?}"
            );
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn simulate_starts_armsim_points_steps_at_it_and_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    // A bin dir where `armsim` is the fake step binary (it fakes armsim's CLI by argv0).
    let bins = dir.path().join("bin");
    std::fs::create_dir(&bins).unwrap();
    let fake = Path::new(env!("CARGO_BIN_EXE_netstep-fake-step"));
    std::os::unix::fs::symlink(fake, bins.join("armsim")).unwrap();
    std::os::unix::fs::symlink(fake, bins.join("netstep-fake-step")).unwrap();
    let world = dir.path().join("world.json");
    std::fs::write(&world, "{}").unwrap();
    let log = dir.path().join("log");
    let mut cfg = config(
        "pipeline-sim.yaml",
        dir.path(),
        &[("log", log.display().to_string())],
    );
    cfg.bin_dir = bins;
    cfg.simulate = true;
    cfg.world = world.clone();
    let report = engine::run(cfg).await.expect("run");
    assert_eq!(report.phase, Phase::Succeeded, "{}", report.summary());
    let l = read_log(&log);
    let url = l.values["probe"].clone();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "arm-endpoint overridden: {url}"
    );
    assert_eq!(l.envs["probe"], format!("NETSTEP_ARM_ENDPOINT={url}"));
    let armsim_pid = dir.path().join("world.json.pid");
    assert!(!pid_alive(&armsim_pid), "armsim stopped after the run");
}

#[test]
fn cli_run_prints_progress_and_summary_and_exits_with_workflow_status() {
    let dir = tempfile::tempdir().unwrap();
    let run = |pipeline: &str, extra: &[String]| {
        Command::new(env!("CARGO_BIN_EXE_netstep-run"))
            .arg("run")
            .arg("--pipeline")
            .arg(fixtures().join("workflows").join(pipeline))
            .arg("--bin-dir")
            .arg(bin_dir())
            .arg("--workdir")
            .arg(dir.path().join(pipeline))
            .arg("--backoff-scale=0.001")
            .args(extra)
            .output()
            .unwrap()
    };
    let dirp = format!("dir={}", dir.path().display());
    let out = run(
        "pipeline-dag.yaml",
        &[
            "-p".into(),
            format!("log={}", dir.path().join("log").display()),
            "-p".into(),
            dirp.clone(),
            "--report-json".into(),
            dir.path().join("report.json").display().to_string(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("a: started (attempt 1/3)"), "{stderr}");
    assert!(stderr.contains("d: Succeeded in"), "{stderr}");
    assert!(
        stderr.contains("[b] fake step b: exiting with 0"),
        "step logs forwarded"
    );
    let header = stderr
        .lines()
        .find(|l| l.starts_with("TASK"))
        .expect("summary header");
    for col in ["STATUS", "ATTEMPTS", "DURATION", "EXIT"] {
        assert!(header.contains(col), "{header}");
    }
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("onExit") && l.contains("Succeeded")),
        "{stderr}"
    );
    assert!(stderr.contains("(pipeline-dag): Succeeded in"), "{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["phase"], "Succeeded");
    assert_eq!(json["nodes"].as_array().unwrap().len(), 5);

    let out = run(
        "pipeline-retry.yaml",
        &["-p".into(), dirp, "--no-step-logs".into()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("transient-then-ok: retrying in"),
        "{stderr}"
    );
    assert!(!stderr.contains("[exit-1]"), "logs not forwarded");

    let out = run("pipeline-dag.yaml", &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "missing parameters -> usage error"
    );
}

#[test]
fn cli_run_refuses_a_broken_pipeline_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("workflows");
    std::fs::create_dir(&wf).unwrap();
    std::fs::write(
        wf.join("broken.yaml"),
        r#"apiVersion: argoproj.io/v1alpha1
kind: WorkflowTemplate
metadata: {name: broken}
spec:
  entrypoint: main
  templates:
    - name: main
      dag:
        tasks:
          - name: a
            templateRef: {name: step-fake, template: main}
            arguments:
              parameters: [{name: name, value: "{{workflow.parameters.nope}}"}]
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_netstep-run"))
        .args(["run", "--pipeline"])
        .arg(wf.join("broken.yaml"))
        .arg("--templates-dir")
        .arg(fixtures().join("templates"))
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--workdir")
        .arg(dir.path().join("work"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("broken.yaml:13: spec.templates[main].dag.tasks[a].arguments.parameters[name]: failed to resolve {{workflow.parameters.nope}}"), "{stderr}");
    assert!(
        stderr.contains("inputs.parameters.log was not supplied"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was run"), "{stderr}");
    assert!(!dir.path().join("work").join("a").exists());
}

#[tokio::test]
async fn argo_library_shape_image_fallback_artifacts_and_when() {
    for mode in ["plan", "apply"] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        let mut cfg = config(
            "pipeline-shape.yaml",
            dir.path(),
            &[("log", log.display().to_string()), ("mode", mode.into())],
        );
        cfg.mounts = vec![("/work/intent".into(), repo.clone())];
        let report = engine::run(cfg).await.expect("run");
        assert_eq!(report.phase, Phase::Succeeded, "{}", report.summary());
        let l = read_log(&log);
        // command [/step] -> binary from the image name; raw artifact materialised;
        // the git artifact path mapped through --mount.
        assert_eq!(l.values["snapshot"], mode);
        let read: Vec<String> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .filter(|x| x.starts_with("read snapshot "))
            .map(str::to_string)
            .collect();
        assert_eq!(read, vec![format!("read snapshot mode={mode}")]);
        assert_eq!(
            std::fs::read_to_string(repo.join("touched-by-snapshot")).unwrap(),
            mode
        );
        // `when: "{{workflow.parameters.mode}} == apply"` with bare words, like Argo.
        let verify = node(&report, "verify");
        if mode == "plan" {
            assert_eq!(verify.phase, Phase::Skipped, "{}", report.summary());
            assert!(
                verify
                    .message
                    .contains("when 'plan == apply' evaluated false")
            );
            assert!(!repo.join("touched-by-verify").exists());
        } else {
            assert_eq!(verify.phase, Phase::Succeeded);
            assert!(repo.join("touched-by-verify").exists());
        }
        // a bare `depends: verify` is satisfied by Succeeded or Skipped
        assert_eq!(node(&report, "after").phase, Phase::Succeeded);
    }
}

#[tokio::test]
async fn workflow_deadline_kills_running_steps_and_exit_handler_failure_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        "pipeline-wf-deadline.yaml",
        dir.path(),
        &[("dir", dir.path().display().to_string())],
    );
    // select the Workflow by its generateName
    cfg.pipeline = "wf-deadline".into();
    cfg.workflows_dir = Some(fixtures().join("workflows"));
    cfg.templates_dir = Some(fixtures().join("templates"));
    let report = engine::run(cfg).await.expect("run");
    assert!(
        report.workflow_name.starts_with("wf-deadline-"),
        "{}",
        report.workflow_name
    );
    assert_eq!(report.phase, Phase::Failed);
    assert!(
        report
            .message
            .contains("workflow activeDeadlineSeconds (1s) exceeded"),
        "{}",
        report.message
    );
    let n = node(&report, "sleepy");
    assert_eq!(n.phase, Phase::Failed);
    assert!(
        n.message.contains("workflow activeDeadlineSeconds"),
        "{}",
        n.message
    );
    // killed on drop (SIGKILL); give the kernel a moment to deliver it
    let pid_file = dir.path().join("sleepy.pid");
    let mut alive = pid_alive(&pid_file);
    for _ in 0..100 {
        if !alive {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        alive = pid_alive(&pid_file);
    }
    assert!(!alive, "the sleeping step was killed");
    // the exit handler still ran, saw Failed, and itself failed (exit 1)
    assert_eq!(
        std::fs::read_to_string(dir.path().join("status")).unwrap(),
        "Failed"
    );
    let exit = node(&report, "onExit");
    assert_eq!((exit.phase, exit.exit_code), (Phase::Failed, Some(1)));
}

#[tokio::test]
async fn parallelism_limits_concurrent_processes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let cfg = config(
        "pipeline-parallelism.yaml",
        dir.path(),
        &[("log", log.display().to_string())],
    );
    let report = engine::run(cfg).await.expect("run");
    assert_eq!(report.phase, Phase::Succeeded, "{}", report.summary());
    let l = read_log(&log);
    let mut spans: Vec<(u128, u128)> = ["x", "y", "z"]
        .iter()
        .map(|n| (l.start[*n], l.end[*n]))
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(
            w[0].1 < w[1].0,
            "tasks overlapped with parallelism 1: {spans:?}"
        );
    }
}

#[tokio::test]
async fn handled_failures_and_fail_fast() {
    // quick-fail succeeds: the only failure (breaks) is handled by `breaks.Failed`.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let cfg = config(
        "pipeline-failure-handling.yaml",
        dir.path(),
        &[
            ("log", log.display().to_string()),
            ("workdir", dir.path().join("work").display().to_string()),
        ],
    );
    let report = engine::run(cfg).await.expect("run");
    assert_eq!(report.phase, Phase::Succeeded, "{}", report.summary());
    assert_eq!(node(&report, "breaks").phase, Phase::Failed);
    assert_eq!(node(&report, "on-failure").phase, Phase::Succeeded);
    assert_eq!(node(&report, "on-success").phase, Phase::Omitted);
    assert_eq!(read_log(&log).values["on-failure"], "Failed/1");
    assert_eq!(node(&report, "later").phase, Phase::Succeeded);

    // quick-fail exits 1, unhandled: failFast lets the running `slow` finish but starts
    // nothing new; the workflow fails.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let cfg = config(
        "pipeline-failure-handling.yaml",
        dir.path(),
        &[
            ("log", log.display().to_string()),
            ("quick-fail-exit", "1".into()),
            ("workdir", dir.path().join("work").display().to_string()),
        ],
    );
    let report = engine::run(cfg).await.expect("run");
    assert_eq!(report.phase, Phase::Failed, "{}", report.summary());
    assert_eq!(node(&report, "slow").phase, Phase::Succeeded);
    let after = node(&report, "after-slow");
    assert_eq!(after.phase, Phase::Omitted, "{}", report.summary());
    assert!(
        after
            .message
            .contains("task 'quick-fail' failed (failFast)"),
        "{}",
        after.message
    );
    assert_eq!(node(&report, "later").phase, Phase::Omitted);
    assert!(!read_log(&log).start.contains_key("after-slow"));
    assert!(report.message.contains("quick-fail"), "{}", report.message);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("work/quick-fail/phase")).unwrap(),
        "Failed 1\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("work/later/phase")).unwrap(),
        "Omitted\n"
    );
}
