//! The pages around the others: `/` for browsers and for JSON clients, the
//! UI's home, its stylesheet, unknown pages, and the sections not built yet.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Serialize;

use super::{render, wants_html};

/// `GET /`: a browser goes to the UI; other clients get links to start from.
pub async fn root(headers: HeaderMap) -> Response {
    if wants_html(&headers) {
        return Redirect::to("/ui/").into_response();
    }
    axum::Json(serde_json::json!({
        "name": "promptreg",
        "links": {
            "ui": "/ui/",
            "docs": "/docs",
            "openapi": "/openapi.json",
            "prompts": "/v1/prompts",
            "health": "/healthz",
            "ready": "/readyz",
        }
    }))
    .into_response()
}

pub async fn home() -> Redirect {
    Redirect::to("/ui/prompts")
}

pub async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/style.css"))
}

/// htmx 2.0.11 (licence: `assets/htmx.LICENSE`), the one script: the editor
/// uses it to check a draft while it is typed.
pub async fn htmx() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/htmx.min.js"),
    )
}

/// Our own script for live pages: follows a job's events into a running
/// evaluation's progress bar, and reads a chosen file into the upload form.
pub async fn live_script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/live.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

#[derive(Serialize)]
struct NotFound {
    title: &'static str,
    detail: &'static str,
    status: u16,
}

pub async fn page_not_found() -> Response {
    render(
        StatusCode::NOT_FOUND,
        "error.html",
        NotFound {
            title: "Not found",
            detail: "There is no such page.",
            status: 404,
        },
    )
}
