//! The OpenAI Chat Completions client, which also serves every
//! OpenAI-compatible server (vLLM, Ollama, LM Studio, LiteLLM, OpenRouter)
//! through `base_url`: POST `{base_url}/chat/completions` with the model in
//! the body and `Authorization: Bearer KEY` when a key is configured. Only
//! the URL, body and reply shape live here; limits and retries are `client`'s.

use serde_json::Value;

use super::client::{count, json_reply, reply_model, Parsed};
use super::{ProviderError, Usage};

/// Where a request goes: `{base_url}/chat/completions` (base_url ends in `/v1`).
pub(super) fn endpoint(base_url: &str) -> String {
    format!("{base_url}/chat/completions")
}

/// `choices[0].message.content` and `usage`. A null content (a refusal, or
/// only tool calls) reads as empty text: the model did answer.
pub(super) fn parse_reply(bytes: &[u8]) -> Result<Parsed, ProviderError> {
    let reply = json_reply(bytes)?;
    let message = reply
        .pointer("/choices/0/message")
        .filter(|m| m.is_object())
        .ok_or_else(|| ProviderError::Malformed("no choices[0].message".into()))?;
    let text = match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        None | Some(Value::Null) => String::new(),
        Some(_) => {
            return Err(ProviderError::Malformed(
                "choices[0].message.content is not text".into(),
            ))
        }
    };
    Ok(Parsed {
        text,
        usage: Usage {
            input_tokens: count(&reply, "/usage/prompt_tokens"),
            output_tokens: count(&reply, "/usage/completion_tokens"),
        },
        model: reply_model(&reply, "/model"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_text_and_usage() {
        let reply = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "Hello!", "refusal": null}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
        });
        let parsed = parse_reply(reply.to_string().as_bytes()).expect("parse");
        assert_eq!(parsed.text, "Hello!");
        assert_eq!(
            parsed.usage,
            Usage {
                input_tokens: 12,
                output_tokens: 3
            }
        );
    }

    #[test]
    fn missing_usage_is_zero_and_null_content_is_empty() {
        let reply = json!({"choices": [{"message": {"role": "assistant", "content": null}}]});
        let parsed = parse_reply(reply.to_string().as_bytes()).expect("parse");
        assert_eq!(parsed.text, "");
        assert_eq!(parsed.usage, Usage::default());
    }

    #[test]
    fn other_shapes_are_malformed() {
        for body in [
            "not json",
            "{}",
            r#"{"choices": []}"#,
            r#"{"choices": [{"message": "hi"}]}"#,
            r#"{"choices": [{"message": {"content": ["a"]}}]}"#,
        ] {
            let err = parse_reply(body.as_bytes()).expect_err(body);
            assert_eq!(err.code(), "provider_malformed_reply", "{body}");
        }
    }
}
