//! `armsim` binary: serves the simulator until SIGTERM/SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "armsim",
    about = "Azure Resource Manager simulator for netstep tests"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// World file (JSON) with subscriptions, resource groups and existing resources.
    #[arg(long)]
    world: Option<PathBuf>,
    /// Latency per ARM request: MS or MS,JITTER.
    #[arg(long, default_value = "0")]
    latency_ms: String,
    /// Seed for latency jitter and fault rates.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 200)]
    policy_delay_ms: u64,
    #[arg(long, default_value_t = 300)]
    deploy_delay_ms: u64,
    #[arg(long, default_value_t = 100)]
    lro_delay_ms: u64,
    /// Window after a commit during which listDeploymentStatus is empty.
    #[arg(long, default_value_t = 50)]
    status_empty_ms: u64,
    /// Token buckets as SIZE/REFILL_PER_SECOND.
    #[arg(long, default_value = "250/25")]
    read_limit: String,
    #[arg(long, default_value = "200/10")]
    write_limit: String,
    #[arg(long, default_value = "200/10")]
    delete_limit: String,
    /// Record every ARM exchange (oav format) into this folder.
    #[arg(long)]
    record_traffic: Option<PathBuf>,
}

fn bucket(s: &str, flag: &str) -> Result<(u32, f64), String> {
    let (a, b) = s
        .split_once('/')
        .ok_or_else(|| format!("--{flag}: expected SIZE/REFILL, got '{s}'"))?;
    let size = a.parse::<u32>().map_err(|e| format!("--{flag}: {e}"))?;
    let rate = b.parse::<f64>().map_err(|e| format!("--{flag}: {e}"))?;
    if size == 0 || rate <= 0.0 {
        return Err(format!("--{flag}: size and refill must be positive"));
    }
    Ok((size, rate))
}

fn config(args: &Args) -> Result<armsim::Config, String> {
    let (lat, jit) = match args.latency_ms.split_once(',') {
        Some((a, b)) => (
            a.trim()
                .parse::<u64>()
                .map_err(|e| format!("--latency-ms: {e}"))?,
            b.trim()
                .parse::<u64>()
                .map_err(|e| format!("--latency-ms: {e}"))?,
        ),
        None => (
            args.latency_ms
                .trim()
                .parse::<u64>()
                .map_err(|e| format!("--latency-ms: {e}"))?,
            0,
        ),
    };
    let world = match &args.world {
        Some(p) => Some(armsim::read_world(p).map_err(|e| e.to_string())?),
        None => None,
    };
    let limits = armsim::Limits {
        reads: bucket(&args.read_limit, "read-limit")?,
        writes: bucket(&args.write_limit, "write-limit")?,
        deletes: bucket(&args.delete_limit, "delete-limit")?,
        ..Default::default()
    };
    Ok(armsim::Config {
        listen: args.listen,
        world,
        latency: Duration::from_millis(lat),
        jitter: Duration::from_millis(jit),
        seed: args.seed,
        policy_delay: Duration::from_millis(args.policy_delay_ms),
        deploy_delay: Duration::from_millis(args.deploy_delay_ms),
        lro_delay: Duration::from_millis(args.lro_delay_ms),
        status_empty_window: Duration::from_millis(args.status_empty_ms),
        limits,
        record_traffic: args.record_traffic.clone(),
        ..Default::default()
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("armsim: {e}");
            return ExitCode::from(2);
        }
    };
    let handle = match armsim::start(cfg).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {}", handle.url);
        let _ = out.flush();
    }
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("armsim: cannot install SIGTERM handler: {e}");
            return ExitCode::from(1);
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    handle.shutdown().await;
    ExitCode::SUCCESS
}
