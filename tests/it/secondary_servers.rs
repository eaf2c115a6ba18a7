//! Real secondary servers for aliasd's zones: Knot DNS and NSD (Debian's `knot` and `nsd`),
//! started on loopback ports with configs written here, killed by their PID when dropped. Shared
//! by the secondary tests (`secondaries.rs`) and the propagation benchmark
//! (`benches/secondaries.rs`, which includes this file by path).

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The TSIG key the secondaries and aliasd share (base64 of 32 bytes).
pub const KEY_NAME: &str = "xfr-key";
pub const SECRET: &str = "Gk2x7hU3C5kS5u7wK1m2b7cQ6N4pYy1cZt6o9b0aXkE=";

/// A free port on `ip` for both UDP and TCP (nothing holds it once this returns).
pub fn free_port(ip: IpAddr) -> u16 {
    for _ in 0..64 {
        let tcp = TcpListener::bind((ip, 0)).expect("bind tcp");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on {ip}");
}

/// Which secondary server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Knot,
    Nsd,
}

/// A running Knot or NSD secondary of `internal.`, killed (by its PID) when dropped.
pub struct Secondary {
    pub kind: Kind,
    pub addr: SocketAddr,
    child: Option<Child>,
    dir: tempfile::TempDir,
    primary: SocketAddr,
}

impl Secondary {
    /// Starts `kind` on `addr`, transferring `internal.` from `primary` with the TSIG key,
    /// from its own address as the source.
    pub fn start(kind: Kind, addr: SocketAddr, primary: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Self {
            kind,
            addr,
            child: None,
            dir,
            primary,
        };
        s.run();
        s
    }

    fn config(&self) -> PathBuf {
        let d = self.dir.path();
        let (ip, port) = (self.addr.ip(), self.addr.port());
        let (pip, pport) = (self.primary.ip(), self.primary.port());
        let (path, text) = match self.kind {
            Kind::Knot => (
                d.join("knot.conf"),
                format!(
                    r#"server:
    listen: {ip}@{port}
    rundir: "{d}"
    user: root
log:
  - target: stderr
    any: info
database:
    storage: "{d}/db"
key:
  - id: {KEY_NAME}
    algorithm: hmac-sha256
    secret: {SECRET}
remote:
  - id: aliasd
    address: {pip}@{pport}
    via: {ip}
    key: {KEY_NAME}
acl:
  - id: notify_from_aliasd
    address: 127.0.0.0/8
    action: notify
    key: {KEY_NAME}
template:
  - id: default
    storage: "{d}"
zone:
  - domain: internal
    master: aliasd
    acl: notify_from_aliasd
"#,
                    d = d.display()
                ),
            ),
            Kind::Nsd => (
                d.join("nsd.conf"),
                format!(
                    r#"server:
  ip-address: {ip}@{port}
  zonesdir: "{d}"
  zonelistfile: "{d}/zone.list"
  database: ""
  pidfile: "{d}/nsd.pid"
  xfrdfile: "{d}/xfrd.state"
  username: ""
  chroot: ""
  verbosity: 2
  # Reload as soon as a transfer is in (NSD's default waits a second between reloads).
  xfrd-reload-timeout: 0
  logfile: "{d}/nsd.log"
remote-control:
  control-enable: no
key:
  name: {KEY_NAME}
  algorithm: hmac-sha256
  secret: "{SECRET}"
zone:
  name: internal
  zonefile: "internal.zone"
  request-xfr: {pip}@{pport} {KEY_NAME}
  allow-notify: 127.0.0.0/8 {KEY_NAME}
  outgoing-interface: {ip}
"#,
                    d = d.display()
                ),
            ),
        };
        std::fs::write(&path, text).expect("write secondary config");
        path
    }

    fn run(&mut self) {
        let config = self.config();
        let log = std::fs::File::create(self.dir.path().join("stderr.log")).expect("log");
        let mut command = match self.kind {
            Kind::Knot => {
                let mut c = Command::new("knotd");
                c.arg("-c").arg(&config);
                c
            }
            Kind::Nsd => {
                let mut c = Command::new("nsd");
                c.arg("-d").arg("-c").arg(&config);
                c
            }
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "`{:?}` must be installed (Debian: knot, nsd; .ci/run installs them): {e}",
                    self.kind
                )
            });
        self.child = Some(child);
    }

    /// Stops it (SIGTERM by its PID, then SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same address, with what it had stored.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// What it logged.
    pub fn log(&self) -> String {
        let mut out =
            std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        out.push_str(&std::fs::read_to_string(self.dir.path().join("nsd.log")).unwrap_or_default());
        out
    }

    /// The A records it answers for `name`, sorted (empty when it has no answer).
    pub fn addresses(&self, name: &str) -> Vec<String> {
        let out = Command::new("dig")
            .arg(format!("@{}", self.addr.ip()))
            .args([
                "-p",
                &self.addr.port().to_string(),
                "+time=1",
                "+tries=1",
                "+short",
            ])
            .args([name, "A"])
            .output()
            .expect("dig");
        let mut ips: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.parse::<IpAddr>().is_ok())
            .map(str::to_owned)
            .collect();
        ips.sort();
        ips
    }

    /// Waits until it answers `name` with exactly `want`; returns how long that took.
    pub fn wait_for(&self, name: &str, want: &[&str], limit: Duration) -> Duration {
        let started = Instant::now();
        let mut want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
        want.sort();
        loop {
            let got = self.addresses(name);
            if got == want {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "{:?} at {} answers {got:?} for {name}, not {want:?}, after {limit:?}:\n{}",
                self.kind,
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Secondary {
    fn drop(&mut self) {
        self.stop();
    }
}
