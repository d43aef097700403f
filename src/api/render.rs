//! Rendering: a stored version with variables, or unsaved content (playground
//! and CI preview), optionally as the request body of a provider's API.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::auth::{scope, Auth};
use super::extract::{prompt_name, version_ref, Json, Path, PromptPath};
use super::served;
use super::AppState;
use crate::domain::content::{content_fields_of, parse_content};
use crate::domain::experiments::served_id;
use crate::domain::{ChatMessage, Engine, PromptContent, PromptType, VersionRef};
use crate::error::{ApiError, FieldError, Problem};
use crate::providers::requests::request_body;
use crate::providers::ProviderKind;
use crate::template::{Rendered, RenderedMessage};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"ref": "production", "variables": {"name": "Ada", "place": "Paris"}, "format": "openai"}))]
pub struct RenderRequest {
    /// A semver or label; defaults to `production` (config `default_ref`).
    /// Through a label, unpinned partials are taken at that label too when
    /// they have it, else at `production`.
    #[serde(rename = "ref")]
    reference: Option<String>,
    /// The template's input (a JSON object). A chat placeholder's variable is
    /// a list of `{role, content}` messages; roles are `system`, `user`,
    /// `assistant` and `tool` (with `format: openai`, also `developer`).
    #[serde(default)]
    variables: Map<String, Value>,
    /// Also answer the request body for this provider's API.
    format: Option<ProviderKind>,
    /// While an experiment splits the label: a user, session or tenant id,
    /// so that the same unit always gets the same variant (also the header
    /// `x-promptreg-unit`). Without one the variant is chosen at random.
    unit: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"type": "text", "template": "Hello {{name}}!", "variables": {"name": "Ada"}}))]
pub struct RenderTemplateRequest {
    #[serde(rename = "type")]
    prompt_type: Option<PromptType>,
    template: Option<String>,
    messages: Option<Vec<ChatMessage>>,
    engine: Option<Engine>,
    model_config: Option<Map<String, Value>>,
    input_schema: Option<Value>,
    output_schema: Option<Value>,
    #[serde(default)]
    variables: Map<String, Value>,
    format: Option<ProviderKind>,
}

/// A prompt version the render used.
#[derive(Serialize, ToSchema)]
pub struct ResolvedPrompt {
    #[schema(example = "common/safety")]
    prompt: String,
    #[schema(value_type = String, example = "1.2.0")]
    version: VersionText,
}

/// A version as its text. A plain `major.minor.patch` is written with
/// `itoa` rather than through `fmt`, which cost a render over a thousand
/// instructions per version written.
struct VersionText(semver::Version);

impl Serialize for VersionText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let version = &self.0;
        if !version.pre.is_empty() || !version.build.is_empty() {
            return serializer.collect_str(version);
        }
        // Three u64s of at most 20 digits and two dots.
        let mut text = [0u8; 62];
        let mut len = 0;
        for (at, number) in [version.major, version.minor, version.patch]
            .into_iter()
            .enumerate()
        {
            if at > 0 {
                text[len] = b'.';
                len += 1;
            }
            let mut digits = itoa::Buffer::new();
            let digits = digits.format(number).as_bytes();
            text[len..len + digits.len()].copy_from_slice(digits);
            len += digits.len();
        }
        let text = std::str::from_utf8(&text[..len]).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(text)
    }
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "prompt": "support/greeting", "version": "1.0.1", "type": "text",
    "text": "Hello Ada, welcome to Paris!", "model_config": {"model": "gpt-4o-mini"},
    "resolved": [{"prompt": "support/greeting", "version": "1.0.1"}]
}))]
pub struct RenderResponse {
    /// Absent for unsaved content.
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    version: Option<VersionText>,
    #[serde(rename = "type")]
    prompt_type: PromptType,
    /// The rendered text (text prompts).
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    /// The rendered messages, placeholders expanded (chat prompts).
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<Vec<RenderedMessageSchema>>,
    model_config: Map<String, Value>,
    /// Every prompt version used: the outer prompt first, then its partials.
    resolved: Vec<ResolvedPrompt>,
    /// The request body for `format`'s API, ready to send.
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<Value>,
    /// The experiment's choice, when one splits the label rendered.
    #[serde(skip_serializing_if = "Option::is_none")]
    served: Option<ServedVariant>,
}

/// Room for an answer's JSON besides the rendered text: names, versions,
/// a typical model config.
const ANSWER_ROOM: usize = 384;

impl IntoResponse for RenderResponse {
    /// The answer as JSON, written into a buffer sized for it up front
    /// (axum's `Json` starts at 128 bytes and grows by copying).
    fn into_response(self) -> Response {
        let rendered = self.text.as_ref().map_or(0, String::len)
            + self
                .messages
                .iter()
                .flatten()
                .map(|message| message.content.len())
                .sum::<usize>();
        let mut body = Vec::with_capacity(ANSWER_ROOM + rendered);
        if let Err(e) = serde_json::to_writer(&mut body, &self) {
            return ApiError::from(crate::services::ServiceError::Internal(e.into()))
                .into_response();
        }
        let mut response = Response::new(axum::body::Body::from(body));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// Which variant an experiment served; feedback cites `served_id`.
#[derive(Serialize, ToSchema)]
pub struct ServedVariant {
    experiment: uuid::Uuid,
    #[schema(value_type = String, example = "1.0.1")]
    version: VersionText,
    /// Opaque: the experiment and version, for `POST /v1/feedback`.
    served_id: String,
}

/// `{role, content}`.
#[derive(Serialize, ToSchema)]
pub struct RenderedMessageSchema {
    #[schema(example = "user")]
    role: String,
    content: String,
}

fn response(
    prompt: Option<(String, semver::Version)>,
    content: &PromptContent,
    rendered: Rendered,
    resolved: Vec<(String, semver::Version)>,
    format: Option<ProviderKind>,
) -> RenderResponse {
    let request = format.map(|f| {
        request_body(
            f,
            &rendered,
            &content.model_config,
            content.output_schema.as_ref(),
        )
    });
    let (text, messages) = match rendered {
        Rendered::Text(text) => (Some(text), None),
        Rendered::Chat(messages) => (
            None,
            Some(
                messages
                    .into_iter()
                    .map(|RenderedMessage { role, content }| RenderedMessageSchema {
                        role,
                        content,
                    })
                    .collect(),
            ),
        ),
    };
    let (prompt, version) = prompt.unzip();
    RenderResponse {
        prompt,
        version: version.map(VersionText),
        prompt_type: content.prompt_type(),
        text,
        messages,
        model_config: content.model_config.clone(),
        resolved: resolved
            .into_iter()
            .map(|(prompt, version)| ResolvedPrompt {
                prompt,
                version: VersionText(version),
            })
            .collect(),
        request,
        served: None,
    }
}

/// Render a stored version (default `production`) with variables.
#[utoipa::path(post, path = "/v1/prompts/{name}/render", tag = "render",
    security(("bearer" = ["read"])),
    params(PromptPath,
        ("x-promptreg-unit" = Option<String>, Header, description = "The unit, when not given as `unit`")),
    request_body = RenderRequest,
    responses(
        (status = 200, description = "The rendered prompt; while an experiment splits the label, the variant chosen (`served`, and the headers `x-promptreg-experiment`, `x-promptreg-variant`, `x-promptreg-served-id`)", body = RenderResponse),
        (status = 404, description = "`prompt_not_found`, `version_not_found` or `label_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`missing_variables`, `invalid_variables`, `include_cycle`, `include_depth`, `include_not_found`, `include_invalid`, `output_too_large`, `render_limit` (more steps or time than `[render]` allows, or partials nested without end; `errors[0].field` names the limit: `steps`, `time` or `depth`), `render_failed` or `validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn render_prompt(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Path(name): Path<String>,
    unit: served::UnitHeader,
    Json(body): Json<RenderRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let name = prompt_name(&name)?;
    let reference = match &body.reference {
        Some(raw) => version_ref("ref", raw)?,
        None => state.renderer.default_ref(),
    };
    let variables = Value::Object(body.variables);
    let unit = served::unit(body.unit.as_deref(), &unit);
    let (output, served) = state
        .renderer
        .render_served(
            auth.project,
            &name,
            &reference,
            unit,
            &variables,
            body.format,
        )
        .await?;
    let version = &output.version;
    let prompt = Some((version.prompt_name.clone(), version.version.clone()));
    let mut answer = response(
        prompt,
        &version.content,
        output.rendered,
        output.resolved,
        body.format,
    );
    answer.served = served.experiment.map(|experiment| ServedVariant {
        experiment,
        version: VersionText(version.version.clone()),
        served_id: served_id(experiment, &version.version),
    });
    let mut response = answer.into_response();
    if let VersionRef::Label(_) = reference {
        served::add_headers(&served, response.headers_mut());
    }
    Ok(response)
}

/// Render content without saving it; partials still come from the registry.
#[utoipa::path(post, path = "/v1/render", tag = "render",
    security(("bearer" = ["read"])),
    request_body = RenderTemplateRequest,
    responses(
        (status = 200, description = "The rendered content", body = RenderResponse),
        (status = 422, description = "`template_syntax`, `missing_variables`, `invalid_variables`, `include_*`, `output_too_large`, `render_limit` (more steps or time than `[render]` allows, or partials nested without end; `errors[0].field` names the limit: `steps`, `time` or `depth`), `render_failed` or `validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn render_template(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Json(body): Json<RenderTemplateRequest>,
) -> Result<RenderResponse, ApiError> {
    let mut errors = Vec::new();
    let content = parse_content(content_fields_of!(body), &mut errors);
    let content = match content {
        Some(content) if errors.is_empty() => content,
        _ => {
            return Err(ApiError::invalid(
                errors.into_iter().map(FieldError::from).collect(),
            ))
        }
    };
    let variables = Value::Object(body.variables);
    let (rendered, resolved) = state
        .renderer
        .render_content(auth.project, &content, &variables, body.format)
        .await?;
    Ok(response(None, &content, rendered, resolved, body.format))
}

#[cfg(test)]
mod tests {
    use super::VersionText;

    fn written(raw: &str) -> String {
        let version = semver::Version::parse(raw).expect("a semver");
        serde_json::to_string(&VersionText(version)).expect("serializes")
    }

    #[test]
    fn a_version_is_written_as_its_text() {
        for raw in [
            "0.0.0",
            "1.2.3",
            "10.20.300",
            "18446744073709551615.18446744073709551615.18446744073709551615",
            "1.0.0-rc.1",
            "1.0.0+build.5",
            "2.0.0-beta.2+sha.abc",
        ] {
            assert_eq!(written(raw), format!("\"{raw}\""));
        }
    }
}
