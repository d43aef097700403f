//! Langfuse's prompt shapes and their mapping to and from promptreg's:
//! `seq` is Langfuse's integer `version`, `model_config` its `config`,
//! `message` its `commitMessage`; chat placeholders are
//! `{"type": "placeholder", "name": …}` there and `{"role": "placeholder", …}` here.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use crate::domain::content::PromptBody;
use crate::domain::{ChatMessage, PromptSummary, PromptType, Version};
use crate::error::FieldError;

/// The implicit label of the newest version.
pub const LATEST: &str = "latest";

/// A prompt version as Langfuse sends it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "id": "0190f2a4-1111-7000-8000-000000000000",
    "name": "support/greeting",
    "version": 2,
    "type": "text",
    "prompt": "Hello {{name}}!",
    "config": {"model": "gpt-4o-mini"},
    "labels": ["production", "latest"],
    "tags": ["support"],
    "commitMessage": "Warmer greeting",
    "resolutionGraph": null,
    "createdAt": "2026-01-01T00:00:00Z",
    "updatedAt": "2026-01-01T00:00:00Z",
    "createdBy": "ci"
}))]
pub struct LangfusePrompt {
    id: uuid::Uuid,
    name: String,
    /// The version's `seq`: 1, 2, 3…
    version: i64,
    #[serde(rename = "type")]
    prompt_type: PromptType,
    /// The template (text) or the messages (chat), registry partials inlined.
    #[schema(value_type = LangfusePromptContent)]
    prompt: Value,
    /// The version's `model_config`.
    config: Map<String, Value>,
    /// The labels pointing at this version, and `latest` on the newest.
    labels: Vec<String>,
    /// The prompt's tags.
    tags: Vec<String>,
    /// The version's `message`.
    commit_message: Option<String>,
    /// Always `null`: partials are inlined.
    #[schema(value_type = Option<Object>)]
    resolution_graph: Option<Value>,
    created_at: DateTime<Utc>,
    /// Versions never change: their creation time.
    updated_at: DateTime<Utc>,
    created_by: Option<String>,
}

impl LangfusePrompt {
    /// `version` of the prompt `summary` describes, with `body` (the
    /// version's, partials inlined) as its prompt.
    pub fn new(version: &Version, body: &PromptBody, summary: &PromptSummary) -> Self {
        Self {
            id: version.id,
            name: version.prompt_name.clone(),
            version: version.seq,
            prompt_type: version.content.prompt_type(),
            prompt: prompt_value(body),
            config: version.content.model_config.clone(),
            labels: labels_of(version, summary),
            tags: summary.prompt.tags.clone(),
            commit_message: version.message.clone(),
            resolution_graph: None,
            created_at: version.created_at,
            updated_at: version.created_at,
            created_by: version.created_by.clone(),
        }
    }
}

/// The labels pointing at `version`, by name, then `latest` if it is the newest.
pub fn labels_of(version: &Version, summary: &PromptSummary) -> Vec<String> {
    let mut labels: Vec<String> = summary
        .labels
        .iter()
        .filter(|(_, target)| **target == version.version)
        .map(|(name, _)| name.clone())
        .collect();
    if summary.latest_version.as_ref() == Some(&version.version) {
        labels.push(LATEST.to_owned());
    }
    labels
}

/// What `prompt` holds: a text prompt's template, or a chat prompt's messages.
/// Only documents the field, which is built as JSON by `prompt_value`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum LangfusePromptContent {
    /// A text prompt's template.
    Text(String),
    /// A chat prompt's messages and placeholders, in order.
    Chat(Vec<LangfuseChatEntry>),
}

/// One entry of a chat prompt.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum LangfuseChatEntry {
    /// A message.
    Message {
        /// `system`, `user` or `assistant`.
        role: String,
        content: String,
    },
    /// Messages a caller supplies at compile time, under this name.
    Placeholder {
        /// Always `placeholder`.
        #[serde(rename = "type")]
        kind: String,
        name: String,
    },
}

/// The `prompt` field: the template, or the messages in Langfuse's shape.
pub fn prompt_value(body: &PromptBody) -> Value {
    match body {
        PromptBody::Text(text) => Value::String(text.clone()),
        PromptBody::Chat(messages) => Value::Array(
            messages
                .iter()
                .map(|message| match message {
                    ChatMessage::Placeholder { name } => {
                        json!({"type": "placeholder", "name": name})
                    }
                    ChatMessage::System { content }
                    | ChatMessage::User { content }
                    | ChatMessage::Assistant { content } => {
                        json!({"role": message.role(), "content": content})
                    }
                })
                .collect(),
        ),
    }
}

/// The content a create request's `prompt` (and `type`) describe: a string
/// is a text prompt, an array a chat prompt. Every problem is collected.
pub fn parse_prompt(
    declared: Option<PromptType>,
    prompt: &Value,
) -> Result<PromptBody, Vec<FieldError>> {
    match (declared, prompt) {
        (None | Some(PromptType::Text), Value::String(text)) => Ok(PromptBody::Text(text.clone())),
        (None | Some(PromptType::Chat), Value::Array(items)) => {
            let mut errors = Vec::new();
            let messages = items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    parse_message(item)
                        .map_err(|message| {
                            errors.push(FieldError::new(format!("prompt[{i}]"), message))
                        })
                        .ok()
                })
                .collect();
            if errors.is_empty() {
                Ok(PromptBody::Chat(messages))
            } else {
                Err(errors)
            }
        }
        (Some(PromptType::Text), _) => {
            Err(vec![FieldError::new("prompt", "a text prompt is a string")])
        }
        (Some(PromptType::Chat), _) => Err(vec![FieldError::new(
            "prompt",
            "a chat prompt is an array of messages",
        )]),
        (None, _) => Err(vec![FieldError::new(
            "prompt",
            "a string (text prompt) or an array of messages (chat prompt)",
        )]),
    }
}

/// `{role, content}`, or a placeholder: `{"type": "placeholder", "name": …}`
/// (promptreg's `{"role": "placeholder", "name": …}` is taken too).
fn parse_message(item: &Value) -> Result<ChatMessage, String> {
    let Some(object) = item.as_object() else {
        return Err("a message is an object with `role` and `content`".into());
    };
    let text = |field: &str| object.get(field).and_then(Value::as_str).map(str::to_owned);
    let is_placeholder = object.get("type").and_then(Value::as_str) == Some("placeholder")
        || object.get("role").and_then(Value::as_str) == Some("placeholder");
    if is_placeholder {
        return match text("name") {
            Some(name) if !name.is_empty() => Ok(ChatMessage::Placeholder { name }),
            _ => Err("a placeholder needs a non-empty string `name`".into()),
        };
    }
    let (Some(role), Some(content)) = (text("role"), text("content")) else {
        return Err("a message needs a string `role` and a string `content`".into());
    };
    match role.as_str() {
        "system" => Ok(ChatMessage::System { content }),
        "user" => Ok(ChatMessage::User { content }),
        "assistant" => Ok(ChatMessage::Assistant { content }),
        other => Err(format!(
            "role {other:?} is not one promptreg keeps: system, user or assistant"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_messages_and_placeholders_map_both_ways() {
        let wire = json!([
            {"role": "system", "content": "You help {{name}}."},
            {"type": "placeholder", "name": "history"},
            {"role": "user", "content": "{{question}}", "type": "chatmessage"},
        ]);
        let PromptBody::Chat(messages) = parse_prompt(None, &wire).expect("valid") else {
            panic!("an array is a chat prompt");
        };
        assert_eq!(
            messages[1],
            ChatMessage::Placeholder {
                name: "history".into()
            }
        );
        assert_eq!(
            prompt_value(&PromptBody::Chat(messages)),
            json!([
                {"role": "system", "content": "You help {{name}}."},
                {"type": "placeholder", "name": "history"},
                {"role": "user", "content": "{{question}}"},
            ])
        );
    }

    #[test]
    fn prompts_of_the_wrong_shape_name_the_field_at_fault() {
        let cases = [
            (Some(PromptType::Chat), json!("text"), "prompt"),
            (Some(PromptType::Text), json!([]), "prompt"),
            (None, json!(3), "prompt"),
            (None, json!([{"role": "tool", "content": "x"}]), "prompt[0]"),
            (None, json!([{"role": "user"}]), "prompt[0]"),
            (None, json!([{"type": "placeholder"}]), "prompt[0]"),
            (None, json!(["hi"]), "prompt[0]"),
        ];
        for (declared, prompt, field) in cases {
            let errors = parse_prompt(declared, &prompt).expect_err("refused");
            assert_eq!(errors[0].field, field, "{prompt}");
        }
    }
}
