//! What the two UDP answer paths must agree on, and a zone to check them with.
//!
//! The fast path (`fast`) answers the common queries itself; hickory's `Catalog` (`slow`)
//! answers everything. For every packet the fast path answers, the full path must give the
//! same answer: the same header flags and response code, the question with its case, the same
//! records in each section, the same EDNS. The property tests and the `dns_udp` fuzz target
//! (`fuzz/`) both check it with [`Fixture::check`], on the zone and aliases of [`Fixture::new`].
//!
//! The client's address is part of the input: the alias `canary` is in a weighted step
//! ([`CANARY_WEIGHT`] percent of the clients on `web-v2`), so both paths must also put every
//! client on the same side ([`Fixture::check_from`]).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::model::AliasName;
use crate::state::{OpKind, Operation, Phase, PromoteOptions, State, StepAt};

use arc_swap::ArcSwap;
use hickory_proto::op::Message;
use hickory_proto::rr::{LowerName, Name};
use hickory_server::zone_handler::Catalog;

use super::fast::{self, Fast};
use super::slow;
use crate::config::Config;
use crate::snapshot::{HealthMap, LastGood, SharedSnapshot, Snapshot};

/// Static records of every kind the fast path serves, and some it leaves to the full path.
pub const ZONE: &str = r#"$TTL 300
@          IN SOA   ns1.internal. hostmaster.internal. ( 7 3600 600 86400 5 )
           IN NS    ns1.internal.
ns1        IN A     127.0.0.1
db         IN A     10.0.0.9
db         IN AAAA  fd00::9
db         IN TXT   "the database"
mail       IN MX    10 db.internal.
www        IN CNAME db
to-web     IN CNAME web
host.rack1 IN A     10.0.0.10
"#;

/// The share of clients (percent) on the new side of the `canary` alias.
pub const CANARY_WEIGHT: u8 = 50;

/// Aliases of each shape: several endpoints with IPv6, none, an SRV port name, one too big for
/// a 512-byte answer, and one in a weighted step (`canary`, see [`step_canary`]).
pub fn config() -> String {
    let big: Vec<String> = (0..60)
        .map(|i| format!("\"10.1.0.{}:8080\"", i + 1))
        .collect();
    format!(
        r#"[dns]
listen = ["127.0.0.1:5353"]
alias_ttl = 5
negative_ttl = 7
[[zone]]
origin = "internal."
file = "internal.zone"
[state]
dir = "state"
[health]
kind = "none"
[[service]]
name = "web-v1"
endpoints = ["10.0.0.1:8080", "10.0.0.2:8080", "[fd00::2]:8080"]
[[service]]
name = "idle"
endpoints = []
[[service]]
name = "big"
endpoints = [{}]
[[alias]]
name = "web"
targets = ["web-v1"]
[[alias]]
name = "idle"
targets = ["idle"]
[[alias]]
name = "api.svc"
targets = ["web-v1"]
port_name = "grpc"
[[alias]]
name = "big"
targets = ["big"]
[[service]]
name = "web-v2"
endpoints = ["10.0.0.3:8080", "10.0.0.4:8080", "[fd00::3]:8080"]
[[alias]]
name = "canary"
targets = ["web-v1"]
"#,
        big.join(", ")
    )
}

/// The zone and aliases above as one snapshot, the `Catalog` serving it, and a runtime to run
/// the full path on.
pub struct Fixture {
    /// The parsed [`config`], its zone loaded.
    pub config: Config,
    pub runtime: tokio::runtime::Runtime,
    pub snapshots: SharedSnapshot,
    pub catalog: Catalog,
}

/// `state` with the alias `canary` promoting from `web-v1` to `web-v2` in a weighted step of
/// [`CANARY_WEIGHT`] percent.
pub fn step_canary(state: &mut State) {
    let name = AliasName::from_fqdn(&Name::from_ascii("canary.internal.").expect("a name"));
    let Some(canary) = state.aliases.get_mut(&name) else {
        return;
    };
    let op = Operation {
        id: 2,
        kind: OpKind::Promote,
        from: canary.targets.clone(),
        to: vec!["web-v2".parse().expect("a service name")],
        options: PromoteOptions {
            observe_ms: 10_000,
            confirm: false,
            min_healthy: None,
            warm_timeout_ms: 60_000,
            stop_old: false,
            steps: Vec::new(),
            gates: Default::default(),
        },
        actor: "agree".into(),
        reason: None,
        started_at_ms: 1,
        salt: "agree".into(),
    };
    canary.phase = Phase::Mixed {
        op,
        since_ms: 1,
        observe_until_ms: 2,
        confirmed: false,
        step: Some(StepAt {
            index: 0,
            weight: CANARY_WEIGHT,
            since_ms: 1,
            effective_ms: None,
            confirmed: false,
        }),
    };
}

impl Fixture {
    /// `first` gives the first state and snapshot of the parsed config, as the writer makes
    /// them at start (`controller::first_render`); DNS sits below the writer, so the caller
    /// brings it. The fixture then puts `canary` in a weighted step ([`step_canary`]).
    pub fn new(first: impl FnOnce(&Config) -> (State, Snapshot)) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("internal.zone"), ZONE).expect("the zone file");
        let config = Config::parse(&config(), &dir.path().join("aliasd.toml"), &|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        let (mut state, first) = first(&config);
        step_canary(&mut state);
        let snapshot = Snapshot::render(
            first.generation + 1,
            first.topology.clone(),
            &state,
            &HealthMap::new(),
            &LastGood::new(),
            first.sources.clone(),
        );
        let snapshots: SharedSnapshot = Arc::new(ArcSwap::from_pointee(snapshot));
        let origin = LowerName::from(Name::from_ascii("internal.").expect("origin"));
        let catalog = super::catalog(&[origin], &snapshots, false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        Self {
            config,
            runtime,
            snapshots,
            catalog,
        }
    }

    /// Both paths on one packet: `Ok(true)` when the fast path answered and the full path
    /// agreed, `Ok(false)` when the fast path declined, `Err` saying how they differ.
    pub fn check(&self, packet: &[u8]) -> Result<bool, String> {
        self.check_from(packet, "127.0.0.1:5353".parse().expect("address"))
    }

    /// [`Fixture::check`] for a packet from `src`.
    pub fn check_from(&self, packet: &[u8], src: SocketAddr) -> Result<bool, String> {
        let mut out = Vec::new();
        let answered = fast::answer(&self.snapshots.load(), packet, src.ip(), &mut out);
        let full = self
            .runtime
            .block_on(slow::respond(&self.catalog, packet, src));
        if let Some(full) = &full {
            meaning(full).map_err(|e| format!("the full path's answer: {e}"))?;
        }
        if answered == Fast::Declined {
            return Ok(false);
        }
        let full = full.ok_or("the full path gave no answer where the fast path did")?;
        let (fast_says, full_says) = (meaning(&out)?, meaning(&full)?);
        if fast_says != full_says {
            return Err(format!(
                "for packet {packet:02x?} from {src}\nfast path: {fast_says}\nfull path: {full_says}"
            ));
        }
        // The question comes back as the client wrote it, case and all.
        let asked = Message::from_vec(packet).map_err(|e| e.to_string())?;
        let got = Message::from_vec(&out).map_err(|e| e.to_string())?;
        let name = |m: &Message| m.queries.first().map(|q| q.name().to_ascii());
        if name(&asked) != name(&got) {
            return Err(format!(
                "the question came back as {:?}, asked as {:?}",
                name(&got),
                name(&asked)
            ));
        }
        Ok(true)
    }
}

/// The parts of a response that must agree, as comparable text; `Err` when it does not parse.
pub fn meaning(bytes: &[u8]) -> Result<String, String> {
    let m = Message::from_vec(bytes).map_err(|e| format!("a response that does not parse: {e}"))?;
    let md = &m.metadata;
    let section = |records: &[hickory_proto::rr::Record]| {
        records
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {:?}",
                    r.name.to_ascii().to_lowercase(),
                    r.ttl,
                    r.record_type(),
                    r.data
                )
            })
            .collect::<BTreeSet<_>>()
    };
    let queries: Vec<String> = m
        .queries
        .iter()
        .map(|q| {
            format!(
                "{} {} {}",
                q.name().to_ascii(),
                q.query_type(),
                q.query_class()
            )
        })
        .collect();
    Ok(format!(
        "id={} qr={:?} op={:?} aa={} tc={} rd={} ra={} ad={} cd={} rcode={:?}\nq={queries:?}\nan={:?}\nns={:?}\nar={:?}\nedns={:?}",
        md.id,
        md.message_type,
        md.op_code,
        md.authoritative,
        md.truncation,
        md.recursion_desired,
        md.recursion_available,
        md.authentic_data,
        md.checking_disabled,
        md.response_code,
        section(&m.answers),
        section(&m.authorities),
        section(&m.additionals),
        m.edns.as_ref().map(|e| (
            e.max_payload(),
            e.version(),
            e.flags().dnssec_ok,
            e.options().as_ref().len()
        )),
    ))
}
