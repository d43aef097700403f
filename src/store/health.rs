//! Whether the database answers, kept by a background probe, so that a
//! request never waits for the pool's acquire timeout once the database is
//! known to be down: while it is, every store call answers `Unavailable` at
//! once, and calls already waiting (for a connection the pool keeps failing
//! to open) are let go the moment the probe sees it go down. The probe runs
//! every [`PROBE_UP`] while the database answers, every [`PROBE_DOWN`] while
//! it does not, and at once when a store call fails with an unavailable
//! error.
//!
//! Only Postgres has one: an SQLite file does not go away underneath.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::StoreError;

/// How often the probe runs while the database answers.
pub const PROBE_UP: Duration = Duration::from_millis(500);
/// How often the probe runs while the database does not answer.
pub const PROBE_DOWN: Duration = Duration::from_millis(200);
/// How long a probe may take before the database counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The database's state as the probe last saw it.
pub struct Health {
    up: watch::Sender<bool>,
    wake: Notify,
}

impl Health {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            up: watch::Sender::new(true),
            wake: Notify::new(),
        })
    }

    /// Records what a probe saw; logs the change.
    pub fn set(&self, up: bool, why: &str) {
        let changed = self.up.send_if_modified(|state| {
            let changed = *state != up;
            *state = up;
            changed
        });
        if changed && up {
            tracing::info!("the database answers again");
        } else if changed {
            tracing::warn!(
                error = why,
                "the database does not answer; answering 503 until it does"
            );
        }
    }

    /// Asks the probe to run now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits until a probe is asked for, or `interval` has passed.
    pub async fn next_probe(&self, interval: Duration) {
        let _ = tokio::time::timeout(interval, self.wake.notified()).await;
    }

    /// Runs one store call: refused at once while the database is known to
    /// be down, given up when it goes down meanwhile.
    pub async fn guard<T>(
        &self,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let mut up = self.up.subscribe();
        if !*up.borrow_and_update() {
            return Err(known_down());
        }
        let result = tokio::select! {
            biased;
            result = work => result,
            _ = up.wait_for(|up| !*up) => return Err(known_down()),
        };
        if matches!(result, Err(StoreError::Unavailable(_))) {
            self.wake();
        }
        result
    }
}

fn known_down() -> StoreError {
    StoreError::Unavailable("the database did not answer the last health probe".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_are_refused_while_down_and_let_go_when_it_goes_down() {
        let health = Health::new();
        assert_eq!(health.guard(async { Ok(1) }).await.ok(), Some(1));
        health.set(false, "test");
        assert!(matches!(
            health.guard(async { Ok(1) }).await,
            Err(StoreError::Unavailable(_))
        ));
        health.set(true, "test");
        let waiting = {
            let health = health.clone();
            tokio::spawn(async move {
                health
                    .guard(std::future::pending::<Result<(), StoreError>>())
                    .await
            })
        };
        tokio::task::yield_now().await;
        health.set(false, "test");
        let outcome = waiting.await.expect("task");
        assert!(matches!(outcome, Err(StoreError::Unavailable(_))));
    }
}
