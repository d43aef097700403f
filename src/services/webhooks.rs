//! Webhook endpoints: create (the signing secret is answered once and kept
//! only sealed), change, delete, rotate the secret (the old one signs
//! beside the new for a day), send a test event, list deliveries with
//! their attempts, and send a delivery again. Which events exist and when
//! they are written is the other use-cases' business (each in its own
//! transaction, through the store); sending is `crate::webhooks`'.

use std::sync::Arc;

use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::WebhooksConfig;
use crate::domain::auth::Actor;
use crate::domain::webhooks::{
    Delivery, DeliveryStatus, OutboxEvent, Webhook, EVENT_TYPES, WEBHOOK_TEST,
};
use crate::domain::{Page, ProjectId};
use crate::store::webhooks::{NewWebhook, SecretRotation, WebhookPatch};
use crate::store::PageRequest;
use crate::webhooks::policy::Policy;
use crate::webhooks::secrets::SecretBox;
use crate::webhooks::signing;

use super::{FieldError, Registry, ServiceError, ServiceResult};

/// How long a replaced secret keeps signing beside its successor.
pub const ROTATION_OVERLAP: chrono::Duration = chrono::Duration::hours(24);
const MAX_DESCRIPTION: usize = 500;
const MAX_PREFIXES: usize = 50;
const MAX_URL: usize = 2048;

/// What webhook use-cases need beyond the store: the key that seals
/// secrets, the address policy, and the delivery loop's wake-up.
pub struct Webhooks {
    secrets: Option<Arc<SecretBox>>,
    policy: Policy,
    /// Wakes this process's delivery loop when a delivery is queued here.
    pub wakeup: Arc<Notify>,
}

impl Webhooks {
    pub fn from_config(config: &WebhooksConfig) -> anyhow::Result<Self> {
        let secrets = SecretBox::from_config(&config.secret_key.0)?.map(Arc::new);
        Ok(Self {
            secrets,
            policy: Policy::from_config(config),
            wakeup: Arc::new(Notify::new()),
        })
    }

    pub fn secrets(&self) -> Option<Arc<SecretBox>> {
        self.secrets.clone()
    }

    fn sealer(&self) -> ServiceResult<&SecretBox> {
        self.secrets
            .as_deref()
            .ok_or(ServiceError::WebhooksNotConfigured)
    }
}

/// An endpoint as asked for.
#[derive(Debug, Clone, Default)]
pub struct WebhookSpec {
    pub url: Option<String>,
    pub description: Option<String>,
    pub events: Option<Vec<String>>,
    pub prompts: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// Creates an endpoint; answers it with its secret, the only time the
/// secret is shown.
pub async fn create(
    registry: &Registry,
    webhooks: &Webhooks,
    project: ProjectId,
    actor: &Actor,
    spec: WebhookSpec,
) -> ServiceResult<(Webhook, String)> {
    let mut errors = Vec::new();
    if spec.url.is_none() {
        errors.push(FieldError::new("url", "required"));
    }
    if spec.events.is_none() {
        errors.push(FieldError::new(
            "events",
            "required: event types, or [\"*\"]",
        ));
    }
    check(webhooks, &spec, &mut errors);
    if !errors.is_empty() {
        return Err(ServiceError::Validation(errors));
    }
    let sealer = webhooks.sealer()?;
    let secret = signing::generate_secret();
    let new = NewWebhook {
        url: spec.url.unwrap_or_default(),
        description: spec.description.unwrap_or_default(),
        events: spec.events.unwrap_or_default(),
        prompts: spec.prompts.unwrap_or_default(),
        secret_sealed: seal(sealer, &secret)?,
    };
    let webhook = registry.store.insert_webhook(project, new, actor).await?;
    Ok((webhook, secret))
}

pub async fn list(registry: &Registry, project: ProjectId) -> ServiceResult<Vec<Webhook>> {
    Ok(registry.store.list_webhooks(project).await?)
}

pub async fn get(registry: &Registry, project: ProjectId, id: Uuid) -> ServiceResult<Webhook> {
    Ok(registry.store.get_webhook(project, id).await?)
}

/// Changes what is given; enabling a disabled endpoint clears its reason
/// and its run of failures.
pub async fn update(
    registry: &Registry,
    webhooks: &Webhooks,
    project: ProjectId,
    actor: &Actor,
    id: Uuid,
    spec: WebhookSpec,
) -> ServiceResult<Webhook> {
    let mut errors = Vec::new();
    check(webhooks, &spec, &mut errors);
    if !errors.is_empty() {
        return Err(ServiceError::Validation(errors));
    }
    let patch = WebhookPatch {
        url: spec.url,
        description: spec.description,
        events: spec.events,
        prompts: spec.prompts,
        enabled: spec.enabled,
    };
    Ok(registry
        .store
        .update_webhook(project, id, patch, actor)
        .await?)
}

pub async fn delete(
    registry: &Registry,
    project: ProjectId,
    actor: &Actor,
    id: Uuid,
) -> ServiceResult<()> {
    Ok(registry.store.delete_webhook(project, id, actor).await?)
}

/// A new secret, answered once; the old one signs beside it for
/// [`ROTATION_OVERLAP`].
pub async fn rotate_secret(
    registry: &Registry,
    webhooks: &Webhooks,
    project: ProjectId,
    actor: &Actor,
    id: Uuid,
) -> ServiceResult<(Webhook, String)> {
    let sealer = webhooks.sealer()?;
    let secret = signing::generate_secret();
    let rotation = SecretRotation {
        secret_sealed: seal(sealer, &secret)?,
        previous_until: crate::store::now() + ROTATION_OVERLAP,
    };
    let webhook = registry
        .store
        .rotate_webhook_secret(project, id, rotation, actor)
        .await?;
    Ok((webhook, secret))
}

/// Queues a `webhook.test` event for this endpoint alone; answers the
/// delivery's id.
pub async fn send_test(
    registry: &Registry,
    webhooks: &Webhooks,
    project: ProjectId,
    actor: &Actor,
    id: Uuid,
) -> ServiceResult<Uuid> {
    let event = OutboxEvent::new(
        WEBHOOK_TEST,
        None,
        serde_json::json!({"webhook": id, "by": actor.key_name}),
    );
    let delivery = registry
        .store
        .queue_test_delivery(project, id, &event)
        .await?;
    webhooks.wakeup.notify_waiters();
    Ok(delivery)
}

pub async fn deliveries(
    registry: &Registry,
    project: ProjectId,
    id: Uuid,
    status: Option<DeliveryStatus>,
    page: PageRequest,
) -> ServiceResult<Page<Delivery>> {
    Ok(registry
        .store
        .list_deliveries(project, id, status, page)
        .await?)
}

/// Sends a delivery again, as the same event (the same `webhook-id`).
pub async fn redeliver(
    registry: &Registry,
    webhooks: &Webhooks,
    project: ProjectId,
    actor: &Actor,
    delivery: Uuid,
) -> ServiceResult<Delivery> {
    let again = registry.store.redeliver(project, delivery, actor).await?;
    webhooks.wakeup.notify_waiters();
    Ok(again)
}

fn seal(sealer: &SecretBox, secret: &str) -> ServiceResult<String> {
    sealer
        .seal(secret)
        .map_err(|e| ServiceError::Internal(anyhow::anyhow!("{e}")))
}

/// Every field given, checked; faults go to `errors`.
fn check(webhooks: &Webhooks, spec: &WebhookSpec, errors: &mut Vec<FieldError>) {
    if let Some(url) = &spec.url {
        if url.len() > MAX_URL {
            errors.push(FieldError::new("url", format!("at most {MAX_URL} bytes")));
        } else if let Err(why) = webhooks.policy.check_url(url) {
            errors.push(FieldError::new("url", why));
        }
    }
    if let Some(description) = &spec.description {
        if description.chars().count() > MAX_DESCRIPTION {
            errors.push(FieldError::new(
                "description",
                format!("at most {MAX_DESCRIPTION} characters"),
            ));
        }
    }
    if let Some(events) = &spec.events {
        if events.is_empty() {
            errors.push(FieldError::new(
                "events",
                "give at least one event type, or [\"*\"]",
            ));
        }
        for (i, event) in events.iter().enumerate() {
            let known = event == "*"
                || EVENT_TYPES
                    .iter()
                    .any(|t| *t == event.as_str() && *t != WEBHOOK_TEST);
            if !known {
                let names: Vec<&str> = EVENT_TYPES
                    .iter()
                    .copied()
                    .filter(|t| *t != WEBHOOK_TEST)
                    .collect();
                errors.push(FieldError::new(
                    format!("events[{i}]"),
                    format!(
                        "unknown event type {event:?}; known: *, {}",
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    if let Some(prompts) = &spec.prompts {
        if prompts.len() > MAX_PREFIXES {
            errors.push(FieldError::new(
                "prompts",
                format!("at most {MAX_PREFIXES} prefixes"),
            ));
        }
        for (i, prefix) in prompts.iter().enumerate() {
            let fits = !prefix.is_empty()
                && prefix.len() <= 200
                && prefix.chars().all(|c| {
                    c.is_ascii_lowercase()
                        || c.is_ascii_digit()
                        || matches!(c, '.' | '_' | '/' | '-')
                });
            if !fits {
                errors.push(FieldError::new(
                    format!("prompts[{i}]"),
                    "a prompt name prefix: 1 to 200 of a-z, 0-9, '.', '_', '/', '-'",
                ));
            }
        }
    }
}
