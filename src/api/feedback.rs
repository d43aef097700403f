//! Feedback from production on the versions served: one value or a batch
//! (all or nothing), each citing a render's `served_id` or a prompt and
//! version. A client-supplied `id` makes a retry harmless. And a prompt's
//! feedback summarized per version and hour or day.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::{scope, Auth};
use super::extract::{prompt_name, semver, Json, Path, PromptPath, Query};
use super::AppState;
use crate::domain::experiments::parse_served_id;
use crate::domain::json_kind;
use crate::domain::monitors::Bucket;
use crate::error::{ApiError, FieldError, Problem};
use crate::services::feedback::{self, FeedbackSummary, SummaryRequest};
use crate::store::experiments::{FeedbackTarget, NewFeedback, StoredFeedback};

/// Longest client id, unit, trace id and feedback name.
const MAX_TEXT: usize = 200;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "req-81f2", "served_id": "MDE5M2…", "name": "thumbs_up", "value": true, "unit": "user-42"}))]
pub struct FeedbackRequest {
    /// Your id for this value: a retry with the same id is stored once.
    id: Option<String>,
    /// From a render's `served` (or the `x-promptreg-served-id` header):
    /// the experiment and version served. Or give `prompt` and `version`.
    served_id: Option<String>,
    prompt: Option<String>,
    version: Option<String>,
    /// What is measured, e.g. `thumbs_up`; an experiment's `metric`.
    name: String,
    /// A number, or true/false (1/0).
    #[schema(value_type = Object)]
    value: Value,
    unit: Option<String>,
    comment: Option<String>,
    latency_ms: Option<i64>,
    cost_usd: Option<f64>,
    trace_id: Option<String>,
    metadata: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackBatchRequest {
    /// Up to 1,000 values; one refused refuses them all.
    items: Vec<FeedbackRequest>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FeedbackResponse {
    pub id: Uuid,
    /// True when a value with this client `id` was already stored (this
    /// one was not stored again).
    pub duplicate: bool,
    /// The experiment the value counts for, if any.
    pub experiment: Option<Uuid>,
}

impl From<StoredFeedback> for FeedbackResponse {
    fn from(s: StoredFeedback) -> Self {
        Self {
            id: s.id,
            duplicate: s.duplicate,
            experiment: s.experiment,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FeedbackBatchResponse {
    pub items: Vec<FeedbackResponse>,
}

/// Checks one value; errors name their field under `at`.
fn parse_feedback(
    at: &str,
    raw: FeedbackRequest,
    errors: &mut Vec<FieldError>,
) -> Option<NewFeedback> {
    let field = |name: &str| format!("{at}{name}");
    let before = errors.len();
    let mut text = |name: &str, value: &Option<String>| {
        if value
            .as_ref()
            .is_some_and(|v| v.is_empty() || v.len() > MAX_TEXT)
        {
            errors.push(FieldError::new(
                field(name),
                format!("1 to {MAX_TEXT} characters"),
            ));
        }
    };
    text("id", &raw.id);
    text("unit", &raw.unit);
    text("trace_id", &raw.trace_id);
    text("name", &Some(raw.name.clone()));
    let value = match &raw.value {
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::Number(n) => n.as_f64().filter(|v| v.is_finite()),
        _ => None,
    };
    if value.is_none() {
        errors.push(FieldError::new(
            field("value"),
            format!(
                "a finite number or true/false, not {}",
                json_kind(&raw.value)
            ),
        ));
    }
    if raw.cost_usd.is_some_and(|c| !c.is_finite()) {
        errors.push(FieldError::new(field("cost_usd"), "a finite number"));
    }
    let target = match (&raw.served_id, &raw.prompt, &raw.version) {
        (Some(served), None, None) => match parse_served_id(served) {
            Some((experiment, version)) => Some(FeedbackTarget::Served {
                experiment,
                version,
            }),
            None => {
                errors.push(FieldError::new(
                    field("served_id"),
                    "not a served_id this server gave",
                ));
                None
            }
        },
        (None, Some(prompt), Some(version)) => {
            match (prompt_name(prompt), semver(&field("version"), version)) {
                (Ok(prompt), Ok(version)) => Some(FeedbackTarget::Version { prompt, version }),
                (prompt, version) => {
                    if let Err(e) = prompt {
                        errors.push(FieldError::new(field("prompt"), e.to_string()));
                    }
                    if let Err(e) = version {
                        errors.push(FieldError::new(field("version"), e.to_string()));
                    }
                    None
                }
            }
        }
        _ => {
            errors.push(FieldError::new(
                field("served_id"),
                "give `served_id`, or `prompt` and `version`",
            ));
            None
        }
    };
    if errors.len() > before {
        return None;
    }
    Some(NewFeedback {
        client_id: raw.id,
        target: target?,
        name: raw.name,
        value: value?,
        unit: raw.unit,
        comment: raw.comment,
        latency_ms: raw.latency_ms,
        cost_usd: raw.cost_usd,
        trace_id: raw.trace_id,
        metadata: raw.metadata,
    })
}

/// Send one feedback value on a served version.
#[utoipa::path(post, path = "/v1/feedback", tag = "experiments",
    security(("bearer" = ["feedback"])),
    request_body = FeedbackRequest,
    responses(
        (status = 201, description = "Stored", body = FeedbackResponse),
        (status = 200, description = "A retry: a value with this `id` was already stored", body = FeedbackResponse),
        (status = 404, description = "`experiment_not_found`, `prompt_not_found` or `version_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: the field at fault", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_feedback(
    State(state): State<AppState>,
    auth: Auth<scope::Feedback>,
    Json(body): Json<FeedbackRequest>,
) -> Result<(StatusCode, axum::Json<FeedbackResponse>), ApiError> {
    let mut errors = Vec::new();
    let parsed = parse_feedback("", body, &mut errors);
    let Some(parsed) = parsed.filter(|_| errors.is_empty()) else {
        return Err(ApiError::invalid(errors));
    };
    let stored =
        feedback::record(&state.registry, auth.project, std::slice::from_ref(&parsed)).await?;
    let Some(stored) = stored.into_iter().next() else {
        return Err(ApiError::invalid(vec![FieldError::new(
            "name",
            "nothing was stored",
        )]));
    };
    let status = if stored.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, axum::Json(stored.into())))
}

/// Send up to 1,000 feedback values at once: all are stored, or none.
#[utoipa::path(post, path = "/v1/feedback/batch", tag = "experiments",
    security(("bearer" = ["feedback"])),
    request_body = FeedbackBatchRequest,
    responses(
        (status = 200, description = "Each value, in order, stored or a retry", body = FeedbackBatchResponse),
        (status = 404, description = "`experiment_not_found`, `prompt_not_found` or `version_not_found`: nothing was stored", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: the item and field at fault; nothing was stored", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_feedback_batch(
    State(state): State<AppState>,
    auth: Auth<scope::Feedback>,
    Json(body): Json<FeedbackBatchRequest>,
) -> Result<axum::Json<FeedbackBatchResponse>, ApiError> {
    if body.items.is_empty() || body.items.len() > feedback::MAX_BATCH {
        return Err(ApiError::invalid(vec![FieldError::new(
            "items",
            format!(
                "1 to {} values, not {}",
                feedback::MAX_BATCH,
                body.items.len()
            ),
        )]));
    }
    let mut errors = Vec::new();
    let batch: Vec<NewFeedback> = body
        .items
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| parse_feedback(&format!("items[{i}]."), item, &mut errors))
        .collect();
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let stored = feedback::record(&state.registry, auth.project, &batch).await?;
    Ok(axum::Json(FeedbackBatchResponse {
        items: stored.into_iter().map(FeedbackResponse::from).collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryParams {
    /// The feedback name summarized (required), e.g. `thumbs_up`.
    name: Option<String>,
    /// `hour` (the default) or `day`: buckets start on the UTC hour or day.
    bucket: Option<String>,
    /// RFC 3339, inclusive. Default: `to` minus 7 days (hour) or 90 days
    /// (day); a range spans at most 31 days of hours or 366 of days.
    from: Option<String>,
    /// RFC 3339, exclusive. Default: now.
    to: Option<String>,
}

/// One version's feedback in one bucket.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SummaryPoint {
    /// The bucket's start (UTC).
    pub start: DateTime<Utc>,
    pub n: i64,
    pub mean: f64,
}

/// One version's buckets, oldest first; buckets without feedback are left out.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SummarySeries {
    #[schema(example = "1.0.1")]
    pub version: String,
    pub buckets: Vec<SummaryPoint>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FeedbackSummaryResponse {
    #[schema(example = "support/greeting")]
    pub prompt: String,
    #[schema(example = "thumbs_up")]
    pub name: String,
    #[schema(example = "hour")]
    pub bucket: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Per version, in the order the versions were made.
    pub versions: Vec<SummarySeries>,
}

impl FeedbackSummaryResponse {
    fn new(prompt: String, summary: FeedbackSummary) -> Result<Self, ApiError> {
        let mut versions: Vec<SummarySeries> = Vec::new();
        for row in summary.rows {
            let start = DateTime::parse_from_rfc3339(&row.bucket)
                .map_err(|e| {
                    ApiError::from(crate::services::ServiceError::Internal(anyhow::anyhow!(
                        "a summary bucket {:?} is not RFC 3339: {e}",
                        row.bucket
                    )))
                })?
                .with_timezone(&Utc);
            let point = SummaryPoint {
                start,
                n: row.n,
                mean: row.mean,
            };
            match versions.iter_mut().find(|s| s.version == row.version) {
                Some(series) => series.buckets.push(point),
                None => versions.push(SummarySeries {
                    version: row.version,
                    buckets: vec![point],
                }),
            }
        }
        Ok(Self {
            prompt,
            name: summary.name,
            bucket: summary.bucket.as_str().to_owned(),
            from: summary.from,
            to: summary.to,
            versions,
        })
    }
}

fn timestamp(
    field: &str,
    raw: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> Option<DateTime<Utc>> {
    let raw = raw?;
    match DateTime::parse_from_rfc3339(raw) {
        Ok(at) => Some(at.with_timezone(&Utc)),
        Err(_) => {
            errors.push(FieldError::new(
                field,
                format!("{raw:?} is not an RFC 3339 time such as 2026-01-31T09:00:00Z"),
            ));
            None
        }
    }
}

/// A prompt's feedback on one name: n and mean per version and hour or day.
#[utoipa::path(get, path = "/v1/prompts/{name}/feedback/summary", tag = "experiments",
    security(("bearer" = ["read"])),
    params(PromptPath, SummaryParams),
    responses(
        (status = 200, description = "Per version, its buckets with feedback", body = FeedbackSummaryResponse),
        (status = 404, description = "`prompt_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `name` missing, `bucket` not hour or day, `from`/`to` not RFC 3339, out of order or too far apart", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn feedback_summary(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Path(name): Path<String>,
    Query(params): Query<SummaryParams>,
) -> Result<axum::Json<FeedbackSummaryResponse>, ApiError> {
    let prompt = prompt_name(&name)?;
    let mut errors = Vec::new();
    let bucket = match params.bucket.as_deref() {
        None => None,
        Some(raw) => {
            let parsed = Bucket::parse(raw);
            if parsed.is_none() {
                errors.push(FieldError::new(
                    "bucket",
                    format!("{raw:?} is not hour or day"),
                ));
            }
            parsed
        }
    };
    let from = timestamp("from", params.from.as_deref(), &mut errors);
    let to = timestamp("to", params.to.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let request = SummaryRequest {
        name: params.name,
        bucket,
        from,
        to,
    };
    let summary = feedback::summary(&state.registry, auth.project, &prompt, request).await?;
    Ok(axum::Json(FeedbackSummaryResponse::new(
        prompt.to_string(),
        summary,
    )?))
}
