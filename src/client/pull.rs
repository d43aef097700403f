//! `promptreg pull DIR`: write every prompt of the project as files that
//! `push` reads back to the same content.

use std::path::Path;

use futures::StreamExt;
use serde::Serialize;

use super::files::{self, PromptFile};
use super::http::{Client, ClientError};
use super::push::Failure;
use super::remote;
use super::report::count;
use crate::api::wire::PromptResponse;

#[derive(Debug, Default, Serialize)]
pub struct PullReport {
    /// Prompts whose file was written (or rewritten).
    pub written: Vec<String>,
    /// Prompts whose file already held exactly this.
    pub unchanged: Vec<String>,
    /// Prompts without a version at the reference (e.g. no `production` label).
    pub skipped: Vec<String>,
    pub failed: Vec<Failure>,
    pub versions: std::collections::BTreeMap<String, String>,
    /// Set when nothing was pulled: no prompt, or none with a version at the reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PullReport {
    pub fn succeeded(&self) -> bool {
        self.failed.is_empty() && self.error.is_none()
    }

    /// Says why nothing was pulled, when nothing was.
    fn check_something_matched(&mut self, reference: &str) {
        if self.written.is_empty() && self.unchanged.is_empty() && self.failed.is_empty() {
            self.error = Some(if self.skipped.is_empty() {
                "the project has no prompts".to_owned()
            } else {
                format!(
                    "no prompt has a version at {reference:?} ({} looked at)",
                    count(self.skipped.len(), "prompt")
                )
            });
        }
    }

    pub fn human(&self, reference: &str) -> String {
        let mut out = String::new();
        for (kind, names) in [("written", &self.written), ("unchanged", &self.unchanged)] {
            for name in names {
                let version = self.versions.get(name).map_or("", String::as_str);
                out.push_str(&format!("{kind:<10} {name} {version}\n"));
            }
        }
        for name in &self.skipped {
            out.push_str(&format!(
                "{:<10} {name}: no version at {reference:?}\n",
                "skipped"
            ));
        }
        for f in &self.failed {
            out.push_str(&format!("{:<10} {}: {}\n", "failed", f.name, f.error));
        }
        out.push_str(&format!(
            "{} written, {} unchanged, {} skipped, {} failed\n",
            self.written.len(),
            self.unchanged.len(),
            self.skipped.len(),
            self.failed.len()
        ));
        out
    }
}

enum Pulled {
    Written(String),
    Unchanged(String),
    Skipped,
}

pub async fn pull(
    client: &Client,
    dir: &Path,
    reference: &str,
    concurrency: usize,
) -> Result<PullReport, ClientError> {
    let prompts = remote::list_prompts(client).await?;
    let mut prompts: Vec<PromptResponse> = prompts.into_values().collect();
    prompts.sort_by(|a, b| a.name.cmp(&b.name));
    let outcomes: Vec<(String, Result<Pulled, String>)> = futures::stream::iter(prompts.iter())
        .map(|prompt| async move {
            let outcome = pull_one(client, dir, prompt, reference).await;
            (prompt.name.clone(), outcome)
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut report = PullReport::default();
    for (name, outcome) in outcomes {
        match outcome {
            Ok(Pulled::Written(version)) => {
                report.versions.insert(name.clone(), version);
                report.written.push(name);
            }
            Ok(Pulled::Unchanged(version)) => {
                report.versions.insert(name.clone(), version);
                report.unchanged.push(name);
            }
            Ok(Pulled::Skipped) => report.skipped.push(name),
            Err(error) => report.failed.push(Failure { name, error }),
        }
    }
    report.check_something_matched(reference);
    Ok(report)
}

async fn pull_one(
    client: &Client,
    dir: &Path,
    prompt: &PromptResponse,
    reference: &str,
) -> Result<Pulled, String> {
    let version = match remote::get_version(client, &prompt.name, reference).await {
        Ok(version) => version,
        Err(e) if e.is_not_found() => return Ok(Pulled::Skipped),
        Err(e) => return Err(e.to_string()),
    };
    let content = remote::content(&version).ok_or_else(|| {
        format!(
            "version {} has content this client cannot read",
            version.version
        )
    })?;
    let text = PromptFile::of_version(&prompt.description, &prompt.tags, &content).to_yaml();
    let path = files::path_for(dir, &prompt.name);
    if std::fs::read_to_string(&path).is_ok_and(|existing| existing == text) {
        return Ok(Pulled::Unchanged(version.version));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Pulled::Written(version.version))
}
