//! Experiments (a label's traffic split between versions), the requests
//! each variant served, and feedback on served versions. Every change to a
//! running experiment notes itself in the label's history and the audit
//! log and announces the prompt as changed, in its transaction, so every
//! replica drops its cached split. `ExperimentStore`, then `impl_sql!`.

use async_trait::async_trait;
use serde_json::Value;
use uuid::Uuid;

use super::StoreResult;
use crate::domain::auth::Actor;
use crate::domain::experiments::{Direction, Experiment, ExperimentStatus};
use crate::domain::{LabelName, ProjectId, PromptName};

/// A new experiment, checked by the service: the control first.
#[derive(Debug, Clone)]
pub struct NewExperiment {
    pub label: LabelName,
    pub variants: Vec<(semver::Version, u32)>,
    pub metric: String,
    pub direction: Direction,
    pub min_samples: u32,
    pub confidence: f64,
    pub rollback_if_worse: bool,
    pub auto_promote: bool,
}

/// What feedback is about.
#[derive(Debug, Clone)]
pub enum FeedbackTarget {
    /// A version an experiment served (from a `served_id`).
    Served {
        experiment: Uuid,
        version: semver::Version,
    },
    /// A version of a prompt, outside any experiment.
    Version {
        prompt: PromptName,
        version: semver::Version,
    },
}

#[derive(Debug, Clone)]
pub struct NewFeedback {
    pub client_id: Option<String>,
    pub target: FeedbackTarget,
    pub name: String,
    pub value: f64,
    pub unit: Option<String>,
    pub comment: Option<String>,
    pub latency_ms: Option<i64>,
    pub cost_usd: Option<f64>,
    pub trace_id: Option<String>,
    pub metadata: Option<Value>,
}

/// One stored feedback value, or a retry of one already stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFeedback {
    pub id: Uuid,
    pub duplicate: bool,
    /// The experiment it counts for, if any.
    pub experiment: Option<Uuid>,
    /// The prompt and version it is about (what monitors watch).
    pub prompt_id: Uuid,
    pub version_id: Uuid,
}

/// One variant's feedback on a metric, summed.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct FeedbackSums {
    pub version: String,
    pub n: i64,
    pub sum: f64,
    pub sum_sq: f64,
}

#[async_trait]
pub trait ExperimentStore: Send + Sync {
    /// Starts an experiment on `prompt`'s label, whose current version must
    /// be the first variant (checked under the prompt's lock).
    async fn insert_experiment(
        &self,
        project: ProjectId,
        prompt: &PromptName,
        new: NewExperiment,
        actor: &Actor,
    ) -> StoreResult<Experiment>;
    async fn get_experiment(&self, project: ProjectId, id: Uuid) -> StoreResult<Experiment>;
    /// Newest first.
    async fn list_experiments(
        &self,
        project: ProjectId,
        prompt: Option<&PromptName>,
        status: Option<ExperimentStatus>,
    ) -> StoreResult<Vec<Experiment>>;
    /// The experiment running on a prompt's label, if any: the hot path's
    /// miss, so by prompt id.
    async fn find_running_experiment(
        &self,
        prompt_id: Uuid,
        label: &str,
    ) -> StoreResult<Option<Experiment>>;
    /// New weights of a running experiment, by version (each variant named once).
    async fn update_weights(
        &self,
        project: ProjectId,
        id: Uuid,
        weights: &[(semver::Version, u32)],
        actor: &Actor,
    ) -> StoreResult<Experiment>;
    /// Ends a running experiment as `status`.
    async fn end_experiment(
        &self,
        project: ProjectId,
        id: Uuid,
        status: ExperimentStatus,
        actor: &Actor,
    ) -> StoreResult<Experiment>;
    /// Adds requests served: (experiment, position, count).
    async fn add_served(&self, counts: &[(Uuid, u32, u64)]) -> StoreResult<()>;
    /// Stores every value, or none (one refused refuses the batch).
    async fn insert_feedback(
        &self,
        project: ProjectId,
        batch: &[NewFeedback],
    ) -> StoreResult<Vec<StoredFeedback>>;
    /// Per version, the experiment's feedback named `metric`.
    async fn feedback_sums(&self, experiment: Uuid, metric: &str)
        -> StoreResult<Vec<FeedbackSums>>;
}

/// `ExperimentStore` in portable SQL for backend `$store` on database `$db`
/// (see `sql::impl_store!`).
macro_rules! impl_sql {
    ($store:ident, $db:ty, $backend:literal) => {
        use serde_json::json;
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::domain::auth::Actor;
        use crate::domain::experiments::{Direction, Experiment, ExperimentStatus, Variant};
        use crate::domain::{ProjectId, PromptName};
        use crate::store::experiments::{FeedbackSums, FeedbackTarget, NewExperiment, NewFeedback, StoredFeedback};
        use crate::store::rows::PromptRow;
        use crate::store::{is_unique_violation, now, ExperimentStore, Invalidation, StoreError, StoreResult};

        use super::$store;

        type Conn = <$db as sqlx::Database>::Connection;

        const EXPERIMENT_SELECT: &str = "select e.id, e.project_id, e.prompt_id, p.name as prompt, e.label, \
             e.metric, e.direction, e.min_samples, e.confidence, e.rollback_if_worse, e.auto_promote, \
             e.status, e.created_at, e.created_by, e.ended_at \
             from experiment e join prompt p on p.id = e.prompt_id";

        #[derive(sqlx::FromRow)]
        struct ExperimentRow {
            id: Uuid,
            project_id: Uuid,
            prompt_id: Uuid,
            prompt: String,
            label: String,
            metric: String,
            direction: String,
            min_samples: i64,
            confidence: f64,
            rollback_if_worse: bool,
            auto_promote: bool,
            status: String,
            created_at: chrono::DateTime<chrono::Utc>,
            created_by: Option<String>,
            ended_at: Option<chrono::DateTime<chrono::Utc>>,
        }

        #[derive(sqlx::FromRow)]
        struct VariantRow {
            version: String,
            weight: i64,
            served: i64,
        }

        impl $store {
            async fn experiment(conn: &mut Conn, row: ExperimentRow) -> StoreResult<Experiment> {
                let variants: Vec<VariantRow> = sqlx::query_as(
                    "select version, weight, served from experiment_variant \
                     where experiment_id = $1 order by position",
                )
                .bind(row.id)
                .fetch_all(&mut *conn)
                .await?;
                let corrupt = |what: &str| StoreError::Corrupt(format!("experiment {}: {what}", row.id));
                let variants = variants
                    .into_iter()
                    .map(|v| {
                        Ok(Variant {
                            version: semver::Version::parse(&v.version).map_err(|_| corrupt("version"))?,
                            weight: u32::try_from(v.weight).map_err(|_| corrupt("weight"))?,
                            served: v.served,
                        })
                    })
                    .collect::<StoreResult<Vec<_>>>()?;
                Ok(Experiment {
                    id: row.id,
                    project_id: row.project_id,
                    prompt_id: row.prompt_id,
                    prompt: row.prompt,
                    label: row.label,
                    metric: row.metric,
                    direction: Direction::parse(&row.direction).ok_or_else(|| corrupt("direction"))?,
                    min_samples: u32::try_from(row.min_samples).map_err(|_| corrupt("min_samples"))?,
                    confidence: row.confidence,
                    rollback_if_worse: row.rollback_if_worse,
                    auto_promote: row.auto_promote,
                    status: ExperimentStatus::parse(&row.status).ok_or_else(|| corrupt("status"))?,
                    variants,
                    created_at: row.created_at,
                    created_by: row.created_by,
                    ended_at: row.ended_at,
                })
            }

            async fn experiment_in(conn: &mut Conn, project: ProjectId, id: Uuid, lock: bool) -> StoreResult<Experiment> {
                let select = format!("{EXPERIMENT_SELECT} where e.project_id = $1 and e.id = $2");
                let row: ExperimentRow = Self::find_in_project(conn, &select, project, id, lock)
                    .await?
                    .ok_or(StoreError::ExperimentNotFound)?;
                Self::experiment(conn, row).await
            }

            /// A running experiment of `project`, its prompt's row locked so
            /// writes to the prompt's labels and experiments queue.
            async fn running_experiment(conn: &mut Conn, project: ProjectId, id: Uuid) -> StoreResult<(Experiment, PromptRow)> {
                let experiment = Self::experiment_in(conn, project, id, false).await?;
                let name = PromptName::parse(&experiment.prompt)
                    .map_err(|e| StoreError::Corrupt(format!("prompt name: {}", e.0)))?;
                let prompt = Self::prompt_row(conn, project, &name, true).await?;
                if experiment.status != ExperimentStatus::Running {
                    return Err(StoreError::ExperimentEnded(experiment.status));
                }
                Ok((experiment, prompt))
            }

            /// Notes what an experiment did in its label's history (a move
            /// that stays on the label's version), audits it and tells every
            /// replica the prompt's resolutions changed.
            #[allow(clippy::too_many_arguments)]
            async fn note_experiment(
                conn: &mut Conn,
                prompt: &PromptRow,
                label: &str,
                action: &str,
                note: String,
                after: serde_json::Value,
                actor: &Actor,
            ) -> StoreResult<()> {
                let current = Self::current_label_target(conn, prompt.id, label).await?;
                sqlx::query(
                    "insert into label_move (prompt_id, label, from_version_id, to_version_id, at, by, note) \
                     values ($1, $2, $3, $3, $4, $5, $6)",
                )
                .bind(prompt.id)
                .bind(label)
                .bind(current)
                .bind(now())
                .bind(&actor.key_name)
                .bind(&note)
                .execute(&mut *conn)
                .await?;
                let target = format!("prompts/{}/labels/{label}", prompt.name);
                Self::audit(conn, prompt.project_id, actor, action, &target, None, Some(after)).await?;
                Self::notify(conn, Invalidation::Prompt(prompt.id)).await
            }
        }

        fn split(variants: &[Variant]) -> String {
            variants.iter().map(|v| format!("{} {}%", v.version, v.weight)).collect::<Vec<_>>().join(", ")
        }

        crate::store::sql::observed_impl! {
        impl ExperimentStore for $store as $backend {
            async fn insert_experiment(
                &self,
                project: ProjectId,
                prompt: &PromptName,
                new: NewExperiment,
                actor: &Actor,
            ) -> StoreResult<Experiment> {
                crate::store::annotate("promptreg.prompt", &prompt);
                let mut tx = self.writer().begin().await?;
                let prompt_row = Self::prompt_row(&mut tx, project, prompt, true).await?;
                let current = Self::current_label_target(&mut tx, prompt_row.id, new.label.as_str())
                    .await?
                    .ok_or_else(|| StoreError::LabelNotFound { prompt: prompt.to_string(), label: new.label.to_string() })?;
                let mut version_ids = Vec::with_capacity(new.variants.len());
                for (version, _) in &new.variants {
                    version_ids.push(
                        Self::version_id_of(&mut tx, prompt_row.id, version)
                            .await?
                            .ok_or_else(|| StoreError::VersionNotFound { prompt: prompt.to_string(), reference: version.to_string() })?,
                    );
                }
                if version_ids.first() != Some(&current) {
                    let at = Self::semver_of(&mut tx, Some(current)).await?.unwrap_or_default();
                    return Err(StoreError::ControlNotCurrent { label: new.label.to_string(), version: at });
                }
                let (id, at) = (Uuid::now_v7(), now());
                sqlx::query(
                    "insert into experiment (id, project_id, prompt_id, label, metric, direction, min_samples, \
                     confidence, rollback_if_worse, auto_promote, status, created_at, created_by) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'running', $11, $12)",
                )
                .bind(id)
                .bind(project)
                .bind(prompt_row.id)
                .bind(new.label.as_str())
                .bind(&new.metric)
                .bind(new.direction.as_str())
                .bind(i64::from(new.min_samples))
                .bind(new.confidence)
                .bind(new.rollback_if_worse)
                .bind(new.auto_promote)
                .bind(at)
                .bind(&actor.key_name)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StoreError::ExperimentRunning(new.label.to_string())
                    } else {
                        e.into()
                    }
                })?;
                for (position, ((version, weight), version_id)) in new.variants.iter().zip(&version_ids).enumerate() {
                    sqlx::query(
                        "insert into experiment_variant (experiment_id, position, version_id, version, weight, served) \
                         values ($1, $2, $3, $4, $5, 0)",
                    )
                    .bind(id)
                    .bind(position as i64)
                    .bind(version_id)
                    .bind(version.to_string())
                    .bind(i64::from(*weight))
                    .execute(&mut *tx)
                    .await?;
                }
                let experiment = Self::experiment_in(&mut tx, project, id, false).await?;
                Self::note_experiment(
                    &mut tx, &prompt_row, new.label.as_str(), "experiment.start",
                    format!("experiment {id} started: {}", split(&experiment.variants)),
                    json!({"experiment": id, "variants": split(&experiment.variants)}), actor,
                ).await?;
                tx.commit().await?;
                Ok(experiment)
            }

            async fn get_experiment(&self, project: ProjectId, id: Uuid) -> StoreResult<Experiment> {
                let mut conn = self.reader().acquire().await?;
                Self::experiment_in(&mut conn, project, id, false).await
            }

            async fn list_experiments(
                &self,
                project: ProjectId,
                prompt: Option<&PromptName>,
                status: Option<ExperimentStatus>,
            ) -> StoreResult<Vec<Experiment>> {
                let mut conn = self.reader().acquire().await?;
                let sql = format!(
                    "{EXPERIMENT_SELECT} where e.project_id = $1 and ($2 is null or p.name = $2) \
                     and ($3 is null or e.status = $3) order by e.id desc limit 1000"
                );
                let rows: Vec<ExperimentRow> = sqlx::query_as(&sql)
                    .bind(project)
                    .bind(prompt.map(|p| p.to_string()))
                    .bind(status.map(|s| s.as_str().to_owned()))
                    .fetch_all(&mut *conn)
                    .await?;
                let mut experiments = Vec::with_capacity(rows.len());
                for row in rows {
                    experiments.push(Self::experiment(&mut conn, row).await?);
                }
                Ok(experiments)
            }

            async fn find_running_experiment(&self, prompt_id: Uuid, label: &str) -> StoreResult<Option<Experiment>> {
                let mut conn = self.reader().acquire().await?;
                let sql = format!("{EXPERIMENT_SELECT} where e.prompt_id = $1 and e.label = $2 and e.status = 'running'");
                let row: Option<ExperimentRow> = sqlx::query_as(&sql)
                    .bind(prompt_id)
                    .bind(label.to_owned())
                    .fetch_optional(&mut *conn)
                    .await?;
                match row {
                    Some(row) => Ok(Some(Self::experiment(&mut conn, row).await?)),
                    None => Ok(None),
                }
            }

            async fn update_weights(
                &self,
                project: ProjectId,
                id: Uuid,
                weights: &[(semver::Version, u32)],
                actor: &Actor,
            ) -> StoreResult<Experiment> {
                let mut tx = self.writer().begin().await?;
                let (experiment, prompt) = Self::running_experiment(&mut tx, project, id).await?;
                for (version, weight) in weights {
                    sqlx::query("update experiment_variant set weight = $1 where experiment_id = $2 and version = $3")
                        .bind(i64::from(*weight))
                        .bind(id)
                        .bind(version.to_string())
                        .execute(&mut *tx)
                        .await?;
                }
                let updated = Self::experiment_in(&mut tx, project, id, false).await?;
                Self::note_experiment(
                    &mut tx, &prompt, &experiment.label, "experiment.ramp",
                    format!("experiment {id} split: {}", split(&updated.variants)),
                    json!({"experiment": id, "variants": split(&updated.variants)}), actor,
                ).await?;
                tx.commit().await?;
                Ok(updated)
            }

            async fn end_experiment(
                &self,
                project: ProjectId,
                id: Uuid,
                status: ExperimentStatus,
                actor: &Actor,
            ) -> StoreResult<Experiment> {
                let mut tx = self.writer().begin().await?;
                let (experiment, prompt) = Self::running_experiment(&mut tx, project, id).await?;
                sqlx::query("update experiment set status = $1, ended_at = $2 where id = $3")
                    .bind(status.as_str())
                    .bind(now())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let action = format!("experiment.{}", status.as_str());
                Self::note_experiment(
                    &mut tx, &prompt, &experiment.label, &action,
                    format!("experiment {id} {}", status.as_str().replace('_', " ")),
                    json!({"experiment": id, "status": status.as_str()}), actor,
                ).await?;
                let ended = Self::experiment_in(&mut tx, project, id, false).await?;
                tx.commit().await?;
                Ok(ended)
            }

            async fn add_served(&self, counts: &[(Uuid, u32, u64)]) -> StoreResult<()> {
                let mut tx = self.writer().begin().await?;
                for (experiment, position, count) in counts {
                    sqlx::query("update experiment_variant set served = served + $1 where experiment_id = $2 and position = $3")
                        .bind(i64::try_from(*count).unwrap_or(i64::MAX))
                        .bind(experiment)
                        .bind(i64::from(*position))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn insert_feedback(&self, project: ProjectId, batch: &[NewFeedback]) -> StoreResult<Vec<StoredFeedback>> {
                let mut tx = self.writer().begin().await?;
                let mut stored = Vec::with_capacity(batch.len());
                for feedback in batch {
                    let (prompt_id, version_id, experiment) = match &feedback.target {
                        FeedbackTarget::Served { experiment, version } => {
                            let found: Option<(Uuid, Uuid)> = sqlx::query_as(
                                "select e.prompt_id, v.version_id from experiment e \
                                 join experiment_variant v on v.experiment_id = e.id \
                                 where e.project_id = $1 and e.id = $2 and v.version = $3",
                            )
                            .bind(project)
                            .bind(experiment)
                            .bind(version.to_string())
                            .fetch_optional(&mut *tx)
                            .await?;
                            let (prompt_id, version_id) = found.ok_or(StoreError::ExperimentNotFound)?;
                            (prompt_id, version_id, Some(*experiment))
                        }
                        FeedbackTarget::Version { prompt, version } => {
                            let row = Self::prompt_row(&mut tx, project, prompt, false).await?;
                            let version_id = Self::version_id_of(&mut tx, row.id, version)
                                .await?
                                .ok_or_else(|| StoreError::VersionNotFound { prompt: prompt.to_string(), reference: version.to_string() })?;
                            (row.id, version_id, None)
                        }
                    };
                    let id = Uuid::now_v7();
                    let inserted = sqlx::query(
                        "insert into feedback (id, project_id, client_id, prompt_id, version_id, experiment_id, name, \
                         value, unit, comment, latency_ms, cost_usd, trace_id, metadata, created_at) \
                         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                         on conflict do nothing",
                    )
                    .bind(id)
                    .bind(project)
                    .bind(&feedback.client_id)
                    .bind(prompt_id)
                    .bind(version_id)
                    .bind(experiment)
                    .bind(&feedback.name)
                    .bind(feedback.value)
                    .bind(&feedback.unit)
                    .bind(&feedback.comment)
                    .bind(feedback.latency_ms)
                    .bind(feedback.cost_usd)
                    .bind(&feedback.trace_id)
                    .bind(feedback.metadata.as_ref().map(Json))
                    .bind(now())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                    stored.push(if inserted {
                        StoredFeedback { id, duplicate: false, experiment, prompt_id, version_id }
                    } else {
                        let (id, experiment, prompt_id, version_id): (Uuid, Option<Uuid>, Uuid, Uuid) = sqlx::query_as(
                            "select id, experiment_id, prompt_id, version_id from feedback \
                             where project_id = $1 and client_id = $2",
                        )
                        .bind(project)
                        .bind(&feedback.client_id)
                        .fetch_one(&mut *tx)
                        .await?;
                        StoredFeedback { id, duplicate: true, experiment, prompt_id, version_id }
                    });
                }
                tx.commit().await?;
                Ok(stored)
            }

            async fn feedback_sums(&self, experiment: Uuid, metric: &str) -> StoreResult<Vec<FeedbackSums>> {
                Ok(sqlx::query_as(
                    "select v.version, count(*) as n, sum(f.value) as sum, sum(f.value * f.value) as sum_sq \
                     from feedback f join prompt_version v on v.id = f.version_id \
                     where f.experiment_id = $1 and f.name = $2 group by v.version",
                )
                .bind(experiment)
                .bind(metric.to_owned())
                .fetch_all(self.reader())
                .await?)
            }
        }
        }
    };
}

pub(crate) use impl_sql;
