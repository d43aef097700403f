//! The Anthropic Messages client: POST `{base_url}/v1/messages` (the host
//! root) with `x-api-key` and `anthropic-version`; the reply's text is its
//! text blocks joined. Only the URL, body and reply shape live here; limits
//! and retries are `client`'s.

use serde_json::{json, Value};

use super::client::{count, json_reply, Auth, Core, Parsed};
use super::requests::request_body;
use super::{Completion, CompletionRequest, LlmProvider, ProviderError, ProviderKind, Usage};
use crate::config::ProviderConfig;

const API_VERSION: &str = "2023-06-01";

pub(crate) struct Anthropic {
    core: Core,
}

impl Anthropic {
    pub fn new(name: &str, config: &ProviderConfig, http: reqwest::Client) -> anyhow::Result<Self> {
        let core = Core::new(
            name,
            config,
            http,
            Auth::RequiredHeader("x-api-key"),
            &[("anthropic-version", API_VERSION)],
        )?;
        Ok(Self { core })
    }
}

#[async_trait::async_trait]
impl LlmProvider for Anthropic {
    fn name(&self) -> &str {
        &self.core.name
    }

    fn kind(&self) -> ProviderKind {
        self.core.kind
    }

    fn default_model(&self) -> Option<&str> {
        self.core.default_model.as_deref()
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, ProviderError> {
        let model = self.core.prepare(request)?;
        let mut body = request_body(
            ProviderKind::Anthropic,
            &request.rendered,
            &self.core.params(request),
            request.output_schema.as_ref(),
        );
        if let Some(fields) = body.as_object_mut() {
            fields.insert("model".into(), json!(model));
        }
        let url = format!("{}/v1/messages", self.core.base_url);
        self.core.call(&url, &body, model, parse_reply).await
    }
}

/// The `text` of every `content` block of type text, concatenated (thinking
/// and tool-use blocks are not the answer), and `usage`.
fn parse_reply(bytes: &[u8]) -> Result<Parsed, ProviderError> {
    let reply = json_reply(bytes)?;
    let blocks = reply
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| ProviderError::Malformed("no content array".into()))?;
    let mut text = String::new();
    for block in blocks {
        if block.get("type").and_then(Value::as_str) == Some("text") {
            let part = block
                .get("text")
                .and_then(Value::as_str)
                .ok_or_else(|| ProviderError::Malformed("a text block without text".into()))?;
            text.push_str(part);
        }
    }
    Ok(Parsed {
        text,
        usage: Usage {
            input_tokens: count(&reply, "/usage/input_tokens"),
            output_tokens: count(&reply, "/usage/output_tokens"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_text_blocks_and_reads_usage() {
        let reply = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Hello"},
                {"type": "text", "text": ", world"}
            ],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 20, "output_tokens": 5}
        });
        let parsed = parse_reply(reply.to_string().as_bytes()).expect("parse");
        assert_eq!(parsed.text, "Hello, world");
        assert_eq!(
            parsed.usage,
            Usage {
                input_tokens: 20,
                output_tokens: 5
            }
        );
    }

    #[test]
    fn other_shapes_are_malformed() {
        for body in [
            "<html>",
            r#"{"type": "message"}"#,
            r#"{"content": "Hello"}"#,
            r#"{"content": [{"type": "text"}]}"#,
        ] {
            let err = parse_reply(body.as_bytes()).expect_err(body);
            assert_eq!(err.code(), "provider_malformed_reply", "{body}");
        }
    }
}
