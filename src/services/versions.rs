//! Posting content: a new version (numbered, hashed and labelled in one
//! transaction), and the create-or-append flow of clients that make the
//! prompt on their first post.

use crate::domain::auth::Actor;
use crate::domain::names::LATEST;
use crate::domain::{LabelName, ProjectId, PromptName, VersionRef};
use crate::store::{CreatedVersion, NewPrompt, NewVersion, PromptPatch, StoreError};

use super::render::Renderer;
use super::{labels, Registry, ServiceError, ServiceResult};

/// Creates a version of an existing prompt. Labels it sets pass their gates
/// first (a new version has no evaluation, so a gated label refuses it).
pub async fn create_version(
    registry: &Registry,
    renderer: &Renderer,
    project: ProjectId,
    actor: &Actor,
    name: &PromptName,
    mut new: NewVersion,
) -> ServiceResult<CreatedVersion> {
    for label in &new.labels {
        labels::check_gate(registry, project, name, label, None).await?;
    }
    new.variables = renderer
        .check_new_content(project, name, &new.content)
        .await?;
    Ok(registry
        .changed(registry.store.create_version(project, name, new, actor))
        .await?)
}

/// Creates a version, and the prompt first if it does not exist yet; `tags`
/// replace the prompt's when given. The new version must be of the same type
/// as the prompt's latest. Everything is checked before anything is written.
pub async fn publish(
    registry: &Registry,
    renderer: &Renderer,
    project: ProjectId,
    actor: &Actor,
    name: &PromptName,
    new: NewVersion,
    tags: Option<Vec<String>>,
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
        if summary.latest_version.is_some() {
            let latest = LabelName::parse(LATEST)
                .map_err(|e| ServiceError::Internal(anyhow::anyhow!("{e}")))?;
            let latest = registry
                .get_version(project, name, &VersionRef::Label(latest))
                .await?;
            let (was, is) = (latest.content.prompt_type(), new.content.prompt_type());
            if was != is {
                return Err(ServiceError::validation(
                    "type",
                    format!(
                        "prompt {:?} is a {} prompt; a {} version cannot be added",
                        name.as_str(),
                        was.as_str(),
                        is.as_str()
                    ),
                ));
            }
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
