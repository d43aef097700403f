//! Versions: immutable, numbered snapshots of a prompt's content, fetched by
//! semver or label with ETags, and diffed.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::auth::{scope, Auth};
use super::extract::{prompt_name, semver, version_ref, Json, PageParams, Path, PromptPath, Query};
use super::served::{self, UnitHeader, UnitParams};
use super::{prompt_path, AppState};
use crate::domain::auth::Scope;
use crate::domain::content::{content_fields_of, diff_contents, parse_content};
use crate::domain::{Bump, ChatMessage, Engine, LabelName, PromptType, Version, VersionRef};
use crate::domain::{ProjectId, PromptName};
use crate::error::{ApiError, FieldError, Problem};
use crate::services::versions;
use crate::store::{CreatedVersion, NewVersion};

const MAX_MESSAGE_LEN: usize = 4096;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "type": "text",
    "template": "Hello {{name}}, welcome to {{place}}!",
    "model_config": {"model": "gpt-4o-mini", "temperature": 0.2},
    "message": "Warmer greeting",
    "labels": ["staging"]
}))]
pub struct CreateVersionRequest {
    /// `text` needs `template`; `chat` needs `messages`. Inferred when omitted.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub prompt_type: Option<PromptType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ChatMessage>>,
    /// Defaults to `handlebars`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
    /// Model settings: model, temperature, … (a JSON object).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_config: Option<Map<String, Value>>,
    /// JSON Schema of the variables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// JSON Schema of the model's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// Changelog entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Free-form: git sha, author, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// An explicit version, greater than the latest. Excludes `bump`.
    #[schema(example = "2.0.0")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Which part of the latest version to bump (default `patch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bump: Option<Bump>,
    /// The version this one derives from (default: the latest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Refuse with 409 unless the latest version is this one (`null`: no version yet).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "1.0.1")]
    pub expected_latest: Option<Option<String>>,
    /// Labels to point at the new (or identical latest) version, in the same transaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// A version keeps its prompt's type: `chat` after `text` (or the reverse)
    /// is refused with 422 `type_mismatch` unless this is `true`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schema(default = false)]
    pub allow_type_change: bool,
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// An immutable version of a prompt.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionResponse {
    pub id: uuid::Uuid,
    #[schema(example = "support/greeting")]
    pub prompt: String,
    #[schema(example = "1.0.1")]
    pub version: String,
    /// 1, 2, 3… per prompt.
    #[schema(example = 2)]
    pub seq: i64,
    #[serde(rename = "type")]
    pub prompt_type: PromptType,
    pub engine: Engine,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "Hello {{name}}, welcome to {{place}}!")]
    pub template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ChatMessage>>,
    pub model_config: Map<String, Value>,
    pub input_schema: Option<Value>,
    pub output_schema: Option<Value>,
    /// What the template reads from the caller's input: names and dotted paths.
    #[schema(example = json!(["name", "place"]))]
    pub variables: Vec<String>,
    pub message: Option<String>,
    pub metadata: Map<String, Value>,
    #[schema(example = "1.0.0")]
    pub parent: Option<String>,
    /// sha256 of the canonical content. Versions may share it (content
    /// posted again after a change), so it is not the ETag on its own.
    pub content_hash: String,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
}

impl From<&Version> for VersionResponse {
    fn from(v: &Version) -> Self {
        Self {
            id: v.id,
            prompt: v.prompt_name.clone(),
            version: v.version.to_string(),
            seq: v.seq,
            prompt_type: v.content.prompt_type(),
            engine: v.content.engine,
            template: v.content.template().map(str::to_owned),
            messages: v.content.messages().map(<[ChatMessage]>::to_vec),
            model_config: v.content.model_config.clone(),
            input_schema: v.content.input_schema.clone(),
            output_schema: v.content.output_schema.clone(),
            variables: v.variables.clone(),
            message: v.message.clone(),
            metadata: v.metadata.clone(),
            parent: v.parent.as_ref().map(ToString::to_string),
            content_hash: v.content_hash.clone(),
            created_at: v.created_at,
            created_by: v.created_by.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct VersionPage {
    items: Vec<VersionResponse>,
    /// Pass as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
}

/// Checks a request field by field, collecting every error before answering.
/// (`allow_type_change` is no part of the version: the caller passes it on.)
pub(crate) fn parse_new_version(body: CreateVersionRequest) -> Result<NewVersion, ApiError> {
    let mut content_errors = Vec::new();
    let content = parse_content(content_fields_of!(body), &mut content_errors);
    let mut errors: Vec<FieldError> = content_errors.into_iter().map(FieldError::from).collect();
    let mut fail = |field: &str, message: String| errors.push(FieldError::new(field, message));
    if body
        .message
        .as_ref()
        .is_some_and(|m| m.chars().count() > MAX_MESSAGE_LEN)
    {
        fail("message", format!("at most {MAX_MESSAGE_LEN} characters"));
    }
    if body.version.is_some() && body.bump.is_some() {
        fail("version", "give `version` or `bump`, not both".into());
    }
    let mut semver_field = |field: &str, raw: Option<&str>| {
        raw.and_then(|r| {
            semver(field, r)
                .map_err(|e| errors.extend(field_errors(e)))
                .ok()
        })
    };
    let version = semver_field("version", body.version.as_deref());
    let parent = semver_field("parent", body.parent.as_deref());
    let expected_latest = match body.expected_latest {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) => semver_field("expected_latest", Some(&raw)).map(Some),
    };

    let mut labels = Vec::new();
    for (i, raw) in body.labels.unwrap_or_default().iter().enumerate() {
        match LabelName::parse_settable(raw) {
            Ok(label) => labels.push(label),
            // Name and label errors keep their own codes.
            Err(e) => return Err(ApiError::invalid_label(&format!("labels[{i}]"), e)),
        }
    }
    match content {
        Some(content) if errors.is_empty() => Ok(NewVersion {
            content,
            variables: Vec::new(),
            message: body.message,
            metadata: body.metadata.unwrap_or_default(),
            version,
            bump: body.bump,
            parent,
            expected_latest,
            labels,
        }),
        _ => Err(ApiError::invalid(errors)),
    }
}

fn field_errors(err: ApiError) -> Vec<FieldError> {
    err.problem().errors
}

/// Post a new version. The server numbers it; content identical to the latest
/// version answers 200 with that version and creates nothing.
#[utoipa::path(post, path = "/v1/prompts/{name}/versions", tag = "versions",
    security(("bearer" = ["write"])),
    params(PromptPath),
    request_body = CreateVersionRequest,
    responses(
        (status = 201, description = "Created", body = VersionResponse,
            headers(("location" = String, description = "URL of the version"))),
        (status = 200, description = "Identical to the latest version: that version, nothing created", body = VersionResponse),
        (status = 404, description = "`prompt_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`version_conflict` or `prompt_archived`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`gate_failed`: a label asked for is gated, and a new version has no evaluation", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `invalid_label`, `reserved_label`, `type_mismatch`, `template_syntax`, `include_not_found` (an included prompt does not exist), `include_cycle`, `include_depth`, `include_invalid` or `output_too_large` (written out with the partials labelled now, the template would exceed `render.max_output_bytes`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_version(
    State(state): State<AppState>,
    auth: Auth<scope::Write>,
    Path(name): Path<String>,
    Json(body): Json<CreateVersionRequest>,
) -> Result<Response, ApiError> {
    let name = prompt_name(&name)?;
    let allow_type_change = body.allow_type_change;
    let new = parse_new_version(body)?;
    if !new.labels.is_empty() {
        auth.also_require(&state, Scope::Promote)?;
    }
    let result = versions::create_version(
        &state.registry,
        &state.renderer,
        auth.project,
        &auth.actor(),
        &name,
        new,
        allow_type_change,
    )
    .await?;
    Ok(created_version_response(&name, &result))
}

/// 201 with the version and its location, or 200 when an identical
/// latest version was answered instead.
pub(crate) fn created_version_response(name: &PromptName, result: &CreatedVersion) -> Response {
    let body = axum::Json(VersionResponse::from(&result.version));
    if !result.created {
        return (StatusCode::OK, body).into_response();
    }
    let location = format!(
        "{}/versions/{}",
        prompt_path(name.as_str()),
        result.version.version
    );
    (StatusCode::CREATED, [(header::LOCATION, location)], body).into_response()
}

/// List a prompt's versions, newest first.
#[utoipa::path(get, path = "/v1/prompts/{name}/versions", tag = "versions",
    security(("bearer" = ["read"])),
    params(PromptPath, PageParams),
    responses(
        (status = 200, description = "A page of versions", body = VersionPage),
        (status = 404, description = "`prompt_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_versions(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Path(name): Path<String>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<VersionPage>, ApiError> {
    let name = prompt_name(&name)?;
    let page = state
        .registry
        .list_versions(auth.project, &name, page.to_request()?)
        .await?;
    Ok(axum::Json(VersionPage {
        items: page.items.iter().map(VersionResponse::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Get a version by semver (`1.2.0`) or label (`production`, `latest`).
/// Answers `If-None-Match` with 304. The ETag names the version (its id and
/// content hash), so an ETag of another version never matches, even one
/// with equal content.
#[utoipa::path(get, path = "/v1/prompts/{name}/versions/{ref}", tag = "versions",
    security(("bearer" = ["read"])),
    params(
        PromptPath,
        ("ref" = String, Path, description = "A semver or a label", example = "production"),
        ("if-none-match" = Option<String>, Header, description = "An ETag from an earlier answer"),
        UnitParams,
        ("x-promptreg-unit" = Option<String>, Header, description = "The unit, when not given as `unit`"),
    ),
    responses(
        (status = 200, description = "The version; while an experiment splits the label, the variant chosen", body = VersionResponse,
            headers(
                ("etag" = String, description = "\"<id>.<content_hash>\": this version and its content"),
                ("x-promptreg-experiment" = String, description = "The experiment that chose the version (only while one splits the label)"),
                ("x-promptreg-variant" = String, description = "The version it chose"),
                ("x-promptreg-served-id" = String, description = "What feedback cites as `served_id`"),
            )),
        (status = 304, description = "Not modified"),
        (status = 404, description = "`prompt_not_found`, `version_not_found` or `label_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: the ref is neither semver nor label", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_version(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Path((name, reference)): Path<(String, String)>,
    Query(params): Query<UnitParams>,
    unit_header: UnitHeader,
    if_none_match: IfNoneMatch,
) -> Result<Response, ApiError> {
    let name = prompt_name(&name)?;
    let reference = version_ref("ref", &reference)?;
    let unit = served::unit(params.unit.as_deref(), &unit_header);
    let served = state
        .registry
        .serve_version(auth.project, &name, &reference, unit)
        .await?;
    let version = &served.version;
    let encoded = match state.encoded_versions.get_or_insert_with(&version.id, || {
        Ok::<_, Infallible>(Arc::new(EncodedVersion::of(version)))
    }) {
        Ok(encoded) => encoded,
        Err(never) => match never {},
    };
    let not_modified = if_none_match.matches(&encoded.etag);
    let mut response = if not_modified {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        Response::new(Body::from(encoded.body.clone()))
    };
    // Room for every header the answer leaves with, the envelope's too, so
    // that the map is not grown on the way out.
    let headers = response.headers_mut();
    *headers = HeaderMap::with_capacity(ANSWER_HEADERS);
    headers.insert(header::ETAG, encoded.etag.clone());
    // Exact versions never change; labels move, so those answers must be revalidated.
    let cache_control = match reference {
        VersionRef::Exact(_) => "private, max-age=31536000, immutable",
        VersionRef::Label(_) => "private, no-cache",
    };
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    if !not_modified {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if let VersionRef::Label(_) = reference {
        served::add_headers(&served, headers);
    }
    Ok(response)
}

/// How many headers a version's answer carries at most: its own (ETag,
/// caching, type, length, `Vary` and an experiment's three) and the
/// envelope's five.
const ANSWER_HEADERS: usize = 16;

/// `If-None-Match`, the only request header a revalidation looks at.
pub struct IfNoneMatch(Vec<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let values = parts.headers.get_all(header::IF_NONE_MATCH);
        Ok(Self(values.iter().cloned().collect()))
    }
}

impl IfNoneMatch {
    /// Whether the client's copy is `etag`'s: a weak comparison over every
    /// listed tag, `*` matching any.
    fn matches(&self, etag: &HeaderValue) -> bool {
        let Ok(etag) = etag.to_str() else {
            return false;
        };
        self.0.iter().any(|value| {
            value.to_str().is_ok_and(|list| {
                list.split(',')
                    .map(str::trim)
                    .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
            })
        })
    }
}

/// A version's answer, encoded once: versions never change, so neither does
/// their JSON or their ETag. The ETag holds the version's id, since versions
/// with equal content (and so equal hashes) are different answers.
pub struct EncodedVersion {
    etag: HeaderValue,
    body: axum::body::Bytes,
}

impl EncodedVersion {
    fn of(version: &Version) -> Self {
        // A uuid and a hex digest in quotes are always a valid header value,
        // and a plain struct always serializes.
        let etag = HeaderValue::from_str(&format!("\"{}.{}\"", version.id, version.content_hash))
            .unwrap_or_else(|_| HeaderValue::from_static("\"\""));
        let body = serde_json::to_vec(&VersionResponse::from(version)).unwrap_or_default();
        Self {
            etag,
            body: body.into(),
        }
    }
}

async fn resolve(
    state: &AppState,
    project: ProjectId,
    name: &crate::domain::PromptName,
    reference: &VersionRef,
) -> Result<Arc<Version>, ApiError> {
    state
        .registry
        .get_version(project, name, reference)
        .await
        .map_err(ApiError::from)
}

/// RFC 9110 weak comparison against every tag of `If-None-Match` (or `*`).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffParams {
    /// A semver or label.
    #[param(example = "1.0.0")]
    from: String,
    /// A semver or label.
    #[param(example = "production")]
    to: String,
}

/// One field that differs between two versions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FieldChange {
    #[schema(example = "model_config")]
    pub field: String,
    pub from: Value,
    pub to: Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DiffResponse {
    #[schema(example = "support/greeting")]
    pub prompt: String,
    #[schema(example = "1.0.0")]
    pub from: String,
    #[schema(example = "1.0.1")]
    pub to: String,
    /// Every content field that differs, with both values.
    pub changes: Vec<FieldChange>,
    /// A unified diff of the template (text) or the messages (chat); empty when equal.
    #[schema(
        example = "--- support/greeting@1.0.0\n+++ support/greeting@1.0.1\n@@ -1 +1 @@\n-Hello {{name}}!\n+Hello {{name}}, welcome to {{place}}!\n"
    )]
    pub diff: String,
}

/// Compare two versions field by field, with a unified diff of the template or messages.
#[utoipa::path(get, path = "/v1/prompts/{name}/diff", tag = "versions",
    security(("bearer" = ["read"])),
    params(PromptPath, DiffParams),
    responses(
        (status = 200, description = "The differences", body = DiffResponse),
        (status = 404, description = "`prompt_not_found`, `version_not_found` or `label_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn diff_versions(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Path(name): Path<String>,
    Query(params): Query<DiffParams>,
) -> Result<axum::Json<DiffResponse>, ApiError> {
    let name = prompt_name(&name)?;
    let from_ref = version_ref("from", &params.from)?;
    let to_ref = version_ref("to", &params.to)?;
    let from = resolve(&state, auth.project, &name, &from_ref).await?;
    let to = resolve(&state, auth.project, &name, &to_ref).await?;
    let label = |v: &Version| format!("{}@{}", v.prompt_name, v.version);
    let diff = diff_contents(&from.content, &to.content, &label(&from), &label(&to));
    let changes = diff
        .changes
        .into_iter()
        .map(|c| FieldChange {
            field: c.field,
            from: c.from,
            to: c.to,
        })
        .collect();
    let diff = diff.diff;
    Ok(axum::Json(DiffResponse {
        prompt: name.to_string(),
        from: from.version.to_string(),
        to: to.version.to_string(),
        changes,
        diff,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_is_a_weak_comparison_over_a_list() {
        // Tags may also come as separate header lines.
        let lines = IfNoneMatch(vec![
            HeaderValue::from_static("\"x\""),
            HeaderValue::from_static("\"abc\""),
        ]);
        assert!(lines.matches(&HeaderValue::from_static("\"abc\"")));
        assert!(!IfNoneMatch(Vec::new()).matches(&HeaderValue::from_static("\"abc\"")));

        let etag = "\"abc\"";
        for (header_value, want) in [
            ("\"abc\"", true),
            ("W/\"abc\"", true),
            ("\"x\", \"abc\"", true),
            ("*", true),
            ("\"abcd\"", false),
            ("abc", false),
        ] {
            let client = IfNoneMatch(vec![HeaderValue::from_static(header_value)]);
            assert_eq!(
                client.matches(&HeaderValue::from_static(etag)),
                want,
                "{header_value}"
            );
        }
    }
}
