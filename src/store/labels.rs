//! Labels: named pointers to versions of a prompt. Every move is recorded
//! (who, when, from, to), so that a rollback can walk back through history.
//! `LabelStore`, then `impl_sql!`, its SQL for both backends.

use async_trait::async_trait;

use super::{PageRequest, StoreResult};
use crate::domain::auth::Actor;
use crate::domain::{Label, LabelMove, LabelName, Page, ProjectId, PromptName};

#[async_trait]
pub trait LabelStore: Send + Sync {
    async fn list_labels(&self, project: ProjectId, name: &PromptName) -> StoreResult<Vec<Label>>;
    async fn set_label(
        &self,
        project: ProjectId,
        name: &PromptName,
        label: &LabelName,
        version: &semver::Version,
        actor: &Actor,
    ) -> StoreResult<Label>;
    async fn delete_label(
        &self,
        project: ProjectId,
        name: &PromptName,
        label: &LabelName,
        actor: &Actor,
    ) -> StoreResult<Label>;
    async fn rollback_label(
        &self,
        project: ProjectId,
        name: &PromptName,
        label: &LabelName,
        actor: &Actor,
    ) -> StoreResult<Label>;
    async fn list_label_moves(
        &self,
        project: ProjectId,
        name: &PromptName,
        label: &LabelName,
        page: PageRequest,
    ) -> StoreResult<Page<LabelMove>>;
}

/// `LabelStore` in portable SQL for backend `$store` on database `$db` (see
/// `sql::impl_store!`).
macro_rules! impl_sql {
    ($store:ident, $db:ty, $backend:literal) => {
        use uuid::Uuid;

        use crate::domain::auth::Actor;
        use crate::domain::{Label, LabelMove, LabelName, Page, ProjectId, PromptName};
        use crate::store::rows::{LabelMoveRow, LabelRow, PromptRow, LABEL_MOVE_SELECT, LABEL_SELECT};
        use crate::store::{page_from_overfetch, LabelStore, PageKey, PageRequest, StoreError, StoreResult};

        use super::$store;

        type Conn = <$db as sqlx::Database>::Connection;

        impl $store {
            async fn label(conn: &mut Conn, prompt: &PromptRow, label: &str) -> StoreResult<Label> {
                let sql = format!("{LABEL_SELECT} where l.prompt_id = $1 and l.name = $2");
                sqlx::query_as::<_, LabelRow>(&sql)
                    .bind(prompt.id)
                    .bind(label)
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or_else(|| StoreError::LabelNotFound { prompt: prompt.name.clone(), label: label.to_owned() })?
                    .try_into()
            }

            /// Starts a write to `label` of prompt `name`: the prompt's row
            /// stays locked until the transaction ends, so that writes to one
            /// prompt's labels queue.
            async fn begin_label_write(
                &self,
                project: ProjectId,
                name: &PromptName,
                label: &LabelName,
            ) -> StoreResult<(sqlx::Transaction<'_, $db>, PromptRow)> {
                crate::store::annotate("promptreg.prompt", &name);
                crate::store::annotate("promptreg.label", &label);
                let mut tx = self.writer().begin().await?;
                let prompt = Self::prompt_row(&mut tx, project, name, true).await?;
                Ok((tx, prompt))
            }
        }

        crate::store::sql::observed_impl! {
        impl LabelStore for $store as $backend {
            async fn list_labels(&self, project: ProjectId, name: &PromptName) -> StoreResult<Vec<Label>> {
                crate::store::annotate("promptreg.prompt", &name);
                let mut conn = self.reader().acquire().await?;
                let prompt = Self::prompt_row(&mut conn, project, name, false).await?;
                let sql = format!("{LABEL_SELECT} where l.prompt_id = $1 order by l.name");
                let rows: Vec<LabelRow> = sqlx::query_as(&sql).bind(prompt.id).fetch_all(&mut *conn).await?;
                rows.into_iter().map(Label::try_from).collect()
            }

            async fn set_label(
                &self,
                project: ProjectId,
                name: &PromptName,
                label: &LabelName,
                version: &semver::Version,
                actor: &Actor,
            ) -> StoreResult<Label> {
                let (mut tx, prompt) = self.begin_label_write(project, name, label).await?;
                let version_id = Self::version_id_of(&mut tx, prompt.id, version)
                    .await?
                    .ok_or_else(|| StoreError::VersionNotFound { prompt: name.to_string(), reference: version.to_string() })?;
                Self::move_label(&mut tx, &prompt, label.as_str(), Some(version_id), None, "label.set", actor).await?;
                let result = Self::label(&mut tx, &prompt, label.as_str()).await?;
                tx.commit().await?;
                Ok(result)
            }

            async fn delete_label(
                &self,
                project: ProjectId,
                name: &PromptName,
                label: &LabelName,
                actor: &Actor,
            ) -> StoreResult<Label> {
                let (mut tx, prompt) = self.begin_label_write(project, name, label).await?;
                let removed = Self::label(&mut tx, &prompt, label.as_str()).await?;
                Self::move_label(&mut tx, &prompt, label.as_str(), None, None, "label.delete", actor).await?;
                tx.commit().await?;
                Ok(removed)
            }

            async fn rollback_label(
                &self,
                project: ProjectId,
                name: &PromptName,
                label: &LabelName,
                actor: &Actor,
            ) -> StoreResult<Label> {
                let (mut tx, prompt) = self.begin_label_write(project, name, label).await?;
                // The newest move that is neither a rollback nor undone by one:
                // repeated rollbacks walk back through history, like undo.
                let undoable: Option<(i64, Option<Uuid>)> = sqlx::query_as(
                    "select m.id, m.from_version_id from label_move m \
                     where m.prompt_id = $1 and m.label = $2 and m.undoes_move_id is null and m.note is null \
                     and not exists (select 1 from label_move r where r.undoes_move_id = m.id) \
                     order by m.id desc limit 1",
                )
                .bind(prompt.id)
                .bind(label.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                match undoable {
                    None if Self::current_label_target(&mut tx, prompt.id, label.as_str()).await?.is_none() => {
                        Err(StoreError::LabelNotFound { prompt: name.to_string(), label: label.to_string() })
                    }
                    None | Some((_, None)) => Err(StoreError::NoPreviousTarget { prompt: name.to_string(), label: label.to_string() }),
                    Some((move_id, Some(previous))) => {
                        Self::move_label(&mut tx, &prompt, label.as_str(), Some(previous), Some(move_id), "label.rollback", actor).await?;
                        let result = Self::label(&mut tx, &prompt, label.as_str()).await?;
                        tx.commit().await?;
                        Ok(result)
                    }
                }
            }

            async fn list_label_moves(
                &self,
                project: ProjectId,
                name: &PromptName,
                label: &LabelName,
                page: PageRequest,
            ) -> StoreResult<Page<LabelMove>> {
                crate::store::annotate("promptreg.prompt", &name);
                crate::store::annotate("promptreg.label", &label);
                let mut conn = self.reader().acquire().await?;
                let prompt = Self::prompt_row(&mut conn, project, name, false).await?;
                let sql = format!(
                    "{LABEL_MOVE_SELECT} where m.prompt_id = $1 and m.label = $2 and m.id < $3 \
                     order by m.id desc limit $4"
                );
                let rows: Vec<LabelMoveRow> = sqlx::query_as(&sql)
                    .bind(prompt.id)
                    .bind(label.as_str())
                    .bind(page.after_int().unwrap_or(i64::MAX))
                    .bind(page.overfetch())
                    .fetch_all(&mut *conn)
                    .await?;
                if rows.is_empty() && page.after.is_none() {
                    return Err(StoreError::LabelNotFound { prompt: name.to_string(), label: label.to_string() });
                }
                let items = rows.into_iter().map(LabelMove::try_from).collect::<StoreResult<Vec<_>>>()?;
                Ok(page_from_overfetch(items, page.limit, |m| PageKey::Int(m.id)))
            }
        }
        }
    };
}

pub(crate) use impl_sql;
