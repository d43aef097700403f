//! Feedback on served versions: stored all or nothing per request, a retry
//! with the same client id counted once, and every experiment it counts
//! for checked by the guard before the answer (so the guard acts within
//! the request that decides it).

use std::collections::BTreeSet;

use crate::domain::ProjectId;
use crate::store::experiments::{NewFeedback, StoredFeedback};

use super::{experiments, Registry, ServiceError, ServiceResult};

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
    Ok(stored)
}
