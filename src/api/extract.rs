//! Extractors that reject with `ApiError`, so malformed bodies, paths and
//! query strings get the same problem+json as every other error.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts};
use serde::de::DeserializeOwned;

use crate::domain::{text, NameKind, PromptName, VersionRef};
use crate::error::{ApiError, FieldError};
use crate::store::{cursor, PageRequest};

/// A JSON body. Syntax errors are 400 `malformed_json`; wrong types, missing
/// or unknown fields are 422 `validation_failed` naming the field's path.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // No Content-Type is taken as JSON (curl users forget it); another type is refused.
        if let Some(content_type) = req.headers().get(header::CONTENT_TYPE) {
            let is_json = content_type.to_str().is_ok_and(|ct| {
                let essence = ct.split(';').next().unwrap_or_default().trim();
                essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")
            });
            if !is_json {
                return Err(ApiError::UnsupportedMediaType);
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        parse_json(&bytes).map(Json)
    }
}

fn body_error(rejection: BytesRejection) -> ApiError {
    use axum::extract::rejection::FailedToBufferBody;
    match rejection {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
            ApiError::PayloadTooLarge
        }
        other => ApiError::MalformedJson(other.body_text()),
    }
}

/// Parses a request body. Every body this API takes is a JSON object: serde
/// would read a struct from an array too (`["a"]` as `{"name": "a"}`) and
/// then explain the mismatch field by field, so anything else is refused
/// first, as a whole.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(not_an_object(bytes));
    }
    refuse_nul_in_json(bytes)?;
    // The common case, a valid body, skips the path tracking; only a failure
    // is parsed again to say where it went wrong.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                ApiError::invalid(vec![data_error(&path, &inner.to_string())])
            }
            _ => ApiError::MalformedJson(inner.to_string()),
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    Ok(value)
}

/// A body that does not start with `{`: malformed JSON stays 400, valid
/// JSON of another kind is 422 saying what was expected.
fn not_an_object(bytes: &[u8]) -> ApiError {
    let found = match serde_json::from_slice::<serde_json::Value>(bytes) {
        Err(e) => return ApiError::MalformedJson(e.to_string()),
        Ok(serde_json::Value::Array(_)) => "an array",
        Ok(serde_json::Value::String(_)) => "a string",
        Ok(serde_json::Value::Number(_)) => "a number",
        Ok(serde_json::Value::Bool(_)) => "a boolean",
        Ok(serde_json::Value::Null) => "null",
        Ok(serde_json::Value::Object(_)) => "an object",
    };
    ApiError::validation("body", format!("expected a JSON object, found {found}"))
}

/// JSON carries a NUL only as the escape `\u0000`: a body without that text
/// skips the walk; one with it is refused naming the first string that holds it.
fn refuse_nul_in_json(bytes: &[u8]) -> Result<(), ApiError> {
    const ESCAPED_NUL: &[u8] = b"\\u0000";
    // Each backslash (found by SIMD) is checked for the escape; most bodies
    // have none or a few.
    if !memchr::memchr_iter(b'\\', bytes).any(|at| bytes[at..].starts_with(ESCAPED_NUL)) {
        return Ok(());
    }
    // Malformed JSON is left to the typed parse, which says where it breaks.
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Ok(());
    };
    match text::nul_path(&value) {
        Some(path) => Err(ApiError::validation(
            text::field_name(&path, "body"),
            text::NUL_MESSAGE,
        )),
        None => Ok(()),
    }
}

/// serde reports a missing field at its parent's path; name the field itself.
fn data_error(path: &str, message: &str) -> FieldError {
    let message = message.split(" at line ").next().unwrap_or(message);
    let named = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let field = match (named, path) {
        (Some(name), "." | "") => name.to_owned(),
        (Some(name), parent) => format!("{parent}.{name}"),
        (None, "." | "") => "body".to_owned(),
        (None, path) => path.to_owned(),
    };
    FieldError::new(field, message)
}

/// Query parameters; a bad value is 422 naming the parameter.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        refuse_nul_in_query(parts, state).await?;
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|rejection: QueryRejection| {
                let text = rejection.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                // `limit: invalid digit found in string`, or "missing field `to`".
                match detail
                    .split_once(": ")
                    .filter(|(field, _)| !field.contains(' '))
                {
                    Some((field, message)) => ApiError::validation(field, message),
                    None => ApiError::invalid(vec![data_error(".", detail)]),
                }
            })
    }
}

/// A NUL reaches a query only percent-encoded (`%00`); a query holding one is
/// refused naming the parameter.
async fn refuse_nul_in_query<S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<(), ApiError> {
    let encoded_nul = parts.uri.query().is_some_and(|q| q.contains("%00"));
    if !encoded_nul {
        return Ok(());
    }
    let Ok(pairs) =
        axum::extract::Query::<Vec<(String, String)>>::from_request_parts(parts, state).await
    else {
        return Ok(());
    };
    match pairs
        .0
        .iter()
        .find(|(name, value)| text::has_nul(name) || text::has_nul(value))
    {
        Some((name, _)) if text::has_nul(name) => {
            Err(ApiError::validation("query", text::NUL_MESSAGE))
        }
        Some((name, _)) => Err(ApiError::validation(name.as_str(), text::NUL_MESSAGE)),
        None => Ok(()),
    }
}

/// A NUL reaches a path only percent-encoded (`%00`); a path parameter
/// holding one (a dataset's name, say) is refused naming the parameter.
async fn refuse_nul_in_path<S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<(), ApiError> {
    if !parts.uri.path().contains("%00") {
        return Ok(());
    }
    let Ok(params) =
        axum::extract::Path::<Vec<(String, String)>>::from_request_parts(parts, state).await
    else {
        return Ok(());
    };
    match params.0.iter().find(|(_, value)| text::has_nul(value)) {
        Some((name, _)) => Err(ApiError::validation(name.as_str(), text::NUL_MESSAGE)),
        None => Ok(()),
    }
}

/// Path parameters, percent-decoded (`support%2Fgreeting` is `support/greeting`).
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        refuse_nul_in_path(parts, state).await?;
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|rejection: PathRejection| ApiError::validation("path", rejection.body_text()))
    }
}

pub fn prompt_name(raw: &str) -> Result<PromptName, ApiError> {
    PromptName::parse(raw).map_err(|e| ApiError::invalid_name("name", e))
}

/// A dataset's name: the prompt-name rules, refused as a dataset name.
pub fn dataset_name(raw: &str) -> Result<PromptName, ApiError> {
    PromptName::parse_as(NameKind::Dataset, raw).map_err(|e| ApiError::invalid_name("name", e))
}

pub fn version_ref(field: &str, raw: &str) -> Result<VersionRef, ApiError> {
    VersionRef::parse(raw).map_err(|e| ApiError::validation(field, e.0))
}

/// A label a caller may set (not the implicit `latest`).
pub fn label_name(field: &str, raw: &str) -> Result<crate::domain::LabelName, ApiError> {
    crate::domain::LabelName::parse_settable(raw).map_err(|e| ApiError::invalid_label(field, e))
}

pub fn semver(field: &str, raw: &str) -> Result<semver::Version, ApiError> {
    semver::Version::parse(raw)
        .map_err(|e| ApiError::validation(field, format!("{raw:?} is not a valid semver: {e}")))
}

/// `limit` and `cursor` of every list.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, 1 to 100.
    #[param(default = 20, minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A prompt named in the path: `/v1/prompts/{name}…`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Documents the path; handlers take the raw segment.
pub struct PromptPath {
    /// The prompt's name. In a URL you write yourself, its folder slashes are
    /// percent-encoded (`support%2Fgreeting`); Swagger UI's "Try it out"
    /// encodes them for you, so type `support/greeting` there.
    #[param(example = "support/greeting")]
    name: String,
}

pub const MAX_PAGE: u32 = 100;

/// The longest free-text filter (`q`, `tag`), in characters. The OpenAPI
/// parameters repeat it as `max_length`.
pub const MAX_FILTER_LEN: usize = 200;

/// A free-text filter: empty is no filter; longer than `MAX_FILTER_LEN` is
/// refused, so no backend meets a pattern it cannot handle.
pub fn filter_text(field: &str, raw: Option<String>) -> Result<Option<String>, ApiError> {
    match raw {
        Some(text) if text.chars().count() > MAX_FILTER_LEN => Err(ApiError::validation(
            field,
            format!("at most {MAX_FILTER_LEN} characters"),
        )),
        Some(text) if text.is_empty() => Ok(None),
        other => Ok(other),
    }
}
const DEFAULT_PAGE: u32 = 20;

impl PageParams {
    pub fn to_request(&self) -> Result<PageRequest, ApiError> {
        page_request(self.limit, self.cursor.as_deref())
    }
}

pub fn page_request(limit: Option<u32>, cursor: Option<&str>) -> Result<PageRequest, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::validation(
            "limit",
            format!("must be from 1 to {MAX_PAGE}"),
        ));
    }
    let after = match cursor {
        None => None,
        Some(c) => Some(
            cursor::decode(c)
                .ok_or_else(|| ApiError::validation("cursor", "not a cursor this server issued"))?,
        ),
    };
    Ok(PageRequest { limit, after })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        tags: Option<Vec<String>>,
    }

    fn field_of(raw: &str) -> (u16, String) {
        let err = parse_json::<Body>(raw.as_bytes()).expect_err(raw);
        let problem = err.problem();
        (
            problem.status,
            problem
                .errors
                .first()
                .map(|e| e.field.clone())
                .unwrap_or_default(),
        )
    }

    #[test]
    fn json_errors_name_status_and_field() {
        let cases = [
            ("{", 400, ""),
            ("", 400, ""),
            ("{\"name\": \"a\"} trailing", 400, ""),
            ("[]", 422, "body"),
            ("  [1]", 422, "body"),
            ("\"name\"", 422, "body"),
            ("[1", 400, ""),
            ("{}", 422, "name"),
            ("{\"name\": 3}", 422, "name"),
            ("{\"name\": \"a\", \"tags\": [\"x\", 1]}", 422, "tags[1]"),
            ("{\"name\": \"a\", \"colour\": 1}", 422, "colour"),
        ];
        for (raw, status, field) in cases {
            assert_eq!(field_of(raw), (status, field.to_owned()), "{raw}");
        }
    }
}
