//! A DNS packet through both UDP answer paths: the fast path and hickory's `Catalog`. Neither
//! may panic, every answer must parse, and where the fast path answers, the full path must give
//! the same answer (`aliasd::dns::agree`). The client's address comes from the packet's ID, so
//! the inputs cover both sides of the fixture's weighted step without a format of their own.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::LazyLock;

use aliasd::dns::agree::Fixture;
use libfuzzer_sys::fuzz_target;

static FIXTURE: LazyLock<Fixture> = LazyLock::new(aliasd_fuzz::fixture);

fuzz_target!(|packet: &[u8]| {
    let id = |i: usize| packet.get(i).copied().unwrap_or(0);
    let src = SocketAddr::from((Ipv4Addr::new(127, 0, id(0), id(1)), 5353));
    if let Err(e) = FIXTURE.check_from(packet, src) {
        panic!("{e}");
    }
});
