//! Builds the application state and the router, and runs the server with
//! graceful shutdown. Layers are declared once, outermost first.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa_swagger_ui::SwaggerUi;

use crate::api::{self, AppState, Services};
use crate::auth::Authenticator;
use crate::config::Config;
use crate::domain::auth::KeySecret;
use crate::domain::LabelName;
use crate::envelope::{EnvelopeLayer, REQUEST_ID};
use crate::error::ApiError;
use crate::providers::Providers;
use crate::services;
use crate::services::render::Renderer;
use crate::services::Registry;
use crate::store::{self, Store};
use crate::telemetry;
use crate::worker::Worker;

/// Connects to the database (applying migrations), prepares the caches and
/// makes sure an admin key exists. Returns the state and, when it had to
/// create the first key, that key's secret (to be shown once).
pub async fn build_state(config: Config) -> anyhow::Result<(AppState, Option<KeySecret>)> {
    let (state, first) = build_state_with_admin(config).await?;
    Ok((state, first.key))
}

/// What was created on a first start, to be shown once: the admin key's
/// secret and user `admin`'s password.
#[derive(Default)]
pub struct FirstStart {
    pub key: Option<KeySecret>,
    pub admin_password: Option<String>,
}

/// [`build_state`], also answering user `admin`'s password when it had to
/// create that user with a random one.
pub async fn build_state_with_admin(config: Config) -> anyhow::Result<(AppState, FirstStart)> {
    let store = store::connect(&config.database_url, config.database.max_connections).await?;
    let init_password = match config.init_admin_password.0.as_str() {
        "" => None,
        password => Some(password.to_owned()),
    };
    let (state, key) = state_with_store(config, store).await?;
    let admin_password =
        services::users::bootstrap_admin(&state.registry, init_password.as_deref())
            .await
            .map_err(|e| anyhow::anyhow!("cannot create user admin: {e}"))?;
    Ok((
        state,
        FirstStart {
            key,
            admin_password,
        },
    ))
}

/// How often each replica writes the requests its experiment variants
/// served (counted in memory, so that serving never waits on a write).
const SERVED_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Writes served counts every [`SERVED_FLUSH_EVERY`] until the registry is
/// dropped.
async fn flush_served_counts(registry: std::sync::Weak<Registry>) {
    loop {
        tokio::time::sleep(SERVED_FLUSH_EVERY).await;
        let Some(registry) = registry.upgrade() else {
            return;
        };
        services::experiments::flush(&registry).await;
    }
}

pub async fn state_with_store(
    config: Config,
    store: Arc<dyn Store>,
) -> anyhow::Result<(AppState, Option<KeySecret>)> {
    let default_label = LabelName::parse_settable(&config.default_ref)
        .map_err(|e| anyhow::anyhow!("default_ref: {e}"))?;
    let init_key = match config.init_admin_key.0.as_str() {
        "" => None,
        raw => Some(KeySecret::parse(raw).ok_or_else(|| {
            anyhow::anyhow!(
                "init_admin_key must be `pr_` followed by at least 32 letters and digits"
            )
        })?),
    };
    let registry = Arc::new(Registry::new(store.clone(), &config.cache));
    let auth = Arc::new(Authenticator::new(store.clone(), &config.rate_limit)?);
    let generated = auth
        .bootstrap(init_key.as_ref())
        .await
        .context("cannot bootstrap the admin key")?;
    if let Some(mut changes) = store
        .subscribe_invalidations()
        .await
        .context("cannot listen for cache invalidations")?
    {
        let (registry, auth) = (registry.clone(), auth.clone());
        tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                registry.apply(change);
                auth.apply(change);
            }
        });
    }
    tokio::spawn(flush_served_counts(Arc::downgrade(&registry)));
    let renderer = Arc::new(Renderer::new(
        registry.clone(),
        default_label,
        config.cache.max_compiled,
        crate::template::Limits {
            max_output_bytes: config.render.max_output_bytes,
            max_steps: config.render.max_steps,
            timeout: std::time::Duration::from_millis(config.render.timeout_ms),
        },
    ));
    let encoded_versions = quick_cache::sync::Cache::new(config.cache.max_versions);
    let providers = Arc::new(Providers::from_config(&config.providers)?);
    let metrics = if config.metrics.enabled {
        Some(telemetry::metrics::install()?)
    } else {
        None
    };
    let webhooks = Arc::new(
        services::webhooks::Webhooks::from_config(&config.webhooks)
            .context("webhooks configuration")?,
    );
    let state = AppState::new(Services {
        registry,
        renderer,
        auth,
        sessions: Arc::new(services::sessions::Sessions::new(&config.ui)?),
        config: Arc::new(config),
        encoded_versions,
        providers,
        jobs_queued: Arc::new(tokio::sync::Notify::new()),
        webhooks,
        metrics,
    });
    Ok((state, generated))
}

/// The whole HTTP application: API routes, `/openapi.json`, `/docs`, the
/// web UI (`/` and `/ui/…`) and the layers.
pub fn build_app(state: AppState) -> Router {
    let (routes, openapi) = api::router();
    let http = &state.config.http;
    let timeout = Duration::from_secs(http.request_timeout_secs);
    let docs = Router::new()
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi))
        .layer(axum::middleware::map_response(docs_not_found_as_problem));
    routes
        .merge(docs)
        .merge(crate::ui::router())
        .fallback(api::route_not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(EnvelopeLayer {
                    timeout,
                    metrics: state.metrics.is_some(),
                })
                .layer(DefaultBodyLimit::max(http.body_limit_bytes))
                .option_layer(cors(&http.cors_allowed_origins)),
        )
        .with_state(state)
}

/// Swagger UI answers a file it does not have with an empty 404; answer it
/// as every other unknown path is answered.
async fn docs_not_found_as_problem(response: Response) -> Response {
    if response.status() == StatusCode::NOT_FOUND {
        ApiError::RouteNotFound.into_response()
    } else {
        response
    }
}

/// CORS for the configured origins; none configured, no CORS headers at all.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_NONE_MATCH,
            ])
            .expose_headers([
                header::ETAG,
                header::LOCATION,
                header::RETRY_AFTER,
                REQUEST_ID,
            ])
            .max_age(Duration::from_secs(3600)),
    )
}

/// A job worker over this state's store, providers and renderer, with the
/// configured lease; woken by jobs queued in this process.
pub fn worker(state: &AppState) -> Worker {
    services::jobs::worker(
        &state.registry,
        &state.renderer,
        &state.providers,
        &state.config.worker,
        state.jobs_queued.clone(),
    )
}

/// Runs `count` workers until `shutdown`, and (when `count` is not 0) the
/// webhook delivery loop; each worker gives its job in hand back to the
/// queue when it stops.
pub fn spawn_workers(
    state: &AppState,
    count: usize,
    shutdown: &tokio_util::sync::CancellationToken,
) -> tokio::task::JoinSet<()> {
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..count {
        let (worker, shutdown) = (worker(state), shutdown.clone());
        workers.spawn(async move { worker.run(shutdown).await });
    }
    if count > 0 {
        match webhook_deliverer(state) {
            Ok(deliverer) => {
                let shutdown = shutdown.clone();
                workers.spawn(async move { deliverer.run(shutdown).await });
            }
            Err(e) => tracing::error!(error = %e, "cannot start webhook delivery"),
        }
    }
    workers
}

/// The loop that sends webhook deliveries from the outbox; `spawn_workers`
/// runs one beside the job workers.
pub fn webhook_deliverer(state: &AppState) -> anyhow::Result<crate::webhooks::Deliverer> {
    crate::webhooks::Deliverer::new(
        state.registry.webhook_store(),
        &state.config.webhooks,
        state.webhooks.secrets(),
        Duration::from_millis(state.config.worker.poll_interval_ms.max(10)),
        state.webhooks.wakeup.clone(),
    )
}

/// `promptreg worker`: job workers only, no HTTP, until SIGINT or SIGTERM.
pub async fn run_workers(config: Config, count: Option<usize>) -> anyhow::Result<()> {
    let count = count.unwrap_or(config.worker.count).max(1);
    let (state, _) = build_state(config).await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut workers = spawn_workers(&state, count, &shutdown);
    tracing::info!(count, backend = state.registry.backend(), "workers running");
    shutdown_signal().await;
    shutdown.cancel();
    while workers.join_next().await.is_some() {}
    Ok(())
}

/// Serves until SIGINT or SIGTERM, then lets in-flight requests finish.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let bind = config.bind;
    let worker_count = config.worker.count;
    let grace = Duration::from_secs(config.http.shutdown_grace_secs);
    let (state, first) = build_state_with_admin(config).await?;
    if let Some(password) = first.admin_password {
        // Shown once: it is stored only as a hash.
        eprintln!(
            "\nNo user existed, so user \"admin\" (an admin of project \"default\") was created\n\
             for the web UI. Its password is shown only this once:\n\n    {password}\n"
        );
    }
    if let Some(secret) = first.key {
        // Shown once: it is stored only as a hash.
        eprintln!(
            "\nNo API key existed, so an admin key was created for project \"default\".\n\
             It is shown only this once; keep it somewhere safe:\n\n    {}\n",
            secret.expose()
        );
    }
    let backend = state.registry.backend();
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    tracing::info!(address = %listener.local_addr()?, backend, workers = worker_count, "promptreg listening");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut workers = spawn_workers(&state, worker_count, &shutdown);
    let stopping = shutdown.clone();
    let app = build_app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let serving = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            stopping.cancel();
        })
        .into_future();
    // The drain is bounded: hyper waits for every open connection, and one
    // that never sends a request would hold the process forever.
    let drain_bound = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = serving => served?,
        () = drain_bound => tracing::warn!(
            grace_secs = grace.as_secs(),
            "connections still open after the shutdown grace period are closed"
        ),
    }
    shutdown.cancel();
    while workers.join_next().await.is_some() {}
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
