//! `netstep-run lint`: one broken pipeline per rule, checked through the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Lints the shared step templates plus one lint fixture; returns (exit code, stderr).
fn lint(fixture: &str) -> (i32, String) {
    let f = fixtures();
    let out = Command::new(env!("CARGO_BIN_EXE_netstep-run"))
        .arg("lint")
        .arg(f.join("pipelines/templates"))
        .arg(f.join("lint").join(fixture))
        .output()
        .expect("run netstep-run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts exit 2 and that every expected `line: path: message` fragment is reported.
fn expect(fixture: &str, expected: &[&str]) -> String {
    let (code, stderr) = lint(fixture);
    assert_eq!(code, 2, "{fixture}: exit code\n{stderr}");
    for e in expected {
        assert!(stderr.contains(e), "{fixture}: missing `{e}` in:\n{stderr}");
    }
    stderr
}

#[test]
fn valid_pipelines_and_templates_lint_clean() {
    let f = fixtures();
    let out = Command::new(env!("CARGO_BIN_EXE_netstep-run"))
        .arg("lint")
        .arg(f.join("pipelines"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no linting errors found"));
}

#[test]
fn undefined_entrypoint() {
    expect(
        "undefined-entrypoint.yaml",
        &["undefined-entrypoint.yaml:6: spec.entrypoint: template name 'mian' undefined"],
    );
}

#[test]
fn undefined_local_template() {
    expect(
        "undefined-template.yaml",
        &[":12: spec.templates[main].dag.tasks[a].template: template name 'nope' undefined"],
    );
}

#[test]
fn template_ref_to_unknown_workflow_template() {
    expect(
        "unknown-workflowtemplate.yaml",
        &[
            "spec.templates[main].dag.tasks[a].templateRef: template reference step-nope.main not found: WorkflowTemplate 'step-nope' is not among the loaded files",
        ],
    );
}

#[test]
fn template_ref_to_unknown_template() {
    expect(
        "unknown-template-in-ref.yaml",
        &[
            "template reference step-fake.mian not found: WorkflowTemplate 'step-fake' has no template 'mian'",
        ],
    );
}

#[test]
fn undeclared_input_parameter() {
    expect(
        "undeclared-input.yaml",
        &[
            ":19: spec.templates[print].container.args[0]: failed to resolve {{inputs.parameters.mesage}}: input parameter 'mesage' is not declared",
        ],
    );
}

#[test]
fn undeclared_workflow_parameter_in_pipeline_and_in_referenced_step() {
    expect(
        "undeclared-workflow-param.yaml",
        &[
            ":19: spec.templates[main].dag.tasks[a].arguments.parameters[name]: failed to resolve {{workflow.parameters.nope}}: not declared in spec.arguments of pipeline 'lint-wf-param'",
            ":33: spec.templates[main].container.args[0]: failed to resolve {{workflow.parameters.region}}: not declared in spec.arguments of pipeline 'lint-wf-param'",
        ],
    );
}

#[test]
fn task_output_references() {
    expect(
        "unknown-task-output.yaml",
        &[
            "failed to resolve {{tasks.nope.outputs.parameters.value}}: there is no task 'nope' in this DAG",
            "failed to resolve {{tasks.a.outputs.parameters.nope}}: template 'main' of 'a' has no output parameter 'nope'",
            "failed to resolve {{tasks.c.outputs.parameters.value}}: task 'c' is not a dependency (direct or indirect) of this task",
        ],
    );
}

#[test]
fn missing_required_input() {
    expect(
        "missing-required-input.yaml",
        &[
            ":11: spec.templates[main].dag.tasks[a]: inputs.parameters.log was not supplied (required by template 'main')",
        ],
    );
}

#[test]
fn dag_cycle() {
    let err = expect(
        "cycle.yaml",
        &["spec.templates[main].dag: dependency cycle: "],
    );
    let line = err
        .lines()
        .find(|l| l.contains("dependency cycle"))
        .unwrap();
    for t in ["a", "b", "c"] {
        assert!(line.contains(&format!("{t} ->")), "{line}");
    }
    assert!(!line.contains("d ->"), "{line}");
    assert_eq!(err.matches("dependency cycle").count(), 1, "{err}");
}

#[test]
fn unknown_dependencies() {
    expect(
        "unknown-dependency.yaml",
        &[
            ":12: spec.templates[main].dag.tasks[b].dependencies: dependency 'nope' not found in the DAG (task 'b')",
            ":13: spec.templates[main].dag.tasks[c].depends: dependency 'ghost' not found in the DAG (task 'c')",
        ],
    );
}

#[test]
fn duplicate_task_names() {
    expect(
        "duplicate-task.yaml",
        &[":13: spec.templates[main].dag.tasks[a]: task name 'a' is not unique (also on line 11)"],
    );
}

#[test]
fn retry_strategy_problems() {
    expect(
        "bad-retry.yaml",
        &[
            "retryStrategy.limit: limit must be a non-negative integer, got `three`",
            "retryStrategy.retryPolicy: retryPolicy 'Sometimes' is invalid",
            "lastRetry.exitCode is a string: comparing it with a number is always false",
            "retryStrategy.backoff.duration: invalid duration `5 minutes`",
            "retryStrategy.backoff.factor: factor must be a non-negative integer (Argo parses it as int32), got `1.5`",
            "spec.templates[other].retryStrategy.expression: unsupported or invalid expression: unsupported syntax at `matches`",
        ],
    );
}

#[test]
fn all_errors_are_collected_not_just_the_first() {
    let err = expect(
        "many-errors.yaml",
        &[
            "spec.onExit: template name 'cleanup' undefined",
            "inputs.parameters.log was not supplied",
            "failed to resolve {{workflow.parameters.who}}",
            "dependency 'zzz' not found in the DAG",
            "template name 'missing' undefined",
        ],
    );
    assert!(err.contains("5 linting error(s)"), "{err}");
}

#[test]
fn yaml_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("dup.yaml");
    std::fs::write(
        &f,
        "apiVersion: argoproj.io/v1alpha1\nkind: WorkflowTemplate\nmetadata: {name: x}\nspec:\n  templates: []\n  templates: []\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_netstep-run"))
        .arg("lint")
        .arg(&f)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("dup.yaml:6: duplicate key `templates` (first defined on line 5)"),
        "{stderr}"
    );
}

#[test]
fn argo_semantic_error_fixture_is_rejected() {
    // shared/argo/testdata/semantic-error-workflowtemplate.yaml, inlined (schema-valid,
    // semantically wrong: what `argo lint` rejects).
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("semantic.yaml");
    std::fs::write(
        &f,
        r#"apiVersion: argoproj.io/v1alpha1
kind: WorkflowTemplate
metadata:
  name: semantic-errors
spec:
  entrypoint: mian
  templates:
    - name: main
      steps:
        - - name: call-missing
            template: does-not-exist
        - - name: call-print
            template: print
            arguments:
              parameters:
                - name: msg
                  value: "{{steps.nope.outputs.result}}"
    - name: print
      inputs:
        parameters:
          - name: message
      container:
        image: busybox
        args: ["{{inputs.parameters.mesage}}"]
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_netstep-run"))
        .arg("lint")
        .arg(&f)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    for e in [
        "template name 'mian' undefined",
        "template name 'does-not-exist' undefined",
        "inputs.parameters.message was not supplied",
        "failed to resolve {{steps.nope.outputs.result}}",
        "failed to resolve {{inputs.parameters.mesage}}",
    ] {
        assert!(stderr.contains(e), "missing {e}:\n{stderr}");
    }
}
