//! MLflow's registered-model and model-version shapes, and their mapping to
//! and from promptreg's: a prompt is a registered model tagged
//! `mlflow.prompt.is_prompt`; a version's `seq` is the model version number
//! and its content travels in version tags (`mlflow.prompt.text`,
//! `_mlflow_prompt_type`, `_mlflow_prompt_response_format` ↔
//! `output_schema`, `_mlflow_prompt_model_config` ↔ `model_config`); other
//! version tags are the version's `metadata`; `description` is its message.
//! Prompt-level tags are promptreg tags written `key=value`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use super::MlflowError;
use crate::domain::content::{parse_content, ContentFields, PromptBody};
use crate::domain::{ChatMessage, Engine, Prompt, PromptType, Version};
use crate::store::NewVersion;

pub const IS_PROMPT: &str = "mlflow.prompt.is_prompt";
pub const TEXT: &str = "mlflow.prompt.text";
pub const TYPE: &str = "_mlflow_prompt_type";
pub const RESPONSE_FORMAT: &str = "_mlflow_prompt_response_format";
pub const MODEL_CONFIG: &str = "_mlflow_prompt_model_config";
/// Version tags that carry content, never metadata.
const RESERVED: [&str; 5] = [IS_PROMPT, TEXT, TYPE, RESPONSE_FORMAT, MODEL_CONFIG];
/// The prompt tag MLflow's client sets, after each register and load, to
/// link the prompt to its active MLflow experiment. promptreg has no MLflow
/// experiments, so the tag is not kept.
pub const EXPERIMENT_IDS: &str = "_mlflow_experiment_ids";
/// What promptreg answers as a version's `source` (MLflow's own placeholder).
const SOURCE: &str = "prompt-template";
const MAX_MESSAGE_LEN: usize = 4096;

/// A key and a value.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MlflowTag {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

/// An alias (promptreg label) and the version number it points at.
#[derive(Debug, Serialize, ToSchema)]
pub struct MlflowAlias {
    #[schema(example = "production")]
    pub alias: String,
    #[schema(example = "2")]
    pub version: String,
}

/// A prompt as MLflow's registered model.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "name": "greeting",
    "creation_timestamp": 1767225600000_i64,
    "last_updated_timestamp": 1767225600000_i64,
    "description": "Greets a customer",
    "tags": [{"key": "mlflow.prompt.is_prompt", "value": "true"}, {"key": "team", "value": "support"}],
    "aliases": [{"alias": "production", "version": "2"}]
}))]
pub struct RegisteredModel {
    pub name: String,
    /// Milliseconds since the epoch.
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    pub description: String,
    /// `mlflow.prompt.is_prompt` = `true`, then the prompt's tags.
    pub tags: Vec<MlflowTag>,
    /// The prompt's labels (`latest` is implicit and not listed).
    pub aliases: Vec<MlflowAlias>,
}

/// A prompt version as MLflow's model version.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "name": "greeting",
    "version": "2",
    "creation_timestamp": 1767225600000_i64,
    "last_updated_timestamp": 1767225600000_i64,
    "user_id": "ci",
    "current_stage": "None",
    "description": "Warmer greeting",
    "source": "prompt-template",
    "run_id": "",
    "status": "READY",
    "tags": [
        {"key": "mlflow.prompt.is_prompt", "value": "true"},
        {"key": "mlflow.prompt.text", "value": "Hello {{ name }}!"},
        {"key": "_mlflow_prompt_type", "value": "text"},
        {"key": "git_sha", "value": "4f2a9c1"}
    ],
    "aliases": ["production"]
}))]
pub struct ModelVersion {
    pub name: String,
    /// The version's `seq`: "1", "2", "3"…
    pub version: String,
    pub creation_timestamp: i64,
    /// Versions never change: their creation time.
    pub last_updated_timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Always `None`: promptreg has labels, not stages.
    pub current_stage: &'static str,
    /// The version's `message`.
    pub description: String,
    pub source: &'static str,
    pub run_id: &'static str,
    /// Always `READY`: a version exists once its transaction commits.
    pub status: &'static str,
    /// The content tags, then the version's metadata.
    pub tags: Vec<MlflowTag>,
    /// The labels pointing at this version.
    pub aliases: Vec<String>,
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// promptreg's tag `key=value` (or a bare `key`) as MLflow's key and value.
pub fn split_tag(tag: &str) -> (String, String) {
    match tag.split_once('=') {
        Some((key, value)) => (key.to_owned(), value.to_owned()),
        None => (tag.to_owned(), String::new()),
    }
}

/// MLflow's tag as promptreg's: `key=value`, or `key` when the value is empty.
pub fn join_tag(key: &str, value: &str) -> Result<String, MlflowError> {
    if key.is_empty() || key.contains('=') {
        return Err(MlflowError::invalid(format!(
            "tags: the key {key:?} is empty or holds `=`, which promptreg's `key=value` tags cannot keep"
        )));
    }
    Ok(if value.is_empty() {
        key.to_owned()
    } else {
        format!("{key}={value}")
    })
}

/// The prompt's tags as MLflow sees them (with `mlflow.prompt.is_prompt`).
pub fn tag_map(prompt: &Prompt) -> BTreeMap<String, String> {
    let mut tags: BTreeMap<String, String> = prompt.tags.iter().map(|t| split_tag(t)).collect();
    tags.insert(IS_PROMPT.to_owned(), "true".to_owned());
    tags
}

impl RegisteredModel {
    /// `aliases`: (label, version number) pairs.
    pub fn new(prompt: &Prompt, aliases: Vec<(String, i64)>) -> Self {
        let mut tags = vec![MlflowTag {
            key: IS_PROMPT.to_owned(),
            value: "true".to_owned(),
        }];
        tags.extend(prompt.tags.iter().map(|t| {
            let (key, value) = split_tag(t);
            MlflowTag { key, value }
        }));
        Self {
            name: prompt.name.clone(),
            creation_timestamp: millis(prompt.created_at),
            last_updated_timestamp: millis(prompt.updated_at),
            description: prompt.description.clone(),
            tags,
            aliases: aliases
                .into_iter()
                .map(|(alias, seq)| MlflowAlias {
                    alias,
                    version: seq.to_string(),
                })
                .collect(),
        }
    }
}

impl ModelVersion {
    /// `version` with `body` (its content, partials inlined) and the labels
    /// pointing at it.
    pub fn new(version: &Version, body: &PromptBody, aliases: Vec<String>) -> Self {
        let content = &version.content;
        let tag = |key: &str, value: String| MlflowTag {
            key: key.to_owned(),
            value,
        };
        let mut tags = vec![
            tag(IS_PROMPT, "true".to_owned()),
            tag(TEXT, text_of(body)),
            tag(TYPE, content.prompt_type().as_str().to_owned()),
        ];
        if let Some(schema) = &content.output_schema {
            tags.push(tag(RESPONSE_FORMAT, schema.to_string()));
        }
        if !content.model_config.is_empty() {
            tags.push(tag(
                MODEL_CONFIG,
                Value::Object(content.model_config.clone()).to_string(),
            ));
        }
        for (key, value) in &version.metadata {
            if RESERVED.contains(&key.as_str()) {
                continue;
            }
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            tags.push(tag(key, value));
        }
        Self {
            name: version.prompt_name.clone(),
            version: version.seq.to_string(),
            creation_timestamp: millis(version.created_at),
            last_updated_timestamp: millis(version.created_at),
            user_id: version.created_by.clone(),
            current_stage: "None",
            description: version.message.clone().unwrap_or_default(),
            source: SOURCE,
            run_id: "",
            status: "READY",
            tags,
            aliases,
        }
    }
}

/// `mlflow.prompt.text`: the template, or the messages as a JSON string
/// (a placeholder as `{"role": "placeholder", "name": …}`).
fn text_of(body: &PromptBody) -> String {
    match body {
        PromptBody::Text(text) => text.clone(),
        PromptBody::Chat(messages) => Value::Array(
            messages
                .iter()
                .map(|message| match message {
                    ChatMessage::Placeholder { name } => {
                        json!({"role": "placeholder", "name": name})
                    }
                    other => json!({"role": other.role(), "content": other.content()}),
                })
                .collect(),
        )
        .to_string(),
    }
}

/// A version as MLflow's client creates it: the content from its tags, the
/// rest of its tags as metadata, `description` as the message.
pub fn new_version(
    tags: Vec<MlflowTag>,
    description: Option<String>,
) -> Result<NewVersion, MlflowError> {
    let mut content_tags: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut metadata = Map::new();
    for MlflowTag { key, value } in tags {
        match RESERVED.iter().find(|r| **r == key) {
            Some(reserved) => {
                content_tags.insert(reserved, value);
            }
            None => {
                metadata.insert(key, Value::String(value));
            }
        }
    }
    if content_tags.get(IS_PROMPT).map(String::as_str) != Some("true") {
        return Err(MlflowError::not_a_prompt(
            "this model version has no tag `mlflow.prompt.is_prompt` = \"true\"",
        ));
    }
    let Some(text) = content_tags.remove(TEXT) else {
        return Err(MlflowError::not_a_prompt(
            "this model version has no tag `mlflow.prompt.text`",
        ));
    };
    let prompt_type = match content_tags.get(TYPE).map(String::as_str) {
        None | Some("text") => PromptType::Text,
        Some("chat") => PromptType::Chat,
        Some(other) => {
            return Err(MlflowError::invalid(format!(
                "tags.{TYPE}: {other:?} is not `text` or `chat`"
            )))
        }
    };
    let (template, messages) = match prompt_type {
        PromptType::Text => (Some(text), None),
        PromptType::Chat => (None, Some(parse_messages(&text)?)),
    };
    let jinja = template.as_deref().is_some_and(is_jinja)
        || messages
            .iter()
            .flatten()
            .any(|m| m.content().is_some_and(is_jinja));
    let output_schema = content_tags
        .get(RESPONSE_FORMAT)
        .map(|raw| {
            serde_json::from_str::<Value>(raw)
                .map_err(|e| MlflowError::invalid(format!("tags.{RESPONSE_FORMAT}: not JSON: {e}")))
        })
        .transpose()?;
    let model_config = match content_tags.get(MODEL_CONFIG) {
        None => Map::new(),
        Some(raw) => match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(map)) => map,
            _ => {
                return Err(MlflowError::invalid(format!(
                    "tags.{MODEL_CONFIG}: not a JSON object"
                )))
            }
        },
    };
    if description
        .as_ref()
        .is_some_and(|m| m.chars().count() > MAX_MESSAGE_LEN)
    {
        return Err(MlflowError::invalid(format!(
            "description: at most {MAX_MESSAGE_LEN} characters"
        )));
    }
    let mut errors = Vec::new();
    let content = parse_content(
        ContentFields {
            prompt_type: Some(prompt_type),
            template,
            messages,
            engine: Some(if jinja {
                Engine::Jinja
            } else {
                Engine::Handlebars
            }),
            model_config: Some(model_config),
            input_schema: None,
            output_schema,
        },
        &mut errors,
    );
    let content = match content {
        Some(content) if errors.is_empty() => content,
        _ => {
            let found = errors
                .iter()
                .map(|e| format!("{}: {}", content_field(&e.field), e.message))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(MlflowError::invalid(found));
        }
    };
    Ok(NewVersion {
        content,
        variables: Vec::new(),
        message: description.filter(|d| !d.is_empty()),
        metadata,
        version: None,
        bump: None,
        parent: None,
        expected_latest: None,
        labels: Vec::new(),
    })
}

/// A content field as the tag that carries it.
fn content_field(field: &str) -> String {
    if field.starts_with("template") || field.starts_with("messages") {
        format!("tags.{TEXT}")
    } else if field.starts_with("output_schema") {
        format!("tags.{RESPONSE_FORMAT}")
    } else {
        field.to_owned()
    }
}

/// MLflow renders a template with Jinja when it holds `{% … %}`.
fn is_jinja(text: &str) -> bool {
    text.contains("{%") && text.contains("%}")
}

/// A chat prompt's `mlflow.prompt.text`: a JSON array of `{role, content}`.
fn parse_messages(text: &str) -> Result<Vec<ChatMessage>, MlflowError> {
    let field = format!("tags.{TEXT}");
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(text) else {
        return Err(MlflowError::invalid(format!(
            "{field}: a chat prompt's text is a JSON array of messages"
        )));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let text = |name: &str| item.get(name).and_then(Value::as_str).map(str::to_owned);
            let role = text("role").unwrap_or_default();
            let fail = |why: &str| MlflowError::invalid(format!("{field}[{i}]: {why}"));
            if role == "placeholder" {
                return match text("name") {
                    Some(name) if !name.is_empty() => Ok(ChatMessage::Placeholder { name }),
                    _ => Err(fail("a placeholder needs a non-empty string `name`")),
                };
            }
            let Some(content) = text("content") else {
                return Err(fail(
                    "a message needs a string `content` (promptreg keeps text content only)",
                ));
            };
            match role.as_str() {
                "system" => Ok(ChatMessage::System { content }),
                "user" => Ok(ChatMessage::User { content }),
                "assistant" => Ok(ChatMessage::Assistant { content }),
                other => Err(fail(&format!(
                    "role {other:?} is not one promptreg keeps: system, user or assistant"
                ))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Vec<MlflowTag> {
        pairs
            .iter()
            .map(|(k, v)| MlflowTag {
                key: (*k).to_owned(),
                value: (*v).to_owned(),
            })
            .collect()
    }

    #[test]
    fn content_tags_make_the_content_and_the_rest_metadata() {
        let new = new_version(
            tags(&[
                (IS_PROMPT, "true"),
                (TEXT, r#"[{"role": "system", "content": "Be {{ tone }}."}]"#),
                (TYPE, "chat"),
                (RESPONSE_FORMAT, r#"{"type": "object"}"#),
                (
                    MODEL_CONFIG,
                    r#"{"model_name": "gpt-4o", "max_tokens": 100}"#,
                ),
                ("git_sha", "4f2a9c1"),
            ]),
            Some("first".into()),
        )
        .expect("valid");
        assert_eq!(new.content.prompt_type(), PromptType::Chat);
        assert_eq!(new.content.engine, Engine::Handlebars);
        assert_eq!(new.content.output_schema, Some(json!({"type": "object"})));
        assert_eq!(new.content.model_config["model_name"], "gpt-4o");
        assert_eq!(new.content.model_config["max_tokens"], 100);
        assert_eq!(new.metadata["git_sha"], "4f2a9c1");
        assert_eq!(new.metadata.len(), 1);
        assert_eq!(new.message.as_deref(), Some("first"));

        let jinja = new_version(
            tags(&[(IS_PROMPT, "true"), (TEXT, "{% if x %}{{ x }}{% endif %}")]),
            None,
        )
        .expect("valid");
        assert_eq!(jinja.content.engine, Engine::Jinja);
    }

    #[test]
    fn what_is_not_a_prompt_or_not_kept_is_refused_by_name() {
        for (pairs, mentions) in [
            (vec![(TEXT, "x")], "promptreg stores prompts only"),
            (vec![(IS_PROMPT, "true")], "mlflow.prompt.text"),
            (
                vec![(IS_PROMPT, "true"), (TEXT, "x"), (TYPE, "image")],
                TYPE,
            ),
            (
                vec![
                    (IS_PROMPT, "true"),
                    (TEXT, "[{\"role\": \"tool\", \"content\": \"x\"}]"),
                    (TYPE, "chat"),
                ],
                "role",
            ),
            (
                vec![(IS_PROMPT, "true"), (TEXT, "x"), (MODEL_CONFIG, "[1]")],
                MODEL_CONFIG,
            ),
            (
                vec![(IS_PROMPT, "true"), (TEXT, "x"), (RESPONSE_FORMAT, "3")],
                RESPONSE_FORMAT,
            ),
        ] {
            let err = new_version(tags(&pairs), None).expect_err("refused");
            assert_eq!(err.body.error_code, super::super::INVALID_PARAMETER_VALUE);
            assert!(err.body.message.contains(mentions), "{}", err.body.message);
        }
    }

    #[test]
    fn prompt_tags_are_key_value_pairs() {
        assert_eq!(split_tag("team=ml"), ("team".into(), "ml".into()));
        assert_eq!(split_tag("a=b=c"), ("a".into(), "b=c".into()));
        assert_eq!(split_tag("support"), ("support".into(), String::new()));
        assert_eq!(join_tag("team", "ml").ok(), Some("team=ml".into()));
        assert_eq!(join_tag("support", "").ok(), Some("support".into()));
        assert!(join_tag("a=b", "c").is_err());
        assert!(join_tag("", "c").is_err());
    }
}
