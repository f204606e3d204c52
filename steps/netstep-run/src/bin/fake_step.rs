//! `netstep-fake-step`: a configurable stand-in for a step binary, used by netstep-run's
//! tests (and handy for trying pipelines without the real steps). All flags are
//! `--key=value`; empty values are ignored so templates can pass optional inputs.
//!
//! * `--name=N` label used in the log; `--log=FILE` appends `start N <unix-nanos>` and
//!   `end N <unix-nanos>` (and `value N V` / `env N V`) lines.
//! * `--touch=FILE` creates FILE at start; `--wait-for=FILE` waits until FILE exists
//!   (gives up after 120 s with exit 1) — a barrier to prove two steps run concurrently.
//! * `--sleep-ms=N`; `--pid-file=FILE` writes the PID.
//! * `--counter=FILE` counts attempts in FILE; with `--fail-times=N --fail-code=C` the
//!   first N attempts exit C.
//! * `--write=PATH=VALUE` writes VALUE to PATH (creating parents); `--write-env=PATH=VAR`
//!   writes the value of env VAR (or `unset`).
//! * `--read=FILE` logs `read N <content of FILE>`.
//! * `--exit=C` exit code at the end (default 0); `--print=TEXT` prints TEXT to stdout.
//!
//! Invoked as `armsim` (e.g. via a symlink) it fakes the ARM simulator's CLI: binds
//! 127.0.0.1:0, prints `listening on http://127.0.0.1:PORT`, writes its PID to
//! `<world>.pid` and serves nothing until killed.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn append(path: &str, line: &str) {
    if path.is_empty() {
        return;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| die(2, &format!("{path}: {e}")));
    // One write per line: appends of small lines are atomic across processes.
    let _ = f.write_all(format!("{line}\n").as_bytes());
}

fn die(code: i32, msg: &str) -> ! {
    eprintln!("netstep-fake-step: {msg}");
    std::process::exit(code)
}

fn write_file(spec: &str, value_of: impl Fn(&str) -> String) {
    let Some((path, v)) = spec.split_once('=') else {
        die(2, &format!("expected PATH=VALUE, got {spec}"))
    };
    if let Some(parent) = Path::new(path).parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(path, value_of(v)).unwrap_or_else(|e| die(2, &format!("{path}: {e}")));
}

fn fake_armsim(args: &[String]) -> ! {
    let mut world = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--world" {
            world = it.next().cloned();
        }
    }
    let world = world.unwrap_or_else(|| die(2, "--world is required"));
    if !Path::new(&world).is_file() {
        die(2, &format!("{world}: no such file"));
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| die(1, &format!("bind: {e}")));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    std::fs::write(format!("{world}.pid"), std::process::id().to_string())
        .unwrap_or_else(|e| die(1, &format!("pid file: {e}")));
    println!("listening on http://127.0.0.1:{port}");
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let argv0 = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string());
    if argv0.as_deref() == Some("armsim") {
        fake_armsim(&argv[1..]);
    }
    let mut opts: Vec<(String, String)> = Vec::new();
    for a in &argv[1..] {
        let Some(rest) = a.strip_prefix("--") else {
            die(2, &format!("unexpected argument {a}"))
        };
        let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
        opts.push((k.to_string(), v.to_string()));
    }
    let get = |k: &str| -> String {
        opts.iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let num = |k: &str, default: i64| -> i64 {
        let v = get(k);
        if v.is_empty() {
            default
        } else {
            v.parse()
                .unwrap_or_else(|_| die(2, &format!("--{k}: not a number: {v}")))
        }
    };
    let name = get("name");
    let log = get("log");
    append(&log, &format!("start {name} {}", now_nanos()));
    let pid_file = get("pid-file");
    if !pid_file.is_empty() {
        std::fs::write(&pid_file, std::process::id().to_string())
            .unwrap_or_else(|e| die(2, &format!("{pid_file}: {e}")));
    }
    let touch = get("touch");
    if !touch.is_empty() {
        std::fs::write(&touch, b"").unwrap_or_else(|e| die(2, &format!("{touch}: {e}")));
    }
    let wait_for = get("wait-for");
    if !wait_for.is_empty() {
        let start = Instant::now();
        while !Path::new(&wait_for).exists() {
            if start.elapsed() > Duration::from_secs(120) {
                die(1, &format!("gave up waiting for {wait_for}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let sleep = num("sleep-ms", 0);
    if sleep > 0 {
        std::thread::sleep(Duration::from_millis(sleep as u64));
    }
    let print = get("print");
    if !print.is_empty() {
        println!("{print}");
    }
    for (k, v) in &opts {
        match k.as_str() {
            "write" if !v.is_empty() => {
                write_file(v, |x| x.to_string());
                if let Some((_, val)) = v.split_once('=') {
                    append(&log, &format!("value {name} {val}"));
                }
            }
            "read" if !v.is_empty() => {
                let content =
                    std::fs::read_to_string(v).unwrap_or_else(|e| die(1, &format!("{v}: {e}")));
                append(&log, &format!("read {name} {}", content.trim_end()));
            }
            "write-env" if !v.is_empty() => write_file(v, |var| {
                let val = std::env::var(var).unwrap_or_else(|_| "unset".into());
                append(&log, &format!("env {name} {var}={val}"));
                val
            }),
            _ => {}
        }
    }
    let counter = get("counter");
    let mut code = num("exit", 0);
    if !counter.is_empty() {
        let n = std::fs::read_to_string(&counter)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0)
            + 1;
        std::fs::write(&counter, n.to_string())
            .unwrap_or_else(|e| die(2, &format!("{counter}: {e}")));
        if n <= num("fail-times", 0) {
            code = num("fail-code", 75);
        }
    }
    eprintln!("fake step {name}: exiting with {code}");
    append(&log, &format!("end {name} {}", now_nanos()));
    std::process::exit(code as i32);
}
