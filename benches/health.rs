//! CPU cost of active health checks: 1,000 endpoints checked every second, side by side for the
//! `http`, `tcp` and `none` kinds, in one run.
//!
//! The backends run in a child process (this binary re-run with `--serve N`) so that only the
//! checker's work is counted. CPU time is read from /proc/self/stat (user + system).
//!
//! `cargo bench --bench health` measures (10 s per kind); under `cargo test` it runs a tiny
//! version (20 endpoints, 1 s) so the benchmark itself is kept working.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aliasd::backend;
use aliasd::check::{CheckConfig, CheckKind, Health};
use aliasd::health::{Checker, HealthBoard};
use aliasd::model::{Endpoint, ServiceName};
use tokio_util::sync::CancellationToken;

/// CPU seconds (user + system) used by this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// The child: N backends on loopback, their addresses on stdout, until stdin closes.
fn serve(n: usize) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let stop = CancellationToken::new();
        let mut out = String::new();
        for i in 0..n {
            let ip = format!("127.0.{}.{}", 100 + i / 250, i % 250 + 1);
            let b = backend::spawn(format!("{ip}:0").parse().unwrap(), "bench", stop.clone())
                .await
                .expect("bind backend");
            out.push_str(&format!("{}\n", b.addr));
        }
        print!("{out}");
        std::io::stdout().flush().unwrap();
        // Serve until the parent closes our stdin.
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await
        .unwrap();
        stop.cancel();
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        serve(args[i + 1].parse().expect("count"));
        return;
    }
    let measuring = args.iter().any(|a| a == "--bench");
    let (n, seconds) = if measuring { (1000, 10) } else { (20, 1) };

    let mut child = Command::new(&args[0])
        .args(["--serve", &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the backends");
    let reader = BufReader::new(child.stdout.take().unwrap());
    let addrs: Vec<SocketAddr> = reader
        .lines()
        .take(n)
        .map(|l| l.unwrap().parse().unwrap())
        .collect();
    assert_eq!(addrs.len(), n, "the backends did not all start");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("{n} endpoints, interval 1s, {seconds}s per kind (CPU of the checking process only)");
    println!(
        "{:<6} {:>12} {:>10} {:>14}",
        "kind", "checks/s", "CPU %", "CPU µs/check"
    );
    for (label, kind) in [
        (
            "http",
            CheckKind::Http {
                path: "/healthz".into(),
                expect: 200..=399,
                host: None,
            },
        ),
        ("tcp", CheckKind::Tcp),
        ("none", CheckKind::None),
    ] {
        let check = CheckConfig {
            kind,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            rise: 2,
            fall: 3,
        };
        let service: ServiceName = "bench".parse().unwrap();
        let endpoints: Vec<Endpoint> = addrs
            .iter()
            .map(|a| a.to_string().parse().unwrap())
            .collect();
        let (checks, cpu) = rt.block_on(async {
            let board = Arc::new(HealthBoard::default());
            let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
            tokio::spawn(async move { while rx.recv().await.is_some() {} });
            let stop = CancellationToken::new();
            let targets = endpoints
                .iter()
                .map(|e| ((service.clone(), *e), check.clone(), Health::Unknown));
            let passes = |board: &HealthBoard| -> u64 {
                endpoints
                    .iter()
                    .filter_map(|e| board.get(&service, e))
                    .map(|s| u64::from(s.passes) + u64::from(s.failures))
                    .sum()
            };
            let mut checker = Checker::new(board.clone(), tx, 256, stop.clone());
            checker.reconcile(targets);
            // Let the first round spread out before measuring.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (checks0, cpu0, t0) = (passes(&board), cpu_seconds(), Instant::now());
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            let (checks1, cpu1, elapsed) = (passes(&board), cpu_seconds(), t0.elapsed());
            stop.cancel();
            drop(checker);
            (
                (checks1 - checks0) as f64 / elapsed.as_secs_f64(),
                (cpu1 - cpu0) / elapsed.as_secs_f64(),
            )
        });
        let per_check = if checks > 0.0 {
            format!("{:.1}", cpu / checks * 1e6)
        } else {
            "-".into()
        };
        println!(
            "{label:<6} {checks:>12.0} {:>10.1} {per_check:>14}",
            cpu * 100.0
        );
    }
    drop(child.stdin.take());
    let _ = child.wait();
}
