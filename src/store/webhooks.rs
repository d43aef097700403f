//! Webhook endpoints, the outbox and deliveries. Events are written by the
//! use-case that makes the change, inside its transaction (`emit`, in
//! `shared.rs`), as one event row and one delivery per subscribed endpoint;
//! workers claim due deliveries under a lease (skipping rows another worker
//! holds, where the backend can lock rows) and record each attempt.
//! `WebhookStore`, then `impl_sql!`, its SQL for both backends.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{PageRequest, StoreResult};
use crate::domain::auth::Actor;
use crate::domain::webhooks::{
    Attempt, AttemptOutcome, ClaimedDelivery, Delivery, DeliveryStatus, OutboxEvent, Webhook,
};
use crate::domain::{Page, ProjectId};

/// A new endpoint; its secret already sealed.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub url: String,
    pub description: String,
    pub events: Vec<String>,
    pub prompts: Vec<String>,
    pub secret_sealed: String,
}

/// What a `PATCH` changes; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub events: Option<Vec<String>>,
    pub prompts: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// A new secret, and until when the one it replaces still signs.
#[derive(Debug, Clone)]
pub struct SecretRotation {
    pub secret_sealed: String,
    pub previous_until: DateTime<Utc>,
}

/// One attempt's result, as recorded.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub attempt: Attempt,
    pub outcome: AttemptOutcome,
    /// After this many failed attempts in a row the endpoint is disabled.
    pub disable_after_failures: i32,
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn insert_webhook(
        &self,
        project: ProjectId,
        new: NewWebhook,
        actor: &Actor,
    ) -> StoreResult<Webhook>;
    async fn list_webhooks(&self, project: ProjectId) -> StoreResult<Vec<Webhook>>;
    async fn get_webhook(&self, project: ProjectId, id: Uuid) -> StoreResult<Webhook>;
    async fn update_webhook(
        &self,
        project: ProjectId,
        id: Uuid,
        patch: WebhookPatch,
        actor: &Actor,
    ) -> StoreResult<Webhook>;
    async fn delete_webhook(&self, project: ProjectId, id: Uuid, actor: &Actor) -> StoreResult<()>;
    async fn rotate_webhook_secret(
        &self,
        project: ProjectId,
        id: Uuid,
        rotation: SecretRotation,
        actor: &Actor,
    ) -> StoreResult<Webhook>;
    /// Writes an event that reports no change of its own (a refused label
    /// move), in a transaction of its own.
    async fn record_event(&self, project: ProjectId, event: &OutboxEvent) -> StoreResult<()>;
    /// Queues `event` for endpoint `id` alone; answers the delivery's id.
    async fn queue_test_delivery(
        &self,
        project: ProjectId,
        id: Uuid,
        event: &OutboxEvent,
    ) -> StoreResult<Uuid>;
    /// Deliveries to endpoint `webhook`, newest first, each with its attempts.
    async fn list_deliveries(
        &self,
        project: ProjectId,
        webhook: Uuid,
        status: Option<DeliveryStatus>,
        page: PageRequest,
    ) -> StoreResult<Page<Delivery>>;
    /// Sends a delivery again: it is due now, with a fresh count of attempts
    /// and the same event (the same `webhook-id`).
    async fn redeliver(
        &self,
        project: ProjectId,
        delivery: Uuid,
        actor: &Actor,
    ) -> StoreResult<Delivery>;
    /// Takes up to `limit` due deliveries to enabled endpoints (pending and
    /// due, unleased or with an expired lease) for `owner` until `lease`
    /// from now.
    async fn claim_deliveries(
        &self,
        owner: &str,
        lease: std::time::Duration,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Records an attempt at a delivery `owner` holds and what it decided,
    /// in one transaction; false when `owner` no longer holds it.
    async fn record_attempt(
        &self,
        delivery: Uuid,
        owner: &str,
        record: &AttemptRecord,
    ) -> StoreResult<bool>;
}

/// `WebhookStore` in portable SQL for backend `$store` on database `$db` (see
/// `sql::impl_store!`).
macro_rules! impl_sql {
    ($store:ident, $db:ty, $backend:literal) => {
        use serde_json::{json, Value};
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::domain::auth::Actor;
        use crate::domain::webhooks::{
            Attempt, AttemptOutcome, ClaimedDelivery, Delivery, DeliveryStatus, OutboxEvent, Webhook,
        };
        use crate::domain::{Page, ProjectId};
        use crate::store::webhooks::{AttemptRecord, NewWebhook, SecretRotation, WebhookPatch};
        use crate::store::{now, page_from_overfetch, PageKey, PageRequest, StoreError, StoreResult, WebhookStore};

        use super::$store;

        type Conn = <$db as sqlx::Database>::Connection;

        const WEBHOOK_COLUMNS: &str = "id, project_id, url, description, events, prompts, enabled, \
             disabled_reason, secret_sealed, previous_secret_sealed, previous_secret_until, \
             consecutive_failures, created_at, updated_at, created_by";

        #[derive(sqlx::FromRow)]
        struct DeliveryRow {
            id: Uuid,
            webhook_id: Uuid,
            event_id: Uuid,
            event_type: String,
            payload: Json<Value>,
            status: String,
            next_attempt_at: chrono::DateTime<chrono::Utc>,
            created_at: chrono::DateTime<chrono::Utc>,
        }

        const DELIVERY_SELECT: &str = "select d.id, d.webhook_id, d.event_id, e.type as event_type, \
             e.payload, d.status, d.next_attempt_at, d.created_at \
             from webhook_delivery d join webhook_event e on e.id = d.event_id";

        #[derive(sqlx::FromRow)]
        struct ClaimRow {
            id: Uuid,
            webhook_id: Uuid,
            event_id: Uuid,
            attempts: i32,
        }

        #[derive(sqlx::FromRow)]
        struct ClaimDetail {
            url: String,
            payload: Json<Value>,
            secret_sealed: String,
            previous_secret_sealed: Option<String>,
            previous_secret_until: Option<chrono::DateTime<chrono::Utc>>,
        }

        impl $store {
            async fn webhook(conn: &mut Conn, project: ProjectId, id: Uuid) -> StoreResult<Webhook> {
                sqlx::query_as::<_, Webhook>(&format!(
                    "select {WEBHOOK_COLUMNS} from webhook where project_id = $1 and id = $2"
                ))
                .bind(project)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
                .ok_or(StoreError::WebhookNotFound)
            }

            async fn delivery(conn: &mut Conn, row: DeliveryRow) -> StoreResult<Delivery> {
                let attempts: Vec<Attempt> = sqlx::query_as(
                    "select attempted_at, status_code, latency_ms, response_excerpt, error \
                     from webhook_attempt where delivery_id = $1 order by id",
                )
                .bind(row.id)
                .fetch_all(&mut *conn)
                .await?;
                let status = DeliveryStatus::parse(&row.status)
                    .ok_or_else(|| StoreError::Corrupt(format!("delivery status {:?}", row.status)))?;
                Ok(Delivery {
                    id: row.id,
                    webhook_id: row.webhook_id,
                    event_id: row.event_id,
                    event_type: row.event_type,
                    payload: row.payload.0,
                    status,
                    attempts,
                    next_attempt_at: (status == DeliveryStatus::Pending).then_some(row.next_attempt_at),
                    created_at: row.created_at,
                })
            }

            /// Inserts a delivery of `event_id` to `webhook`, due now.
            pub(super) async fn queue_delivery(conn: &mut Conn, webhook: Uuid, event_id: Uuid) -> StoreResult<Uuid> {
                let (id, at) = (Uuid::now_v7(), now());
                sqlx::query(
                    "insert into webhook_delivery (id, webhook_id, event_id, status, attempts, \
                     next_attempt_at, created_at, updated_at) values ($1, $2, $3, 'pending', 0, $4, $4, $4)",
                )
                .bind(id)
                .bind(webhook)
                .bind(event_id)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                Ok(id)
            }

            /// Inserts the event row; answers its id.
            pub(super) async fn insert_event(conn: &mut Conn, project: ProjectId, event: &OutboxEvent) -> StoreResult<Uuid> {
                let (id, at) = (Uuid::now_v7(), now());
                sqlx::query(
                    "insert into webhook_event (id, project_id, type, payload, created_at) \
                     values ($1, $2, $3, $4, $5)",
                )
                .bind(id)
                .bind(project)
                .bind(event.kind)
                .bind(Json(event.payload(at)))
                .bind(at)
                .execute(&mut *conn)
                .await?;
                Ok(id)
            }
        }

        crate::store::sql::observed_impl! {
        impl WebhookStore for $store as $backend {
            async fn insert_webhook(&self, project: ProjectId, new: NewWebhook, actor: &Actor) -> StoreResult<Webhook> {
                let (id, at) = (Uuid::now_v7(), now());
                let mut tx = self.writer().begin().await?;
                sqlx::query(
                    "insert into webhook (id, project_id, url, description, events, prompts, enabled, \
                     secret_sealed, consecutive_failures, created_at, updated_at, created_by) \
                     values ($1, $2, $3, $4, $5, $6, true, $7, 0, $8, $8, $9)",
                )
                .bind(id)
                .bind(project)
                .bind(&new.url)
                .bind(&new.description)
                .bind(Json(&new.events))
                .bind(Json(&new.prompts))
                .bind(&new.secret_sealed)
                .bind(at)
                .bind(&actor.key_name)
                .execute(&mut *tx)
                .await?;
                // The audit keeps where and what, never the secret.
                Self::audit(&mut tx, project, actor, "webhook.create", &format!("webhooks/{id}"), None,
                    Some(json!({"url": new.url, "events": new.events, "prompts": new.prompts}))).await?;
                let created = Self::webhook(&mut tx, project, id).await?;
                tx.commit().await?;
                Ok(created)
            }

            async fn list_webhooks(&self, project: ProjectId) -> StoreResult<Vec<Webhook>> {
                Ok(sqlx::query_as(&format!(
                    "select {WEBHOOK_COLUMNS} from webhook where project_id = $1 order by created_at desc, id desc"
                ))
                .bind(project)
                .fetch_all(self.reader())
                .await?)
            }

            async fn get_webhook(&self, project: ProjectId, id: Uuid) -> StoreResult<Webhook> {
                let mut conn = self.reader().acquire().await?;
                Self::webhook(&mut conn, project, id).await
            }

            async fn update_webhook(&self, project: ProjectId, id: Uuid, patch: WebhookPatch, actor: &Actor) -> StoreResult<Webhook> {
                let mut tx = self.writer().begin().await?;
                let was = Self::webhook(&mut tx, project, id).await?;
                let enabled = patch.enabled.unwrap_or(was.enabled);
                // Enabling again starts a fresh run of failures.
                let (reason, failures) = if enabled && !was.enabled {
                    (None, 0)
                } else if !enabled && was.enabled {
                    (Some("disabled by request".to_owned()), was.consecutive_failures)
                } else {
                    (was.disabled_reason.clone(), was.consecutive_failures)
                };
                let url = patch.url.unwrap_or_else(|| was.url.clone());
                let description = patch.description.unwrap_or_else(|| was.description.clone());
                let events = patch.events.unwrap_or_else(|| was.events.clone());
                let prompts = patch.prompts.unwrap_or_else(|| was.prompts.clone());
                sqlx::query(
                    "update webhook set url = $1, description = $2, events = $3, prompts = $4, enabled = $5, \
                     disabled_reason = $6, consecutive_failures = $7, updated_at = $8 where id = $9",
                )
                .bind(&url)
                .bind(&description)
                .bind(Json(&events))
                .bind(Json(&prompts))
                .bind(enabled)
                .bind(&reason)
                .bind(failures)
                .bind(now())
                .bind(id)
                .execute(&mut *tx)
                .await?;
                Self::audit(&mut tx, project, actor, "webhook.update", &format!("webhooks/{id}"),
                    Some(json!({"url": was.url, "events": was.events, "prompts": was.prompts, "enabled": was.enabled})),
                    Some(json!({"url": url, "events": events, "prompts": prompts, "enabled": enabled}))).await?;
                let updated = Self::webhook(&mut tx, project, id).await?;
                tx.commit().await?;
                Ok(updated)
            }

            async fn delete_webhook(&self, project: ProjectId, id: Uuid, actor: &Actor) -> StoreResult<()> {
                let mut tx = self.writer().begin().await?;
                let was = Self::webhook(&mut tx, project, id).await?;
                sqlx::query("delete from webhook_attempt where delivery_id in (select id from webhook_delivery where webhook_id = $1)")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("delete from webhook_delivery where webhook_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("delete from webhook where id = $1").bind(id).execute(&mut *tx).await?;
                Self::audit(&mut tx, project, actor, "webhook.delete", &format!("webhooks/{id}"),
                    Some(json!({"url": was.url})), None).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn rotate_webhook_secret(&self, project: ProjectId, id: Uuid, rotation: SecretRotation, actor: &Actor) -> StoreResult<Webhook> {
                let mut tx = self.writer().begin().await?;
                Self::webhook(&mut tx, project, id).await?;
                sqlx::query(
                    "update webhook set previous_secret_sealed = secret_sealed, previous_secret_until = $1, \
                     secret_sealed = $2, updated_at = $3 where id = $4",
                )
                .bind(rotation.previous_until)
                .bind(&rotation.secret_sealed)
                .bind(now())
                .bind(id)
                .execute(&mut *tx)
                .await?;
                Self::audit(&mut tx, project, actor, "webhook.rotate_secret", &format!("webhooks/{id}"), None,
                    Some(json!({"previous_secret_until": rotation.previous_until}))).await?;
                let rotated = Self::webhook(&mut tx, project, id).await?;
                tx.commit().await?;
                Ok(rotated)
            }

            async fn record_event(&self, project: ProjectId, event: &OutboxEvent) -> StoreResult<()> {
                let mut tx = self.writer().begin().await?;
                Self::emit(&mut tx, project, event).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn queue_test_delivery(&self, project: ProjectId, id: Uuid, event: &OutboxEvent) -> StoreResult<Uuid> {
                let mut tx = self.writer().begin().await?;
                Self::webhook(&mut tx, project, id).await?;
                let event_id = Self::insert_event(&mut tx, project, event).await?;
                let delivery = Self::queue_delivery(&mut tx, id, event_id).await?;
                tx.commit().await?;
                Ok(delivery)
            }

            async fn list_deliveries(
                &self,
                project: ProjectId,
                webhook: Uuid,
                status: Option<DeliveryStatus>,
                page: PageRequest,
            ) -> StoreResult<Page<Delivery>> {
                let mut conn = self.reader().acquire().await?;
                Self::webhook(&mut conn, project, webhook).await?;
                let sql = format!(
                    "{DELIVERY_SELECT} where d.webhook_id = $1 and ($2 = '' or d.status = $2) \
                     and ($3 = 0 or d.id < $4) order by d.id desc limit $5"
                );
                let after = page.after_id();
                let rows: Vec<DeliveryRow> = sqlx::query_as(&sql)
                    .bind(webhook)
                    .bind(status.map_or("", DeliveryStatus::as_str))
                    .bind(i32::from(after.is_some()))
                    .bind(after.unwrap_or_default())
                    .bind(page.overfetch())
                    .fetch_all(&mut *conn)
                    .await?;
                let mut items = Vec::with_capacity(rows.len());
                for row in rows {
                    items.push(Self::delivery(&mut conn, row).await?);
                }
                Ok(page_from_overfetch(items, page.limit, |d| PageKey::Id(d.id)))
            }

            async fn redeliver(&self, project: ProjectId, delivery: Uuid, actor: &Actor) -> StoreResult<Delivery> {
                let mut tx = self.writer().begin().await?;
                let found: Option<Uuid> = sqlx::query_scalar(
                    "select d.webhook_id from webhook_delivery d join webhook w on w.id = d.webhook_id \
                     where d.id = $1 and w.project_id = $2",
                )
                .bind(delivery)
                .bind(project)
                .fetch_optional(&mut *tx)
                .await?;
                let webhook = found.ok_or(StoreError::DeliveryNotFound)?;
                let at = now();
                sqlx::query(
                    "update webhook_delivery set status = 'pending', attempts = 0, next_attempt_at = $1, \
                     lease_owner = null, lease_expires_at = null, updated_at = $1 where id = $2",
                )
                .bind(at)
                .bind(delivery)
                .execute(&mut *tx)
                .await?;
                Self::audit(&mut tx, project, actor, "webhook.redeliver",
                    &format!("webhooks/{webhook}/deliveries/{delivery}"), None, None).await?;
                let row: DeliveryRow = sqlx::query_as(&format!("{DELIVERY_SELECT} where d.id = $1"))
                    .bind(delivery)
                    .fetch_one(&mut *tx)
                    .await?;
                let answer = Self::delivery(&mut tx, row).await?;
                tx.commit().await?;
                Ok(answer)
            }

            async fn claim_deliveries(&self, owner: &str, lease: std::time::Duration, limit: u32) -> StoreResult<Vec<ClaimedDelivery>> {
                let at = now();
                let until = at + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60));
                let mut tx = self.writer().begin().await?;
                let claimed: Vec<ClaimRow> = sqlx::query_as(&format!(
                    "update webhook_delivery set lease_owner = $1, lease_expires_at = $2, \
                     attempts = attempts + 1, updated_at = $3 \
                     where id in (select id from webhook_delivery \
                         where status = 'pending' and next_attempt_at <= $3 \
                         and (lease_expires_at is null or lease_expires_at < $3) \
                         and webhook_id in (select id from webhook where enabled) \
                         order by next_attempt_at limit $4{}) \
                     returning id, webhook_id, event_id, attempts",
                    Self::SKIP_LOCKED
                ))
                .bind(owner)
                .bind(until)
                .bind(at)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
                let mut out = Vec::with_capacity(claimed.len());
                for row in claimed {
                    let detail: ClaimDetail = sqlx::query_as(
                        "select w.url, e.payload, w.secret_sealed, w.previous_secret_sealed, w.previous_secret_until \
                         from webhook w, webhook_event e where w.id = $1 and e.id = $2",
                    )
                    .bind(row.webhook_id)
                    .bind(row.event_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    out.push(ClaimedDelivery {
                        id: row.id,
                        webhook_id: row.webhook_id,
                        event_id: row.event_id,
                        attempt: row.attempts,
                        url: detail.url,
                        payload: detail.payload.0,
                        secret_sealed: detail.secret_sealed,
                        previous_secret_sealed: detail.previous_secret_sealed,
                        previous_secret_until: detail.previous_secret_until,
                    });
                }
                tx.commit().await?;
                Ok(out)
            }

            async fn record_attempt(&self, delivery: Uuid, owner: &str, record: &AttemptRecord) -> StoreResult<bool> {
                let at = now();
                let mut tx = self.writer().begin().await?;
                let (status, next) = match &record.outcome {
                    AttemptOutcome::Succeeded => ("succeeded", at),
                    AttemptOutcome::RetryAt(when) => ("pending", *when),
                    AttemptOutcome::GaveUp | AttemptOutcome::Gone => ("failed", at),
                };
                let held: Option<Uuid> = sqlx::query_scalar(
                    "update webhook_delivery set status = $1, next_attempt_at = $2, lease_owner = null, \
                     lease_expires_at = null, updated_at = $3 \
                     where id = $4 and lease_owner = $5 and status = 'pending' returning webhook_id",
                )
                .bind(status)
                .bind(next)
                .bind(at)
                .bind(delivery)
                .bind(owner)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(webhook) = held else {
                    return Ok(false);
                };
                let attempt = &record.attempt;
                sqlx::query(
                    "insert into webhook_attempt (delivery_id, attempted_at, status_code, latency_ms, response_excerpt, error) \
                     values ($1, $2, $3, $4, $5, $6)",
                )
                .bind(delivery)
                .bind(attempt.attempted_at)
                .bind(attempt.status_code)
                .bind(attempt.latency_ms)
                .bind(&attempt.response_excerpt)
                .bind(&attempt.error)
                .execute(&mut *tx)
                .await?;
                match &record.outcome {
                    AttemptOutcome::Succeeded => {
                        sqlx::query("update webhook set consecutive_failures = 0 where id = $1")
                            .bind(webhook)
                            .execute(&mut *tx)
                            .await?;
                    }
                    AttemptOutcome::Gone => {
                        sqlx::query(
                            "update webhook set enabled = false, disabled_reason = $1, updated_at = $2 where id = $3",
                        )
                        .bind("the endpoint answered 410 Gone")
                        .bind(at)
                        .bind(webhook)
                        .execute(&mut *tx)
                        .await?;
                    }
                    AttemptOutcome::RetryAt(_) | AttemptOutcome::GaveUp => {
                        sqlx::query(
                            "update webhook set consecutive_failures = consecutive_failures + 1, \
                             enabled = case when consecutive_failures + 1 >= $1 then false else enabled end, \
                             disabled_reason = case when consecutive_failures + 1 >= $1 and enabled \
                                 then $2 else disabled_reason end, \
                             updated_at = $3 where id = $4",
                        )
                        .bind(record.disable_after_failures)
                        .bind(format!("{} failed attempts in a row", record.disable_after_failures))
                        .bind(at)
                        .bind(webhook)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                tx.commit().await?;
                Ok(true)
            }
        }
        }
    };
}

pub(crate) use impl_sql;
