//! Every example file shipped in `config/`, `zones/` and `examples/compose/` is a test fixture:
//! each must parse.

use std::path::{Path, PathBuf};

use aliasd::config::Config;
use aliasd::zonefile::StaticZone;
use hickory_proto::rr::Name;

fn files_in(dir: &str, ext: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.{ext} in {dir}/");
    files
}

#[test]
fn every_config_file_parses() {
    let mut paths = files_in("config", "toml");
    paths.extend(files_in("examples/compose", "toml"));
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        // Tokens that come from the environment get a stand-in value.
        let config = Config::parse(&text, &path, &|_| Some("a-stand-in-secret-0123".into()))
            .unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
        assert!(!config.aliases.is_empty(), "{}: no aliases", path.display());
    }
}

#[test]
fn every_zone_file_parses() {
    let mut paths = files_in("zones", "zone");
    paths.extend(files_in("examples/compose", "zone"));
    for path in paths {
        // `internal.zone` holds the zone `internal.`.
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let origin = Name::from_ascii(format!("{stem}.")).unwrap();
        let zone =
            StaticZone::load(&path, &origin).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(zone.serial > 0, "{}", path.display());
    }
}
