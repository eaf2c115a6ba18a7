//! Zone file text through aliasd's zone reader (hickory's parser, then aliasd's checks). It may
//! refuse, naming the file, but never panic, hang or read without bound.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use aliasd::zonefile::StaticZone;
use hickory_proto::rr::Name;
use libfuzzer_sys::fuzz_target;

static DIR: LazyLock<(tempfile::TempDir, PathBuf, Name)> = LazyLock::new(|| {
    let dir = aliasd_fuzz::scratch();
    let path = dir.path().join("fuzz.zone");
    (dir, path, Name::from_ascii("internal.").unwrap())
});

fuzz_target!(|bytes: &[u8]| {
    let (_, path, origin) = &*DIR;
    let text = String::from_utf8_lossy(bytes);
    match StaticZone::parse(&text, path, origin) {
        Ok(zone) => {
            for name in &zone.names {
                assert!(
                    origin.zone_of(&Name::from(name)),
                    "{name} is outside the zone"
                );
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.starts_with(&path.display().to_string()),
                "an error that does not name the file: {message}"
            );
        }
    }
});
