//! Feedback on served versions: stored all or nothing per request, a retry
//! with the same client id counted once, and every experiment it counts
//! for checked by the guard, and every monitor watching its version
//! checked, before the answer (so both act within the request that decides
//! it). Also the time-bucketed summary of a prompt's feedback.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::domain::monitors::Bucket;
use crate::domain::{ProjectId, PromptName};
use crate::store::experiments::{NewFeedback, StoredFeedback};
use crate::store::monitors::SummaryRow;

use super::{experiments, monitors, FieldError, Registry, ServiceError, ServiceResult};

/// The most values one batch may hold.
pub const MAX_BATCH: usize = 1_000;

pub async fn record(
    registry: &Registry,
    project: ProjectId,
    batch: &[NewFeedback],
) -> ServiceResult<Vec<StoredFeedback>> {
    if batch.is_empty() || batch.len() > MAX_BATCH {
        return Err(ServiceError::validation(
            "items",
            format!("give 1 to {MAX_BATCH} feedback values, not {}", batch.len()),
        ));
    }
    let stored = registry.store.insert_feedback(project, batch).await?;
    let touched: BTreeSet<uuid::Uuid> = stored
        .iter()
        .filter(|s| !s.duplicate)
        .filter_map(|s| s.experiment)
        .collect();
    for experiment in touched {
        // The feedback is stored whatever the guard does; its failure is logged.
        if let Err(e) = experiments::guard(registry, project, experiment).await {
            tracing::warn!(%experiment, error = %e, "the experiment guard failed");
        }
    }
    let watched: BTreeSet<(uuid::Uuid, uuid::Uuid, String)> = stored
        .iter()
        .zip(batch)
        .filter(|(s, _)| !s.duplicate)
        .map(|(s, f)| (s.prompt_id, s.version_id, f.name.clone()))
        .collect();
    monitors::check_after_feedback(registry, project, &watched).await;
    Ok(stored)
}

/// What a feedback summary covers: a feedback name, the bucket width and
/// a time range (`from` inclusive, `to` exclusive), each optional but the
/// name.
#[derive(Debug, Clone)]
pub struct SummaryRequest {
    pub name: Option<String>,
    pub bucket: Option<Bucket>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// A prompt's feedback on one name, per version and time bucket.
#[derive(Debug, Clone)]
pub struct FeedbackSummary {
    pub name: String,
    pub bucket: Bucket,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Oldest bucket first; within one, versions in the order they were made.
    pub rows: Vec<SummaryRow>,
}

/// `to` defaults to now and `from` to `to` minus 7 days (hourly buckets)
/// or 90 days (daily); a range may span at most 31 days of hours or 366
/// of days.
pub async fn summary(
    registry: &Registry,
    project: ProjectId,
    prompt: &PromptName,
    request: SummaryRequest,
) -> ServiceResult<FeedbackSummary> {
    let mut errors = Vec::new();
    let name = request.name.unwrap_or_default();
    if name.is_empty() || name.len() > 200 {
        errors.push(FieldError::new(
            "name",
            "give the feedback name to summarize (1 to 200 characters)",
        ));
    }
    let bucket = request.bucket.unwrap_or(Bucket::Hour);
    let to = request.to.unwrap_or_else(Utc::now);
    let from = request.from.unwrap_or(to - bucket.default_range());
    if from >= to {
        errors.push(FieldError::new("from", "must be before `to`"));
    } else if to - from > bucket.max_range() {
        errors.push(FieldError::new(
            "from",
            format!(
                "a summary by {} spans at most {} days",
                bucket.as_str(),
                bucket.max_range().num_days()
            ),
        ));
    }
    if !errors.is_empty() {
        return Err(ServiceError::Validation(errors));
    }
    let rows = registry
        .store
        .feedback_summary(project, prompt, &name, bucket, from, to)
        .await?;
    Ok(FeedbackSummary {
        name,
        bucket,
        from,
        to,
        rows,
    })
}
