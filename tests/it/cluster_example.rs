//! The README's "Running a cluster" walk-through, run: `examples/cluster/cluster.sh up` starts
//! three etcd members and three aliasd nodes on 127.0.10.x (the script's default addresses; no
//! other test uses that net, the etcd harness takes 127.0.200-254.x) into a temporary
//! directory; a relink through one node is answered by all three (real `dig`); the leader,
//! killed with SIGKILL by the PID the script recorded, is replaced by another node that takes a
//! change; `down` leaves none of the processes running and none of the ports taken, and keeps
//! the directory's configs and etcd's data.
//!
//! Bounded: each step has a deadline and the whole test takes well under a minute. If it fails
//! half-way, a guard runs `down` and then kills, by PID, anything the script recorded that still
//! runs in the directory, so no etcd or aliasd outlives the test.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use aliasd::cluster::ClusterStatus;

use crate::support::{TOKEN, dig, run_bin_within};

/// The script's default net.
const NET: &str = "127.0.10";
/// Every process the script starts, by the name of its PID file.
const NAMES: [&str; 8] = ["a", "b", "c", "web-v1", "web-v2", "e1", "e2", "e3"];
const NODES: [&str; 3] = ["a", "b", "c"];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cluster/cluster.sh")
}

fn node_ip(node: &str) -> String {
    let host = match node {
        "a" => 11,
        "b" => 12,
        "c" => 13,
        other => panic!("no node {other}"),
    };
    format!("{NET}.{host}")
}

fn api(node: &str) -> String {
    format!("http://{}:5380", node_ip(node))
}

fn dns(node: &str) -> SocketAddr {
    format!("{}:5353", node_ip(node)).parse().expect("address")
}

/// Runs `cluster.sh COMMAND DIR` with this build's binaries and the tests' token.
fn run_script(command: &str, dir: &Path, limit: Duration) -> Output {
    run_bin_within(
        "bash",
        &[
            script().to_str().expect("utf-8 path"),
            command,
            dir.to_str().expect("utf-8 path"),
        ],
        &[
            ("ALIASD_BIN", env!("CARGO_BIN_EXE_aliasd")),
            ("ALIASCTL_BIN", env!("CARGO_BIN_EXE_aliasctl")),
            ("ALIASD_DEPLOY_TOKEN", TOKEN),
            ("ALIASD_EXAMPLE_WAIT", "30"),
        ],
        limit,
    )
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `aliasctl --server SERVER ARGS...` with the tests' token.
fn aliasctl(server: &str, args: &[&str]) -> Output {
    let mut all = vec!["--server", server, "--token", TOKEN];
    all.extend_from_slice(args);
    run_bin_within(
        env!("CARGO_BIN_EXE_aliasctl"),
        &all,
        &[],
        Duration::from_secs(20),
    )
}

/// The cluster as `node` sees it, or `None` if it does not answer.
fn cluster(node: &str) -> Option<ClusterStatus> {
    let output = aliasctl(&api(node), &["--json", "cluster"]);
    if !output.status.success() {
        return None;
    }
    serde_json::from_slice(&output.stdout).ok()
}

/// The addresses `node` answers for web.internal.
fn answers(node: &str) -> Vec<String> {
    let mut lines: Vec<String> = dig(dns(node), &["web.internal", "+short"])
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// Polls `check` every 50 ms until it returns `Some`, for `limit` at most; panics with `what`
/// and the last value seen.
fn wait_for<T, S: std::fmt::Debug>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Result<T, S>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) => assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}; last seen: {last:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The PID the script recorded for `name`, if its file is there.
fn recorded_pid(dir: &Path, name: &str) -> Option<u32> {
    std::fs::read_to_string(dir.join(format!("{name}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether `pid` is a process that runs in `dir` (every process the script starts does) and
/// has not ended: a zombie has ended, only its parent's wait is missing.
fn runs_in(pid: u32, dir: &Path) -> bool {
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"));
    let Ok(cwd) = cwd else { return false };
    if cwd != dir {
        return false;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    !status
        .lines()
        .any(|l| l.starts_with("State:") && l.contains('Z'))
}

fn kill9(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Runs `down` when the test ends, also when it fails, then kills whatever the script
/// recorded that still runs in the directory.
struct Guard {
    dir: tempfile::TempDir,
    /// Every PID seen recorded, also those whose file `down` removed.
    pids: Vec<u32>,
    down: bool,
}

impl Guard {
    fn path(&self) -> PathBuf {
        // The script compares the processes' working directory with the physical path.
        self.dir.path().canonicalize().expect("canonical temp dir")
    }

    fn note_pids(&mut self) {
        let dir = self.path();
        for name in NAMES {
            if let Some(pid) = recorded_pid(&dir, name)
                && !self.pids.contains(&pid)
            {
                self.pids.push(pid);
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.down {
            return;
        }
        self.note_pids();
        let dir = self.path();
        // Not `run_script`: a panic here, during a failed test's unwinding, would abort.
        let _ = Command::new("timeout")
            .args(["40", "bash"])
            .arg(script())
            .arg("down")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for &pid in &self.pids {
            if runs_in(pid, &dir) {
                kill9(pid);
            }
        }
    }
}

/// The README's walk-through is this script's: its section runs `up`, `status` and `down` on
/// the addresses this test checks.
#[test]
fn the_readme_walks_through_this_script() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let start = readme
        .find("\n## Running a cluster")
        .expect("README.md has a section `## Running a cluster`");
    let section = &readme[start + 1..];
    let section = &section[..section[1..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 1)];
    for needed in [
        "examples/cluster/cluster.sh up ",
        "examples/cluster/cluster.sh status ",
        "examples/cluster/cluster.sh down ",
        "dig @127.0.10.11 -p 5353 web.internal",
        "aliasctl --server http://127.0.10.12:5380 link web web-v2",
        "### Cluster figures",
        "cargo bench --bench cluster",
    ] {
        assert!(
            section.contains(needed),
            "README.md's `Running a cluster` does not show `{needed}`"
        );
    }
}

#[test]
fn the_example_cluster_relinks_fails_over_and_stops() {
    let started = Instant::now();
    let mut guard = Guard {
        dir: tempfile::tempdir().expect("tempdir"),
        pids: Vec::new(),
        down: false,
    };
    let dir = guard.path();

    let up = run_script("up", &dir, Duration::from_secs(45));
    guard.note_pids();
    assert!(up.status.success(), "cluster.sh up failed:\n{}", text(&up));
    let shown = text(&up);
    assert!(
        shown.contains("The cluster runs") && shown.contains("dig @127.0.10.11 -p 5353"),
        "cluster.sh up did not print how to try it:\n{shown}"
    );
    assert_eq!(guard.pids.len(), NAMES.len(), "a PID file per process");
    for &pid in &guard.pids {
        assert!(runs_in(pid, &dir), "PID {pid} recorded but not running");
    }
    let status = wait_for(
        "node a sees a leader and 3 nodes",
        Duration::from_secs(5),
        || match cluster("a") {
            Some(s) if s.leader.is_some() && s.nodes.len() == 3 => Ok(s),
            other => Err(other.map(|s| (s.leader, s.nodes.len(), s.problems))),
        },
    );
    println!("up in {:?}; leader {:?}", started.elapsed(), status.leader);

    // Every node answers from the config first, then a relink through b on all three.
    for node in NODES {
        assert_eq!(answers(node), vec![format!("{NET}.21")], "node {node}");
    }
    let link = aliasctl(&api("b"), &["link", "web", "web-v2"]);
    assert!(link.status.success(), "link through b:\n{}", text(&link));
    for node in NODES {
        wait_for(
            &format!("node {node} answers web-v2"),
            Duration::from_secs(5),
            || {
                let got = answers(node);
                if got == [format!("{NET}.22")] {
                    Ok(())
                } else {
                    Err(got)
                }
            },
        );
    }

    // SIGKILL the leader by the PID the script recorded.
    let leader = status.leader.clone().expect("a leader");
    let pid = recorded_pid(&dir, &leader).expect("the leader's PID file");
    kill9(pid);
    wait_for("the old leader is gone", Duration::from_secs(5), || {
        if runs_in(pid, &dir) { Err(pid) } else { Ok(()) }
    });
    let killed = Instant::now();
    let survivors: Vec<&str> = NODES.iter().copied().filter(|n| *n != leader).collect();
    let new_leader = wait_for(
        "a survivor sees a new leader",
        Duration::from_secs(15),
        || match cluster(survivors[0]) {
            Some(s) if s.leader.is_some() && s.leader.as_deref() != Some(leader.as_str()) => {
                Ok(s.leader.expect("checked"))
            }
            other => Err(other.map(|s| (s.leader, s.problems))),
        },
    );
    println!(
        "{new_leader} leads {:?} after {leader} was killed",
        killed.elapsed()
    );
    // A change through the survivor that does not lead: forwarded to the new leader.
    let via = survivors
        .iter()
        .copied()
        .find(|n| *n != new_leader)
        .expect("a follower among the survivors");
    let relink = wait_for(
        "a change through a survivor is accepted",
        Duration::from_secs(15),
        || {
            let output = aliasctl(&api(via), &["link", "web", "web-v1"]);
            if output.status.success() {
                Ok(output)
            } else {
                Err(text(&output))
            }
        },
    );
    println!(
        "change accepted {:?} after the kill: {}",
        killed.elapsed(),
        String::from_utf8_lossy(&relink.stdout).trim()
    );
    for node in &survivors {
        wait_for(
            &format!("node {node} answers web-v1 again"),
            Duration::from_secs(5),
            || {
                let got = answers(node);
                if got == [format!("{NET}.21")] {
                    Ok(())
                } else {
                    Err(got)
                }
            },
        );
    }

    // `down` stops everything the script started and removes none of the directory's files.
    let down = run_script("down", &dir, Duration::from_secs(45));
    assert!(
        down.status.success(),
        "cluster.sh down failed:\n{}",
        text(&down)
    );
    guard.down = true;
    let left: Vec<u32> = guard
        .pids
        .iter()
        .copied()
        .filter(|&pid| runs_in(pid, &dir))
        .collect();
    assert!(
        left.is_empty(),
        "still running after down: {left:?}\n{}",
        text(&down)
    );
    for name in NAMES {
        assert!(
            !dir.join(format!("{name}.pid")).exists(),
            "{name}.pid left after down"
        );
    }
    for kept in [
        "a.toml",
        "b.toml",
        "c.toml",
        "internal.zone",
        "e1.etcd",
        "a.log",
    ] {
        assert!(dir.join(kept).exists(), "down removed {kept}");
    }
    let mut taken = Vec::new();
    for host in [1, 2, 3] {
        for port in [2379, 2380] {
            taken.push(format!("{NET}.{host}:{port}"));
        }
    }
    for node in NODES {
        for port in [5353, 5380, 8000] {
            taken.push(format!("{}:{port}", node_ip(node)));
        }
    }
    for addr in taken {
        assert!(
            TcpListener::bind(&addr).is_ok(),
            "{addr} still taken after down"
        );
    }
    for node in NODES {
        assert!(
            UdpSocket::bind(dns(node)).is_ok(),
            "{} (UDP) still taken after down",
            dns(node)
        );
    }
    println!("whole test {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the example took {:?}, more than its minute",
        started.elapsed()
    );
}
