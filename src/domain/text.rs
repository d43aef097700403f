//! Rules for free text every caller sends: NUL (U+0000) has no place in a
//! prompt, and Postgres refuses it in `text` and `jsonb`, so it is refused at
//! the edge on both backends alike.

use serde_json::Value;

/// What a caller is told about a NUL character.
pub const NUL_MESSAGE: &str = "contains a NUL character (U+0000), which is not allowed";

/// Whether a string holds a NUL character.
pub fn has_nul(text: &str) -> bool {
    text.contains('\0')
}

/// The path of the first string (or object key) in `value` holding a NUL,
/// written as serde paths are (`messages[0].content`); `""` is the value itself.
pub fn nul_path(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => has_nul(text).then(String::new),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path(item).map(|inner| format!("[{i}]{inner}"))),
        Value::Object(object) => object.iter().find_map(|(key, item)| {
            if has_nul(key) {
                // The key cannot be shown as it is; name its parent.
                return Some(String::new());
            }
            nul_path(item).map(|inner| format!(".{key}{inner}"))
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

/// A path from `nul_path` as a field name: no leading dot; `root` for `""`.
pub fn field_name(path: &str, root: &str) -> String {
    match path.strip_prefix('.').unwrap_or(path) {
        "" => root.to_owned(),
        rest if rest.starts_with('[') => format!("{root}{rest}"),
        rest => rest.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_path_names_the_first_string_with_nul() {
        let cases = [
            (json!({"description": "a\u{0}b"}), Some("description")),
            (json!({"tags": ["x", "\u{0}"]}), Some("tags[1]")),
            (
                json!({"messages": [{"role": "user", "content": "hi\u{0}"}]}),
                Some("messages[0].content"),
            ),
            (json!({"metadata": {"k\u{0}": 1}}), Some("metadata")),
            (json!("\u{0}"), Some("body")),
            (json!(["\u{0}"]), Some("body[0]")),
            (json!({"a": "\\u0000", "b": [1, null, true]}), None),
        ];
        for (value, expected) in cases {
            let found = nul_path(&value).map(|p| field_name(&p, "body"));
            assert_eq!(found.as_deref(), expected, "{value}");
        }
    }
}
