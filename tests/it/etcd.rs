//! The harness of the cluster tests: a real 3-member etcd cluster (Debian's `etcd-server`) on
//! 127.0.N.1, .2 and .3, plain or over TLS with its own CA and certificates (made with the
//! `openssl` CLI), optionally with etcd's authentication; a TCP relay that a test stops to cut
//! a client off from etcd; and `AliasdNode`, one `aliasd run` process a test can kill, freeze
//! and restart. The self-tests at the end prove each part against the real etcd.
//!
//! Each cluster takes a whole 127.0.N.0/24 (N in 200..=254) that nothing else in this process
//! uses: members are .1–.3 (client port 2379, peer port 2380), and a test may put its own
//! listeners (relays, aliasd nodes) on .10 and above (`EtcdCluster::ip`). Everything a cluster
//! starts is killed, reaped and removed when it is dropped, also when the test fails.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aliasd::daemon::Ready;
use etcd_client::{
    Certificate, Client, CompactionOptions, ConnectOptions, Identity, Permission, TlsOptions,
};

/// Members of every cluster.
pub const MEMBERS: usize = 3;
pub const CLIENT_PORT: u16 = 2379;
pub const PEER_PORT: u16 = 2380;
/// How long a cluster (or a restarted member) has to serve.
const READY_LIMIT: Duration = Duration::from_secs(20);
/// How long a member has to exit after SIGTERM before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(10);
/// The third octets the clusters take their addresses from.
const NETS: std::ops::RangeInclusive<u8> = 200..=254;
/// Hosts of a cluster's net that its TLS certificates name for relays.
pub const RELAY_HOSTS: std::ops::RangeInclusive<u8> = 10..=29;
/// The root user's password once `enable_auth` ran.
const ROOT_PASSWORD: &str = "root-test-password";

/// The nets this process's clusters hold: two tests running at once never pick the same one.
static TAKEN: Mutex<BTreeSet<u8>> = Mutex::new(BTreeSet::new());

fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Takes a net that no cluster of this process holds, none in `skip` (tried and found busy by
/// another process), and whose member addresses are all free right now.
fn reserve_net(skip: &BTreeSet<u8>) -> u8 {
    let mut taken = TAKEN.lock().unwrap();
    for net in NETS {
        if taken.contains(&net) || skip.contains(&net) {
            continue;
        }
        let free = (1..=MEMBERS as u8).all(|host| {
            [CLIENT_PORT, PEER_PORT].iter().all(|&port| {
                TcpListener::bind(SocketAddr::from((Ipv4Addr::new(127, 0, net, host), port)))
                    .is_ok()
            })
        });
        if free {
            taken.insert(net);
            return net;
        }
    }
    panic!(
        "no free net for an etcd cluster: every 127.0.N.1-3 with N in {NETS:?} has port {CLIENT_PORT} \
         or {PEER_PORT} taken (leftover etcd processes? `ss -ltnp` shows them)"
    );
}

fn release_net(net: u8) {
    TAKEN.lock().unwrap().remove(&net);
}

/// The last `lines` lines of a log file.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Sends the signal `name` (`TERM`, `STOP`, `CONT`) to the process `pid`.
fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Waits (5 s at most) until every thread of `pid` is stopped (`stopped`), or none is: a signal
/// is delivered after `kill` returned.
fn wait_stopped(pid: u32, stopped: bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let states: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|tasks| {
                tasks
                    .filter_map(|task| {
                        let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
                        // The state follows the command name, which is in parentheses.
                        let state = stat.rsplit_once(") ")?.1.split(' ').next()?;
                        Some(state.to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let is_stopped = |state: &String| state == "T" || state == "t";
        let done = if stopped {
            !states.is_empty() && states.iter().all(is_stopped)
        } else {
            !states.iter().any(is_stopped)
        };
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} not {} within 5 s: thread states {states:?}",
            if stopped { "stopped" } else { "running again" }
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits up to `limit` for `child` to exit; `None` if it still runs.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the `openssl` CLI in `dir` and panics with its output if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("`openssl` must be installed (Debian: openssl; .ci/run installs it)");
    assert!(
        output.status.success(),
        "openssl {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A new P-256 key `<name>.key` and a certificate `<name>.crt` for `subject`, signed by the CA
/// in `dir` (`ca.key`, `ca.crt`) with the extensions `ext` (lines of an openssl extfile).
fn issue(dir: &Path, name: &str, subject: &str, ext: &str) {
    let (key, csr, crt, extfile) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    std::fs::write(dir.join(&extfile), ext).expect("write extfile");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-subj",
            subject,
            "-out",
            &csr,
        ],
    );
    let serial = format!("{}", 1000 + unique());
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &serial,
            "-days",
            "2",
            "-extfile",
            &extfile,
            "-out",
            &crt,
        ],
    );
}

/// The extensions of a client certificate.
const CLIENT_EXTENSIONS: &str = "extendedKeyUsage=clientAuth\n\
     keyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=critical,CA:FALSE\n";

/// The certificate files of a TLS cluster, all in its temporary directory.
struct TlsFiles {
    dir: PathBuf,
}

impl TlsFiles {
    /// A CA, a server certificate per member (its IP as subjectAltName, usable for the peer
    /// connections both ways) and a client certificate with CN=aliasd. A member's certificate
    /// also names 127.0.0.1: with `--peer-client-cert-auth`, etcd checks a peer's certificate
    /// against the address the connection comes from, and on loopback that is 127.0.0.1. It
    /// names 127.0.N.10–29 too, so that a relay there (`EtcdCluster::relay`) works over TLS.
    fn make(dir: PathBuf, net: u8) -> Self {
        std::fs::create_dir_all(&dir).expect("tls dir");
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=aliasd-test-ca",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        let relays = RELAY_HOSTS
            .map(|host| format!("IP:127.0.{net}.{host}"))
            .collect::<Vec<_>>()
            .join(",");
        for i in 0..MEMBERS {
            issue(
                &dir,
                &format!("m{i}"),
                &format!("/CN=m{i}"),
                &format!(
                    "subjectAltName=IP:{},IP:127.0.0.1,{relays}\n\
                     extendedKeyUsage=serverAuth,clientAuth\n\
                     keyUsage=critical,digitalSignature,keyEncipherment\n\
                     basicConstraints=critical,CA:FALSE\n",
                    member_ip(net, i)
                ),
            );
        }
        issue(&dir, "client", "/CN=aliasd", CLIENT_EXTENSIONS);
        Self { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

fn member_ip(net: u8, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, net, i as u8 + 1)
}

/// What kind of cluster to start: `EtcdCluster::builder()....start().await`.
#[derive(Default)]
pub struct EtcdBuilder {
    tls: bool,
    max_txn_ops: Option<u32>,
}

impl EtcdBuilder {
    /// Clients and peers over TLS with client certificates (see `EtcdCluster::start_tls`).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// etcd's `--max-txn-ops` (operations in one transaction); etcd's default, 128, otherwise.
    pub fn max_txn_ops(mut self, n: u32) -> Self {
        self.max_txn_ops = Some(n);
        self
    }

    /// Starts the three members and waits (20 s at most) until each serves a linearizable
    /// read. A net found busy by another process in the meantime is left for the next one.
    pub async fn start(self) -> EtcdCluster {
        let mut busy = BTreeSet::new();
        for _ in 0..5 {
            let net = reserve_net(&busy);
            let mut cluster = EtcdCluster::spawn(net, self.tls, self.max_txn_ops);
            match cluster.wait_ready(READY_LIMIT).await {
                Ok(()) => return cluster,
                Err(Failure::AddressInUse) => {
                    busy.insert(net);
                    drop(cluster);
                }
                Err(Failure::Other(message)) => panic!("{message}"),
            }
        }
        panic!("5 nets in a row were taken by other processes while etcd started on them");
    }
}

enum Failure {
    /// A member could not bind its address: another process took it after it was checked.
    AddressInUse,
    Other(String),
}

/// A running 3-member etcd cluster. Member `i` (0, 1, 2) is named `m{i}` and listens on
/// 127.0.N.(i+1):2379 for clients and :2380 for peers.
pub struct EtcdCluster {
    net: u8,
    dir: tempfile::TempDir,
    token: String,
    tls: Option<TlsFiles>,
    max_txn_ops: Option<u32>,
    members: Vec<Option<Child>>,
    /// The root user's credentials, once `enable_auth` ran.
    root: Option<(String, String)>,
}

impl EtcdCluster {
    pub fn builder() -> EtcdBuilder {
        EtcdBuilder::default()
    }

    /// A plain (http) cluster with etcd's defaults but short raft timers.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// A cluster over https for clients and peers with `--client-cert-auth`: its own CA
    /// (`ca_file`), a server certificate per member (subjectAltName IP:127.0.N.(i+1)) and a
    /// client certificate with CN=aliasd (`client_cert`, `client_key`).
    pub async fn start_tls() -> Self {
        Self::builder().tls().start().await
    }

    fn spawn(net: u8, tls: bool, max_txn_ops: Option<u32>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("aliasd-etcd-")
            .tempdir()
            .expect("tempdir");
        // Built first, so that a panic from here on still releases the net and the directory.
        let mut cluster = Self {
            net,
            token: format!("aliasd-test-{}-{net}-{}", std::process::id(), unique()),
            dir,
            tls: None,
            max_txn_ops,
            members: (0..MEMBERS).map(|_| None).collect(),
            root: None,
        };
        if tls {
            cluster.tls = Some(TlsFiles::make(cluster.dir.path().join("tls"), net));
        }
        for i in 0..MEMBERS {
            cluster.spawn_member(i, "new");
        }
        cluster
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("m{i}.log"))
    }

    fn spawn_member(&mut self, i: usize, state: &str) {
        assert!(self.members[i].is_none(), "etcd member {i} already runs");
        let scheme = self.scheme();
        let ip = member_ip(self.net, i);
        let client_url = format!("{scheme}://{ip}:{CLIENT_PORT}");
        let peer_url = format!("{scheme}://{ip}:{PEER_PORT}");
        let initial: Vec<String> = (0..MEMBERS)
            .map(|m| format!("m{m}={scheme}://{}:{PEER_PORT}", member_ip(self.net, m)))
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("etcd log file");
        let mut command = Command::new("etcd");
        command
            .arg("--name")
            .arg(format!("m{i}"))
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("m{i}.etcd")))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", state])
            // Short raft timers: a leader within a second, a lost one noticed in half a second.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-outputs", "stderr"]);
        if let Some(n) = self.max_txn_ops {
            command.args(["--max-txn-ops", &n.to_string()]);
        }
        if let Some(tls) = &self.tls {
            let (crt, key, ca) = (
                tls.path(&format!("m{i}.crt")),
                tls.path(&format!("m{i}.key")),
                tls.path("ca.crt"),
            );
            command
                .arg("--cert-file")
                .arg(&crt)
                .arg("--key-file")
                .arg(&key)
                .arg("--trusted-ca-file")
                .arg(&ca)
                .arg("--client-cert-auth")
                .arg("--peer-cert-file")
                .arg(&crt)
                .arg("--peer-key-file")
                .arg(&key)
                .arg("--peer-trusted-ca-file")
                .arg(&ca)
                .arg("--peer-client-cert-auth");
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("`etcd` must be installed (Debian: etcd-server; .ci/run installs it)");
        self.members[i] = Some(child);
    }

    /// Every member's log tail, for a failure message.
    fn logs(&self) -> String {
        (0..MEMBERS)
            .map(|i| {
                format!(
                    "--- etcd m{i} ({}), last lines of {}:\n{}",
                    if self.members[i].is_some() {
                        "started"
                    } else {
                        "stopped"
                    },
                    self.log_path(i).display(),
                    tail(&self.log_path(i), 25)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until every started member serves a linearizable read through a client of its
    /// own; fails at once if one exits.
    async fn wait_ready(&mut self, limit: Duration) -> Result<(), Failure> {
        let deadline = Instant::now() + limit;
        let mut ready = [false; MEMBERS];
        loop {
            for (i, ready) in ready.iter_mut().enumerate() {
                let Some(child) = self.members[i].as_mut() else {
                    *ready = true;
                    continue;
                };
                if let Some(status) = child.try_wait().expect("wait") {
                    self.members[i] = None;
                    let log = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
                    if log.contains("address already in use") {
                        return Err(Failure::AddressInUse);
                    }
                    return Err(Failure::Other(format!(
                        "etcd member m{i} exited with {status} before it served\n{}",
                        self.logs()
                    )));
                }
                if !*ready {
                    *ready = self.serves(i).await;
                }
            }
            if ready.iter().all(|r| *r) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let waiting: Vec<String> = (0..MEMBERS)
                    .filter(|i| !ready[*i])
                    .map(|i| format!("m{i}"))
                    .collect();
                return Err(Failure::Other(format!(
                    "etcd on 127.0.{}.0/24: {} did not serve a linearizable read within {limit:?}\n{}",
                    self.net,
                    waiting.join(", "),
                    self.logs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether member `i` answers a linearizable read (which needs a leader and a quorum).
    async fn serves(&self, i: usize) -> bool {
        let options = self
            .connect_options()
            .with_timeout(Duration::from_secs(1))
            .with_connect_timeout(Duration::from_millis(500));
        let Ok(Ok(mut client)) = tokio::time::timeout(
            Duration::from_secs(2),
            Client::connect([self.endpoint(i)], Some(options)),
        )
        .await
        else {
            return false;
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), client.get("health", None)).await,
            Ok(Ok(_))
        )
    }

    /// Waits (20 s at most) until every running member serves a linearizable read: after
    /// `start_member`, once a quorum runs again. Panics with the members' logs otherwise.
    pub async fn wait_healthy(&mut self) {
        match self.wait_ready(READY_LIMIT).await {
            Ok(()) => {}
            Err(Failure::AddressInUse) => panic!(
                "an etcd member could not bind its address again\n{}",
                self.logs()
            ),
            Err(Failure::Other(message)) => panic!("{message}"),
        }
    }

    /// The third octet of this cluster's 127.0.N.0/24. Hosts .1–.3 are the members; .10 and
    /// above are free for the test's own listeners.
    pub fn net(&self) -> u8 {
        self.net
    }

    /// 127.0.N.`host` in this cluster's net.
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, self.net, host)
    }

    /// Member `i`'s client URL (`http://127.0.N.(i+1):2379`, https for a TLS cluster).
    pub fn endpoint(&self, i: usize) -> String {
        format!(
            "{}://{}:{CLIENT_PORT}",
            self.scheme(),
            member_ip(self.net, i)
        )
    }

    /// Member `i`'s client address.
    pub fn client_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from((member_ip(self.net, i), CLIENT_PORT))
    }

    /// Every member's client URL, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        (0..MEMBERS).map(|i| self.endpoint(i)).collect()
    }

    /// The CA that signed every certificate of a TLS cluster.
    pub fn ca_file(&self) -> PathBuf {
        self.tls_files().path("ca.crt")
    }

    /// The client certificate (CN=aliasd) of a TLS cluster.
    pub fn client_cert(&self) -> PathBuf {
        self.tls_files().path("client.crt")
    }

    /// The client certificate's key.
    pub fn client_key(&self) -> PathBuf {
        self.tls_files().path("client.key")
    }

    fn tls_files(&self) -> &TlsFiles {
        self.tls
            .as_ref()
            .expect("a plain cluster has no certificates: start it with EtcdCluster::start_tls")
    }

    /// For a TLS cluster, its CA and the client certificate; `None` for a plain one.
    pub fn tls_options(&self) -> Option<TlsOptions> {
        self.tls.as_ref()?;
        let read =
            |p: PathBuf| std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        Some(
            TlsOptions::new()
                .ca_certificate(Certificate::from_pem(read(self.ca_file())))
                .identity(Identity::from_pem(
                    read(self.client_cert()),
                    read(self.client_key()),
                )),
        )
    }

    /// What `client` connects with: TLS (if any), the root user (once `enable_auth` ran), and
    /// timeouts (a request 5 s, a connection 2 s) so that no call of a test hangs.
    pub fn connect_options(&self) -> ConnectOptions {
        let mut options = ConnectOptions::new()
            .with_timeout(Duration::from_secs(5))
            .with_connect_timeout(Duration::from_secs(2));
        if let Some(tls) = self.tls_options() {
            options = options.with_tls(tls);
        }
        if let Some((user, password)) = &self.root {
            options = options.with_user(user.clone(), password.clone());
        }
        options
    }

    /// A client of every member, with `connect_options`; panics if it cannot connect.
    pub async fn client(&self) -> Client {
        self.try_client()
            .await
            .unwrap_or_else(|e| panic!("connect to etcd {:?}: {e}", self.endpoints()))
    }

    /// `client`, for a test that expects the connection to fail (once auth is on, connecting
    /// authenticates, which needs a quorum).
    pub async fn try_client(&self) -> Result<Client, etcd_client::Error> {
        Client::connect(self.endpoints(), Some(self.connect_options())).await
    }

    /// A relay on 127.0.N.`host` (a port from the OS) to member `i`'s client port; its `url` has
    /// this cluster's scheme. Over TLS `host` must be one of `RELAY_HOSTS`, which the members'
    /// certificates name.
    pub fn relay(&self, host: u8, i: usize) -> Relay {
        assert!(
            self.tls.is_none() || RELAY_HOSTS.contains(&host),
            "a relay to a TLS cluster must be on a host in {RELAY_HOSTS:?}, which its certificates name"
        );
        let mut relay = Relay::new(SocketAddr::from((self.ip(host), 0)), self.client_addr(i));
        relay.scheme = self.scheme();
        relay
    }

    /// SIGTERM to member `i`, and waits until it exited (killed after 10 s).
    pub fn stop_member(&mut self, i: usize) {
        let mut child = self.members[i]
            .take()
            .unwrap_or_else(|| panic!("etcd member {i} is not running"));
        signal(child.id(), "TERM");
        if wait_exit(&mut child, STOP_LIMIT).is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL to member `i`, and waits until it is gone.
    pub fn kill_member(&mut self, i: usize) {
        let mut child = self.members[i]
            .take()
            .unwrap_or_else(|| panic!("etcd member {i} is not running"));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts member `i` again on its data directory (`--initial-cluster-state existing`).
    /// Does not wait: with no quorum it cannot serve alone; `wait_healthy` waits.
    pub fn start_member(&mut self, i: usize) {
        self.spawn_member(i, "existing");
    }

    /// Whether member `i` was started and not stopped (it may have exited by itself).
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].is_some()
    }

    /// The PID of member `i`, if it runs (to SIGSTOP it, say).
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].as_ref().map(Child::id)
    }

    /// Compacts the key space to its current revision, physically (watches from before it
    /// fail with "compacted"), and returns that revision.
    pub async fn compact(&self) -> i64 {
        let mut client = self.client().await;
        let revision = client
            .get("compact", None)
            .await
            .expect("read etcd's revision")
            .header()
            .expect("a response header")
            .revision();
        match client
            .compact(revision, Some(CompactionOptions::new().with_physical()))
            .await
        {
            Ok(_) => {}
            // Nothing was written since the last compaction.
            Err(e) if e.to_string().contains("compacted") => {}
            Err(e) => panic!("compact etcd to revision {revision}: {e}"),
        }
        revision
    }

    /// Turns etcd's authentication on: a `root` user (with the root role), and `user` with
    /// `password` and a role `<user>-rw` that may read and write every key. From then on
    /// clients must authenticate (`ConnectOptions::with_user`, or on a TLS cluster a client
    /// certificate whose CN names the user); `client` authenticates as root.
    pub async fn enable_auth(&mut self, user: &str, password: &str) {
        let mut client = self.client().await;
        let role = format!("{user}-rw");
        let fail = |what: &str, e: etcd_client::Error| -> ! { panic!("etcd auth: {what}: {e}") };
        client
            .user_add("root", ROOT_PASSWORD, None)
            .await
            .unwrap_or_else(|e| fail("add user root", e));
        client
            .user_grant_role("root", "root")
            .await
            .unwrap_or_else(|e| fail("grant root the root role", e));
        client
            .user_add(user, password, None)
            .await
            .unwrap_or_else(|e| fail(&format!("add user {user}"), e));
        client
            .role_add(role.as_str())
            .await
            .unwrap_or_else(|e| fail(&format!("add role {role}"), e));
        client
            .role_grant_permission(role.as_str(), Permission::read_write("").with_all_keys())
            .await
            .unwrap_or_else(|e| fail(&format!("grant {role} every key"), e));
        client
            .user_grant_role(user, role.as_str())
            .await
            .unwrap_or_else(|e| fail(&format!("grant {user} the role {role}"), e));
        client
            .auth_enable()
            .await
            .unwrap_or_else(|e| fail("enable authentication", e));
        self.root = Some(("root".to_owned(), ROOT_PASSWORD.to_owned()));
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for child in self.members.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        release_net(self.net);
    }
}

/// A TCP relay from `addr` to a target: every connection accepted is copied both ways to a new
/// connection to the target. `stop` closes the listener and every live connection (the client
/// sees the far side vanish, new connections are refused); `start` listens again on the same
/// address. Dropping it stops it.
pub struct Relay {
    scheme: &'static str,
    addr: SocketAddr,
    target: SocketAddr,
    running: Option<Running>,
}

struct Running {
    stop: Arc<AtomicBool>,
    acceptor: JoinHandle<()>,
    conns: Arc<Mutex<Vec<Conn>>>,
}

/// One relayed connection: both sockets, and the two threads copying between them.
struct Conn {
    sockets: [TcpStream; 2],
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Listens on `listen` (port 0: the OS picks one, kept for `start`) and relays to `target`.
    pub fn new(listen: SocketAddr, target: SocketAddr) -> Self {
        let listener =
            TcpListener::bind(listen).unwrap_or_else(|e| panic!("relay: bind {listen}: {e}"));
        let mut relay = Self {
            scheme: "http",
            addr: listener.local_addr().expect("local addr"),
            target,
            running: None,
        };
        relay.run(listener);
        relay
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>` (https for a relay to a TLS cluster): an etcd endpoint through it.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Listens again on the same address (after `stop`); does nothing if it runs.
    pub fn start(&mut self) {
        if self.running.is_some() {
            return;
        }
        let listener = TcpListener::bind(self.addr)
            .unwrap_or_else(|e| panic!("relay: bind {} again: {e}", self.addr));
        self.run(listener);
    }

    fn run(&mut self, listener: TcpListener) {
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<Conn>>> = Arc::default();
        let target = self.target;
        let acceptor = {
            let (stop, conns) = (stop.clone(), conns.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(2))
                    else {
                        // The target is down: the client sees its connection closed.
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let copy = |from: &TcpStream, to: &TcpStream| {
                        let (mut from, mut to) = (
                            from.try_clone().expect("clone socket"),
                            to.try_clone().expect("clone socket"),
                        );
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut from, &mut to);
                            let _ = to.shutdown(Shutdown::Write);
                        })
                    };
                    let threads = vec![copy(&client, &server), copy(&server, &client)];
                    let mut conns = conns.lock().unwrap();
                    // Connections that ended are forgotten, so a long test does not pile them up.
                    conns.retain(|c| !c.threads.iter().all(JoinHandle::is_finished));
                    conns.push(Conn {
                        sockets: [client, server],
                        threads,
                    });
                }
            })
        };
        self.running = Some(Running {
            stop,
            acceptor,
            conns,
        });
    }

    /// Closes the listener and every live connection, and waits until its threads ended.
    pub fn stop(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        running.stop.store(true, Ordering::SeqCst);
        // Wakes the acceptor, which sees the flag and drops the listener.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2));
        let _ = running.acceptor.join();
        let conns = std::mem::take(&mut *running.conns.lock().unwrap());
        for conn in conns {
            for socket in &conn.sockets {
                let _ = socket.shutdown(Shutdown::Both);
            }
            for thread in conn.threads {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One `aliasd run --config <config> --ready-file <dir>/ready-<n>.json` process; its stderr goes
/// to `<config's stem>.log` next to the config (over all its starts), so several nodes may share
/// a directory if their configs have different names. Killed and reaped when dropped.
pub struct AliasdNode {
    config: PathBuf,
    dir: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
    ready: Option<Ready>,
    log: PathBuf,
}

impl AliasdNode {
    /// Starts aliasd on `config` with `env` added to its environment (`RUST_LOG` is `info`
    /// unless `env` sets it), and waits (30 s at most) until it wrote its ready file.
    pub fn start(config: &Path, env: &[(&str, &str)]) -> Self {
        let dir = config
            .parent()
            .expect("the config is in a directory")
            .to_owned();
        let stem = config
            .file_stem()
            .expect("the config has a file name")
            .to_string_lossy();
        let mut node = Self {
            config: config.to_owned(),
            log: dir.join(format!("{stem}.log")),
            dir,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            child: None,
            ready: None,
        };
        node.restart();
        node
    }

    /// Starts it again on the same config (after `kill9`), and waits until it is ready.
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "aliasd node still runs: kill9 it first"
        );
        let ready_path = self
            .dir
            .join(format!("ready-{}-{}.json", std::process::id(), unique()));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("aliasd log file");
        let child = Command::new(env!("CARGO_BIN_EXE_aliasd"))
            .args(["run", "--config"])
            .arg(&self.config)
            .arg("--ready-file")
            .arg(&ready_path)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn aliasd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(bytes) = std::fs::read(&ready_path) {
                self.ready = Some(serde_json::from_slice(&bytes).expect("ready file is JSON"));
                return;
            }
            let child = self.child.as_mut().expect("started");
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                panic!(
                    "aliasd ({}) exited with {status} before it was ready:\n{}",
                    self.config.display(),
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "aliasd ({}) not ready in 30 s:\n{}",
                self.config.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What its ready file said at its last start: its DNS, API and proxy addresses.
    pub fn ready(&self) -> &Ready {
        self.ready.as_ref().expect("aliasd node started")
    }

    pub fn dns(&self) -> SocketAddr {
        self.ready().dns[0]
    }

    pub fn api(&self) -> SocketAddr {
        self.ready().api
    }

    /// `http://<api>`.
    pub fn server_url(&self) -> String {
        format!("http://{}", self.api())
    }

    /// An API client of this node that carries the tests' token (`support::TOKEN`).
    pub fn client(&self) -> aliasd::client::Client {
        aliasd::client::Client::new(&self.server_url(), Some(crate::support::TOKEN.to_owned()))
            .expect("client")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("aliasd node runs").id()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Everything it logged, over all its starts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, and waits until it is gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP, and waits until every thread of it stopped: frozen, its sockets open but
    /// nothing answered, until `sigcont`.
    pub fn sigstop(&self) {
        signal(self.pid(), "STOP");
        wait_stopped(self.pid(), true);
    }

    /// SIGCONT, and waits until it runs again.
    pub fn sigcont(&self) {
        signal(self.pid(), "CONT");
        wait_stopped(self.pid(), false);
    }

    /// SIGTERM, and waits (15 s at most) for its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("aliasd node runs");
        signal(child.id(), "TERM");
        wait_exit(&mut child, Duration::from_secs(15)).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!("aliasd did not exit in 15 s after SIGTERM:\n{}", self.log())
        })
    }
}

impl Drop for AliasdNode {
    fn drop(&mut self) {
        // SIGKILL ends a stopped (SIGSTOP) process too.
        self.kill9();
    }
}

// ---- Self-tests of the harness ----

/// A client of the one `endpoint`, with short timeouts: a request that cannot be served fails
/// within `timeout` instead of hanging.
async fn client_of(endpoint: &str, options: ConnectOptions, timeout: Duration) -> Client {
    let options = options
        .with_timeout(timeout)
        .with_connect_timeout(Duration::from_secs(1));
    Client::connect([endpoint], Some(options))
        .await
        .unwrap_or_else(|e| panic!("connect to {endpoint}: {e}"))
}

/// The value of `key` as text, through `client`.
async fn value(client: &mut Client, key: &str) -> Option<String> {
    let response = client.get(key, None).await.expect("get");
    response
        .kvs()
        .first()
        .map(|kv| kv.value_str().expect("utf-8").to_owned())
}

/// Retries `put` until it succeeds, for `limit` at most.
async fn put_eventually(client: &mut Client, key: &str, value: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        match client.put(key, value, None).await {
            Ok(_) => return,
            Err(e) => assert!(
                Instant::now() < deadline,
                "put {key} still fails after {limit:?}: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_start_and_a_put_through_the_first_is_read_through_the_third() {
    let cluster = EtcdCluster::start().await;
    let endpoints = cluster.endpoints();
    let net = cluster.net();
    assert_eq!(
        endpoints,
        (1..=3)
            .map(|h| format!("http://127.0.{net}.{h}:2379"))
            .collect::<Vec<_>>()
    );
    let mut first = client_of(&endpoints[0], ConnectOptions::new(), Duration::from_secs(5)).await;
    let mut third = client_of(&endpoints[2], ConnectOptions::new(), Duration::from_secs(5)).await;
    first.put("/harness/a", "one", None).await.expect("put");
    assert_eq!(
        value(&mut third, "/harness/a").await.as_deref(),
        Some("one")
    );
    let members = first.member_list().await.expect("member list");
    assert_eq!(members.members().len(), 3, "{members:?}");

    // The default limit of a transaction is etcd's own.
    let ops: Vec<etcd_client::TxnOp> = (0..129)
        .map(|k| etcd_client::TxnOp::put(format!("/harness/t{k}"), "x", None))
        .collect();
    let error = first
        .txn(etcd_client::Txn::new().and_then(ops))
        .await
        .expect_err("129 operations in one transaction");
    assert!(error.to_string().contains("too many operations"), "{error}");

    let revision = cluster.compact().await;
    let error = third
        .get(
            "/harness/a",
            Some(etcd_client::GetOptions::new().with_revision(revision - 1)),
        )
        .await
        .expect_err("a read before the compaction");
    assert!(error.to_string().contains("compacted"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_members_stopped_a_put_fails_in_bounded_time_and_succeeds_once_they_return() {
    let mut cluster = EtcdCluster::builder().max_txn_ops(1024).start().await;
    let timeout = Duration::from_secs(2);
    let mut client = client_of(&cluster.endpoint(0), ConnectOptions::new(), timeout).await;
    client.put("/harness/b", "before", None).await.expect("put");
    let ops: Vec<etcd_client::TxnOp> = (0..200)
        .map(|k| etcd_client::TxnOp::put(format!("/harness/t{k}"), "x", None))
        .collect();
    client
        .txn(etcd_client::Txn::new().and_then(ops))
        .await
        .expect("200 operations with --max-txn-ops 1024");

    cluster.stop_member(1);
    cluster.kill_member(2);
    assert!(!cluster.is_running(1) && !cluster.is_running(2));
    let started = Instant::now();
    let error = client
        .put("/harness/b", "alone", None)
        .await
        .expect_err("a put without a quorum");
    let took = started.elapsed();
    assert!(took < timeout + Duration::from_secs(2), "{took:?}: {error}");

    let first_pid = cluster.pid(0).expect("member 0 runs");
    assert_eq!(cluster.pid(1), None);
    cluster.start_member(1);
    cluster.start_member(2);
    cluster.wait_healthy().await;
    assert_eq!(cluster.pid(0), Some(first_pid));
    assert!(cluster.pid(1).is_some() && cluster.pid(2).is_some());
    put_eventually(&mut client, "/harness/b", "after", Duration::from_secs(10)).await;
    let mut third = client_of(&cluster.endpoint(2), ConnectOptions::new(), timeout).await;
    assert_eq!(
        value(&mut third, "/harness/b").await.as_deref(),
        Some("after")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_serves_a_client_with_its_certificate_and_refuses_one_without() {
    let cluster = EtcdCluster::start_tls().await;
    assert!(cluster.endpoint(0).starts_with("https://"));
    for file in [
        cluster.ca_file(),
        cluster.client_cert(),
        cluster.client_key(),
    ] {
        assert!(file.is_file(), "{}", file.display());
    }
    let timeout = Duration::from_secs(3);
    let ca = std::fs::read(cluster.ca_file()).expect("ca");
    let identity = Identity::from_pem(
        std::fs::read(cluster.client_cert()).expect("cert"),
        std::fs::read(cluster.client_key()).expect("key"),
    );
    let with_cert = ConnectOptions::new().with_tls(
        TlsOptions::new()
            .ca_certificate(Certificate::from_pem(ca.clone()))
            .identity(identity),
    );
    let mut client = client_of(&cluster.endpoint(0), with_cert, timeout).await;
    client
        .put("/harness/c", "tls", None)
        .await
        .expect("put over TLS");
    let mut all = cluster.client().await;
    assert_eq!(value(&mut all, "/harness/c").await.as_deref(), Some("tls"));

    // Through a relay: the members' certificates name the relay's address.
    let relay = cluster.relay(*RELAY_HOSTS.end(), 2);
    assert!(relay.url().starts_with("https://"), "{}", relay.url());
    let mut relayed = client_of(&relay.url(), cluster.connect_options(), timeout).await;
    assert_eq!(
        value(&mut relayed, "/harness/c").await.as_deref(),
        Some("tls")
    );

    let without_cert =
        ConnectOptions::new().with_tls(TlsOptions::new().ca_certificate(Certificate::from_pem(ca)));
    let mut refused = client_of(&cluster.endpoint(1), without_cert, timeout).await;
    let started = Instant::now();
    refused
        .put("/harness/c", "no cert", None)
        .await
        .expect_err("a put without a client certificate");
    assert!(started.elapsed() < timeout + Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_a_client_needs_the_users_password() {
    let mut cluster = EtcdCluster::start().await;
    cluster.enable_auth("aliasd", "s3cret").await;
    let timeout = Duration::from_secs(3);
    let endpoint = cluster.endpoint(1);

    let mut anonymous = client_of(&endpoint, ConnectOptions::new(), timeout).await;
    let error = anonymous
        .put("/harness/d", "anonymous", None)
        .await
        .expect_err("a put without credentials");
    assert!(error.to_string().contains("user name is empty"), "{error}");

    let wrong = Client::connect(
        [&endpoint],
        Some(
            ConnectOptions::new()
                .with_user("aliasd", "wrong")
                .with_timeout(timeout),
        ),
    )
    .await
    .err()
    .expect("a wrong password is refused");
    assert!(
        wrong.to_string().contains("authentication failed"),
        "{wrong}"
    );

    let mut user = client_of(
        &endpoint,
        ConnectOptions::new().with_user("aliasd", "s3cret"),
        timeout,
    )
    .await;
    user.put("/harness/d", "user", None)
        .await
        .expect("put as aliasd");
    // The token one member gave is good on every member.
    let mut everywhere = Client::connect(
        cluster.endpoints(),
        Some(
            ConnectOptions::new()
                .with_user("aliasd", "s3cret")
                .with_timeout(timeout),
        ),
    )
    .await
    .expect("connect to every member");
    for n in 0..20 {
        everywhere
            .put(format!("/harness/d{n}"), "user", None)
            .await
            .expect("put as aliasd through any member");
    }
    let mut root = cluster.client().await;
    assert_eq!(
        value(&mut root, "/harness/d").await.as_deref(),
        Some("user")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_and_auth_the_certificates_cn_or_a_password_authenticates() {
    let mut cluster = EtcdCluster::start_tls().await;
    cluster.enable_auth("aliasd", "s3cret").await;
    let timeout = Duration::from_secs(3);
    let tls = cluster.tls_options().expect("tls");

    // No password: etcd takes the user from the client certificate's CN (aliasd).
    let mut by_cn = client_of(
        &cluster.endpoint(0),
        ConnectOptions::new().with_tls(tls.clone()),
        timeout,
    )
    .await;
    by_cn
        .put("/harness/e", "cn", None)
        .await
        .expect("put by CN");

    let mut by_password = client_of(
        &cluster.endpoint(2),
        ConnectOptions::new()
            .with_tls(tls.clone())
            .with_user("aliasd", "s3cret"),
        timeout,
    )
    .await;
    assert_eq!(
        value(&mut by_password, "/harness/e").await.as_deref(),
        Some("cn")
    );
    by_password
        .put("/harness/e", "password", None)
        .await
        .expect("put by password");

    let wrong = Client::connect(
        [cluster.endpoint(1)],
        Some(
            ConnectOptions::new()
                .with_tls(tls)
                .with_user("aliasd", "wrong")
                .with_timeout(timeout),
        ),
    )
    .await
    .err()
    .expect("a wrong password is refused even with a good certificate");
    assert!(
        wrong.to_string().contains("authentication failed"),
        "{wrong}"
    );

    // A certificate of the same CA whose CN is no user: the CN is what authenticates.
    let dir = &cluster.tls_files().dir;
    issue(dir, "stranger", "/CN=stranger", CLIENT_EXTENSIONS);
    let read = |file: &str| std::fs::read(dir.join(file)).expect("stranger's files");
    let stranger = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read("ca.crt")))
        .identity(Identity::from_pem(
            read("stranger.crt"),
            read("stranger.key"),
        ));
    let mut stranger = client_of(
        &cluster.endpoint(1),
        ConnectOptions::new().with_tls(stranger),
        timeout,
    )
    .await;
    let error = stranger
        .put("/harness/e", "stranger", None)
        .await
        .expect_err("a certificate whose CN is no user");
    assert!(error.to_string().contains("permission denied"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_relay_cuts_the_client_off_and_a_started_one_reconnects_it() {
    let cluster = EtcdCluster::start().await;
    let mut relay = cluster.relay(10, 0);
    assert_eq!(relay.addr().ip(), cluster.ip(10));
    let timeout = Duration::from_secs(2);
    let mut client = client_of(&relay.url(), ConnectOptions::new(), timeout).await;
    client
        .put("/harness/f", "through", None)
        .await
        .expect("put through the relay");

    // A watch through the relay ends when the relay stops: the connection itself is closed.
    let mut stream = client.watch("/harness/f", None).await.expect("watch");
    let created = stream.message().await.expect("watch created");
    assert!(created.is_some_and(|w| w.created()));

    relay.stop();
    assert!(!relay.is_running());
    let started = Instant::now();
    let error = client
        .put("/harness/f", "cut", None)
        .await
        .expect_err("a put through a stopped relay");
    assert!(
        started.elapsed() < timeout + Duration::from_secs(2),
        "{error}"
    );
    let ended = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the watch ends within 5 s");
    assert!(
        !matches!(ended, Ok(Some(_))),
        "the watch went on: {ended:?}"
    );

    relay.start();
    put_eventually(&mut client, "/harness/f", "again", Duration::from_secs(10)).await;
    let mut direct = cluster.client().await;
    assert_eq!(
        value(&mut direct, "/harness/f").await.as_deref(),
        Some("again")
    );
}

/// Whether aliasd at `dns` answers `web.internal.` within a second.
async fn answers(dns: SocketAddr) -> bool {
    let query =
        crate::support::query_message("web.internal.", hickory_proto::rr::RecordType::A, None);
    let bytes = query.to_vec().expect("encode");
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp");
    socket.send_to(&bytes, dns).await.expect("send");
    let mut buf = vec![0u8; 4096];
    tokio::time::timeout(Duration::from_secs(1), socket.recv_from(&mut buf))
        .await
        .is_ok_and(|r| r.is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aliasd_node_can_be_frozen_thawed_killed_and_restarted() {
    let fixture = crate::support::Fixture::new();
    let mut node = AliasdNode::start(&fixture.config(), &[]);
    assert!(node.is_running());
    assert!(answers(node.dns()).await, "{}", node.log());
    let first = node.pid();
    assert_eq!(node.ready().pid, first);

    node.sigstop();
    assert!(!answers(node.dns()).await, "a frozen aliasd answered");
    node.sigcont();
    assert!(answers(node.dns()).await, "{}", node.log());

    node.kill9();
    assert!(!node.is_running());
    assert!(!answers(node.dns()).await, "a killed aliasd answered");
    node.restart();
    assert_ne!(node.pid(), first);
    assert!(answers(node.dns()).await, "{}", node.log());
    assert!(node.server_url().starts_with("http://127.0.0.1:"));
    let aliases = node.client().aliases().await.expect("list the aliases");
    assert!(
        aliases.iter().any(|a| a.name == "web.internal"),
        "{aliases:?}"
    );
    assert!(node.log().contains("INFO"), "{}", node.log());

    // Frozen when dropped: the drop still ends it.
    node.sigstop();
    let pid = node.pid();
    drop(node);
    assert!(!alive(pid), "aliasd {pid} outlived its AliasdNode");

    let mut node = AliasdNode::start(&fixture.config(), &[("RUST_LOG", "debug")]);
    let status = node.terminate();
    assert!(status.success(), "{status}: {}", node.log());
}

/// Whether a process `pid` exists (`kill -0`).
fn alive(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .expect("kill -0")
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_cluster_leaves_no_process_or_directory_behind() {
    let cluster = EtcdCluster::start_tls().await;
    let pids: Vec<u32> = (0..MEMBERS).filter_map(|i| cluster.pid(i)).collect();
    assert_eq!(pids.len(), MEMBERS);
    let dir = cluster.dir.path().to_owned();
    let net = cluster.net();
    assert!(dir.join("m0.etcd").is_dir() && cluster.ca_file().starts_with(&dir));
    assert!(TAKEN.lock().unwrap().contains(&net));
    drop(cluster);
    for pid in pids {
        assert!(!alive(pid), "etcd {pid} outlived its cluster");
    }
    assert!(!dir.exists(), "{} outlived its cluster", dir.display());
    // Whether the net was released is not asserted: another test may have taken it since.
}
