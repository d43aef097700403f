//! What static analysis of one template yields, whichever the engine: the
//! variable paths it reads, the registry partials it includes, and problems
//! located by line and column. Also the rules both engines share: how an
//! include name is parsed and when a caller's input counts as giving a path.
//! Nothing here knows a template syntax.

use serde_json::Value;

use super::Include;
use crate::domain::{PromptName, VersionRef};

/// One read of caller input, as a path from the root of the variables object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct VarRead {
    pub path: Vec<String>,
    /// False when the template copes with the value being absent (the first
    /// argument of `default`, a jinja `is defined` test), so the up-front
    /// check does not demand it.
    pub required: bool,
}

impl VarRead {
    pub fn dotted(&self) -> String {
        self.path.join(".")
    }
}

/// A problem found in one template, located where the engine could tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Problem {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

/// The result of analysing one template.
#[derive(Debug, Default)]
pub(super) struct Analysis {
    pub reads: Vec<VarRead>,
    pub includes: Vec<Include>,
    /// Names no helper, filter or test answers to. They only fail a render
    /// that reaches them, so they are reported by `check` and nowhere else.
    pub unknown_names: Vec<Problem>,
}

/// Parses what a template wrote as an include: `NAME` or `NAME@REF`, where
/// NAME is a prompt name and REF a semver or a label.
pub(super) fn parse_include(raw: &str) -> Result<Include, String> {
    let (prompt, reference) = match raw.split_once('@') {
        Some((prompt, reference)) => (prompt, Some(reference)),
        None => (raw, None),
    };
    PromptName::parse(prompt).map_err(|e| format!("include {raw:?}: {e}"))?;
    if let Some(reference) = reference {
        VersionRef::parse(reference).map_err(|e| format!("include {raw:?}: {e}"))?;
    }
    Ok(Include {
        prompt: prompt.to_owned(),
        reference: reference.map(str::to_owned),
    })
}

/// Whether `variables` gives `path`. An explicit `null` part-way down counts
/// as given: it is how a caller says "no customer", and a template that
/// guards with `if` must not be refused for it. Reading through that null
/// unguarded still fails in the engine.
pub(super) fn is_given(variables: &Value, path: &[String]) -> bool {
    let Value::Object(root) = variables else {
        return path.is_empty();
    };
    let Some((first, rest)) = path.split_first() else {
        return true;
    };
    let Some(mut current) = root.get(first) else {
        return false;
    };
    for segment in rest {
        current = match current {
            Value::Null => return true,
            Value::Object(map) => match map.get(segment) {
                Some(value) => value,
                None => return false,
            },
            Value::Array(items) => match segment.parse::<usize>().ok().and_then(|i| items.get(i)) {
                Some(value) => value,
                None => return false,
            },
            _ => return false,
        };
    }
    true
}

/// Converts a 0-based byte offset in `source` to a 1-based column (in characters).
pub(super) fn column_at(source: &str, offset: usize) -> usize {
    let before = source.get(..offset).unwrap_or(source);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    before[line_start..].chars().count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(dotted: &str) -> Vec<String> {
        dotted.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn include_names_parse_with_and_without_a_reference() {
        let cases = [
            ("common/safety", "common/safety", None),
            ("common/safety@1.2.0", "common/safety", Some("1.2.0")),
            ("a.b_c-d@production", "a.b_c-d", Some("production")),
            ("x@1.0.0-rc.1", "x", Some("1.0.0-rc.1")),
        ];
        for (raw, prompt, reference) in cases {
            let include = parse_include(raw).expect(raw);
            assert_eq!(include.prompt, prompt, "{raw}");
            assert_eq!(include.reference.as_deref(), reference, "{raw}");
            assert_eq!(include.key(), raw);
        }
    }

    #[test]
    fn include_names_refuse_bad_names_and_references_with_a_reason() {
        let cases = [
            ("Common", "must start"),
            ("'common/safety'", "must start"),
            ("[common/safety]", "must start"),
            ("a//b", "empty"),
            ("x@", "neither a semver"),
            ("x@1.2", "not a valid semver"),
            ("x@Prod", "neither a semver"),
            ("x@a@b", "neither a semver"),
        ];
        for (raw, why) in cases {
            let err = parse_include(raw).expect_err(raw);
            assert!(err.contains(why), "{raw:?}: {err} lacks {why:?}");
        }
    }

    #[test]
    fn a_path_is_given_only_when_every_segment_exists() {
        let vars = json!({"a": 1, "b": {"c": 2}, "items": [{"x": 1}], "n": null, "s": "str"});
        for given in ["a", "b", "b.c", "items.0.x", "n", "n.deep.er"] {
            assert!(is_given(&vars, &path(given)), "{given}");
        }
        for missing in ["z", "b.d", "items.1", "items.x", "s.len", "a.b"] {
            assert!(!is_given(&vars, &path(missing)), "{missing}");
        }
    }

    #[test]
    fn nothing_is_given_when_the_variables_are_not_an_object() {
        assert!(!is_given(&json!(null), &path("a")));
        assert!(!is_given(&json!([1]), &path("0")));
    }

    #[test]
    fn columns_count_characters_from_the_line_start() {
        let source = "ab\ncdé{{x";
        assert_eq!(column_at(source, 0), 1);
        assert_eq!(column_at(source, 3), 1);
        assert_eq!(column_at(source, source.len()), 7);
    }
}
