//! Posting content: a new version (numbered, hashed and labelled in one
//! transaction), and the create-or-append flow of clients that make the
//! prompt on their first post. A prompt keeps its type (text or chat) from
//! version to version unless the caller asks for the change.

use crate::domain::auth::Actor;
use crate::domain::content::PromptType;
use crate::domain::names::LATEST;
use crate::domain::{LabelName, ProjectId, PromptName, VersionRef};
use crate::store::{CreatedVersion, NewPrompt, NewVersion, PromptPatch, StoreError};

use super::render::Renderer;
use super::{labels, Registry, ServiceError, ServiceResult};

/// Creates a version of an existing prompt. Labels it sets pass their gates
/// first (a new version has no evaluation, so a gated label refuses it).
/// A version of another type than the latest needs `allow_type_change`.
pub async fn create_version(
    registry: &Registry,
    renderer: &Renderer,
    project: ProjectId,
    actor: &Actor,
    name: &PromptName,
    mut new: NewVersion,
    allow_type_change: bool,
) -> ServiceResult<CreatedVersion> {
    new.variables =
        check_version(registry, renderer, project, name, &new, allow_type_change).await?;
    Ok(registry
        .changed(registry.store.create_version(project, name, new, actor))
        .await?)
}

/// Everything [`create_version`] checks before it writes, and nothing
/// written: the gates of the labels it would set, the prompt's type, the
/// templates' syntax, partials and schemas. Answers the variables the
/// content reads.
pub async fn check_version(
    registry: &Registry,
    renderer: &Renderer,
    project: ProjectId,
    name: &PromptName,
    new: &NewVersion,
    allow_type_change: bool,
) -> ServiceResult<Vec<String>> {
    for label in &new.labels {
        labels::check_gate(registry, project, name, label, None).await?;
    }
    if !allow_type_change {
        check_type(registry, project, name, new.content.prompt_type()).await?;
    }
    Ok(renderer
        .check_new_content(project, name, &new.content)
        .await?)
}

/// Creates a version, and the prompt first if it does not exist yet; `tags`
/// replace the prompt's when given. The new version must be of the same type
/// as the prompt's latest. Everything is checked before anything is written.
#[allow(clippy::too_many_arguments)]
pub async fn publish(
    registry: &Registry,
    renderer: &Renderer,
    project: ProjectId,
    actor: &Actor,
    name: &PromptName,
    new: NewVersion,
    tags: Option<Vec<String>>,
    allow_type_change: bool,
) -> ServiceResult<CreatedVersion> {
    for label in &new.labels {
        labels::check_gate(registry, project, name, label, None).await?;
    }
    let existing = match registry.get_prompt(project, name).await {
        Ok(summary) => Some(summary),
        Err(StoreError::PromptNotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(summary) = &existing {
        if summary.prompt.archived {
            return Err(ServiceError::Store(StoreError::PromptArchived(
                name.to_string(),
            )));
        }
        if summary.latest_version.is_some() && !allow_type_change {
            check_type(registry, project, name, new.content.prompt_type()).await?;
        }
    }
    let variables = renderer
        .check_new_content(project, name, &new.content)
        .await?;
    match &existing {
        None => {
            let prompt = NewPrompt {
                name: name.clone(),
                description: String::new(),
                tags: tags.unwrap_or_default(),
            };
            // A concurrent create of the same prompt is as good as ours.
            match registry.create_prompt(project, prompt, actor).await {
                Ok(_) | Err(StoreError::PromptExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Some(summary) => {
            if let Some(tags) = tags.filter(|t| *t != summary.prompt.tags) {
                let patch = PromptPatch {
                    tags: Some(tags),
                    ..PromptPatch::default()
                };
                registry.update_prompt(project, name, patch, actor).await?;
            }
        }
    }
    let new = NewVersion { variables, ..new };
    Ok(registry
        .changed(registry.store.create_version(project, name, new, actor))
        .await?)
}

/// Refuses a version of type `is` unless the prompt's latest version has that
/// type too (or the prompt has none yet).
async fn check_type(
    registry: &Registry,
    project: ProjectId,
    name: &PromptName,
    is: PromptType,
) -> ServiceResult<()> {
    let latest =
        LabelName::parse(LATEST).map_err(|e| ServiceError::Internal(anyhow::anyhow!("{e}")))?;
    let was = match registry
        .get_version(project, name, &VersionRef::Label(latest))
        .await
    {
        Ok(latest) => latest.content.prompt_type(),
        // No version yet: the first one sets the type.
        Err(StoreError::VersionNotFound { .. } | StoreError::LabelNotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if was == is {
        return Ok(());
    }
    Err(ServiceError::TypeMismatch {
        prompt: name.to_string(),
        was,
        is,
    })
}
