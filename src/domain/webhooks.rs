//! Webhooks as plain data: the event types, an event as the outbox holds it,
//! which endpoints an event goes to, endpoints, deliveries and their
//! attempts, and how an attempt's answer decides what happens next
//! (delivered, retried after a backoff, given up, or the endpoint gone).

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::ProjectId;

/// Every event type a webhook may subscribe to (`*` means all of them).
pub const EVENT_TYPES: &[&str] = &[
    PROMPT_CREATED,
    PROMPT_UPDATED,
    VERSION_CREATED,
    LABEL_MOVED,
    LABEL_DELETED,
    EVALUATION_FINISHED,
    OPTIMIZATION_FINISHED,
    GATE_FAILED,
    MONITOR_FIRED,
    WEBHOOK_TEST,
];

pub const PROMPT_CREATED: &str = "prompt.created";
pub const PROMPT_UPDATED: &str = "prompt.updated";
pub const VERSION_CREATED: &str = "version.created";
pub const LABEL_MOVED: &str = "label.moved";
pub const LABEL_DELETED: &str = "label.deleted";
pub const EVALUATION_FINISHED: &str = "evaluation.finished";
pub const OPTIMIZATION_FINISHED: &str = "optimization.finished";
pub const GATE_FAILED: &str = "gate.failed";
/// A label's monitor saw its version's feedback drop (and maybe rolled it back).
pub const MONITOR_FIRED: &str = "monitor.fired";
/// Sent only by `POST /v1/webhooks/{id}/test`, to that endpoint alone.
pub const WEBHOOK_TEST: &str = "webhook.test";

/// An event as the outbox stores it: its type, the prompt it concerns (for
/// endpoints that filter by prompt name prefix) and its `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    pub kind: &'static str,
    pub prompt: Option<String>,
    pub data: Value,
}

impl OutboxEvent {
    pub fn new(kind: &'static str, prompt: Option<&str>, data: Value) -> Self {
        Self {
            kind,
            prompt: prompt.map(str::to_owned),
            data,
        }
    }

    /// The body every endpoint receives: `{type, timestamp, data}`.
    pub fn payload(&self, at: DateTime<Utc>) -> Value {
        serde_json::json!({
            "type": self.kind,
            "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": self.data,
        })
    }
}

/// Whether an endpoint subscribed to `events` (types, or `*`) for prompts
/// whose names start with one of `prompts` (none: every prompt) receives
/// an event of type `kind` about `prompt`. Events about no prompt pass
/// every prefix filter; the test event goes only where it is sent.
pub fn subscribed(events: &[String], prompts: &[String], kind: &str, prompt: Option<&str>) -> bool {
    if kind == WEBHOOK_TEST {
        return false;
    }
    let wants_type = events.iter().any(|e| e == "*" || e == kind);
    let wants_prompt = match prompt {
        Some(name) => prompts.is_empty() || prompts.iter().any(|p| name.starts_with(p.as_str())),
        None => true,
    };
    wants_type && wants_prompt
}

/// An endpoint, with its signing secrets still sealed.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Webhook {
    pub id: Uuid,
    pub project_id: ProjectId,
    pub url: String,
    pub description: String,
    #[sqlx(json)]
    pub events: Vec<String>,
    #[sqlx(json)]
    pub prompts: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub secret_sealed: String,
    pub previous_secret_sealed: Option<String>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub consecutive_failures: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One try at a delivery.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Attempt {
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    /// The first KiB of the answer's body.
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
}

/// An event on its way to one endpoint, with every attempt so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub payload: Value,
    pub status: DeliveryStatus,
    pub attempts: Vec<Attempt>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A delivery a worker claimed, with what sending it takes.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub event_id: Uuid,
    /// 1 for the first try.
    pub attempt: i32,
    pub url: String,
    pub payload: Value,
    pub secret_sealed: String,
    pub previous_secret_sealed: Option<String>,
    pub previous_secret_until: Option<DateTime<Utc>>,
}

impl ClaimedDelivery {
    /// The `webhook-id`: one per event, the same on every retry, so that
    /// receivers can drop duplicates.
    pub fn message_id(&self) -> String {
        format!("msg_{}", self.event_id.simple())
    }
}

/// What one attempt decided.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    Succeeded,
    /// Tried again at this time.
    RetryAt(DateTime<Utc>),
    /// No more tries: attempts ran out.
    GaveUp,
    /// The endpoint answered 410 Gone: the delivery stops and the endpoint
    /// is disabled.
    Gone,
}

/// How retries are spaced and bounded.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max_attempts: i32,
    /// The longest wait between two tries.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The wait after failed try number `attempt` (1-based): the base
    /// doubled per try, capped, then "equal jitter" (between half and all
    /// of it); a `Retry-After` longer than that wins, up to the cap.
    pub fn delay(&self, attempt: i32, retry_after: Option<Duration>) -> Duration {
        let exponent = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        let full = self
            .base
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.max_delay);
        let half = full / 2;
        let jitter_ms = rand::rng().random_range(0..=half.as_millis() as u64);
        let backoff = half + Duration::from_millis(jitter_ms);
        match retry_after {
            Some(asked) => backoff.max(asked.min(self.max_delay)),
            None => backoff,
        }
    }

    /// What happens after try number `attempt` answered `status` (`None`:
    /// no answer, a network error or a timeout).
    pub fn decide(
        &self,
        attempt: i32,
        status: Option<u16>,
        retry_after: Option<Duration>,
        now: DateTime<Utc>,
    ) -> AttemptOutcome {
        match status {
            Some(s) if (200..300).contains(&s) => AttemptOutcome::Succeeded,
            Some(410) => AttemptOutcome::Gone,
            _ if attempt >= self.max_attempts => AttemptOutcome::GaveUp,
            _ => {
                let wait = self.delay(attempt, retry_after);
                let wait = chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1));
                AttemptOutcome::RetryAt(now + wait)
            }
        }
    }
}

/// A `Retry-After` value: delay seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    (at - now).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn subscriptions_filter_by_type_and_prompt_prefix() {
        let all = strings(&["*"]);
        let moves = strings(&[LABEL_MOVED]);
        let support = strings(&["support/"]);
        assert!(subscribed(&all, &[], VERSION_CREATED, Some("a")));
        assert!(!subscribed(&moves, &[], VERSION_CREATED, Some("a")));
        assert!(subscribed(
            &moves,
            &support,
            LABEL_MOVED,
            Some("support/reply")
        ));
        assert!(!subscribed(
            &moves,
            &support,
            LABEL_MOVED,
            Some("sales/reply")
        ));
        assert!(subscribed(&all, &support, EVALUATION_FINISHED, None));
        assert!(
            !subscribed(&all, &[], WEBHOOK_TEST, None),
            "sent only where asked"
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_honours_retry_after() {
        let policy = RetryPolicy {
            base: Duration::from_secs(30),
            max_attempts: 5,
            max_delay: Duration::from_secs(3600),
        };
        for _ in 0..50 {
            let first = policy.delay(1, None);
            assert!(first >= Duration::from_secs(15) && first <= Duration::from_secs(30));
            let third = policy.delay(3, None);
            assert!(third >= Duration::from_secs(60) && third <= Duration::from_secs(120));
            assert!(policy.delay(40, None) <= Duration::from_secs(3600));
        }
        let asked = policy.delay(1, Some(Duration::from_secs(600)));
        assert_eq!(asked, Duration::from_secs(600));
        let capped = policy.delay(1, Some(Duration::from_secs(999_999)));
        assert_eq!(capped, Duration::from_secs(3600));
    }

    #[test]
    fn answers_decide_the_next_step() {
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            max_attempts: 3,
            max_delay: Duration::from_secs(60),
        };
        let now = Utc::now();
        assert_eq!(
            policy.decide(1, Some(204), None, now),
            AttemptOutcome::Succeeded
        );
        assert_eq!(policy.decide(1, Some(410), None, now), AttemptOutcome::Gone);
        assert!(
            matches!(policy.decide(1, Some(500), None, now), AttemptOutcome::RetryAt(at) if at > now)
        );
        assert!(matches!(
            policy.decide(2, None, None, now),
            AttemptOutcome::RetryAt(_)
        ));
        assert_eq!(
            policy.decide(3, Some(500), None, now),
            AttemptOutcome::GaveUp
        );
        assert_eq!(
            policy.decide(3, Some(302), None, now),
            AttemptOutcome::GaveUp
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 01 Jan 2025 00:01:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
