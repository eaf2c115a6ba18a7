//! The tasks and threads aliasd cannot live without (the writer, DNS over UDP and TCP, the API,
//! each proxy listener), and how their end is noticed.
//!
//! Each one ending before shutdown was asked for, by returning or by a panic, is an [`Ended`]
//! that [`Critical::ended`] yields, so the daemon can log which one and why and exit non-zero
//! for a service manager to restart it, rather than serve a frozen snapshot.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;

use tokio::sync::mpsc;
use tokio::task::{Id, JoinError, JoinSet};

/// A critical task or thread that ended, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// What it was ("the writer", "DNS over TCP on 127.0.0.1:53").
    pub name: String,
    /// How it ended: "stopped" or "panicked: <message>".
    pub why: String,
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.why)
    }
}

/// A set of critical tasks and threads.
pub struct Critical {
    tasks: JoinSet<()>,
    names: HashMap<Id, String>,
    /// Threads hold an [`OnExit`] that reports here when they end.
    threads_tx: mpsc::UnboundedSender<Ended>,
    threads_rx: mpsc::UnboundedReceiver<Ended>,
    /// Threads whose [`OnExit`] has not reported yet.
    threads: usize,
}

impl Default for Critical {
    fn default() -> Self {
        let (threads_tx, threads_rx) = mpsc::unbounded_channel();
        Self {
            tasks: JoinSet::new(),
            names: HashMap::new(),
            threads_tx,
            threads_rx,
            threads: 0,
        }
    }
}

impl Critical {
    /// Runs `task` as a critical task called `name`.
    pub fn spawn(
        &mut self,
        name: impl Into<String>,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let handle = self.tasks.spawn(task);
        self.names.insert(handle.id(), name.into());
    }

    /// What a critical thread called `name` holds for as long as it runs: dropping it (the
    /// thread returning, or a panic unwinding through it) reports the thread's end.
    pub fn on_exit(&mut self, name: impl Into<String>) -> OnExit {
        self.threads += 1;
        OnExit {
            name: name.into(),
            tx: self.threads_tx.clone(),
        }
    }

    /// Whether every task and thread has ended (and been yielded by [`Critical::ended`]).
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty() && self.threads == 0
    }

    /// The next task or thread to end; never resolves while they all run, or when there are
    /// none. Cancel-safe: an end not yielded because the caller stopped waiting stays queued.
    pub async fn ended(&mut self) -> Ended {
        tokio::select! {
            Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                let (id, why) = match joined {
                    Ok((id, ())) => (id, "stopped".to_owned()),
                    Err(error) => (error.id(), failure(error)),
                };
                let name = self.names.remove(&id).unwrap_or_else(|| format!("task {id}"));
                Ended { name, why }
            }
            Some(ended) = self.threads_rx.recv() => {
                self.threads = self.threads.saturating_sub(1);
                ended
            }
        }
    }
}

/// How a task failed.
fn failure(error: JoinError) -> String {
    if error.is_cancelled() {
        return "was cancelled".to_owned();
    }
    let payload = error.into_panic();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".to_owned());
    format!("panicked: {message}")
}

/// Held by a critical thread; reports the thread's end when dropped.
pub struct OnExit {
    name: String,
    tx: mpsc::UnboundedSender<Ended>,
}

impl Drop for OnExit {
    fn drop(&mut self) {
        // A panic's message went to stderr through the panic hook, with the thread's name.
        let why = if std::thread::panicking() {
            "panicked (its message is logged above)"
        } else {
            "stopped"
        };
        let _ = self.tx.send(Ended {
            name: std::mem::take(&mut self.name),
            why: why.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests;
