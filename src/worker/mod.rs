//! The durable job worker. A job is claimed with a lease and the claim is
//! committed at once; the work runs outside any transaction while the lease
//! is renewed by heartbeats. A worker that dies simply stops renewing: once
//! its lease expires any worker claims the job again, and the job's runner
//! skips what was already stored. Cancellation is a flag the heartbeat reads.
//! A runner that panics fails its job, not the worker: the panic is caught,
//! the job ends `failed` and the worker takes the next one.
//! This module knows jobs, not what they do: runners do the work.

use std::any::Any;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::domain::jobs::{Job, JobStatus};
use crate::domain::webhooks::OutboxEvent;
use crate::store::{JobStore, StoreResult};
use crate::telemetry;

/// How a job's work ended, when it ended by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    Succeeded,
    /// The runner saw the stop signal and stopped between steps.
    Stopped,
}

/// Why a job failed; `retryable` failures are tried again with backoff
/// until the job's attempts run out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    pub message: String,
    pub retryable: bool,
}

impl JobError {
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }

    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }
}

/// Does one kind of job.
#[async_trait]
pub trait JobRunner: Send + Sync {
    /// Runs `job` until done, checking `stop` between steps. Work already
    /// done by an earlier attempt must be skipped, not repeated.
    async fn run(&self, job: &Job, stop: &StopSignal) -> Result<Finished, JobError>;

    /// What the job's ending reports to webhooks, written in the
    /// transaction that ends it; none by default.
    async fn finished_event(&self, _job: &Job, _status: JobStatus) -> Option<OutboxEvent> {
        None
    }
}

/// Tells a running job to stop, and why.
#[derive(Debug, Clone, Default)]
pub struct StopSignal {
    token: CancellationToken,
    reason: Arc<AtomicU8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Running = 0,
    /// Someone asked for the job to be cancelled.
    Cancelled = 1,
    /// Another worker holds the job now.
    LeaseLost = 2,
    /// This worker is shutting down; the job goes back to the queue.
    Shutdown = 3,
}

impl StopSignal {
    pub fn stop(&self, reason: StopReason) {
        // The first reason wins: a cancel seen before a shutdown stays a cancel.
        let _ = self.reason.compare_exchange(
            StopReason::Running as u8,
            reason as u8,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        self.token.cancel();
    }

    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    pub async fn stopped(&self) {
        self.token.cancelled().await
    }

    pub fn reason(&self) -> StopReason {
        match self.reason.load(Ordering::SeqCst) {
            1 => StopReason::Cancelled,
            2 => StopReason::LeaseLost,
            3 => StopReason::Shutdown,
            _ => StopReason::Running,
        }
    }
}

/// Whether `run_once` found work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    Job(uuid::Uuid, JobStatus),
    Idle,
}

#[derive(Clone)]
pub struct Worker {
    store: Arc<dyn JobStore>,
    runners: Arc<HashMap<String, Arc<dyn JobRunner>>>,
    owner: String,
    lease: Duration,
    poll: Duration,
    wakeup: Arc<tokio::sync::Notify>,
}

impl Worker {
    pub fn new(
        store: Arc<dyn JobStore>,
        runners: HashMap<String, Arc<dyn JobRunner>>,
        lease: Duration,
        poll: Duration,
    ) -> Self {
        let owner = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        Self {
            store,
            runners: Arc::new(runners),
            owner,
            lease,
            poll,
            wakeup: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Wakes an idle worker as soon as `wakeup` is notified, not at its next poll.
    pub fn woken_by(mut self, wakeup: Arc<tokio::sync::Notify>) -> Self {
        self.wakeup = wakeup;
        self
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Claims and runs at most one job. Lets tests drive the worker without sleeping.
    pub async fn run_once(&self) -> StoreResult<Ran> {
        self.run_next(&CancellationToken::new()).await
    }

    /// Runs jobs until `shutdown` is cancelled; a job in hand goes back to
    /// the queue for another worker.
    pub async fn run(&self, shutdown: CancellationToken) {
        tracing::info!(owner = %self.owner, "worker started");
        while !shutdown.is_cancelled() {
            match self.run_next(&shutdown).await {
                Ok(Ran::Job(..)) => continue,
                Ok(Ran::Idle) => {}
                Err(e) => tracing::warn!(error = %e, "worker could not claim a job"),
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.poll) => {}
                () = self.wakeup.notified() => {}
            }
        }
        tracing::info!(owner = %self.owner, "worker stopped");
    }

    async fn run_next(&self, shutdown: &CancellationToken) -> StoreResult<Ran> {
        let Some(job) = self.store.claim_job(&self.owner, self.lease).await? else {
            return Ok(Ran::Idle);
        };
        // Each run is a trace of its own, linked to the request that queued
        // the job: a job may run long after, and more than once.
        let span = tracing::info_span!(
            parent: None,
            "job",
            otel.name = format_args!("job {}", job.kind),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            promptreg.job.id = %job.id,
            promptreg.job.kind = %job.kind,
            promptreg.job.attempt = job.attempts,
            promptreg.job.status = tracing::field::Empty,
            worker = %self.owner,
        );
        telemetry::trace::link_to(&span, job.trace_parent.as_deref());
        let status = self
            .run_job(&job, shutdown)
            .instrument(span.clone())
            .await?;
        span.record("promptreg.job.status", status.as_str());
        if status == JobStatus::Failed {
            span.record("otel.status_code", "ERROR");
        }
        Ok(Ran::Job(job.id, status))
    }

    async fn run_job(&self, job: &Job, shutdown: &CancellationToken) -> StoreResult<JobStatus> {
        let finish = |status: JobStatus, error: Option<String>| async move {
            let event = match self.runners.get(&job.kind) {
                Some(runner) => runner.finished_event(job, status).await,
                None => None,
            };
            let ended = self
                .store
                .complete_job(
                    job.id,
                    &self.owner,
                    status,
                    error.as_deref(),
                    event.as_ref(),
                )
                .await?;
            // Not ended here when the lease was lost: the new holder counts it.
            if ended {
                telemetry::metrics::job_finished(&job.kind, status);
            }
            Ok(status)
        };
        if job.cancel_requested {
            return finish(JobStatus::Cancelled, None).await;
        }
        if job.attempts > job.max_attempts {
            let why = format!("gave up after {} attempts", job.max_attempts);
            return finish(JobStatus::Failed, job.error.clone().or(Some(why))).await;
        }
        let Some(runner) = self.runners.get(&job.kind).cloned() else {
            return finish(
                JobStatus::Failed,
                Some(format!("no runner for jobs of kind {:?}", job.kind)),
            )
            .await;
        };

        let stop = StopSignal::default();
        // A panic ends this future with `Err`, never the worker's task.
        // Unwind safety holds: the panicked job's state is dropped unread
        // (the job fails), and runners keep no job state between jobs.
        let work = AssertUnwindSafe(runner.run(job, &stop)).catch_unwind();
        tokio::pin!(work);
        // A third of the lease keeps it alive; at least every second, so a
        // cancel is seen within a second.
        let mut heartbeat = tokio::time::interval((self.lease / 3).min(Duration::from_secs(1)));
        heartbeat.tick().await;
        // Heartbeats share this future with the work: if the worker's task is
        // dropped, both stop, and the lease runs out as it should. They run
        // beside the work, never instead of it: a heartbeat waiting for
        // SQLite's one writer connection must not stop the work that holds
        // it from finishing its transaction.
        let beats = async {
            loop {
                heartbeat.tick().await;
                match self.store.heartbeat(job.id, &self.owner, self.lease).await {
                    Ok(Some(true)) => stop.stop(StopReason::Cancelled),
                    Ok(Some(false)) => {}
                    Ok(None) => stop.stop(StopReason::LeaseLost),
                    Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                }
            }
        };
        let shutdown_seen = async {
            shutdown.cancelled().await;
            stop.stop(StopReason::Shutdown);
            std::future::pending::<()>().await
        };
        // The select drops the heartbeats once the work ends, panic or not.
        let outcome = tokio::select! {
            outcome = &mut work => outcome,
            _ = async { tokio::join!(beats, shutdown_seen) } => {
                unreachable!("heartbeats and the shutdown watch never end")
            }
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(panic) => {
                tracing::error!(panic = panic_message(panic.as_ref()), "job runner panicked");
                // A worker that lost the lease writes nothing: the holder decides.
                if stop.reason() == StopReason::LeaseLost {
                    return Ok(JobStatus::Running);
                }
                // Whatever else was asked (cancel, shutdown), a panic is a
                // bug: fail now rather than hand the job to another worker
                // to panic again.
                return finish(JobStatus::Failed, Some(RUNNER_PANICKED.to_owned())).await;
            }
        };
        // A cancel requested during the last step is still a cancel.
        if stop.reason() == StopReason::Running {
            if let Ok(Some(true)) = self.store.heartbeat(job.id, &self.owner, self.lease).await {
                stop.stop(StopReason::Cancelled);
            }
        }
        match (stop.reason(), outcome) {
            (StopReason::LeaseLost, _) => {
                tracing::warn!("lost the lease; another worker has the job");
                Ok(JobStatus::Running)
            }
            (StopReason::Cancelled, _) => finish(JobStatus::Cancelled, None).await,
            (StopReason::Shutdown, _) => {
                self.store
                    .retry_job(job.id, &self.owner, crate::store::now(), "worker shut down")
                    .await?;
                Ok(JobStatus::Queued)
            }
            (StopReason::Running, Ok(_)) => finish(JobStatus::Succeeded, None).await,
            (StopReason::Running, Err(e)) if e.retryable && job.attempts < job.max_attempts => {
                let delay = backoff(job.attempts);
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "job failed; will retry");
                let at = crate::store::now()
                    + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(1));
                self.store
                    .retry_job(job.id, &self.owner, at, &e.message)
                    .await?;
                Ok(JobStatus::Queued)
            }
            (StopReason::Running, Err(e)) => {
                tracing::warn!(error = %e, "job failed");
                finish(JobStatus::Failed, Some(e.message)).await
            }
        }
    }
}

/// A panicked job's error: the panic's own text may carry internals, so it
/// goes to the log only.
pub const RUNNER_PANICKED: &str = "internal_error: the job's runner panicked";

/// The text of a panic's payload, when it has one.
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Exponential backoff with jitter for a job's next attempt: 2 s, 4 s, 8 s… (at most 5 min).
pub fn backoff(attempts: i32) -> Duration {
    let base = Duration::from_secs(2u64.saturating_pow(attempts.clamp(1, 8) as u32))
        .min(Duration::from_secs(300));
    let jitter = rand::rng().random_range(0..=base.as_millis() as u64 / 4);
    base + Duration::from_millis(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert!(backoff(1) >= Duration::from_secs(2) && backoff(1) <= Duration::from_millis(2500));
        assert!(backoff(3) >= Duration::from_secs(8));
        assert!(backoff(50) <= Duration::from_secs(375));
    }

    #[test]
    fn the_first_stop_reason_wins() {
        let stop = StopSignal::default();
        assert_eq!(stop.reason(), StopReason::Running);
        stop.stop(StopReason::Cancelled);
        stop.stop(StopReason::Shutdown);
        assert!(stop.is_stopped());
        assert_eq!(stop.reason(), StopReason::Cancelled);
    }

    #[test]
    fn a_panic_message_is_read_from_either_payload() {
        let text: Box<dyn Any + Send> = Box::new("index out of bounds");
        let formatted: Box<dyn Any + Send> = Box::new(format!("bad {}", 7));
        let other: Box<dyn Any + Send> = Box::new(7_u8);
        assert_eq!(panic_message(text.as_ref()), "index out of bounds");
        assert_eq!(panic_message(formatted.as_ref()), "bad 7");
        assert_eq!(panic_message(other.as_ref()), "(no message)");
    }
}
