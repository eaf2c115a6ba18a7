//! A DNS packet through both UDP answer paths: the fast path and hickory's `Catalog`. Neither
//! may panic, every answer must parse, and where the fast path answers, the full path must give
//! the same answer (`aliasd::dns::agree`).
#![no_main]

use std::sync::LazyLock;

use aliasd::dns::agree::Fixture;
use libfuzzer_sys::fuzz_target;

static FIXTURE: LazyLock<Fixture> = LazyLock::new(aliasd_fuzz::fixture);

fuzz_target!(|packet: &[u8]| {
    if let Err(e) = FIXTURE.check(packet) {
        panic!("{e}");
    }
});
