//! The HTTP API: one file per resource, each holding its handlers and their
//! request/response types. Routing and the OpenAPI document come from one
//! list (`utoipa-axum`), so no route can go undocumented.

pub mod extract;
mod health;
mod labels;
mod prompts;
mod versions;

use std::sync::Arc;

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Config;
use crate::domain::ProjectId;
use crate::error::{ApiError, FieldError, Problem};
use crate::registry::Registry;

#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub config: Arc<Config>,
    /// The project requests act in. (Per-key projects come with API keys.)
    pub project: ProjectId,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "promptreg",
        description = "A self-hosted prompt registry: immutable, semver-versioned prompt templates \
                       with labels, history, diff and rollback.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    tags(
        (name = "prompts", description = "Prompts: named, mutable entities"),
        (name = "versions", description = "Immutable, numbered versions of a prompt"),
        (name = "labels", description = "Named pointers to versions, with history and rollback"),
        (name = "service", description = "Health and readiness")
    ),
    components(schemas(Problem, FieldError))
)]
struct ApiDoc;

/// The routes and the OpenAPI document they make, before state is attached.
pub fn router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(prompts::list_prompts, prompts::create_prompt))
        .routes(routes!(
            prompts::get_prompt,
            prompts::update_prompt,
            prompts::archive_prompt
        ))
        .routes(routes!(versions::list_versions, versions::create_version))
        .routes(routes!(versions::get_version))
        .routes(routes!(versions::diff_versions))
        .routes(routes!(labels::list_labels))
        .routes(routes!(labels::set_label, labels::delete_label))
        .routes(routes!(labels::label_history))
        .routes(routes!(labels::rollback_label))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .split_for_parts()
}

/// The OpenAPI document as `promptreg openapi` prints it and `/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    router().1
}

/// `/v1/prompts/{name}` with the name's folder slashes percent-encoded.
pub fn prompt_path(name: &str) -> String {
    format!("/v1/prompts/{}", name.replace('/', "%2F"))
}

pub async fn route_not_found() -> ApiError {
    ApiError::RouteNotFound
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
