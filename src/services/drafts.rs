//! Editing in a browser: the latest version to start a draft from, a draft
//! saved (or refused because someone else saved first, with what landed),
//! a new prompt with its first version, and two versions compared line by
//! line and word by word. Saving goes through [`versions::create_version`],
//! so a draft meets every rule a `/v1` post meets.

use std::sync::Arc;

use crate::domain::auth::Actor;
use crate::domain::content::{diff_contents, diff_text_blocks, ChangedField, DiffBlock};
use crate::domain::names::LATEST;
use crate::domain::{Label, LabelName, ProjectId, PromptName, Version, VersionRef};
use crate::store::{CreatedVersion, NewPrompt, NewVersion, PageRequest, StoreError};

use super::render::Renderer;
use super::{versions, Registry, ServiceError, ServiceResult};

/// Versions offered to pick from when comparing.
const CHOICES: u32 = 50;

fn latest_ref() -> ServiceResult<VersionRef> {
    LabelName::parse(LATEST)
        .map(VersionRef::Label)
        .map_err(|e| ServiceError::Internal(anyhow::anyhow!("{e}")))
}

/// The latest version of `name`, or `None` while it has none.
pub async fn latest(
    registry: &Registry,
    project: ProjectId,
    name: &PromptName,
) -> ServiceResult<Option<Arc<Version>>> {
    match registry.get_version(project, name, &latest_ref()?).await {
        Ok(version) => Ok(Some(version)),
        Err(StoreError::VersionNotFound { .. } | StoreError::LabelNotFound { .. }) => {
            // The prompt must exist, even without a version.
            registry.get_prompt(project, name).await?;
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// How two versions differ: the fields, then the template or messages.
pub struct Changes {
    pub fields: Vec<ChangedField>,
    pub blocks: Vec<DiffBlock>,
}

impl Changes {
    pub fn between(from: &Version, to: &Version) -> Self {
        let label = |v: &Version| format!("{}@{}", v.prompt_name, v.version);
        Self {
            fields: diff_contents(&from.content, &to.content, &label(from), &label(to)).changes,
            blocks: diff_text_blocks(&from.content, &to.content),
        }
    }
}

/// What saving a draft did.
pub enum Saved {
    /// A new version, or the latest one when the draft equalled it.
    Version(Box<CreatedVersion>),
    /// Someone saved `landed` after the draft was started from `base`;
    /// nothing was written.
    Conflict {
        landed: Arc<Version>,
        base: Option<Arc<Version>>,
        changes: Option<Changes>,
    },
}

/// Saves a draft started from the version `new.expected_latest` names, as
/// [`versions::create_version`] does; when another version landed since,
/// answers what landed and how it differs from the draft's base instead.
pub async fn save(
    registry: &Registry,
    renderer: &Renderer,
    project: ProjectId,
    actor: &Actor,
    name: &PromptName,
    new: NewVersion,
) -> ServiceResult<Saved> {
    let expected = new.expected_latest.clone();
    let err = match versions::create_version(registry, renderer, project, actor, name, new, false)
        .await
    {
        Ok(created) => return Ok(Saved::Version(Box::new(created))),
        Err(err @ ServiceError::Store(StoreError::VersionConflict(_))) => err,
        Err(err) => return Err(err),
    };
    let Some(expected) = expected else {
        return Err(err);
    };
    let Some(landed) = latest(registry, project, name).await? else {
        return Err(err);
    };
    if Some(&landed.version) == expected.as_ref() {
        return Err(err);
    }
    let base = match &expected {
        Some(v) => Some(
            registry
                .get_version(project, name, &VersionRef::Exact(v.clone()))
                .await?,
        ),
        None => None,
    };
    let changes = base.as_deref().map(|base| Changes::between(base, &landed));
    Ok(Saved::Conflict {
        landed,
        base,
        changes,
    })
}

/// Creates prompt `new` with its first version `first`, checking the
/// version before anything is written.
pub async fn create_prompt(
    registry: &Registry,
    renderer: &Renderer,
    project: ProjectId,
    actor: &Actor,
    new: NewPrompt,
    first: NewVersion,
) -> ServiceResult<CreatedVersion> {
    let name = new.name.clone();
    // A prompt that does not exist yet has no type or partial of its own to check against.
    versions::check_version(registry, renderer, project, &name, &first, true).await?;
    registry.create_prompt(project, new, actor).await?;
    let first = NewVersion {
        expected_latest: Some(None),
        ..first
    };
    versions::create_version(registry, renderer, project, actor, &name, first, false).await
}

/// Two versions compared, with the versions and labels one may pick instead.
pub struct Comparison {
    pub from: Arc<Version>,
    pub to: Arc<Version>,
    pub changes: Changes,
    /// The newest versions, newest first.
    pub versions: Vec<Version>,
    pub labels: Vec<Label>,
}

/// `from` against `to`; `to` defaults to the latest version and `from` to
/// `to`'s parent (`to` itself when it has none).
pub async fn compare(
    registry: &Registry,
    project: ProjectId,
    name: &PromptName,
    from: Option<VersionRef>,
    to: Option<VersionRef>,
) -> ServiceResult<Comparison> {
    let to = match to {
        Some(reference) => reference,
        None => latest_ref()?,
    };
    let to = registry.get_version(project, name, &to).await?;
    let from = match (from, &to.parent) {
        (Some(reference), _) => registry.get_version(project, name, &reference).await?,
        (None, Some(parent)) => {
            registry
                .get_version(project, name, &VersionRef::Exact(parent.clone()))
                .await?
        }
        (None, None) => Arc::clone(&to),
    };
    let versions = registry
        .list_versions(
            project,
            name,
            PageRequest {
                limit: CHOICES,
                after: None,
            },
        )
        .await?
        .items;
    let labels = registry.list_labels(project, name).await?;
    Ok(Comparison {
        changes: Changes::between(&from, &to),
        from,
        to,
        versions,
        labels,
    })
}
