//! Durable state: restarts, SIGKILL right after an acknowledged change, and refusal of a damaged
//! state file.

use hickory_proto::rr::RecordType;

use crate::support::{Fixture, Transport, addresses, query, soa_serial};

#[tokio::test]
async fn a_restart_keeps_the_links_and_the_serial_keeps_growing() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    let linked = daemon
        .client()
        .link("web", &["web-v2".to_owned()])
        .await
        .expect("link");
    let serial = soa_serial(&query(daemon.dns, "internal.", RecordType::SOA, Transport::Udp).await);
    assert!(daemon.terminate().success(), "a clean stop exits 0");

    let daemon = fixture.start();
    let web = daemon.client().alias("web").await.expect("alias");
    assert_eq!(web.targets, ["web-v2"]);
    assert_eq!(web.revision, linked.revision);
    assert_eq!(web.changed_by, linked.changed_by);
    let m = query(daemon.dns, "web.internal.", RecordType::A, Transport::Udp).await;
    assert_eq!(addresses(&m), ["127.0.0.21"]);
    let after = soa_serial(&query(daemon.dns, "internal.", RecordType::SOA, Transport::Udp).await);
    assert!(
        after > serial,
        "serial went from {serial} to {after} across a restart"
    );
}

#[tokio::test]
async fn sigkill_right_after_an_acknowledged_relink_loses_nothing() {
    let fixture = Fixture::new();
    let rounds: [&[&str]; 4] = [&["web-v2"], &["web-v1", "web-v2"], &["web-v1"], &["web-v2"]];
    for targets in rounds {
        let daemon = fixture.start();
        let targets: Vec<String> = targets.iter().map(|s| s.to_string()).collect();
        daemon.client().link("web", &targets).await.expect("link");
        daemon.kill9();

        let daemon = fixture.start();
        let web = daemon.client().alias("web").await.expect("alias");
        assert_eq!(
            web.targets, targets,
            "the acknowledged link survived kill -9"
        );
        daemon.kill9();
    }
}

#[tokio::test]
async fn a_damaged_state_file_is_refused_and_left_as_it_was() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    daemon
        .client()
        .link("web", &["web-v2".to_owned()])
        .await
        .expect("link");
    daemon.kill9();

    let good = std::fs::read(fixture.state_file()).unwrap();
    let truncated = &good[..good.len() / 2];
    std::fs::write(fixture.state_file(), truncated).unwrap();
    let (status, stderr) = fixture.start_failing();
    assert!(!status.success());
    assert!(
        stderr.contains("state.json") && stderr.contains("corrupt"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(fixture.state_file()).unwrap(),
        truncated,
        "left untouched"
    );

    let mut flipped = good.clone();
    let last = flipped.len() - 5;
    flipped[last] ^= 0x20;
    std::fs::write(fixture.state_file(), &flipped).unwrap();
    let (status, stderr) = fixture.start_failing();
    assert!(!status.success());
    assert!(stderr.contains("checksum mismatch"), "{stderr}");

    std::fs::write(fixture.state_file(), &good).unwrap();
    let daemon = fixture.start();
    assert_eq!(
        daemon.client().alias("web").await.unwrap().targets,
        ["web-v2"]
    );
}

#[tokio::test]
async fn two_daemons_cannot_share_a_state_directory() {
    let fixture = Fixture::new();
    let _first = fixture.start();
    let (status, stderr) = fixture.start_failing();
    assert!(!status.success());
    assert!(
        stderr.contains("another aliasd holds this state directory"),
        "{stderr}"
    );
}

/// `[history] keep_per_alias`: the API shows only what is kept, the file is rewritten once it
/// holds enough dropped entries, revisions go on across a restart, and a rollback to a revision
/// that was compacted away says so.
#[tokio::test]
async fn history_retention_keeps_the_newest_entries_and_compacts_the_file() {
    let fixture = Fixture::with_extra("\n[history]\nkeep_per_alias = 5\nmax_age = \"30days\"\n");
    let daemon = fixture.start();
    let client = daemon.client();
    let changes = 100;
    for i in 0..changes {
        let to = if i % 2 == 0 { "web-v2" } else { "web-v1" };
        client.link("web", &[to.to_owned()]).await.expect("link");
    }
    let history = client.history("web").await.expect("history");
    let revisions: Vec<u64> = history.iter().map(|e| e.revision).collect();
    let last = client.alias("web").await.expect("alias").revision;
    assert_eq!(revisions, ((last - 4)..=last).collect::<Vec<_>>());
    let file = fixture.dir.path().join("state").join("history.jsonl");
    let lines = std::fs::read_to_string(&file)
        .expect("history file")
        .lines()
        .count();
    assert!(
        lines < changes,
        "the history file was never compacted: {lines} entries after {changes} changes"
    );
    assert!(daemon.terminate().success());

    let daemon = fixture.start();
    let client = daemon.client();
    let again: Vec<u64> = client
        .history("web")
        .await
        .expect("history")
        .iter()
        .map(|e| e.revision)
        .collect();
    assert_eq!(again, revisions, "the kept entries survive a restart");
    let next = client
        .link("web", &["web-v2".to_owned()])
        .await
        .expect("link");
    assert_eq!(
        next.revision,
        last + 1,
        "revisions go on from the kept ones"
    );
    let err = client
        .rollback(
            "web",
            &aliasd::api::dto::RollbackRequest {
                to_revision: Some(2),
                ..Default::default()
            },
        )
        .await
        .expect_err("revision 2 is gone");
    let text = err.to_string();
    assert!(
        text.contains("revision 2 of alias `web.internal` was compacted away"),
        "{text}"
    );
    assert!(text.contains("keep_per_alias = 5"), "{text}");
}

/// Unmounts the tmpfs when the test ends, whatever happened.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// The state directory's disk full (a small tmpfs, as root): a change is refused with a 500
/// that says so, nothing is half-applied (the alias and DNS keep the last stored change), and
/// changes work again once there is space.
#[tokio::test]
async fn a_full_state_disk_refuses_changes_and_keeps_serving_until_space_is_back() {
    let fixture = Fixture::new();
    let state = fixture.dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&state)
        .status()
        .expect("run mount");
    assert!(
        mounted.success(),
        "this test mounts a tmpfs for the state directory and needs root (CI runs as root)"
    );
    let _unmount = Unmount(state.clone());
    let daemon = fixture.start();
    let client = daemon.client();
    client
        .link("web", &["web-v2".to_owned()])
        .await
        .expect("link with space");

    // Fill the disk; the next appends fail once the files' last pages are used up.
    let filler = state.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).expect("filler");
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    let mut stored = client.alias("web").await.expect("alias");
    let mut refused = None;
    for i in 0..200 {
        let to = if i % 2 == 0 { "web-v1" } else { "web-v2" };
        match client.link("web", &[to.to_owned()]).await {
            Ok(alias) => stored = alias,
            Err(e) => {
                refused = Some(e.to_string());
                break;
            }
        }
    }
    let refused = refused.expect("a change was refused once the disk was full");
    assert!(refused.contains("HTTP 500"), "{refused}");
    assert!(refused.contains("could not be stored"), "{refused}");
    assert!(refused.contains("No space left"), "{refused}");
    // Nothing half-applied: the API and DNS show the last change that was stored.
    let now = client.alias("web").await.expect("alias still served");
    assert_eq!(now.revision, stored.revision);
    assert_eq!(now.targets, stored.targets);
    let m = query(daemon.dns, "web.internal.", RecordType::A, Transport::Udp).await;
    let mut served = addresses(&m);
    served.sort();
    let mut want: Vec<String> = now
        .endpoints
        .iter()
        .map(|e| {
            e.rsplit_once(':')
                .map_or(e.clone(), |(ip, _)| ip.to_owned())
        })
        .collect();
    want.sort();
    assert_eq!(served, want, "DNS serves the last stored change");

    std::fs::remove_file(&filler).expect("free the space");
    let other = if now.targets == ["web-v1"] {
        "web-v2"
    } else {
        "web-v1"
    };
    let after = client
        .link("web", &[other.to_owned()])
        .await
        .expect("a change once space is back");
    assert_eq!(after.revision, stored.revision + 1);
    assert!(daemon.terminate().success());
    // And what was acknowledged survives a restart on the same disk.
    let daemon = fixture.start();
    let web = daemon.client().alias("web").await.expect("alias");
    assert_eq!(web.revision, after.revision);
    assert!(daemon.terminate().success());
}

/// The state directory read-only at start (a volume mounted `:ro`, a disk the kernel remounted
/// read-only): aliasd refuses to start, naming the directory and the reason once, and touches
/// nothing; once it is writable again the stored links are all there. (Remounting read-only
/// under a running aliasd is refused by the kernel while aliasd holds its files open for
/// writing, so the running case is the disk-full test above.)
#[tokio::test]
async fn a_read_only_state_directory_is_refused_at_start_and_loses_nothing() {
    let fixture = Fixture::new();
    let state = fixture.dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let mount = |args: &[&str]| {
        let status = std::process::Command::new("mount")
            .args(args)
            .arg(&state)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "this test mounts a tmpfs for the state directory and needs root (CI runs as root)"
        );
    };
    mount(&["-t", "tmpfs", "-o", "size=4m", "tmpfs"]);
    let _unmount = Unmount(state.clone());
    let daemon = fixture.start();
    let linked = daemon
        .client()
        .link("web", &["web-v2".to_owned()])
        .await
        .expect("link");
    assert!(daemon.terminate().success());
    let files = |dir: &std::path::Path| {
        let mut all: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .expect("list the state dir")
            .map(|e| {
                let e = e.expect("entry");
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).expect("read"),
                )
            })
            .collect();
        all.sort();
        all
    };
    let before = files(&state);

    mount(&["-o", "remount,ro"]);
    let (status, stderr) = fixture.start_failing();
    assert!(!status.success(), "aliasd started on a read-only state dir");
    assert!(
        stderr.contains(&state.display().to_string()),
        "the error names the state directory: {stderr}"
    );
    assert_eq!(
        stderr.matches("Read-only file system").count(),
        1,
        "the reason, said once: {stderr}"
    );
    assert_eq!(files(&state), before, "nothing in the state dir changed");

    mount(&["-o", "remount,rw"]);
    let daemon = fixture.start();
    let web = daemon.client().alias("web").await.expect("alias");
    assert_eq!(web.revision, linked.revision);
    assert_eq!(web.targets, ["web-v2"]);
    assert!(daemon.terminate().success());
}
