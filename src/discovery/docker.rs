//! Docker discovery with bollard: list, then follow the events stream, and list again after any
//! break (kube-rs's watcher, Traefik's Docker provider).
//!
//! Each session negotiates the API version (the daemon may be older than bollard's default),
//! notes the time, lists the labelled containers, sends the controller the whole view, then
//! follows events from that time, so nothing between the list and the stream is missed. A burst
//! of events becomes one update (a short coalescing window); every update is the whole view.
//! The view keeps, per container, the endpoint its labels make or why it is skipped.
//!
//! A container leaves the view as soon as its stop begins: `docker stop` sends the `kill` event
//! with the container's stop signal before the process has even seen it, well before `die`.
//! A container that dies without being stopped (`docker kill`, a crash) stays in the view as
//! `died` until it is removed or starts again, so a promotion to it fails at once.
//!
//! When the daemon goes away (socket gone, daemon restarting, an API that stops answering: a
//! ping every few seconds catches that) the session ends, the controller is told, and the last
//! view stays in place; reconnecting backs off up to [`MAX_BACKOFF`], and the next session's
//! list replaces the whole view, so containers that vanished meanwhile go in one change.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::labels::{Addressing, ContainerFacts, Published, endpoint_of, signal_number};
use crate::check::CheckConfig;
use crate::clock::now_ms;
use crate::config::{DockerConfig, DockerHost};
use crate::controller::{DockerCommand, SourceUpdate};
use crate::model::ServiceName;
use crate::registry::{ContainerRef, DockerEndpoint, DockerHealth, Problem, SourceStatus};

/// How long a list, inspect or ping may take before the daemon counts as hung.
const REQUEST_TIMEOUT_S: u64 = 10;
/// How often the daemon is pinged while the events stream is quiet.
const PING_EVERY: Duration = Duration::from_secs(3);
const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// Events within this window after the first of a burst go out as one update.
const COALESCE: Duration = Duration::from_millis(20);
const MIN_BACKOFF: Duration = Duration::from_millis(250);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a `docker stop` may take to answer: it waits for the container to exit, up to the
/// container's own stop timeout, so this only bounds a daemon that hangs.
const STOP_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// What one container is to discovery.
#[derive(Debug, Clone)]
pub struct Tracked {
    facts: ContainerFacts,
    /// The service and endpoint, or why the container is skipped.
    made: Result<(ServiceName, DockerEndpoint), String>,
    /// `docker stop` began: out of the view, whatever comes next.
    stopping: bool,
    /// Died without a stop: kept, failed, until removed or started again.
    died: Option<String>,
}

/// How containers become endpoints: the label prefix, the labels a container must carry to be
/// discovered at all, the network to take the address from (when a container has several), how
/// the address is chosen, and the check of endpoints whose labels set none.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub prefix: &'a str,
    /// `docker.labels`.
    pub labels: &'a [(String, Option<String>)],
    pub network: Option<&'a str>,
    pub addressing: Addressing,
    pub default_check: &'a CheckConfig,
}

impl Rules<'_> {
    /// Whether discovery looks at a container with these facts at all: it is labelled for
    /// aliasd and carries every label of `docker.labels`.
    pub fn selects(&self, facts: &ContainerFacts) -> bool {
        facts.is_labelled(self.prefix) && facts.carries(self.labels)
    }

    /// `facts` as discovery tracks them: the endpoint, or why the container is skipped.
    pub fn track(&self, facts: ContainerFacts) -> Tracked {
        let made = endpoint_of(
            &facts,
            self.prefix,
            self.network,
            self.default_check,
            self.addressing,
        );
        Tracked {
            facts,
            made,
            stopping: false,
            died: None,
        }
    }
}

/// The whole view: every labelled container. Pure: events and inspections go in, whole
/// endpoint sets come out ([`View::update`]).
#[derive(Debug, Default)]
pub struct View {
    containers: HashMap<String, Tracked>,
}

/// What an event does to the view.
#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    Nothing,
    Changed,
    /// The container must be inspected again (it started, its networks or health changed).
    Refresh(String),
}

impl View {
    /// Applies one event where the event says enough by itself; pure. `prefix` is the label
    /// prefix that marks a container as aliasd's.
    pub fn on_event(&mut self, event: &EventMessage, prefix: &str) -> Effect {
        let action = event.action.as_deref().unwrap_or("");
        let attributes = event.actor.as_ref().and_then(|a| a.attributes.as_ref());
        let attribute = |key: &str| attributes.and_then(|a| a.get(key)).map(String::as_str);
        let id = match event.typ {
            Some(EventMessageTypeEnum::CONTAINER) => {
                event.actor.as_ref().and_then(|a| a.id.clone())
            }
            // Network events name the container in their attributes.
            Some(EventMessageTypeEnum::NETWORK) => attribute("container").map(str::to_owned),
            _ => None,
        };
        let Some(id) = id else {
            return Effect::Nothing;
        };
        let is_network = event.typ == Some(EventMessageTypeEnum::NETWORK);
        let labelled = attribute(&format!("{prefix}service")).is_some();
        if !self.containers.contains_key(&id) && !labelled && !is_network {
            return Effect::Nothing;
        }
        debug!(container = %id, action, "Docker event");
        let changed = |yes: bool| {
            if yes {
                Effect::Changed
            } else {
                Effect::Nothing
            }
        };
        match action {
            "kill" => {
                let Some(t) = self.containers.get_mut(&id) else {
                    return Effect::Nothing;
                };
                let signal = attribute("signal").and_then(signal_number);
                if signal == Some(t.facts.stop_signal_number()) {
                    // `docker stop` has begun: leave the answers now, before the process exits.
                    let first = !t.stopping;
                    t.stopping = true;
                    if first {
                        info!(container = %t.facts.name, "container stopping: out of the answers");
                    }
                    changed(first)
                } else if signal == Some(9) && !t.stopping && t.died.is_none() {
                    t.died = Some("killed (SIGKILL)".into());
                    warn!(container = %t.facts.name, "container killed: its endpoint fails at once");
                    Effect::Changed
                } else {
                    // Other signals (HUP, USR1) ask a running process to reload.
                    Effect::Nothing
                }
            }
            "die" => {
                let Some(t) = self.containers.get_mut(&id) else {
                    return Effect::Nothing;
                };
                if t.stopping || t.died.is_some() {
                    return Effect::Nothing;
                }
                let code = attribute("exitCode").unwrap_or("?");
                if code == "0" {
                    t.stopping = true;
                } else {
                    t.died = Some(format!("exited with code {code}"));
                    warn!(container = %t.facts.name, code, "container died: its endpoint fails at once");
                }
                Effect::Changed
            }
            "stop" | "pause" => {
                let Some(t) = self.containers.get_mut(&id) else {
                    return Effect::Nothing;
                };
                let first = !t.stopping && t.died.is_none();
                t.stopping = t.stopping || t.died.is_none();
                changed(first)
            }
            "destroy" => changed(self.containers.remove(&id).is_some()),
            "start" | "unpause" | "restart" | "rename" | "connect" | "disconnect" => {
                Effect::Refresh(id)
            }
            a if a.starts_with("health_status") => Effect::Refresh(id),
            _ => Effect::Nothing,
        }
    }

    /// A fresh inspection of container `id` (`None`: it is gone); returns whether the view
    /// changed. A container that is not labelled, or not running, is not taken in.
    pub fn inspected(&mut self, id: &str, facts: Option<ContainerFacts>, rules: &Rules) -> bool {
        let Some(facts) = facts else {
            return self.containers.remove(id).is_some();
        };
        if !rules.selects(&facts) || !facts.running {
            // A network change of a stopped container: nothing to answer.
            return false;
        }
        let tracked = rules.track(facts);
        let before = self.containers.get(id);
        let changed =
            before.is_none_or(|b| b.made != tracked.made || b.stopping || b.died.is_some());
        self.containers.insert(id.to_owned(), tracked);
        changed
    }

    /// Whole endpoint sets per service, and the skipped containers.
    pub fn update(&self) -> SourceUpdate {
        let mut services: BTreeMap<ServiceName, Vec<DockerEndpoint>> = BTreeMap::new();
        let mut problems = Vec::new();
        for t in self.containers.values() {
            match &t.made {
                Ok((service, endpoint)) => {
                    if t.stopping {
                        continue;
                    }
                    let mut endpoint = endpoint.clone();
                    if let Some(why) = &t.died {
                        endpoint.docker_health = Some(DockerHealth::Died(why.clone()));
                    }
                    services.entry(service.clone()).or_default().push(endpoint);
                }
                Err(message) if !t.stopping && t.died.is_none() => problems.push(Problem {
                    container: t.facts.container(),
                    message: message.clone(),
                }),
                Err(_) => {}
            }
        }
        for endpoints in services.values_mut() {
            endpoints.sort_by_key(|e| e.endpoint);
        }
        problems.sort_by(|a, b| a.container.name.cmp(&b.container.name));
        SourceUpdate::Docker { services, problems }
    }
}

/// Runs Docker discovery until `shutdown`: sends whole views and status changes to `updates`,
/// and carries out the controller's `commands`. `advertise` is this node's `[cluster]
/// advertise` address, which `address = host` endpoints take.
pub async fn run(
    config: DockerConfig,
    advertise: Option<IpAddr>,
    default_check: CheckConfig,
    updates: mpsc::Sender<SourceUpdate>,
    mut commands: mpsc::Receiver<DockerCommand>,
    shutdown: CancellationToken,
) {
    let mut discovery = Discovery {
        endpoint: config.host.to_string(),
        config,
        advertise,
        default_check,
        updates,
        last_status: None,
        stops: JoinSet::new(),
    };
    let mut backoff = MIN_BACKOFF;
    loop {
        let outcome = match discovery.connect().await {
            Ok((docker, version)) => {
                backoff = MIN_BACKOFF;
                discovery
                    .session(&docker, version, &mut commands, &shutdown)
                    .await
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => break,
            Err(error) => {
                discovery.status(false, Some(error), None).await;
            }
        }
        // Stops asked while the daemon is away wait for the next session.
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    discovery.stops.abort_all();
    info!("Docker discovery stopped");
}

struct Discovery {
    config: DockerConfig,
    advertise: Option<IpAddr>,
    endpoint: String,
    default_check: CheckConfig,
    updates: mpsc::Sender<SourceUpdate>,
    last_status: Option<(bool, Option<String>)>,
    /// Container stops in progress.
    stops: JoinSet<()>,
}

impl Discovery {
    /// Connects and negotiates the API version. Returns the client and what it speaks.
    async fn connect(&self) -> Result<(Docker, String), String> {
        let docker = match &self.config.host {
            DockerHost::Unix(path) => Docker::connect_with_unix(
                &path.to_string_lossy(),
                REQUEST_TIMEOUT_S,
                bollard::API_DEFAULT_VERSION,
            ),
            DockerHost::Http(url) => {
                Docker::connect_with_http(url, REQUEST_TIMEOUT_S, bollard::API_DEFAULT_VERSION)
            }
        }
        .map_err(|e| format!("cannot reach Docker at {}: {e}", self.endpoint))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| format!("Docker at {} does not answer: {e}", self.endpoint))?;
        let version = docker
            .version()
            .await
            .map(|v| {
                format!(
                    "API {} (Docker {})",
                    v.api_version.unwrap_or_default(),
                    v.version.unwrap_or_default()
                )
            })
            .map_err(|e| format!("Docker at {} does not answer: {e}", self.endpoint))?;
        Ok((docker, version))
    }

    /// Tells the controller whether Docker is reachable, when that changed.
    async fn status(&mut self, connected: bool, error: Option<String>, version: Option<String>) {
        let key = (connected, error.clone());
        if self.last_status.as_ref() == Some(&key) {
            return;
        }
        self.last_status = Some(key);
        let status = SourceStatus {
            connected,
            since_ms: now_ms(),
            last_sync_ms: None,
            error,
            endpoint: self.endpoint.clone(),
            version,
        };
        let _ = self.updates.send(SourceUpdate::DockerStatus(status)).await;
    }

    /// One connected session: list, then follow events. `Ok` on shutdown, `Err` with the
    /// reason when the daemon went away.
    async fn session(
        &mut self,
        docker: &Docker,
        version: String,
        commands: &mut mpsc::Receiver<DockerCommand>,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        // Events from just before the list on, so none between the two is missed.
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(1);
        let mut view = self.list(docker).await?;
        let events = docker.events(Some(EventsOptions {
            since: Some(since.to_string()),
            until: None,
            filters: Some(HashMap::from([(
                "type".to_owned(),
                vec!["container".to_owned(), "network".to_owned()],
            )])),
        }));
        tokio::pin!(events);
        info!(docker = %self.endpoint, %version, containers = view.containers.len(), "Docker listed");
        // The fresh view first: the controller acts on "connected" (stops it owes) with it.
        let _ = self.updates.send(view.update()).await;
        self.status(true, None, Some(version.clone())).await;
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let mut flush_at: Option<tokio::time::Instant> = None;
        loop {
            let flush = async {
                match flush_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(event)) => {
                        if self.apply(docker, &mut view, &event).await? && flush_at.is_none() {
                            flush_at = Some(tokio::time::Instant::now() + COALESCE);
                        }
                    }
                    Some(Err(e)) => return Err(format!("the Docker events stream broke: {e}")),
                    None => return Err("the Docker events stream ended".into()),
                },
                () = flush => {
                    flush_at = None;
                    let _ = self.updates.send(view.update()).await;
                }
                command = commands.recv() => match command {
                    Some(DockerCommand::Stop { alias, op, containers, notes }) => {
                        self.stop(docker, alias, op, containers, notes);
                    }
                    None => return Ok(()),
                },
                _ = ping.tick() => {
                    match tokio::time::timeout(PING_TIMEOUT, docker.ping()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Err(format!("Docker stopped answering: {e}")),
                        Err(_) => return Err(format!(
                            "Docker stopped answering: no reply to a ping within {}s",
                            PING_TIMEOUT.as_secs()
                        )),
                    }
                }
                Some(_) = self.stops.join_next(), if !self.stops.is_empty() => {}
                () = shutdown.cancelled() => return Ok(()),
            }
        }
    }

    /// Lists the labelled running containers and inspects each.
    async fn list(&self, docker: &Docker) -> Result<View, String> {
        let summaries = docker
            .list_containers(Some(ListContainersOptions {
                all: false,
                filters: Some(list_filters(&self.config.label_prefix, &self.config.labels)),
                ..Default::default()
            }))
            .await
            .map_err(|e| failed("cannot list containers", &e))?;
        let mut view = View::default();
        for summary in summaries {
            let Some(id) = summary.id else { continue };
            match docker.inspect_container(&id, None).await {
                Ok(inspect) => {
                    view.inspected(&id, Some(facts_of(&inspect)), &self.rules());
                }
                // Removed between the list and the inspect.
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(failed(&format!("cannot inspect container {id}"), &e)),
            }
        }
        Ok(view)
    }

    fn rules(&self) -> Rules<'_> {
        Rules {
            prefix: &self.config.label_prefix,
            labels: &self.config.labels,
            network: self.config.network.as_deref(),
            addressing: Addressing {
                default: self.config.address,
                advertise: self.advertise,
            },
            default_check: &self.default_check,
        }
    }

    /// Applies one event to the view; returns whether the view changed.
    async fn apply(
        &self,
        docker: &Docker,
        view: &mut View,
        event: &EventMessage,
    ) -> Result<bool, String> {
        match view.on_event(event, &self.config.label_prefix) {
            Effect::Nothing => Ok(false),
            Effect::Changed => Ok(true),
            Effect::Refresh(id) => self.refresh(docker, view, &id).await,
        }
    }

    /// Inspects a container again and replaces its entry.
    async fn refresh(&self, docker: &Docker, view: &mut View, id: &str) -> Result<bool, String> {
        let facts = match docker.inspect_container(id, None).await {
            Ok(inspect) => Some(facts_of(&inspect)),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(failed(&format!("cannot inspect container {id}"), &e)),
        };
        Ok(view.inspected(id, facts, &self.rules()))
    }

    /// Stops `containers` in the background, each with its own stop timeout, and reports.
    fn stop(
        &mut self,
        docker: &Docker,
        alias: crate::model::AliasName,
        op: u64,
        containers: Vec<ContainerRef>,
        notes: Vec<String>,
    ) {
        let mut docker = docker.clone();
        let updates = self.updates.clone();
        // `docker stop` waits for the container to exit, up to its own stop timeout.
        docker.set_timeout(STOP_REQUEST_TIMEOUT);
        self.stops.spawn(async move {
            let mut stopped = Vec::new();
            let mut failed = Vec::new();
            let mut running = JoinSet::new();
            for c in containers {
                let docker = docker.clone();
                running.spawn(async move {
                    let result = docker.stop_container(&c.id, None).await;
                    (c, result)
                });
            }
            while let Some(Ok((c, result))) = running.join_next().await {
                let label = format!("{} ({})", c.name, c.short_id());
                match result {
                    Ok(()) => stopped.push(label),
                    // 304: it was stopped already; 404: it is gone.
                    Err(e) if is_not_modified(&e) || is_not_found(&e) => stopped.push(label),
                    Err(e) => failed.push(format!("{label}: {e}")),
                }
            }
            stopped.sort();
            failed.sort();
            let mut parts = Vec::new();
            if !stopped.is_empty() {
                parts.push(format!("stopped {}", stopped.join(", ")));
            }
            if !failed.is_empty() {
                parts.push(format!("could not stop {}", failed.join(", ")));
            }
            parts.extend(notes);
            if parts.is_empty() {
                parts.push("no container of the retired services was running".into());
            }
            let report = parts.join("; ");
            info!(alias = %alias, op, report, "retired containers stopped");
            let _ = updates
                .send(SourceUpdate::Stopped { alias, op, report })
                .await;
        });
    }
}

/// The filters of the list of containers: labelled for aliasd (`<prefix>service`) and
/// carrying every label of `docker.labels` (Docker ands the `label` filters).
pub fn list_filters(
    prefix: &str,
    labels: &[(String, Option<String>)],
) -> HashMap<String, Vec<String>> {
    let mut wanted = vec![format!("{prefix}service")];
    wanted.extend(labels.iter().map(|(key, value)| match value {
        Some(value) => format!("{key}={value}"),
        None => key.clone(),
    }));
    HashMap::from([("label".to_owned(), wanted)])
}

/// What a failed request says in the status: a request that timed out means the daemon hung,
/// said the same way whichever request found it.
fn failed(what: &str, e: &bollard::errors::Error) -> String {
    if matches!(e, bollard::errors::Error::RequestTimeoutError) {
        format!("Docker stopped answering: {what}: no reply within {REQUEST_TIMEOUT_S}s")
    } else {
        format!("{what}: {e}")
    }
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn is_not_modified(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 304,
            ..
        }
    )
}

/// What discovery needs of an inspected container.
pub fn facts_of(inspect: &ContainerInspectResponse) -> ContainerFacts {
    let state = inspect.state.as_ref();
    let config = inspect.config.as_ref();
    let networks = inspect
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|nets| {
            let mut list: Vec<(String, Option<IpAddr>, Option<IpAddr>)> = nets
                .iter()
                .map(|(name, ep)| {
                    let parse = |s: &Option<String>| {
                        s.as_deref()
                            .filter(|s| !s.is_empty())
                            .and_then(|s| s.parse().ok())
                    };
                    (
                        name.clone(),
                        parse(&ep.ip_address),
                        parse(&ep.global_ipv6_address),
                    )
                })
                .collect();
            list.sort();
            list
        })
        .unwrap_or_default();
    use bollard::models::HealthStatusEnum as H;
    let health = state
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.status)
        .and_then(|s| match s {
            H::STARTING => Some(DockerHealth::Starting),
            H::HEALTHY => Some(DockerHealth::Healthy),
            H::UNHEALTHY => Some(DockerHealth::Unhealthy),
            H::NONE | H::EMPTY => None,
        });
    ContainerFacts {
        id: inspect.id.clone().unwrap_or_default(),
        name: inspect
            .name
            .as_deref()
            .unwrap_or("")
            .trim_start_matches('/')
            .to_owned(),
        running: state.and_then(|s| s.running).unwrap_or(false)
            && !state.and_then(|s| s.paused).unwrap_or(false),
        labels: config
            .and_then(|c| c.labels.as_ref())
            .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        networks,
        health,
        stop_signal: config.and_then(|c| c.stop_signal.clone()),
        published: published_of(inspect),
    }
}

/// The TCP ports `inspect` says are published (`NetworkSettings.Ports`: the bindings in
/// place, with the host ports Docker picked), sorted.
fn published_of(inspect: &ContainerInspectResponse) -> Vec<Published> {
    let Some(ports) = inspect
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.as_ref())
    else {
        return Vec::new();
    };
    let mut out: Vec<Published> = ports
        .iter()
        .filter_map(|(key, bindings)| {
            let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
            let port = port.parse::<u16>().ok().filter(|_| proto == "tcp")?;
            Some((port, bindings.as_deref().unwrap_or_default()))
        })
        .flat_map(|(container_port, bindings)| {
            bindings.iter().filter_map(move |b| {
                let host_port = b.host_port.as_deref()?.parse::<u16>().ok()?;
                let host_ip = b
                    .host_ip
                    .as_deref()
                    .and_then(|ip| ip.parse::<IpAddr>().ok())
                    .filter(|ip| !ip.is_unspecified());
                (host_port > 0).then_some(Published {
                    container_port,
                    host_ip,
                    host_port,
                })
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests;
