//! Builds the application state and the router, and runs the server with
//! graceful shutdown. Layers are declared once, outermost first.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::HeaderName;
use axum::Router;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_http::LatencyUnit;
use utoipa_swagger_ui::SwaggerUi;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::domain::DEFAULT_PROJECT;
use crate::error::ApiError;
use crate::registry::Registry;
use crate::store::{self, Store};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Connects to the database (applying migrations) and prepares the caches.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let store = store::connect(&config.database_url, config.database.max_connections).await?;
    state_with_store(config, store).await
}

pub async fn state_with_store(config: Config, store: Arc<dyn Store>) -> anyhow::Result<AppState> {
    let project = store
        .ensure_project(DEFAULT_PROJECT)
        .await
        .context("cannot create the default project")?;
    let registry = Arc::new(Registry::new(store, &config.cache));
    registry
        .clone()
        .follow_invalidations()
        .await
        .context("cannot listen for cache invalidations")?;
    Ok(AppState {
        registry,
        config: Arc::new(config),
        project,
    })
}

/// The whole HTTP application: API routes, `/openapi.json`, `/docs` and the layers.
pub fn build_app(state: AppState) -> Router {
    let (routes, openapi) = api::router();
    let http = &state.config.http;
    let timeout = Duration::from_secs(http.request_timeout_secs);
    routes
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi))
        .fallback(api::route_not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_response(
                            DefaultOnResponse::new()
                                .level(tracing::Level::INFO)
                                .latency_unit(LatencyUnit::Micros),
                        ),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    ApiError::Timeout
                }))
                .timeout(timeout)
                .layer(DefaultBodyLimit::max(http.body_limit_bytes)),
        )
        .with_state(state)
}

/// One span per request, named by the matched route (low cardinality) and
/// carrying the request id.
fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!("request", method = %request.method(), route, request_id)
}

/// Serves until SIGINT or SIGTERM, then lets in-flight requests finish.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let bind = config.bind;
    let state = build_state(config).await?;
    let backend = state.registry.store().backend();
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    tracing::info!(address = %listener.local_addr()?, backend, "promptreg listening");
    axum::serve(listener, build_app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("promptreg stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
