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

/// Reads and checks every prompt file under `dir`, named by its path there.
pub fn check_dir(dir: &Path) -> std::io::Result<Checked> {
    Ok(check_files(files::discover(dir)?))
}

/// What `validate` was given: folders and single files.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Every prompt file found, with the name its path gives.
    pub files: Vec<(PathBuf, String)>,
    /// Files given by path that are not prompt files, skipped.
    pub skipped: Vec<PathBuf>,
}

/// Finds the prompt files `paths` name. Files under a folder are named by
/// their path inside it (as `push` of that folder names them); a file given
/// by itself by its path inside `root` (default: the current folder), else by
/// its file name alone. A file given twice, or given and under a given
/// folder, is read once.
pub fn select(paths: &[PathBuf], root: Option<&Path>) -> std::io::Result<Selection> {
    let root = match root {
        Some(root) => root.to_path_buf(),
        None => std::env::current_dir()?,
    };
    let root = root.canonicalize().unwrap_or(root);
    let mut selection = Selection::default();
    let mut seen = BTreeSet::new();
    for path in paths {
        let found = if path.is_dir() {
            files::discover(path)?
        } else {
            let file_name = path.file_name().map(|f| f.to_string_lossy().into_owned());
            if file_name.as_deref().and_then(files::prompt_stem).is_none() {
                selection.skipped.push(path.clone());
                continue;
            }
            let absolute = path.canonicalize()?;
            let name = match absolute.strip_prefix(&root) {
                Ok(relative) => files::derived_name(relative),
                Err(_) => files::derived_name(Path::new(&file_name.unwrap_or_default())),
            };
            vec![(path.clone(), name)]
        };
        for (file, name) in found {
            let key = file.canonicalize().unwrap_or_else(|_| file.clone());
            if seen.insert(key) {
                selection.files.push((file, name));
            }
        }
    }
    Ok(selection)
}

/// Reads and checks each file, named as given.
pub fn check_files(found: Vec<(PathBuf, String)>) -> Checked {
    let mut checked = Checked::default();
    for (path, derived) in found {
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
            Err(failure) => {
                checked.diagnostics.extend(failure.diagnostics);
                checked.failed.push((path, failure.name));
            }
        }
    }
    refuse_duplicate_names(&mut checked);
    // Each file's problems together, in file order, then by position.
    checked.diagnostics.sort_by(|a, b| {
        (&a.path, a.pos.line, a.pos.column).cmp(&(&b.path, b.pos.line, b.pos.column))
    });
    checked
}

/// Two files naming the same prompt would overwrite each other: both fail,
/// whatever else is wrong with either.
fn refuse_duplicate_names(checked: &mut Checked) {
    let mut paths: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let names = checked
        .prompts
        .iter()
        .map(|prompt| (prompt.name.as_str(), &prompt.path))
        .chain(
            checked
                .failed
                .iter()
                .map(|(path, name)| (name.as_str(), path)),
        );
    for (name, path) in names {
        paths.entry(name.to_owned()).or_default().push(path.clone());
    }
    let also_defined = |name: &str, path: &Path| -> Option<String> {
        let same = &paths[name];
        if same.len() == 1 {
            return None;
        }
        let others: Vec<String> = same
            .iter()
            .filter(|p| p.as_path() != path)
            .map(|p| p.display().to_string())
            .collect();
        Some(format!(
            "prompt {name:?} is also defined by {}",
            others.join(", ")
        ))
    };
    for (path, name) in &checked.failed {
        if let Some(message) = also_defined(name, path) {
            checked.diagnostics.push(Diagnostic {
                path: path.clone(),
                pos: Pos { line: 1, column: 1 },
                severity: Severity::Error,
                message,
            });
        }
    }
    let prompts = std::mem::take(&mut checked.prompts);
    for prompt in prompts {
        let Some(message) = also_defined(prompt.name.as_str(), &prompt.path) else {
            checked.prompts.push(prompt);
            continue;
        };
        let pos = if prompt.file.name.is_some() {
            prompt.map.locate("/name")
        } else {
            Pos { line: 1, column: 1 }
        };
        checked.diagnostics.push(Diagnostic {
            path: prompt.path.clone(),
            pos,
            severity: Severity::Error,
            message,
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
