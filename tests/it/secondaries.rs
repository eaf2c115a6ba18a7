//! aliasd as the primary of real secondaries: Knot DNS and NSD (Debian's `knot` and `nsd`,
//! started here on loopback ports with configs written here), fed by NOTIFY, AXFR and IXFR with
//! TSIG; and the transfers aliasd refuses.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use aliasd::api::dto::EventDto;
use serde_json::json;

use crate::secondary_servers::{KEY_NAME, Kind, SECRET, Secondary, free_port};
use crate::support::{ConfigText, Daemon, Fixture, TOKEN, http, post};

const WRONG_SECRET: &str = "AAAx7hU3C5kS5u7wK1m2b7cQ6N4pYy1cZt6o9b0aXkE=";

/// A config where `internal.` has `secondaries` (TOML inline tables) and `transfer_allow`.
pub fn config(dns_port: u16, secondaries: &[String], allow: &[&str], extra: &str) -> String {
    let allow: Vec<String> = allow.iter().map(|a| format!("\"{a}\"")).collect();
    ConfigText::new()
        .dns("listen", format!("[\"127.0.0.1:{dns_port}\"]"))
        .zone(&format!(
            "secondaries = [{}]\ntransfer_allow = [{}]",
            secondaries.join(", "),
            allow.join(", ")
        ))
        .section(&format!(
            "[[tsig_key]]\nname = \"{KEY_NAME}\"\nsecret = \"{SECRET}\""
        ))
        .section("[promotion]\nobserve = \"500ms\"\nwarm_timeout = \"5s\"\ndrain_grace = \"100ms\"")
        .service("web-v1", ["10.7.0.1:80", "10.7.0.2:80"])
        .service("web-v2", ["10.7.0.3:80"])
        .alias("web", ["web-v1"])
        .section(extra)
        .render()
}

/// A secondary entry of the config.
pub fn secondary(addr: SocketAddr, keyed: bool) -> String {
    if keyed {
        format!("{{ address = \"{addr}\", tsig_key = \"{KEY_NAME}\" }}")
    } else {
        format!("{{ address = \"{addr}\" }}")
    }
}

/// `dig` from `source` for `internal.` of `qtype` (`AXFR`, `IXFR=<serial>`), with `key` as
/// `name:secret` if given; its whole output.
fn transfer(server: SocketAddr, source: &str, qtype: &str, key: Option<&str>) -> String {
    let mut c = Command::new("dig");
    c.arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "-b", source])
        .args(["+time=3", "+tries=1", "internal.", qtype]);
    if let Some(key) = key {
        c.args(["-y", &format!("hmac-sha256:{key}")]);
    }
    let out = c.output().expect("dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn records(output: &str) -> Vec<&str> {
    output
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty() && !l.contains("TSIG"))
        .collect()
}

fn serial(daemon: &Daemon) -> u32 {
    let out = crate::support::dig(daemon.dns, &["+short", "internal.", "SOA"]);
    out.split_whitespace()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no SOA serial in {out:?}"))
}

fn start(secondaries: &[String], allow: &[&str], extra: &str) -> (Fixture, Daemon) {
    let port = free_port("127.0.0.1".parse().unwrap());
    let fixture = Fixture::with_config_text(&config(port, secondaries, allow, extra));
    let daemon = fixture.start();
    (fixture, daemon)
}

async fn relink(daemon: &Daemon, to: &str) {
    let (status, body) = http(
        daemon,
        "PUT",
        "/v1/aliases/web/targets",
        Some(TOKEN),
        &json!({ "targets": [to] }).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

const V1: [&str; 2] = ["10.7.0.1", "10.7.0.2"];
const V2: [&str; 1] = ["10.7.0.3"];
const BOTH: [&str; 3] = ["10.7.0.1", "10.7.0.2", "10.7.0.3"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knot_and_nsd_follow_every_relink_and_promotion_phase() {
    let knot_ip: IpAddr = "127.0.0.3".parse().unwrap();
    let nsd_ip: IpAddr = "127.0.0.4".parse().unwrap();
    // The secondaries' ports must be known before aliasd starts, and aliasd's DNS port before
    // they do: both are picked free first.
    let knot_addr = SocketAddr::new(knot_ip, free_port(knot_ip));
    let nsd_addr = SocketAddr::new(nsd_ip, free_port(nsd_ip));
    let (_fixture, daemon) = start(
        &[secondary(knot_addr, true), secondary(nsd_addr, true)],
        &[],
        "",
    );
    let knot = Secondary::start(Kind::Knot, knot_addr, daemon.dns);
    let nsd = Secondary::start(Kind::Nsd, nsd_addr, daemon.dns);
    let both = [&knot, &nsd];
    for s in both {
        s.wait_for("web.internal", &V1, Duration::from_secs(20));
    }

    // A relink reaches both through NOTIFY and IXFR.
    relink(&daemon, "web-v2").await;
    for s in both {
        s.wait_for("web.internal", &V2, Duration::from_secs(10));
    }
    // A promotion: both versions while mixed, then the new one alone.
    let (status, body) = post(
        &daemon,
        "/v1/aliases/web/promote",
        json!({"to": "web-v1", "observe": "2s"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    for s in both {
        s.wait_for("web.internal", &BOTH, Duration::from_secs(10));
    }
    for s in both {
        s.wait_for("web.internal", &V1, Duration::from_secs(15));
    }
    // They took increments, not the whole zone, once they had it.
    assert!(knot.log().contains("IXFR, incoming"), "{}", knot.log());
    assert!(
        nsd.log().contains("TSIG verified with key xfr-key"),
        "{}",
        nsd.log()
    );
    // aliasd knows what each serves.
    let (status, body) = http(&daemon, "GET", "/v1/secondaries", None, "").await;
    assert_eq!(status, 200, "{body}");
    let want = serial(&daemon);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http(&daemon, "GET", "/v1/secondaries", None, "").await;
        let all = body["secondaries"].as_array().cloned().unwrap_or_default();
        if all.len() == 2 && all.iter().all(|s| s["serial"] == want) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "secondaries not seen at {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_need_an_allowed_address_and_the_secondarys_key() {
    let keyed: SocketAddr = "127.0.0.13:53".parse().unwrap();
    let open: SocketAddr = "127.0.0.14:53".parse().unwrap();
    let (_fixture, daemon) = start(
        &[secondary(keyed, true), secondary(open, false)],
        &["127.0.0.16/30"],
        "",
    );
    let key = format!("{KEY_NAME}:{SECRET}");
    let wrong = format!("{KEY_NAME}:{WRONG_SECRET}");
    let full = transfer(daemon.dns, "127.0.0.13", "AXFR", Some(&key));
    let lines = records(&full);
    assert!(
        lines.first().is_some_and(|l| l.contains("SOA"))
            && lines.last().is_some_and(|l| l.contains("SOA")),
        "an AXFR starts and ends with the SOA: {full}"
    );
    assert!(
        full.contains("web.internal.") && full.contains("10.7.0.1"),
        "{full}"
    );
    assert!(full.contains("db.internal."), "static records too: {full}");
    // The keyed secondary without its key, or with a wrong one: refused.
    for (what, out) in [
        ("no key", transfer(daemon.dns, "127.0.0.13", "AXFR", None)),
        (
            "a wrong key",
            transfer(daemon.dns, "127.0.0.13", "AXFR", Some(&wrong)),
        ),
    ] {
        assert!(records(&out).is_empty(), "with {what}: {out}");
        assert!(
            out.contains("Transfer failed") || out.contains("BADSIG"),
            "with {what}: {out}"
        );
    }
    // The open secondary and transfer_allow need no key; any other address is refused.
    assert_eq!(
        records(&transfer(daemon.dns, "127.0.0.14", "AXFR", None)),
        lines
    );
    assert_eq!(
        records(&transfer(daemon.dns, "127.0.0.17", "AXFR", None)),
        lines
    );
    let refused = transfer(daemon.dns, "127.0.0.20", "AXFR", None);
    assert!(records(&refused).is_empty(), "{refused}");

    // IXFR from the serial before one relink: just that alias's change between the SOAs.
    let before = serial(&daemon);
    relink(&daemon, "web-v2").await;
    let after = serial(&daemon);
    assert_ne!(before, after);
    let ixfr = transfer(daemon.dns, "127.0.0.14", &format!("IXFR={before}"), None);
    let lines = records(&ixfr);
    let soas = lines.iter().filter(|l| l.contains("SOA")).count();
    assert_eq!(soas, 4, "new, old, new, new: {ixfr}");
    assert!(!ixfr.contains("db.internal."), "nothing static: {ixfr}");
    assert!(
        lines.iter().any(|l| l.contains("10.7.0.1"))
            && lines.iter().any(|l| l.contains("10.7.0.3")),
        "v1 out, v2 in: {ixfr}"
    );
    // Up to date: the SOA alone.
    let current = transfer(daemon.dns, "127.0.0.14", &format!("IXFR={after}"), None);
    assert_eq!(records(&current).len(), 1, "{current}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_secondary_does_not_slow_notify_to_the_others() {
    let knot_ip: IpAddr = "127.0.0.5".parse().unwrap();
    let knot_addr = SocketAddr::new(knot_ip, free_port(knot_ip));
    // Nothing listens there, and nothing ever answers.
    let dead: SocketAddr = SocketAddr::new(
        "127.0.0.6".parse().unwrap(),
        free_port("127.0.0.6".parse().unwrap()),
    );
    // A proxy only for its drain deadline: the longest time a drain waits for anything.
    let (_fixture, daemon) = start(
        &[secondary(dead, true), secondary(knot_addr, true)],
        &[],
        "[[proxy]]\nlisten = \"127.0.0.1:0\"\nalias = \"web\"\ndrain_deadline = \"3s\"\n",
    );
    let knot = Secondary::start(Kind::Knot, knot_addr, daemon.dns);
    knot.wait_for("web.internal", &V1, Duration::from_secs(20));
    // Every relink reaches Knot by NOTIFY, while NOTIFY to the dead one keeps being retried.
    for (to, want) in [
        ("web-v2", &V2[..]),
        ("web-v1", &V1[..]),
        ("web-v2", &V2[..]),
    ] {
        relink(&daemon, to).await;
        let took = knot.wait_for("web.internal", want, Duration::from_secs(10));
        eprintln!("knot answered {to} {took:?} after the relink");
    }
    // Once its NOTIFY for the last serial has gone unanswered, it says why.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http(&daemon, "GET", "/v1/secondaries", None, "").await;
        let all = body["secondaries"].as_array().cloned().unwrap_or_default();
        let dead_one = all
            .iter()
            .find(|s| s["address"] == dead.to_string())
            .unwrap_or_else(|| panic!("{body}"));
        assert!(dead_one["serial"].is_null(), "{body}");
        if dead_one["error"]
            .as_str()
            .is_some_and(|e| e.contains("NOTIFY"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no error for the dead secondary: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // It holds a drain, saying so, but only up to the drain deadline.
    let (status, body) = post(
        &daemon,
        "/v1/aliases/web/promote",
        json!({"to": "web-v1", "observe": "0s"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let draining = wait_alias(&daemon, "draining", Duration::from_secs(10)).await;
    let behind = draining["drain"]["secondaries_behind"].to_string();
    assert!(behind.contains(&dead.to_string()), "{draining}");
    let began = Instant::now();
    wait_alias(&daemon, "stable", Duration::from_secs(20)).await;
    // The TTL window is 1.1 s; the deadline 3 s after it.
    assert!(
        began.elapsed() >= Duration::from_secs(3),
        "the drain ended after {:?}, before its deadline",
        began.elapsed()
    );
}

/// Polls `web` until its phase is `phase`; returns it.
async fn wait_alias(daemon: &Daemon, phase: &str, limit: Duration) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let (_, a) = http(daemon, "GET", "/v1/aliases/web", None, "").await;
        if a["phase"] == phase {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "web not {phase} after {limit:?}: {a}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A secondary stopped during a promotion holds its drain until it is back and has served the
/// new answers for a TTL window; `aliasctl status` says which one it waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_secondary_holds_the_drain_until_it_is_back() {
    let knot_ip: IpAddr = "127.0.0.7".parse().unwrap();
    let nsd_ip: IpAddr = "127.0.0.8".parse().unwrap();
    let knot_addr = SocketAddr::new(knot_ip, free_port(knot_ip));
    let nsd_addr = SocketAddr::new(nsd_ip, free_port(nsd_ip));
    let (_fixture, daemon) = start(
        &[secondary(knot_addr, true), secondary(nsd_addr, true)],
        &[],
        "[[proxy]]\nlisten = \"127.0.0.1:0\"\nalias = \"web\"\ndrain_deadline = \"60s\"\n",
    );
    let mut knot = Secondary::start(Kind::Knot, knot_addr, daemon.dns);
    let nsd = Secondary::start(Kind::Nsd, nsd_addr, daemon.dns);
    knot.wait_for("web.internal", &V1, Duration::from_secs(20));
    nsd.wait_for("web.internal", &V1, Duration::from_secs(20));

    let mut events = daemon.client().events().await.expect("events stream");
    knot.stop();
    let (status, body) = post(
        &daemon,
        "/v1/aliases/web/promote",
        json!({"to": "web-v2", "observe": "0s"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    wait_alias(&daemon, "draining", Duration::from_secs(10)).await;
    nsd.wait_for("web.internal", &V2, Duration::from_secs(10));
    // Well past the TTL window (1.1 s) the drain still waits, for Knot alone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, held) = http(&daemon, "GET", "/v1/aliases/web", None, "").await;
    assert_eq!(held["phase"], "draining", "{held}");
    let behind = held["drain"]["secondaries_behind"].to_string();
    assert!(behind.contains(&knot_addr.to_string()), "{held}");
    assert!(!behind.contains(&nsd_addr.to_string()), "{held}");
    let status = crate::support::run_bin_within(
        env!("CARGO_BIN_EXE_aliasctl"),
        &["--server", &daemon.server_url(), "status", "web"],
        &[],
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains(&format!("waiting for secondary {knot_addr}")),
        "{text}"
    );
    // The events stream said so too: Knot stopped answering.
    let said = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.next_event().await {
            if let Ok(EventDto::Secondary { secondary, .. }) = event
                && secondary.address == knot_addr.to_string()
                && !secondary.caught_up
                && secondary.error.is_some()
            {
                return secondary;
            }
        }
        panic!("the events stream ended");
    })
    .await
    .expect("an event about the stopped secondary");
    assert_eq!(said.zone, "internal.");

    // Back: it catches up, and a TTL window later the old version is safe to stop.
    knot.restart();
    let back = Instant::now();
    knot.wait_for("web.internal", &V2, Duration::from_secs(20));
    let done = wait_alias(&daemon, "stable", Duration::from_secs(20)).await;
    assert_eq!(done["retired"]["services"], json!(["web-v1"]), "{done}");
    assert!(
        back.elapsed() >= Duration::from_secs(1),
        "the drain ended {:?} after Knot came back, within the TTL window",
        back.elapsed()
    );
}
