//! `aliasd demo`: the whole system on loopback with no Docker and no root.
//!
//! Two backends answer with their version (`web-v1` and `web-v2` on distinct loopback
//! addresses), and aliasd serves `web.internal` from a generated config in a temporary directory,
//! starting linked to `web-v1`. The config goes through the same parser as any other.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::daemon::{Caps, Daemon, DaemonError, Ready};

/// The demo's fixed token: it only ever listens on loopback.
pub const DEMO_TOKEN: &str = "demo-token-not-a-secret";

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub dns_port: u16,
    pub api_port: u16,
    /// The public HTTP proxy for `web`, on 127.0.0.1.
    pub proxy_port: u16,
    /// Port 0 picks a free port, the same on both backends' addresses.
    pub backend_port: u16,
    /// Keep the state here, across runs; by default it lives in the temporary directory and
    /// every run starts fresh.
    pub state_dir: Option<std::path::PathBuf>,
    /// Once serving, write the bound addresses here as JSON, as `aliasd run --ready-file` does:
    /// with port 0 for the listeners, a test learns where the demo listens.
    pub ready_file: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot create the demo directory: {0}")]
    TempDir(std::io::Error),
    #[error("the demo config is invalid (a bug): {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
    /// One of the demo's addresses cannot be listened on. One line: the OS error is worded in
    /// `reason` and is not a source, so `{:#}` does not print it a second time.
    #[error("cannot listen for {what} on {addr}: {reason}; choose another port with {flag}")]
    Port {
        what: String,
        addr: SocketAddr,
        reason: String,
        flag: &'static str,
    },
}

impl DemoError {
    fn port(
        what: impl Into<String>,
        addr: SocketAddr,
        error: &std::io::Error,
        flag: &'static str,
    ) -> Self {
        use std::io::ErrorKind;
        let reason = match error.kind() {
            ErrorKind::AddrInUse => "another program has that port".to_owned(),
            ErrorKind::AddrNotAvailable => {
                "the address is not available on this machine".to_owned()
            }
            ErrorKind::PermissionDenied => "permission denied".to_owned(),
            _ => error.to_string(),
        };
        Self::Port {
            what: what.into(),
            addr,
            reason,
            flag,
        }
    }
}

const V1: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
const V2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 12);

/// Runs the demo until `shutdown`.
pub async fn run(options: DemoOptions, shutdown: CancellationToken) -> Result<(), DemoError> {
    let dir = tempfile::Builder::new()
        .prefix("aliasd-demo-")
        .tempdir()
        .map_err(DemoError::TempDir)?;
    let mut options = options;
    for (name, ip) in [("web-v1", V1), ("web-v2", V2)] {
        let addr = SocketAddr::new(IpAddr::V4(ip), options.backend_port);
        let backend = crate::backend::spawn(addr, name, shutdown.clone())
            .await
            .map_err(|e| DemoError::port(format!("backend {name}"), addr, &e, "--backend-port"))?;
        // With port 0, web-v1 takes a free port and web-v2 the same one, so that the two
        // versions differ only in their address, as the config and the walk-through say.
        options.backend_port = backend.addr.port();
    }
    let config = write_config(dir.path(), &options)?;
    let state_dir = config.state_dir.clone();
    let dns = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), options.dns_port);
    // The demo's caps are aliasd's defaults, not its user's choice: no open-file warning.
    let daemon = Daemon::start_with(config, shutdown, Caps::Defaults)
        .await
        .map_err(|e| match e {
            DaemonError::BindDns(e) => DemoError::port("DNS", dns, &e, "--dns-port"),
            DaemonError::BindApi { addr, source } => {
                DemoError::port("the API", addr, &source, "--api-port")
            }
            DaemonError::BindProxy(p) => {
                DemoError::port("the proxy", p.addr, &p.source, "--proxy-port")
            }
            other => DemoError::Daemon(other),
        })?;
    if let Some(path) = &options.ready_file {
        crate::daemon::write_ready_file(path, &daemon.ready).map_err(|source| {
            DemoError::Daemon(DaemonError::ReadyFile {
                path: path.clone(),
                source,
            })
        })?;
    }
    println!(
        "{}",
        instructions(&daemon.ready, options.backend_port, dir.path(), &state_dir)
    );
    daemon.wait().await?;
    Ok(())
}

fn write_config(dir: &Path, options: &DemoOptions) -> Result<Config, DemoError> {
    let zone = "\
$TTL 300
@       IN SOA  ns1.internal. hostmaster.internal. ( 1 3600 600 86400 5 )
        IN NS   ns1.internal.
ns1     IN A    127.0.0.1
db      IN A    127.0.0.21
";
    std::fs::write(dir.join("internal.zone"), zone)?;
    let port = options.backend_port;
    let text = format!(
        r#"# Generated by `aliasd demo`.
[dns]
listen = ["127.0.0.1:{dns}"]
alias_ttl = 5
negative_ttl = 5

[[zone]]
origin = "internal."
file = "internal.zone"

[api]
listen = "127.0.0.1:{api}"

[[api.token]]
name = "demo"
secret = "{DEMO_TOKEN}"

[state]
dir = {state_dir}

# Each backend answers GET /healthz; `curl -X POST http://ADDR/healthz/off` makes it fail.
[health]
kind = "http"
path = "/healthz"
interval = "1s"
timeout = "500ms"
rise = 2
fall = 2

[promotion]
observe = "10s"
warm_timeout = "1m"
drain_grace = "2s"

[[service]]
name = "web-v1"
endpoints = ["{V1}:{port}"]

[[service]]
name = "web-v2"
endpoints = ["{V2}:{port}"]

[[alias]]
name = "web"
targets = ["web-v1"]

# The public entrance: HTTP through aliasd's proxy follows the alias like DNS does.
[[proxy]]
listen = "127.0.0.1:{proxy}"
alias = "web"
mode = "http"
"#,
        dns = options.dns_port,
        api = options.api_port,
        proxy = options.proxy_port,
        // A TOML string, escaped by the TOML library; relative paths are taken from the
        // directory the demo was started in.
        state_dir = toml::Value::String(match &options.state_dir {
            None => "state".to_owned(),
            Some(p) => std::env::current_dir()?.join(p).display().to_string(),
        }),
    );
    let path = dir.join("aliasd.toml");
    std::fs::write(&path, &text)?;
    Ok(Config::parse(&text, &path, &|_| None)?)
}

fn instructions(ready: &Ready, backend_port: u16, dir: &Path, state: &Path) -> String {
    let dns = ready.dns[0];
    let api = ready.api;
    format!(
        r#"
aliasd demo is running (config in {dir}, state in {state}).

  web-v1 answers on http://{V1}:{backend_port}/   web-v2 on http://{V2}:{backend_port}/
  DNS on {dns} (udp and tcp), control API on http://{api}
  the dashboard on http://{api}/ui (token: {DEMO_TOKEN})
  the public proxy for web.internal on http://{proxy}/

In another terminal:

  export ALIASCTL_SERVER=http://{api} ALIASCTL_TOKEN={DEMO_TOKEN}
  {aliasctl}
  dig @{ip} -p {port} web.internal +short          # 127.0.0.11: web-v1
  curl http://$(dig @{ip} -p {port} web.internal +short | head -n1):{backend_port}/
  curl http://{proxy}/                             # web-v1, through the proxy
  aliasctl status web

By hand:      aliasctl link web web-v1 web-v2   then   aliasctl link web web-v2
Health-gated: aliasctl promote web --to web-v2 --wait      (rollback: aliasctl rollback web --wait)
Watch:        aliasctl watch web        and        while sleep 0.5; do dig @{ip} -p {port} web.internal +short | tr '\n' ' '; echo; done
              while sleep 0.2; do curl -s http://{proxy}/; done     (the proxy follows, no request fails)
Fail v2:      curl -X POST http://{V2}:{backend_port}/healthz/off   (heal: /healthz/on)
History:      aliasctl history web

Press Ctrl-C to stop.
"#,
        dir = dir.display(),
        state = state.display(),
        proxy = ready
            .proxies
            .first()
            .map_or_else(|| "-".to_owned(), ToString::to_string),
        ip = dns.ip(),
        port = dns.port(),
        aliasctl = aliasctl_hint(),
    )
}

/// How the reader puts `aliasctl` on PATH: the directory of this `aliasd` when `aliasctl` was
/// built beside it (`cargo build --release --bins`), else how to build it there.
fn aliasctl_hint() -> String {
    let dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    match dir {
        Some(dir) if dir.join("aliasctl").is_file() => {
            format!("export PATH=\"{}:$PATH\"", dir.display())
        }
        _ => "cargo build --release --bins && export PATH=\"$PWD/target/release:$PATH\"".to_owned(),
    }
}
