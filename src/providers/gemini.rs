//! The Gemini generateContent client: POST
//! `{base_url}/v1beta/models/{model}:generateContent` (the host root) with
//! `x-goog-api-key`; the model is in the URL, not the body. Only the URL,
//! body and reply shape live here; limits and retries are `client`'s.

use serde_json::Value;

use super::client::{count, json_reply, reply_model, Parsed};
use super::{ProviderError, Usage};

/// Where a request goes: `{base_url}/v1beta/models/{model}:generateContent`
/// (base_url is the host root; the model is in the URL, not the body).
pub(super) fn endpoint(base_url: &str, model: &str) -> String {
    format!(
        "{base_url}/v1beta/models/{}:generateContent",
        model_segment(model)
    )
}

/// The model as one URL path segment: without the `models/` prefix Gemini's
/// own names carry, and percent-encoded so a name cannot change the path.
fn model_segment(model: &str) -> String {
    let model = model.strip_prefix("models/").unwrap_or(model);
    let mut segment = String::with_capacity(model.len());
    for byte in model.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            segment.push(char::from(byte));
        } else {
            segment.push_str(&format!("%{byte:02X}"));
        }
    }
    segment
}

/// `candidates[0].content.parts[].text` joined, leaving out thought parts,
/// and `usageMetadata`, whose output count includes thinking tokens (they
/// are billed as output). No candidates at all means the prompt was blocked.
pub(super) fn parse_reply(bytes: &[u8]) -> Result<Parsed, ProviderError> {
    let reply = json_reply(bytes)?;
    let candidate = reply.pointer("/candidates/0").ok_or_else(|| {
        let reason = reply
            .pointer("/promptFeedback/blockReason")
            .and_then(Value::as_str)
            .map_or_else(String::new, |r| format!(" (blocked: {r})"));
        ProviderError::Malformed(format!("no candidates{reason}"))
    })?;
    // A candidate stopped early (safety, length) may carry no parts.
    let parts = match candidate.pointer("/content/parts") {
        None => &[][..],
        Some(Value::Array(parts)) => parts.as_slice(),
        Some(_) => {
            return Err(ProviderError::Malformed(
                "content.parts is not a list".into(),
            ))
        }
    };
    let text: String = parts
        .iter()
        .filter(|part| part.get("thought").and_then(Value::as_bool) != Some(true))
        .filter_map(|part| part.get("text").and_then(Value::as_str))
        .collect();
    Ok(Parsed {
        text,
        usage: Usage {
            input_tokens: count(&reply, "/usageMetadata/promptTokenCount"),
            output_tokens: count(&reply, "/usageMetadata/candidatesTokenCount")
                + count(&reply, "/usageMetadata/thoughtsTokenCount"),
        },
        model: reply_model(&reply, "/modelVersion"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn joins_parts_without_thoughts_and_counts_thinking_as_output() {
        let reply = json!({
            "candidates": [{
                "content": {"role": "model", "parts": [
                    {"text": "planning…", "thought": true},
                    {"text": "Hello"},
                    {"text": " there"}
                ]},
                "finishReason": "STOP"
            }],
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 4,
                              "thoughtsTokenCount": 6, "totalTokenCount": 19},
            "modelVersion": "gemini-2.5-flash"
        });
        let parsed = parse_reply(reply.to_string().as_bytes()).expect("parse");
        assert_eq!(parsed.text, "Hello there");
        assert_eq!(
            parsed.usage,
            Usage {
                input_tokens: 9,
                output_tokens: 10
            }
        );
    }

    #[test]
    fn a_candidate_without_parts_is_empty_text() {
        let reply = json!({"candidates": [{"finishReason": "SAFETY"}]});
        let parsed = parse_reply(reply.to_string().as_bytes()).expect("parse");
        assert_eq!(parsed.text, "");
    }

    #[test]
    fn no_candidates_is_malformed_and_says_why() {
        let reply = json!({"promptFeedback": {"blockReason": "SAFETY"}});
        let err = parse_reply(reply.to_string().as_bytes()).expect_err("blocked");
        assert!(err.to_string().contains("blocked: SAFETY"), "{err}");
        for body in ["", "[]", r#"{"candidates": [{"content": {"parts": "x"}}]}"#] {
            let err = parse_reply(body.as_bytes()).expect_err(body);
            assert_eq!(err.code(), "provider_malformed_reply", "{body}");
        }
    }

    #[test]
    fn model_names_become_one_path_segment() {
        assert_eq!(model_segment("gemini-2.5-flash"), "gemini-2.5-flash");
        assert_eq!(model_segment("models/gemini-2.0-flash"), "gemini-2.0-flash");
        assert_eq!(model_segment("a/b?c#d:e"), "a%2Fb%3Fc%23d%3Ae");
    }
}
