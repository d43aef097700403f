//! Prompt files: `*.prompt.yaml` (or `*.prompt.yml`) under a folder, one
//! prompt each. Reading
//! keeps the position of every value so that problems point at
//! `path:line:column`; writing produces files that read back to the same
//! content.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, Yaml, YamlData, YamlEmitter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::content::{parse_content, ContentFields};
use crate::domain::{Bump, ChatMessage, Engine, PromptContent, PromptName, PromptType};

/// The suffix `pull` writes.
pub const SUFFIX: &str = ".prompt.yaml";
/// Every suffix a prompt file may have; all are read.
pub const SUFFIXES: [&str; 2] = [SUFFIX, ".prompt.yml"];

/// The part of a file name before its prompt-file suffix, if it has one.
pub fn prompt_stem(file_name: &str) -> Option<&str> {
    SUFFIXES
        .iter()
        .find_map(|suffix| file_name.strip_suffix(suffix))
}

/// The name a file's path gives, relative to the folder names start from:
/// `support/greeting.prompt.yaml` is `support/greeting`.
pub fn derived_name(relative: &Path) -> String {
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let joined = parts.join("/");
    prompt_stem(&joined).unwrap_or(&joined).to_owned()
}

/// What a prompt file may hold; the fields mirror the API's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptFile {
    /// Overrides the name the file's path gives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub prompt_type: Option<PromptType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_config: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ChatMessage>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bump: Option<Bump>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl PromptFile {
    pub fn content_fields(&self) -> ContentFields {
        ContentFields {
            prompt_type: self.prompt_type,
            template: self.template.clone(),
            messages: self.messages.clone(),
            engine: self.engine,
            model_config: self.model_config.clone(),
            input_schema: self.input_schema.clone(),
            output_schema: self.output_schema.clone(),
        }
    }

    /// The file `pull` writes for a stored version.
    pub fn of_version(description: &str, tags: &[String], content: &PromptContent) -> Self {
        Self {
            name: None,
            description: (!description.is_empty()).then(|| description.to_owned()),
            tags: (!tags.is_empty()).then(|| tags.to_vec()),
            prompt_type: Some(content.prompt_type()),
            engine: Some(content.engine),
            model_config: (!content.model_config.is_empty()).then(|| content.model_config.clone()),
            input_schema: content.input_schema.clone(),
            output_schema: content.output_schema.clone(),
            template: content.template().map(str::to_owned),
            messages: content.messages().map(<[ChatMessage]>::to_vec),
            bump: None,
            version: None,
        }
    }

    /// The file as YAML: multi-line strings as block scalars.
    pub fn to_yaml(&self) -> String {
        // A struct of strings, lists and JSON values always serializes.
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        let mut out = String::new();
        let mut emitter = YamlEmitter::new(&mut out);
        emitter.multiline(true);
        // Writing into a String cannot fail.
        let _ = emitter.dump(&yaml_of(&value));
        let body = out.strip_prefix("---\n").unwrap_or(&out).to_owned();
        if body.ends_with('\n') {
            body
        } else {
            body + "\n"
        }
    }
}

/// The order a file's keys are written in: what the prompt is, then its body.
const KEY_ORDER: [&str; 13] = [
    "role",
    "name",
    "description",
    "tags",
    "type",
    "engine",
    "model_config",
    "input_schema",
    "output_schema",
    "template",
    "messages",
    "bump",
    "version",
];

fn yaml_of(value: &Value) -> Yaml<'static> {
    match value {
        Value::Null => Yaml::Value(Scalar::Null),
        Value::Bool(b) => Yaml::Value(Scalar::Boolean(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Value(Scalar::Integer(i)),
            None => Yaml::Value(Scalar::FloatingPoint(n.as_f64().unwrap_or(f64::NAN).into())),
        },
        Value::String(s) => Yaml::Value(Scalar::String(s.clone().into())),
        Value::Array(items) => Yaml::Sequence(items.iter().map(yaml_of).collect()),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|k| (KEY_ORDER.iter().position(|o| o == k), k.as_str()));
            Yaml::Mapping(
                keys.into_iter()
                    .map(|k| {
                        (
                            Yaml::Value(Scalar::String(k.clone().into())),
                            yaml_of(&map[k]),
                        )
                    })
                    .collect(),
            )
        }
    }
}

/// A 1-based position in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// Where each value of a file starts, by JSON pointer (`/messages/0/content`).
#[derive(Debug, Default, Clone)]
pub struct SourceMap {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
}

impl SourceMap {
    /// The position of the value at `pointer`, or of its nearest ancestor.
    pub fn locate(&self, pointer: &str) -> Pos {
        let mut p = pointer;
        loop {
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return Pos { line: 1, column: 1 },
            }
        }
    }

    /// The position of the key naming `pointer`'s value, else of the value.
    pub fn locate_key(&self, pointer: &str) -> Pos {
        self.keys
            .get(pointer)
            .copied()
            .unwrap_or_else(|| self.locate(pointer))
    }

    /// Maps a 1-based line and column inside the string at `pointer` to the
    /// file: block scalars start on the next line, indented.
    pub fn locate_in_string(
        &self,
        source: &str,
        pointer: &str,
        line: Option<usize>,
        column: Option<usize>,
    ) -> Pos {
        let Some(start) = self.values.get(pointer).copied() else {
            return self.locate(pointer);
        };
        let (line, column) = (line.unwrap_or(1), column.unwrap_or(1));
        let key_line = self.keys.get(pointer).map_or(start.line, |k| k.line);
        if start.line > key_line {
            // A block scalar (`|`, `>`): its text starts on its own line, indented.
            return Pos {
                line: start.line + line - 1,
                column: start.column + column - 1,
            };
        }
        let first = source
            .lines()
            .nth(start.line.saturating_sub(1))
            .and_then(|l| l.chars().nth(start.column.saturating_sub(1)));
        let quote = usize::from(matches!(first, Some('"' | '\'')));
        if line == 1 {
            Pos {
                line: start.line,
                column: start.column + quote + column - 1,
            }
        } else {
            Pos {
                line: start.line + line - 1,
                column,
            }
        }
    }
}

/// A problem reading a file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub pos: Pos,
    pub message: String,
}

/// Parses YAML text into JSON and the positions of its values.
pub fn parse_yaml(source: &str) -> Result<(Value, SourceMap), ParseError> {
    let docs = MarkedYaml::load_from_str(source).map_err(|e| ParseError {
        pos: Pos {
            line: e.marker().line(),
            column: e.marker().col() + 1,
        },
        message: e.info().to_owned(),
    })?;
    let mut map = SourceMap::default();
    match docs.as_slice() {
        [] => Err(ParseError {
            pos: Pos { line: 1, column: 1 },
            message: "the file is empty".into(),
        }),
        [doc] => {
            let value = json_of(doc, &mut String::new(), &mut map)?;
            Ok((value, map))
        }
        [_, second, ..] => Err(ParseError {
            pos: pos_of(second),
            message: "one prompt per file: found a second YAML document".into(),
        }),
    }
}

fn pos_of(node: &MarkedYaml) -> Pos {
    Pos {
        line: node.span.start.line(),
        column: node.span.start.col() + 1,
    }
}

fn json_of(
    node: &MarkedYaml,
    pointer: &mut String,
    map: &mut SourceMap,
) -> Result<Value, ParseError> {
    let fail = |message: String| ParseError {
        pos: pos_of(node),
        message,
    };
    let value = match &node.data {
        YamlData::Value(scalar) => {
            scalar_json(scalar).ok_or_else(|| fail("a number that JSON cannot hold".into()))?
        }
        YamlData::Representation(text, ..) => Value::String(text.to_string()),
        YamlData::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = pointer.len();
                pointer.push_str(&format!("/{i}"));
                out.push(json_of(item, pointer, map)?);
                pointer.truncate(len);
            }
            Value::Array(out)
        }
        YamlData::Mapping(entries) => {
            let mut out = Map::new();
            for (key, value) in entries {
                let name = match json_of(key, &mut String::new(), &mut SourceMap::default())? {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(ParseError {
                            pos: pos_of(key),
                            message: "mapping keys must be strings".into(),
                        })
                    }
                };
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&name.replace('~', "~0").replace('/', "~1"));
                map.keys.insert(pointer.clone(), pos_of(key));
                let item = json_of(value, pointer, map)?;
                pointer.truncate(len);
                out.insert(name, item);
            }
            Value::Object(out)
        }
        YamlData::Tagged(_, inner) => return json_of(inner, pointer, map),
        YamlData::Alias(_) => return Err(fail("aliases (`*name`) are not supported".into())),
        YamlData::BadValue => return Err(fail("this value cannot be read".into())),
    };
    map.values.insert(pointer.clone(), pos_of(node));
    Ok(value)
}

fn scalar_json(scalar: &Scalar) -> Option<Value> {
    Some(match scalar {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::from(*i),
        Scalar::FloatingPoint(f) => Value::Number(serde_json::Number::from_f64(f.into_inner())?),
        Scalar::String(s) => Value::String(s.to_string()),
    })
}

/// A prompt file read and checked for shape: what `push` sends.
#[derive(Debug, Clone)]
pub struct LoadedPrompt {
    /// The file, as given on the command line joined with its relative path.
    pub path: PathBuf,
    pub name: PromptName,
    pub file: PromptFile,
    pub content: PromptContent,
    pub source: String,
    pub map: SourceMap,
}

/// One problem in one file, like a compiler's: `path:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    pub pos: Pos,
    pub severity: Severity,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {kind}: {}",
            self.path.display(),
            self.pos.line,
            self.pos.column,
            self.message
        )
    }
}

/// Every prompt file under `dir`, sorted, with the name its path gives.
pub fn discover(dir: &Path) -> std::io::Result<Vec<(PathBuf, String)>> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
    {
        let entry = entry.map_err(std::io::Error::other)?;
        let Some(file_name) = entry.file_name().to_str() else {
            continue;
        };
        if !entry.file_type().is_file() || prompt_stem(file_name).is_none() {
            continue;
        }
        let relative = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        found.push((entry.path().to_path_buf(), derived_name(relative)));
    }
    Ok(found)
}

/// The file `name` is written to under `dir`: the `*.prompt.yml` already
/// there if there is one and no `*.prompt.yaml`, else `*.prompt.yaml`.
pub fn path_for(dir: &Path, name: &str) -> PathBuf {
    let path = path_with_suffix(dir, name, SUFFIX);
    if path.exists() {
        return path;
    }
    SUFFIXES[1..]
        .iter()
        .map(|suffix| path_with_suffix(dir, name, suffix))
        .find(|other| other.exists())
        .unwrap_or(path)
}

fn path_with_suffix(dir: &Path, name: &str, suffix: &str) -> PathBuf {
    let mut path = dir.to_path_buf();
    for part in name.split('/') {
        path.push(part);
    }
    path.set_file_name(format!(
        "{}{suffix}",
        path.file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default()
    ));
    path
}

/// A file that failed to load: every problem found, and the name of the
/// prompt it would define (its `name`, when that much could be read, else
/// the name its path gives), so that two files naming one prompt are found
/// even when one of them has other errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadFailure {
    pub name: String,
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads one file: YAML, shape, name and content rules. Every problem found
/// is returned, each at its place.
pub fn load(path: &Path, derived_name: &str) -> Result<LoadedPrompt, LoadFailure> {
    let error = |pos: Pos, message: String| Diagnostic {
        path: path.to_path_buf(),
        pos,
        severity: Severity::Error,
        message,
    };
    let fail = |name: &str, diagnostics: Vec<Diagnostic>| LoadFailure {
        name: name.to_owned(),
        diagnostics,
    };
    let source = std::fs::read_to_string(path).map_err(|e| {
        fail(
            derived_name,
            vec![error(Pos::default(), format!("cannot read: {e}"))],
        )
    })?;
    let (value, map) =
        parse_yaml(&source).map_err(|e| fail(derived_name, vec![error(e.pos, e.message)]))?;
    let declared_name = value
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(derived_name)
        .to_owned();
    if !value.is_object() {
        return Err(fail(
            &declared_name,
            vec![error(
                Pos { line: 1, column: 1 },
                "a prompt file is a mapping of fields (template, messages, …)".into(),
            )],
        ));
    }
    let file: PromptFile = serde_path_to_error::deserialize(&value).map_err(|e| {
        let pointer = pointer_of(e.path());
        let message = e.inner().to_string();
        let pos = if message.starts_with("unknown field") {
            map.locate_key(&pointer)
        } else {
            map.locate(&pointer)
        };
        fail(&declared_name, vec![error(pos, message)])
    })?;

    let mut errors = Vec::new();
    let name_text = file.name.clone().unwrap_or_else(|| derived_name.to_owned());
    let name = match PromptName::parse(&name_text) {
        Ok(name) => Some(name),
        Err(e) => {
            let pos = if file.name.is_some() {
                map.locate("/name")
            } else {
                Pos { line: 1, column: 1 }
            };
            let why = if file.name.is_some() {
                e.to_string()
            } else {
                format!("the file's path gives the name {name_text:?}: {e}; rename the file or set `name`")
            };
            errors.push(error(pos, why));
            None
        }
    };
    if let (Some(_), Some(_)) = (&file.bump, &file.version) {
        errors.push(error(
            map.locate("/version"),
            "give `version` or `bump`, not both".into(),
        ));
    }
    if let Some(version) = &file.version {
        if let Err(e) = semver::Version::parse(version) {
            errors.push(error(
                map.locate("/version"),
                format!("`version` is not a semver: {e}"),
            ));
        }
    }
    let mut content_errors = Vec::new();
    let content = parse_content(file.content_fields(), &mut content_errors);
    for e in content_errors {
        errors.push(error(map.locate(&format!("/{}", e.field)), e.message));
    }
    match (name, content) {
        (Some(name), Some(content)) if errors.is_empty() => Ok(LoadedPrompt {
            path: path.to_path_buf(),
            name,
            file,
            content,
            source,
            map,
        }),
        _ => Err(fail(&name_text, errors)),
    }
}

fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
            Segment::Map { key } => {
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    pointer
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn positions_point_at_values_and_keys() {
        let src = "description: hi\ntemplate: |\n  Hello {{name}}\n  bye\nmodel_config:\n  temperature: 0.2\n";
        let (value, map) = parse_yaml(src).expect("parses");
        assert_eq!(
            value,
            json!({"description": "hi", "template": "Hello {{name}}\nbye\n", "model_config": {"temperature": 0.2}})
        );
        assert_eq!(
            map.locate("/description"),
            Pos {
                line: 1,
                column: 14
            }
        );
        assert_eq!(
            map.locate_key("/model_config/temperature"),
            Pos { line: 6, column: 3 }
        );
        assert_eq!(
            map.locate("/model_config/temperature"),
            Pos {
                line: 6,
                column: 16
            }
        );
        // Line 2 of the block is file line 4, indented by two.
        assert_eq!(
            map.locate_in_string(src, "/template", Some(2), Some(1)),
            Pos { line: 4, column: 3 }
        );
    }

    #[test]
    fn yaml_errors_have_positions() {
        let err = parse_yaml("template: \"open\nx: [").expect_err("bad yaml");
        assert!(err.pos.line >= 1, "{err:?}");
        let err = parse_yaml("a: 1\na: 2\n").expect_err("duplicate key");
        assert_eq!(err.pos.line, 2, "{err:?}");
    }

    #[test]
    fn files_read_back_to_the_same_content() {
        let tricky = [
            "one line",
            "two\nlines",
            "ends with newline\n",
            "  leading spaces\nsecond",
            "trailing space \nline",
            "keep\n\n\n",
            "\nstarts with a newline",
            "tab\there\nand more",
            "---\nlooks like a document",
            "key: value\n# not a comment",
            "true",
            "1.0",
            "",
            "null",
            "{{#if x}}yes{{/if}}\n",
            "quote \" and 'single'\n  indented\n",
        ];
        for text in tricky {
            let file = PromptFile {
                description: Some("d: with colon".into()),
                tags: Some(vec!["a".into(), "yes".into()]),
                prompt_type: Some(PromptType::Chat),
                engine: Some(Engine::Jinja),
                model_config: Some(
                    json!({"temperature": 0.2, "max_tokens": 100, "stop": ["\n"]})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                ),
                input_schema: Some(
                    json!({"type": "object", "properties": {"x": {"type": "string"}}}),
                ),
                messages: Some(vec![
                    ChatMessage::System {
                        content: text.into(),
                    },
                    ChatMessage::Placeholder {
                        name: "history".into(),
                    },
                ]),
                template: Some(text.into()),
                ..PromptFile::default()
            };
            let yaml = file.to_yaml();
            let (value, _) = parse_yaml(&yaml).unwrap_or_else(|e| panic!("{e:?} in\n{yaml}"));
            let back: PromptFile = serde_json::from_value(value).expect("shape");
            assert_eq!(back, file, "round trip of {text:?} through\n{yaml}");
        }
    }

    #[test]
    fn names_come_from_paths() {
        let dir = tempfile::tempdir().expect("dir");
        let path = path_for(dir.path(), "support/greeting");
        assert!(path.ends_with("support/greeting.prompt.yaml"));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, "template: hi\n").expect("write");
        std::fs::write(dir.path().join("notes.yaml"), "x: 1\n").expect("write");
        let short = dir.path().join("short.prompt.yml");
        std::fs::write(&short, "template: hi\n").expect("write");
        let found = discover(dir.path()).expect("walk");
        assert_eq!(
            found,
            vec![
                (short.clone(), "short".to_owned()),
                (path, "support/greeting".to_owned())
            ]
        );
        // `pull` rewrites the `.yml` file it finds rather than adding a `.yaml` beside it.
        assert_eq!(path_for(dir.path(), "short"), short);
    }
}
