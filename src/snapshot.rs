//! The immutable published view: everything DNS and the API read, rendered from the controller's
//! state in one go and swapped in atomically.
//!
//! A snapshot is never changed after it is built. Readers load the current `Arc<Snapshot>` without
//! a lock (arc-swap), so a query never waits on the writer and sees either the old or the new
//! generation, never a mix. Every lookup is a hash-map probe: NXDOMAIN costs the same as a hit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType};

use crate::config::{AliasConfig, Config, IfNoneHealthy, ServiceConfig};
use crate::controller::machine::answering;
use crate::controller::state::{AliasState, State};
use crate::health::Health;
use crate::model::{AliasName, Endpoint, ServiceName};

/// The health of every endpoint, as the controller knows it.
pub type HealthMap = HashMap<(ServiceName, Endpoint), Health>;
/// Per alias, the last non-empty set of endpoints that passed the health filter.
pub type LastGood = HashMap<AliasName, Vec<Endpoint>>;
use crate::zonefile::StaticZone;

/// The shared cell the writer publishes into and readers load from.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

/// What does not change while the daemon runs: zones, services and alias definitions.
#[derive(Debug)]
pub struct Topology {
    pub zones: Vec<ZoneStatics>,
    pub services: BTreeMap<ServiceName, ServiceConfig>,
    pub aliases: BTreeMap<AliasName, AliasConfig>,
    pub alias_ttl: u32,
    pub negative_ttl: u32,
}

impl Topology {
    /// The TTL window of answers: what a client may cache, at most.
    pub fn ttl_window_s(&self) -> u32 {
        self.alias_ttl.max(self.negative_ttl)
    }

    pub fn from_config(config: &Config) -> Self {
        Self {
            zones: config
                .zones
                .iter()
                .map(|z| ZoneStatics::new(z, config.dns.negative_ttl))
                .collect(),
            services: config.services.clone(),
            aliases: config.aliases.clone(),
            alias_ttl: config.dns.alias_ttl,
            negative_ttl: config.dns.negative_ttl,
        }
    }

    /// Finds an alias from text a user typed (`web`, `web.internal`, `web.internal.`).
    pub fn find_alias(&self, text: &str) -> Option<&AliasName> {
        let origin = &self.zones.first()?.origin;
        let wanted = AliasName::resolve(text, origin.name()).ok()?;
        self.aliases.get_key_value(&wanted).map(|(k, _)| k)
    }
}

/// The static part of a zone, indexed once at start.
#[derive(Debug)]
pub struct ZoneStatics {
    pub origin: Origin,
    /// The SOA from the file; the serial and minimum are replaced in each snapshot.
    soa: SOA,
    soa_ttl: u32,
    index: Arc<NameIndex>,
}

/// A zone origin in both forms hickory uses.
#[derive(Debug, Clone)]
pub struct Origin {
    name: Name,
    lower: LowerName,
}

impl Origin {
    pub fn name(&self) -> &Name {
        &self.name
    }
    pub fn lower(&self) -> &LowerName {
        &self.lower
    }
}

impl ZoneStatics {
    fn new(zone: &StaticZone, negative_ttl: u32) -> Self {
        let mut index = NameIndex::default();
        let apex = LowerName::new(&zone.origin);
        let mut soa = None;
        for (key, rrset) in &zone.rrsets {
            if key.record_type == RecordType::SOA {
                if let Some(RData::SOA(data)) =
                    rrset.records_without_rrsigs().next().map(|r| &r.data)
                {
                    soa = Some((data.clone(), rrset.ttl()));
                }
                continue;
            }
            index.add(key.name.clone(), Arc::new(rrset.clone()), &apex);
        }
        // The zone file loader guarantees an SOA; an empty default only guards the type.
        let (soa, soa_ttl) = soa.unwrap_or_else(|| {
            (
                SOA::new(zone.origin.clone(), zone.origin.clone(), 0, 0, 0, 0, 0),
                negative_ttl,
            )
        });
        index.ensure(apex.clone(), &apex);
        Self {
            origin: Origin {
                name: zone.origin.clone(),
                lower: apex,
            },
            soa,
            soa_ttl,
            index: Arc::new(index),
        }
    }
}

/// Names to record sets, plus the empty non-terminals between them and the apex.
#[derive(Debug, Default)]
struct NameIndex {
    nodes: HashMap<LowerName, Node>,
    /// Names that own no records but have descendants that do (RFC 8020: NODATA, not NXDOMAIN).
    empty_non_terminals: HashSet<LowerName>,
}

#[derive(Debug, Default)]
struct Node {
    rrsets: Vec<Arc<RecordSet>>,
    /// The addresses of this node's SRV targets, sent in the additional section of SRV answers.
    srv_additionals: Vec<Arc<RecordSet>>,
}

impl Node {
    fn get(&self, rtype: RecordType) -> Option<&Arc<RecordSet>> {
        self.rrsets.iter().find(|s| s.record_type() == rtype)
    }
}

impl NameIndex {
    fn ensure(&mut self, name: LowerName, apex: &LowerName) -> &mut Node {
        let mut parent = name.base_name();
        while parent.num_labels() > apex.num_labels() && !self.nodes.contains_key(&parent) {
            self.empty_non_terminals.insert(parent.clone());
            parent = parent.base_name();
        }
        self.empty_non_terminals.remove(&name);
        self.nodes.entry(name).or_default()
    }

    fn add(&mut self, name: LowerName, rrset: Arc<RecordSet>, apex: &LowerName) {
        self.ensure(name, apex).rrsets.push(rrset);
    }

    fn exists(&self, name: &LowerName) -> bool {
        self.nodes.contains_key(name) || self.empty_non_terminals.contains(name)
    }
}

/// One published generation of everything.
#[derive(Debug)]
pub struct Snapshot {
    /// Grows by one on every publish; DNS and the API of one generation agree.
    pub generation: u64,
    pub zones: Vec<ZoneView>,
    pub aliases: BTreeMap<AliasName, AliasView>,
    pub topology: Arc<Topology>,
}

/// What an API reader sees of an alias.
#[derive(Debug, Clone)]
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
    /// Set when no endpoint passed and `if_none_healthy` chose the answer.
    pub fallback: Option<IfNoneHealthy>,
    pub srv_name: Name,
}

/// One zone as DNS serves it in this generation.
#[derive(Debug)]
pub struct ZoneView {
    pub origin: LowerName,
    pub serial: u32,
    soa: Arc<RecordSet>,
    statics: Arc<NameIndex>,
    aliases: NameIndex,
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

/// CNAME chains inside the zone are followed this far, to stop loops.
const MAX_CNAME_HOPS: usize = 8;

impl ZoneView {
    fn node(&self, name: &LowerName) -> Option<&Node> {
        self.aliases
            .nodes
            .get(name)
            .or_else(|| self.statics.nodes.get(name))
    }

    fn exists(&self, name: &LowerName) -> bool {
        self.aliases.exists(name) || self.statics.exists(name)
    }

    /// The SOA of this generation, with its serial, for negative answers and SOA queries.
    pub fn soa(&self) -> &Arc<RecordSet> {
        &self.soa
    }

    /// Looks `name` up for `rtype`.
    pub fn lookup(&self, name: &LowerName, rtype: RecordType) -> Lookup {
        if name == &self.origin && rtype == RecordType::SOA {
            return Lookup::Found {
                answers: vec![self.soa.clone()],
                additionals: Vec::new(),
            };
        }
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        let mut current = name.clone();
        for _ in 0..MAX_CNAME_HOPS {
            let Some(node) = self.node(&current) else {
                if !answers.is_empty() {
                    break;
                }
                return if self.exists(&current) {
                    Lookup::NoData
                } else {
                    Lookup::NxDomain
                };
            };
            if rtype == RecordType::ANY {
                answers.extend(node.rrsets.iter().cloned());
                if current == self.origin {
                    answers.push(self.soa.clone());
                }
                break;
            }
            if let Some(set) = node.get(rtype) {
                answers.push(set.clone());
                if rtype == RecordType::SRV {
                    additionals.extend(node.srv_additionals.iter().cloned());
                }
                break;
            }
            let Some(cname) = node.get(RecordType::CNAME) else {
                break;
            };
            answers.push(cname.clone());
            let target = cname.records_without_rrsigs().find_map(|r| match &r.data {
                RData::CNAME(c) => Some(LowerName::new(&c.0)),
                _ => None,
            });
            match target {
                // A chain that comes back to a name already answered is a loop (a CNAME into an
                // alias can close one): stop rather than repeat record sets.
                Some(t)
                    if self.origin.zone_of(&t)
                        && !answers.iter().any(|a| LowerName::new(a.name()) == t) =>
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

impl Snapshot {
    /// Renders a snapshot of `state` over `topology`, answering only endpoints that are not
    /// known to be unhealthy; when none is left, the alias's `if_none_healthy` policy decides.
    pub fn render(
        generation: u64,
        topology: Arc<Topology>,
        state: &State,
        health: &HealthMap,
        last_good: &LastGood,
    ) -> Self {
        let mut zones: Vec<ZoneView> = topology
            .zones
            .iter()
            .zip(&state.serials)
            .map(|(z, serial)| ZoneView {
                origin: z.origin.lower.clone(),
                serial: *serial,
                soa: Arc::new(soa_rrset(z, *serial, topology.negative_ttl)),
                statics: z.index.clone(),
                aliases: NameIndex::default(),
            })
            .collect();
        let mut aliases = BTreeMap::new();
        for (name, def) in &topology.aliases {
            let Some(alias_state) = state.aliases.get(name) else {
                continue;
            };
            let services = answering(alias_state);
            let all = endpoints_of(&topology.services, &services);
            let passing: Vec<Endpoint> = services
                .iter()
                .flat_map(|s| {
                    let eps = topology.services.get(s).map_or(&[][..], |c| &c.endpoints);
                    eps.iter()
                        .filter(move |e| {
                            health
                                .get(&(s.clone(), **e))
                                .copied()
                                .unwrap_or(Health::Unknown)
                                != Health::Unhealthy
                        })
                        .copied()
                })
                .fold(Vec::new(), |mut acc, e| {
                    if !acc.contains(&e) {
                        acc.push(e);
                    }
                    acc
                });
            let (endpoints, fallback) = if !passing.is_empty() || all.is_empty() {
                (passing.clone(), None)
            } else {
                let policy = def.if_none_healthy;
                let chosen = match policy {
                    IfNoneHealthy::All => all.clone(),
                    IfNoneHealthy::None => Vec::new(),
                    // Only endpoints of the services answering now: a last good set from
                    // before a switch must not bring back a version that left the answers.
                    IfNoneHealthy::LastKnownGood => {
                        let kept: Vec<Endpoint> = last_good
                            .get(name)
                            .map(|good| good.iter().filter(|e| all.contains(e)).copied().collect())
                            .unwrap_or_default();
                        if kept.is_empty() { all.clone() } else { kept }
                    }
                };
                (chosen, Some(policy))
            };
            let srv_name = srv_owner(name.name(), &def.port_name);
            if let Some(zone) = zones.get_mut(def.zone) {
                add_alias_records(
                    &mut zone.aliases,
                    &zone.origin.clone(),
                    name.name(),
                    &srv_name,
                    &endpoints,
                    topology.alias_ttl,
                );
            }
            aliases.insert(
                name.clone(),
                AliasView {
                    name: name.clone(),
                    zone: topology.zones[def.zone].origin.name.clone(),
                    state: alias_state.clone(),
                    answering: services,
                    endpoints,
                    passing,
                    fallback,
                    srv_name,
                },
            );
        }
        Self {
            generation,
            zones,
            aliases,
            topology,
        }
    }

    /// The zone that is authoritative for `name`, if any.
    pub fn zone_for(&self, name: &LowerName) -> Option<&ZoneView> {
        self.zones.iter().find(|z| z.origin.zone_of(name))
    }
}

/// The union of the endpoints of `targets`, in target order, without repeats.
pub fn endpoints_of(
    services: &BTreeMap<ServiceName, ServiceConfig>,
    targets: &[ServiceName],
) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = Vec::new();
    for t in targets {
        for e in services
            .get(t)
            .map(|s| s.endpoints.as_slice())
            .unwrap_or(&[])
        {
            if !out.contains(e) {
                out.push(*e);
            }
        }
    }
    out
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
    let mut set = RecordSet::with_ttl(zone.origin.name.clone(), RecordType::SOA, ttl);
    set.insert(
        Record::from_rdata(zone.origin.name.clone(), ttl, RData::SOA(soa)),
        serial,
    );
    set
}

fn add_alias_records(
    index: &mut NameIndex,
    apex: &LowerName,
    alias: &Name,
    srv_name: &Name,
    endpoints: &[Endpoint],
    ttl: u32,
) {
    let mut a = RecordSet::with_ttl(alias.clone(), RecordType::A, ttl);
    let mut aaaa = RecordSet::with_ttl(alias.clone(), RecordType::AAAA, ttl);
    let mut srv = RecordSet::with_ttl(srv_name.clone(), RecordType::SRV, ttl);
    // SRV at the alias itself too, for clients that do not build `_name._tcp` owners.
    let mut srv_at_alias = RecordSet::with_ttl(alias.clone(), RecordType::SRV, ttl);
    let mut hosts: Vec<Arc<RecordSet>> = Vec::new();
    for ep in endpoints {
        let ip = ep.addr().ip();
        let host = endpoint_host(alias, ip);
        let rdata = match ip {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        let target = match ip {
            IpAddr::V4(_) => &mut a,
            IpAddr::V6(_) => &mut aaaa,
        };
        target.insert(Record::from_rdata(alias.clone(), ttl, rdata.clone()), 0);
        if !hosts.iter().any(|h| h.name() == &host) {
            let mut set = RecordSet::with_ttl(host.clone(), rdata.record_type(), ttl);
            set.insert(Record::from_rdata(host.clone(), ttl, rdata), 0);
            hosts.push(Arc::new(set));
        }
        let srv_data = RData::SRV(SRV::new(0, 1, ep.addr().port(), host));
        srv.insert(
            Record::from_rdata(srv_name.clone(), ttl, srv_data.clone()),
            0,
        );
        srv_at_alias.insert(Record::from_rdata(alias.clone(), ttl, srv_data), 0);
    }

    // The alias name always exists, even with no endpoints: an empty alias is NODATA.
    let node = index.ensure(LowerName::new(alias), apex);
    for set in [a, aaaa, srv_at_alias] {
        if !set.is_empty() {
            node.rrsets.push(Arc::new(set));
        }
    }
    node.srv_additionals = hosts.clone();
    if !srv.is_empty() {
        let srv_node = index.ensure(LowerName::new(srv_name), apex);
        srv_node.rrsets.push(Arc::new(srv));
        srv_node.srv_additionals = hosts.clone();
    }
    for set in hosts {
        index.add(LowerName::new(set.name()), set, apex);
    }
}

#[cfg(test)]
mod tests;
