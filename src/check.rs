//! What a health check is: its settings, the health it yields, and how settings written as
//! `key = value` text (Docker labels, API bodies, `aliasctl --health`) override a base check.
//!
//! Pure types with no IO. The config, the sources and the checkers all use these, so none of them
//! has to depend on another for its vocabulary.

use std::ops::RangeInclusive;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What is known of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Not checked enough yet (just started). Answered, like a server HAProxy assumes up.
    Unknown,
    Healthy,
    Unhealthy,
    /// The container's own HEALTHCHECK has not passed yet: not answered, not counted healthy,
    /// and not a failure either.
    Starting,
}

impl Health {
    /// Whether an endpoint in this health goes into the answers.
    pub fn passes(self) -> bool {
        matches!(self, Self::Unknown | Self::Healthy)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Starting => "starting",
        }
    }
}

/// How one endpoint is checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckConfig {
    pub kind: CheckKind,
    #[serde(with = "millis")]
    pub interval: Duration,
    #[serde(with = "millis")]
    pub timeout: Duration,
    /// Consecutive passes to become healthy.
    pub rise: u32,
    /// Consecutive failures to become unhealthy.
    pub fall: u32,
}

impl Default for CheckConfig {
    /// The defaults of `[health]`: a TCP connect every 2 s.
    fn default() -> Self {
        Self {
            kind: CheckKind::Tcp,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CheckKind {
    /// `GET path`; healthy when the status is in `expect`.
    Http {
        path: String,
        expect: RangeInclusive<u16>,
        host: Option<String>,
    },
    /// A TCP connect.
    Tcp,
    /// Not checked: always healthy.
    None,
}

/// The shortest check interval.
pub const MIN_INTERVAL: Duration = Duration::from_millis(50);
/// The longest check interval.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// The shortest check timeout.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(10);
/// Rise and fall counts are at least 1 and at most this.
pub const MAX_COUNT: u32 = 100;
/// The longest health path or Host header.
pub const MAX_TEXT: usize = 1024;

/// The keys a health setting may have, as written in config, labels and API bodies.
pub const KEYS: [&str; 8] = [
    "kind", "path", "expect", "host", "interval", "timeout", "rise", "fall",
];

/// `"200"` or `"200-399"`.
pub fn parse_status_range(text: &str) -> Option<RangeInclusive<u16>> {
    let (lo, hi) = text.split_once('-').unwrap_or((text, text));
    let (lo, hi): (u16, u16) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
    ((100..=599).contains(&lo) && (lo..=599).contains(&hi)).then_some(lo..=hi)
}

/// An optional whole number as JSON writes it: `3`, or `3.0`, which JSON Schema (and so the
/// OpenAPI spec) counts as the same integer; a fraction, a negative number or one too large for
/// `T` is refused. For `#[serde(deserialize_with = "whole_number")]` with `#[serde(default)]`.
pub fn whole_number<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(f))
            .map(|f| f as u64)
    });
    whole
        .and_then(|n| T::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("`{number}` is not a whole number in range")))
}

/// Parses a human duration such as `30s`, `2m` or `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}); write it like \"30s\" or \"2m\""))
}

/// A health check written as text settings over a base check: `kind=http`, `path=/healthz`,
/// `interval=2s`, ... Unset keys keep the base's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// `http`, `tcp` or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "http", pattern = "^(http|tcp|none)$")]
    pub kind: Option<String>,
    /// HTTP only: starts with `/`, at most 1024 printable characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1024, example = "/healthz", pattern = "^/")]
    pub path: Option<String>,
    /// HTTP only: a status or a range, 100 to 599 (`200-399`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "200-399", pattern = "^[1-5][0-9]{2}(-[1-5][0-9]{2})?$")]
    pub expect: Option<String>,
    /// HTTP only: the Host header, 1 to 1024 printable characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 1024)]
    pub host: Option<String>,
    /// A duration from "50ms" to "1h".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "2s")]
    pub interval: Option<String>,
    /// A duration from "10ms" to the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "1s")]
    pub timeout: Option<String>,
    /// Consecutive passes to become healthy, 1 to 100.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_number"
    )]
    #[schema(minimum = 1, maximum = 100)]
    pub rise: Option<u32>,
    /// Consecutive failures to become unhealthy, 1 to 100.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_number"
    )]
    #[schema(minimum = 1, maximum = 100)]
    pub fall: Option<u32>,
}

impl HealthSpec {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Sets one `key` from text; an unknown key or a count that is not a number is refused.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let count = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| format!("{key}: `{v}` is not a whole number"))
        };
        let value_text = Some(value.to_owned());
        match key {
            "kind" => self.kind = value_text,
            "path" => self.path = value_text,
            "expect" => self.expect = value_text,
            "host" => self.host = value_text,
            "interval" => self.interval = value_text,
            "timeout" => self.timeout = value_text,
            "rise" => self.rise = Some(count(value)?),
            "fall" => self.fall = Some(count(value)?),
            other => {
                return Err(format!(
                    "`{other}` is not a health setting (use {})",
                    KEYS.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Parses `key=value` pairs (as `aliasctl --health` takes them).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut spec = Self::default();
        for pair in pairs {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` is not KEY=VALUE (such as path=/healthz)"))?;
            spec.set(key.trim(), value.trim())?;
        }
        Ok(spec)
    }

    /// The check these settings make over `base`, or every problem found, each naming its key.
    pub fn apply(&self, base: &CheckConfig) -> Result<CheckConfig, Vec<String>> {
        let mut problems = Vec::new();
        let mut check = base.clone();
        let (base_path, base_expect, base_host) = match &base.kind {
            CheckKind::Http { path, expect, host } => (path.clone(), expect.clone(), host.clone()),
            _ => ("/".to_owned(), 200..=399, None),
        };
        if let Some(kind) = &self.kind {
            check.kind = match kind.trim() {
                "http" => CheckKind::Http {
                    path: base_path,
                    expect: base_expect,
                    host: base_host,
                },
                "tcp" => CheckKind::Tcp,
                "none" => CheckKind::None,
                other => {
                    problems.push(format!("kind: `{other}` is not one of http, tcp, none"));
                    check.kind.clone()
                }
            };
        }
        let is_http = matches!(check.kind, CheckKind::Http { .. });
        for (key, set) in [
            ("path", self.path.is_some()),
            ("expect", self.expect.is_some()),
            ("host", self.host.is_some()),
        ] {
            if set && !is_http {
                problems.push(format!("{key} applies only to kind http"));
            }
        }
        if let CheckKind::Http { path, expect, host } = &mut check.kind {
            if let Some(p) = &self.path {
                if !p.starts_with('/')
                    || p.chars().count() > MAX_TEXT
                    || p.chars().any(char::is_control)
                {
                    problems.push(format!(
                        "path must start with `/` and be at most {MAX_TEXT} printable characters"
                    ));
                } else {
                    *path = p.clone();
                }
            }
            if let Some(e) = &self.expect {
                match parse_status_range(e) {
                    Some(r) => *expect = r,
                    None => problems.push(format!(
                        "expect: `{e}` is not a status or range like \"200-399\""
                    )),
                }
            }
            if let Some(h) = &self.host {
                if h.is_empty() || h.chars().count() > MAX_TEXT || h.chars().any(|c| c.is_control())
                {
                    problems.push(format!("host must be 1 to {MAX_TEXT} printable characters"));
                } else {
                    *host = Some(h.clone());
                }
            }
        }
        let duration = |key: &str, text: &Option<String>, min: Duration, max: Duration| {
            let text = text.as_ref()?;
            Some(match parse_duration(text) {
                Ok(d) if d < min => Err(format!(
                    "{key} must be at least {}",
                    humantime::format_duration(min)
                )),
                Ok(d) if d > max => Err(format!(
                    "{key} must be at most {}",
                    humantime::format_duration(max)
                )),
                Ok(d) => Ok(d),
                Err(e) => Err(format!("{key}: {e}")),
            })
        };
        match duration("interval", &self.interval, MIN_INTERVAL, MAX_INTERVAL) {
            Some(Ok(d)) => {
                check.interval = d;
                // A timeout inherited from the base never exceeds the new interval.
                if self.timeout.is_none() {
                    check.timeout = check.timeout.min(d);
                }
            }
            Some(Err(e)) => problems.push(e),
            None => {}
        }
        match duration("timeout", &self.timeout, MIN_TIMEOUT, MAX_INTERVAL) {
            Some(Ok(d)) if d > check.interval => {
                problems.push("timeout must not exceed interval".to_owned())
            }
            Some(Ok(d)) => check.timeout = d,
            Some(Err(e)) => problems.push(e),
            None => {}
        }
        for (key, value, slot) in [
            ("rise", self.rise, &mut check.rise),
            ("fall", self.fall, &mut check.fall),
        ] {
            match value {
                Some(n) if (1..=MAX_COUNT).contains(&n) => *slot = n,
                Some(_) => problems.push(format!("{key} must be between 1 and {MAX_COUNT}")),
                None => {}
            }
        }
        if problems.is_empty() {
            Ok(check)
        } else {
            Err(problems)
        }
    }
}

/// Durations stored as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests;
