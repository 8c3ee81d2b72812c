//! Runs the service's long-lived tasks (HTTP API, shim, worker, trimmer)
//! as one unit.
//!
//! The invariant: the process is never alive and idle. Every task runs
//! until the shared cancellation token fires; one that ends before that
//! (it returned, failed or panicked) is logged and counted once, the token
//! is fired so the others finish what they hold, and the whole run ends
//! with an error, so the process exits non-zero and its supervisor
//! (Docker, Kubernetes) starts a fresh one.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use prometheus::IntCounter;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A named task; `Ok` when it ended because it was cancelled.
pub type Task = (
    &'static str,
    Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>,
);

/// Runs `tasks` until all have ended. Returns an error naming the first
/// task that ended before `cancel` fired, or that failed; `failures`
/// counts each such task.
pub async fn supervise(
    tasks: Vec<Task>,
    cancel: CancellationToken,
    failures: IntCounter,
) -> anyhow::Result<()> {
    let mut set = JoinSet::new();
    let mut names = HashMap::new();
    for (name, task) in tasks {
        names.insert(set.spawn(task).id(), name);
    }
    let mut first_failure: Option<anyhow::Error> = None;
    while let Some(joined) = set.join_next_with_id().await {
        let (name, outcome) = match joined {
            Ok((id, result)) => (names[&id], result),
            Err(err) => (
                names[&err.id()],
                Err(anyhow::anyhow!(if err.is_panic() {
                    "panicked"
                } else {
                    "was aborted"
                })),
            ),
        };
        let failure = match outcome {
            Ok(()) if cancel.is_cancelled() => continue,
            Ok(()) => anyhow::anyhow!("the {name} stopped although nothing asked it to"),
            Err(err) => err.context(format!("the {name} failed")),
        };
        failures.inc();
        tracing::error!(
            task = name,
            error = format!("{failure:#}"),
            "a task of the service ended; stopping the rest"
        );
        cancel.cancel();
        first_failure.get_or_insert(failure);
    }
    match first_failure {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A task that runs until cancelled, and says whether it was.
    fn until_cancelled(cancel: &CancellationToken) -> (Task, tokio::sync::oneshot::Receiver<()>) {
        let (stopped, seen) = tokio::sync::oneshot::channel();
        let cancel = cancel.clone();
        let task: Task = (
            "worker",
            Box::pin(async move {
                cancel.cancelled().await;
                let _ = stopped.send(());
                Ok(())
            }),
        );
        (task, seen)
    }

    fn counter() -> IntCounter {
        IntCounter::new("task_failures", "test").expect("a counter")
    }

    async fn within<T>(future: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), future)
            .await
            .expect("the tasks did not stop")
    }

    #[tokio::test]
    async fn a_panicking_task_stops_the_others_and_fails_the_run() {
        let cancel = CancellationToken::new();
        let (worker, worker_stopped) = until_cancelled(&cancel);
        let shim: Task = ("order shim", Box::pin(async { panic!("boom") }));
        let failures = counter();
        let run = within(supervise(
            vec![worker, shim],
            cancel.clone(),
            failures.clone(),
        ))
        .await;
        let err = format!("{:#}", run.expect_err("a panic ends the run with an error"));
        assert!(
            err.contains("order shim") && err.contains("panicked"),
            "{err}"
        );
        assert!(cancel.is_cancelled());
        worker_stopped.await.expect("the worker was stopped");
        assert_eq!(failures.get(), 1);
    }

    #[tokio::test]
    async fn a_task_that_returns_early_fails_the_run() {
        let cancel = CancellationToken::new();
        let (worker, worker_stopped) = until_cancelled(&cancel);
        let trimmer: Task = ("trimmer", Box::pin(async { Ok(()) }));
        let failures = counter();
        let run = within(supervise(
            vec![worker, trimmer],
            cancel.clone(),
            failures.clone(),
        ))
        .await;
        let err = format!("{:#}", run.expect_err("an early end is an error"));
        assert!(
            err.contains("trimmer stopped although nothing asked it to"),
            "{err}"
        );
        worker_stopped.await.expect("the worker was stopped");
        assert_eq!(failures.get(), 1);
    }

    #[tokio::test]
    async fn a_failing_task_fails_the_run_with_its_error() {
        let cancel = CancellationToken::new();
        let (worker, _) = until_cancelled(&cancel);
        let http: Task = (
            "HTTP server",
            Box::pin(async { Err(anyhow::anyhow!("address in use")) }),
        );
        let run = within(supervise(vec![worker, http], cancel, counter())).await;
        let err = format!("{:#}", run.expect_err("a failure is an error"));
        assert!(err.contains("HTTP server failed: address in use"), "{err}");
    }

    #[tokio::test]
    async fn a_requested_stop_ends_the_run_cleanly() {
        let cancel = CancellationToken::new();
        let (worker, _) = until_cancelled(&cancel);
        let (mut shim, _) = until_cancelled(&cancel);
        shim.0 = "order shim";
        let failures = counter();
        let run = tokio::spawn(supervise(
            vec![worker, shim],
            cancel.clone(),
            failures.clone(),
        ));
        cancel.cancel();
        within(run)
            .await
            .expect("no panic")
            .expect("a requested stop is no failure");
        assert_eq!(failures.get(), 0);
    }
}
