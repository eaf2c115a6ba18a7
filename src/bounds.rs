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

    /// Parses `text` as a duration (`30s`, `2m`) and checks it.
    pub fn parse(&self, field: &str, text: &str) -> Result<Duration, String> {
        let d = crate::check::parse_duration(text).map_err(|e| format!("{field}: {e}"))?;
        self.check(field, d)
    }
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

/// `reason` of an operation, in bytes.
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

/// Checks an optional `reason`: at most [`MAX_REASON`] bytes, no control characters.
pub fn reason(value: Option<&str>) -> Result<(), String> {
    match value {
        Some(r) if r.len() > MAX_REASON => Err(format!(
            "reason must be at most {MAX_REASON} bytes (got {})",
            r.len()
        )),
        Some(r) if r.chars().any(|c| c.is_control() && c != '\t') => {
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
    fn reasons_and_counts_have_bounds() {
        assert!(reason(Some("deploy 42")).is_ok());
        assert!(reason(Some(&"x".repeat(MAX_REASON + 1))).is_err());
        assert!(reason(Some("a\nb")).is_err());
        assert!(min_healthy(Some(0)).is_err());
        assert!(min_healthy(Some(MAX_MIN_HEALTHY + 1)).is_err());
        assert!(min_healthy(Some(3)).is_ok());
    }
}
