//! The configuration file: serde types that mirror the TOML, and validation into [`Config`].
//!
//! Every error names the file and the line and column (or the key) and says what is wrong.
//! Validation collects all the problems it can find so an operator fixes them in one pass.
//! Loading a config also loads and checks its zone files, so `aliasd check` covers both.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::bounds;
use crate::check::{CheckConfig, CheckKind, parse_status_range};
use crate::model::{AliasName, Endpoint, ServiceName, parse_dns_name};
use crate::model::{check_port_name, place_alias};
use crate::zonefile::{StaticZone, ZoneError};

pub use crate::check::parse_duration;

/// Default TTL of alias answers: short, so clients follow a relink quickly.
pub const DEFAULT_ALIAS_TTL: u32 = 5;
/// Default TTL of negative answers (the SOA minimum), low for the same reason.
pub const DEFAULT_NEGATIVE_TTL: u32 = 5;
/// RFC 2181: TTLs are 31-bit values.
const MAX_TTL: u32 = i32::MAX as u32;
/// RFC 2308 section 5: negative caching above three hours is not useful.
const MAX_NEGATIVE_TTL: u32 = 3 * 3600;
const MIN_TOKEN_LEN: usize = 16;
/// The shortest TSIG secret accepted, in bytes (RFC 8945 section 6: at least the MAC's length
/// is recommended; 16 keeps out typos and toys).
const MIN_TSIG_SECRET: usize = 16;

/// A secondary's address: `ip:port`, or an `ip` alone for port 53.
fn parse_server_address(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    text.parse::<SocketAddr>()
        .or_else(|_| {
            text.parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .map_err(|_| format!("`{text}` is not an address (such as 10.0.0.5 or 10.0.0.5:53)"))
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub source: PathBuf,
    pub dns: DnsConfig,
    pub zones: Vec<StaticZone>,
    /// Zone transfers and NOTIFY, one entry per zone (in the order of `zones`).
    pub transfers: Vec<ZoneTransfer>,
    /// `[[tsig_key]]`: keys that secondaries sign transfer requests with.
    pub tsig_keys: Vec<TsigKey>,
    pub api: ApiConfig,
    /// Where the durable state lives.
    pub state_dir: PathBuf,
    pub services: BTreeMap<ServiceName, ServiceConfig>,
    pub aliases: BTreeMap<AliasName, AliasConfig>,
    /// How many health checks may run at once.
    pub health_concurrency: usize,
    pub promotion: PromotionDefaults,
    /// `[history]`: how much history is kept.
    pub history: Retention,
    /// The front proxies (`[[proxy]]`), in file order.
    pub proxies: Vec<ProxyConfig>,
    /// The `[health]` defaults, as a check: what a service without its own settings gets.
    pub default_check: CheckConfig,
    /// Docker discovery, when `[docker] enabled = true`.
    pub docker: Option<DockerConfig>,
    /// `[cluster]`: the etcd cluster this node joins; `None` runs a single node.
    pub cluster: Option<ClusterConfig>,
}

/// `[cluster]`: how this node joins the others through etcd.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The etcd endpoints, `http://host:port` or `https://host:port` (all of one scheme).
    pub etcd: Vec<String>,
    /// This node's name among the others: `[a-z0-9-_.]{1,63}`.
    pub node: String,
    /// Where the other nodes reach this node's API (its port is the one of `api.listen`).
    pub advertise: IpAddr,
    /// The etcd key prefix everything of this cluster lives under: `/`-led, no trailing `/`.
    pub prefix: String,
    /// The TTL of this node's etcd lease: whole seconds, 2 to 60.
    pub lease_ttl: Duration,
    pub username: Option<String>,
    /// Read from `password_env` at load; set exactly when `username` is.
    pub password: Option<String>,
    /// The CA that signed the etcd servers' certificates (set exactly when the URLs are https).
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key (both or neither; only with https).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl ClusterConfig {
    pub const DEFAULT_PREFIX: &str = "/aliasd";
    pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);
    /// etcd leases are whole seconds; below 2 s one missed keep-alive loses the lease.
    pub const LEASE_TTL: bounds::DurationRange =
        bounds::DurationRange::new(Duration::from_secs(2), Duration::from_secs(60));
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("etcd", &self.etcd)
            .field("node", &self.node)
            .field("advertise", &self.advertise)
            .field("prefix", &self.prefix)
            .field("lease_ttl", &self.lease_ttl)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish()
    }
}

/// Who may transfer a zone, and whom aliasd tells of its changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ZoneTransfer {
    pub secondaries: Vec<Secondary>,
    /// More sources allowed to transfer the zone (without a key), besides the secondaries.
    pub allow: Vec<ipnet::IpNet>,
}

impl ZoneTransfer {
    /// Whether anyone may transfer the zone.
    pub fn is_enabled(&self) -> bool {
        !self.secondaries.is_empty() || !self.allow.is_empty()
    }
}

/// A secondary server of a zone: it may transfer the zone from its address (with its key, if
/// it has one) and is sent NOTIFY on every serial change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secondary {
    pub address: SocketAddr,
    pub notify: bool,
    /// The `[[tsig_key]]` name its requests must be signed with.
    pub tsig_key: Option<hickory_proto::rr::Name>,
}

/// A TSIG key (hmac-sha256).
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    /// Lower-case, fully qualified, as on the wire.
    pub name: hickory_proto::rr::Name,
    pub secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// `[docker]`: where the daemon is and how containers are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerConfig {
    pub host: DockerHost,
    /// Labels are `<prefix>service`, `<prefix>port`, ...
    pub label_prefix: String,
    /// The container network whose address is used; `None` means the container's only one.
    pub network: Option<String>,
    /// `labels`: only containers carrying every one of these are discovered; `(key, None)`
    /// asks for the label with any value.
    pub labels: Vec<(String, Option<String>)>,
    /// Which address an endpoint gets, unless a container's `<prefix>address` label says.
    pub address: DockerAddress,
}

/// Which address a container's endpoint gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DockerAddress {
    /// The container's own address on its network (reachable from this host, or the network).
    #[default]
    Container,
    /// This node's `[cluster] advertise` address and the host port that publishes the
    /// container's `<prefix>port`, so that other hosts reach it.
    Host,
}

impl DockerAddress {
    pub const CHOICES: &str = "container, host";

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "container" => Some(Self::Container),
            "host" => Some(Self::Host),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Container => "container",
            Self::Host => "host",
        }
    }
}

/// How to reach the Docker API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerHost {
    Unix(PathBuf),
    /// `tcp://host:port` or `http://host:port`, as an `http://` URL.
    Http(String),
}

impl fmt::Display for DockerHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix://{}", p.display()),
            Self::Http(u) => f.write_str(u),
        }
    }
}

impl DockerConfig {
    pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
    pub const DEFAULT_LABEL_PREFIX: &str = "aliasd.";
}

/// How a front proxy forwards what it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Per request, HTTP/1.1 and HTTP/2 from clients, HTTP/1.1 to the members.
    Http,
    /// Per connection, bytes copied both ways.
    Tcp,
}

/// One `[[proxy]]`: a listener that forwards to the members an alias answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub alias: AliasName,
    pub mode: ProxyMode,
    /// How long a connect to a member may take before another member is tried.
    pub connect_timeout: Duration,
    /// Client connections with nothing in flight and no bytes moving are closed after this.
    pub idle_timeout: Duration,
    /// HTTP: how long a member may take to answer (the response head); then 504.
    pub request_timeout: Duration,
    /// HTTP: pooled member connections idle this long are closed, before the member's own
    /// keep-alive timeout can close them under a request.
    pub backend_idle_timeout: Duration,
    /// TCP: connections to a member that left the answers are closed this long after it left.
    pub drain_deadline: Duration,
    /// Client connections open at once. At the cap the oldest idle one (HTTP: nothing in
    /// flight) is closed to make room; only when all are busy do new ones wait in the backlog.
    pub max_connections: usize,
    /// HTTP/1: a request head must arrive within this of the connection being ready for it
    /// (also bounds how long a keep-alive connection waits for its next request).
    pub header_timeout: Duration,
    /// HTTP: where a proxy behind another balancer reads the client's address, which puts the
    /// client on a side of a weighted step; `None`: the peer's address.
    pub client_header: Option<ClientHeader>,
    /// HTTP: plain HTTP/1.1 requests take aliasd's own path (`true`, the default); `false`
    /// sends every request through the general path (hyper), as before that path existed.
    pub fast_path: bool,
}

/// A request header that names the client (`client_header`), believed only from `trusted`
/// peers. Its value must be one IP address; otherwise the peer's address counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHeader {
    /// The header's name, lowercase (a valid HTTP field name).
    pub name: String,
    /// The peers (the balancers in front) whose header is believed.
    pub trusted: Vec<ipnet::IpNet>,
}

impl ClientHeader {
    /// Whether a request from `peer` may name its client.
    pub fn trusts(&self, peer: std::net::IpAddr) -> bool {
        let peer = match peer {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, std::net::IpAddr::V4),
            v4 => v4,
        };
        self.trusted.iter().any(|net| net.contains(&peer))
    }
}

impl ProxyConfig {
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
    /// Below the 5 s keep-alive timeout common in backends (nginx, Node), so the proxy closes
    /// an idle connection before the member does.
    pub const DEFAULT_BACKEND_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
    pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(30);
    pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
}

/// How much history is kept (`[history]`): per alias (and per service, and of the config's
/// own entries) the newest `keep_per_alias` entries, of those the ones younger than `max_age`,
/// and always the newest one, which carries the revision the next change continues from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub keep_per_alias: usize,
    pub max_age: Duration,
}

impl Retention {
    pub const DEFAULT_KEEP: usize = 1000;
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(365 * 24 * 3600);
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep_per_alias: Self::DEFAULT_KEEP,
            max_age: Self::DEFAULT_MAX_AGE,
        }
    }
}

/// Defaults for promotions that the request does not set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionDefaults {
    /// How long both versions answer before the old one starts draining.
    pub observe: Duration,
    /// How long the new version has to become healthy.
    pub warm_timeout: Duration,
    /// Added to the TTL window before the old version is declared safe to stop.
    pub drain_grace: Duration,
}

impl Default for PromotionDefaults {
    fn default() -> Self {
        Self {
            observe: Duration::from_secs(10),
            warm_timeout: Duration::from_secs(120),
            drain_grace: Duration::from_secs(2),
        }
    }
}

/// What an alias answers when none of its endpoints is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IfNoneHealthy {
    /// Keep answering the last non-empty healthy set (the default).
    LastKnownGood,
    /// Answer every endpoint (fail open).
    All,
    /// Answer nothing (fail closed).
    None,
}

impl IfNoneHealthy {
    pub const CHOICES: &str = "last-known-good, all, none";

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "last-known-good" => Some(Self::LastKnownGood),
            "all" => Some(Self::All),
            "none" => Some(Self::None),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LastKnownGood => "last-known-good",
            Self::All => "all",
            Self::None => "none",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Each address is served over both UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// UDP sockets per address, bound with SO_REUSEPORT so every core serves.
    pub udp_sockets: usize,
    pub alias_ttl: u32,
    pub negative_ttl: u32,
    pub tcp_idle_timeout: Duration,
    /// DNS-over-TCP connections open at once per address; at the cap the oldest idle one
    /// (no query in flight) is closed to make room.
    pub tcp_max_connections: usize,
    pub log_queries: bool,
}

impl DnsConfig {
    pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_TCP_MAX_CONNECTIONS: usize = 10_000;
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub tokens: Vec<ApiToken>,
    /// Connections open at once; at the cap the oldest idle one is closed to make room.
    pub max_connections: usize,
    /// A request head must arrive within this (also bounds a keep-alive wait).
    pub header_timeout: Duration,
    /// Connections with nothing in flight and no bytes moving are closed after this.
    pub idle_timeout: Duration,
}

impl ApiConfig {
    pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
}

/// A named bearer token. The name is the actor recorded for changes made with it.
#[derive(Clone)]
pub struct ApiToken {
    pub name: String,
    pub secret: String,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub endpoints: Vec<Endpoint>,
    pub check: CheckConfig,
}

#[derive(Debug, Clone)]
pub struct AliasConfig {
    /// Index into [`Config::zones`] of the zone that holds the alias.
    pub zone: usize,
    /// The services linked when no stored state says otherwise.
    pub targets: Vec<ServiceName>,
    /// SRV records live at `_<port_name>._tcp.<alias>`.
    pub port_name: String,
    pub if_none_healthy: IfNoneHealthy,
}

/// Everything wrong with a config, one problem a line.
#[derive(Debug)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("\n"))
    }
}

impl std::error::Error for ConfigError {}

impl From<ZoneError> for ConfigError {
    fn from(e: ZoneError) -> Self {
        Self {
            problems: vec![e.to_string()],
        }
    }
}

// ---- the TOML as written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    dns: RawDns,
    #[serde(rename = "zone")]
    zones: Vec<RawZone>,
    #[serde(default)]
    api: RawApi,
    /// Required but on a cluster's node, which keeps its state in etcd.
    state: Option<RawState>,
    #[serde(default, rename = "service")]
    services: Vec<RawService>,
    #[serde(default, rename = "alias")]
    aliases: Vec<RawAlias>,
    #[serde(default, rename = "tsig_key")]
    tsig_keys: Vec<RawTsigKey>,
    #[serde(default)]
    health: RawHealth,
    #[serde(default)]
    promotion: RawPromotion,
    #[serde(default)]
    history: RawHistory,
    #[serde(default, rename = "proxy")]
    proxies: Vec<RawProxy>,
    #[serde(default)]
    docker: Option<RawDocker>,
    #[serde(default)]
    cluster: Option<Spanned<RawCluster>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    #[serde(default)]
    etcd: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    node: Option<Spanned<String>>,
    #[serde(default)]
    advertise: Option<Spanned<String>>,
    #[serde(default)]
    prefix: Option<Spanned<String>>,
    #[serde(default)]
    lease_ttl: Option<Spanned<RawDuration>>,
    #[serde(default)]
    username: Option<Spanned<String>>,
    #[serde(default)]
    password_env: Option<Spanned<String>>,
    #[serde(default)]
    ca_file: Option<Spanned<String>>,
    #[serde(default)]
    cert_file: Option<Spanned<String>>,
    #[serde(default)]
    key_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocker {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    socket: Option<Spanned<String>>,
    #[serde(default)]
    label_prefix: Option<Spanned<String>>,
    #[serde(default)]
    network: Option<Spanned<String>>,
    #[serde(default)]
    labels: Vec<Spanned<String>>,
    #[serde(default)]
    address: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    listen: Spanned<String>,
    alias: Spanned<String>,
    #[serde(default)]
    mode: Option<Spanned<String>>,
    #[serde(default)]
    connect_timeout: Option<Spanned<RawDuration>>,
    #[serde(default)]
    idle_timeout: Option<Spanned<RawDuration>>,
    #[serde(default)]
    request_timeout: Option<Spanned<RawDuration>>,
    #[serde(default)]
    backend_idle_timeout: Option<Spanned<RawDuration>>,
    #[serde(default)]
    drain_deadline: Option<Spanned<RawDuration>>,
    #[serde(default)]
    max_connections: Option<Spanned<u64>>,
    #[serde(default)]
    header_timeout: Option<Spanned<RawDuration>>,
    #[serde(default)]
    client_header: Option<Spanned<String>>,
    #[serde(default)]
    trusted: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    fast_path: Option<bool>,
}

/// Health-check settings: the defaults in `[health]`, overrides in `[service.health]`.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    kind: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    expect: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    interval: Option<Spanned<RawDuration>>,
    timeout: Option<Spanned<RawDuration>>,
    rise: Option<Spanned<u64>>,
    fall: Option<Spanned<u64>>,
    /// Only in `[health]`: how many checks run at once.
    concurrency: Option<Spanned<u64>>,
}

impl RawHealth {
    /// `self` with every unset field taken from `defaults`.
    fn over(&self, defaults: &RawHealth) -> RawHealth {
        fn pick<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
            a.clone().or_else(|| b.clone())
        }
        RawHealth {
            kind: pick(&self.kind, &defaults.kind),
            path: pick(&self.path, &defaults.path),
            expect: pick(&self.expect, &defaults.expect),
            host: pick(&self.host, &defaults.host),
            interval: pick(&self.interval, &defaults.interval),
            timeout: pick(&self.timeout, &defaults.timeout),
            rise: pick(&self.rise, &defaults.rise),
            fall: pick(&self.fall, &defaults.fall),
            concurrency: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPromotion {
    observe: Option<Spanned<RawDuration>>,
    warm_timeout: Option<Spanned<RawDuration>>,
    drain_grace: Option<Spanned<RawDuration>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHistory {
    keep_per_alias: Option<Spanned<i64>>,
    max_age: Option<Spanned<RawDuration>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    listen: Vec<Spanned<String>>,
    #[serde(default)]
    udp_sockets: Option<Spanned<u64>>,
    #[serde(default)]
    alias_ttl: Option<Spanned<RawDuration>>,
    #[serde(default)]
    negative_ttl: Option<Spanned<RawDuration>>,
    #[serde(default)]
    tcp_idle_timeout: Option<Spanned<RawDuration>>,
    #[serde(default)]
    tcp_max_connections: Option<Spanned<u64>>,
    #[serde(default)]
    log_queries: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZone {
    origin: Spanned<String>,
    file: Spanned<String>,
    #[serde(default)]
    secondaries: Vec<RawSecondary>,
    #[serde(default)]
    transfer_allow: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecondary {
    address: Spanned<String>,
    #[serde(default = "yes")]
    notify: bool,
    #[serde(default)]
    tsig_key: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTsigKey {
    name: Spanned<String>,
    #[serde(default)]
    algorithm: Option<Spanned<String>>,
    #[serde(default)]
    secret: Option<Spanned<String>>,
    #[serde(default)]
    secret_env: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    #[serde(default = "default_api_listen")]
    listen: Spanned<String>,
    #[serde(default, rename = "token")]
    tokens: Vec<RawToken>,
    #[serde(default)]
    max_connections: Option<Spanned<u64>>,
    #[serde(default)]
    header_timeout: Option<Spanned<RawDuration>>,
    #[serde(default)]
    idle_timeout: Option<Spanned<RawDuration>>,
}

impl Default for RawApi {
    fn default() -> Self {
        Self {
            listen: default_api_listen(),
            tokens: Vec::new(),
            max_connections: None,
            header_timeout: None,
            idle_timeout: None,
        }
    }
}

fn default_api_listen() -> Spanned<String> {
    Spanned::new(0..0, "127.0.0.1:5380".to_owned())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: Spanned<String>,
    #[serde(default)]
    secret: Option<Spanned<String>>,
    #[serde(default)]
    secret_env: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    dir: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<String>,
    endpoints: Vec<Spanned<String>>,
    #[serde(default)]
    health: Option<RawHealth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlias {
    name: Spanned<String>,
    targets: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    port_name: Option<Spanned<String>>,
    #[serde(default)]
    if_none_healthy: Option<Spanned<String>>,
}

/// A duration written as whole seconds (`5`) or a human string (`"5s"`, `"2m"`).
#[derive(Clone)]
enum RawDuration {
    Seconds(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("whole seconds (5) or a duration string (\"5s\", \"2m\")")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawDuration, E> {
                Ok(RawDuration::Seconds(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawDuration, E> {
                Ok(RawDuration::Seconds(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawDuration, E> {
                Ok(RawDuration::Text(v.to_owned()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl RawDuration {
    fn to_duration(&self) -> Result<Duration, String> {
        match self {
            Self::Seconds(s) if *s >= 0 => Ok(Duration::from_secs(*s as u64)),
            Self::Seconds(s) => Err(format!("{s} is negative")),
            Self::Text(t) => parse_duration(t),
        }
    }
}

// ---- loading and validation ----

/// What `aliasd check` makes of a config: the config, and what only the environment it was
/// checked in is missing (a secret's variable that is not set there).
///
/// `run` refuses what `warnings` names, so `config` is for reporting, not for serving, unless
/// `warnings` is empty: a token or TSIG key whose secret was missing is left out of it.
#[derive(Debug)]
pub struct Checked {
    pub config: Config,
    /// One line each, naming the file, line and column, like the problems of [`ConfigError`].
    pub warnings: Vec<String>,
}

/// Why a table has no secret (both already reported).
enum NoSecret {
    /// It sets neither or both of `secret` and `secret_env`.
    Invalid,
    /// Its `secret_env` names a variable that is not set.
    Unset,
}

/// How a `secret_env` that names an unset variable counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MissingSecret {
    /// A problem: `run` and reloads cannot serve without the secret.
    Refuse,
    /// A warning: `check` is often run where the secrets are not (a laptop, CI), and the file
    /// itself is fine.
    Warn,
}

impl Config {
    /// Reads, parses and validates the config at `path` and the zone files it names.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read_config(path)?;
        Self::parse(&text, path, &|name| std::env::var(name).ok())
    }

    /// What `aliasd check` does: [`Config::load`], except that a secret's environment variable
    /// that is not set is a warning, not a problem.
    pub fn check(path: &Path) -> Result<Checked, ConfigError> {
        let text = read_config(path)?;
        Self::parse_checked(&text, path, &|name| std::env::var(name).ok())
    }

    /// Parses config text. `path` names the file in messages and anchors relative paths;
    /// `env` looks up environment variables (a parameter so tests need not mutate the process).
    pub fn parse(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Self::parse_as(text, path, env, MissingSecret::Refuse).map(|checked| checked.config)
    }

    /// [`Config::parse`] as `aliasd check` does it: unset secret variables are warnings.
    pub fn parse_checked(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Checked, ConfigError> {
        Self::parse_as(text, path, env, MissingSecret::Warn)
    }

    fn parse_as(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        missing_secret: MissingSecret,
    ) -> Result<Checked, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let at = Locator::new(path, text);
            // A misspelt key can make serde fail far from it, or with a list of every key:
            // name the key where it is written, and what was probably meant.
            let keys = keys::key_problems(text);
            if !keys.is_empty() {
                return ConfigError {
                    problems: keys
                        .iter()
                        .map(|(span, message)| at.at(span, message))
                        .collect(),
                };
            }
            let message = e.message().trim_end_matches('\n').to_owned();
            ConfigError {
                problems: vec![match e.span() {
                    Some(span) => at.at(&span, &message),
                    None => format!("{}: {message}", path.display()),
                }],
            }
        })?;
        let mut v = Validator {
            at: Locator::new(path, text),
            base: path.parent().unwrap_or(Path::new(".")).to_owned(),
            problems: Vec::new(),
            reported: Vec::new(),
            missing_secret,
            warnings: Vec::new(),
            keys_without_secret: Vec::new(),
        };
        let config = v.config(raw, env);
        match config {
            Some(config) if v.problems.is_empty() => Ok(Checked {
                config,
                warnings: v.warnings,
            }),
            _ => Err(ConfigError {
                problems: v.problems,
            }),
        }
    }
}

fn read_config(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![format!("{}: cannot read config: {e}", path.display())],
    })
}

/// What of a config a reload cannot change: listeners, the set of zones, the state directory,
/// the proxies, Docker discovery, the cluster and check concurrency. Kept by the daemon between reloads
/// instead of the whole config (whose zones can be large).
#[derive(Debug, Clone, PartialEq)]
pub struct RestartKey {
    source: PathBuf,
    dns_listen: Vec<SocketAddr>,
    udp_sockets: usize,
    tcp_idle_timeout: Duration,
    tcp_max_connections: usize,
    log_queries: bool,
    origins: Vec<hickory_proto::rr::Name>,
    transfers: Vec<ZoneTransfer>,
    tsig_keys: Vec<TsigKey>,
    api_listen: SocketAddr,
    api_limits: (usize, Duration, Duration),
    state_dir: PathBuf,
    proxies: Vec<ProxyConfig>,
    docker: Option<DockerConfig>,
    cluster: Option<ClusterConfig>,
    health_concurrency: usize,
}

impl Config {
    pub fn restart_key(&self) -> RestartKey {
        RestartKey {
            source: self.source.clone(),
            dns_listen: self.dns.listen.clone(),
            udp_sockets: self.dns.udp_sockets,
            tcp_idle_timeout: self.dns.tcp_idle_timeout,
            tcp_max_connections: self.dns.tcp_max_connections,
            log_queries: self.dns.log_queries,
            origins: self.zones.iter().map(|z| z.origin.clone()).collect(),
            transfers: self.transfers.clone(),
            tsig_keys: self.tsig_keys.clone(),
            api_listen: self.api.listen,
            api_limits: (
                self.api.max_connections,
                self.api.header_timeout,
                self.api.idle_timeout,
            ),
            state_dir: self.state_dir.clone(),
            proxies: self.proxies.clone(),
            docker: self.docker.clone(),
            cluster: self.cluster.clone(),
            health_concurrency: self.health_concurrency,
        }
    }
}

impl RestartKey {
    /// The config file it came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// What differs between `self` (running) and `new` that a reload cannot apply.
    pub fn restart_needed(&self, new: &RestartKey) -> Vec<String> {
        let mut out = Vec::new();
        let mut differs = |what: &str, same: bool| {
            if !same {
                out.push(format!(
                    "{}: {what} changed, which takes a restart; nothing was applied",
                    new.source.display()
                ));
            }
        };
        differs("dns.listen", self.dns_listen == new.dns_listen);
        differs("dns.udp_sockets", self.udp_sockets == new.udp_sockets);
        differs(
            "dns.tcp_idle_timeout",
            self.tcp_idle_timeout == new.tcp_idle_timeout,
        );
        differs(
            "dns.tcp_max_connections",
            self.tcp_max_connections == new.tcp_max_connections,
        );
        differs("dns.log_queries", self.log_queries == new.log_queries);
        differs("the list of [[zone]] origins", self.origins == new.origins);
        differs(
            "a zone's secondaries or transfer_allow, or a [[tsig_key]]",
            self.transfers == new.transfers && self.tsig_keys == new.tsig_keys,
        );
        differs("api.listen", self.api_listen == new.api_listen);
        differs(
            "api.max_connections, api.header_timeout or api.idle_timeout",
            self.api_limits == new.api_limits,
        );
        differs("state.dir", self.state_dir == new.state_dir);
        differs("[[proxy]]", self.proxies == new.proxies);
        differs("[docker]", self.docker == new.docker);
        differs("[cluster]", self.cluster == new.cluster);
        differs(
            "health.concurrency",
            self.health_concurrency == new.health_concurrency,
        );
        out
    }
}

/// Turns byte spans into `file:line:column` prefixes.
struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl<'a> Locator<'a> {
    fn new(path: &'a Path, text: &'a str) -> Self {
        Self { path, text }
    }

    fn at(&self, span: &Range<usize>, message: &str) -> String {
        if span.start == 0 && span.end == 0 {
            return format!("{}: {message}", self.path.display());
        }
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        format!("{}:{line}:{column}: {message}", self.path.display())
    }
}

struct Validator<'a> {
    at: Locator<'a>,
    base: PathBuf,
    problems: Vec<String>,
    /// Where problems were reported, so a value inherited by many places is reported once.
    reported: Vec<Range<usize>>,
    missing_secret: MissingSecret,
    /// With [`MissingSecret::Warn`]: the secrets whose variables are not set.
    warnings: Vec<String>,
    /// TSIG keys left out for a missing secret, so a secondary that names one is not reported a
    /// second time, as naming no key.
    keys_without_secret: Vec<hickory_proto::rr::Name>,
}

impl Validator<'_> {
    fn err(&mut self, span: &Range<usize>, message: impl AsRef<str>) {
        let known = span.end > 0 && self.reported.contains(span);
        if !known {
            let line = self.at.at(span, message.as_ref());
            self.problems.push(line);
            self.reported.push(span.clone());
        }
    }

    /// The secret in the variable `var`, or `None` after reporting that it is not set: as a
    /// problem, or (for `aliasd check`) as a warning. `what` names the table for the message.
    fn secret_from_env(
        &mut self,
        var: &Spanned<String>,
        what: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<String> {
        if let Some(secret) = env(var.get_ref()) {
            return Some(secret);
        }
        match self.missing_secret {
            MissingSecret::Refuse => self.err(
                &var.span(),
                format!(
                    "{what}: environment variable `{}` is not set",
                    var.get_ref()
                ),
            ),
            MissingSecret::Warn => self.warnings.push(self.at.at(
                &var.span(),
                &format!(
                    "{what}: environment variable `{}` is not set here; `aliasd run` refuses to start without it",
                    var.get_ref()
                ),
            )),
        }
        None
    }

    /// The secret of a table that sets exactly one of `secret` and `secret_env` (`what` names
    /// the table, `name` is where to point at), with where it came from; or why there is none,
    /// after reporting it.
    fn secret(
        &mut self,
        secret: &Option<Spanned<String>>,
        secret_env: &Option<Spanned<String>>,
        name: &Spanned<String>,
        what: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(String, Range<usize>), NoSecret> {
        match (secret, secret_env) {
            (Some(s), None) => Ok((s.get_ref().clone(), s.span())),
            (None, Some(var)) => match self.secret_from_env(var, what, env) {
                Some(s) => Ok((s, var.span())),
                None => Err(NoSecret::Unset),
            },
            _ => {
                self.err(
                    &name.span(),
                    format!("{what}: set exactly one of `secret` and `secret_env`"),
                );
                Err(NoSecret::Invalid)
            }
        }
    }

    fn path(&self, text: &str) -> PathBuf {
        let p = Path::new(text);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        }
    }

    fn config(&mut self, raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Option<Config> {
        let dns = self.dns(&raw.dns);
        let zones = self.zones(&raw.zones);
        let tsig_keys = self.tsig_keys(&raw.tsig_keys, env);
        let transfers = raw
            .zones
            .iter()
            .map(|z| self.transfer(z, &tsig_keys))
            .collect();
        let api = self.api(&raw.api, env);
        let state_dir = match &raw.state {
            Some(state) if state.dir.get_ref().trim().is_empty() => {
                self.err(&state.dir.span(), "state.dir must not be empty");
                PathBuf::new()
            }
            Some(state) => self.path(state.dir.get_ref()),
            // A cluster's node keeps its state in etcd: it has no state directory.
            None if raw.cluster.is_some() => PathBuf::new(),
            None => {
                self.err(
                    &(0..0),
                    "the [state] table is missing: add `[state]` with `dir = \"/var/lib/aliasd\"` (where aliasd keeps its state; only a node of a [cluster] needs none)",
                );
                PathBuf::new()
            }
        };
        // The defaults are checked once on their own; services inherit what they do not set.
        let default_check = self.check(&raw.health, "health");
        let services = self.services(&raw.services, &raw.health, &default_check);
        let cluster = raw.cluster.as_ref().and_then(|c| self.cluster(c, env));
        let docker = raw
            .docker
            .as_ref()
            .and_then(|d| self.docker(d, env, raw.cluster.is_some()));
        let aliases = self.aliases(&raw.aliases, &zones, &services, docker.is_some());
        let health_concurrency = match &raw.health.concurrency {
            None => 256,
            Some(n) if (1..=65_536).contains(n.get_ref()) => *n.get_ref() as usize,
            Some(n) => {
                self.err(&n.span(), "health.concurrency must be between 1 and 65536");
                256
            }
        };
        let promotion = self.promotion(&raw.promotion);
        let history = self.history(&raw.history);
        let mut taken: Vec<(SocketAddr, &str)> = Vec::new();
        if let Some(a) = &api {
            taken.push((a.listen, "api.listen"));
        }
        if let Some(d) = &dns {
            taken.extend(d.listen.iter().map(|a| (*a, "dns.listen")));
        }
        let proxies = self.proxies(&raw.proxies, &zones, &aliases, &taken);
        Some(Config {
            source: self.at.path.to_owned(),
            dns: dns?,
            zones,
            transfers,
            tsig_keys,
            api: api?,
            state_dir,
            services,
            aliases,
            health_concurrency,
            promotion,
            history,
            proxies,
            default_check,
            docker,
            cluster,
        })
    }

    fn history(&mut self, raw: &RawHistory) -> Retention {
        let keep_per_alias = match &raw.keep_per_alias {
            None => Retention::DEFAULT_KEEP,
            Some(n) if (1..=bounds::MAX_HISTORY_KEEP as i64).contains(n.get_ref()) => {
                *n.get_ref() as usize
            }
            Some(n) => {
                self.err(
                    &n.span(),
                    format!(
                        "history.keep_per_alias must be between 1 and {} (got {})",
                        bounds::MAX_HISTORY_KEEP,
                        n.get_ref()
                    ),
                );
                Retention::DEFAULT_KEEP
            }
        };
        let max_age = self.duration(
            &raw.max_age,
            "history.max_age",
            Retention::DEFAULT_MAX_AGE,
            bounds::HISTORY_AGE,
        );
        Retention {
            keep_per_alias,
            max_age,
        }
    }

    /// `cluster`: whether a `[cluster]` table (which must set `advertise`) is there.
    fn docker(
        &mut self,
        raw: &RawDocker,
        env: &dyn Fn(&str) -> Option<String>,
        cluster: bool,
    ) -> Option<DockerConfig> {
        let host = match &raw.socket {
            Some(s) => match docker_host(s.get_ref()) {
                Ok(h) => h,
                Err(e) => {
                    self.err(&s.span(), format!("docker.socket: {e}"));
                    DockerHost::Unix(DockerConfig::DEFAULT_SOCKET.into())
                }
            },
            None => match env("DOCKER_HOST").filter(|h| !h.trim().is_empty()) {
                Some(h) => match docker_host(&h) {
                    Ok(h) => h,
                    Err(e) => {
                        self.problems.push(format!(
                            "{}: docker: the environment's DOCKER_HOST: {e}",
                            self.at.path.display()
                        ));
                        DockerHost::Unix(DockerConfig::DEFAULT_SOCKET.into())
                    }
                },
                None => DockerHost::Unix(DockerConfig::DEFAULT_SOCKET.into()),
            },
        };
        let label_prefix = match &raw.label_prefix {
            None => DockerConfig::DEFAULT_LABEL_PREFIX.to_owned(),
            Some(p) => {
                let text = p.get_ref();
                let ok = (1..=64).contains(&text.len())
                    && text
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'));
                if !ok {
                    self.err(
                        &p.span(),
                        format!("docker.label_prefix `{text}` must be 1 to 64 letters, digits, `.`, `-`, `_` or `/`"),
                    );
                }
                text.clone()
            }
        };
        let network = match &raw.network {
            None => None,
            Some(n) => {
                let text = n.get_ref().trim();
                if text.is_empty() || text.len() > 128 || text.chars().any(char::is_control) {
                    self.err(
                        &n.span(),
                        "docker.network must be a network name of 1 to 128 characters",
                    );
                }
                Some(text.to_owned())
            }
        };
        let mut labels: Vec<(String, Option<String>)> = Vec::new();
        for l in &raw.labels {
            match docker_label_filter(l.get_ref()) {
                Ok(f) if labels.contains(&f) => self.err(
                    &l.span(),
                    format!("docker.labels: `{}` is listed twice", l.get_ref()),
                ),
                Ok(f) => labels.push(f),
                Err(e) => self.err(&l.span(), format!("docker.labels: {e}")),
            }
        }
        let address = match &raw.address {
            None => DockerAddress::default(),
            Some(a) => match DockerAddress::parse(a.get_ref()) {
                Some(DockerAddress::Host) if !cluster => {
                    self.err(
                        &a.span(),
                        "docker.address = \"host\" makes endpoints of this node's advertise address and the containers' published ports, and there is no [cluster] advertise: set [cluster] advertise or use address = \"container\"",
                    );
                    DockerAddress::Container
                }
                Some(address) => address,
                None => {
                    self.err(
                        &a.span(),
                        format!(
                            "docker.address `{}` is not one of {}",
                            a.get_ref(),
                            DockerAddress::CHOICES
                        ),
                    );
                    DockerAddress::Container
                }
            },
        };
        raw.enabled.then_some(DockerConfig {
            host,
            label_prefix,
            network,
            labels,
            address,
        })
    }

    /// `[cluster]`, or `None` after reporting why not.
    fn cluster(
        &mut self,
        raw: &Spanned<RawCluster>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<ClusterConfig> {
        let table = raw.span();
        let raw = raw.get_ref();
        let before = self.problems.len();
        let mut etcd: Vec<String> = Vec::new();
        let mut tls = None;
        match &raw.etcd {
            None => self.err(
                &table,
                "cluster.etcd is missing: list the etcd endpoints, such as etcd = [\"http://10.0.0.1:2379\"]",
            ),
            Some(list) if list.get_ref().is_empty() => self.err(
                &list.span(),
                "cluster.etcd must name at least one endpoint, such as \"http://10.0.0.1:2379\"",
            ),
            Some(list) => {
                for url in list.get_ref() {
                    match etcd_url(url.get_ref()) {
                        Ok((_, text)) if etcd.contains(&text) => self.err(
                            &url.span(),
                            format!("cluster.etcd: `{text}` is listed twice"),
                        ),
                        Ok((https, text)) => {
                            if tls.is_some_and(|t| t != https) {
                                self.err(
                                    &url.span(),
                                    "cluster.etcd mixes http:// and https:// endpoints: use one scheme for all",
                                );
                            }
                            tls.get_or_insert(https);
                            etcd.push(text);
                        }
                        Err(e) => self.err(&url.span(), format!("cluster.etcd: {e}")),
                    }
                }
            }
        }
        let node = match &raw.node {
            Some(n) => {
                if let Err(e) = check_node_name(n.get_ref()) {
                    self.err(&n.span(), format!("cluster.node: {e}"));
                }
                n.get_ref().clone()
            }
            None => match host_name() {
                Ok(name) => match check_node_name(&name) {
                    Ok(()) => name,
                    Err(e) => {
                        self.err(
                            &table,
                            format!(
                                "cluster.node is not set and the host name `{name}` cannot be a node name ({e}): set cluster.node"
                            ),
                        );
                        name
                    }
                },
                Err(e) => {
                    self.err(
                        &table,
                        format!("cluster.node is not set and the host name cannot be read ({e}): set cluster.node"),
                    );
                    String::new()
                }
            },
        };
        let advertise = match &raw.advertise {
            None => {
                self.err(
                    &table,
                    "cluster.advertise is missing: the IP address the other nodes reach this node's API at, such as advertise = \"10.0.0.1\"",
                );
                None
            }
            Some(a) => match advertise_address(a.get_ref()) {
                Ok(ip) => Some(ip),
                Err(e) => {
                    self.err(&a.span(), format!("cluster.advertise: {e}"));
                    None
                }
            },
        };
        let prefix = match &raw.prefix {
            None => ClusterConfig::DEFAULT_PREFIX.to_owned(),
            Some(p) => {
                let text = p.get_ref();
                if !text.starts_with('/')
                    || text.len() < 2
                    || text.ends_with('/')
                    || text.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    self.err(
                        &p.span(),
                        format!(
                            "cluster.prefix `{text}` must start with `/`, not end with `/` and hold no whitespace, such as \"{}\"",
                            ClusterConfig::DEFAULT_PREFIX
                        ),
                    );
                }
                text.clone()
            }
        };
        let lease_ttl = self.duration(
            &raw.lease_ttl,
            "cluster.lease_ttl",
            ClusterConfig::DEFAULT_LEASE_TTL,
            ClusterConfig::LEASE_TTL,
        );
        if let Some(t) = &raw.lease_ttl
            && lease_ttl.subsec_nanos() != 0
        {
            self.err(
                &t.span(),
                "cluster.lease_ttl must be whole seconds (etcd leases are)",
            );
        }
        let (username, password) = match (&raw.username, &raw.password_env) {
            (None, None) => (None, None),
            (None, Some(var)) => {
                self.err(
                    &var.span(),
                    "cluster.password_env is set without cluster.username: set both or neither",
                );
                (None, None)
            }
            (Some(user), None) => {
                self.err(
                    &user.span(),
                    "cluster.username needs cluster.password_env, the environment variable that holds the etcd password",
                );
                (None, None)
            }
            (Some(user), Some(var)) => {
                let name = user.get_ref().trim();
                if name.is_empty() {
                    self.err(&user.span(), "cluster.username must not be empty");
                }
                let password = self.secret_from_env(var, "cluster.password_env", env);
                if password.as_deref().is_some_and(str::is_empty) {
                    self.err(
                        &var.span(),
                        format!(
                            "cluster.password_env: environment variable `{}` is empty",
                            var.get_ref()
                        ),
                    );
                }
                (Some(name.to_owned()), password)
            }
        };
        let https = tls == Some(true);
        let ca_file = self.cluster_file(&raw.ca_file, "cluster.ca_file", https);
        let cert_file = self.cluster_file(&raw.cert_file, "cluster.cert_file", https);
        let key_file = self.cluster_file(&raw.key_file, "cluster.key_file", https);
        if https && raw.ca_file.is_none() {
            let span = raw.etcd.as_ref().map_or(table.clone(), |e| e.span());
            self.err(
                &span,
                "cluster.etcd uses https:// and cluster.ca_file is not set: set it to the CA certificate that signed the etcd servers' certificates",
            );
        }
        match (&raw.cert_file, &raw.key_file) {
            (Some(c), None) => self.err(
                &c.span(),
                "cluster.cert_file needs cluster.key_file, the key of the client certificate",
            ),
            (None, Some(k)) => self.err(
                &k.span(),
                "cluster.key_file needs cluster.cert_file, the client certificate of the key",
            ),
            _ => {}
        }
        if self.problems.len() > before {
            return None;
        }
        Some(ClusterConfig {
            etcd,
            node,
            advertise: advertise?,
            prefix,
            lease_ttl,
            username,
            password,
            ca_file,
            cert_file,
            key_file,
        })
    }

    /// One of `[cluster]`'s TLS files: resolved against the config's directory and readable
    /// now, and only with https endpoints.
    fn cluster_file(
        &mut self,
        raw: &Option<Spanned<String>>,
        key: &str,
        https: bool,
    ) -> Option<PathBuf> {
        let raw = raw.as_ref()?;
        if !https {
            self.err(
                &raw.span(),
                format!("{key} is only for https:// etcd endpoints, and cluster.etcd uses http://"),
            );
            return None;
        }
        let text = raw.get_ref().trim();
        if text.is_empty() {
            self.err(&raw.span(), format!("{key} must not be empty"));
            return None;
        }
        let path = self.path(text);
        let readable = std::fs::metadata(&path)
            .and_then(|m| {
                if m.is_file() {
                    Ok(())
                } else {
                    Err(std::io::Error::other("it is not a file"))
                }
            })
            .and_then(|()| std::fs::File::open(&path).map(drop));
        if let Err(e) = readable {
            self.err(
                &raw.span(),
                format!("{key}: cannot read {}: {e}", path.display()),
            );
        }
        Some(path)
    }

    fn dns(&mut self, raw: &RawDns) -> Option<DnsConfig> {
        let mut listen = Vec::new();
        for addr in &raw.listen {
            match addr.get_ref().parse::<SocketAddr>() {
                Ok(a) if listen.contains(&a) => {
                    self.err(&addr.span(), format!("dns.listen: `{a}` is listed twice"))
                }
                Ok(a) => listen.push(a),
                Err(_) => self.err(
                    &addr.span(),
                    format!(
                        "dns.listen: `{}` is not a socket address (IP:PORT, such as 127.0.0.1:5353)",
                        addr.get_ref()
                    ),
                ),
            }
        }
        if raw.listen.is_empty() {
            self.problems.push(format!(
                "{}: dns.listen must name at least one address",
                self.at.path.display()
            ));
        }
        let udp_sockets = match &raw.udp_sockets {
            None => std::thread::available_parallelism().map_or(1, |n| n.get().min(64)),
            Some(n) if (1..=64).contains(n.get_ref()) => *n.get_ref() as usize,
            Some(n) => {
                self.err(&n.span(), "dns.udp_sockets must be between 1 and 64");
                1
            }
        };
        let alias_ttl = self.ttl(&raw.alias_ttl, "dns.alias_ttl", DEFAULT_ALIAS_TTL, MAX_TTL);
        let negative_ttl = self.ttl(
            &raw.negative_ttl,
            "dns.negative_ttl",
            DEFAULT_NEGATIVE_TTL,
            MAX_NEGATIVE_TTL,
        );
        let tcp_idle_timeout = self.duration(
            &raw.tcp_idle_timeout,
            "dns.tcp_idle_timeout",
            DnsConfig::DEFAULT_TCP_IDLE_TIMEOUT,
            bounds::DNS_TCP_IDLE,
        );
        let tcp_max_connections = self.count(
            &raw.tcp_max_connections,
            "dns.tcp_max_connections",
            DnsConfig::DEFAULT_TCP_MAX_CONNECTIONS,
            bounds::MAX_CONNECTIONS,
        );
        Some(DnsConfig {
            listen,
            udp_sockets,
            alias_ttl,
            negative_ttl,
            tcp_idle_timeout,
            tcp_max_connections,
            log_queries: raw.log_queries,
        })
    }

    fn ttl(
        &mut self,
        raw: &Option<Spanned<RawDuration>>,
        key: &str,
        default: u32,
        max: u32,
    ) -> u32 {
        let Some(raw) = raw else { return default };
        match raw.get_ref().to_duration() {
            Ok(d) if d.subsec_nanos() != 0 => {
                self.err(&raw.span(), format!("{key} must be whole seconds"));
                default
            }
            Ok(d) if d.as_secs() > u64::from(max) => {
                self.err(&raw.span(), format!("{key} must be at most {max} seconds"));
                default
            }
            Ok(d) => d.as_secs() as u32,
            Err(e) => {
                self.err(&raw.span(), format!("{key}: {e}"));
                default
            }
        }
    }

    fn zones(&mut self, raw: &[RawZone]) -> Vec<StaticZone> {
        if raw.is_empty() {
            self.problems.push(format!(
                "{}: at least one [[zone]] is needed",
                self.at.path.display()
            ));
        }
        let mut zones: Vec<StaticZone> = Vec::new();
        for z in raw {
            let text = z.origin.get_ref();
            let origin = match parse_dns_name(text) {
                Ok(mut n) => {
                    n.set_fqdn(true);
                    n.to_lowercase()
                }
                Err(e) => {
                    self.err(&z.origin.span(), format!("zone.origin: {e}"));
                    continue;
                }
            };
            if zones
                .iter()
                .any(|other| other.origin.zone_of(&origin) || origin.zone_of(&other.origin))
            {
                self.err(
                    &z.origin.span(),
                    format!("zone `{origin}` overlaps another [[zone]]; zones must be disjoint"),
                );
                continue;
            }
            match StaticZone::load(&self.path(z.file.get_ref()), &origin) {
                Ok(zone) => zones.push(zone),
                Err(e) => {
                    let where_ = self.at.at(&z.file.span(), "zone.file");
                    self.problems.push(format!("{where_}: {e}"));
                }
            }
        }
        zones
    }

    fn tsig_keys(
        &mut self,
        raw: &[RawTsigKey],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<TsigKey> {
        let mut keys: Vec<TsigKey> = Vec::new();
        for k in raw {
            let name = match parse_dns_name(k.name.get_ref()) {
                Ok(mut n) => {
                    n.set_fqdn(true);
                    n.to_lowercase()
                }
                Err(e) => {
                    self.err(&k.name.span(), format!("tsig_key.name: {e}"));
                    continue;
                }
            };
            if keys.iter().any(|o| o.name == name) {
                self.err(
                    &k.name.span(),
                    format!("tsig_key `{name}` is defined twice"),
                );
                continue;
            }
            if let Some(a) = &k.algorithm
                && !a.get_ref().eq_ignore_ascii_case("hmac-sha256")
            {
                self.err(
                    &a.span(),
                    format!(
                        "tsig_key `{name}`: algorithm `{}` is not supported (only hmac-sha256)",
                        a.get_ref()
                    ),
                );
                continue;
            }
            let what = format!("tsig_key `{name}`");
            let (text, span) = match self.secret(&k.secret, &k.secret_env, &k.name, &what, env) {
                Ok(found) => found,
                Err(NoSecret::Unset) => {
                    self.keys_without_secret.push(name);
                    continue;
                }
                Err(NoSecret::Invalid) => continue,
            };
            match data_encoding::BASE64.decode(text.trim().as_bytes()) {
                Ok(secret) if secret.len() >= MIN_TSIG_SECRET => {
                    keys.push(TsigKey { name, secret });
                }
                Ok(secret) => self.err(
                    &span,
                    format!(
                        "tsig_key `{name}`: the secret is {}; at least {MIN_TSIG_SECRET} are needed (`openssl rand -base64 32` makes one)",
                        crate::text::plural(secret.len() as u64, "byte")
                    ),
                ),
                Err(e) => self.err(
                    &span,
                    format!("tsig_key `{name}`: the secret is not base64 ({e})"),
                ),
            }
        }
        keys
    }

    /// The zone's `secondaries` and `transfer_allow`.
    fn transfer(&mut self, raw: &RawZone, keys: &[TsigKey]) -> ZoneTransfer {
        let mut out = ZoneTransfer::default();
        if raw.secondaries.len() > bounds::MAX_SECONDARIES {
            self.err(
                &raw.origin.span(),
                format!(
                    "zone.secondaries: at most {} secondaries per zone (got {})",
                    bounds::MAX_SECONDARIES,
                    raw.secondaries.len()
                ),
            );
        }
        for s in raw.secondaries.iter().take(bounds::MAX_SECONDARIES) {
            let address = match parse_server_address(s.address.get_ref()) {
                Ok(a) => a,
                Err(e) => {
                    self.err(&s.address.span(), format!("zone.secondaries.address: {e}"));
                    continue;
                }
            };
            let tsig_key = match &s.tsig_key {
                None => None,
                Some(k) => {
                    let found = parse_dns_name(k.get_ref()).ok().and_then(|mut n| {
                        n.set_fqdn(true);
                        let n = n.to_lowercase();
                        let known = keys.iter().any(|key| key.name == n)
                            || self.keys_without_secret.contains(&n);
                        known.then_some(n)
                    });
                    if found.is_none() {
                        self.err(
                            &k.span(),
                            format!(
                                "zone.secondaries.tsig_key: no [[tsig_key]] is named `{}`",
                                k.get_ref()
                            ),
                        );
                        continue;
                    }
                    found
                }
            };
            if out.secondaries.iter().any(|o| o.address == address) {
                self.err(
                    &s.address.span(),
                    format!("zone.secondaries: {address} is listed twice"),
                );
                continue;
            }
            out.secondaries.push(Secondary {
                address,
                notify: s.notify,
                tsig_key,
            });
        }
        for a in &raw.transfer_allow {
            let text = a.get_ref().trim();
            let net = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match net {
                Ok(n) => out.allow.push(n),
                Err(_) => self.err(
                    &a.span(),
                    format!(
                        "zone.transfer_allow: `{text}` is not an address or a network (such as 10.0.0.5 or 10.0.0.0/24)"
                    ),
                ),
            }
        }
        out
    }

    fn api(&mut self, raw: &RawApi, env: &dyn Fn(&str) -> Option<String>) -> Option<ApiConfig> {
        let listen = match raw.listen.get_ref().parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                self.err(
                    &raw.listen.span(),
                    format!(
                        "api.listen: `{}` is not a socket address (IP:PORT, such as 127.0.0.1:5380)",
                        raw.listen.get_ref()
                    ),
                );
                return None;
            }
        };
        let mut tokens: Vec<ApiToken> = Vec::new();
        for t in &raw.tokens {
            let name = t.name.get_ref().trim().to_owned();
            if name.is_empty() {
                self.err(&t.name.span(), "api.token.name must not be empty");
                continue;
            }
            if tokens.iter().any(|o| o.name == name) {
                self.err(
                    &t.name.span(),
                    format!("api.token `{name}` is defined twice"),
                );
                continue;
            }
            let what = format!("api.token `{name}`");
            let Ok((secret, _)) = self.secret(&t.secret, &t.secret_env, &t.name, &what, env) else {
                continue;
            };
            if secret.trim().len() < MIN_TOKEN_LEN {
                self.err(
                    &t.name.span(),
                    format!(
                        "api.token `{name}`: the secret must be at least {MIN_TOKEN_LEN} characters"
                    ),
                );
                continue;
            }
            if tokens.iter().any(|o| o.secret == secret) {
                self.err(
                    &t.name.span(),
                    format!("api.token `{name}` has the same secret as another token"),
                );
                continue;
            }
            tokens.push(ApiToken { name, secret });
        }
        let max_connections = self.count(
            &raw.max_connections,
            "api.max_connections",
            ApiConfig::DEFAULT_MAX_CONNECTIONS,
            bounds::MAX_CONNECTIONS,
        );
        let header_timeout = self.duration(
            &raw.header_timeout,
            "api.header_timeout",
            ApiConfig::DEFAULT_HEADER_TIMEOUT,
            bounds::HEADER_TIMEOUT,
        );
        let idle_timeout = self.duration(
            &raw.idle_timeout,
            "api.idle_timeout",
            ApiConfig::DEFAULT_IDLE_TIMEOUT,
            bounds::IDLE_TIMEOUT,
        );
        Some(ApiConfig {
            listen,
            tokens,
            max_connections,
            header_timeout,
            idle_timeout,
        })
    }

    /// A count setting within `range`, or `default` (with an error recorded) when it is out of
    /// range.
    fn count(
        &mut self,
        raw: &Option<Spanned<u64>>,
        key: &str,
        default: usize,
        range: std::ops::RangeInclusive<u64>,
    ) -> usize {
        match raw {
            None => default,
            Some(n) if range.contains(n.get_ref()) => *n.get_ref() as usize,
            Some(n) => {
                self.err(
                    &n.span(),
                    format!(
                        "{key} must be between {} and {} (got {})",
                        range.start(),
                        range.end(),
                        n.get_ref()
                    ),
                );
                default
            }
        }
    }

    /// A duration setting within `range`, or `default` (with an error recorded) when it is
    /// absent or bad.
    fn duration(
        &mut self,
        raw: &Option<Spanned<RawDuration>>,
        key: &str,
        default: Duration,
        range: bounds::DurationRange,
    ) -> Duration {
        let Some(raw) = raw else { return default };
        match raw
            .get_ref()
            .to_duration()
            .map_err(|e| format!("{key}: {e}"))
            .and_then(|d| range.check(key, d))
        {
            Ok(d) => d,
            Err(e) => {
                self.err(&raw.span(), e);
                default
            }
        }
    }

    fn promotion(&mut self, raw: &RawPromotion) -> PromotionDefaults {
        let d = PromotionDefaults::default();
        PromotionDefaults {
            observe: self.duration(
                &raw.observe,
                "promotion.observe",
                d.observe,
                bounds::OBSERVE,
            ),
            warm_timeout: self.duration(
                &raw.warm_timeout,
                "promotion.warm_timeout",
                d.warm_timeout,
                bounds::WARM_TIMEOUT,
            ),
            drain_grace: self.duration(
                &raw.drain_grace,
                "promotion.drain_grace",
                d.drain_grace,
                bounds::DRAIN_GRACE,
            ),
        }
    }

    /// Validates a merged health section into a check; `key` prefixes messages.
    fn check(&mut self, raw: &RawHealth, key: &str) -> CheckConfig {
        let kind = raw.kind.as_ref().map_or("tcp", |k| k.get_ref().as_str());
        let kind = match kind {
            "tcp" => CheckKind::Tcp,
            "none" => CheckKind::None,
            "http" => {
                let path = raw
                    .path
                    .as_ref()
                    .map_or("/".to_owned(), |p| p.get_ref().clone());
                if !path.starts_with('/') {
                    let span = raw.path.as_ref().map(|p| p.span()).unwrap_or(0..0);
                    self.err(&span, format!("{key}.path must start with `/`"));
                }
                let expect = match &raw.expect {
                    None => 200..=399,
                    Some(e) => {
                        match parse_status_range(e.get_ref()) {
                            Some(r) => r,
                            None => {
                                self.err(
                                &e.span(),
                                format!("{key}.expect: `{}` is not a status or range like \"200-399\"", e.get_ref()),
                            );
                                200..=399
                            }
                        }
                    }
                };
                CheckKind::Http {
                    path,
                    expect,
                    host: raw.host.as_ref().map(|h| h.get_ref().clone()),
                }
            }
            other => {
                let span = raw.kind.as_ref().map(|k| k.span()).unwrap_or(0..0);
                self.err(
                    &span,
                    format!("{key}.kind: `{other}` is not one of http, tcp, none"),
                );
                CheckKind::Tcp
            }
        };
        let interval = self.duration(
            &raw.interval,
            &format!("{key}.interval"),
            Duration::from_secs(2),
            bounds::HEALTH_INTERVAL,
        );
        // The default timeout never exceeds the interval; a timeout written larger is an error.
        let timeout = self.duration(
            &raw.timeout,
            &format!("{key}.timeout"),
            Duration::from_secs(1).min(interval),
            bounds::HEALTH_TIMEOUT,
        );
        if let Some(t) = &raw.timeout
            && timeout > interval
        {
            self.err(
                &t.span(),
                format!("{key}.timeout must not exceed {key}.interval"),
            );
        }
        let mut count = |v: &Option<Spanned<u64>>, name: &str, default: u32| match v {
            None => default,
            Some(n) if (1..=100).contains(n.get_ref()) => *n.get_ref() as u32,
            Some(n) => {
                self.err(&n.span(), format!("{key}.{name} must be between 1 and 100"));
                default
            }
        };
        let rise = count(&raw.rise, "rise", 2);
        let fall = count(&raw.fall, "fall", 3);
        CheckConfig {
            kind,
            interval,
            timeout,
            rise,
            fall,
        }
    }

    fn services(
        &mut self,
        raw: &[RawService],
        health_defaults: &RawHealth,
        default_check: &CheckConfig,
    ) -> BTreeMap<ServiceName, ServiceConfig> {
        let mut services = BTreeMap::new();
        for s in raw {
            let name = match s.name.get_ref().parse::<ServiceName>() {
                Ok(n) => n,
                Err(e) => {
                    self.err(&s.name.span(), format!("service.name: {e}"));
                    continue;
                }
            };
            if services.contains_key(&name) {
                self.err(&s.name.span(), format!("service `{name}` is defined twice"));
                continue;
            }
            let mut endpoints = Vec::new();
            for e in &s.endpoints {
                match e.get_ref().parse::<Endpoint>() {
                    Ok(ep) if endpoints.contains(&ep) => self.err(
                        &e.span(),
                        format!("service `{name}`: endpoint `{ep}` is listed twice"),
                    ),
                    Ok(ep) => endpoints.push(ep),
                    Err(err) => self.err(&e.span(), format!("service `{name}`: {err}")),
                }
            }
            if let Some(h) = s.health.as_ref().and_then(|h| h.concurrency.as_ref()) {
                self.err(
                    &h.span(),
                    "health.concurrency belongs in the top-level [health] only",
                );
            }
            let check = match &s.health {
                None => default_check.clone(),
                Some(h) => self.check(
                    &h.over(health_defaults),
                    &format!("service `{name}` health"),
                ),
            };
            services.insert(name, ServiceConfig { endpoints, check });
        }
        services
    }

    fn proxies(
        &mut self,
        raw: &[RawProxy],
        zones: &[StaticZone],
        aliases: &BTreeMap<AliasName, AliasConfig>,
        taken: &[(SocketAddr, &str)],
    ) -> Vec<ProxyConfig> {
        let mut proxies: Vec<ProxyConfig> = Vec::new();
        for p in raw {
            let Ok(listen) = p.listen.get_ref().parse::<SocketAddr>() else {
                self.err(
                    &p.listen.span(),
                    format!(
                        "proxy.listen: `{}` is not a socket address (IP:PORT, such as 127.0.0.1:8080)",
                        p.listen.get_ref()
                    ),
                );
                continue;
            };
            // Port 0 asks the OS for a free port, so it never clashes. DNS serves TCP on its
            // port too, so a proxy cannot share that either.
            if listen.port() != 0 {
                if let Some((_, key)) = taken.iter().find(|(t, _)| *t == listen) {
                    self.err(
                        &p.listen.span(),
                        format!("proxy.listen: `{listen}` is also {key}"),
                    );
                    continue;
                }
                if proxies.iter().any(|o| o.listen == listen) {
                    self.err(
                        &p.listen.span(),
                        format!("proxy.listen: `{listen}` is listed twice"),
                    );
                    continue;
                }
            }
            // Without a zone the alias cannot be resolved; the missing zone is reported already.
            let Some(first) = zones.first() else {
                continue;
            };
            let alias = match AliasName::resolve(p.alias.get_ref(), &first.origin) {
                Ok(a) if aliases.contains_key(&a) => a,
                Ok(a) => {
                    self.err(
                        &p.alias.span(),
                        format!(
                            "proxy on {listen}: unknown alias `{a}` (no [[alias]] has that name; known: {})",
                            crate::text::known(aliases.keys())
                        ),
                    );
                    continue;
                }
                Err(e) => {
                    self.err(&p.alias.span(), format!("proxy.alias: {e}"));
                    continue;
                }
            };
            let mode = match p.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
                None | Some(("http", _)) => ProxyMode::Http,
                Some(("tcp", _)) => ProxyMode::Tcp,
                Some((other, span)) => {
                    self.err(
                        &span,
                        format!("proxy on {listen}: mode `{other}` is not one of http, tcp"),
                    );
                    ProxyMode::Http
                }
            };
            let connect_timeout = self.duration(
                &p.connect_timeout,
                "proxy.connect_timeout",
                ProxyConfig::DEFAULT_CONNECT_TIMEOUT,
                bounds::CONNECT_TIMEOUT,
            );
            let idle_timeout = self.duration(
                &p.idle_timeout,
                "proxy.idle_timeout",
                ProxyConfig::DEFAULT_IDLE_TIMEOUT,
                bounds::IDLE_TIMEOUT,
            );
            let request_timeout = self.duration(
                &p.request_timeout,
                "proxy.request_timeout",
                ProxyConfig::DEFAULT_REQUEST_TIMEOUT,
                bounds::REQUEST_TIMEOUT,
            );
            let backend_idle_timeout = self.duration(
                &p.backend_idle_timeout,
                "proxy.backend_idle_timeout",
                ProxyConfig::DEFAULT_BACKEND_IDLE_TIMEOUT,
                bounds::BACKEND_IDLE_TIMEOUT,
            );
            let drain_deadline = self.duration(
                &p.drain_deadline,
                "proxy.drain_deadline",
                ProxyConfig::DEFAULT_DRAIN_DEADLINE,
                bounds::DRAIN_DEADLINE,
            );
            let max_connections = self.count(
                &p.max_connections,
                "proxy.max_connections",
                ProxyConfig::DEFAULT_MAX_CONNECTIONS,
                bounds::MAX_CONNECTIONS,
            );
            let header_timeout = self.duration(
                &p.header_timeout,
                "proxy.header_timeout",
                ProxyConfig::DEFAULT_HEADER_TIMEOUT,
                bounds::HEADER_TIMEOUT,
            );
            let client_header = self.client_header(p, listen, mode);
            proxies.push(ProxyConfig {
                listen,
                alias,
                mode,
                connect_timeout,
                idle_timeout,
                request_timeout,
                backend_idle_timeout,
                drain_deadline,
                max_connections,
                header_timeout,
                client_header,
                fast_path: p.fast_path.unwrap_or(true),
            });
        }
        proxies
    }

    /// A proxy's `client_header` and `trusted`: both or neither, HTTP mode only.
    fn client_header(
        &mut self,
        p: &RawProxy,
        listen: SocketAddr,
        mode: ProxyMode,
    ) -> Option<ClientHeader> {
        let (header, trusted) = match (&p.client_header, &p.trusted) {
            (None, None) => return None,
            (Some(header), None) => {
                self.err(
                    &header.span(),
                    format!(
                        "proxy on {listen}: client_header needs `trusted`, the networks of the \
                         balancers allowed to name the client (such as trusted = [\"10.0.0.0/8\"]); \
                         anyone else could pick their side of a weighted step"
                    ),
                );
                return None;
            }
            (None, Some(trusted)) => {
                self.err(
                    &trusted.span(),
                    format!(
                        "proxy on {listen}: trusted names the peers whose client_header is \
                         believed, but there is no client_header; add one (such as \
                         client_header = \"X-Real-IP\") or remove trusted"
                    ),
                );
                return None;
            }
            (Some(header), Some(trusted)) => (header, trusted),
        };
        if mode == ProxyMode::Tcp {
            self.err(
                &header.span(),
                format!(
                    "proxy on {listen}: client_header is for mode http; a TCP proxy reads no \
                     headers and puts a client on a side by its address"
                ),
            );
            return None;
        }
        let name = header.get_ref().trim();
        if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            self.err(
                &header.span(),
                format!(
                    "proxy.client_header: `{name}` is not an HTTP header name (such as X-Real-IP)"
                ),
            );
            return None;
        }
        let mut nets = Vec::new();
        for t in trusted.get_ref() {
            let text = t.get_ref().trim();
            let net = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match net {
                Ok(n) => nets.push(n),
                Err(_) => self.err(
                    &t.span(),
                    format!(
                        "proxy.trusted: `{text}` is not an address or a network (such as 10.0.0.5 or 10.0.0.0/8)"
                    ),
                ),
            }
        }
        if trusted.get_ref().is_empty() {
            self.err(
                &trusted.span(),
                format!("proxy on {listen}: trusted is empty; list the balancers' networks"),
            );
        }
        Some(ClientHeader {
            name: name.to_ascii_lowercase(),
            trusted: nets,
        })
    }

    fn aliases(
        &mut self,
        raw: &[RawAlias],
        zones: &[StaticZone],
        services: &BTreeMap<ServiceName, ServiceConfig>,
        docker: bool,
    ) -> BTreeMap<AliasName, AliasConfig> {
        let mut aliases: BTreeMap<AliasName, AliasConfig> = BTreeMap::new();
        let Some(first) = zones.first() else {
            return aliases;
        };
        for a in raw {
            let span = a.name.span();
            let name = match AliasName::resolve(a.name.get_ref(), &first.origin) {
                Ok(n) => n,
                Err(e) => {
                    self.err(&span, format!("alias.name: {e}"));
                    continue;
                }
            };
            let zone = match place_alias(&name, zones, &aliases) {
                Ok(z) => z,
                Err(e) => {
                    self.err(&span, e);
                    continue;
                }
            };
            let mut targets = Vec::new();
            for t in a.targets.get_ref() {
                match t.get_ref().parse::<ServiceName>() {
                    // With Docker on, a service may have no entry: its containers define it.
                    Ok(s) if !docker && !services.contains_key(&s) => self.err(
                        &t.span(),
                        format!(
                            "alias `{name}` links unknown service `{s}` (no [[service]] has that name; known: {})",
                            crate::text::known(services.keys())
                        ),
                    ),
                    Ok(s) if targets.contains(&s) => self.err(
                        &t.span(),
                        format!("alias `{name}` lists service `{s}` twice"),
                    ),
                    Ok(s) => targets.push(s),
                    Err(e) => self.err(&t.span(), format!("alias `{name}`: {e}")),
                }
            }
            if a.targets.get_ref().is_empty() {
                self.err(
                    &a.targets.span(),
                    format!("alias `{name}` must link at least one service"),
                );
            }
            let port_name = match &a.port_name {
                None => "http".to_owned(),
                Some(p) => {
                    if let Err(e) = check_port_name(p.get_ref()) {
                        self.err(&p.span(), format!("alias `{name}`: {e}"));
                    }
                    p.get_ref().clone()
                }
            };
            let if_none_healthy = match &a.if_none_healthy {
                None => IfNoneHealthy::LastKnownGood,
                Some(p) => IfNoneHealthy::parse(p.get_ref()).unwrap_or_else(|| {
                    self.err(
                        &p.span(),
                        format!(
                            "alias `{name}`: if_none_healthy `{}` is not one of {}",
                            p.get_ref(),
                            IfNoneHealthy::CHOICES
                        ),
                    );
                    IfNoneHealthy::LastKnownGood
                }),
            };
            aliases.insert(
                name,
                AliasConfig {
                    zone,
                    targets,
                    port_name,
                    if_none_healthy,
                },
            );
        }
        aliases
    }
}

/// `/path`, `unix:///path`, `tcp://host:port` or `http://host:port`.
fn docker_host(text: &str) -> Result<DockerHost, String> {
    let text = text.trim();
    if let Some(path) = text.strip_prefix("unix://") {
        return if path.starts_with('/') {
            Ok(DockerHost::Unix(path.into()))
        } else {
            Err(format!(
                "`{text}`: a unix socket needs an absolute path (unix:///var/run/docker.sock)"
            ))
        };
    }
    if text.starts_with('/') {
        return Ok(DockerHost::Unix(text.into()));
    }
    for scheme in ["tcp://", "http://"] {
        if let Some(rest) = text.strip_prefix(scheme) {
            let hostport = rest.trim_end_matches('/');
            let ok = hostport
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            return if ok {
                Ok(DockerHost::Http(format!("http://{hostport}")))
            } else {
                Err(format!("`{text}` is not {scheme}HOST:PORT"))
            };
        }
    }
    Err(format!(
        "`{text}` is not a Docker address: use /var/run/docker.sock, unix:///PATH or tcp://HOST:PORT (TLS is not supported)"
    ))
}

/// One `docker.labels` entry: `key=value`, or `key` for the label with any value.
fn docker_label_filter(text: &str) -> Result<(String, Option<String>), String> {
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{text}` holds whitespace; write key=value or key, such as \"com.example.team=payments\""
        ));
    }
    let (key, value) = match text.split_once('=') {
        Some((k, v)) => (k, Some(v.to_owned())),
        None => (text, None),
    };
    if key.is_empty() {
        return Err(format!(
            "`{text}` has no label key; write key=value or key, such as \"com.example.team=payments\""
        ));
    }
    Ok((key.to_owned(), value))
}

/// One `cluster.etcd` endpoint: whether it is https, and the URL without a trailing `/`.
fn etcd_url(text: &str) -> Result<(bool, String), String> {
    let example = "such as \"http://10.0.0.1:2379\"";
    let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = text.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!(
            "`{text}` is not an http:// or https:// URL ({example})"
        ));
    };
    let hostport = rest.strip_suffix('/').unwrap_or(rest);
    if hostport.contains(['/', '?', '#', '@']) || hostport.chars().any(char::is_whitespace) {
        return Err(format!(
            "`{text}` must be the scheme, host and port alone, with no path ({example})"
        ));
    }
    let ok = hostport.rsplit_once(':').is_some_and(|(host, port)| {
        let host_ok = match host.strip_prefix('[') {
            Some(v6) => v6
                .strip_suffix(']')
                .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok()),
            None => !host.is_empty() && !host.contains([':', '[', ']']),
        };
        host_ok && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if !ok {
        return Err(format!("`{text}` needs a host and a port ({example})"));
    }
    let scheme = if https { "https" } else { "http" };
    Ok((https, format!("{scheme}://{hostport}")))
}

/// `[a-z0-9-_.]{1,63}`, like a DNS label (with `_` and `.`).
fn check_node_name(name: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` must be 1 to 63 lower-case letters, digits, `-`, `_` or `.`, such as \"host-a\""
        ))
    }
}

/// This machine's host name, lower-cased (Linux keeps it in procfs).
pub fn host_name() -> Result<String, String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_ascii_lowercase())
        .map_err(|e| format!("/proc/sys/kernel/hostname: {e}"))
}

/// `cluster.advertise`: an IP address that other machines can reach.
fn advertise_address(text: &str) -> Result<IpAddr, String> {
    let text = text.trim();
    match text.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => Err(format!(
            "`{text}` is the unspecified address; name the IP address the other nodes reach this node at, such as \"10.0.0.1\""
        )),
        Ok(ip) => Ok(ip),
        Err(_) if text.parse::<SocketAddr>().is_ok() => Err(format!(
            "`{text}` has a port; write the IP address alone (the API's port comes from api.listen)"
        )),
        Err(_) => Err(format!(
            "`{text}` is not an IP address; write the address the other nodes reach this node at, such as \"10.0.0.1\" (not a host name)"
        )),
    }
}

mod keys;
#[cfg(test)]
mod tests;
