//! What `push` tells: the report of every file, for people and for machines.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::client::http::ClientError;
use crate::client::report::count;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    pub name: String,
    pub error: String,
}

/// What `push` did (or, with `--dry-run`, would do).
#[derive(Debug, Default, Serialize)]
pub struct PushReport {
    pub dry_run: bool,
    /// New prompts, with their first version (would be created, with `--dry-run`).
    pub created: Vec<String>,
    /// Existing prompts that got a new version (would get one, with `--dry-run`).
    pub new_versions: Vec<String>,
    pub unchanged: Vec<String>,
    pub failed: Vec<Failure>,
    /// Each prompt's current version after the push (would be, with `--dry-run`).
    pub versions: BTreeMap<String, String>,
    /// Each new version's predecessor, per prompt.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub previous: BTreeMap<String, String>,
    /// With `--label`: the labels this push moved (would move), per prompt,
    /// to the version they point at now. A label already there is not listed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, BTreeMap<String, String>>,
    /// With `--dry-run`: what would change, as a unified diff per prompt.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub diffs: BTreeMap<String, String>,
    /// Why the push stopped before trying every file (a refused key, an
    /// unreachable server): said once, not once per file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Prompts not tried because the push stopped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_pushed: Vec<String>,
}

impl PushReport {
    pub fn succeeded(&self) -> bool {
        self.failed.is_empty() && self.error.is_none()
    }

    /// Whether anything was tried: a push stopped at its first request has
    /// nothing to list but its reason.
    pub fn attempted(&self) -> bool {
        !(self.created.is_empty()
            && self.new_versions.is_empty()
            && self.unchanged.is_empty()
            && self.failed.is_empty())
    }

    /// One line per prompt, then the totals.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let (create, add, label) = if self.dry_run {
            ("would create", "new version", "would label")
        } else {
            ("created", "new version", "labelled")
        };
        let version = |name: &str| self.versions.get(name).map_or("", String::as_str);
        for name in &self.created {
            out.push_str(&format!("{create:<12} {name} {}\n", version(name)));
            self.push_diff(&mut out, name);
        }
        for name in &self.new_versions {
            let from = self.previous.get(name).map_or("", String::as_str);
            out.push_str(&format!("{add:<12} {name} {from} -> {}\n", version(name)));
            self.push_diff(&mut out, name);
        }
        for name in &self.unchanged {
            out.push_str(&format!("{:<12} {name} {}\n", "unchanged", version(name)));
        }
        for failure in &self.failed {
            out.push_str(&format!(
                "{:<12} {}: {}\n",
                "failed", failure.name, failure.error
            ));
        }
        for (name, labels) in &self.labels {
            for (label_name, version) in labels {
                out.push_str(&format!("{label:<12} {name} {label_name} -> {version}\n"));
            }
        }
        let files =
            self.created.len() + self.new_versions.len() + self.unchanged.len() + self.failed.len();
        out.push_str(&format!(
            "{}: {} {}, {}, {} unchanged, {} failed{}\n",
            count(files, "file"),
            self.created.len(),
            if self.dry_run { "to create" } else { "created" },
            count(self.new_versions.len(), "new version"),
            self.unchanged.len(),
            self.failed.len(),
            if self.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            }
        ));
        if !self.not_pushed.is_empty() {
            out.push_str(&format!(
                "{} not pushed: the push stopped\n",
                count(self.not_pushed.len(), "file")
            ));
        }
        out
    }

    fn push_diff(&self, out: &mut String, name: &str) {
        if let Some(diff) = self.diffs.get(name) {
            for line in diff.lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }

    pub(super) fn stop(&mut self, error: &ClientError) {
        self.error = Some(error.to_string());
        self.code = error.code().map(str::to_owned);
    }
}
