//! The delivery loop: claims due deliveries from the outbox under a lease
//! (so several processes on one database never send one delivery at once,
//! and a process killed mid-send leaves it to another once the lease runs
//! out), sends each in a task of its own (a slow endpoint holds only its
//! own deliveries), and records each attempt with what it decided:
//! delivered, retried after a backoff, given up, or the endpoint gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::policy::Policy;
use super::secrets::SecretBox;
use super::signing;
use crate::config::WebhooksConfig;
use crate::domain::webhooks::{
    parse_retry_after, Attempt, AttemptOutcome, ClaimedDelivery, RetryPolicy,
};
use crate::store::webhooks::AttemptRecord;
use crate::store::{StoreResult, WebhookStore};
use crate::telemetry::metrics;

/// The most of an answer's body an attempt keeps.
const EXCERPT_BYTES: usize = 1024;
/// Deliveries claimed per query.
const CLAIM_BATCH: u32 = 16;

#[derive(Clone)]
pub struct Deliverer {
    store: Arc<dyn WebhookStore>,
    client: reqwest::Client,
    policy: Policy,
    secrets: Option<Arc<SecretBox>>,
    retry: RetryPolicy,
    disable_after_failures: i32,
    timeout: Duration,
    lease: Duration,
    poll: Duration,
    owner: String,
    in_flight: Arc<Semaphore>,
    wakeup: Arc<Notify>,
}

impl Deliverer {
    pub fn new(
        store: Arc<dyn WebhookStore>,
        config: &WebhooksConfig,
        secrets: Option<Arc<SecretBox>>,
        poll: Duration,
        wakeup: Arc<Notify>,
    ) -> anyhow::Result<Self> {
        let policy = Policy::from_config(config);
        let timeout = Duration::from_secs(config.timeout_secs.max(1));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .dns_resolver(Arc::new(policy.resolver()))
            .build()?;
        Ok(Self {
            store,
            client,
            policy,
            secrets,
            retry: RetryPolicy {
                base: Duration::from_millis(config.retry_base_ms.max(1)),
                max_attempts: i32::try_from(config.max_attempts.max(1)).unwrap_or(i32::MAX),
                max_delay: Duration::from_secs(config.max_retry_delay_secs.max(1)),
            },
            disable_after_failures: i32::try_from(config.disable_after_failures.max(1))
                .unwrap_or(i32::MAX),
            timeout,
            // Longer than any attempt: a live sender never loses its lease.
            lease: timeout * 3 + Duration::from_secs(5),
            poll,
            owner: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            in_flight: Arc::new(Semaphore::new(config.concurrency.max(1))),
            wakeup,
        })
    }

    /// Delivers until `shutdown`; deliveries in flight then are dropped and
    /// their leases run out, so another process (or the next start) sends
    /// them again.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(owner = %self.owner, "webhook delivery started");
        let mut tasks = tokio::task::JoinSet::new();
        while !shutdown.is_cancelled() {
            while tasks.try_join_next().is_some() {}
            let claimed = match self.claim().await {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim webhook deliveries");
                    Vec::new()
                }
            };
            let idle = claimed.is_empty();
            for (delivery, permit) in claimed {
                let this = self.clone();
                tasks.spawn(async move {
                    this.deliver(delivery).await;
                    drop(permit);
                });
            }
            if idle {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(self.poll) => {}
                    () = self.wakeup.notified() => {}
                }
            }
        }
        tasks.shutdown().await;
        tracing::info!(owner = %self.owner, "webhook delivery stopped");
    }

    /// Claims as many due deliveries as there are free slots, each with its slot.
    async fn claim(
        &self,
    ) -> StoreResult<Vec<(ClaimedDelivery, tokio::sync::OwnedSemaphorePermit)>> {
        let free = self.in_flight.available_permits().min(CLAIM_BATCH as usize);
        if free == 0 {
            // Every slot busy: wait for one rather than spin.
            if let Ok(permit) = self.in_flight.clone().acquire_owned().await {
                drop(permit);
            }
            return Ok(Vec::new());
        }
        let claimed = self
            .store
            .claim_deliveries(&self.owner, self.lease, free as u32)
            .await?;
        let mut out = Vec::with_capacity(claimed.len());
        for delivery in claimed {
            match self.in_flight.clone().try_acquire_owned() {
                Ok(permit) => out.push((delivery, permit)),
                // Cannot happen (only this loop takes slots); the lease
                // returns the delivery to the queue if it does.
                Err(_) => break,
            }
        }
        Ok(out)
    }

    async fn deliver(&self, delivery: ClaimedDelivery) {
        let started = Instant::now();
        let attempted_at = crate::store::now();
        let sent = self.send(&delivery).await;
        let elapsed = started.elapsed();
        let (status, retry_after, excerpt, error) = match sent {
            Ok(answer) => (
                Some(answer.status),
                answer.retry_after,
                Some(answer.excerpt),
                None,
            ),
            Err(error) => (None, None, None, Some(error)),
        };
        let outcome = self
            .retry
            .decide(delivery.attempt, status, retry_after, crate::store::now());
        metrics::webhook_delivery(outcome_label(&outcome), elapsed);
        if !matches!(outcome, AttemptOutcome::Succeeded) {
            tracing::info!(
                delivery = %delivery.id,
                webhook = %delivery.webhook_id,
                attempt = delivery.attempt,
                status = status.map(i32::from),
                error = error.as_deref(),
                "webhook attempt failed"
            );
        }
        let record = AttemptRecord {
            attempt: Attempt {
                attempted_at,
                status_code: status.map(i32::from),
                latency_ms: i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
                response_excerpt: excerpt,
                error,
            },
            outcome,
            disable_after_failures: self.disable_after_failures,
        };
        match self
            .store
            .record_attempt(delivery.id, &self.owner, &record)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(delivery = %delivery.id, "lost the delivery's lease"),
            Err(e) => {
                tracing::warn!(error = %e, delivery = %delivery.id, "cannot record a webhook attempt")
            }
        }
    }

    /// One attempt: the answer, or why there was none. Never the secret,
    /// never the URL's text in errors.
    async fn send(&self, delivery: &ClaimedDelivery) -> Result<Answer, String> {
        let url = self.policy.check_url(&delivery.url)?;
        let secrets = self
            .secrets
            .as_ref()
            .ok_or("webhooks.secret_key is not configured on this process")?;
        let body = serde_json::to_vec(&delivery.payload).map_err(|e| e.to_string())?;
        let id = delivery.message_id();
        let timestamp = chrono::Utc::now().timestamp();
        let mut signatures = Vec::with_capacity(2);
        let mut keys = vec![delivery.secret_sealed.as_str()];
        if let (Some(previous), Some(until)) = (
            delivery.previous_secret_sealed.as_deref(),
            delivery.previous_secret_until,
        ) {
            if until > chrono::Utc::now() {
                keys.push(previous);
            }
        }
        for sealed in keys {
            let secret = secrets.open(sealed).map_err(|e| e.to_string())?;
            let key = signing::secret_key(&secret).ok_or("a stored secret is malformed")?;
            signatures.push(signing::sign(&key, &id, timestamp, &body));
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("promptreg-webhooks/", env!("CARGO_PKG_VERSION"))),
        );
        let header = |value: &str| HeaderValue::from_str(value).map_err(|e| e.to_string());
        headers.insert("webhook-id", header(&id)?);
        headers.insert("webhook-timestamp", header(&timestamp.to_string())?);
        headers.insert("webhook-signature", header(&signatures.join(" "))?);
        let response = self
            .client
            .post(url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| describe(&e, self.timeout))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        let mut response = response;
        let mut excerpt = Vec::new();
        // Whatever the body holds past the excerpt is not read; an error
        // mid-body leaves the excerpt as far as it got.
        while excerpt.len() < EXCERPT_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                _ => break,
            }
        }
        excerpt.truncate(EXCERPT_BYTES);
        Ok(Answer {
            status,
            retry_after,
            excerpt: String::from_utf8_lossy(&excerpt).into_owned(),
        })
    }
}

struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    excerpt: String,
}

fn outcome_label(outcome: &AttemptOutcome) -> &'static str {
    match outcome {
        AttemptOutcome::Succeeded => "succeeded",
        AttemptOutcome::RetryAt(_) => "retried",
        AttemptOutcome::GaveUp => "failed",
        AttemptOutcome::Gone => "gone",
    }
}

/// Why a request got no answer, with its causes, without the URL.
fn describe(err: &reqwest::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        return format!("no answer within {} s", timeout.as_secs());
    }
    let mut text = if err.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
