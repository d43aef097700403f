//! Optimizations: a job that proposes and scores candidate prompts against a
//! dataset and writes the best as a version (see `optimize/`). Queued in the
//! transaction that creates it.

use uuid::Uuid;

use crate::domain::auth::Actor;
use crate::domain::optimization::{
    NewOptimization, Optimization, OptimizationFilter, OptimizationSpec,
};
use crate::domain::{Page, ProjectId, PromptName, VersionRef};
use crate::store::PageRequest;

use super::{Registry, ServiceError, ServiceResult};

/// Tries per optimization job before it counts as failed.
const MAX_ATTEMPTS: i32 = 3;

/// Queues an optimization of `prompt` at `reference` on dataset `dataset`.
pub async fn start(
    registry: &Registry,
    project: ProjectId,
    actor: &Actor,
    prompt: &PromptName,
    reference: &VersionRef,
    dataset: &str,
    spec: OptimizationSpec,
) -> ServiceResult<Optimization> {
    let version = registry.get_version(project, prompt, reference).await?;
    let dataset = registry.store.get_dataset(project, dataset).await?;
    if dataset.item_count < 2 {
        return Err(ServiceError::validation(
            "dataset",
            format!(
                "dataset {:?} has {} item(s); an optimization needs at least 2 (training and validation)",
                dataset.name, dataset.item_count
            ),
        ));
    }
    let new = NewOptimization {
        prompt_id: version.prompt_id,
        version_id: version.id,
        dataset_id: dataset.id,
        item_count: dataset.item_count,
        spec,
        max_attempts: MAX_ATTEMPTS,
        trace_parent: crate::telemetry::trace::current_traceparent(),
    };
    Ok(registry
        .store
        .insert_optimization(project, new, actor)
        .await?)
}

pub async fn get(registry: &Registry, project: ProjectId, id: Uuid) -> ServiceResult<Optimization> {
    Ok(registry.store.get_optimization(project, id).await?)
}

/// The project's optimizations that `filter` lets through, newest first.
pub async fn list(
    registry: &Registry,
    project: ProjectId,
    filter: &OptimizationFilter,
    page: PageRequest,
) -> ServiceResult<Page<Optimization>> {
    Ok(registry
        .store
        .list_optimizations(project, filter, page)
        .await?)
}
