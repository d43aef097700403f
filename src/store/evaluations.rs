//! Evaluations (a version run over a dataset, as a job) and their per-item
//! results, which the worker stores as it goes, each item once.

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreResult;
use crate::domain::auth::Actor;
use crate::domain::jobs::{Evaluation, ItemResult, NewEvaluation, StoredResult};
use crate::domain::ProjectId;

#[async_trait]
pub trait EvaluationStore: Send + Sync {
    /// Creates an evaluation and its queued job, in one transaction.
    async fn insert_evaluation(
        &self,
        project: ProjectId,
        new: NewEvaluation,
        actor: &Actor,
    ) -> StoreResult<Evaluation>;
    async fn get_evaluation(&self, project: ProjectId, id: Uuid) -> StoreResult<Evaluation>;
    /// The evaluation a job runs (the worker knows jobs, not projects).
    async fn get_evaluation_of_job(&self, job_id: Uuid) -> StoreResult<Evaluation>;
    /// The newest succeeded evaluation of a version on a dataset.
    async fn find_passing_candidate(
        &self,
        version_id: Uuid,
        dataset_id: Uuid,
    ) -> StoreResult<Option<Evaluation>>;
    /// Ids of the items an evaluation already has results for.
    async fn evaluated_items(&self, evaluation_id: Uuid) -> StoreResult<Vec<Uuid>>;
    /// Stores items' results and counts them in the job's progress, in one
    /// transaction, each item once: a second result for an item is ignored.
    /// Answers how many were new.
    async fn insert_results(
        &self,
        job_id: Uuid,
        evaluation_id: Uuid,
        results: &[ItemResult],
    ) -> StoreResult<u64>;
    /// Results in the order they were stored, after result id `after`.
    async fn list_results(
        &self,
        evaluation_id: Uuid,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredResult>>;
}
