//! Datasets and their items in portable SQL: `impl_dataset_store!`
//! implements `DatasetStore` for a backend.

macro_rules! impl_dataset_store {
    ($store:ident, $db:ty, $backend:literal) => {
        use serde_json::json;
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::domain::auth::Actor;
        use crate::domain::{Dataset, DatasetItem, Page, ProjectId, PromptName};
        use crate::store::rows::{DatasetItemRow, DatasetRow, DATASET_SELECT};
        use crate::store::{
            is_unique_violation, now, page_from_overfetch, DatasetStore, ItemBatches, PageKey,
            PageRequest, StoreError, StoreResult,
        };

        use super::$store;

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
                sqlx::query_as::<_, DatasetRow>(&format!("{DATASET_SELECT} where d.project_id = $1 and d.name = $2"))
                    .bind(project)
                    .bind(name)
                    .fetch_optional(self.reader())
                    .await?
                    .map(Dataset::from)
                    .ok_or_else(|| StoreError::DatasetNotFound(name.to_owned()))
            }

            async fn list_datasets(&self, project: ProjectId, page: PageRequest) -> StoreResult<Page<Dataset>> {
                let before = match page.after {
                    Some(PageKey::Id(id)) => id,
                    _ => Uuid::max(),
                };
                let items: Vec<Dataset> = sqlx::query_as::<_, DatasetRow>(&format!(
                    "{DATASET_SELECT} where d.project_id = $1 and d.id < $2 order by d.id desc limit $3"
                ))
                .bind(project)
                .bind(before)
                .bind(i64::from(page.limit) + 1)
                .fetch_all(self.reader())
                .await?
                .into_iter()
                .map(Dataset::from)
                .collect();
                Ok(page_from_overfetch(items, page.limit, |d| PageKey::Id(d.id)))
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
                let dataset: Dataset = sqlx::query_as::<_, DatasetRow>(&format!(
                    "{DATASET_SELECT} where d.project_id = $1 and d.name = $2{}", Self::LOCK_ROW
                ))
                .bind(project)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .map(Dataset::from)
                .ok_or_else(|| StoreError::DatasetNotFound(name.to_owned()))?;
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
                let after = match page.after {
                    Some(PageKey::Int(seq)) => seq,
                    _ => 0,
                };
                let items: Vec<DatasetItem> = sqlx::query_as::<_, DatasetItemRow>(
                    "select id, seq, input, expected, metadata, created_at from dataset_item \
                     where dataset_id = $1 and seq > $2 order by seq limit $3",
                )
                .bind(dataset.id)
                .bind(after)
                .bind(i64::from(page.limit) + 1)
                .fetch_all(self.reader())
                .await?
                .into_iter()
                .map(DatasetItem::from)
                .collect();
                Ok(page_from_overfetch(items, page.limit, |i| PageKey::Int(i.seq)))
            }

            async fn list_items_for_run(&self, dataset_id: Uuid, after: i64, up_to: i64, limit: u32) -> StoreResult<Vec<DatasetItem>> {
                let rows: Vec<DatasetItemRow> = sqlx::query_as(
                    "select id, seq, input, expected, metadata, created_at from dataset_item \
                     where dataset_id = $1 and seq > $2 and seq <= $3 order by seq limit $4",
                )
                .bind(dataset_id)
                .bind(after)
                .bind(up_to)
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?;
                Ok(rows.into_iter().map(DatasetItem::from).collect())
            }
        }
        }
    };
}

pub(crate) use impl_dataset_store;
