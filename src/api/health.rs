//! Liveness and readiness probes, and the Prometheus scrape.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::error::ApiError;
use crate::services::{jobs, ServiceError};
use crate::telemetry::metrics::{JobGauge, PoolGauge};

#[derive(Serialize, ToSchema)]
pub struct HealthResponse {
    #[schema(example = "ok")]
    status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "service",
    responses((status = 200, description = "Up", body = HealthResponse)))]
pub async fn healthz() -> axum::Json<HealthResponse> {
    axum::Json(HealthResponse { status: "ok" })
}

/// The database answers.
#[utoipa::path(get, path = "/readyz", tag = "service",
    responses(
        (status = 200, description = "Ready", body = HealthResponse),
        (status = 503, description = "`unavailable`: the database is not reachable", body = crate::error::Problem,
            content_type = "application/problem+json")
    ))]
pub async fn readyz(
    State(state): State<AppState>,
) -> Result<(StatusCode, axum::Json<HealthResponse>), ApiError> {
    state.registry.ping().await.map_err(|err| {
        tracing::warn!(error = %err, "readiness check failed");
        ServiceError::Unavailable
    })?;
    Ok((StatusCode::OK, axum::Json(HealthResponse { status: "ok" })))
}

/// Prometheus metrics in the text exposition format (the names are listed
/// in the README). Public unless `[metrics] require_auth`; then it needs an
/// `admin` key.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses(
        (status = 200, description = "The metrics", body = String,
            content_type = "text/plain; version=0.0.4"),
        (status = 401, description = "`unauthorized`: `require_auth` is on and no valid key was given",
            body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`insufficient_scope`: `require_auth` is on and the key is not an admin key",
            body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`route_not_found`: metrics are off (`[metrics] enabled = false`)",
            body = crate::error::Problem, content_type = "application/problem+json")
    ))]
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(handle) = &state.metrics else {
        return Err(ApiError::RouteNotFound);
    };
    if state.config.metrics.require_auth {
        let header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let caller = state.auth.authenticate(header).await?;
        state
            .auth
            .authorize(&caller, crate::domain::auth::Scope::Admin)?;
    }
    // A database that does not answer leaves the job gauges at their last
    // values; the rest of the scrape still helps whoever is debugging that.
    let jobs = match jobs::count_unfinished(&state.registry).await {
        Ok(jobs) => Some(jobs),
        Err(err) => {
            tracing::warn!(error = %err, "cannot count jobs for the metrics scrape");
            None
        }
    };
    // The metrics module knows no store types: hand it plain gauges.
    let jobs: Option<Vec<JobGauge>> = jobs.as_ref().map(|counts| {
        counts
            .iter()
            .map(|c| JobGauge {
                kind: &c.kind,
                status: c.status,
                count: c.count,
            })
            .collect()
    });
    let pool = state.registry.pool_connections();
    let pool = PoolGauge {
        idle: pool.idle,
        active: pool.active,
    };
    let text = crate::telemetry::metrics::render(handle, jobs.as_deref(), pool);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
