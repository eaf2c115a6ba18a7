//! Fixtures for the unit tests (compiled only for them): a directory of zone files in which
//! config text is parsed as `aliasd.toml`, and the head every test config shares, so each test
//! writes only the services, aliases and settings it is about.

use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError};
use crate::model::ServiceName;
use crate::registry::Base;
use crate::state::{OpKind, Operation, PromoteOptions};

/// The smallest `internal.` zone a config can name: its SOA (serial 7, negative TTL 5), NS and
/// the name server's address.
pub const ZONE: &str = "\
$TTL 300
@   IN SOA ns1.internal. hostmaster.internal. ( 7 3600 600 86400 5 )
    IN NS  ns1.internal.
ns1 IN A   127.0.0.1
";

/// The `example.` zone of the tests with a second zone.
pub const EXAMPLE_ZONE: &str = "\
$TTL 300
@   IN SOA ns1.example. hostmaster.example. ( 100 3600 600 86400 5 )
    IN NS  ns1.example.
ns1 IN A   127.0.0.1
";

/// A small valid config in `internal.`: `web-v1` and `web-v2`, and `web` linked to `web-v1`.
/// Tests change one thing in it.
pub const BASE: &str = r#"[dns]
listen = ["127.0.0.1:5353"]

[[zone]]
origin = "internal."
file = "internal.zone"

[state]
dir = "state"

[[service]]
name = "web-v1"
endpoints = ["10.0.0.1:8080"]

[[service]]
name = "web-v2"
endpoints = ["10.0.0.2:8080"]

[[alias]]
name = "web"
targets = ["web-v1"]
"#;

/// A temporary directory holding zone files; a config parsed here "lives" in it as
/// `aliasd.toml`, so its relative `file = "..."` paths find them.
pub struct ConfigDir {
    dir: tempfile::TempDir,
}

impl ConfigDir {
    /// A directory with these `(file name, text)` zone files.
    pub fn new(zones: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for (name, text) in zones {
            std::fs::write(dir.path().join(name), text).expect("write a zone file");
        }
        Self { dir }
    }

    /// A directory with [`ZONE`] as `internal.zone`.
    pub fn internal() -> Self {
        Self::new(&[("internal.zone", ZONE)])
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Where the config is taken to be.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("aliasd.toml")
    }

    /// `text` parsed as this directory's `aliasd.toml`, with no environment.
    pub fn try_parse(&self, text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, &self.path(), &|_| None)
    }

    /// `text` parsed; a test's config that does not parse is a bug in the test.
    pub fn parse(&self, text: &str) -> Config {
        self.try_parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The registry's base of `text`.
    pub fn base(&self, text: &str) -> Base {
        Base::from_config(&self.parse(text))
    }
}

/// A config: `[dns]` listening on `listen` (a TOML array) with `dns` lines added, the
/// `internal.` zone from `internal.zone`, state in `state/`, then `rest`.
pub fn config(listen: &str, dns: &str, rest: &str) -> String {
    format!(
        "[dns]\nlisten = {listen}\n{dns}\n[[zone]]\norigin = \"internal.\"\nfile = \"internal.zone\"\n\
         \n[state]\ndir = \"state\"\n\n{rest}"
    )
}

/// A `[[service]]` table.
pub fn service(name: &str, endpoints: &[&str]) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nendpoints = [{}]\n",
        quoted(endpoints)
    )
}

/// An `[[alias]]` table.
pub fn alias(name: &str, targets: &[&str]) -> String {
    format!(
        "[[alias]]\nname = \"{name}\"\ntargets = [{}]\n",
        quoted(targets)
    )
}

/// A promotion started by `deploy` at revision `id` and `started_at_ms`, from `from` to `to`,
/// with the gates the tests share: a 10 s observe window, a 60 s warm timeout, no confirm and
/// no `min_healthy`. A test about one gate changes it in the value returned.
pub fn promotion(id: u64, from: &[&str], to: &[&str], started_at_ms: u64) -> Operation {
    let services = |names: &[&str]| -> Vec<ServiceName> {
        names
            .iter()
            .map(|n| n.parse().expect("a service name"))
            .collect()
    };
    Operation {
        salt: String::new(),
        id,
        kind: OpKind::Promote,
        from: services(from),
        to: services(to),
        options: PromoteOptions {
            steps: Vec::new(),
            gates: Default::default(),
            stop_old: false,
            observe_ms: 10_000,
            confirm: false,
            min_healthy: None,
            warm_timeout_ms: 60_000,
        },
        actor: "deploy".into(),
        reason: None,
        started_at_ms,
    }
}

fn quoted(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ")
}
