//! `netstep-bench`: runs netstep's pipelines (the pipeline YAML, through `netstep-run`)
//! against armsim at several estate sizes and reports request counts, wall time against the
//! critical-path lower bound, a sequential baseline, peak RSS, start-up time and binary
//! sizes. See docs/performance.md.

mod dag;
mod estate;
mod model;
mod sim;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Value, json};

use estate::Size;
use sim::{Armsim, Knobs};

#[derive(Debug, Parser)]
#[command(
    name = "netstep-bench",
    about = "Benchmark netstep's pipelines against armsim at planet scale (see docs/performance.md)."
)]
struct Args {
    /// Sizes as REGIONSxSPOKES, comma-separated (7x2 is GloboJava's example itself).
    #[arg(long, default_value = "7x2,20x10,60x20", value_delimiter = ',')]
    sizes: Vec<String>,
    /// armsim latency per ARM request (mean).
    #[arg(long, default_value_t = 80)]
    latency_ms: u64,
    /// armsim latency jitter (uniform, +/-).
    #[arg(long, default_value_t = 20)]
    jitter_ms: u64,
    /// Scale of Azure's operation durations (LRO 20 s, AVNM deployment 300 s, Azure Policy
    /// evaluation 300 s) in armsim; request latency is never scaled.
    #[arg(long, default_value_t = 0.01)]
    time_scale: f64,
    /// JSON results file.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    /// Release binaries [default: <workspace>/target/release, built first].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Do not run `cargo build --release` first (use the binaries in --bin-dir as they are).
    #[arg(long)]
    no_build: bool,
    /// Run nothing: merge these results files (their sizes, in order) into --out and print
    /// the table (e.g. sizes measured in separate invocations).
    #[arg(long, value_delimiter = ',')]
    merge: Vec<PathBuf>,
}

/// Azure's durations at time scale 1 (seconds): a typical ARM LRO (firewall policy, DNS zone
/// and link PUTs take 10-60 s), an AVNM goal-state deployment, Azure Policy's evaluation lag.
const AZURE_LRO_S: f64 = 20.0;
const AZURE_DEPLOY_S: f64 = 300.0;
const AZURE_POLICY_S: f64 = 300.0;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netstep-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.join("../..")
        .canonicalize()
        .unwrap_or(here.join("../.."))
}

fn run(args: Args) -> Result<()> {
    if !(args.time_scale > 0.0 && args.time_scale <= 1.0) {
        bail!("--time-scale must be in (0, 1]");
    }
    let sizes = args
        .sizes
        .iter()
        .map(|s| Size::parse(s).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    let root = workspace_root();
    if !args.merge.is_empty() {
        return merge(&args.merge, &root.join(&args.out));
    }
    let bin_dir = args
        .bin_dir
        .clone()
        .unwrap_or_else(|| root.join("target/release"));
    if !args.no_build {
        eprintln!("netstep-bench: cargo build --release (step binaries, armsim, netstep-run)");
        let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&root)
            .args([
                "build",
                "--release",
                "--workspace",
                "--bins",
                "--exclude",
                "netstep-bench",
            ])
            .status()
            .context("cargo build")?;
        if !st.success() {
            bail!("cargo build --release failed");
        }
    }
    let bin_dir = bin_dir.canonicalize().unwrap_or(bin_dir);
    let pipelines = [
        ("infra", root.join("workflows/pipeline-infra.yaml")),
        ("fw-policy", root.join("workflows/pipeline-fw-policy.yaml")),
    ];
    let mut dags = BTreeMap::new();
    for (name, p) in &pipelines {
        dags.insert(*name, dag::load(p, &bin_dir)?);
    }
    let mut binaries: Vec<String> = dags
        .values()
        .flatten()
        .filter_map(|t| t.binary.clone())
        .collect();
    binaries.sort();
    binaries.dedup();
    let sizes_json = binary_sizes(&bin_dir, &binaries)?;
    let knobs = Knobs {
        latency_ms: args.latency_ms,
        jitter_ms: args.jitter_ms,
        lro_ms: scaled(AZURE_LRO_S, args.time_scale),
        deploy_ms: scaled(AZURE_DEPLOY_S, args.time_scale),
        policy_ms: scaled(AZURE_POLICY_S, args.time_scale),
    };
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let mut results = Vec::new();
    for size in &sizes {
        eprintln!(
            "netstep-bench: size {} ({} VNets)",
            size.label(),
            size.vnets()
        );
        let r = bench_size(&root, &bin_dir, &out_dir, *size, knobs, &pipelines, &dags)?;
        print_size(&r);
        results.push(r);
    }
    let doc = json!({
        "generated_unix_s": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "settings": {
            "latency_ms": knobs.latency_ms, "jitter_ms": knobs.jitter_ms,
            "time_scale": args.time_scale, "lro_ms": knobs.lro_ms,
            "deploy_ms": knobs.deploy_ms, "policy_ms": knobs.policy_ms,
            "armsim_buckets": {"reads": "250/25", "writes": "200/10"},
        },
        "binary_sizes_bytes": sizes_json,
        "sizes": results,
    });
    let out = if args.out.is_absolute() {
        args.out.clone()
    } else {
        root.join(&args.out)
    };
    if let Some(p) = out.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&doc)?)?;
    println!();
    print_table(&doc);
    eprintln!("netstep-bench: results in {}", out.display());
    Ok(())
}

fn merge(files: &[PathBuf], out: &Path) -> Result<()> {
    let mut doc = Value::Null;
    let mut sizes = Vec::new();
    for p in files {
        let d: Value = serde_json::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?,
        )
        .with_context(|| format!("{}", p.display()))?;
        if doc.is_null() {
            doc = d.clone();
        } else if d["settings"] != doc["settings"] {
            bail!(
                "{}: measured with other settings than {}",
                p.display(),
                files[0].display()
            );
        }
        sizes.extend(d["sizes"].as_array().cloned().unwrap_or_default());
    }
    doc["sizes"] = Value::Array(sizes);
    std::fs::write(out, serde_json::to_string_pretty(&doc)?)?;
    print_table(&doc);
    Ok(())
}

fn scaled(seconds: f64, scale: f64) -> u64 {
    (seconds * scale * 1000.0).round().max(1.0) as u64
}

fn binary_sizes(bin_dir: &Path, binaries: &[String]) -> Result<Value> {
    let mut m = serde_json::Map::new();
    for b in binaries {
        let p = bin_dir.join(b);
        let len = std::fs::metadata(&p)
            .with_context(|| format!("{}", p.display()))?
            .len();
        m.insert(b.clone(), json!(len));
    }
    Ok(Value::Object(m))
}

#[allow(clippy::too_many_arguments)]
fn bench_size(
    root: &Path,
    bin_dir: &Path,
    out_dir: &Path,
    size: Size,
    knobs: Knobs,
    pipelines: &[(&str, PathBuf); 2],
    dags: &BTreeMap<&str, Vec<dag::Task>>,
) -> Result<Value> {
    let dir = out_dir.join(size.label());
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    if size.is_globojava() {
        std::fs::copy(
            root.join("examples/globojava/intent.yaml"),
            dir.join("intent.yaml"),
        )?;
        std::fs::copy(
            root.join("examples/globojava/world.json"),
            dir.join("world.json"),
        )?;
    } else {
        std::fs::write(dir.join("intent.yaml"), estate::intent_yaml(size))?;
        std::fs::write(
            dir.join("world.json"),
            serde_json::to_string(&estate::world(size))?,
        )?;
    }
    let state = dir.join("state");
    std::fs::create_dir_all(&state)?;
    let sim = Armsim::start(
        bin_dir,
        &dir.join("world.json"),
        knobs,
        &dir.join("armsim.log"),
    )?;
    let mut phases = Vec::new();
    let mut log_seen = 0usize;
    for (pipeline, path) in pipelines {
        for (run, key) in [("first", "first"), ("noop", "noop")] {
            let name = format!("{pipeline}-{run}");
            eprintln!("netstep-bench:   {} {name}", size.label());
            let p = run_phase(
                bin_dir,
                &dir,
                &sim,
                knobs,
                &name,
                path,
                &format!("bench-{pipeline}-{key}"),
                &dags[pipeline],
                &mut log_seen,
            )?;
            phases.push(p);
        }
    }
    sim.stop();
    Ok(json!({
        "size": size.label(),
        "regions": size.regions,
        "spokes_per_region": size.spokes,
        "vnets": size.vnets(),
        "dns_zones": estate::zone_count(size),
        "managed_resources": estate::managed_resources(size),
        "phases": phases,
    }))
}

/// Writes `<dir>/<binary>` wrappers: each records its spawn time and arguments, then runs the
/// real binary under `/usr/bin/time -f %M` (peak RSS from the child's wait4 rusage).
fn write_wrappers(
    bin_dir: &Path,
    wrap: &Path,
    binaries: &[String],
    spawn_log: &Path,
    rss_log: &Path,
) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(wrap)?;
    for b in binaries {
        let real = bin_dir.join(b);
        let script = format!(
            "#!/bin/sh\n# netstep-bench wrapper: spawn time, then peak RSS of the real step.\necho \"$(date +%s%N) {b}\" >> '{}'\nexec /usr/bin/time -a -o '{}' -f '{b} %M' '{}' \"$@\"\n",
            spawn_log.display(),
            rss_log.display(),
            real.display()
        );
        let p = wrap.join(b);
        std::fs::write(&p, script)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_phase(
    bin_dir: &Path,
    dir: &Path,
    sim: &Armsim,
    knobs: Knobs,
    name: &str,
    pipeline: &Path,
    run_key: &str,
    tasks: &[dag::Task],
    log_seen: &mut usize,
) -> Result<Value> {
    let pdir = dir.join(name);
    std::fs::create_dir_all(&pdir)?;
    let binaries: Vec<String> = {
        let mut b: Vec<String> = tasks.iter().filter_map(|t| t.binary.clone()).collect();
        // The onExit handler's binary too (record-outcome is a mode of verify).
        b.push("verify".into());
        b.sort();
        b.dedup();
        b
    };
    let spawn_log = pdir.join("spawns.txt");
    let rss_log = pdir.join("rss.txt");
    write_wrappers(bin_dir, &pdir.join("bin"), &binaries, &spawn_log, &rss_log)?;
    let before = sim.get("/_sim/stats")?;
    let lro_poll = (knobs.lro_ms / 4).max(20);
    let deploy_poll = (knobs.deploy_ms / 10).max(50);
    let policy_poll = (knobs.policy_ms / 10).max(50);
    let started = Instant::now();
    let out = Command::new(bin_dir.join("netstep-run"))
        .current_dir(dir)
        .arg("run")
        .arg("--pipeline")
        .arg(pipeline)
        .arg("--bin-dir")
        .arg(pdir.join("bin"))
        .arg("--workdir")
        .arg(pdir.join("work"))
        .arg("--report-json")
        .arg(pdir.join("report.json"))
        .arg("--no-step-logs")
        .args(["-p", "revision=bench", "-p", "mode=apply"])
        .args(["-p", "intent-path=intent.yaml", "-p", "log-format=json"])
        .arg("-p")
        .arg(format!("state=file://{}", dir.join("state").display()))
        .arg("-p")
        .arg(format!("run-key={run_key}"))
        .arg("-p")
        .arg(format!("arm-endpoint={}", sim.url()))
        .env("NETSTEP_ARM_TOKEN", "netstep-bench")
        .env("NETSTEP_LRO_POLL_MS", lro_poll.to_string())
        .env("NETSTEP_DEPLOY_POLL_MS", deploy_poll.to_string())
        .env("NETSTEP_POLICY_POLL_MS", policy_poll.to_string())
        .stdin(Stdio::null())
        .output()
        .context("running netstep-run")?;
    let wall = started.elapsed().as_secs_f64();
    std::fs::write(pdir.join("netstep-run.stderr"), &out.stderr)?;
    let report: Value = std::fs::read_to_string(pdir.join("report.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    if !out.status.success() {
        bail!(
            "{name}: netstep-run exited {:?}; see {} and {}",
            out.status.code(),
            pdir.join("netstep-run.stderr").display(),
            pdir.join("work").display()
        );
    }
    let after = sim.get("/_sim/stats")?;
    let log = sim.get("/_sim/log")?;
    let entries: Vec<Value> = log
        .as_array()
        .map(|a| a.iter().skip(*log_seen).cloned().collect())
        .unwrap_or_default();
    *log_seen += entries.len();
    std::fs::write(
        pdir.join("armsim-log.json"),
        serde_json::to_string(&entries)?,
    )?;
    let delta = |k: &str| after[k].as_u64().unwrap_or(0) - before[k].as_u64().unwrap_or(0);
    let mut by_op = BTreeMap::new();
    if let (Some(a), Some(b)) = (
        after["by_operation"].as_object(),
        before["by_operation"].as_object(),
    ) {
        for (k, v) in a {
            let d = v.as_u64().unwrap_or(0) - b.get(k).and_then(Value::as_u64).unwrap_or(0);
            if d > 0 {
                by_op.insert(k.clone(), d);
            }
        }
    }
    let totals = json!({
        "requests": delta("requests"),
        "reads": delta("reads"), "writes": delta("writes"), "deletes": delta("deletes"),
        "polls": delta("polls"), "throttled_429": delta("throttled"),
        "by_operation": by_op,
    });
    // Per step: wall time from the runner's report, requests from the log by user agent.
    let node_wall: BTreeMap<String, f64> = report["nodes"]
        .as_array()
        .map(|ns| {
            ns.iter()
                .filter_map(|n| {
                    Some((
                        n["name"].as_str()?.to_string(),
                        n["durationSeconds"].as_f64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let spawns = read_spawns(&spawn_log);
    let rss = read_rss(&rss_log);
    let mut steps = Vec::new();
    let mut bounds = BTreeMap::new();
    let mut sequential_sum = 0.0;
    for t in tasks {
        let Some(bin) = &t.binary else { continue };
        let mine: Vec<&Value> = entries
            .iter()
            .filter(|e| {
                e["user_agent"]
                    .as_str()
                    .is_some_and(|u| u.rsplit(' ').next() == Some(bin.as_str()))
            })
            .collect();
        let req = model::Requests::from_log(&mine);
        let chain = model::step_chain(&t.name, &req, knobs);
        bounds.insert(t.name.clone(), chain.seconds);
        sequential_sum += model::sequential_seconds(&req, knobs);
        steps.push(json!({
            "task": t.name,
            "binary": bin,
            "wall_s": node_wall.get(&t.name),
            "requests": req.to_json(),
            "latency_chain": chain.to_json(),
            "peak_rss_kb": rss.get(bin),
            "start_to_first_request_ms": first_request_ms(&spawns, bin, &mine),
        }));
    }
    let (lat_path, path) = dag::critical_path(tasks, &bounds);
    let reads = delta("reads") as f64;
    let writes = (delta("writes") + delta("deletes")) as f64;
    let budget_w = ((writes - 200.0).max(0.0)) / 10.0;
    let budget_r = ((reads - 250.0).max(0.0)) / 25.0;
    let bound = lat_path.max(budget_w).max(budget_r);
    // The converging steps alone (verify reads every VNet's effective configuration by
    // design: AVNM has no bulk membership API).
    let converge: Vec<&Value> = entries
        .iter()
        .filter(|e| {
            !e["user_agent"]
                .as_str()
                .is_some_and(|u| u.ends_with(" verify"))
        })
        .collect();
    let converge_req = model::Requests::from_log(&converge);
    let sequential = sequential_sum;
    Ok(json!({
        "phase": name,
        "run_key": run_key,
        "outcome": report["phase"],
        "wall_s": wall,
        "requests": totals,
        "requests_without_verify": converge_req.to_json(),
        "bound": {
            "seconds": bound,
            "latency_critical_path_s": lat_path,
            "critical_path": path,
            "write_budget_s": budget_w,
            "read_budget_s": budget_r,
        },
        "wall_over_bound": if bound > 0.0 { wall / bound } else { 0.0 },
        "sequential_s": sequential,
        "speedup_vs_sequential": if wall > 0.0 { sequential / wall } else { 0.0 },
        "steps": steps,
    }))
}

fn read_spawns(p: &Path) -> Vec<(f64, String)> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (ns, b) = l.split_once(' ')?;
            Some((ns.parse::<f64>().ok()? / 1e6, b.trim().to_string()))
        })
        .collect()
}

fn read_rss(p: &Path) -> BTreeMap<String, u64> {
    let mut m: BTreeMap<String, u64> = BTreeMap::new();
    for l in std::fs::read_to_string(p).unwrap_or_default().lines() {
        if let Some((b, kb)) = l.rsplit_once(' ')
            && let Ok(kb) = kb.trim().parse::<u64>()
        {
            let e = m.entry(b.trim().to_string()).or_default();
            *e = (*e).max(kb);
        }
    }
    m
}

/// For each spawn of `bin` that made ARM requests: its first request's arrival minus the
/// spawn time. Returns the worst (largest) value.
fn first_request_ms(spawns: &[(f64, String)], bin: &str, mine: &[&Value]) -> Option<f64> {
    let times: Vec<f64> = spawns
        .iter()
        .filter(|(_, b)| b == bin)
        .map(|(t, _)| *t)
        .collect();
    let mut worst: Option<f64> = None;
    for (i, t) in times.iter().enumerate() {
        let next = times.get(i + 1).copied().unwrap_or(f64::INFINITY);
        let first = mine
            .iter()
            .filter_map(|e| e["arrived_unix_ms"].as_f64())
            .filter(|a| *a >= *t && *a < next)
            .fold(f64::INFINITY, f64::min);
        if first.is_finite() {
            let d = first - t;
            worst = Some(worst.map_or(d, |w: f64| w.max(d)));
        }
    }
    worst
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn print_size(r: &Value) {
    eprintln!("netstep-bench: {} done", r["size"].as_str().unwrap_or("?"));
}

fn print_table(doc: &Value) {
    println!(
        "{:<7} {:<15} {:>6} {:>6} {:>6} {:>5} {:>4} {:>8} {:>8} {:>6} {:>8} {:>6}",
        "size",
        "phase",
        "reqs",
        "reads",
        "writes",
        "polls",
        "429",
        "wall s",
        "bound s",
        "ratio",
        "seq s",
        "x seq"
    );
    for s in doc["sizes"].as_array().into_iter().flatten() {
        for p in s["phases"].as_array().into_iter().flatten() {
            let r = &p["requests"];
            println!(
                "{:<7} {:<15} {:>6} {:>6} {:>6} {:>5} {:>4} {:>8.1} {:>8.1} {:>6.2} {:>8.1} {:>6.1}",
                s["size"].as_str().unwrap_or(""),
                p["phase"].as_str().unwrap_or(""),
                u(&r["requests"]),
                u(&r["reads"]),
                u(&r["writes"]) + u(&r["deletes"]),
                u(&r["polls"]),
                u(&r["throttled_429"]),
                f(&p["wall_s"]),
                f(&p["bound"]["seconds"]),
                f(&p["wall_over_bound"]),
                f(&p["sequential_s"]),
                f(&p["speedup_vs_sequential"]),
            );
        }
        let managed = s["managed_resources"].as_f64().unwrap_or(1.0);
        let noop = |i: usize, k: &str| s["phases"][i][k]["requests"].as_f64().unwrap_or(0.0);
        println!(
            "{:<7} managed resources {}; no-op requests / managed: infra {:.3} (without verify {:.3}), fw-policy {:.3} (without verify {:.3})",
            s["size"].as_str().unwrap_or(""),
            s["managed_resources"],
            noop(1, "requests") / managed,
            noop(1, "requests_without_verify") / managed,
            noop(3, "requests") / managed,
            noop(3, "requests_without_verify") / managed,
        );
    }
    println!();
    println!(
        "{:<7} {:<15} {:<13} {:>8} {:>10} {:>12}",
        "size", "phase", "step", "wall s", "peak RSS MB", "1st req ms"
    );
    for s in doc["sizes"].as_array().into_iter().flatten() {
        for p in s["phases"].as_array().into_iter().flatten() {
            for st in p["steps"].as_array().into_iter().flatten() {
                println!(
                    "{:<7} {:<15} {:<13} {:>8.2} {:>10.1} {:>12}",
                    s["size"].as_str().unwrap_or(""),
                    p["phase"].as_str().unwrap_or(""),
                    st["task"].as_str().unwrap_or(""),
                    f(&st["wall_s"]),
                    f(&st["peak_rss_kb"]) / 1024.0,
                    st["start_to_first_request_ms"]
                        .as_f64()
                        .map_or("-".to_string(), |v| format!("{v:.1}")),
                );
            }
        }
    }
    println!();
    println!("binary sizes (stripped release):");
    if let Some(m) = doc["binary_sizes_bytes"].as_object() {
        for (b, v) in m {
            println!("  {b:<13} {:>6.2} MB", f(v) / 1e6);
        }
    }
}
