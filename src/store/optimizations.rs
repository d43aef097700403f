//! Optimizations (a search for a better version, as a job): their state is
//! saved as they go, and the result version is written at most once, only
//! by the worker that holds the job's lease.

use async_trait::async_trait;
use uuid::Uuid;

use super::{NewVersion, StoreResult};
use crate::domain::auth::Actor;
use crate::domain::optimization::{NewOptimization, Optimization, OptimizationState};
use crate::domain::{ProjectId, PromptName};

#[async_trait]
pub trait OptimizationStore: Send + Sync {
    /// Creates an optimization and its queued job, in one transaction.
    async fn insert_optimization(
        &self,
        project: ProjectId,
        new: NewOptimization,
        actor: &Actor,
    ) -> StoreResult<Optimization>;
    async fn get_optimization(&self, project: ProjectId, id: Uuid) -> StoreResult<Optimization>;
    /// The optimization a job runs.
    async fn get_optimization_of_job(&self, job_id: Uuid) -> StoreResult<Optimization>;
    /// Saves how far an optimization got, with its job's progress, in one transaction.
    /// Only while `owner` holds the job's lease: otherwise
    /// [`StoreError::JobNotHeld`](super::StoreError::JobNotHeld), and nothing is written.
    async fn save_optimization_state(
        &self,
        id: Uuid,
        owner: &str,
        state: &OptimizationState,
        progress_done: i64,
    ) -> StoreResult<()>;
    /// Saves the final state and, unless the optimization already has one,
    /// creates `result` as a version of `prompt`, in one transaction: however
    /// often a resumed job gets here, there is one result version at most.
    /// Returns the result version, new or earlier. Writes nothing
    /// ([`StoreError::JobNotHeld`](super::StoreError::JobNotHeld)) unless
    /// `owner` holds the job's lease and no cancel was asked for.
    async fn finish_optimization(
        &self,
        id: Uuid,
        owner: &str,
        state: &OptimizationState,
        result: Option<(ProjectId, PromptName, NewVersion, Actor)>,
    ) -> StoreResult<Option<semver::Version>>;
}
