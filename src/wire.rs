//! DNS wire format for the fast answer path: names as lowercase wire bytes (the keys of every
//! index), and answers pre-rendered when a snapshot is built, so answering a query is a copy.
//!
//! A pre-rendered answer is the part of a response after the question: the answer records, each
//! owned by the question name (written as a compression pointer to offset 12, so the question's
//! own bytes, 0x20 case included, name them), then the additional records written whole. Names
//! inside record data and the additional records are not compressed: a response is a little
//! longer than hickory's, never different in meaning.

use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name, Record, RecordSet, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

/// A DNS name in lowercase wire form (length-prefixed labels, ending with the root's 0).
pub type WireName = Arc<[u8]>;

/// The compression pointer to the question name, which always starts at offset 12.
const QUESTION_POINTER: [u8; 2] = [0xC0, 0x0C];

/// `name` in lowercase wire form.
pub fn wire_name(name: &Name) -> WireName {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out.into()
}

/// [`wire_name`] of a [`LowerName`].
pub fn wire_lower(name: &LowerName) -> WireName {
    wire_name(&Name::from(name))
}

/// The wire name without its first label; `None` for the root.
pub fn parent(name: &[u8]) -> Option<&[u8]> {
    let len = *name.first()? as usize;
    if len == 0 {
        return None;
    }
    name.get(1 + len..)
}

/// Whether `name` is `zone` or below it, both in lowercase wire form.
pub fn in_zone(name: &[u8], zone: &[u8]) -> bool {
    let mut at = name;
    loop {
        if at == zone {
            return true;
        }
        match parent(at) {
            Some(p) => at = p,
            None => return false,
        }
    }
}

/// An answer ready to copy after the question: its records and their counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireAnswer {
    pub rtype: RecordType,
    pub body: Box<[u8]>,
    pub answers: u16,
    pub additionals: u16,
}

/// Appends `record` to `out` whole, names uncompressed.
fn emit(record: &Record, out: &mut Vec<u8>) -> bool {
    let at = out.len() as u32;
    let mut encoder = BinEncoder::with_offset(out, at);
    // Uncompressed: the bytes are copied into responses at other offsets. Lowercase, as the
    // zone's names are.
    encoder.set_canonical_form(true);
    encoder.set_name_encoding(NameEncoding::UncompressedLowercase);
    record.emit(&mut encoder).is_ok()
}

/// The answer for `rrset` (owned by the question name) with `additionals` after it; `None` if a
/// record cannot be encoded (the full path answers then).
pub fn prerender(rrset: &RecordSet, additionals: &[Arc<RecordSet>]) -> Option<WireAnswer> {
    let owner_len = wire_name(rrset.name()).len();
    let mut body = Vec::with_capacity(64);
    let mut answers = 0u16;
    let mut scratch = Vec::with_capacity(64);
    for record in rrset.records_without_rrsigs() {
        scratch.clear();
        if !emit(record, &mut scratch) {
            return None;
        }
        body.extend_from_slice(&QUESTION_POINTER);
        body.extend_from_slice(scratch.get(owner_len..)?);
        answers = answers.checked_add(1)?;
    }
    let mut count = 0u16;
    for set in additionals {
        for record in set.records_without_rrsigs() {
            if !emit(record, &mut body) {
                return None;
            }
            count = count.checked_add(1)?;
        }
    }
    Some(WireAnswer {
        rtype: rrset.record_type(),
        body: body.into(),
        answers,
        additionals: count,
    })
}

/// The SOA record of a negative answer's authority section, encoded whole.
pub fn authority(soa: &RecordSet) -> Option<Box<[u8]>> {
    let mut out = Vec::with_capacity(96);
    for record in soa.records_without_rrsigs() {
        if !emit(record, &mut out) {
            return None;
        }
    }
    Some(out.into())
}
