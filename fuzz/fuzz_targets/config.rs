//! Config text through `Config::parse` (TOML, then every check), and what it accepts through
//! the whole start-up render: state, topology, the DNS snapshot and every alias's API view.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use aliasd::config::Config;
use libfuzzer_sys::fuzz_target;

static DIR: LazyLock<(tempfile::TempDir, PathBuf)> = LazyLock::new(|| {
    let dir = aliasd_fuzz::scratch();
    std::fs::write(dir.path().join("internal.zone"), aliasd_fuzz::ZONE).unwrap();
    let path = dir.path().join("aliasd.toml");
    (dir, path)
});

fuzz_target!(|bytes: &[u8]| {
    let (_, path) = &*DIR;
    let text = String::from_utf8_lossy(bytes);
    let env = |name: &str| (name == "ALIASD_FUZZ_TOKEN").then(|| "s3cret-token-value".to_owned());
    match Config::parse(&text, path, &env) {
        Ok(config) => {
            aliasd_fuzz::render(&config, None);
        }
        Err(e) => {
            assert!(!e.problems.is_empty(), "refused without a reason");
            for problem in &e.problems {
                assert!(!problem.trim().is_empty(), "an empty problem in {e:?}");
            }
        }
    }
});
