//! How a container becomes an endpoint: its labels say which service and port, optionally the
//! health-check settings, the SRV port name and the network; its networks give the address.
//!
//! Pure: [`ContainerFacts`] is what discovery read of a container, and [`endpoint_of`] either
//! makes the endpoint or says, naming the label, why the container is skipped.
//!
//! Labels, with the default prefix `aliasd.`:
//!
//! | label | meaning |
//! | --- | --- |
//! | `aliasd.service` | the service (required), such as `web-v2` |
//! | `aliasd.port` | the port the service listens on in the container (required) |
//! | `aliasd.port_name` | also publish the endpoint at `_<port_name>._tcp.<alias>` |
//! | `aliasd.network` | the network whose address to use, when the container has several |
//! | `aliasd.address` | `container` (its own address) or `host` (this node's advertise address and the published port), over `docker.address` |
//! | `aliasd.health.<key>` | a health setting over the service's: kind, path, expect, host, interval, timeout, rise, fall |

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use crate::check::{CheckConfig, HealthSpec};
use crate::config::DockerAddress;
use crate::model::check_port_name;
use crate::model::{Endpoint, ServiceName};
use crate::registry::{ContainerRef, DockerEndpoint, DockerHealth};

/// The longest label value aliasd reads; longer ones are a mistake.
pub const MAX_LABEL_VALUE: usize = 1024;

/// What discovery read of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerFacts {
    pub id: String,
    /// Without Docker's leading `/`.
    pub name: String,
    pub running: bool,
    pub labels: BTreeMap<String, String>,
    /// Network name, its IPv4 address and its global IPv6 address.
    pub networks: Vec<(String, Option<IpAddr>, Option<IpAddr>)>,
    pub health: Option<DockerHealth>,
    /// The signal `docker stop` sends it (`SIGTERM` unless the image or run says otherwise).
    pub stop_signal: Option<String>,
    /// Its published TCP ports (`docker run -p`), sorted.
    pub published: Vec<Published>,
}

/// A container's TCP port published on the host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Published {
    pub container_port: u16,
    /// The host address it is bound to; `None` for all of them (`0.0.0.0`, `::` or unset).
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
}

/// How endpoints get their address: the default of `docker.address`, and this node's
/// `[cluster] advertise` address that `host` needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Addressing {
    pub default: DockerAddress,
    pub advertise: Option<IpAddr>,
}

impl ContainerFacts {
    pub fn container(&self) -> ContainerRef {
        ContainerRef {
            id: self.id.clone(),
            name: self.name.clone(),
        }
    }

    /// Whether the labels ask aliasd to look at this container at all.
    pub fn is_labelled(&self, prefix: &str) -> bool {
        self.labels.contains_key(&format!("{prefix}service"))
    }

    /// Whether it carries every label of `filter` (`docker.labels`); `(key, None)` matches any
    /// value.
    pub fn carries(&self, filter: &[(String, Option<String>)]) -> bool {
        filter
            .iter()
            .all(|(key, value)| match (self.labels.get(key), value) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(have), Some(want)) => have == want,
            })
    }

    /// The number of the signal `docker stop` sends it.
    pub fn stop_signal_number(&self) -> i32 {
        self.stop_signal
            .as_deref()
            .and_then(signal_number)
            .unwrap_or(15)
    }
}

/// `SIGTERM`, `TERM` or `15` as a number.
pub fn signal_number(text: &str) -> Option<i32> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i32>() {
        return Some(n);
    }
    let name = text.strip_prefix("SIG").unwrap_or(text);
    Some(match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "KILL" => 9,
        "USR1" => 10,
        "USR2" => 12,
        "TERM" => 15,
        "STOP" => 19,
        "WINCH" => 28,
        "PWR" => 30,
        _ => return None,
    })
}

/// The endpoint `facts` describes, or why it is skipped (the message names the label).
pub fn endpoint_of(
    facts: &ContainerFacts,
    prefix: &str,
    network: Option<&str>,
    default_check: &CheckConfig,
    addressing: Addressing,
) -> Result<(ServiceName, DockerEndpoint), String> {
    let label = |key: &str| facts.labels.get(&format!("{prefix}{key}"));
    let mut problems = Vec::new();
    let mut health = HealthSpec::default();
    for (key, value) in &facts.labels {
        let Some(rest) = key.strip_prefix(prefix) else {
            continue;
        };
        if value.len() > MAX_LABEL_VALUE {
            problems.push(format!(
                "label {key} is longer than {MAX_LABEL_VALUE} characters"
            ));
            continue;
        }
        match rest {
            "service" | "port" | "port_name" | "network" | "address" => {}
            _ => match rest.strip_prefix("health.") {
                Some(setting) => {
                    if let Err(e) = health.set(setting, value) {
                        problems.push(format!("label {key}: {e}"));
                    }
                }
                None => problems.push(format!(
                    "label {key} is not one aliasd reads ({prefix}service, {prefix}port, {prefix}port_name, {prefix}network, {prefix}address, {prefix}health.*)"
                )),
            },
        }
    }
    if let Err(e) = health.apply(default_check) {
        for p in e {
            problems.push(format!("label {prefix}health.{p}"));
        }
    }
    let service = match label("service").map(|s| s.parse::<ServiceName>()) {
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            problems.push(format!("label {prefix}service: {e}"));
            None
        }
        None => {
            problems.push(format!("label {prefix}service is missing"));
            None
        }
    };
    let port = match label("port") {
        None => {
            problems.push(format!(
                "label {prefix}port is missing: the port the service listens on in the container"
            ));
            None
        }
        Some(p) => match p.trim().parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                problems.push(format!(
                    "label {prefix}port: `{p}` is not a port number (1 to 65535)"
                ));
                None
            }
        },
    };
    let port_name = label("port_name").cloned();
    if let Some(p) = &port_name
        && let Err(e) = check_port_name(p)
    {
        problems.push(format!("label {prefix}port_name: {e}"));
    }
    let address = match label("address") {
        None => Some(addressing.default),
        Some(a) => match DockerAddress::parse(a.trim()) {
            Some(a) => Some(a),
            None => {
                problems.push(format!(
                    "label {prefix}address: `{a}` is not one of {}",
                    DockerAddress::CHOICES
                ));
                None
            }
        },
    };
    let socket = match (address, port) {
        (Some(DockerAddress::Container), Some(port)) => {
            let wanted = label("network").map(String::as_str).or(network);
            match pick_address(&facts.networks, wanted) {
                Ok(ip) => Some(SocketAddr::new(ip, port)),
                Err(e) => {
                    problems.push(e);
                    None
                }
            }
        }
        (Some(DockerAddress::Host), Some(port)) => match addressing.advertise {
            None => {
                problems.push(format!(
                    "address host needs this node's [cluster] advertise address, and the config has no [cluster]: set [cluster] advertise or use {prefix}address = container"
                ));
                None
            }
            Some(advertise) => match published_port(&facts.published, port, advertise) {
                Ok(host_port) => Some(SocketAddr::new(advertise, host_port)),
                Err(e) => {
                    problems.push(format!("label {prefix}port: {e}"));
                    None
                }
            },
        },
        _ => None,
    };
    match (service, socket) {
        (Some(service), Some(socket)) if problems.is_empty() => {
            let endpoint: Endpoint = socket
                .to_string()
                .parse()
                .map_err(|e: crate::model::InvalidName| e.0)?;
            Ok((
                service,
                DockerEndpoint {
                    endpoint,
                    container: facts.container(),
                    health,
                    port_name,
                    docker_health: facts.health.clone(),
                },
            ))
        }
        _ => Err(problems.join("; ")),
    }
}

/// The host port that publishes container port `port` where `advertise` reaches it: a binding
/// to all addresses, or to `advertise` itself; the lowest host port when there are several.
pub fn published_port(
    published: &[Published],
    port: u16,
    advertise: IpAddr,
) -> Result<u16, String> {
    let of_port: Vec<&Published> = published
        .iter()
        .filter(|p| p.container_port == port)
        .collect();
    let reachable = of_port
        .iter()
        .filter(|p| p.host_ip.is_none_or(|ip| ip == advertise))
        .map(|p| p.host_port)
        .min();
    match reachable {
        Some(host_port) => Ok(host_port),
        None if of_port.is_empty() => Err(format!(
            "container port {port} is not published on the host: publish port {port} (docker run -p {port}) or use address = container"
        )),
        None => Err(format!(
            "container port {port} is published only on {}, not on this node's advertise address {advertise}: publish port {port} on {advertise} or on all addresses (docker run -p {port}), or use address = container",
            of_port
                .iter()
                .map(|p| match p.host_ip {
                    Some(ip) => SocketAddr::new(ip, p.host_port).to_string(),
                    None => p.host_port.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The address on `wanted`, or on the container's only network with an address.
fn pick_address(
    networks: &[(String, Option<IpAddr>, Option<IpAddr>)],
    wanted: Option<&str>,
) -> Result<IpAddr, String> {
    let with_address: Vec<(&String, IpAddr)> = networks
        .iter()
        .filter_map(|(n, v4, v6)| v4.or(*v6).map(|ip| (n, ip)))
        .collect();
    let names = || {
        networks
            .iter()
            .map(|(n, _, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match wanted {
        Some(w) => with_address
            .iter()
            .find(|(n, _)| *n == w)
            .map(|(_, ip)| *ip)
            .ok_or_else(|| {
                format!(
                    "it has no address on network `{w}` (its networks: {})",
                    if networks.is_empty() {
                        "none".into()
                    } else {
                        names()
                    }
                )
            }),
        None => match with_address.as_slice() {
            [(_, ip)] => Ok(*ip),
            [] => Err(format!(
                "it has no address on any network (networks: {}); host networking is not supported",
                if networks.is_empty() {
                    "none".into()
                } else {
                    names()
                }
            )),
            _ => Err(format!(
                "it is on several networks ({}); say which with docker.network in the config or a network label",
                names()
            )),
        },
    }
}

#[cfg(test)]
mod tests;
