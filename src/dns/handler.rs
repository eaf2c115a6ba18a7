//! The zone handler that hickory's `Catalog` calls for each of our zones.
//!
//! It answers from the current snapshot only: one lock-free load per lookup, then hash-map probes.
//! The catalog refuses names outside every zone, handles EDNS and adds the SOA to negative
//! answers (by calling `lookup` for the apex SOA, which reads the snapshot again; a relink in
//! between can only make that serial newer, which resolvers accept).
//!
//! A client is answered by its source address (UDP or TCP peer): in a weighted step an alias
//! answers each client its side. Lookups with no request (the catalog's own, for the apex SOA
//! and NS) see the old side, as zone transfers do.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, RecordType, TSigResponseContext};
use hickory_server::server::{Request, RequestInfo};
use hickory_server::zone_handler::{
    AuthLookup, AxfrPolicy, LookupControlFlow, LookupError, LookupOptions, LookupRecords,
    ZoneHandler, ZoneTransfer, ZoneType,
};
use tracing::info;

use crate::snapshot::{Lookup, SharedSnapshot};

/// Serves zone number `index` of the published snapshots.
pub struct SnapshotZone {
    origin: LowerName,
    index: usize,
    snapshots: SharedSnapshot,
    log_queries: bool,
}

impl SnapshotZone {
    pub fn new(
        origin: LowerName,
        index: usize,
        snapshots: SharedSnapshot,
        log_queries: bool,
    ) -> Self {
        Self {
            origin,
            index,
            snapshots,
            log_queries,
        }
    }

    fn answer(
        &self,
        name: &LowerName,
        rtype: RecordType,
        client: Option<IpAddr>,
        options: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        let snapshot = self.snapshots.load();
        let Some(zone) = snapshot.zones.get(self.index) else {
            return LookupControlFlow::Break(Err(LookupError::from(ResponseCode::ServFail)));
        };
        let result = match zone.lookup(name, rtype, client) {
            Lookup::Found {
                answers,
                additionals,
            } => {
                let additionals =
                    (!additionals.is_empty()).then(|| LookupRecords::many(options, additionals));
                Ok(AuthLookup::answers(
                    LookupRecords::many(options, answers),
                    additionals,
                ))
            }
            Lookup::NoData => Err(LookupError::NameExists),
            Lookup::NxDomain => Err(LookupError::from(ResponseCode::NXDomain)),
        };
        LookupControlFlow::Continue(result)
    }
}

#[async_trait::async_trait]
impl ZoneHandler for SnapshotZone {
    fn zone_type(&self) -> ZoneType {
        ZoneType::Primary
    }

    fn axfr_policy(&self) -> AxfrPolicy {
        AxfrPolicy::Deny
    }

    fn origin(&self) -> &LowerName {
        &self.origin
    }

    async fn lookup(
        &self,
        name: &LowerName,
        rtype: RecordType,
        request_info: Option<&RequestInfo<'_>>,
        options: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        let client = request_info.map(|info| info.src.ip());
        self.answer(name, rtype, client, options)
    }

    async fn search(
        &self,
        request: &Request,
        options: LookupOptions,
    ) -> (LookupControlFlow<AuthLookup>, Option<TSigResponseContext>) {
        let info = match request.request_info() {
            Ok(info) => info,
            Err(e) => return (LookupControlFlow::Break(Err(e)), None),
        };
        let name = info.query.name();
        let rtype = info.query.query_type();
        if self.log_queries {
            info!(src = %info.src, name = %name, rtype = %rtype, protocol = %info.protocol, "query");
        }
        (self.answer(name, rtype, Some(info.src.ip()), options), None)
    }

    async fn nsec_records(
        &self,
        _name: &LowerName,
        _options: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        LookupControlFlow::Continue(Err(LookupError::from(ResponseCode::NotImp)))
    }

    async fn zone_transfer(
        &self,
        _request: &Request,
        _options: LookupOptions,
        _now: u64,
    ) -> Option<(
        Result<ZoneTransfer, LookupError>,
        Option<TSigResponseContext>,
    )> {
        Some((Err(LookupError::from(ResponseCode::Refused)), None))
    }
}
