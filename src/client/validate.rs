//! Offline checks of a folder of prompt files: everything the server would
//! refuse, found without a server, plus warnings for likely mistakes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::files::{self, Diagnostic, LoadedPrompt, Pos, Severity};
use crate::domain::content::PromptBody;
use crate::template::{self, TemplateError};

/// The outcome of checking a folder: the files that passed (possibly with
/// warnings) and every diagnostic, in file order.
#[derive(Debug, Default)]
pub struct Checked {
    pub prompts: Vec<LoadedPrompt>,
    /// Files that failed, by path, with the name they would have had.
    pub failed: Vec<(PathBuf, String)>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn errors(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
}

/// Reads and checks every prompt file under `dir`.
pub fn check_dir(dir: &Path) -> std::io::Result<Checked> {
    let mut checked = Checked::default();
    for (path, derived) in files::discover(dir)? {
        match files::load(&path, &derived) {
            Ok(prompt) => {
                let diagnostics = check_prompt(&prompt);
                let failed = diagnostics.iter().any(|d| d.severity == Severity::Error);
                checked.diagnostics.extend(diagnostics);
                if failed {
                    checked.failed.push((path, prompt.name.to_string()));
                } else {
                    checked.prompts.push(prompt);
                }
            }
            Err(diagnostics) => {
                checked.diagnostics.extend(diagnostics);
                checked.failed.push((path, derived));
            }
        }
    }
    refuse_duplicate_names(&mut checked);
    Ok(checked)
}

/// Two files naming the same prompt would overwrite each other: both fail.
fn refuse_duplicate_names(checked: &mut Checked) {
    let mut paths: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for prompt in &checked.prompts {
        paths
            .entry(prompt.name.to_string())
            .or_default()
            .push(prompt.path.clone());
    }
    let prompts = std::mem::take(&mut checked.prompts);
    for prompt in prompts {
        let same = &paths[prompt.name.as_str()];
        if same.len() == 1 {
            checked.prompts.push(prompt);
            continue;
        }
        let others: Vec<String> = same
            .iter()
            .filter(|p| **p != prompt.path)
            .map(|p| p.display().to_string())
            .collect();
        checked.diagnostics.push(Diagnostic {
            path: prompt.path.clone(),
            pos: Pos { line: 1, column: 1 },
            severity: Severity::Error,
            message: format!(
                "prompt {:?} is also defined by {}",
                prompt.name.as_str(),
                others.join(", ")
            ),
        });
        checked
            .failed
            .push((prompt.path.clone(), prompt.name.to_string()));
    }
}

/// The checks beyond shape: template syntax, JSON Schema validity, and
/// variables the template reads that the input schema does not declare.
pub fn check_prompt(prompt: &LoadedPrompt) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut push = |pos: Pos, severity: Severity, message: String| {
        out.push(Diagnostic {
            path: prompt.path.clone(),
            pos,
            severity,
            message,
        })
    };
    let content = &prompt.content;
    if let Err(e) = template::check(content.engine, &content.body) {
        let (pointer, line, column, message) = match e {
            TemplateError::Syntax {
                message_index,
                line,
                column,
                message,
            } => (
                body_pointer(&content.body, message_index),
                line,
                column,
                format!("template syntax: {message}"),
            ),
            other => (
                body_pointer(&content.body, None),
                None,
                None,
                other.to_string(),
            ),
        };
        let pos = prompt
            .map
            .locate_in_string(&prompt.source, &pointer, line, column);
        push(pos, Severity::Error, message);
    }
    for (field, schema) in [
        ("input_schema", &content.input_schema),
        ("output_schema", &content.output_schema),
    ] {
        if let Some(schema) = schema {
            if let Err(e) = jsonschema::draft202012::meta::validate(schema) {
                let pointer = format!("/{field}{}", e.instance_path());
                push(
                    prompt.map.locate(&pointer),
                    Severity::Error,
                    format!("{field} is not a valid JSON Schema: {e}"),
                );
            }
        }
    }
    if let (Some(schema), Ok(used)) = (
        &content.input_schema,
        template::variables(content.engine, &content.body),
    ) {
        let declared = declared_variables(schema);
        let open = schema
            .get("additionalProperties")
            .is_some_and(|a| a != &Value::Bool(false));
        let undeclared: BTreeSet<&str> = used
            .iter()
            .map(|v| v.split('.').next().unwrap_or(v))
            .filter(|root| !declared.contains(*root))
            .collect();
        if !undeclared.is_empty() && !open {
            let names: Vec<String> = undeclared.iter().map(|n| format!("`{n}`")).collect();
            push(
                prompt.map.locate("/input_schema"),
                Severity::Warning,
                format!(
                    "the template uses {} but input_schema does not declare {}",
                    names.join(", "),
                    if names.len() == 1 { "it" } else { "them" }
                ),
            );
        }
    }
    out
}

fn body_pointer(body: &PromptBody, message_index: Option<usize>) -> String {
    match (body, message_index) {
        (PromptBody::Chat(_), Some(i)) => format!("/messages/{i}/content"),
        (PromptBody::Chat(_), None) => "/messages".to_owned(),
        (PromptBody::Text(_), _) => "/template".to_owned(),
    }
}

fn declared_variables(schema: &Value) -> BTreeSet<&str> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default()
}
