//! Corrupted state, end to end: the real step binaries, a state store damaged behind their back
//! (as a failing disk, a bad manual edit or someone with write access to the container would),
//! on both backends (a folder, `file://`, and a real Azurite).
//!
//! For each damage the step that reads the document exits with the documented code
//! (docs/exit-codes.md), names the blob and the problem, and makes zero ARM writes:
//!
//! | damage | exit | message |
//! |---|---|---|
//! | upstream record edited (sha256 no longer matches) | 1 | `corrupt or tampered) on runs/K/tag-groups.json: content digest mismatch` |
//! | upstream record truncated | 1 | `... not a valid netstep envelope (N bytes; truncated or edited?)` |
//! | record of another run key copied in | 2 | `wrong record) on runs/K2/tag-groups.json: document belongs to run key "K1"` |
//! | upstream record missing | 1 | `no tag-groups record in the state store (runs/K/tag-groups.json)` |
//! | intent snapshot edited | 1 | `corrupt or tampered) on runs/K/intent.json: content digest mismatch` |
//!
//! Library-level tests of the same checks (both backends): steps/netstep/tests/state.rs.

use netstep::context::GROUPS_STEP;
use pipeline_tests::{Env, EnvOptions, StepOutput, write_ops};

/// The steps that take the group ids from the upstream record.
const CONSUMERS: [&str; 2] = ["mesh-connect", "admin-rules"];

fn error_line<'a>(step: &str, out: &'a StepOutput) -> &'a str {
    out.stderr
        .lines()
        .find(|l| l.starts_with(&format!("{step}: error: ")))
        .unwrap_or_else(|| panic!("{step}: no error line:\n{}", out.stderr))
}

/// Runs `step` in apply mode for `run_key` and checks exit code, message and zero writes.
async fn expect_refusal(
    env: &Env,
    step: &str,
    run_key: &str,
    with_intent: bool,
    code: i32,
    needles: &[&str],
) -> String {
    env.reset_stats().await;
    let mut cmd = env.step(step).run_key(run_key).apply();
    if with_intent {
        cmd = cmd.intent(&env.globojava_intent());
    }
    let out = cmd.run().await;
    assert_eq!(
        out.code, code,
        "{step} {run_key}: exit code\n{}",
        out.stderr
    );
    let line = error_line(step, &out).to_string();
    for n in needles {
        assert!(line.contains(n), "{step}: {n:?} missing from\n{line}");
    }
    let stats = env.stats().await;
    assert!(
        write_ops(&stats).is_empty(),
        "{step} wrote to ARM despite the damage: {:?}",
        write_ops(&stats)
    );
    assert!(
        out.outputs.is_empty(),
        "{step}: outputs written: {:?}",
        out.outputs
    );
    println!(
        "  {step} run {run_key}: exit {code}, {} ARM requests, 0 writes: {line}",
        stats["requests"]
    );
    line
}

async fn corrupted_state_is_refused(opts: EnvOptions) {
    let env = Env::start(opts).await;
    let run = "good-1";
    let out = env
        .step(GROUPS_STEP)
        .intent(&env.globojava_intent())
        .run_key(run)
        .apply()
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rec_name = format!("runs/{run}/{GROUPS_STEP}.json");
    let snap_name = format!("runs/{run}/intent.json");
    let rec = env.state_read(&rec_name).await.expect("upstream record");
    let snap = env.state_read(&snap_name).await.expect("snapshot");
    let text = String::from_utf8(rec.clone()).unwrap();
    println!("backend {}", env.state.split(':').next().unwrap());

    // 1. The upstream record edited: one group id swapped for another.
    let needle = "/networkGroups/all-prod-spokes";
    assert!(text.contains(needle), "{text}");
    let edited = text.replacen(needle, "/networkGroups/all-nonprod-spokes", 1);
    env.state_write(&rec_name, Some(edited.into_bytes())).await;
    for step in CONSUMERS {
        expect_refusal(
            &env,
            step,
            run,
            false,
            1,
            &[
                &format!("(corrupt or tampered) on {rec_name}"),
                "content digest mismatch",
            ],
        )
        .await;
    }

    // 2. The upstream record truncated.
    env.state_write(&rec_name, Some(rec[..rec.len() / 2].to_vec()))
        .await;
    expect_refusal(
        &env,
        CONSUMERS[0],
        run,
        false,
        1,
        &[
            &format!("(corrupt or tampered) on {rec_name}"),
            "not a valid netstep envelope",
            "truncated or edited?",
        ],
    )
    .await;
    env.state_write(&rec_name, Some(rec.clone())).await;

    // 3. Another run's record copied into a new run (a valid envelope, a wrong identity).
    let other = "other-2";
    let other_rec = format!("runs/{other}/{GROUPS_STEP}.json");
    env.state_write(&other_rec, Some(rec.clone())).await;
    expect_refusal(
        &env,
        CONSUMERS[0],
        other,
        true,
        2,
        &[
            &format!("(wrong record) on {other_rec}"),
            &format!("document belongs to run key \"{run}\", not \"{other}\""),
        ],
    )
    .await;

    // 4. No upstream record at all (the upstream step never ran in this run).
    let fresh = "fresh-3";
    expect_refusal(
        &env,
        CONSUMERS[0],
        fresh,
        true,
        1,
        &[
            &format!("no {GROUPS_STEP} record in the state store"),
            &format!("runs/{fresh}/{GROUPS_STEP}.json"),
        ],
    )
    .await;

    // 5. The intent snapshot edited (an address space changed): every step of the run refuses,
    //    with or without --intent (a resubmission keeps using the snapshot).
    let snap_text = String::from_utf8(snap.clone()).unwrap();
    assert!(snap_text.contains("10.1.16.0/20"));
    env.state_write(
        &snap_name,
        Some(
            snap_text
                .replacen("10.1.16.0/20", "10.9.16.0/20", 1)
                .into_bytes(),
        ),
    )
    .await;
    for (step, with_intent) in [(CONSUMERS[0], false), (GROUPS_STEP, true)] {
        expect_refusal(
            &env,
            step,
            run,
            with_intent,
            1,
            &[
                &format!("(corrupt or tampered) on {snap_name}"),
                "content digest mismatch",
            ],
        )
        .await;
    }

    // Restored, the run continues where it stopped: the damage was never acted on.
    env.state_write(&snap_name, Some(snap)).await;
    env.reset_stats().await;
    let out = env.step(CONSUMERS[0]).run_key(run).apply().run().await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!write_ops(&env.stats().await).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_state_in_a_folder_is_refused_without_writes() {
    corrupted_state_is_refused(EnvOptions::globojava().file_state()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_state_in_azurite_is_refused_without_writes() {
    corrupted_state_is_refused(EnvOptions::globojava()).await;
}
