//! Request bodies for each provider's chat API, built from a rendered prompt
//! and the version's `model_config`: one adapter per provider, in one place.
//!
//! `model_config` uses OpenAI's parameter names (`model`, `temperature`,
//! `max_tokens`, `top_p`, `stop`, …); each adapter maps them to its API:
//! - `openai` (Chat Completions): every key passes through at the top level;
//!   `output_schema` becomes `response_format: {type: json_schema, …}`.
//! - `anthropic` (Messages): system messages join into `system`; `stop`
//!   becomes `stop_sequences`; `max_tokens` is required, so it defaults to
//!   1024; OpenAI-only keys are dropped.
//! - `gemini` (generateContent): roles become `user` / `model`, system
//!   messages `systemInstruction`, sampling keys move into `generationConfig`
//!   in camelCase, `output_schema` becomes `responseJsonSchema` with
//!   `responseMimeType: application/json`. The model is part of Gemini's URL,
//!   not of its body.

use serde_json::{json, Map, Value};

use crate::config::ProviderKind;
use crate::template::{Rendered, RenderedMessage};

impl ProviderKind {
    /// `gen_ai.provider.name` as OpenTelemetry's GenAI conventions spell it.
    pub fn otel_name(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gcp.gemini",
        }
    }
}

pub const ANTHROPIC_DEFAULT_MAX_TOKENS: u64 = 1024;

/// The roles a caller's chat history may carry whatever the format: every
/// adapter here knows what to do with them.
pub const HISTORY_ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

/// The roles a caller's chat history may carry when rendered for `format`
/// (none: for no particular API): [`HISTORY_ROLES`], and OpenAI's
/// `developer`, which its adapter passes through unchanged.
pub fn history_roles(format: Option<ProviderKind>) -> &'static [&'static str] {
    match format {
        Some(ProviderKind::Openai) => &["system", "user", "assistant", "tool", "developer"],
        Some(ProviderKind::Anthropic | ProviderKind::Gemini) | None => &HISTORY_ROLES,
    }
}

/// Keys only OpenAI-compatible APIs understand.
const OPENAI_ONLY: &[&str] = &[
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "n",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "response_format",
    "user",
];

/// The body to send to `format`'s API for this rendered prompt.
pub fn request_body(
    format: ProviderKind,
    rendered: &Rendered,
    model_config: &Map<String, Value>,
    output_schema: Option<&Value>,
) -> Value {
    let messages = as_messages(rendered);
    match format {
        ProviderKind::Openai => openai(&messages, model_config, output_schema),
        ProviderKind::Anthropic => anthropic(&messages, model_config),
        ProviderKind::Gemini => gemini(&messages, model_config, output_schema),
    }
}

/// A text prompt is one user message.
fn as_messages(rendered: &Rendered) -> Vec<RenderedMessage> {
    match rendered {
        Rendered::Text(text) => vec![RenderedMessage {
            role: "user".into(),
            content: text.clone(),
        }],
        Rendered::Chat(messages) => messages.clone(),
    }
}

fn openai(
    messages: &[RenderedMessage],
    config: &Map<String, Value>,
    output_schema: Option<&Value>,
) -> Value {
    let mut body = config.clone();
    body.insert("messages".into(), json!(messages));
    if let Some(schema) = output_schema {
        body.insert(
            "response_format".into(),
            json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}),
        );
    }
    Value::Object(body)
}

fn anthropic(messages: &[RenderedMessage], config: &Map<String, Value>) -> Value {
    let (system, turns) = split_system(messages);
    let mut body = Map::new();
    for (key, value) in config {
        match key.as_str() {
            "stop" => {
                let sequences = match value {
                    Value::String(s) => json!([s]),
                    other => other.clone(),
                };
                body.insert("stop_sequences".into(), sequences);
            }
            key if OPENAI_ONLY.contains(&key) => {}
            _ => {
                body.insert(key.clone(), value.clone());
            }
        }
    }
    body.entry("max_tokens")
        .or_insert(json!(ANTHROPIC_DEFAULT_MAX_TOKENS));
    if let Some(system) = system {
        body.insert("system".into(), json!(system));
    }
    let turns: Vec<Value> = turns
        .iter()
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect();
    body.insert("messages".into(), Value::Array(turns));
    Value::Object(body)
}

fn gemini(
    messages: &[RenderedMessage],
    config: &Map<String, Value>,
    output_schema: Option<&Value>,
) -> Value {
    let (system, turns) = split_system(messages);
    let contents: Vec<Value> = turns
        .iter()
        .map(|m| {
            let role = if m.role == "assistant" {
                "model"
            } else {
                "user"
            };
            json!({"role": role, "parts": [{"text": m.content}]})
        })
        .collect();
    let mut generation = Map::new();
    for (key, value) in config {
        let renamed = match key.as_str() {
            "model" => continue,
            "max_tokens" | "max_completion_tokens" => "maxOutputTokens",
            "temperature" => "temperature",
            "top_p" => "topP",
            "top_k" => "topK",
            "seed" => "seed",
            "presence_penalty" => "presencePenalty",
            "frequency_penalty" => "frequencyPenalty",
            "n" => "candidateCount",
            "stop" => {
                let sequences = match value {
                    Value::String(s) => json!([s]),
                    other => other.clone(),
                };
                generation.insert("stopSequences".into(), sequences);
                continue;
            }
            // Anything else is taken to be Gemini's own name already.
            other => other,
        };
        generation.insert(renamed.into(), value.clone());
    }
    if let Some(schema) = output_schema {
        generation.insert("responseMimeType".into(), json!("application/json"));
        generation.insert("responseJsonSchema".into(), schema.clone());
    }
    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(contents));
    if let Some(system) = system {
        body.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": system}]}),
        );
    }
    if !generation.is_empty() {
        body.insert("generationConfig".into(), Value::Object(generation));
    }
    Value::Object(body)
}

/// System messages (joined by a blank line) and the conversation without them.
fn split_system(messages: &[RenderedMessage]) -> (Option<String>, Vec<&RenderedMessage>) {
    let system: Vec<&str> = messages
        .iter()
        .filter(|m| m.role == "system")
        .map(|m| m.content.as_str())
        .collect();
    let turns = messages.iter().filter(|m| m.role != "system").collect();
    ((!system.is_empty()).then(|| system.join("\n\n")), turns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat() -> Rendered {
        let m = |role: &str, content: &str| RenderedMessage {
            role: role.into(),
            content: content.into(),
        };
        Rendered::Chat(vec![
            m("system", "Be brief."),
            m("user", "Hi"),
            m("assistant", "Hello!"),
            m("user", "Help me"),
        ])
    }

    fn config() -> Map<String, Value> {
        json!({"model": "m-1", "temperature": 0.2, "max_tokens": 50, "stop": "END", "seed": 7})
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn openai_passes_config_through_and_maps_output_schema() {
        let schema = json!({"type": "object"});
        let body = request_body(ProviderKind::Openai, &chat(), &config(), Some(&schema));
        assert_eq!(body["model"], "m-1");
        assert_eq!(body["seed"], 7);
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(body["messages"].as_array().map(Vec::len), Some(4));
        assert_eq!(body["response_format"]["type"], "json_schema");
        assert_eq!(body["response_format"]["json_schema"]["schema"], schema);
    }

    #[test]
    fn anthropic_splits_system_and_requires_max_tokens() {
        let body = request_body(ProviderKind::Anthropic, &chat(), &config(), None);
        assert_eq!(body["system"], "Be brief.");
        assert_eq!(
            body["messages"][0],
            json!({"role": "user", "content": "Hi"})
        );
        assert_eq!(body["messages"][1]["role"], "assistant");
        assert_eq!(body["stop_sequences"], json!(["END"]));
        assert_eq!(body["max_tokens"], 50);
        assert!(body.get("seed").is_none() && body.get("stop").is_none());

        let text = request_body(
            ProviderKind::Anthropic,
            &Rendered::Text("Hi".into()),
            &Map::new(),
            None,
        );
        assert_eq!(
            text,
            json!({"max_tokens": 1024, "messages": [{"role": "user", "content": "Hi"}]})
        );
    }

    #[test]
    fn gemini_uses_contents_system_instruction_and_generation_config() {
        let schema = json!({"type": "object"});
        let body = request_body(ProviderKind::Gemini, &chat(), &config(), Some(&schema));
        assert_eq!(
            body["systemInstruction"],
            json!({"parts": [{"text": "Be brief."}]})
        );
        assert_eq!(
            body["contents"][0],
            json!({"role": "user", "parts": [{"text": "Hi"}]})
        );
        assert_eq!(body["contents"][1]["role"], "model");
        let generation = &body["generationConfig"];
        assert_eq!(generation["maxOutputTokens"], 50);
        assert_eq!(generation["stopSequences"], json!(["END"]));
        assert_eq!(generation["responseMimeType"], "application/json");
        assert_eq!(generation["responseJsonSchema"], schema);
        assert!(body.get("model").is_none() && generation.get("model").is_none());
    }
}
