//! Table tests of the histogram and the judgment.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A window of `requests` with `errors`, whose answered requests (all but the errors) took
/// `took` each.
fn window(requests: u64, errors: u64, took: Duration) -> Window {
    let mut latency = Histogram::default();
    for _ in 0..requests - errors {
        latency.record(took);
    }
    Window {
        requests,
        errors,
        latency,
    }
}

fn gates(error_ppm: Option<u32>, ratio_milli: Option<u32>, min_requests: u64) -> MeasuredGates {
    MeasuredGates {
        max_error_rate_ppm: error_ppm,
        max_latency_ratio_milli: ratio_milli,
        min_requests,
    }
}

#[test]
fn buckets_run_from_50_microseconds_to_60_seconds_in_steps_of_a_quarter() {
    assert_eq!(UPPER_BOUNDS_US[0], 50);
    assert_eq!(UPPER_BOUNDS_US[BUCKETS - 2], 60_000_000);
    for pair in UPPER_BOUNDS_US.windows(2) {
        let step = pair[1] as f64 / pair[0] as f64;
        assert!((1.2..1.3).contains(&step), "{pair:?}");
    }
    let cases = [
        (Duration::ZERO, 0),
        (Duration::from_micros(50), 0),
        (Duration::from_micros(51), 1),
        (ms(1), 14),
        (Duration::from_secs(60), BUCKETS - 2),
        (Duration::from_secs(61), BUCKETS - 1),
        (Duration::MAX, BUCKETS - 1),
    ];
    for (took, bucket) in cases {
        assert_eq!(bucket_of(took), bucket, "{took:?}");
    }
}

#[test]
fn quantiles_are_read_within_a_bucket_of_the_truth() {
    let mut h = Histogram::default();
    assert_eq!(h.p99(), None);
    for i in 1..=1000u64 {
        h.record(Duration::from_micros(i * 100));
    }
    // The true p50 is 50ms, the p99 99ms, the max 100ms.
    for (q, truth) in [(0.5, 50.0), (0.99, 99.0), (1.0, 100.0)] {
        let got = h.quantile(q).unwrap().as_secs_f64() * 1000.0;
        assert!(
            got >= truth / 1.26 && got <= truth * 1.26,
            "q{q}: {got}ms for {truth}ms"
        );
    }
    // Above 60 s all one knows is "60 s or more".
    let mut slow = Histogram::default();
    slow.record(Duration::from_secs(100));
    assert_eq!(slow.p99(), Some(Duration::from_secs(60)));
}

#[test]
fn a_window_minus_its_baseline_is_what_happened_in_between() {
    let before = window(100, 2, ms(10));
    let mut after = before.clone();
    after.add(&window(50, 5, ms(300)));
    let between = after.minus(&before);
    assert_eq!(between, window(50, 5, ms(300)));
    assert_eq!(between.latency.count(), 45);
    // Counters that went backwards (a restart) give zeros, not wrapped figures.
    assert_eq!(before.minus(&after), Window::default());
}

#[test]
fn judgments_name_the_figure_the_limit_and_the_sample() {
    use Verdict::{Breach, Pass, TooFew};
    let pct1 = Some(10_000);
    let twice = Some(2_000);
    let cases: [(&str, MeasuredGates, Window, Window, Verdict); 9] = [
        (
            "too few requests to judge",
            gates(pct1, twice, 100),
            window(99, 50, ms(10)),
            window(1000, 0, ms(10)),
            TooFew { requests: 99, needed: 100 },
        ),
        (
            "no requests at all, even without a minimum",
            gates(pct1, None, 0),
            Window::default(),
            window(1000, 0, ms(10)),
            TooFew { requests: 0, needed: 1 },
        ),
        (
            "too many errors",
            gates(pct1, None, 100),
            window(812, 173, ms(10)),
            window(1000, 0, ms(10)),
            Breach("error rate 21.3% > 1% over 812 requests".into()),
        ),
        (
            "errors within the limit",
            gates(pct1, None, 100),
            window(1000, 10, ms(10)),
            window(1000, 0, ms(10)),
            Pass("error rate 1% ≤ 1% over 1000 requests".into()),
        ),
        // Every request of a window took the same time here, so its p99 reads near the top of
        // that time's bucket (340ms as 417ms): within a quarter, as promised.
        (
            "too slow against the old version",
            gates(None, twice, 0),
            window(812, 0, ms(340)),
            window(1000, 0, ms(80)),
            Breach(
                "p99 latency 417ms is 4.86× the old version's 85.9ms > 2× over 812 requests"
                    .into(),
            ),
        ),
        (
            "as fast as the old version, with few errors",
            gates(Some(5_000), Some(1_500), 10),
            window(200, 1, ms(80)),
            window(1000, 0, ms(80)),
            Pass(
                "error rate 0.5% ≤ 0.5%, p99 latency 85.9ms is 1× the old version's 85.9ms ≤ 1.5× over 200 requests"
                    .into(),
            ),
        ),
        (
            "no old requests: latency is not compared",
            gates(pct1, twice, 0),
            window(10, 0, ms(500)),
            Window::default(),
            Pass(
                "error rate 0% ≤ 1% over 10 requests; latency not compared: the old version had no requests"
                    .into(),
            ),
        ),
        (
            "both limits passed",
            gates(pct1, twice, 0),
            window(10, 5, ms(500)),
            window(10, 0, ms(1)),
            Breach(
                "error rate 50% > 1% and p99 latency 523ms is 444× the old version's 1.18ms > 2× over 10 requests"
                    .into(),
            ),
        ),
        (
            "no limits",
            gates(None, None, 0),
            window(3, 3, ms(1)),
            Window::default(),
            Pass("no limits over 3 requests".into()),
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(_, gates, new, old, verdict)| judge(gates, new, old) != *verdict)
        .map(|(name, gates, new, old, _)| format!("{name}: {:?}", judge(gates, new, old)))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_new_version_that_answered_nothing_is_judged_on_its_errors() {
    let new = window(20, 20, ms(1));
    let old = window(20, 0, ms(1));
    assert_eq!(
        judge(&gates(None, Some(2_000), 0), &new, &old),
        Verdict::Pass(
            "nothing judged over 20 requests; latency not compared: the new version answered no request"
                .into()
        )
    );
    assert!(matches!(
        judge(&gates(Some(10_000), Some(2_000), 0), &new, &old),
        Verdict::Breach(b) if b.starts_with("error rate 100% > 1%")
    ));
}

#[test]
fn a_figure_just_past_its_limit_is_written_with_the_digits_that_show_it() {
    let new = window(10_000, 101, ms(1));
    assert_eq!(
        judge(&gates(Some(10_000), None, 0), &new, &Window::default()),
        Verdict::Breach("error rate 1.01% > 1% over 10000 requests".into())
    );
    let new = window(100_000, 1_001, ms(1));
    assert_eq!(
        judge(&gates(Some(10_000), None, 0), &new, &Window::default()),
        Verdict::Breach("error rate 1.001% > 1% over 100000 requests".into())
    );
}

#[test]
fn the_summary_shows_both_versions() {
    assert_eq!(
        summary(&window(812, 4, ms(90)), &Window::default()),
        "new: 812 requests, 0.493% errors, p99 108ms; old: no requests"
    );
    assert_eq!(
        summary(&window(1, 1, ms(1)), &window(2, 0, Duration::from_secs(2))),
        "new: 1 request, 100% errors, no answers; old: 2 requests, 0% errors, p99 2.03s"
    );
}
