//! Webhook endpoints, their deliveries and attempts. Admin scope only. The
//! signing secret appears in two answers only: the endpoint's creation and
//! a rotation.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::{scope, Auth};
use super::extract::{page_request, Json, Path, Query};
use super::AppState;
use crate::domain::webhooks::{Attempt, Delivery, DeliveryStatus, Webhook};
use crate::error::{ApiError, Problem};
use crate::services::webhooks::{self, WebhookSpec};
use crate::services::ServiceError;
use crate::store::StoreError;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://ci.example.com/hooks/promptreg", "events": ["label.moved", "version.created"], "prompts": ["support/"]}))]
pub struct CreateWebhookRequest {
    /// Where deliveries are POSTed: `https://` on a public address (unless
    /// the server allows private networks or this host).
    url: Option<String>,
    /// Event types (`prompt.created`, `prompt.updated`, `version.created`,
    /// `label.moved`, `label.deleted`, `evaluation.finished`,
    /// `optimization.finished`, `gate.failed`, `monitor.fired`), or `["*"]`
    /// for all.
    events: Option<Vec<String>>,
    description: Option<String>,
    /// Only events about prompts whose names start with one of these
    /// (events about no prompt always pass). Omitted: every prompt.
    prompts: Option<Vec<String>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"enabled": true}))]
pub struct UpdateWebhookRequest {
    url: Option<String>,
    events: Option<Vec<String>>,
    description: Option<String>,
    prompts: Option<Vec<String>>,
    /// `true` re-enables a disabled endpoint (its run of failures restarts).
    enabled: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookResponse {
    id: Uuid,
    #[schema(example = "https://ci.example.com/hooks/promptreg")]
    url: String,
    description: String,
    #[schema(example = json!(["label.moved"]))]
    events: Vec<String>,
    prompts: Vec<String>,
    enabled: bool,
    /// Why the endpoint is disabled (a `410 Gone`, a run of failures, a request).
    disabled_reason: Option<String>,
    /// Failed attempts in a row.
    consecutive_failures: i32,
    /// Until when the secret replaced by the last rotation still signs too.
    previous_secret_until: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Webhook> for WebhookResponse {
    fn from(w: Webhook) -> Self {
        let previous = w.previous_secret_until.filter(|until| *until > Utc::now());
        Self {
            id: w.id,
            url: w.url,
            description: w.description,
            events: w.events,
            prompts: w.prompts,
            enabled: w.enabled,
            disabled_reason: w.disabled_reason,
            consecutive_failures: w.consecutive_failures,
            previous_secret_until: previous,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// An endpoint with its signing secret: the only answers that show it.
#[derive(Serialize, ToSchema)]
pub struct WebhookWithSecretResponse {
    #[serde(flatten)]
    webhook: WebhookResponse,
    /// The Standard Webhooks signing secret. Store it now: it is not shown again.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    secret: String,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    items: Vec<WebhookResponse>,
}

#[derive(Serialize, ToSchema)]
pub struct AttemptResponse {
    attempted_at: DateTime<Utc>,
    /// The answer's status; `null` when there was none (see `error`).
    status_code: Option<i32>,
    latency_ms: i64,
    /// The first KiB of the answer's body.
    response_excerpt: Option<String>,
    /// Why there was no answer: a timeout, a refused connection or address.
    error: Option<String>,
}

impl From<Attempt> for AttemptResponse {
    fn from(a: Attempt) -> Self {
        Self {
            attempted_at: a.attempted_at,
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            response_excerpt: a.response_excerpt,
            error: a.error,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryResponse {
    id: Uuid,
    webhook_id: Uuid,
    /// The `webhook-id` header: the same on every attempt.
    #[schema(example = "msg_0193d5c0e5a87c3b9d2e4f6a8b0c1d2e")]
    webhook_message_id: String,
    #[schema(example = "label.moved")]
    event_type: String,
    /// The body sent: `{type, timestamp, data}`.
    event: Value,
    status: DeliveryStatus,
    /// When the next attempt is due, while `pending`.
    next_attempt_at: Option<DateTime<Utc>>,
    attempts: Vec<AttemptResponse>,
    created_at: DateTime<Utc>,
}

impl From<Delivery> for DeliveryResponse {
    fn from(d: Delivery) -> Self {
        Self {
            id: d.id,
            webhook_id: d.webhook_id,
            webhook_message_id: format!("msg_{}", d.event_id.simple()),
            event_type: d.event_type,
            event: d.payload,
            status: d.status,
            next_attempt_at: d.next_attempt_at,
            attempts: d.attempts.into_iter().map(AttemptResponse::from).collect(),
            created_at: d.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryPage {
    items: Vec<DeliveryResponse>,
    next_cursor: Option<String>,
}

page_from!(DeliveryPage of DeliveryResponse);

#[derive(Serialize, ToSchema)]
pub struct TestDeliveryResponse {
    /// The queued delivery of the `webhook.test` event.
    delivery_id: Uuid,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// Only deliveries in this state: `pending`, `succeeded` or `failed`.
    status: Option<String>,
    /// Items per page, 1 to 100.
    #[param(default = 20, minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

fn webhook_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ServiceError::Store(StoreError::WebhookNotFound).into())
}

/// Create a webhook endpoint; the answer holds its signing secret, once.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks",
    security(("bearer" = ["admin"])),
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "Created; `secret` is shown this once", body = WebhookWithSecretResponse),
        (status = 409, description = "`webhooks_not_configured`: the server has no `webhooks.secret_key`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_webhook(
    State(state): State<AppState>,
    auth: Auth<scope::Admin>,
    Json(body): Json<CreateWebhookRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let spec = WebhookSpec {
        url: body.url,
        description: body.description,
        events: body.events,
        prompts: body.prompts,
        enabled: None,
    };
    let (webhook, secret) = webhooks::create(
        &state.registry,
        &state.webhooks,
        auth.project,
        &auth.actor(),
        spec,
    )
    .await?;
    let location = format!("/v1/webhooks/{}", webhook.id);
    let body = WebhookWithSecretResponse {
        webhook: webhook.into(),
        secret,
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(body),
    ))
}

/// List the webhook endpoints of the caller's project (never their secrets).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks",
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The endpoints, newest first", body = WebhookList),
    ))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    auth: Auth<scope::Admin>,
) -> Result<axum::Json<WebhookList>, ApiError> {
    let found = webhooks::list(&state.registry, auth.project).await?;
    Ok(axum::Json(WebhookList {
        items: found.into_iter().map(WebhookResponse::from).collect(),
    }))
}

/// One webhook endpoint.
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks",
    security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "The endpoint", body = WebhookResponse),
        (status = 404, description = "`webhook_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_webhook(
    State(state): State<AppState>,
    auth: Auth<scope::Admin>,
    Path(id): Path<String>,
) -> Result<axum::Json<WebhookResponse>, ApiError> {
    let webhook = webhooks::get(&state.registry, auth.project, webhook_id(&id)?).await?;
    Ok(axum::Json(webhook.into()))
}

/// Change an endpoint's URL, events, prompt filter or description, or
/// disable or re-enable it.
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks",
    security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    request_body = UpdateWebhookRequest,
    responses(
        (status = 200, description = "The endpoint", body = WebhookResponse),
        (status = 404, description = "`webhook_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_webhook(
    State(state): State<AppState>,
    auth: Auth<scope::Admin>,
    Path(id): Path<String>,
    Json(body): Json<UpdateWebhookRequest>,
) -> Result<axum::Json<WebhookResponse>, ApiError> {
    let spec = WebhookSpec {
        url: body.url,
        description: body.description,
        events: body.events,
        prompts: body.prompts,
        enabled: body.enabled,
    };
    let webhook = webhooks::update(
        &state.registry,
        &state.webhooks,
        auth.project,
        &auth.actor(),
        webhook_id(&id)?,
        spec,
    )
    .await?;
    Ok(axum::Json(webhook.into()))
}

/// Delete an endpoint with its deliveries.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`webhook_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    auth: Auth<scope::Admin>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    webhooks::delete(
        &state.registry,
        auth.project,
        &auth.actor(),
        webhook_id(&id)?,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replace the signing secret; the old one keeps signing beside the new
/// (two signatures per delivery) for 24 hours.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks",
    security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "The endpoint with its new `secret`, shown this once", body = WebhookWithSecretResponse),
        (status = 404, description = "`webhook_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`webhooks_not_configured`: the server has no `webhooks.secret_key`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rotate_webhook_secret(
    State(state): State<AppState>,
    auth: Auth<scope::Admin>,
    Path(id): Path<String>,
) -> Result<axum::Json<WebhookWithSecretResponse>, ApiError> {
    let (webhook, secret) = webhooks::rotate_secret(
        &state.registry,
        &state.webhooks,
        auth.project,
        &auth.actor(),
        webhook_id(&id)?,
    )
    .await?;
    Ok(axum::Json(WebhookWithSecretResponse {
        webhook: webhook.into(),
        secret,
    }))
}

/// Send a `webhook.test` event to this endpoint (and no other).
#[utoipa::path(post, path = "/v1/webhooks/{id}/test", tag = "webhooks",
    security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses(
        (status = 202, description = "Queued; see its deliveries", body = TestDeliveryResponse),
        (status = 404, description = "`webhook_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn test_webhook(
    State(state): State<AppState>,
    auth: Auth<scope::Admin>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let delivery_id = webhooks::send_test(
        &state.registry,
        &state.webhooks,
        auth.project,
        &auth.actor(),
        webhook_id(&id)?,
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(TestDeliveryResponse { delivery_id }),
    ))
}

/// Deliveries to an endpoint, newest first, each with its event and attempts.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path, description = "The endpoint's id"), DeliveryParams),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryPage),
        (status = 404, description = "`webhook_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    auth: Auth<scope::Admin>,
    Path(id): Path<String>,
    Query(params): Query<DeliveryParams>,
) -> Result<axum::Json<DeliveryPage>, ApiError> {
    let status =
        match params.status.as_deref() {
            None => None,
            Some(raw) => Some(DeliveryStatus::parse(raw).ok_or_else(|| {
                ApiError::validation("status", "one of pending, succeeded, failed")
            })?),
        };
    let page = page_request(params.limit, params.cursor.as_deref())?;
    let found = webhooks::deliveries(
        &state.registry,
        auth.project,
        webhook_id(&id)?,
        status,
        page,
    )
    .await?;
    Ok(axum::Json(found.into()))
}

/// Send a delivery again now, as the same event (the same `webhook-id`),
/// with a fresh count of attempts.
#[utoipa::path(post, path = "/v1/webhooks/deliveries/{id}/redeliver", tag = "webhooks",
    security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path, description = "The delivery's id")),
    responses(
        (status = 202, description = "Queued again", body = DeliveryResponse),
        (status = 404, description = "`delivery_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn redeliver(
    State(state): State<AppState>,
    auth: Auth<scope::Admin>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::from(ServiceError::Store(StoreError::DeliveryNotFound)))?;
    let delivery = webhooks::redeliver(
        &state.registry,
        &state.webhooks,
        auth.project,
        &auth.actor(),
        id,
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(DeliveryResponse::from(delivery)),
    ))
}
