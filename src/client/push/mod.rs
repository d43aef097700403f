//! `promptreg push DIR`: make the server hold what the folder holds. Missing
//! prompts are created, changed content gets a new version, unchanged
//! content gets nothing (the content hash decides), and `--label` points a
//! label at every pushed prompt's current version. A prompt is pushed after
//! the prompts of the folder it includes (`{{> common/tone}}`), so that what
//! it includes exists when its version is created. A refused key (401, 403)
//! stops the push: every other file would be refused the same way.

mod order;
mod provenance;
mod report;

use std::path::Path;
use std::sync::OnceLock;

use futures::StreamExt;
use reqwest::Method;
use serde::de::IgnoredAny;
use serde_json::{json, Map, Value};

pub use provenance::{git_subject, Provenance};
pub use report::{Failure, PushReport};

use super::files::LoadedPrompt;
use super::http::{segment, Client, ClientError};
use super::remote;
use super::validate;
use crate::api::wire::{
    CreatePromptRequest, CreateVersionRequest, PromptResponse, SetLabelRequest,
    UpdatePromptRequest, VersionResponse,
};
use crate::domain::content::diff_contents;
use crate::domain::{next_version, LabelName};

#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    pub label: Option<LabelName>,
    /// The changelog entry of every new version.
    pub message: Option<String>,
    /// Recorded in every new version's metadata (git commit, branch, CI run).
    pub metadata: Map<String, Value>,
    pub dry_run: bool,
    /// Prompts pushed at once.
    pub concurrency: usize,
}

/// What happened to one prompt.
enum Outcome {
    /// A new prompt (`created`) or a new version of an existing one.
    Versioned {
        created: bool,
        version: String,
        previous: Option<String>,
        diff: Option<String>,
        label_moved: bool,
    },
    Unchanged {
        version: Option<String>,
        label_moved: bool,
    },
    /// Not tried: the push had stopped.
    NotPushed,
}

/// An error after which no other file can succeed: the key is missing,
/// refused, or lacks the scope. Each file would report it again.
fn stops_the_push(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Status {
            status: 401 | 403,
            ..
        }
    )
}

/// Pushes every prompt file under `dir`, each after the prompts of the
/// folder it includes. Every file is attempted and its problems collected in
/// the report, unless the server refuses the key: then the push stops there.
pub async fn push(
    client: &Client,
    dir: &Path,
    options: &PushOptions,
) -> std::io::Result<PushReport> {
    let checked = validate::check_dir(dir)?;
    let mut report = PushReport {
        dry_run: options.dry_run,
        ..PushReport::default()
    };
    for (path, name) in &checked.failed {
        let errors: Vec<String> = checked
            .diagnostics
            .iter()
            .filter(|d| &d.path == path && d.severity == super::files::Severity::Error)
            .map(ToString::to_string)
            .collect();
        report.failed.push(Failure {
            name: name.clone(),
            error: errors.join("\n"),
        });
    }
    if checked.prompts.is_empty() {
        return Ok(report);
    }
    let remote = match remote::list_prompts(client).await {
        Ok(remote) => remote,
        Err(e) => {
            // Nothing was tried: one reason, not one failure per file.
            report.stop(&e);
            report.failed.clear();
            return Ok(report);
        }
    };
    let stopped: OnceLock<ClientError> = OnceLock::new();
    for layer in order::push_order(&checked.prompts) {
        let outcomes: Vec<(String, Result<Outcome, ClientError>)> = futures::stream::iter(layer)
            .map(|prompt| {
                let remote = remote.get(prompt.name.as_str());
                let stopped = &stopped;
                async move {
                    let outcome = if stopped.get().is_some() {
                        Ok(Outcome::NotPushed)
                    } else {
                        push_one(client, dir, prompt, remote, options).await
                    };
                    if let Err(e) = &outcome {
                        if stops_the_push(e) {
                            let _ = stopped.set(e.clone());
                        }
                    }
                    (prompt.name.to_string(), outcome)
                }
            })
            .buffered(options.concurrency.max(1))
            .collect()
            .await;
        for (name, outcome) in outcomes {
            record(&mut report, name, outcome, options);
        }
    }
    if let Some(error) = stopped.get() {
        report.stop(error);
        report.not_pushed.sort();
    }
    Ok(report)
}

fn record(
    report: &mut PushReport,
    name: String,
    outcome: Result<Outcome, ClientError>,
    options: &PushOptions,
) {
    match outcome {
        Ok(Outcome::Versioned {
            created,
            version,
            previous,
            diff,
            label_moved,
        }) => {
            note_label(report, &name, options, label_moved, &version);
            report.versions.insert(name.clone(), version);
            if let Some(previous) = previous {
                report.previous.insert(name.clone(), previous);
            }
            if let Some(diff) = diff {
                report.diffs.insert(name.clone(), diff);
            }
            if created {
                report.created.push(name);
            } else {
                report.new_versions.push(name);
            }
        }
        Ok(Outcome::Unchanged {
            version,
            label_moved,
        }) => {
            if let Some(version) = version {
                note_label(report, &name, options, label_moved, &version);
                report.versions.insert(name.clone(), version);
            }
            report.unchanged.push(name);
        }
        Ok(Outcome::NotPushed) => report.not_pushed.push(name),
        // The refusal is the push's one error (`PushReport::error`).
        Err(e) if stops_the_push(&e) => report.not_pushed.push(name),
        Err(e) => report.failed.push(Failure {
            name,
            error: e.to_string(),
        }),
    }
}

fn note_label(
    report: &mut PushReport,
    name: &str,
    options: &PushOptions,
    moved: bool,
    version: &str,
) {
    if let (Some(label), true) = (&options.label, moved) {
        report
            .labels
            .entry(name.to_owned())
            .or_default()
            .insert(label.to_string(), version.to_owned());
    }
}

async fn push_one(
    client: &Client,
    dir: &Path,
    prompt: &LoadedPrompt,
    remote: Option<&PromptResponse>,
    options: &PushOptions,
) -> Result<Outcome, ClientError> {
    let name = prompt.name.as_str();
    let hash = prompt.content.content_hash();
    let latest = remote.and_then(|r| r.latest_version.clone());
    let changed = remote.and_then(|r| r.latest_content_hash.as_deref()) != Some(hash.as_str());
    let labelled = |version: &str| {
        options.label.as_ref().is_some_and(|label| {
            remote
                .and_then(|r| r.labels.get(label.as_str()))
                .map(String::as_str)
                != Some(version)
        })
    };

    if options.dry_run {
        if !changed {
            let label_moved = latest.as_deref().is_some_and(labelled);
            return Ok(Outcome::Unchanged {
                version: latest,
                label_moved,
            });
        }
        let version = would_get(prompt, latest.as_deref())?;
        let diff = match &latest {
            None => format!("new prompt {name}\n"),
            Some(version) => {
                let stored = remote::get_version(client, name, version).await?;
                match remote::content(&stored) {
                    Some(old) => {
                        let diff = diff_contents(
                            &old,
                            &prompt.content,
                            &format!("{name}@{version}"),
                            &format!("{}", prompt.path.display()),
                        );
                        let mut text = diff.diff;
                        for change in diff.changes {
                            if change.field != "template" && change.field != "messages" {
                                text.push_str(&format!(
                                    "{}: {} -> {}\n",
                                    change.field, change.from, change.to
                                ));
                            }
                        }
                        text
                    }
                    None => String::new(),
                }
            }
        };
        return Ok(Outcome::Versioned {
            created: remote.is_none(),
            label_moved: labelled(&version),
            version,
            previous: latest,
            diff: Some(diff),
        });
    }

    match remote {
        None => create_prompt(client, prompt).await?,
        Some(remote) => update_details(client, prompt, remote).await?,
    }
    if !changed {
        let mut label_moved = false;
        if let (Some(label), Some(version)) = (&options.label, &latest) {
            if labelled(version) {
                let body = SetLabelRequest {
                    version: version.clone(),
                };
                client
                    .send_json::<_, IgnoredAny>(
                        Method::PUT,
                        &format!("/v1/prompts/{}/labels/{label}", segment(name)),
                        Some(&body),
                    )
                    .await?;
                label_moved = true;
            }
        }
        return Ok(Outcome::Unchanged {
            version: latest,
            label_moved,
        });
    }
    let (status, created): (_, VersionResponse) = client
        .send_json(
            Method::POST,
            &format!("/v1/prompts/{}/versions", segment(name)),
            Some(&version_body(dir, prompt, options)),
        )
        .await?;
    let label_moved = labelled(&created.version);
    // 200: the server already held this content (another push got there first).
    Ok(if status == reqwest::StatusCode::CREATED {
        Outcome::Versioned {
            created: remote.is_none(),
            version: created.version,
            previous: latest,
            diff: None,
            label_moved,
        }
    } else {
        Outcome::Unchanged {
            version: Some(created.version),
            label_moved,
        }
    })
}

/// The version the server will give the file's content, by its rule
/// (`domain::next_version`), or the refusal it will answer.
fn would_get(prompt: &LoadedPrompt, latest: Option<&str>) -> Result<String, ClientError> {
    let invalid = |reason: String| ClientError::Invalid {
        what: prompt.path.display().to_string(),
        reason,
    };
    let parse = |text: &str| {
        semver::Version::parse(text).map_err(|e| invalid(format!("{text:?} is not a semver: {e}")))
    };
    let latest = latest.map(parse).transpose()?;
    let explicit = prompt.file.version.as_deref().map(parse).transpose()?;
    next_version(latest.as_ref(), prompt.file.bump, explicit.as_ref())
        .map(|v| v.to_string())
        .map_err(|e| invalid(e.to_string()))
}

async fn create_prompt(client: &Client, prompt: &LoadedPrompt) -> Result<(), ClientError> {
    let body = CreatePromptRequest {
        name: prompt.name.to_string(),
        description: prompt.file.description.clone(),
        tags: prompt.file.tags.clone(),
    };
    match client
        .send_json::<_, IgnoredAny>(Method::POST, "/v1/prompts", Some(&body))
        .await
    {
        // Created meanwhile, or archived: posting the version tells which.
        Ok(_) | Err(ClientError::Status { status: 409, .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Brings the prompt's description and tags in line with the file's, when
/// the file sets them.
async fn update_details(
    client: &Client,
    prompt: &LoadedPrompt,
    remote: &PromptResponse,
) -> Result<(), ClientError> {
    let file = &prompt.file;
    let patch = UpdatePromptRequest {
        description: file
            .description
            .clone()
            .filter(|d| d != &remote.description),
        tags: file.tags.clone().filter(|t| t != &remote.tags),
        archived: None,
    };
    if patch.description.is_none() && patch.tags.is_none() {
        return Ok(());
    }
    client
        .send_json::<_, IgnoredAny>(
            Method::PATCH,
            &format!("/v1/prompts/{}", segment(prompt.name.as_str())),
            Some(&patch),
        )
        .await
        .map(drop)
}

fn version_body(dir: &Path, prompt: &LoadedPrompt, options: &PushOptions) -> CreateVersionRequest {
    let file = &prompt.file;
    let mut metadata = options.metadata.clone();
    let source = prompt.path.strip_prefix(dir).unwrap_or(&prompt.path);
    metadata.insert("source".into(), json!(source.display().to_string()));
    CreateVersionRequest {
        prompt_type: Some(prompt.content.prompt_type()),
        engine: Some(prompt.content.engine),
        template: file.template.clone(),
        messages: file.messages.clone(),
        model_config: file.model_config.clone(),
        input_schema: file.input_schema.clone(),
        output_schema: file.output_schema.clone(),
        bump: file.bump,
        version: file.version.clone(),
        message: options.message.clone(),
        metadata: Some(metadata),
        parent: None,
        expected_latest: None,
        labels: options.label.as_ref().map(|label| vec![label.to_string()]),
        allow_type_change: false,
    }
}
