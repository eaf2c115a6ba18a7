//! Owner names to record sets, keyed by lowercase wire names, with the empty non-terminals
//! precomputed and every answer pre-rendered for the fast path. The static part of each zone is
//! indexed once when a config is loaded and shared (`Arc`) by every snapshot; each alias gets a
//! small index of its own (see `snapshot`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{LowerName, Name, RData, RecordSet, RecordType};

use crate::wire::{self, WireAnswer, WireName, wire_lower, wire_name};
use crate::zonefile::StaticZone;

/// The static part of a zone, indexed once per config load.
#[derive(Debug)]
pub struct ZoneStatics {
    pub origin: Origin,
    /// The SOA from the file; the serial and minimum are replaced in each snapshot.
    pub(crate) soa: SOA,
    pub(crate) soa_ttl: u32,
    pub(crate) index: Arc<NameIndex>,
    /// The serial written in the file.
    pub file_serial: u32,
}

impl ZoneStatics {
    /// A static owner name at or below `name` (an alias there would hide it), if any.
    pub fn static_name_under(&self, name: &LowerName) -> Option<Name> {
        let wire = wire_lower(name);
        (*wire != *self.origin.wire && self.index.exists(&wire)).then(|| Name::from(name))
    }
}

/// A zone origin in the forms hickory and the fast path use.
#[derive(Debug, Clone)]
pub struct Origin {
    name: Name,
    lower: LowerName,
    wire: WireName,
}

impl Origin {
    pub fn new(name: &Name) -> Self {
        Self {
            name: name.clone(),
            lower: LowerName::new(name),
            wire: wire_name(name),
        }
    }
    pub fn name(&self) -> &Name {
        &self.name
    }
    pub fn lower(&self) -> &LowerName {
        &self.lower
    }
    pub fn wire(&self) -> &WireName {
        &self.wire
    }
}

impl ZoneStatics {
    pub fn new(zone: &StaticZone, negative_ttl: u32) -> Self {
        let origin = Origin::new(&zone.origin);
        let mut index = NameIndex::default();
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
            index.add(
                wire_lower(&key.name),
                Arc::new(rrset.clone()),
                origin.wire(),
            );
        }
        // The zone file loader guarantees an SOA; an empty default only guards the type.
        let (soa, soa_ttl) = soa.unwrap_or_else(|| {
            (
                SOA::new(zone.origin.clone(), zone.origin.clone(), 0, 0, 0, 0, 0),
                negative_ttl,
            )
        });
        index.ensure(origin.wire().clone(), origin.wire());
        index.prerender();
        Self {
            file_serial: zone.serial,
            origin,
            soa,
            soa_ttl,
            index: Arc::new(index),
        }
    }
}

/// Names to record sets, plus the empty non-terminals between them and the apex.
#[derive(Debug, Default)]
pub(crate) struct NameIndex {
    pub(crate) nodes: HashMap<WireName, Node>,
    /// Names that own no records but have descendants that do (RFC 8020: NODATA, not NXDOMAIN).
    pub(crate) empty_non_terminals: HashSet<WireName>,
}

#[derive(Debug, Default)]
pub(crate) struct Node {
    pub(crate) rrsets: Vec<Arc<RecordSet>>,
    /// The addresses of this node's SRV targets, sent in the additional section of SRV answers.
    pub(crate) srv_additionals: Vec<Arc<RecordSet>>,
    /// Each record set as a fast-path answer. A node with a CNAME has none: the full path
    /// follows the chain.
    pub(crate) wire: Vec<WireAnswer>,
}

impl Node {
    pub(crate) fn get(&self, rtype: RecordType) -> Option<&Arc<RecordSet>> {
        self.rrsets.iter().find(|s| s.record_type() == rtype)
    }

    pub(crate) fn has_cname(&self) -> bool {
        self.get(RecordType::CNAME).is_some()
    }

    /// The pre-rendered answer for `rtype`.
    pub(crate) fn wire(&self, rtype: RecordType) -> Option<&WireAnswer> {
        self.wire.iter().find(|w| w.rtype == rtype)
    }

    /// Renders every record set for the fast path.
    pub(crate) fn prerender(&mut self) {
        if self.has_cname() {
            self.wire.clear();
            return;
        }
        self.wire = self
            .rrsets
            .iter()
            .filter_map(|set| {
                let additionals: &[Arc<RecordSet>] = if set.record_type() == RecordType::SRV {
                    &self.srv_additionals
                } else {
                    &[]
                };
                wire::prerender(set, additionals)
            })
            .collect();
    }
}

impl NameIndex {
    /// The node of `name`, made (with the empty non-terminals up to `apex`) if missing.
    pub(crate) fn ensure(&mut self, name: WireName, apex: &[u8]) -> &mut Node {
        let mut at = wire::parent(&name);
        while let Some(parent) = at {
            if parent.len() <= apex.len() || self.nodes.contains_key(parent) {
                break;
            }
            self.empty_non_terminals.insert(parent.into());
            at = wire::parent(parent);
        }
        self.empty_non_terminals.remove(&*name);
        self.nodes.entry(name).or_default()
    }

    pub(crate) fn add(&mut self, name: WireName, rrset: Arc<RecordSet>, apex: &[u8]) {
        self.ensure(name, apex).rrsets.push(rrset);
    }

    pub(crate) fn exists(&self, name: &[u8]) -> bool {
        self.nodes.contains_key(name) || self.empty_non_terminals.contains(name)
    }

    pub(crate) fn prerender(&mut self) {
        for node in self.nodes.values_mut() {
            node.prerender();
        }
    }
}
