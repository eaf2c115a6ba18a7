//! Outgoing zone transfers (RFC 5936 AXFR, RFC 1995 IXFR) over TCP, with TSIG (RFC 8945,
//! hmac-sha256), for the secondaries a `[[zone]]` lists.
//!
//! A transfer ships one generation: the zone as that snapshot renders it, the zone file's records
//! and every alias's answers as DNS serves them (health filter included), between two copies of
//! its SOA. Who may transfer: a listed secondary from its address (with its `tsig_key`, only when
//! the request is signed with that key), or any address in `transfer_allow`; anyone else is
//! REFUSED, as before transfers existed. IXFR answers from a window of recent generations
//! ([`Transfers::remember`]): the changes from the asked serial to now, only the aliases whose
//! records changed; a serial older than the window gets the whole zone, as RFC 1995 allows.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TSIG, TsigAlgorithm, TsigError, make_tsig_record};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tracing::{debug, info};

use crate::clock::now_ms;
use crate::config::{TsigKey, ZoneTransfer};
use crate::serial::serial_lt;
use crate::snapshot::{Snapshot, ZoneView};

/// Generations kept for IXFR. A secondary further behind gets the whole zone.
pub const IXFR_WINDOW: usize = 64;
/// Records per message of a transfer: small enough for 64 KiB with long alias names.
const RECORDS_PER_MESSAGE: usize = 100;
/// Allowed clock difference of a signed request (RFC 8945 recommends 300 s).
const FUDGE: u16 = 300;

/// The transfer settings of every zone, the keys, and the recent generations.
pub struct Transfers {
    zones: Vec<(LowerName, ZoneTransfer)>,
    keys: Vec<TsigKey>,
    recent: Mutex<VecDeque<Arc<Snapshot>>>,
}

/// A request's valid signature: its key and MAC (the response's MAC covers it).
struct Signed<'a> {
    key: &'a TsigKey,
    mac: Vec<u8>,
}

impl Transfers {
    pub fn new(origins: &[LowerName], transfers: &[ZoneTransfer], keys: &[TsigKey]) -> Arc<Self> {
        Arc::new(Self {
            zones: origins
                .iter()
                .cloned()
                .zip(transfers.iter().cloned())
                .collect(),
            keys: keys.to_vec(),
            recent: Mutex::default(),
        })
    }

    /// The zones and their settings, in config order.
    pub fn zones(&self) -> &[(LowerName, ZoneTransfer)] {
        &self.zones
    }

    /// Every zone's secondaries: the zone's index and the secondary's address.
    pub fn secondaries(&self) -> Vec<(usize, SocketAddr)> {
        self.zones
            .iter()
            .enumerate()
            .flat_map(|(zone, (_, t))| t.secondaries.iter().map(move |s| (zone, s.address)))
            .collect()
    }

    /// The key named `name`.
    pub fn key(&self, name: &Name) -> Option<&TsigKey> {
        self.keys.iter().find(|k| &k.name == name)
    }

    /// Keeps `snapshot` for IXFR (the last [`IXFR_WINDOW`] generations).
    pub fn remember(&self, snapshot: &Arc<Snapshot>) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent
            .back()
            .is_some_and(|last| last.generation >= snapshot.generation)
        {
            return;
        }
        recent.push_back(snapshot.clone());
        while recent.len() > IXFR_WINDOW {
            recent.pop_front();
        }
    }

    /// The generation in the window where zone `index` had `serial`.
    fn at_serial(&self, index: usize, serial: u32) -> Option<Arc<Snapshot>> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent
            .iter()
            .rev()
            .find(|s| s.zones.get(index).is_some_and(|z| z.serial == serial))
            .cloned()
    }

    /// The messages answering `packet` from `peer` when it asks for a transfer (AXFR or IXFR
    /// of a zone aliasd serves), or `None` for anything else (the ordinary path answers it).
    pub fn answer(
        &self,
        snapshot: &Arc<Snapshot>,
        packet: &[u8],
        peer: SocketAddr,
    ) -> Option<Vec<Vec<u8>>> {
        let request = Message::from_vec(packet).ok()?;
        if request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
            || request.queries.len() != 1
        {
            return None;
        }
        let query = &request.queries[0];
        let rtype = query.query_type();
        if !matches!(rtype, RecordType::AXFR | RecordType::IXFR) {
            return None;
        }
        let qname = LowerName::from(query.name());
        let index = self.zones.iter().position(|(o, _)| *o == qname)?;
        let zone = snapshot.zones.get(index)?;
        self.remember(snapshot);
        let (_, settings) = &self.zones[index];

        // The signature first: a bad one is answered NOTAUTH with the TSIG error, unsigned.
        let signed = match signature_of(&request) {
            None => None,
            Some(sig) => match self.verify(packet, &sig) {
                Ok(signed) => Some(signed),
                Err(error) => {
                    info!(%peer, zone = %qname, ?error, "zone transfer refused: bad TSIG");
                    return Some(vec![tsig_error(&request, &sig, error)]);
                }
            },
        };
        let ip = peer.ip();
        let as_secondary = settings
            .secondaries
            .iter()
            .filter(|s| s.address.ip() == ip)
            .any(|s| match &s.tsig_key {
                None => true,
                Some(name) => signed.as_ref().is_some_and(|sig| &sig.key.name == name),
            });
        let allowed = as_secondary || settings.allow.iter().any(|net| net.contains(&ip));
        if !allowed {
            info!(%peer, zone = %qname, ?rtype, "zone transfer refused: not an allowed secondary");
            let mut refused = response_to(&request);
            refused.metadata.response_code = ResponseCode::Refused;
            return Some(self.finish(vec![refused], signed.as_ref()));
        }

        let soa = zone.soa().records_without_rrsigs().next()?.clone();
        let records = match rtype {
            RecordType::IXFR => self.ixfr_records(index, zone, &soa, &request),
            _ => full(zone, &soa),
        };
        debug!(%peer, zone = %qname, ?rtype, records = records.len(), serial = zone.serial, "zone transfer");
        let mut messages = Vec::new();
        for (i, chunk) in records.chunks(RECORDS_PER_MESSAGE).enumerate() {
            let mut m = response_to(&request);
            if i > 0 {
                m.queries.clear();
            }
            m.answers = chunk.to_vec();
            messages.push(m);
        }
        Some(self.finish(messages, signed.as_ref()))
    }

    /// The records of an IXFR answer: nothing new, the changes since the client's serial, or
    /// the whole zone when that serial is out of the window.
    fn ixfr_records(
        &self,
        index: usize,
        zone: &ZoneView,
        soa: &Record,
        request: &Message,
    ) -> Vec<Record> {
        let theirs = request.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(s) => Some((r.clone(), s.serial)),
            _ => None,
        });
        let Some((their_soa, serial)) = theirs else {
            return full(zone, soa);
        };
        if !serial_lt(serial, zone.serial) {
            // Up to date (or ahead): the current SOA alone says so.
            return vec![soa.clone()];
        }
        let Some(older) = self.at_serial(index, serial) else {
            return full(zone, soa);
        };
        let Some(old_zone) = older.zones.get(index) else {
            return full(zone, soa);
        };
        let Some((removed, added)) = zone.changes_since(old_zone) else {
            return full(zone, soa);
        };
        let mut old_soa = old_zone
            .soa()
            .records_without_rrsigs()
            .next()
            .cloned()
            .unwrap_or(their_soa);
        old_soa.ttl = soa.ttl;
        let mut out = Vec::with_capacity(removed.len() + added.len() + 4);
        out.push(soa.clone());
        out.push(old_soa);
        out.extend(removed);
        out.push(soa.clone());
        out.extend(added);
        out.push(soa.clone());
        out
    }

    /// Encodes `messages`, each signed when the request was (RFC 8945 section 5.3.1: the first
    /// covers the request's MAC, each next one the MAC before it).
    fn finish(&self, messages: Vec<Message>, signed: Option<&Signed<'_>>) -> Vec<Vec<u8>> {
        let mut out = Vec::with_capacity(messages.len());
        let mut prior = signed.map(|s| s.mac.clone());
        for (i, m) in messages.iter().enumerate() {
            let Ok(bytes) = m.to_vec() else { continue };
            match (signed, &prior) {
                (Some(s), Some(mac)) => {
                    let (bytes, mac) = sign(bytes, s.key, Some(mac), i == 0, now_secs());
                    prior = Some(mac);
                    out.push(bytes);
                }
                _ => out.push(bytes),
            }
        }
        out
    }

    /// Checks the request's TSIG against its key.
    fn verify(&self, packet: &[u8], sig: &Sig) -> Result<Signed<'_>, TsigError> {
        let name = sig.name.to_lowercase();
        let key = self.key(&name).ok_or(TsigError::BadKey)?;
        let tsig = &sig.data;
        if tsig.algorithm != TsigAlgorithm::HmacSha256 {
            return Err(TsigError::BadKey);
        }
        let tbs = to_be_verified(packet, None, true).ok_or(TsigError::BadSig)?;
        let mut mac = <Hmac<Sha256>>::new_from_slice(&key.secret).map_err(|_| TsigError::BadKey)?;
        mac.update(&tbs);
        mac.verify_slice(&tsig.mac).map_err(|_| TsigError::BadSig)?;
        let now = now_secs();
        if now.abs_diff(tsig.time) > u64::from(tsig.fudge) {
            return Err(TsigError::BadTime);
        }
        Ok(Signed {
            key,
            mac: tsig.mac.clone(),
        })
    }
}

/// The whole zone: SOA, every record, SOA.
fn full(zone: &ZoneView, soa: &Record) -> Vec<Record> {
    let mut out = vec![soa.clone()];
    out.extend(zone.records());
    out.push(soa.clone());
    out
}

/// An authoritative response to `request` with its question.
fn response_to(request: &Message) -> Message {
    let mut m = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
    m.metadata.authoritative = true;
    m.queries = request.queries.clone();
    m
}

/// NOTAUTH with the TSIG error, unsigned (RFC 8945 section 5.2).
fn tsig_error(request: &Message, sig: &Sig, error: TsigError) -> Vec<u8> {
    let mut m = response_to(request);
    m.metadata.response_code = ResponseCode::NotAuth;
    let rdata = TSIG::new(
        sig.data.algorithm.clone(),
        now_secs(),
        FUDGE,
        Vec::new(),
        request.metadata.id,
        Some(error),
        Vec::new(),
    );
    let Ok(mut bytes) = m.to_vec() else {
        return Vec::new();
    };
    append_tsig(&mut bytes, &make_tsig_record(sig.name.clone(), rdata));
    bytes
}

/// Signs the encoded message `bytes` with `key`: `prior` is the request's MAC (for a response)
/// or the previous message's (for a later message of a transfer), `first` whether this is the
/// first message (it covers every TSIG variable; later ones only the timers). Returns the
/// message with its TSIG record, and the MAC.
pub fn sign(
    mut bytes: Vec<u8>,
    key: &TsigKey,
    prior: Option<&[u8]>,
    first: bool,
    time: u64,
) -> (Vec<u8>, Vec<u8>) {
    let id = u16::from_be_bytes([bytes[0], bytes[1]]);
    let stub = TSIG::new(
        TsigAlgorithm::HmacSha256,
        time,
        FUDGE,
        Vec::new(),
        id,
        None,
        Vec::new(),
    );
    let mut tbs = Vec::with_capacity(bytes.len() + 128);
    if let Some(prior) = prior {
        tbs.extend_from_slice(&(prior.len() as u16).to_be_bytes());
        tbs.extend_from_slice(prior);
    }
    tbs.extend_from_slice(&bytes);
    if first {
        let _ = variables(&mut tbs, &key.name, &stub);
    } else {
        timers(&mut tbs, &stub);
    }
    let mac = match <Hmac<Sha256>>::new_from_slice(&key.secret) {
        Ok(mut m) => {
            m.update(&tbs);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    };
    append_tsig(
        &mut bytes,
        &make_tsig_record(key.name.clone(), stub.set_mac(mac.clone())),
    );
    (bytes, mac)
}

/// Checks a signed message from a peer (a response to our NOTIFY, say) against `key`:
/// `prior` is the MAC of our request.
pub fn verify_response(bytes: &[u8], key: &TsigKey, prior: &[u8]) -> bool {
    let Some(tbs) = to_be_verified(bytes, Some(prior), true) else {
        return false;
    };
    let Ok(message) = Message::from_vec(bytes) else {
        return false;
    };
    let Some(sig) = signature_of(&message) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256>>::new_from_slice(&key.secret) else {
        return false;
    };
    mac.update(&tbs);
    mac.verify_slice(&sig.data.mac).is_ok()
}

/// Appends a TSIG record to an encoded message and counts it in the header.
fn append_tsig(bytes: &mut Vec<u8>, record: &Record<TSIG>) {
    let mut tail = Vec::with_capacity(128);
    let mut encoder = BinEncoder::new(&mut tail);
    if record.emit(&mut encoder).is_err() {
        return;
    }
    let arcount = u16::from_be_bytes([bytes[10], bytes[11]]).wrapping_add(1);
    bytes[10..12].copy_from_slice(&arcount.to_be_bytes());
    bytes.extend_from_slice(&tail);
}

/// A message's TSIG: the key name and the record data.
pub struct Sig {
    pub name: Name,
    pub data: TSIG,
}

/// The TSIG record of `message`, if its last additional record is one.
pub fn signature_of(message: &Message) -> Option<Sig> {
    match message.additionals.last() {
        Some(Record {
            name,
            data: RData::TSIG(t),
            ..
        }) => Some(Sig {
            name: name.clone(),
            data: t.clone(),
        }),
        _ => None,
    }
}

/// What a signed message's MAC covers (RFC 8945 section 4.3.3): the prior MAC if any, the
/// message as sent without its TSIG record (ARCOUNT one less, the ID the original one), and the
/// TSIG variables (or, for a later message of a transfer, only its timers). `None` when the
/// message does not end with a TSIG record.
fn to_be_verified(bytes: &[u8], prior: Option<&[u8]>, first: bool) -> Option<Vec<u8>> {
    let mut decoder = BinDecoder::new(bytes);
    let header = hickory_proto::op::Header::read(&mut decoder).ok()?;
    let counts = header.counts;
    for _ in 0..counts.queries {
        Query::read(&mut decoder).ok()?;
    }
    let records =
        u32::from(counts.answers) + u32::from(counts.authorities) + u32::from(counts.additionals);
    for _ in 0..records.checked_sub(1)? {
        Record::read(&mut decoder).ok()?;
    }
    let tsig_at = bytes.len() - decoder.len();
    let record = Record::read(&mut decoder).ok()?;
    let RData::TSIG(tsig) = &record.data else {
        return None;
    };
    let mut tbs = Vec::with_capacity(bytes.len() + 64);
    if let Some(prior) = prior {
        tbs.extend_from_slice(&(prior.len() as u16).to_be_bytes());
        tbs.extend_from_slice(prior);
    }
    tbs.extend_from_slice(&tsig.oid.to_be_bytes());
    tbs.extend_from_slice(&bytes[2..10]);
    let arcount = u16::from_be_bytes([bytes[10], bytes[11]]).checked_sub(1)?;
    tbs.extend_from_slice(&arcount.to_be_bytes());
    tbs.extend_from_slice(&bytes[12..tsig_at]);
    if first {
        variables(&mut tbs, &record.name, tsig)?;
    } else {
        timers(&mut tbs, tsig);
    }
    Some(tbs)
}

/// Appends the TSIG variables a first message's MAC covers (RFC 8945 section 4.3.3).
fn variables(tbs: &mut Vec<u8>, key_name: &Name, tsig: &TSIG) -> Option<()> {
    // An encoder writes from the start of its buffer: it gets a fresh one.
    let mut out = Vec::with_capacity(96);
    tsig.emit_tsig_for_mac(&mut BinEncoder::new(&mut out), key_name)
        .ok()?;
    tbs.extend_from_slice(&out);
    Some(())
}

/// Appends the timers a later message's MAC covers: time signed (48 bits) and fudge.
fn timers(tbs: &mut Vec<u8>, tsig: &TSIG) {
    tbs.extend_from_slice(&((tsig.time >> 32) as u16).to_be_bytes());
    tbs.extend_from_slice(&(tsig.time as u32).to_be_bytes());
    tbs.extend_from_slice(&tsig.fudge.to_be_bytes());
}

fn now_secs() -> u64 {
    now_ms() / 1000
}
