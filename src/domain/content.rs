//! What a version holds: its template (text) or messages (chat), the engine
//! that renders it, model settings and schemas, and the hash that identifies
//! that content.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PromptType {
    Text,
    Chat,
}

impl PromptType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Chat => "chat",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    #[default]
    Handlebars,
    Jinja,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Handlebars => "handlebars",
            Self::Jinja => "jinja",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "handlebars" => Some(Self::Handlebars),
            "jinja" => Some(Self::Jinja),
            _ => None,
        }
    }
}

/// One entry of a chat prompt: a message whose `content` is a template, or a
/// placeholder that a caller's array of messages expands at render time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "role", rename_all = "lowercase", deny_unknown_fields)]
pub enum ChatMessage {
    #[schema(title = "system")]
    System { content: String },
    #[schema(title = "user")]
    User { content: String },
    #[schema(title = "assistant")]
    Assistant { content: String },
    /// Expands the array variable `name` (of `{role, content}` messages) here.
    #[schema(title = "placeholder")]
    Placeholder { name: String },
}

impl ChatMessage {
    /// The message's template; a placeholder has none.
    pub fn content(&self) -> Option<&str> {
        match self {
            Self::System { content } | Self::User { content } | Self::Assistant { content } => {
                Some(content)
            }
            Self::Placeholder { .. } => None,
        }
    }

    pub fn role(&self) -> &'static str {
        match self {
            Self::System { .. } => "system",
            Self::User { .. } => "user",
            Self::Assistant { .. } => "assistant",
            Self::Placeholder { .. } => "placeholder",
        }
    }
}

/// A template: the text, or the chat messages (as JSON, a string or an array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PromptBody {
    Text(String),
    Chat(Vec<ChatMessage>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PromptContent {
    pub body: PromptBody,
    pub engine: Engine,
    pub model_config: Map<String, Value>,
    pub input_schema: Option<Value>,
    pub output_schema: Option<Value>,
}

impl PromptContent {
    pub fn prompt_type(&self) -> PromptType {
        match self.body {
            PromptBody::Text(_) => PromptType::Text,
            PromptBody::Chat(_) => PromptType::Chat,
        }
    }

    pub fn template(&self) -> Option<&str> {
        match &self.body {
            PromptBody::Text(t) => Some(t),
            PromptBody::Chat(_) => None,
        }
    }

    pub fn messages(&self) -> Option<&[ChatMessage]> {
        match &self.body {
            PromptBody::Text(_) => None,
            PromptBody::Chat(m) => Some(m),
        }
    }

    /// The content as one JSON object, the form that is hashed and diffed.
    pub fn to_canonical_value(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("type".into(), self.prompt_type().as_str().into());
        obj.insert("engine".into(), self.engine.as_str().into());
        match &self.body {
            PromptBody::Text(t) => obj.insert("template".into(), t.clone().into()),
            PromptBody::Chat(m) => obj.insert("messages".into(), json_of(m)),
        };
        obj.insert(
            "model_config".into(),
            Value::Object(self.model_config.clone()),
        );
        obj.insert(
            "input_schema".into(),
            self.input_schema.clone().unwrap_or(Value::Null),
        );
        obj.insert(
            "output_schema".into(),
            self.output_schema.clone().unwrap_or(Value::Null),
        );
        Value::Object(obj)
    }

    /// sha256 (hex) of the canonical JSON: object keys sorted at every depth,
    /// no insignificant white space. Equal content, equal hash.
    pub fn content_hash(&self) -> String {
        let mut canonical = String::new();
        write_canonical(&self.to_canonical_value(), &mut canonical);
        hex::encode(Sha256::digest(canonical.as_bytes()))
    }
}

fn json_of(messages: &[ChatMessage]) -> Value {
    // Serializing a plain enum of strings into a Value cannot fail.
    serde_json::to_value(messages).unwrap_or(Value::Null)
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(template: &str, config: Value) -> PromptContent {
        PromptContent {
            body: PromptBody::Text(template.into()),
            engine: Engine::Handlebars,
            model_config: config.as_object().cloned().unwrap_or_default(),
            input_schema: None,
            output_schema: None,
        }
    }

    #[test]
    fn hash_ignores_key_order_at_every_depth() {
        let a = text(
            "Hi {{name}}",
            json!({"model": "m", "params": {"a": 1, "b": [1, {"y": 2, "x": 1}]}}),
        );
        let b = text(
            "Hi {{name}}",
            json!({"params": {"b": [1, {"x": 1, "y": 2}], "a": 1}, "model": "m"}),
        );
        assert_eq!(a.content_hash(), b.content_hash());
    }

    #[test]
    fn hash_changes_with_any_content_field() {
        let base = text("Hi {{name}}", json!({}));
        let mut jinja = base.clone();
        jinja.engine = Engine::Jinja;
        let mut schema = base.clone();
        schema.input_schema = Some(json!({"type": "object"}));
        let hashes = [
            base.content_hash(),
            text("Hi {{ name }}", json!({})).content_hash(),
            text("Hi {{name}}", json!({"temperature": 0})).content_hash(),
            jinja.content_hash(),
            schema.content_hash(),
        ];
        let unique: std::collections::HashSet<_> = hashes.iter().collect();
        assert_eq!(unique.len(), hashes.len());
        assert_eq!(hashes[0].len(), 64);
    }

    #[test]
    fn chat_messages_use_role_as_tag() {
        let parsed: Vec<ChatMessage> = serde_json::from_value(json!([
            {"role": "system", "content": "Be brief."},
            {"role": "placeholder", "name": "history"},
        ]))
        .expect("valid messages");
        assert_eq!(
            parsed[1],
            ChatMessage::Placeholder {
                name: "history".into()
            }
        );
        let bad: Result<Vec<ChatMessage>, _> =
            serde_json::from_value(json!([{"role": "robot", "content": "x"}]));
        assert!(bad.is_err());
    }
}

/// A problem with one content field, named as in the API and in prompt files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentError {
    pub field: String,
    pub message: String,
}

/// The content fields that posting a version and rendering unsaved content share.
#[derive(Debug, Clone, Default)]
pub struct ContentFields {
    pub prompt_type: Option<PromptType>,
    pub template: Option<String>,
    pub messages: Option<Vec<ChatMessage>>,
    pub engine: Option<Engine>,
    pub model_config: Option<Map<String, Value>>,
    pub input_schema: Option<Value>,
    pub output_schema: Option<Value>,
}

/// Moves the [`ContentFields`] out of a request that carries them under
/// their own names (a `/v1` version post, an unsaved render).
macro_rules! content_fields_of {
    ($request:ident) => {
        $crate::domain::content::ContentFields {
            prompt_type: $request.prompt_type,
            template: $request.template,
            messages: $request.messages,
            engine: $request.engine,
            model_config: $request.model_config,
            input_schema: $request.input_schema,
            output_schema: $request.output_schema,
        }
    };
}
pub(crate) use content_fields_of;

/// Checks the content's shape, adding every problem to `errors`.
pub fn parse_content(
    fields: ContentFields,
    errors: &mut Vec<ContentError>,
) -> Option<PromptContent> {
    let mut fail = |field: &str, message: &str| {
        errors.push(ContentError {
            field: field.to_owned(),
            message: message.to_owned(),
        })
    };
    let prompt_type = match (fields.prompt_type, &fields.template, &fields.messages) {
        (Some(t), ..) => Some(t),
        (None, Some(_), None) => Some(PromptType::Text),
        (None, None, Some(_)) => Some(PromptType::Chat),
        (None, None, None) => {
            fail(
                "type",
                "give `type` with `template` (text) or `messages` (chat)",
            );
            None
        }
        (None, Some(_), Some(_)) => {
            fail("template", "give `template` or `messages`, not both");
            None
        }
    };
    let body = match (prompt_type, fields.template, fields.messages) {
        (Some(PromptType::Text), Some(t), None) => Some(PromptBody::Text(t)),
        (Some(PromptType::Chat), None, Some(m)) if m.is_empty() => {
            fail("messages", "a chat prompt needs at least one message");
            None
        }
        (Some(PromptType::Chat), None, Some(m)) => Some(PromptBody::Chat(m)),
        (Some(PromptType::Text), _, Some(_)) => {
            fail("messages", "a text prompt has `template`, not `messages`");
            None
        }
        (Some(PromptType::Text), None, None) => {
            fail("template", "a text prompt needs `template`");
            None
        }
        (Some(PromptType::Chat), Some(_), _) => {
            fail("template", "a chat prompt has `messages`, not `template`");
            None
        }
        (Some(PromptType::Chat), None, None) => {
            fail("messages", "a chat prompt needs `messages`");
            None
        }
        (None, ..) => None,
    };
    for (field, schema) in [
        ("input_schema", &fields.input_schema),
        ("output_schema", &fields.output_schema),
    ] {
        if schema
            .as_ref()
            .is_some_and(|s| !(s.is_object() || s.is_boolean()))
        {
            fail(field, "a JSON Schema is an object or a boolean");
        }
    }
    Some(PromptContent {
        body: body?,
        engine: fields.engine.unwrap_or_default(),
        model_config: fields.model_config.unwrap_or_default(),
        input_schema: fields.input_schema,
        output_schema: fields.output_schema,
    })
}

/// One content field that differs between two versions.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangedField {
    pub field: String,
    pub from: Value,
    pub to: Value,
}

/// How two contents differ: field by field, and as a unified diff of the
/// template or messages (empty when those are equal).
#[derive(Debug, Clone, PartialEq)]
pub struct ContentDiff {
    pub changes: Vec<ChangedField>,
    pub diff: String,
}

pub fn diff_contents(
    from: &PromptContent,
    to: &PromptContent,
    from_label: &str,
    to_label: &str,
) -> ContentDiff {
    let (old, new) = (from.to_canonical_value(), to.to_canonical_value());
    let mut fields: Vec<&String> = old
        .as_object()
        .into_iter()
        .chain(new.as_object())
        .flat_map(|o| o.keys())
        .collect();
    fields.sort();
    fields.dedup();
    let changes = fields
        .into_iter()
        .filter(|f| old.get(f.as_str()) != new.get(f.as_str()))
        .map(|f| ChangedField {
            field: f.clone(),
            from: old.get(f.as_str()).cloned().unwrap_or(Value::Null),
            to: new.get(f.as_str()).cloned().unwrap_or(Value::Null),
        })
        .collect();
    let (old_text, new_text) = (diffable_text(from), diffable_text(to));
    let diff = if old_text == new_text {
        String::new()
    } else {
        similar::TextDiff::from_lines(&old_text, &new_text)
            .unified_diff()
            .header(from_label, to_label)
            .to_string()
    };
    ContentDiff { changes, diff }
}

/// The template, or the messages as `[role]` blocks, so line diffs read naturally.
fn diffable_text(content: &PromptContent) -> String {
    let mut text = match &content.body {
        PromptBody::Text(t) => t.clone(),
        PromptBody::Chat(messages) => messages
            .iter()
            .map(|m| match m {
                ChatMessage::System { content }
                | ChatMessage::User { content }
                | ChatMessage::Assistant { content } => format!("[{}]\n{content}", m.role()),
                ChatMessage::Placeholder { name } => format!("[placeholder: {name}]"),
            })
            .collect::<Vec<_>>()
            .join("\n"),
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// A piece of a line in a side-by-side or unified diff; `changed` marks the
/// words that differ from the paired line on the other side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffSpan {
    pub text: String,
    pub changed: bool,
}

/// One line of one side, numbered from 1 in its own text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffLine {
    pub number: usize,
    pub spans: Vec<DiffSpan>,
}

/// A run of lines that are equal on both sides (`changed` false: `old` and
/// `new` hold the same text), or that were replaced, removed or added.
/// Replaced lines pair up in order, each pair with word-level highlights;
/// lines without a partner are highlighted whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffBlock {
    pub changed: bool,
    pub old: Vec<DiffLine>,
    pub new: Vec<DiffLine>,
}

/// The template or messages of `from` against `to`: a line diff, then a
/// word diff inside each pair of replaced lines.
pub fn diff_text_blocks(from: &PromptContent, to: &PromptContent) -> Vec<DiffBlock> {
    diff_lines(&diffable_text(from), &diffable_text(to))
}

/// Two texts compared line by line, then word by word inside each pair of
/// replaced lines.
pub fn diff_lines(old_text: &str, new_text: &str) -> Vec<DiffBlock> {
    let diff = similar::TextDiff::from_lines(old_text, new_text);
    let old_lines: Vec<&str> = diff.old_slices().iter().map(|l| trim_eol(l)).collect();
    let new_lines: Vec<&str> = diff.new_slices().iter().map(|l| trim_eol(l)).collect();
    let whole = |lines: &[&str], start: usize, len: usize, changed: bool| -> Vec<DiffLine> {
        (start..start + len)
            .map(|i| DiffLine {
                number: i + 1,
                spans: vec![DiffSpan {
                    text: lines[i].to_owned(),
                    changed,
                }],
            })
            .collect()
    };
    let mut blocks = Vec::new();
    for op in diff.ops() {
        let (_, old_range, new_range) = op.as_tag_tuple();
        let (old_len, new_len) = (old_range.len(), new_range.len());
        if let similar::DiffOp::Equal { .. } = op {
            blocks.push(DiffBlock {
                changed: false,
                old: whole(&old_lines, old_range.start, old_len, false),
                new: whole(&new_lines, new_range.start, new_len, false),
            });
            continue;
        }
        let paired = old_len.min(new_len);
        let mut old = Vec::with_capacity(old_len);
        let mut new = Vec::with_capacity(new_len);
        for k in 0..paired {
            let (i, j) = (old_range.start + k, new_range.start + k);
            let (old_spans, new_spans) = word_spans(old_lines[i], new_lines[j]);
            old.push(DiffLine {
                number: i + 1,
                spans: old_spans,
            });
            new.push(DiffLine {
                number: j + 1,
                spans: new_spans,
            });
        }
        old.extend(whole(
            &old_lines,
            old_range.start + paired,
            old_len - paired,
            true,
        ));
        new.extend(whole(
            &new_lines,
            new_range.start + paired,
            new_len - paired,
            true,
        ));
        blocks.push(DiffBlock {
            changed: true,
            old,
            new,
        });
    }
    blocks
}

fn trim_eol(line: &str) -> &str {
    line.strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(line)
}

/// Both lines as spans, with the words only one of them has marked changed
/// (neighbouring spans of the same kind merged).
fn word_spans(old: &str, new: &str) -> (Vec<DiffSpan>, Vec<DiffSpan>) {
    let diff = similar::TextDiff::from_words(old, new);
    let (mut old_spans, mut new_spans) = (Vec::new(), Vec::new());
    for change in diff.iter_all_changes() {
        let text = change.value();
        match change.tag() {
            similar::ChangeTag::Equal => {
                push_span(&mut old_spans, text, false);
                push_span(&mut new_spans, text, false);
            }
            similar::ChangeTag::Delete => push_span(&mut old_spans, text, true),
            similar::ChangeTag::Insert => push_span(&mut new_spans, text, true),
        }
    }
    (old_spans, new_spans)
}

fn push_span(spans: &mut Vec<DiffSpan>, text: &str, changed: bool) {
    match spans.last_mut() {
        Some(last) if last.changed == changed => last.text.push_str(text),
        _ => spans.push(DiffSpan {
            text: text.to_owned(),
            changed,
        }),
    }
}

#[cfg(test)]
mod diff_tests {
    use super::*;

    fn text(template: &str) -> PromptContent {
        PromptContent {
            body: PromptBody::Text(template.into()),
            engine: Engine::Handlebars,
            model_config: Map::new(),
            input_schema: None,
            output_schema: None,
        }
    }

    fn marked(spans: &[DiffSpan]) -> String {
        spans
            .iter()
            .map(|s| {
                if s.changed {
                    format!("[{}]", s.text)
                } else {
                    s.text.clone()
                }
            })
            .collect()
    }

    #[test]
    fn replaced_lines_are_paired_with_the_changed_words_marked() {
        let blocks = diff_text_blocks(
            &text("Intro\nHello {{name}}, welcome!\nBye"),
            &text("Intro\nHello {{name}}, goodbye!\nBye\nPS"),
        );
        assert_eq!(blocks.len(), 4, "{blocks:?}");
        assert!(!blocks[0].changed);
        assert_eq!(blocks[0].old[0].number, 1);
        assert!(blocks[1].changed);
        assert_eq!(
            marked(&blocks[1].old[0].spans),
            "Hello {{name}}, [welcome!]"
        );
        assert_eq!(
            marked(&blocks[1].new[0].spans),
            "Hello {{name}}, [goodbye!]"
        );
        assert!(!blocks[2].changed);
        assert!(blocks[3].old.is_empty());
        assert_eq!(marked(&blocks[3].new[0].spans), "[PS]");
        assert_eq!(blocks[3].new[0].number, 4);
    }

    #[test]
    fn equal_content_is_one_unchanged_block() {
        let blocks = diff_text_blocks(&text("a\nb"), &text("a\nb"));
        assert_eq!(blocks.len(), 1);
        assert!(!blocks[0].changed);
        assert_eq!(blocks[0].old, blocks[0].new);
    }
}
