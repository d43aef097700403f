//! Validated names: prompt names, label names and version references.
//! Parse once at the edge; inner code takes these types and trusts them.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

const PROMPT_NAME_MAX: usize = 128;
const LABEL_NAME_MAX: usize = 64;

/// What a [`PromptName`]-shaped name names. Datasets follow the prompt-name
/// rules; their errors must still say "dataset".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Prompt,
    Dataset,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Prompt => "prompt",
            Self::Dataset => "dataset",
        })
    }
}

/// `[a-z0-9][a-z0-9._/-]{0,127}`; `/` separates folders, so empty, `.` and
/// `..` segments are refused (names become file paths in `pull`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PromptName(String);

impl PromptName {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        Self::parse_as(NameKind::Prompt, raw)
    }

    /// Parses a name of `kind` that follows the prompt-name rules; errors
    /// say which kind of name was refused (`dataset name "Bad Name" …`).
    pub fn parse_as(kind: NameKind, raw: &str) -> Result<Self, NameError> {
        let first_ok = raw
            .as_bytes()
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !first_ok {
            return Err(NameError(format!(
                "{kind} name {raw:?} must start with a lower-case letter or a digit"
            )));
        }
        if raw.len() > PROMPT_NAME_MAX {
            return Err(NameError(format!(
                "{kind} name is {} characters long; at most {PROMPT_NAME_MAX} are allowed",
                raw.len()
            )));
        }
        // One pass over the bytes (every allowed character is ASCII): a
        // refused character is reported before a bad folder segment.
        let bytes = raw.as_bytes();
        let mut segment_start = 0;
        let mut bad_segment = false;
        for (at, &byte) in bytes.iter().enumerate() {
            match byte {
                b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => {}
                b'/' => {
                    bad_segment |= is_bad_segment(&bytes[segment_start..at]);
                    segment_start = at + 1;
                }
                _ => {
                    // Every byte before `at` is ASCII, so `at` starts a character.
                    let bad = raw[at..]
                        .chars()
                        .next()
                        .unwrap_or(char::REPLACEMENT_CHARACTER);
                    return Err(NameError(format!(
                        "{kind} name {raw:?} contains {bad:?}; allowed are a-z, 0-9, '.', '_', '/' and '-'"
                    )));
                }
            }
        }
        if bad_segment || is_bad_segment(&bytes[segment_start..]) {
            return Err(NameError(format!(
                "{kind} name {raw:?} has an empty, '.' or '..' folder segment"
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A folder segment a name may not have: empty, `.` or `..`.
fn is_bad_segment(segment: &[u8]) -> bool {
    matches!(segment, b"" | b"." | b"..")
}

impl fmt::Display for PromptName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[a-z][a-z0-9_-]{0,63}`. `latest` parses (it is a valid reference) but
/// cannot be set or deleted: see [`LabelName::is_reserved`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelName(String);

pub const LATEST: &str = "latest";

impl LabelName {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let first_ok = raw.as_bytes().first().is_some_and(u8::is_ascii_lowercase);
        let rest_ok = raw
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
        if !first_ok || !rest_ok || raw.len() > LABEL_NAME_MAX {
            return Err(NameError(format!(
                "label {raw:?} must match [a-z][a-z0-9_-]{{0,63}}"
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A label that may be set, moved or deleted by a user.
    pub fn parse_settable(raw: &str) -> Result<Self, LabelError> {
        let label = Self::parse(raw).map_err(LabelError::Invalid)?;
        if label.is_reserved() {
            return Err(LabelError::Reserved(label.0));
        }
        Ok(label)
    }

    pub fn is_reserved(&self) -> bool {
        self.0 == LATEST
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LabelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error(transparent)]
    Invalid(NameError),
    #[error("label {0:?} is reserved: it always points at the newest version")]
    Reserved(String),
}

/// How a caller names a version: an exact semver, or a label (`latest` included).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VersionRef {
    Exact(semver::Version),
    Label(LabelName),
}

impl VersionRef {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        if raw.starts_with(|c: char| c.is_ascii_digit()) {
            return semver::Version::parse(raw).map(Self::Exact).map_err(|e| {
                NameError(format!(
                    "version reference {raw:?} is not a valid semver: {e}"
                ))
            });
        }
        LabelName::parse(raw).map(Self::Label).map_err(|_| {
            NameError(format!(
                "version reference {raw:?} is neither a semver (1.2.0) nor a label ([a-z][a-z0-9_-]*)"
            ))
        })
    }
}

impl fmt::Display for VersionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(v) => v.fmt(f),
            Self::Label(l) => l.fmt(f),
        }
    }
}

/// Project names: `[a-z0-9][a-z0-9_-]{0,63}`.
pub fn parse_project_name(raw: &str) -> Result<String, NameError> {
    let first_ok = raw
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = raw
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !first_ok || !rest_ok || raw.len() > 64 {
        return Err(NameError(format!(
            "project name {raw:?} must match [a-z0-9][a-z0-9_-]{{0,63}}"
        )));
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_names_accept_folders_and_the_allowed_alphabet() {
        for ok in [
            "greet",
            "support/greeting",
            "a",
            "0day",
            "v1.2_x-y/z",
            &"a".repeat(128),
        ] {
            assert!(PromptName::parse(ok).is_ok(), "{ok} should parse");
        }
    }

    #[test]
    fn prompt_names_refuse_bad_input_with_a_reason() {
        let cases = [
            ("", "must start"),
            ("Greet", "must start"),
            ("-x", "must start"),
            ("greet me", "contains ' '"),
            ("gréet", "contains 'é'"),
            ("a//b", "empty"),
            ("a/", "empty"),
            ("a/../b", "'..'"),
            ("a/./b", "'.'"),
            ("a/..", "'..'"),
            // A refused character is named before a bad segment.
            ("a//B", "contains 'B'"),
            ("a/b€", "contains '€'"),
            (&"a".repeat(129), "at most 128"),
        ];
        for (raw, why) in cases {
            let err = PromptName::parse(raw).expect_err(raw);
            assert!(err.0.contains(why), "{raw:?}: {} lacks {why:?}", err.0);
        }
    }

    #[test]
    fn name_errors_say_which_kind_of_name_was_refused() {
        let err = PromptName::parse_as(NameKind::Dataset, "Bad Name").expect_err("refused");
        assert!(err.0.starts_with("dataset name \"Bad Name\""), "{}", err.0);
        let err = PromptName::parse("Bad Name").expect_err("refused");
        assert!(err.0.starts_with("prompt name \"Bad Name\""), "{}", err.0);
    }

    #[test]
    fn labels_follow_the_pattern_and_latest_is_reserved() {
        assert!(LabelName::parse_settable("production").is_ok());
        assert!(LabelName::parse_settable("canary-2_b").is_ok());
        assert!(matches!(
            LabelName::parse_settable("latest"),
            Err(LabelError::Reserved(_))
        ));
        for bad in ["", "Prod", "1st", "a.b", "a/b", &"a".repeat(65)] {
            assert!(matches!(
                LabelName::parse_settable(bad),
                Err(LabelError::Invalid(_))
            ));
        }
    }

    #[test]
    fn version_refs_are_semver_or_label() {
        assert_eq!(
            VersionRef::parse("1.2.0").ok(),
            Some(VersionRef::Exact(semver::Version::new(1, 2, 0)))
        );
        assert!(matches!(
            VersionRef::parse("latest"),
            Ok(VersionRef::Label(_))
        ));
        assert!(VersionRef::parse("1.2").is_err());
        assert!(VersionRef::parse("Prod").is_err());
    }
}
