//! The static part of each zone, indexed once when a config is loaded: hash maps from owner
//! name to record sets, with the empty non-terminals precomputed, shared (`Arc`) by every snapshot.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{LowerName, Name, RData, RecordSet, RecordType};

use crate::zonefile::StaticZone;

/// The static part of a zone, indexed once at start.
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
    pub fn static_name_under(&self, name: &LowerName) -> Option<&LowerName> {
        self.index
            .nodes
            .keys()
            .chain(&self.index.empty_non_terminals)
            .find(|n| name.zone_of(n) && **n != self.origin.lower)
    }
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
    pub fn new(zone: &StaticZone, negative_ttl: u32) -> Self {
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
            file_serial: zone.serial,
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
pub(crate) struct NameIndex {
    pub(crate) nodes: HashMap<LowerName, Node>,
    /// Names that own no records but have descendants that do (RFC 8020: NODATA, not NXDOMAIN).
    pub(crate) empty_non_terminals: HashSet<LowerName>,
}

#[derive(Debug, Default)]
pub(crate) struct Node {
    pub(crate) rrsets: Vec<Arc<RecordSet>>,
    /// The addresses of this node's SRV targets, sent in the additional section of SRV answers.
    pub(crate) srv_additionals: Vec<Arc<RecordSet>>,
}

impl Node {
    pub(crate) fn get(&self, rtype: RecordType) -> Option<&Arc<RecordSet>> {
        self.rrsets.iter().find(|s| s.record_type() == rtype)
    }
}

impl NameIndex {
    pub(crate) fn ensure(&mut self, name: LowerName, apex: &LowerName) -> &mut Node {
        let mut parent = name.base_name();
        while parent.num_labels() > apex.num_labels() && !self.nodes.contains_key(&parent) {
            self.empty_non_terminals.insert(parent.clone());
            parent = parent.base_name();
        }
        self.empty_non_terminals.remove(&name);
        self.nodes.entry(name).or_default()
    }

    pub(crate) fn add(&mut self, name: LowerName, rrset: Arc<RecordSet>, apex: &LowerName) {
        self.ensure(name, apex).rrsets.push(rrset);
    }

    pub(crate) fn exists(&self, name: &LowerName) -> bool {
        self.nodes.contains_key(name) || self.empty_non_terminals.contains(name)
    }
}
