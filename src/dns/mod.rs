//! The DNS server: hickory-server's `Server` and `Catalog`, with one [`handler::SnapshotZone`] per
//! configured zone.
//!
//! Each listen address is served over UDP and TCP on the same port, so a client that gets a
//! truncated UDP answer can retry over TCP at the same address. UDP uses several sockets per
//! address with SO_REUSEPORT, so the kernel spreads queries over them and every core serves.

pub mod handler;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::rr::LowerName;
use hickory_server::Server;
use hickory_server::zone_handler::{Catalog, ZoneHandler};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tracing::info;

use crate::config::DnsConfig;
use crate::snapshot::SharedSnapshot;
use handler::SnapshotZone;

/// Per-connection buffer of responses waiting to be written on TCP.
const TCP_RESPONSE_BUFFER: usize = 64;
/// Tries to find a port free on both UDP and TCP when the config asks for port 0.
const PORT_TRIES: usize = 32;

/// A running DNS server and the addresses it actually bound.
pub struct DnsServer {
    server: Server<Catalog>,
    /// One entry per configured address, with the real port.
    pub addrs: Vec<SocketAddr>,
}

impl DnsServer {
    /// Binds every configured address and starts serving `snapshots`.
    pub async fn start(
        config: &DnsConfig,
        origins: &[LowerName],
        snapshots: SharedSnapshot,
    ) -> io::Result<Self> {
        let mut catalog = Catalog::new();
        for (index, origin) in origins.iter().enumerate() {
            let zone =
                SnapshotZone::new(origin.clone(), index, snapshots.clone(), config.log_queries);
            catalog.upsert(origin.clone(), vec![Arc::new(zone) as Arc<dyn ZoneHandler>]);
        }
        let mut server = Server::new(catalog);
        let mut addrs = Vec::new();
        for addr in &config.listen {
            let (tcp, udps) = bind_pair(*addr, config.udp_sockets).await?;
            let bound = tcp.local_addr()?;
            info!(
                addr = %bound,
                udp_sockets = udps.len(),
                "dns listening on udp and tcp"
            );
            for udp in udps {
                server.register_socket(udp);
            }
            server.register_listener(tcp, config.tcp_idle_timeout, TCP_RESPONSE_BUFFER);
            addrs.push(bound);
        }
        Ok(Self { server, addrs })
    }

    /// Stops accepting and waits for the server's tasks to end.
    pub async fn shutdown(mut self) {
        if let Err(error) = self.server.shutdown_gracefully().await {
            tracing::warn!(%error, "dns server ended with an error");
        }
    }
}

/// Binds TCP and `udp_count` UDP sockets on the same address and port. With port 0 the port
/// comes from binding TCP first; if UDP cannot have it, another is tried.
async fn bind_pair(
    addr: SocketAddr,
    udp_count: usize,
) -> io::Result<(TcpListener, Vec<UdpSocket>)> {
    let tries = if addr.port() == 0 { PORT_TRIES } else { 1 };
    let mut last_error = None;
    for _ in 0..tries {
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|e| with_context(e, "tcp", addr))?;
        let port = tcp.local_addr()?.port();
        let target = SocketAddr::new(addr.ip(), port);
        match (0..udp_count)
            .map(|_| bind_udp(target))
            .collect::<io::Result<Vec<_>>>()
        {
            Ok(udps) => return Ok((tcp, udps)),
            Err(e) => last_error = Some(with_context(e, "udp", target)),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no port found")))
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

fn with_context(e: io::Error, proto: &str, addr: SocketAddr) -> io::Error {
    io::Error::new(e.kind(), format!("cannot bind dns {proto} on {addr}: {e}"))
}
