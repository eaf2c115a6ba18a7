//! Test support: a fixture directory with a config and a zone file, the real `aliasd` binary
//! started on ports from the OS, and small real clients (DNS over UDP and TCP, `dig`, HTTP).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aliasd::client::Client;
use aliasd::daemon::Ready;
use bytes::Bytes;
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

pub use crate::fixtures::ConfigText;

pub const TOKEN: &str = "test-token-0123456789";
/// Short promotion gates, so a whole promotion takes a second or two.
pub const FAST_PROMOTION: &str =
    "[promotion]\nobserve = \"300ms\"\nwarm_timeout = \"5s\"\ndrain_grace = \"200ms\"\n";
pub const TOKEN_NAME: &str = "ci";
/// Endpoints of the `big` alias: enough that its answer cannot fit 512 bytes.
pub const BIG_ENDPOINTS: usize = 60;

pub const ZONE: &str = "\
$ORIGIN internal.
$TTL 300
@       IN SOA  ns1.internal. hostmaster.internal. ( 100 3600 600 86400 300 )
        IN NS   ns1.internal.
@       IN TXT  \"static apex\"
ns1     IN A    127.0.0.1
db      IN A    10.9.0.1
db      IN AAAA fd00::9:1
cache   IN CNAME db
mail    IN MX   10 db.internal.
";

/// A directory holding `aliasd.toml`, `internal.zone` and the state directory.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        Self::with_extra("")
    }

    /// The standard config with `extra` TOML appended (more services or aliases).
    pub fn with_extra(extra: &str) -> Self {
        let big = (0..BIG_ENDPOINTS).map(|i| format!("10.1.{}.{}:8080", i / 200, i % 200 + 1));
        ConfigText::new()
            .dns("udp_sockets", 2)
            .dns("alias_ttl", 5)
            .dns("negative_ttl", 7)
            .service("web-v1", ["127.0.0.11:8080", "127.0.0.12:8080"])
            .service("web-v2", ["127.0.0.21:8081"])
            .service("api-v1", ["[fd00::1:11]:9000", "127.0.0.31:9000"])
            .service("empty", [""; 0])
            .service("big-v1", big)
            .alias("web", ["web-v1"])
            .section(
                "[[alias]]\nname = \"api.internal.\"\ntargets = [\"api-v1\"]\nport_name = \"grpc\"",
            )
            .alias("big", ["big-v1"])
            .section(extra)
            .fixture()
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("aliasd.toml")
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir.path().join("state").join("state.json")
    }

    /// Starts aliasd on this fixture and waits until it serves.
    pub fn start(&self) -> Daemon {
        self.start_with_env(&[])
    }

    /// [`Fixture::start`] with more variables in aliasd's environment.
    pub fn start_with_env(&self, env: &[(&str, &str)]) -> Daemon {
        Daemon::start(&self.config(), self.dir.path(), env)
    }

    /// Runs aliasd expecting it to fail at start; returns its exit status and stderr.
    pub fn start_failing(&self) -> (std::process::ExitStatus, String) {
        let ready = self.dir.path().join("ready-fail.json");
        let output = Command::new(env!("CARGO_BIN_EXE_aliasd"))
            .args(["run", "--config"])
            .arg(self.config())
            .arg("--ready-file")
            .arg(&ready)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run aliasd");
        assert!(!ready.exists(), "a failing aliasd wrote its ready file");
        (
            output.status,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

/// A running `aliasd run` process.
pub struct Daemon {
    child: Child,
    pub dns: SocketAddr,
    pub api: SocketAddr,
    log: PathBuf,
}

impl Daemon {
    fn start(config: &Path, dir: &Path, env: &[(&str, &str)]) -> Self {
        let ready_path = dir.join("ready.json");
        let _ = std::fs::remove_file(&ready_path);
        let log = dir.join(format!("aliasd-{}.log", unique()));
        let child = Command::new(env!("CARGO_BIN_EXE_aliasd"))
            .args(["run", "--config"])
            .arg(config)
            .arg("--ready-file")
            .arg(&ready_path)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn aliasd");
        let mut daemon = Self {
            child,
            dns: "0.0.0.0:0".parse().unwrap(),
            api: "0.0.0.0:0".parse().unwrap(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(bytes) = std::fs::read(&ready_path) {
                let ready: Ready = serde_json::from_slice(&bytes).expect("ready file is JSON");
                daemon.dns = ready.dns[0];
                daemon.api = ready.api;
                return daemon;
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!(
                    "aliasd exited with {status} before it was ready:\n{}",
                    daemon.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "aliasd not ready in 30s:\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where its stderr goes; readable after it exits.
    pub fn log_path(&self) -> PathBuf {
        self.log.clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn server_url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// An API client that carries the test token.
    pub fn client(&self) -> Client {
        Client::new(&self.server_url(), Some(TOKEN.to_owned())).expect("client")
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        self.exit_status()
    }

    /// Sends the signal `name` (`TERM`, `USR1`) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit (up to 15 s) and returns how it did.
    pub fn exit_status(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "aliasd did not exit in 15 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Builds a query; `edns` is the advertised UDP payload size, `None` for no EDNS.
pub fn query_message(name: &str, rtype: RecordType, edns: Option<u16>) -> Message {
    let mut message = Message::query();
    message.metadata.id = (unique() as u16).wrapping_mul(7919).wrapping_add(1);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        message.set_edns(e);
    }
    message
}

/// Sends one query over `transport` and returns the decoded response.
pub async fn query(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    transport: Transport,
) -> Message {
    let message = query_message(name, rtype, Some(1232));
    exchange(server, &message.to_vec().expect("encode"), transport).await
}

/// Sends raw bytes and decodes the answer.
pub async fn exchange(server: SocketAddr, bytes: &[u8], transport: Transport) -> Message {
    let raw = exchange_raw(server, bytes, transport)
        .await
        .expect("the server did not answer");
    Message::from_vec(&raw).expect("the answer decodes")
}

/// Sends raw bytes; `None` if no answer came within a few seconds.
pub async fn exchange_raw(
    server: SocketAddr,
    bytes: &[u8],
    transport: Transport,
) -> Option<Vec<u8>> {
    let wait = Duration::from_secs(3);
    match transport {
        Transport::Udp => {
            let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
            socket.send_to(bytes, server).await.expect("send");
            let mut buf = vec![0u8; 65535];
            let (n, _) = tokio::time::timeout(wait, socket.recv_from(&mut buf))
                .await
                .ok()?
                .ok()?;
            buf.truncate(n);
            Some(buf)
        }
        Transport::Tcp => {
            let mut stream = TcpStream::connect(server).await.expect("connect tcp");
            let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(bytes);
            stream.write_all(&framed).await.expect("write");
            let mut len = [0u8; 2];
            tokio::time::timeout(wait, stream.read_exact(&mut len))
                .await
                .ok()?
                .ok()?;
            let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
            tokio::time::timeout(wait, stream.read_exact(&mut buf))
                .await
                .ok()?
                .ok()?;
            Some(buf)
        }
    }
}

/// The addresses in the answer section, sorted, as text.
pub fn addresses(message: &Message) -> Vec<String> {
    let mut out: Vec<String> = message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

/// The serial of the SOA in the answer or authority section.
pub fn soa_serial(message: &Message) -> u32 {
    message
        .answers
        .iter()
        .chain(&message.authorities)
        .find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
        .expect("an SOA in the message")
}

/// Runs the real `dig` against `server` with `args`.
pub fn dig(server: SocketAddr, args: &[&str]) -> String {
    let output = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=3", "+tries=2"])
        .args(args)
        .output()
        .expect("`dig` must be installed (Debian: bind9-dnsutils; .ci/run installs it)");
    assert!(output.status.success(), "dig failed: {output:?}");
    String::from_utf8(output.stdout).expect("utf-8")
}

/// One HTTP request to the API without the typed client, for malformed input.
pub async fn http(
    daemon: &Daemon,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let (status, text) = http_text(daemon, method, path, token, body).await;
    let json =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"));
    (status, json)
}

/// Like [`http`], for an answer that is not JSON (or not known to be).
pub async fn http_text(
    daemon: &Daemon,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let client = HyperClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("{}{path}", daemon.server_url()));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let response = client.request(request).await.expect("api answers");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Runs a binary of this package and captures its output.
pub fn run_bin(bin: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(bin);
    command
        .args(args)
        .env_remove("ALIASCTL_SERVER")
        .env_remove("ALIASCTL_TOKEN");
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().expect("run binary")
}

impl Fixture {
    /// A fixture whose `aliasd.toml` is exactly `config`, next to the standard zone file
    /// (`internal.zone`, [`ZONE`]).
    pub fn with_config_text(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("internal.zone"), ZONE).expect("write zone");
        std::fs::write(dir.path().join("aliasd.toml"), config).expect("write config");
        Self { dir }
    }

    /// A fixture for real backends: `services` are `(name, endpoints)`, `aliases` are
    /// `(name, targets)`. Health is checked over HTTP (`GET /healthz`, every 100ms, rise 1,
    /// fall 2), TTLs are 1s and the promotion gates short (observe 300ms, drain grace 200ms), so
    /// a whole promotion takes a couple of seconds. The API and DNS listen on 127.0.0.1:0.
    pub fn for_backends(services: &[(&str, &[SocketAddr])], aliases: &[(&str, &[&str])]) -> Self {
        Self::for_backends_with(services, aliases, FAST_PROMOTION)
    }

    /// [`Fixture::for_backends`] with another `[promotion]` section.
    pub fn for_backends_with(
        services: &[(&str, &[SocketAddr])],
        aliases: &[(&str, &[&str])],
        promotion: &str,
    ) -> Self {
        let mut config = ConfigText::new()
            .health(
                "kind = \"http\"\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\nrise = 1\nfall = 2",
            )
            .section(promotion);
        for (name, endpoints) in services {
            config = config.service(name, endpoints.iter());
        }
        for (name, targets) in aliases {
            config = config.alias(name, targets.iter());
        }
        config.fixture()
    }
}

/// Like [`run_bin`], but kills the process and panics (showing its output) if it has not ended
/// within `limit`. Blocking: call it from `spawn_blocking` when in-process servers must keep
/// serving meanwhile.
pub fn run_bin_within(bin: &str, args: &[&str], envs: &[(&str, &str)], limit: Duration) -> Output {
    use std::io::Read;
    let mut command = Command::new(bin);
    command
        .args(args)
        .env_remove("ALIASCTL_SERVER")
        .env_remove("ALIASCTL_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("run binary");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + limit;
    let (status, overran) = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break (status, false);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break (child.wait().expect("wait"), true);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let output = Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    };
    assert!(
        !overran,
        "`{} {}` still ran after {limit:?}\nstdout:\n{}\nstderr:\n{}",
        bin,
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `POST` with the test token and a JSON body.
pub async fn post(
    daemon: &Daemon,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    http(daemon, "POST", path, Some(TOKEN), &body.to_string()).await
}

/// Promotes `web` to `web-v2` with no observation and waits until v1 is out of the answers.
pub async fn switch_to_v2(daemon: &Daemon) {
    let (status, reply) = post(
        daemon,
        "/v1/aliases/web/promote",
        serde_json::json!({"to": "web-v2", "observe": "0s"}),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    wait_for(
        daemon,
        Duration::from_secs(5),
        "v1 out of the answers",
        |a| a["answering"] == serde_json::json!(["web-v2"]),
    )
    .await;
}

/// Waits until every endpoint of the alias's members is healthy.
pub async fn wait_healthy(daemon: &Daemon) {
    wait_for(daemon, Duration::from_secs(5), "healthy", |a| {
        a["members"].as_array().is_some_and(|m| {
            m.iter().all(|s| {
                s["endpoints"]
                    .as_array()
                    .is_some_and(|e| e.iter().all(|e| e["health"] == "healthy"))
            })
        })
    })
    .await;
}

/// `GET /v1/aliases/web`.
pub async fn alias(daemon: &Daemon) -> serde_json::Value {
    let (status, body) = http(daemon, "GET", "/v1/aliases/web", None, "").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls `web` until `done` holds, or panics after `limit` saying `what` was awaited.
pub async fn wait_for(
    daemon: &Daemon,
    limit: Duration,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let a = alias(daemon).await;
        if done(&a) {
            return a;
        }
        assert!(Instant::now() < deadline, "not {what} after {limit:?}: {a}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Cancels a token when dropped: stops a test's in-process backends with the test.
pub struct StopOnDrop(pub tokio_util::sync::CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// `n` in-process backends named `name` on 127.0.`net`.`first`, `first + 1`, ... (port 0).
pub async fn spawn_backends(
    net: u8,
    first: u8,
    n: usize,
    name: &str,
    stop: &tokio_util::sync::CancellationToken,
) -> Vec<aliasd::backend::Backend> {
    let mut out = Vec::new();
    for i in 0..n {
        let ip = std::net::Ipv4Addr::new(127, 0, net, first + i as u8);
        let addr = SocketAddr::new(ip.into(), 0);
        out.push(
            aliasd::backend::spawn(addr, name, stop.clone())
                .await
                .expect("backend binds"),
        );
    }
    out
}
