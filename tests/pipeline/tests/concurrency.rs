//! Concurrency, end to end: REAL step processes against one armsim and one Azurite, racing for
//! the network lease (a blob lease on `leases/<lock name>`).
//!
//! Who made which ARM request is established without trusting the steps: every process logs
//! (JSON) when it acquired and released each lease, and records its own ARM request counters
//! in its state record; armsim logs every request with a timestamp. A request is attributed
//! to the process whose lease window contains it, and each window must hold exactly as many
//! requests as that process counted.
//!
//! - `the_loser_exits_75_naming_the_holder_then_queues_behind_it`: run B arrives while run A
//!   holds the lease (A's first ARM read is throttled with a long Retry-After, so A sits inside
//!   its lease). With a 2 s lock timeout B exits 75 naming A's step, run key, host and pid, and
//!   makes zero ARM requests; with a long timeout B waits, acquires only after A released, and
//!   converges with zero writes (A's writes are visible to it: no lost update); both records
//!   are valid.
//! - `two_whole_pipelines_at_once_never_interleave`: two pipelines (every step of the
//!   harness's STEPS, in order, different run keys) run at the same time: the windows of the
//!   network lease never overlap, every ARM write and every AVNM commit lies inside a lease
//!   window of the process that made it, each step's writes were made by one run only (the
//!   other, serialized behind it, found nothing to do), and both runs' verify pass.
//! - `an_infra_step_and_fw_policy_share_the_network_lease`: fw-policy (pipeline-fw-policy)
//!   and the first infra step take the same lease name, so fw-policy waits for the infra step.
//! - `a_killed_holders_lease_expires_and_the_next_run_takes_over`: a step SIGKILLed inside its
//!   15 s lease (the shortest Azure allows) leaves it behind; the next run waits for the
//!   service to expire it (no renewal any more), takes it over and converges.
//!
//! Library-level lease tests (both backends, expiry, renewal, loss, a killed child process)
//! are in steps/netstep/tests/state.rs; the exit handler breaking a dead step's lease is in
//! steps/verify/tests/verify.rs and tests/pipeline/tests/runner.rs.

use std::time::{Duration, Instant};

use netstep::context::{LOCK_TTL_ENV, LOCK_WAIT_ENV, lock_name};
use netstep::state::StateStore;
use pipeline_tests::{Env, EnvOptions, STEPS, StepCmd, StepOutput, write_ops};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The first step of the pipeline that has work on the GloboJava estate (vnets, before it,
/// owns only the hubs, which the estate already has as declared): the lease contention below
/// needs a holder that writes.
const FIRST_WRITER: &str = "tag-groups";

/// How long the holder is kept inside its lease (Retry-After of its throttled first read).
const HOLD_S: u64 = 10;
/// Safety net for waits on the simulator (not a timing assertion).
const HUNG: Duration = Duration::from_secs(120);

/// The GloboJava network manager's lease name, as the steps compute it.
fn nm_lock(env: &Env) -> String {
    let intent = netstep::intent::load_file(&env.globojava_intent()).expect("GloboJava intent");
    lock_name(&intent.network_manager_id())
}

/// A step in apply mode with JSON logs and the given lease settings.
fn step(env: &Env, name: &str, run_key: &str, wait_s: u64, ttl_s: u64) -> StepCmd {
    env.step(name)
        .intent(&env.globojava_intent())
        .run_key(run_key)
        .apply()
        .arg("--log-format=json")
        .env(LOCK_WAIT_ENV, &wait_s.to_string())
        .env(LOCK_TTL_ENV, &ttl_s.to_string())
}

fn parse_time(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap_or_else(|e| panic!("timestamp {s:?}: {e}"))
}

/// The JSON log events of a step.
fn events(out: &StepOutput) -> Vec<Value> {
    out.stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// One held lease of one process, from its log.
#[derive(Debug, Clone)]
struct Window {
    who: String,
    lock: String,
    from: OffsetDateTime,
    to: OffsetDateTime,
}

fn windows(who: &str, out: &StepOutput) -> Vec<Window> {
    let mut open: Vec<(String, OffsetDateTime)> = Vec::new();
    let mut done = Vec::new();
    for e in events(out) {
        let msg = e["message"].as_str().unwrap_or_default();
        let lock = e["lock"].as_str().unwrap_or_default().to_string();
        let at = || parse_time(e["timestamp"].as_str().expect("event timestamp"));
        match msg {
            "network lease acquired" => open.push((lock, at())),
            "network lease released" => {
                let i = open
                    .iter()
                    .position(|(l, _)| *l == lock)
                    .unwrap_or_else(|| panic!("{who}: released {lock} never acquired"));
                let (lock, from) = open.remove(i);
                done.push(Window {
                    who: who.to_string(),
                    lock,
                    from,
                    to: at(),
                });
            }
            _ => {}
        }
    }
    assert!(
        open.is_empty(),
        "{who}: leases acquired and never released: {open:?}\n{}",
        out.stderr
    );
    done
}

/// armsim's request log with parsed times.
async fn arm_log(env: &Env) -> Vec<(OffsetDateTime, String, String, String)> {
    env.sim_get("log")
        .await
        .as_array()
        .expect("armsim log")
        .iter()
        .map(|e| {
            (
                parse_time(e["time"].as_str().expect("log time")),
                e["method"].as_str().unwrap_or_default().to_string(),
                e["op"].as_str().unwrap_or_default().to_string(),
                e["path"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn is_write(method: &str, op: &str) -> bool {
    matches!(method, "PUT" | "PATCH" | "DELETE") || op == "POST commit"
}

/// ARM requests on the wire the process counted (its record's counters).
fn counted(record: &Value) -> u64 {
    let c = &record["counters"];
    ["reads", "writes", "deletes", "polls"]
        .iter()
        .map(|k| c[k].as_u64().unwrap_or(0))
        .sum()
}

async fn record(env: &Env, run_key: &str, step: &str) -> Value {
    let store = StateStore::open(&env.state, None)
        .await
        .expect("state store");
    let rec = store
        .get_record(run_key, step)
        .await
        .unwrap_or_else(|e| panic!("record {run_key}/{step} must verify: {e}"))
        .unwrap_or_else(|| panic!("no record {run_key}/{step}"));
    serde_json::to_value(rec).expect("record as JSON")
}

/// Makes the next ARM read wait `secs` (a 429 with Retry-After), keeping its caller inside its
/// lease.
async fn throttle_next_read(env: &Env, secs: u64) {
    let (status, body) = env
        .sim_post(
            "faults",
            &json!({"match": {"method": "GET"}, "kind": "429", "count": 1, "retry_after_s": secs}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Waits until armsim has answered at least `n` ARM requests.
async fn wait_for_requests(env: &Env, n: u64) {
    let start = Instant::now();
    while env.stats().await["requests"].as_u64().unwrap_or(0) < n {
        assert!(start.elapsed() < HUNG, "no ARM request arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn secs(d: time::Duration) -> f64 {
    d.as_seconds_f64()
}

/// Asserts that the network-lease windows are disjoint and that every ARM request in armsim's
/// log lies in a window of exactly one process, which counted exactly that many requests
/// (`procs`: name, counted requests, windows). Returns the requests per process.
fn assert_attributed(
    log: &[(OffsetDateTime, String, String, String)],
    procs: &[(String, u64, Vec<Window>)],
    lock: &str,
) -> Vec<u64> {
    let nm: Vec<&Window> = procs
        .iter()
        .flat_map(|(_, _, w)| w.iter())
        .filter(|w| w.lock == lock)
        .collect();
    for (i, a) in nm.iter().enumerate() {
        for b in &nm[i + 1..] {
            assert!(
                a.to <= b.from || b.to <= a.from,
                "lease windows of {} and {} overlap: {a:?} and {b:?}",
                a.who,
                b.who
            );
        }
    }
    let mut per = vec![0u64; procs.len()];
    for (t, method, op, path) in log {
        let owners: Vec<usize> = procs
            .iter()
            .enumerate()
            .filter(|(_, (_, _, ws))| ws.iter().any(|w| w.from <= *t && *t <= w.to))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            owners.len(),
            1,
            "{method} {path} ({op}) at {t} lies in the lease windows of {:?}",
            owners.iter().map(|i| &procs[*i].0).collect::<Vec<_>>()
        );
        per[owners[0]] += 1;
    }
    for (i, (who, n, _)) in procs.iter().enumerate() {
        assert_eq!(
            per[i], *n,
            "{who} counted {n} ARM requests, armsim saw {} in its lease windows",
            per[i]
        );
    }
    per
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loser_exits_75_naming_the_holder_then_queues_behind_it() {
    let env = Env::start(EnvOptions::globojava()).await;
    let first = FIRST_WRITER;
    let lock = nm_lock(&env);
    throttle_next_read(&env, HOLD_S).await;
    let a = step(&env, first, "conc-a", 60, 15).spawn();
    let a_pid = a.pid();
    wait_for_requests(&env, 1).await;

    // B with a short lock timeout: gives up, exit 75, names the holder, no ARM request.
    let before = env.stats().await["requests"].as_u64().unwrap();
    let t0 = Instant::now();
    let b = step(&env, first, "conc-b", 2, 15).run().await;
    let b_wall = t0.elapsed();
    assert_eq!(b.code, 75, "exit 75 (transient) expected:\n{}", b.stderr);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host = std::env::var("HOSTNAME").unwrap_or(host);
    let holder = format!("held by {first} run conc-a pid {a_pid} host {host} since ");
    let msg = b
        .stderr
        .lines()
        .find(|l| l.starts_with(&format!("{first}: error: ")))
        .unwrap_or_else(|| panic!("no error line:\n{}", b.stderr));
    assert!(
        msg.contains(&format!("lease on network {lock} "))
            && msg.contains(&holder)
            && msg.contains("gave up after waiting 2."),
        "the error must name the lease and its holder ({holder}):\n{msg}"
    );
    assert!(msg.contains(&format!("on leases/{lock}")), "{msg}");
    let after = env.stats().await["requests"].as_u64().unwrap();
    assert_eq!(before, after, "the loser made ARM requests");
    assert!(
        b.outputs.is_empty(),
        "the loser wrote outputs: {:?}",
        b.outputs
    );
    let store = StateStore::open(&env.state, None).await.unwrap();
    assert_eq!(
        store.get_record("conc-b", first).await.unwrap(),
        None,
        "the loser wrote a record"
    );

    // B again with a long timeout: queues behind A, then converges with nothing left to do.
    let b_start = OffsetDateTime::now_utc();
    let b2 = step(&env, first, "conc-b", 120, 15).spawn();
    let a_out = a.wait().await;
    let b2_out = b2.wait().await;
    assert_eq!(a_out.code, 0, "A:\n{}", a_out.stderr);
    assert_eq!(b2_out.code, 0, "B:\n{}", b2_out.stderr);
    let (ra, rb) = (
        record(&env, "conc-a", first).await,
        record(&env, "conc-b", first).await,
    );
    assert_eq!(ra["status"], "converged");
    assert_eq!(rb["status"], "converged");
    let a_changes: usize = a_out.outputs["changes"].trim().parse().unwrap();
    assert!(a_changes > 0, "A had work to do on a fresh estate");
    assert_eq!(
        b2_out.outputs["changes"].trim(),
        "0",
        "B must see A's writes (no lost update):\n{}",
        b2_out.stdout
    );
    let (wa, wb) = (windows("A", &a_out), windows("B", &b2_out));
    assert_eq!(wa.len(), 1, "{wa:?}");
    assert_eq!(wb.len(), 1, "{wb:?}");
    assert_eq!(wa[0].lock, lock);
    assert!(wb[0].from >= wa[0].to, "B acquired before A released");
    let log = arm_log(&env).await;
    let per = assert_attributed(
        &log,
        &[
            ("A".into(), counted(&ra), wa.clone()),
            ("B".into(), counted(&rb), wb.clone()),
        ],
        &lock,
    );
    let writes_b = log
        .iter()
        .filter(|(t, m, o, _)| is_write(m, o) && *t >= wb[0].from)
        .count();
    assert_eq!(writes_b, 0, "B wrote to ARM");
    println!(
        "loser: exit 75 after {:.1}s wall (lock timeout 2 s), 0 ARM requests; queued B waited \
         {:.1}s for the lease (A held it {:.1}s, {} ARM requests, {} changes), B made {} ARM \
         requests and 0 writes",
        b_wall.as_secs_f64(),
        secs(wb[0].from - b_start),
        secs(wa[0].to - wa[0].from),
        per[0],
        a_changes,
        per[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_whole_pipelines_at_once_never_interleave() {
    let env = Env::start(EnvOptions::globojava()).await;
    let lock = nm_lock(&env);
    let run = |key: &'static str| {
        let cmds: Vec<(String, StepCmd)> = STEPS
            .iter()
            .map(|s| (s.to_string(), step(&env, s, key, 300, 15)))
            .collect();
        async move {
            let mut outs = Vec::new();
            for (s, cmd) in cmds {
                let out = cmd.run().await;
                assert_eq!(out.code, 0, "{key} {s} failed:\n{}", out.stderr);
                outs.push((s, out));
            }
            outs
        }
    };
    let t0 = Instant::now();
    let (a, b) = tokio::join!(run("pipe-a"), run("pipe-b"));
    let wall = t0.elapsed();

    let mut procs = Vec::new();
    let mut changed_by = Vec::new();
    for (key, outs) in [("pipe-a", &a), ("pipe-b", &b)] {
        for (s, out) in outs {
            let rec = record(&env, key, s).await;
            assert!(
                ["converged"].contains(&rec["status"].as_str().unwrap_or_default()),
                "{key}/{s}: {}",
                rec["status"]
            );
            let changes: u64 = out.outputs["changes"].trim().parse().unwrap_or(0);
            changed_by.push((s.clone(), key, changes));
            procs.push((format!("{key}/{s}"), counted(&rec), windows(key, out)));
        }
    }
    // verify takes no lease and only reads: leave its requests out of the attribution by
    // checking them separately (all GETs/POST reads).
    let log = arm_log(&env).await;
    let leased: Vec<(String, u64, Vec<Window>)> = procs
        .iter()
        .filter(|(_, _, w)| !w.is_empty())
        .cloned()
        .collect();
    let in_any_window = |t: &OffsetDateTime| {
        leased
            .iter()
            .any(|(_, _, ws)| ws.iter().any(|w| w.from <= *t && *t <= w.to))
    };
    let outside: Vec<_> = log.iter().filter(|(t, ..)| !in_any_window(t)).collect();
    for (t, m, o, p) in &outside {
        assert!(
            !is_write(m, o),
            "ARM write outside every lease window: {m} {p} at {t}"
        );
    }
    // Windows of different leases (network vs DNS) may overlap by design (dns-link of one run
    // beside the AVNM steps of the other); windows of one lease never do.
    let nm_procs: Vec<(String, u64, Vec<Window>)> = leased
        .iter()
        .filter(|(_, _, ws)| ws.iter().all(|w| w.lock == lock))
        .cloned()
        .collect();
    let dns_procs: Vec<(String, u64, Vec<Window>)> = leased
        .iter()
        .filter(|(_, _, ws)| ws.iter().all(|w| w.lock != lock))
        .cloned()
        .collect();
    for group in [&nm_procs, &dns_procs] {
        for (i, a) in group.iter().enumerate() {
            for b in &group[i + 1..] {
                for wa in &a.2 {
                    for wb in &b.2 {
                        assert!(
                            wa.lock != wb.lock || wa.to <= wb.from || wb.to <= wa.from,
                            "lease windows overlap: {wa:?} and {wb:?}"
                        );
                    }
                }
            }
        }
    }
    let commits: Vec<_> = log
        .iter()
        .filter(|(_, _, o, _)| o == "POST commit")
        .collect();
    assert!(!commits.is_empty(), "the pipelines committed nothing");
    for (t, _, _, p) in &commits {
        let holders: Vec<&String> = nm_procs
            .iter()
            .filter(|(_, _, ws)| ws.iter().any(|w| w.from <= *t && *t <= w.to))
            .map(|(n, ..)| n)
            .collect();
        assert_eq!(holders.len(), 1, "commit {p} at {t}: holders {holders:?}");
    }
    let total_in_nm = log
        .iter()
        .filter(|(t, ..)| {
            nm_procs
                .iter()
                .any(|(_, _, ws)| ws.iter().any(|w| w.from <= *t && *t <= w.to))
        })
        .count();
    // Each step's writes were made by exactly one of the runs (the other found nothing to do).
    for s in STEPS {
        let by: Vec<(&str, u64)> = changed_by
            .iter()
            .filter(|(n, _, c)| n == s && *c > 0)
            .map(|(_, k, c)| (*k, *c))
            .collect();
        assert!(
            by.len() <= 1,
            "{s} changed things in both runs (lost or duplicated update): {by:?}"
        );
    }
    let stats = env.stats().await;
    println!(
        "two pipelines ({} steps each) at once: {:.1}s wall; {} network-lease windows, {} DNS; \
         {} ARM requests ({} inside network windows), {} commits, writes {:?}; changes by \
         step/run {:?}",
        STEPS.len(),
        wall.as_secs_f64(),
        nm_procs.iter().map(|p| p.2.len()).sum::<usize>(),
        dns_procs.iter().map(|p| p.2.len()).sum::<usize>(),
        log.len(),
        total_in_nm,
        commits.len(),
        write_ops(&stats),
        changed_by
            .iter()
            .filter(|c| c.2 > 0)
            .map(|(s, k, c)| format!("{s}/{k}={c}"))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infra_step_and_fw_policy_share_the_network_lease() {
    let env = Env::start(EnvOptions::globojava()).await;
    let first = FIRST_WRITER;
    let lock = nm_lock(&env);
    throttle_next_read(&env, 5).await;
    let infra = step(&env, first, "infra-1", 60, 15).spawn();
    wait_for_requests(&env, 1).await;
    let fw = step(&env, "fw-policy", "fw-1", 120, 15).spawn();
    let infra = infra.wait().await;
    let fw = fw.wait().await;
    assert_eq!(infra.code, 0, "{}", infra.stderr);
    assert_eq!(fw.code, 0, "{}", fw.stderr);
    let (wi, wf) = (windows("infra", &infra), windows("fw", &fw));
    assert_eq!(wi.len(), 1);
    assert_eq!(wf.len(), 1);
    assert_eq!(wi[0].lock, lock, "the infra step's lease");
    assert_eq!(wf[0].lock, lock, "fw-policy takes the same lease");
    assert!(
        wf[0].from >= wi[0].to,
        "fw-policy acquired before the infra step released"
    );
    let log = arm_log(&env).await;
    let per = assert_attributed(
        &log,
        &[
            (
                "infra".into(),
                counted(&record(&env, "infra-1", first).await),
                wi.clone(),
            ),
            (
                "fw-policy".into(),
                counted(&record(&env, "fw-1", "fw-policy").await),
                wf.clone(),
            ),
        ],
        &lock,
    );
    println!(
        "fw-policy waited {:.1}s for {first}'s lease {lock}; {} + {} ARM requests, none interleaved",
        secs(wf[0].from - wi[0].from),
        per[0],
        per[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holders_lease_expires_and_the_next_run_takes_over() {
    let env = Env::start(EnvOptions::globojava()).await;
    let first = FIRST_WRITER;
    let lock = nm_lock(&env);
    // The victim sits in its lease (15 s, renewed every 5 s) on a 60 s Retry-After.
    throttle_next_read(&env, 60).await;
    let mut victim = step(&env, first, "killed-1", 60, 15).spawn();
    wait_for_requests(&env, 1).await;
    // Let it renew at least once, so the takeover below waits for the expiry of a renewed lease.
    tokio::time::sleep(Duration::from_secs(6)).await;
    victim.kill();
    let killed_at = OffsetDateTime::now_utc();
    let v = victim.wait().await;
    assert_eq!(v.code, -1, "killed by a signal:\n{}", v.stderr);
    reqwest_delete_faults(&env).await;

    // The lease is still held by the dead process: a run that does not wait gets 75.
    let quick = step(&env, first, "next-1", 0, 15).run().await;
    assert_eq!(quick.code, 75, "{}", quick.stderr);
    assert!(
        quick
            .stderr
            .contains(&format!("held by {first} run killed-1 pid ")),
        "{}",
        quick.stderr
    );
    // The next run waits for the service to expire it and converges.
    let next = step(&env, first, "next-1", 60, 15).run().await;
    assert_eq!(next.code, 0, "{}", next.stderr);
    let w = windows("next", &next);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].lock, lock);
    let waited = w[0].from - killed_at;
    let rec = record(&env, "next-1", first).await;
    assert_eq!(rec["status"], "converged");
    let again = step(&env, first, "next-2", 0, 15).run().await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.outputs["changes"].trim(), "0", "{}", again.stdout);
    println!(
        "killed holder's 15 s lease taken over {:.1}s after the SIGKILL; the next run \
         converged ({} changes, {} ARM requests), a third made 0 changes",
        secs(waited),
        next.outputs["changes"].trim(),
        counted(&rec)
    );
}

async fn reqwest_delete_faults(env: &Env) {
    let r = reqwest::Client::new()
        .delete(format!("{}/_sim/faults", env.sim.url))
        .send()
        .await
        .expect("delete faults");
    assert!(r.status().is_success());
}
