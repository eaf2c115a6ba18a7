//! Bytes to aliasd's real DNS server on loopback: as a TCP stream (hickory's framing: a 2-byte
//! length before each message, any number of messages, cut anywhere) and as one UDP datagram
//! (aliasd's own receive loop). Every answer must parse, the server must close a connection
//! whose client has finished, and it must still answer a plain query afterwards.
#![no_main]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aliasd::config::ZoneTransfer;
use aliasd::dns::DnsServer;
use aliasd::dns::agree::{Fixture, meaning};
use aliasd::dns::xfr::Transfers;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{LowerName, Name, RecordType};
use libfuzzer_sys::fuzz_target;

/// Longer than any answer takes; a connection still open after this is a finding.
const PATIENCE: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    udp: UdpSocket,
    _runtime: tokio::runtime::Runtime,
    _server: DnsServer,
    _fixture: Fixture,
}

static SERVER: LazyLock<Server> = LazyLock::new(|| {
    let fixture = aliasd_fuzz::fixture();
    let mut dns = fixture.config.dns.clone();
    dns.listen = vec!["127.0.0.1:0".parse().unwrap()];
    dns.udp_sockets = 1;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let origin = LowerName::from(Name::from_ascii("internal.").unwrap());
    // Zone transfers allowed from loopback, so AXFR and IXFR requests reach their code too.
    let transfers = Transfers::new(
        std::slice::from_ref(&origin),
        &[ZoneTransfer {
            secondaries: Vec::new(),
            allow: vec!["127.0.0.0/8".parse().unwrap()],
        }],
        &[],
    );
    let server = runtime
        .block_on(DnsServer::start(
            &dns,
            &[origin],
            fixture.snapshots.clone(),
            transfers,
        ))
        .expect("the DNS server starts");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(PATIENCE)).unwrap();
    Server {
        addr: server.addrs[0],
        udp,
        _runtime: runtime,
        _server: server,
        _fixture: fixture,
    }
});

static RUNS: AtomicU64 = AtomicU64::new(0);

/// Reads what the server wrote until it closes, and checks each framed answer parses.
fn read_answers(stream: &mut TcpStream) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    if let Err(e) = stream.read_to_end(&mut got)
        && matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    {
        panic!("the server kept the connection open {PATIENCE:?} after the client closed its side");
    }
    let mut answers = Vec::new();
    let mut rest = &got[..];
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        assert!(rest.len() >= 2 + len, "a TCP answer cut short: {got:02x?}");
        answers.push(rest[2..2 + len].to_vec());
        rest = &rest[2 + len..];
    }
    assert!(
        rest.is_empty(),
        "a stray byte after the answers: {got:02x?}"
    );
    for answer in &answers {
        if let Err(e) = meaning(answer) {
            panic!("{e}: {answer:02x?}");
        }
    }
    answers
}

fn tcp(addr: SocketAddr, bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).expect("connect to the DNS server");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    // The server may close first (a bad frame): what it wrote is still read.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    read_answers(&mut stream)
}

fn plain_query() -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 4242;
    m.add_query(Query::query(
        Name::from_ascii("web.internal.").unwrap(),
        RecordType::A,
    ));
    m.to_vec().unwrap()
}

fuzz_target!(|bytes: &[u8]| {
    let server = &*SERVER;
    tcp(server.addr, bytes);

    // The same bytes as one datagram, then a plain query: every answer until the plain one's
    // (and any late full-path answer to an earlier input) must parse.
    let _ = server.udp.send_to(bytes, server.addr);
    server.udp.send_to(&plain_query(), server.addr).unwrap();
    let mut buf = [0u8; 65_535];
    loop {
        let (len, _) = server
            .udp
            .recv_from(&mut buf)
            .expect("a UDP answer to a plain query");
        let answer = &buf[..len];
        if let Err(e) = meaning(answer) {
            panic!("UDP: {e}: {answer:02x?}");
        }
        let m = Message::from_vec(answer).unwrap();
        if m.metadata.id == 4242 && !m.answers.is_empty() {
            break;
        }
    }

    // Still serving.
    if RUNS.fetch_add(1, Ordering::Relaxed) % 16 == 0 {
        let query = plain_query();
        let mut framed = (query.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&query);
        let answers = tcp(server.addr, &framed);
        assert_eq!(
            answers.len(),
            1,
            "no answer to a plain query after the input"
        );
        let m = Message::from_vec(&answers[0]).unwrap();
        assert_eq!(m.metadata.id, 4242);
        assert!(
            !m.answers.is_empty(),
            "web.internal has no A records: {m:?}"
        );
    }
});
