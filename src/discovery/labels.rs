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
//! | `aliasd.health.<key>` | a health setting over the service's: kind, path, expect, host, interval, timeout, rise, fall |

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use crate::check::{CheckConfig, HealthSpec};
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
            "service" | "port" | "port_name" | "network" => {}
            _ => match rest.strip_prefix("health.") {
                Some(setting) => {
                    if let Err(e) = health.set(setting, value) {
                        problems.push(format!("label {key}: {e}"));
                    }
                }
                None => problems.push(format!(
                    "label {key} is not one aliasd reads ({prefix}service, {prefix}port, {prefix}port_name, {prefix}network, {prefix}health.*)"
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
    let wanted = label("network").map(String::as_str).or(network);
    let ip = match pick_address(&facts.networks, wanted) {
        Ok(ip) => Some(ip),
        Err(e) => {
            problems.push(e);
            None
        }
    };
    match (service, port, ip) {
        (Some(service), Some(port), Some(ip)) if problems.is_empty() => {
            let endpoint: Endpoint = SocketAddr::new(ip, port)
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
