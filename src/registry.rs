//! The live service registry: which services exist, their endpoints and health checks, and the
//! alias definitions, merged from the three sources that feed the controller.
//!
//! - the config (`[[service]]`, `[[alias]]`), replaced whole on a reload: [`Base`];
//! - the API (`PUT /v1/services/{name}`, `PUT /v1/aliases/{alias}`), durable in the state;
//! - Docker discovery, which reports whole endpoint sets per service; the last known sets are
//!   durable too, so a restart while Docker is away still answers them.
//!
//! The controller owns the dynamic parts ([`Registry`], inside its state) and builds a new
//! immutable [`Topology`] from them and the [`Base`] whenever one changes: a pure function, so
//! what a snapshot answers follows from what was stored.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name};
use serde::{Deserialize, Serialize};

use crate::check::{CheckConfig, Health, HealthSpec};
use crate::config::{AliasConfig, Config, IfNoneHealthy, PromotionDefaults, ServiceConfig};
use crate::model::{AliasName, Endpoint, ServiceName, ZoneNames};
pub use crate::model::{check_port_name, place_alias};
use crate::wire::{WireName, wire_name};
use crate::zoneindex::ZoneStatics;

/// Where a service definition or an endpoint came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Config,
    Api,
    Docker,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Api => "api",
            Self::Docker => "docker",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The container behind a Docker endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRef {
    /// The full container id.
    pub id: String,
    /// The name without Docker's leading `/`.
    pub name: String,
}

impl ContainerRef {
    /// The 12-character id Docker shows.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }
}

/// What a container's own HEALTHCHECK says, or that it died under us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DockerHealth {
    Starting,
    Healthy,
    Unhealthy,
    /// The container died without being stopped (killed, crashed, OOM): it stays listed, failed,
    /// until it is removed or starts again, so a promotion to it sees the failure.
    Died(String),
}

impl DockerHealth {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Died(_) => "died",
        }
    }
}

/// One endpoint as Docker discovery reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerEndpoint {
    pub endpoint: Endpoint,
    pub container: ContainerRef,
    /// Health settings from the container's labels, over the service's.
    #[serde(default, skip_serializing_if = "HealthSpec::is_empty")]
    pub health: HealthSpec,
    /// An SRV port name from the labels: the endpoint is also at `_<name>._tcp.<alias>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_health: Option<DockerHealth>,
}

/// A service defined through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiService {
    pub endpoints: Vec<Endpoint>,
    /// Health settings over `[health]`.
    #[serde(default, skip_serializing_if = "HealthSpec::is_empty")]
    pub health: HealthSpec,
    pub changed_by: String,
    pub changed_at_ms: u64,
}

/// An alias defined through the API: how it answers. Its links live in its alias state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasSpec {
    pub port_name: String,
    pub if_none_healthy: IfNoneHealthy,
    pub created_by: String,
    pub created_at_ms: u64,
}

/// The parts of the registry that change at runtime and are stored with the state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    pub api_services: imbl::OrdMap<ServiceName, ApiService>,
    pub api_aliases: imbl::OrdMap<AliasName, AliasSpec>,
    /// The last endpoint sets Docker reported, per service.
    pub docker: imbl::OrdMap<ServiceName, Vec<DockerEndpoint>>,
}

/// A container discovery skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub container: ContainerRef,
    pub message: String,
}

/// Whether a source can be reached.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceStatus {
    pub connected: bool,
    /// When `connected` last changed (Unix ms); 0 before the first attempt.
    pub since_ms: u64,
    /// When the source last sent a whole, fresh view.
    pub last_sync_ms: Option<u64>,
    /// Why it cannot be reached.
    pub error: Option<String>,
    /// Where it is (`unix:///var/run/docker.sock`) and what it runs (`API 1.41`).
    pub endpoint: String,
    pub version: Option<String>,
}

/// Docker discovery as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DockerState {
    pub status: SourceStatus,
    pub problems: Vec<Problem>,
}

/// How the sources stand, published with each snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sources {
    /// `None` when Docker discovery is off.
    pub docker: Option<DockerState>,
}

/// What the config contributes; replaced whole by a reload.
#[derive(Debug)]
pub struct Base {
    pub zones: Arc<Vec<ZoneStatics>>,
    pub services: BTreeMap<ServiceName, ServiceConfig>,
    pub aliases: BTreeMap<AliasName, AliasConfig>,
    /// The `[health]` defaults: the check of a service that sets none.
    pub default_check: CheckConfig,
    pub alias_ttl: u32,
    pub negative_ttl: u32,
    pub defaults: PromotionDefaults,
    /// How much history the controller keeps.
    pub retention: crate::config::Retention,
    /// Whether Docker discovery runs: then an alias may name a service no source has yet.
    pub docker: bool,
}

impl Base {
    pub fn from_config(config: &Config) -> Self {
        Self::with_zones(
            config,
            config
                .zones
                .iter()
                .map(|z| ZoneStatics::new(z, config.dns.negative_ttl))
                .collect(),
        )
    }

    /// Like [`Base::from_config`], but moves the zones' records out of `config` instead of
    /// copying them: with 100,000 static records, the config is not held twice.
    pub fn take_from(config: &mut Config) -> Self {
        let zones = std::mem::take(&mut config.zones)
            .into_iter()
            .map(|z| ZoneStatics::new(&z, config.dns.negative_ttl))
            .collect();
        Self::with_zones(config, zones)
    }

    fn with_zones(config: &Config, zones: Vec<ZoneStatics>) -> Self {
        Self {
            zones: Arc::new(zones),
            services: config.services.clone(),
            aliases: config.aliases.clone(),
            default_check: config.default_check.clone(),
            alias_ttl: config.dns.alias_ttl,
            negative_ttl: config.dns.negative_ttl,
            defaults: config.promotion.clone(),
            retention: config.history,
            docker: config.docker.is_some(),
        }
    }
}

/// One endpoint of a service as answers and checks use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    pub endpoint: Endpoint,
    pub source: Source,
    pub container: Option<ContainerRef>,
    /// How it is checked: the service's check with the endpoint's own settings over it.
    pub check: CheckConfig,
    pub port_name: Option<String>,
    pub docker_health: Option<DockerHealth>,
}

impl EndpointInfo {
    /// The health to answer by: aliasd's own check combined with the container's HEALTHCHECK.
    /// A container that is starting or unhealthy, or died, is not healthy whatever aliasd saw.
    pub fn effective(&self, checked: Health) -> Health {
        match (&self.docker_health, checked) {
            (Some(DockerHealth::Unhealthy | DockerHealth::Died(_)), _) => Health::Unhealthy,
            (_, Health::Unhealthy) => Health::Unhealthy,
            (Some(DockerHealth::Starting), _) => Health::Starting,
            (_, h) => h,
        }
    }

    /// Whether the endpoint is gone for good (its container died): never answered, not even by
    /// an `if_none_healthy` policy.
    pub fn is_dead(&self) -> bool {
        matches!(self.docker_health, Some(DockerHealth::Died(_)))
    }
}

/// A service as the registry knows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Where its definition is: the config or the API; `None` for one seen only in Docker, or
    /// only named by an alias so far.
    pub defined_by: Option<Source>,
    pub check: CheckConfig,
    /// Every endpoint, config and API ones first, then Docker's, without repeated addresses.
    pub endpoints: Vec<EndpointInfo>,
}

impl Service {
    pub fn addrs(&self) -> impl Iterator<Item = Endpoint> + '_ {
        self.endpoints.iter().map(|e| e.endpoint)
    }

    pub fn find(&self, endpoint: &Endpoint) -> Option<&EndpointInfo> {
        self.endpoints.iter().find(|e| e.endpoint == *endpoint)
    }
}

/// Everything an answer is rendered from besides the alias states: zones, services with their
/// endpoints, alias definitions. Immutable; the controller builds a new one on each change.
#[derive(Debug)]
pub struct Topology {
    pub zones: Arc<Vec<ZoneStatics>>,
    pub services: BTreeMap<ServiceName, Service>,
    pub aliases: BTreeMap<AliasName, AliasDef>,
    /// Per zone, the names between an alias and the apex: they exist (NODATA), with no
    /// records, since the alias below them does (RFC 8020).
    pub alias_ents: Vec<Arc<HashSet<WireName>>>,
    pub alias_ttl: u32,
    pub negative_ttl: u32,
    pub defaults: PromotionDefaults,
    pub docker: bool,
}

/// An alias definition, from the config or the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasDef {
    /// Index into [`Topology::zones`] of the zone that holds the alias.
    pub zone: usize,
    /// The services linked when no stored state says otherwise (config aliases).
    pub targets: Vec<ServiceName>,
    pub port_name: String,
    pub if_none_healthy: IfNoneHealthy,
    pub source: Source,
}

impl Topology {
    /// The topology of a config alone: no API services or aliases, nothing from Docker.
    pub fn from_config(config: &Config) -> Self {
        Self::build(&Base::from_config(config), &Registry::default(), [])
    }

    /// Merges `base` and `registry`. `named` are the services alias states refer to: with
    /// Docker on, those no source has get an empty entry, so they show (with no endpoints) and
    /// fill in when their first container starts.
    pub fn build<'a>(
        base: &Base,
        registry: &Registry,
        named: impl IntoIterator<Item = &'a ServiceName>,
    ) -> Self {
        let mut services: BTreeMap<ServiceName, Service> = BTreeMap::new();
        let static_endpoint = |e: &Endpoint, source, check: &CheckConfig| EndpointInfo {
            endpoint: *e,
            source,
            container: None,
            check: check.clone(),
            port_name: None,
            docker_health: None,
        };
        for (name, s) in &base.services {
            services.insert(
                name.clone(),
                Service {
                    defined_by: Some(Source::Config),
                    check: s.check.clone(),
                    endpoints: s
                        .endpoints
                        .iter()
                        .map(|e| static_endpoint(e, Source::Config, &s.check))
                        .collect(),
                },
            );
        }
        for (name, s) in &registry.api_services {
            if services.contains_key(name) {
                // The controller refuses this; a config reload that adds the name wins.
                continue;
            }
            let check = s
                .health
                .apply(&base.default_check)
                .unwrap_or_else(|_| base.default_check.clone());
            services.insert(
                name.clone(),
                Service {
                    defined_by: Some(Source::Api),
                    endpoints: s
                        .endpoints
                        .iter()
                        .map(|e| static_endpoint(e, Source::Api, &check))
                        .collect(),
                    check,
                },
            );
        }
        for (name, endpoints) in &registry.docker {
            let service = services.entry(name.clone()).or_insert_with(|| Service {
                defined_by: None,
                check: base.default_check.clone(),
                endpoints: Vec::new(),
            });
            for d in endpoints {
                if service.find(&d.endpoint).is_some() {
                    continue;
                }
                let check = d
                    .health
                    .apply(&service.check)
                    .unwrap_or_else(|_| service.check.clone());
                service.endpoints.push(EndpointInfo {
                    endpoint: d.endpoint,
                    source: Source::Docker,
                    container: Some(d.container.clone()),
                    check,
                    port_name: d.port_name.clone(),
                    docker_health: d.docker_health.clone(),
                });
            }
        }
        let mut aliases: BTreeMap<AliasName, AliasDef> = base
            .aliases
            .iter()
            .map(|(name, a)| {
                (
                    name.clone(),
                    AliasDef {
                        zone: a.zone,
                        targets: a.targets.clone(),
                        port_name: a.port_name.clone(),
                        if_none_healthy: a.if_none_healthy,
                        source: Source::Config,
                    },
                )
            })
            .collect();
        for (name, spec) in &registry.api_aliases {
            if aliases.contains_key(name) {
                continue;
            }
            let Some(zone) = base
                .zones
                .iter()
                .position(|z| z.origin.name().zone_of(name.name()))
            else {
                continue;
            };
            aliases.insert(
                name.clone(),
                AliasDef {
                    zone,
                    targets: Vec::new(),
                    port_name: spec.port_name.clone(),
                    if_none_healthy: spec.if_none_healthy,
                    source: Source::Api,
                },
            );
        }
        if base.docker {
            let mut names: Vec<ServiceName> = named.into_iter().cloned().collect();
            names.extend(
                base.aliases
                    .values()
                    .flat_map(|a| a.targets.iter().cloned()),
            );
            for name in names {
                services.entry(name).or_insert_with(|| Service {
                    defined_by: None,
                    check: base.default_check.clone(),
                    endpoints: Vec::new(),
                });
            }
        }
        let mut alias_ents: Vec<HashSet<WireName>> = vec![HashSet::new(); base.zones.len()];
        for (name, def) in &aliases {
            let (Some(ents), Some(zone)) = (alias_ents.get_mut(def.zone), base.zones.get(def.zone))
            else {
                continue;
            };
            let alias = wire_name(name.name());
            let mut at = crate::wire::parent(&alias);
            while let Some(parent) = at {
                if parent.len() <= zone.origin.wire().len() {
                    break;
                }
                ents.insert(parent.into());
                at = crate::wire::parent(parent);
            }
        }
        Self {
            zones: base.zones.clone(),
            alias_ents: alias_ents.into_iter().map(Arc::new).collect(),
            services,
            aliases,
            alias_ttl: base.alias_ttl,
            negative_ttl: base.negative_ttl,
            defaults: base.defaults.clone(),
            docker: base.docker,
        }
    }

    /// The TTL window of answers: what a client may cache, at most.
    pub fn ttl_window_s(&self) -> u32 {
        self.alias_ttl.max(self.negative_ttl)
    }

    /// Finds an alias from text a user typed (`web`, `web.internal`, `web.internal.`).
    pub fn find_alias(&self, text: &str) -> Option<&AliasName> {
        let wanted = self.resolve_alias(text).ok()?;
        self.aliases.get_key_value(&wanted).map(|(k, _)| k)
    }

    /// The alias name `text` means, relative to the first zone.
    pub fn resolve_alias(&self, text: &str) -> Result<AliasName, String> {
        let origin = self
            .zones
            .first()
            .ok_or_else(|| "no zone is configured".to_owned())?;
        AliasName::resolve(text, origin.origin.name()).map_err(|e| e.0)
    }

    /// The endpoint addresses of `service` (none for an unknown one).
    pub fn addrs(&self, service: &ServiceName) -> Vec<Endpoint> {
        self.services
            .get(service)
            .map(|s| s.addrs().collect())
            .unwrap_or_default()
    }
}

impl ZoneNames for ZoneStatics {
    fn origin(&self) -> &Name {
        self.origin.name()
    }
    fn static_name_under(&self, name: &LowerName) -> Option<String> {
        ZoneStatics::static_name_under(self, name).map(|n| n.to_string())
    }
    fn describe(&self) -> String {
        format!("the zone file of `{}`", self.origin.name())
    }
}

#[cfg(test)]
mod tests;
