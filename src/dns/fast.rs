//! The fast answer path: a plain query for a name in one of our zones is answered by copying
//! its pre-rendered answer (see `wire`), with the query's ID, flags and question patched in.
//! No allocation beyond the output buffer, one snapshot load, a few hash probes.
//!
//! It takes only what it answers exactly as the full path (hickory's `Catalog`) would, and
//! declines the rest, which then goes to `slow`: a response, a non-QUERY opcode, more than one
//! question, a compressed or oversized question name, a class other than IN, meta types (ANY,
//! AXFR, IXFR, OPT), SOA and NS (hickory adds records of its own to those), EDNS with options,
//! a version other than 0 or the DNSSEC OK bit, trailing bytes, names outside our zones, names
//! with a CNAME, and answers too big for the client's buffer (hickory truncates those and sets
//! TC). The property test in `tests.rs` checks, packet by packet, that both paths agree.
//!
//! An alias in a weighted step answers each client its side ([`crate::snapshot::AliasRecords::for_client`]),
//! by the query's source address; EDNS Client Subnet is not read (a query with an option goes
//! to the full path, which does not read it either), so behind a shared resolver the
//! resolver's address decides.

use std::net::IpAddr;

use hickory_proto::rr::RecordType;

use crate::snapshot::{Found, Snapshot};

/// The longest name in wire form.
const MAX_NAME: usize = 255;
const HEADER: usize = 12;
/// An OPT record without options.
const OPT_LEN: usize = 11;
const CLASS_IN: u16 = 1;
const TYPE_OPT: u16 = 41;

/// What the fast path made of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fast {
    /// `out` holds the whole response.
    Answered,
    /// The full path must answer.
    Declined,
}

/// The parts of a query the fast path reads.
struct Query<'q> {
    /// The question: name, type and class, as the query wrote it (its case kept).
    question: &'q [u8],
    qtype: RecordType,
    /// The client's EDNS UDP size, when it sent EDNS.
    edns: Option<u16>,
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
}

/// Reads `packet` as a plain query, lowering its name into `name`; `None` to decline.
fn parse<'q>(packet: &'q [u8], name: &mut [u8; MAX_NAME]) -> Option<(Query<'q>, usize)> {
    let flags = u16_at(packet, 2)?;
    // QR 0, opcode QUERY, not truncated, Z 0, RCODE 0 (RD, AD and CD may be anything).
    if flags & 0xFA4F != 0 {
        return None;
    }
    if u16_at(packet, 4)? != 1 || u16_at(packet, 6)? != 0 || u16_at(packet, 8)? != 0 {
        return None;
    }
    let additional = u16_at(packet, 10)?;
    let mut at = HEADER;
    let mut len = 0;
    loop {
        let label = *packet.get(at)? as usize;
        // Compression pointers and extended label types go to the full path.
        if label > 63 || len + label + 1 > MAX_NAME {
            return None;
        }
        let bytes = packet.get(at..at + 1 + label)?;
        name[len] = label as u8;
        for (i, b) in bytes[1..].iter().enumerate() {
            name[len + 1 + i] = b.to_ascii_lowercase();
        }
        len += 1 + label;
        at += 1 + label;
        if label == 0 {
            break;
        }
    }
    let qtype = u16_at(packet, at)?;
    if u16_at(packet, at + 2)? != CLASS_IN {
        return None;
    }
    let question = &packet[HEADER..at + 4];
    at += 4;
    let edns = match additional {
        0 => None,
        1 => {
            // OPT: the root name, type OPT, class = UDP size, TTL = extended RCODE, version,
            // flags; no options.
            let opt = packet.get(at..at + OPT_LEN)?;
            if opt[0] != 0 || u16_at(opt, 1)? != TYPE_OPT {
                return None;
            }
            let size = u16_at(opt, 3)?;
            let (ext_rcode, version, opt_flags) = (opt[5], opt[6], u16_at(opt, 7)?);
            if ext_rcode != 0 || version != 0 || opt_flags != 0 || u16_at(opt, 9)? != 0 {
                return None;
            }
            at += OPT_LEN;
            Some(size)
        }
        _ => return None,
    };
    if at != packet.len() {
        return None;
    }
    let qtype = RecordType::from(qtype);
    match qtype {
        RecordType::ANY
        | RecordType::AXFR
        | RecordType::IXFR
        | RecordType::OPT
        | RecordType::SOA
        | RecordType::NS => return None,
        RecordType::Unknown(_) => return None,
        _ => {}
    }
    Some((
        Query {
            question,
            qtype,
            edns,
        },
        len,
    ))
}

/// Answers `packet` from `client` from `snapshot` into `out`, or declines it.
pub fn answer(snapshot: &Snapshot, packet: &[u8], client: IpAddr, out: &mut Vec<u8>) -> Fast {
    match try_answer(snapshot, packet, client, out) {
        Some(()) => Fast::Answered,
        None => Fast::Declined,
    }
}

fn try_answer(snapshot: &Snapshot, packet: &[u8], client: IpAddr, out: &mut Vec<u8>) -> Option<()> {
    let mut name = [0u8; MAX_NAME];
    let (query, len) = parse(packet, &mut name)?;
    let name = &name[..len];
    let zone = snapshot.zone_for_wire(name)?;
    // (response code, answer body, answer count, authority, additional count)
    let (rcode, body, answers, authority, additionals): (u8, &[u8], u16, &[u8], u16) =
        match zone.find(name, Some(client)) {
            Found::Static(node) => {
                if node.has_cname() {
                    return None;
                }
                match node.wire(query.qtype) {
                    Some(w) => (0, &w.body, w.answers, &[][..], w.additionals),
                    // Records of the type the pre-rendering could not encode: full path.
                    None if node.get(query.qtype).is_some() => return None,
                    None => (0, &[][..], 0, zone.soa_wire(), 0),
                }
            }
            Found::Alias(entry) => match entry.wire(query.qtype) {
                Some(w) => (0, &w.body, w.answers, &[][..], w.additionals),
                None => (0, &[][..], 0, zone.soa_wire(), 0),
            },
            Found::Empty => (0, &[][..], 0, zone.soa_wire(), 0),
            Found::NxDomain => (3, &[][..], 0, zone.soa_wire(), 0),
        };
    let total = HEADER
        + query.question.len()
        + body.len()
        + authority.len()
        + if query.edns.is_some() { OPT_LEN } else { 0 };
    let limit = query.edns.map_or(512, |s| usize::from(s.max(512)));
    if total > limit || authority.is_empty() && rcode == 3 {
        return None;
    }
    out.clear();
    out.extend_from_slice(&packet[..2]);
    // QR, AA, RD as asked; CD as asked; AD and RA clear.
    out.push(0x84 | (packet[2] & 0x01));
    out.push((packet[3] & 0x10) | rcode);
    let counts = [
        1,
        answers,
        u16::from(!authority.is_empty()),
        additionals + u16::from(query.edns.is_some()),
    ];
    for c in counts {
        out.extend_from_slice(&c.to_be_bytes());
    }
    out.extend_from_slice(query.question);
    out.extend_from_slice(body);
    out.extend_from_slice(authority);
    if let Some(size) = query.edns {
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&size.max(512).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    Some(())
}

#[cfg(test)]
mod tests;
