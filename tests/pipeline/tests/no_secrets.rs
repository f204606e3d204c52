//! No secret anywhere: the whole pipeline runs with a distinctive ARM bearer token
//! (`NETSTEP_ARM_TOKEN`) and a state store reached with a SAS (Azurite), then EVERYTHING it
//! produced is searched for either secret, raw and in the encodings a leak would take
//! (percent-encoded, standard and URL-safe base64 at every alignment, JSON-escaped):
//!
//! - stdout and stderr of every process (JSON logs at `RUST_LOG=debug`, and pretty logs);
//! - the Argo output files of every step;
//! - every document in the state store (snapshot, records, outcome, lease blobs);
//! - every recorded ARM exchange (`--record-traffic`);
//! - armsim's request log and counters;
//! - every file under the run's scratch folder, which is also the processes' `TMPDIR`.
//!
//! Runs covered: a plan of every step; a failing apply (fw-policy, whose firewall policy LRO
//! ends Failed: exit 1 with the ARM error); a step whose state container does not exist (the SAS URL in an error);
//! every step of the harness's STEPS in apply mode; a re-run (no-op); `verify --outcome`.
//!
//! Not searched: Azurite's own log (the emulator, not netstep, logs request URLs) and the
//! test's own process.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use pipeline_tests::{Env, EnvOptions, STEPS, StepCmd, StepOutput};
use serde_json::json;

/// A bearer token nobody else would produce, with the characters encodings change.
const TOKEN: &str = "eyJ0eXAiOiJKV1Qi.ns-canary-Q7+xK/3w=9pLzR4vT.sig_8mN2";

/// The forms in which `secret` could appear in text: raw, percent-encoded, JSON-escaped, and
/// base64 (standard and URL-safe, at the three possible alignments inside a longer encoding).
fn forms(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_string()];
    let pct: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    out.push(pct.clone());
    out.push(pct.replace('+', "%20"));
    out.push(pct.to_ascii_lowercase());
    out.push(
        serde_json::to_string(secret)
            .unwrap()
            .trim_matches('"')
            .to_string(),
    );
    out.push(secret.replace('/', "\\/"));
    for k in 0..3usize {
        let mut bytes = vec![0u8; k];
        bytes.extend_from_slice(secret.as_bytes());
        for engine in [&STANDARD, &URL_SAFE] {
            let enc = engine.encode(&bytes);
            // Characters fully determined by the secret's bytes only.
            let skip = (k * 4).div_ceil(3);
            let end = enc.trim_end_matches('=').len().saturating_sub(3);
            if end > skip + 16 {
                out.push(enc[skip..end].to_string());
            }
        }
    }
    out.push(STANDARD_NO_PAD.encode(secret));
    out.push(URL_SAFE_NO_PAD.encode(secret));
    out.sort();
    out.dedup();
    out
}

/// Where any form of any secret occurs in `text`.
fn leaks(what: &str, text: &[u8], secrets: &[(String, Vec<String>)]) -> Vec<String> {
    let text = String::from_utf8_lossy(text);
    let mut found = Vec::new();
    for (name, fs) in secrets {
        for f in fs {
            if let Some(at) = text.find(f.as_str()) {
                let mut from = at.saturating_sub(60);
                while !text.is_char_boundary(from) {
                    from -= 1;
                }
                let mut to = (at + f.len() + 20).min(text.len());
                while !text.is_char_boundary(to) {
                    to += 1;
                }
                found.push(format!("{what}: {name} as {f:?}: …{}…", &text[from..to]));
            }
        }
    }
    found
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn the_scanner_finds_every_encoding() {
    let secrets = vec![("token".to_string(), forms(TOKEN))];
    let pct: String = url::form_urlencoded::byte_serialize(TOKEN.as_bytes()).collect();
    for (label, text) in [
        ("raw", format!("Authorization: Bearer {TOKEN}")),
        ("url", format!("http://h/x?token={pct}&a=1")),
        ("json", serde_json::to_string(&json!({"t": TOKEN})).unwrap()),
        ("b64", STANDARD.encode(format!("Bearer {TOKEN}"))),
        ("b64-1", STANDARD.encode(format!("x{TOKEN}"))),
        ("b64-2", URL_SAFE.encode(format!("xy{TOKEN}"))),
        ("b64-3", STANDARD.encode(format!("xyz{TOKEN}"))),
    ] {
        assert!(
            !leaks(label, text.as_bytes(), &secrets).is_empty(),
            "{label} not found in {text}"
        );
    }
    assert!(leaks("clean", b"Authorization: Bearer <redacted>", &secrets).is_empty());
}

struct Run {
    label: String,
    out: StepOutput,
}

fn cmd(env: &Env, step: &str, tmp: &Path) -> StepCmd {
    env.step(step)
        .intent(&env.globojava_intent())
        .env("NETSTEP_ARM_TOKEN", TOKEN)
        .env("RUST_LOG", "debug")
        .env("TMPDIR", &tmp.display().to_string())
        .arg(format!(
            "--record-traffic={}",
            env.dir.path().join("traffic").display()
        ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_or_sas_signature_in_anything_the_pipeline_produces() {
    let env = Env::start(EnvOptions::globojava()).await;
    let sig = url::Url::parse(&env.state)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "sig")
        .map(|(_, v)| v.into_owned())
        .expect("the Azurite state URL has a SAS signature");
    assert!(sig.len() >= 40, "{sig}");
    let secrets = vec![
        ("ARM token".to_string(), forms(TOKEN)),
        ("SAS signature".to_string(), forms(&sig)),
    ];
    let tmp = env.dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut runs: Vec<Run> = Vec::new();

    // Plans of every step (pretty logs), before anything exists.
    for s in STEPS {
        let out = cmd(&env, s, &tmp).run_key("leak-plan").run().await;
        runs.push(Run {
            label: format!("plan {s}"),
            out,
        });
    }
    // A failing apply: fw-policy's first firewall policy write ends Failed (its LRO).
    let (status, body) = env
        .sim_post(
            "faults",
            &json!({"match": {"op": "PUT firewallPolicies"}, "kind": "failed-lro", "count": 1}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let out = cmd(&env, "fw-policy", &tmp)
        .run_key("leak-fail")
        .apply()
        .arg("--log-format=json")
        .run()
        .await;
    assert_eq!(out.code, 1, "a Failed LRO is permanent:\n{}", out.stderr);
    runs.push(Run {
        label: "failing apply".into(),
        out,
    });
    // A state container that does not exist: the SAS URL is in the error path.
    let missing = env
        .state
        .replacen("/netstep-state?", "/no-such-container?", 1);
    let out = cmd(&env, STEPS[0], &tmp)
        .state(&missing)
        .run_key("leak-missing")
        .apply()
        .run()
        .await;
    assert_ne!(out.code, 0, "{}", out.stderr);
    runs.push(Run {
        label: "missing container".into(),
        out,
    });
    // The whole pipeline in apply mode, JSON logs, then again (a no-op).
    for key in ["leak-apply", "leak-again"] {
        for s in STEPS {
            let out = cmd(&env, s, &tmp)
                .run_key(key)
                .apply()
                .arg("--log-format=json")
                .run()
                .await;
            assert_eq!(out.code, 0, "{key} {s}:\n{}", out.stderr);
            runs.push(Run {
                label: format!("{key} {s}"),
                out,
            });
        }
    }
    let out = env
        .step("verify")
        .env("NETSTEP_ARM_TOKEN", TOKEN)
        .env("RUST_LOG", "debug")
        .run_key("leak-apply")
        .arg("--outcome=Succeeded")
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    runs.push(Run {
        label: "verify --outcome".into(),
        out,
    });

    // Search everything.
    let mut found = Vec::new();
    let mut scanned = 0usize;
    let mut bytes = 0usize;
    let mut scan = |what: String, text: &[u8]| {
        scanned += 1;
        bytes += text.len();
        found.extend(leaks(&what, text, &secrets));
    };
    for r in &runs {
        scan(format!("{} stdout", r.label), r.out.stdout.as_bytes());
        scan(format!("{} stderr", r.label), r.out.stderr.as_bytes());
        for (k, v) in &r.out.outputs {
            scan(format!("{} output {k}", r.label), v.as_bytes());
        }
    }
    let names = env.state_names().await;
    assert!(
        names.iter().any(|n| n.starts_with("leases/")),
        "lease blobs expected: {names:?}"
    );
    for n in &names {
        if let Some(b) = env.state_read(n).await {
            scan(format!("state {n}"), &b);
        }
    }
    let mut files = Vec::new();
    walk(env.dir.path(), &mut files);
    let traffic = files
        .iter()
        .filter(|p| p.starts_with(env.dir.path().join("traffic")))
        .count();
    assert!(traffic > 100, "only {traffic} recorded exchanges");
    for f in &files {
        scan(
            format!("file {}", f.display()),
            &std::fs::read(f).unwrap_or_default(),
        );
    }
    let log = env.sim_get("log").await;
    scan("armsim log".into(), log.to_string().as_bytes());
    scan(
        "armsim stats".into(),
        env.stats().await.to_string().as_bytes(),
    );
    assert!(
        found.is_empty(),
        "secrets leaked ({} hits):\n{}",
        found.len(),
        found.join("\n")
    );
    println!(
        "no secret in {scanned} texts ({:.1} MB): {} processes, {} state documents, {} files \
         ({traffic} recorded exchanges), armsim's log of {} requests; {} forms of the token and \
         {} of the SAS signature searched",
        bytes as f64 / 1e6,
        runs.len(),
        names.len(),
        files.len(),
        log.as_array().map_or(0, Vec::len),
        secrets[0].1.len(),
        secrets[1].1.len()
    );
}
