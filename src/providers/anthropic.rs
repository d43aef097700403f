//! The Anthropic Messages client: POST `{base_url}/v1/messages` (the host
//! root) with `x-api-key` and `anthropic-version`; the reply's text is its
//! text blocks joined. Only the URL, body and reply shape live here; limits
//! and retries are `client`'s.

use serde_json::Value;

use super::client::{count, json_reply, reply_model, Parsed};
use super::{ProviderError, Usage};

pub(super) const API_VERSION: &str = "2023-06-01";

/// Where a request goes: `{base_url}/v1/messages` (base_url is the host root).
pub(super) fn endpoint(base_url: &str) -> String {
    format!("{base_url}/v1/messages")
}

/// The `text` of every `content` block of type text, concatenated (thinking
/// and tool-use blocks are not the answer), and `usage`.
pub(super) fn parse_reply(bytes: &[u8]) -> Result<Parsed, ProviderError> {
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
        model: reply_model(&reply, "/model"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
