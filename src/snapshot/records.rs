//! The records of one alias: the alias name, its SRV owners, the `_tcp` empty non-terminal and
//! one host name per address, kept as the endpoints they come from plus each answer already in
//! wire form. The fast path copies those answers; the full path (hickory) gets record sets
//! built from the endpoints when it asks, which is rare, so a snapshot of 10,000 aliases does
//! not hold 10,000 aliases' worth of hickory records.
//!
//! An alias in a weighted step (issue 22) has two sets of records, one per side of the split:
//! the old side's are the alias's own (what zone transfers ship), the new side's hang off them
//! in `SplitRecords`, and [`AliasRecords::for_client`] picks a client's by
//! [`crate::steps::bucket`]. An alias without a split pays one `None` check per lookup.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordSet, RecordType};

use super::endpoint_host;
use crate::model::Endpoint;
use crate::wire::{WireAnswer, WireName, wire_name};

const QUESTION_POINTER: [u8; 2] = [0xC0, 0x0C];
const CLASS_IN: [u8; 2] = [0, 1];

/// What a name of an alias is.
#[derive(Debug)]
enum Kind {
    /// The alias itself: A, AAAA and SRV over every endpoint.
    Alias,
    /// `_tcp.<alias>`: exists, owns nothing.
    Tcp,
    /// An SRV owner: the endpoints at these indexes.
    Srv { owner: Name, endpoints: Vec<usize> },
    /// `10-0-0-5.<alias>`: the address.
    Host { name: Name, ip: IpAddr },
}

#[derive(Debug)]
struct AliasNode {
    kind: Kind,
    wire: Vec<WireAnswer>,
}

/// The records of one alias in one generation.
#[derive(Debug)]
pub struct AliasRecords {
    alias: Name,
    ttl: u32,
    endpoints: Vec<Endpoint>,
    /// The host name of each endpoint (by index) and its wire form.
    hosts: Vec<(Name, Vec<u8>)>,
    nodes: Vec<(WireName, AliasNode)>,
    /// In a weighted step, the new side; these records are then the old side's.
    split: Option<Box<SplitRecords>>,
}

/// The new side of an alias in a weighted step, and which clients get it.
#[derive(Debug)]
struct SplitRecords {
    /// The operation's salt, as the bucket hash takes it.
    salt: Box<[u8]>,
    /// Clients whose bucket is below this get the new side: the weight in percent times 100.
    threshold: u16,
    new: AliasRecords,
}

/// One name of an alias, as a lookup finds it.
#[derive(Debug, Clone, Copy)]
pub struct AliasEntry<'a> {
    records: &'a AliasRecords,
    node: &'a AliasNode,
}

impl AliasRecords {
    /// The records of `alias` answering `endpoints`: SRV at `srv_owner` (and at the alias) for
    /// all of them, and at each of `named_ports` for some.
    pub fn new(
        alias: &Name,
        srv_owner: &Name,
        endpoints: &[Endpoint],
        named_ports: &[(Name, Vec<Endpoint>)],
        ttl: u32,
    ) -> Self {
        let hosts: Vec<(Name, Vec<u8>)> = endpoints
            .iter()
            .map(|e| {
                let host = endpoint_host(alias, e.addr().ip());
                let wire = wire_name(&host).to_vec();
                (host, wire)
            })
            .collect();
        let mut records = Self {
            alias: alias.clone(),
            ttl,
            endpoints: endpoints.to_vec(),
            hosts,
            nodes: Vec::new(),
            split: None,
        };
        let all: Vec<usize> = (0..endpoints.len()).collect();
        records.push(alias, Kind::Alias);
        if let Ok(tcp) = alias.prepend_label("_tcp") {
            records.push(&tcp, Kind::Tcp);
        }
        if !endpoints.is_empty() {
            records.push(
                srv_owner,
                Kind::Srv {
                    owner: srv_owner.clone(),
                    endpoints: all,
                },
            );
        }
        for (owner, eps) in named_ports {
            let indexes = eps
                .iter()
                .filter_map(|e| endpoints.iter().position(|x| x == e))
                .collect();
            records.push(
                owner,
                Kind::Srv {
                    owner: owner.clone(),
                    endpoints: indexes,
                },
            );
        }
        let mut seen: Vec<IpAddr> = Vec::new();
        for (i, e) in endpoints.iter().enumerate() {
            let ip = e.addr().ip();
            if seen.contains(&ip) {
                continue;
            }
            seen.push(ip);
            let name = records.hosts[i].0.clone();
            records.push(&name.clone(), Kind::Host { name, ip });
        }
        records
    }

    /// These records (the old side) for the clients not on `new`: `weight` percent of the
    /// clients, by [`crate::steps::bucket`] with `salt`, get `new` instead.
    pub fn with_split(mut self, salt: &str, weight: u8, new: AliasRecords) -> Self {
        self.split = Some(Box::new(SplitRecords {
            salt: salt.as_bytes().into(),
            threshold: u16::from(weight.min(100)) * 100,
            new,
        }));
        self
    }

    /// The records `client` is answered with: the new side's when the alias is in a weighted
    /// step and the client's bucket is below the weight, else these. The same rule as
    /// [`crate::steps::on_new`], so DNS and the proxy put a client on the same side.
    #[inline]
    pub fn for_client(&self, client: IpAddr) -> &AliasRecords {
        match &self.split {
            None => self,
            Some(split) if crate::steps::bucket(&split.salt, client) < split.threshold => {
                &split.new
            }
            Some(_) => self,
        }
    }

    /// Every record of the alias, as a zone transfer ships them: in a weighted step, the old
    /// side's (the clients that move last), so a secondary or a shared resolver never moves
    /// anyone early.
    pub fn records(&self) -> Vec<Record> {
        self.nodes
            .iter()
            .flat_map(|(_, node)| {
                AliasEntry {
                    records: self,
                    node,
                }
                .sets()
            })
            .flat_map(|set| set.records_without_rrsigs().cloned().collect::<Vec<_>>())
            .collect()
    }

    fn push(&mut self, name: &Name, kind: Kind) {
        let mut node = AliasNode {
            kind,
            wire: Vec::new(),
        };
        node.wire = self.render(&node.kind);
        self.nodes.push((wire_name(name), node));
    }

    /// The name `name` (lowercase wire form) of this alias, if it has it.
    pub fn find(&self, name: &[u8]) -> Option<AliasEntry<'_>> {
        self.nodes
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, node)| AliasEntry {
                records: self,
                node,
            })
    }

    /// Indexes of the endpoints whose address is `family`'s, without repeated addresses.
    fn addresses(&self, v4: bool) -> Vec<usize> {
        let mut seen: Vec<IpAddr> = Vec::new();
        let mut out = Vec::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let ip = e.addr().ip();
            if ip.is_ipv4() == v4 && !seen.contains(&ip) {
                seen.push(ip);
                out.push(i);
            }
        }
        out
    }

    /// Hosts of `endpoints` (by index), each address once.
    fn host_indexes(&self, endpoints: &[usize]) -> Vec<usize> {
        let mut seen: Vec<IpAddr> = Vec::new();
        endpoints
            .iter()
            .copied()
            .filter(|i| {
                let ip = self.endpoints[*i].addr().ip();
                let new = !seen.contains(&ip);
                seen.push(ip);
                new
            })
            .collect()
    }

    // ---- wire form ----

    fn rr_header(out: &mut Vec<u8>, owner: &[u8], rtype: RecordType, ttl: u32, rdlen: usize) {
        out.extend_from_slice(owner);
        out.extend_from_slice(&u16::from(rtype).to_be_bytes());
        out.extend_from_slice(&CLASS_IN);
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(rdlen as u16).to_be_bytes());
    }

    fn address_rr(out: &mut Vec<u8>, owner: &[u8], ip: IpAddr, ttl: u32) {
        match ip {
            IpAddr::V4(v4) => {
                Self::rr_header(out, owner, RecordType::A, ttl, 4);
                out.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                Self::rr_header(out, owner, RecordType::AAAA, ttl, 16);
                out.extend_from_slice(&v6.octets());
            }
        }
    }

    /// The SRV answer over `endpoints` with their hosts' addresses as additionals.
    fn srv_answer(&self, endpoints: &[usize]) -> WireAnswer {
        let mut body = Vec::with_capacity(endpoints.len() * 80);
        for i in endpoints {
            let target = &self.hosts[*i].1;
            Self::rr_header(
                &mut body,
                &QUESTION_POINTER,
                RecordType::SRV,
                self.ttl,
                6 + target.len(),
            );
            body.extend_from_slice(&0u16.to_be_bytes());
            body.extend_from_slice(&1u16.to_be_bytes());
            body.extend_from_slice(&self.endpoints[*i].addr().port().to_be_bytes());
            body.extend_from_slice(target);
        }
        let hosts = self.host_indexes(endpoints);
        for i in &hosts {
            let ip = self.endpoints[*i].addr().ip();
            Self::address_rr(&mut body, &self.hosts[*i].1, ip, self.ttl);
        }
        WireAnswer {
            rtype: RecordType::SRV,
            body: body.into(),
            answers: endpoints.len() as u16,
            additionals: hosts.len() as u16,
        }
    }

    fn address_answer(&self, indexes: &[usize], rtype: RecordType) -> WireAnswer {
        let mut body = Vec::with_capacity(indexes.len() * 28);
        for i in indexes {
            Self::address_rr(
                &mut body,
                &QUESTION_POINTER,
                self.endpoints[*i].addr().ip(),
                self.ttl,
            );
        }
        WireAnswer {
            rtype,
            body: body.into(),
            answers: indexes.len() as u16,
            additionals: 0,
        }
    }

    fn render(&self, kind: &Kind) -> Vec<WireAnswer> {
        match kind {
            Kind::Alias => {
                let mut out = Vec::new();
                for (v4, rtype) in [(true, RecordType::A), (false, RecordType::AAAA)] {
                    let idx = self.addresses(v4);
                    if !idx.is_empty() {
                        out.push(self.address_answer(&idx, rtype));
                    }
                }
                if !self.endpoints.is_empty() {
                    let all: Vec<usize> = (0..self.endpoints.len()).collect();
                    out.push(self.srv_answer(&all));
                }
                out
            }
            Kind::Tcp => Vec::new(),
            Kind::Srv { endpoints, .. } => vec![self.srv_answer(endpoints)],
            Kind::Host { ip, .. } => {
                let i = self
                    .endpoints
                    .iter()
                    .position(|e| e.addr().ip() == *ip)
                    .unwrap_or(0);
                let rtype = if ip.is_ipv4() {
                    RecordType::A
                } else {
                    RecordType::AAAA
                };
                vec![self.address_answer(&[i], rtype)]
            }
        }
    }

    // ---- record sets, for the full path ----

    fn set(
        owner: &Name,
        rtype: RecordType,
        ttl: u32,
        data: impl IntoIterator<Item = RData>,
    ) -> RecordSet {
        let mut set = RecordSet::with_ttl(owner.clone(), rtype, ttl);
        for d in data {
            set.insert(Record::from_rdata(owner.clone(), ttl, d), 0);
        }
        set
    }

    fn address_data(&self, i: usize) -> RData {
        match self.endpoints[i].addr().ip() {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        }
    }

    fn srv_set(&self, owner: &Name, endpoints: &[usize]) -> RecordSet {
        let data = endpoints.iter().map(|i| {
            RData::SRV(SRV::new(
                0,
                1,
                self.endpoints[*i].addr().port(),
                self.hosts[*i].0.clone(),
            ))
        });
        Self::set(owner, RecordType::SRV, self.ttl, data)
    }

    fn host_sets(&self, endpoints: &[usize]) -> Vec<Arc<RecordSet>> {
        self.host_indexes(endpoints)
            .into_iter()
            .map(|i| {
                let data = self.address_data(i);
                let rtype = data.record_type();
                Arc::new(Self::set(&self.hosts[i].0, rtype, self.ttl, [data]))
            })
            .collect()
    }
}

impl<'a> AliasEntry<'a> {
    /// The pre-rendered answer for `rtype`, if the name has records of that type.
    pub fn wire(&self, rtype: RecordType) -> Option<&'a WireAnswer> {
        self.node.wire.iter().find(|w| w.rtype == rtype)
    }

    /// Whether the name owns no records (NODATA for every type).
    pub fn is_empty(&self) -> bool {
        self.node.wire.is_empty()
    }

    /// Every record set of the name, built for the full path.
    pub fn sets(&self) -> Vec<Arc<RecordSet>> {
        let r = self.records;
        match &self.node.kind {
            Kind::Alias => {
                let mut out = Vec::new();
                for (v4, rtype) in [(true, RecordType::A), (false, RecordType::AAAA)] {
                    let idx = r.addresses(v4);
                    if !idx.is_empty() {
                        let data = idx.iter().map(|i| r.address_data(*i));
                        out.push(Arc::new(AliasRecords::set(&r.alias, rtype, r.ttl, data)));
                    }
                }
                if !r.endpoints.is_empty() {
                    let all: Vec<usize> = (0..r.endpoints.len()).collect();
                    out.push(Arc::new(r.srv_set(&r.alias, &all)));
                }
                out
            }
            Kind::Tcp => Vec::new(),
            Kind::Srv { owner, endpoints } => vec![Arc::new(r.srv_set(owner, endpoints))],
            Kind::Host { name, ip } => {
                let i = r
                    .endpoints
                    .iter()
                    .position(|e| e.addr().ip() == *ip)
                    .unwrap_or(0);
                let data = r.address_data(i);
                let rtype = data.record_type();
                vec![Arc::new(AliasRecords::set(name, rtype, r.ttl, [data]))]
            }
        }
    }

    /// The addresses of the SRV targets, for the additional section of SRV answers.
    pub fn srv_additionals(&self) -> Vec<Arc<RecordSet>> {
        let r = self.records;
        match &self.node.kind {
            Kind::Alias => r.host_sets(&(0..r.endpoints.len()).collect::<Vec<_>>()),
            Kind::Srv { endpoints, .. } => r.host_sets(endpoints),
            Kind::Tcp | Kind::Host { .. } => Vec::new(),
        }
    }
}
