//! What the proxy's measurements for the gates of a stepped promotion (issue 22) cost per
//! proxied request: the bucket of a latency, and one attempt recorded into a service's counters
//! (a few relaxed atomic adds), alone and with two threads adding to the same counters (the
//! worst case: every request of an alias on one service, proxied by two worker threads). One
//! relaxed atomic add is printed beside them for scale; the proxy already makes several per
//! request (its per-member counters). Reading a window (the writer, once per judgment) is shown
//! last.
//!
//! `cargo bench --bench measure` measures; under `cargo test` it runs a few iterations only, so
//! the benchmark itself is kept working.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aliasd::gates::bucket_of;
use aliasd::proxy::ServiceCounters;

/// Nanoseconds per call of `op`, over `iterations` calls.
fn time_per_op(iterations: u64, mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iterations {
        op();
    }
    start.elapsed().as_nanos() as f64 / iterations as f64
}

/// Nanoseconds per call of `op` on each of `threads` threads at once.
fn time_per_op_on(threads: usize, iterations: u64, op: impl Fn(u64) + Sync) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| (0..iterations).for_each(&op));
        }
    });
    start.elapsed().as_nanos() as f64 / iterations as f64
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let iterations = if measuring { 20_000_000 } else { 1_000 };
    // Latencies from 50 µs to about 1 s, so the bucket search is not always the same.
    let took = |i: u64| Duration::from_micros(50 + (i * 7919) % 1_000_000);

    println!("measurement cost, {iterations} operations each (ns per operation)");
    let one = AtomicU64::new(0);
    let add = time_per_op(iterations, || {
        one.fetch_add(1, Ordering::Relaxed);
    });
    println!("{:<44} {add:>8.1}", "one relaxed atomic add (for scale)");
    let mut i = 0;
    let bucket = time_per_op(iterations, || {
        i += 1;
        black_box(bucket_of(black_box(took(i))));
    });
    println!("{:<44} {bucket:>8.1}", "bucket of a latency");
    let counters = ServiceCounters::default();
    let mut i = 0;
    let record = time_per_op(iterations, || {
        i += 1;
        counters.finished(i % 100 == 0, Some(took(i)));
    });
    println!("{:<44} {record:>8.1}", "an attempt recorded, one thread");
    let shared = Arc::new(ServiceCounters::default());
    let contended = time_per_op_on(2, iterations, |i| {
        shared.finished(i % 100 == 0, Some(took(i)));
    });
    println!(
        "{:<44} {contended:>8.1}",
        "an attempt recorded, two threads, same service"
    );
    let reads = if measuring { 100_000 } else { 100 };
    let window = time_per_op(reads, || {
        black_box(shared.window());
    });
    println!(
        "{:<44} {window:>8.1}",
        "a window read (the writer, per judgment)"
    );
}
