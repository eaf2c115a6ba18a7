//! The DNS server. UDP is served by aliasd's own receive loops: one thread per socket, several
//! SO_REUSEPORT sockets per address so the kernel spreads queries over the cores, each query
//! answered by the fast path (`fast`) when it can be, and by hickory's `Catalog` (`slow`)
//! otherwise. TCP is served by aliasd's own accept loop ([`tcp`]) with the same `Catalog`, on the
//! same port, so a client that gets a truncated UDP answer retries over TCP at the same address.

pub mod agree;
pub mod fast;
pub mod handler;
pub mod notify;
pub mod slow;
pub mod tcp;
pub mod xfr;

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket as StdUdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hickory_proto::rr::LowerName;
use hickory_server::zone_handler::{Catalog, ZoneHandler};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use rustix::io::Errno;
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny, sendmmsg};
use smallvec::SmallVec;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::config::DnsConfig;
use crate::snapshot::SharedSnapshot;
use crate::supervise::{Critical, Ended};
use fast::Fast;
use handler::SnapshotZone;

/// Tries to find a port free on both UDP and TCP when the config asks for port 0.
const PORT_TRIES: usize = 32;
/// How often a blocked receive wakes to see whether the server is stopping.
const WAKE_EVERY: Duration = Duration::from_millis(200);
/// Queries waiting for the full path; beyond this they are dropped (the client retries), so a
/// flood of odd queries cannot grow memory.
const SLOW_QUEUE: usize = 4096;
/// The largest UDP message read.
const MAX_UDP: usize = 65_535;

/// A query for the full path, and the socket its answer leaves from.
struct SlowQuery {
    packet: Vec<u8>,
    src: SocketAddr,
    socket: Arc<StdUdpSocket>,
}

/// A running DNS server and the addresses it actually bound.
pub struct DnsServer {
    /// The TCP accept loops, the full path's task and the UDP threads: DNS serves only while
    /// every one of them runs.
    critical: Critical,
    tcp_stop: CancellationToken,
    /// One entry per configured address, with the real port.
    pub addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// The `Catalog` answering every zone of `origins` from `snapshots`.
pub fn catalog(origins: &[LowerName], snapshots: &SharedSnapshot, log_queries: bool) -> Catalog {
    let mut catalog = Catalog::new();
    for (index, origin) in origins.iter().enumerate() {
        let zone = SnapshotZone::new(origin.clone(), index, snapshots.clone(), log_queries);
        catalog.upsert(origin.clone(), vec![Arc::new(zone) as Arc<dyn ZoneHandler>]);
    }
    catalog
}

impl DnsServer {
    /// Binds every configured address and starts serving `snapshots`.
    pub async fn start(
        config: &DnsConfig,
        origins: &[LowerName],
        snapshots: SharedSnapshot,
        transfers: Arc<xfr::Transfers>,
    ) -> io::Result<Self> {
        let mut critical = Critical::default();
        let tcp_stop = CancellationToken::new();
        let tcp_limits = tcp::Limits {
            idle_timeout: config.tcp_idle_timeout,
            max_connections: config.tcp_max_connections,
        };
        let slow_catalog = Arc::new(catalog(origins, &snapshots, config.log_queries));
        let (slow_tx, slow_rx) = mpsc::channel::<SlowQuery>(SLOW_QUEUE);
        critical.spawn(
            "DNS's full answer path (the UDP queries the fast path declines)",
            serve_slow(slow_catalog.clone(), slow_rx),
        );
        let answerers = Arc::new(tcp::Answerers {
            catalog: slow_catalog.clone(),
            snapshots: snapshots.clone(),
            transfers,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut addrs = Vec::new();
        for addr in &config.listen {
            let (tcp, udps) = bind_pair(*addr, config.udp_sockets).await?;
            let bound = tcp.local_addr()?;
            info!(
                addr = %bound,
                udp_sockets = udps.len(),
                "dns listening on udp and tcp"
            );
            for (i, udp) in udps.into_iter().enumerate() {
                let socket = Arc::new(udp);
                let (snapshots, slow_tx, stop) = (snapshots.clone(), slow_tx.clone(), stop.clone());
                let log = config.log_queries;
                let on_exit = critical.on_exit(format!("DNS over UDP on {bound} (socket {i})"));
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("dns-udp-{i}"))
                        .spawn(move || {
                            let _on_exit = on_exit;
                            udp_loop(&socket, &snapshots, &slow_tx, &stop, log);
                        })?,
                );
            }
            critical.spawn(
                format!("DNS over TCP on {bound}"),
                tcp::serve(tcp, answerers.clone(), tcp_limits, tcp_stop.clone()),
            );
            addrs.push(bound);
        }
        Ok(Self {
            critical,
            tcp_stop,
            addrs,
            stop,
            threads,
        })
    }

    /// The first of the server's loops to end (by returning or panicking); never resolves
    /// while they all run. Any one ending before [`DnsServer::shutdown`] is a failure.
    pub async fn ended(&mut self) -> Ended {
        self.critical.ended().await
    }

    /// Stops accepting and waits for the server's tasks and threads to end.
    pub async fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        self.tcp_stop.cancel();
        while !self.critical.is_empty() {
            self.critical.ended().await;
        }
    }
}

/// Datagrams taken from the socket in one `recvmmsg` call.
const BATCH: usize = 32;

/// Buffers one receive loop reuses: a batch of datagrams in, a batch of answers out. The
/// per-call header arrays live on the stack, so a batch allocates nothing.
struct Batch {
    bufs: [Vec<u8>; BATCH],
    headers: MultiHeaders<SockaddrStorage>,
    /// Length and source of each datagram of the last receive.
    got: Vec<(usize, Option<SockaddrStorage>)>,
    /// Answers of this batch (the first `dests.len()` are in use) and where each goes.
    outs: Vec<Vec<u8>>,
    dests: Vec<SocketAddrAny>,
}

impl Batch {
    fn new() -> Self {
        Self {
            // Pages the kernel never writes to are never made resident.
            bufs: std::array::from_fn(|_| vec![0u8; MAX_UDP]),
            headers: MultiHeaders::preallocate(BATCH, None),
            got: Vec::with_capacity(BATCH),
            outs: (0..BATCH).map(|_| Vec::with_capacity(512)).collect(),
            dests: Vec::with_capacity(BATCH),
        }
    }

    /// Sends the batch's answers with as few `sendmmsg` calls as the kernel allows: a message
    /// the kernel refuses is skipped (its client retries) and the rest still go.
    fn send(&mut self, fd: BorrowedFd<'_>) {
        let mut start = 0;
        while start < self.dests.len() {
            let pending = &self.dests[start..];
            let iovs: SmallVec<[[IoSlice<'_>; 1]; BATCH]> = self.outs[start..start + pending.len()]
                .iter()
                .map(|o| [IoSlice::new(o)])
                .collect();
            let mut controls: SmallVec<[SendAncillaryBuffer<'_, '_, '_>; BATCH]> = pending
                .iter()
                .map(|_| SendAncillaryBuffer::default())
                .collect();
            let mut msgs: SmallVec<[MMsgHdr<'_>; BATCH]> = pending
                .iter()
                .zip(&iovs)
                .zip(controls.iter_mut())
                .map(|((dest, iov), control)| MMsgHdr::new_with_addr(dest, iov, control))
                .collect();
            match sendmmsg(fd, &mut msgs, SendFlags::empty()) {
                Ok(0) => break,
                Ok(sent) => start += sent,
                Err(Errno::INTR) => {}
                Err(error) => {
                    debug!(error = %io::Error::from(error), "udp send failed");
                    start += 1;
                }
            }
        }
        self.dests.clear();
    }

    /// Waits for at least one datagram (or the receive timeout) and takes whatever else is
    /// already queued, up to `BATCH`.
    fn receive(&mut self, fd: RawFd) -> io::Result<()> {
        self.got.clear();
        let mut slices = self.bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
        let results = recvmmsg(
            fd,
            &mut self.headers,
            slices.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        )
        .map_err(io::Error::from)?;
        self.got.extend(results.map(|m| (m.bytes, m.address)));
        Ok(())
    }
}

fn std_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        Some(SocketAddrV4::from(*v4).into())
    } else {
        addr.as_sockaddr_in6()
            .map(|v6| SocketAddrV6::from(*v6).into())
    }
}

/// Receives on one socket until `stop`: answers what the fast path takes, queues the rest.
fn udp_loop(
    socket: &Arc<StdUdpSocket>,
    snapshots: &SharedSnapshot,
    slow: &mpsc::Sender<SlowQuery>,
    stop: &AtomicBool,
    log_queries: bool,
) {
    let fd = socket.as_raw_fd();
    let mut batch = Batch::new();
    while !stop.load(Ordering::Relaxed) {
        match batch.receive(fd) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(error) => {
                debug!(%error, "udp receive failed");
                continue;
            }
        }
        // One snapshot for the whole batch: they arrived together.
        let snapshot = snapshots.load();
        for (i, (len, src)) in batch.got.iter().enumerate() {
            let Some(src) = src.as_ref().and_then(std_addr) else {
                continue;
            };
            let packet = &batch.bufs[i][..*len];
            // Logging each query is the full path's job.
            let out = &mut batch.outs[batch.dests.len()];
            let fast = if log_queries {
                Fast::Declined
            } else {
                fast::answer(&snapshot, packet, src.ip(), out)
            };
            match fast {
                Fast::Answered => batch.dests.push(SocketAddrAny::from(src)),
                Fast::Declined => {
                    let query = SlowQuery {
                        packet: packet.to_vec(),
                        src,
                        socket: socket.clone(),
                    };
                    if slow.try_send(query).is_err() {
                        debug!(%src, "full-path queue full: query dropped");
                    }
                }
            }
        }
        batch.send(socket.as_fd());
    }
}

/// Answers queued queries with hickory's `Catalog`, each in its own task.
async fn serve_slow(catalog: Arc<Catalog>, mut rx: mpsc::Receiver<SlowQuery>) {
    while let Some(query) = rx.recv().await {
        let catalog = catalog.clone();
        tokio::spawn(async move {
            if let Some(response) = slow::respond(&catalog, &query.packet, query.src).await
                && let Err(error) = query.socket.send_to(&response, query.src)
            {
                debug!(%error, src = %query.src, "udp send failed");
            }
        });
    }
}

/// Binds TCP and `udp_count` UDP sockets on the same address and port. With port 0 the port
/// comes from binding TCP first; if UDP cannot have it, another is tried.
async fn bind_pair(
    addr: SocketAddr,
    udp_count: usize,
) -> io::Result<(TcpListener, Vec<StdUdpSocket>)> {
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

/// A blocking UDP socket (its thread waits in `recv`), woken every [`WAKE_EVERY`] to see
/// whether the server stops.
fn bind_udp(addr: SocketAddr) -> io::Result<StdUdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    socket.set_read_timeout(Some(WAKE_EVERY))?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn with_context(e: io::Error, proto: &str, addr: SocketAddr) -> io::Error {
    io::Error::new(e.kind(), format!("cannot bind dns {proto} on {addr}: {e}"))
}
