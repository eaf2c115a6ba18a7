//! What the fuzz targets share: a scratch directory, and the pipeline from a config and a
//! stored state to every view aliasd serves, so a target checks that whatever it could load
//! also renders.

use std::path::Path;

use aliasd::api::dto::{AliasDto, ServiceDto};
use aliasd::config::Config;
use aliasd::controller::{Busy, first_render};
use aliasd::dns::agree::Fixture;
use aliasd::health::HealthBoard;
use aliasd::registry::Base;
use aliasd::secondaries::Secondaries;
use aliasd::snapshot::Snapshot;
use aliasd::state::StoredState;

/// No front proxy: the alias views show no open work.
struct NoProxy;

impl Busy for NoProxy {
    fn inflight(&self, _endpoints: &[aliasd::model::Endpoint]) -> u64 {
        0
    }
}

/// A fresh directory, in memory where the machine has `/dev/shm`.
pub fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("a directory in /dev/shm")
    } else {
        tempfile::tempdir().expect("a temporary directory")
    }
}

/// The DNS fixture (`aliasd::dns::agree`), its first snapshot rendered as aliasd does at start.
pub fn fixture() -> Fixture {
    Fixture::new(|config| first_render(&Base::from_config(config), None, 1))
}

/// The zone file the targets' configs name.
pub const ZONE: &str = aliasd::dns::agree::ZONE;

/// Renders `config` with `stored` as aliasd does at start: the state, the topology, the
/// snapshot DNS answers from, and every alias as the API shows it. Panics if any of it fails:
/// what aliasd accepted must render.
pub fn render(config: &Config, stored: Option<&StoredState>) -> Snapshot {
    let (_, snapshot) = first_render(&Base::from_config(config), stored, 1_700_000_000_000);
    let board = HealthBoard::default();
    for view in snapshot.aliases.values() {
        let dto = AliasDto::from_view(view, &snapshot, &board, &NoProxy, &Secondaries::default());
        serde_json::to_string(&dto).expect("an alias view serializes");
    }
    for (name, service) in &snapshot.topology.services {
        let dto = ServiceDto::from_service(name, service, &snapshot, &board);
        serde_json::to_string(&dto).expect("a service view serializes");
    }
    snapshot
}
