//! The playground: a form for a version's variables (from its input schema,
//! else from the variables its template reads), rendered through the same
//! service as `POST /v1/prompts/{name}/render`, with the request each
//! provider's API would be sent, built by the providers' own request
//! builders. Rendering writes nothing, so the form is a bookmarkable GET.
//! Errors are shown beside the fields they name.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use serde_json::{Map, Value};

use super::session::Signed;
use super::{prompt_url, render, Me, UiError};
use crate::api::extract::{prompt_name, version_ref, Path};
use crate::api::AppState;
use crate::domain::auth::Scope;
use crate::domain::{ChatMessage, PromptContent};
use crate::error::ApiError;
use crate::providers::requests::request_body;
use crate::providers::ProviderKind;
use crate::services::ServiceError;
use crate::template::Rendered;

/// A variable's field name in the form: `var.` and the variable's name.
const FIELD_PREFIX: &str = "var.";

/// How a field's text becomes a JSON value.
#[derive(Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    /// A string, as typed.
    String,
    Number,
    Integer,
    Boolean,
    /// One of the schema's `enum` values (each option is its JSON text).
    Choice,
    /// Arrays, objects, chat histories: JSON.
    Json,
    /// No schema says: JSON when it reads as an array or object, else text.
    Free,
}

#[derive(Serialize)]
struct Field {
    name: String,
    id: String,
    kind: Kind,
    required: bool,
    /// (value, shown text) of a choice.
    options: Vec<(String, String)>,
    description: Option<String>,
    /// A dotted name (`customer.name`) is a path into nested objects, as
    /// the template reads it; a schema's property names are taken whole.
    #[serde(skip)]
    nested: bool,
    value: String,
    errors: Vec<String>,
}

#[derive(Serialize)]
struct ProviderRequest {
    id: &'static str,
    name: &'static str,
    body: String,
}

#[derive(Serialize)]
struct Output {
    text: Option<String>,
    messages: Vec<(String, String)>,
    requests: Vec<ProviderRequest>,
    resolved: Vec<String>,
}

#[derive(Serialize)]
struct PlaygroundPage<'a> {
    me: Me<'a>,
    section: &'static str,
    name: String,
    prompt_url: String,
    reference: String,
    version: String,
    from_schema: bool,
    fields: Vec<Field>,
    /// Errors no field is named by.
    errors: Vec<String>,
    output: Option<Output>,
}

/// The fields `content` asks for: its input schema's properties, then any
/// variable the template reads that the schema does not name.
fn fields_of(content: &PromptContent, variables: &[String]) -> (bool, Vec<Field>) {
    let mut fields = Vec::new();
    let schema = content.input_schema.as_ref();
    let properties = schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object);
    let required: Vec<&str> = schema
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, property) in properties.into_iter().flatten() {
        let options: Vec<(String, String)> = property
            .get("enum")
            .and_then(Value::as_array)
            .map(|values| {
                values
                    .iter()
                    .map(|v| {
                        let shown = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                        (v.to_string(), shown)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let kind = if options.is_empty() {
            match property.get("type").and_then(Value::as_str) {
                Some("string") => Kind::String,
                Some("number") => Kind::Number,
                Some("integer") => Kind::Integer,
                Some("boolean") => Kind::Boolean,
                Some("array" | "object") => Kind::Json,
                _ => Kind::Free,
            }
        } else {
            Kind::Choice
        };
        fields.push(field(
            name,
            kind,
            required.contains(&name.as_str()),
            options,
            property
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_owned),
        ));
    }
    let from_schema = !fields.is_empty();
    let placeholders: Vec<&str> = content
        .messages()
        .unwrap_or_default()
        .iter()
        .filter_map(|m| match m {
            ChatMessage::Placeholder { name } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    for variable in variables {
        let top = variable.split('.').next().unwrap_or(variable);
        if properties.is_some_and(|p| p.contains_key(top)) {
            continue;
        }
        let kind = if placeholders.contains(&variable.as_str()) {
            Kind::Json
        } else {
            Kind::Free
        };
        let mut found = field(variable, kind, !from_schema, Vec::new(), None);
        found.nested = kind == Kind::Free;
        fields.push(found);
    }
    (from_schema, fields)
}

fn field(
    name: &str,
    kind: Kind,
    required: bool,
    options: Vec<(String, String)>,
    description: Option<String>,
) -> Field {
    Field {
        id: format!(
            "var-{}",
            name.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        ),
        name: name.to_owned(),
        kind,
        required,
        options,
        description,
        nested: false,
        value: String::new(),
        errors: Vec::new(),
    }
}

/// The field's text as a JSON value; `None` when left empty.
fn value_of(field: &Field) -> Result<Option<Value>, String> {
    let text = field.value.as_str();
    // Whitespace is a string's value, and nothing for any other kind.
    if text.is_empty() || (text.trim().is_empty() && field.kind != Kind::String) {
        return Ok(None);
    }
    let json = |text: &str| serde_json::from_str::<Value>(text);
    match field.kind {
        Kind::String => Ok(Some(Value::String(text.to_owned()))),
        Kind::Number => text
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(|n| Some(Value::Number(n)))
            .ok_or_else(|| "not a number".to_owned()),
        Kind::Integer => text
            .trim()
            .parse::<i64>()
            .map(|n| Some(Value::from(n)))
            .map_err(|_| "not a whole number".to_owned()),
        Kind::Boolean => match text {
            "true" => Ok(Some(Value::Bool(true))),
            "false" => Ok(Some(Value::Bool(false))),
            _ => Err("choose true or false".to_owned()),
        },
        Kind::Choice | Kind::Json => json(text)
            .map(Some)
            .map_err(|e| format!("not valid JSON: {e}")),
        Kind::Free => {
            let trimmed = text.trim_start();
            match json(text) {
                Ok(value) if trimmed.starts_with(['[', '{']) => Ok(Some(value)),
                _ => Ok(Some(Value::String(text.to_owned()))),
            }
        }
    }
}

/// Sets `field`'s variable in `variables` to `value`.
fn set_path(variables: &mut Map<String, Value>, field: &Field, value: Value) {
    let segments: Vec<&str> = if field.nested {
        field.name.split('.').collect()
    } else {
        vec![field.name.as_str()]
    };
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    let mut map = variables;
    for parent in parents {
        let entry = map
            .entry((*parent).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(inner) = entry else {
            return;
        };
        map = inner;
    }
    map.insert((*last).to_owned(), value);
}

/// The field an error names: the variable itself (`customer.name`), a
/// schema pointer (`/customer/name`, or `/` with the property quoted in the
/// message), or a placeholder's `variables.history`.
fn field_named<'f>(fields: &'f mut [Field], named: &str, message: &str) -> Option<&'f mut Field> {
    let dotted = named
        .strip_prefix("variables.")
        .unwrap_or(named)
        .trim_start_matches('/')
        .replace('/', ".");
    let position = fields.iter().position(|f| f.name == dotted).or_else(|| {
        fields.iter().position(|f| {
            (dotted.is_empty() && message.contains(&format!("\"{}\"", f.name)))
                || (!dotted.is_empty() && dotted.starts_with(&format!("{}.", f.name)))
        })
    })?;
    fields.get_mut(position)
}

pub async fn show_playground(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, UiError> {
    state.auth.authorize(&session.caller, Scope::Read)?;
    let name = prompt_name(&name)?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|_| ApiError::validation("query", "not a form"))?;
    let param = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim().to_owned())
    };
    let reference_text = param("ref").filter(|r| !r.is_empty());
    let reference = match &reference_text {
        Some(raw) => version_ref("ref", raw)?,
        None => state.renderer.default_ref(),
    };
    let version = state
        .registry
        .get_version(session.caller.project, &name, &reference)
        .await
        .map_err(ServiceError::from)?;
    let content = &version.content;
    let (from_schema, mut fields) = fields_of(content, &version.variables);
    for (key, value) in &pairs {
        if let Some(field) = key
            .strip_prefix(FIELD_PREFIX)
            .and_then(|n| fields.iter_mut().find(|f| f.name == n))
        {
            field.value.clone_from(value);
        }
    }

    let mut errors = Vec::new();
    let mut output = None;
    if param("render").is_some() {
        let mut variables = Map::new();
        for field in &mut fields {
            match value_of(field) {
                Ok(Some(value)) => set_path(&mut variables, field, value),
                Ok(None) => {}
                Err(message) => field.errors.push(message),
            }
        }
        if fields.iter().all(|f| f.errors.is_empty()) {
            let rendered = state
                .renderer
                .render_version(
                    session.caller.project,
                    &name,
                    &reference,
                    &Value::Object(variables),
                    None,
                )
                .await
                .map_err(ServiceError::from);
            match rendered {
                Ok(done) => output = Some(output_of(content, done.rendered, &done.resolved)),
                Err(err) => {
                    let api = ApiError::from(err);
                    if api.problem().status >= 500 {
                        return Err(api.into());
                    }
                    let ApiError::Service(err) = &api else {
                        return Err(api.into());
                    };
                    let named = err.field_errors();
                    if named.is_empty() {
                        errors.push(err.to_string());
                    }
                    for e in named {
                        match field_named(&mut fields, &e.field, &e.message) {
                            Some(field) => field.errors.push(e.message),
                            None => errors.push(format!("{}: {}", e.field, e.message)),
                        }
                    }
                }
            }
        }
    }
    let failed = !errors.is_empty() || fields.iter().any(|f| !f.errors.is_empty());
    let page = PlaygroundPage {
        me: Me::of(&session),
        section: "prompts",
        prompt_url: prompt_url(name.as_str()),
        name: name.to_string(),
        reference: reference_text.unwrap_or_else(|| reference.to_string()),
        version: version.version.to_string(),
        from_schema,
        fields,
        errors,
        output,
    };
    let status = if failed {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(render(status, "playground.html", page))
}

fn output_of(
    content: &PromptContent,
    rendered: Rendered,
    resolved: &[(String, semver::Version)],
) -> Output {
    let requests = [
        (ProviderKind::Openai, "openai", "OpenAI"),
        (ProviderKind::Anthropic, "anthropic", "Anthropic"),
        (ProviderKind::Gemini, "gemini", "Gemini"),
    ]
    .into_iter()
    .map(|(kind, id, name)| ProviderRequest {
        id,
        name,
        body: serde_json::to_string_pretty(&request_body(
            kind,
            &rendered,
            &content.model_config,
            content.output_schema.as_ref(),
        ))
        .unwrap_or_default(),
    })
    .collect();
    let (text, messages) = match rendered {
        Rendered::Text(text) => (Some(text), Vec::new()),
        Rendered::Chat(messages) => (
            None,
            messages.into_iter().map(|m| (m.role, m.content)).collect(),
        ),
    };
    Output {
        text,
        messages,
        requests,
        resolved: resolved
            .iter()
            .map(|(prompt, version)| format!("{prompt} {version}"))
            .collect(),
    }
}

/// Groups fields' errors by name, for tests of the mapping.
#[cfg(test)]
fn errors_by_field(fields: &[Field]) -> std::collections::BTreeMap<&str, Vec<&str>> {
    fields
        .iter()
        .filter(|f| !f.errors.is_empty())
        .map(|f| {
            (
                f.name.as_str(),
                f.errors.iter().map(String::as_str).collect(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use serde_json::json;

    fn fields(names: &[(&str, Kind)]) -> Vec<Field> {
        names
            .iter()
            .map(|(n, k)| field(n, *k, true, Vec::new(), None))
            .collect()
    }

    #[test]
    fn errors_find_the_fields_they_name() {
        let mut found = fields(&[("name", Kind::String), ("customer", Kind::Json)]);
        for (named, message) in [
            ("name", "required by the template but not given"),
            ("/customer/age", "-1 is less than 0"),
            ("/", "\"name\" is a required property"),
        ] {
            if let Some(f) = field_named(&mut found, named, message) {
                f.errors.push(message.to_owned());
            }
        }
        assert_eq!(
            errors_by_field(&found),
            BTreeMap::from([
                (
                    "name",
                    vec![
                        "required by the template but not given",
                        "\"name\" is a required property"
                    ]
                ),
                ("customer", vec!["-1 is less than 0"]),
            ])
        );
    }

    #[test]
    fn field_text_becomes_json_by_kind() {
        let cases = [
            (Kind::String, " Ada ", Ok(Some(json!(" Ada ")))),
            (Kind::Integer, "3", Ok(Some(json!(3)))),
            (Kind::Integer, "3.5", Err("not a whole number")),
            (Kind::Number, "2.5", Ok(Some(json!(2.5)))),
            (Kind::Boolean, "true", Ok(Some(json!(true)))),
            (Kind::Json, "[1, 2]", Ok(Some(json!([1, 2])))),
            (Kind::Free, "[\"a\"]", Ok(Some(json!(["a"])))),
            (Kind::Free, "42", Ok(Some(json!("42")))),
            (Kind::Number, "", Ok(None)),
        ];
        for (kind, text, expected) in cases {
            let mut f = field("x", kind, false, Vec::new(), None);
            f.value = text.to_owned();
            let got = value_of(&f);
            match expected {
                Ok(value) => assert_eq!(got, Ok(value), "{text:?}"),
                Err(message) => assert!(got.is_err_and(|e| e.contains(message)), "{text:?}"),
            }
        }
    }

    #[test]
    fn dotted_variables_nest() {
        let mut variables = Map::new();
        let mut f = field("customer.name", Kind::Free, true, Vec::new(), None);
        f.nested = true;
        set_path(&mut variables, &f, json!("Ada"));
        assert_eq!(
            Value::Object(variables),
            json!({"customer": {"name": "Ada"}})
        );
    }
}
