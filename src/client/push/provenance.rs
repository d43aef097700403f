//! Where pushed content comes from: the commit, branch and CI run recorded
//! in each new version's metadata, and the changelog entry from git.

use std::path::Path;

use serde_json::{json, Map, Value};

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
