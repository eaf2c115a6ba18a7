use futures_util::FutureExt;
use tokio::sync::oneshot;

use super::*;

#[tokio::test]
async fn a_task_that_panics_or_returns_is_named_with_how_it_ended() {
    let mut critical = Critical::default();
    let (go, wait) = oneshot::channel::<()>();
    critical.spawn("the writer", async move {
        let _ = wait.await;
        panic!("boom");
    });
    assert!(
        critical.ended().now_or_never().is_none(),
        "nothing has ended yet"
    );
    go.send(()).expect("the task waits");
    assert_eq!(
        critical.ended().await,
        Ended {
            name: "the writer".into(),
            why: "panicked: boom".into()
        }
    );
    critical.spawn("the API", async {});
    assert_eq!(critical.ended().await.to_string(), "the API stopped");
    assert!(critical.is_empty());
    assert!(
        critical.ended().now_or_never().is_none(),
        "with nothing left, nothing ends"
    );
}

#[tokio::test]
async fn a_thread_reports_its_end_whether_it_returns_or_panics() {
    let mut critical = Critical::default();
    let on_exit = critical.on_exit("DNS over UDP");
    let thread = std::thread::spawn(move || {
        let _on_exit = on_exit;
        panic!("udp");
    });
    assert!(thread.join().is_err(), "the thread panicked");
    assert_eq!(
        critical.ended().await.to_string(),
        "DNS over UDP panicked (its message is logged above)"
    );
    let on_exit = critical.on_exit("a proxy worker");
    assert!(!critical.is_empty());
    std::thread::spawn(move || drop(on_exit))
        .join()
        .expect("the thread returns");
    assert_eq!(critical.ended().await.why, "stopped");
    assert!(critical.is_empty());
}
