//! Optimizations: a job that proposes and scores candidate prompts against a
//! dataset and writes the best as a version (see `optimize/`). Queued in the
//! transaction that creates it.

use std::sync::Arc;

use uuid::Uuid;

use crate::domain::auth::Actor;
use crate::domain::jobs::{Evaluation, Job};
use serde_json::{json, Map};

use crate::domain::optimization::{
    Candidate, NewOptimization, Optimization, OptimizationFilter, OptimizationSpec, SplitScores,
};
use crate::domain::{LabelName, Page, ProjectId, PromptContent, PromptName, Version, VersionRef};
use crate::providers::Providers;
use crate::store::PageRequest;
use crate::store::{CreatedVersion, NewVersion};

use super::drafts::Changes;
use super::evaluations::{self, EvaluationSpec};
use super::render::Renderer;
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

/// An optimization with how its result version differs from its base.
pub struct OptimizationDetail {
    pub optimization: Optimization,
    /// Base → result, once the job wrote a result version.
    pub result_changes: Option<Changes>,
}

/// An optimization and, when it has a result version, the diff of that
/// version against the base it started from.
pub async fn detail(
    registry: &Registry,
    project: ProjectId,
    id: Uuid,
) -> ServiceResult<OptimizationDetail> {
    let optimization = registry.store.get_optimization(project, id).await?;
    let result_changes = match &optimization.result_version {
        Some(result) => {
            let (name, base) = base_version(registry, project, &optimization).await?;
            let result = registry
                .get_version(project, &name, &VersionRef::Exact(result.clone()))
                .await?;
            Some(Changes::between(&base, &result))
        }
        None => None,
    };
    Ok(OptimizationDetail {
        optimization,
        result_changes,
    })
}

/// Queues an evaluation of an optimization's result version on its whole
/// dataset, with the target model and metric the optimization scored with.
pub async fn evaluate_result(
    registry: &Registry,
    providers: &Providers,
    project: ProjectId,
    actor: &Actor,
    id: Uuid,
) -> ServiceResult<Evaluation> {
    let optimization = registry.store.get_optimization(project, id).await?;
    let Some(result) = optimization.result_version.clone() else {
        return Err(ServiceError::validation(
            "result_version",
            "this optimization has no result version to evaluate",
        ));
    };
    let spec = optimization.spec.clone();
    evaluations::start(
        registry,
        providers,
        project,
        actor,
        EvaluationSpec {
            prompt: prompt_of(&optimization)?,
            reference: VersionRef::Exact(result),
            dataset: optimization.dataset_name,
            provider: spec.target.provider,
            model: spec.target.model,
            params: spec.target.params,
            metrics: spec
                .objective
                .metrics
                .into_iter()
                .map(|m| m.metric)
                .collect(),
            concurrency: Some(spec.concurrency),
        },
    )
    .await
}

/// The optimization's prompt and the version it started from.
async fn base_version(
    registry: &Registry,
    project: ProjectId,
    optimization: &Optimization,
) -> ServiceResult<(PromptName, Arc<Version>)> {
    let name = prompt_of(optimization)?;
    let base = registry
        .get_version(
            project,
            &name,
            &VersionRef::Exact(optimization.version.clone()),
        )
        .await?;
    Ok((name, base))
}

fn prompt_of(optimization: &Optimization) -> ServiceResult<PromptName> {
    PromptName::parse(&optimization.prompt_name)
        .map_err(|e| ServiceError::Internal(anyhow::anyhow!("a stored prompt name: {e}")))
}

/// Cancels the optimization's job: a queued one at once, a running one at
/// its next step (as `POST /v1/jobs/{id}/cancel` does).
pub async fn cancel(
    registry: &Registry,
    project: ProjectId,
    actor: &Actor,
    id: Uuid,
) -> ServiceResult<Job> {
    let optimization = registry.store.get_optimization(project, id).await?;
    super::jobs::cancel_job(registry, project, actor, optimization.job.id).await
}

/// A candidate of `optimization` as a new version of its prompt: the base's
/// content with the candidate's template, its lineage and scores in the
/// metadata, `how` it came about in the message.
pub fn candidate_version(
    optimization: &Optimization,
    base: &PromptContent,
    baseline: &SplitScores,
    candidate: &Candidate,
    how: &str,
) -> ServiceResult<NewVersion> {
    let spec = &optimization.spec;
    let content = PromptContent {
        body: candidate.template.clone(),
        ..base.clone()
    };
    let variables = crate::template::variables(content.engine, &content.body)
        .map_err(|e| ServiceError::validation("candidate", e.to_string()))?;
    let (before, after) = (
        baseline.val_score.unwrap_or(0.0),
        candidate.val_score.unwrap_or(0.0),
    );
    let mut metadata = Map::new();
    for (key, value) in [
        ("optimization_id", json!(optimization.id)),
        ("job_id", json!(optimization.job.id)),
        ("strategy", json!(spec.strategy.as_str())),
        ("metric", json!(spec.metric.name)),
        ("objective", json!(spec.objective)),
        ("template_tokens", json!(candidate.template_tokens)),
        ("val_measures", json!(candidate.measurements.val_measures)),
        ("dataset", json!(optimization.dataset_name)),
        ("baseline_val_score", json!(before)),
        ("best_val_score", json!(after)),
    ] {
        metadata.insert(key.to_owned(), value);
    }
    Ok(NewVersion {
        content,
        variables,
        message: Some(format!(
            "{how} from {} on {}: validation {} {before:.3} -> {after:.3} (optimization {})",
            optimization.version,
            optimization.dataset_name,
            spec.objective.describe(),
            optimization.id
        )),
        metadata,
        version: None,
        bump: None,
        parent: Some(optimization.version.clone()),
        expected_latest: None,
        labels: Vec::new(),
    })
}

/// Writes candidate `index` of iteration `number` as a new version, and
/// points `label` at it when given (in the same transaction, once the
/// label's gate passes): for a person who picks another point of the
/// Pareto front than the job's result, a cheaper one say. Only a candidate
/// scored on validation can be adopted, and a label moves only to one that
/// meets the constraints.
#[allow(clippy::too_many_arguments)]
pub async fn adopt_candidate(
    registry: &Registry,
    renderer: &Renderer,
    project: ProjectId,
    actor: &Actor,
    id: Uuid,
    number: u32,
    index: u32,
    label: Option<LabelName>,
) -> ServiceResult<CreatedVersion> {
    let optimization = registry.store.get_optimization(project, id).await?;
    let candidate = optimization.state.candidate(number, index).ok_or_else(|| {
        ServiceError::validation(
            "candidate",
            format!("iteration {number} has no candidate {index}"),
        )
    })?;
    if candidate.val_score.is_none() {
        return Err(ServiceError::validation(
            "candidate",
            format!(
                "candidate {index} of iteration {number} was not scored on validation; adopt one that was (see pareto_front)"
            ),
        ));
    }
    let broken = &candidate.measurements.violations;
    if label.is_some() && !broken.is_empty() {
        return Err(ServiceError::validation(
            "label",
            format!(
                "candidate {index} of iteration {number} breaks the optimization's constraints ({}), so no label is moved to it; adopt it without a label to keep it as a version",
                broken.join("; ")
            ),
        ));
    }
    let (name, base) = base_version(registry, project, &optimization).await?;
    let how = format!(
        "Adopted candidate {index} of iteration {number} ({})",
        optimization.spec.strategy.as_str()
    );
    let mut new = candidate_version(
        &optimization,
        &base.content,
        &optimization.state.baseline,
        candidate,
        &how,
    )?;
    new.metadata.insert(
        "adopted".to_owned(),
        json!({"iteration": number, "candidate": index}),
    );
    new.labels = label.into_iter().collect();
    super::versions::create_version(registry, renderer, project, actor, &name, new, false).await
}
