//! The immutable published view: everything DNS, the proxy and the API read, built from the
//! controller's state and swapped in atomically.
//!
//! A snapshot is never changed after it is built. Readers load the current `Arc<Snapshot>` without
//! a lock (arc-swap), so a query never waits on the writer and sees either the old or the new
//! generation, never a mix. Every lookup is a few hash-map probes: NXDOMAIN costs the same as a
//! hit.
//!
//! A new generation shares everything that did not change with the one before: the static part
//! of each zone (one index per config load), and every alias that is not dirty (persistent maps
//! from `imbl`, cloned in O(1)). So one change costs about the same with 10 aliases as with
//! 10,000: only the aliases it touches are rendered again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType};

use crate::check::Health;
use crate::config::IfNoneHealthy;
use crate::model::{AliasName, Endpoint, ServiceName};
use crate::registry::{EndpointInfo, Sources, Topology};
use crate::state::{AliasState, State, answering, draining, split};
use crate::wire::{self, WireName, wire_lower, wire_name};
use crate::zoneindex::{NameIndex, Node, ZoneStatics};

mod records;
pub use records::{AliasEntry, AliasRecords};

/// The health of every endpoint as aliasd's own checks see it.
pub type HealthMap = HashMap<(ServiceName, Endpoint), Health>;
/// Per alias, the last non-empty set of endpoints that passed the health filter.
pub type LastGood = HashMap<AliasName, Vec<Endpoint>>;

/// The shared cell the writer publishes into and readers load from.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

/// The health to answer `info` of `service` by: aliasd's check with the container's own.
///
/// Endpoints with no active check (`kind = "none"`) are not in `health` at all: they are
/// healthy, so a registry of 100,000 unchecked endpoints costs no health entries.
pub fn health_of(health: &HealthMap, service: &ServiceName, info: &EndpointInfo) -> Health {
    let checked = if info.check.kind == crate::check::CheckKind::None {
        Health::Healthy
    } else {
        health
            .get(&(service.clone(), info.endpoint))
            .copied()
            .unwrap_or(Health::Unknown)
    };
    info.effective(checked)
}

/// One published generation of everything.
#[derive(Debug)]
pub struct Snapshot {
    /// Grows by one on every publish; DNS and the API of one generation agree.
    pub generation: u64,
    pub zones: Vec<ZoneView>,
    pub aliases: imbl::OrdMap<AliasName, Arc<AliasView>>,
    pub topology: Arc<Topology>,
    /// How the sources stand (Docker reachable or not, containers with bad labels).
    pub sources: Arc<Sources>,
    /// The rollouts of many aliases, by id, as the state holds them.
    pub rollouts: imbl::OrdMap<u64, crate::state::Rollout>,
}

/// What an API reader sees of an alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasView {
    pub name: AliasName,
    pub zone: Name,
    pub state: AliasState,
    /// The services whose endpoints are in the answers (both versions while mixed).
    pub answering: Vec<ServiceName>,
    /// The endpoints answered, in order, after de-duplication and the health filter.
    pub endpoints: Vec<Endpoint>,
    /// The endpoints that passed the health filter (empty when a policy chose the answer).
    pub passing: Vec<Endpoint>,
    /// Endpoints of the services draining out of the answers (and of no answering service):
    /// the front proxies send them no new work but let what is open finish. Rendered with the
    /// view, so a request reads it instead of working it out.
    pub draining: Vec<Endpoint>,
    /// Set when no endpoint passed and `if_none_healthy` chose the answer.
    pub fallback: Option<IfNoneHealthy>,
    pub srv_name: Name,
    /// What an operator should know: an answering service with no endpoints, Docker away.
    pub warnings: Vec<String>,
    /// In a weighted step, what each side of the split answers (`endpoints` is then both).
    pub split: Option<ViewSplit>,
}

/// The two sides of an alias in a weighted step, as the proxy and the API read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewSplit {
    /// The percent of clients on the new side.
    pub weight: u8,
    /// The key of the hash that puts a client on a side ([`crate::steps::bucket`]).
    pub salt: String,
    /// The old side's passing endpoints (the new side's when it has none, the policy's when
    /// neither has any).
    pub old: Vec<Endpoint>,
    /// The new side's, likewise.
    pub new: Vec<Endpoint>,
}

impl ViewSplit {
    /// Whether `client` is on the new side: the rule DNS answers by
    /// ([`AliasRecords::for_client`]).
    pub fn on_new(&self, client: IpAddr) -> bool {
        crate::steps::on_new(self.salt.as_bytes(), client, self.weight)
    }
}

impl AliasView {
    /// The endpoints `client` is answered with: its side's in a weighted step, else all of
    /// `endpoints`.
    pub fn endpoints_for(&self, client: IpAddr) -> &[Endpoint] {
        match &self.split {
            Some(split) if split.on_new(client) => &split.new,
            Some(split) => &split.old,
            None => &self.endpoints,
        }
    }
}

/// One zone as DNS serves it in this generation.
#[derive(Debug)]
pub struct ZoneView {
    pub origin: LowerName,
    pub serial: u32,
    origin_wire: WireName,
    soa: Arc<RecordSet>,
    /// The SOA record for the authority section of negative answers, and its TTL.
    soa_wire: Arc<[u8]>,
    statics: Arc<NameIndex>,
    /// The names between aliases and the apex (see [`Topology::alias_ents`]).
    alias_ents: Arc<std::collections::HashSet<WireName>>,
    /// Alias name to its records. Aliases never nest and no static name is under one, so the
    /// owner of a name under an alias is found by probing the name and its two parents.
    aliases: imbl::HashMap<WireName, Arc<AliasRecords>>,
}

/// The outcome of a lookup in one zone.
#[derive(Debug)]
pub enum Lookup {
    /// The answer section and the additional section.
    Found {
        answers: Vec<Arc<RecordSet>>,
        additionals: Vec<Arc<RecordSet>>,
    },
    /// The name exists but has no records of the type asked for.
    NoData,
    /// The name does not exist in the zone.
    NxDomain,
}

/// Where a name stands in a zone.
pub(crate) enum Found<'a> {
    /// A static name with records.
    Static(&'a Node),
    /// A name of an alias with records.
    Alias(AliasEntry<'a>),
    /// The name exists, with no records (an empty non-terminal, an alias with no endpoints).
    Empty,
    NxDomain,
}

impl Found<'_> {
    /// The record sets of type `rtype`, for the full path.
    fn get(&self, rtype: RecordType) -> Option<Arc<RecordSet>> {
        match self {
            Self::Static(node) => node.get(rtype).cloned(),
            Self::Alias(entry) => entry.sets().into_iter().find(|s| s.record_type() == rtype),
            Self::Empty | Self::NxDomain => None,
        }
    }

    fn sets(&self) -> Vec<Arc<RecordSet>> {
        match self {
            Self::Static(node) => node.rrsets.clone(),
            Self::Alias(entry) => entry.sets(),
            Self::Empty | Self::NxDomain => Vec::new(),
        }
    }

    fn srv_additionals(&self) -> Vec<Arc<RecordSet>> {
        match self {
            Self::Static(node) => node.srv_additionals.clone(),
            Self::Alias(entry) => entry.srv_additionals(),
            Self::Empty | Self::NxDomain => Vec::new(),
        }
    }
}

/// CNAME chains inside the zone are followed this far, to stop loops.
const MAX_CNAME_HOPS: usize = 8;
/// How far below its alias a name of the alias can be: `_http._tcp.web` is two labels down.
const ALIAS_DEPTH: usize = 2;

impl ZoneView {
    /// The node of `name` (lowercase wire form) and whether the name exists at all, as
    /// `client` is answered (in a weighted step, an alias's names are its side's; with no
    /// client, the old side's, as zone transfers ship them).
    pub(crate) fn find(&self, name: &[u8], client: Option<IpAddr>) -> Found<'_> {
        let mut at = Some(name);
        for _ in 0..=ALIAS_DEPTH {
            let Some(candidate) = at else { break };
            if candidate.len() <= self.origin_wire.len() {
                break;
            }
            if let Some(records) = self.aliases.get(candidate) {
                let records = match client {
                    Some(ip) => records.for_client(ip),
                    None => records,
                };
                return match records.find(name) {
                    Some(entry) if entry.is_empty() => Found::Empty,
                    Some(entry) => Found::Alias(entry),
                    None => Found::NxDomain,
                };
            }
            at = wire::parent(candidate);
        }
        match self.statics.nodes.get(name) {
            Some(node) => Found::Static(node),
            None if self.statics.empty_non_terminals.contains(name)
                || self.alias_ents.contains(name) =>
            {
                Found::Empty
            }
            None => Found::NxDomain,
        }
    }

    /// The SOA of this generation, with its serial, for negative answers and SOA queries.
    pub fn soa(&self) -> &Arc<RecordSet> {
        &self.soa
    }

    /// The SOA record in wire form, for the authority section of negative answers.
    pub fn soa_wire(&self) -> &[u8] {
        &self.soa_wire
    }

    /// The zone origin in lowercase wire form.
    pub fn origin_wire(&self) -> &[u8] {
        &self.origin_wire
    }

    /// Every record of the zone in this generation but the SOA, as a zone transfer ships them:
    /// the zone file's, then each alias's as DNS answers it (health filter included; in a
    /// weighted step, the old side's: see [`AliasRecords::records`]).
    pub fn records(&self) -> Vec<Record> {
        let mut out: Vec<Record> = self
            .statics
            .nodes
            .values()
            .flat_map(|node| node.rrsets.iter())
            .filter(|set| set.record_type() != RecordType::SOA)
            .flat_map(|set| set.records_without_rrsigs().cloned().collect::<Vec<_>>())
            .collect();
        for alias in self.aliases.values() {
            out.extend(alias.records());
        }
        out
    }

    /// What changed from `older` to this generation, as `(removed, added)` records (SOA
    /// aside), or `None` when the zone file itself changed (a reload), which a full transfer
    /// ships more simply. Aliases whose records are shared with `older` are skipped unread, so
    /// the cost grows with what changed, not with the zone.
    pub fn changes_since(&self, older: &ZoneView) -> Option<(Vec<Record>, Vec<Record>)> {
        if !Arc::ptr_eq(&self.statics, &older.statics) {
            return None;
        }
        let same = |a: &Record, b: &Record| a == b && a.ttl == b.ttl;
        let (mut removed, mut added) = (Vec::new(), Vec::new());
        for (name, old) in older.aliases.iter() {
            match self.aliases.get(name) {
                Some(new) if Arc::ptr_eq(old, new) => {}
                Some(new) => {
                    let (old, new) = (old.records(), new.records());
                    removed.extend(
                        old.iter()
                            .filter(|o| !new.iter().any(|n| same(o, n)))
                            .cloned(),
                    );
                    added.extend(
                        new.iter()
                            .filter(|n| !old.iter().any(|o| same(o, n)))
                            .cloned(),
                    );
                }
                None => removed.extend(old.records()),
            }
        }
        for (name, new) in self.aliases.iter() {
            if !older.aliases.contains_key(name) {
                added.extend(new.records());
            }
        }
        Some((removed, added))
    }

    /// Looks `name` up for `rtype`, as `client` is answered (see [`ZoneView::find`]).
    pub fn lookup(&self, name: &LowerName, rtype: RecordType, client: Option<IpAddr>) -> Lookup {
        if name == &self.origin && rtype == RecordType::SOA {
            return Lookup::Found {
                answers: vec![self.soa.clone()],
                additionals: Vec::new(),
            };
        }
        let mut answers: Vec<Arc<RecordSet>> = Vec::new();
        let mut additionals = Vec::new();
        let mut current = wire_lower(name);
        for _ in 0..MAX_CNAME_HOPS {
            let node = self.find(&current, client);
            if matches!(node, Found::Empty | Found::NxDomain) {
                if !answers.is_empty() {
                    break;
                }
                return if matches!(node, Found::Empty) {
                    Lookup::NoData
                } else {
                    Lookup::NxDomain
                };
            }
            if rtype == RecordType::ANY {
                answers.extend(node.sets());
                if current == self.origin_wire {
                    answers.push(self.soa.clone());
                }
                break;
            }
            if let Some(set) = node.get(rtype) {
                answers.push(set);
                if rtype == RecordType::SRV {
                    additionals.extend(node.srv_additionals());
                }
                break;
            }
            let Some(cname) = node.get(RecordType::CNAME) else {
                break;
            };
            answers.push(cname.clone());
            let target = cname.records_without_rrsigs().find_map(|r| match &r.data {
                RData::CNAME(c) => Some(wire_name(&c.0)),
                _ => None,
            });
            match target {
                // A chain that comes back to a name already answered is a loop (a CNAME into an
                // alias can close one): stop rather than repeat record sets.
                Some(t)
                    if wire::in_zone(&t, &self.origin_wire)
                        && !answers.iter().any(|a| wire_name(a.name()) == t) =>
                {
                    current = t
                }
                _ => break,
            }
        }
        if answers.is_empty() {
            Lookup::NoData
        } else {
            Lookup::Found {
                answers,
                additionals,
            }
        }
    }
}

/// Which aliases a new generation must render again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dirty {
    /// Every alias (the first snapshot, a reload).
    All,
    Aliases(BTreeSet<AliasName>),
}

impl Dirty {
    pub fn contains(&self, name: &AliasName) -> bool {
        match self {
            Self::All => true,
            Self::Aliases(set) => set.contains(name),
        }
    }
}

impl Snapshot {
    /// Renders a snapshot of `state` over `topology`, answering only endpoints that are not
    /// known to be unhealthy; when none is left, the alias's `if_none_healthy` policy decides.
    pub fn render(
        generation: u64,
        topology: Arc<Topology>,
        state: &State,
        health: &HealthMap,
        last_good: &LastGood,
        sources: Arc<Sources>,
    ) -> Self {
        let zones = topology
            .zones
            .iter()
            .zip(&state.serials)
            .enumerate()
            .map(|(i, (z, serial))| {
                let ents = topology.alias_ents.get(i).cloned().unwrap_or_default();
                ZoneView::new(
                    z,
                    *serial,
                    topology.negative_ttl,
                    ents,
                    imbl::HashMap::new(),
                )
            })
            .collect();
        let empty = Self {
            generation,
            zones,
            aliases: imbl::OrdMap::new(),
            topology: topology.clone(),
            sources: sources.clone(),
            rollouts: imbl::OrdMap::new(),
        };
        empty.update(
            generation,
            topology,
            state,
            health,
            last_good,
            sources,
            &Dirty::All,
        )
    }

    /// The next generation: `dirty` aliases rendered again from `state`, the others shared with
    /// this snapshot. With new zones (a reload), everything is rendered again.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &self,
        generation: u64,
        topology: Arc<Topology>,
        state: &State,
        health: &HealthMap,
        last_good: &LastGood,
        sources: Arc<Sources>,
        dirty: &Dirty,
    ) -> Self {
        let same_zones = Arc::ptr_eq(&topology.zones, &self.topology.zones);
        let dirty = if same_zones { dirty } else { &Dirty::All };
        let mut zones: Vec<ZoneView> = topology
            .zones
            .iter()
            .enumerate()
            .map(|(i, z)| {
                let serial = state.serials.get(i).copied().unwrap_or(z.file_serial);
                let kept = match (dirty, self.zones.get(i)) {
                    (Dirty::Aliases(_), Some(old)) => old.aliases.clone(),
                    _ => imbl::HashMap::new(),
                };
                let ents = topology.alias_ents.get(i).cloned().unwrap_or_default();
                ZoneView::new(z, serial, topology.negative_ttl, ents, kept)
            })
            .collect();
        let mut aliases = match dirty {
            Dirty::All => imbl::OrdMap::new(),
            Dirty::Aliases(_) => self.aliases.clone(),
        };
        let names: Vec<AliasName> = match dirty {
            Dirty::All => topology.aliases.keys().cloned().collect(),
            Dirty::Aliases(set) => set.iter().cloned().collect(),
        };
        for name in names {
            // Out of the topology or the state: gone from both maps.
            let (Some(def), Some(alias_state)) =
                (topology.aliases.get(&name), state.aliases.get(&name))
            else {
                if let Some(old) = aliases.remove(&name)
                    && let Some(zone) = zones
                        .iter_mut()
                        .find(|z| z.origin.zone_of(&old.name.lower()))
                {
                    zone.aliases.remove(&*wire_name(old.name.name()));
                }
                continue;
            };
            let (view, records) = render_alias(
                &topology,
                &name,
                def,
                alias_state,
                health,
                last_good,
                &sources,
            );
            if let Some(zone) = zones.get_mut(def.zone) {
                zone.aliases
                    .insert(wire_name(name.name()), Arc::new(records));
            }
            aliases.insert(name, Arc::new(view));
        }
        Self {
            generation,
            zones,
            aliases,
            topology,
            sources,
            rollouts: state.rollouts.clone(),
        }
    }

    /// Gives the zones the serials `serials` (a change of answers bumped them after rendering).
    pub fn set_serials(&mut self, serials: &[u32], topology: &Topology) {
        for ((zone, statics), serial) in self
            .zones
            .iter_mut()
            .zip(topology.zones.iter())
            .zip(serials)
        {
            if zone.serial != *serial {
                let soa = soa_rrset(statics, *serial, topology.negative_ttl);
                zone.serial = *serial;
                zone.soa_wire = wire::authority(&soa).unwrap_or_default().into();
                zone.soa = Arc::new(soa);
            }
        }
    }

    /// The zone that is authoritative for `name`, if any.
    pub fn zone_for(&self, name: &LowerName) -> Option<&ZoneView> {
        self.zones.iter().find(|z| z.origin.zone_of(name))
    }

    /// The zone that holds `name` (lowercase wire form), if any.
    pub fn zone_for_wire(&self, name: &[u8]) -> Option<&ZoneView> {
        self.zones
            .iter()
            .find(|z| wire::in_zone(name, &z.origin_wire))
    }
}

impl ZoneView {
    fn new(
        z: &ZoneStatics,
        serial: u32,
        negative_ttl: u32,
        alias_ents: Arc<std::collections::HashSet<WireName>>,
        aliases: imbl::HashMap<WireName, Arc<AliasRecords>>,
    ) -> Self {
        let soa = soa_rrset(z, serial, negative_ttl);
        Self {
            origin: z.origin.lower().clone(),
            origin_wire: z.origin.wire().clone(),
            serial,
            soa_wire: wire::authority(&soa).unwrap_or_default().into(),
            soa: Arc::new(soa),
            statics: z.index.clone(),
            alias_ents,
            aliases,
        }
    }
}

/// The view and the records of one alias.
fn render_alias(
    topology: &Topology,
    name: &AliasName,
    def: &crate::registry::AliasDef,
    alias_state: &AliasState,
    health: &HealthMap,
    last_good: &LastGood,
    sources: &Sources,
) -> (AliasView, AliasRecords) {
    let services = answering(alias_state);
    let (infos, warnings) = endpoint_infos(topology, &services, sources);
    let all = unique(
        infos
            .iter()
            .filter(|(_, e)| !e.is_dead())
            .map(|(_, e)| e.endpoint),
    );
    let passing_of = |side: &[ServiceName]| {
        unique(
            infos
                .iter()
                .filter(|(s, e)| side.contains(s) && health_of(health, s, e).passes())
                .map(|(_, e)| e.endpoint),
        )
    };
    let passing = passing_of(&services);
    let (endpoints, fallback) = if !passing.is_empty() || all.is_empty() {
        (passing.clone(), None)
    } else {
        let policy = def.if_none_healthy;
        (
            none_healthy(policy, last_good.get(name), &all),
            Some(policy),
        )
    };
    let split = split(alias_state).map(|split| {
        let (old, new) = sides(passing_of(split.old), passing_of(split.new), &endpoints);
        ViewSplit {
            weight: split.weight,
            salt: split.salt.to_owned(),
            old,
            new,
        }
    });
    let srv_name = srv_owner(name.name(), &def.port_name);
    let records_of = |answered: &[Endpoint]| {
        AliasRecords::new(
            name.name(),
            &srv_name,
            answered,
            &named_ports(name, def, &infos, answered),
            topology.alias_ttl,
        )
    };
    let records = match &split {
        None => records_of(&endpoints),
        Some(s) => records_of(&s.old).with_split(&s.salt, s.weight, records_of(&s.new)),
    };
    let old = draining(alias_state);
    let draining = if old.is_empty() {
        Vec::new()
    } else {
        let answering = endpoints_of(topology, &services);
        endpoints_of(topology, &old)
            .into_iter()
            .filter(|e| !answering.contains(e))
            .collect()
    };
    let view = AliasView {
        name: name.clone(),
        zone: topology.zones[def.zone].origin.name().clone(),
        state: alias_state.clone(),
        answering: services,
        endpoints,
        passing,
        draining,
        fallback,
        srv_name,
        warnings,
        split,
    };
    (view, records)
}

/// The endpoints of `services` with the service each comes from, and what an operator should
/// know about them (a service with no endpoints or not defined, Docker away).
fn endpoint_infos<'t>(
    topology: &'t Topology,
    services: &'t [ServiceName],
    sources: &Sources,
) -> (Vec<(&'t ServiceName, &'t EndpointInfo)>, Vec<String>) {
    let docker_away = sources.docker.as_ref().is_some_and(|d| !d.status.connected);
    let mut warnings = Vec::new();
    let infos: Vec<(&ServiceName, &EndpointInfo)> = services
        .iter()
        .flat_map(|s| match topology.services.get(s) {
            Some(svc) => {
                if svc.endpoints.is_empty() {
                    warnings.push(format!(
                        "service `{s}` has no endpoints{}",
                        if topology.docker {
                            " (no container of it runs)"
                        } else {
                            ""
                        }
                    ));
                }
                svc.endpoints
                    .iter()
                    .map(move |e| (s, e))
                    .collect::<Vec<_>>()
            }
            None => {
                warnings.push(format!("service `{s}` is not defined"));
                Vec::new()
            }
        })
        .collect();
    if docker_away && infos.iter().any(|(_, e)| e.container.is_some()) {
        warnings.push("Docker is unreachable: the answers keep the containers last seen".into());
    }
    (infos, warnings)
}

/// What `policy` answers when no endpoint of the alias passes; `all` are its live endpoints.
fn none_healthy(
    policy: IfNoneHealthy,
    good: Option<&Vec<Endpoint>>,
    all: &[Endpoint],
) -> Vec<Endpoint> {
    match policy {
        IfNoneHealthy::All => all.to_vec(),
        IfNoneHealthy::None => Vec::new(),
        // Only endpoints of the services answering now: a last good set from before a
        // switch must not bring back a version that left the answers.
        IfNoneHealthy::LastKnownGood => {
            let kept: Vec<Endpoint> = good
                .map(|good| good.iter().filter(|e| all.contains(e)).copied().collect())
                .unwrap_or_default();
            if kept.is_empty() { all.to_vec() } else { kept }
        }
    }
}

/// The answers of the two sides of a split from their passing endpoints: a side with none
/// answers the other's, and with none on either side both answer what the alias's policy
/// chose over the union (`union`).
fn sides(
    old: Vec<Endpoint>,
    new: Vec<Endpoint>,
    union: &[Endpoint],
) -> (Vec<Endpoint>, Vec<Endpoint>) {
    match (old.is_empty(), new.is_empty()) {
        (false, false) => (old, new),
        (true, false) => (new.clone(), new),
        (false, true) => (old.clone(), old),
        (true, true) => (union.to_vec(), union.to_vec()),
    }
}

/// The SRV owners named by the endpoints' own port names (a container's label) besides the
/// alias's, each with the answered endpoints that name it.
fn named_ports(
    name: &AliasName,
    def: &crate::registry::AliasDef,
    infos: &[(&ServiceName, &EndpointInfo)],
    answered: &[Endpoint],
) -> Vec<(Name, Vec<Endpoint>)> {
    let mut named: BTreeMap<&str, Vec<Endpoint>> = BTreeMap::new();
    for (_, info) in infos {
        if let Some(port) = info.port_name.as_deref()
            && port != def.port_name
            && answered.contains(&info.endpoint)
        {
            let list = named.entry(port).or_default();
            if !list.contains(&info.endpoint) {
                list.push(info.endpoint);
            }
        }
    }
    named
        .into_iter()
        .map(|(port, eps)| (srv_owner(name.name(), port), eps))
        .collect()
}

/// `items` in order, without repeats.
fn unique(items: impl Iterator<Item = Endpoint>) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = Vec::new();
    for e in items {
        if !out.contains(&e) {
            out.push(e);
        }
    }
    out
}

/// The union of the endpoints of `targets`, in target order, without repeats.
pub fn endpoints_of(topology: &Topology, targets: &[ServiceName]) -> Vec<Endpoint> {
    unique(
        targets
            .iter()
            .filter_map(|t| topology.services.get(t))
            .flat_map(|s| s.addrs()),
    )
}

/// `_<port_name>._tcp.<alias>`.
fn srv_owner(alias: &Name, port_name: &str) -> Name {
    // Both labels were validated as short letter-digit-hyphen strings, so this cannot fail.
    alias
        .prepend_label("_tcp")
        .and_then(|n| n.prepend_label(format!("_{port_name}")))
        .unwrap_or_else(|_| alias.clone())
}

/// The name under the alias that an SRV record points at for one endpoint address:
/// `10-0-0-5.web.internal.` for 10.0.0.5, `fd00--5.web.internal.` for fd00::5.
pub fn endpoint_host(alias: &Name, ip: IpAddr) -> Name {
    let label = ip.to_string().replace(['.', ':'], "-");
    alias.prepend_label(label).unwrap_or_else(|_| alias.clone())
}

fn soa_rrset(zone: &ZoneStatics, serial: u32, negative_ttl: u32) -> RecordSet {
    let mut soa = zone.soa.clone();
    soa.serial = serial;
    // Resolvers cache a negative answer for min(SOA TTL, SOA MINIMUM) (RFC 2308 section 5), so
    // both are held to the configured negative TTL.
    soa.minimum = negative_ttl;
    let ttl = zone.soa_ttl.min(negative_ttl);
    let origin = zone.origin.name();
    let mut set = RecordSet::with_ttl(origin.clone(), RecordType::SOA, ttl);
    set.insert(
        Record::from_rdata(origin.clone(), ttl, RData::SOA(soa)),
        serial,
    );
    set
}

#[cfg(test)]
mod tests;
