//! The HTTP API: one file per resource, each holding its handlers and their
//! request/response types. Routing and the OpenAPI document come from one
//! list (`utoipa-axum`), so no route can go undocumented.

/// `From<Page<_>>` for list answers (`{items, next_cursor}`): each item
/// converted, the cursor passed on. Written in each answer's own module.
macro_rules! page_from {
    ($page:ident of $item:ty) => {
        impl<D> From<crate::domain::Page<D>> for $page
        where
            $item: From<D>,
        {
            fn from(page: crate::domain::Page<D>) -> Self {
                Self {
                    items: page.items.into_iter().map(<$item>::from).collect(),
                    next_cursor: page.next_cursor,
                }
            }
        }
    };
}

mod admin;
pub mod auth;
mod compat;
mod datasets;
mod evaluations;
mod experiments;
pub mod extract;
mod feedback;
mod gates;
mod health;
mod jobs;
mod labels;
mod langfuse;
mod mlflow;
mod monitors;
pub(crate) mod optimizations;
pub(crate) mod prompts;
mod providers;
mod render;
pub(crate) mod scores;
pub(crate) mod served;
mod users;
pub(crate) mod versions;
mod webhooks;
pub mod wire;

use std::sync::Arc;

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr, Response};
use utoipa::Modify;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::error::{ApiError, FieldError, Problem};
use crate::services::render::Renderer;
use crate::services::Registry;

/// What handlers share; one `Arc`, so the per-request clone is one increment.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }

    /// Tells idle workers in this process that a job is waiting (others poll).
    pub fn wake_workers(&self) {
        self.jobs_queued.notify_waiters();
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

pub struct Services {
    pub registry: Arc<Registry>,
    pub renderer: Arc<Renderer>,
    pub auth: Arc<Authenticator>,
    /// Web UI sessions and the failed sign-ins of this process.
    pub sessions: Arc<crate::services::sessions::Sessions>,
    pub config: Arc<Config>,
    /// Versions as their GET answers them, by version id.
    pub encoded_versions: quick_cache::sync::Cache<uuid::Uuid, Arc<versions::EncodedVersion>>,
    pub providers: Arc<crate::providers::Providers>,
    /// Wakes this process's idle workers when a job is queued here.
    pub jobs_queued: Arc<tokio::sync::Notify>,
    /// Webhook secrets' key, address policy and the delivery loop's wake-up.
    pub webhooks: Arc<crate::services::webhooks::Webhooks>,
    /// The Prometheus recorder's handle; `None` when metrics are off.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
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
        (name = "render", description = "Render prompts with variables, optionally as a provider's request body"),
        (name = "datasets", description = "Datasets of inputs and reference outputs that evaluations run over"),
        (name = "evaluations", description = "Evaluations of versions on datasets, scores and comparisons"),
        (name = "optimizations", description = "Jobs that propose, score and keep better templates for a version"),
        (name = "jobs", description = "Durable background jobs: progress, cancellation, event streams"),
        (name = "gates", description = "Quality gates on label moves"),
        (name = "experiments", description = "Online experiments: a label's traffic split between versions, \
            feedback from production, anytime-valid statistics and a guard that rolls back a losing variant"),
        (name = "providers", description = "The LLM providers configured on this server"),
        (name = "admin", description = "API keys, projects, web UI users and the audit log"),
        (name = "webhooks", description = "Signed notifications of changes (Standard Webhooks), their deliveries and attempts"),
        (name = "service", description = "Health and readiness"),
        (name = "langfuse", description = "Langfuse-compatible prompt API for the Langfuse SDKs: \
            Basic auth with a key's id as the public key and the key as the secret; \
            errors are `{message, error}`"),
        (name = "mlflow", description = "MLflow-compatible prompt registry for MLflow's client \
            (`MLFLOW_TRACKING_URI`): prompts as registered models, versions as model versions, \
            labels as aliases. A key as `Authorization: Bearer`, or Basic with the key's id as the \
            user name and the key as the password; errors are `{error_code, message}`")
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// Declares the security schemes. Their names sort in the order Swagger UI's
/// Authorize dialog shows them: promptreg's own keys first.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("pr_…")
                    .description(Some(
                        "An API key (`pr_…`), sent as `Authorization: Bearer pr_…`; its \
                         scopes decide what it may do.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            LANGFUSE_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "For the Langfuse-compatible routes only: the user name is a key's id \
                         (the Langfuse public key), the password the key itself (the secret key).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            MLFLOW_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "For the MLflow-compatible routes, besides a bearer key: the user name \
                         is a key's id (MLFLOW_TRACKING_USERNAME), the password the key itself \
                         (MLFLOW_TRACKING_PASSWORD).",
                    ))
                    .build(),
            ),
        );
    }
}

const LANGFUSE_SCHEME: &str = "langfuse_basic";
const MLFLOW_SCHEME: &str = "mlflow_basic";

fn problem_response(description: &str) -> RefOr<Response> {
    error_response(description, "application/problem+json", "Problem")
}

fn error_response(description: &str, content_type: &str, schema: &str) -> RefOr<Response> {
    RefOr::T(
        utoipa::openapi::ResponseBuilder::new()
            .description(description)
            .content(
                content_type,
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(RefOr::Ref(Ref::from_schema_name(schema))))
                    .build(),
            )
            .build(),
    )
}

/// Completes every operation's answers with those that do not depend on the
/// operation: what the auth layer, the body and parameter extractors, the
/// request timeout and a database outage answer. Then gives each problem an
/// example with its own status and the first code its description names.
fn complete_responses(openapi: &mut utoipa::openapi::OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            let secured = !operation.security.as_ref().is_none_or(|s| s.is_empty());
            let langfuse = operation.security.iter().flatten().any(|requirement| {
                serde_json::to_value(requirement).is_ok_and(|v| v.get(LANGFUSE_SCHEME).is_some())
            });
            let mlflow = operation.tags.iter().flatten().any(|tag| tag == "mlflow");
            let has_body = operation.request_body.is_some();
            let has_params = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let mut answers: Vec<(&str, &str)> = Vec::new();
            if secured && mlflow {
                answers.extend([
                    ("401", "`UNAUTHENTICATED`: no credentials, an unknown or revoked key, or a user name not that key's id"),
                    ("403", "`PERMISSION_DENIED`: the key lacks the scope this operation requires"),
                    ("429", "`REQUEST_LIMIT_EXCEEDED`: over the key's rate limit; see Retry-After"),
                    ("408", "`DEADLINE_EXCEEDED`: the request took longer than the server's limit"),
                    ("503", "`TEMPORARILY_UNAVAILABLE`: the database is unreachable; see Retry-After"),
                ]);
                if has_body || has_params {
                    answers.push((
                        "400",
                        "`INVALID_PARAMETER_VALUE`: a field or parameter at fault",
                    ));
                }
            } else if secured && langfuse {
                answers.extend([
                    ("401", "`UnauthorizedError`: no credentials, a wrong secret, or a public key not that key's id"),
                    ("403", "`ForbiddenError`: the key lacks the scope this operation requires"),
                    ("429", "`TooManyRequestsError`: over the key's rate limit; see Retry-After"),
                    ("408", "`RequestTimeoutError`: the request took longer than the server's limit"),
                    ("503", "`ServiceUnavailableError`: the database is unreachable; see Retry-After"),
                ]);
                if has_body || has_params {
                    answers.push((
                        "400",
                        "`InvalidRequestError`: a field or parameter at fault",
                    ));
                }
            } else if secured {
                answers.extend([
                    ("401", "`unauthorized`: no key, an unknown or a revoked key"),
                    (
                        "403",
                        "`insufficient_scope`: the key lacks the scope this operation requires",
                    ),
                    (
                        "429",
                        "`rate_limited`: over the key's rate limit; see Retry-After",
                    ),
                    (
                        "408",
                        "`request_timeout`: the request took longer than the server's limit",
                    ),
                    (
                        "503",
                        "`unavailable`: the database is unreachable; see Retry-After",
                    ),
                ]);
                if has_body {
                    answers.extend([
                        ("400", "`malformed_json`: the body is not JSON"),
                        (
                            "413",
                            "`payload_too_large`: the body is over the server's limit",
                        ),
                        (
                            "415",
                            "`unsupported_media_type`: the body is not `application/json`",
                        ),
                    ]);
                }
                if has_body || has_params {
                    answers.push((
                        "422",
                        "`validation_failed`: a field or parameter at fault, named in `errors`",
                    ));
                }
            }
            let responses = &mut operation.responses.responses;
            for (status, description) in answers {
                responses.entry(status.into()).or_insert_with(|| {
                    if mlflow {
                        error_response(description, "application/json", "MlflowErrorBody")
                    } else if langfuse {
                        error_response(description, "application/json", "LangfuseErrorBody")
                    } else {
                        problem_response(description)
                    }
                });
            }
            for (status, response) in responses.iter_mut() {
                if let RefOr::T(response) = response {
                    add_problem_example(status, response);
                }
            }
        }
    }
}

/// A problem example that matches its response: the status, and the first
/// `code` the description names. (The title is left out: it is the code's
/// own, which the answer always carries.)
fn add_problem_example(status: &str, response: &mut Response) {
    let Some(content) = response.content.get_mut("application/problem+json") else {
        return;
    };
    let Some(code) = response.description.split('`').nth(1) else {
        return;
    };
    if !code.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
        return;
    }
    content.example = Some(serde_json::json!({
        "type": format!("urn:promptreg:problem:{code}"),
        "status": status.parse::<u16>().unwrap_or_default(),
        "detail": "What went wrong, in a sentence that names the subject.",
        "code": code,
    }));
}

/// The routes and the OpenAPI document they make, before state is attached.
fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
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
        .routes(routes!(render::render_prompt))
        .routes(routes!(render::render_template))
        .routes(routes!(datasets::list_datasets, datasets::create_dataset))
        .routes(routes!(
            datasets::get_dataset,
            datasets::update_dataset,
            datasets::delete_dataset
        ))
        .routes(routes!(datasets::list_items, datasets::append_items))
        .routes(routes!(scores::score_outputs))
        .routes(routes!(providers::list_providers))
        .routes(routes!(
            evaluations::list_evaluations,
            evaluations::create_evaluation
        ))
        .routes(routes!(evaluations::list_prompt_evaluations))
        .routes(routes!(evaluations::compare_evaluations))
        .routes(routes!(evaluations::get_evaluation))
        .routes(routes!(evaluations::list_results))
        .routes(routes!(
            optimizations::list_optimizations,
            optimizations::create_optimization
        ))
        .routes(routes!(optimizations::get_optimization))
        .routes(routes!(optimizations::adopt_candidate))
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::cancel_job))
        .routes(routes!(jobs::job_events))
        .routes(routes!(experiments::create_experiment))
        .routes(routes!(experiments::list_experiments))
        .routes(routes!(
            experiments::get_experiment,
            experiments::ramp_experiment
        ))
        .routes(routes!(experiments::stop_experiment))
        .routes(routes!(feedback::create_feedback))
        .routes(routes!(feedback::create_feedback_batch))
        .routes(routes!(feedback::feedback_summary))
        .routes(routes!(monitors::list_monitors))
        .routes(routes!(
            monitors::put_monitor,
            monitors::get_monitor,
            monitors::delete_monitor
        ))
        .routes(routes!(gates::list_gates))
        .routes(routes!(gates::put_gate, gates::delete_gate))
        .routes(routes!(admin::list_keys, admin::create_key))
        .routes(routes!(admin::revoke_key))
        .routes(routes!(admin::list_projects, admin::create_project))
        .routes(routes!(admin::list_audit))
        .routes(routes!(webhooks::list_webhooks, webhooks::create_webhook))
        .routes(routes!(
            webhooks::get_webhook,
            webhooks::update_webhook,
            webhooks::delete_webhook
        ))
        .routes(routes!(webhooks::rotate_webhook_secret))
        .routes(routes!(webhooks::test_webhook))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::redeliver))
        .routes(routes!(users::list_users, users::create_user))
        .routes(routes!(
            users::get_user,
            users::update_user,
            users::delete_user
        ))
        .routes(routes!(langfuse::prompts::get_prompt))
        .routes(routes!(
            langfuse::prompts::list_prompts,
            langfuse::prompts::create_prompt
        ))
        .routes(routes!(langfuse::prompts::update_prompt_version))
        .routes(routes!(langfuse::service::list_projects))
        .routes(routes!(langfuse::service::health))
        .routes(routes!(langfuse::service::ingest_traces))
        .routes(routes!(mlflow::models::create_registered_model))
        .routes(routes!(mlflow::models::get_registered_model))
        .routes(routes!(mlflow::models::search_registered_models))
        .routes(routes!(mlflow::models::set_registered_model_tag))
        .routes(routes!(mlflow::models::delete_registered_model_tag))
        .routes(routes!(mlflow::models::delete_registered_model))
        .routes(routes!(
            mlflow::models::get_model_version_by_alias,
            mlflow::models::set_registered_model_alias,
            mlflow::models::delete_registered_model_alias
        ))
        .routes(routes!(mlflow::versions::create_model_version))
        .routes(routes!(mlflow::versions::get_model_version))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .split_for_parts()
}

/// The routes with the complete OpenAPI document.
pub fn router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (routes, mut openapi) = routes();
    complete_responses(&mut openapi);
    // Undocumented on purpose: it only answers what is not there.
    let routes = routes
        .route(
            "/api/public/{*rest}",
            axum::routing::any(langfuse::unknown_route),
        )
        .route(
            "/api/2.0/mlflow/{*rest}",
            axum::routing::any(mlflow::unknown_route),
        )
        .route(
            "/api/3.0/mlflow/{*rest}",
            axum::routing::any(mlflow::unknown_route),
        );
    (routes, openapi)
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
