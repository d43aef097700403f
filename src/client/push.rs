//! `promptreg push DIR`: make the server hold what the folder holds. Missing
//! prompts are created, changed content gets a new version, unchanged
//! content gets nothing (the content hash decides), and `--label` points a
//! label at every pushed prompt's current version.

use std::collections::BTreeMap;
use std::path::Path;

use futures::StreamExt;
use reqwest::Method;
use serde::de::IgnoredAny;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::files::LoadedPrompt;
use super::http::{segment, Client, ClientError};
use super::remote;
use super::validate;
use crate::api::wire::{
    CreatePromptRequest, CreateVersionRequest, PromptResponse, SetLabelRequest,
    UpdatePromptRequest, VersionResponse,
};
use crate::domain::content::diff_contents;
use crate::domain::LabelName;

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

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    pub name: String,
    pub error: String,
}

/// What `push` did (or, with `--dry-run`, would do).
#[derive(Debug, Default, Serialize)]
pub struct PushReport {
    pub dry_run: bool,
    /// Prompts that got a new version (would get one, with `--dry-run`).
    pub created: Vec<String>,
    pub unchanged: Vec<String>,
    pub failed: Vec<Failure>,
    /// Each prompt's current version after the push.
    pub versions: BTreeMap<String, String>,
    /// With `--label`: the version the label points at, per prompt.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, BTreeMap<String, String>>,
    /// With `--dry-run`: what would change, as a unified diff per prompt.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub diffs: BTreeMap<String, String>,
}

impl PushReport {
    pub fn succeeded(&self) -> bool {
        self.failed.is_empty()
    }

    /// One line per prompt, then the totals.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let would = if self.dry_run {
            "would create"
        } else {
            "created"
        };
        for name in &self.created {
            let version = self.versions.get(name).map_or("", String::as_str);
            out.push_str(&format!("{would:<12} {name} {version}\n"));
            if let Some(diff) = self.diffs.get(name) {
                for line in diff.lines() {
                    out.push_str(&format!("    {line}\n"));
                }
            }
        }
        for name in &self.unchanged {
            let version = self.versions.get(name).map_or("", String::as_str);
            out.push_str(&format!("{:<12} {name} {version}\n", "unchanged"));
        }
        for failure in &self.failed {
            out.push_str(&format!(
                "{:<12} {}: {}\n",
                "failed", failure.name, failure.error
            ));
        }
        for (name, labels) in &self.labels {
            for (label, version) in labels {
                out.push_str(&format!("{:<12} {name} {label} -> {version}\n", "labelled"));
            }
        }
        out.push_str(&format!(
            "{} {}, {} unchanged, {} failed{}\n",
            self.created.len(),
            would,
            self.unchanged.len(),
            self.failed.len(),
            if self.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            }
        ));
        out
    }
}

enum Outcome {
    Created {
        version: Option<String>,
        diff: Option<String>,
    },
    Unchanged {
        version: Option<String>,
    },
}

/// Pushes every prompt file under `dir`. Every file is attempted; problems
/// are collected in the report, never stop the others.
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
            for prompt in &checked.prompts {
                report.failed.push(Failure {
                    name: prompt.name.to_string(),
                    error: e.to_string(),
                });
            }
            return Ok(report);
        }
    };
    let outcomes: Vec<(String, Result<Outcome, ClientError>)> =
        futures::stream::iter(checked.prompts.iter())
            .map(|prompt| {
                let remote = remote.get(prompt.name.as_str());
                async move {
                    let outcome = push_one(client, dir, prompt, remote, options).await;
                    (prompt.name.to_string(), outcome)
                }
            })
            .buffered(options.concurrency.max(1))
            .collect()
            .await;
    for (name, outcome) in outcomes {
        match outcome {
            Ok(Outcome::Created { version, diff }) => {
                if let Some(version) = version {
                    record_version(&mut report, &name, version, options);
                }
                if let Some(diff) = diff {
                    report.diffs.insert(name.clone(), diff);
                }
                report.created.push(name);
            }
            Ok(Outcome::Unchanged { version }) => {
                if let Some(version) = version {
                    record_version(&mut report, &name, version, options);
                }
                report.unchanged.push(name);
            }
            Err(e) => report.failed.push(Failure {
                name,
                error: e.to_string(),
            }),
        }
    }
    Ok(report)
}

fn record_version(report: &mut PushReport, name: &str, version: String, options: &PushOptions) {
    if let (Some(label), false) = (&options.label, options.dry_run) {
        report
            .labels
            .entry(name.to_owned())
            .or_default()
            .insert(label.to_string(), version.clone());
    }
    report.versions.insert(name.to_owned(), version);
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
    let label_behind = options
        .label
        .as_ref()
        .is_some_and(|label| remote.and_then(|r| r.labels.get(label.as_str())) != latest.as_ref());

    if options.dry_run {
        if !changed {
            return Ok(Outcome::Unchanged { version: latest });
        }
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
        return Ok(Outcome::Created {
            version: None,
            diff: Some(diff),
        });
    }

    match remote {
        None => create_prompt(client, prompt).await?,
        Some(remote) => update_details(client, prompt, remote).await?,
    }
    if !changed {
        if let (Some(label), Some(version), true) = (&options.label, &latest, label_behind) {
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
        }
        return Ok(Outcome::Unchanged { version: latest });
    }
    let (status, created): (_, VersionResponse) = client
        .send_json(
            Method::POST,
            &format!("/v1/prompts/{}/versions", segment(name)),
            Some(&version_body(dir, prompt, options)),
        )
        .await?;
    let version = Some(created.version);
    // 200: the server already held this content (another push got there first).
    Ok(if status == reqwest::StatusCode::CREATED {
        Outcome::Created {
            version,
            diff: None,
        }
    } else {
        Outcome::Unchanged { version }
    })
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

/// Where pushed content comes from: what the CI says, else what `git` says.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    pub git_commit: Option<String>,
    pub git_branch: Option<String>,
    pub ci_run: Option<String>,
}

impl Provenance {
    /// Fills what the CI did not say from `git` in `dir`; answers the metadata.
    pub fn metadata(self, dir: &Path) -> Map<String, Value> {
        let given = |v: Option<String>| v.filter(|v| !v.is_empty());
        let commit = given(self.git_commit).or_else(|| git(dir, &["rev-parse", "HEAD"]));
        let branch = given(self.git_branch)
            .or_else(|| git(dir, &["rev-parse", "--abbrev-ref", "HEAD"]).filter(|b| b != "HEAD"));
        let mut metadata = Map::new();
        for (key, value) in [
            ("git_commit", commit),
            ("git_branch", branch),
            ("ci_run", given(self.ci_run)),
        ] {
            if let Some(value) = value {
                metadata.insert(key.into(), json!(value));
            }
        }
        metadata
    }
}

/// The subject of the last commit touching the folder's repository.
pub fn git_subject(dir: &Path) -> Option<String> {
    git(dir, &["log", "-1", "--format=%s"])
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !text.is_empty()).then_some(text)
}
