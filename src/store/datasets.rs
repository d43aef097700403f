//! Datasets and their items: uploads append in one transaction, and the
//! worker reads items back by position.

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
    async fn list_datasets(
        &self,
        project: ProjectId,
        page: PageRequest,
    ) -> StoreResult<Page<Dataset>>;
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
