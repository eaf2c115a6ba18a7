//! The registry's changes as pure functions: define or delete a service, create or remove an
//! alias, reload the config. Each checks the request against the current state and topology
//! and returns the next state with the history entries that record it, or why it is refused.
//! The controller's shell stores and publishes what these return; nothing here does IO.

use std::collections::{BTreeMap, BTreeSet};

use super::error::{ControlError, check_services};
use super::history::{HistoryEntry, Subject};
use super::machine::{self, Change, ChangeKind, Ctx, Input, Outcome};
use crate::check::HealthSpec;
use crate::config::IfNoneHealthy;
use crate::model::{AliasName, Endpoint, ServiceName};
use crate::registry::{AliasSpec, ApiService, Base, Topology, check_port_name, place_alias};
use crate::serial::serial_gt;
use crate::state::{AliasState, State, fresh, names};

/// The most endpoints one API-defined service may list.
pub const MAX_API_ENDPOINTS: usize = 10_000;

/// A service entry of the history.
fn service_entry(
    service: &ServiceName,
    kind: ChangeKind,
    actor: &str,
    at_ms: u64,
    reason: String,
) -> HistoryEntry {
    HistoryEntry {
        seq: 0,
        subject: Subject::Service(service.to_string()),
        at_ms,
        actor: actor.to_owned(),
        change: kind,
        reason: Some(reason),
    }
}

/// The aliases that link `service` now or move to or from it in a running operation.
pub fn linked_by(state: &State, service: &ServiceName) -> Vec<AliasName> {
    state
        .aliases
        .iter()
        .filter(|(_, a)| {
            a.targets.contains(service)
                || a.phase
                    .operation()
                    .is_some_and(|op| op.to.contains(service) || op.from.contains(service))
        })
        .map(|(n, _)| n.clone())
        .collect()
}

fn list(endpoints: &[Endpoint]) -> String {
    if endpoints.is_empty() {
        "no endpoints".to_owned()
    } else {
        endpoints
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Defines `name` through the API, or replaces its definition. `None` when it is already so.
pub fn put_service(
    base: &Base,
    state: &State,
    name: &ServiceName,
    endpoints: Vec<Endpoint>,
    health: HealthSpec,
    actor: &str,
    now_ms: u64,
) -> Result<Option<(State, HistoryEntry, bool)>, ControlError> {
    if base.services.contains_key(name) {
        return Err(ControlError::Conflict(format!(
            "service `{name}` is defined in the config; change it there and reload"
        )));
    }
    if endpoints.len() > MAX_API_ENDPOINTS {
        return Err(ControlError::BadRequest(format!(
            "`endpoints` lists {} endpoints; at most {MAX_API_ENDPOINTS} are allowed",
            endpoints.len()
        )));
    }
    for (i, e) in endpoints.iter().enumerate() {
        if endpoints[..i].contains(e) {
            return Err(ControlError::BadRequest(format!(
                "endpoint `{e}` is listed twice"
            )));
        }
    }
    health
        .apply(&base.default_check)
        .map_err(|p| ControlError::BadRequest(format!("health: {}", p.join("; "))))?;
    let before = state.registry.api_services.get(name);
    if before.is_some_and(|b| b.endpoints == endpoints && b.health == health) {
        return Ok(None);
    }
    let reason = match before {
        None => format!("defined with {}", list(&endpoints)),
        Some(b) if b.endpoints != endpoints => {
            format!(
                "endpoints {} (were {})",
                list(&endpoints),
                list(&b.endpoints)
            )
        }
        Some(_) => "health settings changed".to_owned(),
    };
    let created = before.is_none();
    let mut next = state.clone();
    next.registry.api_services.insert(
        name.clone(),
        ApiService {
            endpoints,
            health,
            changed_by: actor.to_owned(),
            changed_at_ms: now_ms,
        },
    );
    let e = service_entry(name, ChangeKind::ServiceSet, actor, now_ms, reason);
    Ok(Some((next, e, created)))
}

/// Deletes the API definition of `name`. Refused while an alias links it.
pub fn delete_service(
    base: &Base,
    state: &State,
    topology: &Topology,
    name: &ServiceName,
    actor: &str,
    now_ms: u64,
) -> Result<(State, HistoryEntry), ControlError> {
    if !state.registry.api_services.contains_key(name) {
        return Err(if base.services.contains_key(name) {
            ControlError::Conflict(format!(
                "service `{name}` is defined in the config; remove it there and reload"
            ))
        } else if topology.services.contains_key(name) {
            ControlError::Conflict(format!(
                "service `{name}` is not defined through the API: its endpoints come from Docker containers, and it goes when they do"
            ))
        } else {
            ControlError::unknown_service(topology, name)
        });
    }
    let users = linked_by(state, name);
    if !users.is_empty() {
        let users: Vec<String> = users.iter().map(|a| format!("`{a}`")).collect();
        return Err(ControlError::Conflict(format!(
            "service `{name}` is linked by alias {}; link the alias elsewhere first",
            users.join(", ")
        )));
    }
    let mut next = state.clone();
    next.registry.api_services.remove(name);
    let e = service_entry(
        name,
        ChangeKind::ServiceDeleted,
        actor,
        now_ms,
        "deleted through the API".into(),
    );
    Ok((next, e))
}

/// What `PUT /v1/aliases/{alias}` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AliasPut {
    /// Needed to create; when given for an existing alias, it relinks it.
    pub targets: Option<Vec<ServiceName>>,
    pub port_name: Option<String>,
    pub if_none_healthy: Option<IfNoneHealthy>,
}

/// An alias change for the shell to commit: the next state, and the alias transition (or
/// creation) to record.
pub struct AliasChange {
    pub state: State,
    pub alias: AliasState,
    pub change: Change,
    pub created: bool,
}

/// The revision an alias created (again) starts after: it continues its history, so a
/// revision number always means one change.
pub fn next_revision_after(history: &[HistoryEntry]) -> u64 {
    history
        .iter()
        .map(HistoryEntry::revision)
        .max()
        .unwrap_or(0)
}

/// Creates the API alias `name` or changes it. `None` when nothing changes.
#[allow(clippy::too_many_arguments)]
pub fn put_alias(
    base: &Base,
    state: &State,
    topology: &Topology,
    name: &AliasName,
    put: AliasPut,
    last_revision: u64,
    actor: &str,
    now_ms: u64,
) -> Result<Option<AliasChange>, ControlError> {
    if base.aliases.contains_key(name) {
        return Err(ControlError::Conflict(format!(
            "alias `{name}` is defined in the config; change it there and reload"
        )));
    }
    if let Some(p) = &put.port_name {
        check_port_name(p).map_err(ControlError::BadRequest)?;
    }
    if let Some(t) = &put.targets {
        if t.is_empty() {
            return Err(ControlError::EmptyTargets);
        }
        check_services(topology, t)?;
    }
    let mut next = state.clone();
    match (
        state.registry.api_aliases.get(name),
        state.aliases.get(name),
    ) {
        (Some(spec), Some(current)) => {
            let mut spec = spec.clone();
            let before = spec.clone();
            if let Some(p) = put.port_name {
                spec.port_name = p;
            }
            if let Some(p) = put.if_none_healthy {
                spec.if_none_healthy = p;
            }
            let relink = put.targets.filter(|t| *t != current.targets);
            if spec == before && relink.is_none() {
                return Ok(None);
            }
            next.registry.api_aliases.insert(name.clone(), spec.clone());
            let relinked = match relink {
                Some(targets) => {
                    let ctx = Ctx {
                        now: now_ms,
                        ttl_window_s: topology.ttl_window_s(),
                        grace_ms: 0,
                        counts: &|_| machine::Counts::default(),
                        busy: &|_| 0,
                        drain_deadline_ms: 0,
                        secondaries: &|| machine::Caught::Since(0),
                        measured: &|| machine::Measured::Nothing,
                    };
                    let input = Input::Link {
                        targets,
                        actor: actor.to_owned(),
                    };
                    match machine::step(current, input, &ctx)? {
                        Outcome::Changed(s, c) => Some((*s, c)),
                        Outcome::Unchanged => None,
                    }
                }
                None => None,
            };
            let (alias, change) = relinked.unwrap_or_else(|| {
                let mut alias = current.clone();
                alias.revision += 1;
                alias.changed_at_ms = now_ms;
                alias.changed_by = actor.to_owned();
                let change = Change {
                    kind: ChangeKind::Updated,
                    actor: actor.to_owned(),
                    reason: Some(format!(
                        "port_name {}, if_none_healthy {}",
                        spec.port_name,
                        spec.if_none_healthy.as_str()
                    )),
                };
                (alias, change)
            });
            Ok(Some(AliasChange {
                state: next,
                alias,
                change,
                created: false,
            }))
        }
        _ => {
            // Not malformed (the same body changes an alias that exists): there is no alias to
            // change, so a 404, as the API's spec can state no rule that depends on what exists.
            let targets = put.targets.ok_or_else(|| {
                ControlError::NotFound(format!(
                    "no alias `{name}` to change; `targets` is required to create an alias: the services it answers with"
                ))
            })?;
            place_alias(name, &topology.zones, &topology.aliases)
                .map_err(ControlError::BadRequest)?;
            let spec = AliasSpec {
                port_name: put.port_name.unwrap_or_else(|| "http".to_owned()),
                if_none_healthy: put.if_none_healthy.unwrap_or(IfNoneHealthy::LastKnownGood),
                created_by: actor.to_owned(),
                created_at_ms: now_ms,
            };
            next.registry.api_aliases.insert(name.clone(), spec);
            let mut alias = fresh(targets, last_revision + 1, now_ms, actor);
            alias.ttl_served_s = topology.ttl_window_s();
            Ok(Some(AliasChange {
                state: next,
                alias,
                change: Change {
                    kind: ChangeKind::Created,
                    actor: actor.to_owned(),
                    reason: Some("created through the API".into()),
                },
                created: true,
            }))
        }
    }
}

/// The history entry of removing `alias` (in `current` until now).
pub fn removal_entry(
    name: &AliasName,
    current: &AliasState,
    actor: &str,
    now_ms: u64,
    reason: &str,
) -> HistoryEntry {
    let mut last = current.clone();
    last.revision += 1;
    last.changed_at_ms = now_ms;
    last.changed_by = actor.to_owned();
    let mut e = entry(
        name,
        &last,
        &Change {
            kind: ChangeKind::Removed,
            actor: actor.to_owned(),
            reason: Some(reason.to_owned()),
        },
    );
    if let Subject::Alias(a) = &mut e.subject {
        a.answering = Vec::new();
    }
    e
}

/// Removes the API alias `name`. Refused while it is in a promotion or rollback.
pub fn delete_alias(
    base: &Base,
    state: &State,
    name: &AliasName,
    actor: &str,
    now_ms: u64,
) -> Result<(State, HistoryEntry), ControlError> {
    if base.aliases.contains_key(name) {
        return Err(ControlError::Conflict(format!(
            "alias `{name}` is defined in the config; remove it there and reload"
        )));
    }
    let current = state
        .aliases
        .get(name)
        .filter(|_| state.registry.api_aliases.contains_key(name))
        .ok_or_else(|| ControlError::UnknownAlias(name.to_string()))?;
    refuse_if_running(name, current, "remove it")?;
    let mut next = state.clone();
    next.aliases.remove(name);
    next.registry.api_aliases.remove(name);
    let e = removal_entry(name, current, actor, now_ms, "removed through the API");
    Ok((next, e))
}

fn refuse_if_running(name: &AliasName, alias: &AliasState, what: &str) -> Result<(), ControlError> {
    match alias.phase.operation() {
        None => Ok(()),
        Some(op) => Err(ControlError::Conflict(format!(
            "alias `{name}` is in a {} (operation {}, phase {}); abort it or wait for it to end, then {what}",
            match op.kind {
                machine::OpKind::Promote => "promotion",
                machine::OpKind::Rollback => "rollback",
            },
            op.id,
            alias.phase.name()
        ))),
    }
}

/// What a reload does, for the caller and the history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub aliases_added: Vec<String>,
    pub aliases_removed: Vec<String>,
    pub services_added: Vec<String>,
    pub services_removed: Vec<String>,
    pub services_changed: Vec<String>,
    pub zones: Vec<String>,
}

impl ReloadSummary {
    pub fn text(&self) -> String {
        let mut parts = Vec::new();
        for (one, many, items) in [
            ("alias added", "aliases added", &self.aliases_added),
            ("alias removed", "aliases removed", &self.aliases_removed),
            ("service added", "services added", &self.services_added),
            (
                "service removed",
                "services removed",
                &self.services_removed,
            ),
            (
                "service changed",
                "services changed",
                &self.services_changed,
            ),
        ] {
            if !items.is_empty() {
                let label = if items.len() == 1 { one } else { many };
                parts.push(format!("{label}: {}", items.join(", ")));
            }
        }
        if parts.is_empty() {
            parts.push("no alias or service changed".into());
        }
        parts.join("; ")
    }
}

/// What a reload changes, for the shell to commit.
pub struct Reloaded {
    pub state: State,
    /// The aliases the new config adds, as creations.
    pub created: Vec<(AliasName, AliasState, Change)>,
    /// The removals and the reload itself.
    pub entries: Vec<HistoryEntry>,
    pub summary: ReloadSummary,
}

/// What the API defined that the new config `new` defines too, or no longer has room for.
fn api_conflicts(new: &Base, state: &State) -> Vec<String> {
    let mut problems = Vec::new();
    // API definitions the new config now also has.
    for name in state.registry.api_services.keys() {
        if new.services.contains_key(name) {
            problems.push(format!(
                "service `{name}` is defined through the API and now in the config too; delete one of them"
            ));
        }
    }
    for name in state.registry.api_aliases.keys() {
        if new.aliases.contains_key(name) {
            problems.push(format!(
                "alias `{name}` is defined through the API and now in the config too; delete one of them"
            ));
        }
    }
    // API aliases must still fit the new zones and config aliases.
    for name in state.registry.api_aliases.keys() {
        let others: BTreeMap<AliasName, ()> = new
            .aliases
            .keys()
            .chain(state.registry.api_aliases.keys().filter(|o| *o != name))
            .map(|a| (a.clone(), ()))
            .collect();
        if let Err(e) = place_alias(name, &new.zones, &others) {
            problems.push(format!("alias `{name}` (defined through the API): {e}"));
        }
    }
    problems
}

/// The services `new` adds, changes and removes against `old`, into `summary`.
fn summarize_services(old: &Base, new: &Base, summary: &mut ReloadSummary) {
    for (name, s) in &new.services {
        match old.services.get(name) {
            None => summary.services_added.push(name.to_string()),
            Some(o) if o.endpoints != s.endpoints || o.check != s.check => {
                summary.services_changed.push(name.to_string())
            }
            Some(_) => {}
        }
    }
    for name in old.services.keys() {
        if !new.services.contains_key(name) {
            summary.services_removed.push(name.to_string());
        }
    }
}

/// The serials under `new`: per zone origin, as at a start, from the larger of what was
/// served and the file's, plus one, since the static records may have changed.
fn reloaded_serials(old: &Base, new: &Base, state: &State) -> Vec<u32> {
    new.zones
        .iter()
        .map(|z| {
            let served = old
                .zones
                .iter()
                .position(|o| o.origin.name() == z.origin.name())
                .and_then(|i| state.serials.get(i).copied());
            let base = match served {
                Some(s) if serial_gt(s, z.file_serial) => s,
                _ => z.file_serial,
            };
            base.wrapping_add(1)
        })
        .collect()
}

/// The next state under a reloaded config `new`, with the entries that record it: every
/// problem is collected, and any problem refuses the whole reload.
pub fn reload(
    old: &Base,
    new: &Base,
    state: &State,
    actor: &str,
    now_ms: u64,
) -> Result<Reloaded, Vec<String>> {
    let mut problems = Vec::new();
    let mut next = state.clone();
    let mut summary = ReloadSummary::default();
    problems.extend(api_conflicts(new, state));
    // Config aliases that leave.
    let mut removals = Vec::new();
    for name in old.aliases.keys() {
        if new.aliases.contains_key(name) {
            continue;
        }
        if let Some(current) = state.aliases.get(name) {
            if let Err(e) = refuse_if_running(name, current, "remove it from the config") {
                problems.push(e.to_string());
                continue;
            }
            removals.push(removal_entry(
                name,
                current,
                actor,
                now_ms,
                "removed from the config",
            ));
            next.aliases.remove(name);
            summary.aliases_removed.push(name.to_string());
        }
    }
    // Config aliases that arrive start from their config targets.
    let mut created = Vec::new();
    for (name, def) in &new.aliases {
        if old.aliases.contains_key(name) || state.aliases.contains_key(name) {
            continue;
        }
        let mut alias = fresh(def.targets.clone(), 1, now_ms, actor);
        alias.ttl_served_s = new.alias_ttl.max(new.negative_ttl);
        next.aliases.insert(name.clone(), alias.clone());
        created.push((
            name.clone(),
            alias,
            Change {
                kind: ChangeKind::Created,
                actor: actor.to_owned(),
                reason: Some("added to the config".into()),
            },
        ));
        summary.aliases_added.push(name.to_string());
    }
    // Every service an alias still needs must exist under the new config.
    let topology = Topology::build(new, &next.registry, next.named_services());
    let mut missing = BTreeSet::new();
    for (alias, a) in &next.aliases {
        let op = a.phase.operation();
        for s in a
            .targets
            .iter()
            .chain(op.into_iter().flat_map(|o| o.from.iter().chain(&o.to)))
        {
            if !topology.services.contains_key(s) && missing.insert((s.clone(), alias.clone())) {
                problems.push(format!(
                    "service `{s}` is linked by alias `{alias}` and the new config no longer defines it; link the alias elsewhere first"
                ));
            }
        }
    }
    summarize_services(old, new, &mut summary);
    if !problems.is_empty() {
        return Err(problems);
    }
    next.serials = reloaded_serials(old, new, state);
    summary.zones = new
        .zones
        .iter()
        .map(|z| z.origin.name().to_string())
        .collect();
    let mut entries = removals;
    entries.push(HistoryEntry {
        seq: 0,
        subject: Subject::Config,
        at_ms: now_ms,
        actor: actor.to_owned(),
        change: ChangeKind::Reloaded,
        reason: Some(summary.text()),
    });
    Ok(Reloaded {
        state: next,
        created,
        entries,
        summary,
    })
}

/// The history entry for `change`, which left `alias` in `state`.
pub fn entry(alias: &AliasName, state: &AliasState, change: &Change) -> HistoryEntry {
    HistoryEntry {
        seq: 0,
        subject: Subject::Alias(super::history::AliasChange {
            alias: alias.name().to_ascii(),
            revision: state.revision,
            phase: state.phase.name().to_owned(),
            targets: names(&state.targets),
            answering: names(&machine::answering(state)),
            // A stop of retired containers belongs to the operation that retired them.
            op: state.phase.operation().map(|op| op.id).or_else(|| {
                (change.kind == ChangeKind::Stopped)
                    .then(|| state.retired.as_ref().map(|r| r.op))
                    .flatten()
            }),
            op_kind: state.phase.operation().map(|op| op.kind).or_else(|| {
                (change.kind == ChangeKind::Stopped)
                    .then(|| state.retired.as_ref().and_then(|r| r.kind))
                    .flatten()
            }),
        }),
        at_ms: state.changed_at_ms,
        actor: change.actor.clone(),
        change: change.kind,
        reason: change.reason.clone(),
    }
}

#[cfg(test)]
mod tests;
