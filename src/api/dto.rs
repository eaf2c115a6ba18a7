//! The JSON shapes of the control API: the only types that cross the wire, shared by the server
//! and the client so they cannot drift apart.

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::controller::history::HistoryEntry;
use crate::controller::machine::{self, Operation, Phase, Retired};
use crate::controller::{Busy, now_ms};
use crate::health::HealthBoard;
use crate::snapshot::{AliasView, Snapshot};

/// An alias as `GET /v1/aliases/{alias}` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AliasDto {
    /// Fully qualified, without the trailing dot: `web.internal`.
    pub name: String,
    pub zone: String,
    /// The linked services; during a promotion, the old ones.
    pub targets: Vec<String>,
    /// `stable`, `warming`, `mixed` or `draining`.
    pub phase: String,
    /// The services whose endpoints are answered now.
    pub answering: Vec<String>,
    /// The endpoints DNS answers with: the answering services' endpoints that are not unhealthy.
    pub endpoints: Vec<String>,
    /// Set when no endpoint is healthy and this `if_none_healthy` policy chose the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// Every service involved, with each endpoint's health.
    pub members: Vec<MemberDto>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<OperationDto>,
    /// What the last operation took out of the answers and when it may be stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<RetiredDto>,
    /// While draining: the TTL window and the proxy's open work on the old version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainDto>,
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
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberDto {
    pub service: String,
    /// `active` (linked), `incoming` (being promoted to) or `draining` (left the answers).
    pub role: String,
    pub answering: bool,
    /// Requests and connections the front proxy has open on this service now.
    #[serde(default)]
    pub inflight: u64,
    pub endpoints: Vec<EndpointDto>,
}

/// Where a drain stands: it ends when the TTL window is over and the proxy's work on the old
/// version is done (or the proxy's drain deadline cut it off).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DrainDto {
    pub services: Vec<String>,
    /// When the TTL window (plus grace) ends.
    pub ttl_window_until: String,
    pub ttl_window_over: bool,
    /// Requests and connections the front proxy still has open on the old version.
    pub proxy_inflight: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndpointDto {
    pub addr: String,
    /// `unknown`, `healthy` or `unhealthy`.
    pub health: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OperationDto {
    pub id: u64,
    /// `promote` or `rollback`.
    pub kind: String,
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub started_at: String,
    pub observe: String,
    pub confirm: bool,
    pub confirmed: bool,
    /// `null` means every endpoint of the new version.
    pub min_healthy: Option<u32>,
    pub warm_timeout: String,
    /// When the current phase ends on its own: the warm deadline, the end of observe, or the
    /// end of the drain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_deadline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_until: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RetiredDto {
    pub services: Vec<String>,
    pub safe_to_stop_at: String,
    /// Whether that time has come.
    pub safe_to_stop: bool,
    pub op: u64,
}

impl RetiredDto {
    pub fn from_retired(r: &Retired) -> Self {
        Self {
            services: r.services.iter().map(ToString::to_string).collect(),
            safe_to_stop_at: rfc3339_ms(r.safe_to_stop_at_ms),
            safe_to_stop: now_ms() >= r.safe_to_stop_at_ms,
            op: r.op,
        }
    }
}

fn human(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

impl OperationDto {
    pub fn from_phase(phase: &Phase) -> Option<Self> {
        let op: &Operation = phase.operation()?;
        let (confirmed, drain_until) = match phase {
            Phase::Mixed { confirmed, .. } => (*confirmed, None),
            Phase::Draining { until_ms, .. } => (true, Some(rfc3339_ms(*until_ms))),
            _ => (false, None),
        };
        Some(Self {
            id: op.id,
            kind: match op.kind {
                machine::OpKind::Promote => "promote".into(),
                machine::OpKind::Rollback => "rollback".into(),
            },
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
            phase_deadline: phase.deadline().map(rfc3339_ms),
            drain_until,
        })
    }
}

impl AliasDto {
    /// `busy` tells the front proxy's open work per endpoint.
    pub fn from_view(
        view: &AliasView,
        snapshot: &Snapshot,
        board: &HealthBoard,
        busy: &dyn Busy,
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
                    "draining"
                } else if state.targets.contains(service)
                    || matches!(state.phase, Phase::Draining { .. })
                {
                    // While draining, the new version answers alone: it is the active one.
                    "active"
                } else {
                    "incoming"
                };
                let endpoints = snapshot
                    .topology
                    .services
                    .get(service)
                    .map_or(&[][..], |c| &c.endpoints)
                    .iter()
                    .map(|e| {
                        let status = board.get(service, e);
                        EndpointDto {
                            addr: e.to_string(),
                            health: status.as_ref().map_or("unknown".into(), |s| {
                                serde_json::to_value(s.health)
                                    .ok()
                                    .and_then(|v| v.as_str().map(str::to_owned))
                                    .unwrap_or_default()
                            }),
                            last_check: status
                                .as_ref()
                                .and_then(|s| s.last_check_ms)
                                .map(rfc3339_ms),
                            last_error: status.as_ref().and_then(|s| s.last_error.clone()),
                        }
                    })
                    .collect();
                let mine = snapshot
                    .topology
                    .services
                    .get(service)
                    .map_or(&[][..], |c| &c.endpoints);
                MemberDto {
                    service: service.to_string(),
                    role: role.into(),
                    answering: view.answering.contains(service),
                    inflight: busy.inflight(mine),
                    endpoints,
                }
            })
            .collect();
        Self {
            name: view.name.to_string(),
            zone: view.zone.to_ascii(),
            targets: state.targets.iter().map(ToString::to_string).collect(),
            phase: state.phase.name().into(),
            answering: view.answering.iter().map(ToString::to_string).collect(),
            endpoints: view.endpoints.iter().map(ToString::to_string).collect(),
            fallback: view.fallback.and_then(|f| {
                serde_json::to_value(f)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
            }),
            members,
            operation: OperationDto::from_phase(&state.phase),
            retired: state.retired.as_ref().map(RetiredDto::from_retired),
            drain: match &state.phase {
                Phase::Draining { until_ms, .. } => Some(DrainDto {
                    services: draining.iter().map(ToString::to_string).collect(),
                    ttl_window_until: rfc3339_ms(*until_ms),
                    ttl_window_over: now_ms() >= *until_ms,
                    proxy_inflight: busy.inflight(&crate::snapshot::endpoints_of(
                        &snapshot.topology.services,
                        &draining,
                    )),
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
        }
    }
}

/// A service as `GET /v1/services` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceDto {
    pub name: String,
    pub endpoints: Vec<String>,
    /// The aliases that link it now.
    pub linked_by: Vec<String>,
}

/// The body of `PUT /v1/aliases/{alias}/targets`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    pub targets: Vec<String>,
}

/// One service name or several.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    pub to: Option<OneOrMany>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_healthy: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The body of `POST /v1/aliases/{alias}/rollback`: the same gates as a promote.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// A revision from the alias's history; without it, the targets before the last change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_revision: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_healthy: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The body of `confirm` and `abort` (optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a promote, rollback, confirm or abort answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OperationReply {
    /// Whether the request changed anything: false for a promote or rollback to the services
    /// that already answer.
    pub started: bool,
    pub alias: AliasDto,
}

/// One step of a dry-run plan.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlanStepDto {
    pub phase: String,
    pub services: Vec<String>,
    pub endpoints: Vec<String>,
    /// What ends the step.
    pub until: String,
}

/// `POST /v1/aliases/{alias}/promote?dry_run=true`: what would happen, with nothing changed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
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

/// One history entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HistoryDto {
    pub alias: String,
    pub revision: u64,
    pub at: String,
    pub actor: String,
    /// `linked`, `started`, `mixed`, `confirmed`, `draining`, `completed`, `aborted`,
    /// `warm_timeout` or `auto_rollback`.
    pub change: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub phase: String,
    pub targets: Vec<String>,
    pub answering: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<u64>,
}

impl HistoryDto {
    pub fn from_entry(e: &HistoryEntry) -> Self {
        Self {
            alias: e.alias.trim_end_matches('.').to_owned(),
            revision: e.revision,
            at: rfc3339_ms(e.at_ms),
            actor: e.actor.clone(),
            change: serde_json::to_value(e.change)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            reason: e.reason.clone(),
            phase: e.phase.clone(),
            targets: e.targets.clone(),
            answering: e.answering.clone(),
            op: e.op,
        }
    }
}

/// One message of `GET /v1/events`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
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
        health: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        at: String,
    },
    /// The stream fell behind and skipped this many events; re-read state with GET.
    Lagged { skipped: u64 },
}

/// Every error body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDto {
    pub error: String,
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthDto {
    pub status: String,
    pub generation: u64,
}

pub fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}
