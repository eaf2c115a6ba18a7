//! The JSON shapes of the control API: the only types that cross the wire, shared by the server
//! and the client so they cannot drift apart.

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::spec::fields;
use crate::check::{HealthSpec, whole_number};
use crate::clock::now_ms;
use crate::controller::Busy;
use crate::controller::changes::ReloadSummary;
use crate::controller::dry_run::DryRun;
use crate::controller::history::{HistoryEntry, WireEntry};
use crate::controller::machine::{self, Ended, Operation, Retired};
use crate::health::HealthBoard;
use crate::model::{AliasName, ServiceName};
use crate::registry::{ContainerRef, EndpointInfo, Problem, Service, SourceStatus, Topology};
use crate::snapshot::{AliasView, Snapshot, endpoints_of};

/// A closed set of words on the wire. serde and the OpenAPI spec write each variant as its
/// string (the spec lists them as an `enum`), and `Display` prints the same word, so `aliasctl`
/// matches on variants: a word renamed here breaks the build, not a comparison at run time.
/// (Each word is taken as a `tt`: utoipa does not see into a `literal` fragment, and would
/// write the variant's own name.)
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:tt,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every variant, in the order the spec lists them.
            pub const ALL: &[Self] = &[$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// The phase of an alias: stable, or a step of a running promotion or rollback.
    Phase {
        Stable = "stable",
        Warming = "warming",
        Mixed = "mixed",
        Draining = "draining",
    }
}

wire_enum! {
    /// What a member service is to its alias: `active` (linked), `incoming` (being promoted
    /// to) or `draining` (left the answers).
    Role {
        Active = "active",
        Incoming = "incoming",
        Draining = "draining",
    }
}

wire_enum! {
    /// An endpoint's health: aliasd's check together with the container's own HEALTHCHECK.
    Health {
        Unknown = "unknown",
        Starting = "starting",
        Healthy = "healthy",
        Unhealthy = "unhealthy",
    }
}

wire_enum! {
    /// The kind of an operation.
    OpKind {
        Promote = "promote",
        Rollback = "rollback",
    }
}

wire_enum! {
    /// How an operation ended.
    OpOutcome {
        Completed = "completed",
        Aborted = "aborted",
        WarmTimeout = "warm_timeout",
        AutoRollback = "auto_rollback",
    }
}

wire_enum! {
    /// The kind of a history entry.
    Change {
        Linked = "linked",
        Started = "started",
        Mixed = "mixed",
        Confirmed = "confirmed",
        Draining = "draining",
        Completed = "completed",
        Aborted = "aborted",
        WarmTimeout = "warm_timeout",
        AutoRollback = "auto_rollback",
        /// The old version's containers were stopped after it became safe to stop.
        Stopped = "stopped",
        /// A weighted promotion moved to its next step.
        Step = "step",
        /// A weighted step's share of clients took effect everywhere; its hold counts from here.
        InEffect = "in_effect",
        Created = "created",
        Updated = "updated",
        Removed = "removed",
        ServiceSet = "service_set",
        ServiceDeleted = "service_deleted",
        Reloaded = "reloaded",
    }
}

impl Phase {
    pub fn of(phase: &machine::Phase) -> Self {
        match phase {
            machine::Phase::Stable => Self::Stable,
            machine::Phase::Warming { .. } => Self::Warming,
            machine::Phase::Mixed { .. } => Self::Mixed,
            machine::Phase::Draining { .. } => Self::Draining,
        }
    }

    /// The phase a history entry stores as text; `None` for an entry about a service or the
    /// config (stored as "").
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|p| p.as_str() == text)
    }
}

impl From<machine::Reached> for Phase {
    fn from(r: machine::Reached) -> Self {
        match r {
            machine::Reached::Warming => Self::Warming,
            machine::Reached::Mixed => Self::Mixed,
            machine::Reached::Draining => Self::Draining,
        }
    }
}

impl From<crate::check::Health> for Health {
    fn from(h: crate::check::Health) -> Self {
        use crate::check::Health as H;
        match h {
            H::Unknown => Self::Unknown,
            H::Starting => Self::Starting,
            H::Healthy => Self::Healthy,
            H::Unhealthy => Self::Unhealthy,
        }
    }
}

impl From<machine::OpKind> for OpKind {
    fn from(k: machine::OpKind) -> Self {
        match k {
            machine::OpKind::Promote => Self::Promote,
            machine::OpKind::Rollback => Self::Rollback,
        }
    }
}

impl From<machine::EndKind> for OpOutcome {
    fn from(k: machine::EndKind) -> Self {
        match k {
            machine::EndKind::Completed => Self::Completed,
            machine::EndKind::Aborted => Self::Aborted,
            machine::EndKind::WarmTimeout => Self::WarmTimeout,
            machine::EndKind::AutoRollback => Self::AutoRollback,
        }
    }
}

impl From<machine::ChangeKind> for Change {
    fn from(k: machine::ChangeKind) -> Self {
        use machine::ChangeKind as K;
        match k {
            K::Linked => Self::Linked,
            K::Started => Self::Started,
            K::Mixed => Self::Mixed,
            K::Confirmed => Self::Confirmed,
            K::Draining => Self::Draining,
            K::Completed => Self::Completed,
            K::Aborted => Self::Aborted,
            K::WarmTimeout => Self::WarmTimeout,
            K::AutoRollback => Self::AutoRollback,
            K::Stopped => Self::Stopped,
            K::Step => Self::Step,
            K::InEffect => Self::InEffect,
            K::Created => Self::Created,
            K::Updated => Self::Updated,
            K::Removed => Self::Removed,
            K::ServiceSet => Self::ServiceSet,
            K::ServiceDeleted => Self::ServiceDeleted,
            K::Reloaded => Self::Reloaded,
        }
    }
}

impl Change {
    /// Whether this change ends an operation.
    pub fn ends_operation(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Aborted | Self::WarmTimeout | Self::AutoRollback
        )
    }
}

/// A history entry's phase: one of [`Phase`], or "" for an entry about a service or the config
/// (the JSON is the same as when it was a string).
mod phase_or_empty {
    use super::Phase;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(phase: &Option<Phase>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(phase.map_or("", Phase::as_str))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Phase>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        Phase::parse(&text)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown phase `{text}`")))
    }

    pub fn schema() -> utoipa::openapi::Object {
        use utoipa::openapi::{ObjectBuilder, Type};
        let words = Phase::ALL.iter().map(|p| p.as_str()).chain([""]);
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(words))
            .description(Some(
                "The phase after the change; empty for an entry about a service or the config",
            ))
            .build()
    }
}

/// An alias as `GET /v1/aliases/{alias}` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct AliasDto {
    /// Fully qualified, without the trailing dot: `web.internal`.
    pub name: String,
    pub zone: String,
    /// The linked services; during a promotion, the old ones.
    pub targets: Vec<String>,
    pub phase: Phase,
    /// The services whose endpoints are answered now.
    pub answering: Vec<String>,
    /// The endpoints DNS answers with: the answering services' endpoints that are not unhealthy.
    pub endpoints: Vec<String>,
    /// Set when no endpoint is healthy and this `if_none_healthy` policy chose the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// Every service involved, with each endpoint's health.
    pub members: Vec<MemberDto>,
    /// The promotion or rollback running now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<OperationDto>,
    /// How the last promotion or rollback that ended ended, and when: kept in the alias's
    /// stored state, so it survives a restart, until the next one ends. Absent when no operation
    /// has ended since aliasd started keeping it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_operation: Option<LastOperationDto>,
    /// What the last operation took out of the answers and when it may be stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<RetiredDto>,
    /// While draining: the TTL window and the proxy's open work on the old version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainDto>,
    /// During a promotion with weighted steps: the percent of clients on the new version (0
    /// while warming, 100 while draining).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 100)]
    pub weight: Option<u8>,
    /// The current weighted step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepDto>,
    /// In a weighted step: the endpoints each side's clients are answered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sides: Option<SidesDto>,
    /// With `?client=IP`: the version that client gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientSideDto>,
    /// The SRV owner name that carries the ports.
    pub srv: String,
    /// TTL of the alias's answers, in seconds.
    pub ttl: u32,
    pub revision: u64,
    /// RFC 3339 time of the last change.
    pub changed_at: String,
    pub changed_by: String,
    /// The snapshot generation and zone serial this view belongs to.
    pub generation: u64,
    pub serial: u32,
    /// `config` or `api`: where the alias is defined.
    #[serde(default)]
    pub source: String,
    /// What an operator should know: a service with no endpoints, Docker unreachable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct MemberDto {
    pub service: String,
    pub role: Role,
    pub answering: bool,
    /// Requests and connections the front proxy has open on this service now.
    #[serde(default)]
    pub inflight: u64,
    pub endpoints: Vec<EndpointDto>,
}

/// Where a drain stands: it ends when the TTL window is over and the proxy's work on the old
/// version is done (or the proxy's drain deadline cut it off).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct DrainDto {
    pub services: Vec<String>,
    /// When the TTL window (plus grace) ends.
    pub ttl_window_until: String,
    pub ttl_window_over: bool,
    /// Requests and connections the front proxy still has open on the old version.
    pub proxy_inflight: u64,
    /// The zone's secondaries that do not serve its current serial yet, which the drain waits
    /// for (up to its deadline): each with the serial it serves and how long it has been behind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secondaries_behind: Vec<String>,
    /// A cluster's nodes that do not render the latest revision yet, which the drain waits
    /// for too (up to its deadline), each with how far behind it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes_behind: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct EndpointDto {
    pub addr: String,
    pub health: Health,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// `config`, `api` or `docker`.
    #[serde(default)]
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerDto>,
    /// The container's HEALTHCHECK: `starting`, `healthy`, `unhealthy`, or `died`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_health: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ContainerDto {
    pub id: String,
    /// The 12-character id Docker shows.
    pub short_id: String,
    pub name: String,
}

impl ContainerDto {
    pub fn from_ref(c: &ContainerRef) -> Self {
        Self {
            id: c.id.clone(),
            short_id: c.short_id().to_owned(),
            name: c.name.clone(),
        }
    }
}

impl EndpointDto {
    /// `info` of `service` as the API shows it, with its checker's latest status.
    pub fn from_info(service: &ServiceName, info: &EndpointInfo, board: &HealthBoard) -> Self {
        let status = board.get(service, &info.endpoint);
        let checked = status
            .as_ref()
            .map_or(crate::health::starting_health(&info.check, true), |s| {
                s.health
            });
        let died = match &info.docker_health {
            Some(crate::registry::DockerHealth::Died(why)) => Some(why.clone()),
            _ => None,
        };
        Self {
            addr: info.endpoint.to_string(),
            health: info.effective(checked).into(),
            last_check: status
                .as_ref()
                .and_then(|s| s.last_check_ms)
                .map(rfc3339_ms),
            last_error: died.or_else(|| status.as_ref().and_then(|s| s.last_error.clone())),
            source: info.source.as_str().to_owned(),
            container: info.container.as_ref().map(ContainerDto::from_ref),
            docker_health: info.docker_health.as_ref().map(|h| h.as_str().to_owned()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct OperationDto {
    pub id: u64,
    pub kind: OpKind,
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub actor: String,
    /// Why, as the operator gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub started_at: String,
    pub observe: String,
    pub confirm: bool,
    pub confirmed: bool,
    /// `null` means every endpoint of the new version.
    pub min_healthy: Option<u32>,
    pub warm_timeout: String,
    /// Whether the old version's containers are stopped once it is safe to stop.
    #[serde(default)]
    pub stop_old: bool,
    /// When the current phase ends on its own: the warm deadline, the end of observe, or the
    /// end of the drain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_deadline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_until: Option<String>,
    /// The weighted steps, in order; empty for a promotion in one go.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepSpecDto>,
    /// The limits on the proxy's figures of the new version, judged over each step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gates: Option<GatesDto>,
}

/// One weighted step as a promotion was asked for it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpecDto {
    /// The percent of clients on the new version, 1 to 100.
    #[schema(minimum = 1, maximum = 100)]
    pub weight: u8,
    /// How long the step lasts once in effect (1s to 24h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    /// Wait for `POST /v1/aliases/{alias}/confirm` before the next step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pause: bool,
}

impl From<&crate::steps::Step> for StepSpecDto {
    fn from(s: &crate::steps::Step) -> Self {
        Self {
            weight: s.weight,
            hold: s.hold.map(|h| humantime::format_duration(h).to_string()),
            pause: s.pause,
        }
    }
}

/// Limits on what the front proxy measured of the new version against the old over a step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct GatesDto {
    /// The most failed requests (5xx answers, failed connections) per request: 0.01 is 1%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    /// The most the new version's p99 latency may be of the old one's (2 is twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ratio: Option<f64>,
    /// Requests to the new version needed before the figures are judged.
    pub min_requests: u64,
}

impl GatesDto {
    pub fn of(g: &crate::state::MeasuredGates) -> Option<Self> {
        (!g.is_off()).then(|| Self {
            max_error_rate: g.max_error_rate_ppm.map(|p| f64::from(p) / 1e6),
            max_latency_ratio: g.max_latency_ratio_milli.map(|m| f64::from(m) / 1e3),
            min_requests: g.min_requests,
        })
    }
}

/// The answers of each side of a weighted step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct SidesDto {
    /// What the clients still on the old version get.
    pub old: Vec<String>,
    /// What the clients moved to the new version get.
    pub new: Vec<String>,
}

/// Which version one client address gets: its bucket (0 to 9,999, from the operation's salt
/// and the address) against the weight (a client is on the new version when its bucket is
/// below weight × 100).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ClientSideDto {
    pub address: String,
    /// Absent outside a weighted step, where every client gets the same answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<u16>,
    /// `old`, `new`, or `all` outside a weighted step.
    pub side: String,
    /// The endpoints DNS gives this client.
    pub endpoints: Vec<String>,
}

impl ClientSideDto {
    pub fn of(view: &AliasView, ip: std::net::IpAddr) -> Self {
        let (bucket, side) = match &view.split {
            Some(split) => (
                Some(crate::steps::bucket(split.salt.as_bytes(), ip)),
                if split.on_new(ip) { "new" } else { "old" },
            ),
            None => (None, "all"),
        };
        Self {
            address: ip.to_string(),
            bucket,
            side: side.to_owned(),
            endpoints: view
                .endpoints_for(ip)
                .iter()
                .map(ToString::to_string)
                .collect(),
        }
    }
}

/// Where a promotion with weighted steps is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct StepDto {
    /// The step's number, from 1.
    pub number: u32,
    /// How many steps there are.
    pub of: u32,
    /// The percent of clients on the new version in this step.
    pub weight: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pause: bool,
    /// When the step began.
    pub since: String,
    /// When its weight took effect: served by every node and secondary, and the answers from
    /// before it past their TTL. Absent until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_at: Option<String>,
    /// When its hold ends (once in effect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_until: Option<String>,
    /// A paused step was confirmed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub confirmed: bool,
    /// What the front proxy measured of each version since the step took effect, against the
    /// operation's gates (absent before it is in effect and where no proxy fronts the alias).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub figures: Option<StepFiguresDto>,
}

/// A step's figures: each version's requests, failures and p99 through the front proxy since
/// the step took effect, and how they stand against the gates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct StepFiguresDto {
    pub new: SideFiguresDto,
    pub old: SideFiguresDto,
    /// p99 of the new version over p99 of the old, when both had requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ratio: Option<f64>,
    /// `within`, `too_few` (fewer requests than `min_requests`: not judged yet) or `breach`.
    pub verdict: String,
    /// The judgment in words: `error rate 0.4% <= 1% over 812 requests`.
    pub summary: String,
}

impl StepFiguresDto {
    /// The figures of `state`'s weighted step in effect, judged against its gates; `None`
    /// before it took effect or where no proxy fronts the alias.
    pub fn of(
        busy: &dyn Busy,
        alias: &AliasName,
        state: &crate::state::AliasState,
    ) -> Option<Self> {
        let measurements = busy.measurements()?;
        let (new, old) = crate::controller::step_figures(measurements, alias, state)?;
        let gates = state.phase.operation()?.options.gates;
        let (verdict, summary) = match crate::gates::judge(&gates, &new, &old) {
            crate::gates::Verdict::Pass(s) => ("within", s),
            crate::gates::Verdict::TooFew { requests, needed } => (
                "too_few",
                format!(
                    "{} of the {needed} needed to judge",
                    crate::text::plural(requests, "request")
                ),
            ),
            crate::gates::Verdict::Breach(s) => ("breach", s),
        };
        let p99 = |w: &crate::gates::Window| w.latency.p99().map(|d| d.as_secs_f64() * 1000.0);
        let side = |w: &crate::gates::Window| SideFiguresDto {
            requests: w.requests,
            errors: w.errors,
            error_rate: if w.requests == 0 {
                0.0
            } else {
                w.errors as f64 / w.requests as f64
            },
            p99_ms: p99(w),
        };
        Some(Self {
            latency_ratio: p99(&new)
                .zip(p99(&old))
                .filter(|(_, o)| *o > 0.0)
                .map(|(n, o)| n / o),
            new: side(&new),
            old: side(&old),
            verdict: verdict.to_owned(),
            summary,
        })
    }
}

/// One version's figures through the front proxy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct SideFiguresDto {
    pub requests: u64,
    /// 5xx answers and failed connections.
    pub errors: u64,
    /// errors / requests (0 without requests).
    pub error_rate: f64,
    /// The 99th percentile of the time to the response head, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
}

impl StepDto {
    pub fn of(phase: &machine::Phase) -> Option<Self> {
        let machine::Phase::Mixed {
            op, step: Some(at), ..
        } = phase
        else {
            return None;
        };
        let spec = op.options.steps.get(at.index as usize);
        let hold = spec.and_then(|s| s.hold);
        Some(Self {
            number: at.index + 1,
            of: op.options.steps.len() as u32,
            weight: at.weight,
            hold: hold.map(|h| humantime::format_duration(h).to_string()),
            pause: spec.is_some_and(|s| s.pause),
            since: rfc3339_ms(at.since_ms),
            effective_at: at.effective_ms.map(rfc3339_ms),
            hold_until: at
                .effective_ms
                .zip(hold)
                .map(|(e, h)| rfc3339_ms(e.saturating_add(h.as_millis() as u64))),
            confirmed: at.confirmed,
            figures: None,
        })
    }
}

/// The percent of clients on the new version during a promotion with steps: 0 while warming,
/// the step's weight while mixed, 100 while draining; `None` without steps.
pub fn weight(phase: &machine::Phase) -> Option<u8> {
    let op = phase
        .operation()
        .filter(|op| !op.options.steps.is_empty())?;
    Some(match phase {
        machine::Phase::Mixed { step, .. } => step.map_or(0, |s| s.weight),
        machine::Phase::Draining { .. } => 100,
        _ => {
            let _ = op;
            0
        }
    })
}

/// A promotion or rollback that ended, and how.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct LastOperationDto {
    /// The alias revision that started it.
    pub id: u64,
    pub kind: OpKind,
    pub outcome: OpOutcome,
    /// RFC 3339 time it ended.
    pub ended_at: String,
    /// Who ended it: who aborted it, else who started it (aliasd moves an operation on in its
    /// starter's name).
    pub ended_by: String,
    /// Why it ended so: the abort's reason, or what the warm timeout or the health gate found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_reason: Option<String>,
    /// The phase it was in when it ended: `warming`, `mixed` or `draining`.
    pub reached: Phase,
    /// The alias revision of the change that ended it.
    pub revision: u64,
    pub from: Vec<String>,
    pub to: Vec<String>,
    /// Who started it.
    pub actor: String,
    /// Why it was started, as the operator gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub started_at: String,
    pub observe: String,
    pub confirm: bool,
    /// `null` means every endpoint of the new version.
    pub min_healthy: Option<u32>,
    pub warm_timeout: String,
    #[serde(default)]
    pub stop_old: bool,
}

impl LastOperationDto {
    pub fn from_ended(e: &Ended) -> Self {
        let op = &e.op;
        Self {
            id: op.id,
            kind: op.kind.into(),
            outcome: e.outcome.into(),
            ended_at: rfc3339_ms(e.at_ms),
            ended_by: e.by.clone(),
            ended_reason: e.why.clone(),
            reached: e.reached.into(),
            revision: e.revision,
            from: op.from.iter().map(ToString::to_string).collect(),
            to: op.to.iter().map(ToString::to_string).collect(),
            actor: op.actor.clone(),
            reason: op.reason.clone(),
            started_at: rfc3339_ms(op.started_at_ms),
            observe: human(op.options.observe_ms),
            confirm: op.options.confirm,
            min_healthy: op.options.min_healthy,
            warm_timeout: human(op.options.warm_timeout_ms),
            stop_old: op.options.stop_old,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct RetiredDto {
    pub services: Vec<String>,
    pub safe_to_stop_at: String,
    /// Whether that time has come.
    pub safe_to_stop: bool,
    pub op: u64,
    /// aliasd stops their containers (`stop_old`).
    #[serde(default)]
    pub stop_old: bool,
    /// When it stopped them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
}

impl RetiredDto {
    pub fn from_retired(r: &Retired) -> Self {
        Self {
            services: r.services.iter().map(ToString::to_string).collect(),
            safe_to_stop_at: rfc3339_ms(r.safe_to_stop_at_ms),
            safe_to_stop: now_ms() >= r.safe_to_stop_at_ms,
            op: r.op,
            stop_old: r.stop_old,
            stopped_at: r.stopped_at_ms.map(rfc3339_ms),
        }
    }
}

fn human(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

impl OperationDto {
    pub fn from_phase(phase: &machine::Phase) -> Option<Self> {
        let op: &Operation = phase.operation()?;
        let (confirmed, drain_until) = match phase {
            machine::Phase::Mixed { confirmed, .. } => (*confirmed, None),
            machine::Phase::Draining { until_ms, .. } => (true, Some(rfc3339_ms(*until_ms))),
            _ => (false, None),
        };
        Some(Self {
            id: op.id,
            kind: op.kind.into(),
            from: op.from.iter().map(ToString::to_string).collect(),
            to: op.to.iter().map(ToString::to_string).collect(),
            actor: op.actor.clone(),
            reason: op.reason.clone(),
            started_at: rfc3339_ms(op.started_at_ms),
            observe: human(op.options.observe_ms),
            confirm: op.options.confirm,
            confirmed,
            min_healthy: op.options.min_healthy,
            warm_timeout: human(op.options.warm_timeout_ms),
            stop_old: op.options.stop_old,
            phase_deadline: phase.deadline().map(rfc3339_ms),
            drain_until,
            steps: op.options.steps.iter().map(StepSpecDto::from).collect(),
            gates: GatesDto::of(&op.options.gates),
        })
    }
}

/// The secondaries of `zone` not serving its serial yet, as `aliasctl status` shows them.
fn behind(
    secondaries: &crate::secondaries::Secondaries,
    zone: &hickory_proto::rr::Name,
) -> Vec<String> {
    let zone = zone.to_string();
    let now = now_ms();
    secondaries
        .all()
        .iter()
        .filter(|s| s.zone == zone && !s.caught_up())
        .map(|s| {
            let serves = s
                .serial
                .map_or("nothing it answered with yet".to_owned(), |n| {
                    format!("serial {n}")
                });
            let error = s
                .error
                .as_deref()
                .map(|e| format!("; {e}"))
                .unwrap_or_default();
            format!(
                "{} serves {serves}, not {} ({:.1}s behind{error})",
                s.address,
                s.wanted,
                now.saturating_sub(s.wanted_since_ms) as f64 / 1000.0
            )
        })
        .collect()
}

impl AliasDto {
    /// `busy` tells the front proxy's open work per endpoint; `secondaries` what the zone's
    /// secondaries serve.
    pub fn from_view(
        view: &AliasView,
        snapshot: &Snapshot,
        board: &HealthBoard,
        busy: &dyn Busy,
        secondaries: &crate::secondaries::Secondaries,
    ) -> Self {
        let serial = snapshot
            .zones
            .iter()
            .find(|z| z.origin == hickory_proto::rr::LowerName::new(&view.zone))
            .map_or(0, |z| z.serial);
        let state = &view.state;
        let incoming = state
            .phase
            .operation()
            .map(|op| op.to.clone())
            .unwrap_or_default();
        let draining = machine::draining(state);
        let mut services = state.targets.clone();
        services.extend(
            incoming
                .iter()
                .filter(|s| !state.targets.contains(s))
                .cloned(),
        );
        let members = services
            .iter()
            .map(|service| {
                let role = if draining.contains(service) {
                    Role::Draining
                } else if state.targets.contains(service)
                    || matches!(state.phase, machine::Phase::Draining { .. })
                {
                    // While draining, the new version answers alone: it is the active one.
                    Role::Active
                } else {
                    Role::Incoming
                };
                let infos = snapshot
                    .topology
                    .services
                    .get(service)
                    .map_or(&[][..], |c| &c.endpoints);
                let endpoints = infos
                    .iter()
                    .map(|e| EndpointDto::from_info(service, e, board))
                    .collect();
                MemberDto {
                    service: service.to_string(),
                    role,
                    answering: view.answering.contains(service),
                    inflight: busy.inflight(&snapshot.topology.addrs(service)),
                    endpoints,
                }
            })
            .collect();
        Self {
            name: view.name.to_string(),
            zone: view.zone.to_ascii(),
            targets: state.targets.iter().map(ToString::to_string).collect(),
            phase: Phase::of(&state.phase),
            answering: view.answering.iter().map(ToString::to_string).collect(),
            endpoints: view.endpoints.iter().map(ToString::to_string).collect(),
            fallback: view.fallback.and_then(|f| {
                serde_json::to_value(f)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
            }),
            members,
            operation: OperationDto::from_phase(&state.phase),
            weight: weight(&state.phase),
            step: StepDto::of(&state.phase).map(|mut step| {
                step.figures = StepFiguresDto::of(busy, &view.name, state);
                step
            }),
            sides: view.split.as_ref().map(|s| SidesDto {
                old: s.old.iter().map(ToString::to_string).collect(),
                new: s.new.iter().map(ToString::to_string).collect(),
            }),
            client: None,
            last_operation: state.last_op.as_ref().map(LastOperationDto::from_ended),
            retired: state.retired.as_ref().map(RetiredDto::from_retired),
            drain: match &state.phase {
                machine::Phase::Draining { until_ms, .. } => Some(DrainDto {
                    services: draining.iter().map(ToString::to_string).collect(),
                    ttl_window_until: rfc3339_ms(*until_ms),
                    ttl_window_over: now_ms() >= *until_ms,
                    proxy_inflight: busy.inflight(&endpoints_of(&snapshot.topology, &draining)),
                    secondaries_behind: behind(secondaries, &view.zone),
                    nodes_behind: Vec::new(),
                }),
                _ => None,
            },
            srv: view.srv_name.to_ascii(),
            ttl: snapshot.topology.alias_ttl,
            revision: state.revision,
            changed_at: rfc3339_ms(state.changed_at_ms),
            changed_by: state.changed_by.clone(),
            generation: snapshot.generation,
            serial,
            source: snapshot
                .topology
                .aliases
                .get(&view.name)
                .map_or("config", |d| d.source.as_str())
                .to_owned(),
            warnings: view.warnings.clone(),
        }
    }
}

/// A service as `GET /v1/services` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ServiceDto {
    pub name: String,
    /// Where it is defined: `config`, `api`, or `docker` for one seen only in containers (or
    /// only named by an alias so far).
    pub source: String,
    pub endpoints: Vec<EndpointDto>,
    /// The aliases that link it now.
    pub linked_by: Vec<String>,
    /// How its endpoints are checked (`http /healthz`, `tcp`, `none`), before labels.
    pub check: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl ServiceDto {
    pub fn from_service(
        name: &ServiceName,
        service: &Service,
        snapshot: &Snapshot,
        board: &HealthBoard,
    ) -> Self {
        let mut warnings = Vec::new();
        if service.endpoints.is_empty() {
            warnings.push(if snapshot.topology.docker {
                "no endpoints: no container of it runs".to_owned()
            } else {
                "no endpoints".to_owned()
            });
        }
        Self {
            name: name.to_string(),
            source: service
                .defined_by
                .map_or("docker", |s| s.as_str())
                .to_owned(),
            endpoints: service
                .endpoints
                .iter()
                .map(|e| EndpointDto::from_info(name, e, board))
                .collect(),
            linked_by: snapshot
                .aliases
                .values()
                .filter(|a| a.state.targets.contains(name))
                .map(|a| a.name.to_string())
                .collect(),
            check: match &service.check.kind {
                crate::check::CheckKind::Http { path, .. } => format!("http {path}"),
                crate::check::CheckKind::Tcp => "tcp".into(),
                crate::check::CheckKind::None => "none".into(),
            },
            warnings,
        }
    }
}

/// A container discovery skipped.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ProblemDto {
    pub container: ContainerDto,
    pub problem: String,
}

impl ProblemDto {
    pub fn from_problem(p: &Problem) -> Self {
        Self {
            container: ContainerDto::from_ref(&p.container),
            problem: p.message.clone(),
        }
    }
}

/// Docker discovery's state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct DockerDto {
    /// `unix:///var/run/docker.sock` or `http://host:port`.
    pub endpoint: String,
    pub connected: bool,
    /// Since when it is (dis)connected.
    pub since: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl DockerDto {
    pub fn from_status(s: &SourceStatus) -> Self {
        Self {
            endpoint: s.endpoint.clone(),
            connected: s.connected,
            since: rfc3339_ms(s.since_ms),
            last_sync: s.last_sync_ms.map(rfc3339_ms),
            error: s.error.clone(),
            version: s.version.clone(),
        }
    }
}

/// `GET /v1/services`: every service, and how discovery stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ServicesDto {
    pub services: Vec<ServiceDto>,
    /// Containers skipped for their labels or networks.
    #[serde(default)]
    pub problems: Vec<ProblemDto>,
    /// `null` when Docker discovery is off.
    #[serde(default)]
    pub docker: Option<DockerDto>,
}

/// The body of `PUT /v1/services/{name}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutServiceRequest {
    #[schema(schema_with = fields::endpoints)]
    pub endpoints: Vec<String>,
    /// Health settings over `[health]`: kind, path, expect, host, interval, timeout, rise, fall.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object_only"
    )]
    #[schema(schema_with = fields::health)]
    pub health: Option<HealthSpec>,
}

/// An optional nested object, refused when it is given as an array (which serde would take).
fn object_only<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::de::Error;
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v @ serde_json::Value::Object(_)) => serde_json::from_value(v)
            .map(Some)
            .map_err(D::Error::custom),
        Some(_) => Err(D::Error::custom("expected an object")),
    }
}

/// The body of `PUT /v1/aliases/{alias}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutAliasRequest {
    /// The services it answers with: required to create, a relink when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = fields::optional_targets)]
    pub targets: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = fields::port_name)]
    pub port_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = fields::if_none_healthy)]
    pub if_none_healthy: Option<String>,
}

/// What `DELETE` answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct DeletedDto {
    pub deleted: String,
}

/// `POST /v1/reload`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ReloadDto {
    pub summary: String,
    pub aliases_added: Vec<String>,
    pub aliases_removed: Vec<String>,
    pub services_added: Vec<String>,
    pub services_removed: Vec<String>,
    pub services_changed: Vec<String>,
    pub zones: Vec<String>,
}

impl ReloadDto {
    pub fn from_summary(s: &ReloadSummary) -> Self {
        Self {
            summary: s.text(),
            aliases_added: s.aliases_added.clone(),
            aliases_removed: s.aliases_removed.clone(),
            services_added: s.services_added.clone(),
            services_removed: s.services_removed.clone(),
            services_changed: s.services_changed.clone(),
            zones: s.zones.clone(),
        }
    }
}

/// The body of `PUT /v1/aliases/{alias}/targets`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    #[schema(schema_with = fields::targets)]
    pub targets: Vec<String>,
}

/// One service name or several.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Default for OneOrMany {
    fn default() -> Self {
        Self::Many(Vec::new())
    }
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// The body of `POST /v1/aliases/{alias}/promote`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    #[schema(schema_with = fields::promote_to)]
    pub to: OneOrMany,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = fields::observe)]
    pub observe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<bool>,
    /// Healthy endpoints the new version needs, 1 to 10,000 (default: all of them).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_number"
    )]
    #[schema(minimum = 1, maximum = 10000)]
    pub min_healthy: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = fields::warm_timeout)]
    pub warm_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = fields::reason)]
    pub reason: Option<String>,
    /// Stop the old version's Docker containers once it is safe to stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_old: Option<bool>,
    /// Weighted steps: a list such as `[{"weight": 10, "hold": "1m"}, {"weight": 50, "pause":
    /// true}, {"weight": 100}]`, the same in the CLI form (`"10%:1m,50%:pause,100%"`), or a
    /// preset's name (`canary10-5m`, `linear10-1m`). Without steps, both versions answer every
    /// client while mixed, as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = fields::steps)]
    pub steps: Option<serde_json::Value>,
    /// With steps: the most failed requests (5xx answers, failed connections) per request the
    /// proxy may see of the new version over a step, 0 to 1 (0.01 is 1%); more rolls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub max_error_rate: Option<f64>,
    /// With steps: the most the new version's p99 latency may be of the old one's, 1 to 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1.0, maximum = 1000.0)]
    pub max_latency_ratio: Option<f64>,
    /// With gates: requests to the new version needed before a step's figures are judged
    /// (default 1), at most 1,000,000,000.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_number"
    )]
    #[schema(minimum = 0, maximum = 1000000000)]
    pub min_requests: Option<u64>,
}

/// The body of `POST /v1/aliases/{alias}/rollback`: the same gates as a promote.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// A revision from the alias's history; without it, the targets before the last change.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_number"
    )]
    pub to_revision: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = fields::observe)]
    pub observe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<bool>,
    /// Healthy endpoints the new version needs, 1 to 10,000 (default: all of them).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_number"
    )]
    #[schema(minimum = 1, maximum = 10000)]
    pub min_healthy: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = fields::warm_timeout)]
    pub warm_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = fields::reason)]
    pub reason: Option<String>,
}

/// The body of `confirm` and `abort` (optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = fields::reason)]
    pub reason: Option<String>,
}

/// What a promote, rollback, confirm or abort answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct OperationReply {
    /// Whether the request changed anything: false for a promote or rollback to the services
    /// that already answer.
    pub started: bool,
    pub alias: AliasDto,
}

/// One step of a dry-run plan.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct PlanStepDto {
    pub phase: Phase,
    pub services: Vec<String>,
    pub endpoints: Vec<String>,
    /// What ends the step.
    pub until: String,
}

/// `POST /v1/aliases/{alias}/promote?dry_run=true`: what would happen, with nothing changed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct PlanDto {
    pub alias: String,
    pub from: Vec<String>,
    pub to: Vec<String>,
    /// True when the alias already answers with `to`: a promote would change nothing.
    pub noop: bool,
    pub steps: Vec<PlanStepDto>,
    pub ttl: u32,
    pub negative_ttl: u32,
    /// How long the old version stays alive after it leaves the answers.
    pub drain_window: String,
    pub observe: String,
    pub confirm: bool,
    /// Healthy endpoints the new version needs.
    pub min_healthy: u32,
    pub warm_timeout: String,
    /// The new version's endpoints healthy now, of how many.
    pub healthy_now: u32,
    pub total: u32,
}

impl PlanDto {
    /// The plan of promoting `alias` as the controller worked it out, in words.
    pub fn from_dry_run(alias: &AliasName, plan: &DryRun, topology: &Topology) -> Self {
        let names = |s: &[ServiceName]| s.iter().map(ToString::to_string).collect::<Vec<_>>();
        let step = |phase: Phase, services: &[ServiceName], until: String| PlanStepDto {
            phase,
            services: names(services),
            endpoints: endpoints_of(topology, services)
                .iter()
                .map(ToString::to_string)
                .collect(),
            until,
        };
        let (from, to, options) = (&plan.from, &plan.to, &plan.options);
        let mut both = from.clone();
        both.extend(to.iter().filter(|s| !from.contains(s)).cloned());
        let observe = if options.confirm {
            format!(
                "{} of observation, then an explicit confirm",
                human(options.observe_ms)
            )
        } else {
            format!("{} of observation", human(options.observe_ms))
        };
        // With weighted steps, one mixed row per step: who gets which version, and what ends it.
        let ttl_window = topology.ttl_window_s();
        let mixed: Vec<PlanStepDto> = if options.steps.is_empty() {
            vec![step(Phase::Mixed, &both, observe)]
        } else {
            let of = options.steps.len();
            options
                .steps
                .iter()
                .enumerate()
                .filter(|(_, s)| s.weight < 100 || s.hold.is_some() || s.pause)
                .map(|(i, s)| {
                    let then = match (s.hold, s.pause) {
                        (Some(h), _) => format!("then {}", humantime::format_duration(h)),
                        (None, true) => "then a confirm".to_owned(),
                        (None, false) => "then on".to_owned(),
                    };
                    step(
                        Phase::Mixed,
                        &both,
                        format!(
                            "step {} of {of}: {}% of clients on {}; in effect once served \
                             everywhere and {ttl_window}s passed, {then}",
                            i + 1,
                            s.weight,
                            names(to).join("+")
                        ),
                    )
                })
                .collect()
        };
        let mut steps = vec![
            step(
                Phase::Warming,
                from,
                format!(
                    "{} of {} healthy, at most {}",
                    crate::text::plural(plan.need, "endpoint"),
                    names(to).join("+"),
                    human(options.warm_timeout_ms)
                ),
            ),
            step(
                Phase::Draining,
                to,
                format!(
                    "{} (the TTL window plus grace) for the old version's cached answers",
                    human(plan.drain_window_ms)
                ),
            ),
            step(Phase::Stable, to, "the old version is safe to stop".into()),
        ];
        steps.splice(1..1, mixed);
        Self {
            alias: alias.to_string(),
            from: names(from),
            to: names(to),
            noop: plan.noop,
            steps,
            ttl: topology.alias_ttl,
            negative_ttl: topology.negative_ttl,
            drain_window: human(plan.drain_window_ms),
            observe: human(options.observe_ms),
            confirm: options.confirm,
            min_healthy: plan.need,
            warm_timeout: human(options.warm_timeout_ms),
            healthy_now: plan.counts.healthy,
            total: plan.counts.total,
        }
    }
}

/// One history entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct HistoryDto {
    /// Empty for an entry about a service or the config.
    #[serde(default)]
    pub alias: String,
    /// The service an entry is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub revision: u64,
    pub at: String,
    pub actor: String,
    pub change: Change,
    /// Why, as the operator gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(with = "phase_or_empty")]
    #[schema(schema_with = phase_or_empty::schema)]
    pub phase: Option<Phase>,
    pub targets: Vec<String>,
    pub answering: Vec<String>,
    /// The operation the change belongs to (the revision that started it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<u64>,
    /// Its kind (absent in entries recorded before aliasd noted it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_kind: Option<OpKind>,
}

impl HistoryDto {
    pub fn from_entry(e: &HistoryEntry) -> Self {
        let wire = WireEntry::from(e.clone());
        Self {
            alias: wire.alias.trim_end_matches('.').to_owned(),
            service: wire.service,
            revision: wire.revision,
            at: rfc3339_ms(e.at_ms),
            actor: e.actor.clone(),
            change: e.change.into(),
            reason: wire.reason,
            phase: Phase::parse(&wire.phase),
            targets: wire.targets,
            answering: wire.answering,
            op: wire.op,
            op_kind: wire.op_kind.map(OpKind::from),
        }
    }
}

/// One message of `GET /v1/events`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventDto {
    /// An alias changed; `entry` is its history entry.
    Change {
        #[serde(flatten)]
        entry: HistoryDto,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retired: Option<RetiredDto>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        drain_until: Option<String>,
    },
    /// An endpoint changed health.
    Health {
        service: String,
        endpoint: String,
        health: Health,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        at: String,
    },
    /// A service or the config changed (defined, deleted, reloaded).
    Registry {
        #[serde(flatten)]
        entry: HistoryDto,
    },
    /// The endpoints of a service changed (any source).
    Endpoints {
        service: String,
        endpoints: Vec<String>,
        at: String,
    },
    /// Docker discovery connected or lost the daemon.
    Docker {
        connected: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        at: String,
    },
    /// A secondary now serves another serial, caught up, fell behind, or failed to answer.
    Secondary {
        #[serde(flatten)]
        secondary: SecondaryDto,
        at: String,
    },
    /// A rollout of many aliases changed: started, a member moved on, paused, ended.
    Rollout {
        rollout: Box<RolloutDto>,
        at: String,
    },
    /// The stream fell behind and skipped this many events; re-read state with GET.
    Lagged { skipped: u64 },
}

/// Every error body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDto {
    pub error: String,
    /// A refused reload: every problem, each naming the file and position.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// What `POST /v1/aliases/{alias}/promote` answers: the operation, or with `dry_run=true` the
/// plan (spec only: the handler sends one or the other).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PromoteAnswer {
    Reply(Box<OperationReply>),
    Plan(PlanDto),
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthDto {
    pub status: String,
    pub generation: u64,
}

/// The latest time RFC 3339 can write: 9999-12-31T23:59:59.999Z, in ms since the epoch.
const MAX_RFC3339_MS: u64 = 253_402_300_799_999;

/// `ms` since the epoch as RFC 3339 with milliseconds. Never fails: a time past year 9999 (which
/// the bounds keep out, but a hand-edited state file could hold) is written as the last
/// millisecond of 9999.
pub fn rfc3339_ms(ms: u64) -> String {
    let ms = ms.min(MAX_RFC3339_MS);
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// What aliasd knows of one secondary of a zone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct SecondaryDto {
    /// The zone, with its trailing dot.
    pub zone: String,
    /// `ip:port` of the secondary.
    pub address: String,
    /// The serial it served when last asked; `null` until it first answered.
    pub serial: Option<u32>,
    /// When it was last asked and answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_at: Option<String>,
    /// The serial it should serve: the zone's now.
    pub wanted: u32,
    /// Whether it serves `wanted` (or later).
    pub caught_up: bool,
    /// How long it has been behind, in milliseconds (0 when caught up).
    pub behind_ms: u64,
    /// The last serial it acknowledged a NOTIFY for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified: Option<u32>,
    /// Why the last NOTIFY or SOA query to it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SecondaryDto {
    pub fn from_state(s: &crate::secondaries::SecondaryState, now_ms: u64) -> Self {
        let caught_up = s.caught_up();
        Self {
            zone: s.zone.clone(),
            address: s.address.to_string(),
            serial: s.serial,
            serial_at: s.serial_at_ms.map(rfc3339_ms),
            wanted: s.wanted,
            caught_up,
            behind_ms: if caught_up {
                0
            } else {
                now_ms.saturating_sub(s.wanted_since_ms)
            },
            notified: s.notified,
            error: s.error.clone(),
        }
    }
}

/// `GET /v1/secondaries`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct SecondariesDto {
    pub secondaries: Vec<SecondaryDto>,
}

mod rollouts;
pub use rollouts::*;
