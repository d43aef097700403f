//! OpenTelemetry traces: the exporter, and W3C trace context in and out
//! (requests' `traceparent`, provider calls' headers, jobs' stored parent).
//!
//! Everything here is a no-op while tracing is off, so the hot path pays
//! for none of it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::TelemetryConfig;

/// How long one export may take before it is given up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// At most one log line per this long about a collector that fails.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// How long shutting down waits for the last spans to go out.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

static ENABLED: AtomicBool = AtomicBool::new(false);

pub(super) fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// Whether spans are exported (a collector is configured and the global
/// subscriber carries the OpenTelemetry layer).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The running exporter: a tracer provider with a batch processor.
pub(super) struct Exporter {
    provider: SdkTracerProvider,
    endpoint: String,
}

impl Exporter {
    /// Starts exporting to the configured collector; `None` when none is
    /// configured or the exporter cannot be built (logged once).
    pub(super) fn start(config: &TelemetryConfig) -> Option<Self> {
        let base = config.otlp_endpoint.trim().trim_end_matches('/');
        if base.is_empty() {
            return None;
        }
        // The specification's rule for the generic endpoint variable: the
        // signal's path is appended to the base URL.
        let endpoint = format!("{base}/v1/traces");
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build();
        let exporter = match exporter {
            Ok(exporter) => exporter,
            Err(err) => {
                eprintln!("promptreg: traces are off: cannot export to {endpoint}: {err}");
                return None;
            }
        };
        let service_name = match config.service_name.trim() {
            "" => "promptreg".to_owned(),
            name => name.to_owned(),
        };
        let resource = Resource::builder_empty()
            .with_service_name(service_name)
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(QuietExporter::new(exporter))
            .with_resource(resource)
            .build();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        Some(Self { provider, endpoint })
    }

    pub(super) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans.
    pub(super) fn layer<S>(
        &self,
    ) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("promptreg"))
            .with_tracked_inactivity(false)
            .with_threads(false)
    }

    /// Sends the spans still queued (bounded) and stops.
    pub(super) fn shutdown(self) {
        set_enabled(false);
        if let Err(err) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::debug!(error = %err, "trace exporter shutdown");
        }
    }
}

/// The OTLP exporter, logging a failed export at most once a minute: a
/// collector that is down must not flood the logs.
#[derive(Debug)]
struct QuietExporter {
    inner: opentelemetry_otlp::SpanExporter,
    last_logged: Mutex<Option<Instant>>,
}

impl QuietExporter {
    fn new(inner: opentelemetry_otlp::SpanExporter) -> Self {
        Self {
            inner,
            last_logged: Mutex::new(None),
        }
    }
}

impl SpanExporter for QuietExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        if let Err(err) = &result {
            let now = Instant::now();
            let log = {
                let mut last = self.last_logged.lock().unwrap_or_else(|p| p.into_inner());
                let due = last.is_none_or(|at| now.duration_since(at) >= FAILURE_LOG_INTERVAL);
                if due {
                    *last = Some(now);
                }
                due
            };
            if log {
                tracing::warn!(error = %err, spans, "cannot export traces (repeats are not logged for a minute)");
            }
        }
        result
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Joins `span` to the caller's trace when `headers` carry a W3C
/// `traceparent`.
pub fn continue_trace(span: &Span, headers: &HeaderMap) {
    if !enabled() {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&opentelemetry_http::HeaderExtractor(headers))
    });
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Adds the current span's `traceparent` to outgoing `headers`.
pub fn inject_current(headers: &mut HeaderMap) {
    if !enabled() {
        return;
    }
    let context = Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut opentelemetry_http::HeaderInjector(headers));
    });
}

/// The current span's W3C `traceparent`, to be stored with work that runs
/// later (a job); `None` while tracing is off.
pub fn current_traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    let mut headers = HeaderMap::new();
    inject_current(&mut headers);
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Links `span` to the span a stored `traceparent` names (the request that
/// queued a job): the job runs in its own trace, one hop from the request's.
pub fn link_to(span: &Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent.filter(|_| enabled()) else {
        return;
    };
    let Ok(value) = traceparent.parse() else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert("traceparent", value);
    let context = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&opentelemetry_http::HeaderExtractor(&headers))
    });
    let linked = context.span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}
