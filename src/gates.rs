//! The judgment of a promotion's step on what the front proxy measured (issue 22): the new
//! version's figures against the old one's over the step's hold, under the operation's
//! [`MeasuredGates`].
//!
//! The proxy keeps cumulative counters per alias and service (requests finished, errors, a
//! latency [`Histogram`]); the writer reads them as a [`Window`] when a step takes effect and
//! again when it is judged, and [`Window::minus`] gives what happened in between. [`judge`] turns
//! two windows into a [`Verdict`] whose words say the figure, the limit and the sample, e.g.
//! `error rate 21.3% > 1% over 812 requests`, so the history explains a rollback by itself.
//!
//! Pure: no IO, no clock, no atomics. The proxy's lock-free counters use the same buckets
//! ([`bucket_of`]) and are read into these plain values.

use std::time::Duration;

use crate::state::MeasuredGates;
use crate::text::plural;

/// Buckets of a [`Histogram`]: one up to 50 µs, 62 log-scale ones up to 60 s, one above.
pub const BUCKETS: usize = 64;

/// The upper bound of each bucket but the last, in microseconds: 50 µs to 60 s, each about
/// 1.25 times the one before (so a quantile read from them is within a quarter of the truth).
pub const UPPER_BOUNDS_US: [u64; BUCKETS - 1] = [
    50, 63, 79, 98, 123, 155, 194, 243, 304, 381, 478, 599, 751, 941, 1179, 1478, 1853, 2322, 2910,
    3647, 4571, 5729, 7180, 8998, 11277, 14134, 17713, 22200, 27823, 34870, 43703, 54772, 68645,
    86033, 107824, 135134, 169362, 212260, 266023, 333404, 417852, 523689, 656334, 822577, 1030926,
    1292049, 1619311, 2029465, 2543507, 3187750, 3995172, 5007107, 6275353, 7864832, 9856909,
    12353559, 15482582, 19404153, 24319017, 30478762, 38198704, 47874025, 60000000,
];

/// The bucket a latency falls in: the first whose upper bound is at least `took`.
pub fn bucket_of(took: Duration) -> usize {
    let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    UPPER_BOUNDS_US.partition_point(|&le| le < us)
}

/// Latencies counted in fixed log-scale buckets ([`UPPER_BOUNDS_US`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: [u64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: [0; BUCKETS],
        }
    }
}

impl Histogram {
    /// A histogram with these counts per bucket.
    pub fn from_counts(counts: [u64; BUCKETS]) -> Self {
        Self { counts }
    }

    pub fn counts(&self) -> &[u64; BUCKETS] {
        &self.counts
    }

    pub fn record(&mut self, took: Duration) {
        self.counts[bucket_of(took)] += 1;
    }

    /// Latencies counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// What was counted since `baseline`, taken earlier from the same cumulative counters.
    pub fn minus(&self, baseline: &Histogram) -> Histogram {
        let mut counts = self.counts;
        for (c, b) in counts.iter_mut().zip(&baseline.counts) {
            *c = c.saturating_sub(*b);
        }
        Self { counts }
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Histogram) {
        for (c, o) in self.counts.iter_mut().zip(&other.counts) {
            *c += o;
        }
    }

    /// The latency below which a share `q` (0 to 1) of the counted ones fall, interpolated
    /// linearly inside its bucket; 60 s for any in the last bucket. `None` when nothing was
    /// counted.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, &count) in self.counts.iter().enumerate() {
            if count == 0 || ((below + count) as f64) < rank {
                below += count;
                continue;
            }
            let Some(&hi) = UPPER_BOUNDS_US.get(i) else {
                break;
            };
            let lo = if i == 0 { 0 } else { UPPER_BOUNDS_US[i - 1] };
            let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
            let us = lo as f64 + (hi - lo) as f64 * within;
            return Some(Duration::from_nanos((us * 1000.0) as u64));
        }
        Some(Duration::from_micros(UPPER_BOUNDS_US[BUCKETS - 2]))
    }

    /// The 99th percentile.
    pub fn p99(&self) -> Option<Duration> {
        self.quantile(0.99)
    }
}

/// What the proxy measured of one version over a span: requests finished (each attempt on a
/// member, a failed connection included), errors among them (5xx answers, failed connections,
/// requests with no answer) and the latency to the answer's head of those answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    pub requests: u64,
    pub errors: u64,
    pub latency: Histogram,
}

impl Window {
    /// What happened since `baseline`, taken earlier from the same cumulative counters.
    pub fn minus(&self, baseline: &Window) -> Window {
        Window {
            requests: self.requests.saturating_sub(baseline.requests),
            errors: self.errors.saturating_sub(baseline.errors),
            latency: self.latency.minus(&baseline.latency),
        }
    }

    /// Adds `other` (another service of the same version) to this one.
    pub fn add(&mut self, other: &Window) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.latency.add(&other.latency);
    }

    /// Errors per million requests; `None` without requests.
    fn error_ppm(&self) -> Option<u64> {
        let ppm = u128::from(self.errors) * 1_000_000 / u128::from(self.requests.max(1));
        (self.requests > 0).then(|| u64::try_from(ppm).unwrap_or(u64::MAX))
    }

    fn error_percent(&self) -> f64 {
        self.errors as f64 * 100.0 / self.requests.max(1) as f64
    }
}

/// What [`judge`] made of a step's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Within every limit; the figures, for the history.
    Pass(String),
    /// Not enough requests to the new version yet to judge (at least one is always needed).
    TooFew { requests: u64, needed: u64 },
    /// A limit was passed: the figure, the limit and the sample, e.g.
    /// `error rate 21.3% > 1% over 812 requests`.
    Breach(String),
}

/// Judges the new version's `new` window against the old one's `old` (the same span) under
/// `gates`. The error rate is judged on the new version alone; the latency ratio compares the
/// p99s and is judged only when both versions have answered requests.
pub fn judge(gates: &MeasuredGates, new: &Window, old: &Window) -> Verdict {
    let needed = gates.min_requests.max(1);
    if new.requests < needed {
        return Verdict::TooFew {
            requests: new.requests,
            needed,
        };
    }
    let over = format!("over {}", plural(new.requests, "request"));
    let mut passed = Vec::new();
    let mut breaches = Vec::new();
    let mut notes = String::new();
    if let Some(limit) = gates.max_error_rate_ppm {
        let rate = new.error_ppm().unwrap_or(0);
        let limit_pct = f64::from(limit) / 10_000.0;
        let words = format!("error rate {}%", apart(new.error_percent(), limit_pct));
        let limit_words = format!("{}%", figure(limit_pct));
        if rate > u64::from(limit) {
            breaches.push(format!("{words} > {limit_words}"));
        } else {
            passed.push(format!("{words} ≤ {limit_words}"));
        }
    }
    if let Some(limit) = gates.max_latency_ratio_milli {
        let limit_ratio = f64::from(limit) / 1000.0;
        match latency_ratio(new, old, limit_ratio) {
            Ok((ratio, words)) => {
                let limit_words = format!("{}×", figure(limit_ratio));
                if ratio * 1000.0 > f64::from(limit) {
                    breaches.push(format!("{words} > {limit_words}"));
                } else {
                    passed.push(format!("{words} ≤ {limit_words}"));
                }
            }
            Err(why) => notes = format!("; latency not compared: {why}"),
        }
    }
    if !breaches.is_empty() {
        return Verdict::Breach(format!("{} {over}", breaches.join(" and ")));
    }
    if passed.is_empty() {
        let none = if notes.is_empty() {
            "no limits"
        } else {
            "nothing judged"
        };
        passed.push(none.to_owned());
    }
    Verdict::Pass(format!("{} {over}{notes}", passed.join(", ")))
}

/// The new version's p99 over the old one's, and the words that say so
/// (`p99 latency 340ms is 4.2× the old version's 81ms`); or why they cannot be compared.
fn latency_ratio(new: &Window, old: &Window, limit: f64) -> Result<(f64, String), &'static str> {
    if old.requests == 0 {
        return Err("the old version had no requests");
    }
    let old_p99 = old
        .latency
        .p99()
        .ok_or("the old version answered no request")?;
    let new_p99 = new
        .latency
        .p99()
        .ok_or("the new version answered no request")?;
    // A p99 under a microsecond is a microsecond: the ratio stays finite.
    let ratio = new_p99.as_secs_f64() / old_p99.as_secs_f64().max(1e-6);
    let words = format!(
        "p99 latency {} is {}× the old version's {}",
        duration(new_p99),
        apart(ratio, limit),
        duration(old_p99)
    );
    Ok((ratio, words))
}

/// Both versions' figures in one line, for status displays:
/// `new: 812 requests, 0.5% errors, p99 90ms; old: 3400 requests, 0.1% errors, p99 81ms`.
pub fn summary(new: &Window, old: &Window) -> String {
    format!("new: {}; old: {}", side(new), side(old))
}

fn side(w: &Window) -> String {
    if w.requests == 0 {
        return "no requests".to_owned();
    }
    let p99 = w.latency.p99().map_or_else(
        || "no answers".to_owned(),
        |d| format!("p99 {}", duration(d)),
    );
    format!(
        "{}, {}% errors, {p99}",
        plural(w.requests, "request"),
        figure(w.error_percent())
    )
}

/// A number with three significant digits at most and no trailing zeros: `21.3`, `1`, `0.05`.
fn figure(x: f64) -> String {
    significant(x, 3)
}

/// `x` as [`figure`] writes it, or with more digits where that would read the same as `limit`
/// though the two differ (`1.001%` against `1%`, not `1%` against `1%`).
fn apart(x: f64, limit: f64) -> String {
    (3..=7)
        .map(|digits| significant(x, digits))
        .find(|text| x == limit || *text != significant(limit, 7))
        .unwrap_or_else(|| significant(x, 7))
}

/// `x` with at most `digits` significant digits and no trailing zeros.
fn significant(x: f64, digits: i32) -> String {
    if !x.is_finite() || x <= 0.0 {
        return "0".to_owned();
    }
    let decimals = (digits - 1 - x.log10().floor() as i32).clamp(0, 9) as usize;
    let text = format!("{x:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// A latency in the unit that reads best: `450µs`, `81ms`, `1.25s`.
fn duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{}µs", figure(us))
    } else if us < 1e6 {
        format!("{}ms", figure(us / 1000.0))
    } else {
        format!("{}s", figure(us / 1e6))
    }
}

#[cfg(test)]
mod tests;
