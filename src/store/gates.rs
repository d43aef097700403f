//! Gates: the rules an evaluation on a dataset must pass before a label of a
//! prompt may move to a version (the decision itself is the services' job).
//! `GateStore`, then `impl_sql!`, its SQL for both backends.

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::auth::Actor;
use crate::domain::jobs::{Gate, GateRule};
use crate::domain::{LabelName, ProjectId, PromptName};

#[async_trait]
pub trait GateStore: Send + Sync {
    /// Creates or replaces the gate on `label` of a prompt.
    async fn put_gate(
        &self,
        project: ProjectId,
        prompt: &PromptName,
        label: &LabelName,
        dataset: &str,
        rules: &[GateRule],
        actor: &Actor,
    ) -> StoreResult<Gate>;
    async fn find_gate(
        &self,
        project: ProjectId,
        prompt: &PromptName,
        label: &str,
    ) -> StoreResult<Option<Gate>>;
    async fn list_gates(&self, project: ProjectId, prompt: &PromptName) -> StoreResult<Vec<Gate>>;
    /// False when there was no such gate.
    async fn delete_gate(
        &self,
        project: ProjectId,
        prompt: &PromptName,
        label: &LabelName,
        actor: &Actor,
    ) -> StoreResult<bool>;
}

/// `GateStore` in portable SQL for backend `$store` on database `$db` (see
/// `sql::impl_store!`).
macro_rules! impl_sql {
    ($store:ident, $db:ty, $backend:literal) => {
        use serde_json::json;
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::domain::auth::Actor;
        use crate::domain::jobs::{Gate, GateRule};
        use crate::domain::{LabelName, ProjectId, PromptName};
        use crate::store::rows::GATE_SELECT;
        use crate::store::{now, GateStore, StoreError, StoreResult};

        use super::$store;

        crate::store::sql::observed_impl! {
        impl GateStore for $store as $backend {
            async fn put_gate(
                &self,
                project: ProjectId,
                prompt: &PromptName,
                label: &LabelName,
                dataset: &str,
                rules: &[GateRule],
                actor: &Actor,
            ) -> StoreResult<Gate> {
                let at = now();
                let mut tx = self.writer().begin().await?;
                let prompt_row = Self::prompt_row(&mut tx, project, prompt, false).await?;
                let dataset_id: Uuid = sqlx::query_scalar("select id from dataset where project_id = $1 and name = $2")
                    .bind(project)
                    .bind(dataset)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::DatasetNotFound(dataset.to_owned()))?;
                sqlx::query(
                    "insert into gate (prompt_id, label, dataset_id, rules, created_at, updated_at) \
                     values ($1, $2, $3, $4, $5, $5) \
                     on conflict (prompt_id, label) do update set dataset_id = $3, rules = $4, updated_at = $5",
                )
                .bind(prompt_row.id)
                .bind(label.as_str())
                .bind(dataset_id)
                .bind(Json(rules))
                .bind(at)
                .execute(&mut *tx)
                .await?;
                Self::audit(&mut tx, project, actor, "gate.put", &format!("prompts/{prompt}/gates/{label}"), None,
                    Some(json!({"dataset": dataset, "rules": rules}))).await?;
                tx.commit().await?;
                self.find_gate(project, prompt, label.as_str()).await?.ok_or_else(|| StoreError::PromptNotFound(prompt.to_string()))
            }

            async fn find_gate(&self, project: ProjectId, prompt: &PromptName, label: &str) -> StoreResult<Option<Gate>> {
                Ok(sqlx::query_as(&format!(
                    "{GATE_SELECT} join prompt p on p.id = g.prompt_id \
                     where p.project_id = $1 and p.name = $2 and g.label = $3"
                ))
                .bind(project)
                .bind(prompt.as_str())
                .bind(label)
                .fetch_optional(self.reader())
                .await?)
            }

            async fn list_gates(&self, project: ProjectId, prompt: &PromptName) -> StoreResult<Vec<Gate>> {
                let mut conn = self.reader().acquire().await?;
                Self::prompt_row(&mut conn, project, prompt, false).await?;
                Ok(sqlx::query_as(&format!(
                    "{GATE_SELECT} join prompt p on p.id = g.prompt_id \
                     where p.project_id = $1 and p.name = $2 order by g.label"
                ))
                .bind(project)
                .bind(prompt.as_str())
                .fetch_all(&mut *conn)
                .await?)
            }

            async fn delete_gate(&self, project: ProjectId, prompt: &PromptName, label: &LabelName, actor: &Actor) -> StoreResult<bool> {
                let mut tx = self.writer().begin().await?;
                let prompt_row = Self::prompt_row(&mut tx, project, prompt, false).await?;
                let deleted = sqlx::query("delete from gate where prompt_id = $1 and label = $2")
                    .bind(prompt_row.id)
                    .bind(label.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected() == 1;
                if deleted {
                    Self::audit(&mut tx, project, actor, "gate.delete", &format!("prompts/{prompt}/gates/{label}"), None, None).await?;
                }
                tx.commit().await?;
                Ok(deleted)
            }
        }
        }
    };
}

pub(crate) use impl_sql;
