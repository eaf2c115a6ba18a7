//! Weighted steps of a progressive promotion, and which clients a weight puts on the new version.
//!
//! A stepped promotion (issue 22) moves an alias to its new version in steps such as
//! `10%:1m,50%:pause,100%`: first a tenth of the clients for a minute, then half of them until
//! an operator confirms, then everybody. [`Step`] is one such step, [`parse_steps`] reads the
//! CLI form (or a [preset](PRESETS)), and [`check_steps`] holds the rules every list of steps
//! obeys, whichever way it was written.
//!
//! Which clients make up "10%" is decided by [`on_new`]: a keyed hash of the alias's salt and
//! the client's address gives the client a [`bucket`] in `0..10000`, and the client is on the new
//! version when its bucket is below the weight. Two properties follow, and they are why it is a
//! hash and not a counter or a random draw:
//!
//! - **DNS and the proxy agree.** Both compute the same function of the same inputs, with no
//!   state shared between them, so a client answered with the new version over DNS is also sent
//!   to the new version by the proxy, on any node of a cluster, across restarts.
//! - **Raising the weight only moves clients from old to new.** A client's bucket does not depend
//!   on the weight, so a client on the new version at 10% is still on it at 50%: a client never
//!   flips back and forth between the versions while a promotion advances.
//!
//! The hash is SHA-256, written out byte by byte below, so it is the same on every machine,
//! build and Rust version (the standard library's hashers promise none of that). The salt is per
//! alias, so the same tenth of the clients is not always the first to see every new version.
//!
//! Pure functions with no state and no IO: the API, the CLI, the writer, DNS and the proxy can
//! all use them.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::check::parse_duration;

/// The most steps one promotion may have: more is a typo, not a rollout plan.
pub const MAX_STEPS: usize = 20;

/// The shortest hold: under a second nothing could be measured.
pub const MIN_HOLD: Duration = Duration::from_secs(1);

/// The longest hold: a step meant to last longer than a day should pause for an operator.
pub const MAX_HOLD: Duration = Duration::from_secs(24 * 60 * 60);

/// How many buckets a client can fall into: one per hundredth of a percent.
pub const BUCKETS: u16 = 10_000;

/// One step of a promotion: the share of clients on the new version, and how the step ends.
///
/// A step with a `hold` moves on when the hold has passed; one with `pause` waits for an
/// operator's confirm; one with neither moves on as soon as its weight is in effect. The API
/// writes it as `{"weight": 10, "hold": "1m"}`, `{"weight": 50, "pause": true}` or
/// `{"weight": 100}`; the CLI as `10%:1m`, `50%:pause` or `100%`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The percent of clients on the new version, 1 to 100.
    pub weight: u8,
    /// How long the step lasts before the next one, 1 s to 24 h.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hold_text")]
    pub hold: Option<Duration>,
    /// Wait for an operator's confirm before the next step.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pause: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The hold as the API writes every duration: humantime text such as `"1m"` or `"1h 30m"`.
mod hold_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(hold: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match hold {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| {
            crate::check::parse_duration(&t).map_err(|e| D::Error::custom(format!("hold: {e}")))
        })
        .transpose()
    }
}

/// The CLI form: `10%:1m`, `50%:pause`, `100%`.
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.weight)?;
        if let Some(hold) = self.hold {
            write!(f, ":{}", humantime::format_duration(hold))?;
        }
        if self.pause {
            f.write_str(":pause")?;
        }
        Ok(())
    }
}

/// Steps in the CLI form, comma-separated: `10%:1m,50%:pause,100%`. [`parse_steps`] reads it
/// back to the same steps.
pub fn format_steps(steps: &[Step]) -> String {
    steps
        .iter()
        .map(Step::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The named step lists and what each does, for `aliasctl promote --help` and the API spec.
pub const PRESETS: &[(&str, &str)] = &[
    (
        "canary10-5m",
        "10% of clients for 5 minutes, then everybody",
    ),
    (
        "linear10-1m",
        "10%, 20%, ... 90% of clients, one minute each, then everybody",
    ),
];

/// The steps of a preset in [`PRESETS`], or `None` for an unknown name.
pub fn preset(name: &str) -> Option<Vec<Step>> {
    let hold = |weight, secs| Step {
        weight,
        hold: Some(Duration::from_secs(secs)),
        pause: false,
    };
    let all = Step {
        weight: 100,
        hold: None,
        pause: false,
    };
    match name {
        "canary10-5m" => Some(vec![hold(10, 5 * 60), all]),
        "linear10-1m" => Some(
            (1..=9)
                .map(|tenth| hold(tenth * 10, 60))
                .chain([all])
                .collect(),
        ),
        _ => None,
    }
}

/// Reads steps in the CLI form (`10%:1m,50%:pause,100%`: a weight in percent, then optionally a
/// hold or `pause`, after a colon) or a preset's name, and checks them with [`check_steps`].
pub fn parse_steps(text: &str) -> Result<Vec<Step>, String> {
    let text = text.trim();
    if let Some(steps) = preset(text) {
        return Ok(steps);
    }
    if !text.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "`{text}` is neither steps nor a preset; write steps like `10%:1m,50%:pause,100%` \
             or name a preset ({})",
            preset_names()
        ));
    }
    let steps = text
        .split(',')
        .enumerate()
        .map(|(i, item)| {
            parse_step(item.trim()).map_err(|e| format!("step {} (`{}`): {e}", i + 1, item.trim()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_steps(&steps)?;
    Ok(steps)
}

fn preset_names() -> String {
    PRESETS
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One step of the CLI form: `10%`, `10%:1m` or `10%:pause`.
fn parse_step(item: &str) -> Result<Step, String> {
    let (weight, end) = match item.split_once(':') {
        Some((w, e)) => (w.trim(), Some(e.trim())),
        None => (item, None),
    };
    let number = weight.strip_suffix('%').unwrap_or(weight).trim();
    let weight = number
        .parse::<u8>()
        .ok()
        .filter(|w| (1..=100).contains(w))
        .ok_or_else(|| {
            format!("`{weight}` is not a weight; write a percent from 1% to 100%, like `10%`")
        })?;
    let mut step = Step {
        weight,
        hold: None,
        pause: false,
    };
    match end {
        None => {}
        Some("pause") => step.pause = true,
        Some(hold) => {
            step.hold = Some(
                parse_duration(hold)
                    .map_err(|e| format!("{e}, or write `pause` to wait for `aliasctl confirm`"))?,
            )
        }
    }
    Ok(step)
}

/// The rules of a list of steps: at least one and at most [`MAX_STEPS`], each weight from 1 to
/// 100 and above the one before, the last 100 (a promotion ends with everybody on the new
/// version), a hold from [`MIN_HOLD`] to [`MAX_HOLD`], and no step that both holds and pauses.
pub fn check_steps(steps: &[Step]) -> Result<(), String> {
    let example = "like `10%:1m,50%:pause,100%`";
    if steps.is_empty() {
        return Err(format!(
            "no steps; give at least one, {example}, or leave steps out to promote in one go"
        ));
    }
    if steps.len() > MAX_STEPS {
        return Err(format!(
            "{} steps; at most {MAX_STEPS} are allowed, merge some of them",
            steps.len()
        ));
    }
    let mut previous: Option<u8> = None;
    for (i, step) in steps.iter().enumerate() {
        let at = format!("step {} ({}%)", i + 1, step.weight);
        if !(1..=100).contains(&step.weight) {
            return Err(format!(
                "{at}: the weight must be from 1% to 100% of the clients"
            ));
        }
        if let Some(before) = previous.filter(|&before| step.weight <= before) {
            return Err(format!(
                "{at}: the weight must be above the previous step's {before}%; \
                 list the weights in increasing order, {example}"
            ));
        }
        if step.pause && step.hold.is_some() {
            return Err(format!(
                "{at}: a step either holds for a time or pauses for a confirm, not both; \
                 drop one of them"
            ));
        }
        if let Some(hold) = step.hold
            && !(MIN_HOLD..=MAX_HOLD).contains(&hold)
        {
            return Err(format!(
                "{at}: the hold {} is out of range; hold from {} to {}, or pause for a \
                 confirm instead",
                humantime::format_duration(hold),
                humantime::format_duration(MIN_HOLD),
                humantime::format_duration(MAX_HOLD),
            ));
        }
        previous = Some(step.weight);
    }
    let last = steps[steps.len() - 1];
    if last.weight != 100 {
        return Err(format!(
            "step {} ({}%): the last step must be 100%, so the promotion ends with every client \
             on the new version; add `100%` at the end",
            steps.len(),
            last.weight
        ));
    }
    Ok(())
}

/// Separates this hash from any other SHA-256 of the same bytes; the version is here to change
/// if the assignment ever has to.
const BUCKET_TAG: &[u8] = b"aliasd steps bucket v1\0";

/// The client's bucket in `0..10000` for this salt: the same on every machine and build, and
/// independent of the weight. An IPv4 address mapped into IPv6 (`::ffff:192.0.2.1`, as a
/// dual-stack socket reports an IPv4 client) counts as the IPv4 address, so a client keeps its
/// bucket whichever socket it came through.
pub fn bucket(salt: &[u8], client: IpAddr) -> u16 {
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
        v4 => v4,
    };
    let mut hash = Sha256::new();
    hash.update(BUCKET_TAG);
    // The salt's length first, so no salt and address can be read as another pair.
    hash.update((salt.len() as u64).to_be_bytes());
    hash.update(salt);
    match client {
        IpAddr::V4(v4) => hash.update(v4.octets()),
        IpAddr::V6(v6) => hash.update(v6.octets()),
    }
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 2^64 is so much larger than 10,000 that the remainder's bias is below 1e-15.
    (u64::from_be_bytes(first) % u64::from(BUCKETS)) as u16
}

/// Whether the client is on the new version at this weight (percent of clients): its bucket is
/// below `weight * 100`. Weight 0 puts nobody there, 100 (or more) everybody.
pub fn on_new(salt: &[u8], client: IpAddr, weight_percent: u8) -> bool {
    bucket(salt, client) < u16::from(weight_percent) * 100
}

#[cfg(test)]
mod tests;
