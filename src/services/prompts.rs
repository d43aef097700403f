//! Reading prompts whole: every prompt or version of a listing (for clients
//! that page by number rather than by cursor), a version by its number, and
//! a version as a client that renders templates itself needs it (registry
//! partials written out inline).

use std::sync::Arc;

use crate::domain::content::PromptBody;
use crate::domain::jobs::Gate;
use crate::domain::{
    Label, LabelMove, LabelName, Page, ProjectId, PromptName, PromptSummary, Version,
};
use crate::store::{cursor, PageKey, PageRequest, PromptFilter, StoreError};

use super::render::Renderer;
use super::{Registry, ServiceError, ServiceResult};

/// Rows read per page while walking a whole listing.
const WALK_PAGE: u32 = 100;

/// Every prompt `filter` matches, newest first.
pub async fn all_prompts(
    registry: &Registry,
    project: ProjectId,
    filter: &PromptFilter,
) -> ServiceResult<Vec<PromptSummary>> {
    walk(|page| registry.list_prompts(project, filter, page)).await
}

/// Every version of `name`, newest first.
pub async fn all_versions(
    registry: &Registry,
    project: ProjectId,
    name: &PromptName,
) -> ServiceResult<Vec<Version>> {
    walk(|page| registry.list_versions(project, name, page)).await
}

async fn walk<T, F, Fut>(mut list: F) -> ServiceResult<Vec<T>>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, StoreError>>,
{
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let found = list(PageRequest {
            limit: WALK_PAGE,
            after,
        })
        .await?;
        all.extend(found.items);
        match found.next_cursor.and_then(|c| cursor::decode(&c)) {
            Some(next) => after = Some(next),
            None => return Ok(all),
        }
    }
}

/// Version number `seq` (1, 2, 3… in order of creation) of `name`.
pub async fn version_by_seq(
    registry: &Registry,
    project: ProjectId,
    name: &PromptName,
    seq: i64,
) -> ServiceResult<Arc<Version>> {
    // The first version below `seq + 1`, newest first, is `seq` if it exists.
    let page = PageRequest {
        limit: 1,
        after: Some(PageKey::Int(seq.saturating_add(1))),
    };
    let found = registry.list_versions(project, name, page).await?;
    found
        .items
        .into_iter()
        .find(|v| v.seq == seq)
        .map(Arc::new)
        .ok_or_else(|| {
            ServiceError::Store(StoreError::VersionNotFound {
                prompt: name.to_string(),
                reference: seq.to_string(),
            })
        })
}

/// A version with its prompt, and its body with registry partials written
/// out inline (taken at `label` first when the version was fetched through
/// one, as a render would).
pub struct Published {
    pub summary: PromptSummary,
    pub body: PromptBody,
}

pub async fn published(
    registry: &Registry,
    renderer: &Renderer,
    project: ProjectId,
    version: &Version,
    label: Option<&LabelName>,
) -> ServiceResult<Published> {
    let name = PromptName::parse(&version.prompt_name)
        .map_err(|e| ServiceError::Internal(anyhow::anyhow!("stored prompt name: {e}")))?;
    let summary = registry.get_prompt(project, &name).await?;
    let body = renderer.inline_partials(project, version, label).await?;
    Ok(Published { summary, body })
}

/// A prompt as its page shows it: the prompt, a page of its versions
/// (newest first), each label with its recent moves and its gate, and the
/// gates of labels not set yet.
pub struct Overview {
    pub summary: PromptSummary,
    pub versions: Page<Version>,
    pub labels: Vec<LabelState>,
    /// Gates on labels that point nowhere yet.
    pub unset_gates: Vec<Gate>,
}

pub struct LabelState {
    pub label: Label,
    /// Newest first, at most [`HISTORY_SHOWN`].
    pub history: Vec<LabelMove>,
    pub gate: Option<Gate>,
}

/// Label moves an overview shows per label.
pub const HISTORY_SHOWN: u32 = 10;

/// [`Overview`] of `name`: a fixed number of store calls plus one per label.
pub async fn overview(
    registry: &Registry,
    project: ProjectId,
    name: &PromptName,
    versions: PageRequest,
) -> ServiceResult<Overview> {
    let summary = registry.get_prompt(project, name).await?;
    let versions = registry.list_versions(project, name, versions).await?;
    let labels = registry.list_labels(project, name).await?;
    let mut gates = registry.store.list_gates(project, name).await?;
    let mut states = Vec::with_capacity(labels.len());
    for label in labels {
        let label_name = LabelName::parse(&label.name)
            .map_err(|e| ServiceError::Internal(anyhow::anyhow!("stored label name: {e}")))?;
        let history = registry
            .store
            .list_label_moves(
                project,
                name,
                &label_name,
                PageRequest {
                    limit: HISTORY_SHOWN,
                    after: None,
                },
            )
            .await?
            .items;
        let gate = gates
            .iter()
            .position(|g| g.label == label.name)
            .map(|i| gates.remove(i));
        states.push(LabelState {
            label,
            history,
            gate,
        });
    }
    Ok(Overview {
        summary,
        versions,
        labels: states,
        unset_gates: gates,
    })
}

/// A page of the prompts `filter` matches, newest first, each with its
/// labels and latest version (two store calls, whatever the registry's size).
pub async fn list_prompts(
    registry: &Registry,
    project: ProjectId,
    filter: &PromptFilter,
    page: PageRequest,
) -> ServiceResult<Page<PromptSummary>> {
    Ok(registry.list_prompts(project, filter, page).await?)
}
