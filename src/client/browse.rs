//! `promptreg ls`, `show` and `history`: the registry read from a terminal.
//! Each reads through the API (`remote`) and formats lines for people here;
//! with `--output json` the command prints the API's own JSON instead.

use chrono::{DateTime, Utc};

use super::http::{Client, ClientError};
use super::remote;
use crate::api::wire::{LabelMoveResponse, PromptPage, PromptResponse, VersionResponse};
use crate::domain::ChatMessage;

/// The reference `show` reads when `NAME` has no `@REF`.
pub const DEFAULT_REF: &str = "production";

/// Every prompt whose name starts with `prefix`, as one page of the API's
/// list (`next_cursor` is `null`: every page was read).
pub async fn list(client: &Client, prefix: Option<&str>) -> Result<PromptPage, ClientError> {
    let prefix = prefix.filter(|p| !p.is_empty());
    // `q` narrows on the server (a substring of name or description); the
    // prefix itself is checked here.
    let items = remote::list_matching(client, prefix)
        .await?
        .into_iter()
        .filter(|p| prefix.is_none_or(|prefix| p.name.starts_with(prefix)))
        .collect();
    Ok(PromptPage {
        items,
        next_cursor: None,
    })
}

/// A header, then a line per prompt, by name: the latest version and each
/// label with the version it points at.
pub fn list_lines(prompts: &[PromptResponse]) -> String {
    let mut sorted: Vec<&PromptResponse> = prompts.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: Vec<[String; 3]> = sorted
        .iter()
        .map(|p| {
            let labels: Vec<String> = p.labels.iter().map(|(l, v)| format!("{l}={v}")).collect();
            [
                p.name.clone(),
                p.latest_version.clone().unwrap_or_else(|| "-".to_owned()),
                if labels.is_empty() {
                    "-".to_owned()
                } else {
                    labels.join(" ")
                },
            ]
        })
        .collect();
    let header = ["NAME".to_owned(), "LATEST".to_owned(), "LABELS".to_owned()];
    let width = |column: usize| {
        std::iter::once(&header)
            .chain(&rows)
            .map(|row| row[column].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (name_width, latest_width) = (width(0), width(1));
    std::iter::once(&header)
        .chain(&rows)
        .map(|[name, latest, labels]| {
            format!("{name:<name_width$}  {latest:<latest_width$}  {labels}\n")
        })
        .collect()
}

/// `NAME[@REF]` split; the reference defaults to [`DEFAULT_REF`]. Names
/// never hold `@`, so the last one separates.
pub fn split_reference(spec: &str) -> (&str, &str) {
    match spec.rsplit_once('@') {
        Some((name, reference)) if !reference.is_empty() => (name, reference),
        Some((name, _)) => (name, DEFAULT_REF),
        None => (spec, DEFAULT_REF),
    }
}

/// One version for a person: what it is, where it came from, its settings,
/// then its template or messages as written.
pub fn version_text(version: &VersionResponse, reference: &str) -> String {
    let mut out = format!("{} {}", version.prompt, version.version);
    if reference != version.version {
        out.push_str(&format!(" ({reference})"));
    }
    out.push('\n');
    out.push_str(&format!(
        "{}, {}, created {}{}\n",
        version.prompt_type.as_str(),
        version.engine.as_str(),
        time(&version.created_at),
        version
            .created_by
            .as_deref()
            .map_or(String::new(), |by| format!(" by {by}"))
    ));
    if let Some(message) = &version.message {
        out.push_str(&format!("message: {message}\n"));
    }
    if !version.model_config.is_empty() {
        out.push_str(&format!(
            "model_config: {}\n",
            serde_json::Value::Object(version.model_config.clone())
        ));
    }
    for (field, schema) in [
        ("input_schema", &version.input_schema),
        ("output_schema", &version.output_schema),
    ] {
        if let Some(schema) = schema {
            out.push_str(&format!("{field}: {schema}\n"));
        }
    }
    if !version.variables.is_empty() {
        out.push_str(&format!("variables: {}\n", version.variables.join(", ")));
    }
    out.push('\n');
    if let Some(template) = &version.template {
        out.push_str(template);
        if !template.ends_with('\n') {
            out.push('\n');
        }
    }
    for message in version.messages.iter().flatten() {
        match message {
            ChatMessage::Placeholder { name } => {
                out.push_str(&format!("[placeholder: {name}]\n"));
            }
            other => {
                let content = other.content().unwrap_or_default();
                out.push_str(&format!("[{}]\n{content}", other.role()));
                if !content.ends_with('\n') {
                    out.push('\n');
                }
            }
        }
    }
    out
}

/// A line per move, newest first: when, from, to, by whom.
pub fn history_lines(moves: &[LabelMoveResponse]) -> String {
    moves
        .iter()
        .map(|m| {
            let from = m.from.as_deref().unwrap_or("(unset)");
            let to = m.to.as_deref().unwrap_or("(deleted)");
            let by =
                m.by.as_deref()
                    .map_or(String::new(), |by| format!("  by {by}"));
            let rollback = if m.rollback { "  rollback" } else { "" };
            format!("{}  {from} -> {to}{by}{rollback}\n", time(&m.at))
        })
        .collect()
}

fn time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_follows_the_last_at() {
        assert_eq!(split_reference("a/b@1.0.2"), ("a/b", "1.0.2"));
        assert_eq!(split_reference("a/b"), ("a/b", "production"));
        assert_eq!(split_reference("a/b@"), ("a/b", "production"));
        assert_eq!(split_reference("a@staging"), ("a", "staging"));
    }
}
