//! The web UI: server-rendered HTML pages under `/ui/`, one file per page
//! group, templates and stylesheet compiled into the binary. Each handler
//! extracts (session, form), calls one service function (the same the JSON
//! API calls, with the same scopes), and renders a template. Templates
//! escape everything; pages carry a strict Content-Security-Policy and no
//! inline script (the one script, vendored htmx, checks the editor's draft
//! while it is typed; without it the Check button does). Every POST must come from a page of this server (`Origin`) and
//! carry the session's CSRF token. Nothing here touches the store.

mod about;
mod admin;
mod audit;
mod compare;
mod datasets;
mod diff;
mod editor;
mod evaluations;
mod gates;
mod highlight;
mod jobs;
mod optimizations;
mod pages;
mod playground;
mod prompts;
mod session;
mod sign_in;

use std::sync::LazyLock;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::Environment;
use serde::Serialize;

use crate::api::AppState;
use crate::auth::AuthError;
use crate::error::ApiError;
use crate::services::sessions::SignedIn;
use crate::services::ServiceError;

pub use session::SESSION_COOKIE;

/// What every page answers with: no script but our own files, no framing,
/// and the origin in `Referer`/`Origin` for same-origin requests (the CSRF
/// check compares `Origin`).
const PAGE_HEADERS: [(HeaderName, HeaderValue); 2] = [
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    ),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    ),
];

/// `/ui/…`, and `/` for browsers.
pub fn router() -> Router<AppState> {
    let pages = Router::new()
        .route("/ui", get(pages::home))
        .route("/ui/", get(pages::home))
        .route("/ui/style.css", get(pages::stylesheet))
        .route("/ui/htmx.min.js", get(pages::htmx))
        .route(
            "/ui/signin",
            get(sign_in::sign_in_page).post(sign_in::sign_in),
        )
        .route("/ui/signin/key", post(sign_in::sign_in_with_key))
        .route("/ui/signout", post(sign_in::sign_out))
        .route("/ui/project", post(sign_in::switch_project))
        .route("/ui/prompts", get(prompts::list_prompts))
        .route(
            "/ui/prompts/new",
            get(editor::new_prompt_page).post(editor::create_prompt),
        )
        .route("/ui/prompts/{name}", get(prompts::show_prompt))
        .route(
            "/ui/prompts/{name}/edit",
            get(editor::edit_page).post(editor::edit),
        )
        .route("/ui/prompts/{name}/diff", get(diff::show_diff))
        .route(
            "/ui/prompts/{name}/versions/{reference}",
            get(prompts::show_version),
        )
        .route(
            "/ui/prompts/{name}/labels/{label}/promote",
            post(prompts::promote_label),
        )
        .route("/ui/prompts/{name}/labels", post(prompts::set_label))
        .route("/ui/prompts/{name}/about", post(about::edit_about))
        .route(
            "/ui/prompts/{name}/playground",
            get(playground::show_playground),
        )
        .route(
            "/ui/prompts/{name}/labels/{label}/rollback",
            post(prompts::rollback_label),
        )
        .route(
            "/ui/datasets",
            get(datasets::list_datasets).post(datasets::create_dataset),
        )
        .route("/ui/datasets/{name}", get(datasets::show_dataset))
        .route("/ui/datasets/{name}/items", post(datasets::upload_items))
        .route(
            "/ui/evaluations",
            get(evaluations::list_evaluations).post(evaluations::start_evaluation),
        )
        .route("/ui/evaluations/{id}", get(evaluations::show_evaluation))
        .route(
            "/ui/evaluations/{id}/cancel",
            post(evaluations::cancel_evaluation),
        )
        .route("/ui/jobs/{id}/events", get(jobs::job_events))
        .route("/ui/live.js", get(pages::live_script))
        .route("/ui/jobs", get(jobs::list_jobs))
        .route(
            "/ui/optimizations",
            get(optimizations::list_optimizations).post(optimizations::start_optimization),
        )
        .route(
            "/ui/optimizations/new",
            get(optimizations::new_optimization_page),
        )
        .route(
            "/ui/optimizations/{id}",
            get(optimizations::show_optimization),
        )
        .route("/ui/optimizations/{id}/live", get(optimizations::show_live))
        .route(
            "/ui/optimizations/{id}/cancel",
            post(optimizations::cancel_optimization),
        )
        .route(
            "/ui/optimizations/{id}/evaluate",
            post(optimizations::evaluate_result),
        )
        .route(
            "/ui/optimizations/{id}/adopt",
            post(optimizations::adopt_candidate),
        )
        .route("/ui/evaluations/compare", get(compare::compare_evaluations))
        .route(
            "/ui/prompts/{name}/gates",
            get(gates::show_gates).post(gates::set_gate),
        )
        .route(
            "/ui/prompts/{name}/gates/{label}/remove",
            post(gates::remove_gate),
        )
        .route("/ui/audit", get(audit::list_audit))
        .route("/ui/admin", get(admin::show_admin))
        .route(
            "/ui/admin/keys",
            get(admin::to_admin).post(admin::create_key),
        )
        .route("/ui/admin/keys/{id}/revoke", post(admin::revoke_key))
        .route(
            "/ui/admin/users",
            get(admin::to_admin).post(admin::create_user),
        )
        .route("/ui/admin/users/{name}/roles", post(admin::change_roles))
        .route("/ui/admin/users/{name}/delete", post(admin::delete_user))
        .route(
            "/ui/admin/projects",
            get(admin::to_admin).post(admin::create_project),
        )
        .route("/ui/{*rest}", get(pages::page_not_found))
        .layer(axum::middleware::map_response(page_headers));
    Router::new().route("/", get(pages::root)).merge(pages)
}

async fn page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in PAGE_HEADERS {
        headers.insert(name, value);
    }
    response
}

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // `.html` templates escape every value (minijinja's default for the extension).
    for (name, source) in [
        ("layout.html", include_str!("templates/layout.html")),
        ("error.html", include_str!("templates/error.html")),
        ("sign_in.html", include_str!("templates/sign_in.html")),
        ("prompts.html", include_str!("templates/prompts.html")),
        ("prompt.html", include_str!("templates/prompt.html")),
        ("version.html", include_str!("templates/version.html")),
        (
            "diff_blocks.html",
            include_str!("templates/diff_blocks.html"),
        ),
        ("diff.html", include_str!("templates/diff.html")),
        ("edit.html", include_str!("templates/edit.html")),
        ("new_prompt.html", include_str!("templates/new_prompt.html")),
        ("playground.html", include_str!("templates/playground.html")),
        ("eval_rows.html", include_str!("templates/eval_rows.html")),
        ("datasets.html", include_str!("templates/datasets.html")),
        ("dataset.html", include_str!("templates/dataset.html")),
        (
            "evaluations.html",
            include_str!("templates/evaluations.html"),
        ),
        ("evaluation.html", include_str!("templates/evaluation.html")),
        ("jobs.html", include_str!("templates/jobs.html")),
        (
            "optimizations.html",
            include_str!("templates/optimizations.html"),
        ),
        (
            "optimization_new.html",
            include_str!("templates/optimization_new.html"),
        ),
        (
            "optimization.html",
            include_str!("templates/optimization.html"),
        ),
        (
            "optimization_live.html",
            include_str!("templates/optimization_live.html"),
        ),
        ("compare.html", include_str!("templates/compare.html")),
        ("gates.html", include_str!("templates/gates.html")),
        (
            "upload_form.html",
            include_str!("templates/upload_form.html"),
        ),
        (
            "dataset_upload.html",
            include_str!("templates/dataset_upload.html"),
        ),
        (
            "new_dataset.html",
            include_str!("templates/new_dataset.html"),
        ),
        (
            "new_dataset_form.html",
            include_str!("templates/new_dataset_form.html"),
        ),
        ("start_form.html", include_str!("templates/start_form.html")),
        (
            "new_evaluation.html",
            include_str!("templates/new_evaluation.html"),
        ),
        ("admin.html", include_str!("templates/admin.html")),
        ("audit.html", include_str!("templates/audit.html")),
    ] {
        if let Err(err) = env.add_template(name, source) {
            tracing::error!(template = name, error = %err, "a built-in template does not compile");
        }
    }
    env
});

/// The signed-in person as the layout shows them.
#[derive(Serialize)]
struct Me<'a> {
    name: &'a str,
    project: &'a str,
    projects: &'a [String],
    csrf_token: &'a str,
    /// May create prompts and versions (pages show Edit and New only then).
    can_write: bool,
    /// May start and cancel evaluations.
    can_evaluate: bool,
    /// May administer the project (the Admin and Audit links show only then).
    can_admin: bool,
}

impl<'a> Me<'a> {
    fn of(session: &'a SignedIn) -> Self {
        Self {
            name: session.caller.display_name(),
            project: session.caller.project_name(),
            projects: &session.projects,
            csrf_token: &session.csrf_token,
            can_write: session.caller.has(crate::domain::auth::Scope::Write),
            can_evaluate: session.caller.has(crate::domain::auth::Scope::Evaluate),
            can_admin: session.caller.has(crate::domain::auth::Scope::Admin),
        }
    }
}

/// Renders `template` with `context` (which names `me` and `section` for
/// the layout) into an answer with `status`.
fn render<C: Serialize>(status: StatusCode, template: &str, context: C) -> Response {
    let rendered = TEMPLATES
        .get_template(template)
        .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&context))));
    match rendered {
        Ok(html) => (status, Html(html)).into_response(),
        Err(err) => {
            tracing::error!(template, error = %err, "a page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>Error</title><p>This page failed to render.</p>"),
            )
                .into_response()
        }
    }
}

/// What a page could not do, shown as a page that says so in words.
#[derive(Debug)]
pub enum UiError {
    /// Not signed in (or the session ended): to the sign-in page.
    SignedOut,
    /// A POST not from one of our pages, or without the session's token.
    Forged,
    Api(ApiError),
}

impl From<ServiceError> for UiError {
    fn from(err: ServiceError) -> Self {
        Self::Api(err.into())
    }
}

impl From<AuthError> for UiError {
    fn from(err: AuthError) -> Self {
        Self::Api(err.into())
    }
}

impl From<ApiError> for UiError {
    fn from(err: ApiError) -> Self {
        Self::Api(err)
    }
}

#[derive(Serialize)]
struct ErrorPage {
    title: String,
    detail: String,
    status: u16,
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let page = match self {
            Self::SignedOut => return Redirect::to("/ui/signin").into_response(),
            Self::Forged => ErrorPage {
                title: "Forbidden".into(),
                detail:
                    "This form did not come from a page of this server, or your session \
                         changed since the page was loaded. Go back, reload the page and try again."
                        .into(),
                status: 403,
            },
            Self::Api(err) => {
                if let ApiError::Service(ServiceError::Internal(cause)) = &err {
                    tracing::error!(error = format!("{cause:#}"), "page failed");
                }
                let problem = err.problem();
                let detail = match &err {
                    ApiError::InsufficientScope(scope) => format!(
                        "Your role in this project does not allow this (it needs `{scope}`)."
                    ),
                    _ => problem.detail,
                };
                ErrorPage {
                    title: problem.title.to_owned(),
                    detail,
                    status: problem.status,
                }
            }
        };
        let status = StatusCode::from_u16(page.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        render(status, "error.html", page)
    }
}

/// Whether the request asks for HTML first (a browser navigating).
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// `/ui/prompts/{name}` with the name's folder slashes percent-encoded.
pub fn prompt_url(name: &str) -> String {
    format!("/ui/prompts/{}", name.replace('/', "%2F"))
}

/// A time as pages show it.
fn time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A page of `limit` starting after `cursor` (none when empty).
fn page_request(limit: u32, cursor: &str) -> Result<crate::store::PageRequest, UiError> {
    let after = match cursor {
        "" => None,
        raw => Some(
            crate::store::cursor::decode(raw)
                .ok_or_else(|| ApiError::validation("cursor", "not a cursor"))?,
        ),
    };
    Ok(crate::store::PageRequest { limit, after })
}

/// `path` with `params` as its query string.
fn with_query(path: &str, params: &impl Serialize) -> String {
    match serde_urlencoded::to_string(params) {
        Ok(query) if !query.is_empty() => format!("{path}?{query}"),
        _ => path.to_owned(),
    }
}
