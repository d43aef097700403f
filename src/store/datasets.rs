//! Datasets and their items: uploads append in one transaction, and the
//! worker reads items back by position.
//! `DatasetStore`, then `impl_sql!`, its SQL for both backends.

use async_trait::async_trait;
use uuid::Uuid;

use super::{PageRequest, StoreResult};
use crate::domain::auth::Actor;
use crate::domain::{Dataset, DatasetItem, Page, ProjectId, PromptName};

#[async_trait]
pub trait DatasetStore: Send + Sync {
    async fn insert_dataset(
        &self,
        project: ProjectId,
        name: &PromptName,
        description: &str,
        actor: &Actor,
    ) -> StoreResult<Dataset>;
    async fn get_dataset(&self, project: ProjectId, name: &str) -> StoreResult<Dataset>;
    /// Newest first; archived ones only when `include_archived`.
    async fn list_datasets(
        &self,
        project: ProjectId,
        include_archived: bool,
        page: PageRequest,
    ) -> StoreResult<Page<Dataset>>;
    /// Renames, describes, archives or restores dataset `name`, audited, in
    /// one transaction; a name another dataset has is
    /// [`StoreError::DatasetExists`](super::StoreError::DatasetExists).
    async fn update_dataset(
        &self,
        project: ProjectId,
        name: &str,
        patch: DatasetPatch,
        actor: &Actor,
    ) -> StoreResult<Dataset>;
    /// Deletes dataset `name` and its items, audited, unless an evaluation,
    /// an optimization or a gate uses it
    /// ([`StoreError::DatasetInUse`](super::StoreError::DatasetInUse)).
    async fn delete_dataset(
        &self,
        project: ProjectId,
        name: &str,
        actor: &Actor,
    ) -> StoreResult<()>;
    /// Appends every item the stream yields, in one transaction: an item
    /// error (or any failure) keeps none of them. Answers the dataset after.
    async fn append_items(
        &self,
        project: ProjectId,
        name: &str,
        items: ItemBatches<'_>,
        actor: &Actor,
    ) -> StoreResult<Dataset>;
    /// Items in upload order, after `page.after` (a `seq`).
    async fn list_items(
        &self,
        project: ProjectId,
        name: &str,
        page: PageRequest,
    ) -> StoreResult<Page<DatasetItem>>;
    /// Items of a dataset by id with `after < seq <= up_to`, in order (for the worker).
    async fn list_items_for_run(
        &self,
        dataset_id: Uuid,
        after: i64,
        up_to: i64,
        limit: u32,
    ) -> StoreResult<Vec<DatasetItem>>;
}

/// What a dataset update changes; `None` keeps the field as it is.
#[derive(Debug, Clone, Default)]
pub struct DatasetPatch {
    pub name: Option<PromptName>,
    pub description: Option<String>,
    /// `true` archives, `false` restores.
    pub archived: Option<bool>,
}

/// What keeps a dataset from being deleted: everything that refers to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetUse {
    pub dataset: String,
    /// Ids of the evaluations that ran on it, oldest first.
    pub evaluations: Vec<Uuid>,
    pub optimizations: Vec<Uuid>,
    /// `prompt:label` of each gate that requires it.
    pub gates: Vec<String>,
}

impl std::fmt::Display for DatasetUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        /// Names at most this many of each kind, then how many more there are.
        const NAMED: usize = 10;
        fn list<T: std::fmt::Display>(kind: &str, items: &[T]) -> Option<String> {
            if items.is_empty() {
                return None;
            }
            let plural = if items.len() == 1 { "" } else { "s" };
            let mut named: Vec<String> =
                items.iter().take(NAMED).map(ToString::to_string).collect();
            if items.len() > NAMED {
                named.push(format!("and {} more", items.len() - NAMED));
            }
            Some(format!(
                "{} {kind}{plural} ({})",
                items.len(),
                named.join(", ")
            ))
        }
        let uses: Vec<String> = [
            list("evaluation", &self.evaluations),
            list("optimization", &self.optimizations),
            list("gate", &self.gates),
        ]
        .into_iter()
        .flatten()
        .collect();
        write!(
            f,
            "dataset {:?} is used by {}; archive it instead (PATCH with {{\"archived\": true}})",
            self.dataset,
            uses.join(", ")
        )
    }
}

/// Why an uploaded item was refused: where (`item` is 1-based, `line` when
/// the format has lines) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("item {item}{}: {message}", .line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct ItemError {
    pub item: u64,
    pub line: Option<u64>,
    pub message: String,
}

/// Batches of items as an upload streams them in.
pub type ItemBatches<'a> =
    futures::stream::BoxStream<'a, Result<Vec<crate::domain::NewItem>, ItemError>>;

/// `DatasetStore` in portable SQL for backend `$store` on database `$db` (see
/// `sql::impl_store!`).
macro_rules! impl_sql {
    ($store:ident, $db:ty, $backend:literal) => {
        use serde_json::json;
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::domain::auth::Actor;
        use crate::domain::{Dataset, DatasetItem, Page, ProjectId, PromptName};
        use crate::store::rows::{DATASET_SELECT, ITEM_SELECT};
        use crate::store::{
            is_unique_violation, now, page_from_overfetch, DatasetPatch, DatasetStore, DatasetUse,
            ItemBatches, PageKey, PageRequest, StoreError, StoreResult,
        };

        use super::$store;

        type Conn = <$db as sqlx::Database>::Connection;

        impl $store {
            /// Dataset `name` of `project`, locked until commit when `lock`.
            async fn dataset(conn: &mut Conn, project: ProjectId, name: &str, lock: bool) -> StoreResult<Dataset> {
                let select = format!("{DATASET_SELECT} where d.project_id = $1 and d.name = $2");
                Self::find_in_project(conn, &select, project, name.to_owned(), lock)
                    .await?
                    .ok_or_else(|| StoreError::DatasetNotFound(name.to_owned()))
            }

            /// Items of a dataset with `after < seq <= up_to`, in order.
            async fn items(&self, dataset_id: Uuid, after: i64, up_to: i64, limit: i64) -> StoreResult<Vec<DatasetItem>> {
                Ok(sqlx::query_as(&format!(
                    "{ITEM_SELECT} where dataset_id = $1 and seq > $2 and seq <= $3 order by seq limit $4"
                ))
                .bind(dataset_id)
                .bind(after)
                .bind(up_to)
                .bind(limit)
                .fetch_all(self.reader())
                .await?)
            }
        }

        crate::store::sql::observed_impl! {
        impl DatasetStore for $store as $backend {
            async fn insert_dataset(
                &self,
                project: ProjectId,
                name: &PromptName,
                description: &str,
                actor: &Actor,
            ) -> StoreResult<Dataset> {
                let at = now();
                let dataset = Dataset {
                    id: Uuid::now_v7(),
                    project_id: project,
                    name: name.to_string(),
                    description: description.to_owned(),
                    item_count: 0,
                    archived: false,
                    created_at: at,
                    updated_at: at,
                };
                let mut tx = self.writer().begin().await?;
                sqlx::query(
                    "insert into dataset (id, project_id, name, description, item_count, created_at, updated_at) \
                     values ($1, $2, $3, $4, 0, $5, $5)",
                )
                .bind(dataset.id)
                .bind(project)
                .bind(&dataset.name)
                .bind(&dataset.description)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(|e| if is_unique_violation(&e) { StoreError::DatasetExists(dataset.name.clone()) } else { e.into() })?;
                Self::audit(&mut tx, project, actor, "dataset.create", &format!("datasets/{name}"), None,
                    Some(json!({"name": dataset.name, "description": dataset.description}))).await?;
                tx.commit().await?;
                Ok(dataset)
            }

            async fn get_dataset(&self, project: ProjectId, name: &str) -> StoreResult<Dataset> {
                let mut conn = self.reader().acquire().await?;
                Self::dataset(&mut conn, project, name, false).await
            }

            async fn list_datasets(&self, project: ProjectId, include_archived: bool, page: PageRequest) -> StoreResult<Page<Dataset>> {
                let unarchived = if include_archived { "" } else { " and d.archived_at is null" };
                let items: Vec<Dataset> = sqlx::query_as(&format!(
                    "{DATASET_SELECT} where d.project_id = $1 and d.id < $2{unarchived} order by d.id desc limit $3"
                ))
                .bind(project)
                .bind(page.after_id().unwrap_or(Uuid::max()))
                .bind(page.overfetch())
                .fetch_all(self.reader())
                .await?;
                Ok(page_from_overfetch(items, page.limit, |d| PageKey::Id(d.id)))
            }

            async fn update_dataset(&self, project: ProjectId, name: &str, patch: DatasetPatch, actor: &Actor) -> StoreResult<Dataset> {
                crate::store::annotate("promptreg.dataset", &name);
                let mut tx = self.writer().begin().await?;
                let before = Self::dataset(&mut tx, project, name, true).await?;
                let new_name = patch.name.map_or_else(|| before.name.clone(), |n| n.to_string());
                let description = patch.description.unwrap_or_else(|| before.description.clone());
                // Archiving again keeps the first time it was archived.
                let archived_at = match patch.archived {
                    None => "archived_at",
                    Some(true) => "coalesce(archived_at, $3)",
                    Some(false) => "null",
                };
                sqlx::query(&format!(
                    "update dataset set name = $1, description = $2, updated_at = $3, archived_at = {archived_at} where id = $4"
                ))
                .bind(&new_name)
                .bind(&description)
                .bind(now())
                .bind(before.id)
                .execute(&mut *tx)
                .await
                .map_err(|e| if is_unique_violation(&e) { StoreError::DatasetExists(new_name.clone()) } else { e.into() })?;
                let after = Self::dataset(&mut tx, project, &new_name, false).await?;
                let action = match (before.archived, after.archived) {
                    (false, true) => "dataset.archive",
                    (true, false) => "dataset.restore",
                    _ if before.name != after.name => "dataset.rename",
                    _ => "dataset.update",
                };
                let state = |d: &Dataset| json!({"name": d.name, "description": d.description, "archived": d.archived});
                Self::audit(&mut tx, project, actor, action, &format!("datasets/{}", after.name),
                    Some(state(&before)), Some(state(&after))).await?;
                tx.commit().await?;
                Ok(after)
            }

            async fn delete_dataset(&self, project: ProjectId, name: &str, actor: &Actor) -> StoreResult<()> {
                crate::store::annotate("promptreg.dataset", &name);
                let mut tx = self.writer().begin().await?;
                // Locked: an evaluation queued meanwhile waits, then finds it gone.
                let dataset = Self::dataset(&mut tx, project, name, true).await?;
                let evaluations: Vec<Uuid> = sqlx::query_scalar("select id from evaluation where dataset_id = $1 order by id")
                    .bind(dataset.id)
                    .fetch_all(&mut *tx)
                    .await?;
                let optimizations: Vec<Uuid> = sqlx::query_scalar("select id from optimization where dataset_id = $1 order by id")
                    .bind(dataset.id)
                    .fetch_all(&mut *tx)
                    .await?;
                let gates: Vec<(String, String)> = sqlx::query_as(
                    "select p.name, g.label from gate g join prompt p on p.id = g.prompt_id \
                     where g.dataset_id = $1 order by p.name, g.label",
                )
                .bind(dataset.id)
                .fetch_all(&mut *tx)
                .await?;
                if !(evaluations.is_empty() && optimizations.is_empty() && gates.is_empty()) {
                    return Err(StoreError::DatasetInUse(DatasetUse {
                        dataset: dataset.name,
                        evaluations,
                        optimizations,
                        gates: gates.into_iter().map(|(prompt, label)| format!("{prompt}:{label}")).collect(),
                    }));
                }
                sqlx::query("delete from dataset_item where dataset_id = $1")
                    .bind(dataset.id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("delete from dataset where id = $1")
                    .bind(dataset.id)
                    .execute(&mut *tx)
                    .await?;
                Self::audit(&mut tx, project, actor, "dataset.delete", &format!("datasets/{}", dataset.name),
                    Some(json!({"name": dataset.name, "description": dataset.description,
                                "item_count": dataset.item_count, "archived": dataset.archived})), None).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn append_items(
                &self,
                project: ProjectId,
                name: &str,
                items: ItemBatches<'_>,
                actor: &Actor,
            ) -> StoreResult<Dataset> {
                crate::store::annotate("promptreg.dataset", &name);
                use futures::StreamExt;
                let mut items = items;
                let mut tx = self.writer().begin().await?;
                let dataset = Self::dataset(&mut tx, project, name, true).await?;
                if dataset.archived {
                    return Err(StoreError::DatasetArchived(dataset.name));
                }
                let mut seq = dataset.item_count;
                let at = now();
                while let Some(batch) = items.next().await {
                    let batch = batch.map_err(StoreError::InvalidItem)?;
                    // Bounded statements: SQLite allows at most 32,766 bound values.
                    for chunk in batch.chunks(1000) {
                        let mut qb = sqlx::QueryBuilder::<$db>::new(
                            "insert into dataset_item (id, dataset_id, seq, input, expected, metadata, created_at) ",
                        );
                        qb.push_values(chunk, |mut row, item| {
                            seq += 1;
                            row.push_bind(Uuid::now_v7())
                                .push_bind(dataset.id)
                                .push_bind(seq)
                                .push_bind(Json(item.input.clone()))
                                .push_bind(item.expected.clone().map(Json))
                                .push_bind(Json(item.metadata.clone()))
                                .push_bind(at);
                        });
                        qb.build().execute(&mut *tx).await?;
                    }
                }
                let added = seq - dataset.item_count;
                sqlx::query("update dataset set item_count = $1, updated_at = $2 where id = $3")
                    .bind(seq)
                    .bind(at)
                    .bind(dataset.id)
                    .execute(&mut *tx)
                    .await?;
                Self::audit(&mut tx, project, actor, "dataset.append_items", &format!("datasets/{name}"),
                    Some(json!({"item_count": dataset.item_count})), Some(json!({"item_count": seq, "added": added}))).await?;
                tx.commit().await?;
                Ok(Dataset { item_count: seq, updated_at: at, ..dataset })
            }

            async fn list_items(&self, project: ProjectId, name: &str, page: PageRequest) -> StoreResult<Page<DatasetItem>> {
                let dataset = self.get_dataset(project, name).await?;
                let after = page.after_int().unwrap_or(0);
                let items = self.items(dataset.id, after, i64::MAX, page.overfetch()).await?;
                Ok(page_from_overfetch(items, page.limit, |i| PageKey::Int(i.seq)))
            }

            async fn list_items_for_run(&self, dataset_id: Uuid, after: i64, up_to: i64, limit: u32) -> StoreResult<Vec<DatasetItem>> {
                self.items(dataset_id, after, up_to, i64::from(limit)).await
            }
        }
        }
    };
}

pub(crate) use impl_sql;
