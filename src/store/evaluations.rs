//! Evaluations (a version run over a dataset, as a job) and their per-item
//! results, which the worker stores as it goes, each item once.
//! `EvaluationStore`, then `impl_sql!`, its SQL for both backends.

use async_trait::async_trait;
use uuid::Uuid;

use super::{PageRequest, StoreResult};
use crate::domain::auth::Actor;
use crate::domain::jobs::{
    Evaluation, EvaluationFilter, EvaluationListing, ItemResult, NewEvaluation, StoredResult,
};
use crate::domain::{Page, ProjectId};

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
    /// The evaluations of `project` that `filter` lets through, newest
    /// first, each with what its results add up to so far. A page takes
    /// the same few queries whatever its length.
    async fn list_evaluations(
        &self,
        project: ProjectId,
        filter: &EvaluationFilter,
        page: PageRequest,
    ) -> StoreResult<Page<EvaluationListing>>;
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

/// `EvaluationStore` in portable SQL for backend `$store` on database `$db` (see
/// `sql::impl_store!`).
macro_rules! impl_sql {
    ($store:ident, $db:ty, $backend:literal) => {
        use serde_json::json;
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::domain::auth::Actor;
        use std::collections::{BTreeMap, HashMap};

        use crate::domain::jobs::{
            Evaluation, EvaluationFilter, EvaluationListing, ItemResult, MetricMoments,
            NewEvaluation, ResultTotals, StoredResult, EVALUATION_JOB,
        };
        use crate::domain::{Page, ProjectId};
        use crate::store::rows::{EvaluationRow, JobOwner, RESULT_COLUMNS};
        use crate::store::{
            now, page_from_overfetch, EvaluationStore, PageKey, PageRequest, StoreError,
            StoreResult,
        };

        use super::$store;

        /// `(evaluation_id, items, errors, input_tokens, output_tokens, cost_usd)`.
        type TotalsRow = (Uuid, i64, i64, i64, i64, f64);

        impl $store {
            /// What the results of each evaluation of `ids` add up to.
            async fn result_totals(&self, ids: &[Uuid]) -> StoreResult<HashMap<Uuid, ResultTotals>> {
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "select evaluation_id, count(*), \
                     cast(coalesce(sum(case when error is null then 0 else 1 end), 0) as bigint), \
                     cast(coalesce(sum(input_tokens), 0) as bigint), \
                     cast(coalesce(sum(output_tokens), 0) as bigint), \
                     coalesce(sum(coalesce(cost_usd, 0.0)), 0.0) \
                     from evaluation_result where evaluation_id in (",
                );
                let mut bound = query.separated(", ");
                for id in ids {
                    bound.push_bind(*id);
                }
                query.push(") group by evaluation_id");
                let rows: Vec<TotalsRow> = query.build_query_as().fetch_all(self.reader()).await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, items, errors, input_tokens, output_tokens, cost_usd)| {
                        (id, ResultTotals { items, errors, input_tokens, output_tokens, cost_usd })
                    })
                    .collect())
            }

            /// Each metric's moments over the scored items of each evaluation
            /// of `ids`: mean first, then the squared deviations from it, as
            /// `stats::summarize` computes them.
            async fn metric_moments(&self, ids: &[Uuid]) -> StoreResult<HashMap<Uuid, BTreeMap<String, MetricMoments>>> {
                let mut query = sqlx::QueryBuilder::<$db>::new(format!(
                    "with scored as ({} and r.evaluation_id in (",
                    Self::NUMERIC_SCORES
                ));
                let mut bound = query.separated(", ");
                for id in ids {
                    bound.push_bind(*id);
                }
                query.push(
                    ")), mean_of as (select evaluation_id, metric, count(*) as n, avg(score) as mean \
                     from scored group by evaluation_id, metric) \
                     select m.evaluation_id, m.metric, m.n, m.mean, \
                     sum((s.score - m.mean) * (s.score - m.mean)) as squared_deviations \
                     from mean_of m join scored s on s.evaluation_id = m.evaluation_id and s.metric = m.metric \
                     group by m.evaluation_id, m.metric, m.n, m.mean",
                );
                let rows: Vec<(Uuid, String, i64, f64, f64)> = query.build_query_as().fetch_all(self.reader()).await?;
                let mut moments: HashMap<Uuid, BTreeMap<String, MetricMoments>> = HashMap::new();
                for (id, metric, n, mean, squared_deviations) in rows {
                    moments.entry(id).or_default().insert(metric, MetricMoments { n, mean, squared_deviations });
                }
                Ok(moments)
            }
        }

        crate::store::sql::observed_impl! {
        impl EvaluationStore for $store as $backend {
            async fn insert_evaluation(&self, project: ProjectId, new: NewEvaluation, actor: &Actor) -> StoreResult<Evaluation> {
                let at = now();
                let (id, job_id) = (Uuid::now_v7(), Uuid::now_v7());
                let mut tx = self.writer().begin().await?;
                Self::queue_job(&mut tx, job_id, project, EVALUATION_JOB, json!({"evaluation_id": id}),
                    new.max_attempts, at, new.item_count, new.trace_parent.as_deref()).await?;
                sqlx::query(
                    "insert into evaluation (id, project_id, job_id, prompt_id, version_id, dataset_id, provider, \
                     model, params, metrics, concurrency, item_count, created_at, created_by) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                )
                .bind(id)
                .bind(project)
                .bind(job_id)
                .bind(new.prompt_id)
                .bind(new.version_id)
                .bind(new.dataset_id)
                .bind(&new.provider)
                .bind(&new.model)
                .bind(Json(&new.params))
                .bind(Json(&new.metrics))
                .bind(new.concurrency)
                .bind(new.item_count)
                .bind(at)
                .bind(&actor.key_name)
                .execute(&mut *tx)
                .await?;
                Self::audit(&mut tx, project, actor, "evaluation.create", &format!("evaluations/{id}"), None,
                    Some(json!({"job_id": job_id, "provider": new.provider, "model": new.model}))).await?;
                tx.commit().await?;
                self.get_evaluation(project, id).await
            }

            async fn get_evaluation(&self, project: ProjectId, id: Uuid) -> StoreResult<Evaluation> {
                self.find_with_job::<EvaluationRow>("where e.id = $1 and e.project_id = $2", &[id, project])
                    .await?
                    .ok_or(StoreError::EvaluationNotFound)
            }

            async fn list_evaluations(&self, project: ProjectId, filter: &EvaluationFilter, page: PageRequest) -> StoreResult<Page<EvaluationListing>> {
                let mut query = sqlx::QueryBuilder::<$db>::new(EvaluationRow::SELECT);
                query.push(" join job j on j.id = e.job_id where e.project_id = ").push_bind(project);
                query.push(" and e.id < ").push_bind(page.after_id().unwrap_or(Uuid::max()));
                if let Some(prompt) = &filter.prompt {
                    query.push(" and p.name = ").push_bind(prompt.to_string());
                }
                if let Some(version) = &filter.version {
                    query.push(" and v.version = ").push_bind(version.to_string());
                }
                if let Some(dataset) = &filter.dataset {
                    query.push(" and d.name = ").push_bind(dataset.clone());
                }
                if let Some(status) = filter.status {
                    query.push(" and j.status = ").push_bind(status.as_str());
                }
                query.push(" order by e.id desc limit ").push_bind(page.overfetch());
                let rows: Vec<EvaluationRow> = query.build_query_as().fetch_all(self.reader()).await?;
                let rows = page_from_overfetch(rows, page.limit, |row| PageKey::Id(row.id));
                let ids: Vec<Uuid> = rows.items.iter().map(|row| row.id).collect();
                if ids.is_empty() {
                    return Ok(Page { items: Vec::new(), next_cursor: rows.next_cursor });
                }
                let evaluations = self.with_jobs(rows.items).await?;
                let mut totals = self.result_totals(&ids).await?;
                let mut moments = self.metric_moments(&ids).await?;
                let items = evaluations
                    .into_iter()
                    .map(|evaluation| EvaluationListing {
                        totals: totals.remove(&evaluation.id).unwrap_or_default(),
                        metrics: moments.remove(&evaluation.id).unwrap_or_default(),
                        evaluation,
                    })
                    .collect();
                Ok(Page { items, next_cursor: rows.next_cursor })
            }

            async fn get_evaluation_of_job(&self, job_id: Uuid) -> StoreResult<Evaluation> {
                self.find_with_job::<EvaluationRow>("where e.job_id = $1", &[job_id])
                    .await?
                    .ok_or(StoreError::EvaluationNotFound)
            }

            async fn find_passing_candidate(&self, version_id: Uuid, dataset_id: Uuid) -> StoreResult<Option<Evaluation>> {
                self.find_with_job::<EvaluationRow>(
                    "join job j on j.id = e.job_id \
                     where e.version_id = $1 and e.dataset_id = $2 and j.status = 'succeeded' \
                     order by j.finished_at desc limit 1",
                    &[version_id, dataset_id],
                )
                .await
            }

            async fn evaluated_items(&self, evaluation_id: Uuid) -> StoreResult<Vec<Uuid>> {
                Ok(sqlx::query_scalar::<_, Uuid>("select item_id from evaluation_result where evaluation_id = $1")
                    .bind(evaluation_id)
                    .fetch_all(self.reader())
                    .await?)
            }

            async fn insert_results(&self, job_id: Uuid, evaluation_id: Uuid, results: &[ItemResult]) -> StoreResult<u64> {
                if results.is_empty() {
                    return Ok(0);
                }
                let at = now();
                let mut tx = self.writer().begin().await?;
                let mut inserted = 0;
                // Bounded statements: SQLite allows at most 32,766 bound values.
                for chunk in results.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "insert into evaluation_result (evaluation_id, item_id, item_seq, output, scores, details, \
                         error, latency_ms, input_tokens, output_tokens, cost_usd, created_at) ",
                    );
                    qb.push_values(chunk, |mut row, result| {
                        row.push_bind(evaluation_id)
                            .push_bind(result.item_id)
                            .push_bind(result.item_seq)
                            .push_bind(result.output.clone())
                            .push_bind(Json(result.scores.clone()))
                            .push_bind(Json(result.details.clone()))
                            .push_bind(result.error.clone())
                            .push_bind(result.latency_ms)
                            .push_bind(result.input_tokens)
                            .push_bind(result.output_tokens)
                            .push_bind(result.cost_usd)
                            .push_bind(at);
                    });
                    qb.push(" on conflict (evaluation_id, item_id) do nothing");
                    inserted += qb.build().execute(&mut *tx).await?.rows_affected();
                }
                if inserted > 0 {
                    sqlx::query("update job set progress_done = progress_done + $1, updated_at = $2 where id = $3")
                        .bind(i64::try_from(inserted).unwrap_or(i64::MAX))
                        .bind(at)
                        .bind(job_id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(inserted)
            }

            async fn list_results(&self, evaluation_id: Uuid, after: i64, limit: u32) -> StoreResult<Vec<StoredResult>> {
                Ok(sqlx::query_as(&format!(
                    "select {RESULT_COLUMNS} from evaluation_result where evaluation_id = $1 and id > $2 order by id limit $3"
                ))
                .bind(evaluation_id)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?)
            }
        }
        }
    };
}

pub(crate) use impl_sql;
