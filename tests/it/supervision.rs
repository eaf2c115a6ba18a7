//! A part aliasd cannot serve without that dies takes the process down: it logs which part and
//! why and exits 1, so a service manager restarts it. SIGTERM still ends it with 0. The writer
//! is killed through the debug-build test hook (`ALIASD_TEST_HOOK`, see `daemon`).

use crate::support::Fixture;

const HOOK: (&str, &str) = ("ALIASD_TEST_HOOK", "panic-writer-on-sigusr1");

#[tokio::test]
async fn a_dead_writer_ends_aliasd_with_a_failure_naming_it() {
    let fixture = Fixture::new();
    let mut daemon = fixture.start_with_env(&[HOOK]);
    // It serves, the writer included: a relink is stored and answered.
    daemon
        .client()
        .link("web", &["web-v2".to_owned()])
        .await
        .expect("the writer answers before it is killed");
    daemon.signal("USR1");
    let status = daemon.exit_status();
    let log = daemon.log();
    assert_eq!(status.code(), Some(1), "{status}:\n{log}");
    assert!(
        log.contains(
            "aliasd cannot serve without the writer, which panicked: \
             ALIASD_TEST_HOOK=panic-writer-on-sigusr1: SIGUSR1 received"
        ),
        "no log line names the dead writer:\n{log}"
    );
    assert!(
        log.contains("aliasd: error: the writer panicked"),
        "the exit's error names the writer:\n{log}"
    );
}

#[test]
fn sigterm_ends_aliasd_with_0_even_with_the_hook_armed() {
    let fixture = Fixture::new();
    let daemon = fixture.start_with_env(&[HOOK]);
    let log = daemon.log_path();
    let status = daemon.terminate();
    let log = std::fs::read_to_string(log).expect("the log");
    assert_eq!(status.code(), Some(0), "{status}:\n{log}");
    assert!(
        !log.contains("cannot serve without"),
        "a normal shutdown was taken for a failure:\n{log}"
    );
}
