//! The bounds of every value aliasd accepts, in one place: the API, `aliasctl`, the config,
//! Docker labels and the state file all check against these, so that nothing aliasd stores can
//! later fail to render (a deadline past year 9999, a count that overflows) and every refusal
//! names the field and the range. README "Limits" lists them; the OpenAPI spec carries them.

use std::time::Duration;

/// A closed range of durations a setting may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationRange {
    pub min: Duration,
    pub max: Duration,
}

impl DurationRange {
    pub const fn new(min: Duration, max: Duration) -> Self {
        Self { min, max }
    }

    /// `value` when it is in range, else a message naming `field` and the range.
    pub fn check(&self, field: &str, value: Duration) -> Result<Duration, String> {
        if value < self.min || value > self.max {
            Err(format!(
                "{field} must be between {} and {} (got {})",
                human(self.min),
                human(self.max),
                human(value)
            ))
        } else {
            Ok(value)
        }
    }

    /// A regular expression (for the OpenAPI spec) of the durations written as one whole number
    /// and a unit (`ms`, `s`, `m`, `h`, `d`) that always lie within this range: every string it
    /// matches is accepted. The server also takes other spellings humantime reads (`1h 30m`);
    /// a pattern cannot bound their sum.
    pub fn pattern(&self) -> String {
        let (min, max) = (self.min.as_millis(), self.max.as_millis());
        let units: [(&str, u128); 5] = [
            ("ms", 1),
            ("s", 1000),
            ("m", 60_000),
            ("h", 3_600_000),
            ("(d|days?)", 86_400_000),
        ];
        let forms: Vec<String> = units
            .iter()
            .filter_map(|(unit, size)| {
                let number = whole_numbers(min.div_ceil(*size), max / size)?;
                Some(format!("({number}){unit}"))
            })
            .collect();
        format!("^({})$", forms.join("|"))
    }

    /// Parses `text` as a duration (`30s`, `2m`) and checks it.
    pub fn parse(&self, field: &str, text: &str) -> Result<Duration, String> {
        let d = crate::check::parse_duration(text).map_err(|e| format!("{field}: {e}"))?;
        self.check(field, d)
    }
}

/// A regular expression of whole numbers (no leading zeros) that all lie in `lo..=hi`: exact
/// below 10, else the numbers of the digit counts that fit, so that none falls outside.
fn whole_numbers(lo: u128, hi: u128) -> Option<String> {
    if lo > hi {
        return None;
    }
    if hi < 10 {
        return Some(if lo == hi {
            lo.to_string()
        } else {
            format!("[{lo}-{hi}]")
        });
    }
    // The most digits every number of which is at most `hi`.
    let most = (1..=38).take_while(|d| 10u128.pow(*d) - 1 <= hi).last()?;
    let fewest = match lo {
        0 => return Some(format!("0|[1-9][0-9]{{0,{}}}", most - 1)),
        // 10^(k-1) is the smallest number of k digits: every k-digit number is at least `lo`.
        _ if lo == 10u128.pow(lo.ilog10()) => lo.ilog10() + 1,
        // Otherwise only numbers of more digits than `lo` are all at least `lo`.
        _ => lo.ilog10() + 2,
    };
    (fewest <= most).then(|| format!("[1-9][0-9]{{{},{}}}", fewest - 1, most - 1))
}

fn human(d: Duration) -> String {
    if d.is_zero() {
        "0s".to_owned()
    } else {
        humantime::format_duration(d).to_string()
    }
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// `observe`: how long the new version answers beside the old one before it goes on.
pub const OBSERVE: DurationRange = DurationRange::new(Duration::ZERO, secs(7 * DAY));
/// `warm_timeout`: how long a promotion waits for the new version to become healthy.
pub const WARM_TIMEOUT: DurationRange = DurationRange::new(ms(100), secs(DAY));
/// A rollout's `delay` between batches and its `monitor` window.
pub const ROLLOUT_WAIT: DurationRange = DurationRange::new(Duration::ZERO, secs(DAY));
/// The aliases of one rollout, and its `parallelism`.
pub const MAX_ROLLOUT_MEMBERS: usize = 1000;
/// Rollouts that ended kept in the state (and shown); older ones are forgotten.
pub const ROLLOUTS_KEPT: usize = 100;
/// `promotion.drain_grace`: added to the TTL window of a drain.
pub const DRAIN_GRACE: DurationRange = DurationRange::new(Duration::ZERO, secs(HOUR));
/// `aliasctl ... --timeout`: how long `--wait` follows an operation.
pub const WAIT_TIMEOUT: DurationRange = DurationRange::new(ms(1), secs(30 * DAY));
/// Health-check `interval`.
pub const HEALTH_INTERVAL: DurationRange =
    DurationRange::new(crate::check::MIN_INTERVAL, crate::check::MAX_INTERVAL);
/// Health-check `timeout` (also at most the interval).
pub const HEALTH_TIMEOUT: DurationRange =
    DurationRange::new(crate::check::MIN_TIMEOUT, crate::check::MAX_INTERVAL);
/// `dns.tcp_idle_timeout`.
pub const DNS_TCP_IDLE: DurationRange = DurationRange::new(ms(100), secs(HOUR));
/// `header_timeout` of the API and the proxy: how long a request head may take to arrive.
pub const HEADER_TIMEOUT: DurationRange = DurationRange::new(ms(100), secs(HOUR));
/// Proxy `connect_timeout`.
pub const CONNECT_TIMEOUT: DurationRange = DurationRange::new(ms(10), secs(10 * 60));
/// Proxy `idle_timeout` (client connections).
pub const IDLE_TIMEOUT: DurationRange = DurationRange::new(ms(100), secs(DAY));
/// Proxy `request_timeout`: the member's answer head.
pub const REQUEST_TIMEOUT: DurationRange = DurationRange::new(ms(10), secs(DAY));
/// Proxy `backend_idle_timeout`: pooled member connections.
pub const BACKEND_IDLE_TIMEOUT: DurationRange = DurationRange::new(ms(10), secs(HOUR));
/// Proxy `drain_deadline`: how long old-version work may go on after it left the answers.
pub const DRAIN_DEADLINE: DurationRange = DurationRange::new(Duration::ZERO, secs(DAY));
/// `[history] max_age`.
pub const HISTORY_AGE: DurationRange = DurationRange::new(secs(60), secs(100 * 365 * DAY));

/// `max_connections` of the API and the proxy, and `dns.tcp_max_connections`.
pub const MAX_CONNECTIONS: std::ops::RangeInclusive<u64> = 1..=1_000_000;

/// Secondaries one zone may list.
pub const MAX_SECONDARIES: usize = 64;

/// `reason` of an operation, in characters.
pub const MAX_REASON: usize = 1024;
/// Services one alias may link.
pub const MAX_TARGETS: usize = 64;
/// Endpoints one service may have (from any source).
pub const MAX_ENDPOINTS: usize = 10_000;
/// `min_healthy`: at least 1 when given.
pub const MAX_MIN_HEALTHY: u32 = 10_000;
/// `[history] keep_per_alias`.
pub const MAX_HISTORY_KEEP: usize = 1_000_000;
/// `GET /v1/history?limit=`: the newest entries one read may ask for, and its default.
pub const HISTORY_LIMIT: std::ops::RangeInclusive<usize> = 1..=1000;
pub const HISTORY_LIMIT_DEFAULT: usize = 100;

/// Checks an optional `reason`: at most [`MAX_REASON`] characters (as the OpenAPI spec's
/// `maxLength` counts them), no control characters.
pub fn reason(value: Option<&str>) -> Result<(), String> {
    match value.map(|r| (r, r.chars().count())) {
        Some((_, n)) if n > MAX_REASON => Err(format!(
            "reason must be at most {MAX_REASON} characters (got {n})"
        )),
        Some((r, _)) if r.chars().any(|c| c.is_control() && c != '\t') => {
            Err("reason must not contain control characters".to_owned())
        }
        _ => Ok(()),
    }
}

/// Checks an optional `min_healthy`: 1 to [`MAX_MIN_HEALTHY`].
pub fn min_healthy(value: Option<u32>) -> Result<(), String> {
    match value {
        Some(n) if n == 0 || n > MAX_MIN_HEALTHY => Err(format!(
            "min_healthy must be between 1 and {MAX_MIN_HEALTHY} (got {n})"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_out_of_range_is_refused_with_the_field_and_the_range() {
        assert_eq!(OBSERVE.parse("observe", "30s"), Ok(secs(30)));
        let e = OBSERVE.parse("observe", "8days").unwrap_err();
        assert_eq!(e, "observe must be between 0s and 7days (got 8days)");
        let e = WARM_TIMEOUT.parse("warm_timeout", "10ms").unwrap_err();
        assert!(
            e.starts_with("warm_timeout must be between 100ms and 1day"),
            "{e}"
        );
        let e = OBSERVE.parse("observe", "soon").unwrap_err();
        assert!(e.starts_with("observe: `soon` is not a duration"), "{e}");
    }

    #[test]
    fn every_duration_a_range_pattern_matches_is_in_the_range() {
        assert_eq!(
            OBSERVE.pattern(),
            "^((0|[1-9][0-9]{0,7})ms|(0|[1-9][0-9]{0,4})s|(0|[1-9][0-9]{0,3})m\
             |(0|[1-9][0-9]{0,1})h|([0-7])(d|days?))$"
        );
        assert_eq!(
            WARM_TIMEOUT.pattern(),
            "^(([1-9][0-9]{2,6})ms|([1-9][0-9]{0,3})s|([1-9][0-9]{0,2})m|([1-9][0-9]{0,0})h\
             |(1)(d|days?))$"
        );
        // The largest and smallest numbers each form allows parse within the range.
        for (range, words) in [
            (
                OBSERVE,
                ["0ms", "99999999ms", "99999s", "9999m", "99h", "7days"],
            ),
            (
                WARM_TIMEOUT,
                ["100ms", "9999999ms", "9999s", "999m", "9h", "1day"],
            ),
        ] {
            for word in words {
                assert!(range.parse("x", word).is_ok(), "{word}");
            }
        }
        assert_eq!(whole_numbers(5, 3), None);
        assert_eq!(whole_numbers(150, 999), None);
        assert_eq!(
            whole_numbers(150, 99_999).as_deref(),
            Some("[1-9][0-9]{3,4}")
        );
    }

    #[test]
    fn reasons_and_counts_have_bounds() {
        assert!(reason(Some("deploy 42")).is_ok());
        assert!(reason(Some(&"x".repeat(MAX_REASON + 1))).is_err());
        assert!(reason(Some("a\nb")).is_err());
        assert!(min_healthy(Some(0)).is_err());
        assert!(min_healthy(Some(MAX_MIN_HEALTHY + 1)).is_err());
        assert!(min_healthy(Some(3)).is_ok());
    }
}
