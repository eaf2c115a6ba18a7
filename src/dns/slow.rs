//! The full answer path: hickory's `Catalog` answers what the fast path does not take
//! (EDNS options, DNSSEC OK, odd opcodes and classes, names outside the zones, CNAME chains,
//! ANY, SOA and NS queries, answers too big for the client's buffer), exactly as hickory's own
//! UDP server would: the same parsing, the same FORMERR, the same truncation. Over TCP it
//! answers every query (up to 64 KiB, no truncation).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{Catalog, MessageResponse, MessageResponseBuilder, Queries};

/// Collects the one response hickory sends for a request.
#[derive(Clone)]
struct Capture {
    out: Arc<Mutex<Option<Vec<u8>>>>,
    protocol: Protocol,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let id = response.metadata().id;
        // As hickory's UDP server: the client's EDNS buffer, or 512 bytes without EDNS; over
        // TCP a message's largest size.
        let max = match self.protocol {
            Protocol::Udp => response.edns().map_or(512, |e| e.max_payload().max(512)),
            _ => u16::MAX,
        };
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max);
        let info = match response.destructive_emit(&mut encoder) {
            Ok(info) => info,
            Err(_) => {
                bytes.clear();
                let header = servfail(id);
                let mut encoder = BinEncoder::new(&mut bytes);
                header.emit(&mut encoder)?;
                ResponseInfo::from(header)
            }
        };
        *self.out.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes);
        Ok(info)
    }
}

fn servfail(id: u16) -> Header {
    let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
    metadata.response_code = ResponseCode::ServFail;
    Header {
        metadata,
        counts: HeaderCounts::default(),
    }
}

/// The response hickory gives `packet` from `src` over UDP, or `None` when it answers nothing
/// (too short for a header, or a response rather than a query).
pub async fn respond(catalog: &Catalog, packet: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
    respond_over(catalog, packet, src, Protocol::Udp).await
}

/// [`respond`] over `protocol` (`Udp` or `Tcp`).
pub async fn respond_over(
    catalog: &Catalog,
    packet: &[u8],
    src: SocketAddr,
    protocol: Protocol,
) -> Option<Vec<u8>> {
    let capture = Capture {
        out: Arc::default(),
        protocol,
    };
    match Request::from_bytes(packet.to_vec(), src, protocol) {
        Ok(request) => {
            if request.metadata.message_type == MessageType::Response {
                return None;
            }
            catalog
                .handle_request::<_, TokioTime>(&request, capture.clone())
                .await;
        }
        Err(_) => {
            // The header reads but the body does not: FORMERR, as hickory's server answers it.
            let mut decoder = BinDecoder::new(packet);
            let header = Header::read(&mut decoder).ok()?;
            if header.metadata.message_type == MessageType::Response {
                return None;
            }
            let queries = Queries::read(&mut BinDecoder::new(&[]), 0).ok()?;
            let response = MessageResponseBuilder::new(&queries, None)
                .error_msg(&header.metadata, ResponseCode::FormErr);
            capture.clone().send_response(response).await.ok()?;
        }
    }
    capture.out.lock().unwrap_or_else(|p| p.into_inner()).take()
}
