//! Rendering: a stored version with variables, or unsaved content (playground
//! and CI preview), optionally as the request body of a provider's API.

use axum::extract::State;
use axum::response::IntoResponse;
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
    #[schema(example = "1.2.0")]
    version: String,
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
    version: Option<String>,
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

/// Which variant an experiment served; feedback cites `served_id`.
#[derive(Serialize, ToSchema)]
pub struct ServedVariant {
    experiment: uuid::Uuid,
    #[schema(example = "1.0.1")]
    version: String,
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
    prompt: Option<(String, String)>,
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
        version,
        prompt_type: content.prompt_type(),
        text,
        messages,
        model_config: content.model_config.clone(),
        resolved: resolved
            .into_iter()
            .map(|(prompt, version)| ResolvedPrompt {
                prompt,
                version: version.to_string(),
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
    let prompt = Some((version.prompt_name.clone(), version.version.to_string()));
    let mut answer = response(
        prompt,
        &version.content,
        output.rendered,
        output.resolved,
        body.format,
    );
    answer.served = served.experiment.map(|experiment| ServedVariant {
        experiment,
        version: version.version.to_string(),
        served_id: served_id(experiment, &version.version),
    });
    let mut response = axum::Json(answer).into_response();
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
) -> Result<axum::Json<RenderResponse>, ApiError> {
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
    Ok(axum::Json(response(
        None,
        &content,
        rendered,
        resolved,
        body.format,
    )))
}
